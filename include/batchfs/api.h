/*
 * api — the LlamaCloud batch endpoints, paginated, as JSON objects.
 *
 * Builds URLs (ids are URL-escaped; project_id/organization_id added),
 * pages through the v1 lists by every rule of doc/pagination.md
 * (fetching pages in parallel once total_size is known, bounded by
 * max_parallel), parses each page, drops objects that miss their identity
 * or repeat one already seen, and hands the objects on page by page: the
 * exact bytes received plus the object's identity, decoded. Bodies are read
 * with jsontext (validated and located in place, never built into a tree):
 * pages of a thousand items are the hot path of a cold listing. HTTP statuses
 * become negative errnos here, and only here, with one log line.
 * Knows nothing of FUSE, inodes, caching or file names.
 *
 * Errors returned by every listing/get function:
 *   -ENOENT  404 (an unknown id; logged at debug level only)
 *   -EACCES  401 or 403
 *   -EAGAIN  429 after retries
 *   -EIO     5xx after retries, a body that is not what the schema says,
 *            or any other unexpected status
 *   any negative errno from the transport (-ETIMEDOUT, -ECONNREFUSED, …)
 *   or from the callback, which aborts the listing.
 */
#ifndef BATCHFS_API_H
#define BATCHFS_API_H

#include <stdbool.h>
#include <stddef.h>

#include "batchfs/buf.h"
#include "batchfs/jsontext.h"
#include "batchfs/transport.h"

struct api_config {
    const struct transport *transport; /* borrowed, must outlive the api */
    const char *project_id;      /* optional; copied */
    const char *organization_id; /* optional; copied */
    unsigned page_size;          /* limit= for v1 lists, page_size= for v2; 1..1000 */
    unsigned max_parallel;       /* page requests in flight for one listing, >= 1 */
    size_t max_items;            /* a listing stops (-EFBIG) beyond this many objects */
};

/* One object of a response. Everything is borrowed and valid only during
 * the callback that receives it. */
struct api_object {
    const char *raw; /* the object's exact bytes as received: valid JSON,
                        an object ('{' first) */
    size_t raw_len;
    const char *id;  /* its identity (id, item_id or source_directory_file_id)
                        decoded: non-empty, no NUL inside, NUL-terminated */
    size_t id_len;
    const void *prepared; /* what an api_preparer made of it, or NULL */
    const struct json_span *fields; /* with a preparer that names keys: the
                                       spans in `raw` of its keys' values
                                       ({0, 0} when absent), until the
                                       objects are delivered; else NULL */
};

/*
 * Optional work on each page's objects on the thread that fetched it, so
 * that it runs in parallel with the other pages and with the network
 * (rendering, for the catalog). prepare() receives every object of a page
 * that has its identity, before repeats and wrong statuses are weeded out,
 * may set their `prepared`, and returns in *page_state what release()
 * frees once the page has been delivered or dropped. It also receives the
 * page's body, which the objects' `raw` point into: it may take the body
 * (buf_steal) to keep those bytes beyond the listing without copying them,
 * and must then keep them valid until release(). `again` is the path and
 * query that fetch the page again (api_fetch_again) when the page was asked
 * for by offset, else NULL (a page reached by a token may not be had
 * again); borrowed for the call. prepare() runs on
 * several threads at once and must be thread-safe; a negative errno from
 * it ends the listing. The members named by `keys` (at most
 * API_PREPARER_MAX_KEYS) are located in the same pass over each object as
 * its identity, and given to prepare() in `fields`. expect(), when not NULL, is called once on the
 * delivering thread before the first objects, with the total_size of the
 * first page that gives one (at most max_items): a hint for sizing what
 * the objects go into, which the server may get wrong either way.
 */
struct api_preparer {
    int (*prepare)(void *arg, struct api_object *objects, size_t count, struct buf *body,
                   const char *again, void **page_state);
    void (*release)(void *arg, void *page_state);
    void (*expect)(void *arg, size_t total);
    const char *const *keys;
    size_t n_keys;
    void *arg;
};

