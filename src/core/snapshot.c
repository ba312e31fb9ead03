#include "core/snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "config/config.h"
#include "observe/log.h"
#include "observe/metrics_registry.h"
#include "util/netutil.h"
#include "policy/signature.h"
#include "tls/tls.h"
#include "upstream/upstream_state.h"
#include "upstream/upstream_tls.h"

static void warn_weak(const char *msg, void *arg)
{
    (void)arg;
    log_msg(LOG_WARN, "tls: %s", msg);
}

/* CIDR strings (checked by the loader) into *out; *num set only on success. */
static int parse_cidrs(char *const *strs, size_t n, const char *key, struct netutil_cidr **out,
                       size_t *num, char *err, size_t errlen)
{
    if (n == 0)
        return 0;
    *out = calloc(n, sizeof **out);
    if (!*out) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (netutil_cidr_parse(strs[i], &(*out)[i]) < 0) {
            snprintf(err, errlen, "%s: invalid CIDR '%s'", key, strs[i]);
            return -1;
        }
    }
    *num = n;
    return 0;
}

static int parse_trusted(struct snapshot *s, char *err, size_t errlen)
{
    const struct config_identity *id = &s->cfg->identity;
    const struct config_proxy_protocol *pp = &s->cfg->listen.proxy_protocol;
    if (parse_cidrs(id->trusted_proxies, id->num_trusted_proxies, "identity.trusted_proxies",
                    &s->trusted, &s->num_trusted, err, errlen) < 0)
        return -1;
    if (!pp->enabled)
        return 0;
    return parse_cidrs(pp->sources, pp->num_sources, "listen.proxy_protocol.sources",
                       &s->proxy_sources, &s->num_proxy_sources, err, errlen);
}

static int load_keys(struct snapshot *s, char *err, size_t errlen)
{
    const char *path = s->cfg->identity.signing_key_file;
    if (!path)
        return 0;
    s->sign_key = calloc(1, sizeof *s->sign_key);
    if (!s->sign_key) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return signature_key_load(path, s->sign_key, err, errlen);
}

static int build_upstream_tls(struct snapshot *s, char *err, size_t errlen)
{
    const struct config *cfg = s->cfg;
    s->upstream_tls = calloc(cfg->num_upstreams ? cfg->num_upstreams : 1, sizeof(SSL_CTX *));
    if (!s->upstream_tls) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->num_upstreams; i++) {
        if (!cfg->upstreams[i].tls.enabled)
            continue;
        s->upstream_tls[i] = upstream_tls_ctx_new(&cfg->upstreams[i], err, errlen);
        if (!s->upstream_tls[i])
            return -1;
    }
    return 0;
}

struct snapshot *snapshot_build(struct config *cfg, unsigned long generation,
                                struct tls_ticket_store *tickets, char *err, size_t errlen)
{
    struct snapshot *s = calloc(1, sizeof *s);
    if (!s) {
        config_unref(cfg);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->cfg = cfg;
    s->generation = generation;
    if (cfg->listen.num_https > 0) {
        s->tls = tls_policy_build(&cfg->tls, tickets, warn_weak, NULL, err, errlen);
        if (!s->tls)
            goto fail;
    }
    if (parse_trusted(s, err, errlen) < 0 || load_keys(s, err, errlen) < 0 ||
        build_upstream_tls(s, err, errlen) < 0)
        goto fail;
    s->ustates = upstream_states_acquire(cfg);
    if (!s->ustates) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    metrics_registry_assign(cfg); /* label slots of routes, pools, rules: kept across reloads */
    return s;
fail:
    snapshot_unref(s);
    return NULL;
}

struct snapshot *snapshot_ref(struct snapshot *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void snapshot_unref(struct snapshot *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (s->tls)
        tls_policy_unref(s->tls);
    free(s->trusted);
    free(s->proxy_sources);
    for (size_t i = 0; s->upstream_tls && i < s->cfg->num_upstreams; i++)
        SSL_CTX_free(s->upstream_tls[i]);
    free(s->upstream_tls);
    upstream_states_release(s->ustates);
    if (s->sign_key)
        OPENSSL_cleanse(s->sign_key, sizeof *s->sign_key);
    free(s->sign_key);
    config_unref(s->cfg);
    free(s);
}
