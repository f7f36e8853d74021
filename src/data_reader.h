/* data_reader.h - the DATA phase as a pure state machine over bytes.
 *
 * It removes the dot-stuffing, finds the one true end of the message
 * (CR LF . CR LF, where the first CR LF may be the one that ended DATA's 354),
 * refuses bare LF and bare CR the way sendmail 8.18 does, counts the header
 * section and the whole message against their limits, notices NUL bytes and
 * captures the Message-ID header. Output is the message with CRLF line ends
 * exactly as it will be stored. Fuzzed by fuzz/fuzz_data_reader.c.
 */
#ifndef JM_DATA_READER_H
#define JM_DATA_READER_H

#include <stdbool.h>
#include <stddef.h>

#define DATA_MSGID_MAX 256

enum data_result {
    DATA_MORE = 0, /* all input consumed, end not seen yet */
    DATA_END,      /* end of message seen; *consumed says where it stopped */
    DATA_BARE_LF,  /* 421 4.5.0 Bare linefeed (LF) not allowed; close */
    DATA_BARE_CR,  /* 421 4.5.0 Bare carriage return (CR) not allowed; close */
};

enum data_state {
    DS_LINE_START = 0, /* at the start of a line */
    DS_DOT,            /* a '.' at the start of a line */
    DS_DOT_CR,         /* ".\r" at the start of a line */
    DS_TEXT,           /* inside a line */
    DS_CR,             /* a CR inside a line, LF must follow */
    DS_DONE,
};

struct data_reader {
    enum data_state state;
    size_t max_size;   /* bytes of message allowed */
    size_t max_header; /* bytes of header section allowed */
    size_t size;       /* message bytes seen (after unstuffing) */
    size_t header_size;
    bool in_header;
    bool too_big; /* size passed max_size: output stopped, keep reading to the end */
    bool header_too_big;
    bool has_nul;
    bool has_8bit;
    /* Message-ID capture */
    char msgid[DATA_MSGID_MAX];
    size_t msgid_len;
    int hdr_match; /* internal: progress matching "message-id:" at a line start */
    bool in_msgid;
    bool line_is_header_start;
};

void data_reader_init(struct data_reader *dr, size_t max_size, size_t max_header);

/* Consumes up to `len` bytes of `in`. Writes the unstuffed message bytes to
 * `out` (which must hold at least `len` bytes) and sets *outlen. *consumed is
 * the number of input bytes used: all of them for DATA_MORE, up to and
 * including the final CRLF for DATA_END (bytes after it are the next
 * command, pipelined), and up to the offending byte for BARE_LF/BARE_CR.
 * Once too_big is set, output stops but the end is still looked for. */
enum data_result data_reader_feed(struct data_reader *dr, const char *in, size_t len,
                                  size_t *consumed, char *out, size_t *outlen);

#endif
