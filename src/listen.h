/* listen.h - the daemon's listening sockets, opened by the master (as root,
 * so that port 25 can be bound) and handed to the smtpd worker. On reload the
 * sockets of addresses that stay are kept open, so no connection is refused
 * while the configuration changes. */
#ifndef JM_LISTEN_H
#define JM_LISTEN_H

#include <stddef.h>
#include "conf.h"

struct listener_set {
    struct listen_addr addr[CONF_MAX_LISTEN];
    int fd[CONF_MAX_LISTEN];
    size_t n;
};

/* Opens a socket for each of cfg's listen addresses, taking over the open
 * socket from `keep` (may be NULL) where the address is the same (its fd in
 * `keep` is then set to -1). On failure closes what it opened and returns -1
 * with "address: reason" in err. */
int listeners_open(struct listener_set *out, const struct config *cfg, struct listener_set *keep,
                   char *err, size_t errlen);

/* Closes every socket still open in the set. */
void listeners_close(struct listener_set *set);

#endif
