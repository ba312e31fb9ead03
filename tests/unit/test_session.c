/*
 * Unit tests for src/session: finding the token (bearer, cookie, both,
 * duplicates, malformed, other Authorization schemes), its shape bounds, the
 * key hash, parsing HGETALL replies (built with hiredis' own RESP reader, so
 * they are exactly what moat gets from the wire) and the header-value alphabet.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "config/config.h"
#include "http/request.h"
#include "policy/session.h"

#define TOK "abcdefghijklmnop0123456789" /* 26 bytes, valid */
#define TOK2 "ZYXWVUTSRQPONMLKJIHGFEDCBA-_.~+/="

/* ---- helpers ------------------------------------------------------------ */

static struct config_sessions cfg_default(void)
{
    struct config_sessions c = {0};
    c.cookie = "session";
    c.bearer = true;
    c.key_prefix = "moat:sess:";
    c.token_min_len = 16;
    c.token_max_len = 256;
    return c;
}

#define MAXH 8
struct hdrs {
    struct http1_header h[MAXH];
    size_t n;
};

static void add(struct hdrs *hs, const char *name, const char *value)
{
    assert_true(hs->n < MAXH);
    hs->h[hs->n].name.p = name;
    hs->h[hs->n].name.len = strlen(name);
    hs->h[hs->n].value.p = value;
    hs->h[hs->n].value.len = strlen(value);
    hs->n++;
}

static enum session_status find(const struct config_sessions *c, struct hdrs *hs, char *out,
                                size_t cap)
{
    struct http1_str t = {0};
    enum session_status st = session_token_find(c, hs->h, hs->n, &t);
    out[0] = '\0';
    if (st == SESSION_OK) {
        assert_true(t.len < cap);
        memcpy(out, t.p, t.len);
        out[t.len] = '\0';
    }
    return st;
}

/* A token of n repeated valid characters. */
static char *tok_of_len(size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)('a' + i % 26);
    s[n] = '\0';
    return s;
}

/* ---- session_token_find ------------------------------------------------- */

static void test_bearer(void **state)
{
    (void)state;
    struct config_sessions c = cfg_default();
    char out[300];
    struct hdrs hs = {0};
    add(&hs, "Host", "x");
    add(&hs, "Authorization", "Bearer " TOK);
    assert_int_equal(find(&c, &hs, out, sizeof out), SESSION_OK);
    assert_string_equal(out, TOK);

    /* scheme and header name are case-insensitive; extra spaces are skipped */
    struct hdrs h2 = {0};
    add(&h2, "authorization", "bEaReR   " TOK2);
    assert_int_equal(find(&c, &h2, out, sizeof out), SESSION_OK);
    assert_string_equal(out, TOK2);
}

static void test_cookie(void **state)
{
    (void)state;
    struct config_sessions c = cfg_default();
    char out[300];
    struct hdrs hs = {0};
    add(&hs, "Cookie", "theme=dark; session=" TOK "; lang=en");
    assert_int_equal(find(&c, &hs, out, sizeof out), SESSION_OK);
    assert_string_equal(out, TOK);

    /* first and last position, no spaces, name case-sensitive header case-insensitive */
    struct hdrs h2 = {0};
    add(&h2, "COOKIE", "session=" TOK);
    assert_int_equal(find(&c, &h2, out, sizeof out), SESSION_OK);
    assert_string_equal(out, TOK);
    struct hdrs h3 = {0};
    add(&h3, "cookie", "a=b;session=" TOK2);
    assert_int_equal(find(&c, &h3, out, sizeof out), SESSION_OK);
    assert_string_equal(out, TOK2);

    /* the token in another cookie header */
    struct hdrs h4 = {0};
    add(&h4, "Cookie", "a=b");
    add(&h4, "Cookie", "session=" TOK);
    assert_int_equal(find(&c, &h4, out, sizeof out), SESSION_OK);
    assert_string_equal(out, TOK);
}

