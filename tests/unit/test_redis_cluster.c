/*
 * Tests of the cluster helpers (src/redis/redis_cluster.h): the key slot (CRC16
 * XMODEM with hash tags, against values Redis itself gives), the CLUSTER SLOTS
 * and -MOVED / -ASK parsers (what a node sends is hostile), and the cluster
 * options redis_client_new() refuses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "redis/redis.h"
#include "redis/redis_cluster.h"

/* sizeof - 1 of a literal, so that NUL bytes inside count */
#define LIT(s) s, sizeof(s) - 1

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

static unsigned slot(const char *key)
{
    return redis_key_slot(key, strlen(key));
}

/* Values from CLUSTER KEYSLOT on Redis 7.0. */
static void test_key_slot(void **state)
{
    assert_int_equal(slot("foo"), 12182);
    assert_int_equal(slot("123456789"), 0x31c3 & 16383); /* the CRC16/XMODEM check value */
    assert_int_equal(slot(""), 0);
    assert_int_equal(slot("{user1000}.following"), 3443);
    assert_int_equal(slot("{user1000}.following"), slot("{user1000}.followers"));
    assert_int_equal(slot("{user1000}.following"), slot("user1000"));
    assert_int_equal(slot("moat:rl:{shared}:127.0.0.1"), 4478);
    assert_int_equal(slot("moat:rl:override:{shared}"), slot("shared"));
    /* an empty tag does not count: the whole key is hashed */
    assert_int_equal(slot("foo{}{bar}"), redis_key_slot("foo{}{bar}", 10));
    assert_int_not_equal(slot("foo{}{bar}"), slot("bar"));
    /* only the first tag counts; an unclosed brace is no tag */
    assert_int_equal(slot("foo{{bar}}zap"), slot("{bar"));
    assert_int_equal(slot("foo{bar}{zap}"), slot("bar"));
    assert_int_not_equal(slot("{bar"), slot("bar"));
    /* binary keys: NUL bytes are hashed */
    assert_int_not_equal(redis_key_slot("a\0b", 3), redis_key_slot("a", 1));
    for (int i = 0; i < 1000; i++) {
        char k[32];
        snprintf(k, sizeof k, "key:%d", i);
        assert_true(slot(k) < REDIS_CLUSTER_SLOTS);
    }
}

static int parse_slots_n(const char *text, size_t len, struct redis_cluster_map *m,
                         const char **why)
{
    redisReply *r = resp_n(text, len);
    int rc = redis_cluster_parse_slots(r, m, why);
    freeReplyObject(r);
    return rc;
}

static int parse_slots(const char *text, struct redis_cluster_map *m, const char **why)
{
    return parse_slots_n(text, strlen(text), m, why);
}

static void test_slots_ok(void **state)
{
    struct redis_cluster_map *m = malloc(sizeof(*m));
    const char *why = NULL;
    /* Redis 7: [start, end, [ip, port, id, metadata], replica...] */
    assert_int_equal(
        parse_slots("*3\r\n"
                    "*4\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n*"
                    "0\r\n*3\r\n$9\r\n127.0.0.1\r\n:7003\r\n$2\r\nr1\r\n"
                    "*3\r\n:5461\r\n:10922\r\n*2\r\n$3\r\n::1\r\n:7001\r\n"
                    "*3\r\n:10923\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n",
                    m, &why),
        0);
    assert_int_equal(m->nnodes, 2);
    assert_string_equal(m->nodes[0].host, "127.0.0.1");
    assert_int_equal(m->nodes[0].port, 7000);
    assert_string_equal(m->nodes[1].host, "::1");
    assert_int_equal(m->slot_node[0], 0);
    assert_int_equal(m->slot_node[5460], 0);
    assert_int_equal(m->slot_node[5461], 1);
    assert_int_equal(m->slot_node[16383], 0);
    /* a slot no range covers has no node */
    assert_int_equal(
        parse_slots("*1\r\n*3\r\n:1\r\n:1\r\n*2\r\n$8\r\n10.0.0.1\r\n:6379\r\n", m, &why), 0);
    assert_int_equal(m->slot_node[0], REDIS_CLUSTER_NO_NODE);
    assert_int_equal(m->slot_node[1], 0);
    assert_int_equal(m->slot_node[2], REDIS_CLUSTER_NO_NODE);
    free(m);
}

static void refused_n(const char *text, size_t len, const char *want)
{
    struct redis_cluster_map *m = malloc(sizeof(*m));
    const char *why = NULL;
    assert_int_equal(parse_slots_n(text, len, m, &why), -1);
    if (!why || !strstr(why, want))
        fail_msg("%s: got %s, wanted %s", text, why ? why : "(null)", want);
    free(m);
}

static void refused(const char *text, const char *want)
{
    refused_n(text, strlen(text), want);
}

