/*
 * cache — values by key with a time to live, single-flight fetches, a byte
 * budget with LRU eviction, negative entries and stale-if-error (see
 * include/batchfs/cache.h).
 *
 * For: remembering what a slow remote said, and making concurrent readers of
 * one key share one fetch. Not for: knowing what a value is, how to fetch it,
 * or retrying; the fetch function owns all of that.
 *
 * Accounting: a call answered from the table without fetching (a fresh value
 * or a fresh negative entry) is a hit; a call that fetches, waits for another
 * caller's fetch, or peeks and finds nothing usable is a miss. Each caller
 * handed an expired value because a refresh failed counts once in
 * stale_served.
 *
 * A negative entry holds no value but is charged a nominal size (its entry
 * and key) against the budget; otherwise lookups of many missing names would
 * grow the table without bound, since nothing else ever evicts them.
 *
 * Values are released with ops->unref only after the lock is dropped, so an
 * unref that does real work never stalls other readers. ops->ref is called
 * with the lock held, since only then is the value sure to be alive.
 *
 * A fetch must not ask the cache for its own key: it would wait for itself.
 *
 * Budget. Least recently used entries go first while the values exceed
 * max_bytes. A value bigger than the whole budget (a folder of a million
 * items under cache_size=64M) cannot fit; dropping it would fetch it again
 * for every reader of the folder's files one by one, and the values those
 * readers bring (a document, a page) are exactly what would push it out:
 * each file would cost the folder again. So the one most recently stored
 * or served (`big`) is spared, and the budget applies to the others beside
 * it; a newer one takes its place, and the older then goes like any other.
 */
#include "batchfs/cache.h"

#include "batchfs/clocks.h"
#include "batchfs/hash.h"
#include "batchfs/hindex.h"
#include "batchfs/log.h"
#include "batchfs/lru.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum cache_flight_state {
    CACHE_FLIGHT_QUEUED,  /* waiting for a fetch thread (or a caller to run it) */
    CACHE_FLIGHT_RUNNING, /* its fetch runs */
    CACHE_FLIGHT_DONE,    /* the outcome below is final */
};

/*
 * One fetch for a key, queued or under way. Its users are its fetcher (the
 * queue, until someone runs it) and every caller blocked on it; the last one
 * to leave frees it, so it outlives its entry if the entry is removed
 * meanwhile. Parked waiters are not users: they are taken off it when it
 * ends or when they are cancelled. All fields are protected by cache->lock.
 */
struct cache_flight {
    pthread_cond_t done_cond;
    enum cache_flight_state state;
    int result;                /* 0 or a negative errno */
    void *value;               /* on success: one reference taken for each blocked user */
    unsigned users;            /* the fetcher plus its blocked waiters */
    unsigned blocked;          /* callers in cache_wait() on it */
    unsigned waiting;          /* blocked plus parked: who wants the outcome */
    bool background;           /* a refresh that nobody waits for */
    bool prefetch;             /* queued by cache_prefetch, behind the rest */
    /* Wanted by a CACHE_GET_START caller, which learns of its outcome
     * elsewhere: never called off when its parked waiters leave. */
    bool held;
    bool abandoned;            /* called off: everybody who waited gave up */
    struct cache_entry *entry; /* the entry it fetches for */
    struct cache_waiter *parked;     /* waiters to tell when done */
    struct cache_flight *queue_next; /* in the cache's queue */
    cache_fetch_fn fetch;            /* when queued: what to run */
    void *arg;                       /* ...with this, owned */
    void (*free_arg)(void *arg);
    void *cancel; /* while a fetch thread runs it: cancel_begin's handle */
};

/* All fields are protected by cache->lock. */
/* How long a stale copy is served after a failed refresh before the next
 * refresh is tried: keeps a struggling API from being asked once per read. */
#define CACHE_STALE_RETRY_S 10.0

struct cache_entry {
    char *key;
    size_t hash;
    struct cache_entry *dead_next; /* links entries awaiting release */
    struct lru_link lru;           /* in the cache's order of use */
    void *value;                   /* the cache's reference, or NULL */
    bool negative;                 /* -ENOENT remembered; value is NULL */
    size_t bytes;                  /* charged against the budget */
    double fetched_at, expires_at; /* seconds on the cache's clock */
    double retry_at;               /* after a failed refresh: serve the stale
                                      value without fetching until then */
    struct cache_flight *flight;   /* non-NULL while a fetch runs */
    bool invalidated;              /* expired by cache_expire_all: known or
                                      suspected out of date, so its next
                                      reader waits for the refresh */
};

struct cache {
    struct cache_config config; /* read-only after cache_new */
    struct cache_value_ops ops; /* read-only after cache_new */
    pthread_mutex_t lock;
    /* Everything below is protected by lock. */
    struct hindex index; /* the entries by key: refs are entry pointers */
    struct lru_list lru; /* the entries, most recently used first */
    size_t entries, bytes;
    /* The value bigger than max_bytes spared by eviction (see "Budget"
     * above), or NULL. */
    struct cache_entry *big;
    size_t waiting; /* callers in cache_wait() */
    size_t parked;  /* waiters parked on flights */
    unsigned long long hits, misses, stale_served, evictions;
    unsigned long long refreshes, refreshed, refresh_failures, cancelled, prefetches;
    /* Flights for the fetch threads: those someone waits for (or a refresh)
     * oldest first, then the prefetches, oldest first; queue_urgent_tail is
     * the last of the former (NULL: none). A read ahead of a walk must not
     * hold up an `ls` of another folder. */
    struct cache_flight *queue_head, *queue_tail, *queue_urgent_tail;
    pthread_cond_t work_cond; /* signalled when the queue grows or stopping */
    bool stopping;            /* cache_stop: nothing more is queued */
    pthread_t *threads;       /* config.fetch_threads of them, once started */
    unsigned threads_started;
};

