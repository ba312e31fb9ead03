/*
 * Unit tests for route matching: host patterns, and path prefixes at a segment
 * boundary compared ASCII case-insensitively (docs/routing.md).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_prefix_segment_boundary),
        cmocka_unit_test(test_path_prefix_ignores_ascii_case),
        cmocka_unit_test(test_host_patterns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
