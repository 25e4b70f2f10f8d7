/* virtio-balloon, the driver's side. The pages it gives are counted up from the bottom of the
 * RAM it never uses (`inflated` of them, always the lowest), so it needs no list: inflating
 * gives the next ones, deflating takes back the last. Its statistics are figures it knows
 * exactly: the RAM in its memory map, that RAM less its image and the balloon, and zero for
 * what it never does (swap, page faults, caches).
 *
 * The statistics buffer is the device's until the device hands it back, which is its request
 * for fresh figures: the interrupt refills it and gives it back at once, so the device always
 * holds the one buffer the spec allows. */
#include "guest/balloon.h"
#include "guest/irq.h"

enum { INFLATE_Q, DEFLATE_Q, STATS_Q };
#define F_STATS_VQ 1
#define CONFIG_NUM_PAGES 0
#define CONFIG_ACTUAL 4
#define PAGE 4096u
#define PFNS_PER_REQUEST 256 /* (as Linux's driver sends them) */
enum { S_SWAP_IN, S_SWAP_OUT, S_MAJFLT, S_MINFLT, S_MEMFREE, S_MEMTOT, S_AVAIL, S_CACHES, NSTATS };

struct stat_entry {
    uint16_t tag;
    uint64_t val;
} __attribute__((packed));

extern char __bss_end[]; /* guest.ld: the end of the image */

static struct {
    uint64_t ram, give_lo, give_hi; /* bytes: all RAM; what may be given, [lo, hi) */
    uint32_t inflated;              /* pages, from give_lo up */
    struct vdev *stats_dev;         /* the one whose statistics queue is served */
    bool stats_out;                 /* the statistics buffer is the device's */
    unsigned stats_given;
} bal;
static struct stat_entry stats[NSTATS];

static uint64_t align_up(uint64_t v) { return (v + PAGE - 1) & ~(uint64_t)(PAGE - 1); }

/* A module's bytes are not ours to give: the range keeps the larger side of them. */
static void exclude(uint64_t at, uint64_t size) {
    uint64_t start = at & ~(uint64_t)(PAGE - 1), end = align_up(at + size);
    if (end <= bal.give_lo || start >= bal.give_hi) return;
    uint64_t below = start > bal.give_lo ? start - bal.give_lo : 0, above = bal.give_hi > end ? bal.give_hi - end : 0;
    if (below >= above) bal.give_hi = bal.give_lo + below;
    else bal.give_lo = end;
}

void balloon_find_ram(const struct hvm_start_info *si) {
    const struct hvm_memmap_table_entry *e = (const void *)(uintptr_t)si->memmap_paddr;
    uint64_t image_end = align_up((uintptr_t)__bss_end);
    bal.ram = 0;
    for (uint32_t i = 0; i < si->memmap_entries; i++) {
        if (e[i].type != HVM_MEMMAP_TYPE_RAM) continue;
        bal.ram += e[i].size;
        if (e[i].addr <= image_end && image_end < e[i].addr + e[i].size)
            bal.give_lo = image_end, bal.give_hi = (e[i].addr + e[i].size) & ~(uint64_t)(PAGE - 1);
    }
    const struct hvm_modlist_entry *m = (const void *)(uintptr_t)si->modlist_paddr;
    for (uint32_t i = 0; i < si->nr_modules; i++) exclude(m[i].paddr, m[i].size);
}

