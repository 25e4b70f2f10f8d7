/* The machine: see machine.h for the threading model. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <lib/async-loop/default.h>
#include <lib/async-loop/loop.h>
#include <lib/async/receiver.h>
#include <lib/async/task.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zircon/syscalls.h>
#include <zircon/status.h>
#include <zircon/syscalls/hypervisor.h>

#include "devices/acpi_pm.h"
#include "devices/bench_bell.h"
#include "devices/boot_marker.h"
#include "devices/debug_exit.h"
#include "devices/i8042.h"
#include "devices/rtc_mc146818.h"
#include "devices/unassigned.h"
#include "devices/uart16550.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_console.h"
#include "devices/virtio_mmio.h"
#include "devices/virtio_net.h"
#include "devices/virtio_pci.h"
#include "devices/virtio_rng.h"
#include "firmware/acpi.h"
#include "firmware/bzimage.h"
#include "firmware/fdt.h"
#include "firmware/pvh.h"
#include "vmm/disasm.h"
#include "vmm/file_map.h"
#include "vmm/footprint.h"
#include "vmm/kvm_host.h"
#include "vmm/machine.h"
#include "vmm/profile.h"
#include "vmm/sandbox.h"
#include "vmm/terminal.h"

/* Guest-physical layout below the kernel (which PVH kernels load at 1 MiB or above). */
#define LAYOUT_START_INFO 0x6000u
#define LAYOUT_DTB 0x10000u
#define LAYOUT_DTB_SIZE 0x10000u
#define LAYOUT_KERNEL_MIN 0x100000u
#define MAX_MAPPINGS 48
#define VIRTIO_MMIO_BASE 0xd0000000u
#define VIRTIO_IRQ_BASE 5 /* IOAPIC pins 5.. (4 is COM1) */
#define PCI_MMIO_BASE 0xe0000000u /* the host bridge's window (firmware/dsdt.asl) */
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
    bool sandboxed;      /* its creator was sandboxed, so it is too */
    zx_handle_t vcpu;    /* m->lock; invalid until created and after it ends */
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
    struct pvh_kernel kernel;
    bool bzimage;                 /* booted through the Linux boot protocol, not PVH */
    /* --boot-markers: where setup's time went, phase by phase ("vm 20.3, memory 4.1, ...") */
    uint64_t setup_last_ns;
    char setup_phases[160];
    struct bzimage_kernel bz;
    struct pci_bus pci;
    struct virtio_pci *vpci[MAX_PCI_DEVICES];
    unsigned nvpci;
    struct virtio_mmio *virtio[FDT_MAX_VIRTIO];
    unsigned nvirtio;
    struct virtio_console *vcon;
    struct virtio_blk *disks[MACHINE_MAX_DISKS];
    struct virtio_net *net;
    struct fdt_machine fdt;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool exiting;
    int status;
    struct cpu cpus[MACHINE_MAX_CPUS];
    int irqfds[IOAPIC_PINS]; /* -1 until raise_irq first needs it; the guest owns them */
    async_task_t loop_sandbox_task; /* the loop thread's first: confines it (--no-seccomp: not) */
    int loop_sandbox;        /* m->lock: 0 until the loop thread tried, then 1 or -1 */
    char loop_sandbox_err[160];
};

_Static_assert(offsetof(struct machine, maps) + sizeof(((struct machine *)0)->maps) <= 4096,
               "what an exit reads of the machine fits its first page");

static struct machine *machine_of(struct vm_env *env) { return (struct machine *)env; }

__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bellhop: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return -1;
}

/* ---- services lent to devices ---- */

static void request_exit(struct vm_env *env, int status) {
    struct machine *m = machine_of(env);
    pthread_mutex_lock(&m->lock);
    if (!m->exiting) {
        m->exiting = true;
        m->status = status;
        for (unsigned i = 0; i < MACHINE_MAX_CPUS; i++)
            if (m->cpus[i].vcpu != ZX_HANDLE_INVALID) zx_vcpu_kick(m->cpus[i].vcpu);
        pthread_cond_broadcast(&m->cond);
    }
    pthread_mutex_unlock(&m->lock);
}

/* Interrupts are frequent: each pin's irqfd is looked up once (under the guest's lock) and
 * then kept; several threads may race to look it up, and all get the same fd. */
static void raise_irq(struct vm_env *env, uint32_t irq) {
    struct machine *m = machine_of(env);
    if (irq >= IOAPIC_PINS) return;
    int fd = __atomic_load_n(&m->irqfds[irq], __ATOMIC_ACQUIRE);
    if (fd < 0) {
        if (bellhop_guest_irqfd(env->guest, irq, &fd) != ZX_OK) return;
        __atomic_store_n(&m->irqfds[irq], fd, __ATOMIC_RELEASE);
    }
    uint64_t one = 1;
    if (write(fd, &one, sizeof one) < 0) { /* the counter is saturated: an edge is pending anyway */
    }
}

static zx_status_t msi_create(struct vm_env *env, uint32_t *msi, int *fd) {
    return bellhop_guest_msi_create(env->guest, msi, fd);
}
static zx_status_t msi_set(struct vm_env *env, uint32_t msi, uint64_t address, uint32_t data) {
    return bellhop_guest_msi_set(env->guest, msi, address, data);
}
static zx_status_t irq_level(struct vm_env *env, uint32_t gsi, int *fd, int *resample_fd) {
    return bellhop_guest_irqfd_level(env->guest, gsi, fd, resample_fd);
}

static int map_device_at(struct machine *m, uint32_t kind, uint64_t base, uint64_t size, uint64_t origin,
                         const struct io_ops *ops, void *dev) {
    if (!dev) return fail("out of memory for device %s", ops->name);
    if (m->nmaps == MAX_MAPPINGS) return fail("too many devices");
    struct io_mapping *map = &m->maps[m->nmaps];
    *map = (struct io_mapping){.read = ops->read, .write = ops->write, .dev = dev, .origin = origin, .ops = ops,
                               .base = base, .size = size, .kind = kind, .stats = &m->map_stats[m->nmaps]};
    pthread_mutex_init(&map->stats->lock, NULL);
    zx_status_t st = zx_guest_set_trap(m->guest, kind, base, size, ZX_HANDLE_INVALID, (uintptr_t)map);
    if (st != ZX_OK) return fail("cannot trap %s at %#" PRIx64 ": %s", ops->name, base, zx_status_get_string(st));
    m->nmaps++;
    return 0;
}

