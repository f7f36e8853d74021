/* map.c - lookup tables over Berkeley DB hash files, tinycdb files and text
 * lists (see map.h). Each table holds the descriptor of the file it read, so
 * a file renamed over it never changes a table in use; map_refresh() swaps in
 * a new table only once it has been opened completely. */
#include "map.h"
#include "err.h"

#include <cdb.h>
#include <db.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAP_SPEC_MAX (PATH_MAX + 16)
#define MAP_ERR_MAX 256

/* What identifies the file a table was read from: when any of it changes,
 * the table is read again. */
struct file_sig {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
};

struct text_set {
    char **words; /* sorted, lower case */
    size_t count;
    char *storage; /* the words, NUL-separated */
};

struct map {
    enum map_type type;
    char spec[MAP_SPEC_MAX];
    char path[PATH_MAX];
    struct file_sig sig;
    bool failed_change_reported;
    struct file_sig failed_sig;
    char error[MAP_ERR_MAX];
    DB *db;         /* MAP_HASH */
    struct cdb cdb; /* MAP_CDB */
    int fd;         /* MAP_CDB */
    struct text_set text;
};

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int map_parse_spec(const char *spec, enum map_type *type, char *path, size_t pathlen, char *err,
                   size_t errlen)
{
    static const struct {
        const char *prefix;
        enum map_type type;
        const char *suffix;
    } types[] = {
        {"hash:", MAP_HASH, ".db"},
        {"cdb:", MAP_CDB, ".cdb"},
        {"text:", MAP_TEXT, ""},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        size_t plen = strlen(types[i].prefix);
        if (strncmp(spec, types[i].prefix, plen) != 0)
            continue;
        const char *file = spec + plen;
        if (!*file) {
            err_set(err, errlen, "%s: no file name", spec);
            return -1;
        }
        const char *suffix = ends_with(file, types[i].suffix) ? "" : types[i].suffix;
        int n = snprintf(path, pathlen, "%s%s", file, suffix);
        if (n < 0 || (size_t)n >= pathlen) {
            err_set(err, errlen, "%s: file name too long", spec);
            return -1;
        }
        *type = types[i].type;
        return 0;
    }
    err_set(err, errlen, "%s: unknown map type (use hash:, cdb: or text:)", spec);
    return -1;
}

static void sig_from_stat(struct file_sig *sig, const struct stat *st)
{
    *sig = (struct file_sig){.dev = st->st_dev,
                             .ino = st->st_ino,
                             .size = st->st_size,
                             .mtime = st->st_mtim,
                             .ctime = st->st_ctim};
}

static bool sig_equal(const struct file_sig *a, const struct file_sig *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

static void lower_ascii(char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 'A' && s[i] <= 'Z')
            s[i] = (char)(s[i] - 'A' + 'a');
}

/* ---------------------------------------------------------------- text maps */

static int cmp_words(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Copies the words of buf into set->storage, NUL-separated, lower case,
 * comments dropped; counts them. -1 on a line over the bound. */
static int text_collect(struct text_set *set, const char *buf, size_t len, char *err, size_t errlen)
{
    size_t out = 0, line = 1, line_start = 0;
    bool in_comment = false, in_word = false;
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? buf[i] : '\n';
        if (c == '\n' || c == '\0') {
            if (i - line_start > MAP_TEXT_LINE_MAX) {
                err_set(err, errlen, "line %zu: longer than %d bytes", line, MAP_TEXT_LINE_MAX);
                return -1;
            }
            if (c == '\0') {
                err_set(err, errlen, "line %zu: NUL byte", line);
                return -1;
            }
            line++;
            line_start = i + 1;
            in_comment = false;
        }
        if (in_comment)
            continue;
        if (c == '\n' || is_blank(c)) {
            if (in_word)
                set->storage[out++] = '\0';
            in_word = false;
            continue;
        }
        if (!in_word && c == '#') {
            in_comment = true;
            continue;
        }
        if (!in_word)
            set->count++;
        in_word = true;
        set->storage[out++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    return 0;
}

static int text_parse(struct text_set *set, const char *buf, size_t len, char *err, size_t errlen)
{
    if (len > MAP_TEXT_FILE_MAX) {
        err_set(err, errlen, "larger than %u bytes", MAP_TEXT_FILE_MAX);
        return -1;
    }
    *set = (struct text_set){0};
    set->storage = malloc(len + 1);
    if (!set->storage) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    if (text_collect(set, buf, len, err, errlen) < 0)
        return -1;
    set->words = calloc(set->count ? set->count : 1, sizeof *set->words);
    if (!set->words) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    char *p = set->storage;
    for (size_t i = 0; i < set->count; i++) {
        set->words[i] = p;
        p += strlen(p) + 1;
    }
    qsort(set->words, set->count, sizeof *set->words, cmp_words);
    return 0;
}

static void text_free(struct text_set *set)
{
    free(set->words);
    free(set->storage);
    *set = (struct text_set){0};
}

static int read_bounded(int fd, char **out, size_t *outlen, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        err_set(err, errlen, "fstat: %s", strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        err_set(err, errlen, "not a regular file");
        return -1;
    }
    if (st.st_size > (off_t)MAP_TEXT_FILE_MAX) {
        err_set(err, errlen, "larger than %u bytes", MAP_TEXT_FILE_MAX);
        return -1;
    }
    /* One byte more than the bound: a file that grew since fstat is caught. */
    char *buf = malloc(MAP_TEXT_FILE_MAX + 1);
    if (!buf) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, MAP_TEXT_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err_set(err, errlen, "read: %s", strerror(errno));
            free(buf);
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > MAP_TEXT_FILE_MAX) {
            err_set(err, errlen, "larger than %u bytes", MAP_TEXT_FILE_MAX);
            free(buf);
            return -1;
        }
    }
    *out = buf;
    *outlen = len;
    return 0;
}

