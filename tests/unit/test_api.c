/*
 * Unit tests for api, and for listpages through api's list endpoints (the
 * engine sends its requests through api, so the two are tested as one):
 * URLs and escaping, every pagination dialect end to end, parallel pages
 * delivered in order, malformed pages, the status to errno mapping,
 * callback aborts, and the v2 batch endpoints — all against the scripted
 * transport in fake_transport.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "batchfs/api.h"
#include "batchfs/log.h"
#include "failing_alloc.h"
#include "fake_transport.h"

/* ---- what a listing delivered ------------------------------------------ */

struct collected {
    char **ids;
    char **raws;
    size_t n;
    size_t calls;
    size_t abort_on_call; /* return abort_rc on this call (1-based); 0 = never */
    int abort_rc;
    const char *id_key;
    atomic_int inside; /* callbacks running right now */
    bool overlapped;   /* two callbacks ran at once */
    bool raw_mismatch; /* an object's raw bytes did not parse to it */
};

static int collect(void *arg, const struct api_object *objects, size_t count)
{
    struct collected *c = arg;
    int rc = 0;

    if (atomic_fetch_add(&c->inside, 1) != 0)
        c->overlapped = true;
    c->calls++;
    if (c->abort_on_call && c->calls == c->abort_on_call) {
        rc = c->abort_rc;
        goto out;
    }
    c->ids = realloc(c->ids, (c->n + count) * sizeof(*c->ids));
    c->raws = realloc(c->raws, (c->n + count) * sizeof(*c->raws));
    assert_non_null(c->ids);
    assert_non_null(c->raws);
    for (size_t i = 0; i < count; i++) {
        /* jansson, as an independent reader: the raw bytes must be one
         * object whose identity member is the id handed on, decoded. */
        json_t *reparsed =
            json_loadb(objects[i].raw, objects[i].raw_len,
                       JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, NULL);
        const json_t *id = json_object_get(reparsed, c->id_key);

        assert_true(json_is_object(reparsed));
        assert_true(json_is_string(id));
        if (json_string_length(id) != objects[i].id_len ||
            memcmp(json_string_value(id), objects[i].id, objects[i].id_len) != 0 ||
            objects[i].id[objects[i].id_len] != '\0')
            c->raw_mismatch = true;
        json_decref(reparsed);
        c->ids[c->n] = strndup(objects[i].id, objects[i].id_len);
        c->raws[c->n] = strndup(objects[i].raw, objects[i].raw_len);
        assert_non_null(c->ids[c->n]);
        assert_non_null(c->raws[c->n]);
        c->n++;
    }
out:
    atomic_fetch_sub(&c->inside, 1);
    return rc;
}

static void collected_free(struct collected *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->ids[i]);
        free(c->raws[i]);
    }
    free(c->ids);
    free(c->raws);
}

/* ---- a simulated v1 list server ---------------------------------------- */

enum sim_tokens { SIM_TOKENS_NONE, SIM_TOKENS_NEXT, SIM_TOKENS_REPEAT };

struct sim {
    size_t n_items;
    size_t cap; /* most items per page, below limit */
    enum sim_tokens tokens;
    size_t total; /* total_size to report; 0 = absent */
    size_t short_at, short_len;
    bool later_pages_faster;
    bool ignores_offset; /* every page starts at the first item */
    size_t fail_at;      /* offset answered with fail_status (when fail_status) */
    long fail_status;
};

static size_t query_number(const char *path_query, const char *name, size_t fallback)
{
    char key[32];
    const char *p;

    snprintf(key, sizeof(key), "%s=", name);
    p = strstr(path_query, key);
    if (!p || (p[-1] != '?' && p[-1] != '&'))
        return fallback;
    return strtoull(p + strlen(key), NULL, 10);
}

static int sim_get(void *arg, const char *path_query, struct http_response *out)
{
    const struct sim *s = arg;
    size_t offset = query_number(path_query, "offset", 0);
    size_t limit = query_number(path_query, "limit", 1000);
    const char *token = strstr(path_query, "page_token=t");
    size_t start = token ? strtoull(token + strlen("page_token=t"), NULL, 10) : offset;
    size_t count = start < s->n_items ? s->n_items - start : 0;
    int rc = 0;

    if (s->tokens == SIM_TOKENS_REPEAT)
        start = offset;
    if (s->ignores_offset)
        start = 0;
    count = start < s->n_items ? s->n_items - start : 0;
    if (count > limit)
        count = limit;
    if (count > s->cap)
        count = s->cap;
    if (s->short_len && start == s->short_at && count > s->short_len)
        count = s->short_len;
    if (s->later_pages_faster) {
        struct timespec ts = {0, (long)(s->n_items - (start < s->n_items ? start : 0)) *
                                     2000L};
        nanosleep(&ts, NULL);
    }
    out->attempts = 1;
    if (s->fail_status && offset == s->fail_at) {
        out->status = s->fail_status;
        return buf_append_str(&out->body, "{\"detail\": \"failed\"}");
    }
    out->status = 200;
    rc = buf_append_str(&out->body, "{\"items\": [");
    for (size_t i = start; rc == 0 && i < start + count; i++)
        rc = buf_printf(&out->body,
                        "%s{\"item_id\": \"it-%06zu\", \"item_name\": \"f%zu.pdf\", "
                        "\"status\": \"completed\"}",
                        i > start ? ", " : "", i, i);
    if (rc == 0)
        rc = buf_append_str(&out->body, "]");
    if (rc == 0 && count > 0 && s->tokens == SIM_TOKENS_REPEAT)
        rc = buf_append_str(&out->body, ", \"next_page_token\": \"same\"");
    else if (rc == 0 && s->tokens == SIM_TOKENS_NEXT && start + count < s->n_items)
        rc = buf_printf(&out->body, ", \"next_page_token\": \"t%zu\"", start + count);
    if (rc == 0 && s->total)
        rc = buf_printf(&out->body, ", \"total_size\": %zu", s->total);
    if (rc == 0)
        rc = buf_append_str(&out->body, "}");
    return rc;
}

