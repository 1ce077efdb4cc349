/*
 * fake_transport — scripted transport for the API unit tests (see
 * fake_transport.h). Not for use outside tests.
 */
#include "fake_transport.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct fake_entry {
    char *pattern;
    long status;
    struct buf body;
    int error;
    fake_handler_fn handler;
    void *handler_arg;
    unsigned delay_ms;
    unsigned times;
    unsigned used;
};

struct fake_transport {
    struct transport transport;
    pthread_mutex_t lock;   /* protects everything below */
    pthread_cond_t changed; /* a call was cancelled, or one ended */
    size_t running;         /* calls whose thread has not finished */
    struct fake_entry *rules;
    size_t n_rules;
    char **requests;
    size_t n_requests;
    size_t unmatched;
    size_t concurrent;
    size_t max_concurrent;
};

int fake_transport_match(const char *pattern, const char *text)
{
    const char *star = NULL, *resume = NULL;

    while (*text) {
        if (*pattern == '*') {
            star = pattern++;
            resume = text;
        } else if (*pattern == *text) {
            pattern++;
            text++;
        } else if (star) {
            pattern = star + 1;
            text = ++resume;
        } else {
            return 0;
        }
    }
    while (*pattern == '*')
        pattern++;
    return *pattern == '\0';
}

int fake_transport_read_fixture(const char *name, struct buf *out)
{
    const char *base = getenv("BATCHFS_TEST_DATA");
    char path[1024], chunk[4096];
    size_t n;
    FILE *f;
    int rc = 0;

    snprintf(path, sizeof(path), "%s/api/%s", base && *base ? base : "tests/data", name);
    f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fixture %s: %s\n", path, strerror(errno));
        return -errno;
    }
    while (rc == 0 && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = buf_append(out, chunk, n);
    if (rc == 0 && ferror(f))
        rc = -EIO;
    fclose(f);
    return rc;
}

/* One submitted call: answered on a thread of its own, as the engine
 * would on its thread. */
struct fake_call {
    struct fake_transport *fake;
    struct transport_call *call;
    bool cancelled; /* under fake->lock */
};

/* Waits delay_ms or until the call is cancelled; true when cancelled. */
/* `ms` from now on the clock pthread_cond_timedwait reads. */
static struct timespec fake_deadline(unsigned ms)
{
    struct timespec until;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    return until;
}

static bool fake_delay(struct fake_transport *fake, struct fake_call *fc,
                       unsigned delay_ms)
{
    struct timespec until;
    bool cancelled;

    until = fake_deadline(delay_ms);
    pthread_mutex_lock(&fake->lock);
    while (!fc->cancelled &&
           pthread_cond_timedwait(&fake->changed, &fake->lock, &until) == 0)
        ;
    cancelled = fc->cancelled;
    pthread_mutex_unlock(&fake->lock);
    return cancelled;
}

static int fake_answer(struct fake_transport *fake, struct fake_call *fc,
                       const char *path_query, struct http_response *out)
{
    struct fake_entry rule = {0};
    char *copy = strdup(path_query);
    bool found = false;
    int rc = 0;

    if (!copy)
        return -ENOMEM;
    pthread_mutex_lock(&fake->lock);
    {
        char **grown = realloc(fake->requests, (fake->n_requests + 1) * sizeof(*grown));

        if (grown) {
            fake->requests = grown;
            fake->requests[fake->n_requests++] = copy;
            copy = NULL;
        }
    }
    for (size_t i = 0; i < fake->n_rules && !found; i++) {
        struct fake_entry *r = &fake->rules[i];

        if ((r->times == 0 || r->used < r->times) &&
            fake_transport_match(r->pattern, path_query)) {
            r->used++;
            rule = *r; /* the body stays owned by the table */
            found = true;
        }
    }
    if (!found)
        fake->unmatched++;
    if (++fake->concurrent > fake->max_concurrent)
        fake->max_concurrent = fake->concurrent;
    pthread_cond_broadcast(&fake->changed); /* for fake_transport_wait_matching */
    pthread_mutex_unlock(&fake->lock);
    free(copy);

    if (rule.delay_ms && fake_delay(fake, fc, rule.delay_ms)) {
        rc = -ECANCELED;
    } else if (!found) {
        rc = -ENOSYS;
    } else if (rule.handler) {
        rc = rule.handler(rule.handler_arg, path_query, out);
    } else if (rule.error) {
        rc = rule.error;
    } else {
        out->status = rule.status ? rule.status : 200;
        out->attempts = 1;
        buf_reset(&out->body);
        rc = buf_append(&out->body, rule.body.data ? rule.body.data : "", rule.body.len);
    }

    pthread_mutex_lock(&fake->lock);
    fake->concurrent--;
    if (rc == 0 && fc->cancelled) {
        http_response_free(out);
        rc = -ECANCELED;
    }
    pthread_mutex_unlock(&fake->lock);
    return rc;
}

