/*
 * clocks — seconds on a clock that never goes back: the caller's own (a
 * test's, which moves only when told), or CLOCK_MONOTONIC when there is
 * none. The cache, the register of listings in use and the catalog take
 * such a clock in their configuration and read every freshness decision
 * from it, through this one function.
 *
 * Header only; includes nothing of ours, so any layer may use it.
 */
#ifndef BATCHFS_CLOCKS_H
#define BATCHFS_CLOCKS_H

#include <time.h>

/* clock(arg) when clock is not NULL, else CLOCK_MONOTONIC, in seconds. */
static inline double clocks_now(double (*clock)(void *arg), void *arg)
{
    struct timespec ts;

    if (clock)
        return clock(arg);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
