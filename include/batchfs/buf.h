/*
 * buf — a growable byte buffer.
 *
 * Used wherever bytes are accumulated: HTTP bodies, rendered files, URLs. The
 * buffer always keeps a NUL after the last byte so that text can be handed to
 * C string functions, but it may also hold embedded NULs; `len` is the truth.
 * Not thread-safe: a buffer belongs to one thread at a time.
 */
#ifndef BATCHFS_BUF_H
#define BATCHFS_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct buf {
    char *data; /* owned; NULL until the first append; data[len] == '\0' */
    size_t len;
    size_t cap;
    /* The bytes come from bigmem.h (a buffer that grows with a folder:
     * names, ids), not malloc: buf_steal then hands out a malloc'd copy. */
    bool big;
};

#define BUF_INIT {NULL, 0, 0, false}
/* A buffer whose bytes may grow with a folder (see `big`). */
#define BUF_INIT_BIG {NULL, 0, 0, true}

/* Appends len bytes. Returns 0, or -ENOMEM (the buffer is left unchanged). */
int buf_append(struct buf *b, const void *data, size_t len);

/* Appends a NUL-terminated string. Returns 0 or -ENOMEM. */
int buf_append_str(struct buf *b, const char *s);

/* Appends one byte. Returns 0 or -ENOMEM. */
int buf_append_char(struct buf *b, char c);

/* Appends printf-formatted text. Returns 0, -ENOMEM or -EINVAL. */
int buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Ensures room for `extra` more bytes without reallocating. 0 or -ENOMEM. */
int buf_reserve(struct buf *b, size_t extra);

/* Like buf_reserve, but makes room for exactly `extra` more bytes (and the
 * NUL) rather than doubling: for a size known ahead, where doubling would
 * leave up to as much again unused. 0 or -ENOMEM (the buffer unchanged). */
int buf_reserve_exact(struct buf *b, size_t extra);

/* Like buf_reserve_exact, for `extra` bytes the caller is about to append
 * (a body of known length): a big buffer's new memory is made at once
 * (bigmem_resize_filled). */
int buf_reserve_filled(struct buf *b, size_t extra);

/* Hands the bytes to the caller (who frees them) and empties the buffer.
 * Never returns NULL: an empty buffer yields a fresh "" allocation, or NULL
 * only when that allocation fails. */
char *buf_steal(struct buf *b);

/* The same, as a block of bigmem.h (which the caller frees with
 * bigmem_free): a big buffer's own, another's copied (buf_make_big). NULL
 * on ENOMEM (the buffer then holds the same bytes). */
char *buf_steal_big(struct buf *b);

/* Makes the buffer big (see `big`), moving its bytes into a block of
 * bigmem.h if they were malloc's: then buf_steal_big hands them out where
 * they are. 0 or -ENOMEM (the buffer is then unchanged). */
int buf_make_big(struct buf *b);

/* Gives back the room beyond the bytes and their NUL (the data may move).
 * Kept as it is when the allocator cannot. */
void buf_trim(struct buf *b);

/* Empties the buffer, keeping its allocation. */
void buf_reset(struct buf *b);

/* Frees the bytes; the buffer is empty again, as initialised. Safe on
 * BUF_INIT. */
void buf_free(struct buf *b);

#endif
