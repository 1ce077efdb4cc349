/*
 * builder — a listing made from the API's pages (see
 * include/batchfs/builder.h).
 *
 * For: turning the objects of a listing's pages into its entries. As each
 * page arrives, its objects' fields are read and their files measured; the
 * page's body is kept and each item's file is rendered from it when read
 * (objects over 64 KiB are rendered once, up front). Pages of items are
 * rendered on the threads that fetched them; decoded strings go to one
 * arena, and room is made once from the size a listing announces, so that
 * a folder of 100,000 items is not copied step by step. At the end the
 * entries are named (names.c) and, but for items, sorted; items keep the
 * API's order and get an index by name.
 * Not for: which request a listing answers, how long it stays fresh, or
 * where it is kept: catalog.c and the cache decide that.
 */
#include "batchfs/builder.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "batchfs/bigmem.h"
#include "batchfs/blob.h"
#include "batchfs/listing.h"
#include "batchfs/jsontext.h"
#include "batchfs/listpages.h"
#include "batchfs/log.h"
#include "batchfs/names.h"
#include "batchfs/pagecache.h"

/* The fields of an object that the builder reads, in the order of
 * builder_field_keys. A job's counters are read from jobs only. */
enum builder_field {
    FIELD_STATUS,
    FIELD_ITEM_NAME,
    FIELD_TIMES, /* the timestamps, most final first: the first one present
                    that parses is the file's time */
    FIELD_COUNT = FIELD_TIMES + 5,
    FIELD_COUNTERS = FIELD_COUNT, /* a job's, in builder_job's order */
    FIELD_JOB_COUNT = FIELD_COUNTERS + BUILDER_JOB_COUNTERS,
};

static const char *const builder_field_keys[FIELD_JOB_COUNT] = {
    "status",          "item_name",    "completed_at",  "updated_at",
    "started_at",      "effective_at", "created_at",    "total_items",
    "processed_items", "failed_items", "skipped_items",
};

/* How many of builder_field_keys the objects of `kind` are read for. */
static size_t builder_field_count(enum listing_kind kind)
{
    return kind == LISTING_JOBS || kind == LISTING_JOB ? FIELD_JOB_COUNT : FIELD_COUNT;
}

void builder_discard(struct builder *b)
{
    api_charge_update(b->charge, &b->charged, 0);
    names_free(b->names);
    blob_unref(b->last_page);
    bigmem_free(b->strings);
    free(b->jobs);
    buf_free(&b->arena);
    buf_free(&b->scratch);
    listing_release(b->listing);
    memset(b, 0, sizeof(*b));
}

/*
 * names_id_fn of a folder of items: the item_id of entry `index`, read
 * from its file's text as the API layer read it from the page (its page
 * fetched again if it was dropped: the pagecache checks that it is the
 * same). Called while the folder is named, for colliding names only, so
 * that naming a million items holds none of their ids (names.h).
 */
static int builder_load_item_id(void *arg, size_t index, struct buf *out)
{
    const struct builder *b = arg;
    const struct entry *e =
        index < b->listing->count ? &b->listing->entries[index] : NULL;
    struct json_span span;
    const char *text;
    size_t len, id_len;
    int rc;

    if (!e || !e->content)
        return -EIO;
    rc = blob_text_begin(e->content, &text, &len);
    if (rc)
        return rc;
    rc = jsontext_member(text, len, "item_id", &span);
    if (!rc)
        rc = buf_reserve(out, span.len);
    if (!rc) {
        /* Decoded as when it was listed: a usable id, or it would not be
         * here. */
        id_len = listpages_decode_clean(text, span, out->data + out->len);
        out->len += id_len;
        rc = id_len ? 0 : -EIO;
    }
    blob_text_end(e->content);
    return rc == -EINVAL || rc == -ENOENT ? -EIO : rc;
}

int builder_init(struct builder *b, enum listing_kind kind, const char *what)
{
    memset(b, 0, sizeof(*b));
    b->listing = listing_new(kind);
    if (!b->listing)
        return -ENOMEM;
    b->listing->bytes = sizeof(*b->listing);
    b->what = what;
    b->last_status_len = BUILDER_NO_STRING;
    b->arena = (struct buf)BUF_INIT_BIG;
    b->named_by_id = kind == LISTING_BATCH;
    b->n_fields = builder_field_count(kind);
    if (kind == LISTING_ITEMS || kind == LISTING_BATCH) {
        int rc;

        b->names = names_new(".json", &rc);
        /* The ids of items are in their pages, and the API layer let no
         * id repeat (listpages.h): only those that name files are kept.
         * A batch's results keep their ids (builder_place_all). */
        if (b->names && kind == LISTING_ITEMS)
            rc = names_ids_on_demand(b->names, builder_load_item_id, b);
        if (!b->names || rc) {
            builder_discard(b);
            return rc;
        }
    }
    return 0;
}

