/*
 * Unit tests for the identity phase (src/policy/identity.h) against its contract,
 * docs/identity.md: over requests built from a config loaded from YAML and a
 * parsed head, what reaches the upstream (the head request_head.c would write):
 * the headers moat owns are gone in every spelling, from any peer; client-address
 * headers and X-Request-ID pass only from trusted proxies; moat adds the identity
 * of the session, X-Forwarded-* and a signature that verifies. Plus the response
 * side and the helpers.
 *
 * Headers a client must not get through carry values starting with "evil"; the
 * forwarded head must then not contain "evil" anywhere.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "request_fixture.h"

#include "config/config.h"
#include "core/snapshot.h"
#include "policy/identity.h"
#include "policy/route.h"
#include "policy/signature.h"

#define KEY_HEX "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

#define BASE                                                                                       \
    "listen: { https: [], http: [], admin: null }\n"                                               \
    "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"                                      \
    "routes: [ { upstream: app, auth: none } ]\n"

#define UNTRUSTED "192.0.2.1"
#define TRUSTED "10.1.2.3"

static char keydir[64];
static char keyfile[128];
static char fwd[16384]; /* the head forwarded for the last request */

/* ---- setup --------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    strcpy(keydir, "/tmp/moat-test-identity-XXXXXX");
    if (!mkdtemp(keydir))
        return -1;
    snprintf(keyfile, sizeof keyfile, "%s/signing.key", keydir);
    FILE *f = fopen(keyfile, "w");
    if (!f)
        return -1;
    fputs(KEY_HEX "\n", f);
    fclose(f);
    return 0;
}

static int group_teardown(void **state)
{
    unlink(keyfile);
    rmdir(keydir);
    return 0;
}

/* Trusted proxies 10.0.0.0/8 and fd00::/8; extra: more identity keys. */
static struct fixture *fixture_with(const char *identity_extra)
{
    static struct fixture fx;
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             BASE "identity: { trusted_proxies: [10.0.0.0/8, \"fd00::/8\"]%s }\n", identity_extra);
    fixture_init(&fx, fixture_snapshot(yaml), UNTRUSTED);
    return &fx;
}

static int setup_signed(void **state)
{
    char extra[256];
    snprintf(extra, sizeof extra, ", signing_key_file: %s", keyfile);
    *state = fixture_with(extra);
    return 0;
}

static int setup_unsigned(void **state)
{
    *state = fixture_with("");
    return 0;
}

