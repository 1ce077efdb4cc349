/*
 * Unit tests for paginate: every dialect of the v1 lists played by a
 * scripted server, checking that each item arrives exactly once and in order,
 * that the listing ends for the documented reason, and what it cost in
 * requests. The driver below mirrors how listpages.c uses the paginator,
 * holds and gap fills included.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batchfs/paginate.h"

enum server_tokens {
    TOKENS_NONE,   /* never a next_page_token */
    TOKENS_NEXT,   /* a token while items remain */
    TOKENS_ALWAYS, /* a token on every non-empty page, the last one too */
    TOKENS_REPEAT, /* the same token on every page */
};

/* A server holding items 0..n_items-1. */
struct server {
    size_t n_items;
    size_t cap; /* most items it returns per page */
    enum server_tokens tokens;
    bool ignores_offset; /* starts at 0 unless a token says otherwise */
    bool ignores_token;
    size_t total;          /* total_size it reports; 0 = absent */
    bool total_first_only; /* total_size on the first page only */
    size_t short_at;       /* a page starting here is cut short ... */
    size_t short_len;      /* ... to this many items (0: no short page) */
    size_t requests;
    size_t max_wave;
    size_t first_wave; /* requests of the first paginate_next() */
};

struct response {
    size_t offset;
    size_t start;
    size_t count;
    char token[32];
    size_t total;
};

struct listing {
    size_t *delivered;
    size_t n_delivered;
    unsigned char *seen;
    enum paginate_end reason;
};

static void server_answer(struct server *s, const struct paginate_request *req,
                          struct response *out)
{
    size_t start = s->ignores_offset ? 0 : req->offset;
    size_t count;

    if (req->page_token && !s->ignores_token && s->tokens != TOKENS_REPEAT)
        start = strtoull(req->page_token + 1, NULL, 10);
    count = start < s->n_items ? s->n_items - start : 0;
    if (count > s->cap)
        count = s->cap;
    if (s->short_len && start == s->short_at && count > s->short_len)
        count = s->short_len;
    memset(out, 0, sizeof(*out));
    out->offset = req->offset;
    out->start = start;
    out->count = count;
    out->total = s->total_first_only && s->requests > 0 ? 0 : s->total;
    s->requests++;
    if (count > 0 && s->tokens == TOKENS_REPEAT)
        snprintf(out->token, sizeof(out->token), "same");
    else if (count > 0 && (s->tokens == TOKENS_ALWAYS ||
                           (s->tokens == TOKENS_NEXT && start + count < s->n_items)))
        snprintf(out->token, sizeof(out->token), "t%zu", start + count);
}

/* Reports one response the way listpages.c does: count the items not
 * delivered yet, and deliver them if told to. */
static enum paginate_verdict report(struct paginate *p, struct listing *l,
                                    const struct response *r)
{
    struct paginate_page page = {
        .offset = r->offset,
        .count = r->count,
        .next_page_token = r->token[0] ? r->token : NULL,
        .total_size = r->total,
    };
    enum paginate_verdict v;

    for (size_t i = r->start; i < r->start + r->count; i++)
        page.new_items += !l->seen[i];
    v = paginate_report(p, &page);
    if (v == PAGINATE_DELIVER) {
        for (size_t i = r->start; i < r->start + r->count; i++) {
            if (!l->seen[i]) {
                l->seen[i] = 1;
                l->delivered[l->n_delivered++] = i;
            }
        }
    }
    return v;
}

