/* Unit tests of the foundation's relay policy (policy.c), table-driven. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"

struct rcpt_case {
    const char *client;
    enum client_origin origin;
    const char *rcpt;
    enum policy_verdict want;
    const char *reply; /* expected reply when refused */
};

static const char *const ours[] = {"mail.example.org", NULL};

static const struct rcpt_case rcpt_cases[] = {
    /* local domains need no relay permission, but without local delivery
     * they are unknown users (never forwarded to the smarthost) */
    {"192.0.2.7", ORIGIN_NETWORK, "postmaster", POLICY_REJECT,
     "550 5.1.1 <postmaster>... User unknown"},
    {"192.0.2.7", ORIGIN_NETWORK, "root@localhost", POLICY_REJECT,
     "550 5.1.1 <root@localhost>... User unknown"},
    {"127.0.0.1", ORIGIN_NETWORK, "root@LOCALHOST", POLICY_REJECT,
     "550 5.1.1 <root@LOCALHOST>... User unknown"},
    {"", ORIGIN_LOCAL, "joe@mail.example.org", POLICY_REJECT,
     "550 5.1.1 <joe@mail.example.org>... User unknown"},
    {"192.0.2.7", ORIGIN_NETWORK, "joe@Mail.Example.Org.", POLICY_REJECT,
     "550 5.1.1 <joe@Mail.Example.Org.>... User unknown"},
    /* relaying: loopback and the local socket may, others may not */
    {"127.0.0.1", ORIGIN_NETWORK, "x@example.net", POLICY_ACCEPT, NULL},
    {"127.9.8.7", ORIGIN_NETWORK, "x@example.net", POLICY_ACCEPT, NULL},
    {"::1", ORIGIN_NETWORK, "x@example.net", POLICY_ACCEPT, NULL},
    {"::ffff:127.0.0.1", ORIGIN_NETWORK, "x@example.net", POLICY_ACCEPT, NULL},
    {"", ORIGIN_LOCAL, "x@example.net", POLICY_ACCEPT, NULL},
    {"192.0.2.7", ORIGIN_NETWORK, "x@example.net", POLICY_REJECT,
     "550 5.7.1 <x@example.net>... Relaying denied"},
    {"128.0.0.1", ORIGIN_NETWORK, "x@example.net", POLICY_REJECT,
     "550 5.7.1 <x@example.net>... Relaying denied"},
    {"2001:db8::1", ORIGIN_NETWORK, "x@example.net", POLICY_REJECT,
     "550 5.7.1 <x@example.net>... Relaying denied"},
    {"::ffff:192.0.2.1", ORIGIN_NETWORK, "x@example.net", POLICY_REJECT,
     "550 5.7.1 <x@example.net>... Relaying denied"},
    /* a local domain that hides another destination is relaying */
    {"192.0.2.7", ORIGIN_NETWORK, "x%example.net@localhost", POLICY_REJECT,
     "550 5.7.1 <x%example.net@localhost>... Relaying denied"},
    {"192.0.2.7", ORIGIN_NETWORK, "example.net!x@mail.example.org", POLICY_REJECT,
     "550 5.7.1 <example.net!x@mail.example.org>... Relaying denied"},
    {"192.0.2.7", ORIGIN_NETWORK, "\"x@example.net\"@localhost", POLICY_REJECT,
     "550 5.7.1 <\"x@example.net\"@localhost>... Relaying denied"},
    {"192.0.2.7", ORIGIN_NETWORK, "x%example.net", POLICY_REJECT,
     "550 5.7.1 <x%example.net>... Relaying denied"},
    {"127.0.0.1", ORIGIN_NETWORK, "x%example.net@localhost", POLICY_ACCEPT, NULL},
    /* a domain that merely ends like ours is not ours */
    {"192.0.2.7", ORIGIN_NETWORK, "x@notmail.example.org", POLICY_REJECT,
     "550 5.7.1 <x@notmail.example.org>... Relaying denied"},
    {"192.0.2.7", ORIGIN_NETWORK, "x@localhost.example.net", POLICY_REJECT,
     "550 5.7.1 <x@localhost.example.net>... Relaying denied"},
};

static void test_rcpt_table(void **state)
{
    (void)state;
    struct policy_tables t = {.local_domains = ours};
    for (size_t i = 0; i < sizeof rcpt_cases / sizeof rcpt_cases[0]; i++) {
        const struct rcpt_case *c = &rcpt_cases[i];
        struct policy_client cl = {.addr = c->client, .origin = c->origin};
        struct policy_decision d;
        policy_check_rcpt(&t, &cl, c->rcpt, &d);
        if (d.verdict != c->want)
            fail_msg("case %zu (%s from %s): verdict %d, want %d", i, c->rcpt, c->client, d.verdict,
                     c->want);
        if (c->reply)
            assert_string_equal(d.reply, c->reply);
    }
}

/* With local delivery, a local domain needs no relay permission. */
static void test_local_domains_with_local_delivery(void **state)
{
    (void)state;
    struct policy_tables t = {.local_domains = ours, .local_delivery = true};
    const char *const local[] = {"postmaster", "root@localhost", "root@LOCALHOST",
                                 "joe@mail.example.org", "joe@Mail.Example.Org."};
    for (size_t i = 0; i < sizeof local / sizeof local[0]; i++) {
        struct policy_client cl = {.addr = "192.0.2.7", .origin = ORIGIN_NETWORK};
        struct policy_decision d;
        policy_check_rcpt(&t, &cl, local[i], &d);
        if (d.verdict != POLICY_ACCEPT)
            fail_msg("%s: refused with %s", local[i], d.reply);
    }
    struct policy_client cl = {.addr = "192.0.2.7", .origin = ORIGIN_NETWORK};
    struct policy_decision d;
    policy_check_rcpt(&t, &cl, "x%example.net@localhost", &d);
    assert_int_equal(d.verdict, POLICY_REJECT);
    assert_string_equal(d.reply, "550 5.7.1 <x%example.net@localhost>... Relaying denied");
}

static void test_loopback(void **state)
{
    (void)state;
    assert_true(policy_addr_is_loopback("127.0.0.1"));
    assert_true(policy_addr_is_loopback("127.255.255.255"));
    assert_true(policy_addr_is_loopback("::1"));
    assert_false(policy_addr_is_loopback("126.255.255.255"));
    assert_false(policy_addr_is_loopback("::2"));
    assert_false(policy_addr_is_loopback(""));
    assert_false(policy_addr_is_loopback("localhost"));
    assert_false(policy_addr_is_loopback("127.0.0.1 "));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rcpt_table),
        cmocka_unit_test(test_local_domains_with_local_delivery),
        cmocka_unit_test(test_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
