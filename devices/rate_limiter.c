/* Firecracker's token buckets in integer arithmetic. A bucket's refill is kept exact: the
 * time since last_ns is worth size token-nanoseconds per ns, refill_ns of them make a token,
 * and the remainder stays as credit, so that asking for the refill often or seldom gives the
 * same tokens at the same time (what makes a predicted wait exactly enough). Products of two
 * u64 are taken in 128 bits, which they always fit. */
#include "devices/rate_limiter.h"

typedef unsigned __int128 u128;

#define NS_PER_MS 1000000u

static uint64_t clamp64(u128 v) { return v > UINT64_MAX ? UINT64_MAX : (uint64_t)v; }
static uint64_t max64(uint64_t a, uint64_t b) { return a > b ? a : b; }

static struct token_bucket bucket_new(const struct token_bucket_config *c, uint64_t now_ns) {
    if (!token_bucket_limits(c)) return (struct token_bucket){.last_ns = now_ns};
    return (struct token_bucket){.size = c->size, .refill_ns = clamp64((u128)c->refill_time_ms * NS_PER_MS),
                                 .tokens = c->size, .burst = c->one_time_burst, .last_ns = now_ns};
}

/* The tokens the time from last_ns to now_ns added, up to size. Before last_ns (a request
 * larger than the bucket still being paid off, or a clock behind the last call), none. */
static void refill(struct token_bucket *b, uint64_t now_ns) {
    if (!b->size || now_ns < b->last_ns) return;
    u128 gained = (u128)(now_ns - b->last_ns) * b->size + b->credit;
    u128 room = (u128)(b->size - b->tokens) * b->refill_ns;
    b->last_ns = now_ns;
    if (gained >= room) { /* full: what would spill over is lost, as from any full bucket */
        b->tokens = b->size;
        b->credit = 0;
        return;
    }
    b->tokens += (uint64_t)(gained / b->refill_ns); /* below size - tokens: gained < room */
    b->credit = (uint64_t)(gained % b->refill_ns);
}

struct token_bucket token_bucket_at(const struct token_bucket *b, uint64_t now_ns) {
    struct token_bucket at = *b;
    refill(&at, now_ns);
    return at;
}

/* A full bucket paid `excess` tokens more than it holds: it is emptied, and its refill starts
 * once the excess would have refilled (at size tokens per refill_ns), with the part of a token
 * that waiting overpays as credit. */
static void owe(struct token_bucket *b, uint64_t excess, uint64_t now_ns) {
    u128 owed = (u128)excess * b->refill_ns; /* token-nanoseconds */
    u128 wait = (owed + b->size - 1) / b->size;
    uint64_t from = max64(b->last_ns, now_ns);
    b->tokens = b->burst = 0;
    if (wait > UINT64_MAX - from) { /* longer than the clock counts: never, as far as it knows */
        b->last_ns = UINT64_MAX;
        b->credit = 0;
        return;
    }
    b->last_ns = from + (uint64_t)wait;
    b->credit = (uint64_t)(wait * b->size - owed); /* below size */
}

/* Pays cost from the bucket refilled to now_ns, from its burst first; false when it cannot yet
 * (the bucket then is as it was, but refilled: the same bucket, told at a later time). */
static bool take(struct token_bucket *b, uint64_t cost, uint64_t now_ns) {
    if (!b->size || !cost) return true;
    refill(b, now_ns);
    if (cost <= b->burst) {
        b->burst -= cost;
        return true;
    }
    uint64_t rest = cost - b->burst;
    if (rest <= b->tokens) {
        b->burst = 0;
        b->tokens -= rest;
        return true;
    }
    if (rest <= b->size || b->tokens < b->size) return false;
    owe(b, rest - b->size, now_ns); /* larger than the bucket, which is full: it passes */
    return true;
}

/* How long until take(cost) passes: until the bucket holds what the burst does not cover, or
 * is full when that is more than it can hold. */
static uint64_t bucket_wait(const struct token_bucket *b0, uint64_t cost, uint64_t now_ns) {
    if (!b0->size || !cost) return 0;
    struct token_bucket b = token_bucket_at(b0, now_ns);
    if (cost <= b.burst) return 0;
    uint64_t want = cost - b.burst < b.size ? cost - b.burst : b.size;
    if (b.tokens >= want) return 0;
    u128 owed = (u128)(want - b.tokens) * b.refill_ns;
    u128 need = owed > b.credit ? owed - b.credit : 0;
    u128 at = max64(b.last_ns, now_ns) + (need + b.size - 1) / b.size; /* refill reaches want */
    return clamp64(at - now_ns);
}

void rate_limiter_init(struct rate_limiter *l, const struct rate_limiter_config *c, uint64_t now_ns) {
    l->bandwidth = bucket_new(&c->bandwidth, now_ns);
    l->ops = bucket_new(&c->ops, now_ns);
    l->config = *c;
    l->limits = rate_limiter_limits(c);
}

static bool same_bucket(const struct token_bucket_config *a, const struct token_bucket_config *b) {
    return a->size == b->size && a->one_time_burst == b->one_time_burst && a->refill_time_ms == b->refill_time_ms;
}

void rate_limiter_update(struct rate_limiter *l, const struct rate_limiter_config *c, uint64_t now_ns) {
    if (!same_bucket(&c->bandwidth, &l->config.bandwidth)) l->bandwidth = bucket_new(&c->bandwidth, now_ns);
    if (!same_bucket(&c->ops, &l->config.ops)) l->ops = bucket_new(&c->ops, now_ns);
    l->config = *c;
    l->limits = rate_limiter_limits(c);
}

bool rate_limiter_consume(struct rate_limiter *l, uint64_t bytes, uint64_t ops, uint64_t now_ns) {
    struct token_bucket bandwidth = l->bandwidth, count = l->ops;
    if (!take(&bandwidth, bytes, now_ns) || !take(&count, ops, now_ns)) return false;
    l->bandwidth = bandwidth;
    l->ops = count;
    return true;
}

uint64_t rate_limiter_wait_ns(const struct rate_limiter *l, uint64_t bytes, uint64_t ops, uint64_t now_ns) {
    return max64(bucket_wait(&l->bandwidth, bytes, now_ns), bucket_wait(&l->ops, ops, now_ns));
}
