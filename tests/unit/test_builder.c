/*
 * Unit tests of the listing builder (fs/builder.c): API objects in, named
 * and sorted entries out, with no API, cache or transport behind them.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "batchfs/api.h"
#include "batchfs/blob.h"
#include "batchfs/buf.h"
#include "batchfs/builder.h"
#include "batchfs/catalog.h"
#include "batchfs/jsontext.h"
#include "batchfs/log.h"
#include "batchfs/names.h"

/* 2025-01-01T00:00:00Z and 2025-03-01T10:00:00Z. */
#define NEW_YEAR 1735689600
#define MARCH_FIRST_TEN 1740823200

static struct api_object object_of(const char *raw, size_t raw_len, const char *id)
{
    return (struct api_object){
        .raw = raw, .raw_len = raw_len, .id = id, .id_len = strlen(id)};
}

/* Asserts that `content` reads, in one piece, as `raw` pretty-printed. */
static void assert_pretty(const struct blob *content, const char *raw, size_t raw_len)
{
    struct buf expect = BUF_INIT, scratch = BUF_INIT;
    const char *bytes;
    size_t len;

    assert_int_equal(jsontext_pretty(raw, raw_len, &expect), 0);
    assert_int_equal(blob_measure(content, &len), 0); /* jobs': measured now */
    assert_int_equal(len, expect.len);
    assert_int_equal(blob_len(content), expect.len);
    assert_int_equal(blob_read(content, 0, blob_len(content), &scratch, &bytes),
                     (long)expect.len);
    assert_memory_equal(bytes, expect.data, expect.len);
    buf_free(&expect);
    buf_free(&scratch);
}

/* Builds a listing of `kind` from one page of `objects`: builder_finish's
 * outcome, and the listing in *out. */
static int build(enum listing_kind kind, const struct api_object *objects, size_t count,
                 struct listing **out)
{
    struct builder b;
    int rc;

    assert_int_equal(builder_init(&b, kind, "test"), 0);
    assert_int_equal(builder_add_objects(&b, objects, count), 0);
    rc = builder_finish(&b, out);
    assert_null(b.listing);
    return rc;
}

/* Jobs are named by id, sorted by name, and keep their place in the API's
 * order; their time is the most final timestamp that parses. Objects whose
 * id could not be looked up again, or whose text is not JSON, are left out. */
static void test_jobs_named_by_id(void **state)
{
    static const char j1[] = "{\"id\":\"bjb-1\",\"status\":\"completed\","
                             "\"created_at\":\"2025-01-01T00:00:00Z\","
                             "\"completed_at\":\"2025-03-01T10:00:00.5Z\"}";
    static const char head[] = "{\"id\":\"HEAD\"}";
    static const char broken[] = "{\"id\":\"bjb-9\",";
    static const char j0[] =
        "{\"id\":\"bjb-0\",\"status\":\"running\","
        "\"updated_at\":\"soon\",\"created_at\":\"2025-01-01T00:00:00Z\"}";
    struct api_object objects[] = {
        object_of(j1, strlen(j1), "bjb-1"),
        object_of(head, strlen(head), "HEAD"),
        object_of(broken, strlen(broken), "bjb-9"),
        object_of(j0, strlen(j0), "bjb-0"),
    };
    struct builder b;
    struct listing *l = NULL;
    const struct entry *e;

    (void)state;
    assert_int_equal(builder_init(&b, LISTING_JOBS, "jobs"), 0);
    assert_int_equal(builder_add_objects(&b, objects, 2), 0);
    assert_int_equal(builder_add_objects(&b, objects + 2, 2), 0);
    assert_int_equal(builder_finish(&b, &l), 0);
    assert_null(b.listing);
    assert_non_null(l);
    assert_int_equal(l->kind, LISTING_JOBS);
    assert_int_equal(l->refs, 1);
    assert_int_equal(l->count, 2);

    e = &l->entries[0];
    assert_string_equal(e->name, "bjb-0");
    assert_string_equal(listing_entry_id(l, e), "bjb-0");
    assert_string_equal(e->status, "running");
    assert_int_equal(e->api_index, 1);
    assert_int_equal(entry_mtime(e).tv_sec, NEW_YEAR);
    /* No page to render from: rendered from a copy of its text, measured
     * when first asked. */
    assert_null(blob_bytes(e->content));
    assert_int_equal(blob_len(e->content), BLOB_LEN_UNMEASURED);
    assert_true(blob_get_digest(e->content) == blob_digest(j0, strlen(j0)));
    assert_pretty(e->content, j0, strlen(j0));

    e = &l->entries[1];
    assert_string_equal(e->name, "bjb-1");
    assert_string_equal(e->status, "completed");
    assert_int_equal(e->api_index, 0);
    assert_int_equal(entry_mtime(e).tv_sec, MARCH_FIRST_TEN);
    assert_int_equal(entry_mtime(e).tv_nsec, 500000000);
    assert_pretty(e->content, j1, strlen(j1));

    assert_ptr_equal(listing_find(l, "bjb-1"), e);
    assert_null(listing_find(l, "HEAD"));
    assert_null(l->self.content);
    assert_true(l->bytes >=
                sizeof(*l) + entry_bytes(&l->entries[0]) + entry_bytes(&l->entries[1]));
    listing_release(l);
}

