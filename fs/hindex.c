/*
 * hindex — the one hash table (see include/batchfs/hindex.h): growth and
 * freeing; probing is inline in the header.
 */
#include "batchfs/hindex.h"

#include <errno.h>
#include <stdlib.h>

#include "batchfs/bigmem.h"

/* Rehashes into `cap` cells (a power of two, with room for the keys at
 * most three quarters full), leaving the tombstones behind. */
static int hindex_rehash(struct hindex *h, size_t cap)
{
    struct hindex_cell *cells;

    if (cap > SIZE_MAX / sizeof(*cells))
        return -ENOMEM;
    cells = bigmem_resize(NULL, cap * sizeof(*cells));
    if (!cells)
        return -ENOMEM;
    for (size_t i = 0; i < cap; i++)
        cells[i].ref = HINDEX_FREE;
    for (size_t j = 0; j < h->cap; j++) {
        size_t i;

        if (h->cells[j].ref == HINDEX_FREE || h->cells[j].ref == HINDEX_GONE)
            continue;
        for (i = (size_t)h->cells[j].hash & (cap - 1); cells[i].ref != HINDEX_FREE;
             i = (i + 1) & (cap - 1))
            ;
        cells[i] = h->cells[j];
    }
    bigmem_free(h->cells);
    h->cells = cells;
    h->cap = cap;
    h->used = h->count;
    return 0;
}

/* Whether `cap` cells hold `count` keys (tombstones included) at most
 * three quarters full. */
static bool hindex_fits(size_t cap, size_t count)
{
    return count <= cap / 4 * 3;
}

/* Cells for `count` keys at most three quarters full. */
static size_t hindex_cap_for(size_t count)
{
    size_t cap = 64;

    while (!hindex_fits(cap, count + 1) && cap <= SIZE_MAX / 4)
        cap *= 2;
    return cap;
}

int hindex_make_room(struct hindex *h)
{
    if (hindex_fits(h->cap, h->used + 1))
        return 0;
    /* At most three eighths full afterwards, so that growth costs O(1) a
     * key. */
    return hindex_rehash(h, hindex_cap_for(2 * h->count + 2));
}

int hindex_reserve(struct hindex *h, size_t count)
{
    size_t cap = hindex_cap_for(count);

    return cap > h->cap ? hindex_rehash(h, cap) : 0;
}

void hindex_free(struct hindex *h)
{
    bigmem_free(h->cells);
    h->cells = NULL;
    h->cap = h->used = h->count = 0;
}
