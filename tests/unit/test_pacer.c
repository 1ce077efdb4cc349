/*
 * Unit tests for pacer: shared deferral, cancellation and the slot bound,
 * exercised with real threads. Timing checks have wide margins: they assert
 * that nothing started early and that nothing hung, never exact durations.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "batchfs/pacer.h"

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct waiter {
    struct pacer *pacer;
    int mode; /* 0 acquire+release, 1 wait, 2 sleep 60 s, 3 acquire only */
    int rc;
    long long done_ms;
};

static void *waiter_run(void *arg)
{
    struct waiter *w = arg;

    switch (w->mode) {
    case 0:
        w->rc = pacer_acquire(w->pacer);
        w->done_ms = now_ms();
        if (w->rc == 0)
            pacer_release(w->pacer);
        break;
    case 1:
        w->rc = pacer_wait(w->pacer);
        w->done_ms = now_ms();
        break;
    case 2:
        w->rc = pacer_sleep(w->pacer, 60000);
        w->done_ms = now_ms();
        break;
    default:
        w->rc = pacer_acquire(w->pacer);
        w->done_ms = now_ms();
        break;
    }
    return NULL;
}

static void test_new_rejects_zero_slots(void **state)
{
    int err = 0;
    struct pacer *pacer;

    (void)state;
    assert_null(pacer_new(0, &err));
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
    long long start = now_ms();

    (void)state;
    assert_non_null(pacer);
    pacer_defer(pacer, 0);
    pacer_defer(pacer, -1000);
    assert_int_equal(pacer_wait(pacer), 0);
    assert_int_equal(pacer_acquire(pacer), 0);
    assert_int_equal(pacer_in_use(pacer), 1);
    pacer_release(pacer);
    assert_int_equal(pacer_in_use(pacer), 0);
    assert_true(now_ms() - start < 1000);
    pacer_free(pacer);
}

static void test_defer_holds_all_threads(void **state)
{
    struct pacer *pacer = pacer_new(4, NULL);
    struct waiter w[6];
    pthread_t t[6];
    long long start;

    (void)state;
    assert_non_null(pacer);
    start = now_ms();
    pacer_defer(pacer, 300);
    for (int i = 0; i < 6; i++) {
        w[i] = (struct waiter){pacer, i % 2, -1, 0};
        assert_int_equal(pthread_create(&t[i], NULL, waiter_run, &w[i]), 0);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].rc, 0);
        assert_true(w[i].done_ms - start >= 300);
        assert_true(w[i].done_ms - start < 5000);
    }
    pacer_free(pacer);
}

static void test_defer_keeps_later_time(void **state)
{
    struct pacer *pacer = pacer_new(1, NULL);
    long long start;

    (void)state;
    assert_non_null(pacer);
    start = now_ms();
    pacer_defer(pacer, 400);
    pacer_defer(pacer, 50); /* must not pull resume_at earlier */
    assert_int_equal(pacer_wait(pacer), 0);
    assert_true(now_ms() - start >= 400);
    pacer_free(pacer);
}

struct deferrer {
    struct pacer *pacer;
    long long deferred_at;
};

static void *deferrer_run(void *arg)
{
    struct deferrer *d = arg;

    usleep(100 * 1000);
    d->deferred_at = now_ms();
    pacer_defer(d->pacer, 300);
    usleep(100 * 1000);
    pacer_release(d->pacer);
    return NULL;
}

/* A thread queued for a slot must also honour a deferral made meanwhile. */
static void test_slot_waiter_honours_later_deferral(void **state)
{
    struct pacer *pacer = pacer_new(1, NULL);
    struct deferrer d;
    pthread_t t;

    (void)state;
    assert_non_null(pacer);
    assert_int_equal(pacer_acquire(pacer), 0);
    d = (struct deferrer){pacer, 0};
    assert_int_equal(pthread_create(&t, NULL, deferrer_run, &d), 0);
    assert_int_equal(pacer_acquire(pacer), 0); /* waits for the release */
    assert_true(now_ms() - d.deferred_at >= 300);
    pthread_join(t, NULL);
    pacer_release(pacer);
    pacer_free(pacer);
}

static void test_sleep_is_this_thread_only(void **state)
{
    struct pacer *pacer = pacer_new(1, NULL);
    long long start = now_ms();

    (void)state;
    assert_non_null(pacer);
    assert_int_equal(pacer_sleep(pacer, 150), 0);
    assert_true(now_ms() - start >= 150);
    /* Sleeping did not defer anyone else. */
    start = now_ms();
    assert_int_equal(pacer_wait(pacer), 0);
    assert_true(now_ms() - start < 100);
    assert_int_equal(pacer_sleep(pacer, 0), 0);
    pacer_free(pacer);
}

static void test_cancel_wakes_waiters(void **state)
{
    struct pacer *pacer = pacer_new(1, NULL);
    struct waiter w[4];
    pthread_t t[4];
    long long start;

    (void)state;
    assert_non_null(pacer);
    /* One waiter of each kind: deferred wait, deferred acquire, sleep, and a
     * slot waiter (the slot is held by this thread). */
    assert_int_equal(pacer_acquire(pacer), 0);
    pacer_defer(pacer, 60000);
    w[0] = (struct waiter){pacer, 1, -1, 0};
    w[1] = (struct waiter){pacer, 3, -1, 0};
    w[2] = (struct waiter){pacer, 2, -1, 0};
    w[3] = (struct waiter){pacer, 3, -1, 0};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, waiter_run, &w[i]), 0);
    usleep(150 * 1000);
    start = now_ms();
    pacer_cancel(pacer);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].rc, -ECANCELED);
        assert_true(w[i].done_ms - start < 2000);
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
        cmocka_unit_test(test_defer_holds_all_threads),
        cmocka_unit_test(test_defer_keeps_later_time),
        cmocka_unit_test(test_slot_waiter_honours_later_deferral),
        cmocka_unit_test(test_sleep_is_this_thread_only),
        cmocka_unit_test(test_cancel_wakes_waiters),
        cmocka_unit_test(test_slot_bound_under_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
