/* The resources of Firecracker's API and config file, parsed with jansson's strict unpacking:
 * an unknown field, a field of the wrong type or a missing required one is refused with
 * jansson's own words ("1 object item(s) left unpacked: foo", "Expected integer, got string"). */
#include <errno.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio_devices.h"
#include "base/error_text.h"
#include "vmm/control/vm_spec.h"

#define DEFAULT_MEM_MIB 128

static int unpack_failed(const char *what, const json_error_t *je, char *err, size_t errlen) {
    return error_text(err, errlen, "%s: %s", what, je->text);
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

void vm_spec_free(struct vm_spec *s) {
    free(s->kernel), free(s->boot_args), free(s->initrd), free(s->cmdline);
    for (unsigned i = 0; i < s->ndrives; i++) free(s->drives[i].id), free(s->drives[i].path), free(s->drives[i].socket);
    for (unsigned i = 0; i < s->nnets; i++) free(s->nets[i].id), free(s->nets[i].host_dev_name);
    free(s->log_path), free(s->log_level), free(s->metrics_path);
    free(s->fs_socket), free(s->fs_tag);
    for (unsigned i = 0; i < s->ndevices; i++) free(s->devices[i]);
    vm_spec_init(s);
}

int vm_spec_boot_source(struct vm_spec *s, json_t *body, char *err, size_t errlen) {
    const char *kernel, *args, *initrd;
    json_t *args_v = NULL, *initrd_v = NULL;
    json_error_t je;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s:s, s?:o, s?:o}", "kernel_image_path", &kernel, "boot_args",
                       &args_v, "initrd_path", &initrd_v))
        return unpack_failed("boot-source", &je, err, errlen);
    if (nullable_string("boot-source: boot_args", args_v, &args, err, errlen) ||
        nullable_string("boot-source: initrd_path", initrd_v, &initrd, err, errlen))
        return -1;
    if (!*kernel) return error_text(err, errlen, "boot-source: kernel_image_path is empty");
    if (check_file("boot-source: kernel_image_path", kernel, err, errlen) ||
        (initrd && *initrd && check_file("boot-source: initrd_path", initrd, err, errlen)))
        return -1;
    set_str(&s->kernel, kernel);
    set_str(&s->boot_args, args);
    set_str(&s->initrd, initrd && *initrd ? initrd : NULL);
    return 0;
}

int vm_spec_machine_config(struct vm_spec *s, json_t *body, bool patch, char *err, size_t errlen) {
    json_int_t vcpus = patch ? (json_int_t)s->vcpus : -1, mem = patch ? (json_int_t)s->mem_mib : -1;
    int smt = 0, dirty = 0;
    const char *tmpl = NULL, *huge = NULL;
    json_error_t je;
    const char *fmt = patch ? "{s?:I, s?:I, s?:b, s?:b, s?:s, s?:s}" : "{s:I, s:I, s?:b, s?:b, s?:s, s?:s}";
    if (json_unpack_ex(body, &je, JSON_STRICT, fmt, "vcpu_count", &vcpus, "mem_size_mib", &mem, "smt", &smt,
                       "track_dirty_pages", &dirty, "cpu_template", &tmpl, "huge_pages", &huge))
        return unpack_failed("machine-config", &je, err, errlen);
    if (vcpus < 1 || vcpus > MACHINE_MAX_CPUS)
        return error_text(err, errlen, "machine-config: vcpu_count %lld: must be 1 to %d", (long long)vcpus, MACHINE_MAX_CPUS);
    if (mem < (json_int_t)(MACHINE_MIN_MEM >> 20) || mem > (json_int_t)(MACHINE_MAX_MEM >> 20))
        return error_text(err, errlen, "machine-config: mem_size_mib %lld: must be %llu to %llu", (long long)mem,
                      MACHINE_MIN_MEM >> 20, MACHINE_MAX_MEM >> 20);
    if (smt) return error_text(err, errlen, "machine-config: smt: bellhop's vCPUs are single-threaded cores");
    if (dirty) return error_text(err, errlen, "machine-config: track_dirty_pages: no dirty-page tracking (no snapshots yet)");
    if (tmpl && strcmp(tmpl, "None") != 0)
        return error_text(err, errlen, "machine-config: cpu_template %s: only None (the host's CPUID, as KVM gives it)", tmpl);
    if (huge && strcmp(huge, "None") != 0)
        return error_text(err, errlen, "machine-config: huge_pages %s: only None (guest RAM uses transparent huge pages "
                      "where the host allows)", huge);
    s->vcpus = (unsigned)vcpus;
    s->mem_mib = (uint64_t)mem;
    return 0;
}

