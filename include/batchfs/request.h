/*
 * request — sending one request of the API layer: the transport, the count
 * of each request by endpoint and outcome, HTTP statuses turned into
 * errnos, the one log line of a failure, and URLs with their ids escaped
 * and their scope (organization_id, project_id) added.
 *
 * Below api.c, listpages.c and produced.c, which all send through it; api.c
 * creates the context and owns it. Knows nothing of lists, pages or the
 * objects in a body.
 */
#ifndef BATCHFS_REQUEST_H
#define BATCHFS_REQUEST_H

#include <stddef.h>

#include "batchfs/api_types.h"
#include "batchfs/buf.h"
#include "batchfs/transport.h"

/* What bounds every listing sent through one context: set once at
 * request_new. */
struct request_limits {
    unsigned page_size;    /* limit= (v1) or page_size= (v2), 1..1000 */
    unsigned max_parallel; /* page requests in flight for one listing, >= 1 */
    size_t max_items;      /* a listing stops (-EFBIG) beyond this many objects */
};

struct request;

/* transport is borrowed (must outlive the context); the ids (optional,
 * empty = absent) and limits are copied. NULL when out of memory. */
struct request *request_new(const struct transport *transport, const char *project_id,
                            const char *organization_id,
                            const struct request_limits *limits);
void request_free(struct request *req);

/* The limits given to request_new. Thread-safe. */
const struct request_limits *request_limits(const struct request *req);

/* A snapshot of the counters. Thread-safe. */
void request_get_stats(struct request *req, struct api_stats *out);

/*
 * GETs path_query and counts it in the stats. 0 with a 2xx response in
 * *resp; otherwise a negative errno, *status the HTTP status (0 when none
 * came) and *resp without a body (what else it holds says how the request
 * failed, for request_log_failure). Does not log: the caller knows whether
 * the failure matters. Thread-safe.
 */
int request_fetch(struct request *req, const char *path_query, struct http_response *resp,
                  long *status);

/* Starts call through the transport (see transport.h): 0, and call->done
 * comes once on the transport's thread; or a negative errno and it never
 * comes. Thread-safe. */
int request_submit(struct request *req, struct transport_call *call);

/* Ends a submitted call early (-ECANCELED). Thread-safe. */
void request_cancel(struct request *req, struct transport_call *call);

/* What request_fetch does with a transport's answer: counts it in the
 * stats and maps it. rc and *resp are the transport's; returns as
 * request_fetch. */
int request_settle(struct request *req, const char *path_query, int rc,
                   struct http_response *resp, long *status);

/*
 * The one log line for a failed request, on the caller's thread: the
 * transport's account of it (resp->failure: retries used up, no complete
 * response, a refused redirect or body), else `reason` (what was wrong
 * with a response that did come), else its HTTP status, else the errno;
 * debug for a 404 or -ECANCELED, else a warning. resp is the request's, as
 * request_fetch left it; NULL when none was sent.
 */
void request_log_failure(const char *path_query, int rc, const struct http_response *resp,
                         const char *reason);

/* Appends base [+ "/" + escaped id + tail] to b. 0 or -ENOMEM. */
int request_append_path(struct buf *b, const char *base, const char *id,
                        const char *tail);

/* Appends "?name=value" or "&name=value", value percent-escaped (it can add
 * no parameter). 0 or -ENOMEM. */
int request_append_param(struct buf *b, const char *name, const char *value);

/* Appends the context's organization_id and project_id as parameters.
 * 0 or -ENOMEM. */
int request_append_scope(struct buf *b, const struct request *req);

/*
 * The path and query `base` "/" id `tail`, then organization_id and
 * project_id: id is percent-escaped (it can add no path segment or query
 * parameter), `tail` (a further path and/or "?query", may be NULL) is
 * copied as it is. Malloc'd, NULL when out of memory. Thread-safe.
 */
char *request_object_url(const struct request *req, const char *base, const char *id,
                         const char *tail);

#endif