/* cache_wait's answer when the fetch it waited for was called off: look
 * again. Never returned by cache_get. */
#define CACHE_RETRY (-ERESTART)

/* What a parked caller waited for, kept on its waiter. */
struct cache_outcome {
    struct cache_outcome *next;
    int result;
    void *value; /* one reference, on success */
    char key[];
};

/* The waiter that cache_get parks on this thread, if any. */
static _Thread_local struct cache_waiter *cache_parking;
/* It has parked: from then on the waiter belongs to its fetch, and every
 * cache_get on this thread answers CACHE_PARKED without touching it, so
 * that a caller that goes on after parking cannot answer the request too. */
static _Thread_local bool cache_parked_here;

static double cache_now(const struct cache *cache)
{
    return clocks_now(cache->config.clock, cache->config.clock_arg);
}

static bool cache_is_fresh(const struct cache_entry *entry, double now)
{
    return (entry->value || entry->negative) && now < entry->expires_at;
}

static size_t cache_negative_bytes(const struct cache_entry *entry)
{
    return sizeof(*entry) + strlen(entry->key) + 1;
}

/* hindex_eq_fn: whether the entry `ref` points to has the key. */
static bool cache_entry_eq(const void *ctx, size_t ref, const void *key)
{
    (void)ctx;
    return strcmp(((const struct cache_entry *)(uintptr_t)ref)->key, key) == 0;
}

static struct cache_entry *cache_find(struct cache *cache, const char *key, size_t hash)
{
    size_t ref = hindex_find(&cache->index, hash, cache_entry_eq, NULL, key);

    return ref == HINDEX_FREE ? NULL : (struct cache_entry *)(uintptr_t)ref;
}

/* The entry of a link of the cache's list, or NULL. */
static struct cache_entry *cache_lru_entry(struct lru_link *link)
{
    return link ? lru_entry(link, struct cache_entry, lru) : NULL;
}

/* Files `entry`, whose key is not in the table: 0, or -ENOMEM (nothing
 * changed). */
static int cache_insert(struct cache *cache, struct cache_entry *entry)
{
    struct hindex_cell *cell;
    bool found;

    if (hindex_make_room(&cache->index))
        return -ENOMEM;
    cell = hindex_probe(&cache->index, entry->hash, cache_entry_eq, NULL, entry->key,
                        &found);
    hindex_put(&cache->index, cell, entry->hash, (size_t)(uintptr_t)entry);
    lru_push_newest(&cache->lru, &entry->lru);
    cache->entries++;
    return 0;
}

/* Takes `entry` out of the table and puts it on *dead, to be released by
 * cache_release() once the lock is dropped. */
static void cache_remove(struct cache *cache, struct cache_entry *entry,
                         struct cache_entry **dead)
{
    bool found;
    struct hindex_cell *cell = hindex_probe(&cache->index, entry->hash, cache_entry_eq,
                                            NULL, entry->key, &found);

    if (found) /* it is, for every entry in the lru list */
        hindex_take(&cache->index, cell);
    lru_unlink(&cache->lru, &entry->lru);
    cache->entries--;
    cache->bytes -= entry->bytes;
    if (cache->big == entry)
        cache->big = NULL;
    entry->dead_next = *dead;
    *dead = entry;
}

/* Frees entries taken out by cache_remove(); called without the lock. */
static void cache_release(struct cache *cache, struct cache_entry *dead)
{
    struct cache_entry *next;

    for (; dead; dead = next) {
        next = dead->dead_next;
        if (dead->value)
            cache->ops.unref(dead->value);
        free(dead->key);
        free(dead);
    }
}

/* The bytes of the value spared beside the budget (see "Budget"): 0 when
 * there is none, or when `big` has shrunk within the budget since. */
static size_t cache_spared_bytes(const struct cache *cache)
{
    const struct cache_entry *big = cache->big;

    return big && cache->config.max_bytes && big->bytes > cache->config.max_bytes
               ? big->bytes
               : 0;
}

/* `entry` was just stored or served: a value bigger than the budget is
 * the one spared from now on. */
static void cache_note_big(struct cache *cache, struct cache_entry *entry)
{
    if (cache->config.max_bytes && entry->value && entry->bytes > cache->config.max_bytes)
        cache->big = entry;
}

/* Evicts least recently used entries until the budget holds beside the
 * value spared, sparing it, `keep` (the one being returned) and entries
 * with a fetch under way. */
static void cache_evict(struct cache *cache, const struct cache_entry *keep,
                        struct cache_entry **dead)
{
    struct cache_entry *victim = cache_lru_entry(cache->lru.oldest), *prev;
    size_t spared = cache_spared_bytes(cache);
    const struct cache_entry *big = spared ? cache->big : NULL;

    if (!cache->config.max_bytes)
        return;
    while (victim && cache->bytes - spared > cache->config.max_bytes) {
        prev = cache_lru_entry(victim->lru.newer);
        if (victim != keep && victim != big && !victim->flight) {
            cache_remove(cache, victim, dead);
            cache->evictions++;
        }
        victim = prev;
    }
}

static struct cache_entry *cache_entry_new(const char *key, size_t hash)
{
    size_t len = strlen(key) + 1;
    struct cache_entry *entry = calloc(1, sizeof(*entry));

