/*
 * Unit tests for produced: a batch's documents (v2 parse and extract jobs,
 * v1 parse results) and its source directory's file names, against the
 * scripted transport. Bodies come from tests/data/produced/, answers of the
 * API double; strings are checked against jansson's decoding of the same
 * bytes, or against bytes written out here where jansson refuses them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "batchfs/api.h"
#include "batchfs/buf.h"
#include "batchfs/jsontext.h"
#include "batchfs/log.h"
#include "batchfs/produced.h"
#include "failing_alloc.h"
#include "fake_transport.h"

#define PARSE_JOB "pjb-52e2409c-08c4-47ad-86a5-d6f590edded7"
#define DIRECTORY "dir-1d08c9d0-7f28-483c-b619-1e20068b592e"

struct env {
    struct fake_transport *fake;
    struct api *api;
};

static struct api *make_api(struct fake_transport *fake, const char *project)
{
    struct api_config config = {
        .transport = fake_transport_transport(fake),
        .project_id = project,
        .page_size = 1000,
        .max_parallel = 4,
        .max_items = 1000000,
    };

    return api_new(&config);
}

static int setup(void **state)
{
    struct env *env = calloc(1, sizeof(*env));

    if (!env || !(env->fake = fake_transport_new()) ||
        !(env->api = make_api(env->fake, NULL)))
        return -1;
    *state = env;
    return 0;
}

static int teardown(void **state)
{
    struct env *env = *state;

    api_free(env->api);
    fake_transport_free(env->fake);
    free(env);
    return 0;
}

/* tests/data/produced/<name>, whole. */
static void read_produced(const char *name, struct buf *out)
{
    const char *dir = getenv("BATCHFS_TEST_DATA");
    char path[4096], chunk[65536];
    FILE *f;
    size_t got;

    assert_non_null(dir);
    snprintf(path, sizeof(path), "%s/produced/%s", dir, name);
    f = fopen(path, "rb");
    assert_non_null(f);
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
        assert_int_equal(buf_append(out, chunk, got), 0);
    fclose(f);
}

static void add_bytes(struct env *env, const char *pattern, long status, const char *body,
                      size_t len)
{
    struct fake_rule rule = {
        .pattern = pattern, .status = status, .body = body, .body_len = len};

    assert_int_equal(fake_transport_add(env->fake, &rule), 0);
}

/* Answers requests matching `pattern` with a fixture of tests/data/produced. */
static void add_produced(struct env *env, const char *pattern, long status,
                         const char *name)
{
    struct buf body = BUF_INIT;

    read_produced(name, &body);
    add_bytes(env, pattern, status, body.data, body.len);
    buf_free(&body);
}

static void add_error(struct env *env, const char *pattern, int error)
{
    struct fake_rule rule = {.pattern = pattern, .error = error};

    assert_int_equal(fake_transport_add(env->fake, &rule), 0);
}

/* The string member `key` of the fixture, as jansson decodes it. */
static char *jansson_string(const char *fixture, const char *key, size_t *len)
{
    struct buf body = BUF_INIT;
    json_t *root;
    const json_t *value;
    char *copy;

    read_produced(fixture, &body);
    root = json_loadb(body.data, body.len, JSON_ALLOW_NUL, NULL);
    assert_non_null(root);
    value = json_object_get(root, key);
    assert_true(json_is_string(value));
    *len = json_string_length(value);
    copy = malloc(*len + 1);
    assert_non_null(copy);
    memcpy(copy, json_string_value(value), *len + 1);
    json_decref(root);
    buf_free(&body);
    return copy;
}

static void assert_bytes(const struct buf *got, const char *want, size_t want_len)
{
    assert_int_equal(got->len, want_len);
    assert_memory_equal(got->data, want, want_len);
    assert_int_equal(got->data[got->len], '\0');
}

/* A warning logged now, to tell whether a call logs one after it. */
static void mark_problems(void)
{
    log_warning("test mark");
}

static bool problem_is_mark(void)
{
    char last[512];
    time_t when;

    return log_last_problem(last, sizeof(last), &when) && !strcmp(last, "test mark");
}

static void assert_problem_contains(const char *a, const char *b)
{
    char last[512];
    time_t when;

    assert_true(log_last_problem(last, sizeof(last), &when));
    if (!strstr(last, a) || (b && !strstr(last, b)))
        fail_msg("last problem \"%s\" lacks \"%s\" or \"%s\"", last, a, b ? b : "");
}

/* ---- what a directory listing delivered ------------------------------- */

struct files_seen {
    size_t pages, n;
    char *ids[256];
    struct buf names[256];
    bool named[256];
    size_t abort_on_page;
};

static int collect_files(void *arg, const struct produced_file *files, size_t count)
{
    struct files_seen *seen = arg;

    seen->pages++;
    if (seen->abort_on_page && seen->pages == seen->abort_on_page)
        return -EINTR;
    for (size_t i = 0; i < count; i++) {
        assert_true(seen->n < 256);
        assert_int_equal(strlen(files[i].id), files[i].id_len);
        seen->ids[seen->n] = strndup(files[i].id, files[i].id_len);
        seen->names[seen->n] = (struct buf)BUF_INIT;
        seen->named[seen->n] = files[i].display_name != NULL;
        seen->n++;
        /* Allocations fail here too in test_out_of_memory. */
        if (!seen->ids[seen->n - 1])
            return -ENOMEM;
        if (files[i].display_name) {
            assert_int_equal(files[i].display_name[files[i].display_name_len], '\0');
            if (buf_append(&seen->names[seen->n - 1], files[i].display_name,
                           files[i].display_name_len) < 0)
                return -ENOMEM;
        }
    }
    return 0;
}

