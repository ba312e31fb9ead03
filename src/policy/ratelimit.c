#include "policy/ratelimit.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "observe/audit.h"
#include "config/config.h"
#include "util/digest.h"
#include "util/jsonw.h"
#include "observe/log.h"
#include "policy/ratelimit_global.h"
#include "policy/ratelimit_table.h"
#include "http/request.h"
#include "core/snapshot.h"
#include "core/services.h"
#include "observe/metrics.h"

#define AUDIT_SLOTS 4096

/* Each worker has its own Redis connection and reconnect backoff (at most 2 s), so
 * around an outage the workers disagree for a while. The outage (one audit event)
 * starts with the first failure any worker sees and ends with the first success
 * after STORE_QUIET_US without failures anywhere. */
#define STORE_QUIET_US 3000000u

static struct rl_table *table;
static atomic_bool store_outage;
static _Atomic uint64_t store_last_failure_us;
/* (key hash << 24 | minute) of the last rejection audited per slot: lossy on purpose */
static _Atomic uint64_t audit_slots[AUDIT_SLOTS];

int ratelimit_init(size_t max_keys)
{
    table = rl_table_new(max_keys ? max_keys : 100000);
    return table ? 0 : -1;
}

void ratelimit_shutdown(void)
{
    rl_table_free(table);
    table = NULL;
}

void ratelimit_sweep(void)
{
    if (table)
        rl_table_sweep(table, rl_table_now_us());
}

void ratelimit_render_metrics(struct evbuffer *out)
{
    struct rl_table_stats st = {0};
    if (table)
        rl_table_stats(table, &st);
    evbuffer_add_printf(out,
                        "# HELP moat_ratelimit_keys Keys held by the local rate-limit table\n"
                        "# TYPE moat_ratelimit_keys gauge\nmoat_ratelimit_keys %zu\n"
                        "# HELP moat_ratelimit_keys_max Capacity of the local rate-limit table\n"
                        "# TYPE moat_ratelimit_keys_max gauge\nmoat_ratelimit_keys_max %zu\n"
                        "# HELP moat_ratelimit_evictions_total Live keys evicted to make room\n"
                        "# TYPE moat_ratelimit_evictions_total counter\n"
                        "moat_ratelimit_evictions_total %llu\n",
                        st.size, st.capacity, (unsigned long long)st.evictions);
}

struct gcra_result ratelimit_local(const char *rule, const void *key, size_t keylen, double rate,
                                   uint64_t burst)
{
    struct gcra_result allow = {.allowed = true, .remaining = burst};
    if (!table)
        return allow;
    return rl_table_decide(table, rule, key, keylen, rate, burst, rl_table_now_us());
}

/* ---- keys and verdicts -------------------------------------------------- */

static bool rule_in_phase(const struct config_rate_rule *rule, bool post_auth)
{
    bool identity_key = rule->key == RL_KEY_SESSION || rule->key == RL_KEY_TENANT;
    return identity_key == post_auth;
}

enum rule_key_result { KEY_NONE = 0, KEY_OK, KEY_DENY };

/*
 * A header rule's key when the request lacks the header (the rule's `missing`):
 * the client IP, marked so that no header value can name the same bucket (a
 * field value never holds a NUL); skip; or refuse the request.
 */
static enum rule_key_result
missing_header_key(struct request *r, const struct config_rate_rule *rule, struct http1_str *key)
{
    if (rule->missing == RL_MISSING_SKIP)
        return KEY_NONE;
    if (rule->missing == RL_MISSING_DENY)
        return KEY_DENY;
    char *buf = r->rl.missing_key;
    int n = snprintf(buf, sizeof r->rl.missing_key, "%cip:%s", '\0', request_client_ip(r));
    *key = (struct http1_str){buf, n > 0 && (size_t)n < sizeof r->rl.missing_key ? (size_t)n : 0};
    return KEY_OK;
}

/* The bytes a rule counts under; KEY_NONE if the request has no such key. */
static enum rule_key_result rule_key(struct request *r, const struct config_rate_rule *rule,
                                     struct http1_str *key)
{
    switch (rule->key) {
    case RL_KEY_IP: {
        const char *ip = request_client_ip(r);
        *key = (struct http1_str){ip, strlen(ip)};
        return KEY_OK;
    }
    case RL_KEY_SESSION:
        *key = (struct http1_str){r->ident.token_hash, 64};
        return r->ident.authenticated ? KEY_OK : KEY_NONE;
    case RL_KEY_TENANT:
        *key = (struct http1_str){r->ident.tenant, strlen(r->ident.tenant)};
        return r->ident.authenticated ? KEY_OK : KEY_NONE;
    case RL_KEY_HEADER: {
        const struct http1_header *h =
            http1_find_header(r->h.headers, r->h.num_headers, rule->header);
        if (!h)
            return missing_header_key(r, rule, key);
        *key = h->value;
        return KEY_OK;
    }
    }
    return KEY_NONE;
}

