/* vCPUs on real KVM: thread binding, kick, interrupts through the in-kernel LAPIC, register
 * state, GUEST_VCPU packets from the vCPU-control device, the CPU topology CPUID shows each
 * vCPU, and how a guest's end is reported. */
#include <sched.h>
#include <stdio.h>
#include <unistd.h>

#include "tests/kvm/hv_common.h"

#define KEY_IO 0x2222u

GUEST_SNIPPET(spin_guest,
    "1:  incl 0x5000\n"
    "    jmp 1b\n");
GUEST_SNIPPET(halt_guest,
    "    cli\n"
    "1:  hlt\n"
    "    jmp 1b\n");
GUEST_SNIPPET(poweroff_guest, "    POWEROFF\n");
GUEST_SNIPPET(reset_guest, "    RESET\n");
GUEST_SNIPPET(triple_fault_guest,
    "    movw $0, 0x3900\n"               /* an empty IDT */
    "    movl $0, 0x3902\n"
    "    lidt 0x3900\n"
    "    ud2\n");                          /* raised by the CPU: an INT3 would go to PVM's emulator */

static void *enter_elsewhere(void *arg) {
    zx_port_packet_t p;
    return (void *)(intptr_t)zx_vcpu_enter(*(zx_handle_t *)arg, &p);
}

TEST(a_vcpu_belongs_to_its_thread) {
    struct hv h;
    hv_init(&h, poweroff_guest, poweroff_guest_end);
    zx_handle_t vcpu, second;
    CHECK_EQ(zx_vcpu_create(h.guest, 1, GUEST_CODE, &vcpu), ZX_ERR_INVALID_ARGS);
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &second), ZX_ERR_BAD_STATE);
    pthread_t t;
    void *ret;
    CHECK_EQ(pthread_create(&t, NULL, enter_elsewhere, &vcpu), 0);
    pthread_join(t, &ret);
    CHECK_EQ((intptr_t)ret, ZX_ERR_BAD_STATE);
    zx_vcpu_state_t s;
    CHECK_EQ(zx_vcpu_read_state(vcpu, ZX_VCPU_IO, &s, sizeof s), ZX_ERR_INVALID_ARGS);
    CHECK_EQ(zx_vcpu_read_state(vcpu, ZX_VCPU_STATE, &s, sizeof s - 1), ZX_ERR_INVALID_ARGS);
    zx_port_packet_t p;
    /* Every exit enters through the thread's cached handle: rights and closing still count. */
    zx_handle_t weak;
    CHECK_EQ(zx_handle_duplicate(vcpu, ZX_RIGHT_READ, &weak), ZX_OK);
    CHECK_EQ(zx_vcpu_enter(weak, &p), ZX_ERR_ACCESS_DENIED);
    CHECK_EQ(zx_vcpu_write_state(weak, ZX_VCPU_STATE, &s, sizeof s), ZX_ERR_ACCESS_DENIED);
    CHECK_EQ(zx_handle_close(weak), ZX_OK);
    CHECK_EQ(zx_vcpu_enter(weak, &p), ZX_ERR_BAD_HANDLE);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_UNAVAILABLE);
    zx_handle_close(vcpu);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_BAD_HANDLE);
    /* Once the first is gone, the thread may have another. */
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &second), ZX_OK);
    CHECK_EQ(zx_vcpu_enter(second, &p), ZX_ERR_UNAVAILABLE);
    zx_handle_close(second);
    zx_handle_close(h.guest);
}

