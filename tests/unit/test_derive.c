/*
 * Unit tests of the aggregate files (fs/derive.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "batchfs/buf.h"
#include "batchfs/catalog.h"
#include "batchfs/derive.h"

/* A listing of `n` items given by pretty JSON text, named by id, with API
 * positions in the order given. */
static struct listing *make_listing(const char *const *objects, const char *const *ids,
                                    const size_t *api_index, size_t n)
{
    struct listing *l = calloc(1, sizeof(*l));

    assert_non_null(l);
    l->refs = 1;
    l->entries = calloc(n, sizeof(*l->entries));
    l->count = n;
    for (size_t i = 0; i < n; i++) {
        /* One block: "<id>.json", NUL, then the id (see struct entry). */
        size_t len = strlen(ids[i]);

        l->entries[i].name = malloc(2 * len + 7);
        assert_non_null(l->entries[i].name);
        strcpy(l->entries[i].name, ids[i]);
        strcat(l->entries[i].name, ".json");
        l->entries[i].id = l->entries[i].name + len + 6;
        strcpy(l->entries[i].id, ids[i]);
        l->entries[i].content = blob_new(objects[i], strlen(objects[i]));
        l->entries[i].api_index = api_index[i];
    }
    return l;
}

static void test_ndjson_in_api_order(void **state)
{
    const char *objects[] = {"{\n  \"item_id\": \"a\",\n  \"n\": 1.50\n}\n",
                             "{\n  \"item_id\": \"b\",\n  \"x\": [\n    null\n  ]\n}\n"};
    const char *ids[] = {"a", "b"};
    const size_t order[] = {1, 0}; /* the API gave b first */
    struct listing *l = make_listing(objects, ids, order, 2);
    const struct listing *lists[] = {l};
    struct buf out = BUF_INIT;

    (void)state;
    assert_int_equal(derive_ndjson(lists, 1, &out), 0);
    assert_int_equal(out.len, strlen("{\"item_id\":\"b\",\"x\":[null]}\n"
                                     "{\"item_id\":\"a\",\"n\":1.50}\n"));
    assert_memory_equal(out.data,
                        "{\"item_id\":\"b\",\"x\":[null]}\n{\"item_id\":\"a\",\"n\":1.50}\n",
                        out.len);
    buf_free(&out);
    listing_release(l);
}

static void test_errors_tsv_escapes(void **state)
{
    const char *objects[] = {
        "{\"item_id\": \"i1\", \"error_message\": \"Timeout\\tat page 3\\nretry \\\\ later\"}",
        "{\"item_id\": \"i2\", \"error_message\": null}",
        "{\"item_id\": \"i3\", \"error_message\": \"\"}",
        "{\"item_id\": \"i4\", \"error_message\": \"bad\\u0000byte\"}",
    };
    const char *ids[] = {"i1", "i2", "i3", "i4"};
    const size_t order[] = {0, 1, 2, 3};
    struct listing *l = make_listing(objects, ids, order, 4);
    const struct listing *lists[] = {l};
    struct buf out = BUF_INIT;
    const char *want = "i1\ti1\tTimeout\\tat page 3\\nretry \\\\ later\n"
                       "i4\ti4\tbad\\0byte\n";

    (void)state;
    assert_int_equal(derive_errors_tsv(lists, 1, &out), 0);
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.data, want, out.len);
    buf_free(&out);
    listing_release(l);
}

static void test_progress_line(void **state)
{
    struct buf out = BUF_INIT;

    (void)state;
    assert_int_equal(derive_progress("running", 100, 93, 2, 1, &out), 0);
    assert_int_equal(out.len, strlen("running 93/100 failed 2 skipped 1 93% [#########.]\n"));
    assert_memory_equal(out.data, "running 93/100 failed 2 skipped 1 93% [#########.]\n",
                        out.len);
    buf_reset(&out);
    /* Nothing to do is done; counters beyond the total do not pass 100 %;
     * a hostile status stays on one line. */
    assert_int_equal(derive_progress(NULL, 0, 0, 0, 0, &out), 0);
    assert_string_equal(out.data, "unknown 0/0 failed 0 skipped 0 100% [##########]\n");
    buf_reset(&out);
    assert_int_equal(derive_progress("a\nb", 10, 12, 0, 0, &out), 0);
    assert_string_equal(out.data, "a\\nb 12/12 failed 0 skipped 0 100% [##########]\n");
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ndjson_in_api_order),
        cmocka_unit_test(test_errors_tsv_escapes),
        cmocka_unit_test(test_progress_line),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
