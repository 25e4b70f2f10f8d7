/* Fuchsia's async-loop on bellhop's port: one port and one timer per loop.
 *
 * Waits, receivers, bell traps and irqs run concurrently on every thread running the loop;
 * tasks run one at a time, in deadline order, FIFO among equal deadlines (the thread that
 * finds `dispatching_tasks` clear drains the due tasks, re-taking the lock between tasks
 * so that a task may cancel a later one). No lock is held while a handler runs.
 */
#include <lib/async-loop/default.h>
#include <lib/async-loop/loop.h>
#include <lib/async/default.h>
#include <lib/async/irq.h>
#include <lib/async/paged_vmo.h>
#include <lib/async/receiver.h>
#include <lib/async/task.h>
#include <lib/async/trap.h>
#include <lib/async/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <zircon/status.h>
#include <zircon/syscalls/hypervisor.h>

#include "loop/object.h"

#define KEY_PORT_CONTROL 0x0000F00000000001ull /* wake-ups (quit, shutdown) */
#define KEY_TIMER_CONTROL 0x0000F00000000002ull

/* Linked only when the hypervisor layer is part of the program. */
__attribute__((weak)) zx_status_t zx_guest_set_trap(zx_handle_t, uint32_t, zx_vaddr_t, size_t,
                                                    zx_handle_t, uint64_t);
__attribute__((weak)) zx_status_t bellhop_guest_set_doorbell(zx_handle_t, zx_gpaddr_t, size_t, uint64_t,
                                                             zx_handle_t, uint64_t);

struct thread_record {
    struct list_node node;
    thrd_t thread;
    async_loop_t *loop;
    char name[16]; /* the thread names itself: naming another opens /proc/self/task/N/comm */
};

struct async_loop {
    async_dispatcher_t dispatcher; /* first: async_loop_from_dispatcher */
    async_loop_config_t config;
    zx_handle_t port;
    zx_handle_t timer;
    struct zx_port *portp; /* referenced */
    _Atomic async_loop_state_t state;
    atomic_uint active_threads;

    struct lock lock; /* loop/lock.h's */
    /* No list of waits: the pending ones are the port's observers and queued signal packets
     * tagged with the loop (port_take_tagged_locked), so a wake takes no lock of the loop's. */
    struct list_node task_list;      /* by deadline */
    struct list_node fifo_task_list; /* ZX_TIME_INFINITE_PAST */
    struct list_node due_list;
    struct list_node irq_list;
    struct list_node thread_list;
    bool dispatching_tasks;
    bool timer_armed;
    bool shutdown_done;          /* cancel_all has finished; destroy waits for it */
    struct cond shutdown_cv;
};

const async_loop_config_t kAsyncLoopConfigNeverAttachToThread = {
    .make_default_for_current_thread = false,
    .default_accessors = {.getter = NULL, .setter = NULL},
};
const async_loop_config_t kAsyncLoopConfigAttachToCurrentThread = {
    .make_default_for_current_thread = true,
    .default_accessors = {.getter = async_get_default_dispatcher,
                          .setter = async_set_default_dispatcher},
};
const async_loop_config_t kAsyncLoopConfigNoAttachToCurrentThread = {
    .make_default_for_current_thread = false,
    .default_accessors = {.getter = async_get_default_dispatcher,
                          .setter = async_set_default_dispatcher},
};

static_assert(sizeof(async_state_t) >= sizeof(struct list_node), "state holds a list node");
#define NODE(op) ((struct list_node *)&(op)->state)
#define FROM_NODE(n, type) ((type *)((char *)(n) - offsetof(type, state)))

static async_loop_t *loop_of(async_dispatcher_t *d) { return (async_loop_t *)d; }
static void node_clear(struct list_node *n) { n->prev = n->next = NULL; }
static bool node_linked(struct list_node *n) { return n->next != NULL && n->next != n; }
static void node_unlink(struct list_node *n) {
    list_delete(n);
    node_clear(n);
}

static async_loop_state_t state_of(async_loop_t *loop) { return atomic_load(&loop->state); }

