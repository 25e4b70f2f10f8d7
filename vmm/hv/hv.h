/* The hypervisor layer's internals, shared by vmm/hv/vm.c, trap.c, bell.c, vcpu.c and
 * cpuid_topology.c.
 * The API is <zircon/syscalls/hypervisor.h>; nothing outside these files sees KVM.
 *
 * Locking: guest->lock (trap trees, memory, vCPU table) is a leaf for readers on the vCPU
 * path (a rwlock); guest->bell_lock guards bell pools and may be taken under a port lock
 * (a bell packet's release hook runs there), so nothing holds it while queueing.
 */
#ifndef BELLHOP_VMM_HV_HV_H
#define BELLHOP_VMM_HV_HV_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>
#include <zircon/syscalls/hypervisor.h>

#include "loop/object.h"
#include "vmm/hv/cpuid_topology.h"

#define GUEST_MAX_REGIONS 16
#define GUEST_MAX_SLOTS 64
#define GUEST_MAX_TRAPS 1024
#define GUEST_MAX_GSI 24
#define GUEST_MAX_DOORBELLS 256

struct guest;

/* One vCPU's exits by kind: written by its thread only, read by anyone. */
struct vcpu_exits {
    atomic_ulong n[BELLHOP_EXIT_KINDS];
};

struct bell_slot {
    struct port_fd_source src; /* the ioeventfd */
    struct port_packet pp;
    struct bell *bell;
    atomic_bool in_flight; /* pp queued, not yet dequeued */
    bool assigned;         /* KVM ioeventfd registered */
    uint64_t addr;
    uint32_t len;          /* 0: any size */
    bool datamatch;
    uint64_t value;
};

struct bell {
    struct trap *trap;
    struct guest *guest;
    struct zx_port *port; /* referenced */
    atomic_bool port_dead;
    unsigned nslots;
    struct bell_slot slots[BELLHOP_BELL_FAST_SLOTS];
    /* slow path: one packet per write, 256 per trap (guest->bell_lock) */
    struct port_packet pool[BELLHOP_BELL_PACKETS];
    struct list_node free_pool;
    unsigned pool_in_flight;
};

/* A trap lives, unmoved, as long as its guest: vCPUs keep pointers to it without a lock. */
struct trap {
    uint32_t kind;
    uint64_t addr, size, key;
    struct bell *bell; /* ZX_GUEST_TRAP_BELL */
};

/* Non-overlapping ranges sorted by address (binary search). */
struct trap_tree {
    struct trap **v;
    unsigned n, cap;
};

/* RAM added by one map call: from gpa on, but what would go past 3 GiB goes on at 4 GiB
 * (guest_region_parts); size counts both parts, host holds them in that order. */
struct mem_region {
    uint64_t gpa, size;
    uint8_t *host;
    size_t map_size; /* the mmap, aligned up for huge pages */
    uint8_t *map;
    int fd; /* a shareable region's memfd (the guest's); -1 */
    /* while dirty pages are tracked: the pages of slots KVM has given its log for (a take,
     * or a slot deleted when traps moved) that no take has taken yet, a bit each */
    uint64_t *dirty;
};

struct mem_slot {
    uint64_t gpa, size;
    uint8_t *host;
};

struct guest {
    struct zx_object obj;
    int kvm, vm;
    int run_size;
    struct kvm_cpuid2 *cpuid; /* every vCPU's, but for its ids (lock: set_topology replaces it) */
    struct cpu_topology topo; /* bellhop_guest_set_topology's (lock) */
    bool irqchip, pit; /* made (guest_irqchip) (lock) */
    pthread_rwlock_t lock;
    struct mem_region regions[GUEST_MAX_REGIONS];
    unsigned nregions;
    struct mem_slot slots[GUEST_MAX_SLOTS];
    unsigned nslots;
    bool track_dirty; /* every slot logs the guest's writes (bellhop_guest_track_dirty) */
    struct trap_tree mem_tree; /* BELL and MEM */
    struct trap_tree io_tree;
    struct trap ctl_trap;      /* the vCPU-control ports, in io_tree */
    atomic_uint nvcpus; /* ids handed out (never reused) */
    /* Exits by kind: each vCPU counts its own (no shared line on the exit path); a vCPU
     * that goes adds its counts here (lock). */
    atomic_ulong exits[BELLHOP_EXIT_KINDS];
    struct vcpu_exits *vcpu_exits[BELLHOP_MAX_VCPUS]; /* lock */
    struct trap *doorbells[GUEST_MAX_DOORBELLS]; /* lock */
    unsigned ndoorbells;
    int irqfds[GUEST_MAX_GSI]; /* -1 until asked for (lock) */
    int level_fds[GUEST_MAX_GSI][2]; /* level lines: irqfd, resamplefd; -1 until asked for */
    /* MSI vectors: GSI GUEST_MAX_GSI + i, routed to (address, data) (lock) */
    struct guest_msi {
        int fd;
        uint64_t address;
        uint32_t data;
    } msi[BELLHOP_MAX_MSI];
    unsigned nmsi;
    pthread_mutex_t bell_lock;
    pthread_cond_t bell_cond; /* a pool packet came back, or a vCPU was kicked */
};

