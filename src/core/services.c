#include "core/services.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "observe/log.h"
#include "observe/metrics.h"
#include "policy/auth_cache.h"
#include "policy/ratelimit_global.h"
#include "policy/revocation.h"
#include "redis/redis.h"

/* ---- what the Redis clients are built from ------------------------------------------- */

enum field_kind { FIELD_STR, FIELD_BOOL, FIELD_INT, FIELD_U64 };

/* One parsed config field the Redis clients depend on. */
struct redis_field {
    const char *name; /* the member path in struct config, for tests and logs */
    enum field_kind kind;
    size_t off; /* in struct config */
};

/* The kind follows from the member's type: a field of another type does not compile. */
#define FIELD_KIND(member)                                                                         \
    _Generic(((struct config *)0)->member,                                                         \
        char *: FIELD_STR,                                                                         \
        bool: FIELD_BOOL,                                                                          \
        int: FIELD_INT,                                                                            \
        uint64_t: FIELD_U64)
#define FIELD(m)                                                                                   \
    {                                                                                              \
        .name = #m, .kind = FIELD_KIND(m), .off = offsetof(struct config, m)                       \
    }

/*
 * Everything that needs new connections when it changes. The address text
 * stands for host, port and unix path (all parsed from it). The ratelimit
 * settings are here because the rate-limit client is built from them.
 */
static const struct redis_field redis_fields[] = {
    FIELD(redis.address.text),
    FIELD(redis.username),
    FIELD(redis.password_file),
    FIELD(redis.password_env),
    FIELD(redis.tls.enabled),
    FIELD(redis.tls.ca),
    FIELD(redis.tls.server_name),
    FIELD(redis.tls.verify),
    FIELD(redis.tls.cert),
    FIELD(redis.tls.key),
    FIELD(redis.timeout_ms),
    FIELD(redis.connect_timeout_ms),
    FIELD(redis.database),
    FIELD(sessions.push_revocation),
    FIELD(sessions.key_prefix),
    FIELD(ratelimit.redis_timeout_ms),
    FIELD(ratelimit.heartbeat_ms),
    FIELD(ratelimit.key_prefix),
    FIELD(redis.mode),
    FIELD(redis.sentinel.master_name),
    FIELD(redis.sentinel.username),
    FIELD(redis.sentinel.password_file),
    FIELD(redis.sentinel.password_env),
    FIELD(redis.sentinel.tls_set),
    FIELD(redis.sentinel.tls.enabled),
    FIELD(redis.sentinel.tls.ca),
    FIELD(redis.sentinel.tls.server_name),
    FIELD(redis.sentinel.tls.verify),
    FIELD(redis.sentinel.tls.cert),
    FIELD(redis.sentinel.tls.key),
    FIELD(redis.cluster.max_redirects),
};
#define NUM_REDIS_FIELDS (sizeof redis_fields / sizeof redis_fields[0])

union field_value {
    char *s; /* owned copy, or NULL */
    bool b;
    int i;
    uint64_t u;
};

/*
 * A copy of the fields rather than a reference to the snapshot they came
 * from. The clients live through every reload that leaves these settings
 * alone, so a reference would pin the oldest such generation all that time:
 * its whole config, TLS contexts and private keys, including keys ops rotated
 * out. The copy is a few short strings owned by the services and freed with
 * the clients: no lifetime shared with anything else, nothing to get wrong.
 */
struct services_redis_conf {
    bool enabled;
    union field_value v[NUM_REDIS_FIELDS];
    char *sentinels; /* sentinel addresses and cluster seeds as text (arrays: no field row) */
};

/* Addresses as one string "a,b,c", for the comparison; NULL when out of memory. */
static char *addrs_text(const struct config_addr *a, size_t n)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(a[i].text ? a[i].text : "") + 1;
    char *out = malloc(len);
    if (!out)
        return NULL;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(out, ",");
        strcat(out, a[i].text ? a[i].text : "");
    }
    return out;
}

/* redis.sentinel.addresses, then "|" and redis.cluster.seeds: both arrays (no field row). */
static char *sentinels_text(const struct config *cfg)
{
    char *s = addrs_text(cfg->redis.sentinel.addresses, cfg->redis.sentinel.num_addresses);
    char *k = addrs_text(cfg->redis.cluster.seeds, cfg->redis.cluster.num_seeds);
    char *out = s && k ? malloc(strlen(s) + strlen(k) + 2) : NULL;
    if (out)
        sprintf(out, "%s|%s", s, k);
    free(s);
    free(k);
    return out;
}

