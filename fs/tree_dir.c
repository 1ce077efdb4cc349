/*
 * tree_dir — open folders of the filesystem model (see fs/tree.c and
 * include/batchfs/tree.h): the snapshot of a folder's entries taken at
 * opendir, the entries readdir and readdirplus hand the kernel, and the
 * nodes made ahead of a readdirplus reply.
 *
 * A snapshot holds a reference to the folder's listing (for the grouped
 * views, its own copy of the names), so its entries stay put while the
 * folder is open, whatever the catalog fetches meanwhile. What an entry is
 * comes from the snapshot alone: listing a folder asks the catalog nothing
 * per entry.
 *
 * Locking: nodes are read and made under tree->lock (see fs/tree.c), taken
 * per entry or per TREE_AHEAD_BATCH entries, never across a catalog call.
 * dir->ahead_lock, which guards the range of nodes made ahead, is taken
 * before tree->lock, never after.
 */
#include "batchfs/tree.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "batchfs/catalog.h"
#include "batchfs/idset.h"
#include "batchfs/names.h"
#include "batchfs/stream.h"
#include "tree_private.h"

struct tree_dir {
    struct node_view view;            /* the folder itself */
    uint64_t parent_ino;
    const struct fixed_entry *fixed;  /* ROOT, JOB, BATCH, META */
    size_t fixed_count;
    /* JOB, BATCH: the fixed entries this one has (`fixed` points here). */
    struct fixed_entry present[16];
    struct listing *listing;          /* the folder's listing (JOB, BATCH: the owner's) */
    /* JOBS opened while the job list is read: its jobs as they arrive, in
     * the API's order, instead of `listing` (NULL). */
    struct stream *stream;
    const struct entry *self;         /* JOB: the job's entry */
    char **names;                     /* BY: the groups; BY_GROUP: the job ids (owned) */
    size_t name_count;
    struct tree *tree;
    unsigned refs;                    /* atomic: the opener's and tree_dir_hold's */
    pthread_mutex_t ahead_lock;       /* protects the range below */
    size_t ahead_from, ahead_to;      /* entries whose nodes may have been made ahead */
    struct lru_link open_link;        /* in tree->open_dirs (tree->lock)... */
    bool open_linked;                 /* ...once opened */
};

#define COUNT_PRESENT (sizeof(((struct tree_dir *)0)->present) / sizeof(struct fixed_entry))

/* The generation of the listing a stream's entries are, once the stream
 * has ended well (they are all there); 0 before, or when it failed. */
static uint64_t dir_stream_version(const struct tree_dir *dir)
{
    int rc;

    if (!dir->stream || !stream_done(dir->stream, &rc) || rc)
        return 0;
    return stream_generation(dir->stream);
}

/* How many entries a listing folder's snapshot holds now (a stream's
 * grow). */
static size_t dir_listed_count(const struct tree_dir *dir)
{
    return dir->stream ? stream_count(dir->stream) : dir->listing->count;
}

/* Entry `i` of a listing folder's snapshot, below dir_listed_count. */
static const struct entry *dir_listed(const struct tree_dir *dir, size_t i)
{
    return dir->stream ? stream_entry(dir->stream, i) : &dir->listing->entries[i];
}

/* Adds a copy of `name` to the snapshot unless `seen`, the names added so
 * far, holds it: a lookup, not a scan, for a job list may hold hundreds of
 * thousands of jobs of one type. */
static int dir_add_name(struct tree_dir *dir, struct idset *seen, size_t *cap,
                        const char *name)
{
    size_t len = strlen(name);
    char *copy;
    int rc;

    if (dir->name_count == *cap) {
        size_t grown = *cap ? *cap * 2 : 16;
        char **names = realloc(dir->names, grown * sizeof(*names));

        if (!names)
            return -ENOMEM;
        dir->names = names;
        *cap = grown;
    }
    rc = idset_add(seen, name, len);
    if (rc <= 0)
        return rc;
    copy = strdup(name);
    if (!copy) {
        idset_remove(seen, name, len);
        return -ENOMEM;
    }
    dir->names[dir->name_count++] = copy;
    return 0;
}

/* The entries of a grouped view folder, from the job list. */
static int dir_fill_groups(struct tree_dir *dir)
{
    char value[NAMES_MAX_LEN + 1];
    struct idset seen = IDSET_INIT;
    size_t cap = 0;
    int rc = 0;

    for (size_t i = 0; i < dir->listing->count && !rc; i++) {
        const struct entry *job = &dir->listing->entries[i];

        if (!job_group_value(job, dir->view.status_index, value, sizeof(value)))
            continue;
        if (dir->view.kind == NODE_BY)
            rc = dir_add_name(dir, &seen, &cap, value);
        else if (!strcmp(value, dir->view.group))
            rc = dir_add_name(dir, &seen, &cap, job->name);
    }
    idset_free(&seen);
    return rc;
}

/* Keeps the fixed entries of a job's or batch's folder that it has: its
 * content folders depend on what kind of job or batch it is. */
