/*
 * Unit tests of option parsing and API key loading (fs/options.c).
 */
#define FUSE_USE_VERSION 312
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
    assert_true(o.cache_ttl == 30);
    assert_true(o.terminal_ttl == 600);
    assert_true(o.stale_if_error);
    assert_int_equal(o.retries, 4);
    assert_int_equal(o.max_connections, 8);
    assert_int_equal(o.max_response, (size_t)256 << 20);
    assert_int_equal(o.cache_size, (size_t)1 << 30);
    assert_int_equal(rest.argc, 2);
    options_free(&o);
    fuse_opt_free_args(&rest);
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

static void test_key_from_environment(void **state)
{
    struct options o = {0};
    char err[256], *key = NULL;

    (void)state;
    setenv("LLAMA_CLOUD_API_KEY", "  llx-env-key\n", 1);
    setenv("LLAMA_PARSE_API_KEY", "llx-parse-key", 1);
    assert_int_equal(options_load_key(&o, &key, err, sizeof(err)), 0);
    assert_string_equal(key, "llx-env-key");
    free(key);
    unsetenv("LLAMA_CLOUD_API_KEY");
    assert_int_equal(options_load_key(&o, &key, err, sizeof(err)), 0);
    assert_string_equal(key, "llx-parse-key");
    free(key);
    unsetenv("LLAMA_PARSE_API_KEY");
    assert_int_equal(options_load_key(&o, &key, err, sizeof(err)), -ENOENT);
    assert_null(key);
    assert_non_null(strstr(err, "LLAMA_CLOUD_API_KEY"));
    setenv("LLAMA_CLOUD_API_KEY", "llx-bad\x01key", 1);
    assert_int_equal(options_load_key(&o, &key, err, sizeof(err)), -EINVAL);
    assert_null(strstr(err, "llx-bad"));
    unsetenv("LLAMA_CLOUD_API_KEY");
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void test_key_file(void **state)
{
    char dir[] = "/tmp/batchfs-key-XXXXXX", path[64], err[256], *key = NULL;
    struct options o = {0};

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/key", dir);
    o.api_key_file = path;
    setenv("LLAMA_CLOUD_API_KEY", "llx-env-key", 1);

    write_file(path, "llx-file-key\n", 0600);
    assert_int_equal(options_load_key(&o, &key, err, sizeof(err)), 0);
    assert_string_equal(key, "llx-file-key"); /* the file wins over the environment */
    free(key);

    write_file(path, "llx-file-key\n", 0644);
    assert_int_equal(options_load_key(&o, &key, err, sizeof(err)), -EACCES);
    assert_null(strstr(err, "llx-file-key"));

    write_file(path, "\n  \n", 0600);
    assert_int_equal(options_load_key(&o, &key, err, sizeof(err)), -EINVAL);

    assert_int_equal(unlink(path), 0);
    assert_int_equal(options_load_key(&o, &key, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, path));

    o.api_key_file = dir; /* a directory is not a key file */
    assert_true(options_load_key(&o, &key, err, sizeof(err)) < 0);
    assert_null(key);
    rmdir(dir);
    unsetenv("LLAMA_CLOUD_API_KEY");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_base_url_from_environment),
        cmocka_unit_test(test_own_options_removed_fuse_options_kept),
        cmocka_unit_test(test_bad_values_refused),
        cmocka_unit_test(test_key_on_command_line_refused),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_key_from_environment),
        cmocka_unit_test(test_key_file),
    };

    log_setup(LOG_LEVEL_ERROR, false);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
