/*
 * Unit tests of small objects in blocks of their own (fs/slab.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>

#include <cmocka.h>

#include "batchfs/slab.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

/* mmap through a linker wrapper: with `no_mappings` set it fails, as for
 * a process out of memory or at vm.max_map_count. */
static int no_mappings;
void *__real_mmap64(void *addr, size_t len, int prot, int flags, int fd, int64_t off);
void *__wrap_mmap64(void *addr, size_t len, int prot, int flags, int fd, int64_t off);

void *__wrap_mmap64(void *addr, size_t len, int prot, int flags, int fd, int64_t off)
{
    return no_mappings ? MAP_FAILED : __real_mmap64(addr, len, prot, flags, fd, off);
}

#define BLOCK ((size_t)256 * 1024)

/* An object's size rounded up to 8 bytes; bigger ones are malloc's. */
static void test_object_bytes(void **state)
{
    (void)state;
    assert_int_equal(slab_object_bytes(1), 8);
    assert_int_equal(slab_object_bytes(72), 72);
    assert_int_equal(slab_object_bytes(73), 80);
    assert_int_equal(slab_object_bytes(SLAB_MAX_SIZE), SLAB_MAX_SIZE);
    assert_int_equal(slab_object_bytes(SLAB_MAX_SIZE + 1), SLAB_MAX_SIZE + 1);
}

/* Objects of every size come zeroed, 8-aligned and apart: each filled
 * with its own byte keeps it. Those of one size share blocks, packed at
 * their rounded size; a block whose objects all went is unmapped but for
 * the last with room; objects freed are reused before a block is added. */
static void test_pack_and_reuse(void **state)
{
    enum { N = 20000 };
    struct slab *slab = slab_new();
    unsigned char **objects = calloc(N, sizeof(*objects));
    size_t sizes[N], mapped;

    (void)state;
    assert_non_null(slab);
    assert_non_null(objects);
    for (size_t i = 0; i < N; i++) {
        sizes[i] = i % 5 ? 72 : 1 + i % SLAB_MAX_SIZE;
        objects[i] = slab_alloc(slab, sizes[i]);
        assert_non_null(objects[i]);
        assert_int_equal((uintptr_t)objects[i] % 8, 0);
        for (size_t k = 0; k < sizes[i]; k++)
            assert_int_equal(objects[i][k], 0);
        memset(objects[i], (int)(i & 0xFF), sizes[i]);
    }
    for (size_t i = 0; i < N; i++)
        for (size_t k = 0; k < sizes[i]; k++)
            assert_int_equal(objects[i][k], i & 0xFF);
    /* 16,000 of 72 bytes take 5 blocks: no more than their bytes and a
     * block for each of the 40 classes of the others, half empty. */
    mapped = slab_mapped_bytes(slab);
    assert_true(mapped <= (N * 4 / 5) * 72 + BLOCK + 40 * BLOCK);
    /* Every other one freed, then as many made again: no new block. */
    for (size_t i = 0; i < N; i += 2)
        slab_release(slab, objects[i], sizes[i]);
    for (size_t i = 0; i < N; i += 2) {
        objects[i] = slab_alloc(slab, sizes[i]);
        assert_non_null(objects[i]);
        assert_int_equal(objects[i][0], 0);
        memset(objects[i], (int)(i & 0xFF), sizes[i]);
    }
    assert_int_equal(slab_mapped_bytes(slab), mapped);
    for (size_t i = 1; i < N; i += 2)
        assert_int_equal(objects[i][sizes[i] - 1], i & 0xFF);
    /* All freed: one block left of each class used. */
    for (size_t i = 0; i < N; i++)
        slab_release(slab, objects[i], sizes[i]);
    assert_true(slab_mapped_bytes(slab) <= 41 * BLOCK);
    assert_true(slab_mapped_bytes(slab) < mapped);
    slab_release(slab, NULL, 8);
    slab_free(slab);
    slab_free(NULL);
    free(objects);
}

/* A block whose last object goes is unmapped when its class has another
 * with room, kept when it is the only one. */
static void test_empty_blocks(void **state)
{
    struct slab *slab = slab_new();
    size_t per_block = 0;
    void *first, *last = NULL;

    (void)state;
    first = slab_alloc(slab, 64);
    assert_int_equal(slab_mapped_bytes(slab), BLOCK);
    slab_release(slab, first, 64);
    assert_int_equal(slab_mapped_bytes(slab), BLOCK); /* its class's only room */
    /* Fill the first block and one object more. */
    first = slab_alloc(slab, 64);
    while (slab_mapped_bytes(slab) == BLOCK) {
        last = slab_alloc(slab, 64);
        per_block++;
    }
    assert_true(per_block > 4000 && per_block < 4096);
    /* The new block has room; the first gets some back; freed, the new one
     * goes. */
    slab_release(slab, first, 64);
#if defined(__SANITIZE_ADDRESS__)
    /* A freed object is poisoned: a use after free is caught as with
     * malloc. */
    assert_true(__asan_address_is_poisoned(first));
#endif
    slab_release(slab, last, 64);
    assert_int_equal(slab_mapped_bytes(slab), BLOCK);
    slab_free(slab); /* with the objects still in the first block */
}

/* Big objects are malloc's; no block to be had is no object. */
static void test_big_and_failing(void **state)
{
    struct slab *slab = slab_new();
    unsigned char *big = slab_alloc(slab, 4096);

    (void)state;
    assert_non_null(big);
    for (size_t k = 0; k < 4096; k++)
        assert_int_equal(big[k], 0);
    assert_int_equal(slab_mapped_bytes(slab), 0);
    slab_release(slab, big, 4096);
    assert_null(slab_alloc(slab, 0));
    no_mappings = 1;
    assert_null(slab_alloc(slab, 16));
    no_mappings = 0;
    big = slab_alloc(slab, 16);
    assert_non_null(big);
    slab_release(slab, big, 16);
    slab_free(slab);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_object_bytes),
        cmocka_unit_test(test_pack_and_reuse),
        cmocka_unit_test(test_empty_blocks),
        cmocka_unit_test(test_big_and_failing),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
