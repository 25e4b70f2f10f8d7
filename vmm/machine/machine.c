/* The machine's lifecycle and threads (vmm/machine/machine_parts.h has who does what; machine.h the
 * threading model). */
#include <errno.h>
#include <lib/async-loop/default.h>
#include <limits.h>
#include <linux/futex.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>
#include <lib/container_of.h>

#include "devices/boot_marker.h"
#include "devices/virtio.h"
#include "vmm/observe/disasm.h"
#include "vmm/machine/footprint.h"
#include "vmm/machine/machine_parts.h"
#include "vmm/observe/profile.h"
#include "vmm/sandbox/sandbox.h"
#include "vmm/machine/snapshot_file.h"
#include "vmm/machine/terminal.h"
#include "vmm/machine/uffd_backend.h"
#include "vmm/observe/timeline.h"

/* Room for the longest reason: a path (PATH_MAX) and the words around it, of which the longest
 * (a kernel refused on PVM) are some 300 bytes. stderr gets the line without this copy. */
static _Thread_local char last_error[PATH_MAX + 1024];

const char *machine_last_error(void) { return last_error; }

int machine_fail(const char *fmt, ...) {
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    flockfile(stderr);
    fputs("bellhop: ", stderr);
    vfprintf(stderr, fmt, again);
    fputc('\n', stderr);
    funlockfile(stderr);
    va_end(again);
    return -1;
}

/* GUEST_VCPU interrupts name their CPUs in a 64-bit mask; vCPU ids are the machine's cpu numbers. */
_Static_assert(MACHINE_MAX_CPUS <= 64 && MACHINE_MAX_CPUS <= BELLHOP_MAX_VCPUS, "a mask bit and a vCPU per cpu");

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
    uint64_t t0 = zx_clock_get_monotonic(), v = dispatch_now(m, p), ns = zx_clock_get_monotonic() - t0;
    pthread_mutex_lock(&map->stats->lock);
    handler_stats_add(&map->stats->h, ns);
    pthread_mutex_unlock(&map->stats->lock);
    return v;
}

