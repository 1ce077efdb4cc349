/*
 * Unit tests of the page cache (fs/pagecache.c): the budget, least recently
 * used first, pinned pages spared, pages fetched again (once for many
 * readers), pages that changed, failed fetches, and its lifetime.
 *
 * The test of one fetch for many readers holds the fetch until the cache
 * reports the other readers waiting on it (pagecache_stats.waiting), so it
 * fails, rather than passes by luck, if they fetch on their own.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "batchfs/blob.h"
#include "batchfs/buf.h"
#include "batchfs/pagecache.h"

#define PAGE_LEN 400

/* The server of the tests: a page is its name repeated to PAGE_LEN bytes,
 * unless told otherwise. */
struct server {
    pthread_mutex_t lock;
    pthread_cond_t fetched; /* fetches grew */
    int fetches;        /* fetch calls */
    int fail;           /* the error of every fetch, or 0 */
    bool changed;       /* serve other bytes of the same length */
    bool shorter;       /* serve fewer bytes */
    struct pagecache *watch; /* with wait_waiting: the cache to watch */
    size_t wait_waiting;     /* a fetch answers once this many readers wait */
    bool waiters_missing;    /* they never all came; guarded by lock */
    size_t other;       /* what other_bytes says */
    int other_calls;
};

static void page_bytes(const char *where, bool changed, struct buf *out)
{
    size_t n = strlen(where);

    for (size_t i = 0; i < PAGE_LEN; i++)
        buf_append_char(out, where[i % n]);
    if (changed)
        out->data[PAGE_LEN / 2] ^= 1;
}

/* Holds a fetch until s->wait_waiting readers wait on it; only a hang (or
 * readers that never wait) reaches the deadline. */
static void wait_for_waiters(struct server *s)
{
    struct timespec now;
    time_t give_up;

    clock_gettime(CLOCK_MONOTONIC, &now);
    give_up = now.tv_sec + 30;
    for (;;) {
        struct pagecache_stats st;

        pagecache_get_stats(s->watch, &st);
        if (st.waiting >= s->wait_waiting)
            return;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > give_up) {
            pthread_mutex_lock(&s->lock);
            s->waiters_missing = true;
            pthread_mutex_unlock(&s->lock);
            return;
        }
        sched_yield();
    }
}

static int serve(void *arg, const char *where, struct buf *body)
{
    struct server *s = arg;
    bool changed, shorter;
    int fail;

    pthread_mutex_lock(&s->lock);
    s->fetches++;
    pthread_cond_broadcast(&s->fetched);
    fail = s->fail;
    changed = s->changed;
    shorter = s->shorter;
    pthread_mutex_unlock(&s->lock);
    if (s->wait_waiting)
        wait_for_waiters(s);
    if (fail)
        return fail;
    page_bytes(where, changed, body);
    if (shorter)
        body->len--;
    return 0;
}

static size_t other_bytes(void *arg)
{
    struct server *s = arg;

    s->other_calls++;
    return s->other;
}

static int fetches(struct server *s)
{
    int n;

    pthread_mutex_lock(&s->lock);
    n = s->fetches;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* Waits until the server has been asked for `n` pages in all (a fetch
 * on the read-ahead thread); fails after a generous minute. */
static void wait_fetches(struct server *s, int n)
{
    struct timespec deadline;
    int rc = 0;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 60;
    pthread_mutex_lock(&s->lock);
    while (s->fetches < n && rc == 0)
        rc = pthread_cond_timedwait(&s->fetched, &s->lock, &deadline);
    pthread_mutex_unlock(&s->lock);
    assert_true(fetches(s) >= n);
}

/* A page as a listing adds it: pinned once, with its bytes. */
static struct blob *add(struct pagecache *pc, struct server *s, const char *where)
{
    struct buf b = BUF_INIT;
    struct blob *page;

    page_bytes(where, false, &b);
    assert_int_equal(buf_reserve(&b, 1), 0);
    page = pagecache_add(pc, buf_steal_big(&b), PAGE_LEN, serve, s, where);
    assert_non_null(page);
    return page;
}

/* Reads a page through a pin: 0 when its bytes are the page's. */
static int read_page(struct blob *page, const char *where)
{
    struct buf want = BUF_INIT;
    const char *bytes;
    int rc = blob_pin(page, &bytes);

    if (rc)
        return rc;
    page_bytes(where, false, &want);
    assert_memory_equal(bytes, want.data, PAGE_LEN);
    blob_unpin(page);
    buf_free(&want);
    return 0;
}

static struct pagecache *cache_of(size_t max, struct server *s)
{
    struct pagecache_config c = {.max_bytes = max, .other_bytes = other_bytes, .other_arg = s};
    struct pagecache *pc = pagecache_new(&c);

    assert_non_null(pc);
    return pc;
}

static int server_setup(void **state)
{
    struct server *s = calloc(1, sizeof(*s));

    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->fetched, NULL);
    *state = s;
    return 0;
}

