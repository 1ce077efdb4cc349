/*
 * Unit tests of the logger (fs/log.c): libfuse's own messages go through it.
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

/* Runs fuse_log(level, text) with stderr sent to a file; returns what was
 * written (malloc'd). */
static char *stderr_of_fuse_log(enum fuse_log_level level, const char *text)
{
    FILE *capture = tmpfile();
    int saved = dup(STDERR_FILENO);
    char *out = calloc(1, 4096);
    size_t n;

    assert_non_null(capture);
    assert_non_null(out);
    assert_true(saved >= 0);
    fflush(stderr);
    assert_true(dup2(fileno(capture), STDERR_FILENO) >= 0);
    fuse_log(level, "%s", text);
    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    rewind(capture);
    n = fread(out, 1, 4095, capture);
    out[n] = '\0';
    fclose(capture);
    return out;
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_libfuse_errors_become_log_lines),
        cmocka_unit_test(test_libfuse_messages_are_redacted),
        cmocka_unit_test(test_libfuse_levels_and_lines),
    };

    log_setup(LOG_LEVEL_INFO, false);
    log_add_secret("llx-libfuse-secret");
    log_take_libfuse_messages();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
