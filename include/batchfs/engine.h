/*
 * engine — one thread that runs every transfer on one curl multi handle.
 *
 * Other threads hand it prepared easy handles (engine_submit); the loop
 * starts them when their start time has come, the pacer's resume_at has
 * passed and fewer than max_transfers run, drives them with
 * curl_multi_poll(), and reports each end on its own thread through the
 * transfer's `finished` callback, which may queue the transfer again
 * (engine_requeue: a retry is a timer here, never a sleeping thread).
 * Connections are pooled by the multi handle: HTTP/2 streams share one
 * where the server offers it, HTTP/1.1 connections are kept alive, and
 * neither exceeds max_transfers.
 *
 * Knows nothing of URLs, statuses, retries or the API: what to send and
 * what an end means is the owner's (http.c).
 */
#ifndef BATCHFS_ENGINE_H
#define BATCHFS_ENGINE_H

#include <curl/curl.h>
#include <stdatomic.h>
#include <stdbool.h>

struct engine;
struct pacer;

/*
 * One transfer, embedded in its owner's request. The owner sets easy,
 * start_ms and the callbacks before engine_submit(); the rest is the
 * engine's. From engine_submit() until `finished` is called the engine owns
 * the transfer (the owner must keep its memory alive and touch only
 * engine_cancel()).
 */
struct engine_transfer {
    CURL *easy;
    double start_ms; /* monotonic ms before which it does not start; 0 = at once */
    /*
     * Called once per submit or requeue, on the engine thread, when the
     * transfer ended (code), or was cancelled (cancelled true; code is then
     * meaningless), whether it had started or not. The easy handle is no
     * longer in the multi handle. It may call engine_requeue() (unless
     * cancelled) or give the transfer up; it must be quick.
     */
    void (*finished)(struct engine_transfer *t, CURLcode code, bool cancelled);
    /* Called on the engine thread about once a second and on every wake-up
     * while the transfer runs: true aborts it (finished gets
     * CURLE_ABORTED_BY_CALLBACK). May be NULL. */
    bool (*check)(struct engine_transfer *t);

    /* The engine's. */
    struct engine_transfer *next;
    atomic_bool cancel; /* set by engine_cancel() from any thread */
    bool running;
};

/* An engine running at most max_transfers transfers (and connections) at
 * once, holding off every start while the pacer says so (borrowed; may be
 * NULL). Its thread starts with the first submit. NULL with *err = -EINVAL
 * or -ENOMEM. */
struct engine *engine_new(unsigned max_transfers, struct pacer *pacer, int *err);

/* Stops the thread (every transfer still held is reported cancelled first)
 * and frees the engine. Not from the engine thread. Safe on NULL. */
void engine_free(struct engine *engine);

/* Hands t to the engine: 0, or -EAGAIN when its thread could not start
 * (t is then not the engine's). Thread-safe; never blocks on the network. */
int engine_submit(struct engine *engine, struct engine_transfer *t);

/* Stops the engine's thread until the next submit, keeping its kept-alive
 * connections (before a fork(), which keeps no thread). Only while no
 * transfer is held; not from the engine thread. */
void engine_park(struct engine *engine);

/* Queues t again from its `finished` callback (the engine thread only). */
void engine_requeue(struct engine *engine, struct engine_transfer *t);

/* Asks for t to end as cancelled: removed from the queue or from the multi
 * handle within a loop turn, `finished` then called with cancelled true.
 * Thread-safe; t must still be owned by the engine or be about to be
 * (the caller serialises this with the end of the transfer). */
void engine_cancel(struct engine *engine, struct engine_transfer *t);

/* Cancels every transfer held now or submitted later. Thread-safe. */
void engine_cancel_all(struct engine *engine);

/* Transfers running in the multi handle right now (tests, statistics).
 * Thread-safe. */
unsigned engine_running(struct engine *engine);

/* Most transfers that ever ran at once. Thread-safe. */
unsigned engine_max_running(struct engine *engine);

/* Monotonic milliseconds, the engine's clock. */
double engine_now_ms(void);

#endif
