/* virtio-balloon. The inflate queue carries arrays of 32-bit page frame numbers; each page
 * is discarded through guest memory's checked accessor, so a frame outside RAM is refused
 * like any bad address (the request still completes: the driver has given the page up either
 * way). The device keeps no per-page state: without MUST_TELL_HOST a driver may touch a
 * ballooned page again at any time and simply finds it zeroed.
 *
 * The statistics queue (virtio 1.2 §5.5.6.3) runs the other way round: the driver's one
 * buffer stays with the device, and handing it back is the device's request for new
 * statistics, which come with the buffer's next return. The buffer is kept as its head and
 * generation only: a reset makes it stale (virtio_push_used then drops it), so the reset,
 * on a vCPU thread, never has to touch what the loop thread keeps here.
 *
 * Threading: target and actual are the configuration space's, under vd->lock; everything
 * else (the statistics, the held buffer, the timer) is the loop thread's, or restore's before
 * the loop runs. */
#include <endian.h>
#include <lib/async/task.h>
#include <lib/async/time.h>
#include <lib/container_of.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zircon/syscalls.h>

#include "devices/virtio_balloon.h"
#include "base/guest_mem.h"

enum { INFLATE_Q, DEFLATE_Q, STATS_Q };
#define PAGE_SIZE_4K (1u << VIRTIO_BALLOON_PFN_SHIFT)
#define STAT_ENTRY_LEN 10 /* struct virtio_balloon_stat: le16 tag, le64 val, packed */
/* A driver reports each tag once (Linux's buffer holds at most 16 entries): entries past
 * this many are not read, so a buffer the size of guest RAM costs no more than a real one. */
#define STAT_ENTRIES_MAX 256

struct virtio_balloon {
    struct virtio_dev *vd;
    uint32_t target_pages; /* vd->lock */
    uint32_t actual;       /* the driver's count, as it wrote it (vd->lock) */
    bool stats_enabled;    /* made with an interval: the statistics queue exists */
    unsigned stats_interval_s;
    bool held; /* the driver's statistics buffer, kept until the next request */
    uint16_t held_head;
    uint32_t held_generation;
    async_task_t timer;
    bool timer_pending;
    uint64_t stat[VIRTIO_BALLOON_STAT_TAGS];
    uint16_t has_stat; /* bit per tag */
};

_Static_assert(VIRTIO_BALLOON_STAT_TAGS <= 16, "has_stat holds a bit per tag");

static struct virtio_balloon *balloon_of(struct virtio_dev *vd) { return vd->priv; }

/* Linux puts at most 256 frame numbers in a request (VIRTIO_BALLOON_ARRAY_PFNS_MAX); past
 * INFLATE_MAX_PFNS a request's frames are not given back (the driver has given them up all the
 * same), so that one request of gigabytes of frame numbers cannot hold the loop, and at most
 * INFLATE_REQUESTS_PER_TURN requests are served before the other devices get their turn. */
#define INFLATE_MAX_PFNS 1024u
#define INFLATE_REQUESTS_PER_TURN 32u

static void inflate(const struct guest_mem *gm, const struct virtq_req *r) {
    uint64_t len = r->out_len - r->out_len % 4;
    struct virtq_cursor c = virtq_cursor(r, false, 0, len < INFLATE_MAX_PFNS * 4 ? len : INFLATE_MAX_PFNS * 4);
    uint8_t pfn_bytes[4];
    unsigned have = 0;
    /* A frame number may straddle two buffers: gathered byte by byte across pieces. */
    for (struct virtq_buf piece; virtq_next(&c, &piece);)
        for (uint32_t i = 0; i < piece.len; i++) {
            pfn_bytes[have++] = piece.p[i];
            if (have < 4) continue;
            have = 0;
            uint32_t pfn;
            memcpy(&pfn, pfn_bytes, 4);
            gm_discard(gm, (uint64_t)pfn << VIRTIO_BALLOON_PFN_SHIFT, PAGE_SIZE_4K);
        }
}

static void take_stat(struct virtio_balloon *b, const uint8_t entry[STAT_ENTRY_LEN]) {
    uint16_t tag;
    uint64_t val;
    memcpy(&tag, entry, 2);
    memcpy(&val, entry + 2, 8);
    tag = le16toh(tag);
    if (tag >= VIRTIO_BALLOON_STAT_TAGS) return; /* a tag this device does not know */
    b->stat[tag] = le64toh(val);
    b->has_stat |= (uint16_t)(1u << tag);
}

/* The buffer's statistics replace the last ones: a tag the driver left out is no longer
 * known. A partial entry at the end, and anything in device-writable buffers, is not read. */
static void read_stats(struct virtio_balloon *b, const struct virtq_req *r) {
    uint64_t len = r->out_len < STAT_ENTRIES_MAX * STAT_ENTRY_LEN ? r->out_len : STAT_ENTRIES_MAX * STAT_ENTRY_LEN;
    struct virtq_cursor c = virtq_cursor(r, false, 0, len - len % STAT_ENTRY_LEN);
    memset(b->stat, 0, sizeof b->stat);
    b->has_stat = 0;
    uint8_t entry[STAT_ENTRY_LEN];
    unsigned have = 0;
    /* An entry may straddle two buffers: gathered byte by byte across pieces. */
    for (struct virtq_buf piece; virtq_next(&c, &piece);)
        for (uint32_t i = 0; i < piece.len; i++) {
            entry[have++] = piece.p[i];
            if (have < STAT_ENTRY_LEN) continue;
            have = 0;
            take_stat(b, entry);
        }
}