static int server_teardown(void **state)
{
    struct server *s = *state;

    pthread_cond_destroy(&s->fetched);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return 0;
}

/* Pages stay while they fit; past the budget the least recently used one
 * goes once nobody pins it, and comes back, the same, when read. */
static void test_budget_and_lru(void **state)
{
    struct server *s = *state;
    struct pagecache *pc = cache_of(2 * PAGE_LEN + 10, s);
    struct pagecache_stats st;
    struct blob *a = add(pc, s, "a"), *b = add(pc, s, "b"), *c;

    blob_unpin(a);
    blob_unpin(b);
    assert_int_equal(read_page(a, "a"), 0); /* a is now the most recent */
    c = add(pc, s, "c");
    /* Three pinned... two unpinned: b goes, the least recently used. */
    pagecache_get_stats(pc, &st);
    assert_int_equal(st.pages, 3);
    assert_int_equal(st.kept, 2);
    assert_int_equal(st.kept_bytes, 2 * PAGE_LEN);
    assert_int_equal(st.drops, 1);
    assert_int_equal(fetches(s), 0);
    assert_int_equal(read_page(a, "a"), 0);
    assert_int_equal(fetches(s), 0);
    blob_unpin(c);
    /* b is fetched again, and c, used longest ago (a was read after c
     * came), goes for it. */
    assert_int_equal(read_page(b, "b"), 0);
    assert_int_equal(fetches(s), 1);
    pagecache_get_stats(pc, &st);
    assert_int_equal(st.fetches, 1);
    assert_int_equal(st.kept, 2);
    assert_int_equal(st.drops, 2);
    assert_int_equal(read_page(a, "a"), 0);
    assert_int_equal(fetches(s), 1);
    assert_int_equal(read_page(c, "c"), 0);
    assert_int_equal(fetches(s), 2);
    assert_true(s->other_calls > 0);
    blob_unref(a);
    blob_unref(b);
    blob_unref(c);
    pagecache_get_stats(pc, &st);
    assert_int_equal(st.pages, 0);
    assert_int_equal(st.kept_bytes, 0);
    pagecache_free(pc);
}

/* Room for a page more: while the pages and what is counted elsewhere are
 * under the budget; always without one. */
static void test_room(void **state)
{
    struct server *s = *state;
    struct pagecache *pc = cache_of(2 * PAGE_LEN + 10, s), *unbounded = cache_of(0, s);
    struct blob *a;

    assert_true(pagecache_has_room(pc));
    a = add(pc, s, "a");
    blob_unpin(a);
    assert_true(pagecache_has_room(pc));
    s->other = PAGE_LEN + 10; /* a listing kept beyond the budget, say */
    assert_false(pagecache_has_room(pc));
    s->other = 0;
    assert_true(pagecache_has_room(pc));
    s->other = 3 * PAGE_LEN;
    assert_true(pagecache_has_room(unbounded));
    s->other = 0;
    blob_unref(a);
    pagecache_free(pc);
    pagecache_free(unbounded);
}

/* Pinned pages are never dropped, whatever the budget; they go when let
 * go of, but for the two most recently used, which stay even when what the
 * caller counts elsewhere takes the whole budget. */
