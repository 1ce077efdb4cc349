/*
 * Unit tests of blobs (fs/blob.c): held bytes, rendered bytes, made bytes,
 * reads by range.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <malloc.h>
#include <pthread.h>

#include "batchfs/bigmem.h"
#include "batchfs/blob.h"
#include "batchfs/buf.h"
#include "batchfs/jsontext.h"

static void test_held_blob(void **state)
{
    struct blob *a = blob_new("abc", 3), *b = blob_new("abc", 3), *c = blob_new("abd", 3);
    struct buf scratch = BUF_INIT;
    const char *bytes;

    (void)state;
    assert_non_null(a);
    assert_int_equal(blob_len(a), 3);
    assert_int_equal(a->data[3], '\0');
    assert_ptr_equal(blob_bytes(a), a->data);
    assert_true(blob_get_digest(a) == blob_get_digest(b));
    assert_true(blob_get_digest(a) != blob_get_digest(c));
    assert_ptr_equal(blob_ref(a), a);
    blob_unref(a);
    /* Reads are clipped to the end and point into the blob itself. */
    assert_int_equal(blob_read(a, 1, 100, &scratch, &bytes), 2);
    assert_ptr_equal(bytes, a->data + 1);
    assert_int_equal(blob_read(a, 3, 10, &scratch, &bytes), 0);
    assert_int_equal(blob_read(a, 99, 10, &scratch, &bytes), 0);
    assert_null(scratch.data);
    blob_unref(a);
    blob_unref(b);
    blob_unref(c);
}

/* A made content: byte i is 'a' + i % 26; `lie` makes it one byte short. */
struct alphabet {
    int lie;
    int freed;
};

static int alphabet_make(const void *state, size_t off, size_t size, struct buf *out)
{
    const struct alphabet *alpha = state;
    int rc = 0;

    if (alpha->lie)
        size--;
    for (size_t i = off; i < off + size && !rc; i++)
        rc = buf_append_char(out, (char)('a' + i % 26));
    return rc;
}

static void alphabet_free(void *state)
{
    ((struct alphabet *)state)->freed++;
}

static const struct blob_maker alphabet_maker = {alphabet_make, alphabet_free};

/* A held blob as big as a mapping is one of bigmem's: freeing it gives
 * its memory back rather than raising malloc's threshold for mapping. One
 * just below stays malloc's. */
static void test_big_held_blob(void **state)
{
    size_t big = BIGMEM_MAP_MIN, mapped = bigmem_mapped();
    char *bytes = malloc(big);
    struct blob *blob, *small;
    const char *out;
    struct buf scratch = BUF_INIT;

    (void)state;
    assert_non_null(bytes);
    memset(bytes, 'x', big);
    bytes[big - 1] = 'y';
    blob = blob_new(bytes, big);
    assert_non_null(blob);
    assert_int_equal(bigmem_mapped(), mapped + 1);
    assert_int_equal(blob_len(blob), big);
    assert_int_equal(blob_read(blob, big - 2, 10, &scratch, &out), 2);
    assert_memory_equal(out, "xy", 2);
    assert_int_equal(blob_get_digest(blob), blob_digest(bytes, big));
    small = blob_new(bytes, 1000);
    assert_non_null(small);
    assert_int_equal(bigmem_mapped(), mapped + 1);
    blob_unref(blob);
    blob_unref(small);
    assert_int_equal(bigmem_mapped(), mapped);
    buf_free(&scratch);
    free(bytes);
}

/* A buffer's bytes adopted, not copied: the buffer is left empty. */
static void test_adopt_buf(void **state)
{
    struct buf b = BUF_INIT, empty = BUF_INIT;
    struct blob *blob;

    (void)state;
    assert_int_equal(buf_append_str(&b, "a\tb\n"), 0);
    blob = blob_adopt_buf(&b);
    assert_non_null(blob);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(blob_len(blob), 4);
    assert_memory_equal(blob_bytes(blob), "a\tb\n", 5);
    assert_int_equal(blob_get_digest(blob), blob_digest("a\tb\n", 4));
    blob_unref(blob);
    blob = blob_adopt_buf(&empty);
    assert_non_null(blob);
    assert_int_equal(blob_len(blob), 0);
    blob_unref(blob);
}

