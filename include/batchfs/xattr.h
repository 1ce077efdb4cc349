/*
 * xattr — the extended attributes of an object's file, read from its JSON.
 *
 *   user.llamacloud.id             item_id, source_directory_file_id or id
 *   user.llamacloud.status         status
 *   user.llamacloud.error_message  error_message
 *   user.llamacloud.job_id         an item's job_id; a result's job_reference.id
 *
 * An attribute exists when its field is a string and its value can be read:
 * not over 64 KiB, the most getxattr(2) returns (a value that could be
 * listed but not read would make tar and cp warn). The value is the
 * string's decoded bytes: bytes that are not UTF-8 as sent, an unpaired
 * surrogate escape as jsontext_string decodes it. Pure: JSON text in,
 * bytes out; the filesystem model finds the object and calls these.
 */
#ifndef BATCHFS_XATTR_H
#define BATCHFS_XATTR_H

#include <stddef.h>

#include "batchfs/buf.h"

enum xattr_object {
    XATTR_ITEM,   /* a v1 item */
    XATTR_RESULT, /* a v2 batch result */
    XATTR_OTHER,  /* a job or a batch */
};

/*
 * Checks an attribute name before any object is looked at: 0 for one of
 * ours, -EOPNOTSUPP outside the user namespace (so that ls and other tools
 * stop asking for security.* and system.* on this mount), -ENODATA for
 * another user.* name.
 */
int xattr_check_name(const char *name);

/* Appends the names the object `json` (len bytes) has, each NUL-terminated.
 * 0, -ENOMEM; text that is not a JSON object has none. */
int xattr_list(enum xattr_object kind, const char *json, size_t len, struct buf *out);

/* Appends the value of attribute `name`: 0, -ENODATA when the object has
 * none (or is not a JSON object), -EOPNOTSUPP as xattr_check_name, -ENOMEM. */
int xattr_get(enum xattr_object kind, const char *json, size_t len, const char *name,
              struct buf *out);

#endif
