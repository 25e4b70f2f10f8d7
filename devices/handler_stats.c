/* --stats bookkeeping for device handlers. */
#include <time.h>
#include <zircon/syscalls.h>

#include "devices/device.h"

double trace_ms(const struct vm_env *env) {
    return (double)(zx_clock_get_monotonic() - env->trace_start_ns) / 1e6;
}

void handler_stats_add(struct handler_stats *h, uint64_t ns) {
    unsigned b = 0;
    while (b + 1 < 40 && ns >> (b + 1)) b++;
    h->hist[b]++;
    h->count++;
    h->total_ns += ns;
    if (ns > h->max_ns) h->max_ns = ns;
}

uint64_t handler_stats_quantile(const struct handler_stats *h, double q) {
    uint64_t want = (uint64_t)(q * (double)h->count), seen = 0;
    for (unsigned b = 0; b < 40; b++) {
        seen += h->hist[b];
        if (seen > want) return 2ull << b; /* the bucket's upper edge */
    }
    return h->max_ns;
}
