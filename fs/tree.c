/*
 * tree — the filesystem model (see include/batchfs/tree.h).
 *
 * A node exists for every inode the kernel holds a lookup of. Nodes carry
 * only what locates them (kind, parent, name) and what the kernel was last
 * told; what they contain is asked of the catalog each time, which answers
 * from its cache. So a node never holds stale data of its own, and the tree
 * stays small: 100 bytes or so per inode the kernel remembers.
 *
 * Locking: tree->lock protects both hash tables and every node field. It is
 * never held while the catalog runs (which may wait on the network); a
 * request copies what it needs into a struct node_view, unlocks, resolves
 * the view through the catalog, and locks again to record the outcome. The
 * kernel does not FORGET an inode while a request on it is in flight, so a
 * node stays valid across that window.
 */
#include "batchfs/tree.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batchfs/catalog.h"
#include "batchfs/log.h"
#include "batchfs/buf.h"
#include "batchfs/names.h"
#include "batchfs/xattr.h"

enum node_kind {
    NODE_ROOT,
    NODE_JOBS,       /* jobs/ */
    NODE_JOB,        /* jobs/<id>/ */
    NODE_JOB_JSON,   /* jobs/<id>/job.json */
    NODE_STATUS,     /* jobs/<id>/<status>/ */
    NODE_ITEM,       /* jobs/<id>/<status>/<name>.json */
    NODE_BATCHES,    /* batches/ */
    NODE_BATCH,      /* batches/<id>/ */
    NODE_BATCH_JSON, /* batches/<id>/batch.json */
    NODE_RESULTS,    /* batches/<id>/results/ */
    NODE_RESULT,     /* batches/<id>/results/<file id>.json */
    NODE_JOB_FILE,   /* jobs/<id>/{items.ndjson,errors.tsv,progress} */
    NODE_BATCH_FILE, /* batches/<id>/{results.ndjson,errors.tsv} */
    NODE_META,       /* .batchfs/ */
    NODE_META_FILE,  /* .batchfs/{stats,config} */
    NODE_BY,         /* by-status/, by-type/ (status_index 0 and 1) */
    NODE_BY_GROUP,   /* by-status/<status>/, by-type/<type>/ */
    NODE_LINK,       /* by-…/<group>/<job id> -> ../../jobs/<job id> */
};

/* Where a grouped view's links point, before the job id. */
#define LINK_TARGET_PREFIX "../../jobs/"
/* status_index of NODE_BY: what jobs are grouped by. */
#define BY_STATUS 0
#define BY_TYPE 1

/* st_blksize of folders: the largest getdents buffer glibc will use. */
#define TREE_DIR_BLKSIZE (1 << 20)

static bool node_kind_is_dir(enum node_kind kind)
{
    return kind != NODE_JOB_JSON && kind != NODE_ITEM && kind != NODE_BATCH_JSON &&
           kind != NODE_RESULT && kind != NODE_JOB_FILE && kind != NODE_BATCH_FILE &&
           kind != NODE_META_FILE && kind != NODE_LINK;
}

struct node {
    uint64_t ino;
    enum node_kind kind;
    struct node *parent;   /* NULL for the root */
    int status_index;      /* NODE_STATUS: the status; NODE_*_FILE: which file */
    uint64_t nlookup;      /* lookups the kernel has not forgotten */
    size_t children;       /* nodes whose parent this is */
    uint64_t served;       /* files: digest of the content the kernel was given;
                              folders: generation of the listing; 0 = nothing yet */
    bool terminal;         /* NODE_JOB, NODE_BATCH: known to be finished */
    struct blob *snapshot; /* NODE_META_FILE: the bytes last described to the kernel */
    struct node *next_by_ino, *next_by_name;
    char name[];           /* in the node's own allocation: one per entry
                              listed, so one malloc rather than two */
};

/* A chained hash table of nodes; the chain link is chosen by the user. */
struct node_table {
    struct node **buckets;
    size_t size; /* a power of two */
};

struct tree {
    struct catalog *catalog;
    double ttl_s, terminal_ttl_s;
    uid_t uid;
    gid_t gid;
    tree_inval_fn inval;
    void *inval_arg;
    tree_meta_fn meta;
    void *meta_arg;
    struct timespec mount_time;

    pthread_mutex_t lock; /* protects everything below and every node */
    struct node_table by_ino, by_name;
    size_t count;
    uint64_t next_ino;
    struct node *root;
};

/* Fixed entries of the folders whose contents never change. */
struct fixed_entry {
    const char *name;
    enum node_kind kind;
    int status_index;
};

static const struct fixed_entry root_entries[] = {
    {".batchfs", NODE_META, -1},
    {"batches", NODE_BATCHES, -1},
    {"by-status", NODE_BY, BY_STATUS},
    {"by-type", NODE_BY, BY_TYPE},
    {"jobs", NODE_JOBS, -1},
};

