/*
 * pagecache — page bodies within a budget, fetched again when dropped (see
 * include/batchfs/pagecache.h).
 *
 * For: letting a listing keep its entries while the bytes its files are
 * rendered from come and go. The kept pages are in an lru.h list, most
 * recently used first; dropping walks it from the other end and passes
 * over pinned pages.
 * Not for: deciding which pages may be dropped at all (the catalog gives
 * this cache only pages that can be asked for again and whose folder no
 * longer changes) or how a page is fetched.
 */
#include "batchfs/pagecache.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "batchfs/log.h"
#include "batchfs/lru.h"

struct page {
    struct pagecache *pc;
    /* Guarded by pc->lock: */
    char *bytes;      /* NULL while dropped */
    unsigned pins;    /* readers using bytes: never dropped while > 0 */
    bool fetching;    /* a fetch is under way; others wait for it */
    bool differs;     /* the last fetch gave other bytes (logged once) */
    struct lru_link lru;        /* among the kept pages */
    /* Fixed at creation: */
    size_t len;
    uint64_t digest;
    pagecache_fetch_fn fetch;
    void *arg;
    char where[];
};

struct pagecache {
    pthread_mutex_t lock; /* guards everything below and the pages' fields */
    pthread_cond_t fetched; /* a fetch ended */
    unsigned refs;          /* the owner's and one per page alive */
    struct pagecache_config config;
    struct lru_list kept; /* the pages with their bytes, most recently used first */
    struct pagecache_stats stats;
};

/* Drops one reference (pc->lock held): whether it was the last. */
static bool pagecache_unref_locked(struct pagecache *pc)
{
    return --pc->refs == 0;
}

static void pagecache_destroy(struct pagecache *pc)
{
    pthread_cond_destroy(&pc->fetched);
    pthread_mutex_destroy(&pc->lock);
    free(pc);
}

struct pagecache *pagecache_new(const struct pagecache_config *config)
{
    struct pagecache *pc = calloc(1, sizeof(*pc));

    if (!pc)
        return NULL;
    if (pthread_mutex_init(&pc->lock, NULL)) {
        free(pc);
        return NULL;
    }
    if (pthread_cond_init(&pc->fetched, NULL)) {
        pthread_mutex_destroy(&pc->lock);
        free(pc);
        return NULL;
    }
    pc->refs = 1;
    pc->config = *config;
    return pc;
}

void pagecache_free(struct pagecache *pc)
{
    bool gone;

    if (!pc)
        return;
    pthread_mutex_lock(&pc->lock);
    pc->config.other_bytes = NULL; /* the owner's, who is going */
    pc->config.changed = NULL;
    gone = pagecache_unref_locked(pc);
    pthread_mutex_unlock(&pc->lock);
    if (gone)
        pagecache_destroy(pc);
}

/* Takes a kept page's bytes out of memory. */
static void page_drop(struct pagecache *pc, struct page *p)
{
    lru_unlink(&pc->kept, &p->lru);
    free(p->bytes);
    p->bytes = NULL;
    pc->stats.kept--;
    pc->stats.kept_bytes -= p->len;
}

/* However small the budget (the listings may take all of it), this many
 * of the most recently used pages stay: a tool reading a folder in order
 * then fetches each page once, even as it passes from one to the next. */
#define PAGECACHE_MIN_KEPT 2

/* Drops unpinned pages, least recently used first, until the budget holds. */
static void pagecache_shrink(struct pagecache *pc)
{
    struct lru_link *link, *newer;
    size_t other;

    if (!pc->config.max_bytes || pc->stats.kept <= PAGECACHE_MIN_KEPT)
        return;
    other = pc->config.other_bytes ? pc->config.other_bytes(pc->config.other_arg) : 0;
    for (link = pc->kept.oldest; link && pc->stats.kept > PAGECACHE_MIN_KEPT &&
                                 pc->stats.kept_bytes + other > pc->config.max_bytes;
         link = newer) {
        struct page *p = lru_entry(link, struct page, lru);

        newer = link->newer;
        if (!p->pins) {
            page_drop(pc, p);
            pc->stats.drops++;
        }
    }
}

/* ---- the pager ---------------------------------------------------------- */

/* Fetches a dropped page again (without the lock): 0 and its bytes in
 * *bytes, or a negative errno. */
