/*
 * h2_conn: HTTP/2 on a client connection whose TLS handshake chose "h2" by
 * ALPN. nghttp2 does the framing, HPACK and flow control; moat's own tlsio
 * carries the bytes. Each stream becomes a request (h2_stream.c) that runs
 * through the same phases as an HTTP/1.1 one. The defences (rapid reset,
 * glitches, floods, timeouts) are here; docs/http2.md lists them.
 *
 * conn.c owns the socket, the TLS stream, the timer and the teardown; it hands
 * every event of an h2 connection to the functions below.
 */
#ifndef MOAT_H2_CONN_H
#define MOAT_H2_CONN_H

#include <stdbool.h>

struct conn;
struct h2_conn;

/* Starts HTTP/2 on a connection (server preface and SETTINGS); -1: out of memory. */
int h2_conn_start(struct conn *c);
/* Ends every stream (their requests logged as abandoned) and frees the session. */
void h2_conn_free(struct h2_conn *h);

void h2_conn_on_read(struct h2_conn *h);
void h2_conn_on_write(struct h2_conn *h);
void h2_conn_on_timer(struct h2_conn *h);
/* Graceful GOAWAY: no new streams, those in flight finish, then the connection closes. */
void h2_conn_drain(struct h2_conn *h);
/* Sends what nghttp2 has queued; called when the connection's last callback returns. */
void h2_conn_flush(struct h2_conn *h);

#endif
