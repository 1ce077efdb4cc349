/*
 * Unit tests of the extended attributes read from objects (fs/xattr.c).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "batchfs/buf.h"
#include "batchfs/xattr.h"

static void test_names(void **state)
{
    (void)state;
    assert_int_equal(xattr_check_name("user.llamacloud.id"), 0);
    assert_int_equal(xattr_check_name("user.llamacloud.job_id"), 0);
    assert_int_equal(xattr_check_name("user.llamacloud.other"), -ENODATA);
    assert_int_equal(xattr_check_name("user.llamacloud."), -ENODATA);
    assert_int_equal(xattr_check_name("user.mime_type"), -ENODATA);
    assert_int_equal(xattr_check_name("security.selinux"), -EOPNOTSUPP);
    assert_int_equal(xattr_check_name("system.posix_acl_access"), -EOPNOTSUPP);
    assert_int_equal(xattr_check_name(""), -EOPNOTSUPP);
}

/* The attribute names xattr_list gives the object `text` are want[0, len). */
static void assert_listed(enum xattr_object kind, const char *text, const char *want,
                          size_t len)
{
    struct buf out = BUF_INIT;

    assert_int_equal(xattr_list(kind, text, strlen(text), &out), 0);
    assert_int_equal(out.len, len);
    assert_memory_equal(out.data, want, len);
    buf_free(&out);
}

static void test_item(void **state)
{
    const char *item = "{\"item_id\": \"itm-1\", \"status\": \"failed\", "
                       "\"error_message\": \"Timeout\\u0000x\", \"job_id\": null}";
    const char want_list[] = "user.llamacloud.id\0user.llamacloud.status\0"
                             "user.llamacloud.error_message";
    struct buf out = BUF_INIT;

    (void)state;
    assert_listed(XATTR_ITEM, item, want_list, sizeof(want_list)); /* job_id null: none */
    assert_int_equal(xattr_get(XATTR_ITEM, item, strlen(item), "user.llamacloud.id", &out), 0);
    assert_string_equal(out.data, "itm-1");
    buf_reset(&out);
    /* Values are bytes: an escaped NUL stays in them. */
    assert_int_equal(
        xattr_get(XATTR_ITEM, item, strlen(item), "user.llamacloud.error_message", &out), 0);
    assert_int_equal(out.len, 9);
    assert_memory_equal(out.data, "Timeout\0x", 9);
    buf_reset(&out);
    assert_int_equal(xattr_get(XATTR_ITEM, item, strlen(item), "user.llamacloud.job_id", &out),
                     -ENODATA);
    assert_int_equal(xattr_get(XATTR_ITEM, item, strlen(item), "trusted.x", &out), -EOPNOTSUPP);
    buf_free(&out);
}

static void test_result_and_job(void **state)
{
    const char *result = "{\"source_directory_file_id\": \"sdf-9\", \"id\": \"not-this\", "
                         "\"job_reference\": {\"id\": \"pjb-7\"}}";
    const char *job = "{\"id\": \"bjb-3\", \"status\": \"running\"}";
    struct buf out = BUF_INIT;

    (void)state;
    assert_int_equal(xattr_get(XATTR_RESULT, result, strlen(result), "user.llamacloud.id", &out),
                     0);
    assert_string_equal(out.data, "sdf-9");
    buf_reset(&out);
    assert_int_equal(
        xattr_get(XATTR_RESULT, result, strlen(result), "user.llamacloud.job_id", &out), 0);
    assert_string_equal(out.data, "pjb-7");
    buf_reset(&out);
    assert_int_equal(xattr_get(XATTR_OTHER, job, strlen(job), "user.llamacloud.id", &out), 0);
    assert_string_equal(out.data, "bjb-3");
    buf_reset(&out);
    /* Text that is not an object has no attributes. */
    assert_int_equal(xattr_list(XATTR_OTHER, "[1]", 3, &out), 0);
    assert_int_equal(out.len, 0);
    assert_int_equal(xattr_get(XATTR_OTHER, "{", 1, "user.llamacloud.id", &out), -ENODATA);
    buf_free(&out);
}

/* Strings that are not Unicode cost no attribute: the value is the bytes as
 * decoded (raw bytes as sent, an unpaired surrogate escape as ED A0 80). */
static void test_not_unicode(void **state)
{
    const char *item =
        "{\"item_id\": \"itm-1\", \"item_name\": \"bad\xff\", "
        "\"status\": \"failed\", \"error_message\": \"at \xc0\xaf\\ud800!\"}";
    const char want_list[] = "user.llamacloud.id\0user.llamacloud.status\0"
                             "user.llamacloud.error_message";
    struct buf out = BUF_INIT;

    (void)state;
    assert_listed(XATTR_ITEM, item, want_list, sizeof(want_list));
    assert_int_equal(
        xattr_get(XATTR_ITEM, item, strlen(item), "user.llamacloud.error_message", &out),
        0);
    assert_int_equal(out.len, 9);
    assert_memory_equal(out.data, "at \xc0\xaf\xed\xa0\x80!", 9);
    buf_free(&out);
}

/* An object whose error_message is `size` bytes, written with `unit` (its
 * JSON text) repeated; the caller frees it. */
static char *object_with_message(const char *unit, size_t repeat)
{
    const char *head = "{\"id\": \"bjb-1\", \"error_message\": \"", *tail = "\"}";
    size_t unit_len = strlen(unit), len = strlen(head) + repeat * unit_len + strlen(tail);
    char *text = malloc(len + 1), *p = text;

    assert_non_null(text);
    p = stpcpy(p, head);
    for (size_t i = 0; i < repeat; i++)
        p = stpcpy(p, unit);
    strcpy(p, tail);
    return text;
}

/* A value getxattr(2) cannot return (over 64 KiB) is neither listed nor
 * given; one of exactly 64 KiB is both, whole. */
static void test_value_too_big_to_read(void **state)
{
    static const struct {
        const char *unit;
        size_t repeat, bytes;
        bool shown;
    } cases[] = {
        {"x", 65536, 65536, true},
        {"x", 65537, 65537, false},
        {"x", 100 * 1024, 100 * 1024, false},
        {"\\u0041", 65536, 65536, true}, /* 384 KiB of text */
        {"\\u0041", 65537, 65537, false},
        {"\\u0041\\u0041", 65537, 131074, false}, /* beyond the text bound */
        {"\\ud83d\\ude00", 16384, 65536, true},   /* 4 bytes from 12 of text */
    };
    const char attr[] = "user.llamacloud.error_message";
    struct buf out = BUF_INIT;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *text = object_with_message(cases[i].unit, cases[i].repeat);
        size_t len = strlen(text);

        buf_reset(&out);
        assert_int_equal(xattr_list(XATTR_OTHER, text, len, &out), 0);
        assert_int_equal(memmem(out.data, out.len, attr, sizeof(attr)) != NULL,
                         cases[i].shown);
        buf_reset(&out);
        assert_int_equal(xattr_get(XATTR_OTHER, text, len, attr, &out),
                         cases[i].shown ? 0 : -ENODATA);
        assert_int_equal(out.len, cases[i].shown ? cases[i].bytes : 0);
        free(text);
    }
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_item),
        cmocka_unit_test(test_result_and_job),
        cmocka_unit_test(test_not_unicode),
        cmocka_unit_test(test_value_too_big_to_read),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
