/* User-mode networking (net/user.h): one slirp, the host sockets it asks for as loop waits, its
 * timers as loop tasks, the guest's frames over a socket pair with the device.
 *
 * Every handler ends in one turn of slirp (turn()): poll(2) with no timeout over the sockets
 * the last fill listed, slirp_pollfds_poll (their events, TCP's timers, the output queue),
 * then a new fill, and a wait re-armed for each socket with exactly the events slirp asked
 * for, the others' waits canceled, a task for fill's timeout when a TCP timer runs. A frame
 * from the guest goes to slirp_input between two turns, as QEMU's main loop does it.
 *
 * Threads: net_user_start makes the slirp and posts the first turn; from then on every call
 * into slirp and every field is the loop thread's, until net_user_stop. With one loop thread a
 * pending wait or task is either canceled here or has already run: none is in dispatch. */
#include <arpa/inet.h>
#include <errno.h>
#include <lib/async/task.h>
#include <lib/async/wait.h>
#include <lib/container_of.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "base/error_text.h"
#include "base/unix_socket.h"
#include "net/slirp_lib.h"
#include "net/user.h"

/* Sockets waited on at once: the guest's (NET_USER_MAX_SOCKETS), the forwards' listeners and
 * the host's clients through them. Past it, a socket fill lists is skipped that turn: it
 * stalls until one has room, as the others close. */
#define MAX_POLLED (NET_USER_MAX_SOCKETS + 64)
/* by_fd's length at most: a socket numbered above is never waited on (it stalls). The kernel
 * gives the lowest free number, so this needs 64K fds open in the process first. */
#define MAX_FD_NUMBER 65536
#define FRAMES_PER_TURN 64 /* read from the device before slirp's sockets have their turn */
/* fill's timeout when slirp holds no TCP socket, no IP fragment and no UDP or ICMP socket
 * that expires (libslirp 4.7's TIMEOUT_DEFAULT cap, which QEMU's loop sleeps for): nothing is
 * due then, so nothing is scheduled. (A frame waiting for the guest's ARP answer waits for
 * the next turn, which drops it if its second has passed.) */
#define SLIRP_IDLE_MS 1000
#define GUEST_ERRORS_SHOWN 10

#define NET_10_0_2_0 0x0a000200u
#define MASK_24 0xffffff00u
#define GATEWAY 0x0a000202u
#define DNS 0x0a000203u
#define DHCP_FIRST 0x0a00020fu

/* Frames of one kind let in this second so far. */
struct admitted {
    int64_t second;
    unsigned count;
};

/* An IPv4 datagram being fragmented: its first fragment went to slirp at `at`. */
struct datagram {
    uint8_t key[12]; /* source and destination addresses, ID, protocol: what reassembly matches */
    int64_t at;      /* 0: a free slot */
};
#define FIRSTS_KEPT 64
#define REASSEMBLY_NS ZX_SEC(20) /* within slirp's own 30 s, after which its queue may be gone */

/* A host socket slirp's last fill listed: its wait on the loop. */
struct watch {
    async_wait_t wait;
    struct net_user *u;
    int fd;
    zx_handle_t handle;
    bool pending;
    int events;    /* what slirp asked for (SLIRP_POLL_*) */
    unsigned idx;  /* in u->pfd, for the turn it was listed in */
    unsigned turn; /* the fill that listed it last */
    unsigned slot; /* in u->watches */
};

/* One of slirp's timers (SlirpCb.timer_new_opaque; IPv6's only, so none today): a task. */
struct slirp_timer {
    async_task_t task;
    struct net_user *u;
    SlirpTimerId id;
    void *cb_opaque;
    bool posted;
    struct slirp_timer *prev, *next;
};

