/* smtp_server.c - the smtpd worker (see smtp_server.h): one event loop that
 * accepts connections within the limits and runs their sessions.
 *
 * Worker states:
 *   RUNNING   --IPC_RETIRE-->  RETIRING  (no accepting; exit when the last session ends;
 *                                         after shutdown_timeout: STOPPING)
 *   RUNNING   --IPC_STOP---->  STOPPING  (no accepting; idle sessions closed, those in
 *                                         DATA finish; exit when none is left or at the
 *                                         shutdown deadline)
 */
#include "smtp_server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "conn_limit.h"
#include "ipc.h"
#include "log.h"
#include "queue.h"
#include "smtp_session.h"
#include "spool.h"

enum server_mode { SRV_RUNNING, SRV_RETIRING, SRV_STOPPING };

struct server {
    struct smtpd_context ctx;
    enum server_mode mode;
    struct evconnlistener *listeners[CONF_MAX_LISTEN];
    size_t nlisteners;
    struct event *ipc_ev;
    struct event *deadline;
    struct event *resume_accept;
};

static struct server *server_of(struct smtpd_context *ctx)
{
    return (struct server *)ctx; /* ctx is the first member */
}

/* A refusal before any session exists: best effort, never blocking. */
static void refuse_connection(evutil_socket_t fd, const char *text)
{
    ssize_t n = send(fd, text, strlen(text), MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)n;
    evutil_closesocket(fd);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct server *srv = arg;
    const struct config *cfg = srv->ctx.cfg;
    char text[CONF_HOST_MAX + 80];
    (void)l;
    if (srv->ctx.nsessions >= cfg->max_connections) {
        snprintf(text, sizeof text, "421 4.7.0 %s Too many connections, try again later\r\n",
                 cfg->hostname);
        refuse_connection(fd, text);
        return;
    }
    unsigned n = conn_table_add(srv->ctx.per_client, sa);
    if (n == 0 || n > cfg->max_connections_per_client) {
        if (n)
            conn_table_remove(srv->ctx.per_client, sa);
        snprintf(text, sizeof text, "421 4.7.0 %s Too many connections from your address\r\n",
                 cfg->hostname);
        refuse_connection(fd, text);
        return;
    }
    session_start(&srv->ctx, fd, sa, (socklen_t)salen, ORIGIN_NETWORK);
}

static void on_resume_accept(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    (void)fd;
    (void)what;
    if (srv->mode == SRV_RUNNING)
        for (size_t i = 0; i < srv->nlisteners; i++)
            evconnlistener_enable(srv->listeners[i]);
}

/* accept() failed, most likely out of file descriptors: pause accepting for
 * a moment instead of spinning on a listener that stays readable. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct server *srv = arg;
    int err = EVUTIL_SOCKET_ERROR();
    (void)l;
    log_warning("accept failed: %s; pausing new connections for 1 s", strerror(err));
    for (size_t i = 0; i < srv->nlisteners; i++)
        evconnlistener_disable(srv->listeners[i]);
    struct timeval tv = {.tv_sec = 1};
    evtimer_add(srv->resume_accept, &tv);
}

static int open_listeners(struct server *srv, const int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct evconnlistener *l =
            evconnlistener_new(srv->ctx.base, on_accept, srv, LEV_OPT_CLOSE_ON_FREE, 0, fds[i]);
        if (!l) {
            log_err("cannot use listening socket %d", fds[i]);
            return -1;
        }
        evconnlistener_set_error_cb(l, on_accept_error);
        srv->listeners[srv->nlisteners++] = l;
    }
    return 0;
}

static void close_listeners(struct server *srv)
{
    for (size_t i = 0; i < srv->nlisteners; i++)
        evconnlistener_free(srv->listeners[i]);
    srv->nlisteners = 0;
}

static void on_last_session(struct smtpd_context *ctx)
{
    struct server *srv = server_of(ctx);
    if (srv->mode != SRV_RUNNING)
        event_base_loopbreak(ctx->base);
}

static void begin_stop(struct server *srv, enum server_mode mode);

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    (void)fd;
    (void)what;
    if (srv->mode == SRV_RETIRING) { /* sessions kept past a reload end now */
        log_info("%u session(s) still open %u s after the reload; closing them", srv->ctx.nsessions,
                 srv->ctx.cfg->shutdown_timeout);
        begin_stop(srv, SRV_STOPPING);
        return;
    }
    log_warning("%u session(s) still open at the shutdown deadline; closing them",
                srv->ctx.nsessions);
    event_base_loopbreak(srv->ctx.base);
}

