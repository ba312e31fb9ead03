/*
 * Unit tests for src/netutil: CIDR parsing and matching (IPv4, IPv6, IPv4-mapped
 * clients), address printing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <sys/un.h>

#include <cmocka.h>

#include "util/netutil.h"

/* Builds a sockaddr for an address literal (v4 or v6). */
static const struct sockaddr *sa_of(const char *ip, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(4711);
    } else {
        assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(4711);
    }
    return (const struct sockaddr *)ss;
}

static bool in(const char *cidr, const char *ip)
{
    struct netutil_cidr c;
    struct sockaddr_storage ss;
    assert_int_equal(netutil_cidr_parse(cidr, &c), 0);
    return netutil_cidr_match(&c, 1, sa_of(ip, &ss));
}

static void test_parse(void **state)
{
    struct netutil_cidr c;

    assert_int_equal(netutil_cidr_parse("10.0.0.0/8", &c), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    assert_memory_equal(c.addr, "\x0a\0\0\0", 4);

    assert_int_equal(netutil_cidr_parse("192.0.2.7", &c), 0);
    assert_int_equal(c.prefix, 32);

    assert_int_equal(netutil_cidr_parse("::1", &c), 0);
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(c.prefix, 128);

    assert_int_equal(netutil_cidr_parse("fd00::/8", &c), 0);
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(c.prefix, 8);
    assert_int_equal(c.addr[0], 0xfd);

    /* Host bits are cleared. */
    assert_int_equal(netutil_cidr_parse("10.1.2.3/12", &c), 0);
    assert_memory_equal(c.addr, "\x0a\x00\0\0", 4);
    assert_int_equal(netutil_cidr_parse("10.31.2.3/12", &c), 0);
    assert_memory_equal(c.addr, "\x0a\x10\0\0", 4);

    /* An IPv4-mapped network becomes the IPv4 network. */
    assert_int_equal(netutil_cidr_parse("::ffff:10.0.0.0/104", &c), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    assert_int_equal(netutil_cidr_parse("::ffff:192.0.2.7", &c), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 32);

    /* Edges. */
    assert_int_equal(netutil_cidr_parse("0.0.0.0/0", &c), 0);
    assert_int_equal(netutil_cidr_parse("::/0", &c), 0);
    assert_int_equal(netutil_cidr_parse("2001:db8::/128", &c), 0);
}

static void test_parse_rejects(void **state)
{
    const char *bad[] = {
        "",
        "/8",
        "10.0.0.0/",
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/-1",
        "10.0.0.0/+8",
        "10.0.0.0/8 ",
        " 10.0.0.0/8",
        "10.0.0/8",
        "10.0.0.0/8/8",
        "10.0.0.0/1000",
        "[::1]",
        "[::1]/128",
        "fe80::1%eth0",
        "10.0.0.1:80",
        "localhost",
        "10.0.0.0/ 8",
        "1.2.3.4.5",
        "010.0.0.1",
        "::ffff:10.0.0.0/95x",
        "1111:2222:3333:4444:5555:6666:7777:8888:9999/64",
    };
    struct netutil_cidr c = {.family = 99};

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (netutil_cidr_parse(bad[i], &c) == 0)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    assert_int_equal(c.family, 99); /* untouched */
    assert_int_equal(netutil_cidr_parse(NULL, &c), -1);
}

static void test_match_v4(void **state)
{
    assert_true(in("10.0.0.0/8", "10.255.1.2"));
    assert_false(in("10.0.0.0/8", "11.0.0.1"));
    assert_true(in("192.168.0.0/23", "192.168.1.255"));
    assert_false(in("192.168.0.0/23", "192.168.2.0"));
    assert_true(in("192.0.2.7", "192.0.2.7"));
    assert_false(in("192.0.2.7", "192.0.2.6"));
    assert_true(in("0.0.0.0/0", "203.0.113.9"));
    assert_true(in("172.16.0.0/12", "172.31.255.255"));
    assert_false(in("172.16.0.0/12", "172.32.0.0"));
    /* Families do not mix. */
    assert_false(in("10.0.0.0/8", "::a00:1"));
    assert_false(in("::/0", "10.0.0.1"));
}

static void test_match_v6(void **state)
{
    assert_true(in("::1", "::1"));
    assert_false(in("::1", "::2"));
    assert_true(in("fd00::/8", "fd12:3456::1"));
    assert_false(in("fd00::/8", "fe80::1"));
    assert_true(in("2001:db8::/33", "2001:db8:7fff::1"));
    assert_false(in("2001:db8::/33", "2001:db8:8000::1"));
    assert_true(in("::/0", "2001:db8::1"));
}

static void test_match_v4mapped_client(void **state)
{
    /* What a dual-stack socket reports for an IPv4 client. */
    assert_true(in("10.0.0.0/8", "::ffff:10.1.2.3"));
    assert_false(in("10.0.0.0/8", "::ffff:11.1.2.3"));
    assert_true(in("127.0.0.1", "::ffff:127.0.0.1"));
    assert_true(in("::ffff:10.0.0.0/104", "10.9.9.9"));
    assert_true(in("::ffff:10.0.0.0/104", "::ffff:10.9.9.9"));
    assert_true(in("0.0.0.0/0", "::ffff:1.2.3.4"));
    /* Matched as IPv4 only. */
    assert_false(in("::/0", "::ffff:1.2.3.4"));
    /* The deprecated IPv4-compatible form is not IPv4-mapped. */
    assert_false(in("10.0.0.0/8", "::10.1.2.3"));
}

static void test_match_list(void **state)
{
    struct netutil_cidr list[3];
    struct sockaddr_storage ss;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};

    assert_int_equal(netutil_cidr_parse("10.0.0.0/8", &list[0]), 0);
    assert_int_equal(netutil_cidr_parse("fd00::/8", &list[1]), 0);
    assert_int_equal(netutil_cidr_parse("192.0.2.1", &list[2]), 0);
    assert_true(netutil_cidr_match(list, 3, sa_of("192.0.2.1", &ss)));
    assert_true(netutil_cidr_match(list, 3, sa_of("fd01::1", &ss)));
    assert_true(netutil_cidr_match(list, 3, sa_of("::ffff:10.0.0.1", &ss)));
    assert_false(netutil_cidr_match(list, 3, sa_of("192.0.2.2", &ss)));
    assert_false(netutil_cidr_match(list, 0, sa_of("10.0.0.1", &ss)));
    assert_false(netutil_cidr_match(list, 3, (struct sockaddr *)&sun));
    assert_false(netutil_cidr_match(list, 3, NULL));
}

static void test_addr_to_str(void **state)
{
    struct sockaddr_storage ss;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    char buf[NETUTIL_ADDRSTRLEN];

    assert_int_equal(netutil_addr_to_str(sa_of("192.0.2.7", &ss), buf, sizeof buf), 0);
    assert_string_equal(buf, "192.0.2.7");
    assert_int_equal(netutil_addr_to_str(sa_of("2001:DB8:0:0::1", &ss), buf, sizeof buf), 0);
    assert_string_equal(buf, "2001:db8::1");
    assert_int_equal(netutil_addr_to_str(sa_of("::ffff:10.1.2.3", &ss), buf, sizeof buf), 0);
    assert_string_equal(buf, "10.1.2.3");
    assert_int_equal(
        netutil_addr_to_str(sa_of("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", &ss), buf, sizeof buf),
        0);
    assert_string_equal(buf, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    assert_int_equal(
        netutil_addr_to_str(sa_of("1111:2222:3333:4444:5555:6666:255.255.255.255", &ss), buf,
                            sizeof buf),
        0);
    assert_string_equal(buf, "1111:2222:3333:4444:5555:6666:ffff:ffff");

    /* Too small, not IP, NULL. */
    assert_int_equal(netutil_addr_to_str(sa_of("192.0.2.7", &ss), buf, 9), -1);
    assert_string_equal(buf, "");
    assert_int_equal(netutil_addr_to_str(sa_of("192.0.2.7", &ss), buf, 10), 0);
    assert_int_equal(netutil_addr_to_str((struct sockaddr *)&sun, buf, sizeof buf), -1);
    assert_string_equal(buf, "");
    assert_int_equal(netutil_addr_to_str(NULL, buf, sizeof buf), -1);
    assert_int_equal(netutil_addr_to_str(sa_of("192.0.2.7", &ss), NULL, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_match_v4),
        cmocka_unit_test(test_match_v6),
        cmocka_unit_test(test_match_v4mapped_client),
        cmocka_unit_test(test_match_list),
        cmocka_unit_test(test_addr_to_str),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
