/*
 * derive — aggregate files from listings (see include/batchfs/derive.h).
 */
#include "batchfs/derive.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "batchfs/catalog.h"
#include "batchfs/jsontext.h"

/* The entries of a listing in API order (the listing itself is by name). */
static int derive_api_order(const struct listing *l, const struct entry ***out)
{
    const struct entry **order = NULL;

    *out = NULL;
    if (!l->count)
        return 0;
    order = malloc(l->count * sizeof(*order));
    if (!order)
        return -ENOMEM;
    /* api_index values are distinct and below count for fetched listings;
     * fall back to name order if they are not. */
    for (size_t i = 0; i < l->count; i++)
        order[i] = NULL;
    for (size_t i = 0; i < l->count; i++) {
        size_t at = l->entries[i].api_index;

        if (at >= l->count || order[at]) {
            for (size_t j = 0; j < l->count; j++)
                order[j] = &l->entries[j];
            break;
        }
        order[at] = &l->entries[i];
    }
    *out = order;
    return 0;
}

int derive_ndjson(const struct listing *const *lists, size_t n, struct buf *out)
{
    int rc = 0;

    for (size_t k = 0; k < n && !rc; k++) {
        const struct entry **order;

        rc = derive_api_order(lists[k], &order);
        for (size_t i = 0; !rc && i < lists[k]->count; i++) {
            const struct blob *b = order[i]->content;

            rc = jsontext_compact(b->data, b->len, out);
            if (!rc)
                rc = buf_append_char(out, '\n');
        }
        free(order);
    }
    return rc;
}

int derive_tsv_field(const char *text, size_t len, struct buf *out)
{
    int rc = 0;

    for (size_t i = 0; i < len && !rc; i++) {
        switch (text[i]) {
        case '\t':
            rc = buf_append_str(out, "\\t");
            break;
        case '\n':
            rc = buf_append_str(out, "\\n");
            break;
        case '\r':
            rc = buf_append_str(out, "\\r");
            break;
        case '\\':
            rc = buf_append_str(out, "\\\\");
            break;
        case '\0':
            rc = buf_append_str(out, "\\0");
            break;
        default:
            rc = buf_append_char(out, text[i]);
            break;
        }
    }
    return rc;
}

/* One errors.tsv record for `e`, or nothing when it has no error. */
static int derive_error_line(const struct entry *e, struct buf *out)
{
    json_error_t error;
    json_t *obj, *msg;
    int rc = 0;

    obj = json_loadb(e->content->data, e->content->len,
                     JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &error);
    if (!obj)
        return 0; /* beyond what jansson parses: no field to report */
    msg = json_object_get(obj, "error_message");
    if (json_is_string(msg) && json_string_length(msg) > 0) {
        const char *name = e->name ? e->name : "";
        size_t name_len = strlen(name);

        /* The file name without ".json", so it reads as the document. */
        if (name_len > 5 && !strcmp(name + name_len - 5, ".json"))
            name_len -= 5;
        rc = derive_tsv_field(name, name_len, out);
        if (!rc)
            rc = buf_append_char(out, '\t');
        if (!rc)
            rc = derive_tsv_field(e->id ? e->id : "", e->id ? strlen(e->id) : 0, out);
        if (!rc)
            rc = buf_append_char(out, '\t');
        if (!rc)
            rc = derive_tsv_field(json_string_value(msg), json_string_length(msg), out);
        if (!rc)
            rc = buf_append_char(out, '\n');
    }
    json_decref(obj);
    return rc;
}

int derive_errors_tsv(const struct listing *const *lists, size_t n, struct buf *out)
{
    int rc = 0;

    for (size_t k = 0; k < n && !rc; k++) {
        const struct entry **order;

        rc = derive_api_order(lists[k], &order);
        for (size_t i = 0; !rc && i < lists[k]->count; i++)
            rc = derive_error_line(order[i], out);
        free(order);
    }
    return rc;
}

int derive_progress(const char *status, size_t total, size_t done, size_t failed,
                    size_t skipped, struct buf *out)
{
    unsigned percent, filled;
    char bar[11];
    int rc;

    if (done > total)
        total = done;
    percent = total ? (unsigned)((done * 100) / total) : 100;
    filled = percent / 10;
    for (unsigned i = 0; i < 10; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[10] = '\0';
    if (!status || !*status)
        status = "unknown";
    rc = derive_tsv_field(status, strlen(status), out);
    if (!rc)
        rc = buf_printf(out, " %zu/%zu failed %zu skipped %zu %u%% [%s]\n", done, total,
                        failed, skipped, percent, bar);
    return rc;
}