static int teardown(void **state)
{
    fixture_clear(*state);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------- */

/*
 * Runs route_phase then identity_phase over "GET /api/x?y=1" with Host
 * app.example.com and the given fields ("Name: value\r\n" lines); tenant NULL is
 * an anonymous request. The forwarded head is left in fwd.
 */
static enum phase_result run_head(struct fixture *fx, const char *head, const char *tenant,
                                  bool mfa)
{
    struct request *r = fixture_request(fx, head);
    assert_int_equal(route_phase(r), PHASE_CONTINUE);
    if (tenant) {
        r->ident.authenticated = true;
        r->ident.mfa = mfa;
        snprintf(r->ident.tenant, sizeof r->ident.tenant, "%s", tenant);
        snprintf(r->ident.user, sizeof r->ident.user, "user-42");
    }
    enum phase_result res = identity_phase(r);
    if (res == PHASE_CONTINUE) {
        assert_int_equal(fx->stream.responses, 0);
        fixture_forwarded_head(r, fwd, sizeof fwd);
    }
    return res;
}

static void run(struct fixture *fx, const char *fields, const char *tenant)
{
    char head[8192];
    snprintf(head, sizeof head, "GET /api/x?y=1 HTTP/1.1\r\nHost: app.example.com\r\n%s\r\n",
             fields);
    assert_int_equal(run_head(fx, head, tenant, true), PHASE_CONTINUE);
}

static void expect_no_evil(void)
{
    if (strstr(fwd, "evil"))
        fail_msg("forwarded a header it must drop:\n%s", fwd);
}

/* The one field named name (exact, case aside) in fwd has value want. */
static void expect_one(const char *name, const char *want)
{
    char v[1024];
    if (fixture_count_field(fwd, name) != 1)
        fail_msg("%d %s fields forwarded:\n%s", fixture_count_field(fwd, name), name, fwd);
    assert_true(fixture_field_value(fwd, name, v, sizeof v));
    assert_string_equal(v, want);
}

static void expect_kept(const char *needle)
{
    if (!strstr(fwd, needle))
        fail_msg("dropped %s:\n%s", needle, fwd);
}

/* ---- headers moat owns ----------------------------------------------------------------- */

/* Every spelling of docs/identity.md's table, and the X-Moat- prefix. */
#define OWNED_SPELLINGS                                                                            \
    "X-Tenant-ID: evil1\r\nx-tenant-id: evil2\r\nX-TENANT-ID: evil3\r\nX_Tenant_ID: evil4\r\n"     \
    "x_tenant_id: evil5\r\nX-Tenant_ID: evil6\r\nX.Tenant.ID: evil7\r\nX~Tenant+ID: evil8\r\n"     \
    "X-User-ID: evil9\r\nx_user_id: evil10\r\nX.USER.ID: evil11\r\n"                               \
    "X-Session-MFA: evil12\r\nx_session_mfa: evil13\r\nX-Session.Mfa: evil14\r\n"                  \
    "X-Moat-Signature: evil15\r\nx_moat_debug: evil16\r\nX.Moat.Anything: evil17\r\n"              \
    "X-MOAT-Tenant: evil18\r\n"
/* Different names for every upstream: forwarded. */
#define NOT_OWNED                                                                                  \
    "X-Tenant-IDs: keep1\r\nXTenantID: keep2\r\nX--Tenant-ID: keep3\r\nX-Moatx: keep4\r\n"

static void expect_not_owned_kept(void)
{
    expect_kept("X-Tenant-IDs: keep1\r\n");
    expect_kept("XTenantID: keep2\r\n");
    expect_kept("X--Tenant-ID: keep3\r\n");
    expect_kept("X-Moatx: keep4\r\n");
}

static void test_owned_stripped_untrusted(void **state)
{
    struct fixture *fx = *state;
    run(fx, OWNED_SPELLINGS NOT_OWNED, NULL);
    expect_no_evil();
    expect_not_owned_kept();
    /* anonymous: no identity at all */
    assert_int_equal(fixture_count_field_loose(fwd, "X-Tenant-ID"), 0);
    assert_int_equal(fixture_count_field_loose(fwd, "X-User-ID"), 0);
    assert_int_equal(fixture_count_field_loose(fwd, "X-Session-MFA"), 0);
}

/* A trusted proxy cannot set them either. */
static void test_owned_stripped_trusted(void **state)
{
    struct fixture *fx = *state;
    fixture_set_peer(fx, TRUSTED);
    run(fx, OWNED_SPELLINGS NOT_OWNED, "acme");
    expect_no_evil();
    expect_not_owned_kept();
    assert_int_equal(fixture_count_field_loose(fwd, "X-Tenant-ID"), 1);
    expect_one("X-Tenant-ID", "acme");
}

/* The session's identity, once each, whatever the client sent. */
static void test_identity_added(void **state)
{
    struct fixture *fx = *state;
    run(fx, OWNED_SPELLINGS, "acme");
    expect_no_evil();
    expect_one("X-Tenant-ID", "acme");
    expect_one("X-User-ID", "user-42");
    expect_one("X-Session-MFA", "1");
    assert_int_equal(fixture_count_field_loose(fwd, "X-Tenant-ID"), 1);
    assert_int_equal(fixture_count_field_loose(fwd, "X-User-ID"), 1);
    assert_int_equal(fixture_count_field_loose(fwd, "X-Session-MFA"), 1);

    char head[256];
    snprintf(head, sizeof head, "GET / HTTP/1.1\r\nHost: a\r\nX-Session-MFA: 1\r\n\r\n");
    assert_int_equal(run_head(fx, head, "globex", false), PHASE_CONTINUE);
    expect_one("X-Tenant-ID", "globex");
    expect_one("X-Session-MFA", "0");
}

/* Hop-by-hop fields and every field a Connection field names (all of them) are dropped. */
static void test_hop_by_hop_and_connection_listed(void **state)
{
    struct fixture *fx = *state;
    run(fx,
        "Connection: keep-alive, X-Secret ,\tX-Debug-Token\r\n"
        "Connection: x-other, Host\r\n"
        "X-Secret: evil1\r\nx-debug-token: evil2\r\nX-Other: evil3\r\n"
        "Keep-Alive: evil4\r\nTE: evil5\r\nTrailer: evil6\r\nProxy-Authorization: evil7\r\n"
        "Proxy-Connection: evil8\r\nHTTP2-Settings: evil9\r\nUpgrade: evil10\r\n"
        "Proxy-Authenticate: evil11\r\n"
        "X-Secretive: keep1\r\nContent-Type: text/plain\r\n",
        NULL);
    expect_no_evil();
    assert_int_equal(fixture_count_field(fwd, "Connection"), 0);
    expect_kept("X-Secretive: keep1\r\n");
    expect_kept("Content-Type: text/plain\r\n");
    expect_one("Host", "app.example.com"); /* listed in Connection, never dropped */
}

/* A client-address header listed in Connection is dropped, even from a trusted proxy,
 * and moat sets its own. */
static void test_connection_listed_forwarded_from_trusted(void **state)
{
    struct fixture *fx = *state;
    fixture_set_peer(fx, TRUSTED);
    run(fx,
        "Connection: X-Forwarded-For, X-Request-ID\r\n"
        "X-Forwarded-For: 203.0.113.66\r\nX-Request-ID: evil-id\r\n",
        NULL);
    expect_no_evil();
    expect_one("X-Forwarded-For", TRUSTED);
    expect_one("X-Request-ID", FIXTURE_REQUEST_ID);
}

/* Look-alikes of framing, hop-by-hop and body-type names: a CGI app would read them as the
 * real ones. */
static void test_lookalikes_stripped(void **state)
{
    struct fixture *fx = *state;
    run(fx,
        "Transfer_Encoding: evil1\r\ncontent.length: evil2\r\nKeep_Alive: evil3\r\n"
        "Content_Type: evil4\r\nCONTENT_TYPE: evil5\r\nProxy_Authorization: evil6\r\n"
        "Connection_: keep1\r\nX_Connection: keep2\r\nUpgrade_: keep3\r\nProxy.Connection: "
        "evil7\r\n"
        "Expect_: keep4\r\nHTTP2_Settings: evil8\r\nContent-Type: application/json\r\n",
        NULL);
    expect_no_evil();
    expect_kept("Connection_: keep1\r\n"); /* not spelled like Connection */
    expect_kept("X_Connection: keep2\r\n");
    expect_kept("Upgrade_: keep3\r\n");
    expect_kept("Expect_: keep4\r\n");
    expect_one("Content-Type", "application/json");
}

/* URL and method overrides: never, from trusted proxies too. */
static void test_overrides_stripped(void **state)
{
    static const char *const peers[] = {UNTRUSTED, TRUSTED};
    struct fixture *fx = *state;
    for (size_t i = 0; i < 2; i++) {
        fixture_set_peer(fx, peers[i]);
        run(fx,
            "X-Original-URL: evil1\r\nX-Original-URI: evil2\r\nX-Rewrite-URL: evil3\r\n"
            "X-Override-URL: evil4\r\nX-HTTP-Method-Override: evil5\r\nX-HTTP-Method: evil6\r\n"
            "X-Method-Override: evil7\r\nx_original_url: evil8\r\nX.HTTP.METHOD.OVERRIDE: evil9\r\n"
            "X-Original-URLs: keep1\r\n",
            NULL);
        expect_no_evil();
        expect_kept("X-Original-URLs: keep1\r\n");
    }
}

/* ---- client-address headers and trusted proxies ------------------------------------------ */

#define CLIENT_IP_HEADERS                                                                          \
    "X-Forwarded-For: evil1\r\nX-Forwarded-Proto: evil2\r\nX-Forwarded-Host: evil3\r\n"            \
    "X-Forwarded-Port: evil4\r\nx_forwarded_for: evil5\r\nX-Forwarded-Prefix: evil6\r\n"           \
    "Forwarded: for=evil7\r\nForwarded-For: evil8\r\nX-Forwarded: evil9\r\n"                       \
    "X-Real-IP: evil10\r\nTrue-Client-IP: evil11\r\nX-Client-IP: evil12\r\n"                       \
    "Client-IP: evil13\r\nX-Original-Forwarded-For: evil14\r\nX-Cluster-Client-IP: evil15\r\n"     \
    "CF-Connecting-IP: evil16\r\nCF-Connecting-IPv6: evil17\r\nFastly-Client-IP: evil18\r\n"       \
    "X-ProxyUser-IP: evil19\r\nX-Originating-IP: evil20\r\nX-Remote-IP: evil21\r\n"                \
    "X-Remote-Addr: evil22\r\nX-Envoy-External-Address: evil23\r\nX-Azure-ClientIP: evil24\r\n"    \
    "X-Azure-SocketIP: evil25\r\nx_real_ip: evil26\r\nX-Request-ID: evil27\r\n"                    \
    "x-request-id: evil28\r\n"

/* moat's own X-Forwarded-* and X-Request-ID, once each. */
static void expect_moat_forwarded(const char *peer_ip)
{
    expect_one("X-Forwarded-For", peer_ip);
    expect_one("X-Forwarded-Proto", "https");
    expect_one("X-Forwarded-Host", "app.example.com");
    expect_one("X-Request-ID", FIXTURE_REQUEST_ID);
    assert_int_equal(fixture_count_field_loose(fwd, "X-Forwarded-For"), 1);
    assert_int_equal(fixture_count_field_loose(fwd, "X-Request-ID"), 1);
}

static void test_client_ip_untrusted(void **state)
{
    static const char *const peers[] = {UNTRUSTED,     "11.0.0.1", "9.255.255.255",
                                        "2001:db8::1", "fe00::1",  "::ffff:192.0.2.1"};
    struct fixture *fx = *state;
    for (size_t i = 0; i < sizeof peers / sizeof *peers; i++) {
        fixture_set_peer(fx, peers[i]);
        run(fx, CLIENT_IP_HEADERS, NULL);
        expect_no_evil();
        expect_moat_forwarded(fx->peer.ip);
    }
    assert_string_equal(fx->peer.ip, UNTRUSTED); /* IPv4-mapped, shown as IPv4 */
}

/* A trusted proxy's headers pass as it sent them; moat appends the peer to X-Forwarded-For
 * and adds only what is missing. */
static void test_client_ip_trusted(void **state)
{
    static const char *const peers[] = {TRUSTED, "::ffff:10.1.2.3", "fd00::7"};
    struct fixture *fx = *state;
    for (size_t i = 0; i < sizeof peers / sizeof *peers; i++) {
        fixture_set_peer(fx, peers[i]);
        run(fx,
            "X-Forwarded-For: 203.0.113.5\r\nX-Forwarded-Proto: http\r\n"
            "X-Forwarded-For: 198.51.100.7, 198.51.100.8\r\n"
            "X-Forwarded-Host: orig.example\r\nX-Forwarded-Proto: evil-second\r\n"
            "X-Forwarded-Port: 8443\r\nX-Real-IP: 203.0.113.5\r\nForwarded: for=203.0.113.5\r\n"
            "CF-Connecting-IP: 203.0.113.5\r\nX-Request-ID: lb-req.42_A\r\n",
            NULL);
        expect_no_evil();
        char want[256];
        snprintf(want, sizeof want, "203.0.113.5, 198.51.100.7, 198.51.100.8, %s", fx->peer.ip);
        expect_one("X-Forwarded-For", want);
        expect_one("X-Forwarded-Proto", "http");
        expect_one("X-Forwarded-Host", "orig.example");
        expect_one("X-Forwarded-Port", "8443");
        expect_one("X-Real-IP", "203.0.113.5");
        expect_one("Forwarded", "for=203.0.113.5");
        expect_one("CF-Connecting-IP", "203.0.113.5");
        expect_one("X-Request-ID", "lb-req.42_A");
    }
    assert_string_equal(fx->peer.ip, "fd00::7");
}

/* From a trusted proxy too, only a well-formed X-Request-ID, and only one. */
static void test_trusted_request_id_checked(void **state)
{
    static const char *const bad[] = {"evil id", "evil/id", "evil\"id", "evil;id=1"};
    struct fixture *fx = *state;
    fixture_set_peer(fx, TRUSTED);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char fields[256];
        snprintf(fields, sizeof fields, "X-Request-ID: %s\r\n", bad[i]);
        run(fx, fields, NULL);
        expect_no_evil();
        expect_one("X-Request-ID", FIXTURE_REQUEST_ID);
    }
    char fields[512];
    snprintf(fields, sizeof fields, "X-Request-ID: evil%0129d\r\n", 0); /* too long */
    run(fx, fields, NULL);
    expect_no_evil();
    expect_one("X-Request-ID", FIXTURE_REQUEST_ID);
    run(fx, "X-Request-ID: first\r\nX-Request-ID: evil-second\r\n", NULL);
    expect_no_evil();
    expect_one("X-Request-ID", "first");
}

