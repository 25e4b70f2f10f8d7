/* The API's routes and the VM's lifecycle under it (vmm/control/api.h). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <lib/async-loop/default.h>
#include <lib/async-loop/loop.h>
#include <lib/async/task.h>
#include <lib/async/time.h>
#include <lib/container_of.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "devices/device.h"
#include "devices/virtio_blk.h"
#include "vmm/control/api.h"
#include "vmm/machine/terminal.h"
#include "vmm/control/version.h"
#include "vmm/control/api_server.h"
#include "vmm/machine/snapshot_file.h"
#include "vmm/observe/timeline.h"
#include "vmm/control/vm_spec.h"

#define METRICS_PERIOD_S 60

enum vm_state { NOT_STARTED, STARTING, RUNNING };

struct api {
    struct api_server *server;
    async_loop_t *preboot; /* the main thread's loop until InstanceStart */
    struct vm_spec spec;
    enum vm_state state;
    bool start_requested, has_ticket;
    struct api_ticket start_ticket; /* InstanceStart's, answered once setup is over */
    struct machine_config base, cfg;
    struct machine_control control;
    struct machine *m; /* RUNNING: the machine, whose loop serves the API */
    async_dispatcher_t *loop;
    int metrics_fd;
    async_task_t metrics_task;
    bool metrics_posted;
    /* PUT /snapshot/load or --restore: the machine comes from this snapshot */
    bool restoring;
    uint64_t request_ns; /* when the request that starts the machine came (--boot-markers count from it) */
    struct snapshot_image image;
    struct machine_restore restore;
};

/* ---- answers ---- */

static void answer_json(struct api *a, struct api_ticket t, int status, json_t *body) {
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    api_respond(a->server, t, status, text);
    free(text);
    json_decref(body);
}

__attribute__((format(printf, 3, 4))) static void fault(struct api *a, struct api_ticket t, const char *fmt, ...) {
    char *msg; /* whole, however long: a reason names paths */
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0) msg = NULL;
    va_end(ap);
    answer_json(a, t, 400, json_pack("{s:s}", "fault_message", msg ? msg : "out of memory"));
    free(msg);
}

static const char *state_name(struct api *a) {
    if (a->state != RUNNING) return "Not started";
    return machine_paused(a->m) ? "Paused" : "Running";
}

/* ---- metrics ---- */

static int flush_metrics(struct api *a, char *err, size_t errlen) {
    if (a->metrics_fd < 0) return snprintf(err, errlen, "no metrics file: PUT /metrics first"), -1;
    if (a->state != RUNNING) return snprintf(err, errlen, "the VM is not running"), -1;
    char line[8192];
    machine_metrics_line(a->m, line, sizeof line - 1);
    size_t n = strlen(line);
    line[n++] = '\n';
    if (write(a->metrics_fd, line, n) != (ssize_t)n)
        return snprintf(err, errlen, "cannot write the metrics file: %s", strerror(errno)), -1;
    return 0;
}

static void on_metrics_period(async_dispatcher_t *d, async_task_t *t, zx_status_t st) {
    struct api *a = container_of(t, struct api, metrics_task);
    a->metrics_posted = false;
    if (st != ZX_OK) return;
    char err[120];
    if (flush_metrics(a, err, sizeof err) != 0) fprintf(stderr, "bellhop: metrics: %s\n", err);
    t->deadline = async_now(d) + ZX_SEC(METRICS_PERIOD_S);
    a->metrics_posted = async_post_task(d, t) == ZX_OK;
}

/* ---- the resources ---- */

static int open_output(const char *what, const char *path, char *err, size_t errlen) {
    /* O_NONBLOCK: a FIFO nobody reads is refused rather than waited for */
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0644);
    if (fd < 0) snprintf(err, errlen, "%s: %s: %s", what, path, strerror(errno));
    return fd;
}

static int put_logger(struct api *a, json_t *body, char *err, size_t errlen) {
    if (vm_spec_logger(&a->spec, body, err, errlen)) return -1;
    if (!a->spec.log_path) return 0;
    int fd = open_output("logger", a->spec.log_path, err, errlen);
    if (fd < 0) return -1;
    /* bellhop's messages are its stderr: from now on they go to the log */
    int r = dup2(fd, STDERR_FILENO);
    close(fd);
    return r < 0 ? (snprintf(err, errlen, "logger: %s", strerror(errno)), -1) : 0;
}

