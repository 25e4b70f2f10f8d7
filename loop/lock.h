/* The port's lock and condition variables: futex words whose uncontended paths are a few
 * inline instructions.
 *
 * Why not pthread's: a port's poller takes its lock twice on every wake (a bell's turn on the
 * loop thread), and glibc's mutex is two calls into two more pages of libc code. Nested, where
 * every guest exit empties the TLB, each distinct page touched costs about as much as 400
 * instructions, and those pages were a measurable part of a bell's guest-side cost. C11
 * atomics order these words, so ThreadSanitizer sees the same happens-before as with a mutex.
 */
#ifndef BELLHOP_LOOP_LOCK_H
#define BELLHOP_LOOP_LOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* 0: free; 1: held; 2: held, and a thread may be asleep waiting for it. */
struct lock {
    _Atomic uint32_t word;
};

/* seq changes on every signal; a waiter sleeps only while it still has the value it read
 * under the lock, so a signal made after that read (locked or not) is never lost. */
struct cond {
    _Atomic uint32_t seq;
    _Atomic uint32_t waiters;
};

void lock_acquire_contended(struct lock *l);
void lock_wake(struct lock *l);

static inline void lock_acquire(struct lock *l) {
    uint32_t free = 0;
    if (!atomic_compare_exchange_strong_explicit(&l->word, &free, 1, memory_order_acquire,
                                                 memory_order_relaxed))
        lock_acquire_contended(l);
}

/* Takes l only if it is free: for a thread that holds a lock ordered after l. */
static inline bool lock_try(struct lock *l) {
    uint32_t free = 0;
    return atomic_compare_exchange_strong_explicit(&l->word, &free, 1, memory_order_acquire, memory_order_relaxed);
}

static inline void lock_release(struct lock *l) {
    if (atomic_exchange_explicit(&l->word, 0, memory_order_release) == 2) lock_wake(l);
}

/* Called and returns with l held. deadline: an absolute CLOCK_MONOTONIC time, or NULL for
 * none. Returns false when the deadline passed; may return early (callers test their
 * condition in a loop). */
bool cond_wait(struct cond *c, struct lock *l, const struct timespec *deadline);
void cond_signal(struct cond *c);
void cond_broadcast(struct cond *c);

#endif
