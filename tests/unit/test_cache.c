/*
 * Unit tests for the cache: hits and misses, expiry, single flight, negative
 * entries, stale-if-error, refresh, the byte budget and LRU order, clearing,
 * statistics and allocation failures.
 *
 * Values are small reference-counted structs whose creations and frees are
 * counted, so every test can check that nothing leaked and nothing was freed
 * twice. Time is the test's own clock (cache_config.clock), moved by hand:
 * no test sleeps to let something expire. Tests of single flight wait until
 * the cache reports every other caller waiting (cache_stats.waiting) before
 * the fetch answers, so they fail, rather than pass by luck, if the callers
 * fetch on their own.
 *
 * Allocation failures are injected by linking with
 * -Wl,--wrap=malloc -Wl,--wrap=calloc; without those flags that test skips.
 */
#include "batchfs/cache.h"
#include "batchfs/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_clock.h"

#define THREADS 16

/* ---- allocation failure injection ---- */

void *__real_malloc(size_t size) __attribute__((weak));
void *__real_calloc(size_t count, size_t size) __attribute__((weak));
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t count, size_t size);

static atomic_bool alloc_wrapped;   /* set once the wrappers are seen in use */
static atomic_int alloc_fail_after; /* fail the allocation after this many; -1 = never */
static atomic_int alloc_failures;

static bool alloc_should_fail(void)
{
    alloc_wrapped = true;
    if (atomic_load(&alloc_fail_after) < 0)
        return false;
    if (atomic_fetch_sub(&alloc_fail_after, 1) == 0) {
        alloc_failures++;
        return true;
    }
    return false;
}

void *__wrap_malloc(size_t size)
{
    return alloc_should_fail() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t count, size_t size)
{
    return alloc_should_fail() ? NULL : __real_calloc(count, size);
}

/* ---- counted values ---- */

struct test_value {
    atomic_int refs;
    int id;
};

static atomic_int values_created, values_freed, bad_unrefs;

static struct test_value *test_value_new(int id)
{
    /* Test values bypass failure injection: only the cache's own
     * allocations are made to fail. */
    struct test_value *v = __real_malloc ? __real_malloc(sizeof(*v)) : malloc(sizeof(*v));

    assert_non_null(v);
    atomic_init(&v->refs, 1);
    v->id = id;
    values_created++;
    return v;
}

static void test_value_ref(void *value)
{
    struct test_value *v = value;

    atomic_fetch_add(&v->refs, 1);
}

static void test_value_unref(void *value)
{
    struct test_value *v = value;
    int before = atomic_fetch_sub(&v->refs, 1);

    if (before <= 0) {
        bad_unrefs++;
        return;
    }
    if (before == 1) {
        values_freed++;
        free(v);
    }
}

static const struct cache_value_ops test_ops = {
    .ref = test_value_ref,
    .unref = test_value_unref,
};

static int value_id(void *value)
{
    return ((struct test_value *)value)->id;
}

/* ---- scripted fetches ---- */

/* How long a fetch waits for the other callers to queue behind it before
 * giving up: only a hang (or callers that never wait) takes this long. */
#define WAITERS_DEADLINE_S 30

struct script {
    atomic_int calls;   /* fetches started */
    atomic_int next_id; /* id of the next value made */
    int rc;             /* what a fetch returns */
    size_t bytes;       /* size reported for each value */
    double ttl_s;
    struct cache *cache;         /* with wait_waiting: the cache to watch */
    size_t wait_waiting;         /* before answering, wait until this many callers
                                    wait on the fetch */
    atomic_bool waiters_missing; /* they never all came */
};

static double monotonic_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int script_fetch(void *arg, const char *key, void **value, size_t *bytes,
                        double *ttl_s)
{
    struct script *s = arg;

    (void)key;
    s->calls++;
    /* Hold the fetch until every other caller waits on it. Polling a count
     * the cache keeps under its lock is enough: what matters is that the
     * count is reached, not how soon it is noticed. */
    if (s->wait_waiting) {
        double give_up = monotonic_s() + WAITERS_DEADLINE_S;
        struct cache_stats st;

        for (;;) {
            cache_get_stats(s->cache, &st);
            if (st.waiting >= s->wait_waiting)
                break;
            if (monotonic_s() > give_up) {
                s->waiters_missing = true;
                break;
            }
            sched_yield();
        }
    }
    if (s->rc)
        return s->rc;
    *value = test_value_new(++s->next_id);
    *bytes = s->bytes;
    *ttl_s = s->ttl_s;
    return 0;
}

static void script_init(struct script *s, int rc, size_t bytes, double ttl_s)
{
    memset(s, 0, sizeof(*s));
    s->rc = rc;
    s->bytes = bytes;
    s->ttl_s = ttl_s;
}

/* Makes each fetch of `s` hold its answer until `count` other callers wait
 * on it in `cache`. */
static void wait_for_waiters(struct script *s, struct cache *cache, size_t count)
{
    s->cache = cache;
    s->wait_waiting = count;
    s->waiters_missing = false;
}

/* ---- helpers ---- */

/* A cache of `config` with the counted values; never NULL. */
static struct cache *cache_from(const struct cache_config *config)
{
    struct cache *cache = cache_new(config, &test_ops);

    assert_non_null(cache);
    return cache;
}

static struct cache *make_cache(size_t max_bytes, bool stale, double max_stale_s,
                                double negative_ttl_s)
{
    struct cache_config config = {
        .max_bytes = max_bytes,
        .stale_if_error = stale,
        .max_stale_s = max_stale_s,
        .negative_ttl_s = negative_ttl_s,
        .clock = fake_clock_now,
    };

    return cache_from(&config);
}

/* Gets `key` expecting success and returns the value's id, dropping the
 * reference. */
static int get_id(struct cache *cache, const char *key, unsigned flags, struct script *s)
{
    void *value = NULL;
    int id;

    assert_int_equal(cache_get(cache, key, flags, script_fetch, s, &value), 0);
    assert_non_null(value);
    id = value_id(value);
    test_value_unref(value);
    return id;
}

static void expect_error(struct cache *cache, const char *key, unsigned flags,
                         struct script *s, int expected)
{
    void *value = (void *)1;

    assert_int_equal(cache_get(cache, key, flags, script_fetch, s, &value), expected);
    assert_null(value);
}

static void free_and_check(struct cache *cache)
{
    cache_free(cache);
    assert_int_equal(values_created, values_freed);
    assert_int_equal(bad_unrefs, 0);
}

static struct cache_stats stats_of(struct cache *cache)
{
    struct cache_stats st;

    cache_get_stats(cache, &st);
    return st;
}

static int reset(void **state)
{
    (void)state;
    values_created = values_freed = bad_unrefs = 0;
    alloc_fail_after = -1;
    alloc_failures = 0;
    fake_clock_reset();
    return 0;
}

/* Log capture: stderr goes to a temporary file while a test step runs. */
static FILE *capture_file;
static int capture_saved_fd = -1;

static void capture_start(void)
{
    fflush(stderr);
    capture_file = tmpfile();
    assert_non_null(capture_file);
    capture_saved_fd = dup(STDERR_FILENO);
    assert_true(capture_saved_fd >= 0);
    assert_true(dup2(fileno(capture_file), STDERR_FILENO) >= 0);
}

static void capture_stop(char *out, size_t size)
{
    size_t n;

    fflush(stderr);
    dup2(capture_saved_fd, STDERR_FILENO);
    close(capture_saved_fd);
    rewind(capture_file);
    n = fread(out, 1, size - 1, capture_file);
    out[n] = '\0';
    fclose(capture_file);
}