/* m is c->m, passed so that an exit need not read c (another page). */
__attribute__((hot)) static zx_status_t handle_packet(struct machine *m, struct cpu *c, zx_handle_t vcpu,
                                                      const zx_port_packet_t *p) {
    if (m->env.trace) machine_trace_packet(c, vcpu, p);
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

/* --trace-file: the exit's slice on this vCPU's track, from KVM_RUN's return (t0) until the
 * VMM is done with it. */
__attribute__((cold, noinline)) static zx_status_t handle_on_timeline(struct machine *m, struct cpu *c, zx_handle_t vcpu,
                                                                     const zx_port_packet_t *p, uint64_t t0) {
    zx_status_t st = handle_packet(m, c, vcpu, p);
    struct timeline_record e = {.ts_ns = t0, .dur_ns = zx_clock_get_monotonic() - t0, .kind = TIMELINE_EXIT};
    const struct io_mapping *map = (const struct io_mapping *)(uintptr_t)p->key;
    if (p->type == ZX_PKT_TYPE_GUEST_IO) {
        e.arg = p->guest_io.port;
        e.what = p->guest_io.input ? "io in" : "io out";
        e.of = map->ops->name;
    } else if (p->type == ZX_PKT_TYPE_GUEST_MEM) {
        e.arg = p->guest_mem.addr;
        e.what = p->guest_mem.read ? "mmio read" : "mmio write";
        e.of = map->ops->name;
    } else {
        e.what = p->type == ZX_PKT_TYPE_GUEST_VCPU && p->guest_vcpu.type == ZX_PKT_GUEST_VCPU_STARTUP
                          ? "vcpu startup" : "vcpu interrupt";
    }
    timeline_put(timeline_ring(m->env.timeline, "vcpu"), &e);
    return st;
}

/* While the machine is paused: parked until the resume (saving the vCPU's state for a
 * snapshot when asked), or the end. True when the vCPU is to stop. */
static bool park(struct machine *m, struct cpu *c, zx_handle_t vcpu) {
    pthread_mutex_lock(&m->lock);
    while (m->paused && !m->exiting) {
        c->parked = true;
        machine_cpu_parked(c, vcpu);
        pthread_cond_broadcast(&m->cond);
        pthread_cond_wait(&m->cond, &m->lock);
    }
    c->parked = false;
    bool stop = m->exiting;
    pthread_mutex_unlock(&m->lock);
    return stop;
}

/* The exits of one vCPU until it stops: apart from cpu_main's setup, so that the code each
 * exit runs is a few contiguous pages. */
__attribute__((hot, noinline)) static void cpu_loop(struct machine *m, struct cpu *c, zx_handle_t vcpu) {
    zx_port_packet_t p;
    for (;;) {
        zx_status_t st = zx_vcpu_enter(vcpu, &p);
        if (st == ZX_OK)
            st = __builtin_expect(m->env.timeline != NULL, 0) ? handle_on_timeline(m, c, vcpu, &p, zx_clock_get_monotonic())
                                                              : handle_packet(m, c, vcpu, &p);
        if (st == ZX_OK) continue;
        if (st == ZX_ERR_TIMED_OUT) { /* the profile's tick */
            bellhop_vcpu_sregs_t sr;
            if (bellhop_vcpu_read_sregs(vcpu, &sr) == ZX_OK) profile_sample(m->profile, c->id, sr.rip);
            continue;
        }
        if (st == ZX_ERR_CANCELED) {
            if (park(m, c, vcpu)) return;
            continue;
        }
        if (st == ZX_ERR_UNAVAILABLE || st == ZX_ERR_CONNECTION_RESET) {
            request_exit(&m->env, 0); /* power-off and reset both end the VM */
        } else {
            machine_crash_capture(c, vcpu, st);
            request_exit(&m->env, EXIT_GUEST_CRASH);
        }
        return;
    }
}

/* For start_cpu, which waits on it when restoring: 1, or -1 (said) when the vCPU could not be
 * made or its state was refused. */
static void cpu_restored(struct cpu *c, int r) {
    pthread_mutex_lock(&c->m->lock);
    c->restored = r;
    pthread_cond_broadcast(&c->m->cond);
    pthread_mutex_unlock(&c->m->lock);
}

/* Waits until *flag (m->lock's) is set or the machine is exiting: true for the flag. */
static bool await_flag(struct machine *m, const bool *flag) {
    pthread_mutex_lock(&m->lock);
    while (!*flag && !m->exiting) pthread_cond_wait(&m->cond, &m->lock);
    bool set = !m->exiting;
    pthread_mutex_unlock(&m->lock);
    return set;
}

static void set_flag(struct machine *m, bool *flag) {
    pthread_mutex_lock(&m->lock);
    *flag = true;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

/* The boot vCPU made early asks for its CPUID while the main thread registers the RAM, then
 * waits for it: true once it is registered, false when setup failed first. */
static bool ram_registered(struct machine *m) {
    bellhop_guest_prepare_cpuid(m->guest); /* a failure is the vCPU's to say */
    return await_flag(m, &m->ram_ready);
}

/* A boot vCPU made early waits here for its boot state (boot_cpu_go): false when setup failed
 * meanwhile, or (said) when the state was refused. */
static bool entry_given(struct machine *m, struct cpu *c, zx_handle_t vcpu) {
    if (!await_flag(m, &m->boot_cpu_go)) return false;
    zx_status_t st = machine_boot_registers(m, vcpu);
    if (st == ZX_OK) return true;
    fprintf(stderr, "bellhop: cannot set cpu%u's boot registers: %s\n", c->id, zx_status_get_string(st));
    request_exit(&m->env, 1);
    return false;
}

static void confine_cpu(struct machine *m, struct cpu *c) {
    if (!m->cfg->sandbox) return;
    char err[160];
    if (c->sandboxed) {
        sandbox_adopt(SANDBOX_VCPU);
    } else if (sandbox_enter(SANDBOX_VCPU, err, sizeof err) != 0) {
        fprintf(stderr, "bellhop: cpu%u: %s\n", c->id, err);
        request_exit(&m->env, 1);
    }
}

static void *cpu_main(void *arg) {
    struct cpu *c = arg;
    struct machine *m = c->m;
    char name[16];
    snprintf(name, sizeof name, "vcpu-%u", c->id);
    pthread_setname_np(pthread_self(), name); /* itself: naming another thread opens /proc */
    if (m->env.timeline) timeline_ring(m->env.timeline, name); /* this thread's track, by its name */
    zx_handle_t vcpu;
    uint32_t options = c->id > 0 && m->linux_smp ? BELLHOP_VCPU_WAIT_FOR_SIPI : 0;
    if (c->entry_later) options |= BELLHOP_VCPU_ENTRY_LATER;
    /* made early: only once RAM is registered, and not at all if setup failed first */
    zx_status_t st = c->entry_later && !ram_registered(m) ? ZX_ERR_CANCELED
                                                           : zx_vcpu_create(m->guest, options, c->entry, &vcpu);
    pthread_mutex_lock(&m->lock);
    c->created = true;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    if (st != ZX_OK) {
        if (st != ZX_ERR_CANCELED) fprintf(stderr, "bellhop: cannot create cpu%u: %s\n", c->id, zx_status_get_string(st));
        cpu_restored(c, -1);
        request_exit(&m->env, 1);
        return NULL;
    }
    /* Made early, it confines itself before it waits: the sandbox's cost overlaps the rest of setup. */
    if (c->entry_later) confine_cpu(m, c);
    bool given = !c->entry_later || entry_given(m, c, vcpu); /* else setup failed: nothing ran */
    if (given && m->cfg->restore) {
        int r = machine_restore_cpu(c, vcpu) == ZX_OK ? 1 : -1;
        cpu_restored(c, r);
        if (r < 0) request_exit(&m->env, 1);
    }
    if (!c->entry_later) confine_cpu(m, c);
    sandbox_probe(SANDBOX_VCPU);
    pthread_mutex_lock(&m->lock);
    c->vcpu = vcpu;
    bool stop = m->exiting;
    pthread_cond_broadcast(&m->cond); /* setup_done() waits for this */
    pthread_mutex_unlock(&m->lock);
    /* A restored vCPU waits until the machine is set up (longer when restored paused). */
    if (!stop && m->cfg->restore) stop = park(m, c, vcpu);
    if (c->id == 0 && !stop) {
        /* setup's last phase, the boot vCPU's thread, state and sandbox: the main thread's
         * phases ended before this thread was created, and it adds none after */
        machine_setup_phase(m, "vcpu");
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

/* cpu `id`'s thread, started (m->lock held): 0, or pthread_create's error. */
static int spawn_cpu_locked(struct machine *m, unsigned id, uint64_t entry, bool entry_later) {
    struct cpu *c = &m->cpus[id];
    c->m = m;
    c->id = id;
    c->entry = entry;
    c->entry_later = entry_later;
    c->sandboxed = sandbox_active();
    int r = pthread_create(&c->thread, NULL, cpu_main, c);
    if (r == 0) c->running = true;
    return r;
}

static int start_cpu(struct machine *m, unsigned id, uint64_t entry) {
    struct cpu *c = &m->cpus[id];
    pthread_mutex_lock(&m->lock);
    if (c->running || m->exiting) { /* x86 guests send STARTUP twice */
        pthread_mutex_unlock(&m->lock);
        return 0;
    }
    int r = spawn_cpu_locked(m, id, entry, false);
    /* vCPU ids follow creation order: create one at a time, so that cpu N is vCPU N. Its
     * state, when restored, is set on its thread while the next is made (cpus_restored). */
    while (r == 0 && !c->created) pthread_cond_wait(&m->cond, &m->lock);
    pthread_mutex_unlock(&m->lock);
    return r == 0 ? 0 : machine_fail("cannot start cpu%u: %s", id, strerror(r));
}

/* A fresh guest's boot vCPU is made on its thread while this one loads the kernel, the
 * devices and the boot data: the interrupt controllers, the vCPU and its CPUID are the
 * launch's dearest KVM calls after the VM itself (about 1 ms on PVM), and none needs the
 * kernel. After the RAM: on PVM, RAM registered after the interrupt controllers costs
 * milliseconds (vmm/hv/vm.c). boot_cpu_go enters it. */
static int start_boot_cpu_early(struct machine *m) {
    pthread_mutex_lock(&m->lock);
    int r = spawn_cpu_locked(m, 0, 0, true);
    pthread_mutex_unlock(&m->lock);
    return r == 0 ? 0 : machine_fail("cannot start cpu0: %s", strerror(r));
}

/* The boot vCPU, made early: 0, or -1 when it could not be (said on its thread). */
static int boot_cpu_made(struct machine *m) { return await_flag(m, &m->cpus[0].created) ? 0 : -1; }

/* Its entry given, the boot vCPU enters the guest. */
static void boot_cpu_go(struct machine *m) {
    pthread_mutex_lock(&m->lock);
    m->cpus[0].entry = m->boot_entry;
    m->boot_cpu_go = true;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

/* Restoring: every vCPU has its state (0), or one was refused, which fails setup. */
static int cpus_restored(struct machine *m) {
    int refused = -1;
    pthread_mutex_lock(&m->lock);
    for (unsigned i = 0; i < m->cfg->cpus && m->cpus[i].running; i++) {
        while (m->cpus[i].restored == 0) pthread_cond_wait(&m->cond, &m->lock);
        if (m->cpus[i].restored < 0 && refused < 0) refused = (int)i;
    }
    pthread_mutex_unlock(&m->lock);
    return refused < 0 ? 0 : machine_fail("cpu%d: the snapshot's vCPU state was refused (said above)", refused);
}

static __thread bool on_loop_thread;

/* The loop thread's first task confines it, then holds the loop until setup is over (the
 * control plane attached, the guest started: release_loop): no handler runs before that, and
 * the thread's start and sandbox overlap the rest of setup (a restore's vCPU states). */
static void confine_loop_thread(async_dispatcher_t *d, async_task_t *task, zx_status_t st) {
    (void)d;
    on_loop_thread = st == ZX_OK;
    struct machine *m = container_of(task, struct machine, loop_sandbox_task);
    int r = 1;
    if (st != ZX_OK) {
        r = -1;
        snprintf(m->loop_sandbox_err, sizeof m->loop_sandbox_err, "the loop ended before its sandbox");
    } else if (m->cfg->sandbox && sandbox_enter(m->cfg->control ? SANDBOX_API_LOOP : SANDBOX_LOOP, m->loop_sandbox_err,
                                                sizeof m->loop_sandbox_err) != 0) {
        r = -1;
    }
    pthread_mutex_lock(&m->lock);
    m->loop_sandbox = r;
    pthread_cond_broadcast(&m->cond);
    while (r == 1 && !m->loop_released && !m->exiting) pthread_cond_wait(&m->cond, &m->lock);
    pthread_mutex_unlock(&m->lock);
    if (r == 1) sandbox_probe(SANDBOX_LOOP);
}

/* The loop thread, started: it confines itself meanwhile (loop_confined says how that went). */
static int start_loop_thread(struct machine *m) {
    m->loop_sandbox_task = (async_task_t){.handler = confine_loop_thread, .deadline = ZX_TIME_INFINITE_PAST};
    if (async_post_task(m->env.loop, &m->loop_sandbox_task) != ZX_OK ||
        async_loop_start_thread(m->loop, "loop", NULL) != ZX_OK)
        return machine_fail("cannot start the loop thread");
    return 0;
}

static int loop_confined(struct machine *m) {
    pthread_mutex_lock(&m->lock);
    while (m->loop_sandbox == 0) pthread_cond_wait(&m->cond, &m->lock);
    int r = m->loop_sandbox;
    pthread_mutex_unlock(&m->lock);
    return r == 1 ? 0 : machine_fail("%s", m->loop_sandbox_err);
}

static void release_loop(struct machine *m) { set_flag(m, &m->loop_released); }

int machine_pause(struct machine *m, char *err, size_t errlen) {
    if (m->dispatch_loop) {
        snprintf(err, errlen, "cannot pause with --dispatch loop (a parked vCPU may be waiting for this thread)");
        return -1;
    }
    pthread_mutex_lock(&m->lock);
    m->paused = true;
    /* Every 10 ms for 5 s at most: each vCPU still running is kicked (again: one may have
     * started since), until all are parked. */
    for (unsigned step = 0;; step++) {
        unsigned running = 0;
        for (unsigned i = 0; i < MACHINE_MAX_CPUS; i++) {
            struct cpu *c = &m->cpus[i];
            if (c->vcpu == ZX_HANDLE_INVALID || c->parked) continue;
            running++;
            zx_vcpu_kick(c->vcpu);
        }
        if (m->exiting || running == 0) break;
        if (step == 500) {
            m->paused = false;
            pthread_cond_broadcast(&m->cond);
            pthread_mutex_unlock(&m->lock);
            snprintf(err, errlen, "the vCPUs did not stop within 5 s");
            return -1;
        }
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += 10 * 1000 * 1000;
        if (t.tv_nsec >= 1000000000) t.tv_sec++, t.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&m->cond, &m->lock, &t);
    }
    pthread_mutex_unlock(&m->lock);
    return 0;
}

void machine_resume(struct machine *m) {
    pthread_mutex_lock(&m->lock);
    m->paused = false;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

struct timeline *machine_timeline(struct machine *m) { return m->env.timeline; }

bool machine_paused(struct machine *m) {
    pthread_mutex_lock(&m->lock);
    bool p = m->paused;
    pthread_mutex_unlock(&m->lock);
    return p;
}

/* Setup is over once the first vCPU runs under its filter (the loop thread confined itself
 * before it started): what setup alone mapped can go (vmm/machine/footprint.h). */
static void setup_done(struct machine *m) {
    pthread_mutex_lock(&m->lock);
    while (!m->exiting && m->cpus[0].vcpu == ZX_HANDLE_INVALID) pthread_cond_wait(&m->cond, &m->lock);
    bool exiting = m->exiting;
    pthread_mutex_unlock(&m->lock);
    if (!exiting) footprint_trim();
}

static void loop_turn_begins(async_loop_t *loop, void *data) {
    (void)loop;
    ((struct machine *)data)->loop_turn_ns = zx_clock_get_monotonic();
}

/* Handlers the loop's teardown cancels run on the main thread: they are no turns of the loop
 * thread's, and would make a second "loop" track. */
static void loop_turn_ends(async_loop_t *loop, void *data) {
    (void)loop;
    struct machine *m = data;
    if (!on_loop_thread) return;
    struct timeline_record e = {.ts_ns = m->loop_turn_ns, .dur_ns = zx_clock_get_monotonic() - m->loop_turn_ns,
                                .kind = TIMELINE_TURN, .what = "loop handler"};
    timeline_put(timeline_ring(m->env.timeline, "loop"), &e);
}

/* The machine before any KVM object, with its timeline file open: NULL (said why) when it
 * cannot be. */
static struct machine *machine_new(const struct machine_config *cfg) {
    if (cfg->cpus == 0 || cfg->cpus > MACHINE_MAX_CPUS)
        return machine_fail("%u vCPUs: a machine has 1 to %d", cfg->cpus, MACHINE_MAX_CPUS), NULL;
    if (cfg->smt && cfg->cpus > 1 && cfg->cpus % 2)
        return machine_fail("%u vCPUs with smt: two threads per core take 1 or an even number", cfg->cpus), NULL;
    /* glibc's malloc counts the host's CPUs, reading /sys, when a thread first wants a 9th
     * arena: with more than 8 vCPUs that thread is a new vCPU's, under its creator's seccomp
     * filter, which allows no open. The limit it would find is set here, before any thread. */
    long host_cpus = sysconf(_SC_NPROCESSORS_ONLN);
    mallopt(M_ARENA_MAX, 8 * (int)(host_cpus > 0 ? host_cpus : 1));
    struct machine *m = aligned_alloc(4096, (sizeof *m + 4095) & ~(size_t)4095);
    if (!m) return machine_fail("out of memory"), NULL;
    memset(m, 0, sizeof *m);
    m->cfg = cfg;
    m->env.mem_fd = -1;
    m->filler = KERNEL_CACHE_NO_FILLER;
    m->env.request_exit = request_exit;
    machine_lend_irqs(m);
    m->env.trace = cfg->trace_traps;
    m->env.trace_start_ns = cfg->start_ns;
    m->env.stats = cfg->stats || cfg->metrics;
    if (cfg->trace_file) {
        char err[300];
        if (!(m->env.timeline = timeline_create(cfg->trace_file, err, sizeof err))) {
            machine_fail("--trace-file %s", err);
            free(m);
            return NULL;
        }
    }
    m->dispatch_loop = cfg->dispatch_loop;
    m->loop_call.handler = run_loop_call;
    m->setup_last_ns = cfg->start_ns;
    if (cfg->main_ns > cfg->start_ns) machine_setup_phase_until(m, "exec", cfg->main_ns);
    machine_setup_phase(m, "options");
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    for (unsigned i = 0; i < MACHINE_MAX_CPUS; i++) m->cpus[i].vcpu = ZX_HANDLE_INVALID;
    for (unsigned i = 0; i < IOAPIC_PINS; i++) m->irqfds[i] = -1;
    image_leases_init(&m->leases);
    return m;
}

zx_handle_t machine_prepare_vm(void) {
    zx_handle_t vm = ZX_HANDLE_INVALID;
    return zx_guest_create(0, &vm) == ZX_OK ? vm : ZX_HANDLE_INVALID;
}

static int create_vm(struct machine *m) {
    zx_status_t st = ZX_OK;
    if (m->cfg->prepared_vm != ZX_HANDLE_INVALID) m->guest = m->cfg->prepared_vm;
    else st = zx_guest_create(0, &m->guest);
    if (st != ZX_OK) {
        struct kvm_host host;
        kvm_host_classify(&host); /* why, in words */
        if (host.kind == KVM_HOST_NONE)
            return machine_fail("cannot create a VM: %s; scripts/run.sh runs bellhop in the nested KVM host instead",
                                host.why);
        return machine_fail("cannot create a VM: %s", zx_status_get_string(st));
    }
    m->env.guest = m->guest;
    /* Without smt the guest keeps KVM's CPUID (one thread per core), as before smt was offered. */
    if (m->cfg->smt && (st = bellhop_guest_set_topology(m->guest, m->cfg->cpus, 2)) != ZX_OK)
        return machine_fail("cannot give the guest two threads per core: %s", zx_status_get_string(st));
    if (m->cfg->halt_poll_set && (st = bellhop_guest_set_halt_poll(m->guest, m->cfg->halt_poll_ns)) != ZX_OK)
        return machine_fail("--halt-poll-ns: %s", st == ZX_ERR_NOT_SUPPORTED ? "this host's KVM has no per-VM halt "
                            "polling (KVM_CAP_HALT_POLL)" : zx_status_get_string(st));
    if (m->cfg->idle_in_guest && (st = bellhop_guest_idle_in_guest(m->guest)) != ZX_OK)
        return machine_fail("--cpu-pm on: %s", st == ZX_ERR_NOT_SUPPORTED ? "this host's KVM cannot leave HLT and "
                            "PAUSE to the guest (KVM_CAP_X86_DISABLE_EXITS)" : zx_status_get_string(st));
    char why[160];
    m->host = kvm_host_kind_of_working_kvm(why, sizeof why);
    if (m->cfg->boot_markers) fprintf(stderr, "bellhop: this host's KVM: %s (%s)\n", kvm_host_name(m->host), why);
    machine_setup_phase(m, "vm");
    return 0;
}

/* Guest RAM: a snapshot's memory file, a memfd a vhost-user backend maps too, or anonymous
 * (which a snapshot's page-fault handler fills in, when it is restored through one). */
static int map_ram(struct machine *m) {
    const struct machine_config *cfg = m->cfg;
    bool shared_memory = false, uffd = cfg->restore && cfg->restore->uffd_socket;
    for (unsigned i = 0; i < cfg->ndevices; i++) shared_memory |= cfg->devices[i].ops->out_of_process;
    void **host = (void **)&m->env.mem.host;
    zx_status_t st;
    if (cfg->restore && !uffd) st = bellhop_guest_map_file(m->guest, 0, cfg->mem, cfg->restore->mem_fd, 0, host);
    else if (shared_memory && !uffd) st = bellhop_guest_map_shared(m->guest, 0, cfg->mem, host, &m->env.mem_fd);
    else st = zx_guest_map_memory(m->guest, 0, cfg->mem, 0, host);
    if (st != ZX_OK && cfg->restore && !uffd)
        return machine_fail("cannot map the snapshot's memory file (%" PRIu64 " MiB): %s", cfg->mem >> 20,
                            st == ZX_ERR_OUT_OF_RANGE ? "it is shorter than the guest's memory"
                                                      : zx_status_get_string(st));
    if (st != ZX_OK)
        return machine_fail("cannot allocate %" PRIu64 " MiB of guest memory: %s", cfg->mem >> 20,
                            zx_status_get_string(st));
    m->env.mem.size = cfg->mem;
    char err[PATH_MAX + 200];
    if (uffd && !(m->uffd = uffd_backend_open(m->env.mem.host, cfg->mem, cfg->restore->uffd_socket, cfg->sandbox, err,
                                              sizeof err)))
        return machine_fail("%s", err);
    /* RAM of its own (not a snapshot's file, not shared with a vhost-user backend) can take
     * the kernel's and initrd's pages from the page cache rather than copies of them; not
     * with --dispatch loop, whose vCPUs cannot be paused from the loop (vmm/machine/image_lease.h). */
    if (!cfg->restore && !shared_memory && !cfg->dispatch_loop) m->env.mem.files = &m->mem_files;
    return 0;
}

static int create_loop(struct machine *m) {
    /* --trace-file: every handler the loop runs is a slice on its track (Fuchsia's prologue
     * and epilogue around each) */
    async_loop_config_t loop_config = kAsyncLoopConfigNeverAttachToThread;
    if (m->env.timeline) {
        loop_config.prologue = loop_turn_begins;
        loop_config.epilogue = loop_turn_ends;
        loop_config.data = m;
    }
    zx_status_t st = async_loop_create(&loop_config, &m->loop);
    if (st != ZX_OK) return machine_fail("cannot create the async loop: %s", zx_status_get_string(st));
    m->env.loop = async_loop_get_dispatcher(m->loop);
    pci_bus_init(&m->pci);
    machine_setup_phase(m, "memory");
    return 0;
}

/* A fresh guest: its kernel, its devices, the boot data. */
static int cold_boot_setup(struct machine *m) {
    const struct machine_config *cfg = m->cfg;
    if (machine_load_kernel(m) != 0) return -1;
    machine_setup_phase(m, "kernel");
    if (machine_devices_setup(m) != 0) return -1;
    machine_setup_phase(m, "devices");
    if (machine_boot_setup(m) != 0) return -1;
    if (cfg->boot_markers && m->mem_files.mapped)
        fprintf(stderr, "bellhop: %" PRIu64 " KiB of guest RAM are the files' pages (kernel, initrd), copy-on-write\n",
                m->mem_files.mapped >> 10);
    if (machine_watch_files(m) != 0) return machine_fail("cannot watch the kernel's and initrd's leases");
    machine_setup_phase(m, "boot data");
    return 0;
}

/* Every vCPU a fresh guest starts with, made; none has run. */
static int cold_boot_cpus(struct machine *m) {
    if (boot_cpu_made(m) != 0) return -1; /* first: vCPU ids follow creation order */
    /* Linux starts its other CPUs itself, with INIT and STARTUP IPIs: they must exist. */
    for (unsigned i = 1; m->linux_smp && i < m->cfg->cpus; i++)
        if (start_cpu(m, i, 0) != 0) return -1;
    return 0;
}

/* The page-fault handler serving guest RAM went away while the VM ran (on the handler's
 * watching thread, which then wakes whatever waits for a page: the vCPUs, told to stop here
 * first, leave KVM_RUN before the guest runs on). */
static void uffd_handler_gone(void *ctx, const char *why) {
    struct machine *m = ctx;
    machine_fail("%s", why);
    request_exit(&m->env, 1);
}

/* A snapshot's guest: its devices, its state, and every vCPU made and given its state
 * (parked) before the control plane comes: a refused state fails the load as a kernel that is
 * not one fails InstanceStart. */
static int restore_setup(struct machine *m) {
    const struct machine_config *cfg = m->cfg;
    /* what the kernel's kind decided, as it was */
    m->linux_smp = cfg->restore->state->flags & SNAPSHOT_LINUX_SMP;
    m->virtio_pci = cfg->restore->state->flags & SNAPSHOT_VIRTIO_PCI;
    if (machine_devices_setup(m) != 0) return -1;
    machine_setup_phase(m, "devices");
    if (machine_restore_state(m) != 0) return -1;
    char err[PATH_MAX + 200];
    if (m->uffd && uffd_backend_running(m->uffd, uffd_handler_gone, m, err, sizeof err) != 0)
        return machine_fail("%s", err);
    machine_setup_phase(m, "restore");
    return 0;
}

/* Every vCPU made, each setting its state on its own thread meanwhile (cpus_restored). */
static int restore_vcpus(struct machine *m) {
    m->paused = true;
    for (unsigned i = 0; i < m->cfg->cpus; i++)
        if (start_cpu(m, i, 0) != 0) return -1;
    machine_setup_phase(m, "vcpus");
    /* A bell the loop had not handled when the snapshot was taken is queued before the loop runs. */
    struct virtio_dev *vd;
    for (unsigned i = 0; (vd = machine_device(m, i)); i++) virtio_restore_kick(vd);
    return 0;
}

static void restore_start(struct machine *m) {
    machine_restore_announce(m);
    if (!m->cfg->restore->paused) machine_resume(m);
}

/* What watches the guest run: the disassembler for --trace traps (vCPU threads cannot load it
 * later) and --profile. */
static int open_observers(struct machine *m) {
    const struct machine_config *cfg = m->cfg;
    if (cfg->trace_traps) disasm_load();
    if (!cfg->profile) return 0;
    char err[300];
    m->profile = profile_open(cfg->profile, cfg->kernel, cfg->profile_symbols, cfg->cpus, cfg->start_ns, err, sizeof err);
    return m->profile ? 0 : machine_fail("--profile: %s", err);
}

static int confine_main(struct machine *m) {
    const struct machine_config *cfg = m->cfg;
    if (cfg->sandbox) {
        char err[160];
        if (sandbox_enter(cfg->control ? SANDBOX_API_MAIN : SANDBOX_MAIN, err, sizeof err) != 0)
            return machine_fail("%s", err);
    }
    sandbox_probe(SANDBOX_MAIN);
    return 0;
}

/* The loop thread confined, the control plane, the vCPUs and the main thread's sandbox. A
 * restore's vCPUs are made and given their state while the loop thread confines itself. */
static int start_running(struct machine *m) {
    const struct machine_config *cfg = m->cfg;
    if (cfg->restore && restore_vcpus(m) != 0) return -1;
    if (loop_confined(m) != 0) return -1;
    machine_setup_phase(m, "loop");
    if (cfg->restore && cpus_restored(m) != 0) return -1;
    if (cfg->restore) machine_setup_phase(m, "vcpu states");
    if (cfg->control) cfg->control->attach(cfg->control, m, m->env.loop);
    terminal_raw(STDIN_FILENO);
    if (cfg->restore) {
        restore_start(m);
    } else {
        /* A fresh guest's first instruction comes after this thread's sandbox: no thread of
         * the VMM runs unconfined beside a guest that has run. */
        kernel_cache_filler_started(&m->filler); /* its spawning thread gone */
        if (cold_boot_cpus(m) != 0 || confine_main(m) != 0) return -1;
        boot_cpu_go(m);
        kernel_cache_filler_release(&m->filler); /* the filler may work now */
    }
    /* after the guest's start: waking the loop thread is one more thread to schedule (on a
     * PVM host, a wake of an idle CPU costs milliseconds), and the guest needs none of it to
     * run (its bells wait in the port) */
    release_loop(m);
    if (cfg->restore && confine_main(m) != 0) return -1;
    if (cfg->control && cfg->control->started) cfg->control->started(cfg->control);
    setup_done(m);
    return 0;
}

static int wait_for_exit(struct machine *m) {
    pthread_mutex_lock(&m->lock);
    while (!m->exiting) pthread_cond_wait(&m->cond, &m->lock);
    int status = m->status;
    pthread_mutex_unlock(&m->lock);
    return status;
}

/* Stops what runs, reports, and releases everything the machine holds; returns status. */
static int tear_down(struct machine *m, int status) {
    const struct machine_config *cfg = m->cfg;
    request_exit(&m->env, status); /* stops any vCPU still running */
    uffd_backend_close(m->uffd);   /* and wakes any waiting for a page its handler never sent */
    for (unsigned i = 0; i < MACHINE_MAX_CPUS; i++)
        if (m->cpus[i].running) pthread_join(m->cpus[i].thread, NULL);
    if (m->loop) async_loop_destroy(m->loop);
    for (unsigned i = 0; i < MACHINE_MAX_CPUS; i++)
        if (m->cpus[i].crash.crashed) machine_crash_report(&m->cpus[i]);
    if (cfg->stats && m->guest) machine_print_stats(m);
    if (m->env.timeline) { /* every thread that records has stopped */
        char err[300];
        if (m->guest && timeline_write(m->env.timeline, cfg->start_ns, err, sizeof err) != 0)
            fprintf(stderr, "bellhop: --trace-file %s\n", err);
        timeline_destroy(m->env.timeline);
    }
    profile_close(m->profile, stderr);
    terminal_restore();
    machine_devices_destroy(m);
    if (m->guest) zx_handle_close(m->guest);
    machine_dirty_free(m);
    image_leases_release(&m->leases); /* guest RAM is gone: nothing depends on the files */
    kernel_cache_filler_release(&m->filler);
    for (unsigned i = 0; i < MACHINE_MAX_CPUS; i++) free(m->cpus[i].saved);
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->lock);
    free(m);
    return status;
}

int machine_run(const struct machine_config *cfg) {
    struct machine *m = machine_new(cfg);
    if (!m) {
        if (cfg->prepared_vm != ZX_HANDLE_INVALID) zx_handle_close(cfg->prepared_vm);
        return 1;
    }
    int status = 1;
    if (create_vm(m) != 0 || (!cfg->restore && start_boot_cpu_early(m) != 0) || map_ram(m) != 0 ||
        machine_track_dirty(m) != 0)
        return tear_down(m, status);
    set_flag(m, &m->ram_ready);
    if (create_loop(m) != 0 || start_loop_thread(m) != 0) return tear_down(m, status);
    if ((cfg->restore ? restore_setup(m) : cold_boot_setup(m)) != 0) return tear_down(m, status);
    if (open_observers(m) != 0 || start_running(m) != 0) return tear_down(m, status);
    return tear_down(m, wait_for_exit(m));
}

