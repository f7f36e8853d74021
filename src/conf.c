/* conf.c - the configuration file: "key = value" lines (see conf.h and
 * docs/jailmail.conf.5).
 *
 * The file is read by the root master, so the parser is strict: every line is
 * either blank, a comment or one known key with a value that passes its
 * checks, and anything else stops start-up with "file:line: what is wrong;
 * what is allowed". Keys are described by one table; a value kind (address,
 * path, size, time...) has one parser each.
 */
#include "conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef JM_BUILTIN_DIR
#define JM_BUILTIN_DIR "/tmp/jailmail-run"
#endif

#define CONF_LINE_MAX 4096          /* bytes of one line, its line end excluded */
#define CONF_FILE_MAX (1024 * 1024) /* bytes of a configuration file */
#define SHOW_MAX 60                 /* bytes of a bad value quoted in a message */
#define DOMAIN_MAX 253              /* RFC 1035 2.3.4, without the final dot */
#define LABEL_MAX 63
#define SYSTEM_NAME_MAX 32 /* useradd's limit on user and group names */
#define SUGGEST_MAX 32     /* keys longer than this get no "did you mean" */

const char conf_builtin_text[] = "# The embedded configuration (-C @builtin, make run):\n"
                                 "# an unprivileged port, everything under one directory.\n"
                                 "listen = 127.0.0.1:2525\n"
                                 "jail_directory = " JM_BUILTIN_DIR "/jail\n"
                                 "queue_directory = /queue\n";

/* ---- the keys --------------------------------------------------------- */

enum value_kind {
    KIND_LISTEN,    /* ADDRESS:PORT, repeatable */
    KIND_HOSTNAME,  /* domain name, may be empty */
    KIND_DIRECTORY, /* absolute path of a directory */
    KIND_FILE,      /* absolute path of a file, may be empty */
    KIND_NAME,      /* user or group name */
    KIND_SMARTHOST, /* [host]:port and friends, may be empty */
    KIND_SIZE,      /* bytes, with K/M/G */
    KIND_COUNT,     /* plain whole number */
    KIND_TIME,      /* seconds, with s/m/h/d */
};

enum int_type { INT_NONE, INT_SIZE_T, INT_UNSIGNED };

struct key_def {
    const char *name;
    enum value_kind kind;
    size_t offset;          /* of the field in struct config */
    size_t size;            /* of the field: a string's bound */
    enum int_type int_type; /* numbers: the field's type */
    unsigned long long min; /* numbers: inclusive bounds */
    unsigned long long max;
};

/* A key's field: its offset and size. Strings need no more; numbers add
 * their type and bounds. */
#define FIELD(f) offsetof(struct config, f), sizeof(((struct config *)0)->f)
#define KI 1024ULL
#define MI (1024ULL * 1024)
#define GI (1024ULL * 1024 * 1024)
#define MINUTE 60ULL
#define HOUR 3600ULL
#define DAY 86400ULL

static const struct key_def keys[] = {
    {"listen", KIND_LISTEN, FIELD(listen), INT_NONE, 0, 0},
    {"hostname", KIND_HOSTNAME, FIELD(hostname), INT_NONE, 0, 0},
    {"jail_directory", KIND_DIRECTORY, FIELD(jail_dir), INT_NONE, 0, 0},
    {"queue_directory", KIND_DIRECTORY, FIELD(queue_dir), INT_NONE, 0, 0},
    {"run_as_user", KIND_NAME, FIELD(run_as_user), INT_NONE, 0, 0},
    {"run_as_group", KIND_NAME, FIELD(run_as_group), INT_NONE, 0, 0},
    {"smarthost", KIND_SMARTHOST, FIELD(smarthost), INT_NONE, 0, 0},
    {"log_file", KIND_FILE, FIELD(log_file), INT_NONE, 0, 0},
    {"max_message_size", KIND_SIZE, FIELD(max_message_size), INT_SIZE_T, KI, 2 * GI},
    {"max_recipients", KIND_COUNT, FIELD(max_recipients), INT_SIZE_T, 1, 100000},
    {"max_header_size", KIND_SIZE, FIELD(max_header_size), INT_SIZE_T, KI, 16 * MI},
    {"max_command_line", KIND_COUNT, FIELD(max_command_line), INT_SIZE_T, 512, 65536},
    {"max_connections", KIND_COUNT, FIELD(max_connections), INT_UNSIGNED, 1, 100000},
    {"max_connections_per_client", KIND_COUNT, FIELD(max_connections_per_client), INT_UNSIGNED, 1,
     100000},
    {"max_bad_commands", KIND_COUNT, FIELD(max_bad_commands), INT_UNSIGNED, 1, 1000},
    {"command_timeout", KIND_TIME, FIELD(command_timeout), INT_UNSIGNED, 1, 30 * DAY},
    {"data_timeout", KIND_TIME, FIELD(data_timeout), INT_UNSIGNED, 1, 30 * DAY},
    {"shutdown_timeout", KIND_TIME, FIELD(shutdown_timeout), INT_UNSIGNED, 1, 30 * DAY},
    {"queue_interval", KIND_TIME, FIELD(queue_interval), INT_UNSIGNED, 1, 30 * DAY},
    {"retry_min", KIND_TIME, FIELD(retry_min), INT_UNSIGNED, 1, 30 * DAY},
    {"max_deliveries", KIND_COUNT, FIELD(max_deliveries), INT_UNSIGNED, 1, 1000},
};

