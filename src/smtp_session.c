/* smtp_session.c - the SMTP server session (see smtp_session.h).
 *
 * Input is handled in one place, session_process_input(), which takes
 * complete command lines (or DATA bytes) from the input buffer as long as the
 * state allows. Every byte is bounded: command lines by max_command_line,
 * DATA by the data reader's limits, replies by the output high-water mark.
 */
#include "smtp_session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "conn_limit.h"
#include "data_reader.h"
#include "ipc.h"
#include "log.h"
#include "queue.h"
#include "smtp_proto.h"
#include "spool.h"

#define OUTPUT_HIGH_WATER (64 * 1024) /* stop reading while this much is unsent */
#define INPUT_HIGH_WATER (256 * 1024)
#define HELO_MAX 256

enum session_state {
    S_CONNECTED,  /* greeted, waiting for HELO/EHLO */
    S_READY,      /* no transaction */
    S_MAIL,       /* MAIL accepted */
    S_RCPT,       /* at least one RCPT accepted */
    S_DATA,       /* reading the message */
    S_COMMITTING, /* message on its way to disk; input paused */
    S_CLOSING,    /* last reply being flushed */
};

struct transaction {
    char *sender; /* "" for <> */
    enum body_type body;
    char **rcpts;
    size_t nrcpts;
    struct spool *spool;
    struct data_reader *reader;
    bool write_failed;
    char qid[QID_SIZE]; /* of the message being committed */
    size_t size;        /* its bytes */
};

struct session {
    struct smtpd_context *ctx;
    struct session *prev, *next;
    struct bufferevent *bev;
    struct sockaddr_storage peer;
    char addr[INET6_ADDRSTRLEN];
    enum client_origin origin;
    enum session_state state;
    bool esmtp;
    bool discarding_long_line; /* inside a command line that passed the limit */
    bool close_after_reply;    /* shutdown asked while a message was under way */
    bool commit_orphaned;      /* the client left while its message was committing */
    unsigned bad_commands;     /* refused commands in a row */
    bool command_was_bad;      /* set by bad_command() for the command at hand */
    char helo[HELO_MAX];
    struct transaction tx;
};

static void session_process_input(struct session *s);

/* ---- life and death ----------------------------------------------------- */

static void tx_reset(struct transaction *tx)
{
    if (tx->spool)
        spool_abort(tx->spool);
    for (size_t i = 0; i < tx->nrcpts; i++)
        free(tx->rcpts[i]);
    free(tx->rcpts);
    free(tx->sender);
    free(tx->reader);
    memset(tx, 0, sizeof *tx);
}

static void session_free(struct session *s)
{
    struct smtpd_context *ctx = s->ctx;
    tx_reset(&s->tx);
    if (s->bev)
        bufferevent_free(s->bev);
    if (s->prev)
        s->prev->next = s->next;
    else
        ctx->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    conn_table_remove(ctx->per_client, (struct sockaddr *)&s->peer);
    free(s);
    if (--ctx->nsessions == 0 && ctx->on_last_session)
        ctx->on_last_session(ctx);
}