/* ---- fixtures ---------------------------------------------------------- */

struct env {
    struct fake_transport *fake;
    struct api *api;
};

static struct api *make_api(struct fake_transport *fake, unsigned page_size,
                            unsigned max_parallel, size_t max_items, const char *org,
                            const char *project)
{
    struct api_config config = {
        .transport = fake_transport_transport(fake),
        .project_id = project,
        .organization_id = org,
        .page_size = page_size,
        .max_parallel = max_parallel,
        .max_items = max_items,
    };

    return api_new(&config);
}

static int setup(void **state)
{
    struct env *env = calloc(1, sizeof(*env));

    if (!env)
        return -1;
    env->fake = fake_transport_new();
    if (!env->fake)
        return -1;
    env->api = make_api(env->fake, 1000, 4, 1000000, NULL, NULL);
    if (!env->api)
        return -1;
    *state = env;
    return 0;
}

static int teardown(void **state)
{
    struct env *env = *state;

    api_free(env->api);
    fake_transport_free(env->fake);
    free(env);
    return 0;
}

static void add_sim(struct env *env, struct sim *sim)
{
    struct fake_rule rule = {.pattern = "*", .handler = sim_get, .handler_arg = sim};

    assert_int_equal(fake_transport_add(env->fake, &rule), 0);
}

static void assert_items_complete(const struct collected *c, size_t n)
{
    char want[32];

    assert_int_equal(c->n, n);
    for (size_t i = 0; i < n; i++) {
        snprintf(want, sizeof(want), "it-%06zu", i);
        assert_string_equal(c->ids[i], want);
    }
    assert_false(c->overlapped);
    assert_false(c->raw_mismatch);
}

static int list_items(struct env *env, struct collected *c)
{
    c->id_key = "item_id";
    return api_list_items(env->api, "bjb-1", "completed", collect, c);
}

/* ---- URLs -------------------------------------------------------------- */

static int ignore_objects(void *arg, const struct api_object *objects, size_t count)
{
    (void)arg;
    (void)objects;
    (void)count;
    return 0;
}

static void test_url_escaping(void **state)
{
    struct env *env = *state;

    fake_transport_add_fixture(env->fake, "/api/v1/beta/batch-processing/*", 200,
                               "job.json");
    assert_int_equal(api_get_job(env->api, "a/b?c%d é&x=~y", ignore_objects, NULL), 0);
    assert_string_equal(fake_transport_request(env->fake, 0),
                        "/api/v1/beta/batch-processing/a%2Fb%3Fc%25d%20%C3%A9%26x%3D~y");
}

static void test_url_list_items_and_token(void **state)
{
    struct env *env = *state;
    struct collected c = {.id_key = "item_id"};

    fake_transport_add_fixture(env->fake, "*offset=0*", 200, "token_page1.json");
    fake_transport_add_fixture(env->fake, "*offset=1*", 200, "token_page2.json");
    assert_int_equal(api_list_items(env->api, "job/1", "completed", collect, &c), 0);
    assert_int_equal(c.n, 2);
    assert_int_equal(fake_transport_count(env->fake), 2);
    assert_string_equal(fake_transport_request(env->fake, 0),
                        "/api/v1/beta/batch-processing/job%2F1/items"
                        "?limit=1000&offset=0&status=completed");
    assert_string_equal(
        fake_transport_request(env->fake, 1),
        "/api/v1/beta/batch-processing/job%2F1/items"
        "?limit=1000&offset=1&status=completed&page_token=a%26b%3Dc%2Fd%20e");
    collected_free(&c);
}

static void test_org_and_project(void **state)
{
    struct env *env = *state;
    struct api *api = make_api(env->fake, 50, 2, 100, "org 1", "prj/1");

    assert_non_null(api);
    fake_transport_add_fixture(env->fake, "/api/v1/beta/batch-processing?*", 200,
                               "jobs_page.json");
    fake_transport_add_fixture(env->fake, "/api/v2/batches/*", 200,
                               "batch_results_null.json");
    fake_transport_add_fixture(env->fake, "/api/v2/batches?*", 200, "batches_page2.json");
    assert_int_equal(api_check_access(api), 0);
    assert_int_equal(api_list_jobs(api, ignore_objects, NULL), 0);
    assert_int_equal(api_list_batches(api, ignore_objects, NULL), 0);
    assert_string_equal(fake_transport_request(env->fake, 0),
                        "/api/v1/beta/batch-processing?limit=1"
                        "&organization_id=org%201&project_id=prj%2F1");
    assert_string_equal(fake_transport_request(env->fake, 1),
                        "/api/v1/beta/batch-processing?limit=50&offset=0"
                        "&organization_id=org%201&project_id=prj%2F1");
    assert_string_equal(fake_transport_request(env->fake, 2),
                        "/api/v2/batches?page_size=50"
                        "&organization_id=org%201&project_id=prj%2F1");
    api_free(api);
}

static void test_config_rejected(void **state)
{
    struct env *env = *state;

    assert_null(make_api(env->fake, 0, 1, 10, NULL, NULL));
    assert_null(make_api(env->fake, 1001, 1, 10, NULL, NULL));
    assert_null(make_api(env->fake, 10, 0, 10, NULL, NULL));
    assert_null(api_new(NULL));
}

/* ---- dialects end to end ----------------------------------------------- */

static void run_dialect(void **state, struct sim *sim, size_t expect_items,
                        size_t max_requests)
{
    struct env *env = *state;
    struct collected c = {0};

    add_sim(env, sim);
    assert_int_equal(list_items(env, &c), 0);
    assert_items_complete(&c, expect_items);
    assert_true(fake_transport_count(env->fake) <= max_requests);
    assert_int_equal(fake_transport_unmatched(env->fake), 0);
    collected_free(&c);
}

