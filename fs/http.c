/*
 * http — the libcurl client behind the transport (see include/batchfs/http.h).
 *
 * One request is a loop of attempts. Each attempt waits for the shared pacer
 * (throttling and the connection bound), borrows an easy handle from the
 * pool, runs curl_easy_perform() with no lock held, and returns the handle so
 * the next request reuses its kept-alive connection. Only a complete body is
 * ever handed back: anything cut short is retried and then reported as an
 * errno. A 3xx is never followed, so the key cannot travel to another host.
 *
 * An attempt fails after timeout_s without a byte received (the clock starts
 * once connected): a slow body that keeps arriving is waited for, however
 * slowly it comes. Requests can be given a budget for all their attempts and
 * waits together (http_client_set_budget()).
 *
 * Not for: building API URLs or reading JSON (api.c, listpages.c), caching
 * (cache.c).
 */
#include "batchfs/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "batchfs/log.h"
#include "batchfs/pacer.h"
#include "batchfs/retry.h"

#define HTTP_HEADER_VALUE_MAX 128
#define HTTP_TLS_PROBLEM_MAX (CURL_ERROR_SIZE + 64)
#define HTTP_DEFAULT_USER_AGENT "batchfs"

/* One pooled easy handle; its connection stays open between requests. */
struct http_handle {
    CURL *easy; /* NULL until first needed */
    bool busy;
};

struct http_client {
    struct transport transport;
    /* Constant after http_client_new(), but for the budget, which changes
     * only while no request is in flight (http_client_set_budget()). */
    char *base_url;
    char *user_agent;
    char *ca_file;              /* NULL = libcurl's default trust only */
    struct curl_slist *headers; /* read-only; shared by all handles */
    unsigned connect_timeout_s, timeout_s, total_timeout_s, retries, max_connections;
    size_t max_response;
    bool log_requests;
    struct retry_policy policy;
    struct pacer *pacer;
    CURLSH *share; /* DNS cache and TLS sessions; never connections */
    pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];

    atomic_bool cancelled; /* read by the transfer callbacks */

    pthread_mutex_t pool_lock;
    struct http_handle *pool; /* protected by pool_lock; max_connections long */

    pthread_mutex_t stats_lock;
    struct http_stats stats; /* protected by stats_lock */
    char tls_problem[HTTP_TLS_PROBLEM_MAX]; /* protected by stats_lock; "" = none */
};

/* What one attempt collected; reset before each attempt. */
struct http_transfer {
    struct http_client *client;
    CURL *easy;      /* the attempt's handle, for its Content-Length */
    struct buf body;
    size_t received; /* decoded bytes seen, including any beyond the cap */
    /* When a byte last arrived (monotonic ms); 0 while connecting. */
    double last_byte_ms;
    bool too_big;
    bool no_memory;
    bool stalled; /* aborted after timeout_s without a byte */
    bool has_retry_after, has_retry_after_ms, has_should_retry;
    char retry_after[HTTP_HEADER_VALUE_MAX];
    char retry_after_ms[HTTP_HEADER_VALUE_MAX];
    char should_retry[HTTP_HEADER_VALUE_MAX];
    char error[CURL_ERROR_SIZE];
};

int http_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void http_global_cleanup(void)
{
    curl_global_cleanup();
}

/* Jitter needs no quality, only independence between threads, so each
 * thread keeps its own xorshift state; no lock and no shared state. */
static double http_random01(void)
{
    static _Thread_local uint64_t state;

    if (state == 0) {
        struct timespec ts;
        uintptr_t here = (uintptr_t)&ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        state = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ here;
        if (state == 0)
            state = 0x9e3779b97f4a7c15ULL;
    }
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (double)(state >> 11) / 9007199254740992.0; /* 2^53 */
}

static double http_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void http_share_lock(CURL *easy, curl_lock_data data, curl_lock_access access,
                            void *userptr)
{
    struct http_client *client = userptr;

    (void)easy;
    (void)access;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&client->share_locks[data]);
}

