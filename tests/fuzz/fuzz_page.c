/*
 * libFuzzer target: a page of the v1 item list, as the API client parses it.
 *
 * The input is served as the body of the first page (later pages are
 * empty); every object the client hands on must be a JSON object whose raw
 * bytes re-indent cleanly and whose identity is a non-empty string, and
 * nothing may crash, leak or loop.
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

struct fuzz_input {
    const uint8_t *data;
    size_t size;
};

static int fuzz_get(void *ctx, const char *path_query, struct http_response *out)
{
    const struct fuzz_input *in = ctx;
    int rc;

    out->status = 200;
    out->attempts = 1;
    if (strstr(path_query, "offset=0&"))
        rc = buf_append(&out->body, (const char *)in->data, in->size);
    else
        rc = buf_append_str(&out->body, "{\"items\": []}");
    return rc;
}

static int fuzz_check(void *arg, const struct api_object *objects, size_t count)
{
    struct buf pretty = BUF_INIT;

    (void)arg;
    for (size_t i = 0; i < count; i++) {
        /* the promises of struct api_object */
        if (objects[i].raw_len == 0 || objects[i].raw[0] != '{')
            abort();
        if (objects[i].id_len == 0 || strlen(objects[i].id) != objects[i].id_len)
            abort();
        buf_reset(&pretty);
        if (jsontext_pretty(objects[i].raw, objects[i].raw_len, &pretty) != 0)
            abort(); /* the client handed on bytes that are not one JSON value */
    }
    buf_free(&pretty);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    struct fuzz_input in = {data, size};
    struct transport transport = {.get = fuzz_get, .ctx = &in};
    struct api_config config = {
        .transport = &transport, .page_size = 1000, .max_parallel = 1, .max_items = 100000};
    struct api *api;

    if (!quiet) {
        log_setup(LOG_LEVEL_ERROR, false);
        quiet = 1;
    }
    api = api_new(&config);
    if (!api)
        return 0;
    api_list_items(api, "bjb-1", "completed", fuzz_check, NULL);
    api_free(api);
    return 0;
}
