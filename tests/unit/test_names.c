/*
 * Unit tests for fs/names.c: the naming rules case by case (fixture
 * tests/data/names/cases.txt), long names cut at character boundaries,
 * independence from entry order, scale, errors and allocation failure.
 *
 * Build with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc so that the
 * allocation-failure test can make the Nth allocation fail.
 */
#include "batchfs/names.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "failing_alloc.h"

/* One field of a fixture line, unescaped. */
struct field {
    char *bytes; /* NULL for \N */
    size_t len;
};

struct fixture_entry {
    struct field id, name, expected;
};

static const char *data_dir(void)
{
    const char *dir = getenv("BATCHFS_TEST_DATA");

    return dir && *dir ? dir : "tests/data";
}

static char *read_file(const char *rel, size_t *len)
{
    char path[4096];
    FILE *f;
    char *data;
    long size;

    snprintf(path, sizeof(path), "%s/%s", data_dir(), rel);
    f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size >= 0);
    rewind(f);
    data = malloc((size_t)size + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)size, f), (size_t)size);
    data[size] = '\0';
    fclose(f);
    *len = (size_t)size;
    return data;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static struct field unescape(const char *s, size_t len)
{
    struct field f = {NULL, 0};
    size_t i = 0;

    if (len == 2 && memcmp(s, "\\N", 2) == 0)
        return f;
    f.bytes = malloc(len + 1);
    assert_non_null(f.bytes);
    while (i < len) {
        if (s[i] == '\\' && i + 1 < len && s[i + 1] == '\\') {
            f.bytes[f.len++] = '\\';
            i += 2;
        } else if (s[i] == '\\' && i + 3 < len && s[i + 1] == 'x') {
            int hi = hex_digit(s[i + 2]), lo = hex_digit(s[i + 3]);

            assert_true(hi >= 0 && lo >= 0);
            f.bytes[f.len++] = (char)(hi * 16 + lo);
            i += 4;
        } else {
            f.bytes[f.len++] = s[i++];
        }
    }
    f.bytes[f.len] = '\0';
    return f;
}

/* A loader of ids for names_ids_on_demand: the entries' own, counted;
 * with `fail` set, the error of every load. */
struct id_loader {
    const struct names_entry *entries;
    size_t count, loads;
    int fail;
};

static int load_id(void *arg, size_t index, struct buf *out)
{
    struct id_loader *l = arg;

    assert_true(index < l->count);
    l->loads++;
    if (l->fail)
        return l->fail;
    return buf_append(out, l->entries[index].item_id, l->entries[index].item_id_len);
}

/* Names the entries with their ids loaded on demand, and checks that
 * they get the names names_assign gave them (in file_name), loading the
 * ids of colliding entries only: fewer than `max_loads`. Then again with
 * a loader that fails, which fails names_finish with its error when any
 * id had to be loaded. */
static void check_on_demand(const struct names_entry *e, size_t count, const char *suffix,
                            size_t max_loads)
{
    struct id_loader loader = {e, count, 0, 0};
    int rc;

    for (int failing = 0; failing < 2; failing++) {
        struct names *n = names_new(suffix, &rc);

        assert_non_null(n);
        loader.fail = failing ? -EIO : 0;
        assert_int_equal(names_ids_on_demand(n, load_id, &loader), 0);
        for (size_t i = 0; i < count; i++)
            assert_int_equal(names_add(n, e[i].item_id, e[i].item_id_len,
                                       e[i].item_name ? e[i].item_name : "",
                                       e[i].item_name ? e[i].item_name_len : 0),
                             0);
        assert_int_equal(loader.loads, 0); /* nothing loaded while adding */
        assert_int_equal(names_ids_on_demand(n, load_id, &loader), count ? -EINVAL : 0);
        rc = names_finish(n);
        if (failing) {
            assert_int_equal(rc, loader.loads ? -EIO : 0);
        } else {
            assert_int_equal(rc, 0);
            assert_true(loader.loads <= max_loads);
            assert_int_equal(names_ids_loaded(n), loader.loads);
            for (size_t i = 0; i < count; i++) {
                const char *name = names_file_name(n, i, NULL);

                if (strcmp(name, e[i].file_name) != 0)
                    fail_msg("on demand, entry %zu: got '%s', expected '%s'", i, name,
                             e[i].file_name);
            }
            assert_null(names_item_id(n, 0));
        }
        names_free(n);
        loader.loads = 0;
    }
}

static void check_group(struct fixture_entry *fx, size_t n)
{
    struct names_entry *entries = calloc(n, sizeof(*entries));

    assert_non_null(entries);
    for (size_t i = 0; i < n; i++) {
        entries[i].item_id = fx[i].id.bytes ? fx[i].id.bytes : "";
        entries[i].item_id_len = fx[i].id.len;
        entries[i].item_name = fx[i].name.bytes;
        entries[i].item_name_len = fx[i].name.len;
    }
    /* Forwards, then backwards: the order must not matter; nor whether
     * ids are loaded on demand (every entry may collide: n loads). */
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(names_assign(entries, n, ".json"), 0);
        for (size_t i = 0; i < n; i++) {
            size_t f = pass ? n - 1 - i : i;

            if (strcmp(entries[i].file_name, fx[f].expected.bytes) != 0)
                fail_msg("id '%s': got '%s', expected '%s'", entries[i].item_id,
                         entries[i].file_name, fx[f].expected.bytes);
        }
        check_on_demand(entries, n, ".json", n);
        for (size_t i = 0; i < n; i++)
            free(entries[i].file_name);
        for (size_t i = 0; i < n / 2; i++) {
            struct names_entry t = entries[i];

            entries[i] = entries[n - 1 - i];
            entries[n - 1 - i] = t;
        }
    }
    free(entries);
}

static void test_fixture_cases(void **state)
{
    size_t len, n = 0, groups = 0;
    char *text = read_file("names/cases.txt", &len);
    struct fixture_entry fx[64];
    char *line = text;

    (void)state;
    while (line <= text + len) {
        char *eol = memchr(line, '\n', (size_t)(text + len - line));
        size_t line_len = eol ? (size_t)(eol - line) : (size_t)(text + len - line);

        if (line_len == 0) {
            if (n) {
                check_group(fx, n);
                groups++;
                for (size_t i = 0; i < n; i++) {
                    free(fx[i].id.bytes);
                    free(fx[i].name.bytes);
                    free(fx[i].expected.bytes);
                }
                n = 0;
            }
        } else if (line[0] != '#') {
            char *tab1 = memchr(line, '\t', line_len);
            char *tab2 =
                tab1 ? memchr(tab1 + 1, '\t', (size_t)(line + line_len - tab1 - 1))
                     : NULL;

            assert_non_null(tab2);
            assert_true(n < sizeof(fx) / sizeof(fx[0]));
            fx[n].id = unescape(line, (size_t)(tab1 - line));
            fx[n].name = unescape(tab1 + 1, (size_t)(tab2 - tab1 - 1));
            fx[n].expected = unescape(tab2 + 1, (size_t)(line + line_len - tab2 - 1));
            n++;
        }
        if (!eol)
            break;
        line = eol + 1;
    }
    if (n) {
        check_group(fx, n);
        groups++;
        for (size_t i = 0; i < n; i++) {
            free(fx[i].id.bytes);
            free(fx[i].name.bytes);
            free(fx[i].expected.bytes);
        }
    }
    /* Guards against a fixture that silently parsed to nothing. */
    assert_true(groups >= 10);
    free(text);
}

