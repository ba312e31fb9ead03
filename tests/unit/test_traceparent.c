/* traceparent: strict W3C traceparent parsing and formatting (src/http/traceparent.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http/traceparent.h"

#define GOOD "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static bool parse(const char *s, struct traceparent *tp)
{
    return traceparent_parse(s, strlen(s), tp);
}

static void test_valid(void **state)
{
    struct traceparent tp;
    assert_true(parse(GOOD, &tp));
    assert_string_equal(tp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(tp.parent_id, "00f067aa0ba902b7");
    assert_int_equal(tp.flags, 1);
    assert_true(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff", &tp));
    assert_int_equal(tp.flags, 0xff);
}

static void test_invalid(void **state)
{
    static const char *bad[] = {
        "",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", /* uppercase */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", /* all-zero trace-id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", /* all-zero parent-id */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* version ff */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* another version */
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  /* short trace-id */
        "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", /* trailing */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        " 0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902g7-01", /* not hex */
    };
    struct traceparent tp;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(parse(bad[i], &tp));
    assert_false(traceparent_parse(NULL, 0, &tp));
    assert_false(traceparent_parse(GOOD, strlen(GOOD) - 1, &tp)); /* length is exact */
}

static void test_format(void **state)
{
    char out[TRACEPARENT_LEN + 1];
    assert_int_equal(
        traceparent_format("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1, out),
        TRACEPARENT_LEN);
    assert_string_equal(out, GOOD);
    struct traceparent tp;
    assert_true(parse(out, &tp)); /* what moat sends is what it would accept */
    uint8_t b[2] = {0xab, 0x01};
    char h[5];
    traceparent_hex(b, 2, h);
    assert_string_equal(h, "ab01");
    assert_true(traceparent_all_zero("0000", 4));
    assert_false(traceparent_all_zero("0001", 4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
