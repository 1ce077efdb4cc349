/*
 * Unit tests of the catalog's pure parts and of its caching rules
 * (fs/catalog.c), with the API scripted by the fake transport.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "batchfs/api.h"
#include "batchfs/buf.h"
#include "batchfs/catalog.h"
#include "batchfs/jsontext.h"
#include "batchfs/log.h"
#include "batchfs/stream.h"
#include "fake_clock.h"
#include "fake_transport.h"

static void test_parse_time(void **state)
{
    struct timespec ts;

    (void)state;
    assert_int_equal(listing_parse_time("2019-12-27T18:11:19.117Z", &ts), 0);
    assert_int_equal(ts.tv_sec, 1577470279);
    assert_int_equal(ts.tv_nsec, 117000000);
    assert_int_equal(listing_parse_time("2019-12-27T18:11:19Z", &ts), 0);
    assert_int_equal(ts.tv_nsec, 0);
    assert_int_equal(listing_parse_time("2019-12-27T20:11:19+02:00", &ts), 0);
    assert_int_equal(ts.tv_sec, 1577470279);
    assert_int_equal(listing_parse_time("2019-12-27T16:11:19.5-02:00", &ts), 0);
    assert_int_equal(ts.tv_sec, 1577470279);
    assert_int_equal(ts.tv_nsec, 500000000);
    assert_int_equal(listing_parse_time("2019-12-27 18:11:19Z", &ts), 0);
    /* Without a zone the API's UTC is assumed. */
    assert_int_equal(listing_parse_time("2019-12-27T18:11:19", &ts), 0);
    assert_int_equal(ts.tv_sec, 1577470279);
    assert_int_equal(listing_parse_time("yesterday", &ts), -EINVAL);
    assert_int_equal(listing_parse_time("", &ts), -EINVAL);
    assert_int_equal(listing_parse_time("2019-12-27T18:11:19Zjunk", &ts), -EINVAL);
    assert_int_equal(listing_parse_time("2019-12-27T18:11:19+25:00", &ts), -EINVAL);
}

/* An entry keeps its time in 64 bits of nanoseconds: exact from 1677 to
 * 2262, before the epoch too, and held at the nearer end beyond. */
static void test_entry_mtime(void **state)
{
    struct entry e = {0};
    struct timespec ts;

    (void)state;
    assert_int_equal(listing_parse_time("2019-12-27T18:11:19.117000001Z", &ts), 0);
    entry_set_mtime(&e, ts);
    assert_int_equal(entry_mtime(&e).tv_sec, 1577470279);
    assert_int_equal(entry_mtime(&e).tv_nsec, 117000001);
    assert_int_equal(listing_parse_time("1969-12-31T23:59:58.25Z", &ts), 0);
    entry_set_mtime(&e, ts);
    assert_int_equal(entry_mtime(&e).tv_sec, -2);
    assert_int_equal(entry_mtime(&e).tv_nsec, 250000000);
    assert_int_equal(listing_parse_time("2262-04-11T00:00:00Z", &ts), 0);
    entry_set_mtime(&e, ts);
    assert_int_equal(entry_mtime(&e).tv_sec, ts.tv_sec);
    assert_int_equal(listing_parse_time("9999-12-31T23:59:59.5Z", &ts), 0);
    entry_set_mtime(&e, ts);
    assert_true(entry_mtime(&e).tv_sec > 9200000000LL &&
                entry_mtime(&e).tv_sec < 9223372036LL); /* 2262 */
    assert_int_equal(entry_mtime(&e).tv_nsec, 500000000);
    assert_int_equal(listing_parse_time("1000-01-01T00:00:00Z", &ts), 0);
    entry_set_mtime(&e, ts);
    assert_true(entry_mtime(&e).tv_sec < -9200000000LL); /* 1677 */
    entry_set_mtime(&e, (struct timespec){0, 0});
    assert_int_equal(e.mtime_ns, 0); /* none */
}

static void test_statuses(void **state)
{
    (void)state;
    assert_int_equal(catalog_item_status_index("pending"), 0);
    assert_int_equal(catalog_item_status_index("cancelled"), 5);
    assert_int_equal(catalog_item_status_index("running"), -1);
    assert_true(catalog_job_is_terminal("completed"));
    assert_true(catalog_job_is_terminal("FAILED"));
    assert_false(catalog_job_is_terminal("running"));
    assert_false(catalog_job_is_terminal("THROTTLED"));
    assert_false(catalog_job_is_terminal(NULL));
}

