#include "policy/route.h"

#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "http/request.h"
#include "observe/audit.h"
#include "util/jsonw.h"
#include "core/snapshot.h"

/* The host part of a Host header value: "[v6]:port" -> "[v6]", "name:port" -> "name". */
static struct http1_str host_only(struct http1_str host)
{
    if (host.len && host.p[0] == '[') {
        const char *end = memchr(host.p, ']', host.len);
        if (end)
            host.len = (size_t)(end - host.p) + 1;
        return host;
    }
    /* no Host (HTTP/1.0): p may be NULL, which memchr must not see even for 0 bytes */
    const char *colon = host.len ? memchr(host.p, ':', host.len) : NULL;
    if (colon)
        host.len = (size_t)(colon - host.p);
    if (host.len && host.p[host.len - 1] == '.') /* "example.com." is "example.com" */
        host.len--;
    return host;
}

bool route_host_matches(const char *pattern, struct http1_str host)
{
    if (!pattern)
        return true;
    host = host_only(host);
    size_t plen = strlen(pattern);
    if (pattern[0] == '*' && pattern[1] == '.') {
        size_t slen = plen - 1; /* ".suffix" */
        return host.len > slen && strncasecmp(host.p + host.len - slen, pattern + 1, slen) == 0;
    }
    return host.len == plen && strncasecmp(host.p, pattern, plen) == 0;
}

bool route_path_matches(const char *prefix, struct http1_str path)
{
    size_t n = strlen(prefix);
    /* case-insensitive: an app on IIS, or Spring/ASP.NET routing configured so,
     * serves "/ADMIN" as "/admin"; the path is canonical (path.h), so ASCII
     * folding is the only one left to apply */
    if (path.len < n || strncasecmp(path.p, prefix, n) != 0)
        return false;
    return path.len == n || prefix[n - 1] == '/' || path.p[n] == '/';
}

const struct config_route *route_match(const struct config *cfg, struct http1_str host,
                                       struct http1_str path)
{
    for (size_t i = 0; i < cfg->num_routes; i++) {
        const struct config_route *rt = &cfg->routes[i];
        if (route_host_matches(rt->host, host) && route_path_matches(rt->path_prefix, path))
            return rt;
    }
    return NULL;
}

enum phase_result route_phase(struct request *r)
{
    const struct config *cfg = r->cfg;
    r->route = route_match(cfg, r->h.host, r->h.path);
    if (!r->route) {
        r->error = "no route";
        request_respond(r, 404, NULL, NULL, false);
        return PHASE_RESPOND;
    }
    r->upstream = r->route->up;
    return PHASE_CONTINUE;
}

static bool tenant_allowed(const struct config_route *rt, const char *tenant)
{
    if (!rt->tenants)
        return true;
    for (size_t i = 0; i < rt->num_tenants; i++)
        if (!strcmp(rt->tenants[i], tenant))
            return true;
    return false;
}

static bool upstream_is_dedicated(const struct config *cfg, const struct config_upstream *u)
{
    for (size_t i = 0; i < cfg->num_tenants; i++)
        if (cfg->tenants[i].up == u)
            return true;
    return false;
}

/*
 * Tenant isolation: a pinned tenant goes only to its own upstream; a route
 * restricted to tenants refuses others; nobody else reaches a dedicated
 * upstream, whatever the route says.
 */
/* A cross-tenant attempt: audited (tenant, route, reason), then 403. */
static enum phase_result refuse_tenant(struct request *r, const char *tenant, const char *why)
{
    char buf[1024];
    struct jsonw j;
    audit_begin(&j, buf, sizeof buf, "tenant_refused", r);
    jsonw_str(&j, "tenant", tenant ? tenant : "");
    jsonw_str(&j, "route", r->route->id);
    jsonw_str(&j, "upstream", r->upstream ? r->upstream->name : "");
    jsonw_str(&j, "reason", why);
    audit_emit(&j);
    r->error = why;
    request_respond(r, 403, NULL, NULL, false);
    return PHASE_RESPOND;
}

enum phase_result route_tenant_phase(struct request *r)
{
    const struct config *cfg = r->cfg;
    const char *tenant = r->ident.authenticated ? r->ident.tenant : NULL;
    if (r->route->tenants && (!tenant || !tenant_allowed(r->route, tenant)))
        return refuse_tenant(r, tenant, "tenant not allowed on this route");
    const struct config_tenant *t = tenant ? config_find_tenant(cfg, tenant, strlen(tenant)) : NULL;
    if (t) {
        r->upstream = t->up;
        return PHASE_CONTINUE;
    }
    if (upstream_is_dedicated(cfg, r->upstream))
        return refuse_tenant(r, tenant, "dedicated upstream of another tenant");
    return PHASE_CONTINUE;
}
