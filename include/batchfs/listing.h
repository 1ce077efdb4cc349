/*
 * listing — a listing of named entries and the entries themselves: the one
 * module that owns the fields of struct listing and struct entry, their
 * references and their lookup by name.
 *
 * Below the catalog (catalog.c), the builder (builder.c), the aggregate
 * files (derive.c) and the register of listings in use (live.c), which all
 * include this header; it includes none of theirs.
 *
 * Listings and blobs are reference counted and immutable once published, so
 * any thread may read them without a lock; a refresh builds a new listing.
 * The register's part (struct listing_link) is live.c's, reached through
 * listing_link() and guarded by the register's lock (see live.h).
 */
#ifndef BATCHFS_LISTING_H
#define BATCHFS_LISTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "batchfs/blob.h"

struct live;

/* One named thing in a listing: a job or batch (a directory), an item or a
 * result (a file). Strings are NUL-terminated; in a listing they lie in
 * its `strings` block (see there), and entries may share them. */
struct entry {
    char *name;            /* name in its directory */
    /* Its id is not here: listing_entry_id says it (most entries are named
     * by it, and an item's file's text has its item_id). */
    char *status;          /* as the API spelt it; NULL when absent */
    struct blob *content;  /* the object's file: job.json, batch object, item, result */
    /* From the object's timestamps, in nanoseconds since the epoch: 8
     * bytes, not a struct timespec's 16, as a million-item listing pays
     * every byte of its entries. 0 when it has none. Through entry_mtime
     * and entry_set_mtime. */
    int64_t mtime_ns;
    /* 32 bits each, as a listing holds at most LISTING_MAX_ENTRIES: a
     * million-item listing pays every byte of its entries. */
    uint32_t api_index; /* position in the API's order */
    /* Its compact JSON's length (its items.ndjson line less the newline),
     * measured when listed; 0 when not measured (or over 4 GiB). */
    uint32_t line_len;
};

/* Where pointers take 8 bytes, what a million-item listing pays an entry
 * beside its strings and its file's blob. */
_Static_assert(sizeof(void *) != 8 || sizeof(struct entry) == 40, "struct entry grew");

/* An entry's mtime (0 when it has none). Pure. */
static inline struct timespec entry_mtime(const struct entry *entry)
{
    int64_t sec = entry->mtime_ns / 1000000000, nsec = entry->mtime_ns % 1000000000;

    if (nsec < 0) { /* before the epoch: the seconds round down */
        sec--;
        nsec += 1000000000;
    }
    return (struct timespec){.tv_sec = (time_t)sec, .tv_nsec = (long)nsec};
}

/* Sets an entry's mtime; one outside what 64 bits of nanoseconds hold
 * (1677-09-21 to 2262-04-11) is held at the nearer end. Pure. */
static inline void entry_set_mtime(struct entry *entry, struct timespec mtime)
{
    const int64_t max_sec = INT64_MAX / 1000000000 - 1;
    int64_t sec = (int64_t)mtime.tv_sec;
    long nsec = mtime.tv_nsec < 0            ? 0
                : mtime.tv_nsec > 999999999L ? 999999999L
                                             : mtime.tv_nsec;

    sec = sec > max_sec ? max_sec : sec < -max_sec ? -max_sec : sec;
    entry->mtime_ns = sec * 1000000000 + nsec;
}

/* The most entries a listing holds: api_index is 32 bits. */
#define LISTING_MAX_ENTRIES ((size_t)UINT32_MAX)

enum listing_kind {
    LISTING_JOBS,    /* entries: jobs, named by id */
    LISTING_JOB,     /* one entry: a job looked up by id */
    LISTING_ITEMS,   /* entries: items of one job in one status */
    LISTING_BATCHES, /* entries: v2 batches, named by id */
    LISTING_BATCH,   /* self: the batch; entries: its results */
    LISTING_DOCS,    /* entries: the documents of one content folder */
    LISTING_DOC,     /* self: one document (self.content NULL: none, see note) */
};

/*
 * What the register of listings in use (live.c) keeps in each listing, so
 * that a listing still in use is found again after the cache evicts it.
 * Zero in listings never registered. The register reads and changes these
 * fields only under its own lock (live.h); the listing module only calls
 * `forget`, from the last listing_release, when no other thread can reach
 * the listing but through the register.
 */
struct listing_link {
    struct live *home;           /* the register holding it, or NULL */
    struct listing *prev, *next; /* its chain in the register */
    char *key;                   /* its cache key */
    uint64_t key_hash;
    double fresh_until; /* seconds on the register's clock (live_new) */
    unsigned epoch;     /* live_expire_all calls before it was added */
    /* Set with `key` by the register: unlinks the listing and frees `key`.
     * Leaves the listing module free of the register's header. */
    void (*forget)(struct listing *listing);
};

