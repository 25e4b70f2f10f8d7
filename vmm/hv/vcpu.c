/* vCPUs: KVM vCPUs bound to the thread that created them, running the guest until a
 * synchronous exit becomes a GUEST_MEM / GUEST_IO / GUEST_VCPU packet.
 *
 * The exit path's functions, here and in the machine, handle table, port and loop, are
 * marked hot: the linker puts them side by side in .text.hot. Nested, every world switch
 * empties the emulated TLB, so each distinct page an exit touches costs (see bench/ab.sh). */
#include <errno.h>
#include <signal.h>
#include <time.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vmm/hv/hv.h"
#include "vmm/hv/io_insn.h"
#include "vmm/hv/paging.h"

#define VCPU_RIGHTS                                                                          \
    (ZX_RIGHT_DUPLICATE | ZX_RIGHT_TRANSFER | ZX_RIGHT_EXECUTE | ZX_RIGHT_SIGNAL |            \
     ZX_RIGHT_READ | ZX_RIGHT_WRITE)
/* What an exit handler returns when it handled the exit itself (a bell, a vCPU-control
 * register): enter the guest again rather than return a packet. */
#define REENTER ZX_ERR_NEXT

static __thread struct binding *tls_binding;
/* The handle this thread enters its vCPU by: every exit costs a lookup otherwise. */
static __thread struct handle_cache tls_vcpu;
static pthread_key_t binding_key, vcpu_cache_key;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int kick_signal, tick_signal;
static sigset_t tick_only; /* {tick_signal} */

static void binding_unref(struct binding *b) {
    if (b && atomic_fetch_sub(&b->refs, 1) == 1) free(b);
}
static void thread_exit(void *b) { binding_unref(b); }
static void cache_exit(void *c) { handle_cache_clear(c); }
static void on_kick(int sig) { (void)sig; }

static void init_once(void) {
    pthread_key_create(&binding_key, thread_exit);
    pthread_key_create(&vcpu_cache_key, cache_exit);
    /* A kick interrupts KVM_RUN with this signal; SA_RESTART keeps other syscalls going. */
    kick_signal = SIGRTMIN + 5;
    struct sigaction sa = {.sa_handler = on_kick, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(kick_signal, &sa, NULL);
    /* The tick is never delivered: it stays blocked in its thread and is taken by
     * sigtimedwait (take_tick). The handler is there only so that a stray one cannot kill. */
    tick_signal = SIGRTMIN + 6;
    sigaction(tick_signal, &sa, NULL);
    sigemptyset(&tick_only);
    sigaddset(&tick_only, tick_signal);
}

static void vcpu_destroy(struct zx_object *obj) {
    struct vcpu *v = (struct vcpu *)obj;
    struct guest *g = v->guest;
    pthread_rwlock_wrlock(&g->lock);
    if (g->vcpu_exits[v->id] == &v->exits) {
        g->vcpu_exits[v->id] = NULL;
        for (int i = 0; i < BELLHOP_EXIT_KINDS; i++)
            atomic_fetch_add_explicit(&g->exits[i], atomic_load_explicit(&v->exits.n[i], memory_order_relaxed),
                                      memory_order_relaxed);
    }
    pthread_rwlock_unlock(&g->lock);
    if (v->ticking) timer_delete(v->tick); /* its thread should have stopped it */
    if (v->run) munmap(v->run, (size_t)v->guest->run_size);
    if (v->fd >= 0) close(v->fd);
    if (v->binding) {
        atomic_store(&v->binding->alive, false);
        binding_unref(v->binding);
    }
    object_unref(&v->guest->obj);
    pthread_mutex_destroy(&v->err_lock);
    free(v);
}

/* Closing the last handle from the vCPU's own thread ends the vCPU now, as in Zircon: the
 * thread's cache lets go of it. (Closed from elsewhere, it ends when its thread next enters
 * or exits: like a Zircon vCPU inside zx_vcpu_enter, it is in use until then.) */
static void vcpu_zero_handles(struct zx_object *obj) {
    if (tls_vcpu.obj == obj) handle_cache_clear(&tls_vcpu);
}

static const struct object_ops vcpu_ops = {.type = ZX_OBJ_TYPE_VCPU, .destroy = vcpu_destroy,
                                           .on_zero_handles = vcpu_zero_handles};

static zx_status_t vcpu_get(zx_handle_t h, zx_rights_t rights, struct vcpu **out) {
    struct zx_object *obj;
    zx_status_t st = handle_get(h, ZX_OBJ_TYPE_VCPU, rights, &obj);
    if (st == ZX_OK) *out = (struct vcpu *)obj;
    return st;
}

/* cold: the branches that call it move out of the pages each exit touches (see kvm_run). */
__attribute__((cold, format(printf, 3, 4))) zx_status_t vcpu_failed(struct vcpu *v, zx_status_t st, const char *fmt, ...) {
    pthread_mutex_lock(&v->err_lock);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->err, sizeof v->err, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&v->err_lock);
    return st;
}

/* RIP at the current exit, for failure messages (cold: one KVM_GET_REGS). */
__attribute__((cold)) static unsigned long long exit_rip(struct vcpu *v) {
    struct kvm_regs r;
    return ioctl(v->fd, KVM_GET_REGS, &r) == 0 ? r.rip : ~0ull;
}

