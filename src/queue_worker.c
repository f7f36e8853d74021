/* queue_worker.c - the queue process (see queue_worker.h).
 *
 * One libevent loop drives everything:
 *   - the IPC socket from the master (new message, run the queue, stop);
 *   - a periodic queue run (every queue_interval) that scans msg/ for
 *     messages nobody announced and takes every message whose time has come;
 *   - a wake-up timer set to the scheduler's earliest next attempt;
 *   - up to max_deliveries SMTP connections to the smarthost (smtp_client.c),
 *     each a slot; an idle connection is kept for the next ready message.
 *
 * Dispatch never runs inside a connection's callback: callbacks "kick" it,
 * and it runs from the loop, so no callback recurses into another.
 *
 * The queue on disk is the truth: a recipient's status is written before the
 * message is forgotten, and the next attempt time lives in the file's mtime.
 */
#include "queue_worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "dns.h"
#include "ipc.h"
#include "log.h"
#include "queue.h"
#include "scheduler.h"
#include "smtp_client.h"

#define CONNECT_TIMEOUT 30    /* seconds to resolve and connect */
#define DATA_DONE_TIMEOUT 600 /* RFC 5321 4.5.3.2.6: 10 minutes for the reply to "." */
#define IDLE_CONN_TIMEOUT 5   /* seconds a cached connection waits for a message */
#define MAX_JOBS_PER_CONN 100 /* messages on one connection, then a fresh one */
#define HOST_DOWN_SECONDS 30  /* after a failed connection, defer without trying */
#define ERR_MAX 512

struct worker;

/* One message in flight on a connection. */
struct delivery {
    struct queue_envelope env;
    int data_fd;
    int64_t started;
    bool marked; /* a recipient's status changed in this attempt */
};

/* One outbound connection: empty (conn NULL), idle (job NULL) or busy. */
struct slot {
    struct worker *w;
    struct smtp_conn *conn;
    struct delivery *job;
};

struct worker {
    const struct config *cfg;
    const char *qdir;
    int ipc_fd;
    struct event_base *base;
    struct event *ipc_ev, *run_ev, *wake_ev, *kick_ev, *deadline_ev;
    struct scheduler *sched;
    struct slot *slots;
    size_t nslots;
    bool stopping;
    int64_t host_down_until; /* defer at once until then: the smarthost failed */
    char host_down_why[ERR_MAX];
    struct smtp_conn_params params;
};

static int64_t now_sec(void)
{
    return (int64_t)time(NULL);
}

/* "hh:mm:ss", or "d+hh:mm:ss" from one day on, as sendmail writes delays. */
static void format_delay(int64_t secs, char *out, size_t outlen)
{
    if (secs < 0)
        secs = 0;
    long long d = secs / 86400, h = secs % 86400 / 3600, m = secs % 3600 / 60, s = secs % 60;
    if (d)
        snprintf(out, outlen, "%lld+%02lld:%02lld:%02lld", d, h, m, s);
    else
        snprintf(out, outlen, "%02lld:%02lld:%02lld", h, m, s);
}

/* One log line per recipient per attempt, sendmail style. */
static void log_rcpt(const struct delivery *d, size_t i, const char *relay, const char *dsn,
                     const char *stat)
{
    char delay[32], xdelay[32];
    int64_t now = now_sec();
    format_delay(now - d->env.arrival, delay, sizeof delay);
    format_delay(now - d->started, xdelay, sizeof xdelay);
    log_msg(LOG_INFO, "%s: to=<%s>, delay=%s, xdelay=%s, mailer=esmtp, relay=%s, dsn=%s, stat=%s",
            d->env.qid, d->env.rcpts[i].addr, delay, xdelay, relay, dsn, stat);
}

/* The outcome is kept in memory and written once at the end of the attempt
 * (delivery_finish): when nobody is left pending the file just goes. */
static void mark_rcpt(struct delivery *d, size_t i, char status)
{
    d->env.rcpts[i].status = status;
    d->marked = true;
}

static size_t pending_rcpts(const struct queue_envelope *env)
{
    size_t n = 0;
    for (size_t i = 0; i < env->nrcpts; i++)
        n += env->rcpts[i].status == RCPT_PENDING;
    return n;
}

