/*
 * listpages — the pages of a list, read into objects and handed on in order
 * (see include/batchfs/listpages.h).
 *
 * For: fetching the pages of a v1 list as paginate.c plans them, a wave at
 * a time through the transport's asynchronous call; reading each body with
 * jsontext; dropping malformed, repeated and wrong-status objects; running
 * the preparer; and delivering page by page. Also the readers of a body and its objects
 * that api.c uses for single objects. Not for: URLs, statuses and the requests themselves
 * (api.c), the pagination rules (paginate.c), caching, FUSE.
 *
 * The pages of one listing are in flight together (up to max_parallel).
 * The listing's own thread submits the requests, and the transport's
 * thread submits the next as a page arrives; the bodies that have
 * arrived are read side by side by it and by the readers, a few threads
 * shared by every listing (see listpages_readers); everything that depends
 * on order — duplicate detection, the paginator, the callback — runs on the
 * listing's thread, one page at a time, in offset order.
 */
#include "batchfs/listpages.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batchfs/buf.h"
#include "batchfs/bigmem.h"
#include "batchfs/idset.h"
#include "batchfs/jsontext.h"
#include "batchfs/log.h"
#include "batchfs/paginate.h"

#define LISTPAGES_V1_JOBS "/api/v1/beta/batch-processing"
#define LISTPAGES_WAVE_FACTOR 16

/* ---- reading bodies --------------------------------------------------- */

/* Why a body jsontext refused as an object was refused, for the log line. */
static void listpages_body_refused(const struct http_response *resp, char *reason,
                                   size_t reason_size)
{
    snprintf(reason, reason_size, "%s",
             jsontext_validate(resp->body.data, resp->body.len) ? "body is not JSON"
                                                                 : "body is not a JSON object");
}

int listpages_body_members(const struct http_response *resp, const char *const *keys,
                           size_t count, struct json_span *out, char *reason,
                           size_t reason_size)
{
    if (jsontext_members(resp->body.data, resp->body.len, keys, count, out) < 0) {
        listpages_body_refused(resp, reason, reason_size);
        return -EIO;
    }
    return 0;
}

/* Ids and tokens become C strings, URL segments and file names: no NUL. */
size_t listpages_decode_clean(const char *text, struct json_span span, char *dst)
{
    size_t len;

    if (!span.len || text[span.start] != '"' ||
        jsontext_string(text + span.start, span.len, dst, &len) < 0 || !len ||
        memchr(dst, '\0', len))
        return 0;
    return len;
}

/* Whether the value at `span` of `text` is the string `want`. */
static bool listpages_string_equals(const char *text, struct json_span span,
                                    const char *want)
{
    /* Even fully escaped (6 bytes a character), a status fits. */
    char decoded[160];
    size_t len;

    if (!span.len || span.len > sizeof(decoded) || text[span.start] != '"' ||
        jsontext_string(text + span.start, span.len, decoded, &len) < 0)
        return false;
    return len == strlen(want) && memcmp(decoded, want, len) == 0;
}

/* The members one pass over an object looks for: its identity `id_key`,
 * "status" when the list filters by it, then the preparer's keys (a key
 * that is one of the first two is looked up once and handed to both). */
struct listpages_keys {
    const char *keys[2 + API_PREPARER_MAX_KEYS];
    size_t n;
    size_t where[API_PREPARER_MAX_KEYS]; /* the preparer's key k is keys[where[k]] */
    size_t n_extra;
};

/* False when there are more than API_PREPARER_MAX_KEYS `extra` keys. */
static bool listpages_keys_make(const char *id_key, const char *status,
                                const char *const *extra, size_t n_extra,
                                struct listpages_keys *k)
{
    if (n_extra > API_PREPARER_MAX_KEYS)
        return false;
    k->n = 0;
    k->n_extra = n_extra;
    k->keys[k->n++] = id_key;
    if (status)
        k->keys[k->n++] = "status";
    for (size_t e = 0; e < n_extra; e++) {
        k->where[e] = k->n;
        for (size_t j = 0; j < k->n; j++)
            if (!strcmp(k->keys[j], extra[e]))
                k->where[e] = j;
        if (k->where[e] == k->n)
            k->keys[k->n++] = extra[e];
    }
    return true;
}

/* listpages_read_object_fields with the element's keys already found, at
 * fields[] (offsets within the element, which is `len` bytes at
 * `element`). */
static bool listpages_fill_object(const char *element, const struct json_span *fields,
                                  const struct listpages_keys *k, const char *status,
                                  bool *status_ok, char *dst, struct json_span *extra_out,
                                  size_t len, struct api_object *object)
{
    object->id_len = listpages_decode_clean(element, fields[0], dst);
    if (!object->id_len)
        return false;
    object->id = dst;
    object->raw = element;
    object->raw_len = len;
    object->prepared = NULL;
    object->fields = NULL;
    if (status)
        *status_ok = listpages_string_equals(element, fields[1], status);
    if (k->n_extra) {
        for (size_t e = 0; e < k->n_extra; e++)
            extra_out[e] = fields[k->where[e]];
        object->fields = extra_out;
    }
    return true;
}

/*
 * Fills `object` from the element at text[span): its identity, the first of
 * `k`'s keys, is decoded into dst (room for span.len bytes). With `status`,
 * *status_ok says whether its "status" is that string. The values of k's
 * preparer keys go to extra_out, found in the same pass (object->fields
 * then points there). Returns false when the element is not an object with
 * an identity.
 */
static bool listpages_read_object_fields(const char *text, struct json_span span,
                                         const struct listpages_keys *k, const char *status,
                                         bool *status_ok, char *dst,
                                         struct json_span *extra_out,
                                         struct api_object *object)
{
    const char *element = text + span.start;
    struct json_span fields[2 + API_PREPARER_MAX_KEYS];

