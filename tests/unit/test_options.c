/*
 * Unit tests of the options table, --help and command-line parsing
 * (fs/options.c).
 */
#define FUSE_USE_VERSION 312
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "batchfs/log.h"
#include "batchfs/options.h"

/* Parses argv (NULL-terminated) into opts; returns options_parse's result
 * and leaves what libfuse would still see in *rest. */
static int parse(const char **argv, struct options *opts, char *err, size_t errlen,
                 struct fuse_args *rest)
{
    int argc = 0;

    while (argv[argc])
        argc++;
    *rest = (struct fuse_args)FUSE_ARGS_INIT(0, NULL);
    for (int i = 0; i < argc; i++)
        assert_int_equal(fuse_opt_add_arg(rest, argv[i]), 0);
    return options_parse(rest, opts, err, errlen);
}

static void test_defaults(void **state)
{
    const char *argv[] = {"batchfs", "/mnt", NULL};
    struct fuse_args rest;
    struct options o;
    char err[256];

    (void)state;
    unsetenv("LLAMA_CLOUD_BASE_URL");
    assert_int_equal(parse(argv, &o, err, sizeof(err), &rest), 0);
    assert_string_equal(o.base_url, OPTIONS_DEFAULT_BASE_URL);
    assert_null(o.api_key_file);
    assert_null(o.project_id);
    assert_null(o.organization_id);
    assert_true(o.cache_ttl == 30);
    assert_true(o.terminal_ttl == 600);
    assert_true(o.max_stale == 3600);
    assert_true(o.stale_if_error);
    assert_true(o.xattr);
    assert_int_equal(o.retries, 4);
    assert_int_equal(o.timeout, 30);
    assert_int_equal(o.connect_timeout, 10);
    assert_int_equal(o.max_connections, 8);
    assert_int_equal(o.max_response, (size_t)256 << 20);
    assert_int_equal(o.cache_size, (size_t)1 << 30);
    assert_int_equal(o.log_level, LOG_LEVEL_WARNING);
    assert_false(o.allow_other);
    assert_int_equal(rest.argc, 2);
    options_free(&o);
    fuse_opt_free_args(&rest);
}

static const struct options_row *row_named(const char *name)
{
    for (size_t i = 0; i < options_table_length; i++)
        if (!strcmp(options_table[i].name, name))
            return &options_table[i];
    fail_msg("no row for %s", name);
    return NULL;
}

static void test_table_rows_well_formed(void **state)
{
    (void)state;
    assert_true(options_table_length >= 16);
    for (size_t i = 0; i < options_table_length; i++) {
        const struct options_row *row = &options_table[i];
        char match[64];

        snprintf(match, sizeof(match), "%s=", row->name);
        assert_string_equal(row->match, match);
        assert_true(row->placeholder[0] && row->meaning[0]);
        assert_null(strchr(row->meaning, '\n'));
        assert_true(row->offset < sizeof(struct options));
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(options_table[j].name, row->name);
    }
}

static void test_default_text(void **state)
{
    char text[128];

    (void)state;
    options_default_text(row_named("cache_ttl"), text, sizeof(text));
    assert_string_equal(text, "30");
    options_default_text(row_named("max_response"), text, sizeof(text));
    assert_string_equal(text, "256M");
    options_default_text(row_named("log_level"), text, sizeof(text));
    assert_string_equal(text, "warning");
    options_default_text(row_named("project_id"), text, sizeof(text));
    assert_string_equal(text, "none");
    options_default_text(row_named("base_url"), text, sizeof(text));
    assert_string_equal(text, "$LLAMA_CLOUD_BASE_URL, else " OPTIONS_DEFAULT_BASE_URL);
    options_default_text(row_named("api_key_file"), text, sizeof(text));
    assert_string_equal(text, "$LLAMA_CLOUD_API_KEY, else $LLAMA_PARSE_API_KEY");
    /* Cut to the buffer, and says how long it would have been. */
    assert_int_equal(options_default_text(row_named("base_url"), text, 4),
                     strlen("$LLAMA_CLOUD_BASE_URL, else " OPTIONS_DEFAULT_BASE_URL));
    assert_string_equal(text, "$LL");
}

