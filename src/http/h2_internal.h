/*
 * h2_internal: what h2_conn.c (the session) and h2_stream.c (a stream as a
 * request's client side) share. Not for use outside src/http/h2_*.c.
 */
#ifndef MOAT_H2_INTERNAL_H
#define MOAT_H2_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event_struct.h>
#include <nghttp2/nghttp2.h>

#include "http/h2_head.h"

struct conn;
struct config;
struct evbuffer;
struct request;

struct h2_stream {
    struct h2_conn *hc;
    struct h2_stream *prev, *next; /* hc->streams */
    struct h2_stream *ready_next;  /* hc->ready: head complete, phases not started yet */
    int32_t id;
    int refs;         /* holds (client_stream hold/release) */
    bool closed;      /* nghttp2 is done with it (or the connection is) */
    bool ready;       /* on hc->ready */
    bool has_body;    /* HEADERS came without END_STREAM */
    bool wait_end;    /* not started until END_STREAM (content-length 0 without it) */
    bool chunked;     /* no content-length: the body is handed over chunk-framed */
    bool in_done;     /* END_STREAM received */
    bool in_trailers; /* a second HEADERS (trailers): not forwarded */
    bool submitted;   /* response HEADERS submitted */
    bool out_eof;     /* the response payload is complete */
    bool deferred;    /* the data source is waiting for payload */
    bool resp_done;   /* END_STREAM sent */
    bool finished;    /* the exchange is over (response queued, request logged) */
    bool throttled;   /* output above out_high: the proxy stopped reading the upstream */
    struct request *r;
    struct wgen *gen;    /* the generation the request runs on (config, upstream pools) */
    struct h2_head head; /* the head being received */
    /* the body both ways */
    struct evbuffer *body_in; /* request payload for the proxy */
    uint64_t unconsumed;      /* DATA bytes received and not yet handed on (flow control) */
    struct evbuffer *out;     /* response payload waiting to go out as DATA */
    struct event timer;       /* the request's timer (body timeout) */
};

struct h2_conn {
    struct conn *c;
    nghttp2_session *s;
    struct h2_stream *streams;
    struct h2_stream *ready, *ready_tail;
    size_t num_streams;
    size_t glitches;         /* resets and protocol errors charged to this connection */
    unsigned started;        /* requests started in this read */
    struct evbuffer *fields; /* a response head's field lines (reused) */
    struct event kick;       /* deferred: readable/drained streams, more input */
    bool goaway;             /* GOAWAY sent: no new streams */
    bool closing;            /* the connection is ending */
    bool flushing;
    bool settings_acked;
    uint64_t settings_ms; /* our SETTINGS went out at */
    uint64_t progress_ms; /* last time output moved (or there was none to move) */
    uint64_t active_ms;   /* last time a stream existed or a frame arrived */
};

const struct config *h2_cfg(const struct h2_conn *hc);

/* Streams (h2_stream.c) */
struct h2_stream *h2_stream_new(struct h2_conn *hc, int32_t id);
/* A field of the head (or of trailers, ignored); 0, or an nghttp2 error to reset the stream. */
int h2_stream_header(struct h2_stream *st, const uint8_t *name, size_t nlen, const uint8_t *value,
                     size_t vlen);
/* The head is complete (END_HEADERS): builds the request; queued to start. */
void h2_stream_head_done(struct h2_stream *st, bool end_stream);
/* Runs the phases of a queued stream (or answers a refused head). */
void h2_stream_start(struct h2_stream *st);
void h2_stream_data(struct h2_stream *st, const uint8_t *data, size_t len);
void h2_stream_end_in(struct h2_stream *st);
/* nghttp2 closed the stream; error_code from the client's RST_STREAM or ours. */
void h2_stream_closed(struct h2_stream *st, uint32_t error_code);
/* The connection is going: ends the stream's request now. */
void h2_stream_kill(struct h2_stream *st);
/* Deferred notifications to the proxy (from the kick event). */
void h2_stream_kick(struct h2_stream *st);
/* Frees the stream if nobody holds it and nghttp2 is done with it. */
void h2_stream_maybe_free(struct h2_stream *st);
/* The response data source (NO_COPY): how much can go into the next DATA frame. */
ssize_t h2_stream_data_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *arg);
/* Writes a DATA frame: header then payload moved from the stream's output. */
int h2_stream_send_data(struct h2_stream *st, struct evbuffer *out, const uint8_t *framehd,
                        size_t length);

/* Session (h2_conn.c) */
/* A reset or protocol error charged to the connection (and its IP, and tenant when known). */
void h2_conn_glitch(struct h2_conn *hc, const char *why, const char *tenant);
void h2_conn_refund(struct h2_conn *hc);
void h2_conn_schedule(struct h2_conn *hc);
void h2_conn_hold(struct h2_conn *hc);
void h2_conn_release(struct h2_conn *hc);

#endif
