/* What the machine's files share. Each does one job:
 *   machine.c          lifecycle and threads: setup in order, the vCPU threads and their exits
 *                      (dispatch to devices, inline or on the loop), the loop thread, teardown;
 *   machine_boot.c     the kernel and initrd into guest memory, the boot data beside them, and
 *                      the boot vCPU's registers;
 *   machine_devices.c  device wiring: every device's window, trap, interrupt and device-tree
 *                      entry, the interrupt services lent to devices, and their teardown;
 *   machine_report.c   what the machine tells: --trace traps, crash reports, --stats, and
 *                      --boot-markers' setup phases.
 * The machine owns everything in struct machine; a struct cpu belongs to its vCPU thread
 * while it runs (but for the fields marked m->lock), and to the main thread once joined.
 */
#ifndef BELLHOP_VMM_MACHINE_MACHINE_PARTS_H
#define BELLHOP_VMM_MACHINE_MACHINE_PARTS_H

#include <lib/async-loop/loop.h>
#include <lib/async/receiver.h>
#include <lib/async/task.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zircon/syscalls/hypervisor.h>
#include <zircon/syscalls/port.h>

#include "devices/device.h"
#include "vmm/machine/kernel_cache_filler.h"
#include "devices/pci.h"
#include "firmware/bzimage.h"
#include "firmware/fdt.h"
#include "firmware/pvh.h"
#include "vmm/machine/image_lease.h"
#include "vmm/machine/kernel_load.h"
#include "vmm/hv/kvm_host.h"
#include "vmm/machine/machine.h"

/* Guest-physical layout below the kernel (which PVH kernels load at 1 MiB or above). */
#define LAYOUT_START_INFO 0x6000u
#define LAYOUT_DTB 0x10000u
#define LAYOUT_DTB_SIZE 0x10000u
#define LAYOUT_KERNEL_MIN 0x100000u
/* virtio-mmio devices (the tiny guest's and other PVH kernels'): windows a page apart from
 * here, and IOAPIC pins from here (4 is COM1's), each described in the device tree. */
#define LAYOUT_VIRTIO_MMIO 0xd0000000u
#define LAYOUT_VIRTIO_MMIO_IRQ 5u
#define MAX_MAPPINGS 48
#define MAX_PCI_DEVICES 16
#define IOAPIC_PINS 24
#define UNASSIGNED_MMIO_BASE 0xc0000000u
#define UNASSIGNED_MMIO_SIZE 0x10000000u

/* --stats of one device window (vCPUs share devices, hence the lock). */
struct mapping_stats {
    struct handler_stats h;
    pthread_mutex_t lock;
};

/* A device window mapped at `base`: the trap key of every MEM/IO trap is its address. An
 * access reads only the first four words (the ops' handlers copied in, so the ops table is
 * not one more page for each exit to touch), and maps[] lies in the machine's first page. */
struct io_mapping {
    uint64_t (*read)(void *dev, uint64_t off, uint8_t size);
    void (*write)(void *dev, uint64_t off, uint8_t size, uint64_t value);
    void *dev;
    uint64_t origin; /* what offsets count from (a BAR may span several traps) */
    const struct io_ops *ops;
    uint64_t base, size;
    uint32_t kind;
    struct mapping_stats *stats; /* --stats */
};

struct machine;

/* What a vCPU that crashed left for the main thread to report (vCPU threads may not load
 * libcapstone under their sandbox). */
struct crash {
    bool crashed;
    zx_status_t status;
    char err[200];
    bool have_regs;
    zx_vcpu_state_t r;
    bellhop_vcpu_sregs_t s;
    uint8_t insn[15]; /* the instruction KVM could not emulate, when it gave its bytes */
    size_t insn_len;
};

