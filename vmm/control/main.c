/* bellhop command line. */
#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/control/cli.h"
#include "vmm/control/snapshot_cmd.h"
#include "vmm/machine/kernel_cache.h"
#include "vmm/machine/kernel_cache_filler.h"
#include "bench/bellhop_bench/bench.h"
#include "bench/bellhop_bench/launch_floor.h"
#include "vmm/machine/machine.h"
#include "vmm/control/version.h"


static void usage(FILE *f) {
    fprintf(f,
            "usage: bellhop run [options]\n"
            "       bellhop --version\n"
            "       " SNAPSHOT_CMD_USAGE "\n"
            "                       a Diff snapshot's memory file copied onto its base's\n"
            "       " BENCH_USAGE "\n"
            "                       trap round trips against the raw KVM floor and QEMU, Linux\n"
            "                       boot to init, idle memory, and the traps with --trace-file\n"
            "                       (timeline; all four unless --only); with --vmexit,\n"
            "                       kvm-unit-tests' vmexit.flat under bellhop and QEMU\n"
            "\n"
            "Boots a guest on KVM. Without --kernel, boots the bundled tiny guest.\n"
            "  --kernel FILE        a Linux bzImage (64-bit boot protocol), a PVH ELF kernel\n"
            "                       (the Xen PVH entry note) or a multiboot (v1) kernel, as QEMU's\n"
            "                       -kernel boots it (docs/other-kernels.md); bellhop unpacks a\n"
            "                       bzImage's gzip, xz, LZ4 or zstd kernel itself, at a random\n"
            "                       place (KASLR) unless the command line says nokaslr\n"
            "  --guest-decompress   leave a bzImage's kernel to its own decompressor, in the guest\n"
            "                       (slower)\n"
            "  --kernel-cache       keep a bzImage's unpacked kernel in ~/.cache/bellhop/kernels:\n"
            "                       from the second launch on it is mapped, not decoded\n"
            "  --initrd FILE        the initrd (a bzImage's ramdisk, or a PVH kernel's module\n"
            "                       after the device tree; a multiboot kernel's module 0)\n"
            "  --module FILE[,ARGS] a multiboot kernel's next module, its string FILE ARGS\n"
            "                       (repeatable; at most %d modules with the initrd)\n"
            "  --cmdline STRING     kernel command line (also /chosen/bootargs)\n"
            "  --mem SIZE           guest RAM in whole MiB, e.g. 256M or 1G (default 128M, %llu M to\n"
            "                       %llu M)\n"
            "  --cpus N             vCPUs (default 1, at most %d)\n"
            "  --smt                two threads per core in the guest's CPUID (N 1 or even)\n"
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
            "  --net user[,hostfwd=tcp:[ADDR]:PORT-:PORT][,restrict=on]\n"
            "                       ... on user-mode networking (no root, no tap): DHCP, the host as\n"
            "                       10.0.2.2, host ports forwarded into the guest\n"
            "  --net passt[,ARG...]  ... on passt, which bellhop starts (no root, no tap): the\n"
            "                       host's address by DHCP; each ARG is one of passt's (-t,PORT)\n"
            "  --net stream=SOCKET  ... on the Unix stream socket SOCKET another process serves\n"
            "                       (a passt given that socket, QEMU's -netdev stream): a peer gone\n"
            "                       is a link down\n"
            "  --vsock cid=N,uds=PATH  a virtio-vsock device, the guest's CID N; the host\n"
            "                       connects to PATH and writes CONNECT <port>, the guest to\n"
            "                       host port P reaches PATH_P (Firecracker's; docs/devices.md)\n"
            "  --device NAME        a virtio device with its defaults, by name:\n"
            "                       %s\n"
            "  --api-sock PATH      serve Firecracker's API on the Unix socket PATH; boot on its\n"
            "                       InstanceStart (docs/api.md)\n"
            "  --config-file FILE   the VM from Firecracker's config file (JSON); boots at once,\n"
            "                       or with --api-sock, and serves the API too. Either one gives\n"
            "                       the kernel, memory, CPUs and devices: their flags are refused\n"
            "  --restore STATE      run the snapshot in STATE and --mem-file MEM (PUT /snapshot/\n"
            "  --mem-file MEM       create's files): it goes on where it was paused (docs/snapshots.md)\n"
            "  --mem-uffd SOCKET    with --restore, guest RAM served by the page-fault handler\n"
            "                       listening on SOCKET (Firecracker's Uffd backend) instead\n"
            "  --metadata FILE      with --api-sock or --config-file: the JSON in FILE is the MMDS\n"
            "                       store's first content, as PUT /mmds would make it (docs/api.md)\n"
            "  --mmds-size-limit BYTES  the MMDS store's bound (default 51200)\n"
            "  --exit-device KIND   what a write of V to port 0xf4 ends bellhop with: bellhop\n"
            "                       (default): V; qemu: (V << 1) | 1, QEMU's isa-debug-exit\n"
            "                       (iosize=4), as kvm-unit-tests expects\n"
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
            "  --halt-poll-ns NS    KVM polls a halted vCPU this long before it sleeps (default:\n"
            "                       the host's halt_poll_ns; 0: never)\n"
            "  --cpu-pm on|off      on: HLT and PAUSE stay in the guest, no exit (for vCPUs with a\n"
            "                       host CPU each: an idle vCPU holds its CPU)\n"
            "  --bench-bell         a bell at 0xd8000000 whose handler only bumps the word at\n"
            "                       0x5000 (bellhop bench's bell-to-flag)\n"
            "  --profile FILE       sample each vCPU's RIP every millisecond into FILE (time, cpu,\n"
            "                       address, function), and print the functions seen most\n"
            "  --profile-symbols MAP  name them from a System.map or /proc/kallsyms listing\n"
            "                       (default: the kernel ELF's own symbol table)\n"
            "  --no-seccomp         no seccomp sandbox (for debugging; sanitizer builds have none)\n"
            "  --print-config       print the VM the flags describe as a config file (JSON: what\n"
            "                       --config-file and GET /vm/config read), and exit\n"
            "  --pvm-anyway         on a PVM host, run a kernel linked in the top 2 GiB all the same\n"
            "                       (refused otherwise: only kernels built for PVM run well there)\n"
            "  -h, --help           this text\n"
            "\n"
            "The guest's device tree is its first PVH module. Ctrl-A x quits.\n"
            "Exit status: the guest's (written to port 0xf4; see --exit-device); 0 when the guest powers off or\n"
            "resets; 1 on errors or a guest crash; 2 on bad usage; 159 when a thread made a system\n"
            "call outside its seccomp allowlist.\n",
            MACHINE_MAX_MODULES, MACHINE_MIN_MEM >> 20, MACHINE_MAX_MEM >> 20, MACHINE_MAX_CPUS, CLI_MAX_DISKS,
            cli_device_names());
}

