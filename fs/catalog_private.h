/*
 * catalog_private.h — what the catalog's files share: fs/catalog.c (the
 * listings of jobs, items and batches, and the aggregate files) and
 * fs/catalog_docs.c (the documents a batch or a job produced). Nothing here
 * is a promise to anyone outside those two files; everything else goes
 * through include/batchfs/catalog.h.
 */
#ifndef BATCHFS_CATALOG_PRIVATE_H
#define BATCHFS_CATALOG_PRIVATE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "batchfs/buf.h"
#include "batchfs/catalog.h"
#include "batchfs/hindex.h"

struct api;
struct cache;
struct live;
struct pagecache;

/* What the catalog knows of a job from its latest object, without a
 * request: how many items each status folder holds by its counters (in the
 * order of catalog_item_statuses; 0 = none or unknown, a hint capped at
 * UINT32_MAX), and whether it was ever seen finished (that never changes
 * back). Zero for a job not noted, and for the sets of other ids. */
struct job_facts {
    uint32_t folder_size[CATALOG_ITEM_STATUS_COUNT];
    bool finished;
};

/* A set of ids, each with the facts of a job (unused by some sets); the
 * caller holds catalog->lock. An account may hold hundreds of thousands of
 * jobs, and each job of a listing is put here under the lock: the ids are
 * found through a hindex over their indices, never by a scan. Ids are
 * never removed. */
struct id_set {
    struct buf text; /* the ids, each with its NUL, in the order they were
                        added: one block rather than a malloc an id */
    size_t *at;      /* [count]: where each id starts in text */
    struct job_facts *facts;
    size_t count, cap;
    struct hindex index; /* refs: indices into ids */
};

struct catalog {
    struct api *api;
    struct cache *cache;
    struct pagecache *pages; /* pages of finished jobs' folders, within the
                                cache's budget together with the listings */
    size_t building;         /* atomic: what the listings being built hold so far */
    struct live *live;       /* listings in use, found again after eviction */
    double ttl_s, terminal_ttl_s;
    double (*clock)(void *arg); /* the config's, or NULL: CLOCK_MONOTONIC */
    void *clock_arg;

    pthread_mutex_t lock;        /* protects the fields below */
    struct id_set known_batches; /* ids found by lookup, for servers without a list */
    struct id_set jobs;          /* the jobs noted from job lists, with their facts */
    double batches_unsupported_until; /* on `clock`: the list endpoint is missing */
    bool jobs_listed; /* the job list was fetched once: jobs are looked up in it */
    /* The job list as its pages arrive (catalog_jobs_open), while a fetch
     * of it runs (jobs_running), or made by an opener for the fetch it
     * found queued (jobs_stream_next), which takes it when it starts;
     * jobs_streamed counts the folders handed a stream. jobs_called_off:
     * the last folder closed called off a fetch that had started but not
     * yet taken its stream; the stream it takes is nobody's (it ends with
     * ECANCELED), and openers wait for the list read anew. */
    struct stream *jobs_stream, *jobs_stream_next;
    bool jobs_running, jobs_called_off;
    unsigned long long jobs_streamed;
};

/*
 * A copy of request `req` (`size` bytes) whose id (the pointer at `id_at`)
 * points into the copy, for a fetch thread to own; NULL on no memory.
 * (catalog.c)
 */
void *catalog_request_copy(const void *req, size_t size, size_t id_at);

/*
 * Appends to `out` the errors.tsv lines of the documents of `batch` (a
 * LISTING_BATCH) that failed or expired, one per job: from the listing of
 * one of its content folders (fetched if needed: the documents' statuses
 * are only known by asking). 0, or a negative errno as catalog_docs.
 * (catalog_docs.c)
 */
int catalog_docs_failures(struct catalog *catalog, const struct listing *batch,
                          struct buf *out);

/*
 * extracted.ndjson of batch `batch_id` into self->content (a held blob) and
 * self->mtime, from its extracted/ listing. 0 or a negative errno.
 * (catalog_docs.c)
 */
int catalog_docs_extracted_ndjson(struct catalog *catalog, const char *batch_id,
                                  struct entry *self);

#endif
