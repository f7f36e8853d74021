/* smtp_proto.c - pure parsing of SMTP: command lines, paths (RFC 5321 4.1.2),
 * MAIL parameters (RFC 1870 SIZE, RFC 6152 BODY), reply lines, HELO names.
 *
 * No I/O, no allocation, no locale: character classes are spelled out so
 * that a byte means the same thing everywhere. Every input is hostile and
 * every length is checked before a byte is copied.
 */
#include "smtp_proto.h"

#include <arpa/inet.h>
#include <limits.h>
#include <string.h>

/* RFC 5321 says 64 for a local part but also says to accept longer ones;
 * VERP and SRS return paths regularly pass 64. sendmail's bound is 256. */
#define LOCAL_PART_LIMIT 256
#define DOMAIN_LABEL_MAX 63 /* RFC 1035 2.3.4 */
#define SIZE_DIGITS_MAX 20  /* RFC 1870: size-value ::= 1*20DIGIT */

static const char why_scan_from[] = "501 5.5.2 Syntax error in parameters scanning \"FROM\"";
static const char why_scan_to[] = "501 5.5.2 Syntax error in parameters scanning \"TO\"";
static const char why_bad_sender[] = "501 5.1.7 Bad sender address syntax";
static const char why_bad_rcpt[] = "501 5.1.3 Bad recipient address syntax";
static const char why_param_syntax[] = "501 5.5.4 Syntax error in parameters";
static const char why_param_unknown[] = "555 5.5.4 Unsupported parameter";

/* ---- character classes ------------------------------------------------ */

