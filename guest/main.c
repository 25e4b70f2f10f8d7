/* The tiny guest: finds its devices in the device tree the VMM hands over as the first PVH
 * module, tests each of them, prints the results and exits through the exit device with 0
 * only if every test passed. */
#include <libfdt.h>

#include "firmware/hvm_start_info.h"
#include "guest/balloon.h"
#include "guest/bench.h"
#include "guest/devices.h"
#include "guest/diskrate.h"
#include "guest/hostile.h"
#include "guest/irq.h"
#include "guest/multiboot.h"
#include "guest/net.h"
#include "guest/virtio.h"
#include "guest/vsock.h"
#include "guest/vsock_test.h"

static int failures;

static void result(const char *name, bool ok, const char *detail) {
    printf("selftest %-16s %s%s%s\n", name, ok ? "PASS" : "FAIL", detail[0] ? ": " : "", detail);
    if (!ok) failures++;
}

/* The word of cmdline that starts with `word`, or NULL. */
static const char *strstr_word(const char *cmdline, const char *word) {
    size_t n = strlen(word);
    for (const char *p = cmdline; *p;) {
        while (*p == ' ') p++;
        if (strncmp(p, word, n) == 0) return p;
        while (*p && *p != ' ') p++;
    }
    return NULL;
}

static const void *find_dtb(const struct hvm_start_info *si) {
    if (si->nr_modules == 0) return NULL;
    const struct hvm_modlist_entry *m = (const void *)(uintptr_t)si->modlist_paddr;
    const void *dtb = (const void *)(uintptr_t)m[0].paddr;
    return fdt_check_header(dtb) == 0 && fdt_totalsize(dtb) <= m[0].size ? dtb : NULL;
}

/* One RAM entry of the memmap: guest-physical [start, end). */
struct ram_span {
    uint64_t start, end;
};

#define MAPPED_END (8ull << 30) /* entry.S's identity map: the RAM the guest can reach */

/* Of the RAM below `limit`, the entry that ends highest (above the 32-bit hole when there is
 * RAM there), cut at `limit` and to whole pages. */
static struct ram_span top_ram(const struct hvm_start_info *si, uint64_t limit) {
    const struct hvm_memmap_table_entry *e = (const void *)(uintptr_t)si->memmap_paddr;
    struct ram_span top = {0, 0};
    for (uint32_t i = 0; i < si->memmap_entries; i++) {
        if (e[i].type != HVM_MEMMAP_TYPE_RAM || e[i].addr >= limit) continue;
        uint64_t end = (e[i].size > limit - e[i].addr ? limit : e[i].addr + e[i].size) & ~4095ull;
        if (end > top.end && end > e[i].addr) top = (struct ram_span){e[i].addr, end};
    }
    return top;
}

static uint64_t ram_size(const struct hvm_start_info *si) {
    const struct hvm_memmap_table_entry *e = (const void *)(uintptr_t)si->memmap_paddr;
    uint64_t total = 0;
    for (uint32_t i = 0; i < si->memmap_entries; i++)
        if (e[i].type == HVM_MEMMAP_TYPE_RAM) total += e[i].size;
    return total;
}

#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG 4
#define BLK_F_SEG_MAX 2
#define BLK_F_RO 5
#define BLK_F_BLK_SIZE 6
#define BLK_F_FLUSH 9
#define BLK_SECTOR 2 /* the sector the blk test writes */

static void test_rng(struct vdev *d) {
    static uint8_t a[32], b[32];
    long na = vdev_request(d, 0, &(struct vbuf){a, sizeof a, true}, 1, false);
    long nb = vdev_request(d, 0, &(struct vbuf){b, sizeof b, true}, 1, true);
    static const uint8_t zero[32];
    bool ok = na == 32 && nb == 32 && memcmp(a, b, 32) != 0 && memcmp(a, zero, 32) != 0;
    char detail[64];
    snprintf(detail, sizeof detail, "%ld + %ld random bytes, %02x%02x%02x%02x...", na, nb, a[0], a[1], a[2], a[3]);
    result("virtio-rng", ok, detail);
}

static void test_console(struct vdev *d) {
    static char msg[] = "virtio-console: hello from the tiny guest\n";
    long n = vdev_request(d, 1, &(struct vbuf){msg, sizeof msg - 1, false}, 1, false);
    result("virtio-console", n == 0, n == 0 ? "sent a line on port 0" : "transmit timed out");
}

