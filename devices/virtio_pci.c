#include <lib/async/trap.h>
#include <linux/virtio_pci.h>
#include <lib/async/wait.h>
#include <zircon/syscalls.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lib/container_of.h>

#include "devices/virtio_pci.h"

#define OFF_COMMON 0x0000u
#define OFF_ISR 0x1000u
#define OFF_DEVICE 0x2000u
#define OFF_MSIX_TABLE 0x4000u
#define OFF_MSIX_PBA 0x5000u
#define NOTIFY_MULTIPLIER 4
#define MAX_VECTORS (VIRTIO_MAX_QUEUES + 1)

#define MSIX_ENABLE 0x8000
#define MSIX_MASKALL 0x4000
#define MSIX_ENTRY_MASKED 1

struct msix_entry {
    uint32_t addr_lo, addr_hi, data, ctrl;
};

struct virtio_pci {
    struct virtio_dev vd;
    struct pci_device pci;
    async_guest_bell_trap_t bell;
    uint64_t bar0;
    uint8_t msix_cap;
    uint32_t device_feature_select, driver_feature_select;
    uint16_t queue_select, config_vector, queue_vector[VIRTIO_MAX_QUEUES];
    unsigned nvectors;
    struct msix_entry msix[MAX_VECTORS];
    uint64_t pba;
    uint32_t msi[MAX_VECTORS];
    int msi_fd[MAX_VECTORS];
    /* legacy INTx */
    async_wait_t resample_wait;
    int intx_fd, resample_fd;
    zx_handle_t resample_handle;
    bool line; /* asserted and not yet EOI'd */
};

static struct virtio_pci *of_vd(struct virtio_dev *vd) { return container_of(vd, struct virtio_pci, vd); }

static uint16_t msix_control(const struct virtio_pci *p) {
    uint16_t c;
    memcpy(&c, p->pci.config + p->msix_cap + 2, 2);
    return c;
}

static bool vector_masked(const struct virtio_pci *p, unsigned v) {
    return (msix_control(p) & MSIX_MASKALL) || (p->msix[v].ctrl & MSIX_ENTRY_MASKED);
}

/* The eventfd that raises vector v now, or -1 when it is out of range or masked (then it
 * is left pending). Lock held. */
static int vector_fd_locked(struct virtio_pci *p, unsigned v) {
    if (v >= p->nvectors) return -1;
    if (vector_masked(p, v)) {
        p->pba |= 1ull << v;
        return -1;
    }
    return p->msi_fd[v];
}

/* Pending vectors whose masks are gone leave the PBA; their eventfds go in fds, for the caller
 * to signal once the lock is dropped, as every interrupt here is. Lock held; returns how many. */
static unsigned take_unmasked_locked(struct virtio_pci *p, int fds[MAX_VECTORS]) {
    unsigned n = 0;
    for (unsigned v = 0; v < p->nvectors; v++)
        if ((p->pba >> v & 1) && !vector_masked(p, v)) {
            p->pba &= ~(1ull << v);
            fds[n++] = p->msi_fd[v];
        }
    return n;
}

static void raise_vectors(struct virtio_pci *p, const int *fds, unsigned n) {
    for (unsigned i = 0; i < n; i++) virtio_raise(&p->vd, (struct virtio_irq){.fd = fds[i], .pin = -1});
}

/* The eventfd that asserts the INTx line, or -1 when it is up already (or absent). Lock held. */
static int intx_fd_locked(struct virtio_pci *p) {
    if (p->intx_fd < 0 || p->line) return -1;
    p->line = true;
    return p->intx_fd;
}

static struct virtio_irq pci_interrupt_locked(struct virtio_dev *vd, uint32_t bits, int q) {
    struct virtio_pci *p = of_vd(vd);
    vd->isr |= bits;
    int fd = (msix_control(p) & MSIX_ENABLE) ? vector_fd_locked(p, q < 0 ? p->config_vector : p->queue_vector[q])
                                             : intx_fd_locked(p);
    return (struct virtio_irq){.fd = fd, .pin = -1};
}