struct env {
    struct fake_transport *fake;
    struct api *api;
    struct catalog *catalog;
};

static int env_setup_threads(void **state, unsigned fetch_threads)
{
    struct env *env = calloc(1, sizeof(*env));
    struct api_config ac = {.page_size = 1000, .max_parallel = 2, .max_items = 1000};
    /* On the test's clock: unfinished things stay fresh for a second,
     * finished ones for ten minutes. */
    struct catalog_config cc = {.ttl_s = 1,
                                .terminal_ttl_s = 600,
                                .cache_bytes = 1 << 20,
                                .fetch_threads = fetch_threads,
                                .clock = fake_clock_now};

    fake_clock_reset();
    env->fake = fake_transport_new();
    ac.transport = fake_transport_transport(env->fake);
    env->api = api_new(&ac);
    cc.api = env->api;
    env->catalog = catalog_new(&cc);
    assert_non_null(env->catalog);
    fake_transport_add_body(
        env->fake, "/api/v1/beta/batch-processing?*offset=0*", 200,
        "{\"items\": [{\"id\": \"bjb-done1\", \"status\": \"completed\", \"job_type\": "
        "\"parse\", \"project_id\": \"p\", \"total_items\": 1}, {\"id\": \"bjb-run1\", "
        "\"status\": \"running\", \"job_type\": \"parse\", \"project_id\": \"p\", "
        "\"total_items\": 1}, {\"id\": \"not an id\", \"status\": \"running\"}], "
        "\"next_page_token\": null, \"total_size\": 3}");
    fake_transport_add_body(env->fake, "/api/v1/beta/batch-processing?*", 200,
                            "{\"items\": []}");
    fake_transport_add_body(env->fake, "/api/v1/beta/batch-processing/*/items?*offset=0*",
                            200,
                            "{\"items\": [{\"item_id\": \"i1\", \"item_name\": \"x.pdf\", "
                            "\"status\": \"completed\"}], \"total_size\": 1}");
    fake_transport_add_body(env->fake, "/api/v1/beta/batch-processing/*/items?*", 200,
                            "{\"items\": []}");
    *state = env;
    return 0;
}

/* Fetches run on the caller's thread. */
static int env_setup(void **state)
{
    return env_setup_threads(state, 0);
}

/* Fetches run on two threads of the cache's, as in the filesystem. */
static int env_setup_fetching(void **state)
{
    return env_setup_threads(state, 2);
}

static int env_teardown(void **state)
{
    struct env *env = *state;

    catalog_free(env->catalog);
    api_free(env->api);
    fake_transport_free(env->fake);
    free(env);
    return 0;
}

static void test_jobs_listing_drops_non_ids(void **state)
{
    struct env *env = *state;
    struct listing *jobs;

    assert_int_equal(catalog_jobs(env->catalog, &jobs), 0);
    assert_int_equal(jobs->count, 2);
    assert_non_null(listing_find(jobs, "bjb-done1"));
    assert_non_null(listing_find(jobs, "bjb-run1"));
    assert_null(listing_find(jobs, "not an id"));
    listing_release(jobs);
}

/* A folder opened while the job list is read gets the stream, which says
 * how many jobs the list announced (its total_size), so that the folder
 * makes room for all of them at once. */
static void test_job_stream_says_total(void **state)
{
    struct env *env = *state;
    struct listing *jobs = NULL;
    struct stream *stream = NULL;

    assert_int_equal(catalog_jobs_open(env->catalog, &jobs, &stream), 0);
    assert_null(jobs);
    assert_non_null(stream);
    /* Waits for the same fetch: the stream has ended when it returns. */
    assert_int_equal(catalog_jobs(env->catalog, &jobs), 0);
    assert_true(stream_done(stream, NULL));
    assert_int_equal(stream_count(stream), 2);     /* "not an id" is left out */
    assert_int_equal(stream_announced(stream), 3); /* as the page said */
    catalog_jobs_close(env->catalog, stream);
    stream_release(stream);
    listing_release(jobs);
}

/* A folder opened and closed at once calls off the fetch it started; one
 * opened right after never gets that fetch's stream, which ends with
 * ECANCELED, but the job list read anew. The fetch thread is let run for
 * a varying while between the two, so that across the rounds the close
 * lands before the fetch starts, as it takes its stream, and while it
 * reads. */
#define REOPEN_ROUNDS 3000