    if (!span.len || element[0] != '{' ||
        jsontext_members_valid(element, span.len, k->keys, k->n, fields) < 0)
        return false;
    return listpages_fill_object(element, fields, k, status, status_ok, dst, extra_out,
                                 span.len, object);
}

bool listpages_read_object(const char *text, struct json_span span, const char *id_key,
                           const char *status, bool *status_ok, char *dst,
                           struct api_object *object)
{
    struct listpages_keys k;

    listpages_keys_make(id_key, status, NULL, 0, &k);
    return listpages_read_object_fields(text, span, &k, status, status_ok, dst, NULL, object);
}

int listpages_locate_elements(const char *text, struct json_span array,
                              struct json_span **spans, size_t *count)
{
    int rc = jsontext_array_elements_valid(text + array.start, array.len, spans, count);

    if (rc < 0)
        return rc == -ENOMEM ? rc : -EIO;
    for (size_t i = 0; i < *count; i++)
        (*spans)[i].start += array.start;
    return 0;
}

/* ---- one page of a list ------------------------------------------------ */

/* An object of a page that has its identity. */
struct listpages_candidate {
    struct api_object object;
    bool wrong_status; /* kept out, but its id still counts as seen */
    bool repeated;     /* its id was seen before (decided when reported) */
};

void listpages_page_release(struct listpages_page *page)
{
    const struct api_preparer *preparer = page->list ? page->list->preparer : NULL;

    if (page->prepared && preparer && preparer->release)
        preparer->release(preparer->arg, page->prepared);
    free(page->path_query);
    bigmem_free(page->candidates);
    bigmem_free(page->fields);
    bigmem_free(page->ids);
    free(page->token);
    http_response_free(&page->resp);
    memset(page, 0, sizeof(*page));
}

/* Keeps the page's next_page_token when it is a usable string. */
static int listpages_page_token(struct listpages_page *page, struct json_span span)
{
    const char *body = page->resp.body.data;
    char first = span.len ? body[span.start] : 'n';

    if (first == 'n' || (first == '"' && span.len == 2))
        return 0; /* null, absent or "": the last page */
    page->token = malloc(span.len);
    if (!page->token)
        return -ENOMEM;
    if (!listpages_decode_clean(body, span, page->token)) {
        free(page->token);
        page->token = NULL;
        log_debug("GET %s: next_page_token ignored: not a usable string",
                  page->path_query);
    }
    return 0;
}

/* The elements of a page's items, each with its keys' values, as one pass
 * over them finds them (listpages_note_element), before they are read. */
struct listpages_elements {
    size_t n_keys;            /* the keys found in each */
    struct json_span *spans;  /* [count] */
    struct json_span *fields; /* [count * n_keys], relative to their element;
                                 all {0, 0} for an element that is no object */
    size_t count, cap;
    size_t first; /* the first of the page's items (see listpages_page_parse) */
};

/* jsontext_element_fn: keeps an element and its keys' values. */
static int listpages_note_element(void *ctx, struct json_span element,
                                  const struct json_span *found)
{
    struct listpages_elements *e = ctx;
    struct json_span *fields;

    if (e->count == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        struct json_span *spans = bigmem_resize(e->spans, cap * sizeof(*spans));

        if (!spans)
            return -ENOMEM;
        e->spans = spans;
        /* One field at least, so that the block is never empty. */
        fields =
            bigmem_resize(e->fields, cap * (e->n_keys ? e->n_keys : 1) * sizeof(*fields));
        if (!fields)
            return -ENOMEM;
        e->fields = fields;
        e->cap = cap;
    }
    fields = e->fields + e->count * e->n_keys;
    for (size_t i = 0; i < e->n_keys; i++) {
        fields[i] = found ? found[i] : (struct json_span){0, 0};
        if (fields[i].len)
            fields[i].start -= element.start;
    }
    e->spans[e->count++] = element;
    return 0;
}