/* Keeps bytes in the arena, with a NUL after them; *at is where they went.
 * -ENOMEM beyond the 4 GiB that builder_strings can point into. */
static int builder_keep(struct builder *b, const char *data, size_t len, uint32_t *at)
{
    int rc;

    if (len >= UINT32_MAX - b->arena.len)
        return -ENOMEM;
    if ((rc = buf_reserve(&b->arena, len + 1)))
        return rc;
    *at = (uint32_t)b->arena.len;
    memcpy(b->arena.data + b->arena.len, data, len);
    b->arena.data[b->arena.len + len] = '\0';
    b->arena.len += len + 1;
    return 0;
}

/* Keeps a status in the arena for `strings`, sharing the one kept last
 * when it is the same. 0 or -ENOMEM. */
static int builder_keep_status(struct builder *b, const char *status, size_t len,
                               struct builder_strings *strings)
{
    int rc = 0;

    if (b->last_status_len != len ||
        memcmp(b->arena.data + b->last_status, status, len) != 0) {
        rc = builder_keep(b, status, len, &b->last_status);
        b->last_status_len = rc ? BUILDER_NO_STRING : (uint32_t)len;
    }
    if (!rc) {
        strings->status = b->last_status;
        strings->status_len = b->last_status_len;
    }
    return rc;
}

/* What one object renders to before it joins a listing; made on any thread. */
struct rendered {
    struct blob *content;
    struct blob *source; /* the page it was rendered from (borrowed), or NULL */
    size_t line_len; /* its compact JSON's length */
    struct timespec mtime;
    const char *status, *name; /* decoded; lengths BUILDER_ABSENT when none */
    size_t status_len, name_len;
    /* A job's counters (read for jobs only): see struct builder_job. */
    size_t counts[BUILDER_JOB_COUNTERS];
    bool known[BUILDER_JOB_COUNTERS];
};

/* Decodes the string at `span` of `text` into *at (advanced past it and
 * its NUL); *len is BUILDER_ABSENT when the value is not a string. */
static void builder_decode(const char *text, struct json_span span, char **at,
                           const char **out, size_t *len)
{
    *out = NULL;
    if (!span.len || text[span.start] != '"' ||
        jsontext_string(text + span.start, span.len, *at, len) < 0) {
        *len = BUILDER_ABSENT; /* not a string (the text itself is valid) */
        return;
    }
    *out = *at;
    *at += *len + 1;
}

/* The file time of an object: the first of its timestamps that parses. */
static struct timespec builder_object_mtime(const char *text,
                                            const struct json_span *times)
{
    struct timespec ts = {0, 0};

    for (size_t i = 0; i < FIELD_COUNT - FIELD_TIMES; i++) {
        char stamp[64];
        size_t len;

        if (times[i].len && times[i].len <= sizeof(stamp) &&
            text[times[i].start] == '"' &&
            !jsontext_string(text + times[i].start, times[i].len, stamp, &len) &&
            !memchr(stamp, '\0', len) && !listing_parse_time(stamp, &ts))
            return ts;
    }
    return ts;
}

/* Objects up to this size are pretty-printed on each read of their file;
 * bigger ones once, up front, so that reading a big file in 128 KiB pieces
 * does not render it once per piece. */
#define BUILDER_RENDER_ON_READ_MAX (64u << 10)

/* Sets *content to the file of an object whose text is bytes
 * [off, off + object->raw_len) of `source` (or NULL: no source): rendered on
 * read when the object is small, else pretty-printed now through `scratch`;
 * and *line_len to the length of its compact form, so that items.ndjson is
 * measured without reading the items again. A small object without a
 * source is rendered from a copy of its text when it is a job (`job`), and
 * pretty-printed now otherwise. A job's file is not measured here either:
 * its length is measured when the file is first looked up (blob_measure),
 * since a job list of 200,000 is read for its folders and measuring every
 * job cost what pretty-printing them did; jobs have no items.ndjson, so
 * their line is left unmeasured (0). Its digest is of its text, as every
 * rendered file's is, whether it came in a page or alone. A file rendered
 * from `source` is made in `batch`, the page's (blob.h), unless that is
 * NULL. */
