/*
 * log — one logging entry point with redaction (see include/batchfs/log.h).
 *
 * The threshold, destination and secrets are set once before threads start
 * and only read afterwards, so they need no lock. Each line is formatted in
 * full, redacted, and then written with a single call so that lines from
 * different threads never interleave. A line held back (log_hold) is kept
 * per thread, so it too needs no lock.
 */
#include "batchfs/log.h"

#include <fuse_log.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#define LOG_MAX_SECRETS 4
#define LOG_LINE_MAX 2048

/* Written only by log_setup()/log_add_secret() before threads start. */
static enum log_level log_threshold = LOG_LEVEL_WARNING;
static bool log_to_syslog;
static char *log_secrets[LOG_MAX_SECRETS];

void log_setup(enum log_level threshold, bool use_syslog)
{
    log_threshold = threshold;
    if (use_syslog && !log_to_syslog)
        openlog("batchfs", LOG_PID, LOG_DAEMON);
    log_to_syslog = use_syslog;
}

bool log_enabled(enum log_level level)
{
    return level <= log_threshold;
}

void log_add_secret(const char *secret)
{
    if (!secret || strlen(secret) < 4)
        return;
    for (int i = 0; i < LOG_MAX_SECRETS; i++) {
        if (!log_secrets[i]) {
            log_secrets[i] = strdup(secret);
            return;
        }
    }
}

/* Replaces every registered secret in `line` by "[redacted]", in place.
 * The replacement is never longer than a secret of 10+ bytes; for shorter
 * secrets it is cut to fit, so the line never grows. */
static void log_redact(char *line)
{
    static const char mask[] = "[redacted]";

    for (int i = 0; i < LOG_MAX_SECRETS && log_secrets[i]; i++) {
        size_t slen = strlen(log_secrets[i]);
        size_t mlen = slen < sizeof(mask) - 1 ? slen : sizeof(mask) - 1;
        char *hit;

        while ((hit = strstr(line, log_secrets[i])) != NULL) {
            memcpy(hit, mask, mlen);
            memmove(hit + mlen, hit + slen, strlen(hit + slen) + 1);
        }
    }
}

static const char *log_level_name(enum log_level level)
{
    switch (level) {
    case LOG_LEVEL_ERROR:
        return "error";
    case LOG_LEVEL_WARNING:
        return "warning";
    case LOG_LEVEL_INFO:
        return "info";
    default:
        return "debug";
    }
}

/* The last warning or error, for .batchfs/stats; protected by its lock. */
static pthread_mutex_t log_last_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_last_line[LOG_LINE_MAX];
static time_t log_last_time;

bool log_last_problem(char *out, size_t len, time_t *when)
{
    bool found;

    pthread_mutex_lock(&log_last_lock);
    found = log_last_time != 0;
    if (found) {
        snprintf(out, len, "%s", log_last_line);
        *when = log_last_time;
    }
    pthread_mutex_unlock(&log_last_lock);
    return found;
}

/* The line held back on this thread (log_hold): per thread, so no lock. */
static _Thread_local bool log_holding;
static _Thread_local bool log_held;
static _Thread_local enum log_level log_held_level;
static _Thread_local char log_held_line[LOG_LINE_MAX];

/* Writes one formatted, redacted line at `level`. */
static void log_write(enum log_level level, const char *line)
{
    static const int syslog_priority[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

    if (!log_enabled(level))
        return;
    if (log_to_syslog) {
        syslog(syslog_priority[level], "%s", line);
    } else {
        struct timespec now;
        struct tm tm;
        char stamp[32];

        clock_gettime(CLOCK_REALTIME, &now);
        gmtime_r(&now.tv_sec, &tm);
        strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
        fprintf(stderr, "batchfs %s.%03ld %s: %s\n", stamp, now.tv_nsec / 1000000L,
                log_level_name(level), line);
    }
}

bool log_hold(void)
{
    if (log_holding)
        return false;
    log_holding = true;
    log_held = false;
    return true;
}

bool log_release(char *out, size_t size)
{
    bool held = log_held;

    log_holding = false;
    log_held = false;
    if (held && out && size)
        snprintf(out, size, "%s", log_held_line);
    else if (held)
        log_write(log_held_level, log_held_line);
    return held;
}

void log_message(enum log_level level, const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    va_list ap;

    if (!log_enabled(level) && level > LOG_LEVEL_WARNING)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* Control characters from remote data must not forge log lines. */
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    log_redact(line);
    if (level <= LOG_LEVEL_WARNING) {
        pthread_mutex_lock(&log_last_lock);
        memcpy(log_last_line, line, sizeof(line));
        log_last_time = time(NULL);
        pthread_mutex_unlock(&log_last_lock);
    }
    if (log_holding && level <= LOG_LEVEL_WARNING) {
        if (log_held)
            log_write(log_held_level, log_held_line);
        memcpy(log_held_line, line, sizeof(line));
        log_held_level = level;
        log_held = true;
        return;
    }
    log_write(level, line);
}

static enum log_level log_level_of_libfuse(enum fuse_log_level level)
{
    if (level <= FUSE_LOG_ERR)
        return LOG_LEVEL_ERROR;
    if (level == FUSE_LOG_WARNING)
        return LOG_LEVEL_WARNING;
    return level <= FUSE_LOG_INFO ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG;
}

/* What libfuse has written of a line so far, per thread: it writes some
 * lines in pieces (fuse_session_new()'s "unknown option(s)" takes three
 * calls) and ends each line with a newline. */
static _Thread_local char log_libfuse_line[LOG_LINE_MAX];
static _Thread_local size_t log_libfuse_length;

/* fuse_log_func_t: gathers libfuse's text into lines and logs each whole
 * line once, at the level of the piece that ends it. */
static void log_from_libfuse(enum fuse_log_level fuse_level, const char *fmt, va_list ap)
{
    enum log_level level = log_level_of_libfuse(fuse_level);
    char text[LOG_LINE_MAX];

    if (!log_enabled(level) && level > LOG_LEVEL_WARNING)
        return;
    vsnprintf(text, sizeof(text), fmt, ap);
    for (const char *p = text; *p;) {
        size_t n = strcspn(p, "\n");
        size_t room = sizeof(log_libfuse_line) - 1 - log_libfuse_length;
        size_t take = n < room ? n : room;

        memcpy(log_libfuse_line + log_libfuse_length, p, take);
        log_libfuse_length += take;
        log_libfuse_line[log_libfuse_length] = '\0';
        p += n;
        if (*p == '\n') {
            if (log_libfuse_length)
                log_message(level, "%s", log_libfuse_line);
            log_libfuse_length = 0;
            p++;
        }
    }
}

void log_take_libfuse_messages(void)
{
    fuse_set_log_func(log_from_libfuse);
}