static int text_open(struct map *m, char *err, size_t errlen)
{
    int fd = open(m->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        err_set(err, errlen, "%s: %s", m->path, strerror(errno));
        return -1;
    }
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    char why[MAP_ERR_MAX] = "";
    int rc = -1;
    if (fstat(fd, &st) == 0 && read_bounded(fd, &buf, &len, why, sizeof why) == 0 &&
        text_parse(&m->text, buf, len, why, sizeof why) == 0) {
        sig_from_stat(&m->sig, &st);
        rc = 0;
    }
    if (rc < 0) {
        text_free(&m->text);
        err_set(err, errlen, "%s: %s", m->path, why[0] ? why : strerror(errno));
    }
    free(buf);
    close(fd);
    return rc;
}

static int text_lookup(struct map *m, const char *key, char *value, size_t valuelen)
{
    char folded[MAP_KEY_MAX + 1];
    size_t n = strlen(key);
    if (n > MAP_KEY_MAX)
        return 0;
    memcpy(folded, key, n + 1);
    lower_ascii(folded, n);
    const char *k = folded;
    if (!bsearch(&k, m->text.words, m->text.count, sizeof *m->text.words, cmp_words))
        return 0;
    if (valuelen)
        value[0] = '\0';
    return 1;
}

/* ---------------------------------------------------------------- hash maps */

static void db_quiet(const DB_ENV *env, const char *prefix, const char *msg)
{
    /* Berkeley DB's messages would go to stderr; the return code says what
     * went wrong and the caller logs it. */
    (void)env;
    (void)prefix;
    (void)msg;
}

