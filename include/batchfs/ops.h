/*
 * ops — the FUSE low-level operations: a thin layer over the tree.
 *
 * Each operation translates one kernel request into a call on the tree and
 * one reply; the errno the kernel sees is the tree's (never an HTTP status).
 * Every operation that would modify the tree answers EROFS.
 */
#ifndef BATCHFS_OPS_H
#define BATCHFS_OPS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <stdbool.h>

struct tree;

/* The session's userdata. */
struct ops_context {
    struct tree *tree;     /* borrowed */
    bool allow_no_open;    /* answer open with ENOSYS when the kernel supports it */
    bool xattr;            /* serve extended attributes; else ENOSYS, which the kernel
                              remembers, so no tool pays a round trip for them */
    bool no_open;          /* set at init: the kernel skips open/release */
};

extern const struct fuse_lowlevel_ops ops_table;

#endif