struct blk_hdr {
    uint32_t type, reserved;
    uint64_t sector;
};

static int blk_io(struct vdev *d, uint32_t type, uint64_t sector, void *data, uint32_t len, bool indirect) {
    static struct blk_hdr hdr;
    static uint8_t status;
    hdr = (struct blk_hdr){type, 0, sector};
    status = 0xff;
    struct vbuf bufs[3] = {{&hdr, sizeof hdr, false}, {data, len, type != 1}, {&status, 1, true}};
    if (len == 0) bufs[1] = bufs[2];
    if (vdev_request(d, 0, bufs, len ? 3 : 2, indirect) < 0) return -1;
    return status;
}

/* cmdline "durable": after its tests the blk test writes and flushes sectors 8-15 ("durable
 * N"), says so, and waits to be killed (the VMM's durability test). */
static bool durable;

static void durability(struct vdev *d) {
    static uint8_t block[8 * 512];
    for (unsigned i = 0; i < 8; i++) snprintf((char *)block + 512 * i, 512, "durable %u", 8 + i);
    int w = blk_io(d, 1, 8, block, sizeof block, false), f = blk_io(d, 4, 0, NULL, 0, false);
    printf("guest: %s (write %d, flush %d)\n", w == 0 && f == 0 ? "flushed" : "flush failed", w, f);
    for (;;) irq_wait();
}

static struct vdev *blk_dev; /* the disk, for "ticks" to watch */
static struct vdev *rng_dev, *console_dev; /* for "count" */
static struct vdev *vsock_dev, *balloon_dev; /* for "vsock" and "balloon" */
static bool vsock_mode;
/* cmdline "dhcp": the net test waits for answers (ARP, DHCP), which only --net user's network
 * (slirp) is sure to give; without it the test sends one frame and waits for nothing */
static bool net_exchange;

static void test_blk(struct vdev *d) {
    blk_dev = d;
    static char id[21];
    static uint8_t wbuf[512], rbuf[512];
    int st = blk_io(d, 8, 0, id, 20, false);
    result("virtio-blk-id", st == 0 && id[0], id);
    uint64_t capacity = vdev_config32(d, 0) | (uint64_t)vdev_config32(d, 4) << 32;
    char detail[96];
    snprintf(detail, sizeof detail, "%llu sectors", (unsigned long long)capacity);
    result("virtio-blk-size", capacity > BLK_SECTOR, detail);
    for (unsigned i = 0; i < sizeof wbuf; i++) wbuf[i] = "bellhop guest wrote this sector\n"[i % 32];
    int w = blk_io(d, 1, BLK_SECTOR, wbuf, sizeof wbuf, true);
    if (d->features >> BLK_F_RO & 1) {
        result("virtio-blk-ro", w == 1, w == 1 ? "read-only: write refused with IOERR" : "write was not refused");
        return;
    }
    int f = blk_io(d, 4, 0, NULL, 0, false);
    int r = blk_io(d, 0, BLK_SECTOR, rbuf, sizeof rbuf, false);
    bool ok = w == 0 && f == 0 && r == 0 && memcmp(wbuf, rbuf, sizeof rbuf) == 0;
    snprintf(detail, sizeof detail, "write %d, flush %d, read %d, data %s", w, f, r,
             memcmp(wbuf, rbuf, sizeof rbuf) == 0 ? "matches" : "differs");
    result("virtio-blk-rw", ok, detail);
    /* Past the end of the disk: IOERR. */
    int e = blk_io(d, 0, capacity, rbuf, sizeof rbuf, false);
    result("virtio-blk-bounds", e == 1, e == 1 ? "read past the end refused" : "read past the end allowed");
    if (durable) durability(d);
}

/* cmdline "count": a numbered line every 2^27 TSC cycles, forever, each after checking the
 * guest's own memory (a pattern written once) and using each virtio device it has: the
 * snapshot tests stop it, bring it back in another VMM, and watch the count go on. The
 * pattern is 64 KiB (16 pages): on a PVM host each of its reads cost ~9 us (2.4 s a count
 * for 1 MiB, most of the snapshot tests' time there); the top of RAM has "dirty=N". */