static void test_reopen_after_calling_off(void **state)
{
    struct env *env = *state;

    for (unsigned round = 0; round < REOPEN_ROUNDS; round++) {
        struct listing *jobs = NULL, *waited = NULL;
        struct stream *stream = NULL;
        volatile unsigned spin = 0;
        int rc = 0;

        fake_clock_advance(2); /* past the listing's ttl: each round fetches */
        assert_int_equal(catalog_jobs_open(env->catalog, &jobs, &stream), 0);
        assert_null(jobs);
        assert_non_null(stream);
        while (spin < (round % 97) * 50)
            spin++;
        catalog_jobs_close(env->catalog, stream);
        stream_release(stream);

        assert_int_equal(catalog_jobs_open(env->catalog, &jobs, &stream), 0);
        if (stream) {
            assert_int_equal(catalog_jobs(env->catalog, &waited), 0);
            listing_release(waited);
            assert_true(stream_done(stream, &rc));
            assert_int_equal(rc, 0);
            assert_int_equal(stream_count(stream), 2);
            catalog_jobs_close(env->catalog, stream);
            stream_release(stream);
        } else {
            assert_int_equal(jobs->count, 2);
            listing_release(jobs);
        }
    }
}

static void test_finished_jobs_cached_longer(void **state)
{
    struct env *env = *state;
    struct listing *jobs, *items;
    size_t before;

    assert_int_equal(catalog_jobs(env->catalog, &jobs), 0);
    listing_release(jobs);
    assert_int_equal(catalog_items(env->catalog, "bjb-done1", 2, &items), 0);
    assert_int_equal(items->count, 1);
    assert_string_equal(items->entries[0].name, "x.pdf.json");
    listing_release(items);
    assert_int_equal(catalog_items(env->catalog, "bjb-run1", 2, &items), 0);
    listing_release(items);
    fake_clock_advance(60);
    before = fake_transport_count(env->fake);
    /* The finished job's items are still fresh: no request. */
    assert_int_equal(catalog_items(env->catalog, "bjb-done1", 2, &items), 0);
    listing_release(items);
    assert_int_equal(fake_transport_count(env->fake), before);
    /* The running job's have expired. */
    assert_int_equal(catalog_items(env->catalog, "bjb-run1", 2, &items), 0);
    listing_release(items);
    assert_true(fake_transport_count(env->fake) > before);
    assert_int_equal(catalog_items(env->catalog, "bjb-run1", 6, &items), -EINVAL);
}

/* A server without the batch list is asked again an hour later, on the
 * catalog's clock; meanwhile the batches looked up stand in for the list. */
static void test_missing_batch_list_asked_hourly(void **state)
{
    struct env *env = *state;
    struct listing *batches;

    fake_transport_add_body(env->fake, "/api/v2/batches*", 404, "{\"detail\": \"Not Found\"}");
    assert_int_equal(catalog_batches(env->catalog, &batches), 0);
    assert_int_equal(batches->count, 0);
    listing_release(batches);
    assert_int_equal(fake_transport_count_matching(env->fake, "/api/v2/batches*"), 1);
    fake_clock_advance(3599);
    assert_int_equal(catalog_batches(env->catalog, &batches), 0);
    listing_release(batches);
    assert_int_equal(fake_transport_count_matching(env->fake, "/api/v2/batches*"), 1);
    fake_clock_advance(2);
    assert_int_equal(catalog_batches(env->catalog, &batches), 0);
    listing_release(batches);
    assert_int_equal(fake_transport_count_matching(env->fake, "/api/v2/batches*"), 2);
}

/* The counters of the jobs in the job list size their folders' first
 * fetch too: they are noted as the list's pages come. */