static void files_seen_free(struct files_seen *seen)
{
    for (size_t i = 0; i < seen->n; i++) {
        free(seen->ids[i]);
        buf_free(&seen->names[i]);
    }
}

/* Each body answers one call of `get`: -EIO, one warning naming
 * `request`, nothing handed back (get checks that). */
static void assert_bodies_refused(struct env *env, const char *const *bodies,
                                  size_t count, int (*get)(struct env *env),
                                  const char *request)
{
    for (size_t i = 0; i < count; i++) {
        fake_transport_reset(env->fake);
        add_bytes(env, "*", 200, bodies[i], 0);
        mark_problems();
        if (get(env) != -EIO)
            fail_msg("body %zu was not refused: %s", i, bodies[i]);
        assert_problem_contains(request, NULL);
    }
}

static int get_parse_bad(struct env *env)
{
    struct produced_job job;
    int rc =
        produced_get_parse(api_request(env->api), "pjb-bad", PRODUCED_MARKDOWN, &job);

    assert_null(job.status_text);
    assert_null(job.content.data);
    return rc;
}

static int get_extract_bad(struct env *env)
{
    struct produced_job job;
    int rc = produced_get_extract(api_request(env->api), "pjb-bad", &job);

    assert_null(job.status_text);
    assert_null(job.content.data);
    return rc;
}

static int get_v1_bad(struct env *env)
{
    struct buf out = BUF_INIT;
    int rc =
        produced_get_v1_result(api_request(env->api), "pjb-bad", PRODUCED_MARKDOWN, &out);

    assert_null(out.data);
    return rc;
}

/* ---- v2 parse ----------------------------------------------------------- */

static void test_parse_markdown(void **state)
{
    struct env *env = *state;
    struct produced_job job;
    size_t want_len;
    char *want =
        jansson_string("parse_completed_markdown.json", "markdown_full", &want_len);

    add_produced(env, "/api/v2/parse/" PARSE_JOB "?expand=markdown_full", 200,
                 "parse_completed_markdown.json");
    assert_int_equal(
        produced_get_parse(api_request(env->api), PARSE_JOB, PRODUCED_MARKDOWN, &job), 0);
    assert_int_equal(fake_transport_count(env->fake), 1);
    assert_int_equal(job.status, PRODUCED_COMPLETED);
    assert_string_equal(job.status_text, "COMPLETED");
    assert_string_equal(job.updated_at, "2025-03-01T09:31:54.634Z");
    assert_null(job.error_message);
    assert_string_equal(job.tier, "cost_effective");
    assert_false(job.content_null);
    assert_bytes(&job.content, want, want_len);
    /* Non-ASCII round trip: "\u4e8b\u696d" and the pair "\ud83c\udf0d". */
    assert_non_null(
        memmem(job.content.data, job.content.len, "## \xe4\xba\x8b\xe6\xa5\xad", 9));
    assert_non_null(memmem(job.content.data, job.content.len, "\xf0\x9f\x8c\x8d", 4));
    produced_job_free(&job);
    free(want);
}

static void test_parse_text(void **state)
{
    struct env *env = *state;
    struct produced_job job;
    size_t want_len;
    char *want = jansson_string("parse_completed_text.json", "text_full", &want_len);

    add_produced(env, "/api/v2/parse/" PARSE_JOB "?expand=text_full", 200,
                 "parse_completed_text.json");
    assert_int_equal(
        produced_get_parse(api_request(env->api), PARSE_JOB, PRODUCED_TEXT, &job), 0);
    assert_int_equal(job.status, PRODUCED_COMPLETED);
    assert_bytes(&job.content, want, want_len);
    produced_job_free(&job);
    free(want);
}

static void test_parse_job_only(void **state)
{
    struct env *env = *state;
    struct produced_job job;

    add_produced(env, "/api/v2/parse/" PARSE_JOB, 200, "parse_completed_job_only.json");
    assert_int_equal(
        produced_get_parse(api_request(env->api), PARSE_JOB, PRODUCED_JOB_ONLY, &job), 0);
    assert_int_equal(job.status, PRODUCED_COMPLETED);
    assert_true(job.content_null);
    assert_null(job.content.data);
    assert_string_equal(job.tier, "cost_effective");
    produced_job_free(&job);
}

/* Jobs that are not done: their status, no content, 200 all the same. */
static void test_parse_statuses(void **state)
{
    static const struct {
        const char *fixture;
        enum produced_content content;
        enum produced_status status;
        const char *error_message;
    } cases[] = {
        {"parse_running.json", PRODUCED_MARKDOWN, PRODUCED_RUNNING, NULL},
        {"parse_pending.json", PRODUCED_TEXT, PRODUCED_PENDING, NULL},
        {"parse_failed.json", PRODUCED_MARKDOWN, PRODUCED_FAILED,
         "Document is corrupted"},
        {"parse_cancelled.json", PRODUCED_MARKDOWN, PRODUCED_CANCELLED, NULL},
    };
    struct env *env = *state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct produced_job job;

        fake_transport_reset(env->fake);
        add_produced(env, "*", 200, cases[i].fixture);
        assert_int_equal(
            produced_get_parse(api_request(env->api), "pjb-x", cases[i].content, &job),
            0);
        assert_int_equal(job.status, cases[i].status);
        assert_true(job.content_null);
        assert_null(job.content.data);
        assert_non_null(job.updated_at);
        if (cases[i].error_message)
            assert_non_null(job.error_message);
        else
            assert_null(job.error_message);
        produced_job_free(&job);
    }
}

