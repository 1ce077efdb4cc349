/*
 * stream — a listing handed out while its pages arrive (see
 * include/batchfs/stream.h).
 *
 * For: entries that readers may take while the writer still adds more.
 * They lie in chunks of STREAM_CHUNK that never move, found through a
 * table of chunks; a table outgrown is replaced by a bigger copy and kept
 * until the stream goes, since a reader may still be looking through it.
 * Their strings lie in blocks that never move either. The writer fills a
 * chunk, then publishes the count (release), so a reader that sees the
 * count (acquire) sees the entries below it.
 * Not for: naming (a job is named by its id), sorting, or what a job is.
 */
#include "batchfs/stream.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batchfs/idset.h"

#define STREAM_CHUNK_SHIFT 10
#define STREAM_CHUNK ((size_t)1 << STREAM_CHUNK_SHIFT) /* entries a chunk */
#define STREAM_BLOCK ((size_t)64 << 10)                /* bytes of a string block */

struct stream_table {
    struct stream_table *retired; /* the table this one replaced, or NULL */
    size_t cap;                   /* chunks it can point to */
    struct entry *chunks[];
};

struct stream_block {
    struct stream_block *next; /* the block filled before, or NULL */
    size_t used, cap;
    char bytes[];
};

struct stream {
    unsigned refs;              /* atomic */
    size_t published;           /* atomic: entries readers may take */
    struct stream_table *table; /* atomic pointer: readers load it */
    size_t bytes;               /* atomic: memory held */
    uint64_t generation;        /* atomic: see stream_set_generation */
    unsigned readers;           /* atomic: see stream_reader_add */
    size_t announced;           /* atomic: see stream_set_announced */

    /* The writer's alone. */
    size_t added;                /* entries added, published or not */
    struct stream_block *blocks; /* the block being filled first */
    const char *last_status;     /* the status placed last, shared by the next */
    struct idset seen;           /* after a restart: the ids added */
    bool restarted;

    /* Under stream_lock. */
    bool done;
    int rc;
    struct stream_waiter *waiters;
};

/* Guards every stream's end and waiters, and every waiter's parking. One
 * lock for all: a waiter is cancelled by a thread that does not know which
 * stream it is parked on, and it is taken once a page, not once an entry. */
static pthread_mutex_t stream_lock = PTHREAD_MUTEX_INITIALIZER;
/* Waiters parked on any stream; under stream_lock. */
static size_t stream_parked;

void stream_waiter_init(struct stream_waiter *waiter,
                        void (*ready)(struct stream_waiter *waiter))
{
    memset(waiter, 0, sizeof(*waiter));
    waiter->ready = ready;
}

static void stream_charge(struct stream *stream, size_t bytes)
{
    __atomic_add_fetch(&stream->bytes, bytes, __ATOMIC_RELAXED);
}

struct stream *stream_new(void)
{
    struct stream *stream = calloc(1, sizeof(*stream));

    if (!stream)
        return NULL;
    stream->refs = 1;
    stream->seen = (struct idset)IDSET_INIT;
    stream->bytes = sizeof(*stream);
    return stream;
}

struct stream *stream_ref(struct stream *stream)
{
    __atomic_add_fetch(&stream->refs, 1, __ATOMIC_RELAXED);
    return stream;
}

