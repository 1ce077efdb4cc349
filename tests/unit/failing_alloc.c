/*
 * failing_alloc — see failing_alloc.h.
 */
#include "failing_alloc.h"

#include <stdatomic.h>
#include <stddef.h>

/* Atomic: code under test may allocate on several threads (page fetches),
 * even though only single-threaded tests arm the countdown. */
_Atomic long alloc_countdown = -1;
_Atomic long alloc_calls;

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);

static int alloc_should_fail(void)
{
    atomic_fetch_add_explicit(&alloc_calls, 1, memory_order_relaxed);
    if (atomic_load_explicit(&alloc_countdown, memory_order_relaxed) < 0)
        return 0;
    return atomic_fetch_sub_explicit(&alloc_countdown, 1, memory_order_relaxed) == 0;
}

void *__wrap_malloc(size_t size)
{
    return alloc_should_fail() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return alloc_should_fail() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
    return alloc_should_fail() ? NULL : __real_realloc(p, size);
}
