/*
 * upstream_state: what the whole instance knows about each upstream pool and
 * server, shared by every worker, the health checker and the admin listener:
 * active-check verdicts, passive marks and outlier ejections, admin drain,
 * requests in flight, the retry budget.
 *
 * Entries are keyed by pool name and server address and reference counted by
 * the snapshots that name them, so an ejection or a drain survives a reload
 * that keeps the server, and an entry goes when no generation names it. The
 * hot path only reads and bumps atomics; the registry mutex is taken when a
 * snapshot is built or freed.
 */
#ifndef MOAT_UPSTREAM_STATE_H
#define MOAT_UPSTREAM_STATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct config_upstream;

enum check_result {
    CHECK_NONE = 0, /* not probed yet (or no active checks) */
    CHECK_PASSED,
    CHECK_BAD_STATUS,
    CHECK_CONNECT_FAILED,
    CHECK_TIMEOUT,
    CHECK_INVALID, /* not an HTTP response */
};

struct server_state {
    struct server_state *next; /* registry list */
    unsigned refs;             /* under the registry mutex */
    char pool[72];
    char addr[160];

    atomic_bool check_down;         /* active checks say down */
    atomic_bool draining;           /* admin drain: no new requests */
    _Atomic uint64_t failed_until;  /* a connect failed: skipped until (mono ms) */
    _Atomic uint64_t ejected_until; /* outlier ejection ends (mono ms) */
    _Atomic uint64_t up_since;      /* slow start ramps from here (mono ms; 0: never) */
    atomic_uint consecutive_errors; /* passive: errors in a row */
    atomic_uint ejections;          /* in a row: the ejection time multiplier */
    _Atomic uint64_t ejections_total;
    atomic_int in_flight; /* requests on this server, all workers */

    /* active checks: written by the checker (main thread) only */
    unsigned check_streak;        /* passes (when down) or failures (when up) in a row */
    atomic_int last_check;        /* enum check_result */
    atomic_int last_check_status; /* the HTTP status of the last probe, 0 if none */
    _Atomic uint64_t last_check_at;
    _Atomic uint64_t checks_passed, checks_failed;
};

struct pool_state {
    struct pool_state *next;
    unsigned refs;
    char name[72];
    /* retry budget: requests and retries over two half-windows */
    _Atomic uint64_t window_start;
    _Atomic uint64_t requests[2], retries[2];
    _Atomic uint64_t retries_total, retries_denied_total, all_down_total;
    struct admission *admission; /* upstream/admission.c; NULL: no admission limits */
};

/* One generation's view: per pool of cfg->upstreams, its state and its servers'. */
struct upstream_states {
    size_t num_pools;
    struct pool_state **pools;
    struct server_state ***servers; /* [pool][server], as cfg->upstreams[i].servers[k] */
};

/* Takes references on the entries cfg names (creating them); NULL when out of memory. */
struct upstream_states *upstream_states_acquire(const struct config *cfg);
void upstream_states_release(struct upstream_states *us);

enum server_avail {
    AVAIL_UP = 0,
    AVAIL_EJECTED,  /* outlier: skipped unless the pool panics */
    AVAIL_FAILED,   /* a connect failed just now */
    AVAIL_DOWN,     /* active checks */
    AVAIL_DRAINING, /* admin */
};
enum server_avail server_state_avail(const struct server_state *s, uint64_t now);
const char *server_avail_str(enum server_avail a);

/* The server's weight now: its configured weight, ramped over slow_start_ms after it came back. */
unsigned server_state_weight(const struct server_state *s, unsigned weight, uint64_t slow_start_ms,
                             uint64_t now);

/* A connect to the server failed: skip it for a short while. */
void server_state_connect_failed(struct server_state *s, uint64_t now);
/*
 * The outcome of an exchange, for outlier ejection: ok false for a connect error,
 * a timeout, a close before the response, or a 5xx. peers: the pool's servers in
 * the caller's generation (the ejected share is counted over them). Returns true
 * when this call ejected the server.
 */
bool server_state_outcome(struct server_state *s, const struct config_upstream *u,
                          struct server_state *const *peers, bool ok, uint64_t now);
/*
 * An active check's verdict (the checker calls it once per probe). Applies
 * rise/fall and returns true when the server's checked state changed (the
 * caller logs it: once per change, not per probe).
 */
bool server_state_check(struct server_state *s, const struct config_upstream *u,
                        enum check_result res, int status, uint64_t now);
const char *check_result_str(enum check_result r);

/* Counts a request to the pool for the retry budget. */
void pool_state_count_request(struct pool_state *p, const struct config_upstream *u, uint64_t now);
/* Whether one more retry fits the pool's budget; counts it when it does. */
bool pool_state_take_retry(struct pool_state *p, const struct config_upstream *u, uint64_t now);

#endif