static int put_metrics(struct api *a, json_t *body, char *err, size_t errlen) {
    if (vm_spec_metrics(&a->spec, body, err, errlen)) return -1;
    int fd = open_output("metrics", a->spec.metrics_path, err, errlen);
    if (fd < 0) return -1;
    if (a->metrics_fd >= 0) close(a->metrics_fd);
    a->metrics_fd = fd;
    return 0;
}

static void request_start(struct api *a, struct api_ticket t, bool has_ticket) {
    a->state = STARTING;
    a->start_requested = true;
    a->start_ticket = t;
    a->has_ticket = has_ticket;
    async_loop_quit(a->preboot); /* the main thread sets the machine up */
}

static void put_actions(struct api *a, struct api_ticket t, json_t *body) {
    const char *action;
    json_error_t je;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s:s}", "action_type", &action))
        return fault(a, t, "actions: %s", je.text);
    char err[200];
    if (strcmp(action, "InstanceStart") == 0) {
        if (a->state != NOT_STARTED) return fault(a, t, "InstanceStart: the VM has already started");
        if (!a->spec.kernel) return fault(a, t, "InstanceStart: no boot source: PUT /boot-source first");
        a->request_ns = zx_clock_get_monotonic();
        return request_start(a, t, true);
    }
    if (strcmp(action, "FlushMetrics") == 0) {
        if (flush_metrics(a, err, sizeof err) != 0) return fault(a, t, "FlushMetrics: %s", err);
        return api_respond(a->server, t, 204, NULL);
    }
    if (strcmp(action, "SendCtrlAltDel") == 0) {
        if (a->state != RUNNING) return fault(a, t, "SendCtrlAltDel: the VM is not running");
        machine_ctrl_alt_del(a->m);
        return api_respond(a->server, t, 204, NULL);
    }
    fault(a, t, "actions: action_type %s: InstanceStart, FlushMetrics or SendCtrlAltDel", action);
}

static void patch_vm(struct api *a, struct api_ticket t, json_t *body) {
    const char *state;
    json_error_t je;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s:s}", "state", &state)) return fault(a, t, "vm: %s", je.text);
    if (a->state != RUNNING) return fault(a, t, "vm: the VM is not running");
    bool pause = strcmp(state, "Paused") == 0;
    if (!pause && strcmp(state, "Resumed") != 0) return fault(a, t, "vm: state %s: Paused or Resumed", state);
    char err[160];
    if (pause && machine_pause(a->m, err, sizeof err) != 0) return fault(a, t, "vm: %s", err);
    if (!pause) machine_resume(a->m);
    api_respond(a->server, t, 204, NULL);
}

/* PUT /snapshot/create: a paused VM's state and memory into two files. */
static void snapshot_create(struct api *a, struct api_ticket t, json_t *body) {
    const char *type = "Full", *state_path, *mem_path, *version = NULL;
    json_error_t je;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s?:s, s:s, s:s, s?:s}", "snapshot_type", &type, "snapshot_path",
                       &state_path, "mem_file_path", &mem_path, "version", &version))
        return fault(a, t, "snapshot/create: %s", je.text);
    if (strcmp(type, "Full") != 0) return fault(a, t, "snapshot/create: snapshot_type %s: only Full is supported", type);
    if (!*state_path || !*mem_path) return fault(a, t, "snapshot/create: empty path");
    if (a->state != RUNNING) return fault(a, t, "snapshot/create: the VM is not running");
    json_t *config = vm_spec_to_json(&a->spec);
    char *text = config ? json_dumps(config, JSON_COMPACT) : NULL;
    json_decref(config);
    char err[400];
    int rc = text ? machine_snapshot(a->m, text, state_path, mem_path, err, sizeof err) : -1;
    free(text);
    if (rc != 0) return fault(a, t, "snapshot/create: %s", text ? err : "out of memory");
    api_respond(a->server, t, 204, NULL);
}

