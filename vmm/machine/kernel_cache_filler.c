/* Starting `bellhop kernel-cache-fill` off the launch's path (kernel_cache_filler.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/machine/kernel_cache_filler.h"

extern char **environ;

struct filler_spawn {
    char self[PATH_MAX], path[PATH_MAX], min[24], align[24], kaslr[2], gate[12];
    int gate_rd; /* the launch's copy of the gate's read end, closed once the filler has its own */
};

static void spawn_now(struct filler_spawn *s) {
    char *argv[] = {"bellhop", "kernel-cache-fill", s->path, s->min, s->align, s->kaslr, s->gate, NULL};
    posix_spawnattr_t a;
    if (posix_spawnattr_init(&a) != 0) return;
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&a, &none);
    /* SCHED_IDLE: it takes only a CPU nothing else wants, so that it does not slow the launch
     * that started it (nor the guest's boot) */
    struct sched_param idle = {.sched_priority = 0};
    posix_spawnattr_setschedpolicy(&a, SCHED_IDLE);
    posix_spawnattr_setschedparam(&a, &idle);
    posix_spawnattr_setflags(&a, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSCHEDULER);
    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa) == 0) {
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, s->gate_rd, KERNEL_CACHE_GATE_FD);
        pid_t pid;
        posix_spawn(&pid, s->self, &fa, &a, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
    }
    posix_spawnattr_destroy(&a);
}

static void *spawner(void *arg) {
    struct filler_spawn *s = arg;
    spawn_now(s);
    close(s->gate_rd);
    free(s);
    return NULL;
}

void kernel_cache_start_filler(const char *path, uint64_t min_paddr, uint64_t align, bool kaslr,
                               struct kernel_cache_filler *f) {
    *f = KERNEL_CACHE_NO_FILLER;
    struct filler_spawn *s = calloc(1, sizeof *s);
    if (!s) return;
    ssize_t n = readlink("/proc/self/exe", s->self, sizeof s->self - 1);
    int gate[2];
    if (n <= 0 || strlen(path) >= sizeof s->path || pipe2(gate, O_CLOEXEC) != 0) {
        free(s);
        return;
    }
    snprintf(s->path, sizeof s->path, "%s", path);
    snprintf(s->min, sizeof s->min, "%" PRIu64, min_paddr);
    snprintf(s->align, sizeof s->align, "%" PRIu64, align);
    snprintf(s->kaslr, sizeof s->kaslr, "%d", kaslr);
    snprintf(s->gate, sizeof s->gate, "%d", KERNEL_CACHE_GATE_FD);
    s->gate_rd = gate[0];
    /* posix_spawn stops its caller until the child has exec'd (~1 ms on PVM): a thread of its
     * own pays that, beside the launch's devices and boot data */
    if (pthread_create(&f->spawner, NULL, spawner, s) != 0) {
        close(gate[0]);
        close(gate[1]);
        free(s);
        return;
    }
    f->spawning = true;
    f->gate = gate[1];
}

void kernel_cache_filler_started(struct kernel_cache_filler *f) {
    if (f->spawning) pthread_join(f->spawner, NULL);
    f->spawning = false;
}

void kernel_cache_filler_release(struct kernel_cache_filler *f) {
    kernel_cache_filler_started(f);
    if (f->gate >= 0) close(f->gate);
    f->gate = -1;
}

void kernel_cache_await_gate(int fd) {
    char b;
    ssize_t n;
    while ((n = read(fd, &b, 1)) > 0 || (n < 0 && errno == EINTR)) {
    }
}
