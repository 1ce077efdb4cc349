/*
 * api — LlamaCloud batch endpoints over a transport (see
 * include/batchfs/api.h).
 *
 * For: URLs, pagination (driven by paginate.c), page parsing, dropping
 * malformed and repeated objects, and turning HTTP statuses into errnos with
 * one log line. Not for: retries and pacing (the transport), caching, FUSE,
 * file names or rendering.
 *
 * Pages of one listing may be fetched by several threads at once (a crew
 * per wave of pages); each thread only fetches and parses its own pages.
 * Everything that depends on order — duplicate detection, the paginator,
 * the callback — runs on the calling thread, one page at a time, in offset
 * order.
 */
#include "batchfs/api.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batchfs/buf.h"
#include "batchfs/idset.h"
#include "batchfs/jsontext.h"
#include "batchfs/log.h"
#include "batchfs/paginate.h"

#define API_V1_JOBS "/api/v1/beta/batch-processing"
#define API_V2_BATCHES "/api/v2/batches"
#define API_MAX_PARALLEL 64
#define API_WAVE_FACTOR 16

struct api {
    const struct transport *transport;
    char *project_id;
    char *organization_id;
    unsigned page_size;
    unsigned max_parallel;
    size_t max_items;
    /* Set once the missing v2 list has been logged, from any thread. */
    atomic_bool batches_missing_logged;
    /* Requests by endpoint and outcome; updated atomically by any thread. */
    unsigned long long counts[API_ENDPOINT_COUNT][API_OUTCOME_COUNT];
};

const char *const api_endpoint_names[API_ENDPOINT_COUNT] = {
    "list_jobs", "get_job", "list_items", "list_batches", "get_batch", "other",
};

const char *const api_outcome_names[API_OUTCOME_COUNT] = {
    "2xx", "401", "403", "404", "429", "4xx", "5xx", "no_response",
};

static enum api_endpoint api_endpoint_of(const char *path_query)
{
    static const char v1[] = "/api/v1/beta/batch-processing";
    static const char v2[] = "/api/v2/batches";

    if (!strncmp(path_query, v2, sizeof(v2) - 1))
        return path_query[sizeof(v2) - 1] == '/' ? API_GET_BATCH : API_LIST_BATCHES;
    if (strncmp(path_query, v1, sizeof(v1) - 1))
        return API_OTHER_ENDPOINT;
    path_query += sizeof(v1) - 1;
    if (*path_query != '/')
        return API_LIST_JOBS;
    if (!strncmp(path_query, "/items/", 7))
        return API_OTHER_ENDPOINT;
    return strstr(path_query, "/items") ? API_LIST_ITEMS : API_GET_JOB;
}

static enum api_outcome api_outcome_of(int transport_rc, long status)
{
    if (transport_rc < 0)
        return API_NO_RESPONSE;
    if (status >= 200 && status < 300)
        return API_2XX;
    switch (status) {
    case 401:
        return API_401;
    case 403:
        return API_403;
    case 404:
        return API_404;
    case 429:
        return API_429;
    default:
        return status >= 500 ? API_5XX : API_OTHER_4XX;
    }
}

void api_get_stats(struct api *api, struct api_stats *out)
{
    for (int e = 0; e < API_ENDPOINT_COUNT; e++)
        for (int o = 0; o < API_OUTCOME_COUNT; o++)
            out->counts[e][o] = __atomic_load_n(&api->counts[e][o], __ATOMIC_RELAXED);
}

/* ---- URLs ------------------------------------------------------------- */

/* Percent-escapes everything but RFC 3986 unreserved characters, so that an
 * id can never add a path segment or a query parameter. */
static int api_append_escaped(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = 0;

    for (; *s && rc == 0; s++) {
        unsigned char c = (unsigned char)*s;

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            rc = buf_append_char(b, (char)c);
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};

            rc = buf_append(b, esc, sizeof(esc));
        }
    }
    return rc;
}

/* Appends "?name=value" or "&name=value" (value escaped). */
static int api_append_param(struct buf *b, const char *name, const char *value)
{
    bool first = b->len == 0 || !memchr(b->data, '?', b->len);
    int rc = buf_printf(b, "%c%s=", first ? '?' : '&', name);

    if (rc == 0)
        rc = api_append_escaped(b, value);
    return rc;
}

static int api_append_scope(struct buf *b, const struct api *api)
{
    int rc = 0;

    if (api->organization_id)
        rc = api_append_param(b, "organization_id", api->organization_id);
    if (rc == 0 && api->project_id)
        rc = api_append_param(b, "project_id", api->project_id);
    return rc;
}

/* "/api/v1/beta/batch-processing" or ".../{job_id}/items". */
static int api_append_v1_list_path(struct buf *b, const char *job_id)
{
    int rc = buf_append_str(b, API_V1_JOBS);

    if (rc == 0 && job_id) {
        rc = buf_append_char(b, '/');
        if (rc == 0)
            rc = api_append_escaped(b, job_id);
        if (rc == 0)
            rc = buf_append_str(b, "/items");
    }
    return rc;
}

/* ---- responses -------------------------------------------------------- */

static int api_status_errno(long status)
{
    if (status >= 200 && status < 300)
        return 0;
    if (status == 404)
        return -ENOENT;
    if (status == 401 || status == 403)
        return -EACCES;
    if (status == 429)
        return -EAGAIN;
    return -EIO;
}

