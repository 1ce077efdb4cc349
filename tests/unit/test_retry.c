/*
 * Unit tests for retry: which outcomes are retried and how long to wait.
 * Pure functions, so every branch is reached with fixed clocks and draws.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "batchfs/retry.h"

/* 2024-01-01T00:00:00Z */
#define T0 ((time_t)1704067200)

static const struct retry_policy policy = RETRY_POLICY_DEFAULT;

static void test_status_classes(void **state)
{
    (void)state;
    assert_false(retry_is_retryable(200, 0, NULL));
    assert_false(retry_is_retryable(302, 0, NULL));
    assert_false(retry_is_retryable(400, 0, NULL));
    assert_false(retry_is_retryable(401, 0, NULL));
    assert_false(retry_is_retryable(403, 0, NULL));
    assert_false(retry_is_retryable(404, 0, NULL));
    assert_false(retry_is_retryable(422, 0, NULL));
    assert_true(retry_is_retryable(408, 0, NULL));
    assert_true(retry_is_retryable(409, 0, NULL));
    assert_true(retry_is_retryable(429, 0, NULL));
    assert_true(retry_is_retryable(500, 0, NULL));
    assert_true(retry_is_retryable(502, 0, NULL));
    assert_true(retry_is_retryable(503, 0, NULL));
    assert_true(retry_is_retryable(599, 0, NULL));
    assert_false(retry_is_retryable(600, 0, NULL));
}

static void test_transport_errors(void **state)
{
    (void)state;
    assert_true(retry_is_retryable(0, -ETIMEDOUT, NULL));
    assert_true(retry_is_retryable(0, -ECONNREFUSED, NULL));
    assert_true(retry_is_retryable(0, -ECONNRESET, NULL));
    assert_true(retry_is_retryable(0, -ECONNABORTED, NULL));
    assert_true(retry_is_retryable(0, -EPIPE, NULL));
    assert_true(retry_is_retryable(0, -EPROTO, NULL));
    assert_true(retry_is_retryable(0, -EIO, NULL));
    assert_false(retry_is_retryable(0, -EHOSTUNREACH, NULL));
    assert_false(retry_is_retryable(0, -EFBIG, NULL));
    assert_false(retry_is_retryable(0, -ECANCELED, NULL));
    assert_false(retry_is_retryable(0, -ENOMEM, NULL));
    assert_false(retry_is_retryable(0, 0, NULL));
}

static void test_should_retry_header(void **state)
{
    (void)state;
    assert_false(retry_is_retryable(503, 0, "false"));
    assert_false(retry_is_retryable(429, 0, " FALSE\t"));
    assert_true(retry_is_retryable(400, 0, "true"));
    assert_true(retry_is_retryable(404, 0, "True"));
    /* Unknown values are ignored: the status decides. */
    assert_true(retry_is_retryable(503, 0, "no"));
    assert_false(retry_is_retryable(404, 0, "yes"));
    assert_false(retry_is_retryable(404, 0, ""));
    assert_false(retry_is_retryable(404, 0, "truee"));
}

static void test_retry_after_ms(void **state)
{
    (void)state;
    assert_int_equal(retry_delay_ms(&policy, 0, "250", NULL, T0, 0.0), 250);
    assert_int_equal(retry_delay_ms(&policy, 3, " 100 ", "9", T0, 0.5), 100);
    /* Fractions round up. */
    assert_int_equal(retry_delay_ms(&policy, 0, "1.5", NULL, T0, 0.0), 2);
    assert_int_equal(retry_delay_ms(&policy, 0, "7.0", NULL, T0, 0.0), 7);
    assert_int_equal(retry_delay_ms(&policy, 0, ".5", NULL, T0, 0.0), 1);
    assert_int_equal(retry_delay_ms(&policy, 0, "0", NULL, T0, 0.0), 0);
    /* Clamped to the policy's maximum, including absurd lengths. */
    assert_int_equal(retry_delay_ms(&policy, 0, "86400000", NULL, T0, 0.0), 20000);
    assert_int_equal(
        retry_delay_ms(&policy, 0, "99999999999999999999999999999", NULL, T0, 0.0),
        20000);
}

