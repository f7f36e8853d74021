/* Unit tests of the SMTP client (smtp_client.c): the pure parts (reply
 * accumulation, enhanced status codes, EHLO keywords, command formatting, the
 * dot-stuffer with line-end repair split across chunks every way), then the
 * connection state machine against a scripted server thread on 127.0.0.1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "dns.h"
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

/* ---- the connection state machine against a scripted server ---------------- */

/* One step of the server's script: read a command line that must start with
 * `expect` (NULL: read nothing), then send `reply` (NULL: nothing). Special
 * expects: "<DATA>" reads the content up to CRLF.CRLF; "<CLOSE>" closes. */
struct step {
    const char *expect;
    const char *reply;
};

struct server {
    int listen_fd;
    uint16_t port;
    const struct step *script;
    size_t nsteps;
    unsigned connections; /* scripts run one after another, one per connection */
    pthread_t thread;
    char error[256]; /* first mismatch seen by the server */
    char data[4096]; /* the last DATA content received */
    size_t datalen;
    char commands[4096]; /* every command line received, LF-separated */
};

static ssize_t read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, 1);
        if (r <= 0)
            return -1;
        if (buf[n++] == '\n')
            break;
    }
    buf[n] = '\0';
    return (ssize_t)n;
}

static void server_error(struct server *sv, const char *what, const char *got)
{
    if (!sv->error[0])
        snprintf(sv->error, sizeof sv->error, "%.100s (got %.100s)", what, got);
}

static void server_read_data(struct server *sv, int fd)
{
    char line[1100];
    sv->datalen = 0;
    while (read_line(fd, line, sizeof line) > 0 && strcmp(line, ".\r\n") != 0) {
        size_t n = strlen(line);
        if (sv->datalen + n < sizeof sv->data) {
            memcpy(sv->data + sv->datalen, line, n);
            sv->datalen += n;
        }
    }
}

static void server_run_script(struct server *sv, int fd)
{
    char line[1100];
    for (size_t i = 0; i < sv->nsteps && sv->script[i].expect != (const char *)-1; i++) {
        const struct step *st = &sv->script[i];
        if (st->expect && strcmp(st->expect, "<CLOSE>") == 0)
            return;
        if (st->expect && strcmp(st->expect, "<DATA>") == 0) {
            server_read_data(sv, fd);
        } else if (st->expect) {
            if (read_line(fd, line, sizeof line) < 0) {
                server_error(sv, st->expect, "EOF");
                return;
            }
            strncat(sv->commands, line, sizeof sv->commands - strlen(sv->commands) - 1);
            if (strncmp(line, st->expect, strlen(st->expect)) != 0)
                server_error(sv, st->expect, line);
        }
        if (st->reply && write(fd, st->reply, strlen(st->reply)) < 0)
            return;
    }
}

static void *server_main(void *arg)
{
    struct server *sv = arg;
    /* several connections: the script continues on the next one after a
     * "<CLOSE>" step (or its end) */
    size_t start = 0;
    for (unsigned c = 0; c < sv->connections && start < sv->nsteps; c++) {
        int fd = accept(sv->listen_fd, NULL, NULL);
        if (fd < 0)
            break;
        struct timeval tv = {.tv_sec = 5};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        size_t end = start;
        while (end < sv->nsteps &&
               !(sv->script[end].expect && strcmp(sv->script[end].expect, "<CLOSE>") == 0))
            end++;
        const struct step *all = sv->script;
        size_t n = sv->nsteps;
        sv->script = all + start;
        sv->nsteps = end - start;
        server_run_script(sv, fd);
        sv->script = all;
        sv->nsteps = n;
        /* drain what the client still says (QUIT), then close */
        char line[1100];
        struct timeval shortv = {.tv_sec = 0, .tv_usec = 200000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &shortv, sizeof shortv);
        while (end >= n && read_line(fd, line, sizeof line) > 0)
            strncat(sv->commands, line, sizeof sv->commands - strlen(sv->commands) - 1);
        close(fd);
        start = end + 1;
    }
    return NULL;
}

