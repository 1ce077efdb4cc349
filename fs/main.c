/*
 * batchfs — mounts the LlamaCloud batch API as a read-only tree of JSON files.
 *
 * main.c wires the layers together and owns the process: command line, API
 * key, the one request that proves key and URL before anything is mounted,
 * the FUSE session and its loop, and signals. SIGINT/SIGTERM end the session
 * (and cancel requests in flight so no worker keeps the unmount waiting);
 * SIGHUP drops every cache.
 */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "batchfs/api.h"
#include "batchfs/apikey.h"
#include "batchfs/bigmem.h"
#include "batchfs/buf.h"
#include "batchfs/catalog.h"
#include "batchfs/fuseio.h"
#include "batchfs/http.h"
#include "batchfs/inval.h"
#include "batchfs/log.h"
#include "batchfs/ops.h"
#include "batchfs/options.h"
#include "batchfs/tree.h"

#ifndef BATCHFS_VERSION
#define BATCHFS_VERSION "0"
#endif

/* Longest listing kept, in objects: far beyond any real job, short of what
 * would exhaust memory before the cache budget could act. */
#define MAIN_MAX_LISTING_ITEMS 5000000

/*
 * What the signal handlers touch. Set before the handlers are installed and
 * only read afterwards; the handlers use nothing but sem_post and
 * fuse_session_exit (which sets a flag), both safe in a handler.
 */
static struct fuse_session *main_session;
static sem_t main_wake;
/* A SIGHUP not yet acted on. Atomic, not just volatile sig_atomic_t: the
 * watcher thread reads it, not the thread the handler ran on. Lock-free, so
 * safe in a handler. */
static atomic_int main_hangup;
_Static_assert(ATOMIC_INT_LOCK_FREE == 2,
               "a signal handler may touch lock-free atomics only");
/* SIGHUPs acted on, counted once every cache has been dropped: what
 * .batchfs/stats reports as "hangups", so a script (or a test) that sent
 * one can tell when it has taken effect. */
static atomic_ullong main_hangups_handled;

static void main_on_exit_signal(int sig)
{
    (void)sig;
    if (main_session)
        fuse_session_exit(main_session);
    sem_post(&main_wake);
}

static void main_on_hangup(int sig)
{
    (void)sig;
    atomic_store(&main_hangup, 1);
    sem_post(&main_wake);
}

static int main_install_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: the worker blocked in read(/dev/fuse) must wake. */
    sa.sa_handler = main_on_exit_signal;
    if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL))
        return -errno;
    sa.sa_handler = main_on_hangup;
    if (sigaction(SIGHUP, &sa, NULL))
        return -errno;
    sa.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &sa, NULL))
        return -errno;
    return 0;
}

/* Everything the watcher thread needs. */
struct watcher {
    struct fuse_session *session;
    struct http_client *http;
    struct catalog *catalog;
    struct tree *tree;
    pthread_t thread;
};

/*
 * Waits for signals and for the end of the session. When the session ends,
 * in-flight requests are cancelled: the session loop joins its workers, and
 * a worker waiting out a retry would otherwise hold the unmount.
 */
static void *main_watch(void *arg)
{
    struct watcher *w = arg;

    for (;;) {
        struct timespec deadline;

        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_nsec += 200 * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        sem_timedwait(&main_wake, &deadline);
        if (fuse_session_exited(w->session))
            break;
        /* Taken and cleared at once: a SIGHUP that comes meanwhile is acted
         * on next time round, never lost. */
        if (atomic_exchange(&main_hangup, 0)) {
            log_info("SIGHUP: dropping every cached listing");
            catalog_expire_all(w->catalog);
            tree_invalidate_all(w->tree);
            atomic_fetch_add(&main_hangups_handled, 1);
        }
    }
    http_client_cancel(w->http);
    return NULL;
}

/* What .batchfs/stats and .batchfs/config describe. */
struct meta {
    const struct options *opts;
    struct http_client *http;
    struct api *api;
    struct catalog *catalog;
    struct tree *tree;
    bool key_from_file;
};