/* Drives a listing told that the server may hold `expected` items. */
static void run_listing_expecting(struct server *s, size_t limit, size_t max_parallel,
                                  size_t max_pages, size_t expected, struct listing *l)
{
    struct paginate_config config = {limit, max_parallel, max_pages, expected};
    struct paginate_request reqs[64];
    struct response resps[64], held[64];
    size_t n_held = 0, n, n_new_held;
    struct paginate *p = paginate_new(&config);

    assert_non_null(p);
    memset(l, 0, sizeof(*l));
    l->delivered = calloc(s->n_items + 1, sizeof(*l->delivered));
    l->seen = calloc(s->n_items + 1, 1);
    assert_non_null(l->delivered);
    assert_non_null(l->seen);
    for (;;) {
        assert_int_equal(paginate_next(p, reqs, 64, &n), 0);
        if (n == 0)
            break;
        assert_true(n <= max_parallel);
        if (n > s->max_wave)
            s->max_wave = n;
        if (s->first_wave == 0)
            s->first_wave = n;
        for (size_t i = 1; i < n; i++)
            assert_true(reqs[i].offset > reqs[i - 1].offset);
        for (size_t i = 0; i < n; i++)
            server_answer(s, &reqs[i], &resps[i]);
        n_new_held = 0;
        for (size_t i = 0; i < n; i++) {
            if (n_new_held > 0 || report(p, l, &resps[i]) == PAGINATE_HOLD) {
                assert_int_equal(n_held, 0);
                resps[n_new_held++] = resps[i];
            }
        }
        if (n_new_held > 0) {
            memcpy(held, resps, n_new_held * sizeof(*held));
            n_held = n_new_held;
            continue;
        }
        for (size_t i = 0; i < n_held; i++) {
            if (report(p, l, &held[i]) == PAGINATE_HOLD) {
                memmove(held, held + i, (n_held - i) * sizeof(*held));
                n_held -= i;
                goto next_round;
            }
        }
        n_held = 0;
    next_round:;
    }
    assert_true(paginate_done(p));
    assert_int_equal(paginate_requests(p), s->requests);
    l->reason = paginate_end_reason(p);
    paginate_free(p);
}

static void run_listing(struct server *s, size_t limit, size_t max_parallel,
                        size_t max_pages, struct listing *l)
{
    run_listing_expecting(s, limit, max_parallel, max_pages, 0, l);
}

static void listing_free(struct listing *l)
{
    free(l->delivered);
    free(l->seen);
}

/* Every item of the server exactly once, in order. */
static void assert_complete(const struct listing *l, size_t n_items)
{
    assert_int_equal(l->n_delivered, n_items);
    for (size_t i = 0; i < l->n_delivered; i++)
        assert_int_equal(l->delivered[i], i);
}

