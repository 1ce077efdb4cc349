/*
 * Unit tests of the filesystem model (fs/tree.c, tree_nodes.c and
 * tree_dir.c) over the real catalog, cache and API layer, with the API
 * scripted by the fake transport.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "batchfs/api.h"
#include "batchfs/buf.h"
#include "batchfs/catalog.h"
#include "batchfs/log.h"
#include "batchfs/tree.h"
#include "fake_clock.h"
#include "fake_transport.h"
/* The tree's own fields, for what the API cannot reach in a test: inode
 * numbers past UINT32_MAX, four billion lookups, a callback set late. */
#include "../../fs/tree_private.h"

#define JOB1 "bjb-0001"
#define JOB2 "bjb-0002"

static const char jobs_page[] =
    "{\"items\": [{\"id\": \"" JOB1 "\", \"job_type\": \"parse\", \"project_id\": \"p\", "
    "\"status\": \"running\", \"total_items\": 5, \"x_unknown\": [1, 2.50, null], "
    "\"completed_at\": null, \"created_at\": \"2025-03-01T10:00:00.123Z\"}, "
    "{\"id\": \"" JOB2 "\", \"job_type\": \"extract\", \"project_id\": \"p\", "
    "\"status\": \"completed\", \"total_items\": 0, "
    "\"completed_at\": \"2025-03-02T11:00:00Z\"}], \"total_size\": 2}";

/* Five failed items with hostile names: a slash, a repeated name, an empty
 * name, a newline. */
static const char failed_page[] =
    "{\"items\": ["
    "{\"item_id\": \"itm-a\", \"item_name\": \"a/b.pdf\", \"status\": \"failed\", "
    "\"error_message\": \"Timeout\", \"completed_at\": \"2025-03-01T12:00:00Z\"},"
    "{\"item_id\": \"itm-b\", \"item_name\": \"same.pdf\", \"status\": \"failed\"},"
    "{\"item_id\": \"itm-c\", \"item_name\": \"same.pdf\", \"status\": \"failed\"},"
    "{\"item_id\": \"itm-d\", \"item_name\": \"\", \"status\": \"failed\"},"
    "{\"item_id\": \"itm-e\", \"item_name\": \"line\\nbreak.pdf\", \"status\": \"failed\"}"
    "], \"total_size\": 5}";

static const char job1_body[] =
    "{\"job\": {\"id\": \"" JOB1 "\", \"job_type\": \"parse\", \"project_id\": \"p\", "
    "\"status\": \"running\", \"total_items\": 5, \"x_unknown\": [1, 2.50, null], "
    "\"completed_at\": null, \"created_at\": \"2025-03-01T10:00:00.123Z\"}, "
    "\"progress_percentage\": 20}";

static const char empty_page[] = "{\"items\": [], \"total_size\": 0}";

static const char batch_body[] =
    "{\"id\": \"bat-1\", \"config\": {\"job\": {\"type\": \"parse_v2\"}}, "
    "\"project_id\": \"p\", \"source_directory_id\": \"dir-1\", \"status\": \"RUNNING\", "
    "\"updated_at\": \"2025-03-03T00:00:00Z\", \"results\": ["
    "{\"source_directory_file_id\": \"dfl-1\", \"error_message\": null, "
    "\"job_reference\": null},"
    "{\"source_directory_file_id\": \"dfl-2\", \"error_message\": \"unmapped\", "
    "\"job_reference\": {\"type\": \"parse\", \"id\": \"pjb-9\"}}]}";

struct env {
    struct fake_transport *fake;
    struct api *api;
    struct catalog *catalog;
    struct tree *tree;
    uint64_t invalidated[16];
    size_t n_invalidated;
};

static void record_inval(void *arg, uint64_t ino)
{
    struct env *env = arg;

    if (env->n_invalidated < 16)
        env->invalidated[env->n_invalidated++] = ino;
}

/* Items in the big folder of test_node_bytes: enough for the tables to
 * have grown many times, with a listing per page of the API. */
#define BIG_FOLDER_ITEMS 100000

/* The environment, with `jobs` the first page of the job list, and `big`
 * a handler of JOB1's completed items (or NULL: none). */
static int env_setup_big(void **state, double ttl, const char *jobs, fake_handler_fn big)
{
    struct env *env = calloc(1, sizeof(*env));
    struct api_config ac = {
        .page_size = 1000, .max_parallel = 4, .max_items = BIG_FOLDER_ITEMS};
    /* Listings expire by the test's clock, moved by hand. */
    struct catalog_config cc = {.ttl_s = ttl,
                                .terminal_ttl_s = ttl,
                                .cache_bytes = 1 << 24,
                                .clock = fake_clock_now};
    struct tree_config tc = {.ttl_s = ttl, .terminal_ttl_s = ttl * 10, .uid = 1234,
                             .gid = 5678};

    assert_non_null(env);
    fake_clock_reset();
    env->fake = fake_transport_new();
    ac.transport = fake_transport_transport(env->fake);
    env->api = api_new(&ac);
    cc.api = env->api;
    env->catalog = catalog_new(&cc);
    tc.catalog = env->catalog;
    tc.inval = record_inval;
    tc.inval_arg = env;
    env->tree = tree_new(&tc);
    assert_non_null(env->tree);
    if (big) {
        struct fake_rule rule = {.pattern = "/api/v1/beta/batch-processing/" JOB1
                                            "/items?*status=completed*",
                                 .handler = big};

        assert_int_equal(fake_transport_add(env->fake, &rule), 0);
    }
    /* Pages past the first are empty, as past the end of a real listing. */
    fake_transport_add_body(env->fake, "/api/v1/beta/batch-processing?*offset=0*", 200,
                            jobs);
    fake_transport_add_body(env->fake, "/api/v1/beta/batch-processing?*", 200, empty_page);
    fake_transport_add_body(env->fake,
                            "/api/v1/beta/batch-processing/" JOB1 "/items?*offset=0*failed*",
                            200, failed_page);
    fake_transport_add_body(env->fake, "/api/v1/beta/batch-processing/*/items?*", 200,
                            empty_page);
    fake_transport_add_body(env->fake, "/api/v1/beta/batch-processing/" JOB1, 200, job1_body);
    fake_transport_add_body(env->fake, "/api/v1/beta/batch-processing/bjb-404*", 404,
                            "{\"detail\": \"Batch job not found\"}");
    fake_transport_add_body(env->fake, "/api/v1/beta/batch-processing/bjb-500*", 500,
                            "{\"detail\": \"boom\"}");
    fake_transport_add_body(env->fake, "/api/v2/batches/bat-1?*", 200, batch_body);
    fake_transport_add_body(env->fake, "/api/v2/batches?*", 200,
                            "{\"items\": [{\"id\": \"bat-1\", \"config\": {}, "
                            "\"project_id\": \"p\", \"source_directory_id\": \"d\", "
                            "\"status\": \"RUNNING\", \"results\": null}]}");
    *state = env;
    return 0;
}