TEST(kick_cancels_the_current_or_next_enter) {
    struct hv h;
    hv_init(&h, spin_guest, spin_guest_end);
    zx_handle_t vcpu;
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    zx_port_packet_t p;
    /* next: several kicks collapse into one */
    CHECK_EQ(zx_vcpu_kick(vcpu), ZX_OK);
    CHECK_EQ(zx_vcpu_kick(vcpu), ZX_OK);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_CANCELED);
    CHECK_EQ(*hv_word(&h, 0x5000), 0);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);

    /* current, from another thread, twice: the guest goes on between the two */
    hv_init(&h, spin_guest, spin_guest_end);
    for (int round = 0; round < 2; round++) {
        struct runner r;
        if (round == 0) {
            runner_start(&r, h.guest, GUEST_CODE);
        } else {
            /* a fresh thread with the same guest: its vCPU id is 1 */
            runner_start(&r, h.guest, GUEST_CODE);
        }
        uint32_t before = *hv_word(&h, 0x5000);
        while (*hv_word(&h, 0x5000) == before) sched_yield();
        CHECK_EQ(atomic_load(&r.finished), 0);
        CHECK_EQ(zx_vcpu_kick(r.vcpu), ZX_OK);
        runner_join(&r);
        CHECK_EQ(r.result, ZX_ERR_CANCELED);
    }
    zx_handle_close(h.guest);
}

TEST(kick_wakes_a_halted_vcpu) {
    struct hv h;
    hv_init(&h, halt_guest, halt_guest_end);
    struct runner r;
    runner_start(&r, h.guest, GUEST_CODE);
    usleep(200000);
    CHECK_EQ(atomic_load(&r.finished), 0);
    CHECK_EQ(zx_vcpu_kick(r.vcpu), ZX_OK);
    runner_join(&r);
    CHECK_EQ(r.result, ZX_ERR_CANCELED);
    zx_handle_close(h.guest);
}

/* The profile's tick: the vCPU's own timer stops a spinning guest, and a halted one, where it
 * was, again and again, until it is stopped; the guest runs on between ticks.
 * The tick is wall-clock: on a loaded (nested, sanitized) host several ticks can pass before a
 * first entry runs guest code (seen: 5 ticks of 2 ms), or land while the thread is outside
 * KVM_RUN, and the enter then ends with the guest where it was. So "runs on" is asked of the
 * series, not of each pair: the guest moves on between ticks 4 times within 500 ticks. */
TEST(a_tick_stops_the_guest_where_it_runs_until_stopped) {
    struct hv h;
    hv_init(&h, spin_guest, spin_guest_end);
    zx_handle_t vcpu;
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    CHECK_EQ(bellhop_vcpu_set_tick(vcpu, 2000000), ZX_OK);
    zx_port_packet_t p;
    uint32_t before = 0;
    int ticks = 0, moved = 0;
    for (; ticks < 500 && moved < 4; ticks++) {
        CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_TIMED_OUT);
        bellhop_vcpu_sregs_t s;
        CHECK_EQ(bellhop_vcpu_read_sregs(vcpu, &s), ZX_OK);
        CHECK_MSG(s.rip >= GUEST_CODE && s.rip < GUEST_CODE + (uint64_t)(spin_guest_end - spin_guest), "rip %#llx",
                  (unsigned long long)s.rip);
        uint32_t now = *hv_word(&h, 0x5000);
        CHECK(now >= before);
        if (ticks > 0 && now > before) moved++;
        before = now;
    }
    CHECK_MSG(moved == 4, "the guest moved on between only %d of %d ticks", moved, ticks);
    /* stopped: only a kick ends the enter now */
    CHECK_EQ(bellhop_vcpu_set_tick(vcpu, 0), ZX_OK);
    CHECK_EQ(zx_vcpu_kick(vcpu), ZX_OK);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_CANCELED);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);

    hv_init(&h, halt_guest, halt_guest_end);
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    CHECK_EQ(bellhop_vcpu_set_tick(vcpu, 2000000), ZX_OK);
    for (int i = 0; i < 3; i++) CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_TIMED_OUT);
    CHECK_EQ(bellhop_vcpu_set_tick(vcpu, 0), ZX_OK);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);
}

/* Vector 0x40's handler reports through port 0x64; the main path says "ready" on 0x60
 * once the IDT is loaded and the LAPIC enabled, then halts with interrupts on. */