/* Reads `{"items": [...], "next_page_token": …, "total_size": …}`. */
static int listpages_page_parse(struct listpages_page *page)
{
    static const char *const keys[] = {"items", "next_page_token", "total_size"};
    const struct listpages *list = page->list;
    const char *body = page->resp.body.data;
    struct json_span members[3], found[2 + API_PREPARER_MAX_KEYS];
    struct listpages_elements elements = {0};
    size_t used = 0;
    size_t n_keys = list->preparer ? list->preparer->n_keys : 0;
    struct listpages_keys k;
    bool keys_ok = listpages_keys_make(list->id_key, list->status,
                                       n_keys ? list->preparer->keys : NULL, n_keys, &k);
    int rc;

    if (!keys_ok) {
        /* More preparer keys than can be found: no object can be read. */
        k.n = 0;
    }
    /* One pass over the page: each element of its items is checked and
     * read in one step, its keys found on the way. */
    elements.n_keys = k.n;
    rc = jsontext_page(body, page->resp.body.len, keys, 3, members, "items", k.keys, k.n,
                       found, listpages_note_element, &elements);
    if (rc < 0) {
        if (rc != -ENOMEM) {
            listpages_body_refused(&page->resp, page->reason, sizeof(page->reason));
            rc = -EIO;
        }
        goto out;
    }
    if (!members[0].len || body[members[0].start] != '[') {
        snprintf(page->reason, sizeof(page->reason), "items %s",
                 members[0].len ? "is not an array" : "missing");
        rc = -EIO;
        goto out;
    }
    rc = listpages_page_token(page, members[1]);
    if (rc < 0)
        goto out;
    if (!jsontext_count(body, members[2], &page->total) && members[2].len &&
        body[members[2].start] != 'n')
        log_debug("GET %s: total_size ignored: not an integer >= 0", page->path_query);

    /* A body with "items" twice is read as its last one (the rule of
     * jsontext_members): the elements of the others are left out. */
    elements.first = 0;
    while (elements.first < elements.count &&
           elements.spans[elements.first].start < members[0].start)
        elements.first++;
    page->count = elements.count - elements.first;
    if (page->count > 0) {
        /* Each decoded id and its NUL fit in its element's bytes. Each
         * array is tens to hundreds of KB for a page of 1000 items: from
         * bigmem, whose freeing leaves malloc's heaps as they were
         * (bigmem.h), as do the elements' and the objects' below. */
        page->candidates = bigmem_calloc(page->count, sizeof(*page->candidates));
        page->ids = bigmem_resize(NULL, members[0].len);
        if (n_keys)
            page->fields =
                bigmem_resize(NULL, page->count * n_keys * sizeof(*page->fields));
        if (!page->candidates || !page->ids || (n_keys && !page->fields)) {
            rc = -ENOMEM;
            goto out;
        }
    }
    for (size_t i = elements.first; i < elements.count; i++) {
        struct listpages_candidate *c = &page->candidates[page->n_candidates];
        const char *element = body + elements.spans[i].start;
        bool status_ok = true;

        if (!keys_ok || !elements.spans[i].len || element[0] != '{' ||
            !listpages_fill_object(element, elements.fields + i * elements.n_keys, &k,
                                   list->status, &status_ok, page->ids + used,
                                   page->fields + page->n_candidates * n_keys,
                                   elements.spans[i].len, &c->object)) {
            page->malformed++;
            continue;
        }
        used += c->object.id_len + 1;
        if (!status_ok) {
            c->wrong_status = true;
            page->wrong_status++;
        }
        page->n_candidates++;
    }
out:
    bigmem_free(elements.spans);
    bigmem_free(elements.fields);
    return rc;
}

/* Reads a fetched page (rc, resp, status set): its objects, count, token
 * and total, then the list's preparer. On a reader, the listing's thread
 * or the caller's. */
static void listpages_page_read(struct listpages_page *page)
{
    const struct api_preparer *preparer = page->list->preparer;

    /* Before any object points into it: the preparer takes the body
     * where it is (api_preparer). Bodies from http.c are big already. */
    if (page->rc == 0 && preparer)
        page->rc = buf_make_big(&page->resp.body);
    if (page->rc == 0)
        page->rc = listpages_page_parse(page);
    if (page->rc == 0 && preparer && page->n_candidates > 0) {
        /* The candidates' objects, gathered for the preparer; it writes
         * `prepared` into them, which is copied back. */
        struct api_object *objects =
            bigmem_resize(NULL, page->n_candidates * sizeof(*objects));

        if (!objects) {
            page->rc = -ENOMEM;
            return;
        }
        for (size_t i = 0; i < page->n_candidates; i++)
            objects[i] = page->candidates[i].object;
        page->rc = preparer->prepare(preparer->arg, objects, page->n_candidates,
                                     &page->resp.body,
                                     page->by_offset ? page->path_query : NULL,
                                     &page->prepared);
        for (size_t i = 0; page->rc == 0 && i < page->n_candidates; i++)
            page->candidates[i].object.prepared = objects[i].prepared;
        bigmem_free(objects);
    }
}

void listpages_page_fetch(struct listpages_page *page)
{
    page->rc =
        request_fetch(page->list->request, page->path_query, &page->resp, &page->status);
    listpages_page_read(page);
}

/*
 * One wave of pages being fetched. The pages are submitted in offset
 * order, at most max_parallel on the wire, so that pages arrive in about
 * the order they are delivered: by the listing's thread, and by the
 * transport's thread as each page arrives, so that the wire is refilled
 * at once rather than when the listing's thread is done reading or
 * delivering a page (milliseconds each, a tenth of a round trip). The
 * answers are queued for the readers (listpages_page_arrived); the readers
 * read them (parse them and run the preparer) while the rest are on the
 * wire, side by side; the listing's thread takes them back in whatever
 * order they are read, and delivers them in offset order. Up to twice
 * max_parallel pages are sent and not yet taken back (their bodies held).
 * A page past an empty page of the wave is not requested: the listing
 * ends at the empty page, and the paginator would drop the later ones
 * unread (so a total_size that lies high costs at most the requests
 * already under way, not the rest of the wave). For that, while a page
 * that arrived is still being read, at most max_parallel more are sent: a
 * lying total_size costs at most twice max_parallel requests.
 */
struct listpages_wave {
    struct request *request;
    pthread_mutex_t lock;
    pthread_cond_t arrived;          /* a page arrived or was read */
    struct listpages_page *ready;    /* protected by lock: read, not yet taken back */
    /* Protected by lock: submitted, not yet arrived. The only pages another
     * thread (a cancel) looks at: the listing's thread releases the others
     * without the lock. */
    struct listpages_page *flying;
    size_t unread;                   /* protected by lock: arrived, not yet read */
    size_t queued;                   /* protected by listpages_readers.lock: its
                                        pages in the readers' queue */
    atomic_bool cancelled;           /* the listing's cancel token fired */
    struct transport_cancel *token;  /* the calling thread's, or NULL */
    struct listpages_page *pages;    /* [n]; their `pending` is the listing's
                                        thread's alone */
    size_t n, max_parallel;
    /* Protected by lock: what is sent, from either thread. */
    size_t next;           /* pages[next..n) are not sent yet */
    size_t on_wire;        /* pages in `flying` */
    size_t in_flight;      /* sent, not yet taken back */
    size_t stop_offset;    /* pages beyond it are not requested */
    size_t sent_unsettled; /* sent since a page arrived that is still unread */
    bool stopped;          /* the listing failed: request nothing more */
};