static void respond_missing_header(struct request *r, const struct config_rate_rule *rule)
{
    char body[160];
    snprintf(body, sizeof body, "missing header %s", rule->header);
    metrics_ratelimit(r->svc->metrics, rule->metrics_slot, RLR_REJECTED);
    r->error = "rate limit: missing header";
    request_respond(r, 400, NULL, body, false);
}

static uint64_t ceil_seconds(uint64_t ms)
{
    return ms == 0 ? 0 : (ms + 999) / 1000;
}

static void remember(struct request *r, const struct config_rate_rule *rule, uint64_t remaining,
                     uint64_t reset_ms)
{
    metrics_ratelimit(r->svc->metrics, rule->metrics_slot, RLR_ALLOWED);
    if (r->rl.have && remaining >= r->rl.remaining)
        return;
    r->rl.have = true;
    r->rl.rule = rule;
    r->rl.remaining = remaining;
    r->rl.reset_ms = reset_ms;
}

static void format_headers(char *out, size_t cap, const struct config_rate_rule *rule,
                           uint64_t remaining, uint64_t reset_ms)
{
    uint64_t window = (uint64_t)ceil((double)rule->burst / rule->rate);
    snprintf(out, cap,
             "RateLimit-Policy: \"%s\";q=%llu;w=%llu\r\nRateLimit: \"%s\";r=%llu;t=%llu\r\n",
             rule->id, (unsigned long long)rule->burst, (unsigned long long)(window ? window : 1),
             rule->id, (unsigned long long)remaining, (unsigned long long)ceil_seconds(reset_ms));
}

/* One audit line per rule and key and minute, not per request. */
static void audit_rejection(struct request *r, const struct config_rate_rule *rule,
                            struct http1_str key)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = rule->id; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    for (size_t i = 0; i < key.len; i++)
        h = (h ^ (uint8_t)key.p[i]) * 1099511628211ULL;
    uint64_t minute = (uint64_t)time(NULL) / 60;
    uint64_t tag = (h << 24) | (minute & 0xffffff);
    _Atomic uint64_t *slot = &audit_slots[h % AUDIT_SLOTS];
    if (atomic_exchange_explicit(slot, tag, memory_order_relaxed) == tag)
        return;
    char buf[2048];
    struct jsonw j;
    audit_begin(&j, buf, sizeof buf, "rate_limited", r);
    jsonw_str(&j, "rule", rule->id);
    jsonw_str(&j, "scope", rule->scope == RL_SCOPE_GLOBAL ? "global" : "local");
    if (rule->key == RL_KEY_SESSION) {
        jsonw_strn(&j, "key", key.p, 16);    /* a prefix of the token hash, never the token */
    } else if (rule->key == RL_KEY_HEADER) { /* may be an API key: log its digest */
        uint8_t d[DIGEST_SHA256_LEN];
        char hex[17];
        digest_sha256(key.p, key.len, d);
        digest_hex(d, 8, hex);
        jsonw_str(&j, "key_sha256", hex);
    } else {
        jsonw_strn(&j, "key", key.p, key.len > 128 ? 128 : key.len);
    }
    audit_emit(&j);
}

static void respond_429(struct request *r, const struct config_rate_rule *rule,
                        struct http1_str key, uint64_t retry_ms, uint64_t reset_ms)
{
    char extra[512];
    int n = snprintf(extra, sizeof extra, "Retry-After: %llu\r\n",
                     (unsigned long long)(ceil_seconds(retry_ms) ? ceil_seconds(retry_ms) : 1));
    format_headers(extra + n, sizeof extra - (size_t)n, rule, 0, reset_ms);
    metrics_ratelimit(r->svc->metrics, rule->metrics_slot, RLR_REJECTED);
    audit_rejection(r, rule, key);
    r->error = "rate limited";
    request_respond(r, 429, extra, "rate limit exceeded", false);
}

/* ---- evaluation --------------------------------------------------------- */

static enum phase_result evaluate(struct request *r);

static void report_store(bool down)
{
    /* once per outage, not per request nor per worker */
    uint64_t now = rl_table_now_us();
    if (down) {
        atomic_store_explicit(&store_last_failure_us, now, memory_order_relaxed);
        if (atomic_exchange(&store_outage, true))
            return;
    } else {
        uint64_t last = atomic_load_explicit(&store_last_failure_us, memory_order_relaxed);
        if (!atomic_load_explicit(&store_outage, memory_order_relaxed) ||
            now < last + STORE_QUIET_US || !atomic_exchange(&store_outage, false))
            return;
    }
    audit_simple(down ? "ratelimit_store_unavailable" : "ratelimit_store_recovered", NULL,
                 down ? "global rate limits use on_store_error" : NULL);
    log_msg(down ? LOG_WARN : LOG_INFO, "ratelimit: Redis %s",
            down ? "unavailable; global rules fall back to on_store_error" : "is back");
}

