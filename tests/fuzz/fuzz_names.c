/*
 * libFuzzer target for fs/names.c.
 *
 * The input is a suffix selector byte followed by records, each
 * [id length][id bytes][name length, 255 = NULL][name bytes]. The target
 * checks the promises of names_assign(): -EINVAL exactly when ids repeat;
 * otherwise names unique, free of '/' and control characters, never "." or
 * "..", at most NAMES_MAX_LEN bytes, ending in the suffix, and the same
 * whatever the order of the entries. It also checks that names_is_id() never
 * accepts what the rules exclude, and that names_group() gives a folder name
 * of the same length, well-formed, that names itself (a looked-up group name
 * is accepted only when it does).
 */
#include "batchfs/names.h"
#include "batchfs/utf8.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_ENTRIES 512

static const char *const fuzz_suffixes[] = {".json", "~", ".x", "\xe2\x82\xac", "a.b.c"};

static int fuzz_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void fuzz_check_names(const struct names_entry *e, size_t n, const char *suffix)
{
    char **sorted = malloc((n ? n : 1) * sizeof(*sorted));
    size_t slen = strlen(suffix);

    if (!sorted)
        abort();
    for (size_t i = 0; i < n; i++) {
        const char *name = e[i].file_name;
        size_t len = strlen(name);

        if (len == 0 || len > NAMES_MAX_LEN || len < slen ||
            memcmp(name + len - slen, suffix, slen) != 0)
            abort();
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strchr(name, '/'))
            abort();
        for (size_t j = 0; j < len; j++)
            if ((unsigned char)name[j] < 0x20 || name[j] == 0x7F)
                abort();
        sorted[i] = e[i].file_name;
    }
    qsort(sorted, n, sizeof(*sorted), fuzz_cmp_str);
    for (size_t i = 1; i < n; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            abort();
    free(sorted);
}

static void fuzz_check_group(const char *value, size_t len)
{
    char out[NAMES_MAX_LEN + 1], again[NAMES_MAX_LEN + 1];

    if (!names_group(value, len, out, sizeof(out)))
        return;
    if (strlen(out) != len || !strcmp(out, ".") || !strcmp(out, ".."))
        abort();
    for (size_t j = 0; j < len;) {
        size_t step = utf8_char_len((const unsigned char *)out + j, len - j);

        if (!step || out[j] == '/' || (unsigned char)out[j] < 0x20 || out[j] == 0x7F)
            abort();
        j += step;
    }
    if (!names_group(out, len, again, sizeof(again)) || strcmp(again, out))
        abort();
}

static bool fuzz_same_id(const struct names_entry *a, const struct names_entry *b)
{
    return a->item_id_len == b->item_id_len &&
           memcmp(a->item_id, b->item_id, a->item_id_len) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct names_entry e[FUZZ_MAX_ENTRIES], r[FUZZ_MAX_ENTRIES];
    const char *suffix;
    size_t n = 0, p = 1, kept = 0;
    bool repeated = false;
    int rc;

    if (size == 0)
        return 0;
    suffix = fuzz_suffixes[data[0] % (sizeof(fuzz_suffixes) / sizeof(fuzz_suffixes[0]))];
    while (p < size && n < FUZZ_MAX_ENTRIES) {
        size_t id_len = data[p++], name_len;

        if (id_len > size - p)
            id_len = size - p;
        e[n].item_id = (const char *)data + p;
        e[n].item_id_len = id_len;
        p += id_len;
        name_len = p < size ? data[p++] : 0;
        if (name_len == 255) {
            e[n].item_name = NULL;
            e[n].item_name_len = 0;
        } else {
            if (name_len > size - p)
                name_len = size - p;
            e[n].item_name = (const char *)data + p;
            e[n].item_name_len = name_len;
            p += name_len;
        }
        e[n].file_name = NULL;
        n++;
    }
    for (size_t i = 0; i < n; i++)
        fuzz_check_group(e[i].item_name, e[i].item_name_len);
    for (size_t i = 0; i < n && !repeated; i++)
        for (size_t j = 0; j < i && !repeated; j++)
            repeated = fuzz_same_id(&e[i], &e[j]);

    rc = names_assign(e, n, suffix);
    if (repeated) {
        if (rc != -EINVAL)
            abort();
        for (size_t i = 0; i < n; i++)
            if (e[i].file_name)
                abort();
        /* Drop the repeats, as callers do, and go on. */
        for (size_t i = 0; i < n; i++) {
            bool seen = false;

            for (size_t j = 0; j < kept && !seen; j++)
                seen = fuzz_same_id(&e[i], &e[j]);
            if (!seen)
                e[kept++] = e[i];
        }
        n = kept;
        rc = names_assign(e, n, suffix);
    }
    if (rc != 0)
        abort();
    fuzz_check_names(e, n, suffix);

    /* Reversed order, same mapping. */
    for (size_t i = 0; i < n; i++) {
        r[i] = e[n - 1 - i];
        r[i].file_name = NULL;
    }
    if (names_assign(r, n, suffix) != 0)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (strcmp(r[i].file_name, e[n - 1 - i].file_name) != 0)
            abort();
        free(r[i].file_name);
    }
    for (size_t i = 0; i < n; i++) {
        /* A name shaped like an id has no dots, slashes or control bytes. */
        if (names_is_id(e[i].file_name) && strchr(e[i].file_name, '.'))
            abort();
        free(e[i].file_name);
    }
    return 0;
}
