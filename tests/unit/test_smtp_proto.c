/* Unit tests of the SMTP parsers (smtp_proto.c), table-driven. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "smtp_proto.h"

static const char scan_from[] = "501 5.5.2 Syntax error in parameters scanning \"FROM\"";
static const char scan_to[] = "501 5.5.2 Syntax error in parameters scanning \"TO\"";
static const char bad_sender[] = "501 5.1.7 Bad sender address syntax";
static const char bad_rcpt[] = "501 5.1.3 Bad recipient address syntax";
static const char param_syntax[] = "501 5.5.4 Syntax error in parameters";
static const char param_unknown[] = "555 5.5.4 Unsupported parameter";

/* ---- smtp_parse_command --------------------------------------------------- */

struct command_case {
    const char *line;
    size_t len; /* 0: strlen(line) */
    int ret;
    enum smtp_verb verb;
    const char *arg;
};

static const struct command_case command_cases[] = {
    {"HELO mail.example.org", 0, 0, SMTP_VERB_HELO, "mail.example.org"},
    {"EHLO x", 0, 0, SMTP_VERB_EHLO, "x"},
    {"ehlo x", 0, 0, SMTP_VERB_EHLO, "x"},
    {"eHlO x", 0, 0, SMTP_VERB_EHLO, "x"},
    {"MAIL FROM:<a@b>", 0, 0, SMTP_VERB_MAIL, "FROM:<a@b>"},
    {"RCPT TO:<a@b>", 0, 0, SMTP_VERB_RCPT, "TO:<a@b>"},
    {"DATA", 0, 0, SMTP_VERB_DATA, ""},
    {"RSET", 0, 0, SMTP_VERB_RSET, ""},
    {"NOOP", 0, 0, SMTP_VERB_NOOP, ""},
    {"NOOP anything goes", 0, 0, SMTP_VERB_NOOP, "anything goes"},
    {"QUIT", 0, 0, SMTP_VERB_QUIT, ""},
    {"quit", 0, 0, SMTP_VERB_QUIT, ""},
    {"VRFY root", 0, 0, SMTP_VERB_VRFY, "root"},
    {"EXPN list", 0, 0, SMTP_VERB_EXPN, "list"},
    {"HELP", 0, 0, SMTP_VERB_HELP, ""},
    {"HELP DATA", 0, 0, SMTP_VERB_HELP, "DATA"},
    {"STARTTLS", 0, 0, SMTP_VERB_STARTTLS, ""},
    {"starttls", 0, 0, SMTP_VERB_STARTTLS, ""},
    {"AUTH PLAIN AGZvbwBiYXI=", 0, 0, SMTP_VERB_AUTH, "PLAIN AGZvbwBiYXI="},
    {"BDAT 100 LAST", 0, 0, SMTP_VERB_BDAT, "100 LAST"},
    {"ETRN example.org", 0, 0, SMTP_VERB_ETRN, "example.org"},
    /* blanks: one or more spaces after the verb, trailing blanks removed */
    {"HELO   x", 0, 0, SMTP_VERB_HELO, "x"},
    {"HELO x   ", 0, 0, SMTP_VERB_HELO, "x"},
    {"HELO x \t ", 0, 0, SMTP_VERB_HELO, "x"},
    {"HELO  \t x", 0, 0, SMTP_VERB_HELO, "x"},
    {"DATA ", 0, 0, SMTP_VERB_DATA, ""},
    {"DATA    ", 0, 0, SMTP_VERB_DATA, ""},
    {"MAIL FROM:<a@b>  SIZE=1", 0, 0, SMTP_VERB_MAIL, "FROM:<a@b>  SIZE=1"},
    {"HELO a\tb", 0, 0, SMTP_VERB_HELO, "a\tb"},
    /* a verb must be followed by a space or the end */
    {"HELOX", 0, 0, SMTP_VERB_UNKNOWN, ""},
    {"HELOX y", 0, 0, SMTP_VERB_UNKNOWN, "y"},
    {"HELO\tx", 0, 0, SMTP_VERB_UNKNOWN, ""},
    {"MAIL:FROM:<a@b>", 0, 0, SMTP_VERB_UNKNOWN, ""},
    {"HEL", 0, 0, SMTP_VERB_UNKNOWN, ""},
    {"STARTTLSX", 0, 0, SMTP_VERB_UNKNOWN, ""},
    {"START", 0, 0, SMTP_VERB_UNKNOWN, ""},
    {" HELO x", 0, 0, SMTP_VERB_UNKNOWN, "HELO x"},
    {"", 0, 0, SMTP_VERB_UNKNOWN, ""},
    {"GET / HTTP/1.0", 0, 0, SMTP_VERB_UNKNOWN, "/ HTTP/1.0"},
    {"HELO \xc3\xa9", 0, 0, SMTP_VERB_HELO, "\xc3\xa9"},
    /* NUL and control characters but TAB are refused */
    {"HELO a\0b", 8, -1, SMTP_VERB_UNKNOWN, ""},
    {"\0", 1, -1, SMTP_VERB_UNKNOWN, ""},
    {"HELO x\r", 0, -1, SMTP_VERB_UNKNOWN, ""},
    {"HELO x\n", 0, -1, SMTP_VERB_UNKNOWN, ""},
    {"MAIL FROM:<a\x01@b>", 0, -1, SMTP_VERB_UNKNOWN, ""},
    {"\x1b[1mQUIT", 0, -1, SMTP_VERB_UNKNOWN, ""},
    {"QUIT\x7f", 0, -1, SMTP_VERB_UNKNOWN, ""},
    {"\x1f", 0, -1, SMTP_VERB_UNKNOWN, ""},
};