/* Applies on_store_error; returns false when the request was answered. */
static bool store_fallback(struct request *r, const struct config_rate_rule *rule,
                           struct http1_str key)
{
    report_store(true);
    metrics_inc(r->svc->metrics, M_RL_STORE_FALLBACK);
    if (rule->on_store_error == RL_ON_ERROR_ALLOW) {
        metrics_ratelimit(r->svc->metrics, rule->metrics_slot, RLR_ALLOWED);
        return true;
    }
    if (rule->on_store_error == RL_ON_ERROR_DENY) {
        metrics_ratelimit(r->svc->metrics, rule->metrics_slot, RLR_ERROR);
        r->error = "rate limit store unavailable";
        request_respond(r, 503, "Retry-After: 1\r\n", "rate limit store unavailable", false);
        return false;
    }
    unsigned n = rl_global_instances();
    char id[160];
    snprintf(id, sizeof id, "%s@global", rule->id);
    uint64_t burst = (rule->burst + n - 1) / n;
    struct gcra_result g = ratelimit_local(id, key.p, key.len, rule->rate / n, burst ? burst : 1);
    if (g.allowed) {
        remember(r, rule, g.remaining, g.reset_after_us / 1000);
        return true;
    }
    respond_429(r, rule, key, g.retry_after_us / 1000, g.reset_after_us / 1000);
    return false;
}

static void on_global(const struct rl_global_result *res, void *arg)
{
    struct request *r = arg;
    struct stream_hold hold = request_hold(r);
    r->pending = NULL;
    r->cancel_pending = NULL;
    const struct config_rate_rule *rule = &r->route->rate_limits[r->rl.next];
    struct http1_str key = {0};
    rule_key(r, rule, &key);
    r->rl.next++;
    bool go_on;
    if (!res) {
        go_on = store_fallback(r, rule, key);
    } else {
        report_store(false);
        metrics_inc(r->svc->metrics, M_RL_GLOBAL_DECISIONS);
        go_on = res->allowed;
        if (res->allowed)
            remember(r, rule, res->remaining, res->reset_after_ms);
        else
            respond_429(r, rule, key, res->retry_after_ms, res->reset_after_ms);
    }
    if (go_on && evaluate(r) == PHASE_CONTINUE)
        pipeline_resume(r);
    stream_release(hold);
}

static void cancel_global(struct request *r)
{
    rl_global_cancel(r->pending);
    r->pending = NULL;
    r->cancel_pending = NULL;
}

/* Runs the rules of this phase from r->rl.next; CONTINUE, RESPOND or SUSPEND. */
static enum phase_result evaluate(struct request *r)
{
    const struct config_route *rt = r->route;
    for (; r->rl.next < rt->num_rate_limits; r->rl.next++) {
        const struct config_rate_rule *rule = &rt->rate_limits[r->rl.next];
        struct http1_str key;
        if (!rule_in_phase(rule, r->rl.post_auth))
            continue;
        enum rule_key_result kr = rule_key(r, rule, &key);
        if (kr == KEY_DENY) {
            respond_missing_header(r, rule);
            return PHASE_RESPOND;
        }
        if (kr == KEY_NONE)
            continue;
        if (rule->scope == RL_SCOPE_GLOBAL) {
            const char *tenant = r->ident.authenticated ? r->ident.tenant : NULL;
            r->pending =
                rl_global_decide(r->svc->rl_global, rule, key.p, key.len, tenant, on_global, r);
            if (r->pending) {
                r->cancel_pending = cancel_global;
                return PHASE_SUSPEND;
            }
            if (!store_fallback(r, rule, key))
                return PHASE_RESPOND;
            continue;
        }
        struct gcra_result g = ratelimit_local(rule->id, key.p, key.len, rule->rate, rule->burst);
        if (!g.allowed) {
            respond_429(r, rule, key, g.retry_after_us / 1000, g.reset_after_us / 1000);
            return PHASE_RESPOND;
        }
        remember(r, rule, g.remaining, g.reset_after_us / 1000);
    }
    if (r->rl.post_auth && r->rl.have && rt->ratelimit_headers) {
        char hdrs[400];
        format_headers(hdrs, sizeof hdrs, r->rl.rule, r->rl.remaining, r->rl.reset_ms);
        request_add_response_lines(r, hdrs); /* informational: dropped if it does not fit */
    }
    return PHASE_CONTINUE;
}

static enum phase_result start(struct request *r, bool post_auth)
{
    if (r->route->num_rate_limits == 0)
        return PHASE_CONTINUE;
    r->rl.post_auth = post_auth;
    r->rl.next = 0;
    return evaluate(r);
}

enum phase_result ratelimit_ip_phase(struct request *r)
{
    return start(r, false);
}

enum phase_result ratelimit_identity_phase(struct request *r)
{
    return start(r, true);
}
