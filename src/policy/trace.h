/*
 * trace: W3C trace context for each request (a phase before any that audits).
 *
 * A valid `traceparent` (http/traceparent.h) is continued only when the peer
 * is one of identity.trusted_proxies; otherwise (absent, invalid, several,
 * untrusted peer) moat starts a new trace with a random trace-id. Either way
 * moat is a span of its own: the upstream receives `traceparent` with moat's
 * span id as parent-id, never the client's header. `tracestate` is forwarded
 * only from a trusted peer whose traceparent was accepted, at most
 * TRACESTATE_MAX bytes in all. r->trace_id feeds the access log and audit events.
 */
#ifndef MOAT_TRACE_H
#define MOAT_TRACE_H

#include "policy/pipeline.h"

enum phase_result trace_phase(struct request *r);

#endif