static const void *field_in(const struct config *cfg, const struct redis_field *f)
{
    return (const char *)cfg + f->off;
}

static bool str_equal(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool field_equal(const struct redis_field *f, const union field_value *kept,
                        const struct config *cfg)
{
    const void *p = field_in(cfg, f);
    switch (f->kind) {
    case FIELD_STR:
        return str_equal(kept->s, *(char *const *)p);
    case FIELD_BOOL:
        return kept->b == *(const bool *)p;
    case FIELD_INT:
        return kept->i == *(const int *)p;
    case FIELD_U64:
        return kept->u == *(const uint64_t *)p;
    }
    return false;
}

void services_redis_conf_free(struct services_redis_conf *conf)
{
    if (!conf)
        return;
    for (size_t i = 0; i < NUM_REDIS_FIELDS; i++)
        if (redis_fields[i].kind == FIELD_STR)
            free(conf->v[i].s);
    free(conf->sentinels);
    free(conf);
}

struct services_redis_conf *services_redis_conf_copy(const struct config *cfg)
{
    struct services_redis_conf *conf = calloc(1, sizeof *conf);
    if (!conf)
        return NULL;
    conf->enabled = cfg->redis_enabled;
    if (!(conf->sentinels = sentinels_text(cfg))) {
        free(conf);
        return NULL;
    }
    for (size_t i = 0; i < NUM_REDIS_FIELDS; i++) {
        const struct redis_field *f = &redis_fields[i];
        const void *p = field_in(cfg, f);
        union field_value *v = &conf->v[i];
        switch (f->kind) {
        case FIELD_STR: {
            const char *s = *(char *const *)p;
            if (s && !(v->s = strdup(s))) {
                services_redis_conf_free(conf);
                return NULL;
            }
            break;
        }
        case FIELD_BOOL:
            v->b = *(const bool *)p;
            break;
        case FIELD_INT:
            v->i = *(const int *)p;
            break;
        case FIELD_U64:
            v->u = *(const uint64_t *)p;
            break;
        }
    }
    return conf;
}

const char *services_redis_conf_diff(const struct services_redis_conf *conf,
                                     const struct config *cfg)
{
    bool was = conf && conf->enabled;
    if (was != cfg->redis_enabled)
        return "redis";
    if (!was)
        return NULL; /* no clients before or after: nothing else matters */
    for (size_t i = 0; i < NUM_REDIS_FIELDS; i++)
        if (!field_equal(&redis_fields[i], &conf->v[i], cfg))
            return redis_fields[i].name;
    char *now = sentinels_text(cfg);
    bool same = now && strcmp(now, conf->sentinels) == 0;
    free(now);
    return same ? NULL : "redis.sentinel.addresses or redis.cluster.seeds";
}

static void cluster_options_from(const struct config_redis *rc, struct redis_cluster_options *co)
{
    memset(co, 0, sizeof *co);
    for (size_t i = 0; i < rc->cluster.num_seeds && i < REDIS_CLUSTER_SEEDS_MAX; i++) {
        co->seeds[i].host = rc->cluster.seeds[i].host;
        co->seeds[i].port = rc->cluster.seeds[i].port;
        co->count++;
    }
    co->max_redirects = (unsigned)rc->cluster.max_redirects;
}

/* Sentinel connections: their own credentials; TLS as the data connection's
 * unless redis.sentinel.tls is given. */
static void sentinel_options_from(const struct config_redis *rc, struct redis_sentinel_options *so)
{
    const struct config_redis_sentinel *rs = &rc->sentinel;
    const struct config_tls_client *t = rs->tls_set ? &rs->tls : &rc->tls;
    memset(so, 0, sizeof *so);
    for (size_t i = 0; i < rs->num_addresses && i < REDIS_SENTINEL_MAX; i++) {
        so->addrs[i].host = rs->addresses[i].host;
        so->addrs[i].port = rs->addresses[i].port;
        so->count++;
    }
    so->master_name = rs->master_name;
    so->username = rs->username;
    so->password_file = rs->password_file;
    so->password_env = rs->password_env;
    so->tls = t->enabled;
    so->tls_ca = t->ca;
    so->tls_server_name = t->server_name;
    so->tls_verify = t->verify;
    so->tls_cert = t->cert;
    so->tls_key = t->key;
}

void services_redis_options(const struct config *cfg, struct services_redis_opts *ro)
{
    const struct config_redis *rc = &cfg->redis;
    struct redis_options *o = &ro->o;
    memset(o, 0, sizeof *o);
    if (rc->mode == REDIS_MODE_SENTINEL) {
        sentinel_options_from(rc, &ro->so);
        o->sentinel = &ro->so;
    } else if (rc->mode == REDIS_MODE_CLUSTER) {
        cluster_options_from(rc, &ro->co);
        o->cluster = &ro->co;
    } else {
        o->host = rc->address.host;
        o->port = rc->address.port;
        o->unix_path = rc->address.path;
    }
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

/* ---- permission refusals ------------------------------------------------------------------ */

/* NOPERM, or (Redis 7) a script whose command the caller's ACL refuses: "ERR The user
 * executing the script can't run this command or subcommand ...". */
static bool reply_is_refusal(const redisReply *r, bool *in_script)
{
    *in_script = false;
    if (r->type != REDIS_REPLY_ERROR || !r->str)
        return false;
    if (!strncmp(r->str, "NOPERM", 6))
        return true;
    *in_script = strstr(r->str, "can't run this command") != NULL;
    return *in_script;
}

bool services_noperm_note(struct services *svc, enum services_noperm which, const redisReply *reply)
{
    if (!reply)
        return false;
    bool in_script;
    bool refused = reply_is_refusal(reply, &in_script);
    unsigned bit = (unsigned)which;
    if (in_script) { /* EVAL / EVALSHA ran: the refusal is a command inside */
        atomic_fetch_and(&svc->redis_noperm, ~bit);
        bit = SVC_NOPERM_SCRIPT;
    }
    if (refused)
        atomic_fetch_or(&svc->redis_noperm, bit);
    else
        atomic_fetch_and(&svc->redis_noperm, ~bit);
    /* a rate-limit decision made: the feature works again (EVAL may well be refused
     * still, but it is not needed while the script stays loaded) */
    if ((which == SVC_NOPERM_EVALSHA || which == SVC_NOPERM_EVAL) &&
        reply->type != REDIS_REPLY_ERROR)
        atomic_fetch_and(&svc->redis_noperm,
                         ~(unsigned)(SVC_NOPERM_EVALSHA | SVC_NOPERM_EVAL | SVC_NOPERM_SCRIPT));
    return refused;
}

const char *services_noperm_str(enum services_noperm bit)
{
    switch (bit) {
    case SVC_NOPERM_HGETALL:
        return "NOPERM for hgetall (sessions)";
    case SVC_NOPERM_EVALSHA:
        return "NOPERM for evalsha (global rate limits)";
    case SVC_NOPERM_EVAL:
        return "NOPERM for eval (global rate limits after a Redis restart)";
    case SVC_NOPERM_SCRIPT:
        return "a command of the rate-limit script refused by the ACL (global rate limits)";
    case SVC_NOPERM_TRACKING:
        return "NOPERM for client|tracking (push revocation)";
    case SVC_NOPERM_SUBSCRIBE:
        return "NOPERM for subscribe (push revocation)";
    }
    return "?";
}

/* ---- the services ------------------------------------------------------------------------ */

static int cache_init(struct services *svc, const struct config *cfg, char *err, size_t errlen)
{
    svc->auth_cache = auth_cache_new(cfg->sessions.cache_size);
    if (!svc->auth_cache) {
        snprintf(err, errlen, "out of memory for the session cache");
        return -1;
    }
    return 0;
}

/* Decisions may depend on the old sessions config: start afresh. */
static void cache_reload(struct services *svc, const struct config *cfg)
{
    struct auth_cache *cache = auth_cache_new(cfg->sessions.cache_size);
    if (cache) {
        auth_cache_free(svc->auth_cache);
        svc->auth_cache = cache;
    } else {
        auth_cache_clear(svc->auth_cache);
    }
}

static void cache_free(struct services *svc)
{
    auth_cache_free(svc->auth_cache);
    svc->auth_cache = NULL;
}

static void on_redis_latency(uint64_t us, void *arg)
{
    struct services *svc = arg;
    if (svc->metrics)
        metrics_redis_latency(svc->metrics, RR_SESSIONS, us);
}

/* Ops learn of a broken Redis (wrong password, bad certificate) even when idle. */
static void on_redis_state(enum redis_state st, void *arg)
{
    struct services *svc = arg;
    atomic_store(&svc->redis_up, st == REDIS_STATE_CONNECTED);
    if (svc->metrics)
        metrics_redis_connected(svc->metrics, RR_SESSIONS, st == REDIS_STATE_CONNECTED);
    if (st == REDIS_STATE_CONNECTING)
        return; /* reconnect attempts while down are not news */
    enum services_redis_logged now =
        st == REDIS_STATE_CONNECTED ? SVC_REDIS_LOGGED_UP : SVC_REDIS_LOGGED_DOWN;
    if (now == svc->redis_logged)
        return;
    svc->redis_logged = now;
    if (now == SVC_REDIS_LOGGED_UP)
        log_msg(LOG_INFO, "worker %d: redis: connected", svc->worker_id);
    else
        log_msg(LOG_WARN, "worker %d: redis: down: %s", svc->worker_id,
                redis_client_last_error(svc->redis));
}

/*
 * Sentinel mode: what the sessions client learns is counted and logged (the
 * revocation and rate-limit clients follow the same master on their own; one
 * line per worker and change is enough).
 */
static void on_redis_sentinel(enum redis_sentinel_event ev, const char *name, const char *was,
                              const char *now, void *arg)
{
    struct services *svc = arg;
    if (ev == REDIS_SENTINEL_QUERY) {
        if (svc->metrics)
            metrics_inc(svc->metrics, M_REDIS_SENTINEL_QUERIES);
        return;
    }
    if (!*was) {
        log_msg(LOG_INFO, "worker %d: redis: master %s is %s", svc->worker_id, name, now);
        return;
    }
    if (svc->metrics)
        metrics_inc(svc->metrics, M_REDIS_FAILOVERS);
    log_msg(LOG_WARN, "worker %d: redis: master %s is now %s (was %s)", svc->worker_id, name, now,
            was);
}

/* Cluster mode: redirects and maps of the sessions client (rate limits count their own). */
static void on_redis_cluster(enum redis_cluster_event ev, void *arg)
{
    struct services *svc = arg;
    static const enum metric m[] = {[REDIS_CLUSTER_MOVED] = M_REDIS_CLUSTER_MOVED,
                                    [REDIS_CLUSTER_ASK] = M_REDIS_CLUSTER_ASK,
                                    [REDIS_CLUSTER_REFRESH] = M_REDIS_CLUSTER_REFRESHES};
    if (svc->metrics)
        metrics_inc(svc->metrics, m[ev]);
}

static int redis_init(struct services *svc, const struct config *cfg, char *err, size_t errlen)
{
    struct services_redis_opts ro;
    services_redis_options(cfg, &ro);
    svc->redis = redis_client_new(svc->base, &ro.o, err, errlen);
    if (!svc->redis)
        return -1;
    redis_client_on_state(svc->redis, on_redis_state, svc);
    redis_client_on_latency(svc->redis, on_redis_latency, svc);
    if (svc->metrics)
        metrics_redis_client(svc->metrics, RR_SESSIONS, true);
    redis_client_on_sentinel(svc->redis, on_redis_sentinel, svc);
    redis_client_on_cluster(svc->redis, on_redis_cluster, svc);
    return 0;
}

static void redis_free(struct services *svc)
{
    redis_client_free(svc->redis);
    svc->redis = NULL;
    atomic_store(&svc->redis_up, false);
    if (svc->metrics)
        metrics_redis_client(svc->metrics, RR_SESSIONS, false);
}

static int revocation_init(struct services *svc, const struct config *cfg, char *err, size_t errlen)
{
    if (!cfg->sessions.push_revocation)
        return 0;
    struct services_redis_opts ro;
    services_redis_options(cfg, &ro);
    svc->revocation = revocation_start(svc, &ro.o, cfg->sessions.key_prefix, err, errlen);
    return svc->revocation ? 0 : -1;
}

static void revocation_free(struct services *svc)
{
    revocation_stop(svc->revocation);
    svc->revocation = NULL;
}

static int rl_global_init(struct services *svc, const struct config *cfg, char *err, size_t errlen)
{
    struct services_redis_opts ro;
    services_redis_options(cfg, &ro);
    svc->rl_global = rl_global_new(svc, cfg, &ro.o, err, errlen);
    return svc->rl_global ? 0 : -1;
}

static void rl_global_drain(struct services *svc)
{
    rl_global_leave(svc->rl_global);
}

static void rl_global_free_svc(struct services *svc)
{
    rl_global_free(svc->rl_global);
    svc->rl_global = NULL;
}

/*
 * One row per service, built in this order and freed in the reverse one.
 * init: 0, or -1 with a message in err. reload: brings the service in line
 * with a new config; NULL for the rows built on Redis, which are instead
 * rebuilt together (all or none) when what they were built from changes
 * (services_redis_conf_diff), and kept as they are otherwise. drain: NULL when
 * there is nothing to say. free: NULL-safe and repeatable.
 */
struct service {
    const char *name;
    bool on_redis; /* built only with a redis: section, from services_redis_conf */
    int (*init)(struct services *svc, const struct config *cfg, char *err, size_t errlen);
    void (*reload)(struct services *svc, const struct config *cfg);
    void (*drain)(struct services *svc);
    void (*free)(struct services *svc);
};

static const struct service service_table[] = {
    {"auth_cache", false, cache_init, cache_reload, NULL, cache_free},
    {"redis", true, redis_init, NULL, NULL, redis_free},
    {"revocation", true, revocation_init, NULL, NULL, revocation_free},
    {"rl_global", true, rl_global_init, NULL, rl_global_drain, rl_global_free_svc},
};
#define NUM_SERVICES (sizeof service_table / sizeof service_table[0])

/*
 * Frees the rows selected (the Redis ones, or all) below row end, last first.
 * No Redis row is left afterwards, so what they were built from goes too.
 */
static void free_rows(struct services *svc, size_t end, bool only_redis)
{
    for (size_t i = end; i-- > 0;)
        if (!only_redis || service_table[i].on_redis)
            service_table[i].free(svc);
    services_redis_conf_free(svc->redis_conf);
    svc->redis_conf = NULL;
}

/*
 * Builds the rows selected (the Redis ones, or all), in order: all or none (a
 * failure frees the ones built). The Redis rows are skipped without a redis:
 * section.
 */
static int init_rows(struct services *svc, const struct config *cfg, bool only_redis, char *err,
                     size_t errlen)
{
    if (cfg->redis_enabled && !(svc->redis_conf = services_redis_conf_copy(cfg))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < NUM_SERVICES; i++) {
        const struct service *s = &service_table[i];
        if ((only_redis && !s->on_redis) || (s->on_redis && !cfg->redis_enabled))
            continue;
        if (s->init(svc, cfg, err, errlen) < 0) {
            free_rows(svc, i, only_redis);
            return -1;
        }
    }
    return 0;
}

int services_init(struct services *svc, const struct config *cfg, char *err, size_t errlen)
{
    svc->redis_logged = SVC_REDIS_LOGGED_NONE;
    return init_rows(svc, cfg, false, err, errlen);
}

void services_reload(struct services *svc, const struct config *cfg)
{
    for (size_t i = 0; i < NUM_SERVICES; i++)
        if (service_table[i].reload)
            service_table[i].reload(svc, cfg);
    const char *changed = services_redis_conf_diff(svc->redis_conf, cfg);
    if (!changed)
        return;
    log_msg(LOG_DEBUG, "worker %d: %s changed: new redis connections", svc->worker_id, changed);
    free_rows(svc, NUM_SERVICES, true);
    char err[256];
    if (init_rows(svc, cfg, true, err, sizeof err) < 0)
        log_msg(LOG_ERROR, "worker %d: redis: %s (sessions fail closed until fixed)",
                svc->worker_id, err);
}

void services_drain(struct services *svc)
{
    for (size_t i = 0; i < NUM_SERVICES; i++)
        if (service_table[i].drain)
            service_table[i].drain(svc);
}

void services_free(struct services *svc)
{
    free_rows(svc, NUM_SERVICES, false);
}