static int count_occurrences(const char *text, const char *needle)
{
    int n = 0;

    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* ---- threads ---- */

struct worker {
    pthread_t thread;
    struct cache *cache;
    struct script *script;
    const char *key;
    unsigned flags;
    int rc;
    void *value;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;

    w->rc = cache_get(w->cache, w->key, w->flags, script_fetch, w->script, &w->value);
    return NULL;
}

static void run_workers(struct worker *workers, int count, struct cache *cache,
                        struct script *s, const char *key, unsigned flags)
{
    for (int i = 0; i < count; i++) {
        workers[i] =
            (struct worker){.cache = cache, .script = s, .key = key, .flags = flags};
        assert_int_equal(
            pthread_create(&workers[i].thread, NULL, worker_run, &workers[i]), 0);
    }
    for (int i = 0; i < count; i++)
        assert_int_equal(pthread_join(workers[i].thread, NULL), 0);
}

/* ---- tests ---- */

static void test_hit_then_miss(void **state)
{
    struct cache *cache = make_cache(0, false, 0, 0);
    struct cache_stats st;
    struct script s;
    void *first, *second;

    (void)state;
    script_init(&s, 0, 40, 60);
    assert_int_equal(cache_get(cache, "jobs", 0, script_fetch, &s, &first), 0);
    assert_int_equal(cache_get(cache, "jobs", 0, script_fetch, &s, &second), 0);
    assert_ptr_equal(first, second);
    assert_int_equal(s.calls, 1);
    /* The cache holds one reference, each caller another. */
    assert_int_equal(((struct test_value *)first)->refs, 3);
    test_value_unref(first);
    test_value_unref(second);

    assert_int_equal(get_id(cache, "other", 0, &s), 2);
    assert_int_equal(s.calls, 2);
    st = stats_of(cache);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.bytes, 80);
    assert_int_equal(values_freed, 0);
    free_and_check(cache);
}

static void test_ttl_expiry(void **state)
{
    struct cache *cache = make_cache(0, false, 0, 0);
    struct script s;

    (void)state;
    script_init(&s, 0, 10, 0.05);
    assert_int_equal(get_id(cache, "k", 0, &s), 1);
    fake_clock_advance(0.049);
    assert_int_equal(get_id(cache, "k", 0, &s), 1);
    fake_clock_advance(0.001);
    assert_int_equal(get_id(cache, "k", 0, &s), 2);
    assert_int_equal(s.calls, 2);
    /* The replaced value was released. */
    assert_int_equal(values_freed, 1);

    /* A ttl of zero or less still hands the value to its caller but does
     * not keep it fresh. */
    s.ttl_s = 0;
    assert_int_equal(get_id(cache, "zero", 0, &s), 3);
    assert_int_equal(get_id(cache, "zero", 0, &s), 4);
    s.ttl_s = -1;
    assert_int_equal(get_id(cache, "zero", 0, &s), 5);
    assert_int_equal(s.calls, 5);
    expect_error(cache, "zero", CACHE_GET_PEEK, NULL, -ENOENT);
    free_and_check(cache);
}

static void test_single_flight(void **state)
{
    struct cache *cache = make_cache(0, false, 0, 0);
    struct worker workers[THREADS];
    struct cache_stats st;
    struct script s;

    (void)state;
    script_init(&s, 0, 10, 60);
    wait_for_waiters(&s, cache, THREADS - 1);
    run_workers(workers, THREADS, cache, &s, "jobs", 0);
    assert_false(s.waiters_missing);
    assert_int_equal(s.calls, 1);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(workers[i].rc, 0);
        assert_ptr_equal(workers[i].value, workers[0].value);
    }
    assert_int_equal(((struct test_value *)workers[0].value)->refs, THREADS + 1);
    for (int i = 0; i < THREADS; i++)
        test_value_unref(workers[i].value);
    st = stats_of(cache);
    assert_int_equal(st.hits + st.misses, THREADS);
    assert_int_equal(st.entries, 1);
    free_and_check(cache);
}

static void test_waiters_share_error(void **state)
{
    struct cache *cache = make_cache(0, false, 0, 0);
    struct worker workers[THREADS];
    struct script s;

    (void)state;
    script_init(&s, -EIO, 10, 60);
    wait_for_waiters(&s, cache, THREADS - 1);
    run_workers(workers, THREADS, cache, &s, "jobs", 0);
    assert_false(s.waiters_missing);
    assert_int_equal(s.calls, 1);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(workers[i].rc, -EIO);
        assert_null(workers[i].value);
    }
    /* A failed first fetch leaves nothing behind. */
    assert_int_equal(stats_of(cache).entries, 0);
    free_and_check(cache);
}

static void test_negative_entries(void **state)
{
    struct cache *cache = make_cache(0, false, 0, 0.05);
    struct script s;

    (void)state;
    script_init(&s, -ENOENT, 10, 60);
    expect_error(cache, "gone", 0, &s, -ENOENT);
    expect_error(cache, "gone", 0, &s, -ENOENT);
    assert_int_equal(s.calls, 1);
    expect_error(cache, "gone", CACHE_GET_PEEK, NULL, -ENOENT);
    assert_int_equal(stats_of(cache).entries, 1);
    assert_int_equal(stats_of(cache).hits, 1);

    /* Once the negative entry expires the key is asked for again. */
    fake_clock_advance(0.049);
    expect_error(cache, "gone", 0, &s, -ENOENT);
    assert_int_equal(s.calls, 1);
    fake_clock_advance(0.001);
    s.rc = 0;
    assert_int_equal(get_id(cache, "gone", 0, &s), 1);
    assert_int_equal(s.calls, 2);

    /* -ENOENT on refresh drops the old value. */
    s.rc = -ENOENT;
    expect_error(cache, "gone", CACHE_GET_REFRESH, &s, -ENOENT);
    assert_int_equal(values_freed, 1);
    expect_error(cache, "gone", 0, &s, -ENOENT);
    assert_int_equal(s.calls, 3);
    free_and_check(cache);
}

static void test_negative_ttl_zero_not_remembered(void **state)
{
    struct cache *cache = make_cache(0, false, 0, 0);
    struct script s;

    (void)state;
    script_init(&s, -ENOENT, 10, 60);
    expect_error(cache, "gone", 0, &s, -ENOENT);
    expect_error(cache, "gone", 0, &s, -ENOENT);
    assert_int_equal(s.calls, 2);
    assert_int_equal(stats_of(cache).entries, 0);
    free_and_check(cache);
}

static void test_stale_served_and_logged(void **state)
{
    struct cache *cache = make_cache(0, true, 30, 0);
    struct script s;
    char log[4096];
    void *value;

    (void)state;
    script_init(&s, 0, 10, 0.05);
    assert_int_equal(get_id(cache, "jobs/1", 0, &s), 1);
    fake_clock_advance(0.2);
    s.rc = -EIO;
    capture_start();
    assert_int_equal(cache_get(cache, "jobs/1", 0, script_fetch, &s, &value), 0);
    capture_stop(log, sizeof(log));
    assert_int_equal(value_id(value), 1);
    test_value_unref(value);
    assert_int_equal(count_occurrences(log, "serving cached copy of jobs/1 from "), 1);
    assert_non_null(strstr(log, strerror(EIO)));
    assert_int_equal(stats_of(cache).stale_served, 1);

    /* Right after a failed refresh the stale copy is served without
     * another fetch and without another log line. */
    s.rc = -ETIMEDOUT;
    capture_start();
    assert_int_equal(get_id(cache, "jobs/1", 0, &s), 1);
    capture_stop(log, sizeof(log));
    assert_int_equal(count_occurrences(log, "serving cached copy of jobs/1"), 0);
    assert_int_equal(s.calls, 2);
    assert_int_equal(stats_of(cache).stale_served, 2);

    /* Asked for fresh data, it tries again: each failure logs once more and
     * the old value stays. */
    cache_expire_all(cache);
    capture_start();
    assert_int_equal(get_id(cache, "jobs/1", 0, &s), 1);
    capture_stop(log, sizeof(log));
    assert_int_equal(count_occurrences(log, "serving cached copy of jobs/1"), 1);
    assert_int_equal(s.calls, 3);
    assert_int_equal(values_freed, 0);
    free_and_check(cache);
}

static void test_stale_shared_with_waiters(void **state)
{
    struct cache *cache = make_cache(0, true, 30, 0);
    struct worker workers[THREADS];
    struct script s;
    char log[8192];

    (void)state;
    script_init(&s, 0, 10, 0.01);
    assert_int_equal(get_id(cache, "jobs", 0, &s), 1);
    fake_clock_advance(0.1);
    s.rc = -EIO;
    wait_for_waiters(&s, cache, THREADS - 1);
    capture_start();
    run_workers(workers, THREADS, cache, &s, "jobs", 0);
    capture_stop(log, sizeof(log));
    assert_false(s.waiters_missing);
    assert_int_equal(s.calls, 2);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(workers[i].rc, 0);
        assert_int_equal(value_id(workers[i].value), 1);
        test_value_unref(workers[i].value);
    }
    assert_int_equal(count_occurrences(log, "serving cached copy of jobs"), 1);
    assert_int_equal(stats_of(cache).stale_served, THREADS);
    free_and_check(cache);
}

