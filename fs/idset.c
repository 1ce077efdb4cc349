/*
 * idset — a set of byte strings, kept as digests (see
 * include/batchfs/idset.h).
 */
#include "batchfs/idset.h"

#include "batchfs/hash.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* The seed of a digest's second half: any constant other than the hash
 * tables' own (HASH_KEY_SEED), which gives the first. */
#define IDSET_SECOND_SEED 0x2545f4914f6cdd1dULL

_Static_assert(sizeof(size_t) >= sizeof(uint64_t),
               "a cell's ref holds 64 bits of a digest");

/* key[0, len)'s digest: the table's hash and, in the cell's ref, a second
 * hash from another seed, kept clear of the table's own marks. */
static void idset_digest(const char *key, size_t len, uint64_t *hash, size_t *second)
{
    uint64_t h = hash_words_from(IDSET_SECOND_SEED, key, len);

    *hash = hash_key(key, len);
    *second = (size_t)(h >= HINDEX_GONE ? h - 2 : h);
}

static bool idset_eq(const void *ctx, size_t ref, const void *key)
{
    (void)ctx;
    return ref == *(const size_t *)key;
}

int idset_add(struct idset *set, const char *key, size_t len)
{
    struct hindex_cell *c;
    uint64_t hash;
    size_t second;
    bool found;
    int rc;

    idset_digest(key, len, &hash, &second);
    rc = hindex_make_room(&set->index);
    if (rc)
        return rc;
    c = hindex_probe(&set->index, hash, idset_eq, NULL, &second, &found);
    if (found)
        return 0;
    hindex_put(&set->index, c, hash, second);
    set->count++;
    return 1;
}

void idset_remove(struct idset *set, const char *key, size_t len)
{
    struct hindex_cell *c;
    uint64_t hash;
    size_t second;
    bool found;

    if (!set->index.cap)
        return;
    idset_digest(key, len, &hash, &second);
    c = hindex_probe(&set->index, hash, idset_eq, NULL, &second, &found);
    if (found) {
        hindex_take(&set->index, c);
        set->count--;
    }
}

int idset_expect(struct idset *set, size_t count)
{
    return hindex_reserve(&set->index, count);
}

size_t idset_footprint(const struct idset *set)
{
    return set->index.cap * sizeof(*set->index.cells);
}

void idset_free(struct idset *set)
{
    hindex_free(&set->index);
    memset(set, 0, sizeof(*set));
}
