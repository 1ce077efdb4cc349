/*
 * inval — telling the kernel to drop its cached copy of an inode.
 *
 * The kernel must not be asked to invalidate from the thread that serves a
 * request on the same inode (it may wait for a page lock that request holds),
 * so invalidations are queued here and sent by a thread of their own.
 * A request for an inode among the most recently queued is merged with it.
 */
#ifndef BATCHFS_INVAL_H
#define BATCHFS_INVAL_H

#include <stdint.h>

struct fuse_session;
struct inval_queue;

/* Starts the sending thread. NULL on no memory or no thread. */
struct inval_queue *inval_queue_new(struct fuse_session *session);

/* Queues inode `ino` (file pages, attributes, cached folder listing).
 * Thread-safe, never blocks on the kernel. A tree_inval_fn. */
void inval_queue_push(void *queue, uint64_t ino);

/* Queues the entry `name` of folder `parent`: the kernel looks the name up
 * again. Thread-safe, never blocks on the kernel. A tree_inval_entry_fn. */
void inval_queue_push_entry(void *queue, uint64_t parent, const char *name);

/* Stops the thread, dropping what is still queued. Safe on NULL. */
void inval_queue_free(struct inval_queue *queue);

#endif