static int page_fetch(struct page *p, char **bytes)
{
    struct buf body = BUF_INIT;
    int rc = p->fetch(p->arg, p->where, &body);

    *bytes = NULL;
    if (rc)
        goto out;
    if (body.len != p->len || blob_digest(body.data, body.len) != p->digest) {
        rc = -ESTALE;
        goto out;
    }
    buf_trim(&body);
    *bytes = buf_steal(&body);
    if (!*bytes)
        rc = -ENOMEM;
out:
    buf_free(&body);
    return rc;
}

static int page_pin(void *state, const char **bytes)
{
    struct page *p = state;
    struct pagecache *pc = p->pc;
    char *fetched;
    bool log_change = false;
    void (*changed)(void *arg) = NULL;
    void *changed_arg = NULL;
    int rc = 0;

    pthread_mutex_lock(&pc->lock);
    while (p->fetching) {
        pc->stats.waiting++;
        pthread_cond_wait(&pc->fetched, &pc->lock);
        pc->stats.waiting--;
    }
    if (p->bytes) {
        lru_touch(&pc->kept, &p->lru);
    } else if (p->differs) {
        rc = -ESTALE; /* its folder has changed: not asked again */
        goto out;
    } else {
        p->fetching = true;
        pthread_mutex_unlock(&pc->lock);
        log_debug("%s: fetched again (dropped for the cache budget)", p->where);
        rc = page_fetch(p, &fetched);
        pthread_mutex_lock(&pc->lock);
        p->fetching = false;
        pthread_cond_broadcast(&pc->fetched);
        pc->stats.fetches++;
        if (rc == -ESTALE) {
            pc->stats.mismatches++;
            log_change = !p->differs;
            p->differs = true;
            changed = pc->config.changed;
            changed_arg = pc->config.other_arg;
        }
        if (rc)
            goto out;
        p->bytes = fetched;
        lru_push_newest(&pc->kept, &p->lru);
        pc->stats.kept++;
        pc->stats.kept_bytes += p->len;
    }
    p->pins++;
    *bytes = p->bytes;
    pagecache_shrink(pc);
out:
    pthread_mutex_unlock(&pc->lock);
    if (log_change)
        log_warning("%s: the page differs from the one listed (its folder changed since); "
                    "its files fail with ESTALE, and folders are listed again",
                    p->where);
    if (changed)
        changed(changed_arg);
    return rc;
}

static void page_unpin(void *state)
{
    struct page *p = state;
    struct pagecache *pc = p->pc;

    pthread_mutex_lock(&pc->lock);
    p->pins--;
    pagecache_shrink(pc);
    pthread_mutex_unlock(&pc->lock);
}

static void page_free(void *state)
{
    struct page *p = state;
    struct pagecache *pc = p->pc;
    bool gone;

    pthread_mutex_lock(&pc->lock);
    if (p->bytes)
        page_drop(pc, p);
    pc->stats.pages--;
    gone = pagecache_unref_locked(pc);
    pthread_mutex_unlock(&pc->lock);
    free(p);
    if (gone)
        pagecache_destroy(pc);
}

static const struct blob_pager page_pager = {
    page_pin, page_unpin, page_free, sizeof(struct page) + 256 /* its where */};

struct blob *pagecache_add(struct pagecache *pc, char *bytes, size_t len,
                           pagecache_fetch_fn fetch, void *arg, const char *where)
{
    size_t where_len = strlen(where) + 1;
    struct page *p = calloc(1, sizeof(*p) + where_len);
    struct blob *blob;

    if (!p) {
        free(bytes);
        return NULL;
    }
    bytes[len] = '\0';
    p->pc = pc;
    p->len = len;
    p->digest = blob_digest(bytes, len);
    p->fetch = fetch;
    p->arg = arg;
    memcpy(p->where, where, where_len);
    p->bytes = bytes;
    p->pins = 1;
    pthread_mutex_lock(&pc->lock);
    pc->refs++;
    pc->stats.pages++;
    lru_push_newest(&pc->kept, &p->lru);
    pc->stats.kept++;
    pc->stats.kept_bytes += len;
    pthread_mutex_unlock(&pc->lock);
    blob = blob_new_paged(&page_pager, p, len, p->digest);
    if (!blob)
        return NULL; /* page_free has taken the page out and freed bytes */
    pthread_mutex_lock(&pc->lock);
    pagecache_shrink(pc);
    pthread_mutex_unlock(&pc->lock);
    return blob;
}

void pagecache_get_stats(struct pagecache *pc, struct pagecache_stats *out)
{
    pthread_mutex_lock(&pc->lock);
    *out = pc->stats;
    pthread_mutex_unlock(&pc->lock);
}
