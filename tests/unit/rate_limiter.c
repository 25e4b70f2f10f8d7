/* The token buckets' arithmetic over simulated time (devices/rate_limiter.c): the rate a
 * limit holds, the one-time burst, requests larger than a bucket, run-time updates, waits
 * that are exactly enough, and configs at the ends of u64. */
#include "devices/rate_limiter.h"
#include "tests/lib/check.h"

#define MS 1000000ull
#define SEC (1000 * MS)

static struct rate_limiter limiter(struct token_bucket_config bandwidth, struct token_bucket_config ops, uint64_t now) {
    struct rate_limiter l;
    rate_limiter_init(&l, &(struct rate_limiter_config){bandwidth, ops}, now);
    return l;
}

/* Requests of `bytes` and one op each, every one sent as soon as the limiter said it would
 * pass, from t0 until `until`: how many passed. Each predicted wait must be enough. */
static uint64_t send_until(struct rate_limiter *l, uint64_t bytes, uint64_t t0, uint64_t until) {
    uint64_t passed = 0;
    for (uint64_t now = t0; now <= until;) {
        if (rate_limiter_consume(l, bytes, 1, now)) {
            passed++;
            continue;
        }
        uint64_t wait = rate_limiter_wait_ns(l, bytes, 1, now);
        CHECK(wait > 0);
        CHECK(rate_limiter_consume(l, bytes, 1, now + wait)); /* exactly enough */
        now += wait;
        passed++;
    }
    return passed;
}

static bool same(const struct rate_limiter *a, const struct rate_limiter *b) {
    return !memcmp(&a->bandwidth, &b->bandwidth, sizeof a->bandwidth) && !memcmp(&a->ops, &b->ops, sizeof a->ops) &&
           a->limits == b->limits;
}

static void check_within_1_percent(double got, double want) {
    CHECK_MSG(got >= want * 0.99 && got <= want * 1.01, "got %.1f, want %.1f (within 1%%)", got, want);
}

TEST(a_zeroed_config_never_limits) {
    struct rate_limiter l = limiter((struct token_bucket_config){0}, (struct token_bucket_config){0}, 5);
    CHECK(!l.limits);
    for (int i = 0; i < 1000; i++) CHECK(rate_limiter_consume(&l, UINT64_MAX, UINT64_MAX, 5));
    CHECK_EQ(rate_limiter_wait_ns(&l, UINT64_MAX, UINT64_MAX, 5), 0);
    /* a size without a refill time, or the reverse, does not limit either (Firecracker's meaning) */
    l = limiter((struct token_bucket_config){.size = 10}, (struct token_bucket_config){.refill_time_ms = 10}, 5);
    CHECK(!l.limits);
    CHECK(rate_limiter_consume(&l, 1000, 1000, 5));
}

TEST(bandwidth_is_held_to_size_per_refill_time) {
    /* 1000 bytes per 100 ms: 10 kB/s, over 100 simulated seconds */
    struct rate_limiter l = limiter((struct token_bucket_config){.size = 1000, .refill_time_ms = 100},
                                    (struct token_bucket_config){0}, 0);
    CHECK(l.limits);
    uint64_t n = send_until(&l, 100, 0, 100 * SEC);
    check_within_1_percent((double)(n * 100), 1000 + 10000.0 * 100);
    /* uneven requests: the same rate */
    l = limiter((struct token_bucket_config){.size = 1000, .refill_time_ms = 100}, (struct token_bucket_config){0}, 0);
    uint64_t bytes = 0, now = 0, x = 12345;
    while (now < 100 * SEC) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t cost = 1 + (x >> 33) % 999;
        now += rate_limiter_wait_ns(&l, cost, 1, now);
        CHECK(rate_limiter_consume(&l, cost, 1, now));
        bytes += cost;
    }
    check_within_1_percent((double)bytes, 1000 + 10000.0 * 100);
}