static bool is_alpha(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(unsigned char c)
{
    return is_alpha(c) || is_digit(c);
}

static bool is_wsp(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* RFC 5322 atext: what a dot-atom local part is made of. */
static bool is_atext(unsigned char c)
{
    return is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* RFC 5321 qtextSMTP: printable ASCII but '"' and '\\'. */
static bool is_qtext(unsigned char c)
{
    return c >= 32 && c <= 126 && c != '"' && c != '\\';
}

/* quoted-pairSMTP = backslash %d32-126 */
static bool is_quoted_pair_char(unsigned char c)
{
    return c >= 32 && c <= 126;
}

/* Host name characters; '_' is tolerated as sendmail does (it is common in
 * internal names even though RFC 952 does not allow it). */
static bool is_ldh(unsigned char c)
{
    return is_alnum(c) || c == '-' || c == '_';
}

static unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* True when s[0..len) equals the NUL-terminated word, ignoring ASCII case. */
static bool equals_nocase(const char *s, size_t len, const char *word)
{
    size_t i;
    for (i = 0; i < len; i++)
        if (word[i] == '\0' ||
            ascii_lower((unsigned char)s[i]) != ascii_lower((unsigned char)word[i]))
            return false;
    return word[i] == '\0';
}

static bool starts_with_nocase(const char *s, size_t len, const char *prefix)
{
    size_t plen = strlen(prefix);
    return len >= plen && equals_nocase(s, plen, prefix);
}

static size_t skip_wsp(const char *s, size_t len, size_t pos)
{
    while (pos < len && is_wsp((unsigned char)s[pos]))
        pos++;
    return pos;
}

/* ---- command lines ------------------------------------------------------ */

static const struct {
    const char *name;
    enum smtp_verb verb;
} verb_table[] = {
    {"HELO", SMTP_VERB_HELO}, {"EHLO", SMTP_VERB_EHLO}, {"MAIL", SMTP_VERB_MAIL},
    {"RCPT", SMTP_VERB_RCPT}, {"DATA", SMTP_VERB_DATA}, {"RSET", SMTP_VERB_RSET},
    {"NOOP", SMTP_VERB_NOOP}, {"QUIT", SMTP_VERB_QUIT}, {"VRFY", SMTP_VERB_VRFY},
    {"EXPN", SMTP_VERB_EXPN}, {"HELP", SMTP_VERB_HELP}, {"STARTTLS", SMTP_VERB_STARTTLS},
    {"AUTH", SMTP_VERB_AUTH}, {"BDAT", SMTP_VERB_BDAT}, {"ETRN", SMTP_VERB_ETRN},
};

static enum smtp_verb lookup_verb(const char *word, size_t len)
{
    for (size_t i = 0; i < sizeof verb_table / sizeof verb_table[0]; i++)
        if (equals_nocase(word, len, verb_table[i].name))
            return verb_table[i].verb;
    return SMTP_VERB_UNKNOWN;
}

/* NUL and control characters other than TAB have no place in a command;
 * DEL counts as a control character. Bytes >= 0x80 are left to the parsers
 * of the arguments. */
static bool command_bytes_ok(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

int smtp_parse_command(const char *line, size_t len, struct smtp_command *cmd)
{
    cmd->verb = SMTP_VERB_UNKNOWN;
    cmd->arg = "";
    cmd->arglen = 0;
    if (!command_bytes_ok(line, len))
        return -1;

    /* The verb is the first word and ends at a space: "HELOX" and "HELO\tx"
     * are unknown verbs, not HELO. */
    size_t verb_end = 0;
    while (verb_end < len && line[verb_end] != ' ')
        verb_end++;
    cmd->verb = lookup_verb(line, verb_end);

    size_t start = skip_wsp(line, len, verb_end);
    size_t end = len;
    while (end > start && is_wsp((unsigned char)line[end - 1]))
        end--;
    if (end > start) {
        cmd->arg = line + start;
        cmd->arglen = end - start;
    }
    return 0;
}

/* ---- domains and address literals -------------------------------------- */

/* RFC 5321 Domain: sub-domain *("." sub-domain), sub-domain = Let-dig
 * [Ldh-str] (no hyphen at either end), at most 63 bytes a label and 255 in
 * all. One trailing dot (an absolute name) is accepted, as sendmail does. */
static bool valid_domain(const char *s, size_t len)
{
    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0 || len > SMTP_DOMAIN_MAX)
        return false;
    size_t label_start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '.') {
            if (!is_ldh((unsigned char)s[i]))
                return false;
            continue;
        }
        size_t label_len = i - label_start;
        if (label_len == 0 || label_len > DOMAIN_LABEL_MAX || s[label_start] == '-' ||
            s[i - 1] == '-')
            return false;
        label_start = i + 1;
    }
    return true;
}

/* RFC 5321 IPv4-address-literal: four 1..3 digit numbers up to 255. */
static bool valid_ipv4(const char *s, size_t len)
{
    size_t pos = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (pos >= len || s[pos] != '.')
                return false;
            pos++;
        }
        unsigned value = 0;
        size_t digits = 0;
        while (pos < len && is_digit((unsigned char)s[pos]) && digits < 3) {
            value = value * 10 + (unsigned)(s[pos] - '0');
            pos++;
            digits++;
        }
        if (digits == 0 || value > 255)
            return false;
    }
    return pos == len;
}

static bool valid_ipv6(const char *s, size_t len)
{
    char text[INET6_ADDRSTRLEN + 1];
    unsigned char binary[16];
    if (len == 0 || len >= sizeof text || memchr(s, '\0', len) != NULL)
        return false;
    memcpy(text, s, len);
    text[len] = '\0';
    return inet_pton(AF_INET6, text, binary) == 1;
}

/* "[192.0.2.1]" or "[IPv6:2001:db8::1]". General address literals (other
 * tags) are refused: nothing can deliver to them. */
static bool valid_address_literal(const char *s, size_t len)
{
    if (len < 2 || s[0] != '[' || s[len - 1] != ']')
        return false;
    const char *inner = s + 1;
    size_t inner_len = len - 2;
    if (starts_with_nocase(inner, inner_len, "IPv6:"))
        return valid_ipv6(inner + 5, inner_len - 5);
    return valid_ipv4(inner, inner_len);
}

static bool valid_domain_or_literal(const char *s, size_t len)
{
    if (len > 0 && s[0] == '[')
        return valid_address_literal(s, len);
    return valid_domain(s, len);
}

/* ---- local parts and mailboxes ----------------------------------------- */

/* Length of the quoted string at s[0] ('"' ... '"'), or 0 when it is not a
 * well-formed quotedSMTP string. */
