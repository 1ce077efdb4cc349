/*
 * Unit tests for fs/jsontext.c.
 *
 * Fixtures: tests/data/jsontext/valid/<case>.json with the expected
 * jsontext_pretty output in <case>.expected (Python's json.dumps(indent=2)
 * plus "\n" for documents Python itself wrote; by hand where the input keeps
 * spellings Python would change) and jsontext_compact output in
 * <case>.compact; tests/data/jsontext/invalid/<case>.json must be refused by
 * every function.
 *
 * Build with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc so that the
 * allocation-failure tests can make the Nth allocation fail.
 */
#include "batchfs/jsontext.h"

#include <dirent.h>
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

static const char *data_dir(void)
{
    const char *dir = getenv("BATCHFS_TEST_DATA");

    return dir && *dir ? dir : "tests/data";
}

/* Reads tests/data/jsontext/<rel>; NULL when the file does not exist. */
static char *read_fixture(const char *rel, size_t *len)
{
    char path[4096];
    FILE *f;
    char *data;
    long size;

    snprintf(path, sizeof(path), "%s/jsontext/%s", data_dir(), rel);
    f = fopen(path, "rb");
    if (!f)
        return NULL;
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size >= 0);
    rewind(f);
    /* Exactly `size` bytes, so ASan catches any read past the end. */
    data = malloc(size ? (size_t)size : 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *len = (size_t)size;
    return data;
}

/* Fixture `dir`/`name``ext` (a case of list_cases), which must exist. */
static char *read_case(const char *dir, const char *name, const char *ext, size_t *len)
{
    char rel[512];
    char *text;

    snprintf(rel, sizeof(rel), "%s/%s%s", dir, name, ext);
    text = read_fixture(rel, len);
    assert_non_null(text);
    return text;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the <case>.json files of a fixture folder. */
static size_t list_cases(const char *sub, char ***out)
{
    char path[4096];
    DIR *d;
    struct dirent *de;
    char **names = NULL;
    size_t n = 0;

    snprintf(path, sizeof(path), "%s/jsontext/%s", data_dir(), sub);
    d = opendir(path);
    assert_non_null(d);
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);

        if (len <= 5 || strcmp(de->d_name + len - 5, ".json") != 0)
            continue;
        names = realloc(names, (n + 1) * sizeof(*names));
        assert_non_null(names);
        names[n] = malloc(len + 1);
        assert_non_null(names[n]);
        memcpy(names[n], de->d_name, len - 5);
        names[n][len - 5] = '\0';
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof(*names), cmp_names);
    *out = names;
    return n;
}

static void free_cases(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static void assert_bytes(const char *what, const char *got, size_t got_len,
                         const char *want, size_t want_len)
{
    if (got_len != want_len || memcmp(got, want, want_len) != 0)
        fail_msg("%s: got %zu bytes '%.*s', expected %zu bytes '%.*s'", what, got_len,
                 (int)(got_len > 400 ? 400 : got_len), got, want_len,
                 (int)(want_len > 400 ? 400 : want_len), want);
}

static void test_valid_fixtures(void **state)
{
    char **cases;
    size_t n = list_cases("valid", &cases);

    (void)state;
    assert_true(n >= 20);
    for (size_t i = 0; i < n; i++) {
        size_t len, exp_len, cmp_len, measured = 0, measured_compact = 0;
        char *text, *expected, *compact;
        struct buf out = BUF_INIT, again = BUF_INIT;

        text = read_case("valid", cases[i], ".json", &len);
        expected = read_case("valid", cases[i], ".expected", &exp_len);
        compact = read_case("valid", cases[i], ".compact", &cmp_len);

        assert_int_equal(jsontext_validate(text, len), 0);
        assert_int_equal(jsontext_pretty(text, len, &out), 0);
        assert_bytes(cases[i], out.data, out.len, expected, exp_len);
        assert_int_equal(out.data[out.len], '\0');
        /* The measured length is the length written. */
        assert_int_equal(jsontext_pretty_length(text, len, &measured), 0);
        assert_int_equal(measured, exp_len);
        /* Pretty output is a fixed point of pretty-printing. */
        assert_int_equal(jsontext_pretty(out.data, out.len, &again), 0);
        assert_bytes(cases[i], again.data, again.len, expected, exp_len);

        buf_reset(&out);
        assert_int_equal(jsontext_compact(text, len, &out), 0);
        assert_bytes(cases[i], out.data, out.len, compact, cmp_len);
        /* Both lengths are measured in one pass. */
        assert_int_equal(jsontext_measure(text, len, &measured, &measured_compact), 0);
        assert_int_equal(measured, exp_len);
        assert_int_equal(measured_compact, cmp_len);
        buf_reset(&again);
        assert_int_equal(jsontext_compact(expected, exp_len, &again), 0);
        assert_bytes(cases[i], again.data, again.len, compact, cmp_len);

        buf_free(&out);
        buf_free(&again);
        free(text);
        free(expected);
        free(compact);
    }
    free_cases(cases, n);
}

/* Every function refuses the text and leaves `out` as it was. */
static void assert_refused(const char *what, const char *text, size_t len)
{
    struct buf out = BUF_INIT;
    struct json_span span = {7, 7}, *spans = (struct json_span *)&span;
    size_t count = 99, measured = 99;
    int rc;

    assert_int_equal(buf_append_str(&out, "prefix"), 0);
    rc = jsontext_validate(text, len);
    if (rc != -EINVAL)
        fail_msg("%s: validate returned %d", what, rc);
    assert_int_equal(jsontext_pretty(text, len, &out), -EINVAL);
    assert_int_equal(out.len, 6);
    assert_string_equal(out.data, "prefix");
    assert_int_equal(jsontext_pretty_length(text, len, &measured), -EINVAL);
    assert_int_equal(measured, 0);
    assert_int_equal(jsontext_compact(text, len, &out), -EINVAL);
    assert_int_equal(out.len, 6);
    assert_string_equal(out.data, "prefix");
    assert_int_equal(jsontext_member(text, len, "a", &span), -EINVAL);
    assert_int_equal(jsontext_array_elements(text, len, &spans, &count), -EINVAL);
    assert_null(spans);
    assert_int_equal(count, 0);
    buf_free(&out);
}

static void test_invalid_fixtures(void **state)
{
    char **cases;
    size_t n = list_cases("invalid", &cases);

    (void)state;
    assert_true(n >= 50);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        char *text;

        text = read_case("invalid", cases[i], ".json", &len);
        assert_refused(cases[i], text, len);
        free(text);
    }
    free_cases(cases, n);
}