static json_t *main_stats_json(const struct meta *m)
{
    struct http_stats hs;
    struct catalog_stats cs;
    struct tree_stats ts;
    char problem[1024];
    time_t when;
    json_t *root;

    http_client_stats(m->http, &hs);
    catalog_get_stats(m->catalog, &cs);
    tree_get_stats(m->tree, &ts);
    root = json_pack("{s:{s:I,s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I},s:{s:I,s:I}}",
                     "requests", "sent", (json_int_t)hs.requests, "retries",
                     (json_int_t)hs.retries, "throttled", (json_int_t)hs.throttled, "bytes",
                     (json_int_t)hs.bytes, "cache", "hits", (json_int_t)cs.hits, "misses",
                     (json_int_t)cs.misses, "stale_served", (json_int_t)cs.stale_served,
                     "evictions", (json_int_t)cs.evictions, "reused", (json_int_t)cs.reused,
                     "entries", (json_int_t)cs.entries,
                     "bytes", (json_int_t)cs.bytes, "inodes", "known", (json_int_t)ts.nodes,
                     "bytes", (json_int_t)ts.bytes);
    if (root)
        json_object_set_new(
            root, "fetching",
            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "parked",
                      (json_int_t)cs.parked, "refreshes", (json_int_t)cs.refreshes,
                      "refreshed", (json_int_t)cs.refreshed, "cancelled",
                      (json_int_t)cs.cancelled, "prefetched", (json_int_t)cs.prefetches,
                      "streamed", (json_int_t)cs.streamed, "readdirs_waiting",
                      (json_int_t)cs.stream_waiting, "stream_readers",
                      (json_int_t)cs.stream_readers));
    if (root) {
        json_t *pages = json_pack(
            "{s:I,s:I,s:I,s:I,s:I,s:I}", "alive", (json_int_t)cs.pages.pages, "kept",
            (json_int_t)cs.pages.kept, "kept_bytes", (json_int_t)cs.pages.kept_bytes,
            "dropped", (json_int_t)cs.pages.drops, "fetched_again",
            (json_int_t)cs.pages.fetches, "changed", (json_int_t)cs.pages.mismatches);

        json_object_set_new(json_object_get(root, "cache"), "pages", pages);
    }
    if (root)
        json_object_set_new(root, "connections",
                            json_pack("{s:I,s:s?}", "opened", (json_int_t)hs.connections,
                                      "http_version", hs.http_version));
    if (root) {
        struct api_stats as;
        json_t *by = json_object();

        api_get_stats(m->api, &as);
        for (int e = 0; by && e < API_ENDPOINT_COUNT; e++) {
            json_t *outcomes = json_object();

            for (int o = 0; outcomes && o < API_OUTCOME_COUNT; o++)
                if (as.counts[e][o])
                    json_object_set_new(outcomes, api_outcome_names[o],
                                        json_integer((json_int_t)as.counts[e][o]));
            json_object_set_new(by, api_endpoint_names[e], outcomes);
        }
        json_object_set_new(json_object_get(root, "requests"), "by_endpoint", by);
    }
    if (root && log_last_problem(problem, sizeof(problem), &when)) {
        char stamp[32];
        struct tm tm;

        gmtime_r(&when, &tm);
        strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
        json_object_set_new(root, "last_error",
                            json_pack("{s:s,s:s}", "time", stamp, "message", problem));
    } else if (root) {
        json_object_set_new(root, "last_error", json_null());
    }
    if (root)
        json_object_set_new(root, "hangups",
                            json_integer((json_int_t)atomic_load(&main_hangups_handled)));
    return root;
}

static json_t *main_config_json(const struct meta *m)
{
    const struct options *o = m->opts;

    return json_pack("{s:s,s:s,s:s?,s:s?,s:f,s:f,s:b,s:f,s:b,s:I,s:I,s:I,s:I,s:I,s:I}",
                     "base_url", o->base_url, "api_key",
                     m->key_from_file ? "set (from api_key_file)" : "set (from the environment)",
                     "project_id", o->project_id, "organization_id", o->organization_id,
                     "cache_ttl", o->cache_ttl, "terminal_ttl", o->terminal_ttl,
                     "stale_if_error", (int)o->stale_if_error, "max_stale", o->max_stale, "xattr",
                     (int)o->xattr,
                     "retries", (json_int_t)o->retries, "timeout", (json_int_t)o->timeout,
                     "connect_timeout", (json_int_t)o->connect_timeout, "max_connections",
                     (json_int_t)o->max_connections, "max_response",
                     (json_int_t)o->max_response, "cache_size", (json_int_t)o->cache_size);
}

