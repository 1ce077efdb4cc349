/*
 * hash — the hashes of bytes, header only and pure:
 *
 *   hash_key, hash_key_str   what the hash tables file keys under: eight
 *                            bytes a step, so an id of 40 bytes costs a
 *                            fifth of what FNV-1a cost (a job list of
 *                            200,000 hashes each id half a dozen times);
 *                            its values may change from one build to the
 *                            next, and differ between byte orders.
 *   hash_words_from          the same walk from a seed of one's own (blob
 *                            digests).
 *   hash_bytes, hash_str     FNV-1a, 64 bits: the hash names.c shows in
 *                            file names (doc/naming.md), so its values
 *                            must never change.
 *
 * Inline: readdirplus and a listing pay them for every entry.
 */
#ifndef BATCHFS_HASH_H
#define BATCHFS_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

/* Mixes the bits of h so that each one depends on all (MurmurHash3's
 * finaliser). */
static inline uint64_t hash_mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* data[0, len) eight bytes a step, from `seed`, and mixed at the end. */
static inline uint64_t hash_words_from(uint64_t seed, const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = seed ^ len, w;
    size_t i = 0;

    for (; len - i >= 8; i += 8) {
        memcpy(&w, p + i, sizeof(w));
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 29;
    }
    w = 0;
    if (len > i)
        memcpy(&w, p + i, len - i);
    return hash_mix(h ^ hash_mix(w ^ (len - i)));
}

#define HASH_KEY_SEED 0x9e3779b97f4a7c15ULL

/* What a hash table files data[0, len) under. */
static inline uint64_t hash_key(const void *data, size_t len)
{
    return hash_words_from(HASH_KEY_SEED, data, len);
}

/* hash_key of the NUL-terminated `s` (NUL excluded). */
static inline uint64_t hash_key_str(const char *s)
{
    return hash_key(s, strlen(s));
}

#endif