/* Every proper prefix of a document that is an object or array is invalid. */
static void test_truncated_everywhere(void **state)
{
    char **cases;
    size_t n = list_cases("valid", &cases);

    (void)state;
    for (size_t i = 0; i < n; i++) {
        size_t len, first = 0, end;
        char *text;

        text = read_case("valid", cases[i], ".json", &len);
        while (first < len && strchr(" \t\r\n", text[first]))
            first++;
        if (first < len && (text[first] == '{' || text[first] == '[')) {
            end = len;
            while (end > 0 && strchr(" \t\r\n", text[end - 1]))
                end--;
            for (size_t cut = 0; cut < end; cut++) {
                /* A copy of exactly `cut` bytes: reading past it is a bug. */
                char *prefix = malloc(cut ? cut : 1);

                assert_non_null(prefix);
                memcpy(prefix, text, cut);
                assert_refused(cases[i], prefix, cut);
                free(prefix);
            }
        }
        free(text);
    }
    free_cases(cases, n);
}

static void test_null_text(void **state)
{
    struct buf out = BUF_INIT;

    (void)state;
    assert_int_equal(jsontext_validate(NULL, 0), -EINVAL);
    assert_int_equal(jsontext_pretty(NULL, 0, &out), -EINVAL);
    assert_int_equal(out.len, 0);
    assert_int_equal(jsontext_validate(NULL, 3), -EINVAL);
}

static char *nested(size_t depth, const char *open, const char *inner, const char *close,
                    size_t *len)
{
    size_t o = strlen(open), in = strlen(inner), c = strlen(close);
    char *s = malloc(depth * (o + c) + in + 1);

    assert_non_null(s);
    for (size_t i = 0; i < depth; i++)
        memcpy(s + i * o, open, o);
    memcpy(s + depth * o, inner, in);
    for (size_t i = 0; i < depth; i++)
        memcpy(s + depth * o + in + i * c, close, c);
    *len = depth * (o + c) + in;
    s[*len] = '\0';
    return s;
}

static void test_deep_nesting(void **state)
{
    enum { DEPTH = 100000 };
    size_t len;
    char *arrays = nested(DEPTH, "[", "", "]", &len);
    char *objects;
    size_t measured = 0, measured_compact = 0;
    struct buf out = BUF_INIT;
    struct json_span span;

    (void)state;
    assert_int_equal(jsontext_validate(arrays, len), 0);
    assert_int_equal(jsontext_compact(arrays, len, &out), 0);
    assert_bytes("deep compact", out.data, out.len, arrays, len);
    buf_reset(&out);
    assert_int_equal(jsontext_pretty(arrays, len, &out), 0);
    /* Bounded indentation keeps the output linear in the input. */
    assert_true(out.len < len * 2);
    assert_int_equal(jsontext_pretty_length(arrays, len, &measured), 0);
    assert_int_equal(measured, out.len);
    /* Levels past the indented ones are compact in both layouts. */
    assert_int_equal(jsontext_measure(arrays, len, &measured, &measured_compact), 0);
    assert_int_equal(measured, out.len);
    assert_int_equal(measured_compact, len);

    /* Break the innermost pair, then the outermost. */
    arrays[DEPTH] = '}';
    assert_refused("deep inner mismatch", arrays, len);
    arrays[DEPTH] = ']';
    arrays[len - 1] = '}';
    assert_refused("deep outer mismatch", arrays, len);
    assert_refused("deep unclosed", arrays, len - 1);
    free(arrays);

    objects = nested(DEPTH, "{\"a\":", "1", "}", &len);
    assert_int_equal(jsontext_validate(objects, len), 0);
    assert_int_equal(jsontext_member(objects, len, "a", &span), 0);
    assert_int_equal(span.start, 5);
    assert_int_equal(span.len, len - 6);
    objects[len - 2] = ']';
    assert_refused("deep object mismatch", objects, len);
    free(objects);
    buf_free(&out);
}