/* Items are named by names.c from their item names (a shared name gets
 * each item's id); a NUL in a status becomes '_'; an item without
 * timestamps has no time. They stay in the API's order (the order of their
 * pages, which readdir follows) and are found by name through an index. */
static void test_items_named_by_names(void **state)
{
    static const char i1[] = "{\"item_id\":\"i1\",\"item_name\":\"a.pdf\","
                             "\"status\":\"fa\\u0000iled\"}";
    static const char i2[] = "{\"item_id\":\"i2\",\"item_name\":\"a.pdf\"}";
    static const char i3[] = "{\"item_id\":\"i3\",\"item_name\":\"x/../y\"}";
    struct api_object objects[] = {
        object_of(i3, strlen(i3), "i3"),
        object_of(i2, strlen(i2), "i2"),
        object_of(i1, strlen(i1), "i1"),
    };
    struct listing *l = NULL;

    (void)state;
    assert_int_equal(build(LISTING_ITEMS, objects, 3, &l), 0);
    assert_int_equal(l->count, 3);
    assert_string_equal(l->entries[0].name, "x_.._y.json");
    assert_int_equal(l->entries[0].api_index, 0);
    assert_string_equal(l->entries[1].name, "a.pdf~i2.json");
    assert_null(l->entries[1].status);
    assert_int_equal(entry_mtime(&l->entries[1]).tv_sec, 0);
    assert_int_equal(entry_mtime(&l->entries[1]).tv_nsec, 0);
    assert_string_equal(l->entries[2].name, "a.pdf~i1.json");
    assert_null(listing_entry_id(l, &l->entries[2])); /* in its text, not kept twice */
    assert_null(l->ids);
    assert_string_equal(l->entries[2].status, "fa_iled");
    assert_int_equal(l->entries[2].api_index, 2);
    assert_non_null(l->by_name);
    assert_int_equal(l->by_name[0], 2);
    assert_int_equal(l->by_name[1], 1);
    assert_int_equal(l->by_name[2], 0);
    for (size_t i = 0; i < 3; i++)
        assert_ptr_equal(listing_find(l, l->entries[i].name), &l->entries[i]);
    assert_null(listing_find(l, "a.pdf.json"));
    assert_null(listing_find(l, "zzz.json"));
    /* Their items.ndjson lines are measured: the texts are compact already. */
    assert_int_equal(l->entries[0].line_len, strlen(i3));
    assert_int_equal(l->entries[1].line_len, strlen(i2));
    assert_int_equal(l->entries[2].line_len, strlen(i1));
    listing_release(l);
}

/* A listing's strings lie in its one block: a job named by its id shares
 * it, entries of the same status share one copy (a status with a NUL, made
 * '_', is its own), and every string is inside the block. */
static void test_strings_in_one_block(void **state)
{
    static const char j1[] = "{\"id\":\"job-1\",\"status\":\"completed\"}";
    static const char j2[] = "{\"id\":\"job-2\",\"status\":\"completed\"}";
    static const char j3[] = "{\"id\":\"job-3\",\"status\":\"fa\\u0000iled\"}";
    static const char j4[] = "{\"id\":\"job-4\"}";
    struct api_object objects[] = {
        object_of(j1, strlen(j1), "job-1"),
        object_of(j2, strlen(j2), "job-2"),
        object_of(j3, strlen(j3), "job-3"),
        object_of(j4, strlen(j4), "job-4"),
    };
    struct listing *l = NULL;

    (void)state;
    assert_int_equal(build(LISTING_JOBS, objects, 4, &l), 0);
    assert_int_equal(l->count, 4);
    assert_non_null(l->strings);
    for (size_t i = 0; i < 4; i++) {
        const struct entry *e = &l->entries[i];

        assert_ptr_equal(e->name, listing_entry_id(l, e));
        assert_true(e->name >= l->strings &&
                    e->name + strlen(e->name) < l->strings + l->strings_bytes);
        if (e->status)
            assert_true(e->status >= l->strings &&
                        e->status + strlen(e->status) < l->strings + l->strings_bytes);
    }
    assert_string_equal(l->entries[0].status, "completed");
    assert_ptr_equal(l->entries[0].status, l->entries[1].status);
    assert_string_equal(l->entries[2].status, "fa_iled");
    assert_null(l->entries[3].status);
    /* Four ids and two statuses, each with its NUL: nothing more. */
    assert_int_equal(l->strings_bytes,
                     4 * 6 + strlen("completed") + 1 + strlen("fa_iled") + 1);
    listing_release(l);
}

