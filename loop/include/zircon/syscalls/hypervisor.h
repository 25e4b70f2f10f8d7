#ifndef SYSROOT_ZIRCON_SYSCALLS_HYPERVISOR_H_
#define SYSROOT_ZIRCON_SYSCALLS_HYPERVISOR_H_

#include <assert.h>
#include <zircon/syscalls/port.h>
#include <zircon/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint32_t zx_guest_trap_t;
#define ZX_GUEST_TRAP_BELL ((zx_guest_trap_t)0u)
#define ZX_GUEST_TRAP_MEM ((zx_guest_trap_t)1u)
#define ZX_GUEST_TRAP_IO ((zx_guest_trap_t)2u)

#define ZX_GUEST_OPT_NORMAL ((uint32_t)0u)

#define ZX_VCPU_STATE ((uint32_t)0u)
#define ZX_VCPU_IO ((uint32_t)1u)

typedef struct zx_vcpu_state {
    uint64_t rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi;
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint64_t rflags; /* only the low 32 bits are honoured */
} zx_vcpu_state_t;
static_assert(sizeof(zx_vcpu_state_t) == 136, "zx_vcpu_state_t");

typedef struct zx_vcpu_io {
    uint8_t access_size;
    uint8_t padding1[3];
    union {
        uint8_t u8;
        uint16_t u16;
        uint32_t u32;
        uint8_t data[4];
    };
} zx_vcpu_io_t;
static_assert(sizeof(zx_vcpu_io_t) == 8, "zx_vcpu_io_t");

/* bellhop extension topic for zx_vcpu_write_state: the result of a GUEST_MEM read.
 * KVM decodes MMIO accesses itself, so the VMM answers a read with the value, not with
 * registers (`access_size` must match the packet's). */
#define ZX_VCPU_MEM ((uint32_t)0x100u)
typedef struct zx_vcpu_mem {
    uint8_t access_size;
    uint8_t padding1[7];
    uint64_t data;
} zx_vcpu_mem_t;
static_assert(sizeof(zx_vcpu_mem_t) == 16, "zx_vcpu_mem_t");

