/* The API's state, shared by its lifecycle (vmm/control/api.c: the preboot loop, the machine's
 * start and end, metrics) and its routes (vmm/control/api_routes.c: what each request does).
 * Private to vmm/control/. */
#ifndef BELLHOP_VMM_CONTROL_API_STATE_H
#define BELLHOP_VMM_CONTROL_API_STATE_H

#include <lib/async-loop/loop.h>
#include <lib/async/task.h>

#include "net/mmds.h"
#include "vmm/control/api_server.h"
#include "vmm/control/mmds_server.h"
#include "vmm/control/vm_spec.h"
#include "vmm/machine/machine.h"
#include "vmm/machine/snapshot_file.h"

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
    zx_handle_t prepared_vm; /* made while waiting for the first request (machine_prepare_vm) */
    /* Firecracker's MMDS: the store (NULL until a request, --metadata or mmds-config needs it),
     * whether a PUT filled it (PATCH needs one first, as Firecracker's), its size limit; and,
     * while a machine with mmds-config runs, the server its guest's connections reach */
    struct mmds *mmds;
    bool mmds_filled;
    size_t mmds_limit;
    struct mmds_server *mmds_server;
    bool mmds_attached;
};

/* The routes (api_routes.c): one request, answered now or, for what starts the machine, once
 * it is set up. */
void api_route(struct api *a, struct api_ticket t, const struct api_request *r);
/* The request's route's static name ("PUT /drives"), or "other request". */
const char *api_route_label(const struct api_request *r);
/* A 400 with Firecracker's {"fault_message": ...}. */
__attribute__((format(printf, 3, 4))) void api_fault(struct api *a, struct api_ticket t, const char *fmt, ...);

/* The lifecycle's, for the routes (api.c). */
/* The MMDS store, made now if there is none (NULL when out of memory). */
struct mmds *api_mmds(struct api *a);
void api_request_start(struct api *a, struct api_ticket t, bool has_ticket);
int api_flush_metrics(struct api *a, char *err, size_t errlen);
int api_put_logger(struct api *a, json_t *body, char *err, size_t errlen);
int api_put_metrics(struct api *a, json_t *body, char *err, size_t errlen);
/* A fresh VMM's configuration and state from a snapshot (PUT /snapshot/load, --restore);
 * mem_path: the memory file, or the Uffd backend's socket. */
int api_load_snapshot(struct api *a, const char *state_path, enum snapshot_backend backend, const char *mem_path,
                      bool resume, char *err, size_t errlen);

#endif