static void server_start(struct server *sv, const struct step *script, size_t n,
                         unsigned connections)
{
    memset(sv, 0, sizeof *sv);
    sv->script = script;
    sv->nsteps = n;
    sv->connections = connections;
    sv->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(sv->listen_fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(sv->listen_fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(sv->listen_fd, 4), 0);
    socklen_t len = sizeof sin;
    getsockname(sv->listen_fd, (struct sockaddr *)&sin, &len);
    sv->port = ntohs(sin.sin_port);
    assert_int_equal(pthread_create(&sv->thread, NULL, server_main, sv), 0);
}

static void server_stop(struct server *sv)
{
    shutdown(sv->listen_fd, SHUT_RDWR);
    close(sv->listen_fd);
    pthread_join(sv->thread, NULL);
}

/* The client side: an envelope, a data file, and what the callbacks saw. */
struct client {
    struct event_base *base;
    struct queue_envelope env;
    struct queue_rcpt rcpts[8];
    int data_fd;
    off_t data_size;
    enum smtp_outcome outcome[8];
    int code[8];
    char dsn[8][SMTP_DSN_MAX];
    char text[8][SMTP_REPLY_TEXT_MAX + 64];
    unsigned nresults[8];
    unsigned jobs_done;
    enum smtp_job_end last_end;
    unsigned closed;
    unsigned jobs_left; /* further jobs to hand to the idle connection */
    bool keep_idle;     /* leave the idle connection to its idle timer */
    unsigned idle_timeout;
    bool idle_after_last;
};

static void cb_rcpt(void *owner, struct smtp_conn *c, size_t i, const struct smtp_result *r)
{
    (void)c;
    struct client *cl = owner;
    assert_true(i < cl->env.nrcpts);
    cl->outcome[i] = r->outcome;
    cl->code[i] = r->code;
    snprintf(cl->dsn[i], sizeof cl->dsn[i], "%s", r->dsn);
    snprintf(cl->text[i], sizeof cl->text[i], "%s", r->text);
    cl->nresults[i]++;
}

static void start_job(struct client *cl, struct smtp_conn *c);

static void cb_done(void *owner, struct smtp_conn *c, enum smtp_job_end end, const char *why)
{
    (void)why;
    struct client *cl = owner;
    cl->jobs_done++;
    cl->last_end = end;
    cl->idle_after_last = smtp_conn_idle(c);
    if (cl->idle_after_last && cl->jobs_left > 0) {
        cl->jobs_left--;
        start_job(cl, c);
        return;
    }
    if (cl->idle_after_last) {
        if (!cl->keep_idle)
            smtp_conn_quit(c); /* `closed` follows */
        return;
    }
    smtp_conn_free(c);
    event_base_loopexit(cl->base, NULL);
}

static void cb_closed(void *owner, struct smtp_conn *c)
{
    struct client *cl = owner;
    cl->closed++;
    smtp_conn_free(c);
    event_base_loopexit(cl->base, NULL);
}

static const struct smtp_conn_ops test_ops = {cb_rcpt, cb_done, cb_closed};

static void client_init(struct client *cl, const char *body8, const char *data,
                        const char *const *rcpts)
{
    memset(cl, 0, sizeof *cl);
    cl->base = event_base_new();
    assert_non_null(cl->base);
    snprintf(cl->env.qid, sizeof cl->env.qid, "AAAAAA00000001");
    cl->env.sender = "s@x.example";
    cl->env.body_type = (char *)body8;
    for (size_t i = 0; rcpts[i]; i++) {
        cl->rcpts[i].addr = (char *)rcpts[i];
        cl->rcpts[i].status = RCPT_PENDING;
        cl->env.nrcpts++;
    }
    cl->env.rcpts = cl->rcpts;
    FILE *f = tmpfile();
    assert_non_null(f);
    cl->data_fd = dup(fileno(f));
    fclose(f);
    cl->data_size = (off_t)strlen(data);
    assert_int_equal(write(cl->data_fd, data, strlen(data)), (ssize_t)strlen(data));
    lseek(cl->data_fd, 0, SEEK_SET);
}

static void start_job(struct client *cl, struct smtp_conn *c)
{
    lseek(cl->data_fd, 0, SEEK_SET);
    for (size_t i = 0; i < cl->env.nrcpts; i++)
        cl->rcpts[i].status = RCPT_PENDING;
    struct smtp_job job = {.env = &cl->env, .data_fd = cl->data_fd, .data_size = cl->data_size};
    assert_int_equal(smtp_conn_deliver(c, &job), 0);
}

static void client_run(struct client *cl, uint16_t port)
{
    struct smtp_conn_params p = {
        .host = "127.0.0.1",
        .port = port,
        .helo_name = "client.example",
        .connect_timeout = 5,
        .command_timeout = 5,
        .data_timeout = 5,
        .idle_timeout = cl->idle_timeout ? cl->idle_timeout : 5,
    };
    struct smtp_job job = {.env = &cl->env, .data_fd = cl->data_fd, .data_size = cl->data_size};
    struct smtp_conn *c = smtp_conn_open(cl->base, &p, &test_ops, cl, &job);
    assert_non_null(c);
    struct timeval limit = {.tv_sec = 20};
    event_base_loopexit(cl->base, &limit); /* a hanging test fails, not blocks */
    event_base_dispatch(cl->base);
}

static void client_free(struct client *cl)
{
    close(cl->data_fd);
    event_base_free(cl->base);
}

#define GREETING                                                                                   \
    {                                                                                              \
        NULL, "220-mx.example ESMTP\r\n220 ready\r\n"                                              \
    }
#define EHLO_PIPE                                                                                  \
    {                                                                                              \
        "EHLO client.example",                                                                     \
            "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250 8BITMIME\r\n"              \
    }
#define NSTEPS(s) (sizeof(s) / sizeof(s)[0])

static void test_conn_pipelined_mixed(void **state)
{
    (void)state;
    static const struct step script[] = {
        GREETING,
        EHLO_PIPE,
        {"MAIL FROM:<s@x.example> BODY=8BITMIME SIZE=13\r\n", "250 2.1.0 ok\r\n"},
        {"RCPT TO:<a@y.example>\r\n", "250 2.1.5 ok\r\n"},
        {"RCPT TO:<b@y.example>\r\n", "550 5.1.1 no such user\r\n"},
        {"RCPT TO:<c@y.example>\r\n", "451 4.3.0 later\r\n"},
        {"RCPT TO:<d@y.example>\r\n", "250 2.1.5 ok\r\n"},
        {"DATA\r\n", "354 go\r\n"},
        {"<DATA>", "250 2.0.0 queued as X\r\n"},
        {"QUIT", "221 bye\r\n"},
    };
    static const char *const rcpts[] = {"a@y.example", "b@y.example", "c@y.example", "d@y.example",
                                        NULL};
    struct server sv;
    struct client cl;
    server_start(&sv, script, NSTEPS(script), 1);
    client_init(&cl, "8BITMIME", "hi\r\n.dot\nlast", rcpts);
    client_run(&cl, sv.port);
    server_stop(&sv);
    assert_string_equal(sv.error, "");
    assert_int_equal(cl.jobs_done, 1);
    assert_int_equal(cl.last_end, SMTP_JOB_COMPLETED);
    assert_int_equal(cl.closed, 1);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(cl.nresults[i], 1);
    assert_int_equal(cl.outcome[0], SMTP_SENT);
    assert_string_equal(cl.text[0], "queued as X");
    assert_string_equal(cl.dsn[0], "2.0.0");
    assert_int_equal(cl.outcome[1], SMTP_FAILED);
    assert_int_equal(cl.code[1], 550);
    assert_string_equal(cl.dsn[1], "5.1.1");
    assert_int_equal(cl.outcome[2], SMTP_DEFERRED);
    assert_int_equal(cl.code[2], 451);
    assert_int_equal(cl.outcome[3], SMTP_SENT);
    assert_int_equal((int)sv.datalen, 17);
    assert_memory_equal(sv.data, "hi\r\n..dot\r\nlast\r\n", 17);
    client_free(&cl);
}

static void test_conn_helo_fallback_plain(void **state)
{
    (void)state;
    static const struct step script[] = {
        {NULL, "220 old.example\r\n"},
        {"EHLO client.example\r\n", "502 5.5.2 what?\r\n"},
        {"HELO client.example\r\n", "250 old.example\r\n"},
        {"MAIL FROM:<s@x.example>\r\n", "250 ok\r\n"}, /* no BODY=, no SIZE= */
        {"RCPT TO:<a@y.example>\r\n", "250 ok\r\n"},
        {"DATA\r\n", "354 go\r\n"},
        {"<DATA>", "554 5.6.0 content refused\r\n"},
        {"QUIT", "221 bye\r\n"},
    };
    static const char *const rcpts[] = {"a@y.example", NULL};
    struct server sv;
    struct client cl;
    server_start(&sv, script, NSTEPS(script), 1);
    client_init(&cl, "8BITMIME", "x\r\n", rcpts);
    client_run(&cl, sv.port);
    server_stop(&sv);
    assert_string_equal(sv.error, "");
    assert_int_equal(cl.outcome[0], SMTP_FAILED);
    assert_int_equal(cl.code[0], 554);
    assert_string_equal(cl.dsn[0], "5.6.0");
    assert_int_equal(cl.last_end, SMTP_JOB_COMPLETED);
    client_free(&cl);
}

static void test_conn_all_rcpts_refused_then_rset(void **state)
{
    (void)state;
    static const struct step script[] = {
        {NULL, "220 mx\r\n"},
        {"EHLO", "250 mx\r\n"}, /* no PIPELINING: one command at a time */
        {"MAIL FROM:<s@x.example>", "250 ok\r\n"},
        {"RCPT TO:<a@y.example>", "550 5.1.1 no\r\n"},
        {"RCPT TO:<b@y.example>", "452 4.5.3 too many\r\n"},
        {"RSET\r\n", "250 ok\r\n"}, /* no DATA when nobody was accepted */
        {"QUIT", "221 bye\r\n"},
    };
    static const char *const rcpts[] = {"a@y.example", "b@y.example", NULL};
    struct server sv;
    struct client cl;
    server_start(&sv, script, NSTEPS(script), 1);
    client_init(&cl, "7BIT", "x\r\n", rcpts);
    client_run(&cl, sv.port);
    server_stop(&sv);
    assert_string_equal(sv.error, "");
    assert_int_equal(cl.outcome[0], SMTP_FAILED);
    assert_int_equal(cl.outcome[1], SMTP_DEFERRED);
    assert_string_equal(cl.dsn[1], "4.5.3");
    assert_true(cl.idle_after_last);
    assert_null(strstr(sv.commands, "DATA"));
    client_free(&cl);
}

static void test_conn_421_mid_transaction(void **state)
{
    (void)state;
    static const struct step script[] = {
        {NULL, "220 mx\r\n"},
        {"EHLO", "250 mx\r\n"},
        {"MAIL FROM:", "250 ok\r\n"},
        {"RCPT TO:<a@y.example>", "250 ok\r\n"},
        {"RCPT TO:<b@y.example>", "421 4.3.2 shutting down\r\n"},
    };
    static const char *const rcpts[] = {"a@y.example", "b@y.example", NULL};
    struct server sv;
    struct client cl;
    server_start(&sv, script, NSTEPS(script), 1);
    client_init(&cl, "7BIT", "x\r\n", rcpts);
    client_run(&cl, sv.port);
    server_stop(&sv);
    assert_string_equal(sv.error, "");
    assert_int_equal(cl.last_end, SMTP_JOB_LOST);
    for (size_t i = 0; i < 2; i++) { /* the accepted one too: no DATA happened */
        assert_int_equal(cl.nresults[i], 1);
        assert_int_equal(cl.outcome[i], SMTP_DEFERRED);
        assert_int_equal(cl.code[i], 421);
    }
    client_free(&cl);
}

static void test_conn_greeting_refused_defers(void **state)
{
    (void)state;
    static const struct step script[] = {{NULL, "554 5.7.1 no thanks\r\n"}};
    static const char *const rcpts[] = {"a@y.example", NULL};
    struct server sv;
    struct client cl;
    server_start(&sv, script, NSTEPS(script), 1);
    client_init(&cl, "7BIT", "x\r\n", rcpts);
    client_run(&cl, sv.port);
    server_stop(&sv);
    assert_int_equal(cl.last_end, SMTP_JOB_CONNECT_FAILED);
    assert_int_equal(cl.outcome[0], SMTP_DEFERRED); /* a refusing relay: no verdict */
    assert_non_null(strstr(cl.text[0], "554 5.7.1 no thanks"));
    client_free(&cl);
}

static void test_conn_refused(void **state)
{
    (void)state;
    /* a port nobody listens on: bind one, then close it */
    struct server sv;
    static const struct step none[] = {{NULL, NULL}};
    server_start(&sv, none, 0, 0);
    uint16_t port = sv.port;
    server_stop(&sv);
    static const char *const rcpts[] = {"a@y.example", "b@y.example", NULL};
    struct client cl;
    client_init(&cl, "7BIT", "x\r\n", rcpts);
    client_run(&cl, port);
    assert_int_equal(cl.last_end, SMTP_JOB_CONNECT_FAILED);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(cl.outcome[i], SMTP_DEFERRED);
        assert_int_equal(cl.code[i], 0);
        assert_string_equal(cl.text[i], "Connection refused by [127.0.0.1]");
    }
    client_free(&cl);
}