static void dir_keep_present(struct tree_dir *dir)
{
    const struct entry *owner =
        dir->view.kind == NODE_JOB ? dir->self : &dir->listing->self;
    unsigned contents = owner ? catalog_contents(owner, dir->view.kind == NODE_BATCH) : 0;
    size_t n = 0;

    for (size_t i = 0; i < dir->fixed_count && n < COUNT_PRESENT; i++)
        if (fixed_entry_present(&dir->fixed[i], contents))
            dir->present[n++] = dir->fixed[i];
    dir->fixed = dir->present;
    dir->fixed_count = n;
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

    if (dir->view.kind == NODE_JOBS) {
        /* A job list being read is handed out as it arrives. */
        rc = catalog_jobs_open(tree->catalog, &dir->listing, &dir->stream);
        if (rc)
            goto fail;
    } else {
        rc = resolve_view(tree, &dir->view, true, &r);
        if (rc)
            goto fail;
        dir->listing = r.listing;
        dir->self = r.self;
        r.listing = NULL;
        if (dir->view.kind == NODE_JOB || dir->view.kind == NODE_BATCH)
            dir->view.terminal = r.terminal;
        resolved_release(&r);
    }
    dir->fixed = folder_fixed_entries(dir->view.kind, &dir->fixed_count);
    if (dir->view.kind == NODE_JOB || dir->view.kind == NODE_BATCH)
        dir_keep_present(dir);
    if (dir->view.kind == NODE_BY || dir->view.kind == NODE_BY_GROUP) {
        rc = dir_fill_groups(dir);
        if (rc) {
            tree_closedir(dir);
            return rc;
        }
    }

    pthread_mutex_lock(&tree->lock);
    node = tree_find_ino(tree, ino);
    if (node) {
        /* Folders with fixed entries never change; listings change when
         * refetched (a stream is its listing once it has ended well). */
        uint64_t version = dir->fixed     ? 1
                           : dir->listing ? listing_version(dir->listing)
                                          : dir_stream_version(dir);

        if (node->kind == NODE_JOB || node->kind == NODE_BATCH)
            node->terminal = dir->view.terminal;
        *unchanged = version && node->dir.served == version;
        node->dir.served = version;
    }
    lru_push_newest(&tree->open_dirs, &dir->open_link);
    dir->open_linked = true;
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
    node_add_lookups(folder, 1);
    for (size_t i = dir->ahead_from; i < dir->ahead_to; i++) {
        struct node *node = tree_find_child(tree, folder, dir_listed(dir, i - 2)->name);

        if (node && !node->nlookup && !node_children(node))
            tree_release_unused(tree, node);
    }
    node_forget_lookups(folder, 1);
    tree_release_unused(tree, folder);
}

void tree_dir_end_given(struct tree_dir *dir)
{
    uint64_t version = dir_stream_version(dir);
    struct node *node;

    /* The kernel has kept every entry of a folder read to its end: from a
     * stream that ended well, that is the listing the stream was, which the
     * next opendir may then let it keep. */
    if (!version)
        return;
    pthread_mutex_lock(&dir->tree->lock);
    node = tree_find_ino(dir->tree, dir->view.ino);
    if (node)
        node->dir.served = version;
    pthread_mutex_unlock(&dir->tree->lock);
}

struct tree_dir *tree_dir_hold(struct tree_dir *dir)
{
    __atomic_add_fetch(&dir->refs, 1, __ATOMIC_RELAXED);
    return dir;
}

