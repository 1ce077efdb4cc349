/*
 * catalog — listings of jobs, items and batches (see include/batchfs/catalog.h).
 *
 * For: what is fetched, under which key, and for how long it stays fresh.
 * Every listing is fetched through the cache under one key, so concurrent
 * callers share one fetch and a walk within the time to live costs no
 * request; a listing still in use is handed back by live.c rather than
 * fetched twice. Also the lifetime of listings (references, freeing) and
 * the aggregate files (items.ndjson, errors.tsv, progress), made from the
 * cached listings.
 * Not for: turning the API's pages into entries (reading objects' fields,
 * rendering their files, naming them), which builder.c does as each page
 * arrives.
 */
#include "batchfs/catalog.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batchfs/api.h"
#include "batchfs/buf.h"
#include "batchfs/builder.h"
#include "batchfs/cache.h"
#include "batchfs/clocks.h"
#include "batchfs/derive.h"
#include "batchfs/hash.h"
#include "batchfs/hindex.h"
#include "batchfs/jsontext.h"
#include "batchfs/live.h"
#include "batchfs/log.h"
#include "batchfs/stream.h"
#include "batchfs/transport.h"
#include "catalog_private.h"

/* The places in catalog_item_statuses of the folders a job's counters
 * size, named rather than looked up for each job of a job list. */
enum { CATALOG_COMPLETED = 2, CATALOG_FAILED, CATALOG_SKIPPED };

const char *const catalog_item_statuses[CATALOG_ITEM_STATUS_COUNT] = {
    "pending",
    "processing",
    [CATALOG_COMPLETED] = "completed",
    [CATALOG_FAILED] = "failed",
    [CATALOG_SKIPPED] = "skipped",
    "cancelled",
};

/* ---- sets of ids ------------------------------------------------------ */

/* The id added `index`-th. Borrowed: valid until the set grows. */
static const char *id_set_id(const struct id_set *set, size_t index)
{
    return set->text.data + set->at[index];
}

static bool id_set_eq(const void *ctx, size_t index, const void *id)
{
    return strcmp(id_set_id(ctx, index), id) == 0;
}

/* The index of `id` (filed under `hash`), or HINDEX_FREE. */
static size_t id_set_index(const struct id_set *set, const char *id, uint64_t hash)
{
    return hindex_find(&set->index, hash, id_set_eq, set, id);
}

/* The facts of `id`, or NULL when the set lacks it. */
static const struct job_facts *id_set_facts(const struct id_set *set, const char *id)
{
    size_t i = id_set_index(set, id, hash_key_str(id));

    return i == HINDEX_FREE ? NULL : &set->facts[i];
}

/* Makes room for one more id: in the arrays and in the index. 0 or
 * -ENOMEM (the set is then unchanged). */
