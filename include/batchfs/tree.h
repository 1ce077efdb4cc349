/*
 * tree — the filesystem model: nodes, inode numbers, names and attributes.
 *
 * Maps the catalog's listings onto a directory tree:
 *
 *     /jobs/<job id>/job.json
 *     /jobs/<job id>/{pending,processing,completed,failed,skipped,cancelled}/<item>.json
 *     /batches/<batch id>/batch.json
 *     /batches/<batch id>/results/<source_directory_file_id>.json
 *     /jobs/<job id>/{items.ndjson,errors.tsv,progress}
 *     /batches/<batch id>/{results.ndjson,errors.tsv}
 *     /.batchfs/{stats,config}
 *     /by-status/<status>/<job id>, /by-type/<job_type>/<job id>: links into jobs/
 *
 * and keeps the kernel's view of it: which inode numbers have been handed
 * out (with their lookup counts, so FORGET can free them), and which
 * version of a file or folder the kernel may have cached, so that a refresh
 * that changes one triggers an invalidation. Knows nothing of FUSE requests
 * or HTTP: the ops layer translates, the catalog fetches.
 *
 * Every function is thread-safe. Errors are negative errnos.
 */
#ifndef BATCHFS_TREE_H
#define BATCHFS_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

struct catalog;
struct blob;

#define TREE_ROOT_INO 1

/*
 * Called when the kernel may hold an outdated copy of inode `ino` (its file
 * content or its folder listing changed). Called without tree locks held, but
 * from the request thread: the callee must hand the work to another thread.
 */
typedef void (*tree_inval_fn)(void *arg, uint64_t ino);

/*
 * Called when the kernel's entry for `name` in folder `parent` leads to an
 * inode that stands for an outdated version of the file: the kernel should
 * look the name up again. Same rules as tree_inval_fn.
 */
typedef void (*tree_inval_entry_fn)(void *arg, uint64_t parent, const char *name);

struct buf;

/* The files of .batchfs/. */
enum tree_meta {
    TREE_META_STATS,  /* counters, as JSON */
    TREE_META_CONFIG, /* the effective options, as JSON */
};

/* Writes the current text of .batchfs/ file `which` into `out`: 0 or -errno. */
typedef int (*tree_meta_fn)(void *arg, int which, struct buf *out);

struct tree_config {
    struct catalog *catalog;  /* borrowed */
    double ttl_s;             /* kernel cache time for unfinished things */
    double terminal_ttl_s;    /* ...and for finished jobs and batches */
    uid_t uid;                /* owner shown on every node */
    gid_t gid;
    tree_inval_fn inval;             /* optional */
    tree_inval_entry_fn inval_entry; /* optional */
    void *inval_arg;                 /* of both */
    tree_meta_fn meta;        /* optional: without it .batchfs/ files are ENOENT */
    void *meta_arg;
};

/* Attributes of a node, and how long the kernel may keep them. */
struct tree_attr {
    struct stat st;
    double timeout_s;
    bool unlinked; /* tree_dir_entry: not looked up (its size costs a build);
                      the kernel must look it up by name */
};

struct tree;

/* NULL when out of memory. */
struct tree *tree_new(const struct tree_config *config);
void tree_free(struct tree *tree);

/*
 * Finds `name` in folder `parent`. On success fills *out (st.st_ino is the
 * node's inode number) and counts one kernel lookup of it. On -ENOENT,
 * out->timeout_s says how long the kernel may remember the absence.
 */
int tree_lookup(struct tree *tree, uint64_t parent, const char *name, struct tree_attr *out);

/* The kernel forgot `count` lookups of `ino`. */
void tree_forget(struct tree *tree, uint64_t ino, uint64_t count);

/* Attributes of `ino`; of a file, those of the version it stands for (see
 * tree_read). */
int tree_getattr(struct tree *tree, uint64_t ino, struct tree_attr *out);

/* A snapshot of one folder's entries, stable while it is open. */
struct tree_dir;
struct stream_waiter;

/*
 * Opens folder `ino`: fetches its listing if needed and takes a snapshot.
 * *unchanged says the listing is the one the kernel was last given for this
 * folder (so the kernel's cached copy of it may be kept).
 */
int tree_opendir(struct tree *tree, uint64_t ino, struct tree_dir **out, bool *unchanged);

/* Another reference to an open folder, for work that may outlive the
 * request that started it (the kernel may release the folder as soon as
 * it has a reply). */
struct tree_dir *tree_dir_hold(struct tree_dir *dir);

/* Drops a reference; the last one closes the folder. Safe on NULL. */
void tree_closedir(struct tree_dir *dir);