struct net_user {
    async_dispatcher_t *loop;
    const struct slirp_lib *lib;
    Slirp *slirp;
    bool stopping, mmds;
    int fd; /* our end of the device's socket pair */
    zx_handle_t handle;
    async_wait_t dev_wait;
    bool dev_waiting, dev_gone;
    async_task_t first, tick; /* the first turn; fill's timeout */
    bool first_posted, tick_posted;
    /* Host sockets slirp holds for flows (registered, not yet unregistered), and the cap. */
    unsigned nsockets, max_sockets;
    /* What slirp keeps for the guest with no host socket to count, let in at most at
     * NET_USER_FRAGMENTS_PER_S and (MMDS) NET_USER_MMDS_SYNS_PER_S a second. */
    struct admitted fragments, syns;
    struct datagram firsts[FIRSTS_KEPT]; /* whose first fragment went to slirp (a ring) */
    unsigned next_first;
    unsigned turn, npfd, nwatches;
    struct pollfd pfd[MAX_POLLED];
    /* A fill lists at most MAX_POLLED; those of the one before not listed again go after it. */
    struct watch *watches[2 * MAX_POLLED];
    struct watch **by_fd;
    unsigned by_fd_len;
    struct slirp_timer *timers;
    void (*gone)(void *); /* net_user_start_on's: the device's end closed */
    void *gone_arg;
    unsigned guest_errors;
    uint8_t frame[NET_USER_MAX_FRAME];
};

static void turn(struct net_user *u);

/* ---- slirp's events and the loop's signals ---- */

static short poll_events(int slirp_events) {
    return (short)(((slirp_events & SLIRP_POLL_IN) ? POLLIN : 0) | ((slirp_events & SLIRP_POLL_OUT) ? POLLOUT : 0) |
                   ((slirp_events & SLIRP_POLL_PRI) ? POLLPRI : 0));
}

/* An fd gone bad is an error for slirp: it reads, fails and closes that socket. */
static int slirp_revents(short revents) {
    return ((revents & POLLIN) ? SLIRP_POLL_IN : 0) | ((revents & POLLOUT) ? SLIRP_POLL_OUT : 0) |
           ((revents & POLLPRI) ? SLIRP_POLL_PRI : 0) | ((revents & (POLLERR | POLLNVAL)) ? SLIRP_POLL_ERR : 0) |
           ((revents & POLLHUP) ? SLIRP_POLL_HUP : 0);
}

static zx_signals_t trigger_of(int slirp_events) {
    return ((slirp_events & (SLIRP_POLL_IN | SLIRP_POLL_PRI)) ? ZX_FD_READABLE : 0) |
           ((slirp_events & SLIRP_POLL_OUT) ? ZX_FD_WRITABLE : 0) |
           ((slirp_events & SLIRP_POLL_HUP) ? ZX_FD_HANGUP : 0) | ((slirp_events & SLIRP_POLL_ERR) ? ZX_FD_ERROR : 0);
}

/* ---- the watches ---- */

static struct watch *watch_of(struct net_user *u, int fd) {
    return fd >= 0 && (unsigned)fd < u->by_fd_len ? u->by_fd[fd] : NULL;
}

static bool by_fd_holds(struct net_user *u, int fd) {
    if ((unsigned)fd < u->by_fd_len) return true;
    if (fd >= MAX_FD_NUMBER) return false;
    unsigned len = u->by_fd_len ? u->by_fd_len : 256;
    while (len <= (unsigned)fd) len *= 2;
    struct watch **m = realloc(u->by_fd, len * sizeof *m);
    if (!m) return false;
    memset(m + u->by_fd_len, 0, (len - u->by_fd_len) * sizeof *m);
    u->by_fd = m;
    u->by_fd_len = len;
    return true;
}

static void on_socket(async_dispatcher_t *d, async_wait_t *wait, zx_status_t st, const zx_packet_signal_t *sig) {
    (void)d, (void)sig;
    struct watch *w = container_of(wait, struct watch, wait);
    w->pending = false;
    if (st == ZX_OK) turn(w->u);
}

