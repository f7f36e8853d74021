/* queue.c - queue files: the envelope format (write and strict parse), and
 * the file operations on tmp/, msg/ and corrupt/.
 *
 * The format is specified in queue.h and, in more detail, in
 * docs/queue-format.md. The writer and the parser are exact mirrors: a buffer
 * the parser accepts is byte for byte what the writer makes of the parsed
 * envelope (the fuzz target checks this), so a file has one spelling only.
 */
#include "queue.h"
#include "err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define QUEUE_MAGIC "jailmail-queue "
#define QUEUE_DATA_LINE "data"
#define QID_SECONDS_CHARS 6
#define QID_USEC_CHARS 4
#define QID_PID_CHARS 2
#define QID_COUNTER_CHARS 2
#define ARRIVAL_DIGITS_MAX 19 /* INT64_MAX has 19 digits */
#define READ_CHUNK (64 * 1024)
#define CORRUPT_TRIES 1000

static const char base62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* ---------------------------------------------------------------- queue ids */

/* Writes v as `width` base-62 digits, most significant first (wraps modulo
 * 62^width). ASCII orders '0'-'9' < 'A'-'Z' < 'a'-'z', so strcmp sorts ids. */
static void put_base62(char *out, size_t width, uint64_t v)
{
    for (size_t i = width; i-- > 0;) {
        out[i] = base62[v % 62];
        v /= 62;
    }
}

void queue_make_id(char out[QID_SIZE], int64_t sec, long usec, unsigned pid, unsigned counter)
{
    uint64_t s = sec < 0 ? 0 : (uint64_t)sec;
    uint64_t us = usec < 0 ? 0 : usec > 999999 ? 999999 : (uint64_t)usec;
    char *p = out;
    put_base62(p, QID_SECONDS_CHARS, s);
    p += QID_SECONDS_CHARS;
    put_base62(p, QID_USEC_CHARS, us);
    p += QID_USEC_CHARS;
    put_base62(p, QID_PID_CHARS, pid);
    p += QID_PID_CHARS;
    put_base62(p, QID_COUNTER_CHARS, counter);
    out[QID_LEN] = '\0';
}

