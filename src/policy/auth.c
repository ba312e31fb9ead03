#include "policy/auth.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "observe/audit.h"
#include "policy/auth_cache.h"
#include "config/config.h"
#include "util/jsonw.h"
#include "observe/log.h"
#include "redis/redis.h"
#include "http/request.h"
#include "policy/revocation.h"
#include "policy/session.h"
#include "core/snapshot.h"
#include "core/services.h"
#include "observe/metrics.h"

#define RETRY_AFTER_S "1"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const struct config_sessions *sess_cfg(const struct request *r)
{
    return &r->cfg->sessions;
}

static void audit_reject(struct request *r, enum session_status why)
{
    char buf[2048];
    struct jsonw j;
    audit_begin(&j, buf, sizeof buf, "auth_rejected", r);
    jsonw_str(&j, "reason", session_status_str(why));
    if (why == SESSION_INVALID && r->ident.invalid_field)
        jsonw_str(&j, "field", r->ident.invalid_field); /* what the login service got wrong */
    jsonw_str(&j, "route", r->route->path_prefix);
    if (why == SESSION_MFA) {
        jsonw_str(&j, "tenant", r->ident.tenant);
        jsonw_str(&j, "user", r->ident.user);
    }
    audit_emit(&j);
}

/* Percent-encodes a request target for a return_to query parameter. */
static void url_encode(const char *s, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    for (size_t i = 0; i < n && k + 4 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
            out[k++] = (char)c;
        } else {
            out[k++] = '%';
            out[k++] = hex[c >> 4];
            out[k++] = hex[c & 15];
        }
    }
    out[k] = '\0';
}

/* The metrics label of a session status (the enums list them in the same order). */
static enum metrics_auth_reason auth_reason(enum session_status st)
{
    _Static_assert(AN_OK == (int)SESSION_OK && AN_MISSING == (int)SESSION_MISSING &&
                       AN_MALFORMED == (int)SESSION_MALFORMED &&
                       AN_UNKNOWN == (int)SESSION_UNKNOWN && AN_EXPIRED == (int)SESSION_EXPIRED &&
                       AN_INVALID == (int)SESSION_INVALID && AN_MFA == (int)SESSION_MFA,
                   "metrics_auth_reason follows session_status");
    return (enum metrics_auth_reason)st;
}

/* 401 for API clients, a 302 to the login page for browser routes, 403 for MFA. */
static void reject(struct request *r, enum session_status why)
{
    metrics_auth(r->svc->metrics, AR_REJECTED, auth_reason(why));
    r->error = session_status_str(why);
    audit_reject(r, why);
    if (why == SESSION_MFA) {
        request_respond(r, 403, NULL, "multi-factor authentication required", false);
        return;
    }
    const char *login = sess_cfg(r)->login_url;
    if (r->route->browser && login) {
        char target[2048], extra[2600];
        url_encode(r->h.target.p, r->h.target.len, target, sizeof target);
        snprintf(extra, sizeof extra, "Location: %s%sreturn_to=%s\r\n", login,
                 strchr(login, '?') ? "&" : "?", target);
        request_respond(r, 302, extra, NULL, false);
        return;
    }
    const char *extra =
        why == SESSION_MISSING
            ? "WWW-Authenticate: Bearer realm=\"moat\"\r\n"
            : "WWW-Authenticate: Bearer realm=\"moat\", error=\"invalid_token\"\r\n";
    request_respond(r, 401, extra, NULL, false);
}

static enum phase_result decide(struct request *r, enum session_status st);

/* Says why sessions fail closed (e.g. "AUTH failed: WRONGPASS ..."; the client
 * never puts the password in it), at most every 10 s per worker unless the
 * reason changes. Nothing else logs the session store's connection errors. */
static void log_store_unavailable(const struct services *svc, const char *why)
{
    static _Thread_local uint64_t last_ms;
    static _Thread_local char last[300];
    /* the client's last error only explains a connection that is not up (it is
     * kept after a reconnect, so it says nothing about an error reply) */
    const char *detail = !svc->redis ? "no client"
                         : redis_client_state(svc->redis) != REDIS_STATE_CONNECTED
                             ? redis_client_last_error(svc->redis)
                             : "";
    char msg[300];
    snprintf(msg, sizeof msg, "%s%s%s", why, detail[0] ? ": " : "", detail);
    uint64_t now = now_ms();
    if (last_ms && now - last_ms < 10000 && strcmp(msg, last) == 0)
        return;
    last_ms = now;
    snprintf(last, sizeof last, "%s", msg);
    log_msg(LOG_ERROR, "worker %d: auth: session store unavailable, failing closed: %s",
            svc->worker_id, msg);
}

/* Redis cannot answer: known sessions within stale_grace continue, others get 503. */
static enum phase_result store_unavailable(struct request *r, const char *why)
{
    struct services *svc = r->svc;
    enum session_status st;
    uint64_t grace = sess_cfg(r)->stale_grace_ms;
    if (grace && svc->auth_cache &&
        auth_cache_get(svc->auth_cache, r->ident.token_sha, now_ms(), grace, &st, &r->ident) &&
        st == SESSION_OK && (r->ident.exp == 0 || r->ident.exp > (int64_t)time(NULL))) {
        r->ident.authenticated = true;
        return decide(r, st); /* the route's MFA requirement still holds */
    }
    metrics_auth(svc->metrics, AR_ERROR, AN_STORE_UNAVAILABLE);
    log_store_unavailable(svc, why);
    if (r->route->auth == AUTH_OPTIONAL) {
        memset(r->ident.tenant, 0, sizeof r->ident.tenant);
        r->ident.authenticated = false; /* anonymous: no identity headers at all */
        return PHASE_CONTINUE;
    }
    r->error = why;
    request_respond(r, 503, "Retry-After: " RETRY_AFTER_S "\r\n", "session store unavailable",
                    false);
    return PHASE_RESPOND;
}

