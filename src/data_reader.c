/* data_reader.c - the DATA phase as a pure state machine over bytes.
 *
 * Two layers, one byte at a time:
 *  - the transport layer (feed_byte) is the SMTP framing: dot-unstuffing, the
 *    one true end "CR LF . CR LF", and the refusal of bare LF and bare CR
 *    (sendmail 8.18's answer to SMTP smuggling). Its state lives in dr->state,
 *    so a CR at the end of one buffer and its LF at the start of the next are
 *    handled exactly as if they had come together.
 *  - the content layer (emit) sees the unstuffed message bytes: it counts the
 *    size and the header section, notices NUL and 8-bit bytes, captures the
 *    Message-ID and writes to the output until the size limit is passed.
 *
 * Every input byte produces at most one output byte (a CR is emitted when it
 * is read, not when its LF arrives), hence *outlen <= *consumed <= len. A CR
 * that turns out to be bare has then been written to the output, which does
 * not matter: the caller drops the message and closes the connection.
 */
#include "data_reader.h"

#include <stdint.h>
#include <string.h>

static const char msgid_name[] = "message-id:";
#define MSGID_NAME_LEN (sizeof msgid_name - 1)

/* Values of dr->hdr_match besides 0..MSGID_NAME_LEN-1 (bytes matched so far). */
enum {
    HDR_NO_MATCH = -1,    /* this line is not a Message-ID we want */
    HDR_EMPTY_MSGID = -2, /* "Message-ID:" with no value: a folded line may carry it */
};

/* What one input byte did to the transport layer. */
enum step {
    STEP_OK,
    STEP_END,
    STEP_BARE_LF,
    STEP_BARE_CR,
};

void data_reader_init(struct data_reader *dr, size_t max_size, size_t max_header)
{
    memset(dr, 0, sizeof *dr);
    dr->state = DS_LINE_START; /* the CR LF after "354" started the first line */
    dr->max_size = max_size;
    dr->max_header = max_header;
    dr->in_header = true;
    dr->line_is_header_start = true;
    dr->hdr_match = 0;
}

