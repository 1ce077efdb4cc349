/*
 * Unit tests of API key loading and checking (fs/apikey.c): one rule for a
 * key from the environment and from a file, the checks on a key file and
 * its symbolic links, and refusals that say what is wrong without ever
 * quoting the key.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "batchfs/apikey.h"

/* A key no refusal may quote. */
#define SECRET "llx-Secret0123456789"

struct dir {
    char path[64];
};

static int setup(void **state)
{
    struct dir *d = calloc(1, sizeof(*d));

    assert_non_null(d);
    snprintf(d->path, sizeof(d->path), "/tmp/batchfs-apikey-XXXXXX");
    assert_non_null(mkdtemp(d->path));
    unsetenv("LLAMA_CLOUD_API_KEY");
    unsetenv("LLAMA_PARSE_API_KEY");
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    struct dir *d = *state;
    char command[128];

    snprintf(command, sizeof(command), "rm -rf '%s'", d->path);
    assert_int_equal(system(command), 0);
    free(d);
    unsetenv("LLAMA_CLOUD_API_KEY");
    unsetenv("LLAMA_PARSE_API_KEY");
    return 0;
}

static const char *in_dir(const struct dir *d, const char *name)
{
    static char path[128];

    snprintf(path, sizeof(path), "%s/%s", d->path, name);
    return path;
}

static void write_file(const char *path, const char *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

/* `len` bytes of key characters with SECRET at the front. */
static char *long_key(size_t len)
{
    char *key = malloc(len + 1);

    assert_non_null(key);
    for (size_t i = 0; i < len; i++)
        key[i] = (char)('a' + i % 26);
    memcpy(key, SECRET, len < strlen(SECRET) ? len : strlen(SECRET));
    key[len] = '\0';
    return key;
}

/* Loads and expects a refusal with rc whose message holds `reason`. */
static void refused(const char *file, int rc, const char *reason)
{
    char err[512] = "", *key = (char *)"unchanged";

    assert_int_equal(apikey_load(file, &key, err, sizeof(err)), rc);
    assert_null(key);
    if (!strstr(err, reason))
        fail_msg("'%s' does not say '%s'", err, reason);
    assert_null(strstr(err, SECRET));
    assert_null(strstr(err, "Secret"));
}

static void loaded(const char *file, const char *expect)
{
    char err[512] = "", *key = NULL;

    assert_int_equal(apikey_load(file, &key, err, sizeof(err)), 0);
    assert_non_null(key);
    assert_string_equal(key, expect);
    free(key);
}

static void test_parse_rule(void **state)
{
    static const struct {
        const char *text;
        size_t len;
        const char *reason; /* NULL = accepted as SECRET */
    } cases[] = {
        {SECRET, sizeof(SECRET) - 1, NULL},
        {" \t" SECRET "\r\n\n", sizeof(" \t" SECRET "\r\n\n") - 1, NULL},
        {"", 0, "the API key is empty"},
        {" \n\t ", 4, "the API key is empty"},
        {"llx-Se\ncret", 11, "holds a line break at byte 7 of 11"},
        {"llx-Se\rcret", 11, "holds a line break at byte 7"},
        {"llx-Se cret", 11, "holds a space at byte 7"},
        {"llx-Se\tcret", 11, "holds a control character at byte 7"},
        {"llx-Se\x7f"
         "cret",
         11, "holds a control character at byte 7"},
        {"llx-Se\xc3\xa9"
         "cret",
         12, "holds a byte that is not ASCII at byte 7"},
        {"llx-Se\0cret", 11, "holds a NUL byte at byte 7"},
    };
    char err[256], *key;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc =
            apikey_parse(cases[i].text, cases[i].len, "SOURCE", &key, err, sizeof(err));

        if (!cases[i].reason) {
            assert_int_equal(rc, 0);
            assert_string_equal(key, SECRET);
            free(key);
            continue;
        }
        assert_int_equal(rc, -EINVAL);
        assert_null(key);
        assert_non_null(strstr(err, "SOURCE: "));
        if (!strstr(err, cases[i].reason))
            fail_msg("case %zu: '%s' does not say '%s'", i, err, cases[i].reason);
        assert_null(strstr(err, "cret"));
    }
}

static void test_length_bound(void **state)
{
    char err[256], *key, *text = long_key(APIKEY_MAX + 1);

    (void)state;
    assert_int_equal(apikey_parse(text, APIKEY_MAX, "SOURCE", &key, err, sizeof(err)), 0);
    assert_int_equal(strlen(key), APIKEY_MAX);
    free(key);
    assert_int_equal(apikey_parse(text, APIKEY_MAX + 1, "SOURCE", &key, err, sizeof(err)),
                     -EINVAL);
    assert_null(key);
    assert_non_null(
        strstr(err, "SOURCE: the API key is 4097 bytes long; a key is at most 4096"));
    free(text);
}

