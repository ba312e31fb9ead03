/*
 * config_validate: checks across keys (config_validate.h).
 */
#include "config/config_validate.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls/tls.h"

/* What the HSTS preload list asks for: a year. */
#define HSTS_PRELOAD_MIN_AGE 31536000

/* Exactly 127.0.0.0/8, ::1, the name "localhost" (bound as 127.0.0.1, never resolved)
 * or a unix socket: not "::", not v4-mapped addresses, not other names. */
static bool addr_is_loopback(const struct config_addr *a)
{
    struct in_addr v4;
    struct in6_addr v6;
    if (a->path)
        return true;
    if (!strcmp(a->host, "localhost"))
        return true;
    if (inet_pton(AF_INET, a->host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, a->host, &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

/* The listeners bind numeric addresses only (a name could resolve to anything);
 * "localhost" is bound as 127.0.0.1. */
static bool addr_is_numeric(const struct config_addr *a)
{
    unsigned char bin[16];
    return a->host && (!strcmp(a->host, "localhost") || inet_pton(AF_INET, a->host, bin) == 1 ||
                       inet_pton(AF_INET6, a->host, bin) == 1);
}

/* Why a unix socket cannot be created at path (as far as can be told now), or NULL. */
static const char *unix_path_problem(const char *path)
{
    struct stat st;
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    if (lstat(path, &st) == 0)
        return S_ISSOCK(st.st_mode) ? NULL : "the path exists and is not a socket";
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return NULL; /* relative to the working directory, or in / */
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return "its directory does not exist";
    return NULL;
}

static void validate_admin(struct config_loader *L, const struct config_listen *l)
{
    struct config_pos pos = config_pos_of(L, &l->admin, l, CONFIG_POS_ROOT);
    const char *why;
    if (!addr_is_loopback(&l->admin))
        config_loader_error(L, pos, "listen.admin",
                            "must be a loopback address (127.0.0.0/8, ::1, localhost) "
                            "or a unix socket: the admin endpoint is never public");
    else if (l->admin.path && (why = unix_path_problem(l->admin.path)))
        config_loader_error(L, pos, "listen.admin", "%s: %s", l->admin.text, why);
}

static bool addr_is_any(const struct config_addr *a)
{
    return a->host && (!strcmp(a->host, "0.0.0.0") || !strcmp(a->host, "::"));
}

/*
 * Two listeners that would fight over the same port: same host, or a wildcard and
 * an address of the same family. "0.0.0.0" and "::" together are allowed (the
 * listener binds IPv6 wildcards IPV6_V6ONLY).
 */
static bool addr_conflicts(const struct config_addr *a, const struct config_addr *b)
{
    if (a->path || b->path)
        return a->path && b->path && !strcmp(a->path, b->path);
    bool same_family = !strchr(a->host, ':') == !strchr(b->host, ':');
    return a->port == b->port &&
           (!strcmp(a->host, b->host) || (same_family && (addr_is_any(a) || addr_is_any(b))));
}

static void validate_listen(struct config_loader *L, struct config *c)
{
    struct config_listen *l = &c->listen;
    struct {
        const struct config_addr *a;
        char name[40];
    } all[2 * CONFIG_MAX_LISTEN + 1];
    size_t n = 0;

    for (size_t i = 0; i < l->num_https; i++) {
        all[n].a = &l->https[i];
        snprintf(all[n++].name, sizeof all[0].name, "listen.https[%zu]", i);
    }
    for (size_t i = 0; i < l->num_http; i++) {
        all[n].a = &l->http[i];
        snprintf(all[n++].name, sizeof all[0].name, "listen.http[%zu]", i);
    }
    for (size_t i = 0; i < n; i++)
        if (!addr_is_numeric(all[i].a))
            config_loader_error(L, config_pos_of(L, all[i].a, l, CONFIG_POS_ROOT), all[i].name,
                                "must be a numeric IPv4 or [IPv6] address (or localhost) and a "
                                "port: names and unix sockets are not supported here");
    if (l->admin.text) {
        all[n].a = &l->admin;
        snprintf(all[n++].name, sizeof all[0].name, "listen.admin");
        validate_admin(L, l);
    }
    for (size_t i = 1; i < n; i++) {
        for (size_t j = 0; j < i; j++) {
            if (addr_conflicts(all[i].a, all[j].a)) {
                config_loader_error(L, config_pos_of(L, all[i].a, l, CONFIG_POS_ROOT), all[i].name,
                                    "address conflicts with %s", all[j].name);
                break;
            }
        }
    }
    const struct config_proxy_protocol *pp = &l->proxy_protocol;
    if (pp->enabled && pp->num_sources == 0)
        config_loader_error(L, config_pos_of(L, &pp->sources, pp, CONFIG_POS_ROOT),
                            "listen.proxy_protocol.sources",
                            "required when proxy_protocol is enabled: the load balancers that "
                            "send the header (CIDRs)");
    if (l->num_https > 0 && c->tls.num_certs == 0)
        config_loader_error(L,
                            config_pos_of(L, &c->tls.certs, &c->tls,
                                          config_pos_of(L, l->https, l, CONFIG_POS_ROOT)),
                            "tls.certificates",
                            "at least one certificate is required when listen.https is "
                            "non-empty");
}

/* Checks each element of a cipher string is known, and that all are ECDHE + AEAD. */
static void validate_ciphers(struct config_loader *L, const struct config_tls *t, SSL_CTX *ctx)
{
    struct config_pos pos = config_pos_of(L, &t->ciphers, t, CONFIG_POS_ROOT);
    char *copy = strdup(t->ciphers), *save = NULL, q[80];
    if (!copy)
        config_loader_oom(L);
    for (char *tok = copy ? strtok_r(copy, ":, ", &save) : NULL; tok;
         tok = strtok_r(NULL, ":, ", &save)) {
        if (strchr("!-+@", tok[0]))
            continue;
        if (!SSL_CTX_set_cipher_list(ctx, tok))
            config_loader_error(L, pos, "tls.ciphers", "unknown cipher %s",
                                config_quote(tok, q, sizeof q));
    }
    free(copy);
    if (!SSL_CTX_set_cipher_list(ctx, t->ciphers)) {
        config_loader_error(L, pos, "tls.ciphers", "no usable TLS 1.2 cipher in the list");
        return;
    }
    STACK_OF(SSL_CIPHER) *sk = SSL_CTX_get_ciphers(ctx);
    for (int i = 0; !t->allow_weak && i < sk_SSL_CIPHER_num(sk); i++) {
        const SSL_CIPHER *ci = sk_SSL_CIPHER_value(sk, i);
        int kx = SSL_CIPHER_get_kx_nid(ci);
        if (kx == NID_kx_any) /* a TLS 1.3 suite */
            continue;
        if (kx != NID_kx_ecdhe || !SSL_CIPHER_is_aead(ci)) {
            config_loader_error(L, pos, "tls.ciphers",
                                "%s is not an ECDHE AEAD cipher (set tls.allow_weak: true to "
                                "allow it)",
                                SSL_CIPHER_get_name(ci));
            break;
        }
    }
}

static void validate_suites(struct config_loader *L, const struct config_tls *t, SSL_CTX *ctx)
{
    struct config_pos pos = config_pos_of(L, &t->ciphersuites, t, CONFIG_POS_ROOT);
    char *copy = strdup(t->ciphersuites), *save = NULL, q[80];
    if (!copy)
        config_loader_oom(L);
    for (char *tok = copy ? strtok_r(copy, ":", &save) : NULL; tok;
         tok = strtok_r(NULL, ":", &save)) {
        bool found = false;
        if (SSL_CTX_set_ciphersuites(ctx, tok)) {
            STACK_OF(SSL_CIPHER) *sk = SSL_CTX_get_ciphers(ctx);
            for (int i = 0; i < sk_SSL_CIPHER_num(sk) && !found; i++)
                found = !strcmp(SSL_CIPHER_get_name(sk_SSL_CIPHER_value(sk, i)), tok);
        }
        if (!found)
            config_loader_error(L, pos, "tls.ciphersuites", "unknown TLS 1.3 ciphersuite %s",
                                config_quote(tok, q, sizeof q));
    }
    free(copy);
    if (!SSL_CTX_set1_groups_list(ctx, t->groups))
        config_loader_error(L, config_pos_of(L, &t->groups, t, CONFIG_POS_ROOT), "tls.groups",
                            "unknown group in %s", config_quote(t->groups, q, sizeof q));
}

static void validate_tls(struct config_loader *L, struct config *c)
{
    struct config_tls *t = &c->tls;
    if (t->min_version < TLS1_2_VERSION && !t->allow_weak)
        config_loader_error(L, config_pos_of(L, &t->min_version, t, CONFIG_POS_ROOT),
                            "tls.min_version", "%s is weak: set tls.allow_weak: true to allow it",
                            tls_version_name(t->min_version));
    if (t->client_verify && !t->client_ca)
        config_loader_error(L, config_pos_of(L, &t->client_verify, t, CONFIG_POS_ROOT),
                            "tls.client_verify", "requires tls.client_ca");
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx) {
        validate_ciphers(L, t, ctx);
        validate_suites(L, t, ctx);
        SSL_CTX_free(ctx);
    } else
        config_loader_oom(L); /* unchecked TLS settings must not pass */
    ERR_clear_error();
}

static void validate_tls_client(struct config_loader *L, const struct config_tls_client *t,
                                const char *path)
{
    char sub[160]; /* key paths are short; the slack keeps -O3's truncation check quiet */
    if (!t->cert != !t->key) {
        snprintf(sub, sizeof sub, "%.120s.%s", path, t->cert ? "cert" : "key");
        config_loader_error(
            L, config_pos_of(L, t->cert ? (void *)&t->cert : (void *)&t->key, t, CONFIG_POS_ROOT),
            sub, "tls.cert and tls.key must be given together");
    }
}

/* Upstreams by name: references resolve in n log n even in a generated config. */
struct upstream_index {
    const struct config_upstream **v;
    size_t n;
    const struct config *c;
};

static int upstream_ptr_cmp(const void *a, const void *b)
{
    const struct config_upstream *x = *(const struct config_upstream *const *)a;
    const struct config_upstream *y = *(const struct config_upstream *const *)b;
    return strcmp(x->name, y->name);
}

static void upstream_index_build(struct upstream_index *ix, const struct config *c)
{
    ix->c = c;
    ix->n = 0;
    ix->v = c->num_upstreams ? malloc(c->num_upstreams * sizeof *ix->v) : NULL;
    for (size_t i = 0; ix->v && i < c->num_upstreams; i++)
        if (c->upstreams[i].name)
            ix->v[ix->n++] = &c->upstreams[i];
    if (ix->n > 1)
        qsort(ix->v, ix->n, sizeof *ix->v, upstream_ptr_cmp);
}

static const struct config_upstream *upstream_index_find(const struct upstream_index *ix,
                                                         const char *name)
{
    if (!ix->v) /* none, or no memory for the index */
        return config_find_upstream(ix->c, name);
    struct config_upstream key = {.name = (char *)name};
    const struct config_upstream *kp = &key, **hit;
    hit = bsearch(&kp, ix->v, ix->n, sizeof *ix->v, upstream_ptr_cmp);
    return hit ? *hit : NULL;
}

static bool pos_known(struct config_pos p)
{
    return p.line != 0;
}

/*
 * mode: sentinel. The data address comes from the sentinels, so a redis.address
 * written next to them is an error rather than silently ignored: whoever wrote it
 * expects moat to use it.
 */
static void validate_redis_sentinel(struct config_loader *L, const struct config_redis *r)
{
    const struct config_redis_sentinel *s = &r->sentinel;
    struct config_pos here = config_loader_pos(L, s, 1); /* the redis.sentinel mapping */
    if (!pos_known(here))
        here = config_pos_of(L, &r->mode, r, CONFIG_POS_ROOT);
    if (pos_known(config_loader_pos(L, &r->address, 0)))
        config_loader_error(L, config_loader_pos(L, &r->address, 0), "redis.address",
                            "not used with mode: sentinel (the master's address is asked of "
                            "redis.sentinel.addresses): remove it");
    if (s->num_addresses == 0)
        config_loader_error(L, here, "redis.sentinel.addresses",
                            "required with mode: sentinel (1 to %d host:port)",
                            CONFIG_MAX_SENTINELS);
    if (!s->master_name)
        config_loader_error(L, here, "redis.sentinel.master_name",
                            "required with mode: sentinel (the name the sentinels monitor)");
    for (size_t i = 0; i < s->num_addresses; i++) {
        if (!s->addresses[i].path)
            continue;
        char path[64];
        snprintf(path, sizeof path, "redis.sentinel.addresses[%zu]", i);
        config_loader_error(L, config_pos_of(L, &s->addresses[i], s, here), path,
                            "sentinels are reached over TCP: host:port");
    }
    if (s->password_file && s->password_env)
        config_loader_error(L, config_pos_of(L, &s->password_env, s, here),
                            "redis.sentinel.password_env",
                            "set only one of password_file and password_env");
    if (s->username && !s->password_file && !s->password_env)
        config_loader_error(L, config_pos_of(L, &s->username, s, here), "redis.sentinel.username",
                            "needs password_file or password_env");
    if (s->tls_set)
        validate_tls_client(L, &s->tls, "redis.sentinel.tls");
}

/*
 * mode: cluster. The nodes' addresses come from the seeds' slot map; a cluster
 * has only database 0 (push revocation tracks each master: revocation.c).
 */
static void validate_redis_cluster(struct config_loader *L, const struct config *c)
{
    const struct config_redis *r = &c->redis;
    const struct config_redis_cluster *k = &r->cluster;
    struct config_pos here = config_loader_pos(L, k, 1); /* the redis.cluster mapping */
    if (!pos_known(here))
        here = config_pos_of(L, &r->mode, r, CONFIG_POS_ROOT);
    if (pos_known(config_loader_pos(L, &r->address, 0)))
        config_loader_error(L, config_loader_pos(L, &r->address, 0), "redis.address",
                            "not used with mode: cluster (the nodes come from "
                            "redis.cluster.seeds): remove it");
    if (k->num_seeds == 0)
        config_loader_error(L, here, "redis.cluster.seeds",
                            "required with mode: cluster (1 to %d host:port)",
                            CONFIG_MAX_CLUSTER_SEEDS);
    for (size_t i = 0; i < k->num_seeds; i++) {
        if (!k->seeds[i].path)
            continue;
        char path[64];
        snprintf(path, sizeof path, "redis.cluster.seeds[%zu]", i);
        config_loader_error(L, config_pos_of(L, &k->seeds[i], k, here), path,
                            "cluster nodes are reached over TCP: host:port");
    }
    if (r->database != 0)
        config_loader_error(L, config_pos_of(L, &r->database, r, here), "redis.database",
                            "a cluster has only database 0");
}

static void validate_redis(struct config_loader *L, const struct config *c)
{
    const struct config_redis *r = &c->redis;
    if (!c->redis_enabled)
        return;
    if (r->password_file && r->password_env)
        config_loader_error(L, config_pos_of(L, &r->password_env, r, CONFIG_POS_ROOT),
                            "redis.password_env", "set only one of password_file and password_env");
    validate_tls_client(L, &r->tls, "redis.tls");
    if (r->mode == REDIS_MODE_SENTINEL)
        validate_redis_sentinel(L, r);
    else if (pos_known(config_loader_pos(L, &r->sentinel, 1)))
        config_loader_error(L, config_loader_pos(L, &r->sentinel, 1), "redis.sentinel",
                            "only used with mode: sentinel");
    if (r->mode == REDIS_MODE_CLUSTER)
        validate_redis_cluster(L, c);
    else if (pos_known(config_loader_pos(L, &r->cluster, 1)))
        config_loader_error(L, config_loader_pos(L, &r->cluster, 1), "redis.cluster",
                            "only used with mode: cluster");
}

/* Values derived from upstream keys: the health status range, parsed once. */
static void derive_upstreams(struct config *c)
{
    for (size_t i = 0; i < c->num_upstreams; i++) {
        struct config_health *h = &c->upstreams[i].health;
        int lo = 200, hi = 399;
        if (h->status && sscanf(h->status, "%d-%d", &lo, &hi) < 2)
            hi = lo; /* a single status; the form was checked by the schema */
        h->status_min = lo;
        h->status_max = hi;
    }
}

/* log.syslog: a network address, and TLS files only where TLS is spoken. */
static void validate_syslog(struct config_loader *L, const struct config *c)
{
    const struct config_syslog *sl = &c->log.syslog;
    if (!c->log.syslog_enabled)
        return;
    if (sl->address.path)
        config_loader_error(L, config_pos_of(L, &sl->address, sl, CONFIG_POS_ROOT),
                            "log.syslog.address",
                            "must be host:port (unix sockets are not "
                            "supported)");
    if (!sl->cert_file != !sl->key_file)
        config_loader_error(
            L,
            config_pos_of(L, sl->cert_file ? (void *)&sl->cert_file : (void *)&sl->key_file, sl,
                          CONFIG_POS_ROOT),
            sl->cert_file ? "log.syslog.cert_file" : "log.syslog.key_file",
            "cert_file and key_file must be given together");
    const char *tls_only = sl->ca_file ? "ca_file" : sl->cert_file ? "cert_file" : NULL;
    if (sl->transport != SYSLOG_TLS && tls_only) {
        char path[64];
        snprintf(path, sizeof path, "log.syslog.%s", tls_only);
        config_loader_error(
            L,
            config_pos_of(L, sl->ca_file ? (void *)&sl->ca_file : (void *)&sl->cert_file, sl,
                          CONFIG_POS_ROOT),
            path, "only used with transport: tls");
    }
}

static void validate_sessions_hsts(struct config_loader *L, const struct config *c)
{
    const struct config_sessions *s = &c->sessions;
    if (s->token_min_len > s->token_max_len)
        config_loader_error(L, config_pos_of(L, &s->token_min_len, s, CONFIG_POS_ROOT),
                            "sessions.token_min_len",
                            "must not exceed sessions.token_max_len (%zu)", s->token_max_len);
    if (c->hsts.preload && (c->hsts.max_age < HSTS_PRELOAD_MIN_AGE || !c->hsts.include_subdomains))
        config_loader_error(L, config_pos_of(L, &c->hsts.preload, &c->hsts, CONFIG_POS_ROOT),
                            "hsts.preload", "requires max_age >= %d and include_subdomains: true",
                            HSTS_PRELOAD_MIN_AGE);
}

/* Resolves each tenant's upstream (tenant->up). */
static void validate_tenants(struct config_loader *L, struct config *c,
                             const struct upstream_index *ix)
{
    for (size_t i = 0; i < c->num_tenants; i++) {
        struct config_tenant *t = &c->tenants[i];
        char q[80];
        if (!t->name || !t->upstream)
            continue;
        t->up = upstream_index_find(ix, t->upstream);
        if (!t->up) {
            char path[200];
            snprintf(path, sizeof path, "tenants.%s.upstream", t->name);
            config_loader_error(L, config_pos_of(L, &t->upstream, t, CONFIG_POS_ROOT), path,
                                "unknown upstream %s", config_quote(t->upstream, q, sizeof q));
        }
    }
}

/* The sections other than listen, tls and routes; in this order, as messages at one
 * position keep the order they were found in. */
static void validate_sections(struct config_loader *L, struct config *c,
                              const struct upstream_index *ix)
{
    validate_redis(L, c);
    validate_syslog(L, c);
    derive_upstreams(c);
    validate_sessions_hsts(L, c);
    for (size_t i = 0; i < c->num_upstreams; i++) {
        const struct config_upstream *u = &c->upstreams[i];
        char path[128];
        snprintf(path, sizeof path, "upstreams.%s.tls", u->name ? u->name : "?");
        validate_tls_client(L, &u->tls, path);
        snprintf(path, sizeof path, "upstreams.%s.servers", u->name ? u->name : "?");
        if (u->num_servers > UPSTREAM_MAX_SERVERS)
            config_loader_error(L, config_pos_of(L, &u->servers, u, CONFIG_POS_ROOT), path,
                                "at most %d servers per pool", UPSTREAM_MAX_SERVERS);
    }
    validate_tenants(L, c, ix);
}

static const char *const auth_names[] = {"none", "optional", "required"};

static void validate_rule(struct config_loader *L, const struct config *c,
                          const struct config_route *r, size_t i, size_t j)
{
    const struct config_rate_rule *rule = &r->rate_limits[j];
    char path[128];
    if ((rule->key == RL_KEY_SESSION || rule->key == RL_KEY_TENANT) && r->auth == AUTH_NONE) {
        snprintf(path, sizeof path, "routes[%zu].rate_limit[%zu].key", i, j);
        config_loader_error(L, config_pos_of(L, &rule->key, rule, CONFIG_POS_ROOT), path,
                            "%s needs a route with auth: optional or required",
                            rule->key == RL_KEY_SESSION ? "session" : "tenant");
    }
    if (rule->scope == RL_SCOPE_GLOBAL && !c->redis_enabled) {
        snprintf(path, sizeof path, "routes[%zu].rate_limit[%zu].scope", i, j);
        config_loader_error(L, config_pos_of(L, &rule->scope, rule, CONFIG_POS_ROOT), path,
                            "global requires a redis: section (shared limits live in Redis)");
    }
}

static void validate_route(struct config_loader *L, struct config *c,
                           const struct upstream_index *ix, size_t i)
{
    struct config_route *r = &c->routes[i];
    struct config_pos rp = {r->line, r->column};
    char path[128], q[80];
    if (!r->line)
        return; /* not a mapping: already reported, nothing to check */

    if (r->upstream && !(r->up = upstream_index_find(ix, r->upstream))) {
        snprintf(path, sizeof path, "routes[%zu].upstream", i);
        config_loader_error(L, config_pos_of(L, &r->upstream, NULL, rp), path,
                            "unknown upstream %s", config_quote(r->upstream, q, sizeof q));
    }
    if (r->mfa_required && r->auth == AUTH_NONE) {
        snprintf(path, sizeof path, "routes[%zu].mfa", i);
        config_loader_error(L, config_pos_of(L, &r->mfa_required, NULL, rp), path,
                            "required needs auth: optional or required");
    }
    if (r->auth != AUTH_NONE && !c->redis_enabled) {
        bool given = config_loader_pos(L, &r->auth, 0).line != 0;
        snprintf(path, sizeof path, "routes[%zu].auth", i);
        config_loader_error(L, config_pos_of(L, &r->auth, NULL, rp), path,
                            "%s%s requires a redis: section (sessions live in Redis)",
                            auth_names[r->auth], given ? "" : " (the default)");
    }
    if (r->auth != AUTH_NONE && !c->sessions.cookie && !c->sessions.bearer) {
        snprintf(path, sizeof path, "routes[%zu].auth", i);
        config_loader_error(L, config_pos_of(L, &r->auth, NULL, rp), path,
                            "needs sessions.cookie or sessions.bearer to find a token");
    }
    if (r->num_tenants && r->auth == AUTH_NONE) {
        snprintf(path, sizeof path, "routes[%zu].tenants", i);
        config_loader_error(L, config_pos_of(L, &r->tenants, NULL, rp), path,
                            "needs auth: optional or required (the tenant comes from the "
                            "session)");
    }
    if (r->browser && !c->sessions.login_url) {
        snprintf(path, sizeof path, "routes[%zu].browser", i);
        config_loader_error(L, config_pos_of(L, &r->browser, NULL, rp), path,
                            "requires sessions.login_url");
    }
    for (size_t j = 0; j < r->num_rate_limits; j++)
        validate_rule(L, c, r, i, j);
}

struct rule_ref {
    const char *id;
    struct config_pos pos;
    size_t route, rule;
};

static int rule_ref_cmp(const void *a, const void *b)
{
    const struct rule_ref *x = a, *y = b;
    int d = strcmp(x->id, y->id);
    if (d)
        return d;
    return x->route != y->route ? (x->route > y->route) - (x->route < y->route)
                                : (x->rule > y->rule) - (x->rule < y->rule);
}

/* Rule ids name Redis keys: two rules sharing one would share a bucket. */
static void validate_rule_ids(struct config_loader *L, const struct config *c)
{
    size_t n = 0, m = 0;
    for (size_t i = 0; i < c->num_routes; i++)
        n += c->routes[i].num_rate_limits;
    struct rule_ref *v = n ? malloc(n * sizeof *v) : NULL;
    if (!v) {
        if (n)
            config_loader_oom(L);
        return;
    }
    for (size_t i = 0; i < c->num_routes; i++) {
        for (size_t j = 0; j < c->routes[i].num_rate_limits; j++) {
            const struct config_rate_rule *rule = &c->routes[i].rate_limits[j];
            if (rule->id)
                v[m++] = (struct rule_ref){
                    rule->id, config_pos_of(L, &rule->id, rule, CONFIG_POS_ROOT), i, j};
        }
    }
    qsort(v, m, sizeof *v, rule_ref_cmp);
    for (size_t k = 1; k < m; k++) {
        if (strcmp(v[k].id, v[k - 1].id) != 0)
            continue;
        char path[128], q[80];
        snprintf(path, sizeof path, "routes[%zu].rate_limit[%zu].id", v[k].route, v[k].rule);
        config_loader_error(L, v[k].pos, path, "duplicate rate_limit id %s (also routes[%zu])",
                            config_quote(v[k].id, q, sizeof q), v[k - 1].route);
    }
    free(v);
}

void config_validate(struct config_loader *L, struct config *c)
{
    struct upstream_index ix;
    upstream_index_build(&ix, c);
    validate_listen(L, c);
    validate_tls(L, c);
    validate_sections(L, c, &ix);
    if (c->num_routes == 0)
        config_loader_error(L, config_pos_of(L, &c->routes, NULL, CONFIG_POS_ROOT), "routes",
                            "at least one route is required");
    for (size_t i = 0; i < c->num_routes; i++)
        validate_route(L, c, &ix, i);
    validate_rule_ids(L, c);
    free(ix.v);
}
