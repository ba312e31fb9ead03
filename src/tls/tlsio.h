/*
 * tlsio: a server-side TLS stream on one socket, driven by libevent, with an
 * input and an output evbuffer. It replaces libevent's bufferevent_openssl for
 * client connections (docs/benchmarks.md, "Idle memory"):
 *
 * - It lives inside the connection, and its two evbuffers exist only while
 *   there is something to read or write: ~1.1 KiB less per idle connection
 *   than bufferevent_openssl.
 * - Writes are started with event_active(), not by registering write interest
 *   with epoll; EV_WRITE is only registered when a write would block. A small
 *   response therefore costs no epoll_ctl() at all.
 * - Plaintext OpenSSL has already decrypted is read without waiting for the
 *   socket (libevent 2.1 would stall on it when reading resumes).
 *
 * Semantics follow the bufferevent ones conn.c was written against:
 * - read: called after new bytes were added to the input (or after
 *   tlsio_trigger_read()); reading pauses while the input holds read_high bytes
 *   or more and resumes by itself when the owner drains it below.
 * - write: called after a write left the output at write_low bytes or fewer.
 * - event: TLSIO_CONNECTED once the handshake is done; TLSIO_EOF (the peer
 *   closed, with or without close_notify) or TLSIO_ERROR, after which the
 *   stream is stopped.
 * Callbacks may end the owner: every handler calls ops->hold(arg) first and
 * ops->release(arg) last, and the owner calls tlsio_stop() when it gives up on
 * the stream inside a callback (nothing more is done with it after that).
 */
#ifndef MOAT_TLSIO_H
#define MOAT_TLSIO_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/ssl.h>

struct evbuffer;

enum { TLSIO_CONNECTED = 1, TLSIO_EOF = 2, TLSIO_ERROR = 4 };

struct tlsio_ops {
    void (*read)(void *arg);
    void (*write)(void *arg);
    void (*event)(void *arg, int what);
    void (*hold)(void *arg);
    void (*release)(void *arg);
};

struct tlsio {
    struct event ev; /* the socket, for reading and/or writing (one event: 128 bytes each) */
    SSL *ssl;
    int fd;
    struct evbuffer *in, *out;
    const struct tlsio_ops *ops;
    void *arg;
    _Atomic uint64_t *acct; /* bytes in both buffers are added here (NULL: not counted) */
    size_t read_high;       /* 0: no limit */
    size_t write_low;
    bool reading; /* the owner wants input */
    bool handshaking;
    bool stopped;
    bool hs_wants_write;   /* the handshake waits for the socket to be writable */
    bool read_wants_write; /* SSL_read needs the socket writable (a TLS 1.3 KeyUpdate reply) */
    bool write_wants_read;
    bool write_blocked; /* SSL_write said WANT_WRITE: wait for writable */
    bool write_more;    /* more records follow the one being written (MSG_MORE) */
    bool force_read_cb;
    bool idle_release; /* free the buffers once the output has drained */
    short registered;  /* EV_READ | EV_WRITE: what epoll watches */
    short activated;   /* run from the loop without I/O (event_active) */
};

/*
 * Takes ownership of fd and ssl (server side, accept state set) and starts the
 * handshake. Returns 0, or -1 (nothing is owned then: the caller closes both).
 */
int tlsio_init(struct tlsio *t, struct event_base *base, int fd, SSL *ssl,
               const struct tlsio_ops *ops, void *arg);
/* Frees everything (fd closed, SSL freed); no callback runs after this. */
void tlsio_cleanup(struct tlsio *t);
/* No more I/O and no more callbacks; the owner frees it later with tlsio_cleanup(). */
void tlsio_stop(struct tlsio *t);

/* The buffers, made on first use; NULL only when out of memory. */
struct evbuffer *tlsio_input(struct tlsio *t);
struct evbuffer *tlsio_output(struct tlsio *t);
/* Lengths without making the buffers. */
size_t tlsio_input_len(const struct tlsio *t);
size_t tlsio_output_len(const struct tlsio *t);
/* Between requests: frees both buffers if they are empty (made again when needed). */
void tlsio_idle(struct tlsio *t);
static inline SSL *tlsio_ssl(const struct tlsio *t)
{
    return t->ssl;
}
static inline int tlsio_fd(const struct tlsio *t)
{
    return t->fd;
}
static inline bool tlsio_reading(const struct tlsio *t)
{
    return t->reading;
}

void tlsio_set_reading(struct tlsio *t, bool on);
void tlsio_set_read_high(struct tlsio *t, size_t high);
void tlsio_set_write_low(struct tlsio *t, size_t low);
/*
 * Counts the bytes held in both buffers into *counter (single writer: the
 * thread that drives the stream; readers load it relaxed), kept exact as the
 * buffers grow, shrink and are freed. Set before the first byte is buffered.
 */
void tlsio_set_accounting(struct tlsio *t, _Atomic uint64_t *counter);
/* Runs the read callback from the event loop soon, even if nothing new arrives. */
void tlsio_trigger_read(struct tlsio *t);

#endif