static void test_parse_failed_message(void **state)
{
    struct env *env = *state;
    struct produced_job job;
    size_t want_len;
    char *want;
    struct buf body = BUF_INIT;
    json_t *root;

    read_produced("parse_failed.json", &body);
    root = json_loadb(body.data, body.len, 0, NULL);
    want = strdup(json_string_value(
        json_object_get(json_object_get(root, "job"), "error_message")));
    want_len = strlen(want);
    json_decref(root);
    add_bytes(env, "*", 200, body.data, body.len);
    assert_int_equal(
        produced_get_parse(api_request(env->api), "pjb-x", PRODUCED_MARKDOWN, &job), 0);
    assert_int_equal(job.status, PRODUCED_FAILED);
    assert_int_equal(strlen(job.error_message), want_len);
    assert_string_equal(job.error_message, want);
    produced_job_free(&job);
    free(want);
    buf_free(&body);
}

/* A fast-tier job refuses markdown (400) but gives its text. */
static void test_parse_fast_tier(void **state)
{
    struct env *env = *state;
    struct produced_job job;

    add_produced(env, "*expand=markdown_full", 400, "parse_fast_markdown_refused.json");
    add_produced(env, "*expand=text_full", 200, "parse_fast_text.json");
    mark_problems();
    assert_int_equal(
        produced_get_parse(api_request(env->api), "pjb-fast", PRODUCED_MARKDOWN, &job),
        -EOPNOTSUPP);
    assert_true(problem_is_mark()); /* info, not a warning */
    assert_null(job.status_text);
    assert_null(job.content.data);
    assert_int_equal(
        produced_get_parse(api_request(env->api), "pjb-fast", PRODUCED_TEXT, &job), 0);
    assert_string_equal(job.tier, "fast");
    assert_false(job.content_null);
    assert_true(job.content.len > 1000);
    produced_job_free(&job);
    /* A 400 to a text request is an error like any other. */
    fake_transport_reset(env->fake);
    add_produced(env, "*", 400, "parse_fast_markdown_refused.json");
    assert_int_equal(
        produced_get_parse(api_request(env->api), "pjb-fast", PRODUCED_TEXT, &job), -EIO);
    assert_problem_contains("/api/v2/parse/pjb-fast?expand=text_full", "400");
}

static void test_parse_expired(void **state)
{
    struct env *env = *state;
    struct produced_job job;

    add_produced(env, "*", 404, "parse_expired.json");
    mark_problems();
    assert_int_equal(
        produced_get_parse(api_request(env->api), "pjb-gone", PRODUCED_MARKDOWN, &job),
        -ENOENT);
    assert_true(problem_is_mark());
    assert_null(job.status_text);
}

static void test_parse_unknown_expand(void **state)
{
    struct env *env = *state;
    struct produced_job job;

    add_produced(env, "*", 422, "parse_unknown_expand.json");
    assert_int_equal(
        produced_get_parse(api_request(env->api), "pjb-x", PRODUCED_TEXT, &job), -EIO);
    assert_problem_contains("/api/v2/parse/pjb-x?expand=text_full", "422");
}

/* Bodies that are not what the schema says: -EIO, one warning naming the
 * request, nothing handed back. */
static void test_parse_malformed(void **state)
{
    static const char *const bodies[] = {
        "not json",
        "[]",
        "{}",
        "{\"job\": []}",
        "{\"job\": null}",
        "{\"job\": {}}",
        "{\"job\": {\"status\": null}}",
        "{\"job\": {\"status\": 5}}",
        "{\"job\": {\"status\": \"COMPLETED\", \"updated_at\": 7}}",
        "{\"job\": {\"status\": \"COMPLETED\", \"error_message\": []}}",
        "{\"job\": {\"status\": \"COMPLETED\", \"tier\": false}}",
        "{\"job\": {\"status\": \"COMPLETED\"}, \"markdown_full\": 12}",
        "{\"job\": {\"status\": \"COMPLETED\"}, \"markdown_full\": {\"pages\": []}}",
        "{\"job\": {\"status\": \"COMPLETED\"}, \"markdown_full\": \"cut short",
        "{\"job\": {\"status\": \"COMPLETED\"}, \"markdown_full\": \"bad \\x escape\"}",
        "{\"job\": {\"status\": \"COMPLETED\"}, \"markdown_full\": \"x\"} trailing",
    };
    assert_bodies_refused(*state, bodies, sizeof(bodies) / sizeof(bodies[0]),
                          get_parse_bad,
                          "GET /api/v2/parse/pjb-bad?expand=markdown_full");
}

/* Absent members are as null: a job that gives no content has none. */
static void test_parse_absent_members(void **state)
{
    struct env *env = *state;
    struct produced_job job;

    add_bytes(env, "*", 200, "{\"job\": {\"status\": \"QUEUED\"}}", 0);
    assert_int_equal(
        produced_get_parse(api_request(env->api), "pjb-x", PRODUCED_MARKDOWN, &job), 0);
    assert_int_equal(job.status, PRODUCED_OTHER);
    assert_string_equal(job.status_text, "QUEUED");
    assert_null(job.updated_at);
    assert_null(job.error_message);
    assert_null(job.tier);
    assert_true(job.content_null);
    produced_job_free(&job);
}

