/*
 * libFuzzer target: the bodies of what a batch produced, as the API client
 * reads them.
 *
 * The input is served as the body of every request: a v2 parse job (each
 * kind of content), a v2 extract job, a v1 result and a directory's file
 * listing (whose later pages, reached by a token, are empty). Whatever the
 * client hands on must keep its promises — content never longer than the
 * body, a terminating NUL after it, extract_result one JSON value that
 * re-indents, names and ids NUL-terminated at their length — and nothing
 * may crash, leak or loop.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batchfs/api.h"
#include "batchfs/buf.h"
#include "batchfs/jsontext.h"
#include "batchfs/log.h"
#include "batchfs/produced.h"

struct fuzz_input {
    const uint8_t *data;
    size_t size;
};

static int fuzz_get(void *ctx, const char *path_query, struct http_response *out)
{
    const struct fuzz_input *in = ctx;

    out->status = 200;
    out->attempts = 1;
    if (strstr(path_query, "page_token="))
        return buf_append_str(&out->body, "{\"items\": [], \"next_page_token\": \"\"}");
    return buf_append(&out->body, (const char *)in->data, in->size);
}

static void fuzz_check_content(const struct buf *content, size_t size)
{
    if (content->len > size || (content->data && content->data[content->len] != '\0'))
        abort();
}

static int fuzz_check_files(void *arg, const struct produced_file *files, size_t count)
{
    (void)arg;
    for (size_t i = 0; i < count; i++) {
        if (files[i].id_len == 0 || strlen(files[i].id) != files[i].id_len)
            abort();
        if (files[i].display_name && files[i].display_name[files[i].display_name_len])
            abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum produced_content kinds[] = {PRODUCED_JOB_ONLY, PRODUCED_MARKDOWN,
                                                  PRODUCED_TEXT};
    static int quiet;
    struct fuzz_input in = {data, size};
    struct transport transport = {.get = fuzz_get, .ctx = &in};
    struct api_config config = {.transport = &transport,
                                .page_size = 1000,
                                .max_parallel = 1,
                                .max_items = 100000};
    struct produced_job job;
    struct buf out = BUF_INIT, pretty = BUF_INIT;
    struct api *api;

    if (!quiet) {
        log_setup(LOG_LEVEL_ERROR, false);
        quiet = 1;
    }
    api = api_new(&config);
    if (!api)
        return 0;
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        if (produced_get_parse(api_request(api), "pjb-1", kinds[k], &job) == 0) {
            if (!job.status_text || job.content_null != !job.content.data)
                abort();
            fuzz_check_content(&job.content, size);
        }
        produced_job_free(&job);
    }
    if (produced_get_extract(api_request(api), "ext-1", &job) == 0 && !job.content_null) {
        fuzz_check_content(&job.content, size);
        if (jsontext_pretty(job.content.data, job.content.len, &pretty) != 0)
            abort(); /* extract_result handed on is not one JSON value */
    }
    produced_job_free(&job);
    if (produced_get_v1_result(api_request(api), "pjb-1", PRODUCED_TEXT, &out) == 0)
        fuzz_check_content(&out, size);
    buf_free(&out);
    produced_list_directory_files(api_request(api), "dir-1", fuzz_check_files, NULL);
    buf_free(&pretty);
    api_free(api);
    return 0;
}