static struct watch *watch_new(struct net_user *u, int fd) {
    if (fd < 0 || u->nwatches == 2 * MAX_POLLED || !by_fd_holds(u, fd)) return NULL;
    struct watch *w = calloc(1, sizeof *w);
    if (!w || zx_fd_create(fd, 0, &w->handle) != ZX_OK) {
        free(w);
        return NULL;
    }
    w->u = u;
    w->fd = fd;
    w->wait = (async_wait_t){.handler = on_socket, .object = w->handle};
    w->slot = u->nwatches;
    u->watches[u->nwatches++] = w;
    u->by_fd[fd] = w;
    return w;
}

/* Its wait canceled and its handle closed (the loop's epoll lets go of the fd) before slirp
 * closes the fd: a number the kernel gives again must not find a registration of ours. */
static void watch_free(struct watch *w) {
    struct net_user *u = w->u;
    if (w->pending) async_cancel_wait(u->loop, &w->wait);
    zx_handle_close(w->handle);
    if (w->idx < u->npfd && u->pfd[w->idx].fd == w->fd) u->pfd[w->idx].fd = -1; /* poll skips it */
    u->by_fd[w->fd] = NULL;
    u->watches[w->slot] = u->watches[--u->nwatches];
    u->watches[w->slot]->slot = w->slot;
    free(w);
}

static void watch_arm(struct watch *w, zx_signals_t want) {
    if (w->pending && w->wait.trigger == want) return;
    if (w->pending) async_cancel_wait(w->u->loop, &w->wait);
    w->wait.trigger = want;
    w->pending = async_begin_wait(w->u->loop, &w->wait) == ZX_OK;
}

/* ---- a turn ---- */

/* SlirpAddPollCb: the socket goes into pfd for the next turn's poll, its watch is kept. */
static int add_poll(int fd, int events, void *opaque) {
    struct net_user *u = opaque;
    if (u->npfd == MAX_POLLED) return -1;
    struct watch *w = watch_of(u, fd);
    if (!w && !(w = watch_new(u, fd))) return -1;
    w->events = events;
    w->idx = u->npfd;
    w->turn = u->turn;
    u->pfd[u->npfd] = (struct pollfd){.fd = fd, .events = poll_events(events)};
    return (int)u->npfd++;
}

static int get_revents(int idx, void *opaque) {
    struct net_user *u = opaque;
    return idx >= 0 && (unsigned)idx < u->npfd ? slirp_revents(u->pfd[idx].revents) : 0;
}

static void arm_device(struct net_user *u) {
    if (!u->dev_waiting && !u->dev_gone) u->dev_waiting = async_begin_wait(u->loop, &u->dev_wait) == ZX_OK;
}

/* A tick already due sooner stays: it only brings the next turn forward. */
static void schedule_tick(struct net_user *u, uint32_t timeout_ms) {
    if (timeout_ms >= SLIRP_IDLE_MS) {
        if (u->tick_posted) async_cancel_task(u->loop, &u->tick);
        u->tick_posted = false;
        return;
    }
    zx_time_t at = zx_clock_get_monotonic() + ZX_MSEC(timeout_ms);
    if (u->tick_posted && u->tick.deadline <= at) return;
    if (u->tick_posted) async_cancel_task(u->loop, &u->tick);
    u->tick.deadline = at;
    u->tick_posted = async_post_task(u->loop, &u->tick) == ZX_OK;
}

/* Walked downwards: a freed watch's slot takes the last one, already seen. */
static void fill_and_arm(struct net_user *u) {
    uint32_t timeout = UINT32_MAX;
    u->turn++;
    u->npfd = 0;
    u->lib->pollfds_fill(u->slirp, &timeout, add_poll, u);
    for (unsigned i = u->nwatches; i-- > 0;) {
        struct watch *w = u->watches[i];
        if (w->turn != u->turn) watch_free(w);
        else watch_arm(w, trigger_of(w->events));
    }
    arm_device(u);
    schedule_tick(u, timeout);
}