void stream_release(struct stream *stream)
{
    struct stream_table *table;

    if (!stream || __atomic_sub_fetch(&stream->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    table = stream->table;
    for (size_t i = 0; table && i < table->cap; i++)
        free(table->chunks[i]);
    while (table) {
        struct stream_table *retired = table->retired;

        free(table);
        table = retired;
    }
    while (stream->blocks) {
        struct stream_block *next = stream->blocks->next;

        free(stream->blocks);
        stream->blocks = next;
    }
    idset_free(&stream->seen);
    free(stream);
}

/* A copy of s[0, len) and a NUL in the string blocks; NULL on no memory. */
static char *stream_keep(struct stream *stream, const char *s, size_t len)
{
    struct stream_block *block = stream->blocks;
    char *at;

    if (!block || block->cap - block->used < len + 1) {
        size_t cap = len + 1 > STREAM_BLOCK / 2 ? len + 1 : STREAM_BLOCK;

        block = malloc(sizeof(*block) + cap);
        if (!block)
            return NULL;
        block->cap = cap;
        block->used = 0;
        /* A string of its own block goes behind the one being filled. */
        if (cap > STREAM_BLOCK && stream->blocks) {
            block->next = stream->blocks->next;
            stream->blocks->next = block;
        } else {
            block->next = stream->blocks;
            stream->blocks = block;
        }
        stream_charge(stream, sizeof(*block) + cap);
    }
    at = block->bytes + block->used;
    memcpy(at, s, len);
    at[len] = '\0';
    block->used += len + 1;
    return at;
}

/* The slot of entry `index` (== added), making its chunk (and a bigger
 * table) if need be; NULL on no memory. */
static struct entry *stream_slot(struct stream *stream, size_t index)
{
    struct stream_table *table = stream->table, *grown;
    size_t chunk = index >> STREAM_CHUNK_SHIFT;

    if (!table || chunk >= table->cap) {
        size_t cap = table ? table->cap * 2 : 16;

        grown = calloc(1, sizeof(*grown) + cap * sizeof(grown->chunks[0]));
        if (!grown)
            return NULL;
        grown->cap = cap;
        grown->retired = table;
        if (table)
            memcpy(grown->chunks, table->chunks, table->cap * sizeof(table->chunks[0]));
        stream_charge(stream, sizeof(*grown) + cap * sizeof(grown->chunks[0]));
        /* Readers that loaded the old table still find their chunks there. */
        __atomic_store_n(&stream->table, grown, __ATOMIC_RELEASE);
        table = grown;
    }
    if (!table->chunks[chunk]) {
        struct entry *entries = calloc(STREAM_CHUNK, sizeof(*entries));

        if (!entries)
            return NULL;
        stream_charge(stream, STREAM_CHUNK * sizeof(*entries));
        table->chunks[chunk] = entries;
    }
    return &table->chunks[chunk][index & (STREAM_CHUNK - 1)];
}

int stream_add(struct stream *stream, const char *id, const char *status,
               struct timespec mtime)
{
    size_t len = strlen(id);
    struct entry *entry;
    char *name;
    int rc;

    if (stream->restarted && (rc = idset_add(&stream->seen, id, len)) <= 0)
        return rc; /* added before the restart (or no memory) */
    entry = stream_slot(stream, stream->added);
    name = entry ? stream_keep(stream, id, len) : NULL;
    if (name && status &&
        !(stream->last_status && !strcmp(stream->last_status, status))) {
        const char *kept = stream_keep(stream, status, strlen(status));

        if (kept)
            stream->last_status = kept;
        else
            name = NULL;
    }
    if (!name) {
        if (stream->restarted)
            idset_remove(&stream->seen, id, len);
        return -ENOMEM;
    }
    entry->name = name; /* a job is named by its id */
    entry->status = status ? (char *)stream->last_status : NULL;
    entry->content = NULL;
    entry_set_mtime(entry, mtime);
    entry->api_index = (uint32_t)stream->added;
    entry->line_len = 0;
    stream->added++;
    return 0;
}

/* Takes the waiters off the stream (stream_lock held), for stream_tell. */
static struct stream_waiter *stream_take_waiters(struct stream *stream)
{
    struct stream_waiter *list = stream->waiters;

    for (struct stream_waiter *w = list; w; w = w->next) {
        w->parked_on = NULL;
        stream_parked--;
    }
    stream->waiters = NULL;
    return list;
}

/* Tells each waiter of `list`, without the lock: each may park again. */
static void stream_tell(struct stream_waiter *list)
{
    while (list) {
        struct stream_waiter *next = list->next;

        list->ready(list);
        list = next;
    }
}

void stream_publish(struct stream *stream)
{
    struct stream_waiter *told;

    pthread_mutex_lock(&stream_lock);
    __atomic_store_n(&stream->published, stream->added, __ATOMIC_RELEASE);
    told = stream_take_waiters(stream);
    pthread_mutex_unlock(&stream_lock);
    stream_tell(told);
}

void stream_restart(struct stream *stream)
{
    stream->restarted = true;
    /* Already restarted: the set holds them all. */
    if (stream->seen.count)
        return;
    if (idset_expect(&stream->seen, stream->added) == 0)
        stream_charge(stream, idset_footprint(&stream->seen));
    for (size_t i = 0; i < stream->added; i++) {
        const char *id = stream_entry(stream, i)->name;

        /* Without memory, a repeat may be shown twice; nothing is lost. */
        if (idset_add(&stream->seen, id, strlen(id)) < 0)
            break;
    }
}

void stream_finish(struct stream *stream, int rc)
{
    struct stream_waiter *told = NULL;

    pthread_mutex_lock(&stream_lock);
    if (!stream->done) {
        stream->done = true;
        stream->rc = rc == STREAM_PARKED || rc > 0 ? -EIO : rc;
        __atomic_store_n(&stream->published, stream->added, __ATOMIC_RELEASE);
        told = stream_take_waiters(stream);
    }
    pthread_mutex_unlock(&stream_lock);
    stream_tell(told);
}

void stream_set_announced(struct stream *stream, size_t total)
{
    __atomic_store_n(&stream->announced, total, __ATOMIC_RELAXED);
}

size_t stream_announced(const struct stream *stream)
{
    return __atomic_load_n(&stream->announced, __ATOMIC_RELAXED);
}

size_t stream_count(const struct stream *stream)
{
    return __atomic_load_n(&stream->published, __ATOMIC_ACQUIRE);
}

bool stream_done(const struct stream *stream, int *rc)
{
    bool done;

    pthread_mutex_lock(&stream_lock);
    done = stream->done;
    if (rc)
        *rc = done ? stream->rc : 0;
    pthread_mutex_unlock(&stream_lock);
    return done;
}

const struct entry *stream_entry(const struct stream *stream, size_t index)
{
    const struct stream_table *table = __atomic_load_n(&stream->table, __ATOMIC_ACQUIRE);

    return &table->chunks[index >> STREAM_CHUNK_SHIFT][index & (STREAM_CHUNK - 1)];
}

int stream_wait(struct stream *stream, size_t index, struct stream_waiter *waiter)
{
    int rc;

    pthread_mutex_lock(&stream_lock);
    if (__atomic_load_n(&stream->published, __ATOMIC_RELAXED) > index) {
        rc = 0;
    } else if (stream->done) {
        rc = stream->rc;
    } else if (waiter->cancelled) {
        rc = -EINTR;
    } else {
        waiter->parked_on = stream;
        waiter->next = stream->waiters;
        stream->waiters = waiter;
        stream_parked++;
        rc = STREAM_PARKED;
    }
    pthread_mutex_unlock(&stream_lock);
    return rc;
}

bool stream_waiter_cancel(struct stream_waiter *waiter)
{
    bool parked;

    pthread_mutex_lock(&stream_lock);
    parked = waiter->parked_on != NULL;
    if (parked) {
        struct stream_waiter **link = &waiter->parked_on->waiters;

        while (*link != waiter)
            link = &(*link)->next;
        *link = waiter->next;
        waiter->parked_on = NULL;
        stream_parked--;
    }
    waiter->cancelled = true;
    pthread_mutex_unlock(&stream_lock);
    return parked;
}

void stream_reader_add(struct stream *stream)
{
    __atomic_add_fetch(&stream->readers, 1, __ATOMIC_RELAXED);
}

bool stream_reader_drop(struct stream *stream)
{
    return __atomic_sub_fetch(&stream->readers, 1, __ATOMIC_ACQ_REL) == 0;
}

unsigned stream_readers(const struct stream *stream)
{
    return __atomic_load_n(&stream->readers, __ATOMIC_RELAXED);
}

size_t stream_waiting(void)
{
    size_t n;

    pthread_mutex_lock(&stream_lock);
    n = stream_parked;
    pthread_mutex_unlock(&stream_lock);
    return n;
}

void stream_set_generation(struct stream *stream, uint64_t generation)
{
    __atomic_store_n(&stream->generation, generation, __ATOMIC_RELAXED);
}

uint64_t stream_generation(const struct stream *stream)
{
    return __atomic_load_n(&stream->generation, __ATOMIC_RELAXED);
}

size_t stream_bytes(const struct stream *stream)
{
    return __atomic_load_n(&stream->bytes, __ATOMIC_RELAXED);
}
