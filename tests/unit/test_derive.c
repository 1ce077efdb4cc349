/*
 * Unit tests of the aggregate files (fs/derive.c).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "batchfs/bigmem.h"
#include "batchfs/buf.h"
#include "batchfs/catalog.h"
#include "batchfs/derive.h"
#include "batchfs/jsontext.h"

/* A listing of `n` items given by pretty JSON text, named by id, with API
 * positions in the order given. */
static struct listing *make_listing(const char *const *objects, const char *const *ids,
                                    const size_t *api_index, size_t n)
{
    struct listing *l = calloc(1, sizeof(*l));
    size_t size = 1;
    char *at;

    assert_non_null(l);
    l->refs = 1;
    /* Entries named otherwise than by their ids, as a batch's results. */
    l->kind = LISTING_BATCH;
    l->entries = bigmem_calloc(n ? n : 1, sizeof(*l->entries));
    l->ids = bigmem_calloc(n ? n : 1, sizeof(*l->ids));
    l->count = n;
    for (size_t i = 0; i < n; i++)
        size += 2 * strlen(ids[i]) + 7;
    /* The listing's one block of strings (see struct listing). */
    at = l->strings = bigmem_resize(NULL, size);
    assert_non_null(at);
    for (size_t i = 0; i < n; i++) {
        /* "<id>.json", NUL, then the id. */
        size_t len = strlen(ids[i]);

        l->entries[i].name = at;
        at += 2 * len + 7;
        strcpy(l->entries[i].name, ids[i]);
        strcat(l->entries[i].name, ".json");
        strcpy(l->entries[i].name + len + 6, ids[i]);
        l->ids[i] = l->entries[i].name + len + 6;
        l->entries[i].content = blob_new(objects[i], strlen(objects[i]));
        l->entries[i].api_index = api_index[i];
    }
    return l;
}

/* The whole content of a blob, read in pieces of `step` bytes. */
static void read_all(const struct blob *blob, size_t step, struct buf *out)
{
    struct buf scratch = BUF_INIT;
    const char *bytes;
    long n;

    buf_reset(out);
    for (size_t off = 0;; off += (size_t)n) {
        n = blob_read(blob, off, step, &scratch, &bytes);
        assert_true(n >= 0);
        if (n == 0)
            break;
        assert_true((size_t)n <= step);
        assert_int_equal(buf_append(out, bytes, (size_t)n), 0);
    }
    buf_free(&scratch);
}

static void test_ndjson_in_api_order(void **state)
{
    const char *objects[] = {"{\n  \"item_id\": \"a\",\n  \"n\": 1.50\n}\n",
                             "{\n  \"item_id\": \"b\",\n  \"x\": [\n    null\n  ]\n}\n"};
    const char *ids[] = {"a", "b"};
    const size_t order[] = {1, 0}; /* the API gave b first */
    const char *want = "{\"item_id\":\"b\",\"x\":[null]}\n{\"item_id\":\"a\",\"n\":1.50}\n";
    struct listing *l = make_listing(objects, ids, order, 2);
    struct blob *blob;
    struct buf out = BUF_INIT;
    size_t bytes;

    (void)state;
    assert_int_equal(derive_ndjson(&l, 1, &blob, &bytes), 0);
    /* The file keeps the listing it reads from. */
    listing_release(l);
    assert_null(blob_bytes(blob));
    assert_int_equal(blob_len(blob), strlen(want));
    assert_true(bytes > 0 && bytes < 200);
    /* Every way of cutting it into reads gives the same bytes. */
    for (size_t step = 1; step <= blob_len(blob) + 1; step++) {
        read_all(blob, step, &out);
        assert_int_equal(out.len, strlen(want));
        assert_memory_equal(out.data, want, out.len);
    }
    buf_free(&out);
    blob_unref(blob);
}

