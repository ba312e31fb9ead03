#include "upstream/upstream_report.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "config/config.h"
#include "core/snapshot.h"
#include "observe/audit.h"
#include "observe/log.h"
#include "observe/metrics.h"
#include "upstream/admission.h"
#include "upstream/upstream_state.h"
#include "util/jsonw.h"
#include "util/monotime.h"

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static const char *balance_str(enum config_balance b)
{
    switch (b) {
    case BALANCE_ROUND_ROBIN:
        return "round_robin";
    case BALANCE_LEAST_CONN:
        return "least_conn";
    case BALANCE_TENANT_HASH:
        return "tenant_hash";
    }
    return "invalid";
}

static uint64_t server_in_flight(const struct server_state *s)
{
    int n = LOAD(s->in_flight);
    return n > 0 ? (uint64_t)n : 0;
}

/* The pool's requests in flight: admission's count, else the sum over its servers. */
static uint64_t pool_in_flight(const struct snapshot *snap, size_t i,
                               const struct admission_stats *st)
{
    const struct upstream_states *us = snap->ustates;
    if (us->pools[i]->admission)
        return st->in_flight;
    uint64_t sum = 0;
    for (size_t k = 0; k < snap->cfg->upstreams[i].num_servers; k++)
        sum += server_in_flight(us->servers[i][k]);
    return sum;
}

/* ---- JSON ------------------------------------------------------------------ */

/*
 * jsonw writes flat objects: nesting appends the fields written so far with the
 * object left open, then the nested values, then the closing brace.
 */
static void put_open(struct evbuffer *out, const struct jsonw *j)
{
    evbuffer_add(out, j->buf, j->len);
}

static void put_closed(struct evbuffer *out, struct jsonw *j)
{
    size_t n = jsonw_end(j);
    evbuffer_add(out, j->buf, n - 1); /* without the line's '\n' */
}

static void json_check(struct evbuffer *out, const struct server_state *s, uint64_t now)
{
    char buf[256];
    struct jsonw j;
    jsonw_begin(&j, buf, sizeof buf);
    jsonw_str(&j, "result", check_result_str((enum check_result)LOAD(s->last_check)));
    jsonw_int(&j, "status", LOAD(s->last_check_status));
    uint64_t at = LOAD(s->last_check_at);
    if (at)
        jsonw_uint(&j, "age_ms", now > at ? now - at : 0);
    else
        jsonw_null(&j, "age_ms");
    put_closed(out, &j);
}

static void json_server(struct evbuffer *out, const struct config_upstream *u, size_t k,
                        const struct server_state *s, uint64_t now)
{
    char buf[2048];
    struct jsonw j;
    uint64_t ej = LOAD(s->ejected_until);
    jsonw_begin(&j, buf, sizeof buf);
    jsonw_str(&j, "address", u->servers[k].text);
    jsonw_str(&j, "state", server_avail_str(server_state_avail(s, now)));
    jsonw_uint(&j, "weight", u->servers[k].weight);
    /* in hundredths, as the balancer ramps it (slow start) */
    jsonw_double(&j, "effective_weight",
                 server_state_weight(s, u->servers[k].weight * 100, u->slow_start_ms, now) / 100.0);
    jsonw_uint(&j, "in_flight", server_in_flight(s));
    jsonw_uint(&j, "consecutive_errors", LOAD(s->consecutive_errors));
    jsonw_uint(&j, "ejections_total", LOAD(s->ejections_total));
    jsonw_uint(&j, "ejected_for_ms", ej > now ? ej - now : 0);
    jsonw_bool(&j, "draining", LOAD(s->draining));
    put_open(out, &j);
    evbuffer_add_printf(out, ",\"check\":");
    if (u->health.path)
        json_check(out, s, now);
    else
        evbuffer_add_printf(out, "null");
    evbuffer_add(out, "}", 1);
}

static void json_admission(struct evbuffer *out, const struct admission_stats *st)
{
    char buf[512];
    struct jsonw j;
    jsonw_begin(&j, buf, sizeof buf);
    jsonw_uint(&j, "in_flight", st->in_flight);
    jsonw_uint(&j, "queued", st->queued);
    jsonw_uint(&j, "admitted_total", st->admitted_total);
    jsonw_uint(&j, "queued_total", st->queued_total);
    jsonw_uint(&j, "shed_total", st->shed_total);
    jsonw_uint(&j, "timed_out_total", st->timed_out_total);
    put_closed(out, &j);
}