static void test_dialect_both(void **state)
{
    struct sim sim = {
        .n_items = 2500, .cap = 1000, .tokens = SIM_TOKENS_NEXT, .total = 2500};

    /* Fetched by offset in parallel: ceil(2500 / 1000) pages plus the one
     * that confirms the end past total_size. */
    run_dialect(state, &sim, 2500, 4);
}

static void test_dialect_token_only(void **state)
{
    struct sim sim = {.n_items = 2500, .cap = 1000, .tokens = SIM_TOKENS_NEXT};

    run_dialect(state, &sim, 2500, 3);
}

static void test_dialect_total_only(void **state)
{
    struct sim sim = {.n_items = 9500, .cap = 1000, .total = 9500};

    run_dialect(state, &sim, 9500, 11);
}

static void test_dialect_capped(void **state)
{
    struct sim sim = {.n_items = 2500, .cap = 300, .total = 2500};

    run_dialect(state, &sim, 2500, 10);
}

static void test_dialect_no_signal(void **state)
{
    struct sim sim = {.n_items = 2500, .cap = 1000};

    run_dialect(state, &sim, 1000, 1);
}

static void test_dialect_total_low(void **state)
{
    struct sim sim = {.n_items = 4200, .cap = 1000, .total = 1000};

    run_dialect(state, &sim, 4200, 6);
}

static void test_dialect_total_high(void **state)
{
    struct sim sim = {.n_items = 2500, .cap = 1000, .total = 1000000};

    /* The plan asks for 1000 pages, a wave for 64 of them; once the empty
     * page at 3000 is back and read, pages after it are not requested.
     * What may still go out past it: the 3 other pages on the wire when it
     * came back, and up to 4 sent while it was being read (2 x 4 - 1). */
    run_dialect(state, &sim, 2500, 4 + 2 * 4 - 1);
}

static void test_dialect_short_page(void **state)
{
    struct sim sim = {
        .n_items = 6000, .cap = 1000, .total = 6000, .short_at = 2000, .short_len = 10};

    run_dialect(state, &sim, 6000, 8);
}

static void test_dialect_repeated_token(void **state)
{
    struct sim sim = {.n_items = 5000, .cap = 1000, .tokens = SIM_TOKENS_REPEAT};

    /* Stops at the repeat: what was had is kept, not an error. */
    run_dialect(state, &sim, 2000, 2);
}

static void test_dialect_offset_ignored(void **state)
{
    struct sim sim = {
        .n_items = 5000, .cap = 1000, .total = 5000, .ignores_offset = true};

    /* Only the first page is reachable; repeats end the listing, no error. */
    run_dialect(state, &sim, 1000, 5);
}

static void test_dialect_empty(void **state)
{
    struct sim sim = {.n_items = 0, .cap = 1000, .total = 0};

    run_dialect(state, &sim, 0, 1);
}

static void test_parallel_in_order(void **state)
{
    struct env *env = *state;
    struct sim sim = {
        .n_items = 12000, .cap = 1000, .total = 12000, .later_pages_faster = true};

    run_dialect(state, &sim, 12000, 13);
    assert_true(fake_transport_max_concurrent(env->fake) > 1);
}

/* test_send_on_arrival's sim: pages from offset 2000 on are answered once
 * the gate opens; what it delivers through, which opens it from within
 * the second page's delivery. */
struct gated_sim {
    struct sim *sim;
    pthread_mutex_t lock;
    pthread_cond_t opened;
    bool open;
    struct collected c;
    struct fake_transport *fake;
    size_t pages;
    bool sent_meanwhile;
};

static int gated_sim_get(void *arg, const char *path_query, struct http_response *out)
{
    struct gated_sim *g = arg;

    if (query_number(path_query, "offset", 0) >= 2000) {
        pthread_mutex_lock(&g->lock);
        while (!g->open)
            pthread_cond_wait(&g->opened, &g->lock);
        pthread_mutex_unlock(&g->lock);
    }
    return sim_get(g->sim, path_query, out);
}

static int collect_gated(void *arg, const struct api_object *objects, size_t count)
{
    struct gated_sim *g = arg;

    /* The listing's thread stays here, in the second page's delivery,
     * until the page at 6000 is asked for. Pages 2000 to 5000 are on the
     * wire, held at the gate: only one of them arriving meanwhile can send
     * it. */
    if (++g->pages == 2) {
        pthread_mutex_lock(&g->lock);
        g->open = true;
        pthread_cond_broadcast(&g->opened);
        pthread_mutex_unlock(&g->lock);
        g->sent_meanwhile =
            fake_transport_wait_matching(g->fake, "*offset=6000*", 1, 10000);
    }
    return collect(&g->c, objects, count);
}

/* A page that arrives while the listing's thread delivers another sends
 * the next one at once: the wire does not wait for the listing's thread. */
static void test_send_on_arrival(void **state)
{
    struct env *env = *state;
    struct sim sim = {.n_items = 8000, .cap = 1000, .total = 8000};
    struct gated_sim g = {.sim = &sim, .c = {.id_key = "item_id"}, .fake = env->fake};
    struct fake_rule rule = {.pattern = "*", .handler = gated_sim_get, .handler_arg = &g};

    pthread_mutex_init(&g.lock, NULL);
    pthread_cond_init(&g.opened, NULL);
    assert_int_equal(fake_transport_add(env->fake, &rule), 0);
    assert_int_equal(api_list_items(env->api, "bjb-1", "completed", collect_gated, &g),
                     0);
    assert_true(g.sent_meanwhile);
    assert_items_complete(&g.c, 8000);
    assert_true(fake_transport_max_concurrent(env->fake) <= 4);
    collected_free(&g.c);
    pthread_cond_destroy(&g.opened);
    pthread_mutex_destroy(&g.lock);
}

