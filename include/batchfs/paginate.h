/*
 * paginate — which page of a v1 list to request next, and when to stop.
 *
 * A pure state machine for the rules of doc/pagination.md: no I/O,
 * no JSON, no threads. The API layer asks for requests, sends them (the
 * requests of one call may run concurrently), reports every response in
 * ascending offset order, and asks again until the listing is done.
 *
 * The listing's dialect is learned from its first page:
 *   - a next_page_token without a total_size on the first page makes it
 *     token-driven: requests are sequential, each carrying page_token and
 *     offset (servers honour one or the other), and a page without a token
 *     ends it;
 *   - otherwise it is offset-driven: once a total_size is known, the pages
 *     below it are planned on a grid of the first page's item count and
 *     handed out in waves of at most max_parallel; after the plan it goes on
 *     sequentially from the end of what is covered, until an empty page.
 *     If a planned page repeats items already seen (the server ignores
 *     offsets) and the server gave tokens, the listing falls back to
 *     following them.
 * Loop protection: a token seen before, a page of items that were all seen
 * before, or more than max_pages requests ends the listing.
 *
 * Not for: parsing responses, counting distinct items (the caller says how
 * many of a page's items are new), or the v2 cursor lists.
 * Not thread-safe: one paginator belongs to one listing, driven by one
 * thread.
 */
#ifndef BATCHFS_PAGINATE_H
#define BATCHFS_PAGINATE_H

#include <stdbool.h>
#include <stddef.h>

struct paginate_config {
    size_t limit;        /* the limit= sent; 1..1000 */
    size_t max_parallel; /* most requests handed out by one paginate_next(); >= 1 */
    size_t max_pages;    /* most requests for the whole listing; >= 1 */
    /* How many items the listing holds, as known from elsewhere (a job's
     * counters); 0 = unknown. When it exceeds one page, the first
     * paginate_next() also asks for the pages it announces (offsets limit,
     * 2 x limit, ..., at most max_parallel requests in all), so that a long
     * listing does not wait one round trip for its first page alone. They
     * count only when the first page turns out full and the listing
     * offset-driven; otherwise they are dropped unread. A right hint costs
     * no request; one too high costs the pages past the end that were
     * asked for (at most max_parallel - 1). */
    size_t expected;
};

/* One page request. */
struct paginate_request {
    size_t offset;
    const char *page_token; /* NULL, or borrowed: valid until the next
                               paginate_report() or paginate_free() */
};

/* What a response said, as the caller parsed it. */
struct paginate_page {
    size_t offset;               /* the offset that was requested */
    size_t count;                /* elements in "items", malformed ones included */
    size_t new_items;            /* of those, how many were not seen before */
    const char *next_page_token; /* NULL or "" when absent; copied */
    size_t total_size;           /* 0 when absent (0 means absent, as in the API) */
};

enum paginate_verdict {
    PAGINATE_DELIVER, /* hand this page's new items on, now */
    PAGINATE_HOLD,    /* a gap precedes this page: keep it and every later
                         page of the batch, send what paginate_next() gives,
                         then report the kept pages again */
    PAGINATE_DISCARD, /* drop it: the listing ended, or what it holds was
                         covered already */
};

enum paginate_end {
    PAGINATE_NOT_DONE = 0,
    PAGINATE_END_EMPTY,          /* a page with no items */
    PAGINATE_END_NO_SIGNAL,      /* neither next_page_token nor total_size */
    PAGINATE_END_NO_TOKEN,       /* a token-driven listing's page without one */
    PAGINATE_END_TOKEN_LOOP,     /* a next_page_token seen before */
    PAGINATE_END_ITEM_LOOP,      /* a page whose items were all seen before */
    PAGINATE_END_TOO_MANY_PAGES, /* max_pages requests were not enough */
};

struct paginate;

/* NULL when out of memory or the config is invalid. */
struct paginate *paginate_new(const struct paginate_config *config);
void paginate_free(struct paginate *p);

/*
 * Writes the requests to send now into out[0..cap), in ascending offset
 * order, and sets *count; *count == 0 means the listing is done. Call it only
 * when every request it handed out before has been reported (a page answered
 * PAGINATE_HOLD counts as reported). Returns 0, or -EINVAL when cap is 0.
 */
int paginate_next(struct paginate *p, struct paginate_request *out, size_t cap,
                  size_t *count);

/*
 * Reports one response. Responses to one paginate_next() call are reported
 * in ascending offset order; once the listing has ended every report is
 * answered PAGINATE_DISCARD. Returns PAGINATE_DISCARD on out of memory too,
 * after ending the listing with PAGINATE_END_TOO_MANY_PAGES.
 */
enum paginate_verdict paginate_report(struct paginate *p,
                                      const struct paginate_page *page);

/*
 * Whether the next response to report is dropped unread whatever it holds
 * (or however its request failed): the listing has ended, or it is one of
 * the pages asked for with the first that the first page ruled out. When
 * true, it counts as reported: the caller drops it without reporting it.
 */
bool paginate_discard_next(struct paginate *p);

/* True once no more requests are needed. */
bool paginate_done(const struct paginate *p);

/* Why the listing ended, PAGINATE_NOT_DONE while it goes on. */
enum paginate_end paginate_end_reason(const struct paginate *p);

/* True for the reasons that mean the server repeated itself. */
bool paginate_end_is_loop(enum paginate_end reason);

/* A short English name for logs ("empty page", "repeated token", …). */
const char *paginate_end_name(enum paginate_end reason);

/*
 * True once two delivered pages gave different non-zero total_sizes: the
 * list changed while it was read, so offsets shifted between its pages and
 * what was delivered may miss objects or hold deleted ones. The listing
 * goes on regardless; reading it again is the caller's decision.
 */
bool paginate_total_moved(const struct paginate *p);

/* Requests handed out so far. */
size_t paginate_requests(const struct paginate *p);

#endif
