/*
 * failing_alloc — allocation failure injection for unit tests.
 *
 * Linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc, every
 * allocation goes through here. When armed (by a test running on one
 * thread), the countdown reaches zero at the allocation that must fail.
 */
#ifndef BATCHFS_TEST_FAILING_ALLOC_H
#define BATCHFS_TEST_FAILING_ALLOC_H

/* Allocations to let through before one fails; -1 = none fails. */
extern _Atomic long alloc_countdown;
/* Allocations seen since the test last reset it. */
extern _Atomic long alloc_calls;

#endif