/* Two items of one id cannot both have a file: the listing fails whole. */
static void test_items_repeated_id(void **state)
{
    static const char i1[] = "{\"item_id\":\"i1\",\"item_name\":\"a.pdf\"}";
    struct api_object objects[] = {
        object_of(i1, strlen(i1), "i1"),
        object_of(i1, strlen(i1), "i1"),
    };
    struct listing *l = NULL;

    (void)state;
    assert_int_equal(build(LISTING_ITEMS, objects, 2, &l), -EINVAL);
    assert_null(l);
}

/* Through the preparer, a page is rendered before it is delivered: the
 * builder takes the page's body, small objects are rendered from it when
 * read and big ones once; the room announced is made up front. */
static void test_prepared_page(void **state)
{
    static const char small[] = "{\"item_id\":\"i1\",\"item_name\":\"a.pdf\","
                                "\"status\":\"completed\",\"x\":[1, 2.50,{}]}";
    struct buf body = BUF_INIT_BIG;
    struct api_preparer preparer;
    struct api_object objects[2];
    size_t small_at, big_at, big_len;
    void *page_state = NULL;
    struct builder b;
    struct listing *l = NULL;
    const struct entry *e;

    (void)state;
    assert_int_equal(buf_append_str(&body, "{\"items\": ["), 0);
    small_at = body.len;
    assert_int_equal(buf_printf(&body, "%s, ", small), 0);
    big_at = body.len;
    assert_int_equal(buf_append_str(&body, "{\"item_id\":\"i2\",\"pad\":\""), 0);
    for (size_t i = 0; i < (70u << 10); i++)
        assert_int_equal(buf_append_char(&body, 'p'), 0);
    assert_int_equal(buf_append_str(&body, "\"}"), 0);
    big_len = body.len - big_at;
    assert_int_equal(buf_append_str(&body, "], \"total_size\": 2}"), 0);
    objects[0] = object_of(body.data + small_at, strlen(small), "i1");
    objects[1] = object_of(body.data + big_at, big_len, "i2");

    assert_int_equal(builder_init(&b, LISTING_ITEMS, "items"), 0);
    builder_preparer(&b, &preparer);
    assert_ptr_equal(preparer.arg, &b);
    assert_true(preparer.n_keys <= API_PREPARER_MAX_KEYS);
    preparer.expect(preparer.arg, 5000);
    assert_int_equal(preparer.prepare(preparer.arg, objects, 2, &body, NULL, &page_state), 0);
    assert_int_equal(body.len, 0); /* taken, not copied */
    assert_non_null(objects[0].prepared);
    assert_non_null(objects[1].prepared);
    assert_int_equal(builder_add_objects(&b, objects, 2), 0);
    assert_true(b.cap >= 5000);
    preparer.release(preparer.arg, page_state);
    assert_int_equal(builder_finish(&b, &l), 0);
    assert_int_equal(l->count, 2);

    e = listing_find(l, "a.pdf.json");
    assert_non_null(e);
    assert_null(blob_bytes(e->content)); /* rendered on read */
    assert_string_equal(e->status, "completed");
    assert_pretty(e->content, small, strlen(small));
    e = &l->entries[l->entries[0].api_index == 1 ? 0 : 1];
    assert_null(listing_entry_id(l, e));
    assert_non_null(blob_bytes(e->content)); /* rendered once */
    /* Its text is still there: the page lives on in i1's file. */
    assert_pretty(e->content, objects[1].raw, big_len);
    listing_release(l);
    buf_free(&body);
}

/* The pages of test_item_ids_from_pages, fetched again by their number
 * ("0" to "3"). */
struct item_pages {
    char bodies[4][128];
    int fetches[4]; /* atomic: the cache's read-ahead thread fetches too */
    int fail;
};