/* A head whose X-Forwarded-Host cannot fit is refused (431), never forwarded without
 * moat's headers. */
static void test_too_large_fails_closed(void **state)
{
    struct fixture *fx = *state;
    char host[REQUEST_ADD_HEADERS_MAX + 1];
    memset(host, 'a', sizeof host - 1);
    host[sizeof host - 1] = 0;
    char head[REQUEST_ADD_HEADERS_MAX + 128];
    snprintf(head, sizeof head, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host);
    assert_int_equal(run_head(fx, head, "acme", true), PHASE_RESPOND);
    assert_int_equal(fx->stream.responses, 1);
    assert_int_equal(fx->stream.status, 431);
    assert_string_equal(fx->r->error, "identity headers too large");
}

/* ---- the signature ------------------------------------------------------------------- */

static struct signature_key test_key(void)
{
    struct signature_key k = {.len = 32};
    for (size_t i = 0; i < 32; i++)
        k.key[i] = (uint8_t)i; /* KEY_HEX */
    return k;
}

/* The fields as the upstream receives them (docs/signature.md); empty when not sent. */
static struct signature_fields forwarded_fields(char store[6][256])
{
    static const char *const names[] = {"Host", "X-Tenant-ID", "X-User-ID", "X-Session-MFA",
                                        "X-Request-ID"};
    for (size_t i = 0; i < 5; i++)
        if (!fixture_field_value(fwd, names[i], store[i], 256))
            store[i][0] = 0;
    char *sp1 = strchr(fwd, ' '), *sp2 = strchr(sp1 + 1, ' ');
    memcpy(store[5], sp1 + 1, (size_t)(sp2 - sp1 - 1));
    store[5][sp2 - sp1 - 1] = 0;
    return (struct signature_fields){
        .method = fwd,
        .method_len = (size_t)(sp1 - fwd),
        .target = store[5],
        .target_len = strlen(store[5]),
        .host = store[0],
        .host_len = strlen(store[0]),
        .tenant = store[1],
        .tenant_len = strlen(store[1]),
        .user = store[2],
        .user_len = strlen(store[2]),
        .mfa = store[3],
        .mfa_len = strlen(store[3]),
        .request_id = store[4],
        .request_id_len = strlen(store[4]),
    };
}

