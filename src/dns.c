/* dns.c - c-ares glue for libevent (see dns.h).
 *
 * c-ares tells us through its socket-state callback which sockets it wants
 * watched; each gets a libevent event. One timer drives c-ares' own
 * retransmissions (ares_timeout). Each query has its own deadline on top, so
 * that a resolver that never answers cannot hold a delivery forever; an
 * abandoned query stays allocated until c-ares calls back, and is freed then.
 */
#include "dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ares.h>
#include <event2/event.h>

#define DNS_MAX_SOCKETS 16
#define DNS_TRY_TIMEOUT_MS 3000
#define DNS_TRIES 2

struct dns_socket {
    ares_socket_t fd;
    struct event *ev;
};

struct dns_query {
    dns_cb cb; /* NULL once answered, timed out or cancelled */
    void *arg;
    uint16_t port;
    struct event *deadline; /* the lookup's own time limit */
    struct event *soon;     /* delivers a result found without waiting */
    bool starting;          /* inside ares_getaddrinfo: answers must wait */
    /* a result kept for `soon` */
    struct sockaddr_storage addrs[DNS_MAX_ADDRS];
    size_t naddrs;
    const char *err;
};

static bool library_ready;
static bool channel_ready;
static bool shutting_down;
static ares_channel channel;
static struct event_base *dns_base;
static struct event *process_timer;
static struct dns_socket sockets[DNS_MAX_SOCKETS];

static void arm_process_timer(void)
{
    if (!process_timer)
        return;
    struct timeval tv, *tvp = ares_timeout(channel, NULL, &tv);
    if (tvp)
        evtimer_add(process_timer, tvp);
    else
        evtimer_del(process_timer);
}

static void on_socket_ready(evutil_socket_t fd, short what, void *arg)
{
    (void)arg;
    ares_socket_t rfd = (what & (EV_READ | EV_TIMEOUT)) ? fd : ARES_SOCKET_BAD;
    ares_socket_t wfd = (what & EV_WRITE) ? fd : ARES_SOCKET_BAD;
    ares_process_fd(channel, rfd, wfd);
    arm_process_timer();
}

static void on_process_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    arm_process_timer();
}

static struct dns_socket *socket_slot(ares_socket_t fd, bool create)
{
    struct dns_socket *free_slot = NULL;
    for (size_t i = 0; i < DNS_MAX_SOCKETS; i++) {
        if (sockets[i].ev && sockets[i].fd == fd)
            return &sockets[i];
        if (!sockets[i].ev && !free_slot)
            free_slot = &sockets[i];
    }
    return create ? free_slot : NULL;
}

/* c-ares: start or stop watching a socket. */
static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    (void)data;
    struct dns_socket *s = socket_slot(fd, readable || writable);
    if (!s || !dns_base)
        return; /* more sockets than slots: c-ares' timer still drives it */
    if (s->ev) {
        event_free(s->ev);
        s->ev = NULL;
    }
    if (!readable && !writable)
        return;
    short what = EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);
    s->fd = fd;
    s->ev = event_new(dns_base, fd, what, on_socket_ready, NULL);
    if (s->ev)
        event_add(s->ev, NULL);
}

int dns_init(char *err, size_t errlen)
{
    if (channel_ready)
        return 0;
    int rc;
    if (!library_ready && (rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
        snprintf(err, errlen, "ares_library_init: %s", ares_strerror(rc));
        return -1;
    }
    library_ready = true;
    struct ares_options opt = {
        .sock_state_cb = on_sock_state,
        .timeout = DNS_TRY_TIMEOUT_MS,
        .tries = DNS_TRIES,
    };
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    if ((rc = ares_init_options(&channel, &opt, mask)) != ARES_SUCCESS) {
        snprintf(err, errlen, "ares_init_options: %s", ares_strerror(rc));
        return -1;
    }
    channel_ready = true;
    return 0;
}

int dns_numeric(const char *host, uint16_t port, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    struct sockaddr_in *sin = (struct sockaddr_in *)out;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        return 0;
    }
    return -1;
}

void dns_addr_string(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
    const void *a = ss->ss_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)ss)->sin_addr;
    if (!inet_ntop(ss->ss_family, a, out, (socklen_t)outlen))
        snprintf(out, outlen, "?");
}

static void query_free(struct dns_query *q)
{
    if (q->deadline)
        event_free(q->deadline);
    if (q->soon)
        event_free(q->soon);
    free(q);
}

/* Hands the result to the owner once; later results are dropped. */
static void query_answer(struct dns_query *q, const struct sockaddr_storage *addrs, size_t n,
                         const char *err)
{
    dns_cb cb = q->cb;
    q->cb = NULL;
    if (q->deadline)
        evtimer_del(q->deadline);
    if (cb)
        cb(q->arg, addrs, n, err);
}