static void http_share_unlock(CURL *easy, curl_lock_data data, void *userptr)
{
    struct http_client *client = userptr;

    (void)easy;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&client->share_locks[data]);
}

/* A header field value must not smuggle in another header line. */
static bool http_is_header_safe(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* The path goes into the request line: printable ASCII only, no spaces. */
static bool http_is_path_safe(const char *s)
{
    if (*s != '/')
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c <= 0x20 || c >= 0x7f)
            return false;
    }
    return true;
}

static size_t http_on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct http_transfer *t = userdata;
    size_t n = size * nmemb;

    t->last_byte_ms = http_now_ms();
    if (atomic_load(&t->client->cancelled))
        return 0;
    t->received += n;
    /* The cap applies to decoded bytes, which is what defeats a small
     * compressed body that inflates to gigabytes. */
    if (n > t->client->max_response - t->body.len) {
        t->too_big = true;
        return 0;
    }
    if (!t->body.cap) {
        /* A body of known length gets its room at once: pages are
         * hundreds of kilobytes, and growing by doubling copies each one
         * several times into fresh memory. A gzip length is only a floor. */
        curl_off_t length = -1;

        if (curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length) ==
                CURLE_OK &&
            length > 0 && (uint64_t)length <= t->client->max_response &&
            buf_reserve(&t->body, (size_t)length)) {
            t->no_memory = true;
            return 0;
        }
    }
    if (buf_append(&t->body, data, n)) {
        t->no_memory = true;
        return 0;
    }
    return n;
}

static void http_keep_header(char *dest, bool *present, const char *value, size_t len)
{
    if (len >= HTTP_HEADER_VALUE_MAX)
        len = HTTP_HEADER_VALUE_MAX - 1;
    memcpy(dest, value, len);
    dest[len] = '\0';
    *present = true;
}

static size_t http_on_header(char *line, size_t size, size_t nitems, void *userdata)
{
    struct http_transfer *t = userdata;
    size_t n = size * nitems, name_len, value_len;
    const char *colon, *value, *end = line + n;

    t->last_byte_ms = http_now_ms();
    /* Each status line starts a new response (e.g. after a 100 Continue):
     * only the final response's headers count. */
    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        t->has_retry_after = t->has_retry_after_ms = t->has_should_retry = false;
        return n;
    }
    colon = memchr(line, ':', n);
    if (!colon)
        return n;
    name_len = (size_t)(colon - line);
    value = colon + 1;
    while (value < end && (*value == ' ' || *value == '\t'))
        value++;
    while (end > value &&
           (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    value_len = (size_t)(end - value);
    if (name_len == 11 && strncasecmp(line, "retry-after", 11) == 0)
        http_keep_header(t->retry_after, &t->has_retry_after, value, value_len);
    else if (name_len == 14 && strncasecmp(line, "retry-after-ms", 14) == 0)
        http_keep_header(t->retry_after_ms, &t->has_retry_after_ms, value, value_len);
    else if (name_len == 14 && strncasecmp(line, "x-should-retry", 14) == 0)
        http_keep_header(t->should_retry, &t->has_should_retry, value, value_len);
    return n;
}

/*
 * Also called about once a second while no byte arrives, so cancellation
 * and a stall are noticed within about a second. The stall is timed here
 * rather than with CURLOPT_LOW_SPEED_*, which fails a body that keeps
 * coming at less than a byte a second on average (2 bytes every 4 s failed
 * at timeout=5): what is promised is "timeout_s without a byte".
 */
static int http_on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow,
                            curl_off_t ultotal, curl_off_t ulnow)
{
    struct http_transfer *t = userdata;
    unsigned timeout_s = t->client->timeout_s;

    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    if (atomic_load(&t->client->cancelled))
        return 1;
    if (timeout_s > 0 && t->last_byte_ms > 0 &&
        http_now_ms() - t->last_byte_ms >= 1000.0 * timeout_s) {
        t->stalled = true;
        return 1;
    }
    return 0;
}

