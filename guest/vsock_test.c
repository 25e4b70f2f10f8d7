/* The vsock self-tests: a refused connection, an echo through the host that takes more than
 * one credit window each way, and the guest's own echo listener for the host's tests. Every
 * wait has a deadline; a connection that stalls (IDLE without a byte either way) is reset. */
#include "guest/vsock_test.h"
#include "guest/irq.h"
#include "guest/vsock.h"

#define CONNECT_WAIT (5 * IRQ_TICKS_PER_SEC)
#define IDLE (10 * IRQ_TICKS_PER_SEC)
#define CLOSE_WAIT (3 * IRQ_TICKS_PER_SEC)
#define CHUNK (16u << 10)

/* The bytes sent: a pattern whose period (2049 words) is no multiple of any packet's size, so
 * that a packet lost, repeated or out of order shows; kept twice over, so that a whole chunk
 * follows any offset. */
#define PATTERN_WORDS 2049u
#define PATTERN_PERIOD (PATTERN_WORDS * 8)
static uint64_t pattern[2 * PATTERN_WORDS];
_Static_assert(CHUNK <= PATTERN_PERIOD, "a chunk is read from one place of the pattern");

static void make_pattern(void) {
    for (uint32_t i = 0; i < 2 * PATTERN_WORDS; i++) pattern[i] = (i % PATTERN_WORDS + 1) * 0x9e3779b97f4a7c15ull;
}

static const uint8_t *pattern_at(uint32_t off) { return (const uint8_t *)pattern + off % PATTERN_PERIOD; }

/* Where the n bytes at a and b first differ, or n; eight bytes a step (see lib.c's memcpy). */
static uint32_t first_difference(const uint8_t *a, const uint8_t *b, uint32_t n) {
    uint32_t i = 0;
    for (uint64_t x, y; i + 8 <= n; i += 8) {
        __builtin_memcpy(&x, a + i, 8);
        __builtin_memcpy(&y, b + i, 8);
        if (x != y) break;
    }
    while (i < n && a[i] == b[i]) i++;
    return i;
}

static const char *connect_error(int c) {
    return c == VSOCK_REFUSED ? "refused" : c == VSOCK_TIMED_OUT ? "no answer" : "no free connection";
}

struct echo_run {
    uint32_t sent, got, bad_at; /* bad_at: the first byte that came back wrong, or ECHO_BYTES */
    const char *end;            /* why it stopped short, or NULL */
};

/* One step of the echo through the host: sends what credit allows, takes what came back.
 * True when anything moved. */
static bool echo_step(int c, struct echo_run *r) {
    static uint8_t in[CHUNK];
    bool moved = false;
    if (r->sent < VSOCK_TEST_ECHO_BYTES) {
        uint32_t n = VSOCK_TEST_ECHO_BYTES - r->sent < CHUNK ? VSOCK_TEST_ECHO_BYTES - r->sent : CHUNK;
        long w = vsock_send(c, pattern_at(r->sent), n);
        if (w < 0) r->end = "the connection ended while sending";
        else r->sent += (uint32_t)w, moved |= w > 0;
    }
    long got = vsock_recv(c, in, sizeof in);
    if (got == VSOCK_EOF || got < 0) r->end = got == VSOCK_EOF ? "the host shut down early" : "reset";
    if (got <= 0) return moved;
    uint32_t same = first_difference(in, pattern_at(r->got), (uint32_t)got);
    if (same < got && r->bad_at == VSOCK_TEST_ECHO_BYTES) r->bad_at = r->got + same;
    r->got += (uint32_t)got;
    return true;
}

