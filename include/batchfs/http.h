/*
 * http — the libcurl client behind the transport.
 *
 * Owns everything about talking HTTP: timeouts, the response size cap, gzip,
 * refusing redirects and non-http(s) protocols, the retry policy of the
 * official clients and one pacer clock so that a throttled API sees one
 * backing-off client rather than N retry loops. Every request runs on the
 * client's one engine thread (engine.h), whose multi handle pools the
 * connections: over TLS it always verifies the certificate and offers
 * HTTP/2 by ALPN, and requests share one multiplexed connection when the
 * server takes it; over HTTP/1.1, kept-alive connections. Requests in
 * flight and connections are both at most max_connections. The transport
 * offers a blocking get and an asynchronous submit (transport.h).
 * Knows nothing of FUSE or of the LlamaCloud endpoints.
 */
#ifndef BATCHFS_HTTP_H
#define BATCHFS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "batchfs/transport.h"

struct http_config {
    const char *base_url;   /* "https://host[:port][/prefix]", no trailing '/' */
    const char *api_key;    /* sent as "Authorization: Bearer"; never logged */
    unsigned connect_timeout_s; /* per attempt */
    /* Per attempt, once connected: no byte received for this long fails the
     * attempt (0 = never); a slow body that keeps coming is waited for. */
    unsigned timeout_s;
    unsigned retries;       /* extra attempts after the first */
    unsigned max_connections; /* requests in flight at once, all threads */
    size_t max_response;    /* bytes of decoded body, at most */
    bool log_requests;      /* one debug line per request (method, path, status, time, bytes) */
    const char *user_agent;
    const char *ca_file; /* PEM CA bundle trusted besides the system's; NULL = none.
                          * Certificates are always verified: there is no way off. */
};

struct http_stats {
    unsigned long long requests;  /* attempts sent */
    unsigned long long retries;   /* attempts that were retries */
    unsigned long long bytes;     /* decoded body bytes received */
    unsigned long long throttled; /* 429 answers */
    unsigned long long connections; /* opened (CURLINFO_NUM_CONNECTS summed) */
    const char *http_version; /* of the last response: "1.1", "2"; NULL before one */
};

struct http_client;

/* Must be called once before any thread starts (curl_global_init). 0 or -EIO. */
int http_global_init(void);
void http_global_cleanup(void);

/* Creates a client. The config's strings are copied. NULL on bad config
 * (e.g. a base URL that is not http/https) or no memory; *err says which. */
struct http_client *http_client_new(const struct http_config *config, int *err);

/* The transport implemented by this client (borrowed from the client). */
const struct transport *http_client_transport(struct http_client *client);

/* Makes every waiting and future request return -ECANCELED promptly (for
 * unmount and signals): transfers are removed, retry timers dropped.
 * Thread-safe. */
void http_client_cancel(struct http_client *client);

/* Stops the client's engine thread until its next request, keeping its
 * kept-alive connections: call before fork() (fuse_daemonize), which keeps
 * no thread. No request may be in flight. */
void http_client_park(struct http_client *client);

/*
 * Sets what each request may take from now on: total_timeout_s for all its
 * attempts and the waits between them (0 = no bound; an attempt is cut at
 * the bound, and a retry that could not start within it is not made), and
 * at most `retries` retries. The client starts with no bound and the
 * configured retries. Not thread-safe: call only while no request is in
 * flight (e.g. around the one request sent before mounting).
 */
void http_client_set_budget(struct http_client *client, unsigned total_timeout_s,
                            unsigned retries);

/* Snapshot of the counters. Thread-safe. */
void http_client_stats(struct http_client *client, struct http_stats *out);

/* Most requests that were ever in flight at once (tests, statistics).
 * Thread-safe. */
unsigned http_client_max_in_flight(struct http_client *client);

/* When the latest attempt failed in its TLS handshake, writes the reason
 * ("TLS: certificate has expired") into out and returns true; false when
 * it did not. For the one request that proves the URL before a mount.
 * Thread-safe. */
bool http_client_tls_problem(struct http_client *client, char *out, size_t len);

/* Stops the engine thread and frees the client. No request may be in
 * flight (a call still held is ended -ECANCELED). Safe on NULL. */
void http_client_free(struct http_client *client);

#endif
