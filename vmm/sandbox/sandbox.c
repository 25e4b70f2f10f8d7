/* Loading a thread role's seccomp program (see sandbox.h; the allowlists are in
 * sandbox_rules.c), and the report of a forbidden call. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "vmm/sandbox/sandbox.h"
#include "vmm/sandbox/sandbox_filters.h"
#include "vmm/machine/terminal.h"

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
static const char *const role_names[] = {[SANDBOX_MAIN] = "main", [SANDBOX_LOOP] = "loop", [SANDBOX_VCPU] = "vcpu",
                                             [SANDBOX_API_MAIN] = "api-main", [SANDBOX_API_LOOP] = "api-loop",
                                             [SANDBOX_UFFD] = "uffd", [SANDBOX_NET] = "net"};

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
    /* A filter needs no_new_privs (or CAP_SYS_ADMIN): set-user-ID programs cannot be run from
     * under it with more rights than the filter was written for. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &sandbox_filters[role]) != 0) {
        snprintf(err, errlen, "seccomp: cannot load the %s thread's filter: %s", role_names[role], strerror(errno));
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
#ifdef BELLHOP_TEST_HOOKS
    const char *want = getenv("BELLHOP_SANDBOX_PROBE");
    if (!want || strcmp(want, role_names[role]) != 0) return;
    /* A datagram socket: no role may make one (the loop's may make Unix stream sockets only,
     * for virtio-vsock), so this proves the call's arguments are checked, not just its name. */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) close(fd);
    fprintf(stderr, "bellhop: sandbox probe: the %s thread's socket() was allowed\n", role_names[role]);
#else
    (void)role;
#endif
}
