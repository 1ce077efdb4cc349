/*
 * retry — the retry policy of the official clients (see include/batchfs/retry.h).
 *
 * Only decides; never sleeps, reads a clock or draws random numbers, so the
 * HTTP client stays the one place with side effects. Header values come from
 * an untrusted server, so every parser here is strict and treats anything it
 * does not fully understand as absent rather than guessing.
 */
#include "batchfs/retry.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct retry_policy retry_default_policy = RETRY_POLICY_DEFAULT;

static bool retry_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Sets [*start, *end) to the value without surrounding blanks. */
static void retry_trim(const char *text, const char **start, const char **end)
{
    const char *s = text, *e = text + strlen(text);

    while (s < e && retry_is_blank(*s))
        s++;
    while (e > s && retry_is_blank(e[-1]))
        e--;
    *start = s;
    *end = e;
}

static bool retry_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

bool retry_is_retryable(long status, int transport_err, const char *x_should_retry)
{
    if (x_should_retry) {
        const char *s, *e;

        retry_trim(x_should_retry, &s, &e);
        if (e - s == 4 && strncasecmp(s, "true", 4) == 0)
            return true;
        if (e - s == 5 && strncasecmp(s, "false", 5) == 0)
            return false;
    }
    if (status == 0) {
        switch (transport_err) {
        case -ETIMEDOUT:
        case -ECONNREFUSED:
        case -ECONNRESET:
        case -ECONNABORTED:
        case -EPIPE:
        case -EIO:
        case -EPROTO:
            return true;
        default:
            return false;
        }
    }
    if (status == 408 || status == 409 || status == 429)
        return true;
    return status >= 500 && status <= 599;
}

/*
 * A decimal number of milliseconds, e.g. "250" or "1.5". Returns -1 for
 * anything else; a number too large for a long saturates to LONG_MAX (it is
 * clamped later anyway).
 */
static long retry_parse_ms(const char *text)
{
    const char *s, *e, *p;
    long whole = 0;
    bool digits = false, fraction = false;

    retry_trim(text, &s, &e);
    for (p = s; p < e && retry_is_digit(*p); p++) {
        digits = true;
        if (whole > (LONG_MAX - 9) / 10)
            whole = LONG_MAX;
        else
            whole = whole * 10 + (*p - '0');
    }
    if (p < e && *p == '.') {
        for (p++; p < e && retry_is_digit(*p); p++) {
            digits = true;
            if (*p != '0')
                fraction = true;
        }
    }
    if (!digits || p != e)
        return -1;
    /* Round a fractional wait up: waiting slightly longer than asked is safe. */
    if (fraction && whole < LONG_MAX)
        whole++;
    return whole;
}

/* Non-negative integer seconds, as milliseconds; -1 if not that form. */
static long retry_parse_seconds_as_ms(const char *text)
{
    const char *s, *e, *p;
    long seconds = 0;

    retry_trim(text, &s, &e);
    if (s == e)
        return -1;
    for (p = s; p < e; p++) {
        if (!retry_is_digit(*p))
            return -1;
        if (seconds > (LONG_MAX / 1000 - 9) / 10)
            return LONG_MAX;
        seconds = seconds * 10 + (*p - '0');
    }
    return seconds * 1000;
}

static bool retry_take_char(const char **p, const char *end, char c)
{
    if (*p >= end || **p != c)
        return false;
    (*p)++;
    return true;
}