/* The size of the field a kind of option converts to (not a text). */
static size_t field_size(enum options_kind kind)
{
    switch (kind) {
    case OPTIONS_KIND_SECONDS:
        return sizeof(double);
    case OPTIONS_KIND_SIZE:
        return sizeof(size_t);
    case OPTIONS_KIND_BOOL:
        return sizeof(bool);
    case OPTIONS_KIND_COUNT:
        return sizeof(unsigned);
    default:
        return sizeof(int);
    }
}

/* Every default the table shows is what the parser applies: the options
 * set to their shown defaults parse to the same struct as no options. */
static void test_table_defaults_are_the_parsers(void **state)
{
    const char *none[] = {"batchfs", "/mnt", NULL};
    struct fuse_args rest;
    struct options plain, given;
    char err[256];

    (void)state;
    unsetenv("LLAMA_CLOUD_BASE_URL");
    assert_int_equal(parse(none, &plain, err, sizeof(err), &rest), 0);
    fuse_opt_free_args(&rest);
    for (size_t i = 0; i < options_table_length; i++) {
        const struct options_row *row = &options_table[i];
        const char *argv[] = {"batchfs", "-o", NULL, "/mnt", NULL};
        char opt[256];

        if (!row->value)
            continue;
        snprintf(opt, sizeof(opt), "%s%s", row->match, row->value);
        argv[2] = opt;
        assert_int_equal(parse(argv, &given, err, sizeof(err), &rest), 0);
        if (row->kind == OPTIONS_KIND_URL)
            assert_string_equal(given.base_url, plain.base_url);
        else
            assert_memory_equal((char *)&given + row->offset,
                                (char *)&plain + row->offset, field_size(row->kind));
        options_free(&given);
        fuse_opt_free_args(&rest);
    }
    options_free(&plain);
}

/* Collapses every run of white space to one space, so that text wrapped
 * over lines can be searched as one line. */
static void squeeze_spaces(char *text)
{
    char *to = text;

    for (const char *p = text; *p; p++) {
        if (isspace((unsigned char)*p)) {
            if (to > text && to[-1] != ' ')
                *to++ = ' ';
        } else {
            *to++ = *p;
        }
    }
    *to = '\0';
}

static void test_help_written_from_the_table(void **state)
{
    char *help = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&help, &size);

    (void)state;
    assert_non_null(out);
    assert_int_equal(options_write_help(out), 0);
    assert_int_equal(fclose(out), 0);
    for (const char *line = help; *line;) {
        size_t len = strcspn(line, "\n");

        assert_true(len < 80);
        line += len + (line[len] == '\n');
    }
    squeeze_spaces(help);
    for (size_t i = 0; i < options_table_length; i++) {
        const struct options_row *row = &options_table[i];
        char shown[128], expect[512];

        snprintf(expect, sizeof(expect), " -o %s=%s %s", row->name, row->placeholder,
                 row->meaning);
        assert_non_null(strstr(help, expect));
        if (!row->value && !row->env && !row->shown)
            continue;
        options_default_text(row, shown, sizeof(shown));
        snprintf(expect, sizeof(expect), "%s (default %s)", row->meaning, shown);
        assert_non_null(strstr(help, expect));
    }
    free(help);
}

