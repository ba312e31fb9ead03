/*
 * config: YAML in, a validated immutable snapshot out (or every error found).
 *
 * config_keys.c holds the key tables and stores what the YAML says; this file
 * reads the file, turns libyaml's failures into positioned errors, runs the
 * checks that span several keys (references between sections, redis needed by
 * auth and global limits, the TLS policy against OpenSSL), the file checks, and
 * owns the snapshot's lifetime.
 */
#include "config/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "config/config_keys.h"
#include "tls/tls.h"

#define CONFIG_MAX_FILE (16u << 20)
#define SIGNING_KEY_MIN 32

static const struct config_pos ROOT = {1, 1};

/* ---- value parsers ------------------------------------------------------------------- */

/* Reads 1..13 decimal digits; returns the end or NULL. */
static const char *read_count(const char *s, uint64_t *v)
{
    const char *p = s;
    *v = 0;
    for (; isdigit((unsigned char)*p); p++) {
        if (p - s >= 13)
            return NULL;
        *v = *v * 10 + (uint64_t)(*p - '0');
    }
    return p == s ? NULL : p;
}

int config_parse_duration(const char *s, uint64_t *ms)
{
    uint64_t v, mult;
    const char *p = s ? read_count(s, &v) : NULL;
    if (!p)
        return -1;
    if (!strcmp(p, "ms"))
        mult = 1;
    else if (!strcmp(p, "s"))
        mult = 1000;
    else if (!strcmp(p, "m"))
        mult = 60 * 1000;
    else if (!strcmp(p, "h"))
        mult = 3600 * 1000;
    else
        return -1; /* a bare number is ambiguous (seconds? ms?): a unit is required */
    *ms = v * mult;
    return 0;
}

int config_parse_rate(const char *s, double *per_sec)
{
    uint64_t n;
    const char *p = s ? read_count(s, &n) : NULL;
    if (!p || n == 0 || p[0] != '/' || !p[1] || p[2])
        return -1;
    switch (p[1]) {
    case 's':
        *per_sec = (double)n;
        return 0;
    case 'm':
        *per_sec = (double)n / 60.0;
        return 0;
    case 'h':
        *per_sec = (double)n / 3600.0;
        return 0;
    default:
        return -1;
    }
}

void config_addr_clear(struct config_addr *a)
{
    if (!a)
        return;
    free(a->text);
    free(a->host);
    free(a->path);
    memset(a, 0, sizeof *a);
}

static const char *parse_port(const char *p, uint16_t *port)
{
    unsigned v = 0;
    size_t n = 0;
    for (; isdigit((unsigned char)p[n]) && n < 6; n++)
        v = v * 10 + (unsigned)(p[n] - '0');
    if (n == 0 || p[n])
        return "expected a decimal port after ':'";
    if (v < 1 || v > 65535)
        return "port must be between 1 and 65535";
    *port = (uint16_t)v;
    return NULL;
}

static const char *check_addr_host(const char *h)
{
    unsigned char bin[4];
    size_t n = strlen(h);
    if (n == 0)
        return "the host is empty";
    if (n > 253)
        return "the host is too long";
    if (strspn(h, "0123456789.") == n)
        return inet_pton(AF_INET, h, bin) == 1 ? NULL : "not a valid IPv4 address";
    if (h[0] == '-' || h[0] == '.')
        return "not a valid host name";
    for (; *h; h++)
        if (!isalnum((unsigned char)*h) && !strchr("-._", *h))
            return "not a valid host name";
    return NULL;
}

/* "[v6]:port": host gets the address between the brackets; returns the port text. */
static const char *split_bracketed(const char *s, char *host, size_t hlen, const char **why)
{
    const char *close = strchr(s, ']');
    unsigned char bin[16];
    if (!close || close[1] != ':') {
        *why = "expected [v6]:port";
        return NULL;
    }
    if ((size_t)(close - s - 1) >= hlen) {
        *why = "the host is too long";
        return NULL;
    }
    memcpy(host, s + 1, (size_t)(close - s - 1));
    host[close - s - 1] = '\0';
    if (inet_pton(AF_INET6, host, bin) != 1) {
        *why = "not a valid IPv6 address";
        return NULL;
    }
    return close + 2;
}

