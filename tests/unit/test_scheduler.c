/* Unit tests of the queue scheduler (scheduler.c): ordering, due lists,
 * in-flight exclusion, back-off. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler.h"

/* A valid queue id whose order follows n. */
static const char *qid_n(unsigned n, char buf[QID_SIZE])
{
    snprintf(buf, QID_SIZE, "AAAAAA%08u", n);
    return buf;
}

static void test_backoff(void **state)
{
    (void)state;
    /* first retry: within retry_min */
    assert_int_equal(sched_backoff(1000, 1000, 60, 900), 60);
    assert_int_equal(sched_backoff(1000, 1030, 60, 900), 60);
    /* then the age: the delays roughly double */
    assert_int_equal(sched_backoff(1000, 1060, 60, 900), 60);
    assert_int_equal(sched_backoff(1000, 1120, 60, 900), 120);
    assert_int_equal(sched_backoff(1000, 1240, 60, 900), 240);
    assert_int_equal(sched_backoff(1000, 1480, 60, 900), 480);
    /* up to the queue interval */
    assert_int_equal(sched_backoff(1000, 1960, 60, 900), 900);
    assert_int_equal(sched_backoff(1000, 1000 + 5 * 86400, 60, 900), 900);
    /* arrival in the future (clock stepped back): like now */
    assert_int_equal(sched_backoff(5000, 1000, 60, 900), 60);
    /* degenerate configuration */
    assert_int_equal(sched_backoff(1000, 1000, 0, 0), 1);
    assert_int_equal(sched_backoff(1000, 9000, 600, 60), 600);
}

/* Retried exactly on time, a message sees 60, 60, 120, 240, 480, 900, 900... */
static void test_backoff_sequence_doubles(void **state)
{
    (void)state;
    const int64_t want[] = {60, 60, 120, 240, 480, 900, 900, 900};
    int64_t arrival = 100, now = arrival;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int64_t d = sched_backoff(arrival, now, 60, 900);
        assert_int_equal(d, want[i]);
        now += d;
    }
}

static void test_order_by_time_then_id(void **state)
{
    (void)state;
    struct scheduler *s = sched_new();
    char b[QID_SIZE], got[QID_SIZE];
    assert_int_equal(sched_add(s, qid_n(5, b), 300), 1);
    assert_int_equal(sched_add(s, qid_n(3, b), 100), 1);
    assert_int_equal(sched_add(s, qid_n(9, b), 100), 1);
    assert_int_equal(sched_add(s, qid_n(1, b), 200), 1);
    assert_int_equal(sched_add(s, qid_n(2, b), 100), 1);
    int64_t t;
    assert_true(sched_next_time(s, &t));
    assert_int_equal(t, 100);
    const unsigned want[] = {2, 3, 9, 1, 5};
    for (size_t i = 0; i < 5; i++) {
        assert_true(sched_take_due(s, 1000, got));
        assert_string_equal(got, qid_n(want[i], b));
    }
    assert_false(sched_take_due(s, 1000, got));
    assert_false(sched_next_time(s, &t));
    assert_int_equal(sched_in_flight(s), 5);
    sched_free(s);
}

static void test_due_only(void **state)
{
    (void)state;
    struct scheduler *s = sched_new();
    char b[QID_SIZE], got[QID_SIZE];
    sched_add(s, qid_n(1, b), 100);
    sched_add(s, qid_n(2, b), 200);
    sched_add(s, qid_n(3, b), 300);
    assert_false(sched_take_due(s, 99, got));
    assert_true(sched_take_due(s, 100, got));
    assert_string_equal(got, qid_n(1, b));
    assert_false(sched_take_due(s, 199, got));
    assert_true(sched_take_due(s, 250, got));
    assert_string_equal(got, qid_n(2, b));
    assert_false(sched_take_due(s, 250, got));
    int64_t t;
    assert_true(sched_next_time(s, &t));
    assert_int_equal(t, 300);
    sched_free(s);
}

static void test_add_known_moves_earlier_only(void **state)
{
    (void)state;
    struct scheduler *s = sched_new();
    char b[QID_SIZE], got[QID_SIZE];
    sched_add(s, qid_n(1, b), 100);
    sched_add(s, qid_n(2, b), 500);
    assert_int_equal(sched_add(s, qid_n(2, b), 50), 0);  /* earlier: moves */
    assert_int_equal(sched_add(s, qid_n(1, b), 900), 0); /* later: stays */
    assert_int_equal(sched_waiting(s), 2);
    assert_true(sched_take_due(s, 60, got));
    assert_string_equal(got, qid_n(2, b));
    assert_false(sched_take_due(s, 99, got));
    assert_true(sched_take_due(s, 100, got));
    assert_string_equal(got, qid_n(1, b));
    sched_free(s);
}

