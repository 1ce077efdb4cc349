/*
 * live — the listings still in use, found again by their cache key (see
 * include/batchfs/live.h).
 *
 * A hash table of chains, linked through the listings themselves: a mount
 * of thousands of jobs holds thousands of listings, and every cache miss
 * looks here first. Within a chain the newest listing comes first.
 *
 * Reviving a listing races with its last release: live_take takes a
 * reference only from a count that is not zero, under the lock, and a
 * listing whose count reached zero is unlinked under the same lock before
 * it is freed; so a listing on its way out is never revived, and never
 * freed while live_take looks at it.
 */
#include "batchfs/live.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batchfs/hash.h"
#include "batchfs/listing.h"

#define LIVE_INITIAL_BUCKETS 64

struct live {
    pthread_mutex_t lock;
    /* Everything below is protected by lock. */
    struct listing **buckets;
    size_t bucket_count; /* a power of two */
    size_t count;
    unsigned epoch;
    unsigned long long reused;
};

static double live_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t live_hash(const char *key)
{
    return hash_str(key);
}

static struct listing **live_bucket(struct live *live, uint64_t hash)
{
    return &live->buckets[hash & (live->bucket_count - 1)];
}

/* Puts `listing` first in its chain (live->lock held). */
static void live_link(struct live *live, struct listing *listing)
{
    struct listing_link *link = listing_link(listing);
    struct listing **head = live_bucket(live, link->key_hash);

    link->prev = NULL;
    link->next = *head;
    if (*head)
        listing_link(*head)->prev = listing;
    *head = listing;
}

/* Doubles the table when it is full (live->lock held). Without memory the
 * chains just grow longer. Walking each old chain from its tail keeps the
 * newest listing of a key first. */
static void live_grow(struct live *live)
{
    struct listing **old = live->buckets;
    size_t old_count = live->bucket_count;
    struct listing **grown = calloc(old_count * 2, sizeof(*grown));

    if (!grown)
        return;
    live->buckets = grown;
    live->bucket_count = old_count * 2;
    for (size_t b = 0; b < old_count; b++) {
        struct listing *tail = old[b], *prev;

        while (tail && listing_link(tail)->next)
            tail = listing_link(tail)->next;
        for (; tail; tail = prev) {
            prev = listing_link(tail)->prev;
            live_link(live, tail);
        }
    }
    free(old);
}

struct live *live_new(void)
{
    struct live *live = calloc(1, sizeof(*live));

    if (!live)
        return NULL;
    live->bucket_count = LIVE_INITIAL_BUCKETS;
    live->buckets = calloc(live->bucket_count, sizeof(*live->buckets));
    if (!live->buckets) {
        free(live);
        return NULL;
    }
    pthread_mutex_init(&live->lock, NULL);
    return live;
}

void live_free(struct live *live)
{
    struct listing *next;

    if (!live)
        return;
    for (size_t b = 0; b < live->bucket_count; b++) {
        for (struct listing *l = live->buckets[b]; l; l = next) {
            struct listing_link *link = listing_link(l);

            next = link->next;
            link->home = NULL;
            link->prev = link->next = NULL;
        }
    }
    pthread_mutex_destroy(&live->lock);
    free(live->buckets);
    free(live);
}

void live_add(struct live *live, struct listing *listing, const char *key, double ttl_s)
{
    struct listing_link *link = listing_link(listing);
    char *copy = strdup(key);

    if (!copy || link->home) {
        free(copy);
        return;
    }
    link->key = copy;
    link->forget = live_forget;
    link->key_hash = live_hash(key);
    link->fresh_until = live_now() + ttl_s;
    pthread_mutex_lock(&live->lock);
    if (live->count >= live->bucket_count)
        live_grow(live);
    link->epoch = live->epoch;
    link->home = live;
    live_link(live, listing);
    live->count++;
    pthread_mutex_unlock(&live->lock);
}

struct listing *live_take(struct live *live, const char *key, double *ttl_left)
{
    double now = live_now();
    uint64_t hash = live_hash(key);
    struct listing *found = NULL;

    pthread_mutex_lock(&live->lock);
    for (struct listing *l = *live_bucket(live, hash); l && !found;
         l = listing_link(l)->next) {
        struct listing_link *link = listing_link(l);

        if (link->key_hash != hash || link->epoch != live->epoch ||
            now >= link->fresh_until || strcmp(link->key, key) != 0)
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
        pthread_mutex_lock(&live->lock);
        if (link->prev)
            listing_link(link->prev)->next = link->next;
        else
            *live_bucket(live, link->key_hash) = link->next;
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