/* The guest EOI'd the INTx line (loop thread): KVM lowered it; raise it again if the ISR
 * still has something the driver has not read. */
static void on_resample(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *s) {
    (void)s;
    struct virtio_pci *p = container_of(w, struct virtio_pci, resample_wait);
    if (st != ZX_OK) return;
    uint64_t n;
    if (read(p->resample_fd, &n, sizeof n) < 0) { /* already consumed */
    }
    struct virtio_irq irq = VIRTIO_NO_IRQ;
    pthread_mutex_lock(&p->vd.lock);
    p->line = false;
    if (p->vd.isr && !(msix_control(p) & MSIX_ENABLE)) irq.fd = intx_fd_locked(p);
    pthread_mutex_unlock(&p->vd.lock);
    virtio_raise(&p->vd, irq);
    async_begin_wait(d, w);
}

static void on_bell(async_dispatcher_t *d, async_guest_bell_trap_t *trap, zx_status_t st,
                    const zx_packet_guest_bell_t *bell) {
    (void)d;
    struct virtio_pci *p = container_of(trap, struct virtio_pci, bell);
    if (st != ZX_OK) return;
    uint64_t q = (bell->addr - (p->bar0 + VIRTIO_PCI_NOTIFY_OFFSET)) / NOTIFY_MULTIPLIER;
    virtio_bell(&p->vd, q < VIRTIO_MAX_QUEUES ? (unsigned)q : VIRTIO_MAX_QUEUES, bell->addr);
}

/* ---- common configuration (virtio_pci_common_cfg) ---- */

/* The structure as the driver sees it, little-endian, for reads of any size and offset. */
static void common_snapshot(struct virtio_pci *p, struct virtio_pci_common_cfg *out) {
    struct virtio_dev *vd = &p->vd;
    struct virtq *q = p->queue_select < vd->nqueues ? &vd->queues[p->queue_select] : NULL;
    uint32_t dfeat = virtio_device_features_word(vd, p->device_feature_select);
    uint32_t gfeat = p->driver_feature_select < 2 ? (uint32_t)(vd->driver_features >> (32 * p->driver_feature_select)) : 0;
    uint16_t nq = (uint16_t)vd->nqueues, qsize = q ? (q->num ? q->num : vd->ops->queue_max) : 0;
    uint16_t qvec = q ? p->queue_vector[p->queue_select] : VIRTIO_MSI_NO_VECTOR, qen = q && q->ready;
    uint16_t qoff = q ? p->queue_select : 0;
    uint64_t desc = q ? q->desc : 0, avail = q ? q->avail : 0, used = q ? q->used : 0;
    *out = (struct virtio_pci_common_cfg){
        .device_feature_select = p->device_feature_select, .device_feature = dfeat,
        .guest_feature_select = p->driver_feature_select, .guest_feature = gfeat,
        .msix_config = p->config_vector, .num_queues = nq, .device_status = vd->status,
        .config_generation = 0, .queue_select = p->queue_select, .queue_size = qsize,
        .queue_msix_vector = qvec, .queue_enable = qen, .queue_notify_off = qoff,
        .queue_desc_lo = (uint32_t)desc, .queue_desc_hi = (uint32_t)(desc >> 32),
        .queue_avail_lo = (uint32_t)avail, .queue_avail_hi = (uint32_t)(avail >> 32),
        .queue_used_lo = (uint32_t)used, .queue_used_hi = (uint32_t)(used >> 32),
    };
}