/* A fresh VMM's configuration and state from a snapshot (PUT /snapshot/load, --restore). */
static int load_snapshot(struct api *a, const char *state_path, const char *mem_path, bool resume, char *err,
                         size_t errlen) {
    if (a->spec.kernel || a->spec.ndrives || a->spec.nnets || a->restoring)
        return snprintf(err, errlen, "a snapshot loads into a VMM with nothing configured yet"), -1;
    if (snapshot_open(state_path, mem_path, &a->image, err, errlen) != 0) return -1;
    json_error_t je;
    json_t *doc = json_loads(a->image.state.config_json, 0, &je);
    int rc = doc ? vm_spec_document(&a->spec, doc, err, errlen)
                 : (snprintf(err, errlen, "the snapshot's configuration: %s", je.text), -1);
    json_decref(doc);
    if (rc == 0 && a->spec.mem_mib << 20 != a->image.state.mem_size) {
        snprintf(err, errlen, "the snapshot's configuration and memory disagree on the memory size");
        rc = -1;
    }
    if (rc != 0) {
        vm_spec_free(&a->spec);
        vm_spec_init(&a->spec);
        snapshot_close(&a->image);
        return -1;
    }
    a->restore = (struct machine_restore){.state = &a->image.state, .mem_fd = a->image.mem_fd, .paused = !resume};
    a->restoring = true;
    return 0;
}

static void snapshot_load(struct api *a, struct api_ticket t, json_t *body) {
    const char *state_path, *mem_path = NULL, *backend_type = NULL, *backend_path = NULL;
    int diff = 0, resume = 0;
    json_t *overrides = NULL;
    json_error_t je;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s:s, s?:s, s?:{s:s, s:s}, s?:b, s?:b, s?:o}", "snapshot_path",
                       &state_path, "mem_file_path", &mem_path, "mem_backend", "backend_type", &backend_type,
                       "backend_path", &backend_path, "enable_diff_snapshots", &diff, "resume_vm", &resume,
                       "network_overrides", &overrides))
        return fault(a, t, "snapshot/load: %s", je.text);
    if (backend_type && strcmp(backend_type, "File") != 0)
        return fault(a, t, "snapshot/load: backend_type %s: only File is supported", backend_type);
    if (!!mem_path == !!backend_path) return fault(a, t, "snapshot/load: give either mem_backend or mem_file_path");
    if (diff) return fault(a, t, "snapshot/load: diff snapshots are not supported");
    if (overrides && json_array_size(overrides)) return fault(a, t, "snapshot/load: network_overrides are not supported");
    if (a->state != NOT_STARTED) return fault(a, t, "snapshot/load: the VM has already started");
    char err[400];
    uint64_t t0 = zx_clock_get_monotonic(); /* reading the files is part of the load */
    if (load_snapshot(a, state_path, mem_path ? mem_path : backend_path, resume, err, sizeof err) != 0)
        return fault(a, t, "snapshot/load: %s", err);
    a->request_ns = t0;
    request_start(a, t, true);
}

/* A running VM's drive backed by another file (its new size reaches the guest). */
static void patch_drive(struct api *a, struct api_ticket t, const char *id, json_t *body) {
    if (a->state != RUNNING) return fault(a, t, "PATCH /drives/%s: only once the VM runs (PUT it before)", id);
    char err[300];
    const char *path;
    int i = vm_spec_drive_patch(&a->spec, id, body, &path, err, sizeof err);
    if (i < 0) return fault(a, t, "%s", err);
    if (path) {
        struct vm_spec_drive *d = &a->spec.drives[i];
        struct virtio_dev *vd = machine_device(a->m, d->device);
        if (!vd || virtio_blk_replace(vd, path, err, sizeof err) != 0) return fault(a, t, "drive %s: %s", id, vd ? err : "gone");
        free(d->path);
        d->path = strdup(path);
    }
    api_respond(a->server, t, 204, NULL);
}

/* "/drives/rootfs" with prefix "/drives/" -> "rootfs"; NULL when the path is not that. */
static const char *resource_id(const char *path, const char *prefix) {
    size_t n = strlen(prefix);
    if (strncmp(path, prefix, n) != 0 || !path[n] || strchr(path + n, '/')) return NULL;
    return path + n;
}

