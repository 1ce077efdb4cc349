/*
 * Unit tests for http: the real client against a loopback server that lives
 * in this file. The server plays one scripted raw response per connection
 * (or stalls) and records each request's head, so the tests can see what
 * was sent as well as what came back. Timeouts are 1 s; timing assertions
 * only check that nothing hung and that waits were not skipped. A test that
 * needs a request to have reached the server waits for the server to say so
 * (server_wait_stalling), never for a while.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "batchfs/http.h"
#include "batchfs/log.h"

#define TEST_KEY "sk-test-0123456789abcdef"

/* ---- log capture: the tests read what the client logged ---- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[65536]; /* protected by log_lock */
static size_t log_len;       /* protected by log_lock */

bool log_enabled(enum log_level level)
{
    (void)level;
    return true;
}

void log_message(enum log_level level, const char *fmt, ...)
{
    va_list ap;

    (void)level;
    pthread_mutex_lock(&log_lock);
    if (log_len < sizeof(log_text) - 1) {
        int n;

        va_start(ap, fmt);
        n = vsnprintf(log_text + log_len, sizeof(log_text) - log_len - 1, fmt, ap);
        va_end(ap);
        if (n > 0)
            log_len += (size_t)n < sizeof(log_text) - log_len - 1
                           ? (size_t)n
                           : sizeof(log_text) - log_len - 1;
        log_text[log_len++] = '\n';
        log_text[log_len] = '\0';
    }
    pthread_mutex_unlock(&log_lock);
}

/* The response's account of its failure starts with `want` (curl's own
 * words may follow in brackets). */
static void assert_failure(const struct http_response *resp, const char *want)
{
    if (strncmp(resp->failure, want, strlen(want)) != 0)
        fail_msg("failure \"%s\", expected it to start with \"%s\"", resp->failure, want);
}

static bool log_contains(const char *needle)
{
    bool found;

    pthread_mutex_lock(&log_lock);
    found = strstr(log_text, needle) != NULL;
    pthread_mutex_unlock(&log_lock);
    return found;
}

static void log_clear(void)
{
    pthread_mutex_lock(&log_lock);
    log_len = 0;
    log_text[0] = '\0';
    pthread_mutex_unlock(&log_lock);
}

/* ---- fixtures and clocks ---- */

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *read_fixture(const char *name, size_t *len)
{
    const char *dir = getenv("BATCHFS_TEST_DATA");
    char path[512];
    char *data;
    FILE *f;
    long size;

    snprintf(path, sizeof(path), "%s/http/%s", dir ? dir : "tests/data", name);
    f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size > 0);
    rewind(f);
    data = malloc((size_t)size + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)size, f), (size_t)size);
    data[size] = '\0';
    fclose(f);
    *len = (size_t)size;
    return data;
}

/* A raw response with Content-Length and "Connection: close". */
static char *make_response(const char *status_line, const char *headers, const void *body,
                           size_t body_len, size_t *len)
{
    char head[1024];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %s\r\n%sContent-Length: %zu\r\nConnection: close\r\n\r\n",
                     status_line, headers ? headers : "", body_len);
    char *out;

    assert_true(n > 0 && (size_t)n < sizeof(head));
    out = malloc((size_t)n + body_len);
    assert_non_null(out);
    memcpy(out, head, (size_t)n);
    if (body_len)
        memcpy(out + n, body, body_len);
    *len = (size_t)n + body_len;
    return out;
}

/* ---- the scripted loopback server ---- */

#define SERVER_MAX_STEPS 8
#define SERVER_MAX_REQUESTS 32
#define SERVER_REQUEST_MAX 4096

/* What the server does once a step's bytes are sent. */
enum step_end {
    STEP_CLOSE, /* an orderly close */
    STEP_STALL, /* nothing more until the client goes away */
    STEP_RESET, /* a TCP reset */
};

struct step {
    char *data; /* owned; NULL = send nothing */
    size_t len;
    size_t at_once;    /* the first bytes (the head) go without a pause... */
    size_t chunk;      /* ...the rest all at once (0) or this many at a time... */
    unsigned pause_ms; /* ...with this pause before each */
    enum step_end end;
};

/* How long a test waits for the server to reach a state before calling it
 * a hang. */
#define SERVER_DEADLINE_S 30

struct server {
    int fd;
    int wake[2]; /* a byte in wake[1] ends the thread's waits: stop */
    unsigned short port;
    pthread_t thread;
    struct step steps[SERVER_MAX_STEPS]; /* set before the thread starts */
    unsigned nsteps;
    atomic_bool stop;
    pthread_mutex_t lock;
    pthread_cond_t changed;                                 /* stalling or accepted moved */
    unsigned accepted;                                      /* protected by lock */
    unsigned stalling;                                      /* protected by lock */
    char requests[SERVER_MAX_REQUESTS][SERVER_REQUEST_MAX]; /* protected by lock */
};

static struct server *server_new(void)
{
    struct server *s = calloc(1, sizeof(*s));
    struct sockaddr_in addr;
    socklen_t alen = sizeof(addr);

    pthread_condattr_t attr;

    assert_non_null(s);
    pthread_mutex_init(&s->lock, NULL);
    assert_int_equal(pthread_condattr_init(&attr), 0);
    assert_int_equal(pthread_condattr_setclock(&attr, CLOCK_MONOTONIC), 0);
    assert_int_equal(pthread_cond_init(&s->changed, &attr), 0);
    pthread_condattr_destroy(&attr);
    assert_int_equal(pipe2(s->wake, O_CLOEXEC), 0);
    atomic_init(&s->stop, false);
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->fd >= 0);
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(s->fd, 64), 0);
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&addr, &alen), 0);
    s->port = ntohs(addr.sin_port);
    return s;
}

/* Takes ownership of data (NULL for a stall). */
static void server_add(struct server *s, char *data, size_t len)
{
    assert_true(s->nsteps < SERVER_MAX_STEPS);
    s->steps[s->nsteps] =
        (struct step){.data = data, .len = len, .end = data ? STEP_CLOSE : STEP_STALL};
    s->nsteps++;
}

/* Sends head at once, then body `chunk` bytes at a time after `pause_ms`
 * each, then ends as `end` says. */
static void server_add_paced(struct server *s, const char *head, const char *body,
                             size_t chunk, unsigned pause_ms, enum step_end end)
{
    size_t head_len = strlen(head), body_len = strlen(body);
    char *data = malloc(head_len + body_len + 1);
    struct step *step;

    assert_non_null(data);
    memcpy(data, head, head_len);
    memcpy(data + head_len, body, body_len + 1);
    server_add(s, data, head_len + body_len);
    step = &s->steps[s->nsteps - 1];
    step->at_once = head_len;
    step->chunk = chunk;
    step->pause_ms = pause_ms;
    step->end = end;
}