/* The wait whose handler this thread runs, and the observer that delivered it: a handler that
 * begins the same wait again (every fd handler does) re-links that observer, keeping its
 * references and the fd's epoll registration, instead of freeing it and building another.
 * On the stack of the dispatching call; nested loops save and restore the outer one. */
struct rewait {
    async_loop_t *loop;
    async_wait_t *wait;
    struct observer *obs; /* NULL once taken */
};
static __thread struct rewait *tls_rewait;

/* ---- handler invocation ---- */

static inline void prologue(async_loop_t *loop) {
    if (loop->config.prologue) loop->config.prologue(loop, loop->config.data);
}
static inline void epilogue(async_loop_t *loop) {
    if (loop->config.epilogue) loop->config.epilogue(loop, loop->config.data);
}

static inline void invoke_wait(async_loop_t *loop, async_wait_t *wait, zx_status_t st,
                               const zx_packet_signal_t *signal) {
    prologue(loop);
    wait->handler(&loop->dispatcher, wait, st, signal);
    epilogue(loop);
}
static void invoke_task(async_loop_t *loop, async_task_t *task, zx_status_t st) {
    prologue(loop);
    task->handler(&loop->dispatcher, task, st);
    epilogue(loop);
}
static void invoke_irq(async_loop_t *loop, async_irq_t *irq, zx_status_t st,
                       const zx_packet_interrupt_t *pkt) {
    prologue(loop);
    irq->handler(&loop->dispatcher, irq, st, pkt);
    epilogue(loop);
}

/* ---- tasks ---- */

static void restart_timer_locked(async_loop_t *loop) {
    zx_time_t deadline;
    if (!list_is_empty(&loop->due_list) || !list_is_empty(&loop->fifo_task_list)) {
        deadline = 0; /* fire now */
    } else if (!list_is_empty(&loop->task_list)) {
        deadline = FROM_NODE(loop->task_list.next, async_task_t)->deadline;
    } else {
        zx_timer_cancel(loop->timer);
        return;
    }
    /* The loop's own timer and port live as long as it does: these fail only on a bug, and
     * a loop whose timer is not armed would never run its tasks, so say so and stop. */
    zx_status_t st = zx_timer_set(loop->timer, deadline, 0);
    if (st == ZX_OK && !loop->timer_armed) {
        loop->timer_armed = true;
        st = zx_object_wait_async(loop->timer, loop->port, KEY_TIMER_CONTROL, ZX_TIMER_SIGNALED, 0);
    }
    if (st != ZX_OK) {
        fprintf(stderr, "async-loop: cannot arm the task timer: %s\n", zx_status_get_string(st));
        abort();
    }
}

static void insert_task_locked(async_loop_t *loop, async_task_t *task) {
    if (task->deadline == ZX_TIME_INFINITE_PAST) {
        list_add_tail(&loop->fifo_task_list, NODE(task));
        return;
    }
    /* Scan from the tail: equal deadlines keep their post order. */
    struct list_node *n = loop->task_list.prev;
    while (n != &loop->task_list && FROM_NODE(n, async_task_t)->deadline > task->deadline) n = n->prev;
    list_add_after(n, NODE(task));
}

static void dispatch_tasks(async_loop_t *loop) {
    lock_acquire(&loop->lock);
    if (loop->dispatching_tasks) {
        lock_release(&loop->lock);
        return;
    }
    loop->dispatching_tasks = true;
    for (;;) {
        if (list_is_empty(&loop->due_list)) {
            zx_time_t now = zx_clock_get_monotonic();
            struct list_node *n;
            while ((n = list_peek_head(&loop->task_list)) && FROM_NODE(n, async_task_t)->deadline <= now) {
                list_delete(n);
                list_add_tail(&loop->due_list, n);
            }
            while ((n = list_remove_head(&loop->fifo_task_list))) list_add_tail(&loop->due_list, n);
        }
        if (list_is_empty(&loop->due_list) || state_of(loop) != ASYNC_LOOP_RUNNABLE) break;
        struct list_node *n = list_remove_head(&loop->due_list);
        node_clear(n);
        async_task_t *task = FROM_NODE(n, async_task_t);
        lock_release(&loop->lock);
        invoke_task(loop, task, ZX_OK);
        lock_acquire(&loop->lock);
    }
    loop->dispatching_tasks = false;
    if (state_of(loop) != ASYNC_LOOP_SHUTDOWN) restart_timer_locked(loop);
    lock_release(&loop->lock);
}

