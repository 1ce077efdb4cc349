/*
 * names — item names to safe, unique file names (see include/batchfs/names.h
 * and doc/naming.md for the rules).
 *
 * Each entry climbs a short ladder of candidate names until it collides with
 * no other entry:
 *   stage 0  the plain name: sanitised base + suffix
 *   stage 1  base + "~" + sanitised id + suffix
 *   stage 2  base + "~" + 16 hex digits of FNV-1a(id) + suffix
 *   final    base + "~" + hash + "-" + N + suffix, N the smallest free number
 * Names over NAMES_MAX_LEN start at stage 1 (or 2 when the id is too long to
 * show), since shortening already tags them with the id.
 *
 * Collisions are resolved in rounds. A round looks at every name held by more
 * than one entry and moves the entries at the lowest stage in that group one
 * stage up; the decisions of a round are all taken before any entry moves, so
 * the outcome depends on the multiset of (id, name) only, never on the order
 * of the entries. Groups made only of stage 2 entries (distinct ids with
 * equal hashes) are settled at the end by the final stage, taking entries in
 * byte order of their raw ids.
 *
 * Not for: deciding which items a folder holds, or looking names up later;
 * callers keep the mapping this produces.
 */
#include "batchfs/names.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAMES_MAX_SUFFIX 16
#define NAMES_HASH_DIGITS 16
#define NAMES_NONE SIZE_MAX
#define NAMES_STAGE_FINAL 3

/* One distinct candidate name and the entries holding it. Groups are never
 * removed (a name nobody holds keeps count 0), so their indices are stable
 * and the work lists can refer to them while the hash index grows. */
struct names_group {
    char *name; /* owned; handed to the entry holding it at the end */
    size_t len;
    size_t head;  /* first entry holding this name, or NAMES_NONE */
    size_t count; /* entries holding this name */
    bool queued;  /* on the work list of the coming round */
    bool stuck;   /* on the list of groups left to the final stage */
};

/* The hash is kept beside the group index so that probing past other
 * names does not touch their groups. */
struct names_cell {
    uint64_t hash;
    size_t group; /* NAMES_NONE when the cell is free */
};

/* Open addressing, linear probing, over indices into `groups`. */
struct names_table {
    struct names_cell *index;
    size_t cap; /* a power of two */
    struct names_group *groups;
    size_t used;
    size_t groups_cap;
};

struct names_item {
    char *base; /* sanitised name, or sanitised id when that is empty */
    size_t base_len;
    char *sid; /* sanitised id */
    size_t sid_len;
    char hash[NAMES_HASH_DIGITS + 1];
    char *name; /* current candidate, borrowed from its group */
    size_t name_len;
    int stage;
    size_t group;      /* group of `name` */
    size_t prev, next; /* other entries holding the same name */
};

struct names_state {
    const struct names_entry *entries;
    size_t count;
    const char *suffix;
    size_t suffix_len;
    struct names_item *items;
    struct names_table table;
    /* Groups to examine this round and next (2 * count + 1 room each),
     * entries moving this round, groups left to the final stage (count
     * room each). */
    size_t *work, *next_work, *movers, *stuck;
    size_t work_len, next_len, movers_len, stuck_len;
};

