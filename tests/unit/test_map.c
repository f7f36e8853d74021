/* Unit tests of the lookup tables (map.c) on files made by our makemap
 * (makemap_run): hash and cdb lookups with and without -N, text lists,
 * refresh after an atomic replacement, failures that must answer -1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sys/stat.h>
#include <unistd.h>

#include "makemap.h"
#include "map.h"

static char dir[] = "/tmp/jm-test-map-XXXXXX";

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *path_of(const char *name)
{
    static char buf[4][256];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

/* Runs makemap TYPE NAME with the given input; returns its exit status. */
static int build_with(const struct makemap_opts *o, const char *type, const char *name,
                      const char *input)
{
    FILE *in = fmemopen((void *)input, strlen(input), "r");
    FILE *sink = fopen("/dev/null", "w");
    assert_non_null(in);
    assert_non_null(sink);
    int rc = makemap_run("makemap", o, type, path_of(name), in, sink, sink);
    fclose(in);
    fclose(sink);
    return rc;
}

static int build(const char *type, const char *name, const char *input)
{
    struct makemap_opts o = {.comment = '#'};
    return build_with(&o, type, name, input);
}

static const char access_text[] = "# the access map\n"
                                  "Connect:192.168.1\tRELAY\n"
                                  "From:Spammer@Example.COM 554 Go away\n"
                                  "To:partner.example RELAY\n"
                                  "example.net REJECT\n";

static void open_spec(struct map **m, const char *type, const char *name)
{
    char spec[300], err[256] = "";
    snprintf(spec, sizeof spec, "%s:%s", type, path_of(name));
    *m = map_open(spec, err, sizeof err);
    if (!*m)
        fail_msg("map_open %s: %s", spec, err);
}

static void check_access_lookups(struct map *m)
{
    char v[64];
    assert_int_equal(map_lookup(m, "connect:192.168.1", v, sizeof v), 1);
    assert_string_equal(v, "RELAY");
    /* lookups fold the key; values keep their case */
    assert_int_equal(map_lookup(m, "FROM:spammer@EXAMPLE.com", v, sizeof v), 1);
    assert_string_equal(v, "554 Go away");
    assert_int_equal(map_lookup(m, "example.net", v, sizeof v), 1);
    assert_string_equal(v, "REJECT");
    assert_int_equal(map_lookup(m, "connect:192.168", v, sizeof v), 0);
    assert_int_equal(map_lookup(m, "", v, sizeof v), 0);
    assert_int_equal(map_lookup(m, "# the", v, sizeof v), 0);
}

static void lookups_of(const char *type, bool with_nul)
{
    struct makemap_opts o = {.comment = '#', .include_nul = with_nul};
    char name[32];
    snprintf(name, sizeof name, "access-%s%s", type, with_nul ? "-N" : "");
    assert_int_equal(build_with(&o, type, name, access_text), 0);
    struct map *m;
    open_spec(&m, type, name);
    check_access_lookups(m);
    map_close(m);
}

static void test_hash_lookups(void **state)
{
    (void)state;
    lookups_of("hash", false);
    lookups_of("hash", true);
}

static void test_cdb_lookups(void **state)
{
    (void)state;
    lookups_of("cdb", false);
    lookups_of("cdb", true);
}

