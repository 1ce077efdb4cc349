/*
 * tree_private.h — what the files of the filesystem model share.
 *
 * Only the tree's own files include it: fs/tree.c (views, resolution,
 * attributes, requests on one inode), fs/tree_nodes.c (the node tables and
 * node lifetime) and fs/tree_dir.c (open folders). Everything else goes
 * through include/batchfs/tree.h, and nothing here is a promise to anyone
 * outside those three files.
 *
 * Locking is described at the top of fs/tree.c: tree->lock protects both
 * hash tables and every node field, and is never held while the catalog
 * runs. Each function below says whether it wants tree->lock held; none
 * takes it itself unless it says so.
 */
#ifndef BATCHFS_TREE_PRIVATE_H
#define BATCHFS_TREE_PRIVATE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "batchfs/blob.h"
#include "batchfs/hash.h"
#include "batchfs/lru.h"
#include "batchfs/names.h"
#include "batchfs/tree.h"

struct entry;
struct listing;
struct slab;

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
    NODE_DOCS,       /* {jobs,batches}/<id>/{markdown,text,extracted}/
                        (status_index: enum catalog_content) */
    NODE_DOC,        /* a document in it */
};

/* Where a grouped view's links point, before the job id. */
#define LINK_TARGET_PREFIX "../../jobs/"
/* status_index of NODE_BY: what jobs are grouped by. */
#define BY_STATUS 0
#define BY_TYPE 1

static inline bool node_kind_is_dir(enum node_kind kind)
{
    return kind != NODE_JOB_JSON && kind != NODE_ITEM && kind != NODE_BATCH_JSON &&
           kind != NODE_RESULT && kind != NODE_JOB_FILE && kind != NODE_BATCH_FILE &&
           kind != NODE_META_FILE && kind != NODE_LINK && kind != NODE_DOC;
}

/*
 * A node: what the tree keeps for each inode the kernel holds, which may be
 * a million (a folder of a million items after readdirplus). The bound is
 * 100 bytes an inode in all: the node in the tree's slab (its size rounded
 * up to 8: slab.h) and its share of both tables' buckets. With the fields
 * below, 52 bytes and the name, a name of up to 19 bytes
 * ("doc-000123.pdf.json") makes a 72-byte node, and the buckets add 8 to
 * 16 bytes (two tables at load 1 to 2: see TABLE_LOAD). So nothing is
 * wider than it must be, and what only files or only folders need shares
 * its room (`file` and `dir` below: node_kind_is_dir says which).
 */
struct node {
    struct node *next_by_ino, *next_by_name;
    struct node *parent; /* NULL for the root */
    union {
        struct {                   /* files and links (links keep nothing) */
            struct blob *snapshot; /* the version whose size the kernel was
                                      told (see fs/tree.c, one inode per
                                      version) */
            int64_t mtime_ms;      /* ...and the mtime it was told with it,
                                      in whole milliseconds since the epoch,
                                      the rest in mtime_sub_ms: exact (a
                                      struct timespec takes 16 bytes) */
        } file;
        struct {               /* folders */
            uint64_t served;   /* generation of the listing the kernel
                                  was given; 0 = nothing yet */
            uint32_t children; /* nodes whose parent this is */
        } dir;
    };
    uint32_t ino;               /* see tree_next_ino: unique among the nodes */
    uint32_t nlookup;           /* lookups the kernel has not forgotten; once at
                                   UINT32_MAX it stays there (see node_add_lookups) */
    unsigned kind : 5;          /* enum node_kind */
    signed status_index : 4;    /* NODE_STATUS: the status; NODE_*_FILE: which
                                   file (-1 to 7: see NODE_STATUS_INDEX_MAX) */
    unsigned terminal : 1;      /* NODE_JOB, NODE_BATCH: known to be finished */
    unsigned detached : 1;      /* out of by_name: a newer version of the file
                                   has another inode, this one keeps its
                                   snapshot */
    unsigned served : 1;        /* files: the kernel was given the snapshot
                                   (what it was given is then the snapshot's
                                   digest); 0 = nothing yet, or something
                                   other than the snapshot (tree_read) */
    unsigned mtime_sub_ms : 20; /* files: the mtime's nanoseconds past
                                   mtime_ms */
    char name[];                /* in the node's own allocation: one per
                                   entry listed, so one malloc rather than
                                   two */
};

/* The status_index values a node holds: -1 (none) and the statuses, files,
 * contents and views, all below 8 (fs/tree.c checks). */
#define NODE_STATUS_INDEX_MAX 7
_Static_assert(NODE_DOC < 32, "struct node: kind takes 5 bits");

