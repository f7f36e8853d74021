/* Unit tests of the pure parts of the SMTP client (smtp_client.c): reply
 * accumulation, enhanced status codes, EHLO keywords, command formatting and
 * the dot-stuffer with line-end repair, split across chunks every way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp_client.h"

/* ---- replies ------------------------------------------------------------ */

static enum smtp_reply_status feed(struct smtp_reply *r, const char *line)
{
    const char *why = NULL;
    enum smtp_reply_status st = smtp_reply_feed(r, line, strlen(line), &why);
    if (st == SMTP_REPLY_ERROR)
        assert_non_null(why);
    return st;
}

static void test_reply_single_line(void **state)
{
    (void)state;
    struct smtp_reply r;
    smtp_reply_init(&r);
    assert_int_equal(feed(&r, "250 2.0.0 Ok: queued as ABC"), SMTP_REPLY_DONE);
    assert_int_equal(r.code, 250);
    assert_int_equal(r.nlines, 1);
    assert_true(r.done);
    assert_string_equal(r.text, "2.0.0 Ok: queued as ABC");
    char dsn[SMTP_DSN_MAX];
    smtp_reply_dsn(&r, dsn);
    assert_string_equal(dsn, "2.0.0");
    assert_string_equal(smtp_reply_text_after_dsn(&r), "Ok: queued as ABC");
}

static void test_reply_multi_line(void **state)
{
    (void)state;
    struct smtp_reply r;
    smtp_reply_init(&r);
    assert_int_equal(feed(&r, "220-mx.example.org ESMTP"), SMTP_REPLY_MORE);
    assert_int_equal(feed(&r, "220-"), SMTP_REPLY_MORE); /* empty continuation */
    assert_int_equal(feed(&r, "220 ready"), SMTP_REPLY_DONE);
    assert_int_equal(r.code, 220);
    assert_int_equal(r.nlines, 3);
    assert_string_equal(r.text, "mx.example.org ESMTP ready");
}

static void test_reply_code_only(void **state)
{
    (void)state;
    struct smtp_reply r;
    smtp_reply_init(&r);
    assert_int_equal(feed(&r, "354"), SMTP_REPLY_DONE);
    assert_int_equal(r.code, 354);
    assert_string_equal(r.text, "");
    char dsn[SMTP_DSN_MAX];
    smtp_reply_dsn(&r, dsn);
    assert_string_equal(dsn, "3.0.0");
}

static void test_reply_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",         "25",        "2500 x", "abc def", "099 too low",
        "600 high", "250_under", "25 0",   " 250 x",  "250\tx",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct smtp_reply r;
        smtp_reply_init(&r);
        if (feed(&r, bad[i]) != SMTP_REPLY_ERROR)
            fail_msg("'%s' was taken for a reply line", bad[i]);
    }
    /* the code must not change within a reply */
    struct smtp_reply r;
    smtp_reply_init(&r);
    assert_int_equal(feed(&r, "250-first"), SMTP_REPLY_MORE);
    assert_int_equal(feed(&r, "550 second"), SMTP_REPLY_ERROR);
}

static void test_reply_line_too_long(void **state)
{
    (void)state;
    char line[SMTP_REPLY_LINE_MAX + 2];
    memset(line, 'a', sizeof line - 1);
    memcpy(line, "250 ", 4);
    line[SMTP_REPLY_LINE_MAX] = '\0'; /* exactly the limit: fine */
    struct smtp_reply r;
    smtp_reply_init(&r);
    assert_int_equal(feed(&r, line), SMTP_REPLY_DONE);
    assert_true(r.textlen < SMTP_REPLY_TEXT_MAX); /* the kept text is cut */
    assert_int_equal(strlen(r.text), r.textlen);
    line[SMTP_REPLY_LINE_MAX] = 'a';
    line[SMTP_REPLY_LINE_MAX + 1] = '\0'; /* one more: refused */
    smtp_reply_init(&r);
    assert_int_equal(feed(&r, line), SMTP_REPLY_ERROR);
}

