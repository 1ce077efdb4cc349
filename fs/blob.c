/*
 * blob — the bytes of one file (see include/batchfs/blob.h).
 */
#include "batchfs/blob.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "batchfs/bigmem.h"
#include "batchfs/hash.h"
#include "batchfs/jsontext.h"

/* What a made blob keeps in its data[]. */
struct blob_made {
    const struct blob_maker *maker;
    void *state;
};

/* What a paged blob keeps in its data[]. */
struct blob_paged {
    const struct blob_pager *pager;
    void *state;
};

/* What a rendered blob keeps in its data[]. */
struct blob_rendered {
    struct blob *source; /* held, adopted or paged; referenced */
    uint32_t off, text_len;
    blob_render_fn render;
};

/* ...and what one rendered by jsontext_pretty keeps (BLOB_PRETTY): the
 * same less the function (a job's file, a document's, an item's made
 * outside a batch): 16 bytes here make a 40-byte blob, a 48-byte chunk of
 * malloc's rather than 64. */
struct blob_pretty {
    struct blob *source;
    uint32_t off, text_len;
};

/* ...and what one in a batch keeps (BLOB_BATCHED): its span, the source
 * being its batch's. */
struct blob_span {
    uint32_t off, text_len;
};

/* A block of batched blobs (blob.h). */
struct blob_batch {
    /* Atomic: the blobs made and not freed, and 1 for the maker until
     * blob_batch_end. The block goes at 0. */
    unsigned live;
    unsigned used, count;                        /* slots made, slots in all */
    struct blob *source;                         /* referenced */
    _Alignas(struct blob) unsigned char slots[]; /* [count] of BLOB_BATCH_STRIDE */
};

/* What a slot takes: a blob and its span. */
#define BLOB_BATCH_STRIDE (sizeof(struct blob) + sizeof(struct blob_span))
_Static_assert(BLOB_BATCH_STRIDE % _Alignof(struct blob) == 0, "slots stay aligned");

/* The batch a BLOB_BATCHED blob lies in. */
static struct blob_batch *blob_batch_of(const struct blob *blob)
{
    return (struct blob_batch *)((const unsigned char *)blob -
                                 (size_t)blob->slot * BLOB_BATCH_STRIDE -
                                 offsetof(struct blob_batch, slots));
}