static void test_page_error_mid_listing(void **state)
{
    struct env *env = *state;
    struct sim sim = {
        .n_items = 8000, .cap = 1000, .total = 8000, .fail_at = 3000, .fail_status = 500};
    struct collected c = {0};

    add_sim(env, &sim);
    assert_int_equal(list_items(env, &c), -EIO);
    /* What was delivered is a prefix, in order, and nothing from the failed
     * page on (pages are handed on a wave late, so fewer may be). */
    assert_true(c.n <= 3000);
    assert_items_complete(&c, c.n);
    collected_free(&c);
}

static void test_page_error_past_the_end(void **state)
{
    struct env *env = *state;
    struct sim sim = {.n_items = 1500,
                      .cap = 1000,
                      .total = 100000,
                      .fail_at = 3000,
                      .fail_status = 500};
    struct collected c = {0};

    add_sim(env, &sim);
    /* The wave overshoots a total that lied high; its failing page lies
     * past the empty one and does not matter. */
    assert_int_equal(list_items(env, &c), 0);
    assert_items_complete(&c, 1500);
    collected_free(&c);
}

static void test_callback_abort(void **state)
{
    struct env *env = *state;
    struct sim sim = {
        .n_items = 9000, .cap = 1000, .total = 9000, .later_pages_faster = true};
    struct collected c = {.abort_on_call = 3, .abort_rc = -EINTR};

    add_sim(env, &sim);
    assert_int_equal(list_items(env, &c), -EINTR);
    assert_int_equal(c.calls, 3);
    assert_items_complete(&c, 2000);
    collected_free(&c);
}

/* ---- the preparer's hooks --------------------------------------------- */

/* Keys the hooks' preparer asks for: two the API reads anyway (the status
 * it filters on, the identity) and one no object has. */
static const char *const hooks_keys[] = {"status", "item_id", "no_such_member"};

struct hooks_seen {
    struct collected c;
    atomic_size_t prepared, released; /* objects prepared, pages released */
    atomic_size_t fields_wrong;       /* objects whose fields differ from a lookup */
    size_t expect_calls, expected, delivered_before;
    struct api *api;
    atomic_size_t again_given;  /* pages that came with the means to fetch them again */
    atomic_size_t again_same;   /* ...which fetched again gave the same body */
    atomic_size_t again_tokens; /* ...whose means named a page token */
    size_t charge;              /* the preparer's charge (atomic) */
    size_t charge_at_expect;    /* ...as expect() found it */
};

static int hooks_prepare(void *arg, struct api_object *objects, size_t count, struct buf *body,
                         const char *again, void **page_state)
{
    struct hooks_seen *seen = arg;

    if (again) {
        struct buf same = BUF_INIT;

        atomic_fetch_add(&seen->again_given, 1);
        if (strstr(again, "page_token="))
            atomic_fetch_add(&seen->again_tokens, 1);
        if (!api_fetch_again(seen->api, again, &same) && same.len == body->len &&
            !memcmp(same.data, body->data, body->len))
            atomic_fetch_add(&seen->again_same, 1);
        buf_free(&same);
    }
    for (size_t i = 0; i < count; i++) {
        for (size_t k = 0; k < 3; k++) {
            struct json_span want = {0, 0};
            int rc = jsontext_member(objects[i].raw, objects[i].raw_len, hooks_keys[k], &want);

            if ((rc && rc != -ENOENT) || !objects[i].fields ||
                objects[i].fields[k].start != want.start ||
                objects[i].fields[k].len != want.len)
                atomic_fetch_add(&seen->fields_wrong, 1);
        }
    }
    atomic_fetch_add(&seen->prepared, count);
    *page_state = malloc(1);
    return *page_state ? 0 : -ENOMEM;
}

static void hooks_release(void *arg, void *page_state)
{
    struct hooks_seen *seen = arg;

    atomic_fetch_add(&seen->released, 1);
    free(page_state);
}

static void hooks_expect(void *arg, size_t total)
{
    struct hooks_seen *seen = arg;

    seen->expect_calls++;
    seen->expected = total;
    seen->charge_at_expect = __atomic_load_n(&seen->charge, __ATOMIC_RELAXED);
    seen->delivered_before = seen->c.n;
}

/* Lists 2500 items in pages of 1000 with the given total_size (or, when
 * there is none, next_page_tokens) and max_items; the hooks' findings in
 * *seen. */
static int list_with_hooks(struct env *env, size_t total, size_t max_items,
                           struct hooks_seen *seen)
{
    struct api *api = make_api(env->fake, 1000, 4, max_items, NULL, NULL);
    struct sim sim = {.n_items = 2500,
                      .cap = 1000,
                      .total = total,
                      .tokens = total ? SIM_TOKENS_NONE : SIM_TOKENS_NEXT};
    struct api_preparer preparer = {hooks_prepare, hooks_release, hooks_expect,
                                    hooks_keys,    3,             seen,
                                    &seen->charge};
    int rc;

    assert_non_null(api);
    add_sim(env, &sim);
    seen->c.id_key = "item_id";
    seen->api = api;
    rc = api_list_items_prepared(api, "bjb-1", "completed", 0, &preparer, collect,
                                 &seen->c);
    api_free(api);
    return rc;
}

/* expect() comes once, before the first objects, with the total_size;
 * not at all without one; and never above max_items. The keys asked for
 * come with every object, as a lookup of its own would find them. */