static void begin_stop(struct server *srv, enum server_mode mode)
{
    if (srv->mode == SRV_STOPPING || srv->mode == mode)
        return;
    srv->mode = mode;
    close_listeners(srv);
    /* Retiring after a reload, the old sessions may finish what they are
     * doing, but not live on under the old configuration for ever: after
     * shutdown_timeout they are stopped like at shutdown. */
    if (mode == SRV_STOPPING)
        sessions_shutdown(&srv->ctx);
    struct timeval tv = {.tv_sec = srv->ctx.cfg->shutdown_timeout};
    evtimer_add(srv->deadline, &tv);
    if (srv->ctx.nsessions == 0)
        event_base_loopbreak(srv->ctx.base);
}

static void on_ipc(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    struct ipc_msg msg;
    (void)what;
    for (;;) {
        int rc = ipc_recv((int)fd, &msg);
        if (rc == 0) { /* the master is gone: nobody to hand messages to */
            begin_stop(srv, SRV_STOPPING);
            event_del(srv->ipc_ev);
            return;
        }
        if (rc < 0)
            return;
        if (msg.hdr.type == IPC_STOP)
            begin_stop(srv, SRV_STOPPING);
        else if (msg.hdr.type == IPC_RETIRE)
            begin_stop(srv, SRV_RETIRING);
    }
}

static int server_init(struct server *srv, const struct config *cfg, const char *qdir, int ipc_fd)
{
    char err[512];
    struct smtpd_context *ctx = &srv->ctx;
    ctx->cfg = cfg;
    ctx->ipc_fd = ipc_fd;
    ctx->local_domains[0] = cfg->hostname;
    ctx->policy.local_domains = ctx->local_domains;
    ctx->on_last_session = on_last_session;
    ctx->base = event_base_new();
    ctx->per_client = conn_table_new(cfg->max_connections);
    ctx->line = malloc(cfg->max_command_line + 1);
    if (!ctx->base || !ctx->per_client || !ctx->line) {
        log_err("smtpd: out of memory at start");
        return -1;
    }
    if (queue_prepare_dirs(qdir, err, sizeof err) < 0 ||
        spool_init(ctx->base, qdir, err, sizeof err) < 0) {
        log_err("smtpd: queue %s unusable: %s", qdir, err);
        return -1;
    }
    srv->ipc_ev = event_new(ctx->base, ipc_fd, EV_READ | EV_PERSIST, on_ipc, srv);
    srv->deadline = evtimer_new(ctx->base, on_deadline, srv);
    srv->resume_accept = evtimer_new(ctx->base, on_resume_accept, srv);
    if (!srv->ipc_ev || !srv->deadline || !srv->resume_accept)
        return -1;
    event_add(srv->ipc_ev, NULL);
    return 0;
}

int smtpd_main(const struct config *cfg, const char *qdir, int ipc_fd, const int *listen_fds,
               size_t nlisten)
{
    static struct server srv; /* one per process */
    if (server_init(&srv, cfg, qdir, ipc_fd) < 0 || open_listeners(&srv, listen_fds, nlisten) < 0)
        return 1;
    event_base_dispatch(srv.ctx.base);
    spool_shutdown();
    return 0;
}
