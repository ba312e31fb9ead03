/*
 * test_tls: real TLS handshakes, in memory, between an OpenSSL client and the SSL
 * objects tls_policy_new_ssl() makes, over a BIO pair. The PKI (a root, an
 * intermediate, RSA and ECDSA leaves, a weak and a SHA-1 leaf, client certificates
 * and OCSP responses) is made with the openssl CLI in a temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "config/config.h"
#include "tls/tls.h"
#include "tls/tls_ocsp.h"
#include "tls/tls_tickets.h"

static char g_dir[64];
static int g_ocsp_port;
static time_t g_pki_time; /* before the OCSP responses were made */
static struct tls_ticket_store *g_tickets;
static char g_warnings[8192];
static int g_nwarnings;

/* ---- allocation accounting (memory per idle connection) -------------------- */

static size_t g_live; /* bytes allocated while g_track and not yet freed */
static int g_track;

#define HDR 16

static void *t_malloc(size_t n, const char *file, int line)
{
    unsigned char *p = malloc(n + HDR);
    if (p == NULL)
        return NULL;
    ((size_t *)p)[0] = n;
    ((size_t *)p)[1] = (size_t)g_track;
    if (g_track)
        g_live += n;
    return p + HDR;
}

static void t_free(void *ptr, const char *file, int line)
{
    if (ptr == NULL)
        return;
    unsigned char *p = (unsigned char *)ptr - HDR;
    if (((size_t *)p)[1])
        g_live -= ((size_t *)p)[0];
    free(p);
}

static void *t_realloc(void *ptr, size_t n, const char *file, int line)
{
    if (ptr == NULL)
        return t_malloc(n, file, line);
    if (n == 0) {
        t_free(ptr, file, line);
        return NULL;
    }
    unsigned char *p = (unsigned char *)ptr - HDR;
    size_t old = ((size_t *)p)[0], tracked = ((size_t *)p)[1];
    unsigned char *q = realloc(p, n + HDR);
    if (q == NULL)
        return NULL;
    ((size_t *)q)[0] = n;
    if (tracked)
        g_live = g_live - old + n;
    return q + HDR;
}

/* ---- PKI -------------------------------------------------------------------- */

static const char gen_script[] =
    "set -e\n"
    "q() { \"$@\" >/dev/null 2>&1 || { echo \"FAILED: $*\" >&2; exit 1; }; }\n"
    "printf 'basicConstraints=critical,CA:true\\nkeyUsage=critical,keyCertSign,cRLSign\\n"
    "subjectKeyIdentifier=hash\\nauthorityKeyIdentifier=keyid\\n' > ca.ext\n"
    "leafext() {\n"
    "  printf 'basicConstraints=CA:false\\nkeyUsage=critical,digitalSignature,keyEncipherment\\n"
    "extendedKeyUsage=%s\\nsubjectKeyIdentifier=hash\\nauthorityKeyIdentifier=keyid\\n' \"$1\" > "
    "\"$2\"\n"
    "  if [ -n \"$3\" ]; then printf 'subjectAltName=%s\\n' \"$3\" >> \"$2\"; fi\n"
    "  if [ -n \"$4\" ]; then printf 'authorityInfoAccess=OCSP;URI:%s\\n' \"$4\" >> \"$2\"; fi\n"
    "  if [ -n \"$5\" ]; then printf 'tlsfeature=status_request\\n' >> \"$2\"; fi\n"
    "  return 0\n"
    "}\n"
    /* keys first, in parallel: RSA key generation is most of the time */
    "rsa() { q openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:$2 -out $1.key; }\n"
    "ec() { q openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1.key; }\n"
    "for k in root int rsa_a rsa_b sha1 cn must responder; do rsa $k 2048 & done\n"
    "rsa weak 1024 &\n"
    "for k in ec_a clientca evilca alice mallory; do ec $k & done\n"
    "wait\n"
    "for k in root int rsa_a rsa_b sha1 cn must responder weak ec_a clientca evilca alice mallory; "
    "do\n"
    "  [ -s $k.key ] || { echo \"FAILED: key $k\" >&2; exit 1; }\n"
    "done\n"
    "q openssl req -x509 -key root.key -out root.crt -days 3650 "
    "-subj /CN=moat-test-root -addext basicConstraints=critical,CA:true "
    "-addext keyUsage=critical,keyCertSign,cRLSign\n"
    "q openssl req -new -key int.key -out int.csr -subj /CN=moat-test-int\n"
    "q openssl x509 -req -in int.csr -CA root.crt -CAkey root.key -set_serial 2 -days 3650 -sha256 "
    "-extfile ca.ext -out int.crt\n"
    /* leaf name subject san [md] [aia] [must-staple] [eku] */
    "leaf() {\n"
    "  q openssl req -new -key $1.key -out $1.csr -subj \"$2\"\n"
    "  leafext ${7:-serverAuth} $1.ext \"$3\" \"$5\" \"$6\"\n"
    "  q openssl x509 -req -in $1.csr -CA int.crt -CAkey int.key -CAcreateserial -days 365 "
    "-${4:-sha256} -extfile $1.ext -out $1.only\n"
    "  cat $1.only int.crt > $1.crt\n"
    "}\n"
    "leaf rsa_a /CN=a.test 'DNS:a.test,DNS:*.wild.test' sha256 http://127.0.0.1:$PORT\n"
    "leaf ec_a /CN=a.test DNS:a.test\n"
    "leaf rsa_b /CN=b.test DNS:b.test\n"
    "leaf weak /CN=weak.test DNS:weak.test\n"
    "leaf sha1 /CN=sha1.test DNS:sha1.test sha1\n"
    "leaf cn /CN=cn.test ''\n"
    "leaf must /CN=must.test DNS:must.test sha256 '' yes\n"
    "leaf responder /CN=moat-test-ocsp '' sha256 '' '' OCSPSigning\n"
    "for ca in clientca evilca; do\n"
    "  q openssl req -x509 -key $ca.key -out $ca.crt -days 3650 -subj /CN=moat-test-$ca "
    "-addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign\n"
    "done\n"
    "for c in alice:clientca mallory:evilca; do\n"
    "  n=${c%%:*}; ca=${c##*:}\n"
    "  q openssl req -new -key $n.key -out $n.csr -subj /O=tenant-1/CN=$n\n"
    "  leafext clientAuth $n.ext '' ''\n"
    "  q openssl x509 -req -in $n.csr -CA $ca.crt -CAkey $ca.key -CAcreateserial -days 365 "
    "-sha256 -extfile $n.ext -out $n.crt\n"
    "done\n"
    "ser() { openssl x509 -in $1 -noout -serial | cut -d= -f2; }\n"
    "printf 'V\\t351231235959Z\\t\\t%s\\tunknown\\t/CN=a.test\\n' $(ser rsa_a.only) > index.txt\n"
    "printf 'V\\t351231235959Z\\t\\t%s\\tunknown\\t/CN=b.test\\n' $(ser rsa_b.only) >> index.txt\n"
    "printf 'R\\t351231235959Z\\t240101000000Z,keyCompromise\\t%s\\tunknown\\t/CN=a.test\\n' "
    "$(ser rsa_a.only) > revoked.txt\n"
    ": > index.txt.attr; : > revoked.txt.attr\n"
    "resp() { q openssl ocsp -index $1 -rsigner $2.only -rkey $2.key -CA int.crt -issuer int.crt "
    "-cert $3.only -respout $4 -ndays 1; }\n"
    "cp int.crt int.only\n"
    "resp index.txt int rsa_a ocsp_a.der\n"
    "resp index.txt int rsa_b ocsp_b.der\n"
    "resp revoked.txt int rsa_a ocsp_a_revoked.der\n"
    "resp index.txt responder rsa_a ocsp_a_delegated.der\n"
    "cp root.crt root.only\n"
    "resp index.txt root rsa_a ocsp_a_by_root.der\n"
    "touch done\n";

