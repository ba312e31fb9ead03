#include "observe/metrics.h"

#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "core/snapshot.h"
#include "observe/metrics_families.h"
#include "observe/metrics_process.h"
#include "observe/metrics_tls.h"

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
    [M_REQUESTS] = {"moat_requests_received_total", "counter",
                    "Request heads parsed (answered or not; see moat_http_requests_total)"},
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
    [M_AUTH_CACHE_HIT] = {"moat_auth_cache_hits_total", "counter",
                          "Session decisions served from the worker cache"},
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

/* Written by the main thread only (reload), read by it too (admin). */
static struct {
    _Atomic uint64_t ok, failed, last_ok_s, generation;
} reloads;

void metrics_reload_result(bool ok, uint64_t generation)
{
    atomic_store(&reloads.generation, generation);
    if (!ok) {
        atomic_fetch_add(&reloads.failed, 1);
        return;
    }
    atomic_fetch_add(&reloads.ok, 1);
    atomic_store(&reloads.last_ok_s, (uint64_t)time(NULL));
}

uint64_t metrics_sum_at(struct metrics *const *sets, int n, size_t off)
{
    uint64_t sum = 0;
    for (int i = 0; i < n; i++)
        sum += atomic_load_explicit((const _Atomic uint64_t *)((const char *)sets[i] + off),
                                    memory_order_relaxed);
    return sum;
}

void metrics_family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_plain(struct evbuffer *out, struct metrics *const *sets, int n)
{
    for (int k = 0; k < M_COUNT; k++) {
        uint64_t sum = METRICS_SUM(sets, n, v[k]);
        metrics_family(out, metric_info[k].name, metric_info[k].type, metric_info[k].help);
        evbuffer_add_printf(out, "%s %llu\n", metric_info[k].name, (unsigned long long)sum);
    }
}

static void render_config(struct evbuffer *out, const struct snapshot *snap)
{
    metrics_family(out, "moat_config_generation", "gauge",
                   "Generation of the live configuration (1 at start, +1 per successful reload)");
    uint64_t gen = snap ? snap->generation : atomic_load(&reloads.generation);
    evbuffer_add_printf(out, "moat_config_generation %llu\n", (unsigned long long)gen);
    metrics_family(out, "moat_config_reloads_total", "counter", "Configuration reloads by result");
    evbuffer_add_printf(out,
                        "moat_config_reloads_total{result=\"success\"} %llu\n"
                        "moat_config_reloads_total{result=\"failure\"} %llu\n",
                        (unsigned long long)atomic_load(&reloads.ok),
                        (unsigned long long)atomic_load(&reloads.failed));
    uint64_t last = atomic_load(&reloads.last_ok_s);
    metrics_family(out, "moat_config_last_reload_success_timestamp_seconds", "gauge",
                   "Unix time the live configuration was loaded (start or last successful reload)");
    evbuffer_add_printf(out, "moat_config_last_reload_success_timestamp_seconds %llu\n",
                        (unsigned long long)(last ? last : metrics_process_start_time()));
}

void metrics_render(struct evbuffer *out, struct metrics *const *sets, int n,
                    const struct snapshot *snap)
{
    render_plain(out, sets, n);
    metrics_families_render(out, sets, n);
    metrics_tls_render(out, sets, n, snap ? snap->tls : NULL);
    render_config(out, snap);
    metrics_process_render(out);
}

static const char *escape_of(char c)
{
    return c == '\\' ? "\\\\" : c == '"' ? "\\\"" : c == '\n' ? "\\n" : NULL;
}

void metrics_label_value(struct evbuffer *out, const char *v)
{
    const char *start = v;
    for (; *v; v++) {
        const char *esc = escape_of(*v);
        if (!esc)
            continue;
        evbuffer_add(out, start, (size_t)(v - start));
        evbuffer_add(out, esc, 2);
        start = v + 1;
    }
    evbuffer_add(out, start, (size_t)(v - start));
}

size_t metrics_label_value_buf(char *buf, size_t len, const char *v)
{
    size_t k = 0;
    if (len == 0)
        return 0;
    for (; *v; v++) {
        const char *esc = escape_of(*v);
        size_t w = esc ? 2 : 1;
        if (k + w >= len)
            break;
        if (esc)
            memcpy(buf + k, esc, 2);
        else
            buf[k] = *v;
        k += w;
    }
    buf[k] = '\0';
    return k;
}