static void test_ndjson_across_listings(void **state)
{
    const char *first[] = {"{\"item_id\": \"p1\"}", "{\"item_id\": \"p2\", \"s\": \"a b\"}"};
    const char *first_ids[] = {"p1", "p2"};
    const char *second[] = {"{ \"item_id\" : \"c1\" }"};
    const char *second_ids[] = {"c1"};
    const size_t order[] = {0, 1};
    const char *want = "{\"item_id\":\"p1\"}\n{\"item_id\":\"p2\",\"s\":\"a b\"}\n"
                       "{\"item_id\":\"c1\"}\n";
    struct listing *lists[3];
    struct blob *blob, *again, *other;
    struct buf out = BUF_INIT, scratch = BUF_INIT;
    const char *bytes;
    size_t held;

    (void)state;
    lists[0] = make_listing(first, first_ids, order, 2);
    lists[1] = make_listing(NULL, NULL, NULL, 0); /* an empty status */
    lists[2] = make_listing(second, second_ids, order, 1);
    assert_int_equal(derive_ndjson(lists, 3, &blob, &held), 0);
    read_all(blob, 7, &out);
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.data, want, out.len);
    /* A read from the middle of a line, across two listings. */
    assert_int_equal(blob_read(blob, 40, 20, &scratch, &bytes), 20);
    assert_memory_equal(bytes, want + 40, 20);
    /* The same listings give the same digest; others another. */
    assert_int_equal(derive_ndjson(lists, 3, &again, &held), 0);
    assert_true(again->digest == blob->digest);
    assert_int_equal(derive_ndjson(lists, 2, &other, &held), 0);
    assert_true(other->digest != blob->digest);
    for (int i = 0; i < 3; i++)
        listing_release(lists[i]);
    read_all(other, 1000, &out);
    assert_int_equal(out.len, strlen(want) - strlen("{\"item_id\":\"c1\"}\n"));
    blob_unref(blob);
    blob_unref(again);
    blob_unref(other);
    buf_free(&out);
    buf_free(&scratch);
}

/* A pager whose bytes can never be had: reading through it fails. */
static int unreachable_pin(void *state, const char **bytes)
{
    (void)state;
    *bytes = NULL;
    return -ETIMEDOUT;
}

static void unreachable_unpin(void *state)
{
    (void)state;
}

static void unreachable_free(void *state)
{
    (void)state;
}

static const struct blob_pager unreachable = {.pin = unreachable_pin,
                                              .unpin = unreachable_unpin,
                                              .free = unreachable_free};

/* Lines measured when listed size items.ndjson without the items' text:
 * its size needs no page, even one that cannot be fetched; its bytes do,
 * and reading them gives the page's error. A line not measured is
 * measured from the text. */
/* Lines past the first offsets kept (one every 64 lines), in two lists:
 * every read, from every offset, finds its line. */
static void test_ndjson_many_lines(void **state)
{
    enum { FIRST = 150, SECOND = 70 };
    char text[FIRST + SECOND][64];
    const char *objects[FIRST + SECOND], *ids[FIRST + SECOND];
    size_t order[FIRST + SECOND];
    struct listing *lists[2];
    struct buf want = BUF_INIT, out = BUF_INIT;
    struct blob *blob;
    size_t bytes;

    (void)state;
    for (size_t i = 0; i < FIRST + SECOND; i++) {
        /* Lines of 12 to 45 bytes, so that no two runs of them line up. */
        snprintf(text[i], sizeof(text[i]), "{\"item_id\": \"%zu%.*s\"}", i,
                 (int)(i * 7 % 31), "abcdefghijklmnopqrstuvwxyz01234");
        objects[i] = text[i];
        ids[i] = text[i] + 13;
        order[i] = i < FIRST ? FIRST - 1 - i : i - FIRST; /* the first in reverse */
    }
    lists[0] = make_listing(objects, ids, order, FIRST);
    lists[1] = make_listing(objects + FIRST, ids + FIRST, order + FIRST, SECOND);
    for (size_t i = 0; i < FIRST + SECOND; i++) {
        size_t at = i < FIRST ? FIRST - 1 - i : i;
        assert_int_equal(jsontext_compact(text[at], strlen(text[at]), &want), 0);
        assert_int_equal(buf_append_char(&want, '\n'), 0);
    }
    assert_int_equal(derive_ndjson(lists, 2, &blob, &bytes), 0);
    listing_release(lists[0]);
    listing_release(lists[1]);
    assert_int_equal(blob_len(blob), want.len);
    assert_true(bytes < 16 * (FIRST + SECOND)); /* 8 bytes a line and a little */
    for (size_t step = 1; step <= 130; step += 43) {
        read_all(blob, step, &out);
        assert_int_equal(out.len, want.len);
        assert_memory_equal(out.data, want.data, out.len);
    }
    buf_free(&want);
    buf_free(&out);
    blob_unref(blob);
}

