/*
 * api_request — what api.c lends the modules of the API layer beside it
 * (listpages.c, produced.c): sending a request, the one log line of a
 * failure, URLs with their ids escaped and their scope added, and the walk
 * of a v2 list by cursor.
 *
 * Not for the layers above, which go through api.h and produced.h.
 */
#ifndef BATCHFS_API_REQUEST_H
#define BATCHFS_API_REQUEST_H

#include "batchfs/api.h"
#include "batchfs/transport.h"

/*
 * GETs path_query and counts it in the api's stats. 0 with a 2xx response
 * in *resp; otherwise a negative errno, *status the HTTP status (0 when
 * none came) and *resp empty. Does not log: the caller knows whether the
 * failure matters. Thread-safe.
 */
int api_fetch(struct api *api, const char *path_query, struct http_response *resp,
              long *status);

/* Starts call through the api's transport (see transport.h): 0, and
 * call->done comes once on the transport's thread; or a negative errno and
 * it never comes. Thread-safe. */
int api_submit(struct api *api, struct transport_call *call);

/* Ends a submitted call early (-ECANCELED). Thread-safe. */
void api_cancel(struct api *api, struct transport_call *call);

/* What api_fetch does with a transport's answer: counts it in the stats and
 * maps it. rc and *resp are the transport's; returns as api_fetch. */
int api_settle(struct api *api, const char *path_query, int rc, struct http_response *resp,
               long *status);

/* The one log line for a failed request (debug for a 404 or -ECANCELED,
 * else a warning). */
void api_log_failure(const char *path_query, int rc, long status, const char *reason);

/*
 * The path and query `base` "/" id `tail`, then organization_id and
 * project_id: id is percent-escaped (it can add no path segment or query
 * parameter), `tail` (a further path and/or "?query", may be NULL) is
 * copied as it is. Malloc'd, NULL when out of memory. Thread-safe.
 */
char *api_object_url(const struct api *api, const char *base, const char *id,
                     const char *tail);

/*
 * Reads the v2 list at `base` "/" id `tail` (id and tail NULL for `base`
 * alone) page after page by cursor (page_size, page_token), handing each
 * page's objects that have a string `id` to fn, as api_list_batches does:
 * objects already seen are dropped; the list ends at an empty or absent
 * next_page_token, or with a warning at a token seen before or a page of
 * objects all seen before; past max_items objects (or max_items + 2 pages)
 * it stops with -EFBIG. A failed request is logged once (api_log_failure)
 * and its errno returned; fn's negative errno aborts the list with it.
 * Runs on the calling thread; thread-safe for distinct lists.
 */
int api_list_cursor(struct api *api, const char *base, const char *id, const char *tail,
                    api_objects_fn fn, void *arg);

#endif
