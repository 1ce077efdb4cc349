/*
 * options — batchfs's own command-line options (see include/batchfs/options.h).
 *
 * fuse_opt_parse() pulls our "-o name=value" options out as strings; each is
 * then converted and range-checked here so that a typo fails the mount with
 * a message naming the option, before anything is mounted.
 */
#define FUSE_USE_VERSION 312
#include "batchfs/options.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_opt.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batchfs/log.h"

#define OPTIONS_KEY_MAX 4096

const char options_help[] =
    "batchfs options:\n"
    "    -o base_url=URL        API address (default: $LLAMA_CLOUD_BASE_URL, else\n"
    "                           " OPTIONS_DEFAULT_BASE_URL ")\n"
    "    -o api_key_file=PATH   read the API key from PATH, a file private to its owner\n"
    "                           (default: $LLAMA_CLOUD_API_KEY, else $LLAMA_PARSE_API_KEY)\n"
    "    -o project_id=ID       send project_id=ID with every request\n"
    "    -o organization_id=ID  send organization_id=ID with every request\n"
    "    -o cache_ttl=SECONDS   how long listings stay fresh (default 30)\n"
    "    -o terminal_ttl=SECONDS  the same for finished jobs and batches (default 600)\n"
    "    -o stale_if_error=0|1  serve the last good copy when a refresh fails (default 1)\n"
    "    -o xattr=0|1           user.llamacloud.* extended attributes (default 1; 0 tells\n"
    "                           the kernel there are none, and it stops asking)\n"
    "    -o max_stale=SECONDS   ...if it expired at most this long ago (default 3600)\n"
    "    -o retries=N           retries of a failed request (default 4)\n"
    "    -o timeout=SECONDS     an attempt fails after this long without progress\n"
    "                           (default 30)\n"
    "    -o connect_timeout=SECONDS  time to connect (default 10)\n"
    "    -o max_connections=N   API requests in flight at once (default 8)\n"
    "    -o max_response=SIZE   largest response body accepted (default 256M)\n"
    "    -o cache_size=SIZE     memory for cached listings and finished jobs' pages\n"
    "                           (default 1G)\n"
    "    -o log_level=LEVEL     error, warning, info or debug (default warning;\n"
    "                           -d sets debug)\n";

/* The raw strings fuse_opt_parse() fills in; converted by options_convert(). */
struct options_raw {
    char *base_url, *api_key_file, *project_id, *organization_id;
    char *cache_ttl, *terminal_ttl, *max_stale, *stale_if_error, *xattr;
    char *retries, *timeout, *connect_timeout, *max_connections;
    char *max_response, *cache_size, *log_level, *api_key;
};

#define OPTIONS_STR(name) {#name "=%s", offsetof(struct options_raw, name), 0}

static const struct fuse_opt options_spec[] = {
    OPTIONS_STR(base_url),        OPTIONS_STR(api_key_file),
    OPTIONS_STR(project_id),      OPTIONS_STR(organization_id),
    OPTIONS_STR(cache_ttl),       OPTIONS_STR(terminal_ttl),
    OPTIONS_STR(max_stale),       OPTIONS_STR(stale_if_error),
    OPTIONS_STR(xattr),
    OPTIONS_STR(retries),         OPTIONS_STR(timeout),
    OPTIONS_STR(connect_timeout), OPTIONS_STR(max_connections),
    OPTIONS_STR(max_response),    OPTIONS_STR(cache_size),
    OPTIONS_STR(log_level),       OPTIONS_STR(api_key),
    FUSE_OPT_END,
};

static void options_raw_free(struct options_raw *raw)
{
    char **fields[] = {
        &raw->base_url,     &raw->api_key_file,    &raw->project_id,
        &raw->organization_id, &raw->cache_ttl,    &raw->terminal_ttl,
        &raw->max_stale,    &raw->stale_if_error,  &raw->retries, &raw->xattr,
        &raw->timeout,      &raw->connect_timeout, &raw->max_connections,
        &raw->max_response, &raw->cache_size,      &raw->log_level,
        &raw->api_key,
    };

    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        free(*fields[i]);
        *fields[i] = NULL;
    }
}

static int options_seconds(const char *name, const char *text, double max, double *out,
                           char *err, size_t errlen)
{
    char *end;
    double v;

    if (!text)
        return 0;
    errno = 0;
    v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v) || v < 0 || v > max) {
        snprintf(err, errlen, "%s: expected seconds from 0 to %.0f, got '%s'", name, max,
                 text);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static int options_unsigned(const char *name, const char *text, unsigned min, unsigned max,
                            unsigned *out, char *err, size_t errlen)
{
    char *end;
    unsigned long v;

    if (!text)
        return 0;
    errno = 0;
    v = strtoul(text, &end, 10);
    if (errno || end == text || *end || !isdigit((unsigned char)text[0]) || v < min ||
        v > max) {
        snprintf(err, errlen, "%s: expected a whole number from %u to %u, got '%s'", name,
                 min, max, text);
        return -EINVAL;
    }
    *out = (unsigned)v;
    return 0;
}

int options_parse_size(const char *text, size_t *out)
{
    char *end;
    unsigned long long v;
    unsigned shift = 0;

    if (!text || !isdigit((unsigned char)text[0]))
        return -EINVAL;
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno)
        return -EINVAL;
    switch (*end) {
    case '\0':
        break;
    case 'k': case 'K':
        shift = 10;
        break;
    case 'm': case 'M':
        shift = 20;
        break;
    case 'g': case 'G':
        shift = 30;
        break;
    default:
        return -EINVAL;
    }
    if (*end && end[1] != '\0')
        return -EINVAL;
    if (v > (SIZE_MAX >> shift))
        return -EINVAL;
    *out = (size_t)(v << shift);
    return 0;
}

