/*
 * blob — the bytes of one file, immutable and reference counted.
 *
 * Four kinds, one interface:
 * - a held blob keeps its bytes (job.json, errors.tsv);
 * - a paged blob's bytes are kept by someone else, a pager, which may drop
 *   them and fetch them again (a page of items within a cache budget, see
 *   pagecache.h): they are pinned while read;
 * - a rendered blob keeps a reference to a text held by another blob, held
 *   or paged (an item's JSON within its page), and a function that renders
 *   that text into its bytes (pretty-printing), run on each read: a listing
 *   of 100,000 items then costs their sizes, not 100,000 renderings nobody
 *   may read (one rendered by jsontext_pretty leaves the function out:
 *   40 bytes in all);
 * - a made blob keeps what its bytes are made from and makes any range of
 *   them on demand (items.ndjson: the item listings, so that the file costs
 *   no second copy of the items).
 * All have a digest fixed when they are created (an adopted blob's is
 * computed the first time it is asked for: it holds a page's body, which
 * is the source of other blobs and rarely compared itself, and digesting
 * every page of a job list cost as much as digesting its jobs; so may a
 * rendered blob's whose source holds its bytes, see BLOB_DIGEST_LATER), and a
 * length: fixed too,
 * but for a rendered blob made without one, whose length is measured from
 * its text the first time it is needed (blob_measure): a job list of
 * 200,000 is read for its folders, and nothing needs its jobs' file sizes
 * until a job's file is looked up. Readers go through blob_read and need
 * not know the kind. Any thread may read a blob without a lock.
 */
#ifndef BATCHFS_BLOB_H
#define BATCHFS_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batchfs/buf.h"

enum blob_kind {
    BLOB_HELD,     /* the bytes are in data */
    BLOB_ADOPTED,  /* held too, in a buffer of their own: data points to it */
    BLOB_RENDERED, /* data: the source text and the renderer */
    BLOB_PRETTY,   /* rendered by jsontext_pretty: data, the source text alone */
    BLOB_MADE,     /* data: a blob_maker and its state */
    BLOB_PAGED,    /* data: a blob_pager and its state */
    BLOB_BATCHED,  /* rendered by jsontext_pretty, in a blob_batch: data, its span */
};

/* The length of a rendered blob not measured yet (see blob_measure). */
#define BLOB_LEN_UNMEASURED SIZE_MAX

struct blob {
    unsigned refs;      /* atomic */
    unsigned kind : 8;  /* enum blob_kind */
    unsigned slot : 24; /* BLOB_BATCHED: its place in its batch */
    /* Of the bytes: equal digests = same content. Atomic; read it through
     * blob_get_digest, never directly (0 until asked for in an adopted
     * blob and one made with BLOB_DIGEST_LATER). */
    uint64_t digest;
    /* Atomic: BLOB_LEN_UNMEASURED until measured. Read it through
     * blob_measure or blob_len, never directly. */
    size_t length;
    char data[];      /* held: length bytes and a NUL; else what makes them */
};

/* Renders text into bytes, appending to out: 0 or a negative errno. */
typedef int (*blob_render_fn)(const char *text, size_t len, struct buf *out);

/* Makes the bytes of a made blob. */
struct blob_maker {
    /* Appends bytes [off, off + size) of the content to out (the caller
     * keeps off + size within the blob's length). 0 or a negative errno. */
    int (*make)(const void *state, size_t off, size_t size, struct buf *out);
    void (*free)(void *state); /* with the blob's last reference */
};

/* Keeps the bytes of paged blobs. */
struct blob_pager {
    /* Makes the bytes present (fetching them again if they were dropped)
     * and keeps them until unpin: 0 and *bytes, or a negative errno. */
    int (*pin)(void *state, const char **bytes);
    void (*unpin)(void *state);
    void (*free)(void *state); /* with the blob's last reference */
    size_t footprint;          /* the memory of the blob and its state */
    /* Optional: whether pin would find the bytes at hand, without
     * fetching or waiting (NULL: always). A hint, true or false the moment
     * after. */
    bool (*present)(void *state);
};

