/*
 * worker: one thread with its own event_base, its own listening sockets
 * (SO_REUSEPORT), its own upstream keep-alive pools and its own Redis client.
 * Nothing on the request path is shared with other workers except read-only
 * snapshots, the instance-wide rate-limit table and atomic counters.
 *
 * The main thread talks to a worker only through its mailbox (a mutex-guarded
 * slot plus an event made active from the main thread): "use this snapshot",
 * "listen on / close / let go of this socket" (reload, see listener_set.h) and
 * "drain and stop".
 */
#ifndef MOAT_WORKER_H
#define MOAT_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "core/listener_set.h"
#include "core/services.h"
#include "http/request.h"
#include "observe/log.h"
#include "observe/metrics.h"

struct event_base;
struct event;
struct evconnlistener;
struct snapshot;
struct conn;
struct request;
struct upstream_set;
struct redis_client;
struct auth_cache;
struct revocation;
struct rl_global;

/*
 * A worker's view of one snapshot: the shared snapshot plus this worker's
 * upstream pools built for it. Connections hold a reference to the generation
 * they were accepted on. Only the worker thread touches refs.
 */
struct wgen {
    int refs;
    struct worker *w;
    struct snapshot *snap;
    struct upstream_set *ups;
};

/* One listening socket of a worker; fd is closed by the worker unless let go. */
struct wlisten {
    struct listen_fd lf;
    struct evconnlistener *lev; /* NULL until the worker listens on it */
};

/* Listener changes a reload asks of a worker. */
enum wl_op {
    WL_ADD,     /* listen on lf.fd too (the worker owns it from now on) */
    WL_CLOSE,   /* stop listening on lf.fd and close it (a removed address) */
    WL_RELEASE, /* stop listening on lf.fd without closing it: another worker took it */
};

struct wl_cmd {
    struct wl_cmd *next;
    enum wl_op op;
    struct listen_fd lf;
};

struct worker {
    int id;
    pthread_t thread;
    struct event_base *base;
    struct wgen *gen; /* current generation, for new connections */

    struct wlisten *ls; /* its listening sockets (several per address after a shrink) */
    size_t num_ls, cap_ls;

    struct event *wake;
    pthread_mutex_t mbox_lock;
    struct snapshot *mbox_snap;
    struct wl_cmd *mbox_cmds, **mbox_cmds_tail; /* listener changes, in order */
    atomic_bool mbox_has_snap; /* mbox_snap is set: read without the lock per request */
    bool mbox_stop;
    bool mbox_handover; /* the stop is a hand-over: connections in handshake are finished */
    atomic_bool exited; /* its loop has returned: the main thread may join it */

    struct conn *conns; /* all client connections, for drain */
    size_t num_conns;
    bool draining;
    struct event *drain_timer;
    struct event *tick; /* 100 ms housekeeping: log flush, memory trim */
    unsigned churn;     /* connections opened or closed since the last malloc_trim() */
    unsigned churn_at_tick, ticks_since_trim;

    uint64_t buffered_published; /* M_BUFFERED_BYTES as last added to the instance total */

    struct request_pool reqs; /* recycled requests */

    uint64_t rng[2];
    uint64_t seq;
    struct log_buffer access;
    struct metrics metrics;

    struct services svc; /* Redis, session cache, revocation, global rate limits */
};

/*
 * Creates a worker on the given listening sockets (owned by the worker after
 * this call, closed by it also when this fails) using the snapshot (a reference
 * is taken). Does not start it.
 */
struct worker *worker_new(int id, struct snapshot *snap, const struct listen_fd *fds, size_t n,
                          char *err, size_t errlen);
int worker_start(struct worker *w);
/* From the main thread: publish a new snapshot / ask for drain + stop. */
void worker_post_snapshot(struct worker *w, struct snapshot *snap);
void worker_post_stop(struct worker *w);
/*
 * Drain and stop for a hand-over (a binary upgrade, a worker removed by a reload):
 * another worker or process accepts from the same sockets, so the connections this
 * one accepted are all served (a TLS handshake in progress is finished and its first
 * request answered, Connection: close) instead of closed as a shutdown does.
 */
void worker_post_handover(struct worker *w);
/* From the main thread: a listener change (applied in the order posted, before a stop). */
void worker_post_listen(struct worker *w, enum wl_op op, const struct listen_fd *lf);
void worker_join_and_free(struct worker *w);
/* From the main thread: the worker's loop has ended (drained or timed out). */
bool worker_exited(struct worker *w);

struct wgen *wgen_ref(struct wgen *g);
void wgen_unref(struct wgen *g);

/* Fills out with a fresh 32-hex-digit request id (unique, not secret). */
void worker_request_id(struct worker *w, char out[33]);

/*
 * Applies a snapshot the main thread has published but the wake event has not
 * delivered yet, so that a request starting after a reload was announced runs
 * on it. Called between requests; costs one atomic load when there is none.
 */
void worker_catch_up(struct worker *w);

/* Called by conn when a connection ends, so drain can finish. */
void worker_conn_closed(struct worker *w);

#endif