static size_t quoted_string_len(const char *s, size_t len)
{
    if (len == 0 || s[0] != '"')
        return 0;
    for (size_t i = 1; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"')
            return i + 1;
        if (c == '\\') {
            if (i + 1 >= len || !is_quoted_pair_char((unsigned char)s[i + 1]))
                return 0;
            i++;
        } else if (!is_qtext(c)) {
            return 0;
        }
    }
    return 0; /* no closing quote */
}

/* Length of the dot-string at s[0] (atoms separated by single dots), or 0
 * when it is malformed. Stops at the first byte that is neither atext nor a
 * dot. */
static size_t dot_string_len(const char *s, size_t len)
{
    size_t i = 0;
    bool need_atom = true;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (is_atext(c)) {
            need_atom = false;
        } else if (c == '.' && !need_atom) {
            need_atom = true;
        } else {
            break;
        }
        i++;
    }
    return need_atom ? 0 : i;
}

static size_t local_part_len(const char *s, size_t len)
{
    if (len > 0 && s[0] == '"')
        return quoted_string_len(s, len);
    return dot_string_len(s, len);
}

enum path_kind { PATH_SENDER, PATH_RECIPIENT };

/* Mailbox = Local-part "@" ( Domain / address-literal ). Without a domain:
 * a recipient may only be the bare "postmaster" (RFC 5321 4.5.1); a sender
 * may be any local part, because sendmail decides about unqualified senders
 * after parsing (553 "Domain name required" from the network, accepted from
 * the local submission socket), and so does smtp_session.c. */
static bool valid_mailbox(const char *s, size_t len, enum path_kind kind)
{
    size_t local_len = local_part_len(s, len);
    if (local_len == 0 || local_len > LOCAL_PART_LIMIT)
        return false;
    if (local_len == len)
        return kind == PATH_SENDER || equals_nocase(s, len, "postmaster");
    if (s[local_len] != '@')
        return false;
    return valid_domain_or_literal(s + local_len + 1, len - local_len - 1);
}

/* A-d-l = At-domain *( "," At-domain ), At-domain = "@" Domain. */
static bool valid_source_route(const char *s, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != ',')
            continue;
        if (i - start < 2 || s[start] != '@' || !valid_domain(s + start + 1, i - start - 1))
            return false;
        start = i + 1;
    }
    return true;
}

/* The inside of <...> (or a bare address): an optional source route, then a
 * mailbox. On success the mailbox is copied into path->addr. */
static bool parse_path_inner(const char *s, size_t len, enum path_kind kind, struct smtp_path *path)
{
    if (len > 0 && s[0] == '@') {
        const char *colon = memchr(s, ':', len);
        if (colon == NULL || !valid_source_route(s, (size_t)(colon - s)))
            return false;
        path->had_source_route = true;
        len -= (size_t)(colon - s) + 1;
        s = colon + 1;
    }
    if (len == 0 || len >= SMTP_PATH_MAX || !valid_mailbox(s, len, kind))
        return false;
    memcpy(path->addr, s, len);
    path->addr[len] = '\0';
    path->addrlen = len;
    return true;
}

/* Finds the end of the path token that starts at arg[pos]: just after the
 * '>' of "<...>", or at the first blank outside quotes of a bare address.
 * Quotes and backslash pairs inside a quoted local part are skipped so that
 * "<\"a>b\"@x>" is read whole. Returns false when brackets or quotes do not
 * balance. */
static bool find_path_end(const char *arg, size_t len, size_t pos, size_t *end)
{
    bool angled = arg[pos] == '<';
    bool in_quotes = false;
    for (size_t i = angled ? pos + 1 : pos; i < len; i++) {
        char c = arg[i];
        if (in_quotes) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_quotes = false;
        } else if (c == '"') {
            in_quotes = true;
        } else if (angled && c == '>') {
            *end = i + 1;
            return true;
        } else if (!angled && is_wsp((unsigned char)c)) {
            *end = i;
            return true;
        }
    }
    if (angled || in_quotes)
        return false;
    *end = len;
    return true;
}

