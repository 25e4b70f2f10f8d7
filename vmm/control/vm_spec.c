/* The resources of Firecracker's API and config file, parsed with jansson's strict unpacking:
 * an unknown field, a field of the wrong type or a missing required one is refused with
 * jansson's own words ("1 object item(s) left unpacked: foo", "Expected integer, got string"). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/virtio_devices.h"
#include "base/error_text.h"
#include "net/passt.h"
#include "net/user.h"
#include "vmm/control/vm_spec.h"

#define DEFAULT_MEM_MIB 128

int vm_spec_unpack_error(const char *what, const json_error_t *je, char *err, size_t errlen) {
    /* jansson says "1 object item(s) left unpacked: foo, bar"; Firecracker's clients look for
     * serde's "unknown field `foo`" */
    static const char missing[] = "Object item not found: ";
    if (strncmp(je->text, missing, sizeof missing - 1) == 0)
        return error_text(err, errlen, "%s: missing field `%s`", what, je->text + sizeof missing - 1);
    const char *left = strstr(je->text, "left unpacked: ");
    if (!left) return error_text(err, errlen, "%s: %s", what, je->text);
    left += strlen("left unpacked: ");
    int n = (int)strcspn(left, ",");
    return error_text(err, errlen, "%s: unknown field `%.*s`", what, n, left);
}

static int unpack_failed(const char *what, const json_error_t *je, char *err, size_t errlen) {
    return vm_spec_unpack_error(what, je, err, errlen);
}

bool vm_spec_valid_id(const char *id) {
    if (!*id) return false;
    for (const char *c = id; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_') return false;
    return true;
}

/* A field that may be a string, null or absent (NULL for the last two). */
static int nullable_string(const char *what, json_t *v, const char **out, char *err, size_t errlen) {
    *out = NULL;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return error_text(err, errlen, "%s: expected a string or null", what);
    *out = json_string_value(v);
    return 0;
}

/* A file the VM will read: refused now (as Firecracker does) rather than at InstanceStart. */
static int check_file(const char *what, const char *path, char *err, size_t errlen) {
    struct stat st;
    if (stat(path, &st) != 0) return error_text(err, errlen, "%s %s: %s", what, path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return error_text(err, errlen, "%s %s: not a regular file", what, path);
    return 0;
}

/* Replaces *slot with a copy of v (NULL stays NULL). */
static void set_str(char **slot, const char *v) {
    free(*slot);
    *slot = v ? strdup(v) : NULL;
}

void vm_spec_init(struct vm_spec *s) {
    memset(s, 0, sizeof *s);
    s->vcpus = 1;
    s->mem_mib = DEFAULT_MEM_MIB;
}

static void free_modules(struct vm_spec *s) {
    for (unsigned i = 0; i < s->nmodules; i++) free((char *)s->modules[i].path), free((char *)s->modules[i].args);
    s->nmodules = 0;
}

void vm_spec_free(struct vm_spec *s) {
    free(s->kernel), free(s->boot_args), free(s->initrd), free(s->cmdline);
    free_modules(s);
    for (unsigned i = 0; i < s->ndrives; i++) free(s->drives[i].id), free(s->drives[i].path), free(s->drives[i].socket);
    for (unsigned i = 0; i < s->nnets; i++) free(s->nets[i].id), free(s->nets[i].host_dev_name), free(s->nets[i].bellhop_net);
    free(s->log_path), free(s->log_level), free(s->metrics_path);
    free(s->fs_socket), free(s->fs_tag);
    for (unsigned i = 0; i < s->ndevices; i++) free(s->devices[i]);
    free(s->vsock.uds_path);
    for (unsigned i = 0; i < s->mmds.nifaces; i++) free(s->mmds.ifaces[i]);
    vm_spec_init(s);
}

/* bellhop_modules: [{"path": FILE, "args": TEXT or null}, ...], each file checked; into
 * out (n of them), or -1 and why. */
static int parse_modules(json_t *v, struct machine_module *out, unsigned *n, char *err, size_t errlen) {
    *n = 0;
    if (!json_is_array(v)) return error_text(err, errlen, "boot-source: bellhop_modules: expected an array");
    if (json_array_size(v) > MACHINE_MAX_MODULES)
        return error_text(err, errlen, "boot-source: bellhop_modules: at most %d modules", MACHINE_MAX_MODULES);
    size_t i;
    json_t *m;
    json_array_foreach(v, i, m) {
        const char *path, *args;
        json_t *args_v = NULL;
        json_error_t je;
        if (json_unpack_ex(m, &je, JSON_STRICT, "{s:s, s?:o}", "path", &path, "args", &args_v))
            return unpack_failed("boot-source: bellhop_modules", &je, err, errlen);
        if (nullable_string("boot-source: bellhop_modules: args", args_v, &args, err, errlen)) return -1;
        if (!*path) return error_text(err, errlen, "boot-source: bellhop_modules: module %zu: empty path", i);
        if (check_file("boot-source: bellhop_modules: module", path, err, errlen)) return -1;
        out[i] = (struct machine_module){path, args && *args ? args : NULL};
        (*n)++;
    }
    return 0;
}

int vm_spec_boot_source(struct vm_spec *s, json_t *body, char *err, size_t errlen) {
    const char *kernel, *args, *initrd, *exit_device;
    json_t *args_v = NULL, *initrd_v = NULL, *modules_v = NULL, *exit_v = NULL;
    json_error_t je;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s:s, s?:o, s?:o, s?:o, s?:o}", "kernel_image_path", &kernel,
                       "boot_args", &args_v, "initrd_path", &initrd_v, "bellhop_modules", &modules_v,
                       "bellhop_exit_device", &exit_v))
        return unpack_failed("boot-source", &je, err, errlen);
    if (nullable_string("boot-source: boot_args", args_v, &args, err, errlen) ||
        nullable_string("boot-source: initrd_path", initrd_v, &initrd, err, errlen) ||
        nullable_string("boot-source: bellhop_exit_device", exit_v, &exit_device, err, errlen))
        return -1;
    if (!*kernel) return error_text(err, errlen, "boot-source: kernel_image_path is empty");
    if (access(kernel, R_OK) != 0) /* in the words Firecracker's clients match */
        return error_text(err, errlen, "boot-source: The kernel file cannot be opened: %s (os error %d): %s",
                          strerror(errno), errno, kernel);
    if (check_file("boot-source: kernel_image_path", kernel, err, errlen) ||
        (initrd && *initrd && check_file("boot-source: initrd_path", initrd, err, errlen)))
        return -1;
    if (exit_device && strcmp(exit_device, "qemu") != 0 && strcmp(exit_device, "bellhop") != 0)
        return error_text(err, errlen, "boot-source: bellhop_exit_device %s: qemu or bellhop", exit_device);
    struct machine_module modules[MACHINE_MAX_MODULES]; /* pointing into body until copied */
    unsigned nmodules = 0;
    if (modules_v && !json_is_null(modules_v) && parse_modules(modules_v, modules, &nmodules, err, errlen) != 0)
        return -1;
    set_str(&s->kernel, kernel);
    set_str(&s->boot_args, args);
    set_str(&s->initrd, initrd && *initrd ? initrd : NULL);
    free_modules(s);
    for (unsigned i = 0; i < nmodules; i++)
        s->modules[i] = (struct machine_module){strdup(modules[i].path), modules[i].args ? strdup(modules[i].args) : NULL};
    s->nmodules = nmodules;
    s->exit_qemu = exit_device && strcmp(exit_device, "qemu") == 0;
    return 0;
}

