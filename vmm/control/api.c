/* The VM's lifecycle under the API (vmm/control/api.h); what each request does is in
 * vmm/control/api_routes.c. */
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

#include "vmm/control/api.h"
#include "vmm/control/api_state.h"
#include "vmm/machine/terminal.h"
#include "vmm/observe/timeline.h"

#define METRICS_PERIOD_S 60

/* ---- metrics ---- */

int api_flush_metrics(struct api *a, char *err, size_t errlen) {
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
    if (api_flush_metrics(a, err, sizeof err) != 0) fprintf(stderr, "bellhop: metrics: %s\n", err);
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

int api_put_logger(struct api *a, json_t *body, char *err, size_t errlen) {
    if (vm_spec_logger(&a->spec, body, err, errlen)) return -1;
    if (!a->spec.log_path) return 0;
    int fd = open_output("logger", a->spec.log_path, err, errlen);
    if (fd < 0) return -1;
    /* bellhop's messages are its stderr: from now on they go to the log */
    int r = dup2(fd, STDERR_FILENO);
    close(fd);
    return r < 0 ? (snprintf(err, errlen, "logger: %s", strerror(errno)), -1) : 0;
}

int api_put_metrics(struct api *a, json_t *body, char *err, size_t errlen) {
    if (vm_spec_metrics(&a->spec, body, err, errlen)) return -1;
    int fd = open_output("metrics", a->spec.metrics_path, err, errlen);
    if (fd < 0) return -1;
    if (a->metrics_fd >= 0) close(a->metrics_fd);
    a->metrics_fd = fd;
    return 0;
}

void api_request_start(struct api *a, struct api_ticket t, bool has_ticket) {
    a->state = STARTING;
    a->start_requested = true;
    a->start_ticket = t;
    a->has_ticket = has_ticket;
    async_loop_quit(a->preboot); /* the main thread sets the machine up */
}

/* A fresh VMM's configuration and state from a snapshot (PUT /snapshot/load, --restore). */
int api_load_snapshot(struct api *a, const char *state_path, enum snapshot_backend backend, const char *mem_path,
                      bool resume, char *err, size_t errlen) {
    if (a->spec.kernel || a->spec.ndrives || a->spec.nnets || a->restoring)
        return snprintf(err, errlen, "a snapshot loads into a VMM with nothing configured yet"), -1;
    if (snapshot_open(state_path, backend, mem_path, &a->image, err, errlen) != 0) return -1;
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
    a->restore = (struct machine_restore){
        .state = &a->image.state, .mem_fd = a->image.mem_fd, .uffd_socket = a->image.uffd_socket, .paused = !resume};
    a->restoring = true;
    return 0;
}

struct mmds *api_mmds(struct api *a) {
    if (!a->mmds) a->mmds = mmds_new(a->mmds_limit);
    return a->mmds;
}

/* --metadata: the file's JSON becomes the store, as PUT /mmds would make it. */
static int load_metadata(struct api *a, const char *path) {
    json_error_t je;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) {
        fprintf(stderr, "bellhop: --metadata %s: line %d, column %d: %s\n", path, je.line, je.column, je.text);
        return -1;
    }
    char err[200] = "out of memory";
    int status = api_mmds(a) ? mmds_put(a->mmds, text, strlen(text), err, sizeof err) : 500;
    free(text);
    if (status != 204) return fprintf(stderr, "bellhop: --metadata %s: %s\n", path, err), -1;
    a->mmds_filled = true;
    return 0;
}

static void handle(void *ctx, struct api_server *s, struct api_ticket t, const struct api_request *r) {
    (void)s;
    struct api *a = ctx;
    struct timeline *tl = a->state == RUNNING ? machine_timeline(a->m) : NULL;
    uint64_t t0 = tl ? zx_clock_get_monotonic() : 0;
    api_route(a, t, r);
    if (tl) { /* a slice within the loop's turn that served it */
        struct timeline_record e = {.ts_ns = t0, .dur_ns = zx_clock_get_monotonic() - t0, .kind = TIMELINE_TURN,
                                    .what = "api", .of = api_route_label(r)};
        timeline_put(timeline_ring(tl, "loop"), &e);
    }
}

/* ---- the lifecycle ---- */

