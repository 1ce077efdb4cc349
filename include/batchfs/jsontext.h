/*
 * jsontext — working on JSON as text, byte for byte.
 *
 * The files batchfs shows are the API's objects exactly as received: same
 * keys in the same order, same number spellings, same string escapes, fields
 * unknown to us kept. A parse-and-dump round trip through a JSON library
 * cannot promise that (floats, huge integers, duplicate keys), so the bytes
 * are located, read and re-indented here instead, without building a tree:
 * the fields batchfs needs from a page are found and decoded in place.
 *
 * Pure functions over borrowed text: no global state, safe from any thread.
 * Inputs are untrusted; every function checks bounds and returns -EINVAL on
 * text that is not valid JSON rather than reading past `len`. Nesting is
 * handled without recursion, so depth cannot exhaust the stack.
 *
 * What a string holds is not checked: bytes that are not UTF-8 (ff, c0 af,
 * ed a0 80, a cut e2 82) and unpaired surrogate escapes ("\ud800", "\udc00",
 * "\ud800\u0041") are accepted and copied as they are. They are user data
 * (a file's name, an error message) that the API passes on; refusing them
 * would cost the whole page for one item. Each consumer of decoded strings
 * decides what to show for them (names.c, derive.c, xattr.c).
 */
#ifndef BATCHFS_JSONTEXT_H
#define BATCHFS_JSONTEXT_H

#include <stdbool.h>
#include <stddef.h>

#include "batchfs/buf.h"

/* Nesting deeper than this is written on one line (compact) by
 * jsontext_pretty, so that output size stays linear in input size. */
#define JSONTEXT_MAX_INDENT_DEPTH 64

/* A byte range [start, start + len) of a JSON text. */
struct json_span {
    size_t start;
    size_t len;
};

/*
 * Appends `text` (one JSON value, surrounding white space allowed) to `out`
 * re-indented the way Python's json.dumps(indent=2) and jansson's
 * JSON_INDENT(2) lay it out: one member or element per line, two spaces per
 * level, "key": value, empty containers as {} and [], then a final "\n".
 * Strings and numbers are copied unchanged. Returns 0, -EINVAL (not one valid
 * JSON value; `out` is then restored to its previous length) or -ENOMEM.
 */
int jsontext_pretty(const char *text, size_t len, struct buf *out);

/*
 * The length of what jsontext_pretty would append for `text`, without
 * writing it: a file's size is known before its bytes are made. Returns 0,
 * or -EINVAL (*out is then 0).
 */
int jsontext_pretty_length(const char *text, size_t len, size_t *out);

/*
 * The lengths of what jsontext_pretty and jsontext_compact would append for
 * `text`, in one pass: an item's file and its items.ndjson line are measured
 * while its page is at hand. Returns 0, or -EINVAL (both are then 0).
 */
int jsontext_measure(const char *text, size_t len, size_t *pretty, size_t *compact);

/*
 * Like jsontext_pretty but with no insignificant white space and no final
 * newline: one line per value, for NDJSON.
 */
int jsontext_compact(const char *text, size_t len, struct buf *out);

/*
 * Finds the value of member `key` of the object `text`. `key` is compared
 * with the member names after decoding their escapes ("\u0069tems" matches
 * "items"). Where the key repeats, the last occurrence wins (as in jansson
 * and Python). Returns 0 and the value's span (relative to `text`), -ENOENT
 * when the object has no such member, -EINVAL when `text` is not a valid
 * JSON object.
 */
int jsontext_member(const char *text, size_t len, const char *key, struct json_span *out);

/*
 * Reads the value at `span` of `text` as a count (total_size, total_items):
 * a JSON number whose value is a whole number from 0 to 2^53, where a
 * double is still exact ("120", "1.2e2"). True and *out set, or false for
 * anything else (a string, a fraction, a negative number, null).
 */
bool jsontext_count(const char *text, struct json_span span, size_t *out);

/* Most keys jsontext_members looks for in one pass. */
#define JSONTEXT_MAX_KEYS 16

/*
 * Finds the values of several members of the object `text` in one pass:
 * out[i] is the span of member keys[i] (compared as jsontext_member does;
 * the last occurrence wins), or {0, 0} when absent (no value is empty). A
 * value's first byte tells its type: '"' string, '{' object, '[' array,
 * 'n' null, 't' or 'f' boolean, anything else a number. Returns 0, or
 * -EINVAL when `text` is not a valid JSON object or count exceeds
 * JSONTEXT_MAX_KEYS.
 */
