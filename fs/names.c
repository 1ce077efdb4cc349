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

#include "batchfs/bigmem.h"
#include "batchfs/buf.h"
#include "batchfs/hash.h"
#include "batchfs/utf8.h"

#define NAMES_MAX_SUFFIX 16
#define NAMES_HASH_DIGITS 16
#define NAMES_STAGE_FINAL 3
/* No entry; also a free slot of the table. */
#define NAMES_NONE UINT32_MAX
/* Entries are numbered below NAMES_NONE, and text offsets fit 32 bits. */
#define NAMES_MAX_COUNT ((size_t)UINT32_MAX - 1)
#define NAMES_MAX_TEXT ((size_t)UINT32_MAX)
/* Most entries names_expect makes room for: a count that lies high must
 * not reserve gigabytes. Beyond it, the room grows. */
#define NAMES_EXPECT_MAX ((size_t)1 << 20)

/*
 * Every string of a folder (raw ids, sanitised names, candidate names)
 * lives in one buffer, `text`, and is referred to by a 32-bit offset: the
 * buffer moves as it grows. One buffer instead of a few allocations per
 * entry is what keeps naming 100,000 entries cheap, and 32-bit offsets and
 * indices what keeps a million entries small.
 *
 * An entry's strings are its raw id followed by its base (the sanitised
 * name, or the sanitised id when that is empty) with the suffix and a NUL,
 * which is its plain name. A folder whose ids are loaded on demand
 * (names_ids_on_demand) keeps an id there only when the entry's name needs
 * it at once (rule 2 or 4); the others are loaded when the entry first
 * collides, and appended to text behind their length (see names_rid_len):
 * a million-item folder then holds no 40-byte id an item while it is
 * named. What is needed only on the rare way up the ladder (the sanitised
 * id, the hash of the raw id) is computed again there.
 */
struct names_item {
    uint32_t rid;  /* raw id (see names_rid_len); NAMES_NONE: not loaded */
    uint32_t base; /* base + suffix, NUL-terminated, in text */
    uint32_t name; /* current candidate name, NUL-terminated, in text */
    uint32_t next; /* next entry holding the same name, or NAMES_NONE */
};

/*
 * A slot of the table of names held: the entries holding one name form a
 * chain from `head`, so a name held by one entry costs its slot alone.
 * Open addressing with linear probing, at most half full; a name nobody
 * holds any more leaves the table (backward shift, no tombstones).
 */
struct names_slot {
    uint32_t hash; /* NAMES_SLOT_HASH bits of the name's hash, and flags */
    uint32_t head; /* first entry holding the name, or NAMES_NONE: free */
};

#define NAMES_SLOT_HASH 0x3FFFFFFFu
#define NAMES_SLOT_QUEUED 0x40000000u /* on the work list of the coming round */
#define NAMES_SLOT_STUCK 0x80000000u  /* on the list left to the final stage */

/* A growable list of entry numbers. */
struct names_list {
    uint32_t *at;
    size_t len, cap;
};

