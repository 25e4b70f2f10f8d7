/* What a snapshot writes of guest RAM (docs/snapshots.md): with track_dirty, the pages
 * written since the last snapshot, gathered from KVM's log of the guest's writes and the
 * VMM's own marks (base/guest_mem.h); for a Full snapshot, the pages that may not be zeros,
 * so that a 1 GiB guest that touched a few MiB is not read whole. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <zircon/status.h>

#include "base/error_text.h"
#include "vmm/machine/machine_parts.h"
#include "vmm/machine/snapshot_memory.h"

int machine_track_dirty(struct machine *m) {
    if (!m->cfg->track_dirty) return 0;
    if (dirty_pages_init(&m->dirty, m->env.mem.size) != 0 || dirty_pages_init(&m->touched, m->env.mem.size) != 0)
        return machine_fail("out of memory for dirty page tracking");
    zx_status_t st = bellhop_guest_track_dirty(m->guest);
    if (st != ZX_OK) return machine_fail("cannot track dirty pages (KVM's dirty log): %s", zx_status_get_string(st));
    m->env.mem.written = &m->dirty;
    return 0;
}

void machine_dirty_free(struct machine *m) {
    m->env.mem.written = NULL;
    dirty_pages_free(&m->dirty);
    dirty_pages_free(&m->touched);
}

int machine_snapshot_gather(struct machine *m, char *err, size_t errlen) {
    if (!m->cfg->track_dirty) return 0;
    zx_status_t st = bellhop_guest_take_dirty(m->guest, 0, m->env.mem.size, m->dirty.bits);
    return st == ZX_OK ? 0 : error_text(err, errlen, "reading KVM's dirty log: %s", zx_status_get_string(st));
}

/* The memory file this machine was restored from, when it has one to read: its pages are the
 * guest's too, wherever the guest has not written since. */
static int restored_from(const struct machine *m) { return m->cfg->restore ? m->cfg->restore->mem_fd : -1; }

/* The pages that may hold something other than zeros, into held; false when that cannot be
 * known (RAM restored from something other than a file this process holds): read them all. */
static bool may_be_nonzero(struct machine *m, struct dirty_pages *held) {
    const struct guest_mem *gm = &m->env.mem;
    if (m->cfg->restore && (restored_from(m) < 0 || snapshot_file_pages(restored_from(m), gm->size, held) != 0))
        return false;
    if (m->cfg->track_dirty) { /* exact: every write since the start was gathered or marked */
        dirty_pages_or(held, &m->touched);
        dirty_pages_or(held, &m->dirty);
        return true;
    }
    /* A page never faulted in reads as zeros, or, where it took a file's page copy-on-write
     * (gm_write_file) or the snapshot's, as that file, whose pages count as held. */
    for (unsigned i = 0; gm->files && i < gm->files->n; i++)
        dirty_pages_mark(held, gm->files->range[i].off, gm->files->range[i].len);
    return snapshot_touched_pages(gm->host, gm->size, held) == 0;
}

void machine_snapshot_add_diff(struct machine *m, struct snapshot_writer *w) {
    struct snapshot_probe probes[SNAPSHOT_MAX_PROBES];
    struct dirty_pages held;
    unsigned n = 0;
    if (dirty_pages_init(&held, m->env.mem.size) == 0) {
        bool known = may_be_nonzero(m, &held);
        n = snapshot_pick_probes(m->env.mem.host, m->env.mem.size, &m->dirty, known ? &held : NULL, probes);
        dirty_pages_free(&held);
    }
    /* (out of memory for the bitmap: no probes, and a restore cannot check; it still works) */
    snapshot_add(w, SNAP_DIFF, 0, NULL, 0, probes, n * sizeof probes[0]);
}

int machine_snapshot_write_memory(struct machine *m, int fd, bool diff) {
    const struct guest_mem *gm = &m->env.mem;
    if (diff) return snapshot_write_diff(fd, gm->host, gm->size, &m->dirty);
    struct dirty_pages held;
    if (dirty_pages_init(&held, gm->size) != 0) return snapshot_write_full(fd, gm->host, gm->size, NULL);
    int rc = snapshot_write_full(fd, gm->host, gm->size, may_be_nonzero(m, &held) ? &held : NULL);
    int saved = errno;
    dirty_pages_free(&held);
    errno = saved;
    return rc;
}

void machine_snapshot_taken(struct machine *m) {
    if (!m->cfg->track_dirty) return;
    dirty_pages_or(&m->touched, &m->dirty);
    dirty_pages_clear(&m->dirty);
}
