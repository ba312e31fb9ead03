/*
 * Unit tests for the instance-wide upstream state: entries shared across
 * generations, outlier ejection (count, multiplier, cap on the ejected share),
 * active-check rise/fall, slow start and the retry budget.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"
#include "upstream/upstream_state.h"

#define POOL                                                                                       \
    "listen: { https: [], http: [\"127.0.0.1:8080\"] }\n"                                          \
    "routes: [ { upstream: app, auth: none } ]\n"

static struct config *load(const char *upstreams)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml, "%supstreams:\n%s", POOL, upstreams);
    struct config_errors errs = {0};
    struct config *c = config_load_string("t.yaml", yaml, false, &errs);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    config_errors_free(&errs);
    assert_non_null(c);
    return c;
}

static const char *const THREE = "  app:\n"
                                 "    servers: [\"127.0.0.1:1 weight=4\", \"127.0.0.1:2\", "
                                 "\"127.0.0.1:3\"]\n"
                                 "    outlier: { consecutive_errors: 3, base_ejection: 10s, "
                                 "max_ejection: 25s, max_ejected_percent: 34 }\n"
                                 "    slow_start: 10s\n"
                                 "    health: { path: /h, rise: 2, fall: 3 }\n"
                                 "    retry: { budget_percent: 20, min_retries: 2, window: 10s }\n";

static void test_weights_parse(void **state)
{
    (void)state;
    struct config *c = load(THREE);
    const struct config_upstream *u = &c->upstreams[0];
    assert_string_equal(u->servers[0].text, "127.0.0.1:1");
    assert_int_equal(u->servers[0].weight, 4);
    assert_int_equal(u->servers[1].weight, 1);
    assert_int_equal(u->health.status_min, 200);
    assert_int_equal(u->health.status_max, 399);
    config_unref(c);
}

static void test_states_survive_generations(void **state)
{
    (void)state;
    struct config *c = load(THREE);
    struct upstream_states *a = upstream_states_acquire(c);
    struct upstream_states *b = upstream_states_acquire(c);
    assert_ptr_equal(a->servers[0][1], b->servers[0][1]); /* the same server, shared */
    assert_ptr_equal(a->pools[0], b->pools[0]);
    assert_null(a->servers[0][3]); /* NULL-ended */
    atomic_store(&a->servers[0][1]->draining, true);
    upstream_states_release(a);
    assert_true(atomic_load(&b->servers[0][1]->draining)); /* kept while b names it */
    upstream_states_release(b);
    struct upstream_states *fresh = upstream_states_acquire(c);
    assert_false(atomic_load(&fresh->servers[0][1]->draining)); /* gone with the last ref */
    upstream_states_release(fresh);
    config_unref(c);
}

static void test_ejection_counts_multiplies_and_caps(void **state)
{
    (void)state;
    struct config *c = load(THREE);
    const struct config_upstream *u = &c->upstreams[0];
    struct upstream_states *us = upstream_states_acquire(c);
    struct server_state **s = us->servers[0];
    uint64_t now = 1000000;
    assert_false(server_state_outcome(s[0], u, s, false, now));
    assert_false(server_state_outcome(s[0], u, s, true, now)); /* a success resets the count */
    assert_false(server_state_outcome(s[0], u, s, false, now));
    assert_false(server_state_outcome(s[0], u, s, false, now));
    assert_true(server_state_outcome(s[0], u, s, false, now));
    assert_int_equal(server_state_avail(s[0], now), AVAIL_EJECTED);
    assert_int_equal(server_state_avail(s[0], now + 10000), AVAIL_UP);
    /* 34 % of three is one: a second server cannot be ejected meanwhile */
    for (int i = 0; i < 5; i++)
        assert_false(server_state_outcome(s[1], u, s, false, now));
    assert_int_equal(server_state_avail(s[1], now), AVAIL_UP);
    /* ejected again: twice the base; a third time capped at max_ejection */
    now += 10000;
    for (int i = 0; i < 3; i++)
        server_state_outcome(s[0], u, s, false, now);
    assert_int_equal(server_state_avail(s[0], now + 19999), AVAIL_EJECTED);
    assert_int_equal(server_state_avail(s[0], now + 20000), AVAIL_UP);
    now += 20000;
    for (int i = 0; i < 3; i++)
        server_state_outcome(s[0], u, s, false, now);
    assert_int_equal(server_state_avail(s[0], now + 24999), AVAIL_EJECTED);
    assert_int_equal(server_state_avail(s[0], now + 25000), AVAIL_UP);
    assert_int_equal(atomic_load(&s[0]->ejections_total), 3);
    upstream_states_release(us);
    config_unref(c);
}