/* Lookups the kernel made of `node` (0 or 1 more). A count that reaches
 * UINT32_MAX stays there for good: the kernel counts lookups in 64 bits
 * (FORGET's nlookup is a uint64_t), so past that the tree no longer knows
 * how many it holds, and keeps the node until unmount rather than free it
 * while the kernel may still use it. Four billion lookups of one inode
 * that the kernel never forgets in between take hours of a loop of stats
 * under entry_timeout 0 at the least. (tree->lock held.) */
static inline void node_add_lookups(struct node *node, uint32_t count)
{
    node->nlookup =
        node->nlookup > UINT32_MAX - count ? UINT32_MAX : node->nlookup + count;
}

/* The kernel forgot `count` lookups of `node` (tree->lock held); a count
 * at UINT32_MAX is kept (see node_add_lookups). */
static inline void node_forget_lookups(struct node *node, uint64_t count)
{
    if (node->nlookup != UINT32_MAX)
        node->nlookup = count < node->nlookup ? node->nlookup - (uint32_t)count : 0;
}

/* The nodes whose parent `node` is (0 for a file). */
static inline uint32_t node_children(const struct node *node)
{
    return node_kind_is_dir((enum node_kind)node->kind) ? node->dir.children : 0;
}

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
    tree_inval_entry_fn inval_entry;
    void *inval_arg;
    tree_meta_fn meta;
    void *meta_arg;
    struct timespec mount_time;

    pthread_mutex_t lock; /* protects everything below and every node */
    struct slab *nodes;   /* where the nodes are (slab.h) */
    struct node_table by_ino, by_name;
    size_t count;
    size_t node_bytes; /* the nodes' bytes in `nodes` (see tree_stats) */
    uint32_t next_ino; /* see tree_next_ino */
    bool ino_wrapped;  /* next_ino went past UINT32_MAX once */
    struct node *root;
    /* The folders open now, newest first (tree_dir.c): those the kernel
     * never released (a release still queued when the mount went) are
     * closed with the tree. */
    struct lru_list open_dirs;
};

/* Closes every folder still open (tree_dir.c), for tree_free. */
void tree_dir_close_all(struct tree *tree);

/* An entry of a folder whose contents never change. */
struct fixed_entry {
    const char *name;
    enum node_kind kind;
    int status_index;
    /* 0: always there; else there when the job or batch has one of these
     * content folders (a mask of 1u << enum catalog_content). */
    unsigned contents;
};

/* The entries of a folder of kind `folder` (root, job, batch, .batchfs/),
 * static, with their count in *count; NULL and 0 for a folder whose entries
 * come from a listing. Some are there only for some jobs or batches (see
 * fixed_entry.contents). No lock needed. (tree.c) */
const struct fixed_entry *folder_fixed_entries(enum node_kind folder, size_t *count);

/* Whether fixed entry `fixed` is there for a job or batch whose content
 * folders are `contents` (catalog_contents). Pure. (tree.c) */
static inline bool fixed_entry_present(const struct fixed_entry *fixed, unsigned contents)
{
    return !fixed->contents || (fixed->contents & contents);
}

/* ---- node tables (tree_nodes.c) -------------------------------------- */

/* The finds and their hashes are inline here because readdirplus pays them
 * for every entry; the rest of the tables lives in tree_nodes.c. Every
 * function of this section wants tree->lock held (the hashes alone need
 * nothing). */

static inline uint64_t hash_ino(uint64_t ino)
{
    ino ^= ino >> 33;
    ino *= 0xff51afd7ed558ccdULL;
    ino ^= ino >> 33;
    return ino;
}

static inline uint64_t hash_name(uint64_t parent, const char *name)
{
    return hash_words_from(HASH_KEY_SEED ^ hash_ino(parent), name, strlen(name));
}

/* The node numbered `ino` (borrowed), or NULL. */
static inline struct node *tree_find_ino(struct tree *tree, uint64_t ino)
{
    struct node *node = tree->by_ino.buckets[hash_ino(ino) & (tree->by_ino.size - 1)];

    while (node && node->ino != ino)
        node = node->next_by_ino;
    return node;
}

/* The child `name` of `parent` (borrowed), or NULL. */
static inline struct node *tree_find_child(struct tree *tree, const struct node *parent,
                                           const char *name)
{
    size_t b = hash_name(parent->ino, name) & (tree->by_name.size - 1);
    struct node *node = tree->by_name.buckets[b];

    while (node && (node->parent != parent || strcmp(node->name, name)))
        node = node->next_by_name;
    return node;
}

/* The child `name` of `parent`, created if needed (a new inode number, kind
 * and status_index as given), with `lookups` (0 or 1) more kernel lookups
 * counted. Borrowed: the tree owns its nodes. NULL when out of memory. */
struct node *tree_link_child(struct tree *tree, struct node *parent, const char *name,
                             enum node_kind kind, int status_index, uint64_t lookups);