/* Parses the path at arg[pos] into `path`; *next is set after it. */
static bool parse_path(const char *arg, size_t len, size_t pos, enum path_kind kind,
                       struct smtp_path *path, size_t *next)
{
    size_t end;
    if (!find_path_end(arg, len, pos, &end))
        return false;
    if (end < len && !is_wsp((unsigned char)arg[end]))
        return false; /* "<a@b>x" */
    *next = end;
    if (arg[pos] != '<')
        return parse_path_inner(arg + pos, end - pos, kind, path);
    if (end - pos == 2) {
        path->is_null = true; /* "<>" */
        return kind == PATH_SENDER;
    }
    return parse_path_inner(arg + pos + 1, end - pos - 2, kind, path);
}

static void path_clear(struct smtp_path *path)
{
    path->addr[0] = '\0';
    path->addrlen = 0;
    path->had_source_route = false;
    path->is_null = false;
}

/* ---- ESMTP parameters --------------------------------------------------- */

/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
static bool valid_param_keyword(const char *s, size_t len)
{
    if (len == 0 || !is_alnum((unsigned char)s[0]))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!is_alnum((unsigned char)s[i]) && s[i] != '-')
            return false;
    return true;
}

/* esmtp-value = 1*(%d33-60 / %d62-126) */
static bool valid_param_value(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 33 || c > 126 || c == '=')
            return false;
    }
    return true;
}

/* SIZE=digits; a value beyond long long is kept as LLONG_MAX, which any
 * limit refuses anyway. */
static bool parse_size_value(const char *s, size_t len, long long *size)
{
    if (len == 0 || len > SIZE_DIGITS_MAX)
        return false;
    long long value = 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit((unsigned char)s[i]))
            return false;
        int digit = s[i] - '0';
        if (value > (LLONG_MAX - digit) / 10)
            value = LLONG_MAX;
        else
            value = value * 10 + digit;
    }
    *size = value;
    return true;
}

static bool parse_body_value(const char *s, size_t len, enum body_type *body)
{
    if (equals_nocase(s, len, "7BIT"))
        *body = BODY_7BIT;
    else if (equals_nocase(s, len, "8BITMIME"))
        *body = BODY_8BITMIME;
    else
        return false;
    return true;
}

struct param_seen {
    bool size;
    bool body;
};

/* One "KEYWORD[=value]" of MAIL. `params` is NULL for RCPT, which takes
 * none yet. A keyword we know but with a bad or repeated value is a syntax
 * error; a well-formed keyword we do not know is unsupported. */
static enum smtp_param_error parse_param(const char *s, size_t len, struct smtp_mail_params *params,
                                         struct param_seen *seen)
{
    const char *eq = memchr(s, '=', len);
    size_t key_len = eq != NULL ? (size_t)(eq - s) : len;
    if (!valid_param_keyword(s, key_len))
        return SMTP_PARAM_SYNTAX;
    const char *value = eq != NULL ? eq + 1 : "";
    size_t value_len = eq != NULL ? len - key_len - 1 : 0;
    if (eq != NULL && !valid_param_value(value, value_len))
        return SMTP_PARAM_SYNTAX;
    if (params != NULL && equals_nocase(s, key_len, "SIZE")) {
        if (seen->size || !parse_size_value(value, value_len, &params->size))
            return SMTP_PARAM_SYNTAX;
        seen->size = true;
        return SMTP_PARAM_OK;
    }
    if (params != NULL && equals_nocase(s, key_len, "BODY")) {
        if (seen->body || !parse_body_value(value, value_len, &params->body))
            return SMTP_PARAM_SYNTAX;
        seen->body = true;
        return SMTP_PARAM_OK;
    }
    return SMTP_PARAM_UNKNOWN;
}

/* The blank-separated parameters from arg[pos] to the end. */
static enum smtp_param_error parse_params(const char *arg, size_t len, size_t pos,
                                          struct smtp_mail_params *params)
{
    struct param_seen seen = {false, false};
    for (pos = skip_wsp(arg, len, pos); pos < len; pos = skip_wsp(arg, len, pos)) {
        size_t end = pos;
        while (end < len && !is_wsp((unsigned char)arg[end]))
            end++;
        enum smtp_param_error err = parse_param(arg + pos, end - pos, params, &seen);
        if (err != SMTP_PARAM_OK)
            return err;
        pos = end;
    }
    return SMTP_PARAM_OK;
}