/* Every escape, raw UTF-8, bytes that are not UTF-8 and lone surrogates:
 * the exact bytes, nothing added or removed. */
static void test_parse_escapes(void **state)
{
    static const char body[] =
        "{\"markdown_full\": \"caf\\u00e9 \\ud83d\\ude00\\n\\\"q\\\" \\\\ \\/ "
        "\\t\\r\\b\\f"
        "\\u0000nul caf\xc3\xa9 \xff\xfe lone \\ud800 \\udc00 \\ud800\\u0041 end\", "
        "\"job\": {\"status\": \"COMPLETED\", \"updated_at\": \"2025-01-01T00:00:00Z\"}}";
    static const char want[] =
        "caf\xc3\xa9 \xf0\x9f\x98\x80\n\"q\" \\ / \t\r\b\f"
        "\0nul caf\xc3\xa9 \xff\xfe lone \xed\xa0\x80 \xed\xb0\x80 "
        "\xed\xa0\x80"
        "A end";
    struct env *env = *state;
    struct produced_job job;

    add_bytes(env, "*", 200, body, sizeof(body) - 1);
    assert_int_equal(
        produced_get_parse(api_request(env->api), "pjb-x", PRODUCED_MARKDOWN, &job), 0);
    assert_bytes(&job.content, want, sizeof(want) - 1);
    produced_job_free(&job);
}

static void test_parse_empty_string(void **state)
{
    struct env *env = *state;
    struct produced_job job;

    add_bytes(env, "*", 200,
              "{\"job\": {\"status\": \"COMPLETED\"}, \"text_full\": \"\", \"x\": 1}", 0);
    assert_int_equal(
        produced_get_parse(api_request(env->api), "pjb-x", PRODUCED_TEXT, &job), 0);
    assert_false(job.content_null);
    assert_non_null(job.content.data);
    assert_int_equal(job.content.len, 0);
    assert_int_equal(job.content.data[0], '\0');
    produced_job_free(&job);
}

/* A document of several MB inside one JSON string, written by jansson with
 * every non-ASCII character escaped (as the API writes it): decoded to the
 * exact bytes it was made from. */
static void test_parse_large_document(void **state)
{
    static const char chunk[] =
        "| Net revenue | 1\xc2\xa0"
        "234 \xe2\x82\xac | \xe4\xba\x8b\xe6"
        "\xa5\xad \xf0\x9f\x8c\x8d |\n\t\"quoted\" \\ back/slash\n";
    struct env *env = *state;
    struct produced_job job;
    struct buf text = BUF_INIT, body = BUF_INIT;
    json_t *string;
    char *encoded;

    while (text.len < 6u * 1024 * 1024)
        assert_int_equal(buf_append(&text, chunk, sizeof(chunk) - 1), 0);
    string = json_stringn(text.data, text.len);
    assert_non_null(string);
    encoded = json_dumps(string, JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
    assert_non_null(encoded);
    assert_int_equal(
        buf_printf(&body,
                   "{\"job\": {\"status\": \"COMPLETED\"}, \"markdown_full\": "
                   "%s, \"text_full\": null}",
                   encoded),
        0);
    assert_true(body.len > text.len); /* escapes took room */
    add_bytes(env, "*", 200, body.data, body.len);
    assert_int_equal(
        produced_get_parse(api_request(env->api), "pjb-big", PRODUCED_MARKDOWN, &job), 0);
    assert_bytes(&job.content, text.data, text.len);
    produced_job_free(&job);
    free(encoded);
    json_decref(string);
    buf_free(&body);
    buf_free(&text);
}

/* Ids are escaped, the scope added. */
static void test_urls(void **state)
{
    struct env *env = *state;
    struct api *scoped = make_api(env->fake, "prj 1");
    struct produced_job job;
    struct buf out = BUF_INIT;

    assert_non_null(scoped);
    add_error(env, "*", -ETIMEDOUT);
    assert_int_equal(
        produced_get_parse(api_request(scoped), "a/b?c&d", PRODUCED_MARKDOWN, &job),
        -ETIMEDOUT);
    assert_int_equal(produced_get_extract(api_request(scoped), "e/../f", &job),
                     -ETIMEDOUT);
    assert_int_equal(
        produced_get_v1_result(api_request(scoped), "j#1", PRODUCED_TEXT, &out),
        -ETIMEDOUT);
    assert_int_equal(
        produced_get_parse(api_request(scoped), "p", PRODUCED_JOB_ONLY, &job),
        -ETIMEDOUT);
    assert_string_equal(
        fake_transport_request(env->fake, 0),
        "/api/v2/parse/a%2Fb%3Fc%26d?expand=markdown_full&project_id=prj%201");
    assert_string_equal(fake_transport_request(env->fake, 1),
                        "/api/v2/extract/e%2F..%2Ff?project_id=prj%201");
    assert_string_equal(fake_transport_request(env->fake, 2),
                        "/api/v1/parsing/job/j%231/result/text?project_id=prj%201");
    assert_string_equal(fake_transport_request(env->fake, 3),
                        "/api/v2/parse/p?project_id=prj%201");
    api_free(scoped);
}

/* The transport's errors and the usual statuses pass through. */
static void test_failures(void **state)
{
    static const struct {
        long status;
        int error;
        int want;
    } cases[] = {
        {0, -ETIMEDOUT, -ETIMEDOUT},
        {0, -ECONNREFUSED, -ECONNREFUSED},
        {0, -EFBIG, -EFBIG},
        {0, -EIO, -EIO},
        {401, 0, -EACCES},
        {403, 0, -EACCES},
        {429, 0, -EAGAIN},
        {500, 0, -EIO},
        {503, 0, -EIO},
        {302, 0, -EIO},
    };
    struct env *env = *state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct produced_job job;
        struct buf out = BUF_INIT;
        struct files_seen seen = {0};

        fake_transport_reset(env->fake);
        if (cases[i].error)
            add_error(env, "*", cases[i].error);
        else
            add_bytes(env, "*", cases[i].status, "{\"detail\": \"no\"}", 0);
        assert_int_equal(
            produced_get_parse(api_request(env->api), "p", PRODUCED_MARKDOWN, &job),
            cases[i].want);
        assert_int_equal(produced_get_extract(api_request(env->api), "e", &job),
                         cases[i].want);
        assert_int_equal(
            produced_get_v1_result(api_request(env->api), "j", PRODUCED_MARKDOWN, &out),
            cases[i].want);
        assert_null(out.data);
        assert_int_equal(produced_list_directory_files(api_request(env->api), "d",
                                                       collect_files, &seen),
                         cases[i].want);
        assert_int_equal(seen.n, 0);
    }
}