static void test_command_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof command_cases / sizeof command_cases[0]; i++) {
        const struct command_case *c = &command_cases[i];
        size_t len = c->len != 0 ? c->len : strlen(c->line);
        struct smtp_command cmd;
        int ret = smtp_parse_command(c->line, len, &cmd);
        if (ret != c->ret || cmd.verb != c->verb)
            print_error("case %zu (%s): ret %d verb %d\n", i, c->line, ret, cmd.verb);
        assert_int_equal(ret, c->ret);
        assert_int_equal(cmd.verb, c->verb);
        assert_int_equal(cmd.arglen, strlen(c->arg));
        assert_memory_equal(cmd.arg, c->arg, cmd.arglen);
        if (cmd.arglen > 0) /* the argument points into the line */
            assert_true(cmd.arg > c->line && cmd.arg + cmd.arglen <= c->line + len);
    }
}

/* ---- smtp_parse_mail ------------------------------------------------------ */

struct mail_case {
    const char *arg;
    int ret;
    const char *addr;
    bool is_null, had_source_route;
    long long size;
    enum body_type body;
    const char *why;
};

#define B7 BODY_7BIT
#define B8 BODY_8BITMIME

static const struct mail_case mail_cases[] = {
    {"FROM:<a@example.org>", 0, "a@example.org", false, false, -1, B7, NULL},
    {"from:<a@example.org>", 0, "a@example.org", false, false, -1, B7, NULL},
    {"From:<A.B@Example.ORG>", 0, "A.B@Example.ORG", false, false, -1, B7, NULL},
    {"FROM: <a@example.org>", 0, "a@example.org", false, false, -1, B7, NULL},
    {"FROM:  \t <a@example.org>", 0, "a@example.org", false, false, -1, B7, NULL},
    {"FROM:<>", 0, "", true, false, -1, B7, NULL},
    {"FROM: <>", 0, "", true, false, -1, B7, NULL},
    {"FROM:<> SIZE=100", 0, "", true, false, 100, B7, NULL},
    /* a bare address is accepted as sendmail does */
    {"FROM:a@example.org", 0, "a@example.org", false, false, -1, B7, NULL},
    {"FROM: a@example.org SIZE=5", 0, "a@example.org", false, false, 5, B7, NULL},
    /* local parts */
    {"FROM:<first.last@x.org>", 0, "first.last@x.org", false, false, -1, B7, NULL},
    {"FROM:<a+tag@x.org>", 0, "a+tag@x.org", false, false, -1, B7, NULL},
    {"FROM:<!#$%&'*+-/=?^_`{|}~@x.org>", 0, "!#$%&'*+-/=?^_`{|}~@x.org", false, false, -1, B7,
     NULL},
    {"FROM:<\"a b\"@x.org>", 0, "\"a b\"@x.org", false, false, -1, B7, NULL},
    {"FROM:<\"a@b\"@x.org>", 0, "\"a@b\"@x.org", false, false, -1, B7, NULL},
    {"FROM:<\"a>b\"@x.org>", 0, "\"a>b\"@x.org", false, false, -1, B7, NULL},
    {"FROM:<\"a\\\"b\"@x.org>", 0, "\"a\\\"b\"@x.org", false, false, -1, B7, NULL},
    {"FROM:<\"\"@x.org>", 0, "\"\"@x.org", false, false, -1, B7, NULL},
    {"FROM:\"a b\"@x.org SIZE=1", 0, "\"a b\"@x.org", false, false, 1, B7, NULL},
    /* domains and address literals */
    {"FROM:<a@x>", 0, "a@x", false, false, -1, B7, NULL},
    {"FROM:<a@x.org.>", 0, "a@x.org.", false, false, -1, B7, NULL},
    {"FROM:<a@my_host.x.org>", 0, "a@my_host.x.org", false, false, -1, B7, NULL},
    {"FROM:<a@a-b.x.org>", 0, "a@a-b.x.org", false, false, -1, B7, NULL},
    {"FROM:<a@[192.0.2.1]>", 0, "a@[192.0.2.1]", false, false, -1, B7, NULL},
    {"FROM:<a@[IPv6:2001:db8::1]>", 0, "a@[IPv6:2001:db8::1]", false, false, -1, B7, NULL},
    {"FROM:<a@[ipv6:::1]>", 0, "a@[ipv6:::1]", false, false, -1, B7, NULL},
    {"FROM:<a@[IPv6:::ffff:192.0.2.1]>", 0, "a@[IPv6:::ffff:192.0.2.1]", false, false, -1, B7,
     NULL},
    /* source routes are accepted and dropped */
    {"FROM:<@a.org:u@c.org>", 0, "u@c.org", false, true, -1, B7, NULL},
    {"FROM:<@a.org,@b.org:u@c.org>", 0, "u@c.org", false, true, -1, B7, NULL},
    /* parameters */
    {"FROM:<a@b> SIZE=0", 0, "a@b", false, false, 0, B7, NULL},
    {"FROM:<a@b> size=12345", 0, "a@b", false, false, 12345, B7, NULL},
    {"FROM:<a@b> SIZE=99999999999999999999", 0, "a@b", false, false, 9223372036854775807LL, B7,
     NULL},
    {"FROM:<a@b> SIZE=9223372036854775807", 0, "a@b", false, false, 9223372036854775807LL, B7,
     NULL},
    {"FROM:<a@b> SIZE=9223372036854775808", 0, "a@b", false, false, 9223372036854775807LL, B7,
     NULL},
    {"FROM:<a@b> SIZE=00000000000000000042", 0, "a@b", false, false, 42, B7, NULL},
    {"FROM:<a@b> BODY=8BITMIME", 0, "a@b", false, false, -1, B8, NULL},
    {"FROM:<a@b> body=8bitmime", 0, "a@b", false, false, -1, B8, NULL},
    {"FROM:<a@b> BODY=7BIT", 0, "a@b", false, false, -1, B7, NULL},
    {"FROM:<a@b> SIZE=10 BODY=8BITMIME", 0, "a@b", false, false, 10, B8, NULL},
    {"FROM:<a@b>   BODY=8BITMIME \t SIZE=10", 0, "a@b", false, false, 10, B8, NULL},
    {"FROM:<a@b> SIZE=abc", -1, "a@b", false, false, -1, B7, param_syntax},
    {"FROM:<a@b> SIZE=", -1, "a@b", false, false, -1, B7, param_syntax},
    {"FROM:<a@b> SIZE", -1, "a@b", false, false, -1, B7, param_syntax},
    {"FROM:<a@b> SIZE=-1", -1, "a@b", false, false, -1, B7, param_syntax},
    {"FROM:<a@b> SIZE=+1", -1, "a@b", false, false, -1, B7, param_syntax},
    {"FROM:<a@b> SIZE=1k", -1, "a@b", false, false, -1, B7, param_syntax},
    {"FROM:<a@b> SIZE=123456789012345678901", -1, "a@b", false, false, -1, B7, param_syntax},
    {"FROM:<a@b> SIZE=1 SIZE=2", -1, "a@b", false, false, 1, B7, param_syntax},
    {"FROM:<a@b> BODY=BINARYMIME", -1, "a@b", false, false, -1, B7, param_syntax},
    {"FROM:<a@b> BODY=8BIT", -1, "a@b", false, false, -1, B7, param_syntax},
    {"FROM:<a@b> BODY=", -1, "a@b", false, false, -1, B7, param_syntax},
    {"FROM:<a@b> BODY=7BIT BODY=7BIT", -1, "a@b", false, false, -1, B7, param_syntax},
    {"FROM:<a@b> =x", -1, "a@b", false, false, -1, B7, param_syntax},
    {"FROM:<a@b> -X=1", -1, "a@b", false, false, -1, B7, param_syntax},
    {"FROM:<a@b> SI_ZE=1", -1, "a@b", false, false, -1, B7, param_syntax},
    {"FROM:<a@b> X=a=b", -1, "a@b", false, false, -1, B7, param_syntax},
    {"FROM:<a@b> X=\xc3\xa9", -1, "a@b", false, false, -1, B7, param_syntax},
    {"FROM:<a@b> RET=HDRS", -1, "a@b", false, false, -1, B7, param_unknown},
    {"FROM:<a@b> ENVID=x", -1, "a@b", false, false, -1, B7, param_unknown},
    {"FROM:<a@b> SMTPUTF8", -1, "a@b", false, false, -1, B7, param_unknown},
    {"FROM:<a@b> AUTH=<>", -1, "a@b", false, false, -1, B7, param_unknown},
    {"FROM:<a@b> SIZE=1 X-FOO=bar", -1, "a@b", false, false, 1, B7, param_unknown},
    /* missing FROM: or address */
    {"", -1, "", false, false, -1, B7, scan_from},
    {"FROM", -1, "", false, false, -1, B7, scan_from},
    {"FROM:", -1, "", false, false, -1, B7, scan_from},
    {"FROM:   ", -1, "", false, false, -1, B7, scan_from},
    {"FROM <a@b>", -1, "", false, false, -1, B7, scan_from},
    {"FROM :<a@b>", -1, "", false, false, -1, B7, scan_from},
    {"TO:<a@b>", -1, "", false, false, -1, B7, scan_from},
    {"FRO:<a@b>", -1, "", false, false, -1, B7, scan_from},
    /* an unqualified sender is left to the session (553 from the network) */
    {"FROM:<a>", 0, "a", false, false, -1, B7, NULL},
    {"FROM:<postmaster>", 0, "postmaster", false, false, -1, B7, NULL},
    {"FROM:www-data SIZE=10", 0, "www-data", false, false, 10, B7, NULL},
    {"FROM:<\"a b\">", 0, "\"a b\"", false, false, -1, B7, NULL},
    {"FROM:<@a.org:u>", 0, "u", false, true, -1, B7, NULL},
    /* bad addresses */
    {"FROM:<a@>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<@b>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@b", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@b>>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<<a@b>>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@b>x", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@b>SIZE=1", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:a@b>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@b c>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:< a@b>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@b >", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:< >", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@@b>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@b@c>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<.a@b>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a.@b>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a..b@c>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a(b)@c>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a,b@c>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a\\b@c>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<\xc3\xa9@b>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<\"a@b>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<\"a\"b@c>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<\"a\tb\"@c>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<\"a\\\x01\"@c>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:\"a b@c", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@b..c>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@.b>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@b..>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@.>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@-b.c>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@b-.c>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@b!c>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@b%c>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@[192.0.2.256]>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@[192.0.2]>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@[192.0.2.1.5]>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@[1922.0.2.1]>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@[192.0.2.1>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@192.0.2.1]>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@[]>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@[IPv6:]>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@[IPv6:2001:db8::g]>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@[IPv6:192.0.2.1]>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@[2001:db8::1]>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a@[x-tag:abc]>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<@a.org>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<@a.org:>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<@:u@c>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<@a,b:u@c>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<@a,:u@c>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<@[1.2.3.4]:u@c>", -1, "", false, false, -1, B7, bad_sender},
    {"FROM:<a:u@c>", -1, "", false, false, -1, B7, bad_sender},
};

static void test_mail_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof mail_cases / sizeof mail_cases[0]; i++) {
        const struct mail_case *c = &mail_cases[i];
        struct smtp_path path;
        struct smtp_mail_params params;
        const char *why = "unset";
        memset(&path, 'z', sizeof path);
        int ret = smtp_parse_mail(c->arg, strlen(c->arg), &path, &params, &why);
        if (ret != c->ret || (c->why != NULL && (why == NULL || strcmp(why, c->why) != 0)) ||
            strcmp(path.addr, c->addr) != 0)
            print_error("case %zu (%s): ret %d addr \"%s\" why \"%s\"\n", i, c->arg, ret, path.addr,
                        why != NULL ? why : "(null)");
        assert_int_equal(ret, c->ret);
        if (c->why == NULL)
            assert_null(why);
        else
            assert_string_equal(why, c->why);
        assert_string_equal(path.addr, c->addr);
        assert_int_equal(path.addrlen, strlen(c->addr));
        assert_int_equal(path.is_null, c->is_null);
        assert_int_equal(path.had_source_route, c->had_source_route);
        assert_true(params.size == c->size);
        assert_int_equal(params.body, c->body);
    }
}