static int builder_content(const struct api_object *object, struct blob *source,
                           size_t off, struct blob_batch *batch, bool job,
                           struct buf *scratch, struct blob **content, size_t *line_len)
{
    struct blob *copy = NULL;
    size_t len = BLOB_LEN_UNMEASURED;
    uint64_t digest;
    int rc;

    *content = NULL;
    *line_len = 0;
    if (!job && (rc = jsontext_measure(object->raw, object->raw_len, &len, line_len)))
        return rc;
    if (object->raw_len > BUILDER_RENDER_ON_READ_MAX || (!source && !job)) {
        buf_reset(scratch);
        rc = jsontext_pretty(object->raw, object->raw_len, scratch);
        if (rc)
            return rc;
        *content = blob_new(scratch->data, scratch->len);
        return *content ? 0 : -ENOMEM;
    }
    if (!source) {
        source = copy = blob_new(object->raw, object->raw_len);
        off = 0;
        if (!copy)
            return -ENOMEM;
    }
    /* A page held whole (not a pager's) is there to digest when asked. */
    digest = blob_bytes(source) ? BLOB_DIGEST_LATER
                                : blob_digest(object->raw, object->raw_len);
    *content = batch ? blob_batch_add(batch, off, object->raw_len, len, digest)
                     : blob_new_rendered(source, off, object->raw_len, jsontext_pretty,
                                         len, digest);
    blob_unref(copy);
    return *content ? 0 : -ENOMEM;
}

/*
 * Renders one API object: its file (see builder_content), its time, and its
 * status and item name decoded at *strings, which needs room for the text
 * of those two values (object->fields says where it is; without fields,
 * object->raw_len bytes): decoded strings never outgrow their quoted text.
 * *strings is advanced past what they took. With n_fields FIELD_JOB_COUNT,
 * also a job's counters. Pure apart from allocating the blob; any thread.
 */
static int builder_render(const struct api_object *object, struct blob *source,
                          size_t off, struct blob_batch *batch, struct buf *scratch,
                          char **strings, size_t n_fields, struct rendered *out)
{
    struct json_span found[FIELD_JOB_COUNT];
    const struct json_span *fields = object->fields;
    int rc;

    memset(out, 0, sizeof(*out));
    /* A page's objects come with them, found while the API read the page. */
    if (!fields) {
        rc = jsontext_members(object->raw, object->raw_len, builder_field_keys, n_fields,
                              found);
        if (rc)
            return rc;
        fields = found;
    }
    for (size_t i = 0; n_fields == FIELD_JOB_COUNT && i < BUILDER_JOB_COUNTERS; i++)
        out->known[i] =
            fields[FIELD_COUNTERS + i].len &&
            jsontext_count(object->raw, fields[FIELD_COUNTERS + i], &out->counts[i]);
    rc = builder_content(object, source, off, batch, n_fields == FIELD_JOB_COUNT, scratch,
                         &out->content, &out->line_len);
    if (rc)
        return rc;
    out->source = source;
    out->mtime = builder_object_mtime(object->raw, fields + FIELD_TIMES);
    builder_decode(object->raw, fields[FIELD_STATUS], strings, &out->status,
                   &out->status_len);
    builder_decode(object->raw, fields[FIELD_ITEM_NAME], strings, &out->name,
                   &out->name_len);
    return 0;
}

/* A page of objects rendered on the thread that fetched it. */
struct rendered_page {
    struct blob *source; /* the page's body, which objects' raw point into */
    size_t count;
    struct rendered *items; /* [count], in the same block */
    char *strings;          /* the decoded strings, in the same block */
};

/* api_preparer.release: the page's blobs (entries hold their own
 * references) and the block. */
static void builder_release_page(void *arg, void *state)
{
    struct rendered_page *page = state;

    (void)arg;
    for (size_t i = 0; i < page->count; i++)
        blob_unref(page->items[i].content);
    if (page->source)
        blob_unpin(page->source); /* pinned while its objects were read */
    blob_unref(page->source);
    bigmem_free(page);
}

