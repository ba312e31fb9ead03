/*
 * tls: the server TLS policy (see tls.h and docs/tls.md).
 *
 * Build order: load every certificate (and refuse weak ones), index the SNI names,
 * group the certificates that serve each name into sets, make one SSL_CTX per
 * distinct set (the default set first), then attach OCSP staples. The policy is
 * immutable once built; only OCSP responses and ticket keys change underneath, each
 * behind its own lock.
 */
#include "tls/tls.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "config/config.h"
#include "tls/tls_ocsp.h"
#include "tls/tls_tickets.h"
#include "tls/tls_build.h"

#define TLS_MAX_SLOTS 8          /* certificate key types in one SSL_CTX */
#define TLS_SESSION_TIMEOUT 7200 /* seconds */
#define TLS_VERIFY_DEPTH 5
#define TLS_OCSP_RECHECK 3600 /* seconds, when cfg->ocsp_refresh_ms is 0 */

struct tls_ctxset {
    SSL_CTX *ctx;
    size_t certs[TLS_MAX_SLOTS]; /* indexes into policy->certs, ascending */
    size_t num_certs;
};

struct tls_name {
    const char *name; /* owned by a struct tls_cert */
    size_t ctx;       /* index into policy->ctxs */
};

struct tls_policy {
    atomic_int refs;
    struct tls_cert *certs;
    size_t num_certs;
    struct tls_ctxset *ctxs; /* ctxs[0]: the default (no or unknown SNI) */
    size_t num_ctxs;
    struct tls_name *names; /* sorted by name */
    size_t num_names;
    struct tls_ticket_store *tickets;
    time_t ocsp_recheck;    /* cfg->ocsp_refresh: longest a fetched staple is kept, s */
    bool ocsp_fetch;        /* cfg->ocsp_fetch: off, staples only come from files */
    unsigned char alpn[32]; /* cfg->alpn in wire format (length-prefixed), preference order */
    unsigned alpn_len;
};

static int ssl_index = -1, x509_index = -1;
static pthread_once_t index_once = PTHREAD_ONCE_INIT;

static void ssl_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    if (ptr != NULL)
        tls_policy_unref(ptr);
}

static void index_init(void)
{
    ssl_index = SSL_get_ex_new_index(0, "moat tls_policy", NULL, NULL, ssl_ex_free);
    x509_index = X509_get_ex_new_index(0, "moat tls_ocsp", NULL, NULL, NULL);
}

/* ---- SNI name index and certificate sets ---------------------------------- */

struct name_ref {
    const char *name;
    size_t cert;
};

static int name_ref_cmp(const void *a, const void *b)
{
    const struct name_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0)
        return c;
    return x->cert < y->cert ? -1 : x->cert > y->cert;
}

