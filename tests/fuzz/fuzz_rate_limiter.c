/* The token buckets (devices/rate_limiter.c) under random configs, requests, updates and
 * steps of time, u64's ends included. After every step: no bucket holds more than its size,
 * nor more than size + one_time_burst with its burst, nor a burst it was not given (an
 * underflow would show as one); a refused request changed nothing; and the wait predicted for
 * a request is exactly enough: it passes then, and not a nanosecond sooner. */
#include "devices/rate_limiter.h"
#include "tests/fuzz/fuzz.h"

typedef unsigned __int128 u128;

/* A value from the input, mostly small, sometimes anywhere in u64, sometimes at its top. */
static uint64_t value(struct cursor *c) {
    uint8_t kind = (uint8_t)take(c, 1);
    switch (kind % 4) {
    case 0: return kind >> 2;
    case 1: return take(c, 2);
    case 2: return take(c, 8);
    default: return UINT64_MAX - (kind >> 2);
    }
}

static struct rate_limiter_config config(struct cursor *c) {
    struct rate_limiter_config cfg;
    struct token_bucket_config *b[2] = {&cfg.bandwidth, &cfg.ops};
    for (int i = 0; i < 2; i++) *b[i] = (struct token_bucket_config){.size = value(c), .one_time_burst = value(c),
                                                                      .refill_time_ms = value(c)};
    return cfg;
}

static bool same(const struct rate_limiter *a, const struct rate_limiter *b) {
    return !memcmp(&a->bandwidth, &b->bandwidth, sizeof a->bandwidth) && !memcmp(&a->ops, &b->ops, sizeof a->ops) &&
           a->limits == b->limits;
}

static void check_bucket(const struct token_bucket *b, const struct token_bucket_config *c, uint64_t now) {
    if (!token_bucket_limits(c)) {
        if (b->size) abort(); /* an unlimited bucket limits nothing */
        return;
    }
    struct token_bucket at = token_bucket_at(b, now);
    if (b->tokens > b->size || at.tokens > at.size || b->burst > c->one_time_burst || at.burst != b->burst)
        abort();
    if ((u128)at.tokens + at.burst > (u128)c->size + c->one_time_burst) abort();
}

/* The wait predicted for (bytes, ops) at now: 0 exactly when it passes now, and exactly
 * enough otherwise. */
static void check_wait(const struct rate_limiter *l, uint64_t bytes, uint64_t ops, uint64_t now) {
    uint64_t wait = rate_limiter_wait_ns(l, bytes, ops, now);
    struct rate_limiter at = *l;
    bool passes_now = rate_limiter_consume(&at, bytes, ops, now);
    if (passes_now != (wait == 0)) abort();
    if (wait == 0 || wait == UINT64_MAX || wait > UINT64_MAX - now) return;
    at = *l;
    if (rate_limiter_consume(&at, bytes, ops, now + wait - 1)) abort();
    if (!rate_limiter_consume(&at, bytes, ops, now + wait)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct cursor c = {data, size};
    struct rate_limiter_config cfg = config(&c);
    uint64_t now = value(&c);
    struct rate_limiter l;
    rate_limiter_init(&l, &cfg, now);
    for (unsigned steps = 0; c.n > 0 && steps < 512; steps++) {
        uint8_t op = (uint8_t)take(&c, 1);
        switch (op % 8) {
        case 0: case 1: case 2: { /* a request */
            uint64_t bytes = value(&c), ops = op & 8 ? value(&c) : 1;
            check_wait(&l, bytes, ops, now);
            struct rate_limiter before = l;
            if (!rate_limiter_consume(&l, bytes, ops, now) && !same(&before, &l)) abort();
            break;
        }
        case 3: /* a run-time update */
            cfg = config(&c);
            rate_limiter_update(&l, &cfg, now);
            break;
        case 7: /* the clock, behind: nothing refills, nothing breaks */
            now -= now < (uint64_t)(op >> 3) ? now : (uint64_t)(op >> 3);
            break;
        default: { /* time passes, up to u64's end */
            uint64_t dt = value(&c);
            now = dt > UINT64_MAX - now ? UINT64_MAX : now + dt;
        }
        }
        if (l.limits != rate_limiter_limits(&cfg)) abort();
        check_bucket(&l.bandwidth, &cfg.bandwidth, now);
        check_bucket(&l.ops, &cfg.ops, now);
    }
    return 0;
}
