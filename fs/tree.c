/*
 * tree — the filesystem model (see include/batchfs/tree.h): what a node is,
 * what the catalog says about it, and the requests on one inode (lookup,
 * getattr, read, readlink, xattrs). The model lives in three files, which
 * share fs/tree_private.h:
 *
 *     fs/tree.c        views, resolution through the catalog, attributes
 *     fs/tree_nodes.c  the nodes and their hash tables: made, found, freed
 *     fs/tree_dir.c    open folders: snapshots, readdir(plus) entries
 *
 * A node exists for every inode the kernel holds a lookup of. Nodes carry
 * only what locates them (kind, parent, name) and what the kernel was last
 * told; what they contain is asked of the catalog each time, which answers
 * from its cache. So a node never holds stale data of its own, and the tree
 * stays small: 100 bytes or so per inode the kernel remembers.
 *
 * Locking (for all three files): tree->lock protects both hash tables and
 * every node field. It is never held while the catalog runs (which may wait
 * on the network); a request copies what it needs into a struct node_view,
 * unlocks, resolves the view through the catalog, and locks again to record
 * the outcome. The kernel does not FORGET an inode while a request on it is
 * in flight, so a node stays valid across that window. An open folder's
 * own lock (fs/tree_dir.c) is taken before tree->lock, never after.
 */
#include "batchfs/tree.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batchfs/catalog.h"
#include "batchfs/buf.h"
#include "batchfs/jsontext.h"
#include "batchfs/log.h"
#include "batchfs/names.h"
#include "batchfs/xattr.h"
#include "tree_private.h"

/* st_blksize of folders: the largest getdents buffer glibc will use. */
#define TREE_DIR_BLKSIZE (1 << 20)

/* Fixed entries of the folders whose contents never change. */
static const struct fixed_entry root_entries[] = {
    {".batchfs", NODE_META, -1, 0},
    {"batches", NODE_BATCHES, -1, 0},
    {"by-status", NODE_BY, BY_STATUS, 0},
    {"by-type", NODE_BY, BY_TYPE, 0},
    {"jobs", NODE_JOBS, -1, 0},
};

#define HAS_MARKDOWN (1u << CATALOG_MARKDOWN)
#define HAS_TEXT (1u << CATALOG_TEXT)
#define HAS_EXTRACTED (1u << CATALOG_EXTRACTED)

static const struct fixed_entry job_entries[] = {
    {"job.json", NODE_JOB_JSON, -1, 0},
    {"pending", NODE_STATUS, 0, 0},
    {"processing", NODE_STATUS, 1, 0},
    {"completed", NODE_STATUS, 2, 0},
    {"failed", NODE_STATUS, 3, 0},
    {"skipped", NODE_STATUS, 4, 0},
    {"cancelled", NODE_STATUS, 5, 0},
    {"items.ndjson", NODE_JOB_FILE, CATALOG_FILE_NDJSON, 0},
    {"errors.tsv", NODE_JOB_FILE, CATALOG_FILE_ERRORS, 0},
    {"progress", NODE_JOB_FILE, CATALOG_FILE_PROGRESS, 0},
    {"markdown", NODE_DOCS, CATALOG_MARKDOWN, HAS_MARKDOWN},
    {"text", NODE_DOCS, CATALOG_TEXT, HAS_TEXT},
};

static const struct fixed_entry batch_entries[] = {
    {"batch.json", NODE_BATCH_JSON, -1, 0},
    {"results", NODE_RESULTS, -1, 0},
    {"results.ndjson", NODE_BATCH_FILE, CATALOG_FILE_NDJSON, 0},
    {"errors.tsv", NODE_BATCH_FILE, CATALOG_FILE_ERRORS, 0},
    {"markdown", NODE_DOCS, CATALOG_MARKDOWN, HAS_MARKDOWN},
    {"text", NODE_DOCS, CATALOG_TEXT, HAS_TEXT},
    {"extracted", NODE_DOCS, CATALOG_EXTRACTED, HAS_EXTRACTED},
    {"extracted.ndjson", NODE_BATCH_FILE, CATALOG_FILE_EXTRACTED, HAS_EXTRACTED},
};

static const struct fixed_entry meta_entries[] = {
    {"config", NODE_META_FILE, TREE_META_CONFIG, 0},
    {"stats", NODE_META_FILE, TREE_META_STATS, 0},
};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

_Static_assert(CATALOG_ITEM_STATUS_COUNT - 1 <= NODE_STATUS_INDEX_MAX &&
                   CATALOG_CONTENT_COUNT - 1 <= NODE_STATUS_INDEX_MAX &&
                   CATALOG_FILE_EXTRACTED <= NODE_STATUS_INDEX_MAX &&
                   TREE_META_CONFIG <= NODE_STATUS_INDEX_MAX,
               "struct node: status_index takes 4 bits");

static const struct fixed_entry *fixed_find(const struct fixed_entry *entries, size_t count,
                                            const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (!strcmp(entries[i].name, name))
            return &entries[i];
    return NULL;
}