int vm_spec_machine_config(struct vm_spec *s, json_t *body, bool patch, char *err, size_t errlen) {
    json_int_t vcpus = patch ? (json_int_t)s->vcpus : -1, mem = patch ? (json_int_t)s->mem_mib : -1;
    int smt = patch ? s->smt : 0, dirty = patch ? s->track_dirty_pages : 0;
    const char *tmpl = NULL, *huge = NULL;
    json_error_t je;
    if (patch && json_object_size(body) == 0) return error_text(err, errlen, "Empty PATCH request.");
    const char *fmt = patch ? "{s?:I, s?:I, s?:b, s?:b, s?:s, s?:s}" : "{s:I, s:I, s?:b, s?:b, s?:s, s?:s}";
    if (json_unpack_ex(body, &je, JSON_STRICT, fmt, "vcpu_count", &vcpus, "mem_size_mib", &mem, "smt", &smt,
                       "track_dirty_pages", &dirty, "cpu_template", &tmpl, "huge_pages", &huge))
        return unpack_failed("machine-config", &je, err, errlen);
    if (vcpus < 1 || vcpus > MACHINE_MAX_CPUS)
        return error_text(err, errlen, "machine-config: vcpu_count %lld: must be 1 to %d", (long long)vcpus, MACHINE_MAX_CPUS);
    if (smt && vcpus > 1 && vcpus % 2)
        return error_text(err, errlen, "machine-config: vcpu_count %lld: with smt, 1 or an even number", (long long)vcpus);
    if (mem == 0)
        return error_text(err, errlen, "machine-config: The memory size (MiB) is either 0, or not a multiple of the "
                                       "configured page size.");
    if (mem < (json_int_t)(MACHINE_MIN_MEM >> 20) || mem > (json_int_t)(MACHINE_MAX_MEM >> 20))
        return error_text(err, errlen, "machine-config: mem_size_mib %lld: must be %llu to %llu", (long long)mem,
                      MACHINE_MIN_MEM >> 20, MACHINE_MAX_MEM >> 20);
    if (tmpl && strcmp(tmpl, "None") != 0)
        return error_text(err, errlen, "machine-config: cpu_template %s: only None (the host's CPUID, as KVM gives it)", tmpl);
    if (huge && strcmp(huge, "None") != 0)
        return error_text(err, errlen, "machine-config: huge_pages %s: only None (guest RAM uses transparent huge pages "
                      "where the host allows)", huge);
    s->vcpus = (unsigned)vcpus;
    s->mem_mib = (uint64_t)mem;
    s->smt = smt, s->track_dirty_pages = dirty;
    if (tmpl) s->deprecation = patch ? "PATCH /machine-config: cpu_template field is deprecated."
                                     : "PUT /machine-config: cpu_template field is deprecated.";
    return 0;
}

/* A drive's optional fields, each a string or null (GET /vm/config writes null for unset). */
struct drive_fields {
    const char *path, *socket, *partuuid, *cache, *engine;
};

static int drive_strings(json_t *v[5], struct drive_fields *f, char *err, size_t errlen) {
    return nullable_string("drive: path_on_host", v[0], &f->path, err, errlen) ||
           nullable_string("drive: socket", v[1], &f->socket, err, errlen) ||
           nullable_string("drive: partuuid", v[2], &f->partuuid, err, errlen) ||
           nullable_string("drive: cache_type", v[3], &f->cache, err, errlen) ||
           nullable_string("drive: io_engine", v[4], &f->engine, err, errlen) ? -1 : 0;
}

static int check_drive(const char *id, const struct drive_fields *f, bool ro, bool direct, json_int_t queues, char *err,
                       size_t errlen) {
    if (!f->path == !f->socket) return error_text(err, errlen, "drive %s: either path_on_host or socket (vhost-user)", id);
    if (!*(f->path ? f->path : f->socket)) return error_text(err, errlen, "drive %s: path_on_host must not be empty", id);
    if (f->socket && ro) return error_text(err, errlen, "drive %s: a vhost-user drive is read-only as its backend says", id);
    if (f->path && check_file("drive: path_on_host", f->path, err, errlen)) return -1;
    if (f->partuuid) return error_text(err, errlen, "drive %s: partuuid: the root device is always /dev/vda", id);
    if (f->cache && strcmp(f->cache, "Unsafe") != 0 && strcmp(f->cache, "Writeback") != 0)
        return error_text(err, errlen, "drive %s: cache_type %s: Unsafe or Writeback", id, f->cache);
    if (f->engine && strcmp(f->engine, "Sync") != 0 && strcmp(f->engine, "Async") != 0)
        return error_text(err, errlen, "drive %s: io_engine %s: Async (io_uring) or Sync", id, f->engine);
    if (f->engine && f->socket) return error_text(err, errlen, "drive %s: io_engine: a vhost-user drive's I/O is its backend's", id);
    if (queues < 0 || queues > VIRTIO_MAX_QUEUES)
        return error_text(err, errlen, "drive %s: queues %lld: 1 to %d", id, (long long)queues, VIRTIO_MAX_QUEUES);
    if (f->socket && (direct || queues)) return error_text(err, errlen, "drive %s: direct and queues: a vhost-user drive's are its backend's", id);
    return 0;
}

