/*
 * apikey — loading and checking the API key (see include/batchfs/apikey.h).
 *
 * For: the one definition of a valid key, applied alike to the environment
 * and to a key file, and the checks on a key file (what it is, who owns it,
 * who else may read it). Not for: sending the key (http.c) or keeping it
 * out of logs (log.c); nothing here logs.
 */
#include "batchfs/apikey.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool apikey_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* What a byte that cannot be in a key is, for a refusal that must not
 * show the byte itself. */
static const char *apikey_byte_kind(unsigned char c)
{
    if (c == '\0')
        return "a NUL byte";
    if (c == '\n' || c == '\r')
        return "a line break";
    if (c == ' ')
        return "a space";
    if (c >= 0x80)
        return "a byte that is not ASCII";
    return "a control character";
}

int apikey_parse(const char *text, size_t len, const char *source, char **key, char *err,
                 size_t errlen)
{
    const char *start = text, *end = text + len;
    size_t n;

    *key = NULL;
    while (start < end && apikey_is_space(*start))
        start++;
    while (end > start && apikey_is_space(end[-1]))
        end--;
    n = (size_t)(end - start);
    if (n == 0) {
        snprintf(err, errlen, "%s: the API key is empty", source);
        return -EINVAL;
    }
    if (n > APIKEY_MAX) {
        snprintf(err, errlen, "%s: the API key is %zu bytes long; a key is at most %d",
                 source, n, APIKEY_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)start[i];

        /* Anything else would break the header line or be mangled in it. */
        if (c <= 0x20 || c >= 0x7f) {
            snprintf(err, errlen,
                     "%s: the API key holds %s at byte %zu of %zu; a key is printable "
                     "ASCII without spaces",
                     source, apikey_byte_kind(c), i + 1, n);
            return -EINVAL;
        }
    }
    *key = malloc(n + 1);
    if (!*key)
        return -ENOMEM;
    memcpy(*key, start, n);
    (*key)[n] = '\0';
    return 0;
}

static const char *apikey_file_kind(mode_t mode)
{
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISFIFO(mode))
        return "a named pipe";
    if (S_ISSOCK(mode))
        return "a socket";
    if (S_ISCHR(mode) || S_ISBLK(mode))
        return "a device";
    return "a special file";
}

/*
 * Why a key file that cannot be opened was refused, in words that say what
 * is wrong with it. `is_link` tells whether the path itself is a symbolic
 * link (its target is what was opened).
 */
static void apikey_open_error(const char *path, bool is_link, int error, char *err,
                              size_t errlen)
{
    switch (error) {
    case ENOENT:
        snprintf(err, errlen,
                 is_link
                     ? "api_key_file %s: a symbolic link to a file that does not exist"
                     : "api_key_file %s: no such file",
                 path);
        break;
    case ELOOP:
        snprintf(err, errlen,
                 "api_key_file %s: too many levels of symbolic links (a link that leads "
                 "back to itself?)",
                 path);
        break;
    case EACCES:
        snprintf(err, errlen, "api_key_file %s: you may not read it (%s)", path,
                 strerror(error));
        break;
    default:
        snprintf(err, errlen, "api_key_file %s: %s", path, strerror(error));
        break;
    }
}

/* Checks what was opened: a regular file of ours that no one else may use. */
static int apikey_check_file(const char *path, bool is_link, const struct stat *st,
                             char *err, size_t errlen)
{
    const char *subject = is_link ? "a symbolic link to a file that is" : "the file is";

    if (!S_ISREG(st->st_mode)) {
        snprintf(err, errlen, "api_key_file %s: %s %s, not a regular file", path,
                 is_link ? "a symbolic link to" : "it is", apikey_file_kind(st->st_mode));
        return -EINVAL;
    }
    if (st->st_uid != geteuid()) {
        snprintf(err, errlen, "api_key_file %s: %s owned by uid %u, not by you (uid %u)",
                 path, subject, (unsigned)st->st_uid, (unsigned)geteuid());
        return -EACCES;
    }
    if (st->st_mode & 077) {
        snprintf(err, errlen,
                 "api_key_file %s: %s open to others (mode %04o); no one but its owner "
                 "may have access (chmod 600)",
                 path, subject, (unsigned)(st->st_mode & 07777));
        return -EACCES;
    }
    if (st->st_size > APIKEY_FILE_MAX) {
        snprintf(err, errlen,
                 "api_key_file %s: %s %lld bytes long, far too long to hold a key "
                 "(at most %d bytes)",
                 path, subject, (long long)st->st_size, APIKEY_MAX);
        return -EFBIG;
    }
    return 0;
}

int apikey_read_file(const char *path, char **key, char *err, size_t errlen)
{
    char source[64 + 1024];
    struct stat st;
    char *data = NULL;
    size_t len = 0;
    bool is_link;
    int fd = -1, rc;

    *key = NULL;
    is_link = lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
    /* The type is checked before opening, so that a named pipe cannot
     * block the mount; the checks that count are on what was opened.
     * O_NONBLOCK covers a pipe put there in between. */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        rc = apikey_check_file(path, is_link, &st, err, errlen);
        goto out;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        rc = -errno;
        apikey_open_error(path, is_link, errno, err, errlen);
        goto out;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        snprintf(err, errlen, "api_key_file %s: %s", path, strerror(errno));
        goto out;
    }
    rc = apikey_check_file(path, is_link, &st, err, errlen);
    if (rc)
        goto out;
    rc = -ENOMEM;
    data = malloc(APIKEY_FILE_MAX + 1);
    if (!data)
        goto out;
    /* Read to the end: the file may have grown since fstat. */
    for (;;) {
        ssize_t n = read(fd, data + len, APIKEY_FILE_MAX + 1 - len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            snprintf(err, errlen, "api_key_file %s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > APIKEY_FILE_MAX) {
            rc = -EFBIG;
            snprintf(err, errlen,
                     "api_key_file %s: more than %d bytes, far too long to hold a key "
                     "(at most %d bytes)",
                     path, APIKEY_FILE_MAX, APIKEY_MAX);
            goto out;
        }
    }
    snprintf(source, sizeof(source), "api_key_file %s", path);
    rc = apikey_parse(data, len, source, key, err, errlen);
out:
    if (data) {
        explicit_bzero(data, APIKEY_FILE_MAX + 1);
        free(data);
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

int apikey_load(const char *path, char **key, char *err, size_t errlen)
{
    static const char *const names[] = {"LLAMA_CLOUD_API_KEY", "LLAMA_PARSE_API_KEY"};

    *key = NULL;
    if (path)
        return apikey_read_file(path, key, err, errlen);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *value = getenv(names[i]);

        if (value && *value)
            return apikey_parse(value, strlen(value), names[i], key, err, errlen);
    }
    snprintf(err, errlen,
             "no API key: set LLAMA_CLOUD_API_KEY or use -o api_key_file=PATH");
    return -ENOENT;
}
