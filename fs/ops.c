/*
 * ops — the fuse_lowlevel_ops table (see include/batchfs/ops.h).
 *
 * Performance lives in the choices made at init and in the timeouts: the
 * kernel is allowed to cache entries, attributes, folder listings and file
 * pages for as long as the catalog considers them fresh, listings come with
 * their attributes (readdirplus), and when the kernel supports it files are
 * read without an open/release round trip per file.
 *
 * Requests that may need a fetch (lookup, getattr, open, read without an
 * open file, opendir, readlink and the xattr calls) run as an ops_call: a
 * copy of what was asked, run by ops_drive with the thread parked on the
 * call's cache waiter. When the tree returns CACHE_PARKED, the call belongs
 * to the fetch it waits for and this thread lets go of it; the fetch's
 * ready function runs it again from the start. So an operation is only
 * ever retried from the top, and the tree changes nothing (no node, no
 * lookup count, no handle) before its last fetch. Whoever replies to a
 * call frees it: its run, or the interrupt function when it takes the call
 * off its fetch (cache_waiter_cancel decides which, under the cache lock).
 */
#include "batchfs/ops.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "batchfs/bigmem.h"
#include "batchfs/buf.h"
#include "batchfs/cache.h"
#include "batchfs/catalog.h"
#include "batchfs/log.h"
#include "batchfs/names.h"
#include "batchfs/stream.h"
#include "batchfs/tree.h"

/* d_ino of an entry that has no inode yet (as libfuse's high-level API). */
#define OPS_UNKNOWN_INO 0xffffffffu

static struct ops_context *ops_context(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

/* An errno for the kernel: positive, and a real one. */
static int ops_errno(int rc)
{
    if (rc >= 0 || rc < -4095)
        return EIO;
    return -rc;
}

static void ops_init(void *userdata, struct fuse_conn_info *conn)
{
    struct ops_context *ctx = userdata;

    if (conn->capable & FUSE_CAP_READDIRPLUS) {
        /* Always plus: `ls -l` and `find` need the attributes anyway. */
        conn->want |= FUSE_CAP_READDIRPLUS;
        conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
    }
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
        conn->want |= FUSE_CAP_PARALLEL_DIROPS;
    if (conn->capable & FUSE_CAP_ASYNC_READ)
        conn->want |= FUSE_CAP_ASYNC_READ;
    if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA)
        conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
        conn->want |= FUSE_CAP_CACHE_SYMLINKS;
    ctx->no_open = ctx->allow_no_open && (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT);
    if (ctx->no_open)
        conn->want |= FUSE_CAP_NO_OPEN_SUPPORT;
    log_debug("kernel protocol %u.%u, readdirplus %s, no-open %s", conn->proto_major,
              conn->proto_minor, (conn->want & FUSE_CAP_READDIRPLUS) ? "on" : "off",
              ctx->no_open ? "on" : "off");
}

static void ops_fill_entry(struct fuse_entry_param *e, const struct tree_attr *attr)
{
    memset(e, 0, sizeof(*e));
    e->ino = attr->st.st_ino;
    e->attr = attr->st;
    e->attr_timeout = attr->timeout_s;
    e->entry_timeout = attr->timeout_s;
}

/* A request that may wait for a fetch: what it asked, copied, so that it
 * can be run again from another thread. */
struct ops_call {
    struct cache_waiter waiter; /* first: its ready function gets this */
    /* A readdir of a folder handed out as it arrives parks here, on the
     * folder (`dir`, held by the call) rather than on the cache. */
    struct stream_waiter more;
    struct tree_dir *dir;
    bool plus;
    fuse_req_t req;
    /* Replies and returns 0, or returns CACHE_PARKED without replying
     * when the call was parked (it then no longer belongs to the caller). */
    int (*run)(struct ops_call *call);
    fuse_ino_t ino;
    char *name; /* lookup's name, getxattr's attribute */
    size_t size;
    off_t off;
    struct fuse_file_info fi;
};