static void turn(struct net_user *u) {
    int n = u->npfd ? poll(u->pfd, u->npfd, 0) : 0;
    u->lib->pollfds_poll(u->slirp, n < 0, get_revents, u);
    fill_and_arm(u);
}

static void on_tick(async_dispatcher_t *d, async_task_t *task, zx_status_t st) {
    (void)d;
    struct net_user *u = container_of(task, struct net_user, tick);
    u->tick_posted = false;
    if (st == ZX_OK) turn(u);
}

static void on_first(async_dispatcher_t *d, async_task_t *task, zx_status_t st) {
    (void)d;
    struct net_user *u = container_of(task, struct net_user, first);
    u->first_posted = false;
    if (st == ZX_OK) turn(u);
}

/* ---- the guest's frames ---- */

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* Whether slirp would open a host socket for this frame: a TCP SYN, UDP but to DHCP's port,
 * ICMP; an IPv4 fragment too (its datagram's kind is unknown until slirp reassembles it).
 * What slirp drops anyway (short, not IPv4, IPv6 which is off) opens nothing. */
static bool opens_socket(const uint8_t *f, size_t len) {
    enum { ETH = 14, TCP_FLAGS = 13, SYN = 0x02, ACK = 0x10, DHCP_SERVER = 67 };
    if (len < ETH + 20 || be16(f + 12) != 0x0800) return false;
    const uint8_t *ip = f + ETH;
    size_t ihl = (size_t)(ip[0] & 15) * 4;
    if (ip[0] >> 4 != 4 || ihl < 20 || len < ETH + ihl) return false;
    if (be16(ip + 6) & 0x3fff) return true; /* more fragments, or an offset */
    const uint8_t *l4 = ip + ihl;
    size_t l4len = len - ETH - ihl;
    switch (ip[9]) {
    case IPPROTO_TCP: return l4len > TCP_FLAGS && (l4[TCP_FLAGS] & (SYN | ACK)) == SYN;
    case IPPROTO_UDP: return l4len < 4 || be16(l4 + 2) != DHCP_SERVER;
    case IPPROTO_ICMP: return true;
    default: return false;
    }
}

/* Whether slirp would keep something for this frame without a host socket: a fragment of an
 * IPv4 datagram (its reassembly queue, up to 30 s), or with a guest forward (MMDS's) a TCP SYN
 * (a connection half-open for up to 75 s before its socket exists). */
static bool is_fragment(const uint8_t *f, size_t len) {
    return len >= 14 + 20 && be16(f + 12) == 0x0800 && (be16(f + 14 + 6) & 0x3fff);
}

static bool is_syn(const uint8_t *f, size_t len) {
    enum { ETH = 14, SYN = 0x02, ACK = 0x10 };
    if (len < ETH + 20 || be16(f + 12) != 0x0800 || f[ETH + 9] != IPPROTO_TCP) return false;
    size_t ihl = (size_t)(f[ETH] & 15) * 4;
    return len > ETH + ihl + 13 && (f[ETH + ihl + 13] & (SYN | ACK)) == SYN;
}

/* Whether slirp may see this fragment. libslirp 4.7's reassembly crashes (bellhop-net ends, the
 * guest's link with it) on a fragment that is not a datagram's first when no first came before
 * it, as one frame of a hostile guest's can make it: so a later fragment goes on only after its
 * datagram's first (kept up to slirp's reassembly time) and not after its last, which ends the
 * datagram here. A guest's own fragments come first to last, and pass. */
/* An IPv4 header slirp takes past its first checks (version, lengths, checksum, TTL): a first
 * fragment it would drop must not count as one it has. */
static bool header_sound(const uint8_t *ip, size_t len) {
    size_t ihl = (size_t)(ip[0] & 15) * 4;
    if (ip[0] >> 4 != 4 || ihl < 20 || ihl > len || be16(ip + 2) < ihl || be16(ip + 2) > len || ip[8] == 0) return false;
    uint32_t sum = 0;
    for (size_t i = 0; i < ihl; i += 2) sum += be16(ip + i);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return sum == 0xffff;
}

static bool fragment_in_order(struct net_user *u, const uint8_t *f, size_t len) {
    enum { IP = 14, MF = 0x2000, OFFSET = 0x1fff };
    const uint8_t *ip = f + IP;
    if (!header_sound(ip, len - IP)) return false; /* as slirp would */
    uint16_t flags = be16(ip + 6);
    uint8_t key[12];
    memcpy(key, ip + 12, 8), memcpy(key + 8, ip + 4, 2), key[10] = ip[9], key[11] = 0;
    int64_t now = zx_clock_get_monotonic();
    if (!(flags & OFFSET) && !(flags & MF)) return true; /* not a fragment after all */
    struct datagram *d = NULL;
    for (unsigned i = 0; i < FIRSTS_KEPT && !d; i++)
        if (u->firsts[i].at && now - u->firsts[i].at < REASSEMBLY_NS && !memcmp(u->firsts[i].key, key, sizeof key))
            d = &u->firsts[i];
    if (!(flags & OFFSET)) { /* a first: one slot a datagram, however often it comes */
        if (!d) d = &u->firsts[u->next_first++ % FIRSTS_KEPT];
        memcpy(d->key, key, sizeof key);
        d->at = now;
        return true;
    }
    if (d && !(flags & MF)) d->at = 0;
    return d != NULL;
}

/* One more of a kind within its rate (a second's budget), or false to drop it. */
static bool admit(struct admitted *a, unsigned per_second) {
    int64_t second = zx_clock_get_monotonic() / ZX_SEC(1);
    if (second != a->second) a->second = second, a->count = 0;
    return a->count < per_second && ++a->count;
}

static void to_slirp(struct net_user *u, const uint8_t *f, size_t len) {
    if (u->nsockets >= u->max_sockets && opens_socket(f, len)) return; /* as a full NAT table */
    if (is_fragment(f, len) && (!admit(&u->fragments, NET_USER_FRAGMENTS_PER_S) || !fragment_in_order(u, f, len))) return;
    if (u->mmds && is_syn(f, len) && !admit(&u->syns, NET_USER_MMDS_SYNS_PER_S)) return;
    u->lib->input(u->slirp, f, (int)len);
}

/* Frames from the device into slirp, FRAMES_PER_TURN at most (its wait fires again for more).
 * A frame too long for NET_USER_MAX_FRAME, or without a header and an Ethernet one, is dropped. */
static void from_device(struct net_user *u) {
    for (unsigned i = 0; i < FRAMES_PER_TURN; i++) {
        ssize_t n = recv(u->fd, u->frame, sizeof u->frame, MSG_TRUNC | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n < 0 || (n == 0 && unix_socket_closed(u->fd))) {
            u->dev_gone = true; /* no wait again: a closed end is readable forever */
            if (u->gone) u->gone(u->gone_arg);
            return;
        }
        if ((size_t)n <= sizeof u->frame && n >= NET_USER_HDR_LEN + 14)
            to_slirp(u, u->frame + NET_USER_HDR_LEN, (size_t)n - NET_USER_HDR_LEN);
    }
}

static void on_device(async_dispatcher_t *d, async_wait_t *wait, zx_status_t st, const zx_packet_signal_t *sig) {
    (void)d, (void)sig;
    struct net_user *u = container_of(wait, struct net_user, dev_wait);
    u->dev_waiting = false;
    if (st != ZX_OK) return;
    from_device(u);
    turn(u);
}

/* ---- slirp's callbacks ---- */

/* SlirpCb.send_packet: a frame for the guest, behind a zero header. Dropped when the device's
 * end is full (the guest not reading) or gone, as a busy link drops: slirp's TCP resends. */
static ssize_t send_packet(const void *buf, size_t len, void *opaque) {
    static const uint8_t hdr[NET_USER_HDR_LEN];
    struct net_user *u = opaque;
    struct iovec iov[2] = {{(void *)hdr, sizeof hdr}, {(void *)buf, len}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
    if (len + sizeof hdr <= NET_USER_MAX_FRAME && !u->dev_gone && sendmsg(u->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 &&
        (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN))
        u->dev_gone = true;
    return (ssize_t)len; /* a negative length would have slirp log each drop */
}

/* What slirp says of a misbehaving guest (IPv6's, off today): a few lines, then nothing, so
 * that a guest cannot fill the host's log. */
static void guest_error(const char *msg, void *opaque) {
    struct net_user *u = opaque;
    if (u->guest_errors < GUEST_ERRORS_SHOWN) fprintf(stderr, "bellhop: --net user: the guest: %s\n", msg);
    u->guest_errors++;
}

static int64_t clock_get_ns(void *opaque) {
    (void)opaque;
    return zx_clock_get_monotonic();
}

static void on_timer(async_dispatcher_t *d, async_task_t *task, zx_status_t st) {
    (void)d;
    struct slirp_timer *t = container_of(task, struct slirp_timer, task);
    t->posted = false;
    if (st != ZX_OK) return;
    t->u->lib->handle_timer(t->u->slirp, t->id, t->cb_opaque);
    turn(t->u);
}

static void *timer_new(SlirpTimerId id, void *cb_opaque, void *opaque) {
    struct net_user *u = opaque;
    struct slirp_timer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    *t = (struct slirp_timer){.task = {.handler = on_timer}, .u = u, .id = id, .cb_opaque = cb_opaque,
                              .next = u->timers};
    if (u->timers) u->timers->prev = t;
    u->timers = t;
    return t;
}

static void timer_free(void *timer, void *opaque) {
    struct slirp_timer *t = timer;
    struct net_user *u = opaque;
    if (!t) return;
    if (t->posted) async_cancel_task(u->loop, &t->task);
    *(t->prev ? &t->prev->next : &u->timers) = t->next;
    if (t->next) t->next->prev = t->prev;
    free(t);
}

/* expire_ms is on clock_get_ns's clock, the loop's. */
static void timer_mod(void *timer, int64_t expire_ms, void *opaque) {
    struct slirp_timer *t = timer;
    struct net_user *u = opaque;
    if (!t) return;
    if (t->posted) async_cancel_task(u->loop, &t->task);
    t->posted = false;
    if (u->stopping) return;
    t->task.deadline = expire_ms > 0 ? ZX_MSEC(expire_ms) : 0;
    t->posted = async_post_task(u->loop, &t->task) == ZX_OK;
}

/* Not every socket is registered (a forward's listener is not), but every one slirp made for a
 * flow is, and each is unregistered right before its close: the count of the cap. The
 * listeners' unregistering, at slirp_cleanup only, would take it below zero. */
static void register_poll_fd(int fd, void *opaque) {
    struct net_user *u = opaque;
    if (fd >= 0) u->nsockets++;
}

static void unregister_poll_fd(int fd, void *opaque) {
    struct net_user *u = opaque;
    struct watch *w = watch_of(u, fd);
    if (w) watch_free(w);
    if (fd >= 0 && u->nsockets) u->nsockets--;
}

/* A socket that can take more of the guest's bytes: the fill ending this turn sees it. */
static void notify(void *opaque) { (void)opaque; }

static const SlirpCb callbacks = {
    .send_packet = send_packet,
    .guest_error = guest_error,
    .clock_get_ns = clock_get_ns,
    .timer_free = timer_free,
    .timer_mod = timer_mod,
    .register_poll_fd = register_poll_fd,
    .unregister_poll_fd = unregister_poll_fd,
    .notify = notify,
    .timer_new_opaque = timer_new,
};

/* ---- start and stop ---- */

/* Half the process's fds at most, so that the guest cannot take those the VMM needs. */
static unsigned socket_cap(void) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur / 2 >= NET_USER_MAX_SOCKETS) return NET_USER_MAX_SOCKETS;
    return (unsigned)(r.rlim_cur / 2);
}

/* Why slirp could not listen there: it says only that it could not, so the bind is tried
 * again here (as slirp does it, with SO_REUSEADDR) for the reason. */
static const char *listen_failure(const struct net_user_fwd *f) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(f->host_port), .sin_addr.s_addr = f->host_addr};
    int one = 1, s = socket(AF_INET, (f->udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    if (s < 0) return strerror(errno);
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int r = bind(s, (struct sockaddr *)&a, sizeof a);
    if (r == 0 && !f->udp) r = listen(s, 1);
    int e = errno;
    close(s);
    return r == 0 ? "refused by libslirp" : strerror(e);
}

static int add_forward(struct net_user *u, const struct net_user_fwd *f, char *err, size_t errlen) {
    struct in_addr host = {f->host_addr}, guest = {f->guest_addr};
    if (u->lib->add_hostfwd(u->slirp, f->udp, host, f->host_port, guest, f->guest_port) == 0) return 0;
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &host, text, sizeof text);
    return error_text(err, errlen, "hostfwd=%s:%s:%u: cannot listen: %s", f->udp ? "udp" : "tcp",
                      f->host_addr ? text : "", f->host_port, listen_failure(f));
}

