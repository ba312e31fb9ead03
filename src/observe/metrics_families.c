#include "observe/metrics_families.h"

#include <stddef.h>
#include <stdio.h>

#include <event2/buffer.h>

#include "observe/metrics.h"

static const char *const protocol_names[MP_COUNT] = {"http/1.1", "h2"};
static const char *const auth_results[AR_COUNT] = {"accepted", "anonymous", "rejected", "error"};
static const char *const auth_reasons[AN_COUNT] = {"ok",           "missing",          "malformed",
                                                   "unknown",      "expired",          "invalid",
                                                   "mfa_required", "store_unavailable"};
static const char *const rl_results[RLR_COUNT] = {"allowed", "rejected", "error"};
static const char *const redis_roles[RR_COUNT] = {"sessions", "ratelimit"};

/* Slots to render for d: the named ones, then "other" and "none"; stops at count. */
static size_t slot_at(enum metrics_dim d, size_t i)
{
    size_t named = metrics_registry_count(d);
    return i < named ? i : i == named ? METRICS_SLOT_OTHER : METRICS_SLOT_NONE;
}

static size_t slots_to_render(enum metrics_dim d)
{
    return metrics_registry_count(d) + (d == MD_RULE ? 1 : 2);
}

/* `dim="value"` for a slot, escaped. */
static void slot_label(char *buf, size_t len, const char *dim, enum metrics_dim d, size_t slot)
{
    int n = snprintf(buf, len, "%s=\"", dim);
    if (n < 0 || (size_t)n + 2 >= len)
        return;
    size_t k = (size_t)n + metrics_label_value_buf(buf + n, len - (size_t)n - 1,
                                                   metrics_registry_name(d, slot));
    snprintf(buf + k, len - k, "\"");
}

/* A family with series per label slot of a config dimension (routes, pools, rules). */
struct slot_family {
    const char *name, *type, *help;
    enum metrics_dim dim;
    const char *label; /* "route", "pool", "rule" */
    size_t off;        /* histograms: the per-slot array in struct metrics */
    void (*series)(struct evbuffer *out, struct metrics *const *sets, int n,
                   const struct slot_family *f, size_t slot, const char *labels);
};

static void render_slots(struct evbuffer *out, struct metrics *const *sets, int n,
                         const struct slot_family *f)
{
    metrics_family(out, f->name, f->type, f->help);
    for (size_t i = 0; i < slots_to_render(f->dim); i++) {
        size_t s = slot_at(f->dim, i);
        char labels[600];
        slot_label(labels, sizeof labels, f->label, f->dim, s);
        f->series(out, sets, n, f, s, labels);
    }
}

static void http_series(struct evbuffer *out, struct metrics *const *sets, int n,
                        const struct slot_family *f, size_t s, const char *labels)
{
    for (int p = 0; p < MP_COUNT; p++) {
        for (int c = 0; c < METRICS_CODE_CLASSES; c++) {
            uint64_t v = METRICS_SUM(sets, n, http[s][p][c]);
            if (v)
                evbuffer_add_printf(out, "%s{%s,code_class=\"%dxx\",protocol=\"%s\"} %llu\n",
                                    f->name, labels, c + 1, protocol_names[p],
                                    (unsigned long long)v);
        }
    }
}

/* Configured rules show at 0; "other" once used. */
static void ratelimit_series(struct evbuffer *out, struct metrics *const *sets, int n,
                             const struct slot_family *f, size_t s, const char *labels)
{
    for (int r = 0; r < RLR_COUNT; r++) {
        uint64_t v = METRICS_SUM(sets, n, ratelimit[s][r]);
        if (v || s < METRICS_SLOT_OTHER)
            evbuffer_add_printf(out, "%s{%s,result=\"%s\"} %llu\n", f->name, labels, rl_results[r],
                                (unsigned long long)v);
    }
}

/* Configured routes and pools show at 0; "other" and "none" once used. */
static void hist_series(struct evbuffer *out, struct metrics *const *sets, int n,
                        const struct slot_family *f, size_t s, const char *labels)
{
    struct hist_sum sum = {0};
    for (int w = 0; w < n; w++)
        hist_sum_add(&sum, &((const struct hist *)((const char *)sets[w] + f->off))[s]);
    if (hist_sum_count(&sum) || s < metrics_registry_count(f->dim))
        hist_render(out, f->name, labels, &sum, &hist_bounds_http);
}

static const struct slot_family slot_families[] = {
    {"moat_http_requests_total", "counter", "Responses sent, by route, status class and protocol",
     MD_ROUTE, "route", 0, http_series},
    {"moat_request_duration_seconds", "histogram",
     "Time from a request head's arrival to the end of its response, by route", MD_ROUTE, "route",
     offsetof(struct metrics, request_seconds), hist_series},
    {"moat_upstream_response_duration_seconds", "histogram",
     "Time from admission to an upstream pool to the response head, by pool", MD_POOL, "pool",
     offsetof(struct metrics, upstream_seconds), hist_series},
    {"moat_ratelimit_decisions_total", "counter",
     "Rate-limit rule decisions, by rule id and result", MD_RULE, "rule", 0, ratelimit_series},
};

static void render_auth(struct evbuffer *out, struct metrics *const *sets, int n)
{
    const char *name = "moat_auth_results_total";
    metrics_family(out, name, "counter", "Session authentication outcomes, by result and reason");
    for (int r = 0; r < AR_COUNT; r++) {
        for (int k = 0; k < AN_COUNT; k++) {
            uint64_t v = METRICS_SUM(sets, n, auth[r][k]);
            if (v)
                evbuffer_add_printf(out, "%s{result=\"%s\",reason=\"%s\"} %llu\n", name,
                                    auth_results[r], auth_reasons[k], (unsigned long long)v);
        }
    }
}

/* A gauge per Redis role; off: the per-role array in struct metrics. */
static void render_role_gauge(struct evbuffer *out, struct metrics *const *sets, int n,
                              const char *name, const char *help, size_t off)
{
    metrics_family(out, name, "gauge", help);
    for (int r = 0; r < RR_COUNT; r++)
        evbuffer_add_printf(
            out, "%s{role=\"%s\"} %llu\n", name, redis_roles[r],
            (unsigned long long)metrics_sum_at(sets, n, off + (size_t)r * sizeof(uint64_t)));
}

static void render_redis(struct evbuffer *out, struct metrics *const *sets, int n)
{
    render_role_gauge(out, sets, n, "moat_redis_clients",
                      "Redis clients of this role (one per worker when the role is configured)",
                      offsetof(struct metrics, redis_clients));
    render_role_gauge(out, sets, n, "moat_redis_connected",
                      "Workers whose Redis client of this role is connected",
                      offsetof(struct metrics, redis_connected));
    const char *name = "moat_redis_command_duration_seconds";
    metrics_family(out, name, "histogram",
                   "Time from sending a Redis command to its reply, by client role");
    for (int r = 0; r < RR_COUNT; r++) {
        struct hist_sum sum = {0};
        for (int w = 0; w < n; w++)
            hist_sum_add(&sum, &sets[w]->redis_seconds[r]);
        char labels[64];
        snprintf(labels, sizeof labels, "role=\"%s\"", redis_roles[r]);
        hist_render(out, name, labels, &sum, &hist_bounds_redis);
    }
}

void metrics_families_render(struct evbuffer *out, struct metrics *const *sets, int n)
{
    for (size_t i = 0; i < sizeof slot_families / sizeof slot_families[0]; i++)
        render_slots(out, sets, n, &slot_families[i]);
    render_auth(out, sets, n);
    render_redis(out, sets, n);
}
