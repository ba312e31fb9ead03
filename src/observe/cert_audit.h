/*
 * cert_audit: the certificates a generation serves, on the audit trail. Each one
 * is recorded when it is loaded (start and every reload), and one whose end of
 * validity is within CERT_EXPIRY_WARN_DAYS is recorded as expiring, at load and
 * then once a day while it stays in service, with a warning in the log.
 */
#ifndef MOAT_CERT_AUDIT_H
#define MOAT_CERT_AUDIT_H

#include <time.h>

struct tls_policy;

#define CERT_EXPIRY_WARN_DAYS 30

/* certificate_loaded for each certificate, then the expiry check. */
void cert_audit_loaded(const struct tls_policy *p, unsigned long generation, time_t now);
/* certificate_expiring for each certificate within the window; call once a day. */
void cert_audit_expiry(const struct tls_policy *p, time_t now);

#endif