static int map_device(struct machine *m, uint32_t kind, uint64_t base, uint64_t size,
                      const struct io_ops *ops, void *dev) {
    return map_device_at(m, kind, base, size, base, ops, dev);
}

/* ---- tracing ---- */

__attribute__((cold)) static void trace_packet(struct cpu *c, zx_handle_t vcpu, const zx_port_packet_t *p) {
    const struct io_mapping *map = (const struct io_mapping *)(uintptr_t)p->key;
    bellhop_vcpu_sregs_t s;
    char insn[96] = "?";
    uint64_t at = 0;
    bool have = bellhop_vcpu_read_sregs(vcpu, &s) == ZX_OK;
    if (p->type == ZX_PKT_TYPE_GUEST_IO) {
        /* RIP at the instruction, whichever way this KVM reports it (bellhop_vcpu_read_sregs). */
        if (have && disasm_at(&c->m->env.mem, &s, s.rip, insn, sizeof insn)) at = s.rip;
        fprintf(stderr, "trace: %10.3f ms cpu%u IO  %-3s key %s port %#x size %u data %#x   %#" PRIx64 ": %s\n",
                trace_ms(&c->m->env), c->id, p->guest_io.input ? "in" : "out", map->ops->name, p->guest_io.port,
                p->guest_io.access_size, p->guest_io.input ? 0 : p->guest_io.u32, at, insn);
    } else if (p->type == ZX_PKT_TYPE_GUEST_MEM) {
        if (have) {
            if (p->guest_mem.read) {
                if (disasm_at(&c->m->env.mem, &s, s.rip, insn, sizeof insn)) at = s.rip;
            } else {
                disasm_ending_at(&c->m->env.mem, &s, s.rip, &at, insn, sizeof insn);
            }
        }
        fprintf(stderr, "trace: %10.3f ms cpu%u MEM %-3s key %s addr %#" PRIx64 " size %u data %#" PRIx64
                        "   %#" PRIx64 ": %s\n",
                trace_ms(&c->m->env), c->id, p->guest_mem.read ? "rd" : "wr", map->ops->name, (uint64_t)p->guest_mem.addr,
                p->guest_mem.access_size, p->guest_mem.read ? 0 : p->guest_mem.data, at, insn);
    } else if (p->type == ZX_PKT_TYPE_GUEST_VCPU) {
        fprintf(stderr, "trace: %10.3f ms cpu%u VCPU %s\n", trace_ms(&c->m->env), c->id,
                p->guest_vcpu.type == ZX_PKT_GUEST_VCPU_STARTUP ? "startup" : "interrupt");
    }
}

/* ---- crash reports ---- */

__attribute__((cold)) static void crash_capture(struct cpu *c, zx_handle_t vcpu, zx_status_t st) {
    struct crash *k = &c->crash;
    k->crashed = true;
    k->status = st;
    bellhop_vcpu_last_error(vcpu, k->err, sizeof k->err);
    k->insn_len = st == ZX_ERR_INTERNAL ? bellhop_vcpu_failed_instruction(vcpu, k->insn, sizeof k->insn) : 0;
    k->have_regs = zx_vcpu_read_state(vcpu, ZX_VCPU_STATE, &k->r, sizeof k->r) == ZX_OK &&
                   bellhop_vcpu_read_sregs(vcpu, &k->s) == ZX_OK;
}

static void crash_report(struct cpu *c) {
    const struct crash *k = &c->crash;
    fprintf(stderr, "bellhop: guest crashed on cpu%u: %s (%s)\n", c->id, k->err, zx_status_get_string(k->status));
    if (!k->have_regs) return;
    const zx_vcpu_state_t *r = &k->r;
    const bellhop_vcpu_sregs_t *s = &k->s;
    if (s->rip == 0xfff0 && s->cs == 0xf000) { /* the reset vector */
        fprintf(stderr, "  (KVM reset this vCPU when it shut down: its registers are gone)\n");
        return;
    }
    char insn[96];
    if (k->status == ZX_ERR_INTERNAL &&
        (k->insn_len ? disasm_bytes(s, k->insn, k->insn_len, s->rip, insn, sizeof insn)
                     : disasm_at(&c->m->env.mem, s, s->rip, insn, sizeof insn)))
        fprintf(stderr, "bellhop: KVM cannot emulate `%s` (rip %#" PRIx64 ")%s\n", insn, s->rip,
                c->m->host == KVM_HOST_PVM ? "; this host's KVM is PVM, which emulates what a guest kernel not built for "
                                             "it (CONFIG_PVM_GUEST) runs: run that kernel in the nested KVM host "
                                             "(BELLHOP_RUN_WHERE=nested scripts/run.sh build/bellhop run ...)"
                                           : "");
    fprintf(stderr,
            "  rip %016" PRIx64 " rflags %016" PRIx64 " cs %04x\n"
            "  rax %016" PRIx64 " rbx %016" PRIx64 " rcx %016" PRIx64 " rdx %016" PRIx64 "\n"
            "  rsi %016" PRIx64 " rdi %016" PRIx64 " rbp %016" PRIx64 " rsp %016" PRIx64 "\n"
            "  r8  %016" PRIx64 " r9  %016" PRIx64 " r10 %016" PRIx64 " r11 %016" PRIx64 "\n"
            "  r12 %016" PRIx64 " r13 %016" PRIx64 " r14 %016" PRIx64 " r15 %016" PRIx64 "\n"
            "  cr0 %016" PRIx64 " cr2 %016" PRIx64 " cr3 %016" PRIx64 " cr4 %016" PRIx64 " efer %" PRIx64 "\n",
            s->rip, r->rflags, s->cs, r->rax, r->rbx, r->rcx, r->rdx, r->rsi, r->rdi, r->rbp, r->rsp, r->r8, r->r9,
            r->r10, r->r11, r->r12, r->r13, r->r14, r->r15, s->cr0, s->cr2, s->cr3, s->cr4, s->efer);
    disasm_around(stderr, &c->m->env.mem, s, s->rip);
}

/* ---- vCPUs ---- */

