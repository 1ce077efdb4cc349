/*
 * xattr — extended attributes from an object's JSON (see
 * include/batchfs/xattr.h).
 */
#include "batchfs/xattr.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

#define XATTR_PREFIX "user.llamacloud."
#define XATTR_COUNT 4

static const char *const xattr_names[XATTR_COUNT] = {"id", "status", "error_message",
                                                     "job_id"};

/* The string `obj` gives for attribute `which` (borrowed), or NULL. */
static const char *xattr_value(enum xattr_object kind, const json_t *obj, size_t which,
                               size_t *len)
{
    const json_t *v = NULL;

    switch (which) {
    case 0:
        v = json_object_get(obj, kind == XATTR_ITEM     ? "item_id"
                                 : kind == XATTR_RESULT ? "source_directory_file_id"
                                                        : "id");
        break;
    case 1:
        v = json_object_get(obj, "status");
        break;
    case 2:
        v = json_object_get(obj, "error_message");
        break;
    case 3:
        /* An item's own job; a result's, through its job_reference. */
        v = kind == XATTR_RESULT ? json_object_get(json_object_get(obj, "job_reference"), "id")
                                 : json_object_get(obj, "job_id");
        break;
    }
    if (!json_is_string(v))
        return NULL;
    *len = json_string_length(v);
    return json_string_value(v);
}

static json_t *xattr_parse(const char *json, size_t len)
{
    json_error_t error;

    return json_loadb(json, len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &error);
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
    json_t *obj = xattr_parse(json, len);
    int rc = 0;

    for (size_t i = 0; obj && !rc && i < XATTR_COUNT; i++) {
        size_t value_len;

        if (!xattr_value(kind, obj, i, &value_len))
            continue;
        rc = buf_append_str(out, XATTR_PREFIX);
        if (!rc)
            rc = buf_append_str(out, xattr_names[i]);
        if (!rc)
            rc = buf_append_char(out, '\0');
    }
    json_decref(obj);
    return rc;
}

int xattr_get(enum xattr_object kind, const char *json, size_t len, const char *name,
              struct buf *out)
{
    int which = xattr_index(name);
    const char *value;
    size_t value_len;
    json_t *obj;
    int rc;

    if (which < 0)
        return which;
    obj = xattr_parse(json, len);
    value = obj ? xattr_value(kind, obj, (size_t)which, &value_len) : NULL;
    rc = value ? buf_append(out, value, value_len) : -ENODATA;
    json_decref(obj);
    return rc;
}