static void common_write(struct virtio_pci *p, uint64_t off, uint64_t value) {
    struct virtio_dev *vd = &p->vd;
    unsigned qi = p->queue_select;
    struct virtq *q = qi < vd->nqueues ? &vd->queues[qi] : NULL;
    uint32_t v = (uint32_t)value;
    switch (off) {
    case VIRTIO_PCI_COMMON_DFSELECT: p->device_feature_select = v; break;
    case VIRTIO_PCI_COMMON_GFSELECT: p->driver_feature_select = v; break;
    case VIRTIO_PCI_COMMON_GF: virtio_driver_features_write_locked(vd, p->driver_feature_select, v); break;
    case VIRTIO_PCI_COMMON_MSIX: p->config_vector = (uint16_t)(v < p->nvectors ? v : VIRTIO_MSI_NO_VECTOR); break;
    case VIRTIO_PCI_COMMON_STATUS:
        virtio_set_status_locked(vd, (uint8_t)v);
        if (v == 0) {
            p->config_vector = VIRTIO_MSI_NO_VECTOR;
            for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) p->queue_vector[i] = VIRTIO_MSI_NO_VECTOR;
        }
        break;
    case VIRTIO_PCI_COMMON_Q_SELECT: p->queue_select = (uint16_t)v; break;
    case VIRTIO_PCI_COMMON_Q_SIZE: if (q) virtio_queue_size_write_locked(vd, qi, v); break;
    case VIRTIO_PCI_COMMON_Q_MSIX: if (q) p->queue_vector[p->queue_select] = (uint16_t)(v < p->nvectors ? v : VIRTIO_MSI_NO_VECTOR); break;
    case VIRTIO_PCI_COMMON_Q_ENABLE:
        if (q && v == 1 && !q->ready) {
            if (!q->num) q->num = vd->ops->queue_max; /* queue_size reads as the maximum until set */
            virtio_queue_enable_locked(vd, qi);
        }
        break;
    case VIRTIO_PCI_COMMON_Q_DESCLO: case VIRTIO_PCI_COMMON_Q_DESCHI:
        if (q) virtio_queue_addr_write_locked(vd, qi, &q->desc, off == VIRTIO_PCI_COMMON_Q_DESCHI, v);
        break;
    case VIRTIO_PCI_COMMON_Q_AVAILLO: case VIRTIO_PCI_COMMON_Q_AVAILHI:
        if (q) virtio_queue_addr_write_locked(vd, qi, &q->avail, off == VIRTIO_PCI_COMMON_Q_AVAILHI, v);
        break;
    case VIRTIO_PCI_COMMON_Q_USEDLO: case VIRTIO_PCI_COMMON_Q_USEDHI:
        if (q) virtio_queue_addr_write_locked(vd, qi, &q->used, off == VIRTIO_PCI_COMMON_Q_USEDHI, v);
        break;
    }
}

/* ---- the BAR ---- */

static uint64_t bar_read(void *dev, uint64_t off, uint8_t size) {
    struct virtio_pci *p = dev;
    struct virtio_dev *vd = &p->vd;
    uint64_t v = 0;
    pthread_mutex_lock(&vd->lock);
    if (off < OFF_ISR) {
        struct virtio_pci_common_cfg snap;
        common_snapshot(p, &snap);
        if (off + size <= sizeof snap) memcpy(&v, (const uint8_t *)&snap + off, size);
    } else if (off == OFF_ISR) {
        v = vd->isr;
        vd->isr = 0; /* reading the ISR clears it */
    } else if (off >= OFF_DEVICE && off < OFF_DEVICE + 0x1000) {
        v = virtio_config_read_locked(vd, off - OFF_DEVICE, size);
    } else if (off >= OFF_MSIX_TABLE && off < OFF_MSIX_TABLE + 16 * p->nvectors && size == 4) {
        unsigned e = (unsigned)(off - OFF_MSIX_TABLE) / 16, field = (unsigned)(off % 16) / 4;
        const uint32_t *words = &p->msix[e].addr_lo;
        v = words[field];
    } else if (off == OFF_MSIX_PBA) {
        v = size == 8 ? p->pba : (uint32_t)p->pba;
    }
    pthread_mutex_unlock(&vd->lock);
    return v;
}

