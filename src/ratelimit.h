/*
 * ratelimit: the rate-limit phases. IP rules run before routing to auth (so a
 * login brute force is throttled without touching sessions); session, tenant
 * and header rules run after auth.
 */
#ifndef MOAT_RATELIMIT_H
#define MOAT_RATELIMIT_H

#include "pipeline.h"

enum phase_result ratelimit_ip_phase(struct request *r);
enum phase_result ratelimit_identity_phase(struct request *r);

#endif
