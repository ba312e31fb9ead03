/*
 * conn: one client connection on the HTTPS listener: TLS, reading request
 * heads, timeouts, writing moat-made responses, keep-alive and pipelining.
 * The exchange with the upstream is proxy.c's; the policy decisions are the
 * pipeline's.
 *
 * Lifetime: a connection is freed only at the end of the outermost callback
 * that touches it (conn_enter/conn_leave), so code deep in a call chain can
 * ask for a close without leaving dangling pointers behind.
 */
#ifndef MOAT_CONN_H
#define MOAT_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/event_struct.h>

#include "http/client_stream.h"
#include "http/http1.h"
#include "tls/tlsio.h"

struct config;
struct worker;
struct wgen;
struct request;
struct proxy_wait;

enum conn_state {
    CONN_HANDSHAKE = 0, /* TLS handshake in progress */
    CONN_READ_HEAD,     /* waiting for (the rest of) a request head */
    CONN_BUSY,          /* a request is in the pipeline or being proxied */
    CONN_TUNNEL,        /* upgraded (websocket): bytes relayed both ways */
    CONN_H2,            /* HTTP/2 (ALPN h2): h2_conn.c drives it */
    CONN_CLOSING,       /* flushing the last response, then close */
    CONN_LINGER,        /* response sent and write side shut; discarding what the client
                           still sends so the close does not reset the response away */
    CONN_PROXY_HEADER,  /* from a trusted balancer: reading its PROXY header, before TLS */
};

struct conn {
    struct worker *w;
    struct wgen *gen;
    struct conn *prev, *next;
    struct tlsio io;    /* TLS over the socket, with the input and output buffers */
    struct event timer; /* the one timer: handshake, header, body, idle, linger */
    enum conn_state state;
    int depth;
    bool dead;          /* close requested; freed at depth 0 */
    bool keep_alive;    /* the current exchange allows another request */
    bool idle;          /* between requests with no byte of the next one yet */
    bool linger;        /* the client may still be sending: linger before closing */
    bool out_paused;    /* not reading the next request until the client reads its answers */
    bool tls_ready;     /* io is set up (not while the PROXY header is read) */
    bool peer_admitted; /* counted per IP under peer.addr (else only in the instance total) */
    struct http1_scan scan;
    struct request *req;
    struct h2_conn *h2;    /* CONN_H2: the session and its streams */
    struct proxy_wait *pw; /* CONN_PROXY_HEADER: the header being read */
    unsigned requests;
    size_t head_mark;        /* output length when the response head began */
    uint64_t born_ms;        /* accepted at (monotonic), for limits.max_connection_age */
    uint64_t linger_end_ms;  /* LINGER: the latest close, however long the client sends */
    struct client_peer peer; /* address, TLS version and cipher, mTLS subject */
};

const char *conn_state_str(enum conn_state st);

/* Takes ownership of an accepted socket; never fails loudly (closes on error). */
void conn_accept(struct worker *w, int fd, const struct sockaddr *sa, int salen);

/* Asks for the connection to be closed now (output is discarded). */
void conn_abort(struct conn *c);

/* Drain: close if idle, else close after the current response. */
void conn_drain(struct conn *c);
/* A new config is live: a tunnel whose route it removed gets its drain deadline. */
void conn_reloaded(struct conn *c, const struct config *cfg);

/* For http/h2_conn.c: keep the connection across a callback (every hold has one
 * release; the last release of an h2 connection sends what its streams queued). */
void conn_hold(struct conn *c);
void conn_release(struct conn *c);
/* Arms the connection's one timer. */
void conn_arm_timer(struct conn *c, uint64_t ms);
/* Input is discarded from now on; the connection closes once its output is sent. */
void conn_close_after_flush(struct conn *c);

#endif
