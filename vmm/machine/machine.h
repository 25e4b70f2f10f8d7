/* The machine: guest memory, the PVH boot, devices wired to traps, vCPU threads and the
 * async loop.
 *
 * Threading model:
 *   - one thread per vCPU runs zx_vcpu_enter and dispatches its synchronous packets (MEM, IO)
 *     inline to the device's ops (or, with --dispatch loop, as a task on the loop thread that it
 *     waits for), and its GUEST_VCPU packets (start a CPU, send interrupts);
 *   - one async-loop thread runs everything asynchronous: bells (virtqueue notifications),
 *     fd waits (console input, disks), timers;
 *   - the main thread sets up, waits for the VM to end, then tears down in order: vCPUs
 *     (kicked and joined), the loop (shut down), devices, the guest; it prints the crash
 *     report a vCPU left;
 *   - restored through a page-fault handler, one more thread watches the handler
 *     (vmm/machine/uffd_backend.h).
 * Once set up, each thread confines itself to its role's seccomp allowlist (vmm/sandbox/sandbox.h).
 */
#ifndef BELLHOP_VMM_MACHINE_MACHINE_H
#define BELLHOP_VMM_MACHINE_MACHINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zircon/types.h>

#define MACHINE_MAX_DEVICES 12
#define MACHINE_MAX_CPUS 32 /* Firecracker's vcpu_count bound; the vCPU-control device's masks hold 64 */
#define MACHINE_MAX_MODULES 16 /* multiboot's (firmware/multiboot.h), the initrd among them */
#define MACHINE_MIN_MEM (4ull << 20)
/* RAM past 3 GiB goes on at 4 GiB (base/guest_mem.h); the bound keeps the bitmaps and page
 * tables a snapshot or the dirty log builds for it small (64 GiB: 2 MiB a bitmap). */
#define MACHINE_MAX_MEM (64ull << 30)

enum console_kind { CONSOLE_SERIAL, CONSOLE_VIRTIO };

struct virtio_device_ops;
struct snapshot;

/* A machine brought back from a snapshot rather than booted (vmm/machine/snapshot.c). */
struct machine_restore {
    const struct snapshot *state; /* parsed and checked (vmm/machine/snapshot_file.h) */
    int mem_fd;                   /* the memory file: mapped private, read as the guest touches it */
    /* or, not NULL: the socket of a page-fault handler process that serves guest RAM, which
     * is anonymous (Firecracker's Uffd backend, vmm/machine/uffd_backend.h; mem_fd is -1) */
    const char *uffd_socket;
    bool paused;                  /* the vCPUs wait for machine_resume */
};

/* One virtio device: its declaration (devices/virtio_devices.h) and its parameters (the
 * device's params struct, or NULL; they must outlive machine_run). Placed in list order. */
struct machine_device {
    const struct virtio_device_ops *ops;
    const void *params;
};

