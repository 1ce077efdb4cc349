/*
 * produced — what a batch produced (see include/batchfs/produced.h).
 *
 * For: the URLs and bodies of the parse and extract jobs' outputs and of a
 * directory's file listing; the statuses these endpoints give a meaning of
 * their own (404: results expired; 400: no markdown for a fast-tier job).
 * Not for: sending, retrying or counting requests and the usual status
 * mapping (request.c), the cursor walk (listpages.c), caching or file names.
 */
#include "batchfs/produced.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batchfs/jsontext.h"
#include "batchfs/listpages.h"
#include "batchfs/log.h"
#include "batchfs/request.h"

#define PRODUCED_PARSE_V2 "/api/v2/parse"
#define PRODUCED_EXTRACT_V2 "/api/v2/extract"
#define PRODUCED_PARSE_V1 "/api/v1/parsing/job"
#define PRODUCED_DIRECTORIES "/api/v1/beta/directories"

/* Why a request failed, for its one log line. */
#define PRODUCED_REASON_SIZE 160

enum produced_status produced_status_of(const char *text)
{
    static const char *const names[] = {
        [PRODUCED_PENDING] = "PENDING",     [PRODUCED_RUNNING] = "RUNNING",
        [PRODUCED_COMPLETED] = "COMPLETED", [PRODUCED_FAILED] = "FAILED",
        [PRODUCED_CANCELLED] = "CANCELLED",
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i] && text && !strcmp(text, names[i]))
            return (enum produced_status)i;
    return PRODUCED_OTHER;
}

void produced_job_free(struct produced_job *job)
{
    if (!job)
        return;
    free(job->status_text);
    free(job->updated_at);
    free(job->error_message);
    free(job->tier);
    buf_free(&job->content);
    memset(job, 0, sizeof(*job));
}

/* ---- requests --------------------------------------------------------- */

/*
 * GETs url: 0 with a 2xx body in *resp, or the errno logged once. A 404
 * means the job's results are gone, which is news for the user (the
 * document has no file, errors.tsv says why), so it is said at info level;
 * a 400 to a markdown request means the job was parsed with the fast tier.
 */
static int produced_fetch(struct request *req, const char *url, bool markdown,
                          struct http_response *resp)
{
    long status = 0;
    int rc = request_fetch(req, url, resp, &status);

    if (rc == 0)
        return 0;
    if (status == 404) {
        log_info("GET %s: HTTP 404: no such job, or its results expired", url);
    } else if (status == 400 && markdown) {
        log_info("GET %s: HTTP 400: no markdown for this job (fast tier)", url);
        rc = -EOPNOTSUPP;
    } else {
        request_log_failure(url, rc, resp, NULL);
    }
    return rc;
}

/* ---- bodies ------------------------------------------------------------ */

/* The members `keys` of a body that must be a JSON object, or -EIO. */
static int produced_members(const struct buf *body, const char *const *keys, size_t count,
                            struct json_span *out, char *reason)
{
    if (jsontext_members(body->data, body->len, keys, count, out) == 0)
        return 0;
    snprintf(reason, PRODUCED_REASON_SIZE, "%s",
             jsontext_validate(body->data, body->len) ? "body is not JSON"
                                                      : "body is not a JSON object");
    return -EIO;
}

static bool produced_is_null(const char *text, struct json_span span)
{
    return !span.len || text[span.start] == 'n';
}

/*
 * Decodes the string (or null, or absent) at `span` into a new C string in
 * *out (NULL for null or absent). -EIO for another type, with `name` in
 * the reason.
 */
static int produced_string(const char *text, struct json_span span, const char *name,
                           char **out, char *reason)
{
    size_t len;

    *out = NULL;
    if (produced_is_null(text, span))
        return 0;
    if (text[span.start] != '"') {
        snprintf(reason, PRODUCED_REASON_SIZE, "%s is not a string", name);
        return -EIO;
    }
    /* The decoded bytes and their NUL fit in the token's bytes. */
    *out = malloc(span.len);
    if (!*out)
        return -ENOMEM;
    if (jsontext_string(text + span.start, span.len, *out, &len) < 0) {
        free(*out);
        *out = NULL;
        snprintf(reason, PRODUCED_REASON_SIZE, "%s could not be decoded", name);
        return -EIO;
    }
    return 0;
}

/*
 * Makes the body the value at `span` of itself, in place: the string
 * decoded (`decode`) or the JSON text as it is; then hands the body's
 * buffer to *out and leaves the body empty. The body is not read again.
 */
static int produced_keep(struct buf *body, struct json_span span, bool decode,
                         struct buf *out)
{
    size_t len = span.len;

    if (decode) {
        if (jsontext_string(body->data + span.start, span.len, body->data, &len) < 0)
            return -EIO;
    } else {
        memmove(body->data, body->data + span.start, len);
        body->data[len] = '\0';
    }
    body->len = len;
    buf_trim(body);
    *out = *body;
    *body = (struct buf)BUF_INIT;
    return 0;
}

