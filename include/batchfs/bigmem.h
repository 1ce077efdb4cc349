/*
 * bigmem — memory for the arrays that grow with a folder: the tables and
 * buffers a listing of a million items is built in (names being settled,
 * the API's set of ids, hash tables, the kernel's inode table), and for
 * every other block that may reach 128 KiB and is freed while the mount
 * runs (a page's arrays, a readdir reply, an errors.tsv): glibc maps such
 * a block on its own, and freeing one raises its threshold for mapping to
 * that block's size, after which the next ones come from its heaps and
 * leave holes there. Keeping them all here keeps the threshold below
 * BIGMEM_MAP_MIN (from 128 KiB, those smaller still come from malloc): a
 * walk of a million items under cache_size=64M kept 22 MiB free in
 * malloc's heaps, and 10 MiB once no bigger block was freed there.
 *
 * Blocks of BIGMEM_MAP_MIN bytes or more are mapped from the kernel on
 * their own and unmapped when freed, so that freeing one gives its memory
 * back at once; grown, they are remapped rather than copied. malloc would
 * serve such a block from its heaps once it has seen a large block freed
 * (glibc raises its mapping threshold each time, up to 32 MiB), and the
 * holes a freed table of 30 MB leaves there are reused only by blocks that
 * fit: a walk of a million items then held 57 MiB more than it used. Smaller
 * blocks come from malloc, and so does a big one when the process has run
 * out of mappings (vm.max_map_count), as malloc itself would.
 *
 * A block from bigmem_resize is freed with bigmem_free, never free() (and
 * the reverse). Thread-safe, as malloc is.
 */
#ifndef BATCHFS_BIGMEM_H
#define BATCHFS_BIGMEM_H

#include <stddef.h>

/* The size from which a block is mapped on its own. */
#define BIGMEM_MAP_MIN ((size_t)256 * 1024)

/* The most blocks mapped at once; beyond, they come from malloc. Each is a
 * mapping of its own, and the kernel allows a process vm.max_map_count of
 * them (65,530 by default), threads' stacks and libraries included: a
 * cache_size of tens of GB in pages of a few hundred KB would reach it,
 * and at the limit even unmapping part of a mapping can fail. */
#define BIGMEM_MAX_MAPPED 16384

/* How many blocks are mapped now. */
size_t bigmem_mapped(void);

/* Like realloc: a block of `size` bytes holding the first bytes of `block`
 * (NULL: a new block), or NULL on ENOMEM with `block` left as it was.
 * New bytes are not zeroed. size 0 gives a block of 0 bytes. */
void *bigmem_resize(void *block, size_t size);

/* bigmem_resize for a block the caller is about to fill whole (a body of
 * known length): a new mapping gets its pages at once, in one call, rather
 * than a page fault for each as it is written (a third of what making
 * them cost, on a virtual machine measured at 1.7 us a page). */
void *bigmem_resize_filled(void *block, size_t size);

/* Like calloc: `count` zeroed elements of `size` bytes, or NULL. */
void *bigmem_calloc(size_t count, size_t size);

/* Frees a block of bigmem_resize or bigmem_calloc; safe on NULL. */
void bigmem_free(void *block);

#endif
