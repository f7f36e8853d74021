/* Unit tests of the configuration parser (conf.c): every key with good and
 * bad values and the exact message, defaults, listen replace/append, line
 * syntax, loading files and the embedded configuration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"

#define NAME "t.conf"

/* conf_defaults + one buffer. Returns what conf_parse_buffer returns. */
static int parse_len(struct config *c, const char *text, size_t len, char *err)
{
    conf_defaults(c);
    err[0] = '\0';
    return conf_parse_buffer(c, NAME, text, len, err, CONF_ERR_MAX);
}

static int parse(struct config *c, const char *text, char *err)
{
    return parse_len(c, text, strlen(text), err);
}

static void expect_ok(struct config *c, const char *text)
{
    char err[CONF_ERR_MAX];
    int rc = parse(c, text, err);
    if (rc != 0)
        print_error("unexpected error for '%s': %s\n", text, err);
    assert_int_equal(rc, 0);
}

/* ---- table of refused values and their exact messages ------------------- */

struct bad_case {
    const char *text;
    const char *want; /* the whole message */
};

#define SIZE_HOW "use a number with an optional K, M or G suffix"
#define TIME_HOW "use a number with an optional s, m, h or d suffix (plain numbers are seconds)"
#define LISTEN_HOW "use ADDRESS:PORT with a numeric address, e.g. 127.0.0.1:25 or [::1]:25"
#define SMART_HOW                                                                                  \
    "use host, host:port, [host] or [host]:port (brackets: no MX lookup), where host is a "        \
    "domain name, an IPv4 address or IPv6:address"
#define DOMAIN_HOW                                                                                 \
    "use dot-separated labels of letters, digits and '-', e.g. mail.example.org, or leave it "     \
    "empty for the system's name"
#define NAME_HOW                                                                                   \
    "use lower-case letters, digits, '_' and '-', starting with a letter or '_', at most 32 "      \
    "characters"
#define KNOWN                                                                                      \
    "known keys: listen, hostname, jail_directory, queue_directory, run_as_user, "                 \
    "run_as_group, smarthost, log_file, max_message_size, max_recipients, max_header_size, "       \
    "max_command_line, max_connections, max_connections_per_client, max_bad_commands, "            \
    "command_timeout, data_timeout, shutdown_timeout, queue_interval, retry_min, "                 \
    "max_deliveries"