const struct fixed_entry *folder_fixed_entries(enum node_kind folder, size_t *count)
{
    switch (folder) {
    case NODE_ROOT:
        *count = COUNT_OF(root_entries);
        return root_entries;
    case NODE_JOB:
        *count = COUNT_OF(job_entries);
        return job_entries;
    case NODE_BATCH:
        *count = COUNT_OF(batch_entries);
        return batch_entries;
    case NODE_META:
        *count = COUNT_OF(meta_entries);
        return meta_entries;
    default:
        *count = 0;
        return NULL;
    }
}

/* ---- views: what a request needs to know about a node ---------------- */

int node_view_fill(const struct node *node, struct node_view *view)
{
    const struct node *owner = node;

    view->ino = node->ino;
    view->kind = node->kind;
    /* An item is found through its folder's status, a document through its
     * folder's content. */
    view->status_index = node->kind == NODE_ITEM || node->kind == NODE_DOC
                             ? node->parent->status_index
                             : node->status_index;
    view->owner_id[0] = '\0';
    view->group[0] = '\0';
    view->terminal = false;
    view->batch_owner = false;
    if (strlen(node->name) >= sizeof(view->name))
        return -ENAMETOOLONG;
    strcpy(view->name, node->name);
    if (node->kind == NODE_BY_GROUP)
        strcpy(view->group, node->name);
    else if (node->kind == NODE_LINK && strlen(node->parent->name) < sizeof(view->group))
        strcpy(view->group, node->parent->name);
    while (owner && owner->kind != NODE_JOB && owner->kind != NODE_BATCH)
        owner = owner->parent;
    if (owner) {
        if (strlen(owner->name) >= sizeof(view->owner_id))
            return -ENAMETOOLONG;
        strcpy(view->owner_id, owner->name);
        view->terminal = owner->terminal;
        view->batch_owner = owner->kind == NODE_BATCH;
    }
    return 0;
}

/* A view of a node that does not exist yet: `name` under `parent`. */
static int node_view_child(const struct node *parent, const char *name, enum node_kind kind,
                           int status_index, struct node_view *view)
{
    int rc = node_view_fill(parent, view);

    if (rc)
        return rc;
    view->ino = 0;
    view->kind = kind;
    /* Items, documents, groups and links go by their folder's status_index. */
    if (kind != NODE_ITEM && kind != NODE_DOC && kind != NODE_BY_GROUP && kind != NODE_LINK)
        view->status_index = status_index;
    if (strlen(name) >= sizeof(view->name))
        return -ENAMETOOLONG;
    strcpy(view->name, name);
    if (kind == NODE_BY_GROUP)
        strcpy(view->group, name);
    else if (kind == NODE_LINK)
        strcpy(view->group, parent->name);
    if (kind == NODE_JOB || kind == NODE_BATCH) {
        if (strlen(name) >= sizeof(view->owner_id))
            return -ENOENT; /* not an id */
        strcpy(view->owner_id, name);
        view->batch_owner = kind == NODE_BATCH;
    }
    return 0;
}

/* ---- resolution: what the catalog says about a view ----------------- */

void resolved_release(struct resolved *r)
{
    if (r->content)
        blob_unref(r->content);
    if (r->listing)
        listing_release(r->listing);
    memset(r, 0, sizeof(*r));
}

/* How many content folders a job or batch with `contents` has. */
static nlink_t contents_count(unsigned contents)
{
    return (nlink_t)__builtin_popcount(contents);
}

/* A content folder, or a document in it, of the job or batch whose entry
 * (a job, or a batch's self) is `owner`. */
static int resolve_docs(struct tree *tree, const struct node_view *view,
                        const struct entry *owner, bool want_listing, struct resolved *r)
{
    enum catalog_content content = (enum catalog_content)view->status_index;
    struct listing *docs;
    const struct entry *doc;
    int rc;

    if (view->status_index < 0 || view->status_index >= CATALOG_CONTENT_COUNT)
        return -ENOENT;
    /* A document: its folder's listing says (-ENOENT where there is no such
     * folder) without reading the owner's text again, which for a batch is
     * every result, on every lookup, getattr and read. */
    if (view->kind == NODE_DOCS &&
        !(catalog_contents(owner, view->batch_owner) & 1u << content))
        return -ENOENT;
    if (view->kind == NODE_DOCS) {
        r->nlink = 2;
        return want_listing ? catalog_docs(tree->catalog, view->batch_owner, view->owner_id,
                                           content, &r->listing)
                            : 0;
    }
    rc = catalog_docs(tree->catalog, view->batch_owner, view->owner_id, content, &docs);
    if (rc)
        return rc;
    doc = listing_find(docs, view->name);
    if (!doc) {
        rc = -ENOENT;
    } else {
        rc = catalog_doc_content(tree->catalog, docs, (size_t)(doc - docs->entries),
                                 content, &r->content);
        r->nlink = 1;
        if (doc->mtime_ns)
            r->mtime = entry_mtime(doc);
    }
    listing_release(docs);
    return rc;
}

static int resolve_job(struct tree *tree, const struct node_view *view, bool want_listing,
                       struct resolved *r)
{
    struct listing *owner;
    const struct entry *job;
    int rc;