static void test_made_blob(void **state)
{
    struct alphabet alpha = {0, 0};
    struct blob *blob = blob_new_made(&alphabet_maker, &alpha, 100, 42);
    struct buf scratch = BUF_INIT;
    const char *bytes;

    (void)state;
    assert_non_null(blob);
    assert_null(blob_bytes(blob));
    assert_int_equal(blob_len(blob), 100);
    assert_true(blob_get_digest(blob) == 42);
    assert_int_equal(blob_read(blob, 25, 3, &scratch, &bytes), 3);
    assert_memory_equal(bytes, "zab", 3);
    /* Clipped to the length: the maker is never asked for more. */
    assert_int_equal(blob_read(blob, 98, 50, &scratch, &bytes), 2);
    assert_memory_equal(bytes, "uv", 2);
    assert_int_equal(blob_read(blob, 100, 1, &scratch, &bytes), 0);
    /* A maker that hands back the wrong number of bytes is an I/O error,
     * never a short read that would look like the end of the file. */
    alpha.lie = 1;
    assert_int_equal(blob_read(blob, 0, 10, &scratch, &bytes), -EIO);
    buf_free(&scratch);
    blob_ref(blob);
    blob_unref(blob);
    assert_int_equal(alpha.freed, 0);
    blob_unref(blob);
    assert_int_equal(alpha.freed, 1);
}

/* A renderer that upper-cases its text and adds a newline. */
static int shout(const char *text, size_t len, struct buf *out)
{
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        int rc = buf_append_char(out, c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c);

        if (rc)
            return rc;
    }
    return buf_append_char(out, '\n');
}

static int refuse(const char *text, size_t len, struct buf *out)
{
    (void)text;
    (void)len;
    (void)out;
    return -EINVAL;
}

static void test_rendered_blob(void **state)
{
    struct blob *source = blob_new("one|two words|three", 19);
    struct blob *two = blob_new_rendered(source, 4, 9, shout, 10, 7);
    struct blob *liar = blob_new_rendered(source, 0, 3, shout, 3, 8);
    struct blob *broken = blob_new_rendered(source, 0, 3, refuse, 4, 9);
    struct buf scratch = BUF_INIT;
    const char *bytes, *text;
    size_t len;

    (void)state;
    assert_non_null(two);
    assert_null(blob_bytes(two));
    assert_int_equal(blob_len(two), 10);
    assert_true(blob_get_digest(two) == 7);
    /* Its text is the range of the source, in place. */
    assert_int_equal(blob_text_begin(two, &text, &len), 0);
    assert_ptr_equal(text, source->data + 4);
    assert_int_equal(len, 9);
    blob_text_end(two);
    assert_int_equal(blob_text_begin(source, &text, &len), 0);
    assert_ptr_equal(text, source->data);
    assert_int_equal(len, 19);
    blob_text_end(source);
    /* Every range of the rendering, including the last byte. */
    assert_int_equal(blob_read(two, 0, 100, &scratch, &bytes), 10);
    assert_memory_equal(bytes, "TWO WORDS\n", 10);
    assert_int_equal(blob_read(two, 4, 3, &scratch, &bytes), 3);
    assert_memory_equal(bytes, "WOR", 3);
    assert_int_equal(blob_read(two, 9, 8, &scratch, &bytes), 1);
    assert_memory_equal(bytes, "\n", 1);
    assert_int_equal(blob_read(two, 10, 8, &scratch, &bytes), 0);
    /* A renderer that breaks the promised length, or fails, is an error. */
    assert_int_equal(blob_read(liar, 0, 3, &scratch, &bytes), -EIO);
    assert_int_equal(blob_read(broken, 0, 4, &scratch, &bytes), -EINVAL);
    /* The memory it stands for: its own and its share of the source. */
    assert_true(blob_footprint(two) >= sizeof(struct blob) + 9);
    assert_true(blob_footprint(two) < sizeof(struct blob) + 64);
    assert_int_equal(blob_footprint(source), sizeof(struct blob) + 20);
    /* Ranges outside the source, and sources that are not held, are refused. */
    assert_null(blob_new_rendered(source, 15, 5, shout, 6, 0));
    assert_null(blob_new_rendered(source, 20, 0, shout, 1, 0));
    assert_null(blob_new_rendered(two, 0, 1, shout, 2, 0));
    /* The rendered blobs keep the source alive after its owner lets go. */
    blob_unref(source);
    assert_int_equal(blob_read(two, 0, 3, &scratch, &bytes), 3);
    assert_memory_equal(bytes, "TWO", 3);
    buf_free(&scratch);
    blob_unref(liar);
    blob_unref(broken);
    blob_unref(two);
}

