/* Unit tests of the DATA phase state machine (data_reader.c), table-driven.
 * Every case is fed in one piece, byte by byte and in random splits, and
 * must give the same result, the same consumed count, the same output and
 * the same final counters each time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "data_reader.h"

#define BIG ((size_t)1 << 20)
#define SPLIT_ROUNDS 64

/* What one feeding of a whole input gave. */
struct outcome {
    enum data_result result;
    size_t consumed;
    char out[8192];
    size_t outlen;
    struct data_reader dr;
};

/* xorshift32: a fixed, reproducible sequence of split points */
static uint32_t rng_state = 2463534242u;
static uint32_t next_random(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* Feeds `in` in chunks of at most `chunk` bytes (0: random sizes), stopping
 * at the first result that is not DATA_MORE, as a server would. */
static void feed_in_chunks(const char *in, size_t len, size_t chunk, size_t max_size,
                           size_t max_header, struct outcome *o)
{
    memset(o, 0, sizeof *o);
    data_reader_init(&o->dr, max_size, max_header);
    o->result = DATA_MORE;
    size_t pos = 0;
    do {
        size_t n = chunk != 0 ? chunk : 1 + next_random() % 7;
        if (n > len - pos)
            n = len - pos;
        char piece[sizeof o->out];
        size_t consumed = 0, outlen = 0;
        o->result = data_reader_feed(&o->dr, in + pos, n, &consumed, piece, &outlen);
        assert_true(consumed <= n);
        assert_true(outlen <= consumed);
        if (o->result == DATA_MORE)
            assert_int_equal(consumed, n);
        assert_true(o->outlen + outlen <= sizeof o->out);
        memcpy(o->out + o->outlen, piece, outlen);
        o->outlen += outlen;
        pos += consumed;
    } while (o->result == DATA_MORE && pos < len);
    o->consumed = pos;
}

static void assert_same_outcome(const struct outcome *a, const struct outcome *b)
{
    assert_int_equal(a->result, b->result);
    assert_int_equal(a->consumed, b->consumed);
    assert_int_equal(a->outlen, b->outlen);
    assert_memory_equal(a->out, b->out, a->outlen);
    assert_int_equal(a->dr.state, b->dr.state);
    assert_int_equal(a->dr.size, b->dr.size);
    assert_int_equal(a->dr.header_size, b->dr.header_size);
    assert_int_equal(a->dr.in_header, b->dr.in_header);
    assert_int_equal(a->dr.too_big, b->dr.too_big);
    assert_int_equal(a->dr.header_too_big, b->dr.header_too_big);
    assert_int_equal(a->dr.has_nul, b->dr.has_nul);
    assert_int_equal(a->dr.has_8bit, b->dr.has_8bit);
    assert_string_equal(a->dr.msgid, b->dr.msgid);
    assert_int_equal(a->dr.msgid_len, b->dr.msgid_len);
}

/* One-shot, byte by byte and random splits; returns the one-shot outcome. */
static void feed_every_way(const char *in, size_t len, size_t max_size, size_t max_header,
                           struct outcome *whole)
{
    static struct outcome other;
    feed_in_chunks(in, len, len == 0 ? 1 : len, max_size, max_header, whole);
    feed_in_chunks(in, len, 1, max_size, max_header, &other);
    assert_same_outcome(whole, &other);
    for (int round = 0; round < SPLIT_ROUNDS; round++) {
        feed_in_chunks(in, len, 0, max_size, max_header, &other);
        assert_same_outcome(whole, &other);
    }
}

/* ---- framing: end, dot-unstuffing, bare CR and LF ----------------------- */

struct frame_case {
    const char *in;
    enum data_result result;
    size_t consumed;
    const char *out;
};

#define END DATA_END
#define MORE DATA_MORE
#define BLF DATA_BARE_LF
#define BCR DATA_BARE_CR

static const struct frame_case frame_cases[] = {
    /* the end, right after 354's CRLF or after lines */
    {".\r\n", END, 3, ""},
    {"a\r\n.\r\n", END, 6, "a\r\n"},
    {"\r\n.\r\n", END, 5, "\r\n"},
    {"a\r\nb\r\n.\r\n", END, 9, "a\r\nb\r\n"},
    /* pipelined bytes after the end are not consumed */
    {"a\r\n.\r\nQUIT\r\n", END, 6, "a\r\n"},
    {".\r\nMAIL FROM:<a@b>\r\n", END, 3, ""},
    {"a\r\n.\r\n.\r\n", END, 6, "a\r\n"},
    {"a\r\n.\r\n\n", END, 6, "a\r\n"},
    /* dot-unstuffing (RFC 5321 4.5.2) */
    {"..\r\n.\r\n", END, 7, ".\r\n"},
    {"...\r\n.\r\n", END, 8, "..\r\n"},
    {"..a\r\n.\r\n", END, 8, ".a\r\n"},
    {".a\r\n.\r\n", END, 7, "a\r\n"},
    {". \r\n.\r\n", END, 7, " \r\n"},
    {"a\r\n..\r\n.\r\n", END, 10, "a\r\n.\r\n"},
    {"a.\r\n.\r\n", END, 7, "a.\r\n"},
    {" .\r\n.\r\n", END, 7, " .\r\n"},
    {"a\r\n.b.\r\n.\r\n", END, 11, "a\r\nb.\r\n"},
    {"x.\r\n.\r\n", END, 7, "x.\r\n"},
    /* not the end yet */
    {"", MORE, 0, ""},
    {"a", MORE, 1, "a"},
    {"a\r", MORE, 2, "a\r"},
    {"a\r\n", MORE, 3, "a\r\n"},
    {"a\r\n.", MORE, 4, "a\r\n"},
    {"a\r\n.\r", MORE, 5, "a\r\n"},
    {"a\r\n..", MORE, 5, "a\r\n."},
    {"a.\r\n", MORE, 4, "a.\r\n"},
    {"a\r\n .\r\n", MORE, 7, "a\r\n .\r\n"},
    {"a\r\nx.\r\n", MORE, 7, "a\r\nx.\r\n"},
    /* bare LF anywhere: the LF is not consumed */
    {"\n", BLF, 0, ""},
    {"a\n", BLF, 1, "a"},
    {"a\nb\r\n.\r\n", BLF, 1, "a"},
    {"a\r\n\n", BLF, 3, "a\r\n"},
    {"a\r\n.\n", BLF, 4, "a\r\n"},
    {"a\n.\n", BLF, 1, "a"},
    {"a\n.\r\n", BLF, 1, "a"},
    {"a\r\n.\nMAIL FROM:<x@y>\r\n", BLF, 4, "a\r\n"},
    {"a\r\n..\n", BLF, 5, "a\r\n."},
    {"a\r\n.x\n", BLF, 5, "a\r\nx"},
    /* bare CR: the byte after the CR is not consumed */
    {"\rx", BCR, 1, "\r"},
    {"a\rb", BCR, 2, "a\r"},
    {"a\r\r\n", BCR, 2, "a\r"},
    {"a\r\n.\rx", BCR, 5, "a\r\n"},
    {"a\r\n.\r.\r\n", BCR, 5, "a\r\n"},
    {"a\r\n.\r\r\n", BCR, 5, "a\r\n"},
    {"\r.\r\n", BCR, 1, "\r"},
    {"a\r\n\r.\r\n", BCR, 4, "a\r\n\r"},
};

static void test_framing_table(void **state)
{
    (void)state;
    static struct outcome o;
    for (size_t i = 0; i < sizeof frame_cases / sizeof frame_cases[0]; i++) {
        const struct frame_case *c = &frame_cases[i];
        size_t len = strlen(c->in);
        feed_every_way(c->in, len, BIG, BIG, &o);
        if (o.result != c->result || o.consumed != c->consumed || o.outlen != strlen(c->out) ||
            memcmp(o.out, c->out, o.outlen) != 0)
            print_error("case %zu failed: result %d consumed %zu outlen %zu\n", i, o.result,
                        o.consumed, o.outlen);
        assert_int_equal(o.result, c->result);
        assert_int_equal(o.consumed, c->consumed);
        assert_int_equal(o.outlen, strlen(c->out));
        assert_memory_equal(o.out, c->out, o.outlen);
    }
}

/* A CR at the very end of one buffer and its LF at the start of the next. */
static void test_crlf_across_calls(void **state)
{
    (void)state;
    struct data_reader dr;
    char out[16];
    size_t consumed, outlen;
    data_reader_init(&dr, BIG, BIG);
    assert_int_equal(data_reader_feed(&dr, "ab\r", 3, &consumed, out, &outlen), DATA_MORE);
    assert_int_equal(consumed, 3);
    assert_int_equal(outlen, 3);
    assert_int_equal(data_reader_feed(&dr, "\n.", 2, &consumed, out, &outlen), DATA_MORE);
    assert_int_equal(consumed, 2);
    assert_int_equal(outlen, 1);
    assert_int_equal(data_reader_feed(&dr, "\r", 1, &consumed, out, &outlen), DATA_MORE);
    assert_int_equal(outlen, 0);
    assert_int_equal(data_reader_feed(&dr, "\nQUIT\r\n", 7, &consumed, out, &outlen), DATA_END);
    assert_int_equal(consumed, 1);
    assert_int_equal(outlen, 0);
    assert_int_equal(dr.size, 4);

    /* a CR ending a buffer followed by something else than LF is bare */
    data_reader_init(&dr, BIG, BIG);
    assert_int_equal(data_reader_feed(&dr, "ab\r", 3, &consumed, out, &outlen), DATA_MORE);
    assert_int_equal(data_reader_feed(&dr, "x\r\n", 3, &consumed, out, &outlen), DATA_BARE_CR);
    assert_int_equal(consumed, 0);
    assert_int_equal(outlen, 0);
    /* ... and stays bare when fed again */
    assert_int_equal(data_reader_feed(&dr, "x\r\n", 3, &consumed, out, &outlen), DATA_BARE_CR);
    assert_int_equal(consumed, 0);
}

static void test_after_end(void **state)
{
    (void)state;
    struct data_reader dr;
    char out[16];
    size_t consumed, outlen;
    data_reader_init(&dr, BIG, BIG);
    assert_int_equal(data_reader_feed(&dr, ".\r\n", 3, &consumed, out, &outlen), DATA_END);
    assert_int_equal(data_reader_feed(&dr, "more\r\n", 6, &consumed, out, &outlen), DATA_END);
    assert_int_equal(consumed, 0);
    assert_int_equal(outlen, 0);
    assert_int_equal(dr.size, 0);
}

static void test_bare_lf_refeed(void **state)
{
    (void)state;
    struct data_reader dr;
    char out[16];
    size_t consumed, outlen;
    data_reader_init(&dr, BIG, BIG);
    assert_int_equal(data_reader_feed(&dr, "ab\ncd", 5, &consumed, out, &outlen), DATA_BARE_LF);
    assert_int_equal(consumed, 2);
    assert_int_equal(data_reader_feed(&dr, "\ncd", 3, &consumed, out, &outlen), DATA_BARE_LF);
    assert_int_equal(consumed, 0);
}

/* ---- limits and flags --------------------------------------------------- */

struct limit_case {
    const char *in;
    size_t len; /* 0: strlen(in) */
    size_t max_size, max_header;
    enum data_result result;
    size_t size, header_size, outlen;
    bool too_big, header_too_big, in_header, has_nul, has_8bit;
};

static const struct limit_case limit_cases[] = {
    /* size counts the message after unstuffing, CRLF included */
    {"abc\r\n.\r\n", 0, 5, BIG, END, 5, 5, 5, false, false, true, false, false},
    {"abc\r\n.\r\n", 0, 4, BIG, END, 5, 5, 4, true, false, true, false, false},
    {"abc\r\n.\r\n", 0, 0, BIG, END, 5, 5, 0, true, false, true, false, false},
    {".\r\n", 0, 0, BIG, END, 0, 0, 0, false, false, true, false, false},
    {"..\r\n.\r\n", 0, 3, BIG, END, 3, 3, 3, false, false, true, false, false},
    {"..\r\n.\r\n", 0, 2, BIG, END, 3, 3, 2, true, false, true, false, false},
    {"abcdef\r\n", 0, 2, BIG, MORE, 8, 8, 2, true, false, true, false, false},
    /* the header section ends at the first empty line, which it does not include */
    {"A: b\r\n\r\nbody\r\n.\r\n", 0, BIG, 6, END, 14, 6, 14, false, false, false, false, false},
    {"A: b\r\n\r\nbody\r\n.\r\n", 0, BIG, 5, END, 14, 6, 14, false, true, false, false, false},
    {"A: b\r\n\r\nbody\r\n.\r\n", 0, BIG, 0, END, 14, 6, 14, false, true, false, false, false},
    {"A: b\r\nC: d\r\n", 0, BIG, 11, MORE, 12, 12, 12, false, true, true, false, false},
    {"\r\nA: b\r\n.\r\n", 0, BIG, 0, END, 8, 0, 8, false, false, false, false, false},
    {"A: b\r\n\r\n\r\n\r\n.\r\n", 0, BIG, 6, END, 12, 6, 12, false, false, false, false, false},
    {"A: b\r\n\r", 0, BIG, 6, MORE, 7, 6, 7, false, false, true, false, false},
    /* NUL and 8-bit bytes are noticed and kept */
    {"a\0b\r\n.\r\n", 5, BIG, BIG, MORE, 5, 5, 5, false, false, true, true, false},
    {"a\0b\r\n.\r\n", 8, BIG, BIG, END, 5, 5, 5, false, false, true, true, false},
    {"\xc3\xa9\r\n.\r\n", 0, BIG, BIG, END, 4, 4, 4, false, false, true, false, true},
    {"a\r\n\r\n\x80\r\n.\r\n", 0, BIG, BIG, END, 8, 3, 8, false, false, false, false, true},
    {"\x7f\r\n.\r\n", 0, BIG, BIG, END, 3, 3, 3, false, false, true, false, false},
};

static void test_limits_table(void **state)
{
    (void)state;
    static struct outcome o;
    for (size_t i = 0; i < sizeof limit_cases / sizeof limit_cases[0]; i++) {
        const struct limit_case *c = &limit_cases[i];
        size_t len = c->len != 0 ? c->len : strlen(c->in);
        feed_every_way(c->in, len, c->max_size, c->max_header, &o);
        if (o.result != c->result || o.dr.size != c->size || o.dr.header_size != c->header_size ||
            o.outlen != c->outlen)
            print_error("case %zu failed: result %d size %zu header %zu outlen %zu\n", i, o.result,
                        o.dr.size, o.dr.header_size, o.outlen);
        assert_int_equal(o.result, c->result);
        assert_int_equal(o.dr.size, c->size);
        assert_int_equal(o.dr.header_size, c->header_size);
        assert_int_equal(o.outlen, c->outlen);
        assert_int_equal(o.dr.too_big, c->too_big);
        assert_int_equal(o.dr.header_too_big, c->header_too_big);
        assert_int_equal(o.dr.in_header, c->in_header);
        assert_int_equal(o.dr.has_nul, c->has_nul);
        assert_int_equal(o.dr.has_8bit, c->has_8bit);
        /* output is the message cut at max_size */
        assert_int_equal(o.outlen, c->size < c->max_size ? c->size : c->max_size);
    }
}

/* Output stops at max_size, but the end is still found after it. */
static void test_too_big_keeps_scanning(void **state)
{
    (void)state;
    static char in[100000];
    static struct outcome o;
    size_t len = 0;
    for (int line = 0; line < 1000; line++)
        len += (size_t)snprintf(in + len, sizeof in - len, "line %04d of the body\r\n", line);
    size_t body = len;
    len += (size_t)snprintf(in + len, sizeof in - len, ".\r\nQUIT\r\n");
    feed_in_chunks(in, len, 4096, 1000, BIG, &o);
    assert_int_equal(o.result, DATA_END);
    assert_int_equal(o.consumed, body + 3);
    assert_true(o.dr.too_big);
    assert_int_equal(o.dr.size, body);
    assert_int_equal(o.outlen, 1000);
    assert_memory_equal(o.out, in, 1000);
}

/* ---- Message-ID ----------------------------------------------------------- */

struct msgid_case {
    const char *in;
    const char *msgid;
};

static const struct msgid_case msgid_cases[] = {
    {"Message-ID: <a@b>\r\n\r\n.\r\n", "<a@b>"},
    {"Message-Id: <a@b>\r\n.\r\n", "<a@b>"},
    {"message-id:<a@b>\r\n.\r\n", "<a@b>"},
    {"MESSAGE-ID: \t <a@b> \t \r\n.\r\n", "<a@b>"},
    {"Subject: x\r\nMessage-ID: <a@b>\r\nTo: y\r\n\r\nb\r\n.\r\n", "<a@b>"},
    /* the first one wins */
    {"Message-ID: <1@b>\r\nMessage-ID: <2@b>\r\n\r\n.\r\n", "<1@b>"},
    /* only at the start of a header line, only in the header section */
    {"Subject: x\r\n\r\nMessage-ID: <a@b>\r\n.\r\n", ""},
    {"\r\nMessage-ID: <a@b>\r\n.\r\n", ""},
    {"X-Message-ID: <a@b>\r\n.\r\n", ""},
    {"Resent-Message-ID: <a@b>\r\n.\r\n", ""},
    {"Message-ID : <a@b>\r\n.\r\n", ""},
    {"Message-IDs: <a@b>\r\n.\r\n", ""},
    {"Message-I\r\nD: <a@b>\r\n.\r\n", ""},
    {"Subject: x\r\n Message-ID: <a@b>\r\n.\r\n", ""},
    {"Subject: Message-ID: <a@b>\r\n.\r\n", ""},
    /* folded: a value on the continuation line of an empty Message-ID */
    {"Message-ID:\r\n <a@b>\r\n\r\n.\r\n", "<a@b>"},
    {"Message-ID:  \r\n\t<a@b>\r\n\r\n.\r\n", "<a@b>"},
    {"Message-ID:\r\nSubject: x\r\n <a@b>\r\n\r\n.\r\n", ""},
    {"Message-ID:\r\nMessage-ID: <2@b>\r\n\r\n.\r\n", "<2@b>"},
    {"Message-ID: <a@b>\r\n <c@d>\r\n\r\n.\r\n", "<a@b>"},
    /* inner blanks are kept, control and 8-bit bytes are masked */
    {"Message-ID: <a b@c>\r\n.\r\n", "<a b@c>"},
    {"Message-ID: <a\tb@c>\r\n.\r\n", "<a b@c>"},
    {"Message-ID: <a\x01\xff@c>\r\n.\r\n", "<a??@c>"},
    /* dot-stuffing is removed before matching */
    {".Message-ID: <a@b>\r\n.\r\n", "<a@b>"},
    {"..Message-ID: <a@b>\r\n.\r\n", ""},
    /* unfinished: the value is there as soon as it is read */
    {"Message-ID: <a@b>", "<a@b>"},
};

static void test_msgid_table(void **state)
{
    (void)state;
    static struct outcome o;
    for (size_t i = 0; i < sizeof msgid_cases / sizeof msgid_cases[0]; i++) {
        const struct msgid_case *c = &msgid_cases[i];
        feed_every_way(c->in, strlen(c->in), BIG, BIG, &o);
        if (strcmp(o.dr.msgid, c->msgid) != 0)
            print_error("case %zu: got \"%s\"\n", i, o.dr.msgid);
        assert_string_equal(o.dr.msgid, c->msgid);
        assert_int_equal(o.dr.msgid_len, strlen(c->msgid));
    }
}

static void test_msgid_bounded(void **state)
{
    (void)state;
    static char in[2048];
    static struct outcome o;
    size_t len = (size_t)snprintf(in, sizeof in, "Message-ID: <");
    memset(in + len, 'x', 1000);
    len += 1000;
    len += (size_t)snprintf(in + len, sizeof in - len, "@b>\r\n\r\n.\r\n");
    feed_every_way(in, len, BIG, BIG, &o);
    assert_int_equal(o.result, DATA_END);
    assert_int_equal(o.dr.msgid_len, DATA_MSGID_MAX - 1);
    assert_int_equal(strlen(o.dr.msgid), DATA_MSGID_MAX - 1);
    assert_int_equal(o.dr.msgid[0], '<');
    assert_int_equal(o.dr.msgid[DATA_MSGID_MAX - 2], 'x');
}

/* Re-stuffing the output of a message and feeding it again gives it back. */
static void test_unstuff_roundtrip(void **state)
{
    (void)state;
    static const char msg[] = "From: a@b\r\nMessage-ID: <r@t>\r\n\r\n.\r\n..\r\n.x\r\nend\r\n";
    static char stuffed[256];
    static struct outcome o;
    size_t len = 0;
    bool line_start = true;
    for (size_t i = 0; msg[i] != '\0'; i++) {
        if (line_start && msg[i] == '.')
            stuffed[len++] = '.';
        stuffed[len++] = msg[i];
        line_start = msg[i] == '\n';
    }
    memcpy(stuffed + len, ".\r\n", 3);
    len += 3;
    feed_every_way(stuffed, len, BIG, BIG, &o);
    assert_int_equal(o.result, DATA_END);
    assert_int_equal(o.consumed, len);
    assert_int_equal(o.outlen, strlen(msg));
    assert_memory_equal(o.out, msg, o.outlen);
    assert_string_equal(o.dr.msgid, "<r@t>");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framing_table),     cmocka_unit_test(test_crlf_across_calls),
        cmocka_unit_test(test_after_end),         cmocka_unit_test(test_bare_lf_refeed),
        cmocka_unit_test(test_limits_table),      cmocka_unit_test(test_too_big_keeps_scanning),
        cmocka_unit_test(test_msgid_table),       cmocka_unit_test(test_msgid_bounded),
        cmocka_unit_test(test_unstuff_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