/* Returns "<dir>/<file>" in one of a ring of buffers (enough for one config). */
static const char *pk(const char *file)
{
    static char ring[48][160];
    static int next;
    char *b = ring[next++ % 48];
    snprintf(b, sizeof ring[0], "%s/%s", g_dir, file);
    return b;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        return 0;
    close(fd);
    return ntohs(sa.sin_port);
}

static int setup_pki(void **state)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/moat-test-tls-XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        return -1;
    g_ocsp_port = free_port();
    g_pki_time = time(NULL);
    char path[128], cmd[256];
    snprintf(path, sizeof path, "%s/gen.sh", g_dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fputs(gen_script, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "cd %s && PORT=%d sh gen.sh", g_dir, g_ocsp_port);
    if (system(cmd) != 0)
        return -1;
    char err[256];
    g_tickets = tls_tickets_new(NULL, 2, err, sizeof err);
    return g_tickets != NULL ? 0 : -1;
}

static int teardown_pki(void **state)
{
    char cmd[128];
    tls_tickets_unref(g_tickets);
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- configs -------------------------------------------------------------- */

static struct config_tls_cert g_certs[8];

static void collect_warning(const char *msg, void *arg)
{
    size_t used = strlen(g_warnings);
    snprintf(g_warnings + used, sizeof g_warnings - used, "%s\n", msg);
    g_nwarnings++;
}

static void set_cert(size_t i, const char *name)
{
    char crt[64], key[64];
    snprintf(crt, sizeof crt, "%s.crt", name);
    snprintf(key, sizeof key, "%s.key", name);
    free(g_certs[i].cert);
    free(g_certs[i].key);
    free(g_certs[i].ocsp);
    g_certs[i] = (struct config_tls_cert){
        .cert = strdup(pk(crt)), .key = strdup(pk(key)), .line = (int)i + 1};
}

static void free_certs(void)
{
    for (size_t i = 0; i < 8; i++) {
        free(g_certs[i].cert);
        free(g_certs[i].key);
        free(g_certs[i].ocsp);
        memset(&g_certs[i], 0, sizeof g_certs[i]);
    }
}

/* rsa_a (a.test, *.wild.test), ec_a (a.test), rsa_b (b.test), cn (CN only). */
static struct config_tls base_cfg(void)
{
    free_certs();
    set_cert(0, "rsa_a");
    set_cert(1, "ec_a");
    set_cert(2, "rsa_b");
    set_cert(3, "cn");
    g_warnings[0] = '\0';
    g_nwarnings = 0;
    return (struct config_tls){
        .certs = g_certs,
        .num_certs = 4,
        .min_version = TLS1_2_VERSION,
        .tickets_enabled = true,
        .ticket_rotate_ms = 12 * 3600 * 1000ull,
        .session_cache = false,
    };
}

static struct tls_policy *build(const struct config_tls *cfg, char *err, size_t errlen)
{
    return tls_policy_build(cfg, g_tickets, collect_warning, NULL, err, errlen);
}

static struct tls_policy *build_ok(const struct config_tls *cfg)
{
    char err[512] = "";
    struct tls_policy *p = build(cfg, err, sizeof err);
    if (p == NULL)
        fprintf(stderr, "build failed: %s\n", err);
    assert_non_null(p);
    return p;
}

/* ---- in-memory handshakes -------------------------------------------------- */

struct client_opts {
    int min_version, max_version;
    const char *ciphers; /* TLS 1.2 list */
    const char *suites;  /* TLS 1.3 */
    const char *sigalgs;
    const char *sni;
    const char *verify_host;
    const char *cert;     /* client certificate (mTLS) */
    SSL_SESSION *session; /* to resume */
    bool want_ocsp;
    bool insecure; /* security level 0, for old protocol tests */
};

struct conn {
    SSL_CTX *cctx;
    SSL *c, *s;
};

static SSL_CTX *client_ctx(const struct client_opts *o)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    if (o->insecure)
        SSL_CTX_set_security_level(ctx, 0);
    SSL_CTX_set_min_proto_version(ctx, o->min_version ? o->min_version : TLS1_VERSION);
    SSL_CTX_set_max_proto_version(ctx, o->max_version ? o->max_version : TLS1_3_VERSION);
    if (o->ciphers != NULL)
        assert_int_equal(SSL_CTX_set_cipher_list(ctx, o->ciphers), 1);
    if (o->suites != NULL)
        assert_int_equal(SSL_CTX_set_ciphersuites(ctx, o->suites), 1);
    if (o->sigalgs != NULL)
        assert_int_equal(SSL_CTX_set1_sigalgs_list(ctx, o->sigalgs), 1);
    assert_int_equal(SSL_CTX_load_verify_file(ctx, pk("root.crt")), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (o->cert != NULL) {
        char crt[64], key[64];
        snprintf(crt, sizeof crt, "%s.crt", o->cert);
        snprintf(key, sizeof key, "%s.key", o->cert);
        assert_int_equal(SSL_CTX_use_certificate_file(ctx, pk(crt), SSL_FILETYPE_PEM), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, pk(key), SSL_FILETYPE_PEM), 1);
    }
    return ctx;
}