int jsontext_members(const char *text, size_t len, const char *const *keys, size_t count,
                     struct json_span *out);

/*
 * Decodes the JSON string token `text` (quotes included, nothing around
 * it) into `out`, which must have room for `len` bytes: the decoded bytes
 * (escapes resolved, \u0000 giving a NUL byte) and a terminating NUL.
 * *out_len excludes the terminator. Raw bytes are copied as they are, UTF-8
 * or not; an unpaired surrogate escape decodes to the three bytes its code
 * point would take in UTF-8 ("\ud800" to ED A0 80, as WTF-8 writes it),
 * which are not UTF-8 either, so that consumers treat both alike. `out`
 * may point into `text` at or before its first byte (decoding in place: a
 * multi-MB document is not copied), since no escape decodes to more bytes
 * than it takes and the bytes are written only once the string has been
 * checked. Returns 0 or -EINVAL when `text` is not exactly one valid
 * string (`out` then untouched).
 */
int jsontext_string(const char *text, size_t len, char *out, size_t *out_len);

/*
 * Lists the spans of the elements of the array `text`, in order. *spans is
 * malloc'd (NULL when *count is 0) and owned by the caller. Returns 0,
 * -EINVAL when `text` is not a valid JSON array, or -ENOMEM.
 */
int jsontext_array_elements(const char *text, size_t len, struct json_span **spans,
                            size_t *count);

/*
 * jsontext_members and jsontext_array_elements for text already validated
 * whole: a value inside a document that jsontext_validate (or a member
 * lookup on it) accepted. Values are stepped over by their quotes and
 * brackets instead of being checked again, so that a page of the API is
 * validated once and then searched. On text that was never
 * validated the spans found are meaningless, but nothing outside [text,
 * text + len) is read and the call still ends.
 */
int jsontext_members_valid(const char *text, size_t len, const char *const *keys,
                           size_t count, struct json_span *out);
int jsontext_array_elements_valid(const char *text, size_t len, struct json_span **spans,
                                  size_t *count);

/* Called by jsontext_array_objects_valid for each element of the array, in
 * order: its span, and the values of the keys in it (as
 * jsontext_members_valid finds them), or found NULL when the element is not
 * an object. A nonzero return stops the walk and is returned. */
typedef int (*jsontext_element_fn)(void *ctx, struct json_span element,
                                   const struct json_span *found);

/*
 * jsontext_array_elements_valid and then jsontext_members_valid on each
 * element, in one pass over the validated array `text`: each element is
 * stepped over once, by reading its members, rather than once to find
 * where it ends and again to read it (a page of 1,000 jobs is 600 KB).
 * `found` has room for `count` spans (at most JSONTEXT_MAX_KEYS). 0, the
 * visitor's nonzero return, or -EINVAL when `text` is not an array.
 */
int jsontext_array_objects_valid(const char *text, size_t len, const char *const *keys,
                                 size_t count, struct json_span *found,
                                 jsontext_element_fn visit, void *ctx);

/*
 * A page of the API in one pass: jsontext_members of the object `text`
 * (keys, count, out), and, where the member `array_key` (compared as
 * jsontext_members compares keys) is met and its value is an array, that array read as
 * jsontext_array_objects_valid reads one (element_keys, found, visit), but
 * checked as it is read, so that the page's 600 KB of items are stepped
 * over once rather than once to check them and again to read them. The
 * last such member wins in out, as jsontext_members says; each is visited.
 * 0, the visitor's nonzero return, or -EINVAL when `text` is not a valid
 * JSON object (elements before the fault may have been visited).
 */
int jsontext_page(const char *text, size_t len, const char *const *keys, size_t count,
                  struct json_span *out, const char *array_key,
                  const char *const *element_keys, size_t n_element_keys,
                  struct json_span *found, jsontext_element_fn visit, void *ctx);

/*
 * Appends `len` bytes of `s` as one JSON string token: quotes, backslashes
 * and control bytes escaped (\" \\ \n \t \r, others \u00XX), every
 * other byte as it is (so that bytes that are not UTF-8 reach a reader
 * that keeps them, as jsontext_string does). 0 or -ENOMEM.
 */
int jsontext_append_string(struct buf *out, const char *s, size_t len);

/*
 * Checks that `text` is exactly one valid JSON value (RFC 8259; \u0000
 * allowed, the bytes inside strings not checked: see above). Returns 0 or
 * -EINVAL.
 */
int jsontext_validate(const char *text, size_t len);

#endif
