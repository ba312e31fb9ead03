/*
 * route: picks the route for a request (host, then path prefix, first match
 * wins) and the upstream it goes to: a tenant pinned to a dedicated upstream
 * goes only there, and no other tenant's request reaches a dedicated upstream.
 */
#ifndef MOAT_ROUTE_H
#define MOAT_ROUTE_H

#include <stdbool.h>

#include "http/http1.h"
#include "policy/pipeline.h"

struct config;
struct config_route;

/* Host matching: exact (case-insensitive, port ignored) or "*.suffix" (one or more labels). */
bool route_host_matches(const char *pattern, struct http1_str host);
/* Path prefix matching at a segment boundary, ASCII case-insensitive: "/api" matches "/api",
 * "/API/x", not "/apix". path must be canonical (path_problem() NULL, checked by the limits
 * phase), so no other spelling of the prefix can reach another route. */
bool route_path_matches(const char *prefix, struct http1_str path);
const struct config_route *route_match(const struct config *cfg, struct http1_str host,
                                       struct http1_str path);

enum phase_result route_phase(struct request *r);
enum phase_result route_tenant_phase(struct request *r);

#endif
