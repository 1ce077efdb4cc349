/*
 * names — turning the API's names into safe, unique file names.
 *
 * Pure functions: no I/O, no global state, safe from any thread. The API's
 * item names are hostile (slashes, control characters, "." and "..", empty,
 * over 255 bytes, repeated); this module maps them to names a Unix directory
 * can hold, deterministically, so that the same set of items always yields
 * the same names whatever order the API returned them in. The five rules are
 * in doc/naming.md.
 */
#ifndef BATCHFS_NAMES_H
#define BATCHFS_NAMES_H

#include <stdbool.h>
#include <stddef.h>

#include "batchfs/buf.h"

/* Longest file name the mapping produces, in bytes (NAME_MAX). */
#define NAMES_MAX_LEN 255

/* Longest id accepted by names_is_id(). */
#define NAMES_MAX_ID_LEN 128

struct names_entry {
    const char *item_id;   /* borrowed; may hold any bytes, including NUL */
    size_t item_id_len;
    const char *item_name; /* borrowed; may be NULL (treated as empty) */
    size_t item_name_len;
    char *file_name;       /* out: NUL-terminated, owned by the caller */
};

/*
 * The names of one folder, built entry by entry as its pages arrive, so
 * that most of the work is done while later pages are still on their way:
 * names_new, names_add for each entry, names_finish, then names_file_name.
 * One object belongs to one thread at a time.
 */
struct names;

/* A folder whose names end in `suffix` (e.g. ".json"; at most 16 bytes).
 * NULL with *err set to -EINVAL (bad suffix) or -ENOMEM. */
struct names *names_new(const char *suffix, int *err);

/*
 * Adds the next entry (index: the number of entries added before it). The
 * bytes are copied. 0, -EINVAL (a NULL pointer with a length, or after
 * names_finish) or -ENOMEM, and then the entry is not added.
 */
int names_add(struct names *n, const char *item_id, size_t item_id_len, const char *item_name,
              size_t item_name_len);

/* Makes room for `count` entries in all, when a listing says how many are
 * coming, so that the room does not grow (and move) step by step. A hint:
 * 0 or -ENOMEM, and then nothing is lost. */
int names_expect(struct names *n, size_t count);

/*
 * Appends to `out` the raw id entry `index` was added with (the same bytes
 * names_add was given): 0 or a negative errno.
 */
typedef int (*names_id_fn)(void *arg, size_t index, struct buf *out);

/*
 * Before the first names_add: the folder keeps no id but those a name
 * shows at once (rules 2 and 4), and loads the others with id_of when
 * their entries collide, in the order of the entries (a folder of a
 * million items then holds no id an item while it is named; those ids are
 * in its pages). The caller promises distinct ids (names_finish does not
 * check them, and names_item_id gives NULL); names_finish fails with
 * id_of's error. 0, or -EINVAL once an entry was added.
 */
int names_ids_on_demand(struct names *n, names_id_fn id_of, void *arg);

/* How many ids names_ids_on_demand's loader was asked for. For tests and
 * statistics; safe on NULL. */
size_t names_ids_loaded(const struct names *n);

/* Settles the collisions, and gives back the room only settling needs.
 * 0, -EINVAL (two entries share an id, or called twice) or -ENOMEM; on
 * error no name is given out, and the folder can only be freed. */
int names_finish(struct names *n);

/* After names_finish: the file name of entry `index` (NUL-terminated; its
 * length in *len unless NULL), valid until names_free. NULL before, or when
 * there is no such entry. */
const char *names_file_name(const struct names *n, size_t index, size_t *len);

/* The bytes the folder holds now (room made ahead included), for a
 * memory budget: its strings, and until names_finish its work to settle
 * them. Safe on NULL (0). */
size_t names_footprint(const struct names *n);

/* After names_finish: the bytes of the id entry `index` was added with (as
 * many as names_add was given; not NUL-terminated), valid until
 * names_free, so that the caller need keep no copy. NULL before, when
 * there is no such entry, or when ids are loaded on demand. */
const char *names_item_id(const struct names *n, size_t index);

/* The steps settling took beyond one an entry: candidate names tried
 * beyond each entry's plain name, and table slots probed to check that no
 * two ids are equal. A few an entry, however many entries share a name or
 * the hash of their ids. For tests and statistics; safe on NULL. */
size_t names_steps(const struct names *n);

/* Frees the folder and its names. Safe on NULL. */
void names_free(struct names *n);

/*
 * All at once: assigns entries[i].file_name for every entry of one folder, each ending in
 * `suffix` (e.g. ".json"; at most 16 bytes). Item ids must be distinct within
 * the call (callers drop repeated ids first); names come out unique, free of
 * '/' and control characters, never "." or "..", at most NAMES_MAX_LEN bytes.
 * Returns 0, -EINVAL (repeated ids, bad suffix) or -ENOMEM; on error no
 * file_name is left allocated.
 */
int names_assign(struct names_entry *entries, size_t count, const char *suffix);

/*
 * Naming rule 1 on `len` bytes of `in`, written to `out` (`len` bytes, no
 * terminator added): every '/', control character (0x00-0x1F, 0x7F) and
 * byte of an ill-formed UTF-8 sequence becomes '_'. True when nothing was
 * replaced. `in` and `out` must not overlap.
 */
bool names_sanitise(const char *in, size_t len, char *out);

/*
 * The folder a value groups jobs under in by-status/ and by-type/: `value`
 * (len bytes, any bytes, NULs included) after rule 1, NUL-terminated in
 * `out` (`size` bytes). False when it can name no folder: empty, "." or
 * "..", or longer than NAMES_MAX_LEN or than `out` allows.
 */
bool names_group(const char *value, size_t len, char *out, size_t size);

/*
 * True when `name` (NUL-terminated) is shaped like an API id: 1 to
 * NAMES_MAX_ID_LEN bytes of [A-Za-z0-9_-], not starting with '-', with at
 * least one digit (ids carry a uuid). Names that
 * are not ids ("HEAD", ".git", "foo?x=1") can be answered ENOENT without
 * asking the API.
 */
bool names_is_id(const char *name);

#endif
