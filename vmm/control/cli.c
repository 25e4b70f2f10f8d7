/* `bellhop run`'s flags: read, checked for their own form, then the VM's handed to vm_spec as
 * the config file would hand them (vmm/control/cli.h). */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "devices/virtio_devices.h"
#include "vmm/control/api.h"
#include "vmm/control/cli.h"
#include "vmm/sandbox/sandbox.h"

#define DEFAULT_MEM (128ull << 20)

int cli_bad_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bellhop: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see bellhop run --help)\n");
    va_end(ap);
    return CLI_EXIT_USAGE;
}

const char *cli_device_names(void) {
    static char names[200];
    size_t at = 0;
    const struct virtio_device_ops *ops;
    for (unsigned i = 0; (ops = virtio_device_at(i)) && at < sizeof names; i++)
        at += (size_t)snprintf(names + at, sizeof names - at, "%s%s", i ? ", " : "", ops->name);
    return names;
}

const char *cli_bundled_kernel(void) {
    static char path[PATH_MAX];
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0) return NULL;
    exe[n] = 0;
    char *dir = dirname(exe);
    /* beside the binary (build/), or one up for the sanitizer builds (build/asan/) */
    int w = snprintf(path, sizeof path, "%s/guest/guest.elf", dir);
    if (w > 0 && (size_t)w < sizeof path && access(path, R_OK) == 0) return path;
    w = snprintf(path, sizeof path, "%s/../lib/bellhop/guest.elf", dir); /* installed (make install) */
    if (w > 0 && (size_t)w < sizeof path && access(path, R_OK) == 0) return path;
    w = snprintf(path, sizeof path, "%s/../guest/guest.elf", dir);
    return w < 0 || (size_t)w >= sizeof path ? NULL : path;
}

/* A whole decimal number, digits only; false on junk or overflow. */
static bool parse_decimal(const char *s, unsigned long long *out) {
    if (*s < '0' || *s > '9') return false;
    char *end;
    errno = 0;
    *out = strtoull(s, &end, 10);
    return !errno && !*end;
}

/* "256M", "1G", "65536K", "1048576" (bytes); false on junk or overflow. */
static bool parse_size(const char *s, uint64_t *out) {
    if (!*s || *s == '-') return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return false;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    }
    if (*end || v > (UINT64_MAX >> shift)) return false;
    *out = (uint64_t)v << shift;
    return true;
}

/* The flags that describe the VM, as given (their form checked), before vm_spec has them. */
struct vm_flags {
    const char *kernel, *initrd, *cmdline;
    uint64_t mem;
    unsigned cpus;
    bool smt;
    struct {
        const char *arg;                /* as given, for messages */
        const char *path, *socket;      /* one of them */
        bool ro, direct;
        enum blk_io_engine engine;      /* BLK_IO_AUTO unless sync or async */
        unsigned queues;
    } disks[CLI_MAX_DISKS];
    unsigned ndisks;
    bool rng;
    const char *tap, *bellhop_net, *fs_socket, *fs_tag; /* bellhop_net: --net user, passt or stream= as given */
    const char *vsock_uds;
    unsigned long long vsock_cid;
    const char *devices[VM_SPEC_MAX_DEVICES];
    unsigned ndevices;
    const char *first; /* the first of them given, for the refusal beside --api-sock and the like */
};

/* --disk PATH[,ro][,direct][,sync|,async][,queues=N] or vhost-user=SOCKET. 0, or 2 when told why. */
static int parse_disk(char *arg, struct vm_flags *f) {
    if (f->ndisks == CLI_MAX_DISKS) return cli_bad_usage("--disk: at most %d disks", CLI_MAX_DISKS);
    __typeof__(f->disks[0]) d = {.arg = arg};
    if (strncmp(arg, "vhost-user=", 11) == 0) {
        if (!arg[11]) return cli_bad_usage("--disk vhost-user=: empty socket path");
        d.socket = arg + 11;
        f->disks[f->ndisks++] = d;
        return 0;
    }
    char *opt = strchr(arg, ',');
    d.arg = d.path = arg;
    if (opt) *opt++ = 0;
    for (char *next; opt; opt = next) {
        if ((next = strchr(opt, ','))) *next++ = 0;
        if (strcmp(opt, "ro") == 0) d.ro = true;
        else if (strcmp(opt, "direct") == 0) d.direct = true;
        else if (strcmp(opt, "sync") == 0) d.engine = BLK_IO_SYNC;
        else if (strcmp(opt, "async") == 0) d.engine = BLK_IO_ASYNC;
        else if (strncmp(opt, "queues=", 7) == 0) {
            char *end;
            unsigned long n = strtoul(opt + 7, &end, 10);
            if (opt[7] < '0' || opt[7] > '9' || *end || n < 1 || n > VIRTIO_MAX_QUEUES)
                return cli_bad_usage("--disk %s: queues=%s: 1 to %d", arg, opt + 7, VIRTIO_MAX_QUEUES);
            d.queues = (unsigned)n;
        } else {
            return cli_bad_usage("--disk %s: unknown option %s (ro, direct, sync, async, queues=N)", arg, opt);
        }
    }
    if (!*arg) return cli_bad_usage("--disk: empty path");
    f->disks[f->ndisks++] = d;
    return 0;
}

