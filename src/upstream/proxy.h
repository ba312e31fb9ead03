/*
 * proxy: the exchange between a request and an upstream connection: writing
 * the rewritten request head, streaming the request body (Content-Length or
 * chunked, re-framed by moat so both sides agree on where it ends), reading
 * the response head, streaming the response back (re-framed likewise), and
 * tunnelling an upgraded (websocket) connection. Backpressure in both
 * directions through watermarks (the upstream bufferevent, the client tlsio).
 */
#ifndef MOAT_PROXY_H
#define MOAT_PROXY_H

#include <stdint.h>

struct request;
struct conn;

/* Starts forwarding a request that passed every phase. */
void proxy_start(struct request *r);
/* Client bytes arrived while the request is being proxied. */
void proxy_client_readable(struct request *r);
/*
 * A reload removed the route of r: if r is a tunnel (WebSocket), it is closed
 * drain_ms from now (limits.tunnel_drain_timeout) unless it ends before.
 */
void proxy_route_gone(struct request *r, uint64_t drain_ms);
/* The client's output drained: resume reading the upstream. */
void proxy_client_drained(struct request *r);
/* Tears down the upstream side of r (connection closed, not pooled). */
void proxy_abort(struct request *r);

#endif
