/*
 * blob — the bytes of one file, immutable and reference counted.
 *
 * Most blobs hold their bytes (an item's JSON, rendered once). A made blob
 * holds instead what its bytes are made from and makes any range of them on
 * demand (items.ndjson: the item listings, so that the file costs no second
 * copy of the items). Both kinds have a length and a digest fixed when they
 * are created; readers go through blob_read and need not know the kind.
 * Any thread may read a blob without a lock.
 */
#ifndef BATCHFS_BLOB_H
#define BATCHFS_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "batchfs/buf.h"

struct blob {
    unsigned refs;    /* atomic */
    unsigned made;    /* 0: the bytes are in data; 1: made by a blob_maker */
    uint64_t digest;  /* of the bytes: equal digests = same content */
    size_t len;
    char data[];      /* len bytes and a NUL; for a made blob, its maker */
};

/* Makes the bytes of a made blob. */
struct blob_maker {
    /* Appends bytes [off, off + size) of the content to out (the caller
     * keeps off + size within the blob's length). 0 or a negative errno. */
    int (*make)(const void *state, size_t off, size_t size, struct buf *out);
    void (*free)(void *state); /* with the blob's last reference */
};

/* A blob holding a copy of data, with one reference; NULL on ENOMEM. */
struct blob *blob_new(const char *data, size_t len);

/* A made blob of `len` bytes whose digest is `digest` (the maker's to
 * compute: it must change whenever the bytes do). Takes `state`: on
 * failure (NULL, ENOMEM) it has already been freed with maker->free. */
struct blob *blob_new_made(const struct blob_maker *maker, void *state, size_t len,
                           uint64_t digest);

struct blob *blob_ref(struct blob *blob);
void blob_unref(struct blob *blob);

/* The bytes, when the blob holds them; NULL for a made blob. */
const char *blob_bytes(const struct blob *blob);

/*
 * Up to `size` bytes from offset `off`: sets *bytes to them and returns how
 * many (0 at or past the end). A held blob's bytes are its own; a made
 * blob's are made into `scratch`, which the caller frees. Negative errno on
 * failure.
 */
long blob_read(const struct blob *blob, size_t off, size_t size, struct buf *scratch,
               const char **bytes);

/* A 64-bit digest of len bytes (for equality only, never stored). */
uint64_t blob_digest(const char *data, size_t len);

/* Folds value into a running digest h (to digest a sequence of parts). */
uint64_t blob_digest_fold(uint64_t h, uint64_t value);

#endif
