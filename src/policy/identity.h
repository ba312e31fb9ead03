/*
 * identity: the headers moat owns (DESIGN.md "Headers moat owns").
 *
 * Request side (the identity phase): every client-supplied identity header is
 * dropped in every spelling an upstream could read as the same name (any
 * case, '_' for '-', surrounding whitespace, duplicates), and so are
 * look-alikes of the framing headers and URL/method override headers;
 * X-Forwarded-*, the other client-address headers (Forwarded, X-Real-IP,
 * True-Client-IP...) and X-Request-ID are dropped unless the peer is a
 * trusted proxy; headers named in Connection are dropped. Then moat adds
 * X-Request-ID, X-Forwarded-For/Proto/Host, the session identity
 * (X-Tenant-ID, X-User-ID, X-Session-MFA) and X-Moat-Signature.
 *
 * Response side: hop-by-hop headers and the configured strip list are
 * removed so an upstream cannot leak internal details to the client.
 */
#ifndef MOAT_IDENTITY_H
#define MOAT_IDENTITY_H

#include <stdbool.h>

#include "http/http1.h"
#include "policy/pipeline.h"

struct config;

/* Framing and hop-by-hop headers moat always rewrites itself (RFC 9110 §7.6.1). */
bool identity_is_hop_by_hop(struct http1_str name);
/* True when name is one of the comma-separated tokens of list (case-insensitive). */
bool identity_name_in_list(struct http1_str list, struct http1_str name);
/* True when a response header must not reach the client. */
bool identity_response_drop(const struct config *cfg, struct http1_str name);

/* Whether received header i goes upstream: not dropped by a phase, not hop-by-hop. */
bool identity_forwards(const struct request *r, size_t i);

enum phase_result identity_phase(struct request *r);

#endif
