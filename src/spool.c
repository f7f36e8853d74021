/* spool.c - the spool writer: tmp/<qid>, then a group commit into msg/.
 *
 * Threads: the event loop thread owns every struct spool until spool_commit;
 * from then on the commit thread owns it until it posts the result back; then
 * the loop thread again, which calls done() and frees it. The two lists that
 * hand spools over (pending: loop -> thread, finished: thread -> loop) are
 * protected by one mutex. The thread wakes the loop with an eventfd; libevent
 * is only ever touched by the loop thread.
 *
 * Group commit: the thread takes every pending spool at once, fdatasyncs and
 * renames each (never over an existing file), then fsyncs msg/ once for the
 * whole batch. While it does so, new commits gather for the next batch.
 *
 * A file in tmp/ is kept locked (flock) by its writer from creation to the
 * end of its commit, so that queue_scan in another process never removes a
 * message that is still being received.
 *
 * Shutdown: spool_shutdown lets the thread finish every pending commit, then
 * calls the done() of every commit whose result has not been delivered yet,
 * directly from spool_shutdown (the loop may no longer run). Every done() is
 * thus called exactly once.
 */
#include "spool.h"
#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define SPOOL_BUFFER (64 * 1024)
#define SPOOL_ERR_MAX 160
#define QID_TRIES 64

enum spool_result {
    RESULT_NONE,   /* not committed yet */
    RESULT_OK,     /* in msg/, on stable storage */
    RESULT_FAILED, /* not in msg/; err says why; tmp file removed */
};

struct spool {
    struct spool *next;
    int fd;
    char qid[QID_SIZE];
    size_t size;     /* message bytes taken by spool_write */
    size_t buffered; /* bytes in buf not yet written */
    int write_errno; /* first write error, 0 if none */
    enum spool_result result;
    char err[SPOOL_ERR_MAX];
    spool_done_fn done;
    void *arg;
    char buf[SPOOL_BUFFER];
};

struct spool_list {
    struct spool *head, *tail;
};

static struct {
    bool ready;
    struct event_base *base;
    int tmp_dir, msg_dir;
    int wake_fd; /* eventfd: the commit thread tells the loop "results ready" */
    struct event *wake_ev;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct spool_list pending;  /* loop -> thread */
    struct spool_list finished; /* thread -> loop */
    bool stopping;
    unsigned counter; /* for queue ids */
} S = {.tmp_dir = -1, .msg_dir = -1, .wake_fd = -1};

/* ------------------------------------------------------------ lists */

static void list_append(struct spool_list *l, struct spool *sp)
{
    sp->next = NULL;
    if (l->tail)
        l->tail->next = sp;
    else
        l->head = sp;
    l->tail = sp;
}

static void list_append_all(struct spool_list *l, struct spool *first)
{
    while (first) {
        struct spool *next = first->next;
        list_append(l, first);
        first = next;
    }
}

static struct spool *list_take_all(struct spool_list *l)
{
    struct spool *head = l->head;
    l->head = l->tail = NULL;
    return head;
}

/* ------------------------------------------------------------ renaming */

/* ------------------------------------------------------- the commit thread */

static void fail_spool(struct spool *sp, const char *what, int error)
{
    sp->result = RESULT_FAILED;
    snprintf(sp->err, sizeof sp->err, "%s: %s", what, strerror(error));
}

/* Closes the file and, when it did not reach msg/, removes tmp/<qid>. */
static void close_spool_file(struct spool *sp)
{
    if (sp->result != RESULT_OK)
        unlinkat(S.tmp_dir, sp->qid, 0);
    if (sp->fd >= 0)
        close(sp->fd); /* drops the lock, after the unlink */
    sp->fd = -1;
}

/* fdatasync and rename of one message; result stays RESULT_NONE on success
 * until its directory entry is synced too. */
