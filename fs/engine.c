/*
 * engine — the transfer loop (see include/batchfs/engine.h).
 *
 * One thread, one multi handle. Submitted transfers arrive on `incoming`
 * (the only list other threads touch, under the lock) and a
 * curl_multi_wakeup() tells the loop. The loop owns `waiting` (transfers
 * not started: new ones and retries whose timer has not fired) and the
 * running ones in the multi handle; each turn it moves the incoming ones
 * over, ends the cancelled ones, starts what may start, runs
 * curl_multi_perform(), reports what ended and polls until the earliest of
 * a socket event, a wake-up, a start time, the pacer's resume_at and one
 * second (the stall checks). Nothing here sleeps but curl_multi_poll().
 */
#include "batchfs/engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "batchfs/pacer.h"

/* Longest poll while transfers run: how often they are checked for a
 * stall. An idle engine sleeps longer; a submit wakes it. */
#define ENGINE_TICK_MS 1000
#define ENGINE_IDLE_MS 60000

struct engine {
    CURLM *multi;
    struct pacer *pacer; /* borrowed; may be NULL */
    unsigned max_transfers;
    pthread_t thread;

    pthread_mutex_t lock;
    struct engine_transfer *incoming; /* protected by lock; newest first */
    bool stop;                        /* protected by lock */
    bool thread_running;              /* protected by lock */
    atomic_bool cancel_all;
    atomic_uint running; /* written by the engine thread only */
    atomic_uint max_running;

    /* The engine thread's alone. */
    struct engine_transfer *waiting;      /* in submission order */
    struct engine_transfer **waiting_end; /* where the next waiting one goes */
    struct engine_transfer **live;        /* max_transfers long: running ones */
};

double engine_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void engine_append_waiting(struct engine *engine, struct engine_transfer *t)
{
    t->next = NULL;
    *engine->waiting_end = t;
    engine->waiting_end = &t->next;
}

/* Takes the incoming transfers, oldest first; true when told to stop. */
static bool engine_take_incoming(struct engine *engine)
{
    struct engine_transfer *list, *reversed = NULL;
    bool stop;

    pthread_mutex_lock(&engine->lock);
    list = engine->incoming;
    engine->incoming = NULL;
    stop = engine->stop;
    pthread_mutex_unlock(&engine->lock);
    while (list) {
        struct engine_transfer *next = list->next;

        list->next = reversed;
        reversed = list;
        list = next;
    }
    while (reversed) {
        struct engine_transfer *next = reversed->next;

        engine_append_waiting(engine, reversed);
        reversed = next;
    }
    return stop;
}

static void engine_finish(struct engine *engine, unsigned slot, CURLcode code,
                          bool cancelled)
{
    struct engine_transfer *t = engine->live[slot];

    curl_multi_remove_handle(engine->multi, t->easy);
    engine->live[slot] = NULL;
    atomic_fetch_sub(&engine->running, 1);
    t->running = false;
    t->finished(t, code, cancelled);
}

/* Ends cancelled transfers, waiting or running (all of them with `all`),
 * and stalled ones. */
static void engine_sweep(struct engine *engine, bool tick, bool all)
{
    all = all || atomic_load(&engine->cancel_all);
    struct engine_transfer **link = &engine->waiting, *gone = NULL;

    while (*link) {
        struct engine_transfer *t = *link;

        if (all || atomic_load(&t->cancel)) {
            *link = t->next;
            t->next = gone;
            gone = t;
        } else {
            link = &t->next;
        }
    }
    engine->waiting_end = link;
    /* Reported after the list is whole again: a callback may requeue. */
    while (gone) {
        struct engine_transfer *next = gone->next;

        gone->finished(gone, CURLE_ABORTED_BY_CALLBACK, true);
        gone = next;
    }
    for (unsigned i = 0; i < engine->max_transfers; i++) {
        struct engine_transfer *t = engine->live[i];

        if (!t)
            continue;
        if (all || atomic_load(&t->cancel))
            engine_finish(engine, i, CURLE_ABORTED_BY_CALLBACK, true);
        else if (tick && t->check && t->check(t))
            engine_finish(engine, i, CURLE_ABORTED_BY_CALLBACK, false);
    }
}

/* Starts what may start; returns how long the loop may poll. */
static long engine_start_ready(struct engine *engine)
{
    long wait_ms = ENGINE_TICK_MS,
         pause = engine->pacer ? pacer_remaining_ms(engine->pacer) : 0;
    struct engine_transfer **link = &engine->waiting;
    double now = engine_now_ms();

    if (pause > 0)
        return pause < wait_ms ? pause : wait_ms;
    while (*link && atomic_load(&engine->running) < engine->max_transfers) {
        struct engine_transfer *t = *link;
        unsigned slot = 0;

        if (t->start_ms > now) {
            long until = (long)(t->start_ms - now) + 1;

            if (until < wait_ms)
                wait_ms = until;
            link = &t->next;
            continue;
        }
        *link = t->next;
        if (!*link)
            engine->waiting_end = link; /* a callback below may requeue */
        while (engine->live[slot])
            slot++;
        if (curl_multi_add_handle(engine->multi, t->easy) != CURLM_OK) {
            t->finished(t, CURLE_OUT_OF_MEMORY, false);
            continue;
        }
        engine->live[slot] = t;
        t->running = true;
        atomic_fetch_add(&engine->running, 1);
        if (atomic_load(&engine->running) > atomic_load(&engine->max_running))
            atomic_store(&engine->max_running, atomic_load(&engine->running));
    }
    return wait_ms;
}

