/*
 * produced — what a batch produced, fetched and decoded: a document's parsed
 * markdown and text (v2 parse jobs, v1 parse jobs), its extracted data (v2
 * extract jobs), and the user's names of the batch's source files.
 *
 * One request per call, sent through the api's request context
 * (request.h: statuses become errnos there, requests are counted in the
 * api's stats; api_request() gives it). Bodies are read with jsontext in
 * place: a document's markdown can be tens of MB inside one JSON string, so
 * it is decoded inside the response's own buffer, which is then handed to
 * the caller — one allocation of the body's size, never a second copy.
 * Knows nothing of FUSE, caching, file names or rendering.
 *
 * Every function is thread-safe (the request context is) and may be called from many
 * threads at once. Errors, beside those named at each function:
 *   -EINVAL  a NULL argument, an empty id, or a kind the call does not take
 *   -EACCES  401 or 403
 *   -EAGAIN  429 after retries
 *   -EIO     5xx after retries, any other unexpected status, or a body that
 *            is not what the schema says (one warning naming the request)
 *   -EFBIG   a body over max_response (from the transport)
 *   any other negative errno of the transport (-ETIMEDOUT, -ECONNREFUSED, …)
 *   -ENOMEM
 * Each failure is logged once, here; the caller need not log it again.
 */
#ifndef BATCHFS_PRODUCED_H
#define BATCHFS_PRODUCED_H

#include <stdbool.h>
#include <stddef.h>

#include "batchfs/api_types.h"
#include "batchfs/request.h"
#include "batchfs/buf.h"

/* A v2 job's status. */
enum produced_status {
    PRODUCED_OTHER, /* a status this client does not know (see status_text) */
    PRODUCED_PENDING,
    PRODUCED_RUNNING,
    PRODUCED_COMPLETED,
    PRODUCED_FAILED,
    PRODUCED_CANCELLED,
};

/* What to ask a parse job for. */
enum produced_content {
    PRODUCED_JOB_ONLY, /* v2 only: the job's status, no content */
    PRODUCED_MARKDOWN, /* markdown_full (v2), /result/markdown (v1) */
    PRODUCED_TEXT,     /* text_full (v2), /result/text (v1) */
};

/*
 * A v2 job and what it produced. Filled in by produced_get_parse and
 * produced_get_extract; every pointer is owned by the struct and freed by
 * produced_job_free. The strings are decoded from the JSON and
 * NUL-terminated (a "\u0000" inside one ends it early: they are for
 * display, xattrs and timestamps).
 */
struct produced_job {
    enum produced_status status;
    char *status_text;   /* the status as the API spelled it; never NULL */
    char *updated_at;    /* NULL when absent or null */
    char *error_message; /* NULL when absent or null */
    char *tier;          /* parse jobs: job.tier; NULL when absent or null */
    /*
     * The content asked for: for a parse job, the decoded string, exactly
     * its bytes (UTF-8 as the API sent it; bytes that are not UTF-8 and
     * lone surrogate escapes are kept as bytes, see jsontext.h; NULs
     * possible; `len` is the truth, data[len] is NUL); for an extract job,
     * the raw JSON text of extract_result, byte for byte (an object or an
     * array: jsontext_pretty renders it). Empty (BUF_INIT) when
     * content_null.
     */
    struct buf content;
    bool content_null; /* null or absent: the job is not COMPLETED, or
                          PRODUCED_JOB_ONLY was asked for */
};

/* Frees what the job holds; it is zeroed. Safe on a zeroed struct. */
void produced_job_free(struct produced_job *job);

/*
 * GET /api/v2/parse/{job_id}, with ?expand=markdown_full or
 * ?expand=text_full for PRODUCED_MARKDOWN or PRODUCED_TEXT (one kind per
 * request: a fast-tier job refuses any markdown expand with 400, which would
 * cost its text too, and a document's two renderings together would double
 * the body that must fit max_response and memory), nothing for
 * PRODUCED_JOB_ONLY. On 0, *out holds the job (the caller frees it with
 * produced_job_free); on an error it is zeroed. Further errors:
 *   -ENOENT      404: the job's results expired (or it is unknown); info
 *   -EOPNOTSUPP  400 to a markdown request: a fast-tier job has text only;
 *                info
 * A COMPLETED job whose content is null is handed on as such (content_null).
 */
int produced_get_parse(struct request *req, const char *job_id,
                       enum produced_content content, struct produced_job *out);

/*
 * GET /api/v2/extract/{job_id}: the job (tier NULL) and, in content, the
 * raw text of its extract_result. An extract_result that is neither an
 * object, an array nor null is -EIO. On 0 the caller frees *out with
 * produced_job_free; on an error it is zeroed. -ENOENT for a 404 (expired
 * or unknown; logged at info level).
 */
int produced_get_extract(struct request *req, const char *job_id,
                         struct produced_job *out);

/*
 * GET /api/v1/parsing/job/{job_id}/result/markdown or /result/text
 * (PRODUCED_MARKDOWN or PRODUCED_TEXT): the decoded "markdown" or "text"
 * string, exactly its bytes as for struct produced_job's content, in *out
 * (the caller's, to free with buf_free; BUF_INIT on an error). -ENOENT for
 * a 404 (the job is not done, or its results expired; logged at info
 * level). A member missing, null or not a string is -EIO.
 */
int produced_get_v1_result(struct request *req, const char *job_id,
                           enum produced_content content, struct buf *out);

/* One file of a directory. Borrowed: valid only during the callback. */
struct produced_file {
    const char *id; /* decoded, non-empty, no NUL, NUL-terminated */
    size_t id_len;
    /* The user's file name decoded exactly (bytes that are not UTF-8, lone
     * surrogates, control bytes, "/" and NULs all kept; NUL-terminated after
     * display_name_len), or NULL when absent, null or not a string. */
    const char *display_name;
    size_t display_name_len;
};

/* Receives a directory's files a page at a time, in the API's order, never
 * concurrently for one listing. 0 to go on, or a negative errno to abort
 * the listing with it. */
typedef int (*produced_files_fn)(void *arg, const struct produced_file *files,
                                 size_t count);

/*
 * GET /api/v1/beta/directories/{directory_id}/files, every page by cursor
 * (page_size, page_token) as api_list_batches reads the batch list: files
 * without a string id are dropped with a warning, repeated ids once; the
 * list ends at an empty next_page_token, and with a warning at a token
 * seen before. -ENOENT for a 404 (the directory is gone; debug), -EFBIG
 * past max_items files, or fn's error. fn runs on the calling thread.
 */
int produced_list_directory_files(struct request *req, const char *directory_id,
                                  produced_files_fn fn, void *arg);

/* "PENDING" → PRODUCED_PENDING, …; PRODUCED_OTHER for anything else. */
enum produced_status produced_status_of(const char *text);

#endif