/* KVM_EXIT_INTERNAL_ERROR, by what it means for the guest. An exception that cannot be
 * delivered is a triple fault, whichever way a KVM reports it: hardware KVM gives
 * KVM_EXIT_SHUTDOWN, and a software KVM that delivers events itself (PVM) may give an
 * internal error instead; both are ZX_ERR_BAD_STATE. An instruction KVM could not emulate is
 * ZX_ERR_INTERNAL, its bytes kept for bellhop_vcpu_failed_instruction. */
__attribute__((cold)) static zx_status_t internal_error(struct vcpu *v) {
    const struct kvm_run *r = v->run;
    v->failed_insn_len = 0;
    switch (r->internal.suberror) {
    case KVM_INTERNAL_ERROR_EMULATION: {
        /* A KVM that emulates a mode it cannot deliver exceptions in (VMX's invalid guest
         * state, PVM outside long mode) stops with an emulation error and the exception
         * still pending: the guest could not take it. (#UD is what KVM itself queues for an
         * instruction it could not emulate.) */
        struct kvm_vcpu_events ev;
        if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) == 0 && (ev.exception.injected || ev.exception.pending) &&
            ev.exception.nr != 6)
            return vcpu_failed(v, ZX_ERR_BAD_STATE,
                        "triple fault: exception %u could not be delivered (KVM internal error %u, rip %#llx)",
                        ev.exception.nr, r->internal.suberror, exit_rip(v));
        if ((r->emulation_failure.ndata >= 3) &&
            (r->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
            uint8_t n = r->emulation_failure.insn_size;
            if (n > sizeof v->failed_insn) n = sizeof v->failed_insn;
            memcpy(v->failed_insn, r->emulation_failure.insn_bytes, n);
            v->failed_insn_len = n;
        }
        return vcpu_failed(v, ZX_ERR_INTERNAL, "KVM could not emulate the instruction at rip %#llx", exit_rip(v));
    }
    case KVM_INTERNAL_ERROR_SIMUL_EX:
    case KVM_INTERNAL_ERROR_DELIVERY_EV:
        return vcpu_failed(v, ZX_ERR_BAD_STATE, "triple fault: an exception could not be delivered (KVM internal error %u, rip %#llx)",
                    r->internal.suberror, exit_rip(v));
    default:
        return vcpu_failed(v, ZX_ERR_INTERNAL, "KVM internal error %u (rip %#llx)", r->internal.suberror, exit_rip(v));
    }
}

/* ---- creation: the PVH entry state ---- */

/* The guest's CPUID with this vCPU's ids in it (vmm/hv/cpuid_topology.c). */
static zx_status_t set_cpuid(struct vcpu *v) {
    struct guest *g = v->guest;
    pthread_rwlock_wrlock(&g->lock);
    zx_status_t st = guest_cpuid_locked(g);
    struct kvm_cpuid2 *c = NULL;
    if (st == ZX_OK) {
        const struct kvm_cpuid2 *src = g->cpuid;
        size_t sz = sizeof *src + src->nent * sizeof src->entries[0];
        if ((c = malloc(sz))) {
            memcpy(c, src, sz);
            for (unsigned i = 0; i < c->nent; i++) cpuid_for_vcpu(&g->topo, &c->entries[i], v->id);
        } else {
            st = ZX_ERR_NO_MEMORY;
        }
    }
    pthread_rwlock_unlock(&g->lock);
    if (st != ZX_OK) return st;
    int r = ioctl(v->fd, KVM_SET_CPUID2, c);
    free(c);
    return r == 0 ? ZX_OK : ZX_ERR_INTERNAL;
}

/* Flat segments (GDT code 0x10, data 0x18): 32-bit protected mode, or long mode's 64-bit code. */
static void flat_segments(struct kvm_sregs *s, bool long_mode) {
    struct kvm_segment code = {.base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 11, .present = 1,
                               .dpl = 0, .db = !long_mode, .s = 1, .l = long_mode, .g = 1};
    struct kvm_segment data = {.base = 0, .limit = 0xffffffff, .selector = 0x18, .type = 3, .present = 1,
                               .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1};
    s->cs = code;
    s->ds = s->es = s->fs = s->gs = s->ss = data;
}

/* Only for a vCPU that has not run (just made, or awaiting its entry). */
static zx_status_t set_entry_state(struct vcpu *v, const bellhop_vcpu_boot_state_t *b) {
    struct kvm_sregs s;
    if (v->have_reset_sregs) s = v->reset_sregs;
    else if (ioctl(v->fd, KVM_GET_SREGS, &s) != 0) return ZX_ERR_INTERNAL;
    flat_segments(&s, b->cr3 != 0);
    if (b->cr3) {
        s.gdt.base = b->gdt;
        s.gdt.limit = b->gdt_limit;
        s.cr3 = b->cr3;
        s.cr4 = 0x20;       /* PAE */
        s.cr0 = 0x80050033; /* PG | AM | WP | NE | ET | MP | PE */
        s.efer = 0x500;     /* LME | LMA */
    } else {
        s.cr0 = 0x11; /* PE | ET */
        s.cr4 = 0;
        s.efer = 0;
    }
    if (ioctl(v->fd, KVM_SET_SREGS, &s) != 0) return ZX_ERR_INTERNAL;
    struct kvm_regs regs = {.rip = b->entry, .rflags = 0x2, .rax = b->rax, .rbx = b->rbx, .rsi = b->rsi};
    if (ioctl(v->fd, KVM_SET_REGS, &regs) != 0) return ZX_ERR_INTERNAL;
    /* KVM makes a new BSP (vCPU 0) runnable and parks every other vCPU waiting for INIT/SIPI;
     * ours start at their entry. */
    if (v->id == 0) return ZX_OK;
    struct kvm_mp_state mp = {.mp_state = KVM_MP_STATE_RUNNABLE};
    return ioctl(v->fd, KVM_SET_MP_STATE, &mp) == 0 ? ZX_OK : ZX_ERR_INTERNAL;
}

