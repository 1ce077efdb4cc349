/*
 * hindex — the one hash table: open addressing with linear probing over
 * numbers (`ref`) that stand for the caller's keys, such as an index into
 * its array or an offset into its buffer. The caller keeps the keys; the
 * table keeps each key's hash beside its number, so that probing past
 * other keys never touches them, and asks the caller's equality only on
 * an equal hash.
 *
 * Kept at most three quarters full, tombstones included: a listing's
 * tables hold a cell (16 bytes) for each of its ids or names, so at a
 * million items each half-full table took 32 to 64 MB; linear probing at
 * three quarters still finds a key in a few cells. Growth leaves it at most
 * three eighths full, so that it costs O(1) a key, and a table presized
 * with hindex_reserve never rehashes. A removed key leaves a tombstone, cleared
 * at the next rehash. Probing is inline: the tables of a listing pay it
 * for every id and every name. Not thread-safe: the caller's lock (or its
 * one thread) guards a table.
 */
#ifndef BATCHFS_HINDEX_H
#define BATCHFS_HINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Values of hindex_cell.ref that are not the caller's numbers. */
#define HINDEX_FREE SIZE_MAX
#define HINDEX_GONE (SIZE_MAX - 1)

struct hindex_cell {
    uint64_t hash;
    size_t ref; /* the caller's number for the key, or HINDEX_FREE / HINDEX_GONE */
};

struct hindex {
    struct hindex_cell *cells; /* cap of them; NULL before the first key */
    size_t cap;                /* a power of two, or 0 */
    size_t used;               /* cells holding a key or a tombstone */
    size_t count;              /* keys in the table */
};

#define HINDEX_INIT                                                                      \
    {                                                                                    \
        NULL, 0, 0, 0                                                                    \
    }

/* Whether the caller's key number `ref` is the key sought. */
typedef bool (*hindex_eq_fn)(const void *ctx, size_t ref, const void *key);

/* The cell holding the key, or, when it is absent, the cell to put it in
 * (the first tombstone on its way, else the free cell that ends it); then
 * *found is false. The table must have cells (hindex_make_room). */
static inline struct hindex_cell *hindex_probe(const struct hindex *h, uint64_t hash,
                                               hindex_eq_fn eq, const void *ctx,
                                               const void *key, bool *found)
{
    size_t mask = h->cap - 1, i = (size_t)hash & mask;
    struct hindex_cell *spare = NULL;

    for (;; i = (i + 1) & mask) {
        struct hindex_cell *c = &h->cells[i];

        if (c->ref == HINDEX_FREE) {
            *found = false;
            return spare ? spare : c;
        }
        if (c->ref == HINDEX_GONE) {
            if (!spare)
                spare = c;
        } else if (c->hash == hash && eq(ctx, c->ref, key)) {
            *found = true;
            return c;
        }
    }
}

/* The number of the key, or HINDEX_FREE when it is absent. */
static inline size_t hindex_find(const struct hindex *h, uint64_t hash, hindex_eq_fn eq,
                                 const void *ctx, const void *key)
{
    struct hindex_cell *c;
    bool found;

    if (!h->cap)
        return HINDEX_FREE;
    c = hindex_probe(h, hash, eq, ctx, key, &found);
    return found ? c->ref : HINDEX_FREE;
}

/* Files key number `ref` in `cell`, a cell hindex_probe gave for an absent
 * key, with no call that changes the table in between. */
static inline void hindex_put(struct hindex *h, struct hindex_cell *cell, uint64_t hash,
                              size_t ref)
{
    if (cell->ref == HINDEX_FREE)
        h->used++;
    cell->hash = hash;
    cell->ref = ref;
    h->count++;
}

/* Takes out the key of `cell`, which hindex_probe found. */
static inline void hindex_take(struct hindex *h, struct hindex_cell *cell)
{
    cell->ref = HINDEX_GONE;
    h->count--;
}

/* Makes room for one more key. 0 or -ENOMEM (the table is then unchanged). */
int hindex_make_room(struct hindex *h);

/* Makes room for `count` keys in all: no rehash until there are more.
 * 0 or -ENOMEM (the table is then unchanged). */
int hindex_reserve(struct hindex *h, size_t count);

/* Frees the cells; the table is HINDEX_INIT again. */
void hindex_free(struct hindex *h);

#endif