/* The one log line for a failed request. */
static void api_log_failure(const char *path_query, int rc, long status,
                            const char *reason)
{
    if (reason && *reason)
        log_warning("GET %s: %s", path_query, reason);
    else if (status == 404)
        log_debug("GET %s: HTTP 404", path_query);
    else if (status && !(status >= 200 && status < 300))
        log_warning("GET %s: HTTP %ld", path_query, status);
    else if (rc == -ECANCELED)
        log_debug("GET %s: %s", path_query, strerror(-rc));
    else
        log_warning("GET %s: %s", path_query, strerror(-rc));
}

/* GETs path_query. 0 with a 2xx response in *resp; otherwise a negative
 * errno, *status the HTTP status (0 when none came) and *resp empty. Does not
 * log: the caller knows whether the failure matters. */
static int api_fetch(struct api *api, const char *path_query, struct http_response *resp,
                     long *status)
{
    int rc;

    *status = 0;
    rc = api->transport->get(api->transport->ctx, path_query, resp);
    if (rc != -ECANCELED)
        __atomic_add_fetch(&api->counts[api_endpoint_of(path_query)]
                                       [api_outcome_of(rc, rc < 0 ? 0 : resp->status)],
                           1, __ATOMIC_RELAXED);
    if (rc < 0) {
        http_response_free(resp);
        return rc;
    }
    *status = resp->status;
    rc = api_status_errno(resp->status);
    if (rc < 0)
        http_response_free(resp);
    return rc;
}

/* ---- reading bodies --------------------------------------------------- */

/* Why a body jsontext refused as an object was refused, for the log line. */
static void api_body_refused(const struct http_response *resp, char *reason,
                             size_t reason_size)
{
    snprintf(reason, reason_size, "%s",
             jsontext_validate(resp->body.data, resp->body.len) ? "body is not JSON"
                                                                 : "body is not a JSON object");
}

/* Finds the members `keys` of the body, which must be a JSON object. */
static int api_body_members(const struct http_response *resp, const char *const *keys,
                            size_t count, struct json_span *out, char *reason,
                            size_t reason_size)
{
    if (jsontext_members(resp->body.data, resp->body.len, keys, count, out) < 0) {
        api_body_refused(resp, reason, reason_size);
        return -EIO;
    }
    return 0;
}

/* A count (total_size): a JSON number whose value is a whole number from 0
 * to 2^53, where a double is still exact ("120", "1.2e2"). */
