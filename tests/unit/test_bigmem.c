/*
 * Unit tests of folder-sized arrays (fs/bigmem.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/mman.h>

#include <cmocka.h>

#include "batchfs/bigmem.h"
#include "batchfs/buf.h"

/* mmap (mmap64 with 64-bit file offsets, as the build has) and mremap
 * through linker wrappers: with `no_mappings` set they fail as they do for
 * a process at vm.max_map_count. */
static int no_mappings, mappings_refused;
void *__real_mmap64(void *addr, size_t len, int prot, int flags, int fd, int64_t off);
void *__real_mremap(void *old, size_t old_len, size_t len, int flags, ...);
void *__wrap_mmap64(void *addr, size_t len, int prot, int flags, int fd, int64_t off);
void *__wrap_mremap(void *old, size_t old_len, size_t len, int flags, ...);

void *__wrap_mmap64(void *addr, size_t len, int prot, int flags, int fd, int64_t off)
{
    if (no_mappings) {
        mappings_refused++;
        return MAP_FAILED;
    }
    return __real_mmap64(addr, len, prot, flags, fd, off);
}

void *__wrap_mremap(void *old, size_t old_len, size_t len, int flags, ...)
{
    if (no_mappings) {
        mappings_refused++;
        return MAP_FAILED;
    }
    return __real_mremap(old, old_len, len, flags);
}

/* Fills n bytes with a pattern that depends on the offset. */
static void fill(unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 7 + (i >> 12));
}

static void assert_filled(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(i * 7 + (i >> 12)))
            fail_msg("byte %zu changed", i);
}

/* A block keeps its bytes through every way of growing and shrinking:
 * within malloc, from malloc to a mapping, between mappings (remapped),
 * and back to malloc. */
static void test_resize_keeps_bytes(void **state)
{
    const size_t sizes[] = {0, 100, 4000, BIGMEM_MAP_MIN - 1, BIGMEM_MAP_MIN,
                            3 * BIGMEM_MAP_MIN + 5, 40 * BIGMEM_MAP_MIN, 2 * BIGMEM_MAP_MIN,
                            1000, 17};
    unsigned char *p = NULL;
    size_t kept = 0;

    (void)state;
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = sizes[k];

        p = bigmem_resize(p, n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        assert_filled(p, kept < n ? kept : n);
        fill(p, n);
        kept = n;
    }
    bigmem_free(p);
    bigmem_free(NULL);
}

static void test_calloc_zeroes(void **state)
{
    const size_t counts[] = {1, 1000, BIGMEM_MAP_MIN};
    unsigned char *p;

    (void)state;
    for (size_t k = 0; k < 3; k++) {
        p = bigmem_calloc(counts[k], 4);
        assert_non_null(p);
        for (size_t i = 0; i < counts[k] * 4; i++)
            assert_int_equal(p[i], 0);
        bigmem_free(p);
    }
    assert_null(bigmem_calloc(SIZE_MAX / 2, 4));
    assert_null(bigmem_resize(NULL, SIZE_MAX - 8));
}

/* Without mappings left, big blocks come from malloc, and keep their bytes
 * through growth, whether they were mapped before or not. */
static void test_no_mappings_left(void **state)
{
    unsigned char *mapped, *p;

    (void)state;
    mapped = bigmem_resize(NULL, 2 * BIGMEM_MAP_MIN);
    assert_non_null(mapped);
    fill(mapped, 2 * BIGMEM_MAP_MIN);
    no_mappings = 1;
    p = bigmem_resize(NULL, 3 * BIGMEM_MAP_MIN);
    assert_non_null(p);
    fill(p, 3 * BIGMEM_MAP_MIN);
    p = bigmem_resize(p, 5 * BIGMEM_MAP_MIN);
    assert_non_null(p);
    assert_filled(p, 3 * BIGMEM_MAP_MIN);
    mapped = bigmem_resize(mapped, 4 * BIGMEM_MAP_MIN);
    assert_non_null(mapped);
    assert_filled(mapped, 2 * BIGMEM_MAP_MIN);
    /* Asked, refused, and served all the same. */
    assert_true(mappings_refused >= 4);
    no_mappings = 0;
    /* And mapped again once mappings are there. */
    p = bigmem_resize(p, 6 * BIGMEM_MAP_MIN);
    assert_non_null(p);
    assert_filled(p, 3 * BIGMEM_MAP_MIN);
    bigmem_free(p);
    bigmem_free(mapped);
}

/* No more than BIGMEM_MAX_MAPPED blocks are mapped at once: the next big
 * one comes from malloc, whole; the count goes back down as they go. */
static void test_mappings_capped(void **state)
{
    size_t before = bigmem_mapped(), n = BIGMEM_MAX_MAPPED - before + 1;
    unsigned char **blocks = calloc(n, sizeof(*blocks));

    (void)state;
    assert_non_null(blocks);
    for (size_t i = 0; i < n; i++) {
        blocks[i] = bigmem_resize(NULL, BIGMEM_MAP_MIN);
        assert_non_null(blocks[i]);
        blocks[i][0] = (unsigned char)i;
    }
    assert_int_equal(bigmem_mapped(), BIGMEM_MAX_MAPPED);
    /* The one past the limit is whole and usable. */
    fill(blocks[n - 1], BIGMEM_MAP_MIN);
    assert_filled(blocks[n - 1], BIGMEM_MAP_MIN);
    /* Growing a mapped one keeps it one mapping. */
    blocks[0] = bigmem_resize(blocks[0], 2 * BIGMEM_MAP_MIN);
    assert_non_null(blocks[0]);
    assert_int_equal(bigmem_mapped(), BIGMEM_MAX_MAPPED);
    bigmem_free(blocks[1]);
    assert_int_equal(bigmem_mapped(), BIGMEM_MAX_MAPPED - 1);
    blocks[1] = NULL;
    for (size_t i = 0; i < n; i++)
        bigmem_free(blocks[i]);
    assert_int_equal(bigmem_mapped(), before);
    free(blocks);
}

