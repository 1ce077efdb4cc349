/*
 * derive — aggregate files from listings (see include/batchfs/derive.h).
 */
#include "batchfs/derive.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batchfs/bigmem.h"
#include "batchfs/listing.h"
#include "batchfs/jsontext.h"
#include "batchfs/utf8.h"

/* The entries of a listing in API order (items are in it already; the
 * other listings are by name). */
static int derive_api_order(const struct listing *l, const struct entry ***out)
{
    const struct entry **order = NULL;

    *out = NULL;
    if (!l->count)
        return 0;
    /* As big as the folder: from bigmem, whose freeing leaves malloc's
     * heaps as they were (bigmem.h). Zeroed: no entry placed yet. */
    order = bigmem_calloc(l->count, sizeof(*order));
    if (!order)
        return -ENOMEM;
    /* api_index values are distinct and below count for fetched listings;
     * fall back to name order if they are not. */
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

/* items.ndjson as a made blob: the listings it was made from, and each
 * line's entry and length. A line is made from its entry's file only when
 * read, so the file costs at most 8 bytes per item (a million-item job
 * reads it beside the kernel's million inodes), not a second copy of the
 * items; and nothing per item when each listing's entries lie in the API's
 * order with their lines measured, as fetched items do: line i is then
 * entry i, its length the entry's line_len and a newline. */
struct ndjson_line {
    uint32_t entry; /* its index across the lists' entries, in list order */
    uint32_t len;   /* with its newline */
};

/* Every NDJSON_STRIDE-th line's offset is kept: finding the line at an
 * offset is a binary search of those and at most as many additions. */
#define NDJSON_STRIDE 64

struct ndjson {
    struct listing **lists; /* referenced: they own the entries */
    size_t list_count;
    struct ndjson_line *lines; /* NULL: the entries in place (see above) */
    size_t line_count;
    uint64_t *starts; /* starts[j]: the offset of line j * NDJSON_STRIDE */
};

static void ndjson_free(void *state)
{
    struct ndjson *nd = state;

    if (!nd)
        return;
    for (size_t i = 0; i < nd->list_count; i++)
        listing_release(nd->lists[i]);
    free(nd->lists);
    bigmem_free(nd->lines);
    bigmem_free(nd->starts);
    free(nd);
}

/* The entry of line `i`. */
static const struct entry *ndjson_entry(const struct ndjson *nd, size_t i)
{
    size_t at = nd->lines ? nd->lines[i].entry : i;
    size_t k = 0;

    while (at >= nd->lists[k]->count)
        at -= nd->lists[k++]->count;
    return &nd->lists[k]->entries[at];
}

/* The length of line `i`, whose entry is `e`, with its newline. */
static size_t ndjson_len(const struct ndjson *nd, size_t i, const struct entry *e)
{
    return nd->lines ? nd->lines[i].len : (size_t)e->line_len + 1;
}

/* Whether every entry of the lists lies at its place in the API's order
 * with its line measured (below 4 GiB with its newline). */
static bool ndjson_in_place(struct listing *const *lists, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        for (size_t i = 0; i < lists[k]->count; i++) {
            const struct entry *e = &lists[k]->entries[i];

            if (e->api_index != i || !e->line_len || e->line_len == UINT32_MAX)
                return false;
        }
    }
    return true;
}

/* Appends the compact form of `e`'s file and a newline. */
static int ndjson_append_line(const struct entry *e, struct buf *out)
{
    size_t len;
    const char *text;
    int rc = blob_text_begin(e->content, &text, &len);

    if (rc)
        return rc; /* its page could not be fetched again */
    rc = text ? jsontext_compact(text, len, out) : -EIO; /* item files are never made */
    blob_text_end(e->content);
    return rc ? rc : buf_append_char(out, '\n');
}

/* The line that holds byte `off` (< the file's length), and where it
 * starts. */
static size_t ndjson_line_at(const struct ndjson *nd, size_t off, size_t *start)
{
    size_t lo = 0, hi = (nd->line_count + NDJSON_STRIDE - 1) / NDJSON_STRIDE, i;

    /* The last kept offset at or before off. */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;

        if (nd->starts[mid] <= off)
            lo = mid;
        else
            hi = mid;
    }
    *start = nd->starts[lo];
    for (i = lo * NDJSON_STRIDE; i < nd->line_count; i++) {
        size_t len = ndjson_len(nd, i, nd->lines ? NULL : ndjson_entry(nd, i));

        if (*start + len > off)
            break;
        *start += len;
    }
    return i;
}