/* ---- smtp_parse_rcpt ------------------------------------------------------ */

struct rcpt_case {
    const char *arg;
    int ret;
    const char *addr;
    bool had_source_route;
    const char *why;
};

static const struct rcpt_case rcpt_cases[] = {
    {"TO:<a@example.org>", 0, "a@example.org", false, NULL},
    {"to:<a@example.org>", 0, "a@example.org", false, NULL},
    {"To: <a@example.org>", 0, "a@example.org", false, NULL},
    {"TO:a@example.org", 0, "a@example.org", false, NULL},
    {"TO:<postmaster>", 0, "postmaster", false, NULL},
    {"TO:<PostMaster>", 0, "PostMaster", false, NULL},
    {"TO:postmaster", 0, "postmaster", false, NULL},
    {"TO:<postmaster@example.org>", 0, "postmaster@example.org", false, NULL},
    {"TO:<\"x y\"@example.org>", 0, "\"x y\"@example.org", false, NULL},
    {"TO:<a@[192.0.2.1]>", 0, "a@[192.0.2.1]", false, NULL},
    {"TO:<@relay.org:a@example.org>", 0, "a@example.org", true, NULL},
    {"TO:<a@example.org>   ", 0, "a@example.org", false, NULL},
    /* relay tricks stay in the address for the policy to judge */
    {"TO:<\"a@c\"@example.org>", 0, "\"a@c\"@example.org", false, NULL},
    {"TO:<a%c@example.org>", 0, "a%c@example.org", false, NULL},
    {"TO:<c!a@example.org>", 0, "c!a@example.org", false, NULL},
    /* the null path is for senders only */
    {"TO:<>", -1, "", false, bad_rcpt},
    {"TO:<a>", -1, "", false, bad_rcpt},
    {"TO:<postmaster2>", -1, "", false, bad_rcpt},
    {"TO:<\"postmaster\">", -1, "", false, bad_rcpt},
    {"TO:<a@>", -1, "", false, bad_rcpt},
    {"TO:<a@b", -1, "", false, bad_rcpt},
    {"TO:<a@b>x", -1, "", false, bad_rcpt},
    {"TO:<a@b c>", -1, "", false, bad_rcpt},
    {"TO:<a@b.c%d>", -1, "", false, bad_rcpt},
    {"TO:<a@b\xff>", -1, "", false, bad_rcpt},
    /* RCPT takes no parameters yet */
    {"TO:<a@b> NOTIFY=NEVER", -1, "a@b", false, param_unknown},
    {"TO:<a@b> ORCPT=rfc822;a@b", -1, "a@b", false, param_unknown},
    {"TO:<a@b> SIZE=1", -1, "a@b", false, param_unknown},
    {"TO:<a@b> =1", -1, "a@b", false, param_syntax},
    {"TO:<a@b> X=", -1, "a@b", false, param_syntax},
    /* missing TO: or address */
    {"", -1, "", false, scan_to},
    {"TO", -1, "", false, scan_to},
    {"TO:", -1, "", false, scan_to},
    {"TO: ", -1, "", false, scan_to},
    {"TO <a@b>", -1, "", false, scan_to},
    {"FROM:<a@b>", -1, "", false, scan_to},
};

