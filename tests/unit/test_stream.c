/*
 * Unit tests of the stream (fs/stream.c): a listing handed out while its
 * pages arrive, its waiters, its end, and a reader that reads while the
 * writer adds (run under TSan in CI).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "batchfs/stream.h"

static const struct timespec T0 = {1700000000, 5};

/* A waiter that counts how often it was told. */
struct counting {
    struct stream_waiter waiter; /* first */
    int told;
};

static void counting_ready(struct stream_waiter *w)
{
    ((struct counting *)w)->told++;
}

static void add_ids(struct stream *s, const char *prefix, int from, int to)
{
    for (int i = from; i < to; i++) {
        char id[64];

        snprintf(id, sizeof(id), "%s-%d", prefix, i);
        assert_int_equal(stream_add(s, id, i % 2 ? "completed" : "running", T0), 0);
    }
}

static void test_entries_readable_once_published(void **state)
{
    struct stream *s = stream_new();
    const struct entry *e;

    (void)state;
    assert_non_null(s);
    add_ids(s, "job", 0, 3);
    assert_int_equal(stream_count(s), 0); /* added, not published */
    stream_publish(s);
    assert_int_equal(stream_count(s), 3);
    e = stream_entry(s, 1);
    assert_string_equal(e->name, "job-1");
    assert_string_equal(e->status, "completed");
    assert_int_equal(entry_mtime(e).tv_sec, T0.tv_sec);
    assert_int_equal(e->api_index, 1);
    assert_null(e->content);
    assert_string_equal(stream_entry(s, 2)->status, "running");
    assert_false(stream_done(s, NULL));
    assert_true(stream_bytes(s) > 3 * sizeof(struct entry));
    assert_int_equal(stream_announced(s), 0); /* not said */
    stream_set_announced(s, 200000);
    assert_int_equal(stream_announced(s), 200000);
    stream_release(s);
}

static void test_status_absent(void **state)
{
    struct stream *s = stream_new();

    (void)state;
    assert_int_equal(stream_add(s, "a1", NULL, T0), 0);
    assert_int_equal(stream_add(s, "a2", "done", T0), 0);
    assert_int_equal(stream_add(s, "a3", NULL, T0), 0);
    stream_finish(s, 0);
    assert_null(stream_entry(s, 0)->status);
    assert_string_equal(stream_entry(s, 1)->status, "done");
    assert_null(stream_entry(s, 2)->status);
    stream_release(s);
}

static void test_waiter_parks_until_more(void **state)
{
    struct stream *s = stream_new();
    struct counting c;

    (void)state;
    stream_waiter_init(&c.waiter, counting_ready);
    c.told = 0;
    add_ids(s, "job", 0, 2);
    stream_publish(s);
    assert_int_equal(stream_wait(s, 1, &c.waiter), 0);
    assert_int_equal(stream_wait(s, 2, &c.waiter), STREAM_PARKED);
    assert_int_equal(stream_waiting(), 1);
    add_ids(s, "job", 2, 3);
    assert_int_equal(c.told, 0); /* added, not published: nothing to tell */
    stream_publish(s);
    assert_int_equal(c.told, 1);
    assert_int_equal(stream_waiting(), 0);
    assert_int_equal(stream_wait(s, 2, &c.waiter), 0);
    /* Told once per parking: a second publish tells nobody. */
    stream_publish(s);
    assert_int_equal(c.told, 1);
    stream_release(s);
}

static void test_end_well_and_in_failure(void **state)
{
    struct stream *ok = stream_new(), *bad = stream_new();
    struct counting c;
    int rc = 1;

    (void)state;
    stream_waiter_init(&c.waiter, counting_ready);
    c.told = 0;
    add_ids(ok, "j", 0, 2);
    assert_int_equal(stream_wait(ok, 2, &c.waiter), STREAM_PARKED);
    stream_finish(ok, 0);
    assert_int_equal(c.told, 1);
    assert_true(stream_done(ok, &rc));
    assert_int_equal(rc, 0);
    assert_int_equal(stream_count(ok), 2);              /* finishing publishes */
    assert_int_equal(stream_wait(ok, 2, &c.waiter), 0); /* the end: count final */

    add_ids(bad, "j", 0, 2);
    stream_publish(bad);
    assert_int_equal(stream_wait(bad, 2, &c.waiter), STREAM_PARKED);
    stream_finish(bad, -EIO);
    assert_int_equal(c.told, 2);
    assert_int_equal(stream_wait(bad, 1, &c.waiter), 0);    /* what it has stands */
    assert_int_equal(stream_wait(bad, 2, &c.waiter), -EIO); /* past it, the error */
    stream_finish(bad, 0); /* only the first end counts */
    assert_true(stream_done(bad, &rc));
    assert_int_equal(rc, -EIO);
    stream_release(ok);
    stream_release(bad);
}

static void test_parked_is_never_an_outcome(void **state)
{
    struct stream *s = stream_new();
    struct counting c;

    (void)state;
    stream_waiter_init(&c.waiter, counting_ready);
    stream_finish(s, STREAM_PARKED);
    assert_int_equal(stream_wait(s, 0, &c.waiter), -EIO);
    stream_release(s);
}

