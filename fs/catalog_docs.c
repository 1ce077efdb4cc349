/*
 * catalog_docs — what a batch or a job produced, as listings (see
 * include/batchfs/catalog.h, "what a batch or a job produced").
 *
 * For: which documents a content folder holds, what each is named, where
 * its bytes are kept and for how long.
 *
 * Each document is one cache entry ("doc/<source>/<job id>": a LISTING_DOC
 * whose self is the document), fetched by one request and shared by every
 * folder and file that shows it. Its bytes are a page of the page cache
 * (pagecache.h), counted in cache_size with the listings: a document
 * dropped for the budget is fetched again when read, and must come back
 * byte for byte (finished outputs never change). A content folder is a
 * LISTING_DOCS ("docs/<batch|job>/<id>/<folder>"):
 *
 * - of a v2 batch: the batch's results with a job of the folder's type,
 *   named after the user's file names (the batch's source directory,
 *   listed once per folder), each asked for (a request per document, the
 *   content with it: the job's status is only known by asking). The
 *   requests are queued at once on the cache's fetch threads, so they run
 *   up to max_connections at a time, while the listing's own thread takes
 *   them in folder order;
 * - of a v1 parse job: its completed items, renamed, with no request per
 *   document: an entry's content is fetched at its first lookup, and a
 *   walk of the folder in order reads ahead (catalog_doc_content).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batchfs/api.h"
#include "batchfs/bigmem.h"
#include "batchfs/blob.h"
#include "batchfs/buf.h"
#include "batchfs/cache.h"
#include "batchfs/catalog.h"
#include "batchfs/derive.h"
#include "batchfs/hash.h"
#include "batchfs/hindex.h"
#include "batchfs/jsontext.h"
#include "batchfs/listing.h"
#include "batchfs/live.h"
#include "batchfs/log.h"
#include "batchfs/names.h"
#include "batchfs/pagecache.h"
#include "batchfs/produced.h"
#include "batchfs/request.h"
#include "batchfs/transport.h"
#include "catalog_private.h"

const char *const catalog_content_names[CATALOG_CONTENT_COUNT] = {"markdown", "text",
                                                                  "extracted"};
static const char *const content_suffixes[CATALOG_CONTENT_COUNT] = {".md", ".txt",
                                                                    ".json"};

/* How a document is fetched: the first byte of its cache key and of its
 * page's `where`. */
enum doc_source {
    DOC_PARSE_MARKDOWN = 'm', /* GET /api/v2/parse/{id}?expand=markdown_full */
    DOC_PARSE_TEXT = 't',     /* GET /api/v2/parse/{id}?expand=text_full */
    DOC_EXTRACT = 'e',        /* GET /api/v2/extract/{id} */
    DOC_V1_MARKDOWN = 'M',    /* GET /api/v1/parsing/job/{id}/result/markdown */
    DOC_V1_TEXT = 'T',        /* GET /api/v1/parsing/job/{id}/result/text */
};

static char doc_source_of(bool batch, enum catalog_content content)
{
    if (content == CATALOG_EXTRACTED)
        return DOC_EXTRACT;
    if (batch)
        return content == CATALOG_MARKDOWN ? DOC_PARSE_MARKDOWN : DOC_PARSE_TEXT;
    return content == CATALOG_MARKDOWN ? DOC_V1_MARKDOWN : DOC_V1_TEXT;
}

/* ---- fields of the objects ------------------------------------------- */

int catalog_entry_string(const struct entry *entry, const char *const *path, size_t depth,
                         char *out, size_t size, size_t *len)
{
    struct json_span span;
    const char *text;
    size_t text_len;
    int rc;

    if (!entry->content)
        return -ENOENT;
    /* A dropped page that cannot be had again is its error, not a field
     * that is missing: a folder made from it would lack the object. */
    rc = blob_text_begin(entry->content, &text, &text_len);
    if (rc)
        return rc == -ENOENT ? -ESTALE : rc; /* the page is gone: it changed */
    rc = text && text_len ? 0 : -ENOENT;
    for (size_t i = 0; !rc && i < depth; i++) {
        if (jsontext_member(text, text_len, path[i], &span)) {
            rc = -ENOENT;
        } else {
            text += span.start;
            text_len = span.len;
        }
    }
    /* jsontext_string wants room for the text: a longer one is too long
     * without decoding it. */
    if (!rc && (text[0] != '"' || text_len > size || jsontext_string(text, text_len, out, len)))
        rc = -ENOENT;
    blob_text_end(entry->content);
    return rc;
}

/* Longest text of an id that may decode to one names_is_id accepts. */
#define DOCS_ID_TEXT_MAX (6 * NAMES_MAX_ID_LEN + 2)

/* The id at `path` of the entry's object, decoded into out (room for
 * DOCS_ID_TEXT_MAX bytes): 0, or -ENOENT when it is missing, not a string,
 * empty, holds a NUL or is longer than an id may be, or another negative
 * errno when the object's text could not be had (catalog_entry_string). */
static int docs_entry_id(const struct entry *entry, const char *const *path, size_t depth,
                         char *out)
{
    size_t n;
    int rc = catalog_entry_string(entry, path, depth, out, DOCS_ID_TEXT_MAX, &n);

    if (!rc && (!n || memchr(out, '\0', n) || n > NAMES_MAX_ID_LEN))
        rc = -ENOENT;
    return rc;
}

