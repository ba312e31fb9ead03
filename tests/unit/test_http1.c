/*
 * Unit tests for src/http/http1.c: every accepted form, every refused form with its
 * status, and the resumability promises (same answer however the bytes arrive).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/http1.h"

static const struct http1_limits LIM = {.max_header_bytes = 16384, .max_headers = 100};
static struct http1_request REQ;
static struct http1_response RESP;

/* ---- helpers ---------------------------------------------------------------- */

/* Scans and parses raw[0..n) as a request: 0 on success, the error status, or
 * -2 when the scanner wants more bytes. */
static int req_n(const char *raw, size_t n)
{
    struct http1_scan s = {0};
    int st = 0;
    const char *err = NULL;
    ssize_t r = http1_head_scan(&s, raw, n, LIM.max_header_bytes, &st);
    if (r < 0)
        return st;
    if (r == 0)
        return -2;
    if (http1_parse_request(raw, (size_t)r, &LIM, &REQ, &st, &err) < 0) {
        assert_non_null(err);
        assert_true(st >= 400);
        return st;
    }
    assert_null(err);
    return 0;
}

static int req(const char *raw)
{
    return req_n(raw, strlen(raw));
}

/* The parser alone, for bytes the scanner would already refuse. */
static int parse_only(const char *raw, size_t n)
{
    int st = 0;
    const char *err = NULL;
    if (http1_parse_request(raw, n, &LIM, &REQ, &st, &err) < 0) {
        assert_non_null(err);
        return st;
    }
    return 0;
}

static int resp_m(const char *raw, enum http1_method m)
{
    struct http1_scan s = {0};
    int st = 0;
    const char *err = NULL;
    size_t n = strlen(raw);
    ssize_t r = http1_head_scan(&s, raw, n, LIM.max_header_bytes, &st);
    if (r < 0)
        return -1; /* refused by the scanner */
    if (r == 0)
        return -2;
    if (http1_parse_response(raw, (size_t)r, &LIM, m, &RESP, &err) < 0) {
        assert_non_null(err);
        return -1;
    }
    return 0;
}

static int resp(const char *raw)
{
    return resp_m(raw, HTTP1_M_GET);
}

static bool str_is(struct http1_str s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

#define ASSERT_STR(s, lit) assert_true(str_is((s), (lit)))

/* ---- valid requests ----------------------------------------------------------- */

static void test_get_basic(void **state)
{
    const char *raw = "GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n"
                      "X-Pad:   spaced value \t \r\n\r\nBODY";
    assert_int_equal(req(raw), 0);
    ASSERT_STR(REQ.method, "GET");
    assert_int_equal(REQ.method_id, HTTP1_M_GET);
    ASSERT_STR(REQ.target, "/index.html");
    ASSERT_STR(REQ.path, "/index.html");
    assert_int_equal(REQ.query.len, 0);
    assert_int_equal(REQ.minor_version, 1);
    ASSERT_STR(REQ.host, "example.com");
    assert_int_equal(REQ.num_headers, 3);
    ASSERT_STR(REQ.headers[1].name, "Accept");
    ASSERT_STR(REQ.headers[1].value, "*/*");
    ASSERT_STR(REQ.headers[2].value, "spaced value");
    assert_int_equal(REQ.framing.body, HTTP1_BODY_NONE);
    assert_true(REQ.framing.keep_alive);
    assert_false(REQ.framing.upgrade_websocket);
    assert_false(REQ.framing.expect_continue);
}

static void test_scan_returns_head_length(void **state)
{
    const char *raw = "GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST";
    struct http1_scan s = {0};
    int st = 0;
    ssize_t r = http1_head_scan(&s, raw, strlen(raw), 0, &st);
    assert_int_equal(r, strlen(raw) - 4);
    /* idempotent once complete */
    assert_int_equal(http1_head_scan(&s, raw, strlen(raw), 0, &st), r);
}

static void test_post_content_length(void **state)
{
    assert_int_equal(req("POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"), 0);
    assert_int_equal(REQ.method_id, HTTP1_M_POST);
    assert_int_equal(REQ.framing.body, HTTP1_BODY_LENGTH);
    assert_int_equal(REQ.framing.content_length, 5);
    assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), 0);
    assert_int_equal(REQ.framing.body, HTTP1_BODY_LENGTH);
    assert_int_equal(REQ.framing.content_length, 0);
    /* identical duplicates, as fields or as a list, are one length */
    assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\n"
                         "content-length: 7\r\n\r\n"),
                     0);
    assert_int_equal(REQ.framing.content_length, 7);
    assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7 , 7\r\n\r\n"), 0);
    assert_int_equal(REQ.framing.content_length, 7);
    assert_int_equal(
        req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n"), 0);
    assert_true(REQ.framing.content_length == 9223372036854775807ULL);
}

static void test_post_chunked(void **state)
{
    assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"), 0);
    assert_int_equal(REQ.framing.body, HTTP1_BODY_CHUNKED);
    assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: CHUNKED\r\n\r\n"), 0);
    assert_int_equal(REQ.framing.body, HTTP1_BODY_CHUNKED);
}

