/*
 * The README's options table and the man page list exactly the options of
 * options_table (fs/options.c), with the same placeholders and defaults.
 *
 * README rows, in the "## Command line" section: | `-o name=VALUE` |
 * default | meaning | (backticks and the "\|" escape removed before
 * comparing; other rows are not options).
 * Man page: .BI "\-o name=" VALUE, then a paragraph holding
 * "(default X)" or "(default: X)", X ending at ')' or ';'; no such text
 * means "none". Every difference is printed before the test fails.
 * Both also name libfuse's -f, -d, -s, --help and --version (the README
 * as `-f` anywhere in that section, the man page in .B or .BR lines).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "batchfs/options.h"

#define DOCS_MAX_ROWS 64

/* One option as a document lists it. */
struct doc_option {
    char usage[128]; /* "-o name=VALUE" */
    char shown[256]; /* its default as written */
};

static void copy_plain(char *to, size_t size, const char *from, size_t len);

struct doc {
    const char *what; /* "README.md", for messages */
    struct doc_option rows[DOCS_MAX_ROWS];
    size_t count;
    char flags[1024]; /* the other options' entries, in plain text */
};

/* Appends the plain text of an entry for options other than -o. */
static void doc_add_flags(struct doc *doc, const char *text, size_t len)
{
    size_t used = strlen(doc->flags);

    if (used + len + 2 > sizeof(doc->flags))
        fail_msg("%s: too many other options", doc->what);
    doc->flags[used++] = ' ';
    copy_plain(doc->flags + used, sizeof(doc->flags) - used, text, len);
}

/* The text of a file under BATCHFS_SOURCE_ROOT (malloc'd). */
static char *read_source_file(const char *relative)
{
    const char *root = getenv("BATCHFS_SOURCE_ROOT");
    char path[4096];
    FILE *f;
    char *text;
    long size;

    if (!root)
        fail_msg("BATCHFS_SOURCE_ROOT is not set");
    snprintf(path, sizeof(path), "%s/%s", root, relative);
    f = fopen(path, "r");
    if (!f)
        fail_msg("%s: %s", path, strerror(errno));
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size >= 0);
    rewind(f);
    text = malloc((size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)size, f), (size_t)size);
    text[size] = '\0';
    fclose(f);
    return text;
}

/* Copies `len` bytes of `from` into `to` without the markup both documents
 * put around values: Markdown's backticks and "\|", troff's font changes
 * (\fB \fI \fR \fP), "\-" and "\&"; white space is trimmed. */
static void copy_plain(char *to, size_t size, const char *from, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len && n + 1 < size; i++) {
        if (from[i] == '`')
            continue;
        if (from[i] == '\\' && i + 1 < len) {
            char next = from[i + 1];

            if (next == 'f' && i + 2 < len) {
                i += 2;
                continue;
            }
            if (next == '&') {
                i++;
                continue;
            }
            if (next == '-' || next == '|') {
                to[n++] = next;
                i++;
                continue;
            }
        }
        to[n++] = from[i];
    }
    while (n && (to[n - 1] == ' ' || to[n - 1] == '\t'))
        n--;
    to[n] = '\0';
    memmove(to, to + strspn(to, " \t"), strlen(to + strspn(to, " \t")) + 1);
}

static struct doc_option *doc_add(struct doc *doc)
{
    if (doc->count == DOCS_MAX_ROWS)
        fail_msg("%s: more than %d options", doc->what, DOCS_MAX_ROWS);
    return &doc->rows[doc->count++];
}

/* The end of the table cell that starts at `cell` (its '|' or the end of
 * the line); "\|" does not end a cell. */
static const char *cell_end(const char *cell, const char *line_end)
{
    const char *p = cell;

    while (p < line_end && !(*p == '|' && (p == cell || p[-1] != '\\')))
        p++;
    return p;
}

static void read_readme(struct doc *doc)
{
    static const char section[] = "\n## Command line\n";
    char *text = read_source_file("README.md");
    const char *start = strstr(text, section);

    if (!start)
        fail_msg("README.md: no \"## Command line\" section");
    for (const char *line = start + strlen(section); *line;) {
        const char *end = line + strcspn(line, "\n");

        if (!strncmp(line, "## ", 3))
            break;
        /* Other options are `-f` and the like, in a row or in a sentence. */
        for (const char *tick = memchr(line, '`', (size_t)(end - line)), *close;
             tick && (close = memchr(tick + 1, '`', (size_t)(end - tick - 1)));
             tick = memchr(close + 1, '`', (size_t)(end - close - 1))) {
            if (tick[1] == '-' && strncmp(tick + 1, "-o ", 3))
                doc_add_flags(doc, tick + 1, (size_t)(close - tick - 1));
        }
        if (!strncmp(line, "| `-o ", 6)) {
            struct doc_option *row = doc_add(doc);
            const char *first = line + 1, *first_end = cell_end(first, end);
            const char *second = first_end + 1, *second_end;

            if (first_end >= end)
                fail_msg("README.md: a row with one cell: %.*s", (int)(end - line), line);
            second_end = cell_end(second, end);
            copy_plain(row->usage, sizeof(row->usage), first,
                       (size_t)(first_end - first));
            copy_plain(row->shown, sizeof(row->shown), second,
                       (size_t)(second_end - second));
        }
        line = *end ? end + 1 : end;
    }
    free(text);
}