static void server_add_response(struct server *s, const char *status_line,
                                const char *headers, const char *body)
{
    size_t len;
    char *data = make_response(status_line, headers, body, strlen(body), &len);

    server_add(s, data, len);
}

static void server_add_raw(struct server *s, const char *raw)
{
    char *data = strdup(raw);

    assert_non_null(data);
    server_add(s, data, strlen(raw));
}

/* Waits until `fd` is readable (true) or the server is told to stop
 * (false). */
static bool server_poll(struct server *s, int fd)
{
    struct pollfd p[2] = {{fd, POLLIN, 0}, {s->wake[0], POLLIN, 0}};

    while (!atomic_load(&s->stop)) {
        if (poll(p, 2, -1) < 0)
            continue; /* EINTR */
        if (p[1].revents)
            return false;
        if (p[0].revents)
            return true;
    }
    return false;
}

/* Reads the request head; false if the client went away or we stop. */
static bool server_read_request(struct server *s, int c, char *req, size_t cap)
{
    size_t len = 0;

    req[0] = '\0';
    while (!strstr(req, "\r\n\r\n")) {
        ssize_t n;

        if (!server_poll(s, c))
            return false;
        n = read(c, req + len, cap - 1 - len);
        if (n <= 0)
            return false;
        len += (size_t)n;
        req[len] = '\0';
        if (len == cap - 1)
            break;
    }
    return strstr(req, "\r\n\r\n") != NULL;
}

static void server_set_stalling(struct server *s, int delta)
{
    pthread_mutex_lock(&s->lock);
    s->stalling += (unsigned)delta;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
}

/* Holds the connection, reading and dropping whatever comes, until the
 * client goes away or the server stops. */
static void server_stall(struct server *s, int c)
{
    char scratch[256];

    server_set_stalling(s, 1);
    while (server_poll(s, c) && read(c, scratch, sizeof(scratch)) > 0)
        ;
    server_set_stalling(s, -1);
}

/* Waits ms, or less if the server stops: the pause is what the client is
 * made to live through, not a wait for anything. */
static void server_pause(struct server *s, unsigned ms)
{
    struct pollfd p = {s->wake[0], POLLIN, 0};

    if (!atomic_load(&s->stop))
        poll(&p, 1, (int)ms);
}