static void conn_open(struct conn *k, struct tls_policy *p, const struct client_opts *o)
{
    k->cctx = client_ctx(o);
    k->c = SSL_new(k->cctx);
    g_track = 1;
    k->s = tls_policy_new_ssl(p);
    g_track = 0;
    assert_non_null(k->c);
    assert_non_null(k->s);
    if (o->sni != NULL)
        SSL_set_tlsext_host_name(k->c, o->sni);
    if (o->verify_host != NULL)
        SSL_set1_host(k->c, o->verify_host);
    if (o->session != NULL)
        assert_int_equal(SSL_set_session(k->c, o->session), 1);
    if (o->want_ocsp)
        SSL_set_tlsext_status_type(k->c, TLSEXT_STATUSTYPE_ocsp);
    BIO *bc, *bs;
    assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
    SSL_set_bio(k->c, bc, bc);
    SSL_set_bio(k->s, bs, bs);
    SSL_set_connect_state(k->c);
}

/* A clean close: OpenSSL forgets sessions of connections freed without one. */
static void conn_close(struct conn *k)
{
    if (SSL_is_init_finished(k->c) && SSL_is_init_finished(k->s)) {
        SSL_shutdown(k->c);
        g_track = 1;
        SSL_shutdown(k->s);
        g_track = 0;
    }
    SSL_free(k->c);
    g_track = 1;
    SSL_free(k->s);
    g_track = 0;
    SSL_CTX_free(k->cctx);
    ERR_clear_error();
}

static bool io_ok(SSL *s, int rc)
{
    int e = SSL_get_error(s, rc);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/* Drives both ends until both finished (0) or one failed (-1). */
static int conn_handshake(struct conn *k)
{
    bool cdone = false, sdone = false;
    for (int i = 0; i < 50 && !(cdone && sdone); i++) {
        if (!cdone) {
            int rc = SSL_do_handshake(k->c);
            if (rc == 1)
                cdone = true;
            else if (!io_ok(k->c, rc))
                return -1;
        }
        if (!sdone) {
            g_track = 1;
            int rc = SSL_do_handshake(k->s);
            g_track = 0;
            if (rc == 1)
                sdone = true;
            else if (!io_ok(k->s, rc))
                return -1;
        }
    }
    if (!(cdone && sdone))
        return -1;
    /* TLS 1.3: the server's tickets and a client-auth failure alert arrive after
     * both ends consider the handshake done; one byte each way settles them. */
    char b;
    g_track = 1;
    int w = SSL_write(k->s, "s", 1);
    g_track = 0;
    if (w != 1 || SSL_read(k->c, &b, 1) != 1 || SSL_write(k->c, "c", 1) != 1)
        return -1;
    g_track = 1;
    int r = SSL_read(k->s, &b, 1);
    g_track = 0;
    return r == 1 ? 0 : -1;
}

/* Opens, handshakes, returns 0/-1; the caller closes. TLS_TEST_DEBUG=1 prints why. */
static int connect_with(struct conn *k, struct tls_policy *p, const struct client_opts *o)
{
    conn_open(k, p, o);
    int rc = conn_handshake(k);
    if (rc < 0 && getenv("TLS_TEST_DEBUG") != NULL) {
        fprintf(stderr, "handshake failed (sni %s):\n", o->sni ? o->sni : "-");
        ERR_print_errors_fp(stderr);
    }
    return rc;
}

static bool peer_is(SSL *c, const char *cn, int key_type)
{
    X509 *x = SSL_get0_peer_certificate(c);
    char buf[128] = "";
    if (x == NULL)
        return false;
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, sizeof buf);
    return strcmp(buf, cn) == 0 && EVP_PKEY_get_base_id(X509_get0_pubkey(x)) == key_type;
}

/* A full handshake, then the client's session (to resume later). */
static SSL_SESSION *session_from(struct tls_policy *p, const struct client_opts *o)
{
    struct conn k;
    assert_int_equal(connect_with(&k, p, o), 0);
    assert_false(SSL_session_reused(k.c));
    SSL_SESSION *sess = SSL_get1_session(k.c);
    conn_close(&k);
    return sess;
}

static bool resumes(struct tls_policy *p, const struct client_opts *base, SSL_SESSION *sess)
{
    struct client_opts o = *base;
    o.session = sess;
    struct conn k;
    assert_int_equal(connect_with(&k, p, &o), 0);
    bool r = SSL_session_reused(k.c) && SSL_session_reused(k.s) && tls_conn_resumed(k.s);
    conn_close(&k);
    return r;
}

#define BROWSER_TLS12                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"       \
    "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA:"    \
    "AES256-SHA"

/* ---- protocol and suites --------------------------------------------------- */

static void test_build_default_no_warning(void **state)
{
    struct config_tls cfg = base_cfg();
    struct tls_policy *p = build_ok(&cfg);
    assert_int_equal(g_nwarnings, 0);
    tls_policy_unref(p);
}

static void test_tls12_browser_gets_ecdhe_rsa_aes128_gcm(void **state)
{
    struct config_tls cfg = base_cfg();
    struct tls_policy *p = build_ok(&cfg);
    const char *names[] = {"b.test", "a.test"};
    for (size_t i = 0; i < 2; i++) {
        struct client_opts o = {.max_version = TLS1_2_VERSION,
                                .ciphers = BROWSER_TLS12,
                                .sni = names[i],
                                .verify_host = names[i]};
        struct conn k;
        assert_int_equal(connect_with(&k, p, &o), 0);
        assert_string_equal(tls_conn_version(k.s), "TLSv1.2");
        assert_string_equal(tls_conn_cipher(k.s), "ECDHE-RSA-AES128-GCM-SHA256");
        assert_true(peer_is(k.c, names[i], EVP_PKEY_RSA));
        /* the client only trusts the root: the intermediate was sent */
        assert_int_equal(SSL_get_verify_result(k.c), X509_V_OK);
        conn_close(&k);
    }
    tls_policy_unref(p);
}

static void test_tls13_default(void **state)
{
    struct config_tls cfg = base_cfg();
    struct tls_policy *p = build_ok(&cfg);
    struct client_opts o = {.sni = "b.test", .verify_host = "b.test"};
    struct conn k;
    assert_int_equal(connect_with(&k, p, &o), 0);
    assert_string_equal(tls_conn_version(k.s), "TLSv1.3");
    assert_string_equal(tls_conn_cipher(k.s), "TLS_AES_128_GCM_SHA256");
    assert_string_equal(tls_conn_servername(k.s), "b.test");
    assert_false(tls_conn_resumed(k.s));
    char subj[128];
    assert_int_equal(tls_conn_peer_subject(k.s, subj, sizeof subj), -1);
    conn_close(&k);
    assert_string_equal(tls_conn_version(NULL), "-");
    assert_string_equal(tls_conn_cipher(NULL), "-");
    tls_policy_unref(p);
}

