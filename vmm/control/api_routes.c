/* The API's routes (vmm/control/api_state.h): one table of what each method and path does and
 * when it may, and Firecracker's answers around it: 204 for a PUT or PATCH done, 200 with JSON
 * for a GET, and for everything else a 400 (413 for an MMDS store past its limit) with
 * {"fault_message"} in the words its clients match ("Invalid request method and/or path", "not
 * supported before/after starting the microVM", "Empty PATCH request.", "unknown field `x`"). */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zircon/syscalls.h>

#include "devices/virtio_balloon.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_net.h"
#include "vmm/control/api_state.h"
#include "vmm/control/version.h"

#define NOT_BEFORE "The requested operation is not supported before starting the microVM."
#define NOT_AFTER "The requested operation is not supported after starting the microVM."

/* One request as a route sees it. A handler returns 0 (answered 200 with reply if it set one,
 * else 204; or not at all when it answers later) or -1 with the reason in err. */
struct call {
    struct api_ticket t;
    const struct api_request *r;
    const char *id; /* the path's last part, for a route with one */
    json_t *body;   /* NULL for a GET */
    json_t *reply;
    char *text;     /* or a 200's JSON as text (malloc'd) */
    int status;     /* a failure's, when not 400 */
    bool later;
    char err[512];
};

typedef int route_fn(struct api *a, struct call *c);

enum when { ANY, BEFORE, AFTER }; /* AFTER: the machine runs */

static const char *state_name(struct api *a) {
    if (a->state != RUNNING) return "Not started";
    return machine_paused(a->m) ? "Paused" : "Running";
}