static void test_methods(void **state)
{
    static const struct {
        const char *m;
        enum http1_method id;
    } t[] = {
        {"GET", HTTP1_M_GET},         {"HEAD", HTTP1_M_HEAD},      {"POST", HTTP1_M_POST},
        {"PUT", HTTP1_M_PUT},         {"DELETE", HTTP1_M_DELETE},  {"PATCH", HTTP1_M_PATCH},
        {"OPTIONS", HTTP1_M_OPTIONS}, {"TRACE", HTTP1_M_TRACE},    {"get", HTTP1_M_OTHER},
        {"PROPFIND", HTTP1_M_OTHER},  {"M-SEARCH", HTTP1_M_OTHER},
    };
    char buf[128];
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        snprintf(buf, sizeof(buf), "%s / HTTP/1.1\r\nHost: a\r\n\r\n", t[i].m);
        assert_int_equal(req(buf), 0);
        assert_int_equal(REQ.method_id, t[i].id);
        ASSERT_STR(REQ.method, t[i].m);
    }
}

static void test_keep_alive_rules(void **state)
{
    assert_int_equal(req("GET / HTTP/1.0\r\n\r\n"), 0); /* Host optional in 1.0 */
    assert_int_equal(REQ.minor_version, 0);
    assert_false(REQ.framing.keep_alive);
    assert_int_equal(REQ.host.len, 0);
    assert_int_equal(req("GET / HTTP/1.0\r\nHost: a\r\nConnection: Keep-Alive\r\n\r\n"), 0);
    assert_true(REQ.framing.keep_alive);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), 0);
    assert_false(REQ.framing.keep_alive);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n"
                         "Connection: foo, CLOSE\r\n\r\n"),
                     0);
    assert_false(REQ.framing.keep_alive);
}