struct names {
    char suffix[NAMES_MAX_SUFFIX + 1];
    size_t suffix_len;
    struct buf text;
    /* Until names_finish: items and stages (items_cap of each); after it,
     * `names` (2 * count of them): the offset in text of each file name,
     * then of each raw id. */
    struct names_item *items;
    uint8_t *stages;
    uint32_t *names;
    size_t count, items_cap;
    struct names_slot *slots; /* slots_cap of them, a power of two, or NULL */
    size_t slots_cap, slots_used;
    bool finished;
    bool failed; /* names_finish failed: nothing more to do but free */
    /* Held names to examine this round and next (each by one entry holding
     * it), entries moving this round, names left to the final stage. */
    struct names_list work, next_work, movers, stuck;
    /* Steps of settling beyond one an entry: candidate names tried beyond
     * each entry's plain name, and slots probed checking the ids. */
    size_t tries;
    /* Where ids not kept are loaded from (names_ids_on_demand), or NULL:
     * every id kept. */
    names_id_fn id_of;
    void *id_arg;
    size_t ids_loaded;
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

/* The length of the raw id of `it`, which is loaded (rid not NAMES_NONE).
 * An id kept by names_add lies just before the base (rid <= base); one
 * loaded later lies after it, behind its length in 4 bytes. */
static size_t names_rid_len(const struct names *n, const struct names_item *it)
{
    uint32_t len;

    if (it->rid <= it->base)
        return it->base - it->rid;
    memcpy(&len, n->text.data + it->rid - sizeof(len), sizeof(len));
    return len;
}

/* True when renamed forms show the id's hash rather than the id (loaded). */
static bool names_id_unfit(const struct names *n, const struct names_item *it)
{
    size_t len = names_rid_len(n, it);

    return len == 0 || len > NAMES_MAX_ID_LEN;
}

/* FNV-1a of the raw id of `it` (loaded), as shown at stage 2 and the final
 * stage. */
static uint64_t names_id_hash(const struct names *n, const struct names_item *it)
{
    return hash_bytes(n->text.data + it->rid, names_rid_len(n, it));
}

/* Loads the id of entry e unless it is in text already: 0, or the loader's
 * error (-ENOMEM beyond what 32-bit offsets reach). Text may move. */
static int names_load_id(struct names *n, uint32_t e)
{
    struct buf id = BUF_INIT;
    uint32_t len;
    int rc;

    if (n->items[e].rid != NAMES_NONE)
        return 0;
    rc = n->id_of(n->id_arg, e, &id);
    if (!rc && (n->text.len > NAMES_MAX_TEXT - NAMES_MAX_LEN - 2 ||
                id.len + sizeof(len) > NAMES_MAX_TEXT - NAMES_MAX_LEN - 2 - n->text.len))
        rc = -ENOMEM;
    if (!rc)
        rc = buf_reserve(&n->text, sizeof(len) + id.len);
    if (!rc) {
        len = (uint32_t)id.len;
        memcpy(n->text.data + n->text.len, &len, sizeof(len));
        if (id.len)
            memcpy(n->text.data + n->text.len + sizeof(len), id.data, id.len);
        n->items[e].rid = (uint32_t)(n->text.len + sizeof(len));
        n->text.len += sizeof(len) + id.len;
        n->ids_loaded++;
    }
    buf_free(&id);
    return rc;
}

static int names_cmp_index(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return (x > y) - (x < y);
}

/* Loads the ids of the entries of `list` not loaded yet, in the order of
 * the entries, so that a loader reading them from pages of the folder
 * reads each page once. 0 or an error of names_load_id. */
static int names_load_ids(struct names *n, const struct names_list *list)
{
    uint32_t *order;
    int rc = 0;

    if (!n->id_of || !list->len)
        return 0;
    order = bigmem_resize(NULL, list->len * sizeof(*order));
    if (!order)
        return -ENOMEM;
    memcpy(order, list->at, list->len * sizeof(*order));
    qsort(order, list->len, sizeof(*order), names_cmp_index);
    for (size_t i = 0; i < list->len && !rc; i++)
        rc = names_load_id(n, order[i]);
    bigmem_free(order);
    return rc;
}

/*
 * Appends base + "~" + tag + suffix and a NUL to text, shortening the base
 * so the whole fits NAMES_MAX_LEN; *at locates it. `tag` is at most
 * NAMES_MAX_ID_LEN + 22 bytes and not in text, so a shortened base always
 * keeps some bytes.
 */
static int names_tagged(struct names *n, const struct names_item *it, const char *tag,
                        size_t tag_len, size_t *at)
{
    size_t room = NAMES_MAX_LEN - 1 - tag_len - n->suffix_len, k, len;
    size_t base_len = strlen(n->text.data + it->base) - n->suffix_len;
    char *out;
    int rc;

    if (n->text.len > NAMES_MAX_TEXT - NAMES_MAX_LEN - 2)
        return -ENOMEM;
    rc = buf_reserve(&n->text, NAMES_MAX_LEN + 1);
    if (rc)
        return rc;
    k = names_cut(n->text.data + it->base, base_len, room);
    *at = n->text.len;
    len = k + 1 + tag_len + n->suffix_len;
    out = n->text.data + *at;
    memcpy(out, n->text.data + it->base, k);
    out[k] = '~';
    memcpy(out + k + 1, tag, tag_len);
    memcpy(out + k + 1 + tag_len, n->suffix, n->suffix_len);
    out[len] = '\0';
    n->text.len += len + 1;
    return 0;
}

/* Appends the candidate name of `it` at `stage` (1 or 2) to text. */
static int names_candidate(struct names *n, const struct names_item *it, int stage,
                           size_t *at)
{
    char tag[NAMES_MAX_ID_LEN + 1];
    size_t tag_len;

    if (stage == 1 && !names_id_unfit(n, it)) {
        tag_len = names_rid_len(n, it);
        names_sanitise(n->text.data + it->rid, tag_len, tag);
    } else {
        names_hex(names_id_hash(n, it), tag);
        tag_len = NAMES_HASH_DIGITS;
    }
    return names_tagged(n, it, tag, tag_len, at);
}

/* The stage an entry moves to from `stage`, skipping stages whose name
 * would be the same as the one it leaves. */
static int names_next_stage(const struct names *n, const struct names_item *it, int stage)
{
    if (stage == 0)
        return names_id_unfit(n, it) ? 2 : 1;
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
    grown = bigmem_resize(items, want * size);
    if (grown)
        *cap = want;
    return grown;
}

/* Appends entry `e` to `list`. 0 or -ENOMEM. */
static int names_list_push(struct names_list *list, uint32_t e)
{
    if (list->len == list->cap) {
        uint32_t *at = names_grown(list->at, &list->cap, sizeof(*at),
                                   list->cap ? list->cap * 2 : 16);

        if (!at)
            return -ENOMEM;
        list->at = at;
    }
    list->at[list->len++] = e;
    return 0;
}

static void names_list_free(struct names_list *list)
{
    bigmem_free(list->at);
    *list = (struct names_list){0};
}

static uint32_t names_slot_hash(const char *name)
{
    return (uint32_t)hash_str_from(HASH_FNV_BASIS, name) & NAMES_SLOT_HASH;
}

/*
 * The slot of the name `name` (NUL-terminated, hashed to `hash`), or, when
 * no entry holds it, the free slot to put it in; then *found is false.
 */
static size_t names_slot_probe(const struct names *n, const char *name, uint32_t hash,
                               bool *found)
{
    size_t mask = n->slots_cap - 1, i = hash & mask;

    for (;; i = (i + 1) & mask) {
        const struct names_slot *s = &n->slots[i];

        if (s->head == NAMES_NONE) {
            *found = false;
            return i;
        }
        if ((s->hash & NAMES_SLOT_HASH) == hash &&
            strcmp(n->text.data + n->items[s->head].name, name) == 0) {
            *found = true;
            return i;
        }
    }
}

/* `cap` free slots, or NULL when out of memory. */
static struct names_slot *names_slots_empty(size_t cap)
{
    struct names_slot *slots;

