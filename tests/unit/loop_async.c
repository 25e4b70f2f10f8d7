/* Fuchsia's async-loop test cases (zircon-reference §6.6), on bellhop's loop. */
#include <lib/async-loop/default.h>
#include <lib/async-loop/loop.h>
#include <lib/async/default.h>
#include <lib/async/irq.h>
#include <lib/async/receiver.h>
#include <lib/async/task.h>
#include <lib/async/time.h>
#include <lib/async/trap.h>
#include <lib/async/wait.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zircon/syscalls.h>

#include "loop/object.h"
#include "tests/lib/check.h"

static async_loop_t *new_loop(const async_loop_config_t *config) {
    async_loop_t *loop;
    CHECK_EQ(async_loop_create(config, &loop), ZX_OK);
    return loop;
}

/* ---- helpers: waits ---- */
struct test_wait {
    async_wait_t wait;
    int runs;
    zx_status_t last_status;
    zx_packet_signal_t last_signal;
    bool had_signal;
    /* cascade */
    zx_handle_t event;
    zx_signals_t clear, set;
    bool repeat;
    bool self_cancel;
    zx_status_t cancel_result;
};

static void test_wait_handler(async_dispatcher_t *d, async_wait_t *w, zx_status_t st,
                              const zx_packet_signal_t *sig) {
    struct test_wait *t = (struct test_wait *)w;
    t->runs++;
    t->last_status = st;
    t->had_signal = sig != NULL;
    if (sig) t->last_signal = *sig;
    if (t->self_cancel) t->cancel_result = async_cancel_wait(d, w);
    if (st == ZX_OK && (t->clear || t->set)) zx_object_signal(t->event, t->clear, t->set);
    if (st == ZX_OK && t->repeat) async_begin_wait(d, w);
}

static void init_wait(struct test_wait *t, zx_handle_t obj, zx_signals_t trigger) {
    memset(t, 0, sizeof *t);
    t->wait.handler = test_wait_handler;
    t->wait.object = obj;
    t->wait.trigger = trigger;
}

/* ---- helpers: tasks ---- */
struct test_task {
    async_task_t task;
    int runs;
    zx_status_t last_status;
    int order;
    int *counter;
    async_loop_t *quit_loop;
    int repeat_left;
    zx_duration_t interval;
    bool self_cancel;
    zx_status_t cancel_result;
};

static void test_task_handler(async_dispatcher_t *d, async_task_t *tk, zx_status_t st) {
    struct test_task *t = (struct test_task *)tk;
    t->runs++;
    t->last_status = st;
    if (t->counter) t->order = ++*t->counter;
    if (t->self_cancel) t->cancel_result = async_cancel_task(d, tk);
    if (st == ZX_OK && t->quit_loop) async_loop_quit(t->quit_loop);
    if (st == ZX_OK && t->repeat_left > 0) {
        t->repeat_left--;
        tk->deadline += t->interval;
        async_post_task(d, tk);
    }
}

static void init_task(struct test_task *t, zx_time_t deadline, int *counter) {
    memset(t, 0, sizeof *t);
    t->task.handler = test_task_handler;
    t->task.deadline = deadline;
    t->counter = counter;
}

/* ---- tests ---- */

TEST(c_api_basic) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    CHECK_EQ(async_loop_get_state(loop), ASYNC_LOOP_RUNNABLE);
    async_loop_quit(loop);
    CHECK_EQ(async_loop_get_state(loop), ASYNC_LOOP_QUIT);
    CHECK_EQ(async_loop_run(loop, ZX_TIME_INFINITE, false), ZX_ERR_CANCELED);
    CHECK_EQ(async_loop_reset_quit(loop), ZX_OK);
    thrd_t t;
    CHECK_EQ(async_loop_start_thread(loop, "c_api_basic", &t), ZX_OK);
    async_loop_quit(loop);
    async_loop_join_threads(loop);
    async_loop_shutdown(loop);
    CHECK_EQ(async_loop_get_state(loop), ASYNC_LOOP_SHUTDOWN);
    CHECK(async_loop_from_dispatcher(async_loop_get_dispatcher(loop)) == loop);
    async_loop_destroy(loop);
}

TEST(make_default_false) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    CHECK(async_get_default_dispatcher() == NULL);
    async_loop_destroy(loop);
    CHECK(async_get_default_dispatcher() == NULL);
}

static async_dispatcher_t *custom_default;
static async_dispatcher_t *custom_get(void) { return custom_default; }
static void custom_set(async_dispatcher_t *d) { custom_default = d; }

TEST(make_default_true_with_custom_accessors) {
    async_loop_config_t config = {.make_default_for_current_thread = true,
                                  .default_accessors = {custom_get, custom_set}};
    async_loop_t *loop = new_loop(&config);
    CHECK(custom_default == async_loop_get_dispatcher(loop));
    CHECK(async_get_default_dispatcher() == NULL);
    async_loop_destroy(loop);
    CHECK(custom_default == NULL);
    config.default_accessors.setter = NULL; /* both or neither */
    CHECK_EQ(async_loop_create(&config, &loop), ZX_ERR_INVALID_ARGS);
}

TEST(create_default) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigAttachToCurrentThread);
    CHECK(async_get_default_dispatcher() == async_loop_get_dispatcher(loop));
    async_loop_destroy(loop);
    CHECK(async_get_default_dispatcher() == NULL);
}

static void reset_quit_from_handler(async_dispatcher_t *d, async_task_t *t, zx_status_t st) {
    (void)t, (void)st;
    *(zx_status_t *)((struct test_task *)t)->counter = async_loop_reset_quit(async_loop_from_dispatcher(d));
}

TEST(quit) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    async_dispatcher_t *d = async_loop_get_dispatcher(loop);
    async_loop_quit(loop);
    CHECK_EQ(async_loop_get_state(loop), ASYNC_LOOP_QUIT);
    CHECK_EQ(async_loop_run(loop, ZX_TIME_INFINITE, false), ZX_ERR_CANCELED);
    struct test_task t1;
    init_task(&t1, 0, NULL);
    CHECK_EQ(async_post_task(d, &t1.task), ZX_OK); /* posting while quit is allowed */
    CHECK_EQ(async_loop_reset_quit(loop), ZX_OK);
    CHECK_EQ(async_loop_get_state(loop), ASYNC_LOOP_RUNNABLE);
    /* run(once) runs the task; the timer packet is the unit */
    while (t1.runs == 0) CHECK_EQ(async_loop_run(loop, zx_deadline_after(ZX_SEC(5)), true), ZX_OK);
    zx_status_t from_handler = 1;
    struct test_task t2;
    init_task(&t2, 0, (int *)&from_handler);
    t2.task.handler = reset_quit_from_handler;
    CHECK_EQ(async_post_task(d, &t2.task), ZX_OK);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    CHECK_EQ(from_handler, ZX_ERR_BAD_STATE);
    struct test_task q;
    init_task(&q, 0, NULL);
    q.quit_loop = loop;
    CHECK_EQ(async_post_task(d, &q.task), ZX_OK);
    CHECK_EQ(async_loop_run(loop, ZX_TIME_INFINITE, false), ZX_ERR_CANCELED);
    async_loop_shutdown(loop);
    CHECK_EQ(async_loop_run(loop, ZX_TIME_INFINITE, false), ZX_ERR_BAD_STATE);
    CHECK_EQ(async_loop_reset_quit(loop), ZX_ERR_BAD_STATE);
    async_loop_destroy(loop);
}