GUEST_SNIPPET(irq_guest,
    "    movl $0x80000, %esp\n"             /* the interrupt frame needs a stack in RAM */
    "    SETUP_GDT\n"
    "    movl $(2f - irq_guest + 0x1000), %eax\n"
    "    movw %ax, 0x4200\n"               /* IDT entry 0x40 at 0x4000 + 0x40 * 8 */
    "    movw $0x10, 0x4202\n"
    "    movw $0x8e00, 0x4204\n"
    "    shrl $16, %eax\n"
    "    movw %ax, 0x4206\n"
    "    movw $0x7ff, 0x3900\n"
    "    movl $0x4000, 0x3902\n"
    "    lidt 0x3900\n"
    "    movl $0x1ff, 0xfee000f0\n"        /* LAPIC spurious-vector register: enable */
    "    outb %al, $0x60\n"
    "    sti\n"
    "1:  hlt\n"
    "    jmp 1b\n"
    "2:  movl $0x40, %eax\n"
    "    outl %eax, $0x64\n"
    "    POWEROFF\n");

struct later {
    zx_handle_t vcpu;
    uint32_t vector;
};
static void *interrupt_later(void *arg) {
    struct later *l = arg;
    usleep(50000);
    zx_vcpu_interrupt(l->vcpu, l->vector);
    return NULL;
}

TEST(an_interrupt_from_another_thread_reaches_the_guest_idt) {
    struct hv h;
    hv_init(&h, irq_guest, irq_guest_end);
    CHECK_EQ(zx_guest_set_trap(h.guest, ZX_GUEST_TRAP_IO, 0x60, 0x10, ZX_HANDLE_INVALID, KEY_IO), ZX_OK);
    zx_handle_t vcpu;
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    zx_port_packet_t p;
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_OK);
    CHECK_EQ(p.type, ZX_PKT_TYPE_GUEST_IO);
    CHECK_EQ(p.guest_io.port, 0x60);
    /* out-of-range vectors are ignored, as in Zircon */
    CHECK_EQ(zx_vcpu_interrupt(vcpu, 3), ZX_OK);
    CHECK_EQ(zx_vcpu_interrupt(vcpu, 1000), ZX_OK);
    struct later l = {vcpu, 0x40};
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, interrupt_later, &l), 0);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_OK);
    pthread_join(t, NULL);
    CHECK_EQ(p.type, ZX_PKT_TYPE_GUEST_IO);
    CHECK_EQ(p.guest_io.port, 0x64);
    CHECK_EQ(p.guest_io.u32, 0x40);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_UNAVAILABLE);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);
}

GUEST_SNIPPET(state_guest,
    "    movl $0x11111111, %eax\n"
    "    movl $0x22222222, %ebx\n"
    "    outb %al, $0x60\n"                /* the host reads and rewrites registers here */
    "    movl %ebx, %eax\n"
    "    outl %eax, $0x64\n"
    "    movl %esi, %eax\n"
    "    outl %eax, $0x68\n"
    "    POWEROFF\n");

TEST(read_and_write_state) {
    struct hv h;
    hv_init(&h, state_guest, state_guest_end);
    CHECK_EQ(zx_guest_set_trap(h.guest, ZX_GUEST_TRAP_IO, 0x60, 0x10, ZX_HANDLE_INVALID, KEY_IO), ZX_OK);
    zx_handle_t vcpu;
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    zx_port_packet_t p;
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_OK);
    zx_vcpu_state_t s;
    CHECK_EQ(zx_vcpu_read_state(vcpu, ZX_VCPU_STATE, &s, sizeof s), ZX_OK);
    CHECK_EQ(s.rax, 0x11111111);
    CHECK_EQ(s.rbx, 0x22222222);
    CHECK(s.rflags & 2);
    s.rbx = 0x33333333;
    s.rsi = 0x44444444;
    CHECK_EQ(zx_vcpu_write_state(vcpu, ZX_VCPU_STATE, &s, sizeof s - 8), ZX_ERR_INVALID_ARGS);
    CHECK_EQ(zx_vcpu_write_state(vcpu, ZX_VCPU_STATE, &s, sizeof s), ZX_OK);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_OK);
    CHECK_EQ(p.guest_io.u32, 0x33333333);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_OK);
    CHECK_EQ(p.guest_io.u32, 0x44444444);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_UNAVAILABLE);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);
}