typedef int preboot_fn(struct api *a, const char *id, json_t *body, char *err, size_t errlen);
static int do_boot_source(struct api *a, const char *id, json_t *b, char *e, size_t n) {
    (void)id;
    return vm_spec_boot_source(&a->spec, b, e, n);
}
static int do_machine_put(struct api *a, const char *id, json_t *b, char *e, size_t n) {
    (void)id;
    return vm_spec_machine_config(&a->spec, b, false, e, n);
}
static int do_machine_patch(struct api *a, const char *id, json_t *b, char *e, size_t n) {
    (void)id;
    return vm_spec_machine_config(&a->spec, b, true, e, n);
}
static int do_drive(struct api *a, const char *id, json_t *b, char *e, size_t n) { return vm_spec_drive(&a->spec, id, b, e, n); }
static int do_net(struct api *a, const char *id, json_t *b, char *e, size_t n) { return vm_spec_net(&a->spec, id, b, e, n); }
static int do_entropy(struct api *a, const char *id, json_t *b, char *e, size_t n) {
    (void)id;
    return vm_spec_entropy(&a->spec, b, e, n);
}
static int do_logger(struct api *a, const char *id, json_t *b, char *e, size_t n) {
    (void)id;
    return put_logger(a, b, e, n);
}
static int do_metrics(struct api *a, const char *id, json_t *b, char *e, size_t n) {
    (void)id;
    return put_metrics(a, b, e, n);
}

/* The resources that exist only before the guest runs. */
static const struct route {
    const char *method, *path; /* path ending in '/': a prefix, the rest is the id */
    preboot_fn *fn;
} preboot_routes[] = {
    {"PUT", "/boot-source", do_boot_source},       {"PUT", "/machine-config", do_machine_put},
    {"PATCH", "/machine-config", do_machine_patch}, {"PUT", "/drives/", do_drive},
    {"PUT", "/network-interfaces/", do_net},        {"PUT", "/entropy", do_entropy},
    {"PUT", "/logger", do_logger},                  {"PUT", "/metrics", do_metrics},
};

static json_t *parse_body(struct api *a, struct api_ticket t, const struct api_request *r) {
    json_error_t je;
    if (!r->body_len) return fault(a, t, "%s %s: the request has no body (JSON expected)", r->method, r->path), NULL;
    json_t *body = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!body) fault(a, t, "%s %s: invalid JSON at line %d, column %d: %s", r->method, r->path, je.line, je.column, je.text);
    else if (!json_is_object(body)) fault(a, t, "%s %s: the body must be a JSON object", r->method, r->path), json_decref(body), body = NULL;
    return body;
}

static void route(struct api *a, struct api_ticket t, const struct api_request *r) {
    bool get = strcmp(r->method, "GET") == 0;
    if (get && strcmp(r->path, "/") == 0)
        return answer_json(a, t, 200, json_pack("{s:s, s:s, s:s, s:s}", "id", "anonymous-instance", "state",
                                                state_name(a), "vmm_version", BELLHOP_VERSION, "app_name", "bellhop"));
    if (get && strcmp(r->path, "/version") == 0)
        return answer_json(a, t, 200, json_pack("{s:s}", "firecracker_version", BELLHOP_VERSION));
    if (get && strcmp(r->path, "/vm/config") == 0) return answer_json(a, t, 200, vm_spec_to_json(&a->spec));
    if (get && strcmp(r->path, "/machine-config") == 0)
        return answer_json(a, t, 200, vm_spec_machine_config_json(&a->spec));
    if (get) return fault(a, t, "GET %s: no such resource", r->path);
    for (size_t i = 0; i < sizeof preboot_routes / sizeof preboot_routes[0]; i++) {
        const struct route *rt = &preboot_routes[i];
        size_t n = strlen(rt->path);
        bool prefix = rt->path[n - 1] == '/';
        const char *id = prefix ? resource_id(r->path, rt->path) : NULL;
        if (strcmp(r->method, rt->method) != 0 || (prefix ? !id : strcmp(r->path, rt->path) != 0)) continue;
        if (a->state != NOT_STARTED)
            return fault(a, t, "%s %s: only before InstanceStart (the VM has started)", r->method, r->path);
        json_t *body = parse_body(a, t, r);
        if (!body) return;
        char err[300];
        int rc = rt->fn(a, id, body, err, sizeof err);
        json_decref(body);
        return rc ? fault(a, t, "%s", err) : api_respond(a->server, t, 204, NULL);
    }
    bool put = strcmp(r->method, "PUT") == 0, patch = strcmp(r->method, "PATCH") == 0;
    if ((put && strcmp(r->path, "/actions") == 0) || (patch && strcmp(r->path, "/vm") == 0)) {
        json_t *body = parse_body(a, t, r);
        if (!body) return;
        put ? put_actions(a, t, body) : patch_vm(a, t, body);
        return json_decref(body);
    }
    bool create = put && strcmp(r->path, "/snapshot/create") == 0, load = put && strcmp(r->path, "/snapshot/load") == 0;
    if (create || load) {
        json_t *body = parse_body(a, t, r);
        if (!body) return;
        create ? snapshot_create(a, t, body) : snapshot_load(a, t, body);
        return json_decref(body);
    }
    const char *drive = patch ? resource_id(r->path, "/drives/") : NULL;
    if (drive) {
        json_t *body = parse_body(a, t, r);
        if (!body) return;
        patch_drive(a, t, drive, body);
        return json_decref(body);
    }
    if (patch && resource_id(r->path, "/network-interfaces/"))
        return fault(a, t, "PATCH %s: a network interface's rate limiters are not supported", r->path);
    fault(a, t, "%s %s: no such resource or method", r->method, r->path);
}

