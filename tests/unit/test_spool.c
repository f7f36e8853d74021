/* Unit tests of the spool writer (spool.c) with a real event loop, a real
 * commit thread and a fresh queue directory per test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "queue.h"
#include "spool.h"

#define MANY 200

struct fixture {
    char qdir[64];
    struct event_base *base;
};

/* What one commit reported. */
struct outcome {
    int calls;
    int ok;
    char err[256];
};

static int total_calls; /* of on_done, in this test */

static void on_done(void *arg, int ok, const char *err)
{
    struct outcome *o = arg;
    total_calls++;
    o->calls++;
    o->ok = ok;
    snprintf(o->err, sizeof o->err, "%s", err ? err : "(null)");
}

static void rm_rf(const char *path)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    total_calls = 0;
    snprintf(f->qdir, sizeof f->qdir, "/tmp/jm-test-spool-XXXXXX");
    char err[256];
    if (!mkdtemp(f->qdir) || queue_prepare_dirs(f->qdir, err, sizeof err) < 0)
        return -1;
    f->base = event_base_new();
    if (!f->base || spool_init(f->base, f->qdir, err, sizeof err) < 0) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    spool_shutdown();
    event_base_free(f->base);
    rm_rf(f->qdir);
    free(f);
    return 0;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs the loop until *count reaches want, or fails after 20 s. */
static void run_until(struct event_base *base, const int *count, int want)
{
    struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 50 * 1000};
    assert_non_null(tick);
    event_add(tick, &tv);
    time_t deadline = time(NULL) + 20;
    while (*count < want && time(NULL) < deadline)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(tick);
    if (*count < want)
        fail_msg("only %d of %d commits reported", *count, want);
}

static size_t count_entries(const char *qdir, const char *sub)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", qdir, sub);
    assert_true(n > 0 && n < (int)sizeof path);
    DIR *d = opendir(path);
    assert_non_null(d);
    size_t count = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            count++;
    closedir(d);
    return count;
}

static char *read_whole(const char *qdir, const char *sub, const char *name, size_t *len)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s/%s", qdir, sub, name);
    assert_true(n > 0 && n < (int)sizeof path);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return NULL;
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    char *buf = malloc((size_t)st.st_size + 1);
    assert_non_null(buf);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *len = got;
    return buf;
}

static struct queue_envelope make_env(struct queue_rcpt *rcpts, size_t n)
{
    return (struct queue_envelope){
        .arrival = 1700000000,
        .client = "192.0.2.7",
        .client_name = "",
        .helo = "client.example.net",
        .proto = "ESMTP",
        .body_type = "7BIT",
        .msgid = "",
        .sender = "alice@example.net",
        .rcpts = rcpts,
        .nrcpts = n,
    };
}

/* The file msg/<qid> must hold a parsable envelope with this sender and
 * exactly `body` after it. */
static void check_message(const char *qdir, const char *qid, const char *sender, const char *body,
                          size_t body_len)
{
    size_t len;
    char *file = read_whole(qdir, "msg", qid, &len);
    if (!file)
        fail_msg("msg/%s missing", qid);
    struct queue_envelope env;
    char err[256];
    if (queue_parse_envelope(file, len, &env, err, sizeof err) < 0)
        fail_msg("msg/%s: %s", qid, err);
    assert_string_equal(env.qid, qid);
    assert_string_equal(env.sender, sender);
    assert_int_equal(len - (size_t)env.data_offset, body_len);
    assert_memory_equal(file + env.data_offset, body, body_len);
    queue_envelope_free(&env);
    free(file);
}

static void test_commit_one(void **state)
{
    struct fixture *f = *state;
    struct queue_rcpt r[2] = {{.addr = "bob@example.org", .status = RCPT_PENDING},
                              {.addr = "carol@example.org", .status = RCPT_PENDING}};
    struct queue_envelope env = make_env(r, 2);
    char err[256];
    struct spool *sp = spool_open(&env, err, sizeof err);
    if (!sp)
        fail_msg("spool_open: %s", err);
    assert_true(queue_id_valid(spool_qid(sp), strlen(spool_qid(sp))));
    assert_string_equal(env.qid, spool_qid(sp)); /* written into the envelope */
    assert_int_equal(count_entries(f->qdir, "tmp"), 1);
    const char body[] = "Subject: test\r\n\r\nHello.\r\n";
    assert_int_equal(spool_write(sp, body, 10), 0);
    assert_int_equal(spool_write(sp, body + 10, sizeof body - 11), 0);
    assert_int_equal(spool_write(sp, "", 0), 0);
    assert_int_equal(spool_size(sp), sizeof body - 1);
    char qid[QID_SIZE];
    memcpy(qid, spool_qid(sp), QID_SIZE);
    struct outcome o = {0};
    spool_commit(sp, on_done, &o);
    assert_int_equal(o.calls, 0); /* never from inside spool_commit */
    run_until(f->base, &o.calls, 1);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.ok, 1);
    assert_int_equal(count_entries(f->qdir, "tmp"), 0);
    assert_int_equal(count_entries(f->qdir, "msg"), 1);
    check_message(f->qdir, qid, "alice@example.net", body, sizeof body - 1);
    /* and the queue reads it back as the queue process would */
    struct queue_envelope back;
    assert_int_equal(queue_read_envelope(f->qdir, qid, &back, err, sizeof err), 0);
    assert_int_equal(back.nrcpts, 2);
    assert_string_equal(back.rcpts[1].addr, "carol@example.org");
    queue_envelope_free(&back);
    /* a few more loop turns: no second call */
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(o.calls, 1);
}