static void bar_write(void *dev, uint64_t off, uint8_t size, uint64_t value) {
    struct virtio_pci *p = dev;
    struct virtio_dev *vd = &p->vd;
    int fds[MAX_VECTORS];
    unsigned nfds = 0;
    pthread_mutex_lock(&vd->lock);
    if (off < OFF_ISR) {
        common_write(p, off, value & (size >= 8 ? ~0ull : (1ull << (8 * size)) - 1));
    } else if (off >= OFF_DEVICE && off < OFF_DEVICE + 0x1000) {
        virtio_config_write_locked(vd, off - OFF_DEVICE, size, value);
    } else if (off >= OFF_MSIX_TABLE && off < OFF_MSIX_TABLE + 16 * p->nvectors && size == 4) {
        unsigned e = (unsigned)(off - OFF_MSIX_TABLE) / 16, field = (unsigned)(off % 16) / 4;
        uint32_t *words = &p->msix[e].addr_lo;
        words[field] = (uint32_t)value;
        if (field < 3)
            vd->env->msi_set(vd->env, p->msi[e],
                                  (uint64_t)p->msix[e].addr_hi << 32 | p->msix[e].addr_lo, p->msix[e].data);
        else
            nfds = take_unmasked_locked(p, fds);
    }
    pthread_mutex_unlock(&vd->lock);
    raise_vectors(p, fds, nfds);
}

struct pci_wire {
    uint8_t config[256];
    uint32_t device_feature_select, driver_feature_select;
    uint16_t queue_select, config_vector, queue_vector[VIRTIO_MAX_QUEUES];
    struct msix_entry msix[MAX_VECTORS];
    uint64_t pba;
    uint8_t line, pad[7];
};

static size_t pci_save(void *dev, uint8_t *buf, size_t len) {
    struct virtio_pci *p = dev;
    struct pci_wire w = {0};
    pthread_mutex_lock(&p->vd.lock);
    memcpy(w.config, p->pci.config, sizeof w.config);
    w.device_feature_select = p->device_feature_select, w.driver_feature_select = p->driver_feature_select;
    w.queue_select = p->queue_select, w.config_vector = p->config_vector;
    memcpy(w.queue_vector, p->queue_vector, sizeof w.queue_vector);
    memcpy(w.msix, p->msix, sizeof w.msix);
    w.pba = p->pba, w.line = p->line;
    pthread_mutex_unlock(&p->vd.lock);
    if (DEVICE_SAVE(buf, len, w) == 0) return 0;
    size_t n = virtio_dev_save(&p->vd, buf + sizeof w, len - sizeof w);
    return n ? sizeof w + n : 0;
}

/* Configuration space comes back only where the guest could have written it (its wmask): the
 * rest (IDs, capabilities, BAR sizes) is this device's. Every MSI-X vector gets its message
 * again, and an asserted INTx line is asserted again. */
static int pci_restore(void *dev, const uint8_t *buf, size_t len, char *err, size_t errlen) {
    struct virtio_pci *p = dev;
    struct pci_wire w;
    if (len < sizeof w) return snprintf(err, errlen, "virtio-pci: saved state cut short"), -1;
    memcpy(&w, buf, sizeof w);
    if (w.line > 1 || w.pba >> MAX_VECTORS) return snprintf(err, errlen, "virtio-pci: saved interrupt state out of range"), -1;
    if (virtio_dev_restore(&p->vd, buf + sizeof w, len - sizeof w, err, errlen) != 0) return -1;
    pthread_mutex_lock(&p->vd.lock);
    for (unsigned i = 0; i < sizeof w.config; i++)
        p->pci.config[i] = (uint8_t)((p->pci.config[i] & ~p->pci.wmask[i]) | (w.config[i] & p->pci.wmask[i]));
    p->device_feature_select = w.device_feature_select, p->driver_feature_select = w.driver_feature_select;
    p->queue_select = w.queue_select, p->config_vector = w.config_vector;
    memcpy(p->queue_vector, w.queue_vector, sizeof p->queue_vector);
    memcpy(p->msix, w.msix, sizeof p->msix);
    p->pba = w.pba & ((1ull << p->nvectors) - 1);
    p->line = w.line;
    for (unsigned e = 0; e < p->nvectors; e++)
        p->vd.env->msi_set(p->vd.env, p->msi[e], (uint64_t)p->msix[e].addr_hi << 32 | p->msix[e].addr_lo, p->msix[e].data);
    pthread_mutex_unlock(&p->vd.lock);
    if (p->line && p->intx_fd >= 0) {
        uint64_t one = 1;
        if (write(p->intx_fd, &one, sizeof one) != sizeof one)
            return snprintf(err, errlen, "virtio-pci: cannot assert its interrupt line again"), -1;
    }
    return 0;
}