__attribute__((format(printf, 2, 3))) static int fail(struct call *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- GETs ---- */

static int get_root(struct api *a, struct call *c) {
    c->reply = json_pack("{s:s, s:s, s:s, s:s}", "id", "anonymous-instance", "state", state_name(a), "vmm_version",
                         BELLHOP_VERSION, "app_name", "bellhop");
    return 0;
}

static int get_version(struct api *a, struct call *c) {
    (void)a;
    c->reply = json_pack("{s:s}", "firecracker_version", BELLHOP_VERSION);
    return 0;
}

static int get_vm_config(struct api *a, struct call *c) {
    c->reply = vm_spec_to_json(&a->spec);
    return 0;
}

static int get_machine_config(struct api *a, struct call *c) {
    c->reply = vm_spec_machine_config_json(&a->spec);
    return 0;
}

static int get_balloon(struct api *a, struct call *c) {
    if (!a->spec.balloon.set) return fail(c, "balloon: no balloon device: PUT /balloon before InstanceStart");
    c->reply = vm_spec_balloon_json(&a->spec);
    return 0;
}

static struct virtio_dev *balloon_device(struct api *a, struct call *c) {
    struct virtio_dev *vd = a->spec.balloon.set ? machine_device(a->m, a->spec.balloon.device) : NULL;
    if (!vd) fail(c, "balloon: no balloon device: PUT /balloon before InstanceStart");
    return vd;
}

/* Firecracker's names for the statistics' tags (virtio 1.2 §5.5.6.3, and newer kernels'). */
static const char *const stat_names[VIRTIO_BALLOON_STAT_TAGS] = {
    "swap_in",          "swap_out",         "major_faults", "minor_faults", "free_memory", "total_memory",
    "available_memory", "disk_caches",      "hugetlb_allocations", "hugetlb_failures", "oom_kill", "alloc_stall",
    "async_scan",       "direct_scan",      "async_reclaim", "direct_reclaim",
};

static int get_balloon_stats(struct api *a, struct call *c) {
    struct virtio_dev *vd = balloon_device(a, c);
    if (!vd) return -1;
    struct virtio_balloon_info info;
    virtio_balloon_info(vd, &info);
    if (!info.stats_enabled) return fail(c, "balloon/statistics: statistics were not enabled (stats_polling_interval_s)");
    c->reply = json_pack("{s:I, s:I, s:I, s:I}", "target_pages", (json_int_t)info.target_pages, "actual_pages",
                         (json_int_t)info.actual_pages, "target_mib", (json_int_t)(info.target_pages >> 8), "actual_mib",
                         (json_int_t)(info.actual_pages >> 8));
    for (unsigned i = 0; i < VIRTIO_BALLOON_STAT_TAGS; i++)
        if (info.has_stat[i]) json_object_set_new(c->reply, stat_names[i], json_integer((json_int_t)info.stat[i]));
    return 0;
}

/* ---- the configuration before InstanceStart ---- */

static int put_boot_source(struct api *a, struct call *c) { return vm_spec_boot_source(&a->spec, c->body, c->err, sizeof c->err); }
static int put_machine(struct api *a, struct call *c) {
    return vm_spec_machine_config(&a->spec, c->body, false, c->err, sizeof c->err);
}
static int patch_machine(struct api *a, struct call *c) {
    return vm_spec_machine_config(&a->spec, c->body, true, c->err, sizeof c->err);
}
static int put_drive(struct api *a, struct call *c) { return vm_spec_drive(&a->spec, c->id, c->body, c->err, sizeof c->err); }
static int put_net(struct api *a, struct call *c) { return vm_spec_net(&a->spec, c->id, c->body, c->err, sizeof c->err); }
static int put_entropy(struct api *a, struct call *c) { return vm_spec_entropy(&a->spec, c->body, c->err, sizeof c->err); }
static int put_balloon(struct api *a, struct call *c) { return vm_spec_balloon(&a->spec, c->body, c->err, sizeof c->err); }
static int put_vsock(struct api *a, struct call *c) { return vm_spec_vsock(&a->spec, c->body, c->err, sizeof c->err); }
static int put_logger(struct api *a, struct call *c) { return api_put_logger(a, c->body, c->err, sizeof c->err); }
static int put_metrics(struct api *a, struct call *c) { return api_put_metrics(a, c->body, c->err, sizeof c->err); }

/* ---- a running VM's devices ---- */

/* A drive backed by another file (its new size reaches the guest) and/or its new limits. */
static int patch_drive(struct api *a, struct call *c) {
    const char *path;
    struct rate_limiter_config limiter;
    int i = vm_spec_drive_patch(&a->spec, c->id, c->body, &path, &limiter, c->err, sizeof c->err);
    if (i < 0) return -1;
    struct vm_spec_drive *d = &a->spec.drives[i];
    struct virtio_dev *vd = machine_device(a->m, d->device);
    if (!vd) return fail(c, "drive %s: gone", c->id);
    char err[300];
    if (path && virtio_blk_replace(vd, path, err, sizeof err) != 0) return fail(c, "drive %s: %s", c->id, err);
    if (path) {
        free(d->path);
        d->path = strdup(path);
    }
    virtio_blk_set_limiter(vd, &limiter);
    d->limiter = limiter;
    return 0;
}

static int patch_net(struct api *a, struct call *c) {
    struct rate_limiter_config rx, tx;
    int i = vm_spec_net_patch(&a->spec, c->id, c->body, &rx, &tx, c->err, sizeof c->err);
    if (i < 0) return -1;
    struct vm_spec_net *n = &a->spec.nets[i];
    struct virtio_dev *vd = machine_device(a->m, n->device);
    if (!vd) return fail(c, "network-interface %s: gone", c->id);
    virtio_net_set_limiters(vd, &rx, &tx);
    n->rx_limiter = rx, n->tx_limiter = tx;
    return 0;
}

static int patch_balloon(struct api *a, struct call *c) {
    struct virtio_dev *vd = balloon_device(a, c);
    if (!vd || vm_spec_balloon_patch(&a->spec, c->body, c->err, sizeof c->err)) return -1;
    virtio_balloon_set_target(vd, (uint32_t)(a->spec.balloon.amount_mib << 8));
    return 0;
}

static int patch_balloon_stats(struct api *a, struct call *c) {
    struct virtio_dev *vd = balloon_device(a, c);
    unsigned before = a->spec.balloon.stats_interval_s;
    if (!vd || vm_spec_balloon_stats_patch(&a->spec, c->body, c->err, sizeof c->err)) return -1;
    if (a->spec.balloon.stats_interval_s == before) return 0; /* as Firecracker: nothing to do */
    if (virtio_balloon_set_stats_interval(vd, a->spec.balloon.stats_interval_s) != 0)
        return fail(c, "balloon/statistics: the device has no statistics");
    return 0;
}

/* ---- MMDS: the store at any time, its configuration before InstanceStart ---- */

#define MMDS_NOT_INITIALIZED "The MMDS data store is not initialized."

/* The store: made by the first request before InstanceStart (as Firecracker's); a running VM
 * has the one made before, or none. */
static struct mmds *mmds_store(struct api *a, struct call *c) {
    struct mmds *m = a->state == NOT_STARTED ? api_mmds(a) : a->mmds;
    if (!m) fail(c, a->state == NOT_STARTED ? "mmds: out of memory" : MMDS_NOT_INITIALIZED);
    return m;
}

static int get_mmds(struct api *a, struct call *c) {
    struct mmds *m = mmds_store(a, c);
    if (!m) return -1;
    c->text = mmds_get(m);
    return c->text ? 0 : fail(c, "mmds: out of memory");
}

/* The store's status (204; 400 or 413 with the reason). */
static int mmds_answer_status(struct call *c, int status) {
    if (status == 204) return 0;
    c->status = status;
    return -1;
}

static int put_mmds(struct api *a, struct call *c) {
    struct mmds *m = mmds_store(a, c);
    if (!m) return -1;
    int rc = mmds_answer_status(c, mmds_put(m, c->r->body, c->r->body_len, c->err, sizeof c->err));
    if (rc == 0) a->mmds_filled = true;
    return rc;
}

static int patch_mmds(struct api *a, struct call *c) {
    struct mmds *m = mmds_store(a, c);
    if (!m) return -1;
    if (!a->mmds_filled) return fail(c, MMDS_NOT_INITIALIZED); /* Firecracker's: a PUT first */
    return mmds_answer_status(c, mmds_patch(m, c->r->body, c->r->body_len, c->err, sizeof c->err));
}

static int put_mmds_config(struct api *a, struct call *c) {
    json_t *version = json_object_get(c->body, "version");
    if (!version || (json_is_string(version) && strcmp(json_string_value(version), "V1") == 0))
        a->spec.deprecation = "PUT /mmds/config: V1 is deprecated. Use V2 instead.";
    return vm_spec_mmds_config(&a->spec, c->body, c->err, sizeof c->err);
}

/* ---- actions and the VM's state ---- */

static int put_actions(struct api *a, struct call *c) {
    const char *action;
    json_error_t je;
    if (json_unpack_ex(c->body, &je, JSON_STRICT, "{s:s}", "action_type", &action))
        return vm_spec_unpack_error("actions", &je, c->err, sizeof c->err);
    if (strcmp(action, "InstanceStart") == 0) {
        if (a->state != NOT_STARTED) return fail(c, NOT_AFTER);
        if (!a->spec.kernel) return fail(c, "InstanceStart: no boot source: PUT /boot-source first");
        a->request_ns = zx_clock_get_monotonic();
        api_request_start(a, c->t, true);
        c->later = true;
        return 0;
    }
    if (strcmp(action, "FlushMetrics") == 0) {
        char err[200];
        return api_flush_metrics(a, err, sizeof err) ? fail(c, "FlushMetrics: %s", err) : 0;
    }
    if (strcmp(action, "SendCtrlAltDel") == 0) {
        if (a->state != RUNNING) return fail(c, NOT_BEFORE);
        machine_ctrl_alt_del(a->m);
        return 0;
    }
    return fail(c, "actions: action_type %s: InstanceStart, FlushMetrics or SendCtrlAltDel", action);
}

static int patch_vm(struct api *a, struct call *c) {
    const char *state;
    json_error_t je;
    if (json_unpack_ex(c->body, &je, JSON_STRICT, "{s:s}", "state", &state))
        return vm_spec_unpack_error("vm", &je, c->err, sizeof c->err);
    bool pause = strcmp(state, "Paused") == 0;
    if (!pause && strcmp(state, "Resumed") != 0) return fail(c, "vm: state %s: Paused or Resumed", state);
    char err[160];
    if (pause && machine_pause(a->m, err, sizeof err) != 0) return fail(c, "vm: %s", err);
    if (!pause) machine_resume(a->m);
    return 0;
}

/* PUT /snapshot/create: a paused VM's state and memory into two files; a Diff's memory file
 * holds only the pages written since the last snapshot (track_dirty_pages). */
static int snapshot_create(struct api *a, struct call *c) {
    const char *type = "Full", *state_path, *mem_path, *version = NULL;
    json_error_t je;
    if (json_unpack_ex(c->body, &je, JSON_STRICT, "{s?:s, s:s, s:s, s?:s}", "snapshot_type", &type, "snapshot_path",
                       &state_path, "mem_file_path", &mem_path, "version", &version))
        return vm_spec_unpack_error("snapshot/create", &je, c->err, sizeof c->err);
    bool diff = strcmp(type, "Diff") == 0;
    if (!diff && strcmp(type, "Full") != 0)
        return fail(c, "snapshot/create: unknown variant `%s`, expected `Full` or `Diff`", type);
    if (!*state_path || !*mem_path) return fail(c, "snapshot/create: empty path");
    json_t *config = vm_spec_to_json(&a->spec);
    char *text = config ? json_dumps(config, JSON_COMPACT) : NULL;
    json_decref(config);
    char err[400];
    int rc = text ? machine_snapshot(a->m, text, state_path, mem_path, diff, err, sizeof err) : -1;
    free(text);
    return rc ? fail(c, "snapshot/create: %s", text ? err : "out of memory") : 0;
}

static int snapshot_load(struct api *a, struct call *c) {
    const char *state_path, *mem_path = NULL, *backend_type = NULL, *backend_path = NULL;
    int diff = -1, track = -1, resume = 0;
    json_t *overrides = NULL;
    json_error_t je;
    if (json_unpack_ex(c->body, &je, JSON_STRICT, "{s:s, s?:s, s?:{s:s, s:s}, s?:b, s?:b, s?:b, s?:o}", "snapshot_path",
                       &state_path, "mem_file_path", &mem_path, "mem_backend", "backend_type", &backend_type,
                       "backend_path", &backend_path, "enable_diff_snapshots", &diff, "track_dirty_pages", &track,
                       "resume_vm", &resume, "network_overrides", &overrides))
        return vm_spec_unpack_error("snapshot/load", &je, c->err, sizeof c->err);
    const char *deprecated = mem_path || diff >= 0 ? "PUT /snapshot/load: mem_file_path and enable_diff_snapshots fields are "
                                                "deprecated." : NULL;
    a->spec.deprecation = deprecated;
    if (backend_type && strcmp(backend_type, "File") != 0 && strcmp(backend_type, "Uffd") != 0)
        return fail(c, "snapshot/load: unknown variant `%s`, expected `File` or `Uffd`", backend_type);
    enum snapshot_backend backend = backend_type && strcmp(backend_type, "Uffd") == 0 ? SNAPSHOT_BACKEND_UFFD
                                                                                      : SNAPSHOT_BACKEND_FILE;
    if (!mem_path && !backend_path) return fail(c, "missing field: either `mem_backend` or `mem_file_path` is required");
    if (mem_path && backend_path)
        return fail(c, "too many fields: either `mem_backend` or `mem_file_path` exclusively is required");
    if (overrides && json_array_size(overrides)) return fail(c, "snapshot/load: network_overrides are not supported");
    char err[400];
    uint64_t t0 = zx_clock_get_monotonic(); /* reading the files is part of the load */
    if (api_load_snapshot(a, state_path, backend, mem_path ? mem_path : backend_path, resume, err, sizeof err) != 0) {
        a->spec.deprecation = deprecated; /* the failed load started the spec afresh */
        return fail(c, "snapshot/load: %s", err);
    }
    /* Either field, as Firecracker takes them, decides whether the restored VM tracks dirty
     * pages; with neither, the snapshot's own machine-config does. */
    if (track >= 0 || diff >= 0) a->spec.track_dirty_pages = track > 0 || diff > 0;
    a->request_ns = t0;
    api_request_start(a, c->t, true);
    c->later = true;
    return 0;
}

/* ---- the table ---- */

static const struct route {
    const char *method, *path; /* a path ending in '/' (but "/") takes an id */
    enum when when;
    route_fn *fn;
    const char *label; /* a static name for --trace-file's timeline */
} routes[] = {
    {"GET", "/", ANY, get_root, "GET /"},
    {"GET", "/version", ANY, get_version, "GET /version"},
    {"GET", "/vm/config", ANY, get_vm_config, "GET /vm/config"},
    {"GET", "/machine-config", ANY, get_machine_config, "GET /machine-config"},
    {"GET", "/balloon", ANY, get_balloon, "GET /balloon"},
    {"GET", "/balloon/statistics", AFTER, get_balloon_stats, "GET /balloon/statistics"},
    {"PUT", "/boot-source", BEFORE, put_boot_source, "PUT /boot-source"},
    {"PUT", "/machine-config", BEFORE, put_machine, "PUT /machine-config"},
    {"PATCH", "/machine-config", BEFORE, patch_machine, "PATCH /machine-config"},
    {"PUT", "/drives/", BEFORE, put_drive, "PUT /drives"},
    {"PATCH", "/drives/", AFTER, patch_drive, "PATCH /drives"},
    {"PUT", "/network-interfaces/", BEFORE, put_net, "PUT /network-interfaces"},
    {"PATCH", "/network-interfaces/", AFTER, patch_net, "PATCH /network-interfaces"},
    {"PUT", "/entropy", BEFORE, put_entropy, "PUT /entropy"},
    {"PUT", "/balloon", BEFORE, put_balloon, "PUT /balloon"},
    {"PATCH", "/balloon", AFTER, patch_balloon, "PATCH /balloon"},
    {"PATCH", "/balloon/statistics", AFTER, patch_balloon_stats, "PATCH /balloon/statistics"},
    {"PUT", "/vsock", BEFORE, put_vsock, "PUT /vsock"},
    {"PUT", "/logger", BEFORE, put_logger, "PUT /logger"},
    {"PUT", "/metrics", BEFORE, put_metrics, "PUT /metrics"},
    {"PUT", "/actions", ANY, put_actions, "PUT /actions"},
    {"PATCH", "/vm", AFTER, patch_vm, "PATCH /vm"},
    {"PUT", "/snapshot/create", AFTER, snapshot_create, "PUT /snapshot/create"},
    {"PUT", "/snapshot/load", BEFORE, snapshot_load, "PUT /snapshot/load"},
    {"GET", "/mmds", ANY, get_mmds, "GET /mmds"},
    {"PUT", "/mmds", ANY, put_mmds, "PUT /mmds"},
    {"PATCH", "/mmds", ANY, patch_mmds, "PATCH /mmds"},
    {"PUT", "/mmds/config", BEFORE, put_mmds_config, "PUT /mmds/config"},
};

/* The route for r (*id: its id, for a route that takes one), or NULL. */
static const struct route *find_route(const struct api_request *r, const char **id) {
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const struct route *rt = &routes[i];
        size_t n = strlen(rt->path);
        bool takes_id = n > 1 && rt->path[n - 1] == '/';
        if (strcmp(r->method, rt->method) != 0) continue;
        if (takes_id ? strncmp(r->path, rt->path, n) == 0 && !strchr(r->path + n, '/') : strcmp(r->path, rt->path) == 0) {
            *id = takes_id ? r->path + n : NULL;
            return rt;
        }
    }
    return NULL;
}

