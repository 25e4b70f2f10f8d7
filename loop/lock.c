/* The slow paths of loop/lock.h: sleeping and waking on futexes. */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "loop/lock.h"

static long futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *ts) {
    return syscall(SYS_futex, word, op, val, ts, NULL, FUTEX_BITSET_MATCH_ANY);
}

/* Marks the lock contended whenever this thread takes it after sleeping, since other
 * sleepers may remain: their wake-up then falls to this thread's release. */
void lock_acquire_contended(struct lock *l) {
    while (atomic_exchange_explicit(&l->word, 2, memory_order_acquire) != 0)
        futex(&l->word, FUTEX_WAIT_PRIVATE, 2, NULL);
}

void lock_wake(struct lock *l) { futex(&l->word, FUTEX_WAKE_PRIVATE, 1, NULL); }

static bool deadline_passed(const struct timespec *deadline) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > deadline->tv_sec || (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

bool cond_wait(struct cond *c, struct lock *l, const struct timespec *deadline) {
    uint32_t seq = atomic_load_explicit(&c->seq, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->waiters, 1, memory_order_relaxed);
    lock_release(l);
    /* FUTEX_WAIT_BITSET takes an absolute time on CLOCK_MONOTONIC (FUTEX_WAIT a relative one). */
    long r = futex(&c->seq, FUTEX_WAIT_BITSET_PRIVATE, seq, deadline);
    /* A wait cut short (a signal: EINTR) after its deadline has timed out all the same: the
     * caller learns that the deadline passed, not which came first (once seen under TSan, a
     * deadline already past answered as a wake-up). */
    bool timed_out = r != 0 && deadline && (errno == ETIMEDOUT || deadline_passed(deadline));
    lock_acquire_contended(l);
    atomic_fetch_sub_explicit(&c->waiters, 1, memory_order_relaxed);
    return !timed_out;
}

/* A waiter counted itself under the lock before the signaller's critical section began, so
 * the signaller sees the count; with nobody counted, no system call. */
void cond_signal(struct cond *c) {
    atomic_fetch_add_explicit(&c->seq, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&c->waiters, memory_order_seq_cst)) futex(&c->seq, FUTEX_WAKE_PRIVATE, 1, NULL);
}

void cond_broadcast(struct cond *c) {
    atomic_fetch_add_explicit(&c->seq, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&c->waiters, memory_order_seq_cst)) futex(&c->seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
}
