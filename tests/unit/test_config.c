/*
 * Unit tests of the config loader: defaults, every error class with its exact
 * file:line:column, JSON input, file checks against generated certificates, and
 * the shipped sample configs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "config/config.h"
#include "config/config_schema.h"
#include "config/config_store.h"

/* A config that is valid on its own; tests add to or change it. */
#define BASE                                                                                       \
    "listen: { https: [], http: [], admin: null }\n"                                               \
    "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"                                      \
    "routes: [ { upstream: app, auth: none } ]\n"

static char tmpdir[64];

/* ---- helpers ------------------------------------------------------------------------ */

static struct config *load(const char *yaml, struct config_errors *errs)
{
    memset(errs, 0, sizeof *errs);
    return config_load_string("t.yaml", yaml, false, errs);
}

static void dump(const struct config_errors *errs)
{
    for (size_t i = 0; i < errs->count; i++)
        fprintf(stderr, "  [%zu] %s\n", i, errs->msgs[i]);
}

/* Loads yaml expecting failure with exactly the given errors (in order). */
static void expect_errors(const char *yaml, ...)
{
    struct config_errors errs;
    struct config *c = load(yaml, &errs);
    va_list ap;
    size_t n = 0;
    const char *want;
    assert_null(c);
    va_start(ap, yaml);
    while ((want = va_arg(ap, const char *))) {
        if (n >= errs.count || strcmp(errs.msgs[n], want) != 0) {
            fprintf(stderr, "error %zu: want %s\ngot:\n", n, want);
            dump(&errs);
            fail();
        }
        n++;
    }
    va_end(ap);
    if (n != errs.count) {
        fprintf(stderr, "want %zu errors, got:\n", n);
        dump(&errs);
    }
    assert_int_equal(n, errs.count);
    config_errors_free(&errs);
}