    rc = catalog_job(tree->catalog, view->owner_id, &owner, &job);
    if (rc)
        return rc;
    r->mtime = entry_mtime(job);
    r->terminal = catalog_job_is_terminal(job->status);
    switch (view->kind) {
    case NODE_JOB:
        r->nlink = 2 + CATALOG_ITEM_STATUS_COUNT + contents_count(catalog_contents(job, false));
        if (want_listing) {
            r->listing = listing_ref(owner);
            r->self = job;
        }
        break;
    case NODE_JOB_JSON:
        r->nlink = 1;
        r->content = blob_ref(job->content);
        break;
    case NODE_DOCS:
    case NODE_DOC:
        rc = resolve_docs(tree, view, job, want_listing, r);
        break;
    default: /* NODE_STATUS */
        r->nlink = 2;
        if (want_listing)
            rc = catalog_items(tree->catalog, view->owner_id, view->status_index,
                               &r->listing);
        break;
    }
    listing_release(owner);
    return rc;
}

static int resolve_item(struct tree *tree, const struct node_view *view, struct resolved *r)
{
    struct listing *items;
    const struct entry *item;
    int rc;

    rc = catalog_items(tree->catalog, view->owner_id, view->status_index, &items);
    if (rc)
        return rc;
    item = listing_find(items, view->name);
    if (item) {
        r->content = blob_ref(item->content);
        r->mtime = entry_mtime(item);
        r->nlink = 1;
    } else {
        rc = -ENOENT;
    }
    listing_release(items);
    return rc;
}

static int resolve_batch(struct tree *tree, const struct node_view *view, bool want_listing,
                         struct resolved *r)
{
    struct listing *batch;
    const struct entry *result;
    int rc;

    rc = catalog_batch(tree->catalog, view->owner_id, &batch);
    if (rc)
        return rc;
    r->mtime = entry_mtime(&batch->self);
    r->terminal = catalog_job_is_terminal(batch->self.status);
    if (view->kind == NODE_DOCS || view->kind == NODE_DOC) {
        rc = resolve_docs(tree, view, &batch->self, want_listing, r);
        listing_release(batch);
        return rc;
    }
    switch (view->kind) {
    case NODE_BATCH:
        r->nlink = 3 + contents_count(catalog_contents(&batch->self, true));
        break;
    case NODE_BATCH_JSON:
        r->nlink = 1;
        r->content = blob_ref(batch->self.content);
        break;
    case NODE_RESULTS:
        r->nlink = 2;
        break;
    default: /* NODE_RESULT */
        result = listing_find(batch, view->name);
        if (!result) {
            rc = -ENOENT;
            break;
        }
        r->nlink = 1;
        r->mtime = entry_mtime(result->mtime_ns ? result : &batch->self);
        r->content = blob_ref(result->content);
        break;
    }
    if (!rc && want_listing)
        r->listing = listing_ref(batch);
    listing_release(batch);
    return rc;
}

/* Whether a looked-up name can be a folder of a grouped view: one that
 * job_group_value could give. */
static bool group_name_ok(const char *name)
{
    char group[NAMES_MAX_LEN + 1];

    return names_group(name, strlen(name), group, sizeof(group)) && !strcmp(group, name);
}

/* Longest job_type text that may still decode to a folder's name: six
 * bytes (an escape) for each byte of the name, and the quotes. */
#define GROUP_TEXT_MAX (6 * NAMES_MAX_LEN + 2)

/* The value job `job` is grouped under (its status or its job_type), named
 * by rule 1 of the item names, like them, into out; false when it has none
 * that can name a folder. */
bool job_group_value(const struct entry *job, int by, char *out, size_t len)
{
    static const char *const job_type[] = {"job_type"};
    char decoded[GROUP_TEXT_MAX];
    size_t n;

    if (by == BY_STATUS) /* decoded when listed; a NUL already '_' */
        return job->status && names_group(job->status, strlen(job->status), out, len);
    return !catalog_entry_string(job, job_type, 1, decoded, sizeof(decoded), &n) &&
           names_group(decoded, n, out, len);
}

/* by-…/<group>/ and its links: checked against the job list. */
static int resolve_group(struct tree *tree, const struct node_view *view, bool want_listing,
                         struct resolved *r)
{
    struct listing *jobs;
    char value[NAMES_MAX_LEN + 1];
    int rc;

    rc = catalog_jobs(tree->catalog, &jobs);
    if (rc)
        return rc;
    rc = -ENOENT;
    if (view->kind == NODE_LINK) {
        const struct entry *job = listing_find(jobs, view->name);

        if (job && job_group_value(job, view->status_index, value, sizeof(value)) &&
            !strcmp(value, view->group)) {
            r->nlink = 1;
            r->mtime = entry_mtime(job);
            r->link_len = strlen(LINK_TARGET_PREFIX) + strlen(view->name);
            rc = 0;
        }
    } else {
        for (size_t i = 0; i < jobs->count && rc; i++)
            if (job_group_value(&jobs->entries[i], view->status_index, value, sizeof(value)) &&
                !strcmp(value, view->group))
                rc = 0;
        r->nlink = 2;
        r->mtime = tree->mount_time;
    }
    if (!rc && want_listing)
        r->listing = listing_ref(jobs);
    listing_release(jobs);
    return rc;
}