TEST(time_is_monotonic) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    zx_time_t t0 = zx_clock_get_monotonic();
    zx_time_t t1 = async_now(async_loop_get_dispatcher(loop));
    zx_time_t t2 = async_now(async_loop_get_dispatcher(loop));
    zx_time_t t3 = zx_clock_get_monotonic();
    CHECK(t0 <= t1 && t1 <= t2 && t2 <= t3);
    async_loop_destroy(loop);
}

TEST(wait_cascade) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    async_dispatcher_t *d = async_loop_get_dispatcher(loop);
    zx_handle_t ev;
    CHECK_EQ(zx_event_create(0, &ev), ZX_OK);
    struct test_wait w1, w2, w3;
    init_wait(&w1, ev, ZX_USER_SIGNAL_1);
    w1.event = ev;
    w1.set = ZX_USER_SIGNAL_2; /* fires w2 */
    init_wait(&w2, ev, ZX_USER_SIGNAL_2);
    w2.event = ev;
    w2.clear = ZX_USER_SIGNAL_1 | ZX_USER_SIGNAL_2;
    w2.repeat = true;
    init_wait(&w3, ev, ZX_USER_SIGNAL_3);
    w3.repeat = true;
    w3.event = ev;
    w3.clear = ZX_USER_SIGNAL_3;
    CHECK_EQ(async_begin_wait(d, &w1.wait), ZX_OK);
    CHECK_EQ(async_begin_wait(d, &w2.wait), ZX_OK);
    CHECK_EQ(async_begin_wait(d, &w3.wait), ZX_OK);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    CHECK_EQ(w1.runs + w2.runs + w3.runs, 0); /* nothing signaled */

    CHECK_EQ(zx_object_signal(ev, 0, ZX_USER_SIGNAL_1), ZX_OK);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    CHECK_EQ(w1.runs, 1);
    CHECK_EQ(w1.last_status, ZX_OK);
    CHECK_EQ(w1.last_signal.trigger, ZX_USER_SIGNAL_1);
    CHECK(w1.last_signal.observed & ZX_USER_SIGNAL_1);
    CHECK_EQ(w1.last_signal.count, 1);
    CHECK_EQ(w2.runs, 1);
    CHECK_EQ(w2.last_signal.observed, ZX_USER_SIGNAL_1 | ZX_USER_SIGNAL_2); /* all asserted */
    CHECK_EQ(w3.runs, 0);

    CHECK_EQ(zx_object_signal(ev, 0, ZX_USER_SIGNAL_1 | ZX_USER_SIGNAL_2 | ZX_USER_SIGNAL_3), ZX_OK);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    CHECK_EQ(w1.runs, 1); /* one-shot */
    CHECK_EQ(w2.runs, 2); /* re-begun */
    CHECK_EQ(w3.runs, 1);

    CHECK_EQ(async_cancel_wait(d, &w2.wait), ZX_OK);
    CHECK_EQ(async_cancel_wait(d, &w2.wait), ZX_ERR_NOT_FOUND);
    CHECK_EQ(async_cancel_wait(d, &w1.wait), ZX_ERR_NOT_FOUND);
    CHECK_EQ(zx_object_signal(ev, 0, ZX_USER_SIGNAL_2 | ZX_USER_SIGNAL_3), ZX_OK);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    CHECK_EQ(w2.runs, 2);
    CHECK_EQ(w3.runs, 2);
    async_loop_destroy(loop); /* w3 gets CANCELED */
    CHECK_EQ(w3.runs, 3);
    CHECK_EQ(w3.last_status, ZX_ERR_CANCELED);
    CHECK(!w3.had_signal);
    zx_handle_close(ev);
}

struct test_irq {
    async_irq_t irq;
    int runs;
    zx_status_t last_status;
};
static void test_irq_handler(async_dispatcher_t *d, async_irq_t *irq, zx_status_t st,
                             const zx_packet_interrupt_t *p) {
    (void)d, (void)p;
    struct test_irq *t = (struct test_irq *)irq;
    t->runs++;
    t->last_status = st;
    if (st == ZX_OK) zx_interrupt_ack(irq->object);
}

TEST(irq) {
    async_loop_config_t config = kAsyncLoopConfigNoAttachToCurrentThread;
    config.irq_support = true;
    async_loop_t *loop = new_loop(&config);
    async_dispatcher_t *d = async_loop_get_dispatcher(loop);
    zx_handle_t h;
    CHECK_EQ(zx_interrupt_create(0, 0, ZX_INTERRUPT_VIRTUAL, &h), ZX_OK);
    struct test_irq t = {.irq = {.handler = test_irq_handler, .object = h}};
    CHECK_EQ(async_bind_irq(d, &t.irq), ZX_OK);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    CHECK_EQ(t.runs, 0); /* not triggered */
    CHECK_EQ(zx_interrupt_trigger(h, 0, 0), ZX_OK);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    CHECK_EQ(t.runs, 1);
    CHECK_EQ(zx_interrupt_trigger(h, 0, 0), ZX_OK);
    CHECK_EQ(async_unbind_irq(d, &t.irq), ZX_OK); /* removes the queued packet */
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    CHECK_EQ(t.runs, 1);
    CHECK_EQ(zx_interrupt_trigger(h, 0, 0), ZX_OK);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    CHECK_EQ(t.runs, 1);
    CHECK_EQ(async_unbind_irq(d, &t.irq), ZX_ERR_NOT_FOUND);
    /* bound at destruction: CANCELED */
    zx_handle_t h2;
    CHECK_EQ(zx_interrupt_create(0, 0, ZX_INTERRUPT_VIRTUAL, &h2), ZX_OK);
    struct test_irq t2 = {.irq = {.handler = test_irq_handler, .object = h2}};
    CHECK_EQ(async_bind_irq(d, &t2.irq), ZX_OK);
    async_loop_destroy(loop);
    CHECK_EQ(t2.runs, 1);
    CHECK_EQ(t2.last_status, ZX_ERR_CANCELED);
    zx_handle_close(h);
    zx_handle_close(h2);
    /* a loop without irq_support cannot bind */
    loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    CHECK_EQ(zx_interrupt_create(0, 0, ZX_INTERRUPT_VIRTUAL, &h), ZX_OK);
    t.irq.object = h;
    CHECK_EQ(async_bind_irq(async_loop_get_dispatcher(loop), &t.irq), ZX_ERR_WRONG_TYPE);
    async_loop_destroy(loop);
    zx_handle_close(h);
}

TEST(wait_timestamp) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    async_dispatcher_t *d = async_loop_get_dispatcher(loop);
    zx_handle_t ev;
    CHECK_EQ(zx_event_create(0, &ev), ZX_OK);
    struct test_wait w;
    init_wait(&w, ev, ZX_USER_SIGNAL_0);
    CHECK_EQ(async_begin_wait(d, &w.wait), ZX_OK);
    CHECK_EQ(zx_object_signal(ev, 0, ZX_USER_SIGNAL_0), ZX_OK);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    CHECK_EQ(w.runs, 1);
    CHECK_EQ(w.last_signal.timestamp, 0);
    CHECK_EQ(zx_object_signal(ev, ZX_USER_SIGNAL_0, 0), ZX_OK);
    w.wait.options = ZX_WAIT_ASYNC_TIMESTAMP;
    CHECK_EQ(async_begin_wait(d, &w.wait), ZX_OK);
    zx_time_t before = zx_clock_get_monotonic();
    CHECK_EQ(zx_object_signal(ev, 0, ZX_USER_SIGNAL_0), ZX_OK);
    zx_time_t after = zx_clock_get_monotonic();
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    CHECK_EQ(w.runs, 2);
    CHECK(w.last_signal.timestamp >= before && w.last_signal.timestamp <= after);
    async_loop_destroy(loop);
    zx_handle_close(ev);
}

