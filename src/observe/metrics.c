#include "observe/metrics.h"

#include <event2/buffer.h>

static const struct {
    const char *name;
    const char *type;
    const char *help;
} metric_info[M_COUNT] = {
    [M_CONN_ACCEPTED] = {"moat_connections_accepted_total", "counter",
                         "Client connections accepted"},
    [M_CONN_ACTIVE] = {"moat_connections_active", "gauge", "Client connections open now"},
    [M_CONN_REFUSED] = {"moat_connections_refused_total", "counter",
                        "Connections closed by connection limits"},
    [M_TLS_HANDSHAKE_FAIL] = {"moat_tls_handshake_failures_total", "counter",
                              "Failed TLS handshakes"},
    [M_REQUESTS] = {"moat_requests_total", "counter", "Requests parsed"},
    [M_RESP_1XX] = {"moat_responses_1xx_total", "counter", "Responses with status 1xx"},
    [M_RESP_2XX] = {"moat_responses_2xx_total", "counter", "Responses with status 2xx"},
    [M_RESP_3XX] = {"moat_responses_3xx_total", "counter", "Responses with status 3xx"},
    [M_RESP_4XX] = {"moat_responses_4xx_total", "counter", "Responses with status 4xx"},
    [M_RESP_5XX] = {"moat_responses_5xx_total", "counter", "Responses with status 5xx"},
    [M_BYTES_IN] = {"moat_client_bytes_in_total", "counter", "Bytes received from clients"},
    [M_BYTES_OUT] = {"moat_client_bytes_out_total", "counter", "Bytes sent to clients"},
    [M_UPSTREAM_CONNECT] = {"moat_upstream_connects_total", "counter", "New upstream connections"},
    [M_UPSTREAM_REUSE] = {"moat_upstream_reuses_total", "counter",
                          "Requests sent on a kept-alive upstream connection"},
    [M_UPSTREAM_ERROR] = {"moat_upstream_errors_total", "counter",
                          "Upstream connect or protocol errors (502)"},
    [M_UPSTREAM_TIMEOUT] = {"moat_upstream_timeouts_total", "counter", "Upstream timeouts (504)"},
    [M_REDIRECTS] = {"moat_redirects_total", "counter", "Plain-HTTP requests redirected to HTTPS"},
    [M_BAD_REQUESTS] = {"moat_bad_requests_total", "counter", "Requests refused as malformed"},
    [M_AUTH_REJECTED] = {"moat_auth_rejected_total", "counter",
                         "Requests refused by session authentication"},
    [M_AUTH_CACHE_HIT] = {"moat_auth_cache_hits_total", "counter",
                          "Session decisions served from the worker cache"},
    [M_AUTH_REDIS_ERROR] = {"moat_auth_redis_errors_total", "counter",
                            "Session lookups failed closed because of Redis"},
    [M_RATELIMITED] = {"moat_ratelimited_total", "counter", "Requests refused by rate limits"},
    [M_RL_GLOBAL_DECISIONS] = {"moat_ratelimit_global_decisions_total", "counter",
                               "Global rate-limit decisions made by Redis"},
    [M_RL_GLOBAL_CALLS] =
        {"moat_ratelimit_global_calls_total", "counter",
         "Redis script calls for global rate limits (requests for one key share a call)"},
    [M_RL_STORE_FALLBACK] =
        {"moat_ratelimit_store_fallbacks_total", "counter",
         "Global rate-limit decisions made by on_store_error (Redis unavailable)"},
    [M_BUFFERED_BYTES] = {"moat_buffered_bytes", "gauge",
                          "Bytes buffered for client connections (received not yet processed, and "
                          "responses not yet sent)"},
    [M_SHED_MEMORY] = {"moat_requests_shed_memory_total", "counter",
                       "Requests answered 503 because buffered bytes passed limits.max_memory"},
    [M_H2_CONNECTIONS] = {"moat_h2_connections_total", "counter",
                          "Client connections that chose HTTP/2 (ALPN h2)"},
    [M_H2_STREAMS] = {"moat_h2_streams_total", "counter", "HTTP/2 streams opened by clients"},
    [M_H2_RESETS_RECEIVED] = {"moat_h2_resets_received_total", "counter",
                              "RST_STREAM frames received from HTTP/2 clients"},
    [M_H2_GLITCHES] = {"moat_h2_glitches_total", "counter",
                       "HTTP/2 resets and protocol errors charged to connections"},
    [M_H2_CALM_GOAWAYS] = {"moat_h2_calm_goaways_total", "counter",
                           "HTTP/2 connections ended with GOAWAY(ENHANCE_YOUR_CALM)"},
    [M_REDIS_FAILOVERS] = {"moat_redis_failovers_total", "counter",
                           "Redis master address changes seen through the sentinels (per worker, "
                           "summed)"},
    [M_REDIS_SENTINEL_QUERIES] = {"moat_redis_sentinel_queries_total", "counter",
                                  "SENTINEL get-master-addr-by-name queries sent"},
    [M_REDIS_CLUSTER_MOVED] =
        {"moat_redis_cluster_moved_total", "counter",
         "Redis Cluster -MOVED redirects received (sessions and rate limits)"},
    [M_REDIS_CLUSTER_ASK] = {"moat_redis_cluster_ask_total", "counter",
                             "Redis Cluster -ASK redirects received (sessions and rate limits)"},
    [M_REDIS_CLUSTER_REFRESHES] = {"moat_redis_cluster_refreshes_total", "counter",
                                   "Redis Cluster slot maps received (CLUSTER SLOTS)"},
};

void metrics_count_status(struct metrics *m, int status)
{
    int cls = status / 100;
    if (cls >= 1 && cls <= 5)
        metrics_inc(m, (enum metric)(M_RESP_1XX + cls - 1));
}

void metrics_render(struct evbuffer *out, struct metrics *const *sets, int n)
{
    for (int k = 0; k < M_COUNT; k++) {
        uint64_t sum = 0;
        for (int i = 0; i < n; i++)
            sum += atomic_load_explicit(&sets[i]->v[k], memory_order_relaxed);
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", metric_info[k].name,
                            metric_info[k].help, metric_info[k].name, metric_info[k].type,
                            metric_info[k].name, (unsigned long long)sum);
    }
}

void metrics_label_value(struct evbuffer *out, const char *v)
{
    const char *start = v;
    for (; *v; v++) {
        const char *esc = *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : *v == '\n' ? "\\n" : NULL;
        if (!esc)
            continue;
        evbuffer_add(out, start, (size_t)(v - start));
        evbuffer_add(out, esc, 2);
        start = v + 1;
    }
    evbuffer_add(out, start, (size_t)(v - start));
}
