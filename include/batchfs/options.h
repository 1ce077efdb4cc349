/*
 * options — the batchfs-specific command line, parsed and checked.
 *
 * Takes the "-o name=value" options that are batchfs's own out of the
 * argument list (leaving FUSE's own for libfuse), converts and range-checks
 * them, fills in defaults from the environment, and loads the API key.
 * No global state; nothing here touches the network or mounts anything.
 */
#ifndef BATCHFS_OPTIONS_H
#define BATCHFS_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

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
    bool xattr;            /* serve the user.llamacloud.* attributes */
    unsigned retries;
    unsigned timeout;          /* seconds without progress before an attempt fails */
    unsigned connect_timeout;  /* seconds */
    unsigned max_connections;  /* requests in flight at once */
    size_t max_response;       /* bytes */
    size_t cache_size;         /* bytes of cached listings */
    int log_level;             /* enum log_level */
};

/* The help text for batchfs's own options (the man page repeats it). */
extern const char options_help[];

/*
 * Removes batchfs's options from `args`, fills `out` (defaults first, from
 * LLAMA_CLOUD_BASE_URL where set). Returns 0, or -EINVAL with a one-line
 * message in err (e.g. "cache_ttl: expected seconds, got 'abc'"), or
 * -ENOMEM. `out` must be released with options_free() in every case.
 */
int options_parse(struct fuse_args *args, struct options *out, char *err, size_t errlen);

/*
 * Loads the API key: from opts->api_key_file when set (the file must be a
 * regular file that no one but its owner can read or write), else from
 * LLAMA_CLOUD_API_KEY, else LLAMA_PARSE_API_KEY. Surrounding white space is
 * trimmed; a key that is empty or holds control characters is refused.
 * Returns 0 and a malloc'd *key, or -ENOENT (no key anywhere), -EACCES (file
 * not private), -EINVAL (bad key), or the error of reading the file; err
 * then says why, without ever quoting the key.
 */
int options_load_key(const struct options *opts, char **key, char *err, size_t errlen);

/* Parses "512", "64k", "10M", "2G" (powers of 1024). 0 or -EINVAL. */
int options_parse_size(const char *text, size_t *out);

void options_free(struct options *opts);

#endif
