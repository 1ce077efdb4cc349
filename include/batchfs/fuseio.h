/*
 * fuseio — how batchfs reads requests from /dev/fuse and writes replies:
 * read(2) and writev(2), as libfuse would, with one correction to the
 * kernel's INIT reply.
 *
 * libfuse before 3.17 never passes FUSE_PARALLEL_DIROPS to the kernel,
 * even though it is on by default and the filesystem asks for it (fixed
 * upstream in 3.17; Debian 12 ships 3.14). Without it the kernel lets one
 * lookup or readdir of a folder run at a time: a request parked on a fetch
 * (a job looked up, the next page of a job list being listed) would hold
 * every other process's lookup in that folder asleep, beyond the reach of
 * Ctrl-C, until the fetch ends. batchfs answers lookups and readdirs of one
 * folder in parallel safely, so the flag is set in the reply whenever the
 * kernel offered it.
 */
#ifndef BATCHFS_FUSEIO_H
#define BATCHFS_FUSEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fuse_session;

/* Has `se`, mounted already, do its I/O through fuseio: 0, or a negative
 * errno (the session then does its own, serialized as before). */
int fuseio_install(struct fuse_session *se);

/*
 * The INIT reply correction, on the bytes of one reply whose header is
 * `header` (header_len bytes) followed by `body` (body_len bytes): sets
 * FUSE_PARALLEL_DIROPS in the flags of the reply to request `init_unique`
 * when it succeeded and `offered` (the kernel's INIT request had the flag).
 * True when it changed the reply. Pure; exposed for tests.
 */
bool fuseio_fix_init_reply(const void *header, size_t header_len, void *body,
                           size_t body_len, uint64_t init_unique, bool offered);

#endif
