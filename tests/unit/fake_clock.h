/*
 * fake_clock — a clock for unit tests that moves only when told.
 *
 * Pass fake_clock_now as a cache_clock_fn (cache_config.clock,
 * catalog_config.clock): time then stands still until the test moves it
 * with fake_clock_advance, so nothing waits for time to pass. One clock per
 * test program; any thread may read or move it.
 */
#ifndef BATCHFS_TEST_FAKE_CLOCK_H
#define BATCHFS_TEST_FAKE_CLOCK_H

/* Seconds since the last fake_clock_reset; `arg` is unused. */
double fake_clock_now(void *arg);

/* Moves the clock on by `seconds` (>= 0). */
void fake_clock_advance(double seconds);

/* Back to 0, for a test that starts afresh. */
void fake_clock_reset(void);

#endif
