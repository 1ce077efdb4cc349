/*
 * transport — what every transport shares (see include/batchfs/transport.h).
 *
 * Kept apart from the HTTP client so that code written against the
 * transport interface (the API layer, its tests) links without libcurl.
 */
#include "batchfs/transport.h"

void http_response_free(struct http_response *resp)
{
    if (!resp)
        return;
    buf_free(&resp->body);
    resp->status = 0;
    resp->attempts = 0;
}
