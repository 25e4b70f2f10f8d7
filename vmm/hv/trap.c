/* zx_guest_set_trap: Zircon's validation order and error codes, and the trap trees the vCPU
 * path searches on every synchronous exit (BELL and MEM share one tree, IO has its own). */
#include <stdlib.h>
#include <string.h>

#include "vmm/hv/hv.h"

#define PAGE_SIZE 4096u

/* Index of the first trap that ends after addr. */
static unsigned lower_bound(const struct trap_tree *t, uint64_t addr) {
    unsigned lo = 0, hi = t->n;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        const struct trap *m = t->v[mid];
        if (m->addr + m->size <= addr) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static bool overlaps(const struct trap_tree *t, uint64_t addr, uint64_t size) {
    unsigned i = lower_bound(t, addr);
    return i < t->n && t->v[i]->addr < addr + size;
}

struct trap *trap_find(struct trap_tree *t, uint64_t addr, uint64_t len) {
    unsigned i = lower_bound(t, addr);
    if (i == t->n) return NULL;
    struct trap *m = t->v[i];
    if (addr < m->addr || addr + len > m->addr + m->size) return NULL;
    return m;
}

zx_status_t trap_insert(struct trap_tree *t, struct trap *trap) {
    if (overlaps(t, trap->addr, trap->size)) return ZX_ERR_ALREADY_EXISTS;
    unsigned i = lower_bound(t, trap->addr);
    if (t->n == GUEST_MAX_TRAPS) return ZX_ERR_NO_RESOURCES;
    if (t->n == t->cap) {
        unsigned cap = t->cap ? t->cap * 2 : 16;
        struct trap **v = realloc(t->v, cap * sizeof *v);
        if (!v) return ZX_ERR_NO_MEMORY;
        t->v = v;
        t->cap = cap;
    }
    memmove(&t->v[i + 1], &t->v[i], (t->n - i) * sizeof *t->v);
    t->v[i] = trap;
    t->n++;
    return ZX_OK;
}

void trap_tree_free(struct trap_tree *t) {
    free(t->v);
    *t = (struct trap_tree){0};
}

static zx_status_t check_range(uint32_t kind, uint64_t addr, uint64_t size) {
    if (size == 0 || addr + size < addr) return ZX_ERR_OUT_OF_RANGE;
    if (kind == ZX_GUEST_TRAP_IO && addr + size > UINT16_MAX) return ZX_ERR_OUT_OF_RANGE;
    return ZX_OK;
}

zx_status_t zx_guest_set_trap(zx_handle_t handle, uint32_t kind, zx_vaddr_t addr, size_t size,
                              zx_handle_t port_handle, uint64_t key) {
    struct guest *g;
    zx_status_t st = guest_get(handle, ZX_RIGHT_WRITE, &g);
    if (st != ZX_OK) return st;
    struct zx_object *pobj = NULL;
    /* 1. kind and port rules */
    if (kind == ZX_GUEST_TRAP_BELL) {
        if (port_handle == ZX_HANDLE_INVALID) st = ZX_ERR_INVALID_ARGS;
        else st = handle_get(port_handle, ZX_OBJ_TYPE_PORT, ZX_RIGHT_WRITE, &pobj);
    } else if (kind == ZX_GUEST_TRAP_MEM || kind == ZX_GUEST_TRAP_IO) {
        if (port_handle != ZX_HANDLE_INVALID) st = ZX_ERR_INVALID_ARGS;
    } else {
        st = ZX_ERR_INVALID_ARGS;
    }
    /* 2. page alignment for BELL and MEM; 3. range */
    if (st == ZX_OK && kind != ZX_GUEST_TRAP_IO && ((addr | size) & (PAGE_SIZE - 1)))
        st = ZX_ERR_INVALID_ARGS;
    if (st == ZX_OK) st = check_range(kind, addr, size);
    struct trap *trap = NULL;
    if (st == ZX_OK) {
        trap = calloc(1, sizeof *trap);
        if (!trap) st = ZX_ERR_NO_MEMORY;
    }
    if (st == ZX_OK) {
        *trap = (struct trap){.kind = kind, .addr = addr, .size = size, .key = key};
        struct trap_tree *tree = kind == ZX_GUEST_TRAP_IO ? &g->io_tree : &g->mem_tree;
        pthread_rwlock_wrlock(&g->lock);
        /* 4. overlap */
        st = overlaps(tree, addr, size) ? ZX_ERR_ALREADY_EXISTS : ZX_OK;
        if (st == ZX_OK && kind == ZX_GUEST_TRAP_BELL) st = bell_create(g, trap, port_from_object(pobj));
        if (st == ZX_OK) st = trap_insert(tree, trap);
        if (st == ZX_OK && kind != ZX_GUEST_TRAP_IO) {
            st = guest_sync_slots_locked(g);
            if (st != ZX_OK) { /* undo: the trap cannot be a hole in RAM */
                unsigned i;
                for (i = 0; tree->v[i] != trap; i++) {
                }
                memmove(&tree->v[i], &tree->v[i + 1], (tree->n - i - 1) * sizeof *tree->v);
                tree->n--;
                guest_sync_slots_locked(g);
            }
        }
        pthread_rwlock_unlock(&g->lock);
        if (st != ZX_OK) {
            if (trap->bell) bell_destroy(trap->bell);
            free(trap);
        }
    }
    if (pobj) object_unref(pobj);
    object_unref(&g->obj);
    return st;
}

zx_status_t bellhop_guest_set_doorbell(zx_handle_t handle, zx_gpaddr_t addr, size_t len,
                                       uint64_t datamatch, zx_handle_t port_handle, uint64_t key) {
    struct guest *g;
    zx_status_t st = guest_get(handle, ZX_RIGHT_WRITE, &g);
    if (st != ZX_OK) return st;
    struct zx_object *pobj = NULL;
    st = handle_get(port_handle, ZX_OBJ_TYPE_PORT, ZX_RIGHT_WRITE, &pobj);
    if (st == ZX_OK && (len == 0 || len > 8 || (len & (len - 1)) || addr + len < addr))
        st = ZX_ERR_INVALID_ARGS;
    struct trap *trap = NULL;
    if (st == ZX_OK && !(trap = calloc(1, sizeof *trap))) st = ZX_ERR_NO_MEMORY;
    if (st == ZX_OK) {
        *trap = (struct trap){.kind = ZX_GUEST_TRAP_BELL, .addr = addr, .size = len, .key = key};
        pthread_rwlock_wrlock(&g->lock);
        if (g->ndoorbells == GUEST_MAX_DOORBELLS) st = ZX_ERR_NO_RESOURCES;
        if (st == ZX_OK) st = bell_create_doorbell(g, trap, port_from_object(pobj), (uint32_t)len, datamatch);
        if (st == ZX_OK) g->doorbells[g->ndoorbells++] = trap;
        pthread_rwlock_unlock(&g->lock);
        if (st != ZX_OK) free(trap);
    }
    if (pobj) object_unref(pobj);
    object_unref(&g->obj);
    return st;
}
