/*
 * paginate — the v1 list pagination rules as a state machine (see
 * include/batchfs/paginate.h).
 *
 * For: deciding offsets, tokens, parallel waves and the end of a listing
 * from what each response said. Not for: I/O, JSON, or knowing which items
 * a page held (the caller counts new items).
 *
 * No single signal is trusted (doc/pagination.md): total_size only sizes the
 * parallel plan, tokens are sent together with the offset, and every end
 * condition that a misbehaving server could defeat has a loop guard behind
 * it, so that a listing always terminates within max_pages requests.
 */
#include "batchfs/paginate.h"

#include "batchfs/idset.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct paginate {
    struct paginate_config config;
    bool first_issued; /* the offset-0 request was handed out */
    bool started;      /* the first page was delivered */
    bool token_driven; /* follow next_page_token one page at a time */
    bool first_token;  /* the first page carried a next_page_token */
    bool abandoned;    /* the rest of this wave is dropped: offsets were ignored */
    bool holding;      /* a page waits for the gap before it to be filled */
    bool total_moved;  /* two delivered pages gave different total_sizes */
    enum paginate_end end;
    size_t grid;         /* the first page's item count: the planned page size */
    size_t covered;      /* the items [0, covered) were delivered */
    size_t plan_next;    /* the next offset of the parallel plan */
    size_t total;        /* the latest non-zero total_size */
    char *token;         /* to send with the next sequential request, or NULL */
    size_t requests;     /* requests handed out */
    size_t ahead_left;   /* pages asked for with the first, still to be dropped unread */
    struct idset tokens; /* every next_page_token given, to catch loops */
};

struct paginate *paginate_new(const struct paginate_config *config)
{
    struct paginate *p;

    if (!config || config->limit == 0 || config->max_parallel == 0 ||
        config->max_pages == 0)
        return NULL;
    p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->config = *config;
    return p;
}

void paginate_free(struct paginate *p)
{
    if (!p)
        return;
    idset_free(&p->tokens);
    free(p->token);
    free(p);
}

static void paginate_emit(struct paginate *p, struct paginate_request *out, size_t *count,
                          size_t offset, const char *token)
{
    out[*count].offset = offset;
    out[*count].page_token = token;
    (*count)++;
    p->requests++;
}

int paginate_next(struct paginate *p, struct paginate_request *out, size_t cap,
                  size_t *count)
{
    size_t budget;

    *count = 0;
    if (cap == 0)
        return -EINVAL;
    if (p->end != PAGINATE_NOT_DONE)
        return 0;
    if (!p->first_issued) {
        p->first_issued = true;
        paginate_emit(p, out, count, 0, NULL);
        /* Pages the hint says are there go out with the first, on the grid
         * a full page would set, as many as one wave may hold. */
        for (size_t next = p->config.limit;
             next < p->config.expected && *count < cap &&
             *count < p->config.max_parallel && *count < p->config.max_pages;
             next += p->config.limit) {
            paginate_emit(p, out, count, next, NULL);
            p->ahead_left++;
            if (next > SIZE_MAX - p->config.limit)
                break;
        }
        return 0;
    }
    if (!p->started)
        return -EINVAL; /* the first page has not been reported yet */
    p->abandoned = false;
    budget = p->config.max_pages - p->requests;
    if (budget == 0) {
        p->end = PAGINATE_END_TOO_MANY_PAGES;
        return 0;
    }
    if (p->holding) {
        /* The gap is always right after what was delivered. */
        p->holding = false;
        paginate_emit(p, out, count, p->covered, NULL);
        return 0;
    }
    if (!p->token_driven && p->total > 0 && p->grid > 0) {
        /* Pages past a sequential stretch restart the grid where it ended. */
        if (p->plan_next < p->covered)
            p->plan_next = p->covered;
        while (p->plan_next < p->total && *count < cap &&
               *count < p->config.max_parallel && *count < budget) {
            paginate_emit(p, out, count, p->plan_next, NULL);
            if (p->plan_next > SIZE_MAX - p->grid) {
                p->plan_next = SIZE_MAX;
                break;
            }
            p->plan_next += p->grid;
        }
        if (*count > 0)
            return 0;
    }
    /* After the plan, or without one: one page at a time from the end of
     * what is covered. Past total_size this is the confirming request that
     * catches a total that lied low. */
    paginate_emit(p, out, count, p->covered, p->token);
    return 0;
}

bool paginate_discard_next(struct paginate *p)
{
    if (p->end != PAGINATE_NOT_DONE)
        return true;
    if (p->started && p->ahead_left) {
        p->ahead_left--;
        return true;
    }
    return false;
}

