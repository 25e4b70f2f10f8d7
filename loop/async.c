/* lib/async: the dispatcher-independent entry points and the per-thread default. */
#include <lib/async/default.h>
#include <lib/async/irq.h>
#include <lib/async/paged_vmo.h>
#include <lib/async/receiver.h>
#include <lib/async/task.h>
#include <lib/async/time.h>
#include <lib/async/trap.h>
#include <lib/async/wait.h>

static _Thread_local async_dispatcher_t *default_dispatcher;

async_dispatcher_t *async_get_default_dispatcher(void) { return default_dispatcher; }
void async_set_default_dispatcher(async_dispatcher_t *d) { default_dispatcher = d; }

zx_time_t async_now(async_dispatcher_t *d) { return d->ops->v1.now(d); }

__attribute__((hot)) zx_status_t async_begin_wait(async_dispatcher_t *d, async_wait_t *wait) {
    return d->ops->v1.begin_wait(d, wait);
}
zx_status_t async_cancel_wait(async_dispatcher_t *d, async_wait_t *wait) {
    return d->ops->v1.cancel_wait(d, wait);
}
zx_status_t async_post_task(async_dispatcher_t *d, async_task_t *task) {
    return d->ops->v1.post_task(d, task);
}
zx_status_t async_cancel_task(async_dispatcher_t *d, async_task_t *task) {
    return d->ops->v1.cancel_task(d, task);
}
zx_status_t async_queue_packet(async_dispatcher_t *d, async_receiver_t *receiver,
                               const zx_packet_user_t *data) {
    return d->ops->v1.queue_packet(d, receiver, data);
}
zx_status_t async_set_guest_bell_trap(async_dispatcher_t *d, async_guest_bell_trap_t *trap,
                                      zx_handle_t guest, zx_vaddr_t addr, size_t length) {
    return d->ops->v1.set_guest_bell_trap(d, trap, guest, addr, length);
}
zx_status_t async_bind_irq(async_dispatcher_t *d, async_irq_t *irq) {
    if (d->ops->version < ASYNC_OPS_V2) return ZX_ERR_NOT_SUPPORTED;
    return d->ops->v2.bind_irq(d, irq);
}
zx_status_t async_unbind_irq(async_dispatcher_t *d, async_irq_t *irq) {
    if (d->ops->version < ASYNC_OPS_V2) return ZX_ERR_NOT_SUPPORTED;
    return d->ops->v2.unbind_irq(d, irq);
}
zx_status_t async_create_paged_vmo(async_dispatcher_t *d, async_paged_vmo_t *paged_vmo,
                                   uint32_t options, zx_handle_t pager, uint64_t vmo_size,
                                   zx_handle_t *vmo_out) {
    if (d->ops->version < ASYNC_OPS_V2) return ZX_ERR_NOT_SUPPORTED;
    return d->ops->v2.create_paged_vmo(d, paged_vmo, options, pager, vmo_size, vmo_out);
}
zx_status_t async_detach_paged_vmo(async_dispatcher_t *d, async_paged_vmo_t *paged_vmo) {
    if (d->ops->version < ASYNC_OPS_V2) return ZX_ERR_NOT_SUPPORTED;
    return d->ops->v2.detach_paged_vmo(d, paged_vmo);
}
