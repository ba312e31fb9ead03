/*
 * Unit tests for src/request_head: the exact size of the forwarded head for the
 * worst growth at every allowed limits.max_headers (1..256) and a spread of
 * limits.max_header_bytes (1024..1 MiB): HTTP/1.0 without Host (moat adds the
 * line) and fields written as "x:v" (forwarded as "x: v"). Each head is written
 * into a heap buffer of exactly the computed size, so a sanitized build catches
 * one byte too many, and compared with the head built independently here. A
 * buffer one byte short is refused without a byte written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "http/http1.h"
#include "http/request_head.h"

static struct http1_request req;

static const size_t byte_limits[] = {1024, 1025, 1279, 1280, 1281, 1300,  2047,
                                     2048, 4096, 8191, 8192, 8193, 16384, 65536};
/*
 * Past 1,300 bytes all 256 fields fit: a larger limit only lengthens the padding,
 * never the growth. The largest limits are still covered, for a few counts.
 */
static const size_t big_byte_limits[] = {262144, 1048575, 1048576};
static const size_t big_counts[] = {1, 2, 255, 256};

#define EXTRA "X-Request-ID: 0123456789abcdef0123456789abcdef\r\nX-Forwarded-For: 1.2.3.4\r\n"

/* A growing string. */
struct sb {
    char *p;
    size_t len, cap;
};