/* bellhop run: the command line (vmm/control/cli.h), then the VM it describes. */
static int cmd_run(int argc, char **argv) {
    struct cli_run r;
    int status = cli_parse_run(argc, argv, &r);
    if (status == 0 && r.help) usage(stdout);
    else if (status == 0) status = cli_run(&r);
    vm_spec_free(&r.spec);
    return status;
}

/* Threads get 1 MiB stacks instead of glibc's 8 MiB: a stack mapping of 2 MiB or more can be
 * backed by a transparent huge page, 2 MiB resident for the few KiB a thread uses. */
static void small_thread_stacks(void) {
    pthread_attr_t a;
    if (pthread_attr_init(&a) != 0) return;
    if (pthread_attr_setstacksize(&a, 1u << 20) == 0) pthread_setattr_default_np(&a);
    pthread_attr_destroy(&a);
}

/* kernel-cache-fill PATH MIN_PADDR ALIGN KASLR [GATE_FD]: one more entry for a launch's bzImage. */
static int cmd_kernel_cache_fill(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: bellhop kernel-cache-fill BZIMAGE MIN_PADDR ALIGN KASLR [GATE_FD] (started by bellhop "
                        "run)\n");
        return 2;
    }
    /* its launch's guest entered (or that launch gone) first: vmm/machine/kernel_cache_filler.h */
    if (argc == 6) kernel_cache_await_gate(atoi(argv[5]));
    /* nothing of the launch that started it is kept open (its VM, its sockets); and only a CPU
     * nothing else wants (its launch, the guest's boot) */
    close_range(3, ~0u, 0);
    struct sched_param idle = {.sched_priority = 0};
    sched_setscheduler(0, SCHED_IDLE, &idle);
    char err[400];
    struct kernel_cache c;
    kernel_cache_init(&c, NULL);
    int r = kernel_cache_fill(&c, argv[1], strtoull(argv[2], NULL, 0), strtoull(argv[3], NULL, 0),
                              strcmp(argv[4], "1") == 0, err, sizeof err);
    kernel_cache_close(&c);
    if (r != 0) fprintf(stderr, "bellhop: the kernel cache was not filled: %s\n", err);
    return r != 0;
}

int main(int argc, char **argv) {
    small_thread_stacks();
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("bellhop " BELLHOP_VERSION "\n");
        return 0;
    }
    if (strcmp(argv[1], "run") == 0) return cmd_run(argc - 1, argv + 1);
    /* (bellhop's own, started by a launch with --kernel-cache: vmm/machine/kernel_cache.h) */
    if (strcmp(argv[1], "kernel-cache-fill") == 0) return cmd_kernel_cache_fill(argc - 1, argv + 1);
    /* (bench's, the launch figures' yardstick: bench/bellhop_bench/launch_floor.h) */
    if (strcmp(argv[1], "launch-floor") == 0) return launch_floor_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "snapshot") == 0) return cmd_snapshot(argc - 1, argv + 1);
    if (strcmp(argv[1], "bench") == 0) {
        const char *k = cli_bundled_kernel();
        if (!k) return cli_bad_usage("cannot find the bundled guest");
        return bench_main(argc - 1, argv + 1, k);
    }
    return cli_bad_usage("unknown command %s", argv[1]);
}
