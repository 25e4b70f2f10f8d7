/* The topology CPUID describes (vmm/hv/cpuid_topology.h), on CPUID lists shaped as KVM gives
 * them on an Intel host (leaf 4's caches, leaves 0xB and 0x1F without levels) and on an AMD
 * host (0x8000001D, 0x8000001E), with the host's own counts in them: each guest-visible
 * topology field says the one topology asked for, and the rest of the list is as it was. */
#include <stdlib.h>

#include "tests/lib/check.h"
#include "vmm/hv/cpuid_topology.h"

#define SIG KVM_CPUID_FLAG_SIGNIFCANT_INDEX
#define FIELD(v, lo, width) (((v) >> (lo)) & ((1u << (width)) - 1))
/* A cache of this type and level, shared by `share` logical processors, `cores` per package
 * (leaf 4's layout; 0x8000001D has no core count). */
#define CACHE(type, level, share, cores) ((type) | (level) << 5 | ((share) - 1) << 14 | ((cores) - 1) << 26)

static const struct kvm_cpuid_entry2 intel_host[] = {
    {.function = 0, .eax = 0x1f, .ebx = 0x756e6547},
    {.function = 1, .eax = 0x806f8, .ebx = 0x07400800, .ecx = 0xfffa3203, .edx = 0x178bfbff},
    {.function = 4, .index = 0, .flags = SIG, .eax = CACHE(1, 1, 2, 64), .ebx = 0x02c0003f},
    {.function = 4, .index = 1, .flags = SIG, .eax = CACHE(2, 1, 2, 64)},
    {.function = 4, .index = 2, .flags = SIG, .eax = CACHE(3, 2, 2, 64)},
    {.function = 4, .index = 3, .flags = SIG, .eax = CACHE(3, 3, 128, 64), .edx = 0x4},
    {.function = 4, .index = 4, .flags = SIG},
    {.function = 7, .flags = SIG, .ebx = 0xf3bfbfbf},
    {.function = 0xb, .flags = SIG, .edx = 0x27},
    {.function = 0x1f, .flags = SIG, .edx = 0x27},
    {.function = 0x80000000, .eax = 0x80000008},
    {.function = 0x80000008, .eax = 0x3030},
};

static const struct kvm_cpuid_entry2 amd_host[] = {
    {.function = 0, .eax = 0xd, .ebx = 0x68747541},
    {.function = 1, .eax = 0xa00f11, .ebx = 0x01020800, .ecx = 0x81202000, .edx = 0x078bfbff},
    {.function = 0xb, .flags = SIG, .edx = 1},
    {.function = 0x80000000, .eax = 0x80000021},
    {.function = 0x80000008, .eax = 0x3030, .ebx = 0x10000005, .ecx = 0x17001},
    {.function = 0x8000001d, .index = 0, .flags = SIG, .eax = CACHE(1, 1, 2, 1), .ebx = 0x01c0003f},
    {.function = 0x8000001d, .index = 1, .flags = SIG, .eax = CACHE(2, 1, 2, 1)},
    {.function = 0x8000001d, .index = 2, .flags = SIG, .eax = CACHE(3, 2, 2, 1)},
    {.function = 0x8000001d, .index = 3, .flags = SIG, .eax = CACHE(3, 3, 16, 1)},
    {.function = 0x8000001d, .index = 4, .flags = SIG},
    {.function = 0x8000001e, .eax = 5, .ebx = 0x0102, .ecx = 0x0100},
};

static struct kvm_cpuid2 *list_of(const struct kvm_cpuid_entry2 *e, unsigned n) {
    struct kvm_cpuid2 *c = calloc(1, sizeof *c + n * sizeof c->entries[0]);
    CHECK(c);
    c->nent = n;
    memcpy(c->entries, e, n * sizeof e[0]);
    return c;
}

static const struct kvm_cpuid_entry2 *find(const struct kvm_cpuid2 *c, uint32_t function, uint32_t index) {
    for (unsigned i = 0; i < c->nent; i++)
        if (c->entries[i].function == function && c->entries[i].index == index) return &c->entries[i];
    return NULL;
}

/* vCPU id's copy of an entry of the guest's list. */
static struct kvm_cpuid_entry2 as_vcpu(const struct kvm_cpuid2 *c, const struct cpu_topology *t, uint32_t function,
                                       uint32_t index, unsigned id) {
    const struct kvm_cpuid_entry2 *e = find(c, function, index);
    CHECK_MSG(e, "no leaf %#x.%u", function, index);
    struct kvm_cpuid_entry2 v = *e;
    cpuid_for_vcpu(t, &v, id);
    return v;
}

/* A level list (0xB or 0x1F): SMT, core, end; x2APIC id = id everywhere. */
static void check_levels(const struct kvm_cpuid2 *c, const struct cpu_topology *t, uint32_t leaf, unsigned n) {
    unsigned logical = t->cores * t->threads;
    for (unsigned id = 0; id < n; id++) {
        struct kvm_cpuid_entry2 smt = as_vcpu(c, t, leaf, 0, id), core = as_vcpu(c, t, leaf, 1, id),
                                end = as_vcpu(c, t, leaf, 2, id);
        CHECK_EQ(smt.flags & SIG, SIG);
        CHECK_EQ(smt.ecx, 1u << 8 | 0);
        CHECK_EQ(smt.ebx, t->threads);
        CHECK_EQ(core.ecx, 2u << 8 | 1);
        CHECK_EQ(core.ebx, logical);
        CHECK_EQ(end.ecx, 2);
        CHECK_EQ(end.ebx, 0);
        CHECK(smt.edx == id && core.edx == id && end.edx == id);
        CHECK_EQ(id >> smt.eax, id / t->threads); /* threads 2k and 2k+1 are core k's */
        CHECK_EQ(id >> core.eax, 0);              /* and every core the one package's */
        CHECK((1u << core.eax) >= logical && (1u << core.eax) < 2 * logical);
    }
}