/* A pager for the tests: its bytes can be dropped, and fetching them again
 * can be made to fail. */
struct test_pager {
    const char *bytes; /* NULL while dropped */
    const char *source;
    int pins, fetches, frees;
    int fail; /* the error of the next fetch, or 0 */
};

static int test_pin(void *state, const char **bytes)
{
    struct test_pager *p = state;

    if (!p->bytes) {
        if (p->fail)
            return p->fail;
        p->bytes = p->source;
        p->fetches++;
    }
    p->pins++;
    *bytes = p->bytes;
    return 0;
}

static void test_unpin(void *state)
{
    struct test_pager *p = state;

    assert_true(p->pins > 0);
    p->pins--;
}

static void test_pager_free(void *state)
{
    ((struct test_pager *)state)->frees++;
}

static bool test_present(void *state)
{
    return ((struct test_pager *)state)->bytes != NULL;
}

static const struct blob_pager test_pager_ops = {test_pin, test_unpin, test_pager_free, 100,
                                                 test_present};

/* A paged blob's bytes are pinned while read, whether the blob is read
 * itself or rendered from; a failed fetch is the reader's error; what its
 * rendered blobs stand for leaves the page out (the pager counts it). */
static void test_paged_blob(void **state)
{
    static const char text[] = "one|two words|three";
    struct test_pager pager = {.source = text};
    struct blob *page = blob_new_paged(&test_pager_ops, &pager, 19, blob_digest(text, 19));
    struct blob *two;
    struct buf scratch = BUF_INIT;
    const char *bytes, *got;
    size_t len;

    (void)state;
    assert_non_null(page);
    assert_null(blob_bytes(page));
    two = blob_new_rendered(page, 4, 9, shout, 10, 7);
    assert_non_null(two);
    /* Dropped: neither the page nor what is rendered from it is at hand. */
    assert_false(blob_present(page));
    assert_false(blob_present(two));
    /* Reading fetches the dropped bytes, and lets go of them after. */
    assert_int_equal(blob_read(two, 0, 100, &scratch, &bytes), 10);
    assert_memory_equal(bytes, "TWO WORDS\n", 10);
    assert_int_equal(pager.fetches, 1);
    assert_int_equal(pager.pins, 0);
    assert_true(blob_present(page));
    assert_true(blob_present(two));
    assert_int_equal(blob_read(page, 14, 100, &scratch, &bytes), 5);
    assert_memory_equal(bytes, "three", 5);
    assert_int_equal(pager.pins, 0);
    /* Text stays pinned between begin and end. */
    assert_int_equal(blob_text_begin(two, &got, &len), 0);
    assert_ptr_equal(got, text + 4);
    assert_int_equal(len, 9);
    assert_int_equal(pager.pins, 1);
    blob_text_end(two);
    assert_int_equal(pager.pins, 0);
    assert_int_equal(blob_pin(page, &got), 0);
    assert_ptr_equal(got, text);
    blob_unpin(page);
    assert_int_equal(blob_pin(two, &got), -EINVAL); /* not a kind with bytes */
    /* Dropped, and the fetch fails: every reader gets the error. */
    pager.bytes = NULL;
    pager.fail = -ETIMEDOUT;
    assert_int_equal(blob_read(two, 0, 10, &scratch, &bytes), -ETIMEDOUT);
    assert_int_equal(blob_read(page, 0, 10, &scratch, &bytes), -ETIMEDOUT);
    assert_int_equal(blob_text_begin(two, &got, &len), -ETIMEDOUT);
    assert_int_equal(pager.pins, 0);
    /* The page is its pager's to count. */
    assert_true(blob_footprint(two) < sizeof(struct blob) + 9 + 32);
    assert_int_equal(blob_footprint(page), sizeof(struct blob) + 16 + 100);
    /* The pager's state goes with the page's last reference. */
    blob_unref(page);
    assert_int_equal(pager.frees, 0);
    blob_unref(two);
    assert_int_equal(pager.frees, 1);
    buf_free(&scratch);
}

/* An adopted blob holds the very buffer it was given (ASan checks that it
 * frees it, once). */
