/*
 * http1_response: the HTTP/1 side of an upstream response: status line,
 * framing (Content-Length, re-chunking, close-delimited for HTTP/1.0) and the
 * Connection header, written into the connection's output. The connection's
 * client stream operations call these; the proxy never frames.
 */
#ifndef MOAT_HTTP1_RESPONSE_H
#define MOAT_HTTP1_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

#include "http/response_head.h"

struct evbuffer;
struct request;

/*
 * Chooses the framing towards the client and writes the status line. ending:
 * no request follows on this connection. Returns false when an HTTP/1.0 client
 * cannot receive the response (a transfer coding it has no way to be told of).
 */
bool http1_response_begin(struct request *r, struct evbuffer *out, const struct response_head *h,
                          bool ending);
/* After the field lines: framing, Connection, end of head. */
void http1_response_end(struct request *r, struct evbuffer *out, const struct response_head *h);
/* Moves n payload bytes from src, framed; returns the bytes written. */
size_t http1_response_body(struct request *r, struct evbuffer *out, struct evbuffer *src, size_t n);
/* The payload is complete: the last chunk when re-chunking. Returns the bytes written. */
size_t http1_response_body_end(struct request *r, struct evbuffer *out);

#endif