/* The page's body as a blob: the source its items' files are rendered
 * from. Taken, not copied (copying every page into fresh memory cost more
 * than rendering did), and not moved: the objects point into it. Kept in
 * the builder's pagecache (pinned until the page is released) when the
 * page can be fetched again by `again`, else held by the listing. */
static struct blob *builder_page_source(const struct builder *b, struct buf *body,
                                        const char *again)
{
    size_t len = body->len;
    char *bytes = buf_steal_big(body); /* where it is: the body is big */

    if (!bytes)
        return NULL;
    if (b->pages && again)
        return pagecache_add(b->pages, bytes, len, b->fetch_again, b->fetch_arg, again);
    return blob_adopt(bytes, len);
}

/* api_preparer.prepare: renders a page's objects. */
static int builder_prepare_page(void *arg, struct api_object *objects, size_t count,
                                struct buf *body, const char *again, void **state)
{
    const struct builder *b = arg;
    struct rendered_page *page;
    struct blob_batch *batch = NULL;
    struct buf scratch = BUF_INIT;
    const char *text;
    char *strings;
    size_t raw = 0;
    int rc = 0;

    /* Room for the decoded strings: never more than their quoted text. */
    for (size_t i = 0; i < count; i++)
        raw += objects[i].fields ? objects[i].fields[FIELD_STATUS].len +
                                       objects[i].fields[FIELD_ITEM_NAME].len
                                 : objects[i].raw_len;
    /* Hundreds of KB for a page of 1000 items, while it is rendered: from
     * bigmem, whose freeing leaves malloc's heaps as they were (bigmem.h). */
    page = bigmem_resize(NULL, sizeof(*page) + count * sizeof(*page->items) + raw);
    if (!page)
        return -ENOMEM;
    /* The objects point into the body, a big one (api_preparer); the
     * source takes it without moving it (and keeps it pinned until the page
     * is released). Taking a malloc'd body would move it. */
    if (!body->big) {
        bigmem_free(page);
        return -EINVAL;
    }
    text = body->data;
    page->source = builder_page_source(b, body, again);
    if (!page->source) {
        bigmem_free(page);
        return -ENOMEM;
    }
    page->count = 0;
    page->items = (struct rendered *)(page + 1);
    page->strings = (char *)(page->items + count);
    /* The items' files in one block (blob.h); each its own blob when a
     * page is too big for one. */
    if (count && count <= BLOB_BATCH_MAX &&
        !(batch = blob_batch_new(page->source, count)))
        rc = -ENOMEM;
    /* Packed one after another, so that only the bytes they take are
     * touched. */
    strings = page->strings;
    for (size_t i = 0; i < count && !rc; i++) {
        rc = builder_render(&objects[i], page->source, (size_t)(objects[i].raw - text),
                            batch, &scratch, &strings, b->n_fields, &page->items[i]);
        if (!rc) {
            page->count++;
            objects[i].prepared = &page->items[i];
        } else if (rc == -EINVAL) {
            /* Left for the builder to count as unusable: without content,
             * or without preparation (rendered again from its page). */
            memset(&page->items[i], 0, sizeof(page->items[i]));
            objects[i].prepared = NULL;
            page->count++;
            rc = 0;
        }
    }
    buf_free(&scratch);
    blob_batch_end(batch); /* its blobs keep it */
    if (rc) {
        builder_release_page(NULL, page);
        return rc;
    }
    *state = page;
    return 0;
}

/*
 * Fills `entry` (file, time) and `strings` from one API object, rendered
 * already by builder_prepare_page or rendered here, and adds it to `names`
 * unless that is NULL; and *job's counters unless that is NULL.
 */
static int builder_read_object(struct builder *b, const struct api_object *object,
                               struct names *names, struct entry *entry,
                               struct builder_strings *strings, struct builder_job *job)
{
    struct rendered r;
    char *decoded = NULL, *cursor;
    int rc = 0;

