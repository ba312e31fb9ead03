#include "observe/accesslog.h"

#include <string.h>
#include <time.h>

#include "config/config.h"
#include "util/jsonw.h"
#include "observe/log.h"
#include "http/request.h"
#include "core/services.h"
#include "observe/metrics.h"

/* Longest User-Agent logged; the rest is cut (a log line is bounded). */
#define UA_MAX 256

/* What the client said about itself, and which route took it. */
static void add_client(struct jsonw *j, const struct request *r)
{
    const struct http1_header *ua = http1_find_header(r->h.headers, r->h.num_headers, "User-Agent");
    if (ua)
        jsonw_strn(j, "user_agent", ua->value.p, ua->value.len < UA_MAX ? ua->value.len : UA_MAX);
    if (r->peer->sni && strcmp(r->peer->sni, "-"))
        jsonw_str(j, "sni", r->peer->sni);
    if (r->route)
        jsonw_str(j, "route", r->route->id); /* routes[].id: stable across reloads */
}

static void add_identity(struct jsonw *j, const struct request *r)
{
    if (!r->ident.authenticated)
        return;
    jsonw_str(j, "tenant", r->ident.tenant);
    jsonw_str(j, "user", r->ident.user);
}

void accesslog_request(struct request *r)
{
    if (r->logged)
        return;
    r->logged = true;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    metrics_request(r->svc->metrics, r->route ? r->route->metrics_slot : METRICS_SLOT_NONE,
                    r->peer->h2, r->status, hist_us_between(&r->t_start, &now));
    metrics_add(r->svc->metrics, M_BYTES_OUT, (int64_t)r->bytes_out);
    if (!log_access_enabled())
        return;
    const struct client_peer *c = r->peer;
    char line[4096];
    struct jsonw j;
    jsonw_begin(&j, line, sizeof line);
    jsonw_time(&j, "time");
    jsonw_str(&j, "request_id", r->id);
    if (r->trace_id[0])
        jsonw_str(&j, "trace_id", r->trace_id);
    jsonw_str(&j, "client_ip", request_client_ip(r));
    jsonw_str(&j, "protocol", request_protocol(r));
    jsonw_strn(&j, "method", r->h.method.p, r->h.method.len);
    jsonw_strn(&j, "host", r->h.host.p, r->h.host.len);
    jsonw_strn(&j, "path", r->h.path.p, r->h.path.len);
    if (r->cfg->log.access_query && r->h.query.len) /* off by default: tokens ride in queries */
        jsonw_strn(&j, "query", r->h.query.p, r->h.query.len);
    jsonw_int(&j, "status", r->status);
    jsonw_uint(&j, "bytes_in", r->bytes_in);
    jsonw_uint(&j, "bytes_out", r->bytes_out);
    /* null when nothing was forwarded (refused before the proxy: 401, 429...) */
    jsonw_str(&j, "upstream", r->upstream && r->upstream_addr[0] ? r->upstream->name : NULL);
    jsonw_str(&j, "upstream_addr", r->upstream_addr[0] ? r->upstream_addr : NULL);
    jsonw_double(&j, "upstream_time_ms", r->upstream_ms);
    jsonw_double(&j, "total_time_ms", request_ms_between(&r->t_start, &now));
    jsonw_str(&j, "tls_version", c->tls_version);
    jsonw_str(&j, "tls_cipher", c->tls_cipher);
    if (c->client_subject)
        jsonw_str(&j, "tls_client_subject", c->client_subject);
    add_client(&j, r);
    add_identity(&j, r);
    if (r->error)
        jsonw_str(&j, "error", r->error);
    size_t n = jsonw_end(&j);
    log_access_append(r->svc->access_log, line, n);
}
