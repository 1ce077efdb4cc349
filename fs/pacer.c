/*
 * pacer — shared back-off clock and request slots (see include/batchfs/pacer.h).
 *
 * One mutex and one condition variable. The condition uses CLOCK_MONOTONIC
 * so that a wall-clock step (NTP, suspend) neither shortens nor stretches a
 * back-off. Every state change broadcasts: waiters wait for different things
 * (a time, a slot, cancellation) and the count of waiters is small (at most
 * the FUSE worker threads), so waking them all is cheaper than being clever.
 * Not for: deciding how long to back off (retry.c) or what a throttle is.
 */
#include "batchfs/pacer.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct pacer {
    pthread_mutex_t lock;
    pthread_cond_t changed; /* signalled on every change below */
    /* Everything below is protected by lock. */
    struct timespec resume_at; /* monotonic; no request starts before it */
    unsigned slots;            /* constant after pacer_new() */
    unsigned in_use;
    bool cancelled;
};

static struct timespec pacer_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts;
}

static struct timespec pacer_add_ms(struct timespec ts, long ms)
{
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static bool pacer_before(struct timespec a, struct timespec b)
{
    return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

struct pacer *pacer_new(unsigned slots, int *err)
{
    struct pacer *pacer = NULL;
    pthread_condattr_t attr;
    bool attr_made = false, lock_made = false;
    int rc = 0;

    if (slots == 0) {
        rc = -EINVAL;
        goto out;
    }
    pacer = calloc(1, sizeof(*pacer));
    if (!pacer) {
        rc = -ENOMEM;
        goto out;
    }
    if (pthread_mutex_init(&pacer->lock, NULL)) {
        rc = -ENOMEM;
        goto out;
    }
    lock_made = true;
    if (pthread_condattr_init(&attr)) {
        rc = -ENOMEM;
        goto out;
    }
    attr_made = true;
    if (pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) ||
        pthread_cond_init(&pacer->changed, &attr)) {
        rc = -ENOMEM;
        goto out;
    }
    pacer->slots = slots;
    pacer->resume_at = pacer_now();
out:
    if (attr_made)
        pthread_condattr_destroy(&attr);
    if (rc) {
        if (lock_made)
            pthread_mutex_destroy(&pacer->lock);
        free(pacer);
        pacer = NULL;
    }
    if (err)
        *err = rc;
    return pacer;
}

void pacer_free(struct pacer *pacer)
{
    if (!pacer)
        return;
    pthread_cond_destroy(&pacer->changed);
    pthread_mutex_destroy(&pacer->lock);
    free(pacer);
}

/* Called with the lock held: sleeps until the deadline or a change. */
static void pacer_wait_until_locked(struct pacer *pacer, struct timespec deadline)
{
    pthread_cond_timedwait(&pacer->changed, &pacer->lock, &deadline);
}

int pacer_wait(struct pacer *pacer)
{
    int rc = 0;

    pthread_mutex_lock(&pacer->lock);
    for (;;) {
        struct timespec now = pacer_now();

        if (pacer->cancelled) {
            rc = -ECANCELED;
            break;
        }
        if (!pacer_before(now, pacer->resume_at))
            break;
        pacer_wait_until_locked(pacer, pacer->resume_at);
    }
    pthread_mutex_unlock(&pacer->lock);
    return rc;
}

int pacer_acquire(struct pacer *pacer)
{
    int rc = 0;

    pthread_mutex_lock(&pacer->lock);
    for (;;) {
        struct timespec now = pacer_now();

        if (pacer->cancelled) {
            rc = -ECANCELED;
            break;
        }
        if (pacer_before(now, pacer->resume_at)) {
            pacer_wait_until_locked(pacer, pacer->resume_at);
            continue;
        }
        if (pacer->in_use < pacer->slots) {
            pacer->in_use++;
            break;
        }
        pthread_cond_wait(&pacer->changed, &pacer->lock);
    }
    pthread_mutex_unlock(&pacer->lock);
    return rc;
}

void pacer_release(struct pacer *pacer)
{
    pthread_mutex_lock(&pacer->lock);
    if (pacer->in_use > 0)
        pacer->in_use--;
    pthread_cond_broadcast(&pacer->changed);
    pthread_mutex_unlock(&pacer->lock);
}

void pacer_defer(struct pacer *pacer, long ms)
{
    struct timespec until;

    if (ms <= 0)
        return;
    until = pacer_add_ms(pacer_now(), ms);
    pthread_mutex_lock(&pacer->lock);
    if (pacer_before(pacer->resume_at, until))
        pacer->resume_at = until;
    /* Waiters re-read resume_at when their old deadline passes; a wake-up
     * now is only needed for slot waiters, which must start waiting for
     * the new time instead. */
    pthread_cond_broadcast(&pacer->changed);
    pthread_mutex_unlock(&pacer->lock);
}

int pacer_sleep(struct pacer *pacer, long ms)
{
    struct timespec deadline = pacer_add_ms(pacer_now(), ms > 0 ? ms : 0);
    int rc = 0;

    pthread_mutex_lock(&pacer->lock);
    for (;;) {
        if (pacer->cancelled) {
            rc = -ECANCELED;
            break;
        }
        if (!pacer_before(pacer_now(), deadline))
            break;
        pacer_wait_until_locked(pacer, deadline);
    }
    pthread_mutex_unlock(&pacer->lock);
    return rc;
}

void pacer_cancel(struct pacer *pacer)
{
    pthread_mutex_lock(&pacer->lock);
    pacer->cancelled = true;
    pthread_cond_broadcast(&pacer->changed);
    pthread_mutex_unlock(&pacer->lock);
}

bool pacer_cancelled(struct pacer *pacer)
{
    bool cancelled;

    pthread_mutex_lock(&pacer->lock);
    cancelled = pacer->cancelled;
    pthread_mutex_unlock(&pacer->lock);
    return cancelled;
}

unsigned pacer_in_use(struct pacer *pacer)
{
    unsigned in_use;

    pthread_mutex_lock(&pacer->lock);
    in_use = pacer->in_use;
    pthread_mutex_unlock(&pacer->lock);
    return in_use;
}
