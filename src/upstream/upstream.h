/*
 * upstream: per-worker connection pools to the upstream servers ("dynos").
 * Balancing (smooth weighted round robin, least requests in flight per weight,
 * or rendezvous hashing on the tenant) over the servers the instance-wide
 * state (upstream_state.h) calls up: active checks, passive marks, outlier
 * ejection with a panic threshold, admin drain, slow start. Keep-alive reuse
 * of idle connections (most recently used first).
 */
#ifndef MOAT_UPSTREAM_H
#define MOAT_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct bufferevent;
struct evbuffer;
struct worker;
struct config;
struct config_upstream;
struct upstream_set;
struct upstream_server;

struct upstream_conn {
    struct bufferevent *bev;
    struct upstream_server *srv;
    struct upstream_conn *next_idle;
    bool reused;    /* came from the idle pool */
    bool connected; /* TCP connect completed */
    unsigned uses;
    uint64_t idle_since; /* mono ms when it went back to the pool */
};

struct snapshot;

/* At most this many servers per pool (config.h UPSTREAM_MAX_SERVERS, validated). */
#define UPSTREAM_MAX_PICK 256

/* What a request asks of the balancer. */
struct upstream_pick {
    const struct upstream_server *skip; /* the server that just failed it, or NULL */
    const char *key;                    /* tenant_hash: the tenant (or client IP) */
    size_t key_len;
    uint64_t *retry_after_ms; /* set when no server is available: how soon one may be */
};

struct upstream_set *upstream_set_new(struct worker *w, const struct snapshot *snap);
void upstream_set_free(struct upstream_set *s);

/*
 * Returns a connection to a server of u: an idle kept-alive one (reused, ready
 * to write) or a new one whose connect is under way (connected == false; the
 * caller's event callback sees BEV_EVENT_CONNECTED or an error, never before this
 * returns). The callbacks are installed before any I/O. NULL when no server
 * is available (*want->retry_after_ms set, never 0) or no socket could be made
 * (left 0).
 */
struct upstream_conn *upstream_acquire(struct upstream_set *s, const struct config_upstream *u,
                                       const struct upstream_pick *want,
                                       void (*readcb)(struct bufferevent *, void *),
                                       void (*writecb)(struct bufferevent *, void *),
                                       void (*eventcb)(struct bufferevent *, short, void *),
                                       void *arg);
/*
 * Sends len bytes at p: straight to the socket when it is plain TCP or unix,
 * connected and nothing is queued, so the bufferevent never asks epoll for write
 * interest; what the socket does not take now (or everything, over TLS) is
 * queued on the bufferevent, which reports errors as usual. 0, or -1 when out
 * of memory.
 */
int upstream_send(struct upstream_conn *uc, const void *p, size_t len);
/* The same for n bytes moved out of src (a request body, a tunnel): a 1 MiB
 * upload otherwise costs two epoll_ctl() and one more wake-up per piece read. */
int upstream_send_from(struct upstream_conn *uc, struct evbuffer *src, size_t n);
/*
 * Reads up to max more bytes the socket already holds into the bufferevent's
 * input, after its read callback ran: libevent 2.1's bufferevent takes at most
 * 4 KiB per readable event (EVBUFFER_MAX_READ), so a 16 KiB response would
 * otherwise cost five wake-ups, each an ioctl(FIONREAD) and a readv(). Plain
 * TCP or unix only (a TLS upstream reads through OpenSSL), and only when the
 * input holds at least such a full read; EOF and errors are left for the
 * bufferevent's next read to report. The bytes read.
 */
size_t upstream_read_more(struct upstream_conn *uc, size_t max);
/* Returns a connection after a complete exchange: pooled if reusable, else closed. */
void upstream_release(struct upstream_conn *uc, bool reusable);
/*
 * Whether an upstream close reported to the event callback (what) was a clean
 * end: a FIN, and over TLS a close_notify. A reset, another error or a TLS close
 * without close_notify may have cut a close-delimited body short.
 */
bool upstream_closed_cleanly(const struct upstream_conn *uc, short what);
/* Marks the server as failing (connect refused or timed out): skipped for 1 s, an error. */
void upstream_mark_failed(struct upstream_conn *uc);
/* The exchange's outcome for outlier ejection: false for a timeout, a close before the
 * response, an invalid response or a 5xx. */
void upstream_outcome(struct upstream_conn *uc, bool ok);
/* Counts a request to u for its retry budget. */
void upstream_count_request(struct upstream_set *s, const struct config_upstream *u);
/* Whether the pool's retry budget allows one more retry (counted when it does). */
bool upstream_take_retry(struct upstream_conn *uc);
const char *upstream_server_addr(const struct upstream_server *srv);
/* A server address as a socket address: numeric, "localhost" or unix:/path; -1 otherwise. */
struct config_addr;
struct sockaddr_storage;
int upstream_resolve(const struct config_addr *a, struct sockaddr_storage *sa, socklen_t *len);
unsigned upstream_num_servers(const struct config_upstream *u);

#endif
