#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <string.h>

#include "tests/lib/virtq_driver.h"

static void count_irq(struct vm_env *env, uint32_t irq) {
    (void)irq;
    struct fake_vm *vm = (struct fake_vm *)env;
    vm->irqs++;
    if (!vm->vd) return;
    if (pthread_mutex_trylock(&vm->vd->lock) == 0) pthread_mutex_unlock(&vm->vd->lock);
    else vm->irqs_under_lock++;
}

static void note_exit(struct vm_env *env, int status) { ((struct fake_vm *)env)->exit_status = status; }

static int fake_fd(struct fake_vm *vm) {
    if (vm->nfds == FAKE_VM_MAX_FDS) return -1;
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd >= 0) vm->fds[vm->nfds++] = fd;
    return fd;
}

static zx_status_t fake_msi_create(struct vm_env *env, uint32_t *msi, int *fd) {
    struct fake_vm *vm = (struct fake_vm *)env;
    *msi = vm->nfds;
    return (*fd = fake_fd(vm)) >= 0 ? ZX_OK : ZX_ERR_NO_RESOURCES;
}

static zx_status_t fake_msi_set(struct vm_env *env, uint32_t msi, uint64_t address, uint32_t data) {
    (void)address, (void)data;
    return msi < ((struct fake_vm *)env)->nfds ? ZX_OK : ZX_ERR_INVALID_ARGS;
}

static zx_status_t fake_irq_level(struct vm_env *env, uint32_t gsi, int *fd, int *resample_fd) {
    struct fake_vm *vm = (struct fake_vm *)env;
    (void)gsi;
    *fd = fake_fd(vm);
    *resample_fd = vm->resample_fd = fake_fd(vm);
    return *fd >= 0 && *resample_fd >= 0 ? ZX_OK : ZX_ERR_NO_RESOURCES;
}

void fake_vm_init(struct fake_vm *vm, size_t ram) {
    memset(vm, 0, sizeof *vm);
    vm->env.guest = ZX_HANDLE_INVALID;
    vm->resample_fd = -1;
    /* Page-aligned, as guest RAM is: a balloon gives whole pages back. */
    vm->env.mem.host = aligned_alloc(4096, (ram + 4095) & ~(size_t)4095);
    if (vm->env.mem.host) memset(vm->env.mem.host, 0, ram);
    vm->env.mem.size = ram;
    vm->env.raise_irq = count_irq;
    vm->env.msi_create = fake_msi_create;
    vm->env.msi_set = fake_msi_set;
    vm->env.irq_level = fake_irq_level;
    vm->env.request_exit = note_exit;
    vm->exit_status = -1;
    vm->next_free = 0x1000;
}

void fake_vm_destroy(struct fake_vm *vm) {
    for (unsigned i = 0; i < vm->nfds; i++) close(vm->fds[i]);
    free(vm->env.mem.host);
}

uint64_t fake_alloc(struct fake_vm *vm, size_t len, size_t align) {
    uint64_t at = (vm->next_free + align - 1) & ~(uint64_t)(align - 1);
    vm->next_free = at + len;
    return at;
}

void *fake_ptr(struct fake_vm *vm, uint64_t gpa) { return vm->env.mem.host + gpa; }

uint32_t tdev_read(struct test_dev *d, uint64_t reg) { return (uint32_t)virtio_mmio_ops.read(d->mmio, reg, 4); }
void tdev_write(struct test_dev *d, uint64_t reg, uint32_t v) { virtio_mmio_ops.write(d->mmio, reg, 4, v); }

