/* A VM's configuration as Firecracker's users write it: the resources of its API (boot-source,
 * machine-config, drives, network-interfaces, entropy, logger, metrics) and the config file
 * that holds them all (docs/api.md). The API's PUTs and PATCHes and --config-file fill one
 * struct vm_spec through the same parsers, so a field means the same thing either way; the
 * spec then becomes a machine_config.
 *
 * Every parser takes the request's JSON and either changes the spec or leaves it as it was and
 * says why in err (unknown fields, wrong types, values out of range are all refused). */
#ifndef BELLHOP_VMM_CONTROL_VM_SPEC_H
#define BELLHOP_VMM_CONTROL_VM_SPEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/rate_limiter.h"
#include "devices/virtio_balloon.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_net.h"
#include "devices/virtio_rng.h"
#include "devices/virtio_vhost_user.h"
#include "devices/virtio_vsock.h"
#include "net/mmds.h"
#include "vmm/machine/machine.h"

#define VM_SPEC_MAX_DRIVES 4
#define VM_SPEC_MAX_NETS 4
#define VM_SPEC_MAX_DEVICES 8

struct vm_spec_drive {
    char *id, *path;
    char *socket; /* a vhost-user-blk backend's, in path's place (Firecracker's vhost-user drives) */
    bool read_only, root;
    enum blk_io_engine engine; /* io_engine: absent (auto), Async or Sync */
    bool direct;     /* bellhop's: O_DIRECT, the host's page cache bypassed */
    unsigned queues; /* bellhop's: request queues (0: one per vCPU) */
    struct rate_limiter_config limiter; /* all zero: none */
    unsigned device; /* its index in the machine's devices (vm_spec_to_machine) */
};

struct vm_spec_net {
    char *id, *host_dev_name; /* host_dev_name: a tap; NULL for bellhop's own backends */
    /* the config's extension field: "user[,hostfwd=...]", "passt[,ARG...]" or "stream=PATH";
     * NULL for a tap */
    char *bellhop_net;
    bool has_mac;
    uint8_t mac[6];
    struct rate_limiter_config rx_limiter, tx_limiter;
    unsigned device;
};

/* PUT /balloon's: a target in MiB, deflate on OOM, statistics every interval (0: none). */
struct vm_spec_balloon {
    bool set;
    uint64_t amount_mib;
    bool deflate_on_oom;
    unsigned stats_interval_s;
    unsigned device;
};

struct vm_spec_vsock {
    char *uds_path; /* NULL: no vsock */
    uint64_t guest_cid;
};

/* PUT /mmds/config's (the document's "mmds-config"): the interfaces on which the guest reaches
 * MMDS at addr (host order), with its version and imds_compat; nifaces 0: no MMDS. */
struct vm_spec_mmds {
    char *ifaces[VM_SPEC_MAX_NETS];
    unsigned nifaces;
    enum mmds_version version;
    uint32_t addr;
    bool imds_compat;
};

struct vm_spec {
    char *kernel, *boot_args, *initrd; /* kernel NULL: no boot-source yet */
    /* boot-source's extension fields, --module's and --exit-device's words for multiboot
     * kernels (docs/other-kernels.md) */
    struct machine_module modules[MACHINE_MAX_MODULES]; /* the spec's own copies */
    unsigned nmodules;
    bool exit_qemu;
    unsigned vcpus;
    uint64_t mem_mib;
    bool smt, track_dirty_pages;
    struct vm_spec_drive drives[VM_SPEC_MAX_DRIVES];
    unsigned ndrives;
    struct vm_spec_net nets[VM_SPEC_MAX_NETS];
    unsigned nnets;
    bool entropy;
    struct rate_limiter_config entropy_limiter;
    struct vm_spec_balloon balloon;
    struct vm_spec_vsock vsock;
    /* bellhop's own (the document's "bellhop" object): a vhost-user-fs shared directory
     * (socket NULL: none), and virtio devices by name, without parameters */
    char *fs_socket, *fs_tag;
    char *devices[VM_SPEC_MAX_DEVICES];
    unsigned ndevices;
    char *log_path, *log_level;
    bool log_show_level, log_show_origin;
    char *metrics_path;
    struct vm_spec_mmds mmds;
    /* the MMDS server's socket, which the MMDS interfaces' devices connect to; set by the
     * caller before vm_spec_to_machine when mmds.nifaces (NULL: MMDS stays off) */
    const char *mmds_socket;
    /* what a machine_config built from this points into (vm_spec_to_machine) */
    struct virtio_blk_params blk[VM_SPEC_MAX_DRIVES];
    struct vhost_user_params vhost[VM_SPEC_MAX_DRIVES];
    struct virtio_net_params net[VM_SPEC_MAX_NETS];
    struct virtio_rng_params rng;
    struct virtio_balloon_params balloon_params;
    struct virtio_vsock_params vsock_params;
    struct vhost_user_params fs;
    char *cmdline;
    /* Set by a parser that met one of Firecracker's deprecated fields: the message its answer's
     * "Deprecation: true" header stands for (the API logs it and clears this). */
    const char *deprecation;
};

void vm_spec_init(struct vm_spec *s);
void vm_spec_free(struct vm_spec *s);