static uint32_t max_pages(void) {
    uint64_t n = (bal.give_hi - bal.give_lo) / PAGE;
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

static uint64_t free_bytes(void) { return bal.give_hi - bal.give_lo - (uint64_t)bal.inflated * PAGE; }

static void fill_stats(void) {
    static const uint16_t tags[NSTATS] = {S_SWAP_IN, S_SWAP_OUT, S_MAJFLT, S_MINFLT, S_MEMFREE, S_MEMTOT, S_AVAIL, S_CACHES};
    for (unsigned i = 0; i < NSTATS; i++) stats[i] = (struct stat_entry){tags[i], 0};
    stats[S_MEMFREE].val = stats[S_AVAIL].val = free_bytes();
    stats[S_MEMTOT].val = bal.ram;
}

static void give_stats(struct vdev *d) {
    fill_stats();
    if (!vdev_post(d, STATS_Q, 0, &(struct vbuf){stats, sizeof stats, false}, 1)) return;
    bal.stats_out = true;
    bal.stats_given++;
    vdev_kick(d, STATS_Q);
}

/* The device handed the buffer back: it wants fresh figures. (A device that returns what it
 * does not hold, or floods, gets nothing more than one buffer.) */
static void on_interrupt(struct vdev *d) {
    uint32_t len;
    int slot;
    for (unsigned n = 0; n < 4 && (slot = vdev_poll(d, STATS_Q, &len)) != -2; n++)
        if (slot == 0 && bal.stats_out) {
            bal.stats_out = false;
            give_stats(d);
        }
}

int balloon_start(struct vdev *d, uint64_t base, unsigned irq) {
    /* (one balloon's statistics: a second device, were there one, goes without) */
    int r = vdev_negotiate(d, base, irq, bal.stats_dev && bal.stats_dev != d ? 0 : 1ull << F_STATS_VQ);
    bool with_stats = r == 0 && d->features >> F_STATS_VQ & 1;
    if (r == 0) r = vdev_start(d, with_stats ? 3 : 2);
    if (r != 0 || !with_stats) return r;
    bal.stats_dev = d;
    give_stats(d);
    d->on_interrupt = on_interrupt;
    return 0;
}

static void set_actual(struct vdev *d, uint32_t pages) { mmio_write32(d->base + 0x100 + CONFIG_ACTUAL, pages); }

/* A page handed to the balloon comes back zeroed: the host really took it. */
void balloon_selftest(struct vdev *d, balloon_result_fn *result) {
    static uint32_t pfn;
    uint8_t *page = alloc_pages(PAGE);
    memset(page, 0xa5, PAGE);
    pfn = (uint32_t)((uintptr_t)page >> 12);
    long in = vdev_request(d, INFLATE_Q, &(struct vbuf){&pfn, sizeof pfn, false}, 1, false);
    set_actual(d, bal.inflated + 1);
    bool zeroed = true;
    for (unsigned i = 0; i < PAGE; i++) zeroed &= page[i] == 0;
    long out = vdev_request(d, DEFLATE_Q, &(struct vbuf){&pfn, sizeof pfn, false}, 1, true);
    set_actual(d, bal.inflated);
    page[0] = 1; /* deflated: the guest's again */
    char detail[112];
    snprintf(detail, sizeof detail, "target %u pages; page 0x%x inflated (%s), deflated (%s), %s",
             vdev_config32(d, CONFIG_NUM_PAGES), pfn, in == 0 ? "done" : "timed out", out == 0 ? "done" : "timed out",
             zeroed ? "read back as zeros" : "kept its data");
    result("virtio-balloon", in == 0 && out == 0 && zeroed && page[0] == 1, detail);
    if (!(d->features >> F_STATS_VQ & 1)) return;
    snprintf(detail, sizeof detail, "%u buffer(s) given: total %llu MiB, free %llu MiB, %u MiB to give", bal.stats_given,
             (unsigned long long)(bal.ram >> 20), (unsigned long long)(free_bytes() >> 20), max_pages() >> 8);
    result("balloon-stats", bal.stats_out, detail);
}

/* Inflates or deflates to `want` pages, PFNS_PER_REQUEST at a time, writing actual after
 * each: false when the device did not complete a request. */
static bool balloon_move(struct vdev *d, uint32_t want) {
    static uint32_t pfns[PFNS_PER_REQUEST];
    while (bal.inflated != want) {
        bool in = want > bal.inflated;
        uint32_t gap = in ? want - bal.inflated : bal.inflated - want;
        uint32_t n = gap < PFNS_PER_REQUEST ? gap : PFNS_PER_REQUEST, first = in ? bal.inflated : bal.inflated - n;
        for (uint32_t i = 0; i < n; i++) pfns[i] = (uint32_t)(bal.give_lo / PAGE) + first + i;
        if (vdev_request(d, in ? INFLATE_Q : DEFLATE_Q, &(struct vbuf){pfns, n * 4, false}, 1, false) != 0) return false;
        bal.inflated = in ? bal.inflated + n : first;
        set_actual(d, bal.inflated);
    }
    return true;
}

_Noreturn void balloon_serve(struct vdev *d) {
    uint32_t printed_target = UINT32_MAX, printed_actual = UINT32_MAX;
    printf("balloon: following the target, up to %u pages\n", max_pages());
    for (;;) {
        (void)vdev_failed(d); /* (noted before the configuration interrupt's bit is cleared) */
        d->isr_seen &= ~2u;
        uint32_t target = vdev_config32(d, CONFIG_NUM_PAGES);
        bool moved = balloon_move(d, target < max_pages() ? target : max_pages());
        if (target != printed_target || bal.inflated != printed_actual) {
            printf("balloon: target %u pages, actual %u%s\n", target, bal.inflated,
                   !moved ? " (the device did not complete a request)" : target > max_pages() ? " (all it can give)" : "");
            printed_target = target, printed_actual = bal.inflated;
        }
        /* the next change comes with a configuration interrupt; a look every second all the same */
        uint64_t until = irq_ticks + IRQ_TICKS_PER_SEC;
        while (!(d->isr_seen & 2) && irq_ticks < until) irq_wait();
    }
}
