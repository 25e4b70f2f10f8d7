/* passt behind virtio-net (--net passt): Debian's passt, podman's and libkrun's user-mode
 * network, a process of its own that sandboxes itself. bellhop starts it for the device on one
 * end of a socket pair (its --fd) and one-off (-1: it ends once the device closes the other
 * end, as bellhop ends, however it ends); frames go in QEMU's stream format
 * (devices/net_stream.h). The guest gets the host's own address, gateway and DNS by passt's DHCP;
 * its connections leave as the host's sockets. No root, no tap. */
#ifndef BELLHOP_NET_PASST_H
#define BELLHOP_NET_PASST_H

#include <stddef.h>

#define NET_PASST_MAX_ARGS 32
#define NET_PASST_READY_MS 5000 /* for passt to start: its pid file written, after its setup */

/* Checks the arguments after "passt": "" or ",ARG[,ARG...]", each one of passt's argv as it is
 * (so "-t,2222:22" forwards a port; passt's own commas need one -t each), at most
 * NET_PASST_MAX_ARGS, none empty. 0, or -1 with a one-line reason in err. */
int net_passt_parse(const char *args, char *err, size_t errlen);

/* Starts passt from the PATH with bellhop's options (-f -q -1 --fd, a pid file; -m 1500 unless
 * args set the MTU: the guest's receive buffers hold an Ethernet frame, not passt's 64 KiB),
 * then args; and gives the device's end of its socket in *device_fd (non-blocking) once passt
 * is ready, within NET_PASST_READY_MS. 0, or -1 with a one-line reason in err, passt then
 * ended and what it said written to stderr first. */
int net_passt_spawn(const char *args, int *device_fd, char *err, size_t errlen);

#endif
