/* makemap.c - sendmail's makemap: "key value" lines on standard input into a
 * Berkeley DB hash file (NAME.db, the format sendmail's own makemap writes
 * on Debian: keys and values without a trailing NUL unless -N) or a tinycdb
 * file (NAME.cdb). The new map is written to a temporary file beside the
 * target, fsync'd and renamed into place, so that a reader sees the old map
 * or the new one, never half of one; after an I/O error nothing is renamed.
 * Data errors (a bad line) are reported with the line number and skipped, as
 * sendmail does, and make the exit status 65. */
#include "makemap.h"

#include <cdb.h>
#include <db.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "map.h"

#define EX_OK_ 0
#define EX_USAGE_ 64
#define EX_DATAERR_ 65
#define EX_SOFTWARE_ 70
#define EX_CANTCREAT_ 73
#define EX_IOERR_ 74

#define MAP_MODE 0640

/* ------------------------------------------------------- the line parser */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static bool is_sep(const struct makemap_opts *o, char c)
{
    return o->sep ? c == o->sep : is_space(c);
}

enum makemap_line makemap_parse_line(const struct makemap_opts *o, char *line, size_t len,
                                     struct makemap_entry *e)
{
    *e = (struct makemap_entry){0};
    if (len && line[len - 1] == '\r')
        len--; /* a file written with CRLF keeps no CR in its values */
    line[len] = '\0';
    if (len == 0 || line[0] == o->comment)
        return MAKEMAP_SKIP;
    if (memchr(line, '\0', len))
        return MAKEMAP_NUL_BYTE;
    if (!o->sep && is_space(line[0]))
        return MAKEMAP_LEADING_SPACE;
    size_t i = 0;
    for (; i < len && !is_sep(o, line[i]); i++)
        if (!o->keep_case && line[i] >= 'A' && line[i] <= 'Z')
            line[i] = (char)(line[i] - 'A' + 'a');
    e->key = line;
    e->keylen = i;
    if (i < len)
        line[i++] = '\0';
    if (e->keylen == 0)
        return MAKEMAP_EMPTY_KEY;
    while (i < len && is_sep(o, line[i]))
        i++;
    e->value = line + i;
    e->valuelen = len - i;
    if (e->valuelen == 0 && !o->allow_empty)
        return MAKEMAP_NO_RHS;
    return MAKEMAP_ENTRY;
}

int makemap_read_line(FILE *in, char *buf, size_t bufsize, size_t *len)
{
    size_t n = 0;
    bool too_long = false;
    int c;
    while ((c = getc(in)) != EOF && c != '\n') {
        if (n < MAKEMAP_LINE_MAX && n + 1 < bufsize)
            buf[n++] = (char)c;
        else
            too_long = true;
    }
    if (c == EOF && ferror(in))
        return -1;
    if (c == EOF && n == 0 && !too_long)
        return 0;
    *len = n;
    buf[n] = '\0';
    return too_long ? -2 : 1;
}

/* ------------------------------------------------------------ the writers */

enum map_kind { KIND_HASH, KIND_CDB };

struct writer {
    enum map_kind kind;
    DB *db;
    int fd; /* cdb */
    struct cdb_make cdbm;
    char tmp[PATH_MAX];
    bool tmp_exists;
};

/* 0 stored, 1 key exists (and was kept), -1 error (errno-like code in *why). */
static int writer_put(struct writer *w, const struct makemap_opts *o, const char *key, size_t klen,
                      const char *val, size_t vlen, int *why)
{
    if (w->kind == KIND_HASH) {
        DBT k = {.data = (void *)key, .size = (u_int32_t)klen};
        DBT v = {.data = (void *)val, .size = (u_int32_t)vlen};
        u_int32_t flags = (o->allow_dups || o->replace) ? 0 : DB_NOOVERWRITE;
        int rc = w->db->put(w->db, NULL, &k, &v, flags);
        if (rc == DB_KEYEXIST)
            return 1;
        *why = rc;
        return rc == 0 ? 0 : -1;
    }
    enum cdb_put_mode mode = o->allow_dups ? CDB_PUT_ADD
                             : o->replace  ? CDB_PUT_REPLACE
                                           : CDB_PUT_INSERT;
    int rc = cdb_make_put(&w->cdbm, key, (unsigned)klen, val, (unsigned)vlen, mode);
    *why = errno;
    if (rc < 0)
        return -1;
    return (rc == 1 && mode == CDB_PUT_INSERT) ? 1 : 0;
}