    if (!entry)
        return NULL;
    entry->key = malloc(len);
    if (!entry->key) {
        free(entry);
        return NULL;
    }
    memcpy(entry->key, key, len);
    entry->hash = hash;
    return entry;
}

static struct cache_flight *cache_flight_new(void)
{
    struct cache_flight *flight = calloc(1, sizeof(*flight));

    if (!flight)
        return NULL;
    if (pthread_cond_init(&flight->done_cond, NULL) != 0) {
        free(flight);
        return NULL;
    }
    flight->users = 1;
    return flight;
}

static void cache_flight_leave(struct cache_flight *flight)
{
    if (--flight->users > 0)
        return;
    pthread_cond_destroy(&flight->done_cond);
    free(flight);
}

/* Errors that say the value is gone or may not be read, or that the fetch
 * was called off, are answers: serving an old copy would hide them. */
static bool cache_error_is_transient(int rc)
{
    return rc != -ENOENT && rc != -EACCES && rc != -ENOMEM && rc != -ECANCELED;
}

static bool cache_may_serve_stale(const struct cache *cache,
                                  const struct cache_entry *entry, int rc, double now)
{
    if (!cache->config.stale_if_error || !entry->value || !cache_error_is_transient(rc))
        return false;
    return now - entry->expires_at <= cache->config.max_stale_s;
}

/* Within max_stale of its expiry, a value is served at once while a fetch
 * thread refreshes it (stale-while-revalidate): stale_if_error's promise
 * that an expired copy beats no answer, without first waiting for the
 * refresh to fail. */
static bool cache_may_revalidate(const struct cache *cache,
                                 const struct cache_entry *entry, unsigned flags,
                                 double now)
{
    if (!cache->config.fetch_threads || !cache->config.stale_if_error || !entry->value ||
        entry->invalidated || (flags & CACHE_GET_REFRESH) || cache_is_fresh(entry, now))
        return false;
    /* A value meant to be fetched on every access (a ttl of 0) is never
     * served in its refresh's place. */
    if (entry->expires_at <= entry->fetched_at)
        return false;
    return now - entry->expires_at <= cache->config.max_stale_s;
}

static void *cache_fetch_thread(void *arg);

struct cache *cache_new(const struct cache_config *config,
                        const struct cache_value_ops *ops)
{
    struct cache *cache = calloc(1, sizeof(*cache));
    bool locked = false, cond = false;

    if (!cache)
        return NULL;
    cache->config = *config;
    cache->ops = *ops;
    cache->index = (struct hindex)HINDEX_INIT;
    if (pthread_mutex_init(&cache->lock, NULL) != 0)
        goto fail;
    locked = true;
    if (pthread_cond_init(&cache->work_cond, NULL) != 0)
        goto fail;
    cond = true;
    if (config->fetch_threads) {
        cache->threads = calloc(config->fetch_threads, sizeof(*cache->threads));
        if (!cache->threads)
            goto fail;
        for (; cache->threads_started < config->fetch_threads; cache->threads_started++)
            if (pthread_create(&cache->threads[cache->threads_started], NULL,
                               cache_fetch_thread, cache) != 0)
                goto fail;
    }
    return cache;

fail:
    if (cache->threads_started) {
        cache_stop(cache);
    }
    free(cache->threads);
    if (cond)
        pthread_cond_destroy(&cache->work_cond);
    if (locked)
        pthread_mutex_destroy(&cache->lock);
    hindex_free(&cache->index);
    free(cache);
    return NULL;
}

/* Waits, with the lock held, for another caller's fetch and takes its
 * outcome; the reference in flight->value was taken for this caller. */
static int cache_wait(struct cache *cache, struct cache_flight *flight, void **value)
{
    int rc;

    flight->users++;
    flight->blocked++;
    flight->waiting++;
    cache->waiting++;
    while (flight->state != CACHE_FLIGHT_DONE)
        pthread_cond_wait(&flight->done_cond, &cache->lock);
    cache->waiting--;
    rc = flight->result;
    if (rc == 0)
        *value = flight->value;
    cache_flight_leave(flight);
    return rc;
}

/* Puts a fetched value into `entry`; the replaced value, if any, goes to
 * *old_value for release after the lock is dropped. */
static void cache_store(struct cache *cache, struct cache_entry *entry, void *value,
                        size_t bytes, double ttl_s, double now, void **old_value)
{
    *old_value = entry->value;
    cache->bytes -= entry->bytes;
    entry->value = value;
    entry->negative = false;
    entry->bytes = bytes;
    cache->bytes += bytes;
    entry->fetched_at = now;
    /* A ttl of zero or less (or NaN) means expired at once: the callers of
     * this fetch still get the value, later ones fetch again. */
    entry->expires_at = ttl_s > 0 ? now + ttl_s : now;
    entry->retry_at = 0;
    entry->invalidated = false;
}

/* Remembers that `entry`'s key does not exist, dropping any old value. */
static void cache_store_negative(struct cache *cache, struct cache_entry *entry,
                                 double now, void **old_value)
{
    *old_value = entry->value;
    entry->value = NULL;
    cache->bytes -= entry->bytes;
    entry->bytes = 0;
    entry->negative = false;
    if (cache->config.negative_ttl_s > 0) {
        entry->negative = true;
        entry->bytes = cache_negative_bytes(entry);
        cache->bytes += entry->bytes;
        entry->fetched_at = now;
        entry->expires_at = now + cache->config.negative_ttl_s;
    }
}