static void test_slots_refused(void **state)
{
    refused("-ERR This instance has cluster support disabled\r\n", "error reply");
    refused("$3\r\nfoo\r\n", "not an array");
    refused("*0\r\n", "no slot ranges");
    refused("*1\r\n:1\r\n", "not [start, end");
    refused("*1\r\n*2\r\n:0\r\n:1\r\n", "not [start, end");
    refused("*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n", "0..16383");
    refused("*1\r\n*3\r\n:-1\r\n:5\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n", "0..16383");
    refused("*1\r\n*3\r\n:6\r\n:5\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n", "0..16383");
    refused("*1\r\n*3\r\n$1\r\n0\r\n:5\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n", "0..16383");
    refused("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$9\r\nlocalhost\r\n:7000\r\n", "numeric");
    refused("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$0\r\n\r\n:7000\r\n", "numeric");
    refused_n(LIT("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$11\r\n127.0.0.1\0x\r\n:7000\r\n"), "numeric");
    refused("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$9\r\n127.0.0.1\r\n:0\r\n", "port");
    refused("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$9\r\n127.0.0.1\r\n:65536\r\n", "port");
    refused("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$9\r\n127.0.0.1\r\n$4\r\n7000\r\n", "port");
    refused("*1\r\n*3\r\n:0\r\n:5\r\n*1\r\n$9\r\n127.0.0.1\r\n", "[ip, port");
    refused("*2\r\n*3\r\n:0\r\n:5\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n"
            "*3\r\n:5\r\n:9\r\n*2\r\n$9\r\n127.0.0.1\r\n:7001\r\n",
            "overlap");
    /* more masters than one client talks to */
    char *big = malloc(70 * 64 + 16), *p = big;
    p += sprintf(p, "*65\r\n");
    for (int i = 0; i < 65; i++)
        p += sprintf(p, "*3\r\n:%d\r\n:%d\r\n*2\r\n$8\r\n10.0.0.1\r\n:%d\r\n", i, i, 1000 + i);
    refused(big, "more masters");
    free(big);
}

static int redirect(const char *s, bool *ask, unsigned *slot, char *host, uint16_t *port)
{
    return redis_cluster_parse_redirect(s, strlen(s), ask, slot, host, port);
}

static void test_redirect(void **state)
{
    char host[REDIS_CLUSTER_HOST_MAX];
    unsigned slot;
    uint16_t port;
    bool ask;
    assert_int_equal(redirect("MOVED 3999 127.0.0.1:6381", &ask, &slot, host, &port), 1);
    assert_false(ask);
    assert_int_equal(slot, 3999);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6381);
    assert_int_equal(redirect("ASK 16383 ::1:7000", &ask, &slot, host, &port), 1);
    assert_true(ask);
    assert_int_equal(slot, 16383);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 7000);
    /* other errors are not redirects */
    assert_int_equal(redirect("ERR unknown command", &ask, &slot, host, &port), 0);
    assert_int_equal(redirect("CLUSTERDOWN The cluster is down", &ask, &slot, host, &port), 0);
    assert_int_equal(redirect("TRYAGAIN Multiple keys", &ask, &slot, host, &port), 0);
    assert_int_equal(redirect("MOVEDX 1 1.2.3.4:5", &ask, &slot, host, &port), 0);
    /* malformed redirects */
    const char *bad[] = {
        "MOVED 16384 127.0.0.1:6381", "MOVED -1 127.0.0.1:6381", "MOVED 1 127.0.0.1:0",
        "MOVED 1 127.0.0.1:65536",    "MOVED 1 localhost:6379",  "MOVED 1 :6379",
        "MOVED 1 127.0.0.1",          "MOVED 1 127.0.0.1:",      "MOVED  127.0.0.1:6379",
        "MOVED 1 127.0.0.1:63a9",     "ASK x 127.0.0.1:6379",    "MOVED 1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (redirect(bad[i], &ask, &slot, host, &port) != -1)
            fail_msg("accepted: %s", bad[i]);
    char longone[300];
    snprintf(longone, sizeof longone, "MOVED 1 %0250d:1", 0);
    assert_int_equal(redirect(longone, &ask, &slot, host, &port), -1);
}

/* Cluster options the client refuses, with a message. */
static void test_options(void **state)
{
    struct event_base *base = event_base_new();
    struct redis_cluster_options co = {.count = 1};
    co.seeds[0].host = "127.0.0.1";
    co.seeds[0].port = 7000;
    struct redis_options o = {.cluster = &co};
    char err[256];

    struct redis_client *c = redis_client_new(base, &o, err, sizeof(err));
    assert_non_null(c); /* valid: asks the seeds in the loop, which never runs here */
    assert_int_equal(redis_client_state(c), REDIS_STATE_CONNECTING);
    const char *argv[] = {"GET", "k"};
    assert_null(redis_command_key(c, "k", 1, NULL, NULL, 2, argv, NULL)); /* no map yet */
    redis_client_free(c);

    o.host = "127.0.0.1";
    o.port = 6379;
    assert_null(redis_client_new(base, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "not used with a cluster"));
    o.host = NULL;
    co.count = 0;
    assert_null(redis_client_new(base, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "1 to 16 cluster seeds"));
    co.count = 1;
    co.seeds[0].port = 0;
    assert_null(redis_client_new(base, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "host and a port"));
    co.seeds[0].port = 7000;
    o.database = 1;
    assert_null(redis_client_new(base, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "database 0"));
    o.database = 0;
    co.max_redirects = 17;
    assert_null(redis_client_new(base, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "max_redirects"));
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_slot),      cmocka_unit_test(test_slots_ok),
        cmocka_unit_test(test_slots_refused), cmocka_unit_test(test_redirect),
        cmocka_unit_test(test_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
