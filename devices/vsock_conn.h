/* What virtio-vsock's two halves share: devices/virtio_vsock.c speaks virtio (the guest's
 * packets, the rings, credit, snapshots) and devices/vsock_conn.c the host's Unix sockets (the
 * listener, each connection's socket and the bytes waiting for it, the timer). Both run on the
 * loop thread only (and create/destroy before and after it); nothing here takes a lock but
 * vsock_sync's read of the virtio generation. */
#ifndef BELLHOP_DEVICES_VSOCK_CONN_H
#define BELLHOP_DEVICES_VSOCK_CONN_H

#include <lib/async/task.h>
#include <lib/async/wait.h>
#include <linux/virtio_vsock.h>
#include <sys/types.h>
#include <sys/un.h>

#include "devices/virtio_vsock.h"

#define VSOCK_HOST_CID 2
#define VSOCK_HDR_LEN 44u              /* struct virtio_vsock_hdr */
#define VSOCK_MAX_PKT (64u * 1024)     /* payload of one packet, either way */
#define VSOCK_CONN_BUF (64u * 1024)    /* the buf_alloc the device offers the guest per connection */
#define VSOCK_MAX_CONNS 1024           /* connections, pending host clients included */
#define VSOCK_LINE_MAX 32              /* "CONNECT <port>\n" must come within this many bytes */
#define VSOCK_TIMEOUT_MS 2000          /* silent client, unanswered request, shutdown drain */
#define VSOCK_FIRST_HOST_PORT (1u << 30) /* host-initiated connections' ports count up from here */

enum vsock_conn_state {
    VSOCK_LINE,     /* a host client accepted, its "CONNECT <port>\n" not read yet: no guest side */
    VSOCK_HOST_REQ, /* REQUEST owed or sent to the guest, its answer awaited */
    VSOCK_OPEN,     /* established (maybe half shut down either way) */
    VSOCK_DEAD,     /* host socket gone; only the RST owed to the guest remains */
};

/* One connection. The device owns it from accept/connect to the RST that ends it (or to its
 * free, when the guest never heard of it); it owns its socket, wait and buffer. */
struct vsock_conn {
    struct vsock *v;
    unsigned slot; /* in v->conns */
    enum vsock_conn_state state;
    int fd;
    zx_handle_t handle;
    async_wait_t wait;
    zx_signals_t waiting_for; /* the pending wait's trigger, 0 when none */
    uint32_t host_port, guest_port;
    struct vsock_conn *hash_next;       /* v->buckets (every state but VSOCK_LINE) */
    struct vsock_conn *rx_prev, *rx_next; /* v->rx_head's list: packets owed to the guest */
    bool on_rx;
    zx_time_t deadline; /* 0, or when this state times out */
    /* The guest's receive buffer, from its headers, and what was sent into it. */
    uint32_t guest_buf_alloc, guest_fwd_cnt, sent_to_guest;
    /* Ours: bytes of the guest's passed to the host socket, and the count the guest last heard. */
    uint32_t fwd_cnt, fwd_cnt_told;
    /* The guest's bytes the host socket has not taken yet (a ring of VSOCK_CONN_BUF, allocated
     * only while it holds something). */
    uint8_t *ring;
    uint32_t ring_head, ring_len;
    /* VSOCK_LINE: the line read so far; VSOCK_OPEN, host-initiated: "OK <port>\n", written
     * to the client before any of the guest's bytes, from line_off. */
    char line[VSOCK_LINE_MAX];
    uint8_t line_len, line_off;
    /* Packets owed to the guest. */
    bool owe_request, owe_response, owe_credit, owe_rst;
    uint32_t owe_shutdown; /* VIRTIO_VSOCK_SHUTDOWN_ flags */
    bool guest_knows;   /* the guest asked for it or was sent its REQUEST: ending it takes an RST */
    bool hashed;        /* in v->buckets */
    bool host_readable; /* the host socket had bytes (or EOF) when last looked at */
    bool host_eof, guest_no_send, guest_no_recv, host_rd_shut, host_wr_shut;
};

#define VSOCK_BUCKETS 1024
#define VSOCK_RST_RING 64

struct vsock {
    struct virtio_dev *vd;
    struct vm_env *env;
    uint64_t guest_cid;
    zx_duration_t timeout;
    uint32_t generation; /* the virtio generation the connections belong to */
    /* the listener at the socket path, made at create, its file removed at destroy while it
     * is still ours (the same inode) */
    char path[sizeof(struct sockaddr_un) - sizeof(sa_family_t)];
    int listen_fd;
    zx_handle_t listen_handle;
    async_wait_t listen_wait;
    bool listen_waiting;
    dev_t path_dev;
    ino_t path_ino;
    zx_time_t accept_again; /* 0, or when accepting resumes after an error (out of fds) */
    /* connections: every one in conns[0..nconns), the guest's side keyed in buckets */
    struct vsock_conn *conns[VSOCK_MAX_CONNS];
    unsigned nconns;
    struct vsock_conn *buckets[VSOCK_BUCKETS];
    struct vsock_conn *rx_head, *rx_tail;
    uint32_t next_host_port;
    /* the one timer, at the earliest deadline */
    async_task_t sweep;
    bool sweep_posted;
    zx_time_t sweep_at;
    /* RSTs owed for packets of connections that do not exist (dropped when full) */
    struct vsock_rst {
        uint32_t host_port, guest_port;
    } rsts[VSOCK_RST_RING];
    unsigned rst_first, nrsts;
    /* a receive buffer taken from the ring and not filled yet */
    struct virtq_req *rx;
    bool have_rx;
    bool reset_event_owed; /* TRANSPORT_RESET, after a restore */
};

