/* The state KVM keeps of a vCPU and of the whole guest, saved and restored for snapshots.
 *
 * A state is a list of records, each {uint32 tag, uint32 length, bytes}: a record's length
 * must be exactly its KVM structure's (or, for MSRs, a whole number of entries up to the
 * bound), so that a state from a file is checked before KVM sees any of it. Restore sets the
 * records in the order KVM needs: the MP state first, the registers, then the LAPIC (whose
 * base the segment registers' apic_base set) before the MSRs (the TSC deadline is the
 * LAPIC's), and the pending events last (they refer to the state set before them). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/hv/hv.h"

enum {
    REC_MP_STATE = 1,
    REC_REGS,
    REC_SREGS,
    REC_XSAVE,
    REC_XCRS,
    REC_DEBUGREGS,
    REC_LAPIC,
    REC_MSRS,
    REC_EVENTS,
    /* the guest's */
    REC_PIC_MASTER = 32,
    REC_PIC_SLAVE,
    REC_IOAPIC,
    REC_PIT,
    REC_CLOCK,
};

#define MAX_MSRS 512u

struct rec_hdr {
    uint32_t tag, len;
};

/* A record list being written into a caller's buffer. */
struct rec_writer {
    uint8_t *buf;
    size_t size, used;
    bool overflow;
};

static void *rec_add(struct rec_writer *w, uint32_t tag, uint32_t len) {
    if (w->overflow || len > w->size - w->used || sizeof(struct rec_hdr) > w->size - w->used - len) {
        w->overflow = true;
        return NULL;
    }
    struct rec_hdr h = {tag, len};
    memcpy(w->buf + w->used, &h, sizeof h);
    void *p = w->buf + w->used + sizeof h;
    w->used += sizeof h + len;
    return p;
}

/* The next record of [*p, end): false at the end or when it runs past it (*bad set). */
static bool rec_next(const uint8_t **p, const uint8_t *end, struct rec_hdr *h, const uint8_t **data, bool *bad) {
    if (*p == end) return false;
    if ((size_t)(end - *p) < sizeof *h) return *bad = true, false;
    memcpy(h, *p, sizeof *h);
    if (h->len > (size_t)(end - *p) - sizeof *h) return *bad = true, false;
    *data = *p + sizeof *h;
    *p += sizeof *h + h->len;
    return true;
}

/* ---- vCPU ---- */

/* Every MSR KVM lists that it can also read (some listed ones are not there on this host
 * or this CPU model: KVM_GET_MSRS stops at the first it cannot read, which is skipped). */
static struct kvm_msrs *read_msrs(struct vcpu *v) {
    struct kvm_msr_list probe = {.nmsrs = 0};
    if (ioctl(v->guest->kvm, KVM_GET_MSR_INDEX_LIST, &probe) != 0 && errno != E2BIG) return NULL;
    uint32_t n = probe.nmsrs < MAX_MSRS ? probe.nmsrs : MAX_MSRS;
    struct kvm_msr_list *list = calloc(1, sizeof *list + probe.nmsrs * sizeof list->indices[0]);
    struct kvm_msrs *out = calloc(1, sizeof *out + n * sizeof out->entries[0]);
    struct kvm_msrs *one = calloc(1, sizeof *one + n * sizeof one->entries[0]);
    bool ok = list && out && one;
    if (ok) {
        list->nmsrs = probe.nmsrs;
        ok = ioctl(v->guest->kvm, KVM_GET_MSR_INDEX_LIST, list) == 0;
    }
    for (uint32_t i = 0; ok && i < n;) {
        one->nmsrs = n - i;
        for (uint32_t j = 0; j < one->nmsrs; j++) one->entries[j] = (struct kvm_msr_entry){.index = list->indices[i + j]};
        int got = ioctl(v->fd, KVM_GET_MSRS, one);
        if (got < 0) ok = false;
        for (int j = 0; ok && j < got; j++) out->entries[out->nmsrs++] = one->entries[j];
        i += (uint32_t)(got < 0 ? 0 : got) + 1; /* the one after those read could not be */
    }
    free(list);
    free(one);
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

/* KVM_RUN with immediate_exit set completes what the last exit left (an IN's value, an MMIO
 * read's) without entering the guest: only then is the state KVM gives consistent. */
static bool complete_pending_io(struct vcpu *v) {
    __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_RELEASE);
    int r = ioctl(v->fd, KVM_RUN, 0);
    __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_RELEASE);
    return r == 0 || errno == EINTR || errno == EAGAIN;
}