/* Containers past JSONTEXT_MAX_INDENT_DEPTH are written on one line. */
static void test_indent_limit(void **state)
{
    size_t len, depth = JSONTEXT_MAX_INDENT_DEPTH + 3;
    char *text = nested(depth, "[", "1, {\"k\": [2]}", "]", &len);
    struct buf out = BUF_INIT, want = BUF_INIT;

    (void)state;
    for (size_t i = 0; i < JSONTEXT_MAX_INDENT_DEPTH; i++) {
        for (size_t s = 0; s < 2 * i; s++)
            assert_int_equal(buf_append_char(&want, ' '), 0);
        assert_int_equal(buf_append_str(&want, "[\n"), 0);
    }
    for (size_t s = 0; s < 2 * JSONTEXT_MAX_INDENT_DEPTH; s++)
        assert_int_equal(buf_append_char(&want, ' '), 0);
    assert_int_equal(buf_append_str(&want, "[[[1,{\"k\":[2]}]]]\n"), 0);
    for (size_t i = JSONTEXT_MAX_INDENT_DEPTH; i-- > 0;) {
        for (size_t s = 0; s < 2 * i; s++)
            assert_int_equal(buf_append_char(&want, ' '), 0);
        assert_int_equal(buf_append_str(&want, "]\n"), 0);
    }
    assert_int_equal(jsontext_pretty(text, len, &out), 0);
    assert_bytes("indent limit", out.data, out.len, want.data, want.len);
    buf_free(&out);
    buf_free(&want);
    free(text);
}

static void test_appends_to_existing(void **state)
{
    struct buf out = BUF_INIT;

    (void)state;
    assert_int_equal(buf_append_str(&out, "head:"), 0);
    assert_int_equal(jsontext_compact("{ \"a\" : [ ] }", 13, &out), 0);
    assert_int_equal(jsontext_pretty(" 1 ", 3, &out), 0);
    assert_string_equal(out.data, "head:{\"a\":[]}1\n");
    buf_free(&out);
}

static void assert_member(const char *text, const char *key, const char *want)
{
    struct json_span span = {0, 0};
    int rc = jsontext_member(text, strlen(text), key, &span);

    if (rc != 0)
        fail_msg("member '%s' of %s: %d", key, text, rc);
    assert_bytes(key, text + span.start, span.len, want, strlen(want));
}

static void test_member(void **state)
{
    const char *obj = " { \"items\" : [1, {\"items\": 0}], \"next_page_token\": null,"
                      " \"total_size\":120 ,\"s\":\"x,}\" } ";
    struct json_span span = {42, 42};

    (void)state;
    assert_member(obj, "items", "[1, {\"items\": 0}]");
    assert_member(obj, "next_page_token", "null");
    assert_member(obj, "total_size", "120");
    assert_member(obj, "s", "\"x,}\"");
    /* Missing, including names that are only inner members or prefixes. */
    assert_int_equal(jsontext_member(obj, strlen(obj), "item", &span), -ENOENT);
    assert_int_equal(jsontext_member(obj, strlen(obj), "itemsx", &span), -ENOENT);
    assert_int_equal(jsontext_member(obj, strlen(obj), "", &span), -ENOENT);
    assert_int_equal(jsontext_member("{}", 2, "a", &span), -ENOENT);
    assert_int_equal(span.start, 42);
    /* The last of repeated keys wins. */
    assert_member("{\"a\": 1, \"b\": 2, \"a\": {\"c\": 3}}", "a", "{\"c\": 3}");
    /* Names are compared after decoding escapes. */
    assert_member("{\"\\u0069tems\": [], \"x\": 0}", "items", "[]");
    assert_member("{\"a\\/b\": 1}", "a/b", "1");
    assert_member("{\"tab\\there\": 1}", "tab\there", "1");
    assert_member("{\"q\\\"\\\\\": 1}", "q\"\\", "1");
    assert_member("{\"\\b\\f\\n\\r\": 1}", "\b\f\n\r", "1");
    assert_member("{\"\\u00e9t\\u00E9\": 1}", "\xc3\xa9t\xc3\xa9", "1");
    assert_member("{\"\\u20ac\": 1}", "\xe2\x82\xac", "1");
    assert_member("{\"\\ud83d\\ude00\": 1}", "\xf0\x9f\x98\x80", "1");
    assert_member("{\"caf\xc3\xa9\": 1}", "caf\xc3\xa9", "1");
    assert_member("{\"items\": 1, \"\\u0069tems\": 2}", "items", "2");
    /* A decoded NUL never matches the end of the key. */
    assert_int_equal(jsontext_member("{\"a\\u0000\": 1}", 14, "a", &span), -ENOENT);
    assert_int_equal(jsontext_member("{\"a\\u0000b\": 1}", 15, "a", &span), -ENOENT);
    assert_int_equal(jsontext_member("{\"ab\": 1}", 9, "abc", &span), -ENOENT);
    assert_int_equal(jsontext_member("{\"a\\u0062\": 1}", 14, "abc", &span), -ENOENT);
    /* Not an object, or not only an object. */
    assert_int_equal(jsontext_member("[1]", 3, "a", &span), -EINVAL);
    assert_int_equal(jsontext_member("\"a\"", 3, "a", &span), -EINVAL);
    assert_int_equal(jsontext_member("1", 1, "a", &span), -EINVAL);
    assert_int_equal(jsontext_member("{\"a\": 1} {}", 11, "a", &span), -EINVAL);
    assert_int_equal(jsontext_member("{\"a\": 1, \"b\": [}", 16, "a", &span), -EINVAL);
    assert_int_equal(jsontext_member("{\"a\": 1}", 8, NULL, &span), -EINVAL);
}

