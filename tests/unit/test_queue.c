/* Unit tests of the queue file format and file operations (queue.c).
 * The format tests are pure; the file tests work in a fresh temporary queue
 * directory per test. */
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
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue.h"

#define QID_A "0AbCdEfGhIjKlM"
#define QID_B "0AbCdEfGhIjKlN"

/* xorshift32: a fixed, reproducible sequence */
static uint32_t rng_state = 2463534242u;
static uint32_t next_random(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* ------------------------------------------------------------ queue ids */

static void test_make_id(void **state)
{
    (void)state;
    char id[QID_SIZE];
    queue_make_id(id, 1700000000, 123456, 4242, 7);
    assert_int_equal(strlen(id), QID_LEN);
    assert_true(queue_id_valid(id, strlen(id)));
    /* seconds, then microseconds, then pid, then counter decide the order */
    char prev[QID_SIZE];
    const struct {
        int64_t sec;
        long usec;
        unsigned pid, counter;
    } seq[] = {
        {0, 0, 0, 0},
        {0, 0, 0, 1},
        {0, 0, 1, 0},
        {0, 1, 0, 0},
        {0, 999999, 3843, 3843},
        {1, 0, 0, 0},
        {61, 0, 0, 0},
        {62, 0, 0, 0},
        {1700000000, 5, 9, 9},
        {1700000001, 0, 0, 0},
        {4000000000LL, 0, 0, 0},
        {56800235583LL, 999999, 3843, 3843}, /* 62^6 - 1: the last second */
    };
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        queue_make_id(id, seq[i].sec, seq[i].usec, seq[i].pid, seq[i].counter);
        assert_true(queue_id_valid(id, QID_LEN));
        if (i > 0 && strcmp(prev, id) >= 0)
            fail_msg("id %zu (%s) does not sort after %s", i, id, prev);
        memcpy(prev, id, QID_SIZE);
    }
    queue_make_id(id, 0, 0, 0, 0);
    assert_string_equal(id, "00000000000000");
    queue_make_id(id, 62, 61, 62, 3843);
    assert_string_equal(id, "000010000z10zz");
}

static void test_id_valid(void **state)
{
    (void)state;
    assert_true(queue_id_valid("0123456789AZaz", 14));
    assert_false(queue_id_valid("0123456789AZa", 13));
    assert_false(queue_id_valid("0123456789AZazz", 15));
    assert_false(queue_id_valid("0123456789AZa-", 14));
    assert_false(queue_id_valid("0123456789AZa/", 14));
    assert_false(queue_id_valid("0123456789AZa.", 14));
    assert_false(queue_id_valid("..............", 14));
    assert_false(queue_id_valid("0123456789AZa\0", 14));
    assert_false(queue_id_valid("0123456789AZa\xc3", 14));
    assert_false(queue_id_valid(NULL, 14));
    assert_false(queue_id_valid("", 0));
}

/* ------------------------------------------------------- format and parse */

static struct queue_rcpt one_rcpt[] = {{.addr = "joe@example.org", .status = RCPT_PENDING}};

static struct queue_envelope sample_env(void)
{
    return (struct queue_envelope){
        .qid = QID_A,
        .arrival = 1700000000,
        .client = "192.0.2.7",
        .client_name = "mx.example.net",
        .helo = "mx.example.net",
        .proto = "ESMTP",
        .body_type = "8BITMIME",
        .msgid = "<abc@example.net>",
        .sender = "alice@example.net",
        .rcpts = one_rcpt,
        .nrcpts = 1,
    };
}

static const char sample_text[] = "jailmail-queue 1\n"
                                  "id " QID_A "\n"
                                  "arrival 1700000000\n"
                                  "client 192.0.2.7\n"
                                  "clientname mx.example.net\n"
                                  "helo mx.example.net\n"
                                  "proto ESMTP\n"
                                  "body 8BITMIME\n"
                                  "msgid <abc@example.net>\n"
                                  "sender alice@example.net\n"
                                  "rcpt - joe@example.org\n"
                                  "data\n";

static void test_format_exact(void **state)
{
    (void)state;
    struct queue_envelope env = sample_env();
    char buf[1024];
    ssize_t n = queue_format_envelope(&env, buf, sizeof buf);
    assert_int_equal(n, sizeof sample_text - 1);
    assert_memory_equal(buf, sample_text, (size_t)n);
    assert_int_equal(env.data_offset, n);
    assert_int_equal(buf[one_rcpt[0].status_offset], '-');
    assert_memory_equal(buf + one_rcpt[0].status_offset - 5, "rcpt -", 6);
    /* exactly big enough works, one byte less does not */
    assert_int_equal(queue_format_envelope(&env, buf, (size_t)n), n);
    assert_int_equal(queue_format_envelope(&env, buf, (size_t)n - 1), -1);
    assert_int_equal(queue_format_envelope(&env, buf, 0), -1);
}

/* A random value of len bytes: printable ASCII, spaces, UTF-8 and other
 * bytes >= 0x80, TAB; never CR, LF or NUL. */
