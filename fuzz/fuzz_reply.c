/* libFuzzer target: the client side's parsers of hostile bytes (smtp_client.c).
 *
 * The input is read two ways:
 *   1. as a server's byte stream: cut into lines the way the client does
 *      (LF, optional CR before it), fed to the reply accumulator and, for
 *      the lines of a reply, to the EHLO keyword reader;
 *   2. as message data for the dot-stuffer, in chunks whose sizes come from
 *      the first byte, compared with the same data stuffed in one go.
 * abort() on any broken invariant. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_client.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static void check_reply(const struct smtp_reply *r)
{
    CHECK(r->code >= 200 && r->code <= 599);
    CHECK(r->nlines >= 1 && r->nlines <= SMTP_REPLY_LINES_MAX);
    CHECK(r->textlen < SMTP_REPLY_TEXT_MAX && strlen(r->text) == r->textlen);
    for (size_t i = 0; i < r->textlen; i++) /* safe to log as it is */
        CHECK(r->text[i] >= 0x20 && r->text[i] < 0x7f);
    char dsn[SMTP_DSN_MAX];
    smtp_reply_dsn(r, dsn);
    CHECK(strlen(dsn) >= 5 && dsn[0] == (char)('0' + r->code / 100) && dsn[1] == '.');
    const char *rest = smtp_reply_text_after_dsn(r);
    CHECK(rest >= r->text && rest <= r->text + r->textlen);
}

static void fuzz_replies(const char *in, size_t len)
{
    struct smtp_reply r;
    struct smtp_ext ext = {0};
    smtp_reply_init(&r);
    size_t start = 0;
    while (start < len) {
        const char *lf = memchr(in + start, '\n', len - start);
        if (!lf)
            break; /* an unfinished line waits for more bytes */
        size_t end = (size_t)(lf - in);
        size_t linelen = end - start;
        if (linelen > 0 && in[end - 1] == '\r')
            linelen--;
        const char *line = in + start, *why = NULL;
        enum smtp_reply_status st = smtp_reply_feed(&r, line, linelen, &why);
        start = end + 1;
        if (st == SMTP_REPLY_ERROR) {
            CHECK(why != NULL);
            smtp_reply_init(&r); /* the client would close; go on fuzzing */
            continue;
        }
        if (linelen > 4)
            smtp_ehlo_line(&ext, line + 4, linelen - 4);
        if (st == SMTP_REPLY_DONE) {
            check_reply(&r);
            smtp_reply_init(&r);
        } else {
            CHECK(st == SMTP_REPLY_MORE && !r.done);
        }
    }
}

/* The stuffed output: CR and LF only as CRLF pairs, no line that is a lone
 * "." before the final one, and ends in CRLF "." CRLF. */
static void check_stuffed(const char *out, size_t n)
{
    CHECK(n >= 3 && memcmp(out + n - 3, ".\r\n", 3) == 0);
    CHECK(n == 3 || (out[n - 5] == '\r' && out[n - 4] == '\n'));
    for (size_t i = 0; i < n; i++) {
        if (out[i] == '\r')
            CHECK(i + 1 < n && out[i + 1] == '\n');
        if (out[i] == '\n')
            CHECK(i > 0 && out[i - 1] == '\r');
        if (i + 3 < n && (i == 0 || out[i - 1] == '\n') && out[i] == '.')
            CHECK(out[i + 1] == '.');
    }
}

static void fuzz_stuffer(const char *in, size_t len)
{
    if (len == 0)
        return;
    size_t step = (unsigned char)in[0] % 17 + 1;
    in++, len--;
    char *one = malloc(DOT_STUFF_OUT_MAX(len) + DOT_STUFF_END_MAX);
    char *split = malloc(DOT_STUFF_OUT_MAX(len) + DOT_STUFF_END_MAX);
    CHECK(one && split);
    struct dot_stuffer a, b;
    dot_stuff_init(&a);
    dot_stuff_init(&b);
    size_t na = dot_stuff_chunk(&a, in, len, one);
    CHECK(na <= DOT_STUFF_OUT_MAX(len));
    na += dot_stuff_end(&a, one + na);
    size_t nb = 0;
    for (size_t i = 0; i < len; i += step) {
        size_t n = len - i < step ? len - i : step;
        size_t m = dot_stuff_chunk(&b, in + i, n, split + nb);
        CHECK(m <= DOT_STUFF_OUT_MAX(n));
        nb += m;
    }
    nb += dot_stuff_end(&b, split + nb);
    CHECK(na == nb && memcmp(one, split, na) == 0);
    check_stuffed(one, na);
    free(one);
    free(split);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_replies((const char *)data, size);
    fuzz_stuffer((const char *)data, size);
    return 0;
}