static void test_options_star_and_connect(void **state)
{
    assert_int_equal(req("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    ASSERT_STR(REQ.target, "*");
    ASSERT_STR(REQ.path, "*");
    assert_int_equal(req("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"), 0);
    assert_int_equal(REQ.method_id, HTTP1_M_CONNECT);
    ASSERT_STR(REQ.target, "example.com:443");
    assert_int_equal(req("CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n"), 0);
    ASSERT_STR(REQ.host, "[::1]:8443");
}

static void test_websocket_upgrade(void **state)
{
    const char *raw = "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
                      "Upgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_int_equal(req(raw), 0);
    assert_true(REQ.framing.upgrade_websocket);
    /* both halves needed */
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"), 0);
    assert_false(REQ.framing.upgrade_websocket);
    assert_int_equal(
        req("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"), 0);
    assert_false(REQ.framing.upgrade_websocket);
    /* Upgrade is ignored in HTTP/1.0, and a websocket handshake is a GET */
    assert_int_equal(req("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"), 0);
    assert_false(REQ.framing.upgrade_websocket);
    assert_int_equal(
        req("POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"), 0);
    assert_false(REQ.framing.upgrade_websocket);
}

static void test_expect(void **state)
{
    assert_int_equal(req("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                         "Expect: 100-Continue\r\n\r\n"),
                     0);
    assert_true(REQ.framing.expect_continue);
    assert_int_equal(req("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n"), 417);
    assert_int_equal(req("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\n\r\n"), 417);
    /* HTTP/1.0: expectations are ignored (RFC 9110 10.1.1) */
    assert_int_equal(req("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"), 0);
    assert_false(REQ.framing.expect_continue);
}

static void test_query_split(void **state)
{
    assert_int_equal(req("GET /a/b?x=1&y=2?z HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    ASSERT_STR(REQ.path, "/a/b");
    ASSERT_STR(REQ.query, "x=1&y=2?z");
    assert_int_equal(req("GET /? HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    ASSERT_STR(REQ.path, "/");
    assert_int_equal(REQ.query.len, 0);
}

/* Builds a request with n header fields (Host included) into buf. */
static size_t build_many(char *buf, size_t cap, size_t n)
{
    size_t len = (size_t)snprintf(buf, cap, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (size_t i = 1; i < n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "X-H%zu: v%zu\r\n", i, i);
    len += (size_t)snprintf(buf + len, cap - len, "\r\n");
    return len;
}

static void test_many_headers(void **state)
{
    static char buf[8192];
    size_t n = build_many(buf, sizeof(buf), 100);
    assert_int_equal(req_n(buf, n), 0);
    assert_int_equal(REQ.num_headers, 100);
    ASSERT_STR(REQ.headers[99].name, "X-H99");
    ASSERT_STR(REQ.headers[99].value, "v99");
    n = build_many(buf, sizeof(buf), 101);
    assert_int_equal(req_n(buf, n), 431);
}

static void test_field_values(void **state)
{
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Tab:\tv\tw\t\r\n"
                         "X-Obs: caf\xc3\xa9\r\n\r\n"),
                     0);
    ASSERT_STR(REQ.headers[1].value, "");
    ASSERT_STR(REQ.headers[2].value, "v\tw");
    ASSERT_STR(REQ.headers[3].value, "caf\xc3\xa9");
}

/* ---- refused requests ---------------------------------------------------------- */

struct bad {
    const char *raw;
    int status;
};

static void check_bad(const struct bad *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int got = req(t[i].raw);
        if (got != t[i].status)
            fail_msg("case %zu: got %d want %d for %s", i, got, t[i].status, t[i].raw);
    }
}

#define H11 "GET / HTTP/1.1\r\nHost: a\r\n"
#define P11 "POST / HTTP/1.1\r\nHost: a\r\n"

static void test_framing_refused(void **state)
{
    static const struct bad t[] = {
        {P11 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {P11 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400},
        {P11 "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
        {P11 "Content-Length: 5, 6\r\n\r\n", 400},
        {P11 "Content-Length: +5\r\n\r\n", 400},
        {P11 "Content-Length: -5\r\n\r\n", 400},
        {P11 "Content-Length: 5 5\r\n\r\n", 400},
        {P11 "Content-Length: 0x5\r\n\r\n", 400},
        {P11 "Content-Length: 5.0\r\n\r\n", 400},
        {P11 "Content-Length:\r\n\r\n", 400},
        {P11 "Content-Length: 5,\r\n\r\n", 400},
        {P11 "Content-Length: ,5\r\n\r\n", 400},
        {P11 "Content-Length: 9223372036854775808\r\n\r\n", 400},
        {P11 "Content-Length: 99999999999999999999999\r\n\r\n", 400},
        {P11 "Transfer-Encoding: gzip\r\n\r\n", 400},
        {P11 "Transfer-Encoding: chunked, gzip\r\n\r\n", 400},
        {P11 "Transfer-Encoding: identity\r\n\r\n", 400},
        {P11 "Transfer-Encoding: xchunked\r\n\r\n", 400},
        {P11 "Transfer-Encoding: chunked;x=1\r\n\r\n", 400},
        {P11 "Transfer-Encoding: chunked, chunked\r\n\r\n", 400},
        {P11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {P11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
        {P11 "Transfer-Encoding:\r\n\r\n", 400},
        {P11 "Transfer-Encoding: chunked,\r\n\r\n", 400},
        {P11 "Transfer-Encoding: \"chunked\"\r\n\r\n", 400},
        {P11 "Transfer-Encoding: gzip, chunked\r\n\r\n", 501},
        {P11 "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
        {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400},
    };
    check_bad(t, sizeof(t) / sizeof(t[0]));
}

static void test_syntax_refused(void **state)
{
    static const struct bad t[] = {
        {H11 "X: a\r\n b\r\n\r\n", 400},             /* obs-fold */
        {H11 "X: a\r\n\tb\r\n\r\n", 400},            /* obs-fold */
        {"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400}, /* space before first field */
        {H11 "X: a\rb\r\n\r\n", 400},                /* bare CR */
        {H11 "X: a\nY: b\r\n\r\n", 400},             /* bare LF */
        {"GET / HTTP/1.1\nHost: a\r\n\r\n", 400},    /* bare LF in request line */
        {H11 "X: a\r\n\n", 400},                     /* bare LF ending the head */
        {H11 "X: a\x01\r\n\r\n", 400},               /* control character */
        {H11 "X: a\x7f\r\n\r\n", 400},               /* DEL */
        {H11 "X: \x1b[31m\r\n\r\n", 400},            /* escape */
        {H11 "X : a\r\n\r\n", 400},                  /* space before colon */
        {H11 "X\t: a\r\n\r\n", 400},                 /* tab before colon */
        {H11 ": a\r\n\r\n", 400},                    /* empty name */
        {H11 "X-(: a\r\n\r\n", 400},                 /* non-token name */
        {H11 "X\xc3\xa9: a\r\n\r\n", 400},           /* non-ASCII name */
        {H11 "NoColon\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\n\r\n", 400}, /* missing Host */
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost:\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a,b\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n", 400},
        {"GET / HTTP/1.0\r\nHost: a b\r\n\r\n", 400},
        {"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400}, /* leading empty line */
    };
    check_bad(t, sizeof(t) / sizeof(t[0]));
}

static void test_request_line_refused(void **state)
{
    static const struct bad t[] = {
        {"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505},
        {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
        {"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505},
        {"GET / HTTP/3.1\r\nHost: a\r\n\r\n", 505},
        {"GET / http/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET / HTTP/1.1x\r\nHost: a\r\n\r\n", 400},
        {"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400},
        {"GET / HTTP/11\r\nHost: a\r\n\r\n", 400},
        {"GET / HTTP/1\r\nHost: a\r\n\r\n", 400},
        {"GET / HTTP/2\r\nHost: a\r\n\r\n", 400},
        {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400},
        {"GET /\r\nHost: a\r\n\r\n", 400},
        {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET /\tHTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET /a\\..\\b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400}, /* absolute-form */
        {"GET a HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"CONNECT a: HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"CONNECT :443 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"CONNECT a:123456 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"CONNECT a:4x3 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    };
    check_bad(t, sizeof(t) / sizeof(t[0]));
}

static void test_nul_refused(void **state)
{
    static const char name[] = "GET / HTTP/1.1\r\nHost: a\r\nX\0Y: a\r\n\r\n";
    static const char value[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
    static const char target[] = "GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_int_equal(req_n(name, sizeof(name) - 1), 400);
    assert_int_equal(req_n(value, sizeof(value) - 1), 400);
    assert_int_equal(req_n(target, sizeof(target) - 1), 400);
    /* the parser refuses them on its own too */
    assert_int_equal(parse_only(name, sizeof(name) - 1), 400);
    assert_int_equal(parse_only(value, sizeof(value) - 1), 400);
    assert_int_equal(parse_only(target, sizeof(target) - 1), 400);
}

static void test_parser_alone_refuses(void **state)
{
    static const char *const t[] = {
        H11 "X: a\rb\r\n\r\n",
        H11 "X: a\nY: b\r\n\r\n",
        H11 "X: a\x01\r\n\r\n",
        H11 "X: a\r\n", /* no end of head */
        H11 "\r\n\r\n", /* bytes after the end */
        H11 "\r\nBODY",
        "",
        "\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        assert_int_equal(parse_only(t[i], strlen(t[i])), 400);
}

static void test_oversize_head(void **state)
{
    static char buf[20000];
    int st = 0;
    const char *err;
    size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(buf + n, 'a', 16384);
    memcpy(buf + n + 16384, "\r\n\r\n", 4);
    assert_int_equal(req_n(buf, n + 16388), 431);
    /* incomplete but already past the limit */
    assert_int_equal(req_n(buf, n + 16384), 431);
    assert_int_equal(req_n(buf, 16000), -2);
    /* the parser checks the size too */
    assert_int_equal(http1_parse_request(buf, n + 16388, &LIM, &REQ, &st, &err), -1);
    assert_int_equal(st, 431);

    /* exactly max_bytes is fine, one more is not */
    const char *raw = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t len = strlen(raw);
    struct http1_scan s = {0};
    assert_int_equal(http1_head_scan(&s, raw, len, len, &st), len);
    memset(&s, 0, sizeof(s));
    assert_int_equal(http1_head_scan(&s, raw, len, len - 1, &st), -1);
    assert_int_equal(st, 431);
    struct http1_limits small = {.max_header_bytes = len - 1, .max_headers = 10};
    assert_int_equal(http1_parse_request(raw, len, &small, &REQ, &st, &err), -1);
    assert_int_equal(st, 431);
}

static void test_null_limits_use_defaults(void **state)
{
    const char *raw = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    int st = 0;
    const char *err;
    assert_int_equal(http1_parse_request(raw, strlen(raw), NULL, &REQ, &st, &err), 0);
    struct http1_limits zero = {0, 0};
    assert_int_equal(http1_parse_request(raw, strlen(raw), &zero, &REQ, &st, &err), 0);
}

/* ---- every split gives the same answer ------------------------------------- */

struct scan_result {
    ssize_t r;
    int status;
};

static struct scan_result scan_whole(const char *raw, size_t n, size_t max)
{
    struct http1_scan s = {0};
    struct scan_result res = {0, 0};
    res.r = http1_head_scan(&s, raw, n, max, &res.status);
    return res;
}

static struct scan_result scan_parts(const char *raw, size_t n, size_t max, size_t cut)
{
    struct http1_scan s = {0};
    struct scan_result res = {0, 0};
    res.r = http1_head_scan(&s, raw, cut, max, &res.status);
    if (res.r == 0)
        res.r = http1_head_scan(&s, raw, n, max, &res.status);
    return res;
}

static struct scan_result scan_bytewise(const char *raw, size_t n, size_t max)
{
    struct http1_scan s = {0};
    struct scan_result res = {0, 0};
    for (size_t i = 0; i <= n && res.r == 0; i++)
        res.r = http1_head_scan(&s, raw, i, max, &res.status);
    return res;
}

static void check_splits(const char *raw, size_t n, size_t max)
{
    struct scan_result w = scan_whole(raw, n, max);
    struct scan_result b = scan_bytewise(raw, n, max);
    assert_int_equal(b.r, w.r);
    if (w.r < 0)
        assert_int_equal(b.status, w.status);
    for (size_t cut = 0; cut <= n; cut++) {
        struct scan_result p = scan_parts(raw, n, max, cut);
        if (p.r != w.r || (w.r < 0 && p.status != w.status))
            fail_msg("cut %zu: got %zd/%d want %zd/%d", cut, p.r, p.status, w.r, w.status);
    }
    /* and the parse of what was found is the same (views are into raw) */
    if (w.r > 0)
        assert_int_equal(req_n(raw, (size_t)w.r), req_n(raw, n));
}

static void test_scan_splits(void **state)
{
    static const char *const t[] = {
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST /x?y HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
        "GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\nb\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\n",
        "\r\nGET / HTTP/1.1\r\n\r\n",
        "\nGET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n X\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\r",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        check_splits(t[i], strlen(t[i]), 0);
        check_splits(t[i], strlen(t[i]), 20); /* and with a limit hit mid-way */
    }
    static const char nul[] = "GET / HTTP/1.1\r\nHost: a\r\nX: \0\r\n\r\n";
    check_splits(nul, sizeof(nul) - 1, 0);
}

/* ---- responses --------------------------------------------------------------- */

static void test_response_basic(void **state)
{
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nContent-Length: 12\r\nServer: x\r\n\r\n"), 0);
    assert_int_equal(RESP.status, 200);
    assert_int_equal(RESP.minor_version, 1);
    ASSERT_STR(RESP.reason, "OK");
    assert_int_equal(RESP.framing.body, HTTP1_BODY_LENGTH);
    assert_int_equal(RESP.framing.content_length, 12);
    assert_true(RESP.framing.keep_alive);
    assert_int_equal(RESP.num_headers, 2);

    assert_int_equal(resp("HTTP/1.1 404 Not  Found \xe9\r\nContent-Length: 0\r\n\r\n"), 0);
    ASSERT_STR(RESP.reason, "Not  Found \xe9");
    assert_int_equal(resp("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"), 0);
    assert_int_equal(RESP.reason.len, 0);
    assert_int_equal(resp("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"), 0);
    assert_int_equal(RESP.reason.len, 0);
    assert_int_equal(RESP.status, 200);
}

static void test_response_framing(void **state)
{
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), 0);
    assert_int_equal(RESP.framing.body, HTTP1_BODY_CHUNKED);
    assert_true(RESP.framing.keep_alive);
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 0);
    assert_int_equal(RESP.framing.body, HTTP1_BODY_CHUNKED);
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), 0);
    assert_int_equal(RESP.framing.body, HTTP1_BODY_UNTIL_CLOSE);
    assert_false(RESP.framing.keep_alive);
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n"), 0);
    assert_int_equal(RESP.framing.body, HTTP1_BODY_UNTIL_CLOSE);
    assert_false(RESP.framing.keep_alive);
    assert_int_equal(resp("HTTP/1.1 204 No Content\r\n\r\n"), 0);
    assert_int_equal(RESP.framing.body, HTTP1_BODY_NONE);
    assert_true(RESP.framing.keep_alive);
    assert_int_equal(resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n"), 0);
    assert_int_equal(RESP.framing.body, HTTP1_BODY_NONE);
    assert_int_equal(resp_m("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", HTTP1_M_HEAD), 0);
    assert_int_equal(RESP.framing.body, HTTP1_BODY_NONE);
    assert_int_equal(resp_m("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP1_M_HEAD),
                     0);
    assert_int_equal(RESP.framing.body, HTTP1_BODY_NONE);
    assert_int_equal(resp_m("HTTP/1.1 200 Connection established\r\n\r\n", HTTP1_M_CONNECT), 0);
    assert_int_equal(RESP.framing.body, HTTP1_BODY_NONE);
    assert_int_equal(resp_m("HTTP/1.1 407 Auth\r\nContent-Length: 2\r\n\r\n", HTTP1_M_CONNECT), 0);
    assert_int_equal(RESP.framing.body, HTTP1_BODY_LENGTH);
    assert_int_equal(resp("HTTP/1.1 100 Continue\r\n\r\n"), 0);
    assert_int_equal(RESP.framing.body, HTTP1_BODY_NONE);
    assert_int_equal(RESP.status, 100);
}

static void test_response_keep_alive_and_upgrade(void **state)
{
    assert_int_equal(resp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"), 0);
    assert_false(RESP.framing.keep_alive);
    assert_int_equal(resp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n"),
                     0);
    assert_true(RESP.framing.keep_alive);
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n"), 0);
    assert_false(RESP.framing.keep_alive);
    assert_int_equal(resp("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                          "Upgrade: websocket\r\nSec-WebSocket-Accept: x\r\n\r\n"),
                     0);
    assert_int_equal(RESP.status, 101);
    assert_true(RESP.framing.upgrade_websocket);
    assert_int_equal(RESP.framing.body, HTTP1_BODY_NONE);
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                          "Content-Length: 0\r\n\r\n"),
                     0);
    assert_false(RESP.framing.upgrade_websocket);
}

static void test_response_refused(void **state)
{
    static const char *const t[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 204 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: \x01\r\n\r\n",
        "HTTP/1.1 200 O\x01K\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 099 OK\r\n\r\n",
        "HTTP/1.1  200 OK\r\n\r\n",
        "HTTP/1.1 2x0 OK\r\n\r\n",
        "HTTP/2.0 200 OK\r\n\r\n",
        "HTTP/1.2 200 OK\r\n\r\n",
        "http/1.1 200 OK\r\n\r\n",
        "HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (resp(t[i]) != -1)
            fail_msg("case %zu accepted: %s", i, t[i]);
}

/* ---- chunked ---------------------------------------------------------------- */

struct dec {
    struct http1_chunked c;
    char out[4096];
    size_t out_len;
    char pend[16384];
    size_t pend_len;
    int res; /* -1 running, else the final enum http1_chunk_result */
    const char *err;
};

static void dec_init(struct dec *d, size_t max_trailer)
{
    memset(&d->c, 0, sizeof(d->c));
    d->c.max_trailer_bytes = max_trailer;
    d->out_len = d->pend_len = 0;
    d->res = -1;
    d->err = NULL;
}

static void dec_drop(struct dec *d, size_t n)
{
    assert_true(n <= d->pend_len);
    memmove(d->pend, d->pend + n, d->pend_len - n);
    d->pend_len -= n;
}

/* Plays the caller: append what arrived, drop framing, move payload out. */
static void dec_feed(struct dec *d, const char *p, size_t n)
{
    if (d->res == HTTP1_CHUNK_ERROR)
        return;
    memcpy(d->pend + d->pend_len, p, n);
    d->pend_len += n; /* after DONE this is the next message: kept as leftover */
    if (d->res == HTTP1_CHUNK_DONE)
        return;
    for (;;) {
        size_t cons;
        uint64_t dl;
        enum http1_chunk_result r =
            http1_chunked_step(&d->c, d->pend, d->pend_len, &cons, &dl, &d->err);
        if (r == HTTP1_CHUNK_ERROR) {
            d->res = r;
            return;
        }
        dec_drop(d, cons);
        if (r == HTTP1_CHUNK_NEED_MORE) {
            assert_int_equal(d->pend_len, 0);
            return;
        }
        if (r == HTTP1_CHUNK_DONE) {
            d->res = r;
            return;
        }
        size_t take = dl < d->pend_len ? (size_t)dl : d->pend_len;
        if (take == 0)
            return;
        assert_true(d->out_len + take <= sizeof(d->out));
        memcpy(d->out + d->out_len, d->pend, take);
        d->out_len += take;
        http1_chunked_data_done(&d->c, take);
        dec_drop(d, take);
    }
}

/* Decodes raw fed in pieces of `step` bytes (0 = whole) or cut once at `cut`. */
static void decode(struct dec *d, const char *raw, size_t n, size_t step, size_t cut,
                   size_t max_trailer)
{
    dec_init(d, max_trailer);
    if (step) {
        for (size_t i = 0; i < n; i += step)
            dec_feed(d, raw + i, n - i < step ? n - i : step);
    } else {
        dec_feed(d, raw, cut);
        dec_feed(d, raw + cut, n - cut);
    }
}

static struct dec D1, D2;

/* Whole, bytewise and every 2-part split agree; returns the whole result in D1. */
static void check_chunked(const char *raw, size_t n, size_t max_trailer)
{
    decode(&D1, raw, n, 0, n, max_trailer);
    for (size_t cut = 0; cut <= n + 1; cut++) {
        if (cut <= n)
            decode(&D2, raw, n, 0, cut, max_trailer);
        else
            decode(&D2, raw, n, 1, 0, max_trailer);
        if (D2.res != D1.res || D2.out_len != D1.out_len ||
            memcmp(D2.out, D1.out, D1.out_len) != 0 ||
            (D1.res == HTTP1_CHUNK_DONE && D2.pend_len != D1.pend_len))
            fail_msg("split %zu differs for %s", cut, raw);
    }
}

static void chunk_ok(const char *raw, const char *payload, size_t leftover)
{
    check_chunked(raw, strlen(raw), 0);
    if (D1.res != HTTP1_CHUNK_DONE)
        fail_msg("not done (%d, %s): %s", D1.res, D1.err ? D1.err : "", raw);
    assert_int_equal(D1.out_len, strlen(payload));
    assert_memory_equal(D1.out, payload, D1.out_len);
    assert_int_equal(D1.pend_len, leftover);
}

static void chunk_bad(const char *raw)
{
    check_chunked(raw, strlen(raw), 0);
    if (D1.res != HTTP1_CHUNK_ERROR)
        fail_msg("accepted (%d): %s", D1.res, raw);
    assert_non_null(D1.err);
    assert_string_equal(http1_chunked_state_str(&D1.c), "error");
}

static void test_chunked_valid(void **state)
{
    chunk_ok("5\r\nhello\r\n0\r\n\r\n", "hello", 0);
    chunk_ok("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world", 0);
    chunk_ok("A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", "0123456789abcdefghij", 0);
    chunk_ok("0005\r\nhello\r\n000\r\n\r\n", "hello", 0);
    chunk_ok("0\r\n\r\n", "", 0);
    chunk_ok("1\r\n\r\r\n1\r\n\n\r\n0\r\n\r\n", "\r\n", 0); /* CR/LF inside data is data */
    chunk_ok("5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1", "hello", 14);
}

static void test_chunked_extensions(void **state)
{
    chunk_ok("5;foo\r\nhello\r\n0\r\n\r\n", "hello", 0);
    chunk_ok("5;foo=bar;baz\r\nhello\r\n0;last=1\r\n\r\n", "hello", 0);
    chunk_ok("5;q=\"a b;c\\\"d\"\r\nhello\r\n0\r\n\r\n", "hello", 0);
    chunk_ok("5;q=\"\";r=\"x\"\r\nhello\r\n0\r\n\r\n", "hello", 0);
    chunk_bad("5;\r\nhello\r\n0\r\n\r\n");
    chunk_bad("5;=x\r\nhello\r\n0\r\n\r\n");
    chunk_bad("5;a=\r\nhello\r\n0\r\n\r\n");
    chunk_bad("5 ;a\r\nhello\r\n0\r\n\r\n");
    chunk_bad("5; a\r\nhello\r\n0\r\n\r\n");
    chunk_bad("5;a =b\r\nhello\r\n0\r\n\r\n");
    chunk_bad("5;a=b c\r\nhello\r\n0\r\n\r\n");
    chunk_bad("5;a=\"unterminated\r\nhello\r\n0\r\n\r\n");
    chunk_bad("5;a=\"x\"y\r\nhello\r\n0\r\n\r\n");
    chunk_bad("5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n");
    chunk_bad("5;a\nhello\r\n0\r\n\r\n");
    /* a chunk line is bounded */
    static char big[HTTP1_CHUNK_LINE_MAX + 64];
    memcpy(big, "5;", 2);
    memset(big + 2, 'x', HTTP1_CHUNK_LINE_MAX);
    static const char rest[] = "\r\nhello\r\n0\r\n\r\n";
    memcpy(big + 2 + HTTP1_CHUNK_LINE_MAX, rest, sizeof(rest));
    decode(&D1, big, strlen(big), 0, strlen(big), 0);
    assert_int_equal(D1.res, HTTP1_CHUNK_ERROR);
}

static void test_chunked_bad_sizes(void **state)
{
    chunk_bad("\r\nhello\r\n0\r\n\r\n");
    chunk_bad("g\r\nhello\r\n0\r\n\r\n");
    chunk_bad(" 5\r\nhello\r\n0\r\n\r\n");
    chunk_bad("5 \r\nhello\r\n0\r\n\r\n");
    chunk_bad("+5\r\nhello\r\n0\r\n\r\n");
    chunk_bad("-5\r\nhello\r\n0\r\n\r\n");
    chunk_bad("0x5\r\nhello\r\n0\r\n\r\n");
    chunk_bad("5\nhello\r\n0\r\n\r\n");
    chunk_bad("5\rhello\r\n0\r\n\r\n");
    chunk_bad("8000000000000000\r\n");
    chunk_bad("10000000000000000\r\n");
    chunk_bad("ffffffffffffffffff\r\n");
    /* the largest size is accepted (and waits for its data) */
    decode(&D1, "7fffffffffffffff\r\n", 18, 0, 18, 0);
    assert_int_equal(D1.res, -1);
    assert_true(D1.c.remaining == 0x7fffffffffffffffULL);
    assert_string_equal(http1_chunked_state_str(&D1.c), "data");
}

static void test_chunked_data_crlf(void **state)
{
    chunk_bad("5\r\nhelloX\r\n0\r\n\r\n");
    chunk_bad("5\r\nhello\n0\r\n\r\n");
    chunk_bad("5\r\nhello\r0\r\n\r\n");
    chunk_bad("5\r\nhello0\r\n\r\n");
    chunk_bad("5\r\nhello\r\n0\r\n\n");
    chunk_bad("5\r\nhello\r\n0\r\n\rX");
    chunk_bad("5\r\nhello\r\n0\n\r\n");
}

static void test_chunked_trailers(void **state)
{
    chunk_ok("5\r\nhello\r\n0\r\nX-Sum: abc\r\nX-Tenant-ID: evil\r\n\r\n", "hello", 0);
    chunk_ok("5\r\nhello\r\n0\r\nX-Empty:\r\nX-Obs: \xe9\t\r\n\r\nNEXT", "hello", 4);
    chunk_bad("0\r\nbad header\r\n\r\n");
    chunk_bad("0\r\nX: a\r\n folded\r\n\r\n");
    chunk_bad("0\r\n X: a\r\n\r\n");
    chunk_bad("0\r\nX : a\r\n\r\n");
    chunk_bad("0\r\n: a\r\n\r\n");
    chunk_bad("0\r\nX: a\x01\r\n\r\n");
    chunk_bad("0\r\nX: a\x7f\r\n\r\n");
    chunk_bad("0\r\nX: a\nY: b\r\n\r\n");
    chunk_bad("0\r\nX: a\rY: b\r\n\r\n");

    /* bounded by max_trailer_bytes, final CRLF included */
    const char *tr = "0\r\nX-A: 12345\r\n\r\n"; /* 12 + 2 trailer bytes */
    check_chunked(tr, strlen(tr), 14);
    assert_int_equal(D1.res, HTTP1_CHUNK_DONE);
    check_chunked(tr, strlen(tr), 13);
    assert_int_equal(D1.res, HTTP1_CHUNK_ERROR);
    /* the default bound is 8192 */
    static char big[9000];
    size_t n = (size_t)snprintf(big, sizeof(big), "0\r\nX: ");
    memset(big + n, 'v', 8200);
    memcpy(big + n + 8200, "\r\n\r\n", 5);
    decode(&D1, big, strlen(big), 0, strlen(big), 0);
    assert_int_equal(D1.res, HTTP1_CHUNK_ERROR);
}

static void test_chunked_api_details(void **state)
{
    struct http1_chunked c;
    size_t cons;
    uint64_t dl;
    const char *err;
    const char *raw = "3;x=y\r\nabc\r\n0\r\n\r\nNEXT";
    memset(&c, 0, sizeof(c));
    assert_string_equal(http1_chunked_state_str(&c), "size-start");
    assert_int_equal(http1_chunked_step(&c, raw, strlen(raw), &cons, &dl, &err), HTTP1_CHUNK_DATA);
    assert_int_equal(cons, 7);
    assert_int_equal(dl, 3);
    /* calling again while data is pending reports the same data */
    assert_int_equal(http1_chunked_step(&c, raw + 7, 0, &cons, &dl, &err), HTTP1_CHUNK_DATA);
    assert_int_equal(cons, 0);
    assert_int_equal(dl, 3);
    http1_chunked_data_done(&c, 1);
    assert_int_equal(c.remaining, 2);
    http1_chunked_data_done(&c, 2);
    assert_int_equal(http1_chunked_step(&c, raw + 10, strlen(raw) - 10, &cons, &dl, &err),
                     HTTP1_CHUNK_DONE);
    assert_int_equal(cons, 7);
    assert_int_equal(http1_chunked_step(&c, raw + 17, 4, &cons, &dl, &err), HTTP1_CHUNK_DONE);
    assert_int_equal(cons, 0);
    /* errors stick */
    memset(&c, 0, sizeof(c));
    assert_int_equal(http1_chunked_step(&c, "5x", 2, &cons, &dl, &err), HTTP1_CHUNK_ERROR);
    assert_int_equal(cons, 1);
    assert_non_null(err);
    assert_int_equal(http1_chunked_step(&c, "5\r\n", 3, &cons, &dl, &err), HTTP1_CHUNK_ERROR);
}

/* ---- helpers and reasons -------------------------------------------------------- */

static struct http1_str S(const char *s) {
    struct http1_str r = {s, strlen(s)};
    return r;
}

static void
test_helpers(void **state)
{
    assert_true(http1_str_ieq(S("Keep-ALIVE"), "keep-alive"));
    assert_false(http1_str_ieq(S("keep-alive2"), "keep-alive"));
    assert_false(http1_str_ieq(S("keep-aliv"), "keep-alive"));
    assert_true(http1_value_has_token(S("keep-alive, Upgrade"), "upgrade"));
    assert_true(http1_value_has_token(S(" , upgrade\t,"), "upgrade"));
    assert_true(http1_value_has_token(S("upgrade"), "upgrade"));
    assert_false(http1_value_has_token(S("upgrade2, xupgrade"), "upgrade"));
    assert_false(http1_value_has_token(S(""), "upgrade"));
    struct http1_header h[2] = {{S("Host"), S("a")}, {S("X-Foo"), S("b")}};
    assert_ptr_equal(http1_find_header(h, 2, "x-foo"), &h[1]);
    assert_ptr_equal(http1_find_header(h, 2, "HOST"), &h[0]);
    assert_null(http1_find_header(h, 2, "X-Fo"));
    assert_null(http1_find_header(h, 0, "Host"));
}

static void test_reasons(void **state)
{
    static const int codes[] = {100, 101, 200, 201, 204, 206, 301, 302, 303, 304, 307,
                                308, 400, 401, 403, 404, 405, 408, 411, 413, 414, 415,
                                417, 421, 426, 429, 431, 500, 501, 502, 503, 504, 505};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        assert_string_not_equal(http1_reason(codes[i]), "Unknown");
    assert_string_equal(http1_reason(404), "Not Found");
    assert_string_equal(http1_reason(431), "Request Header Fields Too Large");
    assert_string_equal(http1_reason(799), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_basic),
        cmocka_unit_test(test_scan_returns_head_length),
        cmocka_unit_test(test_post_content_length),
        cmocka_unit_test(test_post_chunked),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_options_star_and_connect),
        cmocka_unit_test(test_websocket_upgrade),
        cmocka_unit_test(test_expect),
        cmocka_unit_test(test_query_split),
        cmocka_unit_test(test_many_headers),
        cmocka_unit_test(test_field_values),
        cmocka_unit_test(test_framing_refused),
        cmocka_unit_test(test_syntax_refused),
        cmocka_unit_test(test_request_line_refused),
        cmocka_unit_test(test_nul_refused),
        cmocka_unit_test(test_parser_alone_refuses),
        cmocka_unit_test(test_oversize_head),
        cmocka_unit_test(test_null_limits_use_defaults),
        cmocka_unit_test(test_scan_splits),
        cmocka_unit_test(test_response_basic),
        cmocka_unit_test(test_response_framing),
        cmocka_unit_test(test_response_keep_alive_and_upgrade),
        cmocka_unit_test(test_response_refused),
        cmocka_unit_test(test_chunked_valid),
        cmocka_unit_test(test_chunked_extensions),
        cmocka_unit_test(test_chunked_bad_sizes),
        cmocka_unit_test(test_chunked_data_crlf),
        cmocka_unit_test(test_chunked_trailers),
        cmocka_unit_test(test_chunked_api_details),
        cmocka_unit_test(test_helpers),
        cmocka_unit_test(test_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