static uint64_t names_fnv1a(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Length of a well-formed UTF-8 character at s (avail bytes), 0 if none. */
static size_t names_utf8_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t n;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (avail < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

/*
 * Copies `len` bytes to a new NUL-terminated string with '/', control
 * characters and each byte of an ill-formed UTF-8 sequence replaced by '_'.
 * The length never changes.
 */
static char *names_sanitise(const char *in, size_t len)
{
    const unsigned char *s = (const unsigned char *)in;
    char *out = malloc(len + 1);
    size_t i = 0;

    if (!out)
        return NULL;
    while (i < len) {
        size_t n = names_utf8_len(s + i, len - i);

        if (n == 1 && (s[i] == '/' || s[i] < 0x20 || s[i] == 0x7F)) {
            out[i++] = '_';
        } else if (n == 0) {
            out[i++] = '_';
        } else {
            memcpy(out + i, s + i, n);
            i += n;
        }
    }
    out[len] = '\0';
    return out;
}

/* Largest k <= max such that base[0, k) ends on a character boundary. */
static size_t names_cut(const char *base, size_t base_len, size_t max)
{
    size_t k = max < base_len ? max : base_len;

    /* The base is well-formed UTF-8, so backing off continuation bytes
     * lands on the start of the character that would be split. */
    while (k > 0 && k < base_len && ((unsigned char)base[k] & 0xC0) == 0x80)
        k--;
    return k;
}

/* The id as shown in renamed forms: sanitised, or its hash if unfit. */
static const char *names_id_tag(const struct names_item *it, size_t *len)
{
    if (it->sid_len == 0 || it->sid_len > NAMES_MAX_ID_LEN) {
        *len = NAMES_HASH_DIGITS;
        return it->hash;
    }
    *len = it->sid_len;
    return it->sid;
}

/*
 * Builds base + "~" + tag + suffix, shortening the base so the whole fits
 * NAMES_MAX_LEN. `tag` is at most NAMES_MAX_ID_LEN + 22 bytes, so a
 * shortened base always keeps some bytes.
 */
static char *names_tagged(const struct names_state *s, const struct names_item *it,
                          const char *tag, size_t tag_len, size_t *out_len)
{
    size_t room = NAMES_MAX_LEN - 1 - tag_len - s->suffix_len;
    size_t k = names_cut(it->base, it->base_len, room);
    size_t len = k + 1 + tag_len + s->suffix_len;
    char *name = malloc(len + 1);

    if (!name)
        return NULL;
    memcpy(name, it->base, k);
    name[k] = '~';
    memcpy(name + k + 1, tag, tag_len);
    memcpy(name + k + 1 + tag_len, s->suffix, s->suffix_len);
    name[len] = '\0';
    *out_len = len;
    return name;
}

/* The candidate name of `it` at `stage` (not the final one). */
static char *names_candidate(const struct names_state *s, const struct names_item *it,
                             int stage, size_t *out_len)
{
    const char *tag;
    size_t tag_len;
    char *name;

    if (stage == 0) {
        size_t len = it->base_len + s->suffix_len;

        name = malloc(len + 1);
        if (!name)
            return NULL;
        memcpy(name, it->base, it->base_len);
        memcpy(name + it->base_len, s->suffix, s->suffix_len + 1);
        *out_len = len;
        return name;
    }
    if (stage == 1) {
        tag = names_id_tag(it, &tag_len);
    } else {
        tag = it->hash;
        tag_len = NAMES_HASH_DIGITS;
    }
    return names_tagged(s, it, tag, tag_len, out_len);
}

/* The stage an entry moves to from `stage`, skipping stages whose name
 * would be the same as the one it leaves. */
static int names_next_stage(const struct names_item *it, int stage)
{
    size_t tag_len;

    if (stage == 0)
        return names_id_tag(it, &tag_len) == it->sid ? 1 : 2;
    return stage + 1;
}

static int names_table_init(struct names_table *t, size_t expected)
{
    size_t cap = 16;

    while (cap < expected * 2)
        cap *= 2;
    t->index = malloc(cap * sizeof(*t->index));
    t->groups = malloc(expected * sizeof(*t->groups));
    if (!t->index || !t->groups)
        return -ENOMEM;
    for (size_t i = 0; i < cap; i++)
        t->index[i].group = NAMES_NONE;
    t->cap = cap;
    t->used = 0;
    t->groups_cap = expected;
    return 0;
}

static void names_table_free(struct names_table *t)
{
    if (t->groups)
        for (size_t g = 0; g < t->used; g++)
            free(t->groups[g].name);
    free(t->groups);
    free(t->index);
}

/* Cell of `name`: where its group is, or the free cell for it. */
static size_t names_table_probe(const struct names_table *t, const char *name, size_t len,
                                uint64_t hash)
{
    size_t mask = t->cap - 1, i = (size_t)hash & mask;

    while (t->index[i].group != NAMES_NONE) {
        if (t->index[i].hash == hash) {
            const struct names_group *g = &t->groups[t->index[i].group];

            if (g->len == len && memcmp(g->name, name, len) == 0)
                return i;
        }
        i = (i + 1) & mask;
    }
    return i;
}

/* Group holding `name`, or NAMES_NONE. */
static size_t names_table_find(const struct names_table *t, const char *name, size_t len)
{
    return t->index[names_table_probe(t, name, len, names_fnv1a(name, len))].group;
}

static int names_table_grow(struct names_table *t)
{
    size_t cap = t->cap * 2;
    struct names_cell *index;

    if (cap > SIZE_MAX / sizeof(*index))
        return -ENOMEM;
    index = malloc(cap * sizeof(*index));
    if (!index)
        return -ENOMEM;
    for (size_t i = 0; i < cap; i++)
        index[i].group = NAMES_NONE;
    for (size_t j = 0; j < t->cap; j++) {
        size_t i;

        if (t->index[j].group == NAMES_NONE)
            continue;
        i = (size_t)t->index[j].hash & (cap - 1);
        while (index[i].group != NAMES_NONE)
            i = (i + 1) & (cap - 1);
        index[i] = t->index[j];
    }
    free(t->index);
    t->index = index;
    t->cap = cap;
    return 0;
}

/*
 * Finds or adds the group for `name`; *group receives its index. The table
 * takes `name`: a new group keeps it, otherwise (or on error) it is freed.
 */
static int names_table_intern(struct names_table *t, char *name, size_t len,
                              size_t *group)
{
    uint64_t hash = names_fnv1a(name, len);
    size_t i = names_table_probe(t, name, len, hash);
    int rc = 0;

    if (t->index[i].group != NAMES_NONE) {
        *group = t->index[i].group;
        goto out;
    }
    if (t->used == t->groups_cap) {
        size_t cap = t->groups_cap * 2;
        struct names_group *groups;

        if (cap > SIZE_MAX / sizeof(*groups)) {
            rc = -ENOMEM;
            goto out;
        }
        groups = realloc(t->groups, cap * sizeof(*groups));
        if (!groups) {
            rc = -ENOMEM;
            goto out;
        }
        t->groups = groups;
        t->groups_cap = cap;
    }
    if ((t->used + 1) * 2 > t->cap) {
        rc = names_table_grow(t);
        if (rc)
            goto out;
        i = names_table_probe(t, name, len, hash);
    }
    t->groups[t->used] = (struct names_group){name, len, NAMES_NONE, 0, false, false};
    t->index[i] = (struct names_cell){hash, t->used};
    *group = t->used++;
    return 0;
out:
    free(name);
    return rc;
}

static void names_unlink(struct names_state *s, size_t e)
{
    struct names_item *it = &s->items[e];
    struct names_group *g = &s->table.groups[it->group];

    if (it->prev != NAMES_NONE)
        s->items[it->prev].next = it->next;
    else
        g->head = it->next;
    if (it->next != NAMES_NONE)
        s->items[it->next].prev = it->prev;
    g->count--;
    it->prev = it->next = NAMES_NONE;
}

/* Queues group `g` for the next round (once) when it holds two or more. */
static void names_queue(struct names_state *s, size_t g)
{
    struct names_group *gr = &s->table.groups[g];

    if (gr->count >= 2 && !gr->queued) {
        gr->queued = true;
        s->next_work[s->next_len++] = g;
    }
}

/* Gives entry e the name (taken over) and files it under that name's
 * group. */
static int names_place(struct names_state *s, size_t e, char *name, size_t len)
{
    struct names_item *it = &s->items[e];
    struct names_group *gr;
    size_t g;
    int rc;

    rc = names_table_intern(&s->table, name, len, &g);
    if (rc)
        return rc;
    gr = &s->table.groups[g];
    it->name = gr->name;
    it->name_len = len;
    it->group = g;
    it->prev = NAMES_NONE;
    it->next = gr->head;
    if (gr->head != NAMES_NONE)
        s->items[gr->head].prev = e;
    gr->head = e;
    gr->count++;
    names_queue(s, g);
    return 0;
}

static int names_prepare(struct names_state *s)
{
    for (size_t e = 0; e < s->count; e++) {
        const struct names_entry *en = &s->entries[e];
        struct names_item *it = &s->items[e];
        const char *name = en->item_name ? en->item_name : "";
        size_t name_len = en->item_name ? en->item_name_len : 0;
        size_t len;
        char *cand;
        int rc;

        it->prev = it->next = NAMES_NONE;
        it->sid = names_sanitise(en->item_id, en->item_id_len);
        if (!it->sid)
            return -ENOMEM;
        it->sid_len = en->item_id_len;
        snprintf(it->hash, sizeof(it->hash), "%016llx",
                 (unsigned long long)names_fnv1a(en->item_id, en->item_id_len));
        if (name_len == 0) {
            it->base = names_sanitise(en->item_id, en->item_id_len);
            it->base_len = it->sid_len;
        } else {
            it->base = names_sanitise(name, name_len);
            it->base_len = name_len;
        }
        if (!it->base)
            return -ENOMEM;
        it->stage = 0;
        if (it->base_len + s->suffix_len > NAMES_MAX_LEN)
            it->stage = names_next_stage(it, 0);
        cand = names_candidate(s, it, it->stage, &len);
        if (!cand)
            return -ENOMEM;
        rc = names_place(s, e, cand, len);
        if (rc)
            return rc;
    }
    return 0;
}

/* One round: choose the movers from every colliding group, then move them. */
static int names_round(struct names_state *s)
{
    int rc;

    s->movers_len = 0;
    for (size_t w = 0; w < s->work_len; w++) {
        struct names_group *gr = &s->table.groups[s->work[w]];
        int low = NAMES_STAGE_FINAL;

        gr->queued = false;
        if (gr->count < 2)
            continue;
        for (size_t e = gr->head; e != NAMES_NONE; e = s->items[e].next)
            if (s->items[e].stage < low)
                low = s->items[e].stage;
        if (low >= 2) {
            if (!gr->stuck) {
                gr->stuck = true;
                s->stuck[s->stuck_len++] = s->work[w];
            }
            continue;
        }
        for (size_t e = gr->head; e != NAMES_NONE; e = s->items[e].next) {
            if (s->items[e].stage == low)
                s->movers[s->movers_len++] = e;
        }
    }
    s->next_len = 0;
    for (size_t m = 0; m < s->movers_len; m++) {
        size_t e = s->movers[m], old = s->items[e].group, len;
        struct names_item *it = &s->items[e];
        char *cand;

        it->stage = names_next_stage(it, it->stage);
        cand = names_candidate(s, it, it->stage, &len);
        if (!cand)
            return -ENOMEM;
        names_unlink(s, e);
        /* Those left behind may still collide among themselves. */
        names_queue(s, old);
        rc = names_place(s, e, cand, len);
        if (rc)
            return rc;
    }
    return 0;
}

static int names_cmp_id(const struct names_state *s, size_t a, size_t b)
{
    const struct names_entry *x = &s->entries[a], *y = &s->entries[b];
    size_t n = x->item_id_len < y->item_id_len ? x->item_id_len : y->item_id_len;
    int c = n ? memcmp(x->item_id, y->item_id, n) : 0;

    if (c)
        return c;
    return (x->item_id_len > y->item_id_len) - (x->item_id_len < y->item_id_len);
}

/*
 * Heap sort by raw id: qsort would need the state through a global, which
 * this module does not keep, to be safe from any thread.
 */
static void names_sort_by_id(const struct names_state *s, size_t *v, size_t n)
{
    for (size_t start = n / 2; start-- > 0;) {
        for (size_t root = start;;) {
            size_t child = 2 * root + 1, tmp;

            if (child >= n)
                break;
            if (child + 1 < n && names_cmp_id(s, v[child], v[child + 1]) < 0)
                child++;
            if (names_cmp_id(s, v[root], v[child]) >= 0)
                break;
            tmp = v[root];
            v[root] = v[child];
            v[child] = tmp;
            root = child;
        }
    }
    for (size_t end = n; end-- > 1;) {
        size_t tmp = v[0];

        v[0] = v[end];
        v[end] = tmp;
        for (size_t root = 0;;) {
            size_t child = 2 * root + 1;

            if (child >= end)
                break;
            if (child + 1 < end && names_cmp_id(s, v[child], v[child + 1]) < 0)
                child++;
            if (names_cmp_id(s, v[root], v[child]) >= 0)
                break;
            tmp = v[root];
            v[root] = v[child];
            v[child] = tmp;
            root = child;
        }
    }
}

/* Settles groups that even the hash could not separate. */
static int names_final(struct names_state *s)
{
    size_t n = 0;
    int rc;

    for (size_t i = 0; i < s->stuck_len; i++) {
        struct names_group *gr = &s->table.groups[s->stuck[i]];

        if (gr->count < 2)
            continue;
        for (size_t e = gr->head; e != NAMES_NONE; e = s->items[e].next)
            s->movers[n++] = e;
    }
    names_sort_by_id(s, s->movers, n);
    for (size_t m = 0; m < n; m++) {
        size_t e = s->movers[m];
        struct names_item *it = &s->items[e];

        it->stage = NAMES_STAGE_FINAL;
        names_unlink(s, e);
        for (unsigned long long k = 1;; k++) {
            char tag[NAMES_HASH_DIGITS + 24];
            int tag_len = snprintf(tag, sizeof(tag), "%s-%llu", it->hash, k);
            size_t len, g;
            char *cand = names_tagged(s, it, tag, (size_t)tag_len, &len);

            if (!cand)
                return -ENOMEM;
            g = names_table_find(&s->table, cand, len);
            if (g != NAMES_NONE && s->table.groups[g].count > 0) {
                free(cand);
                continue;
            }
            rc = names_place(s, e, cand, len);
            if (rc)
                return rc;
            break;
        }
    }
    return 0;
}

static int names_check_suffix(const char *suffix, size_t *len)
{
    size_t n, i = 0;
    bool only_dots = true;

    if (!suffix)
        return -EINVAL;
    n = strlen(suffix);
    if (n == 0 || n > NAMES_MAX_SUFFIX)
        return -EINVAL;
    while (i < n) {
        const unsigned char *c = (const unsigned char *)suffix + i;
        size_t step = names_utf8_len(c, n - i);

        if (!step || *c == '/' || *c < 0x20 || *c == 0x7F)
            return -EINVAL;
        if (*c != '.')
            only_dots = false;
        i += step;
    }
    /* A suffix of dots alone could turn "." into "..". */
    if (only_dots)
        return -EINVAL;
    *len = n;
    return 0;
}

/* -EINVAL when two entries share an id. */
static int names_check_ids(const struct names_entry *entries, size_t count)
{
    size_t cap = 16, *slots;
    int rc = 0;

    while (cap < count * 2)
        cap *= 2;
    slots = malloc(cap * sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i < cap; i++)
        slots[i] = NAMES_NONE;
    for (size_t e = 0; e < count; e++) {
        const struct names_entry *en = &entries[e];
        size_t i = (size_t)names_fnv1a(en->item_id, en->item_id_len) & (cap - 1);

        while (slots[i] != NAMES_NONE) {
            const struct names_entry *o = &entries[slots[i]];

            if (o->item_id_len == en->item_id_len &&
                (en->item_id_len == 0 ||
                 memcmp(o->item_id, en->item_id, en->item_id_len) == 0)) {
                rc = -EINVAL;
                goto out;
            }
            i = (i + 1) & (cap - 1);
        }
        slots[i] = e;
    }
out:
    free(slots);
    return rc;
}

int names_assign(struct names_entry *entries, size_t count, const char *suffix)
{
    struct names_state s = {0};
    size_t work_cap;
    int rc;

    rc = names_check_suffix(suffix, &s.suffix_len);
    if (rc)
        return rc;
    if (count && !entries)
        return -EINVAL;
    for (size_t e = 0; e < count; e++) {
        entries[e].file_name = NULL;
        if (!entries[e].item_id && entries[e].item_id_len)
            return -EINVAL;
    }
    if (count == 0)
        return 0;
    if (count > SIZE_MAX / 4 / sizeof(struct names_item))
        return -ENOMEM;
    work_cap = 2 * count + 1;
    rc = names_check_ids(entries, count);
    if (rc)
        return rc;

    s.entries = entries;
    s.count = count;
    s.suffix = suffix;
    s.items = calloc(count, sizeof(*s.items));
    /* Every move queues at most two groups, and an entry moves at most
     * twice before the final stage. */
    s.work = malloc(work_cap * sizeof(size_t));
    s.next_work = malloc(work_cap * sizeof(size_t));
    s.movers = malloc(count * sizeof(size_t));
    s.stuck = malloc(count * sizeof(size_t));
    if (!s.items || !s.work || !s.next_work || !s.movers || !s.stuck) {
        rc = -ENOMEM;
        goto out;
    }
    rc = names_table_init(&s.table, count);
    if (rc)
        goto out;
    rc = names_prepare(&s);
    if (rc)
        goto out;
    while (s.next_len) {
        size_t *tmp = s.work;

        s.work = s.next_work;
        s.work_len = s.next_len;
        s.next_work = tmp;
        rc = names_round(&s);
        if (rc)
            goto out;
    }
    rc = names_final(&s);
    if (rc)
        goto out;
    /* Names are unique now: each group held hands its name to its entry. */
    for (size_t e = 0; e < count; e++) {
        struct names_group *gr = &s.table.groups[s.items[e].group];

        entries[e].file_name = gr->name;
        gr->name = NULL;
    }
out:
    if (s.items) {
        for (size_t e = 0; e < count; e++) {
            free(s.items[e].base);
            free(s.items[e].sid);
        }
    }
    names_table_free(&s.table);
    free(s.items);
    free(s.work);
    free(s.next_work);
    free(s.movers);
    free(s.stuck);
    return rc;
}

bool names_is_id(const char *name)
{
    size_t n = 0;
    bool digit = false;

    if (!name || name[0] == '-')
        return false;
    for (; name[n]; n++) {
        char c = name[n];

        if (n >= NAMES_MAX_ID_LEN)
            return false;
        if (c >= '0' && c <= '9')
            digit = true;
        else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                   c == '-'))
            return false;
    }
    /* Every API id carries a uuid, so a name without a digit is a word
     * ("HEAD", "desktop") rather than an id. */
    return n > 0 && digit;
}
