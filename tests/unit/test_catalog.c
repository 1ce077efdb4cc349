/*
 * Unit tests of the catalog's pure parts and of its caching rules
 * (fs/catalog.c), with the API scripted by the fake transport.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "batchfs/api.h"
#include "batchfs/catalog.h"
#include "batchfs/log.h"
#include "fake_transport.h"

static void test_parse_time(void **state)
{
    struct timespec ts;

    (void)state;
    assert_int_equal(catalog_parse_time("2019-12-27T18:11:19.117Z", &ts), 0);
    assert_int_equal(ts.tv_sec, 1577470279);
    assert_int_equal(ts.tv_nsec, 117000000);
    assert_int_equal(catalog_parse_time("2019-12-27T18:11:19Z", &ts), 0);
    assert_int_equal(ts.tv_nsec, 0);
    assert_int_equal(catalog_parse_time("2019-12-27T20:11:19+02:00", &ts), 0);
    assert_int_equal(ts.tv_sec, 1577470279);
    assert_int_equal(catalog_parse_time("2019-12-27T16:11:19.5-02:00", &ts), 0);
    assert_int_equal(ts.tv_sec, 1577470279);
    assert_int_equal(ts.tv_nsec, 500000000);
    assert_int_equal(catalog_parse_time("2019-12-27 18:11:19Z", &ts), 0);
    /* Without a zone the API's UTC is assumed. */
    assert_int_equal(catalog_parse_time("2019-12-27T18:11:19", &ts), 0);
    assert_int_equal(ts.tv_sec, 1577470279);
    assert_int_equal(catalog_parse_time("yesterday", &ts), -EINVAL);
    assert_int_equal(catalog_parse_time("", &ts), -EINVAL);
    assert_int_equal(catalog_parse_time("2019-12-27T18:11:19Zjunk", &ts), -EINVAL);
    assert_int_equal(catalog_parse_time("2019-12-27T18:11:19+25:00", &ts), -EINVAL);
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

static int env_setup(void **state)
{
    struct env *env = calloc(1, sizeof(*env));
    struct api_config ac = {.page_size = 1000, .max_parallel = 2, .max_items = 1000};
    /* Unfinished things expire at once; finished ones are kept. */
    struct catalog_config cc = {.ttl_s = 0.001, .terminal_ttl_s = 600,
                                .cache_bytes = 1 << 20};

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
    usleep(20000);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_time),
        cmocka_unit_test(test_statuses),
        cmocka_unit_test_setup_teardown(test_jobs_listing_drops_non_ids, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_finished_jobs_cached_longer, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_empty_listing, env_setup, env_teardown),
    };

    log_setup(getenv("TEST_LOG_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR, false);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