static int options_size(const char *name, const char *text, size_t min, size_t *out,
                        char *err, size_t errlen)
{
    size_t v;

    if (!text)
        return 0;
    if (options_parse_size(text, &v) || v < min) {
        snprintf(err, errlen, "%s: expected a size of at least %zu bytes such as 64M, got '%s'",
                 name, min, text);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static int options_bool(const char *name, const char *text, bool *out, char *err,
                        size_t errlen)
{
    if (!text)
        return 0;
    if (!strcmp(text, "1") || !strcmp(text, "yes") || !strcmp(text, "true")) {
        *out = true;
    } else if (!strcmp(text, "0") || !strcmp(text, "no") || !strcmp(text, "false")) {
        *out = false;
    } else {
        snprintf(err, errlen, "%s: expected 0 or 1, got '%s'", name, text);
        return -EINVAL;
    }
    return 0;
}

static int options_level(const char *text, int *out, char *err, size_t errlen)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};

    if (!text)
        return 0;
    for (int i = 0; i < 4; i++) {
        if (!strcmp(text, names[i])) {
            *out = i;
            return 0;
        }
    }
    snprintf(err, errlen, "log_level: expected error, warning, info or debug, got '%s'",
             text);
    return -EINVAL;
}

static int options_url(const char *text, char **out, char *err, size_t errlen)
{
    size_t len;

    if (strncmp(text, "http://", 7) && strncmp(text, "https://", 8)) {
        snprintf(err, errlen, "base_url: must start with http:// or https://");
        return -EINVAL;
    }
    for (const char *p = text; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '?' || *p == '#') {
            snprintf(err, errlen, "base_url: must not contain spaces, '?' or '#'");
            return -EINVAL;
        }
    }
    *out = strdup(text);
    if (!*out)
        return -ENOMEM;
    len = strlen(*out);
    while (len > 8 && (*out)[len - 1] == '/')
        (*out)[--len] = '\0';
    return 0;
}

/* Ids go into query strings; they are escaped there, but an id with odd
 * characters is surely a mistake worth reporting at mount time. */
static int options_id(const char *name, char *text, char **out, char *err, size_t errlen)
{
    if (!text)
        return 0;
    for (const char *p = text; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_') {
            snprintf(err, errlen, "%s: expected letters, digits, '-' or '_'", name);
            return -EINVAL;
        }
    }
    if (!*text) {
        snprintf(err, errlen, "%s: must not be empty", name);
        return -EINVAL;
    }
    *out = strdup(text);
    return *out ? 0 : -ENOMEM;
}

static int options_convert(const struct options_raw *raw, struct options *out, char *err,
                           size_t errlen)
{
    const char *env_url = getenv("LLAMA_CLOUD_BASE_URL");
    int rc;

    if (raw->api_key) {
        snprintf(err, errlen,
                 "the API key is never taken from the command line (it would show in ps);"
                 " use LLAMA_CLOUD_API_KEY or -o api_key_file=PATH");
        return -EINVAL;
    }
    rc = options_url(raw->base_url   ? raw->base_url
                     : env_url && *env_url ? env_url
                                           : OPTIONS_DEFAULT_BASE_URL,
                     &out->base_url, err, errlen);
    if (!rc && raw->api_key_file) {
        out->api_key_file = strdup(raw->api_key_file);
        if (!out->api_key_file)
            rc = -ENOMEM;
    }
    if (!rc)
        rc = options_id("project_id", raw->project_id, &out->project_id, err, errlen);
    if (!rc)
        rc = options_id("organization_id", raw->organization_id, &out->organization_id,
                        err, errlen);
    if (!rc)
        rc = options_seconds("cache_ttl", raw->cache_ttl, 86400 * 7, &out->cache_ttl, err,
                             errlen);
    if (!rc)
        rc = options_seconds("terminal_ttl", raw->terminal_ttl, 86400 * 7,
                             &out->terminal_ttl, err, errlen);
    if (!rc)
        rc = options_seconds("max_stale", raw->max_stale, 86400 * 30, &out->max_stale, err,
                             errlen);
    if (!rc)
        rc = options_bool("stale_if_error", raw->stale_if_error, &out->stale_if_error, err,
                          errlen);
    if (!rc)
        rc = options_bool("xattr", raw->xattr, &out->xattr, err, errlen);
    if (!rc)
        rc = options_unsigned("retries", raw->retries, 0, 20, &out->retries, err, errlen);
    if (!rc)
        rc = options_unsigned("timeout", raw->timeout, 1, 3600, &out->timeout, err, errlen);
    if (!rc)
        rc = options_unsigned("connect_timeout", raw->connect_timeout, 1, 600,
                              &out->connect_timeout, err, errlen);
    if (!rc)
        rc = options_unsigned("max_connections", raw->max_connections, 1, 64,
                              &out->max_connections, err, errlen);
    if (!rc)
        rc = options_size("max_response", raw->max_response, 4096, &out->max_response, err,
                          errlen);
    if (!rc)
        rc = options_size("cache_size", raw->cache_size, 1 << 20, &out->cache_size, err,
                          errlen);
    if (!rc)
        rc = options_level(raw->log_level, &out->log_level, err, errlen);
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    return rc;
}