/* ---- The hypervisor calls, implemented by bellhop's hypervisor layer (vmm/) on KVM. ----
 *
 * Differences from Zircon that Linux forces (documented here, nowhere else):
 *
 *  - zx_guest_create takes no hypervisor resource and returns no VMAR. Guest-physical memory
 *    is added with zx_guest_map_memory: the guest allocates it (anonymous, 2 MiB-aligned,
 *    MADV_HUGEPAGE), owns it, and unmaps it when it is destroyed. BELL and MEM traps are holes
 *    in that memory, as in Zircon: the trapped range stops being RAM. RAM added below 3 GiB
 *    that goes past it goes on at 4 GiB, as on a PC (base/guest_mem.h's layout: the 32-bit
 *    hole holds the APIC, IOAPIC and device windows); one host mapping holds both parts.
 *  - The KVM objects come in this order on every path: the VM, then the guest's RAM, then the
 *    in-kernel interrupt controllers (PIC, IOAPIC, a LAPIC per vCPU) and PIT, made when the
 *    first vCPU, irqfd, MSI route or saved interrupt-controller state needs them, then vCPUs.
 *    Map RAM before any of those: on PVM, RAM registered after the irqchip costs 5-11 ms at
 *    128 MiB (0.06-0.08 ms before it); KVM accepts RAM added later, at that price.
 *  - A new vCPU starts as a PVH entry does: 32-bit protected mode, flat 4 GiB CS/DS/ES/SS,
 *    paging off, EFLAGS = 0x2, EIP = entry. Its local APIC id is its creation index (0, 1..).
 *  - Bell traps are KVM ioeventfds. The first BELL_FAST_SLOTS (16) 4-byte-aligned addresses
 *    of a bell range (addr, addr+4, ... - the virtio-pci notify layout with
 *    notify_off_multiplier 4; any write size) each get one ioeventfd: the vCPU never stops,
 *    and rings of one address that arrive before its packet is dequeued coalesce into that
 *    packet (at most one queued packet per address; a ring after the dequeue always yields a
 *    new one). Writes elsewhere in the range exit to zx_vcpu_enter, which queues one packet
 *    per write from the trap's pool of 256; when the pool is used up the vCPU waits (kickable)
 *    until the port drains. Packets from a destroyed guest are removed from the port.
 *  - GUEST_MEM packets use the decoded layout (addr, access_size, read, data). A read is
 *    answered with zx_vcpu_write_state(ZX_VCPU_MEM); an unanswered read reads 0. RIP at the
 *    exit (bellhop_vcpu_read_sregs, before the next enter) is the accessing instruction for a
 *    read and just past it for a write, as KVM completes writes before it exits; for IO, the
 *    accessing instruction (KVM steps past it on the next enter). Where a KVM emulates an OUT
 *    before it exits (PVM, where port IO traps from ring 3; any KVM for the last batch of a
 *    REP OUTS) and so reports RIP past it, bellhop finds the instruction from its bytes and
 *    reports it the same; only the same OUT twice in a row cannot be told apart (RIP is then
 *    taken to be at the instruction).
 *  - IO: string and REP forms are handled: each element is its own packet, in order
 *    (IN elements each answered with ZX_VCPU_IO).
 *  - GUEST_VCPU packets come from bellhop's vCPU-control device (KVM's in-kernel LAPIC handles
 *    real IPIs itself). Sixteen IO ports at BELLHOP_VCPU_CTL_PORT, 32-bit accesses:
 *        +0x0 ARG0_LO  +0x4 ARG0_HI  +0x8 ARG1   (write)     +0x0 (read): this vCPU's id
 *        +0xC COMMAND  0 INTERRUPT {mask = ARG0, vector = ARG1}  1 STARTUP {id = ARG0,
 *                      entry = ARG1}  2 POWEROFF  3 RESET
 *    The range belongs to the guest: an IO trap that overlaps it gives ZX_ERR_ALREADY_EXISTS.
 *  - How zx_vcpu_enter ends, beyond Zircon's codes:
 *        ZX_ERR_UNAVAILABLE        the guest powered off (as Zircon's arm64 PSCI SYSTEM_OFF)
 *        ZX_ERR_CONNECTION_RESET   the guest asked for a reset
 *        ZX_ERR_BAD_STATE          triple fault (an exception the guest cannot take: KVM_EXIT_SHUTDOWN
 *                                  on hardware KVM; on PVM, which delivers events itself, it
 *                                  may come as an internal error of event delivery), failed VM
 *                                  entry, a bell whose port is gone
 *        ZX_ERR_OUT_OF_RANGE       MMIO to an address that is neither memory nor trapped
 *        ZX_ERR_NOT_FOUND          IO to a port with no trap
 *        ZX_ERR_NOT_SUPPORTED      a read of a bell range; an exit KVM gives that we cannot handle
 *        ZX_ERR_INTERNAL           KVM internal error: an instruction KVM could not emulate (PVM
 *                                  emulates every instruction a guest runs outside long mode,
 *                                  and lacks CMPXCHG16B and XSAVE/XRSTOR; hardware KVM only
 *                                  MMIO accesses), see bellhop_vcpu_failed_instruction. On PVM
 *                                  a software interrupt (INT n, INT3) in a guest not built for
 *                                  PVM ends here too, before any fault is delivered: KVM's
 *                                  emulator takes them only in real mode; the report names the
 *                                  instruction. Exceptions the CPU raises (UD2, #PF, ...) are
 *                                  delivered, and an undeliverable one is a triple fault.
 *    bellhop_vcpu_last_error() describes the last failure (kind, address, RIP) in words.
 */
#define BELLHOP_VCPU_CTL_PORT 0x4F0u
#define BELLHOP_VCPU_CTL_SIZE 0x10u
#define BELLHOP_VCPU_CTL_INTERRUPT 0u
#define BELLHOP_VCPU_CTL_STARTUP 1u
#define BELLHOP_VCPU_CTL_POWEROFF 2u
#define BELLHOP_VCPU_CTL_RESET 3u
#define BELLHOP_BELL_FAST_SLOTS 16u
#define BELLHOP_BELL_PACKETS 256u
#define BELLHOP_MAX_VCPUS 64u

zx_status_t zx_guest_create(uint32_t options, zx_handle_t *guest);
/* Adds `size` bytes of RAM at guest-physical `addr` (both page-aligned) and returns where the
 * host sees it. Overlapping memory: ZX_ERR_ALREADY_EXISTS. */
zx_status_t zx_guest_map_memory(zx_handle_t guest, zx_gpaddr_t addr, size_t size, uint32_t options,
                                void **host);
zx_status_t zx_guest_set_trap(zx_handle_t handle, uint32_t kind, zx_vaddr_t addr, size_t size,
                              zx_handle_t port_handle, uint64_t key);

/* bellhop option for zx_vcpu_create: the vCPU starts as a PC's application processor does,
 * waiting in the in-kernel local APIC for INIT and STARTUP IPIs from another CPU (how Linux
 * brings up its CPUs); `entry` is ignored. */
