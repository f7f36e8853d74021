/* smtp_client.h - the outbound SMTP session (RFC 5321) to a smarthost.
 *
 * Two layers:
 *
 * 1. Pure protocol pieces, no I/O, unit-tested and fuzzed:
 *    - smtp_reply_*: accumulates the lines of one (multi-line) reply, with
 *      bounds on line length and line count; every byte is hostile.
 *    - smtp_ehlo_line: reads one EHLO keyword line (PIPELINING, SIZE, 8BITMIME).
 *    - dot_stuff_*: turns the message bytes of a queue file, read in chunks of
 *      any size, into DATA content: dot-stuffed, every line end CRLF (a lone
 *      LF or lone CR becomes CRLF), ended by CRLF "." CRLF.
 *
 * 2. A connection (struct smtp_conn): an explicit state machine on a libevent
 *    bufferevent. It resolves and connects, reads the greeting, says EHLO
 *    (HELO after a 5xx), then delivers one message at a time (a "job"),
 *    pipelined when the server offers PIPELINING, and stays open for the next
 *    job until its owner quits it. Every step has a timeout.
 *
 *      RESOLVING -> CONNECTING -> GREETING -> EHLO (-> HELO) -> IDLE
 *      IDLE -> MAIL -> RCPT... -> DATA -> BODY -> DOT -> IDLE   (or -> RSET -> IDLE)
 *      IDLE -> QUIT -> DEAD;   any failure -> DEAD
 *
 *    For a job, the owner hears rcpt_result once for every recipient that was
 *    pending in the envelope (unless the job ends with SMTP_JOB_RETRY, which
 *    reports none), then job_done once. After job_done the connection is
 *    either idle (smtp_conn_idle) and may take the next job, or dead and must
 *    be freed. An idle connection that dies calls `closed`; the owner frees it
 *    then. The owner may free the connection (or give it the next job) from
 *    within job_done and closed, never within rcpt_result; the connection
 *    touches nothing of itself after job_done or closed returns.
 */
#ifndef JM_SMTP_CLIENT_H
#define JM_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "queue.h"

/* ---- replies --------------------------------------------------------- */

#define SMTP_REPLY_LINE_MAX 1000 /* bytes of one reply line without CRLF (RFC: 512) */
#define SMTP_REPLY_LINES_MAX 100 /* lines of one reply */
#define SMTP_REPLY_TEXT_MAX 512  /* bytes of reply text kept for logs */
#define SMTP_DSN_MAX 16          /* "5.123.456" and NUL */

struct smtp_reply {
    int code; /* 0 until the first line */
    unsigned nlines;
    bool done; /* the last line has been seen */
    size_t textlen;
    char text[SMTP_REPLY_TEXT_MAX]; /* the lines' texts after the code, joined by a
                                       space, control and 8-bit bytes as '?', cut */
};

enum smtp_reply_status {
    SMTP_REPLY_MORE,  /* a continuation line: feed the next */
    SMTP_REPLY_DONE,  /* the reply is complete: code and text are set */
    SMTP_REPLY_ERROR, /* not a reply: the session is broken */
};

void smtp_reply_init(struct smtp_reply *r);

/* Feeds one line (without its line end). A line that is too long, not a
 * reply line, changes the code within a reply, or exceeds the line count is
 * an error (why says which). After DONE or ERROR, init before the next. */
enum smtp_reply_status smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len,
                                       const char **why);

/* The enhanced status code (RFC 3463) at the start of the text when it
 * agrees with the reply's class, else "<class>.0.0". */
void smtp_reply_dsn(const struct smtp_reply *r, char dsn[SMTP_DSN_MAX]);

/* The text after a leading enhanced status code, for "stat=Sent (...)". */
const char *smtp_reply_text_after_dsn(const struct smtp_reply *r);

/* ---- EHLO extensions ------------------------------------------------- */

struct smtp_ext {
    bool pipelining;
    bool eightbitmime;
    bool size;
    unsigned long long size_max; /* SIZE n; 0 when no limit was given */
};

/* Reads one EHLO line's text (after "250-" / "250 "); unknown keywords are
 * ignored. Keywords are case-insensitive. */
void smtp_ehlo_line(struct smtp_ext *ext, const char *text, size_t len);

/* ---- DATA content ---------------------------------------------------- */

struct dot_stuffer {
    bool mid_line;   /* bytes of the current line have been written */
    bool pending_cr; /* the previous chunk ended in CR: LF may follow */
};