static const struct bad_case bad_cases[] = {
    /* line syntax */
    {"lisen = 127.0.0.1:25", "t.conf:1: unknown key 'lisen' (did you mean 'listen'?); " KNOWN},
    {"Listen = 127.0.0.1:25", "t.conf:1: unknown key 'Listen' (did you mean 'listen'?); " KNOWN},
    {"max_mesage_size = 1M",
     "t.conf:1: unknown key 'max_mesage_size' (did you mean 'max_message_size'?); " KNOWN},
    {"frobnicate = yes", "t.conf:1: unknown key 'frobnicate'; " KNOWN},
    {"max_connections_per_client_in_total = 5",
     "t.conf:1: unknown key 'max_connections_per_client_in_total'; " KNOWN},
    {"k\xff = 5", "t.conf:1: unknown key 'k\\xff'; " KNOWN},
    {"DaemonPortOptions=Port=smtp", "t.conf:1: unknown key 'DaemonPortOptions'; " KNOWN},
    {"listen 127.0.0.1:25", "t.conf:1: 'listen 127.0.0.1:25' is not a setting; write key = value"},
    {"= 127.0.0.1:25", "t.conf:1: no key before '='; write key = value"},
    {"max_recipients =", "t.conf:1: max_recipients: no value after '='; give a value, or remove "
                         "the line for the default"},
    {"listen =  \t", "t.conf:1: listen: no value after '='; give a value, or remove the line for "
                     "the default"},
    {"max_recipients = 10 # ten",
     "t.conf:1: max_recipients: a comment after the value; a '#' starts a comment only at the "
     "start of a line"},
    {"\n\n# three\nmax_recipients = x\n",
     "t.conf:4: max_recipients: 'x' is not a number; use a whole number"},
    {"max_recipients = 1\x01", "t.conf:1: control character 0x01 at column 19; only printable "
                               "characters and tabs are allowed"},
    {"max_recipients = 1\x7f", "t.conf:1: control character 0x7f at column 19; only printable "
                               "characters and tabs are allowed"},
    {"max_recipients = 1\r2\n", "t.conf:1: carriage return at column 19; lines end with LF or "
                                "CR LF"},
    {"max_recipients = 1\r\r\n", "t.conf:1: carriage return at column 19; lines end with LF or "
                                 "CR LF"},
    /* listen */
    {"listen = 127.0.0.1", "t.conf:1: listen: '127.0.0.1' has no port; " LISTEN_HOW},
    {"listen = localhost:25",
     "t.conf:1: listen: 'localhost:25' is not a numeric IPv4 address; " LISTEN_HOW},
    {"listen = 127.1:25",
     "t.conf:1: listen: '127.1:25' is not a numeric IPv4 address; " LISTEN_HOW},
    {"listen = *:25", "t.conf:1: listen: '*:25' is not a numeric IPv4 address; " LISTEN_HOW},
    {"listen = ::1:25",
     "t.conf:1: listen: '::1:25': an IPv6 address goes in brackets; " LISTEN_HOW},
    {"listen = [::1]", "t.conf:1: listen: '[::1]' is not an address with a port; " LISTEN_HOW},
    {"listen = [::1", "t.conf:1: listen: '[::1' is not an address with a port; " LISTEN_HOW},
    {"listen = [1.2.3.4]:25",
     "t.conf:1: listen: '[1.2.3.4]:25' is not a numeric IPv6 address; " LISTEN_HOW},
    {"listen = [fe80::1%eth0]:25",
     "t.conf:1: listen: '[fe80::1%eth0]:25' is not a numeric IPv6 address; " LISTEN_HOW},
    {"listen = 127.0.0.1:0",
     "t.conf:1: listen: '127.0.0.1:0' has no valid port; use a port from 1 to 65535"},
    {"listen = 127.0.0.1:65536",
     "t.conf:1: listen: '127.0.0.1:65536' has no valid port; use a port from 1 to 65535"},
    {"listen = 127.0.0.1:",
     "t.conf:1: listen: '127.0.0.1:' has no valid port; use a port from 1 to 65535"},
    {"listen = 127.0.0.1:25x",
     "t.conf:1: listen: '127.0.0.1:25x' has no valid port; use a port from 1 to 65535"},
    {"listen = 127.0.0.1:smtp",
     "t.conf:1: listen: '127.0.0.1:smtp' has no valid port; use a port from 1 to 65535"},
    {"listen = 127.0.0.1:99999999999999999999999",
     "t.conf:1: listen: '127.0.0.1:99999999999999999999999' has no valid port; use a port from "
     "1 to 65535"},
    {"listen = 127.0.0.1:25\nlisten = 127.0.0.1:025",
     "t.conf:2: listen: '127.0.0.1:025' is listed twice; list each address once"},
    {"listen = [::1]:25\nlisten = [0:0::1]:25",
     "t.conf:2: listen: '[0:0::1]:25' is listed twice; list each address once"},
    {"listen = 0.0.0.0:25\nlisten = 127.0.0.1:25",
     "t.conf:2: listen: '127.0.0.1:25' overlaps 0.0.0.0:25; list either the address for all "
     "(0.0.0.0 or [::]) or single addresses on one port"},
    {"listen = [::1]:25\nlisten = [::]:25",
     "t.conf:2: listen: '[::]:25' overlaps [::1]:25; list either the address for all (0.0.0.0 "
     "or [::]) or single addresses on one port"},
    /* hostname */
    {"hostname = mail_1.example.org",
     "t.conf:1: hostname: 'mail_1.example.org' is not a domain name (it has a character other "
     "than letters, digits, '-' and '.'); " DOMAIN_HOW},
    {"hostname = a..b", "t.conf:1: hostname: 'a..b' is not a domain name (it has an empty "
                        "label); " DOMAIN_HOW},
    {"hostname = example.org.", "t.conf:1: hostname: 'example.org.' is not a domain name (it "
                                "has an empty label); " DOMAIN_HOW},
    {"hostname = -a.example", "t.conf:1: hostname: '-a.example' is not a domain name (a label "
                              "starts with '-'); " DOMAIN_HOW},
    {"hostname = a-.example", "t.conf:1: hostname: 'a-.example' is not a domain name (a label "
                              "ends with '-'); " DOMAIN_HOW},
    {"hostname = 192.0.2.1", "t.conf:1: hostname: '192.0.2.1' is not a domain name (its last "
                             "label is all digits); " DOMAIN_HOW},
    {"hostname = mail example",
     "t.conf:1: hostname: 'mail example' is not a domain name (it has "
     "a character other than letters, digits, '-' and '.'); " DOMAIN_HOW},
    {"hostname = m\xc3\xa4il.example",
     "t.conf:1: hostname: 'm\\xc3\\xa4il.example' is not a domain name (it has a character other "
     "than letters, digits, '-' and '.'); " DOMAIN_HOW},
    /* directories */
    {"jail_directory = var/spool/jailmail",
     "t.conf:1: jail_directory: 'var/spool/jailmail': it is not an absolute path; start it with "
     "'/'"},
    {"jail_directory = /var/../etc", "t.conf:1: jail_directory: '/var/../etc': it has a '.' or "
                                     "'..' component; give the path without them"},
    {"jail_directory = /var/spool/jailmail/..",
     "t.conf:1: jail_directory: '/var/spool/jailmail/..': it has a '.' or '..' component; give "
     "the path without them"},
    {"jail_directory = /var/./spool", "t.conf:1: jail_directory: '/var/./spool': it has a '.' "
                                      "or '..' component; give the path without them"},
    {"jail_directory = /var//spool", "t.conf:1: jail_directory: '/var//spool': it has an empty "
                                     "component ('//'); write each '/' once"},
    {"jail_directory = /var/spool jail",
     "t.conf:1: jail_directory: '/var/spool jail': it has a space or a non-ASCII character; use "
     "printable ASCII without spaces"},
    {"jail_directory = /", "t.conf:1: jail_directory: '/' is not a directory of its own; use e.g. "
                           "/var/spool/jailmail"},
    {"jail_directory = ///", "t.conf:1: jail_directory: '/' is not a directory of its own; use "
                             "e.g. /var/spool/jailmail"},
    {"jail_directory = //srv/", "t.conf:1: jail_directory: '//srv/': it has an empty component "
                                "('//'); write each '/' once"},
    {"queue_directory = /", "t.conf:1: queue_directory: '/' is not a directory of its own; use "
                            "e.g. /queue"},
    {"queue_directory = queue", "t.conf:1: queue_directory: 'queue': it is not an absolute path; "
                                "start it with '/'"},
    /* users and groups */
    {"run_as_user = Jailmail",
     "t.conf:1: run_as_user: 'Jailmail' is not a user or group name; " NAME_HOW},
    {"run_as_user = 1000", "t.conf:1: run_as_user: '1000' is not a user or group name; " NAME_HOW},
    {"run_as_user = -x", "t.conf:1: run_as_user: '-x' is not a user or group name; " NAME_HOW},
    {"run_as_user = mail user",
     "t.conf:1: run_as_user: 'mail user' is not a user or group name; " NAME_HOW},
    {"run_as_user = abcdefghijabcdefghijabcdefghijabc",
     "t.conf:1: run_as_user: 'abcdefghijabcdefghijabcdefghijabc' is not a user or group "
     "name; " NAME_HOW},
    {"run_as_user = root", "t.conf:1: run_as_user: 'root' would give the network workers root's "
                           "rights; use an unprivileged user such as jailmail"},
    {"run_as_group = root", "t.conf:1: run_as_group: 'root' would give the network workers "
                            "root's rights; use an unprivileged group such as mail"},
    {"run_as_group = mail$",
     "t.conf:1: run_as_group: 'mail$' is not a user or group name; " NAME_HOW},
    /* smarthost */
    {"smarthost = 2001:db8::1", "t.conf:1: smarthost: '2001:db8::1' is not a host; " SMART_HOW},
    {"smarthost = [relay.example.com",
     "t.conf:1: smarthost: '[relay.example.com' is not a host; " SMART_HOW},
    {"smarthost = []", "t.conf:1: smarthost: '[]' is not a host; " SMART_HOW},
    {"smarthost = relay_1.example.com",
     "t.conf:1: smarthost: 'relay_1.example.com' is not a host; " SMART_HOW},
    {"smarthost = IPv6:2001:db8::1",
     "t.conf:1: smarthost: 'IPv6:2001:db8::1' is not a host; " SMART_HOW},
    {"smarthost = [IPv6:192.0.2.1]",
     "t.conf:1: smarthost: '[IPv6:192.0.2.1]' is not a host; " SMART_HOW},
    {"smarthost = [IPv6:zz::1]", "t.conf:1: smarthost: '[IPv6:zz::1]' is not a host; " SMART_HOW},
    {"smarthost = relay.example.com:0",
     "t.conf:1: smarthost: 'relay.example.com:0' has no valid port; use a port from 1 to 65535"},
    {"smarthost = [relay.example.com]587",
     "t.conf:1: smarthost: '[relay.example.com]587' has no valid port; use a port from 1 to "
     "65535"},
    {"smarthost = relay.example.com:submission",
     "t.conf:1: smarthost: 'relay.example.com:submission' has no valid port; use a port from 1 "
     "to 65535"},
    /* log_file */
    {"log_file = jailmail.log", "t.conf:1: log_file: 'jailmail.log': it is not an absolute "
                                "path; start it with '/'"},
    {"log_file = /var/log/", "t.conf:1: log_file: '/var/log/' names a directory; name a file, "
                             "e.g. /var/log/jailmail.log"},
    {"log_file = /var/log/../jm.log", "t.conf:1: log_file: '/var/log/../jm.log': it has a '.' "
                                      "or '..' component; give the path without them"},
    /* sizes */
    {"max_message_size = 10X", "t.conf:1: max_message_size: '10X' is not a size; " SIZE_HOW},
    {"max_message_size = 10KB", "t.conf:1: max_message_size: '10KB' is not a size; " SIZE_HOW},
    {"max_message_size = M", "t.conf:1: max_message_size: 'M' is not a size; " SIZE_HOW},
    {"max_message_size = -1", "t.conf:1: max_message_size: '-1' is not a size; " SIZE_HOW},
    {"max_message_size = 1.5M", "t.conf:1: max_message_size: '1.5M' is not a size; " SIZE_HOW},
    {"max_message_size = 10 M", "t.conf:1: max_message_size: '10 M' is not a size; " SIZE_HOW},
    {"max_message_size = 0", "t.conf:1: max_message_size: '0' is out of range; use a size from 1K "
                             "to 2G"},
    {"max_message_size = 1023", "t.conf:1: max_message_size: '1023' is out of range; use a size "
                                "from 1K to 2G"},
    {"max_message_size = 2049M", "t.conf:1: max_message_size: '2049M' is out of range; use a "
                                 "size from 1K to 2G"},
    {"max_message_size = 99999999999999999999G",
     "t.conf:1: max_message_size: '99999999999999999999G' is out of range; use a size from 1K to "
     "2G"},
    {"max_message_size = 18014398509481984K",
     "t.conf:1: max_message_size: '18014398509481984K' is out of range; use a size from 1K to "
     "2G"},
    {"max_header_size = 17M", "t.conf:1: max_header_size: '17M' is out of range; use a size from "
                              "1K to 16M"},
    {"max_header_size = 512", "t.conf:1: max_header_size: '512' is out of range; use a size from "
                              "1K to 16M"},
    /* counts */
    {"max_recipients = 0", "t.conf:1: max_recipients: '0' is out of range; use a number from 1 "
                           "to 100000"},
    {"max_recipients = 100001", "t.conf:1: max_recipients: '100001' is out of range; use a "
                                "number from 1 to 100000"},
    {"max_recipients = 1e3", "t.conf:1: max_recipients: '1e3' is not a number; use a whole number"},
    {"max_recipients = +5", "t.conf:1: max_recipients: '+5' is not a number; use a whole number"},
    {"max_recipients = 5K", "t.conf:1: max_recipients: '5K' is not a number; use a whole number"},
    {"max_command_line = 511", "t.conf:1: max_command_line: '511' is out of range; use a number "
                               "from 512 to 65536"},
    {"max_command_line = 65537", "t.conf:1: max_command_line: '65537' is out of range; use a "
                                 "number from 512 to 65536"},
    {"max_connections = 0", "t.conf:1: max_connections: '0' is out of range; use a number from 1 "
                            "to 100000"},
    {"max_connections = 4294967297", "t.conf:1: max_connections: '4294967297' is out of range; "
                                     "use a number from 1 to 100000"},
    {"max_connections_per_client = 100001",
     "t.conf:1: max_connections_per_client: '100001' is out of range; use a number from 1 to "
     "100000"},
    {"max_bad_commands = 1001", "t.conf:1: max_bad_commands: '1001' is out of range; use a "
                                "number from 1 to 1000"},
    {"max_deliveries = 0", "t.conf:1: max_deliveries: '0' is out of range; use a number from 1 "
                           "to 1000"},
    /* times */
    {"command_timeout = 5x", "t.conf:1: command_timeout: '5x' is not a time; " TIME_HOW},
    {"command_timeout = m", "t.conf:1: command_timeout: 'm' is not a time; " TIME_HOW},
    {"command_timeout = 1h30", "t.conf:1: command_timeout: '1h30' is not a time; " TIME_HOW},
    {"command_timeout = 1h30mx", "t.conf:1: command_timeout: '1h30mx' is not a time; " TIME_HOW},
    {"command_timeout = 5M", "t.conf:1: command_timeout: '5M' is not a time; " TIME_HOW},
    {"command_timeout = -5s", "t.conf:1: command_timeout: '-5s' is not a time; " TIME_HOW},
    {"command_timeout = 0", "t.conf:1: command_timeout: '0' is out of range; use a time from 1s "
                            "to 30d"},
    {"command_timeout = 0s", "t.conf:1: command_timeout: '0s' is out of range; use a time from "
                             "1s to 30d"},
    {"data_timeout = 31d", "t.conf:1: data_timeout: '31d' is out of range; use a time from 1s to "
                           "30d"},
    {"data_timeout = 2592001", "t.conf:1: data_timeout: '2592001' is out of range; use a time "
                               "from 1s to 30d"},
    {"shutdown_timeout = 5w", "t.conf:1: shutdown_timeout: '5w' is out of range; use a time from "
                              "1s to 30d"},
    {"queue_interval = 99999999999999999999999d",
     "t.conf:1: queue_interval: '99999999999999999999999d' is out of range; use a time from 1s "
     "to 30d"},
    {"retry_min = 4611686018427387904d4611686018427387904d",
     "t.conf:1: retry_min: '4611686018427387904d4611686018427387904d' is out of range; use a "
     "time from 1s to 30d"},
};

