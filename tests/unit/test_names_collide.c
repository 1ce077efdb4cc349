/*
 * Unit tests for fs/names.c when the ids of a folder all share one hash.
 *
 * FNV-1a collisions are cheap to make, so a server could send a folder whose
 * ids all hash alike; a search for tens of thousands of them is not cheap,
 * so this test builds names.c with its hash of ids replaced by one that
 * gives every id the same value (the hash of the names themselves stays
 * FNV-1a). Settling must stay a few steps an entry: names_steps says how
 * many it took, so the test fails on work quadratic in the entries without
 * timing anything.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "batchfs/hash.h"

/* The one value every id hashes to; only names.c's calls are renamed. */
static uint64_t same_hash(const void *data, size_t len)
{
    (void)data;
    (void)len;
    return 0x00c0ffee00c0ffeeULL;
}

#define hash_bytes same_hash
#include "../../fs/names.c"
#undef hash_bytes

enum { COLLIDING = 20000 };

/* Ids too long to show in a name (so that the hash must tell them apart),
 * distinct, and added in an order that is not theirs. */
static void long_id(size_t i, char *out, size_t *len)
{
    size_t k = (i * 7919) % COLLIDING; /* 7919 is prime to COLLIDING */

    memset(out, 'x', NAMES_MAX_ID_LEN + 8);
    *len = NAMES_MAX_ID_LEN + 8;
    snprintf(out, 16, "%08zu", k);
    out[8] = 'x';
}

/* names_id_fn: entry i's id is long_id(i); counts the loads in *arg. */
static int load_long_id(void *arg, size_t index, struct buf *out)
{
    char id[NAMES_MAX_ID_LEN + 16];
    size_t len;

    long_id(index, id, &len);
    (*(size_t *)arg)++;
    return buf_append(out, id, len);
}

/* Numbered in the byte order of their ids, whether the ids are kept or
 * loaded on demand (then once each: every entry collides). */
static void test_colliding_ids_numbered_in_id_order(void **state)
{
    (void)state;
    for (int on_demand = 0; on_demand < 2; on_demand++) {
        char id[NAMES_MAX_ID_LEN + 16];
        int err = 0;
        struct names *n = names_new(".json", &err);
        char hash[NAMES_HASH_DIGITS + 1];
        size_t loads = 0;

        assert_non_null(n);
        if (on_demand)
            assert_int_equal(names_ids_on_demand(n, load_long_id, &loads), 0);
        for (size_t i = 0; i < COLLIDING; i++) {
            size_t len;

            long_id(i, id, &len);
            assert_int_equal(names_add(n, id, len, "report.pdf", 10), 0);
        }
        assert_int_equal(names_finish(n), 0);
        names_hex(same_hash(NULL, 0), hash);
        for (size_t i = 0; i < COLLIDING; i++) {
            char want[64];
            size_t len;

            /* The ids' byte order is the order of their number k. */
            snprintf(want, sizeof(want), "report.pdf~%s-%zu.json", hash,
                     (i * 7919) % COLLIDING + 1);
            assert_string_equal(names_file_name(n, i, &len), want);
        }
        /* Up the ladder (stage 2) and one numbered name each, and the id check:
         * quadratic numbering or probing would take about 2 * 10^8 steps. */
        print_message("%d colliding ids: %zu steps\n", COLLIDING, names_steps(n));
        assert_true(names_steps(n) <= 6 * (size_t)COLLIDING);
        assert_int_equal(loads, on_demand ? COLLIDING : 0);
        names_free(n);
    }
}

static void test_colliding_ids_repeated_refused(void **state)
{
    char id[NAMES_MAX_ID_LEN + 16];
    int err = 0;
    struct names *n = names_new(".json", &err);
    size_t len;

    (void)state;
    assert_non_null(n);
    /* Distinct names, so that no entry needs the final stage: only the
     * check of the ids, all in one run of its table, sees the repeat. */
    for (size_t i = 0; i < COLLIDING; i++) {
        char name[32];

        long_id(i, id, &len);
        snprintf(name, sizeof(name), "file-%zu", i);
        assert_int_equal(names_add(n, id, len, name, strlen(name)), 0);
    }
    long_id(3, id, &len);
    assert_int_equal(names_add(n, id, len, "another", 7), 0);
    assert_int_equal(names_finish(n), -EINVAL);
    assert_true(names_steps(n) <= 6 * (size_t)COLLIDING);
    names_free(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_colliding_ids_numbered_in_id_order),
        cmocka_unit_test(test_colliding_ids_repeated_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