static void test_invalid_arguments(void **state)
{
    struct env *env = *state;
    struct produced_job job;
    struct buf out = BUF_INIT;

    assert_int_equal(produced_get_parse(api_request(env->api), NULL, PRODUCED_TEXT, &job),
                     -EINVAL);
    assert_int_equal(produced_get_parse(api_request(env->api), "", PRODUCED_TEXT, &job),
                     -EINVAL);
    assert_int_equal(
        produced_get_parse(api_request(env->api), "p", (enum produced_content)7, &job),
        -EINVAL);
    assert_int_equal(produced_get_parse(api_request(env->api), "p", PRODUCED_TEXT, NULL),
                     -EINVAL);
    assert_int_equal(produced_get_extract(NULL, "e", &job), -EINVAL);
    assert_int_equal(
        produced_get_v1_result(api_request(env->api), "j", PRODUCED_JOB_ONLY, &out),
        -EINVAL);
    assert_int_equal(
        produced_get_v1_result(api_request(env->api), "", PRODUCED_TEXT, &out), -EINVAL);
    assert_int_equal(fake_transport_count(env->fake), 0);
    produced_job_free(NULL);
}

/* ---- v2 extract --------------------------------------------------------- */

/* The bytes between `"extract_result": ` and `, "metadata"` of a fixture:
 * what the double wrote for it, found without a JSON reader. */
static char *fixture_result(const char *fixture, size_t *len)
{
    struct buf body = BUF_INIT;
    const char *start, *end;
    char *copy;

    read_produced(fixture, &body);
    start = strstr(body.data, "\"extract_result\": ");
    assert_non_null(start);
    start += strlen("\"extract_result\": ");
    end = strstr(start, ", \"metadata\"");
    assert_non_null(end);
    *len = (size_t)(end - start);
    copy = strndup(start, *len);
    assert_non_null(copy);
    buf_free(&body);
    return copy;
}

static void test_extract(void **state)
{
    static const struct {
        const char *fixture;
        char first;
    } cases[] = {{"extract_object.json", '{'}, {"extract_array.json", '['}};
    struct env *env = *state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct produced_job job;
        struct buf pretty = BUF_INIT;
        size_t want_len;
        char *want = fixture_result(cases[i].fixture, &want_len);

        fake_transport_reset(env->fake);
        add_produced(env, "/api/v2/extract/pjb-e", 200, cases[i].fixture);
        assert_int_equal(produced_get_extract(api_request(env->api), "pjb-e", &job), 0);
        assert_int_equal(job.status, PRODUCED_COMPLETED);
        assert_non_null(job.updated_at);
        assert_null(job.tier);
        assert_false(job.content_null);
        assert_int_equal(job.content.data[0], cases[i].first);
        assert_bytes(&job.content, want, want_len);
        assert_int_equal(jsontext_pretty(job.content.data, job.content.len, &pretty), 0);
        buf_free(&pretty);
        produced_job_free(&job);
        free(want);
    }
}

static void test_extract_not_done(void **state)
{
    struct env *env = *state;
    struct produced_job job;

    add_produced(env, "/api/v2/extract/pjb-run", 200, "extract_running.json");
    add_produced(env, "/api/v2/extract/pjb-fail", 200, "extract_failed.json");
    add_produced(env, "/api/v2/extract/pjb-gone", 404, "extract_expired.json");
    assert_int_equal(produced_get_extract(api_request(env->api), "pjb-run", &job), 0);
    assert_int_equal(job.status, PRODUCED_RUNNING);
    assert_true(job.content_null);
    produced_job_free(&job);
    assert_int_equal(produced_get_extract(api_request(env->api), "pjb-fail", &job), 0);
    assert_int_equal(job.status, PRODUCED_FAILED);
    assert_string_equal(job.error_message, "Document is password protected");
    assert_true(job.content_null);
    produced_job_free(&job);
    mark_problems();
    assert_int_equal(produced_get_extract(api_request(env->api), "pjb-gone", &job),
                     -ENOENT);
    assert_true(problem_is_mark());
}