static int id_set_grow(struct id_set *set)
{
    if (set->count == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 16;
        size_t *at = realloc(set->at, cap * sizeof(*at));
        struct job_facts *grown;

        if (!at)
            return -ENOMEM;
        set->at = at;
        grown = realloc(set->facts, cap * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        set->facts = grown;
        set->cap = cap;
    }
    return hindex_make_room(&set->index);
}

/* Makes room for `count` ids in all, the text at the rate of those there
 * (the job list announces its size with its first page: 200,000 jobs
 * grew the set through 14 doublings, each rehashing all of it into fresh
 * memory). A hint: failing loses nothing, the set then grows as before. */
static void id_set_expect(struct id_set *set, size_t count)
{
    size_t per = set->count ? set->text.len / set->count + 1 : 0;
    struct job_facts *facts;
    size_t *at;

    if (count <= set->cap || !per)
        return;
    at = realloc(set->at, count * sizeof(*at));
    if (!at)
        return;
    set->at = at;
    facts = realloc(set->facts, count * sizeof(*facts));
    if (!facts)
        return;
    set->facts = facts;
    set->cap = count;
    (void)hindex_reserve(&set->index, count);
    (void)buf_reserve_exact(&set->text, per * (count - set->count));
}

/* The facts of `id`, added (zeroed) when the set lacks it; NULL on no
 * memory, the set then left without it. The id is hashed once. */
static struct job_facts *id_set_put(struct id_set *set, const char *id)
{
    size_t len = strlen(id), i;
    uint64_t hash = hash_key(id, len);
    struct hindex_cell *c;
    bool found;

    i = id_set_index(set, id, hash);
    if (i != HINDEX_FREE)
        return &set->facts[i];
    if (id_set_grow(set))
        return NULL;
    c = hindex_probe(&set->index, hash, id_set_eq, set, id, &found);
    set->at[set->count] = set->text.len;
    if (buf_append(&set->text, id, len + 1))
        return NULL;
    memset(&set->facts[set->count], 0, sizeof(set->facts[set->count]));
    hindex_put(&set->index, c, hash, set->count);
    return &set->facts[set->count++];
}

/* Adds `id`, for the sets that keep no facts. */
static void id_set_add(struct id_set *set, const char *id)
{
    (void)id_set_put(set, id);
}

static void id_set_free(struct id_set *set)
{
    buf_free(&set->text);
    free(set->at);
    free(set->facts);
    hindex_free(&set->index);
    memset(set, 0, sizeof(*set));
}

static void cache_value_ref(void *value)
{
    listing_ref(value);
}

static void cache_value_unref(void *value)
{
    listing_release(value);
}

static const struct cache_value_ops catalog_cache_ops = {
    .ref = cache_value_ref,
    .unref = cache_value_unref,
};

/* ---- fields of API objects ------------------------------------------- */

bool catalog_job_is_terminal(const char *status)
{
    return status && (!strcmp(status, "completed") || !strcmp(status, "failed") ||
                      !strcmp(status, "cancelled") || !strcmp(status, "COMPLETED") ||
                      !strcmp(status, "FAILED") || !strcmp(status, "CANCELLED"));
}

int catalog_item_status_index(const char *name)
{
    for (int i = 0; i < CATALOG_ITEM_STATUS_COUNT; i++)
        if (!strcmp(name, catalog_item_statuses[i]))
            return i;
    return -1;
}

/* ---- fetches --------------------------------------------------------- */

struct fetch_request {
    struct catalog *catalog;
    enum listing_kind kind;
    const char *id;     /* job or batch id */
    int status_index;   /* LISTING_ITEMS */
};

static int catalog_job_status_terminal(struct catalog *catalog, const char *job_id);

/* A copy of request `req` (`size` bytes) whose id (the pointer at `id_at`)
 * points into the copy, for a fetch thread to own; NULL on no memory. */
void *catalog_request_copy(const void *req, size_t size, size_t id_at)
{
    const char *id;
    char *copy, *id_copy;
    size_t len;

    memcpy(&id, (const char *)req + id_at, sizeof(id));
    len = id ? strlen(id) + 1 : 0;
    copy = malloc(size + len);
    if (!copy)
        return NULL;
    memcpy(copy, req, size);
    if (id) {
        id_copy = copy + size;
        memcpy(id_copy, id, len);
        memcpy(copy + id_at, &id_copy, sizeof(id_copy));
    }
    return copy;
}

static void *catalog_fetch_request_copy(const void *req)
{
    return catalog_request_copy(req, sizeof(struct fetch_request),
                                offsetof(struct fetch_request, id));
}

/*
 * The job's own counters, total_items, processed_items, failed_items and
 * skipped_items: n[i] where known[i], which is false for a counter that is
 * absent or not a whole number from 0 to 2^53. 0, or -EIO when the job's
 * text is not at hand or not an object.
 */
static int catalog_job_counters(const struct entry *job, size_t n[4], bool known[4])
{
    static const char *const keys[] = {"total_items", "processed_items", "failed_items",
                                       "skipped_items"};
    struct json_span spans[4];
    const char *text = NULL;
    size_t len;
    int rc;

    if (!job->content || blob_text_begin(job->content, &text, &len))
        return -EIO;
    rc = text ? jsontext_members(text, len, keys, 4, spans) : -EINVAL;
    for (int i = 0; i < 4; i++) {
        n[i] = 0;
        known[i] = rc >= 0 && spans[i].len && jsontext_count(text, spans[i], &n[i]);
    }
    blob_text_end(job->content);
    return rc < 0 ? -EIO : 0;
}

/* A count as a 32-bit hint: capped, never wrapped. */
static uint32_t catalog_hint(size_t n)
{
    return n < UINT32_MAX ? (uint32_t)n : UINT32_MAX;
}

/*
 * How many items the status folders of `job` hold, by the job's own
 * counters: failed_items and skipped_items for theirs, processed_items
 * (read as done: completed, failed or skipped; the reference does not say)
 * less those two for completed/. A counter that is missing or does not add
 * up leaves its folder unknown (0),
 * and so are pending/, processing/ and cancelled/: what is left of
 * total_items bounds the three together, too loosely to send requests on.
 * Only a hint (see api_list_items_prepared): a count too high by more than
 * a page costs requests for pages that are not there, once per listing. The
 * counters n[], known[] as catalog_job_counters gives them. Pure.
 */
static void catalog_folder_sizes(const size_t n[4], const bool known[4],
                                 uint32_t out[CATALOG_ITEM_STATUS_COUNT])
{
    memset(out, 0, CATALOG_ITEM_STATUS_COUNT * sizeof(*out));
    if (!known[0] || !known[1] || n[1] > n[0])
        return;
    if (known[2] && n[2] <= n[1])
        out[CATALOG_FAILED] = catalog_hint(n[2]);
    if (known[3] && n[3] <= n[1])
        out[CATALOG_SKIPPED] = catalog_hint(n[3]);
    if (known[2] && known[3] && n[2] <= n[1] && n[3] <= n[1] - n[2])
        out[CATALOG_COMPLETED] = catalog_hint(n[1] - n[2] - n[3]);
}

/* How many items folder `status_index` of job `job_id` holds, by the job's
 * counters, or 0 when unknown or the job has not been seen. */
static size_t catalog_folder_size(struct catalog *catalog, const char *job_id,
                                  int status_index)
{
    const struct job_facts *facts;
    size_t size;

    pthread_mutex_lock(&catalog->lock);
    facts = id_set_facts(&catalog->jobs, job_id);
    size = facts ? facts->folder_size[status_index] : 0;
    pthread_mutex_unlock(&catalog->lock);
    return size;
}

/* What the jobs of a fetch's pages are noted in: the catalog's facts, and
 * the stream of a job list (NULL for a job looked up alone). */
struct catalog_noting {
    struct catalog *catalog;
    const struct builder *builder; /* the one reading the list */
    struct stream *stream;
    bool stream_failed; /* no memory for it: it has ended */
    bool restarted;     /* the list is read again: the stream holds both readings */
    size_t charged;     /* its memory, counted in catalog->building */
};

/* After entries were added to the stream (rc: how it went): published, or,
 * without memory for them, the stream ended with the error, which the
 * folders open on it then say (the listing itself goes on). */
static void catalog_stream_added(struct catalog_noting *n, int rc)
{
    if (rc) {
        n->stream_failed = true;
        stream_finish(n->stream, rc);
    } else {
        stream_publish(n->stream);
    }
    api_charge_update(&n->catalog->building, &n->charged, stream_bytes(n->stream));
}

/* Hands the jobs of a page to the job list's stream, as they arrive. */
static void catalog_stream_jobs(struct catalog_noting *n, const struct builder_job *jobs,
                                size_t count)
{
    int rc = 0;

    if (!n->stream || n->stream_failed)
        return;
    /* So that the folders reading it make room for all of it at once. */
    stream_set_announced(n->stream, builder_announced(n->builder));
    for (size_t i = 0; i < count && !rc; i++)
        rc = stream_add(n->stream, jobs[i].id, jobs[i].status, jobs[i].mtime);
    catalog_stream_added(n, rc);
}

/* builder_jobs_fn: notes which jobs of a page have finished and their
 * folders' sizes, as the page arrives, and hands them to the stream. The
 * lock is taken per job: a page of a job list refreshed while it is in use
 * would hold it long enough to slow every lookup meanwhile. */
static void catalog_note_jobs(void *arg, const struct builder_job *jobs, size_t count)
{
    struct catalog_noting *n = arg;
    struct catalog *catalog = n->catalog;

    pthread_mutex_lock(&catalog->lock);
    id_set_expect(&catalog->jobs, builder_announced(n->builder));
    pthread_mutex_unlock(&catalog->lock);
    for (size_t i = 0; i < count; i++) {
        uint32_t sizes[CATALOG_ITEM_STATUS_COUNT];
        bool finished = catalog_job_is_terminal(jobs[i].status);
        struct job_facts *facts;

        catalog_folder_sizes(jobs[i].counts, jobs[i].known, sizes);
        pthread_mutex_lock(&catalog->lock);
        facts = id_set_put(&catalog->jobs, jobs[i].id);
        if (facts) {
            memcpy(facts->folder_size, sizes, sizeof(sizes));
            facts->finished = facts->finished || finished;
        }
        pthread_mutex_unlock(&catalog->lock);
    }
    catalog_stream_jobs(n, jobs, count);
}

/* The start of a fetch of the job list: the stream it fills, the one an
 * opener made for it if any. NULL on no memory (folders opened meanwhile
 * then wait for the listing). */
static struct stream *catalog_stream_begin(struct catalog *catalog)
{
    struct stream *stream;
    bool handed;

    pthread_mutex_lock(&catalog->lock);
    stream = catalog->jobs_stream_next ? catalog->jobs_stream_next : stream_new();
    catalog->jobs_stream_next = NULL;
    catalog->jobs_running = true;
    /* Called off before it got here: handing its stream out would hand out
     * its -ECANCELED. The fetch then keeps the only reference. */
    handed = !catalog->jobs_called_off;
    catalog->jobs_called_off = false;
    catalog->jobs_stream = handed ? stream : NULL;
    /* The fetch's own reference, taken under the lock: once it is let go,
     * the last folder closed may release the catalog's at once. */
    if (stream && handed)
        stream_ref(stream);
    pthread_mutex_unlock(&catalog->lock);
    return stream;
}

/* Every job of the list is in (rc 0), or the list could not be read
 * (rc < 0): the folders open on the stream are told. */
static void catalog_stream_end(struct catalog_noting *n, int rc)
{
    if (n->stream)
        stream_finish(n->stream, rc);
    api_charge_update(&n->catalog->building, &n->charged, 0);
}

/* The fetch of the job list returns: folders opened from now on wait for
 * its outcome in the cache. */
static void catalog_stream_close(struct catalog_noting *n)
{
    struct catalog *catalog = n->catalog;
    struct stream *held = NULL;

    pthread_mutex_lock(&catalog->lock);
    if (catalog->jobs_stream == n->stream) {
        held = catalog->jobs_stream;
        catalog->jobs_stream = NULL;
    }
    catalog->jobs_running = false;
    pthread_mutex_unlock(&catalog->lock);
    stream_release(held);
    stream_release(n->stream);
    n->stream = NULL;
}

/* The entries of a listing taken whole (from the register), for the
 * stream a job list's fetch fills. */
static void catalog_stream_listing(struct catalog_noting *n,
                                   const struct listing *listing)
{
    int rc = 0;

    if (!n->stream)
        return;
    for (size_t i = 0; i < listing->count && !rc; i++)
        rc = stream_add(n->stream, listing_entry_id(listing, &listing->entries[i]),
                        listing->entries[i].status, entry_mtime(&listing->entries[i]));
    catalog_stream_added(n, rc);
}

/* One reading of the listing `req` asks for, into builder `b` made here: 0
 * or a negative errno. Either way `b` is the caller's to finish or
 * discard (a builder that could not be made discards as a no-op). */
static int catalog_fetch_listing(struct catalog *catalog, struct fetch_request *req,
                                 const char *key, struct builder *b,
                                 struct catalog_noting *noting)
{
    struct api_preparer preparer;
    int rc;

    rc = builder_init(b, req->kind, key);
    if (rc)
        return rc;
    /* A finished job's items no longer change: a page of its folders asked
     * for again by offset is the same page, so it may be dropped and
     * fetched again. Other folders hold their pages. */
    if (req->kind == LISTING_ITEMS && catalog_job_status_terminal(catalog, req->id))
        builder_keep_pages(b, catalog->pages, api_fetch_again, catalog->api);
    builder_charge_to(b, &catalog->building);
    builder_preparer(b, &preparer);
    noting->builder = b;
    if (req->kind == LISTING_JOBS || req->kind == LISTING_JOB)
        builder_on_jobs(b, catalog_note_jobs, noting);
    /* The listing the stream's entries are, unless read twice. */
    if (noting->stream)
        stream_set_generation(noting->stream,
                              noting->restarted ? 0 : b->listing->generation);
    switch (req->kind) {
    case LISTING_JOBS:
        return api_list_jobs_prepared(catalog->api, &preparer, builder_add_objects, b);
    case LISTING_JOB:
        return api_get_job(catalog->api, req->id, builder_add_objects, b);
    case LISTING_ITEMS:
        return api_list_items_prepared(
            catalog->api, req->id, catalog_item_statuses[req->status_index],
            catalog_folder_size(catalog, req->id, req->status_index), &preparer,
            builder_add_objects, b);
    case LISTING_BATCHES:
        return api_list_batches(catalog->api, builder_add_objects, b);
    case LISTING_BATCH:
        return api_get_batch(catalog->api, req->id, builder_add_batch, b);
    case LISTING_DOCS:
    case LISTING_DOC:
        break; /* catalog_docs.c's: never asked for here */
    }
    return -EINVAL;
}

/* catalog_fetch, the jobs of a job list noted in `noting` (see there). */
static int catalog_fetch_noting(struct fetch_request *req, const char *key, void **value,
                                size_t *bytes, double *ttl_s,
                                struct catalog_noting *noting)
{
    struct catalog *catalog = req->catalog;
    struct listing *listing = NULL;
    struct builder b;
    int rc;

    listing = live_take(catalog->live, key, ttl_s);
    if (listing) {
        if (noting->stream)
            stream_set_generation(noting->stream, listing->generation);
        catalog_stream_listing(noting, listing);
        *value = listing;
        *bytes = listing->bytes;
        return 0;
    }
    /* A v1 list whose total_size moves between its pages was read while
     * objects were added or removed (-ESTALE): its offsets shifted, so it may
     * miss some and hold deleted ones. It is read again once; if it moves
     * again, what the second reading gave is kept, with a warning. */
    for (int attempt = 0;; attempt++) {
        rc = catalog_fetch_listing(catalog, req, key, &b, noting);
        if (rc != -ESTALE)
            break;
        if (attempt == 0) {
            log_debug("%s changed while it was listed: listing it again", key);
            builder_discard(&b);
            noting->restarted = true;
            if (noting->stream)
                stream_restart(noting->stream);
            continue;
        }
        log_warning("%s is still changing while it is listed (its total_size moved "
                    "between pages): shown as listed, it may miss or hold changed items",
                    key);
        rc = 0;
        break;
    }
    if (!rc && req->kind == LISTING_JOB && b.listing->count != 1)
        rc = -EIO;
    if (rc) {
        builder_discard(&b);
        return rc;
    }
    /* Every job is in: the folders open on the stream need not wait for
     * the listing to be sorted. */
    catalog_stream_end(noting, 0);
    rc = builder_finish(&b, &listing);
    if (rc)
        return rc;

    if (req->kind == LISTING_JOBS) {
        pthread_mutex_lock(&catalog->lock);
        catalog->jobs_listed = true;
        pthread_mutex_unlock(&catalog->lock);
    }
    /* The jobs' counters and statuses were noted as their pages came
     * (catalog_note_jobs). */
    *ttl_s = catalog->ttl_s;
    if (req->kind == LISTING_JOB && catalog_job_is_terminal(listing->entries[0].status))
        *ttl_s = catalog->terminal_ttl_s;
    else if (req->kind == LISTING_BATCH && catalog_job_is_terminal(listing->self.status))
        *ttl_s = catalog->terminal_ttl_s;
    else if (req->kind == LISTING_ITEMS && catalog_job_status_terminal(catalog, req->id))
        *ttl_s = catalog->terminal_ttl_s;
    live_add(catalog->live, listing, key, *ttl_s);
    *value = listing;
    *bytes = listing->bytes;
    return 0;
}

static int catalog_fetch(void *arg, const char *key, void **value, size_t *bytes,
                         double *ttl_s)
{
    struct fetch_request *req = arg;
    struct catalog_noting noting = {.catalog = req->catalog};
    int rc;

    /* A job list is handed to the folders opened meanwhile as it comes
     * (catalog_jobs_open), from the fetch's start to its return. */
    if (req->kind == LISTING_JOBS)
        noting.stream = catalog_stream_begin(req->catalog);
    rc = catalog_fetch_noting(req, key, value, bytes, ttl_s, &noting);
    if (req->kind == LISTING_JOBS) {
        catalog_stream_end(&noting, rc);
        catalog_stream_close(&noting);
    }
    return rc;
}

static int catalog_get(struct catalog *catalog, struct fetch_request *req, unsigned flags,
                       struct listing **out)
{
    char key[512];
    void *value = NULL;
    int rc;

    switch (req->kind) {
    case LISTING_JOBS:
        snprintf(key, sizeof(key), "jobs");
        break;
    case LISTING_JOB:
        snprintf(key, sizeof(key), "job/%s", req->id);
        break;
    case LISTING_ITEMS:
        snprintf(key, sizeof(key), "items/%s/%s", req->id,
                 catalog_item_statuses[req->status_index]);
        break;
    case LISTING_BATCHES:
        snprintf(key, sizeof(key), "batches");
        break;
    case LISTING_BATCH:
        snprintf(key, sizeof(key), "batch/%s", req->id);
        break;
    case LISTING_DOCS:
    case LISTING_DOC:
        return -EINVAL; /* catalog_docs.c's */
    }
    req->catalog = catalog;
    rc = cache_get_with(catalog->cache, key, flags,
                        &(struct cache_fetcher){.fetch = catalog_fetch,
                                                .arg = req,
                                                .copy_arg = catalog_fetch_request_copy,
                                                .free_arg = free},
                        &value);
    *out = rc ? NULL : value;
    return rc;
}

/* ---- public getters -------------------------------------------------- */

/* pagecache_config.changed: a finished job's page came back other than it
 * was listed, so the listings in hand may be out of date: list again, as
 * after SIGHUP. */
static void catalog_pages_changed(void *arg)
{
    catalog_expire_all(arg);
}

/* pagecache_config.other_bytes: what the cached listings hold, and the
 * listings being built (a folder's pages must make room for its entries
 * while they are made, not once they are cached). */
static size_t catalog_listing_bytes(void *arg)
{
    struct catalog *catalog = arg;
    struct cache_stats cs;

    cache_get_stats(catalog->cache, &cs);
    /* A folder the cache keeps beyond its budget (cache.h) counts here:
     * pages beside it would hold the budget twice over (a million-item walk
     * under 64M peaked 46 MiB higher for 4 % fewer requests). */
    return cs.bytes + __atomic_load_n(&catalog->building, __ATOMIC_RELAXED);
}

/* cache_config.cancel_begin: a cancel token current for the fetch thread's
 * requests while it fetches, so that a fetch nobody waits for any more ends
 * its transfers at once. NULL (not cancellable) on no memory. */
static void *catalog_cancel_begin(void *arg)
{
    struct transport_cancel *token = malloc(sizeof(*token));

    (void)arg;
    if (!token || transport_cancel_init(token)) {
        free(token);
        return NULL;
    }
    transport_cancel_scope_begin(token);
    return token;
}

static void catalog_cancel_fire(void *handle)
{
    transport_cancel_fire(handle);
}

static void catalog_cancel_end(void *handle)
{
    transport_cancel_scope_end();
    transport_cancel_destroy(handle);
    free(handle);
}

struct catalog *catalog_new(const struct catalog_config *config)
{
    struct cache_config cc = {
        .max_bytes = config->cache_bytes,
        .stale_if_error = config->stale_if_error,
        .max_stale_s = config->max_stale_s,
        .negative_ttl_s = config->ttl_s,
        .fetch_threads = config->fetch_threads,
        .clock = config->clock,
        .clock_arg = config->clock_arg,
        .cancel_begin = catalog_cancel_begin,
        .cancel_fire = catalog_cancel_fire,
        .cancel_end = catalog_cancel_end,
    };
    struct catalog *catalog = calloc(1, sizeof(*catalog));

    if (!catalog)
        return NULL;
    catalog->api = config->api;
    catalog->ttl_s = config->ttl_s;
    catalog->terminal_ttl_s = config->terminal_ttl_s;
    catalog->clock = config->clock;
    catalog->clock_arg = config->clock_arg;
    pthread_mutex_init(&catalog->lock, NULL);
    /* Megabytes for an account of 200,000 jobs, grown in place. */
    catalog->jobs.text = (struct buf)BUF_INIT_BIG;
    catalog->known_batches.text = (struct buf)BUF_INIT_BIG;
    catalog->cache = cache_new(&cc, &catalog_cache_ops);
    catalog->live = live_new(config->clock, config->clock_arg);
    catalog->pages = pagecache_new(&(struct pagecache_config){
        .max_bytes = config->cache_bytes,
        .other_bytes = catalog_listing_bytes,
        .changed = catalog_pages_changed,
        .other_arg = catalog,
    });
    if (!catalog->cache || !catalog->live || !catalog->pages) {
        catalog_free(catalog);
        return NULL;
    }
    return catalog;
}

struct cache *catalog_cache(struct catalog *catalog)
{
    return catalog->cache;
}

void catalog_stop(struct catalog *catalog)
{
    struct stream *next;

    if (catalog && catalog->cache)
        cache_stop(catalog->cache);
    if (!catalog)
        return;
    /* A fetch that was queued and will never run now: the folders opened
     * on its stream are told. */
    pthread_mutex_lock(&catalog->lock);
    next = catalog->jobs_stream_next;
    catalog->jobs_stream_next = NULL;
    pthread_mutex_unlock(&catalog->lock);
    if (next)
        stream_finish(next, -ECANCELED);
    stream_release(next);
}

void catalog_free(struct catalog *catalog)
{
    if (!catalog)
        return;
    pagecache_free(catalog->pages); /* first: it asks the cache for its bytes */
    if (catalog->cache)
        cache_free(catalog->cache);
    live_free(catalog->live);
    stream_release(catalog->jobs_stream);
    stream_release(catalog->jobs_stream_next);
    id_set_free(&catalog->known_batches);
    id_set_free(&catalog->jobs);
    pthread_mutex_destroy(&catalog->lock);
    free(catalog);
}

int catalog_jobs(struct catalog *catalog, struct listing **out)
{
    struct fetch_request req = {.kind = LISTING_JOBS};

    return catalog_get(catalog, &req, CACHE_GET_DEFAULT, out);
}

/* How many times catalog_jobs_open looks again when the fetch it found
 * ended before it could take its stream: one, but for a rare race. */
#define CATALOG_OPEN_TRIES 8

int catalog_jobs_open(struct catalog *catalog, struct listing **out,
                      struct stream **stream)
{
    struct fetch_request req = {.kind = LISTING_JOBS};

    *out = NULL;
    *stream = NULL;
    for (int tries = 0; tries < CATALOG_OPEN_TRIES; tries++) {
        int rc;

        /* The fetch is asked for and its stream taken under the catalog's
         * lock: a fetch takes jobs_stream_next when it starts, and the last
         * folder closed lets go of the fetch, both under it too. (The cache
         * never calls the catalog with its own lock held.) */
        pthread_mutex_lock(&catalog->lock);
        rc = catalog_get(catalog, &req, CACHE_GET_START, out);
        if (rc == CACHE_RUNNING && catalog->jobs_running && catalog->jobs_stream) {
            *stream = stream_ref(catalog->jobs_stream);
        } else if (rc == CACHE_PARKED) {
            /* Queued, not started: it takes jobs_stream_next when it does. */
            if (!catalog->jobs_stream_next)
                catalog->jobs_stream_next = stream_new();
            if (catalog->jobs_stream_next)
                *stream = stream_ref(catalog->jobs_stream_next);
        }
        if (*stream) {
            stream_reader_add(*stream);
            catalog->jobs_streamed++;
        }
        pthread_mutex_unlock(&catalog->lock);
        if (*stream)
            return 0;
        if (rc != CACHE_PARKED && rc != CACHE_RUNNING)
            return rc == -EOPNOTSUPP ? catalog_jobs(catalog, out) : rc;
        /* Running, but about to take its stream or just past its end: look
         * again. */
    }
    /* No stream to be had (no memory, or fetches starting or ending just
     * then): wait for the listing, as any other caller. */
    return catalog_jobs(catalog, out);
}

void catalog_jobs_close(struct catalog *catalog, struct stream *stream)
{
    struct stream *unwanted = NULL;
    bool unstarted = false;

    pthread_mutex_lock(&catalog->lock);
    if (stream_reader_drop(stream) && !stream_done(stream, NULL)) {
        /* Nobody reads it any more: folders opened from now on wait for the
         * listing, as any other caller, and the fetch may be called off. */
        if (catalog->jobs_stream == stream) {
            catalog->jobs_stream = NULL;
            unwanted = stream;
        } else if (catalog->jobs_stream_next == stream) {
            catalog->jobs_stream_next = NULL;
            unwanted = stream;
            unstarted = true;
        }
    }
    /* Under the lock, so that no folder opened meanwhile takes a stream
     * that the fetch let go of here would never fill. A fetch called off
     * between its start and its taking the stream takes a new one: that
     * one must not be handed out either (catalog_stream_begin). */
    if (unwanted && cache_let_go(catalog->cache, "jobs") && unstarted)
        catalog->jobs_called_off = true;
    pthread_mutex_unlock(&catalog->lock);
    stream_release(unwanted); /* the catalog's: its fetch keeps its own */
}

int catalog_job(struct catalog *catalog, const char *job_id, struct listing **owner,
                const struct entry **entry)
{
    struct fetch_request req = {.kind = LISTING_JOBS};
    struct listing *listing;
    int rc;

    bool listed;

    *owner = NULL;
    *entry = NULL;
    /* The job list, if it is at hand, answers without a request. Once it
     * has been listed, an expired list is listed again, once for every
     * caller (the cache's single flight), rather than each job asked for
     * one by one: a walk over many jobs costs the list's pages, not a
     * request per job. */
    pthread_mutex_lock(&catalog->lock);
    listed = catalog->jobs_listed;
    pthread_mutex_unlock(&catalog->lock);
    rc = catalog_get(catalog, &req, CACHE_GET_PEEK, &listing);
    if (rc == -ENOENT && listed)
        rc = catalog_get(catalog, &req, CACHE_GET_DEFAULT, &listing);
    if (rc == CACHE_PARKED)
        return rc; /* run again once the list is in */
    if (!rc) {
        const struct entry *e = listing_find(listing, job_id);

        if (e) {
            *owner = listing;
            *entry = e;
            return 0;
        }
        listing_release(listing);
    }
    req.kind = LISTING_JOB;
    req.id = job_id;
    rc = catalog_get(catalog, &req, CACHE_GET_DEFAULT, &listing);
    if (rc)
        return rc;
    if (listing->count != 1 || strcmp(listing->entries[0].name, job_id)) {
        /* The API answered for another id than the one asked. */
        listing_release(listing);
        return -ENOENT;
    }
    *owner = listing;
    *entry = &listing->entries[0];
    return 0;
}

/* Whether a job is known to be finished, without sending a request. */
static int catalog_job_status_terminal(struct catalog *catalog, const char *job_id)
{
    const struct job_facts *facts;
    bool finished;

    pthread_mutex_lock(&catalog->lock);
    facts = id_set_facts(&catalog->jobs, job_id);
    finished = facts && facts->finished;
    pthread_mutex_unlock(&catalog->lock);
    return finished;
}

int catalog_items(struct catalog *catalog, const char *job_id, int status_index,
                  struct listing **out)
{
    struct fetch_request req = {
        .kind = LISTING_ITEMS, .id = job_id, .status_index = status_index};

    if (status_index < 0 || status_index >= CATALOG_ITEM_STATUS_COUNT)
        return -EINVAL;
    return catalog_get(catalog, &req, CACHE_GET_DEFAULT, out);
}

static void catalog_remember_batch(struct catalog *catalog, const char *batch_id)
{
    pthread_mutex_lock(&catalog->lock);
    id_set_add(&catalog->known_batches, batch_id);
    pthread_mutex_unlock(&catalog->lock);
}

int catalog_batch(struct catalog *catalog, const char *batch_id, struct listing **out)
{
    struct fetch_request req = {.kind = LISTING_BATCH, .id = batch_id};
    const char *id;
    int rc;

    rc = catalog_get(catalog, &req, CACHE_GET_DEFAULT, out);
    id = rc ? NULL : listing_entry_id(*out, &(*out)->self);
    if (!rc && (!id || strcmp(id, batch_id))) {
        listing_release(*out);
        *out = NULL;
        return -ENOENT;
    }
    if (!rc)
        catalog_remember_batch(catalog, batch_id);
    return rc;
}

/* Seconds on the catalog's clock, the one its listings expire by. */
static double catalog_now(const struct catalog *catalog)
{
    return clocks_now(catalog->clock, catalog->clock_arg);
}

/* For servers without GET /api/v2/batches: the batches looked up so far. */
static int catalog_known_batches(struct catalog *catalog, struct listing **out)
{
    struct builder b;
    int rc;

    rc = builder_init(&b, LISTING_BATCHES, "batches");
    if (rc)
        return rc;
    pthread_mutex_lock(&catalog->lock);
    for (size_t i = 0; i < catalog->known_batches.count && !rc; i++)
        rc = builder_add_id(&b, id_set_id(&catalog->known_batches, i));
    pthread_mutex_unlock(&catalog->lock);
    if (rc) {
        builder_discard(&b);
        return rc;
    }
    /* Times and statuses come from the batches themselves, when cached. */
    for (size_t i = 0; i < b.listing->count; i++) {
        struct fetch_request req = {
            .kind = LISTING_BATCH,
            .id = listing_entry_id(b.listing, &b.listing->entries[i])};
        struct listing *batch;

        if (!catalog_get(catalog, &req, CACHE_GET_PEEK, &batch)) {
            b.listing->entries[i].mtime_ns = batch->self.mtime_ns;
            b.listing->entries[i].content = blob_ref(batch->self.content);
            listing_release(batch);
        }
    }
    return builder_finish(&b, out);
}

int catalog_batches(struct catalog *catalog, struct listing **out)
{
    struct fetch_request req = {.kind = LISTING_BATCHES};
    bool unsupported;
    int rc;

    pthread_mutex_lock(&catalog->lock);
    unsupported = catalog_now(catalog) < catalog->batches_unsupported_until;
    pthread_mutex_unlock(&catalog->lock);
    if (unsupported)
        return catalog_known_batches(catalog, out);

    rc = catalog_get(catalog, &req, CACHE_GET_DEFAULT, out);
    if (rc != -EOPNOTSUPP)
        return rc;
    /* Ask again only after a while: the server will not grow the endpoint soon. */
    pthread_mutex_lock(&catalog->lock);
    catalog->batches_unsupported_until = catalog_now(catalog) + 3600;
    pthread_mutex_unlock(&catalog->lock);
    return catalog_known_batches(catalog, out);
}

void catalog_expire_all(struct catalog *catalog)
{
    live_expire_all(catalog->live);
    cache_expire_all(catalog->cache);
}

void catalog_get_stats(struct catalog *catalog, struct catalog_stats *out)
{
    struct cache_stats cs;

    cache_get_stats(catalog->cache, &cs);
    out->hits = cs.hits;
    out->misses = cs.misses;
    out->stale_served = cs.stale_served;
    out->evictions = cs.evictions;
    out->reused = live_reused(catalog->live);
    out->entries = cs.entries;
    out->bytes = cs.bytes;
    out->parked = cs.parked;
    out->refreshes = cs.refreshes;
    out->refreshed = cs.refreshed;
    out->cancelled = cs.cancelled;
    out->prefetches = cs.prefetches;
    pthread_mutex_lock(&catalog->lock);
    out->streamed = catalog->jobs_streamed;
    out->stream_readers = catalog->jobs_stream ? stream_readers(catalog->jobs_stream) : 0;
    if (catalog->jobs_stream_next)
        out->stream_readers += stream_readers(catalog->jobs_stream_next);
    pthread_mutex_unlock(&catalog->lock);
    out->stream_waiting = stream_waiting();
    pagecache_get_stats(catalog->pages, &out->pages);
}

/* ---- aggregate files ------------------------------------------------- */

struct file_request {
    struct catalog *catalog;
    bool batch;
    const char *id;
    enum catalog_file kind;
};

static void *catalog_file_request_copy(const void *req)
{
    return catalog_request_copy(req, sizeof(struct file_request),
                                offsetof(struct file_request, id));
}

static int catalog_job_progress(struct catalog *catalog, const char *job_id,
                                struct entry *self)
{
    struct listing *owner;
    const struct entry *job;
    struct buf out = BUF_INIT;
    size_t n[4];
    bool known[4];
    int rc;

    rc = catalog_job(catalog, job_id, &owner, &job);
    if (rc)
        return rc;
    self->mtime_ns = job->mtime_ns;
    /* Read as text, like the listings: a stray byte in another field must
     * not cost the job its progress. A counter unknown counts 0. */
    rc = catalog_job_counters(job, n, known);
    if (!rc)
        rc = derive_progress(job->status, n[0], n[1], n[2], n[3], &out);
    if (!rc) {
        self->content = blob_new(out.data ? out.data : "", out.len);
        rc = self->content ? 0 : -ENOMEM;
    }
    buf_free(&out);
    if (!rc && catalog_job_is_terminal(job->status))
        rc = 1;
    listing_release(owner);
    return rc;
}

/* Makes items.ndjson or errors.tsv from lists[0..n): the former as a made
 * blob (derive_ndjson, which sets *bytes), the latter as bytes, with a line
 * for every entry when `every` (see derive_errors_tsv). */
static int catalog_aggregate(struct listing *const *lists, size_t n,
                             enum catalog_file kind, bool every, struct entry *self,
                             size_t *bytes)
{
    struct buf out = BUF_INIT_BIG;
    int rc;

    if (kind == CATALOG_FILE_NDJSON)
        return derive_ndjson(lists, n, &self->content, bytes);
    rc = derive_errors_tsv((const struct listing *const *)lists, n, every, &out);
    if (!rc) {
        self->content = blob_adopt_buf(&out);
        rc = self->content ? 0 : -ENOMEM;
    }
    buf_free(&out);
    return rc;
}

/* Builds a job's items.ndjson or errors.tsv from its status listings.
 * Returns 1 when the job is finished, 0, or a negative errno. */
static int catalog_job_aggregate(struct catalog *catalog, const char *job_id,
                                 enum catalog_file kind, struct entry *self, size_t *bytes)
{
    struct listing *lists[CATALOG_ITEM_STATUS_COUNT] = {0};
    struct listing *owner;
    const struct entry *job;
    size_t n = 0;
    int rc;

    rc = catalog_job(catalog, job_id, &owner, &job);
    if (rc)
        return rc;
    self->mtime_ns = job->mtime_ns;
    for (int i = 0; i < CATALOG_ITEM_STATUS_COUNT && !rc; i++) {
        /* Only failed items carry the errors worth a line. */
        if (kind == CATALOG_FILE_ERRORS && i != catalog_item_status_index("failed"))
            continue;
        rc = catalog_items(catalog, job_id, i, &lists[n]);
        if (!rc)
            n++;
    }
    if (!rc)
        rc = catalog_aggregate(lists, n, kind, true, self, bytes); /* failed items */
    if (!rc && catalog_job_is_terminal(job->status))
        rc = 1;
    for (size_t i = 0; i < n; i++)
        listing_release(lists[i]);
    listing_release(owner);
    return rc;
}

/* A batch's errors.tsv: its results' errors, then its documents'. */
static int catalog_batch_errors(struct catalog *catalog, const struct listing *batch,
                                struct entry *self)
{
    struct buf out = BUF_INIT_BIG;
    int rc;

    rc = derive_errors_tsv(&batch, 1, false, &out);
    if (!rc)
        rc = catalog_docs_failures(catalog, batch, &out);
    if (!rc) {
        self->content = blob_adopt_buf(&out);
        rc = self->content ? 0 : -ENOMEM;
    }
    buf_free(&out);
    return rc;
}

static int catalog_batch_aggregate(struct catalog *catalog, const char *batch_id,
                                   enum catalog_file kind, struct entry *self, size_t *bytes)
{
    struct listing *batch;
    int rc;

    if (kind == CATALOG_FILE_PROGRESS)
        return -ENOENT;
    rc = catalog_batch(catalog, batch_id, &batch);
    if (rc)
        return rc;
    self->mtime_ns = batch->self.mtime_ns;
    if (kind == CATALOG_FILE_EXTRACTED)
        rc = catalog_docs_extracted_ndjson(catalog, batch_id, self);
    else if (kind == CATALOG_FILE_ERRORS)
        rc = catalog_batch_errors(catalog, batch, self);
    else
        rc = catalog_aggregate(&batch, 1, kind, false, self, bytes);
    if (!rc && catalog_job_is_terminal(batch->self.status))
        rc = 1;
    listing_release(batch);
    return rc;
}

static int catalog_fetch_file(void *arg, const char *key, void **value, size_t *bytes,
                              double *ttl_s)
{
    struct file_request *req = arg;
    struct catalog *catalog = req->catalog;
    size_t made_bytes = 0; /* held by a made blob beyond the listings it references */
    struct listing *l;
    int rc;

    l = live_take(catalog->live, key, ttl_s);
    if (l) {
        *value = l;
        *bytes = l->bytes;
        return 0;
    }
    l = listing_new(req->batch ? LISTING_BATCH : LISTING_JOB);
    if (!l)
        return -ENOMEM;
    if (req->batch)
        rc = catalog_batch_aggregate(catalog, req->id, req->kind, &l->self, &made_bytes);
    else if (req->kind == CATALOG_FILE_PROGRESS)
        rc = catalog_job_progress(catalog, req->id, &l->self);
    else
        rc = catalog_job_aggregate(catalog, req->id, req->kind, &l->self, &made_bytes);
    if (rc < 0) {
        listing_release(l);
        return rc;
    }
    *ttl_s = rc == 1 ? catalog->terminal_ttl_s : catalog->ttl_s;
    /* A made items.ndjson is counted without the listings it keeps alive:
     * the cache counts those under their own keys, and they outlive their
     * eviction only as long as this file does. */
    l->bytes = sizeof(*l) + entry_bytes(&l->self) + made_bytes;
    live_add(catalog->live, l, key, *ttl_s);
    *value = l;
    *bytes = l->bytes;
    return 0;
}

int catalog_file(struct catalog *catalog, bool batch, const char *id, enum catalog_file kind,
                 struct listing **out)
{
    struct file_request req = {.catalog = catalog, .batch = batch, .id = id, .kind = kind};
    char key[512];
    void *value = NULL;
    int rc;

    snprintf(key, sizeof(key), "file/%s/%s/%d", batch ? "batch" : "job", id, (int)kind);
    rc = cache_get_with(catalog->cache, key, CACHE_GET_DEFAULT,
                        &(struct cache_fetcher){.fetch = catalog_fetch_file,
                                                .arg = &req,
                                                .copy_arg = catalog_file_request_copy,
                                                .free_arg = free},
                        &value);
    *out = rc ? NULL : value;
    return rc;
}

/* ---- bytes dropped for the budget -------------------------------------- */

struct present_request {
    struct blob *blob; /* referenced by a copy: the key names its address */
};

static void *present_request_copy(const void *arg)
{
    const struct present_request *req = arg;
    struct present_request *copy = malloc(sizeof(*copy));

    if (copy) {
        *copy = *req;
        blob_ref(copy->blob);
    }
    return copy;
}

static void present_request_free(void *arg)
{
    struct present_request *req = arg;

    blob_unref(req->blob);
    free(req);
}

/* Fetches the blob's bytes again (pins and lets go: they stay, the most
 * recently used) and answers with a token listing, fresh for no time. */
static int present_fetch(void *arg, const char *key, void **value, size_t *bytes,
                         double *ttl_s)
{
    struct present_request *req = arg;
    struct listing *token;
    const char *text;
    size_t len;
    int rc;

    (void)key;
    rc = blob_text_begin(req->blob, &text, &len);
    if (rc)
        /* Not -ENOENT, which the cache would remember for the address. */
        return rc == -ENOENT ? -ESTALE : rc;
    blob_text_end(req->blob);
    token = listing_new(LISTING_DOC);
    if (!token)
        return -ENOMEM;
    *value = token;
    *bytes = sizeof(*token);
    *ttl_s = 0;
    return 0;
}

int catalog_make_present(struct catalog *catalog, struct blob *content)
{
    struct present_request req = {.blob = content};
    char key[48];
    void *value = NULL;
    int rc;

    if (blob_present(content))
        return 0;
    snprintf(key, sizeof(key), "present/%p", (void *)content);
    /* Never an earlier token served stale: the bytes are what is wanted. */
    rc = cache_get_with(catalog->cache, key, CACHE_GET_REFRESH,
                        &(struct cache_fetcher){.fetch = present_fetch,
                                                .arg = &req,
                                                .copy_arg = present_request_copy,
                                                .free_arg = present_request_free},
                        &value);
    if (!rc)
        listing_release(value);
    return rc;
}