    memset(strings, 0, sizeof(*strings));
    if (object->prepared) {
        r = *(const struct rendered *)object->prepared;
        if (!r.content)
            return -EINVAL; /* not valid JSON, found by the preparer */
        entry->content = blob_ref(r.content);
    } else {
        decoded = malloc(object->raw_len);
        if (!decoded)
            return -ENOMEM;
        cursor = decoded;
        rc = builder_render(object, NULL, 0, NULL, &b->scratch, &cursor, b->n_fields, &r);
        entry->content = r.content;
        if (rc)
            goto out;
    }
    if (job) {
        memcpy(job->counts, r.counts, sizeof(job->counts));
        memcpy(job->known, r.known, sizeof(job->known));
    }
    /* Pages kept in the pagecache learn their order, for reading ahead. */
    if (b->pages && r.source && r.source != b->last_page) {
        pagecache_follows(b->pages, b->last_page, r.source);
        blob_unref(b->last_page);
        b->last_page = blob_ref(r.source);
    }
    entry_set_mtime(entry, r.mtime);
    entry->line_len = r.line_len <= UINT32_MAX ? (uint32_t)r.line_len : 0;
    strings->status_len = BUILDER_NO_STRING;
    /* names.c keeps the ids of the entries it names: no second copy. */
    strings->id = BUILDER_NO_STRING;
    rc = names ? (object->id_len < UINT32_MAX ? 0 : -ENOMEM)
               : builder_keep(b, object->id, object->id_len, &strings->id);
    strings->id_len = (uint32_t)object->id_len; /* below 4 GiB, or rc says so */
    if (!rc && r.status)
        rc = builder_keep_status(b, r.status, r.status_len, strings);
    if (!rc && names && b->named_by_id)
        rc = names_add(names, object->id, object->id_len, object->id, object->id_len);
    else if (!rc && names)
        rc = names_add(names, object->id, object->id_len, r.name ? r.name : "",
                       r.name ? r.name_len : 0);
out:
    free(decoded);
    return rc;
}

/* Room for `cap` entries (more than now). */
static int builder_grow_to(struct builder *b, size_t cap)
{
    struct entry *entries;
    struct builder_strings *strings;

    if (cap > LISTING_MAX_ENTRIES)
        return -ENOMEM;
    entries = bigmem_resize(b->listing->entries, cap * sizeof(*entries));
    if (!entries)
        return -ENOMEM;
    b->listing->entries = entries;
    strings = bigmem_resize(b->strings, cap * sizeof(*strings));
    if (!strings)
        return -ENOMEM;
    b->strings = strings;
    b->cap = cap;
    return 0;
}

static int builder_grow(struct builder *b)
{
    size_t cap = b->cap ? b->cap * 2 : 64;

    if (cap > LISTING_MAX_ENTRIES && b->cap < LISTING_MAX_ENTRIES)
        cap = LISTING_MAX_ENTRIES;
    return builder_grow_to(b, cap);
}

/* api_preparer.expect: how many objects the listing says are coming (the
 * API caps it at API_EXPECT_MAX). */
static void builder_expect(void *arg, size_t total)
{
    struct builder *b = arg;

    b->expected = total;
    b->announced = total;
}

/*
 * After the first page: room for the announced entries and, at that page's
 * rate, for their strings, so that nothing grows (and moves, copying
 * megabytes) step by step. Only a hint: failing to make room is not an
 * error, the room then grows as it would have.
 */
static void builder_presize(struct builder *b)
{
    size_t want = b->expected, count = b->listing->count;

    b->expected = 0;
    if (want <= count || !count)
        return;
    if (want > b->cap && builder_grow_to(b, want))
        return;
    if (buf_reserve_exact(&b->arena, (b->arena.len / count + 1) * (want - count)))
        return;
    if (b->names)
        names_expect(b->names, want);
}

void builder_charge_to(struct builder *b, size_t *charge)
{
    b->charge = charge;
}

/*
 * What the builder holds now, room made ahead included, for the charge
 * (builder_charge_to): the entries, their strings' offsets and the arena,
 * the names being settled, the entries' files; and what finishing adds
 * beside them (the index by name, and the block of names and ids, with
 * each id standing in for its name, not known yet).
 */
static size_t builder_footprint(const struct builder *b)
{
    return b->cap * (sizeof(struct entry) + sizeof(struct builder_strings) +
                     sizeof(uint32_t) /* by_name */) +
           b->arena.cap + (b->names ? names_footprint(b->names) : 0) + b->content_bytes +
           b->final_bytes;
}

/* Brings the charge up to date with builder_footprint. */
static void builder_recharge(struct builder *b)
{
    if (b->charge)
        api_charge_update(b->charge, &b->charged, builder_footprint(b));
}