#define NKEYS (sizeof keys / sizeof keys[0])

/* ---- defaults --------------------------------------------------------- */

static void default_listen(struct listen_addr *a, const char *host, uint16_t port)
{
    snprintf(a->host, sizeof a->host, "%s", host);
    a->port = port;
}

void conf_defaults(struct config *c)
{
    memset(c, 0, sizeof *c);
    default_listen(&c->listen[0], "127.0.0.1", 25);
    default_listen(&c->listen[1], "::1", 25);
    c->nlisten = 2;
    snprintf(c->jail_dir, sizeof c->jail_dir, "/var/spool/jailmail");
    snprintf(c->queue_dir, sizeof c->queue_dir, "/queue");
    snprintf(c->run_as_user, sizeof c->run_as_user, "jailmail");
    snprintf(c->run_as_group, sizeof c->run_as_group, "mail");
    c->smarthost_port = 25;
    c->max_message_size = 10 * MI;
    c->max_recipients = 100;
    c->max_header_size = 64 * KI;
    c->max_command_line = 2048;
    c->max_connections = 2000;
    c->max_connections_per_client = 50;
    c->max_bad_commands = 25;
    c->command_timeout = 5 * MINUTE;
    c->data_timeout = 10 * MINUTE;
    c->shutdown_timeout = 30;
    c->queue_interval = 15 * MINUTE;
    c->retry_min = 60;
    c->max_deliveries = 20;
}

/* ---- messages --------------------------------------------------------- */

struct parser {
    struct config *c;
    const char *name;
    size_t lineno;
    bool listen_seen; /* the first listen line of a buffer replaces the list */
    char *err;
    size_t errlen;
    char shown[SHOW_MAX * 4 + 8]; /* the value being complained about, printable */
};

/* "name:line: " + the reason. Always returns -1. */
__attribute__((format(printf, 2, 3))) static int fail(struct parser *p, const char *fmt, ...)
{
    char reason[CONF_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    snprintf(p->err, p->errlen, "%s:%zu: %s", p->name, p->lineno, reason);
    return -1;
}

/* A value from the file as it may appear in a message: bounded, and with
 * every byte that is not printable ASCII written as \xNN. */
static const char *show(struct parser *p, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && i < SHOW_MAX; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch < 0x7f)
            p->shown[o++] = (char)ch;
        else
            o += (size_t)snprintf(p->shown + o, sizeof p->shown - o, "\\x%02x", ch);
    }
    if (n > SHOW_MAX) {
        memcpy(p->shown + o, "...", 3);
        o += 3;
    }
    p->shown[o] = '\0';
    return p->shown;
}

/* A whole value, as show() gives it. */
static const char *show_value(struct parser *p, const char *value)
{
    return show(p, value, strlen(value));
}

/* ---- small parsers ---------------------------------------------------- */

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Decimal digits at *s, saturating at `cap` + 1 so that no input overflows.
 * Returns false when there is no digit. */
static bool take_digits(const char **s, unsigned long long cap, unsigned long long *out)
{
    unsigned long long v = 0;
    const char *q = *s;
    if (!is_digit(*q))
        return false;
    for (; is_digit(*q); q++) {
        v = v * 10 + (unsigned long long)(*q - '0');
        if (v > cap)
            v = cap + 1;
    }
    *s = q;
    *out = v;
    return true;
}