/* A vCPU made before its kernel is loaded (BELLHOP_VCPU_ENTRY_LATER) is given its entry and
 * the boot protocol's registers once, before it runs: the guest reports EAX, EBX and ESI. */
GUEST_SNIPPET(boot_state_guest,
    "    outl %eax, $0x60\n"
    "    movl %ebx, %eax\n"
    "    outl %eax, $0x60\n"
    "    movl %esi, %eax\n"
    "    outl %eax, $0x60\n"
    "    POWEROFF\n");

struct made_later {
    zx_handle_t guest;
    zx_status_t create, given, again, enter;
    uint32_t reported[3];
};

/* A vCPU made to wait for its entry, given one, then run to its three reports. */
static void run_made_later(struct made_later *l, uint32_t base) {
    zx_handle_t vcpu;
    if ((l->create = zx_vcpu_create(l->guest, BELLHOP_VCPU_ENTRY_LATER, 0, &vcpu)) != ZX_OK) return;
    bellhop_vcpu_boot_state_t b = {.entry = GUEST_CODE, .rax = base + 1, .rbx = base + 2, .rsi = base + 3};
    l->given = bellhop_vcpu_set_boot_state(vcpu, &b);
    l->again = bellhop_vcpu_set_boot_state(vcpu, &b);
    zx_port_packet_t p;
    for (unsigned i = 0; i < 3 && (l->enter = zx_vcpu_enter(vcpu, &p)) == ZX_OK; i++) l->reported[i] = p.guest_io.u32;
    zx_handle_close(vcpu);
}

static void *made_later_main(void *arg) {
    run_made_later(arg, 0x100);
    return NULL;
}

TEST(a_vcpu_made_before_its_kernel_is_given_its_boot_state_once) {
    struct hv h;
    hv_init(&h, boot_state_guest, boot_state_guest_end);
    CHECK_EQ(zx_guest_set_trap(h.guest, ZX_GUEST_TRAP_IO, 0x60, 0x10, ZX_HANDLE_INVALID, KEY_IO), ZX_OK);
    /* vCPU 0, the one KVM makes runnable, and vCPU 1, which KVM parks for INIT/SIPI */
    struct made_later bsp = {.guest = h.guest}, ap = {.guest = h.guest};
    run_made_later(&bsp, 0x2badb000);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, made_later_main, &ap), 0);
    pthread_join(t, NULL);
    for (unsigned i = 0; i < 2; i++) {
        const struct made_later *l = i ? &ap : &bsp;
        uint32_t base = i ? 0x100 : 0x2badb000;
        CHECK_EQ(l->create, ZX_OK);
        CHECK_EQ(l->given, ZX_OK);
        CHECK_EQ(l->again, ZX_ERR_BAD_STATE); /* once */
        CHECK_MSG(l->enter == ZX_OK && l->reported[0] == base + 1 && l->reported[1] == base + 2 &&
                      l->reported[2] == base + 3,
                  "vCPU %u: enter %d, reported %#x %#x %#x", i, l->enter, l->reported[0], l->reported[1], l->reported[2]);
    }
    /* a vCPU made with its entry has its state already */
    zx_handle_t vcpu;
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    CHECK_EQ(bellhop_vcpu_set_boot_state(vcpu, &(bellhop_vcpu_boot_state_t){.entry = GUEST_CODE}), ZX_ERR_BAD_STATE);
    CHECK_EQ(bellhop_vcpu_set_boot_state(vcpu, NULL), ZX_ERR_INVALID_ARGS);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);
}

/* vCPU 0 asks for vCPU 1 at 0x1800 and for vector 0x41 on CPUs 0 and 2; vCPU 1 reports its
 * id (read from the control device) and powers off. */
