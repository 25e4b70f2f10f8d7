/* The bench's results: each configuration's rounds of the guest's `bench-result` lines (see
 * guest/bench.h), and the medians over the rounds that measured the VMM rather than a slow
 * host. */
#ifndef BELLHOP_BENCH_BELLHOP_BENCH_BENCH_RESULTS_H
#define BELLHOP_BENCH_BELLHOP_BENCH_BENCH_RESULTS_H

#include <stdbool.h>

#define BENCH_MAX_KINDS 16
#define BENCH_BUCKETS 24
#define BENCH_MAX_ROUNDS 15
/* A nested host has stretches, from a fraction of a second to tens of seconds, in which every
 * world switch costs about 1.5x: seen in cpuid, which no VMM code answers, as much as in the
 * VMMs' exits. Each kind's round carries the median of cpuid exits timed among its samples
 * (its reference): a round whose reference ran more than BENCH_REF_SLACK_PCT above the best
 * reference of that kind in the whole run measured the host, not the VMM. */
#define BENCH_REF_SLACK_PCT 10

struct bench_result {
    char kind[32];
    unsigned long long n, min, max; /* over every round */
    unsigned hist[BENCH_BUCKETS];   /* over every round */
    unsigned long long p50, p99;    /* the medians over the rounds kept (set by bench_settle) */
    unsigned rounds, kept;
    unsigned long long p50s[BENCH_MAX_ROUNDS], p99s[BENCH_MAX_ROUNDS], refs[BENCH_MAX_ROUNDS]; /* ref 0: none */
};

/* One configuration (a VMM and its flags) of the same guest. */
struct bench_run {
    const char *name;
    struct bench_result r[BENCH_MAX_KINDS];
    unsigned nr;
    bool ok; /* its last round reached "bench: done" */
};

/* Adds one round's console output to run (lines that do not parse are skipped). */
void bench_add_round(struct bench_run *run, const char *out);
/* Sets every result's p50 and p99 from the rounds it keeps: those whose reference was within
 * BENCH_REF_SLACK_PCT of the best of that kind across all nruns runs (every round, when none
 * was). True if every kind of every run kept at least `need` rounds. */
bool bench_settle(struct bench_run *runs, unsigned nruns, unsigned need);
/* Whether a reference `ref` is within BENCH_REF_SLACK_PCT of the best (true when either is 0:
 * unknown). */
bool bench_ref_ok(unsigned long long ref, unsigned long long best);
const struct bench_result *bench_find(const struct bench_run *run, const char *kind);
/* Sorts v. */
unsigned long long bench_median(unsigned long long *v, unsigned n);
/* The median of the figures in v[0..n) that are not negative (-1: that round has none), to the
 * microsecond; -1 when none is. n is at most BENCH_MAX_ROUNDS. */
double bench_median_ms(const double *v, unsigned n);

#endif