#define BELLHOP_VCPU_WAIT_FOR_SIPI ((uint32_t)1u << 31)
/* bellhop option for zx_vcpu_create: `entry` is ignored and the vCPU must not be entered until
 * bellhop_vcpu_set_boot_state gives it one, so that a vCPU can be made (the dear KVM calls) before
 * its kernel is loaded. */
#define BELLHOP_VCPU_ENTRY_LATER ((uint32_t)1u << 30)

zx_status_t zx_vcpu_create(zx_handle_t guest, uint32_t options, zx_gpaddr_t entry, zx_handle_t *out);
/* bellhop: asks KVM now for the CPUID every vCPU starts from, which the first vCPU (or a
 * topology) would otherwise ask for: one of a launch's dearest calls, made by a thread while
 * another registers the guest's RAM. */
zx_status_t bellhop_guest_prepare_cpuid(zx_handle_t guest);
zx_status_t zx_vcpu_enter(zx_handle_t handle, zx_port_packet_t *packet);
zx_status_t zx_vcpu_kick(zx_handle_t handle);
zx_status_t zx_vcpu_interrupt(zx_handle_t handle, uint32_t vector);
zx_status_t zx_vcpu_read_state(zx_handle_t handle, uint32_t kind, void *buffer, size_t buffer_size);
zx_status_t zx_vcpu_write_state(zx_handle_t handle, uint32_t kind, const void *buffer,
                                size_t buffer_size);
/* bellhop: a doorbell register inside a MEM trap (virtio-mmio's QueueNotify). A guest write
 * of exactly `len` bytes (1, 2, 4 or 8) of the value `datamatch` at `addr` becomes a
 * GUEST_BELL packet {key, addr} on the port through a KVM ioeventfd, without stopping the
 * vCPU; rings coalesce as for bell traps. Any other write there stays a MEM packet of the
 * enclosing trap. Doorbells may share an address with different values (one per queue);
 * the same address and value twice gives ZX_ERR_ALREADY_EXISTS. */
zx_status_t bellhop_guest_set_doorbell(zx_handle_t guest, zx_gpaddr_t addr, size_t len,
                                       uint64_t datamatch, zx_handle_t port, uint64_t key);

/* bellhop: an eventfd that raises an edge on the guest's interrupt line `gsi` (an IOAPIC pin,
 * 0-23) each time 8 bytes are written to it (a KVM irqfd). The guest owns the fd and closes it
 * when it goes; asking again for the same gsi returns the same fd. */
zx_status_t bellhop_guest_irqfd(zx_handle_t guest, uint32_t gsi, int *fd);

/* bellhop: a level-triggered line (PCI INTx) on IOAPIC pin `gsi`: writing 8 bytes to *fd
 * asserts it; it stays asserted until the guest's EOI, when KVM lowers it and makes
 * *resample_fd readable (the device then re-asserts if it still has something pending). */
zx_status_t bellhop_guest_irqfd_level(zx_handle_t guest, uint32_t gsi, int *fd, int *resample_fd);
/* bellhop: sets interrupt line `gsi` (below 24: the IOAPIC's pins) to `level` at once, for a
 * source whose level its guest drives itself (QEMU's pc-testdev): KVM_IRQ_LINE. */
zx_status_t bellhop_guest_irq_line(zx_handle_t guest, uint32_t gsi, bool level);

/* bellhop: message-signalled interrupts (for MSI-X). An MSI vector is a KVM GSI routed to
 * an (address, data) message, raised by writing 8 bytes to its irqfd. Allocate one, then set
 * its message whenever the guest programs it; the guest owns both and frees them when it
 * goes. At most BELLHOP_MAX_MSI vectors per guest. */
#define BELLHOP_MAX_MSI 256u
zx_status_t bellhop_guest_msi_create(zx_handle_t guest, uint32_t *msi, int *fd);
zx_status_t bellhop_guest_msi_set(zx_handle_t guest, uint32_t msi, uint64_t address, uint32_t data);

/* bellhop: how often the guest's vCPUs came out to user space, by kind, since it was
 * created (exits KVM handles in the kernel are not counted). Any thread. */
