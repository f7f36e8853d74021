/* smtp_client.c - outbound SMTP session (see smtp_client.h). */
#include "smtp_client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "dns.h"
#include "smtp_proto.h"

/* ==== pure protocol pieces ============================================ */

void smtp_reply_init(struct smtp_reply *r)
{
    r->code = 0;
    r->nlines = 0;
    r->done = false;
    r->textlen = 0;
    r->text[0] = '\0';
}

/* Appends a line's text: printable ASCII kept, anything else as '?', so the
 * text can go into a log line as it is. */
static void reply_append_text(struct smtp_reply *r, const char *s, size_t len)
{
    if (len == 0)
        return;
    if (r->textlen > 0 && r->textlen + 1 < sizeof r->text)
        r->text[r->textlen++] = ' ';
    for (size_t i = 0; i < len && r->textlen + 1 < sizeof r->text; i++) {
        unsigned char ch = (unsigned char)s[i];
        r->text[r->textlen++] = ch == '\t' ? ' ' : (ch < 0x20 || ch >= 0x7f) ? '?' : (char)ch;
    }
    r->text[r->textlen] = '\0';
}

enum smtp_reply_status smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len,
                                       const char **why)
{
    bool last = false;
    if (len > SMTP_REPLY_LINE_MAX) {
        *why = "reply line too long";
        return SMTP_REPLY_ERROR;
    }
    if (r->nlines >= SMTP_REPLY_LINES_MAX) {
        *why = "reply has too many lines";
        return SMTP_REPLY_ERROR;
    }
    int code = smtp_parse_reply_line(line, len, &last);
    if (code < 0) {
        *why = "malformed reply line";
        return SMTP_REPLY_ERROR;
    }
    if (r->nlines > 0 && code != r->code) {
        *why = "reply code changed within a multi-line reply";
        return SMTP_REPLY_ERROR;
    }
    r->code = code;
    r->nlines++;
    if (len > 4)
        reply_append_text(r, line + 4, len - 4);
    if (!last)
        return SMTP_REPLY_MORE;
    r->done = true;
    return SMTP_REPLY_DONE;
}

/* Length of a 1-3 digit run at s, 0 when there is none. */
static size_t digits_1_3(const char *s)
{
    size_t n = 0;
    while (n < 4 && s[n] >= '0' && s[n] <= '9')
        n++;
    return n >= 1 && n <= 3 ? n : 0;
}

/* Length of an enhanced status code "c.s.d" at the start of the text that
 * agrees with the reply class, 0 when there is none. */
static size_t enhanced_code_len(const struct smtp_reply *r)
{
    const char *t = r->text;
    if (r->code < 200 || t[0] != (char)('0' + r->code / 100) || t[1] != '.')
        return 0;
    size_t a = digits_1_3(t + 2);
    if (!a || t[2 + a] != '.')
        return 0;
    size_t b = digits_1_3(t + 3 + a);
    if (!b)
        return 0;
    size_t n = 3 + a + b;
    return t[n] == '\0' || t[n] == ' ' ? n : 0;
}

void smtp_reply_dsn(const struct smtp_reply *r, char dsn[SMTP_DSN_MAX])
{
    size_t n = enhanced_code_len(r);
    if (n) {
        memcpy(dsn, r->text, n);
        dsn[n] = '\0';
    } else {
        int cls = r->code >= 200 && r->code <= 599 ? r->code / 100 : 4;
        snprintf(dsn, SMTP_DSN_MAX, "%d.0.0", cls);
    }
}

const char *smtp_reply_text_after_dsn(const struct smtp_reply *r)
{
    const char *t = r->text + enhanced_code_len(r);
    while (*t == ' ')
        t++;
    return t;
}

static bool keyword_is(const char *text, size_t len, const char *kw)
{
    size_t n = strlen(kw);
    return len >= n && strncasecmp(text, kw, n) == 0 && (len == n || text[n] == ' ');
}

/* SIZE's argument: decimal, bounded; anything odd means "no stated limit". */
static unsigned long long parse_size_limit(const char *s, size_t len)
{
    unsigned long long v = 0;
    if (len == 0 || len > 18)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v;
}