static void test_check_rise_and_fall(void **state)
{
    (void)state;
    struct config *c = load(THREE);
    const struct config_upstream *u = &c->upstreams[0];
    struct upstream_states *us = upstream_states_acquire(c);
    struct server_state *s = us->servers[0][0];
    uint64_t now = 5000;
    assert_true(server_state_check(s, u, CHECK_PASSED, 200, now) == false);
    /* up: three failures in a row (fall) mark it down, and only the third says so */
    assert_false(server_state_check(s, u, CHECK_TIMEOUT, 0, now));
    assert_false(server_state_check(s, u, CHECK_BAD_STATUS, 500, now));
    assert_true(server_state_check(s, u, CHECK_CONNECT_FAILED, 0, now));
    assert_int_equal(server_state_avail(s, now), AVAIL_DOWN);
    assert_false(server_state_check(s, u, CHECK_TIMEOUT, 0, now));
    /* two passes (rise) bring it back, from where slow start ramps */
    assert_false(server_state_check(s, u, CHECK_PASSED, 200, now));
    assert_true(server_state_check(s, u, CHECK_PASSED, 200, now + 100));
    assert_int_equal(server_state_avail(s, now + 100), AVAIL_UP);
    assert_int_equal(server_state_weight(s, 10, 10000, now + 100), 1);
    assert_int_equal(server_state_weight(s, 10, 10000, now + 5100), 5);
    assert_int_equal(server_state_weight(s, 10, 10000, now + 10100), 10);
    assert_int_equal(server_state_weight(s, 10, 0, now + 100), 10); /* slow start off */
    upstream_states_release(us);
    config_unref(c);
}

static void test_first_failed_probe_marks_down(void **state)
{
    (void)state;
    struct config *c = load(THREE);
    struct upstream_states *us = upstream_states_acquire(c);
    struct server_state *s = us->servers[0][2];
    assert_true(server_state_check(s, &c->upstreams[0], CHECK_CONNECT_FAILED, 0, 1));
    assert_int_equal(server_state_avail(s, 1), AVAIL_DOWN);
    upstream_states_release(us);
    config_unref(c);
}

static void test_retry_budget(void **state)
{
    (void)state;
    struct config *c = load(THREE);
    const struct config_upstream *u = &c->upstreams[0];
    struct upstream_states *us = upstream_states_acquire(c);
    struct pool_state *p = us->pools[0];
    uint64_t now = 100000;
    /* min_retries: two, even without traffic */
    assert_true(pool_state_take_retry(p, u, now));
    assert_true(pool_state_take_retry(p, u, now));
    assert_false(pool_state_take_retry(p, u, now));
    /* 50 requests: 20 % is 10 retries in the window, the two taken count */
    for (int i = 0; i < 50; i++)
        pool_state_count_request(p, u, now);
    int more = 0;
    while (pool_state_take_retry(p, u, now) && more < 100)
        more++;
    assert_int_equal(more, 8);
    assert_int_equal(atomic_load(&p->retries_denied_total), 2);
    /* a window later everything has aged out: the minimum again */
    now += 10000;
    assert_true(pool_state_take_retry(p, u, now));
    assert_true(pool_state_take_retry(p, u, now));
    assert_false(pool_state_take_retry(p, u, now));
    upstream_states_release(us);
    config_unref(c);
}

static void test_bad_server_options_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "  app: { servers: [\"127.0.0.1:1 weight=0\"] }\n",
        "  app: { servers: [\"127.0.0.1:1 weight=1001\"] }\n",
        "  app: { servers: [\"127.0.0.1:1 weigh=2\"] }\n",
        "  app: { servers: [\"127.0.0.1:1\"], health: { status: \"600\" } }\n",
        "  app: { servers: [\"127.0.0.1:1\"], health: { status: \"300-200\" } }\n",
        "  app: { servers: [\"127.0.0.1:1\"], admission: { tenant_limits: [\"acme\"] } }\n",
        "  app: { servers: [\"127.0.0.1:1\"], admission: { tenant_limits: [\"a b=1\"] } }\n",
        "  app: { servers: [\"127.0.0.1:1\"], balance: random }\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char yaml[1024];
        snprintf(yaml, sizeof yaml, "%supstreams:\n%s", POOL, bad[i]);
        struct config_errors errs = {0};
        struct config *c = config_load_string("t.yaml", yaml, false, &errs);
        if (c)
            fprintf(stderr, "accepted: %s", bad[i]);
        assert_null(c);
        assert_int_equal(errs.count, 1); /* that option's error, nothing else */
        assert_non_null(strstr(errs.msgs[0], "upstreams.app."));
        config_errors_free(&errs);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weights_parse),
        cmocka_unit_test(test_states_survive_generations),
        cmocka_unit_test(test_ejection_counts_multiplies_and_caps),
        cmocka_unit_test(test_check_rise_and_fall),
        cmocka_unit_test(test_first_failed_probe_marks_down),
        cmocka_unit_test(test_retry_budget),
        cmocka_unit_test(test_bad_server_options_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