static void expect_signature_verifies(void)
{
    char sig[256], store[6][256];
    expect_kept("X-Moat-Signature: t=");
    assert_int_equal(fixture_count_field_loose(fwd, "X-Moat-Signature"), 1);
    assert_true(fixture_field_value(fwd, "X-Moat-Signature", sig, sizeof sig));
    struct signature_key k = test_key();
    struct signature_fields f = forwarded_fields(store);
    if (!signature_verify(&k, 1, &f, sig, (int64_t)time(NULL), 60))
        fail_msg("signature does not verify over the forwarded head:\n%s", fwd);
    /* and it covers the identity: another tenant does not verify */
    f.tenant = "other";
    f.tenant_len = 5;
    assert_false(signature_verify(&k, 1, &f, sig, (int64_t)time(NULL), 60));
}

static void test_signature_present(void **state)
{
    struct fixture *fx = *state;
    run(fx, "X-Moat-Signature: evil\r\nX-Tenant-ID: evil\r\n", "acme");
    expect_no_evil();
    expect_signature_verifies();
    run(fx, "x_moat_signature: evil\r\n", NULL); /* anonymous: signed with empty identity */
    expect_no_evil();
    expect_signature_verifies();
    /* over the request id the upstream receives: a trusted proxy's */
    fixture_set_peer(fx, TRUSTED);
    run(fx, "X-Request-ID: lb-1\r\nHost_: x\r\n", "acme");
    expect_one("X-Request-ID", "lb-1");
    expect_signature_verifies();
    /* HTTP/1.0 without Host: the Host moat writes (the upstream's name) is signed */
    assert_int_equal(run_head(fx, "GET /a HTTP/1.0\r\n\r\n", "acme", true), PHASE_CONTINUE);
    expect_one("Host", "app");
    expect_signature_verifies();
}

