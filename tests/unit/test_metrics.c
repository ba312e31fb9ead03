/*
 * metrics (src/observe/metrics.h, histogram.h, metrics_registry.h): fixed-bucket
 * histograms summed over workers and rendered cumulatively, label value
 * escaping, label slots that survive reloads and overflow into "other", and
 * the rendered exposition of per-worker counters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/buffer.h>

#include "observe/histogram.h"
#include "observe/metrics.h"
#include "observe/metrics_registry.h"

/* The evbuffer's text, NUL-terminated (caller frees). */
static char *text_of(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    return s;
}

/* Observations fall in the first bucket whose bound is >= the value (le). */
static void test_histogram_buckets(void **state)
{
    struct hist h = {0};
    hist_observe(&h, &hist_bounds_http, 0);        /* le 0.005 */
    hist_observe(&h, &hist_bounds_http, 5000);     /* exactly 0.005: le 0.005 */
    hist_observe(&h, &hist_bounds_http, 5001);     /* le 0.01 */
    hist_observe(&h, &hist_bounds_http, 999999);   /* le 1 */
    hist_observe(&h, &hist_bounds_http, 10000000); /* le 10 */
    hist_observe(&h, &hist_bounds_http, 10000001); /* +Inf */
    assert_int_equal(h.bucket[0], 2);
    assert_int_equal(h.bucket[1], 1);
    assert_int_equal(h.bucket[7], 1);
    assert_int_equal(h.bucket[10], 1);
    assert_int_equal(h.bucket[HIST_BOUNDS], 1);
    assert_int_equal(h.sum_us, 0 + 5000 + 5001 + 999999 + 10000000 + 10000001);
}

