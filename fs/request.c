/*
 * request — sending one request of the API layer (see
 * include/batchfs/request.h).
 */
#include "batchfs/request.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "batchfs/log.h"

struct request {
    const struct transport *transport;
    char *project_id;
    char *organization_id;
    struct request_limits limits;
    /* Requests by endpoint and outcome; updated atomically by any thread. */
    unsigned long long counts[API_ENDPOINT_COUNT][API_OUTCOME_COUNT];
};

const char *const api_endpoint_names[API_ENDPOINT_COUNT] = {
    "list_jobs",  "get_job",          "list_items",           "list_batches",
    "get_batch",  "get_parse",        "get_extract",          "get_parse_result",
    "list_directory_files", "other",
};

const char *const api_outcome_names[API_OUTCOME_COUNT] = {
    "2xx", "401", "403", "404", "429", "4xx", "5xx", "no_response",
};

static enum api_endpoint request_endpoint_of(const char *path_query)
{
    static const char v1[] = "/api/v1/beta/batch-processing";
    static const char v2[] = "/api/v2/batches";
    static const struct {
        const char *prefix;
        enum api_endpoint endpoint;
    } produced[] = {
        {"/api/v2/parse/", API_GET_PARSE},
        {"/api/v2/extract/", API_GET_EXTRACT},
        {"/api/v1/parsing/job/", API_GET_PARSE_RESULT},
        {"/api/v1/beta/directories/", API_LIST_DIRECTORY_FILES},
    };

    for (size_t i = 0; i < sizeof(produced) / sizeof(produced[0]); i++)
        if (!strncmp(path_query, produced[i].prefix, strlen(produced[i].prefix)))
            return produced[i].endpoint;
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

static enum api_outcome request_outcome_of(int transport_rc, long status)
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

/* ---- URLs ------------------------------------------------------------- */

/* Percent-escapes everything but RFC 3986 unreserved characters, so that an
 * id can never add a path segment or a query parameter. */
static int request_append_escaped(struct buf *b, const char *s)
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
int request_append_param(struct buf *b, const char *name, const char *value)
{
    bool first = b->len == 0 || !memchr(b->data, '?', b->len);
    int rc = buf_printf(b, "%c%s=", first ? '?' : '&', name);

    if (rc == 0)
        rc = request_append_escaped(b, value);
    return rc;
}

int request_append_scope(struct buf *b, const struct request *req)
{
    int rc = 0;

    if (req->organization_id)
        rc = request_append_param(b, "organization_id", req->organization_id);
    if (rc == 0 && req->project_id)
        rc = request_append_param(b, "project_id", req->project_id);
    return rc;
}

/* Appends base [+ "/" + escaped id + tail]. */
int request_append_path(struct buf *b, const char *base, const char *id, const char *tail)
{
    int rc = buf_append_str(b, base);

    if (rc == 0 && id) {
        rc = buf_append_char(b, '/');
        if (rc == 0)
            rc = request_append_escaped(b, id);
        if (rc == 0 && tail)
            rc = buf_append_str(b, tail);
    }
    return rc;
}

char *request_object_url(const struct request *req, const char *base, const char *id,
                         const char *tail)
{
    struct buf b = BUF_INIT;
    int rc = request_append_path(&b, base, id, tail);

    if (rc == 0)
        rc = request_append_scope(&b, req);
    if (rc < 0) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

/* ---- responses -------------------------------------------------------- */

static int request_status_errno(long status)
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

void request_log_failure(const char *path_query, int rc, const struct http_response *resp,
                         const char *reason)
{
    long status = resp ? resp->status : 0;

    if (resp && resp->failure[0])
        log_warning("GET %s: %s", path_query, resp->failure);
    else if (reason && *reason)
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

int request_settle(struct request *req, const char *path_query, int rc,
                   struct http_response *resp, long *status)
{
    *status = 0;
    if (rc != -ECANCELED)
        __atomic_add_fetch(
            &req->counts[request_endpoint_of(path_query)]
                        [request_outcome_of(rc, rc < 0 ? 0 : resp->status)],
            1, __ATOMIC_RELAXED);
    if (rc < 0) {
        /* What the transport said of the failure stays for the log. */
        buf_free(&resp->body);
        resp->status = 0;
        return rc;
    }
    *status = resp->status;
    rc = request_status_errno(resp->status);
    if (rc < 0)
        buf_free(&resp->body);
    return rc;
}

int request_fetch(struct request *req, const char *path_query, struct http_response *resp,
                  long *status)
{
    int rc = req->transport->get(req->transport->ctx, path_query, resp);

    return request_settle(req, path_query, rc, resp, status);
}

int request_submit(struct request *req, struct transport_call *call)
{
    return req->transport->submit(req->transport->ctx, call);
}

void request_cancel(struct request *req, struct transport_call *call)
{
    req->transport->cancel(req->transport->ctx, call);
}

struct request *request_new(const struct transport *transport, const char *project_id,
                            const char *organization_id,
                            const struct request_limits *limits)
{
    struct request *req = calloc(1, sizeof(*req));

    if (!req)
        return NULL;
    req->transport = transport;
    req->limits = *limits;
    if (project_id && *project_id && !(req->project_id = strdup(project_id)))
        goto fail;
    if (organization_id && *organization_id &&
        !(req->organization_id = strdup(organization_id)))
        goto fail;
    return req;
fail:
    request_free(req);
    return NULL;
}

void request_free(struct request *req)
{
    if (!req)
        return;
    free(req->project_id);
    free(req->organization_id);
    free(req);
}

const struct request_limits *request_limits(const struct request *req)
{
    return &req->limits;
}

void request_get_stats(struct request *req, struct api_stats *out)
{
    for (int e = 0; e < API_ENDPOINT_COUNT; e++)
        for (int o = 0; o < API_OUTCOME_COUNT; o++)
            out->counts[e][o] = __atomic_load_n(&req->counts[e][o], __ATOMIC_RELAXED);
}
