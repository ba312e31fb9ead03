/*
 * client_stream: what a request needs from the client side that carries it,
 * whatever the protocol. The HTTP/1 connection (conn.c) implements it today;
 * an HTTP/2 stream implements the same operations. Phases and the upstream
 * exchange call these through the request (request.h's request_* helpers) and
 * never see the connection.
 *
 * Every operation takes the stream's own context (request->stream). A stream
 * outlives every callback that holds it (hold/release), so a phase waiting for
 * Redis can ask for it back safely even if the client went away meanwhile.
 */
#ifndef MOAT_CLIENT_STREAM_H
#define MOAT_CLIENT_STREAM_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "http/response_head.h"

struct evbuffer;

/* Who is on the other end. Owned by the connection; valid while a request lives. */
struct client_peer {
    union { /* the listeners are TCP: no sockaddr_storage (100 bytes more per connection) */
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } addr;
    char ip[48];
    bool h2;                 /* the connection speaks HTTP/2 */
    const char *tls_version; /* OpenSSL's static names, set once the handshake is done */
    const char *tls_cipher;
    const char *sni;      /* the server name the client asked for ("-": none); the SSL's */
    char *client_subject; /* verified mTLS client certificate subject, or NULL */
};

struct client_stream_ops {
    /* Answers the request with a moat-made response; close: no further request. */
    void (*respond)(void *s, int status, const char *extra, const char *body, bool close);
    /*
     * An upstream response, in the stream's protocol: head_begin returns where the
     * proxy appends the head's "Name: value\r\n" field lines (NULL: this client
     * cannot receive such a response), head_end frames and queues the head. body
     * moves n payload bytes from src, body_end says the payload is complete.
     */
    struct evbuffer *(*head_begin)(void *s, const struct response_head *h);
    void (*head_end)(void *s, const struct response_head *h);
    void (*body)(void *s, struct evbuffer *src, size_t n);
    void (*body_end)(void *s);
    /* An interim "100 Continue": the client may send the body it holds back. */
    void (*continue_100)(void *s);
    /* Request body bytes received (read side) and response bytes queued (write side). */
    struct evbuffer *(*body_in)(void *s);
    struct evbuffer *(*out)(void *s);
    /* Above this many pending output bytes, the side feeding it pauses. */
    size_t (*out_high)(const void *s);
    /* Whether received body bytes are handed over (flow control towards the client). */
    void (*set_reading)(void *s, bool on);
    /* The stream's one timer (body, idle); 0 disarms it. */
    void (*arm_timer)(void *s, uint64_t ms);
    /* True when the stream will not carry another request (drain, close asked). */
    bool (*ending)(const void *s);
    /* After a 101: bytes are relayed both ways until either side closes. */
    void (*tunnel)(void *s);
    /* The response is fully queued: the exchange is over. */
    void (*done)(void *s);
    /* Ends the stream now; queued output is discarded. */
    void (*abort)(void *s);
    /* Keep the stream alive across a callback (every hold has one release). */
    void (*hold)(void *s);
    void (*release)(void *s);
};

#endif
