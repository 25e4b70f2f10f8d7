#ifndef BELLHOP_DEVICES_RATE_LIMITER_H
#define BELLHOP_DEVICES_RATE_LIMITER_H

#include <stdbool.h>
#include <stdint.h>

/* Firecracker's rate limiter (its docs/api_requests/patch-block.md and the swagger's
 * RateLimiter): two token buckets, bytes ("bandwidth") and requests ("ops"). A bucket holds
 * up to `size` tokens and refills to full in `refill_time_ms`, at an even rate; it starts
 * full, plus `one_time_burst` tokens that are spent first and never refill. size 0 (or
 * refill_time_ms 0): that bucket does not limit. A request costs its bytes in one bucket and
 * one op in the other; one larger than a bucket passes when the bucket is full and empties it. */
struct token_bucket_config {
    uint64_t size, one_time_burst, refill_time_ms;
};
struct rate_limiter_config {
    struct token_bucket_config bandwidth, ops;
};

static inline bool token_bucket_limits(const struct token_bucket_config *c) { return c->size && c->refill_time_ms; }
static inline bool rate_limiter_limits(const struct rate_limiter_config *c) {
    return token_bucket_limits(&c->bandwidth) || token_bucket_limits(&c->ops);
}

/* ---- the buckets at run time ----
 * Time is the caller's (zx_clock_get_monotonic() where it runs, simulated in tests), in ns.
 * Integer arithmetic only; any u64 in a config is taken (a refill time past u64 nanoseconds
 * is clamped there), and nothing overflows: a wait too long to count is UINT64_MAX. Not
 * thread-safe: each limiter belongs to one thread (a device's, the loop's). */

struct token_bucket {
    uint64_t size;      /* its capacity; 0: it does not limit */
    uint64_t refill_ns; /* the time it takes to refill from empty to size */
    uint64_t tokens;    /* in it now (at most size) */
    uint64_t burst;     /* what is left of one_time_burst: spent first, never refilled */
    uint64_t last_ns;   /* refilled up to this time; later than now while a request larger than
                         * the bucket is paid off (the bucket stays empty until then) */
    uint64_t credit;    /* the refill's remainder, in token-nanoseconds (each ns adds size of
                         * them, refill_ns of them make a token): kept so that the refill is
                         * exact however often it is asked for */
};

struct rate_limiter {
    struct token_bucket bandwidth, ops;
    struct rate_limiter_config config; /* what made them */
    bool limits; /* either bucket limits: false costs a device one branch per request */
};

/* Both buckets from c, full (plus their one-time bursts), as of now_ns. */
void rate_limiter_init(struct rate_limiter *l, const struct rate_limiter_config *c, uint64_t now_ns);
/* A run-time change (Firecracker's PATCH): a bucket whose configuration changes is replaced by
 * a new one, full, as Firecracker makes it; one whose configuration stays (a PATCH that names
 * only the other, or none) keeps what it holds, as Firecracker's does. */
void rate_limiter_update(struct rate_limiter *l, const struct rate_limiter_config *c, uint64_t now_ns);
/* A request that costs `bytes` and `ops`: true when both buckets can pay it now (it is paid);
 * false, with the limiter left exactly as it was, when either cannot yet. A cost larger than
 * a bucket (beyond what is left of its burst) passes when that bucket is full; the bucket then
 * stays empty for as long as the excess takes to refill, so that a limit below one request's
 * size still moves, at its rate. A cost of 0 always passes that bucket. */
bool rate_limiter_consume(struct rate_limiter *l, uint64_t bytes, uint64_t ops, uint64_t now_ns);
/* In how many ns from now_ns rate_limiter_consume of that cost would pass (0: now); at that
 * time and any later one, as long as nothing else is consumed. UINT64_MAX: not in u64 ns. */
uint64_t rate_limiter_wait_ns(const struct rate_limiter *l, uint64_t bytes, uint64_t ops, uint64_t now_ns);
/* What a bucket holds at now_ns (its tokens after the refill since, and its burst left). */
struct token_bucket token_bucket_at(const struct token_bucket *b, uint64_t now_ns);

#endif