zx_status_t zx_vcpu_create(zx_handle_t guest, uint32_t options, zx_gpaddr_t entry, zx_handle_t *out) {
    pthread_once(&once, init_once);
    struct guest *g;
    zx_status_t st = guest_get(guest, ZX_RIGHT_MANAGE_THREAD, &g);
    if (st != ZX_OK) return st;
    if ((options & ~(BELLHOP_VCPU_WAIT_FOR_SIPI | BELLHOP_VCPU_ENTRY_LATER)) || !out) {
        object_unref(&g->obj);
        return ZX_ERR_INVALID_ARGS;
    }
    handle_cache_clear(&tls_vcpu); /* a closed vCPU it still holds goes now */
    if (tls_binding && atomic_load(&tls_binding->alive)) {
        object_unref(&g->obj);
        return ZX_ERR_BAD_STATE;
    }
    unsigned id = atomic_fetch_add(&g->nvcpus, 1);
    if (id >= BELLHOP_MAX_VCPUS) {
        object_unref(&g->obj);
        return ZX_ERR_NO_RESOURCES;
    }
    struct vcpu *v = calloc(1, sizeof *v);
    struct binding *b = calloc(1, sizeof *b);
    if (!v || !b) {
        free(v);
        free(b);
        object_unref(&g->obj);
        return ZX_ERR_NO_MEMORY;
    }
    object_init(&v->obj, &vcpu_ops);
    pthread_mutex_init(&v->err_lock, NULL);
    v->guest = g; /* takes the reference */
    v->id = id;
    st = guest_irqchip(g); /* KVM gives a vCPU its LAPIC only if the irqchip came first */
    v->fd = st == ZX_OK ? ioctl(g->vm, KVM_CREATE_VCPU, (unsigned long)id) : -1;
    v->tid = (pid_t)syscall(SYS_gettid);
    if (st == ZX_OK && v->fd < 0) st = ZX_ERR_NO_RESOURCES;
    if (st == ZX_OK) {
        v->run = mmap(NULL, (size_t)g->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
        if (v->run == MAP_FAILED) {
            v->run = NULL;
            st = ZX_ERR_NO_MEMORY;
        }
    }
    if (st == ZX_OK) st = set_cpuid(v);
    if (st == ZX_OK && (options & BELLHOP_VCPU_ENTRY_LATER)) {
        v->awaiting_entry = true;
        v->have_reset_sregs = ioctl(v->fd, KVM_GET_SREGS, &v->reset_sregs) == 0;
    } else if (st == ZX_OK && !(options & BELLHOP_VCPU_WAIT_FOR_SIPI)) {
        st = set_entry_state(v, &(bellhop_vcpu_boot_state_t){.entry = entry});
    }
    if (st == ZX_OK) {
        /* No KVM_SYNC_X86_REGS: copying the registers into kvm_run on every exit cost each
         * exit about 1% (nested); only failures and tracing want RIP, and they ask for it. */
        v->run->kvm_valid_regs = 0;
        v->run_size = (uint64_t)g->run_size;
        pthread_rwlock_wrlock(&g->lock);
        g->vcpu_exits[id] = &v->exits;
        pthread_rwlock_unlock(&g->lock);
        atomic_init(&b->refs, 2);
        atomic_init(&b->alive, true);
        v->binding = b;
        binding_unref(tls_binding);
        tls_binding = b;
        pthread_setspecific(binding_key, b);
        pthread_setspecific(vcpu_cache_key, &tls_vcpu); /* let go of it when the thread ends */
        b = NULL;
        st = handle_create(&v->obj, VCPU_RIGHTS, out);
    }
    free(b);
    object_unref(&v->obj);
    return st;
}

/* ---- exits ---- */

__attribute__((hot)) static void count(struct vcpu *v, int kind) { /* only this vCPU's thread writes */
    atomic_ulong *n = &v->exits.n[kind];
    atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + 1, memory_order_relaxed);
}

/* Register-sized copies inline: a call into libc is a page more to touch on every exit. */
static inline void copy_reg(void *dst, const void *src, unsigned n) {
    switch (n) {
    case 1: memcpy(dst, src, 1); break;
    case 2: memcpy(dst, src, 2); break;
    case 4: memcpy(dst, src, 4); break;
    default: memcpy(dst, src, n); break;
    }
}

static uint8_t *io_data(struct vcpu *v) { return (uint8_t *)v->run + v->run->io.data_offset; }

