/*
 * admin: the operator listener (loopback or a unix socket, by config validation):
 * /metrics (Prometheus text), /healthz (the process runs), /readyz (200
 * "ready", or 503 "not ready: <reasons>" while draining, while a worker's
 * Redis session client is not connected, or while a routed pool has no
 * server available),
 * /upstreams (pools and servers as JSON) and POST
 * /upstreams/<pool>/<server>/drain|ready (URL-encoded segments; the only
 * POSTs: any other path answers 405 to them).
 * Runs on the main thread's event loop.
 */
#ifndef MOAT_ADMIN_H
#define MOAT_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct config_listen;
struct metrics;
struct snapshot;
struct admin;

struct admin_source {
    struct metrics *const *(*metrics)(void *arg, int *n);
    /* true when ready; else false with the reasons in why ("draining; ...") */
    bool (*ready)(void *arg, char *why, size_t len);
    /* the live generation, borrowed: valid until the main loop runs again */
    struct snapshot *(*snapshot)(void *arg);
    void *arg;
};

/*
 * Listens on listen.admin: a numeric loopback address, or "unix:/path" (a socket
 * file with mode listen.admin_mode, removed again by admin_stop()).
 */
struct admin *admin_start(struct event_base *base, const struct config_listen *l,
                          const struct admin_source *src, char *err, size_t errlen);
void admin_stop(struct admin *a);

#endif