static void test_cookie_name_must_match_exactly(void **state)
{
    (void)state;
    struct config_sessions c = cfg_default();
    char out[300];
    const char *near[] = {"sessionx=" TOK, "xsession=" TOK, "Session=" TOK, "session " TOK,
                          "session =" TOK, "sess=" TOK,     "session"};
    for (size_t i = 0; i < sizeof near / sizeof *near; i++) {
        struct hdrs hs = {0};
        add(&hs, "Cookie", near[i]);
        assert_int_equal(find(&c, &hs, out, sizeof out), SESSION_MISSING);
    }
    /* a custom cookie name */
    c.cookie = "sid";
    struct hdrs hs = {0};
    add(&hs, "Cookie", "session=" TOK2 "; sid=" TOK);
    assert_int_equal(find(&c, &hs, out, sizeof out), SESSION_OK);
    assert_string_equal(out, TOK);
}

static void test_both_bearer_wins(void **state)
{
    (void)state;
    struct config_sessions c = cfg_default();
    char out[300];
    struct hdrs hs = {0};
    add(&hs, "Cookie", "session=" TOK2);
    add(&hs, "Authorization", "Bearer " TOK);
    assert_int_equal(find(&c, &hs, out, sizeof out), SESSION_OK);
    assert_string_equal(out, TOK);

    /* bearer off: the cookie is used, the Authorization header ignored */
    c.bearer = false;
    assert_int_equal(find(&c, &hs, out, sizeof out), SESSION_OK);
    assert_string_equal(out, TOK2);

    /* cookies off: only the bearer token */
    c.bearer = true;
    c.cookie = NULL;
    struct hdrs h2 = {0};
    add(&h2, "Cookie", "session=" TOK2);
    assert_int_equal(find(&c, &h2, out, sizeof out), SESSION_MISSING);
    assert_int_equal(find(&c, &hs, out, sizeof out), SESSION_OK);
    assert_string_equal(out, TOK);
}

static void test_missing(void **state)
{
    (void)state;
    struct config_sessions c = cfg_default();
    char out[300];
    struct hdrs none = {0};
    assert_int_equal(find(&c, &none, out, sizeof out), SESSION_MISSING);
    struct hdrs hs = {0};
    add(&hs, "Host", "example");
    add(&hs, "Cookie", "a=b; c=d");
    add(&hs, "X-Session", TOK);
    assert_int_equal(find(&c, &hs, out, sizeof out), SESSION_MISSING);
}

static void test_other_schemes(void **state)
{
    (void)state;
    struct config_sessions c = cfg_default();
    char out[300];
    const char *schemes[] = {"Basic dXNlcjpwYXNzd29yZA==",
                             "Digest username=\"x\"",
                             "Bearer",
                             "Token " TOK,
                             "Bearer" TOK,
                             "Negotiate abc"};
    for (size_t i = 0; i < sizeof schemes / sizeof *schemes; i++) {
        struct hdrs hs = {0};
        add(&hs, "Authorization", schemes[i]);
        assert_int_equal(find(&c, &hs, out, sizeof out), SESSION_MISSING);
        /* ... and the cookie still counts next to another scheme */
        add(&hs, "Cookie", "session=" TOK);
        assert_int_equal(find(&c, &hs, out, sizeof out), SESSION_OK);
        assert_string_equal(out, TOK);
    }
    /* Basic and Bearer together: the bearer token */
    struct hdrs hs = {0};
    add(&hs, "Authorization", "Basic dXNlcjpwYXNzd29yZA==");
    add(&hs, "Authorization", "Bearer " TOK);
    assert_int_equal(find(&c, &hs, out, sizeof out), SESSION_OK);
    assert_string_equal(out, TOK);
}