static int fetch_item_page(void *arg, const char *where, struct buf *body)
{
    struct item_pages *p = arg;
    int k = atoi(where);

    __atomic_add_fetch(&p->fetches[k], 1, __ATOMIC_RELAXED);
    if (p->fail)
        return p->fail;
    return buf_append_str(body, p->bodies[k]);
}

/*
 * Items whose names collide are named with their ids, which the builder
 * keeps for no item: it reads them from their pages when it names the
 * folder (decoded as when listed), fetching a page again when the cache
 * dropped it; and when that fails, the listing fails with its error.
 */
static void test_item_ids_from_pages(void **state)
{
    static const char *const items[4] = {
        "{\"item_id\":\"i1\",\"item_name\":\"a.pdf\"}",
        "{\"item_id\":\"i2\",\"item_name\":\"b.pdf\"}",
        "{\"item_id\":\"i4\",\"item_name\":\"c.pdf\"}",
        "{\"item_id\":\"\\u0069\\u0033\",\"item_name\":\"a.pdf\"}",
    };
    static const char *const ids[4] = {"i1", "i2", "i4", "i3"};

    (void)state;
    for (int failing = 0; failing < 2; failing++) {
        struct item_pages pages = {.fail = failing ? -ETIMEDOUT : 0};
        struct pagecache *pc = pagecache_new(&(struct pagecache_config){.max_bytes = 1});
        struct api_preparer preparer;
        struct listing *l = NULL;
        struct builder b;
        int rc;

        assert_non_null(pc);
        assert_int_equal(builder_init(&b, LISTING_ITEMS, "items"), 0);
        builder_keep_pages(&b, pc, fetch_item_page, &pages);
        builder_preparer(&b, &preparer);
        for (int k = 0; k < 4; k++) {
            struct buf body = BUF_INIT_BIG;
            struct api_object object;
            void *page_state = NULL;
            char where[2] = {(char)('0' + k), '\0'};

            snprintf(pages.bodies[k], sizeof(pages.bodies[k]), "{\"items\": [%s]}",
                     items[k]);
            assert_int_equal(buf_append_str(&body, pages.bodies[k]), 0);
            object = object_of(body.data + 11, strlen(items[k]), ids[k]);
            assert_int_equal(
                preparer.prepare(preparer.arg, &object, 1, &body, where, &page_state), 0);
            assert_int_equal(builder_add_objects(&b, &object, 1), 0);
            preparer.release(preparer.arg, page_state);
            buf_free(&body);
        }
        /* The budget keeps the two pages used last: the first is gone, and
         * fetched again once (the cache may read the next ones ahead). */
        assert_int_equal(__atomic_load_n(&pages.fetches[0], __ATOMIC_RELAXED), 0);
        rc = builder_finish(&b, &l);
        assert_int_equal(__atomic_load_n(&pages.fetches[0], __ATOMIC_RELAXED), 1);
        if (failing) {
            assert_int_equal(rc, -ETIMEDOUT);
            assert_null(l);
        } else {
            assert_int_equal(rc, 0);
            assert_string_equal(l->entries[0].name, "a.pdf~i1.json");
            assert_string_equal(l->entries[1].name, "b.pdf.json");
            assert_string_equal(l->entries[2].name, "c.pdf.json");
            assert_string_equal(l->entries[3].name, "a.pdf~i3.json");
            assert_pretty(l->entries[0].content, items[0], strlen(items[0]));
            listing_release(l);
        }
        pagecache_free(pc);
    }
}

/* What builder_on_jobs told, copied. */
struct told_jobs {
    size_t calls, count;
    char id[8][16], status[8][16];
    bool has_status[8];
    struct builder_job jobs[8];
};

static void tell_jobs(void *arg, const struct builder_job *jobs, size_t count)
{
    struct told_jobs *told = arg;

    told->calls++;
    for (size_t i = 0; i < count; i++) {
        size_t k = told->count++;

        assert_true(k < 8);
        told->jobs[k] = jobs[i];
        snprintf(told->id[k], sizeof(told->id[k]), "%s", jobs[i].id);
        told->has_status[k] = jobs[i].status != NULL;
        if (jobs[i].status)
            snprintf(told->status[k], sizeof(told->status[k]), "%s", jobs[i].status);
    }
}

/* The jobs of each page are told as they are added, with their status and
 * counters, whether the page went through the preparer or not; jobs left
 * out are not told. A job's file is rendered from its page, which the
 * listing keeps, and measured only when first asked. */