TEST(wait_unwaitable_handle) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    async_dispatcher_t *d = async_loop_get_dispatcher(loop);
    zx_handle_t ev, nowait;
    CHECK_EQ(zx_event_create(0, &ev), ZX_OK);
    CHECK_EQ(zx_handle_replace(ev, ZX_RIGHT_SIGNAL, &nowait), ZX_OK);
    struct test_wait w;
    init_wait(&w, nowait, ZX_USER_SIGNAL_0);
    CHECK_EQ(async_begin_wait(d, &w.wait), ZX_ERR_ACCESS_DENIED);
    CHECK_EQ(async_cancel_wait(d, &w.wait), ZX_ERR_NOT_FOUND);
    CHECK_EQ(zx_object_signal(nowait, 0, ZX_USER_SIGNAL_0), ZX_OK);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    CHECK_EQ(w.runs, 0);
    async_loop_destroy(loop);
    CHECK_EQ(w.runs, 0);
    zx_handle_close(nowait);
}

TEST(wait_shutdown) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    async_dispatcher_t *d = async_loop_get_dispatcher(loop);
    zx_handle_t ev;
    CHECK_EQ(zx_event_create(0, &ev), ZX_OK);
    struct test_wait served, rearmed, never, selfc;
    init_wait(&served, ev, ZX_USER_SIGNAL_0);
    init_wait(&rearmed, ev, ZX_USER_SIGNAL_0);
    rearmed.repeat = true;
    rearmed.event = ev;
    rearmed.clear = ZX_USER_SIGNAL_0;
    init_wait(&never, ev, ZX_USER_SIGNAL_1);
    init_wait(&selfc, ev, ZX_USER_SIGNAL_1);
    selfc.self_cancel = true;
    CHECK_EQ(async_begin_wait(d, &served.wait), ZX_OK);
    CHECK_EQ(async_begin_wait(d, &rearmed.wait), ZX_OK);
    CHECK_EQ(async_begin_wait(d, &never.wait), ZX_OK);
    CHECK_EQ(async_begin_wait(d, &selfc.wait), ZX_OK);
    CHECK_EQ(zx_object_signal(ev, 0, ZX_USER_SIGNAL_0), ZX_OK);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    CHECK_EQ(served.runs, 1);
    CHECK_EQ(rearmed.runs, 1);
    async_loop_shutdown(loop);
    CHECK_EQ(served.runs, 1); /* serviced one-shot: not notified */
    CHECK_EQ(rearmed.runs, 2);
    CHECK_EQ(rearmed.last_status, ZX_ERR_CANCELED);
    CHECK(!rearmed.had_signal);
    CHECK_EQ(never.runs, 1);
    CHECK_EQ(never.last_status, ZX_ERR_CANCELED);
    CHECK_EQ(selfc.runs, 1);
    CHECK_EQ(selfc.cancel_result, ZX_ERR_NOT_FOUND);
    struct test_wait late;
    init_wait(&late, ev, ZX_USER_SIGNAL_0);
    CHECK_EQ(async_begin_wait(d, &late.wait), ZX_ERR_BAD_STATE);
    CHECK_EQ(async_cancel_wait(d, &late.wait), ZX_ERR_NOT_FOUND);
    async_loop_destroy(loop);
    zx_handle_close(ev);
}

TEST(tasks_run_in_deadline_order) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    async_dispatcher_t *d = async_loop_get_dispatcher(loop);
    int counter = 0;
    zx_time_t start = async_now(d);
    struct test_task t1, t2, t3, t4, canceled, repeat, quit, same_as_quit, later;
    init_task(&t1, start + ZX_MSEC(1), &counter);
    init_task(&t2, start + ZX_MSEC(1), &counter); /* FIFO among equal deadlines */
    init_task(&t3, start, &counter);
    init_task(&t4, ZX_TIME_INFINITE_PAST, &counter);
    init_task(&canceled, start, &counter);
    init_task(&repeat, start + ZX_MSEC(1), &counter);
    repeat.repeat_left = 3;
    repeat.interval = ZX_MSEC(1);
    init_task(&quit, start + ZX_MSEC(10), &counter);
    quit.quit_loop = loop;
    init_task(&same_as_quit, start + ZX_MSEC(10), &counter);
    init_task(&later, start + ZX_MSEC(20), &counter);
    CHECK_EQ(async_post_task(d, &t1.task), ZX_OK);
    CHECK_EQ(async_post_task(d, &t2.task), ZX_OK);
    CHECK_EQ(async_post_task(d, &t3.task), ZX_OK);
    CHECK_EQ(async_post_task(d, &canceled.task), ZX_OK);
    CHECK_EQ(async_post_task(d, &repeat.task), ZX_OK);
    CHECK_EQ(async_post_task(d, &quit.task), ZX_OK);
    CHECK_EQ(async_post_task(d, &same_as_quit.task), ZX_OK);
    CHECK_EQ(async_post_task(d, &later.task), ZX_OK);
    CHECK_EQ(async_cancel_task(d, &canceled.task), ZX_OK);
    CHECK_EQ(async_cancel_task(d, &canceled.task), ZX_ERR_NOT_FOUND);
    zx_nanosleep(start + ZX_MSEC(2));
    CHECK_EQ(async_post_task(d, &t4.task), ZX_OK);
    CHECK_EQ(async_loop_run(loop, ZX_TIME_INFINITE, false), ZX_ERR_CANCELED);
    CHECK_EQ(canceled.runs, 0);
    CHECK_EQ(t3.order, 1);
    CHECK_EQ(t1.order, 2);
    CHECK_EQ(t2.order, 3);
    CHECK(t4.order > t2.order); /* no deadline: after the expired timed tasks */
    CHECK_EQ(repeat.runs, 4);
    CHECK_EQ(quit.runs, 1);
    CHECK_EQ(same_as_quit.runs, 0); /* waits until reset_quit */
    CHECK_EQ(later.runs, 0);
    CHECK_EQ(async_loop_reset_quit(loop), ZX_OK);
    struct test_task q2;
    init_task(&q2, start + ZX_MSEC(30), &counter);
    q2.quit_loop = loop;
    CHECK_EQ(async_post_task(d, &q2.task), ZX_OK);
    CHECK_EQ(async_loop_run(loop, ZX_TIME_INFINITE, false), ZX_ERR_CANCELED);
    CHECK_EQ(same_as_quit.runs, 1);
    CHECK_EQ(later.runs, 1);
    CHECK(later.order > same_as_quit.order && q2.order > later.order);
    CHECK(async_now(d) >= start + ZX_MSEC(30));
    async_loop_destroy(loop);
}

