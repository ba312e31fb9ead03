/*
 * Unit tests for src/auth_cache: hit / miss, expiry of positive and negative
 * entries, stale grace (positive only, measured from validation), drop, clear,
 * in-place update, and the bound: a full set replaces its oldest entry and the
 * table never holds more than its size whatever the number of distinct tokens.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "policy/auth_cache.h"
#include "http/request.h"
#include "policy/session.h"

#define T0 1000000 /* an arbitrary monotonic "now" in ms */

static void sha_of(unsigned n, uint8_t sha[32])
{
    char buf[32];
    int len = snprintf(buf, sizeof buf, "token-%u", n);
    SHA256((const unsigned char *)buf, (size_t)len, sha);
}

static struct session_identity ident(const char *tenant, const char *user, bool mfa)
{
    struct session_identity id;
    memset(&id, 0, sizeof id);
    id.authenticated = true;
    id.mfa = mfa;
    snprintf(id.tenant, sizeof id.tenant, "%s", tenant);
    snprintf(id.user, sizeof id.user, "%s", user);
    snprintf(id.roles, sizeof id.roles, "r1,r2");
    return id;
}

static enum auth_cache_hit get(struct auth_cache *c, const uint8_t sha[32], uint64_t now,
                               uint64_t grace, enum session_status *st, struct session_identity *id)
{
    memset(id, 0, sizeof *id);
    *st = (enum session_status) - 1;
    return auth_cache_get(c, sha, now, grace, st, id);
}

static void test_miss_and_hit(void **state)
{
    (void)state;
    struct auth_cache *c = auth_cache_new(64);
    assert_non_null(c);
    uint8_t a[32], b[32];
    sha_of(1, a);
    sha_of(2, b);
    enum session_status st;
    struct session_identity id;
    assert_int_equal(get(c, a, T0, 0, &st, &id), AUTH_CACHE_MISS);
    assert_int_equal(auth_cache_count(c), 0);

    struct session_identity in = ident("acme", "u-1", true);
    auth_cache_put(c, a, SESSION_OK, &in, T0, 5000, auth_cache_epoch(c));
    assert_int_equal(auth_cache_count(c), 1);
    assert_int_equal(get(c, a, T0, 0, &st, &id), AUTH_CACHE_FRESH);
    assert_int_equal(st, SESSION_OK);
    assert_string_equal(id.tenant, "acme");
    assert_string_equal(id.user, "u-1");
    assert_string_equal(id.roles, "r1,r2");
    assert_true(id.mfa);
    assert_true(id.authenticated);
    /* another token is not confused with it */
    assert_int_equal(get(c, b, T0, 0, &st, &id), AUTH_CACHE_MISS);

    /* a negative decision: status only, the identity is not touched */
    auth_cache_put(c, b, SESSION_UNKNOWN, NULL, T0, 1000, auth_cache_epoch(c));
    assert_int_equal(auth_cache_count(c), 2);
    assert_int_equal(get(c, b, T0 + 10, 0, &st, &id), AUTH_CACHE_FRESH);
    assert_int_equal(st, SESSION_UNKNOWN);
    assert_string_equal(id.tenant, "");
    assert_false(id.authenticated);
    auth_cache_free(c);
}

static void test_expiry(void **state)
{
    (void)state;
    struct auth_cache *c = auth_cache_new(64);
    uint8_t a[32], b[32];
    sha_of(1, a);
    sha_of(2, b);
    enum session_status st;
    struct session_identity id, in = ident("t", "u", false);
    auth_cache_put(c, a, SESSION_OK, &in, T0, 5000, auth_cache_epoch(c));
    auth_cache_put(c, b, SESSION_EXPIRED, NULL, T0, 1000, auth_cache_epoch(c));
    assert_int_equal(get(c, a, T0 + 4999, 0, &st, &id), AUTH_CACHE_FRESH);
    assert_int_equal(get(c, a, T0 + 5000, 0, &st, &id), AUTH_CACHE_MISS);
    assert_int_equal(get(c, a, T0 + 60000, 0, &st, &id), AUTH_CACHE_MISS);
    assert_int_equal(get(c, b, T0 + 999, 0, &st, &id), AUTH_CACHE_FRESH);
    assert_int_equal(st, SESSION_EXPIRED);
    assert_int_equal(get(c, b, T0 + 1000, 0, &st, &id), AUTH_CACHE_MISS);
    auth_cache_free(c);
}

