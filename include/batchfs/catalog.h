/*
 * catalog — what the mount shows, as listings of named entries.
 *
 * Sits between the filesystem model (tree.c) and the API client (api.c):
 * it asks the API for jobs, items and batches through the cache (so one
 * fetch serves every caller within the time to live), and has builder.c
 * turn the pages into entries: each object with the blob of its file
 * (rendered from the page it came in, when read), named with names.c. It
 * knows nothing of FUSE, inodes or HTTP.
 *
 * Listings and blobs are reference counted and immutable once published, so
 * any thread may read them without a lock; a refresh builds a new listing.
 */
#ifndef BATCHFS_CATALOG_H
#define BATCHFS_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "batchfs/listing.h"
#include "batchfs/pagecache.h"

struct api;
struct live;
struct stream;

struct catalog_config {
    struct api *api;        /* borrowed */
    double ttl_s;           /* freshness of listings of unfinished things */
    double terminal_ttl_s;  /* freshness of listings of finished jobs/batches */
    size_t cache_bytes;     /* cache budget */
    bool stale_if_error;
    double max_stale_s;
    /* Threads that fetch listings for parked requests and refresh expired
     * ones in the background (see cache.h); 0: callers fetch themselves. */
    unsigned fetch_threads;
    /* The clock listings expire by (see cache_config.clock); NULL:
     * CLOCK_MONOTONIC. For tests, which move time instead of sleeping. */
    double (*clock)(void *arg);
    void *clock_arg;
};

struct catalog_stats {
    unsigned long long hits, misses, stale_served, evictions;
    unsigned long long reused; /* misses answered by a listing still in use */
    size_t entries, bytes;     /* listings; bytes without the pages below */
    size_t parked;             /* requests waiting for a fetch right now */
    unsigned long long refreshes, refreshed; /* background refreshes: started, landed */
    unsigned long long cancelled;            /* fetches dropped: nobody waited any more */
    unsigned long long prefetches;           /* documents fetched ahead of a walk */
    /* Job-list folders opened while the list was read, handed out as it
     * arrived (catalog_jobs_open); readdirs of them waiting for more. */
    unsigned long long streamed;
    size_t stream_waiting;
    size_t stream_readers;        /* folders open on the job list being read */
    struct pagecache_stats pages; /* the pages of finished jobs' folders */
};

struct catalog;

struct catalog *catalog_new(const struct catalog_config *config);
void catalog_free(struct catalog *catalog);

/* The cache of listings, for callers that park on it (cache_park_on).
 * Borrowed. */
struct cache *catalog_cache(struct catalog *catalog);

/* Stops the fetch threads (see cache_stop): before what parked requests
 * use goes away. */
void catalog_stop(struct catalog *catalog);

/* The item statuses, in the order folders are listed. */
extern const char *const catalog_item_statuses[6];
#define CATALOG_ITEM_STATUS_COUNT 6

/* Index of `name` in catalog_item_statuses, or -1. */
int catalog_item_status_index(const char *name);

/*
 * Each getter returns 0 and a referenced *out (release with
 * listing_release), or a negative errno as api.h describes. Thread-safe.
 */
int catalog_jobs(struct catalog *catalog, struct listing **out);

/*
 * The job list for a folder being opened, without waiting for it: 0 and
 * either *out, the listing (as catalog_jobs gives it when it is at hand:
 * cached, or stale and being refreshed), or *stream, the list as its pages
 * arrive, in the API's order (a referenced stream.h stream, release with
 * stream_release; the listing itself is cached once the stream ends). A
 * negative errno as catalog_jobs otherwise. Thread-safe; never parks.
 */
int catalog_jobs_open(struct catalog *catalog, struct listing **out,
                      struct stream **stream);

/*
 * A folder opened on `stream` by catalog_jobs_open is closed (the caller
 * still releases its reference). When it was the last reading a stream
 * that has not ended, the fetch filling it is let go: called off unless
 * another caller waits for it (see cache_let_go). Thread-safe.
 */
void catalog_jobs_close(struct catalog *catalog, struct stream *stream);
int catalog_items(struct catalog *catalog, const char *job_id, int status_index,
                  struct listing **out);
int catalog_batches(struct catalog *catalog, struct listing **out);
int catalog_batch(struct catalog *catalog, const char *batch_id, struct listing **out);

/*
 * Finds job `job_id`: in the job list when it is fresh and holds it, or,
 * once the job list has been fetched, when listing it again (an expired
 * list is fetched once for all callers) finds it; else by asking the API
 * for that one job. *owner is the listing holding
 * the entry (release it); *entry is borrowed from it.
 */