static int env_setup_jobs(void **state, double ttl, const char *jobs)
{
    return env_setup_big(state, ttl, jobs, NULL);
}

static int env_setup_ttl(void **state, double ttl)
{
    return env_setup_jobs(state, ttl, jobs_page);
}

/* Jobs whose job_type and status are a NUL, a slash and a byte that is not
 * UTF-8, or ".", which names no folder. */
static const char hostile_groups_page[] =
    "{\"items\": [{\"id\": \"" JOB1 "\", \"job_type\": \"nul\\u0000x\", "
    "\"status\": \"nul\\u0000x\"}, "
    "{\"id\": \"" JOB2 "\", \"job_type\": \"a/b\xff\", \"status\": \"a/b\xff\"}, "
    "{\"id\": \"bjb-0003\", \"job_type\": \".\", \"status\": \"completed\"}], "
    "\"total_size\": 3}";

static int env_setup_hostile_groups(void **state)
{
    return env_setup_jobs(state, 300, hostile_groups_page);
}

static int env_setup(void **state)
{
    return env_setup_ttl(state, 300);
}

static int env_teardown(void **state)
{
    struct env *env = *state;

    tree_free(env->tree);
    catalog_free(env->catalog);
    api_free(env->api);
    fake_transport_free(env->fake);
    free(env);
    return 0;
}

static uint64_t lookup_ok(struct env *env, uint64_t parent, const char *name,
                          struct tree_attr *attr)
{
    struct tree_attr local;

    if (!attr)
        attr = &local;
    assert_int_equal(tree_lookup(env->tree, parent, name, attr), 0);
    assert_true(attr->st.st_ino > TREE_ROOT_INO);
    return attr->st.st_ino;
}

/* The names of a folder, NUL-separated in `out`, "." and ".." included. */
static size_t list_names(struct env *env, uint64_t ino, bool link, char *out, size_t cap)
{
    struct tree_dir *dir;
    bool unchanged;
    size_t used = 0, count;

    assert_int_equal(tree_opendir(env->tree, ino, &dir, &unchanged), 0);
    count = tree_dir_count(dir);
    for (size_t i = 0; i < count; i++) {
        struct tree_attr attr;
        const char *name;

        assert_int_equal(tree_dir_entry(env->tree, dir, i, link, &name, &attr), 0);
        assert_true(used + strlen(name) + 1 <= cap);
        memcpy(out + used, name, strlen(name) + 1);
        used += strlen(name) + 1;
    }
    tree_closedir(dir);
    return count;
}

/* The link count readdir(plus) gives entry `name` of folder `ino`. */
static nlink_t listed_nlink(struct env *env, uint64_t ino, const char *name)
{
    struct tree_dir *dir;
    bool unchanged;
    nlink_t nlink = 0;

    assert_int_equal(tree_opendir(env->tree, ino, &dir, &unchanged), 0);
    for (size_t i = 2; i < tree_dir_count(dir); i++) {
        struct tree_attr attr;
        const char *entry;

        assert_int_equal(tree_dir_entry(env->tree, dir, i, false, &entry, &attr), 0);
        if (!strcmp(entry, name))
            nlink = attr.st.st_nlink;
    }
    tree_closedir(dir);
    return nlink;
}

/* The whole of file `content`, read as the filesystem reads it: a string
 * the caller frees (its length is blob_len's once read). */
static char *read_text(const struct blob *content)
{
    struct buf scratch = BUF_INIT;
    const char *bytes;
    size_t len;
    char *text;

    assert_int_equal(blob_measure(content, &len), 0);
    text = malloc(len + 1);
    assert_non_null(text);
    assert_int_equal(blob_read(content, 0, len, &scratch, &bytes), (long)len);
    memcpy(text, bytes, len);
    text[len] = '\0';
    buf_free(&scratch);
    return text;
}

static bool has_name(const char *names, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++, names += strlen(names) + 1)
        if (!strcmp(names, name))
            return true;
    return false;
}

static void test_root_and_fixed_folders(void **state)
{
    struct env *env = *state;
    struct tree_attr attr;
    char names[4096];

    assert_int_equal(tree_getattr(env->tree, TREE_ROOT_INO, &attr), 0);
    assert_true(S_ISDIR(attr.st.st_mode));
    assert_int_equal(attr.st.st_mode & 07777, 0555);
    assert_int_equal(attr.st.st_uid, 1234);
    assert_int_equal(attr.st.st_gid, 5678);
    assert_int_equal(list_names(env, TREE_ROOT_INO, false, names, sizeof(names)), 7);
    assert_true(has_name(names, 7, "jobs"));
    assert_true(has_name(names, 7, "batches"));
    assert_true(has_name(names, 7, ".batchfs"));
    assert_true(has_name(names, 7, "by-status"));
    assert_true(has_name(names, 7, "by-type"));
    assert_true(has_name(names, 7, ".."));
    assert_int_equal(tree_lookup(env->tree, TREE_ROOT_INO, "nothing", &attr), -ENOENT);
    assert_int_equal(fake_transport_count(env->fake), 0);
}

