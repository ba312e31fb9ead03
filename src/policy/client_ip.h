/*
 * client_ip: which address a request comes from, for the policies and logs that
 * are per client (ip rate limits, header rules without their header, admission
 * fairness, the access log, audit events).
 *
 * It is the connection's peer (the TCP peer, or the client a trusted balancer
 * named in its PROXY header), unless that peer is in identity.trusted_proxies:
 * then it is the rightmost address of X-Forwarded-For that is not a trusted
 * proxy (every X-Forwarded-For field, in order, as one list). Parsing is
 * bounded: at most CLIENT_IP_XFF_SCAN entries are looked at, from the right;
 * when they are all trusted, or an entry is not an address, the leftmost
 * trusted address looked at is the client. Per-connection caps stay on the
 * peer: the header is per request.
 */
#ifndef MOAT_CLIENT_IP_H
#define MOAT_CLIENT_IP_H

#include <stddef.h>

#include "policy/pipeline.h"

#define CLIENT_IP_XFF_SCAN 16

struct netutil_cidr;
struct http1_request;

/*
 * The client IP behind trusted proxies, from the X-Forwarded-For fields of h, into
 * out (at least 46 bytes) as netutil_addr_to_str() writes it. Returns 0, or -1
 * (out untouched) when the list holds no usable address.
 */
int client_ip_from_xff(const struct http1_request *h, const struct netutil_cidr *trusted,
                       size_t num_trusted, char *out, size_t cap);

/* The first phase: sets r->client_ip when the peer is a trusted proxy. */
enum phase_result client_ip_phase(struct request *r);

#endif
