/*
 * services: what a worker offers the request path (its Redis client, session
 * cache, push revocation, global rate limiter, metrics), without the worker.
 * Phases reach them through the request (r->svc) and never include worker.h;
 * the worker owns them and builds, reloads, drains and frees them with the
 * four calls below, which run services.c's table of services in order (free
 * in reverse order).
 */
#ifndef MOAT_SERVICES_H
#define MOAT_SERVICES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "redis/redis.h"

struct event_base;
struct metrics;
struct log_buffer;
struct redis_client;
struct auth_cache;
struct revocation;
struct rl_global;
struct config;
struct services_redis_conf;

/* The Redis state last logged ("connected" / "down"), so that only changes are news. */
enum services_redis_logged {
    SVC_REDIS_LOGGED_NONE = 0,
    SVC_REDIS_LOGGED_DOWN,
    SVC_REDIS_LOGGED_UP
};

/*
 * Commands moat needs that Redis refused for lack of permission (a NOPERM reply, or
 * a command of the rate-limit script refused by the ACL): one bit per command and
 * feature in services.redis_noperm, set by such a refusal and cleared by the next
 * reply of that command that is not one (a rate-limit decision clears the three
 * rate-limit bits); /readyz names the bits set.
 */
enum services_noperm {
    SVC_NOPERM_HGETALL = 1u << 0,   /* sessions */
    SVC_NOPERM_EVALSHA = 1u << 1,   /* global rate limits */
    SVC_NOPERM_EVAL = 1u << 2,      /* ... after NOSCRIPT */
    SVC_NOPERM_SCRIPT = 1u << 3,    /* ... a command the GCRA script calls */
    SVC_NOPERM_TRACKING = 1u << 4,  /* push revocation: CLIENT TRACKING */
    SVC_NOPERM_SUBSCRIBE = 1u << 5, /* ... SUBSCRIBE __redis__:invalidate */
};
#define SVC_NOPERM_BITS 6

struct services {
    int worker_id; /* for log lines: "worker N: ..." */
    struct event_base *base;
    struct metrics *metrics;
    struct log_buffer *access_log; /* the worker's access-log lines, flushed by its tick */
    struct redis_client *redis;    /* sessions; NULL without redis */
    struct auth_cache *auth_cache; /* session decisions */
    struct revocation *revocation; /* push invalidation, when enabled */
    struct rl_global *rl_global;   /* global rate limits (EVALSHA) */
    /* What the Redis clients were built from; NULL while there are none. */
    struct services_redis_conf *redis_conf;
    enum services_redis_logged redis_logged;
    /* The session client is connected; read by the main thread for /readyz. */
    atomic_bool redis_up;
    /* enum services_noperm bits; written by the worker, read for /readyz. */
    atomic_uint redis_noperm;
};

/* Records whether the reply of which's command was a permission refusal (NULL:
 * no reply, nothing learnt). True when it was. */
bool services_noperm_note(struct services *svc, enum services_noperm which,
                          const struct redisReply *reply);
/* What one bit means, for /readyz: "NOPERM for evalsha (global rate limits)". */
const char *services_noperm_str(enum services_noperm bit);

/*
 * Builds every service for cfg. The caller has filled worker_id, base, metrics
 * and access_log. Returns 0, or -1 with a message in err (what was built is
 * freed again; services_free() is still safe).
 */
int services_init(struct services *svc, const struct config *cfg, char *err, size_t errlen);
/*
 * A new config is in use: the session cache starts afresh, and the Redis
 * clients are rebuilt when what they were built from changed. A failure is
 * logged and leaves the Redis services off (sessions fail closed until fixed).
 */
void services_reload(struct services *svc, const struct config *cfg);
/* Drain started: say goodbye where others keep count of us (heartbeat). */
void services_drain(struct services *svc);
/* Frees every service, in reverse order; safe on partly built or freed services. */
void services_free(struct services *svc);

/*
 * The parsed config fields the Redis clients are built from, copied (they
 * outlive the config they came from). Exposed for tests.
 * services_redis_conf_copy: NULL when out of memory.
 * services_redis_conf_diff: NULL when cfg builds the same clients as conf
 * (conf NULL: no clients); otherwise the name of a field that differs
 * ("redis" when Redis was switched on or off).
 */
/* What the Redis clients are built from (also by moat -t --preflight); o.sentinel points
 * at so in sentinel mode, o.cluster at co in cluster mode; the strings are cfg's. */
struct services_redis_opts {
    struct redis_options o;
    struct redis_sentinel_options so;
    struct redis_cluster_options co;
};
void services_redis_options(const struct config *cfg, struct services_redis_opts *ro);

struct services_redis_conf *services_redis_conf_copy(const struct config *cfg);
void services_redis_conf_free(struct services_redis_conf *conf);
const char *services_redis_conf_diff(const struct services_redis_conf *conf,
                                     const struct config *cfg);

#endif