__attribute__((hot)) static void io_packet(struct vcpu *v, zx_port_packet_t *pkt) {
    *pkt = (zx_port_packet_t){.key = v->io.key, .type = ZX_PKT_TYPE_GUEST_IO, .status = ZX_OK};
    pkt->guest_io.port = v->io.port;
    pkt->guest_io.access_size = v->io.size;
    pkt->guest_io.input = v->io.in;
    if (!v->io.in) copy_reg(pkt->guest_io.data, io_data(v) + v->io.index * v->io.size, v->io.size);
}

/* Traps are never removed or moved while their guest lives, so the one hit last answers a
 * repeated access without the guest's lock; its copy here spares the exit a cache line. */
__attribute__((hot)) static const struct trap_hit *find_trap(struct vcpu *v, struct trap_tree *tree, struct trap_hit *last,
                                        uint64_t addr, unsigned len) {
    if (last->trap && addr >= last->addr && addr + len <= last->end) return last;
    pthread_rwlock_rdlock(&v->guest->lock);
    struct trap *t = trap_find(tree, addr, len);
    pthread_rwlock_unlock(&v->guest->lock);
    if (!t) return NULL;
    *last = (struct trap_hit){.trap = t, .addr = t->addr, .end = t->addr + t->size, .key = t->key, .kind = t->kind};
    return last;
}

/* bellhop's vCPU-control device (see <zircon/syscalls/hypervisor.h>). Rare: kept out of the
 * exit path's pages. */
__attribute__((noinline)) static zx_status_t vcpu_ctl(struct vcpu *v, zx_port_packet_t *pkt) {
    struct kvm_run *r = v->run;
    unsigned off = r->io.port - BELLHOP_VCPU_CTL_PORT;
    uint8_t *data = io_data(v);
    if (r->io.count != 1 || r->io.size != 4) {
        if (r->io.direction == KVM_EXIT_IO_IN) memset(data, 0, (size_t)r->io.size * r->io.count);
        return REENTER;
    }
    uint32_t val;
    if (r->io.direction == KVM_EXIT_IO_IN) {
        val = off == 0 ? v->id : 0;
        memcpy(data, &val, 4);
        return REENTER;
    }
    memcpy(&val, data, 4);
    switch (off) {
    case 0x0: v->ctl_arg0 = (v->ctl_arg0 & ~0xffffffffull) | val; return REENTER;
    case 0x4: v->ctl_arg0 = (v->ctl_arg0 & 0xffffffffull) | (uint64_t)val << 32; return REENTER;
    case 0x8: v->ctl_arg1 = val; return REENTER;
    case 0xc: break;
    default: return REENTER;
    }
    /* As in Zircon, vCPU packets carry key 0. */
    *pkt = (zx_port_packet_t){.type = ZX_PKT_TYPE_GUEST_VCPU, .status = ZX_OK};
    switch (val) {
    case BELLHOP_VCPU_CTL_INTERRUPT:
        pkt->guest_vcpu.type = ZX_PKT_GUEST_VCPU_INTERRUPT;
        pkt->guest_vcpu.interrupt.mask = v->ctl_arg0;
        pkt->guest_vcpu.interrupt.vector = (uint8_t)v->ctl_arg1;
        return ZX_OK;
    case BELLHOP_VCPU_CTL_STARTUP:
        pkt->guest_vcpu.type = ZX_PKT_GUEST_VCPU_STARTUP;
        pkt->guest_vcpu.startup.id = v->ctl_arg0;
        pkt->guest_vcpu.startup.entry = v->ctl_arg1;
        return ZX_OK;
    case BELLHOP_VCPU_CTL_POWEROFF:
        return vcpu_failed(v, ZX_ERR_UNAVAILABLE, "guest powered off");
    case BELLHOP_VCPU_CTL_RESET:
        return vcpu_failed(v, ZX_ERR_CONNECTION_RESET, "guest asked for a reset");
    default:
        return REENTER;
    }
}

/* An access that no one trap can cover, though it starts in a trap or at a port past the last
 * one a trap may hold (Zircon's traps end below 0xffff): one that straddles two traps' ports,
 * or a 2- or 4-byte access at 0xffff (kvm-unit-tests' svm test reads a dword there). On a PC
 * bus no device claims it: it reads all ones and its writes go nowhere; true when so answered. */
static bool io_unclaimed(struct vcpu *v, bool in) {
    struct kvm_run *r = v->run;
    struct trap_hit first = {0};
    if (r->io.port + (unsigned)r->io.size <= UINT16_MAX &&
        !find_trap(v, &v->guest->io_tree, &first, r->io.port, 1))
        return false;
    if (in) memset(io_data(v), 0xff, (size_t)r->io.size * r->io.count);
    return true;
}

