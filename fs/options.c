/*
 * options — the batchfs command line (see include/batchfs/options.h).
 *
 * options_table below is the only place an option is described: the
 * parser's fuse_opt templates, its defaults and --help all come from it.
 * fuse_opt_parse() hands each "-o name=value" of ours to options_take() as
 * a string; every value is then converted and range-checked here, so that
 * a typo fails the mount with a message naming the option, before anything
 * is mounted.
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

/*
 * The name, fuse_opt template, kind and field of an option. The _Generic
 * makes the build fail when the field's type is not the one its kind
 * converts to (options_convert() writes through the offset).
 */
#define OPTIONS_FIELD(field, type, kind_)                                                \
    .name = #field, .match = #field "=", .kind = kind_,                                  \
    .offset = offsetof(struct options, field) +                                          \
              0 * sizeof(_Generic(((struct options *)0)->field, type : 0))

#define OPTIONS_URL(field) OPTIONS_FIELD(field, char *, OPTIONS_KIND_URL)
#define OPTIONS_PATH(field) OPTIONS_FIELD(field, char *, OPTIONS_KIND_PATH)
#define OPTIONS_ID(field) OPTIONS_FIELD(field, char *, OPTIONS_KIND_ID)
#define OPTIONS_SECONDS(field) OPTIONS_FIELD(field, double, OPTIONS_KIND_SECONDS)
#define OPTIONS_COUNT(field) OPTIONS_FIELD(field, unsigned, OPTIONS_KIND_COUNT)
#define OPTIONS_BOOL(field) OPTIONS_FIELD(field, bool, OPTIONS_KIND_BOOL)
#define OPTIONS_SIZE(field) OPTIONS_FIELD(field, size_t, OPTIONS_KIND_SIZE)
#define OPTIONS_LEVEL(field) OPTIONS_FIELD(field, int, OPTIONS_KIND_LEVEL)

const struct options_row options_table[] = {
    {OPTIONS_URL(base_url), .placeholder = "URL", .env = "LLAMA_CLOUD_BASE_URL",
     .value = OPTIONS_DEFAULT_BASE_URL, .meaning = "API address (http or https only)"},
    /* The key's own fallbacks are apikey_load()'s, not the parser's. */
    {OPTIONS_PATH(api_key_file), .placeholder = "PATH",
     .shown = "$LLAMA_CLOUD_API_KEY, else $LLAMA_PARSE_API_KEY",
     .meaning = "read the key from a file no one but its owner may read or write (a "
                "symbolic link to such a file is followed)"},
    {OPTIONS_ID(project_id), .placeholder = "ID", .meaning = "sent with every request"},
    {OPTIONS_ID(organization_id), .placeholder = "ID",
     .meaning = "sent with every request"},
    {OPTIONS_SECONDS(cache_ttl), .placeholder = "SECONDS", .max = 86400 * 7,
     .value = "30", .meaning = "how long a listing stays fresh"},
    {OPTIONS_SECONDS(terminal_ttl), .placeholder = "SECONDS", .max = 86400 * 7,
     .value = "600",
     .meaning = "the same for finished (completed, failed, cancelled) jobs and batches"},
    {OPTIONS_BOOL(stale_if_error), .placeholder = "0|1", .value = "1",
     .meaning = "serve an expired copy at once while it is refreshed in the background, "
                "and keep it when the refresh fails; 0: wait for the refresh"},
    {OPTIONS_SECONDS(max_stale), .placeholder = "SECONDS", .max = 86400 * 30,
     .value = "3600", .meaning = "...if it expired at most this long ago"},
    {OPTIONS_BOOL(xattr), .placeholder = "0|1", .value = "1",
     .meaning = "serve the user.llamacloud.* extended attributes; with 0 there are none "
                "and the kernel stops asking for any"},
    {OPTIONS_COUNT(retries), .placeholder = "N", .max = 20, .value = "4",
     .meaning = "retries of a failed request"},
    {OPTIONS_COUNT(timeout), .placeholder = "SECONDS", .min = 1, .max = 3600,
     .value = "30",
     .meaning = "an attempt fails after this long without a byte received, counted once "
                "connected; an answer that keeps coming, however slowly, is waited for"},
    {OPTIONS_COUNT(connect_timeout), .placeholder = "SECONDS", .min = 1, .max = 600,
     .value = "10", .meaning = "time to connect"},
    {OPTIONS_COUNT(max_connections), .placeholder = "N", .min = 1, .max = 64,
     .value = "8", .meaning = "API requests in flight at once, all folders together"},
    {OPTIONS_SIZE(max_response), .placeholder = "SIZE", .min = 4096, .value = "256M",
     .meaning = "largest response body accepted (decoded)"},
    {OPTIONS_SIZE(cache_size), .placeholder = "SIZE", .min = 1 << 20, .value = "1G",
     .meaning = "memory for cached listings and the pages of finished jobs (least "
                "recently used go first)"},
    {OPTIONS_LEVEL(log_level), .placeholder = "LEVEL", .value = "warning",
     .meaning = "error, warning, info or debug; -d sets debug"},
    /* SSL_CERT_FILE as OpenSSL reads it: libcurl's own default bundle
     * would otherwise hide it. */
    {OPTIONS_PATH(ca_file), .placeholder = "PATH", .env = "SSL_CERT_FILE",
     .meaning = "also trust the CA certificates in this PEM bundle; certificates are "
                "always verified"},
};

