/* Guests: a KVM VM, its RAM, the in-kernel irqchip and PIT (made after the RAM), and its trap
 * trees. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/guest_mem.h"
#include "vmm/hv/hv.h"

#define PAGE_SIZE 4096u
#define HUGE_PAGE (2u << 20)
#define GUEST_RIGHTS                                                                         \
    (ZX_RIGHT_TRANSFER | ZX_RIGHT_DUPLICATE | ZX_RIGHT_WRITE | ZX_RIGHT_INSPECT |             \
     ZX_RIGHT_MANAGE_PROCESS | ZX_RIGHT_MANAGE_THREAD)
/* Where KVM on Intel keeps its real-mode TSS and identity map: below the 4 GiB hole's end,
 * away from the LAPIC (0xfee00000) and IOAPIC (0xfec00000). */
#define KVM_TSS_ADDR 0xfffbd000u
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000u

static void guest_destroy(struct zx_object *obj);

static const struct object_ops guest_ops = {
    .type = ZX_OBJ_TYPE_GUEST,
    .destroy = guest_destroy,
};

zx_status_t guest_get(zx_handle_t h, zx_rights_t rights, struct guest **out) {
    struct zx_object *obj;
    zx_status_t st = handle_get(h, ZX_OBJ_TYPE_GUEST, rights, &obj);
    if (st == ZX_OK) *out = (struct guest *)obj;
    return st;
}

static struct kvm_cpuid2 *supported_cpuid(int kvm) {
    for (unsigned n = 64; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof *c + n * sizeof c->entries[0]);
        if (!c) return NULL;
        c->nent = n;
        if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c) == 0) return c;
        free(c);
        if (errno != E2BIG) return NULL;
    }
    return NULL;
}

/* The CPUID every vCPU starts from: what KVM supports, plus the TSC-deadline timer (the
 * in-kernel LAPIC emulates it, but KVM reports it only through a capability) and the
 * hypervisor bit. */
static void shape_cpuid(int kvm, struct kvm_cpuid2 *c) {
    bool deadline = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
    for (unsigned i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        if (e->function == 1) {
            if (deadline) e->ecx |= 1u << 24;
            e->ecx |= 1u << 31;
        }
    }
}