/* Folders the kernel never released (a release still queued when the
 * mount went) are closed with the tree: under AddressSanitizer, one left
 * open is a leak of it and of the listing it holds. */
static void test_folders_left_open_closed_with_the_tree(void **state)
{
    struct env *env = *state;
    uint64_t jobs = lookup_ok(env, TREE_ROOT_INO, "jobs", NULL);
    struct tree_dir *root, *listed, *closed;
    bool unchanged;

    assert_int_equal(tree_opendir(env->tree, TREE_ROOT_INO, &root, &unchanged), 0);
    assert_int_equal(tree_opendir(env->tree, jobs, &listed, &unchanged), 0);
    assert_int_equal(tree_opendir(env->tree, jobs, &closed, &unchanged), 0);
    assert_true(tree_dir_count(listed) > 2);
    /* One closed as usual, between the two left open. */
    tree_closedir(closed);
    assert_int_equal(tree_dir_count(root), 7);
}

static void test_junk_names_cost_no_request(void **state)
{
    struct env *env = *state;
    const char *junk[] = {".git", "HEAD", "foo?x=1", "a b", "..", "-rf", "x/y", ""};
    uint64_t jobs = lookup_ok(env, TREE_ROOT_INO, "jobs", NULL);
    uint64_t batches = lookup_ok(env, TREE_ROOT_INO, "batches", NULL);
    struct tree_attr attr;

    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        assert_int_equal(tree_lookup(env->tree, jobs, junk[i], &attr), -ENOENT);
        assert_int_equal(tree_lookup(env->tree, batches, junk[i], &attr), -ENOENT);
    }
    assert_int_equal(fake_transport_count(env->fake), 0);
}

static void test_jobs_and_job_folder(void **state)
{
    struct env *env = *state;
    uint64_t jobs = lookup_ok(env, TREE_ROOT_INO, "jobs", NULL);
    struct tree_attr attr;
    struct blob *content;
    bool unchanged;
    char *text;
    char names[4096];
    uint64_t job, json;

    assert_int_equal(list_names(env, jobs, true, names, sizeof(names)), 4);
    assert_true(has_name(names, 4, JOB1));
    assert_true(has_name(names, 4, JOB2));
    job = lookup_ok(env, jobs, JOB1, &attr);
    assert_true(S_ISDIR(attr.st.st_mode));
    /* A parse job: six status folders, markdown/ and text/. */
    assert_int_equal(attr.st.st_nlink, 10);
    /* A listing cannot tell a job's type without reading its text: it says 1
     * (do not count on it), never fewer folders than there are. */
    assert_int_equal(listed_nlink(env, jobs, JOB1), 1);
    assert_int_equal(attr.st.st_mtim.tv_sec, 1740823200); /* created_at */
    assert_int_equal(attr.st.st_mtim.tv_nsec, 123000000);
    assert_int_equal(list_names(env, job, false, names, sizeof(names)), 14);
    assert_true(has_name(names, 14, "job.json"));
    assert_true(has_name(names, 14, "cancelled"));
    assert_true(has_name(names, 14, "items.ndjson"));
    assert_true(has_name(names, 14, "errors.tsv"));
    assert_true(has_name(names, 14, "progress"));
    assert_true(has_name(names, 14, "markdown"));
    assert_true(has_name(names, 14, "text"));
    assert_false(has_name(names, 14, "extracted"));
    /* An extract job has no content folder, and costs no request to say so. */
    assert_int_equal(tree_lookup(env->tree, lookup_ok(env, jobs, JOB2, NULL), "markdown",
                                 &attr),
                     -ENOENT);
    json = lookup_ok(env, job, "job.json", &attr);
    assert_true(S_ISREG(attr.st.st_mode));
    assert_int_equal(attr.st.st_mode & 07777, 0444);
    /* The lookup already told the kernel of this version. */
    assert_int_equal(tree_read(env->tree, json, &content, &unchanged), 0);
    assert_true(unchanged);
    text = read_text(content);
    assert_int_equal((size_t)attr.st.st_size, blob_len(content));
    assert_non_null(strstr(text, "{\n  \"id\": \"" JOB1 "\",\n"));
    assert_non_null(strstr(text, "\"x_unknown\": [\n    1,\n    2.50,\n    null\n  ]"));
    assert_int_equal(text[blob_len(content) - 1], '\n');
    free(text);
    blob_unref(content);
    assert_int_equal(tree_read(env->tree, json, &content, &unchanged), 0);
    assert_true(unchanged);
    blob_unref(content);
    assert_int_equal(tree_read(env->tree, job, &content, &unchanged), -EISDIR);
    /* The job list (its one page and the empty page that confirms the end);
     * the job came from it. */
    assert_int_equal(fake_transport_count(env->fake), 2);
}

static void test_items_hostile_names(void **state)
{
    struct env *env = *state;
    uint64_t jobs = lookup_ok(env, TREE_ROOT_INO, "jobs", NULL);
    uint64_t job = lookup_ok(env, jobs, JOB1, NULL);
    uint64_t failed = lookup_ok(env, job, "failed", NULL);
    struct tree_attr attr;
    struct tree_dir *dir;
    bool unchanged;
    char names[8192];
    const char *p = names;
    size_t count;

    count = list_names(env, failed, true, names, sizeof(names));
    assert_int_equal(count, 7);
    for (size_t i = 0; i < count; i++, p += strlen(p) + 1) {
        assert_null(strchr(p, '/'));
        assert_null(strchr(p, '\n'));
    }
    assert_true(has_name(names, count, "a_b.pdf.json"));
    assert_true(has_name(names, count, "line_break.pdf.json"));
    assert_false(has_name(names, count, "same.pdf.json"));
    assert_true(has_name(names, count, "same.pdf~itm-b.json"));
    assert_true(has_name(names, count, "same.pdf~itm-c.json"));
    assert_true(has_name(names, count, "itm-d.json"));

    lookup_ok(env, failed, "a_b.pdf.json", &attr);
    assert_int_equal(attr.st.st_mtim.tv_sec, 1740830400);
    assert_int_equal(tree_lookup(env->tree, failed, "missing.json", &attr), -ENOENT);

    /* Within the time to live a second open costs nothing and is unchanged. */
    count = fake_transport_count(env->fake);
    assert_int_equal(tree_opendir(env->tree, failed, &dir, &unchanged), 0);
    assert_true(unchanged);
    tree_closedir(dir);
    assert_int_equal(fake_transport_count(env->fake), count);
}