/* The whole string is a number from 1 to 65535. */
static bool parse_port(const char *s, uint16_t *port)
{
    unsigned long long v;
    if (!take_digits(&s, 65535, &v) || *s || v < 1 || v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

/* A saturating multiply: numbers beyond every bound stay beyond it. */
static unsigned long long times(unsigned long long v, unsigned long long unit,
                                unsigned long long cap)
{
    return v > cap / unit ? cap + 1 : v * unit;
}

#define NUMBER_CAP (1ULL << 62)

/* digits + optional K, M or G (either case; K = 1024). */
static bool parse_size(const char *s, unsigned long long *out)
{
    unsigned long long v, unit = 1;
    if (!take_digits(&s, NUMBER_CAP, &v))
        return false;
    switch (*s) {
    case '\0':
        break;
    case 'K':
    case 'k':
        unit = KI;
        break;
    case 'M':
    case 'm':
        unit = MI;
        break;
    case 'G':
    case 'g':
        unit = GI;
        break;
    default:
        return false;
    }
    if (*s && s[1])
        return false;
    *out = times(v, unit, NUMBER_CAP);
    return true;
}

static unsigned long long time_unit(char ch)
{
    switch (ch) {
    case 's':
        return 1;
    case 'm':
        return MINUTE;
    case 'h':
        return HOUR;
    case 'd':
        return DAY;
    case 'w':
        return 7 * DAY;
    default:
        return 0;
    }
}

/* sendmail's time syntax: a plain number of seconds, or one or more
 * <number><unit> groups ("1h30m"), units s, m, h, d, w. */
static bool parse_time(const char *s, unsigned long long *out)
{
    unsigned long long total = 0, v;
    if (!take_digits(&s, NUMBER_CAP, &v))
        return false;
    if (!*s) {
        *out = v;
        return true;
    }
    for (;;) {
        unsigned long long unit = time_unit(*s);
        if (!unit)
            return false;
        s++;
        total += times(v, unit, NUMBER_CAP);
        if (total > NUMBER_CAP)
            total = NUMBER_CAP + 1;
        if (!*s)
            break;
        if (!take_digits(&s, NUMBER_CAP, &v))
            return false;
    }
    *out = total;
    return true;
}

static bool parse_count(const char *s, unsigned long long *out)
{
    return take_digits(&s, NUMBER_CAP, out) && !*s;
}

/* A bound as the administrator would write it: 64K, 2G, 30d, 5m. */
static void format_bound(enum value_kind kind, unsigned long long v, char *out, size_t outlen)
{
    static const struct {
        unsigned long long unit;
        char suffix;
        enum value_kind kind;
    } units[] = {{GI, 'G', KIND_SIZE},  {MI, 'M', KIND_SIZE},   {KI, 'K', KIND_SIZE},
                 {DAY, 'd', KIND_TIME}, {HOUR, 'h', KIND_TIME}, {MINUTE, 'm', KIND_TIME},
                 {1, 's', KIND_TIME}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (units[i].kind == kind && v % units[i].unit == 0) {
            snprintf(out, outlen, "%llu%c", v / units[i].unit, units[i].suffix);
            return;
        }
    }
    snprintf(out, outlen, "%llu", v);
}

/* NULL when `s` is a domain name (letters, digits, hyphens, dot-separated
 * labels of 1..63, at most 253 in all, not all-digit at the end); otherwise
 * what is wrong with it. */
static const char *domain_problem(const char *s)
{
    size_t len = strlen(s), label = 0;
    bool all_digits = true;
    if (len == 0)
        return "it is empty";
    if (len > DOMAIN_MAX)
        return "it is longer than 253 characters";
    for (size_t i = 0; i <= len; i++) {
        char ch = s[i];
        if (ch == '.' || ch == '\0') {
            if (label == 0)
                return "it has an empty label";
            if (s[i - 1] == '-')
                return "a label ends with '-'";
            if (ch == '\0' && all_digits)
                return "its last label is all digits";
            label = 0;
            all_digits = true;
            continue;
        }
        bool alnum = is_digit(ch) || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        if (!alnum && ch != '-')
            return "it has a character other than letters, digits, '-' and '.'";
        if (label == 0 && ch == '-')
            return "a label starts with '-'";
        if (++label > LABEL_MAX)
            return "a label is longer than 63 characters";
        all_digits = all_digits && is_digit(ch);
    }
    return NULL;
}

/* ---- value setters, one per kind ---------------------------------------- */

static char *string_field(struct parser *p, const struct key_def *k)
{
    return (char *)p->c + k->offset;
}

static int store_string(struct parser *p, const struct key_def *k, const char *value)
{
    size_t len = strlen(value);
    if (len >= k->size)
        return fail(p, "%s: '%s' is too long; at most %zu bytes", k->name, show(p, value, len),
                    k->size - 1);
    /* zero-filled, so that equal configurations compare equal byte for byte */
    memset(string_field(p, k), 0, k->size);
    memcpy(string_field(p, k), value, len);
    return 0;
}

#define LISTEN_USAGE "use ADDRESS:PORT with a numeric address, e.g. 127.0.0.1:25 or [::1]:25"

/* "a.b.c.d:port" or "[ipv6]:port" into a normalised listen_addr. */
static int parse_listen_addr(struct parser *p, const char *value, struct listen_addr *a)
{
    char host[CONF_HOST_MAX];
    unsigned char bin[sizeof(struct in6_addr)];
    const char *colon;
    int family = AF_INET;
    if (value[0] == '[') {
        const char *close = strchr(value, ']');
        if (!close || close[1] != ':')
            return fail(p, "listen: '%s' is not an address with a port; %s", show_value(p, value),
                        LISTEN_USAGE);
        family = AF_INET6;
        snprintf(host, sizeof host, "%.*s", (int)(close - value - 1), value + 1);
        colon = close + 1;
    } else {
        colon = strrchr(value, ':');
        if (!colon)
            return fail(p, "listen: '%s' has no port; %s", show_value(p, value), LISTEN_USAGE);
        if (memchr(value, ':', (size_t)(colon - value)))
            return fail(p, "listen: '%s': an IPv6 address goes in brackets; %s",
                        show_value(p, value), LISTEN_USAGE);
        snprintf(host, sizeof host, "%.*s", (int)(colon - value), value);
    }
    if ((size_t)(colon - value) >= sizeof host || inet_pton(family, host, bin) != 1)
        return fail(p, "listen: '%s' is not a numeric %s address; %s", show_value(p, value),
                    family == AF_INET ? "IPv4" : "IPv6", LISTEN_USAGE);
    if (!parse_port(colon + 1, &a->port))
        return fail(p, "listen: '%s' has no valid port; use a port from 1 to 65535",
                    show_value(p, value));
    inet_ntop(family, bin, a->host, sizeof a->host);
    return 0;
}

static bool same_family(const struct listen_addr *a, const struct listen_addr *b)
{
    return (strchr(a->host, ':') == NULL) == (strchr(b->host, ':') == NULL);
}

/* 0.0.0.0 or ::, as inet_ntop writes them. */
static bool is_wildcard(const struct listen_addr *a)
{
    return strcmp(a->host, "0.0.0.0") == 0 || strcmp(a->host, "::") == 0;
}

static int set_listen_value(struct parser *p, const struct key_def *k, const char *value)
{
    (void)k;
    struct listen_addr a;
    memset(&a, 0, sizeof a);
    if (parse_listen_addr(p, value, &a) < 0)
        return -1;
    if (!p->listen_seen) {
        p->c->nlisten = 0;
        p->listen_seen = true;
    }
    for (size_t i = 0; i < p->c->nlisten; i++) {
        const struct listen_addr *old = &p->c->listen[i];
        if (old->port != a.port)
            continue;
        if (strcmp(old->host, a.host) == 0)
            return fail(p, "listen: '%s' is listed twice; list each address once",
                        show_value(p, value));
        /* bind() would fail: the wildcard already holds the port */
        if (same_family(old, &a) && (is_wildcard(old) || is_wildcard(&a)))
            return fail(p,
                        "listen: '%s' overlaps %s%s%s:%u; list either the address for all "
                        "(0.0.0.0 or [::]) or single addresses on one port",
                        show_value(p, value), strchr(old->host, ':') ? "[" : "", old->host,
                        strchr(old->host, ':') ? "]" : "", old->port);
    }
    if (p->c->nlisten >= CONF_MAX_LISTEN)
        return fail(p, "listen: too many addresses; at most %d listen lines", CONF_MAX_LISTEN);
    p->c->listen[p->c->nlisten++] = a;
    return 0;
}

static int set_hostname(struct parser *p, const struct key_def *k, const char *value)
{
    const char *problem = value[0] ? domain_problem(value) : NULL;
    if (problem)
        return fail(p,
                    "%s: '%s' is not a domain name (%s); use dot-separated labels of letters, "
                    "digits and '-', e.g. mail.example.org, or leave it empty for the system's "
                    "name",
                    k->name, show_value(p, value), problem);
    return store_string(p, k, value);
}

/* NULL when `s` is an absolute path without '.', '..' or empty components,
 * of printable ASCII without spaces; otherwise what is wrong with it. */
static const char *path_problem(const char *s)
{
    if (s[0] != '/')
        return "it is not an absolute path; start it with '/'";
    for (const char *q = s; *q; q++) {
        if (*q <= ' ' || *q >= 0x7f)
            return "it has a space or a non-ASCII character; use printable ASCII without spaces";
    }
    for (const char *q = s; *q;) {
        const char *comp = q + 1, *end = strchrnul(comp, '/');
        size_t n = (size_t)(end - comp);
        if (n == 0 && *end)
            return "it has an empty component ('//'); write each '/' once";
        if ((n == 1 && comp[0] == '.') || (n == 2 && comp[0] == '.' && comp[1] == '.'))
            return "it has a '.' or '..' component; give the path without them";
        q = end;
    }
    return NULL;
}

static int set_directory(struct parser *p, const struct key_def *k, const char *value)
{
    char path[PATH_MAX];
    size_t len = strlen(value);
    if (len >= sizeof path)
        return fail(p, "%s: the path is too long; at most %zu bytes", k->name, sizeof path - 1);
    while (len > 1 && value[len - 1] == '/')
        len--; /* "/srv/jail/" is "/srv/jail" */
    memcpy(path, value, len);
    path[len] = '\0';
    const char *problem = path_problem(path);
    if (problem)
        return fail(p, "%s: '%s': %s", k->name, show_value(p, value), problem);
    if (strcmp(path, "/") == 0)
        return fail(p, "%s: '/' is not a directory of its own; use e.g. %s", k->name,
                    strcmp(k->name, "jail_directory") == 0 ? "/var/spool/jailmail" : "/queue");
    return store_string(p, k, path);
}

static int set_file(struct parser *p, const struct key_def *k, const char *value)
{
    const char *problem = value[0] ? path_problem(value) : NULL;
    if (problem)
        return fail(p, "%s: '%s': %s", k->name, show_value(p, value), problem);
    if (value[0] && value[strlen(value) - 1] == '/')
        return fail(p, "%s: '%s' names a directory; name a file, e.g. /var/log/jailmail.log",
                    k->name, show_value(p, value));
    return store_string(p, k, value);
}

static bool is_system_name(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > SYSTEM_NAME_MAX || is_digit(s[0]) || s[0] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!(ch >= 'a' && ch <= 'z') && !is_digit(ch) && ch != '_' && ch != '-')
            return false;
    }
    return true;
}