/* With the lock held: hands out the entry's value, counted as a hit. */
static void cache_serve(struct cache *cache, struct cache_entry *entry, bool stale,
                        void **value)
{
    cache->hits++;
    if (stale)
        cache->stale_served++;
    lru_touch(&cache->lru, &entry->lru);
    cache_note_big(cache, entry);
    cache->ops.ref(entry->value);
    *value = entry->value;
}

static void cache_queue_push(struct cache *cache, struct cache_flight *flight)
{
    struct cache_flight **link;

    if (flight->prefetch) {
        link = cache->queue_tail ? &cache->queue_tail->queue_next : &cache->queue_head;
    } else {
        /* After the other urgent flights, before every prefetch. */
        link = cache->queue_urgent_tail ? &cache->queue_urgent_tail->queue_next
                                        : &cache->queue_head;
        cache->queue_urgent_tail = flight;
    }
    flight->queue_next = *link;
    *link = flight;
    if (!flight->queue_next)
        cache->queue_tail = flight;
    pthread_cond_signal(&cache->work_cond);
}

static void cache_queue_remove(struct cache *cache, struct cache_flight *flight)
{
    struct cache_flight **link = &cache->queue_head, *prev = NULL;

    while (*link != flight) {
        prev = *link;
        link = &(*link)->queue_next;
    }
    *link = flight->queue_next;
    if (cache->queue_tail == flight)
        cache->queue_tail = prev;
    /* The urgent flights come first: the one before is urgent too. */
    if (cache->queue_urgent_tail == flight)
        cache->queue_urgent_tail = prev;
    flight->queue_next = NULL;
}

/* With the lock held: a new flight for `entry` (made for `key` if NULL),
 * or NULL on no memory. */
static struct cache_flight *cache_flight_start(struct cache *cache, const char *key,
                                               size_t hash, struct cache_entry *entry)
{
    struct cache_flight *flight = cache_flight_new();

    if (!flight)
        return NULL;
    if (!entry) {
        entry = cache_entry_new(key, hash);
        if (!entry || cache_insert(cache, entry)) {
            if (entry) {
                free(entry->key);
                free(entry);
            }
            cache_flight_leave(flight);
            return NULL;
        }
    }
    entry->flight = flight;
    flight->entry = entry;
    return flight;
}

/* With the lock held: queues `flight` for the fetch threads with a copy of
 * the fetcher's argument. -ENOMEM when it cannot be copied. */
static int cache_flight_queue(struct cache *cache, struct cache_flight *flight,
                              const struct cache_fetcher *fetcher)
{
    flight->arg = fetcher->copy_arg(fetcher->arg);
    if (!flight->arg)
        return -ENOMEM;
    flight->fetch = fetcher->fetch;
    flight->free_arg = fetcher->free_arg;
    flight->state = CACHE_FLIGHT_QUEUED;
    cache_queue_push(cache, flight);
    return 0;
}

/* With the lock held: gives up a flight that never ran (no memory to queue
 * it, or nobody waits for it any more), taking its entry out if that holds
 * nothing: such an entry holds no value, so it is freed at once. */
static void cache_flight_drop(struct cache *cache, struct cache_flight *flight)
{
    struct cache_entry *entry = flight->entry, *dead = NULL;

    entry->flight = NULL;
    if (!entry->value && !entry->negative)
        cache_remove(cache, entry, &dead);
    cache_release(cache, dead);
    cache_flight_leave(flight);
}

/* With the lock held: parks the calling thread's waiter on `flight`. */
static int cache_park(struct cache *cache, struct cache_flight *flight,
                      struct cache_waiter *waiter, const char *key)
{
    size_t len = strlen(key) + 1;
    struct cache_outcome *pending = malloc(sizeof(*pending) + len);

    if (!pending)
        return -ENOMEM;
    if (flight->prefetch && flight->state == CACHE_FLIGHT_QUEUED) {
        /* Someone waits for it now: to the front with the others. */
        cache_queue_remove(cache, flight);
        flight->prefetch = false;
        cache_queue_push(cache, flight);
    }
    memset(pending, 0, sizeof(*pending));
    memcpy(pending->key, key, len);
    waiter->pending = pending;
    waiter->flight = flight;
    waiter->next = flight->parked;
    flight->parked = waiter;
    flight->waiting++;
    cache->parked++;
    return CACHE_PARKED;
}

/* With the lock held: the outcome `waiter` was handed for `key`, or NULL. */
static struct cache_outcome *cache_outcome_find(struct cache_waiter *waiter,
                                                const char *key)
{
    for (struct cache_outcome *o = waiter->outcomes; o; o = o->next)
        if (strcmp(o->key, key) == 0)
            return o;
    return NULL;
}

/* What a lookup decided the caller must do once it returns 0. */
enum cache_action {
    CACHE_ANSWERED, /* *value is set */
    CACHE_FETCH,    /* run the flight's fetch on this thread */
};

/*
 * With the lock held: answers from the table if it can. Otherwise, in
 * *flight_out, the flight the caller must run on its own thread (one made
 * for it, or a queued one it takes over); or, for a parking caller, parks
 * it (CACHE_PARKED).
 */