static void test_conn_hostile_reply(void **state)
{
    (void)state;
    static char longline[1500];
    memset(longline, 'x', sizeof longline - 3);
    memcpy(longline, "250 ", 4);
    memcpy(longline + sizeof longline - 3, "\r\n", 3);
    const struct step script[] = {
        {NULL, "220 mx\r\n"},
        {"EHLO", longline},
    };
    static const char *const rcpts[] = {"a@y.example", NULL};
    struct server sv;
    struct client cl;
    server_start(&sv, script, NSTEPS(script), 1);
    client_init(&cl, "7BIT", "x\r\n", rcpts);
    client_run(&cl, sv.port);
    server_stop(&sv);
    assert_int_equal(cl.last_end, SMTP_JOB_CONNECT_FAILED);
    assert_int_equal(cl.outcome[0], SMTP_DEFERRED);
    assert_non_null(strstr(cl.text[0], "reply line too long"));
    client_free(&cl);
}

/* Two messages on one connection; a third finds the cached connection gone
 * before any reply: SMTP_JOB_RETRY, nothing reported. */
static void test_conn_reuse_and_stale(void **state)
{
    (void)state;
    static const struct step script[] = {
        {NULL, "220 mx\r\n"},
        {"EHLO", "250-mx\r\n250 PIPELINING\r\n"},
        {"MAIL FROM:", "250 ok\r\n"},
        {"RCPT TO:<a@y.example>", "250 ok\r\n"},
        {"DATA", "354 go\r\n"},
        {"<DATA>", "250 2.0.0 first\r\n"},
        {"MAIL FROM:", "250 ok\r\n"},
        {"RCPT TO:<a@y.example>", "250 ok\r\n"},
        {"DATA", "354 go\r\n"},
        {"<DATA>", "250 2.0.0 second\r\n"},
        {"MAIL FROM:", NULL}, /* then the server goes away without a word */
        {"<CLOSE>", NULL},
    };
    static const char *const rcpts[] = {"a@y.example", NULL};
    struct server sv;
    struct client cl;
    server_start(&sv, script, NSTEPS(script), 1);
    client_init(&cl, "7BIT", "x\r\n", rcpts);
    cl.jobs_left = 2;
    client_run(&cl, sv.port);
    server_stop(&sv);
    assert_string_equal(sv.error, "");
    assert_int_equal(cl.jobs_done, 3);
    assert_int_equal(cl.last_end, SMTP_JOB_RETRY);
    assert_int_equal(cl.nresults[0], 2); /* the third job reported nothing */
    assert_string_equal(cl.text[0], "second");
    client_free(&cl);
}