/* Room for the jobs of a page of `count` objects, for on_jobs. */
static int builder_jobs_room(struct builder *b, size_t count)
{
    struct builder_job *jobs;

    if (count <= b->jobs_cap)
        return 0;
    jobs = realloc(b->jobs, count * sizeof(*jobs));
    if (!jobs)
        return -ENOMEM;
    b->jobs = jobs;
    b->jobs_cap = count;
    return 0;
}

/* Tells on_jobs of the entries [first, count) just made, whose counters
 * are in b->jobs[0..): their strings are in the arena, which no longer
 * moves during the call. */
static void builder_tell_jobs(struct builder *b, size_t first)
{
    size_t n = b->listing->count - first;

    for (size_t i = 0; i < n; i++) {
        const struct builder_strings *s = &b->strings[first + i];
        const char *status =
            s->status_len == BUILDER_NO_STRING ? NULL : b->arena.data + s->status;

        b->jobs[i].id = b->arena.data + s->id;
        b->jobs[i].mtime = entry_mtime(&b->listing->entries[first + i]);
        b->jobs[i].status =
            status && !memchr(status, '\0', s->status_len) ? status : NULL;
    }
    if (n > 0)
        b->on_jobs(b->on_jobs_arg, b->jobs, n);
}

/* api_objects_fn: render and keep each object of a page. */
int builder_add_objects(void *arg, const struct api_object *objects, size_t count)
{
    struct builder *b = arg;
    size_t first = b->listing->count;
    int rc = 0;

    if (b->on_jobs && (rc = builder_jobs_room(b, count)))
        return rc;
    for (size_t i = 0; i < count; i++) {
        struct listing *l = b->listing;
        struct entry *entry;

        /* A name that is not an id could not be looked up again. */
        if (!b->names && !names_is_id(objects[i].id)) {
            b->skipped++;
            continue;
        }
        if (l->count == b->cap && (rc = builder_grow(b)))
            return rc;
        entry = &l->entries[l->count];
        memset(entry, 0, sizeof(*entry));
        rc = builder_read_object(b, &objects[i], b->names, entry, &b->strings[l->count],
                                 b->on_jobs ? &b->jobs[l->count - first] : NULL);
        if (rc == -EINVAL) {
            /* The API layer hands on valid JSON only; be safe anyway. */
            entry_clear(entry);
            b->skipped++;
            rc = 0;
            continue;
        }
        if (rc) {
            entry_clear(entry);
            return rc;
        }
        entry->api_index = (uint32_t)l->count;
        l->count++;
    }
    for (size_t i = first; i < b->listing->count; i++) {
        const struct entry *e = &b->listing->entries[i];

        b->content_bytes += e->content ? blob_footprint(e->content) : 0;
        b->final_bytes += 2 * ((size_t)b->strings[i].id_len + 1);
    }
    if (b->on_jobs)
        builder_tell_jobs(b, first);
    if (b->expected)
        builder_presize(b);
    builder_recharge(b);
    return 0;
}

/* api_batch_fn: the batch is the listing's self, its results the entries. */
int builder_add_batch(void *arg, const struct api_object *batch,
                      const struct api_object *results, size_t count, bool results_null)
{
    struct builder *b = arg;
    int rc;

    rc = builder_read_object(b, batch, NULL, &b->listing->self, &b->self_strings, NULL);
    if (rc)
        return rc;
    b->listing->results_null = results_null;
    return builder_add_objects(b, results, count);
}

int builder_add_id(struct builder *b, const char *id)
{
    struct listing *l = b->listing;
    struct entry *e;
    int rc;

    if (l->count == b->cap && (rc = builder_grow(b)))
        return rc;
    e = &l->entries[l->count];
    memset(e, 0, sizeof(*e));
    e->api_index = (uint32_t)l->count;
    rc = builder_keep(b, id, strlen(id), &b->strings[l->count].id);
    if (rc)
        return rc;
    b->strings[l->count].id_len = (uint32_t)strlen(id);
    b->strings[l->count].status_len = BUILDER_NO_STRING;
    l->count++;
    return 0;
}

void builder_keep_pages(struct builder *b, struct pagecache *pages,
                        pagecache_fetch_fn fetch_again, void *fetch_arg)
{
    b->pages = pages;
    b->fetch_again = fetch_again;
    b->fetch_arg = fetch_arg;
}

size_t builder_announced(const struct builder *b)
{
    return b->announced;
}