static int set_name(struct parser *p, const struct key_def *k, const char *value)
{
    if (!is_system_name(value))
        return fail(p,
                    "%s: '%s' is not a user or group name; use lower-case letters, digits, '_' "
                    "and '-', starting with a letter or '_', at most %d characters",
                    k->name, show_value(p, value), SYSTEM_NAME_MAX);
    /* The workers read the network: they never run as root (DESIGN.md, 1). */
    bool is_user = k->offset == offsetof(struct config, run_as_user);
    if (strcmp(value, "root") == 0)
        return fail(p,
                    "%s: 'root' would give the network workers root's rights; use an "
                    "unprivileged %s such as %s",
                    k->name, is_user ? "user" : "group", is_user ? "jailmail" : "mail");
    return store_string(p, k, value);
}

#define SMARTHOST_USAGE                                                                            \
    "use host, host:port, [host] or [host]:port (brackets: no MX lookup), where host is a "        \
    "domain name, an IPv4 address or IPv6:address"

/* The host part of a smarthost: a domain, an IPv4 address, or (in brackets
 * only) IPv6:address or a bare IPv6 address. Writes the host to store and
 * whether it is an address. */
static bool smarthost_host(const char *h, bool bracketed, char *out, size_t outlen, bool *is_addr)
{
    unsigned char bin[sizeof(struct in6_addr)];
    const char *v6 = h;
    if (strncasecmp(h, "IPv6:", 5) == 0)
        v6 = h + 5;
    if (bracketed && inet_pton(AF_INET6, v6, bin) == 1) {
        inet_ntop(AF_INET6, bin, out, (socklen_t)outlen);
        *is_addr = true;
        return true;
    }
    if (v6 != h)
        return false;
    *is_addr = inet_pton(AF_INET, h, bin) == 1;
    if (!*is_addr && domain_problem(h))
        return false;
    snprintf(out, outlen, "%s", h);
    return true;
}