static void server_play(struct server *s, int c, const struct step *step)
{
    size_t off = 0;

    while (off < step->len && !atomic_load(&s->stop)) {
        size_t want = step->chunk ? step->chunk : step->len;
        ssize_t n;

        if (off < step->at_once) {
            want = step->at_once - off;
        } else {
            if (want > step->len - off)
                want = step->len - off;
            server_pause(s, step->pause_ms);
        }
        n = send(c, step->data + off, want, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        off += (size_t)n;
    }
    switch (step->end) {
    case STEP_CLOSE:
        shutdown(c, SHUT_WR);
        break;
    case STEP_STALL:
        server_stall(s, c);
        break;
    case STEP_RESET: {
        /* Linger zero turns close() into a reset rather than a FIN. */
        struct linger lg = {1, 0};

        setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        break;
    }
    }
}

static void *server_run(void *arg)
{
    struct server *s = arg;
    char req[SERVER_REQUEST_MAX];

    while (server_poll(s, s->fd)) {
        const struct step *step;
        unsigned index;
        int c;

        c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        pthread_mutex_lock(&s->lock);
        index = s->accepted++;
        pthread_cond_broadcast(&s->changed);
        pthread_mutex_unlock(&s->lock);
        if (server_read_request(s, c, req, sizeof(req))) {
            pthread_mutex_lock(&s->lock);
            if (index < SERVER_MAX_REQUESTS)
                memcpy(s->requests[index], req, sizeof(req));
            pthread_mutex_unlock(&s->lock);
            step = &s->steps[index < s->nsteps ? index : s->nsteps - 1];
            server_play(s, c, step);
        }
        close(c);
    }
    return NULL;
}

static void server_start(struct server *s)
{
    assert_true(s->nsteps > 0);
    assert_int_equal(pthread_create(&s->thread, NULL, server_run, s), 0);
}

static unsigned server_accepted(struct server *s)
{
    unsigned n;

    pthread_mutex_lock(&s->lock);
    n = s->accepted;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* Waits until `count` connections are held in a stall: their requests have
 * been read in full and wait for an answer that will not come. */
static void server_wait_stalling(struct server *s, unsigned count)
{
    struct timespec deadline;
    int rc = 0;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += SERVER_DEADLINE_S;
    pthread_mutex_lock(&s->lock);
    while (s->stalling < count && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&s->changed, &s->lock, &deadline);
    pthread_mutex_unlock(&s->lock);
    assert_int_not_equal(rc, ETIMEDOUT);
}

/* Waits until the server has accepted `count` connections. */
static void server_wait_accepted(struct server *s, unsigned count)
{
    struct timespec deadline;
    int rc = 0;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += SERVER_DEADLINE_S;
    pthread_mutex_lock(&s->lock);
    while (s->accepted < count && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&s->changed, &s->lock, &deadline);
    pthread_mutex_unlock(&s->lock);
    assert_int_not_equal(rc, ETIMEDOUT);
}

/* Copy of the index'th request head (test code: single reader after join). */
static const char *server_request(struct server *s, unsigned index)
{
    assert_true(index < SERVER_MAX_REQUESTS);
    return s->requests[index];
}

static void server_free(struct server *s, bool started)
{
    atomic_store(&s->stop, true);
    assert_int_equal(write(s->wake[1], "", 1), 1);
    if (started)
        pthread_join(s->thread, NULL);
    close(s->wake[0]);
    close(s->wake[1]);
    close(s->fd);
    for (unsigned i = 0; i < s->nsteps; i++)
        free(s->steps[i].data);
    pthread_cond_destroy(&s->changed);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static struct http_client *client_for(struct server *s, unsigned timeout_s,
                                      unsigned retries, size_t max_response)
{
    char url[64];
    struct http_config config = {
        .base_url = url,
        .api_key = TEST_KEY,
        .connect_timeout_s = 1,
        .timeout_s = timeout_s,
        .retries = retries,
        .max_connections = 4,
        .max_response = max_response,
        .log_requests = true,
        .user_agent = "batchfs-test/1.0",
    };
    struct http_client *client;
    int err = -1;

    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", s ? s->port : 1);
    client = http_client_new(&config, &err);
    assert_non_null(client);
    assert_int_equal(err, 0);
    return client;
}

static int setup(void **state)
{
    (void)state;
    log_clear();
    return 0;
}

/* Whatever a test did, the key must not have reached the log. */
static int teardown(void **state)
{
    (void)state;
    return log_contains(TEST_KEY) || log_contains("Bearer") ? -1 : 0;
}

/* ---- tests ---- */

static void test_ok_body_and_request_headers(void **state)
{
    struct server *s = server_new();
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct http_client *client;
    const struct transport *tr;
    struct http_stats stats;
    size_t len;
    char *body = read_fixture("body.json", &len);
    const char *req;

    (void)state;
    server_add_response(s, "200 OK", "Content-Type: application/json\r\n", body);
    server_start(s);
    client = client_for(s, 1, 2, 1 << 20);
    tr = http_client_transport(client);
    assert_int_equal(tr->get(tr->ctx, "/api/v1/beta/batch-processing?limit=5", &resp), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.attempts, 1);
    assert_int_equal(resp.body.len, len);
    assert_memory_equal(resp.body.data, body, len);
    assert_int_equal(resp.body.cap, resp.body.len + 1);

    req = server_request(s, 0);
    /* The trailing '/' of the base URL was dropped. */
    assert_non_null(
        strstr(req, "GET /api/v1/beta/batch-processing?limit=5 HTTP/1.1\r\n"));
    assert_non_null(strstr(req, "\r\nAuthorization: Bearer " TEST_KEY "\r\n"));
    assert_non_null(strstr(req, "\r\nAccept: application/json\r\n"));
    assert_non_null(strstr(req, "\r\nUser-Agent: batchfs-test/1.0\r\n"));
    assert_non_null(strstr(req, "\r\nAccept-Encoding: gzip\r\n"));

    http_client_stats(client, &stats);
    assert_int_equal(stats.requests, 1);
    assert_int_equal(stats.retries, 0);
    assert_int_equal(stats.bytes, len);
    assert_int_equal(stats.throttled, 0);
    assert_int_equal(stats.connections, 1);
    assert_string_equal(stats.http_version, "1.1");
    /* One debug line per request, without the key. */
    assert_true(log_contains("GET /api/v1/beta/batch-processing?limit=5 200 "));
    assert_true(log_contains("bytes attempt 1"));

    http_response_free(&resp);
    assert_null(resp.body.data);
    assert_int_equal(resp.status, 0);
    http_client_free(client);
    server_free(s, true);
    free(body);
}

/* A body of several receive buffers (3 MiB, the size of a few pages of a
 * big listing) arrives whole and byte-exact. */
static void test_big_body_intact(void **state)
{
    enum { LEN = 3 << 20 };
    struct server *s = server_new();
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct http_client *client;
    const struct transport *tr;
    char *body = malloc(LEN + 1);

    (void)state;
    assert_non_null(body);
    for (size_t i = 0; i < LEN; i++)
        body[i] = (char)('a' + (i * 7 + i / 4099) % 26);
    body[LEN] = '\0';
    server_add_response(s, "200 OK", "Content-Type: application/json\r\n", body);
    server_start(s);
    client = client_for(s, 1, 1, 4 << 20);
    tr = http_client_transport(client);
    assert_int_equal(tr->get(tr->ctx, "/big", &resp), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body.len, LEN);
    assert_memory_equal(resp.body.data, body, LEN);
    http_response_free(&resp);
    http_client_free(client);
    server_free(s, true);
    free(body);
}

static void test_404_is_a_status(void **state)
{
    struct server *s = server_new();
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct http_client *client;

    (void)state;
    server_add_response(s, "404 Not Found", NULL, "{\"detail\":\"Not Found\"}");
    server_add_response(s, "200 OK", NULL, "{}");
    server_start(s);
    client = client_for(s, 1, 3, 1 << 20);
    assert_int_equal(http_client_transport(client)->get(client, "/x", &resp), 0);
    assert_int_equal(resp.status, 404);
    assert_int_equal(resp.attempts, 1);
    /* Not logged here: whether a 404 matters is the caller's to say. */
    assert_string_equal(resp.failure, "");
    assert_string_equal(resp.body.data, "{\"detail\":\"Not Found\"}");
    assert_int_equal(server_accepted(s), 1);
    http_response_free(&resp);
    http_client_free(client);
    server_free(s, true);
}

static void test_5xx_retried_then_ok(void **state)
{
    struct server *s = server_new();
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct http_client *client;
    struct http_stats stats;
    long long start;

    (void)state;
    server_add_response(s, "500 Internal Server Error", NULL, "oops");
    server_add_response(s, "503 Service Unavailable", "Retry-After-Ms: 50\r\n", "busy");
    server_add_response(s, "200 OK", NULL, "{\"ok\":true}");
    server_start(s);
    client = client_for(s, 1, 3, 1 << 20);
    start = now_ms();
    assert_int_equal(http_client_transport(client)->get(client, "/x", &resp), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.attempts, 3);
    /* Only the final body, not the error bodies before it. */
    assert_string_equal(resp.body.data, "{\"ok\":true}");
    /* The 500 waited out a backoff of 375..500 ms. */
    assert_true(now_ms() - start >= 375);
    http_client_stats(client, &stats);
    assert_int_equal(stats.requests, 3);
    assert_int_equal(stats.retries, 2);
    http_response_free(&resp);
    http_client_free(client);
    server_free(s, true);
}

static void test_retries_exhausted_returns_last_status(void **state)
{
    struct server *s = server_new();
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct http_client *client;

    (void)state;
    server_add_response(s, "502 Bad Gateway", "Retry-After-Ms: 10\r\n", "bad");
    server_start(s);
    client = client_for(s, 1, 2, 1 << 20);
    assert_int_equal(http_client_transport(client)->get(client, "/y?a=1", &resp), 0);
    assert_int_equal(resp.status, 502);
    assert_int_equal(resp.attempts, 3);
    assert_string_equal(resp.body.data, "bad");
    assert_int_equal(server_accepted(s), 3);
    /* Said by the caller, in its one line (request_log_failure). */
    assert_string_equal(resp.failure, "HTTP 502 after 3 attempts");
    assert_false(log_contains("HTTP 502 after"));
    http_response_free(&resp);
    http_client_free(client);
    server_free(s, true);
}

static void test_retry_after_honoured(void **state)
{
    struct server *s = server_new();
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct http_client *client;
    struct http_stats stats;
    long long start;

    (void)state;
    server_add_response(s, "429 Too Many Requests", "Retry-After: 1\r\n", "slow down");
    server_add_response(s, "200 OK", NULL, "{}");
    server_start(s);
    client = client_for(s, 1, 2, 1 << 20);
    start = now_ms();
    assert_int_equal(http_client_transport(client)->get(client, "/x", &resp), 0);
    assert_true(now_ms() - start >= 1000);
    assert_true(now_ms() - start < 5000);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.attempts, 2);
    http_client_stats(client, &stats);
    assert_int_equal(stats.throttled, 1);
    http_response_free(&resp);
    http_client_free(client);
    server_free(s, true);
}

static void test_should_retry_header_overrides(void **state)
{
    struct server *s = server_new();
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct http_client *client;

    (void)state;
    /* false stops a 503 from being retried... */
    server_add_response(s, "503 Service Unavailable", "X-Should-Retry: false\r\n", "no");
    /* ...and true makes a 400 retried. */
    server_add_response(s, "400 Bad Request",
                        "x-should-retry: TRUE\r\nRetry-After-Ms: 5\r\n", "again");
    server_add_response(s, "200 OK", NULL, "yes");
    server_start(s);
    client = client_for(s, 1, 3, 1 << 20);
    assert_int_equal(http_client_transport(client)->get(client, "/a", &resp), 0);
    assert_int_equal(resp.status, 503);
    assert_int_equal(resp.attempts, 1);
    assert_int_equal(server_accepted(s), 1);
    http_response_free(&resp);
    assert_int_equal(http_client_transport(client)->get(client, "/b", &resp), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.attempts, 2);
    assert_string_equal(resp.body.data, "yes");
    http_response_free(&resp);
    http_client_free(client);
    server_free(s, true);
}

static void test_truncated_body_never_returned(void **state)
{
    struct server *s = server_new();
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct http_client *client;

    (void)state;
    server_add_raw(s,
                   "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n"
                   "{\"items\": [");
    server_start(s);
    client = client_for(s, 1, 1, 1 << 20);
    assert_int_equal(http_client_transport(client)->get(client, "/t", &resp), -EIO);
    assert_int_equal(resp.attempts, 2);
    assert_int_equal(resp.status, 0);
    assert_null(resp.body.data);
    assert_int_equal(resp.body.len, 0);
    assert_int_equal(server_accepted(s), 2);
    assert_failure(&resp, "no complete response after 2 attempts");
    http_response_free(&resp);
    http_client_free(client);
    server_free(s, true);
}

static void test_stall_times_out(void **state)
{
    struct server *s = server_new();
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct http_client *client;
    long long start, took;

    (void)state;
    server_add(s, NULL, 0);
    server_start(s);
    client = client_for(s, 1, 1, 1 << 20);
    start = now_ms();
    assert_int_equal(http_client_transport(client)->get(client, "/s", &resp), -ETIMEDOUT);
    took = now_ms() - start;
    /* Two attempts of about timeout_s each plus one backoff. */
    assert_true(took >= 2000);
    assert_true(took < 7000);
    assert_int_equal(resp.attempts, 2);
    assert_null(resp.body.data);
    assert_string_equal(resp.failure, "timed out after 2 attempts (no byte for 1 s)");
    http_client_free(client);
    server_free(s, true);
}

/* A body that keeps coming, a byte every 1.4 s, is waited for with
 * timeout_s 2: slower than a byte a second on average, but never 2 s
 * without one. */
static void test_slow_body_within_timeout(void **state)
{
    struct server *s = server_new();
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct http_client *client;
    long long start;

    (void)state;
    server_add_paced(s,
                     "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
                     "[1]", 1, 1400, STEP_CLOSE);
    server_start(s);
    client = client_for(s, 2, 0, 1 << 20);
    start = now_ms();
    assert_int_equal(http_client_transport(client)->get(client, "/slow", &resp), 0);
    assert_true(now_ms() - start >= 4000);
    assert_true(now_ms() - start < 15000);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.attempts, 1);
    assert_string_equal(resp.body.data, "[1]");
    http_response_free(&resp);
    http_client_free(client);
    server_free(s, true);
}

/*
 * Answers cut short, each played twice (an attempt and its retry) with
 * timeout_s 1: never a body, and one errno once the retry is spent, -EIO
 * for every way a response can end early (a short Content-Length is
 * test_truncated_body_never_returned) and -ETIMEDOUT for one that stops
 * coming. Each must end within a bound that proves nothing hung.
 */
static void test_cut_short_responses(void **state)
{
    static const char head_100[] =
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n";
    static const char head_chunked[] =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    static const struct {
        const char *name, *head, *body;
        enum step_end end;
        int rc;
        const char *failure;
    } cases[] = {
        {"reset mid-body", head_100, "{\"items\": [", STEP_RESET, -EIO,
         "no complete response after 2 attempts"},
        {"chunked without the last chunk", head_chunked, "b\r\n{\"items\": [\r\n",
         STEP_CLOSE, -EIO, "no complete response after 2 attempts"},
        {"empty reply", "", "", STEP_CLOSE, -EIO,
         "no complete response after 2 attempts"},
        {"stall mid-body", head_100, "{\"items\": [", STEP_STALL, -ETIMEDOUT,
         "timed out after 2 attempts (no byte for 1 s)"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct server *s = server_new();
        struct http_response resp = HTTP_RESPONSE_INIT;
        struct http_client *client;
        long long start;

        print_message("%s\n", cases[i].name);
        log_clear();
        server_add_paced(s, cases[i].head, cases[i].body, 0, 0, cases[i].end);
        server_start(s);
        client = client_for(s, 1, 1, 1 << 20);
        start = now_ms();
        assert_int_equal(http_client_transport(client)->get(client, "/t", &resp),
                         cases[i].rc);
        assert_true(now_ms() - start < 7000);
        assert_int_equal(resp.attempts, 2);
        assert_int_equal(resp.status, 0);
        assert_null(resp.body.data);
        assert_int_equal(server_accepted(s), 2);
        assert_failure(&resp, cases[i].failure);
        http_client_free(client);
        server_free(s, true);
    }
}

/* With a budget for the whole request, a stall ends at the budget, and no
 * retry starts after it, whatever timeout_s and retries say. */
static void test_total_timeout_bounds_the_request(void **state)
{
    struct server *s = server_new();
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct http_client *client;
    char url[64];
    struct http_config config = {
        .base_url = url,
        .api_key = TEST_KEY,
        .connect_timeout_s = 1,
        .timeout_s = 30,
        .retries = 1,
        .max_connections = 1,
        .max_response = 1 << 20,
    };
    long long start, took;

    (void)state;
    server_add(s, NULL, 0);
    server_start(s);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", s->port);
    client = http_client_new(&config, NULL);
    assert_non_null(client);
    http_client_set_budget(client, 2, 4);
    start = now_ms();
    assert_int_equal(http_client_transport(client)->get(client, "/t", &resp), -ETIMEDOUT);
    took = now_ms() - start;
    assert_true(took >= 1900);
    assert_true(took < 5000);
    assert_int_equal(resp.attempts, 1);
    http_client_free(client);
    server_free(s, true);
}

static void test_redirect_refused_key_stays_home(void **state)
{
    struct server *home = server_new();
    struct server *elsewhere = server_new();
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct http_client *client;
    char location[128];

    (void)state;
    snprintf(location, sizeof(location),
             "Location: http://127.0.0.1:%u/steal?sig=secret\r\n", elsewhere->port);
    server_add_response(home, "302 Found", location, "");
    server_add_response(elsewhere, "200 OK", NULL, "{}");
    server_start(home);
    server_start(elsewhere);
    client = client_for(home, 1, 3, 1 << 20);
    assert_int_equal(http_client_transport(client)->get(client, "/r", &resp), -EIO);
    assert_int_equal(resp.attempts, 1);
    assert_null(resp.body.data);
    /* The key went to the configured host, and nothing to the target. */
    assert_non_null(strstr(server_request(home, 0), "Authorization: Bearer " TEST_KEY));
    assert_int_equal(server_accepted(home), 1);
    assert_int_equal(server_accepted(elsewhere), 0);
    assert_string_equal(resp.failure, "HTTP 302 redirect to 127.0.0.1 refused");
    assert_false(log_contains("sig=secret"));
    http_client_free(client);
    server_free(home, true);
    server_free(elsewhere, true);
}

static void test_body_cap(void **state)
{
    struct server *s = server_new();
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct http_client *client;
    char big[1101];

    (void)state;
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    server_add_response(s, "200 OK", NULL, big); /* 1100 bytes */
    big[1000] = '\0';
    server_add_response(s, "200 OK", NULL, big); /* exactly the cap */
    server_start(s);
    client = client_for(s, 1, 3, 1000);
    assert_int_equal(http_client_transport(client)->get(client, "/big", &resp), -EFBIG);
    assert_int_equal(resp.attempts, 1);
    assert_null(resp.body.data);
    assert_string_equal(resp.failure, "response larger than 1000 bytes refused");
    assert_int_equal(http_client_transport(client)->get(client, "/fits", &resp), 0);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.failure, "");
    assert_int_equal(resp.body.len, 1000);
    http_response_free(&resp);
    http_client_free(client);
    server_free(s, true);
}

static void test_gzip_decoded(void **state)
{
    struct server *s = server_new();
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct http_client *client;
    size_t len, zlen, rlen;
    char *resp_data;
    char *body = read_fixture("body.json", &len);
    char *z = read_fixture("body.json.gz", &zlen);

    (void)state;
    resp_data = make_response("200 OK", "Content-Encoding: gzip\r\n", z, zlen, &rlen);
    server_add(s, resp_data, rlen);
    server_start(s);
    client = client_for(s, 1, 0, 1 << 20);
    assert_int_equal(http_client_transport(client)->get(client, "/gz", &resp), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body.len, len);
    assert_memory_equal(resp.body.data, body, len);
    /* The body grew past its compressed length; none of that room is kept
     * (a listing keeps its pages' bodies). */
    assert_int_equal(resp.body.cap, resp.body.len + 1);
    assert_int_equal(resp.body.data[resp.body.len], '\0');
    http_response_free(&resp);
    http_client_free(client);
    server_free(s, true);
    free(z);
    free(body);
}

static void test_gzip_corrupt(void **state)
{
    struct server *s = server_new();
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct http_client *client;
    size_t zlen, rlen;
    char *resp_data;
    char *z = read_fixture("corrupt.gz", &zlen);

    (void)state;
    resp_data = make_response("200 OK", "Content-Encoding: gzip\r\n", z, zlen, &rlen);
    server_add(s, resp_data, rlen);
    server_start(s);
    client = client_for(s, 1, 1, 1 << 20);
    assert_int_equal(http_client_transport(client)->get(client, "/gz", &resp), -EIO);
    assert_int_equal(resp.attempts, 2);
    assert_null(resp.body.data);
    http_client_free(client);
    server_free(s, true);
    free(z);
}

/* bomb.gz: 16 KiB on the wire, 16 MiB of zeros once inflated. */
static void test_gzip_bomb(void **state)
{
    struct server *s = server_new();
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct http_client *client;
    size_t zlen, rlen;
    char *resp_data;
    char *z = read_fixture("bomb.gz", &zlen);
    struct http_stats stats;

    (void)state;
    assert_true(zlen < 64 * 1024);
    resp_data = make_response("200 OK", "Content-Encoding: gzip\r\n", z, zlen, &rlen);
    server_add(s, resp_data, rlen);
    server_start(s);
    client = client_for(s, 1, 2, 1 << 20);
    assert_int_equal(http_client_transport(client)->get(client, "/bomb", &resp), -EFBIG);
    assert_int_equal(resp.attempts, 1);
    assert_null(resp.body.data);
    /* Stopped soon after the cap rather than inflating it all. */
    http_client_stats(client, &stats);
    assert_true(stats.bytes < (4u << 20));
    assert_string_equal(resp.failure, "response larger than 1048576 bytes refused");
    http_client_free(client);
    server_free(s, true);
    free(z);
}

struct get_call {
    struct http_client *client;
    const char *path;
    int rc;
    struct http_response resp;
    long long done_ms;
};

static void *get_call_run(void *arg)
{
    struct get_call *call = arg;

    call->rc =
        http_client_transport(call->client)
            ->get(http_client_transport(call->client)->ctx, call->path, &call->resp);
    call->done_ms = now_ms();
    return NULL;
}

static void test_cancel_during_stall(void **state)
{
    struct server *s = server_new();
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct get_call call = {0};
    pthread_t t;
    long long cancelled_at;

    (void)state;
    server_add(s, NULL, 0);
    server_start(s);
    call.client = client_for(s, 5, 3, 1 << 20);
    call.path = "/stall";
    assert_int_equal(pthread_create(&t, NULL, get_call_run, &call), 0);
    server_wait_stalling(s, 1);
    cancelled_at = now_ms();
    http_client_cancel(call.client);
    pthread_join(t, NULL);
    assert_int_equal(call.rc, -ECANCELED);
    assert_true(call.done_ms - cancelled_at < 2500);
    assert_null(call.resp.body.data);
    /* Later requests fail at once without touching the network. */
    assert_int_equal(http_client_transport(call.client)->get(call.client, "/x", &resp),
                     -ECANCELED);
    assert_int_equal(server_accepted(s), 1);
    http_client_free(call.client);
    server_free(s, true);
}

static void test_connection_refused(void **state)
{
    struct server *s = server_new();
    struct http_response resp = HTTP_RESPONSE_INIT;
    struct http_client *client;
    char problem[512];

    (void)state;
    /* Nothing listens on the port once the socket is closed. */
    client = client_for(s, 1, 1, 1 << 20);
    close(s->fd);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(http_client_transport(client)->get(client, "/x", &resp),
                     -ECONNREFUSED);
    assert_int_equal(resp.attempts, 2);
    assert_failure(&resp, "connection refused after 2 attempts");
    /* Not a TLS failure: nothing to say about certificates. */
    assert_false(http_client_tls_problem(client, problem, sizeof(problem)));
    http_client_free(client);
    server_free(s, false);
}

static void test_concurrent_requests(void **state)
{
    struct server *s = server_new();
    struct get_call calls[8];
    pthread_t t[8];
    struct http_client *client;
    struct http_stats stats;

    (void)state;
    server_add_response(s, "200 OK", NULL, "{\"n\":1}");
    server_start(s);
    client = client_for(s, 1, 1, 1 << 20);
    for (int i = 0; i < 8; i++) {
        calls[i] = (struct get_call){client, "/c", -1, HTTP_RESPONSE_INIT, 0};
        assert_int_equal(pthread_create(&t[i], NULL, get_call_run, &calls[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(calls[i].rc, 0);
        assert_int_equal(calls[i].resp.status, 200);
        assert_string_equal(calls[i].resp.body.data, "{\"n\":1}");
        http_response_free(&calls[i].resp);
    }
    http_client_stats(client, &stats);
    assert_int_equal(stats.requests, 8);
    http_client_free(client);
    server_free(s, true);
}

static void test_bad_config(void **state)
{
    struct http_config config = {
        .base_url = "ftp://example.com",
        .api_key = "k",
        .connect_timeout_s = 1,
        .timeout_s = 1,
        .retries = 0,
        .max_connections = 1,
        .max_response = 100,
    };
    struct http_client *client;
    struct http_response resp = HTTP_RESPONSE_INIT;
    int err = 0;

    (void)state;
    assert_null(http_client_new(&config, &err));
    assert_int_equal(err, -EINVAL);
    config.base_url = "example.com";
    assert_null(http_client_new(&config, &err));
    assert_int_equal(err, -EINVAL);
    config.base_url = "https://";
    assert_null(http_client_new(&config, &err));
    assert_int_equal(err, -EINVAL);
    config.base_url = "https://api.example.com";
    config.api_key = "key\r\nX-Evil: 1";
    assert_null(http_client_new(&config, &err));
    assert_int_equal(err, -EINVAL);
    config.api_key = "key";
    config.max_connections = 0;
    assert_null(http_client_new(&config, &err));
    assert_int_equal(err, -EINVAL);
    assert_null(http_client_new(NULL, &err));
    assert_int_equal(err, -EINVAL);
    config.max_connections = 1;
    config.base_url = "HTTPS://api.example.com//";
    client = http_client_new(&config, &err);
    assert_non_null(client);
    assert_int_equal(err, 0);
    /* A path that would break the request line is refused before any I/O. */
    assert_int_equal(http_client_transport(client)->get(client, "/a b", &resp), -EINVAL);
    assert_int_equal(http_client_transport(client)->get(client, "/a\r\nX: y", &resp),
                     -EINVAL);
    assert_int_equal(http_client_transport(client)->get(client, "relative", &resp),
                     -EINVAL);
    http_client_free(client);
    http_client_free(NULL);
    http_response_free(NULL);
}

/* ---- the engine: asynchronous calls, bounds, cancels ---- */

/* A submitted call and how many times its done was called. */
struct async_call {
    struct transport_call call;
    unsigned done_count; /* under async_lock */
    long long done_ms;
};

static pthread_mutex_t async_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t async_changed = PTHREAD_COND_INITIALIZER;
static unsigned async_finished; /* under async_lock */

static void async_done(struct transport_call *call)
{
    struct async_call *a = call->arg;

    pthread_mutex_lock(&async_lock);
    a->done_count++;
    a->done_ms = now_ms();
    async_finished++;
    pthread_cond_broadcast(&async_changed);
    pthread_mutex_unlock(&async_lock);
}

static void async_submit(struct http_client *client, struct async_call *a, const char *path)
{
    const struct transport *tr = http_client_transport(client);

    memset(a, 0, sizeof(*a));
    a->call.path_query = path;
    a->call.done = async_done;
    a->call.arg = a;
    assert_int_equal(tr->submit(tr->ctx, &a->call), 0);
}

static void async_reset(void)
{
    pthread_mutex_lock(&async_lock);
    async_finished = 0;
    pthread_mutex_unlock(&async_lock);
}

/* Waits until `a` ended (an upper bound only to catch a hang). */
static void async_wait(struct async_call *a)
{
    struct timespec until;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    pthread_mutex_lock(&async_lock);
    while (a->done_count == 0)
        assert_int_equal(pthread_cond_timedwait(&async_changed, &async_lock, &until), 0);
    pthread_mutex_unlock(&async_lock);
}

static void async_wait_all(unsigned n)
{
    struct timespec until;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    pthread_mutex_lock(&async_lock);
    while (async_finished < n)
        assert_int_equal(pthread_cond_timedwait(&async_changed, &async_lock, &until), 0);
    pthread_mutex_unlock(&async_lock);
}

static unsigned async_done_count(struct async_call *a)
{
    unsigned n;

    pthread_mutex_lock(&async_lock);
    n = a->done_count;
    pthread_mutex_unlock(&async_lock);
    return n;
}

/*
 * A server that holds every request it reads until the gate opens, then
 * answers each (and every later one at once) and closes: how many requests
 * it held at the same time is how many the client had in flight.
 */
#define GATE_MAX 64

struct gate_server {
    int fd;
    unsigned short port;
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    bool open;         /* under lock */
    unsigned held;     /* requests read and not answered; under lock */
    unsigned max_held; /* under lock */
    unsigned answered; /* under lock */
};

static void gate_answer(int c)
{
    static const char reply[] =
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";

    (void)!send(c, reply, sizeof(reply) - 1, MSG_NOSIGNAL);
    shutdown(c, SHUT_WR);
    close(c);
}

static void *gate_run(void *arg)
{
    struct gate_server *g = arg;
    int conns[GATE_MAX];
    char reqs[GATE_MAX][1024];
    size_t lens[GATE_MAX];
    bool read_whole[GATE_MAX];
    unsigned n = 0;

    while (!atomic_load(&g->stop)) {
        struct pollfd p[GATE_MAX + 1];
        bool open;

        p[0] = (struct pollfd){g->fd, POLLIN, 0};
        for (unsigned i = 0; i < n; i++)
            p[i + 1] = (struct pollfd){conns[i], read_whole[i] ? 0 : POLLIN, 0};
        if (poll(p, n + 1, 20) < 0)
            continue;
        if ((p[0].revents & POLLIN) && n < GATE_MAX) {
            int c = accept4(g->fd, NULL, NULL, SOCK_CLOEXEC);

            if (c >= 0) {
                conns[n] = c;
                lens[n] = 0;
                read_whole[n] = false;
                n++;
            }
        }
        for (unsigned i = 0; i < n; i++) {
            if (read_whole[i] || !(p[i + 1].revents & (POLLIN | POLLHUP)))
                continue;
            ssize_t got = read(conns[i], reqs[i] + lens[i], sizeof(reqs[i]) - 1 - lens[i]);

            if (got <= 0)
                continue;
            lens[i] += (size_t)got;
            reqs[i][lens[i]] = '\0';
            if (strstr(reqs[i], "\r\n\r\n")) {
                read_whole[i] = true;
                pthread_mutex_lock(&g->lock);
                g->held++;
                if (g->held > g->max_held)
                    g->max_held = g->held;
                pthread_cond_broadcast(&g->changed);
                pthread_mutex_unlock(&g->lock);
            }
        }
        pthread_mutex_lock(&g->lock);
        open = g->open;
        pthread_mutex_unlock(&g->lock);
        for (unsigned i = 0; open && i < n;) {
            if (!read_whole[i]) {
                i++;
                continue;
            }
            gate_answer(conns[i]);
            pthread_mutex_lock(&g->lock);
            g->held--;
            g->answered++;
            pthread_mutex_unlock(&g->lock);
            n--;
            conns[i] = conns[n];
            lens[i] = lens[n];
            read_whole[i] = read_whole[n];
            memcpy(reqs[i], reqs[n], sizeof(reqs[i]));
        }
    }
    for (unsigned i = 0; i < n; i++)
        close(conns[i]);
    return NULL;
}

static struct gate_server *gate_new(void)
{
    struct gate_server *g = calloc(1, sizeof(*g));
    struct server *s = server_new(); /* for its bound socket */

    assert_non_null(g);
    g->fd = dup(s->fd);
    assert_true(g->fd >= 0);
    g->port = s->port;
    server_free(s, false);
    atomic_init(&g->stop, false);
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->changed, NULL);
    assert_int_equal(pthread_create(&g->thread, NULL, gate_run, g), 0);
    return g;
}

static void gate_wait_held(struct gate_server *g, unsigned n)
{
    struct timespec until;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    pthread_mutex_lock(&g->lock);
    while (g->held < n)
        assert_int_equal(pthread_cond_timedwait(&g->changed, &g->lock, &until), 0);
    pthread_mutex_unlock(&g->lock);
}

static void gate_free(struct gate_server *g)
{
    atomic_store(&g->stop, true);
    pthread_join(g->thread, NULL);
    close(g->fd);
    pthread_cond_destroy(&g->changed);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

static void test_engine_bounds_transfers_in_flight(void **state)
{
    struct gate_server *g = gate_new();
    struct server port_of = {.port = g->port};
    static struct async_call calls[24];
    struct http_client *client;
    struct http_stats stats;

    (void)state;
    async_reset();
    client = client_for(&port_of, 5, 0, 1 << 20); /* max_connections = 4 */
    for (int i = 0; i < 24; i++)
        async_submit(client, &calls[i], "/many");
    /* Four are held at the server; the other twenty wait in the engine. */
    gate_wait_held(g, 4);
    pthread_mutex_lock(&g->lock);
    g->open = true;
    pthread_mutex_unlock(&g->lock);
    async_wait_all(24);
    for (int i = 0; i < 24; i++) {
        assert_int_equal(async_done_count(&calls[i]), 1);
        assert_int_equal(calls[i].call.rc, 0);
        assert_int_equal(calls[i].call.resp.status, 200);
        assert_string_equal(calls[i].call.resp.body.data, "{}");
        http_response_free(&calls[i].call.resp);
    }
    pthread_mutex_lock(&g->lock);
    assert_int_equal(g->max_held, 4);
    assert_int_equal(g->answered, 24);
    pthread_mutex_unlock(&g->lock);
    assert_int_equal(http_client_max_in_flight(client), 4);
    http_client_stats(client, &stats);
    assert_int_equal(stats.requests, 24);
    http_client_free(client);
    /* Exactly once, even after the client is gone. */
    for (int i = 0; i < 24; i++)
        assert_int_equal(async_done_count(&calls[i]), 1);
    gate_free(g);
}

static void test_engine_retry_is_a_timer(void **state)
{
    struct server *s = server_new();
    struct async_call waiting, other;
    struct http_client *client;
    long long cancelled_at;

    (void)state;
    async_reset();
    /* The first answer asks for a retry in 20 s (the most a server may ask). */
    server_add_response(s, "500 Internal Server Error", "Retry-After: 3600\r\n", "later");
    server_add_response(s, "200 OK", NULL, "{\"other\":1}");
    server_start(s);
    client = client_for(s, 5, 3, 1 << 20);
    async_submit(client, &waiting, "/waits");
    server_wait_accepted(s, 1);
    /* While its retry timer runs, the one engine thread serves another. */
    async_submit(client, &other, "/other");
    async_wait(&other);
    assert_int_equal(other.call.rc, 0);
    assert_string_equal(other.call.resp.body.data, "{\"other\":1}");
    http_response_free(&other.call.resp);
    assert_int_equal(async_done_count(&waiting), 0);
    /* Cancelling drops the timer: it ends now, and no retry is sent. */
    cancelled_at = now_ms();
    http_client_transport(client)->cancel(client, &waiting.call);
    async_wait(&waiting);
    assert_int_equal(waiting.call.rc, -ECANCELED);
    assert_int_equal(waiting.call.resp.attempts, 1);
    assert_true(waiting.done_ms - cancelled_at < 2000);
    assert_int_equal(server_accepted(s), 2);
    http_client_free(client);
    assert_int_equal(async_done_count(&waiting), 1);
    assert_int_equal(async_done_count(&other), 1);
    server_free(s, true);
}

static void test_engine_retry_timer_fires(void **state)
{
    struct server *s = server_new();
    struct async_call call;
    struct http_client *client;
    struct http_stats stats;
    long long start;

    (void)state;
    async_reset();
    server_add_response(s, "503 Service Unavailable", "retry-after-ms: 300\r\n", "busy");
    server_add_response(s, "200 OK", NULL, "{}");
    server_start(s);
    client = client_for(s, 5, 2, 1 << 20);
    start = now_ms();
    async_submit(client, &call, "/r");
    async_wait(&call);
    assert_int_equal(call.call.rc, 0);
    assert_int_equal(call.call.resp.status, 200);
    assert_int_equal(call.call.resp.attempts, 2);
    /* The server's wait was honoured, not cut short. */
    assert_true(call.done_ms - start >= 300);
    http_client_stats(client, &stats);
    assert_int_equal(stats.retries, 1);
    http_response_free(&call.call.resp);
    http_client_free(client);
    assert_int_equal(async_done_count(&call), 1);
    server_free(s, true);
}

/* A 429 moves the one back-off clock: a request submitted afterwards, to
 * another path, does not start before the server's wait is over. */
static void test_engine_throttle_holds_every_start(void **state)
{
    struct server *s = server_new();
    struct async_call throttled, later;
    struct http_client *client;
    struct http_stats stats;
    long long deadline = now_ms() + 10000, submitted;

    (void)state;
    async_reset();
    server_add_response(s, "429 Too Many Requests", "retry-after-ms: 400\r\n", "slow");
    server_add_response(s, "200 OK", NULL, "{\"later\":1}");
    server_add_response(s, "200 OK", NULL, "{\"throttled\":1}");
    server_start(s);
    client = client_for(s, 5, 2, 1 << 20);
    async_submit(client, &throttled, "/t");
    do {
        assert_true(now_ms() < deadline);
        usleep(1000);
        http_client_stats(client, &stats);
    } while (stats.throttled == 0);
    submitted = now_ms();
    async_submit(client, &later, "/later");
    async_wait(&later);
    async_wait(&throttled);
    assert_int_equal(later.call.rc, 0);
    assert_true(later.done_ms - submitted >= 300);
    assert_int_equal(throttled.call.rc, 0);
    assert_int_equal(throttled.call.resp.attempts, 2);
    http_response_free(&later.call.resp);
    http_response_free(&throttled.call.resp);
    http_client_free(client);
    server_free(s, true);
}

static struct http_client *client_with_connections(struct server *s, unsigned n)
{
    char url[64];
    struct http_config config = {
        .base_url = url,
        .connect_timeout_s = 1,
        .timeout_s = 30,
        .max_connections = n,
        .max_response = 1 << 20,
    };
    struct http_client *client;

    snprintf(url, sizeof(url), "http://127.0.0.1:%u", s->port);
    client = http_client_new(&config, NULL);
    assert_non_null(client);
    return client;
}

static void test_engine_cancel_queued_and_in_flight(void **state)
{
    struct server *s = server_new();
    struct async_call running, queued;
    struct http_client *client;
    long long cancelled_at;

    (void)state;
    async_reset();
    server_add(s, NULL, 0); /* a stall: headers never come */
    server_start(s);
    client = client_with_connections(s, 1);
    async_submit(client, &running, "/stalls");
    server_wait_stalling(s, 1);
    async_submit(client, &queued, "/queued");
    /* The queued one ends at once, never sent; the other is untouched. */
    http_client_transport(client)->cancel(client, &queued.call);
    async_wait(&queued);
    assert_int_equal(queued.call.rc, -ECANCELED);
    assert_int_equal(queued.call.resp.attempts, 0);
    assert_int_equal(async_done_count(&running), 0);
    /* The one in flight is removed from the multi handle. */
    cancelled_at = now_ms();
    http_client_transport(client)->cancel(client, &running.call);
    async_wait(&running);
    assert_int_equal(running.call.rc, -ECANCELED);
    assert_true(running.done_ms - cancelled_at < 2000);
    /* A cancel after the end does nothing. */
    http_client_transport(client)->cancel(client, &running.call);
    assert_int_equal(server_accepted(s), 1);
    http_client_free(client);
    assert_int_equal(async_done_count(&running), 1);
    assert_int_equal(async_done_count(&queued), 1);
    server_free(s, true);
}

struct token_get {
    struct http_client *client;
    struct transport_cancel *token;
    int rc;
    long long done_ms;
};

static void *token_get_run(void *arg)
{
    struct token_get *tg = arg;
    struct http_response resp = HTTP_RESPONSE_INIT;

    transport_cancel_scope_begin(tg->token);
    tg->rc = http_client_transport(tg->client)->get(tg->client, "/stall", &resp);
    transport_cancel_scope_end();
    tg->done_ms = now_ms();
    assert_null(resp.body.data);
    return NULL;
}

static void test_engine_sync_get_cancelled_by_token(void **state)
{
    struct server *s = server_new();
    struct transport_cancel token;
    struct token_get tg;
    struct http_response resp = HTTP_RESPONSE_INIT;
    pthread_t thread;
    long long fired_at;

    (void)state;
    server_add(s, NULL, 0);
    server_start(s);
    assert_int_equal(transport_cancel_init(&token), 0);
    tg = (struct token_get){client_for(s, 30, 3, 1 << 20), &token, 1, 0};
    assert_int_equal(pthread_create(&thread, NULL, token_get_run, &tg), 0);
    server_wait_stalling(s, 1);
    fired_at = now_ms();
    transport_cancel_fire(&token);
    pthread_join(thread, NULL);
    assert_int_equal(tg.rc, -ECANCELED);
    assert_true(tg.done_ms - fired_at < 1000);
    /* Under a fired token a get ends at once, without a request; the
     * client itself still works for others. */
    transport_cancel_scope_begin(&token);
    assert_int_equal(http_client_transport(tg.client)->get(tg.client, "/x", &resp),
                     -ECANCELED);
    transport_cancel_scope_end();
    assert_int_equal(server_accepted(s), 1);
    http_client_free(tg.client);
    transport_cancel_destroy(&token);
    server_free(s, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ok_body_and_request_headers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_404_is_a_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_5xx_retried_then_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retries_exhausted_returns_last_status, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_honoured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_should_retry_header_overrides, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_truncated_body_never_returned, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stall_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_body_within_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_short_responses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_total_timeout_bounds_the_request, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_redirect_refused_key_stays_home, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_body_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_body_intact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gzip_decoded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gzip_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gzip_bomb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_during_stall, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_engine_bounds_transfers_in_flight, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_engine_retry_is_a_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_engine_retry_timer_fires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_engine_throttle_holds_every_start, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_engine_cancel_queued_and_in_flight, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_engine_sync_get_cancelled_by_token, setup,
                                        teardown),
    };
    int failed;

    /* The loopback server must be reached directly, whatever the
     * environment says about proxies. */
    setenv("no_proxy", "*", 1);
    setenv("NO_PROXY", "*", 1);
    if (http_global_init() != 0)
        return 1;
    failed = cmocka_run_group_tests(tests, NULL, NULL);
    http_global_cleanup();
    return failed;
}