static void test_big_body(void **state)
{
    struct fixture *f = *state;
    struct queue_rcpt r[1] = {{.addr = "bob@example.org", .status = RCPT_PENDING}};
    struct queue_envelope env = make_env(r, 1);
    env.sender = ""; /* a bounce */
    size_t len = 5 * 1000 * 1000 + 17;
    char *body = malloc(len);
    assert_non_null(body);
    for (size_t i = 0; i < len; i++)
        body[i] = (char)('a' + i % 26);
    char err[256];
    struct spool *sp = spool_open(&env, err, sizeof err);
    assert_non_null(sp);
    /* pieces of every size: tiny, around the buffer size, bigger than it */
    const size_t sizes[] = {1, 7, 65535, 65536, 65537, 200000, 3, 131072};
    size_t pos = 0;
    for (size_t i = 0; pos < len; i++) {
        size_t n = sizes[i % (sizeof sizes / sizeof sizes[0])];
        if (n > len - pos)
            n = len - pos;
        assert_int_equal(spool_write(sp, body + pos, n), 0);
        pos += n;
    }
    assert_int_equal(spool_size(sp), len);
    char qid[QID_SIZE];
    memcpy(qid, spool_qid(sp), QID_SIZE);
    struct outcome o = {0};
    spool_commit(sp, on_done, &o);
    run_until(f->base, &o.calls, 1);
    assert_int_equal(o.ok, 1);
    check_message(f->qdir, qid, "", body, len);
    free(body);
}

static void test_many_commits(void **state)
{
    struct fixture *f = *state;
    struct spool *sp[MANY];
    char qids[MANY][QID_SIZE];
    char bodies[MANY][64];
    char senders[MANY][64];
    struct outcome o[MANY];
    memset(o, 0, sizeof o);
    for (int i = 0; i < MANY; i++) {
        char rcpt[64];
        snprintf(rcpt, sizeof rcpt, "user%d@example.org", i);
        snprintf(senders[i], sizeof senders[i], "sender%d@example.net", i);
        struct queue_rcpt r = {.addr = rcpt, .status = RCPT_PENDING};
        struct queue_envelope env = make_env(&r, 1);
        env.sender = senders[i];
        char err[256];
        sp[i] = spool_open(&env, err, sizeof err);
        if (!sp[i])
            fail_msg("spool_open %d: %s", i, err);
        memcpy(qids[i], spool_qid(sp[i]), QID_SIZE);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(qids[i], qids[j]);
        snprintf(bodies[i], sizeof bodies[i], "Subject: %d\r\n\r\nmessage %d\r\n", i, i);
        assert_int_equal(spool_write(sp[i], bodies[i], strlen(bodies[i])), 0);
    }
    assert_int_equal(count_entries(f->qdir, "tmp"), MANY);
    for (int i = 0; i < MANY; i++)
        spool_commit(sp[i], on_done, &o[i]);
    run_until(f->base, &total_calls, MANY);
    /* run a little more: late duplicates would show up here */
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    for (int i = 0; i < MANY; i++) {
        if (o[i].calls != 1 || !o[i].ok)
            fail_msg("commit %d: %d calls, ok=%d (%s)", i, o[i].calls, o[i].ok, o[i].err);
        check_message(f->qdir, qids[i], senders[i], bodies[i], strlen(bodies[i]));
    }
    assert_int_equal(count_entries(f->qdir, "tmp"), 0);
    assert_int_equal(count_entries(f->qdir, "msg"), MANY);
}