static int ndjson_make(const void *state, size_t off, size_t size, struct buf *out)
{
    const struct ndjson *nd = state;
    size_t base = out->len, start = 0, i = 0;
    int rc = 0;

    if (size && nd->line_count)
        i = ndjson_line_at(nd, off, &start);
    for (; i < nd->line_count && out->len - base < size && !rc; i++) {
        const struct entry *e = ndjson_entry(nd, i);
        size_t mark = out->len, len = ndjson_len(nd, i, e);

        rc = ndjson_append_line(e, out);
        if (!rc && out->len - mark != len)
            rc = -EIO; /* cannot happen: entries are immutable */
        if (!rc && start < off) { /* the first line, entered part way */
            size_t skip = off - start;

            memmove(out->data + mark, out->data + mark + skip, out->len - mark - skip);
            out->len -= skip;
        }
        start += len;
    }
    if (!rc && out->len - base > size) {
        out->len = base + size;
        out->data[out->len] = '\0';
    }
    return rc;
}

static const struct blob_maker ndjson_maker = {ndjson_make, ndjson_free};

/* The length of `e`'s line, with its newline: measured when listed, or
 * made here. */
static int ndjson_line_len(const struct entry *e, struct buf *scratch, size_t *len)
{
    int rc = 0;

    if (e->line_len) {
        *len = (size_t)e->line_len + 1; /* no need for its text (or page) */
    } else {
        buf_reset(scratch);
        rc = ndjson_append_line(e, scratch);
        *len = scratch->len;
    }
    return rc ? rc : *len <= UINT32_MAX ? 0 : -EFBIG;
}

int derive_ndjson(struct listing *const *lists, size_t n, struct blob **out, size_t *bytes)
{
    struct ndjson *nd = calloc(1, sizeof(*nd));
    struct buf line = BUF_INIT;
    uint64_t digest = 0;
    size_t total = 0, lines = 0, base = 0;
    bool in_place;
    int rc = 0;

    *out = NULL;
    if (!nd)
        return -ENOMEM;
    for (size_t k = 0; k < n; k++)
        lines += lists[k]->count;
    if (lines > UINT32_MAX) {
        free(nd);
        return -EFBIG;
    }
    in_place = ndjson_in_place(lists, n);
    nd->lists = calloc(n ? n : 1, sizeof(*nd->lists));
    nd->lines = in_place ? NULL : bigmem_calloc(lines ? lines : 1, sizeof(*nd->lines));
    nd->starts = bigmem_calloc(lines / NDJSON_STRIDE + 1, sizeof(*nd->starts));
    if (!nd->lists || (!in_place && !nd->lines) || !nd->starts) {
        ndjson_free(nd);
        return -ENOMEM;
    }
    for (size_t k = 0; k < n; k++)
        nd->lists[nd->list_count++] = listing_ref(lists[k]);
    for (size_t k = 0; k < n && !rc; k++) {
        const struct entry **order = NULL;

        if (!in_place)
            rc = derive_api_order(lists[k], &order);
        for (size_t i = 0; !rc && i < lists[k]->count; i++) {
            const struct entry *e = order ? order[i] : &lists[k]->entries[i];
            size_t len;

            rc = ndjson_line_len(e, &line, &len);
            if (rc)
                break;
            if (nd->line_count % NDJSON_STRIDE == 0)
                nd->starts[nd->line_count / NDJSON_STRIDE] = total;
            if (nd->lines) {
                nd->lines[nd->line_count].entry =
                    (uint32_t)(base + (size_t)(e - lists[k]->entries));
                nd->lines[nd->line_count].len = (uint32_t)len;
            }
            nd->line_count++;
            total += len;
            digest = blob_digest_fold(digest, blob_get_digest(e->content));
        }
        bigmem_free(order);
        base += lists[k]->count;
    }
    buf_free(&line);
    if (rc) {
        ndjson_free(nd);
        return rc;
    }
    *bytes = sizeof(*nd) + n * sizeof(*nd->lists) +
             (nd->lines ? lines * sizeof(*nd->lines) : 0) +
             (lines / NDJSON_STRIDE + 1) * sizeof(*nd->starts);
    *out = blob_new_made(&ndjson_maker, nd, total, blob_digest_fold(digest, total));
    return *out ? 0 : -ENOMEM;
}

