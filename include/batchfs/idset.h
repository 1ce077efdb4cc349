/*
 * idset — a set of byte strings: the ids, or the page tokens, seen by one
 * listing.
 *
 * It keeps a 128-bit digest of each key, not the key: a hindex cell (16
 * bytes) is its hash and, where the table keeps the caller's number, a
 * second hash of the key from another seed. A million-item listing's set
 * of ids then costs its table alone (32 MiB), where a copy of each id
 * beside it cost 38 MiB more while the listing was built, at the peak of
 * a walk under a small cache_size. Two keys are taken for one only when
 * both hashes agree, which for the ids of one listing (a million of them
 * make 2^39 pairs) has odds of about 2^-89. Keys may hold any bytes, NULs
 * included. Removing a key (rare: a page held back gives its ids back)
 * leaves a tombstone, cleared at the next rehash. Not thread-safe: a set
 * belongs to one listing, driven by one thread.
 */
#ifndef BATCHFS_IDSET_H
#define BATCHFS_IDSET_H

#include <stddef.h>
#include <stdint.h>

#include "batchfs/hindex.h"

struct idset {
    struct hindex index; /* each key's digest: its hash and, as ref, a second */
    size_t count;        /* keys in the set */
};

#define IDSET_INIT                                                                       \
    {                                                                                    \
        HINDEX_INIT, 0                                                                   \
    }

/* Adds key[0, len) (its digest). 1 when added, 0 when it was there already,
 * -ENOMEM (the set is then unchanged). */
int idset_add(struct idset *set, const char *key, size_t len);

/* Takes key[0, len) out of the set, if it is there. */
void idset_remove(struct idset *set, const char *key, size_t len);

/* Makes room for `count` keys in all. 0 or -ENOMEM; a hint, so a failure
 * loses nothing. */
int idset_expect(struct idset *set, size_t count);

/* The bytes the set holds (reserved room included). Pure. */
size_t idset_footprint(const struct idset *set);

/* Frees the set; it is IDSET_INIT again. */
void idset_free(struct idset *set);

#endif