static int cache_lookup(struct cache *cache, const char *key, size_t hash, unsigned flags,
                        const struct cache_fetcher *fetcher, struct cache_waiter *waiter,
                        void **value, struct cache_flight **flight_out)
{
    struct cache_entry *entry = cache_find(cache, key, hash);
    struct cache_flight *flight;
    double now = cache_now(cache);
    bool may_queue = cache->config.fetch_threads && fetcher && fetcher->copy_arg;
    int rc = 0;

    if (flags & CACHE_GET_PEEK) {
        if (entry && entry->value && cache_is_fresh(entry, now)) {
            cache_serve(cache, entry, false, value);
        } else {
            cache->misses++;
            rc = -ENOENT;
        }
        return rc;
    }
    if (entry && cache_may_revalidate(cache, entry, flags, now) && !entry->flight &&
        now >= entry->retry_at && may_queue && !cache->stopping) {
        /* Refresh in the background; failing to start one only means the
         * copy is served once more. */
        flight = cache_flight_start(cache, key, hash, entry);
        if (flight) {
            flight->background = true;
            if (cache_flight_queue(cache, flight, fetcher) == 0)
                cache->refreshes++;
            else
                cache_flight_drop(cache, flight);
        }
    }
    if (entry && cache_may_revalidate(cache, entry, flags, now)) {
        cache_serve(cache, entry, true, value);
        return 0;
    }
    /* A fetch already under way is as new as a refresh could be. */
    if (entry && entry->flight) {
        flight = entry->flight;
        cache->misses++;
        if (flags & CACHE_GET_START) {
            flight->held = true;
            if (flight->prefetch && flight->state == CACHE_FLIGHT_QUEUED) {
                /* Someone wants it now: to the front with the others. */
                cache_queue_remove(cache, flight);
                flight->prefetch = false;
                cache_queue_push(cache, flight);
            }
            return flight->state == CACHE_FLIGHT_QUEUED ? CACHE_PARKED : CACHE_RUNNING;
        }
        if (waiter) {
            if (waiter->cancelled)
                return -EINTR;
            return cache_park(cache, flight, waiter, key);
        }
        if (flight->state == CACHE_FLIGHT_QUEUED) {
            /* Nobody runs it yet: this caller would wait for a free fetch
             * thread, which may be waiting for this very caller. */
            cache_queue_remove(cache, flight);
            flight->state = CACHE_FLIGHT_RUNNING;
            *flight_out = flight;
            return 0;
        }
        return cache_wait(cache, flight, value);
    }
    /* A refresh failed a moment ago: every caller in between gets the copy
     * already being served, rather than one more doomed fetch each. */
    if (entry && entry->value && !(flags & CACHE_GET_REFRESH) &&
        !cache_is_fresh(entry, now) && now < entry->retry_at) {
        cache_serve(cache, entry, true, value);
        return 0;
    }
    if (entry && !(flags & CACHE_GET_REFRESH) && cache_is_fresh(entry, now)) {
        if (entry->negative) {
            cache->hits++;
            lru_touch(&cache->lru, &entry->lru);
            return -ENOENT;
        }
        cache_serve(cache, entry, false, value);
        return 0;
    }
    cache->misses++;
    if (waiter && waiter->cancelled)
        return -EINTR;
    if ((waiter || (flags & CACHE_GET_START)) && cache->stopping)
        return -ECANCELED;
    if ((flags & CACHE_GET_START) && !may_queue)
        return -EOPNOTSUPP;
    flight = cache_flight_start(cache, key, hash, entry);
    if (!flight)
        return -ENOMEM;
    if (flags & CACHE_GET_START) {
        flight->held = true;
        rc = cache_flight_queue(cache, flight, fetcher);
        if (rc) {
            cache_flight_drop(cache, flight);
            return rc;
        }
        return CACHE_PARKED;
    }
    if (waiter) {
        rc = cache_flight_queue(cache, flight, fetcher);
        if (!rc)
            rc = cache_park(cache, flight, waiter, key);
        if (rc != CACHE_PARKED) {
            if (flight->state == CACHE_FLIGHT_QUEUED)
                cache_queue_remove(cache, flight);
            cache_flight_drop(cache, flight);
        }
        return rc;
    }
    flight->state = CACHE_FLIGHT_RUNNING;
    *flight_out = flight;
    return 0;
}

/* What finishing a flight leaves to do once the lock is dropped. */
struct cache_done {
    void *old_value;           /* a replaced value, to release */
    struct cache_entry *dead;  /* entries taken out, to release */
    struct cache_waiter *told; /* parked waiters, to tell */
    int stale_error;           /* a stale copy was served instead of this */
    double stale_age;
};

/*
 * With the lock held: records the outcome of `flight`'s fetch (rc and, on
 * success, the value, bytes and ttl the fetch gave), shares it with its
 * blocked and parked waiters, and, if `caller` is set, hands one reference
 * to *caller. Returns the outcome's errno.
 */
static int cache_finish(struct cache *cache, struct cache_flight *flight, int rc,
                        void *fetched, size_t bytes, double ttl_s, void **caller,
                        struct cache_done *done)
{
    struct cache_entry *entry = flight->entry;
    double now = cache_now(cache);
    void *served = NULL;
    unsigned parked = 0;

    if (rc == 0 && !fetched)
        rc = -EIO;
    if (rc > 0 || rc == CACHE_PARKED || rc == CACHE_RETRY)
        rc = -EIO;
    entry->flight = NULL;
    for (struct cache_waiter *w = flight->parked; w; w = w->next)
        parked++;
    if (rc && flight->background)
        cache->refresh_failures++;

    if (rc == 0) {
        cache_store(cache, entry, fetched, bytes, ttl_s, now, &done->old_value);
        served = fetched;
        if (flight->background)
            cache->refreshed++;
    } else if (cache_may_serve_stale(cache, entry, rc, now)) {
        served = entry->value;
        entry->retry_at = now + CACHE_STALE_RETRY_S;
        done->stale_error = rc;
        done->stale_age = now - entry->fetched_at;
        cache->stale_served += flight->blocked + parked + (caller ? 1 : 0);
    } else if (rc == -ENOENT) {
        cache_store_negative(cache, entry, now, &done->old_value);
    }