static void test_stale_not_for_answers(void **state)
{
    static const int answers[] = {-EACCES, -ENOMEM, -ECANCELED, -ENOENT};
    struct cache *cache = make_cache(0, true, 30, 60);
    struct script s;
    char log[4096];

    (void)state;
    script_init(&s, 0, 10, 0.01);
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        s.rc = 0;
        get_id(cache, "k", CACHE_GET_REFRESH, &s);
        fake_clock_advance(0.06);
        s.rc = answers[i];
        capture_start();
        expect_error(cache, "k", 0, &s, answers[i]);
        capture_stop(log, sizeof(log));
        assert_int_equal(count_occurrences(log, "serving cached copy"), 0);
    }
    /* -ENOENT dropped the last value and is now remembered. */
    assert_int_equal(values_created, 4);
    assert_int_equal(values_freed, 4);
    expect_error(cache, "k", 0, &s, -ENOENT);
    assert_int_equal(s.calls, 8);
    assert_int_equal(stats_of(cache).stale_served, 0);
    free_and_check(cache);
}

static void test_stale_not_beyond_max_stale(void **state)
{
    struct cache *cache = make_cache(0, true, 0.05, 0);
    struct script s;
    char log[4096];

    (void)state;
    script_init(&s, 0, 10, 0.01);
    assert_int_equal(get_id(cache, "k", 0, &s), 1);
    fake_clock_advance(0.3);
    s.rc = -EIO;
    capture_start();
    expect_error(cache, "k", 0, &s, -EIO);
    capture_stop(log, sizeof(log));
    assert_int_equal(count_occurrences(log, "serving cached copy"), 0);
    assert_int_equal(stats_of(cache).stale_served, 0);
    free_and_check(cache);
}

static void test_stale_disabled(void **state)
{
    struct cache *cache = make_cache(0, false, 30, 0);
    struct script s;

    (void)state;
    script_init(&s, 0, 10, 0.01);
    assert_int_equal(get_id(cache, "k", 0, &s), 1);
    fake_clock_advance(0.06);
    s.rc = -EIO;
    expect_error(cache, "k", 0, &s, -EIO);
    assert_int_equal(stats_of(cache).stale_served, 0);
    free_and_check(cache);
}

static void test_refresh(void **state)
{
    struct cache *cache = make_cache(0, false, 0, 0);
    struct worker workers[THREADS];
    struct script s;
    void *held;

    (void)state;
    script_init(&s, 0, 10, 60);
    assert_int_equal(cache_get(cache, "k", 0, script_fetch, &s, &held), 0);
    assert_int_equal(get_id(cache, "k", CACHE_GET_REFRESH, &s), 2);
    assert_int_equal(get_id(cache, "k", 0, &s), 2);
    assert_int_equal(s.calls, 2);
    /* The replaced value lives on while someone holds it. */
    assert_int_equal(values_freed, 0);
    assert_int_equal(value_id(held), 1);
    test_value_unref(held);
    assert_int_equal(values_freed, 1);

    /* Refreshes are single-flight too. */
    wait_for_waiters(&s, cache, THREADS - 1);
    run_workers(workers, THREADS, cache, &s, "k", CACHE_GET_REFRESH);
    assert_false(s.waiters_missing);
    assert_int_equal(s.calls, 3);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(workers[i].rc, 0);
        assert_int_equal(value_id(workers[i].value), 3);
        test_value_unref(workers[i].value);
    }
    free_and_check(cache);
}

static void test_peek(void **state)
{
    struct cache *cache = make_cache(0, false, 0, 0);
    struct script s;
    void *value;

    (void)state;
    script_init(&s, 0, 10, 60);
    expect_error(cache, "k", CACHE_GET_PEEK, &s, -ENOENT);
    assert_int_equal(s.calls, 0);
    assert_int_equal(stats_of(cache).entries, 0);
    assert_int_equal(get_id(cache, "k", 0, &s), 1);
    assert_int_equal(cache_get(cache, "k", CACHE_GET_PEEK, NULL, NULL, &value), 0);
    assert_int_equal(value_id(value), 1);
    test_value_unref(value);
    assert_int_equal(s.calls, 1);
    /* Without PEEK a fetch function is required. */
    value = (void *)1;
    assert_int_equal(cache_get(cache, "k", 0, NULL, NULL, &value), -EINVAL);
    assert_null(value);
    free_and_check(cache);
}

static bool peek_present(struct cache *cache, const char *key)
{
    void *value = NULL;

    if (cache_get(cache, key, CACHE_GET_PEEK, NULL, NULL, &value) != 0)
        return false;
    test_value_unref(value);
    return true;
}

static void test_lru_eviction_order(void **state)
{
    struct cache *cache = make_cache(300, false, 0, 0);
    struct cache_stats st;
    struct script s;

    (void)state;
    script_init(&s, 0, 100, 60);
    get_id(cache, "a", 0, &s);
    get_id(cache, "b", 0, &s);
    get_id(cache, "c", 0, &s);
    assert_int_equal(stats_of(cache).bytes, 300);
    get_id(cache, "a", 0, &s); /* a is now the most recent; b the least */
    get_id(cache, "d", 0, &s);
    assert_false(peek_present(cache, "b"));
    assert_true(peek_present(cache, "a"));
    assert_true(peek_present(cache, "c"));
    assert_true(peek_present(cache, "d"));
    assert_int_equal(values_freed, 1);
    st = stats_of(cache);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.bytes, 300);
    assert_int_equal(st.entries, 3);

    /* Order is now a, c, d (peeks touched them in that order): e evicts a. */
    get_id(cache, "e", 0, &s);
    assert_false(peek_present(cache, "a"));
    assert_true(peek_present(cache, "c"));
    free_and_check(cache);
}

static void test_byte_bound(void **state)
{
    struct cache *cache = make_cache(250, false, 0, 0);
    struct cache_stats st;
    struct script s;
    char key[16];

    (void)state;
    script_init(&s, 0, 70, 60);
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        get_id(cache, key, 0, &s);
        st = stats_of(cache);
        assert_true(st.bytes <= 250);
    }
    st = stats_of(cache);
    assert_int_equal(st.entries, 3);
    assert_int_equal(st.bytes, 210);
    assert_int_equal(st.evictions, 47);
    assert_int_equal(values_freed, 47);
    /* The three most recent survive. */
    assert_true(peek_present(cache, "k49"));
    assert_true(peek_present(cache, "k47"));
    assert_false(peek_present(cache, "k46"));
    free_and_check(cache);
}

static void test_value_in_use_survives_eviction(void **state)
{
    struct cache *cache = make_cache(100, false, 0, 0);
    struct script s;
    void *held;

    (void)state;
    script_init(&s, 0, 100, 60);
    assert_int_equal(cache_get(cache, "a", 0, script_fetch, &s, &held), 0);
    get_id(cache, "b", 0, &s);
    assert_false(peek_present(cache, "a"));
    assert_int_equal(stats_of(cache).evictions, 1);
    assert_int_equal(values_freed, 0);
    assert_int_equal(value_id(held), 1);
    assert_int_equal(((struct test_value *)held)->refs, 1);
    test_value_unref(held);
    assert_int_equal(values_freed, 1);
    free_and_check(cache);
}

