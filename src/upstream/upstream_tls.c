#include "upstream/upstream_tls.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "config/config.h"

static int load_trust(SSL_CTX *ctx, const struct config_tls_client *t, char *err, size_t errlen)
{
    if (!t->verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return 0;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = t->ca ? SSL_CTX_load_verify_locations(ctx, t->ca, NULL)
                   : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        snprintf(err, errlen, "tls.ca %s: cannot load", t->ca ? t->ca : "(system store)");
        return -1;
    }
    return 0;
}

static int load_client_cert(SSL_CTX *ctx, const struct config_tls_client *t, char *err,
                            size_t errlen)
{
    if (!t->cert)
        return 0;
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "tls.cert %s / tls.key %s: cannot load or do not match", t->cert,
                 t->key ? t->key : "?");
        return -1;
    }
    return 0;
}

SSL_CTX *upstream_tls_ctx_new(const struct config_upstream *u, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "upstream %s: cannot create a TLS context", u->name);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); /* kept-alive connections instead */
    char why[300];
    if (load_trust(ctx, &u->tls, why, sizeof why) < 0 ||
        load_client_cert(ctx, &u->tls, why, sizeof why) < 0) {
        snprintf(err, errlen, "upstreams.%s.%s", u->name, why);
        SSL_CTX_free(ctx);
        ERR_clear_error();
        return NULL;
    }
    return ctx;
}

SSL *upstream_tls_new_ssl(SSL_CTX *ctx, const struct config_upstream *u,
                          const struct config_addr *addr)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    const char *name = u->tls.server_name ? u->tls.server_name : addr->host;
    unsigned char ip[16];
    bool is_ip = name && (inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1);
    if (name && !is_ip)
        SSL_set_tlsext_host_name(ssl, name);
    if (u->tls.verify && name) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name) : SSL_set1_host(ssl, name);
        if (ok != 1) {
            SSL_free(ssl);
            return NULL;
        }
    }
    return ssl;
}