TEST(task_shutdown) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    async_dispatcher_t *d = async_loop_get_dispatcher(loop);
    zx_time_t now = async_now(d);
    struct test_task served, pending, infinite, reposting, canceled, selfc;
    init_task(&served, now, NULL);
    init_task(&pending, now + ZX_SEC(100), NULL);
    init_task(&infinite, ZX_TIME_INFINITE, NULL);
    init_task(&reposting, now, NULL);
    reposting.repeat_left = 1;
    reposting.interval = ZX_SEC(100);
    init_task(&canceled, now + ZX_SEC(100), NULL);
    init_task(&selfc, now + ZX_SEC(100), NULL);
    selfc.self_cancel = true;
    CHECK_EQ(async_post_task(d, &served.task), ZX_OK);
    CHECK_EQ(async_post_task(d, &pending.task), ZX_OK);
    CHECK_EQ(async_post_task(d, &infinite.task), ZX_OK);
    CHECK_EQ(async_post_task(d, &reposting.task), ZX_OK);
    CHECK_EQ(async_post_task(d, &canceled.task), ZX_OK);
    CHECK_EQ(async_post_task(d, &selfc.task), ZX_OK);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    CHECK_EQ(served.runs, 1);
    CHECK_EQ(reposting.runs, 1);
    CHECK_EQ(async_cancel_task(d, &canceled.task), ZX_OK);
    async_loop_shutdown(loop);
    CHECK_EQ(served.runs, 1);
    CHECK_EQ(pending.runs, 1);
    CHECK_EQ(pending.last_status, ZX_ERR_CANCELED);
    CHECK_EQ(infinite.last_status, ZX_ERR_CANCELED);
    CHECK_EQ(reposting.runs, 2);
    CHECK_EQ(reposting.last_status, ZX_ERR_CANCELED);
    CHECK_EQ(canceled.runs, 0);
    CHECK_EQ(selfc.cancel_result, ZX_ERR_NOT_FOUND);
    struct test_task late;
    init_task(&late, now, NULL);
    CHECK_EQ(async_post_task(d, &late.task), ZX_ERR_BAD_STATE);
    CHECK_EQ(async_cancel_task(d, &late.task), ZX_ERR_NOT_FOUND);
    async_loop_destroy(loop);
}

struct test_receiver {
    async_receiver_t receiver;
    int runs;
    zx_packet_user_t last;
};
static void test_receiver_handler(async_dispatcher_t *d, async_receiver_t *r, zx_status_t st,
                                  const zx_packet_user_t *data) {
    (void)d, (void)st;
    struct test_receiver *t = (struct test_receiver *)r;
    t->runs++;
    t->last = *data;
}

TEST(receiver) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    async_dispatcher_t *d = async_loop_get_dispatcher(loop);
    struct test_receiver r1 = {.receiver = {.handler = test_receiver_handler}};
    struct test_receiver r2 = {.receiver = {.handler = test_receiver_handler}};
    struct test_receiver r3 = {.receiver = {.handler = test_receiver_handler}};
    zx_packet_user_t a = {.u64 = {1, 2, 3, 4}}, b = {.u64 = {5, 6, 7, 8}};
    CHECK_EQ(async_queue_packet(d, &r1.receiver, &a), ZX_OK);
    CHECK_EQ(async_queue_packet(d, &r1.receiver, &b), ZX_OK);
    CHECK_EQ(async_queue_packet(d, &r2.receiver, &a), ZX_OK);
    memset(&r3.last, 0xff, sizeof r3.last);
    CHECK_EQ(async_queue_packet(d, &r3.receiver, NULL), ZX_OK);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    CHECK_EQ(r1.runs, 2);
    CHECK_EQ(r1.last.u64[0], 5);
    CHECK_EQ(r1.last.u64[3], 8);
    CHECK_EQ(r2.runs, 1);
    CHECK_EQ(r3.runs, 1);
    CHECK_EQ(r3.last.u64[0] | r3.last.u64[1] | r3.last.u64[2] | r3.last.u64[3], 0);
    async_loop_destroy(loop);
}

TEST(receiver_shutdown) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    async_dispatcher_t *d = async_loop_get_dispatcher(loop);
    struct test_receiver r = {.receiver = {.handler = test_receiver_handler}};
    CHECK_EQ(async_queue_packet(d, &r.receiver, NULL), ZX_OK);
    async_loop_shutdown(loop);
    CHECK_EQ(r.runs, 0); /* receivers get no notification */
    CHECK_EQ(async_queue_packet(d, &r.receiver, NULL), ZX_ERR_BAD_STATE);
    CHECK_EQ(r.runs, 0);
    async_loop_destroy(loop);
}

TEST(guest_bell_trap_without_hypervisor_is_not_supported) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    async_guest_bell_trap_t trap = {.handler = NULL};
    zx_status_t st = async_set_guest_bell_trap(async_loop_get_dispatcher(loop), &trap, 1, 0x1000, 0x1000);
    CHECK(st == ZX_ERR_NOT_SUPPORTED || st == ZX_ERR_BAD_HANDLE);
    async_loop_destroy(loop);
}

/* ---- handlers that free or re-arm themselves, and the wake-up cost ---- */

static void free_self(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *s) {
    (void)d, (void)st, (void)s;
    free(w);
}

TEST(handler_may_free_its_own_wait) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    zx_handle_t ev;
    CHECK_EQ(zx_event_create(0, &ev), ZX_OK);
    for (int i = 0; i < 100; i++) {
        async_wait_t *w = calloc(1, sizeof *w);
        *w = (async_wait_t){.handler = free_self, .object = ev, .trigger = ZX_USER_SIGNAL_0};
        CHECK_EQ(async_begin_wait(async_loop_get_dispatcher(loop), w), ZX_OK);
    }
    CHECK_EQ(zx_object_signal(ev, 0, ZX_USER_SIGNAL_0), ZX_OK);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    async_loop_destroy(loop); /* ASan: all freed exactly once */
    zx_handle_close(ev);
}

struct self_queue {
    async_receiver_t receiver;
    int left;
};
static void self_queue_handler(async_dispatcher_t *d, async_receiver_t *r, zx_status_t st,
                               const zx_packet_user_t *data) {
    (void)st, (void)data;
    struct self_queue *q = (struct self_queue *)r;
    if (--q->left > 0) async_queue_packet(d, r, NULL);
    else async_loop_quit(async_loop_from_dispatcher(d));
}

struct loop_port_access {
    async_dispatcher_t dispatcher;
    async_loop_config_t config;
    zx_handle_t port;
};

TEST(queueing_from_a_handler_makes_no_wakeup_syscall) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    async_dispatcher_t *d = async_loop_get_dispatcher(loop);
    /* a pending task keeps a timer fd on the port, so the loop thread polls epoll */
    struct test_task far;
    init_task(&far, zx_deadline_after(ZX_SEC(100)), NULL);
    CHECK_EQ(async_post_task(d, &far.task), ZX_OK);
    struct zx_object *pobj;
    zx_handle_t port = ((struct loop_port_access *)loop)->port;
    CHECK_EQ(handle_get(port, ZX_OBJ_TYPE_PORT, 0, &pobj), ZX_OK);
    struct self_queue q = {.receiver = {.handler = self_queue_handler}, .left = 10000};
    CHECK_EQ(async_queue_packet(d, &q.receiver, NULL), ZX_OK);
    uint64_t before = port_wake_syscalls(port_from_object(pobj));
    CHECK_EQ(async_loop_run(loop, ZX_TIME_INFINITE, false), ZX_ERR_CANCELED);
    CHECK_EQ(q.left, 0);
    CHECK_EQ(port_wake_syscalls(port_from_object(pobj)) - before, 0);
    object_unref(pobj);
    async_loop_destroy(loop);
}

/* ---- fd waits a handler begins again (the loop re-links the observer that woke it) ---- */