/* The slot for drive id: its own, or a new one (-1 with the reason when it cannot be). */
static int drive_slot(struct vm_spec *s, const char *id, bool root, char *err, size_t errlen) {
    unsigned i = 0;
    while (i < s->ndrives && strcmp(s->drives[i].id, id) != 0) i++;
    for (unsigned j = 0; root && j < s->ndrives; j++)
        if (j != i && s->drives[j].root)
            return error_text(err, errlen, "drive %s: A root block device already exists (drive %s)", id, s->drives[j].id);
    if (i == s->ndrives && s->ndrives == VM_SPEC_MAX_DRIVES)
        return error_text(err, errlen, "drive %s: at most %d drives", id, VM_SPEC_MAX_DRIVES);
    return (int)i;
}

int vm_spec_drive(struct vm_spec *s, const char *id, json_t *body, char *err, size_t errlen) {
    const char *drive_id;
    int root, direct = 0;
    json_t *v[5] = {0}, *ro_v = NULL, *limiter = NULL, *ext = NULL;
    json_int_t queues = 0;
    json_error_t je;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s:s, s?:o, s?:o, s:b, s?:o, s?:o, s?:o, s?:o, s?:o, s?:o}", "drive_id",
                       &drive_id, "path_on_host", &v[0], "socket", &v[1], "is_root_device", &root, "is_read_only",
                       &ro_v, "partuuid", &v[2], "cache_type", &v[3], "io_engine", &v[4], "rate_limiter", &limiter,
                       "bellhop", &ext))
        return unpack_failed("drive", &je, err, errlen);
    if (ext && json_unpack_ex(ext, &je, JSON_STRICT, "{s?:b, s?:I}", "direct", &direct, "queues", &queues))
        return unpack_failed("drive: bellhop", &je, err, errlen);
    if (ro_v && !json_is_null(ro_v) && !json_is_boolean(ro_v))
        return error_text(err, errlen, "drive: is_read_only: expected a boolean or null");
    bool ro = json_is_true(ro_v);
    struct drive_fields f;
    if (drive_strings(v, &f, err, errlen)) return -1;
    if (id && strcmp(id, drive_id) != 0)
        return error_text(err, errlen, "drive: drive_id %s differs from the path's %s", drive_id, id);
    if (!vm_spec_valid_id(drive_id))
        return error_text(err, errlen, "drive: drive_id %s: only letters, digits and underscores", drive_id);
    if (check_drive(drive_id, &f, ro, direct, queues, err, errlen)) return -1;
    struct rate_limiter_config limits = {0};
    if (vm_spec_rate_limiter("drive: rate_limiter", limiter, false, &limits, err, errlen)) return -1;
    if (f.socket && rate_limiter_limits(&limits))
        return error_text(err, errlen, "drive %s: rate_limiter: a vhost-user drive's I/O is its backend's", drive_id);
    int i = drive_slot(s, drive_id, root, err, errlen);
    if (i < 0) return -1;
    if ((unsigned)i == s->ndrives) s->ndrives++;
    struct vm_spec_drive *d = &s->drives[i];
    set_str(&d->id, drive_id);
    free(d->path), free(d->socket);
    d->path = d->socket = NULL;
    set_str(f.path ? &d->path : &d->socket, f.path ? f.path : f.socket);
    d->read_only = ro, d->root = root;
    d->engine = !f.engine ? BLK_IO_AUTO : strcmp(f.engine, "Sync") == 0 ? BLK_IO_SYNC : BLK_IO_ASYNC;
    d->direct = direct, d->queues = (unsigned)queues;
    d->limiter = limits;
    return 0;
}

int vm_spec_drive_patch(struct vm_spec *s, const char *id, json_t *body, const char **path,
                        struct rate_limiter_config *limiter, char *err, size_t errlen) {
    const char *drive_id;
    json_t *limiter_v = NULL;
    json_error_t je;
    *path = NULL;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s:s, s?:s, s?:o}", "drive_id", &drive_id, "path_on_host", path,
                       "rate_limiter", &limiter_v))
        return unpack_failed("drive", &je, err, errlen);
    if (strcmp(id, drive_id) != 0) return error_text(err, errlen, "drive: drive_id %s differs from the path's %s", drive_id, id);
    for (unsigned i = 0; i < s->ndrives; i++) {
        if (strcmp(s->drives[i].id, id) != 0) continue;
        /* Firecracker's words for both: a virtio-blk PATCH must change something, a vhost-user
         * drive's file and I/O are its backend's */
        if (s->drives[i].socket || (!*path && !limiter_v))
            return error_text(err, errlen, "drive %s: Running method expected different backend.", id);
        *limiter = s->drives[i].limiter;
        if (vm_spec_rate_limiter("drive: rate_limiter", limiter_v, true, limiter, err, errlen)) return -1;
        return (int)i; /* the new file is checked as it is opened (a running VM's seccomp role has no stat) */
    }
    return error_text(err, errlen, "drive %s: no such drive", id);
}