static void check_intel(unsigned n, unsigned threads) {
    struct kvm_cpuid2 *host = list_of(intel_host, sizeof intel_host / sizeof intel_host[0]);
    struct cpu_topology t = cpu_topology_make(n, threads);
    struct kvm_cpuid2 *c = cpuid_with_topology(host, &t);
    CHECK(c);
    unsigned logical = t.cores * t.threads;
    CHECK_EQ(c->nent, host->nent + 4); /* 0xB and 0x1F: one entry each became three */
    struct kvm_cpuid_entry2 l1 = as_vcpu(c, &t, 1, 0, n - 1);
    CHECK_EQ(l1.ebx, (n - 1) << 24 | logical << 16 | 0x0800);
    CHECK_EQ(l1.edx, logical > 1 ? 0x178bfbffu : 0x078bfbffu);
    CHECK(l1.eax == 0x806f8 && l1.ecx == 0xfffa3203);
    unsigned core_ids = 1u << (t.pkg_shift - t.smt_shift);
    CHECK_EQ(find(c, 4, 0)->eax, CACHE(1, 1, threads, core_ids));
    CHECK_EQ(find(c, 4, 2)->eax, CACHE(3, 2, threads, core_ids));
    CHECK_EQ(find(c, 4, 3)->eax, CACHE(3, 3, 1u << t.pkg_shift, core_ids));
    CHECK(find(c, 4, 3)->edx == 0x4 && find(c, 4, 0)->ebx == 0x02c0003f);
    CHECK_EQ(find(c, 4, 4)->eax, 0); /* the list's end stays one */
    check_levels(c, &t, 0xb, n);
    check_levels(c, &t, 0x1f, n);
    CHECK_EQ(find(c, 7, 0)->ebx, 0xf3bfbfbf);
    CHECK_EQ(FIELD(find(c, 0x80000008, 0)->ecx, 0, 8), logical - 1);
    CHECK(!find(c, 0x8000001e, 0)); /* not offered: not added */
    free(c);
    free(host);
}

TEST(an_intel_list_says_the_topology_in_leaves_1_4_b_and_1f) {
    check_intel(6, 2);
    check_intel(32, 2);
    check_intel(1, 2);
    check_intel(5, 1);
    check_intel(1, 1);
}

static void check_amd(unsigned n, unsigned threads) {
    struct kvm_cpuid2 *host = list_of(amd_host, sizeof amd_host / sizeof amd_host[0]);
    struct cpu_topology t = cpu_topology_make(n, threads);
    struct kvm_cpuid2 *c = cpuid_with_topology(host, &t);
    CHECK(c);
    unsigned logical = t.cores * t.threads;
    struct kvm_cpuid_entry2 nc = *find(c, 0x80000008, 0);
    CHECK_EQ(nc.ecx, 0x10000u | t.pkg_shift << 12 | (logical - 1));
    CHECK_EQ(find(c, 0x8000001d, 0)->eax, CACHE(1, 1, threads, 1));
    CHECK_EQ(find(c, 0x8000001d, 3)->eax, CACHE(3, 3, logical, 1));
    CHECK_EQ(find(c, 0x8000001d, 4)->eax, 0);
    for (unsigned id = 0; id < n; id++) {
        struct kvm_cpuid_entry2 e = as_vcpu(c, &t, 0x8000001e, 0, id);
        CHECK_EQ(e.eax, id);
        CHECK_EQ(e.ebx, (threads - 1) << 8 | id / threads);
        CHECK_EQ(e.ecx, 0);
    }
    check_levels(c, &t, 0xb, n);
    CHECK(!find(c, 0x1f, 0));
    free(c);
    free(host);
}

TEST(an_amd_list_says_it_in_80000008_8000001d_and_8000001e_too) {
    check_amd(32, 2);
    check_amd(6, 2);
    check_amd(3, 1);
}

/* Set twice, the last holds; without a topology a vCPU gets only its APIC ids. */
TEST(the_last_topology_holds_and_none_changes_only_the_ids) {
    struct kvm_cpuid2 *host = list_of(amd_host, sizeof amd_host / sizeof amd_host[0]);
    struct cpu_topology four = cpu_topology_make(4, 1), eight = cpu_topology_make(8, 2);
    struct kvm_cpuid2 *once = cpuid_with_topology(host, &eight), *first = cpuid_with_topology(host, &four);
    struct kvm_cpuid2 *again = cpuid_with_topology(first, &eight);
    CHECK(once && first && again);
    CHECK_EQ(again->nent, once->nent);
    CHECK(memcmp(again->entries, once->entries, once->nent * sizeof once->entries[0]) == 0);
    const struct cpu_topology none = {0};
    for (unsigned i = 0; i < host->nent; i++) {
        struct kvm_cpuid_entry2 e = host->entries[i];
        cpuid_for_vcpu(&none, &e, 3);
        if (e.function == 1) CHECK_EQ(e.ebx, 0x03020800);
        else if (e.function == 0xb) CHECK_EQ(e.edx, 3);
        else CHECK(memcmp(&e, &host->entries[i], sizeof e) == 0);
    }
    free(once);
    free(first);
    free(again);
    free(host);
}