static void test_adopted_blob(void **state)
{
    char *data = bigmem_resize(NULL, 8);
    struct blob *held = blob_new("one two", 7), *adopted, *two;
    struct buf scratch = BUF_INIT;
    const char *bytes, *text;
    size_t len;

    (void)state;
    assert_non_null(data);
    memcpy(data, "one twoX", 8);
    adopted = blob_adopt(data, 7);
    assert_non_null(adopted);
    assert_ptr_equal(blob_bytes(adopted), data);
    assert_int_equal(data[7], '\0');
    assert_int_equal(blob_len(adopted), 7);
    /* Its digest is made when first asked for: the same as a copy's. */
    assert_true(adopted->digest == 0);
    assert_true(blob_get_digest(adopted) == blob_get_digest(held));
    assert_true(blob_same(adopted, held));
    assert_int_equal(blob_text_begin(adopted, &text, &len), 0);
    assert_ptr_equal(text, data);
    assert_int_equal(len, 7);
    blob_text_end(adopted);
    assert_int_equal(blob_read(adopted, 4, 10, &scratch, &bytes), 3);
    assert_ptr_equal(bytes, data + 4);
    assert_int_equal(blob_footprint(adopted), blob_footprint(held));
    /* A source for rendered blobs, as a held blob is. */
    two = blob_new_rendered(adopted, 4, 3, shout, 4, 1);
    assert_non_null(two);
    blob_unref(adopted);
    assert_int_equal(blob_read(two, 0, 4, &scratch, &bytes), 4);
    assert_memory_equal(bytes, "TWO\n", 4);
    buf_free(&scratch);
    blob_unref(two);
    blob_unref(held);
}

/* jsontext_pretty by another name: the general form of a rendered blob. */
static int pretty_too(const char *text, size_t len, struct buf *out)
{
    return jsontext_pretty(text, len, out);
}

/* A blob rendered by jsontext_pretty, as every item's file is, reads as
 * the general form does and takes a 48-byte chunk of malloc's, not 64. */
static void test_pretty_blob(void **state)
{
    static const char text[] = "{\"item_id\":\"itm-1\",\"n\":[1,2]}";
    struct buf want = BUF_INIT, scratch = BUF_INIT, scratch2 = BUF_INIT;
    struct blob *source = blob_new(text, strlen(text)), *pretty, *general;
    const char *a, *b;

    (void)state;
    assert_int_equal(jsontext_pretty(text, strlen(text), &want), 0);
    pretty = blob_new_rendered(source, 0, strlen(text), jsontext_pretty, want.len, 1);
    general = blob_new_rendered(source, 0, strlen(text), pretty_too, want.len, 1);
    assert_non_null(pretty);
    assert_non_null(general);
    assert_int_equal(blob_read(pretty, 0, 4096, &scratch, &a), (long)want.len);
    assert_int_equal(blob_read(general, 0, 4096, &scratch2, &b), (long)want.len);
    assert_memory_equal(a, want.data, want.len);
    assert_memory_equal(b, want.data, want.len);
    assert_int_equal(blob_read(pretty, 3, 5, &scratch, &a), 5);
    assert_memory_equal(a, want.data + 3, 5);
    assert_true(blob_present(pretty));
    assert_true(blob_footprint(pretty) < blob_footprint(general));
    assert_true(malloc_usable_size(pretty) <= 40);
    /* An offset beyond its source is refused. */
    assert_null(blob_new_rendered(source, (size_t)UINT32_MAX + 1, 0, jsontext_pretty, 0, 0));
    blob_unref(pretty);
    blob_unref(general);
    blob_unref(source);
    buf_free(&want);
    buf_free(&scratch);
    buf_free(&scratch2);
}

/* A rendered file of a held page may leave its digest for later: it is
 * then the digest of its text, made when first asked for, the same as one
 * given up front; a paged source (whose text may be gone) is refused it. */