static bool is_base62(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

bool queue_id_valid(const char *s, size_t len)
{
    if (!s || len != QID_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_base62((unsigned char)s[i]))
            return false;
    return true;
}

static bool qid_ok(const char *qid)
{
    return qid && queue_id_valid(qid, strnlen(qid, QID_SIZE));
}

/* ------------------------------------------------------------ the fields */

/* The text fields between "arrival" and the recipients, in file order. */
struct field_spec {
    const char *key;
    size_t offset; /* of the char * in struct queue_envelope */
    size_t max;    /* a value holds fewer bytes than this */
    bool may_be_empty;
};

static const struct field_spec fields[] = {
    {"client", offsetof(struct queue_envelope, client), QUEUE_FIELD_MAX, false},
    {"clientname", offsetof(struct queue_envelope, client_name), QUEUE_FIELD_MAX, true},
    {"helo", offsetof(struct queue_envelope, helo), QUEUE_FIELD_MAX, true},
    {"proto", offsetof(struct queue_envelope, proto), QUEUE_FIELD_MAX, false},
    {"body", offsetof(struct queue_envelope, body_type), QUEUE_FIELD_MAX, false},
    {"msgid", offsetof(struct queue_envelope, msgid), QUEUE_FIELD_MAX, true},
    {"sender", offsetof(struct queue_envelope, sender), QUEUE_ADDR_MAX, true},
};
#define NFIELDS (sizeof fields / sizeof fields[0])

static char **field_slot(struct queue_envelope *env, const struct field_spec *f)
{
    return (char **)((char *)env + f->offset);
}

static bool body_type_known(const char *v, size_t len)
{
    return (len == 4 && memcmp(v, "7BIT", 4) == 0) || (len == 8 && memcmp(v, "8BITMIME", 8) == 0);
}

static bool status_known(char c)
{
    return c == RCPT_PENDING || c == RCPT_DELIVERED || c == RCPT_FAILED;
}

/* A value may hold any byte but CR, LF and NUL (UTF-8 addresses included). */
static bool value_bytes_ok(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0')
            return false;
    return true;
}

/* ------------------------------------------------------------ the writer */

struct out {
    char *buf;
    size_t cap;
    size_t pos;
    bool overflow;
};

static void out_bytes(struct out *o, const char *p, size_t n)
{
    if (o->overflow || n > o->cap - o->pos) {
        o->overflow = true;
        return;
    }
    memcpy(o->buf + o->pos, p, n);
    o->pos += n;
}

static void out_str(struct out *o, const char *s)
{
    out_bytes(o, s, strlen(s));
}

/* Checks a value for the writer: NULL counts as empty. Returns its length or
 * -1 when the writer must refuse it. */
static ssize_t checked_len(const char *v, size_t max, bool may_be_empty)
{
    if (!v)
        return may_be_empty ? 0 : -1;
    size_t len = strnlen(v, max);
    if (len >= max || (len == 0 && !may_be_empty) || !value_bytes_ok(v, len))
        return -1;
    return (ssize_t)len;
}

static int format_fields(struct queue_envelope *env, struct out *o)
{
    for (size_t i = 0; i < NFIELDS; i++) {
        const struct field_spec *f = &fields[i];
        const char *v = *field_slot(env, f);
        ssize_t len = checked_len(v, f->max, f->may_be_empty);
        if (len < 0)
            return -1;
        if (f->offset == offsetof(struct queue_envelope, body_type) &&
            !body_type_known(v, (size_t)len))
            return -1;
        out_str(o, f->key);
        out_bytes(o, " ", 1);
        out_bytes(o, v ? v : "", (size_t)len);
        out_bytes(o, "\n", 1);
    }
    return 0;
}

static int format_rcpts(struct queue_envelope *env, struct out *o)
{
    if (env->nrcpts == 0 || !env->rcpts)
        return -1;
    for (size_t i = 0; i < env->nrcpts; i++) {
        struct queue_rcpt *r = &env->rcpts[i];
        ssize_t len = checked_len(r->addr, QUEUE_ADDR_MAX, false);
        if (len < 0 || !status_known(r->status))
            return -1;
        out_str(o, "rcpt ");
        r->status_offset = (off_t)o->pos;
        out_bytes(o, &r->status, 1);
        out_bytes(o, " ", 1);
        out_bytes(o, r->addr, (size_t)len);
        out_bytes(o, "\n", 1);
    }
    return 0;
}

ssize_t queue_format_envelope(struct queue_envelope *env, char *buf, size_t buflen)
{
    if (!env || !buf || !qid_ok(env->qid) || env->arrival < 0)
        return -1;
    struct out o = {.buf = buf, .cap = buflen < QUEUE_ENVELOPE_MAX ? buflen : QUEUE_ENVELOPE_MAX};
    char head[64];
    int n = snprintf(head, sizeof head, QUEUE_MAGIC "%d\nid %s\narrival %lld\n",
                     QUEUE_FORMAT_VERSION, env->qid, (long long)env->arrival);
    if (n < 0 || (size_t)n >= sizeof head)
        return -1;
    out_bytes(&o, head, (size_t)n);
    if (format_fields(env, &o) < 0 || format_rcpts(env, &o) < 0)
        return -1;
    out_str(&o, QUEUE_DATA_LINE "\n");
    if (o.overflow)
        return -1;
    env->data_offset = (off_t)o.pos;
    return (ssize_t)o.pos;
}

/* ------------------------------------------------------------ the parser */

struct cursor {
    const char *buf;
    size_t len; /* never more than QUEUE_ENVELOPE_MAX */
    size_t pos;
    char *err;
    size_t errlen;
};

struct line {
    const char *p;
    size_t len;    /* without the LF */
    size_t offset; /* of p in the buffer */
};

static int fail(struct cursor *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct cursor *c, const char *fmt, ...)
{
    if (c->err && c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int next_line(struct cursor *c, struct line *l, const char *expected)
{
    const char *start = c->buf + c->pos;
    const char *lf = memchr(start, '\n', c->len - c->pos);
    if (!lf)
        return fail(c, "envelope ends before the %s line", expected);
    l->p = start;
    l->len = (size_t)(lf - start);
    l->offset = c->pos;
    c->pos += l->len + 1;
    return 0;
}

/* "key value": returns the value's start and length in *v, *vlen. */
static bool split_key(const struct line *l, const char *key, const char **v, size_t *vlen)
{
    size_t klen = strlen(key);
    if (l->len < klen + 1 || memcmp(l->p, key, klen) != 0 || l->p[klen] != ' ')
        return false;
    *v = l->p + klen + 1;
    *vlen = l->len - klen - 1;
    return true;
}

static int parse_magic(struct cursor *c)
{
    struct line l;
    const char *v;
    size_t vlen;
    if (next_line(c, &l, "version") < 0)
        return -1;
    if (!split_key(&l, "jailmail-queue", &v, &vlen))
        return fail(c, "not a jailmail queue file");
    if (vlen != 1 || v[0] != '0' + QUEUE_FORMAT_VERSION) {
        if (vlen > 16)
            vlen = 16;
        for (size_t i = 0; i < vlen; i++)
            if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] >= 0x7f)
                return fail(c, "unsupported queue file version");
        return fail(c, "unsupported queue file version \"%.*s\"", (int)vlen, v);
    }
    return 0;
}

static int parse_id(struct cursor *c, struct queue_envelope *env)
{
    struct line l;
    const char *v;
    size_t vlen;
    if (next_line(c, &l, "id") < 0)
        return -1;
    if (!split_key(&l, "id", &v, &vlen))
        return fail(c, "id line expected at byte %zu", l.offset);
    if (!queue_id_valid(v, vlen))
        return fail(c, "malformed queue id");
    memcpy(env->qid, v, QID_LEN);
    env->qid[QID_LEN] = '\0';
    return 0;
}

/* Decimal, no sign, no leading zero, within int64_t: one spelling per value. */
static int parse_arrival(struct cursor *c, struct queue_envelope *env)
{
    struct line l;
    const char *v;
    size_t vlen;
    if (next_line(c, &l, "arrival") < 0)
        return -1;
    if (!split_key(&l, "arrival", &v, &vlen))
        return fail(c, "arrival line expected at byte %zu", l.offset);
    if (vlen == 0 || vlen > ARRIVAL_DIGITS_MAX || (vlen > 1 && v[0] == '0'))
        return fail(c, "malformed arrival time");
    int64_t t = 0;
    for (size_t i = 0; i < vlen; i++) {
        if (v[i] < '0' || v[i] > '9')
            return fail(c, "malformed arrival time");
        int digit = v[i] - '0';
        if (t > (INT64_MAX - digit) / 10)
            return fail(c, "arrival time out of range");
        t = t * 10 + digit;
    }
    env->arrival = t;
    return 0;
}

static char *copy_value(const char *v, size_t len)
{
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, v, len);
        s[len] = '\0';
    }
    return s;
}