void tree_closedir(struct tree_dir *dir)
{
    struct tree *tree;

    if (!dir || __atomic_sub_fetch(&dir->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    tree = dir->tree;
    pthread_mutex_lock(&tree->lock);
    if (dir->ahead_to > dir->ahead_from)
        dir_drop_ahead(tree, dir);
    if (dir->open_linked)
        lru_unlink(&tree->open_dirs, &dir->open_link);
    pthread_mutex_unlock(&tree->lock);
    pthread_mutex_destroy(&dir->ahead_lock);
    if (dir->listing)
        listing_release(dir->listing);
    if (dir->stream)
        catalog_jobs_close(dir->tree->catalog, dir->stream);
    stream_release(dir->stream);
    for (size_t i = 0; i < dir->name_count; i++)
        free(dir->names[i]);
    free(dir->names);
    free(dir);
}

void tree_dir_close_all(struct tree *tree)
{
    /* Once the session is gone nothing else holds a folder: each is
     * closed as its release would have. */
    while (tree->open_dirs.newest) {
        struct tree_dir *dir =
            lru_entry(tree->open_dirs.newest, struct tree_dir, open_link);

        __atomic_store_n(&dir->refs, 1, __ATOMIC_RELAXED);
        tree_closedir(dir);
    }
}

size_t tree_dir_count(const struct tree_dir *dir)
{
    if (dir->fixed)
        return 2 + dir->fixed_count;
    if (dir->view.kind == NODE_BY || dir->view.kind == NODE_BY_GROUP)
        return 2 + dir->name_count;
    return 2 + dir_listed_count(dir);
}

int tree_dir_wait(struct tree_dir *dir, size_t index, struct stream_waiter *waiter)
{
    if (!dir->stream || index < 2)
        return 0;
    return stream_wait(dir->stream, index - 2, waiter);
}

bool tree_dir_streamed(const struct tree_dir *dir)
{
    return dir->stream != NULL;
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
    case NODE_DOCS:
        return NODE_DOC;
    default:
        return NODE_RESULT;
    }
}

/* Files whose content is made on demand: readdirplus does not describe
 * them (that would build them for a mere listing). */
static bool node_kind_is_made(enum node_kind kind)
{
    return kind == NODE_JOB_FILE || kind == NODE_BATCH_FILE || kind == NODE_META_FILE;
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
        r->mtime = job ? entry_mtime(job) : (struct timespec){0, 0};
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
        r->mtime = owner ? entry_mtime(owner) : (struct timespec){0, 0};
        switch ((*fixed)->kind) {
        case NODE_JOB_JSON:
        case NODE_BATCH_JSON:
            r->content = owner->content; /* borrowed */
            r->nlink = 1;
            break;
        case NODE_STATUS:
        case NODE_RESULTS:
        case NODE_DOCS:
            r->nlink = 2;
            break;
        default: /* jobs/, batches/ */
            r->nlink = 1;
            break;
        }
        return;
    }
    *entry = dir_listed(dir, index);
    r->mtime = entry_mtime(*entry);
    switch (listing_child_kind(dir->view.kind)) {
    case NODE_JOB:
    case NODE_BATCH:
        /* How many content folders it has depends on its type, which only
         * its text tells: rather than read every job's text for a listing,
         * 1 tells find(1) not to count on it (a lookup gives the count). */
        r->nlink = 1;
        *terminal = catalog_job_is_terminal((*entry)->status);
        break;
    default:
        r->nlink = 1;
        r->content = (*entry)->content; /* borrowed */
        if (!r->mtime.tv_sec && dir->view.kind == NODE_RESULTS)
            r->mtime = entry_mtime(&dir->listing->self);
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
    return dir_listed(dir, index)->name;
}

bool tree_dir_gone(const struct tree_dir *dir, size_t index)
{
    return index >= 2 && dir->view.kind == NODE_DOCS && dir->listing &&
           listing_doc_gone(dir->listing, index - 2);
}

int tree_dir_entry(struct tree *tree, struct tree_dir *dir, size_t index, bool link,
                   const char **name, struct tree_attr *out)
{
    const struct fixed_entry *fixed;
    const struct entry *entry;
    struct resolved r;
    struct node *folder, *node = NULL;
    enum node_kind kind;
    bool terminal, unlinked, inval = false;
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

    /* A file whose content is made on demand, a document not fetched yet,
     * or one whose size cannot be had, has no size to give: the kernel
     * looks it up when it needs one. */
    unlinked = node_kind_is_made(kind) || (kind == NODE_DOC && !r.content) ||
               !resolved_sized(&r);
    if (unlinked)
        link = false;
    pthread_mutex_lock(&tree->lock);
    folder = tree_find_ino(tree, dir->view.ino);
    if (!folder) {
        rc = -ESTALE;
    } else if (link) {
        node = tree_link_version(tree, folder, *name, kind, status_index, r.content);
        if (!node)
            rc = -ENOMEM;
    } else {
        node = tree_find_child(tree, folder, *name);
    }
    if (node) {
        if (kind == NODE_JOB || kind == NODE_BATCH)
            node->terminal = terminal;
        if (link) {
            inval = node_note_version(node, r.content, r.mtime);
        }
    }
    if (!rc) {
        attr_fill(tree, kind, node ? node->ino : 0, &r, terminal, out);
        out->unlinked = unlinked;
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

    if ((!dir->listing && !dir->stream) || dir->fixed || dir->view.kind == NODE_BY ||
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
            /* The first batch made ahead: the rest of the folder follows,
             * all of what a job list says it holds when it is still coming
             * (room made once rather than at each doubling), less the nodes
             * the folder has already (read before: a second walk of a
             * million items would size the tables for two million). */
            size_t coming = dir->stream ? stream_announced(dir->stream) + 2 : 0;
            size_t ahead = (coming > total ? coming : total) - first, have;
            const struct node *folder;

            pthread_mutex_lock(&tree->lock);
            folder = tree_find_ino(tree, dir->view.ino);
            have = folder ? node_children(folder) : 0;
            tree_reserve_nodes(tree, tree->count + (ahead > have ? ahead - have : 0));
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
        for (; folder && i < stop; i++) {
            const struct entry *e = dir_listed(dir, i - 2);

            if (kind == NODE_DOC && !e->content)
                continue; /* given out without a node */
            if (!tree_link_child(tree, folder, e->name, kind, -1, 0))
                folder = NULL; /* out of memory: readdirplus will say so */
        }
        pthread_mutex_unlock(&tree->lock);
        if (!folder)
            break;
    }
    pthread_mutex_unlock(&dir->ahead_lock);
}

