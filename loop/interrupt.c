/* Virtual interrupt objects bound to ports created with ZX_PORT_BIND_TO_INTERRUPT. Each
 * owns one packet, so at most one interrupt packet per object is ever queued; a trigger
 * while the previous one is unacknowledged is latched and delivered at zx_interrupt_ack. */
#include <stdlib.h>

#include "loop/object.h"

enum irq_state { IRQ_IDLE, IRQ_NEEDACK, IRQ_DESTROYED };

struct zx_interrupt {
    struct zx_object obj;
    pthread_mutex_t lock;
    struct zx_port *port; /* referenced while bound */
    struct port_packet pp;
    enum irq_state state;
    bool latched;
    zx_instant_boot_t latched_ts;
};

static void irq_destroy(struct zx_object *obj) {
    struct zx_interrupt *irq = (struct zx_interrupt *)obj;
    pthread_mutex_destroy(&irq->lock);
    free(irq);
}

static void unbind_locked(struct zx_interrupt *irq) {
    if (!irq->port) return;
    port_remove_packet(irq->port, &irq->pp);
    object_unref(port_obj(irq->port));
    irq->port = NULL;
    irq->latched = false;
    if (irq->state == IRQ_NEEDACK) irq->state = IRQ_IDLE;
}

static void irq_on_zero_handles(struct zx_object *obj) {
    struct zx_interrupt *irq = (struct zx_interrupt *)obj;
    pthread_mutex_lock(&irq->lock);
    unbind_locked(irq);
    pthread_mutex_unlock(&irq->lock);
}

static const struct object_ops irq_ops = {
    .type = ZX_OBJ_TYPE_INTERRUPT,
    .waitable = false,
    .on_zero_handles = irq_on_zero_handles,
    .destroy = irq_destroy,
};

zx_status_t zx_interrupt_create(zx_handle_t src_obj, uint32_t src_num, uint32_t options,
                                zx_handle_t *out) {
    if (src_obj != ZX_HANDLE_INVALID || src_num != 0 || options != ZX_INTERRUPT_VIRTUAL || !out)
        return ZX_ERR_INVALID_ARGS;
    struct zx_interrupt *irq = calloc(1, sizeof *irq);
    if (!irq) return ZX_ERR_NO_MEMORY;
    object_init(&irq->obj, &irq_ops);
    pthread_mutex_init(&irq->lock, NULL);
    irq->pp.kind = PORT_PACKET_INTERRUPT;
    irq->pp.owner = irq;
    irq->pp.packet.type = ZX_PKT_TYPE_INTERRUPT;
    zx_status_t st = handle_create(&irq->obj, ZX_DEFAULT_INTERRUPT_RIGHTS, out);
    object_unref(&irq->obj);
    return st;
}

static zx_status_t get_irq(zx_handle_t h, zx_rights_t rights, struct zx_interrupt **out) {
    struct zx_object *obj;
    zx_status_t st = handle_get(h, ZX_OBJ_TYPE_INTERRUPT, rights, &obj);
    if (st == ZX_OK) *out = (struct zx_interrupt *)obj;
    return st;
}

static void deliver_locked(struct zx_interrupt *irq, zx_instant_boot_t ts) {
    irq->pp.packet.interrupt = (zx_packet_interrupt_t){.timestamp = ts};
    irq->state = IRQ_NEEDACK;
    port_queue_packet(irq->port, &irq->pp);
}

zx_status_t zx_interrupt_bind(zx_handle_t handle, zx_handle_t port_handle, uint64_t key,
                              uint32_t options) {
    if (options != ZX_INTERRUPT_BIND && options != ZX_INTERRUPT_UNBIND) return ZX_ERR_INVALID_ARGS;
    struct zx_interrupt *irq;
    zx_status_t st = get_irq(handle, ZX_RIGHT_READ, &irq);
    if (st != ZX_OK) return st;
    struct zx_object *pobj;
    st = handle_get(port_handle, ZX_OBJ_TYPE_PORT, ZX_RIGHT_WRITE, &pobj);
    if (st != ZX_OK) {
        object_unref(&irq->obj);
        return st;
    }
    struct zx_port *port = port_from_object(pobj);
    pthread_mutex_lock(&irq->lock);
    if (irq->state == IRQ_DESTROYED) {
        st = ZX_ERR_CANCELED;
    } else if (options == ZX_INTERRUPT_UNBIND) {
        if (irq->port != port) {
            st = ZX_ERR_NOT_FOUND;
        } else {
            unbind_locked(irq);
        }
    } else if (!port_binds_interrupts(port)) {
        st = ZX_ERR_WRONG_TYPE;
    } else if (irq->port) {
        st = ZX_ERR_ALREADY_BOUND;
    } else {
        object_ref(port_obj(port));
        irq->port = port;
        irq->pp.packet.key = key;
        if (irq->latched) { /* triggered while unbound */
            irq->latched = false;
            deliver_locked(irq, irq->latched_ts);
        }
    }
    pthread_mutex_unlock(&irq->lock);
    object_unref(pobj);
    object_unref(&irq->obj);
    return st;
}

zx_status_t zx_interrupt_trigger(zx_handle_t handle, uint32_t options, zx_instant_boot_t timestamp) {
    if (options != 0) return ZX_ERR_INVALID_ARGS;
    struct zx_interrupt *irq;
    zx_status_t st = get_irq(handle, ZX_RIGHT_SIGNAL, &irq);
    if (st != ZX_OK) return st;
    pthread_mutex_lock(&irq->lock);
    if (irq->state == IRQ_DESTROYED) {
        st = ZX_ERR_CANCELED;
    } else if (irq->port && irq->state == IRQ_IDLE) {
        deliver_locked(irq, timestamp);
    } else if (!irq->latched) {
        irq->latched = true;
        irq->latched_ts = timestamp;
    }
    pthread_mutex_unlock(&irq->lock);
    object_unref(&irq->obj);
    return st;
}

zx_status_t zx_interrupt_ack(zx_handle_t handle) {
    struct zx_interrupt *irq;
    zx_status_t st = get_irq(handle, ZX_RIGHT_WRITE, &irq);
    if (st != ZX_OK) return st;
    pthread_mutex_lock(&irq->lock);
    if (irq->state == IRQ_DESTROYED) {
        st = ZX_ERR_CANCELED;
    } else if (!irq->port) {
        st = ZX_ERR_BAD_STATE;
    } else if (irq->latched) {
        irq->latched = false;
        deliver_locked(irq, irq->latched_ts);
    } else if (!irq->pp.queued) {
        irq->state = IRQ_IDLE;
    }
    pthread_mutex_unlock(&irq->lock);
    object_unref(&irq->obj);
    return st;
}

zx_status_t zx_interrupt_destroy(zx_handle_t handle) {
    struct zx_interrupt *irq;
    zx_status_t st = get_irq(handle, ZX_RIGHT_NONE, &irq);
    if (st != ZX_OK) return st;
    pthread_mutex_lock(&irq->lock);
    unbind_locked(irq);
    irq->state = IRQ_DESTROYED;
    pthread_mutex_unlock(&irq->lock);
    object_unref(&irq->obj);
    return ZX_OK;
}