static void ops_call_free(struct ops_call *call)
{
    cache_waiter_reset(&call->waiter);
    tree_closedir(call->dir);
    free(call->name);
    free(call);
}

/* Runs `call` once; frees it unless it parked. */
static void ops_drive(struct ops_call *call)
{
    struct cache_waiter *previous = cache_park_on(&call->waiter);
    int rc = call->run(call);

    cache_park_on(previous);
    if (rc == CACHE_PARKED)
        return; /* parked: its ready function runs it again */
    ops_call_free(call);
}

/* cache_waiter.ready: the fetch the call waited for is done. */
static void ops_ready(struct cache_waiter *waiter)
{
    ops_drive((struct ops_call *)waiter);
}

_Static_assert(STREAM_PARKED == CACHE_PARKED, "a call parks on either the same way");

/* stream_waiter.ready: more entries of the folder, or its end. */
static void ops_more(struct stream_waiter *more)
{
    ops_drive((struct ops_call *)((char *)more - offsetof(struct ops_call, more)));
}

/* fuse_req_interrupt_func: answers a parked call at once. A call not parked
 * is answered by its run, which sees the waiter cancelled if it parks. */
static void ops_interrupted(fuse_req_t req, void *data)
{
    struct ops_call *call = data;

    /* Parked on one or the other, never both. */
    if (!cache_waiter_cancel(&call->waiter) && !stream_waiter_cancel(&call->more))
        return;
    fuse_reply_err(req, EINTR);
    ops_call_free(call);
}

/*
 * The request of a call that is about to be answered: the interrupt
 * function is switched off first (waiting for one that runs right now), so
 * that it never touches a call that is answered and freed.
 */
static fuse_req_t ops_answer(struct ops_call *call)
{
    fuse_req_interrupt_func(call->req, NULL, NULL);
    return call->req;
}

/* A call of `req`, not started; NULL after answering ENOMEM. */
static struct ops_call *ops_call_new(fuse_req_t req, int (*run)(struct ops_call *call),
                                     fuse_ino_t ino, const char *name, size_t size,
                                     off_t off, const struct fuse_file_info *fi)
{
    struct ops_call *call = calloc(1, sizeof(*call));

    if (!call || (name && !(call->name = strdup(name)))) {
        free(call);
        fuse_reply_err(req, ENOMEM);
        return NULL;
    }
    cache_waiter_init(&call->waiter, ops_context(req)->cache, ops_ready);
    stream_waiter_init(&call->more, ops_more);
    call->req = req;
    call->run = run;
    call->ino = ino;
    call->size = size;
    call->off = off;
    if (fi)
        call->fi = *fi;
    return call;
}

/* Runs a call made by ops_call_new, which may park. */
static void ops_call_start(struct ops_call *call)
{
    fuse_req_interrupt_func(call->req, ops_interrupted, call);
    ops_drive(call);
}

/* Makes a call of `req` and runs it; ENOMEM if it cannot be made. */
static void ops_start(fuse_req_t req, int (*run)(struct ops_call *call), fuse_ino_t ino,
                      const char *name, size_t size, off_t off,
                      const struct fuse_file_info *fi)
{
    struct ops_call *call = ops_call_new(req, run, ino, name, size, off, fi);

    if (call)
        ops_call_start(call);
}

static int ops_lookup_run(struct ops_call *call)
{
    struct tree_attr attr;
    struct fuse_entry_param e;
    int rc = tree_lookup(ops_context(call->req)->tree, call->ino, call->name, &attr);
    fuse_req_t req;

    if (rc == CACHE_PARKED)
        return rc;
    req = ops_answer(call);
    if (rc == -ENOENT) {
        /* A negative entry: the kernel remembers the absence for a while. */
        memset(&e, 0, sizeof(e));
        e.entry_timeout = attr.timeout_s;
        fuse_reply_entry(req, &e);
        return 0;
    }
    if (rc) {
        fuse_reply_err(req, ops_errno(rc));
        return 0;
    }
    ops_fill_entry(&e, &attr);
    fuse_reply_entry(req, &e);
    return 0;
}