static void test_environment(void **state)
{
    char *huge = long_key(100 * 1024);

    (void)state;
    refused(NULL, -ENOENT, "no API key: set LLAMA_CLOUD_API_KEY");
    setenv("LLAMA_PARSE_API_KEY", "llx-parse-key", 1);
    loaded(NULL, "llx-parse-key");
    setenv("LLAMA_CLOUD_API_KEY", "  " SECRET "\n", 1);
    loaded(NULL, SECRET); /* the first variable wins, trimmed */
    setenv("LLAMA_CLOUD_API_KEY", "", 1);
    loaded(NULL, "llx-parse-key"); /* empty counts as unset */

    /* Sent, a 100 KB key made the server answer 431 and the mount fail
     * with "Input/output error". */
    setenv("LLAMA_CLOUD_API_KEY", huge, 1);
    refused(
        NULL, -EINVAL,
        "LLAMA_CLOUD_API_KEY: the API key is 102400 bytes long; a key is at most 4096");
    setenv("LLAMA_CLOUD_API_KEY", SECRET "\nllx-second-line", 1);
    refused(NULL, -EINVAL, "LLAMA_CLOUD_API_KEY: the API key holds a line break");
    setenv("LLAMA_CLOUD_API_KEY", "llx-bad\x01key", 1);
    refused(NULL, -EINVAL, "LLAMA_CLOUD_API_KEY: the API key holds a control character");
    free(huge);
}

static void test_file(void **state)
{
    struct dir *d = *state;
    char path[128];
    char *key_60k = long_key(60 * 1024), *file_70k = long_key(70 * 1024);

    snprintf(path, sizeof(path), "%s", in_dir(d, "key"));
    setenv("LLAMA_CLOUD_API_KEY", "llx-env-key", 1);
    write_file(path, SECRET "\n", strlen(SECRET) + 1, 0600);
    loaded(path, SECRET); /* the file wins over the environment */
    write_file(path, SECRET, strlen(SECRET), 0400);
    loaded(path, SECRET);

    write_file(path, SECRET "\n", strlen(SECRET) + 1, 0644);
    refused(path, -EACCES, "the file is open to others (mode 0644)");
    write_file(path, SECRET "\n", strlen(SECRET) + 1, 0640);
    refused(path, -EACCES, "(mode 0640)");
    write_file(path, SECRET "\n", strlen(SECRET) + 1, 0600);
    if (geteuid() == 0) {
        assert_int_equal(chown(path, 12345, 0), 0);
        refused(path, -EACCES, "the file is owned by uid 12345, not by you (uid 0)");
        assert_int_equal(chown(path, 0, 0), 0);
    }
    write_file(path, "\n  \n", 4, 0600);
    refused(path, -EINVAL, "the API key is empty");
    write_file(path, SECRET "\n" SECRET "\n", 2 * strlen(SECRET) + 2, 0600);
    refused(path, -EINVAL, "the API key holds a line break");
    write_file(path, "llx-a\0b", 7, 0600);
    refused(path, -EINVAL, "holds a NUL byte at byte 6");

    /* The same rule as the environment: refused for its length, not for
     * the size of the file. */
    write_file(path, key_60k, strlen(key_60k), 0600);
    refused(path, -EINVAL, "the API key is 61440 bytes long; a key is at most 4096");
    write_file(path, file_70k, strlen(file_70k), 0600);
    refused(path, -EFBIG, "the file is 71680 bytes long, far too long to hold a key");

    assert_int_equal(unlink(path), 0);
    refused(path, -ENOENT, "no such file");
    refused(d->path, -EINVAL, "it is a directory, not a regular file");
    assert_int_equal(mkfifo(path, 0600), 0);
    refused(path, -EINVAL, "it is a named pipe, not a regular file");
    free(key_60k);
    free(file_70k);
}

/* A symbolic link is followed, as ssh does; what it leads to is checked. */
static void test_symlinks(void **state)
{
    struct dir *d = *state;
    char target[128], link[128], chain[128];

    snprintf(target, sizeof(target), "%s", in_dir(d, "target"));
    snprintf(link, sizeof(link), "%s", in_dir(d, "link"));
    snprintf(chain, sizeof(chain), "%s", in_dir(d, "chain"));
    write_file(target, SECRET "\n", strlen(SECRET) + 1, 0600);
    assert_int_equal(symlink(target, link), 0);
    assert_int_equal(symlink("link", chain), 0);
    /* Refused with "Too many levels of symbolic links" before. */
    loaded(link, SECRET);
    loaded(chain, SECRET);

    assert_int_equal(chmod(target, 0644), 0);
    refused(link, -EACCES,
            "a symbolic link to a file that is open to others (mode 0644)");
    assert_int_equal(unlink(target), 0);
    refused(link, -ENOENT, "a symbolic link to a file that does not exist");
    assert_int_equal(mkdir(target, 0700), 0);
    refused(link, -EINVAL, "a symbolic link to a directory, not a regular file");
    assert_int_equal(rmdir(target), 0);
    assert_int_equal(symlink("link", target), 0); /* link -> target -> link */
    refused(link, -ELOOP, "too many levels of symbolic links");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_rule),
        cmocka_unit_test(test_length_bound),
        cmocka_unit_test_setup_teardown(test_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlinks, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