#define OPTIONS_ROWS (sizeof(options_table) / sizeof(options_table[0]))

const size_t options_table_length = OPTIONS_ROWS;

size_t options_default_text(const struct options_row *row, char *buf, size_t len)
{
    int n;

    if (row->shown)
        n = snprintf(buf, len, "%s", row->shown);
    else if (row->env && row->value)
        n = snprintf(buf, len, "$%s, else %s", row->env, row->value);
    else if (row->env)
        n = snprintf(buf, len, "$%s", row->env);
    else
        n = snprintf(buf, len, "%s", row->value ? row->value : "none");
    return n < 0 ? 0 : (size_t)n;
}

/* --help's layout: meanings start in this column, lines end before the
 * last; the writer shows this byte as a space it never breaks a line at. */
#define OPTIONS_HELP_COLUMN 27
#define OPTIONS_HELP_WIDTH 80
#define OPTIONS_HELP_NO_BREAK '\1'

/* Writes `text` from column `col` on, starting at OPTIONS_HELP_COLUMN (or
 * two spaces on when `col` is past it) and breaking between words. */
static void options_write_wrapped(FILE *out, size_t col, const char *text)
{
    size_t pad = col + 2 > OPTIONS_HELP_COLUMN ? 2 : OPTIONS_HELP_COLUMN - col;

    fprintf(out, "%*s", (int)pad, "");
    col += pad;
    for (const char *p = text; *p;) {
        size_t n = strcspn(p, " ");

        if (p != text && col + 1 + n >= OPTIONS_HELP_WIDTH) {
            fprintf(out, "\n%*s", OPTIONS_HELP_COLUMN, "");
            col = OPTIONS_HELP_COLUMN;
        } else if (p != text) {
            fputc(' ', out);
            col++;
        }
        for (size_t i = 0; i < n; i++)
            fputc(p[i] == OPTIONS_HELP_NO_BREAK ? ' ' : p[i], out);
        col += n;
        p += n;
        p += strspn(p, " ");
    }
    fputc('\n', out);
}

int options_write_help(FILE *out)
{
    fputs("batchfs options:\n", out);
    for (size_t i = 0; i < OPTIONS_ROWS; i++) {
        const struct options_row *row = &options_table[i];
        char shown[256], text[512];
        int col = fprintf(out, "    -o %s=%s", row->name, row->placeholder);

        /* "(default 3600)" stays on one line; a long default may break
         * after a comma ("$LLAMA_CLOUD_BASE_URL, else ..."). */
        options_default_text(row, shown, sizeof(shown));
        for (char *p = shown + 1; *shown && *p; p++)
            if (*p == ' ' && p[-1] != ',')
                *p = OPTIONS_HELP_NO_BREAK;
        if (row->value || row->env || row->shown)
            snprintf(text, sizeof(text), "%s (default%c%s)", row->meaning,
                     OPTIONS_HELP_NO_BREAK, shown);
        else
            snprintf(text, sizeof(text), "%s", row->meaning);
        options_write_wrapped(out, col < 0 ? 0 : (size_t)col, text);
    }
    return ferror(out) ? -EIO : 0;
}