#if LIBCURL_VERSION_NUM >= 0x075000
/* Connected (or reusing a connection): the stall clock starts now, so the
 * time to connect counts only against connect_timeout_s. */
static int http_on_connected(void *userdata, char *primary_ip, char *local_ip,
                             int primary_port, int local_port)
{
    struct http_transfer *t = userdata;

    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    t->last_byte_ms = http_now_ms();
    return CURL_PREREQFUNC_OK;
}
#endif

/* Options that never change for a handle. 0, or -ENOMEM/-EIO. */
static int http_handle_setup(struct http_client *client, CURL *easy)
{
    CURLcode failed = CURLE_OK;

#define HTTP_SET(option, value)                                                          \
    do {                                                                                 \
        CURLcode code_ = curl_easy_setopt(easy, option, value);                          \
        if (code_ != CURLE_OK && failed == CURLE_OK)                                     \
            failed = code_;                                                              \
    } while (0)

    HTTP_SET(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    HTTP_SET(CURLOPT_PROTOCOLS_STR, "http,https");
    HTTP_SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    HTTP_SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    HTTP_SET(CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    HTTP_SET(CURLOPT_FOLLOWLOCATION, 0L);
    HTTP_SET(CURLOPT_UNRESTRICTED_AUTH, 0L);
    HTTP_SET(CURLOPT_HTTPGET, 1L);
    HTTP_SET(CURLOPT_SSL_VERIFYPEER, 1L);
    HTTP_SET(CURLOPT_SSL_VERIFYHOST, 2L);
    /* Replaces libcurl's default CA bundle file only: its CA directory,
     * where it has one (/etc/ssl/certs on Debian), stays trusted. */
    if (client->ca_file)
        HTTP_SET(CURLOPT_CAINFO, client->ca_file);
    HTTP_SET(CURLOPT_CONNECTTIMEOUT, (long)client->connect_timeout_s);
    HTTP_SET(CURLOPT_ACCEPT_ENCODING, "gzip");
    /* A page of 1000 items is about 400 KB: read it in one or two
     * receives and callbacks rather than 25 of the default 16 KiB. */
    HTTP_SET(CURLOPT_BUFFERSIZE, 512L * 1024);
    HTTP_SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    HTTP_SET(CURLOPT_TCP_KEEPALIVE, 1L);
    HTTP_SET(CURLOPT_TCP_KEEPIDLE, 60L);
    HTTP_SET(CURLOPT_TCP_KEEPINTVL, 30L);
    HTTP_SET(CURLOPT_HTTPHEADER, client->headers);
    HTTP_SET(CURLOPT_USERAGENT, client->user_agent);
    HTTP_SET(CURLOPT_SHARE, client->share);
    HTTP_SET(CURLOPT_NOPROGRESS, 0L);
    HTTP_SET(CURLOPT_XFERINFOFUNCTION, http_on_progress);
#if LIBCURL_VERSION_NUM >= 0x075000
    HTTP_SET(CURLOPT_PREREQFUNCTION, http_on_connected);
#endif
    HTTP_SET(CURLOPT_WRITEFUNCTION, http_on_body);
    HTTP_SET(CURLOPT_HEADERFUNCTION, http_on_header);
#undef HTTP_SET

    if (failed == CURLE_OK)
        return 0;
    return failed == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EIO;
}

/* Takes a free handle, creating it on first use. The pacer's slots ensure
 * one is free; running out means a bug, reported as -EIO. */
static int http_pool_take(struct http_client *client, CURL **out)
{
    struct http_handle *slot = NULL;
    int rc = 0;

    pthread_mutex_lock(&client->pool_lock);
    for (unsigned i = 0; i < client->max_connections; i++) {
        if (!client->pool[i].busy && client->pool[i].easy) {
            slot = &client->pool[i];
            break;
        }
    }
    for (unsigned i = 0; !slot && i < client->max_connections; i++) {
        if (!client->pool[i].busy)
            slot = &client->pool[i];
    }
    if (!slot) {
        rc = -EIO;
        goto out;
    }
    if (!slot->easy) {
        CURL *easy = curl_easy_init();

        if (!easy) {
            rc = -ENOMEM;
            goto out;
        }
        rc = http_handle_setup(client, easy);
        if (rc) {
            curl_easy_cleanup(easy);
            goto out;
        }
        slot->easy = easy;
    }
    slot->busy = true;
    *out = slot->easy;
out:
    pthread_mutex_unlock(&client->pool_lock);
    return rc;
}

static void http_pool_put(struct http_client *client, CURL *easy)
{
    pthread_mutex_lock(&client->pool_lock);
    for (unsigned i = 0; i < client->max_connections; i++) {
        if (client->pool[i].easy == easy) {
            client->pool[i].busy = false;
            break;
        }
    }
    pthread_mutex_unlock(&client->pool_lock);
}

/*
 * The errno for a failed transfer, and whether it can never succeed on a
 * retry (*final). This is where the errno of a failed transfer is chosen;
 * the layers above pass it on. A partial body is never kept: every error
 * that can cut a response short (a reset, a short Content-Length, a chunked
 * body without its last chunk, no reply at all, a corrupt gzip stream) maps
 * to -EIO and is retried.
 */
static int http_map_curl_error(CURLcode code, const struct http_transfer *t, bool *final)
{
    *final = false;
    if (atomic_load(&t->client->cancelled)) {
        *final = true;
        return -ECANCELED;
    }
    switch (code) {
    case CURLE_WRITE_ERROR:
        if (t->too_big) {
            *final = true;
            return -EFBIG;
        }
        if (t->no_memory) {
            *final = true;
            return -ENOMEM;
        }
        return -EIO;
    case CURLE_ABORTED_BY_CALLBACK:
        if (t->stalled)
            return -ETIMEDOUT;
        *final = true;
        return -ECANCELED;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY:
        return -EIO;
    case CURLE_SSL_CONNECT_ERROR: /* also a reset during the handshake */
        return -EPROTO;
    case CURLE_OUT_OF_MEMORY:
        *final = true;
        return -ENOMEM;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        *final = true;
        return -EINVAL;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_USE_SSL_FAILED:
    case CURLE_TOO_MANY_REDIRECTS:
        /* A certificate that fails now fails on the next try too. */
        *final = true;
        return -EPROTO;
    default:
        *final = true;
        return -EIO;
    }
}

/*
 * Why a TLS handshake failed, in the words a user acts on, or NULL when
 * `code` is no TLS failure. libcurl reports every failed certificate check
 * as CURLE_PEER_FAILED_VERIFICATION; which check failed is only in the text
 * of its error buffer (OpenSSL's words, old and new spellings).
 */
static const char *http_tls_reason(CURLcode code, const char *detail)
{
    switch (code) {
    case CURLE_PEER_FAILED_VERIFICATION:
        if (strstr(detail, "expired"))
            return "certificate has expired";
        if (strstr(detail, "not yet valid"))
            return "certificate is not valid yet";
        if (strstr(detail, "self-signed") || strstr(detail, "self signed"))
            return "self-signed certificate";
        if (strstr(detail, "host name") || strstr(detail, "subject name"))
            return "certificate is for another host name";
        if (strstr(detail, "issuer certificate"))
            return "unknown certificate authority";
        return "certificate not trusted";
    case CURLE_SSL_CACERT_BADFILE:
        return "cannot use the CA bundle";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
        return "handshake failed";
    default:
        return NULL;
    }
}

/* Counts the connections an attempt opened and the protocol it spoke, and
 * keeps why its TLS handshake failed (or that it did not). */
static void http_count_transfer(struct http_client *client, CURL *easy, CURLcode code,
                                const char *detail)
{
    const char *reason = http_tls_reason(code, detail);
    long connects = 0, version = 0;

    curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &connects);
    curl_easy_getinfo(easy, CURLINFO_HTTP_VERSION, &version);
    pthread_mutex_lock(&client->stats_lock);
    client->stats.connections += connects > 0 ? (unsigned long long)connects : 0;
    if (code == CURLE_OK && version == CURL_HTTP_VERSION_2_0)
        client->stats.http_version = "2";
    else if (code == CURLE_OK && version == CURL_HTTP_VERSION_1_1)
        client->stats.http_version = "1.1";
    else if (code == CURLE_OK && version == CURL_HTTP_VERSION_1_0)
        client->stats.http_version = "1.0";
    if (reason && !strstr(detail, reason))
        snprintf(client->tls_problem, sizeof(client->tls_problem), "TLS: %s (%s)", reason,
                 detail);
    else if (reason)
        snprintf(client->tls_problem, sizeof(client->tls_problem), "TLS: %s", reason);
    else
        client->tls_problem[0] = '\0';
    pthread_mutex_unlock(&client->stats_lock);
}

/*
 * One attempt, given at most limit_ms in all (0 = no limit). 0 with
 * *status, or a negative errno with *final set.
 */
static int http_attempt(CURL *easy, const char *url, long limit_ms,
                        struct http_transfer *t, long *status, bool *final)
{
    CURLcode code;

    *final = false;
    t->error[0] = '\0';
    t->easy = easy;
    if (curl_easy_setopt(easy, CURLOPT_URL, url) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_WRITEDATA, t) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_HEADERDATA, t) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_XFERINFODATA, t) != CURLE_OK ||