static void sb_add(struct sb *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(struct sb *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_fill(struct sb *b, char c, size_t n)
{
    sb_add(b, "", 0);
    if (b->len + n + 1 > b->cap) {
        b->cap = b->len + n + 1;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memset(b->p + b->len, c, n);
    b->len += n;
    b->p[b->len] = 0;
}

/* Drops what proxy.c drops: the framing and connection fields moat rewrites. */
static void drop_hop_by_hop(const struct http1_request *h, uint8_t *drop)
{
    static const char *const hop[] = {"Connection",        "Upgrade",    "Content-Length",
                                      "Transfer-Encoding", "Keep-Alive", "Expect"};
    for (size_t i = 0; i < h->num_headers; i++) {
        drop[i] = 0;
        for (size_t k = 0; k < sizeof hop / sizeof hop[0]; k++)
            if (http1_str_ieq(h->headers[i].name, hop[k]))
                drop[i] = 1;
    }
}

/* Serializes s into a buffer of exactly its size, checks it equals want. */
static void check_exact(const struct request_head_spec *s, const struct sb *want)
{
    size_t size = request_head_size(s);
    assert_int_equal(size, want->len);
    char *buf = malloc(size);
    assert_non_null(buf);
    assert_int_equal(request_head_write(s, buf, size), size);
    assert_memory_equal(buf, want->p, size);
    /* one byte short: refused, and nothing is written at or past the cap */
    memset(buf, '#', size);
    assert_int_equal(request_head_write(s, buf, size - 1), 0);
    assert_int_equal(buf[size - 1], '#');
    free(buf);
}

/*
 * The worst head for these limits: as many "x:v" fields as max_headers and
 * max_header_bytes allow, the last one's value padded so the head is exactly
 * max_header_bytes when the fields leave room.
 */
static void worst_case(size_t max_headers, size_t max_bytes)
{
    static const char line[] = "GET / HTTP/1.0\r\n";
    size_t room = max_bytes - strlen(line) - 2;
    size_t n = room / 5 < max_headers ? room / 5 : max_headers;
    size_t pad = room - n * 5;
    struct sb in = {0}, want = {0};
    sb_str(&in, line);
    sb_str(&want, "GET / HTTP/1.1\r\nHost: app\r\n");
    for (size_t i = 0; i < n; i++) {
        bool last = i + 1 == n;
        sb_str(&in, "x:v");
        sb_str(&want, "x: v");
        if (last) {
            sb_fill(&in, 'p', pad);
            sb_fill(&want, 'p', pad);
        }
        sb_str(&in, "\r\n");
        sb_str(&want, "\r\n");
    }
    sb_str(&in, "\r\n");
    assert_int_equal(in.len, n == max_headers ? in.len : max_bytes);
    sb_str(&want, EXTRA "\r\n");

    struct http1_limits lim = {max_bytes, max_headers};
    int status = 0;
    const char *err = NULL;
    if (http1_parse_request(in.p, in.len, &lim, &req, &status, &err) < 0)
        fail_msg("max_headers %zu max_bytes %zu: %d %s", max_headers, max_bytes, status, err);
    assert_int_equal(req.num_headers, n);
    struct request_head_spec s = {&req, NULL, "app", 3, EXTRA, strlen(EXTRA), NULL};
    check_exact(&s, &want);
    free(in.p);
    free(want.p);
}

static void test_worst_growth_every_limit(void **state)
{
    for (size_t mh = 1; mh <= HTTP1_MAX_HEADERS_CAP; mh++)
        for (size_t k = 0; k < sizeof byte_limits / sizeof byte_limits[0]; k++)
            worst_case(mh, byte_limits[k]);
    for (size_t k = 0; k < sizeof big_byte_limits / sizeof big_byte_limits[0]; k++)
        for (size_t i = 0; i < sizeof big_counts / sizeof big_counts[0]; i++)
            worst_case(big_counts[i], big_byte_limits[k]);
}

static void parse_ok(const char *head, struct http1_request *h)
{
    int status = 0;
    const char *err = NULL;
    struct http1_limits lim = {65536, HTTP1_MAX_HEADERS_CAP};
    if (http1_parse_request(head, strlen(head), &lim, h, &status, &err) < 0)
        fail_msg("%s: %d %s", head, status, err);
}

static void test_framing_is_moats(void **state)
{
    uint8_t drop[HTTP1_MAX_HEADERS_CAP];
    parse_ok("POST /u HTTP/1.1\r\nHost:h\r\nContent-Length:0001234567890123\r\na:b\r\n\r\n", &req);
    drop_hop_by_hop(&req, drop);
    struct request_head_spec s = {&req, drop, "app", 3, NULL, 0, NULL};
    struct sb want = {0};
    sb_str(&want, "POST /u HTTP/1.1\r\nHost: h\r\na: b\r\n"
                  "Content-Length: 1234567890123\r\n\r\n");
    check_exact(&s, &want);
    free(want.p);

    parse_ok("PUT /u HTTP/1.1\r\nHost:h\r\nTransfer-Encoding:chunked\r\n\r\n", &req);
    drop_hop_by_hop(&req, drop);
    want = (struct sb){0};
    sb_str(&want, "PUT /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    check_exact(&s, &want);
    free(want.p);

    parse_ok("POST / HTTP/1.0\r\nContent-Length:0\r\n\r\n", &req);
    drop_hop_by_hop(&req, drop);
    s.host = "a-longer-upstream-name";
    s.host_len = strlen(s.host);
    want = (struct sb){0};
    sb_str(&want, "POST / HTTP/1.1\r\nHost: a-longer-upstream-name\r\nContent-Length: 0\r\n\r\n");
    check_exact(&s, &want);
    free(want.p);
}

static void test_upgrade(void **state)
{
    uint8_t drop[HTTP1_MAX_HEADERS_CAP];
    parse_ok("GET /ws HTTP/1.1\r\nHost:h\r\nConnection:upgrade\r\nUpgrade:websocket\r\n"
             "Sec-WebSocket-Key:k\r\n\r\n",
             &req);
    drop_hop_by_hop(&req, drop);
    struct request_head_spec s = {&req,
                                  drop,
                                  "app",
                                  3,
                                  EXTRA,
                                  strlen(EXTRA),
                                  http1_find_header(req.headers, req.num_headers, "Upgrade")};
    struct sb want = {0};
    sb_str(&want, "GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: k\r\n" EXTRA
                  "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    check_exact(&s, &want);
    free(want.p);
}

/* Every field dropped, nothing added: the smallest head. */
static void test_all_dropped(void **state)
{
    uint8_t drop[HTTP1_MAX_HEADERS_CAP];
    parse_ok("OPTIONS * HTTP/1.1\r\nHost:h\r\nb:c\r\n\r\n", &req);
    memset(drop, 1, sizeof drop);
    struct request_head_spec s = {&req, drop, "app", 3, NULL, 0, NULL};
    struct sb want = {0};
    sb_str(&want, "OPTIONS * HTTP/1.1\r\n\r\n");
    check_exact(&s, &want);
    free(want.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worst_growth_every_limit),
        cmocka_unit_test(test_framing_is_moats),
        cmocka_unit_test(test_upgrade),
        cmocka_unit_test(test_all_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