static void ops_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    ops_start(req, ops_lookup_run, parent, name, 0, 0, NULL);
}

static void ops_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    tree_forget(ops_context(req)->tree, ino, nlookup);
    fuse_reply_none(req);
}

static void ops_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    for (size_t i = 0; i < count; i++)
        tree_forget(ops_context(req)->tree, forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

static int ops_getattr_run(struct ops_call *call)
{
    struct tree_attr attr;
    int rc = tree_getattr(ops_context(call->req)->tree, call->ino, &attr);
    fuse_req_t req;

    if (rc == CACHE_PARKED)
        return rc;
    req = ops_answer(call);
    if (rc)
        fuse_reply_err(req, ops_errno(rc));
    else
        fuse_reply_attr(req, &attr.st, attr.timeout_s);
    return 0;
}

static void ops_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    ops_start(req, ops_getattr_run, ino, NULL, 0, 0, NULL);
}

static int ops_open_run(struct ops_call *call)
{
    struct blob *content;
    bool unchanged;
    int rc = tree_read(ops_context(call->req)->tree, call->ino, &content, &unchanged);
    fuse_req_t req;

    if (rc == CACHE_PARKED)
        return rc;
    req = ops_answer(call);
    if (rc) {
        fuse_reply_err(req, ops_errno(rc));
        return 0;
    }
    /* The open file keeps the version it was opened with: a refresh
     * mid-read cannot splice two versions together. */
    call->fi.fh = (uintptr_t)content;
    call->fi.keep_cache = unchanged;
    if (fuse_reply_open(req, &call->fi))
        blob_unref(content);
    return 0;
}

static void ops_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct ops_context *ctx = ops_context(req);

    if (ctx->no_open) {
        /* The kernel then opens every file without asking again, keeps
         * its page cache, and reads by inode; tree_read finds the content:
         * the version the inode stands for, so that no open is needed to
         * hold a snapshot (one inode per version: see fs/tree.c). */
        fuse_reply_err(req, ENOSYS);
        return;
    }
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    ops_start(req, ops_open_run, ino, NULL, 0, 0, fi);
}

/* Replies with `size` bytes at `off` of `content`. */
static void ops_reply_read(fuse_req_t req, struct blob *content, size_t size, off_t off)
{
    struct buf scratch = BUF_INIT; /* the bytes of a made file (items.ndjson) */
    const char *bytes;
    long n;

    n = off < 0 ? 0 : blob_read(content, (size_t)off, size, &scratch, &bytes);
    if (n < 0)
        fuse_reply_err(req, ops_errno((int)n));
    else
        fuse_reply_buf(req, bytes, (size_t)n);
    buf_free(&scratch);
}

/* A read without an open file (no-open mode): the content by inode. */
static int ops_read_run(struct ops_call *call)
{
    struct blob *content;
    bool unchanged;
    struct tree *tree = ops_context(call->req)->tree;
    int rc = tree_read(tree, call->ino, &content, &unchanged);
    fuse_req_t req;

    if (!rc && (rc = tree_make_present(tree, content)))
        blob_unref(content);
    if (rc == CACHE_PARKED)
        return rc;
    req = ops_answer(call);
    if (rc) {
        fuse_reply_err(req, ops_errno(rc));
        return 0;
    }
    ops_reply_read(req, content, call->size, call->off);
    blob_unref(content);
    return 0;
}

/* A read of an open file whose bytes were dropped for the budget: they are
 * fetched again while the request waits parked, holding no thread. */
