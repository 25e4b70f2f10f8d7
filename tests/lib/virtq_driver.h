/* A virtio driver for unit tests: fake guest RAM (plain host memory), the virtio-mmio
 * register sequence a driver performs, and split virtqueues filled by hand, so that a
 * device's request handling runs without KVM. Interrupts and exit requests are counted. */
#ifndef BELLHOP_TESTS_LIB_VIRTQ_DRIVER_H
#define BELLHOP_TESTS_LIB_VIRTQ_DRIVER_H

#include "devices/virtio_mmio.h"

#define FAKE_VM_MAX_FDS 64

/* Its MSI vectors and level lines are plain eventfds (nothing reads them); its guest handle
 * is invalid, so devices set no bell traps and are notified by direct calls. */
struct fake_vm {
    struct vm_env env;
    int irqs;
    int irqs_under_lock;    /* raised while the device's lock was held (a vCPU would block) */
    struct virtio_dev *vd;  /* the device under test, once tdev_init made it */
    int exit_status; /* -1 until an exit is requested */
    uint64_t next_free; /* bump allocator in RAM */
    int fds[FAKE_VM_MAX_FDS];
    unsigned nfds;
    int resample_fd;               /* the last level line's: writing it is the guest's EOI */
};

void fake_vm_init(struct fake_vm *vm, size_t ram);
void fake_vm_destroy(struct fake_vm *vm);
/* Allocates guest-physical memory; returns its address. */
uint64_t fake_alloc(struct fake_vm *vm, size_t len, size_t align);
void *fake_ptr(struct fake_vm *vm, uint64_t gpa);

struct test_vq {
    uint16_t num;
    uint64_t desc, avail, used;
    uint16_t avail_idx, last_used;
};

struct test_dev {
    struct fake_vm *vm;
    struct virtio_mmio *mmio;
    struct test_vq q[VIRTIO_MAX_QUEUES];
};

uint32_t tdev_read(struct test_dev *d, uint64_t reg);
void tdev_write(struct test_dev *d, uint64_t reg, uint32_t v);
/* Makes the device `ops` from `params` on virtio-mmio (aborting if it cannot be made) and
 * runs the driver's init sequence: features (VERSION_1 | extra & offered), nq queues of num
 * entries, DRIVER_OK. Returns the status register afterwards. */
uint32_t tdev_init(struct test_dev *d, struct fake_vm *vm, const struct virtio_device_ops *ops,
                   const void *params, uint64_t extra_features, unsigned nq, uint16_t num);
void tdev_destroy(struct test_dev *d);

struct tbuf {
    uint64_t gpa;
    uint32_t len;
    bool device_writes;
};
/* Chains bufs as descriptors first..first+n-1 and makes it available; returns the head. */
uint16_t tvq_add(struct test_dev *d, unsigned q, uint16_t first, const struct tbuf *bufs, unsigned n);
/* Writes a raw descriptor (for malformed chains). */
void tvq_desc(struct test_dev *d, unsigned q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next);
/* Publishes head `head` in the avail ring. */
void tvq_publish(struct test_dev *d, unsigned q, uint16_t head);
/* The device's notify handler, as the loop would run it. */
void tvq_kick(struct test_dev *d, unsigned q);
/* Takes the next used element; false if none. */
bool tvq_used(struct test_dev *d, unsigned q, uint32_t *id, uint32_t *len);

#endif
