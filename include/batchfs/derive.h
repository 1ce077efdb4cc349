/*
 * derive — the aggregate files made from a job's or a batch's listings.
 *
 *   items.ndjson    every object, one compact JSON line each, in API order
 *   errors.tsv      one line per failed item (or result with an error):
 *                   name, id, error message; tab, newline, carriage return,
 *                   NUL and backslash escaped as \t \n \r \0 \\, and bytes
 *                   that are not UTF-8 as \xHH, so that every record is one
 *                   readable line
 *   progress        one line: status, done/total, failed, skipped, percent
 *                   and a bar, e.g. "running 93/100 failed 2 skipped 1 93% [#########.]"
 *
 * Pure: listings in, bytes out; no I/O, no caching (the catalog caches what
 * this makes). Errors: -ENOMEM, -EINVAL for content that is not JSON, or
 * the error of fetching again a page that was dropped (see pagecache.h).
 */
#ifndef BATCHFS_DERIVE_H
#define BATCHFS_DERIVE_H

#include <stdbool.h>
#include <stddef.h>

#include "batchfs/blob.h"
#include "batchfs/buf.h"

struct listing;
struct entry;

/*
 * items.ndjson: every entry of lists[0..n) (in list order, each list in API
 * order) as one compact JSON line. Sets *out to a made blob (see blob.h)
 * that references the listings and makes its lines when they are read, and
 * *bytes to the memory it holds beyond them.
 */
int derive_ndjson(struct listing *const *lists, size_t n, struct blob **out, size_t *bytes);

/*
 * Appends "name\tid\terror_message\n" in API order for each entry of
 * lists[0..n) when `every` (a job's failed items: each has a line), else
 * for each whose error_message is there and neither null nor "" (a batch's
 * results). The message is a string's decoded bytes, empty when absent,
 * null or "", else the value's compact JSON text; every field escaped as
 * derive_tsv_field does.
 */
int derive_errors_tsv(const struct listing *const *lists, size_t n, bool every,
                      struct buf *out);

/* Appends the progress line of a job from its own counters (so that it
 * costs no item listing): total_items, processed_items (done), failed_items,
 * skipped_items. `status` may be NULL; it is escaped like a TSV field. */
int derive_progress(const char *status, size_t total, size_t done, size_t failed,
                    size_t skipped, struct buf *out);

/* Escapes `text` (len bytes) for one TSV field: tab, newline, carriage
 * return, NUL and backslash as \t \n \r \0 \\, each byte that is not
 * UTF-8 as \xHH (lowercase hex). */
int derive_tsv_field(const char *text, size_t len, struct buf *out);

#endif
