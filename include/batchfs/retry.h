/*
 * retry — when to try a failed request again, and how long to wait first.
 *
 * The policy of the official LlamaCloud clients: 408, 409, 429, every 5xx and
 * connection-level failures are retried; the server may override that with
 * `x-should-retry`; the wait is `retry-after-ms`, else `retry-after`, else an
 * exponential backoff with jitter. Pure functions: no clock, no randomness,
 * no I/O of their own, so every branch is unit-testable. Knows nothing of
 * curl; the caller extracts the status, errno and header values.
 */
#ifndef BATCHFS_RETRY_H
#define BATCHFS_RETRY_H

#include <stdbool.h>
#include <time.h>

struct retry_policy {
    long initial_ms;         /* first backoff (0.5 s) */
    long max_backoff_ms;     /* backoff cap (8 s) */
    long max_server_wait_ms; /* largest wait a server may ask for (20 s) */
};

#define RETRY_POLICY_DEFAULT                                                             \
    {                                                                                    \
        500, 8000, 20000                                                                 \
    }

/*
 * Whether an attempt that ended with `status` (an HTTP status, or 0 when no
 * response was had) and `transport_err` (0, or the negative errno of a
 * connection-level failure) is worth another attempt.
 *
 * `x_should_retry` is the response header's value or NULL; "true" or
 * "false" (any case, surrounding blanks ignored) decides for any status,
 * other values are ignored. Retried transport errors: -ETIMEDOUT,
 * -ECONNREFUSED, -ECONNRESET, -ECONNABORTED, -EPIPE, -EIO (a response cut
 * short or corrupt), -EPROTO (a TLS handshake that failed). Not retried:
 * -EHOSTUNREACH (a name that does not resolve rarely starts to), -EFBIG,
 * -ECANCELED, -ENOMEM and anything else.
 */
bool retry_is_retryable(long status, int transport_err, const char *x_should_retry);

/*
 * Milliseconds to wait before retry number `attempt` (0 = the first retry).
 *
 * `retry_after_ms` and `retry_after` are the response headers' values or
 * NULL; `now` is the wall-clock time (for an HTTP-date Retry-After) and
 * `random01` a uniform number in [0, 1) for the jitter.
 *
 * - retry-after-ms: a non-negative decimal number, may be fractional;
 * - else retry-after: non-negative integer seconds, or an HTTP-date
 *   (IMF-fixdate, RFC 850 or asctime form, RFC 9110 section 5.6.7);
 * - else the backoff: initial_ms * 2^attempt capped at max_backoff_ms, less
 *   up to 25 % jitter.
 * A server-asked wait is clamped to max_server_wait_ms so that
 * "Retry-After: 86400" cannot stall the filesystem. An explicit 0 is
 * honoured (the number of attempts bounds the requests). A date that is not
 * in the future, a negative value or garbage says nothing usable, so the
 * backoff applies instead: a clock-skewed server cannot make us spin.
 * Always returns a value >= 0.
 */
long retry_delay_ms(const struct retry_policy *policy, unsigned attempt,
                    const char *retry_after_ms, const char *retry_after, time_t now,
                    double random01);

/* Parses an HTTP-date into *out (UTC). 0, or -EINVAL if it is not one. */
int retry_parse_http_date(const char *text, time_t *out);

#endif