enum {
    O_KERNEL = 256, O_INITRD, O_CMDLINE, O_MEM, O_CPUS, O_SMT, O_DISK, O_RNG, O_NET, O_DEVICE, O_FS, O_VSOCK, /* the VM's */
    O_CONSOLE, O_TRACE, O_MARKERS, O_DISPATCH, O_STATS, O_NO_SECCOMP, O_BENCH_BELL, O_PROFILE, O_PROFILE_SYMBOLS,
    O_GUEST_DECOMPRESS, O_KERNEL_CACHE, O_PVM_ANYWAY, O_API_SOCK, O_CONFIG_FILE, O_TRACE_FILE, O_RESTORE,
    O_MEM_FILE, O_START_TIME, O_PRINT_CONFIG, O_MEM_UFFD, O_HALT_POLL, O_CPU_PM, O_METADATA, O_MMDS_LIMIT,
    O_MODULE, O_EXIT_DEVICE,
};

static const struct option options[] = {
    {"kernel", required_argument, 0, O_KERNEL}, {"initrd", required_argument, 0, O_INITRD},
    {"cmdline", required_argument, 0, O_CMDLINE}, {"mem", required_argument, 0, O_MEM},
    {"cpus", required_argument, 0, O_CPUS}, {"disk", required_argument, 0, O_DISK},
    {"console", required_argument, 0, O_CONSOLE}, {"rng", no_argument, 0, O_RNG},
    {"device", required_argument, 0, O_DEVICE}, {"api-sock", required_argument, 0, O_API_SOCK},
    {"config-file", required_argument, 0, O_CONFIG_FILE}, {"restore", required_argument, 0, O_RESTORE},
    {"mem-file", required_argument, 0, O_MEM_FILE}, {"fs", required_argument, 0, O_FS},
    {"trace-file", required_argument, 0, O_TRACE_FILE}, {"trace", required_argument, 0, O_TRACE},
    {"help", no_argument, 0, 'h'}, {"boot-markers", no_argument, 0, O_MARKERS},
    {"start-time-us", required_argument, 0, O_START_TIME}, {"net", required_argument, 0, O_NET},
    {"vsock", required_argument, 0, O_VSOCK}, {"smt", no_argument, 0, O_SMT},
    {"dispatch", required_argument, 0, O_DISPATCH}, {"stats", no_argument, 0, O_STATS},
    {"no-seccomp", no_argument, 0, O_NO_SECCOMP}, {"bench-bell", no_argument, 0, O_BENCH_BELL},
    {"profile", required_argument, 0, O_PROFILE}, {"profile-symbols", required_argument, 0, O_PROFILE_SYMBOLS},
    {"guest-decompress", no_argument, 0, O_GUEST_DECOMPRESS},
    {"kernel-cache", no_argument, 0, O_KERNEL_CACHE}, {"pvm-anyway", no_argument, 0, O_PVM_ANYWAY},
    {"print-config", no_argument, 0, O_PRINT_CONFIG}, {"mem-uffd", required_argument, 0, O_MEM_UFFD},
    {"halt-poll-ns", required_argument, 0, O_HALT_POLL}, {"cpu-pm", required_argument, 0, O_CPU_PM},
    {"metadata", required_argument, 0, O_METADATA}, {"mmds-size-limit", required_argument, 0, O_MMDS_LIMIT},
    {"module", required_argument, 0, O_MODULE}, {"exit-device", required_argument, 0, O_EXIT_DEVICE}, {0, 0, 0, 0},
};