/* Where a man page paragraph ends: the next request that starts another. */
static bool man_paragraph_ends(const char *line)
{
    static const char *const breaks[] = {".TP", ".PP", ".LP", ".P\n",
                                         ".IP", ".SH", ".SS"};

    for (size_t i = 0; i < sizeof(breaks) / sizeof(breaks[0]); i++)
        if (!strncmp(line, breaks[i], strlen(breaks[i])))
            return true;
    return false;
}

/* The default a man page paragraph states, or "none". */
static void man_default(char *to, size_t size, const char *paragraph)
{
    char plain[4096];
    const char *at, *end;

    copy_plain(plain, sizeof(plain), paragraph, strlen(paragraph));
    at = strstr(plain, "(default");
    if (!at) {
        snprintf(to, size, "none");
        return;
    }
    at += strlen("(default");
    at += strspn(at, ": ");
    end = at + strcspn(at, ");");
    copy_plain(to, size, at, (size_t)(end - at));
}

static void read_man_page(struct doc *doc)
{
    static const char start[] = ".BI \"\\-o ";
    char *text = read_source_file("doc/batchfs.1");

    for (const char *line = text; *line;) {
        const char *end = line + strcspn(line, "\n");

        if (!strncmp(line, start, strlen(start))) {
            struct doc_option *row = doc_add(doc);
            const char *name = line + strlen(start), *quote = strchr(name, '"');
            char usage[256], placeholder[64], paragraph[4096] = "";
            size_t used = 0;

            if (!quote || quote > end)
                fail_msg("batchfs.1: cannot read %.*s", (int)(end - line), line);
            copy_plain(placeholder, sizeof(placeholder), quote + 1,
                       (size_t)(end - quote - 1));
            snprintf(usage, sizeof(usage), "-o %.*s%s", (int)(quote - name), name,
                     placeholder);
            copy_plain(row->usage, sizeof(row->usage), usage, strlen(usage));
            /* The paragraph: the lines up to the next one. */
            line = *end ? end + 1 : end;
            while (*line && !man_paragraph_ends(line)) {
                end = line + strcspn(line, "\n");
                used += (size_t)snprintf(paragraph + used, sizeof(paragraph) - used,
                                         "%.*s ", (int)(end - line), line);
                if (used >= sizeof(paragraph))
                    fail_msg("batchfs.1: the paragraph of %s is too long", row->usage);
                line = *end ? end + 1 : end;
            }
            man_default(row->shown, sizeof(row->shown), paragraph);
            continue;
        }
        if (!strncmp(line, ".B \\-", 5) || !strncmp(line, ".BR \\-", 6))
            doc_add_flags(doc, line, (size_t)(end - line));
        line = *end ? end + 1 : end;
    }
    free(text);
}

/* Prints every difference between `doc` and options_table; returns how
 * many there are. */
static int compare_with_table(const struct doc *doc)
{
    bool seen[DOCS_MAX_ROWS] = {false};
    int differences = 0;

    for (size_t i = 0; i < options_table_length; i++) {
        const struct options_row *row = &options_table[i];
        char usage[128], shown[256];
        size_t found = doc->count;

        snprintf(usage, sizeof(usage), "-o %s=%s", row->name, row->placeholder);
        options_default_text(row, shown, sizeof(shown));
        for (size_t j = 0; j < doc->count; j++) {
            if (!strcmp(doc->rows[j].usage, usage)) {
                if (seen[j] || found != doc->count) {
                    print_error("%s: '%s' is listed twice\n", doc->what, usage);
                    differences++;
                }
                found = j;
                seen[j] = true;
            }
        }
        if (found == doc->count) {
            print_error("%s: '%s' is missing\n", doc->what, usage);
            differences++;
        } else if (strcmp(doc->rows[found].shown, shown)) {
            print_error("%s: '%s' has default '%s' where the code has '%s'\n", doc->what,
                        usage, doc->rows[found].shown, shown);
            differences++;
        }
    }
    for (size_t j = 0; j < doc->count; j++) {
        if (!seen[j]) {
            print_error("%s: '%s' is not an option of the code\n", doc->what,
                        doc->rows[j].usage);
            differences++;
        }
    }
    return differences;
}

/* The options of libfuse's command line that batchfs documents. */
static void expect_flags(const struct doc *doc)
{
    static const char *const flags[] = {"-f", "-d", "-s", "--help", "--version"};
    char tokens[sizeof(doc->flags) + 2];

    /* " -f, -d, -s " -> " -f -d -s ": each flag a word between spaces. */
    snprintf(tokens, sizeof(tokens), "%s ", doc->flags);
    for (char *p = tokens; *p; p++)
        if (*p == ',' || *p == '"')
            *p = ' ';
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        char word[32];

        snprintf(word, sizeof(word), " %s ", flags[i]);
        if (!strstr(tokens, word))
            fail_msg("%s: %s is not listed (found:%s)", doc->what, flags[i], doc->flags);
    }
}

static void test_readme_lists_the_tables_options(void **state)
{
    static struct doc doc = {.what = "README.md"};

    (void)state;
    read_readme(&doc);
    assert_int_equal(compare_with_table(&doc), 0);
    expect_flags(&doc);
}

static void test_man_page_lists_the_tables_options(void **state)
{
    static struct doc doc = {.what = "doc/batchfs.1"};

    (void)state;
    read_man_page(&doc);
    assert_int_equal(compare_with_table(&doc), 0);
    expect_flags(&doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readme_lists_the_tables_options),
        cmocka_unit_test(test_man_page_lists_the_tables_options),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