#define LINK_LOCAL_MASK 0xffff0000u
#define MMDS_PORT 80

/* An MMDS stack (net/user.h): slirp on the link-local /16, knowing no host but the MMDS
 * address (a guest forward, to bellhop's server) and its own; nothing else of the guest's goes
 * anywhere. Its DHCP and DNS are off, their addresses never reached (virtio-net diverts only
 * frames for those two addresses). */
static int make_mmds_slirp(struct net_user *u, const struct net_user_config *c, char *err, size_t errlen) {
    uint32_t host = net_user_mmds_host(c->mmds_addr);
    SlirpConfig cfg = {
        .version = 4, /* disable_dhcp */
        .restricted = 1,
        .in_enabled = true,
        .vnetwork.s_addr = htonl(c->mmds_addr & LINK_LOCAL_MASK),
        .vnetmask.s_addr = htonl(LINK_LOCAL_MASK),
        .vhost.s_addr = htonl(host),
        .vdhcp_start.s_addr = htonl(net_user_mmds_near(c->mmds_addr, 2)),
        .vnameserver.s_addr = htonl(net_user_mmds_near(c->mmds_addr, 3)),
        .disable_host_loopback = true,
        .disable_dns = true,
        .disable_dhcp = true,
    };
    u->slirp = u->lib->new(&cfg, &callbacks, u);
    if (!u->slirp) return error_text(err, errlen, "libslirp refused the MMDS configuration");
    struct in_addr at = {htonl(c->mmds_addr)};
    if (u->lib->add_unix(u->slirp, c->mmds_socket, &at, MMDS_PORT) != 0)
        return error_text(err, errlen, "libslirp refused MMDS's forward to %s", c->mmds_socket);
    return 0;
}

