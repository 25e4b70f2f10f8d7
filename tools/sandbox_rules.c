/* The sandbox's allowlists (see sandbox.h), compiled to BPF at build time: this is a build
 * tool, not part of bellhop. It writes build/gen/sandbox_filters.c, one classic-BPF program
 * per thread role, which vmm/sandbox/sandbox.c loads with seccomp(2). libseccomp builds the programs
 * here once, rather than in every thread of every VMM at startup (15-35 ms each nested), and
 * bellhop does not link it. Each role's list is what that thread does after setup, found by
 * reading the code paths and checked by running every integration test (Linux guests
 * included) under the sandbox.
 *   sandbox_rules > build/gen/sandbox_filters.c */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "vmm/sandbox/sandbox.h"

/* ---- allowlists ---- */

/* libseccomp's SCMP_An() leave datum_b out, which clang's -Wextra rejects. */
static struct scmp_arg_cmp arg_eq(unsigned arg, uint64_t value) {
    return (struct scmp_arg_cmp){.arg = arg, .op = SCMP_CMP_EQ, .datum_a = value, .datum_b = 0};
}
static struct scmp_arg_cmp arg_masked(unsigned arg, uint64_t mask, uint64_t value) {
    return (struct scmp_arg_cmp){.arg = arg, .op = SCMP_CMP_MASKED_EQ, .datum_a = mask, .datum_b = value};
}

#define ALLOW(name) seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(name), 0)
#define ALLOW_IF(name, ...) seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(name), __VA_ARGS__)

/* socket(2)'s type without SOCK_NONBLOCK and SOCK_CLOEXEC (the kernel's linux/net.h has it) */
#define SOCK_TYPE_MASK 0xf

static int allow_calls(scmp_filter_ctx ctx, const int *calls, size_t n) {
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, calls[i], 0);
    return rc;
}

static int allow_ioctls(scmp_filter_ctx ctx, const unsigned long *reqs, size_t n) {
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) rc = ALLOW_IF(ioctl, 1, arg_eq(1, reqs[i]));
    return rc;
}

/* What every thread does: wait and wake (futexes, eventfds), allocate, log, tell time, take
 * and return from signals (kicks, SIGSYS itself), end. */
static int allow_common(scmp_filter_ctx ctx) {
    static const int calls[] = {
        SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(close), SCMP_SYS(futex), SCMP_SYS(sched_yield),
        SCMP_SYS(clock_gettime), SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep), SCMP_SYS(gettid),
        SCMP_SYS(getpid), SCMP_SYS(tgkill), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn),
        SCMP_SYS(rt_sigaction), SCMP_SYS(restart_syscall), SCMP_SYS(brk), SCMP_SYS(munmap),
        SCMP_SYS(madvise), SCMP_SYS(mremap), SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(eventfd2),
    };
    int rc = allow_calls(ctx, calls, sizeof calls / sizeof calls[0]);
    /* Memory, never executable: only main (loading libcapstone) maps code. */
    if (!rc) rc = ALLOW_IF(mmap, 1, arg_masked(2, PROT_EXEC, 0));
    if (!rc) rc = ALLOW_IF(mprotect, 1, arg_masked(2, PROT_EXEC, 0));
    /* glibc's qsort (capstone's, when tracing) sizes its buffer by the machine's memory. */
    if (!rc) rc = ALLOW(sysinfo);
    /* stdio's first write asks what its fd is. */
    if (!rc) rc = ALLOW(fstat);
    if (!rc) rc = ALLOW_IF(newfstatat, 1, arg_masked(3, AT_EMPTY_PATH, AT_EMPTY_PATH));
    /* The terminal is put back on every way out, from any thread. */
    static const unsigned long tty[] = {TCGETS, TCSETS, TCSETSW, TCSETSF};
    if (!rc) rc = allow_ioctls(ctx, tty, sizeof tty / sizeof tty[0]);
    return rc;
}