static void test_rcpt_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rcpt_cases / sizeof rcpt_cases[0]; i++) {
        const struct rcpt_case *c = &rcpt_cases[i];
        struct smtp_path path;
        const char *why = "unset";
        memset(&path, 'z', sizeof path);
        int ret = smtp_parse_rcpt(c->arg, strlen(c->arg), &path, &why);
        if (ret != c->ret || strcmp(path.addr, c->addr) != 0)
            print_error("case %zu (%s): ret %d addr \"%s\"\n", i, c->arg, ret, path.addr);
        assert_int_equal(ret, c->ret);
        if (c->why == NULL)
            assert_null(why);
        else
            assert_string_equal(why, c->why);
        assert_string_equal(path.addr, c->addr);
        assert_int_equal(path.addrlen, strlen(c->addr));
        assert_false(path.is_null);
        assert_int_equal(path.had_source_route, c->had_source_route);
    }
}

/* The argument is not NUL-terminated: nothing past len may be read. */
static void test_mail_not_terminated(void **state)
{
    (void)state;
    static const char line[] = "FROM:<a@example.org> SIZE=12XYZ";
    struct smtp_path path;
    struct smtp_mail_params params;
    const char *why;
    assert_int_equal(smtp_parse_mail(line, strlen(line) - 3, &path, &params, &why), 0);
    assert_true(params.size == 12);
    assert_int_equal(smtp_parse_mail(line, 13, &path, &params, &why), -1);
    assert_string_equal(why, bad_sender);
    assert_int_equal(smtp_parse_rcpt("TO:<a@b>", 7, &path, &why), -1);
    assert_string_equal(why, bad_rcpt);
}