void builder_on_jobs(struct builder *b, builder_jobs_fn fn, void *arg)
{
    b->on_jobs = fn;
    b->on_jobs_arg = arg;
}

void builder_preparer(struct builder *b, struct api_preparer *out)
{
    *out = (struct api_preparer){.prepare = builder_prepare_page,
                                 .release = builder_release_page,
                                 .expect = builder_expect,
                                 .keys = builder_field_keys,
                                 .n_keys = b->n_fields,
                                 .arg = b,
                                 .charge = b->charge};
}

/* Where builder_place_strings puts an entry's strings: the listing's block
 * (NULL: only count them) and the status placed last, which the next entry
 * shares when it has the same (the entries of a folder mostly do). */
struct strings_cursor {
    char *at;               /* next free byte of the block, or NULL */
    size_t size;            /* bytes placed (or counted) so far */
    const char *raw_status; /* the last status placed, as in the arena */
    size_t raw_status_len;
    char *status; /* ...and where it went */
};

/* Copies bytes into the block at the cursor (or counts them), with a NUL;
 * NULs inside become '_' when `clean`. Where they went, or NULL. */
static char *builder_place(struct strings_cursor *c, const char *bytes, size_t len,
                           bool clean)
{
    char *at = c->at;

    c->size += len + 1;
    if (!at)
        return NULL;
    for (size_t i = 0; i < len; i++)
        at[i] = clean && !bytes[i] ? '_' : bytes[i];
    at[len] = '\0';
    c->at += len + 1;
    return at;
}

/* Gives an entry its strings, in the listing's block (or counts them): its
 * id at `raw_id` (s->id_len bytes), its status from the arena; `name`
 * overrides the id as the entry's name when not NULL; an entry named by its
 * id shares it. Returns where its id went (NULL: not kept, or counting). */
static char *builder_place_strings(const struct builder *b, struct strings_cursor *c,
                                   struct entry *entry, const struct builder_strings *s,
                                   const char *raw_id, const char *name, size_t name_len)
{
    const char *arena = b->arena.data;
    const char *status = s->status_len == BUILDER_NO_STRING ? NULL : arena + s->status;
    /* An item keeps no id: its file's text has it, for the rare reader
     * that needs it (errors.tsv), and a million-item folder would pay
     * 41 bytes an item for it. Others are named by their id. */
    char *id = name && b->listing->kind == LISTING_ITEMS
                   ? NULL
                   : builder_place(c, raw_id, s->id_len, false);
    char *placed = id;

    if (name)
        placed = builder_place(c, name, name_len, false);
    if (status && !(c->raw_status && c->raw_status_len == s->status_len &&
                    !memcmp(c->raw_status, status, s->status_len))) {
        c->raw_status = status;
        c->raw_status_len = s->status_len;
        c->status = builder_place(c, status, s->status_len, true);
    }
    if (c->at) {
        entry->name = placed;
        entry->status = status ? c->status : NULL;
    }
    return id;
}

/* Places (or counts) the strings of every entry and of self. */
static void builder_place_all(const struct builder *b, struct strings_cursor *c)
{
    struct listing *l = b->listing;

    for (size_t i = 0; i < l->count; i++) {
        const struct builder_strings *s = &b->strings[i];
        size_t len = 0;
        const char *name = b->names ? names_file_name(b->names, i, &len) : NULL;
        const char *id = s->id == BUILDER_NO_STRING ? names_item_id(b->names, i)
                                                    : b->arena.data + s->id;
        const char *placed =
            builder_place_strings(b, c, &l->entries[i], s, id, name, len);

        /* Results, named by names.c, keep their id beside (listing.h). */
        if (l->ids)
            l->ids[i] = placed;
    }
    if (l->self.content)
        builder_place_strings(b, c, &l->self, &b->self_strings,
                              b->arena.data + b->self_strings.id, NULL, 0);
}

/* Names the entries (items and results by names.c, the rest by id), their
 * strings in one block that the listing owns. */
static int builder_name_entries(struct builder *b)
{
    struct listing *l = b->listing;
    struct strings_cursor c = {0};
    int rc = b->names ? names_finish(b->names) : 0;

    if (rc)
        return rc;
    builder_place_all(b, &c);
    l->strings = bigmem_resize(NULL, c.size ? c.size : 1);
    if (!l->strings)
        return -ENOMEM;
    if (l->kind == LISTING_BATCH &&
        !(l->ids = bigmem_calloc(l->count ? l->count : 1, sizeof(*l->ids))))
        return -ENOMEM;
    l->strings_bytes = c.size;
    c = (struct strings_cursor){.at = l->strings};
    builder_place_all(b, &c);
    return 0;
}