struct cpu {
    struct machine *m;
    unsigned id;
    uint64_t entry;
    pthread_t thread;
    bool running;        /* thread started (m->lock) */
    bool created;        /* its zx_vcpu_create has returned (m->lock) */
    bool entry_later;    /* made before its kernel was loaded: entered after boot_cpu_go */
    int restored;        /* restoring (m->lock): 0 until its state is set, then 1, or -1 (said) */
    bool sandboxed;      /* its creator was sandboxed, so it is too */
    zx_handle_t vcpu;    /* m->lock; invalid until created and after it ends */
    bool parked;         /* m->lock: out of KVM_RUN, waiting for the resume */
    /* snapshots (m->lock): the save this vCPU last did, its state and status */
    unsigned saved_gen;
    uint8_t *saved;
    size_t saved_len;
    zx_status_t saved_status;
    struct crash crash;  /* written by the thread before it ends; read after the join */
};

/* Page-aligned (machine_run): its first page holds all that an exit reads (env's trace and
 * stats, dispatch_loop, maps[]), so that an exit touches one page of it. */
struct machine {
    struct vm_env env; /* first: devices get &env */
    enum kvm_host_kind host;
    const struct machine_config *cfg;
    bool dispatch_loop; /* cfg's, beside env's trace and stats: what every exit reads */
    async_receiver_t loop_call; /* --dispatch loop: register accesses handed to the loop */
    zx_handle_t guest;
    async_loop_t *loop;
    struct io_mapping maps[MAX_MAPPINGS];
    unsigned nmaps;
    struct mapping_stats map_stats[MAX_MAPPINGS];
    struct uart16550 *uart;
    struct debug_exit *exit_dev;
    struct rtc_mc146818 *rtc;
    struct i8042 *i8042;
    struct boot_marker *marker;
    struct profile *profile; /* --profile: each vCPU thread samples on its own tick */
    struct acpi_pm *pm;
    struct bench_bell *bench_bell;
    bool linux_smp; /* CPUs 1.. wait for INIT/SIPI from the guest's own LAPIC */
    bool virtio_pci; /* virtio devices on PCI rather than virtio-mmio */
    struct kernel_loaded loaded;  /* the kernel, and how it boots */
    /* --boot-markers: where setup's time went, phase by phase ("vm 20.3, memory 4.1, ...") */
    uint64_t setup_last_ns;
    char setup_phases[160];
    struct gm_files mem_files;    /* env.mem.files when RAM can take the kernel's and initrd's pages */
    struct image_leases leases;   /* on those files, while RAM shares their pages */
    /* cfg->track_dirty (snapshot_dirty.c): the pages written since the last snapshot
     * (env.mem.written: the VMM marks its writes here, and each snapshot gathers KVM's log of
     * the guest's), and those written before it since the machine started */
    struct dirty_pages dirty, touched;
    struct pci_bus pci;
    struct virtio_pci *vpci[MAX_PCI_DEVICES];
    unsigned nvpci;
    struct virtio_mmio *virtio[FDT_MAX_VIRTIO];
    unsigned nvirtio;
    struct fdt_machine fdt;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool exiting;
    int status;
    bool paused;      /* m->lock: the control plane paused the vCPUs (machine_pause) */
    unsigned save_gen; /* m->lock: parked vCPUs save their state when it moves on */
    uint64_t loop_turn_ns; /* --trace-file: when the loop's current handler began (loop thread) */
    struct cpu cpus[MACHINE_MAX_CPUS];
    int irqfds[IOAPIC_PINS]; /* -1 until raise_irq first needs it; the guest owns them */
    async_task_t loop_sandbox_task; /* the loop thread's first: confines it (--no-seccomp: not) */
    int loop_sandbox;        /* m->lock: 0 until the loop thread tried, then 1 or -1 */
    bool loop_released;      /* m->lock: setup is over (start_running); the loop may run handlers */
    bool ram_ready;          /* m->lock: RAM registered (and tracked): interrupt controllers may come */
    bool boot_cpu_go;        /* m->lock: the boot vCPU, made early, has its entry (boot_cpu_go) */
    uint64_t boot_entry;     /* the kernel's entry, for the boot vCPU (machine_load_kernel) */
    struct kernel_cache_filler filler; /* the kernel cache's, held until the guest has entered */
    char loop_sandbox_err[160];
    struct uffd_backend *uffd; /* restored through a page-fault handler: what serves RAM; else NULL */
    struct fw_cfg *fw_cfg;     /* QEMU's firmware configuration (RAM size, CPUs): multiboot kernels read it */
    struct acpi_pm_timer *pm_timer; /* a multiboot machine's (devices/acpi_pm_timer.h) */
    struct pc_testdev *testdev;     /* a multiboot machine's (devices/pc_testdev.h) */
};

