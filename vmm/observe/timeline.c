#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmm/observe/timeline.h"

#define TID_BELLS 1000 /* the tracks of events that belong to no thread of ours */
#define TID_IRQS 1001
#define COUNTER_NS 100000000ull

struct timeline *timeline_create(const char *path, char *err, size_t errlen) {
    struct timeline *t = calloc(1, sizeof *t);
    if (!t) return snprintf(err, errlen, "out of memory"), NULL;
    t->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (t->fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        free(t);
        return NULL;
    }
    return t;
}

void timeline_destroy(struct timeline *t) {
    if (!t) return;
    close(t->fd);
    for (unsigned i = 0; i < TIMELINE_MAX_THREADS; i++) free(t->rings[i].recs);
    free(t);
}

/* A JSON string's body: quotes, backslashes and control characters escaped. */
static void put_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static double us(uint64_t ns, uint64_t start) { return ns > start ? (double)(ns - start) / 1000.0 : 0; }

struct counts {
    uint64_t *io, *mmio, *other;
    size_t n;
};

static void count_exit(struct counts *c, uint64_t ts, uint64_t start, const char *text) {
    size_t b = ts > start ? (size_t)((ts - start) / COUNTER_NS) : 0;
    if (b >= c->n) {
        size_t n = b + 64;
        uint64_t *io = realloc(c->io, n * 8), *mmio = realloc(c->mmio, n * 8), *other = realloc(c->other, n * 8);
        if (io) c->io = io;
        if (mmio) c->mmio = mmio;
        if (other) c->other = other;
        if (!io || !mmio || !other) return;
        memset(c->io + c->n, 0, (n - c->n) * 8), memset(c->mmio + c->n, 0, (n - c->n) * 8);
        memset(c->other + c->n, 0, (n - c->n) * 8);
        c->n = n;
    }
    if (strncmp(text, "io ", 3) == 0) c->io[b]++;
    else if (strncmp(text, "mmio ", 5) == 0) c->mmio[b]++;
    else c->other[b]++;
}

/* One record of the thread on track `tid`, as trace events. */
static void put_record(FILE *f, const struct timeline_record *e, unsigned tid, uint64_t start_ns, struct counts *counts) {
    double ts = us(e->ts_ns, start_ns);
    char name[80];
    switch (e->kind) {
    case TIMELINE_EXIT:
    case TIMELINE_HANDLER:
    case TIMELINE_TURN:
        fprintf(f, ",\n{\"ph\": \"X\", \"cat\": \"%s\", \"name\": ",
                e->kind == TIMELINE_EXIT ? "exit" : e->kind == TIMELINE_HANDLER ? "handler" : "loop");
        if (e->kind == TIMELINE_HANDLER)
            snprintf(name, sizeof name, "%s queue %llu", e->what, (unsigned long long)e->arg);
        else
            snprintf(name, sizeof name, "%s%s%s", e->what, e->of ? " " : "", e->of ? e->of : "");
        put_string(f, name);
        if (e->kind == TIMELINE_EXIT) count_exit(counts, e->ts_ns, start_ns, e->what);
        fprintf(f, ", \"pid\": 1, \"tid\": %u, \"ts\": %.3f, \"dur\": %.3f, \"args\": {\"at\": \"%#llx\"}}", tid, ts,
                (double)e->dur_ns / 1000.0, (unsigned long long)e->arg);
        if (e->flow) /* the bell's flow ends here */
            fprintf(f, ",\n{\"ph\": \"f\", \"bp\": \"e\", \"cat\": \"bell\", \"name\": \"bell\", \"id\": %llu, \"pid\": 1, "
                       "\"tid\": %u, \"ts\": %.3f}", (unsigned long long)e->flow, tid, ts);
        break;
    case TIMELINE_BELL:
        snprintf(name, sizeof name, "bell %s", e->what);
        fprintf(f, ",\n{\"ph\": \"i\", \"s\": \"t\", \"name\": ");
        put_string(f, name);
        fprintf(f, ", \"pid\": 1, \"tid\": %d, \"ts\": %.3f, \"args\": {\"at\": \"%#llx\"}}", TID_BELLS, ts,
                (unsigned long long)e->arg);
        fprintf(f, ",\n{\"ph\": \"s\", \"cat\": \"bell\", \"name\": \"bell\", \"id\": %llu, \"pid\": 1, \"tid\": %d, "
                   "\"ts\": %.3f}", (unsigned long long)e->flow, TID_BELLS, ts);
        break;
    case TIMELINE_IRQ: /* from the handler (this thread) to the interrupts' track */
        snprintf(name, sizeof name, "%s %s", e->what, e->of);
        fprintf(f, ",\n{\"ph\": \"s\", \"cat\": \"irq\", \"name\": \"irq\", \"id\": %llu, \"pid\": 1, \"tid\": %u, "
                   "\"ts\": %.3f}", (unsigned long long)e->flow, tid, ts);
        fprintf(f, ",\n{\"ph\": \"i\", \"s\": \"t\", \"name\": ");
        put_string(f, name);
        fprintf(f, ", \"pid\": 1, \"tid\": %d, \"ts\": %.3f}", TID_IRQS, ts);
        fprintf(f, ",\n{\"ph\": \"f\", \"bp\": \"e\", \"cat\": \"irq\", \"name\": \"irq\", \"id\": %llu, \"pid\": 1, "
                   "\"tid\": %d, \"ts\": %.3f}", (unsigned long long)e->flow, TID_IRQS, ts);
        break;
    default: /* TIMELINE_MARK */
        fprintf(f, ",\n{\"ph\": \"i\", \"s\": \"t\", \"name\": ");
        put_string(f, e->text);
        fprintf(f, ", \"pid\": 1, \"tid\": %u, \"ts\": %.3f}", tid, ts);
    }
}

