/* Starting a network process beside bellhop (bellhop-net, passt): what both need of posix_spawn. */
#ifndef BELLHOP_NET_SPAWN_H
#define BELLHOP_NET_SPAWN_H

#include <stdbool.h>
#include <sys/types.h>

struct net_spawn_fd {
    int from, to; /* from: open in bellhop, above `to`'s range (dup2 onto itself keeps CLOEXEC) */
};

/* Runs `program` (a path, or with `search` a name looked up on PATH) with argv and bellhop's
 * environment, the fds moved to their numbers (stdin /dev/null when none goes to 0), in a
 * process group of its own (a Ctrl-C at bellhop's terminal is bellhop's to handle), with
 * default signal actions and none blocked. Its pid, or -1 with the errno in *error. */
pid_t net_spawn(const char *program, bool search, char *const argv[], const struct net_spawn_fd *fds, unsigned nfds,
                int *error);

#endif