static void test_digest_later(void **state)
{
    static const char text[] = "[{\"a\":1},{\"b\":[2,3]}]";
    static const size_t off[] = {1, 9}, text_len[] = {7, 11};
    struct blob *page = blob_new(text, strlen(text)), *later[3], *now;
    struct test_pager pager = {.source = text};
    struct blob *paged = blob_new_paged(&test_pager_ops, &pager, strlen(text),
                                        blob_digest(text, strlen(text)));
    struct blob_batch *batch, *paged_batch;

    (void)state;
    assert_non_null(page);
    assert_non_null(paged);
    batch = blob_batch_new(page, 2);
    assert_non_null(batch);
    for (size_t i = 0; i < 2; i++) {
        later[i] = blob_batch_add(batch, off[i], text_len[i], BLOB_LEN_UNMEASURED,
                                  BLOB_DIGEST_LATER);
        assert_non_null(later[i]);
        assert_true(later[i]->digest == 0); /* not made yet */
    }
    blob_batch_end(batch);
    later[2] = blob_new_rendered(page, off[1], text_len[1], jsontext_pretty,
                                 BLOB_LEN_UNMEASURED, BLOB_DIGEST_LATER);
    assert_non_null(later[2]);
    now = blob_new_rendered(page, off[1], text_len[1], jsontext_pretty,
                            BLOB_LEN_UNMEASURED, blob_digest(text + off[1], text_len[1]));
    assert_non_null(now);
    for (size_t i = 0; i < 2; i++) {
        assert_true(blob_get_digest(later[i]) == blob_digest(text + off[i], text_len[i]));
        assert_true(later[i]->digest ==
                    blob_digest(text + off[i], text_len[i])); /* kept */
    }
    assert_true(blob_same(later[1], now));
    assert_true(blob_same(later[2], now));
    assert_false(blob_same(later[0], now));
    /* A paged source cannot promise its text later. */
    paged_batch = blob_batch_new(paged, 1);
    assert_non_null(paged_batch);
    assert_null(blob_batch_add(paged_batch, off[0], text_len[0], BLOB_LEN_UNMEASURED,
                               BLOB_DIGEST_LATER));
    blob_batch_end(paged_batch);
    assert_null(blob_new_rendered(paged, off[0], text_len[0], jsontext_pretty,
                                  BLOB_LEN_UNMEASURED, BLOB_DIGEST_LATER));
    for (size_t i = 0; i < 3; i++)
        blob_unref(later[i]);
    blob_unref(now);
    blob_unref(page);
    blob_unref(paged);
    assert_int_equal(pager.fetches, 0);
}

/* A page's files in one batch read as blobs of their own do, each 32
 * bytes of the block; the block and the page's pager stay until the last
 * of them goes, in any order (ASan checks that the block goes once), and a
 * full batch or a span outside the page makes none. */
static void test_batch(void **state)
{
    static const char text[] = "[{\"a\":1},{\"b\":[2,3]},{\"c\":\"x\"}]";
    static const size_t off[] = {1, 9, 21}, text_len[] = {7, 11, 9};
    struct test_pager pager = {.source = text};
    struct blob *page = blob_new_paged(&test_pager_ops, &pager, strlen(text),
                                       blob_digest(text, strlen(text)));
    struct blob_batch *batch;
    struct blob *files[3];
    struct buf want = BUF_INIT, scratch = BUF_INIT;
    const char *bytes, *got;
    size_t len;

    (void)state;
    assert_non_null(page);
    assert_null(blob_batch_new(page, 0));
    assert_null(blob_batch_new(page, BLOB_BATCH_MAX + 1));
    batch = blob_batch_new(page, 3);
    assert_non_null(batch);
    assert_null(blob_batch_add(batch, strlen(text), 1, 1, 1)); /* outside the page */
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(jsontext_pretty_length(text + off[i], text_len[i], &len), 0);
        /* The second is left for blob_measure. */
        files[i] = blob_batch_add(batch, off[i], text_len[i],
                                  i == 1 ? BLOB_LEN_UNMEASURED : len, 10 + i);
        assert_non_null(files[i]);
    }
    assert_null(blob_batch_add(batch, 0, 1, 1, 1)); /* full */
    /* Each 32 bytes, next to each other in one block. */
    assert_int_equal((char *)files[1] - (char *)files[0], 32);
    assert_int_equal((char *)files[2] - (char *)files[1], 32);
    blob_batch_end(batch);
    blob_unref(page); /* the batch keeps it */
    assert_int_equal(pager.frees, 0);
    assert_int_equal(jsontext_pretty(text + off[1], text_len[1], &want), 0);
    assert_false(blob_present(files[1])); /* the page is not fetched yet */
    assert_int_equal(blob_measure(files[1], &len), 0);
    assert_int_equal(len, want.len);
    assert_int_equal(pager.fetches, 1);
    assert_int_equal(blob_read(files[1], 0, 4096, &scratch, &bytes), (long)want.len);
    assert_memory_equal(bytes, want.data, want.len);
    assert_int_equal(pager.pins, 0);
    assert_true(blob_present(files[1]));
    assert_true(blob_get_digest(files[1]) == 11);
    assert_int_equal(blob_text_begin(files[2], &got, &len), 0);
    assert_ptr_equal(got, text + off[2]);
    assert_int_equal(len, text_len[2]);
    blob_text_end(files[2]);
    assert_int_equal(pager.pins, 0);
    /* Its own bytes and its span: the page is its pager's to count. */
    assert_int_equal(blob_footprint(files[0]), 32);
    /* Freed in any order; the page goes with the last. */
    blob_ref(files[0]);
    blob_unref(files[0]);
    blob_unref(files[1]);
    blob_unref(files[0]);
    assert_int_equal(pager.frees, 0);
    assert_int_equal(blob_read(files[2], 0, 3, &scratch, &bytes), 3);
    assert_memory_equal(bytes, "{\n ", 3);
    blob_unref(files[2]);
    assert_int_equal(pager.frees, 1);
    /* A batch that made nothing goes when it is ended, and its source with
     * it. */
    pager.frees = 0;
    page = blob_new_paged(&test_pager_ops, &pager, strlen(text), 1);
    batch = blob_batch_new(page, 2);
    blob_unref(page);
    blob_batch_end(batch);
    assert_int_equal(pager.frees, 1);
    blob_batch_end(NULL);
    buf_free(&want);
    buf_free(&scratch);
}

