/*
 * ops — the fuse_lowlevel_ops table (see include/batchfs/ops.h).
 *
 * Performance lives in the choices made at init and in the timeouts: the
 * kernel is allowed to cache entries, attributes, folder listings and file
 * pages for as long as the catalog considers them fresh, listings come with
 * their attributes (readdirplus), and when the kernel supports it files are
 * read without an open/release round trip per file.
 */
#include "batchfs/ops.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "batchfs/buf.h"
#include "batchfs/catalog.h"
#include "batchfs/log.h"
#include "batchfs/names.h"
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

static void ops_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct tree_attr attr;
    struct fuse_entry_param e;
    int rc = tree_lookup(ops_context(req)->tree, parent, name, &attr);

    if (rc == -ENOENT) {
        /* A negative entry: the kernel remembers the absence for a while. */
        memset(&e, 0, sizeof(e));
        e.entry_timeout = attr.timeout_s;
        fuse_reply_entry(req, &e);
        return;
    }
    if (rc) {
        fuse_reply_err(req, ops_errno(rc));
        return;
    }
    ops_fill_entry(&e, &attr);
    fuse_reply_entry(req, &e);
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

static void ops_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct tree_attr attr;
    int rc = tree_getattr(ops_context(req)->tree, ino, &attr);

    (void)fi;
    if (rc)
        fuse_reply_err(req, ops_errno(rc));
    else
        fuse_reply_attr(req, &attr.st, attr.timeout_s);
}

static void ops_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct ops_context *ctx = ops_context(req);
    struct blob *content;
    bool unchanged;
    int rc;

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
    rc = tree_read(ctx->tree, ino, &content, &unchanged);
    if (rc) {
        fuse_reply_err(req, ops_errno(rc));
        return;
    }
    /* The open file keeps the version it was opened with: a refresh
     * mid-read cannot splice two versions together. */
    fi->fh = (uintptr_t)content;
    fi->keep_cache = unchanged;
    if (fuse_reply_open(req, fi))
        blob_unref(content);
}

static void ops_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    struct blob *content = (struct blob *)(uintptr_t)fi->fh;
    struct buf scratch = BUF_INIT; /* the bytes of a made file (items.ndjson) */
    const char *bytes;
    bool owned = false, unchanged;
    long n;
    int rc;

    if (!content) {
        rc = tree_read(ops_context(req)->tree, ino, &content, &unchanged);
        if (rc) {
            fuse_reply_err(req, ops_errno(rc));
            return;
        }
        owned = true;
    }
    n = off < 0 ? 0 : blob_read(content, (size_t)off, size, &scratch, &bytes);
    if (n < 0)
        fuse_reply_err(req, ops_errno((int)n));
    else
        fuse_reply_buf(req, bytes, (size_t)n);
    buf_free(&scratch);
    if (owned)
        blob_unref(content);
}

static void ops_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    blob_unref((struct blob *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static void ops_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct tree_dir *dir;
    bool unchanged;
    int rc = tree_opendir(ops_context(req)->tree, ino, &dir, &unchanged);

    if (rc) {
        fuse_reply_err(req, ops_errno(rc));
        return;
    }
    fi->fh = (uintptr_t)dir;
    /* The kernel may keep the listing it read, and reuse it while the
     * listing it came from is the one we still hold. */
    fi->cache_readdir = 1;
    fi->keep_cache = unchanged;
    if (fuse_reply_open(req, fi))
        tree_closedir(dir);
}

static void ops_readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                               struct fuse_file_info *fi, bool plus)
{
    struct tree *tree = ops_context(req)->tree;
    struct tree_dir *dir = (struct tree_dir *)(uintptr_t)fi->fh;
    size_t count = tree_dir_count(dir), used = 0, start = off < 0 ? 0 : (size_t)off, index;
    char *buf;
    bool ahead;
    int rc = 0;

    (void)ino;
    buf = malloc(size);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    for (index = start; index < count; index++) {
        struct tree_attr attr;
        const char *name;
        size_t need;

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
    /* Entries already written stand; an error is reported only if none was. */
    if (rc && !used)
        fuse_reply_err(req, ops_errno(rc));
    else
        fuse_reply_buf(req, buf, used);
    free(buf);
    if (ahead) {
        tree_dir_prepare(tree, dir, index, index - start);
        tree_closedir(dir);
    }
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

static void ops_readlink(fuse_req_t req, fuse_ino_t ino)
{
    struct buf target = BUF_INIT;
    int rc = tree_readlink(ops_context(req)->tree, ino, &target);

    if (rc)
        fuse_reply_err(req, ops_errno(rc));
    else
        fuse_reply_readlink(req, target.data);
    buf_free(&target);
}

static void ops_reply_xattr(fuse_req_t req, size_t size, int rc, const struct buf *value)
{
    if (rc)
        fuse_reply_err(req, ops_errno(rc));
    else if (size == 0)
        fuse_reply_xattr(req, value->len);
    else if (value->len > size)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, value->data, value->len);
}

static void ops_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    struct buf value = BUF_INIT;
    int rc = ops_context(req)->xattr ? tree_getxattr(ops_context(req)->tree, ino, name, &value)
                                     : -ENOSYS;

    ops_reply_xattr(req, size, rc, &value);
    buf_free(&value);
}

static void ops_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    struct buf names = BUF_INIT;
    int rc = ops_context(req)->xattr ? tree_listxattr(ops_context(req)->tree, ino, &names)
                                     : -ENOSYS;

    ops_reply_xattr(req, size, rc, &names);
    buf_free(&names);
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