/* An aggregate file: built by the catalog from the cached listings. */
static int resolve_file(struct tree *tree, const struct node_view *view, struct resolved *r)
{
    struct listing *file;
    int rc;

    rc = catalog_file(tree->catalog, view->kind == NODE_BATCH_FILE, view->owner_id,
                      (enum catalog_file)view->status_index, &file);
    if (rc)
        return rc;
    r->nlink = 1;
    r->mtime = entry_mtime(&file->self);
    r->content = blob_ref(file->self.content);
    listing_release(file);
    return 0;
}

/* .batchfs/stats and config: made now, by the program's callback. */
static int resolve_meta(struct tree *tree, const struct node_view *view, struct resolved *r)
{
    struct buf text = BUF_INIT;
    int rc;

    if (!tree->meta)
        return -ENOENT;
    rc = tree->meta(tree->meta_arg, view->status_index, &text);
    if (!rc) {
        r->content = blob_new(text.data ? text.data : "", text.len);
        rc = r->content ? 0 : -ENOMEM;
    }
    buf_free(&text);
    r->nlink = 1;
    clock_gettime(CLOCK_REALTIME, &r->mtime);
    return rc;
}

/* Asks the catalog about `view`; with want_listing, folders also get their
 * listing (fetched if needed). */
int resolve_view(struct tree *tree, const struct node_view *view, bool want_listing,
                 struct resolved *r)
{
    int rc = 0;

    memset(r, 0, sizeof(*r));
    switch (view->kind) {
    case NODE_ROOT:
        r->nlink = 2 + COUNT_OF(root_entries); /* every entry is a folder */
        r->mtime = tree->mount_time;
        break;
    case NODE_META:
        r->nlink = 2;
        r->mtime = tree->mount_time;
        break;
    case NODE_META_FILE:
        rc = resolve_meta(tree, view, r);
        break;
    case NODE_JOB_FILE:
    case NODE_BATCH_FILE:
        rc = resolve_file(tree, view, r);
        break;
    case NODE_BY:
        r->nlink = 1;
        r->mtime = tree->mount_time;
        if (want_listing)
            rc = catalog_jobs(tree->catalog, &r->listing);
        break;
    case NODE_BY_GROUP:
    case NODE_LINK:
        rc = resolve_group(tree, view, want_listing, r);
        break;
    case NODE_JOBS:
    case NODE_BATCHES:
        /* The count of subfolders is not known without a listing; 1 tells
         * find(1) and friends not to rely on it. */
        r->nlink = 1;
        r->mtime = tree->mount_time;
        if (want_listing)
            rc = view->kind == NODE_JOBS ? catalog_jobs(tree->catalog, &r->listing)
                                         : catalog_batches(tree->catalog, &r->listing);
        break;
    case NODE_JOB:
    case NODE_JOB_JSON:
    case NODE_STATUS:
        rc = resolve_job(tree, view, want_listing, r);
        break;
    case NODE_ITEM:
        rc = resolve_item(tree, view, r);
        break;
    case NODE_BATCH:
    case NODE_BATCH_JSON:
    case NODE_RESULTS:
    case NODE_RESULT:
        rc = resolve_batch(tree, view, want_listing, r);
        break;
    case NODE_DOCS:
    case NODE_DOC:
        rc = view->batch_owner ? resolve_batch(tree, view, want_listing, r)
                               : resolve_job(tree, view, want_listing, r);
        break;
    }
    if (rc)
        resolved_release(r);
    else if (!r->mtime.tv_sec && !r->mtime.tv_nsec)
        r->mtime = tree->mount_time;
    return rc;
}

/* ---- attributes and what the kernel was told ------------------------- */

bool resolved_sized(const struct resolved *r)
{
    size_t len;

    return !r->content || !blob_measure(r->content, &len);
}

/* Has the size attr_fill gives for `view` measured (see resolved_sized): 0,
 * or a negative errno, logged here, the one place that knows the file. */
static int resolved_measure(const struct resolved *r, const struct node_view *view)
{
    char reason[128];
    size_t len;
    int rc = r->content ? blob_measure(r->content, &len) : 0;

    if (rc)
        log_error("%s%s%s: the size of the file could not be had: %s", view->owner_id,
                  view->owner_id[0] ? "/" : "", view->name,
                  strerror_r(-rc, reason, sizeof(reason)));
    return rc;
}

