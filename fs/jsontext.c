/*
 * jsontext — JSON as text, byte for byte (see include/batchfs/jsontext.h).
 *
 * One iterative walker validates a value and, optionally, writes it back out
 * pretty-printed or compacted; member lookup and array listing use the same
 * walker to step over values. Strings and numbers are never decoded on the
 * way out: their bytes are copied in runs, so "1.0", "1E400" and "\u00e9"
 * come out exactly as they went in.
 *
 * Not a JSON library: nothing here builds values. The fields batchfs needs
 * from the API's objects are found and decoded here in place. Strictness
 * follows RFC 8259 (control characters in strings, bad escapes, stray
 * commas are all errors), except that integers of any size and \u0000 are
 * accepted, and that the contents of a string need not be Unicode: bytes
 * that are not UTF-8 and unpaired surrogate escapes are kept (see
 * jsontext.h for why and how they decode).
 *
 * The nesting stack is one bit per level (object or array), kept on the C
 * stack up to JT_STACK_WORDS * 64 levels and on the heap beyond, so depth
 * costs neither recursion nor quadratic time.
 */
#include "batchfs/jsontext.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Levels of nesting tracked without a heap allocation. */
#define JT_STACK_WORDS 256

/* Widest indentation ever written: members at JSONTEXT_MAX_INDENT_DEPTH. */
#define JT_INDENT_MAX (2 * JSONTEXT_MAX_INDENT_DEPTH)

static const char jt_spaces[] =
    "                                                                "
    "                                                                ";

_Static_assert(sizeof(jt_spaces) == JT_INDENT_MAX + 1, "indent table size");

enum jt_layout {
    JT_VALIDATE, /* write nothing */
    JT_PRETTY,
    JT_COMPACT,
    JT_MEASURE,  /* write nothing; count what JT_PRETTY and JT_COMPACT would write */
};

struct jt_stack {
    uint64_t local[JT_STACK_WORDS];
    uint64_t *bits; /* local, or a heap copy once deeper than local allows */
    size_t words;
    size_t depth;
};

struct jt_writer {
    enum jt_layout layout;
    struct buf *out;
    size_t counted; /* JT_MEASURE: bytes JT_PRETTY would have written */
    size_t compact; /* JT_MEASURE: bytes JT_COMPACT would have written */
};

static bool jt_is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t jt_skip_space(const char *t, size_t len, size_t pos)
{
    while (pos < len && jt_is_space((unsigned char)t[pos]))
        pos++;
    return pos;
}

