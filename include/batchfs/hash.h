/*
 * hash — FNV-1a, 64 bits: the one hash of bytes the hash tables file keys
 * under, and the hash names.c shows in file names (doc/naming.md), so its
 * values must never change.
 *
 * Header only and pure: a few instructions a byte, inlined into the
 * lookups that readdirplus and a listing pay for every entry.
 */
#ifndef BATCHFS_HASH_H
#define BATCHFS_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_FNV_BASIS 0xcbf29ce484222325ULL
#define HASH_FNV_PRIME 0x100000001b3ULL

/* Carries the hash `h` on over data[0, len). */
static inline uint64_t hash_bytes_from(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;

    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * HASH_FNV_PRIME;
    return h;
}

/* Carries the hash `h` on over the NUL-terminated `s` (NUL excluded). */
static inline uint64_t hash_str_from(uint64_t h, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        h = (h ^ *p) * HASH_FNV_PRIME;
    return h;
}

/* FNV-1a of data[0, len). */
static inline uint64_t hash_bytes(const void *data, size_t len)
{
    return hash_bytes_from(HASH_FNV_BASIS, data, len);
}

/* FNV-1a of the NUL-terminated `s`: equal to hash_bytes(s, strlen(s)). */
static inline uint64_t hash_str(const char *s)
{
    return hash_str_from(HASH_FNV_BASIS, s);
}

#endif