/* The first `n` items, in order, and nothing else. */
static void assert_prefix(const struct listing *l, size_t n)
{
    assert_int_equal(l->n_delivered, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(l->delivered[i], i);
}

static size_t pages_for(size_t n_items, size_t page)
{
    return (n_items + page - 1) / page;
}

static void test_both_signals(void **state)
{
    struct server s = {
        .n_items = 2500, .cap = 1000, .tokens = TOKENS_NEXT, .total = 2500};
    struct listing l;

    (void)state;
    run_listing(&s, 1000, 4, 100, &l);
    assert_complete(&l, 2500);
    /* The total makes it offset-driven: pages 2 and 3 go out together, and
     * the last page, without a token, agrees with the total: no more. */
    assert_int_equal(s.max_wave, 2);
    assert_int_equal(s.requests, 3);
    assert_int_equal(l.reason, PAGINATE_END_NO_TOKEN);
    listing_free(&l);
}

static void test_token_only(void **state)
{
    struct server s = {.n_items = 2500, .cap = 1000, .tokens = TOKENS_NEXT};
    struct listing l;

    (void)state;
    run_listing(&s, 1000, 4, 100, &l);
    assert_complete(&l, 2500);
    assert_int_equal(s.requests, 3);
    assert_int_equal(l.reason, PAGINATE_END_NO_TOKEN);
    listing_free(&l);
}

static void test_token_on_last_page_too(void **state)
{
    struct server s = {.n_items = 3000, .cap = 1000, .tokens = TOKENS_ALWAYS};
    struct listing l;

    (void)state;
    run_listing(&s, 1000, 4, 100, &l);
    assert_complete(&l, 3000);
    assert_int_equal(s.requests, 4); /* the empty page after the last one */
    assert_int_equal(l.reason, PAGINATE_END_EMPTY);
    listing_free(&l);
}

static void test_total_only_parallel(void **state)
{
    struct server s = {.n_items = 9500, .cap = 1000, .total = 9500};
    struct listing l;

    (void)state;
    run_listing(&s, 1000, 4, 100, &l);
    assert_complete(&l, 9500);
    /* Ten pages and the request that confirms nothing follows. */
    assert_int_equal(s.requests, 11);
    assert_int_equal(s.max_wave, 4);
    assert_int_equal(l.reason, PAGINATE_END_EMPTY);
    listing_free(&l);
}

static void test_capped_pages(void **state)
{
    struct server s = {.n_items = 2500, .cap = 100, .total = 2500};
    struct listing l;

    (void)state;
    run_listing(&s, 1000, 8, 1000, &l);
    assert_complete(&l, 2500);
    assert_int_equal(s.requests, pages_for(2500, 100) + 1);
    assert_int_equal(s.max_wave, 8);
    listing_free(&l);
}

static void test_capped_pages_with_tokens(void **state)
{
    struct server s = {.n_items = 2500, .cap = 300, .tokens = TOKENS_NEXT};
    struct listing l;

    (void)state;
    run_listing(&s, 1000, 8, 1000, &l);
    assert_complete(&l, 2500);
    assert_int_equal(s.requests, pages_for(2500, 300));
    listing_free(&l);
}

static void test_no_signals(void **state)
{
    struct server s = {.n_items = 2500, .cap = 1000};
    struct listing l;

    (void)state;
    run_listing(&s, 1000, 4, 100, &l);
    /* The documented stop: nothing says another page exists. */
    assert_prefix(&l, 1000);
    assert_int_equal(s.requests, 1);
    assert_int_equal(l.reason, PAGINATE_END_NO_SIGNAL);
    listing_free(&l);
}

static void test_total_lies_low(void **state)
{
    struct server s = {.n_items = 5000, .cap = 1000, .total = 1500};
    struct listing l;

    (void)state;
    run_listing(&s, 1000, 4, 100, &l);
    assert_complete(&l, 5000);
    assert_true(s.requests <= pages_for(5000, 1000) + 1);
    assert_int_equal(l.reason, PAGINATE_END_EMPTY);
    listing_free(&l);
}

static void test_total_lies_high(void **state)
{
    struct server s = {.n_items = 2500, .cap = 1000, .total = 100000};
    struct listing l;

    (void)state;
    run_listing(&s, 1000, 4, 1000, &l);
    assert_complete(&l, 2500);
    /* The first page, then one wave that ran into the end: no wave after. */
    assert_int_equal(s.requests, 1 + 4);
    assert_int_equal(l.reason, PAGINATE_END_EMPTY);
    listing_free(&l);
}

static void test_total_on_first_page_only(void **state)
{
    struct server s = {
        .n_items = 2500, .cap = 1000, .total = 2500, .total_first_only = true};
    struct listing l;

    (void)state;
    run_listing(&s, 1000, 4, 100, &l);
    /* Later pages carry no signal, and that is the documented stop. */
    assert_prefix(&l, 2000);
    assert_int_equal(l.reason, PAGINATE_END_NO_SIGNAL);
    listing_free(&l);
}

static void test_repeated_token(void **state)
{
    struct server s = {.n_items = 5000, .cap = 1000, .tokens = TOKENS_REPEAT};
    struct listing l;

    (void)state;
    run_listing(&s, 1000, 4, 100, &l);
    assert_prefix(&l, 2000);
    assert_int_equal(s.requests, 2);
    assert_int_equal(l.reason, PAGINATE_END_TOKEN_LOOP);
    assert_true(paginate_end_is_loop(l.reason));
    listing_free(&l);
}

static void test_offset_ignored_tokens_honoured(void **state)
{
    struct server s = {
        .n_items = 2500, .cap = 1000, .tokens = TOKENS_NEXT, .ignores_offset = true};
    struct listing l;

    (void)state;
    run_listing(&s, 1000, 4, 100, &l);
    assert_complete(&l, 2500);
    assert_int_equal(s.requests, 3);
    listing_free(&l);
}

/* Both signals, but the server pages by token only: the parallel plan finds
 * repeated items, and the listing goes on by token without losing any. */
static void test_offset_ignored_with_total_falls_back_to_tokens(void **state)
{
    struct server s = {.n_items = 5500, .cap = 1000, .tokens = TOKENS_NEXT,
                       .total = 5500, .ignores_offset = true};
    struct listing l;

    (void)state;
    run_listing(&s, 1000, 4, 100, &l);
    assert_complete(&l, 5500);
    assert_true(s.requests <= 6 + 4);
    listing_free(&l);
}

static void test_token_ignored_offset_honoured(void **state)
{
    struct server s = {
        .n_items = 2500, .cap = 1000, .tokens = TOKENS_NEXT, .ignores_token = true};
    struct listing l;

    (void)state;
    run_listing(&s, 1000, 4, 100, &l);
    assert_complete(&l, 2500);
    assert_int_equal(s.requests, 3);
    listing_free(&l);
}

static void test_offset_ignored_total_only(void **state)
{
    struct server s = {
        .n_items = 5000, .cap = 1000, .total = 5000, .ignores_offset = true};
    struct listing l;

    (void)state;
    run_listing(&s, 1000, 4, 100, &l);
    /* Nothing but the first page is reachable; the loop is caught. */
    assert_prefix(&l, 1000);
    assert_int_equal(l.reason, PAGINATE_END_ITEM_LOOP);
    assert_true(s.requests <= 1 + 4);
    listing_free(&l);
}

static void test_short_page_in_the_middle(void **state)
{
    struct server s = {
        .n_items = 5000, .cap = 1000, .total = 5000, .short_at = 2000, .short_len = 300};
    struct listing l;

    (void)state;
    run_listing(&s, 1000, 4, 100, &l);
    assert_complete(&l, 5000);
    /* Five pages, one gap fill, one confirming request. */
    assert_int_equal(s.requests, 7);
    listing_free(&l);
}

static void test_short_page_in_the_middle_twice(void **state)
{
    struct server s = {
        .n_items = 5000, .cap = 1000, .total = 5000, .short_at = 2000, .short_len = 300};
    struct listing l;

    (void)state;
    /* A gap fill that is itself short: 2300 gets 1000 back, fine; but with
     * a cap of 500 on every page the fills chain. */
    s.cap = 500;
    s.short_len = 100;
    run_listing(&s, 1000, 3, 1000, &l);
    assert_complete(&l, 5000);
    listing_free(&l);
}

static void test_short_last_page_of_wave(void **state)
{
    struct server s = {
        .n_items = 5000, .cap = 1000, .total = 5000, .short_at = 1000, .short_len = 10};
    struct listing l;

    (void)state;
    /* One planned page per wave: the gap shows up in the next wave. */
    run_listing(&s, 1000, 1, 100, &l);
    assert_complete(&l, 5000);
    listing_free(&l);
}

static void test_max_pages(void **state)
{
    struct server s = {.n_items = 5000, .cap = 1000, .tokens = TOKENS_NEXT};
    struct listing l;

    (void)state;
    run_listing(&s, 1000, 4, 3, &l);
    assert_prefix(&l, 3000);
    assert_int_equal(s.requests, 3);
    assert_int_equal(l.reason, PAGINATE_END_TOO_MANY_PAGES);
    assert_false(paginate_end_is_loop(l.reason));
    listing_free(&l);
}

static void test_max_pages_bounds_wave(void **state)
{
    struct server s = {.n_items = 50000, .cap = 1000, .total = 50000};
    struct listing l;

    (void)state;
    run_listing(&s, 1000, 16, 5, &l);
    assert_int_equal(s.requests, 5);
    assert_prefix(&l, 5000);
    assert_int_equal(l.reason, PAGINATE_END_TOO_MANY_PAGES);
    listing_free(&l);
}

/* Sizes around the page boundary, in each dialect that can list them all. */
static void test_sizes(void **state)
{
    static const size_t sizes[] = {0, 1, 999, 1000, 1001, 1999, 2000, 2001, 100000};
    static const struct {
        enum server_tokens tokens;
        bool total;
    } dialects[] = {
        {TOKENS_NEXT, true},
        {TOKENS_NEXT, false},
        {TOKENS_ALWAYS, false},
        {TOKENS_NONE, true},
    };

    (void)state;
    for (size_t d = 0; d < sizeof(dialects) / sizeof(dialects[0]); d++) {
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            size_t n = sizes[i];
            struct server s = {
                .n_items = n,
                .cap = 1000,
                .tokens = dialects[d].tokens,
                .total = dialects[d].total ? n : 0,
            };
            struct listing l;

            run_listing(&s, 1000, 8, n + 2, &l);
            assert_complete(&l, n);
            assert_true(s.requests >= (n ? pages_for(n, 1000) : 1));
            assert_true(s.requests <= pages_for(n, 1000) + 1);
            listing_free(&l);
        }
    }
}

