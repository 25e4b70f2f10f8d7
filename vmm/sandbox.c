/* seccomp allowlists per thread role (see sandbox.h). Each role's list is what that thread
 * does after setup, found by reading the code paths and checked by running every integration
 * test (Linux guests included) under the sandbox. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <linux/kvm.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <ucontext.h>
#include <unistd.h>

#include "vmm/sandbox.h"
#include "vmm/terminal.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

extern const char *const syscall_names[]; /* generated from <sys/syscall.h> */
extern const unsigned syscall_names_len;

static __thread enum sandbox_role thread_role;
static __thread bool thread_sandboxed;
static const char *const role_names[] = {[SANDBOX_MAIN] = "main", [SANDBOX_LOOP] = "loop", [SANDBOX_VCPU] = "vcpu"};

bool sandbox_supported(void) {
#ifdef SANITIZED
    return false;
#else
    return true;
#endif
}

bool sandbox_active(void) { return thread_sandboxed; }

/* ---- the report of a forbidden call: async-signal-safe, so no stdio ---- */

static size_t put(char *buf, size_t at, size_t cap, const char *s) {
    while (*s && at + 1 < cap) buf[at++] = *s++;
    return at;
}

static size_t put_hex(char *buf, size_t at, size_t cap, uint64_t v) {
    char tmp[19] = "0x";
    int n = 2;
    for (int shift = 60; shift >= 0; shift -= 4)
        if ((v >> shift) || shift == 0 || n > 2) tmp[n++] = "0123456789abcdef"[(v >> shift) & 0xf];
    tmp[n] = 0;
    return put(buf, at, cap, tmp);
}

static size_t put_dec(char *buf, size_t at, size_t cap, uint64_t v) {
    char tmp[21];
    int n = sizeof tmp - 1;
    tmp[n] = 0;
    do tmp[--n] = (char)('0' + v % 10); while ((v /= 10) && n > 0);
    return put(buf, at, cap, tmp + n);
}

static void on_sigsys(int sig, siginfo_t *si, void *uc_) {
    (void)sig;
    ucontext_t *uc = uc_;
    char msg[256];
    size_t n = put(msg, 0, sizeof msg, "bellhop: seccomp: the ");
    n = put(msg, n, sizeof msg, thread_sandboxed ? role_names[thread_role] : "?");
    n = put(msg, n, sizeof msg, " thread made a forbidden system call: ");
    unsigned nr = (unsigned)si->si_syscall;
    n = put(msg, n, sizeof msg, nr < syscall_names_len && syscall_names[nr] ? syscall_names[nr] : "syscall");
    n = put(msg, n, sizeof msg, "(");
    n = put_hex(msg, n, sizeof msg, (uint64_t)uc->uc_mcontext.gregs[REG_RDI]);
    n = put(msg, n, sizeof msg, ", ");
    n = put_hex(msg, n, sizeof msg, (uint64_t)uc->uc_mcontext.gregs[REG_RSI]);
    n = put(msg, n, sizeof msg, ", ...) [nr ");
    n = put_dec(msg, n, sizeof msg, nr);
    n = put(msg, n, sizeof msg, "]; stopping (--no-seccomp runs without the sandbox)\n");
    ssize_t w = write(STDERR_FILENO, msg, n);
    (void)w;
    terminal_restore();
    _exit(SANDBOX_EXIT_STATUS);
}

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
        SCMP_SYS(pread64), SCMP_SYS(pwrite64), SCMP_SYS(preadv), SCMP_SYS(pwritev), SCMP_SYS(readv),
        SCMP_SYS(writev), SCMP_SYS(fdatasync), SCMP_SYS(fsync), SCMP_SYS(fallocate), SCMP_SYS(getrandom),
        SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_pwait2), SCMP_SYS(epoll_ctl), SCMP_SYS(timerfd_settime),
        SCMP_SYS(timerfd_gettime),
    };
    return allow_calls(ctx, calls, sizeof calls / sizeof calls[0]);
}

