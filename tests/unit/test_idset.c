/*
 * Unit tests for fs/idset.c: membership through growth, removal and
 * re-adding, keys with NULs and the empty key, room made ahead, churn that
 * must not grow the table, allocation failure leaving the set as it was.
 *
 * Build with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc.
 */
#include "batchfs/idset.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "failing_alloc.h"

static int key_of(size_t i, char *out, size_t cap)
{
    return snprintf(out, cap, "bji-%08zx-%zu", i * 2654435761u, i);
}

/* 1 when `key` is in the set: adding it again says so, and changes nothing. */
static int contains(struct idset *set, const char *key, size_t len)
{
    size_t count = set->count;
    int rc = idset_add(set, key, len);

    assert_true(rc >= 0);
    if (rc == 1) {
        idset_remove(set, key, len);
        assert_int_equal(set->count, count);
        return 0;
    }
    return 1;
}

static void test_add_remove(void **state)
{
    struct idset set = IDSET_INIT;
    static const char nul_a[] = {'a', '\0', 'b'}, nul_b[] = {'a', '\0', 'c'};

    (void)state;
    assert_int_equal(idset_add(&set, "x", 1), 1);
    assert_int_equal(idset_add(&set, "x", 1), 0);
    assert_int_equal(idset_add(&set, "xx", 2), 1);
    assert_int_equal(idset_add(&set, "", 0), 1);
    assert_int_equal(idset_add(&set, NULL, 0), 0); /* the empty key again */
    assert_int_equal(idset_add(&set, nul_a, 3), 1);
    assert_int_equal(idset_add(&set, nul_b, 3), 1);
    assert_int_equal(idset_add(&set, nul_a, 3), 0);
    assert_int_equal(set.count, 5);
    idset_remove(&set, "x", 1);
    idset_remove(&set, "missing", 7);
    assert_int_equal(set.count, 4);
    assert_int_equal(contains(&set, "x", 1), 0);
    assert_int_equal(contains(&set, "xx", 2), 1);
    assert_int_equal(idset_add(&set, "x", 1), 1);
    assert_int_equal(set.count, 5);
    idset_free(&set);
    assert_null(set.index.cells);
    idset_remove(&set, "x", 1); /* on an empty set */
}

/* 100,000 keys through many rehashes; every other one taken out again. */
static void test_many(void **state)
{
    enum { N = 100000 };
    struct idset set = IDSET_INIT;
    char key[64];

    (void)state;
    for (size_t i = 0; i < N; i++) {
        int len = key_of(i, key, sizeof(key));

        assert_int_equal(idset_add(&set, key, (size_t)len), 1);
    }
    assert_int_equal(set.count, N);
    assert_true(set.index.used * 2 <= set.index.cap);
    for (size_t i = 0; i < N; i += 2) {
        int len = key_of(i, key, sizeof(key));

        idset_remove(&set, key, (size_t)len);
    }
    assert_int_equal(set.count, N / 2);
    for (size_t i = 0; i < N; i++) {
        int len = key_of(i, key, sizeof(key));

        assert_int_equal(contains(&set, key, (size_t)len), i % 2);
    }
    idset_free(&set);
}

/* Room made ahead: no rehash while the announced keys come in. */
static void test_expect(void **state)
{
    enum { N = 5000 };
    struct idset set = IDSET_INIT;
    char key[64];
    size_t cap;
    const struct hindex_cell *cells;

    (void)state;
    assert_int_equal(idset_add(&set, "first", 5), 1);
    assert_int_equal(idset_expect(&set, N), 0);
    cap = set.index.cap;
    cells = set.index.cells;
    assert_true(cap / 4 * 3 >= N);
    /* The table alone: no copy of the keys. */
    assert_int_equal(idset_footprint(&set), cap * sizeof(struct hindex_cell));
    for (size_t i = 1; i < N; i++) {
        int len = key_of(i, key, sizeof(key));

        assert_int_equal(idset_add(&set, key, (size_t)len), 1);
    }
    assert_int_equal(set.index.cap, cap);
    assert_ptr_equal(set.index.cells, cells);
    assert_int_equal(contains(&set, "first", 5), 1);
    /* A smaller count than present asks for nothing. */
    assert_int_equal(idset_expect(&set, 10), 0);
    assert_int_equal(set.index.cap, cap);
    idset_free(&set);
}

/* Adding and removing over and over leaves tombstones, not a growing table. */
static void test_churn(void **state)
{
    struct idset set = IDSET_INIT;
    char key[64];

    (void)state;
    for (size_t i = 0; i < 100000; i++) {
        int len = key_of(i, key, sizeof(key));

        assert_int_equal(idset_add(&set, key, (size_t)len), 1);
        idset_remove(&set, key, (size_t)len);
    }
    assert_int_equal(set.count, 0);
    assert_true(set.index.cap <= 64);
    idset_free(&set);
}

/* Each allocation failing in turn: -ENOMEM, and the set as it was. */
static void test_allocation_failure(void **state)
{
    enum { N = 300 };
    char key[64];

    (void)state;
    for (long k = 0;; k++) {
        struct idset set = IDSET_INIT;
        int rc = 0;
        size_t i;

        alloc_countdown = k;
        for (i = 0; i < N && rc >= 0; i++) {
            int len = key_of(i, key, sizeof(key));

            rc = idset_add(&set, key, (size_t)len);
        }
        alloc_countdown = -1;
        if (rc >= 0) {
            assert_int_equal(set.count, N);
            idset_free(&set);
            assert_true(k > 2);
            break;
        }
        assert_int_equal(rc, -ENOMEM);
        /* The failed key is absent, the ones before it present. */
        assert_int_equal(set.count, i - 1);
        for (size_t j = 0; j < i; j++) {
            int len = key_of(j, key, sizeof(key));

            assert_int_equal(contains(&set, key, (size_t)len), j + 1 < i);
        }
        idset_free(&set);
    }
}

/* Keys whose lengths take one, two and three bytes to write, the empty
 * one among them: each found again, none taken for another that shares
 * its first bytes. */
static void test_key_lengths(void **state)
{
    static const size_t lens[] = {0, 1, 127, 128, 129, 300, 16383, 16384, 20000};
    enum { N = sizeof(lens) / sizeof(lens[0]) };
    static char key[20000];
    struct idset set = IDSET_INIT;

    (void)state;
    memset(key, 'k', sizeof(key));
    for (size_t i = 0; i < N; i++)
        assert_int_equal(idset_add(&set, key, lens[i]), 1);
    assert_int_equal(set.count, N);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(idset_add(&set, key, lens[i]), 0);
        if (lens[i] > 1) {
            size_t shorter = lens[i] - 1;
            bool added = shorter == 127 || shorter == 128 || shorter == 16383;

            assert_int_equal(contains(&set, key, shorter), added);
        }
    }
    idset_free(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_remove),  cmocka_unit_test(test_many),
        cmocka_unit_test(test_expect),      cmocka_unit_test(test_churn),
        cmocka_unit_test(test_key_lengths), cmocka_unit_test(test_allocation_failure),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