static void test_file_names(void **state)
{
    (void)state;
    assert_int_equal(build("hash", "names", "k v\n"), 0);
    assert_int_equal(build("cdb", "names", "k v\n"), 0);
    struct stat st;
    assert_int_equal(stat(path_of("names.db"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    assert_int_equal(stat(path_of("names.cdb"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    /* "hash:X.db" names the same file as "hash:X" */
    struct map *m;
    open_spec(&m, "hash", "names.db");
    assert_string_equal(map_get_path(m), path_of("names.db"));
    assert_int_equal(map_get_type(m), MAP_HASH);
    map_close(m);

    enum map_type t;
    char path[64], err[128];
    assert_int_equal(map_parse_spec("cdb:/x/y", &t, path, sizeof path, err, sizeof err), 0);
    assert_int_equal(t, MAP_CDB);
    assert_string_equal(path, "/x/y.cdb");
    assert_int_equal(map_parse_spec("text:/x/y", &t, path, sizeof path, err, sizeof err), 0);
    assert_int_equal(t, MAP_TEXT);
    assert_string_equal(path, "/x/y");
    assert_int_equal(map_parse_spec("btree:/x", &t, path, sizeof path, err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown map type"));
    assert_int_equal(map_parse_spec("/etc/mail/access", &t, path, sizeof path, err, sizeof err),
                     -1);
    assert_int_equal(map_parse_spec("hash:", &t, path, sizeof path, err, sizeof err), -1);
}

static void test_duplicates(void **state)
{
    (void)state;
    const char *input = "k first\nk second\n";
    const char *types[] = {"hash", "cdb"};
    for (int i = 0; i < 2; i++) {
        char v[32];
        struct map *m;
        struct makemap_opts o = {.comment = '#'};
        /* default: the first value stays, and it is a data error */
        assert_int_equal(build_with(&o, types[i], "dup", input), 65);
        open_spec(&m, types[i], "dup");
        assert_int_equal(map_lookup(m, "k", v, sizeof v), 1);
        assert_string_equal(v, "first");
        map_close(m);
        o.replace = true;
        assert_int_equal(build_with(&o, types[i], "dup", input), 0);
        open_spec(&m, types[i], "dup");
        assert_int_equal(map_lookup(m, "k", v, sizeof v), 1);
        assert_string_equal(v, "second");
        map_close(m);
        o.replace = false;
        o.allow_dups = true;
        assert_int_equal(build_with(&o, types[i], "dup", input), 0);
        open_spec(&m, types[i], "dup");
        assert_int_equal(map_lookup(m, "k", v, sizeof v), 1);
        assert_string_equal(v, "first");
        map_close(m);
    }
}

struct collected {
    char text[512];
    int count;
};

static int collect(const char *key, size_t keylen, const char *value, size_t valuelen, void *arg)
{
    struct collected *c = arg;
    size_t n = strlen(c->text);
    snprintf(c->text + n, sizeof c->text - n, "%.*s=%.*s;", (int)keylen, key, (int)valuelen, value);
    c->count++;
    return 0;
}

static void test_walk(void **state)
{
    (void)state;
    struct makemap_opts o = {.comment = '#', .include_nul = true, .allow_dups = true};
    assert_int_equal(build_with(&o, "cdb", "walk", "b 2\na 1\nb 3\n"), 0);
    struct map *m;
    open_spec(&m, "cdb", "walk");
    struct collected c = {.text = ""};
    assert_int_equal(map_walk(m, collect, &c), 0);
    /* cdb keeps the input order; the NUL of -N is not passed */
    assert_string_equal(c.text, "b=2;a=1;b=3;");
    map_close(m);
}

static void test_text_map(void **state)
{
    (void)state;
    const char text[] = "# relay-domains\n"
                        "Example.COM\n"
                        "\n"
                        "  192.168.1   10.0.0 # two on a line, then a comment\n"
                        "#commented.example\n"
                        "IPv6:2001:db8:0:0\r\n";
    char err[128];
    struct map *m = map_text_from_buffer(text, sizeof text - 1, err, sizeof err);
    assert_non_null(m);
    char v[8] = "x";
    assert_int_equal(map_lookup(m, "example.com", v, sizeof v), 1);
    assert_string_equal(v, "");
    assert_int_equal(map_lookup(m, "EXAMPLE.com", v, sizeof v), 1);
    assert_int_equal(map_lookup(m, "192.168.1", v, sizeof v), 1);
    assert_int_equal(map_lookup(m, "10.0.0", v, sizeof v), 1);
    assert_int_equal(map_lookup(m, "ipv6:2001:db8:0:0", v, sizeof v), 1);
    assert_int_equal(map_lookup(m, "commented.example", v, sizeof v), 0);
    assert_int_equal(map_lookup(m, "#", v, sizeof v), 0);
    assert_int_equal(map_lookup(m, "comment", v, sizeof v), 0);
    assert_int_equal(map_lookup(m, "sub.example.com", v, sizeof v), 0);
    struct collected c = {.text = ""};
    assert_int_equal(map_walk(m, collect, &c), 0);
    assert_int_equal(c.count, 4);
    map_close(m);
}

static void test_text_bounds(void **state)
{
    (void)state;
    char err[128] = "";
    static char big[MAP_TEXT_LINE_MAX + 2];
    memset(big, 'a', MAP_TEXT_LINE_MAX);
    struct map *m = map_text_from_buffer(big, MAP_TEXT_LINE_MAX, err, sizeof err);
    assert_non_null(m);
    map_close(m);
    big[MAP_TEXT_LINE_MAX] = 'a';
    assert_null(map_text_from_buffer(big, MAP_TEXT_LINE_MAX + 1, err, sizeof err));
    assert_non_null(strstr(err, "line 1: longer than"));
    assert_null(map_text_from_buffer("a\nb\0c\n", 6, err, sizeof err));
    assert_non_null(strstr(err, "line 2: NUL"));
    assert_null(map_text_from_buffer(big, MAP_TEXT_FILE_MAX + 1, err, sizeof err));
    assert_non_null(strstr(err, "larger than"));
    m = map_text_from_buffer("", 0, err, sizeof err);
    assert_non_null(m);
    char v[4];
    assert_int_equal(map_lookup(m, "a", v, sizeof v), 0);
    map_close(m);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void test_text_file_refresh(void **state)
{
    (void)state;
    write_file(path_of("relay-domains"), "one.example\n");
    char spec[300], err[256] = "";
    snprintf(spec, sizeof spec, "text:%s", path_of("relay-domains"));
    struct map *m = NULL;
    assert_int_equal(map_refresh(&m, spec, err, sizeof err), 1);
    assert_non_null(m);
    char v[4];
    assert_int_equal(map_lookup(m, "one.example", v, sizeof v), 1);
    assert_int_equal(map_refresh(&m, spec, err, sizeof err), 0);
    /* an edit in place (longer file) is seen too */
    write_file(path_of("relay-domains"), "two.example\nthree.example\n");
    assert_int_equal(map_refresh(&m, spec, err, sizeof err), 1);
    assert_int_equal(map_lookup(m, "one.example", v, sizeof v), 0);
    assert_int_equal(map_lookup(m, "three.example", v, sizeof v), 1);
    map_close(m);
}

static void test_refresh_after_makemap(void **state)
{
    (void)state;
    const char *types[] = {"hash", "cdb"};
    for (int i = 0; i < 2; i++) {
        char spec[300], err[256] = "", v[32];
        snprintf(spec, sizeof spec, "%s:%s", types[i], path_of("live"));
        assert_int_equal(build(types[i], "live", "k old\n"), 0);
        struct map *m = NULL;
        assert_int_equal(map_refresh(&m, spec, err, sizeof err), 1);
        struct map *before = m;
        assert_int_equal(map_refresh(&m, spec, err, sizeof err), 0);
        assert_ptr_equal(m, before);
        assert_int_equal(build(types[i], "live", "k new\nextra 1\n"), 0);
        /* until refreshed, the open table is the old file, whole */
        assert_int_equal(map_lookup(m, "k", v, sizeof v), 1);
        assert_string_equal(v, "old");
        assert_int_equal(map_lookup(m, "extra", v, sizeof v), 0);
        assert_int_equal(map_refresh(&m, spec, err, sizeof err), 1);
        assert_int_equal(map_lookup(m, "k", v, sizeof v), 1);
        assert_string_equal(v, "new");
        assert_int_equal(map_lookup(m, "extra", v, sizeof v), 1);
        map_close(m);
    }
}

static void test_refresh_keeps_old_table(void **state)
{
    (void)state;
    char spec[300], err[256] = "", v[32];
    snprintf(spec, sizeof spec, "hash:%s", path_of("keep"));
    assert_int_equal(build("hash", "keep", "k v1\n"), 0);
    struct map *m = NULL;
    assert_int_equal(map_refresh(&m, spec, err, sizeof err), 1);
    /* a broken file renamed into place: reported once, the old table stays */
    write_file(path_of("keep.tmp"), "this is not a database, it is text\n");
    assert_int_equal(rename(path_of("keep.tmp"), path_of("keep.db")), 0);
    err[0] = '\0';
    assert_int_equal(map_refresh(&m, spec, err, sizeof err), -1);
    assert_non_null(strstr(err, "keeping the table loaded before"));
    assert_non_null(m);
    assert_int_equal(map_lookup(m, "k", v, sizeof v), 1);
    assert_string_equal(v, "v1");
    assert_int_equal(map_refresh(&m, spec, err, sizeof err), 0);
    /* the file removed: the same */
    assert_int_equal(unlink(path_of("keep.db")), 0);
    assert_int_equal(map_refresh(&m, spec, err, sizeof err), -1);
    assert_int_equal(map_refresh(&m, spec, err, sizeof err), 0);
    assert_int_equal(map_lookup(m, "k", v, sizeof v), 1);
    /* a good file again is taken */
    assert_int_equal(build("hash", "keep", "k v2\n"), 0);
    assert_int_equal(map_refresh(&m, spec, err, sizeof err), 1);
    assert_int_equal(map_lookup(m, "k", v, sizeof v), 1);
    assert_string_equal(v, "v2");
    /* another spec replaces the table */
    assert_int_equal(build("cdb", "keep", "k v3\n"), 0);
    snprintf(spec, sizeof spec, "cdb:%s", path_of("keep"));
    assert_int_equal(map_refresh(&m, spec, err, sizeof err), 1);
    assert_int_equal(map_lookup(m, "k", v, sizeof v), 1);
    assert_string_equal(v, "v3");
    map_close(m);
}

static void test_unreadable(void **state)
{
    (void)state;
    char err[256] = "", v[8];
    /* never opened: every lookup is a temporary failure */
    assert_int_equal(map_lookup(NULL, "k", v, sizeof v), -1);
    assert_string_equal(map_error(NULL), "no table loaded");
    char spec[300];
    snprintf(spec, sizeof spec, "hash:%s", path_of("missing"));
    assert_null(map_open(spec, err, sizeof err));
    assert_non_null(strstr(err, "missing.db"));
    struct map *m = NULL;
    assert_int_equal(map_refresh(&m, spec, err, sizeof err), -1);
    assert_null(m);
    assert_int_equal(map_lookup(m, "k", v, sizeof v), -1);
    /* not a map of its type */
    write_file(path_of("garbage.db"), "garbage\n");
    write_file(path_of("garbage.cdb"), "xy");
    snprintf(spec, sizeof spec, "hash:%s", path_of("garbage"));
    assert_null(map_open(spec, err, sizeof err));
    snprintf(spec, sizeof spec, "cdb:%s", path_of("garbage"));
    assert_null(map_open(spec, err, sizeof err));
    /* a directory */
    snprintf(spec, sizeof spec, "text:%s", dir);
    assert_null(map_open(spec, err, sizeof err));
    snprintf(spec, sizeof spec, "cdb:%s.cdb", dir);
    mkdir(path_of("d.cdb"), 0700);
    snprintf(spec, sizeof spec, "cdb:%s", path_of("d"));
    assert_null(map_open(spec, err, sizeof err));
    /* a mode-000 file, when not root (root reads it anyway) */
    write_file(path_of("closed"), "a\n");
    chmod(path_of("closed"), 0);
    snprintf(spec, sizeof spec, "text:%s", path_of("closed"));
    m = map_open(spec, err, sizeof err);
    assert_true(geteuid() == 0 ? m != NULL : m == NULL);
    map_close(m);
}

static void test_value_too_long(void **state)
{
    (void)state;
    assert_int_equal(build("hash", "long", "k 0123456789\n"), 0);
    struct map *m;
    open_spec(&m, "hash", "long");
    char v[10];
    assert_int_equal(map_lookup(m, "k", v, sizeof v), -1);
    assert_non_null(strstr(map_error(m), "value longer than 9"));
    char w[11];
    assert_int_equal(map_lookup(m, "k", w, sizeof w), 1);
    assert_string_equal(map_error(m), "");
    /* a key longer than any stored one is simply not there */
    static char key[MAP_KEY_MAX + 2];
    memset(key, 'k', MAP_KEY_MAX + 1);
    assert_int_equal(map_lookup(m, key, w, sizeof w), 0);
    map_close(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_lookups),
        cmocka_unit_test(test_cdb_lookups),
        cmocka_unit_test(test_file_names),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_walk),
        cmocka_unit_test(test_text_map),
        cmocka_unit_test(test_text_bounds),
        cmocka_unit_test(test_text_file_refresh),
        cmocka_unit_test(test_refresh_after_makemap),
        cmocka_unit_test(test_refresh_keeps_old_table),
        cmocka_unit_test(test_unreadable),
        cmocka_unit_test(test_value_too_long),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