/* ---- the dispatcher ops ---- */

static zx_time_t loop_now(async_dispatcher_t *d) {
    (void)d;
    return zx_clock_get_monotonic();
}

/* The state test is only a short cut: a wait begun while shutdown cancels the others is
 * refused by the port (port_take_tagged_locked), atomically with that cancellation. */
__attribute__((hot)) static zx_status_t loop_begin_wait(async_dispatcher_t *d, async_wait_t *wait) {
    async_loop_t *loop = loop_of(d);
    struct observer *reuse = NULL;
    struct rewait *rw = tls_rewait;
    if (rw && rw->wait == wait && rw->loop == loop) {
        reuse = rw->obs;
        rw->obs = NULL;
    }
    if (state_of(loop) == ASYNC_LOOP_SHUTDOWN) {
        if (reuse) observer_free(reuse);
        return ZX_ERR_BAD_STATE;
    }
    if (reuse)
        return object_rewait_async(reuse, loop->portp, wait->object, (uintptr_t)wait, wait->trigger, wait->options,
                                   loop);
    return object_wait_async_on(loop->portp, wait->object, (uintptr_t)wait, wait->trigger, wait->options, loop);
}

/* NOT_FOUND also when another thread has taken the packet and is about to run the handler. */
static zx_status_t loop_cancel_wait(async_dispatcher_t *d, async_wait_t *wait) {
    async_loop_t *loop = loop_of(d);
    lock_acquire(&g_signal_lock);
    struct observer *o = port_take_tagged_locked(loop->portp, loop, (uintptr_t)wait, false);
    lock_release(&g_signal_lock);
    if (!o) return ZX_ERR_NOT_FOUND;
    observer_free(o);
    return ZX_OK;
}

static zx_status_t loop_post_task(async_dispatcher_t *d, async_task_t *task) {
    async_loop_t *loop = loop_of(d);
    lock_acquire(&loop->lock);
    zx_status_t st = ZX_ERR_BAD_STATE;
    if (state_of(loop) != ASYNC_LOOP_SHUTDOWN) {
        insert_task_locked(loop, task);
        bool first = task->deadline == ZX_TIME_INFINITE_PAST || loop->task_list.next == NODE(task);
        if (!loop->dispatching_tasks && first) restart_timer_locked(loop);
        st = ZX_OK;
    }
    lock_release(&loop->lock);
    return st;
}

static zx_status_t loop_cancel_task(async_dispatcher_t *d, async_task_t *task) {
    async_loop_t *loop = loop_of(d);
    lock_acquire(&loop->lock);
    zx_status_t st = ZX_ERR_NOT_FOUND;
    if (node_linked(NODE(task))) {
        bool first = loop->task_list.next == NODE(task);
        node_unlink(NODE(task));
        if (first && !loop->dispatching_tasks) restart_timer_locked(loop);
        st = ZX_OK;
    }
    lock_release(&loop->lock);
    return st;
}

static zx_status_t loop_queue_packet(async_dispatcher_t *d, async_receiver_t *receiver,
                                     const zx_packet_user_t *data) {
    async_loop_t *loop = loop_of(d);
    if (state_of(loop) == ASYNC_LOOP_SHUTDOWN) return ZX_ERR_BAD_STATE;
    zx_port_packet_t pkt = {.key = (uintptr_t)receiver, .type = ZX_PKT_TYPE_USER, .status = ZX_OK};
    if (data) pkt.user = *data;
    return port_queue_user(loop->portp, &pkt);
}