static void test_ttl_zero_is_not_cached(void **state)
{
    (void)state;
    struct auth_cache *c = auth_cache_new(64);
    uint8_t a[32];
    sha_of(1, a);
    enum session_status st;
    struct session_identity id, in = ident("t", "u", false);
    auth_cache_put(c, a, SESSION_OK, &in, T0, 0, auth_cache_epoch(c));
    assert_int_equal(auth_cache_count(c), 0);
    assert_int_equal(get(c, a, T0, 0, &st, &id), AUTH_CACHE_MISS);
    assert_int_equal(get(c, a, T0, 30000, &st, &id), AUTH_CACHE_MISS); /* not even stale */
    auth_cache_free(c);
}

/* A decision that may not be cached (TTL 0: negative_cache_ttl 0s, or a session at
 * its exp) must still replace what the cache held for that token: else a revoked
 * session's old positive entry would be served stale during the next outage. */
static void test_ttl_zero_put_forgets_the_old_decision(void **state)
{
    (void)state;
    struct auth_cache *c = auth_cache_new(64);
    uint8_t a[32];
    sha_of(1, a);
    enum session_status st;
    struct session_identity id, in = ident("t", "u", false);
    auth_cache_put(c, a, SESSION_OK, &in, T0, 100, auth_cache_epoch(c));
    assert_int_equal(auth_cache_count(c), 1);
    auth_cache_put(c, a, SESSION_UNKNOWN, NULL, T0 + 200, 0, auth_cache_epoch(c));
    assert_int_equal(get(c, a, T0 + 300, 30000, &st, &id), AUTH_CACHE_MISS);
    assert_int_equal(auth_cache_count(c), 0);
    auth_cache_put(c, a, SESSION_OK, &in, T0 + 400, 100000, auth_cache_epoch(c));
    auth_cache_put(c, a, SESSION_OK, &in, T0 + 500, 0, auth_cache_epoch(c));
    assert_int_equal(get(c, a, T0 + 501, 0, &st, &id), AUTH_CACHE_MISS);
    assert_int_equal(auth_cache_count(c), 0);
    auth_cache_free(c);
}

static void test_stale_grace(void **state)
{
    (void)state;
    struct auth_cache *c = auth_cache_new(64);
    uint8_t a[32], n[32];
    sha_of(1, a);
    sha_of(2, n);
    enum session_status st;
    struct session_identity id, in = ident("acme", "u", true);
    auth_cache_put(c, a, SESSION_OK, &in, T0, 100, auth_cache_epoch(c));
    auth_cache_put(c, n, SESSION_UNKNOWN, NULL, T0, 100, auth_cache_epoch(c));

    /* within the TTL it is fresh whatever the grace */
    assert_int_equal(get(c, a, T0 + 50, 30000, &st, &id), AUTH_CACHE_FRESH);
    /* past the TTL: stale while validated at most grace ago, with the identity */
    assert_int_equal(get(c, a, T0 + 100, 30000, &st, &id), AUTH_CACHE_STALE);
    assert_int_equal(st, SESSION_OK);
    assert_string_equal(id.tenant, "acme");
    assert_true(id.mfa);
    assert_int_equal(get(c, a, T0 + 30000, 30000, &st, &id), AUTH_CACHE_STALE);
    assert_int_equal(get(c, a, T0 + 30001, 30000, &st, &id), AUTH_CACHE_MISS);
    /* no grace: a miss */
    assert_int_equal(get(c, a, T0 + 100, 0, &st, &id), AUTH_CACHE_MISS);
    /* negative decisions are never served stale */
    assert_int_equal(get(c, n, T0 + 50, 30000, &st, &id), AUTH_CACHE_FRESH);
    assert_int_equal(get(c, n, T0 + 101, 30000, &st, &id), AUTH_CACHE_MISS);

    /* a later negative decision for the same token ends the stale grace at once
     * (a revoked session must not be served stale during an outage) */
    auth_cache_put(c, a, SESSION_UNKNOWN, NULL, T0 + 200, 100, auth_cache_epoch(c));
    assert_int_equal(get(c, a, T0 + 250, 30000, &st, &id), AUTH_CACHE_FRESH);
    assert_int_equal(st, SESSION_UNKNOWN);
    assert_int_equal(get(c, a, T0 + 400, 30000, &st, &id), AUTH_CACHE_MISS);
    auth_cache_free(c);
}

