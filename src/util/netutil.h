/*
 * netutil: pure helpers over IP addresses, for the identity phase (which peers are
 * trusted proxies) and for logs. No I/O, no allocation, no global state.
 *
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what a dual-stack socket reports for
 * an IPv4 client) are treated as the IPv4 address they carry, both when parsing a
 * CIDR and when matching or printing a client address, so "10.0.0.0/8" matches a
 * client seen as ::ffff:10.1.2.3 and logs show 10.1.2.3.
 */
#ifndef MOAT_NETUTIL_H
#define MOAT_NETUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* Buffer size that fits any address netutil_addr_to_str() writes, NUL included. */
#define NETUTIL_ADDRSTRLEN INET6_ADDRSTRLEN

struct netutil_cidr {
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* network order; the first 4 bytes for AF_INET; host bits zero */
    int prefix;       /* 0..32 or 0..128 */
};

/*
 * Parses "10.0.0.0/8", "192.0.2.7", "fd00::/8", "::1". A bare address is a /32 or
 * /128. Host bits below the prefix are cleared ("10.1.2.3/8" is 10.0.0.0/8, as
 * Python's ipaddress with strict=False). An IPv4-mapped network with a prefix of at
 * least 96 ("::ffff:10.0.0.0/104") becomes the IPv4 network it denotes.
 * Rejects anything else (brackets, zones, ports, spaces, prefix out of range or not
 * plain decimal). Returns 0, or -1 with *out untouched.
 */
int netutil_cidr_parse(const char *s, struct netutil_cidr *out);

/*
 * True if the address in sa (AF_INET or AF_INET6; anything else never matches)
 * falls in any of the n networks. An IPv4-mapped IPv6 client is matched as IPv4
 * only: "::/0" does not match it, "0.0.0.0/0" does.
 */
bool netutil_cidr_match(const struct netutil_cidr *list, size_t n, const struct sockaddr *sa);

/*
 * Writes the IP of sa, without port or scope, into buf ("192.0.2.7", "2001:db8::1";
 * IPv4-mapped shown as IPv4). Returns 0, or -1 with buf set to "" (if len > 0) when
 * the family is not AF_INET/AF_INET6 or buf is too small (NETUTIL_ADDRSTRLEN always
 * fits).
 */
int netutil_addr_to_str(const struct sockaddr *sa, char *buf, size_t len);

/* A numeric IPv4/IPv6 host and a port as a socket address; -1 if host is not numeric. */
int netutil_sockaddr_numeric(const char *host, uint16_t port, struct sockaddr_storage *ss,
                             socklen_t *len);

#endif
