/* Process-local handle table. A handle encodes a slot and that slot's generation, so a
 * closed handle stays invalid (ZX_ERR_BAD_HANDLE) after its slot is reused. The table is
 * bounded: MAX_HANDLES live handles, slots allocated in chunks on demand. */
#include <stdlib.h>

#include "loop/object.h"

#define CHUNK_SHIFT 8
#define CHUNK_SIZE (1u << CHUNK_SHIFT)
#define MAX_CHUNKS 256u
#define MAX_HANDLES (CHUNK_SIZE * MAX_CHUNKS) /* 65536 */
#define GEN_BITS 14u

struct slot {
    struct zx_object *obj;
    zx_rights_t rights;
    uint32_t gen;
    uint32_t next_free;
};

static struct lock table_lock; /* cheap uncontended: every handle lookup takes it */
static struct slot *chunks[MAX_CHUNKS];
static uint32_t nslots;        /* slots allocated so far */
static uint32_t free_head = 0; /* 1-based index of the first free slot, 0 = none */

static struct slot *slot_at(uint32_t idx) { return &chunks[idx >> CHUNK_SHIFT][idx & (CHUNK_SIZE - 1)]; }

static zx_handle_t encode(uint32_t idx, uint32_t gen) {
    return (zx_handle_t)((gen & ((1u << GEN_BITS) - 1)) << 18 | idx << 2 | ZX_HANDLE_FIXED_BITS_MASK);
}

static struct slot *decode_locked(zx_handle_t h) {
    if ((h & ZX_HANDLE_FIXED_BITS_MASK) != ZX_HANDLE_FIXED_BITS_MASK) return NULL;
    uint32_t idx = (h >> 2) & (MAX_HANDLES - 1);
    uint32_t gen = h >> 18;
    if (idx >= nslots) return NULL;
    struct slot *s = slot_at(idx);
    if (!s->obj || (s->gen & ((1u << GEN_BITS) - 1)) != gen) return NULL;
    return s;
}

static zx_status_t alloc_locked(struct zx_object *obj, zx_rights_t rights, zx_handle_t *out) {
    uint32_t idx;
    if (free_head) {
        idx = free_head - 1;
        free_head = slot_at(idx)->next_free;
    } else {
        if (nslots == MAX_HANDLES) return ZX_ERR_NO_RESOURCES;
        if (!chunks[nslots >> CHUNK_SHIFT]) {
            chunks[nslots >> CHUNK_SHIFT] = calloc(CHUNK_SIZE, sizeof(struct slot));
            if (!chunks[nslots >> CHUNK_SHIFT]) return ZX_ERR_NO_MEMORY;
        }
        idx = nslots++;
    }
    struct slot *s = slot_at(idx);
    s->obj = obj;
    s->rights = rights;
    atomic_fetch_add(&obj->handles, 1);
    object_ref(obj);
    *out = encode(idx, s->gen);
    return ZX_OK;
}

zx_status_t handle_create(struct zx_object *obj, zx_rights_t rights, zx_handle_t *out) {
    lock_acquire(&table_lock);
    zx_status_t st = alloc_locked(obj, rights, out);
    lock_release(&table_lock);
    return st;
}

/* The slot of a live handle that may be used as asked, or why not. */
static zx_status_t lookup_locked(zx_handle_t h, zx_obj_type_t type, zx_rights_t rights, struct slot **out) {
    struct slot *s = decode_locked(h);
    zx_status_t st = s ? handle_check(s->obj->ops->type, s->rights, type, rights) : ZX_ERR_BAD_HANDLE;
    if (st == ZX_OK) *out = s;
    return st;
}

zx_status_t handle_get_stamped(zx_handle_t h, zx_obj_type_t type, zx_rights_t rights,
                               struct zx_object **out, unsigned *closes) {
    struct slot *s;
    lock_acquire(&table_lock);
    zx_status_t st = lookup_locked(h, type, rights, &s);
    if (st == ZX_OK) {
        object_ref(s->obj);
        *out = s->obj;
        *closes = atomic_load_explicit(&s->obj->handle_closes, memory_order_relaxed);
    }
    lock_release(&table_lock);
    return st;
}

zx_status_t handle_get(zx_handle_t h, zx_obj_type_t type, zx_rights_t rights,
                       struct zx_object **out) {
    unsigned closes;
    return handle_get_stamped(h, type, rights, out, &closes);
}

/* A miss of handle_get_cached (object.h): refills the cache. */
zx_status_t handle_get_cached_slow(struct handle_cache *c, zx_handle_t h, zx_obj_type_t type,
                                   zx_rights_t rights, struct zx_object **out) {
    handle_cache_clear(c);
    struct slot *s;
    lock_acquire(&table_lock);
    zx_status_t st = lookup_locked(h, type, rights, &s);
    if (st == ZX_OK) {
        object_ref(s->obj);
        *c = (struct handle_cache){.handle = h, .rights = s->rights, .type = s->obj->ops->type, .obj = s->obj,
                                   .closes = atomic_load_explicit(&s->obj->handle_closes, memory_order_relaxed)};
        *out = s->obj;
    }
    lock_release(&table_lock);
    return st;
}

void handle_cache_clear(struct handle_cache *c) {
    struct zx_object *obj = c->obj;
    *c = (struct handle_cache){0};
    if (obj) object_unref(obj);
}