/* "06:00:AC:10:00:02" */
static bool parse_mac(const char *text, uint8_t mac[6]) {
    unsigned v[6];
    char tail;
    if (sscanf(text, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6 ||
        strlen(text) != 17)
        return false;
    for (int i = 0; i < 6; i++) mac[i] = (uint8_t)v[i];
    return !(mac[0] & 1); /* a unicast address */
}

/* The text after `word` in bellhop_net's text when it names that backend ("user", "user,..."),
 * else NULL. */
static const char *backend_opts(const char *text, const char *word) {
    size_t n = strlen(word);
    return strncmp(text, word, n) == 0 && (!text[n] || text[n] == ',') ? text + n : NULL;
}

/* bellhop_net's "user[,OPTIONS]", "passt[,ARG...]" or "stream=PATH" checked (bellhop-net and
 * passt take the text itself). */
static int parse_bellhop_net(const char *iface, const char *text, char *err, size_t errlen) {
    char why[200];
    struct net_user_config user;
    struct sockaddr_un un;
    const char *user_opts = backend_opts(text, "user"), *passt_args = backend_opts(text, "passt");
    int rc = 0;
    if (user_opts) rc = net_user_parse(user_opts, &user, why, sizeof why);
    else if (passt_args) rc = net_passt_parse(passt_args, why, sizeof why);
    else if (strncmp(text, "stream=", 7) == 0 && text[7])
        rc = strlen(text + 7) < sizeof un.sun_path ? 0
             : error_text(why, sizeof why, "stream=PATH: a Unix socket's path is at most %zu bytes", sizeof un.sun_path - 1);
    else
        return error_text(err, errlen, "network-interface %s: bellhop_net %s: expected user[,hostfwd=...][,restrict=on], "
                          "passt[,ARG...] or stream=PATH", iface, text);
    return rc != 0 ? error_text(err, errlen, "network-interface %s: bellhop_net: %s", iface, why) : 0;
}

int vm_spec_net(struct vm_spec *s, const char *id, json_t *body, char *err, size_t errlen) {
    const char *iface, *dev = NULL, *mac_text, *own = NULL;
    json_t *rx = NULL, *tx = NULL, *mac_v = NULL, *mtu = NULL;
    json_error_t je;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s:s, s?:s, s?:s, s?:o, s?:o, s?:o, s?:o}", "iface_id", &iface,
                       "host_dev_name", &dev, "bellhop_net", &own, "guest_mac", &mac_v, "rx_rate_limiter", &rx,
                       "tx_rate_limiter", &tx, "mtu", &mtu))
        return unpack_failed("network-interface", &je, err, errlen);
    if (!dev && !own) return error_text(err, errlen, "missing field `host_dev_name`");
    if (dev && own)
        return error_text(err, errlen, "network-interface %s: host_dev_name (a tap) and bellhop_net (bellhop's own "
                          "network) exclude each other", iface);
    if (own && parse_bellhop_net(iface, own, err, errlen) != 0) return -1;
    if (nullable_string("network-interface: guest_mac", mac_v, &mac_text, err, errlen)) return -1;
    if (id && strcmp(id, iface) != 0)
        return error_text(err, errlen, "network-interface: iface_id %s differs from the path's %s", iface, id);
    if (!vm_spec_valid_id(iface))
        return error_text(err, errlen, "network-interface: iface_id %s: only letters, digits and underscores", iface);
    if (dev && !*dev) return error_text(err, errlen, "network-interface %s: host_dev_name must not be empty", iface);
    if (mtu && !json_is_null(mtu)) return error_text(err, errlen, "network-interface %s: mtu: not supported", iface);
    struct rate_limiter_config rx_limits, tx_limits;
    if (vm_spec_rate_limiter("network-interface: rx_rate_limiter", rx, false, &rx_limits, err, errlen) ||
        vm_spec_rate_limiter("network-interface: tx_rate_limiter", tx, false, &tx_limits, err, errlen))
        return -1;
    uint8_t mac[6];
    if (mac_text && !parse_mac(mac_text, mac))
        return error_text(err, errlen, "network-interface %s: guest_mac %s: not a unicast MAC address (xx:xx:xx:xx:xx:xx)",
                      iface, mac_text);
    unsigned i = 0;
    while (i < s->nnets && strcmp(s->nets[i].id, iface) != 0) i++;
    for (unsigned j = 0; j < s->nnets; j++) { /* Firecracker's words for both */
        if (j == i) continue;
        if (mac_text && s->nets[j].has_mac && memcmp(s->nets[j].mac, mac, 6) == 0)
            return error_text(err, errlen, "network-interface %s: The MAC address is already in use: %s", iface, mac_text);
        if (dev && s->nets[j].host_dev_name && strcmp(s->nets[j].host_dev_name, dev) == 0)
            return error_text(err, errlen, "network-interface %s: Could not create the network device: the tap %s is "
                              "interface %s's", iface, dev, s->nets[j].id);
    }
    if (i == s->nnets) {
        if (s->nnets == VM_SPEC_MAX_NETS)
            return error_text(err, errlen, "network-interface %s: at most %d network interfaces", iface, VM_SPEC_MAX_NETS);
        s->nnets++;
    }
    struct vm_spec_net *n = &s->nets[i];
    set_str(&n->id, iface);
    set_str(&n->host_dev_name, dev);
    set_str(&n->bellhop_net, own);
    n->has_mac = mac_text != NULL;
    if (mac_text) memcpy(n->mac, mac, 6);
    n->rx_limiter = rx_limits, n->tx_limiter = tx_limits;
    return 0;
}

int vm_spec_net_patch(struct vm_spec *s, const char *id, json_t *body, struct rate_limiter_config *rx,
                      struct rate_limiter_config *tx, char *err, size_t errlen) {
    const char *iface;
    json_t *rx_v = NULL, *tx_v = NULL;
    json_error_t je;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s:s, s?:o, s?:o}", "iface_id", &iface, "rx_rate_limiter", &rx_v,
                       "tx_rate_limiter", &tx_v))
        return unpack_failed("network-interface", &je, err, errlen);
    if (strcmp(id, iface) != 0)
        return error_text(err, errlen, "network-interface: iface_id %s differs from the path's %s", iface, id);
    for (unsigned i = 0; i < s->nnets; i++) {
        if (strcmp(s->nets[i].id, id) != 0) continue;
        *rx = s->nets[i].rx_limiter, *tx = s->nets[i].tx_limiter;
        if (vm_spec_rate_limiter("network-interface: rx_rate_limiter", rx_v, true, rx, err, errlen) ||
            vm_spec_rate_limiter("network-interface: tx_rate_limiter", tx_v, true, tx, err, errlen))
            return -1;
        return (int)i;
    }
    return error_text(err, errlen, "network-interface %s: no such interface", id);
}

int vm_spec_entropy(struct vm_spec *s, json_t *body, char *err, size_t errlen) {
    json_t *limiter = NULL;
    json_error_t je;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s?:o}", "rate_limiter", &limiter))
        return unpack_failed("entropy", &je, err, errlen);
    struct rate_limiter_config limits;
    if (vm_spec_rate_limiter("entropy: rate_limiter", limiter, false, &limits, err, errlen)) return -1;
    s->entropy = true;
    s->entropy_limiter = limits;
    return 0;
}

/* PUT /balloon: the target may not exceed guest RAM (checked again as the machine is made, in
 * case machine-config changes after). */
int vm_spec_balloon(struct vm_spec *s, json_t *body, char *err, size_t errlen) {
    json_int_t amount, interval = 0;
    int deflate, hinting = 0, reporting = 0;
    json_error_t je;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s:I, s:b, s?:I, s?:b, s?:b}", "amount_mib", &amount, "deflate_on_oom",
                       &deflate, "stats_polling_interval_s", &interval, "free_page_hinting", &hinting,
                       "free_page_reporting", &reporting))
        return unpack_failed("balloon", &je, err, errlen);
    if (amount < 0 || (uint64_t)amount > s->mem_mib)
        return error_text(err, errlen, "balloon: amount_mib %lld: at most the guest's memory, %llu MiB", (long long)amount,
                          (unsigned long long)s->mem_mib);
    if (interval < 0 || interval > UINT16_MAX) /* Firecracker's is a u16 */
        return error_text(err, errlen, "balloon: stats_polling_interval_s %lld: 0 to %u", (long long)interval, UINT16_MAX);
    if (hinting || reporting) return error_text(err, errlen, "balloon: free page hinting and reporting: not supported");
    s->balloon = (struct vm_spec_balloon){.set = true, .amount_mib = (uint64_t)amount, .deflate_on_oom = deflate,
                                          .stats_interval_s = (unsigned)interval};
    return 0;
}