static zx_status_t loop_set_guest_bell_trap(async_dispatcher_t *d, async_guest_bell_trap_t *trap,
                                            zx_handle_t guest, zx_vaddr_t addr, size_t length) {
    async_loop_t *loop = loop_of(d);
    if (state_of(loop) == ASYNC_LOOP_SHUTDOWN) return ZX_ERR_BAD_STATE;
    if (!zx_guest_set_trap) return ZX_ERR_NOT_SUPPORTED;
    return zx_guest_set_trap(guest, ZX_GUEST_TRAP_BELL, addr, length, loop->port, (uintptr_t)trap);
}

static const async_ops_t loop_ops;

/* Its packets are GUEST_BELL packets keyed by the trap, as a bell trap's: the same dispatch. */
zx_status_t async_set_guest_doorbell(async_dispatcher_t *d, async_guest_bell_trap_t *trap, zx_handle_t guest,
                                     zx_vaddr_t addr, size_t len, uint64_t datamatch) {
    if (!d || d->ops != &loop_ops || !bellhop_guest_set_doorbell) return ZX_ERR_NOT_SUPPORTED;
    async_loop_t *loop = loop_of(d);
    if (state_of(loop) == ASYNC_LOOP_SHUTDOWN) return ZX_ERR_BAD_STATE;
    return bellhop_guest_set_doorbell(guest, addr, len, datamatch, loop->port, (uintptr_t)trap);
}

static zx_status_t loop_bind_irq(async_dispatcher_t *d, async_irq_t *irq) {
    async_loop_t *loop = loop_of(d);
    lock_acquire(&loop->lock);
    zx_status_t st = ZX_ERR_BAD_STATE;
    if (state_of(loop) != ASYNC_LOOP_SHUTDOWN) {
        list_add_tail(&loop->irq_list, NODE(irq));
        st = zx_interrupt_bind(irq->object, loop->port, (uintptr_t)irq, ZX_INTERRUPT_BIND);
        if (st != ZX_OK) node_unlink(NODE(irq));
    }
    lock_release(&loop->lock);
    return st;
}

static zx_status_t loop_unbind_irq(async_dispatcher_t *d, async_irq_t *irq) {
    async_loop_t *loop = loop_of(d);
    lock_acquire(&loop->lock);
    zx_status_t st = ZX_ERR_NOT_FOUND;
    if (node_linked(NODE(irq))) {
        st = zx_interrupt_bind(irq->object, loop->port, 0, ZX_INTERRUPT_UNBIND);
        node_unlink(NODE(irq));
    }
    lock_release(&loop->lock);
    return st;
}

static zx_status_t loop_create_paged_vmo(async_dispatcher_t *d, async_paged_vmo_t *p, uint32_t o,
                                         zx_handle_t pager, uint64_t size, zx_handle_t *out) {
    (void)d, (void)p, (void)o, (void)pager, (void)size, (void)out;
    return ZX_ERR_NOT_SUPPORTED;
}

static zx_status_t loop_detach_paged_vmo(async_dispatcher_t *d, async_paged_vmo_t *p) {
    (void)d, (void)p;
    return ZX_ERR_NOT_SUPPORTED;
}

static const async_ops_t loop_ops = {
    .version = ASYNC_OPS_V2,
    .v1 = {.now = loop_now,
           .begin_wait = loop_begin_wait,
           .cancel_wait = loop_cancel_wait,
           .post_task = loop_post_task,
           .cancel_task = loop_cancel_task,
           .queue_packet = loop_queue_packet,
           .set_guest_bell_trap = loop_set_guest_bell_trap},
    .v2 = {.bind_irq = loop_bind_irq,
           .unbind_irq = loop_unbind_irq,
           .create_paged_vmo = loop_create_paged_vmo,
           .detach_paged_vmo = loop_detach_paged_vmo},
};

/* ---- lifecycle ---- */

