/* dns.h - asynchronous host name resolution (c-ares glue for libevent).
 *
 * The queue process resolves the smarthost's name (and later MX records)
 * without blocking its event loop. c-ares reads /etc/resolv.conf when its
 * channel is made, and the jail has no /etc/resolv.conf, so:
 *
 *   dns_init() MUST be called BEFORE the process enters the jail (the master
 *   calls it in the queue worker's child, before privsep_enter_jail). If it
 *   fails, names cannot be resolved: every lookup then fails at once with a
 *   temporary error, and numeric addresses still work.
 *
 * The name "localhost" is answered without DNS (RFC 6761 6.3): 127.0.0.1 and
 * ::1, since the jail has no /etc/hosts either.
 */
#ifndef JM_DNS_H
#define JM_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define DNS_MAX_ADDRS 8 /* addresses of one name that are kept and tried */

struct event_base;
struct dns_query;

/* Result of a lookup: on success naddrs >= 1 and err is NULL; on failure
 * naddrs is 0 and err says why ("host not found", "timed out", ...). The
 * addresses carry `port`. The callback is called exactly once, never from
 * within dns_resolve, and never after dns_cancel. */
typedef void (*dns_cb)(void *arg, const struct sockaddr_storage *addrs, size_t naddrs,
                       const char *err);

/* Creates the resolver channel (reads /etc/resolv.conf). Call before chroot.
 * Returns 0, or -1 with a reason in err. Calling it twice is harmless. */
int dns_init(char *err, size_t errlen);

/* Parses a numeric IPv4 or IPv6 address (no brackets) into out with `port`.
 * Returns 0, or -1 when host is not a numeric address. No I/O. */
int dns_numeric(const char *host, uint16_t port, struct sockaddr_storage *out);

/* Starts an A + AAAA lookup of `name` on `base`, bounded by timeout_sec.
 * Returns a handle, or NULL when the lookup cannot even start (out of
 * memory); the callback is then never called. */
struct dns_query *dns_resolve(struct event_base *base, const char *name, uint16_t port,
                              unsigned timeout_sec, dns_cb cb, void *arg);

/* Abandons a lookup: its callback will not be called. */
void dns_cancel(struct dns_query *q);

/* Formats the address (without port) for logs: "192.0.2.1" or "2001:db8::1". */
void dns_addr_string(const struct sockaddr_storage *ss, char *out, size_t outlen);

/* Destroys the channel (pending lookups are abandoned) and the events it
 * registered on the event base. */
void dns_shutdown(void);

#endif