/* Output bound of dot_stuff_chunk for `n` input bytes. */
#define DOT_STUFF_OUT_MAX(n) (2 * (size_t)(n) + 2)
/* Output bound of dot_stuff_end. */
#define DOT_STUFF_END_MAX 5

void dot_stuff_init(struct dot_stuffer *st);

/* Converts `len` bytes into `out`, which holds DOT_STUFF_OUT_MAX(len) bytes.
 * Returns the bytes written. Chunks may be split anywhere. */
size_t dot_stuff_chunk(struct dot_stuffer *st, const char *in, size_t len, char *out);

/* Writes the end: CRLF when the last line is open, then ".\r\n". */
size_t dot_stuff_end(struct dot_stuffer *st, char *out);

/* ---- commands -------------------------------------------------------- */

#define SMTP_COMMAND_MAX (QUEUE_ADDR_MAX + 64)

/* "MAIL FROM:<sender>[ BODY=8BITMIME][ SIZE=n]\r\n". Returns the length, or
 * -1 when it does not fit or the address holds CR, LF or NUL. */
int smtp_format_mail(char *buf, size_t cap, const char *sender, bool body_8bit, bool with_size,
                     unsigned long long size);
int smtp_format_rcpt(char *buf, size_t cap, const char *rcpt);

/* ---- a connection ---------------------------------------------------- */

struct event_base;
struct smtp_conn;

enum smtp_outcome {
    SMTP_SENT,     /* the server took responsibility */
    SMTP_FAILED,   /* permanent failure (5xx) */
    SMTP_DEFERRED, /* temporary failure: try again later */
};

struct smtp_result {
    enum smtp_outcome outcome;
    int code;               /* the server's reply code; 0 when the reason is ours */
    char dsn[SMTP_DSN_MAX]; /* "2.0.0", "4.4.1", ... */
    const char *text;       /* server text after the code (printable), or our reason */
};

enum smtp_job_end {
    SMTP_JOB_COMPLETED,      /* every rcpt reported; reuse only if smtp_conn_idle */
    SMTP_JOB_CONNECT_FAILED, /* no session could be set up: every rcpt deferred */
    SMTP_JOB_LOST,           /* the session broke during the transaction */
    SMTP_JOB_RETRY,          /* a cached connection had gone stale before the
                                server answered anything of this job: nothing
                                reported, retry at once on a new connection */
};

struct smtp_job {
    const struct queue_envelope *env; /* the recipients with status '-' are tried */
    int data_fd;                      /* read from its current offset to EOF */
    off_t data_size;                  /* bytes of message data, for SIZE= */
};

struct smtp_conn_ops {
    void (*rcpt_result)(void *owner, struct smtp_conn *c, size_t rcpt_index,
                        const struct smtp_result *res);
    void (*job_done)(void *owner, struct smtp_conn *c, enum smtp_job_end end, const char *why);
    void (*closed)(void *owner, struct smtp_conn *c);
};

struct smtp_conn_params {
    const char *host; /* name or numeric address, no brackets */
    uint16_t port;
    const char *helo_name;    /* our name for EHLO/HELO */
    unsigned connect_timeout; /* seconds, DNS included */
    unsigned command_timeout; /* seconds waiting for each reply */
    unsigned data_timeout;    /* seconds waiting for the reply to the final "." */
    unsigned idle_timeout;    /* seconds an idle connection waits for a job */
};

/* Creates a connection and starts to connect; `job` (not NULL) is delivered
 * as soon as the session is up. NULL when out of memory. */
struct smtp_conn *smtp_conn_open(struct event_base *base, const struct smtp_conn_params *p,
                                 const struct smtp_conn_ops *ops, void *owner,
                                 const struct smtp_job *job);

/* Hands a job to an idle connection. Returns -1 when it is not idle or out
 * of memory (nothing is reported then). The job and its envelope must live
 * until job_done, which may come before this returns (nothing to send). */
int smtp_conn_deliver(struct smtp_conn *c, const struct smtp_job *job);

bool smtp_conn_idle(const struct smtp_conn *c);

/* Jobs completed on this connection so far. */
unsigned smtp_conn_jobs_done(const struct smtp_conn *c);

/* "host [ip]" (or "host" before the connection) for logs. */
const char *smtp_conn_relay(const struct smtp_conn *c);

/* Sends QUIT on an idle connection and closes it after the reply; `closed`
 * follows. On a connection that is not idle it does nothing. */
void smtp_conn_quit(struct smtp_conn *c);

/* Closes at once, without callbacks (shutdown). A job in progress is
 * abandoned without results; its recipients stay pending in the queue. */
void smtp_conn_free(struct smtp_conn *c);

#endif
