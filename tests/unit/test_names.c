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
    /* Forwards, then backwards: the order must not matter. */
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(names_assign(entries, n, ".json"), 0);
        for (size_t i = 0; i < n; i++) {
            size_t f = pass ? n - 1 - i : i;

            if (strcmp(entries[i].file_name, fx[f].expected.bytes) != 0)
                fail_msg("id '%s': got '%s', expected '%s'", entries[i].item_id,
                         entries[i].file_name, fx[f].expected.bytes);
            free(entries[i].file_name);
        }
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
    for (size_t i = 0; i < N; i++)
        free(e[i].file_name);
    free(own);
    free(e);
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
        cmocka_unit_test(test_many_entries),
        cmocka_unit_test(test_one_huge_group),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_other_suffix),
        cmocka_unit_test(test_allocation_failure),
        cmocka_unit_test(test_is_id),
        cmocka_unit_test(test_group_cases),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