static void test_forget_frees_nodes(void **state)
{
    struct env *env = *state;
    struct tree_stats before, after;
    uint64_t jobs = lookup_ok(env, TREE_ROOT_INO, "jobs", NULL);
    uint64_t job = lookup_ok(env, jobs, JOB1, NULL);
    uint64_t failed = lookup_ok(env, job, "failed", NULL);
    char names[8192];
    struct tree_attr attr;

    tree_get_stats(env->tree, &before);
    list_names(env, failed, true, names, sizeof(names)); /* links 5 items */
    tree_get_stats(env->tree, &after);
    assert_int_equal(after.nodes, before.nodes + 5);
    assert_int_equal(tree_lookup(env->tree, failed, "itm-d.json", &attr), 0);
    tree_forget(env->tree, attr.st.st_ino, 1);
    tree_get_stats(env->tree, &after);
    assert_int_equal(after.nodes, before.nodes + 5); /* one lookup left */
    tree_forget(env->tree, attr.st.st_ino, 1);
    tree_get_stats(env->tree, &after);
    assert_int_equal(after.nodes, before.nodes + 4);
    assert_int_equal(tree_getattr(env->tree, attr.st.st_ino, &attr), -ESTALE);
    /* A folder outlives its forget while children hold it. */
    tree_forget(env->tree, failed, 1);
    tree_get_stats(env->tree, &after);
    assert_int_equal(after.nodes, before.nodes + 4);
}

/* The name of entry `index` of folder `dir`, and its node's number if it
 * has one (tree_dir_entry without linking). */
static uint64_t entry_ino(struct env *env, struct tree_dir *dir, size_t index,
                          const char **name)
{
    struct tree_attr attr;

    assert_int_equal(tree_dir_entry(env->tree, dir, index, false, name, &attr), 0);
    return attr.st.st_ino;
}

/* Nodes made ahead of readdirplus count no lookup, are the ones it then
 * returns, and go at closedir unless the kernel was given them. */
static void test_nodes_made_ahead(void **state)
{
    struct env *env = *state;
    struct tree_stats before, after;
    uint64_t jobs = lookup_ok(env, TREE_ROOT_INO, "jobs", NULL);
    uint64_t job = lookup_ok(env, jobs, JOB1, NULL);
    uint64_t failed = lookup_ok(env, job, "failed", NULL), made;
    struct tree_attr attr;
    struct tree_dir *dir;
    const char *name;
    bool unchanged;

    tree_get_stats(env->tree, &before);
    /* A folder of fixed entries has nothing to make. */
    assert_int_equal(tree_opendir(env->tree, job, &dir, &unchanged), 0);
    tree_dir_prepare(env->tree, dir, 2, 100);
    tree_closedir(dir);
    tree_get_stats(env->tree, &after);
    assert_int_equal(after.nodes, before.nodes);

    assert_int_equal(tree_opendir(env->tree, failed, &dir, &unchanged), 0);
    assert_int_equal(tree_dir_count(dir), 7);
    assert_int_equal(tree_dir_entry(env->tree, dir, 2, true, &name, &attr), 0);
    tree_dir_prepare(env->tree, dir, 3, 2);
    tree_get_stats(env->tree, &after);
    assert_int_equal(after.nodes, before.nodes + 3);
    assert_int_equal(entry_ino(env, dir, 5, &name), 0);
    made = entry_ino(env, dir, 3, &name);
    assert_true(made > TREE_ROOT_INO);
    /* readdirplus returns the node made ahead, and counts one lookup. */
    assert_int_equal(tree_dir_entry(env->tree, dir, 3, true, &name, &attr), 0);
    assert_int_equal(attr.st.st_ino, made);
    /* A lookup keeps entry 4's node; entries 5 and 6 are made past it. */
    lookup_ok(env, failed, tree_dir_name(dir, 4), NULL);
    /* Held, as across a reply, the folder outlives its release. */
    tree_dir_hold(dir);
    tree_closedir(dir);
    tree_dir_prepare(env->tree, dir, 5, 100);
    tree_get_stats(env->tree, &after);
    assert_int_equal(after.nodes, before.nodes + 5);
    tree_closedir(dir);
    tree_get_stats(env->tree, &after);
    assert_int_equal(after.nodes, before.nodes + 3);
    /* One forget frees it: the lookup was counted once. */
    tree_forget(env->tree, made, 1);
    tree_get_stats(env->tree, &after);
    assert_int_equal(after.nodes, before.nodes + 2);
    assert_int_equal(tree_getattr(env->tree, made, &attr), -ESTALE);
}

/* Serves entries [from, to) of `dir` as one readdirplus reply, then makes
 * nodes ahead as the request thread does after it. */
static void reply_plus(struct env *env, struct tree_dir *dir, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        struct tree_attr attr;
        const char *name;

        assert_int_equal(tree_dir_entry(env->tree, dir, i, i >= 2, &name, &attr), 0);
    }
    tree_dir_prepare(env->tree, dir, to, to - from);
}

/* Read in order, every node made ahead is returned and kept; after a seek
 * past nodes made ahead, those are still dropped at close. */
