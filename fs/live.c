/*
 * live — the listings still in use, found again by their cache key (see
 * include/batchfs/live.h).
 *
 * The one hash table (hindex.h) files each key under its newest listing;
 * the listings of one key (an old one still in use and its refresh) are
 * chained through the listings themselves, newest first. A mount of
 * thousands of jobs holds thousands of listings, and every cache miss looks
 * here first.
 *
 * Reviving a listing races with its last release: live_take takes a
 * reference only from a count that is not zero, under the lock, and a
 * listing whose count reached zero is unlinked under the same lock before
 * it is freed; so a listing on its way out is never revived, and never
 * freed while live_take looks at it.
 */
#include "batchfs/live.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batchfs/clocks.h"
#include "batchfs/hash.h"
#include "batchfs/hindex.h"
#include "batchfs/listing.h"

struct live {
    pthread_mutex_t lock;
    /* Everything below is protected by lock. */
    struct hindex index; /* each key's newest listing (refs: pointers) */
    size_t count;
    unsigned epoch;
    unsigned long long reused;
    double (*clock)(void *arg); /* read-only after live_new */
    void *clock_arg;
};

static double live_now(const struct live *live)
{
    return clocks_now(live->clock, live->clock_arg);
}

static uint64_t live_hash(const char *key)
{
    return hash_key_str(key);
}

static struct listing *live_listing(size_t ref)
{
    return (struct listing *)(uintptr_t)ref;
}

/* hindex_eq_fn: whether the listing `ref` is filed under `key`. */
static bool live_eq(const void *ctx, size_t ref, const void *key)
{
    (void)ctx;
    return strcmp(listing_link(live_listing(ref))->key, key) == 0;
}

/* The cell of `key`, filed or where it would go (live->lock held). */
static struct hindex_cell *live_cell(struct live *live, uint64_t hash, const char *key,
                                     bool *found)
{
    return hindex_probe(&live->index, hash, live_eq, NULL, key, found);
}

struct live *live_new(double (*clock)(void *arg), void *clock_arg)
{
    struct live *live = calloc(1, sizeof(*live));

    if (!live)
        return NULL;
    live->clock = clock;
    live->clock_arg = clock_arg;
    live->index = (struct hindex)HINDEX_INIT;
    pthread_mutex_init(&live->lock, NULL);
    return live;
}

void live_free(struct live *live)
{
    struct listing *next;

    if (!live)
        return;
    for (size_t c = 0; c < live->index.cap; c++) {
        size_t ref = live->index.cells[c].ref;

        if (ref == HINDEX_FREE || ref == HINDEX_GONE)
            continue;
        for (struct listing *l = live_listing(ref); l; l = next) {
            struct listing_link *link = listing_link(l);

            next = link->next;
            link->home = NULL;
            link->prev = link->next = NULL;
        }
    }
    pthread_mutex_destroy(&live->lock);
    hindex_free(&live->index);
    free(live);
}

void live_add(struct live *live, struct listing *listing, const char *key, double ttl_s)
{
    struct listing_link *link = listing_link(listing);
    char *copy = strdup(key);
    struct hindex_cell *cell;
    bool found;

    if (!copy || link->home) {
        free(copy);
        return;
    }
    link->key = copy;
    link->forget = live_forget;
    link->key_hash = live_hash(key);
    link->fresh_until = live_now(live) + ttl_s;
    pthread_mutex_lock(&live->lock);
    if (hindex_make_room(&live->index)) {
        /* Not registered: it is only not found again after eviction. */
        pthread_mutex_unlock(&live->lock);
        link->key = NULL;
        link->forget = NULL;
        free(copy);
        return;
    }
    cell = live_cell(live, link->key_hash, key, &found);
    link->epoch = live->epoch;
    link->home = live;
    link->prev = NULL;
    link->next = found ? live_listing(cell->ref) : NULL;
    if (found) {
        listing_link(link->next)->prev = listing;
        cell->ref = (size_t)(uintptr_t)listing;
    } else {
        hindex_put(&live->index, cell, link->key_hash, (size_t)(uintptr_t)listing);
    }
    live->count++;
    pthread_mutex_unlock(&live->lock);
}

struct listing *live_take(struct live *live, const char *key, double *ttl_left)
{
    double now = live_now(live);
    uint64_t hash = live_hash(key);
    struct listing *found = NULL;

    size_t head;

    pthread_mutex_lock(&live->lock);
    head = hindex_find(&live->index, hash, live_eq, NULL, key);
    for (struct listing *l = head == HINDEX_FREE ? NULL : live_listing(head); l && !found;
         l = listing_link(l)->next) {
        struct listing_link *link = listing_link(l);

        if (link->epoch != live->epoch || now >= link->fresh_until)
            continue;
        if (listing_ref_if_alive(l)) {
            found = l;
            *ttl_left = link->fresh_until - now;
            live->reused++;
        }
    }
    pthread_mutex_unlock(&live->lock);
    return found;
}

void live_forget(struct listing *listing)
{
    struct listing_link *link = listing_link(listing);
    struct live *live = link->home;

    if (live) {
        bool found;
        struct hindex_cell *cell;

        pthread_mutex_lock(&live->lock);
        if (link->prev) {
            listing_link(link->prev)->next = link->next;
        } else {
            /* The newest of its key: the next one is, or the key goes. */
            cell = live_cell(live, link->key_hash, link->key, &found);
            if (found && link->next)
                cell->ref = (size_t)(uintptr_t)link->next;
            else if (found)
                hindex_take(&live->index, cell);
        }
        if (link->next)
            listing_link(link->next)->prev = link->prev;
        live->count--;
        pthread_mutex_unlock(&live->lock);
        link->home = NULL;
    }
    free(link->key);
    link->key = NULL;
}

void live_expire_all(struct live *live)
{
    pthread_mutex_lock(&live->lock);
    live->epoch++;
    pthread_mutex_unlock(&live->lock);
}

unsigned long long live_reused(struct live *live)
{
    unsigned long long n;

    pthread_mutex_lock(&live->lock);
    n = live->reused;
    pthread_mutex_unlock(&live->lock);
    return n;
}
