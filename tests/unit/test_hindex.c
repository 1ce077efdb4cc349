/*
 * Unit tests for fs/hindex.c: keys found through growth, keys of one hash
 * told apart by the caller's equality, removal leaving the keys after it
 * in reach, a tombstone's cell used again, and room made ahead; and the
 * hash the tables file their keys under (hash.h's hash_key).
 */
#include "batchfs/hindex.h"

#include "batchfs/hash.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

/* The caller's keys: numbers, key i at keys[i]. */
static bool eq_number(const void *ctx, size_t ref, const void *key)
{
    const uint64_t *keys = ctx;

    return keys[ref] == *(const uint64_t *)key;
}

/* Adds keys[ref] under `hash`; 1 when added, 0 when there already. */
static int add(struct hindex *h, const uint64_t *keys, size_t ref, uint64_t hash)
{
    struct hindex_cell *c;
    bool found;

    assert_int_equal(hindex_make_room(h), 0);
    c = hindex_probe(h, hash, eq_number, keys, &keys[ref], &found);
    if (found)
        return 0;
    hindex_put(h, c, hash, ref);
    return 1;
}

/* Every byte of a key counts, in its whole words and in its tail; the
 * string form agrees with the bytes form. */
static void test_key_hash_reads_every_byte(void **state)
{
    char key[24];

    (void)state;
    for (size_t len = 1; len <= sizeof(key); len++) {
        uint64_t h;

        memset(key, 'a', sizeof(key));
        h = hash_key(key, len);
        assert_true(h != hash_key(key, len - 1)); /* the length counts */
        for (size_t i = 0; i < len; i++) {
            key[i] = 'b';
            if (hash_key(key, len) == h)
                fail_msg("byte %zu of %zu left the hash as it was", i, len);
            key[i] = 'a';
        }
    }
    assert_true(hash_key_str("bjb-12345") == hash_key("bjb-12345", 9));
}

/* Ids that differ in a few digits spread over a table's buckets: 100,000
 * of them in 65,536 buckets leave none with more than a handful. */
static void test_key_hash_spreads_ids(void **state)
{
    enum { IDS = 100000, BUCKETS = 1 << 16 };
    static unsigned char load[BUCKETS];
    unsigned most = 0;

    (void)state;
    memset(load, 0, sizeof(load));
    for (unsigned i = 0; i < IDS; i++) {
        char id[64];
        int len = snprintf(id, sizeof(id), "bjb-00000000-0000-0000-0000-%012u", i);
        unsigned char *b = &load[hash_key(id, (size_t)len) & (BUCKETS - 1)];

        if (++*b > most)
            most = *b;
    }
    /* A uniform hash gives at most 8 or 9 here; a hash that ignored the
     * tail, or mixed it poorly, piles thousands into a few buckets. */
    assert_true(most <= 12);
}

static void test_growth(void **state)
{
    enum { N = 10000 };
    static uint64_t keys[N];
    struct hindex h = HINDEX_INIT;

    (void)state;
    assert_int_equal(hindex_find(&h, 1, eq_number, keys, &keys[0]), HINDEX_FREE);
    for (size_t i = 0; i < N; i++) {
        keys[i] = i * 7919;
        assert_int_equal(add(&h, keys, i, keys[i] * 0x9e3779b97f4a7c15ULL), 1);
    }
    assert_int_equal(h.count, N);
    assert_true(h.used * 4 <= h.cap * 3);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(add(&h, keys, i, keys[i] * 0x9e3779b97f4a7c15ULL), 0);
        assert_int_equal(
            hindex_find(&h, keys[i] * 0x9e3779b97f4a7c15ULL, eq_number, keys, &keys[i]),
            i);
    }
    hindex_free(&h);
    assert_null(h.cells);
}

/* Every key under one hash: the equality alone tells them apart, and
 * taking one out leaves those probed past it in reach. */
static void test_one_hash(void **state)
{
    uint64_t keys[] = {10, 20, 30, 40};
    uint64_t absent = 50;
    struct hindex h = HINDEX_INIT;
    struct hindex_cell *c;
    bool found;

    (void)state;
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(add(&h, keys, i, 42), 1);
    assert_int_equal(hindex_find(&h, 42, eq_number, keys, &absent), HINDEX_FREE);
    c = hindex_probe(&h, 42, eq_number, keys, &keys[1], &found);
    assert_true(found);
    hindex_take(&h, c);
    assert_int_equal(h.count, 3);
    assert_int_equal(hindex_find(&h, 42, eq_number, keys, &keys[1]), HINDEX_FREE);
    assert_int_equal(hindex_find(&h, 42, eq_number, keys, &keys[3]), 3);
    /* The tombstone's cell takes the next key of that chain. */
    c = hindex_probe(&h, 42, eq_number, keys, &keys[1], &found);
    assert_false(found);
    assert_int_equal(c->ref, HINDEX_GONE);
    hindex_put(&h, c, 42, 1);
    assert_int_equal(hindex_find(&h, 42, eq_number, keys, &keys[1]), 1);
    assert_int_equal(h.used, 4);
    hindex_free(&h);
}

/* Room made ahead: no rehash while the announced keys come in. */
static void test_reserve(void **state)
{
    enum { N = 3000 };
    static uint64_t keys[N];
    struct hindex h = HINDEX_INIT;
    const struct hindex_cell *cells;
    size_t cap;

    (void)state;
    assert_int_equal(hindex_reserve(&h, N), 0);
    cells = h.cells;
    cap = h.cap;
    /* Room for N at most three quarters full, and no more than twice
     * that: a presized listing pays 16 bytes a cell. */
    assert_true(cap / 4 * 3 >= N && cap / 4 * 3 < 2 * N);
    for (size_t i = 0; i < N; i++) {
        keys[i] = i;
        assert_int_equal(add(&h, keys, i, i * 0xff51afd7ed558ccdULL), 1);
    }
    assert_ptr_equal(h.cells, cells);
    assert_int_equal(h.cap, cap);
    /* Fewer than present asks for nothing. */
    assert_int_equal(hindex_reserve(&h, 10), 0);
    assert_int_equal(h.cap, cap);
    hindex_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_hash_reads_every_byte),
        cmocka_unit_test(test_key_hash_spreads_ids),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_one_hash),
        cmocka_unit_test(test_reserve),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