static const struct fixed_entry job_entries[] = {
    {"job.json", NODE_JOB_JSON, -1},  {"pending", NODE_STATUS, 0},
    {"processing", NODE_STATUS, 1},   {"completed", NODE_STATUS, 2},
    {"failed", NODE_STATUS, 3},       {"skipped", NODE_STATUS, 4},
    {"cancelled", NODE_STATUS, 5},
    {"items.ndjson", NODE_JOB_FILE, CATALOG_FILE_NDJSON},
    {"errors.tsv", NODE_JOB_FILE, CATALOG_FILE_ERRORS},
    {"progress", NODE_JOB_FILE, CATALOG_FILE_PROGRESS},
};

static const struct fixed_entry batch_entries[] = {
    {"batch.json", NODE_BATCH_JSON, -1},
    {"results", NODE_RESULTS, -1},
    {"results.ndjson", NODE_BATCH_FILE, CATALOG_FILE_NDJSON},
    {"errors.tsv", NODE_BATCH_FILE, CATALOG_FILE_ERRORS},
};

static const struct fixed_entry meta_entries[] = {
    {"config", NODE_META_FILE, TREE_META_CONFIG},
    {"stats", NODE_META_FILE, TREE_META_STATS},
};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

static const struct fixed_entry *fixed_find(const struct fixed_entry *entries, size_t count,
                                            const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (!strcmp(entries[i].name, name))
            return &entries[i];
    return NULL;
}

/* ---- hash tables ----------------------------------------------------- */

static uint64_t hash_ino(uint64_t ino)
{
    ino ^= ino >> 33;
    ino *= 0xff51afd7ed558ccdULL;
    ino ^= ino >> 33;
    return ino;
}

