/*
 * tree_nodes — the inodes of the filesystem model (see fs/tree.c): the tree
 * itself, its nodes and the two hash tables that find them, by inode number
 * and by (parent, name).
 *
 * A node is made when the kernel is first given its inode (or ahead of a
 * readdirplus reply: fs/tree_dir.c) and freed once the kernel has forgotten
 * every lookup of it and it has no children left. What nodes mean, and how
 * a request reads them, is fs/tree.c's business; this file only keeps them.
 *
 * Locking: everything here runs under tree->lock (see fs/tree.c), taken by
 * the caller; only the public functions at the end take it themselves,
 * where the tree is shared.
 */
#include "batchfs/tree.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batchfs/bigmem.h"
#include "batchfs/blob.h"
#include "batchfs/log.h"
#include "batchfs/slab.h"
#include "tree_private.h"

/* ---- hash tables (tree->lock held) ------------------------------------ */

/* Nodes per bucket, on average, at most: a table doubles when its nodes
 * reach twice its buckets. So a node costs 4 to 8 bytes of buckets in each
 * table (rather than 8 to 16 at load 1), and a find walks 1 to 2 nodes of
 * a chain on average, each a compare of a number or of a parent and a name. */
#define TABLE_LOAD 2

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
    t->buckets = bigmem_calloc(t->size, sizeof(*t->buckets));
    return t->buckets ? 0 : -ENOMEM;
}

/* Rehashes into `size` buckets (a power of two, larger than now); left as
 * it is when out of memory (chains just get longer). */
static void table_resize(struct node_table *t, bool by_ino, size_t size)
{
    struct node **buckets = bigmem_calloc(size, sizeof(*buckets));

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
    bigmem_free(t->buckets);
    t->buckets = buckets;
    t->size = size;
}

/* Doubles the table; on no memory it stays as it is (only slower). */
static void table_grow(struct node_table *t, bool by_ino)
{
    table_resize(t, by_ino, t->size * 2);
}

/* Room for `count` nodes in all (a hint), rehashing once rather than once
 * per doubling as a big folder's nodes arrive. */
