/* policy.c - relay decisions, pure (see policy.h and SPEC-relay.md). */
#include "policy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

bool policy_addr_is_loopback(const char *addr)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, addr, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, addr, &a6) != 1)
        return false;
    if (IN6_IS_ADDR_LOOPBACK(&a6))
        return true;
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

bool policy_domain_is_local(const struct policy_tables *t, const char *domain, size_t len)
{
    if (len > 0 && domain[len - 1] == '.') /* "example.com." is "example.com" */
        len--;
    if (len == 9 && strncasecmp(domain, "localhost", 9) == 0)
        return true;
    for (const char *const *d = t->local_domains; d && *d; d++)
        if (strlen(*d) == len && strncasecmp(*d, domain, len) == 0)
            return true;
    return false;
}

static bool client_may_relay(const struct policy_client *c, const char **rule)
{
    if (c->origin == ORIGIN_LOCAL) {
        *rule = "local submission";
        return true;
    }
    if (c->authenticated) {
        *rule = "authenticated";
        return true;
    }
    if (policy_addr_is_loopback(c->addr)) {
        *rule = "loopback client";
        return true;
    }
    return false;
}

/* The domain of an address: what follows the last '@', or "" for a bare
 * local part such as "postmaster". */
static const char *rcpt_domain(const char *rcpt, size_t *len)
{
    const char *at = strrchr(rcpt, '@');
    const char *d = at ? at + 1 : "";
    *len = strlen(d);
    return d;
}

/* A local part that carries a routing character (the percent hack, a bang
 * path, a quoted '@') may hide a second destination. Until the unwrapping of
 * SPEC-relay.md is in place, such an address counts as relaying. */
static bool hides_destination(const char *rcpt)
{
    const char *at = strrchr(rcpt, '@');
    size_t locallen = at ? (size_t)(at - rcpt) : strlen(rcpt);
    for (size_t i = 0; i < locallen; i++)
        if (rcpt[i] == '%' || rcpt[i] == '!' || rcpt[i] == '@' || rcpt[i] == ':')
            return true;
    return false;
}

void policy_check_rcpt(const struct policy_tables *t, const struct policy_client *c,
                       const char *rcpt, struct policy_decision *d)
{
    size_t dlen;
    const char *domain = rcpt_domain(rcpt, &dlen);
    d->verdict = POLICY_ACCEPT;
    d->reply[0] = '\0';
    if ((dlen == 0 || policy_domain_is_local(t, domain, dlen)) && !hides_destination(rcpt)) {
        d->rule = "local domain";
        if (!t->local_delivery) {
            d->verdict = POLICY_REJECT;
            d->rule = "check_rcpt (no local delivery)";
            snprintf(d->reply, sizeof d->reply, "550 5.1.1 <%s>... User unknown", rcpt);
        }
        return;
    }
    if (client_may_relay(c, &d->rule))
        return;
    d->verdict = POLICY_REJECT;
    d->rule = "check_rcpt";
    snprintf(d->reply, sizeof d->reply, "550 5.7.1 <%s>... Relaying denied", rcpt);
}
