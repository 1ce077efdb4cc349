/*
 * slab — small objects packed in blocks of their own (see
 * include/batchfs/slab.h).
 *
 * A block is SLAB_BLOCK bytes mapped from the kernel at an address that is
 * a multiple of its size, so that the block of an object is its address
 * with the low bits cleared: an object needs no header. A block holds
 * objects of one size class (multiples of SLAB_GRAIN); its slots are taken
 * in order the first time and then from a list of those freed, linked
 * through their first bytes. Each class keeps the blocks that have a free
 * slot on a list; a block whose last object goes is unmapped, unless it is
 * the only one of its class with room (so that a node made and freed in
 * turn does not map and unmap a block each time).
 */
#include "batchfs/slab.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "batchfs/lru.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* Free slots are poisoned, so that AddressSanitizer still sees a node
 * used after it was freed, as it would with malloc. */
#define SLAB_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define SLAB_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define SLAB_POISON(p, n) ((void)(p), (void)(n))
#define SLAB_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* 256 KiB: a million nodes take about 300 blocks, each a mapping of its
 * own (vm.max_map_count allows 65,530 by default), and a block of mostly
 * freed nodes keeps at most this much. */
#define SLAB_BLOCK ((size_t)256 * 1024)
#define SLAB_GRAIN ((size_t)8)
#define SLAB_CLASSES (SLAB_MAX_SIZE / SLAB_GRAIN)

/* Lists of blocks are lru.h's, for their links alone: the order is not
 * used. */
struct slab_block {
    struct lru_link room; /* in its class's list of blocks with room */
    struct lru_link all;  /* in the list of every block */
    void *freed;          /* slots freed, linked through their first bytes */
    uint32_t used;        /* objects alive */
    uint32_t fresh;       /* slots [fresh, capacity) never taken yet */
    uint32_t capacity;    /* slots in all */
    uint16_t size;        /* of a slot */
    bool listed;          /* on its class's list with room */
    _Alignas(SLAB_GRAIN) unsigned char slots[];
};

struct slab {
    struct lru_list room[SLAB_CLASSES]; /* blocks with a free slot, by class */
    struct lru_list all;
    size_t mapped; /* bytes of the blocks */
};

size_t slab_object_bytes(size_t size)
{
    return size > SLAB_MAX_SIZE ? size
                                : (size + SLAB_GRAIN - 1) / SLAB_GRAIN * SLAB_GRAIN;
}

/* The class of an object of `size` (1 to SLAB_MAX_SIZE). */
static size_t slab_class(size_t size)
{
    return (size + SLAB_GRAIN - 1) / SLAB_GRAIN - 1;
}

static struct slab_block *slab_block_of(const void *object)
{
    return (struct slab_block *)((uintptr_t)object & ~(uintptr_t)(SLAB_BLOCK - 1));
}

struct slab *slab_new(void)
{
    return calloc(1, sizeof(struct slab));
}

/* A block aligned to its size: twice as much mapped, the rest unmapped. */
static struct slab_block *slab_map_block(void)
{
    size_t len = 2 * SLAB_BLOCK;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *aligned;

    if (p == MAP_FAILED)
        return NULL;
    aligned = (char *)(((uintptr_t)p + SLAB_BLOCK - 1) & ~(uintptr_t)(SLAB_BLOCK - 1));
    if (aligned > p)
        munmap(p, (size_t)(aligned - p));
    if (aligned + SLAB_BLOCK < p + len)
        munmap(aligned + SLAB_BLOCK, (size_t)(p + len - aligned - SLAB_BLOCK));
    return (struct slab_block *)(void *)aligned;
}

static void slab_list_room(struct slab *slab, struct slab_block *b, size_t cls)
{
    lru_push_newest(&slab->room[cls], &b->room);
    b->listed = true;
}

static void slab_unlist_room(struct slab *slab, struct slab_block *b, size_t cls)
{
    lru_unlink(&slab->room[cls], &b->room);
    b->listed = false;
}

/* A block of class `cls` with a free slot, or NULL. */
static struct slab_block *slab_room(const struct slab *slab, size_t cls)
{
    struct lru_link *link = slab->room[cls].newest;

    return link ? lru_entry(link, struct slab_block, room) : NULL;
}

/* A new block for class `cls`, on its list with room. */
static struct slab_block *slab_add_block(struct slab *slab, size_t cls)
{
    struct slab_block *b = slab_map_block();
    size_t size = (cls + 1) * SLAB_GRAIN;

    if (!b)
        return NULL;
    b->freed = NULL;
    b->used = b->fresh = 0;
    b->size = (uint16_t)size;
    b->capacity = (uint32_t)((SLAB_BLOCK - offsetof(struct slab_block, slots)) / size);
    SLAB_POISON(b->slots, (size_t)b->capacity * size);
    lru_push_newest(&slab->all, &b->all);
    slab->mapped += SLAB_BLOCK;
    slab_list_room(slab, b, cls);
    return b;
}

static void slab_unmap_block(struct slab *slab, struct slab_block *b)
{
    lru_unlink(&slab->all, &b->all);
    slab->mapped -= SLAB_BLOCK;
    SLAB_UNPOISON(b->slots, (size_t)b->capacity * b->size);
    munmap(b, SLAB_BLOCK);
}

void *slab_alloc(struct slab *slab, size_t size)
{
    struct slab_block *b;
    size_t cls;
    void *object;

    if (size > SLAB_MAX_SIZE)
        return calloc(1, size);
    if (size == 0)
        return NULL;
    cls = slab_class(size);
    b = slab_room(slab, cls);
    if (!b)
        b = slab_add_block(slab, cls);
    if (!b)
        return NULL;
    if (b->freed) {
        object = b->freed;
        SLAB_UNPOISON(object, b->size);
        memcpy(&b->freed, object, sizeof(b->freed));
    } else {
        object = b->slots + (size_t)b->fresh++ * b->size;
        SLAB_UNPOISON(object, b->size);
    }
    b->used++;
    if (!b->freed && b->fresh == b->capacity)
        slab_unlist_room(slab, b, cls);
    memset(object, 0, b->size);
    return object;
}

void slab_release(struct slab *slab, void *object, size_t size)
{
    struct slab_block *b;
    size_t cls;

    if (!object)
        return;
    if (size > SLAB_MAX_SIZE) {
        free(object);
        return;
    }
    cls = slab_class(size);
    b = slab_block_of(object);
    memcpy(object, &b->freed, sizeof(b->freed));
    SLAB_POISON(object, b->size);
    b->freed = object;
    b->used--;
    if (!b->listed)
        slab_list_room(slab, b, cls);
    /* Empty: back to the kernel, unless it is its class's last room. */
    if (!b->used && (b->room.newer || b->room.older)) {
        slab_unlist_room(slab, b, cls);
        slab_unmap_block(slab, b);
    }
}

size_t slab_mapped_bytes(const struct slab *slab)
{
    return slab->mapped;
}

void slab_free(struct slab *slab)
{
    if (!slab)
        return;
    while (slab->all.newest)
        slab_unmap_block(slab, lru_entry(slab->all.newest, struct slab_block, all));
    free(slab);
}
