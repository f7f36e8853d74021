/* smtp_proto.h - pure parsing of SMTP: command lines, paths, parameters,
 * reply lines. No I/O, no allocation: every result points into the caller's
 * buffer or is copied into a bounded field. Fuzzed by fuzz/fuzz_smtp_proto.c.
 */
#ifndef JM_SMTP_PROTO_H
#define JM_SMTP_PROTO_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_PATH_MAX 512 /* bytes of a stored address (RFC 5321: path <= 256) */
#define SMTP_LOCAL_MAX 64 /* RFC 5321 4.5.3.1.1, enforced as sendmail does: 256 */
#define SMTP_DOMAIN_MAX 255

enum smtp_verb {
    SMTP_VERB_UNKNOWN = 0,
    SMTP_VERB_HELO,
    SMTP_VERB_EHLO,
    SMTP_VERB_MAIL,
    SMTP_VERB_RCPT,
    SMTP_VERB_DATA,
    SMTP_VERB_RSET,
    SMTP_VERB_NOOP,
    SMTP_VERB_QUIT,
    SMTP_VERB_VRFY,
    SMTP_VERB_EXPN,
    SMTP_VERB_HELP,
    SMTP_VERB_STARTTLS,
    SMTP_VERB_AUTH,
    SMTP_VERB_BDAT,
    SMTP_VERB_ETRN,
};

struct smtp_command {
    enum smtp_verb verb;
    const char *arg; /* after the verb and one space, trailing spaces removed; "" if none */
    size_t arglen;
};

/* Splits a command line (without its CRLF) into verb and argument. The verb
 * is case-insensitive. Returns 0, or -1 when the line holds a NUL byte or a
 * control character other than TAB (the caller answers 500 5.5.1). */
int smtp_parse_command(const char *line, size_t len, struct smtp_command *cmd);

enum body_type { BODY_7BIT = 0, BODY_8BITMIME };

struct smtp_path {
    char addr[SMTP_PATH_MAX]; /* "local@domain", or "" for <>; source route dropped */
    size_t addrlen;
    bool had_source_route; /* <@a,@b:user@c> was given */
    bool is_null;          /* <> */
};

struct smtp_mail_params {
    long long size;      /* SIZE=, -1 when absent */
    enum body_type body; /* BODY= */
};

enum smtp_param_error {
    SMTP_PARAM_OK = 0,
    SMTP_PARAM_SYNTAX,  /* 501 5.5.4 */
    SMTP_PARAM_UNKNOWN, /* 555 5.5.4 */
};

/* Parses the argument of MAIL ("FROM:<a@b> SIZE=12 BODY=8BITMIME") or RCPT
 * ("TO:<a@b>"). Whitespace after the colon is tolerated (sendmail does). The
 * address is checked against RFC 5321's grammar (dot-atom or quoted local
 * part; domain, or address literal); a bare address without <> is accepted as
 * sendmail does. Returns 0, or -1 with a reply text in `why` (e.g. "501 5.1.7
 * Bad sender address syntax"), which the caller sends as it is. */
int smtp_parse_mail(const char *arg, size_t len, struct smtp_path *path,
                    struct smtp_mail_params *params, const char **why);
int smtp_parse_rcpt(const char *arg, size_t len, struct smtp_path *path, const char **why);

/* Splits an address into local part and domain (the last '@' outside quotes).
 * domain is "" when there is none. */
void smtp_split_addr(const char *addr, size_t len, const char **local, size_t *locallen,
                     const char **domain, size_t *domainlen);

/* A reply line from a server: "250-text" or "250 text". Returns the code
 * (200..599) and sets *last to true for the last line of a reply, or -1 for a
 * line that is not a reply. */
int smtp_parse_reply_line(const char *line, size_t len, bool *last);

/* Validates a HELO/EHLO argument: a domain or an address literal, bounded.
 * Returns true when acceptable. */
bool smtp_valid_helo(const char *arg, size_t len);

#endif