static void test_base_url_from_environment(void **state)
{
    const char *argv[] = {"batchfs", "/mnt", NULL};
    struct fuse_args rest;
    struct options o;
    char err[256];

    (void)state;
    setenv("LLAMA_CLOUD_BASE_URL", "http://127.0.0.1:8080", 1);
    assert_int_equal(parse(argv, &o, err, sizeof(err), &rest), 0);
    assert_string_equal(o.base_url, "http://127.0.0.1:8080");
    options_free(&o);
    fuse_opt_free_args(&rest);

    /* A bad address from the environment says where it came from. */
    setenv("LLAMA_CLOUD_BASE_URL", "ftp://example.com", 1);
    assert_int_equal(parse(argv, &o, err, sizeof(err), &rest), -EINVAL);
    assert_non_null(strstr(err, "base_url"));
    assert_non_null(strstr(err, "$LLAMA_CLOUD_BASE_URL"));
    options_free(&o);
    fuse_opt_free_args(&rest);
    unsetenv("LLAMA_CLOUD_BASE_URL");
}

static void test_own_options_removed_fuse_options_kept(void **state)
{
    const char *argv[] = {"batchfs",
                          "-o",
                          "base_url=http://h:1,cache_ttl=5,allow_other",
                          "-o",
                          "project_id=p-1,organization_id=o-2,cache_size=64M",
                          "-f",
                          "/mnt",
                          NULL};
    struct fuse_args rest;
    struct options o;
    char err[256];
    bool allow_other = false;

    (void)state;
    assert_int_equal(parse(argv, &o, err, sizeof(err), &rest), 0);
    assert_string_equal(o.base_url, "http://h:1");
    assert_true(o.cache_ttl == 5);
    assert_string_equal(o.project_id, "p-1");
    assert_string_equal(o.organization_id, "o-2");
    assert_int_equal(o.cache_size, (size_t)64 << 20);
    for (int i = 0; i < rest.argc; i++) {
        assert_null(strstr(rest.argv[i], "base_url"));
        assert_null(strstr(rest.argv[i], "cache_ttl"));
        if (strstr(rest.argv[i], "allow_other"))
            allow_other = true;
    }
    assert_true(allow_other);
    options_free(&o);
    fuse_opt_free_args(&rest);
}

static void expect_refused(const char *opt, const char *mention)
{
    const char *argv[] = {"batchfs", "-o", opt, "/mnt", NULL};
    struct fuse_args rest;
    struct options o;
    char err[256];

    assert_int_equal(parse(argv, &o, err, sizeof(err), &rest), -EINVAL);
    assert_non_null(strstr(err, mention));
    options_free(&o);
    fuse_opt_free_args(&rest);
}

static void test_bad_values_refused(void **state)
{
    (void)state;
    expect_refused("cache_ttl=abc", "cache_ttl");
    expect_refused("cache_ttl=-1", "cache_ttl");
    expect_refused("retries=1000", "retries");
    expect_refused("timeout=0", "timeout");
    expect_refused("max_connections=0", "max_connections");
    expect_refused("cache_size=12Q", "cache_size");
    expect_refused("stale_if_error=maybe", "stale_if_error");
    expect_refused("xattr=yes please", "xattr");
    expect_refused("log_level=loud", "log_level");
    expect_refused("base_url=ftp://example.com", "base_url");
}

static void test_key_on_command_line_refused(void **state)
{
    const char *argv[] = {"batchfs", "-o", "api_key=llx-SECRET-VALUE", "/mnt", NULL};
    struct fuse_args rest;
    struct options o;
    char err[256];

    (void)state;
    assert_int_equal(parse(argv, &o, err, sizeof(err), &rest), -EINVAL);
    assert_null(strstr(err, "llx-SECRET-VALUE"));
    assert_non_null(strstr(err, "api_key"));
    options_free(&o);
    fuse_opt_free_args(&rest);

    argv[2] = "ro,api_key=llx-SECRET-VALUE,cache_ttl=5";
    assert_int_equal(parse(argv, &o, err, sizeof(err), &rest), -EINVAL);
    assert_null(strstr(err, "llx-SECRET-VALUE"));
    assert_non_null(strstr(err, "api_key"));
    options_free(&o);
    fuse_opt_free_args(&rest);
}

