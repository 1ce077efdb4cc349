/*
 * idset — a set of byte strings (see include/batchfs/idset.h).
 * The keys lie one after another in one buffer; a hindex finds the offset.
 */
#include "batchfs/idset.h"

#include "batchfs/hash.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * A key lies in set->keys as its length (a varint: 7 bits a byte, low bits
 * first, the high bit saying more follow) and then its bytes; its number in
 * the hindex is the offset of its length. Ids are 20 to 60 bytes, so a key
 * costs its bytes and one more, with no array of spans beside them. A
 * removed key's bytes stay, unused.
 */
struct idset_sought {
    const char *key;
    size_t len;
};

/* Decodes the length at p, setting *len; returns the key's first byte. */
static const char *idset_key_at(const char *p, size_t *len)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t n = 0;
    unsigned shift = 0;

    do {
        n |= (size_t)(*u & 0x7f) << shift;
        shift += 7;
    } while (*u++ & 0x80);
    *len = n;
    return (const char *)u;
}

/* The bytes of a varint of `len`. */
static size_t idset_len_bytes(size_t len)
{
    size_t n = 1;

    while (len >= 0x80) {
        len >>= 7;
        n++;
    }
    return n;
}

static bool idset_eq(const void *ctx, size_t ref, const void *key)
{
    const struct idset *set = ctx;
    const struct idset_sought *sought = key;
    size_t len;
    const char *bytes = idset_key_at(set->keys.data + ref, &len);

    return len == sought->len && (len == 0 || memcmp(bytes, sought->key, len) == 0);
}

/* Appends key[0, len) with its length to set->keys; *at is where it went.
 * 0 or -ENOMEM. */
static int idset_append(struct idset *set, const char *key, size_t len, size_t *at)
{
    size_t head = idset_len_bytes(len), left = head;
    unsigned char *p;
    /* The keys of a listing of a million items are tens of MB: a buffer of
     * bigmem.h's, however the set was initialised (zeroed in a struct too). */
    int rc = buf_make_big(&set->keys);

    if (!rc)
        rc = buf_reserve(&set->keys, head + len);
    if (rc)
        return rc;
    *at = set->keys.len;
    p = (unsigned char *)set->keys.data + set->keys.len;
    for (size_t n = len; left--; n >>= 7)
        *p++ = (unsigned char)((n & 0x7f) | (left ? 0x80 : 0));
    if (len)
        memcpy(p, key, len);
    set->keys.len += head + len;
    return 0;
}

int idset_add(struct idset *set, const char *key, size_t len)
{
    struct idset_sought sought = {key, len};
    uint64_t hash = hash_key(key, len);
    struct hindex_cell *c;
    size_t at;
    bool found;
    int rc;

    rc = hindex_make_room(&set->index);
    if (rc)
        return rc;
    c = hindex_probe(&set->index, hash, idset_eq, set, &sought, &found);
    if (found)
        return 0;
    rc = idset_append(set, key, len, &at);
    if (rc)
        return rc;
    hindex_put(&set->index, c, hash, at);
    set->count++;
    return 1;
}

void idset_remove(struct idset *set, const char *key, size_t len)
{
    struct idset_sought sought = {key, len};
    struct hindex_cell *c;
    bool found;

    if (!set->index.cap)
        return;
    c = hindex_probe(&set->index, hash_key(key, len), idset_eq, set, &sought, &found);
    if (found) {
        hindex_take(&set->index, c);
        set->count--;
    }
}

int idset_expect(struct idset *set, size_t count, size_t bytes)
{
    int rc = hindex_reserve(&set->index, count);

    if (!rc && count > set->count && bytes < SIZE_MAX / 2 / (count - set->count)) {
        size_t room = (count - set->count) * (bytes + 1);

        /* Not rounded up by doubling (the ids of a million items would
         * take 64 MB where they need 43), but a sixteenth more, so that
         * ids a little longer than the first ones do not end in a
         * doubling. */
        rc = buf_make_big(&set->keys);
        if (!rc)
            rc = buf_reserve_exact(&set->keys, room + room / 16);
    }
    return rc;
}

size_t idset_footprint(const struct idset *set)
{
    return set->index.cap * sizeof(*set->index.cells) + set->keys.cap;
}

void idset_free(struct idset *set)
{
    hindex_free(&set->index);
    buf_free(&set->keys);
    memset(set, 0, sizeof(*set));
}
