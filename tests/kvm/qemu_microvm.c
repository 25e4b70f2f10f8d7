/* The bundled guest.elf is a standard PVH kernel: QEMU-KVM's microvm boots it too, with a
 * device tree describing microvm's devices (built by firmware/fdt.c) as its first module.
 * Skipped where QEMU is not available. */
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "firmware/fdt.h"
#include "tests/lib/check.h"
#include "bench/bellhop_bench/spawn.h"
#include "bench/bellhop_bench/bench.h"


TEST_TIMEOUT(qemu_microvm_boots_the_tiny_guest, 180) {
    char dir[PATH_MAX];
    const char *qemu = bench_qemu_path(dir, sizeof dir);
    if (!qemu) test_skip("no qemu-system-x86_64 with bios-microvm.bin here");
    if (access("/dev/kvm", R_OK | W_OK) != 0) test_skip("no usable /dev/kvm");

    struct fdt_machine m;
    fdt_microvm_layout(&m, 128u << 20, "peer");
    static char dtb[1 << 16];
    int size = fdt_build(&m, dtb, sizeof dtb);
    CHECK(size > 0);
    const char *dtb_path = "/tmp/bellhop-microvm.dtb", *disk = "/tmp/bellhop-microvm-disk.img";
    int fd = open(dtb_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK_EQ(write(fd, dtb, (size_t)size), size);
    close(fd);
    fd = open(disk, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK_EQ(ftruncate(fd, 1 << 20), 0);
    close(fd);

    char exe[PATH_MAX], guest[PATH_MAX], drive[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(n > 0);
    exe[n] = 0;
    /* build/tests/kvm/.. or, for the sanitizer builds, build/asan/tests/kvm/../.. */
    char *exe_dir = dirname(exe);
    snprintf(guest, sizeof guest, "%s/../../guest/guest.elf", exe_dir);
    if (access(guest, R_OK) != 0) snprintf(guest, sizeof guest, "%s/../../../guest/guest.elf", exe_dir);
    snprintf(drive, sizeof drive, "id=d0,file=%s,format=raw,if=none", disk);
    const char *argv[] = {qemu, "-L", dir, "-M", "microvm,acpi=off,pic=off,pit=off,rtc=off,ioapic2=off,auto-kernel-cmdline=off",
                          "-accel", "kvm", "-cpu", bench_qemu_cpu(), "-m", "128", "-nodefaults", "-no-user-config",
                          "-display", "none", "-serial", "stdio", "-kernel", guest, "-initrd", dtb_path,
                          "-append", "peer", "-global", "virtio-mmio.force-legacy=false",
                          "-device", "virtio-rng-device", "-drive", drive, "-device", "virtio-blk-device,drive=d0,serial=qemu-peer",
                          "-device", "isa-debug-exit,iobase=0xf4,iosize=1", NULL};
    static char out[1 << 16];
    int status = spawn_capture((char *const *)argv, NULL, out, sizeof out);
    /* isa-debug-exit: QEMU exits with (value << 1) | 1. */
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 1, "qemu status %#x:\n%s", status, out);
    CHECK_MSG(strstr(out, "bellhop tiny guest:") && strstr(out, "guest: 0 failed"), "%s", out);
    CHECK_MSG(strstr(out, "selftest virtio-rng       PASS"), "%s", out);
    CHECK_MSG(strstr(out, "selftest virtio-blk-rw    PASS"), "%s", out);
    unlink(dtb_path);
    unlink(disk);
}
