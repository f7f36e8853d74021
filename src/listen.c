/* listen.c - opening and keeping the listening sockets (see listen.h). */
#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LISTEN_BACKLOG 1024

static int take_over(struct listener_set *keep, const struct listen_addr *a)
{
    for (size_t i = 0; keep && i < keep->n; i++) {
        if (keep->fd[i] >= 0 && keep->addr[i].port == a->port &&
            strcmp(keep->addr[i].host, a->host) == 0) {
            int fd = keep->fd[i];
            keep->fd[i] = -1;
            return fd;
        }
    }
    return -1;
}

/* A failed reload must leave the old sockets as they were: the ones taken
 * over go back to `keep`, the new ones are closed. */
static void give_back(struct listener_set *out, struct listener_set *keep)
{
    for (size_t i = 0; i < out->n; i++) {
        size_t j = 0;
        while (keep && j < keep->n &&
               !(keep->fd[j] < 0 && keep->addr[j].port == out->addr[i].port &&
                 strcmp(keep->addr[j].host, out->addr[i].host) == 0))
            j++;
        if (keep && j < keep->n)
            keep->fd[j] = out->fd[i];
        else
            close(out->fd[i]);
    }
    out->n = 0;
}

static int open_one(const struct listen_addr *a, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, a->host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(a->port);
        sslen = sizeof *sin;
    } else if (inet_pton(AF_INET6, a->host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(a->port);
        sslen = sizeof *sin6;
    } else {
        snprintf(err, errlen, "%s:%u: not a numeric address", a->host, a->port);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sslen) < 0 || listen(fd, LISTEN_BACKLOG) < 0)
        goto fail;
    return fd;
fail:
    snprintf(err, errlen, "cannot listen on %s port %u: %s", a->host, a->port, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

int listeners_open(struct listener_set *out, const struct config *cfg, struct listener_set *keep,
                   char *err, size_t errlen)
{
    out->n = 0;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        const struct listen_addr *a = &cfg->listen[i];
        int fd = take_over(keep, a);
        if (fd < 0)
            fd = open_one(a, err, errlen);
        if (fd < 0) {
            give_back(out, keep);
            return -1;
        }
        out->addr[out->n] = *a;
        out->fd[out->n++] = fd;
    }
    return 0;
}

void listeners_close(struct listener_set *set)
{
    for (size_t i = 0; i < set->n; i++) {
        if (set->fd[i] >= 0)
            close(set->fd[i]);
        set->fd[i] = -1;
    }
}