/* ---- devices/vsock_conn.c: the host's side ---- */

/* The listener at path (a stale socket there is replaced, a live one refused), waited for on
 * the loop when there is one. 0, or -1 with a reason. */
int vsock_listen(struct vsock *v, const char *path, char *err, size_t errlen);
/* Closes the listener and removes its file, still ours (no loop calls: it is gone). */
void vsock_unlisten(struct vsock *v);
/* A non-blocking connection to "<path>_<port>": its fd, or -1 (nobody listens). */
int vsock_host_connect(struct vsock *v, uint32_t port);
/* A new connection over fd (which it takes) in state, or NULL (full, or out of memory:
 * fd closed). */
struct vsock_conn *vsock_conn_new(struct vsock *v, int fd, enum vsock_conn_state state);
/* Frees it, its socket, wait and buffer, wherever it is listed. */
void vsock_conn_free(struct vsock_conn *c);
/* Closes its host socket (what the guest owes it is dropped) and makes it owe an RST, or
 * frees it where the guest never heard of it. */
void vsock_conn_reset(struct vsock_conn *c);
void vsock_conn_free_all(struct vsock *v);
/* The guest's len bytes at off of r's readable side, for the host socket: written now, or
 * kept for it. -1 when they are beyond what the guest was allowed, or the socket failed. */
int vsock_conn_take(struct vsock_conn *c, const struct virtq_req *r, uint64_t off, uint32_t len);
/* What is kept goes to the host socket, as far as it takes it. -1 when it failed. */
int vsock_conn_flush(struct vsock_conn *c);
/* Reads the host socket into r's writable side at off, at most max bytes: the count, 0 at
 * EOF, -1 when nothing is there now, -2 on an error. */
ssize_t vsock_conn_read(struct vsock_conn *c, const struct virtq_req *r, uint64_t off, uint32_t max);
/* shutdown(2) of the host socket's directions the guest gave up (SHUT_WR only once nothing
 * of the guest's is kept). */
void vsock_conn_shut_host(struct vsock_conn *c);
/* The wait on its socket, for what it needs now (reading, writing, nothing). */
void vsock_conn_arm(struct vsock_conn *c);
/* Its deadline, the timer moved earlier when needed (0: none). */
void vsock_conn_set_deadline(struct vsock_conn *c, zx_time_t deadline);
struct vsock_conn *vsock_conn_find(struct vsock *v, uint32_t host_port, uint32_t guest_port);
/* Lists it under its (host_port, guest_port). */
void vsock_conn_hash(struct vsock_conn *c);
/* A host port no connection uses, counting up from VSOCK_FIRST_HOST_PORT. */
uint32_t vsock_next_host_port(struct vsock *v);
zx_time_t vsock_now(struct vsock *v);
/* Puts it on (or takes it off) the list of connections that owe the guest a packet, at its end. */
void vsock_conn_queue(struct vsock_conn *c, bool owes);

/* Bytes kept for the host socket, the OK line included. */
static inline bool vsock_conn_unflushed(const struct vsock_conn *c) { return c->ring_len || c->line_off < c->line_len; }
/* What the guest's receive buffer has room for (a guest claiming to have taken more than it
 * was sent only stops its own reception). */
static inline uint32_t vsock_guest_credit(const struct vsock_conn *c) {
    uint32_t in_flight = c->sent_to_guest - c->guest_fwd_cnt;
    return in_flight < c->guest_buf_alloc ? c->guest_buf_alloc - in_flight : 0;
}
/* Whether the host socket's bytes would go to the guest now. */
static inline bool vsock_conn_wants_host_bytes(const struct vsock_conn *c) {
    return c->state == VSOCK_OPEN && !c->host_eof && !c->guest_no_recv && vsock_guest_credit(c) > 0;
}

/* ---- devices/virtio_vsock.c: the virtio side, which the host side calls ---- */

/* At each entry from the loop: a device reset since the connections were made drops them all
 * (their guest is gone). True when it did. */
bool vsock_sync(struct vsock *v);
/* A host client asked for guest port `port`: the connection is offered to the guest. */
void vsock_host_request(struct vsock_conn *c, uint32_t port);
/* Something changed on c (its socket, its timer): what it owes the guest is queued, it ends
 * when both sides are done, its wait follows what it needs. */
void vsock_conn_changed(struct vsock_conn *c);
/* Sends the guest what is owed, while it gives receive buffers. */
void vsock_rx_pump(struct vsock *v);

#endif
