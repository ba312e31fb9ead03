/*
 * ratelimit_global: rate-limit decisions shared by every moat instance in
 * front of one Redis (scope: global), one EVALSHA of the GCRA script per
 * decision, plus the instance heartbeat that tells each instance how many
 * live instances share a limit (for the local fallback during an outage).
 */
#ifndef MOAT_RATELIMIT_GLOBAL_H
#define MOAT_RATELIMIT_GLOBAL_H

#include <stdbool.h>
#include <stdint.h>

struct worker;
struct redis_client;
struct rl_global;

struct rl_global *rl_global_new(struct worker *w, struct redis_client *rc);
void rl_global_free(struct rl_global *g);

#endif