__attribute__((hot)) static zx_status_t handle_io(struct vcpu *v, zx_port_packet_t *pkt) {
    struct kvm_run *r = v->run;
    struct guest *g = v->guest;
    bool in = r->io.direction == KVM_EXIT_IO_IN;
    if (r->io.data_offset + (uint64_t)r->io.size * r->io.count > v->run_size)
        return vcpu_failed(v, ZX_ERR_INTERNAL, "KVM gave IO data outside kvm_run");
    const struct trap_hit *t = find_trap(v, &g->io_tree, &v->last_io, r->io.port, r->io.size);
    if (!t && io_unclaimed(v, in)) return REENTER;
    if (!t)
        return vcpu_failed(v, ZX_ERR_NOT_FOUND, "IO %s of %u bytes at port %#x: no trap (rip %#llx)",
                    in ? "read" : "write", r->io.size, r->io.port, exit_rip(v));
    if (t->trap == &g->ctl_trap) return vcpu_ctl(v, pkt);
    if (in && r->io.count == 1) copy_reg(io_data(v), &(uint64_t){0}, r->io.size); /* unanswered: 0 */
    else if (in) memset(io_data(v), 0, (size_t)r->io.size * r->io.count);
    v->io.active = true;
    v->io.in = in;
    v->io.size = r->io.size;
    v->io.port = r->io.port;
    v->io.index = 0;
    v->io.count = r->io.count;
    v->io.key = t->key;
    io_packet(v, pkt);
    return ZX_OK;
}

__attribute__((hot)) static zx_status_t handle_mmio(struct vcpu *v, zx_port_packet_t *pkt) {
    struct kvm_run *r = v->run;
    struct guest *g = v->guest;
    uint64_t addr = r->mmio.phys_addr;
    unsigned len = r->mmio.len;
    bool write = r->mmio.is_write;
    const struct trap_hit *t = find_trap(v, &g->mem_tree, &v->last_mem, addr, len);
    /* a bell here missed the ioeventfds (the slow path) */
    count(v, t && t->kind == ZX_GUEST_TRAP_BELL && write ? BELLHOP_EXIT_BELL : BELLHOP_EXIT_MMIO);
    if (!t)
        return vcpu_failed(v, ZX_ERR_OUT_OF_RANGE,
                    "MMIO %s of %u bytes at %#llx: neither memory nor trapped (rip %#llx)",
                    write ? "write" : "read", len, (unsigned long long)addr, exit_rip(v));
    if (t->kind == ZX_GUEST_TRAP_BELL) {
        if (!write)
            return vcpu_failed(v, ZX_ERR_NOT_SUPPORTED, "read of %u bytes from bell %#llx (rip %#llx)",
                        len, (unsigned long long)addr, exit_rip(v));
        zx_status_t st = bell_ring(t->trap->bell, addr, &v->kicked);
        if (st == ZX_ERR_CANCELED) {
            v->pending_bell = t->trap->bell;
            v->pending_bell_addr = addr;
            return st;
        }
        if (st != ZX_OK)
            return vcpu_failed(v, st, "bell at %#llx: its port is gone", (unsigned long long)addr);
        return REENTER;
    }
    *pkt = (zx_port_packet_t){.key = t->key, .type = ZX_PKT_TYPE_GUEST_MEM, .status = ZX_OK};
    pkt->guest_mem.addr = addr;
    pkt->guest_mem.access_size = (uint8_t)len;
    pkt->guest_mem.read = !write;
    if (write) copy_reg(&pkt->guest_mem.data, r->mmio.data, len > 8 ? 8 : len);
    else memset(r->mmio.data, 0, sizeof r->mmio.data); /* unanswered: 0 */
    v->mem_read = !write;
    return ZX_OK;
}

__attribute__((hot)) static zx_status_t handle_exit(struct vcpu *v, zx_port_packet_t *pkt) {
    struct kvm_run *r = v->run;
    /* MMIO exits are counted by handle_mmio, which knows whether a bell took them. */
    if (r->exit_reason != KVM_EXIT_MMIO)
        count(v, r->exit_reason == KVM_EXIT_IO     ? BELLHOP_EXIT_IO
                 : r->exit_reason == KVM_EXIT_INTR ? BELLHOP_EXIT_INTR
                                                   : BELLHOP_EXIT_OTHER);
    switch (r->exit_reason) {
    case KVM_EXIT_IO:
        return handle_io(v, pkt);
    case KVM_EXIT_MMIO:
        return handle_mmio(v, pkt);
    case KVM_EXIT_INTR:
        return REENTER;
    case KVM_EXIT_SHUTDOWN:
        return vcpu_failed(v, ZX_ERR_BAD_STATE, "triple fault (rip %#llx)", exit_rip(v));
    case KVM_EXIT_SYSTEM_EVENT:
        if (r->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN)
            return vcpu_failed(v, ZX_ERR_UNAVAILABLE, "guest powered off");
        if (r->system_event.type == KVM_SYSTEM_EVENT_RESET)
            return vcpu_failed(v, ZX_ERR_CONNECTION_RESET, "guest asked for a reset");
        return vcpu_failed(v, ZX_ERR_BAD_STATE, "guest system event %u", r->system_event.type);
    case KVM_EXIT_FAIL_ENTRY:
        return vcpu_failed(v, ZX_ERR_BAD_STATE, "VM entry failed (hardware reason %#llx)",
                    (unsigned long long)r->fail_entry.hardware_entry_failure_reason);
    case KVM_EXIT_INTERNAL_ERROR:
        return internal_error(v);
    default:
        return vcpu_failed(v, ZX_ERR_NOT_SUPPORTED, "unhandled KVM exit %u (rip %#llx)", r->exit_reason,
                    exit_rip(v));
    }
}

/* KVM_RUN as the system call itself: libc's ioctl() is one more page of code (and errno one
 * more word of TLS) for each exit to touch, and after an exit every page touched costs (a
 * nested host's emulated TLB is flushed on each world switch: about 200 cycles a page there).
 * 0, or a negative errno. */