void smtp_ehlo_line(struct smtp_ext *ext, const char *text, size_t len)
{
    if (keyword_is(text, len, "PIPELINING"))
        ext->pipelining = true;
    else if (keyword_is(text, len, "8BITMIME"))
        ext->eightbitmime = true;
    else if (keyword_is(text, len, "SIZE")) {
        ext->size = true;
        ext->size_max = len > 5 ? parse_size_limit(text + 5, len - 5) : 0;
    }
}

void dot_stuff_init(struct dot_stuffer *st)
{
    st->mid_line = false;
    st->pending_cr = false;
}

size_t dot_stuff_chunk(struct dot_stuffer *st, const char *in, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (st->pending_cr) { /* a CR ends a line whatever follows it */
            st->pending_cr = false;
            st->mid_line = false;
            out[o++] = '\r';
            out[o++] = '\n';
            if (ch == '\n')
                continue;
        }
        if (ch == '\r') {
            st->pending_cr = true;
        } else if (ch == '\n') { /* a lone LF */
            out[o++] = '\r';
            out[o++] = '\n';
            st->mid_line = false;
        } else {
            if (!st->mid_line && ch == '.')
                out[o++] = '.';
            out[o++] = ch;
            st->mid_line = true;
        }
    }
    return o;
}

size_t dot_stuff_end(struct dot_stuffer *st, char *out)
{
    size_t o = 0;
    if (st->pending_cr || st->mid_line) {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    st->pending_cr = false;
    st->mid_line = false;
    memcpy(out + o, ".\r\n", 3);
    return o + 3;
}

static bool has_line_break(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

int smtp_format_mail(char *buf, size_t cap, const char *sender, bool body_8bit, bool with_size,
                     unsigned long long size)
{
    char size_param[32] = "";
    if (has_line_break(sender))
        return -1;
    if (with_size)
        snprintf(size_param, sizeof size_param, " SIZE=%llu", size);
    int n = snprintf(buf, cap, "MAIL FROM:<%s>%s%s\r\n", sender, body_8bit ? " BODY=8BITMIME" : "",
                     size_param);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int smtp_format_rcpt(char *buf, size_t cap, const char *rcpt)
{
    if (has_line_break(rcpt) || rcpt[0] == '\0')
        return -1;
    int n = snprintf(buf, cap, "RCPT TO:<%s>\r\n", rcpt);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* ==== a connection ===================================================== */

#define BODY_CHUNK (64 * 1024)       /* bytes read from the queue file at once */
#define BODY_HIGH_WATER (128 * 1024) /* output kept queued while sending DATA */
#define BODY_LOW_WATER (32 * 1024)   /* refill below this */
#define QUIT_TIMEOUT 10              /* seconds to wait for QUIT's reply */
#define HOST_MAX 256
#define RELAY_MAX (HOST_MAX + 72)
#define REASON_MAX (SMTP_REPLY_TEXT_MAX + 64)

enum conn_state {
    CS_RESOLVING,
    CS_CONNECTING,
    CS_GREETING,
    CS_EHLO,
    CS_HELO,
    CS_IDLE,
    CS_MAIL,
    CS_RCPT,
    CS_DATA,
    CS_BODY,
    CS_DOT,
    CS_RSET,
    CS_QUIT,
    CS_DEAD,
};

/* What became of one recipient within the current job. */
enum rcpt_state { RS_WAITING, RS_ACCEPTED, RS_REPORTED };

/* A handler's verdict: STOPPED means the connection may be gone (an owner
 * callback ran), so the caller must not touch it any more. */
enum step { GO_ON, STOPPED };

struct smtp_conn {
    struct event_base *base;
    const struct smtp_conn_ops *ops;
    void *owner;
    char host[HOST_MAX];
    char helo[HOST_MAX];
    struct smtp_conn_params p;
    enum conn_state state;

    struct dns_query *dnsq;
    struct sockaddr_storage addrs[DNS_MAX_ADDRS];
    size_t naddrs, next_addr;
    char relay[RELAY_MAX];
    char addr_text[64];
    struct bufferevent *bev;

    struct smtp_reply reply;
    struct smtp_ext ext;
    unsigned jobs_done;

    /* the current job */
    bool has_job;
    struct smtp_job job;
    size_t *rcpt_indexes;  /* indexes into job.env->rcpts of the pending rcpts */
    unsigned char *rstate; /* enum rcpt_state per rcpt_indexes entry */
    bool *rcpt_sent;       /* per rcpt_indexes entry: a RCPT goes (went) out, a reply is due */
    size_t nrcpt_indexes;
    size_t next_rcpt_reply; /* rcpt_indexes entry whose RCPT reply comes next */
    size_t accepted;
    bool mail_ok;
    bool pipelined;
    bool discard_dot;  /* "." sent only to end a DATA nobody should receive */
    bool job_answered; /* the server answered something of this job */
    struct dot_stuffer ds;
};

static char body_in[BODY_CHUNK];
static char body_out[DOT_STUFF_OUT_MAX(BODY_CHUNK)];

static const char *state_doing(enum conn_state s)
{
    switch (s) {
    case CS_RESOLVING:
        return "looking up the host";
    case CS_CONNECTING:
        return "connecting";
    case CS_GREETING:
        return "waiting for the greeting";
    case CS_EHLO:
        return "after EHLO";
    case CS_HELO:
        return "after HELO";
    case CS_IDLE:
        return "idle";
    case CS_MAIL:
        return "after MAIL";
    case CS_RCPT:
        return "after RCPT";
    case CS_DATA:
        return "after DATA";
    case CS_BODY:
        return "sending the message";
    case CS_DOT:
        return "after end of data";
    case CS_RSET:
        return "after RSET";
    case CS_QUIT:
        return "after QUIT";
    case CS_DEAD:
        break;
    }
    return "closed";
}

static void set_timeouts(struct smtp_conn *c, unsigned read_sec, unsigned write_sec)
{
    struct timeval r = {.tv_sec = read_sec}, w = {.tv_sec = write_sec};
    bufferevent_set_timeouts(c->bev, read_sec ? &r : NULL, write_sec ? &w : NULL);
}

static void send_text(struct smtp_conn *c, const char *s, size_t len)
{
    bufferevent_write(c->bev, s, len);
}

static void send_str(struct smtp_conn *c, const char *s)
{
    send_text(c, s, strlen(s));
}

static void close_socket(struct smtp_conn *c)
{
    if (c->bev)
        bufferevent_free(c->bev);
    c->bev = NULL;
    if (c->dnsq)
        dns_cancel(c->dnsq);
    c->dnsq = NULL;
    c->state = CS_DEAD;
}

static void job_clear(struct smtp_conn *c)
{
    free(c->rcpt_indexes);
    free(c->rstate);
    free(c->rcpt_sent);
    c->rcpt_indexes = NULL;
    c->rstate = NULL;
    c->rcpt_sent = NULL;
    c->nrcpt_indexes = 0;
    c->has_job = false;
}

static void report(struct smtp_conn *c, size_t t, enum smtp_outcome outcome, int code,
                   const char *dsn, const char *text)
{
    struct smtp_result res = {.outcome = outcome, .code = code, .text = text};
    snprintf(res.dsn, sizeof res.dsn, "%s", dsn);
    c->rstate[t] = RS_REPORTED;
    c->ops->rcpt_result(c->owner, c, c->rcpt_indexes[t], &res);
}

/* Reports a server reply for one recipient: 2xx sent, 5xx failed, else
 * deferred (a 3xx where it makes no sense is no success). */
static void report_reply(struct smtp_conn *c, size_t t, const struct smtp_reply *r)
{
    char dsn[SMTP_DSN_MAX];
    smtp_reply_dsn(r, dsn);
    enum smtp_outcome o = r->code / 100 == 2   ? SMTP_SENT
                          : r->code / 100 == 5 ? SMTP_FAILED
                                               : SMTP_DEFERRED;
    if (o == SMTP_SENT) {
        report(c, t, o, r->code, dsn, smtp_reply_text_after_dsn(r));
        return;
    }
    if (o == SMTP_DEFERRED && dsn[0] != '4')
        snprintf(dsn, sizeof dsn, "4.0.0");
    report(c, t, o, r->code, dsn, r->text);
}

/* Every recipient still open (waiting or accepted) gets `r`'s verdict. */
static void report_open_reply(struct smtp_conn *c, const struct smtp_reply *r, bool accepted_only)
{
    for (size_t t = 0; t < c->nrcpt_indexes; t++)
        if (c->rstate[t] == RS_ACCEPTED || (!accepted_only && c->rstate[t] == RS_WAITING))
            report_reply(c, t, r);
}

static void report_open_deferred(struct smtp_conn *c, const char *why)
{
    for (size_t t = 0; t < c->nrcpt_indexes; t++)
        if (c->rstate[t] != RS_REPORTED)
            report(c, t, SMTP_DEFERRED, 0, "4.0.0", why);
}

/* Ends the job; last thing a handler does. */
static enum step job_end(struct smtp_conn *c, enum smtp_job_end end, const char *why)
{
    job_clear(c);
    if (end == SMTP_JOB_COMPLETED && c->state != CS_DEAD) {
        c->jobs_done++;
        c->state = CS_IDLE;
        set_timeouts(c, c->p.idle_timeout, 0);
    }
    c->ops->job_done(c->owner, c, end, why);
    return STOPPED;
}

/* The session is over: the job (if any) learns why, else the owner hears
 * `closed`. The reply, when given, is the server's reason (421). */
static enum step session_failed(struct smtp_conn *c, const struct smtp_reply *r, const char *why)
{
    enum conn_state was = c->state;
    bool set_up = was >= CS_IDLE || c->jobs_done > 0;
    close_socket(c);
    if (!c->has_job) {
        c->ops->closed(c->owner, c);
        return STOPPED;
    }
    if (c->jobs_done > 0 && !c->job_answered && was >= CS_MAIL && was <= CS_DATA)
        return job_end(c, SMTP_JOB_RETRY, why); /* a stale cached connection */
    if (r && r->code / 100 == 4)
        report_open_reply(c, r, false);
    else
        report_open_deferred(c, why);
    return job_end(c, set_up ? SMTP_JOB_LOST : SMTP_JOB_CONNECT_FAILED, why);
}

static enum step session_failed_fmt(struct smtp_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enum step session_failed_fmt(struct smtp_conn *c, const char *fmt, ...)
{
    char why[REASON_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return session_failed(c, NULL, why);
}

static void try_connect(struct smtp_conn *c);

/* A reply that ends the session before it was set up (greeting refused,
 * EHLO and HELO refused): the host's next address is tried; after the last,
 * every pending recipient is deferred, whatever the class of the reply,
 * because a refusing relay is no verdict on an address. */
static enum step setup_refused(struct smtp_conn *c, const struct smtp_reply *r)
{
    if (c->next_addr < c->naddrs && c->jobs_done == 0) { /* the host's next address */
        bufferevent_free(c->bev);
        c->bev = NULL;
        try_connect(c);
        return STOPPED; /* try_connect may have reported */
    }
    char why[REASON_MAX];
    snprintf(why, sizeof why, "%d %s", r->code, r->text);
    return session_failed(c, NULL, why);
}

/* ---- the transaction ----------------------------------------------------- */

static void send_rcpt(struct smtp_conn *c, size_t t)
{
    char cmd[SMTP_COMMAND_MAX];
    int n = smtp_format_rcpt(cmd, sizeof cmd, c->job.env->rcpts[c->rcpt_indexes[t]].addr);
    send_text(c, cmd, (size_t)n); /* checked when the job was taken */
}

/* Takes a job: the recipients still pending in its envelope are the ones
 * this connection reports on, whatever happens. Returns -1 when out of
 * memory (nothing is reported then). */
static int job_take(struct smtp_conn *c, const struct smtp_job *job)
{
    const struct queue_envelope *env = job->env;
    size_t cap = env->nrcpts ? env->nrcpts : 1;
    c->rcpt_indexes = calloc(cap, sizeof *c->rcpt_indexes);
    c->rstate = calloc(cap, 1);
    c->rcpt_sent = calloc(cap, sizeof *c->rcpt_sent);
    if (!c->rcpt_indexes || !c->rstate || !c->rcpt_sent) {
        job_clear(c);
        return -1;
    }
    c->job = *job;
    c->has_job = true;
    c->nrcpt_indexes = 0;
    for (size_t i = 0; i < env->nrcpts; i++)
        if (env->rcpts[i].status == RCPT_PENDING) {
            c->rstate[c->nrcpt_indexes] = RS_WAITING;
            c->rcpt_indexes[c->nrcpt_indexes++] = i;
        }
    return 0;
}

/* An address that cannot be put into a command fails at once. */
static void fail_unsendable(struct smtp_conn *c)
{
    char cmd[SMTP_COMMAND_MAX];
    for (size_t t = 0; t < c->nrcpt_indexes; t++)
        if (smtp_format_rcpt(cmd, sizeof cmd, c->job.env->rcpts[c->rcpt_indexes[t]].addr) < 0)
            report(c, t, SMTP_FAILED, 0, "5.1.3", "Bad recipient address syntax");
}

/* The next rcpt_indexes entry from t on that a RCPT is sent for. The set is fixed
 * when the transaction starts, so that pipelined replies stay in step with
 * the commands whatever the replies say. */
static size_t next_sent(const struct smtp_conn *c, size_t t)
{
    while (t < c->nrcpt_indexes && !c->rcpt_sent[t])
        t++;
    return t;
}

static enum step start_transaction(struct smtp_conn *c)
{
    const struct queue_envelope *env = c->job.env;
    char cmd[SMTP_COMMAND_MAX];
    c->accepted = 0;
    c->mail_ok = false;
    c->discard_dot = false;
    c->job_answered = false;
    c->pipelined = c->ext.pipelining;
    fail_unsendable(c);
    bool body8 = c->ext.eightbitmime && strcasecmp(env->body_type, "8BITMIME") == 0;
    int n = smtp_format_mail(cmd, sizeof cmd, env->sender, body8, c->ext.size,
                             (unsigned long long)c->job.data_size);
    if (n < 0) {
        for (size_t t = 0; t < c->nrcpt_indexes; t++)
            if (c->rstate[t] != RS_REPORTED)
                report(c, t, SMTP_FAILED, 0, "5.1.7", "Bad sender address syntax");
    }
    for (size_t t = 0; t < c->nrcpt_indexes; t++)
        c->rcpt_sent[t] = c->rstate[t] != RS_REPORTED;
    c->next_rcpt_reply = next_sent(c, 0);
    if (n < 0 || c->next_rcpt_reply == c->nrcpt_indexes)
        return job_end(c, SMTP_JOB_COMPLETED, "nothing to send");
    send_text(c, cmd, (size_t)n);
    if (c->pipelined) { /* RFC 2920: MAIL, every RCPT and DATA in one go */
        for (size_t t = c->next_rcpt_reply; t < c->nrcpt_indexes; t = next_sent(c, t + 1))
            send_rcpt(c, t);
        send_str(c, "DATA\r\n");
    }
    c->state = CS_MAIL;
    set_timeouts(c, c->p.command_timeout, c->p.command_timeout);
    return GO_ON;
}

/* Ends the transaction; RSET when the server may still hold a part of it. */
static enum step finish_transaction(struct smtp_conn *c, bool rset)
{
    if (!rset)
        return job_end(c, SMTP_JOB_COMPLETED, NULL);
    send_str(c, "RSET\r\n");
    c->state = CS_RSET;
    set_timeouts(c, c->p.command_timeout, c->p.command_timeout);
    return GO_ON;
}

static enum step on_mail_reply(struct smtp_conn *c, const struct smtp_reply *r)
{
    c->mail_ok = r->code / 100 == 2;
    if (!c->mail_ok) /* the sender was refused: so is every recipient */
        report_open_reply(c, r, false);
    if (!c->mail_ok && !c->pipelined)
        return finish_transaction(c, false);
    c->state = CS_RCPT;
    if (!c->pipelined)
        send_rcpt(c, c->next_rcpt_reply);
    return GO_ON;
}

static enum step on_rcpt_reply(struct smtp_conn *c, const struct smtp_reply *r)
{
    size_t t = c->next_rcpt_reply;
    if (c->rstate[t] == RS_WAITING) {
        if (r->code / 100 == 2) {
            c->rstate[t] = RS_ACCEPTED;
            c->accepted++;
        } else {
            report_reply(c, t, r);
        }
    }
    c->next_rcpt_reply = next_sent(c, t + 1);
    if (c->next_rcpt_reply < c->nrcpt_indexes) {
        if (!c->pipelined)
            send_rcpt(c, c->next_rcpt_reply);
        return GO_ON;
    }
    if (!c->pipelined && c->accepted == 0)
        return finish_transaction(c, true);
    if (!c->pipelined)
        send_str(c, "DATA\r\n");
    c->state = CS_DATA;
    return GO_ON;
}

static enum step send_body(struct smtp_conn *c);

static enum step on_data_reply(struct smtp_conn *c, const struct smtp_reply *r)
{
    if (r->code == 354 && c->accepted > 0) {
        dot_stuff_init(&c->ds);
        c->state = CS_BODY;
        /* while sending, only the write side can stall */
        set_timeouts(c, 0, c->p.command_timeout);
        bufferevent_setwatermark(c->bev, EV_WRITE, BODY_LOW_WATER, 0);
        return send_body(c);
    }
    if (r->code == 354) { /* pipelined, nobody accepted: an empty DATA ends it */
        send_str(c, ".\r\n");
        c->discard_dot = true;
        c->state = CS_DOT;
        return GO_ON;
    }
    report_open_reply(c, r, true);
    return finish_transaction(c, true);
}

static enum step on_dot_reply(struct smtp_conn *c, const struct smtp_reply *r)
{
    if (c->discard_dot)
        return finish_transaction(c, true);
    report_open_reply(c, r, true);
    return finish_transaction(c, false);
}

static enum step on_rset_reply(struct smtp_conn *c, const struct smtp_reply *r)
{
    if (r->code / 100 != 2)
        close_socket(c); /* results are reported; the connection is not reusable */
    return job_end(c, SMTP_JOB_COMPLETED, NULL);
}

/* Reads the queue file into the output while the output is short. */
static enum step send_body(struct smtp_conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    while (evbuffer_get_length(out) < BODY_HIGH_WATER) {
        ssize_t n = read(c->job.data_fd, body_in, sizeof body_in);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            char why[REASON_MAX];
            snprintf(why, sizeof why, "cannot read the queue file: %s", strerror(errno));
            return session_failed(c, NULL, why); /* no "." so the server drops it */
        }
        if (n == 0) {
            size_t m = dot_stuff_end(&c->ds, body_out);
            evbuffer_add(out, body_out, m);
            bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
            c->state = CS_DOT;
            set_timeouts(c, c->p.data_timeout, c->p.command_timeout);
            return GO_ON;
        }
        size_t m = dot_stuff_chunk(&c->ds, body_in, (size_t)n, body_out);
        evbuffer_add(out, body_out, m);
    }
    return GO_ON;
}

/* ---- session set-up ------------------------------------------------------ */

static enum step session_ready(struct smtp_conn *c)
{
    c->state = CS_IDLE;
    if (c->has_job)
        return start_transaction(c);
    set_timeouts(c, c->p.idle_timeout, 0);
    return GO_ON;
}

static void send_hello(struct smtp_conn *c, const char *verb)
{
    char cmd[HOST_MAX + 16];
    int n = snprintf(cmd, sizeof cmd, "%s %s\r\n", verb, c->helo);
    send_text(c, cmd, (size_t)n);
    set_timeouts(c, c->p.command_timeout, c->p.command_timeout);
}

static enum step on_greeting(struct smtp_conn *c, const struct smtp_reply *r)
{
    if (r->code != 220)
        return setup_refused(c, r);
    memset(&c->ext, 0, sizeof c->ext);
    send_hello(c, "EHLO");
    c->state = CS_EHLO;
    return GO_ON;
}

static enum step on_ehlo_reply(struct smtp_conn *c, const struct smtp_reply *r)
{
    if (r->code / 100 == 2)
        return session_ready(c);
    if (r->code / 100 != 5)
        return setup_refused(c, r);
    memset(&c->ext, 0, sizeof c->ext); /* an old server: plain SMTP */
    send_hello(c, "HELO");
    c->state = CS_HELO;
    return GO_ON;
}

static enum step on_reply(struct smtp_conn *c, const struct smtp_reply *r)
{
    if (c->has_job && c->state >= CS_MAIL)
        c->job_answered = true;
    if (r->code == 421 && c->state >= CS_MAIL && c->state <= CS_RSET) {
        char why[REASON_MAX];
        snprintf(why, sizeof why, "%d %s", r->code, r->text);
        return session_failed(c, r, why); /* the server is closing */
    }
    switch (c->state) {
    case CS_GREETING:
        return on_greeting(c, r);
    case CS_EHLO:
        return on_ehlo_reply(c, r);
    case CS_HELO:
        return r->code / 100 == 2 ? session_ready(c) : setup_refused(c, r);
    case CS_MAIL:
        return on_mail_reply(c, r);
    case CS_RCPT:
        return on_rcpt_reply(c, r);
    case CS_DATA:
        return on_data_reply(c, r);
    case CS_DOT:
        return on_dot_reply(c, r);
    case CS_RSET:
        return on_rset_reply(c, r);
    case CS_BODY:
        return session_failed_fmt(c, "Unexpected reply from %s while %s", c->relay,
                                  state_doing(c->state));
    case CS_IDLE: /* nothing was asked: a 421 before an idle close, or noise */
    case CS_QUIT:
    case CS_RESOLVING:
    case CS_CONNECTING:
    case CS_DEAD:
        break;
    }
    close_socket(c);
    c->ops->closed(c->owner, c);
    return STOPPED;
}

static enum step on_line(struct smtp_conn *c, const char *line, size_t len)
{
    const char *why = NULL;
    enum smtp_reply_status st = smtp_reply_feed(&c->reply, line, len, &why);
    if (st == SMTP_REPLY_ERROR)
        return session_failed_fmt(c, "Protocol error from %s %s: %s", c->relay,
                                  state_doing(c->state), why);
    if (c->state == CS_EHLO && c->reply.nlines > 1 && len > 4)
        smtp_ehlo_line(&c->ext, line + 4, len - 4);
    if (st == SMTP_REPLY_MORE)
        return GO_ON;
    struct smtp_reply r = c->reply;
    smtp_reply_init(&c->reply);
    return on_reply(c, &r);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct smtp_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char line[SMTP_REPLY_LINE_MAX + 1];
    for (;;) {
        size_t eol_len = 0;
        struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
        size_t avail = evbuffer_get_length(in);
        if ((p.pos < 0 && avail > SMTP_REPLY_LINE_MAX + 1) ||
            (p.pos >= 0 && (size_t)p.pos > SMTP_REPLY_LINE_MAX)) {
            session_failed_fmt(c, "Protocol error from %s %s: reply line too long", c->relay,
                               state_doing(c->state));
            return;
        }
        if (p.pos < 0)
            return;
        evbuffer_remove(in, line, (size_t)p.pos);
        evbuffer_drain(in, eol_len);
        if (on_line(c, line, (size_t)p.pos) == STOPPED)
            return;
    }
}

static void on_write(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct smtp_conn *c = arg;
    if (c->state == CS_BODY)
        send_body(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct smtp_conn *c = arg;
    int err = EVUTIL_SOCKET_ERROR();
    if (what & BEV_EVENT_CONNECTED) {
        c->state = CS_GREETING;
        smtp_reply_init(&c->reply);
        set_timeouts(c, c->p.command_timeout, c->p.command_timeout);
        return;
    }
    char why[REASON_MAX];
    if (c->state == CS_CONNECTING) {
        if (what & BEV_EVENT_TIMEOUT)
            snprintf(why, sizeof why, "Connection timed out with [%s]", c->addr_text);
        else
            snprintf(why, sizeof why, "%s by [%s]", err ? strerror(err) : "Connection failed",
                     c->addr_text);
        bufferevent_free(c->bev);
        c->bev = NULL;
        if (c->next_addr < c->naddrs) {
            try_connect(c);
            return;
        }
        session_failed(c, NULL, why);
        return;
    }
    if (c->state == CS_IDLE && (what & BEV_EVENT_TIMEOUT)) { /* nothing more to send */
        smtp_conn_quit(c);
        return;
    }
    if (c->state == CS_QUIT || c->state == CS_IDLE) { /* a quiet end */
        close_socket(c);
        c->ops->closed(c->owner, c);
        return;
    }
    const char *doing = state_doing(c->state);
    if (what & BEV_EVENT_TIMEOUT)
        session_failed_fmt(c, "Timeout with %s while %s", c->relay, doing);
    else if ((what & BEV_EVENT_ERROR) && err)
        session_failed_fmt(c, "%s with %s while %s", strerror(err), c->relay, doing);
    else
        session_failed_fmt(c, "Lost connection with %s while %s", c->relay, doing);
}

/* ---- connecting ---------------------------------------------------------- */

static socklen_t addr_len(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* Tries the addresses in turn; the last failure is the one reported. */
static void try_connect(struct smtp_conn *c)
{
    while (c->next_addr < c->naddrs) {
        const struct sockaddr_storage *ss = &c->addrs[c->next_addr++];
        dns_addr_string(ss, c->addr_text, sizeof c->addr_text);
        snprintf(c->relay, sizeof c->relay, "%s [%s]", c->host, c->addr_text);
        c->bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (!c->bev)
            break;
        bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
        bufferevent_setwatermark(c->bev, EV_READ, 0, 4 * (SMTP_REPLY_LINE_MAX + 2));
        c->state = CS_CONNECTING;
        set_timeouts(c, 0, c->p.connect_timeout); /* libevent: the write timeout bounds connect */
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
        if (bufferevent_socket_connect(c->bev, (const struct sockaddr *)ss, (int)addr_len(ss)) == 0)
            return;
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    session_failed_fmt(c, "Cannot connect to %s: %s", c->relay, strerror(errno));
}

static void on_resolved(void *arg, const struct sockaddr_storage *addrs, size_t n, const char *err)
{
    struct smtp_conn *c = arg;
    c->dnsq = NULL;
    if (n == 0) {
        session_failed_fmt(c, "Host lookup of %s failed: %s", c->host, err ? err : "no address");
        return;
    }
    memcpy(c->addrs, addrs, n * sizeof *addrs);
    c->naddrs = n;
    c->next_addr = 0;
    try_connect(c);
}

/* Starts the connection from the event loop, so that a failure is reported
 * through the callbacks and never from within smtp_conn_open. */
static void on_start(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct smtp_conn *c = arg;
    if (dns_numeric(c->host, c->p.port, &c->addrs[0]) == 0) {
        c->naddrs = 1;
        try_connect(c);
        return;
    }
    c->dnsq = dns_resolve(c->base, c->host, c->p.port, c->p.connect_timeout, on_resolved, c);
    if (!c->dnsq)
        session_failed_fmt(c, "Host lookup of %s failed: out of memory", c->host);
}

struct smtp_conn *smtp_conn_open(struct event_base *base, const struct smtp_conn_params *p,
                                 const struct smtp_conn_ops *ops, void *owner,
                                 const struct smtp_job *job)
{
    struct smtp_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->base = base;
    c->ops = ops;
    c->owner = owner;
    c->p = *p;
    snprintf(c->host, sizeof c->host, "%s", p->host);
    snprintf(c->helo, sizeof c->helo, "%s", p->helo_name[0] ? p->helo_name : "localhost");
    c->p.host = c->host;
    c->p.helo_name = c->helo;
    snprintf(c->relay, sizeof c->relay, "%s", c->host);
    c->state = CS_RESOLVING;
    if (job_take(c, job) < 0 ||
        event_base_once(base, -1, EV_TIMEOUT, on_start, c, &(struct timeval){0, 0}) < 0) {
        job_clear(c);
        free(c);
        return NULL;
    }
    return c;
}

int smtp_conn_deliver(struct smtp_conn *c, const struct smtp_job *job)
{
    if (c->state != CS_IDLE || c->has_job || job_take(c, job) < 0)
        return -1;
    start_transaction(c); /* a job that ends at once is reported now */
    return 0;
}

bool smtp_conn_idle(const struct smtp_conn *c)
{
    return c->state == CS_IDLE && !c->has_job;
}

unsigned smtp_conn_jobs_done(const struct smtp_conn *c)
{
    return c->jobs_done;
}

const char *smtp_conn_relay(const struct smtp_conn *c)
{
    return c->relay;
}

void smtp_conn_quit(struct smtp_conn *c)
{
    if (!smtp_conn_idle(c))
        return;
    send_str(c, "QUIT\r\n");
    c->state = CS_QUIT;
    set_timeouts(c, QUIT_TIMEOUT, QUIT_TIMEOUT);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

void smtp_conn_free(struct smtp_conn *c)
{
    if (!c)
        return;
    close_socket(c);
    job_clear(c);
    free(c);
}