static int ops_read_dropped_run(struct ops_call *call)
{
    struct blob *content = (struct blob *)(uintptr_t)call->fi.fh;
    int rc = tree_make_present(ops_context(call->req)->tree, content);
    fuse_req_t req;

    if (rc == CACHE_PARKED)
        return rc;
    req = ops_answer(call);
    if (rc)
        fuse_reply_err(req, ops_errno(rc));
    else
        ops_reply_read(req, content, call->size, call->off);
    return 0;
}

static void ops_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    struct blob *content = (struct blob *)(uintptr_t)fi->fh;

    if (!content) {
        ops_start(req, ops_read_run, ino, NULL, size, off, NULL);
        return;
    }
    if (!blob_present(content)) {
        ops_start(req, ops_read_dropped_run, ino, NULL, size, off, fi);
        return;
    }
    ops_reply_read(req, content, size, off);
}

static void ops_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    blob_unref((struct blob *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static int ops_opendir_run(struct ops_call *call)
{
    struct tree_dir *dir;
    bool unchanged;
    int rc = tree_opendir(ops_context(call->req)->tree, call->ino, &dir, &unchanged);
    fuse_req_t req;

    if (rc == CACHE_PARKED)
        return rc;
    req = ops_answer(call);
    if (rc) {
        fuse_reply_err(req, ops_errno(rc));
        return 0;
    }
    call->fi.fh = (uintptr_t)dir;
    /* The kernel may keep the listing it read, and reuse it while the
     * listing it came from is the one we still hold. */
    call->fi.cache_readdir = 1;
    call->fi.keep_cache = unchanged;
    if (fuse_reply_open(req, &call->fi))
        tree_closedir(dir);
    return 0;
}

static void ops_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    ops_start(req, ops_opendir_run, ino, NULL, 0, 0, fi);
}

/* Replies to a readdir(plus) of `dir` from entry `off` with the entries at
 * hand. */
static void ops_readdir_reply(fuse_req_t req, struct tree_dir *dir, size_t size,
                              off_t off, bool plus)
{
    struct ops_context *ctx = ops_context(req); /* req is gone once replied to */
    struct tree *tree = ctx->tree;
    size_t count = tree_dir_count(dir), used = 0, start = off < 0 ? 0 : (size_t)off, index;
    char *buf, *spare;
    bool ahead;
    int rc = 0;

    /* The kernel asks for up to a MiB at a time: from bigmem, whose
     * freeing leaves malloc's heaps as they were (bigmem.h), the last
     * reply's buffer if no other reply has it (see ops_context). */
    spare = atomic_exchange(&ctx->reply_spare, NULL);
    buf = bigmem_resize(spare, size);
    if (!buf) {
        bigmem_free(spare);
        fuse_reply_err(req, ENOMEM);
        return;
    }
    for (index = start; index < count; index++) {
        struct tree_attr attr;
        const char *name;
        size_t need;

        if (tree_dir_gone(dir, index))
            continue;
        /* Size the entry by its name first: a node must not be counted as
         * looked up unless its entry really goes out. */
        name = tree_dir_name(dir, index);
        need = plus ? fuse_add_direntry_plus(req, NULL, 0, name, NULL, 0)
                    : fuse_add_direntry(req, NULL, 0, name, NULL, 0);
        if (used + need > size)
            break;
        rc = tree_dir_entry(tree, dir, index, plus && index >= 2, &name, &attr);
        if (rc)
            break;
        if (plus) {
            struct fuse_entry_param e;

            if (index >= 2 && !attr.unlinked) {
                ops_fill_entry(&e, &attr);
            } else {
                /* No inode: the kernel looks the name up when it needs it. */
                memset(&e, 0, sizeof(e));
                e.attr = attr.st;
                if (!e.attr.st_ino)
                    e.attr.st_ino = OPS_UNKNOWN_INO;
            }
            fuse_add_direntry_plus(req, buf + used, size - used, name, &e, (off_t)index + 1);
        } else {
            if (!attr.st.st_ino)
                attr.st.st_ino = OPS_UNKNOWN_INO;
            fuse_add_direntry(req, buf + used, size - used, name, &attr.st, (off_t)index + 1);
        }
        used += need;
    }
    /* While the kernel takes these in, make the nodes of as many more; the
     * folder may be released as soon as the reply is out. */
    ahead = plus && !rc && index > start;
    if (ahead)
        tree_dir_hold(dir);
    if (!rc && start >= count)
        tree_dir_end_given(dir);
    /* Entries already written stand; an error is reported only if none was. */
    if (rc && !used)
        fuse_reply_err(req, ops_errno(rc));
    else
        fuse_reply_buf(req, buf, used);
    bigmem_free(atomic_exchange(&ctx->reply_spare, buf));
    if (ahead) {
        tree_dir_prepare(tree, dir, index, index - start);
        tree_closedir(dir);
    }
}

/* A readdir of a folder handed out as it arrives: past the entries at
 * hand, it waits parked for more (or the end) rather than answer the end
 * of the folder. */
static int ops_readdir_run(struct ops_call *call)
{
    int rc = tree_dir_wait(call->dir, call->off < 0 ? 0 : (size_t)call->off, &call->more);
    fuse_req_t req;

    if (rc == STREAM_PARKED)
        return rc;
    req = ops_answer(call);
    if (rc)
        fuse_reply_err(req, ops_errno(rc));
    else
        ops_readdir_reply(req, call->dir, call->size, call->off, call->plus);
    return 0;
}

static void ops_readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                               struct fuse_file_info *fi, bool plus)
{
    struct tree_dir *dir = (struct tree_dir *)(uintptr_t)fi->fh;
    struct ops_call *call;

    if (!tree_dir_streamed(dir)) {
        ops_readdir_reply(req, dir, size, off, plus);
        return;
    }
    call = ops_call_new(req, ops_readdir_run, ino, NULL, size, off, fi);
    if (!call)
        return;
    call->dir = tree_dir_hold(dir);
    call->plus = plus;
    ops_call_start(call);
}