static int options_seconds(const char *name, const char *text, double min, double max,
                           double *out, char *err, size_t errlen)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v) || v < min || v > max) {
        snprintf(err, errlen, "%s: expected seconds from %.0f to %.0f, got '%s'", name,
                 min, max, text);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static int options_unsigned(const char *name, const char *text, unsigned min,
                            unsigned max, unsigned *out, char *err, size_t errlen)
{
    char *end;
    unsigned long v;

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
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
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

    if (options_parse_size(text, &v) || v < min) {
        snprintf(err, errlen,
                 "%s: expected a size of at least %zu bytes such as 64M, got '%s'", name,
                 min, text);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static int options_bool(const char *name, const char *text, bool *out, char *err,
                        size_t errlen)
{
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

static int options_level(const char *name, const char *text, int *out, char *err,
                         size_t errlen)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};

    for (int i = 0; i < 4; i++) {
        if (!strcmp(text, names[i])) {
            *out = i;
            return 0;
        }
    }
    snprintf(err, errlen, "%s: expected error, warning, info or debug, got '%s'", name,
             text);
    return -EINVAL;
}

static int options_url(const char *name, const char *text, char **out, char *err,
                       size_t errlen)
{
    size_t len;

    if (strncmp(text, "http://", 7) && strncmp(text, "https://", 8)) {
        snprintf(err, errlen, "%s: must start with http:// or https://", name);
        return -EINVAL;
    }
    for (const char *p = text; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '?' || *p == '#') {
            snprintf(err, errlen, "%s: must not contain spaces, '?' or '#'", name);
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
static int options_id(const char *name, const char *text, char **out, char *err,
                      size_t errlen)
{
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

static bool options_kind_is_text(enum options_kind kind)
{
    return kind == OPTIONS_KIND_URL || kind == OPTIONS_KIND_PATH ||
           kind == OPTIONS_KIND_ID;
}

/* Converts `text` into the field of `row` in `out`. */
static int options_convert(const struct options_row *row, const char *text,
                           struct options *out, char *err, size_t errlen)
{
    void *field = (char *)out + row->offset;

    switch (row->kind) {
    case OPTIONS_KIND_URL:
        return options_url(row->name, text, field, err, errlen);
    case OPTIONS_KIND_PATH:
        *(char **)field = strdup(text);
        return *(char **)field ? 0 : -ENOMEM;
    case OPTIONS_KIND_ID:
        return options_id(row->name, text, field, err, errlen);
    case OPTIONS_KIND_SECONDS:
        return options_seconds(row->name, text, row->min, row->max, field, err, errlen);
    case OPTIONS_KIND_COUNT:
        return options_unsigned(row->name, text, (unsigned)row->min, (unsigned)row->max,
                                field, err, errlen);
    case OPTIONS_KIND_BOOL:
        return options_bool(row->name, text, field, err, errlen);
    case OPTIONS_KIND_SIZE:
        return options_size(row->name, text, (size_t)row->min, field, err, errlen);
    case OPTIONS_KIND_LEVEL:
        return options_level(row->name, text, field, err, errlen);
    }
    snprintf(err, errlen, "%s: unknown kind of option", row->name);
    return -EINVAL;
}

/* Sets the field of `row` from what the command line gave (`given`, or
 * NULL), else its environment variable, else its default. */
static int options_apply(const struct options_row *row, const char *given,
                         struct options *out, char *err, size_t errlen)
{
    const char *env = row->env && !given ? getenv(row->env) : NULL;
    int rc;

    if (env && *env) {
        rc = options_convert(row, env, out, err, errlen);
        if (rc == -EINVAL) {
            size_t len = strnlen(err, errlen);

            snprintf(err + len, errlen - len, " (from $%s)", row->env);
        }
        return rc;
    }
    if (!given)
        given = row->value;
    return given ? options_convert(row, given, out, err, errlen) : 0;
}

/* fuse_opt keys beyond the table's rows (which are keyed by their index). */
enum {
    OPTIONS_KEY_API_KEY = 1000,
    OPTIONS_KEY_ALLOW_OTHER,
};

/* What options_take() collects while fuse_opt_parse() runs. */
struct options_context {
    char *given[OPTIONS_ROWS]; /* owned; the last value given for each row */
    char *plain[2];            /* owned; [SOURCE] MOUNTPOINT */
    unsigned plain_count;
    bool allow_other;
    int rc; /* why options_take() stopped the parse */
    char *err;
    size_t errlen;
};

/* fuse_opt_proc_t: keeps our options and the plain arguments, refuses a key
 * on the command line, and leaves everything else for libfuse (1). */
static int options_take(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    struct options_context *ctx = data;
    char *copy;

    (void)outargs;
    if (key == OPTIONS_KEY_ALLOW_OTHER) {
        ctx->allow_other = true;
        return 1;
    }
    if (key == OPTIONS_KEY_API_KEY) {
        snprintf(ctx->err, ctx->errlen,
                 "the API key is never taken from the command line (it would show in ps);"
                 " use LLAMA_CLOUD_API_KEY or -o api_key_file=PATH");
        ctx->rc = -EINVAL;
        return -1;
    }
    if (key == FUSE_OPT_KEY_NONOPT && ctx->plain_count == 2) {
        snprintf(
            ctx->err, ctx->errlen,
            "unexpected argument '%s' (usage: batchfs [options] [SOURCE] MOUNTPOINT)",
            arg);
        ctx->rc = -EINVAL;
        return -1;
    }
    if (key != FUSE_OPT_KEY_NONOPT && (key < 0 || (size_t)key >= OPTIONS_ROWS))
        return 1;
    copy =
        strdup(key == FUSE_OPT_KEY_NONOPT ? arg : arg + strlen(options_table[key].match));
    if (!copy) {
        ctx->rc = -ENOMEM;
        return -1;
    }
    if (key == FUSE_OPT_KEY_NONOPT) {
        ctx->plain[ctx->plain_count++] = copy;
    } else {
        /* The last one given wins, as with FUSE's own options. */
        free(ctx->given[key]);
        ctx->given[key] = copy;
    }
    return 0;
}

int options_parse(struct fuse_args *args, struct options *out, char *err, size_t errlen)
{
    struct fuse_opt spec[OPTIONS_ROWS + 3];
    struct options_context ctx = {.err = err, .errlen = errlen};
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (errlen)
        err[0] = '\0';
    for (size_t i = 0; i < OPTIONS_ROWS; i++)
        spec[i] = (struct fuse_opt)FUSE_OPT_KEY(options_table[i].match, (int)i);
    spec[OPTIONS_ROWS] = (struct fuse_opt)FUSE_OPT_KEY("api_key=", OPTIONS_KEY_API_KEY);
    spec[OPTIONS_ROWS + 1] =
        (struct fuse_opt)FUSE_OPT_KEY("allow_other", OPTIONS_KEY_ALLOW_OTHER);
    spec[OPTIONS_ROWS + 2] = (struct fuse_opt)FUSE_OPT_END;

    if (fuse_opt_parse(args, &ctx, spec, options_take) == -1) {
        rc = ctx.rc ? ctx.rc : -EINVAL;
        if (!ctx.rc)
            snprintf(err, errlen, "cannot parse the options");
        goto out;
    }
    for (size_t i = 0; i < OPTIONS_ROWS && !rc; i++)
        rc = options_apply(&options_table[i], ctx.given[i], out, err, errlen);
    out->allow_other = ctx.allow_other;
    /*
     * mount(8) and fstab run "batchfs SOURCE MOUNTPOINT -o OPTIONS" (through
     * mount.fuse3); the source names nothing to batchfs (base_url gives the
     * API). The mount point goes back to libfuse, which resolves it (and
     * knows /dev/fd/N); "--" keeps one that starts with '-' a mount point.
     */
    if (!rc && ctx.plain_count) {
        const char *mountpoint = ctx.plain[ctx.plain_count - 1];

        if ((mountpoint[0] == '-' && fuse_opt_add_arg(args, "--")) ||
            fuse_opt_add_arg(args, mountpoint))
            rc = -ENOMEM;
    }
out:
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    for (size_t i = 0; i < OPTIONS_ROWS; i++)
        free(ctx.given[i]);
    free(ctx.plain[0]);
    free(ctx.plain[1]);
    return rc;
}

void options_free(struct options *opts)
{
    for (size_t i = 0; i < OPTIONS_ROWS; i++) {
        if (options_kind_is_text(options_table[i].kind))
            free(*(char **)((char *)opts + options_table[i].offset));
    }
    memset(opts, 0, sizeof(*opts));
}