/* A flag that describes the VM. 0, or 2 when told why. */
static int vm_flag(struct vm_flags *f, int c, char *arg) {
    switch (c) {
    case O_KERNEL: f->kernel = arg; return 0;
    case O_INITRD: f->initrd = arg; return 0;
    case O_CMDLINE:
        if (strlen(arg) > 4095) return cli_bad_usage("--cmdline: longer than 4095 bytes");
        f->cmdline = arg;
        return 0;
    case O_MEM:
        if (!parse_size(arg, &f->mem)) return cli_bad_usage("--mem %s: not a size (try 256M)", arg);
        if (f->mem < MACHINE_MIN_MEM || f->mem > MACHINE_MAX_MEM)
            return cli_bad_usage("--mem %s: must be between %lluM and %lluM", arg, MACHINE_MIN_MEM >> 20,
                                 MACHINE_MAX_MEM >> 20);
        if (f->mem & ((1u << 20) - 1)) return cli_bad_usage("--mem %s: not a whole number of MiB", arg);
        return 0;
    case O_CPUS: {
        char *end;
        long n = strtol(arg, &end, 10);
        if (*end || end == arg || n < 1 || n > MACHINE_MAX_CPUS)
            return cli_bad_usage("--cpus %s: must be 1 to %d", arg, MACHINE_MAX_CPUS);
        f->cpus = (unsigned)n;
        return 0;
    }
    case O_SMT: f->smt = true; return 0;
    case O_DISK: return parse_disk(arg, f);
    case O_RNG: f->rng = true; return 0;
    case O_FS: {
        char *tag = strstr(arg, ",tag=");
        if (!tag || tag == arg || !tag[5]) return cli_bad_usage("--fs %s: expected SOCKET,tag=TAG", arg);
        if (f->fs_socket) return cli_bad_usage("--fs: only one shared directory");
        *tag = 0;
        f->fs_socket = arg, f->fs_tag = tag + 5;
        return 0;
    }
    case O_DEVICE:
        if (!virtio_device_find(arg)) return cli_bad_usage("--device %s: unknown (there are %s)", arg, cli_device_names());
        if (f->ndevices == VM_SPEC_MAX_DEVICES) return cli_bad_usage("--device: at most %d", VM_SPEC_MAX_DEVICES);
        f->devices[f->ndevices++] = arg;
        return 0;
    case O_VSOCK: {
        char *end, *uds = strstr(arg, ",uds=");
        if (strncmp(arg, "cid=", 4) != 0 || !uds || !uds[5]) return cli_bad_usage("--vsock %s: expected cid=N,uds=PATH", arg);
        if (f->vsock_uds) return cli_bad_usage("--vsock: only one vsock device");
        f->vsock_cid = strtoull(arg + 4, &end, 10);
        if (end != uds || arg[4] < '0' || arg[4] > '9') return cli_bad_usage("--vsock %s: cid=%.*s: not a number", arg, (int)(uds - arg - 4), arg + 4);
        f->vsock_uds = uds + 5;
        return 0;
    }
    case O_NET:
        if (f->tap || f->bellhop_net) return cli_bad_usage("--net: only one network device");
        /* bellhop's own backends: the config's bellhop_net, checked there */
        if ((strncmp(arg, "user", 4) == 0 && (!arg[4] || arg[4] == ',')) ||
            (strncmp(arg, "passt", 5) == 0 && (!arg[5] || arg[5] == ',')) || strncmp(arg, "stream=", 7) == 0) {
            f->bellhop_net = arg;
            return 0;
        }
        if (strncmp(arg, "tap=", 4) != 0 || !arg[4])
            return cli_bad_usage("--net %s: expected tap=NAME, user[,hostfwd=...][,restrict=on], passt[,ARG...] or "
                                 "stream=PATH", arg);
        f->tap = arg + 4;
        return 0;
    }
    return -1;
}

/* --module FILE[,ARGS]: a multiboot kernel's module; ARGS follow its name in its string. 0, or
 * 2 when told why. */
static int parse_module(struct machine_config *cfg, char *arg) {
    if (cfg->nmodules == MACHINE_MAX_MODULES) return cli_bad_usage("--module: at most %d modules", MACHINE_MAX_MODULES);
    char *args = strchr(arg, ',');
    if (args) *args++ = 0;
    if (!*arg) return cli_bad_usage("--module: empty path");
    cfg->modules[cfg->nmodules++] = (struct machine_module){arg, args && *args ? args : NULL};
    return 0;
}