static void test_oversize_value(void **state)
{
    struct cache *cache = make_cache(100, false, 0, 0);
    struct cache_stats st;
    struct script s;
    void *big;

    (void)state;
    script_init(&s, 0, 60, 60);
    get_id(cache, "small", 0, &s);
    s.bytes = 500;
    assert_int_equal(cache_get(cache, "big", 0, script_fetch, &s, &big), 0);
    assert_int_equal(value_id(big), 2);
    /* Kept beside the budget, which the rest keeps: "small" stays. */
    st = stats_of(cache);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.bytes, 560);
    assert_int_equal(st.spared_bytes, 500);
    assert_int_equal(st.evictions, 0);
    assert_true(peek_present(cache, "small"));
    assert_true(peek_present(cache, "big"));
    test_value_unref(big);
    /* The values its readers bring (one file of the folder, then the next)
     * push out one another, never it: it is not fetched again. */
    s.bytes = 60;
    for (int i = 0; i < 5; i++) {
        char key[16];

        assert_int_equal(get_id(cache, "big", 0, &s), 2);
        snprintf(key, sizeof(key), "file%d", i);
        assert_int_equal(get_id(cache, key, 0, &s), 3 + i);
    }
    assert_int_equal(s.calls, 7);
    st = stats_of(cache);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.bytes, 560);
    assert_true(peek_present(cache, "big"));
    assert_true(peek_present(cache, "file4"));
    /* A newer value bigger than the budget takes its place, and the older
     * goes like any other. */
    s.bytes = 300;
    assert_int_equal(get_id(cache, "bigger", 0, &s), 8);
    st = stats_of(cache);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.bytes, 360);
    assert_int_equal(st.spared_bytes, 300);
    assert_false(peek_present(cache, "big"));
    assert_true(peek_present(cache, "bigger"));
    free_and_check(cache);
}

static void test_expire_all_then_failing_refresh(void **state)
{
    struct cache *cache = make_cache(0, true, 30, 0);
    struct script s;
    char log[4096];

    (void)state;
    script_init(&s, 0, 10, 3600);
    assert_int_equal(get_id(cache, "a", 0, &s), 1);
    assert_int_equal(get_id(cache, "b", 0, &s), 2);
    cache_expire_all(cache);
    /* Values are kept but no longer fresh. */
    assert_false(peek_present(cache, "a"));
    assert_int_equal(stats_of(cache).entries, 2);
    assert_int_equal(stats_of(cache).bytes, 20);

    s.rc = -EHOSTUNREACH;
    capture_start();
    assert_int_equal(get_id(cache, "a", 0, &s), 1);
    capture_stop(log, sizeof(log));
    assert_int_equal(count_occurrences(log, "serving cached copy of a from"), 1);
    assert_int_equal(stats_of(cache).stale_served, 1);

    /* A later successful fetch replaces the stale copy. */
    s.rc = 0;
    assert_int_equal(get_id(cache, "b", 0, &s), 3);
    assert_int_equal(get_id(cache, "b", 0, &s), 3);
    assert_int_equal(values_freed, 1);
    free_and_check(cache);
}

static void test_clear(void **state)
{
    struct cache *cache = make_cache(0, true, 30, 60);
    struct cache_stats st;
    struct script s;
    void *held;

    (void)state;
    script_init(&s, 0, 25, 60);
    get_id(cache, "a", 0, &s);
    get_id(cache, "b", 0, &s);
    assert_int_equal(cache_get(cache, "c", 0, script_fetch, &s, &held), 0);
    s.rc = -ENOENT;
    expect_error(cache, "gone", 0, &s, -ENOENT);
    assert_int_equal(stats_of(cache).entries, 4);
    cache_clear(cache);
    st = stats_of(cache);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(values_freed, 2);
    assert_int_equal(value_id(held), 3);
    test_value_unref(held);
    assert_int_equal(values_freed, 3);
    /* Cleared means refetched, and stale copies are gone too. */
    s.rc = -EIO;
    expect_error(cache, "a", 0, &s, -EIO);
    s.rc = 0;
    assert_int_equal(get_id(cache, "gone", 0, &s), 4);
    free_and_check(cache);
}

static void test_stats(void **state)
{
    struct cache *cache = make_cache(100, true, 30, 60);
    struct cache_stats st;
    struct script s;
    char log[4096];

    (void)state;
    script_init(&s, 0, 50, 0.01);
    get_id(cache, "a", 0, &s); /* miss */
    fake_clock_advance(0.05);
    s.rc = -EIO;
    capture_start();
    get_id(cache, "a", 0, &s); /* miss, stale */
    capture_stop(log, sizeof(log));
    assert_int_equal(count_occurrences(log, "serving cached copy of a"), 1);
    s.rc = 0;
    s.ttl_s = 60;
    get_id(cache, "b", 0, &s);                              /* miss */
    get_id(cache, "b", 0, &s);                              /* hit */
    get_id(cache, "c", 0, &s);                              /* miss, evicts a */
    expect_error(cache, "zz", CACHE_GET_PEEK, &s, -ENOENT); /* miss */
    st = stats_of(cache);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.misses, 5);
    assert_int_equal(st.stale_served, 1);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.bytes, 100);
    free_and_check(cache);
}

static int null_fetch(void *arg, const char *key, void **value, size_t *bytes,
                      double *ttl_s)
{
    (void)arg;
    (void)key;
    *value = NULL;
    *bytes = 0;
    *ttl_s = 60;
    return 0;
}

static void test_fetch_without_value(void **state)
{
    struct cache *cache = make_cache(0, false, 0, 0);
    void *value = (void *)1;

    (void)state;
    assert_int_equal(cache_get(cache, "k", 0, null_fetch, NULL, &value), -EIO);
    assert_null(value);
    assert_int_equal(stats_of(cache).entries, 0);
    free_and_check(cache);
}

static void test_out_of_memory(void **state)
{
    struct cache_config config = {
        .stale_if_error = true, .max_stale_s = 30, .clock = fake_clock_now};
    struct cache *cache = NULL;
    struct script s;
    char key[16];

    (void)state;
    /* Probe whether this binary was linked with the wrappers. */
    free(malloc(1));
    if (!alloc_wrapped)
        skip();

    /* cache_new: any allocation may fail, and then nothing leaks. */
    for (int n = 0; !cache; n++) {
        alloc_fail_after = n;
        cache = cache_new(&config, &test_ops);
        alloc_fail_after = -1;
        assert_true(n < 10);
    }
    assert_true(alloc_failures > 0);
    alloc_failures = 0;

    script_init(&s, 0, 10, 0.01);
    get_id(cache, "old", 0, &s);
    fake_clock_advance(0.05);
    /* A new key needs a flight, an entry and a key copy; failing any of
     * them fails the call without fetching and leaves the table as it was. */
    for (int n = 0; n < 3; n++) {
        void *value = (void *)1;

        alloc_fail_after = n;
        assert_int_equal(cache_get(cache, "new", 0, script_fetch, &s, &value), -ENOMEM);
        alloc_fail_after = -1;
        assert_null(value);
        assert_int_equal(stats_of(cache).entries, 1);
    }
    /* Refetching a known key needs only a flight; its value is kept. */
    alloc_fail_after = 0;
    expect_error(cache, "old", 0, &s, -ENOMEM);
    alloc_fail_after = -1;
    assert_int_equal(alloc_failures, 4);
    assert_int_equal(s.calls, 1);
    assert_int_equal(values_freed, 0);
    assert_int_equal(get_id(cache, "new", 0, &s), 2);
    assert_int_equal(get_id(cache, "old", 0, &s), 3);

    /* Past the three allocations of a new key comes, now and then, the
     * growth of the table: failing it fails the call without fetching and
     * leaves the table as it was, and the same call then succeeds. They
     * stay fresh long enough to be checked, however slow the machine
     * (sanitizers, load). */
    alloc_failures = 0;
    s.ttl_s = 600;
    for (int i = 0; i < 200; i++) {
        void *value = NULL;
        int calls = s.calls, rc;

        snprintf(key, sizeof(key), "g%d", i);
        alloc_fail_after = 3;
        rc = cache_get(cache, key, 0, script_fetch, &s, &value);
        alloc_fail_after = -1;
        if (rc == -ENOMEM) {
            assert_int_equal(s.calls, calls);
            assert_false(peek_present(cache, key));
            get_id(cache, key, 0, &s);
        } else {
            assert_int_equal(rc, 0);
            test_value_unref(value);
        }
    }
    assert_true(alloc_failures > 0);
    assert_int_equal(stats_of(cache).entries, 202);
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "g%d", i);
        assert_true(peek_present(cache, key));
    }
    free_and_check(cache);
}

/* Many threads on few keys with a tight budget, mixed flags and outcomes,
 * while another thread expires and clears: meant for the sanitizers, and
 * checks that the budget and the reference counts hold at the end. */
struct stress {
    struct cache *cache;
    atomic_int fetches;
    atomic_bool stop;
};

struct stress_thread {
    pthread_t thread;
    struct stress *stress;
    unsigned seed;
};