/* Listings in the API's order with their lines measured, as fetched items
 * are, make the same file from every offset, keeping nothing a line: only
 * the offset of every 64th. */
static void test_ndjson_in_place(void **state)
{
    enum { FIRST = 150, SECOND = 70 };
    char text[FIRST + SECOND][64];
    const char *objects[FIRST + SECOND], *ids[FIRST + SECOND];
    size_t order[FIRST + SECOND];
    struct listing *lists[2];
    struct buf want = BUF_INIT, out = BUF_INIT, scratch = BUF_INIT;
    struct blob *blob;
    const char *bytes;
    size_t held, mark;

    (void)state;
    for (size_t i = 0; i < FIRST + SECOND; i++) {
        snprintf(text[i], sizeof(text[i]), "{ \"item_id\": \"%zu%.*s\" }", i,
                 (int)(i * 7 % 31), "abcdefghijklmnopqrstuvwxyz01234");
        objects[i] = text[i];
        ids[i] = text[i] + 14;
        order[i] = i < FIRST ? i : i - FIRST;
    }
    lists[0] = make_listing(objects, ids, order, FIRST);
    lists[1] = make_listing(objects + FIRST, ids + FIRST, order + FIRST, SECOND);
    for (size_t i = 0; i < FIRST + SECOND; i++) {
        struct listing *l = lists[i < FIRST ? 0 : 1];

        mark = want.len;
        assert_int_equal(jsontext_compact(text[i], strlen(text[i]), &want), 0);
        l->entries[i < FIRST ? i : i - FIRST].line_len = (uint32_t)(want.len - mark);
        assert_int_equal(buf_append_char(&want, '\n'), 0);
    }
    assert_int_equal(derive_ndjson(lists, 2, &blob, &held), 0);
    listing_release(lists[0]);
    listing_release(lists[1]);
    assert_int_equal(blob_len(blob), want.len);
    assert_true(held < 200); /* nothing a line */
    for (size_t step = 1; step <= 130; step += 43) {
        read_all(blob, step, &out);
        assert_int_equal(out.len, want.len);
        assert_memory_equal(out.data, want.data, out.len);
    }
    for (size_t off = 0; off < want.len; off++) {
        long n = blob_read(blob, off, 50, &scratch, &bytes);

        assert_int_equal(n, want.len - off < 50 ? want.len - off : 50);
        assert_memory_equal(bytes, want.data + off, (size_t)n);
    }
    blob_unref(blob);
    buf_free(&want);
    buf_free(&out);
    buf_free(&scratch);
}

/* A file of a big folder keeps its lines' index in bigmem's blocks, whose
 * freeing gives the memory back (bigmem.h), and makes it in one pass over
 * an order that is bigmem's too. */