static void test_job_list_counters_size_first_fetch(void **state)
{
    struct env *env = *state;
    struct listing *jobs, *items;

    fake_transport_reset(env->fake);
    fake_transport_add_body(
        env->fake, "/api/v1/beta/batch-processing?*offset=0*", 200,
        "{\"items\": [{\"id\": \"bjb-big1\", \"status\": \"completed\", "
        "\"total_items\": 5000, \"processed_items\": 4500, "
        "\"failed_items\": 200, \"skipped_items\": 300}, "
        "{\"id\": \"bjb-big2\", \"status\": \"running\"}], "
        "\"total_size\": 2}");
    fake_transport_add_body(env->fake, "/api/v1/beta/batch-processing?*", 200,
                            "{\"items\": [], \"total_size\": 2}");
    fake_transport_add_body(
        env->fake, "*/items?*offset=0&status=completed*", 200,
        "{\"items\": [{\"item_id\": \"i1\", \"item_name\": \"x.pdf\", "
        "\"status\": \"completed\"}], \"total_size\": 1}");
    fake_transport_add_body(env->fake, "/api/v1/beta/batch-processing/*/items?*", 200,
                            "{\"items\": [], \"total_size\": 0}");
    assert_int_equal(catalog_jobs(env->catalog, &jobs), 0);
    assert_int_equal(jobs->count, 2);
    listing_release(jobs);
    /* completed/: 4500 - 200 - 300 = 4000 may be there. */
    assert_int_equal(catalog_items(env->catalog, "bjb-big1", 2, &items), 0);
    assert_int_equal(items->count, 1);
    listing_release(items);
    assert_int_equal(
        fake_transport_count_matching(env->fake, "*bjb-big1/items?*offset=1000*"), 1);
    /* bjb-big2 has no counters: one page first. */
    assert_int_equal(catalog_items(env->catalog, "bjb-big2", 2, &items), 0);
    listing_release(items);
    assert_int_equal(
        fake_transport_count_matching(env->fake, "*bjb-big2/items?*offset=1000*"), 0);
    assert_int_equal(fake_transport_unmatched(env->fake), 0);
}

/* A job's counters size its folders' first fetch: a folder that holds
 * more than a page asks for its pages at once; one that does not, or has
 * no count, asks for one, and so does a folder of a job never seen. */
static void test_job_counters_size_first_fetch(void **state)
{
    struct env *env = *state;
    struct listing *owner, *items;
    const struct entry *job;

    fake_transport_reset(env->fake);
    fake_transport_add_body(env->fake, "/api/v1/beta/batch-processing/bjb-big1", 200,
                            "{\"job\": {\"id\": \"bjb-big1\", \"status\": \"running\", "
                            "\"job_type\": \"parse\", \"project_id\": \"p\", "
                            "\"total_items\": 5000, \"processed_items\": 4500, "
                            "\"failed_items\": 200, \"skipped_items\": 300}}");
    /* A first page that is not empty, so that no request is skipped. */
    for (int i = 0; i < CATALOG_ITEM_STATUS_COUNT; i++) {
        char pattern[128], body[256];

        snprintf(pattern, sizeof(pattern), "*/items?*offset=0&status=%s*",
                 catalog_item_statuses[i]);
        snprintf(body, sizeof(body),
                 "{\"items\": [{\"item_id\": \"i1\", \"item_name\": \"x.pdf\", "
                 "\"status\": \"%s\"}], \"total_size\": 1}",
                 catalog_item_statuses[i]);
        fake_transport_add_body(env->fake, pattern, 200, body);
    }
    fake_transport_add_body(env->fake, "/api/v1/beta/batch-processing/*/items?*", 200,
                            "{\"items\": [], \"total_size\": 0}");
    assert_int_equal(catalog_job(env->catalog, "bjb-big1", &owner, &job), 0);
    listing_release(owner);
    /* completed/: 4500 - 200 - 300 = 4000 may be there. */
    assert_int_equal(catalog_items(env->catalog, "bjb-big1", 2, &items), 0);
    assert_int_equal(items->count, 1);
    listing_release(items);
    assert_int_equal(
        fake_transport_count_matching(env->fake, "*offset=1000&status=completed*"), 1);
    /* failed/ (200) fits in a page; pending/ has no count of its own. */
    assert_int_equal(catalog_items(env->catalog, "bjb-big1", 3, &items), 0);
    listing_release(items);
    assert_int_equal(catalog_items(env->catalog, "bjb-big1", 0, &items), 0);
    listing_release(items);
    assert_int_equal(catalog_items(env->catalog, "bjb-unseen1", 2, &items), 0);
    listing_release(items);
    assert_int_equal(fake_transport_count_matching(env->fake, "*offset=1000*"), 1);
    assert_int_equal(fake_transport_unmatched(env->fake), 0);
}

/* An empty folder is a listing of no entries (once a sanitizer error: the
 * empty entry array was handed to qsort). */
static void test_empty_listing(void **state)
{
    struct env *env = *state;
    struct listing *items;

    fake_transport_reset(env->fake);
    fake_transport_add_body(env->fake, "*", 200, "{\"items\": [], \"total_size\": 0}");
    assert_int_equal(catalog_items(env->catalog, "bjb-run1", 0, &items), 0);
    assert_int_equal(items->count, 0);
    assert_null(listing_find(items, "x.json"));
    listing_release(items);
}

