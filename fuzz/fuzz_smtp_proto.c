/* libFuzzer target: every parser of smtp_proto.c on the same input, with the
 * invariants their contracts promise. abort() on any violation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_proto.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static void check_command(const char *in, size_t len)
{
    struct smtp_command cmd;
    int ret = smtp_parse_command(in, len, &cmd);
    CHECK(ret == 0 || ret == -1);
    CHECK(cmd.verb >= SMTP_VERB_UNKNOWN && cmd.verb <= SMTP_VERB_ETRN);
    CHECK(cmd.arg != NULL);
    if (ret == -1) {
        CHECK(cmd.verb == SMTP_VERB_UNKNOWN && cmd.arglen == 0);
        return;
    }
    if (cmd.arglen == 0)
        return;
    CHECK(cmd.arg > in && cmd.arg + cmd.arglen <= in + len);
    CHECK(!is_blank(cmd.arg[0]) && !is_blank(cmd.arg[cmd.arglen - 1]));
}

static void check_path(const struct smtp_path *path)
{
    CHECK(path->addrlen < SMTP_PATH_MAX);
    CHECK(strlen(path->addr) == path->addrlen);
    CHECK(path->is_null == (path->addrlen == 0));
    for (size_t i = 0; i < path->addrlen; i++) {
        unsigned char c = (unsigned char)path->addr[i];
        CHECK(c >= 0x20 && c < 0x7f);
    }
}

/* An accepted address, given back in angle brackets, is accepted again as
 * the very same address: what we store is what we would send. */
static void check_roundtrip(const char *keyword, const struct smtp_path *path)
{
    char arg[SMTP_PATH_MAX + 16];
    size_t klen = strlen(keyword);
    memcpy(arg, keyword, klen);
    arg[klen] = '<';
    memcpy(arg + klen + 1, path->addr, path->addrlen);
    arg[klen + 1 + path->addrlen] = '>';
    size_t len = klen + path->addrlen + 2;

    struct smtp_path again;
    const char *why;
    int ret;
    if (keyword[0] == 'F') {
        struct smtp_mail_params params;
        ret = smtp_parse_mail(arg, len, &again, &params, &why);
    } else {
        ret = smtp_parse_rcpt(arg, len, &again, &why);
    }
    CHECK(ret == 0);
    CHECK(again.addrlen == path->addrlen && memcmp(again.addr, path->addr, path->addrlen) == 0);
    CHECK(!again.had_source_route);
}

static void check_mail(const char *in, size_t len)
{
    struct smtp_path path;
    struct smtp_mail_params params;
    const char *why = NULL;
    int ret = smtp_parse_mail(in, len, &path, &params, &why);
    if (ret == -1) {
        CHECK(why != NULL && (why[0] == '5'));
        return;
    }
    CHECK(ret == 0 && why == NULL);
    check_path(&path);
    CHECK(params.size >= -1);
    CHECK(params.body == BODY_7BIT || params.body == BODY_8BITMIME);
    check_roundtrip("FROM:", &path);
}

static void check_rcpt(const char *in, size_t len)
{
    struct smtp_path path;
    const char *why = NULL;
    int ret = smtp_parse_rcpt(in, len, &path, &why);
    if (ret == -1) {
        CHECK(why != NULL && (why[0] == '5'));
        return;
    }
    CHECK(ret == 0 && why == NULL);
    check_path(&path);
    CHECK(!path.is_null);
    check_roundtrip("TO:", &path);
}

static void check_split(const char *in, size_t len)
{
    const char *local, *domain;
    size_t local_len, domain_len;
    smtp_split_addr(in, len, &local, &local_len, &domain, &domain_len);
    CHECK(local == in && local_len <= len);
    if (local_len == len) {
        CHECK(domain_len == 0);
        return;
    }
    CHECK(in[local_len] == '@');
    CHECK(domain == in + local_len + 1 && local_len + 1 + domain_len == len);
}

static void check_reply(const char *in, size_t len)
{
    bool last;
    int code = smtp_parse_reply_line(in, len, &last);
    CHECK(code == -1 || (code >= 200 && code <= 599));
    if (code != -1)
        CHECK(last == (len == 3 || in[3] == ' '));
}

static void check_helo(const char *in, size_t len)
{
    if (!smtp_valid_helo(in, len))
        return;
    CHECK(len > 0 && len <= SMTP_DOMAIN_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        CHECK(c > 0x20 && c < 0x7f && c != '@' && c != '<' && c != '>');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy, so that AddressSanitizer sees a read past the end */
    char *in = malloc(size == 0 ? 1 : size);
    if (in == NULL)
        return 0;
    memcpy(in, data, size);
    check_command(in, size);
    check_mail(in, size);
    check_rcpt(in, size);
    check_split(in, size);
    check_reply(in, size);
    check_helo(in, size);
    free(in);
    return 0;
}