/* One eventfd token per wake: a handler that finds none was woken twice for one write. */
struct fd_wait {
    async_wait_t wait;
    int efd;
    atomic_int runs;
    int empty_reads; /* woken with nothing to read */
    int left;        /* wakes still to make; 0: stop */
    async_wait_t *next; /* the wait to begin again (NULL: this one) */
    bool free_self;
    atomic_bool stop;
    zx_status_t last_status;
    bool had_signal;
};

static int new_eventfd(zx_handle_t *h) {
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    CHECK(efd >= 0);
    CHECK_EQ(zx_fd_create(efd, 0, h), ZX_OK);
    return efd;
}

static bool take_token(int efd) {
    uint64_t v;
    ssize_t r = read(efd, &v, sizeof v);
    if (r < 0) CHECK_EQ(errno, EAGAIN);
    return r == sizeof v;
}

static void give_token(int efd) {
    uint64_t one = 1;
    CHECK_EQ(write(efd, &one, sizeof one), sizeof one);
}

static void fd_wait_handler(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *s) {
    struct fd_wait *x = (struct fd_wait *)w;
    atomic_fetch_add(&x->runs, 1);
    x->last_status = st;
    x->had_signal = s != NULL;
    if (st != ZX_OK) return;
    if (!take_token(x->efd)) x->empty_reads++;
    if (x->free_self) {
        free(x);
        return;
    }
    if (atomic_load(&x->stop) || --x->left <= 0) {
        async_loop_quit(async_loop_from_dispatcher(d));
        return;
    }
    give_token(x->efd);
    CHECK_EQ(async_begin_wait(d, x->next ? x->next : w), ZX_OK);
}

static void init_fd_wait(struct fd_wait *x, zx_handle_t h, int efd, int left) {
    memset(x, 0, sizeof *x);
    x->wait = (async_wait_t){.handler = fd_wait_handler, .object = h, .trigger = ZX_FD_READABLE};
    x->efd = efd;
    x->left = left;
}

TEST(fd_wait_begun_again_by_its_handler_wakes_once_per_event) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    async_dispatcher_t *d = async_loop_get_dispatcher(loop);
    zx_handle_t h;
    int efd = new_eventfd(&h);
    struct fd_wait x;
    init_fd_wait(&x, h, efd, 5000);
    give_token(efd);
    CHECK_EQ(async_begin_wait(d, &x.wait), ZX_OK);
    CHECK_EQ(async_loop_run(loop, ZX_TIME_INFINITE, false), ZX_ERR_CANCELED);
    CHECK_EQ(atomic_load(&x.runs), 5000);
    CHECK_EQ(x.empty_reads, 0);
    /* the last run began nothing: a new event wakes nobody */
    CHECK_EQ(async_loop_reset_quit(loop), ZX_OK);
    give_token(efd);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    CHECK_EQ(atomic_load(&x.runs), 5000);
    CHECK_EQ(async_cancel_wait(d, &x.wait), ZX_ERR_NOT_FOUND);
    async_loop_destroy(loop);
    zx_handle_close(h);
    close(efd);
}

TEST(fd_handler_may_begin_another_wait_on_the_same_fd) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    async_dispatcher_t *d = async_loop_get_dispatcher(loop);
    zx_handle_t h;
    int efd = new_eventfd(&h);
    struct fd_wait a, b;
    init_fd_wait(&a, h, efd, 1000);
    init_fd_wait(&b, h, efd, 1000);
    a.next = &b.wait;
    b.next = &a.wait;
    give_token(efd);
    CHECK_EQ(async_begin_wait(d, &a.wait), ZX_OK);
    CHECK_EQ(async_loop_run(loop, ZX_TIME_INFINITE, false), ZX_ERR_CANCELED);
    /* strictly alternating: a's 1000th run quits, after b's 999th */
    CHECK_EQ(atomic_load(&a.runs), 1000);
    CHECK_EQ(atomic_load(&b.runs), 999);
    CHECK_EQ(a.empty_reads + b.empty_reads, 0);
    CHECK_EQ(async_cancel_wait(d, &a.wait), ZX_ERR_NOT_FOUND);
    CHECK_EQ(async_cancel_wait(d, &b.wait), ZX_ERR_NOT_FOUND);
    async_loop_destroy(loop);
    zx_handle_close(h);
    close(efd);
}

TEST(fd_handler_may_free_its_wait_instead_of_beginning_it_again) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    async_dispatcher_t *d = async_loop_get_dispatcher(loop);
    zx_handle_t h;
    int efd = new_eventfd(&h);
    for (int i = 0; i < 200; i++) {
        struct fd_wait *x = malloc(sizeof *x);
        CHECK(x != NULL);
        init_fd_wait(x, h, efd, 1);
        x->free_self = true;
        CHECK_EQ(async_begin_wait(d, &x->wait), ZX_OK);
        give_token(efd);
        CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK); /* ASan: x freed once, never read again */
    }
    give_token(efd);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    async_loop_destroy(loop);
    zx_handle_close(h);
    close(efd);
}

/* Between the wake and the new begin, the handler closes the fd's handle and gets the same
 * number back for an event: the wait must now be on the event, not on the fd. */
struct renumbered {
    struct fd_wait x;
    zx_handle_t event;
};

static void renumber_handler(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *s) {
    struct renumbered *r = (struct renumbered *)w;
    atomic_fetch_add(&r->x.runs, 1);
    r->x.last_status = st;
    r->x.had_signal = s != NULL;
    if (st != ZX_OK || atomic_load(&r->x.runs) > 1) return;
    CHECK(take_token(r->x.efd));
    zx_handle_t old = w->object;
    CHECK_EQ(zx_handle_close(old), ZX_OK);
    /* a slot's generation wraps after 2^14 reuses; the freed slot is the next one handed out */
    for (int i = 0; i < 40000 && r->event != old; i++) {
        if (r->event != ZX_HANDLE_INVALID) CHECK_EQ(zx_handle_close(r->event), ZX_OK);
        CHECK_EQ(zx_event_create(0, &r->event), ZX_OK);
    }
    CHECK_EQ(r->event, old);
    w->trigger = ZX_USER_SIGNAL_0;
    CHECK_EQ(async_begin_wait(d, w), ZX_OK);
}

TEST(fd_wait_begun_again_on_a_reused_handle_number_waits_on_the_new_object) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    async_dispatcher_t *d = async_loop_get_dispatcher(loop);
    struct renumbered r = {.event = ZX_HANDLE_INVALID};
    zx_handle_t h;
    int efd = new_eventfd(&h);
    init_fd_wait(&r.x, h, efd, 0);
    r.x.wait.handler = renumber_handler;
    give_token(efd);
    CHECK_EQ(async_begin_wait(d, &r.x.wait), ZX_OK);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    CHECK_EQ(atomic_load(&r.x.runs), 1);
    CHECK_EQ(r.x.wait.object, r.event);
    give_token(efd); /* the fd is nobody's now */
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    CHECK_EQ(atomic_load(&r.x.runs), 1);
    CHECK_EQ(zx_object_signal(r.event, 0, ZX_USER_SIGNAL_0), ZX_OK);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    CHECK_EQ(atomic_load(&r.x.runs), 2);
    CHECK_EQ(r.x.last_status, ZX_OK);
    async_loop_destroy(loop);
    zx_handle_close(r.event);
    close(efd);
}