static void test_no_signature_without_key(void **state)
{
    struct fixture *fx = *state;
    assert_null(fx->snap->sign_key);
    run(fx, "X-Moat-Signature: evil\r\n", "acme");
    expect_no_evil();
    assert_int_equal(fixture_count_field_loose(fwd, "X-Moat-Signature"), 0);
    expect_one("X-Tenant-ID", "acme");
}

/* ---- helpers and the response side ------------------------------------------------------ */

static struct http1_str S(const char *s) {
    return (struct http1_str){s, strlen(s)};
}

static void
test_is_hop_by_hop(void **state)
{
    (void)state;
    static const char *const hop[] = {
        "Connection",         "keep-alive",    "PROXY-CONNECTION", "TE",     "Trailer",
        "Transfer-Encoding",  "upgrade",       "Content-Length",   "Expect", "Proxy-Authorization",
        "Proxy-Authenticate", "HTTP2-Settings"};
    for (size_t i = 0; i < sizeof hop / sizeof *hop; i++)
        if (!identity_is_hop_by_hop(S(hop[i])))
            fail_msg("not hop-by-hop: %s", hop[i]);
    static const char *const end[] = {
        "Content-Type",       "Host", "Trailers",
        "X-Connection",       "T",    "Authorization",
        "Transfer-Encodings", "",     "X-A-Name-Longer-Than-Any-Hop-By-Hop-Name"};
    for (size_t i = 0; i < sizeof end / sizeof *end; i++)
        if (identity_is_hop_by_hop(S(end[i])))
            fail_msg("hop-by-hop: %s", end[i]);
}