/* Interrupt plumbing, which any device may set up or use from whichever thread runs it
 * (irqfds made on first use, MSI-X routes the guest programs, doorbells reassigned). */
static int allow_interrupts(scmp_filter_ctx ctx) {
    static const unsigned long kvm[] = {KVM_IRQFD, KVM_SET_GSI_ROUTING, KVM_SIGNAL_MSI, KVM_IOEVENTFD,
                                        KVM_IRQ_LINE};
    return allow_ioctls(ctx, kvm, sizeof kvm / sizeof kvm[0]);
}

/* Devices running on a thread: disks (positioned I/O, flush, discard), the tap, entropy,
 * the loop's own fd waits and timers. */
static int allow_device_io(scmp_filter_ctx ctx) {
    static const int calls[] = {
        SCMP_SYS(pread64), SCMP_SYS(pwrite64), SCMP_SYS(preadv), SCMP_SYS(pwritev), SCMP_SYS(preadv2), SCMP_SYS(pwritev2), SCMP_SYS(readv),
        SCMP_SYS(writev), SCMP_SYS(fdatasync), SCMP_SYS(fsync), SCMP_SYS(fallocate), SCMP_SYS(getrandom),
        SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_pwait2), SCMP_SYS(epoll_ctl), SCMP_SYS(timerfd_settime),
        SCMP_SYS(timerfd_gettime),
        /* virtio-blk's ring, made before the sandbox and locked to its disk's files (devices/blk_uring.h) */
        SCMP_SYS(io_uring_enter),
        /* virtio-net: whether a socket read as empty is a closed one (a zero-timeout poll) */
        SCMP_SYS(poll),
    };
    return allow_calls(ctx, calls, sizeof calls / sizeof calls[0]);
}

/* The vhost-user frontend's socket: messages with fds, replies read with a timeout. */
static int allow_vhost_user(scmp_filter_ctx ctx) {
    static const int calls[] = {SCMP_SYS(sendmsg), SCMP_SYS(recvfrom)};
    return allow_calls(ctx, calls, sizeof calls / sizeof calls[0]);
}

/* User-mode networking (bellhop-net, net/user.h: libslirp): the guest's TCP and UDP
 * connections and pings become the host's own IPv4 and IPv6 sockets, non-blocking, serviced
 * after a zero-timeout poll; host ports forwarded into the guest are bound before the sandbox,
 * their clients accepted here. */
static int allow_user_net(scmp_filter_ctx ctx) {
    int rc = 0;
    static const int families[] = {AF_INET, AF_INET6};
    static const int types[] = {SOCK_STREAM, SOCK_DGRAM};
    for (unsigned f = 0; f < 2 && !rc; f++)
        for (unsigned t = 0; t < 2 && !rc; t++)
            rc = ALLOW_IF(socket, 2, arg_eq(0, families[f]), arg_masked(1, SOCK_TYPE_MASK, types[t]));
    static const int calls[] = {SCMP_SYS(bind), SCMP_SYS(listen), SCMP_SYS(accept), SCMP_SYS(sendto),
                                SCMP_SYS(recvfrom), SCMP_SYS(sendmsg), SCMP_SYS(recvmsg), SCMP_SYS(setsockopt),
                                SCMP_SYS(getsockopt), SCMP_SYS(getsockname), SCMP_SYS(getpeername), SCMP_SYS(poll),
                                SCMP_SYS(ppoll)};
    if (!rc) rc = allow_calls(ctx, calls, sizeof calls / sizeof calls[0]);
    if (!rc) rc = ALLOW_IF(fcntl, 1, arg_eq(1, F_GETFL));
    if (!rc) rc = ALLOW_IF(fcntl, 1, arg_eq(1, F_SETFL));
    if (!rc) rc = ALLOW_IF(fcntl, 1, arg_eq(1, F_SETFD));
    /* bellhop-net's loop makes its epoll set at its first run, once confined */
    if (!rc) rc = ALLOW(epoll_create1);
    return rc;
}