static void ops_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                        struct fuse_file_info *fi)
{
    ops_readdir_common(req, ino, size, off, fi, false);
}

static void ops_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                            struct fuse_file_info *fi)
{
    ops_readdir_common(req, ino, size, off, fi, true);
}

static void ops_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    tree_closedir((struct tree_dir *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static void ops_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct tree_stats stats;
    struct statvfs st;

    (void)ino;
    tree_get_stats(ops_context(req)->tree, &stats);
    memset(&st, 0, sizeof(st));
    st.f_bsize = 4096;
    st.f_frsize = 4096;
    st.f_files = stats.nodes;
    st.f_namemax = NAMES_MAX_LEN;
    st.f_flag = ST_RDONLY | ST_NOSUID | ST_NODEV;
    fuse_reply_statfs(req, &st);
}

static int ops_readlink_run(struct ops_call *call)
{
    struct buf target = BUF_INIT;
    int rc = tree_readlink(ops_context(call->req)->tree, call->ino, &target);
    fuse_req_t req;

    if (rc == CACHE_PARKED) {
        buf_free(&target);
        return rc;
    }
    req = ops_answer(call);
    if (rc)
        fuse_reply_err(req, ops_errno(rc));
    else
        fuse_reply_readlink(req, target.data);
    buf_free(&target);
    return 0;
}

static void ops_readlink(fuse_req_t req, fuse_ino_t ino)
{
    ops_start(req, ops_readlink_run, ino, NULL, 0, 0, NULL);
}

/* Replies to getxattr or listxattr; CACHE_PARKED is passed on unanswered. */
static int ops_reply_xattr(struct ops_call *call, int rc, struct buf *value)
{
    fuse_req_t req;

    if (rc == CACHE_PARKED) {
        buf_free(value);
        return rc;
    }
    req = ops_answer(call);
    if (rc)
        fuse_reply_err(req, ops_errno(rc));
    else if (call->size == 0)
        fuse_reply_xattr(req, value->len);
    else if (value->len > call->size)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, value->data, value->len);
    buf_free(value);
    return 0;
}