static char *random_value(size_t len)
{
    char *s = malloc(len + 1);
    assert_non_null(s);
    for (size_t i = 0; i < len; i++) {
        uint32_t r = next_random();
        unsigned char c;
        switch (r % 4) {
        case 0:
            c = (unsigned char)(0x80 + (r >> 8) % 0x80);
            break;
        case 1:
            c = (r >> 8) % 8 == 0 ? '\t' : ' ';
            break;
        default:
            c = (unsigned char)(0x21 + (r >> 8) % 0x5e);
        }
        s[i] = (char)c;
    }
    s[len] = '\0';
    return s;
}

static size_t random_len(size_t max, bool may_be_empty)
{
    uint32_t r = next_random();
    size_t min = may_be_empty ? 0 : 1;
    switch (r % 5) {
    case 0:
        return min;
    case 1:
        return max - 1; /* the longest allowed */
    default:
        return min + (r >> 4) % 40;
    }
}

static void free_random_env(struct queue_envelope *e)
{
    free(e->client);
    free(e->client_name);
    free(e->helo);
    free(e->proto);
    free(e->msgid);
    free(e->sender);
    for (size_t i = 0; i < e->nrcpts; i++)
        free(e->rcpts[i].addr);
    free(e->rcpts);
}

static void random_env(struct queue_envelope *e, size_t nrcpts)
{
    static const char *const statuses = "-DF";
    memset(e, 0, sizeof *e);
    queue_make_id(e->qid, next_random(), (long)(next_random() % 1000000), next_random(),
                  next_random());
    e->arrival = next_random() % 3 == 0 ? 0 : (int64_t)next_random() * 1000;
    e->client = random_value(random_len(QUEUE_FIELD_MAX, false));
    e->client_name = random_value(random_len(QUEUE_FIELD_MAX, true));
    e->helo = random_value(random_len(QUEUE_FIELD_MAX, true));
    e->proto = random_value(random_len(QUEUE_FIELD_MAX, false));
    e->body_type = next_random() % 2 ? "7BIT" : "8BITMIME";
    e->msgid = random_value(random_len(QUEUE_FIELD_MAX, true));
    e->sender =
        next_random() % 4 == 0 ? random_value(0) : random_value(random_len(QUEUE_ADDR_MAX, true));
    e->rcpts = calloc(nrcpts, sizeof *e->rcpts);
    assert_non_null(e->rcpts);
    e->nrcpts = nrcpts;
    for (size_t i = 0; i < nrcpts; i++) {
        e->rcpts[i].addr = random_value(random_len(QUEUE_ADDR_MAX, false));
        e->rcpts[i].status = statuses[next_random() % 3];
    }
}

static void assert_env_equal(const struct queue_envelope *a, const struct queue_envelope *b)
{
    assert_string_equal(a->qid, b->qid);
    assert_int_equal(a->arrival, b->arrival);
    assert_string_equal(a->client, b->client);
    assert_string_equal(a->client_name, b->client_name);
    assert_string_equal(a->helo, b->helo);
    assert_string_equal(a->proto, b->proto);
    assert_string_equal(a->body_type, b->body_type);
    assert_string_equal(a->msgid, b->msgid);
    assert_string_equal(a->sender, b->sender);
    assert_int_equal(a->nrcpts, b->nrcpts);
    for (size_t i = 0; i < a->nrcpts; i++) {
        assert_string_equal(a->rcpts[i].addr, b->rcpts[i].addr);
        assert_int_equal(a->rcpts[i].status, b->rcpts[i].status);
        assert_int_equal(a->rcpts[i].status_offset, b->rcpts[i].status_offset);
    }
    assert_int_equal(a->data_offset, b->data_offset);
}

static void test_round_trip_many(void **state)
{
    (void)state;
    const size_t cap = 2 * 1000 * 1000;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (int round = 0; round < 400; round++) {
        size_t nrcpts = round % 50 == 49 ? 1000 : 1 + next_random() % 20;
        struct queue_envelope in, out;
        random_env(&in, nrcpts);
        ssize_t n = queue_format_envelope(&in, buf, cap);
        assert_true(n > 0);
        for (size_t i = 0; i < in.nrcpts; i++)
            assert_int_equal(buf[in.rcpts[i].status_offset], in.rcpts[i].status);
        /* message bytes after the envelope are not the parser's business */
        memcpy(buf + n, "data\nrcpt - x\r\n", 15);
        char err[128];
        if (queue_parse_envelope(buf, (size_t)n + 15, &out, err, sizeof err) < 0)
            fail_msg("round %d: %s", round, err);
        assert_env_equal(&in, &out);
        assert_int_equal(out.data_offset, n);
        queue_envelope_free(&out);
        free_random_env(&in);
    }
    free(buf);
}

static void test_null_sender_and_empty_fields(void **state)
{
    (void)state;
    struct queue_envelope env = sample_env();
    env.sender = "";
    env.client_name = NULL; /* NULL counts as empty where empty is allowed */
    env.helo = "";
    env.msgid = "";
    char buf[1024], err[128];
    ssize_t n = queue_format_envelope(&env, buf, sizeof buf);
    assert_true(n > 0);
    assert_non_null(memmem(buf, (size_t)n, "\nsender \nrcpt", 13));
    assert_non_null(memmem(buf, (size_t)n, "\nclientname \nhelo \n", 19));
    struct queue_envelope out;
    assert_int_equal(queue_parse_envelope(buf, (size_t)n, &out, err, sizeof err), 0);
    assert_string_equal(out.sender, "");
    assert_string_equal(out.client_name, "");
    assert_string_equal(out.msgid, "");
    queue_envelope_free(&out);
}