int vm_spec_drive(struct vm_spec *s, const char *id, json_t *body, char *err, size_t errlen) {
    const char *drive_id, *path = NULL, *socket = NULL, *partuuid = NULL, *cache = NULL, *engine = NULL;
    int root, ro = 0, direct = 0;
    json_t *limiter = NULL, *ext = NULL;
    json_int_t queues = 0;
    json_error_t je;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s:s, s?:s, s?:s, s:b, s?:b, s?:s, s?:s, s?:s, s?:o, s?:o}", "drive_id",
                       &drive_id, "path_on_host", &path, "socket", &socket, "is_root_device", &root, "is_read_only",
                       &ro, "partuuid", &partuuid, "cache_type", &cache, "io_engine", &engine, "rate_limiter", &limiter,
                       "bellhop", &ext))
        return unpack_failed("drive", &je, err, errlen);
    if (ext && json_unpack_ex(ext, &je, JSON_STRICT, "{s?:b, s?:I}", "direct", &direct, "queues", &queues))
        return unpack_failed("drive: bellhop", &je, err, errlen);
    if (id && strcmp(id, drive_id) != 0)
        return error_text(err, errlen, "drive: drive_id %s differs from the path's %s", drive_id, id);
    if (!path == !socket) return error_text(err, errlen, "drive %s: either path_on_host or socket (vhost-user)", drive_id);
    if (!*drive_id || !*(path ? path : socket)) return error_text(err, errlen, "drive: drive_id and path_on_host must not be empty");
    if (socket && ro) return error_text(err, errlen, "drive %s: a vhost-user drive is read-only as its backend says", drive_id);
    if (path && check_file("drive: path_on_host", path, err, errlen)) return -1;
    if (partuuid) return error_text(err, errlen, "drive %s: partuuid: the root device is always /dev/vda", drive_id);
    if (cache && strcmp(cache, "Unsafe") != 0 && strcmp(cache, "Writeback") != 0)
        return error_text(err, errlen, "drive %s: cache_type %s: Unsafe or Writeback", drive_id, cache);
    if (engine && strcmp(engine, "Sync") != 0 && strcmp(engine, "Async") != 0)
        return error_text(err, errlen, "drive %s: io_engine %s: Async (io_uring) or Sync", drive_id, engine);
    if (engine && socket) return error_text(err, errlen, "drive %s: io_engine: a vhost-user drive's I/O is its backend's", drive_id);
    if (limiter && !json_is_null(limiter)) return error_text(err, errlen, "drive %s: rate_limiter: not supported", drive_id);
    if (queues < 0 || queues > VIRTIO_MAX_QUEUES)
        return error_text(err, errlen, "drive %s: queues %lld: 1 to %d", drive_id, (long long)queues, VIRTIO_MAX_QUEUES);
    if (socket && (direct || queues)) return error_text(err, errlen, "drive %s: direct and queues: a vhost-user drive's are its backend's", drive_id);
    unsigned i = 0;
    while (i < s->ndrives && strcmp(s->drives[i].id, drive_id) != 0) i++;
    for (unsigned j = 0; root && j < s->ndrives; j++)
        if (j != i && s->drives[j].root)
            return error_text(err, errlen, "drive %s: drive %s is already the root device", drive_id, s->drives[j].id);
    if (i == s->ndrives) {
        if (s->ndrives == VM_SPEC_MAX_DRIVES) return error_text(err, errlen, "drive %s: at most %d drives", drive_id, VM_SPEC_MAX_DRIVES);
        s->ndrives++;
    }
    struct vm_spec_drive *d = &s->drives[i];
    set_str(&d->id, drive_id);
    free(d->path), free(d->socket);
    d->path = d->socket = NULL;
    set_str(path ? &d->path : &d->socket, path ? path : socket);
    d->read_only = ro, d->root = root;
    d->engine = !engine ? BLK_IO_AUTO : strcmp(engine, "Sync") == 0 ? BLK_IO_SYNC : BLK_IO_ASYNC;
    d->direct = direct, d->queues = (unsigned)queues;
    return 0;
}