static int ops_getxattr_run(struct ops_call *call)
{
    struct buf value = BUF_INIT;

    return ops_reply_xattr(
        call, tree_getxattr(ops_context(call->req)->tree, call->ino, call->name, &value),
        &value);
}

static int ops_listxattr_run(struct ops_call *call)
{
    struct buf names = BUF_INIT;

    return ops_reply_xattr(
        call, tree_listxattr(ops_context(call->req)->tree, call->ino, &names), &names);
}

static void ops_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    if (!ops_context(req)->xattr)
        fuse_reply_err(req, ENOSYS);
    else
        ops_start(req, ops_getxattr_run, ino, name, size, 0, NULL);
}

static void ops_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    if (!ops_context(req)->xattr)
        fuse_reply_err(req, ENOSYS);
    else
        ops_start(req, ops_listxattr_run, ino, NULL, size, 0, NULL);
}

/* ---- everything that would change the tree --------------------------- */

static void ops_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                        struct fuse_file_info *fi)
{
    (void)ino, (void)attr, (void)to_set, (void)fi;
    fuse_reply_err(req, EROFS);
}

static void ops_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      dev_t rdev)
{
    (void)parent, (void)name, (void)mode, (void)rdev;
    fuse_reply_err(req, EROFS);
}

static void ops_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    (void)parent, (void)name, (void)mode;
    fuse_reply_err(req, EROFS);
}

static void ops_remove(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    (void)parent, (void)name;
    fuse_reply_err(req, EROFS);
}

static void ops_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    (void)link, (void)parent, (void)name;
    fuse_reply_err(req, EROFS);
}

static void ops_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
                       fuse_ino_t newparent, const char *newname, unsigned int flags)
{
    (void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
    fuse_reply_err(req, EROFS);
}

static void ops_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
                     const char *newname)
{
    (void)ino, (void)newparent, (void)newname;
    fuse_reply_err(req, EROFS);
}

static void ops_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
                      off_t off, struct fuse_file_info *fi)
{
    (void)ino, (void)buf, (void)size, (void)off, (void)fi;
    fuse_reply_err(req, EROFS);
}

static void ops_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                       struct fuse_file_info *fi)
{
    (void)parent, (void)name, (void)mode, (void)fi;
    fuse_reply_err(req, EROFS);
}

static void ops_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
                         const char *value, size_t size, int flags)
{
    (void)ino, (void)name, (void)value, (void)size, (void)flags;
    fuse_reply_err(req, EROFS);
}

static void ops_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    (void)ino, (void)name;
    fuse_reply_err(req, EROFS);
}

static void ops_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
                          off_t length, struct fuse_file_info *fi)
{
    (void)ino, (void)mode, (void)offset, (void)length, (void)fi;
    fuse_reply_err(req, EROFS);
}

const struct fuse_lowlevel_ops ops_table = {
    .init = ops_init,
    .lookup = ops_lookup,
    .forget = ops_forget,
    .forget_multi = ops_forget_multi,
    .getattr = ops_getattr,
    .readlink = ops_readlink,
    .open = ops_open,
    .read = ops_read,
    .release = ops_release,
    .opendir = ops_opendir,
    .readdir = ops_readdir,
    .readdirplus = ops_readdirplus,
    .releasedir = ops_releasedir,
    .statfs = ops_statfs,
    .getxattr = ops_getxattr,
    .listxattr = ops_listxattr,
    .setattr = ops_setattr,
    .mknod = ops_mknod,
    .mkdir = ops_mkdir,
    .unlink = ops_remove,
    .rmdir = ops_remove,
    .symlink = ops_symlink,
    .rename = ops_rename,
    .link = ops_link,
    .write = ops_write,
    .create = ops_create,
    .setxattr = ops_setxattr,
    .removexattr = ops_removexattr,
    .fallocate = ops_fallocate,
};