    if (cap > SIZE_MAX / sizeof(*slots))
        return NULL;
    slots = bigmem_resize(NULL, cap * sizeof(*slots));
    for (size_t i = 0; slots && i < cap; i++)
        slots[i].head = NAMES_NONE;
    return slots;
}

/* Rehashes into `cap` slots (a power of two). 0 or -ENOMEM, and then the
 * table is unchanged. */
static int names_slots_resize(struct names *n, size_t cap)
{
    struct names_slot *slots = names_slots_empty(cap);

    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i < n->slots_cap; i++) {
        size_t j = n->slots[i].hash & NAMES_SLOT_HASH & (cap - 1);

        if (n->slots[i].head == NAMES_NONE)
            continue;
        while (slots[j].head != NAMES_NONE)
            j = (j + 1) & (cap - 1);
        slots[j] = n->slots[i];
    }
    bigmem_free(n->slots);
    n->slots = slots;
    n->slots_cap = cap;
    return 0;
}

/* Room in the table for `count` names in all, at most half full. */
static int names_slots_reserve(struct names *n, size_t count)
{
    size_t cap = n->slots_cap ? n->slots_cap : 64;

    if (count > SIZE_MAX / 4)
        return -ENOMEM;
    while (cap < 2 * count)
        cap *= 2;
    return cap == n->slots_cap ? 0 : names_slots_resize(n, cap);
}

/* Takes slot `i` out of the table, moving back the slots after it that
 * would no longer be found past the hole. */
static void names_slot_remove(struct names *n, size_t i)
{
    size_t mask = n->slots_cap - 1, j = i;

    for (;;) {
        size_t home;

        j = (j + 1) & mask;
        if (n->slots[j].head == NAMES_NONE)
            break;
        home = n->slots[j].hash & NAMES_SLOT_HASH & mask;
        /* Slot j stays unless its home lies cyclically outside (i, j]. */
        if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
            n->slots[i] = n->slots[j];
            i = j;
        }
    }
    n->slots[i].head = NAMES_NONE;
    n->slots_used--;
}

