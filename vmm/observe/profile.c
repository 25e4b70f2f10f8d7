#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "devices/device.h"
#include "vmm/machine/file_map.h"
#include "vmm/observe/profile.h"
#include "vmm/observe/symbols.h"

/* Samples a vCPU keeps before writing them out: a block every half second or so. */
#define PROFILE_BLOCK 512
/* A listing larger than this is not a symbol table (a distribution kernel's kallsyms, modules
 * and all, is about 12 MiB). */
#define SYMBOLS_FILE_MAX (64u << 20)
#define TOP_FUNCTIONS 10

struct profile_cpu {
    uint64_t ns[PROFILE_BLOCK], rip[PROFILE_BLOCK];
    unsigned n;
};

struct profile {
    int fd;
    const char *path;
    uint64_t start_ns;
    struct symbols syms;
    atomic_ullong *hits; /* per symbol, and one more for samples no symbol holds */
    atomic_ullong samples;
    atomic_int write_errno;
    unsigned ncpus;
    struct profile_cpu cpu[];
};

struct symbols_read {
    struct symbols *s;
    bool listing;
    char why[160];
};

static int read_symbols(const struct file_map *f, void *arg) {
    struct symbols_read *r = arg;
    return r->listing ? symbols_from_map(r->s, (const char *)f->data, f->len, r->why, sizeof r->why)
                      : symbols_from_elf(r->s, f->data, f->len, r->why, sizeof r->why);
}

static int load_symbols(struct symbols *s, const char *kernel_path, const char *symbols_path, char *err,
                        size_t errlen) {
    const char *path = symbols_path ? symbols_path : kernel_path;
    struct file_map f;
    struct symbols_read r = {.s = s, .listing = symbols_path != NULL};
    if (file_map_open(path, symbols_path ? SYMBOLS_FILE_MAX : SIZE_MAX, "a symbol listing", &f, r.why, sizeof r.why) != 0)
        return snprintf(err, errlen, "%s: %s", path, r.why), -1;
    int rc = file_map_guarded(&f, read_symbols, &r);
    file_map_close(&f);
    if (rc == FILE_MAP_SHRANK) {
        symbols_free(s); /* whatever the reader had allocated when the file went short */
        snprintf(err, errlen, "%s: the file shrank while it was being read", path);
    } else if (rc != 0) {
        snprintf(err, errlen, "%s: %s", path, r.why);
    }
    return rc == 0 ? 0 : -1;
}

struct profile *profile_open(const char *path, const char *kernel_path, const char *symbols_path, unsigned cpus,
                             uint64_t start_ns, char *err, size_t errlen) {
    struct profile *p = calloc(1, sizeof *p + cpus * sizeof p->cpu[0]);
    if (!p) return snprintf(err, errlen, "out of memory"), NULL;
    p->fd = -1;
    p->path = path;
    p->start_ns = start_ns;
    p->ncpus = cpus;
    if (load_symbols(&p->syms, kernel_path, symbols_path, err, errlen) != 0) goto fail;
    p->hits = calloc(p->syms.n + 1, sizeof *p->hits);
    if (!p->hits) {
        snprintf(err, errlen, "out of memory for %zu symbols", p->syms.n);
        goto fail;
    }
    p->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (p->fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    return p;
fail:
    symbols_free(&p->syms);
    free(p->hits);
    free(p);
    return NULL;
}

static void put(struct profile *p, const char *buf, size_t n) {
    while (n > 0) {
        ssize_t w = write(p->fd, buf, n);
        if (w < 0 && errno == EINTR) continue; /* a kick */
        if (w <= 0) {
            atomic_store(&p->write_errno, w < 0 ? errno : EIO);
            return;
        }
        buf += w, n -= (size_t)w;
    }
}

/* One block of lines, named; the symbol counts grow as they are named. */
static void flush(struct profile *p, unsigned cpu) {
    struct profile_cpu *c = &p->cpu[cpu];
    char buf[8192];
    size_t n = 0;
    for (unsigned i = 0; i < c->n; i++) {
        uint64_t off;
        const struct symbol *s = symbols_find(&p->syms, c->rip[i], &off);
        atomic_fetch_add_explicit(&p->hits[s ? (size_t)(s - p->syms.v) : p->syms.n], 1, memory_order_relaxed);
        double ms = (double)(c->ns[i] - p->start_ns) / 1e6;
        int k = s ? snprintf(buf + n, sizeof buf - n, "%.3f cpu%u %#" PRIx64 " %.160s+%#" PRIx64 "\n", ms, cpu,
                             c->rip[i], s->name, off)
                  : snprintf(buf + n, sizeof buf - n, "%.3f cpu%u %#" PRIx64 "\n", ms, cpu, c->rip[i]);
        n += (size_t)k; /* a line is at most ~230 bytes: one always fits after the check below */
        if (sizeof buf - n < 256) {
            put(p, buf, n);
            n = 0;
        }
    }
    put(p, buf, n);
    c->n = 0;
}

void profile_sample(struct profile *p, unsigned cpu, uint64_t rip) {
    if (cpu >= p->ncpus) return;
    struct profile_cpu *c = &p->cpu[cpu];
    c->ns[c->n] = zx_clock_get_monotonic();
    c->rip[c->n++] = rip;
    atomic_fetch_add_explicit(&p->samples, 1, memory_order_relaxed);
    if (c->n == PROFILE_BLOCK) flush(p, cpu);
}

void profile_close(struct profile *p, FILE *out) {
    if (!p) return;
    for (unsigned i = 0; i < p->ncpus; i++) flush(p, i);
    unsigned long long total = atomic_load(&p->samples);
    fprintf(out, "bellhop profile: %llu samples, one per vCPU every %u us, in %s", total, PROFILE_PERIOD_NS / 1000,
            p->path);
    int e = atomic_load(&p->write_errno);
    if (e) fprintf(out, " (cannot write it all: %s)", strerror(e));
    fprintf(out, "\n");
    if (total && p->syms.n) {
        /* The few most-sampled functions: repeated selection, at exit only. */
        bool *shown = calloc(p->syms.n, sizeof *shown);
        for (unsigned k = 0; shown && k < TOP_FUNCTIONS; k++) {
            size_t best = p->syms.n;
            for (size_t i = 0; i < p->syms.n; i++)
                if (!shown[i] && atomic_load_explicit(&p->hits[i], memory_order_relaxed) &&
                    (best == p->syms.n || p->hits[i] > p->hits[best]))
                    best = i;
            if (best == p->syms.n) break;
            shown[best] = true;
            unsigned long long h = p->hits[best];
            fprintf(out, "  %5.1f%%  %6llu  %s\n", 100.0 * (double)h / (double)total, h, p->syms.v[best].name);
        }
        free(shown);
        unsigned long long none = p->hits[p->syms.n];
        if (none) fprintf(out, "  %5.1f%%  %6llu  (no symbol)\n", 100.0 * (double)none / (double)total, none);
    } else if (total) {
        fprintf(out, "  (no symbols: the kernel has no ELF symbol table; --profile-symbols names them)\n");
    }
    close(p->fd);
    symbols_free(&p->syms);
    free(p->hits);
    free(p);
}