/* While the handler runs, a nested run of the loop sees the fd still readable with no wait
 * pending and disarms its epoll registration; the wait begun again after that must re-arm it,
 * not trust what the registration covered when the wait was first begun. */
static void narrowed_handler(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *s) {
    struct fd_wait *x = (struct fd_wait *)w;
    (void)s;
    int runs = atomic_fetch_add(&x->runs, 1) + 1;
    x->last_status = st;
    if (st != ZX_OK) return;
    if (runs == 1) {
        CHECK_EQ(async_begin_wait(d, w), ZX_OK); /* re-armed once: its registration remembered */
        return;
    }
    if (runs == 2) {
        /* the token stays: readable with nothing waiting */
        CHECK_EQ(async_loop_run_until_idle(async_loop_from_dispatcher(d)), ZX_OK);
        CHECK_EQ(async_begin_wait(d, w), ZX_OK);
        return;
    }
    CHECK(take_token(x->efd));
    async_loop_quit(async_loop_from_dispatcher(d));
}

TEST(fd_wait_begun_again_after_its_registration_was_disarmed_still_fires) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    async_dispatcher_t *d = async_loop_get_dispatcher(loop);
    zx_handle_t h;
    int efd = new_eventfd(&h);
    struct fd_wait x;
    init_fd_wait(&x, h, efd, 0);
    x.wait.handler = narrowed_handler;
    give_token(efd);
    CHECK_EQ(async_begin_wait(d, &x.wait), ZX_OK);
    zx_status_t st = async_loop_run(loop, zx_deadline_after(ZX_SEC(5)), false);
    CHECK_EQ(st, ZX_ERR_CANCELED); /* quit by the third run, not timed out */
    CHECK_EQ(atomic_load(&x.runs), 3);
    async_loop_destroy(loop);
    zx_handle_close(h);
    close(efd);
}

/* Another thread cancels the wait while the loop wakes it and its handler begins it again. A
 * cancel that succeeds leaves the handler idle until the canceller begins the wait again. */
struct canceller {
    async_dispatcher_t *d;
    struct fd_wait *x;
    int rounds;
    int cancelled;
};

static void *cancel_thread(void *arg) {
    struct canceller *c = arg;
    for (int i = 0; i < c->rounds; i++) {
        zx_status_t st = async_cancel_wait(c->d, &c->x->wait);
        if (st == ZX_OK) {
            c->cancelled++;
            int runs = atomic_load(&c->x->runs);
            for (int k = 0; k < 20; k++) sched_yield();
            CHECK_EQ(atomic_load(&c->x->runs), runs); /* not lost: nothing ran since */
            CHECK_EQ(async_begin_wait(c->d, &c->x->wait), ZX_OK);
        } else {
            CHECK_EQ(st, ZX_ERR_NOT_FOUND);
        }
        if (i % 64 == 0) sched_yield();
    }
    atomic_store(&c->x->stop, true);
    return NULL;
}

TEST_TIMEOUT(fd_wait_cancelled_from_another_thread_while_it_wakes, 120) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    async_dispatcher_t *d = async_loop_get_dispatcher(loop);
    zx_handle_t h;
    int efd = new_eventfd(&h);
    struct fd_wait x;
    init_fd_wait(&x, h, efd, 1 << 30);
    give_token(efd);
    CHECK_EQ(async_begin_wait(d, &x.wait), ZX_OK);
    struct canceller c = {.d = d, .x = &x, .rounds = 20000};
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, cancel_thread, &c), 0);
    CHECK_EQ(async_loop_run(loop, ZX_TIME_INFINITE, false), ZX_ERR_CANCELED);
    CHECK_EQ(pthread_join(t, NULL), 0);
    CHECK_EQ(x.empty_reads, 0);
    CHECK(atomic_load(&x.runs) > 0);
    CHECK(c.cancelled > 0);
    async_loop_destroy(loop); /* the last run began nothing: no CANCELED */
    CHECK_EQ(x.last_status, ZX_OK);
    zx_handle_close(h);
    close(efd);
}

TEST(shutdown_cancels_a_wait_its_handler_began_again_once) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    async_dispatcher_t *d = async_loop_get_dispatcher(loop);
    zx_handle_t h, ev;
    int efd = new_eventfd(&h);
    CHECK_EQ(zx_event_create(0, &ev), ZX_OK);
    /* the fd wait is begun again and left pending; the event wait, on a signal still set, is
     * begun again with its packet queued and not yet taken */
    struct fd_wait x;
    init_fd_wait(&x, h, efd, 3);
    struct test_wait e;
    init_wait(&e, ev, ZX_USER_SIGNAL_0);
    e.repeat = true;
    give_token(efd);
    CHECK_EQ(async_begin_wait(d, &x.wait), ZX_OK);
    CHECK_EQ(async_loop_run(loop, ZX_TIME_INFINITE, true), ZX_OK);
    CHECK_EQ(atomic_load(&x.runs), 1);
    CHECK(take_token(efd)); /* the handler's token: the re-begun wait stays pending */
    CHECK_EQ(zx_object_signal(ev, 0, ZX_USER_SIGNAL_0), ZX_OK);
    CHECK_EQ(async_begin_wait(d, &e.wait), ZX_OK);
    CHECK_EQ(async_loop_run(loop, ZX_TIME_INFINITE, true), ZX_OK);
    CHECK_EQ(e.runs, 1);
    async_loop_shutdown(loop);
    CHECK_EQ(atomic_load(&x.runs), 2);
    CHECK_EQ(x.last_status, ZX_ERR_CANCELED);
    CHECK(!x.had_signal);
    CHECK_EQ(e.runs, 2);
    CHECK_EQ(e.last_status, ZX_ERR_CANCELED);
    CHECK_EQ(async_begin_wait(d, &x.wait), ZX_ERR_BAD_STATE);
    CHECK_EQ(async_cancel_wait(d, &x.wait), ZX_ERR_NOT_FOUND);
    async_loop_destroy(loop);
    CHECK_EQ(atomic_load(&x.runs), 2);
    CHECK_EQ(e.runs, 2);
    zx_handle_close(h);
    zx_handle_close(ev);
    close(efd);
}

TEST(shutdown_cancels_a_wait_whose_object_lost_its_last_handle) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    async_dispatcher_t *d = async_loop_get_dispatcher(loop);
    zx_handle_t ev, h;
    CHECK_EQ(zx_event_create(0, &ev), ZX_OK);
    int efd = new_eventfd(&h);
    struct test_wait e, cancelled;
    init_wait(&e, ev, ZX_USER_SIGNAL_0);
    struct fd_wait x;
    init_fd_wait(&x, h, efd, 1);
    CHECK_EQ(async_begin_wait(d, &e.wait), ZX_OK);
    CHECK_EQ(async_begin_wait(d, &x.wait), ZX_OK);
    init_wait(&cancelled, ev, ZX_USER_SIGNAL_0);
    CHECK_EQ(async_begin_wait(d, &cancelled.wait), ZX_OK);
    CHECK_EQ(zx_handle_close(ev), ZX_OK);
    CHECK_EQ(zx_handle_close(h), ZX_OK);
    give_token(efd);
    CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
    CHECK_EQ(e.runs + atomic_load(&x.runs), 0);
    CHECK_EQ(async_cancel_wait(d, &cancelled.wait), ZX_OK); /* it can never run now */
    async_loop_shutdown(loop);
    CHECK_EQ(e.runs, 1);
    CHECK_EQ(e.last_status, ZX_ERR_CANCELED);
    CHECK_EQ(atomic_load(&x.runs), 1);
    CHECK_EQ(x.last_status, ZX_ERR_CANCELED);
    CHECK_EQ(cancelled.runs, 0);
    async_loop_destroy(loop); /* ASan: the objects went with their last handles */
    close(efd);
}