/* ---- the readers ------------------------------------------------------ */

/* Reader threads at most: reading a page is a few milliseconds of one
 * processor, and a listing has max_parallel pages in flight. */
#define LISTPAGES_READERS_MAX 3

/*
 * Pages that arrived and wait to be read: a queue that a few threads made
 * once for the process serve (one fewer than the processors, at least
 * one), and that each listing's own thread serves too, for its own pages,
 * while it waits for them: no listing depends on the readers to make
 * progress (none made, or all busy with other listings). A page in the
 * queue belongs to its wave, which waits for it before it ends. Lock
 * order: a wave's lock, then this one.
 */
static struct {
    pthread_once_t once;
    pthread_mutex_t lock;
    pthread_cond_t queued;              /* a page joined the queue */
    struct listpages_page *head, *tail; /* protected by lock */
} listpages_readers = {PTHREAD_ONCE_INIT, PTHREAD_MUTEX_INITIALIZER,
                       PTHREAD_COND_INITIALIZER, NULL, NULL};

/* Reads an arrived page: its response, then its body and objects. Any
 * thread, for a page no other thread touches meanwhile. */
static void listpages_page_read_arrived(struct listpages_page *page)
{
    page->resp = page->call.resp;
    page->call.resp = (struct http_response)HTTP_RESPONSE_INIT;
    page->rc = request_settle(page->list->request, page->path_query, page->call.rc,
                              &page->resp, &page->status);
    listpages_page_read(page);
}

/* `page` is read: hands it back to its listing's thread. Touches neither
 * it nor its wave once the wave's lock is let go (the wave may end then). */
static void listpages_page_read_done(struct listpages_page *page)
{
    struct listpages_wave *wave = page->wave;

    pthread_mutex_lock(&wave->lock);
    page->ready_next = wave->ready;
    wave->ready = page;
    wave->unread--;
    pthread_cond_signal(&wave->arrived);
    pthread_mutex_unlock(&wave->lock);
}

/* Takes the first page of the readers' queue (of `wave`'s, unless it is
 * NULL), or NULL when it holds none. Under listpages_readers.lock. */
static struct listpages_page *listpages_readers_take_locked(struct listpages_wave *wave)
{
    struct listpages_page *page, *prev = NULL;

    for (page = listpages_readers.head; page && wave && page->wave != wave;
         page = page->read_next)
        prev = page;
    if (!page)
        return NULL;
    if (prev)
        prev->read_next = page->read_next;
    else
        listpages_readers.head = page->read_next;
    if (listpages_readers.tail == page)
        listpages_readers.tail = prev;
    page->wave->queued--;
    return page;
}

static void *listpages_reader(void *arg)
{
    (void)arg;
    for (;;) {
        struct listpages_page *page;

        pthread_mutex_lock(&listpages_readers.lock);
        while (!(page = listpages_readers_take_locked(NULL)))
            pthread_cond_wait(&listpages_readers.queued, &listpages_readers.lock);
        pthread_mutex_unlock(&listpages_readers.lock);
        listpages_page_read_arrived(page);
        listpages_page_read_done(page);
    }
    return NULL;
}

/* Makes the readers, once; those that cannot be made are done without. */
static void listpages_readers_start(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    long n = cpus > LISTPAGES_READERS_MAX ? LISTPAGES_READERS_MAX : cpus - 1;
    pthread_attr_t attr;

    if (n < 1)
        n = 1;
    if (pthread_attr_init(&attr))
        return;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (long i = 0; i < n; i++) {
        pthread_t thread;
        int rc = pthread_create(&thread, &attr, listpages_reader, NULL);

        if (rc) {
            log_debug("page readers: %ld of %ld made: %s", i, n, strerror(rc));
            break;
        }
    }
    pthread_attr_destroy(&attr);
}

/* Under the wave's lock: `page` is no longer in flight. */
static void listpages_wave_land_locked(struct listpages_wave *wave,
                                       struct listpages_page *page)
{
    struct listpages_page **link = &wave->flying;

    while (*link && *link != page)
        link = &(*link)->flying_next;
    if (*link) {
        *link = page->flying_next;
        wave->on_wire--;
    }
    page->flying_next = NULL;
}

static void listpages_wave_submit_locked(struct listpages_wave *wave, bool settled);

/* The transport's thread: queue the page for the readers, send the next
 * while its connection is free, and tell the listing's thread, which reads
 * the page itself if no reader comes first. */
static void listpages_page_arrived(struct transport_call *call)
{
    struct listpages_page *page = call->arg;
    struct listpages_wave *wave = page->wave;

    pthread_once(&listpages_readers.once, listpages_readers_start);
    pthread_mutex_lock(&wave->lock);
    listpages_wave_land_locked(wave, page);
    wave->unread++;
    pthread_mutex_lock(&listpages_readers.lock);
    page->read_next = NULL;
    if (listpages_readers.tail)
        listpages_readers.tail->read_next = page;
    else
        listpages_readers.head = page;
    listpages_readers.tail = page;
    wave->queued++;
    pthread_cond_signal(&listpages_readers.queued);
    pthread_mutex_unlock(&listpages_readers.lock);
    /* This page is unread: not settled. */
    listpages_wave_submit_locked(wave, false);
    pthread_cond_signal(&wave->arrived);
    pthread_mutex_unlock(&wave->lock);
}

/* ---- a wave ----------------------------------------------------------- */

/* Cancels every page in flight (a failed listing, a fired token). Under
 * the wave's lock, so that no page arrives meanwhile. */
static void listpages_wave_cancel_locked(struct listpages_wave *wave)
{
    for (struct listpages_page *page = wave->flying; page; page = page->flying_next)
        request_cancel(wave->request, &page->call);
}