static int allow_own_calls(scmp_filter_ctx ctx, enum sandbox_role role) {
    int rc = 0;
    switch (role) {
    case SANDBOX_MAIN: {
        /* dlopen(libcapstone) for a crash report: read-only opens, code mappings. */
        int wr = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND;
        rc = ALLOW_IF(openat, 1, arg_masked(2, (uint64_t)wr, 0));
        if (!rc) rc = ALLOW_IF(mmap, 1, arg_masked(2, PROT_WRITE | PROT_EXEC, PROT_EXEC));
        if (!rc) rc = ALLOW_IF(mprotect, 1, arg_masked(2, PROT_WRITE | PROT_EXEC, PROT_EXEC));
        if (!rc) rc = ALLOW(lseek);
        if (!rc) rc = ALLOW(pread64);
        /* ...which, bellhop being static, brings a C library of its own: it reads the stack's
         * limit (prlimit64, setting none) and seeds its malloc (getrandom) */
        if (!rc) rc = ALLOW_IF(prlimit64, 2, arg_eq(0, 0), arg_eq(2, 0));
        if (!rc) rc = ALLOW(getrandom);
        if (!rc) rc = ALLOW(newfstatat);
        /* Tearing down: bells and fd waits leave the loop's epoll set, timers disarm; a vsock
         * device's socket file is removed (devices/vsock_conn.c) */
        if (!rc) rc = ALLOW(epoll_ctl);
        if (!rc) rc = ALLOW(timerfd_settime);
        if (!rc) rc = ALLOW(unlink);
        return rc;
    }
    case SANDBOX_LOOP: /* (with --dispatch loop, register writes run here: vhost-user's too) */
        rc = allow_device_io(ctx);
        if (!rc) rc = allow_vhost_user(ctx);
        /* a kernel's or initrd's read lease let go, guest RAM no longer sharing its pages
         * (vmm/machine/image_lease.h) */
        if (!rc) rc = ALLOW_IF(fcntl, 2, arg_eq(1, F_SETLEASE), arg_eq(2, F_UNLCK));
        /* virtio-vsock (devices/vsock_conn.c): the host's clients accepted, the guest's
         * connections made to Unix sockets (stream sockets of AF_UNIX, no other kind), their
         * directions shut down */
        if (!rc) rc = ALLOW(accept4);
        if (!rc) rc = ALLOW_IF(socket, 2, arg_eq(0, AF_UNIX), arg_masked(1, SOCK_TYPE_MASK, SOCK_STREAM));
        if (!rc) rc = ALLOW(connect);
        if (!rc) rc = ALLOW(shutdown);
        return rc;
    case SANDBOX_VCPU: {
        static const unsigned long kvm[] = {KVM_RUN, KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS,
                                            KVM_SET_MP_STATE, KVM_CREATE_VCPU, KVM_SET_CPUID2,
                                            KVM_SET_SIGNAL_MASK,
                                            /* what an emulation failure left pending (vmm/hv/vcpu.c) */
                                            KVM_GET_VCPU_EVENTS,
                                            /* a snapshot's state, each vCPU saving its own (vmm/hv/vcpu_state.c) */
                                            KVM_GET_MP_STATE, KVM_GET_XSAVE, KVM_GET_XCRS, KVM_GET_DEBUGREGS,
                                            KVM_GET_LAPIC, KVM_GET_MSRS, KVM_GET_MSR_INDEX_LIST};
        rc = allow_ioctls(ctx, kvm, sizeof kvm / sizeof kvm[0]);
        /* The guest's register writes may run any device inline (e.g. a reset's flush). */
        if (!rc) rc = allow_device_io(ctx);
        /* A vhost-user device started or reset by the guest's status write talks to its backend. */
        if (!rc) rc = allow_vhost_user(ctx);
        /* Starting the guest's other CPUs: threads only (clone3's flags are behind a pointer
         * seccomp cannot read, so glibc is told it does not exist and uses clone), each of
         * which maps its vCPU's kvm_run and names itself. */
        if (!rc) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
        if (!rc) rc = ALLOW_IF(clone, 1, arg_masked(0, CLONE_THREAD, CLONE_THREAD));
        if (!rc) rc = ALLOW(set_robust_list);
        if (!rc) rc = ALLOW(rseq);
        if (!rc) rc = ALLOW_IF(prctl, 1, arg_eq(0, PR_SET_NAME));
        /* --profile: each vCPU thread's sampling tick (bellhop_vcpu_set_tick) */
        if (!rc) rc = ALLOW(timer_create);
        if (!rc) rc = ALLOW(timer_settime);
        if (!rc) rc = ALLOW(timer_delete);
        if (!rc) rc = ALLOW(rt_sigtimedwait);
        return rc;
    }
    case SANDBOX_API_MAIN: /* and, at the end, removes the API's socket (unlink, as main may) and
                            * MMDS's socket and its private directory */
        rc = allow_own_calls(ctx, SANDBOX_MAIN);
        return rc ? rc : ALLOW(rmdir);
    case SANDBOX_API_LOOP: { /* and serves the API: accepts its clients (accept4, as loop may; the
                              * socket is made before), opens a drive's new file (PATCH /drives:
                              * never created or cut), writes a snapshot's two files (created or
                              * cut, never appended to) and reads what KVM keeps of the whole
                              * guest for it */
        rc = allow_own_calls(ctx, SANDBOX_LOOP);
        if (!rc) rc = ALLOW_IF(openat, 1, arg_masked(2, O_APPEND, 0));
        if (!rc) rc = ALLOW(ftruncate);
        if (!rc) rc = ALLOW(newfstatat);
        /* PATCH /drives: what the new file's filesystem is (virtio-blk copies what tmpfs serves
         * at once), and the file swapped in its ring (the only registration the ring allows) */
        if (!rc) rc = ALLOW(fstatfs);
        if (!rc) rc = ALLOW_IF(io_uring_register, 1, arg_eq(1, IORING_REGISTER_FILES_UPDATE));
        static const unsigned long kvm[] = {KVM_GET_IRQCHIP, KVM_GET_PIT2, KVM_GET_CLOCK,
                                            /* dirty pages for a Diff, and which pages a Full reads
                                             * (vmm/machine/snapshot_dirty.c): KVM's log, the RAM
                                             * faulted in, the data of the file it was restored from */
                                            KVM_GET_DIRTY_LOG};
        if (!rc) rc = allow_ioctls(ctx, kvm, sizeof kvm / sizeof kvm[0]);
        if (!rc) rc = ALLOW(mincore);
        if (!rc) rc = ALLOW(lseek);
        return rc;
    }
    case SANDBOX_UFFD: /* watches the page-fault handler's socket; when the handler is gone, tells the
                        * machine (which kicks its vCPUs: tgkill, as every thread may) and unregisters
                        * guest RAM from the userfaultfd, waking whoever waits for a page there */
        rc = ALLOW(ppoll);
        if (!rc) rc = ALLOW_IF(ioctl, 1, arg_eq(1, UFFDIO_UNREGISTER));
        return rc;
    case SANDBOX_NET:
        rc = allow_own_calls(ctx, SANDBOX_LOOP);
        return rc ? rc : allow_user_net(ctx);
    case SANDBOX_ROLES:
        break;
    }
    return -EINVAL;
}