#define PATTERN_BYTES (1u << 16)
static uint32_t pattern[PATTERN_BYTES / 4];

static uint32_t pattern_word(uint32_t i) { return i * 2654435761u ^ 0x5a5a1234u; }

#define VMGENID_ADDR 0xf0000u /* bellhop's VM generation ID (firmware/vmgenid.h) */
#define VMGENID_GSI 3u
static volatile unsigned generations_announced;
static void on_generation(void *arg) {
    (void)arg;
    generations_announced++;
}

/* "count dirty=N": before each line, the first word of every page of the top N MiB of RAM
 * (of its highest entry: above 4 GiB when RAM goes there; at most half that entry, well above
 * the guest's image) goes from the last count to this one, each checked first: the pages a
 * diff snapshot must hold (bench/snapshot_bench: a 1 GiB guest writing 1%). */
static uint32_t scribble(uint64_t end, uint64_t bytes, unsigned n) {
    uint32_t bad = 0;
    for (uint64_t at = end - bytes; at < end; at += 4096) {
        volatile uint64_t *word = (volatile uint64_t *)(uintptr_t)at;
        bad += *word != n - 1u;
        *word = n;
    }
    return bad;
}

static __attribute__((noreturn)) void count_forever(struct ram_span top, uint64_t dirty_bytes) {
    uint32_t *mem = pattern;
    uint64_t half = (top.end - top.start) / 2 & ~4095ull;
    if (dirty_bytes > half) dirty_bytes = half;
    irq_route(VMGENID_GSI, on_generation, NULL);
    for (uint32_t i = 0; i < PATTERN_BYTES / 4; i++) mem[i] = pattern_word(i);
    printf("guest: %d failed, counting\n", failures);
    for (unsigned n = 1;; n++) {
        uint64_t t0 = rdtsc();
        while (rdtsc() - t0 < (1ull << 27)) __asm__ volatile("sti; pause; cli" ::: "memory");
        uint32_t bad = 0;
        for (uint32_t i = 0; i < PATTERN_BYTES / 4; i++) bad += mem[i] != pattern_word(i);
        bad += scribble(top.end, dirty_bytes, n);
        static uint8_t random[16];
        long r = rng_dev ? vdev_request(rng_dev, 0, &(struct vbuf){random, sizeof random, true}, 1, false) : -2;
        static char line[64], back[512];
        static uint8_t sector[512];
        int w = -2, rd = -2;
        if (blk_dev && !(blk_dev->features >> BLK_F_RO & 1)) {
            snprintf((char *)sector, sizeof sector, "count %u", n);
            w = blk_io(blk_dev, 1, 3, sector, sizeof sector, false);
            rd = blk_io(blk_dev, 0, 3, back, sizeof back, false);
            if (rd == 0 && strcmp(back, (char *)sector) != 0) rd = -3;
        }
        long c = -2;
        if (console_dev) {
            int len = snprintf(line, sizeof line, "console %u\n", n);
            c = vdev_request(console_dev, 1, &(struct vbuf){line, (uint32_t)len, false}, 1, false);
        }
        printf("count %u: memory %s, rng %s, blk %s, console %s; generation %08x, %u announced\n", n, bad ? "BAD" : "ok",
               r == 16 ? "ok" : r == -2 ? "none" : "FAIL", w == -2 ? "none" : w == 0 && rd == 0 ? "ok" : "FAIL",
               c == 0 ? "ok" : c == -2 ? "none" : "FAIL", *(volatile uint32_t *)(uintptr_t)VMGENID_ADDR,
               generations_announced);
    }
}

/* cmdline "diskbench": the first disk at queue depth 1 and 32 (VQ_SIZE), 4 KiB reads and
 * writes at random places, 128 KiB reads in order; per phase the TSC cycles it took and each
 * request's latency (p50, p99), for the host to turn into IOPS and MB/s (bench/disk_bench.c). */
#define BENCH_DEPTH VQ_SIZE
static uint8_t bench_buf[BENCH_DEPTH][128 << 10] __attribute__((aligned(4096)));
static uint32_t bench_lat[4096];

struct bench_phase {
    const char *name;
    uint32_t type, bytes;
    bool sequential;
    unsigned depth, ops;
};

