/*
 * http — the libcurl client behind the transport (see include/batchfs/http.h).
 *
 * A request is an easy handle prepared here and run by the engine (one
 * thread, one multi handle: engine.c). Each end of an attempt comes back to
 * http_finished() on the engine thread, which either completes the request
 * or queues the next attempt with a start time: a retry is a timer in the
 * engine, never a sleeping thread. A throttle (429, 503) moves the shared
 * pacer's resume_at instead, which holds off every start. Only a complete
 * body is ever handed back: anything cut short is retried and then reported
 * as an errno. A 3xx is never followed, so the key cannot travel to another
 * host.
 *
 * An attempt fails after timeout_s without a byte received (the clock starts
 * once connected): a slow body that keeps arriving is waited for, however
 * slowly it comes. Requests can be given a budget for all their attempts and
 * waits together (http_client_set_budget()).
 *
 * The synchronous get is transport_get_by_submit(): a submit and a wait on
 * a condition variable.
 *
 * Not for: building API URLs or reading JSON (api.c, listpages.c), caching
 * (cache.c), running the transfers (engine.c).
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

#include "batchfs/engine.h"
#include "batchfs/log.h"
#include "batchfs/pacer.h"
#include "batchfs/retry.h"

#define HTTP_HEADER_VALUE_MAX 128
#define HTTP_TLS_PROBLEM_MAX (CURL_ERROR_SIZE + 64)
#define HTTP_DEFAULT_USER_AGENT "batchfs"

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
    struct pacer *pacer; /* its clock only: resume_at, read by the engine */
    struct engine *engine;

    atomic_bool cancelled; /* read by the transfer callbacks */

    /* Serialises a cancel with the end of its call: protects every
     * transport_call.impl of this client's calls. */
    pthread_mutex_t calls_lock;

    pthread_mutex_t stats_lock;
    struct http_stats stats;                /* protected by stats_lock */
    char tls_problem[HTTP_TLS_PROBLEM_MAX]; /* protected by stats_lock; "" = none */
};

/* What one attempt collected; reset before each attempt. */
struct http_transfer {
    struct http_client *client;
    CURL *easy; /* the attempt's handle, for its Content-Length */
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
        /* A body of known length gets its room at once, and no more:
         * pages are hundreds of kilobytes, growing by doubling copies each
         * one several times into fresh memory, and rounding up to a power
         * of two leaves a hole the size of the slack when the body is
         * trimmed. A gzip length is only a floor. */
        curl_off_t length = -1;

