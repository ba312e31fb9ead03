/*
 * request: one HTTP request/response exchange on a client connection, from the
 * parsed head to the last byte of the response. Objects are recycled through a
 * per-worker free list so the hot path does not call malloc, and an idle
 * keep-alive connection holds none.
 */
#ifndef MOAT_REQUEST_H
#define MOAT_REQUEST_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "http/client_stream.h"
#include "http/http1.h"
#include "policy/ratelimit_state.h"
#include "policy/session_identity.h"
#include "upstream/proxy_state.h"

struct config;
struct config_route;
struct config_upstream;
struct upstream_conn;
struct upstream_set;
struct admission_ticket;
struct snapshot;
struct services;

#define REQUEST_ID_LEN 32
#define REQUEST_ADD_HEADERS_MAX 2048

/* Flags per received header, set by phases that decide what is forwarded. */
enum request_hflag {
    HFLAG_DROP = 1 << 0,
};

struct request {
    /* Kept while the request waits on its pool's free list: the head buffer and
     * the parser's header table (filled by the parser, never read beyond
     * h.num_headers). request_new() clears everything from `stream` on. */
    struct request *next_free;
    char *head_buf; /* the head as received, owned copy; h's views point into it */
    size_t head_cap;
    struct http1_request h;
    uint8_t hflags[HTTP1_MAX_HEADERS_CAP];

    /* the client side that carries it (an HTTP/1 connection, an HTTP/2 stream) */
    void *stream;
    const struct client_stream_ops *ops;
    const struct client_peer *peer;
    /* the client behind trusted proxies (policy/client_ip.c); "": the peer is the client */
    char client_ip[48];
    /* the generation it runs on (config, keys, upstream pools) and the worker's services */
    const struct snapshot *snap;
    const struct config *cfg; /* snap->cfg */
    struct upstream_set *ups;
    struct services *svc;

    size_t head_len;
    char id[REQUEST_ID_LEN + 1];
    /* W3C trace-id, lowercase hex (policy/trace.c); "" until the trace phase ran */
    char trace_id[33];
    unsigned phase; /* index of the next phase to run */
    bool suspended;

    const struct config_route *route;
    const struct config_upstream *upstream;
    uint64_t tunnel_deadline_ms; /* mono_ms() a tunnel closes at (its route went away); 0: none */
    struct session_identity ident;
    void *pending; /* an outstanding async operation (e.g. redis) */
    void (*cancel_pending)(struct request *);
    struct admission_ticket *adm; /* its place in the pool's admission (upstream/admission.c) */
    uint64_t auth_epoch;          /* auth_cache epoch when the session lookup started */

    struct ratelimit_state rl; /* ratelimit.c's */

    /* headers to append to the forwarded head: "Name: value\r\n" lines */
    char add_headers[REQUEST_ADD_HEADERS_MAX];
    size_t add_len;
    /* headers to append to the response to the client */
    char resp_headers[512];
    size_t resp_headers_len;

    /* proxy state (proxy.c) */
    struct upstream_conn *uc;
    unsigned attempts;
    enum proxy_state px;
    bool req_body_done;            /* whole request body read from the client (or none) */
    bool close_after;              /* framing makes the connection unusable afterwards */
    bool up_keep_alive;            /* the upstream allows reusing its connection */
    bool resp_started;             /* at least one response byte queued to the client */
    enum http1_body_kind resp_in;  /* framing of the upstream response body */
    enum http1_body_kind resp_out; /* framing towards an HTTP/1 client (http1_response.c) */
    uint64_t req_remaining;
    uint64_t resp_remaining;
    struct http1_chunked req_chunk;
    struct http1_chunked resp_chunk;
    struct http1_scan resp_scan;
    int resp_status;

    /* accounting for the access log */
    struct timespec t_start;
    struct timespec t_upstream_start;
    double upstream_ms;
    uint64_t bytes_in;      /* head + body bytes from the client */
    uint64_t bytes_out;     /* bytes written to the client */
    uint64_t body_received; /* request body payload bytes so far */
    int status;
    const char *error; /* short reason for a moat-made response */
    char upstream_addr[64];
    bool logged;
};