void attr_fill(const struct tree *tree, enum node_kind kind, uint64_t ino,
               const struct resolved *r, bool terminal, struct tree_attr *out)
{
    struct stat *st = &out->st;

    memset(out, 0, sizeof(*out));
    st->st_ino = ino;
    st->st_uid = tree->uid;
    st->st_gid = tree->gid;
    st->st_nlink = r->nlink ? r->nlink : 1;
    st->st_mtim = r->mtime;
    st->st_ctim = r->mtime;
    st->st_atim = r->mtime;
    /* glibc's opendir sizes its getdents buffer by the folder's st_blksize
     * (32 KiB to 1 MiB), and the kernel asks for that much per readdir:
     * big folders then cost a few dozen round trips instead of hundreds. */
    st->st_blksize = node_kind_is_dir(kind) ? TREE_DIR_BLKSIZE : 4096;
    if (kind == NODE_LINK) {
        st->st_mode = S_IFLNK | 0777;
        st->st_size = (off_t)r->link_len;
    } else if (node_kind_is_dir(kind)) {
        st->st_mode = S_IFDIR | 0555;
    } else {
        /* Measured (resolved_measure, resolved_sized), but for entries
         * handed out without their attributes. */
        size_t len = r->content ? blob_len(r->content) : 0;

        st->st_mode = S_IFREG | 0444;
        st->st_size = len == BLOB_LEN_UNMEASURED ? 0 : (off_t)len;
        st->st_blocks = (st->st_size + 511) / 512;
    }
    out->timeout_s = terminal ? tree->terminal_ttl_s : tree->ttl_s;
    if (kind == NODE_META_FILE)
        out->timeout_s = 0; /* live counters: ask every time */
}

/*
 * One inode per version of a file that can change.
 *
 * The kernel reads a file by inode, in pieces, and checks each read against
 * the size it was last told (it may skip open altogether: allow_no_open,
 * and an open reply carries no size). If the bytes behind an inode could
 * change between the getattr that gave the size and the reads, or between
 * two reads, a reader would get a cut-off or NUL-padded file, or the start
 * of one version and the end of another; and pages the kernel cached for
 * an inode whose content changed at the same length would be served stale.
 * So an inode stands for one version: its node keeps the bytes whose size
 * the kernel was told (the snapshot) and every read of that inode gets
 * them, whatever the catalog holds by then. When the catalog's content for
 * the name differs, the node is detached and the name gets a new node, a
 * new inode, at its next lookup or readdirplus; the kernel, seeing another
 * inode for the name, drops its dentry, and the old inode (with its pages)
 * serves only whoever still has it open, whole and unchanged. A getattr of
 * an old version answers that version's size. This works with or without
 * open, keeps the page cache and mmap, and tools that take the size from
 * stat and then read (tar, wc -c, cp) see one version. FOPEN_DIRECT_IO
 * would have done for the reads alone, but stat would still disagree with
 * the bytes read, and no-open mode has no open to hang a snapshot on.
 *
 * Every file keeps its version, finished jobs' too: with terminal_ttl a
 * finished job is fetched again, and what comes back is the truth. What a
 * snapshot pins lasts as long as the kernel keeps the inode (until FORGET):
 * for an item of a finished job, a page of the page cache, whose bytes may
 * still be dropped (pagecache.h: references are not pins); for an item of
 * a running job, the page body it was listed in.
 */
static bool node_keeps_version(enum node_kind kind)
{
    return !node_kind_is_dir(kind) && kind != NODE_LINK;
}

/* The version `node` keeps (borrowed), or NULL: folders keep none. */
static struct blob *node_snapshot(const struct node *node)
{
    return node_kind_is_dir((enum node_kind)node->kind) ? NULL : node->file.snapshot;
}

/* The mtime told with the snapshot. */
static struct timespec node_mtime(const struct node *node)
{
    int64_t ms = node->file.mtime_ms, sec = ms / 1000, rem = ms % 1000;

    if (rem < 0) { /* before 1970: the division rounded up */
        sec--;
        rem += 1000;
    }
    return (struct timespec){.tv_sec = (time_t)sec,
                             .tv_nsec = (long)(rem * 1000000 + node->mtime_sub_ms)};
}

/* Keeps `mtime` with the snapshot, exactly: whole milliseconds and the
 * nanoseconds past them. Its nanoseconds are below 1e9 and its seconds
 * within ±292 million years (listing_parse_time and clock_gettime make
 * them so); anything else is clamped rather than overflowed. */
static void node_set_mtime(struct node *node, struct timespec mtime)
{
    const int64_t max_sec = INT64_MAX / 1000 - 1;
    int64_t sec = mtime.tv_sec < -max_sec  ? -max_sec
                  : mtime.tv_sec > max_sec ? max_sec
                                           : mtime.tv_sec;
    long nsec = mtime.tv_nsec < 0            ? 0
                : mtime.tv_nsec > 999999999L ? 999999999L
                                             : mtime.tv_nsec;

    node->file.mtime_ms = sec * 1000 + nsec / 1000000;
    node->mtime_sub_ms = (unsigned)(nsec % 1000000);
}

/* Whether `node` stands for a version other than `content` (tree->lock). */
static bool node_outdated(const struct node *node, const struct blob *content)
{
    const struct blob *snapshot = node_snapshot(node);

    return snapshot && content && !blob_same(snapshot, content);
}

/* Keeps `content` as the version of file `node` (tree->lock held); folders
 * and links keep nothing. */
static void node_keep_snapshot(struct node *node, struct blob *content,
                               struct timespec mtime)
{
    struct blob *old;

    if (!node_keeps_version((enum node_kind)node->kind))
        return;
    old = node->file.snapshot;
    node->file.snapshot = NULL;
    node->served = 0; /* what it was given was the old snapshot */
    if (content) {
        node->file.snapshot = blob_ref(content);
        node_set_mtime(node, mtime);
    }
    blob_unref(old);
}

