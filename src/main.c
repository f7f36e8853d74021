/* main.c - one binary, many names: it acts by the name it is called by
 * (sendmail, mailq, newaliases, makemap) or by the first argument of
 * `jailmail COMMAND`. Every argument is hostile until parsed: each is checked
 * and bounded here before anything else sees it. */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "makemap.h"
#include "master.h"

#define EX_USAGE_ 64
#define MAX_INTERVAL_SECONDS (30u * 24 * 3600)

#ifndef JM_VERSION
#define JM_VERSION "0.1"
#endif

enum sendmail_mode { MODE_UNSET, MODE_DAEMON, MODE_DAEMON_FOREGROUND };

struct sendmail_args {
    enum sendmail_mode mode;
    const char *config;
    unsigned queue_interval; /* seconds, 0 = not given */
};

static int usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s -bd|-bD [-q<interval>] [-C <config file>]\n"
            "  -bd           run the daemon in the background\n"
            "  -bD           run the daemon in the foreground\n"
            "  -q<interval>  run the queue every interval (e.g. -q15m, -q1h, -q30s)\n"
            "  -C <file>     configuration file (default " CONF_DEFAULT_PATH
            "; @builtin for the embedded one)\n",
            prog);
    return EX_USAGE_;
}

static int not_yet(const char *prog, const char *what)
{
    fprintf(stderr, "%s: %s is not supported yet\n", prog, what);
    return EX_USAGE_;
}

/* sendmail's time syntax: one or more <number><unit> with units s, m, h, d,
 * w; a number without unit is in minutes (as sendmail's -q). 0 on error. */
static unsigned parse_interval(const char *s)
{
    unsigned long long total = 0;
    if (!*s)
        return 0;
    while (*s) {
        if (*s < '0' || *s > '9')
            return 0;
        unsigned long long n = 0;
        while (*s >= '0' && *s <= '9') {
            n = n * 10 + (unsigned)(*s++ - '0');
            if (n > MAX_INTERVAL_SECONDS)
                return 0;
        }
        unsigned long long unit = 60;
        switch (*s) {
        case 's':
            unit = 1;
            s++;
            break;
        case 'm':
            unit = 60;
            s++;
            break;
        case 'h':
            unit = 3600;
            s++;
            break;
        case 'd':
            unit = 86400;
            s++;
            break;
        case 'w':
            unit = 7 * 86400;
            s++;
            break;
        case '\0':
            break;
        default:
            return 0;
        }
        total += n * unit;
        if (total > MAX_INTERVAL_SECONDS)
            return 0;
    }
    return (unsigned)total;
}

/* Flags of sendmail that later work will implement: a clear refusal now,
 * never a silent success. */
static bool is_known_unsupported(char flag)
{
    return strchr("tifFrNRVBvoOXhAGLUnmed", flag) != NULL;
}

static int parse_b(const char *prog, const char *mode, struct sendmail_args *a)
{
    if (strcmp(mode, "d") == 0)
        a->mode = MODE_DAEMON;
    else if (strcmp(mode, "D") == 0)
        a->mode = MODE_DAEMON_FOREGROUND;
    else if (strlen(mode) == 1 && strchr("mpisvtPhH", mode[0])) {
        char what[8];
        snprintf(what, sizeof what, "-b%s", mode);
        return not_yet(prog, what);
    } else
        return usage(prog);
    return 0;
}

static int parse_q(const char *prog, const char *val, struct sendmail_args *a)
{
    if (*val == '\0')
        return not_yet(prog, "-q (run the queue once)");
    if (strchr("RSIpfG!", *val))
        return not_yet(prog, "-q with a selection");
    a->queue_interval = parse_interval(val);
    if (!a->queue_interval) {
        fprintf(stderr, "%s: -q%s: not an interval; use e.g. -q15m, -q1h, -q30s (1s to 30d)\n",
                prog, val);
        return EX_USAGE_;
    }
    return 0;
}

/* A flag's value: attached (-Cfile) or the next argument (-C file). */
static const char *flag_value(int argc, char **argv, int *i)
{
    if (argv[*i][2])
        return argv[*i] + 2;
    if (*i + 1 < argc)
        return argv[++*i];
    return NULL;
}

static int parse_sendmail_args(const char *prog, int argc, char **argv, struct sendmail_args *a)
{
    int rc;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strlen(arg) > PATH_MAX)
            return usage(prog);
        if (arg[0] != '-' || strcmp(arg, "--") == 0)
            return not_yet(prog, "sending a message");
        const char *val;
        switch (arg[1]) {
        case 'b':
            if (!(val = flag_value(argc, argv, &i)))
                return usage(prog);
            if ((rc = parse_b(prog, val, a)) != 0)
                return rc;
            break;
        case 'C':
            if (!(val = flag_value(argc, argv, &i)) || !*val)
                return usage(prog);
            a->config = val;
            break;
        case 'q':
            if ((rc = parse_q(prog, arg + 2, a)) != 0)
                return rc;
            break;
        default:
            if (is_known_unsupported(arg[1])) {
                char what[8];
                snprintf(what, sizeof what, "-%c", arg[1]);
                return not_yet(prog, what);
            }
            return usage(prog);
        }
    }
    return 0;
}

static int sendmail_main(const char *prog, int argc, char **argv)
{
    struct sendmail_args a = {.mode = MODE_UNSET, .config = CONF_DEFAULT_PATH};
    int rc = parse_sendmail_args(prog, argc, argv, &a);
    if (rc != 0)
        return rc;
    if (a.mode == MODE_UNSET) {
        if (a.queue_interval)
            return not_yet(prog, "-q without -bd (a queue runner alone)");
        return not_yet(prog, "sending a message");
    }
    struct master_options opt = {
        .config_path = a.config,
        .foreground = a.mode == MODE_DAEMON_FOREGROUND,
        .queue_interval = a.queue_interval,
    };
    return master_main(&opt);
}

static int jailmail_usage(void)
{
    fprintf(stderr, "usage: jailmail COMMAND [ARGS]\n"
                    "  jailmail sendmail|mailq|newaliases|makemap ARGS   act as that command\n"
                    "  jailmail version\n");
    return EX_USAGE_;
}

static int dispatch(const char *name, int argc, char **argv);

static int jailmail_main(int argc, char **argv)
{
    if (argc < 2)
        return jailmail_usage();
    const char *cmd = argv[1];
    if (strcmp(cmd, "version") == 0) {
        printf("jailmail %s\n", JM_VERSION);
        return 0;
    }
    if (strcmp(cmd, "jail") == 0 || strcmp(cmd, "relaytest") == 0)
        return not_yet("jailmail", cmd);
    if (strcmp(cmd, "sendmail") == 0 || strcmp(cmd, "mailq") == 0 ||
        strcmp(cmd, "newaliases") == 0 || strcmp(cmd, "makemap") == 0)
        return dispatch(cmd, argc - 1, argv + 1);
    return jailmail_usage();
}

static int dispatch(const char *name, int argc, char **argv)
{
    if (strcmp(name, "sendmail") == 0)
        return sendmail_main(name, argc, argv);
    if (strcmp(name, "makemap") == 0)
        return makemap_main(argc, argv);
    if (strcmp(name, "mailq") == 0 || strcmp(name, "newaliases") == 0)
        return not_yet(name, name);
    return jailmail_main(argc, argv);
}

int main(int argc, char **argv)
{
    const char *name = argc > 0 && argv[0] ? strrchr(argv[0], '/') : NULL;
    name = name ? name + 1 : (argc > 0 && argv[0] ? argv[0] : "jailmail");
    return dispatch(name, argc, argv);
}