int vm_spec_balloon_patch(struct vm_spec *s, json_t *body, char *err, size_t errlen) {
    json_int_t amount;
    json_error_t je;
    if (!s->balloon.set) return error_text(err, errlen, "balloon: no balloon device: PUT /balloon before InstanceStart");
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s:I}", "amount_mib", &amount)) return unpack_failed("balloon", &je, err, errlen);
    if (amount < 0 || (uint64_t)amount > s->mem_mib)
        return error_text(err, errlen, "balloon: amount_mib %lld: at most the guest's memory, %llu MiB", (long long)amount,
                          (unsigned long long)s->mem_mib);
    s->balloon.amount_mib = (uint64_t)amount;
    return 0;
}

int vm_spec_balloon_stats_patch(struct vm_spec *s, json_t *body, char *err, size_t errlen) {
    json_int_t interval;
    json_error_t je;
    if (!s->balloon.set) return error_text(err, errlen, "balloon: no balloon device: PUT /balloon before InstanceStart");
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s:I}", "stats_polling_interval_s", &interval))
        return unpack_failed("balloon/statistics", &je, err, errlen);
    if (interval < 0 || interval > UINT16_MAX)
        return error_text(err, errlen, "balloon/statistics: stats_polling_interval_s %lld: 0 to %u", (long long)interval, UINT16_MAX);
    /* as Firecracker: statistics cannot be turned on or off once the device exists */
    if (!s->balloon.stats_interval_s != !interval)
        return error_text(err, errlen, "balloon/statistics: statistics were %s when the device was configured: only their "
                          "interval can change", s->balloon.stats_interval_s ? "on" : "off");
    s->balloon.stats_interval_s = (unsigned)interval;
    return 0;
}

int vm_spec_vsock(struct vm_spec *s, json_t *body, char *err, size_t errlen) {
    json_int_t cid;
    const char *path, *id = NULL;
    json_error_t je;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s:I, s:s, s?:s}", "guest_cid", &cid, "uds_path", &path, "vsock_id", &id))
        return unpack_failed("vsock", &je, err, errlen);
    if (cid < VIRTIO_VSOCK_MIN_CID || (uint64_t)cid > VIRTIO_VSOCK_MAX_CID)
        return error_text(err, errlen, "vsock: guest_cid %lld: %d to %llu", (long long)cid, VIRTIO_VSOCK_MIN_CID,
                          VIRTIO_VSOCK_MAX_CID);
    if (!*path) return error_text(err, errlen, "vsock: uds_path is empty");
    set_str(&s->vsock.uds_path, path);
    s->vsock.guest_cid = (uint64_t)cid;
    if (id) s->deprecation = "PUT /vsock: vsock_id field is deprecated.";
    return 0;
}

int vm_spec_logger(struct vm_spec *s, json_t *body, char *err, size_t errlen) {
    static const char *const levels[] = {"Off", "Error", "Warning", "Info", "Debug", "Trace"};
    const char *path = NULL, *level = NULL, *module = NULL;
    int show_level = 0, show_origin = 0;
    json_error_t je;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s?:s, s?:s, s?:b, s?:b, s?:s}", "log_path", &path, "level", &level,
                       "show_level", &show_level, "show_log_origin", &show_origin, "module", &module))
        return unpack_failed("logger", &je, err, errlen);
    if (path && !*path) return error_text(err, errlen, "logger: log_path is empty");
    bool known = !level;
    for (unsigned i = 0; level && i < sizeof levels / sizeof levels[0]; i++) known |= strcasecmp(level, levels[i]) == 0;
    if (!known) return error_text(err, errlen, "logger: level %s: Off, Error, Warning, Info, Debug or Trace", level);
    if (module) return error_text(err, errlen, "logger: module: bellhop has one module");
    set_str(&s->log_path, path);
    set_str(&s->log_level, level);
    s->log_show_level = show_level, s->log_show_origin = show_origin;
    return 0;
}

int vm_spec_metrics(struct vm_spec *s, json_t *body, char *err, size_t errlen) {
    const char *path;
    json_error_t je;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s:s}", "metrics_path", &path))
        return unpack_failed("metrics", &je, err, errlen);
    if (!*path) return error_text(err, errlen, "metrics: metrics_path is empty");
    set_str(&s->metrics_path, path);
    return 0;
}

int vm_spec_bellhop(struct vm_spec *s, json_t *body, char *err, size_t errlen) {
    const char *socket = NULL, *tag = NULL;
    json_t *devices = NULL;
    json_error_t je;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s?:{s:s, s:s}, s?:o}", "shared_dir", "socket", &socket, "tag", &tag,
                       "devices", &devices))
        return unpack_failed("bellhop", &je, err, errlen);
    if (socket && (!*socket || !*tag)) return error_text(err, errlen, "bellhop: shared_dir: socket and tag must not be empty");
    if (devices && !json_is_array(devices)) return error_text(err, errlen, "bellhop: devices: expected an array of names");
    size_t n = devices ? json_array_size(devices) : 0;
    if (n > VM_SPEC_MAX_DEVICES) return error_text(err, errlen, "bellhop: devices: at most %d", VM_SPEC_MAX_DEVICES);
    for (size_t i = 0; i < n; i++) {
        const char *name = json_string_value(json_array_get(devices, i));
        if (!name) return error_text(err, errlen, "bellhop: devices: expected an array of names");
        if (!virtio_device_find(name)) return error_text(err, errlen, "bellhop: devices: %s: no such device", name);
    }
    set_str(&s->fs_socket, socket);
    set_str(&s->fs_tag, socket ? tag : NULL);
    for (unsigned i = 0; i < s->ndevices; i++) free(s->devices[i]);
    s->ndevices = 0;
    for (size_t i = 0; i < n; i++) s->devices[s->ndevices++] = strdup(json_string_value(json_array_get(devices, i)));
    return 0;
}

