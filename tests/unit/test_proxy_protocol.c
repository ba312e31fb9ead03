/*
 * Unit tests for src/http/proxy_protocol: PROXY protocol v1 and v2 headers,
 * complete, split at every byte, and malformed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>

#include <cmocka.h>

#include "http/proxy_protocol.h"

static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static enum proxy_protocol_result parse(const void *p, size_t n, struct proxy_protocol_header *h)
{
    const char *err;
    enum proxy_protocol_result r = proxy_protocol_parse(p, n, h, &err);
    if (r == PROXY_PROTOCOL_ERROR)
        assert_non_null(err);
    return r;
}

/* Every proper prefix needs more; the whole is done with len == n. */
static void assert_done_only_whole(const uint8_t *p, size_t n, struct proxy_protocol_header *h)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(parse(p, i, h), PROXY_PROTOCOL_MORE);
    assert_int_equal(parse(p, n, h), PROXY_PROTOCOL_DONE);
    assert_int_equal(h->len, n);
}

static const char *src_text(const struct proxy_protocol_header *h, char *buf)
{
    if (h->src.sa.sa_family == AF_INET)
        return inet_ntop(AF_INET, &h->src.in4.sin_addr, buf, INET6_ADDRSTRLEN);
    return inet_ntop(AF_INET6, &h->src.in6.sin6_addr, buf, INET6_ADDRSTRLEN);
}

static void test_v1_tcp4(void **state)
{
    const char *s = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n";
    struct proxy_protocol_header h;
    char buf[INET6_ADDRSTRLEN];
    assert_done_only_whole((const uint8_t *)s, strlen(s), &h);
    assert_int_equal(h.version, 1);
    assert_false(h.local);
    assert_string_equal(src_text(&h, buf), "192.0.2.7");
    assert_int_equal(ntohs(h.src.in4.sin_port), 56324);
}

static void test_v1_tcp6_and_trailing_bytes(void **state)
{
    const char *s = "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n\x16\x03\x01";
    struct proxy_protocol_header h;
    char buf[INET6_ADDRSTRLEN];
    assert_int_equal(parse(s, strlen(s), &h), PROXY_PROTOCOL_DONE);
    assert_int_equal(h.len, strlen(s) - 3); /* the ClientHello is not part of it */
    assert_string_equal(src_text(&h, buf), "2001:db8::1");
}

static void test_v1_unknown(void **state)
{
    struct proxy_protocol_header h;
    const char *a = "PROXY UNKNOWN\r\n";
    const char *b = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
    assert_int_equal(parse(a, strlen(a), &h), PROXY_PROTOCOL_DONE);
    assert_true(h.local);
    assert_int_equal(parse(b, strlen(b), &h), PROXY_PROTOCOL_DONE);
    assert_true(h.local);
    assert_int_equal(h.len, strlen(b));
}

static void test_v1_invalid(void **state)
{
    static const char *const bad[] = {
        "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\n",     /* LF without CR */
        "PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n",       /* a field missing */
        "PROXY TCP4 192.0.2.7  198.51.100.1 56324 443\r\n",  /* two spaces */
        "PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",       /* v6 in TCP4 */
        "PROXY TCP6 192.0.2.7 2001:db8::2 1 2\r\n",          /* v4 in TCP6 */
        "PROXY TCP4 192.0.2.7 198.51.100.1 65536 443\r\n",   /* port range */
        "PROXY TCP4 192.0.2.7 198.51.100.1 0443 443\r\n",    /* leading zero */
        "PROXY TCP4 192.0.2.7 198.51.100.1 -1 443\r\n",      /* sign */
        "PROXY UDP4 192.0.2.7 198.51.100.1 1 443\r\n",       /* protocol */
        "PROXY TCP4 192.0.2.7 198.51.100.1 1 443 extra\r\n", /* too many fields */
        "PROXY TCP4 192.0.2.7\r198.51.100.1 1 443\r\n",      /* lone CR */
        "PROXY TCP4 192.0.2.300 198.51.100.1 1 443\r\n",     /* not an address */
        "PROXY TCP4 192.0.2.7 198.51.100.1 1 443 \r\n",      /* trailing space */
        "proxy TCP4 192.0.2.7 198.51.100.1 1 443\r\n",       /* case */
        "PROXY\r\n",
        "PROXYTCP4 192.0.2.7 198.51.100.1 1 443\r\n",
        "GET / HTTP/1.1\r\n",
        "\x16\x03\x01\x02\x00", /* a ClientHello */
    };
    struct proxy_protocol_header h;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (parse(bad[i], strlen(bad[i]), &h) != PROXY_PROTOCOL_ERROR)
            fail_msg("accepted: %s", bad[i]);
    }
}

