/* policy.h - who may do what: pure decisions over a description of the
 * client and the addresses, no I/O. The session asks at connect, MAIL and
 * RCPT and sends the reply it gets back as it is.
 *
 * This is the foundation's policy: local domains are the host's own names,
 * relaying is allowed to clients on the local submission socket, on loopback
 * addresses, or authenticated; everyone else gets sendmail's "Relaying
 * denied". The relay-domains file and the access map (SPEC-relay.md) plug in
 * here as further tables in struct policy_tables.
 */
#ifndef JM_POLICY_H
#define JM_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#define POLICY_REPLY_MAX 600

enum client_origin {
    ORIGIN_NETWORK = 0, /* TCP */
    ORIGIN_LOCAL,       /* the local submission socket (sendmail command) */
};

struct policy_client {
    const char *addr; /* numeric address, "" for the local socket */
    const char *name; /* confirmed host name, or NULL */
    enum client_origin origin;
    bool authenticated;
};

struct policy_tables {
    const char *const *local_domains; /* NULL-terminated; compared case-insensitively */
    /* Whether mail to a local domain can be delivered here. Until local
     * delivery exists it cannot, and such a recipient is refused: sent on to
     * the smarthost, "root@localhost" or "postmaster" would reach the
     * smarthost's own mailboxes, with its trust in us. */
    bool local_delivery;
};

enum policy_verdict {
    POLICY_ACCEPT = 0,
    POLICY_REJECT,   /* reply holds the full reply text */
    POLICY_TEMPFAIL, /* reply holds a 4xx text */
    POLICY_DISCARD,  /* accept, then throw the message away */
};

struct policy_decision {
    enum policy_verdict verdict;
    char reply[POLICY_REPLY_MAX]; /* "550 5.7.1 <x@y>... Relaying denied" */
    const char *rule;             /* which rule decided, for the log */
};

/* True for 127.0.0.0/8 and ::1 (and ::ffff:127.x.y.z). */
bool policy_addr_is_loopback(const char *addr);

/* True when the domain (no brackets) is one of ours. */
bool policy_domain_is_local(const struct policy_tables *t, const char *domain, size_t len);

/* The relay decision for one recipient address ("local@domain" or "local"). */
void policy_check_rcpt(const struct policy_tables *t, const struct policy_client *c,
                       const char *rcpt, struct policy_decision *d);

#endif