/* Several members in one pass: absent ones come back empty. */
static void test_members(void **state)
{
    const char *obj = "{\"id\": \"a\", \"status\": null, \"n\": {\"id\": 1},"
                      " \"\\u0069d\": \"b\"}";
    const char *keys[] = {"id", "status", "missing", "n"};
    const char *too_many[JSONTEXT_MAX_KEYS + 1];
    struct json_span out[JSONTEXT_MAX_KEYS + 1];

    (void)state;
    assert_int_equal(jsontext_members(obj, strlen(obj), keys, 4, out), 0);
    assert_int_equal(out[0].len, 3); /* the last "id", spelt with an escape */
    assert_memory_equal(obj + out[0].start, "\"b\"", 3);
    assert_int_equal(out[1].len, 4);
    assert_memory_equal(obj + out[1].start, "null", 4);
    assert_int_equal(out[2].len, 0);
    assert_memory_equal(obj + out[3].start, "{\"id\": 1}", out[3].len);
    assert_int_equal(jsontext_members("{}", 2, keys, 4, out), 0);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(out[i].len, 0);
    assert_int_equal(jsontext_members("[]", 2, keys, 4, out), -EINVAL);
    assert_int_equal(jsontext_members("{\"id\": }", 9, keys, 1, out), -EINVAL);
    for (size_t i = 0; i <= JSONTEXT_MAX_KEYS; i++)
        too_many[i] = "k";
    assert_int_equal(jsontext_members("{}", 2, too_many, JSONTEXT_MAX_KEYS + 1, out), -EINVAL);
    assert_int_equal(jsontext_members("{}", 2, too_many, JSONTEXT_MAX_KEYS, out), 0);
}

static void assert_string_decodes(const char *token, const char *want, size_t want_len)
{
    char out[64];
    size_t len = 99;

    assert_true(strlen(token) <= sizeof(out));
    assert_int_equal(jsontext_string(token, strlen(token), out, &len), 0);
    assert_int_equal(len, want_len);
    assert_memory_equal(out, want, want_len);
    assert_int_equal(out[len], '\0');
}

static void test_string(void **state)
{
    char out[32];
    size_t len;

    (void)state;
    assert_string_decodes("\"\"", "", 0);
    assert_string_decodes("\"plain\"", "plain", 5);
    assert_string_decodes("\"a\\/b\\\"c\\\\\"", "a/b\"c\\", 6);
    assert_string_decodes("\"\\b\\f\\n\\r\\t\"", "\b\f\n\r\t", 5);
    assert_string_decodes("\"x\\u0000y\"", "x\0y", 3);
    assert_string_decodes("\"\\u00e9\\u20AC\"", "\xc3\xa9\xe2\x82\xac", 5);
    assert_string_decodes("\"\\ud83d\\ude00!\"", "\xf0\x9f\x98\x80!", 5);
    assert_string_decodes("\"caf\xc3\xa9\"", "caf\xc3\xa9", 5);
    /* Not exactly one valid string. */
    assert_int_equal(jsontext_string("\"a", 2, out, &len), -EINVAL);
    assert_int_equal(jsontext_string("\"a\" ", 4, out, &len), -EINVAL);
    assert_int_equal(jsontext_string("\"a\"\"", 4, out, &len), -EINVAL);
    assert_int_equal(jsontext_string("12", 2, out, &len), -EINVAL);
    assert_int_equal(jsontext_string("\"\\x\"", 4, out, &len), -EINVAL);
    assert_int_equal(jsontext_string("\"", 1, out, &len), -EINVAL);
    assert_int_equal(jsontext_string("", 0, out, &len), -EINVAL);
    assert_int_equal(jsontext_string(NULL, 2, out, &len), -EINVAL);
}

/* Decoded in place, into the text's own bytes: a document of many MB is
 * not copied (produced.c). Long runs between escapes, so that a run is
 * copied onto bytes it overlaps. */
static void test_string_in_place(void **state)
{
    static const char token[] =
        "\"runs of plain text, long enough to overlap\\n\\u00e9 where they are "
        "moved\\ud83d\\ude00 then more plain text after the pair \\\" end\"";
    static const char want[] =
        "runs of plain text, long enough to overlap\n\xc3\xa9 where "
        "they are moved\xf0\x9f\x98\x80 then more plain text after "
        "the pair \" end";
    char prefix[] = "{\"k\": ";
    char buffer[sizeof(prefix) - 1 + sizeof(token)];
    size_t len;

    (void)state;
    memcpy(buffer, prefix, sizeof(prefix) - 1);
    memcpy(buffer + sizeof(prefix) - 1, token, sizeof(token));
    /* Into the buffer's start, and onto the token itself. */
    assert_int_equal(
        jsontext_string(buffer + sizeof(prefix) - 1, sizeof(token) - 1, buffer, &len), 0);
    assert_int_equal(len, sizeof(want) - 1);
    assert_memory_equal(buffer, want, len);
    memcpy(buffer, token, sizeof(token));
    assert_int_equal(jsontext_string(buffer, sizeof(token) - 1, buffer, &len), 0);
    assert_int_equal(len, sizeof(want) - 1);
    assert_memory_equal(buffer, want, len);
    assert_int_equal(buffer[len], '\0');
}

/* Strings that are not Unicode: raw bytes kept, unpaired surrogate escapes
 * as the three bytes of their code point (see jsontext.h). */