static void test_ndjson_index_of_a_big_folder(void **state)
{
    enum { N = 40000 };
    const char **objects = calloc(N, sizeof(*objects)), **ids = calloc(N, sizeof(*ids));
    size_t *order = calloc(N, sizeof(*order)), bytes, mapped;
    struct listing *l;
    struct blob *blob;

    (void)state;
    assert_non_null(objects);
    assert_non_null(ids);
    assert_non_null(order);
    for (size_t i = 0; i < N; i++) {
        objects[i] = "{\"item_id\": \"x\"}";
        ids[i] = "x";
        order[i] = i;
    }
    l = make_listing(objects, ids, order, N);
    mapped = bigmem_mapped();
    assert_int_equal(derive_ndjson(&l, 1, &blob, &bytes), 0);
    assert_int_equal(bigmem_mapped(), mapped + 1); /* 320,000 bytes of lines */
    assert_int_equal(blob_len(blob), (size_t)N * strlen("{\"item_id\":\"x\"}\n"));
    blob_unref(blob);
    assert_int_equal(bigmem_mapped(), mapped);
    listing_release(l);
    free(objects);
    free(ids);
    free(order);
}

static void test_ndjson_sized_from_measured_lines(void **state)
{
    const char *objects[] = {"{\"item_id\": \"a\"}", "{\"item_id\": \"b\", \"n\": [1, 2]}"};
    const char *ids[] = {"a", "b"};
    const size_t order[] = {0, 1};
    struct listing *l = make_listing(objects, ids, order, 2);
    struct blob *page = blob_new_paged(&unreachable, NULL, 100, 0), *blob;
    struct buf scratch = BUF_INIT;
    const char *bytes;
    size_t held;

    (void)state;
    assert_non_null(page);
    blob_unref(l->entries[0].content);
    l->entries[0].content = blob_new_rendered(page, 0, 16, jsontext_compact, 16, 1);
    l->entries[0].line_len = strlen("{\"item_id\":\"a\"}");
    assert_int_equal(derive_ndjson(&l, 1, &blob, &held), 0);
    assert_int_equal(blob_len(blob),
                     strlen("{\"item_id\":\"a\"}\n{\"item_id\":\"b\",\"n\":[1,2]}\n"));
    assert_int_equal(blob_read(blob, 0, 10, &scratch, &bytes), -ETIMEDOUT);
    /* The second line's text is at hand. */
    assert_int_equal(blob_read(blob, 16, 100, &scratch, &bytes), 26);
    assert_memory_equal(bytes, "{\"item_id\":\"b\",\"n\":[1,2]}\n", 26);
    blob_unref(page);
    listing_release(l);
    blob_unref(blob);
    buf_free(&scratch);
}

static void assert_errors_tsv(const struct listing *const *lists, bool every,
                              const char *want)
{
    struct buf out = BUF_INIT;

    assert_int_equal(derive_errors_tsv(lists, 1, every, &out), 0);
    if (out.len != strlen(want) || memcmp(out.data, want, out.len))
        fail_msg("got:\n%s\nexpected:\n%s", out.data ? out.data : "", want);
    buf_free(&out);
}

/* The same objects as a job's failed items (a line each, whatever
 * error_message holds) and as a batch's results (a line for those with a
 * message, the last key counting). Fields are escaped, bytes that are not
 * UTF-8 (raw, or an unpaired surrogate escape's) written \xHH. */