static int set_smarthost(struct parser *p, const struct key_def *k, const char *value)
{
    struct config *c = p->c;
    char host[CONF_HOST_MAX], stored[CONF_HOST_MAX];
    const char *rest;
    bool bracketed = value[0] == '[', is_addr = false;
    uint16_t port = 25;
    memset(c->smarthost, 0, sizeof c->smarthost);
    if (!value[0]) {
        c->smarthost_port = 25;
        c->smarthost_no_mx = false;
        return 0;
    }
    if (bracketed) {
        const char *close = strchr(value, ']');
        if (!close || (size_t)(close - value) > sizeof host)
            goto bad;
        snprintf(host, sizeof host, "%.*s", (int)(close - value - 1), value + 1);
        rest = close + 1;
    } else {
        const char *colon = strchr(value, ':');
        if (colon && strchr(colon + 1, ':'))
            goto bad; /* an IPv6 address without brackets */
        rest = colon ? colon : value + strlen(value);
        if ((size_t)(rest - value) >= sizeof host)
            goto bad;
        snprintf(host, sizeof host, "%.*s", (int)(rest - value), value);
    }
    if (*rest && (*rest != ':' || !parse_port(rest + 1, &port)))
        return fail(p, "%s: '%s' has no valid port; use a port from 1 to 65535", k->name,
                    show_value(p, value));
    if (!smarthost_host(host, bracketed, stored, sizeof stored, &is_addr))
        goto bad;
    snprintf(c->smarthost, sizeof c->smarthost, "%s", stored);
    c->smarthost_port = port;
    c->smarthost_no_mx = bracketed || is_addr; /* an address has no MX records */
    return 0;
bad:
    return fail(p, "%s: '%s' is not a host; %s", k->name, show_value(p, value), SMARTHOST_USAGE);
}