static void on_soon(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct dns_query *q = arg;
    query_answer(q, q->addrs, q->naddrs, q->err);
    query_free(q);
}

/* Keeps the result and delivers it from the event loop, so that a callback
 * never runs inside dns_resolve. Returns -1 when no event can be made. */
static int answer_soon(struct dns_query *q, struct event_base *base)
{
    struct timeval zero = {0, 0};
    q->soon = evtimer_new(base, on_soon, q);
    if (!q->soon || evtimer_add(q->soon, &zero) < 0)
        return -1;
    return 0;
}

static size_t collect_addrs(const struct ares_addrinfo *ai, uint16_t port,
                            struct sockaddr_storage *out)
{
    size_t n = 0;
    for (const struct ares_addrinfo_node *nd = ai ? ai->nodes : NULL; nd && n < DNS_MAX_ADDRS;
         nd = nd->ai_next) {
        if ((nd->ai_family != AF_INET && nd->ai_family != AF_INET6) ||
            (size_t)nd->ai_addrlen > sizeof out[n])
            continue;
        memset(&out[n], 0, sizeof out[n]);
        memcpy(&out[n], nd->ai_addr, (size_t)nd->ai_addrlen);
        if (nd->ai_family == AF_INET)
            ((struct sockaddr_in *)&out[n])->sin_port = htons(port);
        else
            ((struct sockaddr_in6 *)&out[n])->sin6_port = htons(port);
        n++;
    }
    return n;
}

static const char *ares_failure(int status)
{
    if (status == ARES_SUCCESS || status == ARES_ENOTFOUND || status == ARES_ENODATA)
        return "host not found";
    return ares_strerror(status);
}

static void on_ares_result(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    (void)timeouts;
    struct dns_query *q = arg;
    q->naddrs = status == ARES_SUCCESS ? collect_addrs(ai, q->port, q->addrs) : 0;
    q->err = q->naddrs ? NULL : ares_failure(status);
    if (ai)
        ares_freeaddrinfo(ai);
    if (q->starting)
        return; /* dns_resolve delivers it from the loop */
    if (shutting_down)
        q->cb = NULL; /* ares_destroy: the owners are gone or going */
    query_answer(q, q->addrs, q->naddrs, q->err);
    query_free(q);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    query_answer(arg, NULL, 0, "timed out");
}

static bool is_localhost(const char *name)
{
    return strcasecmp(name, "localhost") == 0 || strcasecmp(name, "localhost.") == 0;
}

static bool answer_without_dns(struct dns_query *q, const char *name)
{
    if (is_localhost(name)) {
        dns_numeric("127.0.0.1", q->port, &q->addrs[q->naddrs++]);
        dns_numeric("::1", q->port, &q->addrs[q->naddrs++]);
        return true;
    }
    if (!channel_ready) {
        q->err = "resolver unavailable";
        return true;
    }
    return false;
}

struct dns_query *dns_resolve(struct event_base *base, const char *name, uint16_t port,
                              unsigned timeout_sec, dns_cb cb, void *arg)
{
    struct dns_query *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->cb = cb, q->arg = arg, q->port = port;
    if (answer_without_dns(q, name)) {
        if (answer_soon(q, base) < 0) {
            query_free(q);
            return NULL;
        }
        return q;
    }
    if (!process_timer) {
        dns_base = base;
        process_timer = evtimer_new(base, on_process_timer, NULL);
    }
    q->deadline = evtimer_new(base, on_deadline, q);
    struct timeval tv = {.tv_sec = timeout_sec ? timeout_sec : 30};
    if (!q->deadline || !process_timer || evtimer_add(q->deadline, &tv) < 0) {
        query_free(q);
        return NULL;
    }
    struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    q->starting = true;
    q->err = NULL;
    q->naddrs = (size_t)-1; /* "no answer yet" */
    ares_getaddrinfo(channel, name, NULL, &hints, on_ares_result, q);
    q->starting = false;
    if (q->naddrs != (size_t)-1 && answer_soon(q, base) < 0) {
        query_free(q); /* c-ares is done with it; the owner hears nothing */
        return NULL;
    }
    arm_process_timer();
    return q;
}

void dns_cancel(struct dns_query *q)
{
    if (!q)
        return;
    /* The query is freed by whichever of on_ares_result and on_soon is still
     * to come (one always is). */
    q->cb = NULL;
    if (q->deadline)
        evtimer_del(q->deadline);
}

void dns_shutdown(void)
{
    if (channel_ready) {
        shutting_down = true;
        ares_destroy(channel); /* calls back every pending query: they are freed */
        shutting_down = false;
        channel_ready = false;
    }
    for (size_t i = 0; i < DNS_MAX_SOCKETS; i++) {
        if (sockets[i].ev)
            event_free(sockets[i].ev);
        sockets[i].ev = NULL;
    }
    if (process_timer)
        event_free(process_timer);
    process_timer = NULL;
    dns_base = NULL;
}