static int make_slirp(struct net_user *u, const struct net_user_config *c, char *err, size_t errlen) {
    u->mmds = c->mmds_addr != 0;
    if (u->mmds) return make_mmds_slirp(u, c, err, errlen);
    SlirpConfig cfg = {
        .version = 4, /* timer_new_opaque */
        .restricted = c->restricted,
        .in_enabled = true,
        .vnetwork.s_addr = htonl(NET_10_0_2_0),
        .vnetmask.s_addr = htonl(MASK_24),
        .vhost.s_addr = htonl(GATEWAY),
        .vdhcp_start.s_addr = htonl(DHCP_FIRST),
        .vnameserver.s_addr = htonl(DNS),
    };
    u->slirp = u->lib->new(&cfg, &callbacks, u);
    if (!u->slirp) return error_text(err, errlen, "libslirp refused its configuration");
    for (unsigned i = 0; i < c->nfwd; i++)
        if (add_forward(u, &c->fwd[i], err, errlen) != 0) return -1;
    return 0;
}

/* fd (taken) as our end of the device's socket, waited on. */
static int adopt(struct net_user *u, int fd, char *err, size_t errlen) {
    u->fd = fd;
    if (zx_fd_create(u->fd, 0, &u->handle) != ZX_OK) return error_text(err, errlen, "--net user: no memory for a loop handle");
    u->dev_wait = (async_wait_t){.handler = on_device, .object = u->handle, .trigger = ZX_FD_READABLE};
    return 0;
}