_Static_assert(offsetof(struct machine, maps) + sizeof(((struct machine *)0)->maps) <= 4096,
               "what an exit reads of the machine fits its first page");

static inline struct machine *machine_of(struct vm_env *env) { return (struct machine *)env; }

/* machine.c */
/* Prints "bellhop: " and the message as one line to stderr; returns -1. */
__attribute__((format(printf, 1, 2))) int machine_fail(const char *fmt, ...);

/* machine_boot.c: called in this order by machine_run, each -1 (said) on failure */
int machine_load_kernel(struct machine *m);
int machine_boot_setup(struct machine *m);
/* From here on, a kernel or initrd file about to change first has guest RAM stop sharing its
 * pages (vmm/machine/image_lease.h), on the loop. */
int machine_watch_files(struct machine *m);
/* Every device's requests in flight completed (their quiesce hooks): before guest RAM or
 * the interrupt controllers are read or replaced with the vCPUs paused. */
void machine_quiesce_devices(struct machine *m);
/* The boot vCPU's whole boot state, at the kernel's entry: PVH's start_info or multiboot's
 * information block in EBX (and multiboot's magic in EAX), or for a bzImage the zero page in
 * RSI and long mode. */
zx_status_t machine_boot_registers(struct machine *m, zx_handle_t vcpu);

/* machine_devices.c */
/* Fills in the interrupt services of m->env that devices call. */
void machine_lend_irqs(struct machine *m);
int machine_devices_setup(struct machine *m);
void machine_devices_destroy(struct machine *m);

/* snapshot.c */
/* A parked vCPU's turn (m->lock held): saves its state when a snapshot asks for it (the
 * caller then wakes the waiters, as for every parking). */
void machine_cpu_parked(struct cpu *c, zx_handle_t vcpu);
/* Before the vCPUs run: the guest's KVM state and every device's from m->cfg->restore. */
int machine_restore_state(struct machine *m);
/* The vCPUs run: the guest is told its generation ID changed (firmware/vmgenid.h). */
void machine_restore_announce(struct machine *m);
/* The vCPU's state from the snapshot, on its own thread before its first enter. */
zx_status_t machine_restore_cpu(struct cpu *c, zx_handle_t vcpu);

/* snapshot_dirty.c */
struct snapshot_writer;
/* cfg->track_dirty: KVM's dirty log on, the VMM's writes marked; before anything writes guest
 * RAM. 0, or -1 (said). machine_dirty_free: at teardown (guest RAM unmapped). */
int machine_track_dirty(struct machine *m);
void machine_dirty_free(struct machine *m);
/* For machine_snapshot, vCPUs parked and devices quiet: KVM's log gathered into m->dirty; for a
 * diff, its section (the probes) added to the state; the memory file written (0, or -1 with
 * errno, or 1: a Diff on a filesystem whose holes are coarser than pages); once both files
 * are written, the snapshot counted as the last. */
int machine_snapshot_gather(struct machine *m, char *err, size_t errlen);
void machine_snapshot_add_diff(struct machine *m, struct snapshot_writer *w);
int machine_snapshot_write_memory(struct machine *m, int fd, bool diff);
void machine_snapshot_taken(struct machine *m);

/* machine_report.c */
void machine_trace_packet(struct cpu *c, zx_handle_t vcpu, const zx_port_packet_t *p);
/* On the vCPU's own thread, what its crash report needs (it cannot load capstone there). */
void machine_crash_capture(struct cpu *c, zx_handle_t vcpu, zx_status_t st);
void machine_crash_report(struct cpu *c);
void machine_print_stats(struct machine *m);
/* Setup's phase `name` ends now (--boot-markers only). */
void machine_setup_phase(struct machine *m, const char *name);
/* ... or at `now` (CLOCK_MONOTONIC ns). */
void machine_setup_phase_until(struct machine *m, const char *name, uint64_t now);

#endif