int catalog_job(struct catalog *catalog, const char *job_id, struct listing **owner,
                const struct entry **entry);

/* Aggregate files of a job or a batch (see derive.h). */
enum catalog_file {
    CATALOG_FILE_NDJSON,   /* items.ndjson / results.ndjson */
    CATALOG_FILE_ERRORS,   /* errors.tsv */
    CATALOG_FILE_PROGRESS, /* progress (jobs only) */
    CATALOG_FILE_EXTRACTED, /* extracted.ndjson (extract_v2 batches only) */
};

/*
 * The aggregate file `kind` of job `id` (or of batch `id` when `batch`):
 * a listing whose self.content holds the bytes and self.mtime the time.
 * Built from the cached listings and cached in turn. Thread-safe.
 */
int catalog_file(struct catalog *catalog, bool batch, const char *id, enum catalog_file kind,
                 struct listing **out);

/* ---- what a batch or a job produced (catalog_docs.c) ---------------- */

/* The content folders: what the documents of a batch or a job became. */
enum catalog_content {
    CATALOG_MARKDOWN,  /* markdown/<name>.md: parse_v2 batches, v1 parse jobs */
    CATALOG_TEXT,      /* text/<name>.txt: the same */
    CATALOG_EXTRACTED, /* extracted/<name>.json: extract_v2 batches */
};
#define CATALOG_CONTENT_COUNT 3

/* "markdown", "text", "extracted", by enum catalog_content. */
extern const char *const catalog_content_names[CATALOG_CONTENT_COUNT];

/*
 * The string at `path` (`depth` member names, each inside the value of the
 * one before) of the object of `entry`'s file, read from its text and
 * decoded into `out`, which has room for `size` bytes: 0 and *len (NULs
 * possible, a NUL written after), or -ENOENT when a member is missing, the
 * value is not a string, or its text is longer than `size` (so that a
 * 10 MB value costs no decoding). Thread-safe; sends nothing, but a paged
 * text may be fetched again: when that fails, its negative errno (-ESTALE
 * for a page that is gone; never -ENOENT: the object is listed, its text
 * could not be had).
 */
int catalog_entry_string(const struct entry *entry, const char *const *path, size_t depth,
                         char *out, size_t size, size_t *len);

/*
 * Which content folders a batch (its listing's self, `batch` true) or a job
 * (its entry) has: a mask of 1u << enum catalog_content, from the object's
 * config.job.type (parse_v2, extract_v2) or job_type (parse). 0 when it
 * has none or its text cannot be read. Thread-safe; sends nothing.
 */
unsigned catalog_contents(const struct entry *owner, bool batch);

/*
 * The documents of content folder `content` of batch or job `id`: a
 * LISTING_DOCS listing, one entry per document, with job_ids[i] the job
 * whose output entry i is. Entries of a batch's folder have their content;
 * those of a job's folder may not (NULL: catalog_doc_content fetches it).
 * -ENOENT when the batch or job has no such folder; else as the getters
 * above (CACHE_PARKED for a parked caller).
 */
int catalog_docs(struct catalog *catalog, bool batch, const char *id,
                 enum catalog_content content, struct listing **out);

/*
 * The content of entry `index` of `docs` (from catalog_docs with the same
 * `content`): a new reference in *out. What the entry has, or else its
 * document, fetched (one request, cached for terminal_ttl). A lookup that
 * follows the one before it in folder order is taken for a walk: the next
 * documents are fetched ahead, up to max_connections at once. -ENOENT when
 * the document is gone (its results expired): the entry is then marked so
 * (listing_doc_gone), which readdir and later calls heed, at no request and
 * without listing the folder again. Thread-safe.
 */
int catalog_doc_content(struct catalog *catalog, struct listing *docs, size_t index,
                        enum catalog_content content, struct blob **out);

/*
 * Makes the bytes of `content` (a file the catalog gave) present, when the
 * page cache dropped them for the budget: they are fetched again on a
 * fetch thread, so that a parked caller gets CACHE_PARKED instead of
 * holding its thread while they come; others fetch them on their own
 * thread. 0 when they are at hand (then blob_read costs no request, unless
 * they are dropped again meanwhile), or the fetch's error. Thread-safe.
 */
int catalog_make_present(struct catalog *catalog, struct blob *content);

/* Whether a job status is final (completed, failed, cancelled). */
bool catalog_job_is_terminal(const char *status);

/* Marks every cached listing expired (SIGHUP). */
void catalog_expire_all(struct catalog *catalog);

void catalog_get_stats(struct catalog *catalog, struct catalog_stats *out);

#endif