static void test_preparer_expect(void **state)
{
    struct env *env = *state;
    struct hooks_seen seen = {0}, none = {0}, capped = {0};

    assert_int_equal(list_with_hooks(env, 2500, 100000, &seen), 0);
    assert_items_complete(&seen.c, 2500);
    assert_int_equal(seen.expect_calls, 1);
    assert_int_equal(seen.expected, 2500);
    assert_int_equal(seen.delivered_before, 0);
    /* The room made for the announced ids is counted in the charge (16
     * bytes a cell and the ids' bytes), and no longer once it is over. */
    assert_true(seen.charge_at_expect >= 2500 * (16 + 8));
    assert_int_equal(seen.charge, 0);
    assert_true(atomic_load(&seen.prepared) >= 2500);
    assert_int_equal(atomic_load(&seen.fields_wrong), 0);
    assert_true(atomic_load(&seen.released) >= 3);
    /* Pages asked for by offset can be fetched again, and are the same. */
    assert_int_equal(atomic_load(&seen.again_given), 3);
    assert_int_equal(atomic_load(&seen.again_same), 3);
    assert_int_equal(atomic_load(&seen.again_tokens), 0);
    collected_free(&seen.c);

    assert_int_equal(list_with_hooks(env, 0, 100000, &none), 0);
    assert_items_complete(&none.c, 2500);
    assert_int_equal(none.expect_calls, 0);
    /* By tokens, only the first page (offset 0, no token) comes with them. */
    assert_int_equal(atomic_load(&none.again_given), 1);
    assert_int_equal(atomic_load(&none.again_same), 1);
    assert_int_equal(atomic_load(&none.again_tokens), 0);
    collected_free(&none.c);

    assert_int_equal(list_with_hooks(env, 1000000, 2600, &capped), 0);
    assert_int_equal(capped.expect_calls, 1);
    assert_int_equal(capped.expected, 2600);
    collected_free(&capped.c);
}

static void test_max_items(void **state)
{
    struct env *env = *state;
    struct api *api = make_api(env->fake, 100, 2, 250, NULL, NULL);
    struct sim sim = {.n_items = 1000, .cap = 100, .tokens = SIM_TOKENS_NEXT};
    struct collected c = {.id_key = "item_id"};

    assert_non_null(api);
    add_sim(env, &sim);
    assert_int_equal(api_list_items(api, "bjb-1", "completed", collect, &c), -EFBIG);
    assert_true(c.n <= 250);
    collected_free(&c);
    api_free(api);
}

/* ---- malformed pages --------------------------------------------------- */

static int list_fixture(void **state, const char *fixture, struct collected *c)
{
    struct env *env = *state;

    fake_transport_add_fixture(env->fake, "*", 200, fixture);
    return list_items(env, c);
}

static void test_malformed_bodies(void **state)
{
    static const char *const bad[] = {
        "not_json.json",        "not_object.json", "items_missing.json",
        "items_not_array.json", "items_null.json",
    };
    struct env *env = *state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct collected c = {0};

        fake_transport_reset(env->fake);
        assert_int_equal(list_fixture(state, bad[i], &c), -EIO);
        assert_int_equal(c.calls, 0);
        collected_free(&c);
    }
}

static void test_empty_and_raw_nul_bodies(void **state)
{
    struct env *env = *state;
    static const char with_nul[] = "{\"items\": []}\0trailing";
    struct collected c = {0};

    fake_transport_add_body(env->fake, "*", 200, "");
    assert_int_equal(list_items(env, &c), -EIO);
    fake_transport_reset(env->fake);
    fake_transport_add(env->fake, &(struct fake_rule){.pattern = "*",
                                                      .body = with_nul,
                                                      .body_len = sizeof(with_nul) - 1});
    assert_int_equal(list_items(env, &c), -EIO);
    assert_int_equal(c.calls, 0);
}

/* Integers beyond 64 bits in unknown fields are valid JSON: the page is
 * listed, the raw bytes keep every digit, and a total_size still counts. */
static void test_big_integers_kept(void **state)
{
    struct env *env = *state;
    static const char page[] =
        "{\"items\": [{\"item_id\": \"it-000000\", \"item_name\": \"a\", "
        "\"status\": \"completed\", \"x_big\": 12345678901234567890123}], "
        "\"total_size\": 1}";
    struct collected c = {0};

    fake_transport_add_body(env->fake, "*offset=0*", 200, page);
    fake_transport_add_body(env->fake, "*", 200, "{\"items\": []}");
    assert_int_equal(list_items(env, &c), 0);
    assert_int_equal(c.n, 1);
    assert_non_null(strstr(c.raws[0], "12345678901234567890123"));
    /* total_size = 1 was read: no page past it but the confirming one. */
    assert_true(fake_transport_count(env->fake) <= 2);
    collected_free(&c);
}

/* Pages past the end that hold nothing but junk end the listing (they once
 * kept it going page after page). */
static void test_junk_only_pages_end_the_listing(void **state)
{
    struct env *env = *state;
    struct collected c = {0};

    fake_transport_add_body(env->fake, "*offset=0*", 200,
                            "{\"items\": [{\"item_id\": \"it-000000\", \"item_name\": \"a\", "
                            "\"status\": \"completed\"}, 7, {\"item_id\": \"it-000001\", "
                            "\"item_name\": \"b\", \"status\": \"completed\"}], "
                            "\"total_size\": 2}");
    fake_transport_add_body(env->fake, "*", 200, "{\"items\": [1, \"x\", null, []]}");
    assert_int_equal(list_items(env, &c), 0);
    assert_items_complete(&c, 2);
    assert_true(fake_transport_count(env->fake) <= 3);
    collected_free(&c);
}

/* A page that gives one item twice still held that many objects: the next
 * page starts after all of them (one place earlier would repeat the last
 * one, cost a request and could end the listing as a loop). */
