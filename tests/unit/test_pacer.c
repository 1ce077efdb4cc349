/*
 * Unit tests for pacer: shared deferral, cancellation and the slot bound,
 * exercised with real threads.
 *
 * Time is the test's own clock (pacer_new_clocked), moved by hand: a test
 * never sleeps to let a deferral pass. Before each move it waits until every
 * thread it started is asleep in the pacer, or has returned (pacer_stats),
 * and each thread notes the clock when it returns, so a thread let go too
 * early is seen at the time it left, however the threads were scheduled.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "batchfs/pacer.h"

/* How long a wait for the threads to settle may take before the test calls
 * it a hang. */
#define SETTLE_DEADLINE_S 30

/* ---- the test's clock ---- */

static atomic_llong clock_ms; /* moved only by move_clock() */

static struct timespec test_now(void *arg)
{
    long long ms = atomic_load(&clock_ms);

    (void)arg;
    return (struct timespec){(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
}

static const struct pacer_clock test_clock = {.now = test_now};

static struct pacer *clocked_pacer(unsigned slots)
{
    struct pacer *pacer;

    atomic_store(&clock_ms, 0);
    pacer = pacer_new_clocked(slots, &test_clock, NULL);
    assert_non_null(pacer);
    return pacer;
}

static long long monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- threads ---- */

enum waiter_mode { ACQUIRE_RELEASE, WAIT, SLEEP, ACQUIRE };

struct waiter {
    pthread_t thread;
    struct pacer *pacer;
    enum waiter_mode mode;
    long sleep_ms;        /* for SLEEP */
    atomic_int *returned; /* shared by the threads of one test */
    int rc;
    long long done_ms; /* the test clock when the call returned */
};

static void *waiter_run(void *arg)
{
    struct waiter *w = arg;

    switch (w->mode) {
    case ACQUIRE_RELEASE:
        w->rc = pacer_acquire(w->pacer);
        w->done_ms = atomic_load(&clock_ms);
        if (w->rc == 0)
            pacer_release(w->pacer);
        break;
    case WAIT:
        w->rc = pacer_wait(w->pacer);
        w->done_ms = atomic_load(&clock_ms);
        break;
    case SLEEP:
        w->rc = pacer_sleep(w->pacer, w->sleep_ms);
        w->done_ms = atomic_load(&clock_ms);
        break;
    case ACQUIRE:
        w->rc = pacer_acquire(w->pacer);
        w->done_ms = atomic_load(&clock_ms);
        break;
    }
    atomic_fetch_add(w->returned, 1);
    return NULL;
}

static void start(struct waiter *w, struct pacer *pacer, enum waiter_mode mode,
                  atomic_int *returned)
{
    w->pacer = pacer;
    w->mode = mode;
    w->returned = returned;
    w->rc = -1;
    w->done_ms = -1;
    assert_int_equal(pthread_create(&w->thread, NULL, waiter_run, w), 0);
}

static struct pacer_stats stats_of(struct pacer *pacer)
{
    struct pacer_stats st;

    pacer_get_stats(pacer, &st);
    return st;
}

/*
 * Waits until at least `waiting` threads are asleep in the pacer and it has
 * counted at least `sleeps` sleeps, or until one of the test's threads has
 * returned (which the test then sees as too early). Fails on a hang.
 */
static void settle(struct pacer *pacer, unsigned waiting, unsigned long long sleeps,
                   atomic_int *returned)
{
    long long give_up = monotonic_ms() + SETTLE_DEADLINE_S * 1000;

    for (;;) {
        struct pacer_stats st = stats_of(pacer);

        if ((st.waiting >= waiting && st.sleeps >= sleeps) || atomic_load(returned) > 0)
            return;
        assert_true(monotonic_ms() < give_up);
        sched_yield();
    }
}

/*
 * Sets the clock to `ms` with `asleep` threads asleep in the pacer, and
 * waits until each has read it and gone back to sleep, or one returned.
 */
static void move_clock(struct pacer *pacer, long long ms, unsigned asleep,
                       atomic_int *returned)
{
    unsigned long long before = stats_of(pacer).sleeps;

    atomic_store(&clock_ms, ms);
    pacer_clock_moved(pacer);
    settle(pacer, asleep, before + asleep, returned);
}

/* Sets the clock to `ms` and checks that each of the `count` threads then
 * returned 0, at that time and not before. */
static void let_go_at(struct pacer *pacer, long long ms, struct waiter *w, int count)
{
    atomic_store(&clock_ms, ms);
    pacer_clock_moved(pacer);
    for (int i = 0; i < count; i++) {
        pthread_join(w[i].thread, NULL);
        assert_int_equal(w[i].rc, 0);
        assert_int_equal(w[i].done_ms, ms);
    }
}

/* ---- tests ---- */

static void test_new_rejects_zero_slots(void **state)
{
    int err = 0;
    struct pacer *pacer;

    (void)state;
    assert_null(pacer_new(0, &err));
    assert_int_equal(err, -EINVAL);
    assert_null(pacer_new_clocked(0, &test_clock, &err));
    assert_int_equal(err, -EINVAL);
    pacer = pacer_new(1, &err);
    assert_non_null(pacer);
    assert_int_equal(err, 0);
    assert_false(pacer_cancelled(pacer));
    pacer_free(pacer);
    pacer_free(NULL);
}

static void test_no_deferral_no_wait(void **state)
{
    struct pacer *pacer = pacer_new(2, NULL);
    struct pacer_stats st;

    (void)state;
    assert_non_null(pacer);
    pacer_defer(pacer, 0);
    pacer_defer(pacer, -1000);
    assert_int_equal(pacer_wait(pacer), 0);
    assert_int_equal(pacer_acquire(pacer), 0);
    assert_int_equal(pacer_in_use(pacer), 1);
    pacer_release(pacer);
    assert_int_equal(pacer_in_use(pacer), 0);
    st = stats_of(pacer);
    assert_int_equal(st.sleeps, 0);
    assert_int_equal(st.waiting, 0);
    pacer_free(pacer);
}

/* On the default clock the kernel keeps the deadline: a deferral holds a
 * caller until CLOCK_MONOTONIC has passed it, and then lets it go. */
static void test_monotonic_clock_keeps_deferral(void **state)
{
    struct pacer *pacer = pacer_new(1, NULL);
    struct timespec deferred, now;

    (void)state;
    assert_non_null(pacer);
    clock_gettime(CLOCK_MONOTONIC, &deferred);
    pacer_defer(pacer, 20);
    assert_int_equal(pacer_wait(pacer), 0);
    clock_gettime(CLOCK_MONOTONIC, &now);
    /* Not a measure of speed: the pacer promises nothing starts earlier. */
    assert_true((now.tv_sec - deferred.tv_sec) * 1000 +
                    (now.tv_nsec - deferred.tv_nsec) / 1000000 >=
                20);
    assert_true(stats_of(pacer).sleeps >= 1);
    pacer_free(pacer);
}

static void test_defer_holds_all_threads(void **state)
{
    struct pacer *pacer = clocked_pacer(4);
    struct waiter w[6];
    atomic_int returned = 0;

    (void)state;
    pacer_defer(pacer, 300);
    for (int i = 0; i < 6; i++)
        start(&w[i], pacer, i % 2 ? WAIT : ACQUIRE_RELEASE, &returned);
    settle(pacer, 6, 6, &returned);
    assert_int_equal(returned, 0);
    move_clock(pacer, 299, 6, &returned);
    assert_int_equal(returned, 0);
    let_go_at(pacer, 300, w, 6);
    assert_int_equal(pacer_in_use(pacer), 0);
    pacer_free(pacer);
}

static void test_defer_keeps_later_time(void **state)
{
    struct pacer *pacer = clocked_pacer(1);
    struct waiter w;
    atomic_int returned = 0;

    (void)state;
    pacer_defer(pacer, 400);
    pacer_defer(pacer, 50); /* must not pull resume_at earlier */
    start(&w, pacer, WAIT, &returned);
    settle(pacer, 1, 1, &returned);
    move_clock(pacer, 50, 1, &returned);
    move_clock(pacer, 399, 1, &returned);
    assert_int_equal(returned, 0);
    let_go_at(pacer, 400, &w, 1);
    pacer_free(pacer);
}

/* A thread queued for a slot must also honour a deferral made meanwhile. */
static void test_slot_waiter_honours_later_deferral(void **state)
{
    struct pacer *pacer = clocked_pacer(1);
    struct waiter w;
    atomic_int returned = 0;
    unsigned long long sleeps;

    (void)state;
    assert_int_equal(pacer_acquire(pacer), 0);
    start(&w, pacer, ACQUIRE, &returned);
    settle(pacer, 1, 1, &returned); /* queued for the slot this thread holds */
    sleeps = stats_of(pacer).sleeps;
    pacer_defer(pacer, 300);
    settle(pacer, 1, sleeps + 1, &returned); /* woke, saw the deferral, slept */
    sleeps = stats_of(pacer).sleeps;
    pacer_release(pacer);
    settle(pacer, 1, sleeps + 1, &returned); /* woke, saw the free slot, slept */
    assert_int_equal(returned, 0);
    assert_int_equal(pacer_in_use(pacer), 0);
    let_go_at(pacer, 300, &w, 1);
    pacer_release(pacer);
    pacer_free(pacer);
}

static void test_sleep_is_this_thread_only(void **state)
{
    struct pacer *pacer = clocked_pacer(1);
    struct waiter w = {.sleep_ms = 150};
    atomic_int returned = 0;

    (void)state;
    start(&w, pacer, SLEEP, &returned);
    settle(pacer, 1, 1, &returned);
    /* Sleeping did not defer anyone else: on a clock that stands still,
     * this returns only if nothing holds it. */
    assert_int_equal(pacer_wait(pacer), 0);
    assert_int_equal(pacer_acquire(pacer), 0);
    pacer_release(pacer);
    assert_int_equal(pacer_sleep(pacer, 0), 0);
    assert_int_equal(pacer_sleep(pacer, -5), 0);
    move_clock(pacer, 149, 1, &returned);
    assert_int_equal(returned, 0);
    let_go_at(pacer, 150, &w, 1);
    pacer_free(pacer);
}

static void test_cancel_wakes_waiters(void **state)
{
    struct pacer *pacer = clocked_pacer(1);
    struct waiter w[4] = {[2] = {.sleep_ms = 60000}};
    atomic_int returned = 0;
    long long give_up;

    (void)state;
    /* One waiter of each kind: deferred wait, deferred acquire, sleep, and a
     * slot waiter (the slot is held by this thread). On the test's clock
     * none of them would ever wake on its own. */
    assert_int_equal(pacer_acquire(pacer), 0);
    pacer_defer(pacer, 60000);
    start(&w[0], pacer, WAIT, &returned);
    start(&w[1], pacer, ACQUIRE, &returned);
    start(&w[2], pacer, SLEEP, &returned);
    start(&w[3], pacer, ACQUIRE, &returned);
    settle(pacer, 4, 4, &returned);
    assert_int_equal(returned, 0);
    pacer_cancel(pacer);
    give_up = monotonic_ms() + SETTLE_DEADLINE_S * 1000;
    while (atomic_load(&returned) < 4) {
        assert_true(monotonic_ms() < give_up);
        sched_yield();
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(w[i].thread, NULL);
        assert_int_equal(w[i].rc, -ECANCELED);
    }
    assert_true(pacer_cancelled(pacer));
    /* Later calls fail at once; the cancelled acquirers took no slot. */
    assert_int_equal(pacer_wait(pacer), -ECANCELED);
    assert_int_equal(pacer_acquire(pacer), -ECANCELED);
    assert_int_equal(pacer_sleep(pacer, 60000), -ECANCELED);
    assert_int_equal(pacer_in_use(pacer), 1);
    pacer_release(pacer);
    pacer_free(pacer);
}

#define BOUND_SLOTS 3
#define BOUND_THREADS 16
#define BOUND_ROUNDS 20

struct bound_state {
    struct pacer *pacer;
    atomic_int current;
    atomic_int peak;
    atomic_int done;
};

static void *bound_run(void *arg)
{
    struct bound_state *s = arg;

    for (int i = 0; i < BOUND_ROUNDS; i++) {
        int now, peak;

        if (pacer_acquire(s->pacer))
            return NULL;
        now = atomic_fetch_add(&s->current, 1) + 1;
        peak = atomic_load(&s->peak);
        while (now > peak && !atomic_compare_exchange_weak(&s->peak, &peak, now))
            ;
        /* Holds the slot a moment, as a request would, so that the others
         * queue for it; nothing waits on this pause. */
        usleep(500);
        atomic_fetch_sub(&s->current, 1);
        pacer_release(s->pacer);
        atomic_fetch_add(&s->done, 1);
    }
    return NULL;
}

static void test_slot_bound_under_threads(void **state)
{
    struct bound_state s;
    pthread_t t[BOUND_THREADS];

    (void)state;
    s.pacer = pacer_new(BOUND_SLOTS, NULL);
    assert_non_null(s.pacer);
    atomic_init(&s.current, 0);
    atomic_init(&s.peak, 0);
    atomic_init(&s.done, 0);
    for (int i = 0; i < BOUND_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, bound_run, &s), 0);
    for (int i = 0; i < BOUND_THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&s.done), BOUND_THREADS * BOUND_ROUNDS);
    assert_true(atomic_load(&s.peak) <= BOUND_SLOTS);
    assert_true(atomic_load(&s.peak) >= 1);
    assert_int_equal(pacer_in_use(s.pacer), 0);
    pacer_free(s.pacer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_rejects_zero_slots),
        cmocka_unit_test(test_no_deferral_no_wait),
        cmocka_unit_test(test_monotonic_clock_keeps_deferral),
        cmocka_unit_test(test_defer_holds_all_threads),
        cmocka_unit_test(test_defer_keeps_later_time),
        cmocka_unit_test(test_slot_waiter_honours_later_deferral),
        cmocka_unit_test(test_sleep_is_this_thread_only),
        cmocka_unit_test(test_cancel_wakes_waiters),
        cmocka_unit_test(test_slot_bound_under_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