static void test_pinned_spared_and_floor(void **state)
{
    struct server *s = *state;
    struct pagecache *pc = cache_of(PAGE_LEN, s);
    struct pagecache_stats st;
    struct blob *a = add(pc, s, "a"), *b = add(pc, s, "b"), *c = add(pc, s, "c"),
                *d = add(pc, s, "d");
    const char *bytes;

    pagecache_get_stats(pc, &st);
    assert_int_equal(st.kept, 4); /* all pinned */
    assert_int_equal(st.drops, 0);
    blob_unpin(a);
    pagecache_get_stats(pc, &st);
    assert_int_equal(st.kept, 3); /* a went; the others are pinned */
    blob_unpin(b);
    blob_unpin(c);
    blob_unpin(d);
    pagecache_get_stats(pc, &st);
    assert_int_equal(st.kept, 2); /* c and d, the newest, stay */
    assert_int_equal(st.drops, 2);
    assert_int_equal(read_page(d, "d"), 0);
    assert_int_equal(read_page(c, "c"), 0);
    assert_int_equal(fetches(s), 0);
    /* The listings take the whole budget: still two pages stay. */
    s->other = 10 * PAGE_LEN;
    assert_int_equal(blob_pin(a, &bytes), 0); /* fetched: d, used longest ago, goes */
    assert_int_equal(fetches(s), 1);
    pagecache_get_stats(pc, &st);
    assert_int_equal(st.kept, 2);
    blob_unpin(a);
    assert_int_equal(read_page(c, "c"), 0);
    assert_int_equal(fetches(s), 1);
    assert_int_equal(read_page(d, "d"), 0);
    assert_int_equal(fetches(s), 2);
    s->other = 0;
    blob_unref(a);
    blob_unref(b);
    blob_unref(c);
    blob_unref(d);
    pagecache_free(pc);
}

/* With no budget nothing is dropped. */
static void test_unbounded(void **state)
{
    struct server *s = *state;
    struct pagecache *pc = cache_of(0, s);
    struct pagecache_stats st;
    struct blob *pages[8];

    for (int i = 0; i < 8; i++) {
        char where[8];

        snprintf(where, sizeof(where), "p%d", i);
        pages[i] = add(pc, s, where);
        blob_unpin(pages[i]);
    }
    pagecache_get_stats(pc, &st);
    assert_int_equal(st.kept, 8);
    assert_int_equal(st.drops, 0);
    for (int i = 0; i < 8; i++)
        blob_unref(pages[i]);
    pagecache_free(pc);
}

/* A page that comes back other than it was (its folder changed) fails with
 * ESTALE, and is not asked for again; a failed fetch is the reader's error
 * and the next reader tries again. */
static void test_changed_and_failed(void **state)
{
    struct server *s = *state;
    struct pagecache *pc = cache_of(1, s);
    struct pagecache_stats st;
    struct blob *a = add(pc, s, "a"), *b = add(pc, s, "b"), *c = add(pc, s, "c");
    struct blob *d = add(pc, s, "d"), *e = add(pc, s, "e");
    const char *bytes;

    blob_unpin(a);
    blob_unpin(b);
    blob_unpin(c);
    blob_unpin(d);
    blob_unpin(e);
    pagecache_get_stats(pc, &st);
    assert_int_equal(st.kept, 2); /* a, b and c went */
    s->changed = true;
    assert_int_equal(blob_pin(a, &bytes), -ESTALE);
    assert_int_equal(blob_pin(a, &bytes), -ESTALE);
    assert_int_equal(fetches(s), 1); /* the second reader did not ask */
    s->changed = false;
    s->shorter = true;
    assert_int_equal(blob_pin(b, &bytes), -ESTALE);
    s->shorter = false;
    s->fail = -ETIMEDOUT;
    assert_int_equal(blob_pin(c, &bytes), -ETIMEDOUT);
    s->fail = 0;
    assert_int_equal(read_page(c, "c"), 0);
    assert_int_equal(fetches(s), 4);
    pagecache_get_stats(pc, &st);
    assert_int_equal(st.mismatches, 2);
    assert_int_equal(st.fetches, 4);
    blob_unref(a);
    blob_unref(b);
    blob_unref(c);
    blob_unref(d);
    blob_unref(e);
    pagecache_free(pc);
}

struct reader {
    struct blob *page;
    int rc;
};

static void *reader_run(void *arg)
{
    struct reader *r = arg;

    r->rc = read_page(r->page, "shared");
    return NULL;
}