/* tree_link_child when the caller has just found that `parent` has no
 * child `name` in the by-name table (one find per entry rather than two). */
struct node *tree_link_new(struct tree *tree, struct node *parent, const char *name,
                           enum node_kind kind, int status_index, uint64_t lookups);

/* Frees `node` and then any ancestor it kept alive, once nothing holds them
 * (no kernel lookup, no child). Never frees the root. */
void tree_release_unused(struct tree *tree, struct node *node);

/* Takes `node` out of the by-name table: the name now leads to a new node
 * (a new inode) while this one stays for the kernel's lookups of it; freed
 * at once when nothing holds it. */
void tree_detach(struct tree *tree, struct node *node);

/* Room in both tables for `count` nodes in all (a hint, nothing fails). */
void tree_reserve_nodes(struct tree *tree, size_t count);

/* ---- views and resolution (tree.c) ------------------------------------ */

/* What a request needs to know about a node, copied so that the catalog can
 * be asked without tree->lock. */
struct node_view {
    uint64_t ino;
    enum node_kind kind;
    int status_index;
    bool terminal;                          /* of the job or batch above */
    bool batch_owner;                       /* owner_id is a batch's, not a job's */
    char owner_id[NAMES_MAX_ID_LEN + 1];    /* the job or batch id above */
    char name[NAMES_MAX_LEN + 1];
    char group[NAMES_MAX_LEN + 1];          /* NODE_BY_GROUP, NODE_LINK: the group */
};

/* Fills `view` from `node` (tree->lock held). -ENAMETOOLONG cannot happen
 * for names this tree made, but is checked rather than assumed. */
int node_view_fill(const struct node *node, struct node_view *view);

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

/* Drops the references `r` holds and zeroes it. Without tree->lock: the
 * last release of a listing frees it, under locks of the catalog's. */
void resolved_release(struct resolved *r);

/* Asks the catalog about `view`; with want_listing, folders also get their
 * listing (fetched if needed). Without tree->lock: it may wait on the
 * network. On success the caller owns *r (resolved_release); on error
 * (a negative errno) *r holds nothing. */
int resolve_view(struct tree *tree, const struct node_view *view, bool want_listing,
                 struct resolved *r);

/* The value job `job` is grouped under (`by`: BY_STATUS, its status;
 * BY_TYPE, its job_type), copied into out (`len` bytes); false when it has
 * none that can name a folder. Touches no tree state: any lock or none. */
bool job_group_value(const struct entry *job, int by, char *out, size_t len);

/* ---- attributes and the kernel's copies (tree.c) ---------------------- */

/* Whether the size of what `r` resolved is known, measuring r->content now
 * if it was not (a job's file is measured when it is looked up or listed in
 * its job's folder, not when jobs/ is: see builder.c): true when r has no
 * content or its length is had. Quiet: a lookup of the file reports the
 * failure. Without tree->lock (a paged source could be fetched again;
 * a job's text is held). */
bool resolved_sized(const struct resolved *r);

/* The attributes of a node of kind `kind` numbered `ino`, from `r`, with the
 * timeout of a terminal or unfinished node: r->content's size must have
 * been had (resolved_sized), or the attributes are not handed out. Reads
 * only the tree's configuration: any lock or none. */
void attr_fill(const struct tree *tree, enum node_kind kind, uint64_t ino,
               const struct resolved *r, bool terminal, struct tree_attr *out);

/* Records what the kernel is being told about node `node`, `content` with
 * `mtime` (tree->lock held): a file keeps that version (`content` itself:
 * fs/tree.c, one inode per version, so that a refreshed listing's bytes
 * replace the equal old ones). Says whether the kernel's cached copy must
 * be dropped. Folders and links keep nothing (they have no content). */
bool node_note_version(struct node *node, struct blob *content, struct timespec mtime);

/* Forgets what the kernel was given of `node` (tree->lock held): the next
 * version it gets is news. */
static inline void node_forget_served(struct node *node)
{
    if (node_kind_is_dir((enum node_kind)node->kind))
        node->dir.served = 0;
    else
        node->served = 0;
}

/* The child `name` of `parent` given to the kernel for `content`, with one
 * more lookup counted (tree->lock held): the node found when it stands for
 * that version, else a new node (the old one is detached). NULL on ENOMEM. */
struct node *tree_link_version(struct tree *tree, struct node *parent, const char *name,
                               enum node_kind kind, int status_index,
                               const struct blob *content);

/* Tells the program the kernel's copy of `ino` is outdated. Without
 * tree->lock: tree.h promises the callback that no tree lock is held. */
static inline void tree_notify(struct tree *tree, uint64_t ino)
{
    if (tree->inval)
        tree->inval(tree->inval_arg, ino);
}

#endif