struct listing {
    unsigned refs;       /* atomic */
    uint64_t generation; /* unique to each fetch: equal = same listing */
    enum listing_kind kind;
    /* Items: in the API's order, which is the order of their pages, so that
     * a tool reading a folder from readdir takes its pages one after another
     * (the cache may have to fetch an evicted page again: see pagecache.h).
     * Other listings: sorted by name (strcmp). */
    struct entry *entries;
    size_t count;
    /* The indices of the entries sorted by name, for listing_find (4
     * bytes an entry, not a pointer's 8); NULL when `entries` are in name
     * order themselves. */
    uint32_t *by_name;
    struct entry self; /* LISTING_BATCH: the batch itself; LISTING_DOC: the
                          job (both named by their id) */
    /* LISTING_BATCH and LISTING_DOCS: the id of each entry, at its index
     * (a result's source_directory_file_id; a document's, or NULL for a
     * job's), strings in `strings`; NULL for other listings, whose entries
     * are named by their id or have none (listing_entry_id). */
    const char **ids;
    /* The names, ids and statuses of the entries and of self, one after
     * another: one allocation for a whole listing rather than one per
     * entry. NULL until the listing is named. */
    char *strings;
    size_t strings_bytes;
    bool results_null; /* LISTING_BATCH: the API gave "results": null */
    /* LISTING_DOCS: the job whose output each entry is, at the entry's
     * index (strings in `strings`); NULL for other listings. */
    const char **job_ids;
    /* LISTING_DOCS of a batch: the errors.tsv lines of its documents that
     * failed or expired; LISTING_DOC: why it has no content. Malloc'd, or
     * NULL. */
    char *note;
    /* LISTING_DOCS: one byte an entry, set once its document is known to
     * be gone (a v1 job's results expired): readdir leaves it out, a lookup
     * gets ENOENT, and the folder need not be listed again for it (that
     * costs all of completed/'s pages under a small cache_size). NULL for
     * other listings. Through listing_doc_gone and listing_mark_doc_gone:
     * any thread, without a lock. */
    unsigned char *gone;
    unsigned gone_marks; /* atomic: how many entries `gone` marks */
    /* LISTING_DOCS: the index a walk of the folder in its order would look
     * up next. A hint for reading ahead, not content: read and written
     * atomically by any thread. */
    size_t walk_next;
    size_t bytes;      /* memory held, for the cache budget */
    /* The register's (live.c), through listing_link(). */
    struct listing_link link;
};

/* Whether entry `index` of a LISTING_DOCS is known to be gone (false for
 * any other listing). Thread-safe. */
bool listing_doc_gone(const struct listing *listing, size_t index);

/* Marks entry `index` of a LISTING_DOCS gone (nothing for any other
 * listing). Thread-safe. */
void listing_mark_doc_gone(struct listing *listing, size_t index);

/* What a folder shown from the listing shows, as a number: equal = the
 * same entries. Its generation, changed by every entry marked gone (the
 * kernel's copy of the folder must not outlive a mark). Thread-safe. */
uint64_t listing_version(const struct listing *listing);

/* A new listing of `kind`, empty, with one reference (the caller's) and a
 * generation of its own; NULL on ENOMEM. Thread-safe. */
struct listing *listing_new(enum listing_kind kind);

/* Takes one more reference. Thread-safe. */
struct listing *listing_ref(struct listing *listing);

/* Takes one more reference unless the last one is already gone (its
 * release under way): true when it took one. For the register, which finds
 * listings it does not hold. Thread-safe. */
bool listing_ref_if_alive(struct listing *listing);

/* The register's part of the listing (see struct listing_link). */
struct listing_link *listing_link(struct listing *listing);

/* Drops one reference; the last one unregisters the listing (live.c) and
 * frees it with its entries and their references to blobs. Thread-safe;
 * safe on NULL. */
void listing_release(struct listing *listing);

/* The id of `entry`, an entry of `listing` or its self: a job's, a
 * batch's, a result's source_directory_file_id, a document's file id;
 * NULL for an item (its file's text has its item_id) and a v1 job's
 * document. Borrowed from the listing. Pure. */
const char *listing_entry_id(const struct listing *listing, const struct entry *entry);

/* The entry called `name`, or NULL. Borrowed from the listing. */
const struct entry *listing_find(const struct listing *listing, const char *name);

/* Leaves the entries where they are and indexes them by name (by_name),
 * so that listing_find works on entries in any order. 0 or -ENOMEM. */
int listing_index_names(struct listing *listing);

/* Drops an entry's reference to its content, leaving it zeroed (its
 * strings are its listing's); safe on a zeroed entry. For entries not yet
 * published in a listing (listing_release clears the others). */
void entry_clear(struct entry *entry);

/* The memory an entry stands for (itself and its content's footprint; its
 * strings are counted with its listing's block), for the cache budget.
 * Pure. */
size_t entry_bytes(const struct entry *entry);

/* Name order: strcmp of the names, as a qsort and bsearch comparison of
 * two struct entry. Pure. */
int entry_compare_names(const void *a, const void *b);

/*
 * Parses an RFC 3339 timestamp ("2025-03-01T10:00:00.123Z", offsets
 * allowed). Returns 0 or -EINVAL. Pure; for builder.c, and exposed for
 * tests.
 */
int listing_parse_time(const char *text, struct timespec *out);

#endif