static void store_number(struct parser *p, const struct key_def *k, unsigned long long v)
{
    void *field = (char *)p->c + k->offset;
    if (k->int_type == INT_SIZE_T)
        *(size_t *)field = (size_t)v;
    else
        *(unsigned *)field = (unsigned)v;
}

static int set_number(struct parser *p, const struct key_def *k, const char *value)
{
    static const char *const what[] = {
        [KIND_SIZE] = "a size", [KIND_COUNT] = "a number", [KIND_TIME] = "a time"};
    static const char *const how[] = {
        [KIND_SIZE] = "use a number with an optional K, M or G suffix",
        [KIND_COUNT] = "use a whole number",
        [KIND_TIME] = "use a number with an optional s, m, h or d suffix (plain numbers are "
                      "seconds)",
    };
    unsigned long long v;
    bool ok = k->kind == KIND_SIZE   ? parse_size(value, &v)
              : k->kind == KIND_TIME ? parse_time(value, &v)
                                     : parse_count(value, &v);
    if (!ok)
        return fail(p, "%s: '%s' is not %s; %s", k->name, show_value(p, value), what[k->kind],
                    how[k->kind]);
    if (v < k->min || v > k->max) {
        char lo[32], hi[32];
        format_bound(k->kind, k->min, lo, sizeof lo);
        format_bound(k->kind, k->max, hi, sizeof hi);
        return fail(p, "%s: '%s' is out of range; use %s from %s to %s", k->name,
                    show_value(p, value), what[k->kind], lo, hi);
    }
    store_number(p, k, v);
    return 0;
}

static int set_value(struct parser *p, const struct key_def *k, const char *value)
{
    switch (k->kind) {
    case KIND_LISTEN:
        return set_listen_value(p, k, value);
    case KIND_HOSTNAME:
        return set_hostname(p, k, value);
    case KIND_DIRECTORY:
        return set_directory(p, k, value);
    case KIND_FILE:
        return set_file(p, k, value);
    case KIND_NAME:
        return set_name(p, k, value);
    case KIND_SMARTHOST:
        return set_smarthost(p, k, value);
    case KIND_SIZE:
    case KIND_COUNT:
    case KIND_TIME:
        return set_number(p, k, value);
    }
    return fail(p, "%s: internal error: unknown value kind", k->name);
}

/* ---- keys: lookup and suggestions --------------------------------------- */

static const struct key_def *find_key(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    }
    return NULL;
}

static char lower(char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

/* Edit distance (insert, delete, replace one character), case-insensitive;
 * both strings at most SUGGEST_MAX long. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[SUGGEST_MAX + 1];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (lower(a[i - 1]) != lower(b[j - 1]));
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The known key nearest to a mistyped one, or NULL when none is close. */
static const char *suggest(const char *name)
{
    const char *best = NULL;
    size_t best_d = 3; /* at most two typos */
    if (strlen(name) > SUGGEST_MAX)
        return NULL;
    for (size_t i = 0; i < NKEYS; i++) {
        size_t d = distance(name, keys[i].name);
        if (d < best_d) {
            best_d = d;
            best = keys[i].name;
        }
    }
    return best;
}

static int unknown_key(struct parser *p, const char *name)
{
    char known[CONF_ERR_MAX], hint[SUGGEST_MAX + 32] = "";
    size_t o = 0;
    for (size_t i = 0; i < NKEYS && o < sizeof known; i++)
        o += (size_t)snprintf(known + o, sizeof known - o, "%s%s", i ? ", " : "", keys[i].name);
    const char *near = suggest(name);
    if (near)
        snprintf(hint, sizeof hint, " (did you mean '%s'?)", near);
    return fail(p, "unknown key '%s'%s; known keys: %s", show(p, name, strlen(name)), hint, known);
}

/* ---- lines ------------------------------------------------------------ */

/* Only printable characters and tabs: no NUL, no other control character. */
static int check_bytes(struct parser *p, const char *line, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)line[i];
        if (ch == '\0')
            return fail(p, "NUL byte at column %zu; the file must be text", i + 1);
        if (ch == '\r')
            return fail(p, "carriage return at column %zu; lines end with LF or CR LF", i + 1);
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return fail(p,
                        "control character 0x%02x at column %zu; only printable characters "
                        "and tabs are allowed",
                        ch, i + 1);
    }
    return 0;
}