static int size_cmp(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* Returns the index of the set equal to certs[0..n), adding it if new; SIZE_MAX on ENOMEM. */
static size_t intern_set(struct tls_policy *p, size_t *certs, size_t n)
{
    qsort(certs, n, sizeof *certs, size_cmp);
    for (size_t i = 0; i < p->num_ctxs; i++)
        if (p->ctxs[i].num_certs == n && memcmp(p->ctxs[i].certs, certs, n * sizeof *certs) == 0)
            return i;
    struct tls_ctxset *s = realloc(p->ctxs, (p->num_ctxs + 1) * sizeof *s);
    if (s == NULL)
        return SIZE_MAX;
    p->ctxs = s;
    memset(&s[p->num_ctxs], 0, sizeof *s);
    memcpy(s[p->num_ctxs].certs, certs, n * sizeof *certs);
    s[p->num_ctxs].num_certs = n;
    return p->num_ctxs++;
}

struct name_group {
    const char *name;
    size_t set[TLS_MAX_SLOTS];
    size_t num;
};

/* The certificates serving refs[i..] (all the same name), one per key type. */
static size_t group_name(struct build *b, struct tls_policy *p, const struct name_ref *refs,
                         size_t i, size_t n, struct name_group *g)
{
    size_t j = i;
    g->name = refs[i].name;
    g->num = 0;
    for (; j < n && strcmp(refs[j].name, g->name) == 0; j++) {
        const struct tls_cert *c = &p->certs[refs[j].cert];
        size_t k = 0;
        while (k < g->num && p->certs[g->set[k]].key_type != c->key_type)
            k++;
        if (k < g->num) {
            if (g->set[k] != refs[j].cert)
                tls_build_warn(b,
                               "%s: %s is already served by %s with the same key type; "
                               "this certificate is not used for it",
                               c->path, g->name, p->certs[g->set[k]].path);
        } else if (g->num < TLS_MAX_SLOTS) {
            g->set[g->num++] = refs[j].cert;
        }
    }
    return j;
}

/*
 * Groups the certificates by SNI name. For each name the certificates serving it,
 * at most one per key type (the first listed wins), form a set; each distinct set
 * becomes one SSL_CTX. The set of the first certificate's first name (or the first
 * certificate alone if it has no name) is ctxs[0], the default.
 */
static int index_names(struct build *b, struct tls_policy *p)
{
    size_t total = 0, n = 0, ngroups = 0;
    for (size_t i = 0; i < p->num_certs; i++)
        total += p->certs[i].num_names;
    struct name_ref *refs = calloc(total + 1, sizeof *refs);
    struct name_group *groups = calloc(total + 1, sizeof *groups);
    p->names = calloc(total + 1, sizeof *p->names);
    if (refs == NULL || groups == NULL || p->names == NULL)
        goto oom;
    for (size_t i = 0; i < p->num_certs; i++)
        for (size_t j = 0; j < p->certs[i].num_names; j++)
            refs[n++] = (struct name_ref){p->certs[i].names[j], i};
    qsort(refs, n, sizeof *refs, name_ref_cmp);
    for (size_t i = 0; i < n; ngroups++)
        i = group_name(b, p, refs, i, n, &groups[ngroups]);

    size_t only_first[1] = {0};
    if (p->certs[0].num_names == 0 && intern_set(p, only_first, 1) == SIZE_MAX)
        goto oom;
    for (size_t g = 0; g < ngroups && p->num_ctxs == 0; g++)
        if (strcmp(groups[g].name, p->certs[0].names[0]) == 0 &&
            intern_set(p, groups[g].set, groups[g].num) == SIZE_MAX)
            goto oom;
    for (size_t g = 0; g < ngroups; g++) {
        size_t ctx = intern_set(p, groups[g].set, groups[g].num);
        if (ctx == SIZE_MAX)
            goto oom;
        p->names[p->num_names++] = (struct tls_name){groups[g].name, ctx};
    }
    free(refs);
    free(groups);
    return 0;
oom:
    free(refs);
    free(groups);
    return tls_build_fail(b, "tls: out of memory");
}

/* ---- SSL_CTX --------------------------------------------------------------- */

static size_t find_name(const struct tls_policy *p, const char *host)
{
    size_t lo = 0, hi = p->num_names;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(host, p->names[mid].name);
        if (c == 0)
            return p->names[mid].ctx;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return SIZE_MAX;
}

/* Extracts the host_name from a server_name extension body (RFC 6066), lower case. */
static int parse_sni(const unsigned char *p, size_t len, char *host, size_t hostlen)
{
    if (len < 5 || (size_t)((p[0] << 8) | p[1]) != len - 2 || p[2] != 0)
        return -1;
    size_t n = (size_t)((p[3] << 8) | p[4]);
    if (n == 0 || n > len - 5 || n >= hostlen)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[5 + i] == '\0')
            return -1;
        host[i] = (char)tolower(p[5 + i]);
    }
    if (host[n - 1] == '.')
        n--;
    host[n] = '\0';
    return n > 0 ? 0 : -1;
}

/*
 * ClientHello callback: switches to the SSL_CTX serving the SNI name before
 * OpenSSL looks at sessions, so resumption is checked against the session id
 * context of the certificate set that will really be used. Exact names first,
 * then "*.rest" for the name minus its first label; unknown: the default.
 */
