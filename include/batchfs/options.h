/*
 * options — the batchfs command line, parsed and checked.
 *
 * options_table is the one list of batchfs's own "-o name=value" options:
 * their names, placeholders, defaults and meanings. --help is written from
 * it, the parser applies its defaults, and a unit test holds the README's
 * options table and the man page to it. Adding an option is one row there
 * and one field in struct options.
 *
 * options_parse() takes batchfs's options, the mount source and the mount
 * point out of the argument list with fuse_opt_parse(), leaving FUSE's own
 * for libfuse, and converts and range-checks every value; the API key itself
 * is loaded by apikey.h. No global state; nothing here touches the network
 * or mounts anything.
 */
#ifndef BATCHFS_OPTIONS_H
#define BATCHFS_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct fuse_args;

#define OPTIONS_DEFAULT_BASE_URL "https://api.cloud.llamaindex.ai"

struct options {
    char *base_url;        /* owned; never NULL after options_parse */
    char *api_key_file;    /* owned; NULL = take the key from the environment */
    char *project_id;      /* owned; NULL = not sent */
    char *organization_id; /* owned; NULL = not sent */
    double cache_ttl;      /* seconds a listing stays fresh */
    double terminal_ttl;   /* seconds for listings of finished jobs and batches */
    double max_stale;      /* seconds past expiry a copy may be served on error */
    bool stale_if_error;
    bool xattr; /* serve the user.llamacloud.* attributes */
    unsigned retries;
    unsigned timeout;         /* seconds without a byte before an attempt fails */
    unsigned connect_timeout; /* seconds */
    unsigned max_connections; /* requests in flight at once */
    size_t max_response;      /* bytes */
    size_t cache_size;        /* bytes of cached listings and finished jobs' pages */
    int log_level;            /* enum log_level */
    char *ca_file;            /* owned; trusted besides the system's CAs; NULL = none */
    bool allow_other;         /* FUSE's allow_other was given (and left for libfuse) */
};

/* How an option's text becomes its field in struct options. */
enum options_kind {
    OPTIONS_KIND_URL,     /* char *: http:// or https://, trailing '/' removed */
    OPTIONS_KIND_PATH,    /* char *: taken as given */
    OPTIONS_KIND_ID,      /* char *: letters, digits, '-' and '_' */
    OPTIONS_KIND_SECONDS, /* double: from min to max */
    OPTIONS_KIND_COUNT,   /* unsigned: a whole number from min to max */
    OPTIONS_KIND_BOOL,    /* bool: 0/1, no/yes, false/true */
    OPTIONS_KIND_SIZE,    /* size_t: options_parse_size(), at least min */
    OPTIONS_KIND_LEVEL,   /* int: error, warning, info or debug */
};

/* One "-o name=PLACEHOLDER" option. */
struct options_row {
    const char *name;        /* "cache_ttl" */
    const char *match;       /* "cache_ttl=", the fuse_opt template */
    const char *placeholder; /* "SECONDS" */
    enum options_kind kind;
    size_t offset;       /* of its field in struct options */
    double min, max;     /* range of SECONDS and COUNT; SIZE has only min */
    const char *env;     /* environment variable read when the option is not
                            given; NULL = none */
    const char *value;   /* the default, converted as if given; NULL = none */
    const char *shown;   /* the default as shown, for one the parser does not
                            apply (api_key_file's); NULL = from env and value */
    const char *meaning; /* one line, for --help */
};

/* The options, in the order --help lists them. */
extern const struct options_row options_table[];
extern const size_t options_table_length;

/*
 * The default of `row` as a user reads it, e.g. "30", "256M",
 * "$LLAMA_CLOUD_BASE_URL, else https://api.cloud.llamaindex.ai", or "none".
 * Written to buf (always terminated); returns the length it needed, as
 * snprintf does.
 */
size_t options_default_text(const struct options_row *row, char *buf, size_t len);

/* Writes the "batchfs options:" part of --help, from options_table.
 * 0, or -EIO when the stream fails. */
int options_write_help(FILE *out);

/*
 * Parses the command line in `args` (argv[0] first), fills `out` (defaults
 * first, from LLAMA_CLOUD_BASE_URL where set) and leaves in `args` what is
 * libfuse's: FUSE's options (allow_other too, also noted in
 * out->allow_other) and, last, the mount point. Of two plain arguments the
 * first is the mount source that mount(8) passes, and is dropped.
 * Returns 0, or -EINVAL with a one-line message in err naming the option or
 * argument (e.g. "cache_ttl: expected seconds ..., got 'abc'"; -o api_key=
 * is refused without quoting it), or -ENOMEM. `out` must be released with
 * options_free() in every case.
 */
int options_parse(struct fuse_args *args, struct options *out, char *err, size_t errlen);

/* Parses "512", "64k", "10M", "2G" (powers of 1024). 0 or -EINVAL. */
int options_parse_size(const char *text, size_t *out);

void options_free(struct options *opts);

#endif
