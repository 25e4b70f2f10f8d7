/* 16550A UART: transmit goes straight to an fd; receive comes from an fd watched on the
 * async loop into a 64-byte FIFO. Interrupts (received data, transmitter empty) are edges
 * on one IOAPIC pin, raised when the pending condition appears. */
#include <lib/container_of.h>
#include <lib/async/wait.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "devices/console_input.h"
#include "devices/uart16550.h"
#include "base/timeline_record.h"

#define RX_FIFO 64

enum { RBR_THR = 0, IER = 1, IIR_FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };
#define IER_RDI 0x01
#define IER_THRI 0x02
#define LCR_DLAB 0x80
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO 0xc0
#define MCR_LOOP 0x10

struct uart16550 {
    async_wait_t wait;
    struct vm_env *env;
    uint32_t irq;
    int in_fd, out_fd;
    zx_handle_t in_handle;
    pthread_mutex_t lock;
    uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
    bool thr_pending; /* transmitter-empty interrupt not yet acknowledged */
    bool irq_line;
    bool waiting;     /* the input wait is armed */
    char line[TIMELINE_TEXT]; /* --trace-file: the guest's line so far, an instant once ended */
    unsigned nline;
    struct console_escape escape;
    uint8_t rx[RX_FIFO];
    unsigned rx_head, rx_count;
};

static uint8_t iir_locked(struct uart16550 *u) {
    uint8_t fifo = (u->fcr & 1) ? IIR_FIFO : 0;
    if ((u->ier & IER_RDI) && u->rx_count) return IIR_RDI | fifo;
    if ((u->ier & IER_THRI) && u->thr_pending) return IIR_THRI | fifo;
    return IIR_NONE | fifo;
}

/* Returns whether an edge must be raised (done after unlocking). */
static bool update_irq_locked(struct uart16550 *u) {
    bool line = !(iir_locked(u) & IIR_NONE);
    bool edge = line && !u->irq_line;
    u->irq_line = line;
    return edge;
}

static void arm_input_locked(struct uart16550 *u) {
    if (u->in_handle == ZX_HANDLE_INVALID || u->waiting || u->rx_count == RX_FIFO) return;
    if (async_begin_wait(u->env->loop, &u->wait) == ZX_OK) u->waiting = true;
}

static void on_input(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *sig) {
    (void)d;
    struct uart16550 *u = container_of(w, struct uart16550, wait);
    pthread_mutex_lock(&u->lock);
    u->waiting = false;
    if (st != ZX_OK || !(sig->observed & ZX_FD_READABLE)) {
        pthread_mutex_unlock(&u->lock);
        return; /* input closed: no more waits */
    }
    uint8_t buf[RX_FIFO];
    ssize_t n = read(u->in_fd, buf, RX_FIFO - u->rx_count);
    bool quit = false;
    size_t keep = n > 0 ? console_escape_filter(&u->escape, buf, (size_t)n, &quit) : 0;
    for (size_t i = 0; i < keep; i++) u->rx[(u->rx_head + u->rx_count++) % RX_FIFO] = buf[i];
    bool edge = update_irq_locked(u);
    if (n > 0 && !quit) arm_input_locked(u);
    pthread_mutex_unlock(&u->lock);
    if (edge) u->env->raise_irq(u->env, u->irq);
    if (quit) u->env->request_exit(u->env, 0);
}

static uint64_t uart_read(void *dev, uint64_t off, uint8_t size) {
    (void)size;
    struct uart16550 *u = dev;
    uint8_t v = 0;
    pthread_mutex_lock(&u->lock);
    switch (off) {
    case RBR_THR:
        if (u->lcr & LCR_DLAB) {
            v = u->dll;
        } else if (u->rx_count) {
            v = u->rx[u->rx_head];
            u->rx_head = (u->rx_head + 1) % RX_FIFO;
            u->rx_count--;
            arm_input_locked(u);
        }
        break;
    case IER: v = (u->lcr & LCR_DLAB) ? u->dlm : u->ier; break;
    case IIR_FCR:
        v = iir_locked(u);
        if ((v & 0x0f) == IIR_THRI) u->thr_pending = false; /* reading IIR acknowledges it */
        break;
    case LCR: v = u->lcr; break;
    case MCR: v = u->mcr; break;
    case LSR: v = LSR_THRE | LSR_TEMT | (u->rx_count ? LSR_DR : 0); break;
    case MSR: v = (u->mcr & MCR_LOOP) ? (uint8_t)((u->mcr & 0x0f) << 4) : 0xb0; break;
    case SCR: v = u->scr; break;
    }
    bool edge = update_irq_locked(u);
    pthread_mutex_unlock(&u->lock);
    if (edge) u->env->raise_irq(u->env, u->irq);
    return v;
}