/*
 * The job's content, member `name` at `span` of the body: null or absent,
 * a string (`decode`: its decoded bytes), or else an object or an array
 * (its JSON text). Overwrites the body: the last thing read from it.
 */
static int produced_content(struct buf *body, struct json_span span, const char *name,
                            bool decode, struct produced_job *job, char *reason)
{
    char first;

    job->content_null = produced_is_null(body->data, span);
    if (job->content_null)
        return 0;
    first = body->data[span.start];
    if (decode ? first != '"' : first != '{' && first != '[') {
        snprintf(reason, PRODUCED_REASON_SIZE, "%s is not %s", name,
                 decode ? "a string or null" : "an object, an array or null");
        return -EIO;
    }
    return produced_keep(body, span, decode, &job->content);
}

/* The status, updated_at and error_message members of a job object. */
enum { PRODUCED_KEY_STATUS, PRODUCED_KEY_UPDATED, PRODUCED_KEY_ERROR, PRODUCED_KEY_TIER };

static int produced_job_fields(const char *text, const struct json_span *members,
                               struct produced_job *job, char *reason)
{
    int rc;

    if (produced_is_null(text, members[PRODUCED_KEY_STATUS]) ||
        text[members[PRODUCED_KEY_STATUS].start] != '"') {
        snprintf(reason, PRODUCED_REASON_SIZE, "status missing or not a string");
        return -EIO;
    }
    rc = produced_string(text, members[PRODUCED_KEY_STATUS], "status", &job->status_text,
                         reason);
    if (rc == 0)
        rc = produced_string(text, members[PRODUCED_KEY_UPDATED], "updated_at",
                             &job->updated_at, reason);
    if (rc == 0)
        rc = produced_string(text, members[PRODUCED_KEY_ERROR], "error_message",
                             &job->error_message, reason);
    if (rc == 0)
        job->status = produced_status_of(job->status_text);
    return rc;
}

/* Reads a GET /api/v2/parse body: the "job" object and `content_key`. */
static int produced_read_parse(struct buf *body, const char *content_key,
                               struct produced_job *job, char *reason)
{
    static const char *const job_keys[] = {"status", "updated_at", "error_message",
                                           "tier"};
    const char *keys[] = {"job", content_key};
    struct json_span top[2] = {{0, 0}, {0, 0}}, members[4];
    int rc;

    rc = produced_members(body, keys, content_key ? 2 : 1, top, reason);
    if (rc < 0)
        return rc;
    if (!top[0].len || body->data[top[0].start] != '{') {
        snprintf(reason, PRODUCED_REASON_SIZE, "job missing or not an object");
        return -EIO;
    }
    /* A member of a valid object is itself valid: this cannot fail. */
    if (jsontext_members(body->data + top[0].start, top[0].len, job_keys, 4, members) < 0)
        return -EIO;
    for (size_t i = 0; i < 4; i++)
        if (members[i].len)
            members[i].start += top[0].start;
    rc = produced_job_fields(body->data, members, job, reason);
    if (rc == 0)
        rc = produced_string(body->data, members[PRODUCED_KEY_TIER], "job.tier",
                             &job->tier, reason);
    if (rc < 0)
        return rc;
    /* Last: decoding in place overwrites the body. */
    return produced_content(body, top[1], content_key, true, job, reason);
}

/* Reads a GET /api/v2/extract body. */
static int produced_read_extract(struct buf *body, struct produced_job *job, char *reason)
{
    static const char *const keys[] = {"status", "updated_at", "error_message",
                                       "extract_result"};
    struct json_span members[4];
    int rc;

    rc = produced_members(body, keys, 4, members, reason);
    if (rc == 0)
        rc = produced_job_fields(body->data, members, job, reason);
    if (rc < 0)
        return rc;
    return produced_content(body, members[3], "extract_result", false, job, reason);
}

/* Reads a GET /api/v1/parsing/job/{id}/result/... body: the string `key`. */
static int produced_read_v1(struct buf *body, const char *key, struct buf *out,
                            char *reason)
{
    const char *const keys[] = {key};
    struct json_span member;
    int rc = produced_members(body, keys, 1, &member, reason);

    if (rc < 0)
        return rc;
    if (!member.len || body->data[member.start] != '"') {
        snprintf(reason, PRODUCED_REASON_SIZE, "%s missing or not a string", key);
        return -EIO;
    }
    return produced_keep(body, member, true, out);
}

/* ---- public ----------------------------------------------------------- */