        if (curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length) ==
                CURLE_OK &&
            length > 0 && (uint64_t)length <= t->client->max_response &&
            buf_reserve_filled(&t->body, (size_t)length)) {
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

/* Options that never change for a request. 0, or -ENOMEM/-EIO. */
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
    /* A page of 1000 items is about 400 KB: read it in four receives and
     * callbacks rather than 25 of the default 16 KiB. libcurl mallocs the
     * buffer for each transfer: below glibc's 128 KiB threshold for mapping
     * a block on its own, it is reused from malloc's heaps, where a bigger
     * one, mapped and freed, would raise that threshold and leave later
     * blocks' holes in the heaps (bigmem.h). */
    HTTP_SET(CURLOPT_BUFFERSIZE, 120L * 1024);
    HTTP_SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    HTTP_SET(CURLOPT_TCP_KEEPALIVE, 1L);
    HTTP_SET(CURLOPT_TCP_KEEPIDLE, 60L);
    HTTP_SET(CURLOPT_TCP_KEEPINTVL, 30L);
    HTTP_SET(CURLOPT_HTTPHEADER, client->headers);
    HTTP_SET(CURLOPT_USERAGENT, client->user_agent);
    /* Over TLS, wait for the first connection to learn whether it
     * multiplexes rather than open one per transfer started together. Not
     * over plain http, which never does: libcurl would hold every transfer
     * until the first response's headers came. */
    if (strncasecmp(client->base_url, "https://", 8) == 0)
        HTTP_SET(CURLOPT_PIPEWAIT, 1L);
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

/* Says why a redirect was refused, naming the target host only: a full
 * Location may carry a signed query string. */
static void http_redirect_failure(CURL *easy, long status, char *out, size_t size)
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
        snprintf(out, size, "HTTP %ld redirect to %s refused", status, host);
    else
        snprintf(out, size, "HTTP %ld redirect refused", status);
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

/* One request: its transfer in the engine, its attempts, and its call. */
struct http_request {
    struct engine_transfer xfer; /* first: the engine hands this back */
    struct http_transfer t;
    struct http_client *client;
    struct transport_call *call;
    char *path_query; /* copied from the call */
    char *url;
    unsigned attempt, attempts;
    double deadline; /* monotonic ms; 0 = no budget */
    /* Why it failed, said where it was understood (http_response.failure);
     * "" until then. */
    char failure[sizeof(((struct http_response *)0)->failure)];
};

static bool http_check_stall(struct engine_transfer *xfer);
static void http_finished(struct engine_transfer *xfer, CURLcode code, bool cancelled);

/* Sets what changes between attempts and resets what an attempt collects.
 * The attempt may take until the deadline. 0 or -ENOMEM. */
static int http_prepare_attempt(struct http_request *req)
{
    struct http_transfer *t = &req->t;
    long limit_ms = 0;

    http_transfer_reset(t);
    t->error[0] = '\0';
    if (req->deadline > 0) {
        double left =
            req->deadline - (req->xfer.start_ms > 0 ? req->xfer.start_ms : http_now_ms());

        limit_ms = left >= 1 ? (long)left : 1;
    }
    if (curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, limit_ms) != CURLE_OK)
        return -ENOMEM;
#if LIBCURL_VERSION_NUM < 0x075000
    /* No callback says when the connection is up: time from the start. */
    t->last_byte_ms = http_now_ms();
#endif
    return 0;
}

static void http_request_free(struct http_request *req)
{
    if (req->t.easy)
        curl_easy_cleanup(req->t.easy);
    buf_free(&req->t.body);
    free(req->url);
    free(req->path_query);
    free(req);
}

/* A new request for call, its easy handle set up. 0 or a negative errno. */
static int http_request_new(struct http_client *client, struct transport_call *call,
                            struct http_request **out)
{
    struct http_request *req = calloc(1, sizeof(*req));
    struct buf url = BUF_INIT;
    CURL *easy = NULL;
    int rc = -ENOMEM;

    if (!req)
        goto out;
    /* A page of a thousand items is hundreds of KB: see bigmem.h. */
    req->t.body = (struct buf)BUF_INIT_BIG;
    req->client = client;
    req->call = call;
    req->t.client = client;
    req->attempts = client->retries + 1;
    req->path_query = strdup(call->path_query);
    if (!req->path_query)
        goto out;
    rc = buf_printf(&url, "%s%s", client->base_url, call->path_query);
    if (rc)
        goto out;
    req->url = url.data;
    url = (struct buf)BUF_INIT;
    rc = -ENOMEM;
    easy = curl_easy_init();
    if (!easy)
        goto out;
    req->t.easy = easy;
    rc = http_handle_setup(client, easy);
    if (rc)
        goto out;
    if (curl_easy_setopt(easy, CURLOPT_URL, req->url) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_WRITEDATA, &req->t) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_HEADERDATA, &req->t) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_XFERINFODATA, &req->t) != CURLE_OK ||
#if LIBCURL_VERSION_NUM >= 0x075000
        curl_easy_setopt(easy, CURLOPT_PREREQDATA, &req->t) != CURLE_OK ||
#endif
        curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->t.error) != CURLE_OK) {
        rc = -ENOMEM;
        goto out;
    }
    if (client->total_timeout_s > 0)
        req->deadline = http_now_ms() + 1000.0 * client->total_timeout_s;
    req->xfer.easy = easy;
    req->xfer.finished = http_finished;
    req->xfer.check = http_check_stall;
    rc = http_prepare_attempt(req);
out:
    if (rc && req) {
        http_request_free(req);
        req = NULL;
    }
    buf_free(&url);
    *out = req;
    return rc;
}

