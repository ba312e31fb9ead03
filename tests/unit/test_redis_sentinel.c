/*
 * Tests of the sentinel parsers (src/redis/redis_sentinel.h): what a sentinel
 * sends is hostile, so everything but a numeric address and a port is refused.
 * And of the sentinel options redis_client_new() refuses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "redis/redis.h"
#include "redis/redis_sentinel.h"

/* One reply parsed from RESP text by hiredis, as the client would see it. */
static redisReply *resp_n(const char *text, size_t len)
{
    redisReader *r = redisReaderCreate();
    void *out = NULL;
    assert_non_null(r);
    assert_int_equal(redisReaderFeed(r, text, len), REDIS_OK);
    assert_int_equal(redisReaderGetReply(r, &out), REDIS_OK);
    if (!out)
        fail_msg("incomplete reply: %s", text);
    redisReaderFree(r);
    return out;
}

static redisReply *resp(const char *text)
{
    return resp_n(text, strlen(text));
}

static int parse_addr(const char *text, char *host, uint16_t *port, const char **why)
{
    redisReply *r = resp(text);
    int rc = redis_sentinel_parse_addr(r, host, port, why);
    freeReplyObject(r);
    return rc;
}

static void test_addr_ok(void **state)
{
    char host[REDIS_SENTINEL_HOST_MAX];
    uint16_t port = 0;
    const char *why = NULL;
    assert_int_equal(parse_addr("*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n", host, &port, &why), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6380);
    assert_int_equal(parse_addr("*2\r\n$3\r\n::1\r\n$5\r\n65535\r\n", host, &port, &why), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 65535);
}

static void test_addr_refused(void **state)
{
    static const char *const bad[] = {
        "$-1\r\n",                                        /* master unknown */
        "*-1\r\n",                                        /* nil array */
        "-IDONTKNOW no such master\r\n",                  /* error */
        "+OK\r\n",                                        /* not an array */
        ":6379\r\n",                                      /* integer */
        "*1\r\n$9\r\n127.0.0.1\r\n",                      /* one element */
        "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n",        /* three */
        "*2\r\n:1\r\n:2\r\n",                             /* integers */
        "*2\r\n$9\r\nredis.lan\r\n$4\r\n6379\r\n",        /* a hostname */
        "*2\r\n$0\r\n\r\n$4\r\n6379\r\n",                 /* empty host */
        "*2\r\n$10\r\n127.0.0.1 \r\n$4\r\n6379\r\n",      /* trailing space */
        "*2\r\n$10\r\n127.0.0.1\n\r\n$4\r\n6379\r\n",     /* control character */
        "*2\r\n$9\r\n127.0.0.1\r\n$1\r\n0\r\n",           /* port 0 */
        "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n65536\r\n",       /* port too large */
        "*2\r\n$9\r\n127.0.0.1\r\n$6\r\n006379\r\n",      /* six digits */
        "*2\r\n$9\r\n127.0.0.1\r\n$3\r\n-80\r\n",         /* sign */
        "*2\r\n$9\r\n127.0.0.1\r\n$3\r\n80x\r\n",         /* not a number */
        "*2\r\n$9\r\n127.0.0.1\r\n$0\r\n\r\n",            /* empty port */
        "*2\r\n$9\r\n127.0.0.1\r\n*1\r\n$4\r\n6379\r\n",  /* nested */
        "*2\r\n$15\r\n256.256.256.256\r\n$4\r\n6379\r\n", /* not an IPv4 address */
        "*2\r\n$50\r\n11111111111111111111111111111111111111111111111111\r\n$2\r\n80\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char host[REDIS_SENTINEL_HOST_MAX];
        uint16_t port = 0;
        const char *why = NULL;
        redisReply *r = resp(bad[i]);
        if (!r)
            fail_msg("reply %zu does not parse", i);
        if (redis_sentinel_parse_addr(r, host, &port, &why) != -1)
            fail_msg("accepted reply %zu", i);
        assert_non_null(why);
        freeReplyObject(r);
    }
    const char *why = NULL;
    char host[REDIS_SENTINEL_HOST_MAX];
    uint16_t port;
    static const char nul[] = "*2\r\n$11\r\n127.0.0.1\0x\r\n$4\r\n6379\r\n"; /* NUL inside */
    redisReply *r = resp_n(nul, sizeof(nul) - 1);
    assert_int_equal(redis_sentinel_parse_addr(r, host, &port, &why), -1);
    freeReplyObject(r);
    assert_int_equal(redis_sentinel_parse_addr(NULL, host, &port, &why), -1);
    assert_int_equal(parse_addr("$-1\r\n", host, &port, &why), -1);
    assert_string_equal(why, "master unknown to this sentinel");
}