const char *api_route_label(const struct api_request *r) {
    const char *id;
    const struct route *rt = find_route(r, &id);
    return rt ? rt->label : "other request";
}

static void fault_with(struct api *a, struct api_ticket t, int status, const char *headers, const char *msg) {
    json_t *body = json_pack("{s:s}", "fault_message", msg ? msg : "out of memory");
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    api_respond_with(a->server, t, status, text, headers);
    free(text);
    json_decref(body);
}

void api_fault(struct api *a, struct api_ticket t, const char *fmt, ...) {
    char *msg; /* whole, however long: a reason names paths */
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0) msg = NULL;
    va_end(ap);
    fault_with(a, t, 400, NULL, msg);
    free(msg);
}

/* What stands between a request and its route, in Firecracker's order and words. */
static const struct route *admit(struct api *a, struct api_ticket t, const struct api_request *r, const char **id) {
    bool get = strcmp(r->method, "GET") == 0;
    if (get && r->body_len) return api_fault(a, t, "GET request cannot have a body."), NULL;
    if (!get && !r->body_len && (!strcmp(r->method, "PUT") || !strcmp(r->method, "PATCH")))
        return api_fault(a, t, "Empty %s request.", r->method), NULL;
    const struct route *rt = find_route(r, id);
    if (!rt) return api_fault(a, t, "Invalid request method and/or path: %s %s.", r->method, r->path), NULL;
    if (*id && !**id) return api_fault(a, t, "The ID cannot be empty."), NULL;
    if (*id && !vm_spec_valid_id(*id))
        return api_fault(a, t, "API Resource IDs can only contain alphanumeric characters and underscores."), NULL;
    if (rt->when == BEFORE && a->state != NOT_STARTED) return api_fault(a, t, NOT_AFTER), NULL;
    if (rt->when == AFTER && a->state != RUNNING) return api_fault(a, t, NOT_BEFORE), NULL;
    return rt;
}

