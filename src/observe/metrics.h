/*
 * metrics: counters kept per worker (single writer, so increments are plain
 * relaxed loads and stores: no locked instructions on the request path) and
 * summed by the admin listener when /metrics is scraped.
 */
#ifndef MOAT_METRICS_H
#define MOAT_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

struct evbuffer;

enum metric {
    M_CONN_ACCEPTED = 0,
    M_CONN_ACTIVE, /* gauge */
    M_CONN_REFUSED,
    M_TLS_HANDSHAKE_FAIL,
    M_REQUESTS,
    M_RESP_1XX,
    M_RESP_2XX,
    M_RESP_3XX,
    M_RESP_4XX,
    M_RESP_5XX,
    M_BYTES_IN,
    M_BYTES_OUT,
    M_UPSTREAM_CONNECT,
    M_UPSTREAM_REUSE,
    M_UPSTREAM_ERROR,
    M_UPSTREAM_TIMEOUT,
    M_REDIRECTS,
    M_BAD_REQUESTS,
    M_AUTH_REJECTED,
    M_AUTH_CACHE_HIT,
    M_AUTH_REDIS_ERROR,
    M_RATELIMITED,
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

struct metrics {
    _Atomic uint64_t v[M_COUNT];
};

static inline void metrics_add(struct metrics *m, enum metric k, int64_t d)
{
    uint64_t cur = atomic_load_explicit(&m->v[k], memory_order_relaxed);
    atomic_store_explicit(&m->v[k], cur + (uint64_t)d, memory_order_relaxed);
}

static inline void metrics_inc(struct metrics *m, enum metric k)
{
    metrics_add(m, k, 1);
}

void metrics_count_status(struct metrics *m, int status);
/* Writes the Prometheus text exposition of the sum of n per-worker sets. */
void metrics_render(struct evbuffer *out, struct metrics *const *sets, int n);
/*
 * Appends v as a label value of the text format, without the quotes: backslash,
 * double quote and newline escaped (\\, \", \n), every other byte as is.
 */
void metrics_label_value(struct evbuffer *out, const char *v);

#endif