/* tree_meta_fn: the text of .batchfs/stats and .batchfs/config. */
static int main_meta(void *arg, int which, struct buf *out)
{
    const struct meta *m = arg;
    json_t *root = which == TREE_META_STATS ? main_stats_json(m) : main_config_json(m);
    char *text;
    int rc;

    if (!root)
        return -ENOMEM;
    text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text)
        return -ENOMEM;
    rc = buf_append_str(out, text);
    if (!rc)
        rc = buf_append_char(out, '\n');
    free(text);
    return rc;
}

static void main_usage(const char *program)
{
    printf("usage: %s [options] MOUNTPOINT\n\n"
           "Mounts the LlamaCloud batch API read-only: jobs/<id>/<status>/<item>.json\n"
           "and batches/<id>/results/<file id>.json. The API key comes from\n"
           "LLAMA_CLOUD_API_KEY (else LLAMA_PARSE_API_KEY) or -o api_key_file.\n\n",
           program);
    options_write_help(stdout);
    printf("\n");
}

/* Adds the mount options batchfs always wants to FUSE's arguments. */
static int main_mount_options(struct fuse_args *args, bool allow_other)
{
    if (fuse_opt_add_arg(args, "-oro,fsname=batchfs,subtype=batchfs"))
        return -ENOMEM;
    /* Shared with other users, the mount must apply the permissions it shows. */
    if (allow_other && fuse_opt_add_arg(args, "-odefault_permissions"))
        return -ENOMEM;
    return 0;
}

static const char *main_access_error(int rc)
{
    switch (rc) {
    case -EACCES:
        return "the API refused the key (HTTP 401/403); check LLAMA_CLOUD_API_KEY or "
               "-o api_key_file";
    case -ENOENT:
        return "the URL does not serve the batch API (HTTP 404); check -o base_url";
    case -ECONNREFUSED:
        return "connection refused: nothing listens at that address and port";
    case -EHOSTUNREACH:
        return "the host name does not resolve";
    default:
        return strerror(-rc);
    }
}

/* The mount-time check has this long in all, whatever timeout and retries
 * say: with the budget of an ordinary request (5 attempts of 30 s at the
 * defaults), a silent server held the mount for 157 s. */
#define MAIN_CHECK_BUDGET_S 15

/*
 * Sends the one request that proves URL and key, before anything is
 * mounted and before any other request: MAIN_CHECK_BUDGET_S in all
 * (connect_timeout still bounds the connect) and at most one retry, then
 * the client's own budget again. Returns 0, or prints why the mount cannot
 * go on and returns the negative errno.
 */
static int main_check_access(struct http_client *http, struct api *api,
                             const struct options *opts)
{
    struct timespec start, end;
    char tls[512];
    long waited_ms;
    int rc;

    http_client_set_budget(http, MAIN_CHECK_BUDGET_S,
                           opts->retries < 1 ? opts->retries : 1);
    clock_gettime(CLOCK_MONOTONIC, &start);
    rc = api_check_access(api);
    clock_gettime(CLOCK_MONOTONIC, &end);
    http_client_set_budget(http, 0, opts->retries);
    waited_ms = (long)(end.tv_sec - start.tv_sec) * 1000 +
                (end.tv_nsec - start.tv_nsec) / 1000000;
    if (rc && http_client_tls_problem(http, tls, sizeof(tls)))
        fprintf(stderr, "batchfs: %s: %s\n", opts->base_url, tls);
    else if (rc == -ETIMEDOUT)
        fprintf(stderr, "batchfs: %s: the server did not answer within %ld s\n",
                opts->base_url, waited_ms < 1500 ? 1 : (waited_ms + 500) / 1000);
    else if (rc)
        fprintf(stderr, "batchfs: %s: %s\n", opts->base_url, main_access_error(rc));
    return rc;
}

