#include "core/worker_ext.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/auth_cache.h"
#include "config/config.h"
#include "observe/log.h"
#include "policy/ratelimit_global.h"
#include "redis/redis.h"
#include "policy/revocation.h"
#include "core/snapshot.h"
#include "core/worker.h"

static void redis_options_from(const struct config *cfg, struct redis_options *o)
{
    const struct config_redis *rc = &cfg->redis;
    memset(o, 0, sizeof *o);
    o->host = rc->address.host;
    o->port = rc->address.port;
    o->unix_path = rc->address.path;
    o->username = rc->username;
    o->password_file = rc->password_file;
    o->password_env = rc->password_env;
    o->tls = rc->tls.enabled;
    o->tls_ca = rc->tls.ca;
    o->tls_server_name = rc->tls.server_name;
    o->tls_verify = rc->tls.verify;
    o->tls_cert = rc->tls.cert;
    o->tls_key = rc->tls.key;
    o->timeout_ms = rc->timeout_ms;
    o->connect_timeout_ms = rc->connect_timeout_ms;
    o->database = rc->database;
    o->client_name = "moat";
}

/* A fingerprint of everything that needs new connections when it changes. */
static char *redis_fingerprint(const struct config *cfg)
{
    const struct config_redis *rc = &cfg->redis;
    char buf[2048];
    snprintf(buf, sizeof buf, "%s|%s|%s|%s|%d|%s|%s|%d|%s|%s|%llu|%llu|%d|%d|%s|%llu|%llu|%s",
             rc->address.text, rc->username ? rc->username : "",
             rc->password_file ? rc->password_file : "", rc->password_env ? rc->password_env : "",
             rc->tls.enabled, rc->tls.ca ? rc->tls.ca : "",
             rc->tls.server_name ? rc->tls.server_name : "", rc->tls.verify,
             rc->tls.cert ? rc->tls.cert : "", rc->tls.key ? rc->tls.key : "",
             (unsigned long long)rc->timeout_ms, (unsigned long long)rc->connect_timeout_ms,
             rc->database, cfg->sessions.push_revocation, cfg->sessions.key_prefix,
             (unsigned long long)cfg->ratelimit.redis_timeout_ms,
             (unsigned long long)cfg->ratelimit.heartbeat_ms, cfg->ratelimit.key_prefix);
    /* ratelimit settings are part of it: the rate-limit client is built from them */
    return strdup(buf);
}

static void stop_clients(struct worker *w)
{
    rl_global_free(w->svc.rl_global);
    w->svc.rl_global = NULL;
    revocation_stop(w->svc.revocation);
    w->svc.revocation = NULL;
    redis_client_free(w->svc.redis);
    w->svc.redis = NULL;
    free(w->svc.redis_key);
    w->svc.redis_key = NULL;
}

/* Ops learn of a broken Redis (wrong password, bad certificate) even when idle. */
static void on_redis_state(enum redis_state st, void *arg)
{
    struct worker *w = arg;
    static _Thread_local int logged = -1; /* each worker is its own thread */
    if (st == REDIS_STATE_CONNECTING || (int)(st == REDIS_STATE_CONNECTED) == logged)
        return; /* reconnect attempts while down are not news */
    logged = st == REDIS_STATE_CONNECTED;
    if (logged)
        log_msg(LOG_INFO, "worker %d: redis: connected", w->id);
    else
        log_msg(LOG_WARN, "worker %d: redis: down: %s", w->id,
                redis_client_last_error(w->svc.redis));
}

static int start_clients(struct worker *w, const struct config *cfg, char *err, size_t errlen)
{
    struct redis_options o;
    redis_options_from(cfg, &o);
    w->svc.redis = redis_client_new(w->base, &o, err, errlen);
    if (!w->svc.redis)
        return -1;
    redis_client_on_state(w->svc.redis, on_redis_state, w);
    if (cfg->sessions.push_revocation) {
        w->svc.revocation = revocation_start(&w->svc, &o, cfg->sessions.key_prefix, err, errlen);
        if (!w->svc.revocation)
            return -1;
    }
    w->svc.rl_global = rl_global_new(&w->svc, cfg, &o, err, errlen);
    if (!w->svc.rl_global)
        return -1;
    w->svc.redis_key = redis_fingerprint(cfg);
    return 0;
}

int worker_ext_init(struct worker *w, char *err, size_t errlen)
{
    const struct config *cfg = w->gen->snap->cfg;
    w->svc.auth_cache = auth_cache_new(cfg->sessions.cache_size);
    if (!w->svc.auth_cache) {
        snprintf(err, errlen, "out of memory for the session cache");
        return -1;
    }
    if (!cfg->redis_enabled)
        return 0;
    if (start_clients(w, cfg, err, errlen) < 0) {
        stop_clients(w);
        return -1;
    }
    return 0;
}

void worker_ext_reload(struct worker *w)
{
    const struct config *cfg = w->gen->snap->cfg;
    struct auth_cache *cache = auth_cache_new(cfg->sessions.cache_size);
    if (cache) { /* decisions may depend on the old sessions config: start afresh */
        auth_cache_free(w->svc.auth_cache);
        w->svc.auth_cache = cache;
    } else {
        auth_cache_clear(w->svc.auth_cache);
    }
    char *fp = cfg->redis_enabled ? redis_fingerprint(cfg) : NULL;
    bool same =
        (!fp && !w->svc.redis_key) || (fp && w->svc.redis_key && !strcmp(fp, w->svc.redis_key));
    free(fp);
    if (same)
        return;
    stop_clients(w);
    char err[256];
    if (cfg->redis_enabled && start_clients(w, cfg, err, sizeof err) < 0) {
        log_msg(LOG_ERROR, "worker %d: redis: %s (sessions fail closed until fixed)", w->id, err);
        stop_clients(w);
    }
}

void worker_ext_drain(struct worker *w)
{
    rl_global_leave(w->svc.rl_global);
}

void worker_ext_free(struct worker *w)
{
    stop_clients(w);
    auth_cache_free(w->svc.auth_cache);
    w->svc.auth_cache = NULL;
}