/* With a hint of more than a page, the pages it announces go out with the
 * first (one wave at most); full pages make them all count: no request is
 * wasted, and the plan goes on after them. */
static void test_expected_first_wave(void **state)
{
    static const size_t sizes[] = {2500, 100000};

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        struct server s = {
            .n_items = sizes[i], .cap = 1000, .tokens = TOKENS_NEXT, .total = sizes[i]};
        struct server plain = s;
        struct listing l;

        run_listing_expecting(&s, 1000, 8, sizes[i] + 2, sizes[i], &l);
        assert_complete(&l, sizes[i]);
        assert_int_equal(s.first_wave, sizes[i] == 2500 ? 3 : 8);
        listing_free(&l);
        run_listing(&plain, 1000, 8, sizes[i] + 2, &l);
        assert_int_equal(plain.first_wave, 1);
        assert_int_equal(s.requests, plain.requests);
        listing_free(&l);
    }
}

/* A short first page sets a smaller grid: the pages asked for with it are
 * dropped unread, and the rest is still planned in parallel (not filled
 * gap by gap). */
static void test_expected_short_first_page(void **state)
{
    struct server s = {.n_items = 2500, .cap = 300, .tokens = TOKENS_NONE, .total = 2500};
    struct server plain = s;
    struct listing l;

    (void)state;
    run_listing_expecting(&s, 1000, 8, 100, 2500, &l);
    assert_complete(&l, 2500);
    assert_int_equal(s.first_wave, 3);
    assert_int_equal(s.max_wave, 8);
    listing_free(&l);
    run_listing(&plain, 1000, 8, 100, &l);
    assert_int_equal(s.requests, plain.requests + 2);
    listing_free(&l);
}