static bool api_count_value(const char *text, struct json_span span, size_t *out)
{
    char digits[40];
    char *end;
    double d;
    char c = span.len ? text[span.start] : '\0';

    if (!(c == '-' || (c >= '0' && c <= '9')) || span.len >= sizeof(digits))
        return false;
    memcpy(digits, text + span.start, span.len);
    digits[span.len] = '\0';
    d = strtod(digits, &end); /* the C locale: batchfs never sets another */
    if (*end || !(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d ||
        (uint64_t)d > SIZE_MAX)
        return false;
    *out = (size_t)d;
    return true;
}

/*
 * Decodes the string at `span` of `text` into dst (room for span.len bytes)
 * when it is usable as an id or token: a string, not empty, without NUL
 * (those become C strings, URL segments and file names). Returns its
 * length, or 0 when it is not.
 */
static size_t api_decode_clean(const char *text, struct json_span span, char *dst)
{
    size_t len;

    if (!span.len || text[span.start] != '"' ||
        jsontext_string(text + span.start, span.len, dst, &len) < 0 || !len ||
        memchr(dst, '\0', len))
        return 0;
    return len;
}

/* Whether the value at `span` of `text` is the string `want`. */
static bool api_string_equals(const char *text, struct json_span span, const char *want)
{
    /* Even fully escaped (6 bytes a character), a status fits. */
    char decoded[160];
    size_t len;

    if (!span.len || span.len > sizeof(decoded) || text[span.start] != '"' ||
        jsontext_string(text + span.start, span.len, decoded, &len) < 0)
        return false;
    return len == strlen(want) && memcmp(decoded, want, len) == 0;
}

/*
 * Fills `object` from the element at text[span): its identity, the member
 * `id_key`, is decoded into dst (room for span.len bytes). With `status`,
 * *status_ok says whether its "status" is that string. The values of
 * `extra` (n_extra of them, at most API_PREPARER_MAX_KEYS) go to extra_out,
 * found in the same pass (object->fields then points there). Returns false
 * when the element is not an object with an identity.
 */
static bool api_read_object_fields(const char *text, struct json_span span, const char *id_key,
                                   const char *status, bool *status_ok, char *dst,
                                   const char *const *extra, size_t n_extra,
                                   struct json_span *extra_out, struct api_object *object)
{
    const char *keys[2 + API_PREPARER_MAX_KEYS];
    size_t where[API_PREPARER_MAX_KEYS], n = 0;
    const char *element = text + span.start;
    struct json_span fields[2 + API_PREPARER_MAX_KEYS];

    if (n_extra > API_PREPARER_MAX_KEYS)
        return false;
    keys[n++] = id_key;
    if (status)
        keys[n++] = "status";
    /* A key the API reads anyway (the identity, the status) is looked up
     * once and handed to both. */
    for (size_t k = 0; k < n_extra; k++) {
        where[k] = n;
        for (size_t j = 0; j < n; j++)
            if (!strcmp(keys[j], extra[k]))
                where[k] = j;
        if (where[k] == n)
            keys[n++] = extra[k];
    }
    if (!span.len || element[0] != '{' || jsontext_members(element, span.len, keys, n, fields) < 0)
        return false;
    object->id_len = api_decode_clean(element, fields[0], dst);
    if (!object->id_len)
        return false;
    object->id = dst;
    object->raw = element;
    object->raw_len = span.len;
    object->prepared = NULL;
    object->fields = NULL;
    if (status)
        *status_ok = api_string_equals(element, fields[1], status);
    if (n_extra) {
        for (size_t k = 0; k < n_extra; k++)
            extra_out[k] = fields[where[k]];
        object->fields = extra_out;
    }
    return true;
}

static bool api_read_object(const char *text, struct json_span span, const char *id_key,
                            const char *status, bool *status_ok, char *dst,
                            struct api_object *object)
{
    return api_read_object_fields(text, span, id_key, status, status_ok, dst, NULL, 0, NULL,
                                  object);
}

/* The elements of the array at `array` (a span of text), as spans relative
 * to `text`. */
static int api_locate_elements(const char *text, struct json_span array,
                               struct json_span **spans, size_t *count)
{
    int rc = jsontext_array_elements(text + array.start, array.len, spans, count);

    if (rc < 0)
        return rc == -ENOMEM ? rc : -EIO;
    for (size_t i = 0; i < *count; i++)
        (*spans)[i].start += array.start;
    return 0;
}

/* ---- one page of a list ------------------------------------------------ */

/* What a listing is, for building its URLs and checking its objects. */
struct api_list {
    struct api *api;
    const char *job_id; /* items of this job; NULL for the job list */
    const char *status; /* the status filter, or NULL */
    const char *id_key; /* "id" or "item_id" */
    const struct api_preparer *preparer; /* or NULL */
    char path[512];     /* the listing's path, for log lines */
    struct idset ids; /* ids delivered (or tentatively taken) so far */
    size_t delivered;   /* objects handed to the callback */
    bool hinted;        /* preparer->expect has been called */
};

/* An object of a page that has its identity. */
struct api_candidate {
    struct api_object object;
    bool wrong_status; /* kept out, but its id still counts as seen */
    bool repeated;     /* its id was seen before (decided when reported) */
};

struct api_page {
    struct api_list *list;
    char *path_query;
    size_t offset;
    bool pending; /* its crew has not finished with it: under the crew's lock */

    /* Filled in by the fetch; read after it completes. */
    int rc;
    long status;
    char reason[160];
    struct http_response resp;
    struct api_candidate *candidates;
    char *ids;        /* the candidates' decoded ids, one block */
    struct json_span *fields; /* the preparer's keys' values, per candidate */
    size_t n_candidates;
    size_t count;     /* elements of "items" */
    size_t repeats_within; /* elements repeating an id given earlier on the page */
    size_t malformed; /* elements dropped for want of an identity */
    size_t wrong_status;
    char *token;      /* next_page_token; NULL when absent or unusable */
    size_t total;     /* 0 when absent */
    void *prepared;   /* the preparer's page state */
};

static void api_page_release(struct api_page *page)
{
    const struct api_preparer *preparer = page->list ? page->list->preparer : NULL;

    if (page->prepared && preparer && preparer->release)
        preparer->release(preparer->arg, page->prepared);
    free(page->path_query);
    free(page->candidates);
    free(page->fields);
    free(page->ids);
    free(page->token);
    http_response_free(&page->resp);
    memset(page, 0, sizeof(*page));
}

/* Keeps the page's next_page_token when it is a usable string. */
static int api_page_token(struct api_page *page, struct json_span span)
{
    const char *body = page->resp.body.data;
    char first = span.len ? body[span.start] : 'n';

    if (first == 'n' || (first == '"' && span.len == 2))
        return 0; /* null, absent or "": the last page */
    page->token = malloc(span.len);
    if (!page->token)
        return -ENOMEM;
    if (!api_decode_clean(body, span, page->token)) {
        free(page->token);
        page->token = NULL;
        log_debug("GET %s: next_page_token ignored: not a usable string", page->path_query);
    }
    return 0;
}

/* Reads `{"items": [...], "next_page_token": …, "total_size": …}`. */
static int api_page_parse(struct api_page *page)
{
    static const char *const keys[] = {"items", "next_page_token", "total_size"};
    const struct api_list *list = page->list;
    const char *body = page->resp.body.data;
    struct json_span members[3], *spans = NULL;
    size_t n_spans = 0, used = 0;
    size_t n_keys = list->preparer ? list->preparer->n_keys : 0;
    int rc;

    rc = api_body_members(&page->resp, keys, 3, members, page->reason, sizeof(page->reason));
    if (rc < 0)
        goto out;
    if (!members[0].len || body[members[0].start] != '[') {
        snprintf(page->reason, sizeof(page->reason), "items %s",
                 members[0].len ? "is not an array" : "missing");
        rc = -EIO;
        goto out;
    }
    rc = api_page_token(page, members[1]);
    if (rc < 0)
        goto out;
    if (!api_count_value(body, members[2], &page->total) && members[2].len &&
        body[members[2].start] != 'n')
        log_debug("GET %s: total_size ignored: not an integer >= 0", page->path_query);

    rc = api_locate_elements(body, members[0], &spans, &n_spans);
    if (rc < 0) {
        if (rc == -EIO)
            snprintf(page->reason, sizeof(page->reason),
                     "items could not be located in the body");
        goto out;
    }
    page->count = n_spans;
    if (n_spans > 0) {
        /* Each decoded id and its NUL fit in its element's bytes. */
        page->candidates = calloc(n_spans, sizeof(*page->candidates));
        page->ids = malloc(members[0].len);
        if (n_keys)
            page->fields = malloc(n_spans * n_keys * sizeof(*page->fields));
        if (!page->candidates || !page->ids || (n_keys && !page->fields)) {
            rc = -ENOMEM;
            goto out;
        }
    }
    for (size_t i = 0; i < n_spans; i++) {
        struct api_candidate *c = &page->candidates[page->n_candidates];
        bool status_ok = true;

        if (!api_read_object_fields(body, spans[i], list->id_key, list->status, &status_ok,
                                    page->ids + used, n_keys ? list->preparer->keys : NULL,
                                    n_keys, page->fields + page->n_candidates * n_keys,
                                    &c->object)) {
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
    free(spans);
    return rc;
}

/* Fetches and parses one page; runs on a worker thread or inline. */
static void *api_page_fetch(void *arg)
{
    struct api_page *page = arg;
    const struct api_preparer *preparer = page->list->preparer;

    page->rc = api_fetch(page->list->api, page->path_query, &page->resp, &page->status);
    if (page->rc == 0)
        page->rc = api_page_parse(page);
    if (page->rc == 0 && preparer && page->n_candidates > 0) {
        /* The candidates' objects, gathered for the preparer; it writes
         * `prepared` into them, which is copied back. */
        struct api_object *objects = malloc(page->n_candidates * sizeof(*objects));

        if (!objects) {
            page->rc = -ENOMEM;
            return NULL;
        }
        for (size_t i = 0; i < page->n_candidates; i++)
            objects[i] = page->candidates[i].object;
        page->rc = preparer->prepare(preparer->arg, objects, page->n_candidates,
                                     &page->resp.body, &page->prepared);
        for (size_t i = 0; page->rc == 0 && i < page->n_candidates; i++)
            page->candidates[i].object.prepared = objects[i].prepared;
        free(objects);
    }
    return NULL;
}

/*
 * The threads that fetch one wave of pages: at most max_parallel, each
 * taking the next page in offset order when it is done with one, so that
 * pages arrive in about the order they are delivered and the connections
 * never wait for the slowest page of a batch. A page past an empty page of
 * the wave is not requested: the listing ends at the empty page, and the
 * paginator would drop the later ones unread (so a total_size that lies high
 * costs at most the requests already under way, not the rest of the wave).
 */
struct api_crew {
    pthread_mutex_t lock;
    pthread_cond_t finished; /* a page is no longer pending */
    struct api_page *pages;
    size_t n, next;          /* pages[next..n) are not taken yet */
    size_t stop_offset;      /* pages beyond it are not requested */
    bool stopped;            /* the listing failed: request nothing more */
    pthread_t threads[API_MAX_PARALLEL];
    size_t n_threads;
};

static void *api_crew_work(void *arg)
{
    struct api_crew *crew = arg;

    pthread_mutex_lock(&crew->lock);
    while (crew->next < crew->n) {
        struct api_page *page = &crew->pages[crew->next++];
        bool skip = crew->stopped || page->offset > crew->stop_offset;

        pthread_mutex_unlock(&crew->lock);
        if (skip)
            page->rc = -ECANCELED; /* never looked at: see api_crew */
        else
            api_page_fetch(page);
        pthread_mutex_lock(&crew->lock);
        if (!skip && page->rc == 0 && page->count == 0 && page->offset < crew->stop_offset)
            crew->stop_offset = page->offset;
        page->pending = false;
        pthread_cond_broadcast(&crew->finished);
    }
    pthread_mutex_unlock(&crew->lock);
    return NULL;
}

/* Fetches pages[0..n) with up to `threads` threads; a single page, or a
 * crew that cannot have a thread, is fetched right here (the listing is
 * then slower, not wrong). */
static int api_crew_start(struct api_crew *crew, struct api_page *pages, size_t n,
                          size_t threads)
{
    if (pthread_mutex_init(&crew->lock, NULL))
        return -ENOMEM;
    if (pthread_cond_init(&crew->finished, NULL)) {
        pthread_mutex_destroy(&crew->lock);
        return -ENOMEM;
    }
    crew->pages = pages;
    crew->n = n;
    crew->next = 0;
    crew->stop_offset = SIZE_MAX;
    crew->stopped = false;
    crew->n_threads = 0;
    for (size_t i = 0; i < n; i++)
        pages[i].pending = true;
    if (threads > API_MAX_PARALLEL)
        threads = API_MAX_PARALLEL;
    while (n > 1 && crew->n_threads < threads && crew->n_threads < n &&
           pthread_create(&crew->threads[crew->n_threads], NULL, api_crew_work, crew) == 0)
        crew->n_threads++;
    if (crew->n_threads == 0)
        api_crew_work(crew);
    return 0;
}

/* Waits until the crew is done with `page` (at once for pages it never had). */
static void api_crew_wait(struct api_crew *crew, struct api_page *page)
{
    pthread_mutex_lock(&crew->lock);
    while (page->pending)
        pthread_cond_wait(&crew->finished, &crew->lock);
    pthread_mutex_unlock(&crew->lock);
}

/* Pages not taken yet will not be requested. */
static void api_crew_stop(struct api_crew *crew)
{
    pthread_mutex_lock(&crew->lock);
    crew->stopped = true;
    pthread_mutex_unlock(&crew->lock);
}

/* Joins the threads once every page has been waited for. */
static void api_crew_finish(struct api_crew *crew)
{
    for (size_t i = 0; i < crew->n_threads; i++)
        pthread_join(crew->threads[i], NULL);
    crew->n_threads = 0;
    pthread_cond_destroy(&crew->finished);
    pthread_mutex_destroy(&crew->lock);
}

/* Marks the page's repeated objects and takes its new ids into the set.
 * Returns how many of the page's elements were not seen before (malformed
 * ones count as new: only a repeat is a sign of a loop), or -ENOMEM. */
static long api_page_take_ids(struct api_page *page, struct idset *ids)
{
    size_t repeated = 0;

    for (size_t i = 0; i < page->n_candidates; i++) {
        struct api_candidate *c = &page->candidates[i];
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
        for (size_t j = 0; c->repeated && j < i; j++) {
            if (page->candidates[j].object.id_len == c->object.id_len &&
                !memcmp(page->candidates[j].object.id, c->object.id, c->object.id_len)) {
                page->repeats_within++;
                break;
            }
        }
    }
    /* Malformed elements are not new items: a server that pads every page
     * with junk must not keep a listing going forever. */
    return (long)(page->n_candidates - repeated);
}

static void api_page_give_back_ids(struct api_page *page, struct idset *ids)
{
    for (size_t i = 0; i < page->n_candidates; i++) {
        if (!page->candidates[i].repeated)
            idset_remove(ids, page->candidates[i].object.id, page->candidates[i].object.id_len);
        page->candidates[i].repeated = false;
    }
    page->repeats_within = 0;
}

/* Most ids a listing makes room for on its total_size's word: one that
 * lies high must not reserve gigabytes. Beyond it, the set grows. */
#define API_EXPECT_MAX ((size_t)1 << 20)

/* The listing's first total_size: room for its ids, at the rate of key
 * bytes seen so far, and the preparer's hint. */
static void api_list_expect(struct api_list *list, size_t total)
{
    size_t count = total < list->api->max_items ? total : list->api->max_items;
    size_t seen = list->ids.count;

    list->hinted = true;
    /* Only a hint: without the room, the set grows as it would have. */
    (void)idset_expect(&list->ids, count < API_EXPECT_MAX ? count : API_EXPECT_MAX,
                       seen ? list->ids.keys.len / seen + 1 : 64);
    if (list->preparer && list->preparer->expect)
        list->preparer->expect(list->preparer->arg, count);
}

/* Hands the page's kept objects to the callback, then frees the page. */
static int api_page_deliver(struct api_page *page, api_objects_fn fn, void *arg)
{
    struct api_list *list = page->list;
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
        objects = malloc(page->n_candidates * sizeof(*objects));
        if (!objects) {
            rc = -ENOMEM;
            goto out;
        }
    }
    for (size_t i = 0; i < page->n_candidates; i++) {
        const struct api_candidate *c = &page->candidates[i];

        repeated += c->repeated;
        if (!c->repeated && !c->wrong_status)
            objects[kept++] = c->object;
    }
    if (repeated)
        log_debug("dropped %zu repeated items from page at offset %zu of %s", repeated,
                  page->offset, list->path);
    if (kept > list->api->max_items - list->delivered) {
        log_warning("%s has more than %zu objects: not listed", list->path,
                    list->api->max_items);
        rc = -EFBIG;
        goto out;
    }
    list->delivered += kept;
    if (!list->hinted && page->total)
        api_list_expect(list, page->total);
    if (kept > 0)
        rc = fn(arg, objects, kept);
    if (rc < 0)
        log_debug("listing %s aborted by its reader: %s", list->path, strerror(-rc));
out:
    free(objects);
    api_page_release(page);
    return rc;
}

/* Reports a fetched page to the paginator and acts on its verdict: the
 * page is handed to the callback at once (while the crew fetches the pages
 * after it), dropped, or held. Returns 0 (delivered or dropped), 1 (held:
 * the page is kept as it is), or a negative errno that ends the listing. */
static int api_page_process(struct api_page *page, struct paginate *pager,
                            api_objects_fn fn, void *arg)
{
    struct paginate_page report;
    enum paginate_verdict verdict;
    long fresh;
    int rc = 0;

    /* A page past the end is not looked at, even if its request failed. */
    if (paginate_done(pager))
        goto drop;
    if (page->rc < 0) {
        rc = page->rc;
        api_log_failure(page->path_query, rc, page->status, page->reason);
        goto drop;
    }
    fresh = api_page_take_ids(page, &page->list->ids);
    if (fresh < 0) {
        rc = (int)fresh;
        goto drop;
    }
    report = (struct paginate_page){
        .offset = page->offset,
        /* An id twice on one page may not stand for two places in the
         * server's order: advancing by one less risks only an overlap,
         * which repeats are dropped from, never a skipped item. */
        .count = page->count - page->repeats_within,
        .new_items = (size_t)fresh,
        .next_page_token = page->token,
        .total_size = page->total,
    };
    verdict = paginate_report(pager, &report);
    if (verdict == PAGINATE_DELIVER)
        return api_page_deliver(page, fn, arg);
    api_page_give_back_ids(page, &page->list->ids);
    if (verdict == PAGINATE_HOLD)
        return 1;
drop:
    api_page_release(page);
    return rc;
}

static char *api_v1_page_url(const struct api_list *list,
                             const struct paginate_request *req)
{
    struct buf b = BUF_INIT;
    int rc = api_append_v1_list_path(&b, list->job_id);

    if (rc == 0)
        rc = buf_printf(&b, "?limit=%u&offset=%zu", list->api->page_size, req->offset);
    if (rc == 0 && list->status)
        rc = api_append_param(&b, "status", list->status);
    if (rc == 0 && req->page_token)
        rc = api_append_param(&b, "page_token", req->page_token);
    if (rc == 0)
        rc = api_append_scope(&b, list->api);
    if (rc < 0) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

/* Processes pages[0..n) in order as `crew` finishes them. Pages from the
 * first held one on are moved to held[] (which must be empty then). Returns
 * 0 or a negative errno; every page not held is released. */
static int api_process_run(struct api_page *pages, size_t n, struct api_page *held,
                           size_t *n_held, struct paginate *pager, struct api_crew *crew,
                           api_objects_fn fn, void *arg, int rc)
{
    size_t kept = 0;

    for (size_t i = 0; i < n; i++) {
        int prc;

        if (rc < 0)
            api_crew_stop(crew);
        api_crew_wait(crew, &pages[i]);
        if (rc < 0) {
            api_page_release(&pages[i]);
            continue;
        }
        if (kept > 0) {
            held[kept++] = pages[i];
            memset(&pages[i], 0, sizeof(pages[i]));
            continue;
        }
        prc = api_page_process(&pages[i], pager, fn, arg);
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
        api_page_release(&held[i]);
    return rc;
}

/* Pages planned at once by a listing (WAVE_FACTOR x max_parallel): its
 * crew of max_parallel threads starts the next as each one ends, so the
 * network stays busy while pages are parsed. Between two waves the
 * connections drain and refill, about one round trip each time, so a
 * wave is large: 128 pages with 8 connections, a job of 100,000 items in
 * one (4 x max_parallel cost a 100,000-item listing 4 % more time). A
 * total_size that lies high costs no more for it (see api_crew). */
static size_t api_wave_size(const struct api *api)
{
    return (size_t)api->max_parallel * API_WAVE_FACTOR;
}

static int api_list_v1(struct api_list *list, api_objects_fn fn, void *arg)
{
    struct api *api = list->api;
    struct paginate_config config = {
        .limit = api->page_size,
        .max_parallel = api_wave_size(api),
        /* Every page but the last holds an item: more pages than that
         * means the server is going round in circles. */
        .max_pages = api->max_items > SIZE_MAX - 2 ? SIZE_MAX : api->max_items + 2,
    };
    size_t wave_size = api_wave_size(api);
    struct paginate_request *reqs = calloc(wave_size, sizeof(*reqs));
    struct api_page *wave = calloc(wave_size, sizeof(*wave));
    struct api_page *held = calloc(wave_size, sizeof(*held));
    struct api_page *rest = calloc(wave_size, sizeof(*rest));
    struct paginate *pager = paginate_new(&config);
    size_t n_held = 0, n;
    enum paginate_end end;
    int rc = 0;

    if (!reqs || !wave || !held || !rest || !pager) {
        rc = -ENOMEM;
        goto out;
    }
    for (;;) {
        size_t started = 0, n_rest = 0;
        struct api_crew crew;

        rc = paginate_next(pager, reqs, wave_size, &n);
        if (rc < 0)
            break;
        for (; started < n; started++) {
            wave[started].list = list;
            wave[started].offset = reqs[started].offset;
            wave[started].path_query = api_v1_page_url(list, &reqs[started]);
            if (!wave[started].path_query) {
                rc = -ENOMEM;
                break;
            }
        }
        if (n == 0)
            break;
        if (rc == 0)
            rc = api_crew_start(&crew, wave, started, api->max_parallel);
        if (rc < 0) {
            for (size_t i = 0; i < started; i++)
                api_page_release(&wave[i]);
            break;
        }
        if (n_held > 0) {
            /* A gap fill: it comes before every held page. */
            rc = api_process_run(wave, started, rest, &n_rest, pager, &crew, fn, arg, rc);
            if (rc == 0 && n_rest == 0) {
                memcpy(rest, held, n_held * sizeof(*held));
                n_rest = n_held;
                n_held = 0;
                rc = api_process_run(rest, n_rest, held, &n_held, pager, &crew, fn, arg,
                                     rc);
            } else {
                /* A fill is never held (it starts where delivery ended). */
                for (size_t i = 0; i < n_rest; i++)
                    api_page_release(&rest[i]);
                if (rc == 0)
                    rc = -EIO;
            }
        } else {
            rc = api_process_run(wave, started, held, &n_held, pager, &crew, fn, arg, rc);
        }
        api_crew_finish(&crew);
        if (rc < 0)
            break;
    }
    if (rc < 0)
        goto out;
    end = paginate_end_reason(pager);
    if (end == PAGINATE_END_TOO_MANY_PAGES) {
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
        api_page_release(&held[i]);
    paginate_free(pager);
    free(rest);
    free(held);
    free(wave);
    free(reqs);
    return rc;
}

/* ---- public ----------------------------------------------------------- */

struct api *api_new(const struct api_config *config)
{
    struct api *api;

    if (!config || !config->transport || !config->transport->get ||
        config->page_size < 1 || config->page_size > 1000 || config->max_parallel < 1 ||
        config->max_items < 1)
        return NULL;
    api = calloc(1, sizeof(*api));
    if (!api)
        return NULL;
    api->transport = config->transport;
    api->page_size = config->page_size;
    api->max_parallel =
        config->max_parallel > API_MAX_PARALLEL ? API_MAX_PARALLEL : config->max_parallel;
    api->max_items = config->max_items;
    atomic_init(&api->batches_missing_logged, false);
    if (config->project_id && *config->project_id &&
        !(api->project_id = strdup(config->project_id)))
        goto fail;
    if (config->organization_id && *config->organization_id &&
        !(api->organization_id = strdup(config->organization_id)))
        goto fail;
    return api;
fail:
    api_free(api);
    return NULL;
}

void api_free(struct api *api)
{
    if (!api)
        return;
    free(api->project_id);
    free(api->organization_id);
    free(api);
}

int api_check_access(struct api *api)
{
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct buf url = BUF_INIT;
    long status;
    int rc;

    rc = buf_printf(&url, "%s?limit=1", API_V1_JOBS);
    if (rc == 0)
        rc = api_append_scope(&url, api);
    if (rc < 0)
        goto out;
    rc = api_fetch(api, url.data, &resp, &status);
    if (rc < 0)
        api_log_failure(url.data, rc, status, NULL);
out:
    http_response_free(&resp);
    buf_free(&url);
    return rc;
}

int api_list_jobs(struct api *api, api_objects_fn fn, void *arg)
{
    struct api_list list = {.api = api, .id_key = "id"};
    int rc;

    snprintf(list.path, sizeof(list.path), "%s", API_V1_JOBS);
    rc = api_list_v1(&list, fn, arg);
    idset_free(&list.ids);
    return rc;
}

int api_list_items(struct api *api, const char *job_id, const char *status,
                   api_objects_fn fn, void *arg)
{
    return api_list_items_prepared(api, job_id, status, NULL, fn, arg);
}

int api_list_items_prepared(struct api *api, const char *job_id, const char *status,
                            const struct api_preparer *preparer, api_objects_fn fn,
                            void *arg)
{
    struct api_list list = {.api = api,
                            .job_id = job_id,
                            .status = status,
                            .id_key = "item_id",
                            .preparer = preparer};
    int rc;

    if (!job_id)
        return -EINVAL;
    snprintf(list.path, sizeof(list.path), "%s/%s/items", API_V1_JOBS, job_id);
    rc = api_list_v1(&list, fn, arg);
    idset_free(&list.ids);
    return rc;
}

/* Builds base + "/" + escaped id [+ "?" fixed query] + scope. */
static char *api_object_url(const struct api *api, const char *base, const char *id,
                            const char *query)
{
    struct buf b = BUF_INIT;
    int rc = buf_printf(&b, "%s/", base);

    if (rc == 0)
        rc = api_append_escaped(&b, id);
    if (rc == 0 && query)
        rc = buf_printf(&b, "?%s", query);
    if (rc == 0)
        rc = api_append_scope(&b, api);
    if (rc < 0) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

static bool api_is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The whole body as one object, without the white space around it. */
static struct api_object api_whole_body(const struct buf *body)
{
    struct api_object object = {body->data, body->len, NULL, 0, NULL, NULL};

    while (object.raw_len > 0 && api_is_json_space(object.raw[0])) {
        object.raw++;
        object.raw_len--;
    }
    while (object.raw_len > 0 && api_is_json_space(object.raw[object.raw_len - 1]))
        object.raw_len--;
    return object;
}

int api_get_job(struct api *api, const char *job_id, api_objects_fn fn, void *arg)
{
    static const char *const keys[] = {"job"};
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct api_object object;
    char reason[160] = "";
    struct json_span job = {0, 0};
    char *url = NULL, *id = NULL;
    long status = 0;
    int rc;

    if (!job_id)
        return -EINVAL;
    url = api_object_url(api, API_V1_JOBS, job_id, NULL);
    if (!url) {
        rc = -ENOMEM;
        goto out;
    }
    rc = api_fetch(api, url, &resp, &status);
    if (rc == 0)
        rc = api_body_members(&resp, keys, 1, &job, reason, sizeof(reason));
    if (rc == 0 && (!job.len || resp.body.data[job.start] != '{')) {
        snprintf(reason, sizeof(reason), "job missing or not an object");
        rc = -EIO;
    }
    if (rc == 0 && !(id = malloc(job.len)))
        rc = -ENOMEM;
    if (rc == 0 && !api_read_object(resp.body.data, job, "id", NULL, NULL, id, &object)) {
        snprintf(reason, sizeof(reason), "job has no string id");
        rc = -EIO;
    }
    if (rc < 0) {
        if (rc != -ENOMEM)
            api_log_failure(url, rc, status, reason);
        goto out;
    }
    rc = fn(arg, &object, 1);
out:
    free(id);
    http_response_free(&resp);
    free(url);
    return rc;
}

int api_list_batches(struct api *api, api_objects_fn fn, void *arg)
{
    struct api_list list = {.api = api, .id_key = "id"};
    struct idset tokens = IDSET_INIT;
    size_t max_pages = api->max_items > SIZE_MAX - 2 ? SIZE_MAX : api->max_items + 2;
    char *token = NULL;
    size_t pages = 0;
    int rc = 0;

    snprintf(list.path, sizeof(list.path), "%s", API_V2_BATCHES);
    for (;;) {
        struct api_page page = {.list = &list, .offset = list.delivered};
        struct buf url = BUF_INIT;
        long fresh;

        if (pages++ >= max_pages) {
            log_warning("%s: more than %zu pages, not listed", list.path, max_pages);
            rc = -EFBIG;
            break;
        }
        rc = buf_printf(&url, "%s?page_size=%u", API_V2_BATCHES, api->page_size);
        if (rc == 0 && token)
            rc = api_append_param(&url, "page_token", token);
        if (rc == 0)
            rc = api_append_scope(&url, api);
        if (rc < 0) {
            buf_free(&url);
            break;
        }
        page.path_query = buf_steal(&url);
        if (!page.path_query) {
            rc = -ENOMEM;
            break;
        }
        api_page_fetch(&page);
        if (page.rc < 0 && (page.status == 404 || page.status == 405)) {
            if (!atomic_exchange(&api->batches_missing_logged, true))
                log_info("GET %s: HTTP %ld: the server has no batch list; batches "
                         "are reachable by id only",
                         page.path_query, page.status);
            rc = -EOPNOTSUPP;
            api_page_release(&page);
            break;
        }
        if (page.rc < 0) {
            rc = page.rc;
            api_log_failure(page.path_query, rc, page.status, page.reason);
            api_page_release(&page);
            break;
        }
        fresh = api_page_take_ids(&page, &list.ids);
        if (fresh < 0) {
            rc = (int)fresh;
            api_page_release(&page);
            break;
        }
        free(token);
        token = page.token ? strdup(page.token) : NULL;
        if (page.token && !token) {
            rc = -ENOMEM;
            api_page_release(&page);
            break;
        }
        if (page.count > 0 && fresh == 0) {
            log_warning("%s: listing stopped after %zu objects: page of items already "
                        "seen",
                        list.path, list.delivered);
            api_page_release(&page);
            break;
        }
        rc = api_page_deliver(&page, fn, arg);
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
    free(token);
    idset_free(&tokens);
    idset_free(&list.ids);
    return rc;
}

/* Reads the "results" of a batch at `span` of the body: NULL with *count 0
 * for null or absent. The results' ids are decoded into *ids. */
static int api_batch_results(const struct http_response *resp, struct json_span span,
                             const char *url, struct api_object **out, size_t *count,
                             char **ids, bool *results_null, char *reason,
                             size_t reason_size)
{
    const char *body = resp->body.data;
    struct json_span *spans = NULL;
    struct idset seen = IDSET_INIT;
    size_t n_spans = 0, malformed = 0, repeated = 0, used = 0;
    int rc = 0;

    *out = NULL;
    *ids = NULL;
    *count = 0;
    *results_null = !span.len || body[span.start] == 'n';
    if (*results_null)
        return 0;
    if (body[span.start] != '[') {
        snprintf(reason, reason_size, "results is not an array");
        return -EIO;
    }
    rc = api_locate_elements(body, span, &spans, &n_spans);
    if (rc < 0) {
        if (rc == -EIO)
            snprintf(reason, reason_size, "results could not be located in the body");
        goto out;
    }
    if (n_spans > 0) {
        *out = calloc(n_spans, sizeof(**out));
        *ids = malloc(span.len);
        if (!*out || !*ids) {
            rc = -ENOMEM;
            goto out;
        }
    }
    for (size_t i = 0; i < n_spans; i++) {
        struct api_object *object = &(*out)[*count];

        if (!api_read_object(body, spans[i], "source_directory_file_id", NULL, NULL,
                             *ids + used, object)) {
            malformed++;
            continue;
        }
        rc = idset_add(&seen, object->id, object->id_len);
        if (rc < 0)
            goto out;
        if (rc == 0) {
            repeated++;
            continue;
        }
        used += object->id_len + 1;
        (*count)++;
    }
    rc = 0;
    if (malformed)
        log_warning("dropped %zu results without a source_directory_file_id from %s",
                    malformed, url);
    if (repeated)
        log_warning("dropped %zu repeated results from %s", repeated, url);
out:
    if (rc < 0) {
        free(*out);
        free(*ids);
        *out = NULL;
        *ids = NULL;
        *count = 0;
    }
    idset_free(&seen);
    free(spans);
    return rc;
}

int api_get_batch(struct api *api, const char *batch_id, api_batch_fn fn, void *arg)
{
    static const char *const keys[] = {"id", "results"};
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct api_object batch, *results = NULL;
    struct json_span members[2];
    char reason[160] = "";
    size_t count = 0;
    bool results_null = true;
    char *url = NULL, *id = NULL, *result_ids = NULL;
    long status = 0;
    int rc;

    if (!batch_id)
        return -EINVAL;
    url = api_object_url(api, API_V2_BATCHES, batch_id, "expand=results");
    if (!url) {
        rc = -ENOMEM;
        goto out;
    }
    rc = api_fetch(api, url, &resp, &status);
    if (rc == 0)
        rc = api_body_members(&resp, keys, 2, members, reason, sizeof(reason));
    if (rc == 0) {
        batch = api_whole_body(&resp.body);
        id = malloc(members[0].len + 1);
        if (!id)
            rc = -ENOMEM;
        else if (!(batch.id_len = api_decode_clean(resp.body.data, members[0], id)))
            rc = -EIO;
        batch.id = id;
        if (rc == -EIO)
            snprintf(reason, sizeof(reason), "batch has no string id");
    }
    if (rc == 0)
        rc = api_batch_results(&resp, members[1], url, &results, &count, &result_ids,
                               &results_null, reason, sizeof(reason));
    if (rc < 0) {
        if (rc != -ENOMEM)
            api_log_failure(url, rc, status, reason);
        goto out;
    }
    if (count > api->max_items) {
        log_warning("%s has more than %zu results: not listed", url, api->max_items);
        rc = -EFBIG;
        goto out;
    }
    rc = fn(arg, &batch, results, count, results_null);
out:
    free(results);
    free(result_ids);
    free(id);
    http_response_free(&resp);
    free(url);
    return rc;
}
