/*
 * pacer — the shared back-off clock (see include/batchfs/pacer.h).
 *
 * One mutex around one number. CLOCK_MONOTONIC, so that a wall-clock step
 * (NTP, suspend) neither shortens nor stretches a back-off. Waiting is the
 * engine's: it polls no longer than pacer_remaining_ms() and starts
 * nothing before it is 0.
 * Not for: deciding how long to back off (retry.c) or what a throttle is.
 */
#include "batchfs/pacer.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct pacer {
    pthread_mutex_t lock;
    long long resume_at; /* monotonic ms; protected by lock */
};

long long pacer_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    /* Rounded up, so that a start at "now" is never before resume_at. */
    return (long long)ts.tv_sec * 1000 + (ts.tv_nsec + 999999) / 1000000;
}

struct pacer *pacer_new(int *err)
{
    struct pacer *pacer = calloc(1, sizeof(*pacer));
    int rc = 0;

    if (!pacer || pthread_mutex_init(&pacer->lock, NULL)) {
        free(pacer);
        pacer = NULL;
        rc = -ENOMEM;
    }
    if (err)
        *err = rc;
    return pacer;
}

void pacer_free(struct pacer *pacer)
{
    if (!pacer)
        return;
    pthread_mutex_destroy(&pacer->lock);
    free(pacer);
}

void pacer_defer_at(struct pacer *pacer, long long now_ms, long ms)
{
    if (ms <= 0)
        return;
    pthread_mutex_lock(&pacer->lock);
    if (pacer->resume_at < now_ms + ms)
        pacer->resume_at = now_ms + ms;
    pthread_mutex_unlock(&pacer->lock);
}

long pacer_remaining_at(struct pacer *pacer, long long now_ms)
{
    long long resume_at;

    pthread_mutex_lock(&pacer->lock);
    resume_at = pacer->resume_at;
    pthread_mutex_unlock(&pacer->lock);
    return resume_at > now_ms ? (long)(resume_at - now_ms) : 0;
}

void pacer_defer(struct pacer *pacer, long ms)
{
    pacer_defer_at(pacer, pacer_now_ms(), ms);
}

long pacer_remaining_ms(struct pacer *pacer)
{
    return pacer_remaining_at(pacer, pacer_now_ms());
}