/* Whether the string at `path` of the entry's object is `value`. */
static bool docs_entry_is(const struct entry *entry, const char *const *path, size_t depth,
                          const char *value)
{
    char text[32];
    size_t n;

    return !catalog_entry_string(entry, path, depth, text, sizeof(text), &n) &&
           n == strlen(value) && !memcmp(text, value, n);
}

unsigned catalog_contents(const struct entry *owner, bool batch)
{
    static const char *const batch_type[] = {"config", "job", "type"};
    static const char *const job_type[] = {"job_type"};

    if (batch && docs_entry_is(owner, batch_type, 3, "parse_v2"))
        return 1u << CATALOG_MARKDOWN | 1u << CATALOG_TEXT;
    if (batch && docs_entry_is(owner, batch_type, 3, "extract_v2"))
        return 1u << CATALOG_EXTRACTED;
    if (!batch && docs_entry_is(owner, job_type, 1, "parse"))
        return 1u << CATALOG_MARKDOWN | 1u << CATALOG_TEXT;
    return 0;
}

/* ---- one document ----------------------------------------------------- */

/* One request for the document of job `job_id` as `source`: 0 and *job
 * (the caller frees it), or a negative errno, which produced.c has logged.
 * A v1 result has no job object: its status is its item's, "completed". */
static int doc_download(struct api *api, char source, const char *job_id,
                        struct produced_job *job)
{
    struct request *req = api_request(api);
    int rc;

    memset(job, 0, sizeof(*job));
    switch (source) {
    case DOC_PARSE_MARKDOWN:
        return produced_get_parse(req, job_id, PRODUCED_MARKDOWN, job);
    case DOC_PARSE_TEXT:
        return produced_get_parse(req, job_id, PRODUCED_TEXT, job);
    case DOC_EXTRACT:
        return produced_get_extract(req, job_id, job);
    case DOC_V1_MARKDOWN:
    case DOC_V1_TEXT:
        rc = produced_get_v1_result(
            req, job_id, source == DOC_V1_MARKDOWN ? PRODUCED_MARKDOWN : PRODUCED_TEXT,
            &job->content);
        if (rc)
            return rc;
        job->status = PRODUCED_COMPLETED;
        job->status_text = strdup("completed");
        if (!job->status_text) {
            produced_job_free(job);
            return -ENOMEM;
        }
        return 0;
    }
    return -EINVAL;
}

/* pagecache_fetch_fn: a document dropped for the budget, fetched again;
 * `where` is "<source>/<job id>", arg the api. */
static int docs_fetch_again(void *arg, const char *where, struct buf *body)
{
    struct produced_job job;
    int rc;

    if (!where[0] || where[1] != '/')
        return -EINVAL;
    rc = doc_download(arg, where[0], where + 2, &job);
    if (!rc && (job.status != PRODUCED_COMPLETED || job.content_null)) {
        log_warning("the output of job %s is no longer there (status %s)", where + 2,
                    job.status_text);
        rc = -ESTALE;
    }
    if (!rc) {
        *body = job.content;
        job.content = (struct buf)BUF_INIT;
    }
    produced_job_free(&job);
    return rc;
}

/* Hands the document's bytes (taken from *bytes) to the page cache and
 * sets *out to its file: the page itself, or for extracted data its pretty
 * rendering. 0 or a negative errno (-EIO: extracted data that is not JSON). */
static int doc_keep(struct catalog *catalog, char source, const char *job_id,
                    struct buf *bytes, struct blob **out)
{
    size_t len = bytes->len, pretty = 0;
    char where[NAMES_MAX_ID_LEN + 8];
    struct blob *page;
    char *data;
    int rc = 0;

    *out = NULL;
    snprintf(where, sizeof(where), "%c/%s", source, job_id);
    data = buf_steal_big(bytes);
    if (!data)
        return -ENOMEM;
    page =
        pagecache_add(catalog->pages, data, len, docs_fetch_again, catalog->api, where);
    if (!page)
        return -ENOMEM;
    if (source != DOC_EXTRACT) {
        blob_unpin(page);
        *out = page;
        return 0;
    }
    if (jsontext_pretty_length(data, len, &pretty)) {
        log_warning("the extracted data of job %s is not JSON", job_id);
        rc = -EIO;
    } else {
        /* The rendering changes exactly when the data does. */
        *out = blob_new_rendered(page, 0, len, jsontext_pretty, pretty,
                                 blob_digest_fold(blob_get_digest(page), pretty));
        rc = *out ? 0 : -ENOMEM;
    }
    blob_unpin(page);
    blob_unref(page);
    return rc;
}

/* Whether a document's status means it failed for good (for errors.tsv). */
static bool doc_failed(const char *status)
{
    return status && (!strcmp(status, "FAILED") || !strcmp(status, "CANCELLED") ||
                      !strcmp(status, "expired"));
}

/* Whether a document's status will not change any more. */
static bool doc_final(const char *status)
{
    return catalog_job_is_terminal(status) || doc_failed(status);
}

/* The value of a document's cache entry, from what its request gave (rc,
 * *job). Statuses beside the API's: "expired" (404). */
static int doc_value_new(struct catalog *catalog, char source, const char *job_id, int rc,
                         struct produced_job *job, struct listing **out, double *ttl_s)
{
    const char *status = job->status_text;
    struct blob *content = NULL;
    struct listing *doc = NULL;
    size_t id_len = strlen(job_id), status_len;
    struct timespec updated;
    char *note = NULL;
    bool noted = false; /* a note was wanted: NULL then means no memory */

