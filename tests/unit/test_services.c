/*
 * Unit tests of the pure part of services: deciding from the parsed config
 * whether a reload needs new Redis connections. Configs are loaded from YAML
 * text by the config loader; each case changes one setting of a base config
 * and expects that field to be named, and settings the clients do not use
 * leave them alone. And the permission-refusal bits /readyz reports.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/services.h"

/* The settings of the base config, one per slot, each a "key: value" in its section. */
enum slot {
    S_ADDRESS,
    S_USERNAME,
    S_PASSWORD, /* password_file and password_env exclude each other: one slot */
    S_TIMEOUT,
    S_CONNECT_TIMEOUT,
    S_DATABASE,
    S_TLS_ENABLED,
    S_TLS_CA,
    S_TLS_SERVER_NAME,
    S_TLS_VERIFY,
    S_TLS_CERT,
    S_TLS_KEY,
    S_PUSH_REVOCATION,
    S_SESSIONS_PREFIX,
    S_SESSIONS_OTHER, /* a sessions setting the clients do not use */
    S_RL_TIMEOUT,
    S_RL_HEARTBEAT,
    S_RL_PREFIX,
    S_RL_OTHER, /* a ratelimit setting the clients do not use */
    NUM_SLOTS
};

static const char *const base_slots[NUM_SLOTS] = {
    [S_ADDRESS] = "address: \"127.0.0.1:6379\"",
    [S_USERNAME] = "username: moat",
    [S_PASSWORD] = "password_env: MOAT_REDIS_PW",
    [S_TIMEOUT] = "timeout: 250ms",
    [S_CONNECT_TIMEOUT] = "connect_timeout: 1s",
    [S_DATABASE] = "database: 2",
    [S_TLS_ENABLED] = "enabled: true",
    [S_TLS_CA] = "ca: ca.pem",
    [S_TLS_SERVER_NAME] = "server_name: redis.example",
    [S_TLS_VERIFY] = "verify: true",
    [S_TLS_CERT] = "cert: client.pem",
    [S_TLS_KEY] = "key: client.key",
    [S_PUSH_REVOCATION] = "push_revocation: true",
    [S_SESSIONS_PREFIX] = "key_prefix: \"moat:sess:\"",
    [S_SESSIONS_OTHER] = "cache_size: 100",
    [S_RL_TIMEOUT] = "redis_timeout: 50ms",
    [S_RL_HEARTBEAT] = "heartbeat: 1s",
    [S_RL_PREFIX] = "key_prefix: \"moat:rl:\"",
    [S_RL_OTHER] = "max_keys: 1000",
};

/* Loads the base config with slot `slot` set to `value` (slot NUM_SLOTS: none changed). */
static struct config *load_with(enum slot slot, const char *value)
{
    const char *v[NUM_SLOTS];
    memcpy(v, base_slots, sizeof v);
    if (slot < NUM_SLOTS)
        v[slot] = value;
    char yaml[4096];
    int n = snprintf(yaml, sizeof yaml,
                     "listen: { https: [], http: [], admin: null }\n"
                     "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"
                     "routes: [ { upstream: app, auth: none } ]\n"
                     "redis: { %s, %s, %s, %s, %s, %s,\n"
                     "  tls: { %s, %s, %s, %s, %s, %s } }\n"
                     "sessions: { %s, %s, %s }\n"
                     "ratelimit: { %s, %s, %s, %s }\n",
                     v[S_ADDRESS], v[S_USERNAME], v[S_PASSWORD], v[S_TIMEOUT], v[S_CONNECT_TIMEOUT],
                     v[S_DATABASE], v[S_TLS_ENABLED], v[S_TLS_CA], v[S_TLS_SERVER_NAME],
                     v[S_TLS_VERIFY], v[S_TLS_CERT], v[S_TLS_KEY], v[S_PUSH_REVOCATION],
                     v[S_SESSIONS_PREFIX], v[S_SESSIONS_OTHER], v[S_RL_TIMEOUT], v[S_RL_HEARTBEAT],
                     v[S_RL_PREFIX], v[S_RL_OTHER]);
    assert_true(n > 0 && (size_t)n < sizeof yaml);
    struct config_errors errs = {0};
    struct config *c = config_load_string("t.yaml", yaml, false, &errs);
    if (!c) {
        fprintf(stderr, "%s", yaml);
        for (size_t i = 0; i < errs.count; i++)
            fprintf(stderr, "  %s\n", errs.msgs[i]);
    }
    assert_non_null(c);
    config_errors_free(&errs);
    return c;
}