/* The cancel token fired, on whichever thread fired it. */
static void listpages_wave_fired(void *arg)
{
    struct listpages_wave *wave = arg;

    atomic_store(&wave->cancelled, true);
    pthread_mutex_lock(&wave->lock);
    listpages_wave_cancel_locked(wave);
    pthread_mutex_unlock(&wave->lock);
}

/* Under the wave's lock, on the listing's thread: takes back the pages of
 * the list `ready`, read (or never sent: see listpages_wave_submit_locked). */
static void listpages_wave_took_locked(struct listpages_wave *wave,
                                       struct listpages_page *ready)
{
    for (struct listpages_page *page = ready; page; page = page->ready_next) {
        wave->in_flight--;
        if (page->rc == 0 && page->count == 0 && page->offset < wave->stop_offset)
            wave->stop_offset = page->offset;
        page->pending = false;
    }
}

/* Under the wave's lock: whether pages[next] is never to be sent. */
static bool listpages_wave_skips_locked(const struct listpages_wave *wave)
{
    return wave->stopped || wave->pages[wave->next].offset > wave->stop_offset ||
           atomic_load(&wave->cancelled);
}

/*
 * Under the wave's lock, on either thread: sends pages[next..) while at
 * most max_parallel are on the wire and fewer than twice that are sent and
 * not taken back, and, unless `settled` (no page that arrived is being
 * read), while fewer than max_parallel were sent since one was. Stops at a
 * page never to be sent, which the listing's thread marks done
 * (listpages_wave_send). A page whose request cannot be made goes to
 * `ready` at once with its error, to be taken back as if read.
 */
static void listpages_wave_submit_locked(struct listpages_wave *wave, bool settled)
{
    while (wave->next < wave->n && wave->on_wire < wave->max_parallel &&
           wave->in_flight < 2 * wave->max_parallel &&
           (settled || wave->sent_unsettled < wave->max_parallel) &&
           !listpages_wave_skips_locked(wave)) {
        struct listpages_page *page = &wave->pages[wave->next++];
        int rc;

        page->wave = wave;
        page->call = (struct transport_call){
            .path_query = page->path_query,
            .done = listpages_page_arrived,
            .arg = page,
        };
        page->flying_next = wave->flying;
        wave->flying = page;
        wave->on_wire++;
        wave->in_flight++;
        wave->sent_unsettled += !settled;
        rc = request_submit(wave->request, &page->call);
        if (rc) {
            listpages_wave_land_locked(wave, page);
            page->rc = rc;
            page->ready_next = wave->ready;
            wave->ready = page;
        }
    }
}

/* On the listing's thread: takes back the pages read so far, sends what
 * may be sent, and marks done the pages never to be sent. */
static void listpages_wave_send(struct listpages_wave *wave)
{
    struct listpages_page *ready;
    bool settled;

    pthread_mutex_lock(&wave->lock);
    ready = wave->ready;
    wave->ready = NULL;
    listpages_wave_took_locked(wave, ready);
    /* No page that arrived is being read: an empty one among them has set
     * stop_offset. */
    settled = !wave->unread;
    if (settled)
        wave->sent_unsettled = 0;
    for (;;) {
        listpages_wave_submit_locked(wave, settled);
        if (wave->next == wave->n || !listpages_wave_skips_locked(wave))
            break;
        /* Never looked at: see listpages_wave. */
        wave->pages[wave->next].rc = -ECANCELED;
        wave->pages[wave->next++].pending = false;
    }
    pthread_mutex_unlock(&wave->lock);
}

/* Takes back the pages that have been read; waits first until one has,
 * reading the wave's queued pages itself meanwhile. */
static void listpages_wave_take_read(struct listpages_wave *wave)
{
    struct listpages_page *ready;

    pthread_mutex_lock(&wave->lock);
    while (!wave->ready) {
        struct listpages_page *page;

        pthread_mutex_lock(&listpages_readers.lock);
        page = listpages_readers_take_locked(wave);
        pthread_mutex_unlock(&listpages_readers.lock);
        if (page) {
            pthread_mutex_unlock(&wave->lock);
            listpages_page_read_arrived(page);
            listpages_page_read_done(page);
            pthread_mutex_lock(&wave->lock);
            continue;
        }
        /* A page queued or read from here on signals under the lock. */
        pthread_cond_wait(&wave->arrived, &wave->lock);
    }
    ready = wave->ready;
    wave->ready = NULL;
    listpages_wave_took_locked(wave, ready);
    pthread_mutex_unlock(&wave->lock);
}

/* Starts fetching pages[0..n), at most max_parallel at once. */
static int listpages_wave_start(struct listpages_wave *wave, struct request *request,
                                struct listpages_page *pages, size_t n,
                                size_t max_parallel)
{
    if (pthread_mutex_init(&wave->lock, NULL))
        return -ENOMEM;
    if (pthread_cond_init(&wave->arrived, NULL)) {
        pthread_mutex_destroy(&wave->lock);
        return -ENOMEM;
    }
    wave->request = request;
    wave->ready = NULL;
    wave->flying = NULL;
    wave->unread = 0;
    wave->on_wire = 0;
    wave->queued = 0;
    atomic_init(&wave->cancelled, false);
    wave->pages = pages;
    wave->n = n;
    wave->next = 0;
    wave->in_flight = 0;
    wave->max_parallel = max_parallel ? max_parallel : 1;
    wave->stop_offset = SIZE_MAX;
    wave->sent_unsettled = 0;
    wave->stopped = false;
    for (size_t i = 0; i < n; i++)
        pages[i].pending = true;
    wave->token = transport_cancel_current();
    if (wave->token)
        transport_cancel_watch(wave->token, listpages_wave_fired, wave);
    listpages_wave_send(wave);
    return 0;
}