static inline long kvm_run(int fd) {
    long rc;
    __asm__ volatile("syscall"
                     : "=a"(rc)
                     : "0"((long)SYS_ioctl), "D"((long)fd), "S"((long)KVM_RUN), "d"(0L)
                     : "rcx", "r11", "memory");
    return rc;
}

/* A tick is pending in the calling thread: take it. A tick that came between exits is pending
 * too, and ends the next KVM_RUN at once (its signal mask lets the tick through). */
__attribute__((cold)) static bool take_tick(void) {
    return sigtimedwait(&tick_only, NULL, &(struct timespec){0}) == tick_signal;
}

__attribute__((hot)) static zx_status_t vcpu_run(struct vcpu *v, zx_port_packet_t *pkt) {
    for (;;) {
        if (v->io.active) {
            if (++v->io.index < v->io.count) {
                io_packet(v, pkt);
                return ZX_OK;
            }
            v->io.active = false;
        }
        v->mem_read = false;
        if (v->pending_bell) {
            zx_status_t st = bell_ring(v->pending_bell, v->pending_bell_addr, &v->kicked);
            if (st == ZX_ERR_CANCELED) {
                atomic_store(&v->kicked, false);
                return st;
            }
            v->pending_bell = NULL;
            if (st != ZX_OK) return vcpu_failed(v, st, "bell: its port is gone");
        }
        if (atomic_load_explicit(&v->kicked, memory_order_relaxed) && atomic_exchange(&v->kicked, false))
            return ZX_ERR_CANCELED;
        long rc = kvm_run(v->fd);
        if (rc != 0) {
            if (rc == -EINTR || rc == -EAGAIN) {
                count(v, BELLHOP_EXIT_INTR);
                __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_RELAXED);
                if (v->ticking && take_tick()) return ZX_ERR_TIMED_OUT;
                continue;
            }
            return vcpu_failed(v, ZX_ERR_BAD_STATE, "KVM_RUN failed: %s", strerror((int)-rc));
        }
        zx_status_t st = handle_exit(v, pkt);
        if (st == ZX_ERR_CANCELED) atomic_store(&v->kicked, false);
        if (st != REENTER) return st;
    }
}

/* ---- the calls ---- */

/* A vCPU is the calling thread's when it carries the thread's binding. */
static bool owned_by_caller(const struct vcpu *v) { return v->binding == tls_binding; }

zx_status_t owned_vcpu(zx_handle_t h, zx_rights_t rights, struct vcpu **out) {
    zx_status_t st = vcpu_get(h, rights, out);
    if (st == ZX_OK && !owned_by_caller(*out)) {
        object_unref(&(*out)->obj);
        st = ZX_ERR_BAD_STATE;
    }
    return st;
}

/* owned_vcpu for the calls of every exit (enter, write_state); v is borrowed from the
 * thread's cache. */
__attribute__((hot)) static zx_status_t cached_vcpu(zx_handle_t h, zx_rights_t rights, struct vcpu **out) {
    struct zx_object *obj;
    zx_status_t st = handle_get_cached(&tls_vcpu, h, ZX_OBJ_TYPE_VCPU, rights, &obj);
    if (st != ZX_OK) return st;
    struct vcpu *v = (struct vcpu *)obj;
    if (!owned_by_caller(v)) {
        handle_cache_clear(&tls_vcpu);
        return ZX_ERR_BAD_STATE;
    }
    *out = v;
    return ZX_OK;
}

__attribute__((hot)) zx_status_t zx_vcpu_enter(zx_handle_t handle, zx_port_packet_t *packet) {
    struct vcpu *v;
    zx_status_t st = cached_vcpu(handle, ZX_RIGHT_EXECUTE, &v);
    if (st != ZX_OK) return st;
    if (__builtin_expect(v->awaiting_entry, 0)) v->awaiting_entry = v->have_reset_sregs = false; /* entered without */
    return packet ? vcpu_run(v, packet) : ZX_ERR_INVALID_ARGS;
}

zx_status_t zx_vcpu_kick(zx_handle_t handle) {
    struct vcpu *v;
    zx_status_t st = vcpu_get(handle, ZX_RIGHT_EXECUTE, &v);
    if (st != ZX_OK) return st;
    atomic_store(&v->kicked, true);
    /* Either KVM_RUN is under way (the signal ends it) or about to start (immediate_exit). */
    __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_RELEASE); /* the kernel reads it too */
    bell_wake_waiters(v->guest);
    syscall(SYS_tgkill, getpid(), v->tid, kick_signal);
    object_unref(&v->obj);
    return ZX_OK;
}

zx_status_t zx_vcpu_interrupt(zx_handle_t handle, uint32_t vector) {
    struct vcpu *v;
    zx_status_t st = vcpu_get(handle, ZX_RIGHT_SIGNAL, &v);
    if (st != ZX_OK) return st;
    /* As Zircon: vectors the architecture cannot deliver are ignored. */
    if (vector >= 16 && vector <= 255) {
        struct kvm_msi msi = {.address_lo = 0xfee00000u | (v->id << 12), .data = vector};
        if (ioctl(v->guest->vm, KVM_SIGNAL_MSI, &msi) < 0) st = ZX_ERR_INTERNAL;
    }
    object_unref(&v->obj);
    return st;
}

