/*
 * failing_alloc — see failing_alloc.h.
 */
#include "failing_alloc.h"

#include <stddef.h>

long alloc_countdown = -1;
long alloc_calls;

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);

static int alloc_should_fail(void)
{
    alloc_calls++;
    if (alloc_countdown < 0)
        return 0;
    return alloc_countdown-- == 0;
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