enum paginate_verdict paginate_report(struct paginate *p,
                                      const struct paginate_page *page)
{
    const char *token = page->next_page_token;
    size_t end_offset;
    int rc;

    if (p->abandoned || paginate_discard_next(p))
        return PAGINATE_DISCARD;
    if (token && !*token)
        token = NULL;
    if (!p->started) {
        p->started = true;
        /* With a total the pages can be fetched at once by offset; the
         * tokens stay the fallback should the server ignore offsets. */
        p->first_token = token != NULL;
        p->token_driven = token != NULL && page->total_size == 0;
        p->grid = page->count;
        p->plan_next = page->count;
        /* The pages asked for with this one assumed full pages, offset by
         * offset. Right, they are planned pages like any other (the plan
         * goes on from where they cover); wrong (a short page sets a
         * smaller grid, a token-driven listing ignores offsets), they are
         * dropped as they come. */
        if (!p->token_driven && p->grid == p->config.limit)
            p->ahead_left = 0;
    } else if (!p->token_driven && page->offset > p->covered && page->count > 0) {
        /* A short page left a hole before this one: fill it first, or the
         * items in it would be skipped or delivered out of order. */
        p->holding = true;
        return PAGINATE_HOLD;
    }

    if (page->count == 0) {
        p->end = PAGINATE_END_EMPTY;
        return PAGINATE_DISCARD;
    }
    end_offset =
        page->offset > SIZE_MAX - page->count ? SIZE_MAX : page->offset + page->count;
    if (end_offset <= p->covered)
        return PAGINATE_DISCARD; /* a held page that a gap fill overlapped */
    if (page->new_items == 0) {
        if (!p->token_driven && p->first_token && p->token) {
            /* Offsets were ignored (the page repeats what was seen): go on
             * by token from where delivery stands, dropping the rest of
             * this wave. */
            p->token_driven = true;
            p->abandoned = true;
            return PAGINATE_DISCARD;
        }
        p->end = PAGINATE_END_ITEM_LOOP;
        return PAGINATE_DISCARD;
    }

    p->covered = end_offset;
    /* A total that changes between pages means objects were added or
     * removed while the listing was read: offsets shifted under it, so it
     * may miss objects and hold deleted ones. Only the caller can tell
     * what to do about it (list again); the pages still go on. */
    if (page->total_size > 0 && p->total > 0 && page->total_size != p->total)
        p->total_moved = true;
    if (page->total_size > 0)
        p->total = page->total_size;
    /* The token handed out is borrowed until this report (paginate.h). */
    free(p->token);
    p->token = NULL;
    if (token) {
        rc = idset_add(&p->tokens, token, strlen(token));
        if (rc > 0) {
            p->token = strdup(token);
            rc = p->token ? rc : -ENOMEM;
        }
        if (rc < 0) {
            p->end = PAGINATE_END_TOO_MANY_PAGES;
            return PAGINATE_DISCARD;
        }
        if (rc == 0) {
            p->end = PAGINATE_END_TOKEN_LOOP;
            return PAGINATE_DELIVER;
        }
    }
    if (!token && p->token_driven)
        p->end = PAGINATE_END_NO_TOKEN;
    else if (!token && p->first_token && p->total > 0 && p->covered >= p->total)
        p->end = PAGINATE_END_NO_TOKEN; /* both signals agree: nothing more */
    else if (!token && page->total_size == 0)
        p->end = PAGINATE_END_NO_SIGNAL;
    return PAGINATE_DELIVER;
}

bool paginate_done(const struct paginate *p)
{
    return p->end != PAGINATE_NOT_DONE;
}

enum paginate_end paginate_end_reason(const struct paginate *p)
{
    return p->end;
}

bool paginate_end_is_loop(enum paginate_end reason)
{
    return reason == PAGINATE_END_TOKEN_LOOP || reason == PAGINATE_END_ITEM_LOOP;
}

const char *paginate_end_name(enum paginate_end reason)
{
    switch (reason) {
    case PAGINATE_NOT_DONE:
        return "not done";
    case PAGINATE_END_EMPTY:
        return "empty page";
    case PAGINATE_END_NO_SIGNAL:
        return "no next_page_token and no total_size";
    case PAGINATE_END_NO_TOKEN:
        return "no next_page_token";
    case PAGINATE_END_TOKEN_LOOP:
        return "repeated next_page_token";
    case PAGINATE_END_ITEM_LOOP:
        return "page of items already seen";
    case PAGINATE_END_TOO_MANY_PAGES:
        return "too many pages";
    }
    return "unknown";
}

bool paginate_total_moved(const struct paginate *p)
{
    return p->total_moved;
}

size_t paginate_requests(const struct paginate *p)
{
    return p->requests;
}