uint32_t tdev_init(struct test_dev *d, struct fake_vm *vm, const struct virtio_device_ops *ops,
                   const void *params, uint64_t extra_features, unsigned nq, uint16_t num) {
    memset(d, 0, sizeof *d);
    d->vm = vm;
    char err[200];
    d->mmio = virtio_mmio_create(&vm->env, ops, params, 0xd0000000, 5, err, sizeof err);
    if (!d->mmio) {
        fprintf(stderr, "tdev_init: %s\n", err);
        abort();
    }
    vm->vd = virtio_mmio_dev(d->mmio);
    tdev_write(d, 0x070, 0);
    tdev_write(d, 0x070, 1);
    tdev_write(d, 0x070, 3);
    uint64_t offered = 0;
    for (unsigned sel = 0; sel < 2; sel++) {
        tdev_write(d, 0x014, sel);
        offered |= (uint64_t)tdev_read(d, 0x010) << (32 * sel);
    }
    uint64_t want = offered & (1ull << VIRTIO_F_VERSION_1 | extra_features);
    for (unsigned sel = 0; sel < 2; sel++) {
        tdev_write(d, 0x024, sel);
        tdev_write(d, 0x020, (uint32_t)(want >> (32 * sel)));
    }
    tdev_write(d, 0x070, 3 | 8);
    for (unsigned i = 0; i < nq; i++) {
        struct test_vq *q = &d->q[i];
        q->num = num;
        q->desc = fake_alloc(vm, 16u * num, 16);
        q->avail = fake_alloc(vm, 6u + 2u * num, 2);
        q->used = fake_alloc(vm, 6u + 8u * num, 4);
        tdev_write(d, 0x030, i);
        tdev_write(d, 0x038, num);
        tdev_write(d, 0x080, (uint32_t)q->desc);
        tdev_write(d, 0x084, 0);
        tdev_write(d, 0x090, (uint32_t)q->avail);
        tdev_write(d, 0x094, 0);
        tdev_write(d, 0x0a0, (uint32_t)q->used);
        tdev_write(d, 0x0a4, 0);
        tdev_write(d, 0x044, 1);
    }
    tdev_write(d, 0x070, 3 | 8 | 4);
    return tdev_read(d, 0x070);
}

void tdev_destroy(struct test_dev *d) {
    d->vm->vd = NULL;
    virtio_mmio_destroy(d->mmio);
}

void tvq_desc(struct test_dev *d, unsigned qi, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    uint8_t *p = fake_ptr(d->vm, d->q[qi].desc + 16u * i);
    memcpy(p, &addr, 8);
    memcpy(p + 8, &len, 4);
    memcpy(p + 12, &flags, 2);
    memcpy(p + 14, &next, 2);
}

void tvq_publish(struct test_dev *d, unsigned qi, uint16_t head) {
    struct test_vq *q = &d->q[qi];
    uint16_t *avail = fake_ptr(d->vm, q->avail);
    avail[2 + q->avail_idx % q->num] = head;
    q->avail_idx++;
    __atomic_store_n(&avail[1], q->avail_idx, __ATOMIC_RELEASE);
}

uint16_t tvq_add(struct test_dev *d, unsigned qi, uint16_t first, const struct tbuf *bufs, unsigned n) {
    for (unsigned i = 0; i < n; i++)
        tvq_desc(d, qi, (uint16_t)(first + i), bufs[i].gpa, bufs[i].len,
                 (uint16_t)((i + 1 < n ? VIRTQ_DESC_F_NEXT : 0) | (bufs[i].device_writes ? VIRTQ_DESC_F_WRITE : 0)),
                 (uint16_t)(first + i + 1));
    tvq_publish(d, qi, first);
    return first;
}

void tvq_kick(struct test_dev *d, unsigned qi) {
    struct virtio_dev *vd = virtio_mmio_dev(d->mmio);
    vd->ops->queue_notify(vd, qi);
}

bool tvq_used(struct test_dev *d, unsigned qi, uint32_t *id, uint32_t *len) {
    struct test_vq *q = &d->q[qi];
    uint8_t *used = fake_ptr(d->vm, q->used);
    uint16_t idx;
    memcpy(&idx, used + 2, 2);
    if (idx == q->last_used) return false;
    uint8_t *e = used + 4 + 8 * (q->last_used % q->num);
    memcpy(id, e, 4);
    memcpy(len, e + 4, 4);
    q->last_used++;
    return true;
}
