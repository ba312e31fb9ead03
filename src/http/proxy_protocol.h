/*
 * proxy_protocol: the PROXY protocol header (HAProxy's spec, versions 1 and 2) a
 * load balancer sends before the client's bytes, naming the client it accepted.
 * A pure parser: bytes in, "need more / done (header length, address) / error"
 * out, no I/O, resumable at any byte (call again with everything received so
 * far). The connection side (http/conn_proxy.c) reads and consumes the header.
 *
 * - v1: "PROXY TCP4|TCP6 src dst sport dport\r\n" or "PROXY UNKNOWN ...\r\n",
 *   at most 107 bytes with the CRLF.
 * - v2: the 12-byte signature, version 2, LOCAL or PROXY, family, a 16-bit
 *   length, addresses, then TLVs (walked for well-formedness, otherwise ignored);
 *   at most PROXY_PROTOCOL_MAX bytes in all.
 * A v1 UNKNOWN, a v2 LOCAL (the balancer's own health check) and a v2 PROXY of
 * family UNSPEC or UNIX carry no client address: `local` is set, the TCP peer
 * stays the client.
 */
#ifndef MOAT_PROXY_PROTOCOL_H
#define MOAT_PROXY_PROTOCOL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PROXY_PROTOCOL_V1_MAX 107
#define PROXY_PROTOCOL_MAX 1024 /* v2: 16-byte fixed part + addresses + TLVs */

enum proxy_protocol_result {
    PROXY_PROTOCOL_MORE = 0, /* a valid beginning: call again with more bytes */
    PROXY_PROTOCOL_DONE,
    PROXY_PROTOCOL_ERROR,
};

struct proxy_protocol_header {
    size_t len; /* bytes of the header: the client's own bytes start after them */
    int version;
    bool local; /* no client address in it: keep the TCP peer */
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } src; /* the client (family AF_INET or AF_INET6) unless local */
};

/*
 * Parses the n bytes received so far. DONE fills *out; ERROR sets *err to a
 * static reason (also when the first bytes already cannot begin a header, e.g.
 * a TLS ClientHello). MORE never happens with n >= PROXY_PROTOCOL_MAX.
 */
enum proxy_protocol_result proxy_protocol_parse(const uint8_t *p, size_t n,
                                                struct proxy_protocol_header *out,
                                                const char **err);

#endif
