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

#include "batchfs/bigmem.h"
#include "batchfs/log.h"
#include "batchfs/lru.h"

struct page {
    struct pagecache *pc;
    /* Guarded by pc->lock: */
    char *bytes;      /* NULL while dropped */
    unsigned pins;    /* readers using bytes: never dropped while > 0 */
    bool fetching;    /* a fetch is under way; others wait for it */
    bool differs;     /* the last fetch gave other bytes (logged once) */
    bool again;       /* fetched again once dropped: reading it means a
                         walk over dropped pages, so read ahead */
    struct page *prev, *next;   /* neighbours in their folder (pagecache_follows) */
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
    /* Read ahead: one thread fetches the dropped page that follows the one
     * being read, while it is read (started with the cache when it has a
     * budget, stopped by pagecache_free). */
    pthread_t ahead_thread;
    bool ahead_running;
    bool stopping;         /* pagecache_free: the thread ends */
    struct page *ahead;    /* the page to fetch ahead, or NULL */
    pthread_cond_t wanted; /* ahead was set, or stopping */
};

/* Drops one reference (pc->lock held): whether it was the last. */
static bool pagecache_unref_locked(struct pagecache *pc)
{
    return --pc->refs == 0;
}

static void *pagecache_read_ahead(void *arg);

static void pagecache_destroy(struct pagecache *pc)
{
    pthread_cond_destroy(&pc->wanted);
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
    if (pthread_cond_init(&pc->wanted, NULL)) {
        pthread_cond_destroy(&pc->fetched);
        pthread_mutex_destroy(&pc->lock);
        free(pc);
        return NULL;
    }
    pc->refs = 1;
    pc->config = *config;
    /* Without a budget nothing is dropped, so nothing is read ahead; a
     * thread that cannot start only costs the read-ahead. */
    if (config->max_bytes)
        pc->ahead_running =
            !pthread_create(&pc->ahead_thread, NULL, pagecache_read_ahead, pc);
    return pc;
}

void pagecache_free(struct pagecache *pc)
{
    bool gone;

    if (!pc)
        return;
    if (pc->ahead_running) {
        pthread_mutex_lock(&pc->lock);
        pc->stopping = true;
        pthread_cond_signal(&pc->wanted);
        pthread_mutex_unlock(&pc->lock);
        pthread_join(pc->ahead_thread, NULL);
    }
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
    bigmem_free(p->bytes);
    p->bytes = NULL;
    pc->stats.kept--;
    pc->stats.kept_bytes -= p->len;
}

/* However small the budget (the listings may take all of it), this many
 * of the most recently used pages stay: a tool reading a folder in order
 * then fetches each page once, even as it passes from one to the next. */
#define PAGECACHE_MIN_KEPT 2

/* What else the budget holds (config.other_bytes); with pc->lock held. */
static size_t pagecache_other_bytes(const struct pagecache *pc)
{
    return pc->config.other_bytes ? pc->config.other_bytes(pc->config.other_arg) : 0;
}

/* Drops unpinned pages, least recently used first, until the budget holds. */
static void pagecache_shrink(struct pagecache *pc)
{
    struct lru_link *link, *newer;
    size_t other;

    if (!pc->config.max_bytes || pc->stats.kept <= PAGECACHE_MIN_KEPT)
        return;
    other = pagecache_other_bytes(pc);
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
    *bytes = buf_steal_big(&body);
    if (!*bytes)
        rc = -ENOMEM;
out:
    buf_free(&body);
    return rc;
}

/* What a fetch again found that the caller reports once the lock is let
 * go: a page that first came back other than it was listed. */
struct page_change {
    bool log;                   /* warn about this page */
    void (*changed)(void *arg); /* the owner's, to call */
    void *arg;
};

/* Fetches a dropped page again (pc->lock held, let go during the fetch)
 * and keeps its bytes: 0, or a negative errno. Readers of the page wait
 * for it meanwhile. */
static int page_fetch_again(struct pagecache *pc, struct page *p,
                            struct page_change *change)
{
    char *fetched;
    int rc;

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
        change->log = !p->differs;
        p->differs = true;
        change->changed = pc->config.changed;
        change->arg = pc->config.other_arg;
    }
    if (rc)
        return rc;
    p->bytes = fetched;
    p->again = true;
    lru_push_newest(&pc->kept, &p->lru);
    pc->stats.kept++;
    pc->stats.kept_bytes += p->len;
    return 0;
}