static struct net_user *start(async_dispatcher_t *loop, const struct net_user_config *c, int fd,
                              void (*gone)(void *), void *arg, char *err, size_t errlen) {
    const struct slirp_lib *lib = slirp_lib(err, errlen);
    struct net_user *u = lib ? calloc(1, sizeof *u) : NULL;
    if (!u) {
        if (lib) error_text(err, errlen, "--net user: out of memory");
        close(fd);
        return NULL;
    }
    *u = (struct net_user){.loop = loop, .lib = lib, .fd = -1, .handle = ZX_HANDLE_INVALID,
                           .max_sockets = socket_cap(), .gone = gone, .gone_arg = arg};
    u->first = (async_task_t){.handler = on_first, .deadline = ZX_TIME_INFINITE_PAST};
    u->tick = (async_task_t){.handler = on_tick};
    if (adopt(u, fd, err, errlen) != 0 || make_slirp(u, c, err, errlen) != 0) goto fail;
    u->first_posted = true; /* before the post: the loop thread may run it at once */
    if (async_post_task(loop, &u->first) != ZX_OK) {
        u->first_posted = false;
        error_text(err, errlen, "--net user: the loop is shutting down");
        goto fail;
    }
    return u;
fail:
    net_user_stop(u);
    return NULL;
}