static void json_pool(struct evbuffer *out, const struct snapshot *snap, size_t i, uint64_t now)
{
    const struct config_upstream *u = &snap->cfg->upstreams[i];
    const struct pool_state *p = snap->ustates->pools[i];
    struct admission_stats st;
    admission_stats(p->admission, &st);
    char buf[1024];
    struct jsonw j;
    jsonw_begin(&j, buf, sizeof buf);
    jsonw_str(&j, "name", u->name);
    jsonw_str(&j, "balance", balance_str(u->balance));
    jsonw_uint(&j, "in_flight", pool_in_flight(snap, i, &st));
    jsonw_uint(&j, "queued", st.queued);
    jsonw_uint(&j, "retries_total", LOAD(p->retries_total));
    jsonw_uint(&j, "retries_denied_total", LOAD(p->retries_denied_total));
    jsonw_uint(&j, "all_down_total", LOAD(p->all_down_total));
    put_open(out, &j);
    evbuffer_add_printf(out, ",\"admission\":");
    json_admission(out, &st);
    evbuffer_add_printf(out, ",\"servers\":[");
    for (size_t k = 0; k < u->num_servers; k++) {
        if (k)
            evbuffer_add(out, ",", 1);
        json_server(out, u, k, snap->ustates->servers[i][k], now);
    }
    evbuffer_add_printf(out, "]}");
}

void upstream_report_json(struct evbuffer *out, const struct snapshot *snap)
{
    uint64_t now = mono_ms();
    evbuffer_add_printf(out, "{\"pools\":[");
    for (size_t i = 0; snap->ustates && i < snap->ustates->num_pools; i++) {
        if (i)
            evbuffer_add(out, ",", 1);
        json_pool(out, snap, i, now);
    }
    evbuffer_add_printf(out, "]}\n");
}

/* The admission series of every pool, each family once. */
static void render_admission(struct evbuffer *out, const struct snapshot *snap)
{
    size_t n = snap->ustates->num_pools;
    const struct admission **as = calloc(n ? n : 1, sizeof *as);
    const char **names = calloc(n ? n : 1, sizeof *names);
    for (size_t i = 0; as && names && i < n; i++) {
        as[i] = snap->ustates->pools[i]->admission;
        names[i] = snap->cfg->upstreams[i].name;
    }
    if (as && names)
        admission_render_metrics_pools(out, as, names, n);
    free(as);
    free(names);
}

/* ---- Prometheus ------------------------------------------------------------ */