static void kick(struct worker *w)
{
    struct timeval zero = {0, 0};
    if (!w->stopping)
        evtimer_add(w->kick_ev, &zero);
}

static void delivery_free(struct delivery *d)
{
    if (!d)
        return;
    if (d->data_fd >= 0)
        close(d->data_fd);
    queue_envelope_free(&d->env);
    free(d);
}

/* The attempt is over: remove the file when nobody is pending, else set the
 * next attempt by back-off. `retry_now` puts it back at once (a stale cached
 * connection, or an attempt cut short by no fault of the message). */
static void delivery_finish(struct worker *w, struct delivery *d, bool retry_now)
{
    int64_t now = now_sec();
    const char *qid = d->env.qid;
    if (pending_rcpts(&d->env) == 0) {
        if (queue_remove(w->qdir, qid) < 0 && errno != ENOENT)
            log_msg(LOG_ERR, "%s: cannot remove the queue file: %s", qid, strerror(errno));
        sched_release(w->sched, qid, -1);
    } else {
        /* Kept in memory even if the write fails: the outcome is known, and
         * delivering twice is the lesser harm than misreporting. */
        if (d->marked && queue_mark_rcpts(w->qdir, &d->env) < 0)
            log_msg(LOG_ERR, "%s: cannot record the recipients' status: %s", qid, strerror(errno));
        int64_t next = retry_now ? now
                                 : now + sched_backoff(d->env.arrival, now, w->cfg->retry_min,
                                                       w->cfg->queue_interval);
        if (!retry_now && queue_set_next_attempt(w->qdir, qid, next) < 0 && errno != ENOENT)
            log_msg(LOG_WARNING, "%s: cannot record the next attempt time: %s", qid,
                    strerror(errno));
        sched_release(w->sched, qid, next);
    }
    delivery_free(d);
}

/* Defers every pending recipient without a connection. */
static void defer_all(struct worker *w, struct delivery *d, const char *relay, const char *why)
{
    char stat[ERR_MAX + 16];
    snprintf(stat, sizeof stat, "Deferred: %s", why);
    for (size_t i = 0; i < d->env.nrcpts; i++)
        if (d->env.rcpts[i].status == RCPT_PENDING)
            log_rcpt(d, i, relay, "4.0.0", stat);
    delivery_finish(w, d, false);
}

/* ---- connection callbacks ------------------------------------------------- */

/* "Deferred: 451 4.3.0 text", "Failed: 550 ...", or our reason without code. */
static void format_stat(char *out, size_t outlen, const char *what, const struct smtp_result *res)
{
    const char *sep = res->text[0] ? " " : "";
    if (res->code)
        snprintf(out, outlen, "%s: %d%s%s", what, res->code, sep, res->text);
    else
        snprintf(out, outlen, "%s: %s", what, res->text);
}

static void on_rcpt_result(void *owner, struct smtp_conn *c, size_t i,
                           const struct smtp_result *res)
{
    struct slot *s = owner;
    struct delivery *d = s->job;
    char stat[SMTP_REPLY_TEXT_MAX + 64];
    if (!d || i >= d->env.nrcpts)
        return;
    switch (res->outcome) {
    case SMTP_SENT:
        snprintf(stat, sizeof stat, res->text[0] ? "Sent (%s)" : "Sent%s", res->text);
        mark_rcpt(d, i, RCPT_DELIVERED);
        break;
    case SMTP_FAILED:
        format_stat(stat, sizeof stat, "Failed", res);
        mark_rcpt(d, i, RCPT_FAILED);
        break;
    case SMTP_DEFERRED:
        format_stat(stat, sizeof stat, "Deferred", res);
        break;
    }
    log_rcpt(d, i, smtp_conn_relay(c), res->dsn, stat);
}

static void slot_release_conn(struct slot *s)
{
    smtp_conn_free(s->conn);
    s->conn = NULL;
}

static void check_stopped(struct worker *w)
{
    if (!w->stopping)
        return;
    for (size_t i = 0; i < w->nslots; i++)
        if (w->slots[i].conn)
            return;
    event_base_loopexit(w->base, NULL);
}