/* Slot `i`, holding a name held by two or more, on the next round's list
 * (once). */
static int names_queue(struct names *n, size_t i)
{
    struct names_slot *s = &n->slots[i];

    int rc;

    if (s->hash & NAMES_SLOT_QUEUED)
        return 0;
    rc = names_list_push(&n->next_work, s->head);
    if (!rc)
        s->hash |= NAMES_SLOT_QUEUED;
    return rc;
}

/*
 * Gives entry e the candidate name at text[at], and files it under that
 * name. A name already held is dropped from text again when `drop` allows
 * it (it is then the last string of text), and queued for the next round.
 */
static int names_place(struct names *n, uint32_t e, size_t at, bool drop)
{
    struct names_item *it = &n->items[e], *head;
    const char *name = n->text.data + at;
    uint32_t hash = names_slot_hash(name);
    size_t i;
    bool found;
    int rc;

    if ((n->slots_used + 1) * 2 > n->slots_cap &&
        (rc = names_slots_reserve(n, n->slots_used + 1)))
        return rc;
    i = names_slot_probe(n, name, hash, &found);
    if (!found) {
        n->slots[i] = (struct names_slot){hash, e};
        n->slots_used++;
        it->name = (uint32_t)at;
        it->next = NAMES_NONE;
        return 0;
    }
    /* Queued first, so that on failure nothing has changed. */
    rc = names_queue(n, i);
    if (rc)
        return rc;
    head = &n->items[n->slots[i].head];
    it->name = drop ? head->name : (uint32_t)at;
    if (drop)
        n->text.len = at;
    /* After the head, so that the slot keeps its entry. */
    it->next = head->next;
    head->next = e;
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
    /* The text holds every name and id of a folder. */
    n->text = (struct buf)BUF_INIT_BIG;
    memcpy(n->suffix, suffix, len + 1);
    n->suffix_len = len;
    return n;
}

/* Frees what only settling needs. */
static void names_free_work(struct names *n)
{
    bigmem_free(n->items);
    n->items = NULL;
    bigmem_free(n->stages);
    n->stages = NULL;
    n->items_cap = 0;
    bigmem_free(n->slots);
    n->slots = NULL;
    n->slots_cap = n->slots_used = 0;
    names_list_free(&n->work);
    names_list_free(&n->next_work);
    names_list_free(&n->movers);
    names_list_free(&n->stuck);
}

void names_free(struct names *n)
{
    if (!n)
        return;
    names_free_work(n);
    buf_free(&n->text);
    bigmem_free(n->names);
    free(n);
}

/* The offsets names_finish keeps an entry: its name's, and its id's
 * unless ids are loaded on demand. */
static size_t names_offsets_per_entry(const struct names *n)
{
    return n->id_of ? 1 : 2;
}

int names_ids_on_demand(struct names *n, names_id_fn id_of, void *arg)
{
    if (n->count || n->finished || n->failed || !id_of)
        return -EINVAL;
    n->id_of = id_of;
    n->id_arg = arg;
    return 0;
}

size_t names_ids_loaded(const struct names *n)
{
    return n ? n->ids_loaded : 0;
}

/* Slots for checking the ids of `count` entries: at most half full. */
static size_t names_ids_cap(size_t count)
{
    size_t cap = 16;

    while (cap < count * 2)
        cap *= 2;
    return cap;
}

size_t names_steps(const struct names *n)
{
    return n ? n->tries : 0;
}

size_t names_footprint(const struct names *n)
{
    size_t ahead = 0, ids_cap;

    if (!n)
        return 0;
    /* Counted ahead, as finishing will need it while the rest is held:
     * the offsets of the names it keeps, and slots for the id check when
     * the names' table has too few (the work lists grow with collisions
     * and are counted as they do). */
    if (!n->finished && !n->failed) {
        ids_cap = n->id_of ? 0 : names_ids_cap(n->count);
        ahead =
            names_offsets_per_entry(n) * n->count * sizeof(*n->names) +
            (ids_cap > n->slots_cap ? (ids_cap - n->slots_cap) * sizeof(*n->slots) : 0);
    }
    return sizeof(*n) + n->text.cap +
           n->items_cap * (sizeof(*n->items) + sizeof(*n->stages)) +
           (n->names ? names_offsets_per_entry(n) * n->count * sizeof(*n->names) : 0) +
           n->slots_cap * sizeof(*n->slots) +
           (n->work.cap + n->next_work.cap + n->movers.cap + n->stuck.cap) *
               sizeof(uint32_t) +
           ahead;
}