static void on_attach(struct machine_control *c, struct machine *m, struct async_dispatcher *loop) {
    struct api *a = container_of(c, struct api, control);
    a->m = m;
    a->loop = loop;
    a->state = RUNNING;
    /* the guest's connections to MMDS wait on the loop beside the devices, API or not */
    if (a->mmds_server) {
        a->mmds_attached = mmds_server_attach(a->mmds_server, loop) == 0;
        if (!a->mmds_attached) fprintf(stderr, "bellhop: MMDS cannot serve on the VM's loop\n");
    }
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
    if (!rc && logger && !json_is_null(logger)) rc = api_put_logger(a, logger, err, sizeof err);
    if (!rc && metrics && !json_is_null(metrics)) rc = api_put_metrics(a, metrics, err, sizeof err);
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

/* With mmds-config: the store as configured, and the server its interfaces' devices connect
 * to, made before them. */
static int start_mmds(struct api *a, char *err, size_t errlen) {
    a->spec.mmds_socket = NULL;
    if (!a->spec.mmds.nifaces) return 0;
    if (!api_mmds(a)) return snprintf(err, errlen, "MMDS: out of memory"), -1;
    mmds_set_version(a->mmds, a->spec.mmds.version);
    mmds_set_imds_compat(a->mmds, a->spec.mmds.imds_compat);
    char why[200];
    if (!(a->mmds_server = mmds_server_create(a->mmds, why, sizeof why))) return snprintf(err, errlen, "%s", why), -1; /* (it says "MMDS: ") */
    a->spec.mmds_socket = mmds_server_path(a->mmds_server);
    /* a Ctrl-C leaves neither its socket nor its private directory behind */
    terminal_remove_on_signal(a->spec.mmds_socket);
    terminal_remove_dir_on_signal(mmds_server_dir(a->mmds_server));
    return 0;
}

/* The machine's loop is gone (or never ran): nothing of the server's is left to cancel. */
static void stop_mmds(struct api *a) {
    if (a->mmds_attached) mmds_server_detach(a->mmds_server);
    mmds_server_destroy(a->mmds_server);
    a->mmds_server = NULL;
    a->mmds_attached = false;
    a->spec.mmds_socket = NULL;
}

/* One try at the machine: -2 when it could not be set up (said, and answered), else its
 * exit status. */
static int run_machine(struct api *a) {
    char err[300];
    a->cfg = a->base;
    a->cfg.control = &a->control;
    a->cfg.metrics = a->metrics_fd >= 0;
    if (a->restoring) a->cfg.restore = &a->restore;
    if (start_mmds(a, err, sizeof err) != 0 || vm_spec_to_machine(&a->spec, &a->cfg, err, sizeof err) != 0) {
        stop_mmds(a);
        fprintf(stderr, "bellhop: %s\n", err);
        if (a->has_ticket) api_fault(a, a->start_ticket, "InstanceStart: %s", err);
        return -2;
    }
    /* --boot-markers count from InstanceStart: the time the API's user waits */
    if (a->has_ticket) a->cfg.start_ns = a->request_ns;
    a->cfg.prepared_vm = a->prepared_vm; /* machine_run's now, whatever happens */
    a->prepared_vm = ZX_HANDLE_INVALID;
    block_ending_signals(true);
    int status = machine_run(&a->cfg);
    block_ending_signals(false);
    stop_mmds(a);
    if (a->state == RUNNING) return status;
    if (a->has_ticket) api_fault(a, a->start_ticket, "%s: %s", a->restoring ? "snapshot/load" : "InstanceStart", machine_last_error());
    if (a->restoring) { /* nothing of it stays: the next load or configuration starts afresh */
        vm_spec_free(&a->spec);
        vm_spec_init(&a->spec);
        snapshot_close(&a->image);
        a->restoring = false;
    }
    return -2;
}

int api_run(const struct machine_config *base, const char *sock, const char *config_file, const char *restore_state,
            enum snapshot_backend restore_backend, const char *restore_mem, const struct api_mmds_options *mmds) {
    struct api *a = calloc(1, sizeof *a);
    if (!a) return fprintf(stderr, "bellhop: out of memory\n"), 1;
    a->base = *base;
    a->mmds_limit = mmds ? mmds->limit : 0;
    a->metrics_fd = -1;
    a->image.mem_fd = -1;
    a->control.attach = on_attach;
    a->control.started = on_started;
    vm_spec_init(&a->spec);
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-answer is an error from write, not a death */
    int status = 1;
    char err[300];
    if (config_file && load_config_file(a, config_file) != 0) goto out;
    if (mmds && mmds->metadata && load_metadata(a, mmds->metadata) != 0) goto out;
    if (restore_state && api_load_snapshot(a, restore_state, restore_backend, restore_mem, true, err, sizeof err) != 0) {
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
    if (config_file || restore_state) api_request_start(a, (struct api_ticket){0}, false);
    for (;;) {
        if (!a->start_requested && a->prepared_vm == ZX_HANDLE_INVALID) a->prepared_vm = machine_prepare_vm();
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
    if (a->prepared_vm != ZX_HANDLE_INVALID) zx_handle_close(a->prepared_vm);
    if (a->metrics_fd >= 0) close(a->metrics_fd);
    vm_spec_free(&a->spec);
    snapshot_close(&a->image);
    if (a->mmds) mmds_free(a->mmds);
    free(a);
    return status;
}