    /* Share the outcome: one reference for each blocked waiter, each parked
     * one and the caller, taken now while the entry still holds the value.
     * A fetch called off for want of waiters is no answer for those who
     * came to it since. */
    flight->result = served ? 0 : rc;
    if (flight->abandoned && rc == -ECANCELED && !served)
        flight->result = CACHE_RETRY;
    flight->value = served;
    if (served)
        for (unsigned i = 0; i < flight->blocked + parked + (caller ? 1 : 0); i++)
            cache->ops.ref(served);
    flight->state = CACHE_FLIGHT_DONE;
    pthread_cond_broadcast(&flight->done_cond);
    if (caller)
        *caller = served;
    for (struct cache_waiter *w = flight->parked; w; w = w->next) {
        w->flight = NULL;
        cache->parked--;
        if (flight->result == CACHE_RETRY) {
            /* No outcome: asked again, it fetches anew. */
            free(w->pending);
            w->pending = NULL;
            continue;
        }
        w->pending->result = flight->result;
        w->pending->value = served;
        w->pending->next = w->outcomes;
        w->outcomes = w->pending;
        w->pending = NULL;
    }
    done->told = flight->parked;
    flight->parked = NULL;

    if (!entry->value && !entry->negative) {
        cache_remove(cache, entry, &done->dead);
    } else {
        /* A value bigger than the whole budget is kept, beside the
         * budget, rather than dropped (see "Budget"). */
        lru_touch(&cache->lru, &entry->lru);
        cache_note_big(cache, entry);
        cache_evict(cache, entry, &done->dead);
    }
    return flight->result;
}

/* Without the lock: what cache_finish left to do. `holding`: the thread
 * held back the fetch's last failure line (log_hold), which the warning
 * that a cached copy is served then says in its place: one failure, one
 * line. */
static void cache_done_release(struct cache *cache, const char *key,
                               struct cache_done *done, bool holding)
{
    struct cache_waiter *w, *next;

    if (done->stale_error) {
        char reason[1024];
        const char *why = reason;

        if (!holding || !log_release(reason, sizeof(reason)))
            why = strerror_r(-done->stale_error, reason, sizeof(reason));
        log_warning("serving cached copy of %s from %.0f s ago: %s", key, done->stale_age,
                    why);
    } else if (holding) {
        log_release(NULL, 0);
    }
    if (done->old_value)
        cache->ops.unref(done->old_value);
    cache_release(cache, done->dead);
    /* The waiter may be freed by its ready function: read next first. */
    for (w = done->told; w; w = next) {
        next = w->next;
        w->next = NULL;
        w->ready(w);
    }
}

/* Runs queued flights until the cache stops. */
static void *cache_fetch_thread(void *arg)
{
    struct cache *cache = arg;

    pthread_mutex_lock(&cache->lock);
    for (;;) {
        struct cache_flight *flight;
        struct cache_done done = {0};
        void *fetched = NULL, *flight_arg;
        void (*free_arg)(void *);
        size_t bytes = 0;
        double ttl_s = 0;
        bool holding;
        char *key;
        int rc;

        while (!cache->queue_head && !cache->stopping)
            pthread_cond_wait(&cache->work_cond, &cache->lock);
        flight = cache->queue_head;
        if (!flight)
            break;
        cache_queue_remove(cache, flight);
        flight->state = CACHE_FLIGHT_RUNNING;
        /* The entry, and so its key, stays while its flight is set. */
        key = flight->entry->key;
        flight_arg = flight->arg;
        free_arg = flight->free_arg;
        flight->arg = NULL;
        if (cache->config.cancel_begin)
            flight->cancel = cache->config.cancel_begin(cache->config.cancel_arg);
        pthread_mutex_unlock(&cache->lock);
        holding = log_hold();
        rc = flight->fetch(flight_arg, key, &fetched, &bytes, &ttl_s);
        free_arg(flight_arg);
        key = strdup(key); /* for the warning, once the entry may be gone */
        pthread_mutex_lock(&cache->lock);
        /* Under the lock, so that no fire is under way or comes later. */
        if (flight->cancel)
            cache->config.cancel_end(flight->cancel);
        flight->cancel = NULL;
        cache_finish(cache, flight, rc, fetched, bytes, ttl_s, NULL, &done);
        cache_flight_leave(flight);
        pthread_mutex_unlock(&cache->lock);
        cache_done_release(cache, key ? key : "a cached listing", &done, holding);
        free(key);
        pthread_mutex_lock(&cache->lock);
    }
    pthread_mutex_unlock(&cache->lock);
    return NULL;
}

void cache_waiter_init(struct cache_waiter *waiter, struct cache *cache,
                       void (*ready)(struct cache_waiter *waiter))
{
    memset(waiter, 0, sizeof(*waiter));
    waiter->cache = cache;
    waiter->ready = ready;
}

void cache_waiter_reset(struct cache_waiter *waiter)
{
    struct cache_outcome *o, *next;

    for (o = waiter->outcomes; o; o = next) {
        next = o->next;
        if (o->value)
            waiter->cache->ops.unref(o->value);
        free(o);
    }
    waiter->outcomes = NULL;
    free(waiter->pending);
    waiter->pending = NULL;
}

