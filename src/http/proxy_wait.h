/*
 * proxy_wait: reads the PROXY protocol header (http/proxy_protocol.h) a trusted
 * load balancer sends on a new connection, before TLS starts on the same socket.
 *
 * Not one byte past the header is consumed: the bytes are peeked (MSG_PEEK),
 * parsed, and only those that certainly belong to the header are read (all of
 * them while the header is incomplete; exactly its length once it is done), so
 * the client's ClientHello stays in the socket for OpenSSL. The owner's timer
 * bounds how long this may take (limits.header_timeout).
 */
#ifndef MOAT_PROXY_WAIT_H
#define MOAT_PROXY_WAIT_H

#include "http/proxy_protocol.h"

struct event_base;
struct proxy_wait;

/* h: the header (NULL on error, EOF or a malformed header; err says why). The
 * callback may free the proxy_wait; nothing touches it afterwards. */
typedef void (*proxy_wait_cb)(void *arg, const struct proxy_protocol_header *h, const char *err);

/* Starts waiting for the header on fd (owned from now on); NULL if out of memory
 * (fd is not closed then). */
struct proxy_wait *proxy_wait_start(struct event_base *base, int fd, proxy_wait_cb cb, void *arg);
/* Frees it and returns its fd, open, for the next owner (TLS). */
int proxy_wait_end(struct proxy_wait *pw);
/* Frees it and closes its fd. */
void proxy_wait_free(struct proxy_wait *pw);

#endif