static void test_jobs_told_page_by_page(void **state)
{
    static const char j1[] = "{\"id\":\"bjb-1\",\"status\":\"completed\","
                             "\"total_items\":10,\"processed_items\":9,"
                             "\"failed_items\":1.5,\"skipped_items\":-1}";
    static const char head[] = "{\"id\":\"HEAD\",\"status\":\"completed\"}";
    static const char j2[] = "{\"id\":\"bjb-2\",\"status\":\"fail\\u0000ed\","
                             "\"total_items\":\"10\",\"failed_items\":2}";
    static const char j3[] = "{\"id\":\"bjb-3\",\"total_items\":1e1,"
                             "\"processed_items\":0,\"skipped_items\":0}";
    struct api_object first[] = {object_of(j1, strlen(j1), "bjb-1"),
                                 object_of(head, strlen(head), "HEAD")};
    struct buf body = BUF_INIT_BIG;
    static const char broken[] = "{\"id\":\"bjb-4\",";
    struct api_object second[3];
    struct api_preparer preparer;
    struct told_jobs told = {0};
    void *page_state = NULL;
    size_t j2_at, j3_at, broken_at;
    struct builder b;
    struct listing *l = NULL;

    (void)state;
    assert_int_equal(buf_append_str(&body, "{\"items\": ["), 0);
    j2_at = body.len;
    assert_int_equal(buf_printf(&body, "%s, ", j2), 0);
    j3_at = body.len;
    assert_int_equal(buf_printf(&body, "%s, ", j3), 0);
    broken_at = body.len;
    assert_int_equal(buf_printf(&body, "%s]}", broken), 0);
    second[0] = object_of(body.data + j2_at, strlen(j2), "bjb-2");
    second[1] = object_of(body.data + j3_at, strlen(j3), "bjb-3");
    second[2] = object_of(body.data + broken_at, strlen(broken), "bjb-4");

    assert_int_equal(builder_init(&b, LISTING_JOBS, "jobs"), 0);
    builder_on_jobs(&b, tell_jobs, &told);
    builder_preparer(&b, &preparer);
    assert_true(preparer.n_keys <= API_PREPARER_MAX_KEYS);
    assert_int_equal(builder_add_objects(&b, first, 2), 0);
    assert_int_equal(told.calls, 1);
    assert_int_equal(told.count, 1); /* HEAD is not an id: left out */
    assert_string_equal(told.id[0], "bjb-1");
    assert_string_equal(told.status[0], "completed");
    assert_true(told.jobs[0].known[0] && told.jobs[0].known[1]);
    assert_int_equal(told.jobs[0].counts[0], 10);
    assert_int_equal(told.jobs[0].counts[1], 9);
    assert_false(told.jobs[0].known[2]); /* 1.5 */
    assert_false(told.jobs[0].known[3]); /* -1 */

    assert_int_equal(preparer.prepare(preparer.arg, second, 3, &body, NULL, &page_state),
                     0);
    assert_null(body.data); /* taken: its jobs are rendered from it */
    assert_int_equal(builder_add_objects(&b, second, 3), 0);
    preparer.release(preparer.arg, page_state);
    assert_int_equal(told.calls, 2);
    assert_int_equal(told.count, 3);
    assert_string_equal(told.id[1], "bjb-2");
    assert_false(told.has_status[1]);    /* it holds a NUL */
    assert_false(told.jobs[1].known[0]); /* a string */
    assert_false(told.jobs[1].known[1]); /* absent */
    assert_true(told.jobs[1].known[2]);
    assert_int_equal(told.jobs[1].counts[2], 2);
    assert_string_equal(told.id[2], "bjb-3");
    assert_false(told.has_status[2]);
    assert_true(told.jobs[2].known[0] && told.jobs[2].known[1] && told.jobs[2].known[3]);
    assert_int_equal(told.jobs[2].counts[0], 10);
    assert_false(told.jobs[2].known[2]);

    assert_int_equal(builder_finish(&b, &l), 0);
    assert_int_equal(l->count, 3);
    assert_string_equal(l->entries[1].status, "fail_ed");
    /* Rendered on read, measured when first asked: a job list is read for
     * its folders, not its files. */
    for (size_t i = 0; i < l->count; i++) {
        assert_null(blob_bytes(l->entries[i].content));
        assert_int_equal(blob_len(l->entries[i].content), BLOB_LEN_UNMEASURED);
    }
    assert_pretty(l->entries[2].content, j3, strlen(j3));
    listing_release(l);
}