static int client_hello_cb(SSL *s, int *al, void *arg)
{
    const struct tls_policy *p = arg;
    const unsigned char *ext;
    size_t len;
    char host[256];
    if (SSL_client_hello_get0_ext(s, TLSEXT_TYPE_server_name, &ext, &len) != 1 ||
        parse_sni(ext, len, host, sizeof host) < 0)
        return SSL_CLIENT_HELLO_SUCCESS;
    size_t ctx = find_name(p, host);
    char *dot = strchr(host, '.');
    if (ctx == SIZE_MAX && dot != NULL && dot > host) {
        dot[-1] = '*';
        ctx = find_name(p, dot - 1);
    }
    if (ctx != SIZE_MAX && p->ctxs[ctx].ctx != SSL_get_SSL_CTX(s))
        SSL_set_SSL_CTX(s, p->ctxs[ctx].ctx);
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* OCSP status callback: staples the response of the certificate OpenSSL chose. */
static int status_cb(SSL *s, void *arg)
{
    X509 *leaf = SSL_get_certificate(s);
    struct tls_ocsp *o = leaf != NULL ? X509_get_ex_data(leaf, x509_index) : NULL;
    return o != NULL ? tls_ocsp_staple(o, s) : SSL_TLSEXT_ERR_NOACK;
}

/*
 * The cipher list OpenSSL resolved for TLS 1.2 and below: every suite must be ECDHE
 * key exchange, RSA or ECDSA authentication and an AEAD. Names all offenders.
 */
/*
 * ALPN: the first of our protocols (in our order of preference, h2 first) that
 * the client offers. No overlap is not an error: the connection goes on
 * without ALPN and speaks HTTP/1.1, as it would with a client that sent none.
 */
static int alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    const struct tls_policy *p = arg;
    unsigned char *sel = NULL;
    unsigned char sel_len = 0;
    if (SSL_select_next_proto(&sel, &sel_len, p->alpn, p->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    *outlen = sel_len;
    return SSL_TLSEXT_ERR_OK;
}

static void set_alpn(struct tls_policy *p, const struct config_tls *cfg)
{
    p->alpn_len = 0;
    for (size_t i = 0; i < cfg->num_alpn; i++) {
        size_t n = strlen(cfg->alpn[i]);
        if (n == 0 || n > 8 || p->alpn_len + 1 + n > sizeof p->alpn)
            continue; /* the schema only lets "h2" and "http/1.1" through */
        p->alpn[p->alpn_len++] = (unsigned char)n;
        memcpy(p->alpn + p->alpn_len, cfg->alpn[i], n);
        p->alpn_len += (unsigned)n;
    }
}

static int check_ciphers(struct build *b, SSL_CTX *ctx)
{
    STACK_OF(SSL_CIPHER) *sk = SSL_CTX_get_ciphers(ctx);
    char bad[400] = "";
    size_t used = 0;
    int tls12 = 0;
    for (int i = 0; i < sk_SSL_CIPHER_num(sk); i++) {
        const SSL_CIPHER *c = sk_SSL_CIPHER_value(sk, i);
        int kx = SSL_CIPHER_get_kx_nid(c), auth = SSL_CIPHER_get_auth_nid(c);
        if (kx == NID_kx_any)
            continue; /* TLS 1.3: all AEAD, all (EC)DHE */
        tls12++;
        const char *why = kx != NID_kx_ecdhe                               ? "not ECDHE"
                          : auth != NID_auth_rsa && auth != NID_auth_ecdsa ? "no authentication"
                          : !SSL_CIPHER_is_aead(c)                         ? "CBC/not AEAD"
                                                                           : NULL;
        if (why != NULL && used < sizeof bad)
            used += (size_t)snprintf(bad + used, sizeof bad - used, "%s%s (%s)", used ? ", " : "",
                                     SSL_CIPHER_get_name(c), why);
    }
    if (tls12 == 0 && b->cfg->min_version < TLS1_3_VERSION)
        return tls_build_fail(b, "tls.ciphers: no TLS 1.2 cipher left");
    if (used > 0 && tls_build_weak(b, "tls.ciphers: %s", bad) < 0)
        return -1;
    return 0;
}

/* Protocol, suites, groups, options: everything but certificates and callbacks. */
static int set_protocol(struct build *b, SSL_CTX *ctx)
{
    const struct config_tls *cfg = b->cfg;
    int minv = cfg->min_version != 0 ? cfg->min_version : TLS1_2_VERSION;
    SSL_CTX_set_security_level(ctx, b->weak_seen ? 0 : 2);
    if (SSL_CTX_set_min_proto_version(ctx, minv) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1)
        return tls_build_fail(b, "tls.min_version: unsupported %s", tls_version_name(minv));
    if (SSL_CTX_set_cipher_list(ctx, cfg->ciphers ? cfg->ciphers : CONFIG_TLS_CIPHERS) != 1)
        return tls_build_fail(b, "tls.ciphers: no usable cipher in \"%s\"",
                              cfg->ciphers ? cfg->ciphers : CONFIG_TLS_CIPHERS);
    if (SSL_CTX_set_ciphersuites(ctx, cfg->ciphersuites ? cfg->ciphersuites
                                                        : CONFIG_TLS_CIPHERSUITES) != 1)
        return tls_build_fail(b, "tls.ciphersuites: no usable TLS 1.3 suite");
    if (SSL_CTX_set1_groups_list(ctx, cfg->groups ? cfg->groups : CONFIG_TLS_GROUPS) != 1)
        return tls_build_fail(b, "tls.groups: unknown group in \"%s\"",
                              cfg->groups ? cfg->groups : CONFIG_TLS_GROUPS);
    uint64_t opts = SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                    SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3;
    if (!cfg->tickets_enabled)
        opts |= SSL_OP_NO_TICKET;
    SSL_CTX_set_options(ctx, opts);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Read-ahead: one read() per burst of records instead of two per record
       (header, then body). tlsio keeps reading while SSL_has_pending(). */
    SSL_CTX_set_read_ahead(ctx, 1);
    return 0;
}

/* Session cache, tickets and their lifetime. */
static int set_sessions(struct build *b, struct tls_policy *p, SSL_CTX *ctx)
{
    const struct config_tls *cfg = b->cfg;
    long timeout = TLS_SESSION_TIMEOUT;
    if (cfg->tickets_enabled && cfg->ticket_rotate_ms / 1000 > 0 &&
        cfg->ticket_rotate_ms / 1000 < (uint64_t)timeout)
        timeout = (long)(cfg->ticket_rotate_ms / 1000); /* still decryptable when presented */
    SSL_CTX_set_timeout(ctx, timeout);
    SSL_CTX_set_session_cache_mode(ctx,
                                   cfg->session_cache ? SSL_SESS_CACHE_SERVER : SSL_SESS_CACHE_OFF);
    SSL_CTX_sess_set_cache_size(ctx, TLS_POLICY_SESSION_CACHE);
    /* TLS 1.3: one ticket per handshake; with tickets off but a cache, a stateful one */
    SSL_CTX_set_num_tickets(ctx, cfg->tickets_enabled || cfg->session_cache ? 1 : 0);
    if (cfg->tickets_enabled && tls_tickets_attach(p->tickets, ctx) < 0)
        return tls_build_fail(b, "tls: cannot install the session ticket callback");
    return 0;
}

/* mTLS: trust store and CA names shared by every SSL_CTX of the policy. */
static int set_client_auth(struct build *b, SSL_CTX *ctx, X509_STORE *store,
                           STACK_OF(X509_NAME) * ca_names)
{
    if (store == NULL)
        return 0;
    STACK_OF(X509_NAME) *dup = SSL_dup_CA_list(ca_names);
    if (dup == NULL)
        return tls_build_fail(b, "%s: cannot install the client CA", b->cfg->client_ca);
    SSL_CTX_set1_cert_store(ctx, store);
    SSL_CTX_set_client_CA_list(ctx, dup);
    SSL_CTX_set_verify(ctx,
                       b->cfg->client_verify ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                             : SSL_VERIFY_PEER,
                       NULL);
    SSL_CTX_set_verify_depth(ctx, TLS_VERIFY_DEPTH);
    return 0;
}

/*
 * Session id context: a digest of the certificate set and the client-auth settings,
 * stable across reloads with the same files (tickets survive a reload) and different
 * when a session could not honestly be resumed (other certificate, other mTLS rules).
 */
static int set_sid_ctx(struct build *b, struct tls_policy *p, struct tls_ctxset *set,
                       const unsigned char *ca_digest)
{
    unsigned char md[EVP_MAX_MD_SIZE], sid[32];
    unsigned int mdlen;
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    int ok = h != NULL && EVP_DigestInit_ex(h, EVP_sha256(), NULL) == 1;
    for (size_t i = 0; ok && i < set->num_certs; i++)
        ok = X509_digest(p->certs[set->certs[i]].leaf, EVP_sha256(), md, &mdlen) == 1 &&
             EVP_DigestUpdate(h, md, mdlen) == 1;
    unsigned char verify = b->cfg->client_verify;
    ok = ok && EVP_DigestUpdate(h, ca_digest, 32) == 1 && EVP_DigestUpdate(h, &verify, 1) == 1 &&
         EVP_DigestFinal_ex(h, sid, NULL) == 1 &&
         SSL_CTX_set_session_id_context(set->ctx, sid, sizeof sid) == 1;
    EVP_MD_CTX_free(h);
    return ok ? 0 : tls_build_fail(b, "tls: cannot set the session id context");
}

struct client_auth {
    X509_STORE *store;
    STACK_OF(X509_NAME) * names;
    unsigned char digest[32];
};

static int make_ctx(struct build *b, struct tls_policy *p, struct tls_ctxset *set,
                    const struct client_auth *ca, bool stapling)
{
    set->ctx = SSL_CTX_new(TLS_server_method());
    if (set->ctx == NULL)
        return tls_build_fail(b, "tls: cannot create SSL_CTX");
    SSL_CTX *ctx = set->ctx;
    if (set_protocol(b, ctx) < 0 || set_sessions(b, p, ctx) < 0 ||
        set_client_auth(b, ctx, ca->store, ca->names) < 0 || set_sid_ctx(b, p, set, ca->digest) < 0)
        return -1;
    for (size_t i = 0; i < set->num_certs; i++) {
        struct tls_cert *c = &p->certs[set->certs[i]];
        if (SSL_CTX_use_cert_and_key(ctx, c->leaf, c->key, c->chain, 1) != 1)
            return tls_build_fail(b, "%s: OpenSSL refused the certificate", c->path);
    }
    SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, p);
    if (p->alpn_len)
        SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, p);
    if (stapling)
        SSL_CTX_set_tlsext_status_cb(ctx, status_cb);
    return 0;
}