static void test_repeat_within_a_page_skips_nothing(void **state)
{
    struct env *env = *state;
    struct collected c = {0};

    fake_transport_add_body(env->fake, "*offset=0&*", 200,
                            "{\"items\": [{\"item_id\": \"it-000000\", \"status\": \"completed\"}, "
                            "{\"item_id\": \"it-000000\", \"status\": \"completed\"}, "
                            "{\"item_id\": \"it-000001\", \"status\": \"completed\"}], "
                            "\"next_page_token\": \"t2\"}");
    fake_transport_add_body(env->fake, "*offset=3&*", 200,
                            "{\"items\": [{\"item_id\": \"it-000002\", \"status\": \"completed\"}]}");
    fake_transport_add_body(env->fake, "*", 200, "{\"items\": []}");
    assert_int_equal(list_items(env, &c), 0);
    assert_items_complete(&c, 3);
    collected_free(&c);
}

/* Pages asked for ahead of the first on a job's counters, when the first
 * page rules them out (it is short), are dropped unread: one that failed,
 * or that the crew never requested, does not fail the listing. */
static void test_pages_ahead_dropped_even_failed(void **state)
{
    struct env *env = *state;
    struct collected c = {.id_key = "item_id"};

    fake_transport_add_body(env->fake, "*offset=0&*", 200,
                            "{\"items\": [{\"item_id\": \"it-000000\", \"status\": "
                            "\"completed\"}], \"total_size\": 1}");
    fake_transport_add_body(env->fake, "*offset=1000&*", 500, "{\"detail\": \"x\"}");
    fake_transport_add_body(env->fake, "*offset=2000&*", 404, "{\"detail\": \"x\"}");
    fake_transport_add_body(env->fake, "*", 200, "{\"items\": []}");
    assert_int_equal(
        api_list_items_prepared(env->api, "bjb-1", "completed", 5000, NULL, collect, &c),
        0);
    assert_items_complete(&c, 1);
    /* Asked for with the first: 1000, 2000 and 3000 (4 connections). */
    assert_int_equal(fake_transport_count_matching(env->fake, "*offset=3000&*"), 1);
    assert_int_equal(fake_transport_count_matching(env->fake, "*offset=4000&*"), 0);
    collected_free(&c);
}

static int count_objects(void *arg, const struct api_object *objects, size_t count)
{
    (void)objects;
    *(size_t *)arg += count;
    return 0;
}

/* Every allocation a listing makes fails in turn: the listing ends with
 * -ENOMEM (never a wrong errno, never a crash), and nothing leaks (the
 * sanitizer build checks that). */
static void test_out_of_memory(void **state)
{
    struct env *env = *state;
    bool completed = false;
    long n;

    fake_transport_add_fixture(env->fake, "*offset=0&*", 200, "items_mixed.json");
    fake_transport_add_body(env->fake, "*", 200, "{\"items\": []}");
    for (n = 0; n < 10000 && !completed; n++) {
        size_t count = 0;
        int rc;

        alloc_countdown = n;
        rc = api_list_items(env->api, "bjb-1", "completed", count_objects, &count);
        alloc_countdown = -1;
        if (rc == 0) {
            completed = true;
            assert_int_equal(count, 2);
        } else {
            assert_int_equal(rc, -ENOMEM);
        }
    }
    assert_true(completed);
    assert_true(n > 5); /* allocations were made, and failed, before it passed */
}

static void test_malformed_elements(void **state)
{
    struct collected c = {0};

    assert_int_equal(list_fixture(state, "items_mixed.json", &c), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.ids[0], "it-1");
    assert_string_equal(c.ids[1], "it-2");
    assert_string_equal(c.raws[1],
                        "{\"item_id\": \"it-2\", \"item_name\": \"b.pdf\", \"status\": "
                        "\"completed\"}");
    collected_free(&c);
}

static void test_wrong_field_types(void **state)
{
    struct env *env = *state;
    static const char *const fixtures[] = {"fields_wrong_types.json",
                                           "total_negative.json", "total_float.json"};

    for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
        struct collected c = {0};

        fake_transport_reset(env->fake);
        /* Token and total unusable: the listing ends after its one page. */
        assert_int_equal(list_fixture(state, fixtures[i], &c), 0);
        assert_int_equal(c.n, 1);
        assert_int_equal(fake_transport_count(env->fake), 1);
        collected_free(&c);
    }
}

static void test_nul_in_strings(void **state)
{
    struct env *env = *state;
    struct collected c = {0};

    assert_int_equal(list_fixture(state, "nul_in_strings.json", &c), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.ids[0], "d");
    assert_false(c.raw_mismatch);
    assert_non_null(strstr(c.raws[0], "x\\u0000y"));
    /* A token with a NUL cannot be sent back: it counts as absent. */
    assert_int_equal(fake_transport_count(env->fake), 1);
    collected_free(&c);
}

static void test_duplicate_ids(void **state)
{
    struct collected c = {0};

    assert_int_equal(list_fixture(state, "duplicate_ids.json", &c), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.ids[0], "it-1");
    assert_non_null(strstr(c.raws[0], "first.pdf"));
    assert_string_equal(c.ids[1], "it-2");
    collected_free(&c);
}

static void test_duplicate_keys(void **state)
{
    struct collected c = {0};

    /* The last "items" wins, and the last "item_id" within it, for the
     * parsed view and the raw bytes alike. */
    assert_int_equal(list_fixture(state, "duplicate_keys.json", &c), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.ids[0], "new");
    assert_non_null(strstr(c.raws[0], "new.pdf"));
    collected_free(&c);
}

static void test_wrong_status_dropped(void **state)
{
    struct collected c = {0};

    assert_int_equal(list_fixture(state, "items_wrong_status.json", &c), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.ids[0], "it-1");
    assert_string_equal(c.ids[1], "it-4");
    collected_free(&c);
}