/*
 * A job list keeps its pages, counted once: each job's file stands for its
 * own text in the page, not for a pretty-printed copy, and is measured when
 * first asked, not while the list is read. A job looked up alone is the
 * same file (same digest, same bytes), so that the job list coming in
 * after it does not make a new version of it.
 */
static void test_job_list_keeps_its_page(void **state)
{
    enum { N = 50 };
    struct api_object objects[N], alone;
    size_t at[N], lens[N], raw_total = 0, footprints = 0, charge = 0, len;
    char ids[N][16];
    struct buf body = BUF_INIT_BIG, text = BUF_INIT, a = BUF_INIT, b_bytes = BUF_INIT;
    struct api_preparer preparer;
    void *page_state = NULL;
    struct listing *l = NULL, *one = NULL;
    const struct entry *e;
    const char *x, *y;
    struct builder b;

    (void)state;
    assert_int_equal(buf_append_str(&body, "{\"items\": ["), 0);
    for (size_t i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "bjb-%03zu", i);
        at[i] = body.len;
        assert_int_equal(
            buf_printf(&body,
                       "{\"id\":\"%s\",\"status\":\"running\",\"total_items\":%zu,"
                       "\"x\":[1,{\"k\":\"v\"}]}",
                       ids[i], i),
            0);
        lens[i] = body.len - at[i];
        raw_total += lens[i];
        assert_int_equal(buf_append_str(&body, i + 1 < N ? ", " : "]}"), 0);
    }
    for (size_t i = 0; i < N; i++)
        objects[i] = object_of(body.data + at[i], lens[i], ids[i]);

    assert_int_equal(builder_init(&b, LISTING_JOBS, "jobs"), 0);
    builder_charge_to(&b, &charge);
    builder_preparer(&b, &preparer);
    assert_int_equal(preparer.prepare(preparer.arg, objects, N, &body, NULL, &page_state),
                     0);
    assert_null(body.data); /* taken by the listing */
    assert_int_equal(builder_add_objects(&b, objects, N), 0);
    preparer.release(preparer.arg, page_state);
    /* The charge covers the jobs' text once, and no copy of it. */
    assert_true(b.content_bytes >= raw_total);
    assert_true(b.content_bytes < raw_total + N * 64);
    assert_true(charge >= b.content_bytes);
    assert_int_equal(builder_finish(&b, &l), 0);
    assert_int_equal(l->count, N);
    for (size_t i = 0; i < N; i++) {
        e = listing_find(l, ids[i]);
        assert_non_null(e);
        assert_null(blob_bytes(e->content));
        assert_int_equal(blob_len(e->content), BLOB_LEN_UNMEASURED);
        footprints += blob_footprint(e->content);
        assert_int_equal(blob_len(e->content), BLOB_LEN_UNMEASURED);
    }
    assert_true(footprints >= raw_total && footprints < raw_total + N * 64);
    assert_true(l->bytes >= footprints && l->bytes < footprints + N * 128);
    /* Measured when asked, and read as the text pretty-printed. */
    e = listing_find(l, ids[7]);
    assert_int_equal(buf_printf(&text,
                                "{\"id\":\"%s\",\"status\":\"running\",\"total_items\":7,"
                                "\"x\":[1,{\"k\":\"v\"}]}",
                                ids[7]),
                     0);
    assert_pretty(e->content, text.data, text.len);
    assert_true(blob_get_digest(e->content) == blob_digest(text.data, text.len));

    /* The same job looked up alone. */
    alone = object_of(text.data, text.len, ids[7]);
    assert_int_equal(build(LISTING_JOB, &alone, 1, &one), 0);
    assert_int_equal(one->count, 1);
    assert_true(blob_get_digest(one->entries[0].content) == blob_get_digest(e->content));
    assert_true(blob_same(one->entries[0].content, e->content));
    assert_int_equal(blob_measure(one->entries[0].content, &len), 0);
    assert_int_equal(len, blob_len(e->content));
    assert_true(blob_same(one->entries[0].content, e->content));
    assert_int_equal(blob_read(one->entries[0].content, 0, len, &a, &x), (long)len);
    assert_int_equal(blob_read(e->content, 0, len, &b_bytes, &y), (long)len);
    assert_memory_equal(x, y, len);
    listing_release(one);
    listing_release(l);
    buf_free(&text);
    buf_free(&a);
    buf_free(&b_bytes);
}

/* A big list is sorted in strcmp's order whatever its names share: a long
 * common start, names that begin alike for more than eight bytes after it,
 * names that are the start of others, and upper case before lower. */
