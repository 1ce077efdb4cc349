/*
 * inval — the kernel cache invalidation thread (see include/batchfs/inval.h).
 */
#define FUSE_USE_VERSION 312
#include "batchfs/inval.h"

#include <errno.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "batchfs/log.h"

/* Beyond this many pending inodes new ones are dropped: they still expire
 * with their attribute timeouts, and memory stays bounded. */
#define INVAL_QUEUE_MAX 65536

/* A name in a folder whose kernel entry must go. */
struct inval_entry {
    struct inval_entry *next;
    uint64_t parent;
    char name[];
};

struct inval_queue {
    struct fuse_session *session;
    pthread_t thread;

    pthread_mutex_t lock; /* protects the fields below */
    pthread_cond_t wake;
    uint64_t *inos;
    size_t count;
    struct inval_entry *entries; /* names to look up again, newest first */
    size_t entry_count;
    bool stopping;
    unsigned long long dropped;
};

/* Sends and frees a list of entries (without the lock). */
static void inval_send_entries(struct inval_queue *q, struct inval_entry *e)
{
    struct inval_entry *next;

    for (; e; e = next) {
        int rc = fuse_lowlevel_notify_inval_entry(q->session, e->parent, e->name,
                                                  strlen(e->name));

        /* -ENOENT: the kernel no longer has the entry; nothing to drop. */
        if (rc && rc != -ENOENT && rc != -ENOTCONN)
            log_debug("cannot invalidate an entry of inode %llu: %s",
                      (unsigned long long)e->parent, strerror(-rc));
        next = e->next;
        free(e);
    }
}

static void *inval_thread(void *arg)
{
    struct inval_queue *q = arg;
    uint64_t batch[256];

    pthread_mutex_lock(&q->lock);
    for (;;) {
        size_t n;

        struct inval_entry *entries;

        while (!q->count && !q->entries && !q->stopping)
            pthread_cond_wait(&q->wake, &q->lock);
        if (q->stopping)
            break;
        entries = q->entries;
        q->entries = NULL;
        q->entry_count = 0;
        if (entries) {
            pthread_mutex_unlock(&q->lock);
            inval_send_entries(q, entries);
            pthread_mutex_lock(&q->lock);
            continue;
        }
        n = q->count < 256 ? q->count : 256;
        q->count -= n;
        memcpy(batch, q->inos + q->count, n * sizeof(*batch));
        pthread_mutex_unlock(&q->lock);
        for (size_t i = 0; i < n; i++) {
            int rc = fuse_lowlevel_notify_inval_inode(q->session, batch[i], 0, 0);

            /* -ENOENT: the kernel no longer has the inode; nothing to drop. */
            if (rc && rc != -ENOENT && rc != -ENOTCONN)
                log_debug("cannot invalidate inode %llu: %s",
                          (unsigned long long)batch[i], strerror(-rc));
        }
        pthread_mutex_lock(&q->lock);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

struct inval_queue *inval_queue_new(struct fuse_session *session)
{
    struct inval_queue *q = calloc(1, sizeof(*q));

    if (!q)
        return NULL;
    q->session = session;
    q->inos = malloc(INVAL_QUEUE_MAX * sizeof(*q->inos));
    if (!q->inos)
        goto fail;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->wake, NULL);
    if (pthread_create(&q->thread, NULL, inval_thread, q)) {
        pthread_cond_destroy(&q->wake);
        pthread_mutex_destroy(&q->lock);
        goto fail;
    }
    return q;
fail:
    free(q->inos);
    free(q);
    return NULL;
}

void inval_queue_push(void *queue, uint64_t ino)
{
    struct inval_queue *q = queue;

    if (!q)
        return;
    pthread_mutex_lock(&q->lock);
    /* Recent pushes are the likeliest duplicates; look at the tail only. */
    for (size_t i = q->count, seen = 0; i > 0 && seen < 64; i--, seen++)
        if (q->inos[i - 1] == ino)
            goto out;
    if (q->count == INVAL_QUEUE_MAX) {
        q->dropped++;
        goto out;
    }
    q->inos[q->count++] = ino;
    pthread_cond_signal(&q->wake);
out:
    pthread_mutex_unlock(&q->lock);
}

void inval_queue_push_entry(void *queue, uint64_t parent, const char *name)
{
    struct inval_queue *q = queue;
    size_t len = strlen(name) + 1;
    struct inval_entry *e;

    if (!q)
        return;
    e = malloc(sizeof(*e) + len);
    pthread_mutex_lock(&q->lock);
    if (!e || q->entry_count == INVAL_QUEUE_MAX) {
        q->dropped++;
        free(e);
    } else {
        e->parent = parent;
        memcpy(e->name, name, len);
        e->next = q->entries;
        q->entries = e;
        q->entry_count++;
        pthread_cond_signal(&q->wake);
    }
    pthread_mutex_unlock(&q->lock);
}

void inval_queue_free(struct inval_queue *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->lock);
    q->stopping = true;
    pthread_cond_signal(&q->wake);
    pthread_mutex_unlock(&q->lock);
    pthread_join(q->thread, NULL);
    if (q->dropped)
        log_debug("%llu kernel cache invalidations were dropped", q->dropped);
    pthread_cond_destroy(&q->wake);
    pthread_mutex_destroy(&q->lock);
    for (struct inval_entry *e = q->entries, *next; e; e = next) {
        next = e->next;
        free(e);
    }
    free(q->inos);
    free(q);
}