static void echo_test(vsock_result_fn *result) {
    char detail[160];
    int c = vsock_connect(VSOCK_TEST_ECHO_PORT, irq_ticks + CONNECT_WAIT);
    if (c < 0) {
        snprintf(detail, sizeof detail, "connecting to host port %u: %s", VSOCK_TEST_ECHO_PORT, connect_error(c));
        result("vsock-echo", false, detail);
        return;
    }
    make_pattern();
    struct echo_run r = {.bad_at = VSOCK_TEST_ECHO_BYTES};
    const struct vsock_counts *n = vsock_counts();
    unsigned waits0 = n->credit_waits, moves0 = n->credit_moves;
    uint64_t idle_until = irq_ticks + IDLE;
    while (r.got < VSOCK_TEST_ECHO_BYTES && !r.end)
        if (echo_step(c, &r)) idle_until = irq_ticks + IDLE;
        else if (!vsock_wait(idle_until)) r.end = "stalled";
    vsock_close(c, irq_ticks + CLOSE_WAIT);
    bool ok = r.got == VSOCK_TEST_ECHO_BYTES && r.bad_at == VSOCK_TEST_ECHO_BYTES;
    char wrong[40] = "byte for byte";
    if (r.bad_at < VSOCK_TEST_ECHO_BYTES) snprintf(wrong, sizeof wrong, "the first wrong at %u", r.bad_at);
    snprintf(detail, sizeof detail, "%u bytes to host port %u, %u back %s%s%s; %u sends waited for credit, which moved %u times",
             r.sent, VSOCK_TEST_ECHO_PORT, r.got, wrong, r.end ? ", then " : "", r.end ? r.end : "",
             n->credit_waits - waits0, n->credit_moves - moves0);
    result("vsock-echo", ok, detail);
}

bool vsock_selftest(struct vdev *d, bool echo, vsock_result_fn *result) {
    char detail[128];
    if (!vsock_init(d)) {
        result("vsock-init", false, "the device failed as its buffers were given");
        return false;
    }
    int c = vsock_connect(VSOCK_TEST_NOBODY_PORT, irq_ticks + CONNECT_WAIT);
    if (c >= 0) vsock_close(c, irq_ticks + CLOSE_WAIT);
    snprintf(detail, sizeof detail, "guest cid %llu; host port %u, where nobody listens: %s",
             (unsigned long long)vsock_guest_cid(), VSOCK_TEST_NOBODY_PORT, c >= 0 ? "connected" : connect_error(c));
    result("vsock-refused", c == VSOCK_REFUSED, detail);
    if (echo) echo_test(result);
    return true;
}

/* Echoes c until the host shuts down (true), or it is reset or stalls; *total: the bytes. */
static bool echo_back(int c, uint32_t *total) {
    static uint8_t buf[CHUNK];
    uint32_t have = 0, off = 0;
    uint64_t idle_until = irq_ticks + IDLE;
    for (*total = 0;;) {
        bool moved = false;
        if (off < have) {
            long w = vsock_send(c, buf + off, have - off);
            if (w < 0) return false;
            off += (uint32_t)w, moved |= w > 0;
        }
        if (off == have) {
            long r = vsock_recv(c, buf, sizeof buf);
            if (r == VSOCK_EOF) return true;
            if (r < 0) return false;
            have = (uint32_t)r, off = 0, *total += (uint32_t)r, moved |= r > 0;
        }
        if (moved) idle_until = irq_ticks + IDLE;
        else if (!vsock_wait(idle_until)) return false;
    }
}

_Noreturn void vsock_serve(vsock_result_fn *result) {
    if (!vsock_listen(VSOCK_TEST_SERVE_PORT)) printf("vsock: cannot listen on port %u\n", VSOCK_TEST_SERVE_PORT);
    printf("vsock: listening on port %u\n", VSOCK_TEST_SERVE_PORT);
    for (unsigned n = 1;; n++) {
        int c;
        /* (a failed device answers at once: the tick between tries keeps this from spinning) */
        while ((c = vsock_accept(VSOCK_TEST_SERVE_PORT, irq_ticks + IRQ_TICKS_PER_SEC)) < 0) irq_wait();
        uint32_t port = vsock_peer_port(c), bytes;
        bool ok = echo_back(c, &bytes);
        vsock_close(c, irq_ticks + CLOSE_WAIT);
        char detail[96];
        snprintf(detail, sizeof detail, "connection %u from host port %u: %u bytes echoed, then %s", n, port, bytes,
                 ok ? "shut down" : "reset or stalled");
        result("vsock-accept", ok, detail);
    }
}