static int load_client_ca(struct build *b, struct client_auth *ca)
{
    memset(ca, 0, sizeof *ca);
    const char *path = b->cfg->client_ca;
    if (path == NULL)
        return 0;
    if (access(path, R_OK) != 0)
        return tls_build_fail(b, "%s: cannot read: %s", path, strerror(errno));
    ca->store = X509_STORE_new();
    ca->names = SSL_load_client_CA_file(path);
    if (ca->store == NULL || X509_STORE_load_file(ca->store, path) != 1 || ca->names == NULL)
        return tls_build_fail(b, "%s: cannot load the client CA bundle", path);
    /* digest of the CA subjects, for the session id context */
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    int ok = h != NULL && EVP_DigestInit_ex(h, EVP_sha256(), NULL) == 1;
    for (int i = 0; ok && i < sk_X509_NAME_num(ca->names); i++) {
        unsigned char *der = NULL;
        int len = i2d_X509_NAME(sk_X509_NAME_value(ca->names, i), &der);
        ok = len > 0 && EVP_DigestUpdate(h, der, (size_t)len) == 1;
        OPENSSL_free(der);
    }
    ok = ok && EVP_DigestFinal_ex(h, ca->digest, NULL) == 1;
    EVP_MD_CTX_free(h);
    return ok ? 0 : tls_build_fail(b, "%s: cannot digest the client CA bundle", path);
}

