#include <stdlib.h>

#include "loop/object.h"

static void event_destroy(struct zx_object *obj) { free(obj); }

static const struct object_ops event_ops = {
    .type = ZX_OBJ_TYPE_EVENT,
    .waitable = true,
    .user_signals = ZX_EVENT_SIGNAL_MASK,
    .destroy = event_destroy,
};

zx_status_t zx_event_create(uint32_t options, zx_handle_t *out) {
    if (options != 0 || !out) return ZX_ERR_INVALID_ARGS;
    struct zx_object *e = malloc(sizeof *e);
    if (!e) return ZX_ERR_NO_MEMORY;
    object_init(e, &event_ops);
    zx_status_t st = handle_create(e, ZX_DEFAULT_EVENT_RIGHTS, out);
    object_unref(e);
    return st;
}