/* "One vCPU per thread" outlives neither: shared by the vCPU and its thread, each holding
 * a reference; the vCPU marks it dead when it goes. */
struct binding {
    atomic_uint refs;
    atomic_bool alive;
};

struct vcpu {
    struct zx_object obj;
    struct guest *guest; /* referenced */
    struct binding *binding;
    int fd;
    struct kvm_run *run;
    unsigned id;
    pid_t tid;
    atomic_bool kicked;
    timer_t tick; /* bellhop_vcpu_set_tick's, while `ticking` */
    bool ticking;
    /* a port-IO exit being returned element by element (REP/string forms) */
    struct {
        bool active, in;
        uint8_t size;
        uint16_t port;
        uint32_t index, count;
        uint64_t key;
    } io;
    bool mem_read; /* a GUEST_MEM read awaits its answer */
    /* the traps hit last (see find_trap) */
    struct trap_hit {
        struct trap *trap;
        uint64_t addr, end, key;
        uint32_t kind;
    } last_io, last_mem;
    struct vcpu_exits exits;
    uint64_t run_size;
    /* a vCPU made to be given its entry later, until it is given one or entered: its special
     * registers as KVM made them, read while it waits, so that its boot state costs one call
     * for them, not two */
    bool awaiting_entry, have_reset_sregs;
    struct kvm_sregs reset_sregs;
    /* a slow-path bell interrupted by a kick, retried on the next enter */
    struct bell *pending_bell;
    uint64_t pending_bell_addr;
    uint64_t ctl_arg0;
    uint32_t ctl_arg1;
    pthread_mutex_t err_lock;
    char err[192];
    /* the instruction KVM could not emulate (ZX_ERR_INTERNAL), as the exit gave it */
    uint8_t failed_insn[15];
    uint8_t failed_insn_len;
};

/* guest.c */
zx_status_t guest_get(zx_handle_t h, zx_rights_t rights, struct guest **out);
/* Re-derives the KVM memory slots: RAM regions minus BELL/MEM traps. guest->lock held (write). */
zx_status_t guest_sync_slots_locked(struct guest *g);

/* trap.c */
void trap_tree_free(struct trap_tree *t);
struct trap *trap_find(struct trap_tree *t, uint64_t addr, uint64_t len);
zx_status_t trap_insert(struct trap_tree *t, struct trap *trap);

/* bell.c */
zx_status_t bell_create(struct guest *g, struct trap *trap, struct zx_port *port);
/* One ioeventfd with datamatch, no slow path (see bellhop_guest_set_doorbell). */
zx_status_t bell_create_doorbell(struct guest *g, struct trap *trap, struct zx_port *port,
                                 uint32_t len, uint64_t value);
void bell_destroy(struct bell *b);
/* The slow path: a write the ioeventfds did not take. Waits while the pool is used up;
 * returns ZX_ERR_CANCELED if *kicked became true meanwhile (nothing queued then). */
zx_status_t bell_ring(struct bell *b, uint64_t addr, atomic_bool *kicked);
void bell_wake_waiters(struct guest *g);

/* vcpu_state.c: checks a saved vCPU state's records (each known, once, of its size; all but
 * the optional ones there) and points found[] and lens[] at them, in restore order. 0, or -1
 * with the reason. */
#define VCPU_STATE_RECORDS 9
int vcpu_state_parse(const void *buf, size_t size, const uint8_t *found[VCPU_STATE_RECORDS],
                     uint32_t lens[VCPU_STATE_RECORDS], char *err, size_t errlen);

/* A region's guest-physical parts, each a slot before traps punch holes: 1 or 2. */
unsigned guest_region_parts(const struct mem_region *r, struct mem_slot part[2]);
/* dirty_log.c, with guest->lock held for writing: slot's dirty log moved into its region's
 * carry (before the slot is deleted); a region's carry made, for a region tracked. */
zx_status_t guest_dirty_harvest_locked(struct guest *g, unsigned slot);
zx_status_t guest_dirty_region_init(struct mem_region *r);

/* vm.c: makes the in-kernel interrupt controllers and PIT if they are not yet (after RAM:
 * see there); _locked with g->lock held for writing. */
zx_status_t guest_irqchip(struct guest *g);
zx_status_t guest_irqchip_locked(struct guest *g);
/* vm.c: g->cpuid, asked of KVM the first time (g->lock held for writing). */
zx_status_t guest_cpuid_locked(struct guest *g);
/* vcpu.c: records why a call on v failed (bellhop_vcpu_last_error) and returns st. */
__attribute__((format(printf, 3, 4))) zx_status_t vcpu_failed(struct vcpu *v, zx_status_t st, const char *fmt, ...);
/* vcpu.c: the vCPU behind h, referenced, when it is the calling thread's (else ZX_ERR_BAD_STATE). */
zx_status_t owned_vcpu(zx_handle_t h, zx_rights_t rights, struct vcpu **out);

#endif