/* Reports the transfers that ended; true when any did. */
static bool engine_reap(struct engine *engine)
{
    bool any = false;
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(engine->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        for (unsigned i = 0; i < engine->max_transfers; i++) {
            if (engine->live[i] && engine->live[i]->easy == msg->easy_handle) {
                CURLcode code = msg->data.result;

                /* msg is invalid once the handle is removed. */
                engine_finish(engine, i, code, false);
                any = true;
                break;
            }
        }
    }
    return any;
}

static void *engine_run(void *arg)
{
    struct engine *engine = arg;
    double next_tick = engine_now_ms() + ENGINE_TICK_MS;

    for (;;) {
        bool tick = engine_now_ms() >= next_tick;
        long wait_ms;
        int still;

        if (engine_take_incoming(engine))
            break;
        if (tick)
            next_tick = engine_now_ms() + ENGINE_TICK_MS;
        engine_sweep(engine, tick, false);
        wait_ms = engine_start_ready(engine);
        curl_multi_perform(engine->multi, &still);
        if (engine_reap(engine))
            continue; /* what ended may let a waiting one start */
        if (atomic_load(&engine->running) == 0 && !engine->waiting)
            wait_ms = ENGINE_IDLE_MS;
        curl_multi_poll(engine->multi, NULL, 0, (int)wait_ms, NULL);
    }
    /* Stopped: nothing may be left behind (see engine_park). */
    engine_sweep(engine, false, true);
    return NULL;
}

struct engine *engine_new(unsigned max_transfers, struct pacer *pacer, int *err)
{
    struct engine *engine = NULL;
    bool lock_made = false;
    int rc = -EINVAL;

    if (max_transfers == 0)
        goto out;
    rc = -ENOMEM;
    engine = calloc(1, sizeof(*engine));
    if (!engine)
        goto out;
    engine->live = calloc(max_transfers, sizeof(*engine->live));
    engine->multi = curl_multi_init();
    if (!engine->live || !engine->multi || pthread_mutex_init(&engine->lock, NULL))
        goto out;
    lock_made = true;
    engine->max_transfers = max_transfers;
    engine->pacer = pacer;
    engine->waiting_end = &engine->waiting;
    atomic_init(&engine->cancel_all, false);
    atomic_init(&engine->running, 0);
    atomic_init(&engine->max_running, 0);
    if (curl_multi_setopt(engine->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX) ||
        curl_multi_setopt(engine->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                          (long)max_transfers) ||
        curl_multi_setopt(engine->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                          (long)max_transfers) ||
        curl_multi_setopt(engine->multi, CURLMOPT_MAXCONNECTS, (long)max_transfers))
        goto out;
    rc = 0;
out:
    if (rc && engine) {
        if (lock_made)
            pthread_mutex_destroy(&engine->lock);
        if (engine->multi)
            curl_multi_cleanup(engine->multi);
        free(engine->live);
        free(engine);
        engine = NULL;
    }
    if (err)
        *err = rc;
    return engine;
}

/* Stops the thread, if it runs; the next submit starts another. */
static void engine_stop_thread(struct engine *engine)
{
    bool running;

    pthread_mutex_lock(&engine->lock);
    running = engine->thread_running;
    engine->stop = true;
    pthread_mutex_unlock(&engine->lock);
    if (running) {
        curl_multi_wakeup(engine->multi);
        pthread_join(engine->thread, NULL);
    }
    pthread_mutex_lock(&engine->lock);
    engine->stop = false;
    engine->thread_running = false;
    pthread_mutex_unlock(&engine->lock);
}

void engine_park(struct engine *engine)
{
    engine_stop_thread(engine);
}

void engine_free(struct engine *engine)
{
    if (!engine)
        return;
    engine_stop_thread(engine);
    /* Submitted after the last turn: reported cancelled here. */
    engine_take_incoming(engine);
    engine_sweep(engine, false, true);
    curl_multi_cleanup(engine->multi);
    pthread_mutex_destroy(&engine->lock);
    free(engine->live);
    free(engine);
}

int engine_submit(struct engine *engine, struct engine_transfer *t)
{
    int rc = 0;

    atomic_init(&t->cancel, false);
    t->running = false;
    pthread_mutex_lock(&engine->lock);
    /* The thread starts with the first transfer, so that an engine made
     * before a fork() (daemonizing) works in the child. */
    if (!engine->thread_running) {
        if (pthread_create(&engine->thread, NULL, engine_run, engine))
            rc = -EAGAIN;
        else
            engine->thread_running = true;
    }
    if (rc == 0) {
        t->next = engine->incoming;
        engine->incoming = t;
    }
    pthread_mutex_unlock(&engine->lock);
    if (rc == 0)
        curl_multi_wakeup(engine->multi);
    return rc;
}

void engine_requeue(struct engine *engine, struct engine_transfer *t)
{
    engine_append_waiting(engine, t);
}

void engine_cancel(struct engine *engine, struct engine_transfer *t)
{
    atomic_store(&t->cancel, true);
    curl_multi_wakeup(engine->multi);
}

void engine_cancel_all(struct engine *engine)
{
    atomic_store(&engine->cancel_all, true);
    curl_multi_wakeup(engine->multi);
}

unsigned engine_running(struct engine *engine)
{
    return atomic_load(&engine->running);
}

unsigned engine_max_running(struct engine *engine)
{
    return atomic_load(&engine->max_running);
}