/*
 * A sort key of an entry: 8 bytes of its name from where the names of the
 * listing start to differ, big-endian and padded with NULs, so that most
 * comparisons are of two numbers, not of two names scattered over the
 * listing's block (a job list of 200,000 spent most of its sorting there).
 */
struct builder_sort_key {
    uint64_t head;
    size_t index;
};
/* The keys are made in the block of the entries' strings, which bigmem
 * aligned for any type. */
_Static_assert(sizeof(struct builder_sort_key) <= sizeof(struct builder_strings),
               "the keys are made where the entries' strings were");

/* strcmp's order of the names, by their keys first. */
static int builder_compare_keys(const void *a, const void *b, void *entries)
{
    const struct builder_sort_key *x = a, *y = b;
    const struct entry *e = entries;

    if (x->head != y->head)
        return x->head < y->head ? -1 : 1;
    return strcmp(e[x->index].name, e[y->index].name);
}

/* How many bytes every name of `l` (count > 0) starts with. */
static size_t builder_common_prefix(const struct listing *l)
{
    const char *first = l->entries[0].name;
    size_t n = strlen(first);

    for (size_t i = 1; i < l->count && n; i++) {
        const char *name = l->entries[i].name;
        size_t k = 0;

        while (k < n && name[k] == first[k])
            k++;
        n = k;
    }
    return n;
}

/* Sorts the entries by name (strcmp), as qsort with entry_compare_names
 * would, through keys (see builder_sort_key) made in `keys`, room for
 * l->count of them, then moves each entry (and its id) once. */
static void builder_sort_entries(struct listing *l, struct builder_sort_key *keys)
{
    size_t skip;

    skip = builder_common_prefix(l);
    for (size_t i = 0; i < l->count; i++) {
        const unsigned char *p = (const unsigned char *)l->entries[i].name + skip;

        keys[i].head = 0;
        keys[i].index = i;
        for (int k = 0; k < 8; k++) {
            keys[i].head = keys[i].head << 8 | *p;
            p += *p != 0;
        }
    }
    qsort_r(keys, l->count, sizeof(*keys), builder_compare_keys, l->entries);
    /* Entry i becomes entries[keys[i].index], following each cycle once
     * (a key whose index is its own place is done). */
    for (size_t i = 0; i < l->count; i++) {
        struct entry first;
        const char *first_id = l->ids ? l->ids[i] : NULL;
        size_t j = i;

        if (keys[i].index == i)
            continue;
        first = l->entries[i];
        for (;;) {
            size_t from = keys[j].index;

            keys[j].index = j;
            if (from == i) {
                l->entries[j] = first;
                if (l->ids)
                    l->ids[j] = first_id;
                break;
            }
            l->entries[j] = l->entries[from];
            if (l->ids)
                l->ids[j] = l->ids[from];
            j = from;
        }
    }
}

/* Names the entries, sorts them, and hands the listing over. */
int builder_finish(struct builder *b, struct listing **out)
{
    struct listing *l = b->listing;
    int rc = builder_name_entries(b);

    if (rc)
        goto out;
    if (b->skipped)
        log_warning("%s: left out %zu entries that were not usable", b->what, b->skipped);
    if (l->kind == LISTING_ITEMS)
        rc = listing_index_names(l); /* items stay in page order */
    else if (l->count > 1) /* qsort must not see the NULL of an empty listing */
        /* The entries' strings are placed: their offsets make room for the
         * keys, without more memory at the peak of a listing. */
        builder_sort_entries(l, (struct builder_sort_key *)(void *)b->strings);
    if (rc)
        goto out;
    l->bytes += (l->by_name ? l->count : 0) * sizeof(*l->by_name) + l->strings_bytes +
                (l->ids ? l->count : 0) * sizeof(*l->ids);
    for (size_t i = 0; i < l->count; i++)
        l->bytes += entry_bytes(&l->entries[i]);
    l->bytes += entry_bytes(&l->self);
    *out = l;
    b->listing = NULL;
out:
    builder_discard(b);
    return rc;
}