/* A job's text as a job list gives it, in a page with others around it. */
static const char job_page[] =
    "{\"items\": [{\"id\": \"bjb-1\", \"status\": \"running\", \"n\": [1, 2.50, null],"
    " \"o\": {\"k\": \"\\u00e9\\n\"}}, {\"id\": \"bjb-2\"}], \"total_size\": 2}";
#define JOB_OFF 11
#define JOB_LEN 82

/* A rendered blob made without a length has none until something needs it:
 * the first to ask measures it from the text (the bytes jsontext_pretty
 * writes), and keeps it. What it stands for is known without measuring. */
static void test_lazy_length(void **state)
{
    struct blob *page = blob_new(job_page, strlen(job_page));
    struct blob *job, *again, *other;
    struct buf want = BUF_INIT, scratch = BUF_INIT;
    const char *bytes;
    size_t len, footprint;

    (void)state;
    assert_memory_equal(job_page + JOB_OFF, "{\"id\": \"bjb-1\"", 14);
    assert_memory_equal(job_page + JOB_OFF + JOB_LEN - 2, "}}", 2);
    assert_int_equal(jsontext_pretty(job_page + JOB_OFF, JOB_LEN, &want), 0);
    job = blob_new_rendered(page, JOB_OFF, JOB_LEN, jsontext_pretty, BLOB_LEN_UNMEASURED,
                            blob_digest(job_page + JOB_OFF, JOB_LEN));
    assert_non_null(job);
    assert_int_equal(blob_len(job), BLOB_LEN_UNMEASURED);
    /* Counted without measuring: itself and its share of the page. */
    footprint = blob_footprint(job);
    assert_true(footprint >= JOB_LEN && footprint < JOB_LEN + 64);
    assert_true(blob_present(job));
    assert_int_equal(blob_len(job), BLOB_LEN_UNMEASURED);
    /* The first to ask measures. */
    assert_int_equal(blob_measure(job, &len), 0);
    assert_int_equal(len, want.len);
    assert_int_equal(blob_len(job), want.len);
    assert_int_equal(blob_measure(job, &len), 0);
    assert_int_equal(len, want.len);
    assert_int_equal(blob_footprint(job), footprint);
    /* Every range reads as the pretty-printed text, the last byte too. */
    assert_int_equal(blob_read(job, 0, 1 << 20, &scratch, &bytes), (long)want.len);
    assert_memory_equal(bytes, want.data, want.len);
    assert_int_equal(blob_read(job, want.len - 1, 10, &scratch, &bytes), 1);
    assert_int_equal(bytes[0], '\n');
    assert_int_equal(blob_read(job, want.len, 10, &scratch, &bytes), 0);
    /* A reader may be the first: blob_read measures, then reads. */
    again =
        blob_new_rendered(page, JOB_OFF, JOB_LEN, jsontext_pretty, BLOB_LEN_UNMEASURED,
                          blob_digest(job_page + JOB_OFF, JOB_LEN));
    assert_non_null(again);
    assert_int_equal(blob_read(again, 5, 7, &scratch, &bytes), 7);
    assert_memory_equal(bytes, want.data + 5, 7);
    assert_int_equal(blob_len(again), want.len);
    blob_unref(again);
    /* The same text, not measured yet, is the same file; measured at
     * another length it is not (a digest that collided). */
    again = blob_new_rendered(page, JOB_OFF, JOB_LEN, jsontext_pretty,
                              BLOB_LEN_UNMEASURED, blob_get_digest(job));
    other = blob_new_rendered(page, JOB_OFF, JOB_LEN, jsontext_pretty, want.len + 1,
                              blob_get_digest(job));
    assert_true(blob_same(job, again));
    assert_true(blob_same(again, other));
    assert_false(blob_same(job, other));
    assert_int_equal(blob_len(again), BLOB_LEN_UNMEASURED);
    blob_unref(again);
    blob_unref(other);
    other = blob_new_rendered(page, JOB_OFF, JOB_LEN, jsontext_pretty,
                              BLOB_LEN_UNMEASURED, blob_get_digest(job) + 1);
    assert_false(blob_same(job, other));
    blob_unref(other);
    blob_unref(job);
    blob_unref(page);
    buf_free(&want);
    buf_free(&scratch);
}

