/* The kernel cache's filler (`bellhop kernel-cache-fill`, kernel_cache_fill) started for a
 * launch the cache could not serve, so that it costs that launch nothing: spawned on a thread
 * of its own, at SCHED_IDLE, in a session of its own, and held at a gate until the launch's
 * guest has entered (its decoding would compete with the launch's last phases for the CPU). */
#ifndef BELLHOP_VMM_MACHINE_KERNEL_CACHE_FILLER_H
#define BELLHOP_VMM_MACHINE_KERNEL_CACHE_FILLER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* The fd the filler finds its gate on. */
#define KERNEL_CACHE_GATE_FD 3

struct kernel_cache_filler {
    int gate;          /* the gate's write end; -1: no filler */
    pthread_t spawner; /* the thread starting it, until joined */
    bool spawning;
};
#define KERNEL_CACHE_NO_FILLER ((struct kernel_cache_filler){.gate = -1})

/* Starts the filler for the bzImage at path into *f (KERNEL_CACHE_NO_FILLER when none could be). */
void kernel_cache_start_filler(const char *path, uint64_t min_paddr, uint64_t align, bool kaslr,
                               struct kernel_cache_filler *f);
/* Waits until the filler is started: then no thread of the launch but its own runs. */
void kernel_cache_filler_started(struct kernel_cache_filler *f);
/* Started, and its gate opened (the launch's guest has entered, or the launch ends). */
void kernel_cache_filler_release(struct kernel_cache_filler *f);

/* The filler's side: returns once the gate's every write end is closed. */
void kernel_cache_await_gate(int fd);

#endif