static bool valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p) {
        size_t n = *p < 0x80 ? 1 : *p >= 0xF0 ? 4 : *p >= 0xE0 ? 3 : *p >= 0xC2 ? 2 : 0;

        if (!n)
            return false;
        for (size_t i = 1; i < n; i++)
            if ((p[i] & 0xC0) != 0x80)
                return false;
        p += n;
    }
    return true;
}

/* The properties every produced name must have. */
static void assert_well_formed(const char *name)
{
    size_t len = strlen(name);

    assert_true(len > 0 && len <= NAMES_MAX_LEN);
    assert_null(strchr(name, '/'));
    for (size_t i = 0; i < len; i++)
        assert_true((unsigned char)name[i] >= 0x20 && name[i] != 0x7F);
    assert_string_not_equal(name, ".");
    assert_string_not_equal(name, "..");
    assert_true(valid_utf8(name));
}

static char *repeat(const char *unit, size_t times)
{
    size_t n = strlen(unit);
    char *s = malloc(n * times + 1);

    assert_non_null(s);
    for (size_t i = 0; i < times; i++)
        memcpy(s + i * n, unit, n);
    s[n * times] = '\0';
    return s;
}

/* names_group, case by case from tests/data/names/groups.txt, and what no
 * fixture line can hold: a value just short of and over NAME_MAX, and an
 * output buffer too small. */
static void test_group_cases(void **state)
{
    size_t len, cases = 0;
    char *text = read_file("names/groups.txt", &len);
    char out[NAMES_MAX_LEN + 1], *line = text, *long_value;

    (void)state;
    while (line < text + len) {
        char *eol = memchr(line, '\n', (size_t)(text + len - line));
        size_t line_len = eol ? (size_t)(eol - line) : (size_t)(text + len - line);
        char *tab = memchr(line, '\t', line_len);

        if (line_len && line[0] != '#') {
            struct field value, want;
            bool named;

            assert_non_null(tab);
            value = unescape(line, (size_t)(tab - line));
            want = unescape(tab + 1, (size_t)(line + line_len - tab - 1));
            named = names_group(value.bytes, value.len, out, sizeof(out));
            if (named != (want.bytes != NULL) || (named && strcmp(out, want.bytes)))
                fail_msg("group '%.*s': got %s, expected %s", (int)(tab - line), line,
                         named ? out : "none", want.bytes ? want.bytes : "none");
            free(value.bytes);
            free(want.bytes);
            cases++;
        }
        if (!eol)
            break;
        line = eol + 1;
    }
    assert_true(cases >= 15);
    free(text);
    long_value = repeat("x", NAMES_MAX_LEN + 1);
    assert_true(names_group(long_value, NAMES_MAX_LEN, out, sizeof(out)));
    assert_int_equal(strlen(out), NAMES_MAX_LEN);
    assert_false(names_group(long_value, NAMES_MAX_LEN + 1, out, sizeof(out)));
    assert_false(names_group(long_value, 8, out, 8)); /* no room for the NUL */
    assert_false(names_group(NULL, 0, out, sizeof(out)));
    free(long_value);
}

static void test_long_name_cut_at_character(void **state)
{
    /* 300 bytes of 3-byte characters: 244 bytes of room would split one. */
    char *name = repeat("\xe2\x82\xac", 100);
    char *expected_base = repeat("\xe2\x82\xac", 81);
    char expected[300];
    struct names_entry e = {"bji-1", 5, name, strlen(name), NULL};

    (void)state;
    snprintf(expected, sizeof(expected), "%s~bji-1.json", expected_base);
    assert_int_equal(names_assign(&e, 1, ".json"), 0);
    assert_string_equal(e.file_name, expected);
    assert_int_equal(strlen(e.file_name), 254);
    assert_well_formed(e.file_name);
    free(e.file_name);
    free(name);
    free(expected_base);
}

static void test_long_name_fits_exactly(void **state)
{
    char *name = repeat("a", NAMES_MAX_LEN - 5);
    char *longer = repeat("a", NAMES_MAX_LEN - 4);
    struct names_entry e[2] = {
        {"id1", 3, name, strlen(name), NULL},
        {"id2", 3, longer, strlen(longer), NULL},
    };

    (void)state;
    assert_int_equal(names_assign(e, 2, ".json"), 0);
    /* 250 + ".json" is exactly 255 bytes: kept whole. */
    assert_int_equal(strlen(e[0].file_name), NAMES_MAX_LEN);
    assert_memory_equal(e[0].file_name, name, strlen(name));
    /* One more byte and it is shortened and tagged with the id. */
    assert_int_equal(strlen(e[1].file_name), NAMES_MAX_LEN);
    assert_non_null(strstr(e[1].file_name, "~id2.json"));
    free(e[0].file_name);
    free(e[1].file_name);
    free(name);
    free(longer);
}

static void test_long_id_uses_hash(void **state)
{
    char *id = repeat("x", 200);
    char *name = repeat("n", 300);
    struct names_entry e[3] = {
        {id, strlen(id), name, strlen(name), NULL},
        {"short", 5, "dup", 3, NULL},
        {id, 150, "dup", 3, NULL}, /* 150 x's: still too long to show */
    };
    char expected[300];
    char *base = repeat("n", NAMES_MAX_LEN - 1 - 16 - 5);

    (void)state;
    assert_int_equal(names_assign(e, 3, ".json"), 0);
    snprintf(expected, sizeof(expected), "%s~6ee14c8caecd5c45.json", base);
    assert_string_equal(e[0].file_name, expected);
    assert_string_equal(e[1].file_name, "dup~short.json");
    assert_int_equal(strlen(e[2].file_name), strlen("dup~") + 16 + 5);
    assert_memory_equal(e[2].file_name, "dup~", 4);
    for (int i = 0; i < 3; i++) {
        assert_well_formed(e[i].file_name);
        free(e[i].file_name);
    }
    free(id);
    free(name);
    free(base);
}

/* Two long names with the same 300-byte prefix stay apart through the id. */
static void test_long_names_equal_prefix(void **state)
{
    char *a = repeat("\xc3\xa9", 160);
    char *b = repeat("\xc3\xa9", 170);
    struct names_entry e[2] = {
        {"bji-a", 5, a, strlen(a), NULL},
        {"bji-b", 5, b, strlen(b), NULL},
    };

    (void)state;
    assert_int_equal(names_assign(e, 2, ".json"), 0);
    assert_string_not_equal(e[0].file_name, e[1].file_name);
    for (int i = 0; i < 2; i++) {
        assert_well_formed(e[i].file_name);
        free(e[i].file_name);
    }
    free(a);
    free(b);
}

/* A small deterministic generator, so failures can be replayed. */
static uint64_t rng_state = 42;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

struct owned_entry {
    char id[32];
    char name[64];
};