enum {
    BELLHOP_EXIT_IO,    /* port IO (IN/OUT, string forms count once per exit) */
    BELLHOP_EXIT_MMIO,  /* MMIO to MEM traps and untrapped addresses */
    BELLHOP_EXIT_BELL,  /* bell writes that missed the ioeventfds (the slow path) */
    BELLHOP_EXIT_INTR,  /* KVM_RUN interrupted by a signal (kicks) */
    BELLHOP_EXIT_OTHER, /* shutdown, system events, failures */
    BELLHOP_EXIT_KINDS
};
zx_status_t bellhop_guest_exit_counts(zx_handle_t guest, uint64_t counts[BELLHOP_EXIT_KINDS]);

/* bellhop: the CPU topology the guest's CPUID describes: `cpus` vCPUs (1 to
 * BELLHOP_MAX_VCPUS) in one package, `threads_per_core` (1 or 2) hardware threads to a core.
 * vCPU n (local APIC id n) is thread n % threads_per_core of core n / threads_per_core, so
 * with 2 the threads pair as (2k, 2k+1). Leaves 1 (logical processor count, HTT), 4 (cache
 * sharing, cores per package), 0xB and 0x1F (SMT and core levels) say so, and on AMD hosts
 * 0x80000008, 0x8000001D and 0x8000001E; a leaf KVM does not offer is not added. Before the
 * first vCPU is created (ZX_ERR_BAD_STATE after). Without this call a vCPU gets KVM's CPUID
 * as it is (the host's counts, no levels in leaf 0xB, one thread per core in 0x8000001E),
 * with only its APIC id in leaves 1, 0xB and 0x1F. */
zx_status_t bellhop_guest_set_topology(zx_handle_t guest, uint32_t cpus, uint32_t threads_per_core);

/* bellhop: how a halted vCPU waits for its next interrupt, the cost of an interrupt that wakes
 * it. set_halt_poll: KVM polls up to `ns` (at most 2^32 - 1) before it sleeps the vCPU's
 * thread (KVM_CAP_HALT_POLL; 0: never). idle_in_guest: HLT and PAUSE no longer exit, for a
 * host that gives each vCPU a CPU of its own (KVM_CAP_X86_DISABLE_EXITS, as QEMU's
 * -overcommit cpu-pm=on): an idle guest then holds its CPU. Before the first vCPU
 * (ZX_ERR_BAD_STATE after). ZX_ERR_NOT_SUPPORTED where the host's KVM has no such control. */
zx_status_t bellhop_guest_set_halt_poll(zx_handle_t guest, uint64_t ns);
zx_status_t bellhop_guest_idle_in_guest(zx_handle_t guest);

/* bellhop: what zx_vcpu_state_t leaves out, for crash reports and tracing. Owning thread. */
typedef struct bellhop_vcpu_sregs {
    uint64_t rip, cr0, cr2, cr3, cr4, efer;
    uint16_t cs;
    uint8_t cs_l, cs_db; /* 64-bit code; 32-bit default operand size */
    uint8_t padding1[3];
} bellhop_vcpu_sregs_t;
zx_status_t bellhop_vcpu_read_sregs(zx_handle_t handle, bellhop_vcpu_sregs_t *out);
/* bellhop: a new vCPU's boot state, for a vCPU made with BELLHOP_VCPU_ENTRY_LATER: flat
 * segments (GDT code selector 0x10, data 0x18), interrupts off, runnable at `entry`, with rax,
 * rbx and rsi as given (the boot protocols' arguments) and the other registers 0. Without
 * `cr3`, 32-bit protected mode with paging off (what zx_vcpu_create gives without
 * BELLHOP_VCPU_ENTRY_LATER); with it, 64-bit long mode (the Linux 64-bit boot protocol):
 * paging on with page tables at cr3, PAE, EFER.LME/LMA, the GDT at gdt. One KVM_SET_SREGS and
 * one KVM_SET_REGS: it is the last step before a launch's first instruction, and each vCPU
 * call costs microseconds on PVM. Once, before the vCPU is entered: ZX_ERR_BAD_STATE after,
 * or for a vCPU made without BELLHOP_VCPU_ENTRY_LATER. Owning thread. */
typedef struct bellhop_vcpu_boot_state {
    zx_gpaddr_t entry;
    uint64_t cr3, gdt;
    uint16_t gdt_limit;
    uint8_t padding1[6];
    uint64_t rax, rbx, rsi;
} bellhop_vcpu_boot_state_t;
zx_status_t bellhop_vcpu_set_boot_state(zx_handle_t handle, const bellhop_vcpu_boot_state_t *state);

/* bellhop: every period_ns (0: no more), a signal to the owning thread ends its KVM_RUN and
 * zx_vcpu_enter returns ZX_ERR_TIMED_OUT, the vCPU stopped where it was (a sampling
 * profiler's tick, with no other thread involved). Owning thread; call it with 0 before the
 * thread ends. */