static void test_format_refusals(void **state)
{
    (void)state;
    char buf[4096];
    char too_long_field[QUEUE_FIELD_MAX + 1];
    char too_long_addr[QUEUE_ADDR_MAX + 1];
    memset(too_long_field, 'a', QUEUE_FIELD_MAX);
    too_long_field[QUEUE_FIELD_MAX] = '\0';
    memset(too_long_addr, 'a', QUEUE_ADDR_MAX);
    too_long_addr[QUEUE_ADDR_MAX] = '\0';
    struct queue_rcpt bad_rcpt[1];
    for (int c = 0; c < 19; c++) {
        struct queue_envelope env = sample_env();
        bad_rcpt[0] = one_rcpt[0];
        switch (c) {
        case 0:
            env.helo = "a\rb";
            break;
        case 1:
            env.helo = "a\nb";
            break;
        case 2:
            env.client = "";
            break;
        case 3:
            env.client = NULL;
            break;
        case 4:
            env.proto = "";
            break;
        case 5:
            env.body_type = "BINARYMIME";
            break;
        case 6:
            env.body_type = "7bit";
            break;
        case 7:
            env.sender = "a\n@b";
            break;
        case 8:
            env.msgid = too_long_field;
            break;
        case 9:
            env.sender = too_long_addr + 1;
            break; /* QUEUE_ADDR_MAX - 1: fits */
        case 10:
            env.sender = too_long_addr;
            break;
        case 11:
            env.nrcpts = 0;
            break;
        case 12:
            bad_rcpt[0].status = 'X';
            env.rcpts = bad_rcpt;
            break;
        case 13:
            bad_rcpt[0].addr = "";
            env.rcpts = bad_rcpt;
            break;
        case 14:
            bad_rcpt[0].addr = "x\r\ny";
            env.rcpts = bad_rcpt;
            break;
        case 15:
            memcpy(env.qid, "0AbCdEfGhIjK-M", QID_SIZE);
            break;
        case 16:
            env.arrival = -1;
            break;
        case 17:
            env.rcpts = NULL;
            break;
        case 18:
            env.body_type = NULL;
            break;
        }
        ssize_t want = c == 9 ? 1 : -1;
        ssize_t n = queue_format_envelope(&env, buf, sizeof buf);
        if ((want < 0) != (n < 0))
            fail_msg("case %d: format gave %zd", c, n);
    }
}

/* Each case: the sample text with one edit, and a word the error must hold. */
struct parse_case {
    const char *text;
    const char *why;
};

#define HEAD "jailmail-queue 1\nid " QID_A "\narrival 1700000000\n"
#define FIELDS                                                                                     \
    "client 192.0.2.7\nclientname x\nhelo x\nproto ESMTP\nbody 7BIT\nmsgid <m@x>\nsender a@b\n"

