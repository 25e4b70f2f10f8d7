/* Guest RAM served by a page-fault handler process (vmm/machine/uffd_backend.h has the
 * protocol and what happens when the handler goes away). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "base/error_text.h"
#include "base/guest_mem.h"
#include "vmm/machine/uffd_backend.h"
#include "vmm/sandbox/sandbox.h"

#define PAGE 4096u

struct uffd_backend {
    int uffd;     /* the watching thread's once it runs (closed by it), the opener's before */
    int sock;     /* the connection to the handler */
    int stop_efd; /* written when the machine ends */
    uint8_t *ram;
    uint64_t size;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    pthread_t thread;
    bool sandbox;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* lock: */
    int confined;       /* the thread's sandbox: 0 until tried, then 1, or -1 (confine_err) */
    char confine_err[160];
    uint64_t deadline;  /* CLOCK_MONOTONIC ns by which set-up must be over */
    bool running;       /* uffd_backend_running has been called: gone() is the machine's to hear */
    bool ended;         /* the handler went away (or set-up timed out): why */
    char why[sizeof(((struct sockaddr_un *)0)->sun_path) + 96];
    void (*gone)(void *ctx, const char *why);
    void *ctx;
};

int uffd_region_table(const struct uffd_region *r, unsigned n, char *buf, size_t len) {
    size_t at = 0;
    int k = snprintf(buf, len, "[");
    for (unsigned i = 0; k >= 0 && (at += (size_t)k) < len && i < n; i++)
        k = snprintf(buf + at, len - at,
                     "%s{\"base_host_virt_addr\":%" PRIu64 ",\"size\":%" PRIu64 ",\"offset\":%" PRIu64
                     ",\"page_size\":%" PRIu64 ",\"page_size_kib\":%" PRIu64 "}",
                     i ? "," : "", r[i].host, r[i].size, r[i].offset, r[i].page_size, r[i].page_size);
    if (k < 0 || at >= len) return -1;
    k = snprintf(buf + at, len - at, "]");
    return k < 0 || (at += (size_t)k) >= len ? -1 : (int)at;
}

unsigned uffd_ram_regions(void *ram, uint64_t size, struct uffd_region r[2]) {
    struct gm_range part[2];
    unsigned n = gm_ranges(&(struct guest_mem){.size = size}, part);
    for (unsigned i = 0; i < n; i++)
        r[i] = (struct uffd_region){.host = (uintptr_t)ram + part[i].off, .size = part[i].size,
                                    .offset = part[i].off, .page_size = PAGE};
    return n;
}

/* A userfaultfd for RAM that KVM reaches too: KVM's faults on it are the kernel's, so it cannot
 * be UFFD_USER_MODE_ONLY (KVM_RUN would fail at the guest's first missing page). Where the
 * system call is refused to unprivileged processes (vm.unprivileged_userfaultfd=0), Linux
 * 6.1's /dev/userfaultfd gives one to whoever its file mode lets in. Non-blocking, as
 * Firecracker's: the handler shares this open file and polls it. */
static int new_uffd(char *err, size_t errlen) {
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK), why = errno;
#ifdef USERFAULTFD_IOC_NEW
    if (fd < 0 && why == EPERM) {
        int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
        if (dev >= 0) fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
        if (dev >= 0) close(dev);
    }
#endif
    if (fd >= 0) return fd;
    if (why == EPERM)
        return error_text(err, errlen, "cannot make a userfaultfd: not allowed (an unprivileged process needs "
                                       "vm.unprivileged_userfaultfd=1 or read-write access to /dev/userfaultfd)");
    return error_text(err, errlen, "cannot make a userfaultfd: %s", strerror(why));
}

/* The features the handler relies on, and RAM registered for missing pages. */
static int register_ram(int uffd, uint8_t *ram, uint64_t size, char *err, size_t errlen) {
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE};
    if (ioctl(uffd, UFFDIO_API, &api) != 0)
        return error_text(err, errlen, "userfaultfd: this kernel has no remove events (UFFD_FEATURE_EVENT_REMOVE): %s",
                          strerror(errno));
    struct uffdio_register reg = {.range = {(uintptr_t)ram, size}, .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0)
        return error_text(err, errlen, "userfaultfd: cannot register guest RAM: %s", strerror(errno));
    if (!(reg.ioctls & (1ull << _UFFDIO_COPY)) || !(reg.ioctls & (1ull << _UFFDIO_ZEROPAGE)))
        return error_text(err, errlen, "userfaultfd: guest RAM cannot be filled by UFFDIO_COPY and UFFDIO_ZEROPAGE");
    return 0;
}