/* "host:port" with an IPv4 address or a name; returns the port text. */
static const char *split_hostport(const char *s, char *host, size_t hlen, const char **why)
{
    const char *colon = strrchr(s, ':');
    if (!colon)
        *why = "expected host:port, [v6]:port or unix:/path";
    else if (memchr(s, ':', (size_t)(colon - s)))
        *why = "IPv6 addresses must be in brackets, e.g. [::1]:8443";
    else if ((size_t)(colon - s) >= hlen)
        *why = "the host is too long";
    else {
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        *why = check_addr_host(host);
    }
    return *why ? NULL : colon + 1;
}

int config_addr_parse(const char *s, struct config_addr *out, const char **why)
{
    struct config_addr a = {0};
    *why = NULL;
    if (!strncmp(s, "unix:", 5)) {
        if (!s[5])
            *why = "the unix socket path is empty";
        else if (strlen(s + 5) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            *why = "the unix socket path is too long";
        if (*why)
            return -1;
        a.text = strdup(s);
        a.path = strdup(s + 5);
    } else {
        char host[256];
        const char *port = s[0] == '[' ? split_bracketed(s, host, sizeof host, why)
                                       : split_hostport(s, host, sizeof host, why);
        if (port)
            *why = parse_port(port, &a.port);
        if (*why)
            return -1;
        a.text = strdup(s);
        a.host = strdup(host);
    }
    if (!a.text || (!a.host && !a.path)) {
        config_addr_clear(&a);
        *why = "out of memory";
        return -1;
    }
    *out = a;
    return 0;
}

int config_parse_addr(const char *s, struct config_addr *out)
{
    const char *why;
    if (!s || !out)
        return -1;
    return config_addr_parse(s, out, &why);
}

/* ---- errors outside the loader --------------------------------------------------------- */

static void errs_add(struct config_errors *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void errs_add(struct config_errors *errs, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    if (!errs)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char *m = strdup(buf);
    char **v = m ? realloc(errs->msgs, (errs->count + 1) * sizeof *v) : NULL;
    if (!v) {
        free(m);
        return;
    }
    errs->msgs = v;
    errs->msgs[errs->count++] = m;
}

void config_errors_free(struct config_errors *errs)
{
    if (!errs)
        return;
    for (size_t i = 0; i < errs->count; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->count = 0;
}

/* Position of a value if it came from the YAML, else of its mapping, else fallback. */
static struct config_pos pos_of(const struct config_loader *L, const void *field,
                                const void *container, struct config_pos fallback)
{
    struct config_pos p = config_loader_pos(L, field, 0);
    if (p.line == 0 && container)
        p = config_loader_pos(L, container, 1);
    return p.line ? p : fallback;
}

/* libyaml reader errors carry a byte offset, not a mark. */
static struct config_pos offset_pos(const char *buf, size_t len, size_t off)
{
    struct config_pos p = {1, 1};
    for (size_t i = 0; i < off && i < len; i++) {
        if (buf[i] == '\n') {
            p.line++;
            p.column = 1;
        } else
            p.column++;
    }
    return p;
}

static void yaml_error(struct config_loader *L, const yaml_parser_t *p, const char *buf, size_t len)
{
    const char *problem = p->problem ? p->problem : "syntax error";
    struct config_pos pos = {(int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1};
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        config_loader_error(L, (struct config_pos){0, 0}, "", "out of memory");
        return;
    case YAML_READER_ERROR:
        pos = offset_pos(buf, len, p->problem_offset);
        if (p->problem_value != -1)
            config_loader_error(L, pos, "yaml", "%s: #%X", problem, (unsigned)p->problem_value);
        else
            config_loader_error(L, pos, "yaml", "%s", problem);
        return;
    default:
        if (p->context)
            config_loader_error(L, pos, "yaml", "%s (%s at line %d, column %d)", problem,
                                p->context, (int)p->context_mark.line + 1,
                                (int)p->context_mark.column + 1);
        else
            config_loader_error(L, pos, "yaml", "%s", problem);
    }
}

/* ---- checks across keys ---------------------------------------------------------------- */

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
    struct config_pos pos = pos_of(L, &l->admin, l, ROOT);
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
            config_loader_error(L, pos_of(L, all[i].a, l, ROOT), all[i].name,
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
                config_loader_error(L, pos_of(L, all[i].a, l, ROOT), all[i].name,
                                    "address conflicts with %s", all[j].name);
                break;
            }
        }
    }
    if (l->num_https > 0 && c->tls.num_certs == 0)
        config_loader_error(L, pos_of(L, &c->tls.certs, &c->tls, pos_of(L, l->https, l, ROOT)),
                            "tls.certificates",
                            "at least one certificate is required when listen.https is "
                            "non-empty");
}

