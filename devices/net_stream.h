/* QEMU's stream netdev format (its -netdev stream; passt's --socket and --fd): over a connected
 * stream socket, each Ethernet frame as a 32-bit big-endian length, then the frame, with no
 * virtio_net_hdr. A byte stream keeps no frame boundaries: this keeps where the stream is
 * between calls on a non-blocking socket, so that a frame may come or go in any number of
 * pieces and is never cut.
 *
 * Receiving reads a frame straight into the caller's buffer (the receive buffer virtio-net
 * holds); a frame longer than that buffer is read to its end and dropped, as a NIC drops what
 * its buffer cannot take. Sending writes a frame whole, or keeps what the socket did not take
 * in one pending buffer, which net_stream_flush must empty before the next frame.
 *
 * The peer's end (EOF, ECONNRESET, EPIPE, any other error) or a length no peer sends (0, or more
 * than NET_STREAM_MAX_FRAME) takes the link down for good: every call from then on drops its
 * frame or reads nothing. One thread only (the device's loop). */
#ifndef BELLHOP_DEVICES_NET_STREAM_H
#define BELLHOP_DEVICES_NET_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define NET_STREAM_LEN 4            /* the length before each frame */
#define NET_STREAM_MAX_FRAME 65536  /* QEMU's and passt's largest frame, 64 KiB */
#define NET_STREAM_MAX_IOV 128      /* segments of one frame's buffer (a virtqueue request's most) */
#define NET_STREAM_AGAIN (-1)       /* net_stream_recv: no whole frame yet, wait for the socket */
#define NET_STREAM_DOWN (-2)        /* ... the link is down */

enum net_stream_sent { NET_STREAM_DROPPED = -1, NET_STREAM_PENDING = 0, NET_STREAM_SENT = 1 };

struct net_stream {
    int fd; /* the caller's: never closed here */
    bool down;
    char why[96]; /* once down: what took it down, for the one line the device logs */
    /* receiving: the length, maybe in pieces, then the frame */
    uint8_t len_bytes[NET_STREAM_LEN];
    unsigned len_got;
    uint32_t frame_len, frame_got;
    bool discard; /* the frame being read is not kept (too long for its buffer, or the buffer went) */
    /* sending: the rest of a frame the socket did not take whole */
    uint8_t *pending;
    uint32_t pending_off, pending_len;
};

/* On fd, a connected non-blocking stream socket. 0, or -1 when out of memory. */
int net_stream_init(struct net_stream *s, int fd);
void net_stream_fini(struct net_stream *s);

/* Reads on into buf (niov segments, up to NET_STREAM_MAX_IOV; the frame's bytes only): the
 * length of a frame now whole in buf; NET_STREAM_AGAIN when none is yet, which the next call
 * goes on with, into the same buffer (a frame begun in it goes on where it was); or
 * NET_STREAM_DOWN. Frames too long for buf are read and dropped meanwhile. */
ssize_t net_stream_recv(struct net_stream *s, const struct iovec *buf, unsigned niov);
/* Whether a frame has begun in the buffer net_stream_recv was last given (its next call must
 * have the same buffer). */
static inline bool net_stream_rx_begun(const struct net_stream *s) {
    return s->len_got == NET_STREAM_LEN && s->frame_got > 0;
}
/* The buffer the frame in progress went into is gone (the driver reset the device): the rest
 * of that frame is read and dropped. A frame not begun yet goes to the next buffer. */
void net_stream_rx_abandon(struct net_stream *s);

/* One frame (niov segments, up to NET_STREAM_MAX_IOV) with its length before it, once nothing
 * is pending: NET_STREAM_SENT, written whole; NET_STREAM_PENDING, its rest kept for
 * net_stream_flush; NET_STREAM_DROPPED, not sent at all (the link is down or goes down now, the
 * frame is empty or longer than NET_STREAM_MAX_FRAME, or something was still pending). */
enum net_stream_sent net_stream_send(struct net_stream *s, const struct iovec *frame, unsigned niov);
/* Writes what is pending: true once nothing is (or the link is down: it is dropped), false
 * when the socket is full again (wait until it is writable). */
bool net_stream_flush(struct net_stream *s);

/* A non-blocking stream socket connected to the Unix socket at path (passt's --socket, QEMU's
 * -netdev stream server). The fd, or -1 with a one-line reason in err. */
int net_stream_connect(const char *path, char *err, size_t errlen);

#endif