static void sync_and_rename(struct spool *sp)
{
    if (sp->result == RESULT_FAILED)
        return;
    if (fdatasync(sp->fd) < 0)
        fail_spool(sp, "fdatasync", errno);
    else if (queue_rename_noreplace(S.tmp_dir, sp->qid, S.msg_dir, sp->qid) < 0)
        fail_spool(sp, "rename into msg/", errno);
}

/* After the msg/ fsync: every renamed message is committed, or, if the fsync
 * failed, taken out of msg/ again so that a refused message is not sent. */
static void settle_batch(struct spool *batch, int dir_sync_errno)
{
    for (struct spool *sp = batch; sp; sp = sp->next) {
        if (sp->result == RESULT_FAILED)
            continue;
        if (dir_sync_errno == 0) {
            sp->result = RESULT_OK;
            continue;
        }
        unlinkat(S.msg_dir, sp->qid, 0);
        fail_spool(sp, "fsync of msg/", dir_sync_errno);
    }
}

static void commit_batch(struct spool *batch)
{
    /* start the write-back of every file first, so that the disk works on
     * all of them while fdatasync waits for the first */
    for (struct spool *sp = batch; sp; sp = sp->next)
        if (sp->result != RESULT_FAILED)
            sync_file_range(sp->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    size_t renamed = 0;
    for (struct spool *sp = batch; sp; sp = sp->next) {
        sync_and_rename(sp);
        if (sp->result != RESULT_FAILED)
            renamed++;
    }
    int dir_sync_errno = 0;
    if (renamed && fsync(S.msg_dir) < 0)
        dir_sync_errno = errno ? errno : EIO;
    settle_batch(batch, dir_sync_errno);
    for (struct spool *sp = batch; sp; sp = sp->next)
        close_spool_file(sp);
}

static void post_results(struct spool *batch)
{
    pthread_mutex_lock(&S.lock);
    list_append_all(&S.finished, batch);
    pthread_mutex_unlock(&S.lock);
    uint64_t one = 1;
    while (write(S.wake_fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

static void *commit_thread(void *unused)
{
    (void)unused;
    for (;;) {
        pthread_mutex_lock(&S.lock);
        while (!S.pending.head && !S.stopping)
            pthread_cond_wait(&S.cond, &S.lock);
        struct spool *batch = list_take_all(&S.pending);
        pthread_mutex_unlock(&S.lock);
        if (!batch)
            return NULL; /* stopping, and nothing left to commit */
        commit_batch(batch);
        post_results(batch);
    }
}

/* ----------------------------------------------------- the loop side */

static void deliver_finished(void)
{
    pthread_mutex_lock(&S.lock);
    struct spool *sp = list_take_all(&S.finished);
    pthread_mutex_unlock(&S.lock);
    while (sp) {
        struct spool *next = sp->next;
        sp->done(sp->arg, sp->result == RESULT_OK, sp->result == RESULT_OK ? "" : sp->err);
        free(sp);
        sp = next;
    }
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    uint64_t count;
    while (read(fd, &count, sizeof count) < 0 && errno == EINTR)
        ;
    deliver_finished();
}

static void release_resources(void)
{
    if (S.wake_ev)
        event_free(S.wake_ev);
    S.wake_ev = NULL;
    if (S.wake_fd >= 0)
        close(S.wake_fd);
    if (S.tmp_dir >= 0)
        close(S.tmp_dir);
    if (S.msg_dir >= 0)
        close(S.msg_dir);
    S.wake_fd = S.tmp_dir = S.msg_dir = -1;
}

static int open_dir(const char *qdir, const char *sub, char *err, size_t errlen)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", qdir, sub);
    if (n < 0 || (size_t)n >= sizeof path) {
        errno = ENAMETOOLONG;
        err_set(err, errlen, "%s/%s: path too long", qdir, sub);
        return -1;
    }
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        err_set(err, errlen, "open %s: %s", path, strerror(errno));
    return fd;
}

static int start_thread(char *err, size_t errlen)
{
    S.stopping = false;
    pthread_mutex_init(&S.lock, NULL);
    pthread_cond_init(&S.cond, NULL);
    /* the thread blocks every signal: they are the event loop's business */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&S.thread, NULL, commit_thread, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&S.cond);
        pthread_mutex_destroy(&S.lock);
        errno = rc;
        err_set(err, errlen, "cannot start the commit thread: %s", strerror(rc));
        return -1;
    }
    return 0;
}

int spool_init(struct event_base *base, const char *qdir, char *err, size_t errlen)
{
    if (S.ready) {
        err_set(err, errlen, "spool already initialised");
        errno = EBUSY;
        return -1;
    }
    S.base = base;
    S.tmp_dir = open_dir(qdir, "tmp", err, errlen);
    S.msg_dir = S.tmp_dir < 0 ? -1 : open_dir(qdir, "msg", err, errlen);
    if (S.msg_dir < 0) {
        release_resources();
        return -1;
    }
    S.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (S.wake_fd >= 0)
        S.wake_ev = event_new(base, S.wake_fd, EV_READ | EV_PERSIST, on_wake, NULL);
    if (!S.wake_ev || event_add(S.wake_ev, NULL) < 0) {
        err_set(err, errlen, "cannot set up the commit event: %s", strerror(errno));
        release_resources();
        return -1;
    }
    if (start_thread(err, errlen) < 0) {
        release_resources();
        return -1;
    }
    S.ready = true;
    return 0;
}

void spool_shutdown(void)
{
    if (!S.ready)
        return;
    pthread_mutex_lock(&S.lock);
    S.stopping = true;
    pthread_cond_signal(&S.cond);
    pthread_mutex_unlock(&S.lock);
    pthread_join(S.thread, NULL);
    S.ready = false;
    deliver_finished(); /* results the loop has not picked up yet */
    pthread_cond_destroy(&S.cond);
    pthread_mutex_destroy(&S.lock);
    release_resources();
    S.base = NULL;
}

/* ------------------------------------------------------ writing a message */

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = EIO;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int flush(struct spool *sp)
{
    if (sp->buffered == 0)
        return 0;
    int rc = write_all(sp->fd, sp->buf, sp->buffered);
    sp->buffered = 0;
    return rc;
}

/* Buffered write; a piece larger than the buffer goes straight to the file. */
static int append(struct spool *sp, const char *p, size_t len)
{
    if (len > sizeof sp->buf - sp->buffered && flush(sp) < 0)
        return -1;
    if (len >= sizeof sp->buf)
        return write_all(sp->fd, p, len);
    memcpy(sp->buf + sp->buffered, p, len);
    sp->buffered += len;
    return 0;
}

/* Creates tmp/<qid> exclusively and locks it, with a fresh qid per try. A qid
 * already in msg/ is skipped too, so that the final rename cannot collide. */
static int create_tmp(struct spool *sp, char *err, size_t errlen)
{
    for (int tries = 0; tries < QID_TRIES; tries++) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        queue_make_id(sp->qid, (int64_t)now.tv_sec, now.tv_nsec / 1000, (unsigned)getpid(),
                      S.counter++);
        if (faccessat(S.msg_dir, sp->qid, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
            continue;
        sp->fd = openat(S.tmp_dir, sp->qid, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
        if (sp->fd < 0 && errno == EEXIST)
            continue;
        if (sp->fd < 0) {
            err_set(err, errlen, "create tmp/%s: %s", sp->qid, strerror(errno));
            return -1;
        }
        /* A queue scan may lock and unlink the new file between our open and
         * our lock; then our lock succeeds on a file that has no name any
         * more. Only a file that still has its link is ours to keep. */
        struct stat st;
        if (flock(sp->fd, LOCK_EX | LOCK_NB) == 0 && fstat(sp->fd, &st) == 0 && st.st_nlink > 0)
            return 0;
        close(sp->fd); /* a queue scan got it first and removes it: next id */
        sp->fd = -1;
    }
    err_set(err, errlen, "no free queue id after %d tries", QID_TRIES);
    errno = EEXIST;
    return -1;
}

/* An upper bound of the formatted envelope's size (strnlen keeps it finite). */
static size_t envelope_bound(const struct queue_envelope *env)
{
    const char *const fields[] = {env->client,    env->client_name, env->helo,  env->proto,
                                  env->body_type, env->msgid,       env->sender};
    size_t n = 128;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        n += 16 + (fields[i] ? strnlen(fields[i], QUEUE_FIELD_MAX) : 0);
    for (size_t i = 0; env->rcpts && i < env->nrcpts && n <= QUEUE_ENVELOPE_MAX; i++)
        n += 8 + (env->rcpts[i].addr ? strnlen(env->rcpts[i].addr, QUEUE_ADDR_MAX) : 0);
    return n < QUEUE_ENVELOPE_MAX ? n : QUEUE_ENVELOPE_MAX;
}

static int write_envelope(struct spool *sp, struct queue_envelope *env, char *err, size_t errlen)
{
    memcpy(env->qid, sp->qid, QID_SIZE);
    size_t bound = envelope_bound(env);
    char *buf = bound <= sizeof sp->buf ? sp->buf : malloc(bound);
    if (!buf) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    ssize_t n = queue_format_envelope(env, buf, bound);
    int rc = 0;
    if (n < 0) {
        errno = EINVAL;
        err_set(
            err, errlen,
            "invalid envelope (a field is empty, too long or holds CR/LF, or too many recipients)");
        rc = -1;
    } else if (buf == sp->buf) {
        sp->buffered = (size_t)n;
    } else if (write_all(sp->fd, buf, (size_t)n) < 0) {
        err_set(err, errlen, "write tmp/%s: %s", sp->qid, strerror(errno));
        rc = -1;
    }
    if (buf != sp->buf)
        free(buf);
    return rc;
}

struct spool *spool_open(struct queue_envelope *env, char *err, size_t errlen)
{
    if (!S.ready) {
        errno = EINVAL;
        err_set(err, errlen, "spool not initialised");
        return NULL;
    }
    struct spool *sp = malloc(sizeof *sp);
    if (!sp) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    memset(sp, 0, offsetof(struct spool, buf)); /* the 64 KiB buffer needs no zeroing */
    sp->fd = -1;
    if (create_tmp(sp, err, errlen) < 0) {
        free(sp);
        return NULL;
    }
    if (write_envelope(sp, env, err, errlen) < 0) {
        int saved = errno;
        spool_abort(sp);
        errno = saved;
        return NULL;
    }
    return sp;
}

const char *spool_qid(const struct spool *sp)
{
    return sp->qid;
}

int spool_write(struct spool *sp, const void *buf, size_t len)
{
    if (sp->write_errno) {
        errno = sp->write_errno;
        return -1;
    }
    if (append(sp, buf, len) < 0) {
        sp->write_errno = errno;
        return -1;
    }
    sp->size += len;
    return 0;
}

size_t spool_size(const struct spool *sp)
{
    return sp->size;
}

void spool_abort(struct spool *sp)
{
    if (!sp)
        return;
    if (S.tmp_dir >= 0)
        unlinkat(S.tmp_dir, sp->qid, 0);
    if (sp->fd >= 0)
        close(sp->fd);
    free(sp);
}

void spool_commit(struct spool *sp, spool_done_fn done, void *arg)
{
    sp->done = done;
    sp->arg = arg;
    if (sp->write_errno)
        fail_spool(sp, "write", sp->write_errno);
    else if (flush(sp) < 0)
        fail_spool(sp, "write", errno);
    if (!S.ready) {
        /* after spool_shutdown: no thread, no loop event; answer now (the
         * tmp file, if left, goes at the next queue scan) */
        char why[SPOOL_ERR_MAX];
        snprintf(why, sizeof why, "%s", sp->result == RESULT_FAILED ? sp->err : "spool shut down");
        spool_abort(sp);
        done(arg, 0, why);
        return;
    }
    pthread_mutex_lock(&S.lock);
    list_append(&S.pending, sp);
    pthread_cond_signal(&S.cond);
    pthread_mutex_unlock(&S.lock);
}
