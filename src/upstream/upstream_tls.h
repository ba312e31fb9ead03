/*
 * upstream_tls: client TLS from moat to upstreams that ask for it
 * (upstreams.NAME.tls.enabled). One SSL_CTX per such upstream, built with the
 * snapshot on the main thread and shared read-only by the workers: TLS 1.2+,
 * the peer verified against tls.ca (or the system store) and its name
 * (tls.server_name, else the server's address, checked as an IP when it is one).
 */
#ifndef MOAT_UPSTREAM_TLS_H
#define MOAT_UPSTREAM_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

struct config_upstream;
struct config_addr;

/* NULL with err when the upstream's TLS settings cannot be loaded. */
SSL_CTX *upstream_tls_ctx_new(const struct config_upstream *u, char *err, size_t errlen);

/* A client SSL for one connection to server addr of u, with SNI and the name to verify. */
SSL *upstream_tls_new_ssl(SSL_CTX *ctx, const struct config_upstream *u,
                          const struct config_addr *addr);

#endif
