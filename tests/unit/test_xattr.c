/*
 * Unit tests of the extended attributes read from objects (fs/xattr.c).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

static void test_item(void **state)
{
    const char *item = "{\"item_id\": \"itm-1\", \"status\": \"failed\", "
                       "\"error_message\": \"Timeout\\u0000x\", \"job_id\": null}";
    const char want_list[] = "user.llamacloud.id\0user.llamacloud.status\0"
                             "user.llamacloud.error_message";
    struct buf out = BUF_INIT;

    (void)state;
    assert_int_equal(xattr_list(XATTR_ITEM, item, strlen(item), &out), 0);
    assert_int_equal(out.len, sizeof(want_list)); /* job_id is null: not listed */
    assert_memory_equal(out.data, want_list, out.len);
    buf_reset(&out);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_item),
        cmocka_unit_test(test_result_and_job),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