static void test_bad_values(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        struct config c;
        char err[CONF_ERR_MAX];
        int rc = parse(&c, bad_cases[i].text, err);
        if (rc != -1 || strcmp(err, bad_cases[i].want) != 0)
            print_error("case %zu '%s':\n  got  %d '%s'\n  want '%s'\n", i, bad_cases[i].text, rc,
                        err, bad_cases[i].want);
        assert_int_equal(rc, -1);
        assert_string_equal(err, bad_cases[i].want);
    }
}

/* ---- accepted values ---------------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    struct config c;
    conf_defaults(&c);
    assert_int_equal(c.nlisten, 2);
    assert_string_equal(c.listen[0].host, "127.0.0.1");
    assert_int_equal(c.listen[0].port, 25);
    assert_string_equal(c.listen[1].host, "::1");
    assert_int_equal(c.listen[1].port, 25);
    assert_string_equal(c.hostname, "");
    assert_string_equal(c.jail_dir, "/var/spool/jailmail");
    assert_string_equal(c.queue_dir, "/queue");
    assert_string_equal(c.run_as_user, "jailmail");
    assert_string_equal(c.run_as_group, "mail");
    assert_string_equal(c.smarthost, "");
    assert_int_equal(c.smarthost_port, 25);
    assert_false(c.smarthost_no_mx);
    assert_string_equal(c.log_file, "");
    assert_int_equal(c.max_message_size, 10 * 1024 * 1024);
    assert_int_equal(c.max_recipients, 100);
    assert_int_equal(c.max_header_size, 64 * 1024);
    assert_int_equal(c.max_command_line, 2048);
    assert_int_equal(c.max_connections, 2000);
    assert_int_equal(c.max_connections_per_client, 50);
    assert_int_equal(c.max_bad_commands, 25);
    assert_int_equal(c.command_timeout, 300);
    assert_int_equal(c.data_timeout, 600);
    assert_int_equal(c.shutdown_timeout, 30);
    assert_int_equal(c.queue_interval, 900);
    assert_int_equal(c.retry_min, 60);
    assert_int_equal(c.max_deliveries, 20);
}

/* An empty buffer, blanks and comments change nothing but the source. */
static void test_empty_and_comments(void **state)
{
    (void)state;
    struct config want, c;
    char err[CONF_ERR_MAX];
    conf_defaults(&want);
    snprintf(want.source, sizeof want.source, NAME);
    assert_int_equal(parse_len(&c, "", 0, err), 0);
    assert_memory_equal(&c, &want, sizeof c);
    expect_ok(&c, "\n\n   \n\t\n# a comment\n   # indented = comment\n#listen = 1.2.3.4:25\n"
                  "#\xc3\xa9t\xc3\xa9 UTF-8 in comments\n\t#\n");
    assert_memory_equal(&c, &want, sizeof c);
}