zx_status_t async_loop_create(const async_loop_config_t *config, async_loop_t **out) {
    if (!config || !out) return ZX_ERR_INVALID_ARGS;
    if (!config->default_accessors.getter != !config->default_accessors.setter)
        return ZX_ERR_INVALID_ARGS;
    if (config->make_default_for_current_thread && !config->default_accessors.setter)
        return ZX_ERR_INVALID_ARGS;
    async_loop_t *loop = calloc(1, sizeof *loop);
    if (!loop) return ZX_ERR_NO_MEMORY;
    loop->dispatcher.ops = &loop_ops;
    loop->config = *config;
    atomic_init(&loop->state, ASYNC_LOOP_RUNNABLE);
    list_init(&loop->task_list);
    list_init(&loop->fifo_task_list);
    list_init(&loop->due_list);
    list_init(&loop->irq_list);
    list_init(&loop->thread_list);
    zx_status_t st = zx_port_create(config->irq_support ? ZX_PORT_BIND_TO_INTERRUPT : 0, &loop->port);
    struct zx_object *pobj = NULL;
    if (st == ZX_OK) st = zx_timer_create(ZX_TIMER_SLACK_LATE, ZX_CLOCK_MONOTONIC, &loop->timer);
    if (st == ZX_OK) st = handle_get(loop->port, ZX_OBJ_TYPE_PORT, ZX_RIGHT_NONE, &pobj);
    if (st != ZX_OK) {
        zx_handle_close(loop->timer);
        zx_handle_close(loop->port);
        free(loop);
        return st;
    }
    loop->portp = port_from_object(pobj);
    if (config->make_default_for_current_thread) config->default_accessors.setter(&loop->dispatcher);
    *out = loop;
    return ZX_OK;
}

async_dispatcher_t *async_loop_get_dispatcher(async_loop_t *loop) { return &loop->dispatcher; }
zx_handle_t async_loop_get_port(async_loop_t *loop) { return loop->port; }
async_loop_t *async_loop_from_dispatcher(async_dispatcher_t *d) { return (async_loop_t *)d; }
async_loop_state_t async_loop_get_state(async_loop_t *loop) { return state_of(loop); }

static void wake_threads(async_loop_t *loop) {
    unsigned n = atomic_load(&loop->active_threads);
    zx_port_packet_t pkt = {.key = KEY_PORT_CONTROL, .type = ZX_PKT_TYPE_USER};
    for (unsigned i = 0; i < n; i++) port_queue_user(loop->portp, &pkt);
}

void async_loop_quit(async_loop_t *loop) {
    async_loop_state_t expected = ASYNC_LOOP_RUNNABLE;
    if (!atomic_compare_exchange_strong(&loop->state, &expected, ASYNC_LOOP_QUIT)) return;
    wake_threads(loop);
}

zx_status_t async_loop_reset_quit(async_loop_t *loop) {
    if (atomic_load(&loop->active_threads) != 0) return ZX_ERR_BAD_STATE;
    async_loop_state_t expected = ASYNC_LOOP_QUIT;
    if (atomic_compare_exchange_strong(&loop->state, &expected, ASYNC_LOOP_RUNNABLE)) return ZX_OK;
    return expected == ASYNC_LOOP_RUNNABLE ? ZX_OK : ZX_ERR_BAD_STATE;
}

/* obs: the observer that delivered the packet (NULL if the port had none to hand over). */
__attribute__((hot)) static void dispatch_wait(async_loop_t *loop, const zx_port_packet_t *pkt,
                                               struct observer *obs) {
    async_wait_t *wait = (async_wait_t *)(uintptr_t)pkt->key;
    struct rewait rw = {.loop = loop, .wait = wait, .obs = obs}, *outer = tls_rewait;
    tls_rewait = &rw;
    invoke_wait(loop, wait, pkt->status, &pkt->signal);
    tls_rewait = outer;
    if (rw.obs) observer_free(rw.obs);
}

