/*
 * log — the one way batchfs reports what happened.
 *
 * Lines go to stderr (foreground) or syslog (daemonized). Every message
 * passes through redaction: secrets registered with log_add_secret() are
 * replaced by "[redacted]" wherever they appear, so a key can never reach a
 * log even if it slips into a URL or an error text.
 * Thread-safe: each line is written with one call.
 */
#ifndef BATCHFS_LOG_H
#define BATCHFS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARNING = 1,
    LOG_LEVEL_INFO = 2,
    LOG_LEVEL_DEBUG = 3,
};

/* Sets the threshold and the destination. Call before threads start. */
void log_setup(enum log_level threshold, bool use_syslog);

/* True when messages of `level` are written (to skip costly formatting). */
bool log_enabled(enum log_level level);

/* Registers a string never to be written (copied; at most 4 secrets). Call
 * before threads start. Strings shorter than 4 bytes are ignored. */
void log_add_secret(const char *secret);

/* The last warning or error logged (even below the threshold), redacted,
 * and when. False when there was none. Thread-safe. */
bool log_last_problem(char *out, size_t len, time_t *when);

/*
 * Sends libfuse's own messages (its option errors, -d's request trace)
 * through log_message(), so that they are redacted, follow the threshold
 * and go to syslog when daemonized: libfuse's error, critical, alert and
 * emergency are errors, warning a warning, notice and info info, debug
 * debug. Call once, before threads start.
 */
void log_take_libfuse_messages(void);

/*
 * Holds back the last warning or error this thread logs from now on (a
 * held line is written when a later one takes its place) until
 * log_release: for a caller about to say in one line what that failure led
 * to, so that one failure makes one line. True when this call started
 * holding; false when the thread holds already (the caller then must not
 * release).
 */
bool log_hold(void);

/*
 * Stops holding. True when a line was held: with `out`, it is copied there
 * (`size` bytes, cut to fit) and dropped, for the caller's own line to say
 * it; without, it is written now. False when none was.
 */
bool log_release(char *out, size_t size);

void log_message(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_message(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning(...) log_message(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_info(...) log_message(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_message(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