int options_parse(struct fuse_args *args, struct options *out, char *err, size_t errlen)
{
    struct options_raw raw;
    int rc;

    memset(&raw, 0, sizeof(raw));
    memset(out, 0, sizeof(*out));
    out->cache_ttl = 30;
    out->terminal_ttl = 600;
    out->max_stale = 3600;
    out->stale_if_error = true;
    out->xattr = true;
    out->retries = 4;
    out->timeout = 30;
    out->connect_timeout = 10;
    out->max_connections = 8;
    out->max_response = (size_t)256 << 20;
    out->cache_size = (size_t)1 << 30;
    out->log_level = LOG_LEVEL_WARNING;
    if (errlen)
        err[0] = '\0';

    if (fuse_opt_parse(args, &raw, options_spec, NULL) == -1) {
        snprintf(err, errlen, "cannot parse the options");
        rc = -EINVAL;
        goto out;
    }
    rc = options_convert(&raw, out, err, errlen);
out:
    options_raw_free(&raw);
    return rc;
}

static int options_trim_key(char *key, char **out, char *err, size_t errlen)
{
    char *start = key, *end;

    while (*start && isspace((unsigned char)*start))
        start++;
    end = start + strlen(start);
    while (end > start && isspace((unsigned char)end[-1]))
        *--end = '\0';
    if (!*start) {
        snprintf(err, errlen, "the API key is empty");
        return -EINVAL;
    }
    for (const char *p = start; *p; p++) {
        /* A newline or other control byte in a key would break the header. */
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            snprintf(err, errlen, "the API key contains a control character");
            return -EINVAL;
        }
    }
    *out = strdup(start);
    return *out ? 0 : -ENOMEM;
}

static int options_read_key_file(const char *path, char **key, char *err, size_t errlen)
{
    char data[OPTIONS_KEY_MAX + 1];
    struct stat st;
    ssize_t n;
    int fd, rc;

    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "api_key_file %s: %s", path, strerror(errno));
        return rc;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        snprintf(err, errlen, "api_key_file %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = -EINVAL;
        snprintf(err, errlen, "api_key_file %s: not a regular file", path);
        goto out;
    }
    if ((st.st_mode & 077) || st.st_uid != geteuid()) {
        rc = -EACCES;
        snprintf(err, errlen,
                 "api_key_file %s: must be owned by you and private (chmod 600)", path);
        goto out;
    }
    n = read(fd, data, OPTIONS_KEY_MAX + 1);
    if (n < 0) {
        rc = -errno;
        snprintf(err, errlen, "api_key_file %s: %s", path, strerror(errno));
        goto out;
    }
    if (n > OPTIONS_KEY_MAX) {
        rc = -EINVAL;
        snprintf(err, errlen, "api_key_file %s: too large for a key", path);
        goto out;
    }
    data[n] = '\0';
    if (memchr(data, '\0', (size_t)n)) {
        rc = -EINVAL;
        snprintf(err, errlen, "api_key_file %s: contains a NUL byte", path);
        goto out;
    }
    rc = options_trim_key(data, key, err, errlen);
out:
    explicit_bzero(data, sizeof(data));
    close(fd);
    return rc;
}

int options_load_key(const struct options *opts, char **key, char *err, size_t errlen)
{
    const char *env;
    char *copy;
    int rc;

    *key = NULL;
    if (opts->api_key_file)
        return options_read_key_file(opts->api_key_file, key, err, errlen);
    env = getenv("LLAMA_CLOUD_API_KEY");
    if (!env || !*env)
        env = getenv("LLAMA_PARSE_API_KEY");
    if (!env || !*env) {
        snprintf(err, errlen,
                 "no API key: set LLAMA_CLOUD_API_KEY or use -o api_key_file=PATH");
        return -ENOENT;
    }
    copy = strdup(env);
    if (!copy)
        return -ENOMEM;
    rc = options_trim_key(copy, key, err, errlen);
    explicit_bzero(copy, strlen(copy));
    free(copy);
    return rc;
}

void options_free(struct options *opts)
{
    free(opts->base_url);
    free(opts->api_key_file);
    free(opts->project_id);
    free(opts->organization_id);
    memset(opts, 0, sizeof(*opts));
}