static const char *why_text(struct writer *w, int why)
{
    return w->kind == KIND_HASH ? db_strerror(why) : strerror(why);
}

/* Copies the existing map to the temporary file (-o). 0, or -1 with errno. */
static int copy_file(const char *from, int to_fd)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return errno == ENOENT ? 0 : -1;
    char buf[65536];
    ssize_t n;
    int rc = 0;
    while ((n = read(in, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || write(to_fd, buf, (size_t)n) != n) {
            rc = -1;
            break;
        }
    }
    int saved = errno;
    close(in);
    errno = saved;
    return rc;
}

static void db_quiet(const DB_ENV *env, const char *prefix, const char *msg)
{
    (void)env;
    (void)prefix;
    (void)msg;
}

/* Creates the temporary file beside target and opens the writer on it.
 * 0, or -1 with a reason. */
static int writer_open(struct writer *w, const struct makemap_opts *o, const char *target,
                       char *err, size_t errlen)
{
    int n = snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%ld", target, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof w->tmp) {
        snprintf(err, errlen, "%s: file name too long", target);
        return -1;
    }
    unlink(w->tmp); /* a leftover of an earlier run of ours with this pid */
    int fd = open(w->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, MAP_MODE);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", w->tmp, strerror(errno));
        return -1;
    }
    w->tmp_exists = true;
    if (fchmod(fd, MAP_MODE) < 0 || (o->append && copy_file(target, fd) < 0)) {
        snprintf(err, errlen, "%s: %s", w->tmp, strerror(errno));
        close(fd);
        return -1;
    }
    if (w->kind == KIND_CDB) {
        w->fd = fd;
        cdb_make_start(&w->cdbm, fd);
        return 0;
    }
    close(fd); /* Berkeley DB opens the file itself; an empty file is a new database */
    int rc = db_create(&w->db, NULL, 0);
    if (rc == 0) {
        w->db->set_errcall(w->db, db_quiet);
        if (o->allow_dups)
            rc = w->db->set_flags(w->db, DB_DUP);
    }
    if (rc == 0)
        rc = w->db->open(w->db, NULL, w->tmp, NULL, DB_HASH, DB_CREATE, MAP_MODE);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", w->tmp, db_strerror(rc));
        if (w->db)
            w->db->close(w->db, 0);
        w->db = NULL;
        return -1;
    }
    return 0;
}

static void writer_abandon(struct writer *w)
{
    if (w->db)
        w->db->close(w->db, DB_NOSYNC);
    w->db = NULL;
    if (w->kind == KIND_CDB && w->fd >= 0) {
        cdb_make_finish(&w->cdbm); /* frees its lists; the file goes anyway */
        close(w->fd);
        w->fd = -1;
    }
    if (w->tmp_exists)
        unlink(w->tmp);
    w->tmp_exists = false;
}

static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* Finishes the temporary file, makes it durable and renames it over target;
 * the directory is synced so the rename survives a crash. */