static zx_status_t kvm_setup(struct guest *g) {
    g->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (g->kvm < 0) return errno == ENOENT ? ZX_ERR_NOT_SUPPORTED : ZX_ERR_ACCESS_DENIED;
    if (ioctl(g->kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) return ZX_ERR_NOT_SUPPORTED;
    static const int caps[] = {KVM_CAP_IRQCHIP, KVM_CAP_IOEVENTFD, KVM_CAP_IOEVENTFD_ANY_LENGTH,
                               KVM_CAP_IMMEDIATE_EXIT, KVM_CAP_SYNC_REGS, KVM_CAP_SIGNAL_MSI,
                               KVM_CAP_USER_MEMORY, KVM_CAP_PIT2};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++)
        if (ioctl(g->kvm, KVM_CHECK_EXTENSION, caps[i]) <= 0) return ZX_ERR_NOT_SUPPORTED;
    g->vm = ioctl(g->kvm, KVM_CREATE_VM, 0);
    if (g->vm < 0) return ZX_ERR_NO_RESOURCES;
    g->run_size = ioctl(g->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (g->run_size <= 0) return ZX_ERR_INTERNAL;
    if (ioctl(g->vm, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) != 0) return ZX_ERR_INTERNAL;
    uint64_t idmap = KVM_IDENTITY_MAP_ADDR;
    if (ioctl(g->vm, KVM_SET_IDENTITY_MAP_ADDR, &idmap) != 0) return ZX_ERR_INTERNAL;
    return ZX_OK;
}

/* Asked for when the first vCPU or a topology needs it, not with the VM: KVM_GET_SUPPORTED_CPUID
 * is one of a launch's dearest calls (0.3-0.4 ms on PVM), and a boot vCPU made on its own thread
 * asks for it while the main thread loads the kernel. */
zx_status_t guest_cpuid_locked(struct guest *g) {
    if (g->cpuid) return ZX_OK;
    if (!(g->cpuid = supported_cpuid(g->kvm))) return ZX_ERR_INTERNAL;
    shape_cpuid(g->kvm, g->cpuid);
    return ZX_OK;
}

/* The in-kernel interrupt controllers (PIC, IOAPIC, and a LAPIC with each vCPU) and PIT come
 * when the first vCPU, irqfd, MSI route or their saved state needs them, not with the VM: by
 * then the guest's RAM is registered. On PVM, RAM registered after KVM_CREATE_IRQCHIP took
 * 5-11 ms at 128 MiB, and 0.06-0.08 ms before it (KVM accepts either order; KVM_CREATE_IRQCHIP
 * must precede the vCPUs). */
zx_status_t guest_irqchip_locked(struct guest *g) {
    if (!g->irqchip) {
        if (ioctl(g->vm, KVM_CREATE_IRQCHIP, 0) != 0) return ZX_ERR_INTERNAL;
        g->irqchip = true;
    }
    if (!g->pit) {
        struct kvm_pit_config pit = {.flags = 0};
        if (ioctl(g->vm, KVM_CREATE_PIT2, &pit) != 0) return ZX_ERR_INTERNAL;
        g->pit = true;
    }
    return ZX_OK;
}

zx_status_t guest_irqchip(struct guest *g) {
    pthread_rwlock_wrlock(&g->lock);
    zx_status_t st = guest_irqchip_locked(g);
    pthread_rwlock_unlock(&g->lock);
    return st;
}

zx_status_t bellhop_guest_prepare_cpuid(zx_handle_t handle) {
    struct guest *g;
    zx_status_t st = guest_get(handle, ZX_RIGHT_WRITE, &g);
    if (st != ZX_OK) return st;
    pthread_rwlock_wrlock(&g->lock);
    st = guest_cpuid_locked(g);
    pthread_rwlock_unlock(&g->lock);
    object_unref(&g->obj);
    return st;
}

zx_status_t zx_guest_create(uint32_t options, zx_handle_t *out) {
    if (options != ZX_GUEST_OPT_NORMAL || !out) return ZX_ERR_INVALID_ARGS;
    struct guest *g = calloc(1, sizeof *g);
    if (!g) return ZX_ERR_NO_MEMORY;
    g->kvm = g->vm = -1;
    for (int i = 0; i < GUEST_MAX_GSI; i++) g->irqfds[i] = g->level_fds[i][0] = g->level_fds[i][1] = -1;
    object_init(&g->obj, &guest_ops);
    pthread_rwlock_init(&g->lock, NULL);
    pthread_mutex_init(&g->bell_lock, NULL);
    pthread_cond_init(&g->bell_cond, NULL);
    g->ctl_trap = (struct trap){.kind = ZX_GUEST_TRAP_IO, .addr = BELLHOP_VCPU_CTL_PORT,
                                .size = BELLHOP_VCPU_CTL_SIZE};
    zx_status_t st = kvm_setup(g);
    if (st == ZX_OK) st = trap_insert(&g->io_tree, &g->ctl_trap);
    if (st == ZX_OK) st = handle_create(&g->obj, GUEST_RIGHTS, out);
    object_unref(&g->obj); /* on failure this destroys the guest */
    return st;
}

static void free_traps(struct trap_tree *t, struct trap *keep) {
    for (unsigned i = 0; i < t->n; i++) {
        if (t->v[i] == keep) continue;
        if (t->v[i]->bell) bell_destroy(t->v[i]->bell);
        free(t->v[i]);
    }
    trap_tree_free(t);
}

static void guest_destroy(struct zx_object *obj) {
    struct guest *g = (struct guest *)obj;
    /* Bells first: their ioeventfds and queued packets go before the VM does. */
    free_traps(&g->mem_tree, NULL);
    for (unsigned i = 0; i < g->ndoorbells; i++) {
        bell_destroy(g->doorbells[i]->bell);
        free(g->doorbells[i]);
    }
    free_traps(&g->io_tree, &g->ctl_trap);
    for (int i = 0; i < GUEST_MAX_GSI; i++)
        if (g->irqfds[i] >= 0) close(g->irqfds[i]);
    for (unsigned i = 0; i < g->nmsi; i++) close(g->msi[i].fd);
    for (int i = 0; i < GUEST_MAX_GSI; i++)
        for (int j = 0; j < 2; j++)
            if (g->level_fds[i][j] >= 0) close(g->level_fds[i][j]);
    if (g->vm >= 0) close(g->vm);
    if (g->kvm >= 0) close(g->kvm);
    for (unsigned i = 0; i < g->nregions; i++) {
        munmap(g->regions[i].map, g->regions[i].map_size);
        if (g->regions[i].fd >= 0) close(g->regions[i].fd);
        free(g->regions[i].dirty);
    }
    free(g->cpuid);
    pthread_cond_destroy(&g->bell_cond);
    pthread_mutex_destroy(&g->bell_lock);
    pthread_rwlock_destroy(&g->lock);
    free(g);
}

/* ---- memory ---- */

static zx_status_t set_slot(struct guest *g, unsigned i, const struct mem_slot *s) {
    struct kvm_userspace_memory_region r = {
        .slot = i,
        .flags = s && g->track_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0,
        .guest_phys_addr = s ? s->gpa : 0,
        .memory_size = s ? s->size : 0,
        .userspace_addr = s ? (uintptr_t)s->host : 0,
    };
    return ioctl(g->vm, KVM_SET_USER_MEMORY_REGION, &r) == 0 ? ZX_OK : ZX_ERR_NO_RESOURCES;
}

static bool same_slot(const struct mem_slot *a, const struct mem_slot *b) {
    return a->gpa == b->gpa && a->size == b->size && a->host == b->host;
}

unsigned guest_region_parts(const struct mem_region *r, struct mem_slot part[2]) {
    if (r->gpa >= GM_LOW_END || r->size <= GM_LOW_END - r->gpa) {
        part[0] = (struct mem_slot){r->gpa, r->size, r->host};
        return 1;
    }
    uint64_t low = GM_LOW_END - r->gpa;
    part[0] = (struct mem_slot){r->gpa, low, r->host};
    part[1] = (struct mem_slot){GM_HIGH_START, r->size - low, r->host + low};
    return 2;
}

static bool regions_overlap(const struct mem_region *a, const struct mem_region *b) {
    struct mem_slot pa[2], pb[2];
    unsigned na = guest_region_parts(a, pa), nb = guest_region_parts(b, pb);
    for (unsigned i = 0; i < na; i++)
        for (unsigned j = 0; j < nb; j++)
            if (pa[i].gpa < pb[j].gpa + pb[j].size && pb[j].gpa < pa[i].gpa + pa[i].size) return true;
    return false;
}

zx_status_t guest_sync_slots_locked(struct guest *g) {
    struct mem_slot want[GUEST_MAX_SLOTS];
    unsigned n = 0;
    struct mem_slot parts[GUEST_MAX_REGIONS * 2];
    unsigned nparts = 0;
    for (unsigned r = 0; r < g->nregions; r++) nparts += guest_region_parts(&g->regions[r], parts + nparts);
    for (unsigned r = 0; r < nparts; r++) {
        const struct mem_slot *reg = &parts[r];
        uint64_t at = reg->gpa, end = reg->gpa + reg->size;
        /* Holes: every BELL/MEM trap inside the region (the tree is sorted). */
        for (unsigned t = 0; t < g->mem_tree.n && at < end; t++) {
            const struct trap *tr = g->mem_tree.v[t];
            if (tr->addr + tr->size <= at || tr->addr >= end) continue;
            if (tr->addr > at) {
                if (n == GUEST_MAX_SLOTS) return ZX_ERR_NO_RESOURCES;
                want[n++] = (struct mem_slot){at, tr->addr - at, reg->host + (at - reg->gpa)};
            }
            at = tr->addr + tr->size;
        }
        if (at < end) {
            if (n == GUEST_MAX_SLOTS) return ZX_ERR_NO_RESOURCES;
            want[n++] = (struct mem_slot){at, end - at, reg->host + (at - reg->gpa)};
        }
    }
    /* KVM cannot move or shrink a slot in place: delete the changed ones, then add. */
    for (unsigned i = 0; i < g->nslots; i++)
        if (i >= n || !same_slot(&g->slots[i], &want[i])) {
            if (g->track_dirty) guest_dirty_harvest_locked(g, i); /* its log goes with it */
            set_slot(g, i, NULL);
        }
    for (unsigned i = 0; i < n; i++) {
        if (i < g->nslots && same_slot(&g->slots[i], &want[i])) continue;
        zx_status_t st = set_slot(g, i, &want[i]);
        if (st != ZX_OK) {
            g->nslots = i; /* what KVM has now */
            return st;
        }
    }
    memcpy(g->slots, want, n * sizeof want[0]);
    g->nslots = n;
    return ZX_OK;
}

/* Adds RAM at addr: `map` (map_size bytes, owned from here on) holds it at `host`. */
static zx_status_t add_region(zx_handle_t handle, zx_gpaddr_t addr, size_t size, uint8_t *map, size_t map_size,
                              uint8_t *host, int fd) {
    struct guest *g;
    zx_status_t st = guest_get(handle, ZX_RIGHT_WRITE, &g);
    if (st != ZX_OK) {
        munmap(map, map_size);
        if (fd >= 0) close(fd);
        return st;
    }
    pthread_rwlock_wrlock(&g->lock);
    const struct mem_region add = {.gpa = addr, .size = size, .host = host, .map = map, .map_size = map_size, .fd = fd};
    for (unsigned i = 0; i < g->nregions && st == ZX_OK; i++)
        if (regions_overlap(&g->regions[i], &add)) st = ZX_ERR_ALREADY_EXISTS;
    if (st == ZX_OK && g->nregions == GUEST_MAX_REGIONS) st = ZX_ERR_NO_RESOURCES;
    struct mem_region *r = &g->regions[g->nregions];
    if (st == ZX_OK) {
        *r = add;
        if (g->track_dirty) st = guest_dirty_region_init(r);
    }
    if (st == ZX_OK) {
        g->nregions++;
        st = guest_sync_slots_locked(g);
        if (st != ZX_OK) {
            g->nregions--;
            guest_sync_slots_locked(g);
        }
    }
    if (st != ZX_OK && r < g->regions + GUEST_MAX_REGIONS) {
        free(r->dirty);
        r->dirty = NULL;
    }
    pthread_rwlock_unlock(&g->lock);
    if (st != ZX_OK) {
        munmap(map, map_size);
        if (fd >= 0) close(fd);
    }
    object_unref(&g->obj);
    return st;
}

static bool region_args_valid(zx_gpaddr_t addr, size_t size, void **host) {
    return host && size != 0 && !((addr | size) & (PAGE_SIZE - 1)) && addr + size >= addr;
}

zx_status_t zx_guest_map_memory(zx_handle_t handle, zx_gpaddr_t addr, size_t size,
                                uint32_t options, void **host) {
    if (options != 0 || !region_args_valid(addr, size, host)) return ZX_ERR_INVALID_ARGS;
    /* 2 MiB-aligned so that KVM can back guest pages with huge pages. */
    size_t map_size = size + HUGE_PAGE;
    uint8_t *map = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS |
                        MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED) return ZX_ERR_NO_MEMORY;
    uint8_t *aligned = (uint8_t *)(((uintptr_t)map + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    madvise(aligned, size, MADV_HUGEPAGE);
    zx_status_t st = add_region(handle, addr, size, map, map_size, aligned, -1);
    if (st == ZX_OK) *host = aligned;
    return st;
}

zx_status_t bellhop_guest_map_shared(zx_handle_t handle, zx_gpaddr_t addr, size_t size, void **host, int *fd) {
    if (!region_args_valid(addr, size, host) || !fd) return ZX_ERR_INVALID_ARGS;
    int mfd = memfd_create("bellhop-guest-ram", MFD_CLOEXEC);
    if (mfd < 0) return ZX_ERR_NO_RESOURCES;
    /* Placed 2 MiB-aligned as anonymous RAM is, in a reservation that the region owns. */
    size_t map_size = size + HUGE_PAGE;
    uint8_t *map = ftruncate(mfd, (off_t)size) == 0
                       ? mmap(NULL, map_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
                       : MAP_FAILED;
    if (map == MAP_FAILED) {
        close(mfd);
        return ZX_ERR_NO_MEMORY;
    }
    uint8_t *aligned = (uint8_t *)(((uintptr_t)map + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (mmap(aligned, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, mfd, 0) == MAP_FAILED) {
        munmap(map, map_size);
        close(mfd);
        return ZX_ERR_NO_MEMORY;
    }
    madvise(aligned, size, MADV_HUGEPAGE);
    zx_status_t st = add_region(handle, addr, size, map, map_size, aligned, mfd);
    if (st == ZX_OK) *host = aligned, *fd = mfd;
    return st;
}

zx_status_t bellhop_guest_map_file(zx_handle_t handle, zx_gpaddr_t addr, size_t size, int fd, uint64_t offset,
                                   void **host) {
    if (!region_args_valid(addr, size, host) || (offset & (PAGE_SIZE - 1)) || fd < 0) return ZX_ERR_INVALID_ARGS;
    /* A page past the file's end would be SIGBUS when touched, not a guest page. */
    struct stat sb;
    if (fstat(fd, &sb) != 0) return ZX_ERR_IO;
    if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size < offset || (uint64_t)sb.st_size - offset < size)
        return ZX_ERR_OUT_OF_RANGE;
    uint8_t *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, (off_t)offset);
    if (map == MAP_FAILED) return errno == ENOMEM ? ZX_ERR_NO_MEMORY : ZX_ERR_IO;
    zx_status_t st = add_region(handle, addr, size, map, size, map, -1);
    if (st == ZX_OK) *host = map;
    return st;
}

zx_status_t bellhop_guest_irqfd(zx_handle_t handle, uint32_t gsi, int *fd) {
    if (!fd || gsi >= GUEST_MAX_GSI) return ZX_ERR_INVALID_ARGS;
    struct guest *g;
    zx_status_t st = guest_get(handle, ZX_RIGHT_WRITE, &g);
    if (st != ZX_OK) return st;
    pthread_rwlock_wrlock(&g->lock);
    st = guest_irqchip_locked(g);
    if (st == ZX_OK && g->irqfds[gsi] < 0) {
        int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        struct kvm_irqfd irqfd = {.fd = (uint32_t)efd, .gsi = gsi};
        if (efd < 0 || ioctl(g->vm, KVM_IRQFD, &irqfd) != 0) {
            if (efd >= 0) close(efd);
            st = ZX_ERR_NO_RESOURCES;
        } else {
            g->irqfds[gsi] = efd;
        }
    }
    if (st == ZX_OK) *fd = g->irqfds[gsi];
    pthread_rwlock_unlock(&g->lock);
    object_unref(&g->obj);
    return st;
}

/* KVM replaces the whole routing table at once: the IOAPIC pins (and the PIC's 0-15, which
 * the default table has too) first, then one MSI route per vector. */
static zx_status_t set_routes_locked(struct guest *g) {
    unsigned n = GUEST_MAX_GSI + 16 + g->nmsi;
    struct kvm_irq_routing *r = calloc(1, sizeof *r + n * sizeof r->entries[0]);
    if (!r) return ZX_ERR_NO_MEMORY;
    unsigned k = 0;
    for (unsigned gsi = 0; gsi < GUEST_MAX_GSI; gsi++) {
        r->entries[k++] = (struct kvm_irq_routing_entry){
            .gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
            .u.irqchip = {.irqchip = KVM_IRQCHIP_IOAPIC, .pin = gsi}};
        if (gsi < 16)
            r->entries[k++] = (struct kvm_irq_routing_entry){
                .gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
                .u.irqchip = {.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
                              .pin = gsi % 8}};
    }
    for (unsigned i = 0; i < g->nmsi; i++)
        r->entries[k++] = (struct kvm_irq_routing_entry){
            .gsi = GUEST_MAX_GSI + i, .type = KVM_IRQ_ROUTING_MSI,
            .u.msi = {.address_lo = (uint32_t)g->msi[i].address,
                      .address_hi = (uint32_t)(g->msi[i].address >> 32), .data = g->msi[i].data}};
    r->nr = k;
    int rc = ioctl(g->vm, KVM_SET_GSI_ROUTING, r);
    free(r);
    return rc == 0 ? ZX_OK : ZX_ERR_INTERNAL;
}

zx_status_t bellhop_guest_msi_create(zx_handle_t handle, uint32_t *msi, int *fd) {
    if (!msi || !fd) return ZX_ERR_INVALID_ARGS;
    struct guest *g;
    zx_status_t st = guest_get(handle, ZX_RIGHT_WRITE, &g);
    if (st != ZX_OK) return st;
    pthread_rwlock_wrlock(&g->lock);
    st = guest_irqchip_locked(g);
    if (st == ZX_OK && g->nmsi == BELLHOP_MAX_MSI) {
        st = ZX_ERR_NO_RESOURCES;
    } else if (st == ZX_OK) {
        unsigned i = g->nmsi;
        int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        g->msi[i] = (struct guest_msi){.fd = efd};
        g->nmsi++;
        struct kvm_irqfd irqfd = {.fd = (uint32_t)efd, .gsi = GUEST_MAX_GSI + i};
        /* A route must exist before the irqfd binds to its GSI. */
        if (efd < 0 || set_routes_locked(g) != ZX_OK || ioctl(g->vm, KVM_IRQFD, &irqfd) != 0) {
            if (efd >= 0) close(efd);
            g->nmsi--;
            set_routes_locked(g);
            st = ZX_ERR_NO_RESOURCES;
        } else {
            *msi = i;
            *fd = efd;
        }
    }
    pthread_rwlock_unlock(&g->lock);
    object_unref(&g->obj);
    return st;
}

zx_status_t bellhop_guest_msi_set(zx_handle_t handle, uint32_t msi, uint64_t address, uint32_t data) {
    struct guest *g;
    zx_status_t st = guest_get(handle, ZX_RIGHT_WRITE, &g);
    if (st != ZX_OK) return st;
    pthread_rwlock_wrlock(&g->lock);
    if (msi >= g->nmsi) {
        st = ZX_ERR_OUT_OF_RANGE;
    } else if (g->msi[msi].address != address || g->msi[msi].data != data) {
        g->msi[msi].address = address;
        g->msi[msi].data = data;
        st = set_routes_locked(g);
    }
    pthread_rwlock_unlock(&g->lock);
    object_unref(&g->obj);
    return st;
}

zx_status_t bellhop_guest_irq_line(zx_handle_t handle, uint32_t gsi, bool level) {
    if (gsi >= GUEST_MAX_GSI) return ZX_ERR_INVALID_ARGS;
    struct guest *g;
    zx_status_t st = guest_get(handle, ZX_RIGHT_WRITE, &g);
    if (st != ZX_OK) return st;
    st = guest_irqchip(g);
    struct kvm_irq_level line = {.irq = gsi, .level = level};
    if (st == ZX_OK && ioctl(g->vm, KVM_IRQ_LINE, &line) != 0) st = ZX_ERR_INTERNAL;
    object_unref(&g->obj);
    return st;
}

zx_status_t bellhop_guest_irqfd_level(zx_handle_t handle, uint32_t gsi, int *fd, int *resample_fd) {
    if (!fd || !resample_fd || gsi >= GUEST_MAX_GSI) return ZX_ERR_INVALID_ARGS;
    struct guest *g;
    zx_status_t st = guest_get(handle, ZX_RIGHT_WRITE, &g);
    if (st != ZX_OK) return st;
    pthread_rwlock_wrlock(&g->lock);
    st = guest_irqchip_locked(g);
    if (st == ZX_OK && g->level_fds[gsi][0] < 0) {
        int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), rfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        struct kvm_irqfd irqfd = {.fd = (uint32_t)efd, .gsi = gsi, .flags = KVM_IRQFD_FLAG_RESAMPLE,
                                  .resamplefd = (uint32_t)rfd};
        if (efd < 0 || rfd < 0 || ioctl(g->vm, KVM_IRQFD, &irqfd) != 0) {
            if (efd >= 0) close(efd);
            if (rfd >= 0) close(rfd);
            st = ZX_ERR_NO_RESOURCES;
        } else {
            g->level_fds[gsi][0] = efd;
            g->level_fds[gsi][1] = rfd;
        }
    }
    if (st == ZX_OK) {
        *fd = g->level_fds[gsi][0];
        *resample_fd = g->level_fds[gsi][1];
    }
    pthread_rwlock_unlock(&g->lock);
    object_unref(&g->obj);
    return st;
}

zx_status_t bellhop_guest_exit_counts(zx_handle_t handle, uint64_t counts[BELLHOP_EXIT_KINDS]) {
    if (!counts) return ZX_ERR_INVALID_ARGS;
    struct guest *g;
    zx_status_t st = guest_get(handle, ZX_RIGHT_NONE, &g);
    if (st != ZX_OK) return st;
    pthread_rwlock_rdlock(&g->lock);
    for (int i = 0; i < BELLHOP_EXIT_KINDS; i++) {
        counts[i] = atomic_load_explicit(&g->exits[i], memory_order_relaxed);
        for (unsigned v = 0; v < BELLHOP_MAX_VCPUS; v++)
            if (g->vcpu_exits[v]) counts[i] += atomic_load_explicit(&g->vcpu_exits[v]->n[i], memory_order_relaxed);
    }
    pthread_rwlock_unlock(&g->lock);
    object_unref(&g->obj);
    return ZX_OK;
}