static void test_duplicates(void **state)
{
    (void)state;
    struct config_sessions c = cfg_default();
    char out[300];

    /* two bearer tokens: ambiguous, even when equal */
    struct hdrs b = {0};
    add(&b, "Authorization", "Bearer " TOK);
    add(&b, "Authorization", "Bearer " TOK2);
    assert_int_equal(find(&c, &b, out, sizeof out), SESSION_MALFORMED);
    struct hdrs b2 = {0};
    add(&b2, "Authorization", "Bearer " TOK);
    add(&b2, "authorization", "Bearer " TOK);
    assert_int_equal(find(&c, &b2, out, sizeof out), SESSION_MALFORMED);

    /* the cookie twice in one header: equal values are fine, different ones not */
    struct hdrs c1 = {0};
    add(&c1, "Cookie", "session=" TOK "; session=" TOK);
    assert_int_equal(find(&c, &c1, out, sizeof out), SESSION_OK);
    assert_string_equal(out, TOK);
    struct hdrs c2 = {0};
    add(&c2, "Cookie", "session=" TOK "; session=" TOK2);
    assert_int_equal(find(&c, &c2, out, sizeof out), SESSION_MALFORMED);

    /* ... and across Cookie headers */
    struct hdrs c3 = {0};
    add(&c3, "Cookie", "session=" TOK);
    add(&c3, "Cookie", "session=" TOK);
    assert_int_equal(find(&c, &c3, out, sizeof out), SESSION_OK);
    struct hdrs c4 = {0};
    add(&c4, "Cookie", "session=" TOK);
    add(&c4, "Cookie", "x=1; session=" TOK2);
    assert_int_equal(find(&c, &c4, out, sizeof out), SESSION_MALFORMED);
}

static void test_malformed_alphabet(void **state)
{
    (void)state;
    struct config_sessions c = cfg_default();
    char out[300];
    const char *bad[] = {
        TOK "\"",       "\"" TOK "\"", TOK "%00", TOK " x",   TOK "\t",
        TOK ",x",       TOK "\\",      TOK "*",   TOK "\x80", TOK "\xc3\xa9",
        TOK "<script>", TOK "\x01",    TOK ":",   TOK "@",    TOK "!",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char value[300];
        snprintf(value, sizeof value, "Bearer %s", bad[i]);
        struct hdrs hs = {0};
        add(&hs, "Authorization", value);
        assert_int_equal(find(&c, &hs, out, sizeof out), SESSION_MALFORMED);
        /* the same value as a cookie (none of these contains the ';' delimiter) */
        snprintf(value, sizeof value, "session=%s", bad[i]);
        struct hdrs hc = {0};
        add(&hc, "Cookie", value);
        assert_int_equal(find(&c, &hc, out, sizeof out), SESSION_MALFORMED);
    }
    /* every allowed punctuation character */
    struct hdrs ok = {0};
    add(&ok, "Authorization", "Bearer AZaz09-_.~+/=AZaz09");
    assert_int_equal(find(&c, &ok, out, sizeof out), SESSION_OK);
    assert_string_equal(out, "AZaz09-_.~+/=AZaz09");
}