static int stress_fetch(void *arg, const char *key, void **value, size_t *bytes,
                        double *ttl_s)
{
    struct stress *st = arg;
    int n = atomic_fetch_add(&st->fetches, 1);

    (void)key;
    if (n % 7 == 3)
        return -EIO;
    if (n % 11 == 5)
        return -ENOENT;
    *value = test_value_new(n);
    *bytes = 100;
    *ttl_s = (n % 3) * 0.001;
    return 0;
}

static void *stress_run(void *arg)
{
    struct stress_thread *t = arg;
    struct stress *st = t->stress;
    unsigned seed = t->seed;
    static const unsigned flags[] = {0, 0, 0, CACHE_GET_PEEK, CACHE_GET_REFRESH};
    char key[8];

    for (int i = 0; i < 2000; i++) {
        void *value = NULL;
        int rc;

        snprintf(key, sizeof(key), "k%u", rand_r(&seed) % 12);
        rc =
            cache_get(st->cache, key, flags[rand_r(&seed) % 5], stress_fetch, st, &value);
        if (rc == 0) {
            if (atomic_load(&((struct test_value *)value)->refs) < 1)
                bad_unrefs++;
            test_value_unref(value);
        } else if (rc != -EIO && rc != -ENOENT) {
            bad_unrefs++;
        }
    }
    return NULL;
}

static void *stress_disturb(void *arg)
{
    struct stress *st = arg;

    for (int i = 0; !atomic_load(&st->stop); i++) {
        if (i % 2)
            cache_expire_all(st->cache);
        else
            cache_clear(st->cache);
        /* Time moves on by the disturber's hand. The pause only paces the
         * disturbance, so that the workers get a turn; nothing waits on it. */
        fake_clock_advance(0.001);
        nanosleep(&(struct timespec){0, 1000000L}, NULL);
    }
    return NULL;
}

static void test_concurrent_stress(void **state)
{
    struct stress st = {.cache = make_cache(500, true, 0.01, 0.002)};
    struct stress_thread threads[8];
    struct cache_stats stats;
    pthread_t disturber;
    char log[4096];

    (void)state;
    /* Stale copies are served now and then; keep their warnings out of the
     * test output. */
    capture_start();
    assert_int_equal(pthread_create(&disturber, NULL, stress_disturb, &st), 0);
    for (int i = 0; i < 8; i++) {
        threads[i] = (struct stress_thread){.stress = &st, .seed = (unsigned)i + 1};
        assert_int_equal(
            pthread_create(&threads[i].thread, NULL, stress_run, &threads[i]), 0);
    }
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_join(threads[i].thread, NULL), 0);
    st.stop = true;
    assert_int_equal(pthread_join(disturber, NULL), 0);
    capture_stop(log, sizeof(log));
    stats = stats_of(st.cache);
    assert_true(stats.bytes <= 500);
    assert_true(stats.entries <= 12);
    assert_true(st.fetches > 0);
    free_and_check(st.cache);
}

/* ---- fetch threads: parking, cancelling, stale-while-revalidate ---- */

/* A fetch held until the test opens its gate, so that a test decides when
 * a fetch thread's fetch ends. */
struct gated {
    struct script script;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open;
    int entered; /* fetches started */
    bool fired;  /* the running fetch was called off (cache_config.cancel_fire) */
    atomic_int fires;
};

static void gated_init(struct gated *g, int rc, double ttl_s)
{
    script_init(&g->script, rc, 10, ttl_s);
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->open = false;
    g->entered = 0;
    g->fired = false;
    g->fires = 0;
}

/* cache_config's cancel hooks, on a gated fetch: a fire is only noted, and
 * seen by the fetch once its gate opens. */
static void *gated_cancel_begin(void *arg)
{
    struct gated *g = arg;

    pthread_mutex_lock(&g->lock);
    g->fired = false;
    pthread_mutex_unlock(&g->lock);
    return g;
}

static void gated_cancel_fire(void *handle)
{
    struct gated *g = handle;

    pthread_mutex_lock(&g->lock);
    g->fired = true;
    g->fires++;
    pthread_mutex_unlock(&g->lock);
}

static void gated_cancel_end(void *handle)
{
    (void)handle;
}

static void gated_destroy(struct gated *g)
{
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
}

static int gated_fetch(void *arg, const char *key, void **value, size_t *bytes,
                       double *ttl_s)
{
    struct gated *g = arg;

    bool fired;

    pthread_mutex_lock(&g->lock);
    g->entered++;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    fired = g->fired;
    pthread_mutex_unlock(&g->lock);
    if (fired)
        return -ECANCELED;
    return script_fetch(&g->script, key, value, bytes, ttl_s);
}

