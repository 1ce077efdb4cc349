/*
 * listpages — the pages of one list, read into objects and handed on in
 * order: the engine behind api.c's list endpoints (and produced.c's).
 *
 * A v1 list is read whole by listpages_read_v1(): paginate.c says which
 * pages to request, the listing's own thread submits them through the
 * transport's asynchronous call (in parallel once the first page gives a
 * total_size, bounded by max_parallel) and reads each body as it arrives,
 * read with jsontext in place, objects that miss their identity, have the
 * wrong status or repeat an id already delivered are dropped, the preparer
 * runs, and the rest reach the callback page by page, in offset order. The
 * v2 lists, by cursor, are walked by listpages_walk_cursor() with the page
 * functions below. The readers of a body and of one object serve api.c's single
 * objects (a job, a batch and its results) too.
 *
 * Not for: escaping URLs, HTTP statuses and the requests themselves — every
 * request goes through request.c, which maps statuses to errnos — nor the
 * pagination rules (paginate.c), caching, FUSE or file names. Only the API
 * layer (api.c, produced.c) includes this header; the rest of batchfs goes
 * through api.h.
 */
#ifndef BATCHFS_LISTPAGES_H
#define BATCHFS_LISTPAGES_H

#include <stdbool.h>
#include <stddef.h>

#include "batchfs/api_types.h"
#include "batchfs/idset.h"
#include "batchfs/jsontext.h"
#include "batchfs/request.h"
#include "batchfs/transport.h"

struct paginate_request;

/* Most page requests one listing has in flight; api_new clamps
 * max_parallel to it. */
#define LISTPAGES_MAX_PARALLEL 64

/*
 * One listing being read: what it is, for building its URLs and checking its
 * objects (set by the caller, the rest zero), and what it has delivered. It
 * belongs to the thread reading the list; the caller frees `ids` with
 * idset_free() once done, whatever the outcome.
 */
struct listpages {
    struct request *request;             /* sends the requests; borrowed */
    struct request_limits limits;        /* the request context's */
    const char *job_id;                  /* items of this job; NULL for the job list */
    const char *status;                  /* the status filter, or NULL */
    const char *id_key;                  /* "id" or "item_id" */
    const struct api_preparer *preparer; /* or NULL */
    size_t expected;                     /* items it may hold, 0 = unknown (paginate.h) */
    char path[512];                      /* the listing's path, for log lines */
    struct idset ids;                    /* ids delivered (or tentatively taken) so far */
    size_t charged; /* bytes of `ids` added to preparer->charge */
    size_t delivered;                    /* objects handed to the callback */
    bool hinted;                         /* preparer->expect has been called */
};

struct listpages_candidate;
struct listpages_wave;

/*
 * One page of a listing. The caller sets list, offset and path_query (a
 * malloc'd string the page then owns), the rest zero; the page owns all it
 * points to until listpages_page_release().
 */
struct listpages_page {
    struct listpages *list;
    char *path_query;
    size_t offset;
    bool by_offset; /* asked for by offset alone: path_query fetches it again */
    bool pending; /* not yet fetched and read (the listing's thread) */
    /* While it is fetched by a listing: its request, its place in the
     * readers' queue once it arrived, then in its wave's list of pages
     * read (listpages.c's). */
    struct transport_call call;
    struct listpages_wave *wave;
    struct listpages_page *read_next;
    struct listpages_page *ready_next;
    /* Among its wave's pages submitted and not yet arrived (under the
     * wave's lock). */
    struct listpages_page *flying_next;

    /* Filled in by the fetch; read after it completes. */
    int rc;
    long status;
    char reason[160];
    struct http_response resp;
    struct listpages_candidate *candidates;
    char *ids;                /* the candidates' decoded ids, one block */
    struct json_span *fields; /* the preparer's keys' values, per candidate */
    size_t n_candidates;
    size_t count;          /* elements of "items" */
    size_t malformed;      /* elements dropped for want of an identity */
    size_t wrong_status;
    char *token;    /* next_page_token; NULL when absent or unusable */
    size_t total;   /* 0 when absent */
    void *prepared; /* the preparer's page state */
};