static uint64_t hash_name(uint64_t parent, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ hash_ino(parent);

    for (; *name; name++) {
        h ^= (unsigned char)*name;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static struct node **chain_next(struct node *node, bool by_ino)
{
    return by_ino ? &node->next_by_ino : &node->next_by_name;
}

static uint64_t node_hash(const struct node *node, bool by_ino)
{
    return by_ino ? hash_ino(node->ino) : hash_name(node->parent->ino, node->name);
}

static int table_init(struct node_table *t)
{
    t->size = 1024;
    t->buckets = calloc(t->size, sizeof(*t->buckets));
    return t->buckets ? 0 : -ENOMEM;
}

/* Doubles the table; on no memory it stays as it is (only slower). */
/* Rehashes into `size` buckets (a power of two, larger than now); left as
 * it is when out of memory (chains just get longer). */
static void table_resize(struct node_table *t, bool by_ino, size_t size)
{
    struct node **buckets = calloc(size, sizeof(*buckets));

    if (!buckets)
        return;
    for (size_t i = 0; i < t->size; i++) {
        struct node *node = t->buckets[i];

        while (node) {
            struct node *next = *chain_next(node, by_ino);
            size_t b = node_hash(node, by_ino) & (size - 1);

            *chain_next(node, by_ino) = buckets[b];
            buckets[b] = node;
            node = next;
        }
    }
    free(t->buckets);
    t->buckets = buckets;
    t->size = size;
}

static void table_grow(struct node_table *t, bool by_ino)
{
    table_resize(t, by_ino, t->size * 2);
}

/* Room for `count` nodes in all (a hint), rehashing once rather than once
 * per doubling as a big folder's nodes arrive. */
static void table_reserve(struct node_table *t, bool by_ino, size_t count)
{
    size_t size = t->size;

    while (size < count && size <= SIZE_MAX / 2 / sizeof(struct node *))
        size *= 2;
    if (size > t->size)
        table_resize(t, by_ino, size);
}

static void table_insert(struct node_table *t, struct node *node, bool by_ino)
{
    size_t b = node_hash(node, by_ino) & (t->size - 1);

    *chain_next(node, by_ino) = t->buckets[b];
    t->buckets[b] = node;
}

static void table_remove(struct node_table *t, struct node *node, bool by_ino)
{
    struct node **p = &t->buckets[node_hash(node, by_ino) & (t->size - 1)];

    while (*p && *p != node)
        p = chain_next(*p, by_ino);
    if (*p)
        *p = *chain_next(node, by_ino);
}

static struct node *tree_find_ino(struct tree *tree, uint64_t ino)
{
    struct node *node = tree->by_ino.buckets[hash_ino(ino) & (tree->by_ino.size - 1)];

    while (node && node->ino != ino)
        node = node->next_by_ino;
    return node;
}

static struct node *tree_find_child(struct tree *tree, const struct node *parent,
                                    const char *name)
{
    size_t b = hash_name(parent->ino, name) & (tree->by_name.size - 1);
    struct node *node = tree->by_name.buckets[b];

    while (node && (node->parent != parent || strcmp(node->name, name)))
        node = node->next_by_name;
    return node;
}

/* ---- node lifetime (tree->lock held) --------------------------------- */

/* A zeroed node called `name`. */
static struct node *node_new(const char *name)
{
    size_t len = strlen(name);
    struct node *node = calloc(1, sizeof(*node) + len + 1);

    if (node)
        memcpy(node->name, name, len + 1);
    return node;
}

/* The child `name` of `parent`, created if needed, with `lookups` (0 or 1)
 * more kernel lookups counted. */
static struct node *tree_link_child(struct tree *tree, struct node *parent, const char *name,
                                    enum node_kind kind, int status_index, uint64_t lookups)
{
    struct node *node = tree_find_child(tree, parent, name);

    if (node) {
        node->nlookup += lookups;
        return node;
    }
    node = node_new(name);
    if (!node)
        return NULL;
    node->ino = tree->next_ino++;
    node->kind = kind;
    node->parent = parent;
    node->status_index = status_index;
    node->nlookup = lookups;
    parent->children++;
    if (tree->count >= tree->by_ino.size)
        table_grow(&tree->by_ino, true);
    if (tree->count >= tree->by_name.size)
        table_grow(&tree->by_name, false);
    table_insert(&tree->by_ino, node, true);
    table_insert(&tree->by_name, node, false);
    tree->count++;
    return node;
}

/* Frees `node` and then any ancestor it kept alive, once nothing holds them. */
static void tree_release_unused(struct tree *tree, struct node *node)
{
    while (node && node != tree->root && !node->nlookup && !node->children) {
        struct node *parent = node->parent;

        table_remove(&tree->by_ino, node, true);
        table_remove(&tree->by_name, node, false);
        tree->count--;
        parent->children--;
        blob_unref(node->snapshot);
        free(node);
        node = parent;
    }
}

/* ---- views: what a request needs to know about a node ---------------- */

struct node_view {
    uint64_t ino;
    enum node_kind kind;
    int status_index;
    bool terminal;                          /* of the job or batch above */
    char owner_id[NAMES_MAX_ID_LEN + 1];    /* the job or batch id above */
    char name[NAMES_MAX_LEN + 1];
    char group[NAMES_MAX_LEN + 1];          /* NODE_BY_GROUP, NODE_LINK: the group */
};

/* Fills `view` from `node` (tree->lock held). -ENAMETOOLONG cannot happen
 * for names this tree made, but is checked rather than assumed. */
static int node_view_fill(const struct node *node, struct node_view *view)
{
    const struct node *owner = node;

    view->ino = node->ino;
    view->kind = node->kind;
    /* An item is found through its folder's status. */
    view->status_index =
        node->kind == NODE_ITEM ? node->parent->status_index : node->status_index;
    view->owner_id[0] = '\0';
    view->group[0] = '\0';
    view->terminal = false;
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
    /* Items, groups and links go by their folder's status_index. */
    if (kind != NODE_ITEM && kind != NODE_BY_GROUP && kind != NODE_LINK)
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
    }
    return 0;
}

/* What the catalog says about a view. */
struct resolved {
    struct blob *content;      /* files: referenced */
    struct timespec mtime;
    nlink_t nlink;
    bool terminal;             /* NODE_JOB, NODE_BATCH */
    struct listing *listing;   /* folders, when asked for: referenced */
    const struct entry *self;  /* NODE_JOB: the job's entry in `listing` */
    size_t link_len;           /* NODE_LINK: length of the target */
};

static void resolved_release(struct resolved *r)
{
    if (r->content)
        blob_unref(r->content);
    if (r->listing)
        listing_release(r->listing);
    memset(r, 0, sizeof(*r));
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
    r->mtime = job->mtime;
    r->terminal = catalog_job_is_terminal(job->status);
    switch (view->kind) {
    case NODE_JOB:
        r->nlink = 2 + CATALOG_ITEM_STATUS_COUNT;
        if (want_listing) {
            r->listing = listing_ref(owner);
            r->self = job;
        }
        break;
    case NODE_JOB_JSON:
        r->nlink = 1;
        r->content = blob_ref(job->content);
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
        r->mtime = item->mtime;
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
    r->mtime = batch->self.mtime;
    r->terminal = catalog_job_is_terminal(batch->self.status);
    switch (view->kind) {
    case NODE_BATCH:
        r->nlink = 3;
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
        r->mtime = result->mtime.tv_sec ? result->mtime : batch->self.mtime;
        r->content = blob_ref(result->content);
        break;
    }
    if (!rc && want_listing)
        r->listing = listing_ref(batch);
    listing_release(batch);
    return rc;
}

/* Whether an API value can name a folder of a grouped view. */
static bool group_name_ok(const char *v)
{
    size_t len = strlen(v);

    if (!len || len > NAMES_MAX_LEN || !strcmp(v, ".") || !strcmp(v, ".."))
        return false;
    for (; *v; v++)
        if (*v == '/' || (unsigned char)*v < 0x20 || *v == 0x7f)
            return false;
    return true;
}

/* The value job `job` is grouped under (its status or its job_type), copied
 * into out; false when it has none that can name a folder. */
static bool job_group_value(const struct entry *job, int by, char *out, size_t len)
{
    const char *v = NULL, *text;
    json_t *obj = NULL;
    size_t text_len;
    bool ok;

    if (by == BY_STATUS) {
        v = job->status;
    } else if (job->content && (text = blob_text(job->content, &text_len))) {
        json_error_t error;

        obj = json_loadb(text, text_len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &error);
        v = json_string_value(json_object_get(obj, "job_type"));
    }
    ok = v && group_name_ok(v) && strlen(v) < len;
    if (ok)
        strcpy(out, v);
    json_decref(obj);
    return ok;
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
            r->mtime = job->mtime;
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
    r->mtime = file->self.mtime;
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
static int resolve(struct tree *tree, const struct node_view *view, bool want_listing,
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
    }
    if (rc)
        resolved_release(r);
    else if (!r->mtime.tv_sec && !r->mtime.tv_nsec)
        r->mtime = tree->mount_time;
    return rc;
}

static void attr_fill(const struct tree *tree, enum node_kind kind, uint64_t ino,
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
        st->st_mode = S_IFREG | 0444;
        st->st_size = r->content ? (off_t)r->content->len : 0;
        st->st_blocks = (st->st_size + 511) / 512;
    }
    out->timeout_s = terminal ? tree->terminal_ttl_s : tree->ttl_s;
    if (kind == NODE_META_FILE)
        out->timeout_s = 0; /* live counters: ask every time */
}

/* Files whose content is made on demand: readdirplus does not describe
 * them (that would build them for a mere listing). */
static bool node_kind_is_made(enum node_kind kind)
{
    return kind == NODE_JOB_FILE || kind == NODE_BATCH_FILE || kind == NODE_META_FILE;
}

/* Keeps the bytes whose size the kernel was just told (tree->lock held). */
static void node_keep_snapshot(struct node *node, struct blob *content)
{
    if (node->kind != NODE_META_FILE || !content)
        return;
    blob_unref(node->snapshot);
    node->snapshot = blob_ref(content);
}

/* Records what the kernel is being told about a file (tree->lock held) and
 * says whether its cached copy must be dropped. */
static bool node_note_content(struct node *node, const struct blob *content)
{
    bool changed;

    if (!content)
        return false;
    changed = node->served && node->served != content->digest;
    node->served = content->digest;
    return changed;
}

static void tree_notify(struct tree *tree, uint64_t ino)
{
    if (tree->inval)
        tree->inval(tree->inval_arg, ino);
}

/* ---- public ---------------------------------------------------------- */

struct tree *tree_new(const struct tree_config *config)
{
    struct tree *tree = calloc(1, sizeof(*tree));

    if (!tree)
        return NULL;
    tree->catalog = config->catalog;
    tree->ttl_s = config->ttl_s;
    tree->terminal_ttl_s = config->terminal_ttl_s;
    tree->uid = config->uid;
    tree->gid = config->gid;
    tree->inval = config->inval;
    tree->inval_arg = config->inval_arg;
    tree->meta = config->meta;
    tree->meta_arg = config->meta_arg;
    clock_gettime(CLOCK_REALTIME, &tree->mount_time);
    pthread_mutex_init(&tree->lock, NULL);
    tree->next_ino = TREE_ROOT_INO + 1;
    if (table_init(&tree->by_ino) || table_init(&tree->by_name))
        goto fail;
    tree->root = node_new("/");
    if (!tree->root)
        goto fail;
    tree->root->ino = TREE_ROOT_INO;
    tree->root->kind = NODE_ROOT;
    tree->root->nlookup = 1;
    table_insert(&tree->by_ino, tree->root, true);
    tree->count = 1;
    return tree;
fail:
    tree_free(tree);
    return NULL;
}

void tree_free(struct tree *tree)
{
    if (!tree)
        return;
    if (tree->by_ino.buckets) {
        for (size_t i = 0; i < tree->by_ino.size; i++) {
            struct node *node = tree->by_ino.buckets[i];

            while (node) {
                struct node *next = node->next_by_ino;

                blob_unref(node->snapshot);
                free(node);
                node = next;
            }
        }
    } else {
        free(tree->root);
    }
    free(tree->by_ino.buckets);
    free(tree->by_name.buckets);
    pthread_mutex_destroy(&tree->lock);
    free(tree);
}

/* Which kind of node `name` would be under a folder of kind `parent`;
 * -ENOENT when it cannot exist there whatever the API says. */
static int child_kind(enum node_kind parent, const char *name, enum node_kind *kind,
                      int *status_index)
{
    const struct fixed_entry *fixed = NULL;

    *status_index = -1;
    switch (parent) {
    case NODE_ROOT:
        fixed = fixed_find(root_entries, COUNT_OF(root_entries), name);
        break;
    case NODE_JOB:
        fixed = fixed_find(job_entries, COUNT_OF(job_entries), name);
        break;
    case NODE_BATCH:
        fixed = fixed_find(batch_entries, COUNT_OF(batch_entries), name);
        break;
    case NODE_META:
        fixed = fixed_find(meta_entries, COUNT_OF(meta_entries), name);
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

    rc = resolve(tree, &view, false, &r);
    if (rc)
        return rc;

    pthread_mutex_lock(&tree->lock);
    node = tree_link_child(tree, parent, name, kind, view.status_index, 1);
    if (!node) {
        rc = -ENOMEM;
    } else {
        if (kind == NODE_JOB || kind == NODE_BATCH) {
            node->terminal = r.terminal;
            view.terminal = r.terminal;
        }
        inval = node_note_content(node, r.content);
        node_keep_snapshot(node, r.content);
        ino = node->ino;
        attr_fill(tree, kind, ino, &r, view.terminal, out);
    }
    pthread_mutex_unlock(&tree->lock);
    if (inval)
        tree_notify(tree, ino);
    resolved_release(&r);
    return rc;
}

void tree_forget(struct tree *tree, uint64_t ino, uint64_t count)
{
    struct node *node;

    pthread_mutex_lock(&tree->lock);
    node = tree_find_ino(tree, ino);
    if (node && node != tree->root) {
        node->nlookup = count < node->nlookup ? node->nlookup - count : 0;
        tree_release_unused(tree, node);
    }
    pthread_mutex_unlock(&tree->lock);
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
 * of it must go. */
static bool tree_record(struct tree *tree, struct node_view *view, const struct resolved *r)
{
    struct node *node;
    bool inval = false;

    pthread_mutex_lock(&tree->lock);
    node = tree_find_ino(tree, view->ino);
    if (node) {
        if (node->kind == NODE_JOB || node->kind == NODE_BATCH) {
            node->terminal = r->terminal;
            view->terminal = r->terminal;
        }
        inval = node_note_content(node, r->content);
        node_keep_snapshot(node, r->content);
    }
    pthread_mutex_unlock(&tree->lock);
    return inval;
}

int tree_getattr(struct tree *tree, uint64_t ino, struct tree_attr *out)
{
    struct node_view view;
    struct resolved r;
    int rc;

    rc = tree_view_of(tree, ino, &view);
    if (rc)
        return rc;
    rc = resolve(tree, &view, false, &r);
    if (rc)
        return rc;
    if (tree_record(tree, &view, &r))
        tree_notify(tree, ino);
    attr_fill(tree, view.kind, ino, &r, view.terminal, out);
    resolved_release(&r);
    return 0;
}

int tree_read(struct tree *tree, uint64_t ino, struct blob **content, bool *unchanged)
{
    struct node_view view;
    struct resolved r;
    struct node *node;
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
    if (view.kind == NODE_META_FILE) {
        /* The bytes of the size last given, so a read matches its stat. */
        pthread_mutex_lock(&tree->lock);
        node = tree_find_ino(tree, ino);
        *content = node && node->snapshot ? blob_ref(node->snapshot) : NULL;
        pthread_mutex_unlock(&tree->lock);
        if (*content) {
            *unchanged = true;
            return 0;
        }
    }
    rc = resolve(tree, &view, false, &r);
    if (rc)
        return rc;
    pthread_mutex_lock(&tree->lock);
    node = tree_find_ino(tree, ino);
    if (node) {
        *unchanged = node->served == r.content->digest;
        node->served = r.content->digest;
    }
    pthread_mutex_unlock(&tree->lock);
    *content = r.content;
    r.content = NULL;
    resolved_release(&r);
    return 0;
}

/* ---- folders --------------------------------------------------------- */

struct tree_dir {
    struct node_view view;            /* the folder itself */
    uint64_t parent_ino;
    const struct fixed_entry *fixed;  /* ROOT, JOB, BATCH */
    size_t fixed_count;
    struct listing *listing;          /* the folder's listing (JOB, BATCH: the owner's) */
    const struct entry *self;         /* JOB: the job's entry */
    char **names;                     /* BY: the groups; BY_GROUP: the job ids (owned) */
    size_t name_count;
    struct tree *tree;
    unsigned refs;                    /* atomic: the opener's and tree_dir_hold's */
    pthread_mutex_t ahead_lock;       /* protects the range below */
    size_t ahead_from, ahead_to;      /* entries whose nodes may have been made ahead */
};

/* Adds a copy of `name` to the snapshot unless it is there already. */
static int dir_add_name(struct tree_dir *dir, const char *name)
{
    char **names, *copy;

    for (size_t i = 0; i < dir->name_count; i++)
        if (!strcmp(dir->names[i], name))
            return 0;
    names = realloc(dir->names, (dir->name_count + 1) * sizeof(*names));
    if (!names)
        return -ENOMEM;
    dir->names = names;
    copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    dir->names[dir->name_count++] = copy;
    return 0;
}

/* The entries of a grouped view folder, from the job list. */
static int dir_fill_groups(struct tree_dir *dir)
{
    char value[NAMES_MAX_LEN + 1];
    int rc = 0;

    for (size_t i = 0; i < dir->listing->count && !rc; i++) {
        const struct entry *job = &dir->listing->entries[i];

        if (!job_group_value(job, dir->view.status_index, value, sizeof(value)))
            continue;
        if (dir->view.kind == NODE_BY)
            rc = dir_add_name(dir, value);
        else if (!strcmp(value, dir->view.group))
            rc = dir_add_name(dir, job->name);
    }
    return rc;
}

int tree_opendir(struct tree *tree, uint64_t ino, struct tree_dir **out, bool *unchanged)
{
    struct tree_dir *dir;
    struct resolved r;
    struct node *node;
    int rc;

    *out = NULL;
    *unchanged = false;
    dir = calloc(1, sizeof(*dir));
    if (!dir)
        return -ENOMEM;
    dir->tree = tree;
    dir->refs = 1;
    if (pthread_mutex_init(&dir->ahead_lock, NULL)) {
        free(dir);
        return -ENOMEM;
    }
    pthread_mutex_lock(&tree->lock);
    node = tree_find_ino(tree, ino);
    if (!node)
        rc = -ESTALE;
    else if (!node_kind_is_dir(node->kind))
        rc = -ENOTDIR;
    else
        rc = node_view_fill(node, &dir->view);
    if (!rc)
        dir->parent_ino = node->parent ? node->parent->ino : node->ino;
    pthread_mutex_unlock(&tree->lock);
    if (rc)
        goto fail;

    rc = resolve(tree, &dir->view, true, &r);
    if (rc)
        goto fail;
    dir->listing = r.listing;
    dir->self = r.self;
    r.listing = NULL;
    if (dir->view.kind == NODE_JOB || dir->view.kind == NODE_BATCH)
        dir->view.terminal = r.terminal;
    resolved_release(&r);
    switch (dir->view.kind) {
    case NODE_ROOT:
        dir->fixed = root_entries;
        dir->fixed_count = COUNT_OF(root_entries);
        break;
    case NODE_JOB:
        dir->fixed = job_entries;
        dir->fixed_count = COUNT_OF(job_entries);
        break;
    case NODE_BATCH:
        dir->fixed = batch_entries;
        dir->fixed_count = COUNT_OF(batch_entries);
        break;
    case NODE_META:
        dir->fixed = meta_entries;
        dir->fixed_count = COUNT_OF(meta_entries);
        break;
    case NODE_BY:
    case NODE_BY_GROUP:
        rc = dir_fill_groups(dir);
        if (rc) {
            tree_closedir(dir);
            return rc;
        }
        break;
    default:
        break;
    }

    pthread_mutex_lock(&tree->lock);
    node = tree_find_ino(tree, ino);
    if (node) {
        /* Folders with fixed entries never change; listings change when
         * refetched. */
        uint64_t version = dir->fixed ? 1 : dir->listing->generation;

        if (node->kind == NODE_JOB || node->kind == NODE_BATCH)
            node->terminal = dir->view.terminal;
        *unchanged = node->served == version;
        node->served = version;
    }
    pthread_mutex_unlock(&tree->lock);
    *out = dir;
    return 0;
fail:
    pthread_mutex_destroy(&dir->ahead_lock);
    free(dir);
    return rc;
}

/* Drops the nodes made ahead that the kernel was never given
 * (tree->lock held). */
static void dir_drop_ahead(struct tree *tree, struct tree_dir *dir)
{
    struct node *folder = tree_find_ino(tree, dir->view.ino);

    if (!folder)
        return; /* gone, and its children with it */
    /* Held while its children go, so that it cannot go with them. */
    folder->nlookup++;
    for (size_t i = dir->ahead_from; i < dir->ahead_to; i++) {
        struct node *node = tree_find_child(tree, folder, dir->listing->entries[i - 2].name);

        if (node && !node->nlookup && !node->children)
            tree_release_unused(tree, node);
    }
    folder->nlookup--;
    tree_release_unused(tree, folder);
}

struct tree_dir *tree_dir_hold(struct tree_dir *dir)
{
    __atomic_add_fetch(&dir->refs, 1, __ATOMIC_RELAXED);
    return dir;
}

void tree_closedir(struct tree_dir *dir)
{
    if (!dir || __atomic_sub_fetch(&dir->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (dir->ahead_to > dir->ahead_from) {
        pthread_mutex_lock(&dir->tree->lock);
        dir_drop_ahead(dir->tree, dir);
        pthread_mutex_unlock(&dir->tree->lock);
    }
    pthread_mutex_destroy(&dir->ahead_lock);
    if (dir->listing)
        listing_release(dir->listing);
    for (size_t i = 0; i < dir->name_count; i++)
        free(dir->names[i]);
    free(dir->names);
    free(dir);
}

size_t tree_dir_count(const struct tree_dir *dir)
{
    if (dir->fixed)
        return 2 + dir->fixed_count;
    if (dir->view.kind == NODE_BY || dir->view.kind == NODE_BY_GROUP)
        return 2 + dir->name_count;
    return 2 + dir->listing->count;
}

/* Kind of the nodes a listing folder holds. */
static enum node_kind listing_child_kind(enum node_kind folder)
{
    switch (folder) {
    case NODE_JOBS:
        return NODE_JOB;
    case NODE_BATCHES:
        return NODE_BATCH;
    case NODE_STATUS:
        return NODE_ITEM;
    default:
        return NODE_RESULT;
    }
}

/* What an entry of the snapshot is, without asking the catalog again. */
static void dir_entry_resolve(const struct tree_dir *dir, size_t index,
                              const struct fixed_entry **fixed, const struct entry **entry,
                              struct resolved *r, bool *terminal)
{
    memset(r, 0, sizeof(*r));
    *fixed = NULL;
    *entry = NULL;
    *terminal = dir->view.terminal;
    if (dir->view.kind == NODE_BY) {
        r->nlink = 2;
        return;
    }
    if (dir->view.kind == NODE_BY_GROUP) {
        const struct entry *job = listing_find(dir->listing, dir->names[index]);

        r->nlink = 1;
        r->mtime = job ? job->mtime : (struct timespec){0, 0};
        r->link_len = strlen(LINK_TARGET_PREFIX) + strlen(dir->names[index]);
        return;
    }
    if (dir->fixed) {
        const struct entry *owner = NULL;

        *fixed = &dir->fixed[index];
        if (dir->view.kind == NODE_JOB)
            owner = dir->self;
        else if (dir->view.kind == NODE_BATCH)
            owner = &dir->listing->self;
        r->mtime = owner ? owner->mtime : (struct timespec){0, 0};
        switch ((*fixed)->kind) {
        case NODE_JOB_JSON:
        case NODE_BATCH_JSON:
            r->content = owner->content; /* borrowed */
            r->nlink = 1;
            break;
        case NODE_STATUS:
        case NODE_RESULTS:
            r->nlink = 2;
            break;
        default: /* jobs/, batches/ */
            r->nlink = 1;
            break;
        }
        return;
    }
    *entry = &dir->listing->entries[index];
    r->mtime = (*entry)->mtime;
    switch (listing_child_kind(dir->view.kind)) {
    case NODE_JOB:
        r->nlink = 2 + CATALOG_ITEM_STATUS_COUNT;
        *terminal = catalog_job_is_terminal((*entry)->status);
        break;
    case NODE_BATCH:
        r->nlink = 3;
        *terminal = catalog_job_is_terminal((*entry)->status);
        break;
    default:
        r->nlink = 1;
        r->content = (*entry)->content; /* borrowed */
        if (!r->mtime.tv_sec && dir->view.kind == NODE_RESULTS)
            r->mtime = dir->listing->self.mtime;
        break;
    }
}

const char *tree_dir_name(const struct tree_dir *dir, size_t index)
{
    if (index >= tree_dir_count(dir))
        return NULL;
    if (index < 2)
        return index ? ".." : ".";
    index -= 2;
    if (dir->view.kind == NODE_BY || dir->view.kind == NODE_BY_GROUP)
        return dir->names[index];
    if (dir->fixed)
        return dir->fixed[index].name;
    return dir->listing->entries[index].name;
}

int tree_dir_entry(struct tree *tree, struct tree_dir *dir, size_t index, bool link,
                   const char **name, struct tree_attr *out)
{
    const struct fixed_entry *fixed;
    const struct entry *entry;
    struct resolved r;
    struct node *folder, *node = NULL;
    enum node_kind kind;
    bool terminal, inval = false;
    int status_index = -1, rc = 0;

    if (index >= tree_dir_count(dir))
        return -EINVAL;
    if (index < 2) {
        struct resolved dot = {.nlink = 1, .mtime = tree->mount_time};

        *name = index ? ".." : ".";
        attr_fill(tree, NODE_ROOT, index ? dir->parent_ino : dir->view.ino, &dot, false, out);
        return 0;
    }
    dir_entry_resolve(dir, index - 2, &fixed, &entry, &r, &terminal);
    if (!r.mtime.tv_sec && !r.mtime.tv_nsec)
        r.mtime = tree->mount_time;
    if (fixed) {
        *name = fixed->name;
        kind = fixed->kind;
        status_index = fixed->status_index;
    } else if (entry) {
        *name = entry->name;
        kind = listing_child_kind(dir->view.kind);
    } else {
        *name = dir->names[index - 2];
        kind = dir->view.kind == NODE_BY ? NODE_BY_GROUP : NODE_LINK;
        status_index = dir->view.status_index;
    }

    if (node_kind_is_made(kind))
        link = false;
    pthread_mutex_lock(&tree->lock);
    folder = tree_find_ino(tree, dir->view.ino);
    if (!folder) {
        rc = -ESTALE;
    } else if (link) {
        node = tree_link_child(tree, folder, *name, kind, status_index, 1);
        if (!node)
            rc = -ENOMEM;
    } else {
        node = tree_find_child(tree, folder, *name);
    }
    if (node) {
        if (kind == NODE_JOB || kind == NODE_BATCH)
            node->terminal = terminal;
        if (link)
            inval = node_note_content(node, r.content);
    }
    if (!rc) {
        attr_fill(tree, kind, node ? node->ino : 0, &r, terminal, out);
        out->unlinked = node_kind_is_made(kind);
    }
    pthread_mutex_unlock(&tree->lock);
    if (inval)
        tree_notify(tree, out->st.st_ino);
    return rc;
}

/* Nodes made ahead under one hold of the tree's lock: readdirplus on other
 * threads waits at most this long for it. */
#define TREE_AHEAD_BATCH 64

void tree_dir_prepare(struct tree *tree, struct tree_dir *dir, size_t index, size_t count)
{
    size_t total = tree_dir_count(dir), served = count < index ? index - count : 0;
    size_t first = index < 2 ? 2 : index, end = first;
    enum node_kind kind;

    if (!dir->listing || dir->fixed || dir->view.kind == NODE_BY ||
        dir->view.kind == NODE_BY_GROUP)
        return;
    kind = listing_child_kind(dir->view.kind);
    if (node_kind_is_made(kind))
        return;
    if (first < total)
        end = count < total - first ? first + count : total;
    pthread_mutex_lock(&dir->ahead_lock);
    /* The reply returned [served, index): none of that needs dropping, so
     * closing a folder read to its end looks at no node again. */
    if (served <= dir->ahead_from && index > dir->ahead_from)
        dir->ahead_from = index < dir->ahead_to ? index : dir->ahead_to;
    if (first < end) {
        if (!dir->ahead_to) {
            /* The first batch made ahead: the rest of the folder follows. */
            pthread_mutex_lock(&tree->lock);
            table_reserve(&tree->by_ino, true, tree->count + total - first);
            table_reserve(&tree->by_name, false, tree->count + total - first);
            pthread_mutex_unlock(&tree->lock);
        }
        if (dir->ahead_to == dir->ahead_from) {
            dir->ahead_from = first;
            dir->ahead_to = end;
        } else {
            dir->ahead_from = first < dir->ahead_from ? first : dir->ahead_from;
            dir->ahead_to = end > dir->ahead_to ? end : dir->ahead_to;
        }
    }
    for (size_t i = first; i < end;) {
        size_t stop = end - i > TREE_AHEAD_BATCH ? i + TREE_AHEAD_BATCH : end;
        struct node *folder;

        pthread_mutex_lock(&tree->lock);
        folder = tree_find_ino(tree, dir->view.ino);
        for (; folder && i < stop; i++)
            if (!tree_link_child(tree, folder, dir->listing->entries[i - 2].name, kind, -1, 0))
                folder = NULL; /* out of memory: readdirplus will say so */
        pthread_mutex_unlock(&tree->lock);
        if (!folder)
            break;
    }
    pthread_mutex_unlock(&dir->ahead_lock);
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
    rc = resolve(tree, &view, false, &r);
    if (rc)
        return rc;
    resolved_release(&r);
    rc = buf_append_str(out, LINK_TARGET_PREFIX);
    if (!rc)
        rc = buf_append_str(out, view.name);
    return rc;
}

/* ---- extended attributes (the fields themselves: xattr.c) ------------ */

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
    *kind = view.kind == NODE_ITEM ? XATTR_ITEM : view.kind == NODE_RESULT ? XATTR_RESULT
                                                                            : XATTR_OTHER;
    if (view.kind == NODE_JOB)
        view.kind = NODE_JOB_JSON;
    else if (view.kind == NODE_BATCH)
        view.kind = NODE_BATCH_JSON;
    else if (view.kind != NODE_ITEM && view.kind != NODE_RESULT)
        return -ENODATA;
    rc = resolve(tree, &view, false, &r);
    if (rc)
        return rc;
    /* Objects' files are JSON text; a made file has no fields to show. */
    if (blob_text(r.content, &(size_t){0}))
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
    text = blob_text(content, &len);
    rc = xattr_list(kind, text, len, out);
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
    text = blob_text(content, &len);
    rc = xattr_get(kind, text, len, name, out);
    blob_unref(content);
    return rc;
}

void tree_invalidate_all(struct tree *tree)
{
    uint64_t *inos = NULL;
    size_t count = 0;

    pthread_mutex_lock(&tree->lock);
    inos = malloc(tree->count * sizeof(*inos));
    for (size_t i = 0; i < tree->by_ino.size; i++) {
        for (struct node *node = tree->by_ino.buckets[i]; node; node = node->next_by_ino) {
            node->served = 0;
            if (inos)
                inos[count++] = node->ino;
        }
    }
    pthread_mutex_unlock(&tree->lock);
    if (!inos)
        log_warning("no memory to drop the kernel's caches; they expire with their timeouts");
    for (size_t i = 0; i < count; i++)
        tree_notify(tree, inos[i]);
    free(inos);
}

void tree_get_stats(struct tree *tree, struct tree_stats *out)
{
    pthread_mutex_lock(&tree->lock);
    out->nodes = tree->count;
    pthread_mutex_unlock(&tree->lock);
}