/* Asked at uneven times, the refill loses no part of a token: the rate is the same. */
TEST(the_refill_is_exact_however_often_it_is_asked) {
    /* 7 ops per ms: a token each 142857.14 ns */
    struct rate_limiter l =
        limiter((struct token_bucket_config){0}, (struct token_bucket_config){.size = 7, .refill_time_ms = 1}, 0);
    uint64_t passed = 0, x = 99;
    for (uint64_t now = 0; now < SEC;) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        now += 1 + (x >> 33) % 100000; /* up to 100 us */
        while (rate_limiter_consume(&l, 0, 1, now)) passed++;
    }
    check_within_1_percent((double)passed, 7 + 7000.0);
}

TEST(ops_are_held_and_the_tighter_bucket_decides) {
    /* 10 ops per second, and bytes enough for 50 of them a second: the ops decide */
    struct rate_limiter l = limiter((struct token_bucket_config){.size = 5000, .refill_time_ms = 1000},
                                    (struct token_bucket_config){.size = 10, .refill_time_ms = 1000}, 0);
    uint64_t n = send_until(&l, 100, 0, 60 * SEC);
    check_within_1_percent((double)n, 10 + 10.0 * 60);
    /* requests of 2000 bytes: 2.5 a second, the bytes decide */
    l = limiter((struct token_bucket_config){.size = 5000, .refill_time_ms = 1000},
                (struct token_bucket_config){.size = 10, .refill_time_ms = 1000}, 0);
    n = send_until(&l, 2000, 0, 600 * SEC);
    check_within_1_percent((double)n * 2000, 5000 + 5000.0 * 600);
}

TEST(a_refused_request_leaves_the_limiter_exactly_as_it_was) {
    struct rate_limiter l = limiter((struct token_bucket_config){.size = 100, .refill_time_ms = 10},
                                    (struct token_bucket_config){.size = 3, .refill_time_ms = 10}, 0);
    CHECK(rate_limiter_consume(&l, 90, 1, 0));
    struct rate_limiter before = l;
    CHECK(!rate_limiter_consume(&l, 50, 1, 1000)); /* bytes short, ops enough */
    CHECK(same(&before, &l));
    CHECK(rate_limiter_consume(&l, 10, 2, 0));
    before = l;
    CHECK(!rate_limiter_consume(&l, 0, 1, 0)); /* ops short, bytes not asked */
    CHECK(same(&before, &l));
}

TEST(the_wait_is_exactly_enough) {
    /* 7 tokens per 3 ms: not a whole number of ns per token */
    struct rate_limiter l = limiter((struct token_bucket_config){.size = 7, .refill_time_ms = 3},
                                    (struct token_bucket_config){0}, 7);
    CHECK(rate_limiter_consume(&l, 7, 0, 7));
    for (uint64_t i = 0, now = 7; i < 100; i++) {
        uint64_t cost = 1 + i * 5 % 7;
        uint64_t wait = rate_limiter_wait_ns(&l, cost, 0, now);
        struct rate_limiter early = l;
        CHECK(wait > 0);
        CHECK_MSG(!rate_limiter_consume(&early, cost, 0, now + wait - 1), "cost %" PRIu64 ": %" PRIu64
                  " ns - 1 was enough", cost, wait);
        CHECK(rate_limiter_consume(&l, cost, 0, now + wait));
        now += wait;
    }
}

