/*
 * Unit tests for route matching: host patterns, and path prefixes at a segment
 * boundary compared ASCII case-insensitively (docs/routing.md); and the route
 * phases over requests: 404 without a route, tenant isolation (403) and the
 * upstream a pinned tenant goes to.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "request_fixture.h"

#include "config/config.h"
#include "core/snapshot.h"
#include "policy/route.h"

static bool path_matches(const char *prefix, const char *path)
{
    return route_path_matches(prefix, (struct http1_str){path, strlen(path)});
}

static void test_path_prefix_segment_boundary(void **state)
{
    (void)state;
    assert_true(path_matches("/api", "/api"));
    assert_true(path_matches("/api", "/api/"));
    assert_true(path_matches("/api", "/api/x"));
    assert_false(path_matches("/api", "/apix"));
    assert_false(path_matches("/api", "/ap"));
    assert_true(path_matches("/api/", "/api/x"));
    assert_false(path_matches("/api/", "/api"));
    assert_true(path_matches("/", "/anything"));
}

static void test_path_prefix_ignores_ascii_case(void **state)
{
    (void)state;
    assert_true(path_matches("/admin", "/ADMIN"));
    assert_true(path_matches("/admin", "/Admin/x"));
    assert_true(path_matches("/Admin", "/aDMIN/"));
    assert_false(path_matches("/admin", "/ADMINX"));
    /* the rest of the path is not compared: it is the upstream's */
    assert_true(path_matches("/a", "/A/B%C3%A9"));
}

static void test_host_patterns(void **state)
{
    (void)state;
    struct http1_str h = {"API.Example.com:8443", 20};
    assert_true(route_host_matches("api.example.com", h));
    assert_true(route_host_matches("*.example.com", h));
    assert_false(route_host_matches("example.com", h));
    assert_true(route_host_matches(NULL, h));
}

/* ---- the phases, over requests -------------------------------------------------------- */

/*
 * Routes, first match wins: /admin on one host, for two tenants only; /api on every
 * subdomain; a host whose upstream is tenant pinned's dedicated one. Tenant pinned
 * goes to ded wherever it is routed.
 */
#define YAML                                                                                       \
    "listen: { https: [], http: [], admin: null }\n"                                               \
    "redis: {}\n"                                                                                  \
    "upstreams:\n"                                                                                 \
    "  app: { servers: [\"127.0.0.1:9000\"] }\n"                                                   \
    "  admin: { servers: [\"127.0.0.1:9001\"] }\n"                                                 \
    "  ded: { servers: [\"127.0.0.1:9002\"] }\n"                                                   \
    "tenants:\n"                                                                                   \
    "  pinned: { upstream: ded }\n"                                                                \
    "routes:\n"                                                                                    \
    "  - { match: { host: api.example.com, path_prefix: /admin }, upstream: admin,\n"              \
    "      auth: required, tenants: [acme, pinned] }\n"                                            \
    "  - { match: { host: \"*.example.com\", path_prefix: /api }, upstream: app, auth: optional "  \
    "}\n"                                                                                          \
    "  - { match: { host: api.example.com, path_prefix: /api/v2 }, upstream: admin, auth: none "   \
    "}\n"                                                                                          \
    "  - { match: { host: ded.example.com }, upstream: ded, auth: optional }\n"

static int setup(void **state)
{
    static struct fixture fx;
    fixture_init(&fx, fixture_snapshot(YAML), "192.0.2.1");
    *state = &fx;
    return 0;
}

static int teardown(void **state)
{
    fixture_clear(*state);
    return 0;
}

static const struct config_upstream *upstream(struct fixture *fx, const char *name)
{
    const struct config_upstream *u = config_find_upstream(fx->snap->cfg, name);
    assert_non_null(u);
    return u;
}

/* A request for host (NULL: HTTP/1.0 without Host) and target, through route_phase. */
static enum phase_result route(struct fixture *fx, const char *host, const char *target)
{
    char head[512];
    if (host)
        snprintf(head, sizeof head, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, host);
    else
        snprintf(head, sizeof head, "GET %s HTTP/1.0\r\n\r\n", target);
    return route_phase(fixture_request(fx, head));
}

static void expect_404(struct fixture *fx, const char *host, const char *target)
{
    if (route(fx, host, target) != PHASE_RESPOND)
        fail_msg("routed: %s %s", host ? host : "(no Host)", target);
    assert_int_equal(fx->stream.responses, 1);
    assert_int_equal(fx->stream.status, 404);
    assert_false(fx->stream.close);
    assert_null(fx->r->route);
    assert_null(fx->r->upstream);
    assert_string_equal(fx->r->error, "no route");
}

/* The index of the route taken, and the upstream is the route's. */
static long expect_routed(struct fixture *fx, const char *host, const char *target)
{
    if (route(fx, host, target) != PHASE_CONTINUE)
        fail_msg("not routed: %s %s (%d)", host, target, fx->stream.status);
    assert_int_equal(fx->stream.responses, 0);
    assert_non_null(fx->r->route);
    assert_ptr_equal(fx->r->upstream, fx->r->route->up);
    return fx->r->route - fx->snap->cfg->routes;
}

