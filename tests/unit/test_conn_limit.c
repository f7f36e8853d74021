/* Unit tests of the per-client connection table (conn_limit.c), checked
 * against a simple model under a long random sequence of adds and removes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>

#include "conn_limit.h"

static struct sockaddr_in v4(uint32_t host)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(host)};
    return sin;
}

static void test_counts(void **state)
{
    (void)state;
    struct conn_table *t = conn_table_new(4);
    struct sockaddr_in a = v4(0x7f000001), b = v4(0x7f000002);
    assert_int_equal(conn_table_add(t, (struct sockaddr *)&a), 1);
    assert_int_equal(conn_table_add(t, (struct sockaddr *)&a), 2);
    assert_int_equal(conn_table_add(t, (struct sockaddr *)&b), 1);
    conn_table_remove(t, (struct sockaddr *)&a);
    assert_int_equal(conn_table_add(t, (struct sockaddr *)&a), 2);
    conn_table_free(t);
}

static void test_v4_and_v6_differ(void **state)
{
    (void)state;
    struct conn_table *t = conn_table_new(4);
    struct sockaddr_in a = v4(0x7f000001);
    struct sockaddr_in6 six = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::1", &six.sin6_addr);
    assert_int_equal(conn_table_add(t, (struct sockaddr *)&a), 1);
    assert_int_equal(conn_table_add(t, (struct sockaddr *)&six), 1);
    conn_table_free(t);
}

static void test_full_table_refuses(void **state)
{
    (void)state;
    struct conn_table *t = conn_table_new(3);
    for (uint32_t i = 0; i < 3; i++) {
        struct sockaddr_in a = v4(i);
        assert_int_equal(conn_table_add(t, (struct sockaddr *)&a), 1);
    }
    struct sockaddr_in extra = v4(99);
    assert_int_equal(conn_table_add(t, (struct sockaddr *)&extra), 0);
    struct sockaddr_in first = v4(0);
    conn_table_remove(t, (struct sockaddr *)&first);
    assert_int_equal(conn_table_add(t, (struct sockaddr *)&extra), 1);
    conn_table_free(t);
}

#define MODEL_ADDRS 300

static void test_random_against_model(void **state)
{
    (void)state;
    unsigned model[MODEL_ADDRS] = {0};
    struct conn_table *t = conn_table_new(MODEL_ADDRS);
    srand(12345);
    for (int step = 0; step < 200000; step++) {
        uint32_t ip = (uint32_t)(rand() % MODEL_ADDRS);
        struct sockaddr_in a = v4(ip * 2654435761u); /* spread over the hash */
        if (rand() % 2 && model[ip]) {
            conn_table_remove(t, (struct sockaddr *)&a);
            model[ip]--;
        } else {
            unsigned n = conn_table_add(t, (struct sockaddr *)&a);
            model[ip]++;
            assert_int_equal(n, model[ip]);
        }
    }
    conn_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_v4_and_v6_differ),
        cmocka_unit_test(test_full_table_refuses),
        cmocka_unit_test(test_random_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
