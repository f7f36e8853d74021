/* conf.h - the configuration: one file of "key = value" lines.
 *
 * Parsing is pure (conf_parse_buffer works on bytes, no I/O) so that it can be
 * unit-tested and fuzzed. Every error names the file, the line, what is wrong
 * and what is allowed:  "/etc/mail/jailmail.conf:12: unknown key 'lisen';
 * known keys are: ...". The documentation is docs/jailmail.conf.5.
 */
#ifndef JM_CONF_H
#define JM_CONF_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONF_MAX_LISTEN 16
#define CONF_HOST_MAX 256
#define CONF_NAME_MAX 64
#define CONF_ERR_MAX 512
#define CONF_DEFAULT_PATH "/etc/mail/jailmail.conf"
#define CONF_BUILTIN_NAME "@builtin" /* -C @builtin: the embedded configuration */

struct listen_addr {
    char host[CONF_HOST_MAX]; /* numeric IPv4 or IPv6 address, no brackets */
    uint16_t port;
};

struct config {
    char source[PATH_MAX]; /* file the configuration came from, or "@builtin" */

    struct listen_addr listen[CONF_MAX_LISTEN];
    size_t nlisten;

    char hostname[CONF_HOST_MAX]; /* empty: gethostname() at load time */

    char jail_dir[PATH_MAX];  /* absolute; the workers chroot here when run as root */
    char queue_dir[PATH_MAX]; /* absolute path inside the jail, e.g. /var/spool/mqueue */
    char run_as_user[CONF_NAME_MAX];
    char run_as_group[CONF_NAME_MAX];

    char smarthost[CONF_HOST_MAX]; /* host name or address, no brackets; empty: none */
    uint16_t smarthost_port;       /* default 25 */

    char log_file[PATH_MAX]; /* empty: syslog (daemon) or stderr (foreground) */

    /* limits */
    size_t max_message_size;  /* bytes, 0 = unlimited is NOT allowed */
    size_t max_recipients;    /* per message */
    size_t max_header_size;   /* bytes of the header section */
    size_t max_command_line;  /* bytes of one command line, CRLF included */
    unsigned max_connections; /* in total */
    unsigned max_connections_per_client;
    unsigned max_bad_commands; /* in a row, then 421 */
    unsigned command_timeout;  /* seconds waiting for a command */
    unsigned data_timeout;     /* seconds waiting for the next block of DATA */
    unsigned shutdown_timeout; /* seconds SIGTERM waits for sessions in DATA */

    /* queue */
    unsigned queue_interval; /* seconds between queue runs (-q15m), also max back-off */
    unsigned retry_min;      /* first retry after this many seconds */
    unsigned max_deliveries; /* outbound connections at once */

    /* added after the first version of this header: */
    bool smarthost_no_mx; /* smarthost was written in [brackets] or is an address: connect to
                             its A/AAAA (or the address itself), no MX lookup, as sendmail's
                             DS[host] */
};

/* Fills every field with the compiled-in default. */
void conf_defaults(struct config *c);

/* Parses `len` bytes of configuration text named `name` (for messages) on top
 * of what `c` already holds. Returns 0, or -1 with "name:line: reason" in err. */
int conf_parse_buffer(struct config *c, const char *name, const char *buf, size_t len, char *err,
                      size_t errlen);

/* conf_defaults + the file at `path` (or the embedded configuration when
 * path is CONF_BUILTIN_NAME) + conf_finish. Returns 0 or -1 with err. */
int conf_load(struct config *c, const char *path, char *err, size_t errlen);

/* Checks the cross-field rules and fills derived values (hostname). */
int conf_finish(struct config *c, char *err, size_t errlen);

/* The embedded configuration used by `make run` (text, for -C @builtin). */
extern const char conf_builtin_text[];

#endif
