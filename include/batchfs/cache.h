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
 *
 * With fetch threads (cache_config.fetch_threads), a caller need not wait at
 * all: a thread that parks (cache_park_on) gets CACHE_PARKED instead of
 * fetching or waiting, the fetch runs on one of the cache's threads (queued
 * when all are busy), and the caller's waiter is told when the outcome is
 * known; the caller then asks again and is handed that outcome. A value
 * within max_stale of its expiry is served at once while it is refreshed
 * on a fetch thread (stale-while-revalidate), when stale_if_error is set.
 * Knows nothing of HTTP, FUSE or what the values are.
 */
#ifndef BATCHFS_CACHE_H
#define BATCHFS_CACHE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * What cache_get returns to a parked caller instead of waiting. Not
 * -EWOULDBLOCK: that is -EAGAIN, which a fetch returns when the API keeps
 * asking to slow down. No fetch outcome is ever this value (the cache
 * turns one into -EIO).
 */
#define CACHE_PARKED (-EINPROGRESS)

/* What cache_get returns with CACHE_GET_START when the fetch it wants has
 * begun already. No outcome of a fetch is handed to such a caller. */
#define CACHE_RUNNING (-EALREADY)

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
    /* Budget for all values; 0 = unbounded. One value bigger than the whole
     * budget, the one most recently stored or served, is kept beside it
     * (see "Budget" in fs/cache.c). */
    size_t max_bytes;
    bool stale_if_error;     /* serve an expired value when a refresh fails */
    double max_stale_s;      /* ...if it expired at most this long ago */
    double negative_ttl_s;   /* how long a -ENOENT outcome is remembered */
    cache_clock_fn clock;    /* NULL: CLOCK_MONOTONIC; else for tests */
    void *clock_arg;         /* passed to clock */
    /* Threads that run fetches for parked callers and background refreshes;
     * 0: every fetch runs on the thread of the caller that needs it, and
     * nothing is parked or refreshed in the background. */
    unsigned fetch_threads;
    /*
     * Optional: lets a fetch thread's fetch that nobody waits for any more
     * be called off. cancel_begin is called on the fetch thread just before
     * the fetch and returns a handle (NULL: this one cannot be called off);
     * cancel_fire(handle) may then be called from any thread, with the
     * cache lock held (it must be quick and must not call the cache); and
     * cancel_end(handle) on the fetch thread once the fetch has returned.
     * A fetch called off returns what it returns (usually -ECANCELED);
     * callers that came for it meanwhile fetch again.
     */
    void *(*cancel_begin)(void *cancel_arg);
    void (*cancel_fire)(void *handle);
    void (*cancel_end)(void *handle);
    void *cancel_arg;
};

/*
 * A fetch: produce a value for `key`. On success return 0, set *value (one
 * reference, handed to the cache), *bytes (its memory, for the budget) and
 * *ttl_s (seconds it stays fresh). On failure return a negative errno.
 * Called without the cache lock, from the thread that called cache_get or
 * from a fetch thread.
 */
typedef int (*cache_fetch_fn)(void *arg, const char *key, void **value, size_t *bytes,
                              double *ttl_s);

/*
 * How to fetch a key. A fetch thread may run the fetch only if it can own
 * its argument: copy_arg returns a copy (NULL on no memory) that free_arg
 * frees. Without copy_arg the fetch always runs on the caller's thread.
 */
struct cache_fetcher {
    cache_fetch_fn fetch;
    void *arg; /* borrowed for the call */
    void *(*copy_arg)(const void *arg);
    void (*free_arg)(void *arg);
};

enum cache_get_flags {
    CACHE_GET_DEFAULT = 0,
    /* Never fetch: return a cached value if fresh, else -ENOENT. */
    CACHE_GET_PEEK = 1 << 0,
    /* Fetch even if fresh (a fresh value is replaced). */
    CACHE_GET_REFRESH = 1 << 1,
    /* Never wait nor park: when the value needs a fetch, or another
     * caller's, see that it runs on a fetch thread (as a parked caller's
     * would, ahead of prefetches) and return at once, no waiter
     * registered: CACHE_PARKED when the fetch has not begun (the fetch
     * function will be called after this returns), CACHE_RUNNING when it
     * has. The caller learns of the outcome elsewhere (it is cached as
     * usual). A fetch so wanted is never called off. A value at hand
     * (fresh, or stale and served as cache_get would) is returned as
     * usual. -EOPNOTSUPP without fetch threads or a fetcher that can be
     * copied. */
    CACHE_GET_START = 1 << 2,
};

