/*
 * Unit tests for src/path: the canonical request path (path.h). Every spelling
 * an upstream could normalize into another route is refused; ordinary paths,
 * including percent-encoded reserved characters and UTF-8, are accepted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http/path.h"

static const char *problem(const char *p)
{
    return path_problem((struct http1_str){p, strlen(p)});
}

static void test_canonical_paths_accepted(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "/",           "/admin",        "/admin/",
        "/admin/x",    "/a/b/c.html",   "/.well-known/x",
        "/a/.hidden",  "/a..b",         "/v1.2/x",
        "/a-b_c~d",    "/a%3Fb",        "/a%23b",
        "/a%2Bb",      "/%40x",         "/caf%C3%A9",
        "/%E2%82%AC",  "/%F0%9F%98%80", "/%e6%97%a5%e6%9c%ac",
        "/a:b",        "/a@b",          "/a!$&'()*+,=b",
        "/%22x%3C%3E",
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        const char *why = problem(ok[i]);
        if (why)
            fail_msg("%s refused: %s", ok[i], why);
    }
}

static void test_bypass_spellings_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        /* path parameters: Tomcat, Jetty, Spring strip them, "..;" is ".." */
        "/admin;jsessionid=x",
        "/admin;",
        "/public/..;/admin",
        "/public/.;/admin",
        "/;/admin",
        "/admin%3bx",
        "/admin%3B",
        "/public/..%3b/admin",
        /* encoded controls and space: trimmed or split on by some servers */
        "/admin%20",
        "/admin%09",
        "/admin%00",
        "/admin%0a",
        "/admin%0D",
        "/admin%7f",
        "/admin%1f",
        /* double encoding */
        "/%2561dmin",
        "/admin%25",
        "/%252e%252e/admin",
        /* needless encoding, slashes */
        "/%61dmin",
        "/ADMIN%2e",
        "/%2e%2e/admin",
        "/a%2fb",
        "/a%2Fb",
        "/a%5cb",
        "/a%7e",
        /* dot segments, empty segments, trailing dots (Windows) */
        "/public/../admin",
        "/./admin",
        "/admin/.",
        "/admin/..",
        "//admin",
        "/admin//x",
        "/admin.",
        "/admin./x",
        "/admin../x",
        "/a/...",
        /* raw bytes the parser never passes (config strings) */
        "/a\\b",
        "/a b",
        "/a?b",
        "/a#b",
        "/a\x7f",
        "/caf\xc3\xa9",
        /* malformed escapes */
        "/a%",
        "/a%2",
        "/a%zz",
        "/a%2g",
        /* invalid and overlong UTF-8 */
        "/%c0%af",
        "/%c0%ae%c0%ae/admin",
        "/%e0%80%af",
        "/%f0%80%80%af",
        "/%c3",
        "/%c3x",
        "/%c3%2f",
        "/%80",
        "/%ff",
        "/%ed%a0%80",
        "/%f4%90%80%80",
        "/%f5%80%80%80",
        /* characters that fold to ASCII */
        "/adm%C4%B1n",
        "/%C4%B0",
        "/%C5%BFecret",
        "/%E2%84%AAey",
        "/%EF%BC%A1dmin",
        "/%EF%BC%8Fadmin",
        "/%E2%80%A4%E2%80%A4/admin",
        "/%E2%88%95",
        "/%C2%A0",
        "/%E3%80%80",
        "/%EF%AC%81le",
        "/%F0%9D%90%9A",
        /* not an absolute path */
        "",
        "*",
        "admin",
        "http://h/admin",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (!problem(bad[i]))
            fail_msg("%s accepted", bad[i]);
}

static void test_reasons(void **state)
{
    (void)state;
    assert_string_equal(problem("/a;b"), "';' in path (path parameter)");
    assert_string_equal(problem("/a%3Bb"), "percent-encoded ';' in path");
    assert_string_equal(problem("/a%20"), "percent-encoded control character or space in path");
    assert_string_equal(problem("/a/../b"), "dot segment in path");
    assert_string_equal(problem("/a."), "path segment ending in '.'");
    assert_string_equal(problem("/%c0%af"), "invalid UTF-8 in path");
    assert_string_equal(problem("/%C4%B1"), "character that folds to ASCII in path");
    assert_null(path_problem_str("/admin/"));
    assert_non_null(path_problem_str("/admin;x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical_paths_accepted),
        cmocka_unit_test(test_bypass_spellings_refused),
        cmocka_unit_test(test_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