/* A v2 parse (`parse`) or extract job: fetched and read; a bad body logged. */
static int produced_get_v2(struct request *req, bool parse, const char *job_id,
                           enum produced_content content, struct produced_job *out)
{
    static const char *const tails[] = {
        [PRODUCED_JOB_ONLY] = NULL,
        [PRODUCED_MARKDOWN] = "?expand=markdown_full",
        [PRODUCED_TEXT] = "?expand=text_full",
    };
    static const char *const content_keys[] = {
        [PRODUCED_JOB_ONLY] = NULL,
        [PRODUCED_MARKDOWN] = "markdown_full",
        [PRODUCED_TEXT] = "text_full",
    };
    struct http_response resp = HTTP_RESPONSE_INIT;
    char reason[PRODUCED_REASON_SIZE] = "";
    char *url;
    int rc;

    if (out)
        memset(out, 0, sizeof(*out));
    if (!req || !job_id || !*job_id || !out || (unsigned)content > PRODUCED_TEXT)
        return -EINVAL;
    url = request_object_url(req, parse ? PRODUCED_PARSE_V2 : PRODUCED_EXTRACT_V2, job_id,
                             tails[content]);
    if (!url)
        return -ENOMEM;
    rc = produced_fetch(req, url, content == PRODUCED_MARKDOWN, &resp);
    if (rc < 0)
        goto out;
    if (parse)
        rc = produced_read_parse(&resp.body, content_keys[content], out, reason);
    else
        rc = produced_read_extract(&resp.body, out, reason);
    if (rc == -EIO)
        request_log_failure(url, rc, &resp, reason);
out:
    if (rc < 0)
        produced_job_free(out);
    http_response_free(&resp);
    free(url);
    return rc;
}

int produced_get_parse(struct request *req, const char *job_id,
                       enum produced_content content, struct produced_job *out)
{
    return produced_get_v2(req, true, job_id, content, out);
}

int produced_get_extract(struct request *req, const char *job_id,
                         struct produced_job *out)
{
    return produced_get_v2(req, false, job_id, PRODUCED_JOB_ONLY, out);
}

int produced_get_v1_result(struct request *req, const char *job_id,
                           enum produced_content content, struct buf *out)
{
    struct http_response resp = HTTP_RESPONSE_INIT;
    char reason[PRODUCED_REASON_SIZE] = "";
    bool markdown = content == PRODUCED_MARKDOWN;
    char *url;
    int rc;

    if (out)
        *out = (struct buf)BUF_INIT;
    if (!req || !job_id || !*job_id || !out ||
        (content != PRODUCED_MARKDOWN && content != PRODUCED_TEXT))
        return -EINVAL;
    url = request_object_url(req, PRODUCED_PARSE_V1, job_id,
                             markdown ? "/result/markdown" : "/result/text");
    if (!url)
        return -ENOMEM;
    /* v1 has no fast-tier refusal: a 400 is an error like any other. */
    rc = produced_fetch(req, url, false, &resp);
    if (rc < 0)
        goto out;
    rc = produced_read_v1(&resp.body, markdown ? "markdown" : "text", out, reason);
    if (rc == -EIO)
        request_log_failure(url, rc, &resp, reason);
out:
    http_response_free(&resp);
    free(url);
    return rc;
}

/* What produced_list_directory_files hands listpages_walk_cursor. */
struct produced_listing {
    produced_files_fn fn;
    void *arg;
};

static int produced_files_page(void *arg, const struct api_object *objects, size_t count)
{
    const struct produced_listing *listing = arg;
    struct produced_file *files;
    char *names = NULL;
    size_t room = 0, used = 0;
    int rc;

    if (count == 0)
        return listing->fn(listing->arg, NULL, 0);
    files = calloc(count, sizeof(*files));
    /* Each decoded name and its NUL fit in its object's bytes. */
    for (size_t i = 0; i < count; i++)
        room += objects[i].raw_len;
    names = malloc(room);
    if (!files || !names) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        struct json_span span;

        files[i].id = objects[i].id;
        files[i].id_len = objects[i].id_len;
        /* The object was validated with its page: only the name's type
         * and bytes are in question. */
        if (jsontext_member(objects[i].raw, objects[i].raw_len, "display_name", &span) ==
                0 &&
            objects[i].raw[span.start] == '"' &&
            jsontext_string(objects[i].raw + span.start, span.len, names + used,
                            &files[i].display_name_len) == 0) {
            files[i].display_name = names + used;
            used += files[i].display_name_len + 1;
        }
    }
    rc = listing->fn(listing->arg, files, count);
out:
    free(names);
    free(files);
    return rc;
}

int produced_list_directory_files(struct request *req, const char *directory_id,
                                  produced_files_fn fn, void *arg)
{
    struct produced_listing listing = {fn, arg};

    if (!req || !directory_id || !*directory_id || !fn)
        return -EINVAL;
    return listpages_walk_cursor(req, PRODUCED_DIRECTORIES, directory_id, "/files", NULL,
                                 NULL, produced_files_page, &listing);
}