static void test_update_in_place(void **state)
{
    (void)state;
    struct auth_cache *c = auth_cache_new(64);
    uint8_t a[32];
    sha_of(1, a);
    enum session_status st;
    struct session_identity id, in1 = ident("t1", "u1", false), in2 = ident("t2", "u2", true);
    auth_cache_put(c, a, SESSION_OK, &in1, T0, 1000, auth_cache_epoch(c));
    auth_cache_put(c, a, SESSION_OK, &in2, T0 + 500, 1000, auth_cache_epoch(c));
    assert_int_equal(auth_cache_count(c), 1);
    assert_int_equal(get(c, a, T0 + 1200, 0, &st, &id), AUTH_CACHE_FRESH); /* TTL renewed */
    assert_string_equal(id.tenant, "t2");
    assert_true(id.mfa);
    auth_cache_free(c);
}

static void test_drop_and_clear(void **state)
{
    (void)state;
    struct auth_cache *c = auth_cache_new(64);
    uint8_t a[32], b[32];
    sha_of(1, a);
    sha_of(2, b);
    enum session_status st;
    struct session_identity id, in = ident("t", "u", false);
    auth_cache_put(c, a, SESSION_OK, &in, T0, 300000, auth_cache_epoch(c));
    auth_cache_put(c, b, SESSION_OK, &in, T0, 300000, auth_cache_epoch(c));
    assert_int_equal(auth_cache_count(c), 2);
    assert_true(auth_cache_drop(c, a));
    assert_int_equal(auth_cache_count(c), 1);
    assert_int_equal(get(c, a, T0, 0, &st, &id), AUTH_CACHE_MISS);
    assert_int_equal(get(c, a, T0 + 1, 300000, &st, &id), AUTH_CACHE_MISS); /* nor stale */
    assert_false(auth_cache_drop(c, a));
    assert_int_equal(auth_cache_count(c), 1);
    assert_int_equal(get(c, b, T0, 0, &st, &id), AUTH_CACHE_FRESH);
    /* a dropped slot is reused */
    auth_cache_put(c, a, SESSION_OK, &in, T0 + 1, 1000, auth_cache_epoch(c));
    assert_int_equal(auth_cache_count(c), 2);

    auth_cache_clear(c);
    assert_int_equal(auth_cache_count(c), 0);
    assert_int_equal(get(c, a, T0 + 2, 300000, &st, &id), AUTH_CACHE_MISS);
    assert_int_equal(get(c, b, T0 + 2, 300000, &st, &id), AUTH_CACHE_MISS);
    assert_false(auth_cache_drop(c, b));
    auth_cache_put(c, b, SESSION_OK, &in, T0 + 3, 1000, auth_cache_epoch(c));
    assert_int_equal(get(c, b, T0 + 3, 0, &st, &id), AUTH_CACHE_FRESH);
    auth_cache_free(c);
}

