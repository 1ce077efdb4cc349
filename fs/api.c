/*
 * api — LlamaCloud batch endpoints over a transport (see
 * include/batchfs/api.h).
 *
 * For: URLs, sending each request (counted by endpoint and outcome),
 * turning HTTP statuses into errnos with one log line, the single objects
 * (a job, a batch and its results), and the v2 batch list, walked by cursor
 * a page at a time. The v1 lists are read by listpages.c, which sends its
 * requests through api_fetch() here; bodies are read with its readers.
 * Not for: fetching pages in parallel, parsing a page or deduplicating a
 * listing (listpages.c), retries and pacing (the transport), caching,
 * FUSE, file names or rendering.
 */
#include "batchfs/api.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batchfs/api_request.h"
#include "batchfs/buf.h"
#include "batchfs/idset.h"
#include "batchfs/jsontext.h"
#include "batchfs/listpages.h"
#include "batchfs/log.h"
#include "batchfs/paginate.h"

#define API_V1_JOBS "/api/v1/beta/batch-processing"
#define API_V2_BATCHES "/api/v2/batches"

struct api {
    const struct transport *transport;
    char *project_id;
    char *organization_id;
    struct listpages_limits limits; /* of every listing */
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

/* Appends base [+ "/" + escaped id + tail]. */
static int api_append_path(struct buf *b, const char *base, const char *id,
                           const char *tail)
{
    int rc = buf_append_str(b, base);

    if (rc == 0 && id) {
        rc = buf_append_char(b, '/');
        if (rc == 0)
            rc = api_append_escaped(b, id);
        if (rc == 0 && tail)
            rc = buf_append_str(b, tail);
    }
    return rc;
}

char *api_object_url(const struct api *api, const char *base, const char *id,
                     const char *tail)
{
    struct buf b = BUF_INIT;
    int rc = api_append_path(&b, base, id, tail);

    if (rc == 0)
        rc = api_append_scope(&b, api);
    if (rc < 0) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

char *api_v1_page_url(const struct listpages *list, const struct paginate_request *req)
{
    struct buf b = BUF_INIT;
    /* "/api/v1/beta/batch-processing" or ".../{job_id}/items" */
    int rc = api_append_path(&b, API_V1_JOBS, list->job_id, "/items");

    if (rc == 0)
        rc = buf_printf(&b, "?limit=%u&offset=%zu", list->limits.page_size, req->offset);
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

void api_log_failure(const char *path_query, int rc, long status, const char *reason)
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

int api_settle(struct api *api, const char *path_query, int rc, struct http_response *resp,
               long *status)
{
    *status = 0;
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

int api_fetch(struct api *api, const char *path_query, struct http_response *resp,
              long *status)
{
    int rc = api->transport->get(api->transport->ctx, path_query, resp);

    return api_settle(api, path_query, rc, resp, status);
}

int api_submit(struct api *api, struct transport_call *call)
{
    return api->transport->submit(api->transport->ctx, call);
}

void api_cancel(struct api *api, struct transport_call *call)
{
    api->transport->cancel(api->transport->ctx, call);
}

/* ---- public ----------------------------------------------------------- */

int api_fetch_again(void *arg, const char *again, struct buf *body)
{
    struct http_response resp = HTTP_RESPONSE_INIT;
    long status;
    int rc = api_fetch(arg, again, &resp, &status);

    if (rc) {
        api_log_failure(again, rc, status, NULL);
        return rc;
    }
    *body = resp.body;
    return 0;
}

struct api *api_new(const struct api_config *config)
{
    struct api *api;

    if (!config || !config->transport || !config->transport->get ||
        !config->transport->submit || !config->transport->cancel ||
        config->page_size < 1 || config->page_size > 1000 || config->max_parallel < 1 ||
        config->max_items < 1)
        return NULL;
    api = calloc(1, sizeof(*api));
    if (!api)
        return NULL;
    api->transport = config->transport;
    api->limits.page_size = config->page_size;
    api->limits.max_parallel = config->max_parallel > LISTPAGES_MAX_PARALLEL
                                   ? LISTPAGES_MAX_PARALLEL
                                   : config->max_parallel;
    api->limits.max_items = config->max_items;
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
    struct listpages list = {.api = api, .limits = api->limits, .id_key = "id"};
    int rc;

    snprintf(list.path, sizeof(list.path), "%s", API_V1_JOBS);
    rc = listpages_read_v1(&list, fn, arg);
    idset_free(&list.ids);
    return rc;
}

int api_list_items(struct api *api, const char *job_id, const char *status,
                   api_objects_fn fn, void *arg)
{
    return api_list_items_prepared(api, job_id, status, 0, NULL, fn, arg);
}

int api_list_items_prepared(struct api *api, const char *job_id, const char *status,
                            size_t expected, const struct api_preparer *preparer,
                            api_objects_fn fn, void *arg)
{
    struct listpages list = {.api = api,
                             .limits = api->limits,
                             .job_id = job_id,
                             .status = status,
                             .id_key = "item_id",
                             .preparer = preparer,
                             .expected = expected};
    int rc;

    if (!job_id)
        return -EINVAL;
    snprintf(list.path, sizeof(list.path), "%s/%s/items", API_V1_JOBS, job_id);
    rc = listpages_read_v1(&list, fn, arg);
    idset_free(&list.ids);
    return rc;
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
        rc = listpages_body_members(&resp, keys, 1, &job, reason, sizeof(reason));
    if (rc == 0 && (!job.len || resp.body.data[job.start] != '{')) {
        snprintf(reason, sizeof(reason), "job missing or not an object");
        rc = -EIO;
    }
    if (rc == 0 && !(id = malloc(job.len)))
        rc = -ENOMEM;
    if (rc == 0 &&
        !listpages_read_object(resp.body.data, job, "id", NULL, NULL, id, &object)) {
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

/*
 * What a failed page of a cursor list means beyond the usual: a negative
 * errno once it has logged the failure, or 0 to have it logged and
 * returned as any other.
 */
typedef int (*api_cursor_failed_fn)(struct api *api, const struct listpages_page *page);

/* The v2 batch list is missing (404 or 405): said once, at info level. */
static int api_batches_missing(struct api *api, const struct listpages_page *page)
{
    if (page->status != 404 && page->status != 405)
        return 0;
    if (!atomic_exchange(&api->batches_missing_logged, true))
        log_info("GET %s: HTTP %ld: the server has no batch list; batches "
                 "are reachable by id only",
                 page->path_query, page->status);
    return -EOPNOTSUPP;
}

static int api_walk_cursor(struct api *api, const char *base, const char *id,
                           const char *tail, api_cursor_failed_fn failed,
                           api_objects_fn fn, void *arg)
{
    struct listpages list = {.api = api, .limits = api->limits, .id_key = "id"};
    struct idset tokens = IDSET_INIT;
    size_t max_pages =
        api->limits.max_items > SIZE_MAX - 2 ? SIZE_MAX : api->limits.max_items + 2;
    struct buf path = BUF_INIT;
    char *token = NULL;
    size_t pages = 0;
    int rc;

    rc = api_append_path(&path, base, id, tail);
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
        rc = buf_printf(&url, "%s?page_size=%u", path.data, api->limits.page_size);
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
        listpages_page_fetch(&page);
        if (page.rc < 0 && failed && (rc = failed(api, &page)) < 0) {
            listpages_page_release(&page);
            break;
        }
        if (page.rc < 0) {
            rc = page.rc;
            api_log_failure(page.path_query, rc, page.status, page.reason);
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

int api_list_cursor(struct api *api, const char *base, const char *id, const char *tail,
                    api_objects_fn fn, void *arg)
{
    return api_walk_cursor(api, base, id, tail, NULL, fn, arg);
}

int api_list_batches(struct api *api, api_objects_fn fn, void *arg)
{
    return api_walk_cursor(api, API_V2_BATCHES, NULL, NULL, api_batches_missing, fn, arg);
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
    rc = listpages_locate_elements(body, span, &spans, &n_spans);
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

        if (!listpages_read_object(body, spans[i], "source_directory_file_id", NULL, NULL,
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
    url = api_object_url(api, API_V2_BATCHES, batch_id, "?expand=results");
    if (!url) {
        rc = -ENOMEM;
        goto out;
    }
    rc = api_fetch(api, url, &resp, &status);
    if (rc == 0)
        rc = listpages_body_members(&resp, keys, 2, members, reason, sizeof(reason));
    if (rc == 0) {
        batch = api_whole_body(&resp.body);
        id = malloc(members[0].len + 1);
        if (!id)
            rc = -ENOMEM;
        else if (!(batch.id_len = listpages_decode_clean(resp.body.data, members[0], id)))
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
    if (count > api->limits.max_items) {
        log_warning("%s has more than %zu results: not listed", url,
                    api->limits.max_items);
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
