#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "bench/bellhop_bench/bench_results.h"

unsigned long long bench_median(unsigned long long *v, unsigned n) {
    for (unsigned i = 1; i < n; i++)
        for (unsigned j = i; j > 0 && v[j - 1] > v[j]; j--) {
            unsigned long long t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n ? v[n / 2] : 0;
}

double bench_median_ms(const double *v, unsigned n) {
    unsigned long long us[BENCH_MAX_ROUNDS];
    unsigned k = 0;
    for (unsigned i = 0; i < n && i < BENCH_MAX_ROUNDS; i++)
        if (v[i] >= 0) us[k++] = (unsigned long long)(v[i] * 1000);
    return k ? (double)bench_median(us, k) / 1000 : -1;
}

const struct bench_result *bench_find(const struct bench_run *run, const char *kind) {
    for (unsigned i = 0; i < run->nr; i++)
        if (strcmp(run->r[i].kind, kind) == 0) return &run->r[i];
    return NULL;
}

/* Counts and histograms add up, min and max are kept, each round's p50, p99 and reference are
 * kept for bench_settle. */
void bench_add_round(struct bench_run *run, const char *out) {
    for (const char *p = strstr(out, "bench-result "); p; p = strstr(p + 1, "bench-result ")) {
        struct bench_result got = {0};
        char hist[256] = "";
        unsigned long long ref = 0;
        if (sscanf(p, "bench-result %31s n=%llu min=%llu p50=%llu p99=%llu max=%llu hist=%255s ref=%llu", got.kind,
                   &got.n, &got.min, &got.p50, &got.p99, &got.max, hist, &ref) < 7)
            continue;
        struct bench_result *r = NULL;
        for (unsigned i = 0; i < run->nr && !r; i++)
            if (strcmp(run->r[i].kind, got.kind) == 0) r = &run->r[i];
        if (!r) {
            if (run->nr == BENCH_MAX_KINDS) continue;
            r = &run->r[run->nr++];
            *r = (struct bench_result){.min = ~0ull};
            memcpy(r->kind, got.kind, sizeof r->kind);
        }
        if (r->rounds == BENCH_MAX_ROUNDS) continue;
        char *h = hist;
        for (unsigned b = 0; b < BENCH_BUCKETS && *h; b++) {
            r->hist[b] += (unsigned)strtoul(h, &h, 10);
            if (*h == ',') h++;
        }
        r->n += got.n;
        r->min = got.min < r->min ? got.min : r->min;
        r->max = got.max > r->max ? got.max : r->max;
        r->p50s[r->rounds] = got.p50;
        r->p99s[r->rounds] = got.p99;
        r->refs[r->rounds] = ref;
        r->rounds++;
    }
    run->ok = strstr(out, "bench: done") != NULL;
}

bool bench_ref_ok(unsigned long long ref, unsigned long long best) {
    return !ref || !best || ref * 100 <= best * (100 + BENCH_REF_SLACK_PCT);
}

bool bench_settle(struct bench_run *runs, unsigned nruns, unsigned need) {
    bool enough = true;
    for (unsigned k = 0; k < nruns; k++)
        for (unsigned i = 0; i < runs[k].nr; i++) {
            struct bench_result *r = &runs[k].r[i];
            unsigned long long best = 0;
            for (unsigned m = 0; m < nruns; m++) {
                const struct bench_result *o = bench_find(&runs[m], r->kind);
                for (unsigned j = 0; o && j < o->rounds; j++)
                    if (o->refs[j] && (!best || o->refs[j] < best)) best = o->refs[j];
            }
            unsigned long long p50s[BENCH_MAX_ROUNDS], p99s[BENCH_MAX_ROUNDS];
            r->kept = 0;
            for (unsigned j = 0; j < r->rounds; j++)
                if (bench_ref_ok(r->refs[j], best)) {
                    p50s[r->kept] = r->p50s[j];
                    p99s[r->kept++] = r->p99s[j];
                }
            enough = enough && r->kept >= need;
            if (r->kept) {
                r->p50 = bench_median(p50s, r->kept);
                r->p99 = bench_median(p99s, r->kept);
            } else {
                memcpy(p50s, r->p50s, sizeof p50s);
                memcpy(p99s, r->p99s, sizeof p99s);
                r->p50 = bench_median(p50s, r->rounds);
                r->p99 = bench_median(p99s, r->rounds);
            }
        }
    return enough;
}

