/* bellhop command line. Until the hypervisor layer (vmm/ zx_guest_*) and the machine exist,
 * `bellhop run` boots a flat real-mode image on raw KVM with a transmit-only 16550 and the
 * 0xf4 exit device, which is all the bundled pre-kernel guest needs. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GUEST_MEM_SIZE (2u << 20)
#define LOAD_ADDR 0x1000u
#define PORT_COM1 0x3f8
#define PORT_EXIT 0xf4

static void usage(FILE *f) {
    fprintf(f,
            "usage: bellhop run [--kernel FILE]\n"
            "\n"
            "Boots a guest on KVM. Without --kernel, boots the bundled guest.\n"
            "  --kernel FILE   flat real-mode image, loaded at 0x1000 (at most %u KiB)\n"
            "  -h, --help      this text\n"
            "\n"
            "Exit status: the guest's (written to port 0xf4), 1 on errors, 2 on bad usage.\n",
            (GUEST_MEM_SIZE - LOAD_ADDR) / 1024);
}

static int die(const char *what) {
    fprintf(stderr, "bellhop: %s: %s\n", what, strerror(errno));
    return 1;
}

static int default_kernel(char *out, size_t len) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0) return -1;
    exe[n] = 0;
    int w = snprintf(out, len, "%s/guest/hello.bin", dirname(exe));
    return w < 0 || (size_t)w >= len ? -1 : 0;
}

static int load_image(const char *path, uint8_t *mem) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "bellhop: cannot open kernel %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    int rc = -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "bellhop: kernel %s is not a regular file\n", path);
    } else if (st.st_size == 0 || st.st_size > (off_t)(GUEST_MEM_SIZE - LOAD_ADDR)) {
        fprintf(stderr, "bellhop: kernel %s: size %lld outside 1..%u bytes\n", path,
                (long long)st.st_size, GUEST_MEM_SIZE - LOAD_ADDR);
    } else {
        size_t done = 0;
        while (done < (size_t)st.st_size) {
            ssize_t r = read(fd, mem + LOAD_ADDR + done, (size_t)st.st_size - done);
            if (r <= 0) {
                if (r < 0 && errno == EINTR) continue;
                fprintf(stderr, "bellhop: reading %s failed\n", path);
                break;
            }
            done += (size_t)r;
        }
        if (done == (size_t)st.st_size) rc = 0;
    }
    close(fd);
    return rc;
}

static int run_vcpu(int vcpu, struct kvm_run *run, uint8_t *mem) {
    (void)mem;
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR) continue;
            return die("KVM_RUN");
        }
        switch (run->exit_reason) {
        case KVM_EXIT_IO: {
            uint8_t *data = (uint8_t *)run + run->io.data_offset;
            if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == PORT_EXIT)
                return data[0];
            if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == PORT_COM1) {
                for (uint32_t i = 0; i < run->io.count; i++) putchar(data[i * run->io.size]);
                fflush(stdout);
            } else if (run->io.direction == KVM_EXIT_IO_IN) {
                /* LSR: transmitter empty; everything else floats high like an absent device. */
                uint8_t v = run->io.port == PORT_COM1 + 5 ? 0x60 : 0xff;
                memset(data, v, (size_t)run->io.size * run->io.count);
            }
            break;
        }
        case KVM_EXIT_HLT:
            return 0;
        case KVM_EXIT_MMIO:
            fprintf(stderr, "bellhop: guest %s unbacked address 0x%llx (%u bytes)\n",
                    run->mmio.is_write ? "wrote" : "read", (unsigned long long)run->mmio.phys_addr,
                    run->mmio.len);
            return 1;
        case KVM_EXIT_SHUTDOWN:
            fprintf(stderr, "bellhop: guest shut down (triple fault)\n");
            return 1;
        default:
            fprintf(stderr, "bellhop: unhandled KVM exit %u\n", run->exit_reason);
            return 1;
        }
    }
}

static int cmd_run(const char *kernel) {
    char path[PATH_MAX];
    if (!kernel) {
        if (default_kernel(path, sizeof path) != 0) return die("locating the bundled guest");
        kernel = path;
    }
    int rc = 1, kvm = -1, vm = -1, vcpu = -1;
    uint8_t *mem = MAP_FAILED;
    struct kvm_run *run = MAP_FAILED;
    long run_size = 0;

    mem = mmap(NULL, GUEST_MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) { rc = die("mmap guest memory"); goto out; }
    if (load_image(kernel, mem) != 0) goto out;

    kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) { rc = die("/dev/kvm"); goto out; }
    vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) { rc = die("KVM_CREATE_VM"); goto out; }
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = GUEST_MEM_SIZE,
        .userspace_addr = (uintptr_t)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) { rc = die("KVM_SET_USER_MEMORY_REGION"); goto out; }
    vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) { rc = die("KVM_CREATE_VCPU"); goto out; }
    run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size <= 0) { rc = die("KVM_GET_VCPU_MMAP_SIZE"); goto out; }
    run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) { rc = die("mmap kvm_run"); goto out; }

    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) { rc = die("KVM_GET_SREGS"); goto out; }
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) { rc = die("KVM_SET_SREGS"); goto out; }
    struct kvm_regs regs = {.rip = LOAD_ADDR, .rflags = 0x2};
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) { rc = die("KVM_SET_REGS"); goto out; }

    rc = run_vcpu(vcpu, run, mem);
out:
    if (run != MAP_FAILED) munmap(run, (size_t)run_size);
    if (vcpu >= 0) close(vcpu);
    if (vm >= 0) close(vm);
    if (kvm >= 0) close(kvm);
    if (mem != MAP_FAILED) munmap(mem, GUEST_MEM_SIZE);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "run") != 0) {
        fprintf(stderr, "bellhop: unknown command '%s' (try --help)\n", argv[1]);
        return 2;
    }
    static const struct option opts[] = {
        {"kernel", required_argument, NULL, 'k'}, {"help", no_argument, NULL, 'h'}, {0}};
    const char *kernel = NULL;
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'k': kernel = optarg; break;
        case 'h': usage(stdout); return 0;
        default: return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "bellhop: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return cmd_run(kernel);
}
