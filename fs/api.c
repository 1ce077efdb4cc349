/*
 * api — LlamaCloud batch endpoints over a transport (see
 * include/batchfs/api.h).
 *
 * For: the endpoints, the single objects (a job, a batch and its results),
 * and the request context (request.c) it creates and owns. The lists are
 * read by listpages.c (the v2 batch list by cursor, a page at a time);
 * bodies are read with its readers.
 * Not for: sending, counting and mapping requests, URLs and their escaping
 * (request.c), fetching pages in parallel, parsing a page or deduplicating a
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

#include "batchfs/buf.h"
#include "batchfs/idset.h"
#include "batchfs/jsontext.h"
#include "batchfs/listpages.h"
#include "batchfs/log.h"
#include "batchfs/paginate.h"
#include "batchfs/request.h"

#define API_V1_JOBS "/api/v1/beta/batch-processing"
#define API_V2_BATCHES "/api/v2/batches"

struct api {
    struct request *request; /* owned: sends every request, counts them */
    /* Set once the missing v2 list has been logged, from any thread. */
    atomic_bool batches_missing_logged;
};

void api_get_stats(struct api *api, struct api_stats *out)
{
    request_get_stats(api->request, out);
}

struct request *api_request(struct api *api)
{
    return api->request;
}

/* ---- public ----------------------------------------------------------- */

int api_fetch_again(void *arg, const char *again, struct buf *body)
{
    struct http_response resp = HTTP_RESPONSE_INIT;
    long status;
    int rc = request_fetch(api_request(arg), again, &resp, &status);

    if (rc) {
        request_log_failure(again, rc, &resp, NULL);
        return rc;
    }
    *body = resp.body;
    return 0;
}

struct api *api_new(const struct api_config *config)
{
    struct request_limits limits;
    struct api *api;

    if (!config || !config->transport || !config->transport->get ||
        !config->transport->submit || !config->transport->cancel ||
        config->page_size < 1 || config->page_size > 1000 || config->max_parallel < 1 ||
        config->max_items < 1)
        return NULL;
    api = calloc(1, sizeof(*api));
    if (!api)
        return NULL;
    limits.page_size = config->page_size;
    limits.max_parallel = config->max_parallel > LISTPAGES_MAX_PARALLEL
                              ? LISTPAGES_MAX_PARALLEL
                              : config->max_parallel;
    limits.max_items = config->max_items;
    atomic_init(&api->batches_missing_logged, false);
    api->request = request_new(config->transport, config->project_id,
                               config->organization_id, &limits);
    if (!api->request) {
        free(api);
        return NULL;
    }
    return api;
}

void api_free(struct api *api)
{
    if (!api)
        return;
    request_free(api->request);
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
        rc = request_append_scope(&url, api->request);
    if (rc < 0)
        goto out;
    rc = request_fetch(api->request, url.data, &resp, &status);
    if (rc < 0)
        request_log_failure(url.data, rc, &resp, NULL);
out:
    http_response_free(&resp);
    buf_free(&url);
    return rc;
}

int api_list_jobs(struct api *api, api_objects_fn fn, void *arg)
{
    return api_list_jobs_prepared(api, NULL, fn, arg);
}

int api_list_jobs_prepared(struct api *api, const struct api_preparer *preparer,
                           api_objects_fn fn, void *arg)
{
    struct listpages list = {.request = api->request,
                             .limits = *request_limits(api->request),
                             .id_key = "id",
                             .preparer = preparer};
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
    struct listpages list = {.request = api->request,
                             .limits = *request_limits(api->request),
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
    url = request_object_url(api->request, API_V1_JOBS, job_id, NULL);
    if (!url) {
        rc = -ENOMEM;
        goto out;
    }
    rc = request_fetch(api->request, url, &resp, &status);
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
            request_log_failure(url, rc, &resp, reason);
        goto out;
    }
    rc = fn(arg, &object, 1);
out:
    free(id);
    http_response_free(&resp);
    free(url);
    return rc;
}

/* The v2 batch list is missing (404 or 405): said once, at info level. */
static int api_batches_missing(void *arg, const struct listpages_page *page)
{
    struct api *api = arg;

    if (page->status != 404 && page->status != 405)
        return 0;
    if (!atomic_exchange(&api->batches_missing_logged, true))
        log_info("GET %s: HTTP %ld: the server has no batch list; batches "
                 "are reachable by id only",
                 page->path_query, page->status);
    return -EOPNOTSUPP;
}

int api_list_batches(struct api *api, api_objects_fn fn, void *arg)
{
    return listpages_walk_cursor(api->request, API_V2_BATCHES, NULL, NULL,
                                 api_batches_missing, api, fn, arg);
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
    url = request_object_url(api->request, API_V2_BATCHES, batch_id, "?expand=results");
    if (!url) {
        rc = -ENOMEM;
        goto out;
    }
    rc = request_fetch(api->request, url, &resp, &status);
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
            request_log_failure(url, rc, &resp, reason);
        goto out;
    }
    if (count > request_limits(api->request)->max_items) {
        log_warning("%s has more than %zu results: not listed", url,
                    request_limits(api->request)->max_items);
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
