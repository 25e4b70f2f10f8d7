/* virtio-rng: every device-writable buffer is filled from getrandom(). It never blocks the
 * loop: until the host's CRNG is ready, bytes come from GRND_INSECURE (what /dev/urandom
 * gives), so a guest booted right after its host still gets its entropy at once. And it
 * never holds it long: a guest may ask for megabytes at a time, which would keep every other
 * device waiting, so one turn serves at most VIRTIO_RNG_BYTES_PER_TURN and the rest waits
 * for the next (virtio_notify_again). With a rate limit, a request the limiter cannot pay yet
 * stays in the ring until it can (devices/virtio.h's virtio_throttle). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

#ifndef GRND_INSECURE
#define GRND_INSECURE 0x0004
#endif

#include "devices/virtio_rng.h"

struct virtio_rng {
    struct virtio_throttle limit;
};

static struct virtio_rng *rng_of(struct virtio_dev *vd) { return vd->priv; }

static void rng_notify(struct virtio_dev *vd, unsigned q) {
    struct virtio_throttle *limit = &rng_of(vd)->limit;
    struct virtq_req req, *r = &req; /* virtio_pop fills what it hands out */
    uint64_t served = 0;
    while ((served < VIRTIO_RNG_BYTES_PER_TURN || !virtio_notify_again(vd, q)) && virtio_pop(vd, q, r)) {
        if (virtio_throttle_limits(limit) && !virtio_throttle_take(limit, q, r->in_len, 1)) {
            virtio_unpop(vd, q, r->generation);
            return;
        }
        uint64_t written = 0;
        for (unsigned i = 0; i < r->nin; i++) {
            ssize_t n = getrandom(r->in[i].p, r->in[i].len, GRND_NONBLOCK);
            if (n < 0 && errno == EAGAIN) n = getrandom(r->in[i].p, r->in[i].len, GRND_INSECURE);
            if (n <= 0) break;
            written += (uint64_t)n;
            if ((uint32_t)n < r->in[i].len) break;
        }
        virtio_push(vd, q, r, (uint32_t)written);
        served += r->in_len;
    }
}

static int rng_create(struct virtio_dev *vd, const void *params, char *err, size_t errlen) {
    const struct virtio_rng_params *p = params;
    struct virtio_rng *rng = calloc(1, sizeof *rng);
    if (!rng) {
        snprintf(err, errlen, "virtio-rng: out of memory");
        return -1;
    }
    virtio_throttle_init(&rng->limit, vd, p ? &p->limiter : &(struct rate_limiter_config){0});
    vd->priv = rng;
    return 0;
}

/* The machine's loop is gone first (its timer ran or was canceled); a test's may not be. */
static void rng_destroy(struct virtio_dev *vd) {
    virtio_throttle_stop(&rng_of(vd)->limit);
    free(vd->priv);
}

const struct virtio_device_ops virtio_rng_ops = {
    .name = "virtio-rng",
    .device_id = VIRTIO_ID_RNG,
    .nqueues = 1,
    .queue_max = VIRTQ_MAX_SIZE,
    .create = rng_create,
    .destroy = rng_destroy,
    .queue_notify = rng_notify,
};