/* The way the session uses them: the command's argument goes to the parser. */
static void test_command_then_path(void **state)
{
    (void)state;
    static const char mail[] = "mail from: <a@example.org>  SIZE=10 body=8BITMIME  ";
    static const char rcpt[] = "RCPT  TO:<postmaster> ";
    struct smtp_command cmd;
    struct smtp_path path;
    struct smtp_mail_params params;
    const char *why;
    assert_int_equal(smtp_parse_command(mail, strlen(mail), &cmd), 0);
    assert_int_equal(cmd.verb, SMTP_VERB_MAIL);
    assert_int_equal(smtp_parse_mail(cmd.arg, cmd.arglen, &path, &params, &why), 0);
    assert_string_equal(path.addr, "a@example.org");
    assert_true(params.size == 10);
    assert_int_equal(params.body, BODY_8BITMIME);
    assert_int_equal(smtp_parse_command(rcpt, strlen(rcpt), &cmd), 0);
    assert_int_equal(cmd.verb, SMTP_VERB_RCPT);
    assert_int_equal(smtp_parse_rcpt(cmd.arg, cmd.arglen, &path, &why), 0);
    assert_string_equal(path.addr, "postmaster");
    /* "MAIL" alone: no argument, the parser says what is missing */
    assert_int_equal(smtp_parse_command("MAIL", 4, &cmd), 0);
    assert_int_equal(smtp_parse_mail(cmd.arg, cmd.arglen, &path, &params, &why), -1);
    assert_string_equal(why, scan_from);
}