/* A connection to the handler: a handler whose backlog is full gets UFFD_CONNECT_TIMEOUT_S. */
static int connect_handler(const char *path, char *err, size_t errlen) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    memcpy(a.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = UFFD_CONNECT_TIMEOUT_S};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
        connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        int why = errno;
        if (fd >= 0) close(fd);
        if (why == EAGAIN)
            return error_text(err, errlen, "the page-fault handler's socket %s: nobody accepted within %d s", path,
                              UFFD_CONNECT_TIMEOUT_S);
        return error_text(err, errlen, "the page-fault handler's socket %s: %s", path, strerror(why));
    }
    return fd;
}

/* The region table with the userfaultfd, in one message. */
static int send_table(struct uffd_backend *u, char *err, size_t errlen) {
    struct uffd_region r[2];
    char json[512];
    int n = uffd_region_table(r, uffd_ram_regions(u->ram, u->size, r), json, sizeof json);
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control = {0};
    struct iovec iov = {json, n > 0 ? (size_t)n : 0};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &u->uffd, sizeof(int));
    ssize_t sent = n > 0 ? sendmsg(u->sock, &msg, MSG_NOSIGNAL) : -1;
    if (sent == n) return 0;
    return error_text(err, errlen, "the page-fault handler's socket %s: cannot send the region table: %s", u->path,
                      sent < 0 ? strerror(errno) : "sent in part");
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* ---- the watching thread ---- */

/* The thread's sandbox, its outcome told to the opener: true when confined (or not asked to be). */
static bool confine(struct uffd_backend *u) {
    int r = 1;
    pthread_setname_np(pthread_self(), "uffd");
    if (u->sandbox && sandbox_enter(SANDBOX_UFFD, u->confine_err, sizeof u->confine_err) != 0) r = -1;
    pthread_mutex_lock(&u->lock);
    u->confined = r;
    pthread_cond_broadcast(&u->cond);
    pthread_mutex_unlock(&u->lock);
    if (r == 1) sandbox_probe(SANDBOX_UFFD);
    return r == 1;
}

/* How long to wait for the handler's end: until the set-up deadline, or for ever once
 * running; 0 when the deadline has passed. */
static int wait_ms(struct uffd_backend *u) {
    pthread_mutex_lock(&u->lock);
    bool running = u->running;
    uint64_t deadline = u->deadline;
    pthread_mutex_unlock(&u->lock);
    if (running) return -1;
    uint64_t now = now_ns();
    return now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
}

/* Until the handler's end (true, why said) or the machine's (false). Whatever the handler
 * writes is not part of the protocol: read and dropped. */
static bool watch(struct uffd_backend *u, char *why, size_t len) {
    for (;;) {
        int ms = wait_ms(u);
        struct pollfd p[2] = {{.fd = u->stop_efd, .events = POLLIN}, {.fd = u->sock, .events = POLLIN | POLLRDHUP}};
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        int n = ms == 0 ? 0 : ppoll(p, 2, ms < 0 ? NULL : &ts, NULL);
        if (n < 0 && errno == EINTR) continue;
        if (n > 0 && p[0].revents) return false;
        if (n == 0 && wait_ms(u) == 0) {
            snprintf(why, len, "the page-fault handler (%s) did not serve bellhop's set-up within %d s", u->path,
                     UFFD_SETUP_TIMEOUT_S);
            return true;
        }
        if (n <= 0) continue;
        char drop[256];
        ssize_t k = p[1].revents & (POLLHUP | POLLERR | POLLRDHUP) ? 0 : read(u->sock, drop, sizeof drop);
        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) {
            snprintf(why, len, "the page-fault handler (%s) went away", u->path);
            return true;
        }
    }
}

/* RAM unregistered: every thread waiting for a page is woken (the page reads as zeros), as is
 * any later access; closing the userfaultfd (the handler's copies gone with it) also wakes a
 * balloon's discard waiting for its remove event to be read. */
