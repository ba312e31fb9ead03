/*
 * ratelimit_global: rate-limit decisions shared by every moat instance in
 * front of one Redis (scope: global): each request is decided atomically by
 * the GCRA script (EVALSHA; EVAL again on NOSCRIPT). The keys a worker meets in
 * one event-loop turn share one script call; requests for a key whose decision
 * is in flight wait and go together with the next one (n requests, the first k
 * that fit pass). Calls go on a dedicated per-worker connection
 * with the millisecond-scale ratelimit.redis_timeout, so Redis trouble never
 * slows traffic: while that connection is down decisions fail at once and the
 * caller falls back (on_store_error).
 *
 * Worker 0 also writes the instance heartbeat: a sorted set
 * <key_prefix>instances with one member per live moat instance, refreshed
 * every ratelimit.heartbeat and pruned after 3 beats, whose size N is the
 * number of instances sharing each global limit (rate/N during an outage).
 */
#ifndef MOAT_RATELIMIT_GLOBAL_H
#define MOAT_RATELIMIT_GLOBAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct services;
struct config;
struct config_rate_rule;
struct rl_global;
struct redis_options;

struct rl_global_result {
    bool allowed;
    uint64_t remaining;
    uint64_t retry_after_ms;
    uint64_t reset_after_ms;
};

/* res NULL: the store did not answer (timeout, error, connection lost). */
typedef void (*rl_global_fn)(const struct rl_global_result *res, void *arg);

/* Runs on svc->base; worker 0 (svc->worker_id) also writes the heartbeat. */
struct rl_global *rl_global_new(struct services *svc, const struct config *cfg,
                                const struct redis_options *o, char *err, size_t errlen);
void rl_global_free(struct rl_global *g);

/*
 * Starts one decision. Returns a handle for rl_global_cancel(), or NULL when
 * the store is unavailable right now (fn is then not called).
 */
void *rl_global_decide(struct rl_global *g, const struct config_rate_rule *rule, const char *key,
                       size_t keylen, const char *tenant, rl_global_fn fn, void *arg);
void rl_global_cancel(void *handle);

/* Drain: removes this instance from the heartbeat set so the others' N drops at once. */
void rl_global_leave(struct rl_global *g);

/* Live instances seen in the last heartbeat (>= 1; the last value is kept during outages). */
unsigned rl_global_instances(void);

#endif