static void family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{pool="…",server="…"  (the caller adds more labels or closes with "} value") */
static void server_labels(struct evbuffer *out, const char *name, const char *pool,
                          const char *server)
{
    evbuffer_add_printf(out, "%s{pool=\"", name);
    metrics_label_value(out, pool);
    evbuffer_add_printf(out, "\",server=\"");
    metrics_label_value(out, server);
    evbuffer_add(out, "\"", 1);
}

enum server_value { SV_UP, SV_IN_FLIGHT, SV_EJECTIONS };

static uint64_t server_value(const struct server_state *s, enum server_value v, uint64_t now)
{
    switch (v) {
    case SV_UP:
        return server_state_avail(s, now) == AVAIL_UP;
    case SV_IN_FLIGHT:
        return server_in_flight(s);
    case SV_EJECTIONS:
        return LOAD(s->ejections_total);
    }
    return 0;
}

/* One family with one series per server of every pool. */
static void server_family(struct evbuffer *out, const struct snapshot *snap, const char *name,
                          const char *type, const char *help, enum server_value v, uint64_t now)
{
    family(out, name, type, help);
    for (size_t i = 0; i < snap->ustates->num_pools; i++) {
        const struct config_upstream *u = &snap->cfg->upstreams[i];
        for (size_t k = 0; k < u->num_servers; k++) {
            server_labels(out, name, u->name, u->servers[k].text);
            evbuffer_add_printf(
                out, "} %llu\n",
                (unsigned long long)server_value(snap->ustates->servers[i][k], v, now));
        }
    }
}

/* Every state of every server, 1 for the one it is in, so a state's absence is a 0. */
static void server_state_family(struct evbuffer *out, const struct snapshot *snap, uint64_t now)
{
    const char *name = "moat_upstream_server_state";
    family(out, name, "gauge", "1 for the state the upstream server is in, 0 for the others");
    for (size_t i = 0; i < snap->ustates->num_pools; i++) {
        const struct config_upstream *u = &snap->cfg->upstreams[i];
        for (size_t k = 0; k < u->num_servers; k++) {
            enum server_avail cur = server_state_avail(snap->ustates->servers[i][k], now);
            for (int a = AVAIL_UP; a <= AVAIL_DRAINING; a++) {
                server_labels(out, name, u->name, u->servers[k].text);
                evbuffer_add_printf(out, ",state=\"%s\"} %d\n",
                                    server_avail_str((enum server_avail)a), a == (int)cur);
            }
        }
    }
}

static void server_checks_family(struct evbuffer *out, const struct snapshot *snap)
{
    const char *name = "moat_upstream_checks_total";
    family(out, name, "counter", "Active health check probes by result");
    for (size_t i = 0; i < snap->ustates->num_pools; i++) {
        const struct config_upstream *u = &snap->cfg->upstreams[i];
        for (size_t k = 0; k < u->num_servers; k++) {
            const struct server_state *s = snap->ustates->servers[i][k];
            server_labels(out, name, u->name, u->servers[k].text);
            evbuffer_add_printf(out, ",result=\"passed\"} %llu\n",
                                (unsigned long long)LOAD(s->checks_passed));
            server_labels(out, name, u->name, u->servers[k].text);
            evbuffer_add_printf(out, ",result=\"failed\"} %llu\n",
                                (unsigned long long)LOAD(s->checks_failed));
        }
    }
}

enum pool_value { PV_RETRIES, PV_DENIED, PV_ALL_DOWN, PV_IN_FLIGHT, PV_QUEUED };

static uint64_t pool_value(const struct snapshot *snap, size_t i, enum pool_value v)
{
    const struct pool_state *p = snap->ustates->pools[i];
    struct admission_stats st;
    switch (v) {
    case PV_RETRIES:
        return LOAD(p->retries_total);
    case PV_DENIED:
        return LOAD(p->retries_denied_total);
    case PV_ALL_DOWN:
        return LOAD(p->all_down_total);
    case PV_IN_FLIGHT:
        admission_stats(p->admission, &st);
        return pool_in_flight(snap, i, &st);
    case PV_QUEUED:
        admission_stats(p->admission, &st);
        return st.queued;
    }
    return 0;
}

static void pool_family(struct evbuffer *out, const struct snapshot *snap, const char *name,
                        const char *type, const char *help, enum pool_value v)
{
    family(out, name, type, help);
    for (size_t i = 0; i < snap->ustates->num_pools; i++) {
        evbuffer_add_printf(out, "%s{pool=\"", name);
        metrics_label_value(out, snap->cfg->upstreams[i].name);
        evbuffer_add_printf(out, "\"} %llu\n", (unsigned long long)pool_value(snap, i, v));
    }
}

void upstream_report_metrics(struct evbuffer *out, const struct snapshot *snap)
{
    if (!snap->ustates)
        return;
    uint64_t now = mono_ms();
    server_family(out, snap, "moat_upstream_server_up", "gauge",
                  "1 when the upstream server takes new requests", SV_UP, now);
    server_state_family(out, snap, now);
    server_family(out, snap, "moat_upstream_server_in_flight", "gauge",
                  "Requests in flight on the upstream server (all workers)", SV_IN_FLIGHT, now);
    server_family(out, snap, "moat_upstream_ejections_total", "counter",
                  "Outlier ejections of the upstream server", SV_EJECTIONS, now);
    server_checks_family(out, snap);
    pool_family(out, snap, "moat_upstream_retries_total", "counter",
                "Requests retried on another server of the pool", PV_RETRIES);
    pool_family(out, snap, "moat_upstream_retry_budget_exhausted_total", "counter",
                "Retries refused because the pool's retry budget was spent", PV_DENIED);
    pool_family(out, snap, "moat_upstream_all_down_total", "counter",
                "Times no server of the pool was available for a request", PV_ALL_DOWN);
    pool_family(out, snap, "moat_upstream_in_flight", "gauge",
                "Requests in flight on the pool (all workers)", PV_IN_FLIGHT);
    pool_family(out, snap, "moat_upstream_queue_depth", "gauge",
                "Requests waiting for admission to the pool", PV_QUEUED);
    render_admission(out, snap);
}

/* ---- admin actions --------------------------------------------------------- */

const char *upstream_set_draining(const struct snapshot *snap, const char *pool, const char *server,
                                  bool drain, const char **state)
{
    const struct config *cfg = snap->cfg;
    size_t i = 0;
    while (i < cfg->num_upstreams && strcmp(cfg->upstreams[i].name, pool))
        i++;
    if (i == cfg->num_upstreams || !snap->ustates)
        return "unknown pool";
    const struct config_upstream *u = &cfg->upstreams[i];
    size_t k = 0;
    while (k < u->num_servers && strcmp(u->servers[k].text, server))
        k++;
    if (k == u->num_servers)
        return "unknown server";
    struct server_state *s = snap->ustates->servers[i][k];
    atomic_store_explicit(&s->draining, drain, memory_order_relaxed);
    *state = server_avail_str(server_state_avail(s, mono_ms()));
    log_msg(LOG_INFO, "admin: upstream %s server %s %s", u->name, u->servers[k].text,
            drain ? "draining" : "ready");
    char buf[1024];
    struct jsonw j;
    audit_begin(&j, buf, sizeof buf, "upstream_admin", NULL);
    jsonw_str(&j, "action", drain ? "drain" : "ready");
    jsonw_str(&j, "pool", u->name);
    jsonw_str(&j, "server", u->servers[k].text);
    audit_emit(&j);
    return NULL;
}
