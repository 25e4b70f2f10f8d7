#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <zircon/syscalls.h>
#include <zircon/syscalls/hypervisor.h>

#include "devices/boot_marker.h"
#include "base/timeline_record.h"

struct boot_marker {
    zx_handle_t guest;
    uint64_t start_ns;
    bool print;
    struct timeline *env_timeline; /* --trace-file: each marker an instant on its vCPU's track */
    pthread_mutex_t lock;
    unsigned n;
};

__attribute__((hot)) static uint64_t marker_read(void *dev, uint64_t off, uint8_t size) {
    (void)dev, (void)off;
    return size >= 8 ? ~0ull : (1ull << (8 * size)) - 1;
}

__attribute__((hot)) static void marker_write(void *dev, uint64_t off, uint8_t size, uint64_t value) {
    struct boot_marker *b = dev;
    if (off != 0 || size != 4) return;
    uint64_t t = zx_clock_get_monotonic() - b->start_ns;
    if (b->env_timeline) {
        struct timeline_record e = {.ts_ns = zx_clock_get_monotonic(), .arg = value, .kind = TIMELINE_MARK};
        snprintf(e.text, sizeof e.text, "boot marker %#x", (unsigned)value);
        timeline_put(timeline_ring(b->env_timeline, "vcpu"), &e);
    }
    pthread_mutex_lock(&b->lock);
    if (b->n < BOOT_MARKER_MAX) {
        b->n++;
        uint64_t e[BELLHOP_EXIT_KINDS] = {0};
        bellhop_guest_exit_counts(b->guest, e);
        uint64_t total = 0;
        for (int i = 0; i < BELLHOP_EXIT_KINDS; i++) total += e[i];
        if (b->print)
            fprintf(stderr,
                    "bellhop: boot marker %#x at %llu.%03llu ms, %llu exits (io %llu, mmio %llu, bell %llu, "
                    "intr %llu, other %llu)\n",
                    (unsigned)value, (unsigned long long)(t / 1000000), (unsigned long long)(t / 1000 % 1000),
                    (unsigned long long)total, (unsigned long long)e[BELLHOP_EXIT_IO],
                    (unsigned long long)e[BELLHOP_EXIT_MMIO], (unsigned long long)e[BELLHOP_EXIT_BELL],
                    (unsigned long long)e[BELLHOP_EXIT_INTR], (unsigned long long)e[BELLHOP_EXIT_OTHER]);
    }
    pthread_mutex_unlock(&b->lock);
}

void boot_marker_guest_entered(struct boot_marker *b, const char *setup) {
    uint64_t t = zx_clock_get_monotonic() - b->start_ns;
    if (b->print)
        fprintf(stderr, "bellhop: guest entered at %llu.%03llu ms (setup, ms: %s)\n", (unsigned long long)(t / 1000000),
                (unsigned long long)(t / 1000 % 1000), setup);
}

const struct io_ops boot_marker_ops = {.name = "boot-marker", .read = marker_read, .write = marker_write};

void boot_marker_set_timeline(struct boot_marker *b, struct timeline *t) {
    if (b) b->env_timeline = t;
}

struct boot_marker *boot_marker_create(zx_handle_t guest, uint64_t vmm_start_ns, bool print) {
    struct boot_marker *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->guest = guest;
    b->start_ns = vmm_start_ns;
    b->print = print;
    pthread_mutex_init(&b->lock, NULL);
    return b;
}

void boot_marker_destroy(struct boot_marker *b) {
    if (!b) return;
    pthread_mutex_destroy(&b->lock);
    free(b);
}
