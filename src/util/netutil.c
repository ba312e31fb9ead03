/*
 * netutil: CIDR parsing and matching, address printing. See netutil.h.
 */
#include "util/netutil.h"

#include <arpa/inet.h>
#include <string.h>

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool is_v4mapped(const uint8_t a[16])
{
    return memcmp(a, v4mapped_prefix, sizeof v4mapped_prefix) == 0;
}

/* Parses 1..3 decimal digits (the whole of s) into *out, at most max. */
static int parse_prefix(const char *s, int max, int *out)
{
    int v = 0;
    size_t n = 0;

    for (; s[n] != '\0'; n++) {
        if (s[n] < '0' || s[n] > '9' || n == 3)
            return -1;
        v = v * 10 + (s[n] - '0');
    }
    if (n == 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Clears every bit of addr below prefix (addr holds nbytes bytes). */
static void mask_host_bits(uint8_t *addr, size_t nbytes, int prefix)
{
    for (size_t i = 0; i < nbytes; i++) {
        int keep = prefix - (int)i * 8;
        if (keep >= 8)
            continue;
        addr[i] &= keep <= 0 ? 0 : (uint8_t)(0xff << (8 - keep));
    }
}

int netutil_cidr_parse(const char *s, struct netutil_cidr *out)
{
    char host[INET6_ADDRSTRLEN];
    struct netutil_cidr c;
    const char *slash;
    size_t hlen;

    if (s == NULL)
        return -1;
    slash = strchr(s, '/');
    hlen = slash ? (size_t)(slash - s) : strlen(s);
    if (hlen == 0 || hlen >= sizeof host)
        return -1;
    memcpy(host, s, hlen);
    host[hlen] = '\0';

    memset(&c, 0, sizeof c);
    if (inet_pton(AF_INET, host, c.addr) == 1) {
        c.family = AF_INET;
        c.prefix = 32;
    } else if (inet_pton(AF_INET6, host, c.addr) == 1) {
        c.family = AF_INET6;
        c.prefix = 128;
    } else {
        return -1;
    }
    if (slash && parse_prefix(slash + 1, c.prefix, &c.prefix) != 0)
        return -1;

    /* Clients on a dual-stack socket are matched as IPv4: store mapped networks so. */
    if (c.family == AF_INET6 && c.prefix >= 96 && is_v4mapped(c.addr)) {
        memmove(c.addr, c.addr + 12, 4);
        memset(c.addr + 4, 0, 12);
        c.family = AF_INET;
        c.prefix -= 96;
    }
    mask_host_bits(c.addr, c.family == AF_INET ? 4 : 16, c.prefix);
    *out = c;
    return 0;
}

/*
 * Extracts the family and address bytes of sa, unmapping IPv4-mapped IPv6.
 * Returns the family, or AF_UNSPEC if sa is not an IP address.
 */
static int sockaddr_ip(const struct sockaddr *sa, uint8_t addr[16])
{
    if (sa == NULL)
        return AF_UNSPEC;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        memcpy(addr, &sin->sin_addr, 4);
        return AF_INET;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        memcpy(addr, &sin6->sin6_addr, 16);
        if (is_v4mapped(addr)) {
            memmove(addr, addr + 12, 4);
            return AF_INET;
        }
        return AF_INET6;
    }
    return AF_UNSPEC;
}

static bool cidr_contains(const struct netutil_cidr *c, int family, const uint8_t addr[16])
{
    int full = c->prefix / 8, rest = c->prefix % 8;

    if (c->family != family)
        return false;
    if (memcmp(c->addr, addr, (size_t)full) != 0)
        return false;
    if (rest == 0)
        return true;
    return ((c->addr[full] ^ addr[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

bool netutil_cidr_match(const struct netutil_cidr *list, size_t n, const struct sockaddr *sa)
{
    uint8_t addr[16];
    int family = sockaddr_ip(sa, addr);

    if (family == AF_UNSPEC)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (cidr_contains(&list[i], family, addr))
            return true;
    }
    return false;
}

int netutil_addr_to_str(const struct sockaddr *sa, char *buf, size_t len)
{
    uint8_t addr[16];
    int family = sockaddr_ip(sa, addr);

    /* inet_ntop never needs more than INET6_ADDRSTRLEN; clamping keeps the cast exact. */
    socklen_t blen = len > INET6_ADDRSTRLEN ? INET6_ADDRSTRLEN : (socklen_t)len;

    if (buf == NULL || len == 0)
        return -1;
    if (family == AF_UNSPEC || inet_ntop(family, addr, buf, blen) == NULL) {
        buf[0] = '\0';
        return -1;
    }
    return 0;
}

int netutil_sockaddr_numeric(const char *host, uint16_t port, struct sockaddr_storage *ss,
                             socklen_t *len)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof *ss);
    if (host && inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        *len = sizeof *in4;
        return 0;
    }
    if (host && inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        *len = sizeof *in6;
        return 0;
    }
    return -1;
}