static void sort_u32(uint32_t *v, unsigned n) { /* Shell's sort, with Ciura's gaps */
    static const unsigned gaps[] = {701, 301, 132, 57, 23, 10, 4, 1};
    for (unsigned g = 0; g < sizeof gaps / sizeof gaps[0]; g++)
        for (unsigned i = gaps[g]; i < n; i++) {
            uint32_t x = v[i];
            unsigned j = i;
            for (; j >= gaps[g] && v[j - gaps[g]] > x; j -= gaps[g]) v[j] = v[j - gaps[g]];
            v[j] = x;
        }
}

static void bench_phase(struct vdev *d, uint64_t sectors, const struct bench_phase *p) {
    static struct blk_hdr hdr[BENCH_DEPTH];
    static uint8_t status[BENCH_DEPTH];
    uint64_t started[BENCH_DEPTH] = {0}, blocks = sectors / (p->bytes / 512), seed = 12345, next = 0;
    unsigned posted = 0, done = 0, bad = 0;
    uint64_t t0 = rdtsc();
    while (done < p->ops) {
        for (unsigned slot = 0; posted < p->ops && posted - done < p->depth; posted++) {
            while (slot < BENCH_DEPTH && started[slot] != 0) slot++; /* a free one (0: not in flight) */
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            uint64_t block = p->sequential ? next++ % blocks : (seed >> 33) % blocks;
            hdr[slot] = (struct blk_hdr){p->type, 0, block * (p->bytes / 512)};
            status[slot] = 0xff;
            struct vbuf bufs[3] = {{&hdr[slot], sizeof hdr[slot], false},
                                   {bench_buf[slot], p->bytes, p->type == 0},
                                   {&status[slot], 1, true}};
            started[slot] = rdtsc();
            if (!vdev_post(d, 0, slot, bufs, 3)) {
                printf("diskbench: cannot post\n");
                return;
            }
        }
        vdev_kick(d, 0);
        /* as a real driver's interrupt handler does: every completion there is, then new requests */
        uint32_t len;
        for (int slot, wait = 1; (slot = vdev_reap(d, 0, &len, wait)) != -2; wait = 0) {
            if (slot < 0 || slot >= BENCH_DEPTH || !started[slot]) {
                printf("diskbench %s qd%u: stalled after %u of %u\n", p->name, p->depth, done, p->ops);
                return;
            }
            if (done < sizeof bench_lat / sizeof bench_lat[0]) bench_lat[done] = (uint32_t)(rdtsc() - started[slot]);
            started[slot] = 0;
            bad += status[slot] != 0;
            done++;
        }
    }
    uint64_t cycles = rdtsc() - t0;
    unsigned n = done < sizeof bench_lat / sizeof bench_lat[0] ? done : sizeof bench_lat / sizeof bench_lat[0];
    sort_u32(bench_lat, n);
    printf("diskbench %s qd%u: %u ops %llu bytes in %llu cycles, p50 %u p99 %u cycles, %u failed\n", p->name, p->depth,
           done, (unsigned long long)done * p->bytes, (unsigned long long)cycles, bench_lat[n / 2], bench_lat[n * 99 / 100],
           bad);
}

static void disk_bench(void) {
    if (!blk_dev) {
        printf("diskbench: no disk\n");
        return;
    }
    uint64_t sectors = vdev_config32(blk_dev, 0) | (uint64_t)vdev_config32(blk_dev, 4) << 32;
    if (sectors < 256 * 32) return;
    static const struct bench_phase phases[] = {
        {"randread-4k", 0, 4096, false, 1, 2000},    {"randread-4k", 0, 4096, false, BENCH_DEPTH, 4000},
        {"randwrite-4k", 1, 4096, false, 1, 2000},   {"randwrite-4k", 1, 4096, false, BENCH_DEPTH, 4000},
        {"seqread-128k", 0, 128 << 10, true, 1, 256}, {"seqread-128k", 0, 128 << 10, true, BENCH_DEPTH, 512},
    };
    for (unsigned i = 0; i < sizeof phases / sizeof phases[0]; i++) bench_phase(blk_dev, sectors, &phases[i]);
}

/* ---- SMP through bellhop's vCPU-control device (STARTUP and INTERRUPT packets) ---- */