static bool has_net(const struct vm_spec *s, const char *id) {
    for (unsigned i = 0; i < s->nnets; i++)
        if (strcmp(s->nets[i].id, id) == 0) return true;
    return false;
}

/* Firecracker's rule, which also keeps bellhop's /16 around the address (its network and
 * broadcast addresses) out of reach. */
static bool link_local(uint32_t addr) {
    uint32_t third = addr >> 8 & 0xff;
    return addr >> 16 == 0xa9fe && third != 0 && third != 255;
}

static int mmds_address(json_t *v, uint32_t *addr, char *err, size_t errlen) {
    const char *text;
    struct in_addr in;
    *addr = MMDS_DEFAULT_ADDR;
    if (nullable_string("mmds-config: ipv4_address", v, &text, err, errlen)) return -1;
    if (!text) return 0;
    if (inet_pton(AF_INET, text, &in) != 1)
        return error_text(err, errlen, "mmds-config: ipv4_address %s: invalid IPv4 address syntax", text);
    *addr = ntohl(in.s_addr);
    if (!link_local(*addr)) /* Firecracker's words */
        return error_text(err, errlen, "mmds-config: The MMDS IPv4 address is not link local: %s", text);
    return 0;
}

/* network_interfaces: each an interface already, once each (a name twice counts once). */
static int mmds_ifaces(const struct vm_spec *s, json_t *list, const char *ids[VM_SPEC_MAX_NETS], unsigned *n, char *err,
                       size_t errlen) {
    if (!json_is_array(list)) return error_text(err, errlen, "mmds-config: network_interfaces: expected an array of ids");
    if (!json_array_size(list)) /* Firecracker's words, here and below */
        return error_text(err, errlen, "mmds-config: The list of network interface IDs that allow forwarding MMDS "
                          "requests is empty.");
    size_t i;
    json_t *v;
    *n = 0;
    json_array_foreach(list, i, v) {
        const char *id = json_string_value(v);
        if (!id) return error_text(err, errlen, "mmds-config: network_interfaces: expected an array of ids");
        if (!has_net(s, id))
            return error_text(err, errlen, "mmds-config: The list of network interface IDs provided contains at least "
                              "one ID that does not correspond to any existing network interface: %s", id);
        bool seen = false;
        for (unsigned j = 0; j < *n; j++) seen |= strcmp(ids[j], id) == 0;
        if (!seen) ids[(*n)++] = id; /* at most one a network interface: no overflow */
    }
    return 0;
}

int vm_spec_mmds_config(struct vm_spec *s, json_t *body, char *err, size_t errlen) {
    const char *version = "V1";
    json_t *list, *addr_v = NULL;
    int compat = 0;
    json_error_t je;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s?:s, s:o, s?:o, s?:b}", "version", &version, "network_interfaces",
                       &list, "ipv4_address", &addr_v, "imds_compat", &compat))
        return unpack_failed("mmds-config", &je, err, errlen);
    if (strcmp(version, "V1") != 0 && strcmp(version, "V2") != 0)
        return error_text(err, errlen, "mmds-config: unknown variant `%s`, expected `V1` or `V2`", version);
    uint32_t addr;
    const char *ids[VM_SPEC_MAX_NETS];
    unsigned n = 0;
    if (mmds_address(addr_v, &addr, err, errlen) || mmds_ifaces(s, list, ids, &n, err, errlen)) return -1;
    char *copies[VM_SPEC_MAX_NETS];
    bool oom = false;
    for (unsigned i = 0; i < n; i++) oom |= !(copies[i] = strdup(ids[i]));
    if (oom) {
        for (unsigned i = 0; i < n; i++) free(copies[i]);
        return error_text(err, errlen, "mmds-config: out of memory");
    }
    for (unsigned i = 0; i < s->mmds.nifaces; i++) free(s->mmds.ifaces[i]);
    s->mmds = (struct vm_spec_mmds){.nifaces = n, .version = version[1] == '2' ? MMDS_V2 : MMDS_V1, .addr = addr,
                                    .imds_compat = compat};
    memcpy(s->mmds.ifaces, copies, n * sizeof copies[0]);
    return 0;
}

json_t *vm_spec_mmds_json(const struct vm_spec *s) {
    if (!s->mmds.nifaces) return json_null();
    json_t *ids = json_array();
    for (unsigned i = 0; i < s->mmds.nifaces; i++) json_array_append_new(ids, json_string(s->mmds.ifaces[i]));
    struct in_addr in = {htonl(s->mmds.addr)};
    char addr[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &in, addr, sizeof addr);
    return json_pack("{s:s, s:o, s:s, s:b}", "version", s->mmds.version == MMDS_V2 ? "V2" : "V1", "network_interfaces",
                     ids, "ipv4_address", addr, "imds_compat", s->mmds.imds_compat);
}

typedef int each_fn(struct vm_spec *s, const char *id, json_t *body, char *err, size_t errlen);

static int each(struct vm_spec *s, json_t *arr, const char *what, each_fn *fn, char *err, size_t errlen) {
    if (!json_is_array(arr)) return error_text(err, errlen, "%s: expected an array", what);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (fn(s, NULL, v, err, errlen)) return -1;
    return 0;
}

static bool given(json_t *v) { return v && !json_is_null(v); }

int vm_spec_document(struct vm_spec *s, json_t *doc, char *err, size_t errlen) {
    json_t *boot = NULL, *machine = NULL, *drives = NULL, *nets = NULL, *entropy = NULL, *logger = NULL, *metrics = NULL;
    json_t *balloon = NULL, *vsock = NULL, *ext = NULL, *mmds = NULL;
    json_error_t je;
    if (json_unpack_ex(doc, &je, JSON_STRICT, "{s:o, s?:o, s?:o, s?:o, s?:o, s?:o, s?:o, s?:o, s?:o, s?:o, s?:o}",
                       "boot-source", &boot, "machine-config", &machine, "drives", &drives, "network-interfaces", &nets,
                       "entropy", &entropy, "logger", &logger, "metrics", &metrics, "balloon", &balloon, "vsock",
                       &vsock, "bellhop", &ext, "mmds-config", &mmds))
        return unpack_failed("config file", &je, err, errlen);
    if (vm_spec_boot_source(s, boot, err, errlen)) return -1;
    if (given(machine) && vm_spec_machine_config(s, machine, false, err, errlen)) return -1;
    if (given(drives) && each(s, drives, "drives", vm_spec_drive, err, errlen)) return -1;
    if (given(nets) && each(s, nets, "network-interfaces", vm_spec_net, err, errlen)) return -1;
    if (given(entropy) && vm_spec_entropy(s, entropy, err, errlen)) return -1;
    if (given(logger) && vm_spec_logger(s, logger, err, errlen)) return -1;
    if (given(metrics) && vm_spec_metrics(s, metrics, err, errlen)) return -1;
    if (given(balloon) && vm_spec_balloon(s, balloon, err, errlen)) return -1;
    if (given(vsock) && vm_spec_vsock(s, vsock, err, errlen)) return -1;
    if (given(ext) && vm_spec_bellhop(s, ext, err, errlen)) return -1;
    if (given(mmds) && vm_spec_mmds_config(s, mmds, err, errlen)) return -1; /* after the interfaces it names */
    return 0;
}

