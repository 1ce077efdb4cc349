/*
 * slab — many small objects of a few sizes, packed in blocks of their own:
 * the tree's nodes, one for each inode the kernel holds (a million after a
 * walk of a million-item folder).
 *
 * From malloc, each such object takes a chunk 8 bytes bigger than itself,
 * rounded up to 16 (an 80-byte chunk for a 72-byte node), and the chunks
 * of objects made on different threads scatter over malloc's arenas, where
 * those freed leave holes that only objects of their size fill. Here an
 * object takes its size rounded up to 8, in a block that holds objects of
 * that size only, and a block whose objects are all freed goes back to the
 * kernel at once.
 *
 * Objects of up to SLAB_MAX_SIZE bytes come from the blocks; bigger ones
 * from malloc. Not thread-safe: the owner serialises every call (the tree
 * holds its lock).
 */
#ifndef BATCHFS_SLAB_H
#define BATCHFS_SLAB_H

#include <stddef.h>

/* The biggest object served from blocks: a node with a name of 255 bytes. */
#define SLAB_MAX_SIZE ((size_t)320)

struct slab;

/* An empty slab; NULL on ENOMEM. */
struct slab *slab_new(void);

/* Frees every block, and the objects still in them (those from malloc are
 * the owner's to free first). Safe on NULL. */
void slab_free(struct slab *slab);

/* `size` zeroed bytes (size > 0), aligned to 8 bytes; NULL on ENOMEM. */
void *slab_alloc(struct slab *slab, size_t size);

/* Frees an object of slab_alloc made with the same `size`. Safe on NULL. */
void slab_release(struct slab *slab, void *object, size_t size);

/* The memory an object of `size` takes. Pure. */
size_t slab_object_bytes(size_t size);

/* The bytes of the blocks mapped now (objects from malloc not included). */
size_t slab_mapped_bytes(const struct slab *slab);

#endif
