/* master.c - the root process (see master.h and DESIGN.md "Processes").
 *
 * The master's life is a small state machine:
 *
 *   RUNNING  --SIGHUP-->  RUNNING (new configuration, workers replaced)
 *   RUNNING  --SIGTERM/SIGINT-->  DRAINING  --all workers gone / deadline-->  exit
 *
 * Workers are forked from here: each gets its end of a SOCK_SEQPACKET pair,
 * enters the jail and drops root before it touches the network or the queue.
 * What a worker sends back is checked (type, length, charset) before use.
 */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "conf.h"
#include "dns.h"
#include "ipc.h"
#include "listen.h"
#include "log.h"
#include "privsep.h"
#include "queue.h"
#include "queue_worker.h"
#include "smtp_server.h"

#define EX_OK_ 0
#define EX_SOFTWARE_ 70
#define EX_OSERR_ 71
#define EX_CONFIG_ 78
#define MAX_RETIRING 16
#define QUICK_DEATH_SECONDS 10
#define MAX_RESTART_DELAY 60

enum worker_kind { WORKER_SMTPD, WORKER_QUEUE };
enum master_state { MASTER_RUNNING, MASTER_DRAINING };

struct master;

struct worker {
    struct master *owner;
    enum worker_kind kind;
    const char *name;
    pid_t pid;  /* 0 when not running */
    int ipc_fd; /* master's end */
    struct event *ipc_ev;
    time_t started;
    unsigned quick_deaths;    /* deaths in a row soon after start: back-off */
    struct event *restart_ev; /* pending restart */
};

/* An smtpd told to stop after a reload, finishing its sessions. */
struct retiring {
    struct master *owner;
    pid_t pid;
    int ipc_fd;
    struct event *ipc_ev;
};

struct master {
    struct master_options opt;
    struct config cfg;
    struct run_as ra;
    char qdir_outside[PATH_MAX + PATH_MAX]; /* the queue directory seen from here */
    struct listener_set listeners;
    struct event_base *base;
    enum master_state state;
    struct worker smtpd, queue;
    struct retiring retiring[MAX_RETIRING];
    bool queue_restart_pending;   /* start a new queue worker when the old one exits */
    struct event *queue_writable; /* a notification was dropped: ask for a run when possible */
    struct event *sig_events[4];
    struct event *drain_timer;
};

static void worker_start(struct master *m, struct worker *w);

/* ---- configuration ---------------------------------------------------- */

static int load_config(const struct master_options *opt, struct config *cfg)
{
    char err[CONF_ERR_MAX];
    if (conf_load(cfg, opt->config_path, err, sizeof err) < 0) {
        log_err("configuration error: %s", err);
        return -1;
    }
    if (opt->queue_interval)
        cfg->queue_interval = opt->queue_interval;
    return 0;
}

/* The queue directory as the master sees it, and as a worker sees it. */
static void queue_paths(const struct master *m, char *outside, size_t outlen, char *inside,
                        size_t inlen)
{
    snprintf(outside, outlen, "%s%s", m->cfg.jail_dir, m->cfg.queue_dir);
    if (inside)
        snprintf(inside, inlen, "%s", m->ra.jailed ? m->cfg.queue_dir : outside);
}

/* mkdir -p for the jail directory itself: the administrator's own path,
 * every level root-owned 0755. */
static int make_path(const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST) {
            log_err("cannot create directory %s: %s", path, strerror(errno));
            return -1;
        }
        *p = c;
        if (c == '\0')
            return 0;
    }
}

/* One level inside the jail, made if missing and opened without following a
 * symbolic link: below the jail directory, a compromised worker could have
 * planted one to make root create or chown something elsewhere. */
static int open_or_make_dir(int parent, const char *name, mode_t mode, const char *shown)
{
    if (mkdirat(parent, name, mode) < 0 && errno != EEXIST) {
        log_err("cannot create directory %s: %s", shown, strerror(errno));
        return -1;
    }
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        log_err("cannot open directory %s (symbolic links are refused in the jail): %s", shown,
                strerror(errno));
    return fd;
}

