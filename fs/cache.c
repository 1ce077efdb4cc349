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
 */
#include "batchfs/cache.h"

#include "batchfs/log.h"
#include "batchfs/lru.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CACHE_INITIAL_BUCKETS 64

/*
 * One fetch under way for a key. The fetcher and every caller waiting on it
 * are its users; the last one to leave frees it, so it outlives its entry if
 * the entry is removed meanwhile. All fields are protected by cache->lock.
 */
struct cache_flight {
    pthread_cond_t done_cond;
    bool done;      /* the outcome below is final */
    int result;     /* 0 or a negative errno */
    void *value;    /* on success: one reference taken for each user */
    unsigned users; /* the fetcher plus its waiters */
};

/* All fields are protected by cache->lock. */
/* How long a stale copy is served after a failed refresh before the next
 * refresh is tried: keeps a struggling API from being asked once per read. */
#define CACHE_STALE_RETRY_S 10.0

struct cache_entry {
    char *key;
    size_t hash;
    struct cache_entry *bucket_next; /* also links entries awaiting release */
    struct lru_link lru;             /* in the cache's order of use */
    void *value;                     /* the cache's reference, or NULL */
    bool negative;                   /* -ENOENT remembered; value is NULL */
    size_t bytes;                    /* charged against the budget */
    double fetched_at, expires_at;   /* seconds on the cache's clock */
    double retry_at;                 /* after a failed refresh: serve the stale
                                        value without fetching until then */
    struct cache_flight *flight;     /* non-NULL while a fetch runs */
};

struct cache {
    struct cache_config config; /* read-only after cache_new */
    struct cache_value_ops ops; /* read-only after cache_new */
    pthread_mutex_t lock;
    /* Everything below is protected by lock. */
    struct cache_entry **buckets;
    size_t bucket_count;          /* a power of two */
    struct lru_list lru; /* the entries, most recently used first */
    size_t entries, bytes;
    size_t waiting; /* callers in cache_wait() */
    unsigned long long hits, misses, stale_served, evictions;
};

