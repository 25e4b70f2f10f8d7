/* The bench's rounds: the guest's result lines added up, and rounds measured while the host
 * itself was slow (their cpuid reference well above its best) left out of the medians. */
#include <stdio.h>
#include <string.h>

#include "tests/lib/check.h"
#include "bench/bellhop_bench/bench_results.h"

/* One round's console output: one io_out line with the given p50 and reference, one cpuid. */
static const char *round_out(unsigned long long p50, unsigned long long ref) {
    static char out[512];
    snprintf(out, sizeof out,
             "bench: 1000 samples per kind after 100 warm-up rounds\n"
             "bench-result io_out n=1000 min=%llu p50=%llu p99=%llu max=%llu hist=0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1000,"
             "0,0,0,0,0,0,0 ref=%llu\n"
             "bench-result cpuid n=1000 min=50000 p50=%llu p99=70000 max=90000 hist=0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1000,"
             "0,0,0,0,0,0,0,0 ref=%llu\n"
             "bench: done\n",
             p50 - 1000, p50, p50 + 9000, p50 + 20000, ref, ref, ref);
    return out;
}

TEST(rounds_add_up_and_their_medians_count) {
    static struct bench_run run = {.name = "bellhop"};
    bench_add_round(&run, round_out(77000, 60000));
    bench_add_round(&run, round_out(79000, 61000));
    bench_add_round(&run, round_out(78000, 60500));
    CHECK(run.ok);
    CHECK_EQ(run.nr, 2u);
    CHECK(bench_settle(&run, 1, 3));
    const struct bench_result *io = bench_find(&run, "io_out");
    CHECK(io != NULL && bench_find(&run, "cpuid") != NULL && bench_find(&run, "mmio_read") == NULL);
    CHECK_EQ(io->n, 3000ull);
    CHECK_EQ(io->rounds, 3u);
    CHECK_EQ(io->kept, 3u);
    CHECK_EQ(io->p50, 78000ull);
    CHECK_EQ(io->p99, 87000ull);
    CHECK_EQ(io->min, 76000ull);
    CHECK_EQ(io->max, 99000ull);
    CHECK_EQ(io->hist[16], 3000u);
}

TEST(a_round_on_a_slow_host_is_set_aside_against_the_best_of_every_run) {
    /* bellhop's second and third rounds ran while every exit cost 1.5x, cpuid too; the floor's
     * rounds set the best reference (59000) for both */
    static struct bench_run runs[2] = {{.name = "bellhop"}, {.name = "floor"}};
    bench_add_round(&runs[0], round_out(77000, 64000));  /* within 10% of 59000: kept */
    bench_add_round(&runs[0], round_out(115000, 88000)); /* set aside */
    bench_add_round(&runs[0], round_out(117000, 87000)); /* set aside */
    for (int i = 0; i < 3; i++) bench_add_round(&runs[1], round_out(75000, 59000 + 500 * i));
    CHECK(!bench_settle(runs, 2, 2)); /* bellhop keeps one of three */
    const struct bench_result *io = bench_find(&runs[0], "io_out");
    CHECK_EQ(io->kept, 1u);
    CHECK_EQ(io->p50, 77000ull); /* the median of all three would be 115000 */
    CHECK_EQ(io->n, 3000ull);    /* what was measured still adds up */
    CHECK_EQ(bench_find(&runs[1], "io_out")->kept, 3u);
    /* one more good round, and bellhop has the two it needs */
    bench_add_round(&runs[0], round_out(79000, 60000));
    CHECK(bench_settle(runs, 2, 2));
    CHECK_EQ(io->kept, 2u);
    CHECK_EQ(io->p50, 79000ull);
}

TEST(rounds_without_a_reference_and_runs_all_slow_still_give_medians) {
    /* a guest older than the reference prints none: every round counts */
    static struct bench_run old = {.name = "old"};
    bench_add_round(&old, "bench-result io_out n=1000 min=1 p50=70000 p99=3 max=4 hist=1,2,3\n");
    bench_add_round(&old, "bench-result io_out n=1000 min=1 p50=72000 p99=3 max=4 hist=1,2,3\nbench: done\n");
    CHECK(bench_settle(&old, 1, 2));
    CHECK_EQ(bench_find(&old, "io_out")->p50, 72000ull);
    CHECK_EQ(bench_find(&old, "io_out")->hist[2], 6u);
    /* a run each of whose rounds is set aside keeps none, and its medians are of them all */
    static struct bench_run runs[2] = {{.name = "slow"}, {.name = "fast"}};
    bench_add_round(&runs[0], round_out(110000, 90000));
    bench_add_round(&runs[0], round_out(120000, 91000));
    bench_add_round(&runs[1], round_out(75000, 60000));
    CHECK(!bench_settle(runs, 2, 1));
    CHECK_EQ(bench_find(&runs[0], "io_out")->kept, 0u);
    CHECK_EQ(bench_find(&runs[0], "io_out")->p50, 120000ull);
}

TEST(lines_that_do_not_parse_are_skipped_and_kinds_and_rounds_are_bounded) {
    static struct bench_run run = {.name = "hostile"};
    bench_add_round(&run, "bench-result io_out n=x\nbench-result\nbench-result io_in n=1 min=2 p50=3\n");
    CHECK_EQ(run.nr, 0u);
    CHECK(!run.ok);
    char out[256];
    for (int k = 0; k < BENCH_MAX_KINDS + 4; k++) {
        snprintf(out, sizeof out, "bench-result kind%d n=1 min=1 p50=1 p99=1 max=1 hist=1 ref=1\n", k);
        bench_add_round(&run, out);
    }
    CHECK_EQ(run.nr, (unsigned)BENCH_MAX_KINDS);
    bench_add_round(&run, round_out(77000, 60000));
    CHECK(bench_find(&run, "io_out") == NULL); /* no room for a seventeenth kind */
    static struct bench_run many = {.name = "many"};
    for (unsigned r = 0; r < BENCH_MAX_ROUNDS + 4; r++) bench_add_round(&many, round_out(77000 + r, 60000));
    CHECK_EQ(bench_find(&many, "io_out")->rounds, (unsigned)BENCH_MAX_ROUNDS);
    CHECK_EQ(bench_find(&many, "io_out")->n, 1000ull * BENCH_MAX_ROUNDS);
    /* a histogram longer than the buckets, and one with garbage, do not overrun */
    static struct bench_run h = {.name = "hist"};
    bench_add_round(&h, "bench-result a n=1 min=1 p50=1 p99=1 max=1 hist=1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
                        "1,1,1,1,1,1,9 ref=1\n"
                        "bench-result b n=1 min=1 p50=1 p99=1 max=1 hist=5,zz,7 ref=1\n");
    CHECK_EQ(h.nr, 2u);
    CHECK_EQ(bench_find(&h, "a")->hist[BENCH_BUCKETS - 1], 1u);
    CHECK_EQ(bench_find(&h, "b")->hist[0], 5u);
}

TEST(a_reference_is_kept_up_to_the_slack_and_unknown_ones_always) {
    CHECK(bench_ref_ok(60000, 60000));
    CHECK(bench_ref_ok(60000 + 60000 * BENCH_REF_SLACK_PCT / 100, 60000));
    CHECK(!bench_ref_ok(60001 + 60000 * BENCH_REF_SLACK_PCT / 100, 60000));
    CHECK(bench_ref_ok(0, 60000));
    CHECK(bench_ref_ok(90000, 0));
}