static void test_errors_tsv(void **state)
{
    const char *objects[] = {
        "{\"item_id\": \"i1\", \"error_message\": \"Timeout\\tat page 3\\nretry \\\\ later\"}",
        "{\"item_id\": \"i2\", \"error_message\": null}",
        "{\"item_id\": \"i3\", \"error_message\": \"\"}",
        "{\"item_id\": \"i4\", \"error_message\": \"bad\\u0000byte\"}",
        "{\"item_id\": \"i5\", \"error_message\": 12.50}",
        "{\"item_id\": \"i6\", \"error_message\": \"first\", \"error_message\": null}",
        "{\"item_id\": \"i7\", \"error_message\": null, \"error_message\": \"last\"}",
        "{\"item_id\": \"i8\"}",
        "{\"item_id\": \"i9\", \"error_message\": false}",
        "{\"item_id\": \"i10\", \"error_message\": {\"code\": 7, \"at\": [1, \"a\\tb\"]}}",
        "{\"item_id\": \"i11\", \"error_message\": \"raw \xff \xc0\xaf \xe2\x82 \xc3\xa9\"}",
        "{\"item_id\": \"i12\", \"error_message\": \"\\ud800 and \\udc00\\ud800\\u0041\"}",
    };
    const char *ids[] = {"i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "i9", "i10", "i11",
                         "i12"};
    const size_t order[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    struct listing *l = make_listing(objects, ids, order, 12);
    const struct listing *lists[] = {l};
    const char *messages = "i1\ti1\tTimeout\\tat page 3\\nretry \\\\ later\n"
                           "i4\ti4\tbad\\0byte\n"
                           "i5\ti5\t12.50\n"
                           "i7\ti7\tlast\n"
                           "i9\ti9\tfalse\n"
                           "i10\ti10\t{\"code\":7,\"at\":[1,\"a\\\\tb\"]}\n"
                           "i11\ti11\traw \\xff \\xc0\\xaf \\xe2\\x82 \xc3\xa9\n"
                           "i12\ti12\t\\xed\\xa0\\x80 and \\xed\\xb0\\x80\\xed\\xa0\\x80\x41\n";
    const char *every = "i1\ti1\tTimeout\\tat page 3\\nretry \\\\ later\n"
                        "i2\ti2\t\n"
                        "i3\ti3\t\n"
                        "i4\ti4\tbad\\0byte\n"
                        "i5\ti5\t12.50\n"
                        "i6\ti6\t\n"
                        "i7\ti7\tlast\n"
                        "i8\ti8\t\n"
                        "i9\ti9\tfalse\n"
                        "i10\ti10\t{\"code\":7,\"at\":[1,\"a\\\\tb\"]}\n"
                        "i11\ti11\traw \\xff \\xc0\\xaf \\xe2\\x82 \xc3\xa9\n"
                        "i12\ti12\t\\xed\\xa0\\x80 and \\xed\\xb0\\x80\\xed\\xa0\\x80\x41\n";

    (void)state;
    assert_errors_tsv(lists, false, messages);
    assert_errors_tsv(lists, true, every);
    listing_release(l);
}

/* Items keep no id (their text has it): the id field is the text's
 * item_id, decoded and escaped; empty when absent or not a string. */
static void test_errors_tsv_ids_from_the_text(void **state)
{
    const char *objects[] = {
        "{\"item_id\": \"i\\u0031\", \"error_message\": \"m1\"}",
        "{\"error_message\": \"m2\", \"item_id\": \"a\\tb\"}",
        "{\"error_message\": \"m3\"}",
        "{\"item_id\": 7, \"error_message\": \"m4\"}",
    };
    const char *ids[] = {"n1", "n2", "n3", "n4"};
    const size_t order[] = {0, 1, 2, 3};
    struct listing *l = make_listing(objects, ids, order, 4);
    const struct listing *lists[] = {l};

    (void)state;
    /* Items keep no id: errors.tsv reads it from their text. */
    l->kind = LISTING_ITEMS;
    bigmem_free(l->ids);
    l->ids = NULL;
    assert_errors_tsv(lists, false, "n1\ti1\tm1\nn2\ta\\tb\tm2\nn3\t\tm3\nn4\t\tm4\n");
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
        cmocka_unit_test(test_ndjson_across_listings),
        cmocka_unit_test(test_ndjson_many_lines),
        cmocka_unit_test(test_ndjson_in_place),
        cmocka_unit_test(test_ndjson_index_of_a_big_folder),
        cmocka_unit_test(test_ndjson_sized_from_measured_lines),
        cmocka_unit_test(test_errors_tsv),
        cmocka_unit_test(test_errors_tsv_ids_from_the_text),
        cmocka_unit_test(test_progress_line),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