static void *fake_call_run(void *arg)
{
    struct fake_call *fc = arg;
    struct fake_transport *fake = fc->fake;
    struct transport_call *call = fc->call;

    call->resp = (struct http_response)HTTP_RESPONSE_INIT;
    call->rc = fake_answer(fake, fc, call->path_query, &call->resp);
    if (call->rc)
        buf_free(&call->resp.body);
    pthread_mutex_lock(&fake->lock);
    call->impl = NULL;
    pthread_mutex_unlock(&fake->lock);
    free(fc);
    call->done(call);
    pthread_mutex_lock(&fake->lock);
    fake->running--;
    pthread_cond_broadcast(&fake->changed);
    pthread_mutex_unlock(&fake->lock);
    return NULL;
}

static int fake_submit(void *ctx, struct transport_call *call)
{
    struct fake_transport *fake = ctx;
    struct fake_call *fc = calloc(1, sizeof(*fc));
    pthread_attr_t attr;
    pthread_t thread;
    int rc = 0;

    if (!fc)
        return -ENOMEM;
    fc->fake = fake;
    fc->call = call;
    call->impl = fc;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&fake->lock);
    fake->running++;
    if (pthread_create(&thread, &attr, fake_call_run, fc)) {
        fake->running--;
        call->impl = NULL;
        free(fc);
        rc = -EAGAIN;
    }
    pthread_mutex_unlock(&fake->lock);
    pthread_attr_destroy(&attr);
    return rc;
}

static void fake_cancel(void *ctx, struct transport_call *call)
{
    struct fake_transport *fake = ctx;

    pthread_mutex_lock(&fake->lock);
    if (call->impl) {
        ((struct fake_call *)call->impl)->cancelled = true;
        pthread_cond_broadcast(&fake->changed);
    }
    pthread_mutex_unlock(&fake->lock);
}

static int fake_get(void *ctx, const char *path_query, struct http_response *out)
{
    struct fake_transport *fake = ctx;

    return transport_get_by_submit(&fake->transport, path_query, out);
}

struct fake_transport *fake_transport_new(void)
{
    struct fake_transport *fake = calloc(1, sizeof(*fake));

    if (!fake)
        return NULL;
    pthread_mutex_init(&fake->lock, NULL);
    pthread_cond_init(&fake->changed, NULL);
    fake->transport.get = fake_get;
    fake->transport.submit = fake_submit;
    fake->transport.cancel = fake_cancel;
    fake->transport.ctx = fake;
    return fake;
}

void fake_transport_reset(struct fake_transport *fake)
{
    pthread_mutex_lock(&fake->lock);
    for (size_t i = 0; i < fake->n_rules; i++) {
        free(fake->rules[i].pattern);
        buf_free(&fake->rules[i].body);
    }
    free(fake->rules);
    fake->rules = NULL;
    fake->n_rules = 0;
    for (size_t i = 0; i < fake->n_requests; i++)
        free(fake->requests[i]);
    free(fake->requests);
    fake->requests = NULL;
    fake->n_requests = 0;
    fake->unmatched = 0;
    fake->max_concurrent = 0;
    pthread_mutex_unlock(&fake->lock);
}

void fake_transport_free(struct fake_transport *fake)
{
    if (!fake)
        return;
    /* Every call's thread is done with the fake before it goes. */
    pthread_mutex_lock(&fake->lock);
    while (fake->running > 0)
        pthread_cond_wait(&fake->changed, &fake->lock);
    pthread_mutex_unlock(&fake->lock);
    fake_transport_reset(fake);
    pthread_cond_destroy(&fake->changed);
    pthread_mutex_destroy(&fake->lock);
    free(fake);
}

