/*
 * services: what a worker offers the request path (its Redis client, session
 * cache, push revocation, global rate limiter, metrics), without the worker.
 * Phases reach them through the request (r->svc) and never include worker.h;
 * the worker owns them and builds, reloads and frees them.
 */
#ifndef MOAT_SERVICES_H
#define MOAT_SERVICES_H

struct event_base;
struct metrics;
struct log_buffer;
struct redis_client;
struct auth_cache;
struct revocation;
struct rl_global;

struct services {
    int worker_id; /* for log lines: "worker N: ..." */
    struct event_base *base;
    struct metrics *metrics;
    struct log_buffer *access_log; /* the worker's access-log lines, flushed by its tick */
    struct redis_client *redis;    /* sessions; NULL without redis */
    struct auth_cache *auth_cache; /* session decisions */
    struct revocation *revocation; /* push invalidation, when enabled */
    struct rl_global *rl_global;   /* global rate limits (EVALSHA) */
    char *redis_key;               /* the redis options the clients were made from */
};

#endif