GUEST_SNIPPET(smp_guest,
    "    movl $1, %eax\n"
    "    movw $0x4f0, %dx\n"
    "    outl %eax, %dx\n"                  /* ARG0_LO = 1 */
    "    xorl %eax, %eax\n"
    "    movw $0x4f4, %dx\n"
    "    outl %eax, %dx\n"                  /* ARG0_HI = 0 */
    "    movl $0x1800, %eax\n"
    "    movw $0x4f8, %dx\n"
    "    outl %eax, %dx\n"                  /* ARG1 = entry */
    "    movl $1, %eax\n"
    "    movw $0x4fc, %dx\n"
    "    outl %eax, %dx\n"                  /* STARTUP */
    "    movl $5, %eax\n"
    "    movw $0x4f0, %dx\n"
    "    outl %eax, %dx\n"                  /* mask: CPUs 0 and 2 */
    "    movl $0x80000000, %eax\n"
    "    movw $0x4f4, %dx\n"
    "    outl %eax, %dx\n"                  /* ... and 63 */
    "    movl $0x41, %eax\n"
    "    movw $0x4f8, %dx\n"
    "    outl %eax, %dx\n"
    "    xorl %eax, %eax\n"
    "    movw $0x4fc, %dx\n"
    "    outl %eax, %dx\n"                  /* INTERRUPT */
    "    POWEROFF\n"
    ".skip 0x800 - (. - smp_guest), 0x90\n"
    "    movw $0x4f0, %dx\n"
    "    inl %dx, %eax\n"
    "    outl %eax, $0x60\n"
    "    POWEROFF\n");

struct ap {
    zx_handle_t guest;
    zx_gpaddr_t entry;
    zx_status_t create, first, last;
    zx_port_packet_t packet;
};
static void *ap_main(void *arg) {
    struct ap *a = arg;
    zx_handle_t vcpu;
    a->create = zx_vcpu_create(a->guest, 0, a->entry, &vcpu);
    if (a->create != ZX_OK) return NULL;
    a->first = zx_vcpu_enter(vcpu, &a->packet);
    zx_port_packet_t p;
    a->last = zx_vcpu_enter(vcpu, &p);
    zx_handle_close(vcpu);
    return NULL;
}

TEST(startup_and_interrupt_packets) {
    struct hv h;
    hv_init(&h, smp_guest, smp_guest_end);
    CHECK_EQ(zx_guest_set_trap(h.guest, ZX_GUEST_TRAP_IO, 0x60, 0x10, ZX_HANDLE_INVALID, KEY_IO), ZX_OK);
    zx_handle_t vcpu;
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    zx_port_packet_t p;
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_OK);
    CHECK_EQ(p.type, ZX_PKT_TYPE_GUEST_VCPU);
    CHECK_EQ(p.key, 0);
    CHECK_EQ(p.guest_vcpu.type, ZX_PKT_GUEST_VCPU_STARTUP);
    CHECK_EQ(p.guest_vcpu.startup.id, 1);
    CHECK_EQ(p.guest_vcpu.startup.entry, 0x1800);
    /* The VMM's part: start that CPU on its own thread. */
    struct ap a = {.guest = h.guest, .entry = p.guest_vcpu.startup.entry};
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, ap_main, &a), 0);
    pthread_join(t, NULL);
    CHECK_EQ(a.create, ZX_OK);
    CHECK_EQ(a.first, ZX_OK);
    CHECK_EQ(a.packet.type, ZX_PKT_TYPE_GUEST_IO);
    CHECK_EQ(a.packet.guest_io.u32, 1); /* its id */
    CHECK_EQ(a.last, ZX_ERR_UNAVAILABLE);

    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_OK);
    CHECK_EQ(p.type, ZX_PKT_TYPE_GUEST_VCPU);
    CHECK_EQ(p.guest_vcpu.type, ZX_PKT_GUEST_VCPU_INTERRUPT);
    CHECK_EQ(p.guest_vcpu.interrupt.mask, 0x8000000000000005ull);
    CHECK_EQ(p.guest_vcpu.interrupt.vector, 0x41);
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_UNAVAILABLE);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);
}

/* Each vCPU runs the CPUID queries the host left at 0x5000 ({leaf, subleaf} pairs up to a
 * leaf of ~0) and stores {eax, ebx, ecx, edx} of each at 0x10000 + 0x200 * its id. */