static void reply(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void vreply(struct session *s, const char *fmt, va_list ap)
{
    struct evbuffer *out = bufferevent_get_output(s->bev);
    evbuffer_add_vprintf(out, fmt, ap);
    evbuffer_add(out, "\r\n", 2);
}

static void reply(struct session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreply(s, fmt, ap);
    va_end(ap);
}

/* Sends the last reply; the session ends when it has been written. */
static void close_with(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void close_with(struct session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreply(s, fmt, ap);
    va_end(ap);
    tx_reset(&s->tx);
    s->state = S_CLOSING;
    bufferevent_disable(s->bev, EV_READ);
    bufferevent_enable(s->bev, EV_WRITE);
}

static const char *hostname(const struct session *s)
{
    return s->ctx->cfg->hostname;
}

static void set_read_timeout(struct session *s, unsigned seconds)
{
    struct timeval rt = {.tv_sec = seconds}, wt = {.tv_sec = s->ctx->cfg->command_timeout};
    bufferevent_set_timeouts(s->bev, &rt, &wt);
}

/* ---- replies shared by several commands -------------------------------- */

static void bad_command(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A refused command; too many in a row and the client is shown the door
 * (sendmail's MAXBADCOMMANDS). */
static void bad_command(struct session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreply(s, fmt, ap);
    va_end(ap);
    s->command_was_bad = true;
    if (++s->bad_commands >= s->ctx->cfg->max_bad_commands) {
        log_notice("NOQUEUE: too many bad commands from [%s]; closing", s->addr);
        close_with(s, "421 4.7.0 %s Too many bad commands; closing connection", hostname(s));
    }
}

/* ---- commands ------------------------------------------------------------ */

static void cmd_helo(struct session *s, const struct smtp_command *c, bool esmtp)
{
    if (!smtp_valid_helo(c->arg, c->arglen) || c->arglen >= HELO_MAX) {
        bad_command(s, "501 5.0.0 %s requires domain address", esmtp ? "EHLO" : "HELO");
        return;
    }
    tx_reset(&s->tx);
    memcpy(s->helo, c->arg, c->arglen);
    s->helo[c->arglen] = '\0';
    s->esmtp = esmtp;
    s->state = S_READY;
    if (!esmtp) {
        reply(s, "250 %s Hello [%s], pleased to meet you", hostname(s), s->addr);
        return;
    }
    reply(s,
          "250-%s Hello [%s], pleased to meet you\r\n"
          "250-ENHANCEDSTATUSCODES\r\n"
          "250-PIPELINING\r\n"
          "250-8BITMIME\r\n"
          "250-SIZE %zu\r\n"
          "250 HELP",
          hostname(s), s->addr, s->ctx->cfg->max_message_size);
}

static bool has_domain(const char *addr)
{
    const char *local, *domain;
    size_t locallen, domainlen;
    smtp_split_addr(addr, strlen(addr), &local, &locallen, &domain, &domainlen);
    return domainlen > 0;
}

static void cmd_mail(struct session *s, const struct smtp_command *c)
{
    struct smtp_path path;
    struct smtp_mail_params params;
    const char *why;
    if (s->state == S_CONNECTED) {
        bad_command(s, "503 5.0.0 Polite people say HELO first");
        return;
    }
    if (s->state != S_READY) {
        bad_command(s, "503 5.5.0 Sender already specified");
        return;
    }
    if (smtp_parse_mail(c->arg, c->arglen, &path, &params, &why) < 0) {
        bad_command(s, "%s", why);
        return;
    }
    if (params.size >= 0 && (unsigned long long)params.size > s->ctx->cfg->max_message_size) {
        reply(s, "552 5.2.3 Message size exceeds fixed maximum message size (%zu)",
              s->ctx->cfg->max_message_size);
        return;
    }
    if (!path.is_null && !has_domain(path.addr) && s->origin == ORIGIN_NETWORK) {
        reply(s, "553 5.5.4 <%s>... Domain name required for sender address %s", path.addr,
              path.addr);
        return;
    }
    s->tx.sender = strdup(path.addr);
    if (!s->tx.sender) {
        reply(s, "452 4.3.0 Insufficient system resources");
        return;
    }
    s->tx.body = params.body;
    s->state = S_MAIL;
    reply(s, "250 2.1.0 <%s>... Sender ok", path.addr);
}

static bool add_rcpt(struct transaction *tx, const char *addr)
{
    char *copy = strdup(addr);
    char **grown = copy ? realloc(tx->rcpts, (tx->nrcpts + 1) * sizeof *grown) : NULL;
    if (!grown) {
        free(copy);
        return false;
    }
    tx->rcpts = grown;
    tx->rcpts[tx->nrcpts++] = copy;
    return true;
}

static void cmd_rcpt(struct session *s, const struct smtp_command *c)
{
    struct smtp_path path;
    const char *why;
    if (s->state != S_MAIL && s->state != S_RCPT) {
        bad_command(s, "503 5.0.0 Need MAIL before RCPT");
        return;
    }
    if (smtp_parse_rcpt(c->arg, c->arglen, &path, &why) < 0) {
        bad_command(s, "%s", why);
        return;
    }
    if (s->tx.nrcpts >= s->ctx->cfg->max_recipients) {
        reply(s, "452 4.5.3 Too many recipients");
        return;
    }
    struct policy_client client = {.addr = s->addr, .origin = s->origin};
    struct policy_decision d;
    policy_check_rcpt(&s->ctx->policy, &client, path.addr, &d);
    if (d.verdict == POLICY_REJECT || d.verdict == POLICY_TEMPFAIL) {
        log_notice("NOQUEUE: ruleset=%s, arg1=<%s>, relay=[%s], reject=%s", d.rule, path.addr,
                   s->addr, d.reply);
        reply(s, "%s", d.reply);
        return;
    }
    if (!add_rcpt(&s->tx, path.addr)) {
        reply(s, "452 4.3.0 Insufficient system resources");
        return;
    }
    s->state = S_RCPT;
    reply(s, "250 2.1.5 <%s>... Recipient ok", path.addr);
}

/* RFC 5322 date in the C locale, e.g. "Wed, 25 Nov 2026 07:05:43 +0000". */
static void rfc5322_date(time_t t, char *buf, size_t len)
{
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, len, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

static int write_received(struct session *s, time_t now)
{
    char date[64], line[1024];
    rfc5322_date(now, date, sizeof date);
    int n = snprintf(line, sizeof line,
                     "Received: from %s ([%s])\r\n\tby %s (jailmail) with %s id %s%s%s%s;\r\n"
                     "\t%s\r\n",
                     s->helo, s->addr, hostname(s), s->esmtp ? "ESMTP" : "SMTP",
                     spool_qid(s->tx.spool), s->tx.nrcpts == 1 ? "\r\n\tfor <" : "",
                     s->tx.nrcpts == 1 ? s->tx.rcpts[0] : "", s->tx.nrcpts == 1 ? ">" : "", date);
    if (n < 0 || (size_t)n >= sizeof line)
        return -1;
    return spool_write(s->tx.spool, line, (size_t)n);
}

static int open_spool(struct session *s, time_t now)
{
    char err[256];
    struct queue_rcpt *rcpts = calloc(s->tx.nrcpts, sizeof *rcpts);
    if (!rcpts)
        return -1;
    for (size_t i = 0; i < s->tx.nrcpts; i++)
        rcpts[i] = (struct queue_rcpt){.addr = s->tx.rcpts[i], .status = RCPT_PENDING};
    struct queue_envelope env = {
        .arrival = now,
        .client = s->origin == ORIGIN_LOCAL ? "local" : s->addr,
        .client_name = "",
        .helo = s->helo,
        .proto = s->esmtp ? "ESMTP" : "SMTP",
        .body_type = s->tx.body == BODY_8BITMIME ? "8BITMIME" : "7BIT",
        .msgid = "",
        .sender = s->tx.sender,
        .rcpts = rcpts,
        .nrcpts = s->tx.nrcpts,
    };
    s->tx.spool = spool_open(&env, err, sizeof err);
    free(rcpts);
    if (!s->tx.spool) {
        log_err("NOQUEUE: cannot create a queue file: %s", err);
        return -1;
    }
    return 0;
}

static void cmd_data(struct session *s, const struct smtp_command *c)
{
    if (c->arglen > 0) { /* RFC 5321: DATA takes no argument */
        bad_command(s, "501 5.5.4 Syntax: DATA");
        return;
    }
    if (s->state != S_RCPT) {
        bad_command(s, "503 5.0.0 Need RCPT (recipient)");
        return;
    }
    /* RFC 2920: DATA ends a pipelined group. Bytes already behind it were
     * sent before our 354 and could be a second message in disguise. */
    if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
        log_notice("NOQUEUE: [%s] sent data before the 354 reply to DATA; closing", s->addr);
        close_with(s, "554 5.5.0 Improper use of SMTP command pipelining");
        return;
    }
    time_t now = time(NULL);
    s->tx.reader = malloc(sizeof *s->tx.reader);
    if (!s->tx.reader || open_spool(s, now) < 0 || write_received(s, now) < 0) {
        reply(s, "451 4.3.0 Temporary system failure. Please try again later.");
        tx_reset(&s->tx);
        s->state = S_READY;
        return;
    }
    data_reader_init(s->tx.reader, s->ctx->cfg->max_message_size, s->ctx->cfg->max_header_size);
    s->state = S_DATA;
    set_read_timeout(s, s->ctx->cfg->data_timeout);
    reply(s, "354 Enter mail, end with \".\" on a line by itself");
}

static void cmd_rset(struct session *s)
{
    tx_reset(&s->tx);
    if (s->state != S_CONNECTED)
        s->state = S_READY;
    reply(s, "250 2.0.0 Reset state");
}

static void cmd_help(struct session *s)
{
    reply(s, "214-2.0.0 This is jailmail\r\n"
             "214-2.0.0 Topics:\r\n"
             "214-2.0.0 \tHELO\tEHLO\tMAIL\tRCPT\tDATA\r\n"
             "214-2.0.0 \tRSET\tNOOP\tQUIT\tHELP\tVRFY\r\n"
             "214 2.0.0 End of HELP info");
}

static void run_command(struct session *s, const char *line, size_t len)
{
    struct smtp_command c;
    if (smtp_parse_command(line, len, &c) < 0) {
        bad_command(s, "500 5.5.1 Command unrecognized");
        return;
    }
    switch (c.verb) {
    case SMTP_VERB_HELO:
        cmd_helo(s, &c, false);
        break;
    case SMTP_VERB_EHLO:
        cmd_helo(s, &c, true);
        break;
    case SMTP_VERB_MAIL:
        cmd_mail(s, &c);
        break;
    case SMTP_VERB_RCPT:
        cmd_rcpt(s, &c);
        break;
    case SMTP_VERB_DATA:
        cmd_data(s, &c);
        break;
    case SMTP_VERB_RSET:
        cmd_rset(s);
        break;
    case SMTP_VERB_NOOP:
        reply(s, "250 2.0.0 OK");
        break;
    case SMTP_VERB_HELP:
        cmd_help(s);
        break;
    case SMTP_VERB_VRFY:
        reply(s, "252 2.5.2 Cannot VRFY user; try RCPT to attempt delivery (or try finger)");
        break;
    case SMTP_VERB_EXPN:
        reply(s, "502 5.7.0 Sorry, we do not allow this operation");
        break;
    case SMTP_VERB_QUIT:
        close_with(s, "221 2.0.0 %s closing connection", hostname(s));
        break;
    default:
        bad_command(s, "500 5.5.1 Command unrecognized");
        break;
    }
}

/* Runs one command; a command that was not refused as bad ends the run of
 * bad commands. */
static void dispatch_command(struct session *s, const char *line, size_t len)
{
    s->command_was_bad = false;
    run_command(s, line, len);
    if (!s->command_was_bad)
        s->bad_commands = 0;
}

/* ---- the end of a message ------------------------------------------------ */

static void log_accepted(struct session *s, const char *qid)
{
    const struct data_reader *dr = s->tx.reader;
    log_info("%s: from=<%s>, size=%zu, class=0, nrcpts=%zu%s%.*s, proto=%s, daemon=MTA, "
             "relay=[%s]",
             qid, s->tx.sender, s->tx.size, s->tx.nrcpts, dr->msgid_len ? ", msgid=" : "",
             (int)dr->msgid_len, dr->msgid, s->esmtp ? "ESMTP" : "SMTP", s->addr);
}

static void after_commit(struct session *s)
{
    tx_reset(&s->tx);
    s->state = S_READY;
    if (s->close_after_reply) {
        close_with(s, "421 4.3.2 %s Shutting down", hostname(s));
        return;
    }
    set_read_timeout(s, s->ctx->cfg->command_timeout);
    bufferevent_enable(s->bev, EV_READ);
    session_process_input(s); /* commands pipelined behind the message */
}

static void on_committed(void *arg, int ok, const char *err)
{
    struct session *s = arg;
    const char *qid = s->tx.qid;
    if (s->commit_orphaned) {
        if (ok) {
            log_accepted(s, qid);
            log_info("%s: client [%s] left before the reply; message kept", qid, s->addr);
            ipc_send(s->ctx->ipc_fd, IPC_NEW_MESSAGE, qid, strlen(qid));
        }
        session_free(s);
        return;
    }
    if (ok) {
        log_accepted(s, qid);
        reply(s, "250 2.0.0 %s Message accepted for delivery", qid);
        ipc_send(s->ctx->ipc_fd, IPC_NEW_MESSAGE, qid, strlen(qid));
    } else {
        log_err("%s: cannot commit the message: %s", qid, err);
        reply(s, "451 4.3.0 Temporary system failure. Please try again later.");
    }
    after_commit(s);
}

/* The reader has seen the final dot: refuse, or hand the message to disk. */
static void finish_message(struct session *s)
{
    const struct data_reader *dr = s->tx.reader;
    const char *refusal = NULL;
    if (dr->too_big)
        refusal = "552 5.3.4 Message size exceeds fixed maximum message size";
    else if (dr->header_too_big)
        refusal = "552 5.3.4 Header section exceeds the maximum header size";
    else if (dr->has_nul)
        refusal = "554 5.6.1 Message contains NUL characters";
    else if (s->tx.write_failed)
        refusal = "451 4.3.0 Temporary system failure. Please try again later.";
    if (refusal) {
        log_notice("%s: from=<%s>, relay=[%s], reject=%s", spool_qid(s->tx.spool), s->tx.sender,
                   s->addr, refusal);
        reply(s, "%s", refusal);
        tx_reset(&s->tx);
        s->state = S_READY;
        if (s->close_after_reply) /* shutdown came while the message was under way */
            close_with(s, "421 4.3.2 %s Shutting down", hostname(s));
        else
            set_read_timeout(s, s->ctx->cfg->command_timeout);
        return;
    }
    snprintf(s->tx.qid, sizeof s->tx.qid, "%s", spool_qid(s->tx.spool));
    s->tx.size = spool_size(s->tx.spool);
    s->state = S_COMMITTING;
    bufferevent_disable(s->bev, EV_READ);
    struct spool *sp = s->tx.spool;
    s->tx.spool = NULL; /* spool_commit consumes it */
    spool_commit(sp, on_committed, s);
}

/* Feeds one contiguous piece of input to the data reader. Returns false when
 * the session can take no more input now. */
static bool feed_data(struct session *s, struct evbuffer *in)
{
    struct evbuffer_iovec v;
    if (evbuffer_peek(in, SESSION_CHUNK, NULL, &v, 1) < 1)
        return false;
    size_t len = v.iov_len < SESSION_CHUNK ? v.iov_len : SESSION_CHUNK;
    size_t used = 0, outlen = 0;
    enum data_result r =
        data_reader_feed(s->tx.reader, v.iov_base, len, &used, s->ctx->scratch, &outlen);
    if (outlen && !s->tx.write_failed && spool_write(s->tx.spool, s->ctx->scratch, outlen) < 0) {
        log_err("%s: cannot write the queue file: %s", spool_qid(s->tx.spool), strerror(errno));
        s->tx.write_failed = true;
    }
    evbuffer_drain(in, used);
    switch (r) {
    case DATA_MORE:
        return true;
    case DATA_END:
        finish_message(s);
        return s->state == S_READY;
    case DATA_BARE_LF:
        log_notice("%s: [%s] sent a bare LF in DATA; message refused", spool_qid(s->tx.spool),
                   s->addr);
        close_with(s, "421 4.5.0 Bare linefeed (LF) not allowed");
        return false;
    case DATA_BARE_CR:
        log_notice("%s: [%s] sent a bare CR in DATA; message refused", spool_qid(s->tx.spool),
                   s->addr);
        close_with(s, "421 4.5.0 Bare carriage return (CR) not allowed");
        return false;
    }
    return false;
}

/* ---- command lines ------------------------------------------------------- */

/* Takes one command line from the input. Returns 1 when a line is in
 * ctx->line (length in *len), 0 when more input is needed, -1 when the
 * session was closed for a bare CR or LF. */
static int take_line(struct session *s, struct evbuffer *in, size_t *len)
{
    size_t max = s->ctx->cfg->max_command_line;
    struct evbuffer_ptr lf = evbuffer_search(in, "\n", 1, NULL);
    if (lf.pos < 0) {
        if (evbuffer_get_length(in) >= max) { /* no end in sight: drop what we have */
            s->discarding_long_line = true;
            evbuffer_drain(in, evbuffer_get_length(in));
        }
        return 0;
    }
    size_t n = (size_t)lf.pos + 1;
    if (s->discarding_long_line || n > max) {
        evbuffer_drain(in, n);
        s->discarding_long_line = false;
        bad_command(s, "500 5.5.0 Command line too long");
        return s->state == S_CLOSING ? -1 : 2;
    }
    evbuffer_remove(in, s->ctx->line, n);
    if (n < 2 || s->ctx->line[n - 2] != '\r') {
        log_notice("NOQUEUE: [%s] sent a bare LF; closing", s->addr);
        close_with(s, "421 4.5.0 Bare linefeed (LF) not allowed");
        return -1;
    }
    *len = n - 2;
    if (memchr(s->ctx->line, '\r', *len)) {
        log_notice("NOQUEUE: [%s] sent a bare CR; closing", s->addr);
        close_with(s, "421 4.5.0 Bare carriage return (CR) not allowed");
        return -1;
    }
    s->ctx->line[*len] = '\0';
    return 1;
}

static bool output_congested(struct session *s)
{
    return evbuffer_get_length(bufferevent_get_output(s->bev)) > OUTPUT_HIGH_WATER;
}

static void session_process_input(struct session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    while (evbuffer_get_length(in) > 0) {
        if (s->state == S_CLOSING || s->state == S_COMMITTING)
            return;
        if (s->state == S_DATA) {
            if (!feed_data(s, in))
                return;
            continue;
        }
        if (output_congested(s)) { /* a client that sends without reading */
            bufferevent_disable(s->bev, EV_READ);
            return;
        }
        size_t len = 0;
        int got = take_line(s, in, &len);
        if (got <= 0)
            return;
        if (got == 1)
            dispatch_command(s, s->ctx->line, len);
    }
}

/* ---- bufferevent callbacks ----------------------------------------------- */

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    session_process_input(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;
    (void)bev;
    if (s->state == S_CLOSING) {
        session_free(s);
        return;
    }
    if (s->state != S_COMMITTING && !(bufferevent_get_enabled(s->bev) & EV_READ)) {
        bufferevent_enable(s->bev, EV_READ);
        session_process_input(s);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct session *s = arg;
    (void)bev;
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && s->state != S_CLOSING) {
        log_notice("%s: [%s] timed out %s", s->tx.spool ? spool_qid(s->tx.spool) : "NOQUEUE",
                   s->addr, s->state == S_DATA ? "in DATA" : "waiting for a command");
        close_with(s, "421 4.4.2 %s Error: timeout exceeded", hostname(s));
        return;
    }
    if (s->state == S_COMMITTING) { /* the commit callback frees the session */
        s->commit_orphaned = true;
        bufferevent_disable(s->bev, EV_READ | EV_WRITE);
        return;
    }
    session_free(s);
}

/* ---- start and shutdown --------------------------------------------------- */

static void describe_peer(struct session *s)
{
    const void *a = s->peer.ss_family == AF_INET6
                        ? (const void *)&((struct sockaddr_in6 *)&s->peer)->sin6_addr
                        : (const void *)&((struct sockaddr_in *)&s->peer)->sin_addr;
    if (s->origin == ORIGIN_LOCAL || !inet_ntop(s->peer.ss_family, a, s->addr, sizeof s->addr))
        snprintf(s->addr, sizeof s->addr, "%s", s->origin == ORIGIN_LOCAL ? "local" : "unknown");
}

int session_start(struct smtpd_context *ctx, evutil_socket_t fd, const struct sockaddr *sa,
                  socklen_t salen, enum client_origin origin)
{
    struct session *s = calloc(1, sizeof *s);
    if (!s) {
        evutil_closesocket(fd);
        conn_table_remove(ctx->per_client, sa);
        return -1;
    }
    s->ctx = ctx;
    s->origin = origin;
    memcpy(&s->peer, sa, salen < sizeof s->peer ? salen : sizeof s->peer);
    describe_peer(s);
    s->bev = bufferevent_socket_new(ctx->base, fd, BEV_OPT_CLOSE_ON_FREE);
    ctx->nsessions++;
    s->next = ctx->sessions;
    if (ctx->sessions)
        ctx->sessions->prev = s;
    ctx->sessions = s;
    if (!s->bev) {
        evutil_closesocket(fd);
        session_free(s);
        return -1;
    }
    bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
    bufferevent_setwatermark(s->bev, EV_READ, 0, INPUT_HIGH_WATER);
    set_read_timeout(s, ctx->cfg->command_timeout);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    reply(s, "220 %s ESMTP jailmail; %s", hostname(s), "ready");
    return 0;
}

void sessions_shutdown(struct smtpd_context *ctx)
{
    for (struct session *s = ctx->sessions; s; s = s->next) {
        if (s->state == S_DATA || s->state == S_COMMITTING)
            s->close_after_reply = true;
        else if (s->state != S_CLOSING)
            close_with(s, "421 4.3.2 %s Shutting down", hostname(s));
    }
}