int vm_spec_boot_source(struct vm_spec *s, json_t *body, char *err, size_t errlen);
/* PUT replaces the machine configuration (absent fields take their defaults); PATCH changes
 * only the fields it names. */
int vm_spec_machine_config(struct vm_spec *s, json_t *body, bool patch, char *err, size_t errlen);
/* id: the URL's (NULL in a config file: the body's drive_id names it). */
int vm_spec_drive(struct vm_spec *s, const char *id, json_t *body, char *err, size_t errlen);
int vm_spec_net(struct vm_spec *s, const char *id, json_t *body, char *err, size_t errlen);
/* PATCH /drives/{id} of a running VM: the drive's index (*path: its new file, NULL for none;
 * *limiter: its rate limiter with the request's changes) or -1 with the reason. The spec is
 * not changed: the caller records what the device took. */
int vm_spec_drive_patch(struct vm_spec *s, const char *id, json_t *body, const char **path,
                        struct rate_limiter_config *limiter, char *err, size_t errlen);
/* PATCH /network-interfaces/{id} of a running VM, the same way: its rate limiters. */
int vm_spec_net_patch(struct vm_spec *s, const char *id, json_t *body, struct rate_limiter_config *rx,
                      struct rate_limiter_config *tx, char *err, size_t errlen);
int vm_spec_entropy(struct vm_spec *s, json_t *body, char *err, size_t errlen);
/* PUT /balloon; PATCH /balloon (its amount_mib) and PATCH /balloon/statistics (its interval:
 * statistics cannot be turned on or off once the device exists), which change the spec only. */
int vm_spec_balloon(struct vm_spec *s, json_t *body, char *err, size_t errlen);
int vm_spec_balloon_patch(struct vm_spec *s, json_t *body, char *err, size_t errlen);
int vm_spec_balloon_stats_patch(struct vm_spec *s, json_t *body, char *err, size_t errlen);
/* GET /balloon's object (null without a balloon); a new reference. */
json_t *vm_spec_balloon_json(const struct vm_spec *s);
int vm_spec_vsock(struct vm_spec *s, json_t *body, char *err, size_t errlen);
/* A rate limiter (vmm/control/vm_spec_limits.c): v null or absent is none (a PATCH: no change);
 * a PATCH changes only the buckets it names. */
int vm_spec_rate_limiter(const char *what, json_t *v, bool patch, struct rate_limiter_config *inout, char *err,
                         size_t errlen);
/* null when it limits nothing; a new reference. */
json_t *vm_spec_rate_limiter_json(const struct rate_limiter_config *c);
/* jansson's reason for a refused unpack, in the words Firecracker's clients look for. */
int vm_spec_unpack_error(const char *what, const json_error_t *je, char *err, size_t errlen);
/* A resource id as Firecracker takes it: letters, digits and underscores, not empty. */
bool vm_spec_valid_id(const char *id);
int vm_spec_logger(struct vm_spec *s, json_t *body, char *err, size_t errlen);
int vm_spec_metrics(struct vm_spec *s, json_t *body, char *err, size_t errlen);
/* PUT /mmds/config: {"version": "V1" | "V2", "network_interfaces": [ID...] (each already an
 * interface), "ipv4_address": a link-local address (169.254.1.0 to 169.254.254.255), "imds_compat"}. */
int vm_spec_mmds_config(struct vm_spec *s, json_t *body, char *err, size_t errlen);
/* The document's "mmds-config" (null without MMDS); a new reference. */
json_t *vm_spec_mmds_json(const struct vm_spec *s);
/* bellhop's extensions, a document's "bellhop" object (docs/api.md): {"shared_dir": {"socket",
 * "tag"}, "devices": [NAME...]}. */
int vm_spec_bellhop(struct vm_spec *s, json_t *body, char *err, size_t errlen);
/* A whole config file's document. */
int vm_spec_document(struct vm_spec *s, json_t *doc, char *err, size_t errlen);
/* A drive as the config file writes it; a new reference. */
json_t *vm_spec_drive_json(const struct vm_spec_drive *d);
/* The document's "bellhop" object; NULL when there is nothing to say. A new reference. */
/* boot-source's document (as GET /vm/config shows it), from the flags or the spec alike:
 * bellhop_modules and bellhop_exit_device only when there are modules or QEMU's exit device. */
json_t *vm_spec_boot_source_json(const char *kernel, const char *boot_args, const char *initrd,
                                 const struct machine_module *modules, unsigned nmodules, bool exit_qemu);
json_t *vm_spec_bellhop_json(const char *fs_socket, const char *fs_tag, const char *const *devices, unsigned ndevices);
/* The config file that describes s (GET /vm/config); a new reference. */
json_t *vm_spec_to_json(const struct vm_spec *s);
json_t *vm_spec_machine_config_json(const struct vm_spec *s);
/* Fills cfg's kernel, initrd, command line, memory, CPUs and devices (pointing into s, which
 * must outlive the machine), the devices after any cfg has (a virtio console): the drives
 * (the root device first), network interfaces (MMDS on those mmds names, with mmds_socket),
 * entropy, the balloon, vsock, the shared directory, the named devices. 0, or -1 with the
 * reason (no boot source, too many devices, MMDS without its socket). */
int vm_spec_to_machine(struct vm_spec *s, struct machine_config *cfg, char *err, size_t errlen);

#endif
