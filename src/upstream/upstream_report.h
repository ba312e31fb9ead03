/*
 * upstream_report: what the admin listener shows of the upstream pools and
 * servers of one generation: their state now (upstream_state.h), configured
 * and effective weights, requests in flight, checks, ejections, retries and
 * admission. Reads atomics only: safe on the main thread while workers run.
 */
#ifndef MOAT_UPSTREAM_REPORT_H
#define MOAT_UPSTREAM_REPORT_H

#include <stdbool.h>

struct evbuffer;
struct snapshot;

/*
 * GET /upstreams: {"pools":[{"name","balance","in_flight","queued",
 * "retries_total","retries_denied_total","all_down_total","admission":{...},
 * "servers":[{"address","state","weight","effective_weight","in_flight",
 * "consecutive_errors","ejections_total","ejected_for_ms","draining",
 * "check":{"result","status","age_ms"} or null}]}]}
 */
void upstream_report_json(struct evbuffer *out, const struct snapshot *snap);

/* The moat_upstream_* Prometheus series (HELP and TYPE once per family). */
void upstream_report_metrics(struct evbuffer *out, const struct snapshot *snap);

/*
 * The admin's drain (drain true) or ready: sets or clears the server's drain
 * mark (a draining server gets no new requests; those in flight finish). The
 * mark lives in the instance-wide state, so it survives reloads that keep the
 * server. pool: a pool name, server: its address as configured. Logs and
 * audits the change. NULL on success (*state: the server's state now), else
 * "unknown pool" or "unknown server".
 */
const char *upstream_set_draining(const struct snapshot *snap, const char *pool, const char *server,
                                  bool drain, const char **state);

#endif