__attribute__((hot)) static zx_status_t run_once(async_loop_t *loop, zx_time_t deadline) {
    async_loop_state_t s = state_of(loop);
    if (s == ASYNC_LOOP_SHUTDOWN) return ZX_ERR_BAD_STATE;
    if (s == ASYNC_LOOP_QUIT) return ZX_ERR_CANCELED;
    zx_port_packet_t pkt;
    struct observer *obs;
    zx_status_t st = port_wait(loop->portp, deadline, &pkt, &obs);
    if (st != ZX_OK) return st;
    if (pkt.type == ZX_PKT_TYPE_SIGNAL_ONE && pkt.key != KEY_TIMER_CONTROL) {
        dispatch_wait(loop, &pkt, obs);
        return ZX_OK;
    }
    if (obs) observer_free(obs);
    if (pkt.key == KEY_TIMER_CONTROL) {
        lock_acquire(&loop->lock);
        loop->timer_armed = false;
        lock_release(&loop->lock);
        dispatch_tasks(loop);
        return ZX_OK;
    }
    if (pkt.key == KEY_PORT_CONTROL) return ZX_OK;
    switch (pkt.type) {
    case ZX_PKT_TYPE_USER: {
        async_receiver_t *r = (async_receiver_t *)(uintptr_t)pkt.key;
        prologue(loop);
        r->handler(&loop->dispatcher, r, pkt.status, &pkt.user);
        epilogue(loop);
        break;
    }
    case ZX_PKT_TYPE_GUEST_BELL: {
        async_guest_bell_trap_t *t = (async_guest_bell_trap_t *)(uintptr_t)pkt.key;
        prologue(loop);
        t->handler(&loop->dispatcher, t, pkt.status, &pkt.guest_bell);
        epilogue(loop);
        break;
    }
    case ZX_PKT_TYPE_INTERRUPT:
        invoke_irq(loop, (async_irq_t *)(uintptr_t)pkt.key, pkt.status, &pkt.interrupt);
        break;
    default:
        break; /* no other packet kind is ever queued on a loop's port */
    }
    return ZX_OK;
}

__attribute__((hot)) zx_status_t async_loop_run(async_loop_t *loop, zx_time_t deadline, bool once) {
    atomic_fetch_add(&loop->active_threads, 1);
    zx_status_t st;
    do {
        st = run_once(loop, deadline);
    } while (st == ZX_OK && !once);
    atomic_fetch_sub(&loop->active_threads, 1);
    return st;
}

zx_status_t async_loop_run_until_idle(async_loop_t *loop) {
    zx_status_t st = async_loop_run(loop, 0, false);
    return st == ZX_ERR_TIMED_OUT ? ZX_OK : st;
}

static void *worker(void *arg) {
    const struct thread_record *rec = arg; /* freed only once this thread is joined */
    async_loop_t *loop = rec->loop;
    if (rec->name[0]) pthread_setname_np(pthread_self(), rec->name);
    if (loop->config.default_accessors.setter) loop->config.default_accessors.setter(&loop->dispatcher);
    async_loop_run(loop, ZX_TIME_INFINITE, false);
    if (loop->config.default_accessors.setter) loop->config.default_accessors.setter(NULL);
    return NULL;
}

/* thrd_t is pthread_t in glibc; pthread_create (unlike thrd_create) is seen by TSan. */
static_assert(sizeof(thrd_t) == sizeof(pthread_t), "thrd_t is a pthread_t");

zx_status_t async_loop_start_thread(async_loop_t *loop, const char *name, thrd_t *out) {
    struct thread_record *rec = calloc(1, sizeof *rec);
    if (!rec) return ZX_ERR_NO_MEMORY;
    rec->loop = loop;
    if (name) snprintf(rec->name, sizeof rec->name, "%s", name);
    lock_acquire(&loop->lock);
    zx_status_t st = ZX_OK;
    if (state_of(loop) == ASYNC_LOOP_SHUTDOWN) {
        st = ZX_ERR_BAD_STATE;
    } else if (pthread_create((pthread_t *)&rec->thread, NULL, worker, rec) != 0) {
        st = ZX_ERR_NO_MEMORY;
    } else {
        list_add_tail(&loop->thread_list, &rec->node);
        if (out) *out = rec->thread;
        rec = NULL;
    }
    lock_release(&loop->lock);
    free(rec);
    return st;
}

