/*
 * apikey — the API key: where it comes from and what a valid one is.
 *
 * The key travels as "Authorization: Bearer <key>", so a valid key is 1 to
 * APIKEY_MAX bytes of printable ASCII without spaces (0x21 to 0x7e), once
 * the white space around it (a file's final newline) is trimmed. The same
 * rule holds for a key from the environment and one from a file, and every
 * refusal says what is wrong with the key or the file without quoting any
 * part of the key. No global state, no network; thread-compatible.
 */
#ifndef BATCHFS_APIKEY_H
#define BATCHFS_APIKEY_H

#include <stddef.h>

/* Longest key accepted, in bytes. Real keys are some 50 bytes; a header
 * of tens of kilobytes is refused by servers (HTTP 431) anyway. */
#define APIKEY_MAX 4096

/* Largest key file read: room for a key and any white space around it. */
#define APIKEY_FILE_MAX (64 * 1024)

/*
 * Checks text[0..len) as a key from `source` (named at the start of a
 * refusal, e.g. "LLAMA_CLOUD_API_KEY"). Returns 0 and a malloc'd copy of
 * the trimmed key in *key, -EINVAL with a one-line reason in err (e.g.
 * "LLAMA_CLOUD_API_KEY: the API key is 102400 bytes long; a key is at most
 * 4096"), or -ENOMEM. *key is NULL on failure.
 */
int apikey_parse(const char *text, size_t len, const char *source, char **key, char *err,
                 size_t errlen);

/*
 * Reads the key from the file at `path`. A symbolic link is followed, as
 * ssh does for its keys; what is checked is the file it leads to: a regular
 * file, owned by the effective user, that no one else may read, write or
 * execute (mode 0600 or 0400), at most APIKEY_FILE_MAX bytes, holding a
 * valid key. Returns 0 and a malloc'd *key, or a negative errno (-ENOENT,
 * -EACCES, -EINVAL, -ELOOP, -EFBIG, an error of open or read) with err
 * naming the file and saying what is wrong with it.
 */
int apikey_read_file(const char *path, char **key, char *err, size_t errlen);

/*
 * Loads the key: from the file `path` when not NULL, else from
 * LLAMA_CLOUD_API_KEY, else LLAMA_PARSE_API_KEY (an empty variable counts
 * as unset). Returns 0 and a malloc'd *key, -ENOENT when there is no key
 * anywhere, or the refusal of apikey_parse() or apikey_read_file(); err
 * says why. The caller wipes and frees the key.
 */
int apikey_load(const char *path, char **key, char *err, size_t errlen);

#endif
