/*
 * idset — a set of byte strings (see include/batchfs/idset.h).
 * The keys are numbered in the order they came; a hindex finds the number.
 */
#include "batchfs/idset.h"

#include "batchfs/hash.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Where a key lies in set->keys. A removed key's span and bytes stay,
 * unused. */
struct idset_key {
    size_t at, len;
};

struct idset_sought {
    const char *key;
    size_t len;
};

static bool idset_eq(const void *ctx, size_t ref, const void *key)
{
    const struct idset *set = ctx;
    const struct idset_sought *sought = key;
    const struct idset_key *span = &set->spans[ref];

    return span->len == sought->len &&
           (sought->len == 0 ||
            memcmp(set->keys.data + span->at, sought->key, sought->len) == 0);
}

/* Room for `count` spans in all. 0 or -ENOMEM. */
static int idset_spans_reserve(struct idset *set, size_t count)
{
    size_t cap = set->spans_cap ? set->spans_cap : 64;
    struct idset_key *spans;

    if (count <= set->spans_cap)
        return 0;
    while (cap < count && cap <= SIZE_MAX / 2 / sizeof(*spans))
        cap *= 2;
    if (cap < count)
        return -ENOMEM;
    spans = realloc(set->spans, cap * sizeof(*spans));
    if (!spans)
        return -ENOMEM;
    set->spans = spans;
    set->spans_cap = cap;
    return 0;
}

int idset_add(struct idset *set, const char *key, size_t len)
{
    struct idset_sought sought = {key, len};
    uint64_t hash = hash_bytes(key, len);
    struct hindex_cell *c;
    bool found;
    int rc;

    rc = hindex_make_room(&set->index);
    if (rc)
        return rc;
    c = hindex_probe(&set->index, hash, idset_eq, set, &sought, &found);
    if (found)
        return 0;
    rc = idset_spans_reserve(set, set->spans_len + 1);
    if (rc)
        return rc;
    rc = buf_append(&set->keys, key, len);
    if (rc)
        return rc;
    set->spans[set->spans_len] = (struct idset_key){set->keys.len - len, len};
    hindex_put(&set->index, c, hash, set->spans_len++);
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
    c = hindex_probe(&set->index, hash_bytes(key, len), idset_eq, set, &sought, &found);
    if (found) {
        hindex_take(&set->index, c);
        set->count--;
    }
}

int idset_expect(struct idset *set, size_t count, size_t bytes)
{
    int rc = hindex_reserve(&set->index, count);

    if (!rc && count > set->count)
        rc = idset_spans_reserve(set, set->spans_len + (count - set->count));
    if (!rc && count > set->count && bytes <= SIZE_MAX / (count - set->count))
        rc = buf_reserve(&set->keys, (count - set->count) * bytes);
    return rc;
}

void idset_free(struct idset *set)
{
    hindex_free(&set->index);
    free(set->spans);
    buf_free(&set->keys);
    memset(set, 0, sizeof(*set));
}