struct net_user *net_user_start(async_dispatcher_t *loop, const struct net_user_config *c, int *device_fd,
                                char *err, size_t errlen) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0) {
        error_text(err, errlen, "--net user: socketpair: %s", strerror(errno));
        return NULL;
    }
    struct net_user *u = start(loop, c, pair[0], NULL, NULL, err, errlen);
    if (!u) close(pair[1]);
    else *device_fd = pair[1];
    return u;
}

struct net_user *net_user_start_on(async_dispatcher_t *loop, const struct net_user_config *c, int fd,
                                   void (*gone)(void *), void *arg, char *err, size_t errlen) {
    return start(loop, c, fd, gone, arg, err, errlen);
}

/* slirp_cleanup unregisters (so frees the watch of) each socket it closes, and frees its timers;
 * what is left after it is freed here all the same. */
void net_user_stop(struct net_user *u) {
    if (!u) return;
    u->stopping = true;
    if (u->first_posted) async_cancel_task(u->loop, &u->first);
    if (u->tick_posted) async_cancel_task(u->loop, &u->tick);
    if (u->dev_waiting) async_cancel_wait(u->loop, &u->dev_wait);
    u->first_posted = u->tick_posted = u->dev_waiting = false;
    u->dev_gone = true;
    if (u->slirp) u->lib->cleanup(u->slirp);
    while (u->nwatches) watch_free(u->watches[u->nwatches - 1]);
    while (u->timers) timer_free(u->timers, u);
    if (u->handle != ZX_HANDLE_INVALID) zx_handle_close(u->handle);
    if (u->fd >= 0) close(u->fd);
    free(u->by_fd);
    free(u);
}

int net_user_load(char *err, size_t errlen) { return slirp_lib(err, errlen) ? 0 : -1; }