/* What a request is called on the loop's track of a --trace-file timeline: records hold
 * static names only (vmm/observe/timeline.h). */
static const char *request_label(const struct api_request *r) {
    static const char *const known[] = {"GET /", "GET /version", "GET /vm/config", "GET /machine-config",
                                        "PUT /actions", "PATCH /vm", "PUT /snapshot/create", "PUT /snapshot/load",
                                        "PUT /metrics", "PUT /logger"};
    char label[64];
    snprintf(label, sizeof label, "%s %s", r->method, r->path);
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(label, known[i]) == 0) return known[i];
    if (strcmp(r->method, "PATCH") == 0 && resource_id(r->path, "/drives/")) return "PATCH /drives";
    return "other request";
}

static void handle(void *ctx, struct api_server *s, struct api_ticket t, const struct api_request *r) {
    (void)s;
    struct api *a = ctx;
    struct timeline *tl = a->state == RUNNING ? machine_timeline(a->m) : NULL;
    uint64_t t0 = tl ? zx_clock_get_monotonic() : 0;
    route(a, t, r);
    if (tl) { /* a slice within the loop's turn that served it */
        struct timeline_record e = {.ts_ns = t0, .dur_ns = zx_clock_get_monotonic() - t0, .kind = TIMELINE_TURN,
                                    .what = "api", .of = request_label(r)};
        timeline_put(timeline_ring(tl, "loop"), &e);
    }
}

/* ---- the lifecycle ---- */

static void on_attach(struct machine_control *c, struct machine *m, struct async_dispatcher *loop) {
    struct api *a = container_of(c, struct api, control);
    a->m = m;
    a->loop = loop;
    a->state = RUNNING;
    if (a->server) {
        if (api_server_attach(a->server, loop) != 0) fprintf(stderr, "bellhop: the API cannot serve on the VM's loop\n");
        if (a->has_ticket) api_respond(a->server, a->start_ticket, 204, NULL);
    }
    if (a->metrics_fd >= 0) {
        a->metrics_task = (async_task_t){.handler = on_metrics_period, .deadline = async_now(loop) + ZX_SEC(METRICS_PERIOD_S)};
        a->metrics_posted = async_post_task(loop, &a->metrics_task) == ZX_OK;
    }
}

static int load_config_file(struct api *a, const char *path) {
    json_error_t je;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        fprintf(stderr, "bellhop: --config-file %s: line %d, column %d: %s\n", path, je.line, je.column, je.text);
        return -1;
    }
    char err[300];
    int rc = vm_spec_document(&a->spec, doc, err, sizeof err);
    json_t *logger = json_object_get(doc, "logger"), *metrics = json_object_get(doc, "metrics");
    if (!rc && logger) rc = put_logger(a, logger, err, sizeof err);
    if (!rc && metrics) rc = put_metrics(a, metrics, err, sizeof err);
    json_decref(doc);
    if (rc) fprintf(stderr, "bellhop: --config-file %s: %s\n", path, err);
    return rc;
}