static int allow_role(scmp_filter_ctx ctx, enum sandbox_role role) {
    int rc = allow_common(ctx);
    if (!rc) rc = allow_interrupts(ctx);
    return rc ? rc : allow_own_calls(ctx, role);
}

/* ---- output ---- */

/* The vCPU thread's hot call, KVM_RUN, is allowed by these first instructions, ahead of the
 * program libseccomp builds (which tests ioctl's requests in descending order, KVM_RUN 12th);
 * anything else falls through to that program: every not-taken jump lands on the first
 * instruction after the prologue. */
#define KVM_RUN_PROLOGUE_LEN 9
static void kvm_run_prologue(struct sock_filter *p) {
    struct sock_filter insns[KVM_RUN_PROLOGUE_LEN] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 7),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 5),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, KVM_RUN, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1]) + 4),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    memcpy(p, insns, sizeof insns);
}

/* libseccomp's program for `role`, exported through a memfd, into a fresh array `pre`
 * instructions in (room for a prologue). 0, or a negative errno. */
static int export_role(enum sandbox_role role, size_t pre, struct sock_filter **out, size_t *len) {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
    if (!ctx) return -ENOMEM;
    int rc = allow_role(ctx, role);
    /* ioctl (KVM_RUN) is the call of the hot path: the program tests for it first. */
    if (!rc) rc = seccomp_syscall_priority(ctx, SCMP_SYS(ioctl), 255);
    int fd = -1;
    if (!rc && (fd = memfd_create("bpf", MFD_CLOEXEC)) < 0) rc = -errno;
    if (!rc) rc = seccomp_export_bpf(ctx, fd);
    seccomp_release(ctx);
    if (rc) goto out;
    off_t bytes = lseek(fd, 0, SEEK_END);
    size_t n = bytes > 0 ? (size_t)bytes / sizeof **out : 0;
    if (n == 0 || pre + n > BPF_MAXINSNS) {
        rc = n ? -E2BIG : -EIO;
        goto out;
    }
    *out = calloc(pre + n, sizeof **out);
    if (!*out || pread(fd, *out + pre, (size_t)bytes, 0) != bytes) {
        free(*out);
        *out = NULL;
        rc = -EIO;
        goto out;
    }
    *len = pre + n;
out:
    if (fd >= 0) close(fd);
    return rc;
}