static void test_in_flight_never_handed_twice(void **state)
{
    (void)state;
    struct scheduler *s = sched_new();
    char b[QID_SIZE], got[QID_SIZE];
    sched_add(s, qid_n(7, b), 10);
    assert_true(sched_take_due(s, 10, got));
    /* announcements and queue runs during the flight change nothing */
    assert_int_equal(sched_add(s, qid_n(7, b), 0), 0);
    sched_all_due(s, 1000);
    assert_true(sched_known(s, qid_n(7, b)));
    assert_false(sched_take_due(s, 1000, got));
    assert_int_equal(sched_in_flight(s), 1);
    assert_int_equal(sched_waiting(s), 0);
    /* deferred: back in the heap at its new time */
    sched_release(s, qid_n(7, b), 70);
    assert_int_equal(sched_in_flight(s), 0);
    assert_false(sched_take_due(s, 69, got));
    assert_true(sched_take_due(s, 70, got));
    /* delivered: forgotten */
    sched_release(s, qid_n(7, b), -1);
    assert_false(sched_known(s, qid_n(7, b)));
    assert_int_equal(sched_in_flight(s), 0);
    assert_int_equal(sched_add(s, qid_n(7, b), 5), 1); /* new again */
    sched_free(s);
}

static void test_all_due(void **state)
{
    (void)state;
    struct scheduler *s = sched_new();
    char b[QID_SIZE], got[QID_SIZE];
    for (unsigned i = 0; i < 50; i++)
        sched_add(s, qid_n(49 - i, b), 10000 + (int64_t)i * 37 % 11);
    sched_add(s, qid_n(100, b), 5); /* already due: keeps its time */
    sched_all_due(s, 1000);
    assert_true(sched_take_due(s, 1000, got));
    assert_string_equal(got, qid_n(100, b));
    for (unsigned i = 0; i < 50; i++) { /* now by id: arrival order */
        assert_true(sched_take_due(s, 1000, got));
        assert_string_equal(got, qid_n(i, b));
    }
    assert_false(sched_take_due(s, 1000, got));
    sched_free(s);
}

static void test_invalid_and_unknown_ids(void **state)
{
    (void)state;
    struct scheduler *s = sched_new();
    assert_int_equal(sched_add(s, "../etc/passwd", 1), -1);
    assert_int_equal(sched_add(s, "", 1), -1);
    assert_int_equal(sched_add(s, "AAAAAA0000000", 1), -1);   /* 13 chars */
    assert_int_equal(sched_add(s, "AAAAAA000000000", 1), -1); /* 15 chars */
    assert_false(sched_known(s, "nonsense"));
    sched_release(s, "AAAAAA00000001", 5); /* unknown: ignored */
    sched_release(s, "bad", -1);
    assert_int_equal(sched_waiting(s), 0);
    assert_int_equal(sched_in_flight(s), 0);
    sched_free(s);
}

static void test_forget_waiting(void **state)
{
    (void)state;
    struct scheduler *s = sched_new();
    char b[QID_SIZE], got[QID_SIZE];
    for (unsigned i = 0; i < 10; i++)
        sched_add(s, qid_n(i, b), i);
    sched_release(s, qid_n(0, b), -1);
    sched_release(s, qid_n(5, b), -1);
    sched_release(s, qid_n(9, b), 100); /* a waiting one moved later */
    assert_int_equal(sched_waiting(s), 8);
    const unsigned want[] = {1, 2, 3, 4, 6, 7, 8, 9};
    for (size_t i = 0; i < 8; i++) {
        assert_true(sched_take_due(s, 100, got));
        assert_string_equal(got, qid_n(want[i], b));
    }
    sched_free(s);
}

/* The heap against a brute-force model, with random operations. */
static void test_random_against_model(void **state)
{
    (void)state;
    enum { N = 200 };
    int64_t model[N]; /* -1 absent, -2 in flight, else when */
    for (int i = 0; i < N; i++)
        model[i] = -1;
    struct scheduler *s = sched_new();
    char b[QID_SIZE], got[QID_SIZE];
    srand(12345);
    for (int step = 0; step < 20000; step++) {
        unsigned i = (unsigned)rand() % N;
        int64_t t = rand() % 1000;
        switch (rand() % 4) {
        case 0:
            sched_add(s, qid_n(i, b), t);
            if (model[i] == -1 || (model[i] >= 0 && t < model[i]))
                model[i] = t;
            break;
        case 1:
            if (model[i] == -2 || model[i] >= 0) {
                sched_release(s, qid_n(i, b), t % 3 ? t : -1);
                model[i] = t % 3 ? t : -1;
            }
            break;
        default: {
            int best = -1;
            for (int k = 0; k < N; k++)
                if (model[k] >= 0 && model[k] <= t && (best < 0 || model[k] < model[best]))
                    best = k;
            bool took = sched_take_due(s, t, got);
            assert_int_equal(took, best >= 0);
            if (took) {
                assert_string_equal(got, qid_n((unsigned)best, b));
                model[best] = -2;
            }
        }
        }
    }
    size_t waiting = 0, flying = 0;
    for (int k = 0; k < N; k++)
        waiting += model[k] >= 0, flying += model[k] == -2;
    assert_int_equal(sched_waiting(s), waiting);
    assert_int_equal(sched_in_flight(s), flying);
    sched_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_backoff_sequence_doubles),
        cmocka_unit_test(test_order_by_time_then_id),
        cmocka_unit_test(test_due_only),
        cmocka_unit_test(test_add_known_moves_earlier_only),
        cmocka_unit_test(test_in_flight_never_handed_twice),
        cmocka_unit_test(test_all_due),
        cmocka_unit_test(test_invalid_and_unknown_ids),
        cmocka_unit_test(test_forget_waiting),
        cmocka_unit_test(test_random_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