/* One set of 8 ways: the 9th token replaces the oldest, not a random one. */
static void test_replaces_oldest(void **state)
{
    (void)state;
    struct auth_cache *c = auth_cache_new(8);
    enum session_status st;
    struct session_identity id, in = ident("t", "u", false);
    uint8_t s[10][32];
    for (unsigned i = 0; i < 10; i++)
        sha_of(100 + i, s[i]);
    /* stored in a shuffled time order: token 3 is the oldest */
    const uint64_t when[8] = {T0 + 5, T0 + 7, T0 + 2, T0 + 1, T0 + 8, T0 + 3, T0 + 6, T0 + 4};
    for (unsigned i = 0; i < 8; i++)
        auth_cache_put(c, s[i], SESSION_OK, &in, when[i], 100000, auth_cache_epoch(c));
    assert_int_equal(auth_cache_count(c), 8);
    auth_cache_put(c, s[8], SESSION_OK, &in, T0 + 10, 100000, auth_cache_epoch(c));
    assert_int_equal(auth_cache_count(c), 8);
    assert_int_equal(get(c, s[3], T0 + 10, 0, &st, &id), AUTH_CACHE_MISS);
    for (unsigned i = 0; i < 9; i++)
        if (i != 3)
            assert_int_equal(get(c, s[i], T0 + 10, 0, &st, &id), AUTH_CACHE_FRESH);
    /* next oldest is token 2 */
    auth_cache_put(c, s[9], SESSION_UNKNOWN, NULL, T0 + 11, 100000, auth_cache_epoch(c));
    assert_int_equal(get(c, s[2], T0 + 11, 0, &st, &id), AUTH_CACHE_MISS);
    assert_int_equal(get(c, s[9], T0 + 11, 0, &st, &id), AUTH_CACHE_FRESH);
    assert_int_equal(auth_cache_count(c), 8);
    /* after a drop the free slot is used before anything is evicted */
    assert_true(auth_cache_drop(c, s[0]));
    auth_cache_put(c, s[3], SESSION_OK, &in, T0 + 12, 100000, auth_cache_epoch(c));
    assert_int_equal(auth_cache_count(c), 8);
    for (unsigned i = 1; i < 10; i++)
        if (i != 2)
            assert_int_equal(get(c, s[i], T0 + 12, 0, &st, &id), AUTH_CACHE_FRESH);
    auth_cache_free(c);
}

/* 20000 distinct tokens through a 1000-entry cache: never more than 1000
 * entries, and the most recent ones are there. */
static void test_bounded(void **state)
{
    (void)state;
    struct auth_cache *c = auth_cache_new(1000);
    enum session_status st;
    struct session_identity id, in = ident("t", "u", false);
    uint8_t s[32];
    for (unsigned i = 0; i < 20000; i++) {
        sha_of(i, s);
        auth_cache_put(c, s, (i % 2) ? SESSION_UNKNOWN : SESSION_OK, &in, T0 + i, 1000000,
                       auth_cache_epoch(c));
        assert_true(auth_cache_count(c) <= 1000);
    }
    assert_true(auth_cache_count(c) >= 900); /* the table is actually used */
    sha_of(19999, s);
    assert_int_equal(get(c, s, T0 + 20000, 0, &st, &id), AUTH_CACHE_FRESH);
    unsigned old_hits = 0;
    for (unsigned i = 0; i < 1000; i++) {
        sha_of(i, s);
        old_hits += get(c, s, T0 + 20000, 0, &st, &id) != AUTH_CACHE_MISS;
    }
    assert_int_equal(old_hits, 0); /* the oldest went first */
    auth_cache_free(c);

    /* size 0 still works (one set) and sizes round up to whole sets */
    struct auth_cache *z = auth_cache_new(0);
    assert_non_null(z);
    sha_of(1, s);
    auth_cache_put(z, s, SESSION_OK, &in, T0, 1000, auth_cache_epoch(z));
    assert_int_equal(get(z, s, T0, 0, &st, &id), AUTH_CACHE_FRESH);
    for (unsigned i = 0; i < 100; i++) {
        sha_of(1000 + i, s);
        auth_cache_put(z, s, SESSION_OK, &in, T0 + i + 1, 1000, auth_cache_epoch(z));
    }
    assert_true(auth_cache_count(z) <= 8);
    auth_cache_free(z);
    auth_cache_free(NULL);
}

/*
 * A reply to a lookup that was in flight when its key was invalidated (push
 * revocation) is not cached: the invalidation wins. So does a clear (a lost
 * revocation connection), and a new cache after a reload. Others are cached.
 */