static struct config *load_ok(const char *yaml)
{
    struct config_errors errs;
    struct config *c = load(yaml, &errs);
    if (!c)
        dump(&errs);
    assert_non_null(c);
    assert_int_equal(errs.count, 0);
    return c;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void write_text(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* ---- certificates for the file checks ---------------------------------------------- */

static EVP_PKEY *write_key(const char *name)
{
    char path[256];
    EVP_PKEY *k = EVP_EC_gen("P-256");
    assert_non_null(k);
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    return k;
}

static void write_cert(const char *name, EVP_PKEY *k)
{
    char path[256];
    X509 *x = X509_new();
    assert_non_null(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, n);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    X509_free(x);
}

static int setup_files(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/moat-test-config-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    EVP_PKEY *k = write_key("server.key");
    EVP_PKEY *other = write_key("other.key");
    write_cert("server.crt", k);
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
    write_text("garbage.key", "this is not a PEM key\n");
    write_text("short.key", "0123456789\n");
    write_text("signing.key", "0123456789abcdef0123456789abcdef0123456789abcdef\n");
    write_text("password", "s3cret\n");
    return 0;
}

static int teardown_files(void **state)
{
    static const char *const names[] = {"server.key", "other.key",   "server.crt", "garbage.key",
                                        "short.key",  "signing.key", "password",   "moat.yaml"};
    char path[256];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    rmdir(tmpdir);
    return 0;
}

/* ---- value parsers ------------------------------------------------------------------ */

static void test_parse_duration(void **state)
{
    uint64_t ms;
    assert_int_equal(config_parse_duration("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(config_parse_duration("10s", &ms), 0);
    assert_int_equal(ms, 10000);
    assert_int_equal(config_parse_duration("5m", &ms), 0);
    assert_int_equal(ms, 300000);
    assert_int_equal(config_parse_duration("1h", &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(config_parse_duration("0s", &ms), 0);
    assert_int_equal(ms, 0);
    static const char *const bad[] = {
        "10", "", "s", "1.5s", "-1s", "10 s", " 10s", "10sec", "1d", "10S", "99999999999999h",
        "+1s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(config_parse_duration(bad[i], &ms), -1);
    assert_int_equal(config_parse_duration(NULL, &ms), -1);
}

static void test_parse_rate(void **state)
{
    double r;
    assert_int_equal(config_parse_rate("100/s", &r), 0);
    assert_true(r == 100.0);
    assert_int_equal(config_parse_rate("30/m", &r), 0);
    assert_true(r == 0.5);
    assert_int_equal(config_parse_rate("7200/h", &r), 0);
    assert_true(r == 2.0);
    static const char *const bad[] = {"0/s",   "10",     "10/",  "10/x",  "/s",
                                      "1.5/s", "10/sec", "-1/s", "10/ss", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(config_parse_rate(bad[i], &r), -1);
}

static void test_parse_addr(void **state)
{
    struct config_addr a = {0};
    assert_int_equal(config_parse_addr("0.0.0.0:8443", &a), 0);
    assert_string_equal(a.host, "0.0.0.0");
    assert_string_equal(a.text, "0.0.0.0:8443");
    assert_null(a.path);
    assert_int_equal(a.port, 8443);
    config_addr_clear(&a);
    assert_int_equal(config_parse_addr("[::1]:9901", &a), 0);
    assert_string_equal(a.host, "::1");
    assert_int_equal(a.port, 9901);
    config_addr_clear(&a);
    assert_int_equal(config_parse_addr("unix:/run/redis.sock", &a), 0);
    assert_string_equal(a.path, "/run/redis.sock");
    assert_null(a.host);
    config_addr_clear(&a);
    assert_int_equal(config_parse_addr("redis.internal:6379", &a), 0);
    assert_string_equal(a.host, "redis.internal");
    config_addr_clear(&a);
    static const char *const bad[] = {"::1:80",   "[::1]",     "[::1]:",       "[zz]:80",
                                      "host",     "host:",     "host:0",       "host:65536",
                                      ":80",      "a b:80",    "300.1.1.1:80", "unix:",
                                      "host:80x", "[::1]x:80", "-host:80",     "1.2.3:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (config_parse_addr(bad[i], &a) != -1)
            fail_msg("accepted %s", bad[i]);
    }
}

/* ---- defaults ----------------------------------------------------------------------- */

static void test_defaults(void **state)
{
    struct config_errors errs;
    struct config *c = load("tls: { certificates: [ { cert: a.crt, key: a.key } ] }\n"
                            "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"
                            "routes: [ { upstream: app, auth: none } ]\n",
                            &errs);
    if (!c)
        dump(&errs);
    assert_non_null(c);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(c->workers, cpus < 1 ? 1 : cpus);
    assert_string_equal(c->path, "t.yaml");
    assert_int_equal(c->listen.num_https, 1);
    assert_string_equal(c->listen.https[0].text, "0.0.0.0:8443");
    assert_int_equal(c->listen.https[0].port, 8443);
    assert_int_equal(c->listen.num_http, 1);
    assert_string_equal(c->listen.http[0].text, "0.0.0.0:8080");
    assert_string_equal(c->listen.admin.text, "127.0.0.1:9901");
    assert_int_equal(c->listen.redirect_https_port, 443);

    assert_int_equal(c->tls.num_certs, 1);
    assert_string_equal(c->tls.certs[0].cert, "a.crt");
    assert_null(c->tls.certs[0].ocsp);
    assert_int_equal(c->tls.certs[0].line, 1);
    assert_int_equal(c->tls.certs[0].column, 24);
    assert_int_equal(c->tls.min_version, TLS1_2_VERSION);
    assert_string_equal(c->tls.ciphers,
                        "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:"
                        "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-GCM-SHA384:"
                        "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-CHACHA20-POLY1305");
    assert_string_equal(c->tls.ciphersuites, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                             "TLS_CHACHA20_POLY1305_SHA256");
    assert_string_equal(c->tls.groups, "X25519:P-256");
    assert_false(c->tls.allow_weak);
    assert_true(c->tls.tickets_enabled);
    assert_int_equal(c->tls.ticket_rotate_ms, 12 * 3600 * 1000);
    assert_null(c->tls.ticket_key_file);
    assert_true(c->tls.session_cache);
    assert_null(c->tls.client_ca);
    assert_false(c->tls.client_verify);
    assert_false(c->tls.ocsp_fetch);
    assert_int_equal(c->tls.ocsp_refresh_ms, 3600 * 1000);

    assert_int_equal(c->hsts.max_age, 31536000);
    assert_true(c->hsts.include_subdomains);
    assert_false(c->hsts.preload);

    assert_false(c->redis_enabled);
    assert_string_equal(c->redis.address.text, "127.0.0.1:6379");
    assert_int_equal(c->redis.timeout_ms, 250);
    assert_int_equal(c->redis.connect_timeout_ms, 1000);
    assert_null(c->redis.username);
    assert_null(c->redis.password_file);
    assert_false(c->redis.tls.enabled);
    assert_true(c->redis.tls.verify);
    assert_int_equal(c->redis.database, 0);

    assert_string_equal(c->sessions.cookie, "session");
    assert_true(c->sessions.bearer);
    assert_string_equal(c->sessions.key_prefix, "moat:sess:");
    assert_int_equal(c->sessions.cache_ttl_ms, 5000);
    assert_int_equal(c->sessions.negative_cache_ttl_ms, 1000);
    assert_int_equal(c->sessions.cache_size, 10000);
    assert_int_equal(c->sessions.stale_grace_ms, 0);
    assert_int_equal(c->sessions.token_min_len, 16);
    assert_int_equal(c->sessions.token_max_len, 256);
    assert_false(c->sessions.push_revocation);
    assert_null(c->sessions.login_url);

    assert_int_equal(c->identity.num_trusted_proxies, 0);
    assert_null(c->identity.signing_key_file);
    assert_null(c->identity.previous_signing_key_file);
    assert_int_equal(c->identity.num_strip_response_headers, 3);
    assert_string_equal(c->identity.strip_response_headers[0], "X-Moat-*");
    assert_string_equal(c->identity.strip_response_headers[1], "Server");
    assert_string_equal(c->identity.strip_response_headers[2], "X-Powered-By");
    assert_string_equal(c->identity.referrer_policy, "strict-origin-when-cross-origin");
    assert_true(c->identity.nosniff);

    assert_int_equal(c->num_upstreams, 1);
    const struct config_upstream *u = &c->upstreams[0];
    assert_string_equal(u->name, "app");
    assert_int_equal(u->num_servers, 1);
    assert_int_equal(u->balance, BALANCE_ROUND_ROBIN);
    assert_null(u->health.path);
    assert_int_equal(u->health.interval_ms, 2000);
    assert_false(u->tls.enabled);
    assert_true(u->tls.verify);
    assert_int_equal(u->keepalive, 32);
    assert_false(u->retry.idempotent); /* replays of PUT/DELETE are an opt-in */

    assert_int_equal(c->num_tenants, 0);
    assert_int_equal(c->num_routes, 1);
    const struct config_route *r = &c->routes[0];
    assert_null(r->host);
    assert_string_equal(r->path_prefix, "/");
    assert_int_equal(r->auth, AUTH_NONE);
    assert_false(r->mfa_required);
    assert_false(r->browser);
    assert_ptr_equal(r->up, u);
    assert_null(r->tenants);
    assert_int_equal(r->num_rate_limits, 0);
    assert_false(r->ratelimit_headers);
    assert_int_equal(r->line, 3);
    assert_int_equal(r->column, 11);

    assert_int_equal(c->limits.max_header_bytes, 16384);
    assert_int_equal(c->limits.max_headers, 100);
    assert_int_equal(c->limits.max_body_bytes, 10485760);
    assert_int_equal(c->limits.header_timeout_ms, 10000);
    assert_int_equal(c->limits.body_timeout_ms, 60000);
    assert_int_equal(c->limits.idle_timeout_ms, 60000);
    assert_int_equal(c->limits.upstream_connect_timeout_ms, 2000);
    assert_int_equal(c->limits.upstream_timeout_ms, 30000);
    assert_int_equal(c->limits.drain_timeout_ms, 30000);
    assert_int_equal(c->limits.max_connections, 0);
    assert_int_equal(c->limits.max_connections_per_ip, 0);
    assert_true(c->limits.handshakes_per_ip == 0);

    assert_int_equal(c->ratelimit.max_keys, 100000);
    assert_int_equal(c->ratelimit.redis_timeout_ms, 50);
    assert_int_equal(c->ratelimit.heartbeat_ms, 1000);
    assert_string_equal(c->ratelimit.key_prefix, "moat:rl:");

    assert_string_equal(c->log.access, "stdout");
    /* its own destination, not stderr with the operational messages (issue 16) */
    assert_string_equal(c->log.audit, "/var/log/moat/audit.log");
    assert_false(c->log.syslog_enabled);
    assert_string_equal(c->log.level, "info");
    assert_string_equal(c->log.format, "text");
    assert_false(c->log.access_query);
    assert_null(c->listen.acme_challenge_dir);
    config_unref(c);
}

static void test_values_stored(void **state)
{
    struct config *c = load_ok(BASE "workers: 3\n"
                                    "redis: { address: \"unix:/run/redis.sock\", timeout: 100ms }\n"
                                    "limits: { handshakes_per_ip: 30/m, max_body_bytes: 0 }\n"
                                    "log: { access: null }\n"
                                    "identity: { trusted_proxies: [10.0.0.0/8, \"::1\"], "
                                    "referrer_policy: null }\n"
                                    "sessions: { cookie: null }\n"
                                    "hsts: { max_age: 0 }\n");
    assert_int_equal(c->workers, 3);
    assert_true(c->redis_enabled);
    assert_string_equal(c->redis.address.path, "/run/redis.sock");
    assert_int_equal(c->redis.timeout_ms, 100);
    assert_true(fabs(c->limits.handshakes_per_ip - 0.5) < 1e-9);
    assert_int_equal(c->limits.max_body_bytes, 0);
    assert_null(c->log.access);
    assert_int_equal(c->identity.num_trusted_proxies, 2);
    assert_string_equal(c->identity.trusted_proxies[1], "::1");
    assert_null(c->identity.referrer_policy);
    assert_null(c->sessions.cookie);
    assert_int_equal(c->hsts.max_age, 0);
    config_unref(c);
}

/* routes[].id, the metrics label: as given, else the match as written. */
static void test_route_id_defaults(void **state)
{
    struct config *c =
        load_ok("listen: { https: [], http: [] }\n"
                "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"
                "routes:\n"
                "  - { id: api-v1, match: { path_prefix: /v1 }, upstream: app, auth: none }\n"
                "  - { match: { host: a.example, path_prefix: /x }, upstream: app,"
                " auth: none }\n"
                "  - { upstream: app, auth: none }\n");
    assert_string_equal(c->routes[0].id, "api-v1");
    assert_string_equal(c->routes[1].id, "a.example/x");
    assert_string_equal(c->routes[2].id, "/");
    config_unref(c);
    struct config_errors errs = {0};
    assert_null(config_load_string("t.yaml",
                                   "listen: { https: [], http: [] }\n"
                                   "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"
                                   "routes: [ { id: \"a b\", upstream: app, auth: none } ]\n",
                                   false, &errs));
    assert_true(errs.count >= 1);
    assert_non_null(strstr(errs.msgs[0], "routes[0].id"));
    config_errors_free(&errs);
}

static void test_rate_rule_defaults(void **state)
{
    struct config *c = load_ok("listen: { https: [], http: [] }\n"
                               "redis: {}\n"
                               "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"
                               "routes:\n"
                               "  - upstream: app\n"
                               "  - upstream: app\n"
                               "    mfa: required\n"
                               "    rate_limit:\n"
                               "      - { key: ip, rate: 10/m }\n"
                               "      - { key: tenant, rate: 1000/s, scope: global, id: t1 }\n"
                               "      - { key: \"header:X-Api-Key\", rate: 5/s, burst: 1,"
                               " on_store_error: deny }\n");
    const struct config_route *r = &c->routes[1];
    assert_int_equal(r->auth, AUTH_REQUIRED);
    assert_true(r->mfa_required);
    assert_int_equal(r->num_rate_limits, 3);
    assert_string_equal(r->rate_limits[0].id, "r1_0");
    assert_int_equal(r->rate_limits[0].key, RL_KEY_IP);
    assert_int_equal(r->rate_limits[0].burst, 1);
    assert_string_equal(r->rate_limits[0].rate_text, "10/m");
    assert_int_equal(r->rate_limits[0].scope, RL_SCOPE_LOCAL);
    assert_int_equal(r->rate_limits[0].on_store_error, RL_ON_ERROR_LOCAL);
    assert_string_equal(r->rate_limits[1].id, "t1");
    assert_int_equal(r->rate_limits[1].burst, 1000);
    assert_int_equal(r->rate_limits[1].scope, RL_SCOPE_GLOBAL);
    assert_true(r->rate_limits[1].rate == 1000.0);
    assert_int_equal(r->rate_limits[2].key, RL_KEY_HEADER);
    assert_string_equal(r->rate_limits[2].header, "X-Api-Key");
    assert_int_equal(r->rate_limits[2].burst, 1);
    assert_int_equal(r->rate_limits[2].on_store_error, RL_ON_ERROR_DENY);
    assert_null(r->rate_limits[0].header);
    config_unref(c);
}

/* ---- each error class, with its position ---------------------------------------------- */

static void test_unknown_key(void **state)
{
    expect_errors(BASE "limits:\n"
                       "  max_header: 10\n"
                       "  frobnicate: 1\n",
                  "t.yaml:5:3: limits.max_header: unknown key (did you mean max_headers?)",
                  "t.yaml:6:3: limits.frobnicate: unknown key", NULL);
    expect_errors(BASE "bogus: 1\n", "t.yaml:4:1: bogus: unknown key", NULL);
    expect_errors(BASE "redis: { password: hunter2 }\n",
                  "t.yaml:4:20: redis.password: inline passwords are not accepted: use "
                  "password_file or password_env",
                  NULL);
}

static void test_wrong_type(void **state)
{
    expect_errors(BASE "limits: 5\n", "t.yaml:4:9: limits: expected a mapping", NULL);
    expect_errors(BASE "identity: { trusted_proxies: 10.0.0.1 }\n",
                  "t.yaml:4:30: identity.trusted_proxies: expected a sequence", NULL);
    expect_errors(BASE "limits: { max_headers: [1] }\n",
                  "t.yaml:4:24: limits.max_headers: expected a scalar", NULL);
    expect_errors(BASE "hsts: { preload: yes }\n",
                  "t.yaml:4:18: hsts.preload: expected true or false, got \"yes\"", NULL);
    expect_errors(BASE "limits: { max_headers: ten }\n",
                  "t.yaml:4:24: limits.max_headers: expected an integer, got \"ten\"", NULL);
    expect_errors("- a\n", "t.yaml:1:1: expected a mapping", NULL);
    expect_errors(BASE "routes: [ [ upstream ] ]\n", "t.yaml:4:1: routes: duplicate key", NULL);
    expect_errors("listen: { https: [], http: [] }\n"
                  "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"
                  "routes: [ { upstream: app, auth: none }, [ upstream ] ]\n",
                  "t.yaml:3:42: routes[1]: expected a mapping", NULL);
    expect_errors(BASE "tls: { ciphers: }\n", "t.yaml:4:17: tls.ciphers: must not be null", NULL);
    expect_errors(BASE "upstreams2: {}\n",
                  "t.yaml:4:1: upstreams2: unknown key (did you mean upstreams?)", NULL);
}

static void test_out_of_range(void **state)
{
    expect_errors(BASE "limits:\n"
                       "    max_headers: 300\n",
                  "t.yaml:5:18: limits.max_headers: must be between 1 and 256", NULL);
    expect_errors(BASE "limits: { max_headers: 0 }\n",
                  "t.yaml:4:24: limits.max_headers: must be between 1 and 256", NULL);
    expect_errors(BASE "limits: { header_timeout: 2h }\n",
                  "t.yaml:4:27: limits.header_timeout: must be between 1ms and 1h", NULL);
    expect_errors(BASE "workers: 99999999999999999999999\n",
                  "t.yaml:4:10: workers: must be between 1 and 1024", NULL);
    expect_errors(BASE "hsts: { max_age: -1 }\n",
                  "t.yaml:4:18: hsts.max_age: must be between 0 and 63072000", NULL);
}

/* The memory budget (docs/limits.md): defaults, "off" values, bounds. */
static void test_memory_budget_keys(void **state)
{
    struct config *c = load_ok(BASE);
    assert_int_equal(c->limits.connection_buffer, 65536);
    assert_int_equal(c->limits.max_memory, 536870912);
    assert_int_equal(c->limits.max_connection_age_ms, 3600000);
    config_unref(c);
    c = load_ok(BASE
                "limits: { connection_buffer: 16384, max_memory: 0, max_connection_age: 0s }\n");
    assert_int_equal(c->limits.connection_buffer, 16384);
    assert_int_equal(c->limits.max_memory, 0);
    assert_int_equal(c->limits.max_connection_age_ms, 0);
    config_unref(c);
    expect_errors(BASE "limits: { connection_buffer: 4096, max_connection_age: 8d }\n",
                  "t.yaml:4:30: limits.connection_buffer: must be between 16384 and 67108864",
                  "t.yaml:4:56: limits.max_connection_age: invalid duration \"8d\": expected a "
                  "number with a unit ms, s, m or h (e.g. 250ms, 10s)",
                  NULL);
}

static void test_bad_duration(void **state)
{
    expect_errors(BASE "limits:\n"
                       "  idle_timeout: 60\n"
                       "  upstream_timeout: 1.5s\n",
                  "t.yaml:5:17: limits.idle_timeout: invalid duration \"60\": expected a number "
                  "with a unit ms, s, m or h (e.g. 250ms, 10s)",
                  "t.yaml:6:21: limits.upstream_timeout: invalid duration \"1.5s\": expected a "
                  "number with a unit ms, s, m or h (e.g. 250ms, 10s)",
                  NULL);
}

static void test_bad_rate(void **state)
{
    expect_errors("listen: { https: [], http: [] }\n"
                  "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"
                  "routes:\n"
                  "  - upstream: app\n"
                  "    auth: none\n"
                  "    rate_limit: [ { key: ip, rate: 10/d } ]\n"
                  "limits: { handshakes_per_ip: 5 }\n",
                  "t.yaml:6:36: routes[0].rate_limit[0].rate: invalid rate \"10/d\": expected "
                  "N/s, N/m or N/h with N >= 1 (e.g. 100/s)",
                  "t.yaml:7:30: limits.handshakes_per_ip: invalid rate \"5\": expected N/s, N/m "
                  "or N/h with N >= 1 (e.g. 100/s) or 0",
                  NULL);
}

static void test_bad_address(void **state)
{
    expect_errors("listen:\n"
                  "  https: [\"::1:8443\"]\n"
                  "  http: [\"0.0.0.0:80800\"]\n"
                  "  admin: \"0.0.0.0:9901\"\n"
                  "tls: { certificates: [ { cert: a, key: b } ] }\n"
                  "upstreams: { app: { servers: [\"app.internal\"] } }\n"
                  "routes: [ { upstream: app, auth: none } ]\n",
                  "t.yaml:2:11: listen.https[0]: invalid address \"::1:8443\": IPv6 addresses must "
                  "be in brackets, e.g. [::1]:8443",
                  "t.yaml:3:10: listen.http[0]: invalid address \"0.0.0.0:80800\": port must be "
                  "between 1 and 65535",
                  "t.yaml:4:10: listen.admin: must be a loopback address (127.0.0.0/8, ::1, "
                  "localhost) or a unix socket: the admin endpoint is never public",
                  "t.yaml:6:31: upstreams.app.servers[0]: invalid address \"app.internal\": "
                  "expected host:port, [v6]:port or unix:/path",
                  NULL);
    expect_errors(BASE "identity: { trusted_proxies: [10.0.0.0/33, \"[::1]\"] }\n",
                  "t.yaml:4:31: identity.trusted_proxies[0]: invalid value \"10.0.0.0/33\": "
                  "not an IP address or CIDR (e.g. 10.0.0.0/8)",
                  "t.yaml:4:44: identity.trusted_proxies[1]: invalid value \"[::1]\": not an IP "
                  "address or CIDR (e.g. 10.0.0.0/8)",
                  NULL);
}

static void test_unknown_upstream(void **state)
{
    expect_errors("listen: { https: [], http: [] }\n"
                  "upstreams:\n"
                  "  app: { servers: [\"127.0.0.1:9000\"] }\n"
                  "tenants:\n"
                  "  acme: { upstream: acme-dedicated }\n"
                  "routes:\n"
                  "  - upstream: ap\n"
                  "    auth: none\n",
                  "t.yaml:5:21: tenants.acme.upstream: unknown upstream \"acme-dedicated\"",
                  "t.yaml:7:15: routes[0].upstream: unknown upstream \"ap\"", NULL);
}

static void test_missing_required(void **state)
{
    expect_errors("listen: { https: [], http: [] }\n"
                  "upstreams: { app: { balance: least_conn } }\n"
                  "routes: []\n",
                  "t.yaml:2:19: upstreams.app.servers: required key is missing",
                  "t.yaml:3:9: routes: at least one route is required", NULL);
    expect_errors("listen: { https: [], http: [] }\n",
                  "t.yaml:1:1: routes: at least one route is required", NULL);
    expect_errors("",
                  "t.yaml:1:1: tls.certificates: at least one certificate is required when "
                  "listen.https is non-empty",
                  "t.yaml:1:1: routes: at least one route is required", NULL);
    expect_errors("listen: { http: [] }\n"
                  "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"
                  "routes: [ { upstream: app, auth: none } ]\n",
                  "t.yaml:1:9: tls.certificates: at least one certificate is required when "
                  "listen.https is non-empty",
                  NULL);
}

static void test_semantic_rules(void **state)
{
    expect_errors("listen: { https: [], http: [] }\n"
                  "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"
                  "routes:\n"
                  "  - upstream: app\n"
                  "  - { upstream: app, auth: none, mfa: required }\n"
                  "  - upstream: app\n"
                  "    auth: none\n"
                  "    rate_limit: [ { key: session, rate: 1/s }, { key: ip, rate: 1/s,"
                  " scope: global } ]\n",
                  "t.yaml:4:5: routes[0].auth: required (the default) requires a redis: section "
                  "(sessions live in Redis)",
                  "t.yaml:5:39: routes[1].mfa: required needs auth: optional or required",
                  "t.yaml:8:26: routes[2].rate_limit[0].key: session needs a route with auth: "
                  "optional or required",
                  "t.yaml:8:77: routes[2].rate_limit[1].scope: global requires a redis: section "
                  "(shared limits live in Redis)",
                  NULL);
    expect_errors("listen: { https: [], http: [] }\n"
                  "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"
                  "routes: [ { upstream: app, auth: optional, browser: true } ]\n"
                  "redis: { address: \"127.0.0.1:6379\", password_file: a, password_env: B }\n",
                  "t.yaml:3:53: routes[0].browser: requires sessions.login_url",
                  "t.yaml:4:69: redis.password_env: set only one of password_file and "
                  "password_env",
                  NULL);
    expect_errors(BASE "redis: {}\n"
                       "sessions: { token_min_len: 300 }\n"
                       "hsts: { max_age: 600, preload: true }\n",
                  "t.yaml:5:28: sessions.token_min_len: must not exceed sessions.token_max_len "
                  "(256)",
                  "t.yaml:6:32: hsts.preload: requires max_age >= 31536000 and "
                  "include_subdomains: true",
                  NULL);
    /* rate rule ids name Redis keys: no two rules may share one */
    expect_errors(
        "listen: { https: [], http: [] }\n"
        "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"
        "routes:\n"
        "  - { upstream: app, auth: none, rate_limit: [ { key: ip, rate: 1/s, id: x } ] }\n"
        "  - { upstream: app, auth: none, rate_limit: [ { key: ip, rate: 1/s, id: x } ] }\n",
        "t.yaml:5:74: routes[1].rate_limit[0].id: duplicate rate_limit id \"x\" (also "
        "routes[0])",
        NULL);
}

static void test_tls_policy(void **state)
{
    expect_errors(BASE "tls: { min_version: TLSv1.1 }\n",
                  "t.yaml:4:21: tls.min_version: TLSv1.1 is weak: set tls.allow_weak: true to "
                  "allow it",
                  NULL);
    struct config *c = load_ok(BASE "tls: { min_version: TLSv1, allow_weak: true }\n");
    assert_int_equal(c->tls.min_version, TLS1_VERSION);
    config_unref(c);
    c = load_ok(BASE "tls: { min_version: TLSv1.3 }\n");
    assert_int_equal(c->tls.min_version, TLS1_3_VERSION);
    config_unref(c);
    expect_errors(BASE "tls: { min_version: SSLv3 }\n",
                  "t.yaml:4:21: tls.min_version: invalid value \"SSLv3\": must be one of TLSv1, "
                  "TLSv1.1, TLSv1.2, TLSv1.3",
                  NULL);
    expect_errors(BASE "tls: { ciphers: \"ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA\" }\n",
                  "t.yaml:4:17: tls.ciphers: AES128-SHA is not an ECDHE AEAD cipher (set "
                  "tls.allow_weak: true to allow it)",
                  NULL);
    expect_errors(BASE
                  "tls: { ciphers: \"ECDHE-RSA-AES128-GCM-SHA256:NOPE\", "
                  "ciphersuites: \"TLS_AES_128_GCM_SHA256:TLS_FOO\", groups: \"X25519:P-999\" }\n",
                  "t.yaml:4:17: tls.ciphers: unknown cipher \"NOPE\"",
                  "t.yaml:4:67: tls.ciphersuites: unknown TLS 1.3 ciphersuite \"TLS_FOO\"",
                  "t.yaml:4:109: tls.groups: unknown group in \"X25519:P-999\"", NULL);
    expect_errors(BASE "tls: { client_verify: true }\n",
                  "t.yaml:4:23: tls.client_verify: requires tls.client_ca", NULL);
}

static void test_yaml_syntax_error(void **state)
{
    expect_errors("listen:\n"
                  "  https: [\"0.0.0.0:8443\"\n"
                  "limits: {}\n",
                  "t.yaml:3:1: yaml: did not find expected ',' or ']' (while parsing a flow "
                  "sequence at line 2, column 10)",
                  NULL);
    expect_errors("listen:\n"
                  "  https: []\n"
                  " http: []\n",
                  "t.yaml:3:2: yaml: did not find expected key (while parsing a block mapping at "
                  "line 1, column 1)",
                  NULL);
    expect_errors("a: \"\\q\"\n",
                  "t.yaml:1:5: yaml: found unknown escape character (while parsing a quoted "
                  "scalar at line 1, column 4)",
                  NULL);
    expect_errors(BASE "---\nworkers: 1\n", "t.yaml:5:1: only one YAML document is allowed", NULL);
    expect_errors(BASE "limits: { max_headers: 1, max_headers: 2 }\n",
                  "t.yaml:4:27: limits.max_headers: duplicate key", NULL);
    expect_errors(BASE "tenants: { a: { upstream: app }, a: { upstream: app } }\n",
                  "t.yaml:4:34: tenants.a: duplicate key", NULL);
    expect_errors(BASE "sessions: { cookie: \"a\\0b\" }\n",
                  "t.yaml:4:21: sessions.cookie: must not contain a NUL byte", NULL);
}

static void test_multiple_errors(void **state)
{
    /* all reported, sorted by position, whatever order they were found in */
    expect_errors("routes:\n"
                  "  - upstream: nowhere\n"
                  "    auth: none\n"
                  "limits:\n"
                  "  max_headers: 1000\n"
                  "  header_timeout: soon\n"
                  "  bogus: true\n"
                  "listen: { https: [], http: [\"localhost\"] }\n"
                  "upstreams: { app: { servers: [\"127.0.0.1:9000\"], balance: random } }\n",
                  "t.yaml:2:15: routes[0].upstream: unknown upstream \"nowhere\"",
                  "t.yaml:5:16: limits.max_headers: must be between 1 and 256",
                  "t.yaml:6:19: limits.header_timeout: invalid duration \"soon\": expected a "
                  "number with a unit ms, s, m or h (e.g. 250ms, 10s)",
                  "t.yaml:7:3: limits.bogus: unknown key",
                  "t.yaml:8:29: listen.http[0]: invalid address \"localhost\": expected "
                  "host:port, [v6]:port or unix:/path",
                  "t.yaml:9:59: upstreams.app.balance: invalid value \"random\": must be one of "
                  "round_robin, least_conn, tenant_hash",
                  NULL);
}

static void test_error_cap(void **state)
{
    char *yaml = malloc(200 * 16 + 256);
    size_t o = (size_t)sprintf(yaml, BASE);
    for (int i = 0; i < 150; i++)
        o += (size_t)sprintf(yaml + o, "bad%d: 1\n", i);
    struct config_errors errs;
    assert_null(load(yaml, &errs));
    assert_int_equal(errs.count, 101);
    assert_string_equal(errs.msgs[0], "t.yaml:4:1: bad0: unknown key");
    assert_string_equal(errs.msgs[100], "t.yaml: 50 more errors not shown");
    config_errors_free(&errs);
    free(yaml);
}

static void test_alias_expansion_bounded(void **state)
{
    /* each level multiplies by 10: without a node budget this is 10^6 rate rules */
    static const char *yaml =
        BASE "x1: &a [ {key: ip, rate: 1/s}, {key: ip, rate: 1/s}, {key: ip, rate: 1/s}, "
             "{key: ip, rate: 1/s}, {key: ip, rate: 1/s}, {key: ip, rate: 1/s}, "
             "{key: ip, rate: 1/s}, {key: ip, rate: 1/s}, {key: ip, rate: 1/s}, "
             "{key: ip, rate: 1/s} ]\n";
    struct config_errors errs;
    assert_null(load(yaml, &errs)); /* x1 is an unknown key; the anchors parse */
    config_errors_free(&errs);

    char *big = malloc(1 << 16);
    size_t o = (size_t)sprintf(big, "listen: { https: [], http: [] }\n"
                                    "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"
                                    "routes:\n"
                                    "  - &r { upstream: app, auth: none, rate_limit: &l [");
    for (int i = 0; i < 1000; i++)
        o += (size_t)sprintf(big + o, "%s{key: ip, rate: 1/s, id: a%d}", i ? "," : "", i);
    o += (size_t)sprintf(big + o, "] }\n");
    for (int i = 0; i < 1000; i++)
        o += (size_t)sprintf(big + o, "  - *r\n");
    assert_null(load(big, &errs));
    if (errs.count != 1 || !strstr(errs.msgs[0], ": configuration too large: more than 1000000 "
                                                 "YAML nodes (alias expansion?)"))
        dump(&errs);
    assert_int_equal(errs.count, 1); /* and no cascade of follow-up errors */
    assert_non_null(strstr(errs.msgs[0], "configuration too large"));
    config_errors_free(&errs);
    free(big);
}

static void test_null_sections(void **state)
{
    struct config *c = load_ok(BASE "redis: null\nlog: { syslog: ~ }\ntenants:\n");
    assert_false(c->redis_enabled);
    assert_false(c->log.syslog_enabled);
    config_unref(c);
    expect_errors(BASE "log: { syslog: { transport: udp } }\n",
                  "t.yaml:4:16: log.syslog.address: required key is missing", NULL);
    c = load_ok(BASE "log: { syslog: { address: \"127.0.0.1:6514\" } }\n");
    assert_true(c->log.syslog_enabled);
    assert_int_equal(c->log.syslog.transport, SYSLOG_TLS);
    assert_int_equal(c->log.syslog.facility, 16);
    assert_int_equal(c->log.syslog.queue, 4 << 20);
    assert_int_equal(c->log.syslog.num_streams, 2);
    config_unref(c);
    expect_errors(BASE "log: { syslog: { address: \"127.0.0.1:514\", transport: udp, "
                       "ca_file: ca.pem } }\n",
                  "t.yaml:4:69: log.syslog.ca_file: only used with transport: tls", NULL);
    /* a quoted "null" is a string, not a null */
    c = load_ok(BASE "log: { access: \"null\" }\n");
    assert_string_equal(c->log.access, "null");
    config_unref(c);
}

static void test_messages_are_safe(void **state)
{
    /* a key or value with escapes must not put control characters on a terminal */
    expect_errors(BASE "\"\\e[31mred\": 1\n", "t.yaml:4:1: ?[31mred: unknown key", NULL);
    char yaml[1024];
    char longv[201];
    memset(longv, 'a', 200);
    longv[200] = '\0';
    snprintf(yaml, sizeof yaml, BASE "limits: { header_timeout: %s }\n", longv);
    struct config_errors errs;
    assert_null(load(yaml, &errs));
    assert_int_equal(errs.count, 1);
    assert_true(strlen(errs.msgs[0]) < 200); /* value quoted and cut: "aaaa..." */
    assert_non_null(strstr(errs.msgs[0], "aaa...\": expected a number"));
    config_errors_free(&errs);
}

static void test_listeners(void **state)
{
    /* 0.0.0.0 and :: on one port coexist: the listener binds IPv6 IPV6_V6ONLY */
    struct config *c = load_ok("listen: { https: [], http: [\"0.0.0.0:8080\", \"[::]:8080\"] }\n"
                               "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"
                               "routes: [ { upstream: app, auth: none } ]\n");
    assert_int_equal(c->listen.num_http, 2);
    assert_string_equal(c->listen.http[1].host, "::");
    config_unref(c);
    expect_errors("listen: { https: [], http: [\"0.0.0.0:8080\", \"127.0.0.1:8080\"], "
                  "admin: \"127.0.0.1:8080\" }\n"
                  "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"
                  "routes: [ { upstream: app, auth: none } ]\n",
                  "t.yaml:1:45: listen.http[1]: address conflicts with listen.http[0]",
                  "t.yaml:1:71: listen.admin: address conflicts with listen.http[0]", NULL);
    char yaml[2048];
    size_t o = (size_t)sprintf(yaml, "listen: { https: [], http: [");
    for (int i = 0; i < 17; i++)
        o += (size_t)sprintf(yaml + o, "%s\"127.0.0.1:%d\"", i ? "," : "", 8000 + i);
    sprintf(yaml + o, "] }\nupstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"
                      "routes: [ { upstream: app, auth: none } ]\n");
    expect_errors(yaml, "t.yaml:1:28: listen.http: at most 16 addresses", NULL);
}

static void test_session_rules(void **state)
{
    expect_errors("listen: { https: [], http: [] }\n"
                  "redis: {}\n"
                  "sessions: { cookie: null, bearer: false }\n"
                  "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"
                  "routes:\n"
                  "  - { upstream: app, auth: optional }\n"
                  "  - { upstream: app, auth: none, tenants: [acme] }\n",
                  "t.yaml:6:28: routes[0].auth: needs sessions.cookie or sessions.bearer to find "
                  "a token",
                  "t.yaml:7:43: routes[1].tenants: needs auth: optional or required (the tenant "
                  "comes from the session)",
                  NULL);
}

static void test_sizes_take_units(void **state)
{
    (void)state;
    struct config_errors errs;
    struct config *c = load(BASE "limits: { connection_buffer: 64KiB, max_body_bytes: 10MB,\n"
                                 "  max_memory: 1GiB, max_header_bytes: 16384B }\n",
                            &errs);
    if (!c)
        dump(&errs);
    assert_non_null(c);
    assert_int_equal(c->limits.connection_buffer, 65536);
    assert_int_equal(c->limits.max_body_bytes, 10000000);
    assert_int_equal(c->limits.max_memory, 1073741824);
    assert_int_equal(c->limits.max_header_bytes, 16384);
    config_unref(c);
    /* counts take no units; units are exact; bounds apply after the unit */
    expect_errors(BASE "limits: { max_headers: 1KiB }\n",
                  "t.yaml:4:24: limits.max_headers: expected an integer, got \"1KiB\"", NULL);
    expect_errors(BASE "limits: { connection_buffer: 64kb }\n",
                  "t.yaml:4:30: limits.connection_buffer: expected a size in bytes (e.g. 65536, "
                  "64KiB, 10MB), got \"64kb\"",
                  NULL);
    expect_errors(BASE "limits: { connection_buffer: 1GiB }\n",
                  "t.yaml:4:30: limits.connection_buffer: must be between 16384 and 67108864",
                  NULL);
    expect_errors(BASE "limits: { max_memory: 99999999999999999999GiB }\n",
                  "t.yaml:4:23: limits.max_memory: expected a size in bytes (e.g. 65536, 64KiB, "
                  "10MB), got \"99999999999999999999GiB\"",
                  NULL);
}

static void test_json(void **state)
{
    static const char *json =
        "{\"workers\": 2, \"listen\": {\"https\": [], \"http\": [\"127.0.0.1:18080\"], "
        "\"admin\": null},\n"
        " \"redis\": {\"address\": \"127.0.0.1:6379\", \"timeout\": \"100ms\"},\n"
        " \"upstreams\": {\"app\": {\"servers\": [\"127.0.0.1:9000\"], \"keepalive\": 0}},\n"
        " \"tenants\": {\"acme\": {\"upstream\": \"app\"}},\n"
        " \"routes\": [{\"match\": {\"path_prefix\": \"/api\"}, \"auth\": \"required\","
        " \"upstream\": \"app\", \"tenants\": [\"acme\"],\n"
        "   \"rate_limit\": [{\"key\": \"tenant\", \"rate\": \"10/s\", \"burst\": 20}]},\n"
        "   {\"upstream\":\"app\",\"auth\":\"none\",\"browser\":false}],\n"
        " \"limits\": {\"max_headers\": 50}, \"hsts\": {\"preload\": false},\n"
        "\t\"log\": {\"syslog\": null}}\n";
    struct config *c = load_ok(json);
    assert_int_equal(c->workers, 2);
    assert_int_equal(c->listen.num_https, 0);
    assert_null(c->listen.admin.text);
    assert_int_equal(c->limits.max_headers, 50);
    assert_int_equal(c->num_routes, 2);
    assert_string_equal(c->routes[0].path_prefix, "/api");
    assert_int_equal(c->routes[0].num_tenants, 1);
    assert_int_equal(c->routes[0].rate_limits[0].burst, 20);
    assert_int_equal(c->upstreams[0].keepalive, 0);
    assert_ptr_equal(config_find_tenant(c, "acme", 4)->up, &c->upstreams[0]);
    config_unref(c);
    /* a JSON error still points at the right line:column */
    expect_errors("{\"listen\": {\"https\": [], \"http\": []},\n"
                  " \"upstreams\": {\"app\": {\"servers\": [\"127.0.0.1:9000\"]}},\n"
                  " \"routes\": [{\"upstream\": \"app\", \"auth\": \"none\"}],\n"
                  " \"limits\": {\"max_headers\": 1000}}\n",
                  "t.yaml:4:28: limits.max_headers: must be between 1 and 256", NULL);
}

static void test_lookups_and_refs(void **state)
{
    struct config *c = load_ok("listen: { https: [], http: [] }\n"
                               "upstreams:\n"
                               "  app: { servers: [\"127.0.0.1:9000\"] }\n"
                               "  ded: { servers: [\"127.0.0.1:9100\", \"[::1]:9101\"] }\n"
                               "tenants:\n"
                               "  zeta: { upstream: ded }\n"
                               "  acme: { upstream: ded }\n"
                               "  mid: { upstream: app }\n"
                               "  acme2: { upstream: app }\n"
                               "routes: [ { upstream: app, auth: none } ]\n");
    const struct config_upstream *ded = config_find_upstream(c, "ded");
    assert_non_null(ded);
    assert_int_equal(ded->num_servers, 2);
    assert_int_equal(ded->line, 4);
    assert_int_equal(ded->column, 8);
    assert_null(config_find_upstream(c, "nope"));
    const char req[] = "acme2-and-more";
    assert_ptr_equal(config_find_tenant(c, req, 4)->up, ded);
    assert_string_equal(config_find_tenant(c, req, 5)->name, "acme2");
    assert_string_equal(config_find_tenant(c, "zeta", 4)->upstream, "ded");
    assert_string_equal(config_find_tenant(c, "mid", 3)->upstream, "app");
    assert_null(config_find_tenant(c, "acm", 3));
    assert_null(config_find_tenant(c, "acme\0", 5));
    assert_null(config_find_tenant(c, "", 0));
    assert_ptr_equal(config_ref(c), c);
    assert_int_equal(atomic_load(&c->refs), 2);
    config_unref(c);
    assert_int_equal(atomic_load(&c->refs), 1);
    config_unref(c);
    config_unref(NULL);
}

static void test_sample_configs_parse(void **state)
{
    static const char *const files[] = {"conf/moat.yaml", "conf/demo.yaml",
                                        "conf/examples/minimal.yaml", "conf/examples/full.yaml"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        struct config_errors errs = {0};
        char *text = read_text(files[i]);
        struct config *c = config_load_string(files[i], text, false, &errs);
        if (!c)
            dump(&errs);
        assert_non_null(c);
        free(text);
        config_unref(c);
    }
    /* the default config: the demo's single public route */
    struct config_errors errs = {0};
    char *text = read_text("conf/moat.yaml");
    struct config *c = config_load_string("conf/moat.yaml", text, false, &errs);
    free(text);
    assert_false(c->redis_enabled);
    assert_int_equal(c->num_routes, 1);
    assert_int_equal(c->routes[0].auth, AUTH_NONE);
    assert_string_equal(c->routes[0].up->servers[0].text, "127.0.0.1:9000");
    /* relative to the file's directory (conf/), not to where moat runs */
    assert_string_equal(c->tls.certs[0].cert, "conf/../certs/dev/server.crt");
    assert_string_equal(c->tls.certs[0].key, "conf/../certs/dev/server.key");
    config_unref(c);
}

/* ---- file checks ------------------------------------------------------------------------- */

static struct config *load_files(const char *fmt, struct config_errors *errs)
{
    char yaml[4096];
    /* every %s in fmt is the temp dir */
    snprintf(yaml, sizeof yaml, fmt, tmpdir, tmpdir, tmpdir, tmpdir, tmpdir, tmpdir);
    write_text("moat.yaml", yaml);
    char path[256];
    snprintf(path, sizeof path, "%s/moat.yaml", tmpdir);
    memset(errs, 0, sizeof *errs);
    return config_load(path, errs);
}

#define FILES_BASE                                                                                 \
    "listen: { https: [\"127.0.0.1:8443\"], http: [] }\n"                                          \
    "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"                                      \
    "routes: [ { upstream: app, auth: none } ]\n"

/* Expects one error; {DIR} in want stands for the temp dir. */
static void expect_file_error(const char *fmt, const char *want)
{
    struct config_errors errs;
    char expanded[1024], path[256];
    assert_null(load_files(fmt, &errs));
    snprintf(path, sizeof path, "%s/moat.yaml", tmpdir);
    const char *p = strstr(want, "{DIR}");
    const char *rest = p ? p + 5 : "";
    snprintf(expanded, sizeof expanded, "%s%.*s%s%s", path, p ? (int)(p - want) : (int)strlen(want),
             want, p ? tmpdir : "", rest);
    if (errs.count != 1 || strcmp(errs.msgs[0], expanded) != 0) {
        fprintf(stderr, "want %s\n", expanded);
        dump(&errs);
        fail();
    }
    config_errors_free(&errs);
}

static void test_files_ok(void **state)
{
    struct config_errors errs;
    struct config *c = load_files(FILES_BASE "tls:\n"
                                             "  certificates:\n"
                                             "    - cert: %s/server.crt\n"
                                             "      key: %s/server.key\n"
                                             "  client_ca: %s/server.crt\n"
                                             "identity: { signing_key_file: %s/signing.key }\n"
                                             "redis: { password_file: %s/password }\n",
                                  &errs);
    if (!c)
        dump(&errs);
    assert_non_null(c);
    assert_int_equal(c->tls.certs[0].line, 6);
    assert_int_equal(c->tls.certs[0].column, 7);
    config_unref(c);
    config_errors_free(&errs); /* the warnings of a load that worked (files readable by all) */
}

/* Relative paths are relative to the config file's directory, not to the working one. */
static void test_paths_relative_to_config_dir(void **state)
{
    struct config_errors errs;
    struct config *c = load_files(FILES_BASE "tls: { certificates: [ { cert: server.crt, "
                                             "key: ./server.key } ] }\n"
                                             "log: { access: stdout, audit: audit.log, "
                                             "audit_key_file: %s/signing.key }\n",
                                  &errs);
    if (!c)
        dump(&errs);
    assert_non_null(c);
    char want[300];
    snprintf(want, sizeof want, "%s/server.crt", tmpdir);
    assert_string_equal(c->tls.certs[0].cert, want);
    snprintf(want, sizeof want, "%s/./server.key", tmpdir);
    assert_string_equal(c->tls.certs[0].key, want);
    snprintf(want, sizeof want, "%s/audit.log", tmpdir);
    assert_string_equal(c->log.audit, want);
    assert_string_equal(c->log.access, "stdout"); /* a word, not a file */
    snprintf(want, sizeof want, "%s/signing.key", tmpdir);
    assert_string_equal(c->log.audit_key_file, want); /* absolute: as written */
    config_unref(c);
    config_errors_free(&errs);
}

static void set_mode(const char *name, mode_t mode)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    assert_int_equal(chmod(path, mode), 0);
}

/* Secrets other users can read are warned about, with the key's position; the load works. */
static void test_exposed_secrets_warned(void **state)
{
    static const char *const secrets[] = {"server.key", "signing.key", "password"};
    for (size_t i = 0; i < 3; i++)
        set_mode(secrets[i], 0600);
    set_mode("server.crt", 0644); /* a certificate is public */
    struct config_errors errs;
    const char *yaml = FILES_BASE "tls: { certificates: [ { cert: %s/server.crt, key: "
                                  "%s/server.key } ] }\n"
                                  "identity: { signing_key_file: %s/signing.key }\n"
                                  "redis: { password_file: %s/password }\n";
    struct config *c = load_files(yaml, &errs);
    assert_non_null(c);
    assert_int_equal(errs.num_warnings, 0);
    config_unref(c);
    config_errors_free(&errs);

    set_mode("server.key", 0644);
    set_mode("signing.key", 0666);
    set_mode("password", 0640);
    c = load_files(yaml, &errs);
    assert_non_null(c);
    assert_int_equal(errs.num_warnings, 3);
    assert_non_null(strstr(errs.warnings[0], "moat.yaml:4:"));
    assert_non_null(strstr(errs.warnings[0], ": tls.certificates[0].key: warning: "));
    assert_non_null(strstr(errs.warnings[0], "server.key\" is accessible by group or others "
                                             "(mode 0644): chmod 600"));
    /* in the order the files are checked */
    assert_non_null(strstr(errs.warnings[1], "redis.password_file: warning: "));
    assert_non_null(strstr(errs.warnings[1], "(mode 0640)"));
    assert_non_null(strstr(errs.warnings[2], "identity.signing_key_file: warning: "));
    assert_non_null(strstr(errs.warnings[2], "(mode 0666)"));
    config_unref(c);
    config_errors_free(&errs);
    for (size_t i = 0; i < 3; i++)
        set_mode(secrets[i], 0600);
}

static void test_missing_file(void **state)
{
    struct config_errors errs = {0};
    assert_null(config_load("/nonexistent/moat.yaml", &errs));
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.msgs[0], "/nonexistent/moat.yaml: cannot open: No such file or "
                                      "directory");
    config_errors_free(&errs);
    assert_null(config_load("/tmp", &errs));
    assert_string_equal(errs.msgs[0], "/tmp: cannot open: Is a directory");
    config_errors_free(&errs);

    expect_file_error(FILES_BASE "tls: { certificates: [ { cert: %s/missing.crt, key: "
                                 "%s/server.key } ] }\n",
                      ":4:32: tls.certificates[0].cert: cannot open \"{DIR}/missing.crt\": No "
                      "such file or directory");
}

static void test_unreadable_key(void **state)
{
    expect_file_error(FILES_BASE "tls:\n"
                                 "  certificates:\n"
                                 "    - { cert: %s/server.crt,\n"
                                 "        key: %s/garbage.key }\n",
                      ":7:14: tls.certificates[0].key: no usable PEM private key (unencrypted) "
                      "in \"{DIR}/garbage.key\"");
    expect_file_error(FILES_BASE "tls: { certificates: [ { cert: %s/server.key, key: "
                                 "%s/server.key } ] }\n",
                      ":4:32: tls.certificates[0].cert: no PEM certificate in "
                      "\"{DIR}/server.key\"");
    expect_file_error(FILES_BASE "tls: { certificates: [ { cert: %s/server.crt, key: "
                                 "%s/server.key } ] }\n"
                                 "identity: { signing_key_file: %s/short.key }\n",
                      ":5:31: identity.signing_key_file: \"{DIR}/short.key\" is too short: 11 "
                      "bytes, at least 32 needed");
    expect_file_error(FILES_BASE "tls: { certificates: [ { cert: %s/server.crt, key: "
                                 "%s/server.key } ] }\n"
                                 "redis: { password_file: %s }\n",
                      ":5:25: redis.password_file: \"{DIR}\" is not a regular file");
}

static void test_cert_key_mismatch(void **state)
{
    /* reported at the list item, where the pair is declared */
    expect_file_error(FILES_BASE "tls:\n"
                                 "  certificates:\n"
                                 "    - { cert: %s/server.crt, key: %s/server.key }\n"
                                 "    - cert: %s/server.crt\n"
                                 "      key: %s/other.key\n",
                      ":7:7: tls.certificates[1].key: does not match certificate "
                      "\"{DIR}/server.crt\"");
}

static void test_no_file_checks_in_pure_mode(void **state)
{
    struct config *c =
        load_ok("tls: { certificates: [ { cert: /nonexistent.crt, key: /no.key } ] }\n"
                "identity: { signing_key_file: /nonexistent }\n"
                "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"
                "routes: [ { upstream: app, auth: none } ]\n");
    config_unref(c);
}

/* The schema's TLS defaults are the constants tls_policy_build() falls back to. */
static void test_tls_defaults_single_source(void **state)
{
    struct config *c = load_ok(BASE);
    assert_string_equal(c->tls.ciphers, CONFIG_TLS_CIPHERS);
    assert_string_equal(c->tls.ciphersuites, CONFIG_TLS_CIPHERSUITES);
    assert_string_equal(c->tls.groups, CONFIG_TLS_GROUPS);
    config_unref(c);
}

/* Defaults of the list and map element tables below keys (sections recursed into). */
static void apply_element_defaults(struct config_loader *L, const struct config_key *keys)
{
    for (const struct config_key *k = keys; k->name; k++) {
        assert_false((k->flags & CK_REQUIRED) && k->def); /* a default never used */
        assert_true((k->type == CK_REJECT) == (k->reject != NULL));
        if (k->type == CK_SECTION)
            apply_element_defaults(L, k->keys);
        if (k->type != CK_LIST && k->type != CK_MAP)
            continue;
        void *elem = calloc(1, k->elem_size);
        assert_non_null(elem);
        config_store_defaults(L, k->keys, elem);
        apply_element_defaults(L, k->keys);
        config_store_free(k->keys, elem);
        free(elem);
    }
}

/* Every row's default parses and passes its own row's checks and bounds. */
static void test_schema_defaults_in_bounds(void **state)
{
    struct config_loader L;
    struct config_errors errs = {0};
    struct config *c = calloc(1, sizeof *c);
    assert_non_null(c);
    config_loader_init(&L, "schema", false);
    config_store_defaults(&L, config_root_keys, c);
    apply_element_defaults(&L, config_root_keys);
    size_t n = L.num_errs + L.dropped;
    config_loader_finish(&L, &errs);
    dump(&errs);
    assert_int_equal(n, 0);
    config_errors_free(&errs);
    config_store_free(config_root_keys, c);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_rate),
        cmocka_unit_test(test_parse_addr),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values_stored),
        cmocka_unit_test(test_memory_budget_keys),
        cmocka_unit_test(test_rate_rule_defaults),
        cmocka_unit_test(test_route_id_defaults),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_bad_duration),
        cmocka_unit_test(test_bad_rate),
        cmocka_unit_test(test_bad_address),
        cmocka_unit_test(test_unknown_upstream),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_semantic_rules),
        cmocka_unit_test(test_tls_policy),
        cmocka_unit_test(test_yaml_syntax_error),
        cmocka_unit_test(test_multiple_errors),
        cmocka_unit_test(test_error_cap),
        cmocka_unit_test(test_alias_expansion_bounded),
        cmocka_unit_test(test_null_sections),
        cmocka_unit_test(test_messages_are_safe),
        cmocka_unit_test(test_listeners),
        cmocka_unit_test(test_session_rules),
        cmocka_unit_test(test_sizes_take_units),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_lookups_and_refs),
        cmocka_unit_test(test_sample_configs_parse),
        cmocka_unit_test(test_files_ok),
        cmocka_unit_test(test_exposed_secrets_warned),
        cmocka_unit_test(test_paths_relative_to_config_dir),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_unreadable_key),
        cmocka_unit_test(test_cert_key_mismatch),
        cmocka_unit_test(test_no_file_checks_in_pure_mode),
        cmocka_unit_test(test_tls_defaults_single_source),
        cmocka_unit_test(test_schema_defaults_in_bounds),
    };
    return cmocka_run_group_tests(tests, setup_files, teardown_files);
}