/* Servers that break the pages asked for with the first: one cuts one of
 * them short (the gap is filled, in order, as for any planned page); one
 * ignores offsets and answers them with the first page's items (the
 * listing goes on by token). Either way every item arrives once. */
static void test_expected_odd_servers(void **state)
{
    const struct server servers[] = {
        {.n_items = 5000,
         .cap = 1000,
         .tokens = TOKENS_NONE,
         .total = 5000,
         .short_at = 1000,
         .short_len = 400},
        {.n_items = 2500,
         .cap = 1000,
         .tokens = TOKENS_NEXT,
         .total = 2500,
         .ignores_offset = true},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(servers) / sizeof(servers[0]); i++) {
        struct server s = servers[i];
        struct listing l;

        run_listing_expecting(&s, 1000, 8, 100, s.n_items, &l);
        assert_complete(&l, s.n_items);
        listing_free(&l);
    }
}

/* In every dialect and size, a hint (right, a page too high, or far too
 * high) keeps the listing complete and costs at most the pages asked ahead
 * for nothing (max_parallel - 1); a hint of at most one page, or a right
 * one where pages are full and counted, costs nothing. */
static void test_expected_sizes(void **state)
{
    static const size_t sizes[] = {0, 1, 999, 1000, 1001, 2500, 100000};
    static const struct {
        enum server_tokens tokens;
        bool total;
        size_t cap;
    } dialects[] = {
        {TOKENS_NEXT, true, 1000},    {TOKENS_NEXT, false, 1000},
        {TOKENS_ALWAYS, false, 1000}, {TOKENS_NONE, true, 1000},
        {TOKENS_NONE, true, 300},     {TOKENS_NEXT, false, 300},
    };

    (void)state;
    for (size_t d = 0; d < sizeof(dialects) / sizeof(dialects[0]); d++) {
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            size_t n = sizes[i];
            const size_t hints[] = {n, n + 1000, 100000};

            for (size_t h = 0; h < 3; h++) {
                struct server s = {
                    .n_items = n,
                    .cap = dialects[d].cap,
                    .tokens = dialects[d].tokens,
                    .total = dialects[d].total ? n : 0,
                };
                struct server plain = s;
                struct listing l;

                run_listing_expecting(&s, 1000, 8, n + 2 + 8, hints[h], &l);
                assert_complete(&l, n);
                listing_free(&l);
                run_listing(&plain, 1000, 8, n + 2 + 8, &l);
                listing_free(&l);
                assert_true(s.requests <= plain.requests + 7);
                if (hints[h] <= 1000 ||
                    (hints[h] == n && dialects[d].total && dialects[d].cap == 1000))
                    assert_int_equal(s.requests, plain.requests);
            }
        }
    }
}