static struct config *load_text(const char *yaml)
{
    struct config_errors errs = {0};
    struct config *c = config_load_string("t.yaml", yaml, false, &errs);
    assert_non_null(c);
    config_errors_free(&errs);
    return c;
}

/* Two loads of one text are equal field by field, not by pointer. */
static void test_same_config(void **state)
{
    (void)state;
    struct config *a = load_with(NUM_SLOTS, NULL), *b = load_with(NUM_SLOTS, NULL);
    struct services_redis_conf *kept = services_redis_conf_copy(a);
    assert_non_null(kept);
    config_unref(a); /* the copy outlives the config it came from */
    assert_null(services_redis_conf_diff(kept, b));
    services_redis_conf_free(kept);
    config_unref(b);
}

/* Each setting the clients are built from, changed alone, is noticed and named. */
static void test_each_field_changed(void **state)
{
    (void)state;
    static const struct {
        enum slot slot;
        const char *value;
        const char *field; /* what the diff names */
    } cases[] = {
        {S_ADDRESS, "address: \"127.0.0.1:6380\"", "redis.address.text"},
        {S_ADDRESS, "address: \"unix:/run/redis.sock\"", "redis.address.text"},
        {S_USERNAME, "username: other", "redis.username"},
        {S_USERNAME, "username: null", "redis.username"},
        {S_PASSWORD, "password_env: OTHER_PW", "redis.password_env"},
        {S_PASSWORD, "password_env: null", "redis.password_env"},
        /* password_env goes to NULL too, but password_file comes first */
        {S_PASSWORD, "password_file: /run/redis.pw", "redis.password_file"},
        {S_TIMEOUT, "timeout: 300ms", "redis.timeout_ms"},
        {S_CONNECT_TIMEOUT, "connect_timeout: 2s", "redis.connect_timeout_ms"},
        {S_DATABASE, "database: 3", "redis.database"},
        {S_TLS_ENABLED, "enabled: false", "redis.tls.enabled"},
        {S_TLS_CA, "ca: other-ca.pem", "redis.tls.ca"},
        {S_TLS_CA, "ca: null", "redis.tls.ca"},
        {S_TLS_SERVER_NAME, "server_name: other.example", "redis.tls.server_name"},
        {S_TLS_VERIFY, "verify: false", "redis.tls.verify"},
        {S_TLS_CERT, "cert: other.pem", "redis.tls.cert"},
        {S_TLS_KEY, "key: other.key", "redis.tls.key"},
        {S_PUSH_REVOCATION, "push_revocation: false", "sessions.push_revocation"},
        {S_SESSIONS_PREFIX, "key_prefix: \"other:sess:\"", "sessions.key_prefix"},
        {S_RL_TIMEOUT, "redis_timeout: 60ms", "ratelimit.redis_timeout_ms"},
        {S_RL_HEARTBEAT, "heartbeat: 2s", "ratelimit.heartbeat_ms"},
        {S_RL_PREFIX, "key_prefix: \"other:rl:\"", "ratelimit.key_prefix"},
    };
    struct config *base = load_with(NUM_SLOTS, NULL);
    struct services_redis_conf *kept = services_redis_conf_copy(base);
    assert_non_null(kept);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config *c = load_with(cases[i].slot, cases[i].value);
        const char *got = services_redis_conf_diff(kept, c);
        if (!got || strcmp(got, cases[i].field) != 0)
            fail_msg("%s: want %s changed, got %s", cases[i].value, cases[i].field,
                     got ? got : "same");
        /* and back: the changed config kept, the base one arriving */
        struct services_redis_conf *other = services_redis_conf_copy(c);
        assert_non_null(other);
        assert_non_null(services_redis_conf_diff(other, base));
        services_redis_conf_free(other);
        config_unref(c);
    }
    services_redis_conf_free(kept);
    config_unref(base);
}

/* Settings outside the clients' (cache size, rate-limit table size) keep them. */
static void test_other_fields_same(void **state)
{
    (void)state;
    struct config *base = load_with(NUM_SLOTS, NULL);
    struct services_redis_conf *kept = services_redis_conf_copy(base);
    struct config *c = load_with(S_SESSIONS_OTHER, "cache_size: 200");
    assert_null(services_redis_conf_diff(kept, c));
    config_unref(c);
    c = load_with(S_RL_OTHER, "max_keys: 2000");
    assert_null(services_redis_conf_diff(kept, c));
    config_unref(c);
    services_redis_conf_free(kept);
    config_unref(base);
}