/* The stall clock, checked by the engine about once a second: the
 * progress callback alone is not called for a transfer the multi handle
 * has nothing to do for. */
static bool http_check_stall(struct engine_transfer *xfer)
{
    struct http_request *req = (struct http_request *)xfer;
    unsigned timeout_s = req->client->timeout_s;

    if (timeout_s > 0 && req->t.last_byte_ms > 0 &&
        http_now_ms() - req->t.last_byte_ms >= 1000.0 * timeout_s) {
        req->t.stalled = true;
        return true;
    }
    return false;
}

/* Hands the outcome to the call's owner and frees the request. */
static void http_complete(struct http_request *req, int rc, long status, bool retryable)
{
    struct http_client *client = req->client;
    struct transport_call *call = req->call;
    struct http_transfer *t = &req->t;

    call->resp = (struct http_response)HTTP_RESPONSE_INIT;
    if (rc == 0) {
        if (retryable)
            snprintf(req->failure, sizeof(req->failure), "HTTP %ld after %u attempt%s",
                     status, req->attempt, req->attempt == 1 ? "" : "s");
        call->resp.status = status;
        /* A body may be kept as long as its listing (item files are
         * rendered from it): keep none of the room it grew into. */
        buf_trim(&t->body);
        call->resp.body = t->body;
        t->body = (struct buf)BUF_INIT_BIG;
    } else if (!req->failure[0] && rc == -EFBIG) {
        snprintf(req->failure, sizeof(req->failure), "response larger than %zu bytes refused",
                 client->max_response);
    } else if (!req->failure[0] && rc != -ECANCELED && req->attempt > 0) {
        snprintf(req->failure, sizeof(req->failure), "%s after %u attempt%s (%.200s)",
                 http_errno_text(rc), req->attempt, req->attempt == 1 ? "" : "s", t->error);
    }
    call->resp.attempts = req->attempt;
    memcpy(call->resp.failure, req->failure, sizeof(call->resp.failure));
    call->rc = rc;
    pthread_mutex_lock(&client->calls_lock);
    call->impl = NULL;
    pthread_mutex_unlock(&client->calls_lock);
    http_request_free(req);
    call->done(call);
}

/* The end of one attempt, on the engine thread: completes the request or
 * queues its next attempt. */
static void http_finished(struct engine_transfer *xfer, CURLcode code, bool cancelled)
{
    struct http_request *req = (struct http_request *)xfer;
    struct http_client *client = req->client;
    struct http_transfer *t = &req->t;
    bool final = false, retryable = false;
    curl_off_t total_us = 0;
    long status = 0, delay;
    int rc;

    if (cancelled) {
        http_complete(req, -ECANCELED, 0, false);
        return;
    }
    if (code != CURLE_OK) {
        if (t->stalled)
            snprintf(t->error, sizeof(t->error), "no byte for %u s", client->timeout_s);
        else if (!t->error[0])
            snprintf(t->error, sizeof(t->error), "%s", curl_easy_strerror(code));
    }
    http_count_transfer(client, t->easy, code, t->error);
    if (code != CURLE_OK)
        rc = http_map_curl_error(code, t, &final);
    else
        rc = curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK
                 ? 0
                 : -EIO;
    req->attempt++;
    http_count_attempt(client, req->attempt > 1, t->received, status);
    if (client->log_requests) {
        curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &total_us);
        if (rc == 0)
            log_debug("GET %s %ld %.1f ms %zu bytes attempt %u", req->path_query, status,
                      (double)total_us / 1000.0, t->body.len, req->attempt);
        else
            log_debug("GET %s failed (%s) %.1f ms attempt %u", req->path_query, t->error,
                      (double)total_us / 1000.0, req->attempt);
    }
    if (rc == 0 && status >= 300 && status <= 399) {
        http_redirect_failure(t->easy, status, req->failure, sizeof(req->failure));
        rc = -EIO;
    } else if (rc == 0) {
        retryable =
            (status < 200 || status > 299) &&
            retry_is_retryable(status, 0, t->has_should_retry ? t->should_retry : NULL);
    } else {
        retryable = !final && retry_is_retryable(0, rc, NULL);
    }
    if (!retryable || req->attempt >= req->attempts)
        goto done;
    delay = retry_delay_ms(&client->policy, req->attempt - 1,
                           t->has_retry_after_ms ? t->retry_after_ms : NULL,
                           t->has_retry_after ? t->retry_after : NULL, time(NULL),
                           http_random01());
    /* A retry that could not start within the budget is not made. */
    if (req->deadline > 0 && http_now_ms() + (double)delay >= req->deadline)
        goto done;
    if (rc == 0 && (status == 429 || status == 503)) {
        /* The server is throttling this client, not this request: every
         * start holds off together. */
        pacer_defer(client->pacer, delay);
        req->xfer.start_ms = 0;
    } else {
        req->xfer.start_ms = http_now_ms() + (double)delay;
    }
    if (http_prepare_attempt(req) == 0) {
        engine_requeue(client->engine, &req->xfer);
        return;
    }
    rc = -ENOMEM;
    retryable = false;
