/*
 * Unit tests of the INIT reply correction (fs/fuseio.c): the kernel is told
 * that lookups and readdirs of one folder may run in parallel, and no other
 * reply is touched.
 */
#include <errno.h>
#include <linux/fuse.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "batchfs/fuseio.h"

/* A reply to request `unique`: its header and an INIT argument. */
struct reply {
    struct fuse_out_header header;
    struct fuse_init_out init;
};

static void reply_make(struct reply *r, uint64_t unique, int error, uint32_t flags)
{
    memset(r, 0, sizeof(*r));
    r->header.len = sizeof(*r);
    r->header.unique = unique;
    r->header.error = error;
    r->init.major = 7;
    r->init.minor = 31;
    r->init.flags = flags;
}

static bool fix(struct reply *r, uint64_t init_unique, bool offered)
{
    return fuseio_fix_init_reply(&r->header, sizeof(r->header), &r->init, sizeof(r->init),
                                 init_unique, offered);
}

static void test_init_reply_gets_parallel_dirops(void **state)
{
    struct reply r;

    (void)state;
    reply_make(&r, 2, 0, FUSE_ASYNC_READ | FUSE_DO_READDIRPLUS);
    assert_true(fix(&r, 2, true));
    assert_int_equal(r.init.flags,
                     FUSE_ASYNC_READ | FUSE_DO_READDIRPLUS | FUSE_PARALLEL_DIROPS);
    assert_int_equal(r.init.major, 7); /* nothing else moved */
    assert_int_equal(r.init.minor, 31);
    /* Already there (a libfuse that passes it): left as it is. */
    assert_false(fix(&r, 2, true));
    assert_int_equal(r.init.flags,
                     FUSE_ASYNC_READ | FUSE_DO_READDIRPLUS | FUSE_PARALLEL_DIROPS);
}

static void test_other_replies_untouched(void **state)
{
    struct reply r;

    (void)state;
    reply_make(&r, 3, 0, FUSE_ASYNC_READ);
    assert_false(fix(&r, 2, true)); /* another request's reply */
    assert_int_equal(r.init.flags, FUSE_ASYNC_READ);
    reply_make(&r, 2, -EPROTO, FUSE_ASYNC_READ);
    assert_false(fix(&r, 2, true)); /* an INIT refused */
    assert_int_equal(r.init.flags, FUSE_ASYNC_READ);
    reply_make(&r, 2, 0, FUSE_ASYNC_READ);
    assert_false(fix(&r, 2, false)); /* a kernel that did not offer it */
    assert_int_equal(r.init.flags, FUSE_ASYNC_READ);
    assert_false(fix(&r, 0, true)); /* no INIT seen */
    /* Too short to be an INIT reply. */
    assert_false(fuseio_fix_init_reply(&r.header, sizeof(r.header), &r.init, 8, 2, true));
    assert_false(fuseio_fix_init_reply(&r.header, 4, &r.init, sizeof(r.init), 2, true));
    assert_int_equal(r.init.flags, FUSE_ASYNC_READ);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_reply_gets_parallel_dirops),
        cmocka_unit_test(test_other_replies_untouched),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