/* Names drawn from a small pool, including ones shaped like renamed forms. */
static void make_entries(struct owned_entry *own, struct names_entry *e, size_t n,
                         size_t pool)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rng();

        snprintf(own[i].id, sizeof(own[i].id), "bji-%zu", i);
        switch (r % 4) {
        case 0:
            snprintf(own[i].name, sizeof(own[i].name), "file-%llu.pdf~bji-%llu",
                     (unsigned long long)(r >> 8) % pool,
                     (unsigned long long)(r >> 20) % n);
            break;
        case 1:
            own[i].name[0] = '\0';
            break;
        default:
            snprintf(own[i].name, sizeof(own[i].name), "file-%llu.pdf",
                     (unsigned long long)(r >> 8) % pool);
        }
        e[i].item_id = own[i].id;
        e[i].item_id_len = strlen(own[i].id);
        e[i].item_name = own[i].name;
        e[i].item_name_len = strlen(own[i].name);
        e[i].file_name = NULL;
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void assert_unique(struct names_entry *e, size_t n)
{
    char **sorted = malloc(n * sizeof(*sorted));

    assert_non_null(sorted);
    for (size_t i = 0; i < n; i++) {
        assert_well_formed(e[i].file_name);
        sorted[i] = e[i].file_name;
    }
    qsort(sorted, n, sizeof(*sorted), cmp_str);
    for (size_t i = 1; i < n; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            fail_msg("duplicate name '%s'", sorted[i]);
    free(sorted);
}

static void test_order_independent(void **state)
{
    enum { N = 400 };
    struct owned_entry *own = calloc(N, sizeof(*own));
    struct names_entry *e = calloc(N, sizeof(*e)), *s = calloc(N, sizeof(*s));
    size_t *perm = calloc(N, sizeof(*perm));

    (void)state;
    assert_true(own && e && s && perm);
    make_entries(own, e, N, 40);
    assert_int_equal(names_assign(e, N, ".json"), 0);
    assert_unique(e, N);
    for (int round = 0; round < 20; round++) {
        for (size_t i = 0; i < N; i++)
            perm[i] = i;
        for (size_t i = N - 1; i > 0; i--) {
            size_t j = rng() % (i + 1), t = perm[i];

            perm[i] = perm[j];
            perm[j] = t;
        }
        for (size_t i = 0; i < N; i++)
            s[i] = e[perm[i]];
        for (size_t i = 0; i < N; i++)
            s[i].file_name = NULL;
        assert_int_equal(names_assign(s, N, ".json"), 0);
        for (size_t i = 0; i < N; i++) {
            assert_string_equal(s[i].file_name, e[perm[i]].file_name);
            free(s[i].file_name);
        }
    }
    for (size_t i = 0; i < N; i++)
        free(e[i].file_name);
    free(own);
    free(e);
    free(s);
    free(perm);
}

/*
 * Built entry by entry, with room announced before the first entry, after
 * some, or never, a folder gets the names names_assign gives it; and the
 * object refuses what comes out of order.
 */
static void test_incremental(void **state)
{
    enum { N = 500 };
    struct owned_entry *own = calloc(N, sizeof(*own));
    struct names_entry *e = calloc(N, sizeof(*e));
    static const size_t announce_after[] = {0, 10, N, SIZE_MAX};
    int rc;

    (void)state;
    assert_true(own && e);
    make_entries(own, e, N, 30);
    assert_int_equal(names_assign(e, N, ".json"), 0);
    for (size_t a = 0; a < sizeof(announce_after) / sizeof(announce_after[0]); a++) {
        struct names *n = names_new(".json", &rc);

        assert_non_null(n);
        for (size_t i = 0; i < N; i++) {
            if (i == announce_after[a])
                assert_int_equal(names_expect(n, N), 0);
            assert_int_equal(names_add(n, e[i].item_id, e[i].item_id_len, e[i].item_name,
                                       e[i].item_name_len),
                             0);
        }
        assert_null(names_file_name(n, 0, NULL));
        assert_int_equal(names_finish(n), 0);
        for (size_t i = 0; i < N; i++) {
            size_t len;
            const char *name = names_file_name(n, i, &len);

            assert_non_null(name);
            assert_string_equal(name, e[i].file_name);
            assert_int_equal(len, strlen(e[i].file_name));
        }
        assert_null(names_file_name(n, N, NULL));
        assert_int_equal(names_add(n, "late", 4, "x", 1), -EINVAL);
        assert_int_equal(names_finish(n), -EINVAL);
        assert_int_equal(names_expect(n, 2 * N), 0);
        names_free(n);
    }
    assert_null(names_new("a/b", &rc));
    assert_int_equal(rc, -EINVAL);
    for (size_t i = 0; i < N; i++)
        free(e[i].file_name);
    free(own);
    free(e);
}

/* Once settled, a folder gives back each entry's id as it was added, NULs
 * and all, so that its caller keeps no copy; not before. */
static void test_item_ids_kept(void **state)
{
    static const char odd[] = {'i', '\0', 'd', '/', '\n'};
    int err;
    struct names *n = names_new(".json", &err);

    (void)state;
    assert_non_null(n);
    assert_int_equal(names_add(n, "itm-1", 5, "a.pdf", 5), 0);
    assert_int_equal(names_add(n, odd, sizeof(odd), "a.pdf", 5), 0);
    assert_int_equal(names_add(n, "", 0, NULL, 0), 0);
    assert_null(names_item_id(n, 0));
    assert_int_equal(names_finish(n), 0);
    assert_memory_equal(names_item_id(n, 0), "itm-1", 5);
    assert_memory_equal(names_item_id(n, 1), odd, sizeof(odd));
    assert_non_null(names_item_id(n, 2));
    assert_null(names_item_id(n, 3));
    names_free(n);
}

/* A loader that notes the order of its loads. */
struct order_loader {
    struct id_loader ids;
    size_t order[8];
};

static int load_id_in_order(void *arg, size_t index, struct buf *out)
{
    struct order_loader *l = arg;

    if (l->ids.loads < 8)
        l->order[l->ids.loads] = index;
    return load_id(&l->ids, index, out);
}

/* Ids loaded on demand: only the colliding entries' are loaded, in the
 * order of the entries (a loader reading pages reads each once); names
 * that show their id at once (empty, too long) need no load; and a folder
 * holds its ids' bytes less while it is named. */
static void test_ids_on_demand(void **state)
{
    enum { N = 10000 };
    struct owned_entry *own = calloc(N, sizeof(*own));
    struct names_entry *e = calloc(N, sizeof(*e));
    struct order_loader loader = {{e, N, 0, 0}, {0}};
    char long_name[300];
    struct names *eager, *lazy;
    size_t eager_bytes, lazy_bytes;
    int rc;

    (void)state;
    assert_true(own && e);
    memset(long_name, 'x', sizeof(long_name));
    for (size_t i = 0; i < N; i++) {
        snprintf(own[i].id, sizeof(own[i].id), "itm-%026zu", i);
        snprintf(own[i].name, sizeof(own[i].name), "doc-%06zu.pdf", i);
        e[i].item_id = own[i].id;
        e[i].item_id_len = strlen(own[i].id);
        e[i].item_name = own[i].name;
        e[i].item_name_len = strlen(own[i].name);
    }
    /* Three share a name (added last first), one has none, one a long one. */
    strcpy(own[9000].name, "same");
    strcpy(own[500].name, "same");
    strcpy(own[10].name, "same");
    e[9000].item_name_len = e[500].item_name_len = e[10].item_name_len = 4;
    e[20].item_name_len = 0;
    e[30].item_name = long_name;
    e[30].item_name_len = sizeof(long_name);
    assert_int_equal(names_assign(e, N, ".json"), 0);
    assert_string_equal(e[500].file_name, "same~itm-00000000000000000000000500.json");
    check_on_demand(e, N, ".json", 3);

    eager = names_new(".json", &rc);
    lazy = names_new(".json", &rc);
    assert_true(eager && lazy);
    assert_int_equal(names_ids_on_demand(lazy, load_id_in_order, &loader), 0);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(names_add(eager, e[i].item_id, e[i].item_id_len, e[i].item_name,
                                   e[i].item_name_len),
                         0);
        assert_int_equal(names_add(lazy, e[i].item_id, e[i].item_id_len, e[i].item_name,
                                   e[i].item_name_len),
                         0);
    }
    eager_bytes = names_footprint(eager);
    lazy_bytes = names_footprint(lazy);
    assert_true(lazy_bytes + 25 * (size_t)N <= eager_bytes);
    assert_int_equal(names_finish(lazy), 0);
    assert_int_equal(loader.ids.loads, 3);
    assert_int_equal(loader.order[0], 10);
    assert_int_equal(loader.order[1], 500);
    assert_int_equal(loader.order[2], 9000);
    for (size_t i = 0; i < N; i++)
        assert_string_equal(names_file_name(lazy, i, NULL), e[i].file_name);
    names_free(eager);
    names_free(lazy);
    for (size_t i = 0; i < N; i++)
        free(e[i].file_name);
    free(own);
    free(e);
}