/* Lock held. A line (cut at TIMELINE_TEXT - 1 characters) ends at '\n'. */
__attribute__((cold)) static void line_on_timeline(struct uart16550 *u, uint8_t v) {
    if (v != '\n') {
        if (v != '\r' && u->nline < sizeof u->line - 1) u->line[u->nline++] = (char)v;
        return;
    }
    struct timeline_record e = {.ts_ns = zx_clock_get_monotonic(), .kind = TIMELINE_MARK};
    snprintf(e.text, sizeof e.text, "%.*s", (int)u->nline, u->line);
    timeline_put(timeline_ring(u->env->timeline, "vcpu"), &e);
    u->nline = 0;
}

static void uart_write(void *dev, uint64_t off, uint8_t size, uint64_t value) {
    (void)size;
    struct uart16550 *u = dev;
    uint8_t v = (uint8_t)value;
    pthread_mutex_lock(&u->lock);
    switch (off) {
    case RBR_THR:
        if (u->lcr & LCR_DLAB) {
            u->dll = v;
        } else {
            if (u->out_fd >= 0 && write(u->out_fd, &v, 1) < 0) { /* a closed terminal loses output */
            }
            if (u->env->timeline) line_on_timeline(u, v);
            u->thr_pending = true;
        }
        break;
    case IER:
        if (u->lcr & LCR_DLAB) {
            u->dlm = v;
        } else {
            if ((v & IER_THRI) && !(u->ier & IER_THRI)) u->thr_pending = true;
            u->ier = v & 0x0f;
        }
        break;
    case IIR_FCR:
        u->fcr = v;
        if (v & 0x02) u->rx_count = 0, u->rx_head = 0;
        break;
    case LCR: u->lcr = v; break;
    case MCR: u->mcr = v & 0x1f; break;
    case SCR: u->scr = v; break;
    }
    bool edge = update_irq_locked(u);
    pthread_mutex_unlock(&u->lock);
    if (edge) u->env->raise_irq(u->env, u->irq);
}

struct uart_wire {
    uint8_t ier, lcr, mcr, scr, fcr, dll, dlm, thr_pending, irq_line;
    uint8_t rx[RX_FIFO];
    uint32_t rx_head, rx_count;
} __attribute__((packed));

static size_t uart_save(void *dev, uint8_t *buf, size_t len) {
    struct uart16550 *u = dev;
    pthread_mutex_lock(&u->lock);
    struct uart_wire w = {u->ier, u->lcr, u->mcr, u->scr, u->fcr, u->dll, u->dlm, u->thr_pending, u->irq_line,
                          {0}, u->rx_head, u->rx_count};
    memcpy(w.rx, u->rx, sizeof w.rx);
    pthread_mutex_unlock(&u->lock);
    return DEVICE_SAVE(buf, len, w);
}

static int uart_restore(void *dev, const uint8_t *buf, size_t len, char *err, size_t errlen) {
    struct uart16550 *u = dev;
    struct uart_wire w;
    if (DEVICE_RESTORE_LEN("uart16550", len, w, err, errlen) != 0) return -1;
    memcpy(&w, buf, sizeof w);
    if (w.rx_head >= RX_FIFO || w.rx_count > RX_FIFO || w.thr_pending > 1 || w.irq_line > 1)
        return snprintf(err, errlen, "uart16550: saved receive FIFO or flags out of range"), -1;
    pthread_mutex_lock(&u->lock);
    u->ier = w.ier, u->lcr = w.lcr, u->mcr = w.mcr, u->scr = w.scr, u->fcr = w.fcr, u->dll = w.dll, u->dlm = w.dlm;
    u->thr_pending = w.thr_pending, u->irq_line = w.irq_line;
    memcpy(u->rx, w.rx, sizeof u->rx);
    u->rx_head = w.rx_head, u->rx_count = w.rx_count;
    pthread_mutex_unlock(&u->lock);
    return 0;
}

const struct io_ops uart16550_ops = {.name = "uart16550", .read = uart_read, .write = uart_write, .save = uart_save,
                                     .restore = uart_restore};

struct uart16550 *uart16550_create(struct vm_env *env, uint32_t irq, int in_fd, int out_fd) {
    struct uart16550 *u = calloc(1, sizeof *u);
    if (!u) return NULL;
    u->env = env;
    u->irq = irq;
    u->in_fd = in_fd;
    u->out_fd = out_fd;
    u->in_handle = ZX_HANDLE_INVALID;
    pthread_mutex_init(&u->lock, NULL);
    if (in_fd >= 0 && zx_fd_create(in_fd, 0, &u->in_handle) == ZX_OK) {
        u->wait = (async_wait_t){.handler = on_input, .object = u->in_handle,
                                 .trigger = ZX_FD_READABLE | ZX_FD_HANGUP};
        pthread_mutex_lock(&u->lock);
        arm_input_locked(u);
        pthread_mutex_unlock(&u->lock);
    }
    return u;
}

/* The loop must be shut down first (no handler can be running). */
void uart16550_destroy(struct uart16550 *u) {
    if (!u) return;
    if (u->in_handle != ZX_HANDLE_INVALID) zx_handle_close(u->in_handle);
    pthread_mutex_destroy(&u->lock);
    free(u);
}