/* Checks each element of a cipher string is known, and that all are ECDHE + AEAD. */
static void validate_ciphers(struct config_loader *L, const struct config_tls *t, SSL_CTX *ctx)
{
    struct config_pos pos = pos_of(L, &t->ciphers, t, ROOT);
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
    struct config_pos pos = pos_of(L, &t->ciphersuites, t, ROOT);
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
        config_loader_error(L, pos_of(L, &t->groups, t, ROOT), "tls.groups", "unknown group in %s",
                            config_quote(t->groups, q, sizeof q));
}

static void validate_tls(struct config_loader *L, struct config *c)
{
    struct config_tls *t = &c->tls;
    if (t->min_version < TLS1_2_VERSION && !t->allow_weak)
        config_loader_error(L, pos_of(L, &t->min_version, t, ROOT), "tls.min_version",
                            "%s is weak: set tls.allow_weak: true to allow it",
                            tls_version_name(t->min_version));
    if (t->client_verify && !t->client_ca)
        config_loader_error(L, pos_of(L, &t->client_verify, t, ROOT), "tls.client_verify",
                            "requires tls.client_ca");
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
        config_loader_error(L, pos_of(L, t->cert ? (void *)&t->cert : (void *)&t->key, t, ROOT),
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

static void validate_misc(struct config_loader *L, struct config *c,
                          const struct upstream_index *ix)
{
    const struct config_redis *r = &c->redis;
    const struct config_sessions *s = &c->sessions;
    if (c->redis_enabled) {
        if (r->password_file && r->password_env)
            config_loader_error(L, pos_of(L, &r->password_env, r, ROOT), "redis.password_env",
                                "set only one of password_file and password_env");
        validate_tls_client(L, &r->tls, "redis.tls");
    }
    for (size_t i = 0; i < c->num_upstreams; i++) { /* refused rather than silently ignored */
        const struct config_upstream *u = &c->upstreams[i];
        char key[160];
        snprintf(key, sizeof key, "upstreams.%.100s.health.path", u->name);
        if (u->health_path)
            config_loader_error(L, pos_of(L, &u->health_path, u, ROOT), key,
                                "not supported yet: servers that fail to connect are skipped "
                                "for 1 s (passive checks); leave health.path null");
    }
    if (c->log.syslog_address.text) /* refused rather than silently ignored */
        config_loader_error(L, pos_of(L, &c->log.syslog_address, &c->log, ROOT), "log.syslog",
                            "not supported yet: use log.audit (a file or stderr) "
                            "and forward it with the host's syslog daemon");
    if (s->token_min_len > s->token_max_len)
        config_loader_error(L, pos_of(L, &s->token_min_len, s, ROOT), "sessions.token_min_len",
                            "must not exceed sessions.token_max_len (%zu)", s->token_max_len);
    if (c->hsts.preload && (c->hsts.max_age < 31536000 || !c->hsts.include_subdomains))
        config_loader_error(L, pos_of(L, &c->hsts.preload, &c->hsts, ROOT), "hsts.preload",
                            "requires max_age >= 31536000 and include_subdomains: true");
    for (size_t i = 0; i < c->num_upstreams; i++) {
        char path[128];
        snprintf(path, sizeof path, "upstreams.%s.tls",
                 c->upstreams[i].name ? c->upstreams[i].name : "?");
        validate_tls_client(L, &c->upstreams[i].tls, path);
    }
    for (size_t i = 0; i < c->num_tenants; i++) {
        struct config_tenant *t = &c->tenants[i];
        char q[80];
        if (!t->name || !t->upstream)
            continue;
        t->up = upstream_index_find(ix, t->upstream);
        if (!t->up) {
            char path[200];
            snprintf(path, sizeof path, "tenants.%s.upstream", t->name);
            config_loader_error(L, pos_of(L, &t->upstream, t, ROOT), path, "unknown upstream %s",
                                config_quote(t->upstream, q, sizeof q));
        }
    }
}

static const char *const auth_names[] = {"none", "optional", "required"};

static void validate_rule(struct config_loader *L, const struct config *c,
                          const struct config_route *r, size_t i, size_t j)
{
    const struct config_rate_rule *rule = &r->rate_limits[j];
    char path[128];
    if ((rule->key == RL_KEY_SESSION || rule->key == RL_KEY_TENANT) && r->auth == AUTH_NONE) {
        snprintf(path, sizeof path, "routes[%zu].rate_limit[%zu].key", i, j);
        config_loader_error(L, pos_of(L, &rule->key, rule, ROOT), path,
                            "%s needs a route with auth: optional or required",
                            rule->key == RL_KEY_SESSION ? "session" : "tenant");
    }
    if (rule->scope == RL_SCOPE_GLOBAL && !c->redis_enabled) {
        snprintf(path, sizeof path, "routes[%zu].rate_limit[%zu].scope", i, j);
        config_loader_error(L, pos_of(L, &rule->scope, rule, ROOT), path,
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
        config_loader_error(L, pos_of(L, &r->upstream, NULL, rp), path, "unknown upstream %s",
                            config_quote(r->upstream, q, sizeof q));
    }
    if (r->mfa_required && r->auth == AUTH_NONE) {
        snprintf(path, sizeof path, "routes[%zu].mfa", i);
        config_loader_error(L, pos_of(L, &r->mfa_required, NULL, rp), path,
                            "required needs auth: optional or required");
    }
    if (r->auth != AUTH_NONE && !c->redis_enabled) {
        bool given = config_loader_pos(L, &r->auth, 0).line != 0;
        snprintf(path, sizeof path, "routes[%zu].auth", i);
        config_loader_error(L, pos_of(L, &r->auth, NULL, rp), path,
                            "%s%s requires a redis: section (sessions live in Redis)",
                            auth_names[r->auth], given ? "" : " (the default)");
    }
    if (r->auth != AUTH_NONE && !c->sessions.cookie && !c->sessions.bearer) {
        snprintf(path, sizeof path, "routes[%zu].auth", i);
        config_loader_error(L, pos_of(L, &r->auth, NULL, rp), path,
                            "needs sessions.cookie or sessions.bearer to find a token");
    }
    if (r->num_tenants && r->auth == AUTH_NONE) {
        snprintf(path, sizeof path, "routes[%zu].tenants", i);
        config_loader_error(L, pos_of(L, &r->tenants, NULL, rp), path,
                            "needs auth: optional or required (the tenant comes from the "
                            "session)");
    }
    if (r->browser && !c->sessions.login_url) {
        snprintf(path, sizeof path, "routes[%zu].browser", i);
        config_loader_error(L, pos_of(L, &r->browser, NULL, rp), path,
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
                v[m++] = (struct rule_ref){rule->id, pos_of(L, &rule->id, rule, ROOT), i, j};
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

static void validate(struct config_loader *L, struct config *c)
{
    struct upstream_index ix;
    upstream_index_build(&ix, c);
    validate_listen(L, c);
    validate_tls(L, c);
    validate_misc(L, c, &ix);
    if (c->num_routes == 0)
        config_loader_error(L, pos_of(L, &c->routes, NULL, ROOT), "routes",
                            "at least one route is required");
    for (size_t i = 0; i < c->num_routes; i++)
        validate_route(L, c, &ix, i);
    validate_rule_ids(L, c);
    free(ix.v);
}

/* ---- file checks ----------------------------------------------------------------------- */

/* Opens a regular file at least min bytes long; -1 (reported) otherwise. */
static int open_checked(struct config_loader *L, struct config_pos pos, const char *path,
                        const char *file, size_t min)
{
    struct stat st;
    char q[80];
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        config_loader_error(L, pos, path, "cannot open %s: %s", config_quote(file, q, sizeof q),
                            strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        config_loader_error(L, pos, path, "%s is not a regular file",
                            config_quote(file, q, sizeof q));
    } else if ((size_t)st.st_size < min) {
        config_loader_error(L, pos, path, "%s is too short: %lld bytes, at least %zu needed",
                            config_quote(file, q, sizeof q), (long long)st.st_size, min);
    } else
        return fd;
    close(fd);
    return -1;
}

static void check_file(struct config_loader *L, const void *field, const void *container,
                       const char *path, size_t min)
{
    const char *file = *(char *const *)field;
    int fd = file ? open_checked(L, pos_of(L, field, container, ROOT), path, file, min) : -1;
    if (fd >= 0)
        close(fd); /* contents stay where they are: a password is never read here */
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return -1; /* never prompt: an encrypted key is an error, not a question */
}

/* Reads the first certificate (or the key) from a PEM file; NULL is reported. */
static void *read_pem(struct config_loader *L, const void *field, const void *container,
                      const char *path, bool key)
{
    const char *file = *(char *const *)field;
    struct config_pos pos = pos_of(L, field, container, ROOT);
    char q[80];
    void *obj = NULL;
    int fd = file ? open_checked(L, pos, path, file, 1) : -1;
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (fd >= 0 && !f)
        close(fd);
    if (!f)
        return NULL;
    obj = key ? (void *)PEM_read_PrivateKey(f, NULL, no_passphrase, NULL)
              : (void *)PEM_read_X509(f, NULL, no_passphrase, NULL);
    fclose(f);
    ERR_clear_error();
    if (!obj)
        config_loader_error(L, pos, path, "no %s in %s",
                            key ? "usable PEM private key "
                                  "(unencrypted)"
                                : "PEM certificate",
                            config_quote(file, q, sizeof q));
    return obj;
}

/* A certificate and its key: both readable PEM, and the key matching the certificate. */
static void check_pair(struct config_loader *L, char *const *cert, char *const *key,
                       const void *container, struct config_pos item, const char *path)
{
    char cp[128], kp[128], q[80];
    snprintf(cp, sizeof cp, "%s.cert", path);
    snprintf(kp, sizeof kp, "%s.key", path);
    X509 *x = *cert ? read_pem(L, cert, container, cp, false) : NULL;
    EVP_PKEY *k = *key ? read_pem(L, key, container, kp, true) : NULL;
    if (x && k && X509_check_private_key(x, k) != 1)
        config_loader_error(L, item, kp, "does not match certificate %s",
                            config_quote(*cert, q, sizeof q));
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(k);
}

static void check_ca(struct config_loader *L, char *const *ca, const void *container,
                     const char *path)
{
    X509 *x = *ca ? read_pem(L, ca, container, path, false) : NULL;
    X509_free(x);
}

static void check_tls_client(struct config_loader *L, const struct config_tls_client *t,
                             const char *path)
{
    char p[128];
    snprintf(p, sizeof p, "%s.ca", path);
    check_ca(L, &t->ca, t, p);
    if (t->cert && t->key)
        check_pair(L, &t->cert, &t->key, t, pos_of(L, &t->key, t, ROOT), path);
}

static void check_files(struct config_loader *L, const struct config *c)
{
    char path[128];
    const struct config_tls *t = &c->tls;
    for (size_t i = 0; i < t->num_certs; i++) {
        const struct config_tls_cert *tc = &t->certs[i];
        struct config_pos item = {tc->line ? tc->line : 1, tc->line ? tc->column : 1};
        snprintf(path, sizeof path, "tls.certificates[%zu]", i);
        check_pair(L, &tc->cert, &tc->key, tc, item, path);
        snprintf(path, sizeof path, "tls.certificates[%zu].ocsp", i);
        check_file(L, &tc->ocsp, tc, path, 1);
    }
    check_ca(L, &t->client_ca, t, "tls.client_ca");
    check_file(L, &t->ticket_key_file, t, "tls.session_tickets.key_file", 1);
    if (c->redis_enabled) {
        check_tls_client(L, &c->redis.tls, "redis.tls");
        check_file(L, &c->redis.password_file, &c->redis, "redis.password_file", 1);
    }
    for (size_t i = 0; i < c->num_upstreams; i++) {
        snprintf(path, sizeof path, "upstreams.%s.tls",
                 c->upstreams[i].name ? c->upstreams[i].name : "?");
        check_tls_client(L, &c->upstreams[i].tls, path);
    }
    check_file(L, &c->identity.signing_key_file, &c->identity, "identity.signing_key_file",
               SIGNING_KEY_MIN);
    check_file(L, &c->identity.previous_signing_key_file, &c->identity,
               "identity.previous_signing_key_file", SIGNING_KEY_MIN);
}

/* ---- loading ---------------------------------------------------------------------------- */

/* Parses the one document in buf into c; false on a YAML syntax error. */
static bool parse_yaml(struct config_loader *L, struct config *c, const char *buf, size_t len)
{
    yaml_parser_t p;
    yaml_document_t doc, next;
    bool ok = false;

    if (!yaml_parser_initialize(&p)) {
        config_loader_error(L, (struct config_pos){0, 0}, "", "out of memory");
        return false;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&p, &doc)) {
        yaml_error(L, &p, buf, len);
        goto out_parser;
    }
    L->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root) {
        config_keys_parse(L, config_root_keys, c, root, "");
        if (root->type != YAML_MAPPING_NODE)
            goto out_doc; /* nothing was read: cross-checks would only add noise */
        if (!yaml_parser_load(&p, &next)) {
            yaml_error(L, &p, buf, len);
            goto out_doc;
        }
        yaml_node_t *extra = yaml_document_get_root_node(&next);
        if (extra)
            config_loader_error(L, config_node_pos(extra), "", "only one YAML document is allowed");
        yaml_document_delete(&next);
    }
    ok = !L->over_budget; /* half-walked: cross-checks would only add noise */
out_doc:
    L->doc = NULL;
    yaml_document_delete(&doc);
out_parser:
    yaml_parser_delete(&p);
    return ok;
}

static void config_free(struct config *c)
{
    config_keys_free(config_root_keys, c);
    free(c->path);
    free(c);
}

static int tenant_cmp(const void *a, const void *b)
{
    return strcmp(((const struct config_tenant *)a)->name, ((const struct config_tenant *)b)->name);
}

/* After a clean load: resolve "auto", sort tenants for config_find_tenant(). */
static void finalize(struct config *c)
{
    if (c->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
    }
    if (c->num_tenants > 1)
        qsort(c->tenants, c->num_tenants, sizeof *c->tenants, tenant_cmp);
}

static struct config *load_buffer(const char *name, const char *buf, size_t len, bool check,
                                  struct config_errors *errs)
{
    struct config_loader L;
    struct config *c = calloc(1, sizeof *c);
    char *path = strdup(name);

    if (!c || !path) {
        free(c);
        free(path);
        errs_add(errs, "%s: out of memory", name);
        return NULL;
    }
    atomic_init(&c->refs, 1);
    c->path = path;
    config_loader_init(&L, c->path, check);
    config_keys_defaults(&L, config_root_keys, c);
    if (parse_yaml(&L, c, buf, len) && !L.oom) { /* after OOM a field may be NULL */
        validate(&L, c);
        if (check)
            check_files(&L, c);
    }
    bool ok = L.num_errs == 0 && L.dropped == 0;
    if (ok)
        finalize(c);
    config_loader_finish(&L, errs);
    if (!ok) {
        config_free(c);
        return NULL;
    }
    return c;
}

struct config *config_load_string(const char *name, const char *yaml, bool check_files,
                                  struct config_errors *errs)
{
    if (!name)
        name = "<string>";
    if (!yaml) {
        errs_add(errs, "%s: no configuration text", name);
        return NULL;
    }
    return load_buffer(name, yaml, strlen(yaml), check_files, errs);
}

struct config *config_load(const char *path, struct config_errors *errs)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, &st) < 0) {
        errs_add(errs, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        errs_add(errs, "%s: cannot open: %s", path, strerror(EISDIR));
        goto fail;
    }
    for (;;) { /* not st_size: /dev/stdin and pipes work too */
        if (len == cap) {
            char *nb = cap < CONFIG_MAX_FILE ? realloc(buf, cap ? cap * 2 : 65536) : NULL;
            if (!nb) {
                errs_add(errs, "%s: too large (more than %u bytes) or out of memory", path,
                         CONFIG_MAX_FILE);
                goto fail;
            }
            buf = nb;
            cap = cap ? cap * 2 : 65536;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            errs_add(errs, "%s: cannot read: %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    struct config *c = load_buffer(path, buf, len, true, errs);
    free(buf);
    return c;
fail:
    if (fd >= 0)
        close(fd);
    free(buf);
    return NULL;
}

struct config *config_ref(struct config *c)
{
    if (c)
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void config_unref(struct config *c)
{
    if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        config_free(c);
}

const struct config_upstream *config_find_upstream(const struct config *c, const char *name)
{
    for (size_t i = 0; c && name && i < c->num_upstreams; i++)
        if (c->upstreams[i].name && !strcmp(c->upstreams[i].name, name))
            return &c->upstreams[i];
    return NULL;
}

const struct config_tenant *config_find_tenant(const struct config *c, const char *name, size_t len)
{
    size_t lo = 0, hi = c && name ? c->num_tenants : 0;
    while (lo < hi) { /* tenants are sorted by strcmp() order in finalize() */
        size_t mid = lo + (hi - lo) / 2;
        const char *t = c->tenants[mid].name;
        size_t tl = strlen(t);
        int d = memcmp(name, t, len < tl ? len : tl);
        if (d == 0)
            d = len < tl ? -1 : len > tl;
        if (d == 0)
            return &c->tenants[mid];
        if (d < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}