/* Drops one of the batch's counts; the last frees it. */
static void blob_batch_drop(struct blob_batch *batch)
{
    if (__atomic_sub_fetch(&batch->live, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    blob_unref(batch->source);
    bigmem_free(batch);
}

static bool blob_is_rendered(const struct blob *blob)
{
    return blob->kind == BLOB_RENDERED || blob->kind == BLOB_PRETTY ||
           blob->kind == BLOB_BATCHED;
}

/* The rendered blob's source and renderer in *out, whichever its form:
 * false for a blob of another kind. */
static bool blob_rendered_of(const struct blob *blob, struct blob_rendered *out)
{
    struct blob_pretty pretty;
    struct blob_span span;

    switch (blob->kind) {
    case BLOB_RENDERED:
        memcpy(out, blob->data, sizeof(*out));
        return true;
    case BLOB_PRETTY:
        memcpy(&pretty, blob->data, sizeof(pretty));
        *out = (struct blob_rendered){pretty.source, pretty.off, pretty.text_len,
                                      jsontext_pretty};
        return true;
    case BLOB_BATCHED:
        memcpy(&span, blob->data, sizeof(span));
        *out = (struct blob_rendered){blob_batch_of(blob)->source, span.off,
                                      span.text_len, jsontext_pretty};
        return true;
    default:
        return false;
    }
}

/* Eight bytes at a time: every item's file gets a digest, so
 * byte-at-a-time hashing showed in the cost of a listing. */
uint64_t blob_digest(const char *data, size_t len)
{
    return hash_words_from(HASH_KEY_SEED, data, len);
}

uint64_t blob_digest_fold(uint64_t h, uint64_t value)
{
    return hash_mix((h ^ value) * 0x9e3779b97f4a7c15ULL + 1);
}

/* Whether a held blob of `len` bytes is a block of bigmem's: one as big
 * as a mapping (an errors.tsv of 100,000 lines, a long document), which
 * freed from malloc's heaps would raise glibc's threshold for mapping and
 * leave its hole there (bigmem.h). */
static bool blob_held_is_big(size_t len)
{
    return len >= BIGMEM_MAP_MIN - sizeof(struct blob) - 1;
}

struct blob *blob_new(const char *data, size_t len)
{
    struct blob *blob = len > SIZE_MAX - sizeof(*blob) - 1 ? NULL
                        : blob_held_is_big(len)
                            ? bigmem_resize(NULL, sizeof(*blob) + len + 1)
                            : malloc(sizeof(*blob) + len + 1);

    if (!blob)
        return NULL;
    blob->refs = 1;
    blob->kind = BLOB_HELD;
    blob->length = len;
    blob->digest = blob_digest(data, len);
    memcpy(blob->data, data, len);
    blob->data[len] = '\0';
    return blob;
}

struct blob *blob_adopt(char *data, size_t len)
{
    struct blob *blob = malloc(sizeof(*blob) + sizeof(data));

    if (!blob) {
        bigmem_free(data);
        return NULL;
    }
    data[len] = '\0';
    blob->refs = 1;
    blob->kind = BLOB_ADOPTED;
    blob->length = len;
    blob->digest = 0; /* blob_get_digest computes it */
    memcpy(blob->data, &data, sizeof(data));
    return blob;
}

struct blob *blob_adopt_buf(struct buf *b)
{
    size_t len = b->len;
    char *data = buf_steal_big(b);

    buf_free(b); /* when buf_steal_big failed */
    return data ? blob_adopt(data, len) : NULL;
}

/* A blob of `kind` whose data[] is a copy of `size` bytes at `data`. */
static struct blob *blob_new_kind(unsigned kind, const void *data, size_t size, size_t len,
                                  uint64_t digest)
{
    struct blob *blob = malloc(sizeof(*blob) + size);

    if (!blob)
        return NULL;
    blob->refs = 1;
    blob->kind = kind;
    blob->length = len;
    blob->digest = digest;
    memcpy(blob->data, data, size);
    return blob;
}

struct blob *blob_new_made(const struct blob_maker *maker, void *state, size_t len,
                           uint64_t digest)
{
    struct blob_made made = {maker, state};
    struct blob *blob = blob_new_kind(BLOB_MADE, &made, sizeof(made), len, digest);

    if (!blob)
        maker->free(state);
    return blob;
}

struct blob *blob_new_paged(const struct blob_pager *pager, void *state, size_t len,
                            uint64_t digest)
{
    struct blob_paged paged = {pager, state};
    struct blob *blob = blob_new_kind(BLOB_PAGED, &paged, sizeof(paged), len, digest);

    if (!blob)
        pager->free(state);
    return blob;
}

/* Whether `source` may be rendered from, and [off, off + text_len) lies
 * within it, in 32-bit offsets. */
static bool blob_span_fits(const struct blob *source, size_t off, size_t text_len)
{
    return (blob_bytes(source) || source->kind == BLOB_PAGED) && off <= source->length &&
           text_len <= source->length - off && off <= UINT32_MAX &&
           text_len <= UINT32_MAX;
}

struct blob_batch *blob_batch_new(struct blob *source, size_t count)
{
    struct blob_batch *batch;

    if (!count || count > BLOB_BATCH_MAX || !blob_span_fits(source, 0, 0))
        return NULL;
    /* From bigmem: a page of thousands of items makes a block of 128 KiB
     * and more (bigmem.h). */
    batch = bigmem_resize(NULL,
                          offsetof(struct blob_batch, slots) + count * BLOB_BATCH_STRIDE);
    if (!batch)
        return NULL;
    batch->live = 1;
    batch->used = 0;
    batch->count = (unsigned)count;
    batch->source = blob_ref(source);
    return batch;
}

struct blob *blob_batch_add(struct blob_batch *batch, size_t off, size_t text_len,
                            size_t len, uint64_t digest)
{
    struct blob_span span = {(uint32_t)off, (uint32_t)text_len};
    struct blob *blob;

    if (batch->used == batch->count || !blob_span_fits(batch->source, off, text_len) ||
        (digest == BLOB_DIGEST_LATER && !blob_bytes(batch->source)))
        return NULL;
    blob = (struct blob *)(batch->slots + (size_t)batch->used * BLOB_BATCH_STRIDE);
    blob->refs = 1;
    blob->kind = BLOB_BATCHED;
    blob->slot = batch->used++;
    blob->length = len;
    blob->digest = digest;
    memcpy(blob->data, &span, sizeof(span));
    __atomic_add_fetch(&batch->live, 1, __ATOMIC_RELAXED);
    return blob;
}

void blob_batch_end(struct blob_batch *batch)
{
    if (batch)
        blob_batch_drop(batch);
}

struct blob *blob_new_rendered(struct blob *source, size_t off, size_t text_len,
                               blob_render_fn render, size_t len, uint64_t digest)
{
    struct blob_rendered rendered = {source, (uint32_t)off, (uint32_t)text_len, render};
    struct blob_pretty pretty = {source, (uint32_t)off, (uint32_t)text_len};
    struct blob *blob;

    if (!blob_span_fits(source, off, text_len) ||
        (digest == BLOB_DIGEST_LATER && !blob_bytes(source)))
        return NULL;
    if (render == jsontext_pretty)
        blob = blob_new_kind(BLOB_PRETTY, &pretty, sizeof(pretty), len, digest);
    else
        blob = blob_new_kind(BLOB_RENDERED, &rendered, sizeof(rendered), len, digest);
    if (blob)
        blob_ref(source);
    return blob;
}

size_t blob_len(const struct blob *blob)
{
    /* Relaxed: the length is all a measurer publishes, and each one stores
     * the same value. */
    return __atomic_load_n(&blob->length, __ATOMIC_RELAXED);
}

/* Measures a rendered blob's length from its text into *len. */
static int blob_measure_text(const struct blob *blob, size_t *len)
{
    struct blob_rendered rendered;
    struct buf out = BUF_INIT;
    const char *text;
    size_t text_len;
    int rc;

    if (!blob_rendered_of(blob, &rendered))
        return -EIO; /* only rendered blobs are made without a length */
    rc = blob_text_begin(blob, &text, &text_len);
    if (rc)
        return rc;
    /* jsontext_measure counts what jsontext_pretty writes, without
     * writing it: the one renderer blobs are made without a length for in
     * bulk. */
    if (rendered.render == jsontext_pretty) {
        rc = jsontext_pretty_length(text, text_len, len);
    } else {
        rc = rendered.render(text, text_len, &out);
        *len = out.len;
    }
    blob_text_end(blob);
    buf_free(&out);
    return rc == -EINVAL ? -EIO : rc;
}

int blob_measure(const struct blob *blob, size_t *len)
{
    int rc;

    *len = blob_len(blob);
    if (*len != BLOB_LEN_UNMEASURED)
        return 0;
    rc = blob_measure_text(blob, len);
    if (rc || *len == BLOB_LEN_UNMEASURED) {
        *len = 0;
        return rc ? rc : -EIO;
    }
    /* The blob is immutable but for this: a cache of what its text
     * determines. */
    __atomic_store_n(&((struct blob *)blob)->length, *len, __ATOMIC_RELAXED);
    return 0;
}

uint64_t blob_get_digest(const struct blob *blob)
{
    uint64_t digest = __atomic_load_n(&blob->digest, __ATOMIC_RELAXED);
    struct blob_rendered r;
    const char *text;

    if (digest)
        return digest;
    if (blob->kind == BLOB_ADOPTED) {
        digest = blob_digest(blob_bytes(blob), blob->length);
    } else if (blob_rendered_of(blob, &r) && (text = blob_bytes(r.source))) {
        /* Made with BLOB_DIGEST_LATER: the digest of its text. */
        digest = blob_digest(text + r.off, r.text_len);
    } else {
        return 0;
    }
    /* Immutable but for this, like the length: a cache of what the bytes
     * determine, the same whichever thread computes it first. */
    __atomic_store_n(&((struct blob *)blob)->digest, digest, __ATOMIC_RELAXED);
    return digest;
}

bool blob_same(const struct blob *a, const struct blob *b)
{
    size_t a_len = blob_len(a), b_len = blob_len(b);

    return blob_get_digest(a) == blob_get_digest(b) &&
           (a_len == b_len || a_len == BLOB_LEN_UNMEASURED ||
            b_len == BLOB_LEN_UNMEASURED);
}

struct blob *blob_ref(struct blob *blob)
{
    if (blob)
        __atomic_add_fetch(&blob->refs, 1, __ATOMIC_RELAXED);
    return blob;
}

void blob_unref(struct blob *blob)
{
    struct blob_made made;
    struct blob_paged paged;
    struct blob_rendered rendered;

    if (!blob || __atomic_sub_fetch(&blob->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (blob->kind == BLOB_BATCHED) {
        blob_batch_drop(blob_batch_of(blob)); /* the source is the batch's */
        return;
    }
    if (blob->kind == BLOB_ADOPTED) {
        bigmem_free((char *)blob_bytes(blob));
    } else if (blob->kind == BLOB_MADE) {
        memcpy(&made, blob->data, sizeof(made));
        made.maker->free(made.state);
    } else if (blob->kind == BLOB_PAGED) {
        memcpy(&paged, blob->data, sizeof(paged));
        paged.pager->free(paged.state);
    } else if (blob_rendered_of(blob, &rendered)) {
        blob_unref(rendered.source);
    }
    if (blob->kind == BLOB_HELD && blob_held_is_big(blob->length))
        bigmem_free(blob);
    else
        free(blob);
}

const char *blob_bytes(const struct blob *blob)
{
    char *adopted;

    if (blob->kind == BLOB_HELD)
        return blob->data;
    if (blob->kind != BLOB_ADOPTED)
        return NULL;
    memcpy(&adopted, blob->data, sizeof(adopted));
    return adopted;
}

void *blob_pager_state(const struct blob *blob, const struct blob_pager *pager)
{
    struct blob_paged paged;

    if (!blob || blob->kind != BLOB_PAGED)
        return NULL;
    memcpy(&paged, blob->data, sizeof(paged));
    return paged.pager == pager ? paged.state : NULL;
}

int blob_pin(const struct blob *blob, const char **bytes)
{
    struct blob_paged paged;

    *bytes = blob_bytes(blob);
    if (*bytes)
        return 0;
    if (blob->kind != BLOB_PAGED)
        return -EINVAL;
    memcpy(&paged, blob->data, sizeof(paged));
    return paged.pager->pin(paged.state, bytes);
}

void blob_unpin(const struct blob *blob)
{
    struct blob_paged paged;

    if (blob->kind != BLOB_PAGED)
        return;
    memcpy(&paged, blob->data, sizeof(paged));
    paged.pager->unpin(paged.state);
}

bool blob_present(const struct blob *blob)
{
    struct blob_rendered rendered;
    struct blob_paged paged;

    switch (blob->kind) {
    case BLOB_PAGED:
        memcpy(&paged, blob->data, sizeof(paged));
        return !paged.pager->present || paged.pager->present(paged.state);
    case BLOB_RENDERED:
    case BLOB_PRETTY:
    case BLOB_BATCHED:
        blob_rendered_of(blob, &rendered);
        return blob_present(rendered.source);
    default:
        return true;
    }
}

int blob_text_begin(const struct blob *blob, const char **text, size_t *len)
{
    struct blob_rendered rendered;
    const char *source;
    int rc;

    *text = NULL;
    *len = 0;
    switch (blob->kind) {
    case BLOB_HELD:
    case BLOB_ADOPTED:
    case BLOB_PAGED:
        rc = blob_pin(blob, text);
        if (!rc)
            *len = blob->length; /* held and paged blobs' is fixed */
        return rc;
    case BLOB_RENDERED:
    case BLOB_PRETTY:
    case BLOB_BATCHED:
        blob_rendered_of(blob, &rendered);
        rc = blob_pin(rendered.source, &source);
        if (rc)
            return rc;
        *text = source + rendered.off;
        *len = rendered.text_len;
        return 0;
    default:
        return 0;
    }
}

void blob_text_end(const struct blob *blob)
{
    struct blob_rendered rendered;

    if (blob_rendered_of(blob, &rendered)) {
        blob_unpin(rendered.source);
    } else {
        blob_unpin(blob);
    }
}

size_t blob_footprint(const struct blob *blob)
{
    struct blob_rendered rendered;
    struct blob_paged paged;

    switch (blob->kind) {
    case BLOB_HELD:
    case BLOB_ADOPTED:
        return sizeof(*blob) + blob->length + 1;
    case BLOB_RENDERED:
    case BLOB_PRETTY:
    case BLOB_BATCHED:
        blob_rendered_of(blob, &rendered);
        return sizeof(*blob) +
               (blob->kind == BLOB_BATCHED  ? sizeof(struct blob_span)
                : blob->kind == BLOB_PRETTY ? sizeof(struct blob_pretty)
                                            : sizeof(rendered)) +
               (rendered.source->kind == BLOB_PAGED ? 0 : rendered.text_len);
    case BLOB_PAGED:
        memcpy(&paged, blob->data, sizeof(paged));
        return sizeof(*blob) + sizeof(paged) + paged.pager->footprint;
    default:
        return sizeof(*blob) + sizeof(struct blob_made);
    }
}

/* Renders the whole of a rendered blob, whose length is `len`, into
 * scratch and keeps the range asked for at its start. */
static int blob_render_range(const struct blob *blob, size_t len, size_t off, size_t size,
                             struct buf *scratch)
{
    struct blob_rendered rendered;
    const char *text;
    size_t text_len;
    int rc;

    blob_rendered_of(blob, &rendered);
    rc = blob_text_begin(blob, &text, &text_len);
    if (rc)
        return rc;
    rc = rendered.render(text, text_len, scratch);
    blob_text_end(blob);
    if (rc)
        return rc;
    if (scratch->len != len)
        return -EIO;
    memmove(scratch->data, scratch->data + off, size);
    scratch->len = size;
    return 0;
}

/* Copies a range of a paged blob's bytes into scratch. */
static int blob_copy_range(const struct blob *blob, size_t off, size_t size,
                           struct buf *scratch)
{
    const char *bytes;
    int rc = blob_pin(blob, &bytes);

    if (rc)
        return rc;
    rc = buf_append(scratch, bytes + off, size);
    blob_unpin(blob);
    return rc;
}

long blob_read(const struct blob *blob, size_t off, size_t size, struct buf *scratch,
               const char **bytes)
{
    struct blob_made made;
    size_t len;
    int rc;

    *bytes = NULL;
    rc = blob_measure(blob, &len);
    if (rc)
        return rc;
    if (off >= len || size == 0)
        return 0;
    if (size > len - off)
        size = len - off;
    if (size > (size_t)LONG_MAX)
        size = (size_t)LONG_MAX;
    if (blob_bytes(blob)) {
        *bytes = blob_bytes(blob) + off;
        return (long)size;
    }
    buf_reset(scratch);
    if (blob_is_rendered(blob)) {
        rc = blob_render_range(blob, len, off, size, scratch);
    } else if (blob->kind == BLOB_PAGED) {
        rc = blob_copy_range(blob, off, size, scratch);
    } else {
        memcpy(&made, blob->data, sizeof(made));
        rc = made.maker->make(made.state, off, size, scratch);
    }
    if (rc)
        return rc;
    if (scratch->len != size)
        return -EIO; /* the maker broke its promise: never hand out short or long bytes */
    *bytes = scratch->data;
    return (long)size;
}