/* The queue directory inside the jail: intermediate levels root-owned 0755,
 * the queue directory itself the run-as user's, mode 0700. Its contents are
 * left to the workers, which create tmp/, msg/ and corrupt/ themselves. */
static int prepare_jail_dirs(struct master *m)
{
    char rel[PATH_MAX], *save = NULL;
    queue_paths(m, m->qdir_outside, sizeof m->qdir_outside, NULL, 0);
    if (make_path(m->cfg.jail_dir) < 0)
        return -1;
    int fd = open(m->cfg.jail_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        log_err("cannot open the jail %s: %s", m->cfg.jail_dir, strerror(errno));
        return -1;
    }
    snprintf(rel, sizeof rel, "%s", m->cfg.queue_dir);
    char *next, *name = strtok_r(rel, "/", &save);
    for (; name && fd >= 0; name = next) {
        next = strtok_r(NULL, "/", &save);
        int child = open_or_make_dir(fd, name, next ? 0755 : 0700, m->qdir_outside);
        close(fd);
        fd = child;
    }
    if (fd < 0)
        return -1;
    if ((m->ra.jailed && fchown(fd, m->ra.uid, m->ra.gid) < 0) || fchmod(fd, 0700) < 0) {
        log_err("cannot give %s to the run-as user with mode 0700: %s", m->qdir_outside,
                strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static void raise_fd_limit(const struct config *cfg)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)cfg->max_connections + 256;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_max < want && geteuid() == 0)
        rl.rlim_max = want;
    rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < want)
        log_warning("open files limited to %llu; max_connections=%u needs %llu",
                    (unsigned long long)rl.rlim_cur, cfg->max_connections,
                    (unsigned long long)want);
}

/* ---- messages from workers ------------------------------------------- */

static bool line_printable(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static void handle_log(const char *ident, pid_t pid, const struct ipc_msg *msg)
{
    const char *p = msg->payload;
    size_t len = msg->hdr.length;
    if (len < 2 || p[0] < '0' || p[0] > '7' || !line_printable(p + 1, len - 1)) {
        log_warning("%s sent a malformed log line; ignored", ident);
        return;
    }
    /* A worker may not raise an alarm on every terminal: nothing it says is
     * more urgent than an error. */
    int priority = p[0] - '0' < LOG_ERR ? LOG_ERR : p[0] - '0';
    log_write_line(priority, ident, (long)pid, p + 1);
}

static void on_queue_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    /* Announcements were dropped while the queue worker's socket was full: a
     * queue run makes it scan the queue, which finds them. */
    if (ipc_send((int)fd, IPC_RUN_QUEUE, NULL, 0) < 0)
        log_warning("cannot ask the queue worker for a queue run: %s", strerror(errno));
}

static void forward_new_message(struct master *m, const struct ipc_msg *msg)
{
    if (!queue_id_valid(msg->payload, msg->hdr.length)) {
        log_warning("smtpd announced an invalid queue id; ignored");
        return;
    }
    /* When the queue worker is down or being replaced the message is not
     * lost: it is in msg/ and the next queue worker's scan at start finds it. */
    if (m->queue.pid <= 0 || m->queue_restart_pending ||
        ipc_send(m->queue.ipc_fd, IPC_NEW_MESSAGE, msg->payload, msg->hdr.length) == 0)
        return;
    if (errno == EPIPE || errno == ECONNRESET) /* it is exiting; its successor scans */
        return;
    if (errno != EAGAIN) {
        log_warning("cannot tell the queue worker about %s: %s", msg->payload, strerror(errno));
        return;
    }
    if (m->queue_writable)
        event_free(m->queue_writable);
    m->queue_writable = event_new(m->base, m->queue.ipc_fd, EV_WRITE, on_queue_writable, m);
    if (m->queue_writable)
        event_add(m->queue_writable, NULL);
}

static void dispatch(struct master *m, const char *ident, pid_t pid, bool from_smtpd,
                     const struct ipc_msg *msg)
{
    switch (msg->hdr.type) {
    case IPC_LOG:
        handle_log(ident, pid, msg);
        break;
    case IPC_NEW_MESSAGE:
        if (from_smtpd)
            forward_new_message(m, msg);
        break;
    default:
        log_warning("%s sent an unexpected message type %u", ident, msg->hdr.type);
    }
}