static void test_string_not_unicode(void **state)
{
    static const char *const keys[] = {"\xed\xa0\x80", "a\xed\xb0\x80", "\xff"};
    const char *object = "{\"\\ud800\": 1, \"a\\udc00\": 2, \"\xff\": 3}";
    struct json_span found[3];

    (void)state;
    assert_string_decodes("\"\xff\"", "\xff", 1);
    assert_string_decodes("\"a\xc0\xaf\x62\"", "a\xc0\xaf\x62", 4); /* \x62: b */
    assert_string_decodes("\"\xed\xa0\x80\"", "\xed\xa0\x80", 3);
    assert_string_decodes("\"\xf4\x90\x80\x80\"", "\xf4\x90\x80\x80", 4);
    assert_string_decodes("\"cut \xe2\x82\"", "cut \xe2\x82", 6);
    assert_string_decodes("\"\\ud800\"", "\xed\xa0\x80", 3);
    assert_string_decodes("\"\\udc00\"", "\xed\xb0\x80", 3);
    assert_string_decodes("\"\\ude00x\"", "\xed\xb8\x80x", 4);
    /* A high surrogate followed by anything but a low one stands alone. */
    assert_string_decodes("\"\\ud800\\u0041\"", "\xed\xa0\x80\x41", 4);
    assert_string_decodes("\"\\ud800\\ud800\"", "\xed\xa0\x80\xed\xa0\x80", 6);
    assert_string_decodes("\"\\udc00\\ud800\"", "\xed\xb0\x80\xed\xa0\x80", 6);
    assert_string_decodes("\"\\ud800\\n\"", "\xed\xa0\x80\n", 4);
    assert_string_decodes("\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf", 4);
    /* Member names compare the same way. */
    assert_int_equal(jsontext_members(object, strlen(object), keys, 3, found), 0);
    assert_int_equal(object[found[0].start], '1');
    assert_int_equal(object[found[1].start], '2');
    assert_int_equal(object[found[2].start], '3');
}

static void test_array_elements(void **state)
{
    const char *text = " [1, \"two\" , {\"a\": [3]},[] ,null,-2.5e3 ] ";
    static const char *const want[] = {"1",  "\"two\"", "{\"a\": [3]}",
                                       "[]", "null",    "-2.5e3"};
    struct json_span *spans = NULL;
    size_t count = 0;

    (void)state;
    assert_int_equal(jsontext_array_elements(text, strlen(text), &spans, &count), 0);
    assert_int_equal(count, 6);
    for (size_t i = 0; i < count; i++)
        assert_bytes(want[i], text + spans[i].start, spans[i].len, want[i],
                     strlen(want[i]));
    free(spans);

    assert_int_equal(jsontext_array_elements(" [ ] ", 5, &spans, &count), 0);
    assert_int_equal(count, 0);
    assert_null(spans);

    assert_int_equal(jsontext_array_elements("{}", 2, &spans, &count), -EINVAL);
    assert_int_equal(jsontext_array_elements("1", 1, &spans, &count), -EINVAL);
    assert_int_equal(jsontext_array_elements("[1] 2", 5, &spans, &count), -EINVAL);
    assert_int_equal(jsontext_array_elements("[1, 2,]", 7, &spans, &count), -EINVAL);
    assert_null(spans);
    assert_int_equal(count, 0);
}

/* Both readings of one text: the checking one and the one for validated
 * text (jsontext_*_valid) find the same spans. */
/* What jsontext_array_objects_valid is checked against: with `spans`, the
 * elements the two-pass reading found, each object's keys read by
 * jsontext_members_valid; without, only that what it gives lies within
 * the text. */
struct objects_check {
    const char *what, *text;
    size_t len;
    const char *const *keys;
    size_t n_keys;
    const struct json_span *spans; /* [count], or NULL */
    size_t count, seen;
};

static int check_object_element(void *ctx, struct json_span element,
                                const struct json_span *found)
{
    struct objects_check *c = ctx;
    const char *e = c->text + element.start;
    struct json_span m[JSONTEXT_MAX_KEYS];

    assert_true(element.start + element.len <= c->len);
    for (size_t k = 0; found && k < c->n_keys; k++)
        assert_true(found[k].start + found[k].len <= c->len);
    if (c->spans) {
        if (c->seen >= c->count || element.start != c->spans[c->seen].start ||
            element.len != c->spans[c->seen].len)
            fail_msg("%s: element %zu at %zu+%zu, not where the elements are", c->what,
                     c->seen, element.start, element.len);
        assert_int_equal(found != NULL, element.len && e[0] == '{');
        if (found) {
            assert_int_equal(
                jsontext_members_valid(e, element.len, c->keys, c->n_keys, m), 0);
            for (size_t k = 0; k < c->n_keys; k++) {
                size_t start = m[k].len ? element.start + m[k].start : 0;

                if (found[k].start != start || found[k].len != m[k].len)
                    fail_msg("%s: element %zu, key '%s' at %zu+%zu, not %zu+%zu", c->what,
                             c->seen, c->keys[k], found[k].start, found[k].len, start,
                             m[k].len);
            }
        }
    }
    c->seen++;
    return 0;
}

/* jsontext_array_objects_valid on text: 0 and what the two-pass reading
 * finds (spans, count), or, without spans, anything within the text. */
static void check_objects(const char *what, const char *text, size_t len,
                          const struct json_span *spans, size_t count)
{
    static const char *const keys[] = {"a", "id", "status", "\"", "b c"};
    enum { N_KEYS = sizeof(keys) / sizeof(keys[0]) };
    struct json_span found[N_KEYS];
    struct objects_check c = {what, text, len, keys, N_KEYS, spans, count, 0};
    int rc = jsontext_array_objects_valid(text, len, keys, N_KEYS, found,
                                          check_object_element, &c);

    if (spans) {
        assert_int_equal(rc, 0);
        assert_int_equal(c.seen, count);
    }
}

