/*
 * idset — a set of byte strings (see include/batchfs/idset.h).
 * Linear probing; the table is kept at most half full, tombstones included.
 */
#include "batchfs/idset.h"

#include "batchfs/hash.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Values of idset_cell.key that are not offsets. */
#define IDSET_FREE SIZE_MAX
#define IDSET_GONE (SIZE_MAX - 1)

struct idset_cell {
    uint64_t hash;
    size_t key; /* offset of the key in set->keys, or IDSET_FREE / IDSET_GONE */
    size_t len;
};

static bool idset_cell_live(const struct idset_cell *c)
{
    return c->key != IDSET_FREE && c->key != IDSET_GONE;
}

/* The cell holding the key, or, when it is absent, the cell to put it in
 * (the first tombstone on its way, else the free cell that ends it). */
static struct idset_cell *idset_probe(const struct idset *set, const char *key, size_t len,
                                      uint64_t hash, bool *found)
{
    size_t mask = set->cap - 1, i = (size_t)hash & mask;
    struct idset_cell *spare = NULL;

    for (;; i = (i + 1) & mask) {
        struct idset_cell *c = &set->cells[i];

        if (c->key == IDSET_FREE) {
            *found = false;
            return spare ? spare : c;
        }
        if (c->key == IDSET_GONE) {
            if (!spare)
                spare = c;
        } else if (c->hash == hash && c->len == len &&
                   (len == 0 || memcmp(set->keys.data + c->key, key, len) == 0)) {
            *found = true;
            return c;
        }
    }
}

/* Rehashes into `cap` cells (a power of two, more than twice the keys),
 * leaving the tombstones behind. */
static int idset_rehash(struct idset *set, size_t cap)
{
    struct idset_cell *cells;

    if (cap > SIZE_MAX / sizeof(*cells))
        return -ENOMEM;
    cells = malloc(cap * sizeof(*cells));
    if (!cells)
        return -ENOMEM;
    for (size_t i = 0; i < cap; i++)
        cells[i].key = IDSET_FREE;
    for (size_t j = 0; j < set->cap; j++) {
        size_t i;

        if (!idset_cell_live(&set->cells[j]))
            continue;
        for (i = (size_t)set->cells[j].hash & (cap - 1); cells[i].key != IDSET_FREE;
             i = (i + 1) & (cap - 1))
            ;
        cells[i] = set->cells[j];
    }
    free(set->cells);
    set->cells = cells;
    set->cap = cap;
    set->used = set->count;
    return 0;
}

/* Cells for `count` keys at most half full. */
static size_t idset_cap_for(size_t count)
{
    size_t cap = 64;

    while (cap / 2 < count + 1 && cap <= SIZE_MAX / 4)
        cap *= 2;
    return cap;
}

int idset_add(struct idset *set, const char *key, size_t len)
{
    uint64_t hash = hash_bytes(key, len);
    struct idset_cell *c;
    bool found;
    int rc;

    if ((set->used + 1) * 2 > set->cap) {
        /* A quarter full afterwards, so that growth costs O(1) a key. */
        rc = idset_rehash(set, idset_cap_for(2 * set->count + 2));
        if (rc)
            return rc;
    }
    c = idset_probe(set, key, len, hash, &found);
    if (found)
        return 0;
    rc = buf_append(&set->keys, key, len);
    if (rc)
        return rc;
    if (c->key == IDSET_FREE)
        set->used++;
    c->hash = hash;
    c->key = set->keys.len - len;
    c->len = len;
    set->count++;
    return 1;
}

void idset_remove(struct idset *set, const char *key, size_t len)
{
    struct idset_cell *c;
    bool found;

    if (!set->cap)
        return;
    c = idset_probe(set, key, len, hash_bytes(key, len), &found);
    if (found) {
        c->key = IDSET_GONE; /* its bytes stay in keys, unused */
        set->count--;
    }
}

int idset_expect(struct idset *set, size_t count, size_t bytes)
{
    size_t cap = idset_cap_for(count);
    int rc = 0;

    if (cap > set->cap)
        rc = idset_rehash(set, cap);
    if (!rc && count > set->count && bytes <= SIZE_MAX / (count - set->count))
        rc = buf_reserve(&set->keys, (count - set->count) * bytes);
    return rc;
}

void idset_free(struct idset *set)
{
    free(set->cells);
    buf_free(&set->keys);
    memset(set, 0, sizeof(*set));
}
