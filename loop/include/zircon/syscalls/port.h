#ifndef SYSROOT_ZIRCON_SYSCALLS_PORT_H_
#define SYSROOT_ZIRCON_SYSCALLS_PORT_H_

#include <assert.h>
#include <stddef.h>
#include <zircon/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* zx_object_wait_async() options. */
#define ZX_WAIT_ASYNC_ONCE ((uint32_t)0u)
#define ZX_WAIT_ASYNC_TIMESTAMP ((uint32_t)1u)
#define ZX_WAIT_ASYNC_EDGE ((uint32_t)2u)
#define ZX_WAIT_ASYNC_BOOT_TIMESTAMP ((uint32_t)4u)

/* zx_port_create() options. */
#define ZX_PORT_BIND_TO_INTERRUPT ((uint32_t)(1u << 0))

typedef uint32_t zx_packet_type_t;

#define ZX_PKT_TYPE_USER ((zx_packet_type_t)0x00u)
#define ZX_PKT_TYPE_SIGNAL_ONE ((zx_packet_type_t)0x01u)
/* 0x02 was previously used for ZX_PKT_TYPE_SIGNAL_REP. */
#define ZX_PKT_TYPE_GUEST_BELL ((zx_packet_type_t)0x03u)
#define ZX_PKT_TYPE_GUEST_MEM ((zx_packet_type_t)0x04u)
#define ZX_PKT_TYPE_GUEST_IO ((zx_packet_type_t)0x05u)
#define ZX_PKT_TYPE_GUEST_VCPU ((zx_packet_type_t)0x06u)
#define ZX_PKT_TYPE_INTERRUPT ((zx_packet_type_t)0x07u)
#define ZX_PKT_TYPE_PAGE_REQUEST ((zx_packet_type_t)0x09u)
#define ZX_PKT_TYPE_PROCESSOR_POWER_LEVEL_TRANSITION_REQUEST ((zx_packet_type_t)0x0Au)

#define ZX_PKT_IS_USER(type) ((type) == ZX_PKT_TYPE_USER)
#define ZX_PKT_IS_SIGNAL_ONE(type) ((type) == ZX_PKT_TYPE_SIGNAL_ONE)
#define ZX_PKT_IS_GUEST_BELL(type) ((type) == ZX_PKT_TYPE_GUEST_BELL)
#define ZX_PKT_IS_GUEST_MEM(type) ((type) == ZX_PKT_TYPE_GUEST_MEM)
#define ZX_PKT_IS_GUEST_IO(type) ((type) == ZX_PKT_TYPE_GUEST_IO)
#define ZX_PKT_IS_GUEST_VCPU(type) ((type) == ZX_PKT_TYPE_GUEST_VCPU)
#define ZX_PKT_IS_INTERRUPT(type) ((type) == ZX_PKT_TYPE_INTERRUPT)
#define ZX_PKT_IS_PAGE_REQUEST(type) ((type) == ZX_PKT_TYPE_PAGE_REQUEST)

#define ZX_PKT_GUEST_VCPU_INTERRUPT ((uint32_t)0u)
#define ZX_PKT_GUEST_VCPU_STARTUP ((uint32_t)1u)

#define ZX_PAGER_VMO_READ ((uint16_t)0u)
#define ZX_PAGER_VMO_COMPLETE ((uint16_t)1u)
#define ZX_PAGER_VMO_DIRTY ((uint16_t)2u)

typedef union zx_packet_user {
    uint64_t u64[4];
    uint32_t u32[8];
    uint16_t u16[16];
    uint8_t c8[32];
} zx_packet_user_t;

typedef struct zx_packet_signal {
    zx_signals_t trigger;
    zx_signals_t observed;
    uint64_t count;     /* always 1 */
    zx_time_t timestamp; /* 0 unless ZX_WAIT_ASYNC_TIMESTAMP / _BOOT_TIMESTAMP */
    uint64_t reserved1;
} zx_packet_signal_t;

typedef struct zx_packet_guest_bell {
    zx_gpaddr_t addr;
    uint64_t reserved0;
    uint64_t reserved1;
    uint64_t reserved2;
} zx_packet_guest_bell_t;

/* bellhop difference: KVM decodes the access (KVM_EXIT_MMIO), so the x86 packet uses the
 * decoded layout Zircon uses on arm64 (addr, access_size, sign_extend, xt, read, data). */
typedef struct zx_packet_guest_mem {
    zx_gpaddr_t addr;
    uint8_t access_size;
    bool sign_extend;
    uint8_t xt;
    bool read;
    uint8_t padding1[4];
    uint64_t data;
    uint64_t reserved;
} zx_packet_guest_mem_t;

typedef struct zx_packet_guest_io {
    uint16_t port;
    uint8_t access_size;
    bool input;
    union {
        struct {
            uint8_t u8;
            uint8_t padding1[3];
        };
        struct {
            uint16_t u16;
            uint8_t padding2[2];
        };
        uint32_t u32;
        uint8_t data[4];
    };
    uint64_t reserved0;
    uint64_t reserved1;
    uint64_t reserved2;
} zx_packet_guest_io_t;