struct cache_stats {
    unsigned long long hits, misses, stale_served, evictions;
    size_t entries, bytes;
    /* Of bytes: the value bigger than the whole budget kept beside it
     * (0: none), which the rest of the budget does not count. */
    size_t spared_bytes;
    /* Callers blocked right now on a fetch another caller runs (single
     * flight), over all keys. For tests, which wait for it to reach a count
     * instead of sleeping, and for statistics. */
    size_t waiting;
    size_t parked;                       /* waiters parked right now (cache_park_on) */
    unsigned long long refreshes;        /* background refreshes started */
    unsigned long long refreshed;        /* ...that brought a new value */
    unsigned long long refresh_failures; /* ...that failed (the copy is kept) */
    unsigned long long cancelled;        /* fetches dropped: nobody waited any more */
    unsigned long long prefetches;       /* fetches queued by cache_prefetch */
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

/*
 * cache_get with a fetch a fetch thread may run (see struct cache_fetcher).
 * On a thread parked with cache_park_on, on this cache: CACHE_PARKED when
 * the value needs a fetch or another caller's fetch (the waiter is then
 * registered and its ready function will be called once), -EINTR when the
 * waiter was cancelled, -ECANCELED once the cache is stopping.
 */
int cache_get_with(struct cache *cache, const char *key, unsigned flags,
                   const struct cache_fetcher *fetcher, void **value);

/*
 * Starts fetching `key` on a fetch thread, unless it is cached and fresh or
 * a fetch of it is under way, and returns at once. Nobody waits for it: it
 * runs behind every fetch somebody waits for (a read-ahead must not hold up
 * the request of another reader), is not called off, and fills the cache;
 * a caller that asks for the key meanwhile joins it (and moves it to the
 * front when it parks on it). 0 when started or not needed; -EOPNOTSUPP
 * without fetch threads or a fetcher that can be copied; -ECANCELED once
 * the cache stops; -ENOMEM. Thread-safe.
 */
int cache_prefetch(struct cache *cache, const char *key, const struct cache_fetcher *fetcher);

/*
 * A caller that parks instead of waiting. Owned by the caller; initialise
 * it with cache_waiter_init, and release what it holds with
 * cache_waiter_reset once the caller is done (not while it is parked).
 * Fields below `ready` are the cache's.
 */
struct cache_waiter {
    /* Called once per parking, without the cache lock, from the thread that
     * finished the fetch (a fetch thread, or a caller that ran it), when
     * the outcome is known: the caller then asks the cache again, and each
     * cache_get of the same key hands it that outcome. */
    void (*ready)(struct cache_waiter *waiter);
    struct cache *cache;
    struct cache_flight *flight;   /* while parked; under the cache lock */
    struct cache_waiter *next;     /* among the flight's waiters */
    bool cancelled;                /* cache_waiter_cancel was called */
    struct cache_outcome *pending; /* the key parked on, for its outcome */
    /* Every outcome the caller parked for, kept until cache_waiter_reset:
     * an operation that needs two values is run again from the start, and
     * must find the first one even if the cache dropped it meanwhile. */
    struct cache_outcome *outcomes;
};

void cache_waiter_init(struct cache_waiter *waiter, struct cache *cache,
                       void (*ready)(struct cache_waiter *waiter));

/* Drops the outcomes the waiter holds. Not while it is parked. */
void cache_waiter_reset(struct cache_waiter *waiter);

/*
 * Makes the calling thread park `waiter` (NULL: wait as usual) in
 * cache_get calls on the waiter's cache; returns the waiter it replaces,
 * for the caller to put back.
 */
struct cache_waiter *cache_park_on(struct cache_waiter *waiter);

/*
 * Takes `waiter` off the fetch it is parked on. True when it was parked:
 * its ready function will then never be called for it. False when it was
 * not (its outcome is being delivered, or it has not parked yet): a later
 * parking then fails with -EINTR. A fetch nobody waits for any more is
 * dropped if it has not started, and called off if it has (see
 * cache_config.cancel_fire; without it, it runs to its end and fills the
 * cache). Thread-safe.
 */
bool cache_waiter_cancel(struct cache_waiter *waiter);

/*
 * The CACHE_GET_START callers of `key` no longer want its fetch: it is
 * dropped if it has not started, or called off if it has, unless a parked
 * waiter (or a refresh) still needs it, as when the last parked waiter of a
 * fetch is cancelled. Thread-safe; nothing when no fetch of `key` is
 * wanted so. True when a fetch that had started was called off here.
 */
bool cache_let_go(struct cache *cache, const char *key);

/*
 * Stops the fetch threads: fetches not started end with -ECANCELED (their
 * waiters are told), those under way are waited for, and from now on a
 * parking caller gets -ECANCELED. Call before cache_free, and before what
 * the waiters' ready functions use goes away. Thread-safe; idempotent.
 */
void cache_stop(struct cache *cache);

/* Marks every entry expired (next get refetches; stale-if-error still may
 * serve them). Thread-safe. */
void cache_expire_all(struct cache *cache);

/* Marks the entry of `key`, if any, expired as cache_expire_all does.
 * Thread-safe. */
void cache_expire(struct cache *cache, const char *key);

/* Drops every entry not being fetched. Thread-safe. */
void cache_clear(struct cache *cache);

void cache_get_stats(struct cache *cache, struct cache_stats *out);

/* Frees the cache and drops its references (stopping it first). No call
 * may be in progress. */
void cache_free(struct cache *cache);

#endif
