/*
 * Unit tests of blobs (fs/blob.c): held bytes, made bytes, reads by range.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "batchfs/blob.h"
#include "batchfs/buf.h"

static void test_held_blob(void **state)
{
    struct blob *a = blob_new("abc", 3), *b = blob_new("abc", 3), *c = blob_new("abd", 3);
    struct buf scratch = BUF_INIT;
    const char *bytes;

    (void)state;
    assert_non_null(a);
    assert_int_equal(a->len, 3);
    assert_int_equal(a->data[3], '\0');
    assert_ptr_equal(blob_bytes(a), a->data);
    assert_true(a->digest == b->digest);
    assert_true(a->digest != c->digest);
    assert_ptr_equal(blob_ref(a), a);
    blob_unref(a);
    /* Reads are clipped to the end and point into the blob itself. */
    assert_int_equal(blob_read(a, 1, 100, &scratch, &bytes), 2);
    assert_ptr_equal(bytes, a->data + 1);
    assert_int_equal(blob_read(a, 3, 10, &scratch, &bytes), 0);
    assert_int_equal(blob_read(a, 99, 10, &scratch, &bytes), 0);
    assert_null(scratch.data);
    blob_unref(a);
    blob_unref(b);
    blob_unref(c);
}

/* A made content: byte i is 'a' + i % 26; `lie` makes it one byte short. */
struct alphabet {
    int lie;
    int freed;
};

static int alphabet_make(const void *state, size_t off, size_t size, struct buf *out)
{
    const struct alphabet *alpha = state;
    int rc = 0;

    if (alpha->lie)
        size--;
    for (size_t i = off; i < off + size && !rc; i++)
        rc = buf_append_char(out, (char)('a' + i % 26));
    return rc;
}

static void alphabet_free(void *state)
{
    ((struct alphabet *)state)->freed++;
}

static const struct blob_maker alphabet_maker = {alphabet_make, alphabet_free};

static void test_made_blob(void **state)
{
    struct alphabet alpha = {0, 0};
    struct blob *blob = blob_new_made(&alphabet_maker, &alpha, 100, 42);
    struct buf scratch = BUF_INIT;
    const char *bytes;

    (void)state;
    assert_non_null(blob);
    assert_null(blob_bytes(blob));
    assert_int_equal(blob->len, 100);
    assert_true(blob->digest == 42);
    assert_int_equal(blob_read(blob, 25, 3, &scratch, &bytes), 3);
    assert_memory_equal(bytes, "zab", 3);
    /* Clipped to the length: the maker is never asked for more. */
    assert_int_equal(blob_read(blob, 98, 50, &scratch, &bytes), 2);
    assert_memory_equal(bytes, "uv", 2);
    assert_int_equal(blob_read(blob, 100, 1, &scratch, &bytes), 0);
    /* A maker that hands back the wrong number of bytes is an I/O error,
     * never a short read that would look like the end of the file. */
    alpha.lie = 1;
    assert_int_equal(blob_read(blob, 0, 10, &scratch, &bytes), -EIO);
    buf_free(&scratch);
    blob_ref(blob);
    blob_unref(blob);
    assert_int_equal(alpha.freed, 0);
    blob_unref(blob);
    assert_int_equal(alpha.freed, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_held_blob),
        cmocka_unit_test(test_made_blob),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
