/*
 * metrics: counters kept per worker (single writer, so increments are plain
 * relaxed loads and stores: no locked instructions on the request path) and
 * summed by the admin listener when /metrics is scraped (docs/metrics.md).
 *
 * Labels have bounded values: fixed enums here, or config values (routes,
 * pools, rules) through the slots of metrics_registry.h.
 */
#ifndef MOAT_METRICS_H
#define MOAT_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "observe/histogram.h"
#include "observe/metrics_registry.h"

struct evbuffer;
struct snapshot;

/* Unlabelled families (metrics.c names them). */
enum metric {
    M_CONN_ACCEPTED = 0,
    M_CONN_ACTIVE, /* gauge */
    M_CONN_REFUSED,
    M_REQUESTS,
    M_BYTES_IN,
    M_BYTES_OUT,
    M_UPSTREAM_CONNECT,
    M_UPSTREAM_REUSE,
    M_UPSTREAM_ERROR,
    M_UPSTREAM_TIMEOUT,
    M_REDIRECTS,
    M_BAD_REQUESTS,
    M_AUTH_CACHE_HIT,
    M_RL_GLOBAL_DECISIONS,
    M_RL_GLOBAL_CALLS,
    M_RL_STORE_FALLBACK,
    M_BUFFERED_BYTES, /* gauge: bytes in client connection buffers (tlsio) */
    M_SHED_MEMORY,
    M_H2_CONNECTIONS,
    M_H2_STREAMS,
    M_H2_RESETS_RECEIVED,
    M_H2_GLITCHES,
    M_H2_CALM_GOAWAYS,
    M_REDIS_FAILOVERS,
    M_REDIS_SENTINEL_QUERIES,
    M_REDIS_CLUSTER_MOVED,
    M_REDIS_CLUSTER_ASK,
    M_REDIS_CLUSTER_REFRESHES,
    M_COUNT
};

#define METRICS_CODE_CLASSES 5 /* 1xx .. 5xx */
enum metrics_protocol { MP_HTTP1 = 0, MP_H2, MP_COUNT };

/* moat_tls_handshake_failures_total{reason} */
enum metrics_tls_fail {
    TF_EOF = 0,          /* the client closed the connection */
    TF_TIMEOUT,          /* no handshake within limits.header_timeout */
    TF_PROTOCOL_VERSION, /* no common TLS version */
    TF_NO_SHARED_CIPHER, /* no common cipher suite or group */
    TF_HTTP_REQUEST,     /* plain HTTP sent to the TLS port */
    TF_CLIENT_CERT,      /* mTLS: missing or unverifiable client certificate */
    TF_ALERT,            /* the client sent a fatal alert (e.g. unknown_ca) */
    TF_PROTOCOL_ERROR,   /* any other TLS protocol error */
    TF_OTHER,            /* I/O errors, resources */
    TF_COUNT
};

#define METRICS_TLS_VERSIONS 3 /* TLSv1.2, TLSv1.3, other */
#define METRICS_TLS_CIPHERS 15 /* metrics_tls.c's table + "other" */

/* moat_auth_results_total{result,reason} */
enum metrics_auth_result { AR_ACCEPTED = 0, AR_ANONYMOUS, AR_REJECTED, AR_ERROR, AR_COUNT };
/* the session_status values (policy/session.h), then the store's failure */
enum metrics_auth_reason {
    AN_OK = 0,
    AN_MISSING,
    AN_MALFORMED,
    AN_UNKNOWN,
    AN_EXPIRED,
    AN_INVALID,
    AN_MFA,
    AN_STORE_UNAVAILABLE,
    AN_COUNT
};

/* moat_ratelimit_decisions_total{rule,result} */
enum metrics_rl_result { RLR_ALLOWED = 0, RLR_REJECTED, RLR_ERROR, RLR_COUNT };

/* moat_redis_connected{role}, moat_redis_command_duration_seconds{role} */
enum metrics_redis_role { RR_SESSIONS = 0, RR_RATELIMIT, RR_COUNT };

struct metrics {
    _Atomic uint64_t v[M_COUNT];
    _Atomic uint64_t http[METRICS_SLOT_ALL][MP_COUNT][METRICS_CODE_CLASSES];
    struct hist request_seconds[METRICS_SLOT_ALL];  /* per route slot */
    struct hist upstream_seconds[METRICS_SLOT_ALL]; /* per pool slot */
    _Atomic uint64_t ratelimit[METRICS_SLOT_ALL][RLR_COUNT];
    _Atomic uint64_t tls_ok[METRICS_TLS_VERSIONS][METRICS_TLS_CIPHERS];
    _Atomic uint64_t tls_fail[TF_COUNT];
    _Atomic uint64_t auth[AR_COUNT][AN_COUNT];
    _Atomic uint64_t redis_clients[RR_COUNT];   /* gauge: 0 or 1, the client exists */
    _Atomic uint64_t redis_connected[RR_COUNT]; /* gauge: 0 or 1 */
    struct hist redis_seconds[RR_COUNT];
};