static json_t *parse_body(struct api *a, struct api_ticket t, const struct api_request *r) {
    json_error_t je;
    json_t *body = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!body) /* Firecracker's (serde's) words, with jansson's reason */
        api_fault(a, t, "%s %s: An error occurred when deserializing the json body of a request: %s%s at line %d column %d.",
                  r->method, r->path, strstr(je.text, "too big integer") ? "invalid type: " : "", je.text, je.line,
                  je.column);
    else if (!json_is_object(body)) api_fault(a, t, "%s %s: the body must be a JSON object", r->method, r->path), json_decref(body), body = NULL;
    return body;
}

/* The answer, with "Deprecation: true" (and the message logged) when the request used a
 * deprecated field, whether it succeeded or not (as Firecracker's). */
static void answer(struct api *a, struct call *c, bool ok) {
    const char *deprecation = a->spec.deprecation;
    a->spec.deprecation = NULL;
    if (ok && c->later) return;
    if (deprecation) fprintf(stderr, "bellhop: warning: %s\n", deprecation);
    const char *headers = deprecation ? "Deprecation: true\r\n" : NULL;
    if (!ok) return fault_with(a, c->t, c->status ? c->status : 400, headers, c->err);
    char *text = c->reply ? json_dumps(c->reply, JSON_COMPACT) : NULL;
    const char *json = c->text ? c->text : text;
    api_respond_with(a->server, c->t, c->reply || c->text ? 200 : 204, json, headers);
    free(text);
}

