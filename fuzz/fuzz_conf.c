/* libFuzzer target: conf_parse_buffer on arbitrary bytes, with the
 * invariants its contract promises. abort() on any violation:
 *  - it answers 0 or -1;
 *  - on -1 the configuration is untouched and the message is one line of
 *    printable ASCII that starts with "name:line: " (the master logs it);
 *  - on 0 every field is within its documented bounds, and the
 *    configuration written back as text parses to the very same struct. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define NAME "fuzz.conf"

static bool terminated(const char *s, size_t size)
{
    return memchr(s, '\0', size) != NULL;
}

static void check_message(const char *err)
{
    size_t len = strlen(err);
    CHECK(len > 0 && len < CONF_ERR_MAX);
    CHECK(strncmp(err, NAME ":", strlen(NAME ":")) == 0);
    for (size_t i = 0; i < len; i++)
        CHECK(err[i] >= 0x20 && err[i] < 0x7f);
}

static void check_listen(const struct config *c)
{
    unsigned char bin[16];
    CHECK(c->nlisten >= 1 && c->nlisten <= CONF_MAX_LISTEN);
    for (size_t i = 0; i < c->nlisten; i++) {
        const struct listen_addr *a = &c->listen[i];
        CHECK(terminated(a->host, sizeof a->host));
        CHECK(inet_pton(AF_INET, a->host, bin) == 1 || inet_pton(AF_INET6, a->host, bin) == 1);
        CHECK(a->port >= 1);
        for (size_t j = 0; j < i; j++) {
            const struct listen_addr *b = &c->listen[j];
            bool v6a = strchr(a->host, ':') != NULL, v6b = strchr(b->host, ':') != NULL;
            bool wild = !strcmp(a->host, "0.0.0.0") || !strcmp(a->host, "::") ||
                        !strcmp(b->host, "0.0.0.0") || !strcmp(b->host, "::");
            CHECK(a->port != b->port || strcmp(a->host, b->host) != 0);
            CHECK(a->port != b->port || v6a != v6b || !wild);
        }
    }
}

static void check_path(const char *p, size_t size, bool may_be_empty)
{
    CHECK(terminated(p, size));
    if (!p[0]) {
        CHECK(may_be_empty);
        return;
    }
    CHECK(p[0] == '/');
    CHECK(strstr(p, "//") == NULL && strstr(p, "/../") == NULL && strstr(p, "/./") == NULL);
    for (const char *q = p; *q; q++)
        CHECK(*q > ' ' && *q < 0x7f);
}

static void check_fields(const struct config *c)
{
    check_listen(c);
    CHECK(terminated(c->hostname, sizeof c->hostname));
    CHECK(strlen(c->hostname) <= 253);
    check_path(c->jail_dir, sizeof c->jail_dir, false);
    check_path(c->queue_dir, sizeof c->queue_dir, false);
    CHECK(strcmp(c->jail_dir, "/") != 0 && strcmp(c->queue_dir, "/") != 0);
    check_path(c->log_file, sizeof c->log_file, true);
    CHECK(terminated(c->run_as_user, sizeof c->run_as_user) && c->run_as_user[0]);
    CHECK(terminated(c->run_as_group, sizeof c->run_as_group) && c->run_as_group[0]);
    CHECK(strcmp(c->run_as_user, "root") != 0 && strcmp(c->run_as_group, "root") != 0);
    CHECK(terminated(c->smarthost, sizeof c->smarthost));
    CHECK(c->smarthost_port >= 1);
    if (!c->smarthost[0])
        CHECK(c->smarthost_port == 25 && !c->smarthost_no_mx);
    CHECK(c->max_message_size >= 1024 && c->max_message_size <= (2ULL << 30));
    CHECK(c->max_recipients >= 1 && c->max_recipients <= 100000);
    CHECK(c->max_header_size >= 1024 && c->max_header_size <= (16ULL << 20));
    CHECK(c->max_command_line >= 512 && c->max_command_line <= 65536);
    CHECK(c->max_connections >= 1 && c->max_connections <= 100000);
    CHECK(c->max_connections_per_client >= 1 && c->max_connections_per_client <= 100000);
    CHECK(c->max_bad_commands >= 1 && c->max_bad_commands <= 1000);
    CHECK(c->max_deliveries >= 1 && c->max_deliveries <= 1000);
    const unsigned times[] = {c->command_timeout, c->data_timeout, c->shutdown_timeout,
                              c->queue_interval, c->retry_min};
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++)
        CHECK(times[i] >= 1 && times[i] <= 30 * 86400);
}

/* The configuration as text, as an administrator could have written it. */
static size_t write_back(const struct config *c, char *out, size_t outlen)
{
    size_t o = 0;
#define PUT(...) o += (size_t)snprintf(out + o, outlen - o, __VA_ARGS__)
    for (size_t i = 0; i < c->nlisten; i++) {
        const struct listen_addr *a = &c->listen[i];
        if (strchr(a->host, ':'))
            PUT("listen = [%s]:%u\n", a->host, a->port);
        else
            PUT("listen = %s:%u\n", a->host, a->port);
    }
    PUT("hostname = %s\njail_directory = %s\nqueue_directory = %s\n", c->hostname, c->jail_dir,
        c->queue_dir);
    PUT("run_as_user = %s\nrun_as_group = %s\nlog_file = %s\n", c->run_as_user, c->run_as_group,
        c->log_file);
    if (!c->smarthost[0])
        PUT("smarthost =\n");
    else if (c->smarthost_no_mx)
        PUT("smarthost = [%s%s]:%u\n", strchr(c->smarthost, ':') ? "IPv6:" : "", c->smarthost,
            c->smarthost_port);
    else
        PUT("smarthost = %s:%u\n", c->smarthost, c->smarthost_port);
    PUT("max_message_size = %zu\nmax_recipients = %zu\nmax_header_size = %zu\n",
        c->max_message_size, c->max_recipients, c->max_header_size);
    PUT("max_command_line = %zu\nmax_connections = %u\nmax_connections_per_client = %u\n",
        c->max_command_line, c->max_connections, c->max_connections_per_client);
    PUT("max_bad_commands = %u\ncommand_timeout = %u\ndata_timeout = %u\n", c->max_bad_commands,
        c->command_timeout, c->data_timeout);
    PUT("shutdown_timeout = %us\nqueue_interval = %uh%um%us\n", c->shutdown_timeout,
        c->queue_interval / 3600, c->queue_interval % 3600 / 60, c->queue_interval % 60);
    PUT("retry_min = %u\nmax_deliveries = %u\n", c->retry_min, c->max_deliveries);
#undef PUT
    CHECK(o < outlen);
    return o;
}

static void check_round_trip(const struct config *c)
{
    static char text[5 * PATH_MAX + 64 * 1024];
    struct config again;
    char err[CONF_ERR_MAX];
    size_t len = write_back(c, text, sizeof text);
    conf_defaults(&again);
    CHECK(conf_parse_buffer(&again, NAME, text, len, err, sizeof err) == 0);
    CHECK(memcmp(&again, c, sizeof again) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct config c, before;
    char err[CONF_ERR_MAX];
    conf_defaults(&c);
    memcpy(&before, &c, sizeof c);
    memset(err, 0, sizeof err);
    int rc = conf_parse_buffer(&c, NAME, (const char *)data, size, err, sizeof err);
    CHECK(rc == 0 || rc == -1);
    if (rc < 0) {
        check_message(err);
        CHECK(memcmp(&c, &before, sizeof c) == 0);
        return 0;
    }
    CHECK(strcmp(c.source, NAME) == 0);
    check_fields(&c);
    check_round_trip(&c);
    if (c.hostname[0]) /* no gethostname() here: the input decides */
        CHECK(conf_finish(&c, err, sizeof err) == 0 || strstr(err, "longer than") != NULL);
    return 0;
}