TEST(the_one_time_burst_is_spent_first_and_never_refilled) {
    struct token_bucket_config bandwidth = {.size = 100, .one_time_burst = 500, .refill_time_ms = 1000};
    struct rate_limiter l = limiter(bandwidth, (struct token_bucket_config){0}, 0);
    CHECK(rate_limiter_consume(&l, 300, 0, 0)); /* from the burst alone */
    struct token_bucket b = token_bucket_at(&l.bandwidth, 0);
    CHECK_EQ(b.burst, 200);
    CHECK_EQ(b.tokens, 100);
    CHECK(rate_limiter_consume(&l, 250, 0, 0)); /* the burst's 200, then 50 of the bucket */
    b = token_bucket_at(&l.bandwidth, 0);
    CHECK_EQ(b.burst, 0);
    CHECK_EQ(b.tokens, 50);
    CHECK(!rate_limiter_consume(&l, 51, 0, 0));
    CHECK_EQ(rate_limiter_wait_ns(&l, 51, 0, 0), 10 * MS); /* one token per 10 ms */
    /* a day later: the bucket is full, the burst is gone */
    b = token_bucket_at(&l.bandwidth, 86400 * SEC);
    CHECK_EQ(b.tokens, 100);
    CHECK_EQ(b.burst, 0);
    CHECK(rate_limiter_consume(&l, 100, 0, 86400 * SEC));
    CHECK(!rate_limiter_consume(&l, 1, 0, 86400 * SEC));
}

TEST(a_request_larger_than_the_bucket_passes_when_it_is_full_at_the_limits_rate) {
    /* 1000 bytes per 100 ms, requests of 5000 */
    struct rate_limiter l = limiter((struct token_bucket_config){.size = 1000, .refill_time_ms = 100},
                                    (struct token_bucket_config){0}, 0);
    CHECK(rate_limiter_consume(&l, 5000, 1, 0));
    CHECK_EQ(token_bucket_at(&l.bandwidth, 0).tokens, 0);
    /* empty until the 4000 beyond the bucket are refilled (400 ms), then full 100 ms later */
    CHECK_EQ(token_bucket_at(&l.bandwidth, 400 * MS).tokens, 0);
    CHECK_EQ(token_bucket_at(&l.bandwidth, 450 * MS).tokens, 500);
    CHECK_EQ(rate_limiter_wait_ns(&l, 5000, 1, 0), 500 * MS);
    CHECK(!rate_limiter_consume(&l, 5000, 1, 499 * MS));
    CHECK(!rate_limiter_consume(&l, 5000, 1, 450 * MS)); /* half full is not full */
    CHECK(rate_limiter_consume(&l, 5000, 1, 500 * MS));
    /* over simulated time: the limit's rate, 10 kB/s */
    l = limiter((struct token_bucket_config){.size = 1000, .refill_time_ms = 100}, (struct token_bucket_config){0}, 0);
    uint64_t n = send_until(&l, 5000, 0, 1000 * SEC);
    check_within_1_percent((double)n * 5000, 10000.0 * 1000);
    /* a small request waits behind a large one's excess too: 400 ms, then 0.1 ms for its byte */
    l = limiter((struct token_bucket_config){.size = 1000, .refill_time_ms = 100}, (struct token_bucket_config){0}, 0);
    CHECK(rate_limiter_consume(&l, 5000, 1, 0));
    CHECK(!rate_limiter_consume(&l, 1, 1, MS));
    CHECK_EQ(rate_limiter_wait_ns(&l, 1, 1, MS), 400 * MS + 100000 - MS);
}

