/*
 * api_types — the types the modules of the API layer share: an object of a
 * response, the callbacks that receive objects, the preparer of a page, and
 * the endpoints and outcomes requests are counted by.
 *
 * Types only, so that request.c, listpages.c and produced.c below or beside
 * api.c can use them without including api.h.
 */
#ifndef BATCHFS_API_TYPES_H
#define BATCHFS_API_TYPES_H

#include <stdbool.h>
#include <stddef.h>

#include "batchfs/buf.h"
#include "batchfs/jsontext.h"

/* One object of a response. Everything is borrowed and valid only during
 * the callback that receives it. */
struct api_object {
    const char *raw; /* the object's exact bytes as received: valid JSON,
                        an object ('{' first) */
    size_t raw_len;
    const char *id; /* its identity (id, item_id or source_directory_file_id)
                       decoded: non-empty, no NUL inside, NUL-terminated */
    size_t id_len;
    const void *prepared;           /* what an api_preparer made of it, or NULL */
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
 * page's body, which the objects' `raw` point into, a big buffer (see
 * buf.h): it may take the body (buf_steal_big, which then does not move
 * it) to keep those bytes beyond the listing without copying them,
 * and must then keep them valid until release(), or free it when its fn
 * reads no object's `raw` (they then point to freed bytes). `again` is the path and
 * query that fetch the page again (api_fetch_again) when the page was asked
 * for by offset, else NULL (a page reached by a token may not be had
 * again); borrowed for the call. prepare() runs on
 * several threads at once and must be thread-safe; a negative errno from
 * it ends the listing. The members named by `keys` (at most
 * API_PREPARER_MAX_KEYS) are located in the same pass over each object as
 * its identity, and given to prepare() in `fields`. expect(), when not
 * NULL, is called once on the delivering thread before the first objects,
 * with the total_size of the first page that gives one (at most max_items
 * and API_EXPECT_MAX): a hint for sizing what the objects go into, which
 * the server may get wrong either way.
 */
struct api_preparer {
    int (*prepare)(void *arg, struct api_object *objects, size_t count, struct buf *body,
                   const char *again, void **page_state);
    void (*release)(void *arg, void *page_state);
    void (*expect)(void *arg, size_t total);
    const char *const *keys;
    size_t n_keys;
    void *arg;
    /* When not NULL: an atomic counter of the memory the listing holds
     * while it is fetched, to which the API adds what it holds for the
     * listing itself (the ids seen, to catch repeats: tens of megabytes at
     * a million items) and takes it back when the listing ends, so that
     * whoever keeps a memory budget can count it. */
    size_t *charge;
};

#define API_PREPARER_MAX_KEYS 12

/* The most objects a listing's total_size makes room for (expect() is
 * told no more): one that lies high must not reserve gigabytes. Beyond
 * it, room grows as objects come. */
#define API_EXPECT_MAX ((size_t)1 << 20)

/* Brings what one holder counts in an api_preparer.charge counter from
 * *charged to `held` bytes (the counter is atomic: others read it while
 * the holder changes it). Safe with charge NULL. */
static inline void api_charge_update(size_t *charge, size_t *charged, size_t held)
{
    if (!charge || held == *charged)
        return;
    if (held > *charged)
        __atomic_add_fetch(charge, held - *charged, __ATOMIC_RELAXED);
    else
        __atomic_sub_fetch(charge, *charged - held, __ATOMIC_RELAXED);
    *charged = held;
}

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

/* What the requests of an api were, for .batchfs/stats. */
enum api_endpoint {
    API_LIST_JOBS,
    API_GET_JOB,
    API_LIST_ITEMS,
    API_LIST_BATCHES,
    API_GET_BATCH,
    API_GET_PARSE,            /* GET /api/v2/parse/{id} */
    API_GET_EXTRACT,          /* GET /api/v2/extract/{id} */
    API_GET_PARSE_RESULT,     /* GET /api/v1/parsing/job/{id}/result/... */
    API_LIST_DIRECTORY_FILES, /* GET /api/v1/beta/directories/{id}/files */
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

#endif
