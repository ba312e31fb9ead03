/*
 * request_head: the request head moat forwards upstream, as a pure serializer
 * (no I/O, no allocation). The size is computed exactly first, so the caller
 * can give a buffer of that size, and the writer still checks every byte it
 * puts against the room it was given: a hostile head (256 fields written as
 * "x:v", each forwarded as "x: v", plus a Host line for HTTP/1.0) can never
 * write past the buffer.
 *
 * What is forwarded: "METHOD target HTTP/1.1", a Host line when the client sent
 * none (HTTP/1.0), the client's fields not marked dropped (in order,
 * "Name: value"), moat's own lines, moat's framing (Content-Length or
 * Transfer-Encoding: chunked, from the parsed framing, never from the client's
 * fields) and, for an upgrade, "Connection: Upgrade" and the Upgrade field.
 */
#ifndef MOAT_REQUEST_HEAD_H
#define MOAT_REQUEST_HEAD_H

#include <stddef.h>
#include <stdint.h>

#include "http/http1.h"

struct request_head_spec {
    const struct http1_request *h; /* the parsed client head */
    const uint8_t *drop;           /* per field of h: nonzero = not forwarded */
    const char *host;              /* Host value written when h->host.len == 0 */
    size_t host_len;
    const char *extra; /* complete "Name: value\r\n" lines moat adds */
    size_t extra_len;
    const struct http1_header *upgrade; /* forwarded with Connection: Upgrade, or NULL */
};

/* Exact length of the head request_head_write() produces for s. */
size_t request_head_size(const struct request_head_spec *s);

/*
 * Writes the head into buf (cap bytes). Returns its length, or 0 when it does
 * not fit in cap (no byte at or beyond buf + cap is touched either way).
 */
size_t request_head_write(const struct request_head_spec *s, char *buf, size_t cap);

#endif
