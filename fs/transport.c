/*
 * transport — what every transport shares (see include/batchfs/transport.h):
 * the synchronous get built on submit, and cancel tokens.
 *
 * Kept apart from the HTTP client so that code written against the
 * transport interface (the API layer, its tests) links without libcurl.
 *
 * A get waiting on its call registers itself with the thread's token under
 * the token's lock; firing the token cancels that call under the same lock,
 * so a fire never touches a call that has already been waited for.
 */
#include "batchfs/transport.h"

#include <errno.h>

void http_response_free(struct http_response *resp)
{
    if (!resp)
        return;
    buf_free(&resp->body);
    resp->status = 0;
    resp->attempts = 0;
    resp->failure[0] = '\0';
}

static _Thread_local struct transport_cancel *transport_current_token;

int transport_cancel_init(struct transport_cancel *token)
{
    atomic_init(&token->fired, false);
    token->on_fire = NULL;
    token->on_fire_arg = NULL;
    return pthread_mutex_init(&token->lock, NULL) ? -ENOMEM : 0;
}

void transport_cancel_destroy(struct transport_cancel *token)
{
    pthread_mutex_destroy(&token->lock);
}

void transport_cancel_fire(struct transport_cancel *token)
{
    atomic_store(&token->fired, true);
    pthread_mutex_lock(&token->lock);
    if (token->on_fire)
        token->on_fire(token->on_fire_arg);
    pthread_mutex_unlock(&token->lock);
}

bool transport_cancel_fired(struct transport_cancel *token)
{
    return atomic_load(&token->fired);
}

void transport_cancel_scope_begin(struct transport_cancel *token)
{
    transport_current_token = token;
}

void transport_cancel_scope_end(void)
{
    transport_current_token = NULL;
}

struct transport_cancel *transport_cancel_current(void)
{
    return transport_current_token;
}

void transport_cancel_watch(struct transport_cancel *token, void (*on_fire)(void *arg),
                            void *arg)
{
    pthread_mutex_lock(&token->lock);
    token->on_fire = on_fire;
    token->on_fire_arg = arg;
    /* A fire before the watch found nothing to call. */
    if (transport_cancel_fired(token))
        on_fire(arg);
    pthread_mutex_unlock(&token->lock);
}

void transport_cancel_unwatch(struct transport_cancel *token)
{
    pthread_mutex_lock(&token->lock);
    token->on_fire = NULL;
    token->on_fire_arg = NULL;
    pthread_mutex_unlock(&token->lock);
}

/* One waiting get: its call and how it learns of the end. */
struct transport_waiter {
    const struct transport *transport;
    struct transport_call call;
    pthread_mutex_t lock;
    pthread_cond_t ended;
    bool done; /* protected by lock */
};

static void transport_waiter_done(struct transport_call *call)
{
    struct transport_waiter *w = call->arg;

    pthread_mutex_lock(&w->lock);
    w->done = true;
    pthread_cond_signal(&w->ended);
    pthread_mutex_unlock(&w->lock);
}

static void transport_waiter_fired(void *arg)
{
    struct transport_waiter *w = arg;

    w->transport->cancel(w->transport->ctx, &w->call);
}

int transport_get_by_submit(const struct transport *transport, const char *path_query,
                            struct http_response *out)
{
    struct transport_cancel *token = transport_current_token;
    struct transport_waiter w = {
        .transport = transport,
        .call = {.path_query = path_query, .done = transport_waiter_done, .arg = &w},
    };
    int rc;

    *out = (struct http_response)HTTP_RESPONSE_INIT;
    if (token && transport_cancel_fired(token))
        return -ECANCELED;
    if (pthread_mutex_init(&w.lock, NULL))
        return -ENOMEM;
    if (pthread_cond_init(&w.ended, NULL)) {
        pthread_mutex_destroy(&w.lock);
        return -ENOMEM;
    }
    rc = transport->submit(transport->ctx, &w.call);
    if (rc)
        goto out;
    if (token)
        transport_cancel_watch(token, transport_waiter_fired, &w);
    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.ended, &w.lock);
    pthread_mutex_unlock(&w.lock);
    if (token)
        transport_cancel_unwatch(token);
    rc = w.call.rc;
    *out = w.call.resp;
    if (rc) {
        /* How many attempts it took, and whether the failure was logged,
         * stay: the caller may report it. */
        buf_free(&out->body);
        out->status = 0;
    }
out:
    pthread_cond_destroy(&w.ended);
    pthread_mutex_destroy(&w.lock);
    return rc;
}