static const struct parse_case parse_cases[] = {
    {"", "version"},
    {"jailmail-queue 1", "version"},
    {"jailmail-queue 2\n", "version \"2\""},
    {"jailmail-queue 10\n", "version"},
    {"jailmail-queue \n", "version"},
    {"jailmail-queue 1 \n", "version"},
    {"jailmail-queue\n", "not a jailmail"},
    {"From alice Tue\n", "not a jailmail"},
    {"jailmail-queue 1\r\n", "version"},
    {"jailmail-queue 1\n", "id"},
    {"jailmail-queue 1\nid 0AbCdEfGhIjKl\n", "queue id"},
    {"jailmail-queue 1\nid 0AbCdEfGhIjKlMN\n", "queue id"},
    {"jailmail-queue 1\nid 0AbCdEfGhIjK/M\n", "queue id"},
    {"jailmail-queue 1\nqid " QID_A "\n", "id line"},
    {"jailmail-queue 1\nid  " QID_A "\n", "queue id"},
    {"jailmail-queue 1\nid " QID_A "\narrival \n", "arrival"},
    {"jailmail-queue 1\nid " QID_A "\narrival 01\n", "arrival"},
    {"jailmail-queue 1\nid " QID_A "\narrival -1\n", "arrival"},
    {"jailmail-queue 1\nid " QID_A "\narrival +1\n", "arrival"},
    {"jailmail-queue 1\nid " QID_A "\narrival 1x\n", "arrival"},
    {"jailmail-queue 1\nid " QID_A "\narrival 9223372036854775808\n", "range"},
    {"jailmail-queue 1\nid " QID_A "\narrival 99999999999999999999\n", "arrival"},
    {"jailmail-queue 1\nid " QID_A "\nclient x\n", "arrival"},
    {HEAD, "client"},
    {HEAD "client \n", "client is empty"},
    {HEAD "client\n", "client line"},
    {HEAD "client x\rx\n", "CR"},
    {HEAD "clientname x\n", "client line"},
    {HEAD "client x\nhelo x\n", "clientname line"},
    {HEAD "client x\nclientname x\nproto x\n", "helo line"},
    {HEAD "client x\nclientname x\nhelo x\nproto \n", "proto is empty"},
    {HEAD "client x\nclientname x\nhelo x\nproto ESMTP\nbody 8BIT\n", "body type"},
    {HEAD "client x\nclientname x\nhelo x\nproto ESMTP\nbody \n", "body is empty"},
    {HEAD "client x\nclientname x\nhelo x\nproto ESMTP\nbody 7BIT\nsender a@b\n", "msgid line"},
    {HEAD "client x\nclientname x\nhelo x\nproto ESMTP\nbody 7BIT\nmsgid x\nrcpt - a@b\n",
     "sender line"},
    {HEAD FIELDS, "data"},
    {HEAD FIELDS "data\n", "no recipients"},
    {HEAD FIELDS "rcpt - a@b\n", "data"},
    {HEAD FIELDS "rcpt - a@b", "data"},
    {HEAD FIELDS "rcpt - a@b\ndata", "data"},
    {HEAD FIELDS "rcpt - a@b\ndata \n", "rcpt or data"},
    {HEAD FIELDS "rcpt - a@b\nDATA\n", "rcpt or data"},
    {HEAD FIELDS "rcpt - a@b\ndata\r\n", "rcpt or data"},
    {HEAD FIELDS "rcpt X a@b\ndata\n", "status"},
    {HEAD FIELDS "rcpt d a@b\ndata\n", "status"},
    {HEAD FIELDS "rcpt -a@b\ndata\n", "status"},
    {HEAD FIELDS "rcpt -\ndata\n", "status"},
    {HEAD FIELDS "rcpt - \ndata\n", "empty recipient"},
    {HEAD FIELDS "rcpt  - a@b\ndata\n", "status"},
    {HEAD FIELDS "rcpt - a@b\r\ndata\n", "CR"},
    {HEAD FIELDS "rcpt - a@b\nsender x\ndata\n", "rcpt or data"},
    {HEAD FIELDS "rcpt - a@b\nrcpt\ndata\n", "rcpt or data"},
    {HEAD FIELDS "msgid x\nrcpt - a@b\ndata\n", "rcpt or data"},
    {HEAD FIELDS "\nrcpt - a@b\ndata\n", "rcpt or data"},
};

static void test_parse_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++) {
        const struct parse_case *c = &parse_cases[i];
        struct queue_envelope env;
        memset(&env, 0x5a, sizeof env); /* garbage in: the parser must not trust it */
        char err[160] = "";
        if (queue_parse_envelope(c->text, strlen(c->text), &env, err, sizeof err) == 0)
            fail_msg("case %zu accepted: %s", i, c->text);
        if (!strstr(err, c->why))
            fail_msg("case %zu: error \"%s\" does not mention \"%s\"", i, err, c->why);
        /* a failed parse leaves a zeroed envelope that is safe to free again */
        assert_null(env.client);
        assert_null(env.rcpts);
        assert_int_equal(env.nrcpts, 0);
        queue_envelope_free(&env);
    }
}

static void test_parse_nul_bytes(void **state)
{
    (void)state;
    /* a NUL inside a value is refused, wherever it is */
    const char text[] = HEAD FIELDS "rcpt - a@b\ndata\n";
    size_t len = sizeof text - 1;
    char *copy = malloc(len);
    assert_non_null(copy);
    size_t refused = 0;
    for (size_t i = 0; i < len; i++) {
        memcpy(copy, text, len);
        copy[i] = '\0';
        struct queue_envelope env;
        char err[160];
        if (queue_parse_envelope(copy, len, &env, err, sizeof err) == 0)
            fail_msg("NUL at %zu accepted", i);
        refused++;
    }
    assert_int_equal(refused, len);
    free(copy);
}

static void test_parse_every_prefix(void **state)
{
    (void)state;
    /* every truncation of a valid envelope is refused (and frees what it took) */
    const char text[] = HEAD FIELDS "rcpt - a@b\nrcpt D c@d\nrcpt F e@f\ndata\n";
    size_t len = sizeof text - 1;
    for (size_t n = 0; n < len; n++) {
        char *copy = malloc(n ? n : 1); /* exact size: ASan sees any overread */
        assert_non_null(copy);
        memcpy(copy, text, n);
        struct queue_envelope env;
        char err[160];
        if (queue_parse_envelope(copy, n, &env, err, sizeof err) == 0)
            fail_msg("prefix of %zu bytes accepted", n);
        free(copy);
    }
    struct queue_envelope env;
    assert_int_equal(queue_parse_envelope(text, len, &env, NULL, 0), 0);
    assert_int_equal(env.nrcpts, 3);
    assert_int_equal(env.rcpts[1].status, 'D');
    assert_int_equal(env.rcpts[2].status, 'F');
    assert_int_equal(text[env.rcpts[2].status_offset], 'F');
    assert_int_equal(env.data_offset, len);
    queue_envelope_free(&env);
    queue_envelope_free(&env); /* idempotent */
}