static void test_whitespace_and_line_ends(void **state)
{
    (void)state;
    struct config c;
    expect_ok(&c, " \t max_recipients \t=\t 7 \t");
    assert_int_equal(c.max_recipients, 7);
    expect_ok(&c, "max_recipients=8");
    assert_int_equal(c.max_recipients, 8);
    /* CR LF line ends are tolerated, on the last line as well */
    expect_ok(&c, "max_recipients = 9\r\nmax_bad_commands = 3\r\n");
    assert_int_equal(c.max_recipients, 9);
    assert_int_equal(c.max_bad_commands, 3);
    expect_ok(&c, "max_recipients = 10\r");
    assert_int_equal(c.max_recipients, 10);
    /* no line end at the end of the file */
    expect_ok(&c, "max_recipients = 1\nmax_deliveries = 11");
    assert_int_equal(c.max_deliveries, 11);
    /* a '#' inside a value, not after a blank, is part of the value */
    expect_ok(&c, "log_file = /var/log/jm#1.log");
    assert_string_equal(c.log_file, "/var/log/jm#1.log");
}

static void test_repeated_key_replaces(void **state)
{
    (void)state;
    struct config c;
    expect_ok(&c, "max_recipients = 5\nmax_recipients = 6\nhostname = a.example\nhostname = "
                  "b.example\n");
    assert_int_equal(c.max_recipients, 6);
    assert_string_equal(c.hostname, "b.example");
    expect_ok(&c, "hostname = a.example\nhostname =\n");
    assert_string_equal(c.hostname, "");
    expect_ok(&c, "log_file = /var/log/jm.log\nlog_file =");
    assert_string_equal(c.log_file, "");
}

static void test_listen(void **state)
{
    (void)state;
    struct config c;
    char err[CONF_ERR_MAX];
    /* the first listen line replaces the defaults, the next ones append */
    expect_ok(&c, "listen = 192.0.2.1:587\n");
    assert_int_equal(c.nlisten, 1);
    assert_string_equal(c.listen[0].host, "192.0.2.1");
    assert_int_equal(c.listen[0].port, 587);
    expect_ok(&c, "listen = 0.0.0.0:25\nmax_recipients = 3\nlisten = [2001:DB8:0::1]:65535\n"
                  "listen = [::]:1\n");
    assert_int_equal(c.nlisten, 3);
    assert_string_equal(c.listen[0].host, "0.0.0.0");
    assert_string_equal(c.listen[1].host, "2001:db8::1"); /* written as inet_ntop writes it */
    assert_int_equal(c.listen[1].port, 65535);
    assert_string_equal(c.listen[2].host, "::");
    assert_int_equal(c.listen[2].port, 1);
    /* the same address on two ports is two listeners */
    expect_ok(&c, "listen = 127.0.0.1:25\nlisten = 127.0.0.1:587\n");
    assert_int_equal(c.nlisten, 2);
    /* the IPv6 wildcard is bound IPv6-only: it does not overlap IPv4 addresses */
    expect_ok(&c, "listen = [::]:25\nlisten = 127.0.0.1:25\nlisten = 0.0.0.0:587\n"
                  "listen = [::1]:587\n");
    assert_int_equal(c.nlisten, 4);
    /* a second buffer starts the list again */
    assert_int_equal(conf_parse_buffer(&c, "two", "listen = 127.0.0.2:26\n", 22, err, sizeof err),
                     0);
    assert_int_equal(c.nlisten, 1);
    assert_string_equal(c.listen[0].host, "127.0.0.2");
    assert_string_equal(c.source, "two");
}