/* Waits until `page` is fetched and read (at once for one never sent). */
static void listpages_wave_wait(struct listpages_wave *wave, struct listpages_page *page)
{
    while (page->pending) {
        listpages_wave_send(wave);
        if (!page->pending)
            break;
        listpages_wave_take_read(wave);
    }
    listpages_wave_send(wave);
}

/* Pages not sent yet will not be; those in flight are cancelled. */
static void listpages_wave_stop(struct listpages_wave *wave)
{
    pthread_mutex_lock(&wave->lock);
    if (!wave->stopped) {
        wave->stopped = true;
        listpages_wave_cancel_locked(wave);
    }
    pthread_mutex_unlock(&wave->lock);
}

/* Once every page has been waited for. */
static void listpages_wave_finish(struct listpages_wave *wave)
{
    if (wave->token)
        transport_cancel_unwatch(wave->token);
    pthread_cond_destroy(&wave->arrived);
    pthread_mutex_destroy(&wave->lock);
}

/* Marks the page's repeated objects and takes its new ids into the set.
 * Returns how many of the page's elements were not seen before (malformed
 * ones count as new: only a repeat is a sign of a loop), or -ENOMEM. */
long listpages_page_take_ids(struct listpages_page *page, struct idset *ids)
{
    size_t repeated = 0;

    for (size_t i = 0; i < page->n_candidates; i++) {
        struct listpages_candidate *c = &page->candidates[i];
        int rc = idset_add(ids, c->object.id, c->object.id_len);

        if (rc < 0) {
            for (size_t j = 0; j < i; j++)
                if (!page->candidates[j].repeated)
                    idset_remove(ids, page->candidates[j].object.id,
                                 page->candidates[j].object.id_len);
            return rc;
        }
        c->repeated = rc == 0;
        repeated += c->repeated;
    }
    /* Malformed elements are not new items: a server that pads every page
     * with junk must not keep a listing going forever. */
    return (long)(page->n_candidates - repeated);
}

static void listpages_page_give_back_ids(struct listpages_page *page, struct idset *ids)
{
    for (size_t i = 0; i < page->n_candidates; i++) {
        if (!page->candidates[i].repeated)
            idset_remove(ids, page->candidates[i].object.id, page->candidates[i].object.id_len);
        page->candidates[i].repeated = false;
    }
}

/* Brings what the listing's set of ids holds, as counted in the
 * preparer's charge (api_preparer.charge), up to date: `held` is what it
 * holds now (0 when the listing ends). */
static void listpages_charge(struct listpages *list, size_t held)
{
    api_charge_update(list->preparer ? list->preparer->charge : NULL, &list->charged, held);
}

/* The listing's first total_size: room for its ids, and the preparer's
 * hint. */
static void listpages_expect(struct listpages *list, size_t total)
{
    size_t count = total < list->limits.max_items ? total : list->limits.max_items;
    list->hinted = true;
    if (count > API_EXPECT_MAX)
        count = API_EXPECT_MAX;
    /* Only a hint: without the room, the set grows as it would have. */
    (void)idset_expect(&list->ids, count);
    listpages_charge(list, idset_footprint(&list->ids));
    if (list->preparer && list->preparer->expect)
        list->preparer->expect(list->preparer->arg, count);
}

/* Hands the page's kept objects to the callback, then frees the page. */
int listpages_page_deliver(struct listpages_page *page, api_objects_fn fn, void *arg)
{
    struct listpages *list = page->list;
    struct api_object *objects = NULL;
    size_t kept = 0, repeated = 0;
    int rc = 0;

    if (page->malformed)
        log_warning("dropped %zu malformed items from page at offset %zu of %s",
                    page->malformed, page->offset, list->path);
    if (page->wrong_status)
        log_warning("dropped %zu items not of status %s from page at offset %zu of %s",
                    page->wrong_status, list->status, page->offset, list->path);
    if (page->n_candidates > 0) {
        objects = bigmem_resize(NULL, page->n_candidates * sizeof(*objects));
        if (!objects) {
            rc = -ENOMEM;
            goto out;
        }
    }
    for (size_t i = 0; i < page->n_candidates; i++) {
        const struct listpages_candidate *c = &page->candidates[i];

        repeated += c->repeated;
        if (!c->repeated && !c->wrong_status)
            objects[kept++] = c->object;
    }
    if (repeated)
        log_debug("dropped %zu repeated items from page at offset %zu of %s", repeated,
                  page->offset, list->path);
    if (kept > list->limits.max_items - list->delivered) {
        log_warning("%s has more than %zu objects: not listed", list->path,
                    list->limits.max_items);
        rc = -EFBIG;
        goto out;
    }
    list->delivered += kept;
    if (!list->hinted && page->total)
        listpages_expect(list, page->total);
    if (kept > 0)
        rc = fn(arg, objects, kept);
    if (rc < 0)
        log_debug("listing %s aborted by its reader: %s", list->path, strerror(-rc));
out:
    bigmem_free(objects);
    listpages_page_release(page);
    return rc;
}

/* Reports a fetched page to the paginator and acts on its verdict: the
 * page is handed to the callback at once (while the pages after it are
 * fetched), dropped, or held. Returns 0 (delivered or dropped), 1 (held:
 * the page is kept as it is), or a negative errno that ends the listing. */
