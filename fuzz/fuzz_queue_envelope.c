/* libFuzzer target for the queue file envelope parser. Arbitrary bytes must
 * never crash it or leak (LeakSanitizer checks after each run). When a
 * buffer is accepted, the envelope must obey the contract (valid id, offsets
 * inside the envelope and pointing at status bytes, no CR/LF in any value)
 * and the writer must give back exactly the accepted bytes: the format has
 * one spelling per envelope. abort() on any violation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static void check_value(const char *v, size_t max)
{
    CHECK(v != NULL);
    size_t len = strlen(v);
    CHECK(len < max);
    CHECK(!memchr(v, '\r', len) && !memchr(v, '\n', len));
}

static void check_envelope(const uint8_t *data, size_t size, const struct queue_envelope *env)
{
    CHECK(queue_id_valid(env->qid, strlen(env->qid)));
    CHECK(env->arrival >= 0);
    CHECK(env->data_offset > 0 && (size_t)env->data_offset <= size);
    CHECK((size_t)env->data_offset <= QUEUE_ENVELOPE_MAX);
    CHECK(memcmp(data + env->data_offset - 5, "data\n", 5) == 0);
    check_value(env->client, QUEUE_FIELD_MAX);
    check_value(env->client_name, QUEUE_FIELD_MAX);
    check_value(env->helo, QUEUE_FIELD_MAX);
    check_value(env->proto, QUEUE_FIELD_MAX);
    check_value(env->body_type, QUEUE_FIELD_MAX);
    check_value(env->msgid, QUEUE_FIELD_MAX);
    check_value(env->sender, QUEUE_ADDR_MAX);
    CHECK(env->nrcpts > 0 && env->rcpts != NULL);
    for (size_t i = 0; i < env->nrcpts; i++) {
        const struct queue_rcpt *r = &env->rcpts[i];
        check_value(r->addr, QUEUE_ADDR_MAX);
        CHECK(r->addr[0] != '\0');
        CHECK(r->status_offset >= 5 && r->status_offset < env->data_offset);
        CHECK(data[r->status_offset] == (uint8_t)r->status);
        CHECK(memcmp(data + r->status_offset - 5, "rcpt ", 5) == 0);
    }
}

/* Writing the parsed envelope again must give the same bytes. */
static void check_round_trip(const uint8_t *data, struct queue_envelope *env)
{
    size_t len = (size_t)env->data_offset;
    off_t data_offset = env->data_offset;
    off_t *offsets = malloc(env->nrcpts * sizeof *offsets);
    char *buf = malloc(len);
    CHECK(offsets && buf);
    for (size_t i = 0; i < env->nrcpts; i++)
        offsets[i] = env->rcpts[i].status_offset;
    ssize_t n = queue_format_envelope(env, buf, len);
    CHECK(n == (ssize_t)len);
    CHECK(memcmp(buf, data, len) == 0);
    CHECK(env->data_offset == data_offset);
    for (size_t i = 0; i < env->nrcpts; i++)
        CHECK(env->rcpts[i].status_offset == offsets[i]);
    /* one byte less room is refused, never truncated */
    CHECK(queue_format_envelope(env, buf, len - 1) == -1);
    free(buf);
    free(offsets);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct queue_envelope env;
    char err[128];
    if (queue_parse_envelope((const char *)data, size, &env, err, sizeof err) < 0) {
        CHECK(memchr(err, '\0', sizeof err) != NULL && err[0] != '\0');
        CHECK(env.rcpts == NULL && env.client == NULL && env.nrcpts == 0);
        return 0;
    }
    check_envelope(data, size, &env);
    check_round_trip(data, &env);
    queue_envelope_free(&env);
    return 0;
}