/* Another renderer is measured by rendering; text that does not render is
 * an I/O error for whoever asks, with no length kept, never a wrong one. */
static void test_lazy_length_failures(void **state)
{
    static const char text[] = "{\"id\": \"bjb-1\", \"n\": [1,";
    struct blob *source = blob_new(text, strlen(text));
    struct blob *broken, *shouted, *refused;
    struct buf scratch = BUF_INIT;
    const char *bytes;
    size_t len = 99;

    (void)state;
    broken = blob_new_rendered(source, 0, strlen(text), jsontext_pretty,
                               BLOB_LEN_UNMEASURED, 1);
    shouted = blob_new_rendered(source, 1, 5, shout, BLOB_LEN_UNMEASURED, 2);
    refused = blob_new_rendered(source, 0, 3, refuse, BLOB_LEN_UNMEASURED, 3);
    assert_non_null(broken);
    assert_non_null(shouted);
    assert_non_null(refused);
    assert_int_equal(blob_measure(broken, &len), -EIO);
    assert_int_equal(len, 0);
    assert_int_equal(blob_len(broken), BLOB_LEN_UNMEASURED);
    assert_int_equal(blob_read(broken, 0, 10, &scratch, &bytes), -EIO);
    assert_null(bytes);
    assert_int_equal(blob_measure(broken, &len), -EIO);
    assert_int_equal(blob_measure(refused, &len), -EIO);
    assert_int_equal(blob_read(refused, 0, 10, &scratch, &bytes), -EIO);
    assert_int_equal(blob_measure(shouted, &len), 0);
    assert_int_equal(len, 6);
    assert_int_equal(blob_read(shouted, 0, 10, &scratch, &bytes), 6);
    assert_memory_equal(bytes, "\"ID\":\n", 6);
    blob_unref(broken);
    blob_unref(shouted);
    blob_unref(refused);
    blob_unref(source);
    buf_free(&scratch);
}

/* Measuring a blob of a paged source fetches the page if it was dropped;
 * a failed fetch is the measurer's error, and the next one tries again. */
static void test_lazy_length_paged(void **state)
{
    struct test_pager pager = {.source = job_page};
    struct blob *page = blob_new_paged(&test_pager_ops, &pager, strlen(job_page),
                                       blob_digest(job_page, 1));
    struct blob *job;
    struct buf want = BUF_INIT;
    size_t len;

    (void)state;
    assert_int_equal(jsontext_pretty(job_page + JOB_OFF, JOB_LEN, &want), 0);
    job = blob_new_rendered(page, JOB_OFF, JOB_LEN, jsontext_pretty, BLOB_LEN_UNMEASURED,
                            1);
    assert_non_null(job);
    /* A paged source is its pager's to count: measuring never runs. */
    assert_true(blob_footprint(job) < sizeof(struct blob) + 32);
    assert_int_equal(pager.fetches, 0);
    pager.fail = -ETIMEDOUT;
    assert_int_equal(blob_measure(job, &len), -ETIMEDOUT);
    assert_int_equal(blob_len(job), BLOB_LEN_UNMEASURED);
    pager.fail = 0;
    assert_int_equal(blob_measure(job, &len), 0);
    assert_int_equal(len, want.len);
    assert_int_equal(pager.fetches, 1);
    assert_int_equal(pager.pins, 0);
    /* Measured once: dropped again, the length needs no fetch. */
    pager.bytes = NULL;
    pager.fail = -ETIMEDOUT;
    assert_int_equal(blob_measure(job, &len), 0);
    assert_int_equal(len, want.len);
    assert_int_equal(pager.fetches, 1);
    blob_unref(job);
    blob_unref(page);
    buf_free(&want);
}