int vm_spec_drive_patch(struct vm_spec *s, const char *id, json_t *body, const char **path, char *err, size_t errlen) {
    const char *drive_id;
    json_t *limiter = NULL;
    json_error_t je;
    *path = NULL;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s:s, s?:s, s?:o}", "drive_id", &drive_id, "path_on_host", path,
                       "rate_limiter", &limiter))
        return unpack_failed("drive", &je, err, errlen);
    if (strcmp(id, drive_id) != 0) return error_text(err, errlen, "drive: drive_id %s differs from the path's %s", drive_id, id);
    if (limiter && !json_is_null(limiter)) return error_text(err, errlen, "drive %s: rate_limiter: not supported", id);
    for (unsigned i = 0; i < s->ndrives; i++) {
        if (strcmp(s->drives[i].id, id) != 0) continue;
        if (s->drives[i].socket && *path) return error_text(err, errlen, "drive %s: a vhost-user drive's file is its backend's", id);
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

int vm_spec_net(struct vm_spec *s, const char *id, json_t *body, char *err, size_t errlen) {
    const char *iface, *dev, *mac_text = NULL;
    json_t *rx = NULL, *tx = NULL;
    json_error_t je;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s:s, s:s, s?:s, s?:o, s?:o}", "iface_id", &iface, "host_dev_name",
                       &dev, "guest_mac", &mac_text, "rx_rate_limiter", &rx, "tx_rate_limiter", &tx))
        return unpack_failed("network-interface", &je, err, errlen);
    if (id && strcmp(id, iface) != 0)
        return error_text(err, errlen, "network-interface: iface_id %s differs from the path's %s", iface, id);
    if (!*iface || !*dev) return error_text(err, errlen, "network-interface: iface_id and host_dev_name must not be empty");
    if ((rx && !json_is_null(rx)) || (tx && !json_is_null(tx)))
        return error_text(err, errlen, "network-interface %s: rate limiters: not supported", iface);
    uint8_t mac[6];
    if (mac_text && !parse_mac(mac_text, mac))
        return error_text(err, errlen, "network-interface %s: guest_mac %s: not a unicast MAC address (xx:xx:xx:xx:xx:xx)",
                      iface, mac_text);
    unsigned i = 0;
    while (i < s->nnets && strcmp(s->nets[i].id, iface) != 0) i++;
    if (i == s->nnets) {
        if (s->nnets == VM_SPEC_MAX_NETS)
            return error_text(err, errlen, "network-interface %s: at most %d network interface", iface, VM_SPEC_MAX_NETS);
        s->nnets++;
    }
    struct vm_spec_net *n = &s->nets[i];
    set_str(&n->id, iface);
    set_str(&n->host_dev_name, dev);
    n->has_mac = mac_text != NULL;
    if (mac_text) memcpy(n->mac, mac, 6);
    return 0;
}