/* Hands the held buffer back: the driver refills it with fresh statistics. A buffer from
 * before a reset is dropped by virtio_push_used (its generation is old). */
static void ask_for_stats(struct virtio_balloon *b) {
    if (!b->held) return;
    b->held = false;
    virtio_push_used(b->vd, STATS_Q, b->held_head, b->held_generation, 0);
}

/* The driver makes one buffer available at a time; one that breaks that rule sends the older
 * back, so the device never keeps more than one whatever the driver does. */
static void stats_notify(struct virtio_balloon *b) {
    struct virtq_req req, *r = &req;
    while (virtio_pop(b->vd, STATS_Q, r)) {
        ask_for_stats(b);
        read_stats(b, r);
        b->held = true;
        b->held_head = r->head;
        b->held_generation = r->generation;
    }
}

static void balloon_notify(struct virtio_dev *vd, unsigned q) {
    struct virtio_balloon *b = balloon_of(vd);
    if (q == STATS_Q) {
        if (b->stats_enabled) stats_notify(b);
        return;
    }
    struct virtq_req req, *r = &req;
    for (unsigned served = 0; (served < INFLATE_REQUESTS_PER_TURN || !virtio_notify_again(vd, q)) && virtio_pop(vd, q, r);
         served++) {
        if (q == INFLATE_Q) inflate(&vd->env->mem, r);
        virtio_push(vd, q, r, 0);
    }
}

static void on_timer(async_dispatcher_t *d, async_task_t *task, zx_status_t st);

/* The next request one interval from now; none with interval 0 or without a loop. */
static void timer_arm(struct virtio_balloon *b) {
    async_dispatcher_t *loop = b->vd->env->loop;
    if (!b->stats_interval_s || !loop || b->timer_pending) return;
    zx_time_t now = async_now(loop);
    zx_duration_t wait = ZX_SEC((int64_t)b->stats_interval_s);
    zx_time_t deadline = now < ZX_TIME_INFINITE - wait ? now + wait : ZX_TIME_INFINITE;
    b->timer = (async_task_t){.handler = on_timer, .deadline = deadline};
    b->timer_pending = async_post_task(loop, &b->timer) == ZX_OK;
}

static void timer_disarm(struct virtio_balloon *b) {
    if (b->timer_pending) async_cancel_task(b->vd->env->loop, &b->timer);
    b->timer_pending = false;
}

static void on_timer(async_dispatcher_t *d, async_task_t *task, zx_status_t st) {
    (void)d;
    struct virtio_balloon *b = container_of(task, struct virtio_balloon, timer);
    b->timer_pending = false;
    if (st != ZX_OK) return; /* the loop is shutting down: no more requests */
    /* Linux primes the queue and notifies before DRIVER_OK, when the device may not take the
     * buffer yet (virtio 1.2 §2.1.2): it is taken here instead */
    if (!b->held) stats_notify(b);
    ask_for_stats(b);
    timer_arm(b);
}

static int balloon_create(struct virtio_dev *vd, const void *params, char *err, size_t errlen) {
    const struct virtio_balloon_params *p = params;
    struct virtio_balloon *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "virtio-balloon: out of memory");
        return -1;
    }
    b->vd = vd;
    if (p) b->target_pages = p->target_pages;
    b->stats_enabled = p && p->stats_interval_s > 0;
    b->stats_interval_s = b->stats_enabled ? p->stats_interval_s : 0;
    vd->priv = b;
    vd->features = p && p->deflate_on_oom ? 1ull << VIRTIO_BALLOON_F_DEFLATE_ON_OOM : 0;
    if (b->stats_enabled) {
        vd->features |= 1ull << VIRTIO_BALLOON_F_STATS_VQ;
        vd->nqueues = 3;
    }
    vd->config_size = offsetof(struct virtio_balloon_config, free_page_hint_cmd_id);
    timer_arm(b);
    return 0;
}

/* In a machine the loop is gone first, and its shutdown ran the timer as canceled; a test's
 * loop may outlive the device, and the timer must not. */
static void balloon_destroy(struct virtio_dev *vd) {
    timer_disarm(balloon_of(vd));
    free(vd->priv);
}

static void balloon_config_read(struct virtio_dev *vd, uint8_t *buf) {
    const struct virtio_balloon *b = balloon_of(vd);
    uint32_t words[2] = {htole32(b->target_pages), htole32(b->actual)};
    memcpy(buf, words, sizeof words);
}

static void balloon_config_write(struct virtio_dev *vd, uint32_t off, uint8_t size, uint64_t value) {
    struct virtio_balloon *b = balloon_of(vd);
    if (off == offsetof(struct virtio_balloon_config, actual) && size == 4) b->actual = le32toh((uint32_t)value);
}

