/* Snapshots of a running machine and machines made from them (docs/snapshots.md).
 *
 * Taking one: the control plane has paused the machine, so every vCPU is parked on its own
 * thread and the loop thread (ours) runs no handler; each vCPU saves its own state (KVM wants
 * a vCPU's calls from its thread), then the guest's KVM state, every device's, and the memory
 * are written (a Diff's memory: the pages written since the last snapshot, snapshot_dirty.c).
 * Bringing one back: machine_run makes the same machine from the snapshot's configuration,
 * maps the memory file in place of fresh RAM, and sets the states here before any vCPU runs. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zircon/status.h>

#include "devices/virtio.h"
#include "firmware/vmgenid.h"
#include "base/error_text.h"
#include "vmm/machine/machine_parts.h"
#include "vmm/machine/snapshot_file.h"

#define DEVICE_STATE_MAX 65536u
#define SAVE_TIMEOUT_S 5

_Static_assert(SNAPSHOT_MAX_VCPUS >= MACHINE_MAX_CPUS, "a snapshot holds every vCPU a machine runs");

/* The devices whose state a snapshot holds, in the order they are mapped (a device with
 * several windows counts once). */
static unsigned stateful_devices(struct machine *m, const struct io_mapping *out[SNAPSHOT_MAX_DEVICES]) {
    unsigned n = 0;
    for (unsigned i = 0; i < m->nmaps; i++) {
        const struct io_mapping *map = &m->maps[i];
        if (!map->ops->save) continue;
        bool seen = false;
        for (unsigned j = 0; j < n && !seen; j++) seen = out[j]->dev == map->dev;
        if (!seen && n < SNAPSHOT_MAX_DEVICES) out[n++] = map;
    }
    return n;
}

void machine_cpu_parked(struct cpu *c, zx_handle_t vcpu) {
    struct machine *m = c->m;
    if (c->saved_gen == m->save_gen) return;
    c->saved_gen = m->save_gen;
    c->saved_len = 0;
    c->saved_status = c->saved ? bellhop_vcpu_save(vcpu, c->saved, BELLHOP_VCPU_STATE_MAX, &c->saved_len)
                               : ZX_ERR_NO_MEMORY;
}

