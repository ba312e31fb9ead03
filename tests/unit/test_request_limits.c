/*
 * Unit tests for the limits phase (src/policy/request_limits.h, docs/limits.md):
 * over requests built from a config loaded from YAML and a parsed head, what it
 * refuses (CONNECT and TRACE: 405 with Allow; a declared body above
 * limits.max_body_bytes: 413; a path that is not canonical, path.h: 400) and what
 * it lets through, with the answer the client gets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "request_fixture.h"

#include "policy/request_limits.h"

#define YAML                                                                                       \
    "listen: { https: [], http: [], admin: null }\n"                                               \
    "upstreams: { app: { servers: [\"127.0.0.1:9000\"] } }\n"                                      \
    "routes: [ { upstream: app, auth: none } ]\n"

#define ALLOW "Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n"

static int setup_body_limit(void **state)
{
    static struct fixture fx;
    fixture_init(&fx, fixture_snapshot(YAML "limits: { max_body_bytes: 1000 }\n"), "192.0.2.1");
    *state = &fx;
    return 0;
}

static int setup_no_body_limit(void **state)
{
    static struct fixture fx;
    fixture_init(&fx, fixture_snapshot(YAML "limits: { max_body_bytes: 0 }\n"), "192.0.2.1");
    *state = &fx;
    return 0;
}

static int teardown(void **state)
{
    fixture_clear(*state);
    return 0;
}

/* Runs the phase over head: the status the client got, 0 if the request went on. */
static int run(struct fixture *fx, const char *head)
{
    struct request *r = fixture_request(fx, head);
    enum phase_result res = limits_phase(r);
    if (res == PHASE_CONTINUE) {
        assert_int_equal(fx->stream.responses, 0);
        assert_null(r->error);
        return 0;
    }
    assert_int_equal(res, PHASE_RESPOND);
    assert_int_equal(fx->stream.responses, 1);
    assert_non_null(r->error); /* the access log says why */
    return fx->stream.status;
}

static int run_path(struct fixture *fx, const char *target)
{
    char head[512];
    snprintf(head, sizeof head, "GET %s HTTP/1.1\r\nHost: a.example\r\n\r\n", target);
    return run(fx, head);
}

static void test_methods_proxied(void **state)
{
    static const char *const methods[] = {"GET",   "HEAD",   "POST",    "PUT",
                                          "PATCH", "DELETE", "OPTIONS", "PROPFIND",
                                          "MKCOL", "REPORT", "LOCK",    "PURGE"};
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
        char head[128];
        snprintf(head, sizeof head, "%s /x HTTP/1.1\r\nHost: a\r\n\r\n", methods[i]);
        assert_int_equal(run(*state, head), 0);
    }
}

/* CONNECT and TRACE: 405 naming the methods moat proxies, connection kept. */
static void test_connect_trace_refused(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(run(fx, "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n"), 405);
    assert_true(fx->stream.has_extra);
    assert_string_equal(fx->stream.extra, ALLOW);
    assert_false(fx->stream.close);
    assert_string_equal(fx->stream.body, "method not allowed");

    assert_int_equal(run(fx, "TRACE / HTTP/1.1\r\nHost: a\r\n\r\n"), 405);
    assert_string_equal(fx->stream.extra, ALLOW);
    assert_false(fx->stream.close);
    /* a TRACE with a body still gets 405, not 413 */
    assert_int_equal(run(fx, "TRACE / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n"), 405);
}