struct machine_config {
    const char *kernel; /* a PVH ELF or a bzImage */
    bool guest_decompress; /* a bzImage's kernel unpacked by its own decompressor, not by bellhop */
    bool kernel_cache; /* --kernel-cache: a bzImage's kernel from the cache of unpacked kernels (vmm/machine/kernel_cache.h) */
    const char *initrd; /* NULL: none */
    const char *cmdline;
    uint64_t mem;
    unsigned cpus;
    /* machine-config's smt: the guest's CPUID shows two threads per core, cpu 2k and 2k+1
     * the threads of core k (cpus 1 or even); false: one thread per core, KVM's CPUID as it is */
    bool smt;
    /* machine-config's track_dirty_pages: KVM's dirty log and the VMM's own writes into guest
     * RAM are kept, for diff snapshots (machine_snapshot) */
    bool track_dirty;
    struct machine_device devices[MACHINE_MAX_DEVICES];
    unsigned ndevices;
    enum console_kind console; /* CONSOLE_SERIAL: the 16550 has stdin (a virtio-console is a device) */
    bool trace_traps;
    const char *trace_file; /* --trace-file: the timeline written there at the end (vmm/observe/timeline.h) */
    bool boot_markers;  /* print each boot marker (outl to port 0x80) */
    bool bench_bell;    /* the bench's flag-bumping bell (devices/bench_bell.h) */
    bool dispatch_loop; /* register accesses run on the loop thread, not the vCPU's */
    bool halt_poll_set; /* --halt-poll-ns: KVM's halt polling for this VM is halt_poll_ns */
    uint64_t halt_poll_ns;
    bool idle_in_guest; /* --cpu-pm on: HLT and PAUSE stay in the guest */
    bool stats;         /* print per-trap counts and handler times when the VM ends */
    bool metrics;       /* count per trap and queue all the same, for machine_metrics_line */
    const char *profile;         /* sample each vCPU's RIP into this file (vmm/observe/profile.h); NULL: no */
    const char *profile_symbols; /* a System.map / kallsyms listing naming them; NULL: the kernel's */
    bool sandbox;       /* each thread under its seccomp allowlist once set up (vmm/sandbox/sandbox.h) */
    bool pvm_anyway;    /* on a PVM host, run a kernel linked in the top 2 GiB all the same */
    uint64_t start_ns;  /* CLOCK_MONOTONIC when the VMM started (or its launcher, --start-time-us), for boot markers */
    uint64_t main_ns;   /* when bellhop's own code started: start_ns to it is exec and the dynamic loader */
    struct machine_control *control; /* NULL: none */
    const struct machine_restore *restore; /* NULL: boot the kernel */
    /* A VM made before the configuration came (machine_prepare_vm), which machine_run takes
     * over whatever happens; ZX_HANDLE_INVALID (0): it makes its own. */
    zx_handle_t prepared_vm;
    /* --module FILE[,ARGS]: a multiboot kernel's modules after the initrd (which is module 0);
     * args NULL: none */
    struct machine_module {
        const char *path, *args;
    } modules[MACHINE_MAX_MODULES];
    unsigned nmodules;
    /* --exit-device qemu: a write of v to port 0xf4 ends the VMM with (v << 1) | 1, as QEMU's
     * isa-debug-exit (iosize 4) does; else with v, bellhop's own exit device */
    bool exit_qemu;
};

struct machine;
struct async_dispatcher;
struct virtio_dev;

/* A control plane (vmm/control/api.h) beside the machine: told when the machine is set up and about
 * to run, so that it can serve on the machine's loop and call the functions below from there. */
struct machine_control {
    /* Main thread, the loop not yet running: the machine is set up (nothing failed). */
    void (*attach)(struct machine_control *c, struct machine *m, struct async_dispatcher *loop);
    /* Main thread, every thread of the machine started: the guest runs. */
    void (*started)(struct machine_control *c);
};

/* For the control plane, on the loop thread. machine_pause: every vCPU out of KVM_RUN and
 * parked (0), or -1 with the reason; machine_resume lets them go on where they stopped. */
int machine_pause(struct machine *m, char *err, size_t errlen);
void machine_resume(struct machine *m);
bool machine_paused(struct machine *m);
/* One line of JSON (no newline): the time and the machine's counters, for a metrics file. */
void machine_metrics_line(struct machine *m, char *buf, size_t len);
/* The instance made from cfg->devices[i]; NULL past them. */
struct virtio_dev *machine_device(struct machine *m, unsigned i);
/* --trace-file's timeline (vmm/observe/timeline.h), or NULL. */
struct timeline *machine_timeline(struct machine *m);
/* The keyboard's Ctrl+Alt+Del, as a Linux guest's i8042 driver sees it. */
void machine_ctrl_alt_del(struct machine *m);
/* Paused, on the loop thread: writes the snapshot's state file (config_json: the machine's
 * configuration, what restoring it makes again) and its memory file: all of guest RAM, or
 * with `diff` (track_dirty only) the pages written since the last snapshot (since boot or the
 * restore for the first). 0, or -1 with the reason; the machine is as it was either way (a
 * failed snapshot does not count as the last). */
int machine_snapshot(struct machine *m, const char *config_json, const char *state_path, const char *mem_path,
                     bool diff, char *err, size_t errlen);

/* The one-line reason the last machine_run on this thread failed before the guest ran. */
const char *machine_last_error(void);

/* Runs the VM to its end. Returns the VMM's exit status: the guest's (exit device), 0 on
 * guest power-off or reset; on failure prints one line to stderr and returns 1. */
int machine_run(const struct machine_config *cfg);

/* The KVM VM, made while a control plane waits for the request that configures it: on a PVM
 * host creating it (KVM_CREATE_VM, the host's CPUID) was a quarter of a restore. Nothing of
 * it depends on the configuration (no RAM, no interrupt controllers: RAM is registered
 * first, vmm/hv/vm.c says why). ZX_HANDLE_INVALID when it cannot be made: machine_run then
 * tries again and says why. */
zx_handle_t machine_prepare_vm(void);

#define EXIT_GUEST_CRASH 1

#endif