static int writer_commit(struct writer *w, const char *target, const struct stat *old, char *err,
                         size_t errlen)
{
    int rc = 0;
    if (w->kind == KIND_HASH) {
        rc = w->db->close(w->db, 0);
        w->db = NULL;
        if (rc != 0) {
            snprintf(err, errlen, "%s: close: %s", w->tmp, db_strerror(rc));
            return -1;
        }
    } else {
        rc = cdb_make_finish(&w->cdbm);
        if (rc == 0)
            rc = fsync(w->fd);
        int saved = errno;
        close(w->fd);
        w->fd = -1;
        if (rc != 0) {
            snprintf(err, errlen, "%s: %s", w->tmp, strerror(saved));
            return -1;
        }
    }
    if (old && geteuid() == 0 && chown(w->tmp, old->st_uid, old->st_gid) < 0) {
        snprintf(err, errlen, "%s: chown: %s", w->tmp, strerror(errno));
        return -1;
    }
    if (fsync_path(w->tmp, O_RDONLY) < 0 || rename(w->tmp, target) < 0) {
        snprintf(err, errlen, "%s: %s", w->tmp, strerror(errno));
        return -1;
    }
    w->tmp_exists = false;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", target);
    if (fsync_path(dirname(dir), O_RDONLY | O_DIRECTORY) < 0) {
        snprintf(err, errlen, "%s: fsync of the directory: %s", target, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- the run */

struct run {
    const char *prog;
    const char *name;
    const struct makemap_opts *o;
    FILE *in, *out, *err;
    struct writer w;
    int status;
};

static void report_line(struct run *r, unsigned long lineno, enum makemap_line kind,
                        const struct makemap_entry *e)
{
    const char *prog = r->prog, *name = r->name;
    switch (kind) {
    case MAKEMAP_LEADING_SPACE:
        fprintf(r->err, "%s: %s: line %lu: syntax error (leading space)\n", prog, name, lineno);
        break;
    case MAKEMAP_NO_RHS:
        fprintf(r->err, "%s: %s: line %lu: no RHS for LHS %s\n", prog, name, lineno, e->key);
        break;
    case MAKEMAP_EMPTY_KEY:
        fprintf(r->err, "%s: %s: line %lu: syntax error (empty key)\n", prog, name, lineno);
        break;
    case MAKEMAP_NUL_BYTE:
        fprintf(r->err, "%s: %s: line %lu: syntax error (NUL byte)\n", prog, name, lineno);
        break;
    case MAKEMAP_SKIP:
    case MAKEMAP_ENTRY:
    default:
        return;
    }
    r->status = EX_DATAERR_;
}

/* Stores one entry: 0, or -1 after an I/O error (reported). */
static int store_entry(struct run *r, unsigned long lineno, const struct makemap_entry *e)
{
    size_t extra = r->o->include_nul ? 1 : 0; /* the NUL after key and value */
    if (r->o->verbose)
        fprintf(r->out, "key=`%s', val=`%s'\n", e->key, e->value);
    int why = 0;
    int rc =
        writer_put(&r->w, r->o, e->key, e->keylen + extra, e->value, e->valuelen + extra, &why);
    if (rc < 0) {
        fprintf(r->err, "%s: %s: line %lu: key %s: put error: %s\n", r->prog, r->name, lineno,
                e->key, why_text(&r->w, why));
        return -1;
    }
    if (rc > 0) {
        fprintf(r->err, "%s: %s: line %lu: key %s: duplicate key\n", r->prog, r->name, lineno,
                e->key);
        r->status = EX_DATAERR_;
    }
    return 0;
}

/* Reads every line; -1 after an I/O error (reported). */
static int read_input(struct run *r)
{
    char line[MAKEMAP_LINE_MAX + 2];
    unsigned long lineno = 0;
    for (;;) {
        size_t len = 0;
        int rc = makemap_read_line(r->in, line, sizeof line, &len);
        if (rc == 0)
            return 0;
        lineno++;
        if (rc == -1) {
            fprintf(r->err, "%s: %s: line %lu: read error: %s\n", r->prog, r->name, lineno,
                    strerror(errno));
            return -1;
        }
        if (rc == -2) {
            fprintf(r->err, "%s: %s: line %lu: line too long (%d bytes max)\n", r->prog, r->name,
                    lineno, MAKEMAP_LINE_MAX);
            r->status = EX_DATAERR_;
            continue;
        }
        struct makemap_entry e;
        enum makemap_line kind = makemap_parse_line(r->o, line, len, &e);
        if (kind != MAKEMAP_ENTRY) {
            report_line(r, lineno, kind, &e);
            continue;
        }
        if (store_entry(r, lineno, &e) < 0)
            return -1;
    }
}

static int dump_entry(const char *key, size_t keylen, const char *value, size_t valuelen, void *arg)
{
    struct run *r = arg;
    fprintf(r->out, "%.*s%c%.*s\n", (int)keylen, key, r->o->sep ? r->o->sep : '\t', (int)valuelen,
            value);
    return 0;
}

static int unmake(struct run *r, const char *spec)
{
    char why[512];
    struct map *m = map_open(spec, why, sizeof why);
    if (!m) {
        fprintf(r->err, "%s: error opening map %s: %s\n", r->prog, r->name, why);
        return EX_CANTCREAT_;
    }
    int rc = map_walk(m, dump_entry, r);
    if (rc < 0)
        fprintf(r->err, "%s: %s: %s\n", r->prog, r->name, map_error(m));
    map_close(m);
    if (fflush(r->out) != 0 || ferror(r->out)) {
        fprintf(r->err, "%s: write error: %s\n", r->prog, strerror(errno));
        return EX_IOERR_;
    }
    return rc < 0 ? EX_IOERR_ : EX_OK_;
}

/* The file to write: NAME plus the suffix of the type, and what is there
 * now. Refuses links unless -s (a link is followed then: the file it names
 * is replaced). 0 (old->st_mode == 0 when there is no file yet) or an exit
 * status. */
static int check_target(struct run *r, const char *path, char *target, size_t targetlen,
                        struct stat *old)
{
    memset(old, 0, sizeof *old);
    snprintf(target, targetlen, "%s", path);
    if (lstat(path, old) < 0) {
        memset(old, 0, sizeof *old);
        if (errno == ENOENT)
            return 0;
        fprintf(r->err, "%s: %s: %s\n", r->prog, path, strerror(errno));
        return EX_CANTCREAT_;
    }
    if ((S_ISLNK(old->st_mode) || (S_ISREG(old->st_mode) && old->st_nlink > 1)) && !r->o->unsafe) {
        fprintf(r->err, "%s: %s: is a %s link; not replaced (-s to allow)\n", r->prog, path,
                S_ISLNK(old->st_mode) ? "symbolic" : "hard");
        return EX_CANTCREAT_;
    }
    if (S_ISLNK(old->st_mode)) {
        char *real = realpath(path, NULL);
        if (!real || strlen(real) >= targetlen || stat(real, old) < 0) {
            fprintf(r->err, "%s: %s: %s\n", r->prog, path, strerror(errno ? errno : ENAMETOOLONG));
            free(real);
            return EX_CANTCREAT_;
        }
        snprintf(target, targetlen, "%s", real);
        free(real);
    }
    if (!S_ISREG(old->st_mode)) {
        fprintf(r->err, "%s: %s: not a regular file\n", r->prog, path);
        return EX_CANTCREAT_;
    }
    return 0;
}

static int build(struct run *r, enum map_kind kind, const char *path)
{
    char target[PATH_MAX];
    struct stat old;
    int rc = check_target(r, path, target, sizeof target, &old);
    if (rc != 0)
        return rc;
    r->w = (struct writer){.kind = kind, .fd = -1};
    char why[PATH_MAX + 128];
    if (writer_open(&r->w, r->o, target, why, sizeof why) < 0) {
        fprintf(r->err, "%s: cannot create type %s map %s: %s\n", r->prog,
                kind == KIND_HASH ? "hash" : "cdb", r->name, why);
        writer_abandon(&r->w);
        return EX_CANTCREAT_;
    }
    if (read_input(r) < 0) {
        writer_abandon(&r->w);
        fprintf(r->err, "%s: %s: not replaced\n", r->prog, target);
        return EX_IOERR_;
    }
    if (writer_commit(&r->w, target, old.st_mode ? &old : NULL, why, sizeof why) < 0) {
        fprintf(r->err, "%s: %s; %s not replaced\n", r->prog, why, target);
        writer_abandon(&r->w);
        return EX_IOERR_;
    }
    return r->status;
}

int makemap_run(const char *prog, const struct makemap_opts *o, const char *type, const char *name,
                FILE *in, FILE *out, FILE *err)
{
    struct run r = {.prog = prog, .name = name, .o = o, .in = in, .out = out, .err = err};
    enum map_kind kind;
    if (strcmp(type, "hash") == 0)
        kind = KIND_HASH;
    else if (strcmp(type, "cdb") == 0)
        kind = KIND_CDB;
    else {
        fprintf(err, "%s: unsupported map type %s (supported: hash, cdb)\n", prog, type);
        return EX_USAGE_;
    }
    if (o->append && kind == KIND_CDB) {
        fprintf(err, "%s: -o is supported for hash maps only\n", prog);
        return EX_USAGE_;
    }
    char spec[PATH_MAX + 16], path[PATH_MAX], why[PATH_MAX + 64];
    snprintf(spec, sizeof spec, "%s:%s", type, name);
    enum map_type mt;
    if (strlen(name) >= PATH_MAX - 16 ||
        map_parse_spec(spec, &mt, path, sizeof path, why, sizeof why) < 0) {
        fprintf(err, "%s: %s: file name too long\n", prog, name);
        return EX_USAGE_;
    }
    if (o->unmake)
        return unmake(&r, spec);
    int rc = build(&r, kind, path);
    if (fflush(out) != 0) {
        fprintf(err, "%s: write error: %s\n", prog, strerror(errno));
        return rc ? rc : EX_IOERR_;
    }
    return rc;
}

/* ------------------------------------------------------------ the command */

static int usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [-N] [-d] [-D commentchar] [-e] [-f] [-l] [-o] [-r] [-s]\n"
            "       %*s [-t delimiter] [-u] [-v] type mapname\n"
            "  types: hash (NAME.db, Berkeley DB), cdb (NAME.cdb)\n",
            prog, (int)strlen(prog), "");
    return EX_USAGE_;
}

/* A one-character option value (-D c, -t c): attached or the next word. */
static int char_value(int argc, char **argv, int *i, size_t pos, char *out)
{
    const char *v = argv[*i][pos + 1] ? argv[*i] + pos + 1 : (*i + 1 < argc ? argv[++*i] : NULL);
    if (!v || strlen(v) != 1)
        return -1;
    *out = v[0];
    return 0;
}

static int parse_flag(struct makemap_opts *o, char f)
{
    switch (f) {
    case 'N':
        o->include_nul = true;
        break;
    case 'd':
        o->allow_dups = true;
        break;
    case 'e':
        o->allow_empty = true;
        break;
    case 'f':
        o->keep_case = true;
        break;
    case 'o':
        o->append = true;
        break;
    case 'r':
        o->replace = true;
        break;
    case 's':
        o->unsafe = true;
        break;
    case 'u':
        o->unmake = true;
        break;
    case 'v':
        o->verbose = true;
        break;
    default:
        return -1;
    }
    return 0;
}

/* Parses the options; returns the index of TYPE, or -1 (usage) / -2 (-l). */
static int parse_args(int argc, char **argv, struct makemap_opts *o)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        if (strcmp(argv[i], "--") == 0)
            return i + 1;
        for (size_t pos = 1; argv[i][pos]; pos++) {
            char f = argv[i][pos];
            if (f == 'l')
                return -2;
            if (f == 'D' || f == 't') {
                if (char_value(argc, argv, &i, pos, f == 'D' ? &o->comment : &o->sep) < 0)
                    return -1;
                break;
            }
            if (parse_flag(o, f) < 0)
                return -1;
        }
    }
    return i;
}

int makemap_main(int argc, char **argv)
{
    const char *prog = "makemap";
    struct makemap_opts o = {.comment = '#'};
    int first = parse_args(argc, argv, &o);
    if (first == -2) {
        printf("hash\ncdb\n");
        return fflush(stdout) == 0 ? EX_OK_ : EX_IOERR_;
    }
    if (first < 0 || argc - first != 2 || !argv[first][0] || !argv[first + 1][0])
        return usage(prog);
    if (o.sep == '\n')
        return usage(prog);
    return makemap_run(prog, &o, argv[first], argv[first + 1], stdin, stdout, stderr);
}