static int listpages_page_process(struct listpages_page *page, struct paginate *pager,
                                  api_objects_fn fn, void *arg)
{
    struct paginate_page report;
    enum paginate_verdict verdict;
    long fresh;
    int rc = 0;

    /* A page past the end, or asked for ahead in vain, is not looked at,
     * even if its request failed. */
    if (paginate_discard_next(pager))
        goto drop;
    if (page->rc < 0) {
        rc = page->rc;
        request_log_failure(page->path_query, rc, &page->resp, page->reason);
        goto drop;
    }
    fresh = listpages_page_take_ids(page, &page->list->ids);
    listpages_charge(page->list, idset_footprint(&page->list->ids));
    if (fresh < 0) {
        rc = (int)fresh;
        goto drop;
    }
    report = (struct paginate_page){
        .offset = page->offset,
        /* The server's offsets count the objects a page held, repeats
         * included: the next page starts after all of them, or it would
         * begin inside this one (an extra request, and a page whose items
         * were all seen, which ends the listing as a loop). */
        .count = page->count,
        .new_items = (size_t)fresh,
        .next_page_token = page->token,
        .total_size = page->total,
    };
    verdict = paginate_report(pager, &report);
    if (verdict == PAGINATE_DELIVER)
        return listpages_page_deliver(page, fn, arg);
    listpages_page_give_back_ids(page, &page->list->ids);
    if (verdict == PAGINATE_HOLD)
        return 1;
drop:
    listpages_page_release(page);
    return rc;
}

/* Processes pages[0..n) in order as `wave` has them fetched and read. Pages from the
 * first held one on are moved to held[] (which must be empty then). Returns
 * 0 or a negative errno; every page not held is released. */
static int listpages_process_run(struct listpages_page *pages, size_t n,
                                 struct listpages_page *held, size_t *n_held,
                                 struct paginate *pager, struct listpages_wave *wave,
                                 api_objects_fn fn, void *arg, int rc)
{
    size_t kept = 0;

    for (size_t i = 0; i < n; i++) {
        int prc;

        if (rc < 0)
            listpages_wave_stop(wave);
        listpages_wave_wait(wave, &pages[i]);
        if (rc < 0) {
            listpages_page_release(&pages[i]);
            continue;
        }
        if (kept > 0) {
            held[kept++] = pages[i];
            memset(&pages[i], 0, sizeof(pages[i]));
            continue;
        }
        prc = listpages_page_process(&pages[i], pager, fn, arg);
        if (prc < 0) {
            rc = prc;
        } else if (prc == 1) {
            held[kept++] = pages[i];
            memset(&pages[i], 0, sizeof(pages[i]));
        }
    }
    if (rc == 0)
        *n_held = kept;
    for (size_t i = 0; rc < 0 && i < kept; i++)
        listpages_page_release(&held[i]);
    return rc;
}

/* Pages planned at once by a listing (WAVE_FACTOR x max_parallel): its
 * max_parallel requests in flight, the next sent as each one ends, so the
 * network stays busy while pages are parsed. Between two waves the
 * connections drain and refill, about one round trip each time, so a
 * wave is large: 128 pages with 8 connections, a job of 100,000 items in
 * one (4 x max_parallel cost a 100,000-item listing 4 % more time). A
 * total_size that lies high costs no more for it (see listpages_wave). */