/* A blob holding a copy of data, with one reference; NULL on ENOMEM. */
struct blob *blob_new(const char *data, size_t len);

/* A held blob that takes `data` instead of copying it: `data` is a block
 * of bigmem.h (a page's body: see buf_steal_big) with room for len + 1
 * bytes (a NUL is written after them). On failure (NULL, ENOMEM) data is
 * freed. */
struct blob *blob_adopt(char *data, size_t len);

/* blob_adopt of a buffer's bytes, which leaves it empty whatever the
 * outcome: a file made in a buffer of megabytes (errors.tsv,
 * extracted.ndjson) then costs no copy, and its growth and freeing no
 * holes in malloc's heaps (bigmem.h). NULL on ENOMEM. */
struct blob *blob_adopt_buf(struct buf *b);

/* A made blob of `len` bytes whose digest is `digest` (the maker's to
 * compute: it must change whenever the bytes do). Takes `state`: on
 * failure (NULL, ENOMEM) it has already been freed with maker->free. */
struct blob *blob_new_made(const struct blob_maker *maker, void *state, size_t len,
                           uint64_t digest);

/* The digest to give a rendered blob whose source holds its bytes (held or
 * adopted) for it to be the digest of its text, blob_digest(text,
 * text_len), computed the first time it is asked for: most of a listing's
 * files are never compared, and digesting each of a job list's 200,000
 * jobs as it arrived was 3 % of listing it. */
#define BLOB_DIGEST_LATER 0

/* A rendered blob: its bytes are render(text) where text is bytes
 * [off, off + text_len) of the held or paged blob `source`, which it
 * references (taking a reference of its own). `len` and `digest` are the
 * caller's to give: the length render will produce (or
 * BLOB_LEN_UNMEASURED: measured when first needed, see blob_measure), and
 * a digest that changes whenever the bytes do (a digest of the text does,
 * render being a function of it), or BLOB_DIGEST_LATER. NULL on ENOMEM,
 * when source is neither held (or adopted) nor paged, when off or text_len
 * exceeds 4 GiB, or for BLOB_DIGEST_LATER with a paged source. */
struct blob *blob_new_rendered(struct blob *source, size_t off, size_t text_len,
                               blob_render_fn render, size_t len, uint64_t digest);

/*
 * The files of a page's items, rendered by jsontext_pretty from the page,
 * made in one block rather than a malloc chunk each: such a blob takes 32
 * bytes there, where alone it takes a 48-byte chunk (a 40-byte blob, its
 * source among its fields, and malloc's 8), so a million items' files take
 * 15 MiB less, and their freeing leaves no holes in malloc's heaps. The
 * block goes when its last blob does (and the batch is ended).
 */
struct blob_batch;

/* The most blobs a batch holds (the slot is 24 bits). */
#define BLOB_BATCH_MAX ((size_t)1 << 24)

/* A batch with room for `count` (1 to BLOB_BATCH_MAX) blobs rendered from
 * `source`, held or paged, which it references. NULL on ENOMEM, or for a
 * count or source it cannot take. Its maker's (one thread's) until
 * blob_batch_end. */
struct blob_batch *blob_batch_new(struct blob *source, size_t count);

/* blob_new_rendered(source, off, text_len, jsontext_pretty, len, digest)
 * in the batch's next slot, with one reference. NULL when the batch is
 * full, off or text_len lie outside the source, or for BLOB_DIGEST_LATER
 * with a paged source. */
struct blob *blob_batch_add(struct blob_batch *batch, size_t off, size_t text_len,
                            size_t len, uint64_t digest);

/* The maker is done: the block is freed with the last of its blobs (now,
 * if it made none). Safe on NULL. */
void blob_batch_end(struct blob_batch *batch);

/* A paged blob of `len` bytes whose digest is `digest` (what the bytes
 * hash to with blob_digest: the pager's to check on every fetch). Takes
 * `state`: on failure (NULL, ENOMEM) it has already been freed with
 * pager->free. */
