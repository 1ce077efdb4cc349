/*
 * ops — the FUSE low-level operations: a thin layer over the tree.
 *
 * Each operation translates one kernel request into a call on the tree and
 * one reply; the errno the kernel sees is the tree's (never an HTTP status).
 * Every operation that would modify the tree answers EROFS.
 *
 * No request waits for the network on the thread that received it: one
 * whose answer needs a fetch is parked (a copy of what it asked, on the
 * cache's waiter) and run again, on a fetch thread, once the fetch is done;
 * that run replies. An interrupted parked request is answered EINTR at
 * once. Each request is answered exactly once.
 */
#ifndef BATCHFS_OPS_H
#define BATCHFS_OPS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <stdbool.h>

struct tree;

/* The session's userdata. */
struct cache;

struct ops_context {
    struct tree *tree;     /* borrowed */
    struct cache *cache;   /* borrowed: what requests needing a fetch park on */
    bool allow_no_open;    /* answer open with ENOSYS when the kernel supports it */
    bool xattr;            /* serve extended attributes; else ENOSYS, which the kernel
                              remembers, so no tool pays a round trip for them */
    bool no_open;          /* set at init: the kernel skips open/release */
    /* A readdir reply's buffer kept for the next one (NULL: none), taken
     * and put back atomically by whichever thread replies: the kernel asks
     * for up to a MiB at a time, and the 56 replies of a job list of
     * 200,000 each made their pages anew. The session's owner frees it
     * with bigmem_free once the session is gone. */
    _Atomic(char *) reply_spare;
};

extern const struct fuse_lowlevel_ops ops_table;

#endif
