/*
 * fake_clock — see fake_clock.h. Microseconds in one atomic, so that
 * threads reading it while a test moves it see one time or the other.
 */
#include "fake_clock.h"

#include <stdatomic.h>

static atomic_llong fake_clock_us;

double fake_clock_now(void *arg)
{
    (void)arg;
    return (double)atomic_load(&fake_clock_us) / 1e6;
}

void fake_clock_advance(double seconds)
{
    atomic_fetch_add(&fake_clock_us, (long long)(seconds * 1e6));
}

void fake_clock_reset(void)
{
    atomic_store(&fake_clock_us, 0);
}
