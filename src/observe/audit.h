/*
 * audit: security events as JSON lines on the audit log (one write each).
 * Every event has time, event and, when tied to a request, request_id,
 * trace_id, client_ip, method and path. Secrets (tokens, passwords) are never
 * passed in. With log.audit_key_file, lines are hash-chained and MAC'd
 * (audit_chain.h).
 */
#ifndef MOAT_AUDIT_H
#define MOAT_AUDIT_H

struct request;
struct jsonw;

/* Starts an event in buf; add fields with jsonw_*(); finish with audit_emit(). */
void audit_begin(struct jsonw *j, char *buf, unsigned long cap, const char *event,
                 const struct request *r);
void audit_emit(struct jsonw *j);

/* A one-field event: {"event":..., "detail":...}. */
void audit_simple(const char *event, const struct request *r, const char *detail);

#endif