#define VCPU_CTL 0x4f0
static volatile unsigned cpus_up;
static volatile unsigned ipis_seen;
extern char ap_start32[];

static void on_ipi(void) { __atomic_fetch_add(&ipis_seen, 1, __ATOMIC_SEQ_CST); }

void ap_main(unsigned id) {
    (void)id;
    irq_init_ap();
    __atomic_fetch_add(&cpus_up, 1, __ATOMIC_SEQ_CST);
    for (;;) irq_wait();
}

static void vcpu_ctl(uint64_t arg0, uint32_t arg1, uint32_t cmd) {
    outl(VCPU_CTL, (uint32_t)arg0);
    outl(VCPU_CTL + 4, (uint32_t)(arg0 >> 32));
    outl(VCPU_CTL + 8, arg1);
    outl(VCPU_CTL + 12, cmd);
}

static bool wait_until(volatile unsigned *v, unsigned want) {
    uint64_t deadline = irq_ticks + 20 * IRQ_TICKS_PER_SEC;
    while (*v < want)
        if (irq_ticks > deadline) return false;
        else irq_wait();
    return true;
}

static void smp_selftest(const void *dtb) {
    unsigned ncpus = 0;
    int cpus = fdt_path_offset(dtb, "/cpus");
    for (int n = cpus >= 0 ? fdt_first_subnode(dtb, cpus) : -1; n >= 0; n = fdt_next_subnode(dtb, n)) ncpus++;
    if (ncpus < 2) return;
    ipi_handler = on_ipi;
    for (unsigned id = 1; id < ncpus; id++) vcpu_ctl(id, (uint32_t)(uintptr_t)ap_start32, 1);
    bool up = wait_until(&cpus_up, ncpus - 1);
    char detail[64];
    snprintf(detail, sizeof detail, "%u of %u CPUs running", cpus_up + 1, ncpus);
    result("smp-startup", up, detail);
    if (!up) return;
    /* An interrupt to every other CPU: the VMM turns the packet into zx_vcpu_interrupt. */
    vcpu_ctl(((1ull << ncpus) - 1) & ~1ull, VEC_IPI, 0);
    bool ipis = wait_until(&ipis_seen, ncpus - 1);
    snprintf(detail, sizeof detail, "%u of %u CPUs took vector 0x%x", ipis_seen, ncpus - 1, VEC_IPI);
    result("smp-interrupt", ipis, detail);
}

/* vdev_init with what the tiny guest wants of each kind of device. */
static int start_device(struct vdev *d, uint64_t base, unsigned pin) {
    switch (d->device_id) {
    case VIRTIO_ID_BLOCK:
        return vdev_init(d, base, pin, 1ull << BLK_F_RO | 1ull << BLK_F_FLUSH | 1ull << BLK_F_BLK_SIZE | 1ull << BLK_F_SEG_MAX, 1);
    case VIRTIO_ID_CONSOLE: return vdev_init(d, base, pin, 0, 2);
    case VIRTIO_ID_BALLOON: return balloon_start(d, base, pin);
    case VIRTIO_ID_VSOCK: return vdev_init(d, base, pin, VSOCK_WANT_FEATURES, VSOCK_NQUEUES);
    case VIRTIO_ID_NET: return vdev_init(d, base, pin, NET_WANT_FEATURES, NET_NQUEUES);
    default: return vdev_init(d, base, pin, 0, 1);
    }
}