/* The digest of what the kernel was last given of file `node`: its
 * snapshot's, or 0 for nothing (or for something other than the snapshot,
 * which is compared only with the snapshot: see tree_read). */
static uint64_t node_served_digest(const struct node *node)
{
    if (!node->served || !node->file.snapshot)
        return 0;
    return blob_get_digest(node->file.snapshot);
}

bool node_note_version(struct node *node, struct blob *content, struct timespec mtime)
{
    uint64_t served;

    if (!content || !node_keeps_version((enum node_kind)node->kind)) {
        node_keep_snapshot(node, content, mtime);
        return false;
    }
    served = node_served_digest(node);
    node_keep_snapshot(node, content, mtime);
    node->served = 1;
    return served && served != blob_get_digest(content);
}

struct node *tree_link_version(struct tree *tree, struct node *parent, const char *name,
                               enum node_kind kind, int status_index,
                               const struct blob *content)
{
    struct node *node = tree_find_child(tree, parent, name);

    if (node && node_outdated(node, content)) {
        tree_detach(tree, node);
        node = NULL;
    }
    if (node) {
        node_add_lookups(node, 1);
        return node;
    }
    return tree_link_new(tree, parent, name, kind, status_index, 1);
}

/* A name whose inode the kernel must look up again. */
struct stale_name {
    uint64_t parent; /* 0: none */
    char name[NAMES_MAX_LEN + 1];
};

/* When `node` stands for another version than r->content (tree->lock
 * held): detaches it, makes *r that version (*newer takes r->content, to
 * unref without the lock), notes its name in *stale and returns true. */
static bool node_take_version(struct tree *tree, struct node *node, struct resolved *r,
                              struct blob **newer, struct stale_name *stale)
{
    if (!node_outdated(node, r->content))
        return false;
    *newer = r->content;
    r->content = blob_ref(node->file.snapshot);
    r->mtime = node_mtime(node);
    r->nlink = 1;
    /* The kernel's entry for the name leads to this inode until it expires:
     * for a name it never asks for again (a file readdirplus hands out
     * without attributes, whose entry a listing does not refresh), every
     * access would keep getting the old version. */
    if (node->parent && strlen(node->name) < sizeof(stale->name)) {
        stale->parent = node->parent->ino;
        strcpy(stale->name, node->name);
    }
    tree_detach(tree, node);
    return true;
}

/* Tells the kernel to look `stale`'s name up again (without tree->lock). */
static void tree_notify_stale(struct tree *tree, const struct stale_name *stale)
{
    if (stale->parent && tree->inval_entry)
        tree->inval_entry(tree->inval_arg, stale->parent, stale->name);
}

/* A view of an old version answers from its snapshot (tree->lock held):
 * true and *r filled when `node` is one. */
static bool node_resolve_frozen(const struct node *node, struct resolved *r)
{
    if (!node || !node->detached || !node_snapshot(node))
        return false;
    memset(r, 0, sizeof(*r));
    r->content = blob_ref(node->file.snapshot);
    r->mtime = node_mtime(node);
    r->nlink = 1;
    return true;
}

/* ---- public ---------------------------------------------------------- */

/* Which kind of node `name` would be under a folder of kind `parent`;
 * -ENOENT when it cannot exist there whatever the API says. */
static int child_kind(enum node_kind parent, const char *name, enum node_kind *kind,
                      int *status_index)
{
    const struct fixed_entry *fixed = NULL, *entries;
    size_t count;

    *status_index = -1;
    switch (parent) {
    case NODE_ROOT:
    case NODE_JOB:
    case NODE_BATCH:
    case NODE_META:
        entries = folder_fixed_entries(parent, &count);
        fixed = fixed_find(entries, count, name);
        break;
    case NODE_JOBS:
    case NODE_BATCHES:
        /* Junk such as ".git" or "HEAD" never costs a request. */
        if (!names_is_id(name))
            return -ENOENT;
        *kind = parent == NODE_JOBS ? NODE_JOB : NODE_BATCH;
        return 0;
    case NODE_STATUS:
        *kind = NODE_ITEM;
        return 0;
    case NODE_BY:
        *kind = NODE_BY_GROUP;
        return group_name_ok(name) ? 0 : -ENOENT;
    case NODE_BY_GROUP:
        *kind = NODE_LINK;
        return names_is_id(name) ? 0 : -ENOENT;
    case NODE_RESULTS:
        *kind = NODE_RESULT;
        return 0;
    case NODE_DOCS:
        *kind = NODE_DOC;
        return 0;
    default:
        return -ENOTDIR;
    }
    if (!fixed)
        return -ENOENT;
    *kind = fixed->kind;
    *status_index = fixed->status_index;
    return 0;
}

int tree_lookup(struct tree *tree, uint64_t parent_ino, const char *name,
                struct tree_attr *out)
{
    struct node_view view;
    struct resolved r = {0};
    struct node *parent, *node;
    enum node_kind kind;
    int status_index, rc;
    bool inval = false;
    uint64_t ino = 0;

