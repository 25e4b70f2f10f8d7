#include "bench/tcp_xfer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench_util.h"

#define IO_TIMEOUT_S 60
#define READY_TIMEOUT_MS 300000

void xfer_bound_io(int fd) {
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int connect_once(const struct sockaddr_in *a) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0) return -1;
    /* connect() waits for SYN's answer up to the send timeout: a dropped SYN is not a minute. */
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)a, sizeof *a) == 0) return fd;
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}

int xfer_dial_tcp(const char *ip, unsigned port, double retry_ms, char *err, size_t len) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    for (double until = now_ms() + retry_ms;;) {
        int fd = connect_once(&a);
        if (fd >= 0) {
            xfer_bound_io(fd);
            return fd;
        }
        snprintf(err, len, "connect %s:%u: %s", ip, port, strerror(errno));
        if (now_ms() >= until) return -1;
        usleep(200 * 1000);
    }
}

/* Bytes read from fd until its end (or an error: then -1). */
static long long drain(int fd) {
    static char buf[1 << 16];
    long long total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) return total;
        total += n;
    }
}

static bool write_all(int fd, const char *p, size_t len) {
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n, len -= (size_t)n;
    }
    return true;
}

double xfer_to_guest(int fd, const char *who) {
    static char block[1 << 16];
    double t0 = now_ms();
    bool ok = true;
    for (unsigned sent = 0; ok && sent < XFER_BYTES; sent += sizeof block) ok = write_all(fd, block, sizeof block);
    ok = ok && shutdown(fd, SHUT_WR) == 0 && drain(fd) == 0;
    double ms = now_ms() - t0;
    if (!ok) fprintf(stderr, "%s: to the guest: %s\n", who, strerror(errno));
    close(fd);
    return ok ? XFER_BYTES / 1e3 / ms : -1;
}

double xfer_to_host(int fd, const char *who) {
    double t0 = now_ms();
    long long got = drain(fd);
    double ms = now_ms() - t0;
    close(fd);
    if (got != XFER_BYTES) {
        fprintf(stderr, "%s: from the guest: %lld bytes of %u\n", who, got, XFER_BYTES);
        return -1;
    }
    return XFER_BYTES / 1e3 / ms;
}

double xfer_round_trip(int fd) {
    char c = 'x';
    double t0 = now_ms();
    if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1) return -1;
    return (now_ms() - t0) * 1e3;
}

bool xfer_round_trips(int fd, int n, int warm_up, double *p50, double *mean, const char *who) {
    double *us = malloc((size_t)n * sizeof *us);
    bool ok = us != NULL;
    for (int i = 0; ok && i < warm_up; i++) ok = xfer_round_trip(fd) >= 0;
    double sum = 0;
    for (int i = 0; ok && i < n; i++) {
        us[i] = xfer_round_trip(fd);
        ok = us[i] >= 0;
        sum += us[i];
    }
    if (ok) {
        *mean = sum / n;
        *p50 = median(us, n);
    } else {
        fprintf(stderr, "%s: the echo stopped: %s\n", who, strerror(errno));
    }
    free(us);
    close(fd);
    return ok;
}

static bool interface_up(int s, const char *name) {
    struct ifreq r = {0};
    snprintf(r.ifr_name, sizeof r.ifr_name, "%s", name);
    if (ioctl(s, SIOCGIFFLAGS, &r) != 0) return false;
    r.ifr_flags |= IFF_UP;
    return ioctl(s, SIOCSIFFLAGS, &r) == 0;
}

static bool interface_addr(int s, const char *name, const char *ip, const char *mask) {
    struct ifreq r = {0};
    struct sockaddr_in a = {.sin_family = AF_INET};
    snprintf(r.ifr_name, sizeof r.ifr_name, "%s", name);
    inet_pton(AF_INET, ip, &a.sin_addr);
    memcpy(&r.ifr_addr, &a, sizeof a);
    if (ioctl(s, SIOCSIFADDR, &r) != 0) return false;
    inet_pton(AF_INET, mask, &a.sin_addr);
    memcpy(&r.ifr_netmask, &a, sizeof a);
    return ioctl(s, SIOCSIFNETMASK, &r) == 0;
}

bool xfer_netns(char *err, size_t len) {
    if (unshare(CLONE_NEWNET) != 0) return snprintf(err, len, "no network namespace: %s", strerror(errno)), false;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    bool up = s >= 0 && interface_up(s, "lo");
    if (!up) snprintf(err, len, "loopback down: %s", strerror(errno));
    if (s >= 0) close(s);
    return up;
}

bool xfer_tap(const char *tap, const char *host_ip, char *err, size_t len) {
    int t = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    struct ifreq r = {.ifr_flags = IFF_TAP | IFF_NO_PI};
    snprintf(r.ifr_name, sizeof r.ifr_name, "%s", tap);
    bool made = t >= 0 && ioctl(t, TUNSETIFF, &r) == 0 && ioctl(t, TUNSETPERSIST, 1) == 0;
    if (!made) snprintf(err, len, "no tap: %s", strerror(errno));
    if (t >= 0) close(t);
    if (!made) return false;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    bool up = s >= 0 && interface_addr(s, tap, host_ip, "255.255.255.0") && interface_up(s, tap);
    if (!up) snprintf(err, len, "the tap's address: %s", strerror(errno));
    if (s >= 0) close(s);
    return up;
}

bool xfer_wait_ready(pid_t *vmm, const char *console, double *ready_s, char *err, size_t len) {
    for (double until = now_ms() + READY_TIMEOUT_MS; now_ms() < until; usleep(100 * 1000)) {
        if (find_line(console, "linux-guest: bench ready in %lf s", ready_s, 0)) return true;
        if (waitpid(*vmm, NULL, WNOHANG) != 0) {
            *vmm = -1;
            snprintf(err, len, "the VMM ended before the guest's listeners were up");
            return false;
        }
    }
    snprintf(err, len, "the guest's listeners did not come up in %d s", READY_TIMEOUT_MS / 1000);
    return false;
}

void xfer_stop(pid_t pid) {
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 50 && waitpid(pid, NULL, WNOHANG) == 0; i++) usleep(100 * 1000);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

void xfer_console_tail(const char *console, int lines) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "tail -n %d '%s' | sed 's/^/    /'", lines, console);
    fflush(stdout);
    int shown = system(cmd);
    (void)shown;
}