static void test_nodes_made_ahead_then_skipped(void **state)
{
    struct env *env = *state;
    struct tree_stats before, after;
    uint64_t jobs = lookup_ok(env, TREE_ROOT_INO, "jobs", NULL);
    uint64_t job = lookup_ok(env, jobs, JOB1, NULL);
    uint64_t failed = lookup_ok(env, job, "failed", NULL);
    struct tree_dir *dir;
    bool unchanged;

    tree_get_stats(env->tree, &before);
    assert_int_equal(tree_opendir(env->tree, failed, &dir, &unchanged), 0);
    reply_plus(env, dir, 0, 3);
    reply_plus(env, dir, 3, 5);
    reply_plus(env, dir, 5, 7);
    tree_closedir(dir);
    tree_get_stats(env->tree, &after);
    assert_int_equal(after.nodes, before.nodes + 5);

    /* A second handle: entries 3 and 4 are made ahead, then skipped. */
    for (size_t i = 2; i < 7; i++) {
        assert_int_equal(tree_opendir(env->tree, failed, &dir, &unchanged), 0);
        tree_forget(env->tree, entry_ino(env, dir, i, &(const char *){NULL}), 1);
        tree_closedir(dir);
    }
    tree_get_stats(env->tree, &after);
    assert_int_equal(after.nodes, before.nodes);
    assert_int_equal(tree_opendir(env->tree, failed, &dir, &unchanged), 0);
    reply_plus(env, dir, 0, 3);
    tree_get_stats(env->tree, &after);
    assert_int_equal(after.nodes, before.nodes + 4);
    reply_plus(env, dir, 5, 7);
    tree_closedir(dir);
    tree_get_stats(env->tree, &after);
    assert_int_equal(after.nodes, before.nodes + 3);
}

static void test_errors_map_to_errno(void **state)
{
    struct env *env = *state;
    uint64_t jobs = lookup_ok(env, TREE_ROOT_INO, "jobs", NULL);
    struct tree_attr attr;

    assert_int_equal(tree_lookup(env->tree, jobs, "bjb-404", &attr), -ENOENT);
    assert_int_equal(tree_lookup(env->tree, jobs, "bjb-500", &attr), -EIO);
    assert_int_equal(tree_getattr(env->tree, 999999, &attr), -ESTALE);
}

static void test_batches(void **state)
{
    struct env *env = *state;
    uint64_t batches = lookup_ok(env, TREE_ROOT_INO, "batches", NULL);
    uint64_t batch, results, json;
    struct tree_attr attr;
    struct blob *content;
    bool unchanged;
    char *text;
    char names[4096];

    assert_int_equal(list_names(env, batches, true, names, sizeof(names)), 3);
    /* The aggregate files are named but not described by readdirplus. */
    assert_true(has_name(names, 3, "bat-1"));
    batch = lookup_ok(env, batches, "bat-1", &attr);
    /* A parse_v2 batch: results/, markdown/ and text/. */
    assert_int_equal(attr.st.st_nlink, 5);
    assert_int_equal(listed_nlink(env, batches, "bat-1"), 1);
    json = lookup_ok(env, batch, "batch.json", &attr);
    assert_int_equal(tree_read(env->tree, json, &content, &unchanged), 0);
    text = read_text(content);
    assert_non_null(strstr(text, "\"results\": [\n"));
    free(text);
    assert_int_equal((size_t)attr.st.st_size, blob_len(content));
    blob_unref(content);
    results = lookup_ok(env, batch, "results", NULL);
    assert_int_equal(list_names(env, results, true, names, sizeof(names)), 4);
    assert_true(has_name(names, 4, "dfl-1.json"));
    assert_true(has_name(names, 4, "dfl-2.json"));
    lookup_ok(env, results, "dfl-2.json", &attr);
    assert_int_equal(attr.st.st_mtim.tv_sec, 1740960000); /* the batch's updated_at */
}

/* A file whose content changed gets a new inode: the old one keeps serving
 * the version whose size the kernel was told, whole, to whoever still reads
 * it, and the name leads to the new version. */
static void test_changed_content_gets_a_new_inode(void **state)
{
    struct env *env;
    uint64_t jobs, job, json, json2;
    struct blob *content, *old;
    struct tree_attr attr, told;
    bool unchanged;
    char *text;
    char names[4096];

    env_setup_ttl(state, 10);
    env = *state;
    jobs = lookup_ok(env, TREE_ROOT_INO, "jobs", NULL);
    /* Listed: the job's file comes from the job list. */
    assert_int_equal(list_names(env, jobs, false, names, sizeof(names)), 4);
    job = lookup_ok(env, jobs, JOB1, NULL);
    json = lookup_ok(env, job, "job.json", &told);
    assert_int_equal(tree_read(env->tree, json, &old, &unchanged), 0);
    assert_int_equal((off_t)blob_len(old), told.st.st_size);
    /* The job list changes. */
    fake_transport_reset(env->fake);
    fake_transport_add_body(env->fake, "/api/v1/beta/batch-processing?*offset=0*", 200,
                            "{\"items\": [{\"id\": \"" JOB1 "\", \"job_type\": \"parse\", "
                            "\"project_id\": \"p\", \"status\": \"completed\", "
                            "\"total_items\": 5}], \"total_size\": 1}");
    fake_transport_add_body(env->fake, "/api/v1/beta/batch-processing?*", 200, empty_page);
    {
        struct tree_dir *dir;

        fake_clock_advance(11); /* the job list expires */
        assert_int_equal(tree_opendir(env->tree, jobs, &dir, &unchanged), 0);
        assert_false(unchanged);
        tree_closedir(dir);
    }
    /* The old inode: the old size, and the old bytes, still. */
    assert_int_equal(tree_getattr(env->tree, json, &attr), 0);
    assert_int_equal(attr.st.st_size, told.st.st_size);
    assert_int_equal(tree_read(env->tree, json, &content, &unchanged), 0);
    assert_ptr_equal(content, old);
    assert_true(unchanged);
    blob_unref(content);
    assert_int_equal(tree_getattr(env->tree, json, &attr), 0);
    assert_int_equal(attr.st.st_size, told.st.st_size);
    /* The name: a new inode, the new version. */
    json2 = lookup_ok(env, job, "job.json", &attr);
    assert_int_not_equal(json2, json);
    assert_int_equal(tree_read(env->tree, json2, &content, &unchanged), 0);
    assert_int_equal((off_t)blob_len(content), attr.st.st_size);
    text = read_text(content);
    assert_non_null(strstr(text, "\"completed\""));
    free(text);
    text = read_text(old);
    assert_null(strstr(text, "\"completed\""));
    free(text);
    blob_unref(content);
    /* Forgetting the old inode frees it; the new one stays. */
    tree_forget(env->tree, json, 1);
    assert_int_equal(tree_getattr(env->tree, json, &attr), -ESTALE);
    assert_int_equal(tree_getattr(env->tree, json2, &attr), 0);
    blob_unref(old);
    env_teardown(state);
}