int main(int argc, char *argv[])
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct fuse_cmdline_opts cmd;
    struct options opts;
    struct http_client *http = NULL;
    struct api *api = NULL;
    struct catalog *catalog = NULL;
    struct tree *tree = NULL;
    struct inval_queue *inval = NULL;
    struct fuse_session *se = NULL;
    struct fuse_loop_config *loop = NULL;
    struct ops_context ctx = {.allow_no_open = true};
    struct watcher watcher = {0};
    struct meta meta = {0};
    bool mounted = false, watching = false, curl_ready = false;
    char err[512], *key = NULL;
    int rc, status = 1;

    memset(&cmd, 0, sizeof(cmd));
    if (sem_init(&main_wake, 0, 0))
        return 1;
    log_setup(LOG_LEVEL_INFO, false);
    log_take_libfuse_messages();
    rc = options_parse(&args, &opts, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "batchfs: %s\n", rc == -ENOMEM ? strerror(ENOMEM) : err);
        goto out;
    }
    if (fuse_parse_cmdline(&args, &cmd))
        goto out;
    if (cmd.show_help) {
        main_usage(argv[0]);
        printf("FUSE options:\n");
        fuse_cmdline_help();
        fuse_lowlevel_help();
        status = 0;
        goto out;
    }
    if (cmd.show_version) {
        printf("batchfs %s\n", BATCHFS_VERSION);
        fuse_lowlevel_version();
        status = 0;
        goto out;
    }
    if (!cmd.mountpoint) {
        fprintf(stderr, "batchfs: no mount point given (try --help)\n");
        goto out;
    }
    log_setup(cmd.debug ? LOG_LEVEL_DEBUG : (enum log_level)opts.log_level, false);

    rc = apikey_load(opts.api_key_file, &key, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "batchfs: %s\n", err);
        goto out;
    }
    log_add_secret(key);

    if (http_global_init()) {
        fprintf(stderr, "batchfs: cannot initialise libcurl\n");
        goto out;
    }
    curl_ready = true;
    {
        struct http_config hc = {
            .base_url = opts.base_url,
            .api_key = key,
            .connect_timeout_s = opts.connect_timeout,
            .timeout_s = opts.timeout,
            .retries = opts.retries,
            .max_connections = opts.max_connections,
            .max_response = opts.max_response,
            .log_requests = cmd.debug || opts.log_level >= LOG_LEVEL_DEBUG,
            .user_agent = "batchfs/" BATCHFS_VERSION,
            .ca_file = opts.ca_file,
        };
        int herr = 0;

        http = http_client_new(&hc, &herr);
        if (!http) {
            fprintf(stderr, "batchfs: base_url %s: %s\n", opts.base_url,
                    herr == -ENOMEM ? strerror(ENOMEM) : "not an http:// or https:// URL");
            goto out;
        }
    }
    {
        struct api_config ac = {
            .transport = http_client_transport(http),
            .project_id = opts.project_id,
            .organization_id = opts.organization_id,
            .page_size = 1000,
            .max_parallel = opts.max_connections,
            .max_items = MAIN_MAX_LISTING_ITEMS,
        };

        api = api_new(&ac);
        if (!api) {
            fprintf(stderr, "batchfs: %s\n", strerror(ENOMEM));
            goto out;
        }
    }
    if (main_check_access(http, api, &opts))
        goto out;
    ctx.xattr = opts.xattr;
    if (main_mount_options(&args, opts.allow_other))
        goto out;
    se = fuse_session_new(&args, &ops_table, sizeof(ops_table), &ctx);
    if (!se)
        goto out;
    main_session = se;
    if (main_install_signals()) {
        fprintf(stderr, "batchfs: cannot install signal handlers\n");
        goto out;
    }
    if (fuse_session_mount(se, cmd.mountpoint))
        goto out;
    mounted = true;
    /* Lookups and readdirs of one folder in parallel (see fuseio.h); without
     * it, as before, one at a time. */
    if (fuseio_install(se))
        fprintf(stderr, "batchfs: lookups of one folder will run one at a time\n");
    /* The engine's thread would not survive the fork: it starts again with
     * the next request. */
    http_client_park(http);
    if (fuse_daemonize(cmd.foreground))
        goto out;
    /* Threads start only now: fork() in fuse_daemonize keeps none. */
    log_setup(cmd.debug ? LOG_LEVEL_DEBUG : (enum log_level)opts.log_level, !cmd.foreground);
    inval = inval_queue_new(se);
    if (!inval) {
        log_error("cannot start the cache invalidation thread");
        goto out;
    }
    {
        struct catalog_config cc = {
            .api = api,
            .ttl_s = opts.cache_ttl,
            .terminal_ttl_s = opts.terminal_ttl,
            .cache_bytes = opts.cache_size,
            .stale_if_error = opts.stale_if_error,
            .max_stale_s = opts.max_stale,
            /* One fetch per connection: more would only queue in the
             * transport, fewer would leave connections idle. */
            .fetch_threads = opts.max_connections,
        };

        /* After fuse_daemonize: its fetch threads would not survive the
         * fork. */
        catalog = catalog_new(&cc);
        if (!catalog) {
            log_error("%s", strerror(ENOMEM));
            goto out;
        }
    }

    {
        struct tree_config tc = {
            .catalog = catalog,
            .ttl_s = opts.cache_ttl,
            .terminal_ttl_s = opts.terminal_ttl,
            .uid = getuid(),
            .gid = getgid(),
            .inval = inval_queue_push,
            .inval_entry = inval_queue_push_entry,
            .inval_arg = inval,
            .meta = main_meta,
            .meta_arg = &meta,
        };

        meta = (struct meta){.opts = &opts, .http = http, .api = api, .catalog = catalog,
                             .key_from_file = opts.api_key_file != NULL};
        tree = tree_new(&tc);
        meta.tree = tree;
        if (!tree) {
            log_error("%s", strerror(ENOMEM));
            goto out;
        }
        ctx.tree = tree;
        ctx.cache = catalog_cache(catalog);
    }
    watcher = (struct watcher){.session = se, .http = http, .catalog = catalog, .tree = tree};
    if (pthread_create(&watcher.thread, NULL, main_watch, &watcher)) {
        log_error("cannot start the signal thread");
        goto out;
    }
    watching = true;
    log_info("mounted %s on %s", opts.base_url, cmd.mountpoint);

    if (cmd.singlethread) {
        rc = fuse_session_loop(se);
    } else {
        loop = fuse_loop_cfg_create();
        if (!loop) {
            log_error("%s", strerror(ENOMEM));
            goto out;
        }
        fuse_loop_cfg_set_clone_fd(loop, cmd.clone_fd);
        fuse_loop_cfg_set_max_threads(loop, cmd.max_threads);
        if (cmd.max_idle_threads != UINT_MAX)
            fuse_loop_cfg_set_idle_threads(loop, cmd.max_idle_threads);
        rc = fuse_session_loop_mt(se, loop);
    }
    status = rc ? 1 : 0;

out:
    if (se && !fuse_session_exited(se))
        fuse_session_exit(se);
    if (watching) {
        sem_post(&main_wake);
        pthread_join(watcher.thread, NULL);
    }
    /* Parked requests are answered (ECANCELED) while the session that
     * carries their replies still exists. */
    catalog_stop(catalog);
    inval_queue_free(inval);
    if (mounted)
        fuse_session_unmount(se);
    if (se) {
        main_session = NULL;
        fuse_session_destroy(se);
    }
    bigmem_free(ctx.reply_spare);
    fuse_loop_cfg_destroy(loop);
    tree_free(tree);
    catalog_free(catalog);
    api_free(api);
    http_client_free(http);
    if (curl_ready)
        http_global_cleanup();
    if (key) {
        explicit_bzero(key, strlen(key));
        free(key);
    }
    options_free(&opts);
    free(cmd.mountpoint);
    fuse_opt_free_args(&args);
    return status;
}