static void test_cancel(void **state)
{
    struct stream *s = stream_new();
    struct counting c;

    (void)state;
    stream_waiter_init(&c.waiter, counting_ready);
    c.told = 0;
    assert_int_equal(stream_wait(s, 0, &c.waiter), STREAM_PARKED);
    assert_true(stream_waiter_cancel(&c.waiter)); /* taken off: never told */
    add_ids(s, "j", 0, 1);
    stream_publish(s);
    assert_int_equal(c.told, 0);
    assert_int_equal(stream_waiting(), 0);
    /* Cancelled: what is at hand is still given, a wait for more is not. */
    assert_int_equal(stream_wait(s, 0, &c.waiter), 0);
    assert_int_equal(stream_wait(s, 1, &c.waiter), -EINTR);
    /* Not parked: false, and the next wait that would park says -EINTR. */
    stream_waiter_init(&c.waiter, counting_ready);
    assert_false(stream_waiter_cancel(&c.waiter));
    assert_int_equal(stream_wait(s, 1, &c.waiter), -EINTR);
    stream_release(s);
}

static void test_restart_adds_each_id_once(void **state)
{
    struct stream *s = stream_new();

    (void)state;
    add_ids(s, "job", 0, 3);
    stream_publish(s);
    stream_restart(s);
    /* The list read again: job-1 and job-2 again, job-3 new. */
    add_ids(s, "job", 1, 4);
    stream_restart(s); /* a second restart keeps what it knows */
    add_ids(s, "job", 3, 5);
    stream_finish(s, 0);
    assert_int_equal(stream_count(s), 5);
    for (int i = 0; i < 5; i++) {
        char id[16];

        snprintf(id, sizeof(id), "job-%d", i);
        assert_string_equal(stream_entry(s, (size_t)i)->name, id);
    }
    stream_release(s);
}

/* Enough entries for several chunks and tables, and ids long enough for a
 * block of their own. */
static void test_many_entries_stay_put(void **state)
{
    struct stream *s = stream_new();
    const struct entry *first;
    char *long_id = malloc(40000);

    (void)state;
    assert_non_null(long_id);
    memset(long_id, 'x', 39999);
    long_id[39999] = '\0';
    add_ids(s, "job", 0, 10);
    stream_publish(s);
    first = stream_entry(s, 0);
    add_ids(s, "job", 10, 50000);
    assert_int_equal(stream_add(s, long_id, "running", T0), 0);
    add_ids(s, "job", 50000, 50010);
    stream_finish(s, 0);
    assert_ptr_equal(stream_entry(s, 0), first); /* never moved */
    assert_string_equal(first->name, "job-0");
    assert_int_equal(stream_count(s), 50011);
    assert_string_equal(stream_entry(s, 49999)->name, "job-49999");
    assert_string_equal(stream_entry(s, 50000)->name, long_id);
    assert_string_equal(stream_entry(s, 50001)->name, "job-50000");
    assert_string_equal(stream_entry(s, 50010)->name, "job-50009");
    free(long_id);
    stream_release(s);
}

/* A reader on its own thread, waiting as a parked readdir would (on a
 * condition its ready function signals), checks every entry it is given. */
struct reader {
    struct stream_waiter waiter; /* first */
    struct stream *stream;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool told;
    size_t read;
    int rc;
};

static void reader_ready(struct stream_waiter *w)
{
    struct reader *r = (struct reader *)w;

    pthread_mutex_lock(&r->lock);
    r->told = true;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static void *reader_run(void *arg)
{
    struct reader *r = arg;

    for (;;) {
        int rc;

        pthread_mutex_lock(&r->lock);
        r->told = false;
        pthread_mutex_unlock(&r->lock);
        rc = stream_wait(r->stream, r->read, &r->waiter);
        if (rc == STREAM_PARKED) {
            pthread_mutex_lock(&r->lock);
            while (!r->told)
                pthread_cond_wait(&r->cond, &r->lock);
            pthread_mutex_unlock(&r->lock);
            continue;
        }
        if (rc < 0 || r->read == stream_count(r->stream)) {
            r->rc = rc;
            return NULL; /* the end */
        }
        for (size_t n = stream_count(r->stream); r->read < n; r->read++) {
            char id[32];

            snprintf(id, sizeof(id), "job-%zu", r->read);
            if (strcmp(stream_entry(r->stream, r->read)->name, id) != 0) {
                r->rc = -EPROTO;
                return NULL;
            }
        }
    }
}

static void test_reader_while_the_writer_adds(void **state)
{
    struct reader r;
    pthread_t thread;

    (void)state;
    memset(&r, 0, sizeof(r));
    stream_waiter_init(&r.waiter, reader_ready);
    r.stream = stream_new();
    pthread_mutex_init(&r.lock, NULL);
    pthread_cond_init(&r.cond, NULL);
    assert_int_equal(pthread_create(&thread, NULL, reader_run, &r), 0);
    for (int page = 0; page < 100; page++) {
        add_ids(r.stream, "job", page * 1000, page * 1000 + 1000);
        stream_publish(r.stream);
    }
    stream_finish(r.stream, 0);
    assert_int_equal(pthread_join(thread, NULL), 0);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.read, 100000);
    pthread_cond_destroy(&r.cond);
    pthread_mutex_destroy(&r.lock);
    stream_release(r.stream);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entries_readable_once_published),
        cmocka_unit_test(test_status_absent),
        cmocka_unit_test(test_waiter_parks_until_more),
        cmocka_unit_test(test_end_well_and_in_failure),
        cmocka_unit_test(test_parked_is_never_an_outcome),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_restart_adds_each_id_once),
        cmocka_unit_test(test_many_entries_stay_put),
        cmocka_unit_test(test_reader_while_the_writer_adds),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