static void test_listen_limit(void **state)
{
    (void)state;
    struct config c;
    char text[64 * (CONF_MAX_LISTEN + 1)], err[CONF_ERR_MAX], want[CONF_ERR_MAX];
    size_t o = 0;
    for (int i = 0; i < CONF_MAX_LISTEN; i++)
        o += (size_t)snprintf(text + o, sizeof text - o, "listen = 127.0.0.%d:25\n", i + 1);
    expect_ok(&c, text);
    assert_int_equal(c.nlisten, CONF_MAX_LISTEN);
    assert_string_equal(c.listen[CONF_MAX_LISTEN - 1].host, "127.0.0.16");
    snprintf(text + o, sizeof text - o, "listen = 127.0.0.99:25\n");
    assert_int_equal(parse(&c, text, err), -1);
    snprintf(want, sizeof want, "t.conf:%d: listen: too many addresses; at most %d listen lines",
             CONF_MAX_LISTEN + 1, CONF_MAX_LISTEN);
    assert_string_equal(err, want);
}

static void test_strings(void **state)
{
    (void)state;
    struct config c;
    expect_ok(&c, "hostname = Mail-1.Example.ORG\njail_directory = /srv/jail///\n"
                  "queue_directory = /var/spool/mqueue/\nrun_as_user = _jm-user1\n"
                  "run_as_group = mail2\nlog_file = /var/log/jailmail.log\n");
    assert_string_equal(c.hostname, "Mail-1.Example.ORG");
    assert_string_equal(c.jail_dir, "/srv/jail"); /* trailing slashes go */
    assert_string_equal(c.queue_dir, "/var/spool/mqueue");
    assert_string_equal(c.run_as_user, "_jm-user1");
    assert_string_equal(c.run_as_group, "mail2");
    assert_string_equal(c.log_file, "/var/log/jailmail.log");
    expect_ok(&c, "hostname = localhost\njail_directory = /.jail/..x/...\n");
    assert_string_equal(c.hostname, "localhost");
    assert_string_equal(c.jail_dir, "/.jail/..x/..."); /* only exact '.' and '..' are refused */
    expect_ok(&c, "run_as_user = abcdefghijabcdefghijabcdefghijab\n"); /* 32 */
    assert_string_equal(c.run_as_user, "abcdefghijabcdefghijabcdefghijab");
}

static void test_hostname_lengths(void **state)
{
    (void)state;
    struct config c;
    char text[512], err[CONF_ERR_MAX], label63[64], label64[65];
    memset(label63, 'a', 63);
    label63[63] = '\0';
    memset(label64, 'a', 64);
    label64[64] = '\0';
    snprintf(text, sizeof text, "hostname = %s.example", label63);
    expect_ok(&c, text);
    snprintf(text, sizeof text, "hostname = %s.example", label64);
    assert_int_equal(parse(&c, text, err), -1);
    assert_non_null(strstr(err, "(a label is longer than 63 characters)"));
    /* 253 characters: 3 labels of 63, one of 61, three dots */
    snprintf(text, sizeof text, "hostname = %s.%s.%s.%.61s", label63, label63, label63, label63);
    expect_ok(&c, text);
    assert_int_equal(strlen(c.hostname), 253);
    snprintf(text, sizeof text, "hostname = %s.%s.%s.%.62s", label63, label63, label63, label63);
    assert_int_equal(parse(&c, text, err), -1);
    assert_non_null(strstr(err, "(it is longer than 253 characters)"));
}

/* A value that is printable but too long is cut in the message. */
static void test_long_value_shown_bounded(void **state)
{
    (void)state;
    struct config c;
    char text[300], err[CONF_ERR_MAX];
    memset(text, 'x', sizeof text);
    memcpy(text, "max_recipients = ", 17);
    text[sizeof text - 1] = '\0';
    assert_int_equal(parse(&c, text, err), -1);
    assert_string_equal(err, "t.conf:1: max_recipients: "
                             "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' is "
                             "not a number; use a whole number");
}

struct smarthost_case {
    const char *value;
    const char *host;
    unsigned port;
    bool no_mx;
};

static void test_smarthost_too_long(void **state)
{
    (void)state;
    struct config c;
    char text[400], err[CONF_ERR_MAX];
    for (int bracketed = 0; bracketed < 2; bracketed++) {
        int n = snprintf(text, sizeof text, "smarthost = %s", bracketed ? "[" : "");
        memset(text + n, 'h', 300);
        snprintf(text + n + 300, sizeof text - (size_t)n - 300, "%s", bracketed ? "]" : "");
        assert_int_equal(parse(&c, text, err), -1);
        assert_non_null(strstr(err, "...' is not a host; use host, host:port"));
    }
}