/* Exactly n digits. */
static bool retry_take_digits(const char **p, const char *end, int n, int *out)
{
    int value = 0;

    if (end - *p < n)
        return false;
    for (int i = 0; i < n; i++) {
        if (!retry_is_digit((*p)[i]))
            return false;
        value = value * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = value;
    return true;
}

static bool retry_take_word(const char **p, const char *end, const char *word)
{
    size_t n = strlen(word);

    if ((size_t)(end - *p) < n || strncasecmp(*p, word, n) != 0)
        return false;
    *p += n;
    return true;
}

static bool retry_take_month(const char **p, const char *end, int *month)
{
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

    for (int i = 0; i < 12; i++) {
        if (retry_take_word(p, end, months[i])) {
            *month = i;
            return true;
        }
    }
    return false;
}

/* A day name, short ("Sun") or long ("Sunday"); *is_long says which. */
static bool retry_take_weekday(const char **p, const char *end, bool *is_long)
{
    static const char *const days[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                       "Friday", "Saturday", "Sunday"};

    for (int i = 0; i < 7; i++) {
        if (retry_take_word(p, end, days[i])) {
            *is_long = true;
            return true;
        }
    }
    for (int i = 0; i < 7; i++) {
        char shortname[4];

        memcpy(shortname, days[i], 3);
        shortname[3] = '\0';
        if (retry_take_word(p, end, shortname)) {
            *is_long = false;
            return true;
        }
    }
    return false;
}

/* "HH:MM:SS" */
static bool retry_take_time(const char **p, const char *end, struct tm *tm)
{
    return retry_take_digits(p, end, 2, &tm->tm_hour) && retry_take_char(p, end, ':') &&
           retry_take_digits(p, end, 2, &tm->tm_min) && retry_take_char(p, end, ':') &&
           retry_take_digits(p, end, 2, &tm->tm_sec);
}

int retry_parse_http_date(const char *text, time_t *out)
{
    const char *p, *end;
    struct tm tm;
    bool is_long, ok;
    int year = 0, month = 0, mday = 0;
    time_t t;

    memset(&tm, 0, sizeof(tm));
    retry_trim(text, &p, &end);
    if (!retry_take_weekday(&p, end, &is_long))
        return -EINVAL;
    if (retry_take_char(&p, end, ',')) {
        if (!is_long) {
            /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
            ok = retry_take_char(&p, end, ' ') && retry_take_digits(&p, end, 2, &mday) &&
                 retry_take_char(&p, end, ' ') && retry_take_month(&p, end, &month) &&
                 retry_take_char(&p, end, ' ') && retry_take_digits(&p, end, 4, &year);
        } else {
            /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
            ok = retry_take_char(&p, end, ' ') && retry_take_digits(&p, end, 2, &mday) &&
                 retry_take_char(&p, end, '-') && retry_take_month(&p, end, &month) &&
                 retry_take_char(&p, end, '-') && retry_take_digits(&p, end, 2, &year);
            /* Two-digit years: 70..99 are the 1900s, the rest this century. */
            if (ok)
                year += year >= 70 ? 1900 : 2000;
        }
        ok = ok && retry_take_char(&p, end, ' ') && retry_take_time(&p, end, &tm) &&
             retry_take_char(&p, end, ' ') && retry_take_word(&p, end, "GMT");
    } else {
        /* asctime: Sun Nov  6 08:49:37 1994 */
        ok = !is_long && retry_take_char(&p, end, ' ') &&
             retry_take_month(&p, end, &month) && retry_take_char(&p, end, ' ');
        if (ok && retry_take_char(&p, end, ' '))
            ok = retry_take_digits(&p, end, 1, &mday);
        else
            ok = ok && retry_take_digits(&p, end, 2, &mday);
        ok = ok && retry_take_char(&p, end, ' ') && retry_take_time(&p, end, &tm) &&
             retry_take_char(&p, end, ' ') && retry_take_digits(&p, end, 4, &year);
    }
    if (!ok || p != end)
        return -EINVAL;
    if (mday < 1 || mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return -EINVAL;
    tm.tm_mday = mday;
    tm.tm_mon = month;
    tm.tm_year = year - 1900;
    t = timegm(&tm);
    /* timegm() normalises "31 Feb" into March; such a date is not a date. */
    if (t == (time_t)-1 || tm.tm_mday != mday || tm.tm_mon != month)
        return -EINVAL;
    *out = t;
    return 0;
}

static long retry_backoff_ms(const struct retry_policy *policy, unsigned attempt,
                             double random01)
{
    long delay = policy->initial_ms > 0 ? policy->initial_ms : 0;
    long cap = policy->max_backoff_ms > 0 ? policy->max_backoff_ms : 0;

    for (unsigned i = 0; i < attempt && delay < cap; i++)
        delay = delay > LONG_MAX / 2 ? LONG_MAX : delay * 2;
    if (delay > cap)
        delay = cap;
    /* Jitter spreads clients that failed together so they do not return
     * together; NaN and out-of-range draws are pinned to the range. */
    if (!(random01 > 0.0))
        random01 = 0.0;
    if (random01 > 1.0)
        random01 = 1.0;
    return delay - (long)((double)delay * 0.25 * random01);
}

long retry_delay_ms(const struct retry_policy *policy, unsigned attempt,
                    const char *retry_after_ms, const char *retry_after, time_t now,
                    double random01)
{
    long max_wait, server = -1;
    time_t date;

    if (!policy)
        policy = &retry_default_policy;
    max_wait = policy->max_server_wait_ms > 0 ? policy->max_server_wait_ms : 0;
    if (retry_after_ms)
        server = retry_parse_ms(retry_after_ms);
    if (server < 0 && retry_after) {
        server = retry_parse_seconds_as_ms(retry_after);
        if (server < 0 && retry_parse_http_date(retry_after, &date) == 0 && date > now) {
            double wait = difftime(date, now) * 1000.0;

            server = wait >= (double)max_wait ? max_wait : (long)wait;
        }
    }
    if (server >= 0)
        return server > max_wait ? max_wait : server;
    return retry_backoff_ms(policy, attempt, random01);
}
