/* Shared set-up for the hypervisor integration tests (real KVM). */
#ifndef BELLHOP_TESTS_KVM_HV_COMMON_H
#define BELLHOP_TESTS_KVM_HV_COMMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <zircon/syscalls.h>
#include <zircon/syscalls/hypervisor.h>
#include <zircon/syscalls/port.h>

#include "tests/kvm/hv_guest.h"
#include "tests/lib/check.h"

#define GUEST_SNIPPET(name, body)                                                            \
    extern const uint8_t name[], name##_end[];                                               \
    __asm__(".pushsection .rodata\n" GUEST_ASM_MACROS ".globl " #name ", " #name "_end\n"     \
            #name ":\n.code32\n" body ".code64\n" #name "_end:\n"                            \
            ".purgem POWEROFF\n.purgem RESET\n.purgem SETUP_GDT\n.popsection\n")

struct hv {
    zx_handle_t guest;
    uint8_t *ram;
};

static inline void hv_init(struct hv *h, const uint8_t *code, const uint8_t *end) {
    zx_status_t st = zx_guest_create(0, &h->guest);
    if (st == ZX_ERR_NOT_SUPPORTED) test_skip("no usable /dev/kvm");
    CHECK_EQ(st, ZX_OK);
    CHECK_EQ(zx_guest_map_memory(h->guest, 0, GUEST_RAM, 0, (void **)&h->ram), ZX_OK);
    memcpy(h->ram + GUEST_CODE, code, (size_t)(end - code));
}

static inline volatile uint32_t *hv_word(struct hv *h, uint32_t gpa) {
    return (volatile uint32_t *)(h->ram + gpa);
}

/* A vCPU on its own thread, entered until it stops; packets it gets are counted. */
struct runner {
    zx_handle_t guest;
    zx_gpaddr_t entry;
    zx_handle_t vcpu;
    pthread_t thread;
    atomic_int started;
    atomic_int finished;
    atomic_int packets;
    zx_status_t create_status;
    zx_status_t result;
};

static inline void *runner_main(void *arg) {
    struct runner *r = arg;
    r->create_status = zx_vcpu_create(r->guest, 0, r->entry, &r->vcpu);
    atomic_store(&r->started, 1);
    if (r->create_status == ZX_OK) {
        zx_port_packet_t pkt;
        while ((r->result = zx_vcpu_enter(r->vcpu, &pkt)) == ZX_OK) atomic_fetch_add(&r->packets, 1);
    }
    atomic_store(&r->finished, 1);
    return NULL;
}

static inline void runner_start(struct runner *r, zx_handle_t guest, zx_gpaddr_t entry) {
    *r = (struct runner){.guest = guest, .entry = entry};
    CHECK_EQ(pthread_create(&r->thread, NULL, runner_main, r), 0);
    while (!atomic_load(&r->started)) sched_yield();
    CHECK_EQ(r->create_status, ZX_OK);
}

static inline void runner_join(struct runner *r) {
    pthread_join(r->thread, NULL);
    zx_handle_close(r->vcpu);
}

#endif
