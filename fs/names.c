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

#include "batchfs/buf.h"
#include "batchfs/hash.h"
#include "batchfs/hindex.h"
#include "batchfs/utf8.h"

#define NAMES_MAX_SUFFIX 16
#define NAMES_HASH_DIGITS 16
#define NAMES_NONE SIZE_MAX
#define NAMES_STAGE_FINAL 3

/*
 * Every string of a folder (raw ids, sanitised ids and names, candidate
 * names) lives in one buffer, `text`, and is referred to by offset: the
 * buffer moves as it grows. One buffer instead of a few allocations per
 * entry is what keeps naming 100,000 entries cheap.
 */

/* One distinct candidate name and the entries holding it. Groups are never
 * removed (a name nobody holds keeps count 0), so their indices are stable
 * and the work lists can refer to them while the hash index grows. */
struct names_group {
    size_t name; /* offset in text of the name, NUL-terminated */
    size_t len;
    size_t head;  /* first entry holding this name, or NAMES_NONE */
    size_t count; /* entries holding this name */
    bool queued;  /* on the work list of the coming round */
    bool stuck;   /* on the list of groups left to the final stage */
};

/* A hindex over indices into `groups`. */
struct names_table {
    struct hindex index;
    struct names_group *groups;
    size_t used;
    size_t groups_cap;
};

struct names_item {
    size_t rid, rid_len; /* raw id, in text */
    size_t sid;          /* sanitised id (rid_len bytes), in text; == rid when
                            sanitising changed nothing */
    size_t base, base_len; /* sanitised name, or sanitised id when that is empty */
    uint64_t hash;         /* FNV-1a of the raw id */
    int stage;
    size_t group;      /* group of the current candidate name */
    size_t prev, next; /* other entries holding the same name */
};

struct names {
    char suffix[NAMES_MAX_SUFFIX + 1];
    size_t suffix_len;
    struct buf text;
    struct names_item *items;
    size_t count, items_cap;
    struct names_table table;
    bool finished;
    /* Groups to examine this round and next (2 * count + 1 room each),
     * entries moving this round, groups left to the final stage (count
     * room each); made by names_finish. */
    size_t *work, *next_work, *movers, *stuck;
    size_t work_len, next_len, movers_len, stuck_len;
};

/* The hash as shown in names: 16 lowercase hex digits and a NUL. */
static void names_hex(uint64_t hash, char out[NAMES_HASH_DIGITS + 1])
{
    static const char digits[] = "0123456789abcdef";

    for (int i = NAMES_HASH_DIGITS - 1; i >= 0; i--) {
        out[i] = digits[hash & 0xF];
        hash >>= 4;
    }
    out[NAMES_HASH_DIGITS] = '\0';
}

/* See names.h. */
bool names_sanitise(const char *in, size_t len, char *out)
{
    const unsigned char *s = (const unsigned char *)in;
    bool clean = true;
    size_t i = 0;

    while (i < len) {
        size_t n;

        /* Printable ASCII, nearly every byte of real names, first. */
        if (s[i] >= 0x20 && s[i] < 0x7F && s[i] != '/') {
            out[i] = (char)s[i];
            i++;
            continue;
        }
        n = utf8_char_len(s + i, len - i);
        if (n == 0 || (n == 1 && (s[i] == '/' || s[i] < 0x20 || s[i] == 0x7F))) {
            out[i++] = '_';
            clean = false;
        } else {
            memcpy(out + i, s + i, n);
            i += n;
        }
    }
    return clean;
}