/* Reads a whole file the way the filesystem does, in pieces of `piece`. */
static char *read_content(const struct blob *content, size_t piece)
{
    struct buf scratch = BUF_INIT;
    size_t len, off = 0;
    char *all;

    assert_int_equal(blob_measure(content, &len), 0);
    all = malloc(len + 1);
    assert_non_null(all);
    for (;;) {
        const char *bytes;
        long n = blob_read(content, off, piece, &scratch, &bytes);

        assert_true(n >= 0);
        if (n == 0)
            break;
        memcpy(all + off, bytes, (size_t)n);
        off += (size_t)n;
    }
    assert_int_equal(off, len);
    all[off] = '\0';
    buf_free(&scratch);
    return all;
}

/* Item files are their objects pretty-printed: small ones rendered when
 * read, from the page's text, big ones once when listed; the same bytes
 * whichever way, and the text the fields are read from is the object's. */
static void test_item_files(void **state)
{
    struct env *env = *state;
    static const char small[] = "{\"item_id\":\"i1\",\"item_name\":\"a.pdf\","
                                "\"status\":\"completed\",\"x\":[1, 2.50,{}]}";
    size_t big_len = (70u << 10) + 100;
    char *big = malloc(big_len + 1), *page = malloc(big_len + 200), *got;
    struct listing *items;
    struct buf expect = BUF_INIT;
    const struct entry *e;
    const char *text;
    size_t len;

    snprintf(big, big_len + 1, "{\"item_id\":\"i2\",\"item_name\":\"b.pdf\","
                               "\"status\":\"completed\",\"pad\":\"");
    memset(big + strlen(big), 'p', big_len - strlen(big) - 2);
    memcpy(big + big_len - 2, "\"}", 3);
    snprintf(page, big_len + 200, "{\"items\": [%s, %s], \"total_size\": 2}", small, big);
    fake_transport_reset(env->fake);
    fake_transport_add(env->fake, &(struct fake_rule){.pattern = "*", .body = page});
    assert_int_equal(catalog_items(env->catalog, "bjb-run1", 2, &items), 0);
    assert_int_equal(items->count, 2);

    e = listing_find(items, "a.pdf.json");
    assert_non_null(e);
    assert_null(blob_bytes(e->content)); /* rendered on read */
    assert_int_equal(blob_text_begin(e->content, &text, &len), 0);
    assert_int_equal(len, strlen(small));
    assert_memory_equal(text, small, len);
    blob_text_end(e->content);
    assert_int_equal(jsontext_pretty(small, strlen(small), &expect), 0);
    assert_int_equal(blob_len(e->content), expect.len);
    for (size_t piece = 1; piece <= expect.len; piece += 7) {
        got = read_content(e->content, piece);
        assert_memory_equal(got, expect.data, expect.len);
        free(got);
    }

    e = listing_find(items, "b.pdf.json");
    assert_non_null(e);
    assert_non_null(blob_bytes(e->content)); /* rendered once */
    buf_reset(&expect);
    assert_int_equal(jsontext_pretty(big, big_len, &expect), 0);
    assert_int_equal(blob_len(e->content), expect.len);
    assert_memory_equal(blob_bytes(e->content), expect.data, expect.len);
    got = read_content(e->content, 4096);
    assert_memory_equal(got, expect.data, expect.len);
    free(got);

    listing_release(items);
    buf_free(&expect);
    free(big);
    free(page);
}

/* A listing the cache evicted while someone still held it is handed back
 * by the next fetch of its key, with no request and no second copy; once
 * nobody holds it, after everything was expired, or once it is out of date,
 * it is fetched again. */