/* Room for `count` entries in items and stages. */
static int names_items_reserve(struct names *n, size_t count)
{
    size_t cap = n->items_cap, stages_cap = n->items_cap;
    struct names_item *items;
    uint8_t *stages;

    if (count <= n->items_cap)
        return 0;
    items = names_grown(n->items, &cap, sizeof(*items), count);
    if (!items)
        return -ENOMEM;
    n->items = items;
    stages = names_grown(n->stages, &stages_cap, sizeof(*stages), count);
    if (!stages)
        return -ENOMEM; /* items_cap unchanged: the larger items go unused */
    n->stages = stages;
    n->items_cap = count;
    return 0;
}

/*
 * Room for an entry: its slot in items, and in text its raw id (when
 * `keep_id`) and its base with the suffix and a NUL (at stage 0 the base
 * and its plain candidate name share their bytes).
 */
static int names_reserve(struct names *n, size_t id_len, size_t name_len, bool keep_id)
{
    size_t base = name_len ? name_len : id_len, need;
    int rc;

    if (n->count >= NAMES_MAX_COUNT || id_len > NAMES_MAX_TEXT || base > NAMES_MAX_TEXT)
        return -ENOMEM;
    need = (keep_id ? id_len : 0) + base + n->suffix_len + 1;
    /* Offsets, including those of the candidates to come, fit 32 bits. */
    if (n->text.len > NAMES_MAX_TEXT - NAMES_MAX_LEN - 2 ||
        need > NAMES_MAX_TEXT - NAMES_MAX_LEN - 2 - n->text.len)
        return -ENOMEM;
    if (n->count == n->items_cap &&
        (rc = names_items_reserve(n, n->items_cap ? n->items_cap * 2 : 64)))
        return rc;
    return buf_reserve(&n->text, need);
}

int names_expect(struct names *n, size_t count)
{
    /* Text per entry as seen so far, or a guess before the first. */
    size_t per = n->count ? n->text.len / n->count + 1 : 64;
    int rc;

    if (count > NAMES_EXPECT_MAX)
        count = NAMES_EXPECT_MAX;
    if (n->finished || n->failed || count <= n->count)
        return 0;
    if ((rc = names_items_reserve(n, count)) || (rc = names_slots_reserve(n, count)))
        return rc;
    if (per > (NAMES_MAX_TEXT - n->text.len) / (count - n->count))
        return -ENOMEM;
    return buf_reserve_exact(&n->text, (count - n->count) * per);
}

int names_add(struct names *n, const char *item_id, size_t item_id_len, const char *item_name,
              size_t item_name_len)
{
    struct names_item *it;
    uint32_t e = (uint32_t)n->count;
    size_t at, base_len, rid;
    char *text;
    /* Without a loader, every id; with one, those rules 2 and 4 show now. */
    bool keep_id =
        !n->id_of || !item_name_len || item_name_len + n->suffix_len > NAMES_MAX_LEN;
    int rc;

    if (n->finished || n->failed || (!item_id && item_id_len) ||
        (!item_name && item_name_len))
        return -EINVAL;
    rc = names_reserve(n, item_id_len, item_name_len, keep_id);
    if (rc)
        return rc;
    it = &n->items[e];
    text = n->text.data;
    rid = n->text.len;
    if (keep_id && item_id_len)
        memcpy(text + rid, item_id, item_id_len);
    it->rid = keep_id ? (uint32_t)rid : NAMES_NONE;
    it->base = (uint32_t)(rid + (keep_id ? item_id_len : 0));
    if (item_name_len) {
        names_sanitise(item_name, item_name_len, text + it->base);
        base_len = item_name_len;
    } else {
        names_sanitise(item_id, item_id_len, text + it->base);
        base_len = item_id_len;
    }
    memcpy(text + it->base + base_len, n->suffix, n->suffix_len + 1);
    n->text.len = it->base + base_len + n->suffix_len + 1;
    n->stages[e] = 0;
    if (base_len + n->suffix_len <= NAMES_MAX_LEN)
        rc = names_place(n, e, it->base, false);
    else {
        n->stages[e] = (uint8_t)names_next_stage(n, it, 0);
        rc = names_candidate(n, it, n->stages[e], &at);
        if (!rc)
            rc = names_place(n, e, at, true);
    }
    if (rc)
        return rc; /* not added; its strings stay in text, unused */
    n->count++;
    return 0;
}