static void assert_same_readings(const char *what, const char *text, size_t len)
{
    static const char *const keys[] = {"a", "id", "status", "items", "\"", "\\", "b c"};
    enum { N_KEYS = sizeof(keys) / sizeof(keys[0]) };
    struct json_span checked[N_KEYS], skipped[N_KEYS];
    struct json_span *spans = NULL, *fast = NULL;
    size_t count = 0, fast_count = 0;
    int rc = jsontext_members(text, len, keys, N_KEYS, checked);

    if (rc == 0) {
        assert_int_equal(jsontext_members_valid(text, len, keys, N_KEYS, skipped), 0);
        for (size_t k = 0; k < N_KEYS; k++)
            if (checked[k].start != skipped[k].start || checked[k].len != skipped[k].len)
                fail_msg("%s: member '%s' at %zu+%zu, found at %zu+%zu when validated",
                         what, keys[k], checked[k].start, checked[k].len,
                         skipped[k].start, skipped[k].len);
    }
    rc = jsontext_array_elements(text, len, &spans, &count);
    if (rc == 0) {
        assert_int_equal(jsontext_array_elements_valid(text, len, &fast, &fast_count), 0);
        assert_int_equal(fast_count, count);
        for (size_t i = 0; i < count; i++)
            if (spans[i].start != fast[i].start || spans[i].len != fast[i].len)
                fail_msg("%s: element %zu at %zu+%zu, found at %zu+%zu when validated",
                         what, i, spans[i].start, spans[i].len, fast[i].start, fast[i].len);
        /* The elements with their keys, in one pass: the same readings. */
        check_objects(what, text, len, spans, count);
    }
    free(spans);
    free(fast);
}

static void test_valid_readings(void **state)
{
    static const char *const texts[] = {
        "{\"a\": \"x\\\"}\", \"id\": \"\\\\\", \"b c\": [\"]\", {\"}\": 1}], \"status\": "
        "-1e5}",
        "{\"\\\"\": \"q\", \"\\u005c\": true, \"a\": {\"a\": [[], {}]}, \"a\": null}",
        " [ \"[\" , {\"a\" : \"\\\\\\\"]\"} , 12.5 , false , [ [ \"x\" ] ] ] ",
        "{\"items\": [{\"id\": \"\\u00e9\\ud800\", \"status\": \"ok\"}, 0], \"id\": 7}",
        /* Keys of one element are not another's; nested ones are not its. */
        "[{\"a\": 1, \"id\": \"x\"}, {\"status\": \"s\"}, 3, {\"b c\": [{\"a\": 2}]}, "
        "{}]",
    };
    char **cases;
    size_t n = list_cases("valid", &cases);

    (void)state;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        assert_int_equal(jsontext_validate(texts[i], strlen(texts[i])), 0);
        assert_same_readings(texts[i], texts[i], strlen(texts[i]));
    }
    for (size_t i = 0; i < n; i++) {
        size_t len;
        char *text;

        text = read_case("valid", cases[i], ".json", &len);
        assert_same_readings(cases[i], text, len);
        /* Every prefix is text that was never validated: the reading for
         * validated text must still end, and within it (ASan sees the
         * copy's end). */
        for (size_t cut = 0; cut < len; cut++) {
            struct json_span found[2], *spans = NULL;
            static const char *const two[] = {"a", "items"};
            char *prefix = malloc(cut ? cut : 1);
            size_t count = 0;

            assert_non_null(prefix);
            memcpy(prefix, text, cut);
            if (jsontext_members_valid(prefix, cut, two, 2, found) == 0)
                for (size_t k = 0; k < 2; k++)
                    assert_true(found[k].start + found[k].len <= cut);
            if (jsontext_array_elements_valid(prefix, cut, &spans, &count) == 0)
                for (size_t k = 0; k < count; k++)
                    assert_true(spans[k].start + spans[k].len <= cut);
            check_objects(cases[i], prefix, cut, NULL, 0);
            free(spans);
            free(prefix);
        }
        free(text);
    }
    free_cases(cases, n);
}

/* The elements jsontext_page visits, with their keys' values. */
struct visited {
    struct json_span spans[64], found[64][2];
    bool object[64];
    size_t count;
};

static int note_visited(void *ctx, struct json_span element,
                        const struct json_span *found)
{
    struct visited *v = ctx;

    if (v->count < 64) {
        v->spans[v->count] = element;
        v->object[v->count] = found != NULL;
        if (found)
            memcpy(v->found[v->count], found, sizeof(v->found[0]));
        v->count++;
    }
    return 0;
}

/* jsontext_page accepts what jsontext_members accepts, finds the same
 * members, and visits, last among them, the elements of the last "items"
 * that jsontext_array_objects_valid finds in it, with the same keys. */
static void assert_page_reading(const char *what, const char *text, size_t len)
{
    static const char *const keys[] = {"items", "next_page_token", "total_size"};
    static const char *const item_keys[] = {"id", "status"};
    struct json_span checked[3], one_pass[3], found[2];
    struct visited seen = {0}, again = {0};
    int expected = jsontext_members(text, len, keys, 3, checked);
    int got = jsontext_page(text, len, keys, 3, one_pass, "items", item_keys, 2, found,
                            note_visited, &seen);
    size_t base;

    if ((expected == 0) != (got == 0))
        fail_msg("%s: read as a page %s, checked %s", what, got ? "refused" : "accepted",
                 expected ? "refused" : "accepted");
    if (expected != 0)
        return;
    for (size_t k = 0; k < 3; k++)
        if (checked[k].start != one_pass[k].start || checked[k].len != one_pass[k].len)
            fail_msg("%s: member '%s' at %zu+%zu, as a page at %zu+%zu", what, keys[k],
                     checked[k].start, checked[k].len, one_pass[k].start,
                     one_pass[k].len);
    if (!checked[0].len || text[checked[0].start] != '[' || seen.count >= 64)
        return;
    base = checked[0].start;
    assert_int_equal(jsontext_array_objects_valid(text + base, checked[0].len, item_keys,
                                                  2, found, note_visited, &again),
                     0);
    assert_true(seen.count >= again.count);
    for (size_t i = 0; i < again.count; i++) {
        size_t j = seen.count - again.count + i;

        if (seen.spans[j].start != base + again.spans[i].start ||
            seen.spans[j].len != again.spans[i].len || seen.object[j] != again.object[i])
            fail_msg("%s: element %zu at %zu+%zu, as a page at %zu+%zu", what, i,
                     base + again.spans[i].start, again.spans[i].len, seen.spans[j].start,
                     seen.spans[j].len);
        for (size_t k = 0; again.object[i] && k < 2; k++)
            if (seen.found[j][k].len != again.found[i][k].len ||
                (again.found[i][k].len &&
                 seen.found[j][k].start != base + again.found[i][k].start))
                fail_msg("%s: element %zu, key '%s' differs as a page", what, i,
                         item_keys[k]);
    }
}

