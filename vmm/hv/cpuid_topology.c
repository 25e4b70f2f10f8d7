/* The CPU topology a guest's CPUID describes (vmm/hv/cpuid_topology.h). KVM hands on its
 * host's values for the topology fields, or none (leaf 0xB without levels), which describe
 * neither the guest's CPUs nor agree with each other; a guest that sizes its sibling and core
 * masks from them (Linux does) must find one topology in all of them. Field layouts: Intel's
 * SDM (leaves 1, 4, 0xB, 0x1F) and AMD's APM (0x80000008, 0x8000001D, 0x8000001E). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "vmm/hv/cpuid_topology.h"
#include "vmm/hv/hv.h"

#define LEVEL_SMT 1u  /* leaf 0xB/0x1F ECX[15:8]: the level's type (0: none, the list's end) */
#define LEVEL_CORE 2u
#define HTT (1u << 28) /* leaf 1 EDX: EBX[23:16] holds the package's logical processors */
#define CACHE_TYPE(eax) ((eax) & 0x1fu)       /* leaves 4 and 0x8000001D; 0: no more caches */
#define CACHE_LEVEL(eax) (((eax) >> 5) & 0x7u)

/* Bits it takes to number n things (0 for one). */
static unsigned order(unsigned n) {
    unsigned k = 0;
    while ((1u << k) < n) k++;
    return k;
}

/* v with bits [lo, lo + width) replaced by field. */
static uint32_t with_bits(uint32_t v, unsigned lo, unsigned width, uint32_t field) {
    uint32_t mask = ((1u << width) - 1) << lo;
    return (v & ~mask) | ((field << lo) & mask);
}

/* Logical processors a cache of this level is shared by: a core's threads for L1 and L2,
 * the whole package for L3 and beyond. */
static uint32_t cache_sharers(const struct cpu_topology *t, uint32_t eax) {
    return CACHE_LEVEL(eax) <= 2 ? t->threads : t->cores * t->threads;
}

/* The topology's fields of a leaf that is not a level list (those are made anew). */
static void shape_leaf(const struct cpu_topology *t, struct kvm_cpuid_entry2 *e) {
    uint32_t logical = t->cores * t->threads;
    switch (e->function) {
    case 1:
        e->ebx = with_bits(e->ebx, 16, 8, logical);
        e->edx = logical > 1 ? e->edx | HTT : e->edx & ~HTT;
        break;
    case 4: /* counts of APIC ids: powers of two */
        if (!CACHE_TYPE(e->eax)) break;
        e->eax = with_bits(e->eax, 14, 12, (1u << order(cache_sharers(t, e->eax))) - 1);
        e->eax = with_bits(e->eax, 26, 6, (1u << (t->pkg_shift - t->smt_shift)) - 1);
        break;
    case 0x80000008: /* NC: logical processors - 1; ApicIdSize: the package's id bits */
        e->ecx = with_bits(e->ecx, 0, 8, logical - 1);
        e->ecx = with_bits(e->ecx, 12, 4, t->pkg_shift);
        break;
    case 0x8000001d:
        if (CACHE_TYPE(e->eax)) e->eax = with_bits(e->eax, 14, 12, cache_sharers(t, e->eax) - 1);
        break;
    case 0x8000001e: /* threads per core - 1; node 0 of one (the ids are the vCPU's own) */
        e->ebx = with_bits(e->ebx, 8, 8, t->threads - 1);
        e->ecx = 0;
        break;
    }
}

/* Leaf 0xB's or 0x1F's levels: SMT, core, then the end of the list. EDX, the x2APIC id, is
 * each vCPU's (cpuid_for_vcpu). */
static void level_entries(const struct cpu_topology *t, uint32_t function, struct kvm_cpuid_entry2 out[3]) {
    for (uint32_t i = 0; i < 3; i++)
        out[i] = (struct kvm_cpuid_entry2){.function = function, .index = i, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
                                           .ecx = i};
    out[0].eax = t->smt_shift;
    out[0].ebx = t->threads;
    out[0].ecx |= LEVEL_SMT << 8;
    out[1].eax = t->pkg_shift;
    out[1].ebx = t->cores * t->threads;
    out[1].ecx |= LEVEL_CORE << 8;
}

struct cpu_topology cpu_topology_make(unsigned cpus, unsigned threads) {
    struct cpu_topology t = {.threads = threads, .cores = (cpus + threads - 1) / threads};
    t.smt_shift = order(t.threads);
    t.pkg_shift = t.smt_shift + order(t.cores);
    return t;
}

struct kvm_cpuid2 *cpuid_with_topology(const struct kvm_cpuid2 *c, const struct cpu_topology *t) {
    static const uint32_t level_leaves[] = {0xb, 0x1f};
    struct kvm_cpuid2 *out = calloc(1, sizeof *out + (c->nent + 6) * sizeof out->entries[0]);
    if (!out) return NULL;
    bool offered[2] = {false, false};
    for (unsigned i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 e = c->entries[i];
        bool level = false;
        for (unsigned k = 0; k < 2; k++)
            if (e.function == level_leaves[k]) offered[k] = level = true;
        if (level) continue;
        shape_leaf(t, &e);
        out->entries[out->nent++] = e;
    }
    for (unsigned k = 0; k < 2; k++) {
        if (!offered[k]) continue;
        level_entries(t, level_leaves[k], &out->entries[out->nent]);
        out->nent += 3;
    }
    return out;
}

zx_status_t bellhop_guest_set_topology(zx_handle_t handle, uint32_t cpus, uint32_t threads_per_core) {
    if (cpus == 0 || cpus > BELLHOP_MAX_VCPUS || threads_per_core == 0 || threads_per_core > 2)
        return ZX_ERR_INVALID_ARGS;
    struct guest *g;
    zx_status_t st = guest_get(handle, ZX_RIGHT_WRITE, &g);
    if (st != ZX_OK) return st;
    struct cpu_topology t = cpu_topology_make(cpus, threads_per_core);
    pthread_rwlock_wrlock(&g->lock);
    struct kvm_cpuid2 *c = NULL;
    /* A vCPU's CPUID is set once, when it is made: a later topology would not reach it. */
    st = atomic_load(&g->nvcpus) != 0 ? ZX_ERR_BAD_STATE : guest_cpuid_locked(g);
    if (st == ZX_OK && !(c = cpuid_with_topology(g->cpuid, &t))) st = ZX_ERR_NO_MEMORY;
    if (c) {
        free(g->cpuid);
        g->cpuid = c;
        g->topo = t;
    }
    pthread_rwlock_unlock(&g->lock);
    object_unref(&g->obj);
    return st;
}

void cpuid_for_vcpu(const struct cpu_topology *t, struct kvm_cpuid_entry2 *e, unsigned id) {
    if (e->function == 1) e->ebx = with_bits(e->ebx, 24, 8, id); /* initial APIC id */
    if (e->function == 0xb || e->function == 0x1f) e->edx = id;   /* x2APIC id, at every level */
    if (e->function == 0x8000001e && t->threads) {
        e->eax = id;                                               /* extended APIC id */
        e->ebx = with_bits(e->ebx, 0, 8, id >> t->smt_shift);    /* core id */
    }
}