/*
 * Decides for the name held by `rep`: when two or more hold it, those at
 * the lowest stage leave it (onto movers), unless all are at stage 2 or
 * above, which leaves the name to the final stage.
 */
static int names_decide(struct names *n, uint32_t rep)
{
    const char *name = n->text.data + n->items[rep].name;
    size_t i, count = 0, kept = 0;
    uint32_t head, keep = NAMES_NONE, *tail = &keep;
    int low = NAMES_STAGE_FINAL, rc;
    bool found;

    i = names_slot_probe(n, name, names_slot_hash(name), &found);
    n->slots[i].hash &= ~NAMES_SLOT_QUEUED;
    head = n->slots[i].head;
    for (uint32_t e = head; e != NAMES_NONE; e = n->items[e].next) {
        count++;
        if (n->stages[e] < low)
            low = n->stages[e];
    }
    if (count < 2)
        return 0;
    if (low >= 2) {
        if (n->slots[i].hash & NAMES_SLOT_STUCK)
            return 0;
        n->slots[i].hash |= NAMES_SLOT_STUCK;
        return names_list_push(&n->stuck, head);
    }
    for (uint32_t e = head, next; e != NAMES_NONE; e = next) {
        next = n->items[e].next;
        if (n->stages[e] == low) {
            if ((rc = names_list_push(&n->movers, e)))
                return rc;
        } else {
            *tail = e;
            tail = &n->items[e].next;
            kept++;
        }
    }
    *tail = NAMES_NONE;
    if (!kept) {
        names_slot_remove(n, i);
        return 0;
    }
    n->slots[i].head = keep;
    /* Those left behind may still collide among themselves. */
    return kept >= 2 ? names_queue(n, i) : 0;
}

/* One round: choose the movers from every colliding name, then move them.
 * The choices depend on nothing the moves change, so taking each mover out
 * of its name while choosing decides as if all were chosen first. */
static int names_round(struct names *n)
{
    int rc;

    n->movers.len = 0;
    for (size_t w = 0; w < n->work.len; w++)
        if ((rc = names_decide(n, n->work.at[w])))
            return rc;
    if ((rc = names_load_ids(n, &n->movers)))
        return rc;
    for (size_t m = 0; m < n->movers.len; m++) {
        uint32_t e = n->movers.at[m];
        struct names_item *it = &n->items[e];
        size_t at;

        n->stages[e] = (uint8_t)names_next_stage(n, it, n->stages[e]);
        n->tries++;
        rc = names_candidate(n, it, n->stages[e], &at);
        if (!rc)
            rc = names_place(n, e, at, true);
        if (rc)
            return rc;
    }
    return 0;
}

static int names_cmp_id(const struct names *n, uint32_t a, uint32_t b)
{
    const struct names_item *x = &n->items[a], *y = &n->items[b];
    size_t xl = names_rid_len(n, x), yl = names_rid_len(n, y), len = xl < yl ? xl : yl;
    int c = len ? memcmp(n->text.data + x->rid, n->text.data + y->rid, len) : 0;

    if (c)
        return c;
    return (xl > yl) - (xl < yl);
}