    memset(out, 0, sizeof(*out));
    out->timeout_s = tree->ttl_s;
    if (strlen(name) > NAMES_MAX_LEN)
        return -ENAMETOOLONG;
    pthread_mutex_lock(&tree->lock);
    parent = tree_find_ino(tree, parent_ino);
    if (!parent) {
        rc = -ESTALE;
        goto unlock;
    }
    rc = child_kind(parent->kind, name, &kind, &status_index);
    if (!rc)
        rc = node_view_child(parent, name, kind, status_index, &view);
unlock:
    pthread_mutex_unlock(&tree->lock);
    if (rc)
        return rc;

    rc = resolve_view(tree, &view, false, &r);
    if (!rc && (rc = resolved_measure(&r, &view)))
        resolved_release(&r);
    if (rc)
        return rc;

    pthread_mutex_lock(&tree->lock);
    node = tree_link_version(tree, parent, name, kind, view.status_index, r.content);
    if (!node) {
        rc = -ENOMEM;
    } else {
        if (kind == NODE_JOB || kind == NODE_BATCH) {
            node->terminal = r.terminal;
            view.terminal = r.terminal;
        }
        inval = node_note_version(node, r.content, r.mtime);
        ino = node->ino;
        attr_fill(tree, kind, ino, &r, view.terminal, out);
    }
    pthread_mutex_unlock(&tree->lock);
    if (inval)
        tree_notify(tree, ino);
    resolved_release(&r);
    return rc;
}

/* Copies what a request on inode `ino` needs to know. */
static int tree_view_of(struct tree *tree, uint64_t ino, struct node_view *view)
{
    struct node *node;
    int rc;

    pthread_mutex_lock(&tree->lock);
    node = tree_find_ino(tree, ino);
    rc = node ? node_view_fill(node, view) : -ESTALE;
    pthread_mutex_unlock(&tree->lock);
    return rc;
}

/* Records the outcome of resolving node `ino`; true when the kernel's copy
 * of it must go. When the node stands for another version than the one
 * resolved, it is detached and *r becomes that version's (see
 * node_keeps_version). */
static bool tree_record(struct tree *tree, struct node_view *view, struct resolved *r)
{
    struct stale_name stale = {0};
    struct blob *newer = NULL;
    struct node *node;
    bool inval = false;

    pthread_mutex_lock(&tree->lock);
    node = tree_find_ino(tree, view->ino);
    if (node && !node_take_version(tree, node, r, &newer, &stale)) {
        if (node->kind == NODE_JOB || node->kind == NODE_BATCH) {
            node->terminal = r->terminal;
            view->terminal = r->terminal;
        }
        inval = node_note_version(node, r->content, r->mtime);
    }
    pthread_mutex_unlock(&tree->lock);
    if (newer)
        blob_unref(newer); /* outside the lock: it may hold the last listing */
    tree_notify_stale(tree, &stale);
    return inval;
}

/* Resolves the file or folder `view` names (see resolve_view): an old
 * version (detached) answers from its snapshot, *frozen then true; anything
 * else is asked of the catalog. */
static int resolve_version(struct tree *tree, const struct node_view *view,
                           struct resolved *r, bool *frozen)
{
    pthread_mutex_lock(&tree->lock);
    *frozen = node_resolve_frozen(tree_find_ino(tree, view->ino), r);
    pthread_mutex_unlock(&tree->lock);
    return *frozen ? 0 : resolve_view(tree, view, false, r);
}

int tree_getattr(struct tree *tree, uint64_t ino, struct tree_attr *out)
{
    struct node_view view;
    struct resolved r;
    bool frozen;
    int rc;

    rc = tree_view_of(tree, ino, &view);
    if (rc)
        return rc;
    rc = resolve_version(tree, &view, &r, &frozen);
    if (!rc && (rc = resolved_measure(&r, &view)))
        resolved_release(&r);
    if (rc)
        return rc;
    if (!frozen && tree_record(tree, &view, &r))
        tree_notify(tree, ino);
    attr_fill(tree, view.kind, ino, &r, view.terminal, out);
    resolved_release(&r);
    return 0;
}

int tree_read(struct tree *tree, uint64_t ino, struct blob **content, bool *unchanged)
{
    struct stale_name stale = {0};
    struct blob *newer = NULL;
    struct node_view view;
    struct resolved r;
    struct node *node;
    bool frozen;
    int rc;

    *content = NULL;
    *unchanged = false;
    rc = tree_view_of(tree, ino, &view);
    if (rc)
        return rc;
    if (node_kind_is_dir(view.kind))
        return -EISDIR;
    if (view.kind == NODE_LINK)
        return -EINVAL;
    /* Asked of the catalog even when the node keeps a version: a page
     * dropped from the cache comes back through the listing it is in now. */
    rc = resolve_version(tree, &view, &r, &frozen);
    if (!rc && (rc = resolved_measure(&r, &view)))
        resolved_release(&r);
    if (rc)
        return rc;
    pthread_mutex_lock(&tree->lock);
    node = tree_find_ino(tree, ino);
    if (node) {
        *unchanged = node_served_digest(node) == blob_get_digest(r.content);
        if (frozen) {
            node->served = 1; /* r.content is the snapshot */
        } else if (node_take_version(tree, node, &r, &newer, &stale)) {
            /* The bytes of the version whose size the kernel was told.
             * What was asked for was the newer version: served stays
             * unset, so the next read of this inode does not count on
             * the kernel's cached copy. */
            *unchanged = true;
            node->served = 0;
        } else {
            node_keep_snapshot(node, r.content, r.mtime);
            node->served = 1;
        }
    }
    pthread_mutex_unlock(&tree->lock);
    if (newer)
        blob_unref(newer); /* outside the lock: it may hold the last listing */
    tree_notify_stale(tree, &stale);
    *content = r.content;
    r.content = NULL;
    resolved_release(&r);
    return 0;
}