/* An idle connection says QUIT when its idle time is over, then closes. */
static void test_conn_idle_quit(void **state)
{
    (void)state;
    static const struct step script[] = {
        {NULL, "220 mx\r\n"},         {"EHLO", "250 mx\r\n"},
        {"MAIL FROM:", "250 ok\r\n"}, {"RCPT TO:<a@y.example>", "250 ok\r\n"},
        {"DATA", "354 go\r\n"},       {"<DATA>", "250 2.0.0 done\r\n"},
        {"QUIT\r\n", "221 bye\r\n"},
    };
    static const char *const rcpts[] = {"a@y.example", NULL};
    struct server sv;
    struct client cl;
    server_start(&sv, script, NSTEPS(script), 1);
    client_init(&cl, "7BIT", "x\r\n", rcpts);
    cl.keep_idle = true;
    cl.idle_timeout = 1;
    client_run(&cl, sv.port);
    server_stop(&sv);
    assert_string_equal(sv.error, "");
    assert_int_equal(cl.outcome[0], SMTP_SENT);
    assert_int_equal(cl.closed, 1);
    assert_non_null(strstr(sv.commands, "QUIT\r\n"));
    client_free(&cl);
}

/* ---- host resolution as the client uses it (dns.c) ------------------------- */

static void test_dns_numeric(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    char text[64];
    assert_int_equal(dns_numeric("192.0.2.7", 2525, &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 2525);
    dns_addr_string(&ss, text, sizeof text);
    assert_string_equal(text, "192.0.2.7");
    assert_int_equal(dns_numeric("2001:db8::1", 25, &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    dns_addr_string(&ss, text, sizeof text);
    assert_string_equal(text, "2001:db8::1");
    static const char *const names[] = {"mx.example.org", "[192.0.2.7]", "192.0.2", "",
                                        "192.0.2.7 ",     "::1%lo0x"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        assert_int_equal(dns_numeric(names[i], 25, &ss), -1);
}

struct dns_answer {
    unsigned calls;
    size_t n;
    char first[64], err[64];
};

static void on_dns_answer(void *arg, const struct sockaddr_storage *addrs, size_t n,
                          const char *err)
{
    struct dns_answer *a = arg;
    a->calls++;
    a->n = n;
    if (n)
        dns_addr_string(&addrs[0], a->first, sizeof a->first);
    snprintf(a->err, sizeof a->err, "%s", err ? err : "");
}

/* "localhost" needs no DNS (the jail has no /etc/hosts); without dns_init
 * any other name fails at once; the answer never comes from within
 * dns_resolve; a cancelled lookup never calls back. */
static void test_dns_without_resolver(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct dns_answer local = {0}, other = {0}, cancelled = {0};
    assert_non_null(dns_resolve(base, "LocalHost.", 25, 5, on_dns_answer, &local));
    assert_non_null(dns_resolve(base, "mx.example.org", 25, 5, on_dns_answer, &other));
    struct dns_query *q = dns_resolve(base, "localhost", 25, 5, on_dns_answer, &cancelled);
    assert_non_null(q);
    assert_int_equal(local.calls + other.calls, 0); /* not from within dns_resolve */
    dns_cancel(q);
    event_base_loop(base, EVLOOP_NONBLOCK);
    event_base_loop(base, EVLOOP_NONBLOCK);
    assert_int_equal(local.calls, 1);
    assert_int_equal(local.n, 2);
    assert_string_equal(local.first, "127.0.0.1");
    assert_int_equal(other.calls, 1);
    assert_int_equal(other.n, 0);
    assert_string_equal(other.err, "resolver unavailable");
    assert_int_equal(cancelled.calls, 0);
    dns_shutdown();
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_single_line),
        cmocka_unit_test(test_reply_multi_line),
        cmocka_unit_test(test_reply_code_only),
        cmocka_unit_test(test_reply_errors),
        cmocka_unit_test(test_reply_line_too_long),
        cmocka_unit_test(test_reply_too_many_lines),
        cmocka_unit_test(test_reply_text_is_sanitised),
        cmocka_unit_test(test_reply_dsn),
        cmocka_unit_test(test_ehlo_keywords),
        cmocka_unit_test(test_format_commands),
        cmocka_unit_test(test_dot_stuff_table),
        cmocka_unit_test(test_dot_stuff_nul_passes),
        cmocka_unit_test(test_dot_stuff_bound),
        cmocka_unit_test(test_dot_stuff_random),
        cmocka_unit_test(test_conn_pipelined_mixed),
        cmocka_unit_test(test_conn_helo_fallback_plain),
        cmocka_unit_test(test_conn_all_rcpts_refused_then_rset),
        cmocka_unit_test(test_conn_421_mid_transaction),
        cmocka_unit_test(test_conn_greeting_refused_defers),
        cmocka_unit_test(test_conn_refused),
        cmocka_unit_test(test_conn_hostile_reply),
        cmocka_unit_test(test_conn_reuse_and_stale),
        cmocka_unit_test(test_conn_idle_quit),
        cmocka_unit_test(test_dns_numeric),
        cmocka_unit_test(test_dns_without_resolver),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