static void test_v1_too_long(void **state)
{
    char s[200];
    memcpy(s, "PROXY UNKNOWN ", 14);
    memset(s + 14, 'a', sizeof s - 14);
    struct proxy_protocol_header h;
    assert_int_equal(parse(s, 106, &h), PROXY_PROTOCOL_MORE);
    assert_int_equal(parse(s, 107, &h), PROXY_PROTOCOL_ERROR);
    /* exactly 107 with the CRLF is the longest allowed */
    memcpy(s + 105, "\r\n", 2);
    assert_int_equal(parse(s, 107, &h), PROXY_PROTOCOL_DONE);
    assert_int_equal(h.len, 107);
}

/* A v2 header: command, family/protocol, the address block and tlv bytes. */
static size_t v2(uint8_t *out, uint8_t cmd, uint8_t fam, const void *addrs, size_t alen,
                 const void *tlv, size_t tlen)
{
    memcpy(out, sig, 12);
    out[12] = (uint8_t)(0x20 | cmd);
    out[13] = fam;
    size_t len = alen + tlen;
    out[14] = (uint8_t)(len >> 8);
    out[15] = (uint8_t)len;
    if (alen)
        memcpy(out + 16, addrs, alen);
    if (tlen)
        memcpy(out + 16 + alen, tlv, tlen);
    return 16 + len;
}

static void test_v2_inet(void **state)
{
    uint8_t a[12] = {192, 0, 2, 7, 198, 51, 100, 1, 0xdc, 0x04, 0x01, 0xbb};
    uint8_t tlv[] = {0x04, 0x00, 0x02, 'x', 'y', 0x03, 0x00, 0x00}; /* NOOP, CRC of 0 length */
    uint8_t buf[64];
    size_t n = v2(buf, 1, 0x11, a, sizeof a, tlv, sizeof tlv);
    struct proxy_protocol_header h;
    char t[INET6_ADDRSTRLEN];
    assert_done_only_whole(buf, n, &h);
    assert_int_equal(h.version, 2);
    assert_false(h.local);
    assert_string_equal(src_text(&h, t), "192.0.2.7");
    assert_int_equal(ntohs(h.src.in4.sin_port), 0xdc04);
}

static void test_v2_inet6(void **state)
{
    uint8_t a[36] = {0};
    inet_pton(AF_INET6, "2001:db8::5", a);
    inet_pton(AF_INET6, "2001:db8::6", a + 16);
    a[32] = 0x12;
    a[33] = 0x34;
    uint8_t buf[64];
    size_t n = v2(buf, 1, 0x21, a, sizeof a, NULL, 0);
    struct proxy_protocol_header h;
    char t[INET6_ADDRSTRLEN];
    assert_done_only_whole(buf, n, &h);
    assert_string_equal(src_text(&h, t), "2001:db8::5");
    assert_int_equal(ntohs(h.src.in6.sin6_port), 0x1234);
}

static void test_v2_local_and_unspec(void **state)
{
    uint8_t buf[64];
    struct proxy_protocol_header h;
    size_t n = v2(buf, 0, 0x00, NULL, 0, NULL, 0); /* LOCAL: a health check */
    assert_done_only_whole(buf, n, &h);
    assert_true(h.local);
    uint8_t junk[5] = {1, 2, 3, 4, 5}; /* LOCAL: whatever follows is skipped, even no TLV */
    n = v2(buf, 0, 0x11, junk, sizeof junk, NULL, 0);
    assert_int_equal(parse(buf, n, &h), PROXY_PROTOCOL_DONE);
    assert_true(h.local);
    n = v2(buf, 1, 0x00, NULL, 0, NULL, 0); /* PROXY UNSPEC */
    assert_int_equal(parse(buf, n, &h), PROXY_PROTOCOL_DONE);
    assert_true(h.local);
}