GUEST_SNIPPET(cpuid_guest,
    "    movw $0x4f0, %dx\n"
    "    inl %dx, %eax\n"                   /* this vCPU's id */
    "    shll $9, %eax\n"
    "    leal 0x10000(%eax), %edi\n"
    "    movl $0x5000, %esi\n"
    "1:  movl (%esi), %eax\n"
    "    cmpl $0xffffffff, %eax\n"
    "    je 2f\n"
    "    movl 4(%esi), %ecx\n"
    "    cpuid\n"
    "    movl %eax, (%edi)\n"
    "    movl %ebx, 4(%edi)\n"
    "    movl %ecx, 8(%edi)\n"
    "    movl %edx, 12(%edi)\n"
    "    addl $8, %esi\n"
    "    addl $16, %edi\n"
    "    jmp 1b\n"
    "2:  POWEROFF\n");

enum { Q_MAX_BASIC, Q_1, Q_4, Q_B = Q_4 + 4, Q_1F = Q_B + 3, Q_MAX_EXT = Q_1F + 3, Q_80000008, Q_8000001D,
       Q_8000001E = Q_8000001D + 4, Q_COUNT };
static const uint32_t cpuid_queries[Q_COUNT][2] = {
    [Q_MAX_BASIC] = {0, 0}, [Q_1] = {1, 0}, [Q_4] = {4, 0}, {4, 1}, {4, 2}, {4, 3},
    [Q_B] = {0xb, 0}, {0xb, 1}, {0xb, 2}, [Q_1F] = {0x1f, 0}, {0x1f, 1}, {0x1f, 2},
    [Q_MAX_EXT] = {0x80000000, 0}, [Q_80000008] = {0x80000008, 0},
    [Q_8000001D] = {0x8000001d, 0}, {0x8000001d, 1}, {0x8000001d, 2}, {0x8000001d, 3},
    [Q_8000001E] = {0x8000001e, 0},
};
_Static_assert(Q_COUNT * 16 <= 0x200, "one vCPU's answers fit its slot");

struct cpuid_regs {
    uint32_t eax, ebx, ecx, edx;
};

/* A guest of n vCPUs (threads per core as bellhop_guest_set_topology has it, 0: not called),
 * each run in turn on this thread; out[id] gets vCPU id's answers. */
static void cpuid_of_every_vcpu(unsigned n, unsigned threads, struct cpuid_regs (*out)[Q_COUNT]) {
    struct hv h;
    hv_init(&h, cpuid_guest, cpuid_guest_end);
    for (unsigned q = 0; q < Q_COUNT; q++) memcpy(h.ram + 0x5000 + 8 * q, cpuid_queries[q], 8);
    memset(h.ram + 0x5000 + 8 * Q_COUNT, 0xff, 8);
    if (threads) CHECK_EQ(bellhop_guest_set_topology(h.guest, n, threads), ZX_OK);
    for (unsigned id = 0; id < n; id++) {
        zx_handle_t vcpu;
        zx_port_packet_t p;
        CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
        CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_UNAVAILABLE);
        zx_handle_close(vcpu);
        memcpy(out[id], h.ram + 0x10000 + 0x200 * id, sizeof out[id]);
    }
    zx_handle_close(h.guest);
}

static unsigned bits_for(unsigned n) {
    unsigned k = 0;
    while ((1u << k) < n) k++;
    return k;
}

#define FIELD(v, lo, width) (((v) >> (lo)) & ((1u << (width)) - 1))
#define CHECK_CPU(cond) CHECK_MSG(cond, "vCPU %u of %u, %u thread(s) per core: %s", id, n, threads, #cond)

/* Leaf 0xB's or 0x1F's levels: SMT (threads to a core), core (the package), then none; the
 * x2APIC id is the vCPU's, its thread bits below its core number. */
