/*
 * pagecache — the bodies of the API's pages that item files are rendered
 * from, kept within a byte budget: a page that nobody is reading may be
 * dropped, and is fetched again, by the request that first fetched it,
 * when a file rendered from it is next read.
 *
 * Each page is a paged blob (blob.h), which the item files' rendered blobs
 * reference. A pinned page (a file being read, a page being turned into
 * entries) is never dropped. Pages go least recently used first, while the
 * pages kept plus the memory counted elsewhere against the same budget
 * (`other_bytes`: the cached listings) exceed it; the two most recently
 * used pages stay whatever the budget, so that reading a folder in page
 * order costs each page once. A page fetched again must
 * be the page first fetched, byte for byte (same length, same digest);
 * otherwise its folder changed since it was listed: readers get -ESTALE,
 * with one warning per page, the page stays dropped, and the owner is told
 * (`changed`). Readers of a
 * dropped page share one fetch.
 *
 * Thread-safe: one mutex guards the pages' bytes, pins and order; it is
 * never held while a page is fetched, and other_bytes is called under it
 * (so other_bytes must not call back into the pagecache). A cache with a
 * budget runs one thread of its own, to read pages ahead (see
 * pagecache_follows); other_bytes and changed may be called from it.
 * Knows nothing of HTTP, listings or FUSE: how a page is fetched is the
 * caller's function.
 */
#ifndef BATCHFS_PAGECACHE_H
#define BATCHFS_PAGECACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "batchfs/blob.h"
#include "batchfs/buf.h"

struct pagecache_config {
    size_t max_bytes;                 /* the budget; 0 = unbounded: nothing is dropped */
    size_t (*other_bytes)(void *arg); /* counted against the budget too; may be NULL */
    /* Told (without the lock) when a page first comes back other than it
     * was, so that the owner can list again; may be NULL. */
    void (*changed)(void *arg);
    void *other_arg; /* the arg of both */
};

/*
 * Fetches the page `where` names again: 0 and its body in *body (which the
 * caller then owns), or a negative errno, which the function has logged.
 */
typedef int (*pagecache_fetch_fn)(void *arg, const char *where, struct buf *body);

struct pagecache_stats {
    size_t pages;            /* pages alive (referenced by files) */
    size_t kept;             /* of those, with their bytes in memory */
    size_t kept_bytes;       /* their bytes */
    unsigned long long drops;      /* pages dropped for the budget */
    unsigned long long fetches;    /* pages fetched again */
    unsigned long long mismatches; /* fetched again but not the same */
    /* Readers blocked right now on a fetch of their page another reader
     * runs. For tests, which wait for it to reach a count instead of
     * sleeping, and for statistics. */
    size_t waiting;
};

struct pagecache;

/* NULL on no memory. */
struct pagecache *pagecache_new(const struct pagecache_config *config);

/* Lets go of the caller's reference: pages still alive keep the rest of
 * the cache until their last reference goes, and other_bytes and changed
 * are not called again. Safe on NULL. */
void pagecache_free(struct pagecache *pc);

/*
 * A page blob of the `len` bytes at `bytes` (a block of bigmem.h with
 * room for len + 1: see buf_steal_big; taken, and freed on failure), which fetch(arg, where) gives
 * again; `where` is copied, arg is borrowed and must outlive the page. It
 * comes with one reference and pinned once: blob_unpin it when done with
 * its bytes. NULL on ENOMEM.
 */
struct blob *pagecache_add(struct pagecache *pc, char *bytes, size_t len,
                           pagecache_fetch_fn fetch, void *arg, const char *where);

/*
 * Says that page `next` follows `page` in their folder (both made by
 * pagecache_add of `pc`; anything else, or a page that has a neighbour
 * there already, is left alone). While a page that had to be fetched again
 * is read, the page after it, if dropped, is fetched ahead on the cache's
 * read-ahead thread (one page at a time, within the budget), so that a
 * tool walking a folder in order does not wait for each page in turn.
 * Thread-safe.
 */
void pagecache_follows(struct pagecache *pc, struct blob *page, struct blob *next);

/* Whether the budget has room for a page more beside those kept (always,
 * without a budget). A hint for reading ahead: once the budget is spent,
 * only the two most recently used pages stay, so a page fetched more than
 * one ahead of its reader is dropped before it is read, and fetched again.
 * Thread-safe. */
bool pagecache_has_room(struct pagecache *pc);

void pagecache_get_stats(struct pagecache *pc, struct pagecache_stats *out);

#endif