#if LIBCURL_VERSION_NUM >= 0x075000
        curl_easy_setopt(easy, CURLOPT_PREREQDATA, t) != CURLE_OK ||
#endif
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, limit_ms) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->error) != CURLE_OK) {
        *final = true;
        return -ENOMEM;
    }
#if LIBCURL_VERSION_NUM < 0x075000
    /* No callback says when the connection is up: time from the start. */
    t->last_byte_ms = http_now_ms();
#endif
    code = curl_easy_perform(easy);
    /* The buffer lives on the caller's stack: never leave it set. */
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
    if (code != CURLE_OK) {
        if (t->stalled)
            snprintf(t->error, sizeof(t->error), "no byte for %u s",
                     t->client->timeout_s);
        else if (!t->error[0])
            snprintf(t->error, sizeof(t->error), "%s", curl_easy_strerror(code));
    }
    http_count_transfer(t->client, easy, code, t->error);
    if (code != CURLE_OK)
        return http_map_curl_error(code, t, final);
    *status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, status);
    return 0;
}

/* Logs a refused redirect, naming the target host only: a full Location
 * may carry a signed query string. */
static void http_log_redirect(CURL *easy, const char *path_query, long status)
{
    char *location = NULL, *host = NULL;
    CURLU *url = NULL;

    if (curl_easy_getinfo(easy, CURLINFO_REDIRECT_URL, &location) == CURLE_OK &&
        location) {
        url = curl_url();
        if (url && curl_url_set(url, CURLUPART_URL, location, 0) == CURLUE_OK)
            curl_url_get(url, CURLUPART_HOST, &host, 0);
    }
    if (host)
        log_warning("GET %s: HTTP %ld redirect to %s refused", path_query, status, host);
    else
        log_warning("GET %s: HTTP %ld redirect refused", path_query, status);
    curl_free(host);
    curl_url_cleanup(url);
}