zx_status_t bellhop_vcpu_save(zx_handle_t handle, void *buf, size_t size, size_t *actual) {
    struct vcpu *v;
    zx_status_t st = owned_vcpu(handle, ZX_RIGHT_READ, &v);
    if (st != ZX_OK) return st;
    if (!buf || !actual) {
        object_unref(&v->obj);
        return ZX_ERR_INVALID_ARGS;
    }
    if (v->pending_bell || v->io.active || v->mem_read) {
        object_unref(&v->obj);
        return ZX_ERR_SHOULD_WAIT;
    }
    struct rec_writer w = {.buf = buf, .size = size};
    struct kvm_msrs *msrs = NULL;
    const char *what = "KVM_RUN (completing the last exit)";
    bool ok = complete_pending_io(v);
    static const struct {
        uint32_t tag, len;
        unsigned long req;
        const char *name;
    } plain[] = {
        {REC_MP_STATE, sizeof(struct kvm_mp_state), KVM_GET_MP_STATE, "KVM_GET_MP_STATE"},
        {REC_REGS, sizeof(struct kvm_regs), KVM_GET_REGS, "KVM_GET_REGS"},
        {REC_SREGS, sizeof(struct kvm_sregs), KVM_GET_SREGS, "KVM_GET_SREGS"},
        {REC_XSAVE, sizeof(struct kvm_xsave), KVM_GET_XSAVE, "KVM_GET_XSAVE"},
        {REC_XCRS, sizeof(struct kvm_xcrs), KVM_GET_XCRS, "KVM_GET_XCRS"},
        {REC_DEBUGREGS, sizeof(struct kvm_debugregs), KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS"},
        {REC_LAPIC, sizeof(struct kvm_lapic_state), KVM_GET_LAPIC, "KVM_GET_LAPIC"},
    };
    for (size_t i = 0; ok && i < sizeof plain / sizeof plain[0]; i++) {
        void *p = rec_add(&w, plain[i].tag, plain[i].len);
        what = plain[i].name;
        ok = p && ioctl(v->fd, plain[i].req, p) == 0;
        uint32_t nr_xcrs = 1;
        if (ok && plain[i].tag == REC_XCRS) memcpy(&nr_xcrs, p, sizeof nr_xcrs); /* p has no alignment */
        if (nr_xcrs == 0) w.used -= sizeof(struct rec_hdr) + plain[i].len; /* a CPU without XSAVE has none */
    }
    if (ok) {
        what = "KVM_GET_MSRS";
        msrs = read_msrs(v);
        ok = msrs != NULL;
    }
    if (ok) {
        size_t len = msrs->nmsrs * sizeof msrs->entries[0];
        void *p = rec_add(&w, REC_MSRS, (uint32_t)len);
        if ((ok = p != NULL)) memcpy(p, msrs->entries, len);
    }
    if (ok) { /* last: reading the state above does not change what is pending */
        void *p = rec_add(&w, REC_EVENTS, sizeof(struct kvm_vcpu_events));
        what = "KVM_GET_VCPU_EVENTS";
        ok = p && ioctl(v->fd, KVM_GET_VCPU_EVENTS, p) == 0;
    }
    free(msrs);
    if (w.overflow) st = ZX_ERR_BUFFER_TOO_SMALL;
    else if (!ok) st = vcpu_failed(v, ZX_ERR_IO_REFUSED, "saving the vCPU's state: %s failed: %s", what, strerror(errno));
    else *actual = w.used;
    object_unref(&v->obj);
    return st;
}

/* The order restore sets records in, and each one's exact length (0: MSRs, any number of
 * whole entries up to MAX_MSRS). */
static const struct vcpu_record {
    uint32_t tag, len;
    unsigned long req;
    const char *name;
    bool optional;
} vcpu_records[] = {
    {REC_MP_STATE, sizeof(struct kvm_mp_state), KVM_SET_MP_STATE, "MP state", false},
    {REC_REGS, sizeof(struct kvm_regs), KVM_SET_REGS, "registers", false},
    {REC_SREGS, sizeof(struct kvm_sregs), KVM_SET_SREGS, "segment registers", false},
    {REC_XSAVE, sizeof(struct kvm_xsave), KVM_SET_XSAVE, "XSAVE area", false},
    {REC_XCRS, sizeof(struct kvm_xcrs), KVM_SET_XCRS, "XCRs", true},
    {REC_DEBUGREGS, sizeof(struct kvm_debugregs), KVM_SET_DEBUGREGS, "debug registers", false},
    {REC_LAPIC, sizeof(struct kvm_lapic_state), KVM_SET_LAPIC, "LAPIC", false},
    {REC_MSRS, 0, KVM_SET_MSRS, "MSRs", false},
    {REC_EVENTS, sizeof(struct kvm_vcpu_events), KVM_SET_VCPU_EVENTS, "pending events", false},
};
#define NVCPU_RECORDS (sizeof vcpu_records / sizeof vcpu_records[0])
_Static_assert(NVCPU_RECORDS == VCPU_STATE_RECORDS, "hv.h counts the records");

static zx_status_t set_msrs(struct vcpu *v, const uint8_t *data, uint32_t len) {
    uint32_t n = len / sizeof(struct kvm_msr_entry);
    struct kvm_msrs *m = calloc(1, sizeof *m + len);
    if (!m) return ZX_ERR_NO_MEMORY;
    m->nmsrs = n;
    memcpy(m->entries, data, len);
    int r = ioctl(v->fd, KVM_SET_MSRS, m);
    uint32_t bad = r >= 0 && (uint32_t)r < n ? m->entries[r].index : 0;
    free(m);
    if (r < 0) return vcpu_failed(v, ZX_ERR_IO_REFUSED, "restoring the vCPU's MSRs: %s", strerror(errno));
    if ((uint32_t)r != n) return vcpu_failed(v, ZX_ERR_IO_REFUSED, "restoring the vCPU's MSRs: KVM refused MSR %#x", bad);
    return ZX_OK;
}

int vcpu_state_parse(const void *buf, size_t size, const uint8_t *found[VCPU_STATE_RECORDS],
                     uint32_t lens[VCPU_STATE_RECORDS], char *err, size_t errlen) {
    const uint8_t *p = buf, *end = p + (buf ? size : 0), *data;
    struct rec_hdr h;
    bool bad = false;
    for (size_t i = 0; i < NVCPU_RECORDS; i++) found[i] = NULL, lens[i] = 0;
    while (rec_next(&p, end, &h, &data, &bad)) {
        size_t i = 0;
        while (i < NVCPU_RECORDS && vcpu_records[i].tag != h.tag) i++;
        if (i == NVCPU_RECORDS) return snprintf(err, errlen, "vCPU state: unknown record %u", h.tag), -1;
        if (found[i]) return snprintf(err, errlen, "vCPU state: two %s records", vcpu_records[i].name), -1;
        if (vcpu_records[i].len ? h.len != vcpu_records[i].len
                                : h.len % sizeof(struct kvm_msr_entry) || h.len / sizeof(struct kvm_msr_entry) > MAX_MSRS)
            return snprintf(err, errlen, "vCPU state: the %s record is %u bytes", vcpu_records[i].name, h.len), -1;
        found[i] = data, lens[i] = h.len;
    }
    if (bad) return snprintf(err, errlen, "vCPU state: a record runs past its end"), -1;
    for (size_t i = 0; i < NVCPU_RECORDS; i++)
        if (!found[i] && !vcpu_records[i].optional)
            return snprintf(err, errlen, "vCPU state: no %s record", vcpu_records[i].name), -1;
    return 0;
}

zx_status_t bellhop_vcpu_restore(zx_handle_t handle, const void *buf, size_t size) {
    struct vcpu *v;
    zx_status_t st = owned_vcpu(handle, ZX_RIGHT_WRITE, &v);
    if (st != ZX_OK) return st;
    const uint8_t *found[NVCPU_RECORDS];
    uint32_t lens[NVCPU_RECORDS];
    char why[160];
    if (vcpu_state_parse(buf, size, found, lens, why, sizeof why) != 0)
        st = vcpu_failed(v, ZX_ERR_INVALID_ARGS, "%s", why);
    for (size_t i = 0; st == ZX_OK && i < NVCPU_RECORDS; i++) {
        const struct vcpu_record *r = &vcpu_records[i];
        if (!found[i]) continue;
        if (r->tag == REC_MSRS) {
            st = set_msrs(v, found[i], lens[i]);
            continue;
        }
        /* KVM's structures want their own alignment; the file's bytes have none. */
        void *copy = malloc(lens[i]);
        if (!copy) {
            st = ZX_ERR_NO_MEMORY;
            break;
        }
        memcpy(copy, found[i], lens[i]);
        if (ioctl(v->fd, r->req, copy) != 0)
            st = vcpu_failed(v, ZX_ERR_IO_REFUSED, "restoring the vCPU's %s: KVM refused it (%s)", r->name, strerror(errno));
        free(copy);
    }
    object_unref(&v->obj);
    return st;
}

/* ---- the guest ---- */

static const struct guest_record {
    uint32_t tag;
    uint32_t chip; /* KVM_GET_IRQCHIP's chip_id, for the chips */
    const char *name;
} guest_records[] = {
    {REC_PIC_MASTER, KVM_IRQCHIP_PIC_MASTER, "master PIC"},
    {REC_PIC_SLAVE, KVM_IRQCHIP_PIC_SLAVE, "slave PIC"},
    {REC_IOAPIC, KVM_IRQCHIP_IOAPIC, "IOAPIC"},
    {REC_PIT, 0, "PIT"},
    {REC_CLOCK, 0, "KVM clock"},
};
#define NGUEST_RECORDS (sizeof guest_records / sizeof guest_records[0])

static uint32_t guest_record_len(uint32_t tag) {
    return tag == REC_PIT ? sizeof(struct kvm_pit_state2)
         : tag == REC_CLOCK ? sizeof(struct kvm_clock_data)
                            : sizeof(struct kvm_irqchip);
}

zx_status_t bellhop_guest_save(zx_handle_t handle, void *buf, size_t size, size_t *actual) {
    struct guest *g;
    zx_status_t st = guest_get(handle, ZX_RIGHT_INSPECT, &g);
    if (st != ZX_OK) return st;
    st = guest_irqchip(g);
    if (st != ZX_OK) {
        object_unref(&g->obj);
        return st;
    }
    struct rec_writer w = {.buf = buf, .size = buf && actual ? size : 0};
    bool ok = buf && actual;
    for (size_t i = 0; ok && i < NGUEST_RECORDS; i++) {
        uint32_t tag = guest_records[i].tag, len = guest_record_len(tag);
        void *p = rec_add(&w, tag, len);
        if (!p) break;
        if (tag == REC_PIT) {
            ok = ioctl(g->vm, KVM_GET_PIT2, p) == 0;
        } else if (tag == REC_CLOCK) {
            ok = ioctl(g->vm, KVM_GET_CLOCK, p) == 0;
        } else {
            struct kvm_irqchip chip = {.chip_id = guest_records[i].chip};
            ok = ioctl(g->vm, KVM_GET_IRQCHIP, &chip) == 0;
            memcpy(p, &chip, sizeof chip);
        }
    }
    if (!buf || !actual) st = ZX_ERR_INVALID_ARGS;
    else if (w.overflow) st = ZX_ERR_BUFFER_TOO_SMALL;
    else if (!ok) st = ZX_ERR_IO_REFUSED;
    else *actual = w.used;
    object_unref(&g->obj);
    return st;
}

static zx_status_t guest_refused(char *err, size_t errlen, zx_status_t st, const char *what, const char *why) {
    if (err) snprintf(err, errlen, "%s: %s", what, why);
    return st;
}

zx_status_t bellhop_guest_restore(zx_handle_t handle, const void *buf, size_t size, char *err, size_t errlen) {
    struct guest *g;
    zx_status_t st = guest_get(handle, ZX_RIGHT_WRITE, &g);
    if (st != ZX_OK) return st;
    if ((st = guest_irqchip(g)) != ZX_OK)
        guest_refused(err, errlen, st, "guest state", "KVM refused the interrupt controllers");
    const uint8_t *found[NGUEST_RECORDS] = {0};
    const uint8_t *p = buf, *end = p + (buf ? size : 0), *data;
    struct rec_hdr h;
    bool bad = false;
    while (st == ZX_OK && rec_next(&p, end, &h, &data, &bad)) {
        size_t i = 0;
        while (i < NGUEST_RECORDS && guest_records[i].tag != h.tag) i++;
        if (i == NGUEST_RECORDS) st = guest_refused(err, errlen, ZX_ERR_INVALID_ARGS, "guest state", "an unknown record");
        else if (found[i] || h.len != guest_record_len(h.tag))
            st = guest_refused(err, errlen, ZX_ERR_INVALID_ARGS, guest_records[i].name, "a record of the wrong size, or two");
        else found[i] = data;
    }
    if (st == ZX_OK && bad) st = guest_refused(err, errlen, ZX_ERR_INVALID_ARGS, "guest state", "a record runs past its end");
    for (size_t i = 0; st == ZX_OK && i < NGUEST_RECORDS; i++)
        if (!found[i]) st = guest_refused(err, errlen, ZX_ERR_INVALID_ARGS, guest_records[i].name, "missing");
    for (size_t i = 0; st == ZX_OK && i < NGUEST_RECORDS; i++) {
        uint32_t tag = guest_records[i].tag;
        int r;
        if (tag == REC_PIT) {
            struct kvm_pit_state2 pit;
            memcpy(&pit, found[i], sizeof pit);
            r = ioctl(g->vm, KVM_SET_PIT2, &pit);
        } else if (tag == REC_CLOCK) {
            struct kvm_clock_data clock;
            memcpy(&clock, found[i], sizeof clock);
            clock.flags = 0; /* KVM takes only the clock's value back, not how it was read */
            memset(clock.pad, 0, sizeof clock.pad);
            r = ioctl(g->vm, KVM_SET_CLOCK, &clock);
        } else {
            struct kvm_irqchip chip;
            memcpy(&chip, found[i], sizeof chip);
            if (chip.chip_id != guest_records[i].chip)
                st = guest_refused(err, errlen, ZX_ERR_INVALID_ARGS, guest_records[i].name, "the record is another chip's");
            r = st == ZX_OK ? ioctl(g->vm, KVM_SET_IRQCHIP, &chip) : 0;
        }
        if (st == ZX_OK && r != 0) st = guest_refused(err, errlen, ZX_ERR_IO_REFUSED, guest_records[i].name, strerror(errno));
    }
    object_unref(&g->obj);
    return st;
}