static struct vdev *virtio_selftests(const void *dtb, bool bench) {
    struct vdev *rng = NULL;
    static struct vdev devs[8];
    unsigned n = 0;
    for (int node = fdt_node_offset_by_compatible(dtb, -1, "virtio,mmio"); node >= 0 && n < 8;
         node = fdt_node_offset_by_compatible(dtb, node, "virtio,mmio")) {
        int len;
        const fdt64_t *reg = fdt_getprop(dtb, node, "reg", &len);
        const fdt32_t *irq = fdt_getprop(dtb, node, "interrupts", NULL);
        if (!reg || len < 16 || !irq) continue;
        struct vdev *d = &devs[n];
        uint64_t base = fdt64_to_cpu(reg[0]);
        unsigned pin = fdt32_to_cpu(irq[0]);
        d->device_id = mmio_read32(base + 8);
        if (d->device_id == 0) continue; /* an empty transport (QEMU microvm has eight) */
        int r = start_device(d, base, pin);
        char detail[80];
        snprintf(detail, sizeof detail, "device %u at %p irq %u: %s", d->device_id, (void *)base, pin,
                 r == 0 ? "ready" : "setup failed");
        result("virtio-probe", r == 0, detail);
        if (r != 0) continue;
        n++;
        if (d->device_id == VIRTIO_ID_RNG) rng = rng_dev = d;
        if (d->device_id == VIRTIO_ID_BLOCK && !blk_dev) blk_dev = d;
        if (d->device_id == VIRTIO_ID_CONSOLE) console_dev = d;
        if (d->device_id == VIRTIO_ID_BALLOON && !balloon_dev) balloon_dev = d;
        if (bench) continue;
        if (d->device_id == VIRTIO_ID_RNG) test_rng(d);
        else if (d->device_id == VIRTIO_ID_CONSOLE) test_console(d);
        else if (d->device_id == VIRTIO_ID_BLOCK) test_blk(d);
        else if (d->device_id == VIRTIO_ID_BALLOON) balloon_selftest(d, result);
        else if (d->device_id == VIRTIO_ID_NET) net_selftest(d, net_exchange, result);
        else if (d->device_id == VIRTIO_ID_VSOCK && !vsock_dev && vsock_selftest(d, vsock_mode, result)) vsock_dev = d;
        /* (an interrupt raised while the test never had to wait is still pending: taken here) */
        if (irq_count(pin) == 0) irq_wait();
        bool irqs = irq_count(pin) > 0;
        snprintf(detail, sizeof detail, "%llu interrupts on pin %u", (unsigned long long)irq_count(pin), pin);
        result("virtio-irq", irqs, detail);
        result("virtio-status", !(vdev_status(d) & 0x40), vdev_status(d) & 0x40 ? "device needs reset" : "healthy");
    }
    return rng;
}

