/*
 * fuseio — requests and replies through /dev/fuse (see
 * include/batchfs/fuseio.h).
 *
 * For: the one correction of the INIT reply that libfuse 3.14 leaves out.
 * Not for: anything else about the protocol; every other request and
 * reply passes through unchanged.
 */
#define FUSE_USE_VERSION 312
#include "batchfs/fuseio.h"

#include <errno.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <stddef.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* What the kernel's INIT request said, for its reply. Written by the thread
 * that reads INIT, before libfuse replies to it on the same thread, and
 * read by every writev: atomics, as libfuse's threads share them. */
static struct {
    uint64_t unique; /* 0: no INIT seen (the kernel never uses 0) */
    bool offered;    /* it had FUSE_PARALLEL_DIROPS */
} fuseio_init;

bool fuseio_fix_init_reply(const void *header, size_t header_len, void *body,
                           size_t body_len, uint64_t init_unique, bool offered)
{
    struct fuse_out_header out;
    struct fuse_init_out init;

    if (!offered || !init_unique || header_len < sizeof(out) ||
        body_len < offsetof(struct fuse_init_out, flags) + sizeof(init.flags))
        return false;
    memcpy(&out, header, sizeof(out));
    if (out.unique != init_unique || out.error != 0)
        return false;
    memcpy(&init.flags, (char *)body + offsetof(struct fuse_init_out, flags),
           sizeof(init.flags));
    if (init.flags & FUSE_PARALLEL_DIROPS)
        return false;
    init.flags |= FUSE_PARALLEL_DIROPS;
    memcpy((char *)body + offsetof(struct fuse_init_out, flags), &init.flags,
           sizeof(init.flags));
    return true;
}

static ssize_t fuseio_read(int fd, void *buf, size_t len, void *userdata)
{
    ssize_t n = read(fd, buf, len);
    struct fuse_in_header in;
    struct fuse_init_in init;

    (void)userdata;
    if (n >= (ssize_t)(sizeof(in) + offsetof(struct fuse_init_in, flags) +
                       sizeof(init.flags))) {
        memcpy(&in, buf, sizeof(in));
        if (in.opcode == FUSE_INIT) {
            memcpy(&init.flags,
                   (char *)buf + sizeof(in) + offsetof(struct fuse_init_in, flags),
                   sizeof(init.flags));
            __atomic_store_n(&fuseio_init.offered,
                             (init.flags & FUSE_PARALLEL_DIROPS) != 0, __ATOMIC_RELAXED);
            __atomic_store_n(&fuseio_init.unique, in.unique, __ATOMIC_RELEASE);
        }
    }
    return n;
}

static ssize_t fuseio_writev(int fd, struct iovec *iov, int count, void *userdata)
{
    uint64_t unique = __atomic_load_n(&fuseio_init.unique, __ATOMIC_ACQUIRE);

    struct fuse_out_header out;

    (void)userdata;
    /* libfuse writes a reply as its header, then its argument. */
    if (unique && count >= 2 && iov[0].iov_len >= sizeof(out)) {
        memcpy(&out, iov[0].iov_base, sizeof(out));
        if (out.unique == unique) {
            fuseio_fix_init_reply(
                iov[0].iov_base, iov[0].iov_len, iov[1].iov_base, iov[1].iov_len, unique,
                __atomic_load_n(&fuseio_init.offered, __ATOMIC_RELAXED));
            __atomic_store_n(&fuseio_init.unique, 0, __ATOMIC_RELAXED); /* answered */
        }
    }
    return writev(fd, iov, count);
}

int fuseio_install(struct fuse_session *se)
{
    static const struct fuse_custom_io io = {
        .writev = fuseio_writev,
        .read = fuseio_read,
    };

    return fuse_session_custom_io(se, &io, fuse_session_fd(se));
}