/* ---- OCSP ------------------------------------------------------------------ */

/*
 * A staple that cannot be used is a warning (the certificate is served without it:
 * a stale OCSP file must not block a certificate renewal), unless the certificate
 * is must-staple, where serving it without a staple would break clients.
 */
static int setup_ocsp(struct build *b, struct tls_cert *c, const struct config_tls_cert *cc,
                      bool *any)
{
    char msg[400];
    bool must = tls_ocsp_must_staple(c->leaf), fetch = b->cfg->ocsp_fetch;
    if (cc->ocsp == NULL && !fetch)
        return must ? tls_build_fail(b,
                                     "%s: must-staple certificate: set its ocsp file or ocsp_fetch",
                                     c->path)
                    : 0;
    c->ocsp = tls_ocsp_new(c->leaf, c->chain, msg, sizeof msg);
    if (c->ocsp == NULL) {
        if (must)
            return tls_build_fail(b, "%s: must-staple certificate: %s", c->path, msg);
        tls_build_warn(b, "%s: %s; no OCSP stapling", c->path, msg);
        return 0;
    }
    X509_set_ex_data(c->leaf, x509_index, c->ocsp);
    *any = true;
    if (cc->ocsp != NULL && tls_ocsp_load_file(c->ocsp, cc->ocsp, msg, sizeof msg) < 0) {
        if (must && !fetch)
            return tls_build_fail(
                b, "%s: must-staple certificate without a valid OCSP response: %s", c->path, msg);
        tls_build_warn(b, "%s: OCSP response not stapled: %s", c->path, msg);
    }
    if (fetch && tls_ocsp_responder(c->ocsp) == NULL) {
        if (must && !tls_ocsp_has_staple(c->ocsp, time(NULL)))
            return tls_build_fail(b, "%s: must-staple certificate names no OCSP responder",
                                  c->path);
        tls_build_warn(b, "%s: ocsp_fetch is on but the certificate names no OCSP responder",
                       c->path);
    }
    return 0;
}