static void test_abort(void **state)
{
    struct fixture *f = *state;
    struct queue_rcpt r[1] = {{.addr = "bob@example.org", .status = RCPT_PENDING}};
    struct queue_envelope env = make_env(r, 1);
    char err[256];
    struct spool *sp = spool_open(&env, err, sizeof err);
    assert_non_null(sp);
    assert_int_equal(spool_write(sp, "partial", 7), 0);
    assert_int_equal(count_entries(f->qdir, "tmp"), 1);
    spool_abort(sp);
    spool_abort(NULL);
    assert_int_equal(count_entries(f->qdir, "tmp"), 0);
    assert_int_equal(count_entries(f->qdir, "msg"), 0);
}

static void test_rename_conflict(void **state)
{
    struct fixture *f = *state;
    struct queue_rcpt r[1] = {{.addr = "bob@example.org", .status = RCPT_PENDING}};
    struct queue_envelope env = make_env(r, 1);
    char err[256];
    struct spool *sp = spool_open(&env, err, sizeof err);
    assert_non_null(sp);
    assert_int_equal(spool_write(sp, "new message\r\n", 13), 0);
    /* another file took the name in msg/ meanwhile: it must not be replaced */
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/msg/%s", f->qdir, spool_qid(sp));
    assert_true(n > 0 && n < (int)sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "older", 5), 5);
    close(fd);
    char qid[QID_SIZE];
    memcpy(qid, spool_qid(sp), QID_SIZE);
    struct outcome o = {0};
    spool_commit(sp, on_done, &o);
    run_until(f->base, &o.calls, 1);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.ok, 0);
    assert_non_null(strstr(o.err, "rename"));
    assert_int_equal(count_entries(f->qdir, "tmp"), 0);
    size_t len;
    char *kept = read_whole(f->qdir, "msg", qid, &len);
    assert_non_null(kept);
    assert_int_equal(len, 5);
    assert_memory_equal(kept, "older", 5);
    free(kept);
}

static void test_conflict_in_a_batch(void **state)
{
    struct fixture *f = *state;
    /* one bad commit among good ones fails alone */
    struct spool *sp[5];
    struct outcome o[5];
    memset(o, 0, sizeof o);
    struct queue_rcpt r[1] = {{.addr = "bob@example.org", .status = RCPT_PENDING}};
    char err[256];
    for (int i = 0; i < 5; i++) {
        struct queue_envelope env = make_env(r, 1);
        sp[i] = spool_open(&env, err, sizeof err);
        assert_non_null(sp[i]);
        assert_int_equal(spool_write(sp[i], "m\r\n", 3), 0);
    }
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/msg/%s", f->qdir, spool_qid(sp[2]));
    assert_true(n > 0 && n < (int)sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    for (int i = 0; i < 5; i++)
        spool_commit(sp[i], on_done, &o[i]);
    run_until(f->base, &total_calls, 5);
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(o[i].calls, 1);
        assert_int_equal(o[i].ok, i == 2 ? 0 : 1);
    }
    assert_int_equal(count_entries(f->qdir, "tmp"), 0);
    assert_int_equal(count_entries(f->qdir, "msg"), 5);
}

static void test_invalid_envelope(void **state)
{
    struct fixture *f = *state;
    struct queue_rcpt r[1] = {{.addr = "bob@example.org\r\nrcpt - evil@x", .status = '-'}};
    struct queue_envelope env = make_env(r, 1);
    char err[256] = "";
    assert_null(spool_open(&env, err, sizeof err));
    assert_true(err[0] != '\0');
    env = make_env(r, 0);
    assert_null(spool_open(&env, err, sizeof err));
    assert_int_equal(count_entries(f->qdir, "tmp"), 0);
    assert_int_equal(count_entries(f->qdir, "msg"), 0);
}

static void test_big_envelope(void **state)
{
    struct fixture *f = *state;
    /* more recipients than fit in the write buffer */
    enum { N = 1000 };
    struct queue_rcpt *r = calloc(N, sizeof *r);
    char(*addrs)[QUEUE_ADDR_MAX] = calloc(N, QUEUE_ADDR_MAX);
    assert_non_null(r);
    assert_non_null(addrs);
    for (int i = 0; i < N; i++) {
        memset(addrs[i], 'x', 300);
        snprintf(addrs[i] + 300, QUEUE_ADDR_MAX - 300, "%d@example.org", i);
        r[i] = (struct queue_rcpt){.addr = addrs[i], .status = RCPT_PENDING};
    }
    struct queue_envelope env = make_env(r, N);
    char err[256];
    struct spool *sp = spool_open(&env, err, sizeof err);
    if (!sp)
        fail_msg("%s", err);
    assert_int_equal(spool_write(sp, "body\r\n", 6), 0);
    char qid[QID_SIZE];
    memcpy(qid, spool_qid(sp), QID_SIZE);
    struct outcome o = {0};
    spool_commit(sp, on_done, &o);
    run_until(f->base, &o.calls, 1);
    assert_int_equal(o.ok, 1);
    struct queue_envelope back;
    assert_int_equal(queue_read_envelope(f->qdir, qid, &back, err, sizeof err), 0);
    assert_int_equal(back.nrcpts, N);
    assert_string_equal(back.rcpts[N - 1].addr, addrs[N - 1]);
    queue_envelope_free(&back);
    check_message(f->qdir, qid, "alice@example.net", "body\r\n", 6);
    free(addrs);
    free(r);
}