static void test_page_readings(void **state)
{
    static const char *const kinds[] = {"valid", "invalid"};
    static const char *const texts[] = {
        "{\"items\": [{\"id\": \"a\"}], \"items\": [1, {\"status\": \"s\"}]}",
        "{\"items\": {\"id\": \"x\"}, \"total_size\": 2}",
        "{\"items\": [{\"items\": [{\"id\": \"inner\"}]}]}",
        "{\"it\\u0065ms\": [{\"id\": \"escaped name\"}], \"items\": []}",
        "{\"items\": [], \"it\\u0065ms\": [{\"id\": \"escaped name, last\"}]}",
        "{\"items\": [{\"id\": \"a\"}, tru]}",
        "{\"items\": [{\"id\": \"a\"}], \"total_size\": 01}",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        assert_page_reading(texts[i], texts[i], strlen(texts[i]));
    for (size_t kind = 0; kind < 2; kind++) {
        char **cases;
        size_t n = list_cases(kinds[kind], &cases);

        for (size_t i = 0; i < n; i++) {
            struct buf page = BUF_INIT;
            size_t len;
            char *text = read_case(kinds[kind], cases[i], ".json", &len);

            assert_page_reading(cases[i], text, len);
            for (size_t cut = 0; kind == 0 && cut < len; cut++) {
                char *prefix = malloc(cut ? cut : 1);

                assert_non_null(prefix);
                memcpy(prefix, text, cut);
                assert_page_reading(cases[i], prefix, cut);
                free(prefix);
            }
            /* As the items of a page, among objects, and alone. */
            assert_int_equal(buf_append_str(&page, "{\"items\": [{\"id\": \"a\"}, "), 0);
            assert_int_equal(buf_append(&page, text, len), 0);
            assert_int_equal(buf_append_str(&page, ", 3], \"total_size\": 3}"), 0);
            assert_page_reading(cases[i], page.data, page.len);
            page.len = 0;
            assert_int_equal(buf_append_str(&page, "{\"total_size\": 1, \"items\": "), 0);
            assert_int_equal(buf_append(&page, text, len), 0);
            assert_int_equal(buf_append_char(&page, '}'), 0);
            assert_page_reading(cases[i], page.data, page.len);
            buf_free(&page);
            free(text);
        }
        free_cases(cases, n);
    }
}

static void test_many_elements(void **state)
{
    enum { N = 5000 };
    struct buf text = BUF_INIT;
    struct json_span *spans = NULL;
    size_t count = 0;

    (void)state;
    assert_int_equal(buf_append_char(&text, '['), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(buf_printf(&text, "%s{\"i\":%d}", i ? "," : "", i), 0);
    assert_int_equal(buf_append_char(&text, ']'), 0);
    assert_int_equal(jsontext_array_elements(text.data, text.len, &spans, &count), 0);
    assert_int_equal(count, N);
    for (int i = 0; i < N; i += 997) {
        struct json_span v;
        char num[16];

        assert_int_equal(
            jsontext_member(text.data + spans[i].start, spans[i].len, "i", &v), 0);
        snprintf(num, sizeof(num), "%d", i);
        assert_bytes("element", text.data + spans[i].start + v.start, v.len, num,
                     strlen(num));
    }
    free(spans);
    buf_free(&text);
}

/* A 1000-item page like the API's, about half a megabyte. */
static void make_page(struct buf *page)
{
    assert_int_equal(buf_append_str(page, "{\"items\": ["), 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(
            buf_printf(
                page,
                "%s{\"item_id\": \"bji-%08d-5d3c-4c1a-9d2b-3f0e8a1b2c4d\", "
                "\"item_name\": \"Quarterly report %d \\u00e9t\\u00e9.pdf\", "
                "\"status\": \"completed\", \"completed_at\": "
                "\"2019-12-27T18:11:19.117Z\", \"effective_at\": "
                "\"2019-12-27T18:11:19.117Z\", \"error_message\": null, \"job_id\": "
                "\"pjb-%08d-aaaa-bbbb-cccc-dddddddddddd\", \"job_record_id\": "
                "\"rec-%08d\", \"skip_reason\": null, \"started_at\": "
                "\"2019-12-27T18:11:19.117Z\", \"output\": {\"pages\": %d, "
                "\"score\": %d.5e-3, \"tags\": [\"a\", \"b\", \"c\"], \"notes\": "
                "\"%0200d\"}}",
                i ? ", " : "", i, i, i, i, i, i, i),
            0);
    assert_int_equal(
        buf_append_str(page, "], \"next_page_token\": null, \"total_size\": 1000}"), 0);
}

/* A page of a thousand items re-indents and reads back to the same text.
 * Speed is measured by scripts/bench.py, never in a test. */
static void test_page_round_trip(void **state)
{
    struct buf page = BUF_INIT, out = BUF_INIT, back = BUF_INIT;

    (void)state;
    make_page(&page);
    assert_true(page.len > 400000);
    assert_int_equal(jsontext_pretty(page.data, page.len, &out), 0);
    assert_true(out.len > page.len);
    assert_int_equal(jsontext_compact(out.data, out.len, &back), 0);
    assert_int_equal(jsontext_validate(out.data, out.len), 0);
    buf_free(&page);
    buf_free(&out);
    buf_free(&back);
}

/* Fails each allocation of `fn` in turn: -ENOMEM, `out` untouched. */
static void test_pretty_allocation_failure(void **state)
{
    struct buf page = BUF_INIT, out = BUF_INIT;
    long calls;

    (void)state;
    make_page(&page);
    for (int compact = 0; compact < 2; compact++) {
        assert_int_equal(buf_append_str(&out, "kept"), 0);
        alloc_calls = 0;
        assert_int_equal(
            (compact ? jsontext_compact : jsontext_pretty)(page.data, page.len, &out), 0);
        calls = alloc_calls;
        assert_true(calls > 0);
        for (long k = 0; k < calls; k++) {
            struct buf fresh = BUF_INIT;
            int rc;

            assert_int_equal(buf_append_str(&fresh, "kept"), 0);
            alloc_countdown = k;
            rc = (compact ? jsontext_compact : jsontext_pretty)(page.data, page.len,
                                                                &fresh);
            alloc_countdown = -1;
            assert_int_equal(rc, -ENOMEM);
            assert_int_equal(fresh.len, 4);
            assert_string_equal(fresh.data, "kept");
            buf_free(&fresh);
        }
        buf_free(&out);
    }
    buf_free(&page);
}

static void test_deep_allocation_failure(void **state)
{
    size_t len;
    char *text = nested(100000, "[", "", "]", &len);
    struct buf out = BUF_INIT;

    (void)state;
    assert_int_equal(buf_append_str(&out, "kept"), 0);
    /* The output buffer is large enough; only the nesting stack grows. */
    assert_int_equal(buf_reserve(&out, 4 * len), 0);
    alloc_calls = 0;
    assert_int_equal(jsontext_compact(text, len, &out), 0);
    assert_true(alloc_calls > 0);
    out.len = 4;
    for (long k = 0, calls = alloc_calls; k < calls; k++) {
        alloc_countdown = k;
        assert_int_equal(jsontext_compact(text, len, &out), -ENOMEM);
        alloc_countdown = -1;
        assert_int_equal(out.len, 4);
    }
    /* validate has the same stack; it reports the failure the same way. */
    alloc_countdown = 0;
    assert_int_equal(jsontext_validate(text, len), -ENOMEM);
    alloc_countdown = -1;
    buf_free(&out);
    free(text);
}

static void test_elements_allocation_failure(void **state)
{
    struct buf text = BUF_INIT;
    struct json_span *spans = NULL;
    size_t count = 0;

    (void)state;
    assert_int_equal(buf_append_char(&text, '['), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(buf_printf(&text, "%s%d", i ? "," : "", i), 0);
    assert_int_equal(buf_append_char(&text, ']'), 0);
    alloc_calls = 0;
    assert_int_equal(jsontext_array_elements(text.data, text.len, &spans, &count), 0);
    free(spans);
    for (long k = 0, calls = alloc_calls; k < calls; k++) {
        alloc_countdown = k;
        assert_int_equal(jsontext_array_elements(text.data, text.len, &spans, &count),
                         -ENOMEM);
        alloc_countdown = -1;
        assert_null(spans);
        assert_int_equal(count, 0);
    }
    buf_free(&text);
}

/* Counts: whole numbers a double holds exactly, in any JSON spelling. */
static void test_count(void **state)
{
    static const struct {
        const char *text;
        bool ok;
        size_t value;
    } cases[] = {
        {"0", true, 0},
        {"120", true, 120},
        {"1.2e2", true, 120},
        {"5000.0", true, 5000},
        {"9007199254740992", true, 9007199254740992ULL},
        {"-1", false, 0},
        {"1.5", false, 0},
        {"\"12\"", false, 0},
        {"null", false, 0},
        {"9007199254740993e3", false, 0},
        {"1e400", false, 0},
        {"", false, 0},
    };
    size_t value;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct json_span span = {0, strlen(cases[i].text)};

        value = 7;
        assert_int_equal(jsontext_count(cases[i].text, span, &value), cases[i].ok);
        if (cases[i].ok)
            assert_int_equal(value, cases[i].value);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_fixtures),
        cmocka_unit_test(test_invalid_fixtures),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_null_text),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_indent_limit),
        cmocka_unit_test(test_appends_to_existing),
        cmocka_unit_test(test_member),
        cmocka_unit_test(test_members),
        cmocka_unit_test(test_string),
        cmocka_unit_test(test_string_in_place),
        cmocka_unit_test(test_string_not_unicode),
        cmocka_unit_test(test_array_elements),
        cmocka_unit_test(test_valid_readings),
        cmocka_unit_test(test_page_readings),
        cmocka_unit_test(test_many_elements),
        cmocka_unit_test(test_page_round_trip),
        cmocka_unit_test(test_pretty_allocation_failure),
        cmocka_unit_test(test_deep_allocation_failure),
        cmocka_unit_test(test_elements_allocation_failure),
        cmocka_unit_test(test_count),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