static const char *http_errno_text(int err)
{
    switch (err) {
    case -ETIMEDOUT:
        return "timed out";
    case -ECONNREFUSED:
        return "connection refused";
    case -EHOSTUNREACH:
        return "host not found";
    case -EIO:
        return "no complete response";
    case -EPROTO:
        return "protocol error";
    case -ENOMEM:
        return "out of memory";
    default:
        return "failed";
    }
}

static void http_count_attempt(struct http_client *client, bool retry, size_t bytes,
                               long status)
{
    pthread_mutex_lock(&client->stats_lock);
    client->stats.requests++;
    if (retry)
        client->stats.retries++;
    client->stats.bytes += bytes;
    if (status == 429)
        client->stats.throttled++;
    pthread_mutex_unlock(&client->stats_lock);
}

static void http_transfer_reset(struct http_transfer *t)
{
    buf_reset(&t->body);
    t->received = 0;
    t->last_byte_ms = 0;
    t->too_big = t->no_memory = t->stalled = false;
    t->has_retry_after = t->has_retry_after_ms = t->has_should_retry = false;
}

static int http_get(void *ctx, const char *path_query, struct http_response *out)
{
    struct http_client *client = ctx;
    struct http_transfer t;
    struct buf url = BUF_INIT;
    unsigned attempts = client->retries + 1, attempt = 0;
    bool retryable = false, logged = false;
    double deadline = 0;
    long status = 0;
    int rc;

    /* Callers pass an empty response; whatever was in it is not ours. */
    *out = (struct http_response)HTTP_RESPONSE_INIT;
    memset(&t, 0, sizeof(t));
    t.client = client;
    if (!path_query || !http_is_path_safe(path_query)) {
        rc = -EINVAL;
        goto out;
    }
    rc = buf_printf(&url, "%s%s", client->base_url, path_query);
    if (rc)
        goto out;
    if (client->total_timeout_s > 0)
        deadline = http_now_ms() + 1000.0 * client->total_timeout_s;
    while (attempt < attempts) {
        CURL *easy = NULL;
        bool final = false;
        double started;
        long delay, limit_ms = 0;

        rc = pacer_acquire(client->pacer);
        if (rc)
            break;
        rc = http_pool_take(client, &easy);
        if (rc) {
            pacer_release(client->pacer);
            break;
        }
        http_transfer_reset(&t);
        status = 0;
        started = http_now_ms();
        if (deadline > 0)
            limit_ms = deadline - started >= 1 ? (long)(deadline - started) : 1;
        rc = http_attempt(easy, url.data, limit_ms, &t, &status, &final);
        attempt++;
        http_count_attempt(client, attempt > 1, t.received, status);
        if (client->log_requests) {
            if (rc == 0)
                log_debug("GET %s %ld %.1f ms %zu bytes attempt %u", path_query, status,
                          http_now_ms() - started, t.body.len, attempt);
            else
                log_debug("GET %s failed (%s) %.1f ms attempt %u", path_query, t.error,
                          http_now_ms() - started, attempt);
        }
        if (rc == 0 && status >= 300 && status <= 399) {
            http_log_redirect(easy, path_query, status);
            logged = true;
            rc = -EIO;
            retryable = false;
        } else if (rc == 0) {
            retryable =
                (status < 200 || status > 299) &&
                retry_is_retryable(status, 0, t.has_should_retry ? t.should_retry : NULL);
        } else {
            retryable = !final && retry_is_retryable(0, rc, NULL);
        }
        http_pool_put(client, easy);
        pacer_release(client->pacer);
        if (!retryable || attempt >= attempts)
            break;

        delay = retry_delay_ms(
            &client->policy, attempt - 1, t.has_retry_after_ms ? t.retry_after_ms : NULL,
            t.has_retry_after ? t.retry_after : NULL, time(NULL), http_random01());
        /* A retry that could not start within the budget is not made. */
        if (deadline > 0 && http_now_ms() + (double)delay >= deadline)
            break;
        if (rc == 0 && (status == 429 || status == 503)) {
            /* The server is throttling this client, not this request:
             * every thread holds off together. */
            pacer_defer(client->pacer, delay);
        } else {
            int slept = pacer_sleep(client->pacer, delay);

            if (slept) {
                rc = slept;
                retryable = false;
                break;
            }
        }
    }

    if (rc == 0) {
        if (retryable)
            log_warning("GET %s: HTTP %ld after %u attempt%s", path_query, status,
                        attempt, attempt == 1 ? "" : "s");
        out->status = status;
        /* A body may be kept as long as its listing (item files are
         * rendered from it): keep none of the room it grew into. */
        buf_trim(&t.body);
        out->body = t.body;
        t.body = (struct buf)BUF_INIT;
    } else if (!logged && rc == -EFBIG) {
        log_warning("GET %s: response larger than %zu bytes refused", path_query,
                    client->max_response);
    } else if (!logged && rc != -ECANCELED && attempt > 0) {
        log_warning("GET %s: %s after %u attempt%s (%s)", path_query, http_errno_text(rc),
                    attempt, attempt == 1 ? "" : "s", t.error);
    }
out:
    out->attempts = attempt;
    buf_free(&t.body);
    buf_free(&url);
    return rc;
}