static void test_jobs_raw_bytes(void **state)
{
    struct env *env = *state;
    struct collected c = {.id_key = "id"};

    fake_transport_add_fixture(env->fake, "*", 200, "jobs_page.json");
    assert_int_equal(api_list_jobs(env->api, collect, &c), 0);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.ids[2], "bjb-3");
    /* Number spellings survive: the raw bytes are what was received. */
    assert_non_null(strstr(c.raws[0], "\"score\": 1.50}"));
    assert_non_null(strstr(c.raws[1], "\"total_items\": 1e2}"));
    assert_string_equal(c.raws[2], "{\"id\": \"bjb-3\", \"job_type\": \"classify\", "
                                   "\"status\": \"failed\", \"total_items\": 0, "
                                   "\"extra\": {\"nested\": [1, 2, {\"a\": null}]}}");
    collected_free(&c);
}

/* ---- statuses ---------------------------------------------------------- */

static void test_status_mapping(void **state)
{
    static const struct {
        long status;
        int rc;
    } cases[] = {
        {400, -EIO}, {401, -EACCES}, {403, -EACCES}, {404, -ENOENT}, {405, -EIO},
        {408, -EIO}, {422, -EIO},    {429, -EAGAIN}, {500, -EIO},    {502, -EIO},
        {503, -EIO}, {302, -EIO},    {100, -EIO},
    };
    struct env *env = *state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct collected c = {.id_key = "item_id"};

        fake_transport_reset(env->fake);
        fake_transport_add_body(env->fake, "*", cases[i].status, "{\"detail\": \"x\"}");
        assert_int_equal(list_items(env, &c), cases[i].rc);
        assert_int_equal(api_list_jobs(env->api, collect, &c), cases[i].rc);
        assert_int_equal(api_get_job(env->api, "bjb-1", collect, &c), cases[i].rc);
        assert_int_equal(c.calls, 0);
    }
}

static void test_transport_errors_pass_through(void **state)
{
    static const int errors[] = {-ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH,
                                 -EPROTO,    -EFBIG,        -ECANCELED};
    struct env *env = *state;

    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
        struct collected c = {.id_key = "item_id"};

        fake_transport_reset(env->fake);
        fake_transport_add(env->fake,
                           &(struct fake_rule){.pattern = "*", .error = errors[i]});
        assert_int_equal(list_items(env, &c), errors[i]);
        assert_int_equal(api_check_access(env->api), errors[i]);
    }
}

static void test_check_access(void **state)
{
    struct env *env = *state;

    fake_transport_add(env->fake, &(struct fake_rule){.pattern = "*",
                                                      .status = 200,
                                                      .body = "not even json",
                                                      .times = 1});
    fake_transport_add(env->fake,
                       &(struct fake_rule){.pattern = "*", .status = 401, .times = 1});
    fake_transport_add(env->fake,
                       &(struct fake_rule){.pattern = "*", .status = 403, .times = 1});
    fake_transport_add(env->fake,
                       &(struct fake_rule){.pattern = "*", .status = 503, .times = 1});
    assert_int_equal(api_check_access(env->api), 0);
    assert_int_equal(api_check_access(env->api), -EACCES);
    assert_int_equal(api_check_access(env->api), -EACCES);
    assert_int_equal(api_check_access(env->api), -EIO);
    assert_string_equal(fake_transport_request(env->fake, 0),
                        "/api/v1/beta/batch-processing?limit=1");
}

/* ---- one job ----------------------------------------------------------- */

static void test_get_job(void **state)
{
    struct env *env = *state;
    struct collected c = {.id_key = "id"};

    fake_transport_add_fixture(env->fake, "*", 200, "job.json");
    assert_int_equal(api_get_job(env->api, "bjb-1", collect, &c), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.raws[0], "{\"id\": \"bjb-1\", \"job_type\": \"parse\", "
                                   "\"project_id\": \"prj-1\", \"status\": \"running\", "
                                   "\"total_items\": 10, \"ratio\": 0.10}");
    assert_string_equal(fake_transport_request(env->fake, 0),
                        "/api/v1/beta/batch-processing/bjb-1");
    collected_free(&c);
}

static void test_get_job_malformed(void **state)
{
    static const char *const bad[] = {"job_missing.json", "job_not_object.json",
                                      "job_without_id.json", "not_json.json",
                                      "not_object.json"};
    struct env *env = *state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct collected c = {.id_key = "id"};

        fake_transport_reset(env->fake);
        fake_transport_add_fixture(env->fake, "*", 200, bad[i]);
        assert_int_equal(api_get_job(env->api, "bjb-1", collect, &c), -EIO);
        assert_int_equal(c.calls, 0);
    }
}

static void test_get_job_callback_error(void **state)
{
    struct env *env = *state;
    struct collected c = {.id_key = "id", .abort_on_call = 1, .abort_rc = -ENOMEM};

    fake_transport_add_fixture(env->fake, "*", 200, "job.json");
    assert_int_equal(api_get_job(env->api, "bjb-1", collect, &c), -ENOMEM);
}

/* ---- v2 batches -------------------------------------------------------- */

static void test_batches_missing(void **state)
{
    struct env *env = *state;
    struct collected c = {.id_key = "id"};

    fake_transport_add(env->fake,
                       &(struct fake_rule){.pattern = "*", .status = 404, .times = 1});
    fake_transport_add(env->fake,
                       &(struct fake_rule){.pattern = "*", .status = 405, .times = 1});
    fake_transport_add(env->fake,
                       &(struct fake_rule){.pattern = "*", .status = 500, .times = 1});
    assert_int_equal(api_list_batches(env->api, collect, &c), -EOPNOTSUPP);
    assert_int_equal(api_list_batches(env->api, collect, &c), -EOPNOTSUPP);
    assert_int_equal(api_list_batches(env->api, collect, &c), -EIO);
    assert_int_equal(c.calls, 0);
}