void virtio_balloon_info(struct virtio_dev *vd, struct virtio_balloon_info *out) {
    memset(out, 0, sizeof *out);
    if (vd->ops != &virtio_balloon_ops) return;
    const struct virtio_balloon *b = balloon_of(vd);
    pthread_mutex_lock(&vd->lock);
    out->target_pages = b->target_pages;
    out->actual_pages = b->actual;
    pthread_mutex_unlock(&vd->lock);
    out->stats_enabled = b->stats_enabled;
    out->stats_interval_s = b->stats_interval_s;
    for (unsigned t = 0; t < VIRTIO_BALLOON_STAT_TAGS; t++) {
        out->has_stat[t] = b->has_stat >> t & 1;
        out->stat[t] = b->stat[t];
    }
}

void virtio_balloon_set_target(struct virtio_dev *vd, uint32_t pages) {
    if (vd->ops != &virtio_balloon_ops) return;
    pthread_mutex_lock(&vd->lock);
    balloon_of(vd)->target_pages = pages;
    pthread_mutex_unlock(&vd->lock);
    virtio_config_changed(vd);
}

int virtio_balloon_set_stats_interval(struct virtio_dev *vd, unsigned seconds) {
    if (vd->ops != &virtio_balloon_ops || !balloon_of(vd)->stats_enabled) return -1;
    struct virtio_balloon *b = balloon_of(vd);
    timer_disarm(b);
    b->stats_interval_s = seconds;
    if (!seconds) return 0;
    ask_for_stats(b);
    timer_arm(b);
    return 0;
}

/* A snapshot's state: the configuration space, the interval and the last statistics. A held
 * statistics buffer is not in it, only that there was one: the restored device takes it from
 * the ring again (its avail entry is still there, as virtio-net's receive buffer's is), so the
 * driver's one buffer is not lost and the requests go on. */
struct balloon_wire {
    uint32_t target_pages, actual;
    uint32_t stats_interval_s;
    uint16_t has_stat;
    uint8_t held, pad;
    uint64_t stat[VIRTIO_BALLOON_STAT_TAGS];
};

static size_t balloon_save(struct virtio_dev *vd, uint8_t *buf, size_t len) {
    const struct virtio_balloon *b = balloon_of(vd);
    struct balloon_wire w = {.stats_interval_s = b->stats_interval_s, .has_stat = b->has_stat};
    memcpy(w.stat, b->stat, sizeof w.stat);
    pthread_mutex_lock(&vd->lock);
    w.target_pages = b->target_pages, w.actual = b->actual;
    /* a buffer from before a reset is no longer the driver's */
    w.held = b->held && b->held_generation == vd->generation && vd->queues[STATS_Q].ready;
    pthread_mutex_unlock(&vd->lock);
    return DEVICE_SAVE(buf, len, w);
}

static bool wire_valid(const struct virtio_balloon *b, const struct balloon_wire *w, bool stats_ready) {
    if (w->held > 1 || w->pad || (w->held && !stats_ready)) return false;
    if (!b->stats_enabled && (w->stats_interval_s || w->has_stat || w->held)) return false;
    for (unsigned t = 0; t < VIRTIO_BALLOON_STAT_TAGS; t++)
        if (!(w->has_stat >> t & 1) && w->stat[t]) return false; /* read_stats leaves unknown tags at 0 */
    return true;
}

/* Before the guest runs (the core restored the queues first); the timer made by create
 * gives way to the saved interval's. An empty state is an older bellhop's, whose balloon
 * kept none: the parameters' target stands, and the driver writes actual again. */
static int balloon_restore(struct virtio_dev *vd, const uint8_t *buf, size_t len) {
    struct virtio_balloon *b = balloon_of(vd);
    struct balloon_wire w;
    if (len == 0 && !b->stats_enabled) return 0;
    if (len != sizeof w) return -1;
    memcpy(&w, buf, sizeof w);
    pthread_mutex_lock(&vd->lock);
    bool stats_ready = b->stats_enabled && vd->queues[STATS_Q].ready;
    if (!wire_valid(b, &w, stats_ready)) {
        pthread_mutex_unlock(&vd->lock);
        return -1;
    }
    b->target_pages = w.target_pages, b->actual = w.actual;
    if (w.held) vd->queues[STATS_Q].last_avail--;
    pthread_mutex_unlock(&vd->lock);
    b->held = false;
    b->has_stat = w.has_stat;
    memcpy(b->stat, w.stat, sizeof b->stat);
    timer_disarm(b);
    b->stats_interval_s = w.stats_interval_s;
    timer_arm(b);
    return 0;
}

const struct virtio_device_ops virtio_balloon_ops = {
    .name = "virtio-balloon",
    .device_id = VIRTIO_ID_BALLOON,
    .nqueues = 2,
    .queue_max = VIRTQ_MAX_SIZE,
    .create = balloon_create,
    .destroy = balloon_destroy,
    .config_read = balloon_config_read,
    .config_write = balloon_config_write,
    .queue_notify = balloon_notify,
    .save = balloon_save,
    .restore = balloon_restore,
};
