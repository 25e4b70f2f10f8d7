/* bellhop command line. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <getopt.h>
#include <pthread.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "devices/device.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_console.h"
#include "devices/virtio_devices.h"
#include "devices/virtio_net.h"
#include "devices/virtio_vhost_user.h"
#include "vmm/control/api.h"
#include "bench/bellhop_bench/bench.h"
#include "vmm/machine/machine.h"
#include "vmm/sandbox/sandbox.h"
#include "vmm/control/version.h"

#define EXIT_USAGE 2
#define MIN_MEM MACHINE_MIN_MEM
#define MAX_MEM MACHINE_MAX_MEM
#define DEFAULT_MEM (128ull << 20)
#define MAX_DISKS 4

/* "virtio-blk, virtio-console, ..." */
static const char *device_names(void) {
    static char names[200];
    size_t at = 0;
    const struct virtio_device_ops *ops;
    for (unsigned i = 0; (ops = virtio_device_at(i)) && at < sizeof names; i++)
        at += (size_t)snprintf(names + at, sizeof names - at, "%s%s", i ? ", " : "", ops->name);
    return names;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: bellhop run [options]\n"
            "       bellhop --version\n"
            "       " BENCH_USAGE "\n"
            "                       trap round trips against the raw KVM floor and QEMU, Linux\n"
            "                       boot to init, idle memory, and the traps with --trace-file\n"
            "                       (timeline; all four unless --only)\n"
            "\n"
            "Boots a guest on KVM. Without --kernel, boots the bundled tiny guest.\n"
            "  --kernel FILE        a Linux bzImage (64-bit boot protocol), or a PVH ELF kernel\n"
            "                       (the Xen PVH entry note); bellhop unpacks a bzImage's gzip,\n"
            "                       xz, LZ4 or zstd kernel itself, at a random place (KASLR)\n"
            "                       unless the command line says nokaslr\n"
            "  --guest-decompress   leave a bzImage's kernel to its own decompressor, in the guest\n"
            "                       (slower)\n"
            "  --initrd FILE        the initrd (a bzImage's ramdisk, or a PVH kernel's module\n"
            "                       after the device tree)\n"
            "  --cmdline STRING     kernel command line (also /chosen/bootargs)\n"
            "  --mem SIZE           guest RAM, e.g. 256M or 1G (default 128M, %llu M to %llu M)\n"
            "  --cpus N             vCPUs (default 1, at most %d)\n"
            "  --disk PATH[,OPT...] a virtio-blk disk backed by a file (up to %d); options: ro,\n"
            "                       direct (O_DIRECT), async (every request through io_uring),\n"
            "                       sync (none; by default io_uring, except what a file in\n"
            "                       tmpfs serves better at once), queues=N (default: one per\n"
            "                       vCPU, at most 4)\n"
            "  --disk vhost-user=SOCKET  a virtio-blk disk served by a vhost-user backend\n"
            "                       (qemu-storage-daemon's vhost-user-blk export, SPDK, ...)\n"
            "  --fs SOCKET,tag=TAG  a host directory shared by virtiofsd (vhost-user-fs); the\n"
            "                       guest mounts it with mount -t virtiofs TAG DIR\n"
            "  --console KIND       serial (default) or virtio\n"
            "  --rng                a virtio-rng device\n"
            "  --net tap=NAME       a virtio-net device on tap interface NAME\n"
            "  --device NAME        a virtio device with its defaults, by name:\n"
            "                       %s\n"
            "  --api-sock PATH      serve Firecracker's API on the Unix socket PATH; boot on its\n"
            "                       InstanceStart (docs/api.md)\n"
            "  --config-file FILE   the VM from Firecracker's config file (JSON); boots at once,\n"
            "                       or with --api-sock, and serves the API too. Either one gives\n"
            "                       the kernel, memory, CPUs and devices: their flags are refused\n"
            "  --restore STATE      run the snapshot in STATE and --mem-file MEM (PUT /snapshot/\n"
            "  --mem-file MEM       create's files): it goes on where it was paused (docs/snapshots.md)\n"
            "  --trace traps        print every trap packet with the guest instruction\n"
            "  --trace-file FILE    a timeline of the run for Perfetto (Chrome's JSON trace format):\n"
            "                       each exit, bell handler and interrupt, boot markers and\n"
            "                       console lines, exits per 100 ms (docs/timeline.md)\n"
            "  --boot-markers       print the time since start of each boot marker (outl to 0x80)\n"
            "  --start-time-us US   count that time (and --trace-file's) from US, the launcher's\n"
            "                       CLOCK_MONOTONIC in microseconds when it started bellhop\n"
            "  --stats              when the VM ends, print exits by kind, and per trap and per\n"
            "                       virtio queue: counts and handler times\n"
            "  --dispatch KIND      run register accesses inline on the vCPU thread (default) or\n"
            "                       on the loop thread (loop)\n"
            "  --bench-bell         a bell at 0xd8000000 whose handler only bumps the word at\n"
            "                       0x5000 (bellhop bench's bell-to-flag)\n"
            "  --profile FILE       sample each vCPU's RIP every millisecond into FILE (time, cpu,\n"
            "                       address, function), and print the functions seen most\n"
            "  --profile-symbols MAP  name them from a System.map or /proc/kallsyms listing\n"
            "                       (default: the kernel ELF's own symbol table)\n"
            "  --no-seccomp         no seccomp sandbox (for debugging; sanitizer builds have none)\n"
            "  --pvm-anyway         on a PVM host, run a kernel linked in the top 2 GiB all the same\n"
            "                       (refused otherwise: only kernels built for PVM run well there)\n"
            "  -h, --help           this text\n"
            "\n"
            "The guest's device tree is its first PVH module. Ctrl-A x quits.\n"
            "Exit status: the guest's (written to port 0xf4); 0 when the guest powers off or\n"
            "resets; 1 on errors or a guest crash; 2 on bad usage; 159 when a thread made a system\n"
            "call outside its seccomp allowlist.\n",
            MIN_MEM >> 20, MAX_MEM >> 20, MACHINE_MAX_CPUS, MAX_DISKS, device_names());
}