static void on_job_done(void *owner, struct smtp_conn *c, enum smtp_job_end end, const char *why)
{
    struct slot *s = owner;
    struct worker *w = s->w;
    struct delivery *d = s->job;
    s->job = NULL;
    if (end == SMTP_JOB_CONNECT_FAILED && why) {
        unsigned window =
            w->cfg->retry_min < HOST_DOWN_SECONDS ? w->cfg->retry_min : HOST_DOWN_SECONDS;
        w->host_down_until = now_sec() + window;
        snprintf(w->host_down_why, sizeof w->host_down_why, "%s", why);
    }
    if (d)
        delivery_finish(w, d, end == SMTP_JOB_RETRY);
    if (!smtp_conn_idle(c))
        slot_release_conn(s);
    else if (w->stopping || smtp_conn_jobs_done(c) >= MAX_JOBS_PER_CONN)
        smtp_conn_quit(c);
    kick(w);
    check_stopped(w);
}

static void on_closed(void *owner, struct smtp_conn *c)
{
    (void)c;
    struct slot *s = owner;
    slot_release_conn(s);
    kick(s->w);
    check_stopped(s->w);
}

static const struct smtp_conn_ops conn_ops = {
    .rcpt_result = on_rcpt_result,
    .job_done = on_job_done,
    .closed = on_closed,
};

/* ---- dispatch ------------------------------------------------------------- */

/* An idle connection first (the connection cache), else an empty slot. */
static struct slot *pick_slot(struct worker *w)
{
    struct slot *empty = NULL;
    for (size_t i = 0; i < w->nslots; i++) {
        struct slot *s = &w->slots[i];
        if (s->conn && !s->job && smtp_conn_idle(s->conn))
            return s;
        if (!s->conn && !empty)
            empty = s;
    }
    return empty;
}

/* Reads the envelope; a file that cannot be parsed goes to corrupt/.
 * Returns NULL when there is nothing to deliver now. */
static struct delivery *delivery_load(struct worker *w, const char *qid, int64_t now)
{
    char err[ERR_MAX];
    struct delivery *d = calloc(1, sizeof *d);
    if (!d) {
        sched_release(w->sched, qid, now + w->cfg->retry_min);
        return NULL;
    }
    d->data_fd = -1;
    d->started = now;
    if (queue_read_envelope(w->qdir, qid, &d->env, err, sizeof err) == 0)
        return d;
    int e = errno;
    free(d);
    if (e == ENOENT) { /* removed meanwhile: nothing to do */
        sched_release(w->sched, qid, -1);
    } else if (e == EINVAL) {
        log_msg(LOG_ERR, "%s: unusable queue file, moved to corrupt/: %s", qid, err);
        if (queue_move_corrupt(w->qdir, "msg", qid) < 0)
            log_msg(LOG_ERR, "%s: cannot move to corrupt/: %s", qid, strerror(errno));
        sched_release(w->sched, qid, -1);
    } else {
        log_msg(LOG_WARNING, "%s: cannot read the queue file, will retry: %s", qid, err);
        sched_release(w->sched, qid, now + w->cfg->retry_min);
    }
    return NULL;
}

static void start_delivery(struct worker *w, struct slot *s, const char *qid, int64_t now)
{
    struct delivery *d = delivery_load(w, qid, now);
    if (!d)
        return;
    if (pending_rcpts(&d->env) == 0) {
        delivery_finish(w, d, false);
        return;
    }
    if (!w->cfg->smarthost[0]) {
        defer_all(w, d, "none", "delivery to MX hosts is not supported yet; set a smarthost");
        return;
    }
    if (now < w->host_down_until) {
        defer_all(w, d, w->cfg->smarthost, w->host_down_why);
        return;
    }
    struct stat st;
    d->data_fd = queue_open_data(w->qdir, &d->env);
    if (d->data_fd < 0 || fstat(d->data_fd, &st) < 0) {
        char why[ERR_MAX];
        snprintf(why, sizeof why, "cannot open the queue file: %s", strerror(errno));
        defer_all(w, d, w->cfg->smarthost, why);
        return;
    }
    struct smtp_job job = {
        .env = &d->env,
        .data_fd = d->data_fd,
        .data_size = st.st_size > d->env.data_offset ? st.st_size - d->env.data_offset : 0,
    };
    s->job = d;
    if (s->conn) { /* the cached connection; it may report at once */
        if (smtp_conn_deliver(s->conn, &job) < 0) {
            s->job = NULL;
            defer_all(w, d, smtp_conn_relay(s->conn), "out of memory");
        }
        return;
    }
    s->conn = smtp_conn_open(w->base, &w->params, &conn_ops, s, &job);
    if (!s->conn) {
        s->job = NULL;
        defer_all(w, d, w->cfg->smarthost, "out of memory");
    }
}