static int emit(enum sandbox_role role, const char *name) {
    size_t pre = role == SANDBOX_VCPU ? KVM_RUN_PROLOGUE_LEN : 0, n = 0;
    struct sock_filter *p = NULL;
    int rc = export_role(role, pre, &p, &n);
    if (rc) return rc;
    if (pre) kvm_run_prologue(p);
    printf("static const struct sock_filter %s[] = {\n", name);
    for (size_t i = 0; i < n; i++) printf("    {0x%04x, %u, %u, 0x%08x},\n", p[i].code, p[i].jt, p[i].jf, p[i].k);
    printf("};\n\n");
    free(p);
    return 0;
}

int main(void) {
    static const char *const names[] = {[SANDBOX_MAIN] = "main_filter", [SANDBOX_LOOP] = "loop_filter",
                                        [SANDBOX_VCPU] = "vcpu_filter", [SANDBOX_API_MAIN] = "api_main_filter",
                                        [SANDBOX_API_LOOP] = "api_loop_filter", [SANDBOX_UFFD] = "uffd_filter",
                                        [SANDBOX_NET] = "net_filter"};
    printf("/* Generated by tools/sandbox_rules.c: the seccomp program of each thread role. */\n"
           "#include <linux/filter.h>\n\n#include \"vmm/sandbox/sandbox_filters.h\"\n\n");
    for (int r = 0; r < SANDBOX_ROLES; r++) {
        int rc = emit((enum sandbox_role)r, names[r]);
        if (rc) {
            fprintf(stderr, "sandbox_rules: %s: %s\n", names[r], strerror(-rc));
            return 1;
        }
    }
    printf("const struct sock_fprog sandbox_filters[SANDBOX_ROLES] = {\n");
    for (int r = 0; r < SANDBOX_ROLES; r++)
        printf("    [%d] = {sizeof %s / sizeof %s[0], (struct sock_filter *)%s},\n", r, names[r], names[r], names[r]);
    printf("};\n");
    return fflush(stdout) == 0 ? 0 : 1;
}
