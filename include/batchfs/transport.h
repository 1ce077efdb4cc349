/*
 * transport — the one thing the API client needs from the network.
 *
 * A struct of function pointers, so that the API layer can run against the
 * real HTTP client (http.c), or against a scripted one in unit tests that
 * plays back any sequence of responses and errors.
 *
 * Two ways to send a GET: `get` blocks its thread until the answer (for
 * callers that have a thread of their own to spend), `submit` hands a call
 * to the transport and returns, its `done` called later on the transport's
 * thread (for callers that wait on many requests at once, like a listing).
 * Either can be cancelled: a call by `cancel`, a get by a cancel token.
 */
#ifndef BATCHFS_TRANSPORT_H
#define BATCHFS_TRANSPORT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "batchfs/buf.h"

struct http_response {
    long status;     /* final HTTP status, e.g. 200, 404 */
    struct buf body; /* the whole decoded body; never a partial one */
    unsigned attempts; /* how many tries it took (1 = first try) */
    /* The transport's account of a failure it gave up on, without the
     * request ("HTTP 503 after 3 attempts", "timed out after 2 attempts
     * (no byte for 30 s)", a refused redirect or body), for the one line
     * the caller logs (request_log_failure) on its own thread, where it
     * may be said together with what the failure led to. "" when the
     * transport has nothing to add. Kept, with attempts, when the call
     * ends in a negative errno. */
    char failure[320];
};

#define HTTP_RESPONSE_INIT {0, BUF_INIT, 0, ""}

/* Frees the body; the response is HTTP_RESPONSE_INIT again. */
void http_response_free(struct http_response *resp);

struct transport_call;

/* Called once per submitted call, when it ended: call->rc and call->resp
 * are set. Runs on the transport's own thread (the engine): it must be
 * quick and must not wait for another call. */
typedef void (*transport_done_fn)(struct transport_call *call);

/*
 * One asynchronous GET. Owned by the caller, who fills in path_query, done
 * and arg, and keeps it alive (and unmoved) until done has been called.
 * From then on call->resp is the caller's to free.
 */
struct transport_call {
    const char *path_query; /* copied by submit */
    transport_done_fn done;
    void *arg; /* for done */

    /* Set before done is called. */
    int rc;                    /* 0, or a negative errno as for get */
    struct http_response resp; /* filled in when rc is 0; else its
                                  attempts and logged only */

    void *impl; /* the transport's; NULL once done has been called */
};

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
     *   -ECANCELED      the client is shutting down, or the calling
     *                   thread's cancel token (below) was cancelled
     *   -ENOMEM
     * Blocks the calling thread (on a condition variable, not the network).
     * Thread-safe: called from many threads at once.
     */
    int (*get)(void *ctx, const char *path_query, struct http_response *out);

    /*
     * Starts call (see struct transport_call) and returns at once. 0: done
     * will be called exactly once, possibly before submit returns, on the
     * transport's thread. A negative errno (-EINVAL for a bad path,
     * -ENOMEM): nothing was started and done will not be called.
     * Thread-safe.
     */
    int (*submit)(void *ctx, struct transport_call *call);

    /*
     * Ends call early: done then comes promptly with -ECANCELED, its
     * transfer removed or its pending retry dropped. Does nothing once done
     * has been called (the call must still be alive). Thread-safe; never
     * blocks on the network.
     */
    void (*cancel)(void *ctx, struct transport_call *call);

    void *ctx;
};

/*
 * A get that waits on a condition variable for submit's answer: what a
 * transport's `get` can be. Honours the calling thread's cancel token.
 */
int transport_get_by_submit(const struct transport *transport, const char *path_query,
                            struct http_response *out);

/*
 * Cancellation of waits on a transport from another thread. A token belongs
 * to whoever made it; transport_cancel_fire() may be called from any
 * thread, any number of times. A get made while the token is current for
 * the calling thread (between scope_begin and scope_end) returns -ECANCELED
 * within a few ms of the fire, its transfer dropped; a get started after
 * the fire returns -ECANCELED at once. Code that waits on calls of its own
 * (a listing) watches the token to learn of the fire.
 */
struct transport_cancel {
    atomic_bool fired;
    pthread_mutex_t lock;
    /* Protected by lock: what to do on a fire, for the wait under way. */
    void (*on_fire)(void *arg);
    void *on_fire_arg;
};

/* 0 or -ENOMEM. */
int transport_cancel_init(struct transport_cancel *token);
/* Nothing may be watching it. */
void transport_cancel_destroy(struct transport_cancel *token);
/* Sets the token and calls its watcher, if any (on this thread, under the
 * token's lock: the watcher must be quick and must not wait). */
void transport_cancel_fire(struct transport_cancel *token);
bool transport_cancel_fired(struct transport_cancel *token);

/* Makes token current for this thread's waits until scope_end (scopes do
 * not nest: begin replaces, end clears). */
void transport_cancel_scope_begin(struct transport_cancel *token);
void transport_cancel_scope_end(void);

/* The calling thread's current token, or NULL. */
struct transport_cancel *transport_cancel_current(void);

/* Has on_fire(arg) called on a fire, until unwatch; one watcher at a time.
 * When the token has already fired, on_fire is called at once (on this
 * thread). unwatch returns only once no call of on_fire is under way. */
void transport_cancel_watch(struct transport_cancel *token, void (*on_fire)(void *arg),
                            void *arg);
void transport_cancel_unwatch(struct transport_cancel *token);

#endif