const struct io_ops virtio_pci_ops = {.name = "virtio-pci", .read = bar_read, .write = bar_write, .save = pci_save,
                                      .restore = pci_restore};

/* Configuration-space writes: an MSI-X enable or unmask may release pending vectors. */
static void config_written(struct pci_device *pd, uint32_t off, uint32_t size) {
    struct virtio_pci *p = pd->owner;
    if (off + size <= p->msix_cap || off >= p->msix_cap + 4u) return;
    int fds[MAX_VECTORS];
    pthread_mutex_lock(&p->vd.lock);
    unsigned n = take_unmasked_locked(p, fds);
    pthread_mutex_unlock(&p->vd.lock);
    raise_vectors(p, fds, n);
}

static uint8_t add_virtio_cap(struct pci_device *pd, uint8_t type, uint32_t offset, uint32_t length,
                              bool notify) {
    uint8_t cap[20] = {PCI_CAP_VENDOR, 0, notify ? 20 : 16, type, 0 /* BAR 0 */};
    memcpy(cap + 8, &offset, 4);
    memcpy(cap + 12, &length, 4);
    if (notify) {
        uint32_t mult = NOTIFY_MULTIPLIER;
        memcpy(cap + 16, &mult, 4);
    }
    return pci_add_capability(pd, cap, cap[2], NULL);
}

