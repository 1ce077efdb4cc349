/*
 * pacer — one back-off clock shared by every request.
 *
 * When the API throttles one request, every request must hold off, or N
 * requests each honouring Retry-After on their own still hammer the server.
 * The pacer keeps the time before which no request may start (`resume_at`,
 * on CLOCK_MONOTONIC, in milliseconds); the engine reads it before starting
 * any transfer and polls no longer than it says. Nothing here sleeps.
 * Knows nothing of HTTP: the caller decides what a throttle is.
 * Thread-safe throughout. The *_at forms take the clock as an argument, so
 * that every rule is testable without waiting.
 */
#ifndef BATCHFS_PACER_H
#define BATCHFS_PACER_H

struct pacer;

/* A pacer whose resume_at has passed. NULL with *err = -ENOMEM. */
struct pacer *pacer_new(int *err);

/* Frees the pacer. Safe on NULL. */
void pacer_free(struct pacer *pacer);

/* Moves resume_at to max(resume_at, now + ms): no request starts before
 * then. ms <= 0 does nothing. */
void pacer_defer(struct pacer *pacer, long ms);

/* Milliseconds until resume_at, rounded up (0 when it has passed). */
long pacer_remaining_ms(struct pacer *pacer);

/* The same with `now_ms` (monotonic milliseconds) given. */
void pacer_defer_at(struct pacer *pacer, long long now_ms, long ms);
long pacer_remaining_at(struct pacer *pacer, long long now_ms);

/* Monotonic milliseconds, the pacer's clock. */
long long pacer_now_ms(void);

#endif
