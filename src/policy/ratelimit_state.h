/*
 * ratelimit_state: a request's progress through its route's rate-limit rules.
 * Owned by ratelimit.c; kept in the request so that an evaluation suspended
 * on Redis resumes at the right rule.
 */
#ifndef MOAT_RATELIMIT_STATE_H
#define MOAT_RATELIMIT_STATE_H

#include <stdbool.h>
#include <stdint.h>

struct config_rate_rule;

struct ratelimit_state {
    unsigned next;                       /* next rule to evaluate */
    bool post_auth;                      /* evaluating the rules keyed by session or tenant */
    bool have;                           /* a verdict is remembered (for the RateLimit-* headers) */
    const struct config_rate_rule *rule; /* the most restrictive verdict so far */
    uint64_t remaining;
    uint64_t reset_ms;
    char missing_key[56]; /* a header rule's key for a request without the header (missing: ip) */
};

#endif
