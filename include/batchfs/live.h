/*
 * live — the listings still in use, found again by their cache key.
 *
 * The cache may evict a listing that someone still holds: an open folder, a
 * file being read, an items.ndjson made from it. Fetching that folder again
 * would put a second copy beside the first, and pay its requests again.
 * So a fetch first asks this register for a listing of the same key that is
 * still alive and still fresh, and hands that back to the cache instead.
 *
 * A listing enters when fetched (live_add) and leaves when its last
 * reference goes (listing_release calls live_forget, which live_add
 * set as the listing's `forget`); the register holds no
 * reference of its own, so it never keeps anything alive. Thread-safe: one
 * mutex, never held while calling out, guards the register and the
 * register's part of every listing it holds (struct listing_link, reached
 * through listing_link()); a listing's own fields are never changed here.
 */
#ifndef BATCHFS_LIVE_H
#define BATCHFS_LIVE_H

#include "batchfs/listing.h"

struct live;

/*
 * An empty register; NULL on ENOMEM. Freshness is read from `clock` (as
 * cache_config.clock: seconds that never go back, called with
 * clock_arg), or from CLOCK_MONOTONIC when it is NULL.
 */
struct live *live_new(double (*clock)(void *arg), void *clock_arg);

/* Frees the register. Listings still registered are detached from it (they
 * stay valid); no other call on it may be in progress. Safe on NULL. */
void live_free(struct live *live);

/*
 * Registers `listing`, fetched just now for `key` and fresh for ttl_s
 * seconds. Without memory for the key it is simply not registered. A
 * listing is registered at most once.
 */
void live_add(struct live *live, struct listing *listing, const char *key, double ttl_s);

/*
 * The newest registered listing of `key` that is still alive and fresh and
 * was added since the last live_expire_all, with one more reference (the
 * caller's), and the seconds it stays fresh in *ttl_left; NULL if none.
 */
struct listing *live_take(struct live *live, const char *key, double *ttl_left);

/* Unregisters a listing whose last reference is gone, before it is freed.
 * Safe on a listing never registered. */
void live_forget(struct listing *listing);

/* Makes every registered listing unfit for live_take (the data may have
 * changed: the user asked for everything to be fetched again). */
void live_expire_all(struct live *live);

/* How many live_take calls found a listing. */
unsigned long long live_reused(struct live *live);

#endif