static void test_old_protocols_refused(void **state)
{
    struct config_tls cfg = base_cfg();
    struct tls_policy *p = build_ok(&cfg);
    int versions[] = {TLS1_VERSION, TLS1_1_VERSION};
    for (size_t i = 0; i < 2; i++) {
        struct client_opts o = {.min_version = versions[i],
                                .max_version = versions[i],
                                .ciphers = "ALL:@SECLEVEL=0",
                                .insecure = true,
                                .sni = "b.test"};
        struct conn k;
        assert_int_equal(connect_with(&k, p, &o), -1);
        conn_close(&k);
    }
    tls_policy_unref(p);
}

static void test_weak_client_suites_refused(void **state)
{
    struct config_tls cfg = base_cfg();
    struct tls_policy *p = build_ok(&cfg);
    const char *lists[] = {
        "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:ECDHE-RSA-AES128-SHA256", /* CBC only */
        "AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA",                    /* RSA kx only */
        "DES-CBC3-SHA:ECDHE-RSA-DES-CBC3-SHA:@SECLEVEL=0",                   /* 3DES only */
        "DHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0",                             /* DHE only */
    };
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        struct client_opts o = {.max_version = TLS1_2_VERSION, .insecure = true, .sni = "b.test"};
        SSL_CTX *probe = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_security_level(probe, 0);
        int usable = SSL_CTX_set_cipher_list(probe, lists[i]);
        SSL_CTX_free(probe);
        ERR_clear_error();
        if (usable != 1)
            continue; /* this OpenSSL build has none of these: nothing to offer */
        o.ciphers = lists[i];
        struct conn k;
        assert_int_equal(connect_with(&k, p, &o), -1);
        conn_close(&k);
    }
    tls_policy_unref(p);
}

static void test_client_renegotiation_refused(void **state)
{
    struct config_tls cfg = base_cfg();
    struct tls_policy *p = build_ok(&cfg);
    struct client_opts o = {.max_version = TLS1_2_VERSION, .sni = "b.test"};
    struct conn k;
    assert_int_equal(connect_with(&k, p, &o), 0);
    assert_int_equal(SSL_renegotiate(k.c), 1);
    bool renegotiated = true;
    char b;
    for (int i = 0; i < 10; i++) {
        int rc = SSL_do_handshake(k.c);
        if (rc <= 0 && !io_ok(k.c, rc)) {
            renegotiated = false;
            break;
        }
        rc = SSL_read(k.s, &b, 1);
        if (rc <= 0 && !io_ok(k.s, rc)) {
            renegotiated = false;
            break;
        }
    }
    assert_false(renegotiated); /* the server answers no_renegotiation: the client gives up */
    conn_close(&k);
    tls_policy_unref(p);
}

/* ---- certificate selection ----------------------------------------------------- */

