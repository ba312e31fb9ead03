/* audit_limit: the per-client and per-thread bound on refusal events (src/observe/audit_limit.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "observe/audit_limit.h"

/* Times far apart per test: the budget is per thread and outlives each test. */
static void test_client_burst_then_suppressed(void **state)
{
    uint64_t t = 1000000, left_out = 99;
    for (int i = 0; i < AUDIT_CLIENT_BURST; i++) {
        assert_true(audit_limit_admit("192.0.2.1", t + (uint64_t)i, &left_out));
        assert_int_equal(left_out, 0);
    }
    for (int i = 0; i < 7; i++)
        assert_false(audit_limit_admit("192.0.2.1", t + 10, &left_out));
    /* another client has its own budget */
    assert_true(audit_limit_admit("192.0.2.2", t + 10, &left_out));
    assert_int_equal(left_out, 0);
    /* the next window: let through, saying how many were left out */
    assert_true(audit_limit_admit("192.0.2.1", t + AUDIT_CLIENT_WINDOW_MS, &left_out));
    assert_int_equal(left_out, 7);
    assert_true(audit_limit_admit("192.0.2.1", t + AUDIT_CLIENT_WINDOW_MS + 1, &left_out));
    assert_int_equal(left_out, 0);
}

/* Many addresses (a flood from a /64): at most AUDIT_THREAD_PER_SEC events a second. */
static void test_thread_cap(void **state)
{
    uint64_t t = 5000000, left_out;
    char ip[32];
    int admitted = 0;
    for (int i = 0; i < 500; i++) {
        snprintf(ip, sizeof ip, "2001:db8::%x", i);
        admitted += audit_limit_admit(ip, t + (uint64_t)i, &left_out);
    }
    assert_int_equal(admitted, AUDIT_THREAD_PER_SEC);
    assert_true(audit_limit_admit("198.51.100.7", t + 1000, &left_out));
    assert_int_equal(left_out, 500 - AUDIT_THREAD_PER_SEC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_burst_then_suppressed),
        cmocka_unit_test(test_thread_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