/* Entries in the snapshot, "." and ".." included (they come first). For
 * a folder handed out as it arrives (tree_dir_streamed), the entries at
 * hand now: more may come (see tree_dir_wait). */
size_t tree_dir_count(const struct tree_dir *dir);

/*
 * For a readdir from entry `index`: 0 when the snapshot holds it or holds
 * all it will (tree_dir_count is then final); a negative errno when the
 * folder could not be read to its end and has no entry `index`; or
 * STREAM_PARKED, and `waiter` is told once (stream.h) when more entries
 * are at hand or the reading has ended. Thread-safe.
 */
int tree_dir_wait(struct tree_dir *dir, size_t index, struct stream_waiter *waiter);

/* Says that readdir answered the end of the folder: the kernel holds every
 * entry of the snapshot (see ops.c, cache_readdir). Thread-safe. */
void tree_dir_end_given(struct tree_dir *dir);

/* Whether the snapshot is handed out as it arrives (the job list while it
 * is read), in the API's order rather than by name. */
bool tree_dir_streamed(const struct tree_dir *dir);

/* The name of entry `index` of the snapshot (borrowed from it), or NULL past
 * the end. Cheap: no lock, no lookup. */
const char *tree_dir_name(const struct tree_dir *dir, size_t index);

/* Whether entry `index` is a document known to be gone since its folder
 * was listed (listing_doc_gone): readdir leaves it out. Cheap: no lock. */
bool tree_dir_gone(const struct tree_dir *dir, size_t index);

/*
 * Entry `index` of the snapshot: its name and, in *out, its attributes. With
 * `link` the entry's node is created if needed and one kernel lookup of it is
 * counted (readdirplus); without, st_ino is the node's number if it exists,
 * else 0. "." and "..", and files made on demand (out->unlinked), are never
 * linked.
 */
int tree_dir_entry(struct tree *tree, struct tree_dir *dir, size_t index, bool link,
                   const char **name, struct tree_attr *out);

/*
 * Called after each readdirplus reply of a listed folder, which returned
 * entries [index - count, index): makes, without counting a lookup, the
 * nodes of the next `count` entries, so that the next reply finds them
 * made. Meant for the request thread right after the reply, while the
 * kernel takes in the entries just sent: the two then overlap instead of
 * taking turns (hold the folder across the reply: see tree_dir_hold).
 * Nodes the kernel is never given are dropped when the folder is closed;
 * what the replies returned is not looked at again. Does nothing for other
 * folders.
 */
void tree_dir_prepare(struct tree *tree, struct tree_dir *dir, size_t index, size_t count);

/*
 * The content of file `ino` (a new reference: blob_unref it): the version
 * the inode stands for. An inode stands for one version of a file, the one
 * whose size the kernel was told in lookup, getattr or readdirplus: once
 * the catalog's content differs, the inode keeps answering (getattr, read)
 * with that version, whole, and the name gets a new inode at its next
 * lookup. *unchanged says it is what the kernel was last given for this
 * inode. -EISDIR for a folder.
 */
int tree_read(struct tree *tree, uint64_t ino, struct blob **content, bool *unchanged);

/* Has the bytes of `content` (from tree_read) fetched again if they were
 * dropped for the budget: 0, CACHE_PARKED for a parked caller, or the
 * fetch's error (see catalog_make_present). */
int tree_make_present(struct tree *tree, struct blob *content);

/* The target of a grouped view's link ("../../jobs/<id>"), appended to
 * out. -EINVAL for anything but a link. */
int tree_readlink(struct tree *tree, uint64_t ino, struct buf *out);

/*
 * Extended attributes of jobs, items, batches and results, from their
 * objects: user.llamacloud.id, .status, and where present .error_message and
 * .job_id. tree_listxattr appends the names, each NUL-terminated;
 * tree_getxattr appends the value (-ENODATA when absent, -EOPNOTSUPP for a
 * name outside the user namespace). Other nodes have none.
 */
int tree_listxattr(struct tree *tree, uint64_t ino, struct buf *out);
int tree_getxattr(struct tree *tree, uint64_t ino, const char *name, struct buf *out);

/* Forgets every version handed to the kernel and asks it to drop its caches of
 * every known inode (after the catalog dropped its own). */
void tree_invalidate_all(struct tree *tree);

struct tree_stats {
    size_t nodes; /* the inodes the kernel holds (and a few made ahead) */
    size_t bytes; /* what they take: each node's malloc chunk (its usable
                     size and the allocator's 8-byte header) and the
                     buckets of the tables that find them */
};
void tree_get_stats(struct tree *tree, struct tree_stats *out);

#endif