static void test_smarthost(void **state)
{
    (void)state;
    static const struct smarthost_case cases[] = {
        {"relay.example.com", "relay.example.com", 25, false},
        {"relay.example.com:587", "relay.example.com", 587, false},
        {"[relay.example.com]", "relay.example.com", 25, true},
        {"[relay.example.com]:2525", "relay.example.com", 2525, true},
        {"localhost", "localhost", 25, false},
        {"192.0.2.1", "192.0.2.1", 25, true}, /* an address has no MX */
        {"192.0.2.1:26", "192.0.2.1", 26, true},
        {"[192.0.2.1]:26", "192.0.2.1", 26, true},
        {"[IPv6:2001:DB8::1]", "2001:db8::1", 25, true},
        {"[ipv6:2001:db8::1]:465", "2001:db8::1", 465, true},
        {"[::1]:25", "::1", 25, true},
        {"", "", 25, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config c;
        char text[128];
        /* set something first: the value must replace all three fields */
        snprintf(text, sizeof text, "smarthost = [old.example]:99\nsmarthost = %s\n",
                 cases[i].value);
        expect_ok(&c, text);
        assert_string_equal(c.smarthost, cases[i].host);
        assert_int_equal(c.smarthost_port, cases[i].port);
        assert_int_equal(c.smarthost_no_mx, cases[i].no_mx);
    }
}

struct number_case {
    const char *text;
    size_t offset;
    bool is_size_t;
    unsigned long long want;
};

#define AT(f, t) offsetof(struct config, f), t

static void test_numbers(void **state)
{
    (void)state;
    static const struct number_case cases[] = {
        {"max_message_size = 1K", AT(max_message_size, true), 1024},
        {"max_message_size = 1024", AT(max_message_size, true), 1024},
        {"max_message_size = 10m", AT(max_message_size, true), 10485760},
        {"max_message_size = 2G", AT(max_message_size, true), 2147483648ULL},
        {"max_message_size = 2048M", AT(max_message_size, true), 2147483648ULL},
        {"max_message_size = 0002k", AT(max_message_size, true), 2048},
        {"max_header_size = 16M", AT(max_header_size, true), 16777216},
        {"max_header_size = 1k", AT(max_header_size, true), 1024},
        {"max_recipients = 1", AT(max_recipients, true), 1},
        {"max_recipients = 100000", AT(max_recipients, true), 100000},
        {"max_command_line = 512", AT(max_command_line, true), 512},
        {"max_command_line = 65536", AT(max_command_line, true), 65536},
        {"max_connections = 100000", AT(max_connections, false), 100000},
        {"max_connections_per_client = 1", AT(max_connections_per_client, false), 1},
        {"max_bad_commands = 1000", AT(max_bad_commands, false), 1000},
        {"max_deliveries = 1000", AT(max_deliveries, false), 1000},
        {"command_timeout = 5m", AT(command_timeout, false), 300},
        {"command_timeout = 90", AT(command_timeout, false), 90},
        {"command_timeout = 1s", AT(command_timeout, false), 1},
        {"data_timeout = 1h30m", AT(data_timeout, false), 5400},
        {"data_timeout = 1d2h3m4s", AT(data_timeout, false), 93784},
        {"shutdown_timeout = 30d", AT(shutdown_timeout, false), 2592000},
        {"queue_interval = 2w", AT(queue_interval, false), 1209600},
        {"queue_interval = 2592000", AT(queue_interval, false), 2592000},
        {"retry_min = 0h1s", AT(retry_min, false), 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config c;
        expect_ok(&c, cases[i].text);
        const char *field = (const char *)&c + cases[i].offset;
        unsigned long long got =
            cases[i].is_size_t ? *(const size_t *)field : *(const unsigned *)field;
        if (got != cases[i].want)
            print_error("case '%s': got %llu\n", cases[i].text, got);
        assert_true(got == cases[i].want);
    }
}

/* ---- bytes that are not text ------------------------------------------- */

static void test_nul_byte(void **state)
{
    (void)state;
    struct config c;
    char err[CONF_ERR_MAX];
    static const char text[] = "max_recipients = 5\nmax_recipients = 6\0 7\n";
    assert_int_equal(parse_len(&c, text, sizeof text - 1, err), -1);
    assert_string_equal(err, "t.conf:2: NUL byte at column 19; the file must be text");
    static const char comment[] = "# \0\n";
    assert_int_equal(parse_len(&c, comment, sizeof comment - 1, err), -1);
    assert_string_equal(err, "t.conf:1: NUL byte at column 3; the file must be text");
}

static void test_long_lines(void **state)
{
    (void)state;
    struct config c;
    char err[CONF_ERR_MAX];
    enum { N = 4096 };
    char *text = malloc(N + 16);
    assert_non_null(text);
    /* exactly 4096 bytes, then a CR LF: fine */
    memset(text, ' ', N);
    text[0] = '#';
    memcpy(text + N, "\r\n", 3);
    assert_int_equal(parse(&c, text, err), 0);
    /* 4097 bytes */
    memset(text, ' ', N + 1);
    text[0] = '#';
    memcpy(text + N + 1, "\n", 2);
    assert_int_equal(parse(&c, text, err), -1);
    assert_string_equal(err, "t.conf:1: the line is 4097 bytes long; lines may be at most 4096 "
                             "bytes");
    /* the longest path a line can hold fits in the field */
    snprintf(text, N + 16, "log_file = /");
    memset(text + 12, 'a', N - 12);
    text[N] = '\0';
    assert_int_equal(parse(&c, text, err), 0);
    assert_int_equal(strlen(c.log_file), N - 11);
    /* but the jail and the queue together must make one path */
    char *two = malloc(2 * N);
    assert_non_null(two);
    size_t o = (size_t)snprintf(two, 2 * N, "jail_directory = /");
    memset(two + o, 'j', 2048);
    o += 2048;
    o += (size_t)snprintf(two + o, 2 * N - o, "\nqueue_directory = /");
    memset(two + o, 'q', 2047);
    two[o + 2047] = '\0';
    assert_int_equal(parse(&c, two, err), 0);
    free(two);
    assert_int_equal(conf_finish(&c, err, CONF_ERR_MAX), -1);
    assert_string_equal(err, "t.conf: jail_directory and queue_directory together are longer "
                             "than 4095 bytes; use shorter paths");
    free(text);
}

/* On error the configuration is left as it was before the call. */
static void test_error_leaves_config_alone(void **state)
{
    (void)state;
    struct config c, before;
    char err[CONF_ERR_MAX];
    conf_defaults(&c);
    before = c;
    const char *text = "listen = 192.0.2.1:25\nmax_recipients = 3\nhostname = x.example\n"
                       "max_recipients = 0\n";
    assert_int_equal(conf_parse_buffer(&c, NAME, text, strlen(text), err, sizeof err), -1);
    assert_string_equal(err, "t.conf:4: max_recipients: '0' is out of range; use a number from "
                             "1 to 100000");
    assert_memory_equal(&c, &before, sizeof c);
}

/* ---- conf_finish -------------------------------------------------------- */

static void test_finish(void **state)
{
    (void)state;
    struct config c;
    char err[CONF_ERR_MAX];
    expect_ok(&c, "hostname = mail.example.org\n");
    assert_int_equal(conf_finish(&c, err, sizeof err), 0);
    assert_string_equal(c.hostname, "mail.example.org");

    c.nlisten = 0;
    assert_int_equal(conf_finish(&c, err, sizeof err), -1);
    assert_string_equal(err, "t.conf: no listen address; add e.g. listen = 127.0.0.1:25");

    expect_ok(&c, "hostname = mail.example.org\n");
    c.jail_dir[0] = '\0';
    assert_int_equal(conf_finish(&c, err, sizeof err), -1);
    assert_string_equal(err, "t.conf: jail_directory is not an absolute path; start it with '/'");

    expect_ok(&c, "hostname = mail.example.org\n");
    snprintf(c.queue_dir, sizeof c.queue_dir, "queue");
    assert_int_equal(conf_finish(&c, err, sizeof err), -1);
    assert_string_equal(err, "t.conf: queue_directory is not an absolute path; start it with '/'");

    /* numbers set by code are held to the same bounds as the file's */
    expect_ok(&c, "hostname = mail.example.org\n");
    c.queue_interval = 0;
    assert_int_equal(conf_finish(&c, err, sizeof err), -1);
    assert_string_equal(err, "t.conf: queue_interval is 0; it must be from 1s to 30d");
    expect_ok(&c, "hostname = mail.example.org\n");
    c.max_message_size = 3ULL << 30;
    assert_int_equal(conf_finish(&c, err, sizeof err), -1);
    assert_string_equal(err, "t.conf: max_message_size is 3221225472; it must be from 1K to 2G");

    expect_ok(&c, "hostname = mail.example.org\n");
    c.run_as_group[0] = '\0';
    assert_int_equal(conf_finish(&c, err, sizeof err), -1);
    assert_string_equal(err, "t.conf: run_as_user and run_as_group must be set; e.g. jailmail "
                             "and mail");
    expect_ok(&c, "hostname = mail.example.org\nsmarthost = relay.example.com\n");
    c.smarthost_port = 0;
    assert_int_equal(conf_finish(&c, err, sizeof err), -1);
    assert_string_equal(err, "t.conf: smarthost has port 0; use a port from 1 to 65535");
}

/* An empty hostname becomes the system's name, when that is a domain name. */
static void test_finish_hostname(void **state)
{
    (void)state;
    struct config c;
    char err[CONF_ERR_MAX], sys[CONF_HOST_MAX] = "";
    assert_int_equal(gethostname(sys, sizeof sys - 1), 0);
    expect_ok(&c, "");
    int rc = conf_finish(&c, err, sizeof err);
    if (rc == 0) {
        assert_string_equal(c.hostname, sys);
    } else {
        assert_non_null(strstr(err, "t.conf: hostname is not set and the system's name is not a "
                                    "domain name ("));
        assert_non_null(strstr(err, "); set hostname, e.g. hostname = mail.example.org"));
    }
}

/* ---- conf_load ---------------------------------------------------------- */

static void test_builtin(void **state)
{
    (void)state;
    struct config c;
    char err[CONF_ERR_MAX];
    conf_defaults(&c);
    assert_int_equal(conf_parse_buffer(&c, CONF_BUILTIN_NAME, conf_builtin_text,
                                       strlen(conf_builtin_text), err, sizeof err),
                     0);
    assert_int_equal(c.nlisten, 1);
    assert_string_equal(c.listen[0].host, "127.0.0.1");
    assert_int_equal(c.listen[0].port, 2525);
    assert_string_equal(c.queue_dir, "/queue");
    assert_string_equal(c.smarthost, "");
    assert_string_equal(c.log_file, "");
    size_t n = strlen(c.jail_dir);
    assert_true(n > 5 && c.jail_dir[0] == '/');
    assert_string_equal(c.jail_dir + n - 5, "/jail");

    /* conf_load also fills in the host name, unless the system's is unusable */
    int rc = conf_load(&c, CONF_BUILTIN_NAME, err, sizeof err);
    if (rc < 0) {
        assert_non_null(strstr(err, "hostname is not set"));
    } else {
        assert_true(c.hostname[0] != '\0');
        assert_string_equal(c.source, CONF_BUILTIN_NAME);
        assert_int_equal(c.listen[0].port, 2525);
    }
}

static char tmpdir[] = "/tmp/test_conf.XXXXXX";

static int setup_dir(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    (void)state;
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const char *text, size_t len, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_load_file(void **state)
{
    (void)state;
    struct config c;
    char path[128], err[CONF_ERR_MAX], want[CONF_ERR_MAX];
    snprintf(path, sizeof path, "%s/good.conf", tmpdir);
    const char *text = "# test\nlisten = [::1]:2526\nhostname = mx.example.net\n"
                       "max_recipients = 42\n";
    write_file(path, text, strlen(text), 0644);
    assert_int_equal(conf_load(&c, path, err, sizeof err), 0);
    assert_string_equal(c.source, path);
    assert_int_equal(c.nlisten, 1);
    assert_string_equal(c.listen[0].host, "::1");
    assert_int_equal(c.max_recipients, 42);
    assert_int_equal(c.max_deliveries, 20); /* the rest: defaults */

    /* errors name the file */
    snprintf(path, sizeof path, "%s/bad.conf", tmpdir);
    write_file(path, "\nmax_recipients = lots\n", 22, 0600);
    assert_int_equal(conf_load(&c, path, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:2: max_recipients: 'lots' is not a number; use a whole number",
             path);
    assert_string_equal(err, want);
}

static void test_load_refusals(void **state)
{
    (void)state;
    struct config c;
    char path[128], err[CONF_ERR_MAX], want[CONF_ERR_MAX];

    snprintf(path, sizeof path, "%s/missing.conf", tmpdir);
    assert_int_equal(conf_load(&c, path, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
    assert_string_equal(err, want);

    assert_int_equal(conf_load(&c, tmpdir, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: not a regular file; name the configuration file", tmpdir);
    assert_string_equal(err, want);

    snprintf(path, sizeof path, "%s/open.conf", tmpdir);
    write_file(path, "", 0, 0666);
    assert_int_equal(conf_load(&c, path, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: anyone may write to it; run chmod o-w %s", path, path);
    assert_string_equal(err, want);

    char *longpath = malloc(PATH_MAX + 16);
    assert_non_null(longpath);
    memset(longpath, 'p', PATH_MAX + 8);
    longpath[0] = '/';
    longpath[PATH_MAX + 8] = '\0';
    assert_int_equal(conf_load(&c, longpath, err, sizeof err), -1);
    assert_non_null(strstr(err, "...: path too long; at most 4095 bytes"));
    free(longpath);

    /* only root, or whoever runs jailmail, may be able to change the file */
    snprintf(path, sizeof path, "%s/owner.conf", tmpdir);
    write_file(path, "", 0, 0664);
    if (geteuid() == 0) {
        assert_int_equal(chown(path, 0, 4321), 0);
        assert_int_equal(conf_load(&c, path, err, sizeof err), -1);
        snprintf(want, sizeof want, "%s: group 4321 may write to it; run chmod g-w %s", path, path);
        assert_string_equal(err, want);
        assert_int_equal(chown(path, 0, 0), 0); /* group root may */
        assert_true(conf_load(&c, path, err, sizeof err) == 0 ||
                    strstr(err, "hostname is not set") != NULL);
        assert_int_equal(chown(path, 1234, 0), 0);
        assert_int_equal(conf_load(&c, path, err, sizeof err), -1);
        snprintf(want, sizeof want,
                 "%s: owned by uid 1234, not by root or uid 0; run chown root %s", path, path);
        assert_string_equal(err, want);
    } else {
        /* one's own file, group-writable, is fine when not running as root */
        assert_true(conf_load(&c, path, err, sizeof err) == 0 ||
                    strstr(err, "hostname is not set") != NULL);
    }

    /* 1 MiB of comments is fine, one byte more is not */
    size_t big = 1024 * 1024;
    char *text = malloc(big + 1);
    assert_non_null(text);
    for (size_t i = 0; i < big; i += 64) {
        memset(text + i, ' ', 63);
        text[i] = '#';
        text[i + 63] = '\n';
    }
    snprintf(path, sizeof path, "%s/big.conf", tmpdir);
    write_file(path, text, big, 0644);
    assert_int_equal(
        conf_load(&c, path, err, sizeof err) == 0 || strstr(err, "hostname is not set") != NULL, 1);
    text[big] = '\n';
    write_file(path, text, big + 1, 0644);
    assert_int_equal(conf_load(&c, path, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: larger than 1048576 bytes; a configuration file is smaller",
             path);
    assert_string_equal(err, want);
    free(text);
}

/* A file of the repository, found from where this test's source is. */
static void repo_path(char *out, size_t outlen, const char *rel)
{
    const char *here = __FILE__; /* tests/unit/test_conf.c, relative to the repository */
    const char *cut = strstr(here, "tests/unit/test_conf.c");
    assert_non_null(cut);
    snprintf(out, outlen, "%.*s%s", (int)(cut - here), here, rel);
}

/* The example file shipped in etc/ loads. */
static void test_example_file(void **state)
{
    (void)state;
    struct config c;
    char path[PATH_MAX], err[CONF_ERR_MAX];
    repo_path(path, sizeof path, "etc/jailmail.conf.example");
    int rc = conf_load(&c, path, err, sizeof err);
    if (rc < 0)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *text = calloc(1, 256 * 1024);
    assert_non_null(text);
    size_t n = fread(text, 1, 256 * 1024 - 1, f);
    assert_true(n > 0 && feof(f));
    fclose(f);
    return text;
}

/* The man page documents every key, and its EXAMPLE configurations load. */
static void test_man_page(void **state)
{
    (void)state;
    char path[PATH_MAX], err[CONF_ERR_MAX], want[128];
    repo_path(path, sizeof path, "docs/jailmail.conf.5");
    char *man = read_all(path);
    static const char *const keys[] = {"listen",           "hostname",
                                       "jail_directory",   "queue_directory",
                                       "run_as_user",      "run_as_group",
                                       "smarthost",        "log_file",
                                       "max_message_size", "max_recipients",
                                       "max_header_size",  "max_command_line",
                                       "max_connections",  "max_connections_per_client",
                                       "max_bad_commands", "command_timeout",
                                       "data_timeout",     "shutdown_timeout",
                                       "queue_interval",   "retry_min",
                                       "max_deliveries"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        snprintf(want, sizeof want, "\n.BI \"%s = \"", keys[i]);
        if (!strstr(man, want))
            print_error("key %s is not documented\n", keys[i]);
        assert_non_null(strstr(man, want));
    }
    /* the key list above is the parser's: an unknown key's message lists them */
    struct config c;
    assert_int_equal(parse(&c, "x = 1", err), -1);
    assert_non_null(strstr(err, KNOWN));

    char *example = strstr(man, "\n.SH EXAMPLE\n");
    assert_non_null(example);
    size_t blocks = 0;
    for (char *nf = example; (nf = strstr(nf, "\n.nf\n")) != NULL;) {
        char *body = nf + 5, *fi = strstr(body, "\n.fi\n");
        assert_non_null(fi);
        *fi = '\0';
        nf = fi + 1;
        if (strchr(body, '\\'))
            continue; /* the builtin one, with a placeholder in italics */
        int rc = parse(&c, body, err);
        if (rc != 0)
            print_error("%s\n", err);
        assert_int_equal(rc, 0);
        blocks++;
    }
    assert_int_equal(blocks, 2);
    free(man);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_empty_and_comments),
        cmocka_unit_test(test_whitespace_and_line_ends),
        cmocka_unit_test(test_repeated_key_replaces),
        cmocka_unit_test(test_listen),
        cmocka_unit_test(test_listen_limit),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_hostname_lengths),
        cmocka_unit_test(test_long_value_shown_bounded),
        cmocka_unit_test(test_smarthost),
        cmocka_unit_test(test_smarthost_too_long),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_error_leaves_config_alone),
        cmocka_unit_test(test_finish),
        cmocka_unit_test(test_finish_hostname),
        cmocka_unit_test(test_builtin),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_load_refusals),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_man_page),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