/* Readers of a dropped page at once share one fetch. */
static void test_one_fetch_for_many(void **state)
{
    struct server *s = *state;
    struct pagecache *pc = cache_of(1, s);
    struct blob *page = add(pc, s, "shared"), *x = add(pc, s, "x"), *y = add(pc, s, "y");
    struct reader readers[8];
    pthread_t threads[8];

    blob_unpin(page);
    blob_unpin(x);
    blob_unpin(y); /* page, the oldest, is dropped */
    s->watch = pc;
    s->wait_waiting = 7;
    for (int i = 0; i < 8; i++) {
        readers[i] = (struct reader){page, -1};
        assert_int_equal(pthread_create(&threads[i], NULL, reader_run, &readers[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(readers[i].rc, 0);
    }
    assert_false(s->waiters_missing);
    assert_int_equal(fetches(s), 1);
    s->wait_waiting = 0;
    blob_unref(page);
    blob_unref(x);
    blob_unref(y);
    pagecache_free(pc);
}

/* Pages outlive the cache's owner; other_bytes is not called after. */
static void test_pages_outlive_owner(void **state)
{
    struct server *s = *state;
    struct pagecache *pc = cache_of(1, s);
    struct blob *a = add(pc, s, "a"), *b = add(pc, s, "b"), *c = add(pc, s, "late");
    int calls;

    pagecache_free(pc);
    calls = s->other_calls;
    blob_unpin(a);
    blob_unpin(b);
    blob_unpin(c); /* a goes: over the budget, with nobody to ask */
    assert_int_equal(read_page(a, "a"), 0);
    assert_int_equal(fetches(s), 1);
    assert_int_equal(s->other_calls, calls);
    blob_unref(a);
    blob_unref(b);
    blob_unref(c); /* frees the rest (ASan: no leak, no use after free) */
}

/* Reading a page that had to be fetched again has the dropped page after
 * it in its folder fetched ahead, and that one's in turn when it is read:
 * a walk in folder order waits for the first page only. Pages that were
 * never dropped, or have no page after them, read nothing ahead. */
static void test_read_ahead_in_folder_order(void **state)
{
    struct server *s = *state;
    struct pagecache *pc = cache_of(1, s);
    struct pagecache_stats st;
    const char *names[] = {"a", "b", "c", "d"};
    struct blob *pages[4];

    for (int i = 0; i < 4; i++)
        pages[i] = add(pc, s, names[i]);
    for (int i = 0; i < 3; i++)
        pagecache_follows(pc, pages[i], pages[i + 1]);
    pagecache_follows(pc, pages[0], pages[2]); /* a has its next already */
    for (int i = 0; i < 4; i++)
        blob_unpin(pages[i]); /* a and b are dropped: c and d stay */
    pagecache_get_stats(pc, &st);
    assert_int_equal(st.kept, 2);
    assert_int_equal(read_page(pages[2], "c"), 0); /* never dropped: no read-ahead */
    assert_int_equal(read_page(pages[0], "a"), 0);
    wait_fetches(s, 2); /* a, then b ahead */
    assert_int_equal(read_page(pages[1], "b"), 0);
    wait_fetches(s, 3); /* c, dropped for b, ahead */
    assert_int_equal(read_page(pages[2], "c"), 0);
    wait_fetches(s, 4); /* d ahead */
    assert_int_equal(read_page(pages[3], "d"), 0);
    pagecache_get_stats(pc, &st);
    assert_int_equal(st.fetches, 4);
    assert_int_equal(fetches(s), 4); /* d is last: nothing after it */
    for (int i = 0; i < 4; i++)
        blob_unref(pages[i]);
    pagecache_free(pc);
}

/* A page whose fetch ahead may be under way can be let go of: its last
 * reference waits for the fetch (ASan, TSan: no use after free, no race). */
static void test_page_freed_while_read_ahead(void **state)
{
    struct server *s = *state;
    struct pagecache *pc = cache_of(1, s);
    struct blob *a = add(pc, s, "a"), *b = add(pc, s, "b"), *c = add(pc, s, "c"),
                *d = add(pc, s, "d");

    pagecache_follows(pc, a, b);
    blob_unpin(a);
    blob_unpin(b);
    blob_unpin(c);
    blob_unpin(d);
    assert_int_equal(read_page(a, "a"), 0);
    blob_unref(b);
    blob_unref(a);
    blob_unref(c);
    blob_unref(d);
    pagecache_free(pc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_budget_and_lru, server_setup,
                                        server_teardown),
        cmocka_unit_test_setup_teardown(test_room, server_setup, server_teardown),
        cmocka_unit_test_setup_teardown(test_pinned_spared_and_floor, server_setup,
                                        server_teardown),
        cmocka_unit_test_setup_teardown(test_unbounded, server_setup, server_teardown),
        cmocka_unit_test_setup_teardown(test_changed_and_failed, server_setup,
                                        server_teardown),
        cmocka_unit_test_setup_teardown(test_one_fetch_for_many, server_setup,
                                        server_teardown),
        cmocka_unit_test_setup_teardown(test_pages_outlive_owner, server_setup,
                                        server_teardown),
        cmocka_unit_test_setup_teardown(test_read_ahead_in_folder_order, server_setup,
                                        server_teardown),
        cmocka_unit_test_setup_teardown(test_page_freed_while_read_ahead, server_setup,
                                        server_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