static void gate_open(struct gated *g, bool open)
{
    pthread_mutex_lock(&g->lock);
    g->open = open;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* Waits until `count` fetches have started. */
static void gate_wait_entered(struct gated *g, int count)
{
    pthread_mutex_lock(&g->lock);
    while (g->entered < count)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

/* The test's arguments outlive every fetch: no copy is needed. */
static void *gated_copy(const void *arg)
{
    return (void *)arg;
}

static void gated_free(void *arg)
{
    (void)arg;
}

static const struct cache_fetcher *gated_fetcher(struct gated *g, struct cache_fetcher *f)
{
    *f = (struct cache_fetcher){
        .fetch = gated_fetch, .arg = g, .copy_arg = gated_copy, .free_arg = gated_free};
    return f;
}

struct test_waiter {
    struct cache_waiter waiter; /* first */
    atomic_int readies;
};

static void test_waiter_ready(struct cache_waiter *waiter)
{
    ((struct test_waiter *)waiter)->readies++;
}

/* Polls `counter` until it reaches `count`; fails after the deadline. */
static void wait_count(atomic_int *counter, int count)
{
    double give_up = monotonic_s() + WAITERS_DEADLINE_S;

    while (atomic_load(counter) < count) {
        assert_true(monotonic_s() < give_up);
        sched_yield();
    }
}

/* Polls the cache's stats until `field` (an offset in cache_stats) reaches
 * `count`. */
static struct cache_stats wait_stat(struct cache *cache, size_t offset,
                                    unsigned long long count)
{
    double give_up = monotonic_s() + WAITERS_DEADLINE_S;
    struct cache_stats st;

    for (;;) {
        cache_get_stats(cache, &st);
        if (*(unsigned long long *)((char *)&st + offset) >= count)
            return st;
        assert_true(monotonic_s() < give_up);
        sched_yield();
    }
}

static struct cache *make_threaded_cache(bool stale, unsigned threads)
{
    struct cache_config config = {
        .stale_if_error = stale,
        .max_stale_s = 60,
        .clock = fake_clock_now,
        .fetch_threads = threads,
    };

    return cache_from(&config);
}

/* Parks `w` on this thread for one cache_get_with. */
static int parked_get(struct cache *cache, struct test_waiter *w, const char *key,
                      struct gated *g, void **value)
{
    struct cache_fetcher f;
    struct cache_waiter *previous = cache_park_on(&w->waiter);
    int rc = cache_get_with(cache, key, 0, gated_fetcher(g, &f), value);

    cache_park_on(previous);
    return rc;
}

static void test_parked_callers_do_not_wait(void **state)
{
    struct cache *cache = make_threaded_cache(false, 2);
    struct test_waiter a, b;
    struct gated g;
    struct cache_stats st;
    void *value = NULL;

    (void)state;
    gated_init(&g, 0, 60);
    cache_waiter_init(&a.waiter, cache, test_waiter_ready);
    cache_waiter_init(&b.waiter, cache, test_waiter_ready);
    a.readies = b.readies = 0;
    /* Both return at once while the one fetch is held on a fetch thread. */
    assert_int_equal(parked_get(cache, &a, "k", &g, &value), CACHE_PARKED);
    assert_int_equal(parked_get(cache, &b, "k", &g, &value), CACHE_PARKED);
    assert_null(value);
    gate_wait_entered(&g, 1);
    st = stats_of(cache);
    assert_int_equal(st.parked, 2);
    assert_int_equal(st.waiting, 0);
    assert_int_equal(a.readies + b.readies, 0);
    gate_open(&g, true);
    wait_count(&a.readies, 1);
    wait_count(&b.readies, 1);
    assert_int_equal(stats_of(cache).parked, 0);
    /* Asked again, each is handed the outcome, as often as it asks. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(parked_get(cache, &a, "k", &g, &value), 0);
        assert_int_equal(value_id(value), 1);
        test_value_unref(value);
    }
    assert_int_equal(parked_get(cache, &b, "k", &g, &value), 0);
    test_value_unref(value);
    assert_int_equal(g.script.calls, 1);
    assert_int_equal(a.readies, 1);
    cache_waiter_reset(&a.waiter);
    cache_waiter_reset(&b.waiter);
    free_and_check(cache);
    gated_destroy(&g);
}

static void test_parked_callers_share_an_error(void **state)
{
    struct cache *cache = make_threaded_cache(false, 1);
    struct test_waiter a;
    struct gated g;
    void *value = NULL;

    (void)state;
    gated_init(&g, -EAGAIN, 60);
    gate_open(&g, true);
    cache_waiter_init(&a.waiter, cache, test_waiter_ready);
    a.readies = 0;
    assert_int_equal(parked_get(cache, &a, "k", &g, &value), CACHE_PARKED);
    wait_count(&a.readies, 1);
    /* -EAGAIN is an outcome like any other, not a parking. */
    assert_int_equal(parked_get(cache, &a, "k", &g, &value), -EAGAIN);
    assert_null(value);
    cache_waiter_reset(&a.waiter);
    free_and_check(cache);
    gated_destroy(&g);
}

static void test_cancel_drops_a_fetch_nobody_waits_for(void **state)
{
    struct cache *cache = make_threaded_cache(false, 1);
    struct test_waiter a, b, c;
    struct gated g;
    struct cache_stats st;
    void *value = NULL;

    (void)state;
    gated_init(&g, 0, 60);
    cache_waiter_init(&a.waiter, cache, test_waiter_ready);
    cache_waiter_init(&b.waiter, cache, test_waiter_ready);
    cache_waiter_init(&c.waiter, cache, test_waiter_ready);
    a.readies = b.readies = c.readies = 0;
    /* "a" holds the only fetch thread; "b" is queued behind it, twice. */
    assert_int_equal(parked_get(cache, &a, "a", &g, &value), CACHE_PARKED);
    gate_wait_entered(&g, 1);
    assert_int_equal(parked_get(cache, &b, "b", &g, &value), CACHE_PARKED);
    assert_int_equal(parked_get(cache, &c, "b", &g, &value), CACHE_PARKED);
    assert_int_equal(stats_of(cache).parked, 3);
    /* One of two waiters gives up: the fetch stays queued. */
    assert_true(cache_waiter_cancel(&b.waiter));
    st = stats_of(cache);
    assert_int_equal(st.parked, 2);
    assert_int_equal(st.cancelled, 0);
    /* The last one gives up: the queued fetch is dropped. */
    assert_true(cache_waiter_cancel(&c.waiter));
    st = stats_of(cache);
    assert_int_equal(st.parked, 1);
    assert_int_equal(st.cancelled, 1);
    /* A cancelled waiter that would park again is told so. */
    assert_int_equal(parked_get(cache, &c, "b", &g, &value), -EINTR);
    /* The running fetch loses its last waiter but runs to its end (the
     * transport has no per-request cancel) and fills the cache. */
    assert_true(cache_waiter_cancel(&a.waiter));
    assert_false(cache_waiter_cancel(&a.waiter));
    gate_open(&g, true);
    cache_stop(cache);
    assert_int_equal(get_id(cache, "a", CACHE_GET_PEEK, NULL), 1);
    assert_int_equal(g.script.calls, 1); /* "b" never fetched */
    assert_int_equal(a.readies + b.readies + c.readies, 0);
    cache_waiter_reset(&a.waiter);
    cache_waiter_reset(&b.waiter);
    cache_waiter_reset(&c.waiter);
    free_and_check(cache);
    gated_destroy(&g);
}

/* Prefetches queue behind every fetch somebody waits for, are not repeated
 * while queued, and run on a fetch thread with nobody waiting. */
static void test_prefetch_runs_behind_waited_fetches(void **state)
{
    struct cache *cache = make_threaded_cache(false, 1);
    struct test_waiter a, b;
    struct cache_fetcher f;
    struct gated g;
    void *value = NULL;

    (void)state;
    gated_init(&g, 0, 60);
    cache_waiter_init(&a.waiter, cache, test_waiter_ready);
    cache_waiter_init(&b.waiter, cache, test_waiter_ready);
    a.readies = b.readies = 0;
    /* "a" holds the only fetch thread. */
    assert_int_equal(parked_get(cache, &a, "a", &g, &value), CACHE_PARKED);
    gate_wait_entered(&g, 1);
    assert_int_equal(cache_prefetch(cache, "p1", gated_fetcher(&g, &f)), 0);
    assert_int_equal(cache_prefetch(cache, "p2", gated_fetcher(&g, &f)), 0);
    assert_int_equal(cache_prefetch(cache, "p1", gated_fetcher(&g, &f)), 0); /* queued */
    assert_int_equal(parked_get(cache, &b, "b", &g, &value), CACHE_PARKED);
    assert_int_equal(stats_of(cache).prefetches, 2);
    gate_open(&g, true);
    wait_count(&g.script.calls, 4);
    wait_count(&b.readies, 1);
    /* Values are numbered in the order they were fetched: "b" first. */
    assert_int_equal(get_id(cache, "a", CACHE_GET_PEEK, NULL), 1);
    assert_int_equal(get_id(cache, "b", CACHE_GET_PEEK, NULL), 2);
    cache_stop(cache); /* the last prefetch has ended */
    assert_int_equal(get_id(cache, "p1", CACHE_GET_PEEK, NULL), 3);
    assert_int_equal(get_id(cache, "p2", CACHE_GET_PEEK, NULL), 4);
    /* Once stopped, nothing more is queued. */
    assert_int_equal(cache_prefetch(cache, "p3", gated_fetcher(&g, &f)), -ECANCELED);
    cache_waiter_reset(&a.waiter);
    cache_waiter_reset(&b.waiter);
    free_and_check(cache);
    gated_destroy(&g);
}

/* A caller that parks on a queued prefetch moves it to the front; a fresh
 * value is not fetched again; a cache without fetch threads cannot. */
static void test_prefetch_joined_moves_to_front(void **state)
{
    struct cache *cache = make_threaded_cache(false, 1);
    struct cache *plain = make_cache(0, false, 0, 0);
    struct test_waiter a, b, c;
    struct cache_fetcher f;
    struct gated g;
    void *value = NULL;

    (void)state;
    gated_init(&g, 0, 60);
    cache_waiter_init(&a.waiter, cache, test_waiter_ready);
    cache_waiter_init(&b.waiter, cache, test_waiter_ready);
    cache_waiter_init(&c.waiter, cache, test_waiter_ready);
    a.readies = b.readies = c.readies = 0;
    assert_int_equal(parked_get(cache, &a, "a", &g, &value), CACHE_PARKED);
    gate_wait_entered(&g, 1);
    assert_int_equal(cache_prefetch(cache, "p1", gated_fetcher(&g, &f)), 0);
    assert_int_equal(cache_prefetch(cache, "p2", gated_fetcher(&g, &f)), 0);
    assert_int_equal(parked_get(cache, &b, "p2", &g, &value), CACHE_PARKED);
    assert_int_equal(parked_get(cache, &c, "c", &g, &value), CACHE_PARKED);
    gate_open(&g, true);
    wait_count(&g.script.calls, 4);
    cache_stop(cache);
    /* p2, joined, ran before p1 and before "c", parked on after it. */
    assert_int_equal(get_id(cache, "p2", CACHE_GET_PEEK, NULL), 2);
    assert_int_equal(get_id(cache, "c", CACHE_GET_PEEK, NULL), 3);
    assert_int_equal(get_id(cache, "p1", CACHE_GET_PEEK, NULL), 4);
    assert_int_equal(b.readies, 1);
    assert_int_equal(cache_prefetch(plain, "x", gated_fetcher(&g, &f)), -EOPNOTSUPP);
    cache_waiter_reset(&a.waiter);
    cache_waiter_reset(&b.waiter);
    cache_waiter_reset(&c.waiter);
    free_and_check(cache);
    free_and_check(plain);
    gated_destroy(&g);
}

/* A cache of one fetch thread whose fetches `g` gates and can call off. */
static struct cache *make_cancellable_cache(struct gated *g)
{
    struct cache_config config = {
        .clock = fake_clock_now,
        .fetch_threads = 1,
        .cancel_begin = gated_cancel_begin,
        .cancel_fire = gated_cancel_fire,
        .cancel_end = gated_cancel_end,
        .cancel_arg = g,
    };

    return cache_from(&config);
}

/* CACHE_GET_START: a fetch started without waiting, joined if under way,
 * ahead of prefetches; a value at hand is returned as usual. */
static void test_start_fetches_without_waiting(void **state)
{
    struct cache *cache = make_threaded_cache(false, 1);
    struct cache *plain = make_cache(0, false, 0, 0);
    struct test_waiter a;
    struct cache_fetcher f;
    struct gated g;
    void *value = NULL;

    (void)state;
    gated_init(&g, 0, 60);
    cache_waiter_init(&a.waiter, cache, test_waiter_ready);
    a.readies = 0;
    /* "a" holds the only fetch thread: what START asks for is queued. */
    assert_int_equal(parked_get(cache, &a, "a", &g, &value), CACHE_PARKED);
    gate_wait_entered(&g, 1);
    assert_int_equal(cache_prefetch(cache, "p", gated_fetcher(&g, &f)), 0);
    assert_int_equal(
        cache_get_with(cache, "s", CACHE_GET_START, gated_fetcher(&g, &f), &value),
        CACHE_PARKED);
    assert_null(value);
    assert_int_equal(
        cache_get_with(cache, "s", CACHE_GET_START, gated_fetcher(&g, &f), &value),
        CACHE_PARKED);                           /* queued once */
    assert_int_equal(stats_of(cache).parked, 1); /* "a" only: START never parks */
    gate_open(&g, true);
    wait_count(&g.script.calls, 3);
    cache_stop(cache);
    /* "s" ran before the prefetch queued ahead of it, once. */
    assert_int_equal(get_id(cache, "a", CACHE_GET_PEEK, NULL), 1);
    assert_int_equal(get_id(cache, "s", CACHE_GET_PEEK, NULL), 2);
    assert_int_equal(get_id(cache, "p", CACHE_GET_PEEK, NULL), 3);
    /* At hand: returned as by any get. */
    assert_int_equal(
        cache_get_with(cache, "s", CACHE_GET_START, gated_fetcher(&g, &f), &value), 0);
    assert_int_equal(value_id(value), 2);
    test_value_unref(value);
    value = NULL;
    assert_int_equal(
        cache_get_with(plain, "s", CACHE_GET_START, gated_fetcher(&g, &f), &value),
        -EOPNOTSUPP);
    cache_waiter_reset(&a.waiter);
    free_and_check(cache);
    free_and_check(plain);
    gated_destroy(&g);
}

/* cache_let_go is true only for the call that calls a started fetch off:
 * not again, and not for a START caller that came to it afterwards. */
static void test_let_go_says_called_off(void **state)
{
    struct gated g;
    struct cache *cache = make_cancellable_cache(&g);
    struct cache_fetcher f;
    void *value = NULL;

    (void)state;
    gated_init(&g, 0, 60);
    assert_int_equal(
        cache_get_with(cache, "s", CACHE_GET_START, gated_fetcher(&g, &f), &value),
        CACHE_PARKED);
    gate_wait_entered(&g, 1);
    assert_true(cache_let_go(cache, "s"));
    assert_int_equal(g.fires, 1);
    assert_false(cache_let_go(cache, "s")); /* nobody holds it now */
    assert_int_equal(
        cache_get_with(cache, "s", CACHE_GET_START, gated_fetcher(&g, &f), &value),
        CACHE_RUNNING);
    assert_false(cache_let_go(cache, "s")); /* already called off */
    assert_int_equal(g.fires, 1);
    gate_open(&g, true);
    cache_stop(cache);
    free_and_check(cache);
    gated_destroy(&g);
}

/* A fetch that runs says so (CACHE_RUNNING). One a START caller wants is
 * not called off when the callers parked on it leave; once the START
 * callers let go (cache_let_go) it is, unless a waiter still needs it, and
 * one not started yet is dropped. cache_let_go says when it called one off
 * itself. */
static void test_start_held_until_let_go(void **state)
{
    struct gated g;
    struct cache *cache = make_cancellable_cache(&g);
    struct test_waiter a, b;
    struct cache_fetcher f;
    void *value = NULL;

    (void)state;
    gated_init(&g, 0, 60);
    cache_waiter_init(&a.waiter, cache, test_waiter_ready);
    cache_waiter_init(&b.waiter, cache, test_waiter_ready);
    a.readies = b.readies = 0;
    assert_int_equal(
        cache_get_with(cache, "r", CACHE_GET_START, gated_fetcher(&g, &f), &value),
        CACHE_PARKED);
    gate_wait_entered(&g, 1);
    assert_int_equal(
        cache_get_with(cache, "r", CACHE_GET_START, gated_fetcher(&g, &f), &value),
        CACHE_RUNNING);
    /* A caller parks on it, then is interrupted: nobody waits, but the
     * START caller still wants it. */
    assert_int_equal(parked_get(cache, &a, "r", &g, &value), CACHE_PARKED);
    assert_true(cache_waiter_cancel(&a.waiter));
    assert_int_equal(g.fires, 0);
    assert_int_equal(stats_of(cache).cancelled, 0);
    /* Let go while a waiter is parked on it: it goes on, until that one
     * leaves too. */
    assert_int_equal(parked_get(cache, &b, "r", &g, &value), CACHE_PARKED);
    assert_false(cache_let_go(cache, "r")); /* not called off */
    assert_int_equal(g.fires, 0);
    assert_true(cache_waiter_cancel(&b.waiter));
    assert_int_equal(g.fires, 1);
    /* Queued behind it, wanted by START alone: dropped unstarted. */
    assert_int_equal(
        cache_get_with(cache, "q", CACHE_GET_START, gated_fetcher(&g, &f), &value),
        CACHE_PARKED);
    assert_false(cache_let_go(cache, "q"));       /* dropped, not called off */
    assert_false(cache_let_go(cache, "nothing")); /* no such fetch: nothing */
    assert_int_equal(stats_of(cache).cancelled, 2);
    gate_open(&g, true);
    cache_stop(cache);
    assert_int_equal(g.entered, 1); /* "q" never ran */
    expect_error(cache, "q", CACHE_GET_PEEK, NULL, -ENOENT);
    expect_error(cache, "r", CACHE_GET_PEEK, NULL, -ENOENT); /* called off */
    assert_int_equal(a.readies + b.readies, 0);
    cache_waiter_reset(&a.waiter);
    cache_waiter_reset(&b.waiter);
    free_and_check(cache);
    gated_destroy(&g);
}

static void *stop_run(void *arg)
{
    cache_stop(arg);
    return NULL;
}

static void test_stop_answers_queued_waiters(void **state)
{
    struct cache *cache = make_threaded_cache(false, 1);
    pthread_t stopper;
    struct test_waiter a, b;
    struct gated g;
    void *value = NULL;

    (void)state;
    gated_init(&g, 0, 60);
    cache_waiter_init(&a.waiter, cache, test_waiter_ready);
    cache_waiter_init(&b.waiter, cache, test_waiter_ready);
    a.readies = b.readies = 0;
    assert_int_equal(parked_get(cache, &a, "a", &g, &value), CACHE_PARKED);
    gate_wait_entered(&g, 1);
    assert_int_equal(parked_get(cache, &b, "b", &g, &value), CACHE_PARKED);
    /* The queued fetch ends at once; the running one is waited for. */
    assert_int_equal(pthread_create(&stopper, NULL, stop_run, cache), 0);
    wait_count(&b.readies, 1);
    assert_int_equal(a.readies, 0);
    gate_open(&g, true);
    assert_int_equal(pthread_join(stopper, NULL), 0);
    assert_int_equal(a.readies, 1);
    assert_int_equal(b.readies, 1);
    assert_int_equal(parked_get(cache, &b, "b", &g, &value), -ECANCELED);
    cache_waiter_reset(&b.waiter);
    /* Once stopped, nothing more parks. */
    assert_int_equal(parked_get(cache, &b, "c", &g, &value), -ECANCELED);
    cache_waiter_reset(&a.waiter);
    cache_waiter_reset(&b.waiter);
    free_and_check(cache);
    gated_destroy(&g);
}

static void test_stale_while_revalidate(void **state)
{
    struct cache *cache = make_threaded_cache(true, 1);
    struct cache_fetcher f;
    struct gated g;
    struct cache_stats st;
    void *value = NULL;
    char log[4096];

    (void)state;
    gated_init(&g, 0, 10);
    gate_open(&g, true);
    assert_int_equal(cache_get_with(cache, "k", 0, gated_fetcher(&g, &f), &value), 0);
    assert_int_equal(value_id(value), 1);
    test_value_unref(value);
    gate_open(&g, false);
    fake_clock_advance(11);
    /* Expired: the copy at once, the refresh on a fetch thread, held. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cache_get_with(cache, "k", 0, gated_fetcher(&g, &f), &value), 0);
        assert_int_equal(value_id(value), 1);
        test_value_unref(value);
    }
    gate_wait_entered(&g, 2);
    st = stats_of(cache);
    assert_int_equal(st.refreshes, 1);
    assert_int_equal(st.stale_served, 3);
    assert_int_equal(st.waiting + st.parked, 0);
    gate_open(&g, true);
    wait_stat(cache, offsetof(struct cache_stats, refreshed), 1);
    assert_int_equal(get_id(cache, "k", 0, &g.script), 2);

    /* A failed refresh keeps the copy, with one warning, and is tried
     * again only after a while. */
    fake_clock_advance(11);
    g.script.rc = -EIO;
    capture_start();
    assert_int_equal(cache_get_with(cache, "k", 0, gated_fetcher(&g, &f), &value), 0);
    assert_int_equal(value_id(value), 2);
    test_value_unref(value);
    wait_stat(cache, offsetof(struct cache_stats, refresh_failures), 1);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cache_get_with(cache, "k", 0, gated_fetcher(&g, &f), &value), 0);
        assert_int_equal(value_id(value), 2);
        test_value_unref(value);
    }
    assert_int_equal(stats_of(cache).refreshes, 2);
    fake_clock_advance(10);
    g.script.rc = 0;
    assert_int_equal(cache_get_with(cache, "k", 0, gated_fetcher(&g, &f), &value), 0);
    test_value_unref(value);
    st = wait_stat(cache, offsetof(struct cache_stats, refreshed), 2);
    assert_int_equal(st.refreshes, 3);
    assert_int_equal(get_id(cache, "k", 0, &g.script), 3);

    /* Past max_stale the caller waits for the fetch. */
    fake_clock_advance(100);
    assert_int_equal(cache_get_with(cache, "k", 0, gated_fetcher(&g, &f), &value), 0);
    assert_int_equal(value_id(value), 4);
    test_value_unref(value);
    /* Expired by cache_expire_all (SIGHUP): waited for too. */
    cache_expire_all(cache);
    assert_int_equal(cache_get_with(cache, "k", 0, gated_fetcher(&g, &f), &value), 0);
    assert_int_equal(value_id(value), 5);
    test_value_unref(value);
    /* The warning is logged by the fetch thread after the failure counts:
     * once the threads are stopped, it is out. */
    cache_stop(cache);
    capture_stop(log, sizeof(log));
    assert_int_equal(count_occurrences(log, "serving cached copy of k"), 1);
    free_and_check(cache);
    gated_destroy(&g);
}

