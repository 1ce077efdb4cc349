/*
 * buf — growable byte buffer (see include/batchfs/buf.h).
 * Growth is geometric so that appending n bytes one at a time costs O(n).
 */
#include "batchfs/buf.h"

#include "batchfs/bigmem.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How buf_make_room sizes the room it makes. */
enum buf_room {
    BUF_ROOM_DOUBLED, /* the capacity doubled until it holds them */
    BUF_ROOM_EXACT,   /* exactly that */
    BUF_ROOM_FILLED,  /* exactly that, about to be written whole */
};

/* Room for `extra` more bytes and the NUL, as `how` says. 0 or -ENOMEM
 * (unchanged). */
static int buf_make_room(struct buf *b, size_t extra, enum buf_room how)
{
    size_t need, cap;
    char *data;

    if (extra > SIZE_MAX - b->len - 1)
        return -ENOMEM;
    need = b->len + extra + 1; /* room for the trailing NUL */
    if (need <= b->cap)
        return 0;
    cap = how != BUF_ROOM_DOUBLED ? need : b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (!b->big)
        data = realloc(b->data, cap);
    else if (how == BUF_ROOM_FILLED)
        data = bigmem_resize_filled(b->data, cap);
    else
        data = bigmem_resize(b->data, cap);
    if (!data)
        return -ENOMEM;
    b->data = data;
    b->cap = cap;
    return 0;
}

int buf_reserve(struct buf *b, size_t extra)
{
    return buf_make_room(b, extra, BUF_ROOM_DOUBLED);
}

int buf_reserve_exact(struct buf *b, size_t extra)
{
    return buf_make_room(b, extra, BUF_ROOM_EXACT);
}

int buf_reserve_filled(struct buf *b, size_t extra)
{
    return buf_make_room(b, extra, BUF_ROOM_FILLED);
}

int buf_append(struct buf *b, const void *data, size_t len)
{
    int rc = buf_reserve(b, len);

    if (rc)
        return rc;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int buf_append_str(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_append_char(struct buf *b, char c)
{
    return buf_append(b, &c, 1);
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int n, rc;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    rc = buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

char *buf_steal(struct buf *b)
{
    char *data = b->data;

    if (b->big && data) {
        /* The caller frees what it gets with free(). */
        data = malloc(b->len + 1);
        if (!data)
            return NULL;
        memcpy(data, b->data, b->len + 1);
        bigmem_free(b->data);
    } else if (!data) {
        data = calloc(1, 1);
    }
    b->data = NULL;
    b->len = b->cap = 0;
    return data;
}

char *buf_steal_big(struct buf *b)
{
    char *data;

    if (buf_make_big(b) || (!b->data && buf_reserve(b, 0)))
        return NULL;
    data = b->data;
    data[b->len] = '\0'; /* an empty buffer's first byte */
    b->data = NULL;
    b->len = b->cap = 0;
    return data;
}

int buf_make_big(struct buf *b)
{
    char *data;

    if (b->big)
        return 0;
    if (b->data) {
        data = bigmem_resize(NULL, b->cap);
        if (!data)
            return -ENOMEM;
        memcpy(data, b->data, b->len + 1);
        free(b->data);
        b->data = data;
    }
    b->big = true;
    return 0;
}

void buf_trim(struct buf *b)
{
    char *data;

    if (!b->data || b->cap == b->len + 1)
        return;
    data = b->big ? bigmem_resize(b->data, b->len + 1) : realloc(b->data, b->len + 1);
    if (data) {
        b->data = data;
        b->cap = b->len + 1;
    }
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void buf_free(struct buf *b)
{
    if (b->big)
        bigmem_free(b->data);
    else
        free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