static void on_worker_ipc(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    struct master *m = w->owner;
    (void)what;
    struct ipc_msg msg;
    for (int i = 0; i < 256 && ipc_recv((int)fd, &msg) == 1; i++)
        dispatch(m, w->name, w->pid, w->kind == WORKER_SMTPD, &msg);
}

static void on_retiring_ipc(evutil_socket_t fd, short what, void *arg)
{
    struct retiring *r = arg;
    (void)what;
    struct ipc_msg msg;
    for (int i = 0; i < 256 && ipc_recv((int)fd, &msg) == 1; i++)
        dispatch(r->owner, "smtpd", r->pid, true, &msg);
}

/* ---- starting and stopping workers ----------------------------------- */

static void close_worker_ipc(struct worker *w)
{
    if (w->kind == WORKER_QUEUE && w->owner->queue_writable) {
        event_free(w->owner->queue_writable);
        w->owner->queue_writable = NULL;
    }
    if (w->ipc_ev)
        event_free(w->ipc_ev);
    if (w->ipc_fd >= 0)
        close(w->ipc_fd);
    w->ipc_ev = NULL;
    w->ipc_fd = -1;
}

static int compare_fds(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* In the child: every descriptor but standard input, output and error, the
 * worker's IPC socket and (smtpd) the listening sockets is closed. There is
 * no exec to honour close-on-exec, and a jailed worker must not keep the
 * master's log file, its epoll instance or libevent's signal pipe, through
 * which it could forge the master's signals. */
static void child_close_inherited(struct master *m, enum worker_kind kind, int ipc_fd)
{
    int keep[3 + 1 + CONF_MAX_LISTEN];
    size_t n = 0;
    keep[n++] = STDIN_FILENO;
    keep[n++] = STDOUT_FILENO;
    keep[n++] = STDERR_FILENO;
    keep[n++] = ipc_fd;
    for (size_t i = 0; kind == WORKER_SMTPD && i < m->listeners.n; i++)
        if (m->listeners.fd[i] >= 0)
            keep[n++] = m->listeners.fd[i];
    qsort(keep, n, sizeof keep[0], compare_fds);
    unsigned first = 0;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned)keep[i] > first)
            close_range(first, (unsigned)keep[i] - 1, 0);
        first = (unsigned)keep[i] + 1;
    }
    close_range(first, ~0u, 0);
    if (kind != WORKER_SMTPD)
        m->listeners.n = 0; /* closed above */
}

/* The master coordinates every stop and reload: a Ctrl-C or a hang-up that
 * the terminal sends to the whole process group must not reach the workers
 * directly, or sessions in DATA would die without their deadline. */
static void child_reset_signals(void)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Room for bursts of log lines and announcements. As root the system-wide
 * maximum does not apply (the FORCE options); otherwise the kernel caps it. */
static void enlarge_ipc_buffers(int fd)
{
    int size = 4 * 1024 * 1024;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
}

