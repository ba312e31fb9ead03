/*
 * Unit tests for src/headername: every spelling of a moat-owned header name that
 * some upstream would read as that header must match; near misses must not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http/headername.h"

static struct http1_str str(const char *s)
{
    return (struct http1_str){s, strlen(s)};
}

static void test_eq_loose_matches(void **state)
{
    const char *same[] = {
        "X-Tenant-ID",   "x-tenant-id",   "X-TENANT-ID", "X_Tenant_ID", "x_tenant_id",
        " X-Tenant-Id ", "\tX-Tenant-ID", "X-Tenant_ID", "X.Tenant.ID", "X~Tenant+ID",
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        if (!headername_eq_loose(str(same[i]), "X-Tenant-ID"))
            fail_msg("\"%s\" should match X-Tenant-ID", same[i]);
    }
}

static void test_eq_loose_rejects(void **state)
{
    const char *different[] = {
        "X-Tenant-IDs", "X-Tenant-I", "XTenantID", "X--Tenant-ID", "X-Tenant-ID-", "-X-Tenant-ID",
        "X-Tenant",     "",           " ",         "X-Tenant-1D",  "X-User-ID",    "X Tenant-IDx",
    };
    for (size_t i = 0; i < sizeof different / sizeof different[0]; i++) {
        if (headername_eq_loose(str(different[i]), "X-Tenant-ID"))
            fail_msg("\"%s\" should not match X-Tenant-ID", different[i]);
    }
    /* Length is the view's, not strlen: a NUL inside does not end the name. */
    assert_false(headername_eq_loose((struct http1_str){"X-Tenant-ID\0x", 13}, "X-Tenant-ID"));
    assert_true(headername_eq_loose((struct http1_str){"X-Tenant-IDxx", 11}, "X-Tenant-ID"));
    assert_false(headername_eq_loose((struct http1_str){NULL, 0}, "X-Tenant-ID"));
    /* Non-ASCII bytes fold to the separator, never to a letter. */
    assert_false(headername_eq_loose(str("X-Tenant-\260D"), "X-Tenant-ID"));
}

static void test_prefix_loose(void **state)
{
    const char *yes[] = {
        "X-Moat-Signature", "x-moat-anything", "X_MOAT_SIG",
        "X-Moat-",          " X-Moat-a ",      "X.Moat.Debug",
    };
    const char *no[] = {"X-Moat", "X-Moatx", "X-Moa-t", "Moat-X", "X-Mo", "", "XX-Moat-a"};

    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (!headername_has_prefix_loose(str(yes[i]), "X-Moat-"))
            fail_msg("\"%s\" should have prefix X-Moat-", yes[i]);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        if (headername_has_prefix_loose(str(no[i]), "X-Moat-"))
            fail_msg("\"%s\" should not have prefix X-Moat-", no[i]);
    }
    assert_true(headername_has_prefix_loose(str("X-Forwarded-For"), "X-Forwarded-"));
    assert_true(headername_has_prefix_loose(str("x_forwarded_host"), "X-Forwarded-"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eq_loose_matches),
        cmocka_unit_test(test_eq_loose_rejects),
        cmocka_unit_test(test_prefix_loose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