/* Redis switched on or off is a change; off before and after is not. */
static void test_enabled(void **state)
{
    (void)state;
    struct config *on = load_with(NUM_SLOTS, NULL);
    struct config *off = load_text("listen: { https: [], http: [], admin: null }\n"
                                   "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"
                                   "routes: [ { upstream: app, auth: none } ]\n"
                                   "sessions: { key_prefix: \"other:\" }\n");
    assert_false(off->redis_enabled);
    assert_string_equal(services_redis_conf_diff(NULL, on), "redis");
    assert_null(services_redis_conf_diff(NULL, off));
    struct services_redis_conf *kept_on = services_redis_conf_copy(on);
    struct services_redis_conf *kept_off = services_redis_conf_copy(off);
    assert_string_equal(services_redis_conf_diff(kept_on, off), "redis");
    assert_string_equal(services_redis_conf_diff(kept_off, on), "redis");
    assert_null(services_redis_conf_diff(kept_off, off));
    services_redis_conf_free(kept_on);
    services_redis_conf_free(kept_off);
    services_redis_conf_free(NULL);
    config_unref(on);
    config_unref(off);
}

/* ---- permission refusals for /readyz --------------------------------------------------- */

static redisReply reply_of(int type, const char *str)
{
    return (redisReply){.type = type, .str = (char *)str, .len = str ? strlen(str) : 0};
}

static void test_noperm_bits(void **state)
{
    struct services svc = {0};
    redisReply noperm = reply_of(
        REDIS_REPLY_ERROR, "NOPERM this user has no permissions to run the 'evalsha' command");
    redisReply noscript = reply_of(REDIS_REPLY_ERROR, "NOSCRIPT No matching script.");
    redisReply in_script =
        reply_of(REDIS_REPLY_ERROR, "ERR The user executing the script can't run this command or "
                                    "subcommand script: 1234, on @user_script:1.");
    redisReply array = reply_of(REDIS_REPLY_ARRAY, NULL);
    redisReply other = reply_of(REDIS_REPLY_ERROR, "LOADING Redis is loading");

    assert_true(services_noperm_note(&svc, SVC_NOPERM_EVALSHA, &noperm));
    assert_int_equal(atomic_load(&svc.redis_noperm), SVC_NOPERM_EVALSHA);
    assert_false(services_noperm_note(&svc, SVC_NOPERM_EVALSHA, NULL)); /* no reply: kept */
    assert_int_equal(atomic_load(&svc.redis_noperm), SVC_NOPERM_EVALSHA);
    assert_false(services_noperm_note(&svc, SVC_NOPERM_EVALSHA, &noscript)); /* allowed */
    assert_int_equal(atomic_load(&svc.redis_noperm), 0);
    /* the script ran, a command inside was refused: the script's bit, not EVAL's */
    assert_true(services_noperm_note(&svc, SVC_NOPERM_EVAL, &in_script));
    assert_int_equal(atomic_load(&svc.redis_noperm), SVC_NOPERM_SCRIPT);
    assert_true(services_noperm_note(&svc, SVC_NOPERM_HGETALL, &noperm));
    assert_false(services_noperm_note(&svc, SVC_NOPERM_HGETALL, &other)); /* not a refusal */
    assert_true(services_noperm_note(&svc, SVC_NOPERM_EVAL, &noperm));
    /* a decision made: the three rate-limit bits go, the sessions' stays */
    assert_false(services_noperm_note(&svc, SVC_NOPERM_EVALSHA, &array));
    assert_int_equal(atomic_load(&svc.redis_noperm), 0);
    assert_true(services_noperm_note(&svc, SVC_NOPERM_HGETALL, &noperm));
    assert_false(services_noperm_note(&svc, SVC_NOPERM_EVALSHA, &array));
    assert_int_equal(atomic_load(&svc.redis_noperm), SVC_NOPERM_HGETALL);
    assert_string_equal(services_noperm_str(SVC_NOPERM_EVALSHA),
                        "NOPERM for evalsha (global rate limits)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_config),       cmocka_unit_test(test_each_field_changed),
        cmocka_unit_test(test_other_fields_same), cmocka_unit_test(test_enabled),
        cmocka_unit_test(test_noperm_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