static void child_set_ipc_timeout(int fd)
{
    enlarge_ipc_buffers(fd);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static void __attribute__((noreturn)) child_run(struct master *m, enum worker_kind kind, int fd)
{
    char err[512], qdir[sizeof m->qdir_outside];
    const char *name = kind == WORKER_SMTPD ? "smtpd" : "queue";
    child_close_inherited(m, kind, fd);
    child_reset_signals();
    child_set_ipc_timeout(fd);
    log_to_master(fd, name);
    tzset(); /* the time zone file is outside the jail */
    if (kind == WORKER_QUEUE && dns_init(err, sizeof err) < 0)
        log_warning("resolver unavailable, host names will not resolve: %s", err);
    queue_paths(m, m->qdir_outside, sizeof m->qdir_outside, qdir, sizeof qdir);
    if (privsep_enter_jail(&m->cfg, &m->ra, err, sizeof err) < 0) {
        log_err("cannot enter the jail: %s", err);
        exit(EX_OSERR_);
    }
    if (queue_prepare_dirs(qdir, err, sizeof err) < 0) {
        log_err("queue directory %s unusable: %s", qdir, err);
        exit(EX_OSERR_);
    }
    int status = kind == WORKER_SMTPD
                     ? smtpd_main(&m->cfg, qdir, fd, m->listeners.fd, m->listeners.n)
                     : queue_worker_main(&m->cfg, qdir, fd);
    exit(status);
}

static void worker_start(struct master *m, struct worker *w)
{
    int fds[2];
    if (m->state != MASTER_RUNNING || w->pid > 0)
        return;
    if (ipc_pair(fds) < 0) {
        log_err("socketpair for %s: %s", w->name, strerror(errno));
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        log_err("fork %s: %s", w->name, strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return;
    }
    if (pid == 0) {
        close(fds[0]);
        child_run(m, w->kind, fds[1]);
    }
    close(fds[1]);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    enlarge_ipc_buffers(fds[0]);
    w->pid = pid;
    w->ipc_fd = fds[0];
    w->started = time(NULL);
    w->ipc_ev = event_new(m->base, fds[0], EV_READ | EV_PERSIST, on_worker_ipc, w);
    event_add(w->ipc_ev, NULL);
    log_info("started %s worker, pid=%ld", w->name, (long)pid);
}

static void on_restart_timer(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    struct master *m = w->owner;
    (void)fd;
    (void)what;
    worker_start(m, w);
}

/* A worker that keeps dying right after its start is restarted ever more
 * slowly (1 s, 2 s, 4 s ... 60 s); one that ran a while comes back at once. */
static void schedule_restart(struct master *m, struct worker *w)
{
    if (time(NULL) - w->started < QUICK_DEATH_SECONDS) {
        if (w->quick_deaths < 16)
            w->quick_deaths++;
    } else {
        w->quick_deaths = 0;
    }
    unsigned delay = w->quick_deaths ? 1u << (w->quick_deaths - 1) : 0;
    if (delay > MAX_RESTART_DELAY)
        delay = MAX_RESTART_DELAY;
    struct timeval tv = {.tv_sec = delay, .tv_usec = delay ? 0 : 100000};
    if (!w->restart_ev)
        w->restart_ev = evtimer_new(m->base, on_restart_timer, w);
    evtimer_add(w->restart_ev, &tv);
    if (delay)
        log_warning("restarting %s worker in %u s", w->name, delay);
}

static void describe_exit(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, len, "ended (status 0x%x)", status);
}

static void retire_smtpd(struct master *m)
{
    if (m->smtpd.pid <= 0)
        return;
    ipc_send(m->smtpd.ipc_fd, IPC_RETIRE, NULL, 0);
    for (size_t i = 0; i < MAX_RETIRING; i++) {
        struct retiring *r = &m->retiring[i];
        if (r->pid > 0)
            continue;
        r->pid = m->smtpd.pid;
        r->ipc_fd = m->smtpd.ipc_fd;
        if (m->smtpd.ipc_ev)
            event_free(m->smtpd.ipc_ev);
        r->owner = m;
        r->ipc_ev = event_new(m->base, r->ipc_fd, EV_READ | EV_PERSIST, on_retiring_ipc, r);
        event_add(r->ipc_ev, NULL);
        m->smtpd.ipc_ev = NULL;
        m->smtpd.ipc_fd = -1;
        m->smtpd.pid = 0;
        return;
    }
    /* Every slot busy (each retiring smtpd ends within 2 x shutdown_timeout,
     * so this takes a burst of reloads): this one is stopped by force. */
    kill(m->smtpd.pid, SIGKILL);
}

static bool reap_retiring(struct master *m, pid_t pid)
{
    for (size_t i = 0; i < MAX_RETIRING; i++) {
        struct retiring *r = &m->retiring[i];
        if (r->pid != pid)
            continue;
        on_retiring_ipc(r->ipc_fd, EV_READ, r); /* its last log lines */
        event_free(r->ipc_ev);
        close(r->ipc_fd);
        r->pid = 0;
        r->ipc_fd = -1;
        r->ipc_ev = NULL;
        return true;
    }
    return false;
}

static bool any_child_left(const struct master *m)
{
    if (m->smtpd.pid > 0 || m->queue.pid > 0)
        return true;
    for (size_t i = 0; i < MAX_RETIRING; i++)
        if (m->retiring[i].pid > 0)
            return true;
    return false;
}

static void worker_exited(struct master *m, struct worker *w, int status)
{
    char how[64];
    describe_exit(status, how, sizeof how);
    on_worker_ipc(w->ipc_fd, EV_READ, w); /* its last log lines */
    close_worker_ipc(w);
    w->pid = 0;
    if (m->state == MASTER_DRAINING) {
        log_info("%s worker %s", w->name, how);
        return;
    }
    if (w->kind == WORKER_QUEUE && m->queue_restart_pending) {
        m->queue_restart_pending = false;
        log_info("queue worker %s; starting it with the new configuration", how);
        worker_start(m, w);
        return;
    }
    log_err("%s worker died unexpectedly: %s", w->name, how);
    schedule_restart(m, w);
}

static void on_sigchld(evutil_socket_t sig, short what, void *arg)
{
    struct master *m = arg;
    (void)sig;
    (void)what;
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == m->smtpd.pid)
            worker_exited(m, &m->smtpd, status);
        else if (pid == m->queue.pid)
            worker_exited(m, &m->queue, status);
        else
            reap_retiring(m, pid);
    }
    if (m->state == MASTER_DRAINING && !any_child_left(m))
        event_base_loopbreak(m->base);
}