/* Pages resident in this process, from /proc/self/statm. */
static long resident_pages(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;

    assert_non_null(f);
    assert_int_equal(fscanf(f, "%ld %ld", &size, &resident), 2);
    fclose(f);
    return resident;
}

/* What a big block held goes back to the kernel when it is freed, at
 * once; malloc may keep a freed block of this size in its heaps. */
static void test_free_gives_back(void **state)
{
    size_t n = 64u << 20;
    long page = sysconf(_SC_PAGESIZE), before, held, after;
    unsigned char *p;

    (void)state;
    before = resident_pages();
    p = bigmem_resize(NULL, n);
    assert_non_null(p);
    memset(p, 1, n);
    held = resident_pages();
    assert_true(held - before >= (long)(n / (size_t)page) * 9 / 10);
    bigmem_free(p);
    after = resident_pages();
    assert_true(held - after >= (long)(n / (size_t)page) * 9 / 10);
}

/* A block to be filled whole has its pages made when it is mapped, before
 * a byte is written; one made by bigmem_resize gets them as it is
 * written. A buffer's room made for a body of known length is such a
 * block, exactly that long. */
static void test_filled_made_at_once(void **state)
{
    size_t n = 16u << 20;
    long page = sysconf(_SC_PAGESIZE), before, after;
    struct buf b = BUF_INIT_BIG;
    char *p;

    (void)state;
    before = resident_pages();
    p = bigmem_resize(NULL, n);
    assert_non_null(p);
    after = resident_pages();
    assert_true(after - before < (long)(n / (size_t)page) / 10);
    bigmem_free(p);
    before = resident_pages();
    p = bigmem_resize_filled(NULL, n);
    assert_non_null(p);
    after = resident_pages();
    assert_true(after - before >= (long)(n / (size_t)page) * 9 / 10);
    memset(p, 7, n);
    assert_int_equal(p[n - 1], 7);
    bigmem_free(p);
    assert_int_equal(buf_append(&b, "{", 1), 0);
    before = resident_pages();
    assert_int_equal(buf_reserve_filled(&b, n), 0);
    after = resident_pages();
    assert_int_equal(b.cap, 1 + n + 1);
    assert_string_equal(b.data, "{");
    assert_true(after - before >= (long)(n / (size_t)page) * 9 / 10);
    buf_free(&b);
}

/* A buffer of bigmem bytes grows, trims and is stolen as a malloc'd
 * string, which free() takes. */
static void test_big_buf(void **state)
{
    struct buf b = BUF_INIT_BIG;
    char *stolen;

    (void)state;
    for (size_t i = 0; i < 100000; i++)
        assert_int_equal(buf_append(&b, "0123456789", 10), 0);
    assert_true(b.cap >= BIGMEM_MAP_MIN);
    buf_trim(&b);
    assert_int_equal(b.cap, b.len + 1);
    assert_memory_equal(b.data + 999990, "0123456789", 10);
    stolen = buf_steal(&b);
    assert_non_null(stolen);
    assert_int_equal(strlen(stolen), 1000000);
    free(stolen);
    assert_null(b.data);
    assert_true(b.big);
    assert_int_equal(buf_append(&b, "x", 1), 0);
    buf_free(&b);
    assert_true(b.big);
}

/* buf_steal_big hands out a bigmem block from any buffer: a big one's
 * bytes where they are, a malloc'd one's copied, an empty one's "". */
static void test_steal_big(void **state)
{
    struct buf big = BUF_INIT_BIG, small = BUF_INIT, empty = BUF_INIT;
    char *at, *got;

    (void)state;
    assert_int_equal(buf_append(&big, "page", 4), 0);
    at = big.data;
    got = buf_steal_big(&big);
    assert_ptr_equal(got, at);
    assert_null(big.data);
    bigmem_free(got);
    assert_int_equal(buf_append(&small, "arena", 5), 0);
    got = buf_steal_big(&small);
    assert_non_null(got);
    assert_string_equal(got, "arena");
    assert_null(small.data);
    bigmem_free(got);
    got = buf_steal_big(&empty);
    assert_non_null(got);
    assert_string_equal(got, "");
    bigmem_free(got);
    buf_free(&small);
    buf_free(&empty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resize_keeps_bytes),
        cmocka_unit_test(test_calloc_zeroes),
        cmocka_unit_test(test_no_mappings_left),
        cmocka_unit_test(test_mappings_capped),
        cmocka_unit_test(test_free_gives_back),
        cmocka_unit_test(test_filled_made_at_once),
        cmocka_unit_test(test_big_buf),
        cmocka_unit_test(test_steal_big),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
