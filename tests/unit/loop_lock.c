/* The port's futex lock and condition variables (loop/lock.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "loop/lock.h"
#include "tests/lib/check.h"

static struct timespec in_ms(long ms) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += ms % 1000 * 1000000;
    if (t.tv_nsec >= 1000000000) t.tv_sec++, t.tv_nsec -= 1000000000;
    return t;
}

static long ms_since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

#define THREADS 4
#define ROUNDS 100000

static struct lock counter_lock;
static unsigned long counter; /* plain: only the lock keeps the increments whole */

static void *count(void *arg) {
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        lock_acquire(&counter_lock);
        counter++;
        if (i % 1000 == 0) sched_yield(); /* holders get preempted: sleepers pile up */
        lock_release(&counter_lock);
    }
    return NULL;
}

TEST(contended_increments_are_not_lost) {
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) CHECK_EQ(pthread_create(&t[i], NULL, count, NULL), 0);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    CHECK_EQ(counter, (unsigned long)THREADS * ROUNDS);
    CHECK_EQ(atomic_load(&counter_lock.word), 0u);
}

TEST(a_wait_ends_at_its_deadline_and_keeps_the_lock) {
    struct lock l = {0};
    struct cond c = {0};
    lock_acquire(&l);
    struct timespec t0, past = in_ms(-5);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(!cond_wait(&c, &l, &past));
    CHECK(ms_since(&t0) < 1000);
    struct timespec soon = in_ms(30);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (cond_wait(&c, &l, &soon)) { /* early returns are allowed; the deadline is not */
    }
    CHECK(ms_since(&t0) >= 29);
    CHECK(atomic_load(&l.word) != 0); /* still held */
    lock_release(&l);
    CHECK_EQ(atomic_load(&c.waiters), 0u);
}

/* A mailbox: one slot, a lock and two conditions, as the port uses them. */
struct mailbox {
    struct lock l;
    struct cond full, empty;
    int value; /* 0: empty */
    int taken, waiting;
};

static void *consume(void *arg) {
    struct mailbox *m = arg;
    lock_acquire(&m->l);
    m->waiting++;
    cond_broadcast(&m->empty); /* tell the test a waiter is in */
    while (m->value == 0) cond_wait(&m->full, &m->l, NULL);
    m->taken += m->value;
    m->value = 0;
    m->waiting--;
    cond_broadcast(&m->empty);
    lock_release(&m->l);
    return NULL;
}

TEST(each_signal_hands_one_value_to_one_sleeper) {
    static struct mailbox m;
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) CHECK_EQ(pthread_create(&t[i], NULL, consume, &m), 0);
    lock_acquire(&m.l);
    while (m.waiting < THREADS) cond_wait(&m.empty, &m.l, NULL);
    /* Each value is handed to exactly one sleeper; signalled after unlocking, as the port
     * wakes its sleepers. */
    for (int i = 1; i < THREADS; i++) {
        while (m.value != 0) cond_wait(&m.empty, &m.l, NULL);
        m.value = i;
        lock_release(&m.l);
        cond_signal(&m.full);
        lock_acquire(&m.l);
    }
    while (m.value != 0 || m.waiting != 1) cond_wait(&m.empty, &m.l, NULL);
    CHECK_EQ(m.taken, THREADS * (THREADS - 1) / 2);
    m.value = 100;
    cond_broadcast(&m.full);
    lock_release(&m.l);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    CHECK_EQ(m.taken, THREADS * (THREADS - 1) / 2 + 100);
    CHECK_EQ(atomic_load(&m.full.waiters), 0u);
}

struct gate {
    struct lock l;
    struct cond open, arrived;
    bool is_open;
    int inside, passed;
};

static void *pass(void *arg) {
    struct gate *g = arg;
    lock_acquire(&g->l);
    g->inside++;
    cond_signal(&g->arrived);
    while (!g->is_open) cond_wait(&g->open, &g->l, NULL);
    g->passed++;
    lock_release(&g->l);
    return NULL;
}

TEST(one_broadcast_wakes_every_sleeper) {
    static struct gate g;
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) CHECK_EQ(pthread_create(&t[i], NULL, pass, &g), 0);
    lock_acquire(&g.l);
    while (g.inside < THREADS) cond_wait(&g.arrived, &g.l, NULL);
    g.is_open = true;
    lock_release(&g.l);
    cond_broadcast(&g.open);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    CHECK_EQ(g.passed, THREADS);
}
