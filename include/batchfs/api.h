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

#include "batchfs/api_types.h"
#include "batchfs/buf.h"
#include "batchfs/transport.h"

struct api_config {
    const struct transport *transport; /* borrowed, must outlive the api */
    const char *project_id;      /* optional; copied */
    const char *organization_id; /* optional; copied */
    unsigned page_size;          /* limit= for v1 lists, page_size= for v2; 1..1000 */
    unsigned max_parallel;       /* page requests in flight for one listing, >= 1 */
    size_t max_items;            /* a listing stops (-EFBIG) beyond this many objects */
};

struct api;
struct request;

/* The request context the api created and owns (see request.h), for the
 * modules beside it that send their own requests (produced.c). Valid until
 * api_free. Thread-safe. */
struct request *api_request(struct api *api);

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

/* The same, with each page's objects prepared by `preparer` (may be NULL)
 * before they reach fn, as api_list_items_prepared does. */
int api_list_jobs_prepared(struct api *api, const struct api_preparer *preparer,
                           api_objects_fn fn, void *arg);

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