/* Two workers' histograms render as one: cumulative buckets, +Inf == _count. */
static void test_histogram_render(void **state)
{
    struct hist a = {0}, b = {0};
    hist_observe(&a, &hist_bounds_http, 3000);   /* 0.003 s */
    hist_observe(&b, &hist_bounds_http, 200000); /* 0.2 s */
    hist_observe(&b, &hist_bounds_http, 20000000);
    struct hist_sum s = {0};
    hist_sum_add(&s, &a);
    hist_sum_add(&s, &b);
    assert_int_equal(hist_sum_count(&s), 3);
    struct evbuffer *out = evbuffer_new();
    hist_render(out, "x_seconds", "route=\"r\"", &s, &hist_bounds_http);
    char *t = text_of(out);
    assert_non_null(strstr(t, "x_seconds_bucket{route=\"r\",le=\"0.005\"} 1\n"));
    assert_non_null(strstr(t, "x_seconds_bucket{route=\"r\",le=\"0.1\"} 1\n"));
    assert_non_null(strstr(t, "x_seconds_bucket{route=\"r\",le=\"0.25\"} 2\n"));
    assert_non_null(strstr(t, "x_seconds_bucket{route=\"r\",le=\"10\"} 2\n"));
    assert_non_null(strstr(t, "x_seconds_bucket{route=\"r\",le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(t, "x_seconds_sum{route=\"r\"} 20.203000\n"));
    assert_non_null(strstr(t, "x_seconds_count{route=\"r\"} 3\n"));
    free(t);
    hist_render(out, "y_seconds", "", &s, &hist_bounds_redis); /* no labels */
    t = text_of(out);
    assert_non_null(strstr(t, "y_seconds_bucket{le=\"0.0001\"} 1\n")); /* the same counts */
    assert_non_null(strstr(t, "y_seconds_count 3\n"));
    free(t);
    evbuffer_free(out);
}

static void test_label_escaping(void **state)
{
    struct evbuffer *out = evbuffer_new();
    metrics_label_value(out, "a\\b\"c\nd/e");
    char *t = text_of(out);
    assert_string_equal(t, "a\\\\b\\\"c\\nd/e");
    free(t);
    evbuffer_free(out);
    char buf[16];
    assert_int_equal(metrics_label_value_buf(buf, sizeof buf, "x\"y"), 4);
    assert_string_equal(buf, "x\\\"y");
    /* cut before an escape that does not fit, never half of one */
    assert_int_equal(metrics_label_value_buf(buf, 5, "abc\"d"), 3);
    assert_string_equal(buf, "abc");
}

/* A name keeps its slot (a reload re-registers it); past the cap: "other". */
static void test_registry_slots(void **state)
{
    uint16_t a = metrics_registry_slot(MD_ROUTE, "api");
    uint16_t b = metrics_registry_slot(MD_ROUTE, "web");
    assert_int_not_equal(a, b);
    assert_int_equal(metrics_registry_slot(MD_ROUTE, "api"), a);
    assert_string_equal(metrics_registry_name(MD_ROUTE, a), "api");
    assert_int_equal(metrics_registry_slot(MD_POOL, "api"), 0); /* dimensions are apart */
    for (int i = 0; i < METRICS_SLOTS; i++) {
        char name[32];
        snprintf(name, sizeof name, "rule%d", i);
        metrics_registry_slot(MD_RULE, name);
    }
    assert_int_equal(metrics_registry_count(MD_RULE), METRICS_SLOTS);
    assert_int_equal(metrics_registry_slot(MD_RULE, "one_too_many"), METRICS_SLOT_OTHER);
    assert_int_equal(metrics_registry_slot(MD_RULE, "rule7"), 7);
    assert_string_equal(metrics_registry_name(MD_RULE, METRICS_SLOT_OTHER), "other");
    assert_string_equal(metrics_registry_name(MD_ROUTE, METRICS_SLOT_NONE), "none");
}

/* Per-worker counts are summed at render, by route, class and protocol. */
static void test_render_sums_workers(void **state)
{
    struct metrics *w[2] = {calloc(1, sizeof **w), calloc(1, sizeof **w)};
    uint16_t api = metrics_registry_slot(MD_ROUTE, "api");
    metrics_request(w[0], api, false, 200, 1000);
    metrics_request(w[1], api, false, 204, 2000);
    metrics_request(w[1], api, true, 503, 3000);
    metrics_request(w[1], api, true, 0, 3000); /* no status: only the duration */
    metrics_auth(w[0], AR_REJECTED, AN_EXPIRED);
    metrics_tls_failed(w[1], TF_TIMEOUT);
    metrics_inc(w[0], M_REQUESTS);
    metrics_inc(w[1], M_REQUESTS);
    struct evbuffer *out = evbuffer_new();
    metrics_render(out, w, 2, NULL);
    char *t = text_of(out);
    assert_non_null(strstr(
        t, "moat_http_requests_total{route=\"api\",code_class=\"2xx\",protocol=\"http/1.1\"} 2\n"));
    assert_non_null(strstr(
        t, "moat_http_requests_total{route=\"api\",code_class=\"5xx\",protocol=\"h2\"} 1\n"));
    assert_non_null(strstr(t, "moat_request_duration_seconds_count{route=\"api\"} 4\n"));
    assert_non_null(
        strstr(t, "moat_auth_results_total{result=\"rejected\",reason=\"expired\"} 1\n"));
    assert_non_null(strstr(t, "moat_tls_handshake_failures_total{reason=\"timeout\"} 1\n"));
    assert_non_null(strstr(t, "moat_requests_received_total 2\n"));
    assert_non_null(strstr(t, "# TYPE moat_request_duration_seconds histogram\n"));
    assert_non_null(strstr(t, "moat_build_info{version=\""));
    free(t);
    evbuffer_free(out);
    free(w[0]);
    free(w[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_histogram_buckets),   cmocka_unit_test(test_histogram_render),
        cmocka_unit_test(test_label_escaping),      cmocka_unit_test(test_registry_slots),
        cmocka_unit_test(test_render_sums_workers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
