/*
 * Unit tests for pacer: the shared back-off clock. The clock is passed in
 * (the *_at forms), so no test waits; one test moves it from many threads
 * at once (for ThreadSanitizer). What the pacer once did with threads of
 * its own — bounding requests in flight, cancelling waiters, sleeping one
 * thread's retry — is the engine's now, tested in test_http.c (bounds,
 * cancels, retry timers, a throttle holding every start).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "batchfs/pacer.h"

static void test_new_has_nothing_to_wait_for(void **state)
{
    int err = -1;
    struct pacer *pacer = pacer_new(&err);

    (void)state;
    assert_non_null(pacer);
    assert_int_equal(err, 0);
    assert_int_equal(pacer_remaining_at(pacer, 0), 0);
    assert_int_equal(pacer_remaining_ms(pacer), 0);
    pacer_free(pacer);
    pacer_free(NULL);
}

static void test_defer_holds_until_resume_at(void **state)
{
    struct pacer *pacer = pacer_new(NULL);

    (void)state;
    pacer_defer_at(pacer, 1000, 300);
    assert_int_equal(pacer_remaining_at(pacer, 1000), 300);
    assert_int_equal(pacer_remaining_at(pacer, 1299), 1);
    assert_int_equal(pacer_remaining_at(pacer, 1300), 0);
    assert_int_equal(pacer_remaining_at(pacer, 5000), 0);
    pacer_free(pacer);
}

static void test_defer_keeps_later_time(void **state)
{
    struct pacer *pacer = pacer_new(NULL);

    (void)state;
    pacer_defer_at(pacer, 1000, 400);
    pacer_defer_at(pacer, 1100, 50); /* must not pull resume_at earlier */
    assert_int_equal(pacer_remaining_at(pacer, 1100), 300);
    pacer_defer_at(pacer, 1200, 500); /* a later one moves it on */
    assert_int_equal(pacer_remaining_at(pacer, 1200), 500);
    pacer_free(pacer);
}

static void test_non_positive_defer_does_nothing(void **state)
{
    struct pacer *pacer = pacer_new(NULL);

    (void)state;
    pacer_defer_at(pacer, 1000, 0);
    pacer_defer_at(pacer, 1000, -5);
    assert_int_equal(pacer_remaining_at(pacer, 1000), 0);
    pacer_free(pacer);
}

static void test_real_clock_defer_is_seen(void **state)
{
    struct pacer *pacer = pacer_new(NULL);
    long left;

    (void)state;
    pacer_defer(pacer, 60000);
    left = pacer_remaining_ms(pacer);
    assert_true(left > 50000 && left <= 60001);
    pacer_free(pacer);
}

#define DEFER_THREADS 8

struct deferrer {
    struct pacer *pacer;
    long ms;
};

static void *deferrer_run(void *arg)
{
    struct deferrer *d = arg;

    for (int i = 0; i < 1000; i++) {
        pacer_defer_at(d->pacer, 1000, d->ms);
        (void)pacer_remaining_at(d->pacer, 1000);
    }
    return NULL;
}

/* One clock for all: whichever thread deferred longest wins. */
static void test_defer_from_many_threads(void **state)
{
    struct pacer *pacer = pacer_new(NULL);
    struct deferrer d[DEFER_THREADS];
    pthread_t t[DEFER_THREADS];

    (void)state;
    for (int i = 0; i < DEFER_THREADS; i++) {
        d[i] = (struct deferrer){pacer, 100 * (i + 1)};
        assert_int_equal(pthread_create(&t[i], NULL, deferrer_run, &d[i]), 0);
    }
    for (int i = 0; i < DEFER_THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(pacer_remaining_at(pacer, 1000), 100 * DEFER_THREADS);
    pacer_free(pacer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_has_nothing_to_wait_for),
        cmocka_unit_test(test_defer_holds_until_resume_at),
        cmocka_unit_test(test_defer_keeps_later_time),
        cmocka_unit_test(test_non_positive_defer_does_nothing),
        cmocka_unit_test(test_real_clock_defer_is_seen),
        cmocka_unit_test(test_defer_from_many_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