#define API_PREPARER_MAX_KEYS 12

/*
 * Receives a listing's objects page by page, in the API's order (pages
 * fetched in parallel are still delivered in offset order), never
 * concurrently for one listing. Return 0 to go on, or a negative errno to
 * abort the listing with it.
 */
typedef int (*api_objects_fn)(void *arg, const struct api_object *objects, size_t count);

/*
 * Receives a v2 batch: the batch object itself and its `results` entries.
 * `results_null` is true when the API gave "results": null (or none), as it
 * does while a batch runs; count is then 0.
 */
typedef int (*api_batch_fn)(void *arg, const struct api_object *batch,
                            const struct api_object *results, size_t count,
                            bool results_null);

struct api;

/* What the requests of an api were, for .batchfs/stats. */
enum api_endpoint {
    API_LIST_JOBS,
    API_GET_JOB,
    API_LIST_ITEMS,
    API_LIST_BATCHES,
    API_GET_BATCH,
    API_OTHER_ENDPOINT,
    API_ENDPOINT_COUNT,
};

enum api_outcome {
    API_2XX,
    API_401,
    API_403,
    API_404,
    API_429,
    API_OTHER_4XX,
    API_5XX,
    API_NO_RESPONSE, /* a network error or timeout, once retries were spent */
    API_OUTCOME_COUNT,
};

extern const char *const api_endpoint_names[API_ENDPOINT_COUNT];
extern const char *const api_outcome_names[API_OUTCOME_COUNT];

/* Requests by endpoint and final outcome (after the transport's retries). */
struct api_stats {
    unsigned long long counts[API_ENDPOINT_COUNT][API_OUTCOME_COUNT];
};

/* A snapshot of the counters. Thread-safe. */
void api_get_stats(struct api *api, struct api_stats *out);

/* NULL when out of memory or config is invalid. */
struct api *api_new(const struct api_config *config);
void api_free(struct api *api);

/* One cheap request (the job list, limit=1) that proves the URL and key
 * work. 0, -EACCES, or a network errno. */
int api_check_access(struct api *api);

/* GET /api/v1/beta/batch-processing, every page. Objects lacking a string
 * "id" are dropped with a warning. Like every v1 list here, -ESTALE when
 * total_size changed between pages: every page was read, but the list
 * moved while it was (see listpages_read_v1); read it again. */
int api_list_jobs(struct api *api, api_objects_fn fn, void *arg);

/* GET /api/v1/beta/batch-processing/{job_id}/items?status=…, every page.
 * Objects lacking a string "item_id", or whose "status" is not `status`,
 * are dropped (with a warning). */
int api_list_items(struct api *api, const char *job_id, const char *status,
                   api_objects_fn fn, void *arg);

/* The same, with each page's objects prepared by `preparer` (may be NULL)
 * before they reach fn. `expected` is how many items the folder holds, as
 * the job's counters say, or 0 when unknown: above one page, the pages it
 * announces are asked for together with the first (see paginate.h). */
int api_list_items_prepared(struct api *api, const char *job_id, const char *status,
                            size_t expected, const struct api_preparer *preparer,
                            api_objects_fn fn, void *arg);

/*
 * GETs a page of a v1 list again, by the `again` its preparer was given:
 * 0 and the body in *body (the caller's to free), or a negative errno as
 * above, logged once. `api` is a struct api (a pagecache_fetch_fn).
 */
int api_fetch_again(void *api, const char *again, struct buf *body);

/* GET /api/v1/beta/batch-processing/{job_id}; delivers the "job" member as
 * one object. */
int api_get_job(struct api *api, const char *job_id, api_objects_fn fn, void *arg);

/* GET /api/v2/batches, every page by cursor. -EOPNOTSUPP when the server
 * answers 404 or 405: it lacks the endpoint. */
int api_list_batches(struct api *api, api_objects_fn fn, void *arg);

/* GET /api/v2/batches/{batch_id}?expand=results. */
int api_get_batch(struct api *api, const char *batch_id, api_batch_fn fn, void *arg);

#endif