static bool is_wsp(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

static size_t add_saturated(size_t a, size_t b)
{
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

/* Keeps one byte of the Message-ID value. Leading blanks are skipped, and
 * anything that is not printable ASCII becomes '?' because the value ends up
 * in log lines. Bytes beyond the bound are dropped. */
static void msgid_keep(struct data_reader *dr, unsigned char c)
{
    if (is_wsp(c) && dr->msgid_len == 0)
        return;
    if (dr->msgid_len >= DATA_MSGID_MAX - 1)
        return;
    if (c == '\t')
        c = ' ';
    else if (c < 0x20 || c >= 0x7f)
        c = '?';
    dr->msgid[dr->msgid_len++] = (char)c;
    dr->msgid[dr->msgid_len] = '\0';
}

static void msgid_trim_end(struct data_reader *dr)
{
    while (dr->msgid_len > 0 && dr->msgid[dr->msgid_len - 1] == ' ')
        dr->msgid[--dr->msgid_len] = '\0';
}

/* The first byte of a header line: a blank continues the previous field. */
static void header_line_first_byte(struct data_reader *dr, unsigned char c)
{
    dr->line_is_header_start = false;
    if (is_wsp(c)) {
        dr->in_msgid = dr->hdr_match == HDR_EMPTY_MSGID;
        dr->hdr_match = HDR_NO_MATCH;
    } else {
        dr->hdr_match = 0;
    }
}

/* A byte of a header line, other than CR and LF. */
static void header_byte(struct data_reader *dr, unsigned char c)
{
    if (dr->line_is_header_start)
        header_line_first_byte(dr, c);
    if (dr->in_msgid) {
        msgid_keep(dr, c);
        return;
    }
    if (dr->hdr_match < 0)
        return;
    if (ascii_lower(c) != (unsigned char)msgid_name[dr->hdr_match]) {
        dr->hdr_match = HDR_NO_MATCH;
        return;
    }
    dr->hdr_match++;
    if ((size_t)dr->hdr_match == MSGID_NAME_LEN) {
        dr->hdr_match = HDR_NO_MATCH;
        dr->in_msgid = dr->msgid_len == 0; /* the first Message-ID wins */
    }
}

/* The LF of a line of the header section. An empty line ends the section. */
static void header_line_end(struct data_reader *dr)
{
    if (dr->line_is_header_start) {
        dr->in_header = false;
        dr->in_msgid = false;
        dr->hdr_match = HDR_NO_MATCH;
        return;
    }
    if (dr->in_msgid) {
        msgid_trim_end(dr);
        dr->in_msgid = false;
        dr->hdr_match = dr->msgid_len == 0 ? HDR_EMPTY_MSGID : HDR_NO_MATCH;
    }
    dr->line_is_header_start = true;
}

/* Follows the header section with one message byte. The empty line that
 * ends the section is not part of it (RFC 5322 2.1) and is not counted: a
 * CR at the start of a header line can only begin that line, because the
 * transport refuses a CR without its LF. */
static void track_header(struct data_reader *dr, unsigned char c)
{
    bool empty_line = dr->line_is_header_start && (c == '\r' || c == '\n');
    if (!empty_line)
        dr->header_size = add_saturated(dr->header_size, 1);
    if (dr->header_size > dr->max_header)
        dr->header_too_big = true;
    if (c == '\r')
        return; /* the transport guarantees that LF follows */
    if (c == '\n')
        header_line_end(dr);
    else
        header_byte(dr, c);
}

/* One byte of the message as it will be stored. */
static void emit(struct data_reader *dr, unsigned char c, char *out, size_t *outlen)
{
    if (c == '\0')
        dr->has_nul = true;
    if (c >= 0x80)
        dr->has_8bit = true;
    if (dr->in_header)
        track_header(dr, c);
    dr->size = add_saturated(dr->size, 1);
    if (dr->size > dr->max_size)
        dr->too_big = true;
    if (!dr->too_big)
        out[(*outlen)++] = (char)c;
}

/* A byte inside a line (also the first byte of a line that is not a dot). */
static enum step text_byte(struct data_reader *dr, unsigned char c, char *out, size_t *outlen)
{
    if (c == '\n')
        return STEP_BARE_LF;
    emit(dr, c, out, outlen);
    dr->state = c == '\r' ? DS_CR : DS_TEXT;
    return STEP_OK;
}

static enum step feed_byte(struct data_reader *dr, unsigned char c, char *out, size_t *outlen)
{
    switch (dr->state) {
    case DS_LINE_START:
        if (c == '.') {
            dr->state = DS_DOT; /* held back: end, stuffing or a dropped dot */
            return STEP_OK;
        }
        return text_byte(dr, c, out, outlen);
    case DS_DOT:
        if (c == '\r') {
            dr->state = DS_DOT_CR;
            return STEP_OK;
        }
        /* RFC 5321 4.5.2: the leading dot of any other line is removed, so
         * ".." gives "." and ".x" gives "x". */
        return text_byte(dr, c, out, outlen);
    case DS_DOT_CR:
        if (c != '\n')
            return STEP_BARE_CR;
        dr->state = DS_DONE;
        return STEP_END;
    case DS_TEXT:
        return text_byte(dr, c, out, outlen);
    case DS_CR:
        if (c != '\n')
            return STEP_BARE_CR;
        emit(dr, c, out, outlen);
        dr->state = DS_LINE_START;
        return STEP_OK;
    case DS_DONE:
        return STEP_END;
    }
    return STEP_END; /* not reached: every state is handled above */
}

/* On BARE_LF and BARE_CR the offending byte (the LF, or the byte after the
 * CR) is not consumed and the state is left as it was, so feeding the rest
 * again gives the same answer. */
enum data_result data_reader_feed(struct data_reader *dr, const char *in, size_t len,
                                  size_t *consumed, char *out, size_t *outlen)
{
    *outlen = 0;
    *consumed = 0;
    if (dr->state == DS_DONE)
        return DATA_END;
    for (size_t i = 0; i < len; i++) {
        switch (feed_byte(dr, (unsigned char)in[i], out, outlen)) {
        case STEP_OK:
            break;
        case STEP_END:
            *consumed = i + 1;
            return DATA_END;
        case STEP_BARE_LF:
            *consumed = i;
            return DATA_BARE_LF;
        case STEP_BARE_CR:
            *consumed = i;
            return DATA_BARE_CR;
        }
    }
    *consumed = len;
    return DATA_MORE;
}