static void test_parse_bounds(void **state)
{
    (void)state;
    /* the longest field and address are accepted, one byte more is not */
    size_t cap = 8192;
    char *text = malloc(cap);
    char *val = malloc(QUEUE_FIELD_MAX + 1);
    assert_non_null(text);
    assert_non_null(val);
    const size_t lens[] = {QUEUE_FIELD_MAX - 1, QUEUE_FIELD_MAX, QUEUE_ADDR_MAX - 1,
                           QUEUE_ADDR_MAX};
    for (size_t i = 0; i < 4; i++) {
        memset(val, 'v', lens[i]);
        val[lens[i]] = '\0';
        bool addr = i >= 2;
        int n = snprintf(text, cap,
                         HEAD "client x\nclientname x\nhelo %s\nproto ESMTP\nbody 7BIT\nmsgid "
                              "\nsender a@b\nrcpt - %s\ndata\n",
                         addr ? "h" : val, addr ? val : "r@x");
        assert_true(n > 0 && (size_t)n < cap);
        struct queue_envelope env;
        char err[160];
        int rc = queue_parse_envelope(text, (size_t)n, &env, err, sizeof err);
        assert_int_equal(rc, i % 2 == 0 ? 0 : -1);
        if (rc == 0)
            queue_envelope_free(&env);
        else
            assert_non_null(strstr(err, "too long"));
    }
    free(val);
    free(text);
}

static void test_parse_envelope_max(void **state)
{
    (void)state;
    /* a data line beyond QUEUE_ENVELOPE_MAX is not looked for */
    const char rcpt[] =
        "rcpt - aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.org\n";
    size_t len = QUEUE_ENVELOPE_MAX + sizeof rcpt + 8;
    char *text = malloc(len);
    assert_non_null(text);
    size_t pos = 0;
    const char head[] = HEAD FIELDS;
    memcpy(text, head, sizeof head - 1);
    pos = sizeof head - 1;
    while (pos < QUEUE_ENVELOPE_MAX) { /* the data line starts past the bound */
        memcpy(text + pos, rcpt, sizeof rcpt - 1);
        pos += sizeof rcpt - 1;
    }
    memcpy(text + pos, "data\n", 5);
    struct queue_envelope env;
    char err[160];
    assert_int_equal(queue_parse_envelope(text, pos + 5, &env, err, sizeof err), -1);
    assert_non_null(strstr(err, "data"));
    /* the same with a few recipients fewer fits */
    size_t short_pos = pos - 3 * (sizeof rcpt - 1);
    memcpy(text + short_pos, "data\n", 5);
    assert_int_equal(queue_parse_envelope(text, pos + 5, &env, err, sizeof err), 0);
    assert_int_equal(env.data_offset, short_pos + 5);
    queue_envelope_free(&env);
    free(text);
}

/* ------------------------------------------------------- file operations */

struct qdir {
    char path[PATH_MAX];
};

static void rm_rf(const char *path)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