json_t *vm_spec_machine_config_json(const struct vm_spec *s) {
    return json_pack("{s:I, s:I, s:b, s:b, s:s}", "vcpu_count", (json_int_t)s->vcpus, "mem_size_mib",
                     (json_int_t)s->mem_mib, "smt", s->smt, "track_dirty_pages", s->track_dirty_pages, "huge_pages",
                     "None");
}

/* As Firecracker writes a drive in GET /vm/config: every field, null where unset. */
json_t *vm_spec_drive_json(const struct vm_spec_drive *d) {
    const char *engine = d->socket || d->engine == BLK_IO_AUTO ? NULL : d->engine == BLK_IO_SYNC ? "Sync" : "Async";
    json_t *j = json_pack("{s:s, s:n, s:b, s:s, s:o, s:s?, s:o, s:s?, s:s?}", "drive_id", d->id, "partuuid",
                          "is_root_device", d->root, "cache_type", "Unsafe", "is_read_only",
                          d->socket ? json_null() : json_boolean(d->read_only), "path_on_host", d->path,
                          "rate_limiter", vm_spec_rate_limiter_json(&d->limiter), "io_engine", engine, "socket",
                          d->socket);
    if (!j) return NULL;
    if (d->direct || d->queues) {
        json_t *ext = json_object();
        if (d->direct) json_object_set_new(ext, "direct", json_true());
        if (d->queues) json_object_set_new(ext, "queues", json_integer(d->queues));
        json_object_set_new(j, "bellhop", ext);
    }
    return j;
}

json_t *vm_spec_bellhop_json(const char *fs_socket, const char *fs_tag, const char *const *devices, unsigned ndevices) {
    if (!fs_socket && !ndevices) return NULL;
    json_t *ext = json_object();
    if (fs_socket) json_object_set_new(ext, "shared_dir", json_pack("{s:s, s:s}", "socket", fs_socket, "tag", fs_tag));
    if (ndevices) {
        json_t *names = json_array();
        for (unsigned i = 0; i < ndevices; i++) json_array_append_new(names, json_string(devices[i]));
        json_object_set_new(ext, "devices", names);
    }
    return ext;
}

static json_t *net_json(const struct vm_spec_net *n) {
    char mac[18];
    const uint8_t *m = n->mac;
    snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    json_t *j = json_pack("{s:s, s:s*, s:s?, s:n, s:o, s:o}", "iface_id", n->id, "host_dev_name", n->host_dev_name,
                          "guest_mac", n->has_mac ? mac : NULL, "mtu", "rx_rate_limiter",
                          vm_spec_rate_limiter_json(&n->rx_limiter), "tx_rate_limiter",
                          vm_spec_rate_limiter_json(&n->tx_limiter));
    if (j && n->bellhop_net) json_object_set_new(j, "bellhop_net", json_string(n->bellhop_net));
    return j;
}

json_t *vm_spec_balloon_json(const struct vm_spec *s) {
    if (!s->balloon.set) return json_null();
    return json_pack("{s:I, s:b, s:I, s:b, s:b}", "amount_mib", (json_int_t)s->balloon.amount_mib, "deflate_on_oom",
                     s->balloon.deflate_on_oom, "stats_polling_interval_s", (json_int_t)s->balloon.stats_interval_s,
                     "free_page_hinting", 0, "free_page_reporting", 0);
}

json_t *vm_spec_boot_source_json(const char *kernel, const char *boot_args, const char *initrd,
                                 const struct machine_module *modules, unsigned nmodules, bool exit_qemu) {
    json_t *boot = json_pack("{s:s, s:s?, s:s?}", "kernel_image_path", kernel, "boot_args", boot_args, "initrd_path",
                             initrd);
    if (boot && nmodules) {
        json_t *list = json_array();
        for (unsigned i = 0; i < nmodules; i++)
            json_array_append_new(list, json_pack("{s:s, s:s?}", "path", modules[i].path, "args", modules[i].args));
        json_object_set_new(boot, "bellhop_modules", list);
    }
    if (boot && exit_qemu) json_object_set_new(boot, "bellhop_exit_device", json_string("qemu"));
    return boot;
}

/* Firecracker's document: every resource it knows, null where there is none. */
json_t *vm_spec_to_json(const struct vm_spec *s) {
    json_t *doc = json_object(), *drives = json_array(), *nets = json_array();
    if (s->kernel)
        json_object_set_new(doc, "boot-source", vm_spec_boot_source_json(s->kernel, s->boot_args, s->initrd, s->modules,
                                                                         s->nmodules, s->exit_qemu));
    json_object_set_new(doc, "machine-config", vm_spec_machine_config_json(s));
    for (unsigned i = 0; i < s->ndrives; i++) json_array_append_new(drives, vm_spec_drive_json(&s->drives[i]));
    json_object_set_new(doc, "drives", drives);
    for (unsigned i = 0; i < s->nnets; i++) json_array_append_new(nets, net_json(&s->nets[i]));
    json_object_set_new(doc, "network-interfaces", nets);
    json_object_set_new(doc, "entropy", s->entropy ? json_pack("{s:o}", "rate_limiter",
                                                               vm_spec_rate_limiter_json(&s->entropy_limiter))
                                                   : json_null());
    json_object_set_new(doc, "balloon", vm_spec_balloon_json(s));
    json_object_set_new(doc, "vsock", s->vsock.uds_path ? json_pack("{s:I, s:s}", "guest_cid", (json_int_t)s->vsock.guest_cid,
                                                                   "uds_path", s->vsock.uds_path)
                                                        : json_null());
    json_object_set_new(doc, "logger", s->log_path || s->log_level
                                           ? json_pack("{s:s?, s:s?, s:b, s:b}", "log_path", s->log_path, "level",
                                                       s->log_level, "show_level", s->log_show_level,
                                                       "show_log_origin", s->log_show_origin)
                                           : json_null());
    json_object_set_new(doc, "metrics", s->metrics_path ? json_pack("{s:s}", "metrics_path", s->metrics_path) : json_null());
    json_object_set_new(doc, "mmds-config", vm_spec_mmds_json(s));
    json_t *ext = vm_spec_bellhop_json(s->fs_socket, s->fs_tag, (const char *const *)s->devices, s->ndevices);
    if (ext) json_object_set_new(doc, "bellhop", ext);
    return doc;
}