/* Wipes the key from the header list before it goes back to the heap. */
static void http_free_headers(struct curl_slist *headers)
{
    for (struct curl_slist *h = headers; h; h = h->next)
        explicit_bzero(h->data, strlen(h->data));
    curl_slist_free_all(headers);
}

static int http_build_headers(struct http_client *client, const char *api_key)
{
    struct curl_slist *next;
    struct buf auth = BUF_INIT;
    int rc = 0;

    next = curl_slist_append(NULL, "Accept: application/json");
    if (!next) {
        rc = -ENOMEM;
        goto out;
    }
    client->headers = next;
    if (api_key && *api_key) {
        rc = buf_printf(&auth, "Authorization: Bearer %s", api_key);
        if (rc)
            goto out;
        next = curl_slist_append(client->headers, auth.data);
        if (!next) {
            rc = -ENOMEM;
            goto out;
        }
        client->headers = next;
    }
out:
    if (auth.data)
        explicit_bzero(auth.data, auth.len);
    buf_free(&auth);
    return rc;
}

static int http_check_config(const struct http_config *config)
{
    const char *url;

    if (!config || !config->base_url || config->max_connections == 0 ||
        config->max_response == 0)
        return -EINVAL;
    url = config->base_url;
    if (strncasecmp(url, "http://", 7) == 0)
        url += 7;
    else if (strncasecmp(url, "https://", 8) == 0)
        url += 8;
    else
        return -EINVAL;
    if (*url == '\0' || *url == '/' || !http_is_header_safe(url) || strchr(url, ' '))
        return -EINVAL;
    if (config->api_key && !http_is_header_safe(config->api_key))
        return -EINVAL;
    if (config->user_agent && !http_is_header_safe(config->user_agent))
        return -EINVAL;
    return 0;
}

