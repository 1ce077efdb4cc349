/*
 * xattr — extended attributes from an object's JSON (see
 * include/batchfs/xattr.h).
 *
 * The object is read as text (jsontext), like the pages it came from, so
 * that a field holding bytes that are not UTF-8 costs no attribute.
 */
#include "batchfs/xattr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "batchfs/jsontext.h"

#define XATTR_PREFIX "user.llamacloud."
#define XATTR_COUNT 4

/* The largest value the kernel lets getxattr(2) return (XATTR_SIZE_MAX of
 * <linux/limits.h>): a longer one could be listed but never read. */
#define XATTR_VALUE_MAX 65536

static const char *const xattr_names[XATTR_COUNT] = {"id", "status", "error_message",
                                                     "job_id"};

/* The member of an object that gives attribute `which`. */
static const char *xattr_key(enum xattr_object kind, size_t which)
{
    switch (which) {
    case 0:
        return kind == XATTR_ITEM     ? "item_id"
               : kind == XATTR_RESULT ? "source_directory_file_id"
                                      : "id";
    case 1:
        return "status";
    case 2:
        return "error_message";
    default:
        /* An item's own job; a result's, through its job_reference. */
        return kind == XATTR_RESULT ? "job_reference" : "job_id";
    }
}

/*
 * Appends the value of attribute `which` of the object json[0, len) to
 * `out` when it has one: its field is a string whose decoded bytes (as
 * jsontext_string gives them) fit XATTR_VALUE_MAX. 0, -ENODATA, -ENOMEM.
 */
static int xattr_value(enum xattr_object kind, const char *json, size_t len, size_t which,
                       struct buf *out)
{
    struct json_span span;
    size_t value_len;
    int rc;

    if (jsontext_member(json, len, xattr_key(kind, which), &span))
        return -ENODATA;
    if (which == 3 && kind == XATTR_RESULT) {
        json += span.start;
        len = span.len;
        if (json[0] != '{' || jsontext_member(json, len, "id", &span))
            return -ENODATA;
    }
    /* Each byte decoded takes at most six of text (an escape): a longer
     * text is too long without decoding it (a 10 MB message is common). */
    if (json[span.start] != '"' || (span.len - 2) / 6 > XATTR_VALUE_MAX)
        return -ENODATA;
    rc = buf_reserve(out, span.len);
    if (rc)
        return rc;
    rc = jsontext_string(json + span.start, span.len, out->data + out->len, &value_len);
    if (rc || value_len > XATTR_VALUE_MAX) {
        out->data[out->len] = '\0';
        return -ENODATA;
    }
    out->len += value_len;
    return 0;
}

/* Index of `name` in xattr_names, or a negative errno as xattr_check_name. */
static int xattr_index(const char *name)
{
    if (strncmp(name, "user.", strlen("user.")))
        return -EOPNOTSUPP;
    if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)))
        return -ENODATA;
    for (int which = 0; which < XATTR_COUNT; which++)
        if (!strcmp(name + strlen(XATTR_PREFIX), xattr_names[which]))
            return which;
    return -ENODATA;
}

int xattr_check_name(const char *name)
{
    int which = xattr_index(name);

    return which < 0 ? which : 0;
}

int xattr_list(enum xattr_object kind, const char *json, size_t len, struct buf *out)
{
    struct buf value = BUF_INIT;
    int rc = 0;

    for (size_t i = 0; !rc && i < XATTR_COUNT; i++) {
        buf_reset(&value);
        rc = xattr_value(kind, json, len, i, &value);
        if (rc == -ENODATA) {
            rc = 0;
            continue;
        }
        if (!rc)
            rc = buf_append_str(out, XATTR_PREFIX);
        if (!rc)
            rc = buf_append_str(out, xattr_names[i]);
        if (!rc)
            rc = buf_append_char(out, '\0');
    }
    buf_free(&value);
    return rc;
}

int xattr_get(enum xattr_object kind, const char *json, size_t len, const char *name,
              struct buf *out)
{
    int which = xattr_index(name);

    if (which < 0)
        return which;
    return xattr_value(kind, json, len, (size_t)which, out);
}