/* Tells what page_fetch_again found (without the lock). */
static void page_report(const struct page *p, const struct page_change *change)
{
    if (change->log)
        log_warning(
            "%s: the page differs from the one listed (its folder changed since); "
            "its files fail with ESTALE, and folders are listed again",
            p->where);
    if (change->changed)
        change->changed(change->arg);
}

/* Whether a page can be fetched again now: dropped, no fetch under way,
 * not known to have changed (pc->lock held). */
static bool page_fetchable(const struct page *p)
{
    return !p->bytes && !p->fetching && !p->differs;
}

/* A page fetched again is being read: have the one after it fetched
 * ahead, if it was dropped too (pc->lock held). */
static void page_want_next(struct pagecache *pc, struct page *p)
{
    if (p->again && p->next && page_fetchable(p->next) && pc->ahead_running &&
        pc->ahead != p->next) {
        pc->ahead = p->next;
        pthread_cond_signal(&pc->wanted);
    }
}

/* The read-ahead thread: fetches the page asked for, one at a time, until
 * pagecache_free. */
static void *pagecache_read_ahead(void *arg)
{
    struct pagecache *pc = arg;

    pthread_mutex_lock(&pc->lock);
    for (;;) {
        struct page_change change = {0};
        struct page *p;

        while (!pc->stopping && !pc->ahead)
            pthread_cond_wait(&pc->wanted, &pc->lock);
        if (pc->stopping)
            break;
        p = pc->ahead;
        pc->ahead = NULL;
        if (!page_fetchable(p))
            continue;
        /* page_free waits for the fetch before it frees the page. */
        if (!page_fetch_again(pc, p, &change))
            pagecache_shrink(pc);
        pthread_mutex_unlock(&pc->lock);
        page_report(p, &change);
        pthread_mutex_lock(&pc->lock);
    }
    pthread_mutex_unlock(&pc->lock);
    return NULL;
}

static int page_pin(void *state, const char **bytes)
{
    struct page *p = state;
    struct pagecache *pc = p->pc;
    struct page_change change = {0};
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
    } else if ((rc = page_fetch_again(pc, p, &change))) {
        goto out;
    }
    p->pins++;
    *bytes = p->bytes;
    page_want_next(pc, p);
    pagecache_shrink(pc);
out:
    pthread_mutex_unlock(&pc->lock);
    page_report(p, &change);
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
    while (p->fetching) /* by the read-ahead thread, which holds no reference */
        pthread_cond_wait(&pc->fetched, &pc->lock);
    if (pc->ahead == p)
        pc->ahead = NULL;
    if (p->prev)
        p->prev->next = p->next;
    if (p->next)
        p->next->prev = p->prev;
    if (p->bytes)
        page_drop(pc, p);
    pc->stats.pages--;
    gone = pagecache_unref_locked(pc);
    pthread_mutex_unlock(&pc->lock);
    free(p);
    if (gone)
        pagecache_destroy(pc);
}

static bool page_present(void *state)
{
    struct page *p = state;
    bool present;

    pthread_mutex_lock(&p->pc->lock);
    present = p->bytes && !p->fetching;
    pthread_mutex_unlock(&p->pc->lock);
    return present;
}

static const struct blob_pager page_pager = {
    page_pin, page_unpin, page_free, sizeof(struct page) + 256 /* its where */,
    page_present};

struct blob *pagecache_add(struct pagecache *pc, char *bytes, size_t len,
                           pagecache_fetch_fn fetch, void *arg, const char *where)
{
    size_t where_len = strlen(where) + 1;
    struct page *p = calloc(1, sizeof(*p) + where_len);
    struct blob *blob;

    if (!p) {
        bigmem_free(bytes);
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

void pagecache_follows(struct pagecache *pc, struct blob *page, struct blob *next)
{
    struct page *p = blob_pager_state(page, &page_pager);
    struct page *n = blob_pager_state(next, &page_pager);

    if (!p || !n || p == n || p->pc != pc || n->pc != pc)
        return;
    pthread_mutex_lock(&pc->lock);
    if (!p->next && !n->prev) {
        p->next = n;
        n->prev = p;
    }
    pthread_mutex_unlock(&pc->lock);
}

bool pagecache_has_room(struct pagecache *pc)
{
    bool room = true;

    pthread_mutex_lock(&pc->lock);
    if (pc->config.max_bytes)
        room = pc->stats.kept_bytes + pagecache_other_bytes(pc) < pc->config.max_bytes;
    pthread_mutex_unlock(&pc->lock);
    return room;
}

void pagecache_get_stats(struct pagecache *pc, struct pagecache_stats *out)
{
    pthread_mutex_lock(&pc->lock);
    *out = pc->stats;
    pthread_mutex_unlock(&pc->lock);
}