/* by-type/ and by-status/ name their folders by rule 1 of the item names:
 * the same value gives the same folder in both. */
static void test_group_names_sanitised(void **state)
{
    struct env *env = *state;
    static const char *const views[] = {"by-type", "by-status"};
    struct tree_attr attr;
    char names[4096];

    for (size_t v = 0; v < 2; v++) {
        uint64_t view = lookup_ok(env, TREE_ROOT_INO, views[v], NULL), group;
        size_t count = list_names(env, view, false, names, sizeof(names));

        assert_int_equal(count, v == 0 ? 4 : 5); /* ".", "..", the groups */
        assert_true(has_name(names, count, "nul_x"));
        assert_true(has_name(names, count, "a_b_"));
        assert_int_equal(has_name(names, count, "completed"), v == 1);
        assert_false(has_name(names, count, "nul"));
        group = lookup_ok(env, view, "nul_x", NULL);
        assert_int_equal(list_names(env, group, false, names, sizeof(names)), 3);
        assert_true(has_name(names, 3, JOB1));
        group = lookup_ok(env, view, "a_b_", NULL);
        assert_int_equal(list_names(env, group, false, names, sizeof(names)), 3);
        assert_true(has_name(names, 3, JOB2));
        assert_int_equal(tree_lookup(env->tree, view, "nul", &attr), -ENOENT);
        assert_int_equal(tree_lookup(env->tree, view, "a/b", &attr), -ENOENT);
        assert_int_equal(tree_lookup(env->tree, view, ".", &attr), -ENOENT);
    }
}

/* A page of BIG_FOLDER_ITEMS completed items named "doc-000123.pdf", whose
 * files are named like "doc-000123.pdf.json" (19 bytes). */
static int big_items_page(void *arg, const char *path_query, struct http_response *out)
{
    const char *offset_at = strstr(path_query, "offset=");
    const char *limit_at = strstr(path_query, "limit=");
    size_t offset = offset_at ? strtoul(offset_at + 7, NULL, 10) : 0;
    size_t limit = limit_at ? strtoul(limit_at + 6, NULL, 10) : 100;
    int rc;

    (void)arg;
    out->status = 200;
    rc = buf_append_str(&out->body, "{\"items\": [");
    for (size_t i = offset; i < offset + limit && i < BIG_FOLDER_ITEMS && !rc; i++)
        rc =
            buf_printf(&out->body,
                       "%s{\"item_id\": \"itm-%06zu\", \"item_name\": \"doc-%06zu.pdf\", "
                       "\"status\": \"completed\"}",
                       i > offset ? "," : "", i, i);
    if (!rc)
        rc = buf_printf(&out->body, "], \"total_size\": %d}", BIG_FOLDER_ITEMS);
    return rc;
}

static int env_setup_big_folder(void **state)
{
    return env_setup_big(state, 300, jobs_page, big_items_page);
}

/* The inode of the big folder's job's completed/, looked up from the root. */
static uint64_t big_completed(struct env *env)
{
    uint64_t jobs = lookup_ok(env, TREE_ROOT_INO, "jobs", NULL);
    uint64_t job = lookup_ok(env, jobs, JOB1, NULL);

    return lookup_ok(env, job, "completed", NULL);
}

/* The tree's bytes for each inode the kernel holds, for a folder of many
 * items looked up one by one: the node's malloc chunk and its share of the
 * tables' buckets. At most 100 bytes, of the peak memory's bound of 100
 * bytes for each inode the kernel holds. */
static void test_node_bytes(void **state)
{
    struct env *env = *state;
    uint64_t completed = big_completed(env);
    struct tree_stats before, after;
    struct tree_dir *dir;
    bool unchanged;
    size_t items;
    double per_node;

    tree_get_stats(env->tree, &before);
    assert_int_equal(tree_opendir(env->tree, completed, &dir, &unchanged), 0);
    items = tree_dir_count(dir) - 2;
    assert_int_equal(items, BIG_FOLDER_ITEMS);
    assert_int_equal(strlen(tree_dir_name(dir, 2)), 19);
    for (size_t i = 2; i < items + 2; i++)
        lookup_ok(env, completed, tree_dir_name(dir, i), NULL);
    tree_closedir(dir);
    tree_get_stats(env->tree, &after);
    assert_int_equal(after.nodes, before.nodes + BIG_FOLDER_ITEMS);
    per_node = (double)after.bytes / (double)after.nodes;
    printf("tree: %zu nodes, %zu bytes, %.1f bytes a node\n", after.nodes, after.bytes,
           per_node);
    assert_true(per_node <= 100.0);
}

/* A folder read twice with readdirplus (a second walk) makes no node
 * again, and sizes the tables for the nodes there are, not for the folder
 * twice over: the tree's bytes stay where the first reading left them. */
static void test_second_readdir_keeps_tables(void **state)
{
    struct env *env = *state;
    uint64_t completed = big_completed(env);
    struct tree_stats first, second;
    struct tree_dir *dir;
    bool unchanged;

    for (int reading = 0; reading < 2; reading++) {
        size_t total;

        assert_int_equal(tree_opendir(env->tree, completed, &dir, &unchanged), 0);
        total = tree_dir_count(dir);
        assert_int_equal(total, BIG_FOLDER_ITEMS + 2);
        for (size_t from = 0; from < total; from += 5000)
            reply_plus(env, dir, from, from + 5000 < total ? from + 5000 : total);
        tree_closedir(dir);
        tree_get_stats(env->tree, reading ? &second : &first);
    }
    assert_int_equal(second.nodes, first.nodes);
    assert_int_equal(second.bytes, first.bytes);
}