static void test_reply_too_many_lines(void **state)
{
    (void)state;
    struct smtp_reply r;
    smtp_reply_init(&r);
    for (unsigned i = 0; i < SMTP_REPLY_LINES_MAX - 1; i++)
        assert_int_equal(feed(&r, "250-SOMETHING"), SMTP_REPLY_MORE);
    assert_int_equal(feed(&r, "250 last allowed"), SMTP_REPLY_DONE);
    smtp_reply_init(&r);
    for (unsigned i = 0; i < SMTP_REPLY_LINES_MAX; i++)
        assert_int_equal(feed(&r, "250-SOMETHING"), SMTP_REPLY_MORE);
    assert_int_equal(feed(&r, "250 one too many"), SMTP_REPLY_ERROR);
}

static void test_reply_text_is_sanitised(void **state)
{
    (void)state;
    struct smtp_reply r;
    smtp_reply_init(&r);
    const char line[] = "550 bad\r\x01\x7f\xc3\xa9\tend";
    const char *why;
    assert_int_equal(smtp_reply_feed(&r, line, sizeof line - 1, &why), SMTP_REPLY_DONE);
    assert_string_equal(r.text, "bad????? end");
    /* a NUL inside a line does not cut the text short or survive */
    smtp_reply_init(&r);
    const char nul[] = "451 a\0b";
    assert_int_equal(smtp_reply_feed(&r, nul, sizeof nul - 1, &why), SMTP_REPLY_DONE);
    assert_string_equal(r.text, "a?b");
    assert_int_equal(r.textlen, 3);
}