static void test_jobs_sorted_like_strcmp(void **state)
{
    enum { COUNT = 600 };
    static const char *const tails[] = {"",          "0",        "00000000", "000000001",
                                        "00000000a", "0000000a", "1",        "A1",
                                        "Z9",        "a1",       "_1",       "-1"};
    struct api_object *objects = calloc(COUNT, sizeof(*objects));
    char(*raw)[96] = calloc(COUNT, sizeof(*raw));
    char(*ids)[48] = calloc(COUNT, sizeof(*ids));
    struct listing *l = NULL;

    (void)state;
    assert_non_null(objects);
    assert_non_null(raw);
    assert_non_null(ids);
    for (size_t i = 0; i < COUNT; i++) {
        /* A scrambled order, and ids that repeat no name. */
        size_t k = (i * 7919) % COUNT;

        snprintf(ids[i], sizeof(ids[i]), "bjb-%03zu%s", k / 12,
                 tails[k % (sizeof(tails) / sizeof(*tails))]);
        snprintf(raw[i], sizeof(raw[i]), "{\"id\":\"%s\"}", ids[i]);
        objects[i] = object_of(raw[i], strlen(raw[i]), ids[i]);
    }
    assert_int_equal(build(LISTING_JOBS, objects, COUNT, &l), 0);
    assert_int_equal(l->count, COUNT);
    for (size_t i = 1; i < l->count; i++)
        assert_true(strcmp(l->entries[i - 1].name, l->entries[i].name) < 0);
    for (size_t i = 0; i < l->count; i++)
        assert_string_equal(listing_entry_id(l, &l->entries[i]),
                            ids[l->entries[i].api_index]);
    listing_release(l);
    free(ids);
    free(raw);
    free(objects);
}

/* A batch is the listing's self; its results are named by their ids,
 * which they keep beside them, in the order of their names. */
static void test_batch(void **state)
{
    static const char batch[] = "{\"id\":\"bat-1\",\"status\":\"RUNNING\","
                                "\"created_at\":\"2025-01-01T00:00:00Z\"}";
    static const char result[] = "{\"source_directory_file_id\":\"f-1\","
                                 "\"item_name\":\"other.pdf\",\"status\":\"done\"}";
    static const char r3[] = "{\"source_directory_file_id\":\"f-3\"}";
    static const char r0[] = "{\"source_directory_file_id\":\"f-0\"}";
    struct api_object batch_object = object_of(batch, strlen(batch), "bat-1");
    struct api_object results[] = {object_of(r3, strlen(r3), "f-3"),
                                   object_of(result, strlen(result), "f-1"),
                                   object_of(r0, strlen(r0), "f-0")};
    static const char *const sorted[] = {"f-0", "f-1", "f-3"};
    struct builder b;
    struct listing *l = NULL;

    (void)state;
    assert_int_equal(builder_init(&b, LISTING_BATCH, "batch/bat-1"), 0);
    assert_int_equal(builder_add_batch(&b, &batch_object, results, 3, false), 0);
    assert_int_equal(builder_finish(&b, &l), 0);
    assert_string_equal(l->self.name, "bat-1");
    assert_string_equal(listing_entry_id(l, &l->self), "bat-1");
    assert_string_equal(l->self.status, "RUNNING");
    assert_int_equal(entry_mtime(&l->self).tv_sec, NEW_YEAR);
    assert_pretty(l->self.content, batch, strlen(batch));
    assert_false(l->results_null);
    assert_int_equal(l->count, 3);
    for (size_t i = 0; i < 3; i++) {
        char name[16];

        snprintf(name, sizeof(name), "%s.json", sorted[i]);
        assert_string_equal(l->entries[i].name, name);
        assert_string_equal(listing_entry_id(l, &l->entries[i]), sorted[i]);
    }
    assert_string_equal(l->entries[1].status, "done");
    assert_non_null(listing_find(l, "f-1.json"));
    assert_null(listing_find(l, "other.pdf.json"));
    listing_release(l);

    assert_int_equal(builder_init(&b, LISTING_BATCH, "batch/bat-1"), 0);
    assert_int_equal(builder_add_batch(&b, &batch_object, NULL, 0, true), 0);
    assert_int_equal(builder_finish(&b, &l), 0);
    assert_true(l->results_null);
    assert_int_equal(l->count, 0);
    assert_string_equal(l->self.name, "bat-1");
    listing_release(l);
}