static int allow_role(scmp_filter_ctx ctx, enum sandbox_role role) {
    int rc = allow_common(ctx);
    if (!rc) rc = allow_interrupts(ctx);
    if (rc) return rc;
    switch (role) {
    case SANDBOX_MAIN: {
        /* dlopen(libcapstone) for a crash report: read-only opens, code mappings. */
        int wr = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND;
        rc = ALLOW_IF(openat, 1, arg_masked(2, (uint64_t)wr, 0));
        if (!rc) rc = ALLOW_IF(mmap, 1, arg_masked(2, PROT_WRITE | PROT_EXEC, PROT_EXEC));
        if (!rc) rc = ALLOW_IF(mprotect, 1, arg_masked(2, PROT_WRITE | PROT_EXEC, PROT_EXEC));
        if (!rc) rc = ALLOW(lseek);
        if (!rc) rc = ALLOW(pread64);
        if (!rc) rc = ALLOW(newfstatat);
        /* Tearing down: bells and fd waits leave the loop's epoll set, timers disarm. */
        if (!rc) rc = ALLOW(epoll_ctl);
        if (!rc) rc = ALLOW(timerfd_settime);
        return rc;
    }
    case SANDBOX_LOOP:
        return allow_device_io(ctx);
    case SANDBOX_VCPU: {
        static const unsigned long kvm[] = {KVM_RUN, KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS,
                                            KVM_SET_MP_STATE, KVM_CREATE_VCPU, KVM_SET_CPUID2};
        rc = allow_ioctls(ctx, kvm, sizeof kvm / sizeof kvm[0]);
        /* The guest's register writes may run any device inline (e.g. a reset's flush). */
        if (!rc) rc = allow_device_io(ctx);
        /* Starting the guest's other CPUs: threads only (clone3's flags are behind a pointer
         * seccomp cannot read, so glibc is told it does not exist and uses clone), each of
         * which maps its vCPU's kvm_run and names itself. */
        if (!rc) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
        if (!rc) rc = ALLOW_IF(clone, 1, arg_masked(0, CLONE_THREAD, CLONE_THREAD));
        if (!rc) rc = ALLOW(set_robust_list);
        if (!rc) rc = ALLOW(rseq);
        if (!rc) rc = ALLOW_IF(prctl, 1, arg_eq(0, PR_SET_NAME));
        return rc;
    }
    }
    return -EINVAL;
}

static void install_sigsys(void) {
    struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSYS, &sa, NULL);
}

int sandbox_enter(enum sandbox_role role, char *err, size_t errlen) {
    if (!sandbox_supported()) {
        snprintf(err, errlen, "this build has sanitizers: no seccomp sandbox");
        return -1;
    }
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install_sigsys);
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
    if (!ctx) {
        snprintf(err, errlen, "seccomp: cannot create a filter");
        return -1;
    }
    int rc = allow_role(ctx, role);
    /* ioctl (KVM_RUN) is the call of the hot path: the filter tests for it first. */
    if (!rc) rc = seccomp_syscall_priority(ctx, SCMP_SYS(ioctl), 255);
    if (!rc) rc = seccomp_load(ctx);
    seccomp_release(ctx);
    /* Building the filter took heap in this thread's arena: give the pages back (an idle
     * VMM's footprint is one of bellhop's figures). */
    malloc_trim(0);
    if (rc) {
        snprintf(err, errlen, "seccomp: cannot load the %s thread's filter: %s", role_names[role], strerror(-rc));
        return -1;
    }
    sandbox_adopt(role);
    return 0;
}

void sandbox_adopt(enum sandbox_role role) {
    thread_role = role;
    thread_sandboxed = true;
}

void sandbox_probe(enum sandbox_role role) {
    const char *want = getenv("BELLHOP_SANDBOX_PROBE");
    if (!want || strcmp(want, role_names[role]) != 0) return;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) close(fd);
    fprintf(stderr, "bellhop: sandbox probe: the %s thread's socket() was allowed\n", role_names[role]);
}
