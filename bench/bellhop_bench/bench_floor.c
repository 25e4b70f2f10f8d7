#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "firmware/fdt.h"
#include "firmware/pvh.h"
#include "bench/bellhop_bench/bench_floor.h"

#define RAM (128u << 20)
#define START_INFO 0x6000u
#define DTB 0x10000u

static int die(const char *what) {
    fprintf(stderr, "bellhop bench: floor: %s: %s\n", what, strerror(errno));
    return -1;
}

static int load(const char *kernel, const struct guest_mem *gm, uint64_t *entry, const char *extra_args) {
    int fd = open(kernel, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) return die(kernel);
    uint8_t *img = malloc((size_t)st.st_size);
    ssize_t n = img ? read(fd, img, (size_t)st.st_size) : -1;
    close(fd);
    if (n != st.st_size) {
        free(img);
        return die("reading the guest");
    }
    struct pvh_kernel k;
    char err[160];
    int r = pvh_load_elf(img, (size_t)n, -1, gm, 0x100000, &k, err, sizeof err);
    free(img);
    if (r != 0) {
        fprintf(stderr, "bellhop bench: floor: %s\n", err);
        return -1;
    }
    char cmdline[96];
    snprintf(cmdline, sizeof cmdline, "bench bell=%#x%s", BENCH_FLOOR_BELL, extra_args);
    struct fdt_machine fm = {.ram_size = RAM, .ncpus = 1, .cmdline = cmdline, .uart_port = 0x3f8, .uart_irq = 4};
    int size = fdt_build(&fm, gm_ptr(gm, DTB, 0x10000), 0x10000);
    struct pvh_module mod = {DTB, (uint64_t)(size > 0 ? size : 0)};
    if (size <= 0 || pvh_write_start_info(gm, START_INFO, cmdline, &mod, 1, 0) != 0) return -1;
    *entry = k.entry;
    return 0;
}

static int setup_vcpu(int kvm, int vcpu, uint64_t entry) {
    struct kvm_cpuid2 *c = calloc(1, sizeof *c + 256 * sizeof c->entries[0]);
    if (!c) return -1;
    c->nent = 256;
    int r = ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c) == 0 && ioctl(vcpu, KVM_SET_CPUID2, c) == 0 ? 0 : -1;
    free(c);
    struct kvm_sregs s;
    if (r != 0 || ioctl(vcpu, KVM_GET_SREGS, &s) != 0) return die("vCPU state");
    struct kvm_segment code = {.limit = 0xffffffff, .selector = 0x10, .type = 11, .present = 1, .db = 1, .s = 1, .g = 1};
    struct kvm_segment data = code;
    data.selector = 0x18, data.type = 3;
    s.cs = code;
    s.ds = s.es = s.fs = s.gs = s.ss = data;
    s.cr0 = 0x11, s.cr4 = 0, s.efer = 0;
    struct kvm_regs regs = {.rip = entry, .rbx = START_INFO, .rflags = 2};
    if (ioctl(vcpu, KVM_SET_SREGS, &s) != 0 || ioctl(vcpu, KVM_SET_REGS, &regs) != 0) return die("vCPU registers");
    return 0;
}

struct waker {
    int fd;
    volatile uint32_t *flag;
    atomic_bool stop;
};

/* The eventfd-wake floor: a thread blocked in read() that makes each ring visible in guest
 * memory, as a device's handler would. Told to stop with one last ring. */
static void *waker_main(void *arg) {
    struct waker *w = arg;
    uint64_t n;
    while (read(w->fd, &n, sizeof n) == sizeof n && !atomic_load(&w->stop))
        __atomic_fetch_add(w->flag, 1, __ATOMIC_RELEASE);
    return NULL;
}

int bench_floor_run(const char *kernel, const char *extra_args, char *out, size_t outlen) {
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm = -1, vcpu = -1, efd = -1, rc = -1;
    struct waker waker;
    pthread_t waker_thread;
    bool waking = false;
    uint8_t *mem = MAP_FAILED;
    struct kvm_run *run = MAP_FAILED;
    long run_size = 0;
    size_t len = 0;
    if (kvm < 0) return die("/dev/kvm");
    if ((vm = ioctl(kvm, KVM_CREATE_VM, 0)) < 0 || ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000) != 0) {
        die("VM");
        goto out;
    }
    /* RAM before the irqchip, as bellhop's guests do (vmm/hv/vm.c: PVM's cost of the other order) */
    mem = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    struct kvm_userspace_memory_region region = {.memory_size = RAM, .userspace_addr = (uintptr_t)mem};
    if (mem == MAP_FAILED || ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) != 0) {
        die("guest memory");
        goto out;
    }
    if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) != 0) {
        die("VM's irqchip");
        goto out;
    }
    struct kvm_pit_config pit = {0};
    ioctl(vm, KVM_CREATE_PIT2, &pit);
    struct guest_mem gm = {mem, RAM, NULL, NULL};
    uint64_t entry;
    if (load(kernel, &gm, &entry, extra_args) != 0) goto out;
    efd = eventfd(0, EFD_CLOEXEC); /* blocking: the waker sleeps in read() */
    struct kvm_ioeventfd io = {.addr = BENCH_FLOOR_BELL, .len = 0, .fd = efd};
    if (efd < 0 || ioctl(vm, KVM_IOEVENTFD, &io) != 0) {
        die("ioeventfd");
        goto out;
    }
    waker.fd = efd;
    waker.flag = (volatile uint32_t *)(mem + BENCH_FLOOR_FLAG);
    atomic_init(&waker.stop, false);
    waking = pthread_create(&waker_thread, NULL, waker_main, &waker) == 0;
    if ((vcpu = ioctl(vm, KVM_CREATE_VCPU, 0)) < 0 || (run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0)) <= 0 ||
        (run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0)) == MAP_FAILED ||
        setup_vcpu(kvm, vcpu, entry) != 0) {
        die("vCPU");
        goto out;
    }
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) != 0) {
            if (errno == EINTR) continue;
            die("KVM_RUN");
            goto out;
        }
        if (run->exit_reason == KVM_EXIT_IO) {
            uint8_t *data = (uint8_t *)run + run->io.data_offset;
            bool in = run->io.direction == KVM_EXIT_IO_IN;
            if (run->io.port == 0xf4 && !in) break; /* the guest is done */
            if (in) memset(data, run->io.port == 0x3fd ? 0x60 : 0xff, (size_t)run->io.size * run->io.count);
            else if (run->io.port == 0x3f8 && len + 1 < outlen) out[len++] = (char)data[0];
        } else if (run->exit_reason == KVM_EXIT_MMIO) {
            if (!run->mmio.is_write) memset(run->mmio.data, 0xff, sizeof run->mmio.data);
        } else if (run->exit_reason != KVM_EXIT_INTR) {
            fprintf(stderr, "bellhop bench: floor: unexpected exit %u\n", run->exit_reason);
            goto out;
        }
    }
    rc = 0;
out:
    if (waking) {
        atomic_store(&waker.stop, true);
        uint64_t one = 1;
        if (write(efd, &one, sizeof one) < 0) { /* it is blocked in read(): this cannot fail */
        }
        pthread_join(waker_thread, NULL);
    }
    out[len < outlen ? len : outlen - 1] = 0;
    if (run != MAP_FAILED) munmap(run, (size_t)run_size);
    if (mem != MAP_FAILED) munmap(mem, RAM);
    if (efd >= 0) close(efd);
    if (vcpu >= 0) close(vcpu);
    if (vm >= 0) close(vm);
    close(kvm);
    return rc;
}