static const char *param_error_text(enum smtp_param_error err)
{
    return err == SMTP_PARAM_UNKNOWN ? why_param_unknown : why_param_syntax;
}

/* ---- MAIL and RCPT ------------------------------------------------------ */

/* "FROM:" or "TO:" (any case), blanks, then the path. Returns the position
 * of the path, or 0 when the keyword or the path is missing. */
static size_t path_start(const char *arg, size_t len, const char *keyword)
{
    size_t pos = skip_wsp(arg, len, 0);
    if (!starts_with_nocase(arg + pos, len - pos, keyword))
        return 0;
    pos = skip_wsp(arg, len, pos + strlen(keyword));
    return pos < len ? pos : 0;
}

int smtp_parse_mail(const char *arg, size_t len, struct smtp_path *path,
                    struct smtp_mail_params *params, const char **why)
{
    path_clear(path);
    params->size = -1;
    params->body = BODY_7BIT;
    *why = NULL;
    size_t pos = path_start(arg, len, "FROM:");
    if (pos == 0) {
        *why = why_scan_from;
        return -1;
    }
    if (!parse_path(arg, len, pos, PATH_SENDER, path, &pos)) {
        path_clear(path);
        *why = why_bad_sender;
        return -1;
    }
    enum smtp_param_error err = parse_params(arg, len, pos, params);
    if (err != SMTP_PARAM_OK) {
        *why = param_error_text(err);
        return -1;
    }
    return 0;
}

int smtp_parse_rcpt(const char *arg, size_t len, struct smtp_path *path, const char **why)
{
    path_clear(path);
    *why = NULL;
    size_t pos = path_start(arg, len, "TO:");
    if (pos == 0) {
        *why = why_scan_to;
        return -1;
    }
    if (!parse_path(arg, len, pos, PATH_RECIPIENT, path, &pos)) {
        path_clear(path);
        *why = why_bad_rcpt;
        return -1;
    }
    enum smtp_param_error err = parse_params(arg, len, pos, NULL);
    if (err != SMTP_PARAM_OK) {
        *why = param_error_text(err);
        return -1;
    }
    return 0;
}

void smtp_split_addr(const char *addr, size_t len, const char **local, size_t *locallen,
                     const char **domain, size_t *domainlen)
{
    size_t at = len; /* position of the last '@' outside quotes, len if none */
    bool in_quotes = false;
    for (size_t i = 0; i < len; i++) {
        if (in_quotes && addr[i] == '\\')
            i++;
        else if (addr[i] == '"')
            in_quotes = !in_quotes;
        else if (!in_quotes && addr[i] == '@')
            at = i;
    }
    *local = addr;
    *locallen = at;
    if (at < len) {
        *domain = addr + at + 1;
        *domainlen = len - at - 1;
    } else {
        *domain = "";
        *domainlen = 0;
    }
}

/* ---- replies and HELO --------------------------------------------------- */

int smtp_parse_reply_line(const char *line, size_t len, bool *last)
{
    if (len < 3 || !is_digit((unsigned char)line[0]) || !is_digit((unsigned char)line[1]) ||
        !is_digit((unsigned char)line[2]))
        return -1;
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (code < 200 || code > 599)
        return -1;
    if (len == 3 || line[3] == ' ') {
        *last = true;
        return code;
    }
    if (line[3] == '-') {
        *last = false;
        return code;
    }
    return -1;
}

/* sendmail checks only the characters of a HELO name, not its structure:
 * letters, digits, '-', '.', '_'. We ask in addition for one letter or
 * digit, so that "." or "-" alone is refused. */
static bool valid_helo_name(const char *s, size_t len)
{
    bool has_alnum = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_ldh(c) && c != '.')
            return false;
        has_alnum = has_alnum || is_alnum(c);
    }
    return has_alnum;
}

bool smtp_valid_helo(const char *arg, size_t len)
{
    if (len == 0 || len > SMTP_DOMAIN_MAX)
        return false;
    if (arg[0] == '[')
        return valid_address_literal(arg, len);
    return valid_helo_name(arg, len);
}