__attribute__((format(printf, 1, 2))) static int bad_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bellhop: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see bellhop run --help)\n");
    va_end(ap);
    return EXIT_USAGE;
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

static const char *bundled_kernel(void) {
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

/* --disk PATH[,ro][,direct][,sync|,async][,queues=N]: the options cut off PATH. 0, or 2 when told why. */
static int parse_disk_options(char *arg, struct virtio_blk_params *d) {
    char *opt = strchr(arg, ',');
    if (!opt) return 0;
    *opt++ = 0;
    for (char *next; opt; opt = next) {
        if ((next = strchr(opt, ','))) *next++ = 0;
        if (strcmp(opt, "ro") == 0) d->read_only = true;
        else if (strcmp(opt, "direct") == 0) d->direct = true;
        else if (strcmp(opt, "sync") == 0) d->engine = BLK_IO_SYNC;
        else if (strcmp(opt, "async") == 0) d->engine = BLK_IO_ASYNC;
        else if (strncmp(opt, "queues=", 7) == 0) {
            char *end;
            unsigned long n = strtoul(opt + 7, &end, 10);
            if (opt[7] < '0' || opt[7] > '9' || *end || n < 1 || n > VIRTIO_MAX_QUEUES)
                return bad_usage("--disk %s: queues=%s: 1 to %d", arg, opt + 7, VIRTIO_MAX_QUEUES);
            d->queues = (unsigned)n;
        } else {
            return bad_usage("--disk %s: unknown option %s (ro, direct, sync, async, queues=N)", arg, opt);
        }
    }
    return 0;
}

static bool add_device(struct machine_config *cfg, const struct virtio_device_ops *ops, const void *params) {
    if (cfg->ndevices == MACHINE_MAX_DEVICES) return false;
    cfg->devices[cfg->ndevices++] = (struct machine_device){ops, params};
    return true;
}

static int cmd_run(int argc, char **argv) {
    struct machine_config cfg = {.cmdline = "", .mem = DEFAULT_MEM, .cpus = 1, .console = CONSOLE_SERIAL,
                                 .start_ns = zx_clock_get_monotonic(), .sandbox = sandbox_supported()};
    cfg.main_ns = cfg.start_ns;
    enum { O_KERNEL = 256, O_INITRD, O_CMDLINE, O_MEM, O_CPUS, O_DISK, O_CONSOLE, O_RNG, O_TRACE, O_MARKERS, O_NET, O_DISPATCH, O_STATS, O_NO_SECCOMP, O_BENCH_BELL, O_PROFILE, O_PROFILE_SYMBOLS, O_GUEST_DECOMPRESS, O_PVM_ANYWAY, O_DEVICE, O_API_SOCK, O_CONFIG_FILE, O_TRACE_FILE, O_RESTORE, O_MEM_FILE, O_FS, O_START_TIME };
    struct virtio_blk_params disks[MAX_DISKS];
    struct vhost_user_params vhost_disks[MAX_DISKS], fs = {0};
    const struct virtio_device_ops *disk_ops[MAX_DISKS];
    unsigned ndisks = 0, nextra = 0;
    struct virtio_net_params net = {0};
    const struct virtio_device_ops *extra[MACHINE_MAX_DEVICES];
    bool rng = false;
    static const struct option opts[] = {
        {"kernel", required_argument, 0, O_KERNEL}, {"initrd", required_argument, 0, O_INITRD},
        {"cmdline", required_argument, 0, O_CMDLINE}, {"mem", required_argument, 0, O_MEM},
        {"cpus", required_argument, 0, O_CPUS},     {"disk", required_argument, 0, O_DISK},
        {"console", required_argument, 0, O_CONSOLE}, {"rng", no_argument, 0, O_RNG},
        {"device", required_argument, 0, O_DEVICE}, {"api-sock", required_argument, 0, O_API_SOCK},
        {"config-file", required_argument, 0, O_CONFIG_FILE}, {"restore", required_argument, 0, O_RESTORE},
        {"mem-file", required_argument, 0, O_MEM_FILE}, {"fs", required_argument, 0, O_FS}, {"trace-file", required_argument, 0, O_TRACE_FILE},
        {"trace", required_argument, 0, O_TRACE},   {"help", no_argument, 0, 'h'},
        {"boot-markers", no_argument, 0, O_MARKERS}, {"start-time-us", required_argument, 0, O_START_TIME}, {"net", required_argument, 0, O_NET},
        {"dispatch", required_argument, 0, O_DISPATCH}, {"stats", no_argument, 0, O_STATS},
        {"no-seccomp", no_argument, 0, O_NO_SECCOMP}, {"bench-bell", no_argument, 0, O_BENCH_BELL},
        {"profile", required_argument, 0, O_PROFILE}, {"profile-symbols", required_argument, 0, O_PROFILE_SYMBOLS},
        {"guest-decompress", no_argument, 0, O_GUEST_DECOMPRESS}, {"pvm-anyway", no_argument, 0, O_PVM_ANYWAY},
        {0, 0, 0, 0},
    };
    opterr = 0;
    optind = 1;
    int c;
    /* What the config file or the API gives, when there is one: the flags would be a second
     * source of the same facts, so they are refused then. */
    const char *machine_flag = NULL, *api_sock = NULL, *config_file = NULL, *restore = NULL, *mem_file = NULL;
    /* The options that name a file, each of which must name one. */
    const struct {
        int opt;
        const char **to;
    } paths[] = {{O_API_SOCK, &api_sock},        {O_TRACE_FILE, &cfg.trace_file}, {O_CONFIG_FILE, &config_file},
                 {O_RESTORE, &restore},          {O_MEM_FILE, &mem_file},         {O_PROFILE, &cfg.profile},
                 {O_PROFILE_SYMBOLS, &cfg.profile_symbols}};
    int idx = 0;
    while ((c = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
        size_t p = 0;
        while (p < sizeof paths / sizeof paths[0] && paths[p].opt != c) p++;
        if (p < sizeof paths / sizeof paths[0]) {
            if (!*optarg) return bad_usage("--%s: empty path", opts[idx].name);
            *paths[p].to = optarg;
            continue;
        }
        if (c == O_KERNEL || c == O_INITRD || c == O_CMDLINE || c == O_MEM || c == O_CPUS || c == O_DISK ||
            c == O_RNG || c == O_NET || c == O_DEVICE || c == O_FS)
            machine_flag = argv[optind - 1][0] == '-' ? argv[optind - 1] : argv[optind - 2];
        switch (c) {
        case 'h': usage(stdout); return 0;
        case O_KERNEL: cfg.kernel = optarg; break;
        case O_INITRD: cfg.initrd = optarg; break;
        case O_CMDLINE:
            if (strlen(optarg) > 4095) return bad_usage("--cmdline: longer than 4095 bytes");
            cfg.cmdline = optarg;
            break;
        case O_MEM:
            if (!parse_size(optarg, &cfg.mem)) return bad_usage("--mem %s: not a size (try 256M)", optarg);
            if (cfg.mem < MIN_MEM || cfg.mem > MAX_MEM)
                return bad_usage("--mem %s: must be between %lluM and %lluM", optarg, MIN_MEM >> 20, MAX_MEM >> 20);
            if (cfg.mem & 0xfff) return bad_usage("--mem %s: not a multiple of 4K", optarg);
            break;
        case O_CPUS: {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || end == optarg || n < 1 || n > MACHINE_MAX_CPUS)
                return bad_usage("--cpus %s: must be 1 to %d", optarg, MACHINE_MAX_CPUS);
            cfg.cpus = (unsigned)n;
            break;
        }
        case O_DISK: {
            if (ndisks == MAX_DISKS) return bad_usage("--disk: at most %d disks", MAX_DISKS);
            if (strncmp(optarg, "vhost-user=", 11) == 0) {
                if (!optarg[11]) return bad_usage("--disk vhost-user=: empty socket path");
                disk_ops[ndisks] = &vhost_user_blk_ops;
                vhost_disks[ndisks++] = (struct vhost_user_params){.socket = optarg + 11};
                break;
            }
            struct virtio_blk_params d = {.path = optarg};
            if (parse_disk_options(optarg, &d) != 0) return 2;
            if (!*optarg) return bad_usage("--disk: empty path");
            disk_ops[ndisks] = &virtio_blk_ops;
            disks[ndisks++] = d;
            break;
        }
        case O_CONSOLE:
            if (strcmp(optarg, "serial") == 0) cfg.console = CONSOLE_SERIAL;
            else if (strcmp(optarg, "virtio") == 0) cfg.console = CONSOLE_VIRTIO;
            else return bad_usage("--console %s: serial or virtio", optarg);
            break;
        case O_RNG: rng = true; break;
        case O_FS: {
            char *tag = strstr(optarg, ",tag=");
            if (!tag || tag == optarg || !tag[5]) return bad_usage("--fs %s: expected SOCKET,tag=TAG", optarg);
            if (fs.socket) return bad_usage("--fs: only one shared directory");
            *tag = 0;
            fs = (struct vhost_user_params){.socket = optarg, .tag = tag + 5};
            break;
        }
        case O_DEVICE: {
            const struct virtio_device_ops *ops = virtio_device_find(optarg);
            if (!ops) return bad_usage("--device %s: unknown (there are %s)", optarg, device_names());
            if (nextra == MACHINE_MAX_DEVICES) return bad_usage("--device: at most %d", MACHINE_MAX_DEVICES);
            extra[nextra++] = ops;
            break;
        }
        case O_MARKERS: cfg.boot_markers = true; break;
        case O_START_TIME: {
            char *end;
            errno = 0;
            unsigned long long us = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] < '0' || optarg[0] > '9' || us == 0 || us > cfg.main_ns / 1000)
                return bad_usage("--start-time-us %s: the launcher's CLOCK_MONOTONIC time in microseconds, not in the "
                                 "future", optarg);
            cfg.start_ns = us * 1000;
            break;
        }
        case O_GUEST_DECOMPRESS: cfg.guest_decompress = true; break;
        case O_STATS: cfg.stats = true; break;
        case O_NO_SECCOMP: cfg.sandbox = false; break;
        case O_PVM_ANYWAY: cfg.pvm_anyway = true; break;
        case O_BENCH_BELL: cfg.bench_bell = true; break;
        case O_DISPATCH:
            if (strcmp(optarg, "inline") == 0) cfg.dispatch_loop = false;
            else if (strcmp(optarg, "loop") == 0) cfg.dispatch_loop = true;
            else return bad_usage("--dispatch %s: inline or loop", optarg);
            break;
        case O_NET:
            if (strncmp(optarg, "tap=", 4) != 0 || !optarg[4]) return bad_usage("--net %s: expected tap=NAME", optarg);
            if (net.tap) return bad_usage("--net: only one network device");
            net.tap = optarg + 4;
            break;
        case O_TRACE:
            if (strcmp(optarg, "traps") != 0) return bad_usage("--trace %s: the only kind is traps", optarg);
            cfg.trace_traps = true;
            break;
        case '?':
        default:
            if (optopt) return bad_usage("option -%c: unknown or missing its argument", optopt);
            return bad_usage("%s: unknown option or missing argument", argv[optind - 1]);
        }
    }
    if (optind < argc) return bad_usage("unexpected argument %s", argv[optind]);
    if (!restore != !mem_file) return bad_usage("--restore STATE and --mem-file MEM go together");
    if (restore && config_file) return bad_usage("--restore: the snapshot is the configuration; no --config-file");
    if ((api_sock || config_file || restore) && machine_flag)
        return bad_usage("%s: with %s, the kernel, memory, CPUs and devices come from there, not from flags",
                         machine_flag, restore ? "--restore" : api_sock ? "--api-sock" : "--config-file");
    /* The devices in a fixed order, which fixes their places (and a Linux guest's names) */
    struct virtio_console_params console = {STDIN_FILENO, STDOUT_FILENO};
    if (cfg.console == CONSOLE_VIRTIO) add_device(&cfg, &virtio_console_ops, &console);
    if (rng) add_device(&cfg, virtio_device_find("virtio-rng"), NULL);
    for (unsigned i = 0; i < ndisks; i++) {
        if (!disks[i].queues) disks[i].queues = virtio_blk_queues(cfg.cpus);
        add_device(&cfg, disk_ops[i], disk_ops[i] == &virtio_blk_ops ? (const void *)&disks[i] : &vhost_disks[i]);
    }
    if (fs.socket) add_device(&cfg, &vhost_user_fs_ops, &fs);
    if (net.tap) add_device(&cfg, &virtio_net_ops, &net);
    for (unsigned i = 0; i < nextra; i++)
        if (!add_device(&cfg, extra[i], NULL)) return bad_usage("at most %d virtio devices", MACHINE_MAX_DEVICES);
    if (cfg.profile_symbols && !cfg.profile) return bad_usage("--profile-symbols needs --profile FILE");
    if (api_sock || config_file || restore) return api_run(&cfg, api_sock, config_file, restore, mem_file);
    if (!cfg.kernel && !(cfg.kernel = bundled_kernel())) {
        fprintf(stderr, "bellhop: cannot find the bundled guest\n");
        return 1;
    }
    return machine_run(&cfg);
}

/* Threads get 1 MiB stacks instead of glibc's 8 MiB: a stack mapping of 2 MiB or more can be
 * backed by a transparent huge page, 2 MiB resident for the few KiB a thread uses. */
static void small_thread_stacks(void) {
    pthread_attr_t a;
    if (pthread_attr_init(&a) != 0) return;
    if (pthread_attr_setstacksize(&a, 1u << 20) == 0) pthread_setattr_default_np(&a);
    pthread_attr_destroy(&a);
}

int main(int argc, char **argv) {
    small_thread_stacks();
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("bellhop " BELLHOP_VERSION "\n");
        return 0;
    }
    if (strcmp(argv[1], "run") == 0) return cmd_run(argc - 1, argv + 1);
    if (strcmp(argv[1], "bench") == 0) {
        const char *k = bundled_kernel();
        if (!k) return bad_usage("cannot find the bundled guest");
        return bench_main(argc - 1, argv + 1, k);
    }
    return bad_usage("unknown command %s", argv[1]);
}