/* The final decision once the session is known; CONTINUE or RESPOND. */
static enum phase_result decide(struct request *r, enum session_status st)
{
    if (st == SESSION_OK && r->route->mfa_required && !r->ident.mfa)
        st = SESSION_MFA;
    if (st == SESSION_OK) {
        metrics_auth(r->svc->metrics, AR_ACCEPTED, AN_OK);
        return PHASE_CONTINUE;
    }
    if (r->route->auth == AUTH_OPTIONAL && st != SESSION_MFA) {
        metrics_auth(r->svc->metrics, AR_ANONYMOUS, auth_reason(st));
        r->ident.authenticated = false;
        return PHASE_CONTINUE;
    }
    r->ident.authenticated = false;
    reject(r, st);
    return PHASE_RESPOND;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t positive_ttl(const struct config_sessions *cfg, int64_t exp)
{
    uint64_t ttl = cfg->cache_ttl_ms;
    /* in ms: whole seconds would keep a session up to 1 s past its exp */
    int64_t left = exp > 0 && exp < INT64_MAX / 1000 ? exp * 1000 - wall_ms() : -1;
    if (exp > 0 && left < 0)
        left = 0;
    if (left >= 0 && (uint64_t)left < ttl)
        ttl = (uint64_t)left; /* never cache past the session's own end */
    return ttl;
}

/* Errors a request can trigger: logged at most once per LOG_LIMIT_MS per worker. */
static _Thread_local struct log_limit redis_error_log, malformed_log;

static void on_session(redisReply *reply, const char *err, void *arg)
{
    struct request *r = arg;
    struct stream_hold hold = request_hold(r);
    r->pending = NULL;
    r->cancel_pending = NULL;
    services_noperm_note(r->svc, SVC_NOPERM_HGETALL, err ? NULL : reply); /* for /readyz */
    enum phase_result res;
    if (err || reply->type == REDIS_REPLY_ERROR) {
        if (!err)
            log_msg_limited(&redis_error_log, LOG_ERROR, "auth: redis error: %.*s", (int)reply->len,
                            reply->str);
        res = store_unavailable(r, err ? err : "redis error reply");
    } else {
        int64_t exp = 0;
        enum session_status st = session_parse_reply(reply, (int64_t)time(NULL), &r->ident, &exp);
        if (st == SESSION_INVALID)
            log_msg_limited(&malformed_log, LOG_WARN,
                            "auth: malformed session record (field %s) for request %s",
                            r->ident.invalid_field ? r->ident.invalid_field : "?", r->id);
        const struct config_sessions *cfg = sess_cfg(r);
        uint64_t ttl = st == SESSION_OK ? positive_ttl(cfg, exp) : cfg->negative_cache_ttl_ms;
        if (r->svc->auth_cache)
            auth_cache_put(r->svc->auth_cache, r->ident.token_sha, st, &r->ident, now_ms(), ttl,
                           r->auth_epoch); /* not if revoked meanwhile: this reply may predate it */
        res = decide(r, st);
    }
    if (res == PHASE_CONTINUE)
        pipeline_resume(r);
    stream_release(hold);
}

static void cancel_lookup(struct request *r)
{
    redis_cancel(r->pending);
    r->pending = NULL;
    r->cancel_pending = NULL;
}

/* The cache may answer unless push revocation is configured but not flowing. */
static bool cache_usable(const struct services *svc, const struct config_sessions *cfg)
{
    return svc->auth_cache && (!cfg->push_revocation || revocation_live(svc->revocation));
}

static enum phase_result lookup(struct request *r)
{
    struct services *svc = r->svc;
    const struct config_sessions *cfg = sess_cfg(r);
    if (cache_usable(svc, cfg)) {
        enum session_status st;
        if (auth_cache_get(svc->auth_cache, r->ident.token_sha, now_ms(), 0, &st, &r->ident) ==
            AUTH_CACHE_FRESH) {
            metrics_inc(svc->metrics, M_AUTH_CACHE_HIT);
            r->ident.authenticated = st == SESSION_OK;
            return decide(r, st);
        }
    }
    if (svc->auth_cache)
        r->auth_epoch = auth_cache_epoch(svc->auth_cache); /* before the question leaves */
    char key[320];
    int klen = snprintf(key, sizeof key, "%s%s", cfg->key_prefix, r->ident.token_hash);
    const char *argv[] = {"HGETALL", key};
    size_t lens[] = {7, (size_t)klen};
    r->pending =
        svc->redis ? redis_command_key(svc->redis, key, (size_t)klen, on_session, r, 2, argv, lens)
                   : NULL;
    if (!r->pending)
        return store_unavailable(r, "session store down");
    r->cancel_pending = cancel_lookup;
    return PHASE_SUSPEND;
}

enum phase_result auth_phase(struct request *r)
{
    if (r->route->auth == AUTH_NONE)
        return PHASE_CONTINUE;
    struct http1_str token = {0};
    enum session_status st =
        session_token_find(sess_cfg(r), r->h.headers, r->h.num_headers, &token);
    if (st == SESSION_MISSING && r->route->auth == AUTH_OPTIONAL) {
        metrics_auth(r->svc->metrics, AR_ANONYMOUS, AN_MISSING);
        return PHASE_CONTINUE;
    }
    if (st != SESSION_OK)
        return decide(r, st);
    session_token_hash(token, r->ident.token_sha, r->ident.token_hash);
    return lookup(r);
}