    *out = NULL;
    if (rc == -ENOENT || rc == -EOPNOTSUPP)
        noted = true;
    if (rc == -ENOENT) {
        status = "expired";
        note = strdup("expired: the job's results are no longer available (404)");
    } else if (rc == -EOPNOTSUPP) {
        status = "COMPLETED";
        note = strdup("fast tier: the job has text but no markdown");
    } else if (rc) {
        return rc;
    } else {
        noted = job->error_message && job->error_message[0];
        if (noted)
            note = strdup(job->error_message);
        if (job->status == PRODUCED_COMPLETED && !job->content_null) {
            rc = doc_keep(catalog, source, job_id, &job->content, &content);
            if (rc)
                goto fail;
        } else if (doc_failed(status)) {
            log_info("job %s: %s%s%s: no output", job_id, status, note ? ": " : "",
                     note ? note : "");
        }
    }
    status_len = strlen(status);
    doc = listing_new(LISTING_DOC);
    if (!doc || (noted && !note))
        goto nomem;
    doc->strings = bigmem_resize(NULL, id_len + status_len + 2);
    if (!doc->strings)
        goto nomem;
    memcpy(doc->strings, job_id, id_len + 1);
    memcpy(doc->strings + id_len + 1, status, status_len + 1);
    doc->strings_bytes = id_len + status_len + 2;
    doc->self.name = doc->strings;
    doc->self.status = doc->strings + id_len + 1;
    doc->self.content = content;
    if (job->updated_at && !listing_parse_time(job->updated_at, &updated))
        entry_set_mtime(&doc->self, updated);
    doc->note = note;
    doc->bytes = sizeof(*doc) + doc->strings_bytes + (note ? strlen(note) + 1 : 0) +
                 (content ? blob_footprint(content) : 0);
    *ttl_s = doc_final(status) ? catalog->terminal_ttl_s : catalog->ttl_s;
    *out = doc;
    return 0;
nomem:
    rc = -ENOMEM;
fail:
    listing_release(doc);
    blob_unref(content);
    free(note);
    return rc;
}

/* What a fetch thread needs to fetch one document. */
struct doc_request {
    struct catalog *catalog;
    const char *id; /* the job id */
    char source;
};

static void *doc_request_copy(const void *req)
{
    return catalog_request_copy(req, sizeof(struct doc_request),
                                offsetof(struct doc_request, id));
}

static int doc_fetch(void *arg, const char *key, void **value, size_t *bytes,
                     double *ttl_s)
{
    struct doc_request *req = arg;
    struct catalog *catalog = req->catalog;
    struct produced_job job;
    struct listing *doc = live_take(catalog->live, key, ttl_s);
    int rc;

    if (!doc) {
        rc = doc_download(catalog->api, req->source, req->id, &job);
        rc = doc_value_new(catalog, req->source, req->id, rc, &job, &doc, ttl_s);
        produced_job_free(&job);
        if (rc)
            return rc;
        live_add(catalog->live, doc, key, *ttl_s);
    }
    *value = doc;
    *bytes = doc->bytes;
    return 0;
}