static void test_batches_cursor(void **state)
{
    struct env *env = *state;
    struct collected c = {.id_key = "id"};

    fake_transport_add_fixture(env->fake, "/api/v2/batches?page_size=1000", 200,
                               "batches_page1.json");
    fake_transport_add_fixture(env->fake,
                               "/api/v2/batches?page_size=1000&page_token=p%2F2", 200,
                               "batches_page2.json");
    assert_int_equal(api_list_batches(env->api, collect, &c), 0);
    assert_int_equal(fake_transport_count(env->fake), 2);
    assert_int_equal(fake_transport_unmatched(env->fake), 0);
    /* bat-1 again on page two is dropped; the empty token ends it. */
    assert_int_equal(c.n, 3);
    assert_string_equal(c.ids[0], "bat-1");
    assert_string_equal(c.ids[1], "bat-2");
    assert_string_equal(c.ids[2], "bat-3");
    collected_free(&c);
}

static void test_batches_repeated_token(void **state)
{
    struct env *env = *state;
    struct collected c = {.id_key = "id"};

    fake_transport_add_fixture(env->fake, "/api/v2/batches?page_size=1000", 200,
                               "batches_loop.json");
    fake_transport_add_fixture(env->fake, "*page_token=same*", 200, "batches_loop2.json");
    assert_int_equal(api_list_batches(env->api, collect, &c), 0);
    assert_int_equal(fake_transport_count(env->fake), 2);
    assert_int_equal(c.n, 2);
    collected_free(&c);
}

struct batch_seen {
    int calls;
    bool results_null;
    size_t count;
    char *batch_raw;
    char *keys[8];
};

static int collect_batch(void *arg, const struct api_object *batch,
                         const struct api_object *results, size_t count,
                         bool results_null)
{
    struct batch_seen *seen = arg;

    seen->calls++;
    seen->results_null = results_null;
    seen->count = count;
    seen->batch_raw = strndup(batch->raw, batch->raw_len);
    assert_true(batch->raw_len > 0 && batch->raw[0] == '{');
    assert_true(batch->id_len > 0 && strlen(batch->id) == batch->id_len);
    for (size_t i = 0; i < count && i < 8; i++) {
        json_t *result = json_loadb(results[i].raw, results[i].raw_len, 0, NULL);

        assert_string_equal(json_string_value(json_object_get(result, "source_directory_file_id")),
                            results[i].id);
        json_decref(result);
        seen->keys[i] = strndup(results[i].raw, results[i].raw_len);
    }
    return 0;
}

static void batch_seen_free(struct batch_seen *seen)
{
    free(seen->batch_raw);
    for (size_t i = 0; i < 8; i++)
        free(seen->keys[i]);
}

static void get_batch_fixture(void **state, const char *fixture, struct batch_seen *seen,
                              int expect_rc)
{
    struct env *env = *state;

    fake_transport_reset(env->fake);
    fake_transport_add_fixture(env->fake, "*", 200, fixture);
    memset(seen, 0, sizeof(*seen));
    assert_int_equal(api_get_batch(env->api, "bat-1", collect_batch, seen), expect_rc);
}

static void test_get_batch(void **state)
{
    struct env *env = *state;
    struct batch_seen seen;
    struct buf body = BUF_INIT;

    get_batch_fixture(state, "batch_results_null.json", &seen, 0);
    assert_string_equal(fake_transport_request(env->fake, 0),
                        "/api/v2/batches/bat-1?expand=results");
    assert_true(seen.results_null);
    assert_int_equal(seen.count, 0);
    /* The batch is the whole body, white space around it trimmed. */
    assert_int_equal(fake_transport_read_fixture("batch_results_null.json", &body), 0);
    assert_int_equal(strlen(seen.batch_raw), body.len - 3);
    assert_memory_equal(seen.batch_raw, body.data + 2, body.len - 3);
    buf_free(&body);
    batch_seen_free(&seen);

    get_batch_fixture(state, "batch_results_absent.json", &seen, 0);
    assert_true(seen.results_null);
    batch_seen_free(&seen);

    get_batch_fixture(state, "batch_results_empty.json", &seen, 0);
    assert_false(seen.results_null);
    assert_int_equal(seen.count, 0);
    batch_seen_free(&seen);

    get_batch_fixture(state, "batch_results_some.json", &seen, 0);
    assert_false(seen.results_null);
    assert_int_equal(seen.count, 2);
    assert_non_null(strstr(seen.keys[0], "\"dfl-1\""));
    assert_non_null(strstr(seen.keys[0], "pjb-1")); /* the first dfl-1 wins */
    assert_non_null(strstr(seen.keys[1], "\"dfl-2\""));
    batch_seen_free(&seen);
}

static void test_get_batch_malformed(void **state)
{
    static const char *const bad[] = {"batch_results_string.json",
                                      "batch_without_id.json", "not_json.json",
                                      "not_object.json"};
    struct env *env = *state;
    struct batch_seen seen;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        get_batch_fixture(state, bad[i], &seen, -EIO);
        assert_int_equal(seen.calls, 0);
    }
    fake_transport_reset(env->fake);
    fake_transport_add_body(env->fake, "*", 404, "{}");
    assert_int_equal(api_get_batch(env->api, "bat-x", collect_batch, &seen), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_url_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pages_ahead_dropped_even_failed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_url_list_items_and_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_org_and_project, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dialect_both, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dialect_token_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dialect_total_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dialect_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dialect_no_signal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dialect_total_low, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dialect_total_high, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preparer_expect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dialect_short_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dialect_repeated_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dialect_offset_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dialect_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parallel_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_on_arrival, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_error_mid_listing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_error_past_the_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_items, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_and_raw_nul_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_integers_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_junk_only_pages_end_the_listing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_repeat_within_a_page_skips_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_malformed_elements, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_field_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nul_in_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_status_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jobs_raw_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_mapping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transport_errors_pass_through, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_check_access, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_job_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_job_callback_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batches_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batches_cursor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batches_repeated_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_batch_malformed, setup, teardown),
    };

    /* Warnings are expected here; errors would still show. */
    log_setup(getenv("TEST_LOG_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR, false);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