static void arm_wake(struct worker *w, int64_t now)
{
    int64_t when;
    evtimer_del(w->wake_ev);
    /* A message already due waits for a free slot, whose release kicks. */
    if (w->stopping || !sched_next_time(w->sched, &when) || when <= now)
        return;
    struct timeval tv = {.tv_sec = (time_t)(when - now)};
    evtimer_add(w->wake_ev, &tv);
}

static void dispatch(struct worker *w)
{
    int64_t now = now_sec();
    char qid[QID_SIZE];
    while (!w->stopping) {
        struct slot *s = pick_slot(w);
        if (!s || !sched_take_due(w->sched, now, qid))
            break;
        start_delivery(w, s, qid, now);
    }
    arm_wake(w, now);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    dispatch(arg);
}

/* ---- queue runs ------------------------------------------------------------ */

static void found_in_queue(const char *qid, void *arg)
{
    struct worker *w = arg;
    int64_t when, now = now_sec();
    if (sched_known(w->sched, qid))
        return;
    if (queue_get_next_attempt(w->qdir, qid, &when) < 0 || when < now)
        when = now;
    /* Never further than one queue interval: a clock stepped back or a
     * touched file must not park a message for ever. */
    if (when > now + (int64_t)w->cfg->queue_interval)
        when = now + w->cfg->queue_interval;
    if (sched_add(w->sched, qid, when) < 0)
        log_msg(LOG_ERR, "%s: cannot schedule (out of memory); the next queue run retries", qid);
}

static void scan_queue(struct worker *w)
{
    if (queue_scan(w->qdir, found_in_queue, w) < 0)
        log_msg(LOG_ERR, "queue scan of %s failed: %s", w->qdir, strerror(errno));
}

static void on_queue_run(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct worker *w = arg;
    scan_queue(w);
    dispatch(w);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    dispatch(arg);
}

/* ---- stopping ---------------------------------------------------------------- */

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct worker *w = arg;
    for (size_t i = 0; i < w->nslots; i++) {
        struct slot *s = &w->slots[i];
        if (s->job)
            log_msg(LOG_NOTICE, "%s: delivery cut short by shutdown; recipients stay queued",
                    s->job->env.qid);
        delivery_free(s->job); /* recipients stay pending in the file */
        s->job = NULL;
        if (s->conn)
            slot_release_conn(s);
    }
    event_base_loopexit(w->base, NULL);
}

static void begin_stop(struct worker *w)
{
    if (w->stopping)
        return;
    w->stopping = true;
    event_del(w->ipc_ev);
    event_del(w->run_ev);
    evtimer_del(w->wake_ev);
    evtimer_del(w->kick_ev);
    for (size_t i = 0; i < w->nslots; i++)
        if (w->slots[i].conn && !w->slots[i].job)
            smtp_conn_quit(w->slots[i].conn);
    struct timeval tv = {.tv_sec = w->cfg->shutdown_timeout ? w->cfg->shutdown_timeout : 30};
    evtimer_add(w->deadline_ev, &tv);
    check_stopped(w);
}

/* ---- IPC --------------------------------------------------------------------- */

static void handle_ipc(struct worker *w, const struct ipc_msg *m)
{
    switch (m->hdr.type) {
    case IPC_NEW_MESSAGE:
        if (!queue_id_valid(m->payload, m->hdr.length)) {
            log_msg(LOG_WARNING, "invalid queue id announced; ignored");
            return;
        }
        sched_add(w->sched, m->payload, now_sec());
        kick(w);
        return;
    case IPC_RUN_QUEUE:
        w->host_down_until = 0; /* asked to try now: try the host too */
        scan_queue(w);
        sched_all_due(w->sched, now_sec());
        kick(w);
        return;
    case IPC_STOP:
        begin_stop(w);
        return;
    default:
        log_msg(LOG_WARNING, "unexpected message type %u from the master; ignored",
                (unsigned)m->hdr.type);
    }
}