struct http_client *http_client_new(const struct http_config *config, int *err)
{
    const struct retry_policy policy = RETRY_POLICY_DEFAULT;
    struct http_client *client = NULL;
    unsigned share_locks_made = 0;
    bool pool_lock_made = false, stats_lock_made = false;
    size_t len;
    int rc;

    rc = http_check_config(config);
    if (rc)
        goto out;
    rc = -ENOMEM;
    client = calloc(1, sizeof(*client));
    if (!client)
        goto out;
    client->base_url = strdup(config->base_url);
    client->user_agent =
        strdup(config->user_agent ? config->user_agent : HTTP_DEFAULT_USER_AGENT);
    client->ca_file = config->ca_file ? strdup(config->ca_file) : NULL;
    client->pool = calloc(config->max_connections, sizeof(*client->pool));
    if (!client->base_url || !client->user_agent || !client->pool ||
        (config->ca_file && !client->ca_file))
        goto out;
    len = strlen(client->base_url);
    while (len > 0 && client->base_url[len - 1] == '/')
        client->base_url[--len] = '\0';
    client->connect_timeout_s = config->connect_timeout_s;
    client->timeout_s = config->timeout_s;
    client->retries = config->retries;
    client->max_connections = config->max_connections;
    client->max_response = config->max_response;
    client->log_requests = config->log_requests;
    client->policy = policy;
    atomic_init(&client->cancelled, false);

