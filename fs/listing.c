/*
 * listing — listings and their entries (see include/batchfs/listing.h).
 */
#include "batchfs/listing.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "batchfs/bigmem.h"
#include "batchfs/hash.h"

/* ---- listings and their entries -------------------------------------- */

/* Source of listing generations; atomic, shared by every catalog. */
static uint64_t listing_next_generation;

void entry_clear(struct entry *entry)
{
    blob_unref(entry->content);
    memset(entry, 0, sizeof(*entry));
}

size_t entry_bytes(const struct entry *e)
{
    return sizeof(*e) + (e->content ? blob_footprint(e->content) : 0);
}

struct listing *listing_new(enum listing_kind kind)
{
    struct listing *listing = calloc(1, sizeof(*listing));

    if (!listing)
        return NULL;
    listing->refs = 1;
    listing->generation =
        __atomic_add_fetch(&listing_next_generation, 1, __ATOMIC_RELAXED);
    listing->kind = kind;
    return listing;
}

struct listing *listing_ref(struct listing *listing)
{
    __atomic_add_fetch(&listing->refs, 1, __ATOMIC_RELAXED);
    return listing;
}

bool listing_ref_if_alive(struct listing *listing)
{
    unsigned refs = __atomic_load_n(&listing->refs, __ATOMIC_RELAXED);

    while (refs && !__atomic_compare_exchange_n(&listing->refs, &refs, refs + 1, false,
                                                __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        ;
    return refs != 0;
}

struct listing_link *listing_link(struct listing *listing)
{
    return &listing->link;
}

bool listing_doc_gone(const struct listing *listing, size_t index)
{
    return listing->gone && index < listing->count &&
           __atomic_load_n(&listing->gone[index], __ATOMIC_RELAXED);
}

void listing_mark_doc_gone(struct listing *listing, size_t index)
{
    if (listing->gone && index < listing->count &&
        !__atomic_exchange_n(&listing->gone[index], 1, __ATOMIC_RELAXED))
        __atomic_add_fetch(&listing->gone_marks, 1, __ATOMIC_RELEASE);
}

uint64_t listing_version(const struct listing *listing)
{
    unsigned marks = __atomic_load_n(&listing->gone_marks, __ATOMIC_ACQUIRE);

    /* Generations count up from 1: a mix of one with the marks is another
     * number, which no other listing's generation is but by a 2^-64
     * chance. */
    return marks ? hash_mix(listing->generation ^ hash_mix(marks)) : listing->generation;
}

void listing_release(struct listing *listing)
{
    if (!listing || __atomic_sub_fetch(&listing->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (listing->link.forget)
        listing->link.forget(listing);
    for (size_t i = 0; i < listing->count; i++)
        entry_clear(&listing->entries[i]);
    entry_clear(&listing->self);
    bigmem_free(listing->entries);
    bigmem_free(listing->by_name);
    bigmem_free(listing->job_ids);
    bigmem_free(listing->ids);
    bigmem_free(listing->gone);
    free(listing->note);
    bigmem_free(listing->strings);
    free(listing);
}

const char *listing_entry_id(const struct listing *listing, const struct entry *entry)
{
    if (entry == &listing->self)
        return listing->kind == LISTING_BATCH || listing->kind == LISTING_DOC
                   ? entry->name
                   : NULL;
    if (listing->ids)
        return listing->ids[entry - listing->entries];
    switch (listing->kind) {
    case LISTING_JOBS:
    case LISTING_JOB:
    case LISTING_BATCHES:
        return entry->name;
    default:
        return NULL;
    }
}

int entry_compare_names(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

/* entry_compare_names for two elements of a listing's by_name, the
 * listing's entries given as `entries`. */
static int entry_compare_name_refs(const void *a, const void *b, void *entries)
{
    const struct entry *e = entries;

    return strcmp(e[*(const uint32_t *)a].name, e[*(const uint32_t *)b].name);
}

const struct entry *listing_find(const struct listing *listing, const char *name)
{
    struct entry key = {.name = (char *)name};
    size_t low = 0, high = listing->count;

    if (!listing->count)
        return NULL;
    if (!listing->by_name)
        return bsearch(&key, listing->entries, listing->count, sizeof(struct entry),
                       entry_compare_names);
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        const struct entry *e = &listing->entries[listing->by_name[mid]];
        int cmp = strcmp(name, e->name);

        if (!cmp)
            return e;
        if (cmp < 0)
            high = mid;
        else
            low = mid + 1;
    }
    return NULL;
}

int listing_index_names(struct listing *listing)
{
    uint32_t *by_name;

    if (listing->count < 2)
        return 0; /* in name order already */
    if (listing->count > LISTING_MAX_ENTRIES)
        return -ENOMEM;
    by_name = bigmem_resize(NULL, listing->count * sizeof(*by_name));
    if (!by_name)
        return -ENOMEM;
    for (size_t i = 0; i < listing->count; i++)
        by_name[i] = (uint32_t)i;
    qsort_r(by_name, listing->count, sizeof(*by_name), entry_compare_name_refs,
            listing->entries);
    bigmem_free(listing->by_name);
    listing->by_name = by_name;
    return 0;
}

int listing_parse_time(const char *text, struct timespec *out)
{
    struct tm tm;
    const char *p;
    long nsec = 0, scale = 100000000L;
    long offset = 0;
    time_t t;

    memset(&tm, 0, sizeof(tm));
    p = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        p = strptime(text, "%Y-%m-%d %H:%M:%S", &tm);
    if (!p)
        return -EINVAL;
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
            nsec += (*p - '0') * scale;
            scale /= 10;
        }
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && p[1] && p[2] && p[3] == ':' && p[4] && p[5]) {
        int sign = *p == '-' ? -1 : 1;
        int hh = (p[1] - '0') * 10 + (p[2] - '0');
        int mm = (p[4] - '0') * 10 + (p[5] - '0');

        if (hh < 0 || hh > 23 || mm < 0 || mm > 59)
            return -EINVAL;
        offset = sign * (hh * 3600L + mm * 60L);
        p += 6;
    } else if (*p) {
        return -EINVAL;
    } /* else no zone: the API speaks UTC */
    if (*p)
        return -EINVAL;
    t = timegm(&tm);
    if (t == (time_t)-1)
        return -EINVAL;
    out->tv_sec = t - offset;
    out->tv_nsec = nsec;
    return 0;
}
