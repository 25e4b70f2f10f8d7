/* What the machine tells: --trace traps (each packet with the guest instruction behind it),
 * crash reports, --stats and --boot-markers' setup phases. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>

#include "devices/virtio_mmio.h"
#include "devices/virtio_pci.h"
#include "vmm/observe/disasm.h"
#include "vmm/machine/machine_parts.h"

__attribute__((cold)) void machine_trace_packet(struct cpu *c, zx_handle_t vcpu, const zx_port_packet_t *p) {
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

__attribute__((cold)) void machine_crash_capture(struct cpu *c, zx_handle_t vcpu, zx_status_t st) {
    struct crash *k = &c->crash;
    k->crashed = true;
    k->status = st;
    bellhop_vcpu_last_error(vcpu, k->err, sizeof k->err);
    k->insn_len = st == ZX_ERR_INTERNAL ? bellhop_vcpu_failed_instruction(vcpu, k->insn, sizeof k->insn) : 0;
    k->have_regs = zx_vcpu_read_state(vcpu, ZX_VCPU_STATE, &k->r, sizeof k->r) == ZX_OK &&
                   bellhop_vcpu_read_sregs(vcpu, &k->s) == ZX_OK;
}

void machine_crash_report(struct cpu *c) {
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

void machine_print_stats(struct machine *m) {
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
        for (unsigned q = 0; q < vds[i]->nqueues; q++) {
            const struct handler_stats *b = &vds[i]->bells[q];
            if (!b->count) continue;
            fprintf(stderr, "  %-14s queue %u: %llu bells, handler p50 <= %llu ns, p99 <= %llu ns, max %llu ns\n",
                    vds[i]->ops->name, q, (unsigned long long)b->count, (unsigned long long)handler_stats_quantile(b, 0.5),
                    (unsigned long long)handler_stats_quantile(b, 0.99), (unsigned long long)b->max_ns);
        }
}

void machine_metrics_line(struct machine *m, char *buf, size_t len) {
    uint64_t e[BELLHOP_EXIT_KINDS] = {0}, total = 0;
    bellhop_guest_exit_counts(m->guest, e);
    for (int i = 0; i < BELLHOP_EXIT_KINDS; i++) total += e[i];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    size_t at = 0;
#define PUT(...) at += (size_t)snprintf(buf + at, at < len ? len - at : 0, __VA_ARGS__)
    PUT("{\"utc_timestamp_ms\":%llu,\"vm\":{\"paused\":%s},\"vcpu\":{\"exits\":%llu,\"exit_io\":%llu,"
        "\"exit_mmio\":%llu,\"exit_bell\":%llu,\"exit_intr\":%llu,\"exit_other\":%llu},\"traps\":{",
        (unsigned long long)now.tv_sec * 1000 + (unsigned long long)now.tv_nsec / 1000000,
        machine_paused(m) ? "true" : "false", (unsigned long long)total, (unsigned long long)e[BELLHOP_EXIT_IO],
        (unsigned long long)e[BELLHOP_EXIT_MMIO], (unsigned long long)e[BELLHOP_EXIT_BELL],
        (unsigned long long)e[BELLHOP_EXIT_INTR], (unsigned long long)e[BELLHOP_EXIT_OTHER]);
    bool first = true;
    for (unsigned i = 0; i < m->nmaps; i++) { /* the trap windows the guest used */
        const struct io_mapping *map = &m->maps[i];
        pthread_mutex_lock(&map->stats->lock);
        uint64_t count = map->stats->h.count;
        pthread_mutex_unlock(&map->stats->lock);
        if (!count) continue;
        PUT("%s\"%s@%#llx\":%llu", first ? "" : ",", map->ops->name, (unsigned long long)map->base,
            (unsigned long long)count);
        first = false;
    }
    PUT("},\"bells\":{");
    first = true;
    struct virtio_dev *vds[FDT_MAX_VIRTIO + MAX_PCI_DEVICES];
    unsigned n = 0;
    for (unsigned i = 0; i < m->nvirtio; i++) vds[n++] = virtio_mmio_dev(m->virtio[i]);
    for (unsigned i = 0; i < m->nvpci; i++) vds[n++] = virtio_pci_dev(m->vpci[i]);
    for (unsigned i = 0; i < n; i++) /* loop thread: the bells' counts are its own */
        for (unsigned q = 0; q < vds[i]->nqueues; q++) {
            PUT("%s\"%s.%u/%u\":%llu", first ? "" : ",", vds[i]->ops->name, i, q,
                (unsigned long long)vds[i]->bells[q].count);
            first = false;
        }
    PUT("}}");
#undef PUT
    if (at >= len && len) buf[0] = 0; /* cut short: nothing rather than broken JSON */
}

/* Setup's phase `name` ends now (--boot-markers only): its time joins m->setup_phases, which
 * the guest-entered line shows, so that a slow setup says where it went. */
void machine_setup_phase(struct machine *m, const char *name) { machine_setup_phase_until(m, name, zx_clock_get_monotonic()); }

void machine_setup_phase_until(struct machine *m, const char *name, uint64_t now) {
    if (!m->cfg->boot_markers) return;
    size_t len = strlen(m->setup_phases);
    snprintf(m->setup_phases + len, sizeof m->setup_phases - len, "%s%s %.2f", len ? ", " : "", name,
             (double)(now - m->setup_last_ns) / 1e6);
    m->setup_last_ns = now;
}