/* ---- length bounds -------------------------------------------------------- */

static int mail_with(size_t local_len, const char *domain_label, size_t nlabels)
{
    static char arg[4096];
    size_t len = (size_t)snprintf(arg, sizeof arg, "FROM:<");
    memset(arg + len, 'l', local_len);
    len += local_len;
    arg[len++] = '@';
    for (size_t i = 0; i < nlabels; i++)
        len += (size_t)snprintf(arg + len, sizeof arg - len, "%s%s", i ? "." : "", domain_label);
    arg[len++] = '>';
    struct smtp_path path;
    struct smtp_mail_params params;
    const char *why;
    int ret = smtp_parse_mail(arg, len, &path, &params, &why);
    if (ret == 0)
        assert_int_equal(path.addrlen, len - strlen("FROM:<>"));
    else
        assert_string_equal(why, bad_sender);
    return ret;
}

static void test_length_bounds(void **state)
{
    (void)state;
    char label63[64], label64[65], label9[10];
    memset(label63, 'd', 63);
    label63[63] = '\0';
    memset(label64, 'd', 64);
    label64[64] = '\0';
    memset(label9, 'd', 9);
    label9[9] = '\0';
    /* a label holds 63 bytes */
    assert_int_equal(mail_with(1, label63, 1), 0);
    assert_int_equal(mail_with(1, label64, 1), -1);
    /* a domain holds 255 bytes: 25 labels of 9 + 24 dots = 249; 4 x 63 + 3 = 255 */
    assert_int_equal(mail_with(1, label9, 25), 0);
    assert_int_equal(mail_with(1, label63, 4), 0);
    assert_int_equal(mail_with(1, label63, 5), -1);
    assert_int_equal(mail_with(1, label9, 26), -1); /* 259 */
    /* a local part holds 256 bytes (sendmail's bound, not RFC 5321's 64) */
    assert_int_equal(mail_with(64, "x", 1), 0);
    assert_int_equal(mail_with(65, "x", 1), 0);
    assert_int_equal(mail_with(256, "x", 1), 0);
    assert_int_equal(mail_with(257, "x", 1), -1);
    /* the whole address must fit SMTP_PATH_MAX - 1 = 511: 256 + 1 + 254 */
    char label62[63];
    memset(label62, 'd', 62);
    label62[62] = '\0';
    assert_int_equal(mail_with(256, label63, 4), -1); /* 512 */
    char domain254[255];
    snprintf(domain254, sizeof domain254, "%s.%s.%s.%s", label63, label63, label63, label62);
    assert_int_equal(mail_with(256, domain254, 1), 0); /* 511 */
}