/* Every running vCPU saves its state on its thread; 0 when all did. */
static int save_cpus(struct machine *m, unsigned *ncpus, char *err, size_t errlen) {
    for (unsigned i = 0; i < MACHINE_MAX_CPUS; i++)
        if (!m->cpus[i].saved) m->cpus[i].saved = malloc(BELLHOP_VCPU_STATE_MAX);
    pthread_mutex_lock(&m->lock);
    unsigned gen = ++m->save_gen;
    pthread_cond_broadcast(&m->cond);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += SAVE_TIMEOUT_S;
    int rc = 0;
    *ncpus = 0;
    for (unsigned i = 0; i < MACHINE_MAX_CPUS && rc == 0; i++) {
        struct cpu *c = &m->cpus[i];
        if (c->vcpu == ZX_HANDLE_INVALID) continue;
        if (i != *ncpus) rc = error_text(err, errlen, "cpu%u runs but cpu%u does not", i, *ncpus);
        while (rc == 0 && c->saved_gen != gen && !m->exiting)
            if (pthread_cond_timedwait(&m->cond, &m->lock, &deadline) == ETIMEDOUT)
                rc = error_text(err, errlen, "cpu%u did not save its state within %d s", i, SAVE_TIMEOUT_S);
        if (rc == 0 && m->exiting) rc = error_text(err, errlen, "the VM is ending");
        if (rc == 0 && c->saved_status != ZX_OK) {
            char why[200] = "";
            bellhop_vcpu_last_error(c->vcpu, why, sizeof why);
            const char *reason = c->saved_status == ZX_ERR_SHOULD_WAIT ? "it is in the middle of a doorbell write; try again"
                                 : why[0]                              ? why
                                                                       : zx_status_get_string(c->saved_status);
            rc = error_text(err, errlen, "cpu%u: %s", i, reason);
        }
        if (rc == 0) ++*ncpus;
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

static int create_file(const char *what, const char *path, char *err, size_t errlen) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
    return fd;
}

static int same_file(int fd, const char *path) {
    struct stat a, b;
    return fd >= 0 && fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Whether this snapshot can be taken at all (nothing is saved yet): 0, or -1 with why. */
static int may_snapshot(struct machine *m, const char *mem_path, bool diff, char *err, size_t errlen) {
    if (!machine_paused(m)) return error_text(err, errlen, "the VM is not paused: PATCH /vm {\"state\": \"Paused\"} first");
    if (m->cfg->restore && same_file(m->cfg->restore->mem_fd, mem_path))
        return error_text(err, errlen, "%s is the memory file this VM runs on; write to another", mem_path);
    if (diff && !m->cfg->track_dirty)
        return error_text(err, errlen, "a Diff snapshot needs dirty page tracking: machine-config's track_dirty_pages, "
                                       "set before the VM starts");
    for (unsigned i = 0; diff && i < m->cfg->ndevices; i++)
        if (m->cfg->devices[i].ops->out_of_process)
            return error_text(err, errlen, "a Diff snapshot cannot see what device %u's vhost-user backend writes into "
                                           "guest memory", i);
    return 0;
}

/* The state file's sections but the diff's: the machine, the guest's KVM state, each vCPU's
 * (saved by save_cpus) and each device's. 0, or -1 with the reason. */
static int add_sections(struct machine *m, const char *config_json, unsigned ncpus, struct snapshot_writer *w,
                        char *err, size_t errlen) {
    uint8_t head[16] = {0};
    uint32_t flags = (m->linux_smp ? SNAPSHOT_LINUX_SMP : 0) | (m->virtio_pci ? SNAPSHOT_VIRTIO_PCI : 0);
    memcpy(head, &m->env.mem.size, 8);
    memcpy(head + 8, &flags, 4);
    snapshot_add(w, SNAP_MACHINE, 0, head, sizeof head, config_json, strlen(config_json) + 1);
    uint8_t *buf = malloc(DEVICE_STATE_MAX);
    size_t len = 0;
    zx_status_t st = buf ? bellhop_guest_save(m->guest, buf, DEVICE_STATE_MAX, &len) : ZX_ERR_NO_MEMORY;
    int rc = 0;
    if (st != ZX_OK) rc = error_text(err, errlen, "saving the guest's KVM state: %s", zx_status_get_string(st));
    else snapshot_add(w, SNAP_GUEST, 0, NULL, 0, buf, len);
    for (unsigned i = 0; rc == 0 && i < ncpus; i++)
        snapshot_add(w, SNAP_VCPU, i, NULL, 0, m->cpus[i].saved, m->cpus[i].saved_len);
    const struct io_mapping *devs[SNAPSHOT_MAX_DEVICES];
    unsigned ndevs = stateful_devices(m, devs);
    for (unsigned i = 0; rc == 0 && i < ndevs; i++) {
        len = devs[i]->ops->save(devs[i]->dev, buf, DEVICE_STATE_MAX);
        if (len == 0)
            rc = error_text(err, errlen, "device %u (%s) cannot be saved: its state is not all in bellhop (vhost-user) or "
                      "larger than %u bytes", i, devs[i]->ops->name, DEVICE_STATE_MAX);
        else snapshot_add(w, SNAP_DEVICE, i, devs[i]->ops->name, strlen(devs[i]->ops->name) + 1, buf, len);
    }
    free(buf);
    return rc;
}

static int write_state(const struct snapshot_writer *w, const char *state_path, char *err, size_t errlen) {
    int fd = create_file("snapshot_path", state_path, err, errlen);
    if (fd < 0) return -1;
    int rc = 0;
    if (write(fd, w->buf, w->len) != (ssize_t)w->len || fsync(fd) != 0)
        rc = error_text(err, errlen, "snapshot_path %s: %s", state_path, strerror(errno));
    close(fd);
    return rc;
}

static int write_memory(struct machine *m, const char *mem_path, bool diff, char *err, size_t errlen) {
    int fd = create_file("mem_file_path", mem_path, err, errlen);
    if (fd < 0) return -1;
    int rc = machine_snapshot_write_memory(m, fd, diff);
    if (rc > 0)
        rc = error_text(err, errlen, "mem_file_path %s: its filesystem keeps data in units larger than a 4 KiB page, so "
                                     "a Diff's holes cannot say which pages it holds: write it on another (ext4, xfs, tmpfs)",
                        mem_path);
    else if (rc < 0) rc = error_text(err, errlen, "mem_file_path %s: %s", mem_path, strerror(errno));
    close(fd);
    return rc;
}

int machine_snapshot(struct machine *m, const char *config_json, const char *state_path, const char *mem_path,
                     bool diff, char *err, size_t errlen) {
    if (may_snapshot(m, mem_path, diff, err, errlen) != 0) return -1;
    /* Requests still in the kernel's hands (virtio-blk's) completed first: the interrupts they
     * raise must be in the interrupt controllers' and vCPUs' state saved next, and what they
     * wrote into guest RAM in the memory file. */
    machine_quiesce_devices(m);
    unsigned ncpus;
    if (save_cpus(m, &ncpus, err, errlen) != 0 || machine_snapshot_gather(m, err, errlen) != 0) return -1;
    struct snapshot_writer w;
    snapshot_writer_init(&w);
    int rc = add_sections(m, config_json, ncpus, &w, err, errlen);
    if (rc == 0 && diff) machine_snapshot_add_diff(m, &w);
    if (rc == 0 && snapshot_finish(&w) != 0) rc = error_text(err, errlen, "out of memory");
    if (rc == 0) rc = write_state(&w, state_path, err, errlen);
    snapshot_writer_free(&w);
    if (rc == 0) rc = write_memory(m, mem_path, diff, err, errlen);
    if (rc == 0) machine_snapshot_taken(m); /* the next Diff counts from here */
    return rc;
}

int machine_restore_state(struct machine *m) {
    const struct snapshot *s = m->cfg->restore->state;
    char err[300];
    if (s->nvcpus != m->cfg->cpus)
        return machine_fail("the snapshot has %u vCPUs, its configuration %u", s->nvcpus, m->cfg->cpus);
    zx_status_t st = bellhop_guest_restore(m->guest, s->guest.data, s->guest.len, err, sizeof err);
    if (st != ZX_OK) return machine_fail("restoring the guest's KVM state: %s", err);
    const struct io_mapping *devs[SNAPSHOT_MAX_DEVICES];
    unsigned ndevs = stateful_devices(m, devs);
    for (unsigned i = 0; i < ndevs || i < s->ndevices; i++) {
        if (i >= ndevs || i >= s->ndevices || strcmp(devs[i]->ops->name, s->devices[i].name) != 0)
            return machine_fail("the snapshot's devices differ from this machine's: device %u is %s there, %s here", i,
                                i < s->ndevices ? s->devices[i].name : "none", i < ndevs ? devs[i]->ops->name : "none");
        if (devs[i]->ops->restore(devs[i]->dev, s->devices[i].state.data, s->devices[i].state.len, err, sizeof err) != 0)
            return machine_fail("restoring device %u: %s", i, err);
    }
    /* A new generation: each restore of one snapshot is a clone (announced once the vCPUs run,
     * machine_restore_announce) */
    if (!vmgenid_renew(&m->env.mem)) return machine_fail("cannot make a new VM generation ID (no randomness?)");
    return 0;
}

void machine_restore_announce(struct machine *m) { m->env.raise_irq(&m->env, VMGENID_GSI); }

zx_status_t machine_restore_cpu(struct cpu *c, zx_handle_t vcpu) {
    const struct snapshot *s = c->m->cfg->restore->state;
    if (c->id >= s->nvcpus) return ZX_ERR_OUT_OF_RANGE;
    zx_status_t st = bellhop_vcpu_restore(vcpu, s->vcpus[c->id].data, s->vcpus[c->id].len);
    if (st != ZX_OK) {
        char why[200] = "";
        bellhop_vcpu_last_error(vcpu, why, sizeof why);
        fprintf(stderr, "bellhop: cpu%u: %s\n", c->id, why[0] ? why : zx_status_get_string(st));
    }
    return st;
}