static void test_length_bounds(void **state)
{
    (void)state;
    struct config_sessions c = cfg_default();
    char out[5000], value[5000];
    struct {
        size_t len;
        enum session_status want;
    } cases[] = {{0, SESSION_MALFORMED}, {1, SESSION_MALFORMED},   {15, SESSION_MALFORMED},
                 {16, SESSION_OK},       {17, SESSION_OK},         {255, SESSION_OK},
                 {256, SESSION_OK},      {257, SESSION_MALFORMED}, {4000, SESSION_MALFORMED}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *t = tok_of_len(cases[i].len);
        snprintf(value, sizeof value, "Bearer %s", t);
        struct hdrs hs = {0};
        add(&hs, "Authorization", value);
        assert_int_equal(find(&c, &hs, out, sizeof out), cases[i].want);
        snprintf(value, sizeof value, "session=%s", t);
        struct hdrs hc = {0};
        add(&hc, "Cookie", value);
        assert_int_equal(find(&c, &hc, out, sizeof out), cases[i].want);
        if (cases[i].want == SESSION_OK)
            assert_string_equal(out, t);
        free(t);
    }
    /* configured bounds are honoured */
    c.token_min_len = 32;
    c.token_max_len = 40;
    char *t31 = tok_of_len(31), *t32 = tok_of_len(32), *t40 = tok_of_len(40), *t41 = tok_of_len(41);
    const char *toks[] = {t31, t32, t40, t41};
    enum session_status want[] = {SESSION_MALFORMED, SESSION_OK, SESSION_OK, SESSION_MALFORMED};
    for (int i = 0; i < 4; i++) {
        snprintf(value, sizeof value, "Bearer %s", toks[i]);
        struct hdrs hs = {0};
        add(&hs, "Authorization", value);
        assert_int_equal(find(&c, &hs, out, sizeof out), want[i]);
    }
    free(t31);
    free(t32);
    free(t40);
    free(t41);
}

static void test_malformed_bearer_is_not_rescued_by_cookie(void **state)
{
    (void)state;
    struct config_sessions c = cfg_default();
    char out[300];
    struct hdrs hs = {0};
    add(&hs, "Authorization", "Bearer short");
    add(&hs, "Cookie", "session=" TOK);
    assert_int_equal(find(&c, &hs, out, sizeof out), SESSION_MALFORMED);
    struct hdrs h2 = {0};
    add(&h2, "Authorization", "Bearer ");
    assert_int_equal(find(&c, &h2, out, sizeof out), SESSION_MALFORMED);
}

/* ---- session_token_hash ------------------------------------------------- */

