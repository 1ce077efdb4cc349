/*
 * bigmem — folder-sized arrays mapped on their own (see
 * include/batchfs/bigmem.h).
 */
#include "batchfs/bigmem.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Before every block: how it was had, and how many bytes the caller asked
 * for. 16 bytes, so that the block keeps malloc's alignment. */
struct bigmem_head {
    size_t mapped; /* bytes mapped, head included; 0: malloc'd */
    size_t size;
};
_Static_assert(sizeof(struct bigmem_head) == 16, "blocks stay 16-byte aligned");

/* The blocks mapped now: the one count shared by every thread, changed
 * atomically (no lock), read as a limit (BIGMEM_MAX_MAPPED). */
static size_t bigmem_mapped_now;

size_t bigmem_mapped(void)
{
    return __atomic_load_n(&bigmem_mapped_now, __ATOMIC_RELAXED);
}

static struct bigmem_head *bigmem_head_of(void *block)
{
    return (struct bigmem_head *)block - 1;
}

/* The bytes to map for a block of `size`: whole pages. 0 on overflow. */
static size_t bigmem_map_len(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), need;

    if (size > SIZE_MAX - sizeof(struct bigmem_head) - page)
        return 0;
    need = size + sizeof(struct bigmem_head);
    return (need + page - 1) / page * page;
}

static void bigmem_release(struct bigmem_head *head)
{
    if (head->mapped) {
        munmap(head, head->mapped);
        __atomic_sub_fetch(&bigmem_mapped_now, 1, __ATOMIC_RELAXED);
    } else {
        free(head);
    }
}

/* A new mapping of len bytes, counted, its pages made now when `filled`;
 * NULL when there is none to be had or BIGMEM_MAX_MAPPED are mapped
 * already. */
static struct bigmem_head *bigmem_map(size_t len, bool filled)
{
    struct bigmem_head *head;

    if (__atomic_add_fetch(&bigmem_mapped_now, 1, __ATOMIC_RELAXED) > BIGMEM_MAX_MAPPED) {
        __atomic_sub_fetch(&bigmem_mapped_now, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    head = mmap(NULL, len, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | (filled ? MAP_POPULATE : 0), -1, 0);
    if (head != MAP_FAILED)
        return head;
    __atomic_sub_fetch(&bigmem_mapped_now, 1, __ATOMIC_RELAXED);
    return NULL;
}

/* A new block of `size` bytes (len > 0: mapped, len bytes in all), holding
 * the first bytes of `old`, which is then released. NULL on ENOMEM, `old`
 * left as it was. */
static struct bigmem_head *bigmem_move(struct bigmem_head *old, size_t size, size_t len,
                                       bool filled)
{
    struct bigmem_head *head = NULL;

    if (len)
        head = bigmem_map(len, filled);
    if (!head) {
        /* Not mapped (small, or no mapping to be had, as can happen to
         * malloc too: it then falls back to its heaps). */
        len = 0;
        head = malloc(sizeof(*head) + size);
        if (!head)
            return NULL;
    }
    if (old) {
        memcpy(head + 1, old + 1, old->size < size ? old->size : size);
        bigmem_release(old);
    }
    head->mapped = len;
    head->size = size;
    return head;
}

/* bigmem_resize, and when `filled`, bigmem_resize_filled. */
static void *bigmem_resize_as(void *block, size_t size, bool filled)
{
    struct bigmem_head *old = block ? bigmem_head_of(block) : NULL, *head = NULL;
    size_t len = size >= BIGMEM_MAP_MIN ? bigmem_map_len(size) : 0;

    if (size > SIZE_MAX - sizeof(*head) || (size >= BIGMEM_MAP_MIN && !len))
        return NULL;
    if (old && old->mapped && len) {
        /* Mapped both ways: the kernel moves the pages, no copy. */
        head = old->mapped == len ? old : mremap(old, old->mapped, len, MREMAP_MAYMOVE);
        if (head == MAP_FAILED)
            head = NULL;
        else
            head->mapped = len;
    } else if (old && !old->mapped && !len) {
        head = realloc(old, sizeof(*head) + size);
        if (!head)
            return NULL;
    }
    if (!head)
        head = bigmem_move(old, size, len, filled);
    if (!head)
        return NULL;
    head->size = size;
    return head + 1;
}

void *bigmem_resize(void *block, size_t size)
{
    return bigmem_resize_as(block, size, false);
}

void *bigmem_resize_filled(void *block, size_t size)
{
    return bigmem_resize_as(block, size, true);
}

void *bigmem_calloc(size_t count, size_t size)
{
    void *block;

    if (size && count > SIZE_MAX / size)
        return NULL;
    block = bigmem_resize(NULL, count * size);
    /* Fresh mappings are zero already. */
    if (block && !bigmem_head_of(block)->mapped)
        memset(block, 0, count * size);
    return block;
}

void bigmem_free(void *block)
{
    if (block)
        bigmem_release(bigmem_head_of(block));
}