static inline void metrics_add(struct metrics *m, enum metric k, int64_t d)
{
    hist_bump(&m->v[k], (uint64_t)d);
}

static inline void metrics_inc(struct metrics *m, enum metric k)
{
    metrics_add(m, k, 1);
}

/*
 * One answered request: moat_http_requests_total and, with its duration from
 * the head's arrival, moat_request_duration_seconds.
 */
static inline void metrics_request(struct metrics *m, uint16_t route_slot, bool h2, int status,
                                   uint64_t us)
{
    unsigned cls = (unsigned)(status / 100) - 1;
    if (cls < METRICS_CODE_CLASSES)
        hist_bump(&m->http[route_slot][h2 ? MP_H2 : MP_HTTP1][cls], 1);
    hist_observe(&m->request_seconds[route_slot], &hist_bounds_http, us);
}

/* A response without a route nor a duration (the plain-HTTP redirect listener). */
static inline void metrics_count_status(struct metrics *m, int status)
{
    unsigned cls = (unsigned)(status / 100) - 1;
    if (cls < METRICS_CODE_CLASSES)
        hist_bump(&m->http[METRICS_SLOT_NONE][MP_HTTP1][cls], 1);
}

/* An upstream response head arrived us after the request was admitted to the pool. */
static inline void metrics_upstream_head(struct metrics *m, uint16_t pool_slot, uint64_t us)
{
    hist_observe(&m->upstream_seconds[pool_slot], &hist_bounds_http, us);
}

static inline void metrics_auth(struct metrics *m, enum metrics_auth_result res,
                                enum metrics_auth_reason why)
{
    hist_bump(&m->auth[res][why], 1);
}

static inline void metrics_ratelimit(struct metrics *m, uint16_t rule_slot,
                                     enum metrics_rl_result res)
{
    hist_bump(&m->ratelimit[rule_slot][res], 1);
}

static inline void metrics_tls_failed(struct metrics *m, enum metrics_tls_fail why)
{
    hist_bump(&m->tls_fail[why], 1);
}

/* This worker has a Redis client of role (on creation), or no more (on free). */
static inline void metrics_redis_client(struct metrics *m, enum metrics_redis_role role, bool has)
{
    atomic_store_explicit(&m->redis_clients[role], has, memory_order_relaxed);
    if (!has)
        atomic_store_explicit(&m->redis_connected[role], false, memory_order_relaxed);
}

static inline void metrics_redis_connected(struct metrics *m, enum metrics_redis_role role, bool up)
{
    atomic_store_explicit(&m->redis_connected[role], up, memory_order_relaxed);
}

static inline void metrics_redis_latency(struct metrics *m, enum metrics_redis_role role,
                                         uint64_t us)
{
    hist_observe(&m->redis_seconds[role], &hist_bounds_redis, us);
}

/*
 * The main thread's reload(): records its outcome for moat_config_reloads_total
 * and, on success, moat_config_last_reload_success_timestamp_seconds. generation:
 * the one serving afterwards (moat_config_generation when no snapshot is given).
 */
void metrics_reload_result(bool ok, uint64_t generation);

/*
 * Writes every family moat renders itself: the sum of the n per-worker sets,
 * the config and TLS families of the live snapshot snap (may be NULL),
 * build_info and process_*.
 */
void metrics_render(struct evbuffer *out, struct metrics *const *sets, int n,
                    const struct snapshot *snap);
/* The sum over n per-worker sets of the counter at offset off in struct metrics. */
uint64_t metrics_sum_at(struct metrics *const *sets, int n, size_t off);
/* The same for a member: METRICS_SUM(sets, n, auth[r][k]). */
#define METRICS_SUM(sets, n, member) metrics_sum_at(sets, n, offsetof(struct metrics, member))
/* "# HELP name help\n# TYPE name type\n" */
void metrics_family(struct evbuffer *out, const char *name, const char *type, const char *help);
/*
 * Appends v as a label value of the text format, without the quotes: backslash,
 * double quote and newline escaped (\\, \", \n), every other byte as is.
 */
void metrics_label_value(struct evbuffer *out, const char *v);
/* The same into buf (always terminated, cut at len - 1 bytes); returns the length. */
size_t metrics_label_value_buf(char *buf, size_t len, const char *v);

#endif