static void release_ram(struct uffd_backend *u) {
    if (u->uffd < 0) return;
    struct uffdio_range r = {(uintptr_t)u->ram, u->size};
    ioctl(u->uffd, UFFDIO_UNREGISTER, &r);
    close(u->uffd);
    u->uffd = -1;
}

static void *watch_main(void *arg) {
    struct uffd_backend *u = arg;
    if (!confine(u)) return NULL; /* the userfaultfd stays the opener's to close */
    char why[sizeof u->why];
    if (watch(u, why, sizeof why)) {
        pthread_mutex_lock(&u->lock);
        u->ended = true;
        memcpy(u->why, why, sizeof why);
        bool running = u->running;
        pthread_mutex_unlock(&u->lock);
        /* the machine stops its vCPUs first: woken, they leave KVM_RUN before the guest runs on */
        if (running) u->gone(u->ctx, why);
    }
    release_ram(u);
    return NULL;
}

/* ---- the backend ---- */

static void free_backend(struct uffd_backend *u) {
    if (u->uffd >= 0) close(u->uffd);
    if (u->sock >= 0) close(u->sock);
    if (u->stop_efd >= 0) close(u->stop_efd);
    pthread_cond_destroy(&u->cond);
    pthread_mutex_destroy(&u->lock);
    free(u);
}

/* The watching thread, confined before it owns the userfaultfd. */
static int start_watching(struct uffd_backend *u, char *err, size_t errlen) {
    if ((u->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
        return error_text(err, errlen, "cannot watch the page-fault handler: %s", strerror(errno));
    int r = pthread_create(&u->thread, NULL, watch_main, u);
    if (r != 0) return error_text(err, errlen, "cannot watch the page-fault handler: %s", strerror(r));
    pthread_mutex_lock(&u->lock);
    while (u->confined == 0) pthread_cond_wait(&u->cond, &u->lock);
    int confined = u->confined;
    pthread_mutex_unlock(&u->lock);
    if (confined == 1) return 0;
    pthread_join(u->thread, NULL);
    return error_text(err, errlen, "the page-fault handler's watcher: %s", u->confine_err);
}

struct uffd_backend *uffd_backend_open(void *ram, uint64_t size, const char *socket_path, bool sandbox, char *err,
                                       size_t errlen) {
    struct uffd_backend *u = calloc(1, sizeof *u);
    if (!u) return error_text(err, errlen, "out of memory"), NULL;
    *u = (struct uffd_backend){.uffd = -1, .sock = -1, .stop_efd = -1, .ram = ram, .size = size, .sandbox = sandbox};
    pthread_mutex_init(&u->lock, NULL);
    pthread_cond_init(&u->cond, NULL);
    if (strlen(socket_path) >= sizeof u->path) {
        error_text(err, errlen, "the page-fault handler's socket %s: path too long for a Unix socket", socket_path);
        return free_backend(u), NULL;
    }
    memcpy(u->path, socket_path, strlen(socket_path) + 1);
    /* (the handler's socket first: a path nobody serves is the same refusal on every host) */
    if ((u->sock = connect_handler(u->path, err, errlen)) < 0 || (u->uffd = new_uffd(err, errlen)) < 0 ||
        register_ram(u->uffd, u->ram, size, err, errlen) != 0)
        return free_backend(u), NULL;
    u->deadline = now_ns() + UFFD_SETUP_TIMEOUT_S * 1000000000ull;
    /* (a handler that ends at once is seen by the thread as soon as it polls) */
    if (send_table(u, err, errlen) != 0 || start_watching(u, err, errlen) != 0) return free_backend(u), NULL;
    return u;
}

int uffd_backend_running(struct uffd_backend *u, void (*gone)(void *ctx, const char *why), void *ctx, char *err,
                         size_t errlen) {
    pthread_mutex_lock(&u->lock);
    bool ended = u->ended;
    if (ended) snprintf(err, errlen, "%s", u->why);
    else u->running = true, u->gone = gone, u->ctx = ctx;
    pthread_mutex_unlock(&u->lock);
    return ended ? -1 : 0;
}

void uffd_backend_close(struct uffd_backend *u) {
    if (!u) return;
    uint64_t one = 1;
    ssize_t w = write(u->stop_efd, &one, sizeof one); /* (an eventfd written once cannot be full) */
    (void)w;
    pthread_join(u->thread, NULL); /* which released RAM */
    free_backend(u);
}
