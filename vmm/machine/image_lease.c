/* Read leases on the files guest RAM shares pages with (see image_lease.h). */
#include <errno.h>
#include <fcntl.h>
#include <lib/container_of.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "vmm/machine/image_lease.h"

/* One per process: SIGIO's handler counts breaks into it (a signal handler can only write). */
static int break_efd = -1;

static void on_sigio(int sig) {
    (void)sig;
    int saved = errno;
    uint64_t one = 1;
    if (write(break_efd, &one, sizeof one) < 0) { /* the count saturating is still a wake */
    }
    errno = saved;
}

static pthread_once_t catching = PTHREAD_ONCE_INIT;
static bool caught;

static void install(void) {
    break_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct sigaction sa = {.sa_handler = on_sigio, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    caught = break_efd >= 0 && sigaction(SIGIO, &sa, NULL) == 0;
}

/* The break signal's handler, installed once, before the first lease: SIGIO's default
 * action would end the process. */
static bool catch_breaks(void) {
    pthread_once(&catching, install);
    return caught;
}

void image_leases_init(struct image_leases *l) {
    *l = (struct image_leases){.handle = ZX_HANDLE_INVALID};
    for (unsigned i = 0; i < IMAGE_LEASE_MAX; i++) l->fd[i] = -1;
}

int image_lease_take(struct image_leases *l, int fd) {
    if (fd < 0 || l->n == IMAGE_LEASE_MAX || !catch_breaks()) return -1;
    if (fcntl(fd, F_SETLEASE, F_RDLCK) != 0) return -1; /* EAGAIN: a writer; EACCES: not ours */
    l->fd[l->n++] = fd;
    return fd;
}

/* unlock: let the lease go even where another process shares the open file (a fork's child:
 * close alone would leave it, and the writer waiting). */
static void release(struct image_leases *l, bool unlock) {
    for (unsigned i = 0; i < l->n; i++) {
        if (unlock) fcntl(l->fd[i], F_SETLEASE, F_UNLCK);
        close(l->fd[i]);
        l->fd[i] = -1;
    }
    l->n = 0;
}

static void on_break(async_dispatcher_t *loop, async_wait_t *wait, zx_status_t status,
                     const zx_packet_signal_t *signal) {
    (void)loop, (void)signal;
    struct image_leases *l = container_of(wait, struct image_leases, wait);
    if (status != ZX_OK) return;
    uint64_t count;
    if (read(break_efd, &count, sizeof count) < 0) { /* another machine's loop took it: breaks are shared */
    }
    if (l->n == 0) return;
    /* Which lease broke does not matter: copying the rest costs about what loading did. */
    l->unshare(l->arg);
    release(l, true);
}

int image_leases_watch(struct image_leases *l, async_dispatcher_t *loop, void (*unshare)(void *arg), void *arg) {
    l->unshare = unshare;
    l->arg = arg;
    if (l->n == 0) return 0;
    if (zx_fd_create(break_efd, 0, &l->handle) != ZX_OK) return -1;
    l->wait = (async_wait_t){.handler = on_break, .object = l->handle, .trigger = ZX_FD_READABLE};
    return async_begin_wait(loop, &l->wait) == ZX_OK ? 0 : -1;
}

void image_leases_release(struct image_leases *l) {
    if (l->handle != ZX_HANDLE_INVALID) zx_handle_close(l->handle); /* ends the wait */
    l->handle = ZX_HANDLE_INVALID;
    release(l, false); /* the end: closing is enough, and all the main thread's sandbox allows */
}