/* After the devices the command line gave (a virtio console). false when there is no room. */
static bool add(struct machine_config *cfg, const char *name, const void *params) {
    if (cfg->ndevices == MACHINE_MAX_DEVICES) return false;
    cfg->devices[cfg->ndevices++] = (struct machine_device){virtio_device_find(name), params};
    return true;
}

static bool mmds_on(const struct vm_spec *s, const char *iface) {
    for (unsigned i = 0; i < s->mmds.nifaces; i++)
        if (strcmp(s->mmds.ifaces[i], iface) == 0) return true;
    return false;
}

static int too_many(char *err, size_t errlen) {
    return error_text(err, errlen, "at most %d virtio devices in all", MACHINE_MAX_DEVICES);
}

int vm_spec_to_machine(struct vm_spec *s, struct machine_config *cfg, char *err, size_t errlen) {
    if (!s->kernel) return error_text(err, errlen, "no boot source: PUT /boot-source with a kernel_image_path first");
    cfg->kernel = s->kernel;
    cfg->initrd = s->initrd;
    memcpy(cfg->modules, s->modules, s->nmodules * sizeof s->modules[0]); /* pointing into the spec */
    cfg->nmodules = s->nmodules;
    cfg->exit_qemu |= s->exit_qemu; /* or --exit-device's, for a restored machine */
    cfg->cpus = s->vcpus;
    cfg->smt = s->smt;
    cfg->track_dirty = s->track_dirty_pages;
    cfg->mem = s->mem_mib << 20;
    /* As Firecracker does: the root device is the first disk, and the kernel is told so. */
    const struct vm_spec_drive *root = NULL;
    for (unsigned i = 0; i < s->ndrives; i++)
        if (s->drives[i].root) root = &s->drives[i];
    free(s->cmdline);
    if (asprintf(&s->cmdline, "%s%s%s", s->boot_args ? s->boot_args : "",
                 root ? (s->boot_args && *s->boot_args ? " root=/dev/vda" : "root=/dev/vda") : "",
                 root ? (root->read_only ? " ro" : " rw") : "") < 0)
        return error_text(err, errlen, "out of memory");
    cfg->cmdline = s->cmdline;
    unsigned n = 0;
    for (int pass = 0; pass < 2; pass++) /* the root device first */
        for (unsigned i = 0; i < s->ndrives; i++) {
            if (s->drives[i].root != (pass == 0)) continue;
            s->drives[i].device = cfg->ndevices;
            if (s->drives[i].socket) {
                s->vhost[n] = (struct vhost_user_params){.socket = s->drives[i].socket};
                if (!add(cfg, "vhost-user-blk", &s->vhost[n++])) return too_many(err, errlen);
                continue;
            }
            const struct vm_spec_drive *d = &s->drives[i];
            s->blk[n] = (struct virtio_blk_params){.path = d->path, .read_only = d->read_only, .direct = d->direct,
                                                   .engine = d->engine,
                                                   .queues = d->queues ? d->queues : virtio_blk_queues(s->vcpus),
                                                   .limiter = d->limiter};
            if (!add(cfg, "virtio-blk", &s->blk[n++])) return too_many(err, errlen);
        }
    if (s->mmds.nifaces && !s->mmds_socket) return error_text(err, errlen, "mmds-config: no MMDS server to reach");
    for (unsigned i = 0; i < s->nnets; i++) {
        const char *own = s->nets[i].bellhop_net ? s->nets[i].bellhop_net : "";
        s->net[i] = (struct virtio_net_params){.tap = s->nets[i].host_dev_name,
                                               .user = backend_opts(own, "user"),
                                               .passt = backend_opts(own, "passt"),
                                               .stream = strncmp(own, "stream=", 7) == 0 ? own + 7 : NULL,
                                               .has_mac = s->nets[i].has_mac,
                                               .rx_limiter = s->nets[i].rx_limiter, .tx_limiter = s->nets[i].tx_limiter};
        memcpy(s->net[i].mac, s->nets[i].mac, 6);
        if (mmds_on(s, s->nets[i].id)) s->net[i].mmds_addr = s->mmds.addr, s->net[i].mmds_socket = s->mmds_socket;
        s->nets[i].device = cfg->ndevices;
        if (!add(cfg, "virtio-net", &s->net[i])) return too_many(err, errlen);
    }
    s->rng = (struct virtio_rng_params){.limiter = s->entropy_limiter};
    if (s->entropy && !add(cfg, "virtio-rng", &s->rng)) return too_many(err, errlen);
    if (s->balloon.set) {
        if (s->balloon.amount_mib > s->mem_mib)
            return error_text(err, errlen, "balloon: amount_mib %llu: more than the guest's memory, %llu MiB",
                              (unsigned long long)s->balloon.amount_mib, (unsigned long long)s->mem_mib);
        s->balloon_params = (struct virtio_balloon_params){.target_pages = (uint32_t)(s->balloon.amount_mib << 8),
                                                          .deflate_on_oom = s->balloon.deflate_on_oom,
                                                          .stats_interval_s = s->balloon.stats_interval_s};
        s->balloon.device = cfg->ndevices;
        if (!add(cfg, "virtio-balloon", &s->balloon_params)) return too_many(err, errlen);
    }
    s->vsock_params = (struct virtio_vsock_params){.guest_cid = s->vsock.guest_cid, .uds_path = s->vsock.uds_path};
    if (s->vsock.uds_path && !add(cfg, "virtio-vsock", &s->vsock_params)) return too_many(err, errlen);
    s->fs = (struct vhost_user_params){.socket = s->fs_socket, .tag = s->fs_tag};
    if (s->fs_socket && !add(cfg, "vhost-user-fs", &s->fs)) return too_many(err, errlen);
    for (unsigned i = 0; i < s->ndevices; i++)
        if (!add(cfg, s->devices[i], NULL)) return too_many(err, errlen);
    return 0;
}