/* Kept byte for byte: spacing, number spellings, escapes, key order. */
static void test_extract_exact_bytes(void **state)
{
    static const char result[] =
        "[ {\"total\":1.50e3 , \"n\": 12345678901234567890123,"
        "\"s\":\"\\u00e9\\ud800\xff\", \"k\": 1, \"k\": 2},\n\t[] ]";
    struct env *env = *state;
    struct produced_job job;
    struct buf body = BUF_INIT;

    assert_int_equal(buf_printf(&body,
                                "{\"extract_result\":%s,\"status\":\"COMPLETED\","
                                "\"updated_at\":null}",
                                result),
                     0);
    add_bytes(env, "*", 200, body.data, body.len);
    assert_int_equal(produced_get_extract(api_request(env->api), "e", &job), 0);
    assert_bytes(&job.content, result, sizeof(result) - 1);
    assert_null(job.updated_at);
    produced_job_free(&job);
    buf_free(&body);
}

static void test_extract_malformed(void **state)
{
    static const char *const bodies[] = {
        "{\"status\": \"COMPLETED\", \"extract_result\": \"text\"}",
        "{\"status\": \"COMPLETED\", \"extract_result\": 42}",
        "{\"status\": \"COMPLETED\", \"extract_result\": true}",
        "{\"extract_result\": {}}",
        "{\"status\": \"COMPLETED\", \"extract_result\": {\"a\": }",
        "[{\"status\": \"COMPLETED\"}]",
    };
    assert_bodies_refused(*state, bodies, sizeof(bodies) / sizeof(bodies[0]),
                          get_extract_bad, "GET /api/v2/extract/pjb-bad");
}

/* ---- v1 ----------------------------------------------------------------- */

static void test_v1_results(void **state)
{
    static const struct {
        const char *fixture, *key, *pattern;
        enum produced_content content;
    } cases[] = {
        {"v1_markdown.json", "markdown", "/api/v1/parsing/job/pjb-1/result/markdown",
         PRODUCED_MARKDOWN},
        {"v1_text.json", "text", "/api/v1/parsing/job/pjb-1/result/text", PRODUCED_TEXT},
    };
    struct env *env = *state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf out = BUF_INIT;
        size_t want_len;
        char *want = jansson_string(cases[i].fixture, cases[i].key, &want_len);

        fake_transport_reset(env->fake);
        add_produced(env, cases[i].pattern, 200, cases[i].fixture);
        assert_int_equal(produced_get_v1_result(api_request(env->api), "pjb-1",
                                                cases[i].content, &out),
                         0);
        assert_bytes(&out, want, want_len);
        assert_true(memmem(out.data, out.len, "\xe4\xba\x8b", 3) != NULL);
        buf_free(&out);
        free(want);
    }
}

static void test_v1_missing(void **state)
{
    static const char *const bodies[] = {
        "{\"markdown\": null}",
        "{\"text\": \"wrong key\"}",
        "{\"markdown\": [\"a\"]}",
        "{\"markdown\": \"cut",
        "null",
    };
    struct env *env = *state;
    struct buf out = BUF_INIT;

    add_produced(env, "*", 404, "v1_unknown.json");
    mark_problems();
    assert_int_equal(
        produced_get_v1_result(api_request(env->api), "pjb-no", PRODUCED_MARKDOWN, &out),
        -ENOENT);
    assert_true(problem_is_mark());
    assert_null(out.data);
    assert_bodies_refused(env, bodies, sizeof(bodies) / sizeof(bodies[0]), get_v1_bad,
                          "GET /api/v1/parsing/job/pjb-bad/result/markdown");
}

/* ---- directory files ---------------------------------------------------- */

/* Whether a file of that exact name was listed. */
static bool listed(const struct files_seen *seen, const char *name, size_t len)
{
    for (size_t i = 0; i < seen->n; i++)
        if (seen->named[i] && seen->names[i].len == len &&
            !memcmp(seen->names[i].data, name, len))
            return true;
    return false;
}

static void add_directory_pages(struct env *env)
{
    add_produced(env, "/api/v1/beta/directories/" DIRECTORY "/files?page_size=1000", 200,
                 "files_page1.json");
    add_produced(env, "*/files?page_size=1000&page_token=ZmlsZXM6MjA", 200,
                 "files_page2.json");
    add_produced(env, "*/files?page_size=1000&page_token=ZmlsZXM6NDA", 200,
                 "files_page3.json");
}

static void test_directory_files(void **state)
{
#define NAME(s) s, sizeof(s) - 1
    struct env *env = *state;
    struct files_seen seen = {0};
    struct buf accents = BUF_INIT;

    add_directory_pages(env);
    assert_int_equal(produced_list_directory_files(api_request(env->api), DIRECTORY,
                                                   collect_files, &seen),
                     0);
    /* Three pages, the last with "next_page_token": "", and no more. */
    assert_int_equal(fake_transport_count(env->fake), 3);
    assert_int_equal(fake_transport_unmatched(env->fake), 0);
    assert_int_equal(seen.pages, 3);
    assert_int_equal(seen.n, 50);
    assert_string_equal(seen.ids[0], "dfl-61acd6bf-c465-49ca-8f04-c23049627af3");
    assert_true(listed(&seen, NAME("/")));
    assert_true(listed(&seen, NAME(".")));
    assert_true(listed(&seen, NAME("..")));
    assert_true(listed(&seen, NAME("a/b/report.pdf")));
    assert_true(listed(&seen, NAME("Z\xc3\xa4hlerstand 5.xlsx")));
    assert_true(listed(&seen, NAME("bad-\xff.pdf")));
    assert_true(listed(&seen, NAME("ctl\x01\x1f.pdf")));
    assert_true(listed(&seen, NAME("lone-\xed\xa0\x80.pdf")));
    assert_true(listed(&seen, NAME("line\nbreak.pdf")));
    assert_true(listed(&seen, NAME("cut-\xe2\x82.pdf")));
    for (int i = 0; i < (284 - 4) / 2; i++)
        assert_int_equal(buf_append(&accents, "\xc3\xa9", 2), 0);
    assert_int_equal(buf_append_str(&accents, ".pdf"), 0);
    assert_true(listed(&seen, accents.data, accents.len));
    buf_free(&accents);
    files_seen_free(&seen);
#undef NAME
}