static void test_name_in_list(void **state)
{
    (void)state;
    struct http1_str list = S(" close ,\tX-Secret\t, ,x-b,");
    assert_true(identity_name_in_list(list, S("close")));
    assert_true(identity_name_in_list(list, S("x-secret")));
    assert_true(identity_name_in_list(list, S("X-B")));
    assert_false(identity_name_in_list(list, S("X-Sec")));
    assert_false(identity_name_in_list(list, S("X-Secrets")));
    assert_false(identity_name_in_list(list, S("clos")));
    assert_false(identity_name_in_list(S(""), S("close")));
    assert_false(identity_name_in_list(S("keep-alive"), S("alive")));
}

/* At the defaults: HSTS and X-Moat-* (moat's), the headers moat adds (nosniff, referrer
 * policy) and the default strip list (X-Moat-*, Server, X-Powered-By). */
static void test_response_drop(void **state)
{
    struct fixture *fx = *state;
    const struct config *cfg = fx->snap->cfg;
    static const char *const drop[] = {"Strict-Transport-Security",
                                       "strict-transport-security",
                                       "X-Moat-Signature",
                                       "x_moat_debug",
                                       "X.Moat.Anything",
                                       "X-Content-Type-Options",
                                       "Referrer-Policy",
                                       "Server",
                                       "SERVER",
                                       "X-Powered-By",
                                       "x-powered-by"};
    for (size_t i = 0; i < sizeof drop / sizeof *drop; i++)
        if (!identity_response_drop(cfg, S(drop[i])))
            fail_msg("reaches the client: %s", drop[i]);
    static const char *const keep[] = {"Content-Type", "Set-Cookie",         "X-Moatx",
                                       "Servers",      "X-Powered-By-Plesk", "Cache-Control"};
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++)
        if (identity_response_drop(cfg, S(keep[i])))
            fail_msg("dropped: %s", keep[i]);
}

