/*
 * tls_build: what the files of src/tls/ share while a policy is built
 * (tls_policy_build): the build's state and error reporting, and one loaded
 * certificate. Internal to src/tls/.
 */
#ifndef MOAT_TLS_BUILD_H
#define MOAT_TLS_BUILD_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "tls/tls.h"

struct config_tls;
struct config_tls_cert;
struct tls_ocsp;

struct tls_cert {
    char *path;
    X509 *leaf;
    EVP_PKEY *key;
    STACK_OF(X509) * chain; /* intermediates sent after the leaf */
    int key_type;           /* EVP_PKEY_get_base_id(): the SSL_CTX slot */
    char **names;           /* lower case dNSNames (CN if no SAN) */
    size_t num_names;
    struct tls_ocsp *ocsp; /* NULL: no stapling */
};

/* State of one tls_policy_build() call. */
struct build {
    const struct config_tls *cfg;
    tls_warn_fn warn;
    void *warnarg;
    char *err;
    size_t errlen;
    bool weak_seen; /* allow_weak let something through: security level 0 */
};

/* Formats an error into b->err, with the OpenSSL reason appended if there is one; -1. */
int tls_build_fail(struct build *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Something below an SSL Labs "A": -1 (refused), or 0 and a warning when allow_weak. */
int tls_build_weak(struct build *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tls_build_warn(struct build *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Loads and checks one certificate with its key and chain (tls_cert.c); 0 or -1. */
int tls_cert_load(struct build *b, const struct config_tls_cert *cc, struct tls_cert *c);

#endif
