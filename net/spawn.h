/* Starting a network process beside bellhop (bellhop-net, passt): what both need of posix_spawn. */
#ifndef BELLHOP_NET_SPAWN_H
#define BELLHOP_NET_SPAWN_H

#include <stdbool.h>
#include <sys/types.h>

#define NET_SPAWN_MAX_FDS 4

struct net_spawn_fd {
    int from, to; /* from: bellhop's fd (any number, left open); to: its number in the program */
};

/* Runs `program` (a path, or with `search` a name looked up on PATH) with argv and bellhop's
 * environment, each fd given its number there (stdin /dev/null when none goes to 0), in a
 * process group of its own (a Ctrl-C at bellhop's terminal is bellhop's to handle), with
 * default signal actions and none blocked. Its pid, or -1 with the errno in *error. At most
 * NET_SPAWN_MAX_FDS fds. */
pid_t net_spawn(const char *program, bool search, char *const argv[], const struct net_spawn_fd *fds, unsigned nfds,
                int *error);

#endif