#define MEASURERS 8
#define MEASURE_ROUNDS 64

/* What each thread of test_lazy_length_concurrent does. */
struct measurer {
    pthread_barrier_t *start;
    struct blob **jobs; /* MEASURE_ROUNDS of them, none measured */
    size_t lens[MEASURE_ROUNDS];
    int rcs[MEASURE_ROUNDS];
    bool read; /* reads instead of measuring */
};

static void *measure_jobs(void *arg)
{
    struct measurer *m = arg;
    struct buf scratch = BUF_INIT;
    const char *bytes;

    pthread_barrier_wait(m->start);
    for (size_t i = 0; i < MEASURE_ROUNDS; i++) {
        if (m->read) {
            long n = blob_read(m->jobs[i], 0, 1 << 20, &scratch, &bytes);

            m->rcs[i] = n < 0 ? (int)n : 0;
            m->lens[i] = n < 0 ? 0 : (size_t)n;
        } else {
            m->rcs[i] = blob_measure(m->jobs[i], &m->lens[i]);
        }
    }
    buf_free(&scratch);
    return NULL;
}

/* Any thread may be the first to measure; those measuring at once all get
 * the one length (run under ThreadSanitizer: the length is stored
 * atomically). */
static void test_lazy_length_concurrent(void **state)
{
    struct blob *page = blob_new(job_page, strlen(job_page));
    struct blob *jobs[MEASURE_ROUNDS];
    struct measurer m[MEASURERS];
    pthread_t threads[MEASURERS];
    pthread_barrier_t start;
    struct buf want = BUF_INIT;

    (void)state;
    assert_int_equal(jsontext_pretty(job_page + JOB_OFF, JOB_LEN, &want), 0);
    for (size_t i = 0; i < MEASURE_ROUNDS; i++) {
        jobs[i] = blob_new_rendered(page, JOB_OFF, JOB_LEN, jsontext_pretty,
                                    BLOB_LEN_UNMEASURED, 1);
        assert_non_null(jobs[i]);
    }
    assert_int_equal(pthread_barrier_init(&start, NULL, MEASURERS), 0);
    for (size_t t = 0; t < MEASURERS; t++) {
        m[t] = (struct measurer){.start = &start, .jobs = jobs, .read = t % 2};
        assert_int_equal(pthread_create(&threads[t], NULL, measure_jobs, &m[t]), 0);
    }
    for (size_t t = 0; t < MEASURERS; t++)
        assert_int_equal(pthread_join(threads[t], NULL), 0);
    for (size_t t = 0; t < MEASURERS; t++) {
        for (size_t i = 0; i < MEASURE_ROUNDS; i++) {
            assert_int_equal(m[t].rcs[i], 0);
            assert_int_equal(m[t].lens[i], want.len);
        }
    }
    for (size_t i = 0; i < MEASURE_ROUNDS; i++) {
        assert_int_equal(blob_len(jobs[i]), want.len);
        blob_unref(jobs[i]);
    }
    pthread_barrier_destroy(&start);
    blob_unref(page);
    buf_free(&want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_held_blob),
        cmocka_unit_test(test_big_held_blob),
        cmocka_unit_test(test_adopt_buf),
        cmocka_unit_test(test_made_blob),
        cmocka_unit_test(test_rendered_blob),
        cmocka_unit_test(test_pretty_blob),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_digest_later),
        cmocka_unit_test(test_paged_blob),
        cmocka_unit_test(test_adopted_blob),
        cmocka_unit_test(test_lazy_length),
        cmocka_unit_test(test_lazy_length_failures),
        cmocka_unit_test(test_lazy_length_paged),
        cmocka_unit_test(test_lazy_length_concurrent),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