static void test_sni_selects_certificate(void **state)
{
    struct config_tls cfg = base_cfg();
    struct tls_policy *p = build_ok(&cfg);
    struct {
        const char *sni, *cn;
    } cases[] = {
        {"a.test", "a.test"},        {"b.test", "b.test"},    {"x.wild.test", "a.test"},
        {"B.TEST.", "b.test"},       {"cn.test", "cn.test"},  {"unknown.test", "a.test"},
        {"a.b.wild.test", "a.test"}, {"wild.test", "a.test"}, {NULL, "a.test"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* RSA-only signature algorithms: the RSA certificate of each set */
        struct client_opts o = {.sni = cases[i].sni, .sigalgs = "rsa_pss_rsae_sha256"};
        struct conn k;
        assert_int_equal(connect_with(&k, p, &o), 0);
        if (!peer_is(k.c, cases[i].cn, EVP_PKEY_RSA))
            fail_msg("SNI %s: expected %s", cases[i].sni ? cases[i].sni : "(none)", cases[i].cn);
        conn_close(&k);
    }
    /* the wildcard name verifies, so the chain and the SAN are the right ones */
    struct client_opts o = {.sni = "x.wild.test", .verify_host = "x.wild.test"};
    struct conn k;
    assert_int_equal(connect_with(&k, p, &o), 0);
    assert_int_equal(SSL_get_verify_result(k.c), X509_V_OK);
    conn_close(&k);
    tls_policy_unref(p);
}

static void test_ecdsa_and_rsa_by_client_capability(void **state)
{
    struct config_tls cfg = base_cfg();
    struct tls_policy *p = build_ok(&cfg);
    struct {
        int maxv;
        const char *ciphers, *sigalgs;
        int key_type;
    } cases[] = {
        {TLS1_3_VERSION, NULL, "ECDSA+SHA256", EVP_PKEY_EC},
        {TLS1_3_VERSION, NULL, "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384", EVP_PKEY_RSA},
        {TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384", NULL,
         EVP_PKEY_EC},
        {TLS1_2_VERSION, "ECDHE-RSA-AES256-GCM-SHA384", NULL, EVP_PKEY_RSA},
        {TLS1_2_VERSION, NULL, "ECDSA+SHA256", EVP_PKEY_EC},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct client_opts o = {.max_version = cases[i].maxv,
                                .ciphers = cases[i].ciphers,
                                .sigalgs = cases[i].sigalgs,
                                .sni = "a.test",
                                .verify_host = "a.test"};
        struct conn k;
        assert_int_equal(connect_with(&k, p, &o), 0);
        if (!peer_is(k.c, "a.test", cases[i].key_type))
            fail_msg("case %zu: wrong certificate type", i);
        assert_int_equal(SSL_get_verify_result(k.c), X509_V_OK);
        conn_close(&k);
    }
    /* a name with only an RSA certificate cannot serve an ECDSA-only client */
    struct client_opts o = {.sigalgs = "ECDSA+SHA256", .sni = "b.test"};
    struct conn k;
    assert_int_equal(connect_with(&k, p, &o), -1);
    conn_close(&k);
    tls_policy_unref(p);
}

/* ---- refusing weak configurations ----------------------------------------------- */

static void expect_refused_then_warned(struct config_tls *cfg, const char *needle)
{
    char err[512] = "";
    struct tls_policy *p = build(cfg, err, sizeof err);
    assert_null(p);
    if (strstr(err, needle) == NULL)
        fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
    assert_non_null(strstr(err, "allow_weak"));
    cfg->allow_weak = true;
    g_warnings[0] = '\0';
    g_nwarnings = 0;
    p = build_ok(cfg);
    if (strstr(g_warnings, needle) == NULL)
        fail_msg("warnings \"%s\" do not mention \"%s\"", g_warnings, needle);
    tls_policy_unref(p);
}

static void test_weak_rsa_1024_refused(void **state)
{
    struct config_tls cfg = base_cfg();
    set_cert(4, "weak");
    cfg.num_certs = 5;
    expect_refused_then_warned(&cfg, "RSA key of 1024 bits");

    /* with allow_weak the weak certificate is really served */
    cfg.allow_weak = true;
    struct tls_policy *p = build_ok(&cfg);
    struct client_opts o = {.sni = "weak.test", .verify_host = "weak.test", .insecure = true};
    struct conn k;
    assert_int_equal(connect_with(&k, p, &o), 0);
    assert_true(peer_is(k.c, "weak.test", EVP_PKEY_RSA));
    conn_close(&k);
    tls_policy_unref(p);
}

static void test_sha1_leaf_refused(void **state)
{
    struct config_tls cfg = base_cfg();
    set_cert(4, "sha1");
    cfg.num_certs = 5;
    expect_refused_then_warned(&cfg, "certificate signed with SHA1");
}

static void test_old_min_version_refused(void **state)
{
    struct config_tls cfg = base_cfg();
    cfg.min_version = TLS1_VERSION;
    expect_refused_then_warned(&cfg, "TLSv1 ");
    cfg = base_cfg();
    cfg.min_version = TLS1_1_VERSION;
    expect_refused_then_warned(&cfg, "TLSv1.1");
}

static void test_weak_config_suites_refused(void **state)
{
    struct config_tls cfg = base_cfg();
    cfg.ciphers = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-SHA";
    expect_refused_then_warned(&cfg, "ECDHE-RSA-AES128-SHA (CBC");
    cfg = base_cfg();
    cfg.ciphers = "ECDHE-RSA-AES128-GCM-SHA256:AES256-GCM-SHA384";
    expect_refused_then_warned(&cfg, "AES256-GCM-SHA384 (not ECDHE");
    cfg = base_cfg();
    cfg.ciphers = "ECDHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256";
    expect_refused_then_warned(&cfg, "DHE-RSA-AES128-GCM-SHA256 (not ECDHE");
}

static void test_config_errors(void **state)
{
    char err[512];
    struct config_tls cfg = base_cfg();
    free(g_certs[0].key);
    g_certs[0].key = strdup(pk("rsa_b.key"));
    assert_null(build(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "does not match"));
    assert_non_null(strstr(err, "rsa_a.crt"));

    cfg = base_cfg();
    free(g_certs[1].cert);
    g_certs[1].cert = strdup(pk("missing.crt"));
    assert_null(build(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "missing.crt: cannot open"));

    cfg = base_cfg();
    cfg.groups = "X25519:nosuchgroup";
    assert_null(build(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "tls.groups"));

    cfg = base_cfg();
    cfg.num_certs = 0;
    assert_null(build(&cfg, err, sizeof err));

    cfg = base_cfg();
    assert_null(tls_policy_build(&cfg, NULL, NULL, NULL, err, sizeof err)); /* no ticket store */
    assert_int_equal(ERR_peek_error(), 0);
}

/* ---- sessions and tickets ---------------------------------------------------------- */

static void test_ticket_resumption(void **state)
{
    struct config_tls cfg = base_cfg();
    struct tls_policy *p = build_ok(&cfg);
    int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    for (size_t i = 0; i < 2; i++) {
        struct client_opts o = {.max_version = versions[i], .sni = "b.test"};
        SSL_SESSION *sess = session_from(p, &o);
        assert_true(SSL_SESSION_has_ticket(sess));
        assert_true(resumes(p, &o, sess));
        SSL_SESSION_free(sess);
    }
    tls_policy_unref(p);
}

static void test_ticket_survives_rotation_then_retires(void **state)
{
    struct config_tls cfg = base_cfg();
    struct tls_policy *p = build_ok(&cfg);
    char err[256];
    int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    for (size_t i = 0; i < 2; i++) {
        struct client_opts o = {.max_version = versions[i], .sni = "b.test"};
        SSL_SESSION *sess = session_from(p, &o);
        assert_int_equal(tls_tickets_rotate(g_tickets, err, sizeof err), 0);
        assert_true(resumes(p, &o, sess)); /* previous key still decrypts */
        assert_int_equal(tls_tickets_rotate(g_tickets, err, sizeof err), 0);
        assert_true(resumes(p, &o, sess)); /* kept 2 previous keys */
        assert_int_equal(tls_tickets_count(g_tickets), 3);
        assert_int_equal(tls_tickets_rotate(g_tickets, err, sizeof err), 0);
        assert_false(resumes(p, &o, sess)); /* retired: full handshake */
        SSL_SESSION_free(sess);
    }
    tls_policy_unref(p);
}

static void test_tickets_survive_reload(void **state)
{
    struct config_tls cfg = base_cfg();
    struct tls_policy *p1 = build_ok(&cfg), *p2 = build_ok(&cfg);
    struct client_opts o = {.sni = "a.test"};
    SSL_SESSION *sess = session_from(p1, &o);
    assert_true(resumes(p2, &o, sess));
    SSL_SESSION_free(sess);
    tls_policy_unref(p1);
    tls_policy_unref(p2);
}

static void test_no_resumption_across_certificates(void **state)
{
    struct config_tls cfg = base_cfg();
    struct tls_policy *p = build_ok(&cfg);
    int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    for (size_t i = 0; i < 2; i++) {
        struct client_opts a = {.max_version = versions[i], .sni = "a.test"};
        struct client_opts b = {.max_version = versions[i], .sni = "b.test"};
        SSL_SESSION *sess = session_from(p, &a);
        assert_false(resumes(p, &b, sess));
        SSL_SESSION_free(sess);
    }
    tls_policy_unref(p);
}

static void test_tickets_disabled(void **state)
{
    struct config_tls cfg = base_cfg();
    cfg.tickets_enabled = false;
    struct tls_policy *p = build_ok(&cfg);
    int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    for (size_t i = 0; i < 2; i++) {
        struct client_opts o = {.max_version = versions[i], .sni = "b.test"};
        SSL_SESSION *sess = session_from(p, &o);
        assert_false(SSL_SESSION_has_ticket(sess));
        assert_false(resumes(p, &o, sess));
        SSL_SESSION_free(sess);
    }
    tls_policy_unref(p);
}

static void test_session_cache_without_tickets(void **state)
{
    struct config_tls cfg = base_cfg();
    cfg.tickets_enabled = false;
    cfg.session_cache = true;
    struct tls_policy *p = build_ok(&cfg);
    int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    for (size_t i = 0; i < 2; i++) {
        struct client_opts o = {.max_version = versions[i], .sni = "b.test"};
        SSL_SESSION *sess = session_from(p, &o);
        assert_true(resumes(p, &o, sess));
        SSL_SESSION_free(sess);
    }
    tls_policy_unref(p);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_ticket_key_file_shared(void **state)
{
    char k[3][TLS_TICKET_LINE_LEN], text[512], err[256];
    for (int i = 0; i < 3; i++)
        assert_int_equal(tls_tickets_generate_line(k[i], sizeof k[i]), 0);
    const char *path = pk("tickets.key");
    snprintf(text, sizeof text, "# oldest first\n%s\n%s\n\n%s\n", k[0], k[1], k[2]);
    write_file(path, text);

    /* two instances sharing the file */
    struct tls_ticket_store *s1 = tls_tickets_new(path, 2, err, sizeof err);
    struct tls_ticket_store *s2 = tls_tickets_new(path, 2, err, sizeof err);
    assert_non_null(s1);
    assert_non_null(s2);
    assert_int_equal(tls_tickets_count(s1), 3);
    struct config_tls cfg = base_cfg();
    struct tls_policy *p1 = tls_policy_build(&cfg, s1, NULL, NULL, err, sizeof err);
    struct tls_policy *p2 = tls_policy_build(&cfg, s2, NULL, NULL, err, sizeof err);
    assert_non_null(p1);
    assert_non_null(p2);
    struct client_opts o = {.sni = "b.test"};
    SSL_SESSION *sess = session_from(p1, &o);
    assert_true(resumes(p2, &o, sess));

    /* instance 2 rotates first: k1 (the encryption key) is still in its file */
    snprintf(text, sizeof text, "%s\n%s\n", k[1], k[2]);
    write_file(path, text);
    assert_int_equal(tls_tickets_rotate(s2, err, sizeof err), 0);
    assert_true(resumes(p2, &o, sess));
    /* k1 gone from the file: tickets sealed with it are refused */
    snprintf(text, sizeof text, "%s\n", k[2]);
    write_file(path, text);
    assert_int_equal(tls_tickets_rotate(s2, err, sizeof err), 0);
    assert_false(resumes(p2, &o, sess));
    SSL_SESSION_free(sess);

    /* a broken file keeps the keys in use */
    write_file(path, "not base64 at all\n");
    assert_int_equal(tls_tickets_rotate(s2, err, sizeof err), -1);
    assert_non_null(strstr(err, "tickets.key:1:"));
    assert_int_equal(tls_tickets_count(s2), 1);
    assert_null(tls_tickets_new(path, 2, err, sizeof err));
    write_file(path, "# nothing\n");
    assert_null(tls_tickets_new(path, 2, err, sizeof err));
    assert_non_null(strstr(err, "no ticket key"));
    assert_null(tls_tickets_new(pk("nope.key"), 2, err, sizeof err));

    tls_policy_unref(p1);
    tls_policy_unref(p2);
    tls_tickets_unref(s1);
    tls_tickets_unref(s2);
}

/* ---- mTLS -------------------------------------------------------------------------- */

static void test_mtls_required(void **state)
{
    struct config_tls cfg = base_cfg();
    char *ca = strdup(pk("clientca.crt"));
    cfg.client_ca = ca;
    cfg.client_verify = true;
    struct tls_policy *p = build_ok(&cfg);
    int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    for (size_t i = 0; i < 2; i++) {
        struct client_opts o = {.max_version = versions[i], .sni = "b.test", .cert = "alice"};
        struct conn k;
        char subj[256];
        assert_int_equal(connect_with(&k, p, &o), 0);
        assert_int_equal(tls_conn_peer_subject(k.s, subj, sizeof subj),
                         (int)strlen("CN=alice,O=tenant-1"));
        assert_string_equal(subj, "CN=alice,O=tenant-1");
        assert_int_equal(tls_conn_peer_subject(k.s, subj, 5), -1); /* does not fit */
        SSL_SESSION *sess = SSL_get1_session(k.c);
        conn_close(&k);
        /* a resumed session keeps the verified identity */
        o.session = sess;
        assert_int_equal(connect_with(&k, p, &o), 0);
        assert_true(SSL_session_reused(k.s));
        assert_int_equal(tls_conn_peer_subject(k.s, subj, sizeof subj),
                         (int)strlen("CN=alice,O=tenant-1"));
        conn_close(&k);
        SSL_SESSION_free(sess);

        o = (struct client_opts){.max_version = versions[i], .sni = "b.test"};
        assert_int_equal(connect_with(&k, p, &o), -1); /* no certificate */
        conn_close(&k);
        o.cert = "mallory";
        assert_int_equal(connect_with(&k, p, &o), -1); /* untrusted issuer */
        conn_close(&k);
    }
    tls_policy_unref(p);

    /* a session made without client auth does not resume once it is required */
    cfg.client_ca = NULL;
    cfg.client_verify = false;
    struct tls_policy *open = build_ok(&cfg);
    cfg.client_ca = ca;
    cfg.client_verify = true;
    p = build_ok(&cfg);
    struct client_opts o = {.sni = "b.test"};
    SSL_SESSION *sess = session_from(open, &o);
    o.session = sess;
    struct conn k;
    assert_int_equal(connect_with(&k, p, &o), -1);
    conn_close(&k);
    SSL_SESSION_free(sess);
    tls_policy_unref(open);
    tls_policy_unref(p);
    free(ca);
}

static void test_mtls_optional(void **state)
{
    struct config_tls cfg = base_cfg();
    char *ca = strdup(pk("clientca.crt"));
    cfg.client_ca = ca;
    cfg.client_verify = false;
    struct tls_policy *p = build_ok(&cfg);
    struct client_opts o = {.sni = "b.test"};
    struct conn k;
    char subj[256];
    assert_int_equal(connect_with(&k, p, &o), 0);
    assert_int_equal(tls_conn_peer_subject(k.s, subj, sizeof subj), -1);
    conn_close(&k);
    o.cert = "alice";
    assert_int_equal(connect_with(&k, p, &o), 0);
    assert_true(tls_conn_peer_subject(k.s, subj, sizeof subj) > 0);
    conn_close(&k);
    o.cert = "mallory";
    assert_int_equal(connect_with(&k, p, &o), -1);
    conn_close(&k);
    tls_policy_unref(p);
    free(ca);

    cfg.client_ca = "/nonexistent/ca.pem";
    char err[256];
    assert_null(build(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
}

/* ---- OCSP -------------------------------------------------------------------------- */

/* Returns the length of the staple the client received, 0 if none; checks it. */
static long staple_len(SSL *c)
{
    const unsigned char *der;
    long len = SSL_get_tlsext_status_ocsp_resp(c, &der);
    if (len <= 0 || der == NULL)
        return 0;
    OCSP_RESPONSE *r = d2i_OCSP_RESPONSE(NULL, &der, len);
    assert_non_null(r);
    assert_int_equal(OCSP_response_status(r), OCSP_RESPONSE_STATUS_SUCCESSFUL);
    OCSP_RESPONSE_free(r);
    return len;
}

static struct tls_policy *ocsp_policy(const char *file, char *err, size_t errlen)
{
    struct config_tls cfg = base_cfg();
    g_certs[0].ocsp = file != NULL ? strdup(pk(file)) : NULL;
    return build(&cfg, err, errlen);
}

static long staple_for(struct tls_policy *p, const char *sni, const char *sigalgs)
{
    struct client_opts o = {.sni = sni, .sigalgs = sigalgs, .want_ocsp = true};
    struct conn k;
    assert_int_equal(connect_with(&k, p, &o), 0);
    long n = staple_len(k.c);
    conn_close(&k);
    return n;
}

static void test_ocsp_stapled(void **state)
{
    char err[512];
    const char *files[] = {"ocsp_a.der", "ocsp_a_delegated.der"};
    for (size_t i = 0; i < 2; i++) {
        struct tls_policy *p = ocsp_policy(files[i], err, sizeof err);
        assert_non_null(p);
        assert_int_equal(g_nwarnings, 0);
        /* TLS 1.3 and 1.2, RSA certificate of a.test: stapled */
        assert_true(staple_for(p, "a.test", "rsa_pss_rsae_sha256") > 0);
        struct client_opts o = {
            .max_version = TLS1_2_VERSION, .sni = "x.wild.test", .want_ocsp = true};
        struct conn k;
        assert_int_equal(connect_with(&k, p, &o), 0);
        assert_true(staple_len(k.c) > 0);
        conn_close(&k);
        /* the ECDSA certificate of the same name and b.test have no staple */
        assert_int_equal(staple_for(p, "a.test", "ECDSA+SHA256"), 0);
        assert_int_equal(staple_for(p, "b.test", NULL), 0);
        tls_policy_unref(p);
    }
}

static void test_ocsp_bad_responses_not_stapled(void **state)
{
    struct {
        const char *file, *why;
    } cases[] = {
        {"ocsp_b.der", "another certificate"},
        {"ocsp_a_revoked.der", "revoked"},
        {"ocsp_a_by_root.der", "not signed by the certificate's issuer"},
        {"rsa_a.crt", "not a DER OCSP response"},
        {"nothere.der", "No such file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[512];
        struct tls_policy *p = ocsp_policy(cases[i].file, err, sizeof err);
        assert_non_null(p);
        if (strstr(g_warnings, cases[i].why) == NULL || strstr(g_warnings, cases[i].file) == NULL)
            fail_msg("%s: warnings \"%s\"", cases[i].file, g_warnings);
        assert_int_equal(staple_for(p, "a.test", "rsa_pss_rsae_sha256"), 0);
        tls_policy_unref(p);
    }
}

static void test_ocsp_must_staple(void **state)
{
    struct config_tls cfg = base_cfg();
    set_cert(0, "must");
    g_certs[0].ocsp = strdup(pk("ocsp_a.der"));
    char err[512];
    assert_null(build(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "must-staple"));
    free(g_certs[0].ocsp);
    g_certs[0].ocsp = NULL;
    assert_null(build(&cfg, err, sizeof err)); /* no staple configured at all */
    assert_non_null(strstr(err, "must-staple certificate: set its ocsp file or ocsp_fetch"));
}

/* True once the file exists and contains needle (the responder's start banner). */
static bool file_has(const char *path, const char *needle)
{
    char buf[4096] = "";
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strstr(buf, needle) != NULL;
}

static X509 *read_chain_file(const char *path, STACK_OF(X509) * *chain)
{
    BIO *in = BIO_new_file(path, "r");
    assert_non_null(in);
    X509 *leaf = PEM_read_bio_X509(in, NULL, NULL, NULL);
    *chain = sk_X509_new_null();
    X509 *x;
    while ((x = PEM_read_bio_X509(in, NULL, NULL, NULL)) != NULL)
        sk_X509_push(*chain, x);
    BIO_free(in);
    ERR_clear_error();
    return leaf;
}

static void test_ocsp_module_swap(void **state)
{
    /* the module on its own: verification, swap, inheritance */
    char err[512];
    STACK_OF(X509) * chain;
    X509 *leaf = read_chain_file(pk("rsa_a.crt"), &chain);
    struct tls_ocsp *o = tls_ocsp_new(leaf, chain, err, sizeof err);
    struct tls_ocsp *o2 = tls_ocsp_new(leaf, chain, err, sizeof err);
    assert_non_null(o);
    assert_false(tls_ocsp_has_staple(o, time(NULL)));
    assert_true(tls_ocsp_refresh_at(o, 3600) <= time(NULL));
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", g_ocsp_port);
    assert_string_equal(tls_ocsp_responder(o), url);
    assert_int_equal(tls_ocsp_load_file(o, pk("ocsp_b.der"), err, sizeof err), -1);
    assert_int_equal(tls_ocsp_load_file(o, pk("ocsp_a.der"), err, sizeof err), 0);
    assert_true(tls_ocsp_has_staple(o, time(NULL)));
    assert_false(tls_ocsp_has_staple(o, time(NULL) + 2 * 86400)); /* past nextUpdate */
    time_t at = tls_ocsp_refresh_at(o, 7 * 86400);
    /* halfway between thisUpdate (made during setup) and a one-day nextUpdate */
    assert_true(at >= g_pki_time + 43200 - 5 && at <= time(NULL) + 43200);
    at = tls_ocsp_refresh_at(o, 600);
    assert_true(at > time(NULL) + 500 && at <= time(NULL) + 600); /* ocsp_refresh sooner */
    /* a bad response later does not remove the good one */
    assert_int_equal(tls_ocsp_load_file(o, pk("ocsp_a_revoked.der"), err, sizeof err), -1);
    assert_true(tls_ocsp_has_staple(o, time(NULL)));
    tls_ocsp_inherit(o2, o);
    assert_true(tls_ocsp_has_staple(o2, time(NULL)));
    /* the leaf's issuer is required */
    STACK_OF(X509) *empty = sk_X509_new_null();
    assert_null(tls_ocsp_new(leaf, empty, err, sizeof err));
    assert_non_null(strstr(err, "issuer"));
    sk_X509_free(empty);
    tls_ocsp_free(o);
    tls_ocsp_free(o2);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
}

static void test_ocsp_fetch(void **state)
{
    char url[64], err[512];
    /* openssl ocsp as the responder named in rsa_a's AIA */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char port[16];
        snprintf(port, sizeof port, "%d", g_ocsp_port);
        if (chdir(g_dir) != 0)
            _exit(1);
        /* a probe connection would stall this single-threaded responder: watch its log */
        int log = open("ocsp.log", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (log < 0)
            _exit(1);
        dup2(log, 1);
        dup2(log, 2);
        execlp("openssl", "openssl", "ocsp", "-index", "index.txt", "-port", port, "-rsigner",
               "int.crt", "-rkey", "int.key", "-CA", "int.crt", "-ndays", "1", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100 && !file_has(pk("ocsp.log"), "waiting for OCSP client"); i++)
        usleep(50 * 1000);
    struct config_tls cfg = base_cfg();
    struct tls_policy *p = build_ok(&cfg);
    time_t next = 0;
    assert_int_equal(tls_policy_ocsp_refresh(p, 5, &next, NULL, NULL), 0); /* fetch off */
    assert_int_equal(staple_for(p, "a.test", "rsa_pss_rsae_sha256"), 0);
    tls_policy_unref(p);
    cfg.ocsp_fetch = true;
    p = build_ok(&cfg);
    /* the certificates without AIA are named in warnings */
    assert_non_null(strstr(g_warnings, "rsa_b.crt: ocsp_fetch is on"));
    assert_int_equal(staple_for(p, "a.test", "rsa_pss_rsae_sha256"), 0);
    int failed = tls_policy_ocsp_refresh(p, 5, &next, collect_warning, NULL);
    if (failed != 0)
        fail_msg("fetch failed: %s", g_warnings);
    assert_true(next >= time(NULL) + 3500); /* not due before the hourly re-check */
    assert_true(staple_for(p, "a.test", "rsa_pss_rsae_sha256") > 0);
    assert_int_equal(tls_policy_ocsp_refresh(p, 5, &next, NULL, NULL), 0); /* nothing due */

    /* a reload keeps the fetched staple */
    struct tls_policy *p2 = build_ok(&cfg);
    tls_policy_ocsp_inherit(p2, p);
    assert_true(staple_for(p2, "a.test", "rsa_pss_rsae_sha256") > 0);

    /* the responder is gone: a failure keeps the last good response */
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    STACK_OF(X509) * chain;
    X509 *leaf = read_chain_file(pk("rsa_a.crt"), &chain);
    struct tls_ocsp *o = tls_ocsp_new(leaf, chain, err, sizeof err);
    assert_int_equal(tls_ocsp_load_file(o, pk("ocsp_a.der"), err, sizeof err), 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", g_ocsp_port);
    assert_int_equal(tls_ocsp_fetch(o, url, 1, err, sizeof err), -1);
    assert_true(tls_ocsp_has_staple(o, time(NULL)));
    assert_true(tls_ocsp_refresh_at(o, 86400) > time(NULL) + 250); /* retry in 5 min */
    assert_int_equal(tls_ocsp_fetch(o, "https://127.0.0.1/", 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "http:// only"));
    tls_ocsp_free(o);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    tls_policy_unref(p);
    tls_policy_unref(p2);
}

/* ---- lifetime and memory ------------------------------------------------------------ */

static void test_connection_outlives_policy(void **state)
{
    struct config_tls cfg = base_cfg();
    struct tls_policy *p = build_ok(&cfg);
    struct client_opts o = {.sni = "x.wild.test", .verify_host = "x.wild.test"};
    struct conn k;
    conn_open(&k, p, &o);
    tls_policy_unref(p); /* a reload dropped it; the SSL keeps it alive */
    assert_int_equal(conn_handshake(&k), 0);
    assert_true(peer_is(k.c, "a.test", EVP_PKEY_RSA) || peer_is(k.c, "a.test", EVP_PKEY_EC));
    conn_close(&k); /* frees the policy (valgrind checks) */
}

static void test_memory_per_idle_connection(void **state)
{
    struct config_tls cfg = base_cfg();
    struct tls_policy *p = build_ok(&cfg);
    struct {
        int maxv;
        const char *sigalgs;
        const char *what;
    } cases[] = {
        {TLS1_3_VERSION, "rsa_pss_rsae_sha256", "TLS 1.3 RSA"},
        {TLS1_3_VERSION, "ECDSA+SHA256", "TLS 1.3 ECDSA"},
        {TLS1_2_VERSION, NULL, "TLS 1.2 RSA"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct client_opts o = {
            .max_version = cases[i].maxv, .sigalgs = cases[i].sigalgs, .sni = "a.test"};
        struct conn k;
        /* warm up: lazily built shared state (RSA blinding, provider caches) is
         * per key or per thread, not per connection */
        assert_int_equal(connect_with(&k, p, &o), 0);
        conn_close(&k);
        g_live = 0;
        assert_int_equal(connect_with(&k, p, &o), 0);
        size_t idle = g_live;
        print_message("    server memory per idle connection, %s: %zu bytes\n", cases[i].what,
                      idle);
        assert_true(idle < 15 * 1024);
        conn_close(&k);
        if (g_live != 0)
            fail_msg("server side leaked %zu bytes", g_live);
    }
    tls_policy_unref(p);
}

int main(void)
{
    /* before OpenSSL allocates anything */
    CRYPTO_set_mem_functions(t_malloc, t_realloc, t_free);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_default_no_warning),
        cmocka_unit_test(test_tls12_browser_gets_ecdhe_rsa_aes128_gcm),
        cmocka_unit_test(test_tls13_default),
        cmocka_unit_test(test_old_protocols_refused),
        cmocka_unit_test(test_weak_client_suites_refused),
        cmocka_unit_test(test_client_renegotiation_refused),
        cmocka_unit_test(test_sni_selects_certificate),
        cmocka_unit_test(test_ecdsa_and_rsa_by_client_capability),
        cmocka_unit_test(test_weak_rsa_1024_refused),
        cmocka_unit_test(test_sha1_leaf_refused),
        cmocka_unit_test(test_old_min_version_refused),
        cmocka_unit_test(test_weak_config_suites_refused),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_ticket_resumption),
        cmocka_unit_test(test_ticket_survives_rotation_then_retires),
        cmocka_unit_test(test_tickets_survive_reload),
        cmocka_unit_test(test_no_resumption_across_certificates),
        cmocka_unit_test(test_tickets_disabled),
        cmocka_unit_test(test_session_cache_without_tickets),
        cmocka_unit_test(test_ticket_key_file_shared),
        cmocka_unit_test(test_mtls_required),
        cmocka_unit_test(test_mtls_optional),
        cmocka_unit_test(test_ocsp_stapled),
        cmocka_unit_test(test_ocsp_bad_responses_not_stapled),
        cmocka_unit_test(test_ocsp_must_staple),
        cmocka_unit_test(test_ocsp_module_swap),
        cmocka_unit_test(test_ocsp_fetch),
        cmocka_unit_test(test_connection_outlives_policy),
        cmocka_unit_test(test_memory_per_idle_connection),
    };
    int rc = cmocka_run_group_tests(tests, setup_pki, teardown_pki);
    free_certs();
    return rc;
}