static void test_scan_spares_open_spool(void **state)
{
    struct fixture *f = *state;
    /* a queue process starting while a message is received leaves it alone */
    struct queue_rcpt r[1] = {{.addr = "bob@example.org", .status = RCPT_PENDING}};
    struct queue_envelope env = make_env(r, 1);
    char err[256];
    struct spool *sp = spool_open(&env, err, sizeof err);
    assert_non_null(sp);
    assert_int_equal(spool_write(sp, "x\r\n", 3), 0);
    assert_int_equal(queue_scan(f->qdir, NULL, NULL), 0);
    assert_int_equal(count_entries(f->qdir, "tmp"), 1);
    struct outcome o = {0};
    spool_commit(sp, on_done, &o);
    run_until(f->base, &o.calls, 1);
    assert_int_equal(o.ok, 1);
    assert_int_equal(queue_scan(f->qdir, NULL, NULL), 1);
}

static void test_shutdown_delivers_pending(void **state)
{
    struct fixture *f = *state;
    struct queue_rcpt r[1] = {{.addr = "bob@example.org", .status = RCPT_PENDING}};
    struct outcome o[3];
    memset(o, 0, sizeof o);
    char err[256];
    for (int i = 0; i < 3; i++) {
        struct queue_envelope env = make_env(r, 1);
        struct spool *sp = spool_open(&env, err, sizeof err);
        assert_non_null(sp);
        assert_int_equal(spool_write(sp, "m\r\n", 3), 0);
        spool_commit(sp, on_done, &o[i]);
    }
    /* the loop never runs: spool_shutdown itself reports */
    spool_shutdown();
    for (int i = 0; i < 3; i++) {
        assert_int_equal(o[i].calls, 1);
        assert_int_equal(o[i].ok, 1);
    }
    assert_int_equal(count_entries(f->qdir, "msg"), 3);
    assert_int_equal(count_entries(f->qdir, "tmp"), 0);
    /* after shutdown nothing opens; a second shutdown is harmless */
    struct queue_envelope env = make_env(r, 1);
    assert_null(spool_open(&env, err, sizeof err));
    spool_shutdown();
    /* and the spool can start again (teardown shuts it down) */
    assert_int_equal(spool_init(f->base, f->qdir, err, sizeof err), 0);
    assert_int_equal(spool_init(f->base, f->qdir, err, sizeof err), -1);
}

static void test_write_error(void **state)
{
    struct fixture *f = *state;
    /* a file size limit makes write() fail with EFBIG part way */
    struct rlimit old, small = {.rlim_cur = 150000, .rlim_max = RLIM_INFINITY};
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small.rlim_max = old.rlim_max;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct queue_rcpt r[1] = {{.addr = "bob@example.org", .status = RCPT_PENDING}};
    struct queue_envelope env = make_env(r, 1);
    char err[256];
    struct spool *sp = spool_open(&env, err, sizeof err);
    assert_non_null(sp);
    char chunk[10000];
    memset(chunk, 'z', sizeof chunk);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    int rc = 0;
    for (int i = 0; i < 40 && rc == 0; i++)
        rc = spool_write(sp, chunk, sizeof chunk);
    int saved = errno;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    assert_int_equal(rc, -1);
    assert_int_equal(saved, EFBIG);
    /* the error sticks */
    errno = 0;
    assert_int_equal(spool_write(sp, "x", 1), -1);
    assert_int_equal(errno, EFBIG);
    /* committing anyway fails and cleans up */
    struct outcome o = {0};
    spool_commit(sp, on_done, &o);
    run_until(f->base, &o.calls, 1);
    assert_int_equal(o.ok, 0);
    assert_non_null(strstr(o.err, "write"));
    assert_int_equal(count_entries(f->qdir, "tmp"), 0);
    assert_int_equal(count_entries(f->qdir, "msg"), 0);
}

static void test_init_errors(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    assert_non_null(base);
    char err[256] = "";
    /* the fixture's spool is running: a second one is refused */
    assert_int_equal(spool_init(base, "/tmp", err, sizeof err), -1);
    spool_shutdown();
    assert_int_equal(spool_init(base, "/nonexistent/jm-queue", err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/jm-queue"));
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rename_conflict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflict_in_a_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_envelope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_envelope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_spares_open_spool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_delivers_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