/* ---- signals ---------------------------------------------------------- */

static void reload(struct master *m)
{
    struct config fresh;
    struct listener_set sockets;
    char err[CONF_ERR_MAX];
    log_info("SIGHUP: reloading %s", m->opt.config_path);
    if (load_config(&m->opt, &fresh) < 0) {
        log_err("reload refused; the running configuration stays in force");
        return;
    }
    if (listeners_open(&sockets, &fresh, &m->listeners, err, sizeof err) < 0) {
        log_err("reload refused: %s; the running configuration stays in force", err);
        return;
    }
    listeners_close(&m->listeners); /* those no longer configured */
    m->listeners = sockets;
    m->cfg = fresh;
    prepare_jail_dirs(m);
    /* smtpd: the old one finishes its sessions while the new one accepts. The
     * queue worker is replaced only once the old one has gone, so that no
     * message is ever delivered by two of them at once. */
    retire_smtpd(m);
    worker_start(m, &m->smtpd);
    if (m->queue.pid > 0) {
        m->queue_restart_pending = true;
        ipc_send(m->queue.ipc_fd, IPC_STOP, NULL, 0);
    } else {
        worker_start(m, &m->queue);
    }
}

static void on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct master *m = arg;
    (void)fd;
    (void)what;
    log_warning("workers still running after the shutdown deadline; killing them");
    if (m->smtpd.pid > 0)
        kill(m->smtpd.pid, SIGKILL);
    if (m->queue.pid > 0)
        kill(m->queue.pid, SIGKILL);
    for (size_t i = 0; i < MAX_RETIRING; i++)
        if (m->retiring[i].pid > 0)
            kill(m->retiring[i].pid, SIGKILL);
}