static void test_v2_invalid(void **state)
{
    uint8_t a[12] = {192, 0, 2, 7, 198, 51, 100, 1, 0, 1, 0, 2};
    uint8_t buf[64];
    struct proxy_protocol_header h;
    size_t n = v2(buf, 1, 0x11, a, 11, NULL, 0); /* address block too short */
    assert_int_equal(parse(buf, n, &h), PROXY_PROTOCOL_ERROR);
    n = v2(buf, 1, 0x12, a, sizeof a, NULL, 0); /* UDP */
    assert_int_equal(parse(buf, n, &h), PROXY_PROTOCOL_ERROR);
    n = v2(buf, 2, 0x11, a, sizeof a, NULL, 0); /* command 2 */
    assert_int_equal(parse(buf, n, &h), PROXY_PROTOCOL_ERROR);
    n = v2(buf, 1, 0x41, a, sizeof a, NULL, 0); /* family 4 */
    assert_int_equal(parse(buf, n, &h), PROXY_PROTOCOL_ERROR);
    uint8_t tlv[] = {0x04, 0x00, 0x05, 'x'}; /* a TLV longer than the header */
    n = v2(buf, 1, 0x11, a, sizeof a, tlv, sizeof tlv);
    assert_int_equal(parse(buf, n, &h), PROXY_PROTOCOL_ERROR);
    uint8_t tlv2[] = {0x04, 0x00}; /* a truncated TLV header */
    n = v2(buf, 1, 0x11, a, sizeof a, tlv2, sizeof tlv2);
    assert_int_equal(parse(buf, n, &h), PROXY_PROTOCOL_ERROR);
    n = v2(buf, 1, 0x11, a, sizeof a, NULL, 0);
    buf[12] = 0x11; /* version 1 in the binary format */
    assert_int_equal(parse(buf, n, &h), PROXY_PROTOCOL_ERROR);
    n = v2(buf, 1, 0x11, a, sizeof a, NULL, 0);
    buf[7] ^= 1; /* signature */
    assert_int_equal(parse(buf, n, &h), PROXY_PROTOCOL_ERROR);
    assert_int_equal(parse(buf, 7, &h), PROXY_PROTOCOL_MORE);
    assert_int_equal(parse(buf, 8, &h), PROXY_PROTOCOL_ERROR);
}

static void test_v2_too_long(void **state)
{
    uint8_t buf[16];
    struct proxy_protocol_header h;
    memcpy(buf, sig, 12);
    buf[12] = 0x21;
    buf[13] = 0x11;
    buf[14] = (uint8_t)((PROXY_PROTOCOL_MAX - 16 + 1) >> 8);
    buf[15] = (uint8_t)(PROXY_PROTOCOL_MAX - 16 + 1);
    assert_int_equal(parse(buf, 16, &h), PROXY_PROTOCOL_ERROR);
    buf[14] = (uint8_t)((PROXY_PROTOCOL_MAX - 16) >> 8);
    buf[15] = (uint8_t)(PROXY_PROTOCOL_MAX - 16);
    assert_int_equal(parse(buf, 16, &h), PROXY_PROTOCOL_MORE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),     cmocka_unit_test(test_v1_tcp6_and_trailing_bytes),
        cmocka_unit_test(test_v1_unknown),  cmocka_unit_test(test_v1_invalid),
        cmocka_unit_test(test_v1_too_long), cmocka_unit_test(test_v2_inet),
        cmocka_unit_test(test_v2_inet6),    cmocka_unit_test(test_v2_local_and_unspec),
        cmocka_unit_test(test_v2_invalid),  cmocka_unit_test(test_v2_too_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