/*
 * Reads every page of the v1 list `list` names (the jobs, or one job's
 * items) and hands its objects to fn, as api.h describes. 0 when the list
 * ended, even early on a loop (logged); -ESTALE when it was read to its end
 * but its total_size changed between pages (objects moved while it was
 * read: what fn was given may miss some and hold deleted ones; the caller
 * may read it again); -EFBIG past max_items objects or max_items + 2
 * pages; else the first failure (logged once) or fn's error.
 * The calling thread submits up to max_parallel page requests at once
 * through the transport, and the transport's thread submits the next as a
 * page arrives (up to twice max_parallel sent and not yet read); each body
 * is read (parsed, and prepared by the
 * list's preparer) as it arrives, by one of a few reader threads made once
 * for the process (never a thread per listing or per page) or by the
 * calling thread while it waits; all that depends on order (duplicates,
 * the paginator, fn) runs on the calling thread. When a cancel token is current for the
 * calling thread (transport.h) and fires, the requests in flight are
 * cancelled and the listing ends with -ECANCELED.
 */
int listpages_read_v1(struct listpages *list, api_objects_fn fn, void *arg);

/*
 * Fetches page->path_query and reads the body into the page: rc (0 or a
 * negative errno, with status and reason for the log line), the objects,
 * count, token and total; then runs the list's preparer. Logs nothing but
 * an unusable next_page_token or total_size (debug). Safe on any thread,
 * for pages of its own.
 */
void listpages_page_fetch(struct listpages_page *page);

/*
 * Marks the page's repeated objects and takes its new ids into `ids`.
 * Returns how many of the page's objects were not seen before, or -ENOMEM
 * with `ids` as it was. Not thread-safe: the listing's thread.
 */
long listpages_page_take_ids(struct listpages_page *page, struct idset *ids);

/*
 * Hands the page's kept objects (its ids taken) to fn, logging what was
 * dropped, and the first total_size to the preparer's expect(); then
 * releases the page whatever the outcome. 0, -ENOMEM, -EFBIG past
 * max_items objects in the listing, or fn's negative errno. The listing's
 * thread.
 */
int listpages_page_deliver(struct listpages_page *page, api_objects_fn fn, void *arg);

/* Frees all the page holds (its prepared state through the preparer) and
 * zeroes it. A zeroed page is fine. */
void listpages_page_release(struct listpages_page *page);

/* ---- reading a body ---------------------------------------------------- */

/*
 * Finds the members `keys` (count of them) of the body, which must be a JSON
 * object: their spans in out ({0, 0} when absent). 0, or -EIO with why in
 * reason. Pure: the body is only read.
 */
int listpages_body_members(const struct http_response *resp, const char *const *keys,
                           size_t count, struct json_span *out, char *reason,
                           size_t reason_size);

/*
 * Decodes the string at `span` of `text` into dst (room for span.len bytes)
 * when it is usable as an id or token: a string, not empty, without NUL.
 * Returns its length (dst is then NUL-terminated), or 0 when it is not. Pure.
 */
size_t listpages_decode_clean(const char *text, struct json_span span, char *dst);

/*
 * Fills `object` from the element at text[span): its identity, the member
 * `id_key`, is decoded into dst (room for span.len bytes); the object
 * borrows text and dst. With `status`, *status_ok says whether its "status"
 * is that string. False when the element is not an object with an
 * identity. `text` is a body that listpages_body_members accepted, which
 * validated it whole: its elements are searched, not checked again. Pure.
 */
bool listpages_read_object(const char *text, struct json_span span, const char *id_key,
                           const char *status, bool *status_ok, char *dst,
                           struct api_object *object);

/*
 * The elements of the array at `array` (a span of text), as spans relative
 * to `text`, a body that listpages_body_members accepted (validated whole,
 * so the elements are stepped over, not checked): *spans is malloc'd (the
 * caller frees it) and holds *count. 0, -ENOMEM, or -EIO when the array is
 * not one.
 */
int listpages_locate_elements(const char *text, struct json_span array,
                              struct json_span **spans, size_t *count);

/* ---- defined in api.c: the requests the engine sends ------------------- */

/*
 * Reads the v2 list at `base` "/" id `tail` (id and tail NULL for `base`
 * alone) page after page by cursor (page_size, page_token), handing each
 * page's objects that have a string `id` to fn: objects already seen are
 * dropped; the list ends at an empty or absent next_page_token, or with a
 * warning at a token seen before or a page of objects all seen before; past
 * max_items objects (or max_items + 2 pages) it stops with -EFBIG. A failed
 * page goes first to failed (may be NULL) with failed_arg: its negative
 * errno (once it has logged) ends the list with it; 0 has the failure
 * logged once (request_log_failure) and its errno returned. fn's negative
 * errno aborts the list with it. Runs on the calling thread; thread-safe
 * for distinct lists.
 */
int listpages_walk_cursor(struct request *req, const char *base, const char *id,
                          const char *tail,
                          int (*failed)(void *failed_arg,
                                        const struct listpages_page *page),
                          void *failed_arg, api_objects_fn fn, void *arg);

#endif