int tree_make_present(struct tree *tree, struct blob *content)
{
    return catalog_make_present(tree->catalog, content);
}

int tree_readlink(struct tree *tree, uint64_t ino, struct buf *out)
{
    struct node_view view;
    struct resolved r;
    int rc;

    rc = tree_view_of(tree, ino, &view);
    if (rc)
        return rc;
    if (view.kind != NODE_LINK)
        return -EINVAL;
    rc = resolve_view(tree, &view, false, &r);
    if (rc)
        return rc;
    resolved_release(&r);
    rc = buf_append_str(out, LINK_TARGET_PREFIX);
    if (!rc)
        rc = buf_append_str(out, view.name);
    return rc;
}

/* ---- extended attributes (the fields themselves: xattr.c) ------------ */

/* The attributes of document `view`, as the JSON text of an item that has
 * only a status and a job_id (xattr.c reads them from it). */
static int xattr_doc(struct tree *tree, const struct node_view *view, struct blob **content)
{
    struct listing *docs;
    const struct entry *doc;
    struct buf text = BUF_INIT;
    int rc;

    rc = catalog_docs(tree->catalog, view->batch_owner, view->owner_id,
                      (enum catalog_content)view->status_index, &docs);
    if (rc)
        return rc;
    doc = listing_find(docs, view->name);
    if (!doc) {
        rc = -ENOENT;
        goto out;
    }
    rc = buf_append_str(&text, "{\"status\":");
    if (!rc)
        rc = jsontext_append_string(&text, doc->status, strlen(doc->status));
    if (!rc)
        rc = buf_append_str(&text, ",\"job_id\":");
    if (!rc) {
        const char *job_id = docs->job_ids[doc - docs->entries];

        rc = jsontext_append_string(&text, job_id, strlen(job_id));
    }
    if (!rc)
        rc = buf_append_char(&text, '}');
    if (!rc) {
        *content = blob_new(text.data, text.len);
        rc = *content ? 0 : -ENOMEM;
    }
out:
    buf_free(&text);
    listing_release(docs);
    return rc;
}

/* The file of the object behind node `ino`, and which kind of object it is;
 * -ENODATA for nodes without one. */
static int xattr_content(struct tree *tree, uint64_t ino, enum xattr_object *kind,
                         struct blob **content)
{
    struct node_view view;
    struct resolved r;
    int rc;

    *content = NULL;
    rc = tree_view_of(tree, ino, &view);
    if (rc)
        return rc;
    if (view.kind == NODE_DOC) {
        *kind = XATTR_ITEM;
        return xattr_doc(tree, &view, content);
    }
    *kind = view.kind == NODE_ITEM ? XATTR_ITEM : view.kind == NODE_RESULT ? XATTR_RESULT
                                                                            : XATTR_OTHER;
    if (view.kind == NODE_JOB)
        view.kind = NODE_JOB_JSON;
    else if (view.kind == NODE_BATCH)
        view.kind = NODE_BATCH_JSON;
    else if (view.kind != NODE_ITEM && view.kind != NODE_RESULT)
        return -ENODATA;
    rc = resolve_view(tree, &view, false, &r);
    if (rc)
        return rc;
    /* Objects' files are JSON text; a made file has no fields to show. */
    if (r.content->kind != BLOB_MADE)
        *content = blob_ref(r.content);
    resolved_release(&r);
    return *content ? 0 : -ENODATA;
}

int tree_listxattr(struct tree *tree, uint64_t ino, struct buf *out)
{
    enum xattr_object kind;
    struct blob *content;
    const char *text;
    size_t len;
    int rc = xattr_content(tree, ino, &kind, &content);

    if (rc == -ENODATA)
        return 0; /* no attributes: an empty list */
    if (rc)
        return rc;
    rc = blob_text_begin(content, &text, &len);
    if (!rc) {
        rc = xattr_list(kind, text, len, out);
        blob_text_end(content);
    }
    blob_unref(content);
    return rc;
}

int tree_getxattr(struct tree *tree, uint64_t ino, const char *name, struct buf *out)
{
    enum xattr_object kind;
    struct blob *content;
    const char *text;
    size_t len;
    int rc = xattr_check_name(name); /* before any lookup: see xattr.h */

    if (rc)
        return rc;
    rc = xattr_content(tree, ino, &kind, &content);
    if (rc)
        return rc;
    rc = blob_text_begin(content, &text, &len);
    if (!rc) {
        rc = xattr_get(kind, text, len, name, out);
        blob_text_end(content);
    }
    blob_unref(content);
    return rc;
}