/* Names jansson can read (UTF-8 without lone surrogates) agree with it. */
static void test_directory_files_match_jansson(void **state)
{
    static const char *const pages[] = {"files_page1.json", "files_page2.json",
                                        "files_page3.json"};
    struct env *env = *state;
    struct files_seen seen = {0};
    size_t k = 0, checked = 0;

    add_directory_pages(env);
    assert_int_equal(produced_list_directory_files(api_request(env->api), DIRECTORY,
                                                   collect_files, &seen),
                     0);
    for (size_t p = 0; p < 3; p++) {
        struct buf body = BUF_INIT;

        read_produced(pages[p], &body);
        /* Page 1 holds raw bytes jansson refuses: item by item instead. */
        for (const char *at = strstr(body.data, "{\"id\": "); at;
             at = strstr(at + 1, "{\"id\": \"dfl-"), k++) {
            const char *end = strstr(at, "\"updated_at\"");
            json_error_t error;
            json_t *item;

            assert_non_null(end);
            end = strchr(end, '}');
            item = json_loadb(at, (size_t)(end - at + 1), JSON_ALLOW_NUL, &error);
            assert_true(k < seen.n);
            if (item) {
                assert_string_equal(json_string_value(json_object_get(item, "id")),
                                    seen.ids[k]);
                const json_t *name = json_object_get(item, "display_name");

                assert_int_equal(json_string_length(name), seen.names[k].len);
                assert_memory_equal(json_string_value(name), seen.names[k].data,
                                    seen.names[k].len);
                checked++;
            }
            json_decref(item);
        }
        buf_free(&body);
    }
    assert_int_equal(k, 50);
    /* All but the two raw bytes and the lone surrogate. */
    assert_int_equal(checked, 47);
    files_seen_free(&seen);
}

static void test_directory_repeated_token(void **state)
{
    struct env *env = *state;
    struct files_seen seen = {0};

    add_bytes(env, "*/files?page_size=1000", 200,
              "{\"items\": [{\"id\": \"f1\", \"display_name\": \"a\"}], "
              "\"next_page_token\": \"T\"}",
              0);
    add_bytes(env, "*page_token=T", 200,
              "{\"items\": [{\"id\": \"f2\", \"display_name\": \"b\"}], "
              "\"next_page_token\": \"T\"}",
              0);
    mark_problems();
    assert_int_equal(
        produced_list_directory_files(api_request(env->api), "d", collect_files, &seen),
        0);
    assert_int_equal(fake_transport_count(env->fake), 2);
    assert_int_equal(seen.n, 2);
    assert_problem_contains("/api/v1/beta/directories/d/files",
                            "repeated next_page_token");
    files_seen_free(&seen);
}

/* An absent token ends the list as an empty one does. */
static void test_directory_absent_token(void **state)
{
    struct env *env = *state;
    struct files_seen seen = {0};

    add_bytes(env, "*", 200, "{\"items\": [{\"id\": \"f1\", \"display_name\": \"a\"}]}",
              0);
    assert_int_equal(
        produced_list_directory_files(api_request(env->api), "d", collect_files, &seen),
        0);
    assert_int_equal(fake_transport_count(env->fake), 1);
    assert_int_equal(seen.n, 1);
    files_seen_free(&seen);
}

/* Files without a usable id are dropped; without a name, listed nameless;
 * a repeated id listed once. */
static void test_directory_odd_files(void **state)
{
    struct env *env = *state;
    struct files_seen seen = {0};

    add_bytes(
        env, "*", 200,
        "{\"items\": [{\"display_name\": \"no id\"}, {\"id\": 7}, {\"id\": \"\"}, 3, "
        "{\"id\": \"f1\"}, {\"id\": \"f2\", \"display_name\": null}, "
        "{\"id\": \"f3\", \"display_name\": 5}, {\"id\": \"f4\", \"display_name\": "
        "\"\"}, "
        "{\"id\": \"f5\", \"display_name\": \"nul\\u0000inside\"}, "
        "{\"id\": \"f1\", \"display_name\": \"again\"}], \"next_page_token\": \"\"}",
        0);
    assert_int_equal(
        produced_list_directory_files(api_request(env->api), "d", collect_files, &seen),
        0);
    assert_int_equal(seen.n, 5);
    assert_string_equal(seen.ids[0], "f1");
    assert_false(seen.named[0]);
    assert_false(seen.named[1]);
    assert_false(seen.named[2]);
    assert_true(seen.named[3]);
    assert_int_equal(seen.names[3].len, 0);
    assert_int_equal(seen.names[4].len, 10);
    assert_memory_equal(seen.names[4].data, "nul\0inside", 10);
    files_seen_free(&seen);
}