/* Inode numbers start again at 2 past UINT32_MAX, skipping those in use. */
static void test_inode_numbers_wrap(void **state)
{
    struct env *env = *state;
    uint64_t jobs = lookup_ok(env, TREE_ROOT_INO, "jobs", NULL), job, failed, batches;
    struct tree_attr attr;

    assert_int_equal(jobs, TREE_ROOT_INO + 1);
    env->tree->next_ino = UINT32_MAX;
    job = lookup_ok(env, jobs, JOB1, NULL);
    assert_int_equal(job, UINT32_MAX);
    /* 2 is jobs/, still held. */
    failed = lookup_ok(env, job, "failed", NULL);
    assert_int_equal(failed, TREE_ROOT_INO + 2);
    batches = lookup_ok(env, TREE_ROOT_INO, "batches", NULL);
    assert_int_equal(batches, TREE_ROOT_INO + 3);
    /* Each finds its own node, and a number past 32 bits none. */
    assert_int_equal(tree_getattr(env->tree, job, &attr), 0);
    assert_true(S_ISDIR(attr.st.st_mode));
    assert_int_equal(
        tree_getattr(env->tree, (uint64_t)UINT32_MAX + TREE_ROOT_INO + 1, &attr),
        -ESTALE);
    /* A number comes back once its node is gone. */
    tree_forget(env->tree, batches, 1);
    env->tree->next_ino = TREE_ROOT_INO + 3;
    assert_int_equal(lookup_ok(env, TREE_ROOT_INO, "by-type", NULL), TREE_ROOT_INO + 3);
}

/* A lookup count that reaches UINT32_MAX stays there: the node outlives
 * any forget rather than go while the kernel may still hold it. */
static void test_lookup_count_saturates(void **state)
{
    struct env *env = *state;
    uint64_t jobs = lookup_ok(env, TREE_ROOT_INO, "jobs", NULL);
    struct tree_attr attr;

    lookup_ok(env, TREE_ROOT_INO, "jobs", NULL);
    tree_find_ino(env->tree, jobs)->nlookup = UINT32_MAX - 1;
    lookup_ok(env, TREE_ROOT_INO, "jobs", NULL);
    lookup_ok(env, TREE_ROOT_INO, "jobs", NULL);
    tree_forget(env->tree, jobs, UINT32_MAX);
    tree_forget(env->tree, jobs, (uint64_t)UINT32_MAX + 5);
    assert_int_equal(tree_getattr(env->tree, jobs, &attr), 0);
    /* Below it, counts add and forgets subtract. */
    lookup_ok(env, TREE_ROOT_INO, "batches", &attr);
    lookup_ok(env, TREE_ROOT_INO, "batches", NULL);
    tree_forget(env->tree, attr.st.st_ino, 1);
    assert_int_equal(tree_getattr(env->tree, attr.st.st_ino, &attr), 0);
    tree_forget(env->tree, attr.st.st_ino, 1);
    assert_int_equal(tree_getattr(env->tree, attr.st.st_ino, &attr), -ESTALE);
}

/* .batchfs/stats for test_old_version_keeps_its_mtime: longer each time. */
static int growing_meta(void *arg, int which, struct buf *out)
{
    static unsigned calls;

    (void)arg;
    (void)which;
    calls++;
    return buf_printf(out, "%*u\n", (int)calls, calls);
}

/* An old version of a file answers getattr with the mtime it was told
 * with, to the nanosecond, before 1970 too. */
static void test_old_version_keeps_its_mtime(void **state)
{
    static const char jobs_1969[] =
        "{\"items\": [{\"id\": \"" JOB1
        "\", \"job_type\": \"parse\", \"status\": \"running\", "
        "\"created_at\": \"1969-07-20T20:17:40.987Z\"}], \"total_size\": 1}";
    struct env *env;
    uint64_t meta, stats, jobs, job, json;
    struct tree_attr told, attr;
    struct tree_dir *dir;
    bool unchanged;

    env_setup_jobs(state, 10, jobs_1969);
    env = *state;
    env->tree->meta = growing_meta;
    meta = lookup_ok(env, TREE_ROOT_INO, ".batchfs", NULL);
    stats = lookup_ok(env, meta, "stats", &told);
    /* The next getattr makes a longer text: this inode keeps the old one. */
    assert_int_equal(tree_getattr(env->tree, stats, &attr), 0);
    assert_int_equal(attr.st.st_size, told.st.st_size);
    assert_int_equal(attr.st.st_mtim.tv_sec, told.st.st_mtim.tv_sec);
    assert_int_equal(attr.st.st_mtim.tv_nsec, told.st.st_mtim.tv_nsec);
    assert_int_equal(tree_getattr(env->tree, stats, &attr), 0);
    assert_int_equal(attr.st.st_mtim.tv_nsec, told.st.st_mtim.tv_nsec);

    jobs = lookup_ok(env, TREE_ROOT_INO, "jobs", NULL);
    /* Listed: the job's file comes from the job list. */
    assert_int_equal(tree_opendir(env->tree, jobs, &dir, &unchanged), 0);
    tree_closedir(dir);
    job = lookup_ok(env, jobs, JOB1, NULL);
    json = lookup_ok(env, job, "job.json", &told);
    assert_int_equal(told.st.st_mtim.tv_sec, -14182940);
    assert_int_equal(told.st.st_mtim.tv_nsec, 987000000);
    fake_transport_reset(env->fake);
    fake_transport_add_body(env->fake, "/api/v1/beta/batch-processing?*offset=0*", 200,
                            "{\"items\": [{\"id\": \"" JOB1
                            "\", \"job_type\": \"parse\", "
                            "\"status\": \"completed\", \"created_at\": "
                            "\"2025-03-01T10:00:00Z\"}], \"total_size\": 1}");
    fake_transport_add_body(env->fake, "/api/v1/beta/batch-processing?*", 200,
                            empty_page);
    fake_clock_advance(11);
    assert_int_equal(tree_opendir(env->tree, jobs, &dir, &unchanged), 0);
    tree_closedir(dir);
    assert_int_equal(tree_getattr(env->tree, json, &attr), 0);
    assert_int_equal(attr.st.st_size, told.st.st_size);
    assert_int_equal(attr.st.st_mtim.tv_sec, -14182940);
    assert_int_equal(attr.st.st_mtim.tv_nsec, 987000000);
    assert_int_not_equal(lookup_ok(env, job, "job.json", &attr), json);
    assert_int_equal(attr.st.st_mtim.tv_sec, 1740823200);
    env_teardown(state);
}