zx_status_t handle_rights(zx_handle_t h, zx_rights_t *out) {
    lock_acquire(&table_lock);
    struct slot *s = decode_locked(h);
    if (s) *out = s->rights;
    lock_release(&table_lock);
    return s ? ZX_OK : ZX_ERR_BAD_HANDLE;
}

static void observers_cancel_for_object(struct zx_object *obj);

/* The last handle of an object is gone: its pending waits end, then its own hook runs. */
static void drop_handle(struct zx_object *obj) {
    if (atomic_fetch_sub(&obj->handles, 1) == 1) {
        observers_cancel_for_object(obj);
        if (obj->ops->on_zero_handles) obj->ops->on_zero_handles(obj);
    }
    object_unref(obj);
}

static struct zx_object *release_slot_locked(struct slot *s, uint32_t idx) {
    struct zx_object *obj = s->obj;
    /* under table_lock: a cache filled under it sees the count before or after, never between */
    atomic_fetch_add_explicit(&obj->handle_closes, 1, memory_order_release);
    s->obj = NULL;
    s->rights = 0;
    s->gen++;
    s->next_free = free_head;
    free_head = idx + 1;
    return obj;
}

zx_status_t zx_handle_close(zx_handle_t h) {
    if (h == ZX_HANDLE_INVALID) return ZX_OK;
    lock_acquire(&table_lock);
    struct slot *s = decode_locked(h);
    struct zx_object *obj = s ? release_slot_locked(s, (h >> 2) & (MAX_HANDLES - 1)) : NULL;
    lock_release(&table_lock);
    if (!obj) return ZX_ERR_BAD_HANDLE;
    drop_handle(obj);
    return ZX_OK;
}

zx_status_t zx_handle_close_many(const zx_handle_t *handles, size_t n) {
    zx_status_t result = ZX_OK;
    for (size_t i = 0; i < n; i++) {
        zx_status_t st = zx_handle_close(handles[i]);
        if (st != ZX_OK) result = st;
    }
    return result;
}

zx_status_t zx_handle_duplicate(zx_handle_t h, zx_rights_t rights, zx_handle_t *out) {
    if (!out) return ZX_ERR_INVALID_ARGS;
    lock_acquire(&table_lock);
    struct slot *s = decode_locked(h);
    zx_status_t st;
    if (!s) {
        st = ZX_ERR_BAD_HANDLE;
    } else if (!(s->rights & ZX_RIGHT_DUPLICATE)) {
        st = ZX_ERR_ACCESS_DENIED;
    } else if (rights != ZX_RIGHT_SAME_RIGHTS && (rights & ~s->rights)) {
        st = ZX_ERR_INVALID_ARGS; /* rights may only be reduced */
    } else {
        st = alloc_locked(s->obj, rights == ZX_RIGHT_SAME_RIGHTS ? s->rights : rights, out);
    }
    lock_release(&table_lock);
    return st;
}

zx_status_t zx_handle_replace(zx_handle_t h, zx_rights_t rights, zx_handle_t *out) {
    if (!out) return ZX_ERR_INVALID_ARGS;
    lock_acquire(&table_lock);
    struct slot *s = decode_locked(h);
    zx_status_t st;
    struct zx_object *old = NULL;
    if (!s) {
        st = ZX_ERR_BAD_HANDLE;
    } else if (rights != ZX_RIGHT_SAME_RIGHTS && (rights & ~s->rights)) {
        st = ZX_ERR_INVALID_ARGS;
    } else {
        zx_rights_t r = rights == ZX_RIGHT_SAME_RIGHTS ? s->rights : rights;
        st = alloc_locked(s->obj, r, out);
        /* alloc may have grown the table; look the old slot up again */
        s = decode_locked(h);
        if (st == ZX_OK) old = release_slot_locked(s, (h >> 2) & (MAX_HANDLES - 1));
    }
    lock_release(&table_lock);
    if (old) drop_handle(old);
    return st;
}

/* ---- observers of an object whose last handle closed ---- */
void observer_free(struct observer *o);

static void observers_cancel_for_object(struct zx_object *obj) {
    struct list_node dead = LIST_INITIAL_VALUE(dead), *n, *tmp;
    lock_acquire(&g_signal_lock);
    list_for_each_safe(&obj->observers, n, tmp) {
        struct observer *o = list_entry(n, struct observer, obj_node);
        list_delete(&o->obj_node);
        if (o->cond) { /* a synchronous waiter: wake it so it sees the object is gone */
            o->fired = true;
            o->observed = ZX_SIGNAL_HANDLE_CLOSED;
            cond_broadcast(o->cond);
            continue;
        }
        /* An async loop's wait can no longer fire, but stays the loop's to cancel: its handler
         * still gets ZX_ERR_CANCELED at shutdown (port_take_tagged_locked finds it there). Our
         * caller's reference keeps obj alive past the one the orphan drops. */
        if (o->tag) {
            port_orphan_observer_locked(o);
            continue;
        }
        port_unlink_observer_locked(o);
        list_add_tail(&dead, &o->obj_node);
    }
    lock_release(&g_signal_lock);
    while ((n = list_remove_head(&dead))) observer_free(list_entry(n, struct observer, obj_node));
}