static void check_levels(const struct cpuid_regs *l, unsigned id, unsigned n, unsigned threads) {
    unsigned smt = bits_for(threads), logical = (n + threads - 1) / threads * threads;
    CHECK_CPU(FIELD(l[0].ecx, 0, 16) == (1u << 8 | 0) && FIELD(l[0].ebx, 0, 16) == threads);
    CHECK_CPU(FIELD(l[0].eax, 0, 5) == smt);
    CHECK_CPU(FIELD(l[1].ecx, 0, 16) == (2u << 8 | 1) && FIELD(l[1].ebx, 0, 16) == logical);
    CHECK_CPU(FIELD(l[1].eax, 0, 5) == smt + bits_for(logical / threads));
    CHECK_CPU(FIELD(l[2].ecx, 8, 8) == 0 && FIELD(l[2].ecx, 0, 8) == 2 && l[2].ebx == 0);
    for (unsigned k = 0; k < 3; k++) CHECK_CPU(l[k].edx == id);
    CHECK_CPU(l[0].edx >> FIELD(l[0].eax, 0, 5) == id / threads); /* threads 2k, 2k+1 share core k */
    CHECK_CPU(l[1].edx >> FIELD(l[1].eax, 0, 5) == 0);            /* one package */
}

/* Deterministic cache parameters: L1 and L2 a core's, L3 the package's; cores per package. */
static void check_caches(const struct cpuid_regs *c, bool amd, unsigned id, unsigned n, unsigned threads) {
    unsigned logical = (n + threads - 1) / threads * threads;
    for (unsigned k = 0; k < 4 && FIELD(c[k].eax, 0, 5); k++) {
        unsigned sharing = FIELD(c[k].eax, 14, 12) + 1, level = FIELD(c[k].eax, 5, 3);
        unsigned want = level <= 2 ? threads : amd ? logical : 1u << bits_for(logical);
        CHECK_MSG(sharing == want, "vCPU %u of %u: %s subleaf %u (L%u) shared by %u, not %u", id, n,
                  amd ? "0x8000001d" : "leaf 4", k, level, sharing, want);
        if (!amd) CHECK_CPU(FIELD(c[k].eax, 26, 6) + 1 == 1u << bits_for(logical / threads));
    }
}

static void check_topology(const struct cpuid_regs *r, unsigned id, unsigned n, unsigned threads) {
    unsigned max_basic = r[Q_MAX_BASIC].eax, max_ext = r[Q_MAX_EXT].eax;
    unsigned logical = (n + threads - 1) / threads * threads;
    bool amd = r[Q_MAX_BASIC].ebx == 0x68747541; /* "Auth" */
    CHECK_CPU(FIELD(r[Q_1].ebx, 24, 8) == id);
    CHECK_CPU(FIELD(r[Q_1].ebx, 16, 8) == logical && (r[Q_1].edx >> 28 & 1) == (logical > 1));
    if (max_basic >= 4) check_caches(&r[Q_4], false, id, n, threads);
    if (max_basic >= 0xb) check_levels(&r[Q_B], id, n, threads);
    if (max_basic >= 0x1f) check_levels(&r[Q_1F], id, n, threads);
    if (amd && max_ext >= 0x80000008)
        CHECK_CPU(FIELD(r[Q_80000008].ecx, 0, 8) == logical - 1 &&
                  FIELD(r[Q_80000008].ecx, 12, 4) == bits_for(threads) + bits_for(logical / threads));
    if (amd && max_ext >= 0x8000001d) check_caches(&r[Q_8000001D], true, id, n, threads);
    if (amd && max_ext >= 0x8000001e) {
        CHECK_CPU(r[Q_8000001E].eax == id && FIELD(r[Q_8000001E].ebx, 0, 8) == id / threads);
        CHECK_CPU(FIELD(r[Q_8000001E].ebx, 8, 8) == threads - 1);
    }
}

TEST(cpuid_with_two_threads_per_core_pairs_the_vcpus) {
    static struct cpuid_regs r[32][Q_COUNT];
    static const unsigned sizes[] = {1, 2, 6, 32};
    for (unsigned s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        cpuid_of_every_vcpu(sizes[s], 2, r);
        for (unsigned id = 0; id < sizes[s]; id++) check_topology(r[id], id, sizes[s], 2);
    }
}

TEST(cpuid_with_one_thread_per_core_has_a_core_per_vcpu) {
    static struct cpuid_regs r[5][Q_COUNT];
    cpuid_of_every_vcpu(5, 1, r);
    for (unsigned id = 0; id < 5; id++) check_topology(r[id], id, 5, 1);
}