static int setup_qdir(void **state)
{
    struct qdir *q = calloc(1, sizeof *q);
    if (!q)
        return -1;
    snprintf(q->path, sizeof q->path, "/tmp/jm-test-queue-XXXXXX");
    if (!mkdtemp(q->path))
        return -1;
    char err[256];
    if (queue_prepare_dirs(q->path, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    *state = q;
    return 0;
}

static int teardown_qdir(void **state)
{
    struct qdir *q = *state;
    rm_rf(q->path);
    free(q);
    return 0;
}

static void path_of(const struct qdir *q, const char *sub, const char *name, char *out)
{
    int n = snprintf(out, PATH_MAX, "%s/%s/%s", q->path, sub, name);
    assert_true(n > 0 && n < PATH_MAX);
}

static void dir_of(const struct qdir *q, const char *sub, char *out)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", q->path, sub);
    assert_true(n > 0 && n < PATH_MAX);
}

static void write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static size_t count_entries(const struct qdir *q, const char *sub)
{
    char path[PATH_MAX];
    dir_of(q, sub, path);
    DIR *d = opendir(path);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* Writes msg/<qid>: the sample envelope with qid and nrcpts recipients, then body. */
static void put_message(const struct qdir *q, const char *qid, size_t nrcpts, const char *body,
                        struct queue_envelope *written)
{
    struct queue_rcpt *r = calloc(nrcpts, sizeof *r);
    char(*addrs)[64] = calloc(nrcpts, 64);
    assert_non_null(r);
    assert_non_null(addrs);
    for (size_t i = 0; i < nrcpts; i++) {
        snprintf(addrs[i], 64, "user%zu@example.org", i);
        r[i] = (struct queue_rcpt){.addr = addrs[i], .status = RCPT_PENDING};
    }
    struct queue_envelope env = sample_env();
    memcpy(env.qid, qid, QID_SIZE);
    env.rcpts = r;
    env.nrcpts = nrcpts;
    size_t cap = 4096 + nrcpts * 64 + strlen(body);
    char *buf = malloc(cap);
    assert_non_null(buf);
    ssize_t n = queue_format_envelope(&env, buf, cap);
    assert_true(n > 0);
    memcpy(buf + n, body, strlen(body));
    char path[PATH_MAX];
    path_of(q, "msg", qid, path);
    write_file(path, buf, (size_t)n + strlen(body));
    if (written) {
        written->data_offset = env.data_offset;
        written->nrcpts = nrcpts;
    }
    free(buf);
    free(addrs);
    free(r);
}

static void test_prepare_dirs(void **state)
{
    struct qdir *q = *state;
    char err[256], path[PATH_MAX];
    /* again: existing directories are fine */
    assert_int_equal(queue_prepare_dirs(q->path, err, sizeof err), 0);
    dir_of(q, "msg", path);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    /* a file where a directory belongs is an error */
    dir_of(q, "corrupt", path);
    assert_int_equal(rmdir(path), 0);
    write_file(path, "x", 1);
    assert_int_equal(queue_prepare_dirs(q->path, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a directory"));
    unlink(path);
    assert_int_equal(queue_prepare_dirs("/nonexistent/jm-queue", err, sizeof err), -1);
}

static void test_read_and_open_data(void **state)
{
    struct qdir *q = *state;
    struct queue_envelope w = {0};
    put_message(q, QID_A, 3, "Subject: hi\r\n\r\nbody\r\n", &w);
    struct queue_envelope env;
    char err[256];
    assert_int_equal(queue_read_envelope(q->path, QID_A, &env, err, sizeof err), 0);
    assert_string_equal(env.qid, QID_A);
    assert_int_equal(env.nrcpts, 3);
    assert_string_equal(env.rcpts[2].addr, "user2@example.org");
    assert_string_equal(env.sender, "alice@example.net");
    assert_int_equal(env.data_offset, w.data_offset);
    int fd = queue_open_data(q->path, &env);
    assert_true(fd >= 0);
    char body[64] = "";
    assert_int_equal(read(fd, body, sizeof body), 21);
    assert_memory_equal(body, "Subject: hi\r\n\r\nbody\r\n", 21);
    close(fd);
    queue_envelope_free(&env);
}

static void test_read_big_envelope(void **state)
{
    struct qdir *q = *state;
    /* > 64 KiB of envelope: the reader needs several chunks; and a big body */
    size_t body_len = 3 * 1000 * 1000;
    char *body = malloc(body_len + 1);
    assert_non_null(body);
    memset(body, 'b', body_len);
    body[body_len] = '\0';
    struct queue_envelope w = {0};
    put_message(q, QID_B, 3000, body, &w);
    assert_true(w.data_offset > 64 * 1024);
    struct queue_envelope env;
    char err[256];
    if (queue_read_envelope(q->path, QID_B, &env, err, sizeof err) < 0)
        fail_msg("%s", err);
    assert_int_equal(env.nrcpts, 3000);
    assert_string_equal(env.rcpts[2999].addr, "user2999@example.org");
    assert_int_equal(env.data_offset, w.data_offset);
    queue_envelope_free(&env);
    free(body);
}

static void test_read_errors(void **state)
{
    struct qdir *q = *state;
    struct queue_envelope env;
    char err[256], path[PATH_MAX];
    errno = 0;
    assert_int_equal(queue_read_envelope(q->path, QID_A, &env, err, sizeof err), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(queue_read_envelope(q->path, "../../etc/pass", &env, err, sizeof err), -1);
    /* the id inside must be the file's name */
    put_message(q, QID_A, 1, "x", NULL);
    path_of(q, "msg", QID_A, path);
    char path_b[PATH_MAX];
    path_of(q, "msg", QID_B, path_b);
    assert_int_equal(rename(path, path_b), 0);
    assert_int_equal(queue_read_envelope(q->path, QID_B, &env, err, sizeof err), -1);
    assert_non_null(strstr(err, "says it is"));
    /* not a regular file: refused at once (a FIFO would block a reader) */
    assert_int_equal(unlink(path_b), 0);
    assert_int_equal(mkfifo(path_b, 0600), 0);
    assert_int_equal(queue_read_envelope(q->path, QID_B, &env, err, sizeof err), -1);
    assert_int_equal(unlink(path_b), 0);
    /* no data line: refused, also when the file is larger than one chunk */
    size_t len = 200 * 1000;
    char *junk = malloc(len);
    assert_non_null(junk);
    memset(junk, 'j', len);
    memcpy(junk, "jailmail-queue 1\n", 17);
    write_file(path_b, junk, len);
    assert_int_equal(queue_read_envelope(q->path, QID_B, &env, err, sizeof err), -1);
    assert_null(env.rcpts);
    free(junk);
}

static void test_mark_rcpt(void **state)
{
    struct qdir *q = *state;
    put_message(q, QID_A, 4, "body\r\n", NULL);
    struct queue_envelope env, again;
    char err[256];
    assert_int_equal(queue_read_envelope(q->path, QID_A, &env, err, sizeof err), 0);
    assert_int_equal(queue_mark_rcpt(q->path, QID_A, &env.rcpts[1], RCPT_DELIVERED), 0);
    assert_int_equal(queue_mark_rcpt(q->path, QID_A, &env.rcpts[3], RCPT_FAILED), 0);
    assert_int_equal(queue_read_envelope(q->path, QID_A, &again, err, sizeof err), 0);
    assert_int_equal(again.rcpts[0].status, RCPT_PENDING);
    assert_int_equal(again.rcpts[1].status, RCPT_DELIVERED);
    assert_int_equal(again.rcpts[2].status, RCPT_PENDING);
    assert_int_equal(again.rcpts[3].status, RCPT_FAILED);
    queue_envelope_free(&again);
    /* a status byte that is not one, and an offset that is not a status slot */
    assert_int_equal(queue_mark_rcpt(q->path, QID_A, &env.rcpts[0], 'X'), -1);
    struct queue_rcpt wrong = env.rcpts[0];
    wrong.status_offset += 1;
    assert_int_equal(queue_mark_rcpt(q->path, QID_A, &wrong, RCPT_DELIVERED), -1);
    wrong.status_offset = 2;
    assert_int_equal(queue_mark_rcpt(q->path, QID_A, &wrong, RCPT_DELIVERED), -1);
    wrong.status_offset = env.data_offset + 100;
    assert_int_equal(queue_mark_rcpt(q->path, QID_A, &wrong, RCPT_DELIVERED), -1);
    assert_int_equal(queue_mark_rcpt(q->path, QID_B, &env.rcpts[0], RCPT_DELIVERED), -1);
    assert_int_equal(queue_read_envelope(q->path, QID_A, &again, err, sizeof err), 0);
    assert_int_equal(again.rcpts[0].status, RCPT_PENDING);
    queue_envelope_free(&again);
    queue_envelope_free(&env);
}

/* All of one attempt's results in one write-back: only statuses that are no
 * longer pending are written, a bad offset refuses the whole call. */
static void test_mark_rcpts(void **state)
{
    struct qdir *q = *state;
    put_message(q, QID_A, 4, "body\r\n", NULL);
    struct queue_envelope env, again;
    char err[256];
    assert_int_equal(queue_read_envelope(q->path, QID_A, &env, err, sizeof err), 0);
    env.rcpts[0].status = RCPT_DELIVERED;
    env.rcpts[2].status = RCPT_FAILED;
    assert_int_equal(queue_mark_rcpts(q->path, &env), 0);
    assert_int_equal(queue_read_envelope(q->path, QID_A, &again, err, sizeof err), 0);
    assert_int_equal(again.rcpts[0].status, RCPT_DELIVERED);
    assert_int_equal(again.rcpts[1].status, RCPT_PENDING);
    assert_int_equal(again.rcpts[2].status, RCPT_FAILED);
    assert_int_equal(again.rcpts[3].status, RCPT_PENDING);
    queue_envelope_free(&again);
    env.rcpts[3].status = RCPT_DELIVERED;
    env.rcpts[3].status_offset += 1; /* not a status slot */
    assert_int_equal(queue_mark_rcpts(q->path, &env), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(queue_read_envelope(q->path, QID_A, &again, err, sizeof err), 0);
    assert_int_equal(again.rcpts[3].status, RCPT_PENDING);
    queue_envelope_free(&again);
    queue_envelope_free(&env);
}

static void test_remove(void **state)
{
    struct qdir *q = *state;
    char path[PATH_MAX];
    put_message(q, QID_A, 1, "x", NULL);
    path_of(q, "msg", QID_A, path);
    assert_true(exists(path));
    assert_int_equal(queue_remove(q->path, QID_A), 0);
    assert_false(exists(path));
    errno = 0;
    assert_int_equal(queue_remove(q->path, QID_A), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(queue_remove(q->path, "../tmp/xxxxxxx"), -1);
}

static void test_next_attempt(void **state)
{
    struct qdir *q = *state;
    put_message(q, QID_A, 1, "x", NULL);
    int64_t when = 0;
    assert_int_equal(queue_set_next_attempt(q->path, QID_A, 1900000000), 0);
    assert_int_equal(queue_get_next_attempt(q->path, QID_A, &when), 0);
    assert_int_equal(when, 1900000000);
    assert_int_equal(queue_set_next_attempt(q->path, QID_A, 12345), 0);
    assert_int_equal(queue_get_next_attempt(q->path, QID_A, &when), 0);
    assert_int_equal(when, 12345);
    errno = 0;
    assert_int_equal(queue_get_next_attempt(q->path, QID_B, &when), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(queue_set_next_attempt(q->path, QID_B, 1), -1);
    assert_int_equal(queue_set_next_attempt(q->path, "bad", 1), -1);
}

struct found_log {
    char ids[16][QID_SIZE];
    size_t n;
};

static void on_found(const char *qid, void *arg)
{
    struct found_log *log = arg;
    assert_true(log->n < 16);
    snprintf(log->ids[log->n++], QID_SIZE, "%s", qid);
}

static void test_scan(void **state)
{
    struct qdir *q = *state;
    char path[PATH_MAX];
    put_message(q, QID_B, 1, "x", NULL);
    put_message(q, QID_A, 1, "x", NULL);
    put_message(q, "00000000000000", 1, "x", NULL);
    /* names that are not queue ids go to corrupt/; dot files are left alone */
    path_of(q, "msg", "junk", path);
    write_file(path, "junk", 4);
    path_of(q, "msg", "0AbCdEfGhIjKlM.bak", path);
    write_file(path, "junk", 4);
    path_of(q, "msg", ".hidden", path);
    write_file(path, "h", 1);
    path_of(q, "msg", "0AbCdEfGhIjKzz", path); /* a directory with a valid name */
    assert_int_equal(mkdir(path, 0700), 0);
    /* tmp/: leftovers go, a file locked by a live writer stays */
    path_of(q, "tmp", "0AbCdEfGhIjKlO", path);
    write_file(path, "partial", 7);
    path_of(q, "tmp", "oddname", path);
    write_file(path, "partial", 7);
    path_of(q, "tmp", "0AbCdEfGhIjKlP", path);
    write_file(path, "being received", 14);
    int locked = open(path, O_WRONLY);
    assert_true(locked >= 0);
    assert_int_equal(flock(locked, LOCK_EX | LOCK_NB), 0);

    struct found_log log = {0};
    assert_int_equal(queue_scan(q->path, on_found, &log), 3);
    assert_int_equal(log.n, 3);
    assert_string_equal(log.ids[0], "00000000000000");
    assert_string_equal(log.ids[1], QID_A);
    assert_string_equal(log.ids[2], QID_B);
    assert_int_equal(count_entries(q, "tmp"), 1);
    assert_true(exists(path));
    assert_int_equal(count_entries(q, "corrupt"), 3);
    path_of(q, "corrupt", "junk", path);
    assert_true(exists(path));
    path_of(q, "corrupt", "0AbCdEfGhIjKzz", path);
    assert_true(exists(path));
    path_of(q, "msg", ".hidden", path);
    assert_true(exists(path));
    assert_int_equal(count_entries(q, "msg"), 4);

    /* once the writer is gone, its file is a leftover too */
    close(locked);
    assert_int_equal(queue_scan(q->path, NULL, NULL), 3);
    assert_int_equal(count_entries(q, "tmp"), 0);
    assert_int_equal(queue_scan("/nonexistent/jm-queue", NULL, NULL), -1);
}

static void test_move_corrupt(void **state)
{
    struct qdir *q = *state;
    char path[PATH_MAX];
    for (int i = 0; i < 3; i++) {
        put_message(q, QID_A, 1, "x", NULL);
        assert_int_equal(queue_move_corrupt(q->path, "msg", QID_A), 0);
    }
    path_of(q, "corrupt", QID_A, path);
    assert_true(exists(path));
    path_of(q, "corrupt", QID_A ".1", path);
    assert_true(exists(path));
    path_of(q, "corrupt", QID_A ".2", path);
    assert_true(exists(path));
    assert_int_equal(count_entries(q, "msg"), 0);
    path_of(q, "tmp", "partial", path);
    write_file(path, "p", 1);
    assert_int_equal(queue_move_corrupt(q->path, "tmp", "partial"), 0);
    assert_int_equal(count_entries(q, "corrupt"), 4);
    /* no way out of the queue directory */
    assert_int_equal(queue_move_corrupt(q->path, "msg", "../tmp/x"), -1);
    assert_int_equal(queue_move_corrupt(q->path, "msg", ".."), -1);
    assert_int_equal(queue_move_corrupt(q->path, "msg", ""), -1);
    assert_int_equal(queue_move_corrupt(q->path, "..", "x"), -1);
    assert_int_equal(queue_move_corrupt(q->path, "corrupt", QID_A), -1);
    errno = 0;
    assert_int_equal(queue_move_corrupt(q->path, "msg", QID_B), -1);
    assert_int_equal(errno, ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_make_id),
        cmocka_unit_test(test_id_valid),
        cmocka_unit_test(test_format_exact),
        cmocka_unit_test(test_round_trip_many),
        cmocka_unit_test(test_null_sender_and_empty_fields),
        cmocka_unit_test(test_format_refusals),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_nul_bytes),
        cmocka_unit_test(test_parse_every_prefix),
        cmocka_unit_test(test_parse_bounds),
        cmocka_unit_test(test_parse_envelope_max),
        cmocka_unit_test_setup_teardown(test_prepare_dirs, setup_qdir, teardown_qdir),
        cmocka_unit_test_setup_teardown(test_read_and_open_data, setup_qdir, teardown_qdir),
        cmocka_unit_test_setup_teardown(test_read_big_envelope, setup_qdir, teardown_qdir),
        cmocka_unit_test_setup_teardown(test_read_errors, setup_qdir, teardown_qdir),
        cmocka_unit_test_setup_teardown(test_mark_rcpt, setup_qdir, teardown_qdir),
        cmocka_unit_test_setup_teardown(test_mark_rcpts, setup_qdir, teardown_qdir),
        cmocka_unit_test_setup_teardown(test_remove, setup_qdir, teardown_qdir),
        cmocka_unit_test_setup_teardown(test_next_attempt, setup_qdir, teardown_qdir),
        cmocka_unit_test_setup_teardown(test_scan, setup_qdir, teardown_qdir),
        cmocka_unit_test_setup_teardown(test_move_corrupt, setup_qdir, teardown_qdir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