/* A folder whose settling failed gives out no name and takes no more. */
static void test_failed_finish(void **state)
{
    int rc;
    struct names *n = names_new(".json", &rc);

    (void)state;
    assert_non_null(n);
    assert_int_equal(names_add(n, "same", 4, "a", 1), 0);
    assert_int_equal(names_add(n, "same", 4, "a", 1), 0);
    assert_int_equal(names_finish(n), -EINVAL);
    assert_null(names_file_name(n, 0, NULL));
    assert_int_equal(names_add(n, "other", 5, "b", 1), -EINVAL);
    assert_int_equal(names_finish(n), -EINVAL);
    assert_null(names_file_name(n, 0, NULL));
    names_free(n);
}

/* Many entries repeating one id and one name are refused without numbering
 * them one by one first (quadratic: this would run into the time limit). */
static void test_many_repeated_ids(void **state)
{
    enum { N = 50000 };
    int rc;
    struct names *n = names_new(".json", &rc);

    (void)state;
    assert_non_null(n);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(names_add(n, "same", 4, "a", 1), 0);
    assert_int_equal(names_finish(n), -EINVAL);
    names_free(n);
}

/* A folder of 100,000 items with many shared names. Speed is measured by
 * scripts/bench.py, not here; a quadratic pass would still run into the
 * test's time limit. */
static void test_many_entries(void **state)
{
    enum { N = 100000 };
    struct owned_entry *own = calloc(N, sizeof(*own));
    struct names_entry *e = calloc(N, sizeof(*e));

    (void)state;
    assert_true(own && e);
    make_entries(own, e, N, 5000);
    assert_int_equal(names_assign(e, N, ".json"), 0);
    assert_unique(e, N);
    check_on_demand(e, N, ".json", N);
    for (size_t i = 0; i < N; i++)
        free(e[i].file_name);
    free(own);
    free(e);
}

/* Every entry has the same name: one group of 100,000. */
static void test_one_huge_group(void **state)
{
    enum { N = 100000 };
    struct owned_entry *own = calloc(N, sizeof(*own));
    struct names_entry *e = calloc(N, sizeof(*e));

    (void)state;
    assert_true(own && e);
    for (size_t i = 0; i < N; i++) {
        snprintf(own[i].id, sizeof(own[i].id), "id%zu", i);
        e[i].item_id = own[i].id;
        e[i].item_id_len = strlen(own[i].id);
        e[i].item_name = "same";
        e[i].item_name_len = 4;
    }
    assert_int_equal(names_assign(e, N, ".json"), 0);
    assert_string_equal(e[0].file_name, "same~id0.json");
    assert_string_equal(e[N - 1].file_name, "same~id99999.json");
    assert_unique(e, N);
    check_on_demand(e, N, ".json", N);
    for (size_t i = 0; i < N; i++)
        free(e[i].file_name);
    free(own);
    free(e);
}

/*
 * Random hostile folders against digests of the names the rules give them.
 * The digests were taken once from an implementation of the rules and are
 * constants here, so that a change to how names.c settles a folder cannot
 * change any name without failing this test.
 */

/* FNV-1a, 64 bits, the test's own copy (the digests must not depend on the
 * code under test). */
