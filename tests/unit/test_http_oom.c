/*
 * libcurl's allocations fail one after another (through its allocator
 * hooks) while an HTTP client is made and used: every outcome is a clean
 * -ENOMEM or the network's own error, never a crash or a leak.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "batchfs/http.h"
#include "batchfs/log.h"

/* Allocations left before the next one fails; -1 = none fails. */
static long allocations_left = -1;

static bool allocation_fails(void)
{
    if (allocations_left == 0)
        return true;
    if (allocations_left > 0)
        allocations_left--;
    return false;
}

static void *failing_malloc(size_t size)
{
    return allocation_fails() ? NULL : malloc(size);
}

static void *failing_calloc(size_t n, size_t size)
{
    return allocation_fails() ? NULL : calloc(n, size);
}

static void *failing_realloc(void *p, size_t size)
{
    return allocation_fails() ? NULL : realloc(p, size);
}

static char *failing_strdup(const char *s)
{
    return allocation_fails() ? NULL : strdup(s);
}

static void test_every_curl_allocation_fails_in_turn(void **state)
{
    /* Port 1 on loopback refuses connections: no server is needed. */
    struct http_config config = {
        .base_url = "http://127.0.0.1:1",
        .api_key = "llx-oom-test-key",
        .connect_timeout_s = 1,
        .timeout_s = 1,
        .retries = 0,
        .max_connections = 2,
        .max_response = 1 << 20,
        .user_agent = "batchfs-test",
    };
    bool reached_network = false;

    (void)state;
    for (long n = 0; n < 5000 && !reached_network; n++) {
        struct http_response resp = HTTP_RESPONSE_INIT;
        struct http_client *client;
        const struct transport *t;
        int err = 0, rc;

        allocations_left = n;
        client = http_client_new(&config, &err);
        if (!client) {
            allocations_left = -1;
            assert_int_equal(err, -ENOMEM);
            continue;
        }
        t = http_client_transport(client);
        rc = t->get(t->ctx, "/api/v1/beta/batch-processing?limit=1", &resp);
        allocations_left = -1;
        assert_true(rc < 0);
        if (rc == -ECONNREFUSED)
            reached_network = true;
        /* libcurl words some of its failed allocations as the step that
         * failed (a name that did not resolve, a protocol error): any
         * error of the transport's contract will do, never a success. */
        else if (rc != -ENOMEM && rc != -EIO && rc != -EHOSTUNREACH && rc != -EPROTO &&
                 rc != -ETIMEDOUT)
            fail_msg("allocation %ld: %s", n, strerror(-rc));
        assert_int_equal(resp.body.len, 0);
        http_response_free(&resp);
        http_client_free(client);
    }
    assert_true(reached_network);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_curl_allocation_fails_in_turn),
    };
    int rc;

    log_setup(LOG_LEVEL_ERROR, false);
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, failing_malloc, free, failing_realloc,
                             failing_strdup, failing_calloc) != CURLE_OK)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