/* All of text to fd. 0, or -1 with the reason. */
static int write_all(int fd, const char *text, size_t len, char *err, size_t errlen) {
    for (size_t done = 0; done < len;) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return snprintf(err, errlen, "cannot write the trace: %s", strerror(errno)), -1;
        done += (size_t)w;
    }
    return 0;
}

int timeline_write(struct timeline *t, uint64_t start_ns, char *err, size_t errlen) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len); /* memory only: the sandbox lets main write, not open */
    if (!f) return snprintf(err, errlen, "out of memory"), -1;
    unsigned n = atomic_load(&t->nrings);
    if (n > TIMELINE_MAX_THREADS) n = TIMELINE_MAX_THREADS;
    uint64_t dropped = 0, last = start_ns;
    struct counts counts = {0};
    fprintf(f, "{\"traceEvents\": [\n");
    fprintf(f, "{\"ph\": \"M\", \"name\": \"process_name\", \"pid\": 1, \"args\": {\"name\": \"bellhop\"}},\n");
    fprintf(f, "{\"ph\": \"M\", \"name\": \"thread_name\", \"pid\": 1, \"tid\": %d, \"args\": {\"name\": \"guest bells\"}},\n",
            TID_BELLS);
    fprintf(f, "{\"ph\": \"M\", \"name\": \"thread_name\", \"pid\": 1, \"tid\": %d, \"args\": {\"name\": \"interrupts\"}}",
            TID_IRQS);
    for (unsigned i = 0; i < n; i++) {
        struct timeline_ring *r = &t->rings[i];
        if (!r->recs) continue;
        unsigned tid = i + 1;
        fprintf(f, ",\n{\"ph\": \"M\", \"name\": \"thread_name\", \"pid\": 1, \"tid\": %u, \"args\": {\"name\": ", tid);
        put_string(f, r->name);
        fprintf(f, "}}");
        uint64_t first = r->written > TIMELINE_RING_RECORDS ? r->written - TIMELINE_RING_RECORDS : 0;
        dropped += first;
        for (uint64_t k = first; k < r->written; k++) {
            const struct timeline_record *e = &r->recs[k % TIMELINE_RING_RECORDS];
            if (e->ts_ns + e->dur_ns > last) last = e->ts_ns + e->dur_ns;
            put_record(f, e, tid, start_ns, &counts);
        }
    }
    for (size_t b = 0; b < counts.n && start_ns + b * COUNTER_NS <= last; b++)
        fprintf(f, ",\n{\"ph\": \"C\", \"name\": \"exits per 100 ms\", \"pid\": 1, \"ts\": %.3f, \"args\": {\"io\": %llu, "
                   "\"mmio\": %llu, \"other\": %llu}}", (double)(b * COUNTER_NS) / 1000.0, (unsigned long long)counts.io[b],
                (unsigned long long)counts.mmio[b], (unsigned long long)counts.other[b]);
    free(counts.io), free(counts.mmio), free(counts.other);
    fprintf(f, "\n], \"displayTimeUnit\": \"ns\", \"otherData\": {\"dropped_records\": %llu, \"ring_records\": %u}}\n",
            (unsigned long long)dropped, TIMELINE_RING_RECORDS);
    if (fclose(f) != 0) return free(text), snprintf(err, errlen, "out of memory"), -1;
    int r = write_all(t->fd, text, len, err, errlen);
    free(text);
    return r;
}