static int parse_switch(const char *payload, char *host, uint16_t *port)
{
    return redis_sentinel_parse_switch(payload, strlen(payload), "mymaster", host, port);
}

static void test_switch(void **state)
{
    char host[REDIS_SENTINEL_HOST_MAX];
    uint16_t port = 0;
    assert_int_equal(parse_switch("mymaster 127.0.0.1 6379 127.0.0.1 6380", host, &port), 1);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6380);
    assert_int_equal(parse_switch("mymaster ::1 6379 fe80::1 7000", host, &port), 1);
    assert_string_equal(host, "fe80::1");
    assert_int_equal(port, 7000);
    /* another master: not ours, not an error */
    assert_int_equal(parse_switch("other 127.0.0.1 6379 127.0.0.1 6380", host, &port), 0);
    assert_int_equal(parse_switch("mymaster2 127.0.0.1 6379 127.0.0.1 6380", host, &port), 0);
    assert_int_equal(parse_switch("mymaste 127.0.0.1 6379 127.0.0.1 6380", host, &port), 0);

    static const char *const bad[] = {
        "",
        "mymaster",
        "mymaster 127.0.0.1 6379 127.0.0.1",
        "mymaster 127.0.0.1 6379 127.0.0.1 6380 extra",
        "mymaster 127.0.0.1 6379 127.0.0.1 6380 ",
        " mymaster 127.0.0.1 6379 127.0.0.1 6380",
        "mymaster  127.0.0.1 6379 127.0.0.1 6380",
        "mymaster 127.0.0.1 6379 redis.lan 6380",
        "mymaster 127.0.0.1 6379 127.0.0.1 0",
        "mymaster 127.0.0.1 6379 127.0.0.1 70000",
        "mymaster 127.0.0.1 x 127.0.0.1 6380",
        "mymaster 127.0.0.1 6379 127.0.0.1 6380\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (parse_switch(bad[i], host, &port) != -1)
            fail_msg("accepted payload %zu: '%s'", i, bad[i]);
    char big[600];
    memset(big, 'a', sizeof(big));
    assert_int_equal(redis_sentinel_parse_switch(big, sizeof(big), "mymaster", host, &port), -1);
    assert_int_equal(redis_sentinel_parse_switch(NULL, 0, "mymaster", host, &port), -1);
}

/* Sentinel options the client refuses, with a message. */
static void test_options(void **state)
{
    struct event_base *base = event_base_new();
    struct redis_sentinel_options so = {.count = 1, .master_name = "mymaster"};
    so.addrs[0].host = "127.0.0.1";
    so.addrs[0].port = 26379;
    struct redis_options o = {.sentinel = &so};
    char err[256];

    struct redis_client *c = redis_client_new(base, &o, err, sizeof(err));
    assert_non_null(c); /* valid: starts resolving in the loop, which never runs here */
    assert_int_equal(redis_client_state(c), REDIS_STATE_CONNECTING);
    redis_client_free(c);

    o.host = "127.0.0.1";
    o.port = 6379;
    assert_null(redis_client_new(base, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "not used with sentinels"));
    o.host = NULL;
    so.count = 0;
    assert_null(redis_client_new(base, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "1 to 16 sentinels"));
    so.count = 1;
    so.master_name = NULL;
    assert_null(redis_client_new(base, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "master_name"));
    so.master_name = "mymaster";
    so.addrs[0].port = 0;
    assert_null(redis_client_new(base, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "host and a port"));
    so.addrs[0].port = 26379;
    so.username = "moat";
    assert_null(redis_client_new(base, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "sentinel username"));
    so.username = NULL;
    so.tls = true;
    so.tls_ca = "/nonexistent/ca.pem";
    assert_null(redis_client_new(base, &o, err, sizeof(err)));
    if (!strstr(err, "sentinel: ") || !strstr(err, "cannot load the TLS CA"))
        fail_msg("%s", err);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_ok),
        cmocka_unit_test(test_addr_refused),
        cmocka_unit_test(test_switch),
        cmocka_unit_test(test_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
