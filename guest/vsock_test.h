/* The tiny guest's virtio-vsock self-tests (vsock_test.c), through the driver of vsock.h. */
#ifndef BELLHOP_GUEST_VSOCK_TEST_H
#define BELLHOP_GUEST_VSOCK_TEST_H

#include "guest/virtio.h"

#define VSOCK_TEST_ECHO_PORT 5000   /* the host's echo listener the "vsock" test connects to */
#define VSOCK_TEST_SERVE_PORT 5001  /* the guest's echo listener in "vsock" mode */
#define VSOCK_TEST_NOBODY_PORT 5009 /* a host port nobody listens on */
#define VSOCK_TEST_ECHO_BYTES (256u << 10)

typedef void vsock_result_fn(const char *name, bool ok, const char *detail);

/* Starts the driver on d and tests it: a connection to a host port nobody listens on is
 * refused; with echo (cmdline "vsock"), VSOCK_TEST_ECHO_BYTES of a known pattern to the
 * host's port VSOCK_TEST_ECHO_PORT come back byte for byte. False when the driver did not
 * start. */
bool vsock_selftest(struct vdev *d, bool echo, vsock_result_fn *result);
/* Listens on VSOCK_TEST_SERVE_PORT and echoes each connection the host makes until the host
 * shuts it down, one after the other, for as long as the VM runs (transport resets
 * included), with a result line per connection. */
_Noreturn void vsock_serve(vsock_result_fn *result);

#endif
