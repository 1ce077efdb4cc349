/*
 * Unit tests for live.c: listings still in use, found again by their key,
 * across the table's growth, until released, expired or out of date.
 */
#include "batchfs/live.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "batchfs/catalog.h"
#include "fake_clock.h"

#define MANY 500 /* well past the table's first size: it grows several times */

static struct listing *registered(struct live *live, const char *key, double ttl_s)
{
    struct listing *l = listing_new(LISTING_ITEMS);

    assert_non_null(l);
    live_add(live, l, key, ttl_s);
    assert_ptr_equal(listing_link(l)->home, live);
    return l;
}

/* live_take's listing for `key`, or NULL; the reference it took is dropped. */
static struct listing *found(struct live *live, const char *key)
{
    double left = -1;
    struct listing *l = live_take(live, key, &left);

    if (l) {
        assert_true(left > 0);
        assert_true(l->refs >= 2);
        listing_release(l);
    }
    return l;
}

static void test_found_by_key_through_growth(void **state)
{
    struct live *live = live_new(NULL, NULL);
    struct listing *all[MANY], *older, *newer;
    char key[32];

    (void)state;
    assert_non_null(live);
    /* Two listings of one key, added before the table grows: the newer
     * one must still come first after every rehash. */
    older = registered(live, "items/j/completed", 60);
    newer = registered(live, "items/j/completed", 60);
    for (int i = 0; i < MANY; i++) {
        snprintf(key, sizeof(key), "items/j%d/failed", i);
        all[i] = registered(live, key, 60);
    }
    assert_ptr_equal(found(live, "items/j/completed"), newer);
    for (int i = 0; i < MANY; i++) {
        snprintf(key, sizeof(key), "items/j%d/failed", i);
        assert_ptr_equal(found(live, key), all[i]);
    }
    assert_null(found(live, "items/j/pending"));
    assert_int_equal(live_reused(live), MANY + 1);

    /* Released by its last holder: gone, the older one shows again. */
    listing_release(newer);
    assert_ptr_equal(found(live, "items/j/completed"), older);
    listing_release(older);
    assert_null(found(live, "items/j/completed"));
    /* The older of two released first: the newer stays filed. */
    older = registered(live, "items/j/completed", 60);
    newer = registered(live, "items/j/completed", 60);
    listing_release(older);
    assert_ptr_equal(found(live, "items/j/completed"), newer);
    listing_release(newer);
    assert_null(found(live, "items/j/completed"));
    for (int i = 0; i < MANY; i += 2)
        listing_release(all[i]);
    for (int i = 0; i < MANY; i++) {
        snprintf(key, sizeof(key), "items/j%d/failed", i);
        assert_ptr_equal(found(live, key), i % 2 ? all[i] : NULL);
    }
    /* Freed with listings still in it: they stay valid and are released
     * without it. */
    live_free(live);
    for (int i = 1; i < MANY; i += 2) {
        assert_null(listing_link(all[i])->home);
        listing_release(all[i]);
    }
}

static void test_stale_or_expired_not_found(void **state)
{
    struct live *live = live_new(NULL, NULL);
    struct listing *stale, *fresh;

    (void)state;
    assert_non_null(live);
    stale = registered(live, "jobs", 0); /* fresh for no time at all */
    assert_null(found(live, "jobs"));
    fresh = registered(live, "batches", 60);
    live_expire_all(live);
    assert_null(found(live, "batches"));
    /* Added after the expiry: found. */
    listing_release(fresh);
    fresh = registered(live, "batches", 60);
    assert_ptr_equal(found(live, "batches"), fresh);
    assert_int_equal(live_reused(live), 1);
    listing_release(stale);
    listing_release(fresh);
    live_free(live);
}

/* Freshness is read from the register's clock: a listing is found until
 * its time to live has passed on that clock. */
static void test_expires_by_its_clock(void **state)
{
    struct live *live = live_new(fake_clock_now, NULL);
    struct listing *l;

    (void)state;
    assert_non_null(live);
    fake_clock_reset();
    l = registered(live, "jobs", 10);
    fake_clock_advance(9.5);
    assert_ptr_equal(found(live, "jobs"), l);
    fake_clock_advance(1);
    assert_null(found(live, "jobs"));
    listing_release(l);
    live_free(live);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_found_by_key_through_growth),
        cmocka_unit_test(test_stale_or_expired_not_found),
        cmocka_unit_test(test_expires_by_its_clock),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
