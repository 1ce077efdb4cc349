/*
 * blob — the bytes of one file (see include/batchfs/blob.h).
 */
#include "batchfs/blob.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* What a made blob keeps in its data[]. */
struct blob_made {
    const struct blob_maker *maker;
    void *state;
};

/* Mixes the bits of h so that each one depends on all (MurmurHash3's
 * finaliser). */
static uint64_t blob_mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* Eight bytes at a time: every item's file gets a digest, so
 * byte-at-a-time hashing showed in the cost of a listing. */
uint64_t blob_digest(const char *data, size_t len)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ len, w;
    size_t i = 0;

    for (; len - i >= 8; i += 8) {
        memcpy(&w, data + i, sizeof(w));
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 29;
    }
    w = 0;
    memcpy(&w, data + i, len - i);
    return blob_mix(h ^ blob_mix(w ^ (len - i)));
}

uint64_t blob_digest_fold(uint64_t h, uint64_t value)
{
    return blob_mix((h ^ value) * 0x9e3779b97f4a7c15ULL + 1);
}

struct blob *blob_new(const char *data, size_t len)
{
    struct blob *blob = malloc(sizeof(*blob) + len + 1);

    if (!blob)
        return NULL;
    blob->refs = 1;
    blob->made = 0;
    blob->len = len;
    blob->digest = blob_digest(data, len);
    memcpy(blob->data, data, len);
    blob->data[len] = '\0';
    return blob;
}

struct blob *blob_new_made(const struct blob_maker *maker, void *state, size_t len,
                           uint64_t digest)
{
    struct blob_made made = {maker, state};
    struct blob *blob = malloc(sizeof(*blob) + sizeof(made));

    if (!blob) {
        maker->free(state);
        return NULL;
    }
    blob->refs = 1;
    blob->made = 1;
    blob->len = len;
    blob->digest = digest;
    memcpy(blob->data, &made, sizeof(made));
    return blob;
}

struct blob *blob_ref(struct blob *blob)
{
    if (blob)
        __atomic_add_fetch(&blob->refs, 1, __ATOMIC_RELAXED);
    return blob;
}

void blob_unref(struct blob *blob)
{
    struct blob_made made;

    if (!blob || __atomic_sub_fetch(&blob->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (blob->made) {
        memcpy(&made, blob->data, sizeof(made));
        made.maker->free(made.state);
    }
    free(blob);
}

const char *blob_bytes(const struct blob *blob)
{
    return blob->made ? NULL : blob->data;
}

long blob_read(const struct blob *blob, size_t off, size_t size, struct buf *scratch,
               const char **bytes)
{
    struct blob_made made;
    int rc;

    *bytes = NULL;
    if (off >= blob->len || size == 0)
        return 0;
    if (size > blob->len - off)
        size = blob->len - off;
    if (size > (size_t)LONG_MAX)
        size = (size_t)LONG_MAX;
    if (!blob->made) {
        *bytes = blob->data + off;
        return (long)size;
    }
    memcpy(&made, blob->data, sizeof(made));
    buf_reset(scratch);
    rc = made.maker->make(made.state, off, size, scratch);
    if (rc)
        return rc;
    if (scratch->len != size)
        return -EIO; /* the maker broke its promise: never hand out short or long bytes */
    *bytes = scratch->data;
    return (long)size;
}