/* A flag that sets the VMM's options. 0, 2 when told why, -1 when it is no such flag. */
static int vmm_flag(struct cli_run *r, int c, char *arg) {
    struct machine_config *cfg = &r->cfg;
    switch (c) {
    case O_CONSOLE:
        if (strcmp(arg, "serial") == 0) cfg->console = CONSOLE_SERIAL;
        else if (strcmp(arg, "virtio") == 0) cfg->console = CONSOLE_VIRTIO;
        else return cli_bad_usage("--console %s: serial or virtio", arg);
        return 0;
    case O_MARKERS: cfg->boot_markers = true; return 0;
    case O_START_TIME: {
        unsigned long long us;
        if (!parse_decimal(arg, &us) || us == 0 || us > cfg->main_ns / 1000)
            return cli_bad_usage("--start-time-us %s: the launcher's CLOCK_MONOTONIC time in microseconds, not in the "
                                 "future", arg);
        cfg->start_ns = us * 1000;
        return 0;
    }
    case O_GUEST_DECOMPRESS: cfg->guest_decompress = true; return 0;
    case O_KERNEL_CACHE: cfg->kernel_cache = true; return 0;
    case O_STATS: cfg->stats = true; return 0;
    case O_NO_SECCOMP: cfg->sandbox = false; return 0;
    case O_PVM_ANYWAY: cfg->pvm_anyway = true; return 0;
    case O_BENCH_BELL: cfg->bench_bell = true; return 0;
    case O_PRINT_CONFIG: r->print_config = true; return 0;
    case O_DISPATCH:
        if (strcmp(arg, "inline") == 0) cfg->dispatch_loop = false;
        else if (strcmp(arg, "loop") == 0) cfg->dispatch_loop = true;
        else return cli_bad_usage("--dispatch %s: inline or loop", arg);
        return 0;
    case O_HALT_POLL: {
        unsigned long long ns;
        if (!parse_decimal(arg, &ns) || ns > UINT32_MAX)
            return cli_bad_usage("--halt-poll-ns %s: nanoseconds, 0 to %u", arg, UINT32_MAX);
        cfg->halt_poll_set = true;
        cfg->halt_poll_ns = ns;
        return 0;
    }
    case O_MMDS_LIMIT: {
        unsigned long long bytes;
        if (!parse_decimal(arg, &bytes) || bytes < 2 || bytes > CLI_MAX_MMDS_LIMIT)
            return cli_bad_usage("--mmds-size-limit %s: bytes, 2 to %u", arg, CLI_MAX_MMDS_LIMIT);
        r->mmds_limit = (size_t)bytes;
        return 0;
    }
    case O_CPU_PM:
        if (strcmp(arg, "on") == 0) cfg->idle_in_guest = true;
        else if (strcmp(arg, "off") == 0) cfg->idle_in_guest = false;
        else return cli_bad_usage("--cpu-pm %s: on or off", arg);
        return 0;
    case O_TRACE:
        if (strcmp(arg, "traps") != 0) return cli_bad_usage("--trace %s: the only kind is traps", arg);
        cfg->trace_traps = true;
        return 0;
    case O_EXIT_DEVICE:
        if (strcmp(arg, "qemu") == 0) cfg->exit_qemu = true;
        else if (strcmp(arg, "bellhop") == 0) cfg->exit_qemu = false;
        else return cli_bad_usage("--exit-device %s: qemu or bellhop", arg);
        return 0;
    case O_MODULE: return parse_module(cfg, arg);
    }
    return -1;
}

/* An option that names a file, which must name one. 0, 2 when told why, -1 when it is none. */
static int path_flag(struct cli_run *r, int c, const char *name, const char *arg) {
    const struct {
        int opt;
        const char **to;
    } paths[] = {{O_API_SOCK, &r->api_sock},     {O_TRACE_FILE, &r->cfg.trace_file}, {O_CONFIG_FILE, &r->config_file},
                 {O_RESTORE, &r->restore},       {O_MEM_FILE, &r->mem_file},         {O_PROFILE, &r->cfg.profile},
                 {O_PROFILE_SYMBOLS, &r->cfg.profile_symbols}, {O_MEM_UFFD, &r->mem_uffd}, {O_METADATA, &r->metadata}};
    for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++) {
        if (paths[p].opt != c) continue;
        if (!*arg) return cli_bad_usage("--%s: empty path", name);
        *paths[p].to = arg;
        return 0;
    }
    return -1;
}