/* A worker's recycled requests: the hot path does not call malloc. */
struct request_pool {
    struct request *free;
    size_t num_free;
};

/* A cleared request with a head buffer of at least head_cap bytes, or NULL. */
struct request *request_new(struct request_pool *pool, size_t head_cap);
void request_free(struct request_pool *pool, struct request *r);
void request_pool_clear(struct request_pool *pool);
/* Frees kept requests beyond `keep` (~20 KiB each): after a burst, the worker's housekeeping. */
void request_pool_trim(struct request_pool *pool, size_t keep);

/* The head is parsed into r->h: clears the per-header flags (kept storage) for its headers.
 * Every client stream calls it before the phases run. */
void request_head_parsed(struct request *r);

/* Appends "name: value\r\n" to the forwarded extra headers; -1 if it does not fit. */
int request_add_header(struct request *r, const char *name, const char *value, size_t vlen);
/* Appends complete "Name: value\r\n" lines to the response headers moat adds; -1 if they do not
 * fit. */
int request_add_response_lines(struct request *r, const char *lines);

/* Milliseconds between two monotonic timestamps. */
double request_ms_between(const struct timespec *a, const struct timespec *b);

/* "HTTP/2", "HTTP/1.1" or "HTTP/1.0": for the access log and audit events. */
static inline const char *request_protocol(const struct request *r)
{
    if (r->peer->h2)
        return "HTTP/2";
    return r->h.minor_version == 0 && r->h.method.len ? "HTTP/1.0" : "HTTP/1.1";
}

/* The client's IP for per-client policies and logs (policy/client_ip.h). */
static inline const char *request_client_ip(const struct request *r)
{
    return r->client_ip[0] ? r->client_ip : r->peer->ip;
}

/* The client side, through the request (client_stream.h says what each does). */
static inline void request_respond(struct request *r, int status, const char *extra,
                                   const char *body, bool close)
{
    r->ops->respond(r->stream, status, extra, body, close);
}
static inline struct evbuffer *request_head_begin(struct request *r, const struct response_head *h)
{
    return r->ops->head_begin(r->stream, h);
}
static inline void request_head_end(struct request *r, const struct response_head *h)
{
    r->ops->head_end(r->stream, h);
}
static inline void request_body(struct request *r, struct evbuffer *src, size_t n)
{
    r->ops->body(r->stream, src, n);
}
static inline void request_body_end(struct request *r)
{
    r->ops->body_end(r->stream);
}
static inline void request_continue_100(struct request *r)
{
    r->ops->continue_100(r->stream);
}
static inline struct evbuffer *request_body_in(const struct request *r)
{
    return r->ops->body_in(r->stream);
}
static inline struct evbuffer *request_out(const struct request *r)
{
    return r->ops->out(r->stream);
}
static inline size_t request_out_high(const struct request *r)
{
    return r->ops->out_high(r->stream);
}
static inline void request_set_reading(struct request *r, bool on)
{
    r->ops->set_reading(r->stream, on);
}
static inline void request_arm_timer(struct request *r, uint64_t ms)
{
    r->ops->arm_timer(r->stream, ms);
}
static inline bool request_stream_ending(const struct request *r)
{
    return r->ops->ending(r->stream);
}
static inline void request_tunnel(struct request *r)
{
    r->ops->tunnel(r->stream);
}
static inline void request_done(struct request *r)
{
    r->ops->done(r->stream);
}
static inline void request_abort(struct request *r)
{
    r->ops->abort(r->stream);
}
/*
 * A callback that may end the exchange brackets its work with request_hold()
 * and stream_release(): the request may be recycled in between, the stream
 * stays until the release.
 */
struct stream_hold {
    const struct client_stream_ops *ops;
    void *stream;
};
static inline struct stream_hold request_hold(struct request *r)
{
    r->ops->hold(r->stream);
    return (struct stream_hold){r->ops, r->stream};
}
static inline void stream_release(struct stream_hold h)
{
    h.ops->release(h.stream);
}

#endif