zx_status_t zx_vcpu_read_state(zx_handle_t handle, uint32_t kind, void *buffer, size_t size) {
    struct vcpu *v;
    zx_status_t st = owned_vcpu(handle, ZX_RIGHT_READ, &v);
    if (st != ZX_OK) return st;
    struct kvm_regs r;
    if (kind != ZX_VCPU_STATE || size != sizeof(zx_vcpu_state_t) || !buffer) {
        st = ZX_ERR_INVALID_ARGS;
    } else if (ioctl(v->fd, KVM_GET_REGS, &r) != 0) {
        st = ZX_ERR_INTERNAL;
    } else {
        zx_vcpu_state_t s = {r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi,
                             r.r8,  r.r9,  r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rflags};
        memcpy(buffer, &s, sizeof s);
    }
    object_unref(&v->obj);
    return st;
}

static zx_status_t write_regs(struct vcpu *v, const zx_vcpu_state_t *s) {
    struct kvm_regs r;
    if (ioctl(v->fd, KVM_GET_REGS, &r) != 0) return ZX_ERR_INTERNAL;
    r.rax = s->rax, r.rcx = s->rcx, r.rdx = s->rdx, r.rbx = s->rbx;
    r.rsp = s->rsp, r.rbp = s->rbp, r.rsi = s->rsi, r.rdi = s->rdi;
    r.r8 = s->r8, r.r9 = s->r9, r.r10 = s->r10, r.r11 = s->r11;
    r.r12 = s->r12, r.r13 = s->r13, r.r14 = s->r14, r.r15 = s->r15;
    r.rflags = (s->rflags & 0xffffffffu) | 0x2; /* bit 1 is always one */
    return ioctl(v->fd, KVM_SET_REGS, &r) == 0 ? ZX_OK : ZX_ERR_INTERNAL;
}

__attribute__((hot)) zx_status_t zx_vcpu_write_state(zx_handle_t handle, uint32_t kind, const void *buffer, size_t size) {
    struct vcpu *v;
    zx_status_t st = cached_vcpu(handle, ZX_RIGHT_WRITE, &v);
    if (st != ZX_OK) return st;
    if (!buffer) {
        st = ZX_ERR_INVALID_ARGS;
    } else if (kind == ZX_VCPU_STATE && size == sizeof(zx_vcpu_state_t)) {
        zx_vcpu_state_t s;
        memcpy(&s, buffer, sizeof s);
        st = write_regs(v, &s);
    } else if (kind == ZX_VCPU_IO && size == sizeof(zx_vcpu_io_t)) {
        zx_vcpu_io_t io;
        memcpy(&io, buffer, sizeof io);
        if (!v->io.active || !v->io.in) st = ZX_ERR_BAD_STATE;
        else if (io.access_size != v->io.size) st = ZX_ERR_INVALID_ARGS;
        else copy_reg(io_data(v) + v->io.index * v->io.size, io.data, v->io.size);
    } else if (kind == ZX_VCPU_MEM && size == sizeof(zx_vcpu_mem_t)) {
        zx_vcpu_mem_t m;
        memcpy(&m, buffer, sizeof m);
        if (!v->mem_read) st = ZX_ERR_BAD_STATE;
        else if (m.access_size != v->run->mmio.len) st = ZX_ERR_INVALID_ARGS;
        else copy_reg(v->run->mmio.data, &m.data, m.access_size);
    } else {
        st = ZX_ERR_INVALID_ARGS;
    }
    return st;
}

size_t bellhop_vcpu_failed_instruction(zx_handle_t handle, uint8_t *buf, size_t size) {
    struct vcpu *v;
    if (vcpu_get(handle, ZX_RIGHT_NONE, &v) != ZX_OK || !buf) return 0;
    size_t n = v->failed_insn_len < size ? v->failed_insn_len : size;
    memcpy(buf, v->failed_insn, n);
    return n;
}

zx_status_t bellhop_vcpu_last_error(zx_handle_t handle, char *buf, size_t size) {
    struct vcpu *v;
    zx_status_t st = vcpu_get(handle, ZX_RIGHT_NONE, &v);
    if (st != ZX_OK) return st;
    if (!buf || size == 0) {
        st = ZX_ERR_INVALID_ARGS;
    } else {
        pthread_mutex_lock(&v->err_lock);
        snprintf(buf, size, "%s", v->err);
        pthread_mutex_unlock(&v->err_lock);
    }
    object_unref(&v->obj);
    return st;
}

/* RIP at a port-OUT exit, as the contract has it: at the instruction. Hardware KVM exits on a
 * plain OUT before completing it (RIP at it), but a KVM that emulates the instruction (PVM,
 * where the guest's port IO traps from ring 3; any KVM for the last batch of a REP OUTS)
 * completes it first (RIP past it). The bytes tell which: when the instruction at RIP is not
 * this access and the one that ends at RIP is, RIP goes back to it. (The one case they cannot
 * tell, the same access twice in a row, is taken as RIP at the instruction.) */
