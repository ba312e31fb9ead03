/*
 * metrics_tls: TLS handshakes by version and cipher, failed handshakes by a
 * bounded reason, and the notAfter of every loaded certificate.
 */
#ifndef MOAT_METRICS_TLS_H
#define MOAT_METRICS_TLS_H

#include <stdbool.h>

#include <openssl/ssl.h>

#include "observe/metrics.h"

struct evbuffer;
struct tls_policy;

/* A completed handshake of ssl: moat_tls_handshakes_total{version,cipher}. */
void metrics_tls_handshake(struct metrics *m, const SSL *ssl);
/*
 * Why a handshake just failed, from OpenSSL's error queue (read, not cleared);
 * eof: the stream ended without an error (the client closed).
 */
enum metrics_tls_fail metrics_tls_fail_reason(bool eof);
/* The handshake families and moat_tls_certificate_not_after_seconds of p (may be NULL). */
void metrics_tls_render(struct evbuffer *out, struct metrics *const *sets, int n,
                        const struct tls_policy *p);

#endif