/* No topology asked for (bellhop without smt): KVM's CPUID as it is, with each vCPU's own
 * APIC id; of threads it says one per core, if anything (the rest is the host's: PVM here
 * sets HTT and leaf 1's count of 2 whatever the vCPUs). */
TEST(cpuid_without_a_topology_is_kvms_with_each_vcpus_ids) {
    static struct cpuid_regs r[3][Q_COUNT];
    const unsigned n = 3, threads = 1;
    cpuid_of_every_vcpu(n, 0, r);
    for (unsigned id = 0; id < n; id++) {
        CHECK_CPU(FIELD(r[id][Q_1].ebx, 24, 8) == id);
        if (r[id][Q_MAX_BASIC].eax >= 0xb) {
            const struct cpuid_regs *smt = &r[id][Q_B];
            CHECK_CPU(smt->edx == id);
            CHECK_CPU(FIELD(smt->ecx, 8, 8) != 1 || FIELD(smt->ebx, 0, 16) <= 1);
        }
        if (r[id][Q_MAX_EXT].eax >= 0x8000001e) CHECK_CPU(FIELD(r[id][Q_8000001E].ebx, 8, 8) == 0);
    }
}

TEST(a_topology_is_set_before_the_first_vcpu_and_checked) {
    struct hv h;
    hv_init(&h, poweroff_guest, poweroff_guest_end);
    CHECK_EQ(bellhop_guest_set_topology(h.guest, 0, 2), ZX_ERR_INVALID_ARGS);
    CHECK_EQ(bellhop_guest_set_topology(h.guest, BELLHOP_MAX_VCPUS + 1, 2), ZX_ERR_INVALID_ARGS);
    CHECK_EQ(bellhop_guest_set_topology(h.guest, 4, 0), ZX_ERR_INVALID_ARGS);
    CHECK_EQ(bellhop_guest_set_topology(h.guest, 4, 3), ZX_ERR_INVALID_ARGS);
    CHECK_EQ(bellhop_guest_set_topology(ZX_HANDLE_INVALID, 4, 2), ZX_ERR_BAD_HANDLE);
    /* asked again, the last one holds */
    CHECK_EQ(bellhop_guest_set_topology(h.guest, 4, 1), ZX_OK);
    CHECK_EQ(bellhop_guest_set_topology(h.guest, BELLHOP_MAX_VCPUS, 2), ZX_OK);
    zx_handle_t vcpu;
    CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
    CHECK_EQ(bellhop_guest_set_topology(h.guest, 4, 2), ZX_ERR_BAD_STATE);
    zx_port_packet_t p;
    CHECK_EQ(zx_vcpu_enter(vcpu, &p), ZX_ERR_UNAVAILABLE);
    zx_handle_close(vcpu);
    zx_handle_close(h.guest);
}

TEST(how_a_guest_ends) {
    struct {
        const uint8_t *code, *end;
        zx_status_t want;
        const char *words;
    } cases[] = {
        {poweroff_guest, poweroff_guest_end, ZX_ERR_UNAVAILABLE, "powered off"},
        {reset_guest, reset_guest_end, ZX_ERR_CONNECTION_RESET, "reset"},
        {triple_fault_guest, triple_fault_guest_end, ZX_ERR_BAD_STATE, "triple fault"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct hv h;
        hv_init(&h, cases[i].code, cases[i].end);
        zx_handle_t vcpu;
        CHECK_EQ(zx_vcpu_create(h.guest, 0, GUEST_CODE, &vcpu), ZX_OK);
        zx_port_packet_t p;
        CHECK_EQ(zx_vcpu_enter(vcpu, &p), cases[i].want);
        char err[200];
        CHECK_EQ(bellhop_vcpu_last_error(vcpu, err, sizeof err), ZX_OK);
        CHECK_MSG(strstr(err, cases[i].words), "case %zu: %s", i, err);
        zx_handle_close(vcpu);
        zx_handle_close(h.guest);
    }
}