/* The attributes readdirplus gives entry `name` of folder `ino`. */
static void listed_attr(struct env *env, uint64_t ino, const char *name,
                        struct tree_attr *out)
{
    struct tree_dir *dir;
    bool unchanged, found = false;

    assert_int_equal(tree_opendir(env->tree, ino, &dir, &unchanged), 0);
    for (size_t i = 2; i < tree_dir_count(dir); i++) {
        struct tree_attr attr;
        const char *entry;

        assert_int_equal(tree_dir_entry(env->tree, dir, i, true, &entry, &attr), 0);
        if (!strcmp(entry, name)) {
            *out = attr;
            found = true;
        }
    }
    tree_closedir(dir);
    assert_true(found);
}

/* A job's file is measured when it is first needed, not when jobs/ is
 * listed: whichever asks first (readdirplus of its folder, a lookup, a
 * getattr), the size told is the number of bytes read, for every job. */
static void test_job_json_sizes_after_listing(void **state)
{
    struct env *env = *state;
    static const char *const ids[] = {JOB1, JOB2};
    uint64_t jobs = lookup_ok(env, TREE_ROOT_INO, "jobs", NULL);
    char names[4096];

    assert_int_equal(list_names(env, jobs, true, names, sizeof(names)), 4);
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        uint64_t job = lookup_ok(env, jobs, ids[i], NULL), json;
        struct tree_attr listed, looked, got;
        struct blob *content;
        bool unchanged;
        char *text;

        /* The first job is described by readdirplus first, the second by
         * its lookup. */
        if (i == 0) {
            listed_attr(env, job, "job.json", &listed);
            assert_false(listed.unlinked);
            json = lookup_ok(env, job, "job.json", &looked);
        } else {
            json = lookup_ok(env, job, "job.json", &looked);
            listed_attr(env, job, "job.json", &listed);
        }
        assert_int_equal(listed.st.st_ino, json);
        assert_int_equal(tree_getattr(env->tree, json, &got), 0);
        assert_int_equal(tree_read(env->tree, json, &content, &unchanged), 0);
        assert_true(unchanged); /* the version whose size was told */
        text = read_text(content);
        assert_true(strlen(text) > 50);
        assert_int_equal((size_t)looked.st.st_size, strlen(text));
        assert_int_equal((size_t)listed.st.st_size, strlen(text));
        assert_int_equal((size_t)got.st.st_size, strlen(text));
        assert_int_equal(looked.st.st_blocks, (strlen(text) + 511) / 512);
        assert_non_null(strstr(text, ids[i]));
        free(text);
        blob_unref(content);
    }
}

/* A job's file looked up alone, before the job list, is the same version as
 * the one the job list then gives: the same inode, nothing to drop. */
static void test_job_alone_then_listed_same_version(void **state)
{
    struct env *env = *state;
    uint64_t jobs = lookup_ok(env, TREE_ROOT_INO, "jobs", NULL);
    uint64_t job = lookup_ok(env, jobs, JOB1, NULL), json, json2;
    struct tree_attr alone, listed;
    struct blob *content;
    bool unchanged;
    char names[4096];
    char *text;

    json = lookup_ok(env, job, "job.json", &alone);
    assert_int_equal(tree_read(env->tree, json, &content, &unchanged), 0);
    text = read_text(content);
    assert_int_equal((size_t)alone.st.st_size, strlen(text));
    blob_unref(content);
    assert_int_equal(env->n_invalidated, 0);
    /* Now the job list: the job's file comes from it. */
    assert_int_equal(list_names(env, jobs, true, names, sizeof(names)), 4);
    json2 = lookup_ok(env, job, "job.json", &listed);
    assert_int_equal(json2, json);
    assert_int_equal(listed.st.st_size, alone.st.st_size);
    assert_int_equal(env->n_invalidated, 0);
    assert_int_equal(tree_read(env->tree, json, &content, &unchanged), 0);
    assert_true(unchanged);
    free(text);
    text = read_text(content);
    assert_int_equal((size_t)listed.st.st_size, strlen(text));
    free(text);
    blob_unref(content);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_root_and_fixed_folders, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_folders_left_open_closed_with_the_tree,
                                        env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_junk_names_cost_no_request, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_jobs_and_job_folder, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_job_json_sizes_after_listing, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_job_alone_then_listed_same_version,
                                        env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_items_hostile_names, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_forget_frees_nodes, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_nodes_made_ahead, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_nodes_made_ahead_then_skipped, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_errors_map_to_errno, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_batches, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_group_names_sanitised,
                                        env_setup_hostile_groups, env_teardown),
        cmocka_unit_test(test_changed_content_gets_a_new_inode),
        cmocka_unit_test_setup_teardown(test_node_bytes, env_setup_big_folder,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_second_readdir_keeps_tables,
                                        env_setup_big_folder, env_teardown),
        cmocka_unit_test_setup_teardown(test_inode_numbers_wrap, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_lookup_count_saturates, env_setup,
                                        env_teardown),
        cmocka_unit_test(test_old_version_keeps_its_mtime),
    };

    log_setup(getenv("TEST_LOG_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR, false);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