/* Where `arg` is in what libfuse is left, or -1. */
static int find_arg(const struct fuse_args *rest, const char *arg)
{
    for (int i = 0; i < rest->argc; i++)
        if (!strcmp(rest->argv[i], arg))
            return i;
    return -1;
}

/* Parses argv as main() does: options_parse(), then libfuse's
 * fuse_parse_cmdline() on what is left. Both must succeed. */
static void parse_as_main(const char **argv, struct options *opts,
                          struct fuse_cmdline_opts *cmd)
{
    struct fuse_args rest;
    char err[256];

    assert_int_equal(parse(argv, opts, err, sizeof(err), &rest), 0);
    memset(cmd, 0, sizeof(*cmd));
    assert_int_equal(fuse_parse_cmdline(&rest, cmd), 0);
    fuse_opt_free_args(&rest);
}

/* mount.fuse3 runs "batchfs SOURCE MOUNTPOINT -o OPTIONS": the source is
 * dropped, and libfuse gets the mount point. */
static void test_mount_source_and_mount_point(void **state)
{
    const char *argv[] = {"batchfs", "llamacloud", "/tmp", "-o", "rw,cache_ttl=5,_netdev",
                          "-f",      NULL};
    struct fuse_cmdline_opts cmd;
    struct options o;

    (void)state;
    parse_as_main(argv, &o, &cmd);
    assert_true(o.cache_ttl == 5);
    assert_string_equal(cmd.mountpoint, "/tmp");
    assert_true(cmd.foreground);
    free(cmd.mountpoint);
    options_free(&o);
}

static void test_one_plain_argument_is_the_mount_point(void **state)
{
    const char *argv[] = {"batchfs", "-o", "retries=2", "/tmp", "-s", NULL};
    struct fuse_cmdline_opts cmd;
    struct options o;

    (void)state;
    parse_as_main(argv, &o, &cmd);
    assert_int_equal(o.retries, 2);
    assert_string_equal(cmd.mountpoint, "/tmp");
    assert_true(cmd.singlethread);
    free(cmd.mountpoint);
    options_free(&o);
}

static void test_third_plain_argument_refused(void **state)
{
    const char *argv[] = {"batchfs", "llamacloud", "/mnt", "stray", NULL};
    struct fuse_args rest;
    struct options o;
    char err[256];

    (void)state;
    assert_int_equal(parse(argv, &o, err, sizeof(err), &rest), -EINVAL);
    assert_non_null(strstr(err, "'stray'"));
    options_free(&o);
    fuse_opt_free_args(&rest);
}

/* After "--" a mount point may start with '-'; it must reach libfuse as a
 * mount point, not as an option. */
static void test_mount_point_after_double_dash(void **state)
{
    const char *argv[] = {"batchfs", "-o", "retries=1", "--", "-odd", NULL};
    struct fuse_args rest;
    struct options o;
    char err[256];
    int at;

    (void)state;
    assert_int_equal(parse(argv, &o, err, sizeof(err), &rest), 0);
    at = find_arg(&rest, "-odd");
    assert_int_equal(at, rest.argc - 1);
    assert_string_equal(rest.argv[at - 1], "--");
    options_free(&o);
    fuse_opt_free_args(&rest);
}

static void expect_allow_other(const char *opt, bool expected)
{
    const char *argv[] = {"batchfs", opt, "/mnt", NULL};
    struct fuse_args rest;
    struct options o;
    char err[256];

    assert_int_equal(parse(argv, &o, err, sizeof(err), &rest), 0);
    if (o.allow_other != expected)
        fail_msg("%s: allow_other %d", opt, o.allow_other);
    options_free(&o);
    fuse_opt_free_args(&rest);
}

/* allow_other is found as an option, wherever it is written, and left for
 * libfuse; a value that merely contains the word is not it. */