int vm_spec_entropy(struct vm_spec *s, json_t *body, char *err, size_t errlen) {
    json_t *limiter = NULL;
    json_error_t je;
    if (json_unpack_ex(body, &je, JSON_STRICT, "{s?:o}", "rate_limiter", &limiter))
        return unpack_failed("entropy", &je, err, errlen);
    if (limiter && !json_is_null(limiter)) return error_text(err, errlen, "entropy: rate_limiter: not supported");
    s->entropy = true;
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

typedef int each_fn(struct vm_spec *s, const char *id, json_t *body, char *err, size_t errlen);

static int each(struct vm_spec *s, json_t *arr, const char *what, each_fn *fn, char *err, size_t errlen) {
    if (!json_is_array(arr)) return error_text(err, errlen, "%s: expected an array", what);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (fn(s, NULL, v, err, errlen)) return -1;
    return 0;
}

int vm_spec_document(struct vm_spec *s, json_t *doc, char *err, size_t errlen) {
    json_t *boot = NULL, *machine = NULL, *drives = NULL, *nets = NULL, *entropy = NULL, *logger = NULL, *metrics = NULL;
    json_t *ext = NULL;
    json_error_t je;
    if (json_unpack_ex(doc, &je, JSON_STRICT, "{s:o, s?:o, s?:o, s?:o, s?:o, s?:o, s?:o, s?:o}", "boot-source", &boot,
                       "machine-config", &machine, "drives", &drives, "network-interfaces", &nets, "entropy", &entropy,
                       "logger", &logger, "metrics", &metrics, "bellhop", &ext))
        return unpack_failed("config file", &je, err, errlen);
    if (vm_spec_boot_source(s, boot, err, errlen)) return -1;
    if (machine && vm_spec_machine_config(s, machine, false, err, errlen)) return -1;
    if (drives && each(s, drives, "drives", vm_spec_drive, err, errlen)) return -1;
    if (nets && each(s, nets, "network-interfaces", vm_spec_net, err, errlen)) return -1;
    if (entropy && vm_spec_entropy(s, entropy, err, errlen)) return -1;
    if (logger && vm_spec_logger(s, logger, err, errlen)) return -1;
    if (metrics && vm_spec_metrics(s, metrics, err, errlen)) return -1;
    if (ext && vm_spec_bellhop(s, ext, err, errlen)) return -1;
    return 0;
}

json_t *vm_spec_machine_config_json(const struct vm_spec *s) {
    return json_pack("{s:I, s:I, s:b, s:b, s:s, s:s}", "vcpu_count", (json_int_t)s->vcpus, "mem_size_mib",
                     (json_int_t)s->mem_mib, "smt", 0, "track_dirty_pages", 0, "cpu_template", "None", "huge_pages",
                     "None");
}

json_t *vm_spec_drive_json(const struct vm_spec_drive *d) {
    json_t *j = json_pack("{s:s, s:s, s:b, s:b}", "drive_id", d->id, d->socket ? "socket" : "path_on_host",
                          d->socket ? d->socket : d->path, "is_root_device", d->root, "is_read_only", d->read_only);
    if (!j) return NULL;
    if (!d->socket && d->engine != BLK_IO_AUTO)
        json_object_set_new(j, "io_engine", json_string(d->engine == BLK_IO_SYNC ? "Sync" : "Async"));
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

json_t *vm_spec_to_json(const struct vm_spec *s) {
    json_t *doc = json_object(), *drives = json_array(), *nets = json_array();
    if (s->kernel)
        json_object_set_new(doc, "boot-source", json_pack("{s:s, s:s?, s:s?}", "kernel_image_path", s->kernel,
                                                          "boot_args", s->boot_args, "initrd_path", s->initrd));
    json_object_set_new(doc, "machine-config", vm_spec_machine_config_json(s));
    for (unsigned i = 0; i < s->ndrives; i++) json_array_append_new(drives, vm_spec_drive_json(&s->drives[i]));
    json_object_set_new(doc, "drives", drives);
    for (unsigned i = 0; i < s->nnets; i++) {
        json_t *n = json_pack("{s:s, s:s}", "iface_id", s->nets[i].id, "host_dev_name", s->nets[i].host_dev_name);
        if (s->nets[i].has_mac) {
            const uint8_t *m = s->nets[i].mac;
            char text[18];
            snprintf(text, sizeof text, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
            json_object_set_new(n, "guest_mac", json_string(text));
        }
        json_array_append_new(nets, n);
    }
    json_object_set_new(doc, "network-interfaces", nets);
    if (s->entropy) json_object_set_new(doc, "entropy", json_object());
    if (s->log_path || s->log_level)
        json_object_set_new(doc, "logger", json_pack("{s:s?, s:s?, s:b, s:b}", "log_path", s->log_path, "level",
                                                     s->log_level, "show_level", s->log_show_level,
                                                     "show_log_origin", s->log_show_origin));
    if (s->metrics_path) json_object_set_new(doc, "metrics", json_pack("{s:s}", "metrics_path", s->metrics_path));
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

int vm_spec_to_machine(struct vm_spec *s, struct machine_config *cfg, char *err, size_t errlen) {
    if (!s->kernel) return error_text(err, errlen, "no boot source: PUT /boot-source with a kernel_image_path first");
    cfg->kernel = s->kernel;
    cfg->initrd = s->initrd;
    cfg->cpus = s->vcpus;
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
                add(cfg, "vhost-user-blk", &s->vhost[n++]);
                continue;
            }
            const struct vm_spec_drive *d = &s->drives[i];
            s->blk[n] = (struct virtio_blk_params){.path = d->path, .read_only = d->read_only, .direct = d->direct,
                                                   .engine = d->engine,
                                                   .queues = d->queues ? d->queues : virtio_blk_queues(s->vcpus)};
            add(cfg, "virtio-blk", &s->blk[n++]);
        }
    for (unsigned i = 0; i < s->nnets; i++) {
        s->net[i] = (struct virtio_net_params){.tap = s->nets[i].host_dev_name, .has_mac = s->nets[i].has_mac};
        memcpy(s->net[i].mac, s->nets[i].mac, 6);
        add(cfg, "virtio-net", &s->net[i]);
    }
    if (s->entropy) add(cfg, "virtio-rng", NULL);
    s->fs = (struct vhost_user_params){.socket = s->fs_socket, .tag = s->fs_tag};
    if (s->fs_socket) add(cfg, "vhost-user-fs", &s->fs);
    for (unsigned i = 0; i < s->ndevices; i++)
        if (!add(cfg, s->devices[i], NULL))
            return error_text(err, errlen, "at most %d virtio devices", MACHINE_MAX_DEVICES);
    return 0;
}