/* A total_size that changes between pages is reported, the pages still
 * delivered; one that stays is not. */
static void test_total_moved(void **state)
{
    struct paginate_config config = {.limit = 10, .max_parallel = 4, .max_pages = 100};
    struct paginate_request reqs[4];
    struct paginate_page page = {.offset = 0, .count = 10, .new_items = 10, .total_size = 30};
    struct paginate *p = paginate_new(&config);
    size_t n;

    (void)state;
    assert_non_null(p);
    assert_int_equal(paginate_next(p, reqs, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(paginate_report(p, &page), PAGINATE_DELIVER);
    assert_false(paginate_total_moved(p));
    assert_int_equal(paginate_next(p, reqs, 4, &n), 0);
    assert_int_equal(n, 2);
    page.offset = 10;
    assert_int_equal(paginate_report(p, &page), PAGINATE_DELIVER);
    assert_false(paginate_total_moved(p));
    page.offset = 20;
    page.total_size = 29;
    assert_int_equal(paginate_report(p, &page), PAGINATE_DELIVER);
    assert_true(paginate_total_moved(p));
    paginate_free(p);
}

/* A page holding an id twice still covers as many offsets as it held
 * objects: the next request starts right after it. */
static void test_repeat_within_page_advances_by_count(void **state)
{
    struct paginate_config config = {.limit = 10, .max_parallel = 1, .max_pages = 100};
    struct paginate_request req;
    struct paginate_page page = {.offset = 0, .count = 10, .new_items = 9};
    struct paginate *p = paginate_new(&config);
    size_t n;

    (void)state;
    assert_non_null(p);
    page.next_page_token = "t1";
    assert_int_equal(paginate_next(p, &req, 1, &n), 0);
    assert_int_equal(paginate_report(p, &page), PAGINATE_DELIVER);
    assert_int_equal(paginate_next(p, &req, 1, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(req.offset, 10);
    assert_false(paginate_total_moved(p));
    paginate_free(p);
}

static void test_config_and_contract(void **state)
{
    struct paginate_config bad = {1000, 0, 10, 0}, good = {1000, 2, 10, 0};
    struct paginate_request req;
    struct paginate_page page = {.offset = 0, .count = 0};
    struct paginate *p;
    size_t n;

    (void)state;
    assert_null(paginate_new(&bad));
    assert_null(paginate_new(NULL));
    p = paginate_new(&good);
    assert_non_null(p);
    assert_int_equal(paginate_next(p, &req, 0, &n), -EINVAL);
    assert_int_equal(paginate_next(p, &req, 1, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(req.offset, 0);
    assert_null(req.page_token);
    /* Asking again before the first page was reported is a misuse. */
    assert_int_equal(paginate_next(p, &req, 1, &n), -EINVAL);
    assert_int_equal(paginate_report(p, &page), PAGINATE_DISCARD);
    assert_true(paginate_done(p));
    assert_int_equal(paginate_end_reason(p), PAGINATE_END_EMPTY);
    assert_int_equal(paginate_report(p, &page), PAGINATE_DISCARD);
    assert_int_equal(paginate_next(p, &req, 1, &n), 0);
    assert_int_equal(n, 0);
    assert_string_equal(paginate_end_name(PAGINATE_END_EMPTY), "empty page");
    paginate_free(p);
}

static void test_token_and_offset_sent_together(void **state)
{
    struct paginate_config config = {1000, 4, 10, 0};
    struct paginate_request req;
    struct paginate_page page = {
        .offset = 0, .count = 700, .new_items = 700, .next_page_token = "abc"};
    struct paginate *p = paginate_new(&config);
    size_t n;

    (void)state;
    assert_non_null(p);
    assert_int_equal(paginate_next(p, &req, 1, &n), 0);
    assert_int_equal(paginate_report(p, &page), PAGINATE_DELIVER);
    assert_int_equal(paginate_next(p, &req, 1, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(req.offset, 700);
    assert_string_equal(req.page_token, "abc");
    /* An empty token is no token: a token-driven listing ends. */
    page.offset = 700;
    page.next_page_token = "";
    page.total_size = 5000;
    assert_int_equal(paginate_report(p, &page), PAGINATE_DELIVER);
    assert_int_equal(paginate_end_reason(p), PAGINATE_END_NO_TOKEN);
    paginate_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_both_signals),
        cmocka_unit_test(test_token_only),
        cmocka_unit_test(test_token_on_last_page_too),
        cmocka_unit_test(test_total_only_parallel),
        cmocka_unit_test(test_capped_pages),
        cmocka_unit_test(test_capped_pages_with_tokens),
        cmocka_unit_test(test_no_signals),
        cmocka_unit_test(test_total_lies_low),
        cmocka_unit_test(test_total_lies_high),
        cmocka_unit_test(test_total_on_first_page_only),
        cmocka_unit_test(test_repeated_token),
        cmocka_unit_test(test_offset_ignored_tokens_honoured),
        cmocka_unit_test(test_offset_ignored_with_total_falls_back_to_tokens),
        cmocka_unit_test(test_token_ignored_offset_honoured),
        cmocka_unit_test(test_offset_ignored_total_only),
        cmocka_unit_test(test_short_page_in_the_middle),
        cmocka_unit_test(test_short_page_in_the_middle_twice),
        cmocka_unit_test(test_short_last_page_of_wave),
        cmocka_unit_test(test_max_pages),
        cmocka_unit_test(test_max_pages_bounds_wave),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_expected_first_wave),
        cmocka_unit_test(test_expected_short_first_page),
        cmocka_unit_test(test_expected_odd_servers),
        cmocka_unit_test(test_expected_sizes),
        cmocka_unit_test(test_total_moved),
        cmocka_unit_test(test_repeat_within_page_advances_by_count),
        cmocka_unit_test(test_config_and_contract),
        cmocka_unit_test(test_token_and_offset_sent_together),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
