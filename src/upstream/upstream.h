/*
 * upstream: per-worker connection pools to the upstream servers ("dynos").
 * Balancing (round robin or least connections), keep-alive reuse of idle
 * connections (most recently used first), a short passive "down" mark after
 * a connect failure so the next request tries another server.
 */
#ifndef MOAT_UPSTREAM_H
#define MOAT_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

struct bufferevent;
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
};

struct snapshot;

struct upstream_set *upstream_set_new(struct worker *w, const struct snapshot *snap);
void upstream_set_free(struct upstream_set *s);

/*
 * Returns a connection to a server of u: an idle kept-alive one (reused, ready
 * to write) or a new one whose connect is under way (connected == false; the
 * caller's event callback sees BEV_EVENT_CONNECTED or an error, never before this
 * returns). The callbacks are installed before any I/O. skip: a
 * server to avoid (the one that just failed), or NULL. NULL when no socket
 * could be made at all.
 */
struct upstream_conn *upstream_acquire(struct upstream_set *s, const struct config_upstream *u,
                                       const struct upstream_server *skip,
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
/* Returns a connection after a complete exchange: pooled if reusable, else closed. */
void upstream_release(struct upstream_conn *uc, bool reusable);
/*
 * Whether an upstream close reported to the event callback (what) was a clean
 * end: a FIN, and over TLS a close_notify. A reset, another error or a TLS close
 * without close_notify may have cut a close-delimited body short.
 */
bool upstream_closed_cleanly(const struct upstream_conn *uc, short what);
/* Marks the server as failing (connect refused or timed out). */
void upstream_mark_failed(struct upstream_conn *uc);
const char *upstream_server_addr(const struct upstream_server *srv);
unsigned upstream_num_servers(const struct config_upstream *u);

#endif