static void shutdown_begin(struct master *m, const char *why)
{
    if (m->state == MASTER_DRAINING)
        return;
    log_info("%s: stopping; sessions in DATA have %u s to finish", why, m->cfg.shutdown_timeout);
    m->state = MASTER_DRAINING;
    listeners_close(&m->listeners); /* the smtpd holds its own copies */
    if (m->smtpd.pid > 0)
        ipc_send(m->smtpd.ipc_fd, IPC_STOP, NULL, 0);
    if (m->queue.pid > 0)
        ipc_send(m->queue.ipc_fd, IPC_STOP, NULL, 0);
    for (size_t i = 0; i < MAX_RETIRING; i++)
        if (m->retiring[i].pid > 0)
            ipc_send(m->retiring[i].ipc_fd, IPC_STOP, NULL, 0);
    struct timeval tv = {.tv_sec = m->cfg.shutdown_timeout + 5};
    m->drain_timer = evtimer_new(m->base, on_drain_deadline, m);
    evtimer_add(m->drain_timer, &tv);
    if (!any_child_left(m))
        event_base_loopbreak(m->base);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct master *m = arg;
    (void)what;
    if (sig == SIGHUP && m->state == MASTER_RUNNING)
        reload(m);
    else if (sig == SIGTERM || sig == SIGINT)
        shutdown_begin(m, sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

static int install_signals(struct master *m)
{
    const int sigs[] = {SIGHUP, SIGTERM, SIGINT};
    for (size_t i = 0; i < 3; i++) {
        m->sig_events[i] = evsignal_new(m->base, sigs[i], on_signal, m);
        if (!m->sig_events[i] || evsignal_add(m->sig_events[i], NULL) < 0)
            return -1;
    }
    m->sig_events[3] = evsignal_new(m->base, SIGCHLD, on_sigchld, m);
    if (!m->sig_events[3] || evsignal_add(m->sig_events[3], NULL) < 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* ---- start-up --------------------------------------------------------- */

static int choose_log(const struct master *m)
{
    if (m->cfg.log_file[0]) {
        if (log_open(LOG_SINK_FILE, "master", m->cfg.log_file) < 0) {
            log_err("cannot open log_file %s: %s", m->cfg.log_file, strerror(errno));
            return -1;
        }
        return 0;
    }
    return log_open(m->opt.foreground ? LOG_SINK_STDERR : LOG_SINK_SYSLOG, "master", NULL);
}

static int go_background(void)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0)
        _exit(0);
    setsid();
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        if (null > STDERR_FILENO)
            close(null);
    }
    return chdir("/");
}

static int master_setup(struct master *m)
{
    char err[512];
    if (load_config(&m->opt, &m->cfg) < 0)
        return EX_CONFIG_;
    if (privsep_lookup(&m->cfg, &m->ra, err, sizeof err) < 0) {
        log_err("configuration error: %s", err);
        return EX_CONFIG_;
    }
    if (choose_log(m) < 0)
        return EX_CONFIG_;
    if (!m->ra.jailed)
        log_warning("not started as root: the workers run without chroot and as uid %ld, "
                    "not as %s (fine for trying jailmail out, never for production)",
                    (long)m->ra.uid, m->cfg.run_as_user);
    if (prepare_jail_dirs(m) < 0)
        return EX_CONFIG_;
    raise_fd_limit(&m->cfg);
    if (listeners_open(&m->listeners, &m->cfg, NULL, err, sizeof err) < 0) {
        log_err("%s", err);
        return EX_OSERR_;
    }
    return EX_OK_;
}

static void master_init(struct master *m, const struct master_options *opt)
{
    memset(m, 0, sizeof *m);
    m->opt = *opt;
    m->smtpd = (struct worker){.owner = m, .kind = WORKER_SMTPD, .name = "smtpd", .ipc_fd = -1};
    m->queue = (struct worker){.owner = m, .kind = WORKER_QUEUE, .name = "queue", .ipc_fd = -1};
    for (size_t i = 0; i < MAX_RETIRING; i++)
        m->retiring[i].ipc_fd = -1;
}

int master_main(const struct master_options *opt)
{
    static struct master m; /* one per process; static keeps it off the stack */
    master_init(&m, opt);
    int rc = master_setup(&m);
    if (rc != EX_OK_)
        return rc;
    if (!opt->foreground && go_background() < 0) {
        log_err("cannot go to the background: %s", strerror(errno));
        return EX_OSERR_;
    }
    m.base = event_base_new();
    if (!m.base || install_signals(&m) < 0) {
        log_err("cannot set up the event loop");
        return EX_SOFTWARE_;
    }
    log_info("starting: %zu listening socket(s), queue %s, queue run every %u s", m.listeners.n,
             m.qdir_outside, m.cfg.queue_interval);
    worker_start(&m, &m.queue);
    worker_start(&m, &m.smtpd);
    event_base_dispatch(m.base);
    log_info("stopped");
    return EX_OK_;
}