static void test_directory_failures(void **state)
{
    static const char *const bodies[] = {
        "not json",
        "{\"items\": {}}",
        "{}",
        "{\"items\": [}",
    };
    struct env *env = *state;
    struct files_seen seen = {0};

    add_bytes(env, "*", 404, "{\"detail\": \"Directory not found\"}", 0);
    assert_int_equal(
        produced_list_directory_files(api_request(env->api), "d", collect_files, &seen),
        -ENOENT);
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        fake_transport_reset(env->fake);
        add_bytes(env, "*", 200, bodies[i], 0);
        assert_int_equal(produced_list_directory_files(api_request(env->api), "d",
                                                       collect_files, &seen),
                         -EIO);
        assert_problem_contains("/api/v1/beta/directories/d/files", NULL);
    }
    /* A failure on the second page ends the list with it. */
    fake_transport_reset(env->fake);
    add_bytes(env, "*/files?page_size=1000", 200,
              "{\"items\": [{\"id\": \"f1\"}], \"next_page_token\": \"T\"}", 0);
    add_error(env, "*page_token=T", -ETIMEDOUT);
    assert_int_equal(
        produced_list_directory_files(api_request(env->api), "d", collect_files, &seen),
        -ETIMEDOUT);
    assert_int_equal(seen.n, 1);
    files_seen_free(&seen);
    assert_int_equal(
        produced_list_directory_files(api_request(env->api), "d", NULL, NULL), -EINVAL);
    assert_int_equal(
        produced_list_directory_files(api_request(env->api), "", collect_files, &seen),
        -EINVAL);
}

static void test_directory_callback_abort(void **state)
{
    struct env *env = *state;
    struct files_seen seen = {.abort_on_page = 2};

    add_directory_pages(env);
    assert_int_equal(produced_list_directory_files(api_request(env->api), DIRECTORY,
                                                   collect_files, &seen),
                     -EINTR);
    assert_int_equal(fake_transport_count(env->fake), 2);
    assert_int_equal(seen.n, 20);
    files_seen_free(&seen);
}

/* The directory id is escaped, the scope added, the token escaped. */
static void test_directory_urls(void **state)
{
    struct env *env = *state;
    struct api *scoped = make_api(env->fake, "p/1");
    struct files_seen seen = {0};

    assert_non_null(scoped);
    add_bytes(env, "*files?page_size=1000&project_id=p%2F1", 200,
              "{\"items\": [{\"id\": \"f\"}], \"next_page_token\": \"a+b/c=\"}", 0);
    add_bytes(env, "*page_token=*", 200, "{\"items\": [], \"next_page_token\": \"\"}", 0);
    assert_int_equal(produced_list_directory_files(api_request(scoped), "d/../x",
                                                   collect_files, &seen),
                     0);
    assert_string_equal(fake_transport_request(env->fake, 0),
                        "/api/v1/beta/directories/d%2F..%2Fx/files?page_size=1000"
                        "&project_id=p%2F1");
    assert_string_equal(fake_transport_request(env->fake, 1),
                        "/api/v1/beta/directories/d%2F..%2Fx/files?page_size=1000"
                        "&page_token=a%2Bb%2Fc%3D&project_id=p%2F1");
    files_seen_free(&seen);
    api_free(scoped);
}

/* ---- out of memory ------------------------------------------------------ */

/* Each allocation of a call fails in turn (the call's allocations counted
 * on a run where none fails): the call ends with -ENOMEM, or succeeds with
 * the right result where the failure is one it can do without; never
 * another errno, never a crash, and nothing leaks (the sanitizer build
 * checks that). */
static int parse_once(struct env *env)
{
    struct produced_job job;
    int rc =
        produced_get_parse(api_request(env->api), PARSE_JOB, PRODUCED_MARKDOWN, &job);

    if (rc == 0)
        assert_int_equal(job.content.len, 4981);
    produced_job_free(&job);
    return rc;
}

static int list_once(struct env *env)
{
    struct files_seen seen = {0};
    int rc = produced_list_directory_files(api_request(env->api), DIRECTORY,
                                           collect_files, &seen);

    if (rc == 0)
        assert_int_equal(seen.n, 50);
    files_seen_free(&seen);
    return rc;
}

static void test_out_of_memory(void **state)
{
    int (*const calls[])(struct env *) = {parse_once, list_once};
    struct env *env = *state;

    add_produced(env, "/api/v2/parse/*", 200, "parse_completed_markdown.json");
    add_directory_pages(env);
    for (size_t c = 0; c < sizeof(calls) / sizeof(calls[0]); c++) {
        long total, failed = 0;

        alloc_calls = 0;
        assert_int_equal(calls[c](env), 0);
        total = alloc_calls;
        assert_true(total > 5);
        for (long n = 0; n < total; n++) {
            int rc;

            alloc_countdown = n;
            rc = calls[c](env);
            alloc_countdown = -1;
            if (rc != 0) {
                assert_int_equal(rc, -ENOMEM);
                failed++;
            }
        }
        assert_true(failed > 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse_markdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_job_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_statuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_failed_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_fast_tier, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_unknown_expand, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_absent_members, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_empty_string, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_large_document, setup, teardown),
        cmocka_unit_test_setup_teardown(test_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extract, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extract_not_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extract_exact_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extract_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v1_results, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v1_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_files_match_jansson, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_directory_repeated_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_absent_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_odd_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_callback_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
    };

    /* Warnings are expected here; errors would still show. */
    log_setup(getenv("TEST_LOG_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR, false);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
