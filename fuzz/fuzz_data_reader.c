/* libFuzzer target for the DATA state machine. The first HEADER_LEN bytes
 * choose the limits and the sizes of the pieces the rest is fed in; the
 * result must be the same as feeding it in one piece, and must obey the
 * contract of data_reader_feed. abort() on any violation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data_reader.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define HEADER_LEN 6 /* max_size, max_header, four piece sizes */
#define NPIECES 4

struct run {
    enum data_result result;
    size_t consumed;
    char *out; /* as long as the input */
    size_t outlen;
    struct data_reader dr;
};

/* A selector byte of 255 means "no practical limit". */
static size_t limit_from(uint8_t selector, size_t unit)
{
    return selector == 255 ? SIZE_MAX / 2 : (size_t)selector * unit;
}

/* Feeds in[0..len) in pieces (sizes cycle through `pieces`, 0 is allowed),
 * stopping at the first result that is not DATA_MORE. */
static void feed(const char *in, size_t len, const size_t *pieces, size_t max_size,
                 size_t max_header, struct run *r)
{
    data_reader_init(&r->dr, max_size, max_header);
    r->result = DATA_MORE;
    r->consumed = 0;
    r->outlen = 0;
    for (size_t k = 0; r->result == DATA_MORE && r->consumed < len; k++) {
        size_t n = pieces[k % NPIECES];
        if (n > len - r->consumed)
            n = len - r->consumed;
        /* an exact-size input copy and an exact-size output buffer (n bytes:
         * the contract) so that AddressSanitizer catches any overrun */
        char *piece = malloc(n == 0 ? 1 : n);
        char *out = malloc(n == 0 ? 1 : n);
        CHECK(piece != NULL && out != NULL);
        memcpy(piece, in + r->consumed, n);
        size_t consumed = SIZE_MAX, outlen = SIZE_MAX;
        r->result = data_reader_feed(&r->dr, piece, n, &consumed, out, &outlen);
        CHECK(consumed <= n);
        CHECK(outlen <= consumed);
        CHECK(r->result == DATA_END || r->result == DATA_MORE || r->result == DATA_BARE_LF ||
              r->result == DATA_BARE_CR);
        if (r->result == DATA_MORE)
            CHECK(consumed == n);
        if (r->result == DATA_BARE_LF)
            CHECK(piece[consumed] == '\n');
        if (r->result == DATA_END)
            CHECK(consumed > 0 && piece[consumed - 1] == '\n');
        memcpy(r->out + r->outlen, out, outlen);
        r->outlen += outlen;
        r->consumed += consumed;
        free(piece);
        free(out);
    }
}

static void check_same(const struct run *a, const struct run *b)
{
    CHECK(a->result == b->result);
    CHECK(a->consumed == b->consumed);
    CHECK(a->outlen == b->outlen && memcmp(a->out, b->out, a->outlen) == 0);
    CHECK(a->dr.state == b->dr.state);
    CHECK(a->dr.size == b->dr.size && a->dr.header_size == b->dr.header_size);
    CHECK(a->dr.in_header == b->dr.in_header);
    CHECK(a->dr.too_big == b->dr.too_big && a->dr.header_too_big == b->dr.header_too_big);
    CHECK(a->dr.has_nul == b->dr.has_nul && a->dr.has_8bit == b->dr.has_8bit);
    CHECK(a->dr.msgid_len == b->dr.msgid_len && strcmp(a->dr.msgid, b->dr.msgid) == 0);
}

static void check_counters(const struct run *r)
{
    const struct data_reader *dr = &r->dr;
    CHECK(dr->header_size <= dr->size);
    CHECK(dr->too_big == (dr->size > dr->max_size));
    CHECK(dr->header_too_big == (dr->header_size > dr->max_header));
    CHECK(r->outlen == (dr->size < dr->max_size ? dr->size : dr->max_size));
    CHECK(dr->msgid_len < DATA_MSGID_MAX && strlen(dr->msgid) == dr->msgid_len);
    for (size_t i = 0; i < dr->msgid_len; i++)
        CHECK(dr->msgid[i] >= 0x20 && dr->msgid[i] < 0x7f);
    if (dr->msgid_len > 0)
        CHECK(dr->msgid[0] != ' ');
    if (r->result == DATA_END && !dr->too_big)
        CHECK(r->outlen == 0 ||
              (r->outlen >= 2 && r->out[r->outlen - 2] == '\r' && r->out[r->outlen - 1] == '\n'));
}

/* Dot-stuffing a complete message and ending it gives it back unchanged. */
static void check_restuff(const struct run *r, const size_t *pieces)
{
    if (r->result != DATA_END || r->dr.too_big)
        return;
    char *stuffed = malloc(2 * r->outlen + 3);
    CHECK(stuffed != NULL);
    size_t len = 0;
    for (size_t i = 0; i < r->outlen; i++) {
        if (r->out[i] == '.' && (i == 0 || r->out[i - 1] == '\n'))
            stuffed[len++] = '.';
        stuffed[len++] = r->out[i];
    }
    memcpy(stuffed + len, ".\r\n", 3);
    len += 3;
    struct run again;
    again.out = malloc(len);
    CHECK(again.out != NULL);
    feed(stuffed, len, pieces, r->dr.max_size, r->dr.max_header, &again);
    CHECK(again.result == DATA_END && again.consumed == len);
    CHECK(again.outlen == r->outlen && memcmp(again.out, r->out, r->outlen) == 0);
    CHECK(again.dr.header_size == r->dr.header_size && again.dr.in_header == r->dr.in_header);
    CHECK(strcmp(again.dr.msgid, r->dr.msgid) == 0);
    free(again.out);
    free(stuffed);
}

static void check_done_stays_done(struct run *r)
{
    if (r->result != DATA_END)
        return;
    char out[4];
    size_t consumed = 1, outlen = 1;
    CHECK(data_reader_feed(&r->dr, "x\r\n", 3, &consumed, out, &outlen) == DATA_END);
    CHECK(consumed == 0 && outlen == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HEADER_LEN)
        return 0;
    size_t max_size = limit_from(data[0], 4);
    size_t max_header = limit_from(data[1], 2);
    size_t pieces[NPIECES], whole[NPIECES];
    size_t total = 0;
    for (int i = 0; i < NPIECES; i++)
        total += pieces[i] = data[2 + i] % 64;
    if (total == 0)
        pieces[0] = 1; /* some progress each cycle */
    const char *in = (const char *)data + HEADER_LEN;
    size_t len = size - HEADER_LEN;
    for (int i = 0; i < NPIECES; i++)
        whole[i] = len;

    struct run one, many;
    one.out = malloc(len + 1);
    many.out = malloc(len + 1);
    CHECK(one.out != NULL && many.out != NULL);
    feed(in, len, whole, max_size, max_header, &one);
    feed(in, len, pieces, max_size, max_header, &many);
    check_same(&one, &many);
    check_counters(&one);
    check_restuff(&one, pieces);
    check_done_stays_done(&many);
    free(one.out);
    free(many.out);
    return 0;
}