/* ---- smtp_split_addr ------------------------------------------------------ */

struct split_case {
    const char *addr, *local, *domain;
};

static const struct split_case split_cases[] = {
    {"a@b.org", "a", "b.org"},
    {"postmaster", "postmaster", ""},
    {"\"a@b\"@c.org", "\"a@b\"", "c.org"},
    {"\"a\\\"@b\"@c.org", "\"a\\\"@b\"", "c.org"},
    {"a@b@c", "a@b", "c"},
    {"a@", "a", ""},
    {"@b", "", "b"},
    {"", "", ""},
    {"\"a@b\"", "\"a@b\"", ""},
    {"a@[IPv6:::1]", "a", "[IPv6:::1]"},
};

static void test_split_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof split_cases / sizeof split_cases[0]; i++) {
        const struct split_case *c = &split_cases[i];
        const char *local, *domain;
        size_t local_len, domain_len;
        smtp_split_addr(c->addr, strlen(c->addr), &local, &local_len, &domain, &domain_len);
        assert_int_equal(local_len, strlen(c->local));
        assert_memory_equal(local, c->local, local_len);
        assert_int_equal(domain_len, strlen(c->domain));
        assert_memory_equal(domain, c->domain, domain_len);
    }
}

/* ---- smtp_parse_reply_line ------------------------------------------------ */

