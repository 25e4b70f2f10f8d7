/* `bellhop launch-floor START_US`: the launch bench's yardstick (bench_launch.h). The same
 * binary, exec'd the same way, makes the least an x86 VMM makes before its guest's first
 * instruction, one call after another on one thread: the VM, its RAM (as large as the bench's
 * guests'), the interrupt controllers and PIT, one vCPU with KVM's CPUID, in 32-bit protected
 * mode at a one-instruction guest. What bellhop's launch costs beyond it is bellhop's; the
 * floor itself is the host's (exec, KVM). */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "bench/bellhop_bench/launch_floor.h"

#define FLOOR_RAM (512ull << 20)
#define FLOOR_ENTRY 0x100000u
#define FLOOR_PORT 0x80

struct floor {
    int kvm, vm, vcpu;
    struct kvm_run *run;
    size_t run_size;
    void *ram;
    uint64_t last_ns;
    char phases[160];
};

static void phase(struct floor *f, const char *name, uint64_t now) {
    size_t len = strlen(f->phases);
    snprintf(f->phases + len, sizeof f->phases - len, "%s%s %.2f", len ? ", " : "", name,
             (double)(now - f->last_ns) / 1e6);
    f->last_ns = now;
}

static int fail(const char *what) {
    fprintf(stderr, "bellhop: launch-floor: %s: %s\n", what, strerror(errno));
    return 1;
}

static int make_vm(struct floor *f) {
    if ((f->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC)) < 0) return fail("/dev/kvm");
    if ((f->vm = ioctl(f->kvm, KVM_CREATE_VM, 0)) < 0) return fail("KVM_CREATE_VM");
    int size = ioctl(f->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (size <= 0) return fail("KVM_GET_VCPU_MMAP_SIZE");
    f->run_size = (size_t)size;
    if (ioctl(f->vm, KVM_SET_TSS_ADDR, 0xfffbd000ul) != 0) return fail("KVM_SET_TSS_ADDR");
    phase(f, "vm", zx_clock_get_monotonic());
    return 0;
}

/* RAM before the interrupt controllers, as bellhop registers it (on PVM the other order costs
 * milliseconds: vmm/hv/vm.c). The guest is one OUT. */
static int make_ram(struct floor *f) {
    f->ram = mmap(NULL, FLOOR_RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (f->ram == MAP_FAILED) return fail("guest RAM");
    struct kvm_userspace_memory_region r = {.slot = 0, .guest_phys_addr = 0, .memory_size = FLOOR_RAM,
                                            .userspace_addr = (uintptr_t)f->ram};
    if (ioctl(f->vm, KVM_SET_USER_MEMORY_REGION, &r) != 0) return fail("KVM_SET_USER_MEMORY_REGION");
    static const unsigned char out_al[] = {0xe6, FLOOR_PORT}; /* out %al, $0x80 */
    memcpy((unsigned char *)f->ram + FLOOR_ENTRY, out_al, sizeof out_al);
    phase(f, "memory", zx_clock_get_monotonic());
    return 0;
}

static int set_cpuid(struct floor *f) {
    unsigned n = 256;
    struct kvm_cpuid2 *c = calloc(1, sizeof *c + n * sizeof c->entries[0]);
    if (!c) return fail("CPUID");
    c->nent = n;
    int r = ioctl(f->kvm, KVM_GET_SUPPORTED_CPUID, c) == 0 && ioctl(f->vcpu, KVM_SET_CPUID2, c) == 0 ? 0 : -1;
    free(c);
    return r == 0 ? 0 : fail("KVM_GET_SUPPORTED_CPUID/KVM_SET_CPUID2");
}

static int make_vcpu(struct floor *f) {
    struct kvm_pit_config pit = {.flags = 0};
    if (ioctl(f->vm, KVM_CREATE_IRQCHIP, 0) != 0) return fail("KVM_CREATE_IRQCHIP");
    if (ioctl(f->vm, KVM_CREATE_PIT2, &pit) != 0) return fail("KVM_CREATE_PIT2");
    if ((f->vcpu = ioctl(f->vm, KVM_CREATE_VCPU, 0)) < 0) return fail("KVM_CREATE_VCPU");
    f->run = mmap(NULL, f->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, f->vcpu, 0);
    if (f->run == MAP_FAILED) return fail("the vCPU's kvm_run");
    if (set_cpuid(f) != 0) return 1;
    struct kvm_sregs s;
    if (ioctl(f->vcpu, KVM_GET_SREGS, &s) != 0) return fail("KVM_GET_SREGS");
    struct kvm_segment code = {.limit = 0xffffffff, .selector = 0x10, .type = 11, .present = 1, .db = 1, .s = 1, .g = 1};
    struct kvm_segment data = code;
    data.selector = 0x18, data.type = 3;
    s.cs = code;
    s.ds = s.es = s.fs = s.gs = s.ss = data;
    s.cr0 = 0x11;
    if (ioctl(f->vcpu, KVM_SET_SREGS, &s) != 0) return fail("KVM_SET_SREGS");
    struct kvm_regs regs = {.rip = FLOOR_ENTRY, .rflags = 0x2};
    if (ioctl(f->vcpu, KVM_SET_REGS, &regs) != 0) return fail("KVM_SET_REGS");
    phase(f, "vcpu", zx_clock_get_monotonic());
    return 0;
}

/* Said as bellhop run --boot-markers says it, so that the bench reads both alike; then the one
 * instruction runs, to show that the guest was really entered. */
static int enter(struct floor *f, uint64_t start_ns) {
    printf("bellhop: guest entered at %.3f ms (setup, ms: %s)\n", (double)(f->last_ns - start_ns) / 1e6, f->phases);
    fflush(stdout);
    if (ioctl(f->vcpu, KVM_RUN, 0) != 0) return fail("KVM_RUN");
    if (f->run->exit_reason != KVM_EXIT_IO || f->run->io.port != FLOOR_PORT) {
        fprintf(stderr, "bellhop: launch-floor: the guest's first exit was %u, not its OUT\n", f->run->exit_reason);
        return 1;
    }
    printf("bellhop: launch-floor: the guest's OUT reached port %#x\n", FLOOR_PORT);
    return 0;
}

int launch_floor_main(int argc, char **argv) {
    uint64_t main_ns = zx_clock_get_monotonic();
    char *end;
    unsigned long long start_us = argc == 2 ? strtoull(argv[1], &end, 10) : 0;
    if (argc != 2 || *end || start_us == 0 || start_us * 1000 > main_ns) {
        fprintf(stderr, "usage: bellhop launch-floor START_US (started by bellhop bench: its clock's start)\n");
        return 2;
    }
    struct floor f = {.kvm = -1, .vm = -1, .vcpu = -1, .last_ns = start_us * 1000};
    phase(&f, "exec", main_ns);
    int r = make_vm(&f) || make_ram(&f) || make_vcpu(&f) || enter(&f, start_us * 1000);
    if (f.run && f.run != MAP_FAILED) munmap(f.run, f.run_size);
    if (f.ram && f.ram != MAP_FAILED) munmap(f.ram, FLOOR_RAM);
    if (f.vcpu >= 0) close(f.vcpu);
    if (f.vm >= 0) close(f.vm);
    if (f.kvm >= 0) close(f.kvm);
    return r;
}