int derive_tsv_field(const char *text, size_t len, struct buf *out)
{
    const unsigned char *s = (const unsigned char *)text;
    int rc = 0;

    for (size_t i = 0; i < len && !rc; i++) {
        if (s[i] >= 0x80) {
            size_t n = utf8_char_len(s + i, len - i);

            /* A byte that is not UTF-8 is shown, not passed on: the line
             * stays readable, and it can still be told from any other. */
            if (n)
                rc = buf_append(out, text + i, n);
            else
                rc = buf_printf(out, "\\x%02x", s[i]);
            i += n ? n - 1 : 0;
            continue;
        }
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

/* Appends the decoded bytes of the JSON string text[0, len) to `field`. */
static int derive_append_string(const char *text, size_t len, struct buf *field)
{
    size_t decoded_len;
    int rc = buf_reserve(field, len);

    if (!rc)
        rc = jsontext_string(text, len, field->data + field->len, &decoded_len);
    if (!rc)
        field->len += decoded_len;
    return rc;
}

/*
 * Appends the message field of an errors.tsv record for `e`, whose file's
 * text is text[0, len): a string's decoded bytes; nothing when
 * error_message is absent, null or ""; the compact JSON text of any other
 * value (a number, a boolean, an object), so that no failed item goes
 * without a line and no value is shown other than it was sent. Sets *has
 * to whether there was a message at all.
 */
static int derive_error_message(const char *text, size_t len, struct buf *field,
                                bool *has)
{
    struct json_span span;

    *has = false;
    if (!text || jsontext_member(text, len, "error_message", &span) != 0 ||
        text[span.start] == 'n' || (text[span.start] == '"' && span.len == 2))
        return 0;
    *has = true;
    if (text[span.start] != '"')
        return jsontext_compact(text + span.start, span.len, field);
    return derive_append_string(text + span.start, span.len, field);
}

/* Appends the id field of an errors.tsv record for an entry whose id is
 * `id` (listing_entry_id) and whose file's text is text[0, len): its id,
 * or for an item (which keeps none) the decoded item_id of its text;
 * nothing when that is absent or not a string. */
static int derive_error_id(const char *id, const char *text, size_t len,
                           struct buf *field)
{
    struct json_span span;

    if (id)
        return buf_append_str(field, id);
    if (!text || jsontext_member(text, len, "item_id", &span) != 0 ||
        text[span.start] != '"')
        return 0;
    return derive_append_string(text + span.start, span.len, field);
}

/* One errors.tsv record for `e`, whose id is `id` and whose file's text is
 * text[0, len): always when `every`, else only when it has a message. */
static int derive_error_record(const struct entry *e, const char *id, const char *text,
                               size_t len, bool every, struct buf *out)
{
    struct buf msg = BUF_INIT, id_field = BUF_INIT;
    const char *name = e->name ? e->name : "";
    size_t name_len = strlen(name);
    bool has;
    int rc;

    rc = derive_error_message(text, len, &msg, &has);
    if (rc == -EINVAL)
        rc = 0; /* cannot happen: the text was checked when listed */
    if (rc || (!has && !every))
        goto out;
    /* The file name without ".json", so it reads as the document. */
    if (name_len > 5 && !strcmp(name + name_len - 5, ".json"))
        name_len -= 5;
    rc = derive_tsv_field(name, name_len, out);
    if (!rc)
        rc = buf_append_char(out, '\t');
    if (!rc)
        rc = derive_error_id(id, text, len, &id_field);
    if (!rc)
        rc = derive_tsv_field(id_field.data ? id_field.data : "", id_field.len, out);
    if (!rc)
        rc = buf_append_char(out, '\t');
    if (!rc)
        rc = derive_tsv_field(msg.data, msg.len, out);
    if (!rc)
        rc = buf_append_char(out, '\n');
out:
    buf_free(&msg);
    buf_free(&id_field);
    return rc;
}

/* One errors.tsv record for `e`, an entry of `list` (see
 * derive_error_record). */
static int derive_error_line(const struct listing *list, const struct entry *e,
                             bool every, struct buf *out)
{
    const char *text;
    size_t len;
    int rc = blob_text_begin(e->content, &text, &len);

    if (rc)
        return rc; /* its page could not be fetched again */
    rc = derive_error_record(e, listing_entry_id(list, e), text, len, every, out);
    blob_text_end(e->content);
    return rc;
}

int derive_errors_tsv(const struct listing *const *lists, size_t n, bool every,
                      struct buf *out)
{
    int rc = 0;

    for (size_t k = 0; k < n && !rc; k++) {
        const struct entry **order;

        rc = derive_api_order(lists[k], &order);
        for (size_t i = 0; !rc && i < lists[k]->count; i++)
            rc = derive_error_line(lists[k], order[i], every, out);
        bigmem_free(order);
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