    rc = http_build_headers(client, config->api_key);
    if (rc)
        goto out;
    rc = -ENOMEM;
    for (; share_locks_made < CURL_LOCK_DATA_LAST; share_locks_made++) {
        if (pthread_mutex_init(&client->share_locks[share_locks_made], NULL))
            goto out;
    }
    if (pthread_mutex_init(&client->pool_lock, NULL))
        goto out;
    pool_lock_made = true;
    if (pthread_mutex_init(&client->stats_lock, NULL))
        goto out;
    stats_lock_made = true;
    client->pacer = pacer_new(config->max_connections, &rc);
    if (!client->pacer)
        goto out;
    rc = -ENOMEM;
    client->share = curl_share_init();
    if (!client->share)
        goto out;
    {
        CURLSHcode sc = curl_share_setopt(client->share, CURLSHOPT_LOCKFUNC, http_share_lock);

        if (!sc)
            sc = curl_share_setopt(client->share, CURLSHOPT_UNLOCKFUNC, http_share_unlock);
        if (!sc)
            sc = curl_share_setopt(client->share, CURLSHOPT_USERDATA, client);
        if (!sc)
            sc = curl_share_setopt(client->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
        if (!sc)
            sc = curl_share_setopt(client->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
        if (sc) {
            /* The TLS session cache is allocated here: no memory is an answer
             * of its own, not a broken libcurl. */
            rc = sc == CURLSHE_NOMEM ? -ENOMEM : -EIO;
            goto out;
        }
    }
    client->transport.get = http_get;
    client->transport.ctx = client;
    rc = 0;
out:
    if (rc && client) {
        if (client->share)
            curl_share_cleanup(client->share);
        pacer_free(client->pacer);
        if (stats_lock_made)
            pthread_mutex_destroy(&client->stats_lock);
        if (pool_lock_made)
            pthread_mutex_destroy(&client->pool_lock);
        while (share_locks_made > 0)
            pthread_mutex_destroy(&client->share_locks[--share_locks_made]);
        http_free_headers(client->headers);
        free(client->pool);
        free(client->ca_file);
        free(client->user_agent);
        free(client->base_url);
        free(client);
        client = NULL;
    }
    if (err)
        *err = rc;
    return client;
}

const struct transport *http_client_transport(struct http_client *client)
{
    return &client->transport;
}

void http_client_cancel(struct http_client *client)
{
    atomic_store(&client->cancelled, true);
    pacer_cancel(client->pacer);
}

void http_client_set_budget(struct http_client *client, unsigned total_timeout_s,
                            unsigned retries)
{
    client->total_timeout_s = total_timeout_s;
    client->retries = retries;
}

void http_client_stats(struct http_client *client, struct http_stats *out)
{
    pthread_mutex_lock(&client->stats_lock);
    *out = client->stats;
    pthread_mutex_unlock(&client->stats_lock);
}

bool http_client_tls_problem(struct http_client *client, char *out, size_t len)
{
    bool found;

    pthread_mutex_lock(&client->stats_lock);
    found = client->tls_problem[0] != '\0';
    if (found)
        snprintf(out, len, "%s", client->tls_problem);
    pthread_mutex_unlock(&client->stats_lock);
    return found;
}

void http_client_free(struct http_client *client)
{
    if (!client)
        return;
    /* Handles first: a share still used by a handle cannot be freed. */
    for (unsigned i = 0; i < client->max_connections; i++) {
        if (client->pool[i].easy)
            curl_easy_cleanup(client->pool[i].easy);
    }
    curl_share_cleanup(client->share);
    pacer_free(client->pacer);
    pthread_mutex_destroy(&client->stats_lock);
    pthread_mutex_destroy(&client->pool_lock);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&client->share_locks[i]);
    http_free_headers(client->headers);
    free(client->pool);
    free(client->ca_file);
    free(client->user_agent);
    free(client->base_url);
    free(client);
}