/* serde says where a missing field was found missing: at the end of its object. For a body
 * of scalars only, the field is the top object's, which ends at the body's last '}'. */
static void place_missing_field(struct call *c, const struct api_request *r) {
    size_t n = strlen(c->err);
    if (!c->body || n < 2 || c->err[n - 1] != '`' || !strstr(c->err, "missing field `")) return;
    const char *k;
    json_t *v;
    json_object_foreach(c->body, k, v) if (json_is_object(v) || json_is_array(v)) return;
    const char *end = memrchr(r->body, '}', r->body_len);
    if (!end) return;
    int line = 1, column = 1;
    for (const char *p = r->body; p < end; p++) p[0] == '\n' ? (line++, column = 1) : column++;
    snprintf(c->err + n, sizeof c->err - n, " at line %d column %d.", line, column);
}

void api_route(struct api *a, struct api_ticket t, const struct api_request *r) {
    struct call c = {.t = t, .r = r};
    const struct route *rt = admit(a, t, r, &c.id);
    if (!rt) return;
    if (strcmp(r->method, "GET") != 0 && !(c.body = parse_body(a, t, r))) return;
    a->spec.deprecation = NULL;
    bool ok = rt->fn(a, &c) == 0;
    if (!ok) place_missing_field(&c, r);
    answer(a, &c, ok);
    a->spec.deprecation = NULL;
    json_decref(c.body);
    json_decref(c.reply);
    free(c.text);
}