static int start_cpu(struct machine *m, unsigned id, uint64_t entry);

/* One register access, wherever it runs: reads return the value, writes 0. */
__attribute__((hot)) static uint64_t device_access(const zx_port_packet_t *p) {
    const struct io_mapping *map = (const struct io_mapping *)(uintptr_t)p->key;
    if (p->type == ZX_PKT_TYPE_GUEST_IO) {
        uint64_t off = p->guest_io.port - map->origin;
        if (p->guest_io.input) return map->read(map->dev, off, p->guest_io.access_size);
        map->write(map->dev, off, p->guest_io.access_size, p->guest_io.u32);
        return 0;
    }
    uint64_t off = p->guest_mem.addr - map->origin;
    if (p->guest_mem.read) return map->read(map->dev, off, p->guest_mem.access_size);
    map->write(map->dev, off, p->guest_mem.access_size, p->guest_mem.data);
    return 0;
}

/* --dispatch loop: the access goes to the loop thread as a packet to the machine's receiver
 * (one write to wake the port, where a task would arm and disarm the loop's timerfd), and
 * the vCPU sleeps on a futex word that the loop sets once the value is in. */
struct loop_call {
    const zx_port_packet_t *packet;
    uint64_t value;
    _Atomic uint32_t done;
};

static void run_loop_call(async_dispatcher_t *d, async_receiver_t *r, zx_status_t st, const zx_packet_user_t *data) {
    (void)d, (void)r;
    struct loop_call *call = (struct loop_call *)(uintptr_t)data->u64[0];
    if (st == ZX_OK) call->value = device_access(call->packet);
    atomic_store_explicit(&call->done, 1, memory_order_release);
    /* The vCPU may have seen done and moved on: a wake of a stale word is harmless, as
     * every futex waiter re-checks its condition. */
    syscall(SYS_futex, &call->done, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

__attribute__((hot)) static uint64_t dispatch_now(struct machine *m, const zx_port_packet_t *p) {
    if (!m->dispatch_loop) return device_access(p);
    struct loop_call call = {.packet = p};
    zx_packet_user_t data = {.u64 = {(uintptr_t)&call}};
    /* Only when the loop is shutting down or its port is full does the vCPU do it itself. */
    if (async_queue_packet(m->env.loop, &m->loop_call, &data) != ZX_OK) return device_access(p);
    while (!atomic_load_explicit(&call.done, memory_order_acquire))
        syscall(SYS_futex, &call.done, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    return call.value;
}

__attribute__((hot)) static uint64_t dispatch(struct machine *m, const zx_port_packet_t *p) {
    if (!m->env.stats) return dispatch_now(m, p);
    struct io_mapping *map = (struct io_mapping *)(uintptr_t)p->key;
    uint64_t t0 = stats_now_ns(), v = dispatch_now(m, p), ns = stats_now_ns() - t0;
    pthread_mutex_lock(&map->stats->lock);
    handler_stats_add(&map->stats->h, ns);
    pthread_mutex_unlock(&map->stats->lock);
    return v;
}

static void print_stats(struct machine *m) {
    uint64_t e[BELLHOP_EXIT_KINDS] = {0}, total = 0;
    bellhop_guest_exit_counts(m->guest, e);
    for (int i = 0; i < BELLHOP_EXIT_KINDS; i++) total += e[i];
    fprintf(stderr, "bellhop stats: %llu exits to user space (io %llu, mmio %llu, bell %llu, intr %llu, other %llu)\n",
            (unsigned long long)total, (unsigned long long)e[BELLHOP_EXIT_IO], (unsigned long long)e[BELLHOP_EXIT_MMIO],
            (unsigned long long)e[BELLHOP_EXIT_BELL], (unsigned long long)e[BELLHOP_EXIT_INTR],
            (unsigned long long)e[BELLHOP_EXIT_OTHER]);
    fprintf(stderr, "  %-14s %-6s %-12s %10s %10s %10s %10s\n", "trap", "kind", "at", "count", "p50 ns<=", "p99 ns<=", "max ns");
    for (unsigned i = 0; i < m->nmaps; i++) {
        const struct io_mapping *map = &m->maps[i];
        const struct handler_stats *h = &map->stats->h;
        if (!h->count) continue;
        fprintf(stderr, "  %-14s %-6s %#-12llx %10llu %10llu %10llu %10llu\n", map->ops->name,
                map->kind == ZX_GUEST_TRAP_IO ? "io" : "mem", (unsigned long long)map->base,
                (unsigned long long)h->count, (unsigned long long)handler_stats_quantile(h, 0.5),
                (unsigned long long)handler_stats_quantile(h, 0.99), (unsigned long long)h->max_ns);
    }
    struct virtio_dev *vds[FDT_MAX_VIRTIO + MAX_PCI_DEVICES];
    unsigned n = 0;
    for (unsigned i = 0; i < m->nvirtio; i++) vds[n++] = virtio_mmio_dev(m->virtio[i]);
    for (unsigned i = 0; i < m->nvpci; i++) vds[n++] = virtio_pci_dev(m->vpci[i]);
    for (unsigned i = 0; i < n; i++)
        for (unsigned q = 0; q < vds[i]->ops->nqueues; q++) {
            const struct handler_stats *b = &vds[i]->bells[q];
            if (!b->count) continue;
            fprintf(stderr, "  %-14s queue %u: %llu bells, handler p50 <= %llu ns, p99 <= %llu ns, max %llu ns\n",
                    vds[i]->ops->name, q, (unsigned long long)b->count, (unsigned long long)handler_stats_quantile(b, 0.5),
                    (unsigned long long)handler_stats_quantile(b, 0.99), (unsigned long long)b->max_ns);
        }
}

/* m is c->m, passed so that an exit need not read c (another page). */
__attribute__((hot)) static zx_status_t handle_packet(struct machine *m, struct cpu *c, zx_handle_t vcpu,
                                                      const zx_port_packet_t *p) {
    if (m->env.trace) trace_packet(c, vcpu, p);
    if (p->type == ZX_PKT_TYPE_GUEST_IO) {
        uint64_t v = dispatch(m, p);
        if (!p->guest_io.input) return ZX_OK;
        zx_vcpu_io_t io = {.access_size = p->guest_io.access_size, .u32 = (uint32_t)v};
        return zx_vcpu_write_state(vcpu, ZX_VCPU_IO, &io, sizeof io);
    }
    if (p->type == ZX_PKT_TYPE_GUEST_MEM) {
        uint64_t v = dispatch(m, p);
        if (!p->guest_mem.read) return ZX_OK;
        zx_vcpu_mem_t mem = {.access_size = p->guest_mem.access_size, .data = v};
        return zx_vcpu_write_state(vcpu, ZX_VCPU_MEM, &mem, sizeof mem);
    }
    if (p->type == ZX_PKT_TYPE_GUEST_VCPU) {
        if (p->guest_vcpu.type == ZX_PKT_GUEST_VCPU_STARTUP) {
            if (p->guest_vcpu.startup.id < m->cfg->cpus)
                start_cpu(m, (unsigned)p->guest_vcpu.startup.id, p->guest_vcpu.startup.entry);
            return ZX_OK;
        }
        pthread_mutex_lock(&m->lock);
        for (unsigned i = 0; i < MACHINE_MAX_CPUS && i < 64; i++)
            if ((p->guest_vcpu.interrupt.mask >> i & 1) && m->cpus[i].vcpu != ZX_HANDLE_INVALID)
                zx_vcpu_interrupt(m->cpus[i].vcpu, p->guest_vcpu.interrupt.vector);
        pthread_mutex_unlock(&m->lock);
        return ZX_OK;
    }
    return ZX_ERR_NOT_SUPPORTED;
}

/* The exits of one vCPU until it stops: apart from cpu_main's setup, so that the code each
 * exit runs is a few contiguous pages. */
__attribute__((hot, noinline)) static void cpu_loop(struct machine *m, struct cpu *c, zx_handle_t vcpu) {
    zx_port_packet_t p;
    for (;;) {
        zx_status_t st = zx_vcpu_enter(vcpu, &p);
        if (st == ZX_OK) st = handle_packet(m, c, vcpu, &p);
        if (st == ZX_OK) continue;
        if (st == ZX_ERR_TIMED_OUT) { /* the profile's tick */
            bellhop_vcpu_sregs_t sr;
            if (bellhop_vcpu_read_sregs(vcpu, &sr) == ZX_OK) profile_sample(m->profile, c->id, sr.rip);
            continue;
        }
        if (st == ZX_ERR_CANCELED) {
            pthread_mutex_lock(&m->lock);
            bool stop = m->exiting;
            pthread_mutex_unlock(&m->lock);
            if (stop) return;
            continue;
        }
        if (st == ZX_ERR_UNAVAILABLE || st == ZX_ERR_CONNECTION_RESET) {
            request_exit(&m->env, 0); /* power-off and reset both end the VM */
        } else {
            crash_capture(c, vcpu, st);
            request_exit(&m->env, EXIT_GUEST_CRASH);
        }
        return;
    }
}

/* Setup's phase `name` ends now (--boot-markers only): its time joins m->setup_phases, which
 * the guest-entered line shows, so that a slow setup says where it went. */
static void setup_phase(struct machine *m, const char *name) {
    if (!m->cfg->boot_markers) return;
    uint64_t now = stats_now_ns();
    size_t len = strlen(m->setup_phases);
    snprintf(m->setup_phases + len, sizeof m->setup_phases - len, "%s%s %.1f", len ? ", " : "", name,
             (double)(now - m->setup_last_ns) / 1e6);
    m->setup_last_ns = now;
}

static void *cpu_main(void *arg) {
    struct cpu *c = arg;
    struct machine *m = c->m;
    char name[16];
    snprintf(name, sizeof name, "vcpu-%u", c->id);
    pthread_setname_np(pthread_self(), name); /* itself: naming another thread opens /proc */
    zx_handle_t vcpu;
    uint32_t options = c->id > 0 && m->linux_smp ? BELLHOP_VCPU_WAIT_FOR_SIPI : 0;
    zx_status_t st = zx_vcpu_create(m->guest, options, c->entry, &vcpu);
    pthread_mutex_lock(&m->lock);
    c->created = true;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    if (st != ZX_OK) {
        fprintf(stderr, "bellhop: cannot create cpu%u: %s\n", c->id, zx_status_get_string(st));
        request_exit(&m->env, 1);
        return NULL;
    }
    if (c->id == 0) { /* PVH: EBX holds the start_info; the Linux 64-bit entry: RSI the zero page */
        zx_vcpu_state_t r;
        zx_vcpu_read_state(vcpu, ZX_VCPU_STATE, &r, sizeof r);
        if (m->bzimage) {
            r.rsi = BOOT_ZERO_PAGE_ADDR;
            bellhop_vcpu_set_long_mode(vcpu, BOOT_PML4_ADDR, BOOT_GDT_ADDR, 4 * 8 - 1);
        } else {
            r.rbx = LAYOUT_START_INFO;
        }
        zx_vcpu_write_state(vcpu, ZX_VCPU_STATE, &r, sizeof r);
    }
    if (m->cfg->sandbox) {
        char err[160];
        if (c->sandboxed) {
            sandbox_adopt(SANDBOX_VCPU);
        } else if (sandbox_enter(SANDBOX_VCPU, err, sizeof err) != 0) {
            fprintf(stderr, "bellhop: cpu%u: %s\n", c->id, err);
            request_exit(&m->env, 1);
        }
    }
    sandbox_probe(SANDBOX_VCPU);
    pthread_mutex_lock(&m->lock);
    c->vcpu = vcpu;
    bool stop = m->exiting;
    pthread_cond_broadcast(&m->cond); /* setup_done() waits for this */
    pthread_mutex_unlock(&m->lock);
    if (c->id == 0 && !stop) {
        /* setup's last phase, the boot vCPU's thread, state and sandbox: the main thread's
         * phases ended before this thread was created, and it adds none after */
        setup_phase(m, "vcpu");
        boot_marker_guest_entered(m->marker, m->setup_phases);
    }
    if (m->profile && bellhop_vcpu_set_tick(vcpu, PROFILE_PERIOD_NS) != ZX_OK)
        fprintf(stderr, "bellhop: cpu%u: cannot start its profile tick\n", c->id);
    if (!stop) cpu_loop(m, c, vcpu);
    if (m->profile) bellhop_vcpu_set_tick(vcpu, 0);
    pthread_mutex_lock(&m->lock);
    c->vcpu = ZX_HANDLE_INVALID;
    pthread_mutex_unlock(&m->lock);
    zx_handle_close(vcpu);
    return NULL;
}

static int start_cpu(struct machine *m, unsigned id, uint64_t entry) {
    struct cpu *c = &m->cpus[id];
    pthread_mutex_lock(&m->lock);
    if (c->running || m->exiting) { /* x86 guests send STARTUP twice */
        pthread_mutex_unlock(&m->lock);
        return 0;
    }
    c->m = m;
    c->id = id;
    c->entry = entry;
    c->sandboxed = sandbox_active();
    int r = pthread_create(&c->thread, NULL, cpu_main, c);
    if (r == 0) c->running = true;
    /* vCPU ids follow creation order: create one at a time, so that cpu N is vCPU N. */
    while (r == 0 && !c->created) pthread_cond_wait(&m->cond, &m->lock);
    pthread_mutex_unlock(&m->lock);
    return r == 0 ? 0 : fail("cannot start cpu%u: %s", id, strerror(r));
}

/* ---- setup ---- */

/* A kernel or initrd, mapped read-only (vmm/file_map.h): the loaders copy from the page cache
 * straight into guest memory (reading it into a buffer first would copy and zero-fill it once
 * more). */
static int map_file(const char *what, const char *path, size_t max, struct file_map *f) {
    char err[160];
    if (file_map_open(path, max, "guest memory", f, err, sizeof err) != 0) return fail("%s %s: %s", what, path, err);
    /* Test hook (bellhop_run's bad input): the file shrinks under its mapping, as when another
     * process truncates it. */
    const char *probe = getenv("BELLHOP_LOAD_PROBE");
    if (probe && strcmp(probe, what) == 0 && truncate(path, 0) != 0) { /* the test sees no error */
    }
    return 0;
}

/* load(m, f, arg) under file_map_guarded. When the file (`what` at `path`) shrank under it,
 * says so and returns FILE_MAP_SHRANK. */
struct guarded_load {
    struct machine *m;
    int (*load)(struct machine *m, const struct file_map *f, void *arg);
    void *arg;
};

static int run_guarded_load(const struct file_map *f, void *arg) {
    struct guarded_load *g = arg;
    return g->load(g->m, f, g->arg);
}

static int copy_guarded(struct machine *m, const char *what, const char *path, const struct file_map *f,
                        int (*load)(struct machine *m, const struct file_map *f, void *arg), void *arg) {
    struct guarded_load g = {m, load, arg};
    int r = file_map_guarded(f, run_guarded_load, &g);
    if (r == FILE_MAP_SHRANK) fail("%s %s: the file shrank while it was being loaded", what, path);
    return r;
}

struct load_error {
    char text[400];
};

/* A kernel whose code lies where a PVM host keeps its own (vmm/kvm_host.h) would run only
 * through KVM's emulator, slowly, until an instruction it lacks stops it: refused before it
 * runs, unless the user insists. */
static bool refused_on_pvm(const struct machine *m, uint64_t lo, uint64_t hi, struct load_error *e) {
    if (m->host != KVM_HOST_PVM || m->cfg->pvm_anyway || kvm_host_pvm_can_run(lo, hi)) return false;
    snprintf(e->text, sizeof e->text,
             "linked at %#" PRIx64 ", in the top 2 GiB that a PVM host keeps for itself: this host's KVM is PVM, "
             "which runs only kernels built for it (CONFIG_PVM_GUEST); run it in the nested KVM host "
             "(BELLHOP_RUN_WHERE=nested scripts/run.sh build/bellhop run ...), or try it here with --pvm-anyway",
             (uint64_t)(hi >= KVM_HOST_PVM_RESERVED && lo < KVM_HOST_PVM_RESERVED ? KVM_HOST_PVM_RESERVED : lo));
    return true;
}

static int load_kernel_image(struct machine *m, const struct file_map *kernel, void *arg) {
    struct load_error *e = arg;
    if (!bzimage_detect(kernel->data, kernel->len)) {
        int r = pvh_load_elf(kernel->data, kernel->len, &m->env.mem, LAYOUT_KERNEL_MIN, &m->kernel, e->text,
                             sizeof e->text);
        return r == 0 && refused_on_pvm(m, m->kernel.vaddr_lo, m->kernel.vaddr_hi, e) ? -1 : r;
    }
    /* The 64-bit boot protocol's kernel is x86-64 Linux, linked in the top 2 GiB
     * (__START_KERNEL_map): no need to unpack it to know. */
    if (refused_on_pvm(m, KVM_HOST_PVM_RESERVED, UINT64_MAX, e)) return -1;
    m->bzimage = true;
    uint64_t t0 = stats_now_ns();
    int r = bzimage_load(kernel->data, kernel->len, &m->env.mem, LAYOUT_KERNEL_MIN, !m->cfg->guest_decompress,
                         bzimage_kaslr_random(m->cfg->cmdline), &m->bz, e->text, sizeof e->text);
    m->kernel = (struct pvh_kernel){.entry = m->bz.entry, .end = m->bz.end, .is_linux = true};
    const struct bzimage_unpacked *u = &m->bz.unpacked;
    if (r == 0 && u->format && m->cfg->boot_markers) {
        uint64_t t1 = stats_now_ns();
        char where[40] = "not randomized";
        if (u->kaslr) snprintf(where, sizeof where, "KASLR %+" PRId64 " MiB", (int64_t)(u->virt_offset >> 20));
        fprintf(stderr, "bellhop: kernel unpacked (%s, %" PRIu64 " KiB, %s) in %" PRIu64 ".%03" PRIu64 " ms\n",
                u->format, u->size >> 10, where, (t1 - t0) / 1000000, (t1 - t0) / 1000 % 1000);
    }
    return r;
}

static int load_kernel(struct machine *m) {
    const struct machine_config *cfg = m->cfg;
    struct file_map kernel;
    if (map_file("kernel", cfg->kernel, cfg->mem, &kernel) != 0) return -1;
    struct load_error e;
    int r = copy_guarded(m, "kernel", cfg->kernel, &kernel, load_kernel_image, &e);
    file_map_close(&kernel);
    if (r == FILE_MAP_SHRANK) return -1;
    if (r != 0) return fail("kernel %s: %s", cfg->kernel, e.text);
    m->cpus[0].entry = m->kernel.entry;
    /* Linux finds virtio devices on PCI and starts its other CPUs itself. */
    m->linux_smp = m->kernel.is_linux;
    m->virtio_pci = m->kernel.is_linux;
    return 0;
}

static int copy_initrd(struct machine *m, const struct file_map *initrd, void *at) {
    gm_write(&m->env.mem, *(const uint64_t *)at, initrd->data, initrd->len);
    return 0;
}

static int boot_setup(struct machine *m) {
    const struct machine_config *cfg = m->cfg;
    struct pvh_kernel k = m->kernel;
    uint64_t kend = k.end;

    struct pvh_module mods[2];
    unsigned nmods = 0;
    struct fdt_machine *fm = &m->fdt;
    fm->ram_size = cfg->mem;
    fm->ncpus = cfg->cpus;
    fm->cmdline = cfg->cmdline;
    fm->uart_port = UART_COM1_PORT;
    fm->uart_irq = UART_COM1_IRQ;
    int dtb_size = fdt_build(fm, gm_ptr(&m->env.mem, LAYOUT_DTB, LAYOUT_DTB_SIZE), LAYOUT_DTB_SIZE);
    if (dtb_size < 0) return fail("device tree: %d", dtb_size);
    /* Linux takes module 0 as its initrd (and x86 Linux reads no device tree); other PVH
     * kernels get the device tree first. */
    if (!k.is_linux) mods[nmods++] = (struct pvh_module){LAYOUT_DTB, (uint64_t)dtb_size};
    if (cfg->initrd) {
        struct file_map initrd;
        if (map_file("initrd", cfg->initrd, cfg->mem, &initrd) != 0) return -1;
        size_t ilen = initrd.len;
        uint64_t top = cfg->mem;
        if (m->bzimage && top > (uint64_t)m->bz.initrd_addr_max + 1) top = (uint64_t)m->bz.initrd_addr_max + 1;
        uint64_t at = (top - ilen) & ~0xfffull;
        if (ilen > top || at < kend) {
            file_map_close(&initrd);
            return fail("initrd %s: does not fit in guest memory above the kernel", cfg->initrd);
        }
        int r = copy_guarded(m, "initrd", cfg->initrd, &initrd, copy_initrd, &at);
        file_map_close(&initrd);
        if (r != 0) return -1;
        mods[nmods++] = (struct pvh_module){at, ilen};
    }
    uint64_t rsdp = acpi_build(&m->env.mem, cfg->cpus, FDT_IOAPIC_BASE);
    reset_vector_stub(&m->env.mem);
    if (!rsdp) return fail("cannot build the ACPI tables");
    if (m->bzimage) {
        uint64_t initrd = nmods ? mods[nmods - 1].paddr : 0, initrd_size = nmods ? mods[nmods - 1].size : 0;
        if (bzimage_write_boot_params(&m->env.mem, &m->bz, cfg->cmdline, initrd, initrd_size, rsdp) != 0)
            return fail("command line too long for this kernel");
    } else if (pvh_write_start_info(&m->env.mem, LAYOUT_START_INFO, cfg->cmdline, mods, nmods, rsdp) != 0) {
        return fail("command line too long (at most 4095 bytes)");
    }
    return 0;
}

/* A virtio-pci device in the next slot: its BAR's register pages; the notify page is its
 * own bell trap. */
static struct virtio_dev *add_virtio_pci(struct machine *m, const struct virtio_device_ops *ops, void *priv) {
    if (m->nvpci == MAX_PCI_DEVICES) {
        fail("too many PCI devices");
        return NULL;
    }
    uint64_t bar0 = PCI_MMIO_BASE + (uint64_t)m->nvpci * VIRTIO_PCI_BAR_SIZE;
    /* Slots 1..8 have INTA on IOAPIC pins 16..23 (the DSDT's _PRT); the rest only MSI-X. */
    uint32_t gsi = m->nvpci < 8 ? 16 + m->nvpci : 0;
    struct virtio_pci *vp = virtio_pci_create(&m->env, ops, priv, bar0, gsi);
    if (!vp) {
        fail("cannot set up %s on PCI", ops->name);
        return NULL;
    }
    m->vpci[m->nvpci++] = vp;
    if (pci_bus_add(&m->pci, virtio_pci_device(vp)) < 0) {
        fail("no PCI slot left for %s", ops->name);
        return NULL;
    }
    if (map_device_at(m, ZX_GUEST_TRAP_MEM, bar0, VIRTIO_PCI_NOTIFY_OFFSET, bar0, &virtio_pci_ops, vp) ||
        map_device_at(m, ZX_GUEST_TRAP_MEM, bar0 + VIRTIO_PCI_NOTIFY_OFFSET + 0x1000,
                      VIRTIO_PCI_BAR_SIZE - VIRTIO_PCI_NOTIFY_OFFSET - 0x1000, bar0, &virtio_pci_ops, vp))
        return NULL;
    return virtio_pci_dev(vp);
}

/* A virtio-mmio device in the next slot: its page, its doorbells and its DT node. */
static struct virtio_dev *add_virtio(struct machine *m, const struct virtio_device_ops *ops, void *priv) {
    if (m->virtio_pci) return add_virtio_pci(m, ops, priv);
    if (m->nvirtio == FDT_MAX_VIRTIO) {
        fail("too many virtio devices");
        return NULL;
    }
    uint64_t base = VIRTIO_MMIO_BASE + (uint64_t)m->nvirtio * VIRTIO_MMIO_SIZE;
    uint32_t irq = VIRTIO_IRQ_BASE + m->nvirtio;
    struct virtio_mmio *vm = virtio_mmio_create(&m->env, ops, priv, base, irq, async_loop_get_port(m->loop));
    if (!vm) {
        fail("cannot set up %s", ops->name);
        return NULL;
    }
    m->virtio[m->nvirtio++] = vm;
    if (map_device(m, ZX_GUEST_TRAP_MEM, base, VIRTIO_MMIO_SIZE, &virtio_mmio_ops, vm)) return NULL;
    m->fdt.virtio[m->fdt.nvirtio++] = (struct fdt_virtio_mmio){base, VIRTIO_MMIO_SIZE, irq};
    return virtio_mmio_dev(vm);
}

/* Every port no device claimed reads all ones (see devices/unassigned.h). */
static int map_unassigned_ports(struct machine *m) {
    struct { uint64_t lo, hi; } used[MAX_MAPPINGS + 1];
    unsigned n = 0;
    for (unsigned i = 0; i < m->nmaps; i++) {
        if (m->maps[i].kind != ZX_GUEST_TRAP_IO) continue;
        used[n].lo = m->maps[i].base;
        used[n++].hi = m->maps[i].base + m->maps[i].size;
    }
    used[n].lo = BELLHOP_VCPU_CTL_PORT;
    used[n++].hi = BELLHOP_VCPU_CTL_PORT + BELLHOP_VCPU_CTL_SIZE;
    for (unsigned i = 1; i < n; i++) /* insertion sort: a handful of ranges */
        for (unsigned j = i; j > 0 && used[j].lo < used[j - 1].lo; j--) {
            __typeof__(used[0]) t = used[j];
            used[j] = used[j - 1];
            used[j - 1] = t;
        }
    uint64_t at = 0;
    for (unsigned i = 0; i <= n; i++) {
        uint64_t end = i < n ? used[i].lo : 0xffff; /* port 0xffff cannot be trapped */
        if (end > at && map_device(m, ZX_GUEST_TRAP_IO, at, end - at, &unassigned_ops, m))
            return -1;
        if (i < n && used[i].hi > at) at = used[i].hi;
    }
    return 0;
}

static int devices_setup(struct machine *m) {
    const struct machine_config *cfg = m->cfg;
    bool serial = cfg->console == CONSOLE_SERIAL;
    m->uart = uart16550_create(&m->env, UART_COM1_IRQ, serial ? STDIN_FILENO : -1, STDOUT_FILENO);
    if (map_device(m, ZX_GUEST_TRAP_IO, UART_COM1_PORT, 8, &uart16550_ops, m->uart)) return -1;
    m->exit_dev = debug_exit_create(&m->env);
    if (map_device(m, ZX_GUEST_TRAP_IO, DEBUG_EXIT_PORT, 1, &debug_exit_ops, m->exit_dev)) return -1;
    if (!serial) {
        m->vcon = virtio_console_create(&m->env, STDIN_FILENO, STDOUT_FILENO);
        struct virtio_dev *vd = m->vcon ? add_virtio(m, &virtio_console_ops, m->vcon) : NULL;
        if (!vd) return -1;
        virtio_console_attach(m->vcon, vd);
    }
    if (m->virtio_pci && map_device(m, ZX_GUEST_TRAP_IO, PCI_CONF1_PORT, 8, &pci_conf1_ops, &m->pci)) return -1;
    /* Between RAM's highest end and the device windows: unassigned MMIO, as on a PC. */
    if (map_device(m, ZX_GUEST_TRAP_MEM, UNASSIGNED_MMIO_BASE, UNASSIGNED_MMIO_SIZE, &unassigned_ops, m)) return -1;
    m->rtc = rtc_mc146818_create();
    if (map_device(m, ZX_GUEST_TRAP_IO, RTC_PORT, 2, &rtc_mc146818_ops, m->rtc)) return -1;
    m->i8042 = i8042_create(&m->env);
    if (map_device(m, ZX_GUEST_TRAP_IO, I8042_DATA_PORT, 5, &i8042_ops, m->i8042)) return -1;
    m->pm = acpi_pm_create(&m->env);
    if (map_device(m, ZX_GUEST_TRAP_IO, ACPI_PM_PORT, 3, &acpi_pm_ops, m->pm)) return -1;
    m->marker = boot_marker_create(m->guest, cfg->start_ns, cfg->boot_markers);
    if (map_device(m, ZX_GUEST_TRAP_IO, BOOT_MARKER_PORT, 4, &boot_marker_ops, m->marker)) return -1;
    if (cfg->rng && !add_virtio(m, &virtio_rng_ops, NULL)) return -1;
    if (cfg->bench_bell) {
        char err[160];
        if (!(m->bench_bell = bench_bell_create(&m->env, err, sizeof err))) return fail("%s", err);
    }
    for (unsigned i = 0; i < cfg->ndisks; i++) {
        char err[200];
        m->disks[i] = virtio_blk_open(cfg->disks[i].path, cfg->disks[i].read_only, err, sizeof err);
        if (!m->disks[i]) return fail("%s", err);
        if (!add_virtio(m, virtio_blk_ops_for(m->disks[i]), m->disks[i])) return -1;
    }
    if (cfg->tap) {
        char err[200];
        if (!(m->net = virtio_net_open(&m->env, cfg->tap, err, sizeof err))) return fail("%s", err);
        struct virtio_dev *vd = add_virtio(m, virtio_net_ops_for(m->net), m->net);
        if (!vd) return -1;
        virtio_net_attach(m->net, vd);
    }
    return map_unassigned_ports(m);
}

/* The loop thread's first task confines it; nothing of the guest's runs before that. */
static void confine_loop_thread(async_dispatcher_t *d, async_task_t *task, zx_status_t st) {
    (void)d;
    struct machine *m = (struct machine *)((char *)task - offsetof(struct machine, loop_sandbox_task));
    int r = 1;
    if (st != ZX_OK) {
        r = -1;
        snprintf(m->loop_sandbox_err, sizeof m->loop_sandbox_err, "the loop ended before its sandbox");
    } else if (m->cfg->sandbox && sandbox_enter(SANDBOX_LOOP, m->loop_sandbox_err, sizeof m->loop_sandbox_err) != 0) {
        r = -1;
    }
    pthread_mutex_lock(&m->lock);
    m->loop_sandbox = r;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    if (r == 1) sandbox_probe(SANDBOX_LOOP);
}

static int start_loop_thread(struct machine *m) {
    m->loop_sandbox_task = (async_task_t){.handler = confine_loop_thread, .deadline = ZX_TIME_INFINITE_PAST};
    if (async_post_task(m->env.loop, &m->loop_sandbox_task) != ZX_OK ||
        async_loop_start_thread(m->loop, "loop", NULL) != ZX_OK)
        return fail("cannot start the loop thread");
    pthread_mutex_lock(&m->lock);
    while (m->loop_sandbox == 0) pthread_cond_wait(&m->cond, &m->lock);
    int r = m->loop_sandbox;
    pthread_mutex_unlock(&m->lock);
    return r == 1 ? 0 : fail("%s", m->loop_sandbox_err);
}

/* Setup is over once the first vCPU runs under its filter (the loop thread confined itself
 * before it started): what setup alone mapped can go (vmm/footprint.h). */
static void setup_done(struct machine *m) {
    pthread_mutex_lock(&m->lock);
    while (!m->exiting && m->cpus[0].vcpu == ZX_HANDLE_INVALID) pthread_cond_wait(&m->cond, &m->lock);
    bool exiting = m->exiting;
    pthread_mutex_unlock(&m->lock);
    if (!exiting) footprint_trim();
}

int machine_run(const struct machine_config *cfg) {
    struct machine *m = aligned_alloc(4096, (sizeof *m + 4095) & ~(size_t)4095);
    if (!m) return fail("out of memory"), 1;
    memset(m, 0, sizeof *m);
    m->cfg = cfg;
    m->env.request_exit = request_exit;
    m->env.raise_irq = raise_irq;
    m->env.msi_create = msi_create;
    m->env.msi_set = msi_set;
    m->env.irq_level = irq_level;
    m->env.trace = cfg->trace_traps;
    m->env.trace_start_ns = cfg->start_ns;
    m->env.stats = cfg->stats;
    m->dispatch_loop = cfg->dispatch_loop;
    m->loop_call.handler = run_loop_call;
    m->setup_last_ns = cfg->start_ns;
    setup_phase(m, "options");
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    for (unsigned i = 0; i < MACHINE_MAX_CPUS; i++) m->cpus[i].vcpu = ZX_HANDLE_INVALID;
    for (unsigned i = 0; i < IOAPIC_PINS; i++) m->irqfds[i] = -1;
    int status = 1;
    zx_status_t st = zx_guest_create(0, &m->guest);
    if (st != ZX_OK) {
        fail("cannot create a VM: %s", st == ZX_ERR_NOT_SUPPORTED ? "no usable /dev/kvm" : zx_status_get_string(st));
        goto out;
    }
    m->env.guest = m->guest;
    char why[160];
    m->host = kvm_host_kind_of_working_kvm(why, sizeof why);
    if (cfg->boot_markers) fprintf(stderr, "bellhop: this host's KVM: %s (%s)\n", kvm_host_name(m->host), why);
    setup_phase(m, "vm");
    st = zx_guest_map_memory(m->guest, 0, cfg->mem, 0, (void **)&m->env.mem.host);
    if (st != ZX_OK) {
        fail("cannot allocate %" PRIu64 " MiB of guest memory: %s", cfg->mem >> 20, zx_status_get_string(st));
        goto out;
    }
    m->env.mem.size = cfg->mem;
    st = async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &m->loop);
    if (st != ZX_OK) {
        fail("cannot create the async loop: %s", zx_status_get_string(st));
        goto out;
    }
    m->env.loop = async_loop_get_dispatcher(m->loop);
    pci_bus_init(&m->pci);
    setup_phase(m, "memory");
    if (load_kernel(m) != 0) goto out;
    setup_phase(m, "kernel");
    if (devices_setup(m) != 0) goto out;
    setup_phase(m, "devices");
    if (boot_setup(m) != 0) goto out;
    setup_phase(m, "boot data");
    if (cfg->trace_traps) disasm_load(); /* vCPU threads trace, and cannot load it later */
    if (cfg->profile) {
        char err[300];
        m->profile = profile_open(cfg->profile, cfg->kernel, cfg->profile_symbols, cfg->cpus, cfg->start_ns, err,
                                  sizeof err);
        if (!m->profile) {
            fail("--profile: %s", err);
            goto out;
        }
    }
    if (start_loop_thread(m) != 0) goto out;
    setup_phase(m, "loop");
    terminal_raw(STDIN_FILENO);
    if (start_cpu(m, 0, m->cpus[0].entry) != 0) goto out;
    /* Linux starts its other CPUs itself, with INIT and STARTUP IPIs: they must exist. */
    for (unsigned i = 1; m->linux_smp && i < cfg->cpus; i++)
        if (start_cpu(m, i, 0) != 0) goto out;
    if (cfg->sandbox) {
        char err[160];
        if (sandbox_enter(SANDBOX_MAIN, err, sizeof err) != 0) {
            fail("%s", err);
            goto out;
        }
    }
    sandbox_probe(SANDBOX_MAIN);
    setup_done(m);
    pthread_mutex_lock(&m->lock);
    while (!m->exiting) pthread_cond_wait(&m->cond, &m->lock);
    status = m->status;
    pthread_mutex_unlock(&m->lock);
out:
    request_exit(&m->env, status); /* stops any vCPU still running */
    for (unsigned i = 0; i < MACHINE_MAX_CPUS; i++)
        if (m->cpus[i].running) pthread_join(m->cpus[i].thread, NULL);
    if (m->loop) async_loop_destroy(m->loop);
    for (unsigned i = 0; i < MACHINE_MAX_CPUS; i++)
        if (m->cpus[i].crash.crashed) crash_report(&m->cpus[i]);
    if (cfg->stats && m->guest) print_stats(m);
    profile_close(m->profile, stderr);
    terminal_restore();
    uart16550_destroy(m->uart);
    for (unsigned i = 0; i < m->nvirtio; i++) virtio_mmio_destroy(m->virtio[i]);
    for (unsigned i = 0; i < m->nvpci; i++) virtio_pci_destroy(m->vpci[i]);
    pci_bus_destroy(&m->pci);
    virtio_console_destroy(m->vcon);
    for (unsigned i = 0; i < MACHINE_MAX_DISKS; i++) virtio_blk_close(m->disks[i]);
    virtio_net_close(m->net);
    debug_exit_destroy(m->exit_dev);
    rtc_mc146818_destroy(m->rtc);
    i8042_destroy(m->i8042);
    boot_marker_destroy(m->marker);
    acpi_pm_destroy(m->pm);
    bench_bell_destroy(m->bench_bell);
    if (m->guest) zx_handle_close(m->guest);
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->lock);
    free(m);
    return status;
}
