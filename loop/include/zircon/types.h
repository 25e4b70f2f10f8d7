#ifndef SYSROOT_ZIRCON_TYPES_H_
#define SYSROOT_ZIRCON_TYPES_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zircon/errors.h>
#include <zircon/rights.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int32_t zx_status_t;
typedef uint32_t zx_handle_t;
typedef uint32_t zx_signals_t;
typedef int64_t zx_time_t;         /* monotonic nanoseconds */
typedef int64_t zx_duration_t;
typedef int64_t zx_instant_mono_t;
typedef int64_t zx_instant_boot_t;
typedef int64_t zx_duration_mono_t;
typedef uint64_t zx_ticks_t;
typedef uint64_t zx_koid_t;
typedef uint64_t zx_off_t;
typedef uintptr_t zx_vaddr_t;
typedef uintptr_t zx_paddr_t;
typedef uintptr_t zx_gpaddr_t;
typedef uint32_t zx_obj_type_t;
typedef uint32_t zx_clock_t;

#define ZX_HANDLE_INVALID ((zx_handle_t)0)
#define ZX_HANDLE_FIXED_BITS_MASK ((zx_handle_t)0x3)

#define ZX_TIME_INFINITE INT64_MAX
#define ZX_TIME_INFINITE_PAST INT64_MIN

#define ZX_CLOCK_MONOTONIC ((zx_clock_t)0)
#define ZX_CLOCK_BOOT ((zx_clock_t)1)

/* Signals. */
#define ZX_SIGNAL_NONE ((zx_signals_t)0u)
#define ZX_USER_SIGNAL_ALL ((zx_signals_t)0xff000000u)

#define ZX_OBJECT_READABLE ((zx_signals_t)1u << 0)
#define ZX_OBJECT_WRITABLE ((zx_signals_t)1u << 1)
#define ZX_OBJECT_PEER_CLOSED ((zx_signals_t)1u << 2)
#define ZX_OBJECT_SIGNALED ((zx_signals_t)1u << 3)
#define ZX_OBJECT_SIGNAL_4 ((zx_signals_t)1u << 4)
#define ZX_OBJECT_SIGNAL_5 ((zx_signals_t)1u << 5)
#define ZX_OBJECT_SIGNAL_6 ((zx_signals_t)1u << 6)
#define ZX_OBJECT_SIGNAL_7 ((zx_signals_t)1u << 7)
#define ZX_OBJECT_HANDLE_CLOSED ((zx_signals_t)1u << 23)

#define ZX_USER_SIGNAL_0 ((zx_signals_t)1u << 24)
#define ZX_USER_SIGNAL_1 ((zx_signals_t)1u << 25)
#define ZX_USER_SIGNAL_2 ((zx_signals_t)1u << 26)
#define ZX_USER_SIGNAL_3 ((zx_signals_t)1u << 27)
#define ZX_USER_SIGNAL_4 ((zx_signals_t)1u << 28)
#define ZX_USER_SIGNAL_5 ((zx_signals_t)1u << 29)
#define ZX_USER_SIGNAL_6 ((zx_signals_t)1u << 30)
#define ZX_USER_SIGNAL_7 ((zx_signals_t)1u << 31)

#define ZX_SIGNAL_HANDLE_CLOSED ZX_OBJECT_HANDLE_CLOSED

#define ZX_EVENT_SIGNALED ZX_OBJECT_SIGNALED
#define ZX_EVENT_SIGNAL_MASK (ZX_USER_SIGNAL_ALL | ZX_EVENT_SIGNALED)

#define ZX_TIMER_SIGNALED ZX_OBJECT_SIGNALED

#define ZX_CHANNEL_READABLE ZX_OBJECT_READABLE
#define ZX_CHANNEL_WRITABLE ZX_OBJECT_WRITABLE
#define ZX_CHANNEL_PEER_CLOSED ZX_OBJECT_PEER_CLOSED

/* Linux extension: signals of a file-descriptor object (zx_fd_create in <zircon/syscalls.h>). */
#define ZX_FD_READABLE ZX_OBJECT_READABLE
#define ZX_FD_WRITABLE ZX_OBJECT_WRITABLE
#define ZX_FD_HANGUP ZX_OBJECT_PEER_CLOSED
#define ZX_FD_ERROR ZX_OBJECT_SIGNAL_4

/* Object types. */
#define ZX_OBJ_TYPE_NONE ((zx_obj_type_t)0u)
#define ZX_OBJ_TYPE_EVENT ((zx_obj_type_t)5u)
#define ZX_OBJ_TYPE_PORT ((zx_obj_type_t)6u)
#define ZX_OBJ_TYPE_INTERRUPT ((zx_obj_type_t)9u)
#define ZX_OBJ_TYPE_TIMER ((zx_obj_type_t)22u)
#define ZX_OBJ_TYPE_GUEST ((zx_obj_type_t)25u)
#define ZX_OBJ_TYPE_VCPU ((zx_obj_type_t)26u)
/* Linux extension: a file descriptor wrapped as a waitable object. */
#define ZX_OBJ_TYPE_FD ((zx_obj_type_t)0x10001u)

#ifdef __cplusplus
}
#endif

#endif