static int parse_field(struct cursor *c, struct queue_envelope *env, const struct field_spec *f)
{
    struct line l;
    const char *v;
    size_t vlen;
    if (next_line(c, &l, f->key) < 0)
        return -1;
    if (!split_key(&l, f->key, &v, &vlen))
        return fail(c, "%s line expected at byte %zu", f->key, l.offset);
    if (vlen >= f->max)
        return fail(c, "%s too long", f->key);
    if (vlen == 0 && !f->may_be_empty)
        return fail(c, "%s is empty", f->key);
    if (!value_bytes_ok(v, vlen))
        return fail(c, "%s holds a CR or NUL byte", f->key);
    if (f->offset == offsetof(struct queue_envelope, body_type) && !body_type_known(v, vlen))
        return fail(c, "unknown body type");
    char *s = copy_value(v, vlen);
    if (!s)
        return fail(c, "out of memory");
    *field_slot(env, f) = s;
    return 0;
}

static int grow_rcpts(struct cursor *c, struct queue_envelope *env, size_t *cap)
{
    if (env->nrcpts < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 8;
    struct queue_rcpt *r = realloc(env->rcpts, ncap * sizeof *r);
    if (!r)
        return fail(c, "out of memory");
    env->rcpts = r;
    *cap = ncap;
    return 0;
}

/* "rcpt S address" */
static int parse_rcpt(struct cursor *c, struct queue_envelope *env, const struct line *l,
                      size_t *cap)
{
    const char *v;
    size_t vlen;
    if (!split_key(l, "rcpt", &v, &vlen))
        return fail(c, "rcpt or data line expected at byte %zu", l->offset);
    if (vlen < 2 || v[1] != ' ' || !status_known(v[0]))
        return fail(c, "bad recipient status at byte %zu", l->offset);
    const char *addr = v + 2;
    size_t alen = vlen - 2;
    if (alen == 0)
        return fail(c, "empty recipient address at byte %zu", l->offset);
    if (alen >= QUEUE_ADDR_MAX)
        return fail(c, "recipient address too long at byte %zu", l->offset);
    if (!value_bytes_ok(addr, alen))
        return fail(c, "recipient address holds a CR or NUL byte at byte %zu", l->offset);
    if (grow_rcpts(c, env, cap) < 0)
        return -1;
    char *s = copy_value(addr, alen);
    if (!s)
        return fail(c, "out of memory");
    env->rcpts[env->nrcpts++] = (struct queue_rcpt){
        .addr = s,
        .status = v[0],
        .status_offset = (off_t)(v - c->buf),
    };
    return 0;
}

static int parse_rcpts(struct cursor *c, struct queue_envelope *env)
{
    size_t cap = 0;
    for (;;) {
        struct line l;
        if (next_line(c, &l, "data") < 0)
            return -1;
        if (l.len == sizeof QUEUE_DATA_LINE - 1 && memcmp(l.p, QUEUE_DATA_LINE, l.len) == 0)
            break;
        if (parse_rcpt(c, env, &l, &cap) < 0)
            return -1;
    }
    if (env->nrcpts == 0)
        return fail(c, "no recipients");
    env->data_offset = (off_t)c->pos;
    return 0;
}

static int parse_all(struct cursor *c, struct queue_envelope *env)
{
    if (parse_magic(c) < 0 || parse_id(c, env) < 0 || parse_arrival(c, env) < 0)
        return -1;
    for (size_t i = 0; i < NFIELDS; i++)
        if (parse_field(c, env, &fields[i]) < 0)
            return -1;
    return parse_rcpts(c, env);
}

int queue_parse_envelope(const char *buf, size_t len, struct queue_envelope *env, char *err,
                         size_t errlen)
{
    if (!env)
        return -1;
    memset(env, 0, sizeof *env);
    if (err && errlen)
        err[0] = '\0';
    struct cursor c = {
        .buf = buf,
        .len = len < QUEUE_ENVELOPE_MAX ? len : QUEUE_ENVELOPE_MAX,
        .err = err,
        .errlen = errlen,
    };
    if (!buf) {
        c.len = 0;
        c.buf = "";
    }
    if (parse_all(&c, env) < 0) {
        queue_envelope_free(env);
        return -1;
    }
    return 0;
}

void queue_envelope_free(struct queue_envelope *env)
{
    if (!env)
        return;
    for (size_t i = 0; i < NFIELDS; i++)
        free(*field_slot(env, &fields[i]));
    if (env->rcpts)
        for (size_t i = 0; i < env->nrcpts; i++)
            free(env->rcpts[i].addr);
    free(env->rcpts);
    memset(env, 0, sizeof *env);
}

/* ------------------------------------------------------- file operations */

/* qdir/sub or qdir/sub/name into path; -1 with ENAMETOOLONG when it does not fit. */
static int build_path(char *path, size_t size, const char *qdir, const char *sub, const char *name)
{
    int n = name ? snprintf(path, size, "%s/%s/%s", qdir, sub, name)
                 : snprintf(path, size, "%s/%s", qdir, sub);
    if (n < 0 || (size_t)n >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

static int open_subdir(const char *qdir, const char *sub)
{
    char path[PATH_MAX];
    if (build_path(path, sizeof path, qdir, sub, NULL) < 0)
        return -1;
    return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
}

int queue_prepare_dirs(const char *qdir, char *err, size_t errlen)
{
    static const char *const subdirs[] = {"tmp", "msg", "corrupt"};
    for (size_t i = 0; i < sizeof subdirs / sizeof subdirs[0]; i++) {
        char path[PATH_MAX];
        struct stat st;
        if (build_path(path, sizeof path, qdir, subdirs[i], NULL) < 0) {
            err_set(err, errlen, "%s/%s: path too long", qdir, subdirs[i]);
            return -1;
        }
        if (mkdir(path, 0700) == 0)
            continue;
        if (errno != EEXIST) {
            err_set(err, errlen, "mkdir %s: %s", path, strerror(errno));
            return -1;
        }
        if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
            err_set(err, errlen, "%s exists and is not a directory", path);
            errno = ENOTDIR;
            return -1;
        }
    }
    return 0;
}

static int open_msg(const char *qdir, const char *qid, int flags)
{
    char path[PATH_MAX];
    if (!qid_ok(qid)) {
        errno = EINVAL;
        return -1;
    }
    if (build_path(path, sizeof path, qdir, "msg", qid) < 0)
        return -1;
    /* O_NONBLOCK: a FIFO planted under a queue id must not hang the reader */
    int fd = open(path, flags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || fcntl(fd, F_SETFL, flags) < 0) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    return fd;
}

/* Offset just past the "\ndata\n" line in buf[0..len), searched from `from`,
 * or 0 when not there yet. */
static size_t find_data_line(const char *buf, size_t len, size_t from)
{
    static const char needle[] = "\n" QUEUE_DATA_LINE "\n";
    const size_t nlen = sizeof needle - 1;
    if (len < nlen)
        return 0;
    const char *p = memmem(buf + from, len - from, needle, nlen);
    return p ? (size_t)(p - buf) + nlen : 0;
}

/* Reads the envelope part of an open queue file into a new buffer: chunks
 * until the data line is seen, EOF, or QUEUE_ENVELOPE_MAX bytes. */
static char *read_envelope_bytes(int fd, size_t *outlen)
{
    size_t cap = READ_CHUNK, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    for (;;) {
        if (len == cap) {
            if (cap >= QUEUE_ENVELOPE_MAX)
                break; /* the parser says what is wrong */
            size_t ncap = cap * 2 < QUEUE_ENVELOPE_MAX ? cap * 2 : QUEUE_ENVELOPE_MAX;
            char *nbuf = realloc(buf, ncap);
            if (!nbuf) {
                free(buf);
                return NULL;
            }
            buf = nbuf;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int saved = errno;
            free(buf);
            errno = saved;
            return NULL;
        }
        if (n == 0)
            break;
        size_t from = len >= 5 ? len - 5 : 0; /* the line may straddle two reads */
        len += (size_t)n;
        size_t end = find_data_line(buf, len, from);
        if (end) {
            len = end;
            break;
        }
    }
    *outlen = len;
    return buf;
}

int queue_read_envelope(const char *qdir, const char *qid, struct queue_envelope *env, char *err,
                        size_t errlen)
{
    memset(env, 0, sizeof *env);
    int fd = open_msg(qdir, qid, O_RDONLY);
    if (fd < 0) {
        err_set(err, errlen, "open msg/%.*s: %s", QID_LEN, qid ? qid : "", strerror(errno));
        return -1;
    }
    size_t len = 0;
    char *buf = read_envelope_bytes(fd, &len);
    int saved = errno;
    close(fd);
    if (!buf) {
        errno = saved;
        err_set(err, errlen, "read msg/%s: %s", qid, strerror(errno));
        return -1;
    }
    char why[256];
    int rc = queue_parse_envelope(buf, len, env, why, sizeof why);
    free(buf);
    if (rc < 0) {
        errno = EINVAL;
        err_set(err, errlen, "msg/%s: %s", qid, why);
        return -1;
    }
    if (strcmp(env->qid, qid) != 0) {
        err_set(err, errlen, "msg/%s: the file says it is %s", qid, env->qid);
        queue_envelope_free(env);
        errno = EINVAL;
        return -1;
    }
    return 0;
}

int queue_open_data(const char *qdir, const struct queue_envelope *env)
{
    int fd = open_msg(qdir, env->qid, O_RDONLY);
    if (fd < 0)
        return -1;
    if (lseek(fd, env->data_offset, SEEK_SET) != env->data_offset) {
        int saved = errno;
        close(fd);
        errno = saved ? saved : EIO;
        return -1;
    }
    return fd;
}

/* The byte at status_offset must be a status byte right after "rcpt ":
 * a stale or wrong offset must never damage a file. */
static int check_status_slot(int fd, off_t offset)
{
    char seen[6];
    if (offset < 5 || pread(fd, seen, sizeof seen, offset - 5) != (ssize_t)sizeof seen)
        return -1;
    if (memcmp(seen, "rcpt ", 5) != 0 || !status_known(seen[5]))
        return -1;
    return 0;
}

int queue_mark_rcpt(const char *qdir, const char *qid, const struct queue_rcpt *rcpt, char status)
{
    if (!rcpt || !status_known(status)) {
        errno = EINVAL;
        return -1;
    }
    int fd = open_msg(qdir, qid, O_RDWR);
    if (fd < 0)
        return -1;
    int rc = -1;
    if (check_status_slot(fd, rcpt->status_offset) < 0)
        errno = EINVAL;
    else if (pwrite(fd, &status, 1, rcpt->status_offset) == 1 && fdatasync(fd) == 0)
        rc = 0;
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int queue_mark_rcpts(const char *qdir, const struct queue_envelope *env)
{
    int fd = open_msg(qdir, env->qid, O_RDWR);
    if (fd < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < env->nrcpts && rc == 0; i++) {
        const struct queue_rcpt *r = &env->rcpts[i];
        if (r->status == RCPT_PENDING)
            continue;
        if (!status_known(r->status) || check_status_slot(fd, r->status_offset) < 0) {
            errno = EINVAL;
            rc = -1;
        } else if (pwrite(fd, &r->status, 1, r->status_offset) != 1) {
            rc = -1;
        }
    }
    if (rc == 0 && fdatasync(fd) < 0)
        rc = -1;
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* No fsync of the directory: if the removal is lost in a crash, the message
 * is delivered once more, which principle 3 of DESIGN.md allows; syncing
 * here would cost a disk flush for every message delivered. */
int queue_remove(const char *qdir, const char *qid)
{
    char path[PATH_MAX];
    if (!qid_ok(qid)) {
        errno = EINVAL;
        return -1;
    }
    if (build_path(path, sizeof path, qdir, "msg", qid) < 0 || unlink(path) < 0)
        return -1;
    return 0;
}

/* rename that never replaces: renameat2(RENAME_NOREPLACE), or link+unlink on
 * file systems without it (EINVAL), which is just as safe for files. */
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
static int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
                     unsigned int flags)
{
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}
#endif

int queue_rename_noreplace(int from_dir, const char *from, int to_dir, const char *to)
{
    if (renameat2(from_dir, from, to_dir, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    if (linkat(from_dir, from, to_dir, to, 0) < 0)
        return -1;
    return unlinkat(from_dir, from, 0);
}

static bool plain_name(const char *name)
{
    size_t len = name ? strnlen(name, NAME_MAX + 1) : 0;
    return len > 0 && len <= NAME_MAX && !strchr(name, '/') && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0;
}

/* Renames from_dir/name into corrupt/ under name, or name.N when taken. */
static int move_into(int from_dir, int corrupt_dir, const char *name)
{
    if (queue_rename_noreplace(from_dir, name, corrupt_dir, name) == 0)
        return 0;
    for (unsigned i = 1; errno == EEXIST && i < CORRUPT_TRIES; i++) {
        char alt[NAME_MAX + 1];
        snprintf(alt, sizeof alt, "%.240s.%u", name, i);
        if (queue_rename_noreplace(from_dir, name, corrupt_dir, alt) == 0)
            return 0;
    }
    return -1;
}

static int move_corrupt_at(const char *qdir, int from_dir, const char *name)
{
    int corrupt_dir = open_subdir(qdir, "corrupt");
    if (corrupt_dir < 0)
        return -1;
    int rc = move_into(from_dir, corrupt_dir, name);
    if (rc == 0)
        rc = fsync(corrupt_dir) == 0 && fsync(from_dir) == 0 ? 0 : -1;
    int saved = errno;
    close(corrupt_dir);
    errno = saved;
    return rc;
}

int queue_move_corrupt(const char *qdir, const char *subdir, const char *name)
{
    if (!subdir || (strcmp(subdir, "msg") != 0 && strcmp(subdir, "tmp") != 0) ||
        !plain_name(name)) {
        errno = EINVAL;
        return -1;
    }
    int from_dir = open_subdir(qdir, subdir);
    if (from_dir < 0)
        return -1;
    int rc = move_corrupt_at(qdir, from_dir, name);
    int saved = errno;
    close(from_dir);
    errno = saved;
    return rc;
}

/* ------------------------------------------------------------- the scan */

static bool dot_name(const char *name)
{
    return name[0] == '.';
}

/* A tmp/ file is removed unless a live spool writer holds its lock (see
 * spool.c): a queue process restarting while smtpd receives must not delete
 * a message in the middle of its DATA. */
static void clean_tmp_entry(const char *qdir, int tmp_dir, const char *name)
{
    struct stat st;
    if (fstatat(tmp_dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        move_corrupt_at(qdir, tmp_dir, name);
        return;
    }
    if (S_ISREG(st.st_mode)) {
        int fd = openat(tmp_dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            return;
        bool busy = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
        if (!busy)
            unlinkat(tmp_dir, name, 0);
        close(fd); /* after the unlink, so that nobody can lock it in between */
        return;
    }
    unlinkat(tmp_dir, name, 0);
}

static int clean_tmp(const char *qdir)
{
    int tmp_dir = open_subdir(qdir, "tmp");
    if (tmp_dir < 0)
        return -1;
    int dup_fd = dup(tmp_dir);
    DIR *d = dup_fd < 0 ? NULL : fdopendir(dup_fd);
    if (!d) {
        int saved = errno;
        if (dup_fd >= 0)
            close(dup_fd);
        close(tmp_dir);
        errno = saved;
        return -1;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            clean_tmp_entry(qdir, tmp_dir, de->d_name);
    closedir(d);
    close(tmp_dir);
    return 0;
}

struct qid_list {
    char (*ids)[QID_SIZE];
    size_t n, cap;
};

static int qid_list_add(struct qid_list *l, const char *qid)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 64;
        char(*ids)[QID_SIZE] = realloc(l->ids, ncap * sizeof *ids);
        if (!ids)
            return -1;
        l->ids = ids;
        l->cap = ncap;
    }
    memcpy(l->ids[l->n++], qid, QID_SIZE);
    return 0;
}

static int qid_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static bool regular_at(int dir, const char *name, unsigned char d_type)
{
    struct stat st;
    if (d_type == DT_REG)
        return true;
    if (d_type != DT_UNKNOWN)
        return false;
    return fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

/* Collects the valid ids of msg/ and moves every other name to corrupt/. */
static int collect_msg(const char *qdir, struct qid_list *list)
{
    int msg_dir = open_subdir(qdir, "msg");
    if (msg_dir < 0)
        return -1;
    int dup_fd = dup(msg_dir);
    DIR *d = dup_fd < 0 ? NULL : fdopendir(dup_fd);
    int rc = d ? 0 : -1;
    struct dirent *de;
    while (d && rc == 0 && (de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (dot_name(name))
            continue;
        if (queue_id_valid(name, strlen(name)) && regular_at(msg_dir, name, de->d_type))
            rc = qid_list_add(list, name);
        else
            move_corrupt_at(qdir, msg_dir, name);
    }
    int saved = errno;
    if (d)
        closedir(d);
    else if (dup_fd >= 0)
        close(dup_fd);
    close(msg_dir);
    errno = saved;
    return rc;
}

int queue_scan(const char *qdir, void (*found)(const char *qid, void *arg), void *arg)
{
    if (clean_tmp(qdir) < 0)
        return -1;
    struct qid_list list = {0};
    if (collect_msg(qdir, &list) < 0) {
        free(list.ids);
        return -1;
    }
    if (list.n > INT_MAX) {
        free(list.ids);
        errno = EOVERFLOW;
        return -1;
    }
    if (list.n > 1)
        qsort(list.ids, list.n, sizeof list.ids[0], qid_cmp);
    for (size_t i = 0; found && i < list.n; i++)
        found(list.ids[i], arg);
    int n = (int)list.n;
    free(list.ids);
    return n;
}

/* ------------------------------------------------------ next attempt time */

int queue_set_next_attempt(const char *qdir, const char *qid, int64_t when)
{
    char path[PATH_MAX];
    if (!qid_ok(qid) || when < 0) {
        errno = EINVAL;
        return -1;
    }
    if (build_path(path, sizeof path, qdir, "msg", qid) < 0)
        return -1;
    const struct timespec times[2] = {
        {.tv_sec = 0, .tv_nsec = UTIME_OMIT},
        {.tv_sec = (time_t)when, .tv_nsec = 0},
    };
    return utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW);
}

int queue_get_next_attempt(const char *qdir, const char *qid, int64_t *when)
{
    char path[PATH_MAX];
    struct stat st;
    if (!qid_ok(qid) || !when) {
        errno = EINVAL;
        return -1;
    }
    if (build_path(path, sizeof path, qdir, "msg", qid) < 0 || lstat(path, &st) < 0)
        return -1;
    *when = (int64_t)st.st_mtim.tv_sec;
    return 0;
}
