/*
 * snapshot: one published generation of everything derived from a config file
 * that all workers share read-only: the config itself, the TLS policy and
 * values parsed once (trusted proxy CIDRs, signing keys).
 *
 * Built and validated on the main thread (startup and reload). Reference
 * counted atomically because workers release it from their own threads.
 */
#ifndef MOAT_SNAPSHOT_H
#define MOAT_SNAPSHOT_H

#include <stdatomic.h>
#include <stddef.h>

struct config;
struct tls_policy;
struct netutil_cidr;
struct signature_key;
struct tls_ticket_store;
struct upstream_states;

struct snapshot {
    atomic_int refs;
    unsigned long generation; /* 1 for the first, +1 per successful reload */
    struct config *cfg;
    struct tls_policy *tls;       /* NULL when there is no https listener */
    struct netutil_cidr *trusted; /* identity.trusted_proxies, parsed */
    size_t num_trusted;
    struct netutil_cidr *proxy_sources; /* listen.proxy_protocol.sources if enabled, parsed */
    size_t num_proxy_sources;
    struct signature_key *sign_key;   /* NULL when identity.signing_key_file is unset */
    struct ssl_ctx_st **upstream_tls; /* per cfg->upstreams[i]: client SSL_CTX or NULL */
    struct upstream_states *ustates;  /* instance-wide pool and server states (upstream_state.h) */
};

/*
 * Builds a snapshot from a loaded config (takes over the caller's reference on
 * cfg, also on failure). tickets: the process-wide session ticket store. Returns NULL and writes a
 * message into err on failure.
 */
struct snapshot *snapshot_build(struct config *cfg, unsigned long generation,
                                struct tls_ticket_store *tickets, char *err, size_t errlen);
struct snapshot *snapshot_ref(struct snapshot *s);
void snapshot_unref(struct snapshot *s);

#endif