/* ---- policy ---------------------------------------------------------------- */

static void policy_free(struct tls_policy *p)
{
    for (size_t i = 0; i < p->num_ctxs; i++)
        SSL_CTX_free(p->ctxs[i].ctx);
    for (size_t i = 0; i < p->num_certs; i++) {
        struct tls_cert *c = &p->certs[i];
        if (c->ocsp != NULL)
            X509_set_ex_data(c->leaf, x509_index, NULL);
        tls_ocsp_free(c->ocsp);
        X509_free(c->leaf);
        EVP_PKEY_free(c->key);
        sk_X509_pop_free(c->chain, X509_free);
        for (size_t j = 0; j < c->num_names; j++)
            free(c->names[j]);
        free(c->names);
        free(c->path);
    }
    free(p->certs);
    free(p->ctxs);
    free(p->names);
    tls_tickets_unref(p->tickets);
    free(p);
}

/* Rules that do not depend on certificates: protocol floor and the cipher list. */
static int check_protocol(struct build *b)
{
    int minv = b->cfg->min_version != 0 ? b->cfg->min_version : TLS1_2_VERSION;
    if (minv < TLS1_2_VERSION &&
        tls_build_weak(b, "tls.min_version: %s (TLSv1.2 minimum)", tls_version_name(minv)) < 0)
        return -1;
    if (minv < TLS1_VERSION)
        return tls_build_fail(b, "tls.min_version: SSLv3 and older are never enabled");
    SSL_CTX *probe = SSL_CTX_new(TLS_server_method());
    if (probe == NULL)
        return tls_build_fail(b, "tls: cannot create SSL_CTX");
    /* with TLS 1.3 only, the TLS 1.2 list is never used */
    int rc = set_protocol(b, probe) < 0 ? -1 : minv >= TLS1_3_VERSION ? 0 : check_ciphers(b, probe);
    SSL_CTX_free(probe);
    return rc;
}

