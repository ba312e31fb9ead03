/*
 * tls_ocsp: the OCSP staple of one leaf certificate.
 *
 * A response is only ever installed after it has been verified for this very leaf:
 * signed by the leaf's issuer (or by a responder the issuer delegated with the
 * OCSPSigning EKU), a SingleResponse whose CertID names this leaf's serial and issuer,
 * status "good", thisUpdate not in the future and a nextUpdate present and not passed.
 * At handshake time the staple is attached only while nextUpdate is still ahead, so an
 * expired response is never sent even if nothing refreshed it.
 *
 * The installed response can be replaced at any time from any thread (the fetcher
 * runs outside the workers): readers copy it under a read lock on the full-handshake
 * path only. A failed refresh never removes the last good response.
 */
#ifndef MOAT_TLS_OCSP_H
#define MOAT_TLS_OCSP_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

struct tls_ocsp;

/*
 * Stapling state for `leaf`; its issuer must be in `chain` (the intermediates sent
 * with the leaf), otherwise NULL with err. Takes its own references.
 */
struct tls_ocsp *tls_ocsp_new(X509 *leaf, STACK_OF(X509) * chain, char *err, size_t errlen);
void tls_ocsp_free(struct tls_ocsp *o);

/* Verifies a DER OCSP response (see above) and installs it. 0, or -1 with err. */
int tls_ocsp_set_response(struct tls_ocsp *o, const unsigned char *der, size_t len, char *err,
                          size_t errlen);
/* Same, reading a DER file (cfg->certs[i].ocsp); err is "path: message". */
int tls_ocsp_load_file(struct tls_ocsp *o, const char *path, char *err, size_t errlen);

/* True if a response is installed and its nextUpdate is still ahead of now. */
bool tls_ocsp_has_staple(struct tls_ocsp *o, time_t now);
/* True if the certificate carries the TLS Feature "status_request" (OCSP must-staple). */
bool tls_ocsp_must_staple(X509 *cert);

/*
 * For the status callback (the client asked for a staple): attaches a copy of the
 * current response to s. Returns SSL_TLSEXT_ERR_OK, or SSL_TLSEXT_ERR_NOACK when there
 * is nothing valid to staple.
 */
int tls_ocsp_staple(struct tls_ocsp *o, SSL *s);

/* The responder URL from the leaf's Authority Information Access, or NULL. */
const char *tls_ocsp_responder(const struct tls_ocsp *o);

/*
 * Blocking: asks the responder (url, or the AIA URL when NULL) over HTTP with a POST,
 * verifies and installs the answer. Never call it on a worker thread. 0, or -1 with
 * err; on error the previous response stays and the next attempt is in 5 minutes.
 */
int tls_ocsp_fetch(struct tls_ocsp *o, const char *url, int timeout_s, char *err, size_t errlen);

/*
 * When the next fetch is due: now if there is no response; else halfway between
 * thisUpdate and nextUpdate, or max_age seconds after it was installed if sooner;
 * after a failed fetch, not before the retry time.
 */
time_t tls_ocsp_refresh_at(struct tls_ocsp *o, time_t max_age);

/* Installs the response of `from` into `to` when both staple the same leaf and it is
 * newer; used on reload to keep fetched responses. */
void tls_ocsp_inherit(struct tls_ocsp *to, struct tls_ocsp *from);

#endif