static void test_route_phase_no_route(void **state)
{
    struct fixture *fx = *state;
    expect_404(fx, "other.org", "/api");
    expect_404(fx, "example.com", "/api"); /* "*.example.com" needs a label before */
    expect_404(fx, "x.example.com", "/admin");
    expect_404(fx, "api.example.com", "/apix");
    expect_404(fx, "api.example.com", "/");
    expect_404(fx, "api.example.com.evil.org", "/api");
    expect_404(fx, NULL, "/api"); /* no Host: no host pattern matches */
}

static void test_route_phase_match(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(expect_routed(fx, "api.example.com", "/admin"), 0);
    assert_ptr_equal(fx->r->upstream, upstream(fx, "admin"));
    assert_int_equal(expect_routed(fx, "API.Example.COM:8443", "/Admin/users?x=1"), 0);
    assert_int_equal(expect_routed(fx, "api.example.com.", "/admin/"), 0);
    assert_int_equal(expect_routed(fx, "x.example.com", "/api/v1"), 1);
    assert_ptr_equal(fx->r->upstream, upstream(fx, "app"));
    assert_int_equal(expect_routed(fx, "a.b.example.com", "/API"), 1);
    /* first match wins: /api (route 1) is listed before /api/v2 */
    assert_int_equal(expect_routed(fx, "api.example.com", "/api/v2/x"), 1);
    assert_int_equal(expect_routed(fx, "ded.example.com", "/anything"), 3);
    assert_ptr_equal(fx->r->upstream, upstream(fx, "ded"));
}

/* route_phase then route_tenant_phase for a session of tenant (NULL: anonymous). */
static enum phase_result tenant_run(struct fixture *fx, const char *host, const char *target,
                                    const char *tenant)
{
    assert_int_equal(route(fx, host, target), PHASE_CONTINUE);
    if (tenant) {
        fx->r->ident.authenticated = true;
        snprintf(fx->r->ident.tenant, sizeof fx->r->ident.tenant, "%s", tenant);
        snprintf(fx->r->ident.user, sizeof fx->r->ident.user, "u1");
    }
    return route_tenant_phase(fx->r);
}

static void expect_403(struct fixture *fx, const char *host, const char *target, const char *tenant,
                       const char *why)
{
    if (tenant_run(fx, host, target, tenant) != PHASE_RESPOND)
        fail_msg("allowed: tenant %s on %s %s", tenant ? tenant : "(none)", host, target);
    assert_int_equal(fx->stream.responses, 1);
    assert_int_equal(fx->stream.status, 403);
    assert_false(fx->stream.close);
    assert_string_equal(fx->r->error, why);
}

static void expect_allowed(struct fixture *fx, const char *host, const char *target,
                           const char *tenant, const char *up)
{
    if (tenant_run(fx, host, target, tenant) != PHASE_CONTINUE)
        fail_msg("refused: tenant %s on %s %s", tenant ? tenant : "(none)", host, target);
    assert_int_equal(fx->stream.responses, 0);
    assert_ptr_equal(fx->r->upstream, upstream(fx, up));
}

/* A route restricted to tenants refuses anonymous requests and other tenants. */
static void test_tenant_not_allowed(void **state)
{
    struct fixture *fx = *state;
    const char *why = "tenant not allowed on this route";
    expect_403(fx, "api.example.com", "/admin", NULL, why);
    expect_403(fx, "api.example.com", "/admin", "other", why);
    expect_403(fx, "api.example.com", "/admin", "ACME", why); /* tenant names are exact */
    expect_403(fx, "api.example.com", "/admin", "acm", why);
    expect_403(fx, "api.example.com", "/admin", "acme2", why);
    /* a tenant name without an authenticated session is no tenant */
    assert_int_equal(route(fx, "api.example.com", "/admin"), PHASE_CONTINUE);
    strcpy(fx->r->ident.tenant, "acme");
    assert_int_equal(route_tenant_phase(fx->r), PHASE_RESPOND);
    assert_int_equal(fx->stream.status, 403);
}

static void test_tenant_allowed(void **state)
{
    struct fixture *fx = *state;
    expect_allowed(fx, "api.example.com", "/admin", "acme", "admin");
    expect_allowed(fx, "x.example.com", "/api", "acme", "app");
    expect_allowed(fx, "x.example.com", "/api", NULL, "app");
}

/* A pinned tenant goes to its own upstream, whatever the route's. */
static void test_pinned_tenant(void **state)
{
    struct fixture *fx = *state;
    expect_allowed(fx, "api.example.com", "/admin", "pinned", "ded");
    expect_allowed(fx, "x.example.com", "/api", "pinned", "ded");
    expect_allowed(fx, "ded.example.com", "/", "pinned", "ded");
}

/* Nobody but its tenant reaches a dedicated upstream, whatever the route says. */
static void test_dedicated_upstream_refused(void **state)
{
    struct fixture *fx = *state;
    const char *why = "dedicated upstream of another tenant";
    expect_403(fx, "ded.example.com", "/", NULL, why);
    expect_403(fx, "ded.example.com", "/x", "acme", why);
    expect_403(fx, "ded.example.com", "/x", "Pinned", why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_prefix_segment_boundary),
        cmocka_unit_test(test_path_prefix_ignores_ascii_case),
        cmocka_unit_test(test_host_patterns),
        cmocka_unit_test_setup_teardown(test_route_phase_no_route, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_phase_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenant_not_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenant_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pinned_tenant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedicated_upstream_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