static void test_listing_in_use_found_again(void **state)
{
    struct env *env = *state;
    struct catalog_config cc = {.api = env->api,
                                .ttl_s = 600,
                                .terminal_ttl_s = 600,
                                .cache_bytes = 1,
                                .clock = fake_clock_now};
    struct catalog *small = catalog_new(&cc);
    struct listing *held, *other, *again;
    struct catalog_stats st;
    uint64_t generation;
    size_t before;

    assert_non_null(small);
    assert_int_equal(catalog_items(small, "bjb-done1", 2, &held), 0);
    generation = held->generation;
    /* A budget of one byte keeps nothing once another listing arrives. */
    assert_int_equal(catalog_items(small, "bjb-done1", 0, &other), 0);
    listing_release(other);
    catalog_get_stats(small, &st);
    assert_true(st.evictions >= 1);

    before = fake_transport_count(env->fake);
    assert_int_equal(catalog_items(small, "bjb-done1", 2, &again), 0);
    assert_ptr_equal(again, held);
    assert_int_equal(fake_transport_count(env->fake), before);
    catalog_get_stats(small, &st);
    assert_int_equal(st.reused, 1);
    listing_release(again);

    /* Expired by the user: fetched again although still held. */
    catalog_expire_all(small);
    assert_int_equal(catalog_items(small, "bjb-done1", 0, &other), 0);
    listing_release(other);
    assert_int_equal(catalog_items(small, "bjb-done1", 2, &again), 0);
    assert_ptr_not_equal(again, held);
    assert_true(fake_transport_count(env->fake) > before);

    /* Out of date by the catalog's clock: fetched again although still held. */
    fake_clock_advance(601);
    before = fake_transport_count(env->fake);
    assert_int_equal(catalog_items(small, "bjb-done1", 2, &other), 0);
    assert_ptr_not_equal(other, again);
    assert_true(fake_transport_count(env->fake) > before);
    listing_release(other);
    listing_release(again);

    /* Released by everyone: gone, and fetched again. */
    listing_release(held);
    assert_int_equal(catalog_items(small, "bjb-done1", 0, &other), 0);
    listing_release(other);
    before = fake_transport_count(env->fake);
    assert_int_equal(catalog_items(small, "bjb-done1", 2, &again), 0);
    assert_true(again->generation != generation);
    assert_true(fake_transport_count(env->fake) > before);
    catalog_get_stats(small, &st);
    assert_int_equal(st.reused, 1);
    /* Held past the catalog's end: still valid, released without it. */
    catalog_free(small);
    assert_int_equal(again->count, 1);
    listing_release(again);
}

#define REVIVE_THREADS 4
#define REVIVE_ROUNDS 300

struct revive_run {
    struct catalog *catalog;
    size_t counts[2]; /* of the two folders, seen before the threads start */
};

static int revive_status(int round)
{
    return round % 2 ? 2 : 0;
}

/* Each thread takes and drops two folders of a catalog that keeps nothing:
 * listings are revived while others let go of their last reference. */
static void *revive_worker(void *arg)
{
    struct revive_run *run = arg;

    for (int i = 0; i < REVIVE_ROUNDS; i++) {
        struct listing *l;
        bool same;

        if (catalog_items(run->catalog, "bjb-done1", revive_status(i), &l) != 0)
            return (void *)1;
        same = l->count == run->counts[i % 2] &&
               (!l->count || strcmp(l->entries[0].name, "x.pdf.json") == 0);
        listing_release(l);
        if (!same)
            return (void *)1;
    }
    return NULL;
}

static void test_listing_revived_under_threads(void **state)
{
    struct env *env = *state;
    struct catalog_config cc = {.api = env->api, .ttl_s = 600, .terminal_ttl_s = 600,
                                .cache_bytes = 1};
    struct revive_run run = {.catalog = catalog_new(&cc)};
    pthread_t threads[REVIVE_THREADS];
    struct listing *l;
    void *failed;

    assert_non_null(run.catalog);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(catalog_items(run.catalog, "bjb-done1", revive_status(i), &l), 0);
        run.counts[i] = l->count;
        listing_release(l);
    }
    assert_int_equal(run.counts[1], 1);
    for (int i = 0; i < REVIVE_THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, revive_worker, &run), 0);
    for (int i = 0; i < REVIVE_THREADS; i++) {
        assert_int_equal(pthread_join(threads[i], &failed), 0);
        assert_null(failed);
    }
    catalog_free(run.catalog);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_time),
        cmocka_unit_test(test_entry_mtime),
        cmocka_unit_test(test_statuses),
        cmocka_unit_test_setup_teardown(test_job_stream_says_total, env_setup_fetching,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_reopen_after_calling_off, env_setup_fetching,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_jobs_listing_drops_non_ids, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_finished_jobs_cached_longer, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_missing_batch_list_asked_hourly, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_empty_listing, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_item_files, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_job_counters_size_first_fetch, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_job_list_counters_size_first_fetch,
                                        env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_listing_in_use_found_again, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_listing_revived_under_threads, env_setup,
                                        env_teardown),
    };

    log_setup(getenv("TEST_LOG_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR, false);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
