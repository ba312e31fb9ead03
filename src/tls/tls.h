/*
 * tls: the server-side TLS policy the HTTPS listeners hand connections to.
 *
 * A policy is built once per config generation from struct config_tls, is
 * immutable afterwards and is shared by all worker threads (SSL_new on a shared
 * SSL_CTX is thread-safe). It is reference counted: the listener holds one
 * reference per generation and every SSL made by tls_policy_new_ssl() holds one
 * until SSL_free(), so a reload can drop the old policy while its connections
 * finish. See docs/tls.md for the policy itself and the reasons behind it.
 *
 * Certificate selection: one SSL_CTX per distinct set of certificates serving a
 * name (an RSA and an ECDSA certificate for the same name share one SSL_CTX and
 * OpenSSL picks by the client's signature algorithms / cipher list). The
 * ClientHello callback reads SNI and switches the SSL to that SSL_CTX before
 * session resumption is evaluated; unknown or absent SNI keeps the default, the
 * set of the first configured certificate.
 */
#ifndef MOAT_TLS_H
#define MOAT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include <openssl/ssl.h>

struct config_tls;
struct tls_policy;
struct tls_ticket_store;

/* Entries of the server-side session cache per SSL_CTX. */
#define TLS_POLICY_SESSION_CACHE 20000

typedef void (*tls_warn_fn)(const char *msg, void *arg);

/*
 * Builds the policy. A NULL cfg->ciphers, ->ciphersuites or ->groups means the
 * config's default (CONFIG_TLS_CIPHERS and so on, config.h: defined once).
 * tickets: the process-wide ticket store (tls_tickets_new), used
 * when cfg->tickets_enabled (NULL then is an error); the policy takes a reference.
 * Refused with a message naming what is weak when the config would score below an
 * SSL Labs "A" (protocol below TLS 1.2, a TLS 1.2 suite that is not ECDHE + AEAD,
 * RSA < 2048, EC < 256, a SHA-1/MD5 signature in the chain, an expired certificate),
 * unless cfg->allow_weak: then warn(msg) is called once per weakness. Also warns
 * about unusable OCSP files (stapling is then off for that certificate, unless the
 * certificate is must-staple: an error).
 * Returns NULL with "path: message" in err on error.
 */
struct tls_policy *tls_policy_build(const struct config_tls *cfg, struct tls_ticket_store *tickets,
                                    tls_warn_fn warn, void *warnarg, char *err, size_t errlen);
struct tls_policy *tls_policy_ref(struct tls_policy *p);
void tls_policy_unref(struct tls_policy *p);

/*
 * A server SSL for an accepted connection (any thread), in accept state, holding a
 * reference to p until SSL_free(). Hand it to tlsio_init(). NULL on allocation
 * failure.
 */
SSL *tls_policy_new_ssl(struct tls_policy *p);

/*
 * OCSP refresh (a no-op unless cfg->ocsp_fetch): blocking HTTP POST to the responder of each
 * certificate whose staple is due: none yet, half its validity gone, or installed
 * longer than cfg->ocsp_refresh ago. Run it on a thread of its own, never on a
 * worker (it blocks up to timeout_s per responder). Returns the number of failed
 * fetches (each reported via warn; the previous staple stays, retried in 5 minutes)
 * and sets *next to when to call again (at most cfg->ocsp_refresh from now).
 */
int tls_policy_ocsp_refresh(struct tls_policy *p, int timeout_s, time_t *next, tls_warn_fn warn,
                            void *warnarg);
/* On reload: reuse the staples `old` fetched for certificates `p` also serves. */
void tls_policy_ocsp_inherit(struct tls_policy *p, struct tls_policy *old);

/* What the certificates of a policy are, for audit events and metrics. */
struct tls_cert_info {
    const char *path; /* the configured file */
    const char *name; /* first SNI name (SAN dNSName, or CN), or "" */
    time_t not_after; /* seconds since the epoch */
};
size_t tls_policy_num_certs(const struct tls_policy *p);
/* 0, or -1 when i is out of range or the date cannot be read. */
int tls_policy_cert_info(const struct tls_policy *p, size_t i, struct tls_cert_info *out);

/* "TLSv1.2" for TLS1_2_VERSION, and so on; "unknown" for what OpenSSL 3 cannot speak. */
const char *tls_version_name(int v);

/*
 * After the handshake, for logs. Never NULL ("-" when unknown). Version and cipher
 * are static strings; the server name lives as long as the SSL.
 */
const char *tls_conn_version(const SSL *s);
const char *tls_conn_cipher(const SSL *s);
const char *tls_conn_servername(const SSL *s);
/* Whether ALPN chose HTTP/2 for this connection. */
bool tls_conn_is_h2(const SSL *s);
bool tls_conn_resumed(const SSL *s);
/*
 * The subject (RFC 2253) of the client certificate when one was presented and
 * verified (mTLS). Returns its length, or -1 if none or it does not fit in len.
 */
int tls_conn_peer_subject(const SSL *s, char *buf, size_t len);

#endif
