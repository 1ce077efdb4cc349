/* Unit tests for buf: room made exactly for a size known ahead. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "batchfs/buf.h"
#include "failing_alloc.h"

static void test_reserve_exact(void **state)
{
    struct buf b = BUF_INIT;

    (void)state;
    assert_int_equal(buf_append(&b, "abc", 3), 0);
    assert_int_equal(buf_reserve_exact(&b, 1000), 0);
    /* Room for the bytes there, the 1000 asked for and the NUL: no more. */
    assert_int_equal(b.cap, 3 + 1000 + 1);
    assert_string_equal(b.data, "abc");
    /* Filling what was reserved does not move or grow the buffer. */
    for (int i = 0; i < 1000; i++)
        assert_int_equal(buf_append_char(&b, 'x'), 0);
    assert_int_equal(b.cap, 1004);
    assert_int_equal(b.len, 1003);
    /* Less than is there already: nothing changes. */
    assert_int_equal(buf_reserve_exact(&b, 0), 0);
    assert_int_equal(b.cap, 1004);
    buf_free(&b);
}

static void test_reserve_exact_overflow(void **state)
{
    struct buf b = BUF_INIT;

    (void)state;
    assert_int_equal(buf_append(&b, "a", 1), 0);
    assert_int_equal(buf_reserve_exact(&b, SIZE_MAX), -ENOMEM);
    assert_int_equal(b.len, 1);
    buf_free(&b);
}

static void test_reserve_exact_allocation_failure(void **state)
{
    struct buf b = BUF_INIT;
    size_t cap;

    (void)state;
    assert_int_equal(buf_append(&b, "abc", 3), 0);
    cap = b.cap;
    alloc_countdown = 0;
    assert_int_equal(buf_reserve_exact(&b, 4096), -ENOMEM);
    alloc_countdown = -1;
    /* Unchanged, and still usable. */
    assert_int_equal(b.cap, cap);
    assert_string_equal(b.data, "abc");
    assert_int_equal(buf_reserve_exact(&b, 4096), 0);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reserve_exact),
        cmocka_unit_test(test_reserve_exact_overflow),
        cmocka_unit_test(test_reserve_exact_allocation_failure),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