static void test_retry_after_ms_garbage_falls_back(void **state)
{
    (void)state;
    /* Garbage ms: retry-after is used instead. */
    assert_int_equal(retry_delay_ms(&policy, 0, "-5", "2", T0, 0.0), 2000);
    assert_int_equal(retry_delay_ms(&policy, 0, "abc", "3", T0, 0.0), 3000);
    /* ...and without it, the backoff. */
    assert_int_equal(retry_delay_ms(&policy, 0, "", NULL, T0, 0.0), 500);
    assert_int_equal(retry_delay_ms(&policy, 0, "1e3", NULL, T0, 0.0), 500);
    assert_int_equal(retry_delay_ms(&policy, 0, "nan", NULL, T0, 0.0), 500);
    assert_int_equal(retry_delay_ms(&policy, 0, "inf", NULL, T0, 0.0), 500);
    assert_int_equal(retry_delay_ms(&policy, 0, "1.", NULL, T0, 0.0), 1);
    assert_int_equal(retry_delay_ms(&policy, 0, ".", NULL, T0, 0.0), 500);
    assert_int_equal(retry_delay_ms(&policy, 0, "1 2", NULL, T0, 0.0), 500);
}

static void test_retry_after_seconds(void **state)
{
    (void)state;
    assert_int_equal(retry_delay_ms(&policy, 0, NULL, "1", T0, 0.0), 1000);
    assert_int_equal(retry_delay_ms(&policy, 0, NULL, " 20 ", T0, 0.0), 20000);
    assert_int_equal(retry_delay_ms(&policy, 0, NULL, "0", T0, 0.0), 0);
    assert_int_equal(retry_delay_ms(&policy, 0, NULL, "86400", T0, 0.0), 20000);
    assert_int_equal(
        retry_delay_ms(&policy, 0, NULL, "999999999999999999999999", T0, 0.0), 20000);
    /* Not integer seconds, not a date: backoff. */
    assert_int_equal(retry_delay_ms(&policy, 1, NULL, "-1", T0, 0.0), 1000);
    assert_int_equal(retry_delay_ms(&policy, 1, NULL, "1.5", T0, 0.0), 1000);
    assert_int_equal(retry_delay_ms(&policy, 1, NULL, "soon", T0, 0.0), 1000);
    assert_int_equal(retry_delay_ms(&policy, 1, NULL, "", T0, 0.0), 1000);
}

static void test_retry_after_date(void **state)
{
    (void)state;
    /* IMF-fixdate 5 s ahead. */
    assert_int_equal(
        retry_delay_ms(&policy, 0, NULL, "Mon, 01 Jan 2024 00:00:05 GMT", T0, 0.0), 5000);
    /* RFC 850 and asctime forms. */
    assert_int_equal(
        retry_delay_ms(&policy, 0, NULL, "Monday, 01-Jan-24 00:00:07 GMT", T0, 0.0),
        7000);
    assert_int_equal(
        retry_delay_ms(&policy, 0, NULL, "Mon Jan  1 00:00:03 2024", T0, 0.0), 3000);
    /* Far future: clamped. */
    assert_int_equal(
        retry_delay_ms(&policy, 0, NULL, "Tue, 02 Jan 2024 00:00:00 GMT", T0, 0.0),
        20000);
    assert_int_equal(
        retry_delay_ms(&policy, 0, NULL, "Fri, 31 Dec 9999 23:59:59 GMT", T0, 0.0),
        20000);
    /* Now or in the past: the backoff, never a zero-wait spin. */
    assert_int_equal(
        retry_delay_ms(&policy, 2, NULL, "Mon, 01 Jan 2024 00:00:00 GMT", T0, 0.0), 2000);
    assert_int_equal(
        retry_delay_ms(&policy, 0, NULL, "Sun, 06 Nov 1994 08:49:37 GMT", T0, 0.0), 500);
}