static void test_reply_dsn(void **state)
{
    (void)state;
    static const struct {
        const char *line, *dsn, *rest;
    } cases[] = {
        {"550 5.1.1 <a@b>: User unknown", "5.1.1", "<a@b>: User unknown"},
        {"451 4.3.0", "4.3.0", ""},
        {"452 4.123.456 full", "4.123.456", "full"},
        {"550 4.1.1 class mismatch", "5.0.0", "4.1.1 class mismatch"},
        {"550 5.1 too short", "5.0.0", "5.1 too short"},
        {"550 5.1.1234 too long", "5.0.0", "5.1.1234 too long"},
        {"550 5.1.1x glued", "5.0.0", "5.1.1x glued"},
        {"250 Ok", "2.0.0", "Ok"},
        {"421 mx closing", "4.0.0", "mx closing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct smtp_reply r;
        smtp_reply_init(&r);
        assert_int_equal(feed(&r, cases[i].line), SMTP_REPLY_DONE);
        char dsn[SMTP_DSN_MAX];
        smtp_reply_dsn(&r, dsn);
        assert_string_equal(dsn, cases[i].dsn);
        assert_string_equal(smtp_reply_text_after_dsn(&r), cases[i].rest);
    }
}

/* ---- EHLO ----------------------------------------------------------------- */

static void ehlo(struct smtp_ext *e, const char *text)
{
    smtp_ehlo_line(e, text, strlen(text));
}

static void test_ehlo_keywords(void **state)
{
    (void)state;
    struct smtp_ext e = {0};
    ehlo(&e, "pipelining");
    ehlo(&e, "8BITMIME");
    ehlo(&e, "SIZE 10240000");
    assert_true(e.pipelining);
    assert_true(e.eightbitmime);
    assert_true(e.size);
    assert_true(e.size_max == 10240000ULL);

    struct smtp_ext f = {0};
    ehlo(&f, "PIPELININGX"); /* another keyword */
    ehlo(&f, "8BITMIMEFOO");
    ehlo(&f, "XSIZE 5");
    ehlo(&f, "STARTTLS");
    assert_false(f.pipelining);
    assert_false(f.eightbitmime);
    assert_false(f.size);

    struct smtp_ext g = {0};
    ehlo(&g, "SIZE");
    assert_true(g.size);
    assert_true(g.size_max == 0);
    ehlo(&g, "SIZE 99999999999999999999999"); /* absurd: no stated limit */
    assert_true(g.size_max == 0);
    ehlo(&g, "SIZE 12abc");
    assert_true(g.size_max == 0);
}

/* ---- commands --------------------------------------------------------------- */

static void test_format_commands(void **state)
{
    (void)state;
    char buf[SMTP_COMMAND_MAX];
    assert_int_equal(smtp_format_mail(buf, sizeof buf, "a@b.example", false, false, 0), 25);
    assert_string_equal(buf, "MAIL FROM:<a@b.example>\r\n");
    smtp_format_mail(buf, sizeof buf, "", true, true, 1234);
    assert_string_equal(buf, "MAIL FROM:<> BODY=8BITMIME SIZE=1234\r\n");
    smtp_format_mail(buf, sizeof buf, "a@b", false, true, 0);
    assert_string_equal(buf, "MAIL FROM:<a@b> SIZE=0\r\n");
    assert_int_equal(smtp_format_mail(buf, sizeof buf, "a@b\r\nRCPT TO:<x>", false, false, 0), -1);
    assert_int_equal(smtp_format_rcpt(buf, sizeof buf, "x@y.example"), 23);
    assert_string_equal(buf, "RCPT TO:<x@y.example>\r\n");
    assert_int_equal(smtp_format_rcpt(buf, sizeof buf, ""), -1);
    assert_int_equal(smtp_format_rcpt(buf, sizeof buf, "x@y\n"), -1);
    char small[10];
    assert_int_equal(smtp_format_rcpt(small, sizeof small, "x@y.example"), -1);
    /* the longest queue address fits */
    char addr[QUEUE_ADDR_MAX];
    memset(addr, 'a', sizeof addr - 1);
    addr[sizeof addr - 1] = '\0';
    assert_true(smtp_format_mail(buf, sizeof buf, addr, true, true, ~0ULL) > 0);
    assert_true(smtp_format_rcpt(buf, sizeof buf, addr) > 0);
}

/* ---- dot-stuffing --------------------------------------------------------- */

/* Stuffs `in` split into pieces of `step` bytes (0: in one go), with end. */
static size_t stuff_in_steps(const char *in, size_t len, size_t step, char *out)
{
    struct dot_stuffer st;
    dot_stuff_init(&st);
    size_t o = 0;
    if (step == 0)
        step = len ? len : 1;
    for (size_t i = 0; i < len; i += step) {
        size_t n = len - i < step ? len - i : step;
        size_t m = dot_stuff_chunk(&st, in + i, n, out + o);
        assert_true(m <= DOT_STUFF_OUT_MAX(n));
        o += m;
    }
    size_t e = dot_stuff_end(&st, out + o);
    assert_true(e <= DOT_STUFF_END_MAX);
    return o + e;
}

static void check_stuff(const char *in, size_t len, const char *want)
{
    char *out = malloc(DOT_STUFF_OUT_MAX(len) + DOT_STUFF_END_MAX);
    assert_non_null(out);
    for (size_t step = 0; step <= len + 1; step++) {
        size_t n = stuff_in_steps(in, len, step, out);
        if (n != strlen(want) || memcmp(out, want, n) != 0)
            fail_msg("step %zu: got '%.*s', want '%s'", step, (int)n, out, want);
    }
    free(out);
}

#define CHECK_STUFF(in, want) check_stuff(in, sizeof(in) - 1, want)

static void test_dot_stuff_table(void **state)
{
    (void)state;
    CHECK_STUFF("", ".\r\n");
    CHECK_STUFF("a\r\n", "a\r\n.\r\n");
    CHECK_STUFF("a", "a\r\n.\r\n"); /* no final line end: added */
    CHECK_STUFF(".", "..\r\n.\r\n");
    CHECK_STUFF(".\r\n", "..\r\n.\r\n"); /* a lone dot line is stuffed */
    CHECK_STUFF("..\r\n", "...\r\n.\r\n");
    CHECK_STUFF("a.b\r\n.c\r\n", "a.b\r\n..c\r\n.\r\n");
    CHECK_STUFF("a\nb\n", "a\r\nb\r\n.\r\n"); /* lone LF */
    CHECK_STUFF("a\rb\r", "a\r\nb\r\n.\r\n"); /* lone CR */
    CHECK_STUFF("a\r\rb", "a\r\n\r\nb\r\n.\r\n");
    CHECK_STUFF("a\n\rb", "a\r\n\r\nb\r\n.\r\n"); /* LF CR is two line ends */
    CHECK_STUFF("\r\n.\r\n", "\r\n..\r\n.\r\n");
    CHECK_STUFF("\n.\n", "\r\n..\r\n.\r\n");
    CHECK_STUFF("\r.\r", "\r\n..\r\n.\r\n");
    CHECK_STUFF("x\r\n.\r\n.\r\n", "x\r\n..\r\n..\r\n.\r\n"); /* a smuggled end */
}

static void test_dot_stuff_nul_passes(void **state)
{
    (void)state;
    const char in[] = "a\0b\r\n";
    char out[32];
    size_t n = stuff_in_steps(in, sizeof in - 1, 0, out);
    assert_int_equal(n, 8);
    assert_memory_equal(out, "a\0b\r\n.\r\n", 8);
}

/* The worst case for the output bound: CR before a dot, again and again. */
static void test_dot_stuff_bound(void **state)
{
    (void)state;
    enum { N = 4096 };
    char in[N];
    for (size_t i = 0; i < N; i++)
        in[i] = i % 2 ? '.' : '\r';
    char *out = malloc(DOT_STUFF_OUT_MAX(N) + DOT_STUFF_END_MAX);
    assert_non_null(out);
    for (size_t step = 1; step <= 7; step++) {
        size_t n = stuff_in_steps(in, N, step, out);
        assert_int_equal(n, (size_t)N * 2 + 5); /* "\r\n.." per pair, "\r\n.\r\n" */
    }
    /* and a chunk that starts after a pending CR */
    struct dot_stuffer st;
    dot_stuff_init(&st);
    assert_int_equal(dot_stuff_chunk(&st, "\r", 1, out), 0);
    assert_int_equal(dot_stuff_chunk(&st, ".", 1, out), 4);
    assert_true(4 <= DOT_STUFF_OUT_MAX(1));
    free(out);
}

/* Reference: what the output must be, computed the slow way. */
static size_t reference_stuff(const char *in, size_t len, char *out)
{
    size_t o = 0;
    bool line_start = true;
    for (size_t i = 0; i < len; i++) {
        bool eol = in[i] == '\n' || in[i] == '\r';
        if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
            i++;
        if (eol) {
            out[o++] = '\r', out[o++] = '\n';
            line_start = true;
            continue;
        }
        if (line_start && in[i] == '.')
            out[o++] = '.';
        out[o++] = in[i];
        line_start = false;
    }
    if (!line_start)
        out[o++] = '\r', out[o++] = '\n';
    memcpy(out + o, ".\r\n", 3);
    return o + 3;
}

/* Output invariants: only CRLF line ends, no line "." alone before the end,
 * and unstuffing gives back the normalised input. */
static void test_dot_stuff_random(void **state)
{
    (void)state;
    static const char alphabet[] = "\r\n.a";
    srand(4242);
    char in[64], want[256], got[256];
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = (size_t)rand() % sizeof in;
        for (size_t i = 0; i < len; i++)
            in[i] = alphabet[rand() % 4];
        size_t wn = reference_stuff(in, len, want);
        size_t step = (size_t)rand() % (len + 2);
        size_t gn = stuff_in_steps(in, len, step, got);
        assert_int_equal(gn, wn);
        assert_memory_equal(got, want, gn);
        for (size_t i = 0; i < gn; i++) { /* CR only before LF, LF only after CR */
            if (got[i] == '\r')
                assert_true(i + 1 < gn && got[i + 1] == '\n');
            if (got[i] == '\n')
                assert_true(i > 0 && got[i - 1] == '\r');
        }
        /* the only ".\r\n" line is the last one */
        for (size_t i = 0; i + 3 < gn; i++)
            if ((i == 0 || got[i - 1] == '\n') && got[i] == '.')
                assert_true(got[i + 1] != '\r');
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_single_line),       cmocka_unit_test(test_reply_multi_line),
        cmocka_unit_test(test_reply_code_only),         cmocka_unit_test(test_reply_errors),
        cmocka_unit_test(test_reply_line_too_long),     cmocka_unit_test(test_reply_too_many_lines),
        cmocka_unit_test(test_reply_text_is_sanitised), cmocka_unit_test(test_reply_dsn),
        cmocka_unit_test(test_ehlo_keywords),           cmocka_unit_test(test_format_commands),
        cmocka_unit_test(test_dot_stuff_table),         cmocka_unit_test(test_dot_stuff_nul_passes),
        cmocka_unit_test(test_dot_stuff_bound),         cmocka_unit_test(test_dot_stuff_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
