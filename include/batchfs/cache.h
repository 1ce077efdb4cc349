/*
 * cache — values by key, with a time to live, single-flight fetches, a
 * byte budget with LRU eviction, negative entries, and stale-if-error.
 *
 * Generic: a value is an opaque pointer with reference counting supplied by
 * the caller (struct cache_value_ops). The cache holds one reference per
 * entry; cache_get hands the caller another. Eviction drops only the
 * cache's reference, so a value in use stays valid until its user lets go.
 *
 * Concurrency: one mutex protects the table; it is never held while a fetch
 * runs. Concurrent cache_get calls for the same key while a fetch is under
 * way wait for that one fetch (single flight) and share its outcome.
 * Knows nothing of HTTP, FUSE or what the values are.
 */
#ifndef BATCHFS_CACHE_H
#define BATCHFS_CACHE_H

#include <stdbool.h>
#include <stddef.h>

struct cache_value_ops {
    void (*ref)(void *value);   /* take one more reference */
    void (*unref)(void *value); /* drop one; frees at zero */
};

/*
 * A clock: seconds on a scale that never goes back. The cache reads it for
 * every freshness decision and never sleeps on it, so a test can move time
 * by changing what it returns. Called with the cache lock held: it must not
 * call into the cache.
 */
typedef double (*cache_clock_fn)(void *arg);

struct cache_config {
    size_t max_bytes;        /* budget for all values; 0 = unbounded */
    bool stale_if_error;     /* serve an expired value when a refresh fails */
    double max_stale_s;      /* ...if it expired at most this long ago */
    double negative_ttl_s;   /* how long a -ENOENT outcome is remembered */
    cache_clock_fn clock;    /* NULL: CLOCK_MONOTONIC; else for tests */
    void *clock_arg;         /* passed to clock */
};

/*
 * A fetch: produce a value for `key`. On success return 0, set *value (one
 * reference, handed to the cache), *bytes (its memory, for the budget) and
 * *ttl_s (seconds it stays fresh). On failure return a negative errno.
 * Called without the cache lock, from the thread that called cache_get.
 */
typedef int (*cache_fetch_fn)(void *arg, const char *key, void **value, size_t *bytes,
                              double *ttl_s);

enum cache_get_flags {
    CACHE_GET_DEFAULT = 0,
    /* Never fetch: return a cached value if fresh, else -ENOENT. */
    CACHE_GET_PEEK = 1 << 0,
    /* Fetch even if fresh (a fresh value is replaced). */
    CACHE_GET_REFRESH = 1 << 1,
};

struct cache_stats {
    unsigned long long hits, misses, stale_served, evictions;
    size_t entries, bytes;
    /* Callers blocked right now on a fetch another caller runs (single
     * flight), over all keys. For tests, which wait for it to reach a count
     * instead of sleeping, and for statistics. */
    size_t waiting;
};

struct cache;

/* NULL on no memory. */
struct cache *cache_new(const struct cache_config *config,
                        const struct cache_value_ops *ops);

/*
 * Returns 0 and a referenced *value for `key`, fetching it if missing or
 * expired (with `fetch`, unless CACHE_GET_PEEK). When a refresh fails with a
 * transient error (anything but -ENOENT, -EACCES, -ENOMEM, -ECANCELED) and
 * stale-if-error allows, the expired value is returned instead and a warning
 * is logged.
 * -ENOENT outcomes are remembered for negative_ttl_s. Thread-safe.
 */
int cache_get(struct cache *cache, const char *key, unsigned flags, cache_fetch_fn fetch,
              void *arg, void **value);

/* Marks every entry expired (next get refetches; stale-if-error still may
 * serve them). Thread-safe. */
void cache_expire_all(struct cache *cache);

/* Drops every entry not being fetched. Thread-safe. */
void cache_clear(struct cache *cache);

void cache_get_stats(struct cache *cache, struct cache_stats *out);

/* Frees the cache and drops its references. No call may be in progress. */
void cache_free(struct cache *cache);

#endif