TEST(an_update_replaces_the_buckets_it_changes_with_full_ones) {
    struct rate_limiter l = limiter((struct token_bucket_config){.size = 1000, .refill_time_ms = 1000},
                                    (struct token_bucket_config){0}, 0);
    CHECK(rate_limiter_consume(&l, 1000, 1, 0));
    CHECK(!rate_limiter_consume(&l, 1000, 1, 0));
    /* raised: the new bucket is full at once */
    struct rate_limiter_config raised = {.bandwidth = {.size = 2000, .one_time_burst = 10, .refill_time_ms = 1000}};
    rate_limiter_update(&l, &raised, 0);
    CHECK(rate_limiter_consume(&l, 2010, 1, 0));
    CHECK(!rate_limiter_consume(&l, 1, 1, 0));
    CHECK_EQ(rate_limiter_wait_ns(&l, 1, 1, 0), 500000); /* 2 bytes per ms */
    /* removed: no limit */
    rate_limiter_update(&l, &(struct rate_limiter_config){0}, 0);
    CHECK(!l.limits);
    CHECK(rate_limiter_consume(&l, UINT64_MAX, 1, 0));
    /* a bucket whose configuration stays keeps its state (its debt too); a changed one does not */
    rate_limiter_update(&l, &(struct rate_limiter_config){.ops = {.size = 1, .refill_time_ms = 1}}, 0);
    CHECK(rate_limiter_consume(&l, 0, 1000, 0));
    CHECK_EQ(rate_limiter_wait_ns(&l, 0, 1, 0), 1000 * MS);
    rate_limiter_update(&l, &(struct rate_limiter_config){.ops = {.size = 1, .refill_time_ms = 1},
                                                          .bandwidth = {.size = 9, .refill_time_ms = 9}}, 0);
    CHECK(!rate_limiter_consume(&l, 0, 1, 0));
    CHECK_EQ(rate_limiter_wait_ns(&l, 0, 1, 0), 1000 * MS);
    CHECK(rate_limiter_consume(&l, 9, 0, 0)); /* the new bandwidth bucket, full */
    rate_limiter_update(&l, &(struct rate_limiter_config){.ops = {.size = 2, .refill_time_ms = 1}}, 0);
    CHECK(rate_limiter_consume(&l, 0, 1, 0));
}

TEST(configs_at_the_ends_of_u64_do_not_overflow) {
    const uint64_t M = UINT64_MAX;
    /* everything at its largest: about a token per ns, and a burst of 2^64 - 1 */
    struct rate_limiter l = limiter((struct token_bucket_config){M, M, M}, (struct token_bucket_config){M, M, M}, 0);
    CHECK(rate_limiter_consume(&l, M, M, 0)); /* the bursts */
    CHECK(rate_limiter_consume(&l, M, M, 0)); /* the full buckets */
    CHECK(!rate_limiter_consume(&l, 1, 0, 0));
    CHECK_EQ(rate_limiter_wait_ns(&l, 2, 0, 0), 2);
    CHECK(rate_limiter_consume(&l, 2, 0, 2));
    CHECK_EQ(token_bucket_at(&l.bandwidth, M).tokens, M - 2); /* refilled from 2 ns on */
    /* one token per 2^64 - 1 ms (clamped to 2^64 - 1 ns), a request of 2^64 - 1: passes (the
     * bucket is full), and the next is due later than the clock can count */
    l = limiter((struct token_bucket_config){.size = 1, .refill_time_ms = M}, (struct token_bucket_config){0}, M - 10);
    CHECK(rate_limiter_consume(&l, M, 1, M - 10));
    CHECK_EQ(rate_limiter_wait_ns(&l, 1, 1, M - 10), M);
    CHECK(!rate_limiter_consume(&l, 1, 1, M));
    CHECK_EQ(rate_limiter_wait_ns(&l, 1, 1, M), M);
    /* the largest bucket refilling in 1 ms, asked at the ends of time */
    l = limiter((struct token_bucket_config){.size = M, .refill_time_ms = 1}, (struct token_bucket_config){0}, 0);
    CHECK(rate_limiter_consume(&l, M, 0, 0));
    CHECK_EQ(rate_limiter_wait_ns(&l, M, 0, 0), MS);
    CHECK_EQ(token_bucket_at(&l.bandwidth, MS / 2).tokens, M / 2);
    CHECK_EQ(token_bucket_at(&l.bandwidth, M).tokens, M);
    CHECK(rate_limiter_consume(&l, M, 0, M));
    /* a clock that goes back adds nothing and breaks nothing */
    CHECK(!rate_limiter_consume(&l, 1, 0, 5));
    CHECK_EQ(rate_limiter_wait_ns(&l, M, 0, 5), M);
}
