/*
 * Unit tests of the logger (fs/log.c): libfuse's own messages go through it,
 * and a line held back is written once.
 */
#include <errno.h>
#include <fuse_log.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "batchfs/log.h"

/* stderr sent to a file while a test logs. */
struct capture {
    FILE *file;
    int saved; /* the real stderr */
};

static void capture_start(struct capture *c)
{
    c->file = tmpfile();
    assert_non_null(c->file);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    fflush(stderr);
    assert_true(dup2(fileno(c->file), STDERR_FILENO) >= 0);
}

/* Puts stderr back; returns what was written to it (malloc'd). */
static char *capture_end(struct capture *c)
{
    char *out = calloc(1, 4096);
    size_t n;

    assert_non_null(out);
    fflush(stderr);
    assert_true(dup2(c->saved, STDERR_FILENO) >= 0);
    close(c->saved);
    rewind(c->file);
    n = fread(out, 1, 4095, c->file);
    out[n] = '\0';
    fclose(c->file);
    return out;
}

/* What fuse_log(level, text) writes to stderr (malloc'd). */
static char *stderr_of_fuse_log(enum fuse_log_level level, const char *text)
{
    struct capture c;

    capture_start(&c);
    fuse_log(level, "%s", text);
    return capture_end(&c);
}

static void test_libfuse_errors_become_log_lines(void **state)
{
    char *out, problem[256];
    time_t when;

    (void)state;
    out = stderr_of_fuse_log(FUSE_LOG_ERR, "fuse: unknown option(s): `-o bogus'\n");
    assert_non_null(strstr(out, "batchfs "));
    assert_non_null(strstr(out, " error: fuse: unknown option(s): `-o bogus'\n"));
    /* One line: the newline libfuse ends it with is not shown as '?'. */
    assert_null(strchr(out, '?'));
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out));
    free(out);
    assert_true(log_last_problem(problem, sizeof(problem), &when));
    assert_string_equal(problem, "fuse: unknown option(s): `-o bogus'");
}

static void test_libfuse_messages_are_redacted(void **state)
{
    char *out;

    (void)state;
    out = stderr_of_fuse_log(FUSE_LOG_WARNING, "fuse: odd value llx-libfuse-secret\n");
    assert_null(strstr(out, "llx-libfuse-secret"));
    assert_non_null(strstr(out, " warning: fuse: odd value [redacted]"));
    free(out);
}

/* Each line of a message is a line of the log, at the mapped level. */
static void test_libfuse_levels_and_lines(void **state)
{
    char *out;

    (void)state;
    out = stderr_of_fuse_log(FUSE_LOG_CRIT, "first\nsecond\n");
    assert_non_null(strstr(out, " error: first\n"));
    assert_non_null(strstr(out, " error: second\n"));
    free(out);
    out = stderr_of_fuse_log(FUSE_LOG_NOTICE, "notice\n");
    assert_non_null(strstr(out, " info: notice\n"));
    free(out);
    /* Below the threshold (info): libfuse's -d trace is not written. */
    out = stderr_of_fuse_log(FUSE_LOG_DEBUG, "unique: 1, opcode: INIT\n");
    assert_string_equal(out, "");
    free(out);
}

/* libfuse writes some lines in pieces; they make one log line. */
static void test_libfuse_line_in_pieces(void **state)
{
    struct capture c;
    char *out;

    (void)state;
    capture_start(&c);
    fuse_log(FUSE_LOG_ERR, "fuse: unknown option(s): `");
    fuse_log(FUSE_LOG_ERR, "%s ", "-o one");
    fuse_log(FUSE_LOG_ERR, "%s'\n", "-o two");
    out = capture_end(&c);
    assert_non_null(strstr(out, " error: fuse: unknown option(s): `-o one -o two'\n"));
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out));
    free(out);
}

/* A held failure line is said once: in the caller's line, or on its own
 * at release; a later one writes the one it replaces. */
static void test_held_line(void **state)
{
    struct capture c;
    char held[64];
    char *out;

    (void)state;
    capture_start(&c);
    assert_true(log_hold());
    assert_false(log_hold()); /* already holding: the first holder releases */
    log_warning("first failure");
    log_info("progress, not held");
    log_error("second failure");
    assert_true(log_release(held, sizeof(held)));
    out = capture_end(&c);
    assert_string_equal(held, "second failure");
    assert_non_null(strstr(out, " warning: first failure\n"));
    assert_non_null(strstr(out, " info: progress, not held\n"));
    assert_null(strstr(out, "second failure"));
    /* Held until the second failure took its place. */
    assert_true(strstr(out, "progress") < strstr(out, "first failure"));
    free(out);

    /* Released without a caller's line: written as it was. */
    capture_start(&c);
    assert_true(log_hold());
    log_warning("GET /x: HTTP 503 after 3 attempts");
    assert_true(log_release(NULL, 0));
    assert_false(log_release(NULL, 0));
    log_warning("not held");
    out = capture_end(&c);
    assert_non_null(strstr(out, " warning: GET /x: HTTP 503 after 3 attempts\n"));
    assert_non_null(strstr(out, " warning: not held\n"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_libfuse_errors_become_log_lines),
        cmocka_unit_test(test_libfuse_messages_are_redacted),
        cmocka_unit_test(test_libfuse_levels_and_lines),
        cmocka_unit_test(test_libfuse_line_in_pieces),
        cmocka_unit_test(test_held_line),
    };

    log_setup(LOG_LEVEL_INFO, false);
    log_add_secret("llx-libfuse-secret");
    log_take_libfuse_messages();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