/* Entries known only by id, completed by the caller before the finish. */
static void test_entries_by_id(void **state)
{
    struct builder b;
    struct listing *l = NULL;

    (void)state;
    assert_int_equal(builder_init(&b, LISTING_BATCHES, "batches"), 0);
    assert_int_equal(builder_add_id(&b, "bat-2"), 0);
    assert_int_equal(builder_add_id(&b, "bat-1"), 0);
    b.listing->entries[0].content = blob_new("{}\n", 3);
    assert_non_null(b.listing->entries[0].content);
    entry_set_mtime(&b.listing->entries[0], (struct timespec){NEW_YEAR, 0});
    assert_int_equal(builder_finish(&b, &l), 0);
    assert_int_equal(l->count, 2);
    assert_string_equal(l->entries[0].name, "bat-1");
    assert_int_equal(l->entries[0].api_index, 1);
    assert_null(l->entries[0].status);
    assert_null(l->entries[0].content);
    assert_string_equal(l->entries[1].name, "bat-2");
    assert_string_equal(listing_entry_id(l, &l->entries[1]), "bat-2");
    assert_int_equal(l->entries[1].api_index, 0);
    assert_int_equal(entry_mtime(&l->entries[1]).tv_sec, NEW_YEAR);
    assert_int_equal(blob_len(l->entries[1].content), 3);
    assert_true(l->bytes >= sizeof(*l) + entry_bytes(&l->entries[1]));
    listing_release(l);
}

/* A builder given up midway frees all it holds (the sanitizer build
 * checks); discarding twice is harmless. */
static void test_discard(void **state)
{
    static const char i1[] = "{\"item_id\":\"i1\",\"item_name\":\"a.pdf\"}";
    struct api_object object = object_of(i1, strlen(i1), "i1");
    struct builder b;

    (void)state;
    assert_int_equal(builder_init(&b, LISTING_ITEMS, "items"), 0);
    assert_int_equal(builder_add_objects(&b, &object, 1), 0);
    builder_discard(&b);
    assert_null(b.listing);
    builder_discard(&b);
}

/* A listing being built charges what it holds to the counter it is given:
 * at least what the finished listing holds, and the names being settled
 * beside it; and takes it back when finished or discarded. */
static void test_charge(void **state)
{
    enum { N = 10000 };
    static char texts[N][96];
    static char ids[N][16];
    static struct api_object objects[N];
    struct listing *l = NULL;
    struct builder b;
    size_t charge = 1000, held;

    (void)state;
    for (size_t i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "itm-%06zu", i);
        snprintf(texts[i], sizeof(texts[i]),
                 "{\"item_id\":\"%s\",\"item_name\":\"doc-%06zu.pdf\","
                 "\"status\":\"completed\"}",
                 ids[i], i);
        objects[i] = object_of(texts[i], strlen(texts[i]), ids[i]);
    }
    assert_int_equal(builder_init(&b, LISTING_ITEMS, "items"), 0);
    builder_charge_to(&b, &charge);
    assert_int_equal(builder_add_objects(&b, objects, 1), 0);
    held = charge - 1000;
    assert_true(held > sizeof(struct entry));
    for (size_t i = 1; i < N; i += 1000)
        assert_int_equal(builder_add_objects(&b, objects + i, i + 1000 > N ? N - i : 1000),
                         0);
    assert_true(charge - 1000 > held);
    held = charge - 1000;
    /* The names being settled are counted... */
    assert_true(held >= names_footprint(b.names) + N * sizeof(struct entry));
    assert_int_equal(builder_finish(&b, &l), 0);
    assert_int_equal(charge, 1000);
    /* ...and so is all that the listing holds once finished. */
    assert_true(held >= l->bytes - sizeof(*l));
    listing_release(l);

    assert_int_equal(builder_init(&b, LISTING_ITEMS, "items"), 0);
    builder_charge_to(&b, &charge);
    assert_int_equal(builder_add_objects(&b, objects, 2), 0);
    assert_true(charge > 1000);
    builder_discard(&b);
    assert_int_equal(charge, 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jobs_named_by_id),
        cmocka_unit_test(test_items_named_by_names),
        cmocka_unit_test(test_strings_in_one_block),
        cmocka_unit_test(test_items_repeated_id),
        cmocka_unit_test(test_prepared_page),
        cmocka_unit_test(test_item_ids_from_pages),
        cmocka_unit_test(test_jobs_told_page_by_page),
        cmocka_unit_test(test_job_list_keeps_its_page),
        cmocka_unit_test(test_jobs_sorted_like_strcmp),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_entries_by_id),
        cmocka_unit_test(test_discard),
        cmocka_unit_test(test_charge),
    };

    log_setup(getenv("TEST_LOG_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR, false);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
