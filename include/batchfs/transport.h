/*
 * transport — the one thing the API client needs from the network.
 *
 * A struct of function pointers, so that the API layer can run against the
 * real HTTP client (http.c), or against a scripted one in unit tests that
 * plays back any sequence of responses and errors.
 */
#ifndef BATCHFS_TRANSPORT_H
#define BATCHFS_TRANSPORT_H

#include "batchfs/buf.h"

struct http_response {
    long status;     /* final HTTP status, e.g. 200, 404 */
    struct buf body; /* the whole decoded body; never a partial one */
    unsigned attempts; /* how many tries it took (1 = first try) */
};

#define HTTP_RESPONSE_INIT {0, BUF_INIT, 0}

/* Frees the body; the response is HTTP_RESPONSE_INIT again. */
void http_response_free(struct http_response *resp);

struct transport {
    /*
     * GET base_url + path_query. Retries, pacing and timeouts happen inside.
     * Returns 0 with *out filled in for any HTTP status (2xx, or the last
     * error status once retries are used up), or a negative errno when no
     * complete response was had:
     *   -ETIMEDOUT      connect or stall timeout, retries used up
     *   -ECONNREFUSED   nothing listens, retries used up
     *   -EHOSTUNREACH   name or route does not resolve
     *   -EIO            no complete response (a reset, a short body, no
     *                   reply, corrupt gzip), retries used up; a redirect
     *   -EPROTO         bad TLS
     *   -EFBIG          body larger than the configured maximum
     *   -ECANCELED      the client is shutting down
     *   -ENOMEM
     * Thread-safe: called from many threads at once.
     */
    int (*get)(void *ctx, const char *path_query, struct http_response *out);
    void *ctx;
};

#endif
