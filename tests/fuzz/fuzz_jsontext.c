/*
 * libFuzzer target for fs/jsontext.c.
 *
 * Runs every function on the input and checks that they agree on validity,
 * that pretty output is itself valid, ends in a newline, is a fixed point of
 * pretty-printing and compacts to the same bytes as the input does, that
 * compacting is idempotent, and that member and element spans are valid
 * values inside the text, which the readings for validated text find too
 * (and on any input they end within it). Errors must leave the output
 * buffer as it was.
 */
#include "batchfs/jsontext.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void fuzz_same(const struct buf *a, const struct buf *b)
{
    if (a->len != b->len || memcmp(a->data, b->data, a->len) != 0)
        abort();
}

/* What jsontext_array_objects_valid gives is checked against: the elements
 * the two-pass reading found (spans, NULL for any input: then only that
 * every span lies within the text). */
struct fuzz_objects {
    const char *text;
    size_t len;
    const char *const *keys;
    size_t n_keys;
    const struct json_span *spans;
    size_t count, seen;
};

static int fuzz_object_element(void *ctx, struct json_span element,
                               const struct json_span *found)
{
    struct fuzz_objects *f = ctx;
    struct json_span m[8];

    if (element.start > f->len || element.len > f->len - element.start)
        abort();
    for (size_t k = 0; found && k < f->n_keys; k++)
        if (found[k].start > f->len || found[k].len > f->len - found[k].start)
            abort();
    if (f->spans) {
        const char *e = f->text + element.start;

        if (f->seen >= f->count || element.start != f->spans[f->seen].start ||
            element.len != f->spans[f->seen].len || (found != NULL) != (e[0] == '{'))
            abort();
        if (found) {
            if (jsontext_members_valid(e, element.len, f->keys, f->n_keys, m) != 0)
                abort();
            for (size_t k = 0; k < f->n_keys; k++)
                if (found[k].len != m[k].len ||
                    (m[k].len && found[k].start != element.start + m[k].start))
                    abort();
        }
    }
    f->seen++;
    return 0;
}

static void fuzz_span_ok(const char *text, size_t len, struct json_span s)
{
    if (s.start > len || s.len > len - s.start ||
        jsontext_validate(text + s.start, s.len))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const keys[] = {"items", "a", "", "\xc3\xa9", "next_page_token"};
    /* A private copy of exactly `size` bytes, so ASan sees any overread. */
    char *text = malloc(size ? size : 1);
    struct buf pretty = BUF_INIT, compact = BUF_INIT, again = BUF_INIT;
    struct json_span *spans = NULL, span;
    size_t count, measured, measured_compact;
    int valid, rc;

    if (!text)
        return 0;
    if (size)
        memcpy(text, data, size);
    valid = jsontext_validate(text, size);
    if (valid != 0 && valid != -EINVAL)
        abort();

    if (buf_append_str(&pretty, "x") || buf_append_str(&compact, "y"))
        abort();
    rc = jsontext_pretty(text, size, &pretty);
    if (rc != valid || (rc && (pretty.len != 1 || pretty.data[0] != 'x')))
        abort();
    rc = jsontext_compact(text, size, &compact);
    if (rc != valid || (rc && (compact.len != 1 || compact.data[0] != 'y')))
        abort();

    if (valid == 0) {
        /* Drop the markers written first. */
        memmove(pretty.data, pretty.data + 1, pretty.len--);
        memmove(compact.data, compact.data + 1, compact.len--);
        if (pretty.data[pretty.len - 1] != '\n')
            abort();
        if (jsontext_pretty_length(text, size, &measured) != 0 || measured != pretty.len)
            abort();
        if (jsontext_measure(text, size, &measured, &measured_compact) != 0 ||
            measured != pretty.len || measured_compact != compact.len)
            abort();
        if (jsontext_validate(pretty.data, pretty.len) != 0)
            abort();
        if (jsontext_compact(pretty.data, pretty.len, &again) != 0)
            abort();
        fuzz_same(&again, &compact);
        buf_reset(&again);
        if (jsontext_compact(compact.data, compact.len, &again) != 0)
            abort();
        fuzz_same(&again, &compact);
        buf_reset(&again);
        if (jsontext_pretty(pretty.data, pretty.len, &again) != 0)
            abort();
        fuzz_same(&again, &pretty);
        for (size_t i = 0; i < compact.len; i++)
            if (compact.data[i] == '\n')
                abort();
    }

    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        rc = jsontext_member(text, size, keys[k], &span);
        if (rc == 0)
            fuzz_span_ok(text, size, span);
        else if (rc != -ENOENT && rc != -EINVAL)
            abort();
        if (rc != -EINVAL && valid != 0)
            abort();
    }
    rc = jsontext_array_elements(text, size, &spans, &count);
    if (rc == 0) {
        if (valid != 0 || (count == 0) != (spans == NULL))
            abort();
        for (size_t i = 0; i < count; i++) {
            fuzz_span_ok(text, size, spans[i]);
            if (i && spans[i].start < spans[i - 1].start + spans[i - 1].len)
                abort();
        }
    } else if (rc != -EINVAL || spans || count) {
        abort();
    }
    free(spans);
    spans = NULL;

    /* The readings for validated text: on valid input the same spans as the
     * checking ones; on any input, an end within the text. */
    {
        struct json_span checked[5], fast[5], *fast_spans = NULL;
        size_t fast_count = 0;

        rc = jsontext_members_valid(text, size, keys, 5, fast);
        if (valid == 0 && jsontext_members(text, size, keys, 5, checked) == 0) {
            if (rc != 0 || memcmp(checked, fast, sizeof(fast)) != 0)
                abort();
        } else if (rc == 0) {
            for (size_t k = 0; k < 5; k++)
                if (fast[k].start > size || fast[k].len > size - fast[k].start)
                    abort();
        }
        rc = jsontext_array_elements_valid(text, size, &fast_spans, &fast_count);
        if (valid == 0 && jsontext_array_elements(text, size, &spans, &count) == 0) {
            struct fuzz_objects f = {text, size, keys, 5, spans, count, 0};

            if (rc != 0 || fast_count != count ||
                (count && memcmp(spans, fast_spans, count * sizeof(*spans)) != 0))
                abort();
            /* The elements and their members in one pass: the same. */
            if (jsontext_array_objects_valid(text, size, keys, 5, fast,
                                             fuzz_object_element, &f) != 0 ||
                f.seen != count)
                abort();
        } else {
            struct fuzz_objects f = {text, size, keys, 5, NULL, 0, 0};

            for (size_t i = 0; rc == 0 && i < fast_count; i++)
                if (fast_spans[i].start > size || fast_spans[i].len > size - fast_spans[i].start)
                    abort();
            /* On any input: it ends, within the text. */
            (void)jsontext_array_objects_valid(text, size, keys, 5, fast,
                                               fuzz_object_element, &f);
        }
        free(fast_spans);
        free(spans);
    }

    /* A page read in one pass: what the checking reading accepts, with
     * its members; its elements within the text. */
    {
        struct json_span checked[5], one[5], found[5];
        int whole = jsontext_members(text, size, keys, 5, checked);
        struct fuzz_objects f = {text, size, keys, 5, NULL, 0, 0};

        rc = jsontext_page(text, size, keys, 5, one, "items", keys, 5, found,
                           fuzz_object_element, &f);
        if ((rc == 0) != (whole == 0) ||
            (rc == 0 && memcmp(checked, one, sizeof(one)) != 0))
            abort();
    }
    buf_free(&pretty);
    buf_free(&compact);
    buf_free(&again);
    free(text);
    return 0;
}
