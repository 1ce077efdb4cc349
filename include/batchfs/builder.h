/*
 * builder — a listing made from the API's pages: one named entry per
 * object, each with the blob of its object's file.
 *
 * As each page arrives, its objects' fields (status, item name, times) are
 * read from their text, their files measured and, for small objects, left
 * to be rendered from the page when read (see blob.h); the entries are
 * named at the end (items and results by names.c, the rest by id) and
 * sorted, but for items, which keep the API's order and are indexed by
 * name. The catalog drives a builder from one fetch; the builder knows
 * nothing of the cache, of freshness or of which request the pages answer.
 *
 * A builder belongs to one thread, the one running the fetch, except for
 * the preparer's functions (builder_preparer), which the API calls on the
 * threads that fetch the pages.
 */
#ifndef BATCHFS_BUILDER_H
#define BATCHFS_BUILDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "batchfs/api.h"
#include "batchfs/buf.h"
#include "batchfs/listing.h"
#include "batchfs/pagecache.h"

struct names;

/* No such string: the length of a decoded value that is not a string. */
#define BUILDER_ABSENT SIZE_MAX

/* No such string: the value of builder_strings lengths. */
#define BUILDER_NO_STRING UINT32_MAX

/* An entry's decoded strings, as offsets into the builder's arena until the
 * listing is finished (the arena moves as it grows). 32 bits each, the
 * arena staying below 4 GiB, so that a listing of a million items pays 16
 * bytes an entry for them while it is built. */
struct builder_strings {
    uint32_t id, id_len; /* id BUILDER_NO_STRING: names.c keeps it */
    uint32_t status, status_len; /* BUILDER_NO_STRING when none */
};

/* The counters of a job that the builder reads: total_items,
 * processed_items, failed_items and skipped_items, in that order. */
#define BUILDER_JOB_COUNTERS 4

/* A job of a job list (or a job looked up) as its page gave it, for
 * builder_on_jobs. Borrowed: valid during the call only. */
struct builder_job {
    const char *id;     /* decoded, NUL-terminated, no NUL inside */
    const char *status; /* decoded; NULL when absent, not a string or
                           holding a NUL */
    /* counts[i] where known[i]; known[i] is false for a counter that is
     * absent or not a whole number from 0 to 2^53 (jsontext_count). */
    size_t counts[BUILDER_JOB_COUNTERS];
    bool known[BUILDER_JOB_COUNTERS];
    struct timespec mtime; /* its entry's */
};

/* Receives the jobs a builder has just made entries of, page by page. */
typedef void (*builder_jobs_fn)(void *arg, const struct builder_job *jobs, size_t count);

/* A listing under construction. The fields are builder.c's, but for
 * `listing`, whose entries a caller may complete (time, content) between
 * the last builder_add_* and builder_finish. */
struct builder {
    struct listing *listing;
    size_t cap;
    struct names *names; /* items and results: names.c picks names */
    size_t expected;     /* entries the listing announced, not yet made room for */
    size_t announced;    /* entries the listing announced (0: not said) */
    bool named_by_id;    /* results: the file id is the item name */
    size_t n_fields;     /* how many of the builder's keys each object is read for */
    struct builder_strings *strings; /* parallel to listing->entries */
    struct builder_strings self_strings;
    struct buf arena;   /* every decoded string, NUL-terminated */
    /* The status kept last, which the next entry shares when it has the
     * same (the entries of a folder of items all do). */
    uint32_t last_status, last_status_len;
    struct buf scratch; /* one object's rendering */
    const char *what;   /* for log lines */
    size_t skipped;
    /* Where pages that can be fetched again are kept (see
     * builder_keep_pages); NULL: the listing holds its pages. Read by the
     * preparer on the fetching threads, so set before the fetch starts. */
    struct pagecache *pages;
    pagecache_fetch_fn fetch_again;
    void *fetch_arg;
    struct blob *last_page; /* the page of the last entry made (referenced) */
    /* What the builder holds (see builder_charge_to), as added to *charge
     * (atomically) after each page and taken back when the builder is
     * done; and two parts of it that are not in its arrays: the
     * footprints of the entries' files, the bytes their names and ids will
     * take once finished. */
    size_t *charge;
    size_t charged;
    size_t content_bytes, final_bytes;
    /* Jobs and a job: told of each entry made (see builder_on_jobs). */
    builder_jobs_fn on_jobs;
    void *on_jobs_arg;
    struct builder_job *jobs; /* the page's, for on_jobs */
    size_t jobs_cap;
};

