/*
 * live — the listings still in use, found again by their cache key (see
 * include/batchfs/live.h).
 *
 * A plain list: it holds only listings someone is using, a few per open
 * folder or file, and it is searched only on a cache miss, which costs a
 * request when it finds nothing. The newest listing is first.
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

struct live {
    pthread_mutex_t lock;
    /* Everything below is protected by lock. */
    struct listing *head;
    unsigned epoch;
    unsigned long long reused;
};

static double live_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct live *live_new(void)
{
    struct live *live = calloc(1, sizeof(*live));

    if (live)
        pthread_mutex_init(&live->lock, NULL);
    return live;
}

void live_free(struct live *live)
{
    struct listing *next;

    if (!live)
        return;
    for (struct listing *l = live->head; l; l = next) {
        next = l->live_next;
        l->home = NULL;
        l->live_prev = l->live_next = NULL;
    }
    pthread_mutex_destroy(&live->lock);
    free(live);
}

void live_add(struct live *live, struct listing *listing, const char *key, double ttl_s)
{
    char *copy = strdup(key);

    if (!copy || listing->home) {
        free(copy);
        return;
    }
    listing->key = copy;
    listing->fresh_until = live_now() + ttl_s;
    pthread_mutex_lock(&live->lock);
    listing->epoch = live->epoch;
    listing->home = live;
    listing->live_prev = NULL;
    listing->live_next = live->head;
    if (live->head)
        live->head->live_prev = listing;
    live->head = listing;
    pthread_mutex_unlock(&live->lock);
}

/* One more reference, unless the count already reached zero. */
static bool live_revive(struct listing *listing)
{
    unsigned refs = __atomic_load_n(&listing->refs, __ATOMIC_RELAXED);

    while (refs && !__atomic_compare_exchange_n(&listing->refs, &refs, refs + 1, false,
                                                __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        ;
    return refs != 0;
}

struct listing *live_take(struct live *live, const char *key, double *ttl_left)
{
    double now = live_now();
    struct listing *found = NULL;

    pthread_mutex_lock(&live->lock);
    for (struct listing *l = live->head; l && !found; l = l->live_next) {
        if (l->epoch != live->epoch || now >= l->fresh_until || strcmp(l->key, key) != 0)
            continue;
        if (live_revive(l)) {
            found = l;
            *ttl_left = l->fresh_until - now;
            live->reused++;
        }
    }
    pthread_mutex_unlock(&live->lock);
    return found;
}

void live_forget(struct listing *listing)
{
    struct live *live = listing->home;

    if (live) {
        pthread_mutex_lock(&live->lock);
        if (listing->live_prev)
            listing->live_prev->live_next = listing->live_next;
        else
            live->head = listing->live_next;
        if (listing->live_next)
            listing->live_next->live_prev = listing->live_prev;
        pthread_mutex_unlock(&live->lock);
        listing->home = NULL;
    }
    free(listing->key);
    listing->key = NULL;
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
