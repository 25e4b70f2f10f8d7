/* Proof that the harness runs real KVM: a VM runs real-mode guest code that does port IO
 * and MMIO, and every exit, with its decoded access, arrives in the order the code makes them. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tests/lib/check.h"

extern const uint8_t smoke_guest[], smoke_guest_end[];
__asm__(".pushsection .rodata\n"
        ".globl smoke_guest, smoke_guest_end\n"
        "smoke_guest:\n"
        ".code16\n"
        "    mov $0x41, %al\n"
        "    out %al, $0x10\n"          /* IO out, port 0x10, 0x41 */
        "    mov $0x2000, %ax\n"
        "    mov %ax, %ds\n"
        "    movw $0xbeef, 0x0\n"       /* MMIO write 0x20000, 2 bytes */
        "    movb 0x4, %bl\n"           /* MMIO read 0x20004, 1 byte */
        "    mov %bl, %al\n"
        "    out %al, $0x11\n"          /* the value the host supplied for the read */
        "    in $0x12, %al\n"           /* IO in, port 0x12 */
        "    out %al, $0x13\n"          /* the value the host supplied for the in */
        "    hlt\n"
        ".code64\n"
        "smoke_guest_end:\n"
        ".popsection\n");

struct vm {
    int kvm, fd, vcpu;
    uint8_t *mem;
    struct kvm_run *run;
};

static void vm_create(struct vm *vm, const uint8_t *code, size_t len) {
    vm->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    CHECK_MSG(vm->kvm >= 0, "open /dev/kvm failed");
    CHECK_EQ(ioctl(vm->kvm, KVM_GET_API_VERSION, 0), KVM_API_VERSION);
    vm->fd = ioctl(vm->kvm, KVM_CREATE_VM, 0);
    CHECK(vm->fd >= 0);
    vm->mem = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(vm->mem != MAP_FAILED);
    memcpy(vm->mem + 0x1000, code, len);
    struct kvm_userspace_memory_region r = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = 0x10000, .userspace_addr = (uintptr_t)vm->mem};
    CHECK_EQ(ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r), 0);
    vm->vcpu = ioctl(vm->fd, KVM_CREATE_VCPU, 0);
    CHECK(vm->vcpu >= 0);
    long sz = ioctl(vm->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    CHECK(sz > 0);
    vm->run = mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu, 0);
    CHECK(vm->run != MAP_FAILED);
    struct kvm_sregs s;
    CHECK_EQ(ioctl(vm->vcpu, KVM_GET_SREGS, &s), 0);
    s.cs.base = 0;
    s.cs.selector = 0;
    CHECK_EQ(ioctl(vm->vcpu, KVM_SET_SREGS, &s), 0);
    struct kvm_regs regs = {.rip = 0x1000, .rflags = 2};
    CHECK_EQ(ioctl(vm->vcpu, KVM_SET_REGS, &regs), 0);
}

static void enter(struct vm *vm, uint32_t want_reason) {
    CHECK_EQ(ioctl(vm->vcpu, KVM_RUN, 0), 0);
    CHECK_EQ(vm->run->exit_reason, want_reason);
}

static uint8_t *io_data(struct vm *vm) { return (uint8_t *)vm->run + vm->run->io.data_offset; }

static void expect_out(struct vm *vm, uint16_t port, uint8_t value) {
    enter(vm, KVM_EXIT_IO);
    CHECK_EQ(vm->run->io.direction, KVM_EXIT_IO_OUT);
    CHECK_EQ(vm->run->io.port, port);
    CHECK_EQ(vm->run->io.size, 1);
    CHECK_EQ(vm->run->io.count, 1);
    CHECK_EQ(io_data(vm)[0], value);
}

TEST(port_io_and_mmio_exits) {
    struct vm vm;
    vm_create(&vm, smoke_guest, (size_t)(smoke_guest_end - smoke_guest));

    expect_out(&vm, 0x10, 0x41);

    enter(&vm, KVM_EXIT_MMIO);
    CHECK_EQ(vm.run->mmio.is_write, 1);
    CHECK_EQ(vm.run->mmio.phys_addr, 0x20000);
    CHECK_EQ(vm.run->mmio.len, 2);
    CHECK_EQ(vm.run->mmio.data[0] | vm.run->mmio.data[1] << 8, 0xbeef);

    enter(&vm, KVM_EXIT_MMIO);
    CHECK_EQ(vm.run->mmio.is_write, 0);
    CHECK_EQ(vm.run->mmio.phys_addr, 0x20004);
    CHECK_EQ(vm.run->mmio.len, 1);
    vm.run->mmio.data[0] = 0x5a; /* completed on the next KVM_RUN */

    expect_out(&vm, 0x11, 0x5a);

    enter(&vm, KVM_EXIT_IO);
    CHECK_EQ(vm.run->io.direction, KVM_EXIT_IO_IN);
    CHECK_EQ(vm.run->io.port, 0x12);
    io_data(&vm)[0] = 0x77;

    expect_out(&vm, 0x13, 0x77);
    enter(&vm, KVM_EXIT_HLT);
}