/*
 * Starts an empty listing of `kind` in *b; `what` (borrowed, kept until
 * builder_finish or builder_discard) names it in log lines. 0, or -ENOMEM
 * (then *b holds nothing to discard).
 */
int builder_init(struct builder *b, enum listing_kind kind, const char *what);

/* Drops the listing under construction and everything the builder holds;
 * *b is left zeroed. Safe on a zeroed builder. */
void builder_discard(struct builder *b);

/*
 * Has the pages of the listing that can be fetched again (asked for by
 * offset) kept in `pages`, which may drop them and fetch them again with
 * fetch_again(fetch_arg, …), instead of held by the listing. For folders
 * whose items no longer change. Call before the fetch starts.
 */
void builder_keep_pages(struct builder *b, struct pagecache *pages,
                        pagecache_fetch_fn fetch_again, void *fetch_arg);

/*
 * Counts what the listing holds in *charge while it is built (an atomic
 * counter that others read: the catalog's page budget counts a listing
 * under construction like a cached one): the entries, the names being
 * settled, the room made for them, and, through the preparer
 * (api_preparer.charge), what the API holds for the listing. The builder
 * takes its share back when finished or discarded. Call before
 * builder_preparer.
 */
void builder_charge_to(struct builder *b, size_t *charge);

/*
 * For a listing of jobs or a job: calls fn(arg, …) with the jobs of each
 * page once their entries are made, on the thread that delivers the
 * objects (builder_add_objects), before the listing is finished, so that
 * what depends on each job (its counters, whether it finished) is noted
 * while the next pages are fetched. A listing that then fails has still
 * told of the jobs it made. Call before the fetch starts.
 */
void builder_on_jobs(struct builder *b, builder_jobs_fn fn, void *arg);

/* How many objects the listing's first page said it holds (its
 * total_size, capped at API_EXPECT_MAX); 0 before, or when it did not
 * say. */
size_t builder_announced(const struct builder *b);

/*
 * Sets *out to the preparer that renders a page's objects on the thread
 * that fetched it (for api_list_items_prepared and api_list_jobs_prepared),
 * with `b` as its arg. Its prepare and release run on any thread and only
 * read what builder_init and builder_keep_pages set in `b`; its
 * expect writes to `b`, on the thread that delivers the objects to
 * builder_add_objects.
 */
void builder_preparer(struct builder *b, struct api_preparer *out);

/*
 * api_objects_fn, with a struct builder as arg: adds an entry per object
 * of a page, rendered already by the preparer or rendered here. Objects
 * that cannot be used (text that is not valid JSON; in a list of jobs or
 * batches, an id names_is_id rejects, which could not be looked up again)
 * are left out and counted for one warning at the end. 0, or a negative
 * errno (-ENOMEM); the builder must then be discarded.
 */
int builder_add_objects(void *arg, const struct api_object *objects, size_t count);

/*
 * api_batch_fn, with a struct builder of kind LISTING_BATCH as arg: the
 * batch becomes the listing's self, its results the entries. 0, or a
 * negative errno; the builder must then be discarded.
 */
int builder_add_batch(void *arg, const struct api_object *batch,
                      const struct api_object *results, size_t count, bool results_null);

/*
 * Adds an entry named by `id` (borrowed, copied) with no status, time or
 * content, which the caller may set on b->listing before builder_finish.
 * For a listing named by id (jobs, a job, batches) known without a fetch.
 * 0, or -ENOMEM (the entry is then not added; the builder must be
 * discarded).
 */
int builder_add_id(struct builder *b, const char *id);

/*
 * Names the entries, sorts them by name (items: indexes them), counts the memory they hold, and
 * hands over the listing: 0 and *out with the one reference (release with
 * listing_release), or a negative errno (-ENOMEM, or -EINVAL when two items
 * share an id). Either way the builder is discarded.
 */
int builder_finish(struct builder *b, struct listing **out);

#endif
