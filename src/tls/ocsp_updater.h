/*
 * ocsp_updater: fetches OCSP staples from each certificate's responder (AIA)
 * on a thread of its own, so a slow or dead responder never blocks a worker
 * or the main loop. It refreshes each staple well before it expires (the TLS
 * module decides when: half its validity, or tls.ocsp_refresh) and keeps the
 * last good response through responder outages. Reload hands it the new
 * policy; staples already fetched carry over (tls_policy_ocsp_inherit).
 */
#ifndef MOAT_OCSP_UPDATER_H
#define MOAT_OCSP_UPDATER_H

struct tls_policy;
struct ocsp_updater;

struct ocsp_updater *ocsp_updater_start(struct tls_policy *p);
/* Switches to a new policy (NULL: pause) and refreshes at once. */
void ocsp_updater_set(struct ocsp_updater *u, struct tls_policy *p);
void ocsp_updater_stop(struct ocsp_updater *u);

#endif