zx_status_t bellhop_vcpu_set_tick(zx_handle_t handle, uint64_t period_ns);

/* Copies the last zx_vcpu_enter failure in words ("" if none) into buf. Any thread. */
zx_status_t bellhop_vcpu_last_error(zx_handle_t handle, char *buf, size_t size);

/* bellhop: after zx_vcpu_enter gave ZX_ERR_INTERNAL because KVM could not emulate an
 * instruction, copies that instruction's bytes as KVM fetched them (up to 15) into buf and
 * returns how many; 0 when KVM gave none (read guest memory at RIP instead). Owning thread. */
size_t bellhop_vcpu_failed_instruction(zx_handle_t handle, uint8_t *buf, size_t size);

/* bellhop, for snapshots: the whole state KVM keeps of a vCPU (general, segment and debug
 * registers, FPU/XSAVE, XCRs, the MSRs KVM lists (the TSC among them), the LAPIC, pending
 * events, the MP state) as a self-describing record list of at most BELLHOP_VCPU_STATE_MAX
 * bytes. bellhop_vcpu_save: owning thread, between enters (an I/O the last exit left is
 * completed first; ZX_ERR_SHOULD_WAIT while a bell write is still pending); *actual gets the
 * length. bellhop_vcpu_restore: owning thread, before the first enter; a record KVM refuses,
 * a short or unknown one, is ZX_ERR_INVALID_ARGS (or ZX_ERR_IO_REFUSED: KVM said no), with
 * the reason in bellhop_vcpu_last_error. */
#define BELLHOP_VCPU_STATE_MAX 32768u
zx_status_t bellhop_vcpu_save(zx_handle_t handle, void *buf, size_t size, size_t *actual);
zx_status_t bellhop_vcpu_restore(zx_handle_t handle, const void *buf, size_t size);
/* bellhop, for snapshots: what KVM keeps of the whole guest (the PICs and the IOAPIC, the
 * PIT, the KVM clock), the same way; any thread, with every vCPU out of zx_vcpu_enter. The
 * restore goes before any vCPU's. err (may be NULL) gets the reason of a failure. */
#define BELLHOP_GUEST_STATE_MAX 4096u
zx_status_t bellhop_guest_save(zx_handle_t guest, void *buf, size_t size, size_t *actual);
zx_status_t bellhop_guest_restore(zx_handle_t guest, const void *buf, size_t size, char *err, size_t errlen);
/* bellhop: RAM at addr that other processes can map too (a memfd, MAP_SHARED: vhost-user
 * backends); *fd is the guest's, valid while it lives, for passing to them. */
zx_status_t bellhop_guest_map_shared(zx_handle_t guest, zx_gpaddr_t addr, size_t size, void **host, int *fd);
/* bellhop: RAM at addr backed by a private mapping of fd from offset (a snapshot's memory
 * file): read lazily, page by page, as the guest touches it; writes stay in this process. */
zx_status_t bellhop_guest_map_file(zx_handle_t guest, zx_gpaddr_t addr, size_t size, int fd, uint64_t offset,
                                   void **host);

/* bellhop, for diff snapshots: KVM's dirty log over all of the guest's RAM, from now on for as
 * long as the guest lives (KVM_MEM_LOG_DIRTY_PAGES on each memory slot, RAM mapped later
 * too). Each page the guest writes, or KVM writes for it (its clock, steal time), is kept
 * until bellhop_guest_take_dirty takes it. What the VMM writes through its own mapping of RAM
 * is not seen here (base/guest_mem.h marks that). While tracking, KVM catches each first
 * write to a page with a fault, and maps RAM in 4 KiB pages. Any thread. */
zx_status_t bellhop_guest_track_dirty(zx_handle_t guest);
/* bellhop: ORs into bitmap (bit i % 64 of word i / 64: the page at addr + i * 4096) every page
 * of [addr, addr+size) written since tracking began or the last take, and forgets them. RAM
 * that goes on past the 32-bit hole counts its pages as its host mapping lays them out: the
 * page after the last below the hole is the first at 4 GiB. addr and size page-aligned; bitmap holds size / 4096 bits. ZX_ERR_BAD_STATE when not tracking.
 * With every vCPU out of zx_vcpu_enter nothing is missed; a page written during the call is
 * in this take or the next. Any thread. */
zx_status_t bellhop_guest_take_dirty(zx_handle_t guest, zx_gpaddr_t addr, size_t size, uint64_t *bitmap);

#ifdef __cplusplus
}
#endif

#endif
