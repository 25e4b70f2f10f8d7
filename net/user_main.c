/* bellhop-net: user-mode networking for one bellhop (net/user.h), started by it
 * (net/user_spawn.c) as `bellhop-net user OPTIONS`, or as a link's MMDS stack as `bellhop-net
 * mmds ADDRESS SOCKET`, with the guest's frames on fd 3 and a
 * status pipe on fd 4, on which it says "ok" once its forwards are bound, or why not. libslirp
 * runs on a loop of bellhop's own loop library, on this one thread, under its seccomp
 * allowlist (vmm/sandbox, role net); it ends when bellhop closes its end of fd 3. */
#include <lib/async-loop/loop.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zircon/types.h>

#include "net/user.h"
#include "vmm/sandbox/sandbox.h"

#define FRAMES_FD 3
#define STATUS_FD 4

static void say(const char *line) {
    char buf[600];
    int n = snprintf(buf, sizeof buf, "%s\n", line);
    if (write(STATUS_FD, buf, (size_t)n) < 0) { /* bellhop gave up waiting: it sees no "ok" */
    }
    close(STATUS_FD);
}

static void device_gone(void *arg) { async_loop_quit(arg); }

static int mmds_config(const char *address, const char *path, struct net_user_config *c, char *err, size_t errlen) {
    struct in_addr a;
    if (inet_pton(AF_INET, address, &a) != 1) {
        snprintf(err, errlen, "MMDS address %.40s: not an IPv4 address", address);
        return -1;
    }
    return net_user_mmds_config(ntohl(a.s_addr), path, c, err, errlen);
}

int main(int argc, char **argv) {
    char err[400];
    struct net_user_config cfg;
    bool user = argc == 3 && strcmp(argv[1], "user") == 0, mmds = argc == 4 && strcmp(argv[1], "mmds") == 0;
    if (!user && !mmds) {
        fprintf(stderr, "usage: bellhop-net user OPTIONS | mmds ADDRESS SOCKET (started by bellhop, with the "
                        "guest's frames on fd 3)\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    async_loop_t *loop = NULL;
    if ((user ? net_user_parse(argv[2], &cfg, err, sizeof err) : mmds_config(argv[2], argv[3], &cfg, err, sizeof err)) != 0 ||
        net_user_load(err, sizeof err) != 0) {
        say(err);
        return 1;
    }
    if (async_loop_create(&kAsyncLoopConfigNeverAttachToThread, &loop) != ZX_OK) {
        say("bellhop-net: cannot create its loop");
        return 1;
    }
    struct net_user *u = net_user_start_on(async_loop_get_dispatcher(loop), &cfg, FRAMES_FD, device_gone, loop, err,
                                           sizeof err);
    if (!u) {
        say(err);
        return 1;
    }
    if (sandbox_supported() && sandbox_enter(SANDBOX_NET, err, sizeof err) != 0) {
        say(err);
        return 1;
    }
    say("ok");
    async_loop_run(loop, ZX_TIME_INFINITE, false);
    net_user_stop(u);
    async_loop_destroy(loop);
    return 0;
}