struct tls_policy *tls_policy_build(const struct config_tls *cfg, struct tls_ticket_store *tickets,
                                    tls_warn_fn warnfn, void *warnarg, char *err, size_t errlen)
{
    struct build b = {cfg, warnfn, warnarg, err, errlen, false};
    struct client_auth ca = {0};
    bool stapling = false;
    pthread_once(&index_once, index_init);
    ERR_clear_error();
    if (ssl_index < 0 || x509_index < 0) {
        tls_build_fail(&b, "tls: cannot allocate ex_data indexes");
        return NULL;
    }
    if (cfg->num_certs == 0) {
        tls_build_fail(&b, "tls.certificates: at least one certificate is required");
        return NULL;
    }
    if (cfg->tickets_enabled && tickets == NULL) {
        tls_build_fail(&b, "tls.session_tickets: enabled but no ticket key store");
        return NULL;
    }
    struct tls_policy *p = calloc(1, sizeof *p);
    if (p == NULL || (p->certs = calloc(cfg->num_certs, sizeof *p->certs)) == NULL) {
        free(p);
        tls_build_fail(&b, "tls: out of memory");
        return NULL;
    }
    atomic_init(&p->refs, 1);
    p->num_certs = cfg->num_certs;
    p->tickets = cfg->tickets_enabled ? tls_tickets_ref(tickets) : NULL;
    p->ocsp_fetch = cfg->ocsp_fetch;
    set_alpn(p, cfg);
    p->ocsp_recheck =
        cfg->ocsp_refresh_ms >= 1000 ? (time_t)(cfg->ocsp_refresh_ms / 1000) : TLS_OCSP_RECHECK;
    for (size_t i = 0; i < cfg->num_certs; i++)
        if (tls_cert_load(&b, &cfg->certs[i], &p->certs[i]) < 0)
            goto fail;
    for (size_t i = 1; i < cfg->num_certs; i++)
        if (p->certs[i].num_names == 0 &&
            tls_build_fail(&b, "%s: no DNS name (subjectAltName or CN): SNI can never select it",
                           p->certs[i].path) < 0)
            goto fail;
    if (check_protocol(&b) < 0 || index_names(&b, p) < 0 || load_client_ca(&b, &ca) < 0)
        goto fail;
    for (size_t i = 0; i < cfg->num_certs; i++)
        if (setup_ocsp(&b, &p->certs[i], &cfg->certs[i], &stapling) < 0)
            goto fail;
    for (size_t i = 0; i < p->num_ctxs; i++)
        if (make_ctx(&b, p, &p->ctxs[i], &ca, stapling) < 0)
            goto fail;
    X509_STORE_free(ca.store);
    sk_X509_NAME_pop_free(ca.names, X509_NAME_free);
    return p;
fail:
    X509_STORE_free(ca.store);
    sk_X509_NAME_pop_free(ca.names, X509_NAME_free);
    policy_free(p);
    ERR_clear_error();
    return NULL;
}

struct tls_policy *tls_policy_ref(struct tls_policy *p)
{
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

void tls_policy_unref(struct tls_policy *p)
{
    if (p != NULL && atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
        policy_free(p);
}

SSL *tls_policy_new_ssl(struct tls_policy *p)
{
    SSL *s = SSL_new(p->ctxs[0].ctx);
    if (s == NULL)
        return NULL;
    if (SSL_set_ex_data(s, ssl_index, tls_policy_ref(p)) != 1) {
        tls_policy_unref(p);
        SSL_free(s);
        return NULL;
    }
    SSL_set_accept_state(s);
    return s;
}

int tls_policy_ocsp_refresh(struct tls_policy *p, int timeout_s, time_t *next, tls_warn_fn warnfn,
                            void *warnarg)
{
    int failed = 0;
    time_t now = time(NULL), soonest = now + p->ocsp_recheck;
    if (!p->ocsp_fetch) {
        if (next != NULL)
            *next = soonest;
        return 0;
    }
    for (size_t i = 0; i < p->num_certs; i++) {
        struct tls_ocsp *o = p->certs[i].ocsp;
        if (o == NULL || tls_ocsp_responder(o) == NULL)
            continue;
        char msg[400];
        if (tls_ocsp_refresh_at(o, p->ocsp_recheck) <= now &&
            tls_ocsp_fetch(o, NULL, timeout_s, msg, sizeof msg) < 0) {
            failed++;
            if (warnfn != NULL) {
                char w[600];
                snprintf(w, sizeof w, "%s: %s", p->certs[i].path, msg);
                warnfn(w, warnarg);
            }
        }
        time_t at = tls_ocsp_refresh_at(o, p->ocsp_recheck);
        if (at < soonest)
            soonest = at;
    }
    if (next != NULL)
        *next = soonest;
    return failed;
}

void tls_policy_ocsp_inherit(struct tls_policy *p, struct tls_policy *old)
{
    for (size_t i = 0; i < p->num_certs; i++)
        for (size_t j = 0; p->certs[i].ocsp != NULL && j < old->num_certs; j++)
            if (old->certs[j].ocsp != NULL)
                tls_ocsp_inherit(p->certs[i].ocsp, old->certs[j].ocsp);
}

size_t tls_policy_num_certs(const struct tls_policy *p)
{
    return p ? p->num_certs : 0;
}

int tls_policy_cert_info(const struct tls_policy *p, size_t i, struct tls_cert_info *out)
{
    if (!p || i >= p->num_certs)
        return -1;
    const struct tls_cert *c = &p->certs[i];
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notAfter(c->leaf), &tm) != 1)
        return -1;
    out->path = c->path;
    out->name = c->num_names ? c->names[0] : "";
    out->not_after = timegm(&tm);
    return 0;
}
