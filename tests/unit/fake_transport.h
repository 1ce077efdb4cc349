/*
 * fake_transport — a scripted transport for unit tests of the API layer.
 *
 * A table of rules, each a path_query pattern ('*' matches any run of
 * characters, everything else is literal) with the answer to give: a status
 * and body (inline or a fixture file under $BATCHFS_TEST_DATA), an errno, or
 * a handler that builds the answer. The first rule that matches and is not
 * used up answers. Every request is recorded. Thread-safe: the API layer may
 * call it from several threads at once. A submitted call is answered on a
 * thread of its own (as the engine answers on its thread), and so is a get
 * (a submit and a wait, honouring the thread's cancel token); a cancel ends
 * a rule's delay at once with -ECANCELED.
 */
#ifndef BATCHFS_FAKE_TRANSPORT_H
#define BATCHFS_FAKE_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "batchfs/transport.h"

/* Builds a response for a request: 0 with *out filled, or a negative errno. */
typedef int (*fake_handler_fn)(void *arg, const char *path_query,
                               struct http_response *out);

struct fake_rule {
    const char *pattern;     /* matched against the whole path_query */
    long status;             /* answered with this status (200 when 0) ... */
    const char *body;        /* ... and this body (NUL-terminated unless body_len) */
    size_t body_len;         /* bytes of body; 0 = strlen(body) */
    const char *fixture;     /* or the body from tests/data/api/<fixture> */
    int error;               /* or this negative errno instead of a response */
    fake_handler_fn handler; /* or whatever this says */
    void *handler_arg;
    unsigned delay_ms; /* wait this long before answering */
    unsigned times;    /* answer this many requests, then stop matching; 0 = any */
};

struct fake_transport;

struct fake_transport *fake_transport_new(void);
void fake_transport_free(struct fake_transport *fake);

/* The transport to hand to api_new(); valid until fake_transport_free(). */
const struct transport *fake_transport_transport(struct fake_transport *fake);

/* Adds a rule (strings are copied; a fixture is read now). 0 or -errno. */
int fake_transport_add(struct fake_transport *fake, const struct fake_rule *rule);

/* Shorthands for the common rules; they abort the test on failure. */
void fake_transport_add_body(struct fake_transport *fake, const char *pattern,
                             long status, const char *body);
void fake_transport_add_fixture(struct fake_transport *fake, const char *pattern,
                                long status, const char *fixture);

/* Requests seen so far, in arrival order; the strings stay valid until
 * fake_transport_free() or fake_transport_reset(). */
size_t fake_transport_count(struct fake_transport *fake);
const char *fake_transport_request(struct fake_transport *fake, size_t i);
size_t fake_transport_count_matching(struct fake_transport *fake, const char *pattern);

/* Waits until `n` requests matching `pattern` have been seen, or
 * `timeout_ms` have passed (a guard: a test fails on it rather than
 * hanging). True when they have. */
bool fake_transport_wait_matching(struct fake_transport *fake, const char *pattern,
                                  size_t n, unsigned timeout_ms);

/* Requests no rule matched (they were answered -ENOSYS). */
size_t fake_transport_unmatched(struct fake_transport *fake);

/* Most requests that were being answered at the same time. */
size_t fake_transport_max_concurrent(struct fake_transport *fake);

/* Forgets rules and recorded requests. */
void fake_transport_reset(struct fake_transport *fake);

/* '*'-only glob match, exposed for handlers. */
int fake_transport_match(const char *pattern, const char *text);

/* Reads tests/data/api/<name> (under $BATCHFS_TEST_DATA) into *out. 0 or -errno. */
int fake_transport_read_fixture(const char *name, struct buf *out);

#endif