/* One of vm_spec's parsers on a body built from flags: 0, or 1 with the flag and the reason. */
static int spec_put(struct vm_spec *s, int (*put)(struct vm_spec *, json_t *, char *, size_t), json_t *body,
                    const char *flag) {
    char err[PATH_MAX + 200];
    int r = body ? put(s, body, err, sizeof err) : (snprintf(err, sizeof err, "out of memory"), -1);
    json_decref(body);
    if (r == 0) return 0;
    fprintf(stderr, "bellhop: %s: %s\n", flag, err);
    return 1;
}

static int put_drive(struct vm_spec *s, json_t *body, char *err, size_t errlen) { return vm_spec_drive(s, NULL, body, err, errlen); }
static int put_net(struct vm_spec *s, json_t *body, char *err, size_t errlen) { return vm_spec_net(s, NULL, body, err, errlen); }
static int put_machine(struct vm_spec *s, json_t *body, char *err, size_t errlen) {
    return vm_spec_machine_config(s, body, false, err, errlen);
}

static json_t *drive_body(const struct vm_flags *f, unsigned i) {
    char id[16];
    snprintf(id, sizeof id, "disk%u", i);
    __typeof__(f->disks[0]) const *d = &f->disks[i];
    const struct vm_spec_drive drive = {
        .id = id, .path = (char *)d->path, .socket = (char *)d->socket, .read_only = d->ro, .direct = d->direct,
        .queues = d->queues, .engine = d->engine};
    return vm_spec_drive_json(&drive);
}

/* The flags' VM into r->spec, through the parsers the config file goes through. */
static int spec_from_flags(struct cli_run *r, const struct vm_flags *f) {
    struct vm_spec *s = &r->spec;
    const char *kernel = f->kernel ? f->kernel : cli_bundled_kernel();
    if (!kernel) return fprintf(stderr, "bellhop: cannot find the bundled guest\n"), 1;
    const char *flags = !f->kernel ? "the bundled guest" : r->cfg.nmodules ? "--kernel, --module" : "--kernel";
    json_t *boot = vm_spec_boot_source_json(kernel, f->cmdline ? f->cmdline : "", f->initrd, r->cfg.modules,
                                            r->cfg.nmodules, r->cfg.exit_qemu);
    if (spec_put(s, vm_spec_boot_source, boot, flags) ||
        spec_put(s, put_machine,
                 json_pack("{s:I, s:I, s:b}", "vcpu_count", (json_int_t)f->cpus, "mem_size_mib", (json_int_t)(f->mem >> 20),
                           "smt", f->smt),
                 "--mem, --cpus, --smt"))
        return 1;
    for (unsigned i = 0; i < f->ndisks; i++) {
        char flag[PATH_MAX + 16];
        snprintf(flag, sizeof flag, "--disk %s", f->disks[i].arg);
        if (spec_put(s, put_drive, drive_body(f, i), flag)) return 1;
    }
    if (f->tap && spec_put(s, put_net, json_pack("{s:s, s:s}", "iface_id", "net0", "host_dev_name", f->tap), "--net"))
        return 1;
    if (f->bellhop_net &&
        spec_put(s, put_net, json_pack("{s:s, s:s}", "iface_id", "net0", "bellhop_net", f->bellhop_net), "--net"))
        return 1;
    if (f->rng && spec_put(s, vm_spec_entropy, json_object(), "--rng")) return 1;
    if (f->vsock_uds && spec_put(s, vm_spec_vsock,
                                 json_pack("{s:I, s:s}", "guest_cid", (json_int_t)(f->vsock_cid > INT64_MAX ? -1 : (long long)f->vsock_cid),
                                           "uds_path", f->vsock_uds),
                                 "--vsock"))
        return 1;
    json_t *ext = vm_spec_bellhop_json(f->fs_socket, f->fs_tag, f->devices, f->ndevices);
    return spec_put(s, vm_spec_bellhop, ext ? ext : json_object(), "--fs, --device");
}

