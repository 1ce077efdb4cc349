/*
 * pacer — one back-off clock and one connection bound shared by all threads.
 *
 * When the API throttles one request, every thread must hold off, or N
 * threads each honouring Retry-After on their own still hammer the server.
 * The pacer keeps the time before which no request may start (`resume_at`,
 * on CLOCK_MONOTONIC) and a counting semaphore of request slots so that the
 * requests in flight from all threads never exceed max_connections.
 * Cancellation (unmount) wakes every waiter at once.
 * Knows nothing of HTTP: the caller decides what a throttle is.
 * Thread-safe throughout.
 */
#ifndef BATCHFS_PACER_H
#define BATCHFS_PACER_H

#include <stdbool.h>
#include <time.h>

struct pacer;

/* A pacer with `slots` request slots (at least 1), on CLOCK_MONOTONIC. NULL
 * with *err set to -EINVAL (no slots) or -ENOMEM. */
struct pacer *pacer_new(unsigned slots, int *err);

/*
 * A clock of the caller's own, for tests that move time by hand instead of
 * sleeping: now() returns the time on a scale that never goes back. It is
 * called with the pacer's lock held and must not call into the pacer. The
 * pacer cannot know when such a clock moves, so its waits do not time out;
 * whoever moves it calls pacer_clock_moved().
 */
struct pacer_clock {
    struct timespec (*now)(void *arg);
    void *arg;
};

/* As pacer_new(), on `clock` (copied; NULL: CLOCK_MONOTONIC). */
struct pacer *pacer_new_clocked(unsigned slots, const struct pacer_clock *clock,
                                int *err);

/* Wakes every waiter to read the clock again. Needed only after moving a
 * pacer_clock; harmless otherwise. */
void pacer_clock_moved(struct pacer *pacer);

/* Frees the pacer. No thread may be waiting in it. Safe on NULL. */
void pacer_free(struct pacer *pacer);

/* Sleeps until resume_at. 0, or -ECANCELED at once after pacer_cancel(). */
int pacer_wait(struct pacer *pacer);

/*
 * Waits until resume_at has passed AND a slot is free, then takes the slot.
 * Both are checked together under the lock, so a deferral made while this
 * thread waited for a slot is still honoured. 0 (the caller then owes one
 * pacer_release()), or -ECANCELED without a slot.
 */
int pacer_acquire(struct pacer *pacer);

/* Returns a slot taken by pacer_acquire(). */
void pacer_release(struct pacer *pacer);

/* Moves resume_at to max(resume_at, now + ms): every thread's next
 * pacer_wait()/pacer_acquire() holds off until then. ms <= 0 does nothing. */
void pacer_defer(struct pacer *pacer, long ms);

/* Sleeps this thread only, for ms milliseconds. 0, or -ECANCELED at once
 * after pacer_cancel(). */
int pacer_sleep(struct pacer *pacer, long ms);

/* Milliseconds until resume_at (0 when it has passed), for a loop that
 * waits on it without sleeping in the pacer (the engine). */
long pacer_remaining_ms(struct pacer *pacer);

/* Wakes every waiter; this and every later wait returns -ECANCELED. */
void pacer_cancel(struct pacer *pacer);

/* True once pacer_cancel() was called. */
bool pacer_cancelled(struct pacer *pacer);

/* Slots currently taken (for tests and statistics). */
unsigned pacer_in_use(struct pacer *pacer);

/* For tests, which wait on these instead of sleeping, and for statistics. */
struct pacer_stats {
    unsigned in_use;           /* slots taken */
    unsigned waiting;          /* threads asleep in the pacer now */
    unsigned long long sleeps; /* times any thread went to sleep in it */
};

void pacer_get_stats(struct pacer *pacer, struct pacer_stats *out);

#endif
