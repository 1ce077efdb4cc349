/*
 * pacer — shared back-off clock and request slots (see include/batchfs/pacer.h).
 *
 * One mutex and one condition variable. The condition uses CLOCK_MONOTONIC
 * so that a wall-clock step (NTP, suspend) neither shortens nor stretches a
 * back-off. Every state change broadcasts: waiters wait for different things
 * (a time, a slot, cancellation) and the count of waiters is small (at most
 * the FUSE worker threads), so waking them all is cheaper than being clever.
 * A clock given by the caller (tests) replaces the timed waits by plain ones
 * that pacer_clock_moved() ends.
 * Not for: deciding how long to back off (retry.c) or what a throttle is.
 */
#include "batchfs/pacer.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct pacer {
    pthread_mutex_t lock;
    pthread_cond_t changed;   /* signalled on every change below */
    struct pacer_clock clock; /* constant; now == NULL: CLOCK_MONOTONIC */
    /* Everything below is protected by lock. */
    struct timespec resume_at; /* on the clock; no request starts before it */
    unsigned slots;            /* constant after pacer_new() */
    unsigned in_use;
    bool cancelled;
    unsigned waiting;          /* threads in pacer_sleep_locked() */
    unsigned long long sleeps; /* calls of pacer_sleep_locked() */
};

static struct timespec pacer_now(const struct pacer *pacer)
{
    struct timespec ts;

    if (pacer->clock.now)
        return pacer->clock.now(pacer->clock.arg);
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
    return pacer_new_clocked(slots, NULL, err);
}

struct pacer *pacer_new_clocked(unsigned slots, const struct pacer_clock *clock, int *err)
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
    if (clock)
        pacer->clock = *clock;
    pacer->resume_at = pacer_now(pacer);
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

/* Called with the lock held: sleeps until the deadline (NULL: none) or a
 * change. On a caller's clock only a change ends it: the kernel cannot
 * keep a deadline on a clock it does not know. */
static void pacer_sleep_locked(struct pacer *pacer, const struct timespec *deadline)
{
    pacer->waiting++;
    pacer->sleeps++;
    if (deadline && !pacer->clock.now) {
        /* A copy: *deadline may be resume_at, which moves while we sleep. */
        struct timespec until = *deadline;

        pthread_cond_timedwait(&pacer->changed, &pacer->lock, &until);
    } else {
        pthread_cond_wait(&pacer->changed, &pacer->lock);
    }
    pacer->waiting--;
}

int pacer_wait(struct pacer *pacer)
{
    int rc = 0;

    pthread_mutex_lock(&pacer->lock);
    for (;;) {
        struct timespec now = pacer_now(pacer);

        if (pacer->cancelled) {
            rc = -ECANCELED;
            break;
        }
        if (!pacer_before(now, pacer->resume_at))
            break;
        pacer_sleep_locked(pacer, &pacer->resume_at);
    }
    pthread_mutex_unlock(&pacer->lock);
    return rc;
}

int pacer_acquire(struct pacer *pacer)
{
    int rc = 0;

    pthread_mutex_lock(&pacer->lock);
    for (;;) {
        struct timespec now = pacer_now(pacer);

        if (pacer->cancelled) {
            rc = -ECANCELED;
            break;
        }
        if (pacer_before(now, pacer->resume_at)) {
            pacer_sleep_locked(pacer, &pacer->resume_at);
            continue;
        }
        if (pacer->in_use < pacer->slots) {
            pacer->in_use++;
            break;
        }
        pacer_sleep_locked(pacer, NULL);
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
    pthread_mutex_lock(&pacer->lock);
    until = pacer_add_ms(pacer_now(pacer), ms);
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
    struct timespec deadline;
    int rc = 0;

    pthread_mutex_lock(&pacer->lock);
    deadline = pacer_add_ms(pacer_now(pacer), ms > 0 ? ms : 0);
    for (;;) {
        if (pacer->cancelled) {
            rc = -ECANCELED;
            break;
        }
        if (!pacer_before(pacer_now(pacer), deadline))
            break;
        pacer_sleep_locked(pacer, &deadline);
    }
    pthread_mutex_unlock(&pacer->lock);
    return rc;
}

long pacer_remaining_ms(struct pacer *pacer)
{
    struct timespec now = pacer_now(), until;
    long ms = 0;

    pthread_mutex_lock(&pacer->lock);
    until = pacer->resume_at;
    pthread_mutex_unlock(&pacer->lock);
    if (pacer_before(now, until)) {
        ms = (long)(until.tv_sec - now.tv_sec) * 1000 +
             (until.tv_nsec - now.tv_nsec) / 1000000L;
        /* Rounded up: a loop that wakes this early starts nothing. */
        ms++;
    }
    return ms;
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

void pacer_clock_moved(struct pacer *pacer)
{
    pthread_mutex_lock(&pacer->lock);
    pthread_cond_broadcast(&pacer->changed);
    pthread_mutex_unlock(&pacer->lock);
}

void pacer_get_stats(struct pacer *pacer, struct pacer_stats *out)
{
    pthread_mutex_lock(&pacer->lock);
    out->in_use = pacer->in_use;
    out->waiting = pacer->waiting;
    out->sleeps = pacer->sleeps;
    pthread_mutex_unlock(&pacer->lock);
}