/* Content-Length above max_body_bytes: 413 and the connection closed (the body is not read). */
static void test_body_above_limit(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(run(fx, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n"), 413);
    assert_false(fx->stream.has_extra);
    assert_true(fx->stream.close);
    assert_string_equal(fx->stream.body, "request body too large");
    assert_int_equal(
        run(fx, "PUT /up HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n"), 413);
    assert_int_equal(run(fx, "GET /up HTTP/1.0\r\nContent-Length: 99999\r\n\r\n"), 413);
}

static void test_body_within_limit(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(run(fx, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n"), 0);
    assert_int_equal(run(fx, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), 0);
    /* a chunked body has no size yet: the proxy counts it as it streams */
    assert_int_equal(run(fx, "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
                     0);
}

/* max_body_bytes: 0 is no limit. */
static void test_body_no_limit(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(
        run(fx, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n"), 0);
    /* the other checks still apply */
    assert_int_equal(run(fx, "TRACE / HTTP/1.1\r\nHost: a\r\n\r\n"), 405);
    assert_int_equal(run_path(fx, "/a/../b"), 400);
}

/* Canonical paths pass; the query is the upstream's and is not checked. */
static void test_canonical_paths(void **state)
{
    static const char *const ok[] = {"/",
                                     "/api",
                                     "/api/v1/items/",
                                     "/a-b_c~d.e",
                                     "/caf%C3%A9",
                                     "/a%2Bb",
                                     "/files/x.tar.gz",
                                     "/api?next=/../admin;x=%2f",
                                     "/search?q=%zz"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        if (run_path(*state, ok[i]) != 0)
            fail_msg("refused: %s", ok[i]);
        assert_null(limits_path_problem((struct http1_str){ok[i], strcspn(ok[i], "?")}));
    }
}

/* Every spelling an upstream could read as another path: 400, connection closed. */
static void test_ambiguous_paths(void **state)
{
    struct fixture *fx = *state;
    static const char *const bad[] = {
        "/a/../b", "/a/./b",  "/..",         "/.",         "/a//b",      "//a",        "/admin.",
        "/a../b",  "/a;b",    "/admin;x=1/", "/a%20b",     "/%2e%2e/a",  "/a%2fb",     "/a%2Fb",
        "/a%5cb",  "/a%3bb",  "/%41dmin",    "/a%25",      "/a%252e",    "/a%",        "/a%4",
        "/a%zz",   "/a%00",   "/a%0d%0a",    "/a%7f",      "/%c0%af",    "/%e0%80%af", "/%ff",
        "/%c3",    "/%C4%B1", "/%C5%BF",     "/%E2%84%AA", "/%EF%BC%A1", "/%E2%80%A5",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int st = run_path(fx, bad[i]);
        if (st != 400)
            fail_msg("%s: want 400, got %d", bad[i], st);
        assert_true(fx->stream.close);
        assert_false(fx->stream.has_extra);
        /* the reason is the one limits_path_problem() gives, also the response body */
        const char *why = limits_path_problem((struct http1_str){bad[i], strlen(bad[i])});
        assert_non_null(why);
        assert_string_equal(fx->stream.body, why);
    }
}

/* The pure helper, also for what the HTTP/1 parser already refuses (another protocol
 * may hand it over): a backslash, a space. */
static void test_path_problem_helper(void **state)
{
    (void)state;
    static const char *const bad[] = {"/a\\b", "\\a", "/a b", "a", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (!limits_path_problem((struct http1_str){bad[i], strlen(bad[i])}))
            fail_msg("accepted: \"%s\"", bad[i]);
    assert_null(limits_path_problem((struct http1_str){"/a/b", 4}));
    /* only len bytes are the path */
    assert_null(limits_path_problem((struct http1_str){"/a/../b", 2}));
}

/* Targets that are not a path ("*" for OPTIONS) are refused the same way. */
static void test_not_origin_form(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(run(fx, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_true(fx->stream.close);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_methods_proxied, setup_body_limit, teardown),
        cmocka_unit_test_setup_teardown(test_connect_trace_refused, setup_body_limit, teardown),
        cmocka_unit_test_setup_teardown(test_body_above_limit, setup_body_limit, teardown),
        cmocka_unit_test_setup_teardown(test_body_within_limit, setup_body_limit, teardown),
        cmocka_unit_test_setup_teardown(test_body_no_limit, setup_no_body_limit, teardown),
        cmocka_unit_test_setup_teardown(test_canonical_paths, setup_body_limit, teardown),
        cmocka_unit_test_setup_teardown(test_ambiguous_paths, setup_body_limit, teardown),
        cmocka_unit_test(test_path_problem_helper),
        cmocka_unit_test_setup_teardown(test_not_origin_form, setup_body_limit, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