struct cache_waiter *cache_park_on(struct cache_waiter *waiter)
{
    struct cache_waiter *previous = cache_parking;

    cache_parking = waiter;
    cache_parked_here = false;
    return previous;
}

/* With the lock held: a flight nobody waits for any more is dropped if it
 * has not started, and called off if it has; *arg and *free_arg get the
 * argument of one dropped, to free once the lock is let go. */
static void cache_flight_unwanted_locked(struct cache *cache, struct cache_flight *flight,
                                         void **arg, void (**free_arg)(void *))
{
    if (flight->waiting != 0 || flight->background || flight->held)
        return;
    if (flight->state == CACHE_FLIGHT_QUEUED) {
        cache_queue_remove(cache, flight);
        *arg = flight->arg;
        *free_arg = flight->free_arg;
        cache_flight_drop(cache, flight);
        cache->cancelled++;
    } else if (flight->cancel && !flight->abandoned) {
        flight->abandoned = true;
        cache->config.cancel_fire(flight->cancel);
        cache->cancelled++;
    }
}

bool cache_waiter_cancel(struct cache_waiter *waiter)
{
    struct cache *cache = waiter->cache;
    struct cache_flight *flight;
    void *arg = NULL;
    void (*free_arg)(void *) = NULL;
    bool parked = false;

    pthread_mutex_lock(&cache->lock);
    waiter->cancelled = true;
    flight = waiter->flight;
    if (flight) {
        struct cache_waiter **link = &flight->parked;

        while (*link != waiter)
            link = &(*link)->next;
        *link = waiter->next;
        waiter->next = NULL;
        waiter->flight = NULL;
        free(waiter->pending);
        waiter->pending = NULL;
        flight->waiting--;
        cache->parked--;
        parked = true;
        cache_flight_unwanted_locked(cache, flight, &arg, &free_arg);
    }
    pthread_mutex_unlock(&cache->lock);
    if (free_arg)
        free_arg(arg);
    return parked;
}

bool cache_let_go(struct cache *cache, const char *key)
{
    struct cache_entry *entry;
    void *arg = NULL;
    void (*free_arg)(void *) = NULL;
    bool called_off = false;

    pthread_mutex_lock(&cache->lock);
    entry = cache_find(cache, key, (size_t)hash_key_str(key));
    if (entry && entry->flight && entry->flight->held) {
        struct cache_flight *flight = entry->flight;
        /* Only a running flight outlives the call: a queued one is freed. */
        bool running = flight->state == CACHE_FLIGHT_RUNNING && !flight->abandoned;

        flight->held = false;
        cache_flight_unwanted_locked(cache, flight, &arg, &free_arg);
        called_off = running && flight->abandoned;
    }
    pthread_mutex_unlock(&cache->lock);
    if (free_arg)
        free_arg(arg);
    return called_off;
}

void cache_stop(struct cache *cache)
{
    struct cache_done done = {0};
    struct cache_flight *flight;
    void *arg;
    void (*free_arg)(void *);

    pthread_mutex_lock(&cache->lock);
    cache->stopping = true;
    pthread_cond_broadcast(&cache->work_cond);
    /* Fetches nobody started end here, one at a time, so that each one's
     * waiters are told without the lock. */
    while ((flight = cache->queue_head)) {
        cache_queue_remove(cache, flight);
        flight->state = CACHE_FLIGHT_RUNNING;
        arg = flight->arg;
        free_arg = flight->free_arg;
        flight->arg = NULL;
        memset(&done, 0, sizeof(done));
        cache_finish(cache, flight, -ECANCELED, NULL, 0, 0, NULL, &done);
        cache_flight_leave(flight);
        pthread_mutex_unlock(&cache->lock);
        free_arg(arg);
        cache_done_release(cache, "", &done, false);
        pthread_mutex_lock(&cache->lock);
    }
    pthread_mutex_unlock(&cache->lock);
    for (unsigned i = 0; i < cache->threads_started; i++)
        pthread_join(cache->threads[i], NULL);
    cache->threads_started = 0;
}

int cache_get_with(struct cache *cache, const char *key, unsigned flags,
                   const struct cache_fetcher *fetcher, void **value)
{
    struct cache_waiter *waiter = cache_parking;
    struct cache_flight *flight = NULL;
    struct cache_done done = {0};
    bool holding;
    struct cache_outcome *outcome;
    void *fetched = NULL;
    size_t bytes = 0, hash = (size_t)hash_key_str(key);
    double ttl_s = 0;
    cache_fetch_fn fetch;
    void *arg, *owned_arg = NULL;
    void (*free_arg)(void *) = NULL;
    int rc;

    *value = NULL;
    if (waiter && cache_parked_here)
        return CACHE_PARKED;
    if (!(flags & CACHE_GET_PEEK) && (!fetcher || !fetcher->fetch))
        return -EINVAL;
    /* Only a fetch thread can run what a parked caller needs; a caller
     * that starts a fetch does not park. */
    if (flags & CACHE_GET_START)
        waiter = NULL;
    if (waiter && (waiter->cache != cache || !cache->config.fetch_threads || !fetcher ||
                   !fetcher->copy_arg))
        waiter = NULL;
    pthread_mutex_lock(&cache->lock);
    outcome =
        waiter && !(flags & CACHE_GET_PEEK) ? cache_outcome_find(waiter, key) : NULL;
    if (outcome) {
        /* Back from parking on this key: the outcome it waited for. */
        if (outcome->value)
            cache->ops.ref(outcome->value);
        *value = outcome->value;
        pthread_mutex_unlock(&cache->lock);
        return outcome->result;
    }
    do
        rc = cache_lookup(cache, key, hash, flags, fetcher, waiter, value, &flight);
    while (rc == CACHE_RETRY);
    if (rc || !flight) {
        pthread_mutex_unlock(&cache->lock);
        if (rc == CACHE_PARKED)
            cache_parked_here = true;
        return rc;
    }

    /* The entry cannot go away while its flight is set: eviction, clearing
     * and other callers all leave fetching entries alone. A queued flight
     * taken over brings its own copy of the argument. */
    if (flight->arg) {
        owned_arg = flight->arg;
        free_arg = flight->free_arg;
        flight->arg = NULL;
        fetch = flight->fetch;
        arg = owned_arg;
    } else {
        fetch = fetcher->fetch;
        arg = fetcher->arg;
    }
    pthread_mutex_unlock(&cache->lock);
    holding = log_hold();
    rc = fetch(arg, key, &fetched, &bytes, &ttl_s);
    if (free_arg)
        free_arg(owned_arg);
    pthread_mutex_lock(&cache->lock);
    rc = cache_finish(cache, flight, rc, fetched, bytes, ttl_s, value, &done);
    cache_flight_leave(flight);
    pthread_mutex_unlock(&cache->lock);
    cache_done_release(cache, key, &done, holding);
    return rc;
}