done:
    http_complete(req, rc, status, retryable);
}

static int http_submit(void *ctx, struct transport_call *call)
{
    struct http_client *client = ctx;
    struct http_request *req;
    int rc;

    call->rc = 0;
    call->resp = (struct http_response)HTTP_RESPONSE_INIT;
    call->impl = NULL;
    if (!call->path_query || !http_is_path_safe(call->path_query))
        return -EINVAL;
    rc = http_request_new(client, call, &req);
    if (rc)
        return rc;
    /* Under the lock: a cancel from another thread may come as soon as
     * impl is seen, and the engine may end the call at once. */
    pthread_mutex_lock(&client->calls_lock);
    call->impl = req;
    rc = engine_submit(client->engine, &req->xfer);
    if (rc)
        call->impl = NULL;
    pthread_mutex_unlock(&client->calls_lock);
    if (rc)
        http_request_free(req);
    return rc;
}

static void http_cancel_call(void *ctx, struct transport_call *call)
{
    struct http_client *client = ctx;

    pthread_mutex_lock(&client->calls_lock);
    if (call->impl)
        engine_cancel(client->engine, &((struct http_request *)call->impl)->xfer);
    pthread_mutex_unlock(&client->calls_lock);
}

static int http_get(void *ctx, const char *path_query, struct http_response *out)
{
    struct http_client *client = ctx;

    return transport_get_by_submit(&client->transport, path_query, out);
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
    bool calls_lock_made = false, stats_lock_made = false;
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
    if (!client->base_url || !client->user_agent || (config->ca_file && !client->ca_file))
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
    if (pthread_mutex_init(&client->calls_lock, NULL))
        goto out;
    calls_lock_made = true;
    if (pthread_mutex_init(&client->stats_lock, NULL))
        goto out;
    stats_lock_made = true;
    client->pacer = pacer_new(&rc);
    if (!client->pacer)
        goto out;
    client->engine = engine_new(config->max_connections, client->pacer, &rc);
    if (!client->engine)
        goto out;
    client->transport.get = http_get;
    client->transport.submit = http_submit;
    client->transport.cancel = http_cancel_call;
    client->transport.ctx = client;
    rc = 0;
out:
    if (rc && client) {
        pacer_free(client->pacer);
        if (stats_lock_made)
            pthread_mutex_destroy(&client->stats_lock);
        if (calls_lock_made)
            pthread_mutex_destroy(&client->calls_lock);
        http_free_headers(client->headers);
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
    engine_cancel_all(client->engine);
}

void http_client_park(struct http_client *client)
{
    engine_park(client->engine);
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

unsigned http_client_max_in_flight(struct http_client *client)
{
    return engine_max_running(client->engine);
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
    /* The engine first: it ends whatever it still holds, using the rest. */
    engine_free(client->engine);
    pacer_free(client->pacer);
    pthread_mutex_destroy(&client->stats_lock);
    pthread_mutex_destroy(&client->calls_lock);
    http_free_headers(client->headers);
    free(client->ca_file);
    free(client->user_agent);
    free(client->base_url);
    free(client);
}
