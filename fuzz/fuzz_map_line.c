/* libFuzzer target: the parsers of table files.
 *
 * The input is read two ways:
 *   1. as makemap input: the first byte picks the options (-f, -e, -t c,
 *      -D c), the rest is cut into lines by makemap_read_line() and each line
 *      goes through makemap_parse_line(); the entry it gives must lie inside
 *      the line, be NUL-terminated, have no separator in the key, a folded
 *      key unless -f, and no value only with -e;
 *   2. as a text map (relay-domains): every member found by map_walk() must
 *      be found again by map_lookup(), in upper case too.
 * abort() on any broken invariant. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "makemap.h"
#include "map.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static void check_entry(const struct makemap_opts *o, const char *line, size_t len,
                        const struct makemap_entry *e)
{
    CHECK(e->key == line);
    CHECK(e->keylen > 0 && e->keylen <= len && strlen(e->key) == e->keylen);
    CHECK(e->value >= line + e->keylen && e->value + e->valuelen <= line + len);
    CHECK(strlen(e->value) == e->valuelen);
    CHECK(e->valuelen > 0 || o->allow_empty);
    for (size_t i = 0; i < e->keylen; i++) {
        char c = e->key[i];
        CHECK(o->sep ? c != o->sep : !(c == ' ' || c == '\t'));
        CHECK(o->keep_case || !(c >= 'A' && c <= 'Z'));
    }
}

static void parse_lines(const uint8_t *data, size_t size)
{
    if (size == 0)
        return;
    struct makemap_opts o = {.comment = '#'};
    uint8_t pick = data[0];
    o.keep_case = pick & 1;
    o.allow_empty = pick & 2;
    if (pick & 4)
        o.sep = ':';
    if (pick & 8)
        o.comment = ';';
    FILE *in = fmemopen((void *)(data + 1), size - 1 ? size - 1 : 1, "r");
    if (!in)
        return;
    char line[MAKEMAP_LINE_MAX + 2];
    size_t len;
    int rc;
    while ((rc = makemap_read_line(in, line, sizeof line, &len)) != 0) {
        CHECK(rc == 1 || rc == -2);
        if (rc != 1)
            continue;
        CHECK(len <= MAKEMAP_LINE_MAX);
        struct makemap_entry e;
        if (makemap_parse_line(&o, line, len, &e) == MAKEMAP_ENTRY)
            check_entry(&o, line, len, &e);
    }
    fclose(in);
}

static int relookup(const char *key, size_t keylen, const char *value, size_t valuelen, void *arg)
{
    struct map *m = arg;
    (void)value;
    CHECK(valuelen == 0 && keylen > 0 && keylen <= MAP_TEXT_LINE_MAX && strlen(key) == keylen);
    char upper[MAP_TEXT_LINE_MAX + 1], v[4];
    for (size_t i = 0; i <= keylen; i++)
        upper[i] = (key[i] >= 'a' && key[i] <= 'z') ? (char)(key[i] - 'a' + 'A') : key[i];
    CHECK(map_lookup(m, key, v, sizeof v) == 1);
    CHECK(map_lookup(m, upper, v, sizeof v) == 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parse_lines(data, size);
    char err[256];
    struct map *m = map_text_from_buffer((const char *)data, size, err, sizeof err);
    if (m) {
        CHECK(map_walk(m, relookup, m) == 0);
        map_close(m);
    }
    return 0;
}