/* Moves v[root] down the max-heap v[0, end). */
static void names_sift(const struct names *n, uint32_t *v, size_t root, size_t end)
{
    for (;;) {
        size_t child = 2 * root + 1;
        uint32_t tmp;

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
static void names_sort_by_id(const struct names *n, uint32_t *v, size_t count)
{
    for (size_t start = count / 2; start-- > 0;)
        names_sift(n, v, start, count);
    for (size_t end = count; end-- > 1;) {
        uint32_t tmp = v[0];

        v[0] = v[end];
        v[end] = tmp;
        names_sift(n, v, 0, end);
    }
}

/*
 * Settles the names that even the hash could not separate. Their holders
 * leave them all at once: a numbered name (`~` hash `-` N, N shorter than
 * 16 digits) is never a stage 2 name (16 hex digits before the suffix), so
 * which stage 2 names are still held cannot change which numbers are free.
 */
static int names_final(struct names *n)
{
    /* The number each group tries next, less one (see below). */
    unsigned long long *next = NULL;
    uint32_t groups = 0;
    int rc = 0;

    n->movers.len = 0;
    for (size_t s = 0; s < n->stuck.len; s++) {
        const char *name = n->text.data + n->items[n->stuck.at[s]].name;
        bool found;
        size_t i = names_slot_probe(n, name, names_slot_hash(name), &found);
        uint32_t head = n->slots[i].head, e = head;

        if (n->items[head].next == NAMES_NONE)
            continue;
        /* The holders of one name form a group, which their chain links,
         * free from here until each is placed again, now number. */
        while (e != NAMES_NONE) {
            uint32_t following = n->items[e].next;

            if ((rc = names_list_push(&n->movers, e)))
                return rc;
            n->items[e].next = groups;
            e = following;
        }
        groups++;
        names_slot_remove(n, i);
    }
    /* Loaded already, on their way up to stage 2; this only makes sure. */
    if ((rc = names_load_ids(n, &n->movers)))
        return rc;
    names_sort_by_id(n, n->movers.at, n->movers.len);
    /* Repeated ids would number each other one by one, in time quadratic
     * in their count, only to be refused: refused at once. */
    for (size_t m = 1; m < n->movers.len; m++)
        if (names_cmp_id(n, n->movers.at[m - 1], n->movers.at[m]) == 0)
            return -EINVAL;
    /* The members of a group try the same numbered names, and a name once
     * held stays held here: a member starts past the number the one before
     * it took, where it would have arrived by trying each number from 1,
     * so that m ids with one hash cost m tries rather than m * m / 2. */
    if (groups && !(next = bigmem_calloc(groups, sizeof(*next))))
        return -ENOMEM;
    for (size_t m = 0; m < n->movers.len && !rc; m++) {
        uint32_t e = n->movers.at[m];
        struct names_item *it = &n->items[e];
        uint32_t group = it->next;
        char hash[NAMES_HASH_DIGITS + 1];

        n->stages[e] = NAMES_STAGE_FINAL;
        names_hex(names_id_hash(n, it), hash);
        for (unsigned long long k = next[group] + 1;; k++) {
            char tag[NAMES_HASH_DIGITS + 24];
            int tag_len = snprintf(tag, sizeof(tag), "%s-%llu", hash, k);
            size_t at;
            bool found;

            n->tries++;
            rc = names_tagged(n, it, tag, (size_t)tag_len, &at);
            if (rc)
                break;
            names_slot_probe(n, n->text.data + at, names_slot_hash(n->text.data + at),
                             &found);
            if (found) {
                n->text.len = at;
                continue;
            }
            rc = names_place(n, e, at, true);
            next[group] = k;
            break;
        }
    }
    bigmem_free(next);
    return rc;
}

/* Longest run of slots the id check probes for one id. Ids of hashes
 * drawn at random make runs this long in a half-full table practically
 * never; ids made to share a hash make them at once. */
#define NAMES_PROBE_MAX 256

/* -EINVAL when two entries share a raw id, found by sorting: for ids whose
 * hashes collide, where the table would compare each with every other.
 * -ENOMEM when the order cannot be made. */
static int names_check_ids_sorted(struct names *n)
{
    uint32_t *order = bigmem_resize(NULL, (n->count ? n->count : 1) * sizeof(*order));
    int rc = 0;

    if (!order)
        return -ENOMEM;
    for (uint32_t e = 0; e < n->count; e++)
        order[e] = e;
    names_sort_by_id(n, order, n->count);
    for (size_t k = 1; k < n->count && !rc; k++)
        if (names_cmp_id(n, order[k - 1], order[k]) == 0)
            rc = -EINVAL;
    bigmem_free(order);
    return rc;
}

/*
 * -EINVAL when two entries share a raw id. Run once the names are settled,
 * in the slots of their table when they are enough, so that the check adds
 * nothing to the peak; by sorting when ids crowd one run of the table.
 */
static int names_check_ids(struct names *n)
{
    size_t cap = names_ids_cap(n->count), mask;
    struct names_slot *slots;

    if (n->id_of)
        return 0; /* the caller's promise (names_ids_on_demand) */
    if (n->slots_cap >= cap) {
        cap = n->slots_cap;
        for (size_t i = 0; i < cap; i++)
            n->slots[i].head = NAMES_NONE;
    } else {
        bigmem_free(n->slots);
        n->slots = NULL;
        n->slots_cap = 0;
        if (!(n->slots = names_slots_empty(cap)))
            return -ENOMEM;
        n->slots_cap = cap;
    }
    /* The names' table is gone: nothing may look names up from here on. */
    n->slots_used = 0;
    slots = n->slots;
    mask = cap - 1;
    for (uint32_t e = 0; e < n->count; e++) {
        uint32_t hash = (uint32_t)names_id_hash(n, &n->items[e]);
        size_t i = hash & mask;

        for (size_t run = 0; slots[i].head != NAMES_NONE; i = (i + 1) & mask) {
            if (++run > NAMES_PROBE_MAX)
                return names_check_ids_sorted(n);
            n->tries++;
            if (slots[i].hash == hash && names_cmp_id(n, slots[i].head, e) == 0)
                return -EINVAL;
        }
        slots[i] = (struct names_slot){hash, e};
    }
    return 0;
}

/* Keeps of each entry only the offsets of its file name and of its raw id
 * (names_item_id; not with a loader), and gives back what settling used.
 * 0 or -ENOMEM, and then nothing has changed. */
static int names_keep_names(struct names *n)
{
    size_t per = names_offsets_per_entry(n);
    uint32_t *names =
        bigmem_resize(NULL, (n->count ? per * n->count : 1) * sizeof(*names));
    char *text;

    if (!names)
        return -ENOMEM;
    /* The text's room beyond its bytes, up to as much again after growing
     * by doubling; an allocator that cannot even shrink it is out of
     * memory. */
    if (n->text.data && n->text.cap > n->text.len + 1) {
        text = bigmem_resize(n->text.data, n->text.len + 1);
        if (!text) {
            bigmem_free(names);
            return -ENOMEM;
        }
        n->text.data = text;
        n->text.cap = n->text.len + 1;
    }
    for (size_t e = 0; e < n->count; e++) {
        names[e] = n->items[e].name;
        if (per == 2)
            names[n->count + e] = n->items[e].rid;
    }
    names_free_work(n);
    n->names = names;
    return 0;
}

int names_finish(struct names *n)
{
    int rc = 0;

    if (n->finished || n->failed)
        return -EINVAL;
    /* Repeated ids are refused once the names are settled, when the check
     * can reuse the table of names (or sooner, by the final stage). */
    while (!rc && n->next_work.len) {
        struct names_list tmp = n->work;

        n->work = n->next_work;
        n->next_work = tmp;
        n->next_work.len = 0;
        rc = names_round(n);
    }
    if (!rc)
        rc = names_final(n);
    if (!rc)
        rc = names_check_ids(n);
    if (!rc)
        rc = names_keep_names(n);
    if (rc) {
        /* Half settled, the work is of no use. */
        names_free_work(n);
        n->failed = true;
        return rc;
    }
    n->finished = true;
    return 0;
}

const char *names_file_name(const struct names *n, size_t index, size_t *len)
{
    const char *name;

    if (!n->finished || index >= n->count)
        return NULL;
    name = n->text.data + n->names[index];
    if (len)
        *len = strlen(name);
    return name;
}

const char *names_item_id(const struct names *n, size_t index)
{
    if (!n->finished || index >= n->count || n->id_of)
        return NULL;
    return n->text.data + n->names[n->count + index];
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
        size_t len = 0;
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
    static const char id_bytes[] =
        "0123456789"
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-";
    size_t n;

    if (!name || name[0] == '-')
        return false;
    /* strspn rather than a loop testing each byte: every job of a job list
     * of 200,000 is checked, and a branch on whether each byte of a uuid
     * is a digit or a letter, mispredicted half the time, made that 40 ms
     * where strspn's table takes 11. */
    n = strspn(name, id_bytes);
    /* Every API id carries a uuid, so a name without a digit is a word
     * ("HEAD", "desktop") rather than an id. */
    return n > 0 && !name[n] && n <= NAMES_MAX_ID_LEN && strpbrk(name, "0123456789");
}