static void test_token_hash(void **state)
{
    (void)state;
    uint8_t sha[32];
    char hex[65];
    struct http1_str t = {"abc", 3};
    session_token_hash(t, sha, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(sha[0], 0xba);
    assert_int_equal(sha[31], 0xad);
    struct http1_str t2 = {TOK, strlen(TOK)};
    session_token_hash(t2, sha, hex);
    assert_int_equal(strlen(hex), 64);
    for (int i = 0; i < 64; i++)
        assert_non_null(strchr("0123456789abcdef", hex[i]));
}

/* ---- session_parse_reply ------------------------------------------------ */

#define NOW 1700000000LL

/* Parses RESP text into a reply with hiredis' reader (caller frees). */
static redisReply *resp(const char *wire, size_t len)
{
    redisReader *rd = redisReaderCreate();
    assert_non_null(rd);
    assert_int_equal(redisReaderFeed(rd, wire, len), REDIS_OK);
    void *r = NULL;
    assert_int_equal(redisReaderGetReply(rd, &r), REDIS_OK);
    assert_non_null(r);
    redisReaderFree(rd);
    return r;
}

/* An HGETALL-shaped reply from n field/value C strings. */
static redisReply *hash_reply(int n, const char **kv)
{
    char *buf = malloc(65536);
    assert_non_null(buf);
    size_t k = (size_t)snprintf(buf, 65536, "*%d\r\n", n);
    for (int i = 0; i < n; i++)
        k += (size_t)snprintf(buf + k, 65536 - k, "$%zu\r\n%s\r\n", strlen(kv[i]), kv[i]);
    redisReply *r = resp(buf, k);
    free(buf);
    return r;
}

static enum session_status parse(int n, const char **kv, struct session_identity *id, int64_t *exp)
{
    redisReply *r = hash_reply(n, kv);
    enum session_status st = session_parse_reply(r, NOW, id, exp);
    freeReplyObject(r);
    return st;
}

static void test_parse_full(void **state)
{
    (void)state;
    struct session_identity id;
    memset(&id, 0x55, sizeof id);
    strcpy(id.token_hash, "keep-me");
    id.token_sha[0] = 0xab;
    int64_t exp = -1;
    const char *kv[] = {"tenant", "acme",       "user",    "user-42@acme.example",
                        "mfa",    "1",          "roles",   "admin,billing",
                        "exp",    "1700003600", "created", "whatever !"};
    assert_int_equal(parse(12, kv, &id, &exp), SESSION_OK);
    assert_true(id.authenticated);
    assert_true(id.mfa);
    assert_string_equal(id.tenant, "acme");
    assert_string_equal(id.user, "user-42@acme.example");
    assert_string_equal(id.roles, "admin,billing");
    assert_int_equal(exp, 1700003600);
    /* the token's hash (filled before the lookup) survives */
    assert_string_equal(id.token_hash, "keep-me");
    assert_int_equal(id.token_sha[0], 0xab);
}

static void test_parse_minimal_and_reset(void **state)
{
    (void)state;
    struct session_identity id;
    memset(&id, 0, sizeof id);
    id.mfa = true; /* left over from anything: must be reset */
    strcpy(id.roles, "root");
    int64_t exp = 99;
    const char *kv[] = {"user", "u1", "tenant", "t1"};
    assert_int_equal(parse(4, kv, &id, &exp), SESSION_OK);
    assert_false(id.mfa); /* mfa absent: no MFA */
    assert_string_equal(id.roles, "");
    assert_string_equal(id.tenant, "t1");
    assert_string_equal(id.user, "u1");
    assert_int_equal(exp, 0);

    const char *kv0[] = {"tenant", "t1", "user", "u1", "mfa", "0", "roles", ""};
    assert_int_equal(parse(8, kv0, &id, &exp), SESSION_OK);
    assert_false(id.mfa);
}

static void test_parse_unknown(void **state)
{
    (void)state;
    struct session_identity id = {0};
    int64_t exp;
    redisReply *r = resp("*0\r\n", 4);
    assert_int_equal(session_parse_reply(r, NOW, &id, &exp), SESSION_UNKNOWN);
    assert_false(id.authenticated);
    freeReplyObject(r);
}

static void test_parse_not_a_hash(void **state)
{
    (void)state;
    struct session_identity id = {0};
    int64_t exp;
    const char *wires[] = {
        "$-1\r\n",        "*-1\r\n",
        "+OK\r\n",        ":1\r\n",
        "$4\r\nacme\r\n", "-WRONGTYPE Operation against a key holding the wrong kind\r\n"};
    for (size_t i = 0; i < sizeof wires / sizeof *wires; i++) {
        redisReply *r = resp(wires[i], strlen(wires[i]));
        assert_int_equal(session_parse_reply(r, NOW, &id, &exp), SESSION_INVALID);
        assert_false(id.authenticated);
        freeReplyObject(r);
    }
    assert_int_equal(session_parse_reply(NULL, NOW, &id, &exp), SESSION_INVALID);

    /* odd element count */
    const char *kv[] = {"tenant", "t", "user"};
    assert_int_equal(parse(3, kv, &id, &exp), SESSION_INVALID);

    /* a value that is not a string */
    const char *w = "*4\r\n$6\r\ntenant\r\n:42\r\n$4\r\nuser\r\n$1\r\nu\r\n";
    redisReply *r = resp(w, strlen(w));
    assert_int_equal(session_parse_reply(r, NOW, &id, &exp), SESSION_INVALID);
    freeReplyObject(r);
    const char *w2 = "*4\r\n$6\r\ntenant\r\n*1\r\n$1\r\nx\r\n$4\r\nuser\r\n$1\r\nu\r\n";
    r = resp(w2, strlen(w2));
    assert_int_equal(session_parse_reply(r, NOW, &id, &exp), SESSION_INVALID);
    freeReplyObject(r);
    const char *w3 = "*4\r\n$6\r\ntenant\r\n$-1\r\n$4\r\nuser\r\n$1\r\nu\r\n";
    r = resp(w3, strlen(w3));
    assert_int_equal(session_parse_reply(r, NOW, &id, &exp), SESSION_INVALID);
    freeReplyObject(r);
}

static void test_parse_missing_fields(void **state)
{
    (void)state;
    struct session_identity id = {0};
    int64_t exp;
    const char *no_tenant[] = {"user", "u", "mfa", "1"};
    assert_int_equal(parse(4, no_tenant, &id, &exp), SESSION_INVALID);
    const char *no_user[] = {"tenant", "t", "mfa", "1"};
    assert_int_equal(parse(4, no_user, &id, &exp), SESSION_INVALID);
    const char *empty_tenant[] = {"tenant", "", "user", "u"};
    assert_int_equal(parse(4, empty_tenant, &id, &exp), SESSION_INVALID);
    const char *upper[] = {"TENANT", "t", "USER", "u"}; /* field names are exact */
    assert_int_equal(parse(4, upper, &id, &exp), SESSION_INVALID);
    assert_false(id.authenticated);
}

static void test_parse_bad_values(void **state)
{
    (void)state;
    struct session_identity id = {0};
    int64_t exp;
    const char *bad_tenants[] = {"ac me", "acme\r\nX-Admin: 1", "a,b", "a;b", "a\"b",
                                 "a\tb",  "\xc3\xa9t\xc3\xa9",  "a/b"};
    for (size_t i = 0; i < sizeof bad_tenants / sizeof *bad_tenants; i++) {
        const char *kv[] = {"tenant", bad_tenants[i], "user", "u"};
        assert_int_equal(parse(4, kv, &id, &exp), SESSION_INVALID);
        const char *kv2[] = {"tenant", "t", "user", bad_tenants[i]};
        assert_int_equal(parse(4, kv2, &id, &exp), SESSION_INVALID);
    }
    const char *bad_roles[] = {"a b", "a\r\nb", "a;b"};
    for (size_t i = 0; i < sizeof bad_roles / sizeof *bad_roles; i++) {
        const char *kv[] = {"tenant", "t", "user", "u", "roles", bad_roles[i]};
        assert_int_equal(parse(6, kv, &id, &exp), SESSION_INVALID);
    }
    const char *bad_mfa[] = {"", "2", "true", "yes", "01", "1 ", "-1"};
    for (size_t i = 0; i < sizeof bad_mfa / sizeof *bad_mfa; i++) {
        const char *kv[] = {"tenant", "t", "user", "u", "mfa", bad_mfa[i]};
        assert_int_equal(parse(6, kv, &id, &exp), SESSION_INVALID);
    }
    const char *bad_exp[] = {
        "", "abc", "-5", "1.5", " 1700003600", "1700003600 ", "9999999999999999999", "0x10"};
    for (size_t i = 0; i < sizeof bad_exp / sizeof *bad_exp; i++) {
        const char *kv[] = {"tenant", "t", "user", "u", "exp", bad_exp[i]};
        assert_int_equal(parse(6, kv, &id, &exp), SESSION_INVALID);
    }
    assert_false(id.authenticated);
}

static void test_parse_field_size_limit(void **state)
{
    (void)state;
    struct session_identity id = {0};
    int64_t exp;
    char *max = tok_of_len(SESSION_FIELD_MAX - 1);
    char *over = tok_of_len(SESSION_FIELD_MAX);
    const char *ok[] = {"tenant", max, "user", max, "roles", max};
    assert_int_equal(parse(6, ok, &id, &exp), SESSION_OK);
    assert_string_equal(id.tenant, max);
    assert_string_equal(id.roles, max);
    const char *k1[] = {"tenant", over, "user", "u"};
    assert_int_equal(parse(4, k1, &id, &exp), SESSION_INVALID);
    const char *k2[] = {"tenant", "t", "user", over};
    assert_int_equal(parse(4, k2, &id, &exp), SESSION_INVALID);
    const char *k3[] = {"tenant", "t", "user", "u", "roles", over};
    assert_int_equal(parse(6, k3, &id, &exp), SESSION_INVALID);
    free(max);
    free(over);
}

static void test_parse_expiry(void **state)
{
    (void)state;
    struct session_identity id = {0};
    int64_t exp;
    char buf[32];
    struct {
        long long exp;
        enum session_status want;
    } cases[] = {{NOW - 3600, SESSION_EXPIRED},
                 {NOW - 1, SESSION_EXPIRED},
                 {NOW, SESSION_EXPIRED},
                 {NOW + 1, SESSION_OK},
                 {NOW + 86400, SESSION_OK},
                 {0, SESSION_OK}, /* no exp: the key's TTL bounds the session */
                 /* milliseconds used to read as a session that never ends (issue 15):
                  * past 9999-12-31T23:59:59Z exp is not seconds, the record is invalid */
                 {(NOW + 3600) * 1000, SESSION_INVALID},
                 {(NOW - 3600) * 1000, SESSION_INVALID},
                 {253402300800LL, SESSION_INVALID},
                 {253402300799LL, SESSION_OK}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(buf, sizeof buf, "%lld", cases[i].exp);
        const char *kv[] = {"tenant", "t", "user", "u", "exp", buf};
        assert_int_equal(parse(6, kv, &id, &exp), cases[i].want);
        assert_int_equal(exp, cases[i].exp);
        assert_int_equal(id.authenticated, cases[i].want == SESSION_OK);
        if (cases[i].want == SESSION_INVALID)
            assert_string_equal(id.invalid_field, "exp");
        else
            assert_null(id.invalid_field);
    }
    /* a malformed record is INVALID even when it is also expired */
    snprintf(buf, sizeof buf, "%lld", NOW - 10);
    const char *kv[] = {"tenant", "t t", "user", "u", "exp", buf};
    assert_int_equal(parse(6, kv, &id, &exp), SESSION_INVALID);
}

/* SESSION_INVALID says which field is wrong, for the auth_rejected audit event. */
static void test_parse_invalid_field(void **state)
{
    (void)state;
    struct session_identity id = {0};
    int64_t exp;
    struct {
        int n;
        const char *kv[8];
        const char *field;
    } cases[] = {
        {4, {"tenant", "ac me", "user", "u"}, "tenant"},
        {4, {"tenant", "t", "user", "u\r\nX: 1"}, "user"},
        {6, {"tenant", "t", "user", "u", "mfa", "true"}, "mfa"},
        {6, {"tenant", "t", "user", "u", "exp", "1.5"}, "exp"},
        {6, {"tenant", "t", "user", "u", "roles", "a b"}, "roles"},
        {4, {"user", "u", "mfa", "1"}, "tenant"},    /* missing */
        {4, {"tenant", "t", "mfa", "1"}, "user"},    /* missing */
        {4, {"tenant", "", "user", "u"}, "tenant"},  /* empty */
        {4, {"TENANT", "t", "USER", "u"}, "tenant"}, /* names are exact */
        {6, {"exp", "99999999999999", "tenant", "t", "user", "u"}, "exp"},
        {3, {"tenant", "t", "user"}, "record"}, /* odd count */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        id.invalid_field = NULL;
        assert_int_equal(parse(cases[i].n, cases[i].kv, &id, &exp), SESSION_INVALID);
        assert_non_null(id.invalid_field);
        assert_string_equal(id.invalid_field, cases[i].field);
    }
    redisReply *r = resp("+OK\r\n", 5); /* not a hash at all */
    assert_int_equal(session_parse_reply(r, NOW, &id, &exp), SESSION_INVALID);
    assert_string_equal(id.invalid_field, "record");
    freeReplyObject(r);
    assert_int_equal(session_parse_reply(NULL, NOW, &id, &exp), SESSION_INVALID);
    assert_string_equal(id.invalid_field, "record");
    /* other outcomes leave it NULL */
    r = resp("*0\r\n", 4);
    assert_int_equal(session_parse_reply(r, NOW, &id, &exp), SESSION_UNKNOWN);
    assert_null(id.invalid_field);
    freeReplyObject(r);
    const char *ok[] = {"tenant", "t", "user", "u", "exp", "1700003600"};
    assert_int_equal(parse(6, ok, &id, &exp), SESSION_OK);
    assert_null(id.invalid_field);
    const char *old[] = {"tenant", "t", "user", "u", "exp", "1600000000"};
    assert_int_equal(parse(6, old, &id, &exp), SESSION_EXPIRED);
    assert_null(id.invalid_field);
}

/* ---- session_value_ok / session_status_str ----------------------------- */

static void test_value_ok(void **state)
{
    (void)state;
    assert_true(session_value_ok("acme", 4, false));
    assert_true(session_value_ok("user-42_x.y:z@example.com", 25, false));
    assert_true(session_value_ok("AZaz09", 6, false));
    assert_false(session_value_ok("", 0, false));
    assert_false(session_value_ok("a,b", 3, false));
    assert_true(session_value_ok("a,b", 3, true));
    const char *bad[] = {"a b", "a\r",  "a\n", "a\t", "a;b",  "a=b",  "a/b", "a\"b",
                         "a'b", "a\\b", "a(b", "a+b", "\x7f", "\x80", "a%0d"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_false(session_value_ok(bad[i], strlen(bad[i]), false));
        assert_false(session_value_ok(bad[i], strlen(bad[i]), true));
    }
    /* an embedded NUL is judged by len, not strlen */
    assert_false(session_value_ok("ab\0cd", 5, false));
    /* length bound: SESSION_FIELD_MAX - 1 fits the identity buffers */
    char *max = tok_of_len(SESSION_FIELD_MAX - 1);
    assert_true(session_value_ok(max, SESSION_FIELD_MAX - 1, false));
    free(max);
    char *over = tok_of_len(SESSION_FIELD_MAX);
    assert_false(session_value_ok(over, SESSION_FIELD_MAX, false));
    free(over);
}

static void test_status_str(void **state)
{
    (void)state;
    assert_string_equal(session_status_str(SESSION_OK), "ok");
    assert_string_equal(session_status_str(SESSION_MISSING), "missing");
    assert_string_equal(session_status_str(SESSION_MALFORMED), "malformed");
    assert_string_equal(session_status_str(SESSION_UNKNOWN), "unknown");
    assert_string_equal(session_status_str(SESSION_EXPIRED), "expired");
    assert_string_equal(session_status_str(SESSION_INVALID), "invalid");
    assert_string_equal(session_status_str(SESSION_MFA), "mfa");
    assert_string_equal(session_status_str((enum session_status)99), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_cookie),
        cmocka_unit_test(test_cookie_name_must_match_exactly),
        cmocka_unit_test(test_both_bearer_wins),
        cmocka_unit_test(test_missing),
        cmocka_unit_test(test_other_schemes),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_malformed_alphabet),
        cmocka_unit_test(test_length_bounds),
        cmocka_unit_test(test_malformed_bearer_is_not_rescued_by_cookie),
        cmocka_unit_test(test_token_hash),
        cmocka_unit_test(test_parse_full),
        cmocka_unit_test(test_parse_minimal_and_reset),
        cmocka_unit_test(test_parse_unknown),
        cmocka_unit_test(test_parse_not_a_hash),
        cmocka_unit_test(test_parse_missing_fields),
        cmocka_unit_test(test_parse_bad_values),
        cmocka_unit_test(test_parse_field_size_limit),
        cmocka_unit_test(test_parse_expiry),
        cmocka_unit_test(test_parse_invalid_field),
        cmocka_unit_test(test_value_ok),
        cmocka_unit_test(test_status_str),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