static void test_parse_http_date(void **state)
{
    time_t t = 0;

    (void)state;
    assert_int_equal(retry_parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT", &t), 0);
    assert_int_equal(t, 784111777);
    assert_int_equal(retry_parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", &t), 0);
    assert_int_equal(t, 784111777);
    assert_int_equal(retry_parse_http_date("Sun Nov  6 08:49:37 1994", &t), 0);
    assert_int_equal(t, 784111777);
    assert_int_equal(retry_parse_http_date("Sun Nov 16 08:49:37 1994", &t), 0);
    assert_int_equal(t, 784111777 + 10 * 86400);
    assert_int_equal(retry_parse_http_date(" Sun, 06 Nov 1994 08:49:37 GMT\t", &t), 0);

    assert_int_equal(retry_parse_http_date("", &t), -EINVAL);
    assert_int_equal(retry_parse_http_date("Sun, 06 Nov 1994 08:49:37", &t), -EINVAL);
    assert_int_equal(retry_parse_http_date("Sun, 06 Nov 1994 08:49:37 UTC", &t), -EINVAL);
    assert_int_equal(retry_parse_http_date("Sun, 6 Nov 1994 08:49:37 GMT", &t), -EINVAL);
    assert_int_equal(retry_parse_http_date("Sun, 06 Nox 1994 08:49:37 GMT", &t), -EINVAL);
    assert_int_equal(retry_parse_http_date("Sun, 31 Feb 1994 08:49:37 GMT", &t), -EINVAL);
    assert_int_equal(retry_parse_http_date("Sun, 06 Nov 1994 24:00:00 GMT", &t), -EINVAL);
    assert_int_equal(retry_parse_http_date("Sun, 06 Nov 1994 08:60:00 GMT", &t), -EINVAL);
    assert_int_equal(retry_parse_http_date("Sun, 00 Nov 1994 08:00:00 GMT", &t), -EINVAL);
    assert_int_equal(retry_parse_http_date("Sun, 06 Nov 1994 08:49:37 GMTx", &t),
                     -EINVAL);
    assert_int_equal(retry_parse_http_date("Sunday, 06 Nov 1994 08:49:37 GMT", &t),
                     -EINVAL);
    assert_int_equal(retry_parse_http_date("Sunday Nov  6 08:49:37 1994", &t), -EINVAL);
    assert_int_equal(retry_parse_http_date("Xyz, 06 Nov 1994 08:49:37 GMT", &t), -EINVAL);
}

static void test_backoff_and_cap(void **state)
{
    (void)state;
    assert_int_equal(retry_delay_ms(&policy, 0, NULL, NULL, T0, 0.0), 500);
    assert_int_equal(retry_delay_ms(&policy, 1, NULL, NULL, T0, 0.0), 1000);
    assert_int_equal(retry_delay_ms(&policy, 2, NULL, NULL, T0, 0.0), 2000);
    assert_int_equal(retry_delay_ms(&policy, 3, NULL, NULL, T0, 0.0), 4000);
    assert_int_equal(retry_delay_ms(&policy, 4, NULL, NULL, T0, 0.0), 8000);
    assert_int_equal(retry_delay_ms(&policy, 5, NULL, NULL, T0, 0.0), 8000);
    assert_int_equal(retry_delay_ms(&policy, 1000, NULL, NULL, T0, 0.0), 8000);
    assert_int_equal(retry_delay_ms(&policy, UINT32_MAX, NULL, NULL, T0, 0.0), 8000);
    /* A NULL policy means the defaults. */
    assert_int_equal(retry_delay_ms(NULL, 2, NULL, NULL, T0, 0.0), 2000);
    assert_int_equal(retry_delay_ms(NULL, 0, NULL, "86400", T0, 0.0), 20000);
}

static void test_jitter_bounds(void **state)
{
    (void)state;
    /* Up to 25 % off, never more, never added. */
    assert_int_equal(retry_delay_ms(&policy, 4, NULL, NULL, T0, 0.5), 7000);
    for (int i = 0; i < 100; i++) {
        double r = i / 100.0;
        long d = retry_delay_ms(&policy, 4, NULL, NULL, T0, r);

        assert_in_range(d, 6000, 8000);
        d = retry_delay_ms(&policy, 0, NULL, NULL, T0, r);
        assert_in_range(d, 375, 500);
    }
    assert_true(retry_delay_ms(&policy, 4, NULL, NULL, T0, 0.999999) > 6000);
    /* Out-of-range draws are pinned rather than trusted. */
    assert_int_equal(retry_delay_ms(&policy, 4, NULL, NULL, T0, -3.0), 8000);
    assert_int_equal(retry_delay_ms(&policy, 4, NULL, NULL, T0, 7.0), 6000);
    /* Server-asked waits carry no jitter. */
    assert_int_equal(retry_delay_ms(&policy, 0, "300", NULL, T0, 0.9), 300);
}

static void test_custom_policy(void **state)
{
    const struct retry_policy small = {10, 40, 1000};
    const struct retry_policy zero = {0, 0, 0};

    (void)state;
    assert_int_equal(retry_delay_ms(&small, 0, NULL, NULL, T0, 0.0), 10);
    assert_int_equal(retry_delay_ms(&small, 3, NULL, NULL, T0, 0.0), 40);
    assert_int_equal(retry_delay_ms(&small, 0, NULL, "5", T0, 0.0), 1000);
    assert_int_equal(retry_delay_ms(&zero, 3, "50", NULL, T0, 0.0), 0);
    assert_int_equal(retry_delay_ms(&zero, 3, NULL, NULL, T0, 0.5), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_classes),
        cmocka_unit_test(test_transport_errors),
        cmocka_unit_test(test_should_retry_header),
        cmocka_unit_test(test_retry_after_ms),
        cmocka_unit_test(test_retry_after_ms_garbage_falls_back),
        cmocka_unit_test(test_retry_after_seconds),
        cmocka_unit_test(test_retry_after_date),
        cmocka_unit_test(test_parse_http_date),
        cmocka_unit_test(test_backoff_and_cap),
        cmocka_unit_test(test_jitter_bounds),
        cmocka_unit_test(test_custom_policy),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
