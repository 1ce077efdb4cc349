/*
 * stream — a listing handed out while its pages arrive: the jobs of a job
 * list in the API's order, appended page by page by the thread that reads
 * the pages, and read meanwhile by the folders opened on it, so that a
 * folder of 200,000 jobs shows its first entries after its first page
 * rather than after its last.
 *
 * Only a listing whose entries are named by their ids can be handed out
 * so: an item's name depends on every other name of its folder
 * (doc/naming.md, rule 5), a job's is its id.
 *
 * One writer (the fetch that reads the list) adds entries and publishes
 * them; any thread reads what is published without a lock, since entries
 * never move once added. A reader that wants more than is published parks
 * a waiter, told once when more is published or the stream ends. Reference
 * counted; the entries live as long as the stream.
 */
#ifndef BATCHFS_STREAM_H
#define BATCHFS_STREAM_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "batchfs/listing.h"

/* What stream_wait returns when it parked the waiter. The value of
 * CACHE_PARKED (cache.h), so that the FUSE layer treats a call parked on
 * either the same way; no stream ends with it (stream_finish makes it
 * -EIO). */
#define STREAM_PARKED (-EINPROGRESS)

struct stream;

/* A reader that parks instead of waiting. Owned by the reader; fields
 * below `ready` are the stream module's. */
struct stream_waiter {
    /* Called once per parking, without any lock, from the thread that
     * published or ended the stream: the reader then looks again. */
    void (*ready)(struct stream_waiter *waiter);
    struct stream *parked_on;   /* while parked */
    struct stream_waiter *next; /* among the stream's waiters */
    bool cancelled;             /* stream_waiter_cancel was called */
};

void stream_waiter_init(struct stream_waiter *waiter,
                        void (*ready)(struct stream_waiter *waiter));

/* A new, empty stream with one reference; NULL on no memory. */
struct stream *stream_new(void);

struct stream *stream_ref(struct stream *stream);

/* Drops a reference; the last frees the stream and its entries. Safe on
 * NULL. */
void stream_release(struct stream *stream);

/*
 * The writer: adds an entry named by `id` (copied), with `status` (copied;
 * NULL: none) and `mtime`, not yet published. After stream_restart, an id
 * added before is not added again. 0 or -ENOMEM (nothing added). Not
 * thread-safe against other writers.
 */
int stream_add(struct stream *stream, const char *id, const char *status,
               struct timespec mtime);

/* The writer: makes the entries added so far readable and tells the
 * waiters. */
void stream_publish(struct stream *stream);

/* The writer: the list is read again from its start (it moved while it was
 * read): the entries already added stay, and each is not added again. */
void stream_restart(struct stream *stream);

/*
 * The writer: no more entries. rc 0 when the list was read to its end, a
 * negative errno when it could not be (STREAM_PARKED is made -EIO).
 * Publishes what was added and tells the waiters. Only the first call
 * counts.
 */
void stream_finish(struct stream *stream, int rc);

/* How many entries are published. Never goes down. Thread-safe. */
size_t stream_count(const struct stream *stream);

/* Whether the stream has ended, and how (*rc, when not NULL). Once true,
 * stream_count is final. Thread-safe. */
bool stream_done(const struct stream *stream, int *rc);

/* Entry `index`, which must be below a count stream_count returned.
 * Borrowed: valid while the stream is. Thread-safe, no lock. */
const struct entry *stream_entry(const struct stream *stream, size_t index);

/*
 * For a reader that wants entry `index`: 0 when it is published, or when
 * the stream ended well (the count is then final); the stream's error when
 * it ended in failure before that entry; else -EINTR when the waiter was
 * cancelled, or STREAM_PARKED, and the waiter's ready function will be
 * called once. Thread-safe.
 */
int stream_wait(struct stream *stream, size_t index, struct stream_waiter *waiter);

/*
 * Takes the waiter off the stream it is parked on: true when it was
 * parked (its ready function will then never be called for it), false
 * when it was not (being told right now, or not parked yet: a later
 * stream_wait then returns -EINTR). Thread-safe.
 */
bool stream_waiter_cancel(struct stream_waiter *waiter);

/* The folders reading the stream, counted by whoever hands it out, so
 * that it can tell when the last one has gone: stream_reader_drop is true
 * for that one. Thread-safe. */
void stream_reader_add(struct stream *stream);
bool stream_reader_drop(struct stream *stream);
unsigned stream_readers(const struct stream *stream);

/* Waiters parked right now, on every stream (for statistics and tests).
 * Thread-safe. */
size_t stream_waiting(void);

/*
 * The generation of the listing whose entries the stream holds (listing.h:
 * equal generations, same entries), once the writer knows it; 0 until then
 * or when they may differ (a list read again). Thread-safe.
 */
void stream_set_generation(struct stream *stream, uint64_t generation);
uint64_t stream_generation(const struct stream *stream);

/*
 * How many entries the list says it holds (its first page's total_size),
 * told by the writer; 0 until then, or when it did not say. Only a hint,
 * for a reader making room ahead: the stream may end with more or fewer.
 * Thread-safe.
 */
void stream_set_announced(struct stream *stream, size_t total);
size_t stream_announced(const struct stream *stream);

/* The memory the stream holds. Thread-safe. */
size_t stream_bytes(const struct stream *stream);

#endif