struct virtio_pci *virtio_pci_create(struct vm_env *env, const struct virtio_device_ops *ops, const void *params,
                                     struct pci_bus *bus, char *err, size_t errlen) {
    int slot = pci_bus_next_slot(bus);
    if (slot < 1) {
        snprintf(err, errlen, "%s: no PCI slot left", ops->name);
        return NULL;
    }
    uint64_t bar0 = VIRTIO_PCI_WINDOW + (uint64_t)(slot - 1) * VIRTIO_PCI_BAR_SIZE;
    uint32_t intx_gsi = (unsigned)slot <= VIRTIO_PCI_INTX_SLOTS ? VIRTIO_PCI_INTX_PIN_BASE + (unsigned)slot - 1 : 0;
    struct virtio_pci *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "%s: out of memory", ops->name);
        return NULL;
    }
    p->resample_handle = ZX_HANDLE_INVALID;
    if (virtio_dev_create(&p->vd, ops, params, env, err, errlen) != 0) {
        virtio_pci_destroy(p);
        return NULL;
    }
    snprintf(err, errlen, "%s: cannot set up its PCI function (interrupts or notify trap)", ops->name);
    p->vd.interrupt_locked = pci_interrupt_locked;
    p->bar0 = bar0;
    p->config_vector = VIRTIO_MSI_NO_VECTOR;
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) p->queue_vector[i] = VIRTIO_MSI_NO_VECTOR;
    for (unsigned i = 0; i < MAX_VECTORS; i++) p->msi_fd[i] = -1;
    p->intx_fd = p->resample_fd = -1;
    p->resample_handle = ZX_HANDLE_INVALID;
    static const uint32_t classes[] = {[VIRTIO_ID_NET] = 0x020000, [VIRTIO_ID_BLOCK] = 0x018000,
                                       [VIRTIO_ID_CONSOLE] = 0x078000, [VIRTIO_ID_RNG] = 0x00ff00};
    uint32_t class_code = ops->device_id < sizeof classes / sizeof classes[0] ? classes[ops->device_id] : 0xff0000;
    pci_device_init(&p->pci, 0x1af4, (uint16_t)(0x1040 + ops->device_id), class_code, 1, 0x1af4,
                    (uint16_t)(0x40 + ops->device_id));
    p->pci.owner = p;
    p->pci.config_written = config_written;
    pci_set_bar64(&p->pci, 0, bar0, VIRTIO_PCI_BAR_SIZE);
    add_virtio_cap(&p->pci, VIRTIO_PCI_CAP_COMMON_CFG, OFF_COMMON, sizeof(struct virtio_pci_common_cfg), false);
    add_virtio_cap(&p->pci, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_NOTIFY_OFFSET, 0x1000, true);
    add_virtio_cap(&p->pci, VIRTIO_PCI_CAP_ISR_CFG, OFF_ISR, 1, false);
    if (p->vd.config_size) add_virtio_cap(&p->pci, VIRTIO_PCI_CAP_DEVICE_CFG, OFF_DEVICE, p->vd.config_size, false);
    p->nvectors = p->vd.nqueues + 1;
    uint16_t control = (uint16_t)(p->nvectors - 1);
    uint32_t table = OFF_MSIX_TABLE, pba = OFF_MSIX_PBA;
    uint8_t msix[12] = {PCI_CAP_MSIX, 0}, wmask[12] = {0};
    memcpy(msix + 2, &control, 2);
    memcpy(msix + 4, &table, 4);
    memcpy(msix + 8, &pba, 4);
    wmask[3] = (MSIX_ENABLE | MSIX_MASKALL) >> 8;
    p->msix_cap = pci_add_capability(&p->pci, msix, sizeof msix, wmask);
    for (unsigned v = 0; v < p->nvectors; v++) {
        p->msix[v].ctrl = MSIX_ENTRY_MASKED;
        if (env->msi_create(env, &p->msi[v], &p->msi_fd[v]) != ZX_OK) {
            virtio_pci_destroy(p);
            return NULL;
        }
    }
    if (intx_gsi) {
        p->pci.config[0x3c] = (uint8_t)intx_gsi;
        p->pci.config[0x3d] = 1; /* INTA */
        if (env->irq_level(env, intx_gsi, &p->intx_fd, &p->resample_fd) != ZX_OK ||
            zx_fd_create(p->resample_fd, 0, &p->resample_handle) != ZX_OK) {
            virtio_pci_destroy(p);
            return NULL;
        }
        p->resample_wait = (async_wait_t){.handler = on_resample, .object = p->resample_handle,
                                          .trigger = ZX_FD_READABLE};
        if (async_begin_wait(env->loop, &p->resample_wait) != ZX_OK) {
            virtio_pci_destroy(p);
            return NULL;
        }
    }
    p->bell.handler = on_bell;
    /* Without a guest (device tests), notifications come only through virtio_bell(). */
    if (env->guest != ZX_HANDLE_INVALID &&
        async_set_guest_bell_trap(env->loop, &p->bell, env->guest, bar0 + VIRTIO_PCI_NOTIFY_OFFSET, 0x1000) != ZX_OK) {
        virtio_pci_destroy(p);
        return NULL;
    }
    if (pci_bus_add(bus, &p->pci) < 0) { /* setup is single-threaded: the slot is still free */
        snprintf(err, errlen, "%s: no PCI slot left", ops->name);
        virtio_pci_destroy(p);
        return NULL;
    }
    return p;
}

uint64_t virtio_pci_bar(const struct virtio_pci *p) { return p->bar0; }

struct pci_device *virtio_pci_device(struct virtio_pci *p) { return &p->pci; }
struct virtio_dev *virtio_pci_dev(struct virtio_pci *p) { return &p->vd; }

/* The guest (its MSI fds, the bell trap) and the loop must be gone first. */
void virtio_pci_destroy(struct virtio_pci *p) {
    if (!p) return;
    if (p->resample_handle != ZX_HANDLE_INVALID) zx_handle_close(p->resample_handle);
    virtio_dev_destroy(&p->vd);
    free(p);
}