static void test_allow_other_detected(void **state)
{
    (void)state;
    expect_allow_other("-oallow_other", true);
    expect_allow_other("-oro,allow_other,cache_ttl=3", true);
    expect_allow_other("-ofsname=allow_other", false);
    expect_allow_other("-oproject_id=allow_other", false);
    expect_allow_other("-oallow_root", false);
    expect_allow_other("-f", false);
}

static void test_last_value_wins(void **state)
{
    const char *argv[] = {"batchfs", "-o", "cache_ttl=5", "-ocache_ttl=7", "/mnt", NULL};
    struct fuse_args rest;
    struct options o;
    char err[256];

    (void)state;
    assert_int_equal(parse(argv, &o, err, sizeof(err), &rest), 0);
    assert_true(o.cache_ttl == 7);
    options_free(&o);
    fuse_opt_free_args(&rest);
}

static void test_parse_size(void **state)
{
    size_t v;

    (void)state;
    assert_int_equal(options_parse_size("512", &v), 0);
    assert_int_equal(v, 512);
    assert_int_equal(options_parse_size("64k", &v), 0);
    assert_int_equal(v, 64 * 1024);
    assert_int_equal(options_parse_size("10M", &v), 0);
    assert_int_equal(v, (size_t)10 << 20);
    assert_int_equal(options_parse_size("2G", &v), 0);
    assert_int_equal(v, (size_t)2 << 30);
    assert_int_equal(options_parse_size("", &v), -EINVAL);
    assert_int_equal(options_parse_size("M", &v), -EINVAL);
    assert_int_equal(options_parse_size("-5", &v), -EINVAL);
    assert_int_equal(options_parse_size("99999999999999999999G", &v), -EINVAL);
}

/* The CA bundle: -o ca_file first, then SSL_CERT_FILE (an empty one is
 * none), else none. */
static void test_ca_file(void **state)
{
    const char *plain[] = {"batchfs", "/mnt", NULL};
    const char *named[] = {"batchfs", "-o", "ca_file=/etc/named.pem", "/mnt", NULL};
    const struct {
        const char **argv;
        const char *env, *expected;
    } cases[] = {
        {plain, NULL, NULL},
        {plain, "", NULL},
        {plain, "/etc/env.pem", "/etc/env.pem"},
        {named, "/etc/env.pem", "/etc/named.pem"},
        {named, NULL, "/etc/named.pem"},
    };
    struct fuse_args rest;
    struct options o;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (cases[i].env)
            setenv("SSL_CERT_FILE", cases[i].env, 1);
        else
            unsetenv("SSL_CERT_FILE");
        assert_int_equal(parse(cases[i].argv, &o, err, sizeof(err), &rest), 0);
        if (cases[i].expected)
            assert_string_equal(o.ca_file, cases[i].expected);
        else
            assert_null(o.ca_file);
        options_free(&o);
        fuse_opt_free_args(&rest);
    }
    unsetenv("SSL_CERT_FILE");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_table_rows_well_formed),
        cmocka_unit_test(test_default_text),
        cmocka_unit_test(test_table_defaults_are_the_parsers),
        cmocka_unit_test(test_help_written_from_the_table),
        cmocka_unit_test(test_base_url_from_environment),
        cmocka_unit_test(test_own_options_removed_fuse_options_kept),
        cmocka_unit_test(test_bad_values_refused),
        cmocka_unit_test(test_key_on_command_line_refused),
        cmocka_unit_test(test_mount_source_and_mount_point),
        cmocka_unit_test(test_one_plain_argument_is_the_mount_point),
        cmocka_unit_test(test_third_plain_argument_refused),
        cmocka_unit_test(test_mount_point_after_double_dash),
        cmocka_unit_test(test_allow_other_detected),
        cmocka_unit_test(test_last_value_wins),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_ca_file),
    };

    log_setup(LOG_LEVEL_ERROR, false);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