/* Signals that end the VMM, which only the main thread takes (its seccomp role may remove
 * the socket; the machine's threads, created with them blocked, inherit that). */
static void block_ending_signals(bool block) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM), sigaddset(&set, SIGINT), sigaddset(&set, SIGHUP), sigaddset(&set, SIGQUIT);
    pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

static void on_started(struct machine_control *c) {
    (void)c;
    block_ending_signals(false);
}

/* One try at the machine: -2 when it could not be set up (said, and answered), else its
 * exit status. */
static int run_machine(struct api *a) {
    char err[300];
    a->cfg = a->base;
    a->cfg.control = &a->control;
    a->cfg.metrics = a->metrics_fd >= 0;
    if (a->restoring) a->cfg.restore = &a->restore;
    if (vm_spec_to_machine(&a->spec, &a->cfg, err, sizeof err) != 0) {
        fprintf(stderr, "bellhop: %s\n", err);
        if (a->has_ticket) fault(a, a->start_ticket, "InstanceStart: %s", err);
        return -2;
    }
    /* --boot-markers count from InstanceStart: the time the API's user waits */
    if (a->has_ticket) a->cfg.start_ns = a->request_ns;
    block_ending_signals(true);
    int status = machine_run(&a->cfg);
    block_ending_signals(false);
    if (a->state == RUNNING) return status;
    if (a->has_ticket) fault(a, a->start_ticket, "%s: %s", a->restoring ? "snapshot/load" : "InstanceStart", machine_last_error());
    if (a->restoring) { /* nothing of it stays: the next load or configuration starts afresh */
        vm_spec_free(&a->spec);
        vm_spec_init(&a->spec);
        snapshot_close(&a->image);
        a->restoring = false;
    }
    return -2;
}

int api_run(const struct machine_config *base, const char *sock, const char *config_file, const char *restore_state,
            const char *restore_mem) {
    struct api *a = calloc(1, sizeof *a);
    if (!a) return fprintf(stderr, "bellhop: out of memory\n"), 1;
    a->base = *base;
    a->metrics_fd = -1;
    a->image.mem_fd = -1;
    a->control.attach = on_attach;
    a->control.started = on_started;
    vm_spec_init(&a->spec);
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-answer is an error from write, not a death */
    int status = 1;
    char err[300];
    if (config_file && load_config_file(a, config_file) != 0) goto out;
    if (restore_state && load_snapshot(a, restore_state, restore_mem, true, err, sizeof err) != 0) {
        fprintf(stderr, "bellhop: --restore: %s\n", err);
        goto out;
    }
    if (sock && !(a->server = api_server_create(sock, handle, a, err, sizeof err))) {
        fprintf(stderr, "bellhop: --api-sock %s\n", err);
        goto out;
    }
    if (a->server) terminal_remove_on_signal(sock);
    if (!sock) { /* the config file or snapshot alone: boot at once */
        status = run_machine(a);
        if (status == -2) status = 1;
        goto out;
    }
    if (async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &a->preboot) != ZX_OK ||
        api_server_attach(a->server, async_loop_get_dispatcher(a->preboot)) != 0) {
        fprintf(stderr, "bellhop: cannot serve the API\n");
        goto out;
    }
    if (config_file || restore_state) request_start(a, (struct api_ticket){0}, false);
    for (;;) {
        if (!a->start_requested) async_loop_run(a->preboot, ZX_TIME_INFINITE, false);
        async_loop_reset_quit(a->preboot);
        a->start_requested = false;
        api_server_detach(a->server);
        status = run_machine(a);
        if (status != -2) break;
        a->state = NOT_STARTED; /* set up failed: configure again */
        if (api_server_attach(a->server, async_loop_get_dispatcher(a->preboot)) != 0) {
            status = 1;
            break;
        }
    }
out:
    if (a->server) api_server_detach(a->server); /* the machine's loop is gone: nothing to cancel */
    api_server_destroy(a->server);
    if (a->preboot) async_loop_destroy(a->preboot);
    if (a->metrics_fd >= 0) close(a->metrics_fd);
    vm_spec_free(&a->spec);
    snapshot_close(&a->image);
    free(a);
    return status;
}