/* The flags' checks among themselves, once all are read. */
static int check_together(const struct cli_run *r, const struct vm_flags *f) {
    if (r->restore && !r->mem_file == !r->mem_uffd)
        return cli_bad_usage("--restore STATE takes its memory from one of --mem-file MEM and --mem-uffd SOCKET");
    if (!r->restore && (r->mem_file || r->mem_uffd))
        return cli_bad_usage("%s goes with --restore STATE", r->mem_file ? "--mem-file" : "--mem-uffd");
    if (r->restore && r->config_file) return cli_bad_usage("--restore: the snapshot is the configuration; no --config-file");
    if ((r->api_sock || r->config_file || r->restore) && f->first)
        return cli_bad_usage("%s: with %s, the kernel, memory, CPUs and devices come from there, not from flags",
                             f->first, r->restore ? "--restore" : r->api_sock ? "--api-sock" : "--config-file");
    if (r->cfg.profile_symbols && !r->cfg.profile) return cli_bad_usage("--profile-symbols needs --profile FILE");
    if (r->restore && r->cfg.nmodules) return cli_bad_usage("--module: a snapshot's modules are in its memory already");
    if ((r->api_sock || r->config_file) && (r->cfg.nmodules || r->cfg.exit_qemu))
        return cli_bad_usage("%s: with %s, boot-source gives it (%s)", r->cfg.nmodules ? "--module" : "--exit-device",
                             r->api_sock ? "--api-sock" : "--config-file",
                             r->cfg.nmodules ? "bellhop_modules" : "bellhop_exit_device");
    if ((r->metadata || r->mmds_limit) && !r->api_sock && !r->config_file) /* MMDS is configured there only */
        return cli_bad_usage("%s goes with --api-sock or --config-file", r->metadata ? "--metadata" : "--mmds-size-limit");
    if (r->print_config && (r->api_sock || r->restore || r->config_file))
        return cli_bad_usage("--print-config: shows what the flags describe, not an API's or a snapshot's VM");
    return 0;
}

int cli_parse_run(int argc, char **argv, struct cli_run *r) {
    memset(r, 0, sizeof *r);
    vm_spec_init(&r->spec);
    r->cfg = (struct machine_config){.cmdline = "", .console = CONSOLE_SERIAL, .start_ns = zx_clock_get_monotonic(),
                                     .sandbox = sandbox_supported()};
    r->cfg.main_ns = r->cfg.start_ns;
    struct vm_flags f = {.mem = DEFAULT_MEM, .cpus = 1};
    opterr = 0;
    optind = 1;
    int c, idx = 0;
    while ((c = getopt_long(argc, argv, "h", options, &idx)) != -1) {
        if (c == 'h') {
            r->help = true;
            return 0;
        }
        bool vm = c >= O_KERNEL && c <= O_VSOCK;
        if (vm && !f.first) f.first = argv[optind - 1][0] == '-' ? argv[optind - 1] : argv[optind - 2];
        int st = path_flag(r, c, options[idx].name, optarg);
        if (st < 0) st = vm ? vm_flag(&f, c, optarg) : vmm_flag(r, c, optarg);
        if (st > 0) return st;
        if (st < 0) {
            if (optopt) return cli_bad_usage("option -%c: unknown or missing its argument", optopt);
            return cli_bad_usage("%s: unknown option or missing argument", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_bad_usage("unexpected argument %s", argv[optind]);
    int st = check_together(r, &f);
    if (st || r->api_sock || r->config_file || r->restore) return st;
    return spec_from_flags(r, &f);
}

int cli_run(struct cli_run *r) {
    if (r->print_config) {
        json_t *doc = vm_spec_to_json(&r->spec);
        int ok = doc && json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_SORT_KEYS) == 0;
        json_decref(doc);
        printf("\n");
        return ok ? 0 : 1;
    }
    /* The virtio console first, whoever describes the rest: it is the terminal's. */
    r->console = (struct virtio_console_params){STDIN_FILENO, STDOUT_FILENO};
    if (r->cfg.console == CONSOLE_VIRTIO)
        r->cfg.devices[r->cfg.ndevices++] = (struct machine_device){&virtio_console_ops, &r->console};
    if (r->api_sock || r->config_file || r->restore) {
        const struct api_mmds_options mmds = {.metadata = r->metadata, .limit = r->mmds_limit};
        return api_run(&r->cfg, r->api_sock, r->config_file, r->restore,
                       r->mem_uffd ? SNAPSHOT_BACKEND_UFFD : SNAPSHOT_BACKEND_FILE, r->mem_uffd ? r->mem_uffd : r->mem_file,
                       &mmds);
    }
    char err[300];
    if (vm_spec_to_machine(&r->spec, &r->cfg, err, sizeof err) != 0) return cli_bad_usage("%s", err);
    return machine_run(&r->cfg);
}
