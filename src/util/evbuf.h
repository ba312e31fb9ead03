/*
 * evbuf: moving bytes between libevent buffers the way the TLS output wants them.
 */
#ifndef MOAT_EVBUF_H
#define MOAT_EVBUF_H

#include <stddef.h>

struct evbuffer;

/*
 * Small amounts are copied next to what the output already holds instead of
 * moving their buffer chains: tlsio makes one SSL_write (one TLS record, one
 * write()) per chain, so a small response costs one of each, not two.
 */
#define EVBUF_COALESCE_MAX (16 * 1024)

/* Moves n bytes from in to out (copied below EVBUF_COALESCE_MAX, chains moved above). */
void evbuf_move(struct evbuffer *in, struct evbuffer *out, size_t n);

#endif