const struct transport *fake_transport_transport(struct fake_transport *fake)
{
    return &fake->transport;
}

int fake_transport_add(struct fake_transport *fake, const struct fake_rule *rule)
{
    struct fake_entry entry = {0}, *grown;
    int rc = 0;

    entry.pattern = strdup(rule->pattern);
    if (!entry.pattern)
        return -ENOMEM;
    entry.status = rule->status;
    entry.error = rule->error;
    entry.handler = rule->handler;
    entry.handler_arg = rule->handler_arg;
    entry.delay_ms = rule->delay_ms;
    entry.times = rule->times;
    if (rule->fixture)
        rc = fake_transport_read_fixture(rule->fixture, &entry.body);
    else if (rule->body)
        rc = buf_append(&entry.body, rule->body,
                        rule->body_len ? rule->body_len : strlen(rule->body));
    if (rc < 0)
        goto fail;
    pthread_mutex_lock(&fake->lock);
    grown = realloc(fake->rules, (fake->n_rules + 1) * sizeof(*grown));
    if (grown) {
        fake->rules = grown;
        fake->rules[fake->n_rules++] = entry;
    }
    pthread_mutex_unlock(&fake->lock);
    if (!grown) {
        rc = -ENOMEM;
        goto fail;
    }
    return 0;
fail:
    free(entry.pattern);
    buf_free(&entry.body);
    return rc;
}

void fake_transport_add_body(struct fake_transport *fake, const char *pattern,
                             long status, const char *body)
{
    struct fake_rule rule = {.pattern = pattern, .status = status, .body = body};

    if (fake_transport_add(fake, &rule) < 0)
        abort();
}

void fake_transport_add_fixture(struct fake_transport *fake, const char *pattern,
                                long status, const char *fixture)
{
    struct fake_rule rule = {.pattern = pattern, .status = status, .fixture = fixture};

    if (fake_transport_add(fake, &rule) < 0)
        abort();
}

size_t fake_transport_count(struct fake_transport *fake)
{
    size_t n;

    pthread_mutex_lock(&fake->lock);
    n = fake->n_requests;
    pthread_mutex_unlock(&fake->lock);
    return n;
}

const char *fake_transport_request(struct fake_transport *fake, size_t i)
{
    const char *s = NULL;

    pthread_mutex_lock(&fake->lock);
    if (i < fake->n_requests)
        s = fake->requests[i];
    pthread_mutex_unlock(&fake->lock);
    return s;
}

/* Requests matching `pattern` seen so far. Under fake->lock. */
static size_t fake_count_matching_locked(struct fake_transport *fake, const char *pattern)
{
    size_t n = 0;

    for (size_t i = 0; i < fake->n_requests; i++)
        n += fake_transport_match(pattern, fake->requests[i]);
    return n;
}

size_t fake_transport_count_matching(struct fake_transport *fake, const char *pattern)
{
    size_t n;

    pthread_mutex_lock(&fake->lock);
    n = fake_count_matching_locked(fake, pattern);
    pthread_mutex_unlock(&fake->lock);
    return n;
}

bool fake_transport_wait_matching(struct fake_transport *fake, const char *pattern,
                                  size_t n, unsigned timeout_ms)
{
    struct timespec until;
    bool seen;

    until = fake_deadline(timeout_ms);
    pthread_mutex_lock(&fake->lock);
    while (!(seen = fake_count_matching_locked(fake, pattern) >= n) &&
           pthread_cond_timedwait(&fake->changed, &fake->lock, &until) == 0)
        ;
    if (!seen)
        seen = fake_count_matching_locked(fake, pattern) >= n;
    pthread_mutex_unlock(&fake->lock);
    return seen;
}

size_t fake_transport_unmatched(struct fake_transport *fake)
{
    size_t n;

    pthread_mutex_lock(&fake->lock);
    n = fake->unmatched;
    pthread_mutex_unlock(&fake->lock);
    return n;
}

size_t fake_transport_max_concurrent(struct fake_transport *fake)
{
    size_t n;

    pthread_mutex_lock(&fake->lock);
    n = fake->max_concurrent;
    pthread_mutex_unlock(&fake->lock);
    return n;
}