/* The cache key of a document; -ENAMETOOLONG for an id too long to be one. */
static int doc_key(char *key, size_t size, char source, const char *job_id)
{
    int n = snprintf(key, size, "doc/%c/%s", source, job_id);

    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* The document of job `job_id` as `source` (flags as cache_get's): 0 and
 * a referenced *out, or a negative errno (CACHE_PARKED for a parked
 * caller). */
static int doc_get(struct catalog *catalog, char source, const char *job_id,
                   unsigned flags, struct listing **out)
{
    struct doc_request req = {.catalog = catalog, .id = job_id, .source = source};
    char key[NAMES_MAX_ID_LEN + 16];
    void *value = NULL;
    int rc;

    *out = NULL;
    rc = doc_key(key, sizeof(key), source, job_id);
    if (!rc)
        rc = cache_get_with(catalog->cache, key, flags,
                            &(struct cache_fetcher){.fetch = doc_fetch,
                                                    .arg = &req,
                                                    .copy_arg = doc_request_copy,
                                                    .free_arg = free},
                            &value);
    *out = rc ? NULL : value;
    return rc;
}

/* Starts fetching the document on a fetch thread, unless cached or under
 * way (see cache_prefetch). Failing to only means it is fetched when asked
 * for. */
static void doc_prefetch(struct catalog *catalog, char source, const char *job_id)
{
    struct doc_request req = {.catalog = catalog, .id = job_id, .source = source};
    char key[NAMES_MAX_ID_LEN + 16];

    if (!doc_key(key, sizeof(key), source, job_id))
        cache_prefetch(catalog->cache, key,
                       &(struct cache_fetcher){.fetch = doc_fetch,
                                               .arg = &req,
                                               .copy_arg = doc_request_copy,
                                               .free_arg = free});
}

/* ---- a content folder, as it is built --------------------------------- */

/* One entry of a folder being built: its strings are offsets into the
 * builder's arena, which moves as it grows. */
/* The id offset of a document whose entry keeps none: a job's, whose
 * item's text has it. */
#define DOCS_NO_ID SIZE_MAX

struct docs_item {
    size_t name, id, status, job_id; /* offsets, each NUL-terminated; id
                                        may be DOCS_NO_ID */
    size_t name_len;                 /* the name may hold NULs (a file's) */
    struct blob *content;            /* referenced, or NULL */
    struct timespec mtime;
};

struct docs_builder {
    struct buf arena;
    struct docs_item *items;
    size_t count, cap;
    struct buf failures; /* errors.tsv lines */
};

/* Appends a NUL-terminated copy of `len` bytes of `s` to the arena and
 * sets *at to its offset. */
static int docs_arena_add(struct docs_builder *b, const char *s, size_t len, size_t *at)
{
    int rc;

    *at = b->arena.len;
    /* A big buffer from the first byte, so that the listing takes it as
     * its strings without a copy (buf_steal_big). */
    rc = buf_make_big(&b->arena);
    if (!rc)
        rc = buf_append(&b->arena, s, len);
    return rc ? rc : buf_append_char(&b->arena, '\0');
}

/* Adds an entry (`id` may be NULL); takes `content` (a reference, or NULL)
 * whatever the outcome. */
static int docs_builder_add(struct docs_builder *b, const char *name, size_t name_len,
                            const char *id, const char *status, const char *job_id,
                            struct blob *content, struct timespec mtime)
{
    struct docs_item *item;
    int rc = 0;

    if (b->count == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        /* As big as the folder: bigmem's (bigmem.h), grown in place. */
        struct docs_item *items = cap <= SIZE_MAX / sizeof(*items)
                                      ? bigmem_resize(b->items, cap * sizeof(*items))
                                      : NULL;

        if (!items) {
            blob_unref(content);
            return -ENOMEM;
        }
        b->items = items;
        b->cap = cap;
    }
    item = &b->items[b->count];
    item->name_len = name_len;
    if (!rc)
        rc = docs_arena_add(b, name, name_len, &item->name);
    item->id = DOCS_NO_ID;
    if (!rc && id)
        rc = docs_arena_add(b, id, strlen(id), &item->id);
    if (!rc)
        rc = docs_arena_add(b, status ? status : "", status ? strlen(status) : 0,
                            &item->status);
    if (!rc)
        rc = docs_arena_add(b, job_id, strlen(job_id), &item->job_id);
    if (rc) {
        blob_unref(content);
        return rc;
    }
    item->content = content;
    item->mtime = mtime;
    b->count++;
    return 0;
}

static void docs_builder_free(struct docs_builder *b)
{
    for (size_t i = 0; i < b->count; i++)
        blob_unref(b->items[i].content);
    bigmem_free(b->items);
    buf_free(&b->arena);
    buf_free(&b->failures);
    memset(b, 0, sizeof(*b));
}

/* For qsort_r: the items in byte order of their names. */
static int docs_item_compare(const void *a, const void *b, void *arena)
{
    const char *base = arena;

    return strcmp(base + ((const struct docs_item *)a)->name,
                  base + ((const struct docs_item *)b)->name);
}

/* How a folder's entries are kept. */
enum docs_order {
    DOCS_SORTED,  /* sorted by name */
    DOCS_INDEXED, /* in the order added, indexed by name */
    DOCS_AS_ADDED /* in the order added (a directory's files: never found by name) */
};

/* The listing (of `kind`), its entries in `order`; an entry's line_len is
 * its name's length. The builder is emptied either way. */
static int docs_builder_finish(struct docs_builder *b, enum listing_kind kind,
                               enum docs_order order, struct listing **out)
{
    struct listing *l = listing_new(kind);
    bool sort = order == DOCS_SORTED;
    size_t bytes;
    int rc = 0;

    *out = NULL;
    if (!l)
        goto nomem;
    if (sort && b->count > 1)
        qsort_r(b->items, b->count, sizeof(*b->items), docs_item_compare, b->arena.data);
    l->entries = bigmem_calloc(b->count ? b->count : 1, sizeof(*l->entries));
    l->job_ids = bigmem_calloc(b->count ? b->count : 1, sizeof(*l->job_ids));
    l->ids = bigmem_calloc(b->count ? b->count : 1, sizeof(*l->ids));
    l->gone = bigmem_calloc(b->count ? b->count : 1, 1);
    if (!l->entries || !l->job_ids || !l->ids || !l->gone)
        goto nomem;
    l->strings_bytes = b->arena.len;
    l->strings = buf_steal_big(&b->arena);
    if (!l->strings)
        goto nomem;
    bytes = sizeof(*l) + l->strings_bytes +
            b->count * (sizeof(*l->job_ids) + sizeof(*l->ids) + 1);
    for (size_t i = 0; i < b->count; i++) {
        struct entry *e = &l->entries[i];
        const struct docs_item *item = &b->items[i];

        e->name = l->strings + item->name;
        l->ids[i] = item->id == DOCS_NO_ID ? NULL : l->strings + item->id;
        e->status = l->strings + item->status;
        e->content = item->content;
        entry_set_mtime(e, item->mtime);
        e->api_index = (uint32_t)i;
        e->line_len = (uint32_t)item->name_len;
        l->job_ids[i] = l->strings + item->job_id;
        bytes += entry_bytes(e);
    }
    l->count = b->count;
    b->count = 0; /* the listing holds the contents now */
    if (b->failures.len) {
        l->note = buf_steal(&b->failures);
        bytes += strlen(l->note) + 1;
    }
    if (order == DOCS_INDEXED)
        rc = listing_index_names(l);
    l->bytes = bytes + (l->by_name ? l->count * sizeof(*l->by_name) : 0);
    if (rc)
        goto fail;
    docs_builder_free(b);
    *out = l;
    return 0;
nomem:
    rc = -ENOMEM;
fail:
    listing_release(l);
    docs_builder_free(b);
    return rc;
}

/* ---- a directory's file names --------------------------------------- */

/* What a fetch thread needs to list a directory's files. */
struct files_request {
    struct catalog *catalog;
    const char *id; /* the directory id */
    bool final;     /* asked for a finished batch: kept for terminal_ttl */
};

static void *files_request_copy(const void *req)
{
    return catalog_request_copy(req, sizeof(struct files_request),
                                offsetof(struct files_request, id));
}

/* produced_files_fn: keeps each file that has a name. */
static int files_collect(void *arg, const struct produced_file *files, size_t count)
{
    struct docs_builder *b = arg;
    static const struct timespec none;
    int rc = 0;

    for (size_t i = 0; i < count && !rc; i++)
        if (files[i].display_name)
            rc = docs_builder_add(b, files[i].display_name, files[i].display_name_len,
                                  files[i].id, NULL, "", NULL, none);
    return rc;
}

static int files_fetch(void *arg, const char *key, void **value, size_t *bytes,
                       double *ttl_s)
{
    struct files_request *req = arg;
    struct docs_builder b = {0};
    struct listing *files;
    int rc;

    (void)key;
    rc = produced_list_directory_files(api_request(req->catalog->api), req->id,
                                       files_collect, &b);
    if (!rc)
        rc = docs_builder_finish(&b, LISTING_DOCS, DOCS_AS_ADDED, &files);
    docs_builder_free(&b);
    if (rc)
        return rc;
    *ttl_s = req->final ? req->catalog->terminal_ttl_s : req->catalog->ttl_s;
    *value = files;
    *bytes = files->bytes;
    return 0;
}

/*
 * The user's names of the files of directory `dir_id`, listed once for
 * every content folder of every batch that uses it: a LISTING_DOCS whose
 * entries are the files that have a display_name (id: the file's id, name
 * and line_len: its display_name, NULs and all). -ENOENT when the
 * directory is gone.
 */
static int docs_directory(struct catalog *catalog, const char *dir_id, bool final,
                          struct listing **out)
{
    struct files_request req = {.catalog = catalog, .id = dir_id, .final = final};
    char key[NAMES_MAX_ID_LEN + 16];
    void *value = NULL;
    int n, rc;

    *out = NULL;
    n = snprintf(key, sizeof(key), "files/%s", dir_id);
    if (n < 0 || (size_t)n >= sizeof(key))
        return -ENOENT; /* not an id */
    rc = cache_get_with(catalog->cache, key, CACHE_GET_DEFAULT,
                        &(struct cache_fetcher){.fetch = files_fetch,
                                                .arg = &req,
                                                .copy_arg = files_request_copy,
                                                .free_arg = free},
                        &value);
    *out = rc ? NULL : value;
    return rc;
}

/* ---- a batch's folder ------------------------------------------------- */

/* A result of the batch with a job of the folder's type. */
struct docs_counted {
    size_t result;   /* its index among the batch's entries */
    size_t job_id;   /* offset in the scratch arena */
    size_t name;     /* the user's file name: offset and length, or */
    size_t name_len; /* SIZE_MAX when the directory does not list it */
};

struct docs_batch {
    const struct listing *batch;
    struct docs_counted *counted;
    size_t count;
    struct buf arena;
    struct hindex by_file; /* counted, by source_directory_file_id */
};

static bool docs_file_eq(const void *ctx, size_t ref, const void *key)
{
    const struct docs_batch *d = ctx;

    return !strcmp(listing_entry_id(d->batch, &d->batch->entries[d->counted[ref].result]),
                   key);
}

/* Keeps the names of the files of directory listing `files` that the
 * folder counts. */
static int docs_batch_names(struct docs_batch *d, const struct listing *files)
{
    for (size_t i = 0; i < files->count; i++) {
        const struct entry *f = &files->entries[i];
        const char *id = listing_entry_id(files, f);
        size_t at = id ? hindex_find(&d->by_file, hash_key_str(id), docs_file_eq, d, id)
                       : HINDEX_FREE;
        int rc;

        if (at == HINDEX_FREE)
            continue;
        d->counted[at].name = d->arena.len;
        d->counted[at].name_len = f->line_len;
        rc = buf_append(&d->arena, f->name, f->line_len);
        if (rc)
            return rc;
    }
    return 0;
}

/* Which results the folder counts: those whose job_reference has the
 * folder's type and a job id. */
static int docs_batch_count(struct docs_batch *d, const char *type)
{
    static const char *const ref_type[] = {"job_reference", "type"};
    static const char *const ref_id[] = {"job_reference", "id"};
    char job_id[DOCS_ID_TEXT_MAX];
    int rc = 0;

    d->counted =
        bigmem_calloc(d->batch->count ? d->batch->count : 1, sizeof(*d->counted));
    if (!d->counted || hindex_reserve(&d->by_file, d->batch->count))
        rc = -ENOMEM;
    for (size_t i = 0; i < d->batch->count && !rc; i++) {
        const struct entry *result = &d->batch->entries[i];
        struct docs_counted *c = &d->counted[d->count];
        struct hindex_cell *cell;
        const char *file_id;
        uint64_t hash;
        bool found;

        if (!docs_entry_is(result, ref_type, 2, type))
            continue;
        rc = docs_entry_id(result, ref_id, 2, job_id);
        if (rc == -ENOENT) { /* no job: no document */
            rc = 0;
            continue;
        }
        if (rc)
            break;
        c->result = i;
        c->name_len = SIZE_MAX;
        c->job_id = d->arena.len;
        rc = buf_append(&d->arena, job_id, strlen(job_id) + 1);
        if (rc)
            break;
        file_id = listing_entry_id(d->batch, result);
        hash = hash_key_str(file_id);
        cell = hindex_probe(&d->by_file, hash, docs_file_eq, d, file_id, &found);
        if (!found) /* ids of a batch's results are unique (builder.c) */
            hindex_put(&d->by_file, cell, hash, d->count);
        d->count++;
    }
    return rc;
}

/* Adds the line of a document that failed or expired to errors.tsv. */
static int docs_failure_line(struct docs_builder *b, const char *name, size_t name_len,
                             const char *file_id, const struct listing *doc)
{
    const char *status = doc->self.status;
    struct buf message = BUF_INIT;
    int rc;

    rc = derive_tsv_field(name, name_len, &b->failures);
    if (!rc)
        rc = buf_append_char(&b->failures, '\t');
    if (!rc)
        rc = derive_tsv_field(file_id, strlen(file_id), &b->failures);
    if (!rc)
        rc = buf_append_char(&b->failures, '\t');
    if (!rc && !strcmp(status, "expired"))
        rc = buf_append_str(&message, doc->note ? doc->note : "expired");
    else if (!rc)
        rc = doc->note ? buf_printf(&message, "%s: %s", status, doc->note)
                       : buf_append_str(&message, status);
    if (!rc)
        rc = derive_tsv_field(message.data, message.len, &b->failures);
    if (!rc)
        rc = buf_append_char(&b->failures, '\n');
    buf_free(&message);
    return rc;
}

/* Whether the calling thread's fetch was called off (nobody waits). */
static bool docs_cancelled(void)
{
    struct transport_cancel *token = transport_cancel_current();

    return token && transport_cancel_fired(token);
}

/* The documents of the batch's results of the folder's type, in *b, each
 * named; *final says whether none can change any more. */
static int docs_batch_documents(struct catalog *catalog, struct docs_batch *d,
                                enum catalog_content content, struct names *names,
                                struct docs_builder *b, bool *final)
{
    char source = doc_source_of(true, content);
    size_t suffix_len = strlen(content_suffixes[content]);
    struct listing **docs = bigmem_calloc(d->count ? d->count : 1, sizeof(*docs));
    int rc = 0;

    if (!docs)
        return -ENOMEM;
    /* All at once on the fetch threads, which take them from the first;
     * this thread takes them from the last, running those still queued
     * itself, so that it waits for another thread's fetch only where the
     * two meet: max_connections requests stay in flight to the end. */
    for (size_t i = 0; i < d->count; i++)
        doc_prefetch(catalog, source, d->arena.data + d->counted[i].job_id);
    for (size_t i = d->count; i-- > 0 && !rc;)
        rc = docs_cancelled()
                 ? -ECANCELED
                 : doc_get(catalog, source, d->arena.data + d->counted[i].job_id,
                           CACHE_GET_DEFAULT, &docs[i]);
    /* Then in folder order, for errors.tsv. */
    for (size_t i = 0; i < d->count && !rc; i++) {
        const char *file_id =
            listing_entry_id(d->batch, &d->batch->entries[d->counted[i].result]);
        size_t name_len;
        const char *name = names_file_name(names, i, &name_len);
        const struct listing *doc = docs[i];

        if (!doc_final(doc->self.status))
            *final = false;
        if (doc->self.content)
            rc = docs_builder_add(b, name, name_len, file_id, doc->self.status,
                                  d->arena.data + d->counted[i].job_id,
                                  blob_ref(doc->self.content), entry_mtime(&doc->self));
        else if (doc_failed(doc->self.status))
            rc = docs_failure_line(b, name, name_len - suffix_len, file_id, doc);
    }
    for (size_t i = 0; i < d->count; i++)
        listing_release(docs[i]);
    bigmem_free(docs);
    return rc;
}

static int docs_list_batch(struct catalog *catalog, const char *batch_id,
                           enum catalog_content content, struct listing **out,
                           double *ttl_s)
{
    static const char *const directory[] = {"source_directory_id"};
    struct docs_batch d = {.by_file = HINDEX_INIT};
    struct docs_builder b = {0};
    struct listing *batch = NULL;
    struct names *names = NULL;
    char dir_id[DOCS_ID_TEXT_MAX];
    bool final;
    int rc;

    rc = catalog_batch(catalog, batch_id, &batch);
    if (rc)
        return rc;
    d.batch = batch;
    final = catalog_job_is_terminal(batch->self.status);
    if (!(catalog_contents(&batch->self, true) & 1u << content)) {
        rc = -ENOENT;
        goto out;
    }
    rc = docs_batch_count(&d, content == CATALOG_EXTRACTED ? "extract_v2" : "parse_v2");
    if (!rc && d.count && !docs_entry_id(&batch->self, directory, 1, dir_id)) {
        struct listing *files = NULL;

        rc = docs_directory(catalog, dir_id, final, &files);
        if (!rc)
            rc = docs_batch_names(&d, files);
        else if (rc == -ENOENT) /* the directory is gone: every file is named by id */
            rc = 0;
        listing_release(files);
    }
    names = rc ? NULL : names_new(content_suffixes[content], &rc);
    for (size_t i = 0; names && !rc && i < d.count; i++) {
        const struct docs_counted *c = &d.counted[i];
        const char *file_id = listing_entry_id(batch, &batch->entries[c->result]);

        rc = names_add(names, file_id, strlen(file_id),
                       c->name_len == SIZE_MAX ? NULL : d.arena.data + c->name,
                       c->name_len == SIZE_MAX ? 0 : c->name_len);
    }
    if (names && !rc)
        rc = names_finish(names);
    if (names && !rc)
        rc = docs_batch_documents(catalog, &d, content, names, &b, &final);
    if (!rc)
        rc = docs_builder_finish(&b, LISTING_DOCS, DOCS_SORTED, out);
    /* A document dropped for the budget and read again in a walk of the
     * folder has the next one fetched ahead (markdown and text: their
     * files are the pages themselves). */
    for (size_t i = 1; !rc && i < (*out)->count; i++)
        pagecache_follows(catalog->pages, (*out)->entries[i - 1].content,
                          (*out)->entries[i].content);
    if (!rc)
        *ttl_s = final ? catalog->terminal_ttl_s : catalog->ttl_s;
out:
    docs_builder_free(&b);
    names_free(names);
    buf_free(&d.arena);
    bigmem_free(d.counted);
    hindex_free(&d.by_file);
    listing_release(batch);
    return rc;
}

/* ---- a job's folder --------------------------------------------------- */

static int docs_list_job(struct catalog *catalog, const char *job_id,
                         enum catalog_content content, struct listing **out,
                         double *ttl_s)
{
    static const char *const parse_job[] = {"job_id"};
    const char *suffix = content_suffixes[content];
    char source = doc_source_of(false, content);
    struct docs_builder b = {0};
    struct listing *owner = NULL, *items = NULL;
    const struct entry *job;
    struct buf name = BUF_INIT;
    char parse_id[DOCS_ID_TEXT_MAX];
    bool final;
    int rc;

    rc = catalog_job(catalog, job_id, &owner, &job);
    if (rc)
        return rc;
    final = catalog_job_is_terminal(job->status);
    if (!(catalog_contents(job, false) & 1u << content)) {
        rc = -ENOENT;
        goto out;
    }
    rc = catalog_items(catalog, job_id, catalog_item_status_index("completed"), &items);
    for (size_t i = 0; !rc && i < items->count; i++) {
        const struct entry *item = &items->entries[i];
        size_t len = strlen(item->name);
        struct listing *doc = NULL;
        struct blob *content_blob = NULL;

        rc = docs_entry_id(item, parse_job, 1, parse_id);
        if (rc == -ENOENT) { /* an item without a parse job has no document */
            rc = 0;
            continue;
        }
        if (rc)
            break;
        /* A document already fetched gives its size now; one known to be
         * gone is left out. */
        if (!doc_get(catalog, source, parse_id, CACHE_GET_PEEK, &doc)) {
            bool gone = !doc->self.content;

            content_blob = gone ? NULL : blob_ref(doc->self.content);
            listing_release(doc);
            if (gone)
                continue;
        }
        /* Item names end in ".json" (doc/naming.md, rule 3). */
        if (len > 5 && !strcmp(item->name + len - 5, ".json"))
            len -= 5;
        buf_reset(&name);
        rc = buf_append(&name, item->name, len);
        if (!rc)
            rc = buf_append_str(&name, suffix);
        if (!rc)
            rc = docs_builder_add(&b, name.data, name.len, NULL, item->status, parse_id,
                                  content_blob, entry_mtime(item));
        else
            blob_unref(content_blob);
    }
    if (!rc)
        rc = docs_builder_finish(&b, LISTING_DOCS, DOCS_INDEXED, out);
    if (!rc)
        *ttl_s = final ? catalog->terminal_ttl_s : catalog->ttl_s;
out:
    docs_builder_free(&b);
    buf_free(&name);
    listing_release(items);
    listing_release(owner);
    return rc;
}

/* ---- public ------------------------------------------------------------ */

struct docs_request {
    struct catalog *catalog;
    const char *id; /* the batch or job id */
    bool batch;
    enum catalog_content content;
};

static void *docs_request_copy(const void *req)
{
    return catalog_request_copy(req, sizeof(struct docs_request),
                                offsetof(struct docs_request, id));
}

/* A content folder is not registered with live.c (unlike the other
 * listings): building it again costs no request while completed/'s pages
 * and its documents are cached. */
static int docs_fetch(void *arg, const char *key, void **value, size_t *bytes,
                      double *ttl_s)
{
    struct docs_request *req = arg;
    struct listing *docs;
    int rc;

    (void)key;
    rc = req->batch ? docs_list_batch(req->catalog, req->id, req->content, &docs, ttl_s)
                    : docs_list_job(req->catalog, req->id, req->content, &docs, ttl_s);
    if (rc)
        return rc;
    *value = docs;
    *bytes = docs->bytes;
    return 0;
}

/* The cache key of a content folder; -ENOENT for an id too long to be one. */
static int docs_key(char *key, size_t size, bool batch, const char *id,
                    enum catalog_content content)
{
    int n = snprintf(key, size, "docs/%s/%s/%s", batch ? "batch" : "job", id,
                     catalog_content_names[content]);

    return n < 0 || (size_t)n >= size ? -ENOENT : 0;
}

int catalog_docs(struct catalog *catalog, bool batch, const char *id,
                 enum catalog_content content, struct listing **out)
{
    struct docs_request req = {
        .catalog = catalog, .id = id, .batch = batch, .content = content};
    char key[NAMES_MAX_ID_LEN + 32];
    void *value = NULL;
    int rc;

    *out = NULL;
    if ((unsigned)content >= CATALOG_CONTENT_COUNT)
        return -EINVAL;
    rc = docs_key(key, sizeof(key), batch, id, content);
    if (rc)
        return rc;
    rc = cache_get_with(catalog->cache, key, CACHE_GET_DEFAULT,
                        &(struct cache_fetcher){.fetch = docs_fetch,
                                                .arg = &req,
                                                .copy_arg = docs_request_copy,
                                                .free_arg = free},
                        &value);
    *out = rc ? NULL : value;
    return rc;
}

/* A lookup of entry `index` right after one of the entry before it is a
 * walk of the folder in its order (grep -r, tar, cp -r): the `ahead`
 * documents after it that are not at hand are fetched ahead. */
static void docs_walk(struct catalog *catalog, struct listing *docs, size_t index,
                      char source, size_t ahead)
{
    size_t expected = __atomic_exchange_n(&docs->walk_next, index + 1, __ATOMIC_RELAXED);

    if (index == 0 || expected != index)
        return;
    for (size_t i = index + 1; i < docs->count && i <= index + ahead; i++)
        if (!docs->entries[i].content)
            doc_prefetch(catalog, source, docs->job_ids[i]);
}

int catalog_doc_content(struct catalog *catalog, struct listing *docs, size_t index,
                        enum catalog_content content, struct blob **out)
{
    const struct entry *e;
    struct listing *doc;
    char source = doc_source_of(false, content);
    bool spent;
    int rc;

    *out = NULL;
    if (docs->kind != LISTING_DOCS || index >= docs->count ||
        (unsigned)content >= CATALOG_CONTENT_COUNT)
        return -EINVAL;
    e = &docs->entries[index];
    if (e->content) {
        *out = blob_ref(e->content);
        return 0;
    }
    if (listing_doc_gone(docs, index))
        return -ENOENT;
    /* A walk reads as many documents ahead as requests may run at once,
     * beside this one. Once the budget is spent (a folder bigger than
     * cache_size is kept beyond it), only the two most recently used pages
     * stay: one further ahead would be dropped before it is read, and cost
     * its request twice. Then only the next is read ahead, once this one
     * is here, so that it is the newer of the two: not from a call that
     * parked for it (the call is made again when it has come). */
    spent = !pagecache_has_room(catalog->pages);
    if (!spent)
        docs_walk(catalog, docs, index, source,
                  request_limits(api_request(catalog->api))->max_parallel);
    rc = doc_get(catalog, source, docs->job_ids[index], CACHE_GET_DEFAULT, &doc);
    if (spent && rc != CACHE_PARKED)
        docs_walk(catalog, docs, index, source, 1);
    if (rc)
        return rc;
    if (doc->self.content) {
        *out = blob_ref(doc->self.content);
    } else {
        /* Gone (its results expired). Listing the folder again without it
         * would cost completed/'s pages, every one under a small
         * cache_size: the entry is marked instead. */
        rc = -ENOENT;
        listing_mark_doc_gone(docs, index);
    }
    listing_release(doc);
    return rc;
}

int catalog_docs_failures(struct catalog *catalog, const struct listing *batch,
                          struct buf *out)
{
    unsigned contents = catalog_contents(&batch->self, true);
    struct listing *docs;
    int rc;

    /* Failures are the same in every folder of a batch: the smallest tells. */
    if (!contents)
        return 0;
    rc = catalog_docs(catalog, true, listing_entry_id(batch, &batch->self),
                      contents & 1u << CATALOG_TEXT ? CATALOG_TEXT : CATALOG_EXTRACTED,
                      &docs);
    if (rc)
        return rc;
    if (docs->note)
        rc = buf_append_str(out, docs->note);
    listing_release(docs);
    return rc;
}

int catalog_docs_extracted_ndjson(struct catalog *catalog, const char *batch_id,
                                  struct entry *self)
{
    struct listing *docs;
    struct buf out = BUF_INIT_BIG;
    int rc;

    rc = catalog_docs(catalog, true, batch_id, CATALOG_EXTRACTED, &docs);
    if (rc)
        return rc;
    for (size_t i = 0; i < docs->count && !rc; i++) {
        const struct entry *e = &docs->entries[i];
        const char *id = listing_entry_id(docs, e);
        size_t name_len = strlen(e->name) - strlen(content_suffixes[CATALOG_EXTRACTED]);
        const char *text;
        size_t len;

        rc = buf_append_str(&out, "{\"name\":");
        if (!rc)
            rc = jsontext_append_string(&out, e->name, name_len);
        if (!rc)
            rc = buf_append_str(&out, ",\"source_directory_file_id\":");
        if (!rc)
            rc = id ? jsontext_append_string(&out, id, strlen(id))
                    : buf_append_str(&out, "null");
        if (!rc)
            rc = buf_append_str(&out, ",\"extract_result\":");
        if (!rc)
            rc = blob_text_begin(e->content, &text, &len);
        if (!rc) {
            rc = text ? jsontext_compact(text, len, &out) : -EIO;
            blob_text_end(e->content);
        }
        if (!rc)
            rc = buf_append_str(&out, "}\n");
    }
    if (!rc) {
        for (size_t i = 0; i < docs->count; i++) /* the newest document's */
            if (!i || docs->entries[i].mtime_ns > self->mtime_ns)
                self->mtime_ns = docs->entries[i].mtime_ns;
        self->content = blob_adopt_buf(&out);
        rc = self->content ? 0 : -ENOMEM;
    }
    buf_free(&out);
    listing_release(docs);
    return rc;
}