/* A worker cannot join itself (shutdown from one of its own handlers): its record stays,
 * and whoever joins or destroys the loop later joins it once it has left the loop. */
void async_loop_join_threads(async_loop_t *loop) {
    struct thread_record *self = NULL;
    lock_acquire(&loop->lock);
    struct list_node *n;
    while ((n = list_remove_head(&loop->thread_list))) {
        struct thread_record *rec = list_entry(n, struct thread_record, node);
        if (pthread_equal((pthread_t)rec->thread, pthread_self())) {
            self = rec;
            continue;
        }
        lock_release(&loop->lock);
        pthread_join((pthread_t)rec->thread, NULL);
        free(rec);
        lock_acquire(&loop->lock);
    }
    if (self) list_add_tail(&loop->thread_list, &self->node);
    lock_release(&loop->lock);
}

/* One wait at a time, each taken under the lock just before its handler runs: a handler may
 * cancel and free another wait (a connection tearing down its other waits), which must then
 * find it still pending, get ZX_OK and never see its handler run. Each observer goes before
 * its handler runs: a handler may free its own wait. The first take makes the port refuse the
 * loop's new waits, so this ends. */
static void cancel_waits(async_loop_t *loop) {
    for (;;) {
        lock_acquire(&g_signal_lock);
        struct observer *o = port_take_tagged_locked(loop->portp, loop, 0, true);
        lock_release(&g_signal_lock);
        if (!o) return;
        async_wait_t *wait = (async_wait_t *)(uintptr_t)o->pp.packet.key;
        observer_free(o);
        invoke_wait(loop, wait, ZX_ERR_CANCELED, NULL);
    }
}

static void cancel_all(async_loop_t *loop) {
    struct list_node *n;
    cancel_waits(loop);
    lock_acquire(&loop->lock);
    struct list_node *task_lists[3] = {&loop->due_list, &loop->task_list, &loop->fifo_task_list};
    for (int i = 0; i < 3; i++) {
        while ((n = list_remove_head(task_lists[i]))) {
            node_clear(n);
            lock_release(&loop->lock);
            invoke_task(loop, FROM_NODE(n, async_task_t), ZX_ERR_CANCELED);
            lock_acquire(&loop->lock);
        }
    }
    while ((n = list_remove_head(&loop->irq_list))) {
        node_clear(n);
        async_irq_t *irq = FROM_NODE(n, async_irq_t);
        zx_interrupt_bind(irq->object, loop->port, 0, ZX_INTERRUPT_UNBIND);
        lock_release(&loop->lock);
        invoke_irq(loop, irq, ZX_ERR_CANCELED, NULL);
        lock_acquire(&loop->lock);
    }
    lock_release(&loop->lock);
}

void async_loop_shutdown(async_loop_t *loop) {
    if (atomic_exchange(&loop->state, ASYNC_LOOP_SHUTDOWN) == ASYNC_LOOP_SHUTDOWN) return;
    wake_threads(loop);
    async_loop_join_threads(loop);
    cancel_all(loop);
    if (loop->config.make_default_for_current_thread &&
        loop->config.default_accessors.getter() == &loop->dispatcher)
        loop->config.default_accessors.setter(NULL);
    lock_acquire(&loop->lock);
    loop->shutdown_done = true;
    cond_broadcast(&loop->shutdown_cv);
    lock_release(&loop->lock);
}

/* The shutdown may be in progress on a worker (called from one of its handlers): wait for it
 * to finish cancelling before joining that worker and freeing the loop. */
void async_loop_destroy(async_loop_t *loop) {
    async_loop_shutdown(loop);
    lock_acquire(&loop->lock);
    while (!loop->shutdown_done) cond_wait(&loop->shutdown_cv, &loop->lock, NULL);
    lock_release(&loop->lock);
    async_loop_join_threads(loop);
    zx_handle_close(loop->timer);
    zx_handle_close(loop->port);
    object_unref(port_obj(loop->portp));
    free(loop);
}