__attribute__((cold)) static uint64_t io_out_rip(struct vcpu *v, const bellhop_vcpu_sregs_t *s, uint64_t rdx) {
    const struct mem_region *ram = &v->guest->regions[0];
    if (v->guest->nregions == 0 || ram->gpa != 0 || s->rip < 15) return s->rip;
    const struct guest_mem gm = {.host = ram->host, .size = ram->size};
    uint8_t code[30];
    if (read_guest_virtual(&gm, s, s->rip - 15, code, sizeof code) != sizeof code) return s->rip;
    const struct io_access a = {.out = true, .size = v->io.size, .port = v->io.port, .dx = (uint16_t)rdx};
    if (io_insn_match(code + 15, 15, s->cs_l, s->cs_db, &a)) return s->rip;
    for (size_t len = 1; len <= 15; len++)
        if (io_insn_match(code + 15 - len, len, s->cs_l, s->cs_db, &a) == len) return s->rip - len;
    return s->rip;
}

zx_status_t bellhop_vcpu_read_sregs(zx_handle_t handle, bellhop_vcpu_sregs_t *out) {
    struct vcpu *v;
    zx_status_t st = owned_vcpu(handle, ZX_RIGHT_READ, &v);
    if (st != ZX_OK) return st;
    struct kvm_regs r;
    struct kvm_sregs s;
    if (!out) {
        st = ZX_ERR_INVALID_ARGS;
    } else if (ioctl(v->fd, KVM_GET_REGS, &r) != 0 || ioctl(v->fd, KVM_GET_SREGS, &s) != 0) {
        st = ZX_ERR_INTERNAL;
    } else {
        *out = (bellhop_vcpu_sregs_t){.rip = r.rip, .cr0 = s.cr0, .cr2 = s.cr2, .cr3 = s.cr3,
                                      .cr4 = s.cr4, .efer = s.efer, .cs = s.cs.selector,
                                      .cs_l = s.cs.l, .cs_db = s.cs.db};
        if (v->io.active && !v->io.in) out->rip = io_out_rip(v, out, r.rdx);
    }
    object_unref(&v->obj);
    return st;
}

/* The tick is a POSIX timer whose signal goes to the vCPU's thread, which keeps it blocked; only
 * KVM_RUN's signal mask (KVM_SET_SIGNAL_MASK) lets it in, so it ends KVM_RUN with EINTR and
 * stays pending until vcpu_run takes it. No handler runs: a tick is seen exactly where KVM_RUN
 * returns, also where signal handlers are deferred (TSan runs them at its next interceptor). */
static zx_status_t tick_mask(struct vcpu *v, bool on) {
    sigset_t thread;
    if (pthread_sigmask(on ? SIG_BLOCK : SIG_UNBLOCK, &tick_only, &thread) != 0) return ZX_ERR_INTERNAL;
    if (!on) return ioctl(v->fd, KVM_SET_SIGNAL_MASK, NULL) == 0 ? ZX_OK : ZX_ERR_INTERNAL;
    sigdelset(&thread, tick_signal);
    /* KVM takes the kernel's sigset: the first 8 bytes of glibc's */
    _Alignas(struct kvm_signal_mask) uint8_t buf[sizeof(struct kvm_signal_mask) + 8];
    struct kvm_signal_mask *km = (struct kvm_signal_mask *)buf;
    km->len = 8;
    memcpy(km->sigset, &thread, 8);
    return ioctl(v->fd, KVM_SET_SIGNAL_MASK, km) == 0 ? ZX_OK : ZX_ERR_INTERNAL;
}

zx_status_t bellhop_vcpu_set_tick(zx_handle_t handle, uint64_t period_ns) {
    struct vcpu *v;
    zx_status_t st = owned_vcpu(handle, ZX_RIGHT_WRITE, &v);
    if (st != ZX_OK) return st;
    if (period_ns == 0) {
        if (v->ticking) {
            timer_delete(v->tick);
            v->ticking = false;
            take_tick();
            st = tick_mask(v, false);
        }
    } else {
        struct sigevent ev = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = tick_signal};
        ev._sigev_un._tid = v->tid; /* glibc 2.36 spells sigev_notify_thread_id so */
        struct itimerspec every = {.it_interval = {(time_t)(period_ns / 1000000000u), (long)(period_ns % 1000000000u)}};
        every.it_value = every.it_interval;
        if (!v->ticking) {
            if (tick_mask(v, true) != ZX_OK) {
                st = ZX_ERR_INTERNAL;
            } else if (timer_create(CLOCK_MONOTONIC, &ev, &v->tick) != 0) {
                tick_mask(v, false);
                st = ZX_ERR_NO_RESOURCES;
            } else {
                v->ticking = true;
            }
        }
        if (st == ZX_OK && timer_settime(v->tick, 0, &every, NULL) != 0) st = ZX_ERR_INVALID_ARGS;
    }
    object_unref(&v->obj);
    return st;
}

zx_status_t bellhop_vcpu_set_boot_state(zx_handle_t handle, const bellhop_vcpu_boot_state_t *state) {
    if (!state) return ZX_ERR_INVALID_ARGS;
    struct vcpu *v;
    zx_status_t st = owned_vcpu(handle, ZX_RIGHT_WRITE, &v);
    if (st != ZX_OK) return st;
    /* once, before it runs: a vCPU that has run has other state than the one read */
    st = v->awaiting_entry ? set_entry_state(v, state) : ZX_ERR_BAD_STATE;
    v->awaiting_entry = v->have_reset_sregs = false;
    object_unref(&v->obj);
    return st;
}