static void test_invalidation_wins_over_reply_in_flight(void **state)
{
    (void)state;
    struct auth_cache *c = auth_cache_new(64);
    enum session_status st;
    struct session_identity id, in = ident("acme", "alice", false);
    uint8_t a[32], b[32];
    sha_of(1, a);
    sha_of(2, b);

    /* the lookup of a starts; a is revoked (not cached yet); the old reply arrives */
    uint64_t since = auth_cache_epoch(c);
    assert_false(auth_cache_drop(c, a));
    assert_false(auth_cache_put(c, a, SESSION_OK, &in, T0, 60000, since));
    assert_int_equal(get(c, a, T0, 0, &st, &id), AUTH_CACHE_MISS);
    assert_int_equal(get(c, a, T0, 600000, &st, &id), AUTH_CACHE_MISS);
    /* a lookup started after the invalidation is cached */
    assert_true(auth_cache_put(c, a, SESSION_UNKNOWN, NULL, T0, 1000, auth_cache_epoch(c)));
    assert_int_equal(get(c, a, T0, 0, &st, &id), AUTH_CACHE_FRESH);
    assert_int_equal(st, SESSION_UNKNOWN);

    /* an invalidation of another key in another set does not stop b being cached */
    since = auth_cache_epoch(c);
    uint8_t other[32];
    for (unsigned n = 3;; n++) { /* a key outside b's set (8 sets of 8 entries) */
        uint64_t hb, ho;
        sha_of(n, other);
        memcpy(&hb, b, 8);
        memcpy(&ho, other, 8);
        if (hb % 8 != ho % 8)
            break;
    }
    auth_cache_drop(c, other);
    assert_true(auth_cache_put(c, b, SESSION_OK, &in, T0, 60000, since));
    assert_int_equal(get(c, b, T0, 0, &st, &id), AUTH_CACHE_FRESH);

    /* a clear (revocation connection lost, FLUSHALL) wins over every reply in flight */
    since = auth_cache_epoch(c);
    auth_cache_clear(c);
    assert_false(auth_cache_put(c, b, SESSION_OK, &in, T0, 60000, since));
    assert_int_equal(get(c, b, T0, 600000, &st, &id), AUTH_CACHE_MISS);
    assert_int_equal(auth_cache_count(c), 0);

    /* a reply to a lookup started on the cache a reload replaced */
    since = auth_cache_epoch(c);
    struct auth_cache *fresh = auth_cache_new(64);
    assert_false(auth_cache_put(fresh, b, SESSION_OK, &in, T0, 60000, since));
    assert_int_equal(auth_cache_count(fresh), 0);
    assert_true(auth_cache_put(fresh, b, SESSION_OK, &in, T0, 60000, auth_cache_epoch(fresh)));
    auth_cache_free(fresh);

    /* a refused reply leaves a newer decision alone */
    since = auth_cache_epoch(c);
    auth_cache_drop(c, a);
    assert_true(auth_cache_put(c, a, SESSION_UNKNOWN, NULL, T0, 1000, auth_cache_epoch(c)));
    assert_false(auth_cache_put(c, a, SESSION_OK, &in, T0, 60000, since));
    assert_false(auth_cache_put(c, a, SESSION_OK, &in, T0, 0, since));
    assert_int_equal(get(c, a, T0, 0, &st, &id), AUTH_CACHE_FRESH);
    assert_int_equal(st, SESSION_UNKNOWN);
    auth_cache_free(c);
}

/* A cached malformed record still names its bad field (the audit event says it). */
static void test_invalid_keeps_its_field(void **state)
{
    (void)state;
    struct auth_cache *c = auth_cache_new(64);
    assert_non_null(c);
    uint8_t a[32];
    sha_of(1, a);
    struct session_identity bad = ident("t", "u", false);
    bad.invalid_field = "exp";
    assert_true(auth_cache_put(c, a, SESSION_INVALID, &bad, T0, 1000, auth_cache_epoch(c)));
    enum session_status st;
    struct session_identity id;
    assert_int_equal(get(c, a, T0 + 1, 0, &st, &id), AUTH_CACHE_FRESH);
    assert_int_equal(st, SESSION_INVALID);
    assert_string_equal(id.invalid_field, "exp");
    assert_string_equal(id.tenant, ""); /* nothing else of a bad record is handed out */
    auth_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_miss_and_hit),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_ttl_zero_is_not_cached),
        cmocka_unit_test(test_ttl_zero_put_forgets_the_old_decision),
        cmocka_unit_test(test_stale_grace),
        cmocka_unit_test(test_update_in_place),
        cmocka_unit_test(test_drop_and_clear),
        cmocka_unit_test(test_replaces_oldest),
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_invalidation_wins_over_reply_in_flight),
        cmocka_unit_test(test_invalid_keeps_its_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