/* The URL of one page of a v1 list. Malloc'd, NULL when out of memory. */
static char *listpages_v1_url(const struct listpages *list,
                              const struct paginate_request *req)
{
    struct buf b = BUF_INIT;
    /* "/api/v1/beta/batch-processing" or ".../{job_id}/items" */
    int rc = request_append_path(&b, LISTPAGES_V1_JOBS, list->job_id, "/items");

    if (rc == 0)
        rc = buf_printf(&b, "?limit=%u&offset=%zu", list->limits.page_size, req->offset);
    if (rc == 0 && list->status)
        rc = request_append_param(&b, "status", list->status);
    if (rc == 0 && req->page_token)
        rc = request_append_param(&b, "page_token", req->page_token);
    if (rc == 0)
        rc = request_append_scope(&b, list->request);
    if (rc < 0) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

static size_t listpages_wave_size(const struct request_limits *limits)
{
    return (size_t)limits->max_parallel * LISTPAGES_WAVE_FACTOR;
}

int listpages_read_v1(struct listpages *list, api_objects_fn fn, void *arg)
{
    const struct request_limits *limits = &list->limits;
    struct paginate_config config = {
        .limit = limits->page_size,
        .max_parallel = listpages_wave_size(limits),
        /* Every page but the last holds an item: more pages than that
         * means the server is going round in circles. */
        .max_pages = limits->max_items > SIZE_MAX - 2 ? SIZE_MAX : limits->max_items + 2,
        /* Pages asked for ahead of the first: no more than the listing has
         * in flight at once, so that a wrong hint costs at most max_parallel - 1
         * requests (the wave stops at an empty page, but a grid the first
         * page rules out holds no empty page to stop at). */
        .expected = list->expected < (size_t)limits->max_parallel * limits->page_size
                        ? list->expected
                        : (size_t)limits->max_parallel * limits->page_size,
    };
    size_t wave_size = listpages_wave_size(limits);
    struct paginate_request *reqs = calloc(wave_size, sizeof(*reqs));
    struct listpages_page *pages = calloc(wave_size, sizeof(*pages));
    struct listpages_page *held = calloc(wave_size, sizeof(*held));
    struct listpages_page *rest = calloc(wave_size, sizeof(*rest));
    struct paginate *pager = paginate_new(&config);
    size_t n_held = 0, n;
    enum paginate_end end;
    int rc = 0;

    if (!reqs || !pages || !held || !rest || !pager) {
        rc = -ENOMEM;
        goto out;
    }
    for (;;) {
        size_t started = 0, n_rest = 0;
        struct listpages_wave flight;

        rc = paginate_next(pager, reqs, wave_size, &n);
        if (rc < 0)
            break;
        for (; started < n; started++) {
            pages[started].list = list;
            pages[started].offset = reqs[started].offset;
            pages[started].by_offset = !reqs[started].page_token;
            pages[started].path_query = listpages_v1_url(list, &reqs[started]);
            if (!pages[started].path_query) {
                rc = -ENOMEM;
                break;
            }
        }
        if (n == 0)
            break;
        if (rc == 0)
            rc = listpages_wave_start(&flight, list->request, pages, started,
                                      limits->max_parallel);
        if (rc < 0) {
            for (size_t i = 0; i < started; i++)
                listpages_page_release(&pages[i]);
            break;
        }
        if (n_held > 0) {
            /* A gap fill: it comes before every held page. */
            rc = listpages_process_run(pages, started, rest, &n_rest, pager, &flight, fn,
                                       arg, rc);
            if (rc == 0 && n_rest == 0) {
                memcpy(rest, held, n_held * sizeof(*held));
                n_rest = n_held;
                n_held = 0;
                rc = listpages_process_run(rest, n_rest, held, &n_held, pager, &flight, fn,
                                           arg, rc);
            } else {
                /* A fill is never held (it starts where delivery ended). */
                for (size_t i = 0; i < n_rest; i++)
                    listpages_page_release(&rest[i]);
                if (rc == 0)
                    rc = -EIO;
            }
        } else {
            rc = listpages_process_run(pages, started, held, &n_held, pager, &flight, fn,
                                       arg, rc);
        }
        listpages_wave_finish(&flight);
        if (rc < 0)
            break;
    }
    if (rc < 0)
        goto out;
    end = paginate_end_reason(pager);
    if (paginate_total_moved(pager) && end != PAGINATE_END_TOO_MANY_PAGES) {
        log_debug("%s: total_size changed between pages: objects moved while listed",
                  list->path);
        rc = -ESTALE;
    } else if (end == PAGINATE_END_TOO_MANY_PAGES) {
        log_warning("%s: more than %zu pages, not listed", list->path, config.max_pages);
        rc = -EFBIG;
    } else if (paginate_end_is_loop(end)) {
        log_warning("%s: listing stopped after %zu objects: %s", list->path,
                    list->delivered, paginate_end_name(end));
    } else {
        log_debug("%s: %zu objects in %zu requests, ended by %s", list->path,
                  list->delivered, paginate_requests(pager), paginate_end_name(end));
    }
out:
    for (size_t i = 0; i < n_held; i++)
        listpages_page_release(&held[i]);
    paginate_free(pager);
    free(rest);
    free(held);
    free(pages);
    free(reqs);
    /* The ids are freed next by the caller: no longer counted. */
    listpages_charge(list, 0);
    return rc;
}

int listpages_walk_cursor(struct request *req, const char *base, const char *id,
                          const char *tail,
                          int (*failed)(void *failed_arg,
                                        const struct listpages_page *page),
                          void *failed_arg, api_objects_fn fn, void *arg)
{
    struct listpages list = {
        .request = req, .limits = *request_limits(req), .id_key = "id"};
    struct idset tokens = IDSET_INIT;
    size_t max_pages =
        list.limits.max_items > SIZE_MAX - 2 ? SIZE_MAX : list.limits.max_items + 2;
    struct buf path = BUF_INIT;
    char *token = NULL;
    size_t pages = 0;
    int rc;

    rc = request_append_path(&path, base, id, tail);
    if (rc < 0)
        goto out;
    snprintf(list.path, sizeof(list.path), "%s", path.data);
    for (;;) {
        struct listpages_page page = {.list = &list, .offset = list.delivered};
        struct buf url = BUF_INIT;
        long fresh;

        if (pages++ >= max_pages) {
            log_warning("%s: more than %zu pages, not listed", list.path, max_pages);
            rc = -EFBIG;
            break;
        }
        rc = buf_printf(&url, "%s?page_size=%u", path.data, list.limits.page_size);
        if (rc == 0 && token)
            rc = request_append_param(&url, "page_token", token);
        if (rc == 0)
            rc = request_append_scope(&url, req);
        if (rc < 0) {
            buf_free(&url);
            break;
        }
        page.path_query = buf_steal(&url);
        if (!page.path_query) {
            rc = -ENOMEM;
            break;
        }
        listpages_page_fetch(&page);
        if (page.rc < 0 && failed && (rc = failed(failed_arg, &page)) < 0) {
            listpages_page_release(&page);
            break;
        }
        if (page.rc < 0) {
            rc = page.rc;
            request_log_failure(page.path_query, rc, &page.resp, page.reason);
            listpages_page_release(&page);
            break;
        }
        fresh = listpages_page_take_ids(&page, &list.ids);
        if (fresh < 0) {
            rc = (int)fresh;
            listpages_page_release(&page);
            break;
        }
        free(token);
        token = page.token ? strdup(page.token) : NULL;
        if (page.token && !token) {
            rc = -ENOMEM;
            listpages_page_release(&page);
            break;
        }
        if (page.count > 0 && fresh == 0) {
            log_warning("%s: listing stopped after %zu objects: page of items already "
                        "seen",
                        list.path, list.delivered);
            listpages_page_release(&page);
            break;
        }
        rc = listpages_page_deliver(&page, fn, arg);
        if (rc < 0 || !token)
            break;
        rc = idset_add(&tokens, token, strlen(token));
        if (rc < 0)
            break;
        if (rc == 0) {
            log_warning("%s: listing stopped after %zu objects: repeated "
                        "next_page_token",
                        list.path, list.delivered);
            rc = 0;
            break;
        }
        rc = 0;
    }
out:
    free(token);
    buf_free(&path);
    idset_free(&tokens);
    idset_free(&list.ids);
    return rc;
}