/* A '#' after a blank inside a value: a comment that is not on its own line. */
static bool has_trailing_comment(const char *value)
{
    for (const char *q = value; (q = strchr(q, '#')) != NULL; q++) {
        if (q > value && is_blank(q[-1]))
            return true;
    }
    return false;
}

/* One line, its line end removed, at most CONF_LINE_MAX bytes. */
static int parse_line(struct parser *p, const char *line, size_t n)
{
    char text[CONF_LINE_MAX + 1];
    if (check_bytes(p, line, n) < 0)
        return -1;
    while (n > 0 && is_blank(line[n - 1]))
        n--;
    while (n > 0 && is_blank(line[0])) {
        line++;
        n--;
    }
    if (n == 0 || line[0] == '#')
        return 0;
    memcpy(text, line, n);
    text[n] = '\0';
    char *eq = strchr(text, '=');
    if (!eq)
        return fail(p, "'%s' is not a setting; write key = value", show(p, text, n));
    char *key_end = eq, *value = eq + 1;
    while (key_end > text && is_blank(key_end[-1]))
        key_end--;
    *key_end = '\0';
    while (is_blank(*value))
        value++;
    if (text[0] == '\0')
        return fail(p, "no key before '='; write key = value");
    const struct key_def *k = find_key(text);
    if (!k)
        return unknown_key(p, text);
    bool may_be_empty =
        k->kind == KIND_HOSTNAME || k->kind == KIND_FILE || k->kind == KIND_SMARTHOST;
    if (!value[0] && !may_be_empty)
        return fail(p, "%s: no value after '='; give a value, or remove the line for the default",
                    k->name);
    if (has_trailing_comment(value))
        return fail(p,
                    "%s: a comment after the value; a '#' starts a comment only at the "
                    "start of a line",
                    k->name);
    return set_value(p, k, value);
}

int conf_parse_buffer(struct config *c, const char *name, const char *buf, size_t len, char *err,
                      size_t errlen)
{
    /* Work on a copy: on error the caller's configuration is left as it was. */
    struct config *work = malloc(sizeof *work);
    if (!work) {
        snprintf(err, errlen, "%s: out of memory", name);
        return -1;
    }
    memcpy(work, c, sizeof *work); /* memcpy: padding too, so that memcmp can compare */
    struct parser p = {.c = work, .name = name, .err = err, .errlen = errlen};
    size_t pos = 0;
    int rc = 0;
    while (pos < len && rc == 0) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - buf) : len, n = end - pos;
        p.lineno++;
        if (n > 0 && buf[pos + n - 1] == '\r')
            n--; /* CR LF line ends are tolerated */
        if (n > CONF_LINE_MAX)
            rc = fail(&p, "the line is %zu bytes long; lines may be at most %d bytes", n,
                      CONF_LINE_MAX);
        else
            rc = parse_line(&p, buf + pos, n);
        pos = end + 1;
    }
    if (rc == 0) {
        snprintf(work->source, sizeof work->source, "%s", name);
        memcpy(c, work, sizeof *c);
    }
    free(work);
    return rc;
}

/* ---- finishing -------------------------------------------------------- */

static const char *source_name(const struct config *c)
{
    return c->source[0] ? c->source : "configuration";
}

/* Numbers set by code (not by the parser) are held to the same bounds. */
static int check_numbers(const struct config *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key_def *k = &keys[i];
        const void *field = (const char *)c + k->offset;
        unsigned long long v;
        if (k->int_type == INT_NONE)
            continue;
        v = k->int_type == INT_SIZE_T ? *(const size_t *)field : *(const unsigned *)field;
        if (v < k->min || v > k->max) {
            char lo[32], hi[32];
            format_bound(k->kind, k->min, lo, sizeof lo);
            format_bound(k->kind, k->max, hi, sizeof hi);
            snprintf(err, errlen, "%s: %s is %llu; it must be from %s to %s", source_name(c),
                     k->name, v, lo, hi);
            return -1;
        }
    }
    return 0;
}

