/*
 * Unit tests for src/http/h2_head.c: an HTTP/2 head checked against RFC 9113
 * §8 and rewritten as HTTP/1.1 (docs/http2.md, "Refused heads").
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http/h2_head.h"

static const struct h2_head_limits LIM = {16384, 100};

static void field(struct h2_head *h, const char *name, const char *value)
{
    h2_head_field(h, &LIM, (const uint8_t *)name, strlen(name), (const uint8_t *)value,
                  strlen(value));
}

static void start(struct h2_head *h, const char *method, const char *path)
{
    assert_int_equal(h2_head_init(h), 0);
    field(h, ":method", method);
    field(h, ":scheme", "https");
    field(h, ":authority", "app.example:8443");
    field(h, ":path", path);
}

/* The composed head, or "" when refused or too large. */
static const char *compose(struct h2_head *h, bool chunked, char *buf, size_t cap)
{
    h2_head_finish(h);
    size_t n = h->bad ? 0 : h2_head_compose(h, chunked, buf, cap - 1);
    buf[n] = 0;
    return buf;
}

static void expect_refused(struct h2_head *h, int status)
{
    h2_head_finish(h);
    assert_true(h->bad);
    assert_int_equal(h->bad_status, status);
    h2_head_clear(h);
}

static void test_get_becomes_http11_with_joined_cookies(void **state)
{
    struct h2_head h;
    char buf[512];
    start(&h, "GET", "/a?b=1");
    field(&h, "accept", "*/*");
    field(&h, "cookie", "a=1");
    field(&h, "te", "trailers");
    field(&h, "cookie", "b=2");
    field(&h, "host", "APP.example:8443"); /* same authority, any case */
    assert_string_equal(compose(&h, false, buf, sizeof buf),
                        "GET /a?b=1 HTTP/1.1\r\nHost: app.example:8443\r\naccept: */*\r\n"
                        "Cookie: a=1; b=2\r\n\r\n");
    h2_head_clear(&h);
}

static void test_body_framing(void **state)
{
    struct h2_head h;
    char buf[512];
    start(&h, "POST", "/up");
    assert_string_equal(compose(&h, true, buf, sizeof buf),
                        "POST /up HTTP/1.1\r\nHost: app.example:8443\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n");
    h2_head_clear(&h);
    start(&h, "POST", "/up");
    field(&h, "content-length", "0");
    assert_true(h.has_cl);
    assert_true(h.cl_zero);
    h2_head_clear(&h);
}

static void test_host_alone_is_the_authority(void **state)
{
    struct h2_head h;
    char buf[512];
    assert_int_equal(h2_head_init(&h), 0);
    field(&h, ":method", "GET");
    field(&h, ":scheme", "https");
    field(&h, ":path", "/");
    field(&h, "host", "h.example");
    assert_string_equal(compose(&h, false, buf, sizeof buf),
                        "GET / HTTP/1.1\r\nHost: h.example\r\n\r\n");
    h2_head_clear(&h);
}

static void test_refused_fields(void **state)
{
    static const char *const fields[][2] = {
        {"connection", "close"},
        {"keep-alive", "5"},
        {"proxy-connection", "x"},
        {"transfer-encoding", "chunked"},
        {"upgrade", "websocket"},
        {"te", "gzip"},
        {"X-Upper", "1"},
        {"a b", "1"},
        {"x", " leading"},
        {"x", "trailing\t"},
        {":authority", "\tapp.example"},
        {"x", "a\rb"},
        {"x", "a\nb"},
        {"host", "other.example"},
        {"", "empty name"},
    };
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        struct h2_head h;
        start(&h, "GET", "/");
        field(&h, fields[i][0], fields[i][1]);
        expect_refused(&h, 400);
    }
    struct h2_head h; /* NUL inside a value */
    start(&h, "GET", "/");
    h2_head_field(&h, &LIM, (const uint8_t *)"x", 1, (const uint8_t *)"a\0b", 3);
    expect_refused(&h, 400);
}

static void test_pseudo_header_rules(void **state)
{
    struct h2_head h;
    start(&h, "GET", "/");
    field(&h, "accept", "*/*");
    field(&h, ":path", "/late");
    expect_refused(&h, 400);
    start(&h, "GET", "/");
    field(&h, ":path", "/again");
    expect_refused(&h, 400);
    start(&h, "GET", "/");
    field(&h, ":protocol", "websocket");
    expect_refused(&h, 400);
    assert_int_equal(h2_head_init(&h), 0);
    field(&h, ":method", "GET");
    field(&h, ":scheme", "http");
    field(&h, ":authority", "a");
    field(&h, ":path", "/");
    expect_refused(&h, 400);
    assert_int_equal(h2_head_init(&h), 0); /* no :path */
    field(&h, ":method", "GET");
    field(&h, ":scheme", "https");
    field(&h, ":authority", "a");
    expect_refused(&h, 400);
    assert_int_equal(h2_head_init(&h), 0); /* neither :authority nor host */
    field(&h, ":method", "GET");
    field(&h, ":scheme", "https");
    field(&h, ":path", "/");
    expect_refused(&h, 400);
    start(&h, "CONNECT", "/");
    expect_refused(&h, 405);
}

static void test_limits(void **state)
{
    struct h2_head_limits small = {64, 2};
    struct h2_head h;
    start(&h, "GET", "/");
    h2_head_field(&h, &small, (const uint8_t *)"a", 1, (const uint8_t *)"1", 1);
    h2_head_field(&h, &small, (const uint8_t *)"b", 1, (const uint8_t *)"1", 1);
    h2_head_field(&h, &small, (const uint8_t *)"c", 1, (const uint8_t *)"1", 1);
    expect_refused(&h, 431);
    start(&h, "GET", "/");
    char big[80];
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = 0;
    h2_head_field(&h, &small, (const uint8_t *)"a", 1, (const uint8_t *)big, strlen(big));
    expect_refused(&h, 431);
    /* a buffer too small to compose into: 0, nothing half written counts */
    char buf[24];
    start(&h, "GET", "/");
    assert_string_equal(compose(&h, false, buf, sizeof buf), "");
    h2_head_clear(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_becomes_http11_with_joined_cookies),
        cmocka_unit_test(test_body_framing),
        cmocka_unit_test(test_host_alone_is_the_authority),
        cmocka_unit_test(test_refused_fields),
        cmocka_unit_test(test_pseudo_header_rules),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