static double cache_now(const struct cache *cache)
{
    struct timespec ts;

    if (cache->config.clock)
        return cache->config.clock(cache->config.clock_arg);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* FNV-1a: keys are short paths and ids; this spreads them well enough. */
static size_t cache_hash(const char *key)
{
    uint64_t h = 14695981039346656037ULL;

    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return (size_t)h;
}

static bool cache_is_fresh(const struct cache_entry *entry, double now)
{
    return (entry->value || entry->negative) && now < entry->expires_at;
}

static size_t cache_negative_bytes(const struct cache_entry *entry)
{
    return sizeof(*entry) + strlen(entry->key) + 1;
}

static struct cache_entry *cache_find(struct cache *cache, const char *key, size_t hash)
{
    struct cache_entry *entry = cache->buckets[hash & (cache->bucket_count - 1)];

    for (; entry; entry = entry->bucket_next)
        if (entry->hash == hash && strcmp(entry->key, key) == 0)
            return entry;
    return NULL;
}

/* The entry of a link of the cache's list, or NULL. */
static struct cache_entry *cache_lru_entry(struct lru_link *link)
{
    return link ? lru_entry(link, struct cache_entry, lru) : NULL;
}

/* Doubles the bucket array. Failing to grow only costs speed, so an
 * allocation failure here is ignored. */
static void cache_grow(struct cache *cache)
{
    size_t count = cache->bucket_count * 2;
    struct cache_entry **buckets;

    if (count < cache->bucket_count || count > SIZE_MAX / sizeof(*buckets))
        return;
    buckets = calloc(count, sizeof(*buckets));
    if (!buckets)
        return;
    for (size_t i = 0; i < cache->bucket_count; i++) {
        struct cache_entry *entry = cache->buckets[i], *next;

        for (; entry; entry = next) {
            next = entry->bucket_next;
            entry->bucket_next = buckets[entry->hash & (count - 1)];
            buckets[entry->hash & (count - 1)] = entry;
        }
    }
    free(cache->buckets);
    cache->buckets = buckets;
    cache->bucket_count = count;
}

static void cache_insert(struct cache *cache, struct cache_entry *entry)
{
    size_t slot;

    if (cache->entries >= cache->bucket_count)
        cache_grow(cache);
    slot = entry->hash & (cache->bucket_count - 1);
    entry->bucket_next = cache->buckets[slot];
    cache->buckets[slot] = entry;
    lru_push_newest(&cache->lru, &entry->lru);
    cache->entries++;
}

/* Takes `entry` out of the table and puts it on *dead, to be released by
 * cache_release() once the lock is dropped. */
static void cache_remove(struct cache *cache, struct cache_entry *entry,
                         struct cache_entry **dead)
{
    struct cache_entry **link = &cache->buckets[entry->hash & (cache->bucket_count - 1)];

    while (*link != entry)
        link = &(*link)->bucket_next;
    *link = entry->bucket_next;
    lru_unlink(&cache->lru, &entry->lru);
    cache->entries--;
    cache->bytes -= entry->bytes;
    entry->bucket_next = *dead;
    *dead = entry;
}

/* Frees entries taken out by cache_remove(); called without the lock. */
static void cache_release(struct cache *cache, struct cache_entry *dead)
{
    struct cache_entry *next;

    for (; dead; dead = next) {
        next = dead->bucket_next;
        if (dead->value)
            cache->ops.unref(dead->value);
        free(dead->key);
        free(dead);
    }
}

/* Evicts least recently used entries until the budget holds, sparing
 * `keep` (the one being returned) and entries with a fetch under way. */
static void cache_evict(struct cache *cache, const struct cache_entry *keep,
                        struct cache_entry **dead)
{
    struct cache_entry *victim = cache_lru_entry(cache->lru.oldest), *prev;

    if (!cache->config.max_bytes)
        return;
    while (victim && cache->bytes > cache->config.max_bytes) {
        prev = cache_lru_entry(victim->lru.newer);
        if (victim != keep && !victim->flight) {
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

struct cache *cache_new(const struct cache_config *config,
                        const struct cache_value_ops *ops)
{
    struct cache *cache = calloc(1, sizeof(*cache));

    if (!cache)
        return NULL;
    cache->config = *config;
    cache->ops = *ops;
    cache->bucket_count = CACHE_INITIAL_BUCKETS;
    cache->buckets = calloc(cache->bucket_count, sizeof(*cache->buckets));
    if (!cache->buckets)
        goto fail;
    if (pthread_mutex_init(&cache->lock, NULL) != 0)
        goto fail;
    return cache;

fail:
    free(cache->buckets);
    free(cache);
    return NULL;
}

/* Waits, with the lock held, for another caller's fetch and takes its
 * outcome; the reference in flight->value was taken for this caller. */
static int cache_wait(struct cache *cache, struct cache_flight *flight, void **value)
{
    int rc;

    flight->users++;
    cache->waiting++;
    while (!flight->done)
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

/* With the lock held: answers from the table if it can, otherwise returns
 * the entry this caller must fetch for (creating it) in *fetch_entry. */
static int cache_lookup(struct cache *cache, const char *key, size_t hash, unsigned flags,
                        void **value, struct cache_entry **fetch_entry)
{
    struct cache_entry *entry = cache_find(cache, key, hash);
    struct cache_flight *flight = NULL;
    double now = cache_now(cache);
    int rc;

    if (flags & CACHE_GET_PEEK) {
        if (entry && entry->value && cache_is_fresh(entry, now)) {
            cache->hits++;
            lru_touch(&cache->lru, &entry->lru);
            cache->ops.ref(entry->value);
            *value = entry->value;
            rc = 0;
        } else {
            cache->misses++;
            rc = -ENOENT;
        }
        goto out;
    }
    /* A fetch already under way is as new as a refresh could be. */
    if (entry && entry->flight) {
        cache->misses++;
        rc = cache_wait(cache, entry->flight, value);
        goto out;
    }
    /* A refresh failed a moment ago: every caller in between gets the copy
     * already being served, rather than one more doomed fetch each. */
    if (entry && entry->value && !(flags & CACHE_GET_REFRESH) && !cache_is_fresh(entry, now) &&
        now < entry->retry_at) {
        cache->hits++;
        cache->stale_served++;
        lru_touch(&cache->lru, &entry->lru);
        cache->ops.ref(entry->value);
        *value = entry->value;
        rc = 0;
        goto out;
    }
    if (entry && !(flags & CACHE_GET_REFRESH) && cache_is_fresh(entry, now)) {
        cache->hits++;
        lru_touch(&cache->lru, &entry->lru);
        if (entry->negative) {
            rc = -ENOENT;
        } else {
            cache->ops.ref(entry->value);
            *value = entry->value;
            rc = 0;
        }
        goto out;
    }
    cache->misses++;
    flight = cache_flight_new();
    if (!flight) {
        rc = -ENOMEM;
        goto out;
    }
    if (!entry) {
        entry = cache_entry_new(key, hash);
        if (!entry) {
            rc = -ENOMEM;
            goto out;
        }
        cache_insert(cache, entry);
    }
    entry->flight = flight;
    flight = NULL;
    *fetch_entry = entry;
    rc = 0;

out:
    if (flight)
        cache_flight_leave(flight);
    return rc;
}

int cache_get(struct cache *cache, const char *key, unsigned flags, cache_fetch_fn fetch,
              void *arg, void **value)
{
    struct cache_entry *entry = NULL, *dead = NULL;
    struct cache_flight *flight;
    void *fetched = NULL, *old_value = NULL, *served = NULL;
    size_t bytes = 0, hash = cache_hash(key);
    double ttl_s = 0, now, stale_age = 0;
    bool stale = false;
    int rc;

    *value = NULL;
    if (!fetch && !(flags & CACHE_GET_PEEK))
        return -EINVAL;
    pthread_mutex_lock(&cache->lock);
    rc = cache_lookup(cache, key, hash, flags, value, &entry);
    if (rc || !entry)
        goto out_unlock;

    /* The entry cannot go away while its flight is set: eviction, clearing
     * and other callers all leave fetching entries alone. */
    flight = entry->flight;
    pthread_mutex_unlock(&cache->lock);
    rc = fetch(arg, key, &fetched, &bytes, &ttl_s);
    if (rc == 0 && !fetched)
        rc = -EIO;
    if (rc > 0)
        rc = -EIO;
    pthread_mutex_lock(&cache->lock);
    now = cache_now(cache);
    entry->flight = NULL;

    if (rc == 0) {
        cache_store(cache, entry, fetched, bytes, ttl_s, now, &old_value);
        served = fetched;
    } else if (cache_may_serve_stale(cache, entry, rc, now)) {
        served = entry->value;
        stale = true;
        entry->retry_at = now + CACHE_STALE_RETRY_S;
        stale_age = now - entry->fetched_at;
        cache->stale_served += flight->users;
    } else if (rc == -ENOENT) {
        cache_store_negative(cache, entry, now, &old_value);
    }

    /* Share the outcome: one reference for this caller and each waiter,
     * taken now while the entry still holds the value. */
    flight->result = served ? 0 : rc;
    flight->value = served;
    if (served)
        for (unsigned i = 0; i < flight->users; i++)
            cache->ops.ref(served);
    flight->done = true;
    pthread_cond_broadcast(&flight->done_cond);
    *value = served;

    if (!entry->value && !entry->negative) {
        cache_remove(cache, entry, &dead);
    } else {
        /* A value bigger than the whole budget is kept alone rather than
         * dropped: dropping it would fetch it again for every reader (one
         * folder larger than the cache, read file by file). It goes first
         * when anything else needs the room. */
        lru_touch(&cache->lru, &entry->lru);
        cache_evict(cache, entry, &dead);
    }
    cache_flight_leave(flight);

out_unlock:
    pthread_mutex_unlock(&cache->lock);
    if (stale) {
        char reason[128];

        log_warning("serving cached copy of %s from %.0f s ago: %s", key, stale_age,
                    strerror_r(-rc, reason, sizeof(reason)));
        rc = 0;
    }
    if (old_value)
        cache->ops.unref(old_value);
    cache_release(cache, dead);
    return rc;
}

void cache_expire_all(struct cache *cache)
{
    double now;

    pthread_mutex_lock(&cache->lock);
    now = cache_now(cache);
    for (struct cache_entry *entry = cache_lru_entry(cache->lru.newest); entry;
         entry = cache_lru_entry(entry->lru.older)) {
        if (entry->expires_at > now)
            entry->expires_at = now;
        entry->retry_at = 0; /* asked for fresh data: try again at once */
    }
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
    out->waiting = cache->waiting;
    pthread_mutex_unlock(&cache->lock);
}

void cache_free(struct cache *cache)
{
    struct cache_entry *entry, *next;

    if (!cache)
        return;
    for (entry = cache_lru_entry(cache->lru.newest); entry; entry = next) {
        next = cache_lru_entry(entry->lru.older);
        if (entry->value)
            cache->ops.unref(entry->value);
        free(entry->key);
        free(entry);
    }
    free(cache->buckets);
    pthread_mutex_destroy(&cache->lock);
    free(cache);
}