void kmain(const struct hvm_start_info *si) {
    si = multiboot_start_info(si);
    uart_init(0x3f8);
    irq_init();
    durable = si->cmdline_paddr && strstr_word((const char *)(uintptr_t)si->cmdline_paddr, "durable");
    if (si->magic != HVM_START_MAGIC_VALUE) {
        printf("guest: bad hvm_start_info magic %x\n", si->magic);
        guest_exit(98);
    }
    const char *cmdline = si->cmdline_paddr ? (const char *)(uintptr_t)si->cmdline_paddr : "";
    vsock_mode = strstr_word(cmdline, "vsock") != NULL;
    net_exchange = strstr_word(cmdline, "dhcp") != NULL;
    balloon_find_ram(si);
    printf("bellhop tiny guest: %u MiB RAM (its top at %u MiB), command line \"%s\"\n",
           (unsigned)(ram_size(si) >> 20), (unsigned)(top_ram(si, UINT64_MAX).end >> 20), cmdline);
    const void *dtb = find_dtb(si);
    if (multiboot_booted()) multiboot_selftests(result); /* and a device tree only if a module is one */
    else result("device-tree", dtb != NULL, dtb ? "" : "no valid DTB as the first module");
    if (dtb) {
        int chosen = fdt_path_offset(dtb, "/chosen");
        const char *args = chosen >= 0 ? fdt_getprop(dtb, chosen, "bootargs", NULL) : NULL;
        result("dt-bootargs", args && strcmp(args, cmdline) == 0, args ? args : "missing");
        if (strstr_word(cmdline, "reference")) {
            bench_reference();
            guest_exit(0);
        }
        bool bench = strstr_word(cmdline, "bench") != NULL || strstr_word(cmdline, "hostile") != NULL ||
                     strstr_word(cmdline, "diskbench") != NULL;
        if (strstr_word(cmdline, "diskbench")) {
            virtio_selftests(dtb, true);
            disk_bench();
            guest_exit(0);
        }
        const char *rate = strstr_word(cmdline, "diskrate=");
        if (rate) {
            virtio_selftests(dtb, true);
            disk_rate(blk_dev, rate + 9);
            guest_exit(0);
        }
        struct vdev *rng = virtio_selftests(dtb, bench);
        const char *hostile = strstr_word(cmdline, "hostile");
        if (hostile && rng) {
            const char *storm = strstr_word(cmdline, "storm=");
            hostile_run(rng, storm ? strtoul(storm + 6, NULL, 0) : 1000000, result);
            printf("hostile: survived with %d failed\n", failures);
        } else if (bench) {
            const char *bell = strstr_word(cmdline, "bell=");
            const char *samples = strstr_word(cmdline, "samples=");
            bench_run(rng, bell ? strtoul(bell + 5, NULL, 0) : 0, strstr_word(cmdline, "vcpu-ctl") != NULL,
                      samples ? (unsigned)strtoul(samples + 8, NULL, 0) : 0);
        } else {
            smp_selftest(dtb);
        }
    }
    /* Command-line words for the VMM's tests: "crash" reads memory that is not there,
     * "triple-fault" does that, "unemulatable" makes KVM emulate an instruction it cannot
     * (CMPXCHG16B on memory that is not RAM: the VMM's unassigned MMIO), "exit=N" reports N. */
    if (strstr_word(cmdline, "crash")) {
        printf("guest: crashing on purpose\n");
        (void)mmio_read32(0xdead0000);
    }
    if (strstr_word(cmdline, "triple-fault")) {
        printf("guest: triple-faulting on purpose\n");
        static const struct { uint16_t limit; uint64_t base; } __attribute__((packed)) no_idt = {0, 0};
        /* #UD, which the CPU raises: on PVM a software interrupt (INT3, INT n) goes to KVM's
         * emulator, which stops a guest not built for PVM before any fault is delivered */
        __asm__ volatile("lidt %0; ud2" ::"m"(no_idt));
    }
    if (strstr_word(cmdline, "unemulatable")) {
        printf("guest: asking KVM to emulate cmpxchg16b\n");
        uint64_t lo = 0, hi = 0;
        __asm__ volatile("lock cmpxchg16b (%2)" : "+a"(lo), "+d"(hi) : "r"(0xc0000000ul), "b"(0ul), "c"(0ul) : "memory");
    }
    if (strstr_word(cmdline, "ticks")) { /* a numbered line every 2^28 TSC cycles until the VMM ends
                                          * it: the API's pause test watches them stop and go on */
        printf("guest: %d failed\n", failures);
        for (unsigned n = 1;; n++) {
            uint64_t t0 = rdtsc();
            /* interrupts taken between pauses (the disk's configuration interrupt) */
            while (rdtsc() - t0 < (1ull << 28)) __asm__ volatile("sti; pause; cli" ::: "memory");
            printf("tick %u\n", n);
            if (blk_dev && (blk_dev->isr_seen & 2)) { /* the disk changed: its size, its first sector */
                blk_dev->isr_seen &= ~2u;
                static char sector[512];
                uint64_t capacity = vdev_config32(blk_dev, 0) | (uint64_t)vdev_config32(blk_dev, 4) << 32;
                int st = blk_io(blk_dev, 0, 0, sector, sizeof sector, false);
                sector[40] = 0;
                printf("guest: disk changed: %llu sectors, read %d, sector 0: %s\n", (unsigned long long)capacity, st,
                       sector);
            }
        }
    }
    if (strstr_word(cmdline, "count")) {
        const char *dirty = strstr_word(cmdline, "dirty=");
        count_forever(top_ram(si, MAPPED_END), dirty ? (uint64_t)strtoul(dirty + 6, NULL, 0) << 20 : 0);
    }
    /* "vsock": the guest's echo listener; "balloon": the balloon follows the host's target;
     * each until the VMM ends */
    if (vsock_mode && vsock_dev) {
        printf("guest: %d failed, serving vsock\n", failures);
        vsock_serve(result);
    }
    if (strstr_word(cmdline, "balloon") && balloon_dev) {
        printf("guest: %d failed, serving the balloon\n", failures);
        balloon_serve(balloon_dev);
    }
    if (strstr_word(cmdline, "wait")) { /* until the VMM is told to quit (Ctrl-A x) */
        printf("guest: waiting\n");
        for (;;) irq_wait();
    }
    printf("guest: %d failed\n", failures);
    const char *e = strstr_word(cmdline, "exit=");
    guest_exit(failures ? 1 : e ? (int)strtoul(e + 5, NULL, 0) : 0);
}