static void on_ipc(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct worker *w = arg;
    struct ipc_msg m;
    for (int i = 0; i < 64 && !w->stopping; i++) {
        int r = ipc_recv(fd, &m);
        if (r == 0) { /* the master is gone */
            begin_stop(w);
            return;
        }
        if (r < 0 && errno == EAGAIN)
            return;
        if (r < 0 && errno == EPROTO) {
            log_msg(LOG_WARNING, "malformed message from the master; ignored");
            continue;
        }
        if (r < 0) {
            log_msg(LOG_ERR, "reading from the master: %s", strerror(errno));
            begin_stop(w);
            return;
        }
        handle_ipc(w, &m);
    }
}

/* ---- set-up ------------------------------------------------------------------ */

static int worker_setup(struct worker *w)
{
    w->base = event_base_new();
    w->sched = sched_new();
    w->nslots = w->cfg->max_deliveries ? w->cfg->max_deliveries : 1;
    w->slots = calloc(w->nslots, sizeof *w->slots);
    if (!w->base || !w->sched || !w->slots)
        return -1;
    for (size_t i = 0; i < w->nslots; i++)
        w->slots[i].w = w;
    w->ipc_ev = event_new(w->base, w->ipc_fd, EV_READ | EV_PERSIST, on_ipc, w);
    w->run_ev = event_new(w->base, -1, EV_PERSIST, on_queue_run, w);
    w->wake_ev = evtimer_new(w->base, on_wake, w);
    w->kick_ev = evtimer_new(w->base, on_kick, w);
    w->deadline_ev = evtimer_new(w->base, on_deadline, w);
    if (!w->ipc_ev || !w->run_ev || !w->wake_ev || !w->kick_ev || !w->deadline_ev)
        return -1;
    struct timeval every = {.tv_sec = w->cfg->queue_interval ? w->cfg->queue_interval : 900};
    if (event_add(w->ipc_ev, NULL) < 0 || event_add(w->run_ev, &every) < 0)
        return -1;
    unsigned cmd = w->cfg->command_timeout ? w->cfg->command_timeout : 300;
    w->params = (struct smtp_conn_params){
        .host = w->cfg->smarthost,
        .port = w->cfg->smarthost_port ? w->cfg->smarthost_port : 25,
        .helo_name = w->cfg->hostname,
        .connect_timeout = CONNECT_TIMEOUT,
        .command_timeout = cmd,
        .data_timeout = cmd > DATA_DONE_TIMEOUT ? cmd : DATA_DONE_TIMEOUT,
        .idle_timeout = IDLE_CONN_TIMEOUT,
    };
    return 0;
}

static void worker_teardown(struct worker *w)
{
    for (size_t i = 0; w->slots && i < w->nslots; i++) {
        delivery_free(w->slots[i].job);
        smtp_conn_free(w->slots[i].conn);
    }
    free(w->slots);
    dns_shutdown(); /* before the base: it frees events */
    struct event *evs[] = {w->ipc_ev, w->run_ev, w->wake_ev, w->kick_ev, w->deadline_ev};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
    sched_free(w->sched);
    if (w->base)
        event_base_free(w->base);
}

int queue_worker_main(const struct config *cfg, const char *qdir, int ipc_fd)
{
    struct worker w = {.cfg = cfg, .qdir = qdir, .ipc_fd = ipc_fd};
    signal(SIGPIPE, SIG_IGN); /* a server that closes is an event, not a death */
    if (worker_setup(&w) < 0) {
        log_msg(LOG_ERR, "queue worker: cannot set up (out of memory?)");
        worker_teardown(&w);
        return 1;
    }
    int n = queue_scan(qdir, found_in_queue, &w);
    if (n < 0)
        log_msg(LOG_ERR, "queue scan of %s failed: %s", qdir, strerror(errno));
    else
        log_msg(LOG_INFO, "queue worker started: %d message(s) in the queue, smarthost %s", n,
                cfg->smarthost[0] ? cfg->smarthost : "(none)");
    dispatch(&w);
    event_base_dispatch(w.base);
    worker_teardown(&w);
    return 0;
}
