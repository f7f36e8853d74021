/* map.h - lookup tables: one interface over Berkeley DB hash maps (files made
 * by makemap, ours or sendmail's), tinycdb maps and plain text lists
 * (relay-domains, local-host-names).
 *
 * A table is named by a spec "TYPE:PATH":
 *   hash:/etc/mail/access   -> /etc/mail/access.db  (".db" added unless there)
 *   cdb:/etc/mail/access    -> /etc/mail/access.cdb (".cdb" added unless there)
 *   text:/etc/mail/relay-domains -> the file itself
 *
 * Lookups fold the key to lower case (ASCII), as sendmail does for the access
 * map; hash and cdb keys are tried without, then with a trailing NUL, so maps
 * made with and without makemap -N both work. A text map is a set: every
 * white-space separated word of a line is a member, a word starting with '#'
 * starts a comment up to the end of the line; lookup is membership.
 *
 * An open map keeps the file it opened (its descriptor) until it is closed or
 * refreshed: a makemap that renames a new file into place never leaves a
 * reader with half a table, and a reader keeps its table until the new one
 * has been loaded. Open maps before fork or in the process that uses them;
 * a map is not shared between threads. */
#ifndef JM_MAP_H
#define JM_MAP_H

#include <stddef.h>

/* Bounds: keys and values as makemap writes them (one input line), and the
 * text files (line length, file size). */
#define MAP_KEY_MAX 1024
#define MAP_VALUE_MAX 1024
#define MAP_TEXT_LINE_MAX 1024
#define MAP_TEXT_FILE_MAX (4u << 20)

enum map_type { MAP_HASH, MAP_CDB, MAP_TEXT };

struct map;

/* Splits a spec into its type and the path of the file it reads (with the
 * ".db"/".cdb" suffix added). 0, or -1 with a reason in err. */
int map_parse_spec(const char *spec, enum map_type *type, char *path, size_t pathlen, char *err,
                   size_t errlen);

/* Opens the table named by spec. NULL with a reason in err when the spec is
 * wrong or the file cannot be opened and read. */
struct map *map_open(const char *spec, char *err, size_t errlen);

/* Looks key up: 1 found (the value, NUL-terminated, in value; "" for a text
 * map), 0 not found, -1 temporary failure (no table, a read error, a value
 * longer than valuelen - 1): the caller answers 451 4.3.0 and logs
 * map_error(). A NULL map (never opened) answers -1. */
int map_lookup(struct map *m, const char *key, char *value, size_t valuelen);

/* The reason of the last -1 of map_lookup or map_walk ("" if none). */
const char *map_error(const struct map *m);

/* Brings *m up to date with spec, cheaply (one stat(2)): when *m is NULL, or
 * spec differs from the one *m was opened with, or the file's device, inode,
 * size, mtime or ctime changed, the table is opened again and replaces *m.
 * Returns 0 when nothing changed, 1 when a new table is in force, -1 (reason
 * in err) when a change could not be loaded: *m then stays as it was (the old
 * table stays in force, or NULL). A change that failed is tried again, but
 * reported (-1) once only, until the file changes again. */
int map_refresh(struct map **m, const char *spec, char *err, size_t errlen);

/* Calls fn for every entry (text maps: value "" of length 0), in the
 * table's order; a trailing NUL of hash/cdb keys and values (makemap -N) is
 * not passed. Stops when fn returns non-zero and returns that; -1 on a read
 * error (map_error()). */
typedef int (*map_walk_fn)(const char *key, size_t keylen, const char *value, size_t valuelen,
                           void *arg);
int map_walk(struct map *m, map_walk_fn fn, void *arg);

/* A text map parsed from memory (the parser of text maps, for tests and the
 * fuzzer); spec and path are "text:-" and "-", it never refreshes. NULL with
 * a reason when the text breaks a bound (line length, size). */
struct map *map_text_from_buffer(const char *buf, size_t len, char *err, size_t errlen);

enum map_type map_get_type(const struct map *m);
const char *map_get_spec(const struct map *m);
/* The file the table was read from. */
const char *map_get_path(const struct map *m);

void map_close(struct map *m);

#endif