struct reply_case {
    const char *line;
    int code;
    bool last;
};

static const struct reply_case reply_cases[] = {
    {"250 ok", 250, true},
    {"250-mail.example.org", 250, false},
    {"250-", 250, false},
    {"250 ", 250, true},
    {"250", 250, true},
    {"220 mail.example.org ESMTP", 220, true},
    {"200 x", 200, true},
    {"354 go ahead", 354, true},
    {"421-4.3.2 closing", 421, false},
    {"599 x", 599, true},
    {"199 x", -1, false},
    {"600 x", -1, false},
    {"000", -1, false},
    {"100-x", -1, false},
    {"25", -1, false},
    {"", -1, false},
    {"2500", -1, false},
    {"250x", -1, false},
    {"250\tx", -1, false},
    {"25a ok", -1, false},
    {" 250 ok", -1, false},
    {"abc", -1, false},
};

static void test_reply_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof reply_cases / sizeof reply_cases[0]; i++) {
        const struct reply_case *c = &reply_cases[i];
        bool last = !c->last;
        int code = smtp_parse_reply_line(c->line, strlen(c->line), &last);
        if (code != c->code)
            print_error("case %zu (%s): %d\n", i, c->line, code);
        assert_int_equal(code, c->code);
        if (code != -1)
            assert_int_equal(last, c->last);
    }
    bool last;
    assert_int_equal(smtp_parse_reply_line("250-x", 3, &last), 250);
    assert_true(last);
}

/* ---- smtp_valid_helo ------------------------------------------------------ */

struct helo_case {
    const char *arg;
    bool valid;
};

static const struct helo_case helo_cases[] = {
    {"mail.example.org", true},
    {"localhost", true},
    {"MAIL.EXAMPLE.ORG", true},
    {"mail.example.org.", true},
    {"my_host.local", true},
    {"a-b", true},
    {"x", true},
    {"192.0.2.1", true},
    {"[192.0.2.1]", true},
    {"[IPv6:2001:db8::1]", true},
    {"[IPv6:::1]", true},
    {"", false},
    {".", false},
    {"-", false},
    {"mail example", false},
    {"mail\texample", false},
    {"mail.example.org>", false},
    {"<mail.example.org>", false},
    {"user@example.org", false},
    {"\xc3\xa9.org", false},
    {"[192.0.2.256]", false},
    {"[192.0.2.1", false},
    {"[mail.example.org]", false},
    {"[2001:db8::1]", false},
    {"[IPv6:zz::1]", false},
    {"[]", false},
    {"a/b", false},
};

static void test_helo_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof helo_cases / sizeof helo_cases[0]; i++) {
        const struct helo_case *c = &helo_cases[i];
        bool valid = smtp_valid_helo(c->arg, strlen(c->arg));
        if (valid != c->valid)
            print_error("case %zu (%s): %d\n", i, c->arg, valid);
        assert_int_equal(valid, c->valid);
    }
    assert_false(smtp_valid_helo("a\0b", 3));
}

static void test_helo_length(void **state)
{
    (void)state;
    char name[300];
    memset(name, 'h', sizeof name);
    assert_true(smtp_valid_helo(name, 255));
    assert_false(smtp_valid_helo(name, 256));
    assert_false(smtp_valid_helo(name, sizeof name));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_command_table),     cmocka_unit_test(test_mail_table),
        cmocka_unit_test(test_rcpt_table),        cmocka_unit_test(test_mail_not_terminated),
        cmocka_unit_test(test_command_then_path), cmocka_unit_test(test_length_bounds),
        cmocka_unit_test(test_split_table),       cmocka_unit_test(test_reply_table),
        cmocka_unit_test(test_helo_table),        cmocka_unit_test(test_helo_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
