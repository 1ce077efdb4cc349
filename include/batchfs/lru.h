/*
 * lru — an intrusive list in order of use, most recent first: what the
 * listing cache and the page cache evict by (and, for its links alone,
 * what the slab keeps its blocks on).
 *
 * A struct lru_link lives inside the thing listed; lru_entry() gets the
 * thing back. The caller's lock guards a list and its links. Header only:
 * each operation is a few pointer moves.
 */
#ifndef BATCHFS_LRU_H
#define BATCHFS_LRU_H

#include <stddef.h>

struct lru_link {
    struct lru_link *newer; /* towards the most recently used */
    struct lru_link *older; /* towards the least recently used */
};

struct lru_list {
    struct lru_link *newest, *oldest;
};

/* The thing of type `type` whose member `member` is the link `link`. */
#define lru_entry(link, type, member) ((type *)((char *)(link) - offsetof(type, member)))

static inline void lru_unlink(struct lru_list *list, struct lru_link *link)
{
    if (link->newer)
        link->newer->older = link->older;
    else
        list->newest = link->older;
    if (link->older)
        link->older->newer = link->newer;
    else
        list->oldest = link->newer;
    link->newer = link->older = NULL;
}

static inline void lru_push_newest(struct lru_list *list, struct lru_link *link)
{
    link->newer = NULL;
    link->older = list->newest;
    if (list->newest)
        list->newest->newer = link;
    else
        list->oldest = link;
    list->newest = link;
}

/* Makes a listed link the most recently used. */
static inline void lru_touch(struct lru_list *list, struct lru_link *link)
{
    if (list->newest == link)
        return;
    lru_unlink(list, link);
    lru_push_newest(list, link);
}

#endif
