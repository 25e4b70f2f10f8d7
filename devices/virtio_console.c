/* virtio-console, port 0. Input waits on the loop only while there is room for it: bytes
 * read from in_fd wait in `pending` until the driver gives receive buffers. */
#include <lib/async/wait.h>
#include <lib/container_of.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "devices/console_input.h"
#include "devices/virtio_console.h"

#define RXQ 0
#define TXQ 1
#define PENDING 256

struct virtio_console {
    async_wait_t wait;
    struct vm_env *env;
    struct virtio_dev *vd;
    int in_fd, out_fd;
    zx_handle_t in_handle;
    bool waiting, eof; /* loop thread only */
    struct console_escape escape;
    uint8_t pending[PENDING];
    size_t npending;
};

static struct virtio_console *con_of(struct virtio_dev *vd) { return vd->priv; }

static void arm(struct virtio_console *c) {
    if (c->in_handle == ZX_HANDLE_INVALID || c->waiting || c->eof || c->npending) return;
    c->waiting = async_begin_wait(c->env->loop, &c->wait) == ZX_OK;
}

/* Moves pending input into receive buffers (loop thread). */
static void deliver(struct virtio_console *c) {
    struct virtq_req req, *r = &req;
    while (c->npending && virtio_pop(c->vd, RXQ, r)) {
        size_t n = virtq_req_write(r, 0, c->pending, c->npending);
        memmove(c->pending, c->pending + n, c->npending - n);
        c->npending -= n;
        virtio_push(c->vd, RXQ, r, (uint32_t)n);
    }
    arm(c);
}

static void on_input(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *sig) {
    (void)d;
    struct virtio_console *c = container_of(w, struct virtio_console, wait);
    c->waiting = false;
    if (st != ZX_OK) return;
    uint8_t buf[PENDING];
    ssize_t n = (sig->observed & ZX_FD_READABLE) ? read(c->in_fd, buf, PENDING - c->npending) : 0;
    if (n <= 0) {
        c->eof = true;
        return;
    }
    bool quit;
    size_t keep = console_escape_filter(&c->escape, buf, (size_t)n, &quit);
    memcpy(c->pending + c->npending, buf, keep);
    c->npending += keep;
    if (quit) {
        c->env->request_exit(c->env, 0);
        return;
    }
    deliver(c);
}

static void transmit(struct virtio_console *c) {
    struct virtq_req req, *r = &req;
    while (virtio_pop(c->vd, TXQ, r)) {
        for (unsigned i = 0; i < r->nout; i++)
            if (c->out_fd >= 0 && write(c->out_fd, r->out[i].p, r->out[i].len) < 0) break;
        virtio_push(c->vd, TXQ, r, 0);
    }
}

static void console_notify(struct virtio_dev *vd, unsigned q) {
    struct virtio_console *c = con_of(vd);
    if (q == TXQ) transmit(c);
    else deliver(c);
}

static int console_create(struct virtio_dev *vd, const void *params, char *err, size_t errlen) {
    const struct virtio_console_params *p = params;
    if (!p) {
        snprintf(err, errlen, "virtio-console: no input and output (--console virtio)");
        return -1;
    }
    struct virtio_console *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "virtio-console: out of memory");
        return -1;
    }
    c->env = vd->env;
    c->vd = vd;
    c->in_fd = p->in_fd;
    c->out_fd = p->out_fd;
    c->in_handle = ZX_HANDLE_INVALID;
    if (c->in_fd >= 0 && zx_fd_create(c->in_fd, 0, &c->in_handle) == ZX_OK)
        c->wait = (async_wait_t){.handler = on_input, .object = c->in_handle,
                                 .trigger = ZX_FD_READABLE | ZX_FD_HANGUP};
    vd->priv = c;
    arm(c);
    return 0;
}

static void console_destroy(struct virtio_dev *vd) {
    struct virtio_console *c = con_of(vd);
    if (c->in_handle != ZX_HANDLE_INVALID) zx_handle_close(c->in_handle);
    free(c);
}

const struct virtio_device_ops virtio_console_ops = {
    .name = "virtio-console",
    .device_id = VIRTIO_ID_CONSOLE,
    .nqueues = 2,
    .queue_max = VIRTQ_MAX_SIZE,
    .create = console_create,
    .destroy = console_destroy,
    .queue_notify = console_notify,
};