/* A configured strip list ("Name" or "Prefix-*", any case) replaces the default; the
 * upstream's X-Moat-* and HSTS still never reach the client; the headers moat adds are the
 * upstream's when moat adds none. */
static void test_response_drop_configured(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_init(&fx,
                 fixture_snapshot(BASE
                                  "identity: { strip_response_headers: [\"X-Internal-*\", Via],"
                                  " nosniff: false, referrer_policy: null }\n"),
                 UNTRUSTED);
    const struct config *cfg = fx.snap->cfg;
    assert_true(identity_response_drop(cfg, S("X-Moat-Signature")));
    assert_true(identity_response_drop(cfg, S("X_MOAT_x")));
    assert_true(identity_response_drop(cfg, S("Strict-Transport-Security")));
    assert_true(identity_response_drop(cfg, S("x-internal-host")));
    assert_true(identity_response_drop(cfg, S("X-Internal-")));
    assert_true(identity_response_drop(cfg, S("VIA")));
    assert_false(identity_response_drop(cfg, S("X-Internal")));
    assert_false(identity_response_drop(cfg, S("Vias")));
    assert_false(identity_response_drop(cfg, S("X-Content-Type-Options")));
    assert_false(identity_response_drop(cfg, S("Referrer-Policy")));
    assert_false(identity_response_drop(cfg, S("Server")));
    fixture_clear(&fx);
}

#define SIGNED(t) cmocka_unit_test_setup_teardown(t, setup_signed, teardown)
#define UNSIGNED(t) cmocka_unit_test_setup_teardown(t, setup_unsigned, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        SIGNED(test_owned_stripped_untrusted),
        SIGNED(test_owned_stripped_trusted),
        SIGNED(test_identity_added),
        SIGNED(test_hop_by_hop_and_connection_listed),
        SIGNED(test_connection_listed_forwarded_from_trusted),
        SIGNED(test_lookalikes_stripped),
        SIGNED(test_overrides_stripped),
        SIGNED(test_client_ip_untrusted),
        SIGNED(test_client_ip_trusted),
        SIGNED(test_trusted_request_id_checked),
        SIGNED(test_too_large_fails_closed),
        SIGNED(test_signature_present),
        UNSIGNED(test_no_signature_without_key),
        cmocka_unit_test(test_is_hop_by_hop),
        cmocka_unit_test(test_name_in_list),
        UNSIGNED(test_response_drop),
        cmocka_unit_test(test_response_drop_configured),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