/* One of a connection's two waits: the first one's CANCELED handler tears the connection
 * down, cancelling and freeing the other (as a C++ wait's destructor does). */
struct conn_wait {
    async_wait_t wait;
    struct conn_wait *other;
    zx_status_t cancel_other;
    int *runs;
};

static void conn_wait_handler(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *s) {
    (void)s;
    struct conn_wait *c = (struct conn_wait *)w;
    (*c->runs)++;
    if (st != ZX_ERR_CANCELED || !c->other) return;
    c->cancel_other = async_cancel_wait(d, &c->other->wait);
    free(c->other); /* ASan: nobody may touch it after a cancel that said ZX_OK */
}

TEST(a_canceled_handler_may_cancel_and_free_a_wait_not_yet_canceled) {
    /* the other wait pending on the event, or fired with its packet queued and not yet taken */
    for (int queued = 0; queued < 2; queued++) {
        async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
        async_dispatcher_t *d = async_loop_get_dispatcher(loop);
        zx_handle_t ev;
        CHECK_EQ(zx_event_create(0, &ev), ZX_OK);
        int first_runs = 0, second_runs = 0;
        struct conn_wait first = {.wait = {.handler = conn_wait_handler, .object = ev, .trigger = ZX_USER_SIGNAL_0},
                                  .runs = &first_runs};
        struct conn_wait *second = calloc(1, sizeof *second);
        CHECK(second != NULL);
        second->wait = (async_wait_t){.handler = conn_wait_handler, .object = ev, .trigger = ZX_USER_SIGNAL_1};
        second->runs = &second_runs;
        first.other = second;
        CHECK_EQ(async_begin_wait(d, &first.wait), ZX_OK);
        CHECK_EQ(async_begin_wait(d, &second->wait), ZX_OK);
        if (queued) CHECK_EQ(zx_object_signal(ev, 0, ZX_USER_SIGNAL_1), ZX_OK);
        async_loop_shutdown(loop);
        CHECK_EQ(first_runs, 1);
        CHECK_EQ(first.cancel_other, ZX_OK);
        CHECK_EQ(second_runs, 0);
        async_loop_destroy(loop);
        CHECK_EQ(second_runs, 0);
        zx_handle_close(ev);
    }
}

static int open_fds(void) {
    DIR *dir = opendir("/proc/self/fd");
    CHECK(dir != NULL);
    int n = 0;
    while (readdir(dir)) n++;
    closedir(dir);
    return n;
}

/* Each wait outlives its timer's handle: the timer (and its timerfd) must go at once, and the
 * waits must not use up the port's pending-wait limit (65536). */
TEST_TIMEOUT(waits_whose_handles_closed_hold_no_object_and_no_slot, 120) {
    enum { N = 70000 };
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    async_dispatcher_t *d = async_loop_get_dispatcher(loop);
    struct test_wait *w = calloc(N, sizeof *w);
    CHECK(w != NULL);
    int fds = -1;
    for (int i = 0; i < N; i++) {
        zx_handle_t t;
        CHECK_EQ(zx_timer_create(0, ZX_CLOCK_MONOTONIC, &t), ZX_OK);
        init_wait(&w[i], t, ZX_TIMER_SIGNALED);
        CHECK_EQ(async_begin_wait(d, &w[i].wait), ZX_OK);
        CHECK_EQ(zx_handle_close(t), ZX_OK);
        if (i == 0) fds = open_fds(); /* the port's epoll is made by the first timer wait */
    }
    CHECK_EQ(open_fds(), fds);
    CHECK_EQ(async_cancel_wait(d, &w[0].wait), ZX_OK);
    async_loop_shutdown(loop);
    CHECK_EQ(w[0].runs, 0);
    for (int i = 1; i < N; i++) {
        CHECK_EQ(w[i].runs, 1);
        CHECK_EQ(w[i].last_status, ZX_ERR_CANCELED);
    }
    async_loop_destroy(loop);
    free(w);
}

/* A begin racing with the close of the fd's last handle: it either fails or leaves a wait that
 * the close orphaned; never an epoll registration nobody removes (which would keep the port,
 * and its epoll and wake fds, alive and run on the freed fd object at the next event). */
struct close_race {
    async_dispatcher_t *d;
    async_wait_t wait;
    atomic_int ready;
    zx_status_t begin;
};

static void never_runs(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *s) {
    (void)d, (void)w, (void)s;
    CHECK_MSG(false, "handler ran with status %d", st);
}

static void *race_begin(void *arg) {
    struct close_race *r = arg;
    atomic_fetch_add(&r->ready, 1);
    while (atomic_load(&r->ready) < 2) {
    }
    r->begin = async_begin_wait(r->d, &r->wait);
    return NULL;
}

TEST_TIMEOUT(a_wait_begun_while_its_last_handle_closes_leaves_nothing_behind, 120) {
    int fds = open_fds(), begun = 0, refused = 0;
    for (int round = 0; round < 2000; round++) {
        async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
        zx_handle_t h;
        int efd = new_eventfd(&h);
        struct close_race r = {.d = async_loop_get_dispatcher(loop),
                               .wait = {.handler = never_runs, .object = h, .trigger = ZX_FD_READABLE}};
        pthread_t t;
        CHECK_EQ(pthread_create(&t, NULL, race_begin, &r), 0);
        atomic_fetch_add(&r.ready, 1);
        while (atomic_load(&r.ready) < 2) {
        }
        for (int k = round % 64; k > 0; k--) atomic_signal_fence(memory_order_seq_cst); /* vary who wins */
        CHECK_EQ(zx_handle_close(h), ZX_OK);
        CHECK_EQ(pthread_join(t, NULL), 0);
        if (r.begin == ZX_OK) {
            begun++;
            CHECK_EQ(async_cancel_wait(r.d, &r.wait), ZX_OK); /* orphaned: pending, never to run */
        } else {
            refused++;
            CHECK_EQ(r.begin, ZX_ERR_BAD_HANDLE);
        }
        give_token(efd); /* a registration left behind would run on the freed fd object */
        CHECK_EQ(async_loop_run_until_idle(loop), ZX_OK);
        async_loop_destroy(loop);
        close(efd);
    }
    CHECK_EQ(open_fds(), fds);
    CHECK(begun + refused == 2000);
}

/* ---- threads ---- */

static void check_default(async_dispatcher_t *d, async_task_t *t, zx_status_t st) {
    (void)st;
    struct test_task *tt = (struct test_task *)t;
    tt->runs = async_get_default_dispatcher() == d ? 1 : 2;
    async_loop_quit(async_loop_from_dispatcher(d));
}

TEST(threads_have_default_dispatcher) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    struct test_task t;
    init_task(&t, 0, NULL);
    t.task.handler = check_default;
    CHECK_EQ(async_post_task(async_loop_get_dispatcher(loop), &t.task), ZX_OK);
    CHECK_EQ(async_loop_start_thread(loop, "default", NULL), ZX_OK);
    async_loop_join_threads(loop);
    CHECK_EQ(t.runs, 1);
    async_loop_destroy(loop);
}