static void test_strict_without_stale_if_error(void **state)
{
    struct cache *cache = make_threaded_cache(false, 1);
    struct cache_fetcher f;
    struct gated g;
    void *value = NULL;

    (void)state;
    gated_init(&g, 0, 10);
    gate_open(&g, true);
    assert_int_equal(get_id(cache, "k", 0, &g.script), 1);
    fake_clock_advance(11);
    g.script.rc = -EIO;
    /* stale_if_error=0: the refresh is waited for, and its error is the
     * answer. */
    assert_int_equal(cache_get_with(cache, "k", 0, gated_fetcher(&g, &f), &value), -EIO);
    assert_int_equal(stats_of(cache).refreshes, 0);
    free_and_check(cache);
    gated_destroy(&g);
}

static void test_cancel_calls_off_a_running_fetch(void **state)
{
    struct gated g;
    struct cache *cache;
    struct test_waiter a, b;
    void *value = NULL;

    (void)state;
    gated_init(&g, 0, 60);
    cache = make_cancellable_cache(&g);
    cache_waiter_init(&a.waiter, cache, test_waiter_ready);
    cache_waiter_init(&b.waiter, cache, test_waiter_ready);
    a.readies = b.readies = 0;
    assert_int_equal(parked_get(cache, &a, "k", &g, &value), CACHE_PARKED);
    gate_wait_entered(&g, 1);
    /* Its only waiter gives up: the running fetch is called off. */
    assert_true(cache_waiter_cancel(&a.waiter));
    assert_int_equal(g.fires, 1);
    assert_int_equal(stats_of(cache).cancelled, 1);
    /* A caller that comes before it ends is not handed its -ECANCELED: it
     * is told to ask again, and then fetches anew. */
    assert_int_equal(parked_get(cache, &b, "k", &g, &value), CACHE_PARKED);
    gate_open(&g, true);
    wait_count(&b.readies, 1);
    assert_int_equal(parked_get(cache, &b, "k", &g, &value), CACHE_PARKED);
    wait_count(&b.readies, 2);
    assert_int_equal(parked_get(cache, &b, "k", &g, &value), 0);
    assert_int_equal(value_id(value), 1);
    test_value_unref(value);
    assert_int_equal(g.entered, 2);
    assert_int_equal(a.readies, 0);
    cache_waiter_reset(&a.waiter);
    cache_waiter_reset(&b.waiter);
    free_and_check(cache);
    gated_destroy(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_hit_then_miss, reset),
        cmocka_unit_test_setup(test_ttl_expiry, reset),
        cmocka_unit_test_setup(test_single_flight, reset),
        cmocka_unit_test_setup(test_waiters_share_error, reset),
        cmocka_unit_test_setup(test_negative_entries, reset),
        cmocka_unit_test_setup(test_negative_ttl_zero_not_remembered, reset),
        cmocka_unit_test_setup(test_stale_served_and_logged, reset),
        cmocka_unit_test_setup(test_stale_shared_with_waiters, reset),
        cmocka_unit_test_setup(test_stale_not_for_answers, reset),
        cmocka_unit_test_setup(test_stale_not_beyond_max_stale, reset),
        cmocka_unit_test_setup(test_stale_disabled, reset),
        cmocka_unit_test_setup(test_refresh, reset),
        cmocka_unit_test_setup(test_peek, reset),
        cmocka_unit_test_setup(test_lru_eviction_order, reset),
        cmocka_unit_test_setup(test_byte_bound, reset),
        cmocka_unit_test_setup(test_value_in_use_survives_eviction, reset),
        cmocka_unit_test_setup(test_oversize_value, reset),
        cmocka_unit_test_setup(test_expire_all_then_failing_refresh, reset),
        cmocka_unit_test_setup(test_clear, reset),
        cmocka_unit_test_setup(test_stats, reset),
        cmocka_unit_test_setup(test_fetch_without_value, reset),
        cmocka_unit_test_setup(test_out_of_memory, reset),
        cmocka_unit_test_setup(test_concurrent_stress, reset),
        cmocka_unit_test_setup(test_parked_callers_do_not_wait, reset),
        cmocka_unit_test_setup(test_parked_callers_share_an_error, reset),
        cmocka_unit_test_setup(test_cancel_drops_a_fetch_nobody_waits_for, reset),
        cmocka_unit_test_setup(test_stop_answers_queued_waiters, reset),
        cmocka_unit_test_setup(test_stale_while_revalidate, reset),
        cmocka_unit_test_setup(test_strict_without_stale_if_error, reset),
        cmocka_unit_test_setup(test_cancel_calls_off_a_running_fetch, reset),
        cmocka_unit_test_setup(test_prefetch_runs_behind_waited_fetches, reset),
        cmocka_unit_test_setup(test_prefetch_joined_moves_to_front, reset),
        cmocka_unit_test_setup(test_start_fetches_without_waiting, reset),
        cmocka_unit_test_setup(test_start_held_until_let_go, reset),
        cmocka_unit_test_setup(test_let_go_says_called_off, reset),
    };

    log_setup(LOG_LEVEL_WARNING, false);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