static int jt_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reads the four hex digits of a \u escape at t[pos]; -1 if malformed. */
static long jt_hex4(const char *t, size_t len, size_t pos)
{
    long v = 0;

    if (len - pos < 4)
        return -1;
    for (size_t i = 0; i < 4; i++) {
        int d = jt_hex((unsigned char)t[pos + i]);

        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

#define JT_ONES 0x0101010101010101ULL
#define JT_HIGHS 0x8080808080808080ULL

/* The 8 bytes at p as one word. */
static uint64_t jt_word(const char *p)
{
    uint64_t w;

    memcpy(&w, p, sizeof(w));
    return w;
}

/* Sets the top bit of each byte of `w` that is a quote or a backslash
 * (among others, but never misses one: borrows cannot cause false
 * negatives). Byte-parallel; only the top bits count. */
static uint64_t jt_word_quotes(uint64_t w)
{
    uint64_t quote = w ^ (JT_ONES * '"'), backslash = w ^ (JT_ONES * '\\');

    return ((quote - JT_ONES) & ~quote) | ((backslash - JT_ONES) & ~backslash);
}

/*
 * The 8 bytes at p with the top bit set of each that may end a plain run
 * of a string (a control character, a quote, a backslash, or a byte of a
 * multi-byte sequence), 0 when none does. The lowest byte set is one
 * that does; a borrow may set bytes above it that do not.
 */
static uint64_t jt_word_looks(const char *p)
{
    uint64_t w = jt_word(p);

    return ((w - JT_ONES * 0x20) | jt_word_quotes(w) | w) & JT_HIGHS;
}

/*
 * Scans the string whose opening quote is at t[pos]; on success *end is just
 * past the closing quote. Bytes above 0x7F are content whatever they are,
 * and a \u escape may name any UTF-16 code unit, paired or not: both are
 * the API's strings as sent, which a page must not be refused for.
 */
static int jt_scan_string(const char *t, size_t len, size_t pos, size_t *end)
{
    const unsigned char *s = (const unsigned char *)t;

    pos++;
    for (;;) {
        /* Plain printable ASCII is the bulk of any document: run over it,
         * eight bytes at a time while none of them needs a look, then
         * straight to the first that does: the lowest byte flagged is
         * exact (a borrow only spoils the bytes above it), and is the
         * first in memory on a little-endian machine. */
        while (len - pos >= 8) {
            uint64_t looks = jt_word_looks(t + pos);

            if (!looks) {
                pos += 8;
                continue;
            }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            pos += (size_t)__builtin_ctzll(looks) / 8;
#endif
            break;
        }
        while (pos < len && s[pos] >= 0x20 && s[pos] < 0x80 && s[pos] != '"' &&
               s[pos] != '\\')
            pos++;
        if (pos >= len)
            return -EINVAL;
        if (s[pos] == '"') {
            *end = pos + 1;
            return 0;
        }
        if (s[pos] < 0x20)
            return -EINVAL;
        if (s[pos] >= 0x80) {
            pos++;
            continue;
        }
        /* A backslash. */
        if (++pos >= len)
            return -EINVAL;
        switch (s[pos]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            pos++;
            break;
        case 'u':
            if (jt_hex4(t, len, pos + 1) < 0)
                return -EINVAL;
            pos += 5;
            break;
        default:
            return -EINVAL;
        }
    }
}

static size_t jt_skip_digits(const char *t, size_t len, size_t pos)
{
    while (pos < len && t[pos] >= '0' && t[pos] <= '9')
        pos++;
    return pos;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? starting at t[pos]. */
static int jt_scan_number(const char *t, size_t len, size_t pos, size_t *end)
{
    size_t p = pos;

    if (p < len && t[p] == '-')
        p++;
    if (p >= len)
        return -EINVAL;
    if (t[p] == '0')
        p++;
    else if (t[p] >= '1' && t[p] <= '9')
        p = jt_skip_digits(t, len, p + 1);
    else
        return -EINVAL;
    if (p < len && t[p] == '.') {
        size_t q = jt_skip_digits(t, len, p + 1);

        if (q == p + 1)
            return -EINVAL;
        p = q;
    }
    if (p < len && (t[p] == 'e' || t[p] == 'E')) {
        size_t q;

        p++;
        if (p < len && (t[p] == '+' || t[p] == '-'))
            p++;
        q = jt_skip_digits(t, len, p);
        if (q == p)
            return -EINVAL;
        p = q;
    }
    *end = p;
    return 0;
}

static int jt_scan_literal(const char *t, size_t len, size_t pos, size_t *end)
{
    static const char *const words[] = {"true", "false", "null"};

    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        size_t n = strlen(words[i]);

        if (len - pos >= n && memcmp(t + pos, words[i], n) == 0) {
            *end = pos + n;
            return 0;
        }
    }
    return -EINVAL;
}

static void jt_stack_init(struct jt_stack *st)
{
    st->bits = st->local;
    st->words = JT_STACK_WORDS;
    st->depth = 0;
}

static void jt_stack_free(struct jt_stack *st)
{
    if (st->bits != st->local)
        free(st->bits);
}

static int jt_stack_push(struct jt_stack *st, bool is_object)
{
    size_t word = st->depth / 64;
    uint64_t mask = (uint64_t)1 << (st->depth % 64);

    if (word >= st->words) {
        size_t words = st->words * 2;
        uint64_t *bits;

        if (words > SIZE_MAX / sizeof(*bits))
            return -ENOMEM;
        bits = realloc(st->bits == st->local ? NULL : st->bits, words * sizeof(*bits));
        if (!bits)
            return -ENOMEM;
        if (st->bits == st->local)
            memcpy(bits, st->local, sizeof(st->local));
        st->bits = bits;
        st->words = words;
    }
    if (is_object)
        st->bits[word] |= mask;
    else
        st->bits[word] &= ~mask;
    st->depth++;
    return 0;
}

static bool jt_stack_top_is_object(const struct jt_stack *st)
{
    size_t d = st->depth - 1;

    return (st->bits[d / 64] >> (d % 64)) & 1;
}

/* jt_put for a writer that writes or measures. */
static int jt_put_out(struct jt_writer *w, const char *s, size_t n, bool newline,
                      size_t level)
{
    struct buf *out = w->out;
    size_t indent = newline ? 2 * level : 0;
    int rc;

    if (w->layout == JT_MEASURE) {
        w->counted += n + (newline ? 1 + indent : 0);
        w->compact += n;
        return 0;
    }
    rc = buf_reserve(out, n + 1 + indent);
    if (rc)
        return rc;
    memcpy(out->data + out->len, s, n);
    out->len += n;
    if (newline) {
        out->data[out->len++] = '\n';
        memcpy(out->data + out->len, jt_spaces, indent);
        out->len += indent;
    }
    out->data[out->len] = '\0';
    return 0;
}

/* Writes `n` bytes followed by an optional newline and indentation. Inline
 * so that validating, which writes nothing, pays a test per token rather
 * than a call: every page of the API is validated whole. */
static inline int jt_put(struct jt_writer *w, const char *s, size_t n, bool newline,
                         size_t level)
{
    return w->layout == JT_VALIDATE ? 0 : jt_put_out(w, s, n, newline, level);
}

/* Whether a container opened at `level` (0 = top) is laid out over lines. */
static bool jt_indented(const struct jt_writer *w, size_t level)
{
    return (w->layout == JT_PRETTY || w->layout == JT_MEASURE) &&
           level < JSONTEXT_MAX_INDENT_DEPTH;
}

/*
 * Walks the one value starting at t[*pos] (white space before it skipped),
 * writing it through `w`; *pos ends just past the value.
 */
static int jt_walk(const char *t, size_t len, size_t *pos, struct jt_writer *w)
{
    struct jt_stack st;
    size_t p = *pos, end;
    bool want_key = false; /* next token must be a member name */
    int rc;

    jt_stack_init(&st);
    for (;;) {
        unsigned char c;

        /* Expecting a value (or, with want_key, a member name). */
        p = jt_skip_space(t, len, p);
        if (p >= len) {
            rc = -EINVAL;
            goto out;
        }
        c = (unsigned char)t[p];
        if (want_key) {
            bool indented = jt_indented(w, st.depth - 1);

            if (c != '"') {
                rc = -EINVAL;
                goto out;
            }
            rc = jt_scan_string(t, len, p, &end);
            if (rc)
                goto out;
            rc = jt_put(w, t + p, end - p, false, 0);
            if (rc)
                goto out;
            p = jt_skip_space(t, len, end);
            if (p >= len || t[p] != ':') {
                rc = -EINVAL;
                goto out;
            }
            rc = jt_put(w, ": ", indented ? 2 : 1, false, 0);
            if (rc)
                goto out;
            if (indented && w->layout == JT_MEASURE)
                w->compact--; /* compact keys take ":" */
            p++;
            want_key = false;
            continue;
        }
        if (c == '{' || c == '[') {
            char close = c == '{' ? '}' : ']';
            size_t q = jt_skip_space(t, len, p + 1);

            if (q < len && t[q] == close) {
                char empty[2] = {(char)c, close};

                rc = jt_put(w, empty, 2, false, 0);
                if (rc)
                    goto out;
                p = q + 1;
            } else {
                rc = jt_put(w, t + p, 1, jt_indented(w, st.depth), st.depth + 1);
                if (rc)
                    goto out;
                rc = jt_stack_push(&st, c == '{');
                if (rc)
                    goto out;
                p++;
                want_key = c == '{';
                continue;
            }
        } else {
            if (c == '"')
                rc = jt_scan_string(t, len, p, &end);
            else if (c == '-' || (c >= '0' && c <= '9'))
                rc = jt_scan_number(t, len, p, &end);
            else
                rc = jt_scan_literal(t, len, p, &end);
            if (rc)
                goto out;
            rc = jt_put(w, t + p, end - p, false, 0);
            if (rc)
                goto out;
            p = end;
        }

        /* A value is complete: close containers until one continues. */
        for (;;) {
            bool is_object, indented;

            if (st.depth == 0) {
                *pos = p;
                rc = 0;
                goto out;
            }
            is_object = jt_stack_top_is_object(&st);
            indented = jt_indented(w, st.depth - 1);
            p = jt_skip_space(t, len, p);
            if (p >= len) {
                rc = -EINVAL;
                goto out;
            }
            if (t[p] == ',') {
                rc = jt_put(w, ",", 1, indented, st.depth);
                if (rc)
                    goto out;
                p++;
                want_key = is_object;
                break;
            }
            if (t[p] != (is_object ? '}' : ']')) {
                rc = -EINVAL;
                goto out;
            }
            st.depth--;
            if (indented) {
                rc = jt_put(w, "", 0, true, st.depth);
                if (rc)
                    goto out;
            }
            rc = jt_put(w, t + p, 1, false, 0);
            if (rc)
                goto out;
            p++;
        }
    }
out:
    jt_stack_free(&st);
    return rc;
}

/* The whole of `text` as one value, written through `w`. */
static int jt_document(const char *text, size_t len, struct jt_writer *w)
{
    size_t pos = 0;
    int rc;

    if (!text && len)
        return -EINVAL;
    rc = jt_walk(text, len, &pos, w);
    if (rc)
        return rc;
    if (jt_skip_space(text, len, pos) != len)
        return -EINVAL;
    return 0;
}

static int jt_render(const char *text, size_t len, struct buf *out, enum jt_layout layout)
{
    struct jt_writer w = {layout, out, 0, 0};
    size_t saved = out->len;
    int rc;

    rc = jt_document(text, len, &w);
    if (!rc && layout == JT_PRETTY)
        rc = buf_append_char(out, '\n');
    if (rc) {
        out->len = saved;
        if (out->data)
            out->data[saved] = '\0';
    }
    return rc;
}

int jsontext_pretty(const char *text, size_t len, struct buf *out)
{
    return jt_render(text, len, out, JT_PRETTY);
}

int jsontext_compact(const char *text, size_t len, struct buf *out)
{
    return jt_render(text, len, out, JT_COMPACT);
}

int jsontext_validate(const char *text, size_t len)
{
    struct jt_writer w = {JT_VALIDATE, NULL, 0, 0};

    return jt_document(text, len, &w);
}

int jsontext_measure(const char *text, size_t len, size_t *pretty, size_t *compact)
{
    struct jt_writer w = {JT_MEASURE, NULL, 0, 0};
    int rc = jt_document(text, len, &w);

    *pretty = rc ? 0 : w.counted + 1; /* the final newline */
    *compact = rc ? 0 : w.compact;
    return rc;
}

int jsontext_pretty_length(const char *text, size_t len, size_t *out)
{
    size_t compact;

    return jsontext_measure(text, len, out, &compact);
}

/*
 * Decodes the escape of a validated string whose backslash is at t[p - 1]
 * (so t[p] is the letter after it): writes its UTF-8 bytes to out and
 * returns how many (1 to 4); *next is the index just past the escape.
 */
static size_t jt_decode_escape(const char *t, size_t stop, size_t p, unsigned char out[4],
                               size_t *next)
{
    unsigned long cp;

    *next = p + 1;
    switch (t[p]) {
    case 'b':
        out[0] = '\b';
        return 1;
    case 'f':
        out[0] = '\f';
        return 1;
    case 'n':
        out[0] = '\n';
        return 1;
    case 'r':
        out[0] = '\r';
        return 1;
    case 't':
        out[0] = '\t';
        return 1;
    case 'u':
        break;
    default: /* '"', '\\', '/' stand for themselves */
        out[0] = (unsigned char)t[p];
        return 1;
    }
    cp = (unsigned long)jt_hex4(t, stop, p + 1);
    *next = p + 5;
    if (cp >= 0xD800 && cp <= 0xDBFF && stop - *next >= 6 && t[p + 5] == '\\' &&
        t[p + 6] == 'u') {
        long lo = jt_hex4(t, stop, p + 7);

        if (lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + ((unsigned long)lo - 0xDC00);
            *next = p + 11;
        }
    }
    /* An unpaired surrogate falls through to the three-byte form below:
     * ED A0 80 to ED BF BF, which is not UTF-8 (see jsontext.h). */
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * Compares the already-validated string token t[start, end) (quotes
 * included), escapes decoded, with `key` of `key_len` bytes (no NUL).
 */
static bool jt_key_equals(const char *t, size_t start, size_t end, const char *key,
                          size_t key_len)
{
    const unsigned char *k = (const unsigned char *)key;
    const unsigned char *k_end = k + key_len;
    size_t p = start + 1, stop = end - 1;

    /* Names without escapes are the rule: compare them in one go. */
    if (stop - p == key_len && !memchr(t + p, '\\', key_len))
        return memcmp(t + p, key, key_len) == 0;
    while (p < stop) {
        unsigned char bytes[4];
        size_t n;

        if (t[p] != '\\') {
            /* Compare the run up to the next escape in one go. */
            const char *bs = memchr(t + p, '\\', stop - p);
            size_t run = bs ? (size_t)(bs - (t + p)) : stop - p;

            if (run > (size_t)(k_end - k) || memcmp(k, t + p, run) != 0)
                return false;
            k += run;
            p += run;
            continue;
        }
        n = jt_decode_escape(t, stop, p + 1, bytes, &p);
        if (n > (size_t)(k_end - k) || memcmp(k, bytes, n) != 0)
            return false;
        k += n;
    }
    return k == k_end;
}

int jsontext_string(const char *text, size_t len, char *out, size_t *out_len)
{
    size_t end, p = 1, stop = len - 1, n = 0;

    if (!text || len < 2 || text[0] != '"' || jt_scan_string(text, len, 0, &end) ||
        end != len)
        return -EINVAL;
    while (p < stop) {
        const char *bs = memchr(text + p, '\\', stop - p);
        size_t run = bs ? (size_t)(bs - (text + p)) : stop - p;

        /* memmove: out may be text itself (see jsontext.h). */
        memmove(out + n, text + p, run);
        n += run;
        p += run;
        if (p < stop)
            n += jt_decode_escape(text, stop, p + 1, (unsigned char *)out + n, &p);
    }
    out[n] = '\0';
    *out_len = n;
    return 0;
}

/*
 * Steps through the container `text` (an object when `open` is '{'), calling
 * back once per member value or element with its span; the member name
 * token's span is passed for objects.
 */
typedef int (*jt_visit_fn)(void *ctx, const char *text, struct json_span name,
                           struct json_span value);

/* Just past the string of validated text whose opening quote is at t[p]:
 * only quotes and backslashes are looked at. len when it is not closed
 * (text that was not validated after all). */
static size_t jt_skip_valid_string(const char *t, size_t len, size_t p)
{
    p++;
    for (;;) {
        while (len - p >= 8 && !(jt_word_quotes(jt_word(t + p)) & JT_HIGHS))
            p += 8;
        while (p < len && t[p] != '"' && t[p] != '\\')
            p++;
        if (p >= len)
            return len;
        if (t[p] == '"')
            return p + 1;
        if (len - p <= 2)
            return len;
        p += 2; /* the backslash and the byte it escapes (a \u escape's digits are plain) */
    }
}

/* Just past the value of validated text that starts at t[p]: strings are
 * skipped whole, brackets counted, nothing checked. Never beyond len. */
static size_t jt_skip_valid(const char *t, size_t len, size_t p)
{
    size_t depth = 0;

    while (p < len) {
        char c = t[p];

        if (c == '"') {
            p = jt_skip_valid_string(t, len, p);
            if (depth == 0)
                return p;
        } else if (c == '{' || c == '[') {
            depth++;
            p++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return p; /* not a value: text that was not validated */
            p++;
            if (--depth == 0)
                return p;
        } else if (depth == 0) {
            /* A number or a literal runs to the next separator. */
            while (p < len && t[p] != ',' && t[p] != '}' && t[p] != ']' &&
                   !jt_is_space((unsigned char)t[p]))
                p++;
            return p;
        } else {
            p++;
        }
    }
    return len;
}

struct jt_member_ctx;

/* A member of an object whose value, when it is an array, jt_each_from
 * reads as jsontext_array_objects_valid does, where it steps over it: its
 * name (decoded), and the reading's keys and visitor. */
struct jt_inner {
    const char *name;
    size_t len;
    struct jt_member_ctx *m;
    jsontext_element_fn visit;
    void *ctx;
};

static int jt_objects_from(const char *text, size_t len, size_t *pos, bool valid,
                           struct jt_member_ctx *m, jsontext_element_fn visit, void *ctx);

/* Whether the value at text[p] of the member `name` (quotes included) is
 * to be read by `inner`: the name compared as jt_member_visit compares it,
 * escapes decoded, so that the array it reads is the one found. */
static bool jt_is_inner(const struct jt_inner *inner, const char *text,
                        struct json_span name, size_t p, size_t len)
{
    return inner && p < len && text[p] == '[' &&
           jt_key_equals(text, name.start, name.start + name.len, inner->name,
                         inner->len);
}

/* Visits the members (or elements) of the object (or array) that starts at
 * text[*pos], after spaces, and sets *pos just past its closing bracket.
 * With `valid`, the text was validated whole before: values are skipped,
 * not walked (see jt_skip_valid), and member names found, not checked.
 * The array value of the member `inner` names (NULL: none) is read by it
 * in the same step, checked as the rest is. */
static int jt_each_from_in(const char *text, size_t len, size_t *pos, char open,
                           bool valid, const struct jt_inner *inner, jt_visit_fn visit,
                           void *ctx)
{
    struct jt_writer w = {JT_VALIDATE, NULL, 0, 0};
    char close = open == '{' ? '}' : ']';
    size_t p;
    int rc;

    if (!text && len)
        return -EINVAL;
    p = jt_skip_space(text, len, *pos);
    if (p >= len || text[p] != open)
        return -EINVAL;
    p = jt_skip_space(text, len, p + 1);
    if (p < len && text[p] == close) {
        p++;
    } else {
        for (;;) {
            struct json_span name = {0, 0}, value;
            size_t end;

            p = jt_skip_space(text, len, p);
            if (open == '{') {
                if (p >= len || text[p] != '"')
                    return -EINVAL;
                if (valid)
                    end = jt_skip_valid_string(text, len, p);
                else if ((rc = jt_scan_string(text, len, p, &end)))
                    return rc;
                name.start = p;
                name.len = end - p;
                p = jt_skip_space(text, len, end);
                if (p >= len || text[p] != ':')
                    return -EINVAL;
                p = jt_skip_space(text, len, p + 1);
            }
            value.start = p;
            if (jt_is_inner(inner, text, name, p, len)) {
                if ((rc = jt_objects_from(text, len, &p, valid, inner->m, inner->visit,
                                          inner->ctx)))
                    return rc;
            } else if (valid) {
                p = jt_skip_valid(text, len, p);
            } else if ((rc = jt_walk(text, len, &p, &w))) {
                return rc;
            }
            if (p == value.start)
                return -EINVAL; /* no value: text that was not validated */
            value.len = p - value.start;
            rc = visit(ctx, text, name, value);
            if (rc)
                return rc;
            p = jt_skip_space(text, len, p);
            if (p >= len)
                return -EINVAL;
            if (text[p] == close) {
                p++;
                break;
            }
            if (text[p] != ',')
                return -EINVAL;
            p++;
        }
    }
    *pos = p;
    return 0;
}

static int jt_each_from(const char *text, size_t len, size_t *pos, char open, bool valid,
                        jt_visit_fn visit, void *ctx)
{
    return jt_each_from_in(text, len, pos, open, valid, NULL, visit, ctx);
}

/* jt_each_from_in for the whole of text: nothing but spaces after it. */
static int jt_each_in(const char *text, size_t len, char open, bool valid,
                      const struct jt_inner *inner, jt_visit_fn visit, void *ctx)
{
    size_t p = 0;
    int rc = jt_each_from_in(text, len, &p, open, valid, inner, visit, ctx);

    if (rc)
        return rc;
    return jt_skip_space(text, len, p) == len ? 0 : -EINVAL;
}

static int jt_each(const char *text, size_t len, char open, bool valid, jt_visit_fn visit,
                   void *ctx)
{
    return jt_each_in(text, len, open, valid, NULL, visit, ctx);
}

struct jt_member_ctx {
    const char *const *keys;
    size_t count;
    size_t key_lens[JSONTEXT_MAX_KEYS];
    uint64_t short_lens; /* bit n: a key is n < 64 bytes long */
    struct json_span *found; /* [count] */
};

static int jt_member_visit(void *ctx, const char *text, struct json_span name,
                           struct json_span value)
{
    struct jt_member_ctx *m = ctx;
    const char *raw = text + name.start + 1;
    size_t n = name.len - 2;

    /* A name without escapes, the rule, can only be a key of its length:
     * most names of an object are no key at all and cost one bit test. */
    if (!memchr(raw, '\\', n)) {
        if (n < 64 && !((m->short_lens >> n) & 1))
            return 0;
        for (size_t i = 0; i < m->count; i++) {
            if (m->key_lens[i] == n && memcmp(raw, m->keys[i], n) == 0) {
                m->found[i] = value;
                break;
            }
        }
        return 0;
    }
    for (size_t i = 0; i < m->count; i++) {
        if (jt_key_equals(text, name.start, name.start + name.len, m->keys[i],
                          m->key_lens[i])) {
            m->found[i] = value;
            break;
        }
    }
    return 0;
}

/* Readies m to find `keys` into out[count], each {0, 0} for now. */
static int jt_member_ctx_init(struct jt_member_ctx *m, const char *const *keys,
                              size_t count, struct json_span *out)
{
    *m = (struct jt_member_ctx){keys, count, {0}, 0, out};
    if (!keys || !out || count > JSONTEXT_MAX_KEYS)
        return -EINVAL;
    for (size_t i = 0; i < count; i++) {
        if (!keys[i])
            return -EINVAL;
        m->key_lens[i] = strlen(keys[i]);
        if (m->key_lens[i] < 64)
            m->short_lens |= (uint64_t)1 << m->key_lens[i];
        out[i] = (struct json_span){0, 0};
    }
    return 0;
}

static int jt_members(const char *text, size_t len, bool valid, const char *const *keys,
                      size_t count, struct json_span *out)
{
    struct jt_member_ctx m;
    int rc = jt_member_ctx_init(&m, keys, count, out);

    if (rc)
        return rc;
    return jt_each(text, len, '{', valid, jt_member_visit, &m);
}

int jsontext_members(const char *text, size_t len, const char *const *keys, size_t count,
                     struct json_span *out)
{
    return jt_members(text, len, false, keys, count, out);
}

int jsontext_members_valid(const char *text, size_t len, const char *const *keys,
                           size_t count, struct json_span *out)
{
    return jt_members(text, len, true, keys, count, out);
}

int jsontext_member(const char *text, size_t len, const char *key, struct json_span *out)
{
    struct json_span found;
    int rc = jsontext_members(text, len, &key, 1, &found);

    if (rc)
        return rc;
    if (!found.len)
        return -ENOENT;
    *out = found;
    return 0;
}

struct jt_elements_ctx {
    struct json_span *spans;
    size_t count;
    size_t cap;
};

static int jt_elements_visit(void *ctx, const char *text, struct json_span name,
                             struct json_span value)
{
    struct jt_elements_ctx *e = ctx;

    (void)text;
    (void)name;
    if (e->count == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 16;
        struct json_span *spans;

        if (cap > SIZE_MAX / sizeof(*spans))
            return -ENOMEM;
        spans = realloc(e->spans, cap * sizeof(*spans));
        if (!spans)
            return -ENOMEM;
        e->spans = spans;
        e->cap = cap;
    }
    e->spans[e->count++] = value;
    return 0;
}

static int jt_array_elements(const char *text, size_t len, bool valid,
                             struct json_span **spans, size_t *count)
{
    struct jt_elements_ctx e = {NULL, 0, 0};
    int rc;

    rc = jt_each(text, len, '[', valid, jt_elements_visit, &e);
    if (rc) {
        free(e.spans);
        *spans = NULL;
        *count = 0;
        return rc;
    }
    *spans = e.spans;
    *count = e.count;
    return 0;
}

int jsontext_array_elements(const char *text, size_t len, struct json_span **spans,
                            size_t *count)
{
    return jt_array_elements(text, len, false, spans, count);
}

int jsontext_array_elements_valid(const char *text, size_t len, struct json_span **spans,
                                  size_t *count)
{
    return jt_array_elements(text, len, true, spans, count);
}

/* Reads the array that starts at text[*pos], after spaces, as
 * jsontext_array_objects(_valid) does (with `valid`, the text was
 * validated before), and sets *pos just past its closing bracket. */
static int jt_objects_from(const char *text, size_t len, size_t *pos, bool valid,
                           struct jt_member_ctx *m, jsontext_element_fn visit, void *ctx)
{
    struct jt_writer w = {JT_VALIDATE, NULL, 0, 0};
    size_t p;
    int rc;

    if (!text && len)
        return -EINVAL;
    p = jt_skip_space(text, len, *pos);
    if (p >= len || text[p] != '[')
        return -EINVAL;
    p = jt_skip_space(text, len, p + 1);
    if (p < len && text[p] == ']') {
        *pos = p + 1;
        return 0;
    }
    for (;;) {
        struct json_span element = {p, 0};
        bool object = p < len && text[p] == '{';

        if (object) {
            /* The members are read where the element is stepped over. */
            for (size_t i = 0; i < m->count; i++)
                m->found[i] = (struct json_span){0, 0};
            if ((rc = jt_each_from(text, len, &p, '{', valid, jt_member_visit, m)))
                return rc;
        } else if (valid) {
            p = jt_skip_valid(text, len, p);
            if (p == element.start)
                return -EINVAL; /* no value: text that was not validated */
        } else if ((rc = jt_walk(text, len, &p, &w))) {
            return rc;
        }
        element.len = p - element.start;
        rc = visit(ctx, element, object ? m->found : NULL);
        if (rc)
            return rc;
        p = jt_skip_space(text, len, p);
        if (p >= len)
            return -EINVAL;
        if (text[p] == ']')
            break;
        if (text[p] != ',')
            return -EINVAL;
        p = jt_skip_space(text, len, p + 1);
    }
    *pos = p + 1;
    return 0;
}

int jsontext_array_objects_valid(const char *text, size_t len, const char *const *keys,
                                 size_t count, struct json_span *found,
                                 jsontext_element_fn visit, void *ctx)
{
    struct jt_member_ctx m;
    size_t p = 0;
    int rc = jt_member_ctx_init(&m, keys, count, found);

    if (!rc)
        rc = jt_objects_from(text, len, &p, true, &m, visit, ctx);
    if (rc)
        return rc;
    return jt_skip_space(text, len, p) == len ? 0 : -EINVAL;
}

int jsontext_page(const char *text, size_t len, const char *const *keys, size_t count,
                  struct json_span *out, const char *array_key,
                  const char *const *element_keys, size_t n_element_keys,
                  struct json_span *found, jsontext_element_fn visit, void *ctx)
{
    struct jt_member_ctx members, elements;
    struct jt_inner inner = {array_key, array_key ? strlen(array_key) : 0, &elements,
                             visit, ctx};
    int rc = jt_member_ctx_init(&members, keys, count, out);

    if (!rc)
        rc = jt_member_ctx_init(&elements, element_keys, n_element_keys, found);
    if (!rc && !array_key)
        rc = -EINVAL;
    if (rc)
        return rc;
    return jt_each_in(text, len, '{', false, &inner, jt_member_visit, &members);
}

/* See jsontext.h. */
bool jsontext_count(const char *text, struct json_span span, size_t *out)
{
    char digits[40];
    char *end;
    double d;
    char c = span.len ? text[span.start] : '\0';

    if (!(c == '-' || (c >= '0' && c <= '9')) || span.len >= sizeof(digits))
        return false;
    memcpy(digits, text + span.start, span.len);
    digits[span.len] = '\0';
    d = strtod(digits, &end); /* the C locale: batchfs never sets another */
    if (*end || !(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d ||
        (uint64_t)d > SIZE_MAX)
        return false;
    *out = (size_t)d;
    return true;
}

int jsontext_append_string(struct buf *out, const char *s, size_t len)
{
    int rc = buf_append_char(out, '"');

    for (size_t i = 0; i < len && !rc; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *short_form = c == '"'    ? "\\\""
                                 : c == '\\' ? "\\\\"
                                 : c == '\n' ? "\\n"
                                 : c == '\t' ? "\\t"
                                 : c == '\r' ? "\\r"
                                             : NULL;

        if (short_form)
            rc = buf_append_str(out, short_form);
        else if (c < 0x20)
            rc = buf_printf(out, "\\u%04x", c);
        else
            rc = buf_append_char(out, (char)c);
    }
    return rc ? rc : buf_append_char(out, '"');
}