TEST(threads_dont_have_default_dispatcher) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNeverAttachToThread);
    struct test_task t;
    init_task(&t, 0, NULL);
    t.task.handler = check_default;
    CHECK_EQ(async_post_task(async_loop_get_dispatcher(loop), &t.task), ZX_OK);
    CHECK_EQ(async_loop_start_thread(loop, "nodefault", NULL), ZX_OK);
    async_loop_join_threads(loop);
    CHECK_EQ(t.runs, 2);
    async_loop_destroy(loop);
}

TEST(threads_quit) {
    for (int rep = 0; rep < 3; rep++) {
        async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
        for (int i = 0; i < 4; i++) CHECK_EQ(async_loop_start_thread(loop, NULL, NULL), ZX_OK);
        usleep(10000);
        async_loop_quit(loop);
        async_loop_join_threads(loop);
        CHECK_EQ(async_loop_get_state(loop), ASYNC_LOOP_QUIT);
        async_loop_destroy(loop);
    }
}

TEST(threads_shutdown) {
    for (int rep = 0; rep < 3; rep++) {
        async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
        for (int i = 0; i < 4; i++) CHECK_EQ(async_loop_start_thread(loop, NULL, NULL), ZX_OK);
        usleep(10000);
        async_loop_shutdown(loop);
        CHECK_EQ(async_loop_get_state(loop), ASYNC_LOOP_SHUTDOWN);
        async_loop_join_threads(loop); /* no-op */
        CHECK_EQ(async_loop_start_thread(loop, NULL, NULL), ZX_ERR_BAD_STATE);
        async_loop_destroy(loop);
    }
}

/* ConcurrencyMeasure: counts items and the most handlers active at once; each takes 1 ms. */
struct concurrency {
    atomic_int active, max_active, done;
    int total;
    async_loop_t *loop;
};
static void measure(struct concurrency *c) {
    int now = atomic_fetch_add(&c->active, 1) + 1;
    int m = atomic_load(&c->max_active);
    while (now > m && !atomic_compare_exchange_weak(&c->max_active, &m, now)) {
    }
    usleep(1000);
    atomic_fetch_sub(&c->active, 1);
    if (atomic_fetch_add(&c->done, 1) + 1 == c->total) async_loop_quit(c->loop);
}

struct cwait {
    async_wait_t wait;
    struct concurrency *c;
};
static void cwait_handler(async_dispatcher_t *d, async_wait_t *w, zx_status_t st, const zx_packet_signal_t *s) {
    (void)d, (void)st, (void)s;
    measure(((struct cwait *)w)->c);
}
struct ctask {
    async_task_t task;
    struct concurrency *c;
};
static void ctask_handler(async_dispatcher_t *d, async_task_t *t, zx_status_t st) {
    (void)d, (void)st;
    measure(((struct ctask *)t)->c);
}
struct creceiver {
    async_receiver_t receiver;
    struct concurrency *c;
};
static void creceiver_handler(async_dispatcher_t *d, async_receiver_t *r, zx_status_t st,
                              const zx_packet_user_t *data) {
    (void)d, (void)st, (void)data;
    measure(((struct creceiver *)r)->c);
}

TEST_TIMEOUT(threads_waits_run_concurrently, 60) {
    for (int rep = 0; rep < 3; rep++) {
        async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
        struct concurrency c = {.total = 100, .loop = loop};
        zx_handle_t ev;
        CHECK_EQ(zx_event_create(0, &ev), ZX_OK);
        CHECK_EQ(zx_object_signal(ev, 0, ZX_EVENT_SIGNALED), ZX_OK);
        static struct cwait waits[100];
        for (int i = 0; i < 100; i++) {
            waits[i] = (struct cwait){.wait = {.handler = cwait_handler, .object = ev, .trigger = ZX_EVENT_SIGNALED}, .c = &c};
            CHECK_EQ(async_begin_wait(async_loop_get_dispatcher(loop), &waits[i].wait), ZX_OK);
        }
        for (int i = 0; i < 4; i++) CHECK_EQ(async_loop_start_thread(loop, NULL, NULL), ZX_OK);
        async_loop_join_threads(loop);
        CHECK_EQ(atomic_load(&c.done), 100);
        CHECK(atomic_load(&c.max_active) > 1);
        async_loop_destroy(loop);
        zx_handle_close(ev);
    }
}

TEST_TIMEOUT(threads_tasks_run_sequentially, 60) {
    for (int rep = 0; rep < 3; rep++) {
        async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
        struct concurrency c = {.total = 100, .loop = loop};
        static struct ctask tasks[100];
        zx_time_t start = zx_clock_get_monotonic();
        for (int i = 0; i < 100; i++) {
            tasks[i] = (struct ctask){.task = {.handler = ctask_handler, .deadline = start + ZX_MSEC(i)}, .c = &c};
            CHECK_EQ(async_post_task(async_loop_get_dispatcher(loop), &tasks[i].task), ZX_OK);
        }
        for (int i = 0; i < 4; i++) CHECK_EQ(async_loop_start_thread(loop, NULL, NULL), ZX_OK);
        async_loop_join_threads(loop);
        CHECK_EQ(atomic_load(&c.done), 100);
        CHECK_EQ(atomic_load(&c.max_active), 1);
        async_loop_destroy(loop);
    }
}

TEST_TIMEOUT(threads_receivers_run_concurrently, 60) {
    for (int rep = 0; rep < 3; rep++) {
        async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
        struct concurrency c = {.total = 100, .loop = loop};
        struct creceiver r = {.receiver = {.handler = creceiver_handler}, .c = &c};
        for (int i = 0; i < 100; i++)
            CHECK_EQ(async_queue_packet(async_loop_get_dispatcher(loop), &r.receiver, NULL), ZX_OK);
        for (int i = 0; i < 4; i++) CHECK_EQ(async_loop_start_thread(loop, NULL, NULL), ZX_OK);
        async_loop_join_threads(loop);
        CHECK_EQ(atomic_load(&c.done), 100);
        CHECK(atomic_load(&c.max_active) > 1);
        async_loop_destroy(loop);
    }
}

static void shutdown_from_handler(async_dispatcher_t *d, async_task_t *t, zx_status_t st) {
    (void)st;
    ((struct test_task *)t)->runs++;
    async_loop_shutdown(async_loop_from_dispatcher(d));
}

TEST(a_worker_handler_may_shut_the_loop_down) {
    async_loop_t *loop = new_loop(&kAsyncLoopConfigNoAttachToCurrentThread);
    struct test_task t, pending;
    init_task(&t, 0, NULL);
    t.task.handler = shutdown_from_handler;
    init_task(&pending, zx_deadline_after(ZX_SEC(100)), NULL);
    CHECK_EQ(async_loop_start_thread(loop, "w1", NULL), ZX_OK);
    CHECK_EQ(async_loop_start_thread(loop, "w2", NULL), ZX_OK);
    CHECK_EQ(async_post_task(async_loop_get_dispatcher(loop), &pending.task), ZX_OK);
    CHECK_EQ(async_post_task(async_loop_get_dispatcher(loop), &t.task), ZX_OK);
    while (async_loop_get_state(loop) != ASYNC_LOOP_SHUTDOWN) usleep(1000);
    async_loop_join_threads(loop); /* joins the other worker; the shutting-down one stays */
    async_loop_destroy(loop);      /* ... and is joined here */
    CHECK_EQ(t.runs, 1);
    CHECK_EQ(pending.last_status, ZX_ERR_CANCELED);
}