struct blob *blob_new_paged(const struct blob_pager *pager, void *state, size_t len,
                            uint64_t digest);

/*
 * The length of the blob's bytes in *len: 0, or a negative errno and *len
 * 0. A rendered blob made without a length is measured the first time
 * (by jsontext_measure for jsontext_pretty, by rendering for another
 * renderer), which pins its source: for a paged source that may fetch it
 * again, whose error is returned; -EIO when the text does not render (it
 * is not valid JSON). The length measured is kept, so that later calls
 * only load it; a failure is not kept (the next call tries again).
 * Thread-safe: any thread may be first, and concurrent measurers store the
 * same value.
 */
int blob_measure(const struct blob *blob, size_t *len);

/* The length of a blob whose length is known: every blob but a rendered
 * one made without a length that blob_measure has not measured yet, for
 * which it is BLOB_LEN_UNMEASURED. Never measures. Thread-safe. */
size_t blob_len(const struct blob *blob);

/* Whether `a` and `b` are the same bytes, as far as can be told without
 * making or measuring them: equal digests, and equal lengths where both
 * are known (a length not measured yet follows from the text the digest
 * was made of). Thread-safe. */
bool blob_same(const struct blob *a, const struct blob *b);

struct blob *blob_ref(struct blob *blob);
void blob_unref(struct blob *blob);

/* The bytes, when the blob holds them (held or adopted); NULL for the
 * other kinds. */
const char *blob_bytes(const struct blob *blob);

/* The state of a paged blob made with `pager`; NULL for any other blob
 * (or NULL). Borrowed: valid while the blob is. Pure. */
void *blob_pager_state(const struct blob *blob, const struct blob_pager *pager);

/*
 * The bytes of a held or paged blob, kept present until blob_unpin: 0 and
 * *bytes; a negative errno when a paged blob's bytes could not be had
 * again (nothing to unpin then); -EINVAL for the other kinds.
 */
int blob_pin(const struct blob *blob, const char **bytes);
void blob_unpin(const struct blob *blob);

/* Whether the blob's bytes (or, rendered, its source's) can be read now
 * without fetching them again (see blob_pager.present). A hint for callers
 * that would rather wait elsewhere than block in blob_read. Thread-safe. */
bool blob_present(const struct blob *blob);

/*
 * The text the blob is rendered from (its own bytes for a held or paged
 * blob), with its length in *len, kept present until blob_text_end: for
 * the JSON files, the same JSON value as the bytes, laid out differently,
 * which is what parsers want. 0 with *text NULL for a made blob (it has no
 * text); a negative errno when the text could not be had again (nothing to
 * end then).
 */
int blob_text_begin(const struct blob *blob, const char **text, size_t *len);
void blob_text_end(const struct blob *blob);

/*
 * Up to `size` bytes from offset `off`: sets *bytes to them and returns how
 * many (0 at or past the end). A held blob's bytes are its own; the others'
 * are made into `scratch`, which the caller frees. A renderer or maker that
 * produces a length other than the one promised gives -EIO, never short or
 * long bytes. A blob not measured yet is measured first (blob_measure's
 * errors). Negative errno on failure.
 */
long blob_read(const struct blob *blob, size_t off, size_t size, struct buf *scratch,
               const char **bytes);

/* The memory a blob stands for, for cache budgets: its own, and for a
 * rendered blob of a held source its share of the source (the text it
 * renders). A paged source is its pager's to count. Never measures. */
size_t blob_footprint(const struct blob *blob);

/* The blob's digest (see struct blob), computed now the first time for an
 * adopted blob and one made with BLOB_DIGEST_LATER. Any thread. */
uint64_t blob_get_digest(const struct blob *blob);

/* A 64-bit digest of len bytes (for equality only, never stored). */
uint64_t blob_digest(const char *data, size_t len);

/* Folds value into a running digest h (to digest a sequence of parts). */
uint64_t blob_digest_fold(uint64_t h, uint64_t value);

#endif