static uint64_t digest_bytes(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;

    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

#define DIGEST_BASIS 0xcbf29ce484222325ULL

/* A generator of its own per folder, so that each folder is replayable. */
static uint64_t folder_rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* One random folder's entries; bytes live in `pool`. */
struct random_folder {
    struct names_entry *e;
    size_t count;
    const char *suffix;
    char *pool;
    size_t pool_len, pool_cap;
};

static const char *folder_add_bytes(struct random_folder *f, const void *bytes,
                                    size_t len)
{
    char *at;

    assert_true(f->pool_len + len + 1 <= f->pool_cap);
    at = f->pool + f->pool_len;
    memcpy(at, bytes, len);
    at[len] = '\0';
    f->pool_len += len + 1;
    return at;
}

/* The two 16-byte prefixes whose FNV-1a states collide (see cases.txt). */
static const char collide_a[] = "c5bde799c2362419";
static const char collide_b[] = "a1a9a9bf38687075";

static void hex16(uint64_t h, char out[17])
{
    for (int i = 15; i >= 0; i--) {
        out[i] = "0123456789abcdef"[h & 0xF];
        h >>= 4;
    }
    out[16] = '\0';
}

/* An id: ordinary, odd bytes, empty, too long to show, colliding hashes,
 * or sanitising like another. */
static size_t random_id(uint64_t *s, char *out, size_t i)
{
    uint64_t r = folder_rng(s);
    size_t len;

    switch (r % 10) {
    case 0: /* any bytes, NULs and slashes included */
        len = (size_t)(r >> 8) % 12;
        for (size_t k = 0; k < len; k++) {
            uint64_t b = folder_rng(s);

            out[k] = (b & 3) == 0 ? '/' : (b & 7) == 1 ? '\0' : (char)(b >> 8);
        }
        return len;
    case 1:
        return (r >> 8) % 8 == 0
                   ? 0
                   : (size_t)snprintf(out, 32, "a/%zu", (size_t)(r >> 12) % 8);
    case 2:
        return (size_t)snprintf(out, 32, "a_%zu", (size_t)(r >> 12) % 8);
    case 3: /* over NAMES_MAX_ID_LEN, sometimes with a colliding hash */
        len = NAMES_MAX_ID_LEN + 1 + (size_t)(r >> 8) % 40;
        memcpy(out, (r >> 16) & 1 ? collide_a : collide_b, 16);
        memset(out + 16, 'a' + (int)((r >> 20) % 3), len - 16);
        return len;
    case 4: /* exactly NAMES_MAX_ID_LEN: still shown */
        len = NAMES_MAX_ID_LEN - (size_t)(r >> 8) % 2;
        memset(out, 'q', len);
        snprintf(out, 16, "%zu", i);
        out[strlen(out)] = 'q';
        return len;
    default:
        return (size_t)snprintf(out, 32, "bji-%zu", (size_t)(r >> 8) % (3 * i + 3));
    }
}

/* A name: shared, empty or missing, ".", "..", hostile bytes, long, or the
 * renamed form of another entry's name. */
static const char *random_name(struct random_folder *f, uint64_t *s, size_t i,
                               size_t *len)
{
    static const char *const common[] = {"x",   "report.pdf",  "a",       ".",
                                         "..",  "a/b",         "a_b",     "~",
                                         "x~1", "caf\xc3\xa9", "bad\xff", "nl\n"};
    char buf[700], hex[17];
    uint64_t r = folder_rng(s);
    size_t n = 0;

    switch (r % 12) {
    case 0:
        *len = 0;
        return (r >> 8) & 1 ? NULL : "";
    case 1: /* any bytes */
        n = (size_t)(r >> 8) % 10;
        for (size_t k = 0; k < n; k++)
            buf[k] = (char)folder_rng(s);
        break;
    case 2: { /* long, of 1- to 4-byte characters, near the limit */
        static const char *const units[] = {"x", "\xc3\xa9", "\xe2\x82\xac",
                                            "\xf0\x9f\x98\x80"};
        const char *u = units[(r >> 8) % 4];
        size_t ul = strlen(u), want = 240 + (size_t)(r >> 12) % 80;

        while (n + ul <= want) {
            memcpy(buf + n, u, ul);
            n += ul;
        }
        if ((r >> 20) & 1) /* a tail that differs */
            buf[n++] = (char)('0' + (r >> 24) % 3);
        break;
    }
    case 3:
    case 4:
        if (i > 0) { /* another entry's renamed form */
            const struct names_entry *o = &f->e[(size_t)(r >> 8) % i];
            const char *base = common[(r >> 16) % 3];
            size_t bl = strlen(base);

            memcpy(buf, base, bl);
            buf[bl] = '~';
            n = bl + 1;
            if ((r >> 24) % 3 == 0 || o->item_id_len > NAMES_MAX_ID_LEN ||
                !o->item_id_len) {
                hex16(digest_bytes(DIGEST_BASIS, o->item_id, o->item_id_len), hex);
                memcpy(buf + n, hex, 16);
                n += 16;
                if ((r >> 28) & 1)
                    n += (size_t)snprintf(buf + n, 8, "-%d", (int)((r >> 32) % 3) + 1);
            } else {
                names_sanitise(o->item_id, o->item_id_len, buf + n);
                n += o->item_id_len;
            }
            if ((r >> 40) % 4 == 0) {
                memcpy(buf + n, f->suffix, strlen(f->suffix));
                n += strlen(f->suffix);
            }
            break;
        }
        /* fall through */
    default: {
        const char *c = common[(r >> 8) % (sizeof(common) / sizeof(common[0]))];

        n = strlen(c);
        memcpy(buf, c, n);
    }
    }
    *len = n;
    return folder_add_bytes(f, buf, n);
}

static void random_folder_make(struct random_folder *f, uint64_t seed)
{
    static const char *const suffixes[] = {".json", ".json", ".json",
                                           ".md",   "~",     "\xe2\x82\xac"};
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    uint64_t r = folder_rng(&s);
    size_t want =
        r % 8 == 0 ? 1000 + (size_t)(r >> 8) % 2000 : 1 + (size_t)(r >> 8) % 200;

    f->suffix = suffixes[(r >> 32) % 6];
    f->e = calloc(want, sizeof(*f->e));
    f->pool_cap = want * 1200;
    f->pool = malloc(f->pool_cap);
    f->pool_len = 0;
    f->count = 0;
    assert_true(f->e && f->pool);
    for (size_t i = 0; i < want; i++) {
        char id[256];
        size_t id_len = random_id(&s, id, i);
        bool repeated = false;
        struct names_entry *e = &f->e[f->count];

        /* Callers drop repeated ids. */
        for (size_t j = 0; j < f->count && !repeated; j++)
            repeated =
                f->e[j].item_id_len == id_len && !memcmp(f->e[j].item_id, id, id_len);
        if (repeated)
            continue;
        e->item_id = folder_add_bytes(f, id, id_len);
        e->item_id_len = id_len;
        e->item_name = random_name(f, &s, f->count, &e->item_name_len);
        f->count++;
    }
}

static void random_folder_free(struct random_folder *f)
{
    for (size_t i = 0; i < f->count; i++)
        free(f->e[i].file_name);
    free(f->e);
    free(f->pool);
}

/* FNV-1a of the names in entry order, each with its NUL. */
static uint64_t random_folder_digest(const struct random_folder *f)
{
    uint64_t h = DIGEST_BASIS;

    for (size_t i = 0; i < f->count; i++)
        h = digest_bytes(h, f->e[i].file_name, strlen(f->e[i].file_name) + 1);
    return h;
}

#define RANDOM_FOLDERS 400

/* random_folder_digest of folder `seed`, 0 to RANDOM_FOLDERS - 1. */
static const uint64_t random_folder_digests[RANDOM_FOLDERS] = {
    0x69802452c7081a84ULL, 0x2abb6cc42e6746d5ULL, 0x250955dcb4df9f6dULL,
    0xb1bf5e0b80c1eb1cULL, 0xd6a1a5fe5cc12768ULL, 0xdd2af2ac2b555423ULL,
    0x3236efe9a2b7c375ULL, 0xcc13fa8c131354cdULL, 0x651532925631e914ULL,
    0x8fef0b90a730fa26ULL, 0xc868f638dd324298ULL, 0x4699a4c78d054bf1ULL,
    0x7746aeea8427b640ULL, 0x00ffcb1e891c9754ULL, 0x90948fcd4896cfd5ULL,
    0x46344e0839c7f7fcULL, 0x5d984ed6529c30f9ULL, 0x948e13600decfef7ULL,
    0x1905e1cb43bdab85ULL, 0xe42c889ef8ebed17ULL, 0x89df53b22dfc08caULL,
    0x6dc29872a35bb034ULL, 0xc3fea9a2e3189bf5ULL, 0x0843532cd71ff382ULL,
    0x698e26f3e3a8c48bULL, 0xd483bffda62e296dULL, 0x29acdf4fb4996514ULL,
    0x7a3a7d7fb3d3dc8aULL, 0x3478d311476f0678ULL, 0x967e7770e156f2e4ULL,
    0xc386651205ffda6fULL, 0x338f6303f98bd727ULL, 0x27af25da2fd8dce3ULL,
    0x1341aa4cb696262bULL, 0xfcdb5dec41271710ULL, 0xe675f0d8ed8b72c5ULL,
    0x90c62de6693bf1c3ULL, 0x6db1539b8a1fb0e1ULL, 0x767129319e188e7dULL,
    0xfd58ebe89ad1f220ULL, 0xfa71cb754e757dacULL, 0xeb3dc3d3185a9433ULL,
    0x058e086e5607cdc5ULL, 0xca9f23c27a217b8cULL, 0xa1686221e151bdcbULL,
    0xc4097aad0fc3f320ULL, 0xd8b493d558dab12bULL, 0xc09613b67c862ed6ULL,
    0x72c0492f67037ef0ULL, 0xdc72a3a6a6f1df4bULL, 0xfdef8cf57c7aeccaULL,
    0x30fd80f36422dd85ULL, 0xe98141b25172f4e4ULL, 0xfe3db300b27b935fULL,
    0x52a0fa0bba6c8f80ULL, 0x422e4cb06a05d485ULL, 0x03d78b92103c3ddcULL,
    0x6a646d94cf6ccf2cULL, 0xcde2b083ded575c5ULL, 0x1882aea6b43284f1ULL,
    0x00d927b1b89d9a04ULL, 0x71250777f0cabb8eULL, 0x63122d73bcbfe6aeULL,
    0xb88c80db3d83a85fULL, 0x22e328c63935557fULL, 0x3e271a045d8a3d03ULL,
    0xfff037477507678dULL, 0xc57929dee176f16eULL, 0x948e17dc783e0656ULL,
    0xed19468ea05b5881ULL, 0xcde409da8c637869ULL, 0x9da53bf93c4541f3ULL,
    0x7400f5716abac884ULL, 0xe92b38588455ebeaULL, 0x951eaaaa9dacfbf8ULL,
    0x2c27570d13c2dbe2ULL, 0x848f127b3c8b381bULL, 0x85ef0bb4431ed15aULL,
    0xfb4584c728f0652aULL, 0xe3d6e17bd93e28efULL, 0x171897d5c414470bULL,
    0x43ad024168ed8db5ULL, 0xff5ca2c3df917ef6ULL, 0x4e2a02900704ee1dULL,
    0x9a6689284d5f1319ULL, 0x9fa5bc3e0b1f7698ULL, 0x94cd55d4fba77f40ULL,
    0xbd0467221351ecd7ULL, 0xe9f5f558d98017ffULL, 0x067f704c68ec05f0ULL,
    0xb475359c9a1181ceULL, 0xed7a068f514a8512ULL, 0xf21dd1262c4c7268ULL,
    0xd475ba2329facee0ULL, 0xfaefb1f735e9b1d9ULL, 0xc23558f48cd57ea5ULL,
    0xeb83557b7c76deb5ULL, 0xae393c2c1954e5b2ULL, 0xd9ec1b234e7bc546ULL,
    0x4232561375861215ULL, 0x74fe3163a2a36244ULL, 0xd3f37e3a75ca3862ULL,
    0xb25d37fcdad4886dULL, 0x0268ac10f52e716fULL, 0xb90ffeb5893c7936ULL,
    0xa01201f728be518eULL, 0xcf12b6e2b1fa9d7bULL, 0x909951fec34cddadULL,
    0xa5623b22f6b29f2bULL, 0xac0cdd704782e7daULL, 0x7d3e1d5f8deea832ULL,
    0x7d44dc486bf07799ULL, 0x6d81ca27542afa3eULL, 0x4e66c9ca39c86ee9ULL,
    0x2b8c2f48628024bdULL, 0xbad8e4279d84f29eULL, 0xf06ffee7aba53eb4ULL,
    0x0aea6959d7240ae3ULL, 0xe180e2df6be6f441ULL, 0x8a2b84da25c58c6bULL,
    0x2933f2faafc8e8acULL, 0x4483391b33092359ULL, 0xc8dab57dd8b3609cULL,
    0xe0ea94322c3db501ULL, 0xdf40ff9be7af6909ULL, 0xb06f64556c0b644cULL,
    0xe4a75afc8677373fULL, 0xf7135bd0858d8d5dULL, 0xed37f4239ce02c85ULL,
    0x355483e9996d4f31ULL, 0x3385c373d80d1815ULL, 0x693bf1f1ba93b15dULL,
    0x7023296222deee74ULL, 0xb71bcca51eb4bee5ULL, 0x9721a0aefebe6558ULL,
    0xc19e5697c616f69dULL, 0x0e0499a50db16608ULL, 0xa217037f1433c804ULL,
    0x86dc28334669fd8bULL, 0x07ff99df168e26e2ULL, 0x37443e85f276195cULL,
    0x0817f1445bf4c02aULL, 0x548cb56cb9dda4baULL, 0x671d9f11753774cfULL,
    0x021d6fafe257056eULL, 0xd5a190055dfe107cULL, 0x145ffa5dd6dfd166ULL,
    0xfc4d7206e21ab2adULL, 0xa295719c5f577b5fULL, 0xbaeb1e7a73d9a3e3ULL,
    0x33dfd26317e34d03ULL, 0x5fbbc80de3f36280ULL, 0x7e585e3e2368aa77ULL,
    0x46c9b4b348ad5291ULL, 0x87940d33231bc096ULL, 0xf2e1d09f094ff381ULL,
    0xeaeb1c41ade36873ULL, 0x8ec7d8cab59c00bfULL, 0x9df85adbc42ac320ULL,
    0x28099db045211897ULL, 0x44f9abcc4b520841ULL, 0x6c9328a6bd191db0ULL,
    0x2c6e573ba761454dULL, 0xf930f9c6d0cacc0cULL, 0x226a8282825ef1feULL,
    0x19c187ce81eda55aULL, 0x28fe766f1c099df0ULL, 0xea91feabd66159e9ULL,
    0xba6c811aeabe7412ULL, 0x43b1fc35c60ada85ULL, 0x4c63076a0369f466ULL,
    0x3c8a1b3067af5e08ULL, 0x0bde423160588749ULL, 0xd877333ef9d06ce3ULL,
    0xc5424ba8d959419eULL, 0x14403f31a5fc8f92ULL, 0x6995309730de4ad0ULL,
    0x2cf04fc2ea032681ULL, 0xa73cb8eed9117165ULL, 0xac54f094bbd87d83ULL,
    0x3ec69cd29ece8b69ULL, 0xc75f3500d906a65cULL, 0xd704914816456c27ULL,
    0x93238e9caff6988cULL, 0x86e4d1133cde1dacULL, 0x1e8771544791f13dULL,
    0x3bac84279f82ceb6ULL, 0x2e45aa0ad726db23ULL, 0x538d7812b5a85b00ULL,
    0x1023e3b06f683ffaULL, 0xf4746c07697aeeb7ULL, 0x3e3e0d4e738be999ULL,
    0xcf13b61963a0395bULL, 0xc104269c83efbb94ULL, 0x52b9ccc3abfa6d74ULL,
    0x51aa29be5bde403eULL, 0xa664146deb61589aULL, 0x19fc777338a0ad3bULL,
    0x3fd171076b6d9bd1ULL, 0x12ded1e0d6c46d9eULL, 0x27f6e6f50eeb6816ULL,
    0x9354f9fa7b2ff795ULL, 0x4aeeab0f10c6191bULL, 0xda70ad33756d9281ULL,
    0x19df28265ea18293ULL, 0x6e002b1de8c2ace4ULL, 0x4c541aa26090a147ULL,
    0xca2bb3d02a81ee38ULL, 0x99c5d9504999dd9eULL, 0xbe439277fbe23603ULL,
    0x91279aca5ae5b09aULL, 0x0ad39edf1cc8251bULL, 0xea393abc74b9c7bdULL,
    0xd66340fcdc0d9a56ULL, 0xffec1d43839f088fULL, 0xc997a176fe6d8fd9ULL,
    0x4ba06ca61b72f48cULL, 0x13306af2782d6658ULL, 0x975ae1afdc69b744ULL,
    0x3c57e713836b8523ULL, 0x849197ee066f7806ULL, 0x4696f076d1c7bf14ULL,
    0x3ea15597b7a7d7f3ULL, 0xf11c68af06096477ULL, 0xbc32f0448aad28a6ULL,
    0x92af10056ae3cd0dULL, 0xb9c28f46eb83ffe7ULL, 0x4aafb815b90bab1eULL,
    0x88266fab7c6b0e0aULL, 0xe3e3906d343f9863ULL, 0x12231e9f86216c15ULL,
    0x388a841aaccafa90ULL, 0x3dafe4f655502756ULL, 0xd4f298a14f1b7f0cULL,
    0xc9267f86a4ffbbedULL, 0xdee3bc9ad3007cb0ULL, 0x92148dab0bd731c6ULL,
    0xb824c67507009d81ULL, 0xf5209bdd566e15e8ULL, 0x13d4974544d96f64ULL,
    0x2aaaa539b48ddad7ULL, 0x0b15e02ee4605798ULL, 0xe858e5871ce1e68dULL,
    0x7d1c20497018e9faULL, 0x62a2d8c655b800dfULL, 0xa76a92c55ac57ab2ULL,
    0xeb1af5989d42603eULL, 0xa08cce26d67be0dfULL, 0x287101c71a72b74cULL,
    0xd3e2d9a1c72e5744ULL, 0x6c92e3073b19d94cULL, 0x8207a02bc001dde8ULL,
    0x14b0555a6bcc40d4ULL, 0x15881f624b8ef457ULL, 0xf7ab4242b4a606f1ULL,
    0x955e30f1eeb358d1ULL, 0x8b5de218e8ca888cULL, 0x28d71e0f92ca9724ULL,
    0x1fa91e3ff1a382dbULL, 0x4c44ab60103cfee5ULL, 0xfe3ce75d6c33a44cULL,
    0xfd626a7b748517ccULL, 0xb11e62f57490f0cfULL, 0x7f26c89d0f1ca68dULL,
    0x59289d12c9ed4584ULL, 0xa19e293eed6daedbULL, 0x5c2ef2af56b9c9f8ULL,
    0xe1d5e37fa0d4262bULL, 0x7c371074c9b2cd45ULL, 0xc7be72668751eb6bULL,
    0xb1007356264ec5f0ULL, 0x519a2b1b7c893efcULL, 0xcc7e518e0ad38d23ULL,
    0x6b1cfb4571615354ULL, 0xd250baaa9bb832a0ULL, 0x7dc2c6e9de6fee8eULL,
    0xe9f08fbba23510d1ULL, 0x38db090d5a72f84aULL, 0xe0d05674b0564512ULL,
    0xae528eed7987ca1eULL, 0xc0cda87b1033edf7ULL, 0xd438ebea8c15a35fULL,
    0x0f07a9399c965256ULL, 0x3991f3874b894486ULL, 0x21ea797d18302157ULL,
    0x888e87dd26590e6eULL, 0x8702457cd3313b43ULL, 0xc27faf534fed5550ULL,
    0xf87c8817ecd5f127ULL, 0x562cb9bf200870deULL, 0x5242b170b27a868aULL,
    0xf1e16dedfb3217b4ULL, 0xa7b482648178e3b8ULL, 0x8728543a9af346a3ULL,
    0xd224b164d676b55bULL, 0xc8b48388a93669e0ULL, 0x78f2f18632bcc3f0ULL,
    0xca62c8b110ca6101ULL, 0x66867e23e2f5deeaULL, 0xfaf56dcd914faa82ULL,
    0xf220e997e2de03b2ULL, 0xdfda9ca2379baa7aULL, 0xdac5552c4a3577efULL,
    0x314679053f3f1e2cULL, 0x1eeee996c2bfa665ULL, 0xbd8c4c85dabe85ceULL,
    0xf0848fbe5ebc0cddULL, 0x9629c8b7584d5234ULL, 0xb1d51fe622c1861cULL,
    0x1b2678afd6a663f2ULL, 0x23cf5c7a12a7c93fULL, 0x18c593f0ee1b8140ULL,
    0xe0953873d1491dd7ULL, 0x1edbb74be2efc1cfULL, 0xfbb13c36bf02ca55ULL,
    0xbab9132d96acb0c7ULL, 0xf692a036d1f3dd66ULL, 0xfa1854fdf006a334ULL,
    0x6ed72f5cf5b7ebf8ULL, 0x921f4d1727262777ULL, 0x6489e602b37a3f5cULL,
    0x49d8882dbecbf793ULL, 0x773bd9ba32670287ULL, 0xb2334441982671faULL,
    0xff0adce595b74fafULL, 0x0fd8ad73c2c7e35dULL, 0x5c83495910776952ULL,
    0x1f38a295e082bddfULL, 0x69058f314ad50b20ULL, 0x3f1e542b89dce579ULL,
    0x88634756128e5b68ULL, 0xe166fd03c4bd5830ULL, 0x6efbacf878afaa99ULL,
    0x33ab06f4b7380cdcULL, 0xc967c47c25b429abULL, 0xc3b431063bc8b444ULL,
    0x10389f36a862e0afULL, 0xd6ede620961ac934ULL, 0x3363259e33775c6aULL,
    0x2b388321dda3d82bULL, 0x776d9663c02c1709ULL, 0x41f31a1c38d73c4aULL,
    0x1a46cdbf9781aa55ULL, 0xb37082c8bc061f23ULL, 0xa780b836cd1e84d2ULL,
    0xd8b6316931485239ULL, 0xf7ca93105fb9b8baULL, 0xad677963c623e2a2ULL,
    0x9f8d48f5ebb0e9b9ULL, 0xb6ea9a0eddbbd628ULL, 0xd4920a7110cb69fdULL,
    0xbccd4dc8a11cf615ULL, 0x16298678f1b8c56aULL, 0x91e3eff88a5bc570ULL,
    0x18ccf7379eaa8ca9ULL, 0x73064a72745423cbULL, 0x1a06a82583b62490ULL,
    0x9b6249064ee05d79ULL, 0x64f858fe785ca23dULL, 0x4c50e2e6258ea28aULL,
    0xc39e7d9c29f125f1ULL, 0x49e8cdce23883d41ULL, 0xb3cf8e83e7d678d3ULL,
    0x39bd99dfbfeb5ddcULL, 0xc89930af64a63ea8ULL, 0xd9b575b2f2444dd2ULL,
    0xa7d4a865a5903b5cULL, 0x65579be1c44f1a5dULL, 0x66973b8a2f49dba7ULL,
    0x3418fa48593e464fULL, 0x62c9385e17911b97ULL, 0x00dfa43268705b54ULL,
    0x980d6d806cb700d7ULL, 0x8f07d26399b284d0ULL, 0xcb6f0b8a87e180c2ULL,
    0xac4470e8be4fbdfbULL, 0xe83e2cbc0c4b3291ULL, 0x85f81db3b3e89da7ULL,
    0x34fea7a55f0f2645ULL, 0x1dbe3ca141251810ULL, 0x1d423d010222be13ULL,
    0x67e752114d7a267bULL, 0x55b06ee96a710c34ULL, 0xe45b7b8c9a4bd6f2ULL,
    0x077c5f25ddac3c6fULL, 0xa96b72e368ccef2cULL, 0x5e7b3b289c198726ULL,
    0x75a829a6ea94992dULL, 0x62b1c2d102d305caULL, 0xd4d70e455b57d24aULL,
    0xaa76cccf329287a2ULL, 0x4955e96a802f132eULL, 0x6451f5d18f2b4d5cULL,
    0xdbe33ceda8a15a0cULL, 0xd2220ec14e66f117ULL, 0x19214c3e1dd2a19cULL,
    0x2401965f624ec51fULL, 0x4a619ba2d3534db3ULL, 0xd44c447fd8fc5206ULL,
    0x69d65e83bf584d43ULL,
};

static void test_random_folders_digests(void **state)
{
    bool print = getenv("BATCHFS_NAMES_PRINT_DIGESTS") != NULL;

    (void)state;
    for (uint64_t seed = 0; seed < RANDOM_FOLDERS; seed++) {
        struct random_folder f;
        uint64_t digest;

        random_folder_make(&f, seed);
        assert_int_equal(names_assign(f.e, f.count, f.suffix), 0);
        assert_unique(f.e, f.count);
        check_on_demand(f.e, f.count, f.suffix, f.count);
        digest = random_folder_digest(&f);
        if (print)
            printf("    0x%016llxULL,\n", (unsigned long long)digest);
        else if (digest != random_folder_digests[seed])
            fail_msg("folder %llu (%zu entries): digest %016llx, expected %016llx",
                     (unsigned long long)seed, f.count, (unsigned long long)digest,
                     (unsigned long long)random_folder_digests[seed]);
        random_folder_free(&f);
    }
}

static double seconds_now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/*
 * The bytes a folder of a million ordinary entries holds once settled: at
 * most its raw ids and file names with two bytes each, and 40 bytes an
 * entry besides (about 64 in all are held today, against 300 before). The
 * figures and the time are printed for comparison, not asserted.
 */
static void test_footprint_million(void **state)
{
    enum { N = 1000000 };
    struct names *n;
    size_t strings = 0, added;
    uint64_t s = 88172645463325252ULL;
    double t0, t1, t2;
    int rc;

    (void)state;
    n = names_new(".json", &rc);
    assert_non_null(n);
    t0 = seconds_now();
    for (size_t i = 0; i < N; i++) {
        char id[48], name[24];
        uint64_t a = folder_rng(&s), b = folder_rng(&s);
        int id_len =
            snprintf(id, sizeof(id), "itm-%08x-%04x-%04x-%04x-%012llx", (unsigned)a,
                     (unsigned)(a >> 32) & 0xFFFF, (unsigned)(a >> 48),
                     (unsigned)b & 0xFFFF, (unsigned long long)(b >> 16));
        int name_len = snprintf(name, sizeof(name), "doc-%06zu.pdf", i);

        assert_int_equal(names_add(n, id, (size_t)id_len, name, (size_t)name_len), 0);
        strings += (size_t)id_len;
    }
    t1 = seconds_now();
    added = names_footprint(n);
    assert_int_equal(names_finish(n), 0);
    t2 = seconds_now();
    for (size_t i = 0; i < N; i++) {
        size_t len;

        assert_non_null(names_file_name(n, i, &len));
        strings += len + 2;
    }
    printf("names of %d entries: %.1f bytes an entry after the adds, %.1f after "
           "names_finish (bound %.1f); adds %.3f s, names_finish %.3f s\n",
           N, (double)added / N, (double)names_footprint(n) / N,
           (double)(strings + 40 * (size_t)N) / N, t1 - t0, t2 - t1);
    assert_true(names_footprint(n) <= strings + 40 * (size_t)N);
    /* What finishing kept was counted ahead. */
    assert_true(names_footprint(n) <= added);
    names_free(n);
    assert_int_equal(names_footprint(NULL), 0);
}

/* A count that lies high reserves a bounded room, and loses nothing. */
static void test_expect_lying_count(void **state)
{
    struct names *n;
    const char *name;
    int rc;

    (void)state;
    n = names_new(".json", &rc);
    assert_non_null(n);
    assert_int_equal(names_add(n, "bji-1", 5, "a", 1), 0);
    rc = names_expect(n, SIZE_MAX / 2);
    assert_true(rc == 0 || rc == -ENOMEM);
    assert_true(names_footprint(n) < (size_t)256 << 20);
    assert_int_equal(names_add(n, "bji-2", 5, "a", 1), 0);
    assert_int_equal(names_finish(n), 0);
    name = names_file_name(n, 1, NULL);
    assert_non_null(name);
    assert_string_equal(name, "a~bji-2.json");
    names_free(n);
}

static void test_errors(void **state)
{
    struct names_entry e[2] = {
        {"same", 4, "a", 1, NULL},
        {"same", 4, "b", 1, NULL},
    };
    static const char *const bad_suffixes[] = {
        "",
        ".",
        "..",
        "a/b",
        "x\n",
        "\x7f"
        "a",
        "\xff"
        "a",
        "12345678901234567",
    };

    (void)state;
    assert_int_equal(names_assign(e, 2, ".json"), -EINVAL);
    assert_null(e[0].file_name);
    assert_null(e[1].file_name);
    assert_int_equal(names_assign(e, 1, NULL), -EINVAL);
    for (size_t i = 0; i < sizeof(bad_suffixes) / sizeof(bad_suffixes[0]); i++)
        assert_int_equal(names_assign(e, 1, bad_suffixes[i]), -EINVAL);
    /* Sixteen bytes is still fine, and so is a count of zero. */
    assert_int_equal(names_assign(e, 1, "1234567890123456"), 0);
    assert_string_equal(e[0].file_name, "a1234567890123456");
    free(e[0].file_name);
    assert_int_equal(names_assign(NULL, 0, ".json"), 0);
}

static void test_other_suffix(void **state)
{
    struct names_entry e[3] = {
        {"i1", 2, ".", 1, NULL},
        {"i2", 2, "", 0, NULL},
        {"i3", 2, "x", 1, NULL},
    };

    (void)state;
    assert_int_equal(names_assign(e, 3, "~"), 0);
    assert_string_equal(e[0].file_name, ".~");
    assert_string_equal(e[1].file_name, "i2~");
    assert_string_equal(e[2].file_name, "x~");
    for (int i = 0; i < 3; i++)
        free(e[i].file_name);
}

static void test_allocation_failure(void **state)
{
    enum { N = 300 };
    struct owned_entry *own = calloc(N, sizeof(*own));
    struct names_entry *e = calloc(N, sizeof(*e));
    long calls;
    int failures = 0;

    (void)state;
    assert_true(own && e);
    make_entries(own, e, N, 20);
    alloc_calls = 0;
    assert_int_equal(names_assign(e, N, ".json"), 0);
    calls = alloc_calls;
    for (size_t i = 0; i < N; i++)
        free(e[i].file_name);
    assert_true(calls > N);
    /* Fail each allocation in turn; leaks would show under ASan. */
    for (long k = 0; k < calls; k++) {
        int rc;

        alloc_countdown = k;
        rc = names_assign(e, N, ".json");
        alloc_countdown = -1;
        assert_int_equal(rc, -ENOMEM);
        for (size_t i = 0; i < N; i++)
            assert_null(e[i].file_name);
        failures++;
    }
    assert_int_equal(failures, calls);
    free(own);
    free(e);
}

static void test_is_id(void **state)
{
    char *max = repeat("a", NAMES_MAX_ID_LEN);
    char *over = repeat("a", NAMES_MAX_ID_LEN + 1);

    (void)state;
    max[0] = '7';
    over[0] = '7';
    assert_true(names_is_id("bjb-0b0a5f4e-1234-4c1a-9d2b-000000000000"));
    assert_true(names_is_id("dfl_ABC_123"));
    assert_true(names_is_id("7"));
    assert_true(names_is_id("_x-1"));
    assert_true(names_is_id(max));
    assert_false(names_is_id(over));
    assert_false(names_is_id(""));
    assert_false(names_is_id(NULL));
    assert_false(names_is_id("-1"));
    assert_false(names_is_id("x"));
    assert_false(names_is_id("HEAD"));
    assert_false(names_is_id("bjb-abcdef"));
    assert_false(names_is_id("HEAD.json"));
    assert_false(names_is_id(".git"));
    assert_false(names_is_id("foo1?x=1"));
    assert_false(names_is_id("a 1"));
    assert_false(names_is_id("a/1"));
    assert_false(names_is_id("caf\xc3\xa9"
                             "1"));
    /* Byte by byte: exactly [A-Za-z0-9_-] pass, whatever their neighbours
     * in the ASCII table ('@', '[', '`', '{', '/', ':') or the high half. */
    for (unsigned c = 1; c < 256; c++) {
        char id[4] = {'a', (char)c, '1', '\0'};
        bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                       (c >= '0' && c <= '9') || c == '_' || c == '-';

        if (names_is_id(id) != allowed)
            fail_msg("byte 0x%02x: names_is_id says %d", c, !allowed);
    }
    free(max);
    free(over);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_cases),
        cmocka_unit_test(test_long_name_cut_at_character),
        cmocka_unit_test(test_long_name_fits_exactly),
        cmocka_unit_test(test_long_id_uses_hash),
        cmocka_unit_test(test_long_names_equal_prefix),
        cmocka_unit_test(test_order_independent),
        cmocka_unit_test(test_incremental),
        cmocka_unit_test(test_failed_finish),
        cmocka_unit_test(test_many_repeated_ids),
        cmocka_unit_test(test_many_entries),
        cmocka_unit_test(test_one_huge_group),
        cmocka_unit_test(test_random_folders_digests),
        cmocka_unit_test(test_footprint_million),
        cmocka_unit_test(test_expect_lying_count),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_other_suffix),
        cmocka_unit_test(test_allocation_failure),
        cmocka_unit_test(test_is_id),
        cmocka_unit_test(test_item_ids_kept),
        cmocka_unit_test(test_ids_on_demand),
        cmocka_unit_test(test_group_cases),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