static int fill_hostname(struct config *c, char *err, size_t errlen)
{
    char name[CONF_HOST_MAX];
    if (gethostname(name, sizeof name) < 0) {
        snprintf(err, errlen, "%s: hostname is not set and gethostname() failed: %s; set hostname",
                 source_name(c), strerror(errno));
        return -1;
    }
    name[sizeof name - 1] = '\0';
    const char *problem = domain_problem(name);
    if (problem) {
        snprintf(err, errlen,
                 "%s: hostname is not set and the system's name is not a domain name (%s); set "
                 "hostname, e.g. hostname = mail.example.org",
                 source_name(c), problem);
        return -1;
    }
    snprintf(c->hostname, sizeof c->hostname, "%s", name);
    return 0;
}

int conf_finish(struct config *c, char *err, size_t errlen)
{
    const char *src = source_name(c);
    if (c->nlisten < 1 || c->nlisten > CONF_MAX_LISTEN) {
        snprintf(err, errlen, "%s: no listen address; add e.g. listen = 127.0.0.1:25", src);
        return -1;
    }
    if (c->jail_dir[0] != '/' || c->queue_dir[0] != '/') {
        snprintf(err, errlen, "%s: %s is not an absolute path; start it with '/'", src,
                 c->jail_dir[0] != '/' ? "jail_directory" : "queue_directory");
        return -1;
    }
    if (strlen(c->jail_dir) + strlen(c->queue_dir) >= PATH_MAX) {
        snprintf(err, errlen,
                 "%s: jail_directory and queue_directory together are longer than %d bytes; "
                 "use shorter paths",
                 src, PATH_MAX - 1);
        return -1;
    }
    if (!c->run_as_user[0] || !c->run_as_group[0]) {
        snprintf(err, errlen,
                 "%s: run_as_user and run_as_group must be set; e.g. jailmail and mail", src);
        return -1;
    }
    if (c->smarthost[0] && c->smarthost_port == 0) {
        snprintf(err, errlen, "%s: smarthost has port 0; use a port from 1 to 65535", src);
        return -1;
    }
    if (check_numbers(c, err, errlen) < 0)
        return -1;
    if (!c->hostname[0])
        return fill_hostname(c, err, errlen);
    return 0;
}

/* ---- loading ---------------------------------------------------------- */

/* The file decides where root creates directories and whom it hands them
 * to, so only root (or whoever runs jailmail) may be able to change it. */
static bool unsafe_owner(const char *path, const struct stat *st, char *err, size_t errlen)
{
    uid_t me = geteuid();
    if (st->st_mode & S_IWOTH) {
        snprintf(err, errlen, "%s: anyone may write to it; run chmod o-w %s", path, path);
        return true;
    }
    if (st->st_uid != 0 && st->st_uid != me) {
        snprintf(err, errlen, "%s: owned by uid %u, not by root or uid %u; run chown root %s", path,
                 (unsigned)st->st_uid, (unsigned)me, path);
        return true;
    }
    if (me == 0 && st->st_gid != 0 && (st->st_mode & S_IWGRP)) {
        snprintf(err, errlen, "%s: group %u may write to it; run chmod g-w %s", path,
                 (unsigned)st->st_gid, path);
        return true;
    }
    return false;
}

/* The whole file into a new buffer, refusing what a configuration file
 * cannot be: not regular, writable by others, larger than CONF_FILE_MAX. */
static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    struct stat st;
    char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file; name the configuration file", path);
        goto out;
    }
    if (unsafe_owner(path, &st, err, errlen))
        goto out;
    buf = malloc(CONF_FILE_MAX + 1);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    *len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + *len, CONF_FILE_MAX + 1 - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
            break;
        }
        *len += (size_t)n;
        if (n == 0)
            goto out;
        if (*len > CONF_FILE_MAX) {
            snprintf(err, errlen, "%s: larger than %d bytes; a configuration file is smaller", path,
                     CONF_FILE_MAX);
            break;
        }
    }
    free(buf);
    buf = NULL;
out:
    close(fd);
    return buf;
}

int conf_load(struct config *c, const char *path, char *err, size_t errlen)
{
    conf_defaults(c);
    if (strcmp(path, CONF_BUILTIN_NAME) == 0) {
        if (conf_parse_buffer(c, CONF_BUILTIN_NAME, conf_builtin_text, sizeof conf_builtin_text - 1,
                              err, errlen) < 0)
            return -1;
        return conf_finish(c, err, errlen);
    }
    if (strlen(path) >= sizeof c->source) {
        snprintf(err, errlen, "%.64s...: path too long; at most %zu bytes", path,
                 sizeof c->source - 1);
        return -1;
    }
    size_t len = 0;
    char *buf = read_file(path, &len, err, errlen);
    if (!buf)
        return -1;
    int rc = conf_parse_buffer(c, path, buf, len, err, errlen);
    free(buf);
    if (rc < 0)
        return -1;
    return conf_finish(c, err, errlen);
}
