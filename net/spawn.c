/* posix_spawn for the network processes (net/spawn.h). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include "net/spawn.h"

extern char **environ;

/* Copies of the fds are made above every target number first: a dup2 onto a number another
 * fd of the list still needs would lose it, and one onto itself would keep CLOEXEC. */
#define ABOVE_TARGETS 10

static pid_t spawn_moved(const char *program, bool search, char *const argv[], const struct net_spawn_fd *fds,
                         const int *high, unsigned nfds, int *error) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    bool stdin_given = false;
    for (unsigned i = 0; i < nfds; i++) stdin_given |= fds[i].to == 0;
    if (!stdin_given) posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    for (unsigned i = 0; i < nfds; i++) posix_spawn_file_actions_adddup2(&fa, high[i], fds[i].to);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    pid_t pid;
    *error = (search ? posix_spawnp : posix_spawn)(&pid, program, &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return *error ? -1 : pid;
}

pid_t net_spawn(const char *program, bool search, char *const argv[], const struct net_spawn_fd *fds, unsigned nfds,
                int *error) {
    int high[NET_SPAWN_MAX_FDS];
    unsigned made = 0;
    *error = nfds > NET_SPAWN_MAX_FDS ? EINVAL : 0;
    for (; !*error && made < nfds; made++)
        if ((high[made] = fcntl(fds[made].from, F_DUPFD_CLOEXEC, ABOVE_TARGETS)) < 0) *error = errno;
    pid_t pid = *error ? -1 : spawn_moved(program, search, argv, fds, high, nfds, error);
    for (unsigned i = 0; i < made; i++)
        if (high[i] >= 0) close(high[i]);
    return pid;
}