typedef struct zx_packet_guest_vcpu {
    uint32_t type;
    uint8_t padding1[4];
    union {
        struct {
            uint64_t mask;
            uint8_t vector;
            uint8_t padding1[7];
        } interrupt;
        struct {
            uint64_t id;
            zx_gpaddr_t entry;
        } startup;
    };
    uint64_t reserved;
} zx_packet_guest_vcpu_t;

typedef struct zx_packet_interrupt {
    zx_instant_boot_t timestamp;
    uint64_t reserved0;
    uint64_t reserved1;
    uint64_t reserved2;
} zx_packet_interrupt_t;

typedef struct zx_packet_page_request {
    uint16_t command;
    uint16_t flags;
    uint32_t reserved0;
    uint64_t offset;
    uint64_t length;
    uint64_t reserved1;
} zx_packet_page_request_t;

typedef struct zx_packet_processor_power_level_transition_request {
    uint32_t domain_id;
    uint32_t options;
    uint64_t control_interface;
    uint64_t control_argument;
    uint64_t reserved;
} zx_packet_processor_power_level_transition_request_t;

typedef struct zx_port_packet {
    uint64_t key;
    zx_packet_type_t type;
    zx_status_t status;
    union {
        zx_packet_user_t user;
        zx_packet_signal_t signal;
        zx_packet_guest_bell_t guest_bell;
        zx_packet_guest_mem_t guest_mem;
        zx_packet_guest_io_t guest_io;
        zx_packet_guest_vcpu_t guest_vcpu;
        zx_packet_interrupt_t interrupt;
        zx_packet_page_request_t page_request;
        zx_packet_processor_power_level_transition_request_t processor_power_level_transition;
    };
} zx_port_packet_t;

#define ZX_PORT_STATIC_ASSERT_SIZE_(t, n) static_assert(sizeof(t) == (n), #t " layout")
ZX_PORT_STATIC_ASSERT_SIZE_(zx_port_packet_t, 48);
ZX_PORT_STATIC_ASSERT_SIZE_(zx_packet_user_t, 32);
ZX_PORT_STATIC_ASSERT_SIZE_(zx_packet_signal_t, 32);
ZX_PORT_STATIC_ASSERT_SIZE_(zx_packet_guest_bell_t, 32);
ZX_PORT_STATIC_ASSERT_SIZE_(zx_packet_guest_mem_t, 32);
ZX_PORT_STATIC_ASSERT_SIZE_(zx_packet_guest_io_t, 32);
ZX_PORT_STATIC_ASSERT_SIZE_(zx_packet_guest_vcpu_t, 32);
ZX_PORT_STATIC_ASSERT_SIZE_(zx_packet_interrupt_t, 32);
ZX_PORT_STATIC_ASSERT_SIZE_(zx_packet_page_request_t, 32);
ZX_PORT_STATIC_ASSERT_SIZE_(zx_packet_processor_power_level_transition_request_t, 32);
static_assert(offsetof(zx_port_packet_t, key) == 0, "key");
static_assert(offsetof(zx_port_packet_t, type) == 8, "type");
static_assert(offsetof(zx_port_packet_t, status) == 12, "status");
static_assert(offsetof(zx_port_packet_t, user) == 16, "union");
static_assert(offsetof(zx_packet_signal_t, observed) == 4, "observed");
static_assert(offsetof(zx_packet_signal_t, count) == 8, "count");
static_assert(offsetof(zx_packet_signal_t, timestamp) == 16, "timestamp");
static_assert(offsetof(zx_packet_guest_mem_t, access_size) == 8, "access_size");
static_assert(offsetof(zx_packet_guest_mem_t, sign_extend) == 9, "sign_extend");
static_assert(offsetof(zx_packet_guest_mem_t, xt) == 10, "xt");
static_assert(offsetof(zx_packet_guest_mem_t, read) == 11, "read");
static_assert(offsetof(zx_packet_guest_mem_t, data) == 16, "data");
static_assert(offsetof(zx_packet_guest_io_t, access_size) == 2, "access_size");
static_assert(offsetof(zx_packet_guest_io_t, input) == 3, "input");
static_assert(offsetof(zx_packet_guest_io_t, u32) == 4, "io data");
static_assert(offsetof(zx_packet_guest_vcpu_t, interrupt.mask) == 8, "mask");
static_assert(offsetof(zx_packet_guest_vcpu_t, interrupt.vector) == 16, "vector");
static_assert(offsetof(zx_packet_guest_vcpu_t, startup.id) == 8, "id");
static_assert(offsetof(zx_packet_guest_vcpu_t, startup.entry) == 16, "entry");
static_assert(offsetof(zx_packet_guest_vcpu_t, reserved) == 24, "reserved");
static_assert(offsetof(zx_packet_page_request_t, offset) == 8, "offset");
#undef ZX_PORT_STATIC_ASSERT_SIZE_

#ifdef __cplusplus
}
#endif

#endif