static int hash_open(struct map *m, char *err, size_t errlen)
{
    int rc = db_create(&m->db, NULL, 0);
    if (rc != 0) {
        err_set(err, errlen, "%s: db_create: %s", m->path, db_strerror(rc));
        m->db = NULL;
        return -1;
    }
    m->db->set_errcall(m->db, db_quiet);
    rc = m->db->open(m->db, NULL, m->path, NULL, DB_HASH, DB_RDONLY, 0);
    int fd = -1;
    struct stat st;
    if (rc == 0 && (rc = m->db->fd(m->db, &fd)) == 0 && fstat(fd, &st) < 0)
        rc = errno;
    if (rc != 0) {
        err_set(err, errlen, "%s: %s", m->path, db_strerror(rc));
        m->db->close(m->db, 0);
        m->db = NULL;
        return -1;
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    sig_from_stat(&m->sig, &st);
    return 0;
}

/* Copies a stored value out, dropping the trailing NUL of makemap -N. */
static int copy_value(struct map *m, const void *data, size_t len, char *value, size_t valuelen)
{
    if (len && ((const char *)data)[len - 1] == '\0')
        len--;
    if (len >= valuelen) {
        err_set(m->error, sizeof m->error, "%s: value longer than %zu bytes", m->path,
                valuelen ? valuelen - 1 : 0);
        return -1;
    }
    memcpy(value, data, len);
    value[len] = '\0';
    return 1;
}

/* key holds klen bytes and a NUL after them: the NUL form is klen + 1. */
static int hash_get(struct map *m, char *key, size_t klen, char *value, size_t valuelen)
{
    for (int with_nul = 0; with_nul <= 1; with_nul++) {
        DBT k = {.data = key, .size = (u_int32_t)(klen + (size_t)with_nul)};
        DBT v = {0};
        int rc = m->db->get(m->db, NULL, &k, &v, 0);
        if (rc == 0)
            return copy_value(m, v.data, v.size, value, valuelen);
        if (rc != DB_NOTFOUND) {
            err_set(m->error, sizeof m->error, "%s: %s", m->path, db_strerror(rc));
            return -1;
        }
    }
    return 0;
}

static int hash_walk(struct map *m, map_walk_fn fn, void *arg)
{
    DBC *cursor;
    int rc = m->db->cursor(m->db, NULL, &cursor, 0);
    if (rc != 0) {
        err_set(m->error, sizeof m->error, "%s: cursor: %s", m->path, db_strerror(rc));
        return -1;
    }
    int result = 0;
    for (;;) {
        DBT k = {0}, v = {0};
        rc = cursor->get(cursor, &k, &v, DB_NEXT);
        if (rc == DB_NOTFOUND)
            break;
        if (rc != 0) {
            err_set(m->error, sizeof m->error, "%s: %s", m->path, db_strerror(rc));
            result = -1;
            break;
        }
        size_t kl = k.size, vl = v.size;
        if (kl && ((char *)k.data)[kl - 1] == '\0')
            kl--;
        if (vl && ((char *)v.data)[vl - 1] == '\0')
            vl--;
        if ((result = fn(k.data, kl, v.data, vl, arg)) != 0)
            break;
    }
    cursor->close(cursor);
    return result;
}

/* ----------------------------------------------------------------- cdb maps */

static int cdb_open_file(struct map *m, char *err, size_t errlen)
{
    m->fd = open(m->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (m->fd < 0) {
        err_set(err, errlen, "%s: %s", m->path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(m->fd, &st) < 0 || !S_ISREG(st.st_mode) || cdb_init(&m->cdb, m->fd) < 0) {
        err_set(err, errlen, "%s: %s", m->path,
                S_ISREG(st.st_mode) ? "not a cdb file" : "not a regular file");
        close(m->fd);
        m->fd = -1;
        return -1;
    }
    sig_from_stat(&m->sig, &st);
    return 0;
}

static int cdbmap_get(struct map *m, char *key, size_t klen, char *value, size_t valuelen)
{
    for (int with_nul = 0; with_nul <= 1; with_nul++) {
        int rc = cdb_find(&m->cdb, key, (unsigned)(klen + (size_t)with_nul));
        if (rc < 0) {
            err_set(m->error, sizeof m->error, "%s: corrupt cdb file", m->path);
            return -1;
        }
        if (rc > 0)
            return copy_value(m, cdb_getdata(&m->cdb), cdb_datalen(&m->cdb), value, valuelen);
    }
    return 0;
}

static int cdb_walk(struct map *m, map_walk_fn fn, void *arg)
{
    unsigned pos;
    cdb_seqinit(&pos, &m->cdb);
    int rc;
    while ((rc = cdb_seqnext(&pos, &m->cdb)) > 0) {
        const char *k = cdb_getkey(&m->cdb), *v = cdb_getdata(&m->cdb);
        size_t kl = cdb_keylen(&m->cdb), vl = cdb_datalen(&m->cdb);
        if (kl && k[kl - 1] == '\0')
            kl--;
        if (vl && v[vl - 1] == '\0')
            vl--;
        int result = fn(k, kl, v, vl, arg);
        if (result != 0)
            return result;
    }
    if (rc < 0) {
        err_set(m->error, sizeof m->error, "%s: corrupt cdb file", m->path);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ the interface */

struct map *map_open(const char *spec, char *err, size_t errlen)
{
    if (strlen(spec) >= MAP_SPEC_MAX) {
        err_set(err, errlen, "map spec too long");
        return NULL;
    }
    struct map *m = calloc(1, sizeof *m);
    if (!m) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    m->fd = -1;
    strcpy(m->spec, spec);
    if (map_parse_spec(spec, &m->type, m->path, sizeof m->path, err, errlen) < 0) {
        free(m);
        return NULL;
    }
    int rc;
    switch (m->type) {
    case MAP_HASH:
        rc = hash_open(m, err, errlen);
        break;
    case MAP_CDB:
        rc = cdb_open_file(m, err, errlen);
        break;
    case MAP_TEXT:
    default:
        rc = text_open(m, err, errlen);
        break;
    }
    if (rc < 0) {
        free(m);
        return NULL;
    }
    return m;
}

struct map *map_text_from_buffer(const char *buf, size_t len, char *err, size_t errlen)
{
    struct map *m = calloc(1, sizeof *m);
    if (!m) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    m->fd = -1;
    m->type = MAP_TEXT;
    strcpy(m->spec, "text:-");
    strcpy(m->path, "-");
    if (text_parse(&m->text, buf, len, err, errlen) < 0) {
        text_free(&m->text);
        free(m);
        return NULL;
    }
    return m;
}

int map_lookup(struct map *m, const char *key, char *value, size_t valuelen)
{
    if (!m)
        return -1;
    m->error[0] = '\0';
    if (m->type == MAP_TEXT)
        return text_lookup(m, key, value, valuelen);
    /* Room for the key, folded, and the NUL that the -N form includes. */
    char folded[MAP_KEY_MAX + 1];
    size_t klen = strlen(key);
    if (klen > MAP_KEY_MAX)
        return 0; /* makemap never stores such a key */
    memcpy(folded, key, klen + 1);
    lower_ascii(folded, klen);
    if (m->type == MAP_HASH)
        return hash_get(m, folded, klen, value, valuelen);
    return cdbmap_get(m, folded, klen, value, valuelen);
}

const char *map_error(const struct map *m)
{
    return m ? m->error : "no table loaded";
}

int map_walk(struct map *m, map_walk_fn fn, void *arg)
{
    if (!m)
        return -1;
    m->error[0] = '\0';
    switch (m->type) {
    case MAP_HASH:
        return hash_walk(m, fn, arg);
    case MAP_CDB:
        return cdb_walk(m, fn, arg);
    case MAP_TEXT:
    default:
        for (size_t i = 0; i < m->text.count; i++) {
            int rc = fn(m->text.words[i], strlen(m->text.words[i]), "", 0, arg);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
}

/* A change that could not be loaded is reported once: the same file seen
 * again (same signature) is retried quietly. */
static int refresh_failed(struct map *old, const struct file_sig *seen, bool have_sig)
{
    if (!old || !have_sig)
        return -1;
    if (old->failed_change_reported && sig_equal(&old->failed_sig, seen))
        return 0;
    old->failed_change_reported = true;
    old->failed_sig = *seen;
    return -1;
}

int map_refresh(struct map **m, const char *spec, char *err, size_t errlen)
{
    struct map *old = *m;
    struct file_sig seen = {0};
    bool have_sig = false;
    if (old && strcmp(old->spec, spec) == 0) {
        struct stat st;
        if (stat(old->path, &st) == 0) {
            sig_from_stat(&seen, &st);
            have_sig = true;
            if (sig_equal(&seen, &old->sig))
                return 0;
        } else {
            /* Gone or unreachable: keep the table we have, say so once. */
            seen = (struct file_sig){.size = -1};
            have_sig = true;
            err_set(err, errlen, "%s: %s (keeping the table loaded before)", old->path,
                    strerror(errno));
            int rc = refresh_failed(old, &seen, have_sig);
            if (rc == 0 && err && errlen)
                err[0] = '\0';
            return rc;
        }
    }
    char why[MAP_ERR_MAX];
    struct map *fresh = map_open(spec, why, sizeof why);
    if (!fresh) {
        err_set(err, errlen, "%s%s", why, old ? " (keeping the table loaded before)" : "");
        int rc = refresh_failed(old, &seen, have_sig);
        if (rc == 0 && err && errlen)
            err[0] = '\0';
        return rc;
    }
    map_close(old);
    *m = fresh;
    return 1;
}

enum map_type map_get_type(const struct map *m)
{
    return m->type;
}

const char *map_get_spec(const struct map *m)
{
    return m->spec;
}

const char *map_get_path(const struct map *m)
{
    return m->path;
}

void map_close(struct map *m)
{
    if (!m)
        return;
    if (m->db)
        m->db->close(m->db, 0);
    if (m->fd >= 0) {
        cdb_free(&m->cdb);
        close(m->fd);
    }
    text_free(&m->text);
    free(m);
}
