/*
 * idset — a set of byte strings: the ids, or the page tokens, seen by one
 * listing.
 *
 * A hindex over one buffer that holds every key with its length, so
 * that a listing of 100,000 items makes no allocation per id and costs
 * each id its bytes, one more and its hindex cell, and a set presized from a
 * total_size never rehashes. Keys may hold any bytes, NULs included.
 * Removing a key (rare: a page held back gives its ids back) leaves a
 * tombstone, cleared at the next rehash. Not thread-safe: a set belongs to
 * one listing, driven by one thread.
 */
#ifndef BATCHFS_IDSET_H
#define BATCHFS_IDSET_H

#include <stddef.h>
#include <stdint.h>

#include "batchfs/buf.h"
#include "batchfs/hindex.h"

struct idset {
    struct hindex index; /* refs: where each key lies in keys */
    size_t count;        /* keys in the set */
    struct buf keys;     /* each key's length and bytes, one after another */
};

#define IDSET_INIT                                                                       \
    {                                                                                    \
        HINDEX_INIT, 0, BUF_INIT                                                         \
    }

/* Adds a copy of key[0, len). 1 when added, 0 when it was there already,
 * -ENOMEM (the set is then unchanged). */
int idset_add(struct idset *set, const char *key, size_t len);

/* Takes key[0, len) out of the set, if it is there. */
void idset_remove(struct idset *set, const char *key, size_t len);

/* Makes room for `count` keys in all, `bytes` of key bytes on average.
 * 0 or -ENOMEM; a hint, so a failure loses nothing. */
int idset_expect(struct idset *set, size_t count, size_t bytes);

/* The bytes the set holds (reserved room included). Pure. */
size_t idset_footprint(const struct idset *set);

/* Frees the set; it is IDSET_INIT again. */
void idset_free(struct idset *set);

#endif