static void table_reserve(struct node_table *t, bool by_ino, size_t count)
{
    size_t size = t->size;

    while (size < count / TABLE_LOAD && size <= SIZE_MAX / 2 / sizeof(struct node *))
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

/* ---- node lifetime (tree->lock held) --------------------------------- */

/* The bytes of a node called `name_len` bytes. The name may end before
 * the struct's tail padding: still allocated, so that no access to a field
 * can reach past the node. */
static size_t node_size(size_t name_len)
{
    size_t size = offsetof(struct node, name) + name_len + 1;

    return size < sizeof(struct node) ? sizeof(struct node) : size;
}

/* A zeroed node called `name`, from the tree's slab, counted in
 * node_bytes. */
static struct node *node_new(struct tree *tree, const char *name)
{
    size_t len = strlen(name);
    struct node *node = slab_alloc(tree->nodes, node_size(len));

    if (node) {
        memcpy(node->name, name, len + 1);
        tree->node_bytes += slab_object_bytes(node_size(len));
    }
    return node;
}

/* Frees a node made by node_new, with its snapshot. */
static void node_delete(struct tree *tree, struct node *node)
{
    size_t size = node_size(strlen(node->name));

    if (!node_kind_is_dir((enum node_kind)node->kind))
        blob_unref(node->file.snapshot);
    tree->node_bytes -= slab_object_bytes(size);
    slab_release(tree->nodes, node, size);
}

/* A number for a new node. Numbers go up from 2 (1 is the root's) and,
 * past UINT32_MAX, start again at 2, skipping those still in use: a node
 * takes 4 bytes for it rather than 8, and 32-bit programs can stat every
 * file. Four billion nodes made in one mount take thousands of walks of a
 * million files; a number comes back only after the kernel forgot it (its
 * node is freed then), which FUSE allows. There is always a free number:
 * four billion nodes would take hundreds of GiB. */
static uint32_t tree_next_ino(struct tree *tree)
{
    for (;;) {
        uint32_t ino = tree->next_ino++;

        if (tree->next_ino == 0) {
            tree->next_ino = TREE_ROOT_INO + 1;
            tree->ino_wrapped = true;
        }
        if (!tree->ino_wrapped || !tree_find_ino(tree, ino))
            return ino;
    }
}

/* The child `name` of `parent`, created if needed, with `lookups` (0 or 1)
 * more kernel lookups counted. */
struct node *tree_link_child(struct tree *tree, struct node *parent, const char *name,
                             enum node_kind kind, int status_index, uint64_t lookups)
{
    struct node *node = tree_find_child(tree, parent, name);

    if (node) {
        node_add_lookups(node, (uint32_t)lookups);
        return node;
    }
    return tree_link_new(tree, parent, name, kind, status_index, lookups);
}

struct node *tree_link_new(struct tree *tree, struct node *parent, const char *name,
                           enum node_kind kind, int status_index, uint64_t lookups)
{
    struct node *node;

    /* Neither can happen (a folder of four billion nodes would not fit in
     * memory; every status_index is a small constant), but both are
     * checked rather than wrapped. */
    if (parent->dir.children == UINT32_MAX || status_index < -1 ||
        status_index > NODE_STATUS_INDEX_MAX)
        return NULL;
    node = node_new(tree, name);
    if (!node)
        return NULL;
    node->ino = tree_next_ino(tree);
    node->kind = kind;
    node->parent = parent;
    node->status_index = status_index;
    node->nlookup = (uint32_t)lookups;
    parent->dir.children++;
    if (tree->count >= TABLE_LOAD * tree->by_ino.size)
        table_grow(&tree->by_ino, true);
    if (tree->count >= TABLE_LOAD * tree->by_name.size)
        table_grow(&tree->by_name, false);
    table_insert(&tree->by_ino, node, true);
    table_insert(&tree->by_name, node, false);
    tree->count++;
    return node;
}

/* Frees one node nothing holds; returns its parent. */
static struct node *node_free_unused(struct tree *tree, struct node *node)
{
    struct node *parent = node->parent;

    table_remove(&tree->by_ino, node, true);
    if (!node->detached)
        table_remove(&tree->by_name, node, false);
    tree->count--;
    parent->dir.children--;
    node_delete(tree, node);
    return parent;
}

/* Frees `node` and then any ancestor it kept alive, once nothing holds them. */
void tree_release_unused(struct tree *tree, struct node *node)
{
    while (node && node != tree->root && !node->nlookup && !node_children(node))
        node = node_free_unused(tree, node);
}

void tree_detach(struct tree *tree, struct node *node)
{
    if (node->detached || node == tree->root)
        return;
    table_remove(&tree->by_name, node, false);
    node->detached = true;
    /* Never given to the kernel (made ahead of a readdirplus): nobody can
     * reach it any more. Its parent is held by the request that got here. */
    if (!node->nlookup && !node_children(node))
        node_free_unused(tree, node);
}

void tree_reserve_nodes(struct tree *tree, size_t count)
{
    table_reserve(&tree->by_ino, true, count);
    table_reserve(&tree->by_name, false, count);
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
    tree->inval_entry = config->inval_entry;
    tree->inval_arg = config->inval_arg;
    tree->meta = config->meta;
    tree->meta_arg = config->meta_arg;
    clock_gettime(CLOCK_REALTIME, &tree->mount_time);
    pthread_mutex_init(&tree->lock, NULL);
    tree->next_ino = TREE_ROOT_INO + 1;
    tree->nodes = slab_new();
    if (!tree->nodes || table_init(&tree->by_ino) || table_init(&tree->by_name))
        goto fail;
    tree->root = node_new(tree, "/");
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
    tree_dir_close_all(tree);
    if (tree->by_ino.buckets) {
        for (size_t i = 0; i < tree->by_ino.size; i++) {
            struct node *node = tree->by_ino.buckets[i];

            while (node) {
                struct node *next = node->next_by_ino;

                node_delete(tree, node);
                node = next;
            }
        }
    } else if (tree->root) {
        node_delete(tree, tree->root);
    }
    slab_free(tree->nodes);
    bigmem_free(tree->by_ino.buckets);
    bigmem_free(tree->by_name.buckets);
    pthread_mutex_destroy(&tree->lock);
    free(tree);
}

void tree_forget(struct tree *tree, uint64_t ino, uint64_t count)
{
    struct node *node;

    pthread_mutex_lock(&tree->lock);
    node = tree_find_ino(tree, ino);
    if (node && node != tree->root) {
        node_forget_lookups(node, count);
        tree_release_unused(tree, node);
    }
    pthread_mutex_unlock(&tree->lock);
}

void tree_invalidate_all(struct tree *tree)
{
    uint64_t *inos = NULL;
    size_t count = 0;

    pthread_mutex_lock(&tree->lock);
    inos = bigmem_calloc(tree->count, sizeof(*inos));
    for (size_t i = 0; i < tree->by_ino.size; i++) {
        for (struct node *node = tree->by_ino.buckets[i]; node; node = node->next_by_ino) {
            node_forget_served(node);
            if (inos)
                inos[count++] = node->ino;
        }
    }
    pthread_mutex_unlock(&tree->lock);
    if (!inos)
        log_warning("no memory to drop the kernel's caches; they expire with their timeouts");
    for (size_t i = 0; i < count; i++)
        tree_notify(tree, inos[i]);
    bigmem_free(inos);
}

void tree_get_stats(struct tree *tree, struct tree_stats *out)
{
    pthread_mutex_lock(&tree->lock);
    out->nodes = tree->count;
    out->bytes = tree->node_bytes +
                 (tree->by_ino.size + tree->by_name.size) * sizeof(*tree->by_ino.buckets);
    pthread_mutex_unlock(&tree->lock);
}
