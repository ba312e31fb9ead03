/*
 * ratelimit: the rate-limit phases (per-route rules; DESIGN.md).
 *
 * Rules keyed by client IP or by a header run before auth, so a login brute
 * force is throttled without touching sessions; session and tenant rules run
 * after auth (anonymous requests have no such key and are not counted).
 * scope: local decides in the instance-wide table shared by all workers;
 * scope: global asks Redis (ratelimit_global.c) and, when Redis cannot answer,
 * applies the rule's on_store_error: local (rate/N, N live instances), deny
 * (503) or allow.
 *
 * Rejections: 429 with Retry-After and the IETF draft
 * draft-ietf-httpapi-ratelimit-headers-08 fields
 *   RateLimit-Policy: "<rule>";q=<burst>;w=<seconds to refill the burst>
 *   RateLimit: "<rule>";r=<remaining>;t=<seconds until full>
 * which allowed responses carry too when the route sets ratelimit_headers.
 */
#ifndef MOAT_RATELIMIT_H
#define MOAT_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "policy/gcra.h"
#include "policy/pipeline.h"

struct config;

/* The instance-wide local table; created by the main thread before workers start. */
int ratelimit_init(size_t max_keys);
void ratelimit_shutdown(void);
/* Drops idle keys; called about once a second by the main thread. */
void ratelimit_sweep(void);
/* Appends the local table's gauges and counters to a /metrics page. */
struct evbuffer;
void ratelimit_render_metrics(struct evbuffer *out);

/* A local decision for callers outside the phases (e.g. handshakes per IP). */
struct gcra_result ratelimit_local(const char *rule, const void *key, size_t keylen, double rate,
                                   uint64_t burst);

enum phase_result ratelimit_ip_phase(struct request *r);
enum phase_result ratelimit_identity_phase(struct request *r);

#endif