/* See names.h. */
bool names_group(const char *value, size_t len, char *out, size_t size)
{
    if (!value || !len || len > NAMES_MAX_LEN || len >= size)
        return false;
    names_sanitise(value, len, out);
    out[len] = '\0';
    /* Rule 2's fallback (the item id) has no counterpart for a group. */
    return strcmp(out, ".") && strcmp(out, "..");
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

/* True when renamed forms show the id's hash rather than the id. */
static bool names_id_unfit(const struct names_item *it)
{
    return it->rid_len == 0 || it->rid_len > NAMES_MAX_ID_LEN;
}

/*
 * Appends base + "~" + tag + suffix and a NUL to text, shortening the base
 * so the whole fits NAMES_MAX_LEN; *at and *len locate it. `tag` is at most
 * NAMES_MAX_ID_LEN + 22 bytes and not in text, so a shortened base always
 * keeps some bytes.
 */
static int names_tagged(struct names *n, const struct names_item *it, const char *tag,
                        size_t tag_len, size_t *at, size_t *len)
{
    size_t room = NAMES_MAX_LEN - 1 - tag_len - n->suffix_len, k;
    char *out;
    int rc = buf_reserve(&n->text, NAMES_MAX_LEN + 1);

    if (rc)
        return rc;
    k = names_cut(n->text.data + it->base, it->base_len, room);
    *at = n->text.len;
    *len = k + 1 + tag_len + n->suffix_len;
    out = n->text.data + *at;
    memcpy(out, n->text.data + it->base, k);
    out[k] = '~';
    memcpy(out + k + 1, tag, tag_len);
    memcpy(out + k + 1 + tag_len, n->suffix, n->suffix_len);
    out[*len] = '\0';
    n->text.len += *len + 1;
    return 0;
}

/* Appends the candidate name of `it` at `stage` (1 or 2) to text. */
static int names_candidate(struct names *n, const struct names_item *it, int stage,
                           size_t *at, size_t *len)
{
    char tag[NAMES_MAX_ID_LEN + 1];
    size_t tag_len;

    if (stage == 1 && !names_id_unfit(it)) {
        tag_len = it->rid_len;
        memcpy(tag, n->text.data + it->sid, tag_len);
    } else {
        names_hex(it->hash, tag);
        tag_len = NAMES_HASH_DIGITS;
    }
    return names_tagged(n, it, tag, tag_len, at, len);
}

/* The stage an entry moves to from `stage`, skipping stages whose name
 * would be the same as the one it leaves. */
static int names_next_stage(const struct names_item *it, int stage)
{
    if (stage == 0)
        return names_id_unfit(it) ? 2 : 1;
    return stage + 1;
}

/* `items` (of `size` bytes each, room for *cap) with room for `want`,
 * moved perhaps; NULL when out of memory, `items` then left as it was. */
static void *names_grown(void *items, size_t *cap, size_t size, size_t want)
{
    void *grown;

    if (want <= *cap)
        return items;
    if (want > SIZE_MAX / 4 / size)
        return NULL;
    grown = realloc(items, want * size);
    if (grown)
        *cap = want;
    return grown;
}

/* A name sought in the table: text[at, at + len). */
struct names_sought {
    size_t at, len;
};

static bool names_group_eq(const void *ctx, size_t group, const void *key)
{
    const struct names *n = ctx;
    const struct names_sought *sought = key;
    const struct names_group *g = &n->table.groups[group];

    return g->len == sought->len &&
           memcmp(n->text.data + g->name, n->text.data + sought->at, sought->len) == 0;
}

/*
 * Finds or adds the group for the name at text[at, at + len); *group
 * receives its index and *added whether it is new (a name already known
 * keeps the text of its first holder).
 */
static int names_table_intern(struct names *n, size_t at, size_t len, size_t *group,
                              bool *added)
{
    struct names_table *t = &n->table;
    struct names_sought sought = {at, len};
    uint64_t hash = hash_bytes(n->text.data + at, len);
    struct hindex_cell *c;
    bool found;
    int rc;

    *added = false;
    if ((rc = hindex_make_room(&t->index)))
        return rc;
    c = hindex_probe(&t->index, hash, names_group_eq, n, &sought, &found);
    if (found) {
        *group = c->ref;
        return 0;
    }
    if (t->used == t->groups_cap) {
        struct names_group *groups = names_grown(t->groups, &t->groups_cap, sizeof(*groups),
                                                 t->groups_cap ? t->groups_cap * 2 : 64);

        if (!groups)
            return -ENOMEM;
        t->groups = groups;
    }
    t->groups[t->used] = (struct names_group){at, len, NAMES_NONE, 0, false, false};
    hindex_put(&t->index, c, hash, t->used);
    *group = t->used++;
    *added = true;
    return 0;
}

/* Group holding the name at text[at, at + len), or NAMES_NONE. */
static size_t names_table_find(const struct names *n, size_t at, size_t len)
{
    struct names_sought sought = {at, len};
    size_t g = hindex_find(&n->table.index, hash_bytes(n->text.data + at, len),
                           names_group_eq, n, &sought);

    return g == HINDEX_FREE ? NAMES_NONE : g;
}

static void names_unlink(struct names *n, size_t e)
{
    struct names_item *it = &n->items[e];
    struct names_group *g = &n->table.groups[it->group];

    if (it->prev != NAMES_NONE)
        n->items[it->prev].next = it->next;
    else
        g->head = it->next;
    if (it->next != NAMES_NONE)
        n->items[it->next].prev = it->prev;
    g->count--;
    it->prev = it->next = NAMES_NONE;
}

/* Queues group `g` for the next round (once) when it holds two or more;
 * only once names_finish has made the work lists. */
static void names_queue(struct names *n, size_t g)
{
    struct names_group *gr = &n->table.groups[g];

    if (n->next_work && gr->count >= 2 && !gr->queued) {
        gr->queued = true;
        n->next_work[n->next_len++] = g;
    }
}

/*
 * Gives entry e the candidate name at text[at, at + len), the last string
 * appended to text, and files it under that name's group. A name already
 * held by a group is dropped from text again when `drop` allows it.
 */
static int names_place(struct names *n, size_t e, size_t at, size_t len, bool drop)
{
    struct names_item *it = &n->items[e];
    struct names_group *gr;
    size_t g;
    bool added;
    int rc;

    rc = names_table_intern(n, at, len, &g, &added);
    if (rc)
        return rc;
    if (!added && drop)
        n->text.len = at;
    gr = &n->table.groups[g];
    it->group = g;
    it->prev = NAMES_NONE;
    it->next = gr->head;
    if (gr->head != NAMES_NONE)
        n->items[gr->head].prev = e;
    gr->head = e;
    gr->count++;
    names_queue(n, g);
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
        size_t step = utf8_char_len(c, n - i);

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

struct names *names_new(const char *suffix, int *err)
{
    struct names *n;
    size_t len;

    *err = names_check_suffix(suffix, &len);
    if (*err)
        return NULL;
    n = calloc(1, sizeof(*n));
    if (!n) {
        *err = -ENOMEM;
        return NULL;
    }
    memcpy(n->suffix, suffix, len + 1);
    n->suffix_len = len;
    return n;
}

size_t names_footprint(const struct names *n)
{
    /* The work lists names_finish makes (counted ahead, as finishing will
     * need them): 2 * count + 1 each for two of them,
     * count each for the other two. */
    size_t work = n ? (6 * n->count + 2) * sizeof(size_t) : 0;

    return n ? sizeof(*n) + n->text.cap + n->items_cap * sizeof(*n->items) +
                   n->table.groups_cap * sizeof(*n->table.groups) +
                   n->table.index.cap * sizeof(*n->table.index.cells) + work
             : 0;
}

void names_free(struct names *n)
{
    if (!n)
        return;
    buf_free(&n->text);
    free(n->items);
    hindex_free(&n->table.index);
    free(n->table.groups);
    free(n->work);
    free(n->next_work);
    free(n->movers);
    free(n->stuck);
    free(n);
}

/*
 * Room in text for an entry's strings: the raw id, its sanitised copy, and
 * the base with the suffix and a NUL (at stage 0 the base and its plain
 * candidate name share their bytes).
 */
static int names_reserve(struct names *n, size_t id_len, size_t name_len)
{
    size_t base = name_len ? name_len : id_len;

    if (id_len > (SIZE_MAX - 64) / 4 || name_len > (SIZE_MAX - 64) / 4)
        return -ENOMEM;
    if (n->count == n->items_cap) {
        struct names_item *items = names_grown(n->items, &n->items_cap, sizeof(*items),
                                               n->items_cap ? n->items_cap * 2 : 64);

        if (!items)
            return -ENOMEM;
        n->items = items;
    }
    return buf_reserve(&n->text, 2 * id_len + base + n->suffix_len + 1);
}

int names_expect(struct names *n, size_t count)
{
    /* Text per entry as seen so far, or a guess before the first. */
    size_t per = n->count ? n->text.len / n->count + 1 : 64;
    struct names_item *items;
    struct names_group *groups;
    int rc;

    if (n->finished || count <= n->count)
        return 0;
    if (count > SIZE_MAX / 4 / per)
        return -ENOMEM;
    items = names_grown(n->items, &n->items_cap, sizeof(*n->items), count);
    if (!items)
        return -ENOMEM;
    n->items = items;
    groups = names_grown(n->table.groups, &n->table.groups_cap, sizeof(*groups), count);
    if (!groups)
        return -ENOMEM;
    n->table.groups = groups;
    if ((rc = hindex_reserve(&n->table.index, count)))
        return rc;
    return buf_reserve_exact(&n->text, (count - n->count) * per);
}

int names_add(struct names *n, const char *item_id, size_t item_id_len, const char *item_name,
              size_t item_name_len)
{
    struct names_item *it;
    size_t e = n->count, at, len;
    char *text;
    int rc;

    if (n->finished || (!item_id && item_id_len) || (!item_name && item_name_len))
        return -EINVAL;
    rc = names_reserve(n, item_id_len, item_name_len);
    if (rc)
        return rc;
    it = &n->items[e];
    text = n->text.data;
    it->rid = n->text.len;
    it->rid_len = item_id_len;
    if (item_id_len)
        memcpy(text + it->rid, item_id, item_id_len);
    it->hash = hash_bytes(item_id, item_id_len);
    it->sid = it->rid + item_id_len;
    if (names_sanitise(item_id, item_id_len, text + it->sid))
        it->sid = it->rid;
    /* The base goes last, so that the plain name can extend it in place. */
    it->base = it->sid == it->rid ? it->rid + item_id_len : it->sid + item_id_len;
    if (item_name_len) {
        names_sanitise(item_name, item_name_len, text + it->base);
        it->base_len = item_name_len;
    } else {
        memcpy(text + it->base, text + it->sid, item_id_len);
        it->base_len = item_id_len;
    }
    memcpy(text + it->base + it->base_len, n->suffix, n->suffix_len + 1);
    n->text.len = it->base + it->base_len + n->suffix_len + 1;
    n->count++;
    it->prev = it->next = NAMES_NONE;
    it->stage = 0;
    if (it->base_len + n->suffix_len <= NAMES_MAX_LEN)
        return names_place(n, e, it->base, it->base_len + n->suffix_len, false);
    it->stage = names_next_stage(it, 0);
    rc = names_candidate(n, it, it->stage, &at, &len);
    if (!rc)
        rc = names_place(n, e, at, len, true);
    if (rc)
        n->count--; /* not added; its strings stay in text, unused */
    return rc;
}
/* One round: choose the movers from every colliding group, then move them. */
static int names_round(struct names *n)
{
    int rc;

    n->movers_len = 0;
    for (size_t w = 0; w < n->work_len; w++) {
        struct names_group *gr = &n->table.groups[n->work[w]];
        int low = NAMES_STAGE_FINAL;

        gr->queued = false;
        if (gr->count < 2)
            continue;
        for (size_t e = gr->head; e != NAMES_NONE; e = n->items[e].next)
            if (n->items[e].stage < low)
                low = n->items[e].stage;
        if (low >= 2) {
            if (!gr->stuck) {
                gr->stuck = true;
                n->stuck[n->stuck_len++] = n->work[w];
            }
            continue;
        }
        for (size_t e = gr->head; e != NAMES_NONE; e = n->items[e].next) {
            if (n->items[e].stage == low)
                n->movers[n->movers_len++] = e;
        }
    }
    n->next_len = 0;
    for (size_t m = 0; m < n->movers_len; m++) {
        size_t e = n->movers[m], old = n->items[e].group, at, len;
        struct names_item *it = &n->items[e];

        it->stage = names_next_stage(it, it->stage);
        rc = names_candidate(n, it, it->stage, &at, &len);
        if (rc)
            return rc;
        names_unlink(n, e);
        /* Those left behind may still collide among themselves. */
        names_queue(n, old);
        rc = names_place(n, e, at, len, true);
        if (rc)
            return rc;
    }
    return 0;
}

static int names_cmp_id(const struct names *n, size_t a, size_t b)
{
    const struct names_item *x = &n->items[a], *y = &n->items[b];
    size_t len = x->rid_len < y->rid_len ? x->rid_len : y->rid_len;
    int c = len ? memcmp(n->text.data + x->rid, n->text.data + y->rid, len) : 0;

    if (c)
        return c;
    return (x->rid_len > y->rid_len) - (x->rid_len < y->rid_len);
}

/* Moves v[root] down the max-heap v[0, end). */
static void names_sift(const struct names *n, size_t *v, size_t root, size_t end)
{
    for (;;) {
        size_t child = 2 * root + 1, tmp;

        if (child >= end)
            return;
        if (child + 1 < end && names_cmp_id(n, v[child], v[child + 1]) < 0)
            child++;
        if (names_cmp_id(n, v[root], v[child]) >= 0)
            return;
        tmp = v[root];
        v[root] = v[child];
        v[child] = tmp;
        root = child;
    }
}

/*
 * Heap sort by raw id: qsort would need the state through a global, which
 * this module does not keep, to be safe from any thread.
 */
static void names_sort_by_id(const struct names *n, size_t *v, size_t count)
{
    for (size_t start = count / 2; start-- > 0;)
        names_sift(n, v, start, count);
    for (size_t end = count; end-- > 1;) {
        size_t tmp = v[0];

        v[0] = v[end];
        v[end] = tmp;
        names_sift(n, v, 0, end);
    }
}

/* Settles groups that even the hash could not separate. */
static int names_final(struct names *n)
{
    size_t count = 0;
    int rc;

    for (size_t i = 0; i < n->stuck_len; i++) {
        struct names_group *gr = &n->table.groups[n->stuck[i]];

        if (gr->count < 2)
            continue;
        for (size_t e = gr->head; e != NAMES_NONE; e = n->items[e].next)
            n->movers[count++] = e;
    }
    names_sort_by_id(n, n->movers, count);
    for (size_t m = 0; m < count; m++) {
        size_t e = n->movers[m];
        struct names_item *it = &n->items[e];
        char hash[NAMES_HASH_DIGITS + 1];

        it->stage = NAMES_STAGE_FINAL;
        names_unlink(n, e);
        names_hex(it->hash, hash);
        for (unsigned long long k = 1;; k++) {
            char tag[NAMES_HASH_DIGITS + 24];
            int tag_len = snprintf(tag, sizeof(tag), "%s-%llu", hash, k);
            size_t at, len, g;

            rc = names_tagged(n, it, tag, (size_t)tag_len, &at, &len);
            if (rc)
                return rc;
            g = names_table_find(n, at, len);
            if (g != NAMES_NONE && n->table.groups[g].count > 0) {
                n->text.len = at;
                continue;
            }
            rc = names_place(n, e, at, len, true);
            if (rc)
                return rc;
            break;
        }
    }
    return 0;
}

/* -EINVAL when two entries share a raw id. */
static int names_check_ids(const struct names *n)
{
    size_t cap = 16, *slots;
    int rc = 0;

    while (cap < n->count * 2)
        cap *= 2;
    slots = malloc(cap * sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i < cap; i++)
        slots[i] = NAMES_NONE;
    for (size_t e = 0; e < n->count; e++) {
        const struct names_item *it = &n->items[e];
        size_t i = (size_t)it->hash & (cap - 1);

        while (slots[i] != NAMES_NONE) {
            if (names_cmp_id(n, slots[i], e) == 0) {
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

int names_finish(struct names *n)
{
    size_t work_cap = 2 * n->count + 1;
    int rc;

    if (n->finished)
        return -EINVAL;
    rc = names_check_ids(n);
    if (rc)
        return rc;
    /* Every move queues at most two groups, and an entry moves at most
     * twice before the final stage. */
    n->work = malloc(work_cap * sizeof(size_t));
    n->next_work = malloc(work_cap * sizeof(size_t));
    n->movers = malloc((n->count + 1) * sizeof(size_t));
    n->stuck = malloc((n->count + 1) * sizeof(size_t));
    if (!n->work || !n->next_work || !n->movers || !n->stuck)
        return -ENOMEM;
    for (size_t g = 0; g < n->table.used; g++)
        names_queue(n, g);
    while (n->next_len) {
        size_t *tmp = n->work;

        n->work = n->next_work;
        n->work_len = n->next_len;
        n->next_work = tmp;
        rc = names_round(n);
        if (rc)
            return rc;
    }
    rc = names_final(n);
    if (rc)
        return rc;
    n->finished = true;
    return 0;
}

const char *names_file_name(const struct names *n, size_t index, size_t *len)
{
    const struct names_group *g;

    if (!n->finished || index >= n->count)
        return NULL;
    g = &n->table.groups[n->items[index].group];
    if (len)
        *len = g->len;
    return n->text.data + g->name;
}

const char *names_item_id(const struct names *n, size_t index, size_t *len)
{
    if (index >= n->count)
        return NULL;
    *len = n->items[index].rid_len;
    return n->text.data + n->items[index].rid;
}

int names_assign(struct names_entry *entries, size_t count, const char *suffix)
{
    struct names *n;
    size_t e = 0;
    int rc;

    if (count && !entries)
        return -EINVAL;
    for (size_t i = 0; i < count; i++)
        entries[i].file_name = NULL;
    n = names_new(suffix, &rc);
    if (!n)
        return rc;
    for (e = 0; !rc && e < count; e++)
        rc = names_add(n, entries[e].item_id, entries[e].item_id_len,
                       entries[e].item_name ? entries[e].item_name : "",
                       entries[e].item_name ? entries[e].item_name_len : 0);
    if (!rc)
        rc = names_finish(n);
    for (e = 0; !rc && e < count; e++) {
        size_t len;
        const char *name = names_file_name(n, e, &len);

        entries[e].file_name = malloc(len + 1);
        if (!entries[e].file_name)
            rc = -ENOMEM;
        else
            memcpy(entries[e].file_name, name, len + 1);
    }
    if (rc) {
        for (size_t i = 0; i < count; i++) {
            free(entries[i].file_name);
            entries[i].file_name = NULL;
        }
    }
    names_free(n);
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
