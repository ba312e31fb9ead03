/*
 * h2_head: an HTTP/2 request head (HPACK-decoded fields) checked against RFC
 * 9113 §8 and rewritten as the HTTP/1.1 head moat's parser, phases and
 * upstreams take. Pure: no session, no socket; h2_stream.c feeds it, the unit
 * tests and the h2_head fuzz target too.
 *
 * nghttp2 checks most of these rules already; moat checks them again, since a
 * miss here is request smuggling across the downgrade.
 */
#ifndef MOAT_H2_HEAD_H
#define MOAT_H2_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define H2_METHOD_MAX 32
#define H2_AUTHORITY_MAX 256

struct h2_head_limits {
    size_t max_header_bytes; /* decoded names + values */
    size_t max_headers;      /* regular fields (cookie crumbs count once) */
};

struct h2_head {
    char method[H2_METHOD_MAX + 1], authority[H2_AUTHORITY_MAX + 1];
    char *path;
    bool has_method, has_scheme, has_authority, has_path;
    bool has_cl;             /* a content-length field */
    bool cl_zero;            /* content-length: 0 */
    struct evbuffer *lines;  /* regular fields as "name: value\r\n" */
    struct evbuffer *cookie; /* crumbs joined with "; " (RFC 9113 §8.2.3) */
    size_t header_bytes, num_fields;
    bool bad; /* refused: bad_status, bad_why */
    int bad_status;
    const char *bad_why;
};

/* 0, or -1 when out of memory. */
int h2_head_init(struct h2_head *h);
void h2_head_clear(struct h2_head *h);
/* One decoded field, in order. A refused head keeps its first reason and stores nothing more. */
void h2_head_field(struct h2_head *h, const struct h2_head_limits *lim, const uint8_t *name,
                   size_t nlen, const uint8_t *value, size_t vlen);
/* The field block is complete: checks what must be there. */
void h2_head_finish(struct h2_head *h);
/*
 * Writes "METHOD path HTTP/1.1", Host, the fields, one Cookie and (chunked: a
 * body without content-length) Transfer-Encoding: chunked into buf. Returns
 * its length, 0 when it does not fit. Consumes the stored fields.
 */
size_t h2_head_compose(struct h2_head *h, bool chunked, char *buf, size_t cap);

#endif
