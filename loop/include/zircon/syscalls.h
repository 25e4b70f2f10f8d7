/* The Zircon calls bellhop implements in user space on Linux (libloop.a), with Zircon's
 * names, signatures and documented semantics.
 *
 * Where Linux forces a difference:
 *  - Handles are process-local integers; there is no kernel object behind them.
 *  - zx_port_queue on a full port (4096 queued zx_port_queue packets) returns
 *    ZX_ERR_SHOULD_WAIT (Zircon raises ZX_EXCP_POLICY_CODE_PORT_TOO_MANY_PACKETS instead).
 *  - Too many pending waits on one port (65536 observers) returns ZX_ERR_NO_RESOURCES
 *    (Zircon raises ZX_EXCP_POLICY_CODE_PORT_TOO_MANY_OBSERVERS).
 *  - Waits are attached to objects (RFC-0240): closing the handle used for a wait does not
 *    end it; closing the last handle to the object, or to the port, does.
 *  - zx_port_cancel_key removes pending waits and every queued packet with the key, whatever
 *    its source (signal, user or trap packets), as RFC-0240 has it; interrupt packets stay.
 *  - Linux extension: zx_fd_create wraps a file descriptor as a waitable object
 *    (ZX_FD_READABLE / ZX_FD_WRITABLE / ZX_FD_HANGUP / ZX_FD_ERROR). Its signals are read
 *    from the fd when waited on; ZX_WAIT_ASYNC_EDGE is not supported for it.
 *  - Virtual interrupts only: zx_interrupt_create needs ZX_INTERRUPT_VIRTUAL and no resource.
 */
#ifndef SYSROOT_ZIRCON_SYSCALLS_H_
#define SYSROOT_ZIRCON_SYSCALLS_H_

#include <zircon/syscalls/port.h>
#include <zircon/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Clocks and time. */
zx_time_t zx_clock_get_monotonic(void);
zx_instant_boot_t zx_clock_get_boot(void);
zx_time_t zx_deadline_after(zx_duration_t nanoseconds);
zx_status_t zx_nanosleep(zx_time_t deadline);

#define ZX_NSEC(n) ((zx_duration_t)(1ll * (n)))
#define ZX_USEC(n) ((zx_duration_t)(1000ll * (n)))
#define ZX_MSEC(n) ((zx_duration_t)(1000000ll * (n)))
#define ZX_SEC(n) ((zx_duration_t)(1000000000ll * (n)))

/* Handles. */
zx_status_t zx_handle_close(zx_handle_t handle);
zx_status_t zx_handle_close_many(const zx_handle_t *handles, size_t num_handles);
zx_status_t zx_handle_duplicate(zx_handle_t handle, zx_rights_t rights, zx_handle_t *out);
zx_status_t zx_handle_replace(zx_handle_t handle, zx_rights_t rights, zx_handle_t *out);

/* Objects. */
zx_status_t zx_object_signal(zx_handle_t handle, uint32_t clear_mask, uint32_t set_mask);
zx_status_t zx_object_wait_one(zx_handle_t handle, zx_signals_t signals, zx_time_t deadline,
                               zx_signals_t *observed);
zx_status_t zx_object_wait_async(zx_handle_t handle, zx_handle_t port, uint64_t key,
                                 zx_signals_t signals, uint32_t options);

/* Events. */
zx_status_t zx_event_create(uint32_t options, zx_handle_t *out);

/* Ports. */
zx_status_t zx_port_create(uint32_t options, zx_handle_t *out);
zx_status_t zx_port_queue(zx_handle_t handle, const zx_port_packet_t *packet);
zx_status_t zx_port_wait(zx_handle_t handle, zx_time_t deadline, zx_port_packet_t *packet);
zx_status_t zx_port_cancel(zx_handle_t handle, zx_handle_t source, uint64_t key);
zx_status_t zx_port_cancel_key(zx_handle_t handle, uint32_t options, uint64_t key);

/* Timers. */
#define ZX_TIMER_SLACK_CENTER ((uint32_t)0u)
#define ZX_TIMER_SLACK_EARLY ((uint32_t)1u)
#define ZX_TIMER_SLACK_LATE ((uint32_t)2u)
zx_status_t zx_timer_create(uint32_t options, zx_clock_t clock_id, zx_handle_t *out);
zx_status_t zx_timer_set(zx_handle_t handle, zx_time_t deadline, zx_duration_t slack);
zx_status_t zx_timer_cancel(zx_handle_t handle);

/* Virtual interrupts. */
#define ZX_INTERRUPT_VIRTUAL ((uint32_t)0x10u)
#define ZX_INTERRUPT_BIND ((uint32_t)0x0u)
#define ZX_INTERRUPT_UNBIND ((uint32_t)0x1u)
zx_status_t zx_interrupt_create(zx_handle_t src_obj, uint32_t src_num, uint32_t options,
                                zx_handle_t *out_handle);
zx_status_t zx_interrupt_bind(zx_handle_t handle, zx_handle_t port_handle, uint64_t key,
                              uint32_t options);
zx_status_t zx_interrupt_trigger(zx_handle_t handle, uint32_t options, zx_instant_boot_t timestamp);
zx_status_t zx_interrupt_ack(zx_handle_t handle);
zx_status_t zx_interrupt_destroy(zx_handle_t handle);

/* Linux extension: a waitable object for a file descriptor (not owned: the caller closes
 * the fd after the object's last handle). */
zx_status_t zx_fd_create(int fd, uint32_t options, zx_handle_t *out);

#ifdef __cplusplus
}
#endif

#endif