int cache_prefetch(struct cache *cache, const char *key,
                   const struct cache_fetcher *fetcher)
{
    size_t hash = (size_t)hash_key_str(key);
    struct cache_entry *entry;
    struct cache_flight *flight;
    int rc = 0;

    if (!fetcher || !fetcher->fetch || !fetcher->copy_arg || !cache->config.fetch_threads)
        return -EOPNOTSUPP;
    pthread_mutex_lock(&cache->lock);
    entry = cache_find(cache, key, hash);
    if (cache->stopping) {
        rc = -ECANCELED;
    } else if (!entry || (!entry->flight && !cache_is_fresh(entry, cache_now(cache)))) {
        flight = cache_flight_start(cache, key, hash, entry);
        if (!flight) {
            rc = -ENOMEM;
        } else {
            flight->prefetch = true;
            rc = cache_flight_queue(cache, flight, fetcher);
            if (rc)
                cache_flight_drop(cache, flight);
            else
                cache->prefetches++;
        }
    }
    pthread_mutex_unlock(&cache->lock);
    return rc;
}

int cache_get(struct cache *cache, const char *key, unsigned flags, cache_fetch_fn fetch,
              void *arg, void **value)
{
    struct cache_fetcher fetcher = {.fetch = fetch, .arg = arg};

    return cache_get_with(cache, key, flags, &fetcher, value);
}

/* With the lock held: the entry is out of date; its next reader waits
 * for the refresh. */
static void cache_entry_expire(struct cache_entry *entry, double now)
{
    if (entry->expires_at > now)
        entry->expires_at = now;
    entry->retry_at = 0; /* asked for fresh data: try again at once */
    entry->invalidated = true;
}

void cache_expire_all(struct cache *cache)
{
    double now;

    pthread_mutex_lock(&cache->lock);
    now = cache_now(cache);
    for (struct cache_entry *entry = cache_lru_entry(cache->lru.newest); entry;
         entry = cache_lru_entry(entry->lru.older))
        cache_entry_expire(entry, now);
    pthread_mutex_unlock(&cache->lock);
}

void cache_expire(struct cache *cache, const char *key)
{
    struct cache_entry *entry;

    pthread_mutex_lock(&cache->lock);
    entry = cache_find(cache, key, (size_t)hash_key_str(key));
    if (entry)
        cache_entry_expire(entry, cache_now(cache));
    pthread_mutex_unlock(&cache->lock);
}

void cache_clear(struct cache *cache)
{
    struct cache_entry *entry, *next, *dead = NULL;

    pthread_mutex_lock(&cache->lock);
    for (entry = cache_lru_entry(cache->lru.newest); entry; entry = next) {
        next = cache_lru_entry(entry->lru.older);
        if (!entry->flight)
            cache_remove(cache, entry, &dead);
    }
    pthread_mutex_unlock(&cache->lock);
    cache_release(cache, dead);
}

void cache_get_stats(struct cache *cache, struct cache_stats *out)
{
    pthread_mutex_lock(&cache->lock);
    out->hits = cache->hits;
    out->misses = cache->misses;
    out->stale_served = cache->stale_served;
    out->evictions = cache->evictions;
    out->entries = cache->entries;
    out->bytes = cache->bytes;
    out->spared_bytes = cache_spared_bytes(cache);
    out->waiting = cache->waiting;
    out->parked = cache->parked;
    out->refreshes = cache->refreshes;
    out->prefetches = cache->prefetches;
    out->refreshed = cache->refreshed;
    out->refresh_failures = cache->refresh_failures;
    out->cancelled = cache->cancelled;
    pthread_mutex_unlock(&cache->lock);
}

void cache_free(struct cache *cache)
{
    struct cache_entry *entry, *next;

    if (!cache)
        return;
    cache_stop(cache);
    for (entry = cache_lru_entry(cache->lru.newest); entry; entry = next) {
        next = cache_lru_entry(entry->lru.older);
        if (entry->value)
            cache->ops.unref(entry->value);
        free(entry->key);
        free(entry);
    }
    free(cache->threads);
    hindex_free(&cache->index);
    pthread_cond_destroy(&cache->work_cond);
    pthread_mutex_destroy(&cache->lock);
    free(cache);
}
