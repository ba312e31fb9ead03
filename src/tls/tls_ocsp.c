/*
 * tls_ocsp: verified OCSP staples, swappable from a background thread.
 *
 * The installed response is a private DER copy guarded by a rwlock rather than a
 * lock-free pointer: a reader that loaded a bare pointer could not safely take a
 * reference before a concurrent swap freed it without hazard pointers or RCU, and
 * the lock is only taken on full handshakes where a client asked for a staple, to
 * copy ~1-2 KiB that OpenSSL then owns.
 */
#include "tls/tls_ocsp.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/http.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#define OCSP_RETRY_SECONDS 300
#define OCSP_LEEWAY_SECONDS 300
#define OCSP_MAX_RESPONSE (64 * 1024)
#define OCSP_TLSFEATURE_STATUS_REQUEST 5

struct tls_ocsp {
    X509 *leaf;
    X509 *issuer;
    char *url;             /* AIA responder, or NULL */
    pthread_rwlock_t lock; /* guards the fields below */
    unsigned char *der;    /* verified response, or NULL */
    size_t len;
    time_t this_update;
    time_t next_update;
    time_t installed_at;
    time_t retry_at; /* after a failed fetch */
};

/* Appends the last OpenSSL error reason (if any) to a message and clears the queue. */
static void set_err(char *err, size_t errlen, const char *fmt, const char *arg)
{
    char msg[256], ossl[160] = "";
    snprintf(msg, sizeof msg, fmt, arg != NULL ? arg : "");
    unsigned long e = ERR_peek_last_error();
    if (e != 0)
        snprintf(ossl, sizeof ossl, " (%s)", ERR_reason_error_string(e));
    ERR_clear_error();
    snprintf(err, errlen, "%s%s", msg, ossl);
}

bool tls_ocsp_must_staple(X509 *leaf)
{
    STACK_OF(ASN1_INTEGER) *feat = X509_get_ext_d2i(leaf, NID_tlsfeature, NULL, NULL);
    bool found = false;
    for (int i = 0; feat != NULL && i < sk_ASN1_INTEGER_num(feat); i++)
        if (ASN1_INTEGER_get(sk_ASN1_INTEGER_value(feat, i)) == OCSP_TLSFEATURE_STATUS_REQUEST)
            found = true;
    sk_ASN1_INTEGER_pop_free(feat, ASN1_INTEGER_free);
    ERR_clear_error();
    return found;
}

struct tls_ocsp *tls_ocsp_new(X509 *leaf, STACK_OF(X509) * chain, char *err, size_t errlen)
{
    X509 *issuer = NULL;
    for (int i = 0; i < sk_X509_num(chain); i++) {
        if (X509_check_issued(sk_X509_value(chain, i), leaf) == X509_V_OK) {
            issuer = sk_X509_value(chain, i);
            break;
        }
    }
    if (issuer == NULL) {
        snprintf(err, errlen,
                 "OCSP: the issuer of the certificate is not in the chain file "
                 "(append the intermediate certificate)");
        return NULL;
    }
    struct tls_ocsp *o = calloc(1, sizeof *o);
    if (o == NULL) {
        snprintf(err, errlen, "OCSP: out of memory");
        return NULL;
    }
    X509_up_ref(leaf);
    X509_up_ref(issuer);
    o->leaf = leaf;
    o->issuer = issuer;
    pthread_rwlock_init(&o->lock, NULL);
    STACK_OF(OPENSSL_STRING) *urls = X509_get1_ocsp(leaf);
    if (urls != NULL && sk_OPENSSL_STRING_num(urls) > 0)
        o->url = strdup(sk_OPENSSL_STRING_value(urls, 0));
    X509_email_free(urls);
    return o;
}

void tls_ocsp_free(struct tls_ocsp *o)
{
    if (o == NULL)
        return;
    X509_free(o->leaf);
    X509_free(o->issuer);
    free(o->url);
    OPENSSL_free(o->der);
    pthread_rwlock_destroy(&o->lock);
    free(o);
}

static time_t asn1_to_time(const ASN1_GENERALIZEDTIME *t)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return timegm(&tm);
}

/* Returns the SingleResponse about our leaf, whatever hash its CertID uses. */
static OCSP_SINGLERESP *find_single(struct tls_ocsp *o, OCSP_BASICRESP *bs)
{
    for (int i = 0; i < OCSP_resp_count(bs); i++) {
        OCSP_SINGLERESP *sr = OCSP_resp_get0(bs, i);
        OCSP_CERTID *cid = (OCSP_CERTID *)OCSP_SINGLERESP_get0_id(sr);
        ASN1_OBJECT *md_oid = NULL;
        if (OCSP_id_get0_info(NULL, &md_oid, NULL, NULL, cid) != 1)
            continue;
        const EVP_MD *md = EVP_get_digestbyobj(md_oid);
        OCSP_CERTID *mine = md != NULL ? OCSP_cert_to_id(md, o->leaf, o->issuer) : NULL;
        int cmp = mine != NULL ? OCSP_id_cmp(mine, cid) : -1;
        OCSP_CERTID_free(mine);
        if (cmp == 0)
            return sr;
    }
    return NULL;
}

/* The whole verification described in tls_ocsp.h; fills the validity window. */
static int verify_basic(struct tls_ocsp *o, OCSP_BASICRESP *bs, time_t *thisu, time_t *nextu,
                        char *err, size_t errlen)
{
    int rc = -1;
    STACK_OF(X509) *signers = sk_X509_new_null();
    X509_STORE *store = X509_STORE_new();
    if (signers == NULL || store == NULL || sk_X509_push(signers, o->issuer) <= 0 ||
        X509_STORE_add_cert(store, o->issuer) != 1) {
        set_err(err, errlen, "OCSP: out of memory%s", NULL);
        goto out;
    }
    /* The issuer (often an intermediate) is the trust anchor for a delegated responder. */
    X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
    if (OCSP_basic_verify(bs, signers, store, OCSP_TRUSTOTHER | OCSP_NOEXPLICIT) <= 0) {
        set_err(err, errlen, "OCSP: response not signed by the certificate's issuer%s", NULL);
        goto out;
    }
    OCSP_SINGLERESP *sr = find_single(o, bs);
    if (sr == NULL) {
        set_err(err, errlen, "OCSP: response is for another certificate%s", NULL);
        goto out;
    }
    int reason;
    ASN1_GENERALIZEDTIME *rev, *tu, *nu;
    int status = OCSP_single_get0_status(sr, &reason, &rev, &tu, &nu);
    if (status != V_OCSP_CERTSTATUS_GOOD) {
        set_err(err, errlen, "OCSP: certificate status is %s", OCSP_cert_status_str(status));
        goto out;
    }
    if (nu == NULL) {
        set_err(err, errlen, "OCSP: response has no nextUpdate%s", NULL);
        goto out;
    }
    if (OCSP_check_validity(tu, nu, OCSP_LEEWAY_SECONDS, -1) != 1) {
        set_err(err, errlen, "OCSP: response expired or not yet valid%s", NULL);
        goto out;
    }
    *thisu = asn1_to_time(tu);
    *nextu = asn1_to_time(nu);
    rc = 0;
out:
    sk_X509_free(signers);
    X509_STORE_free(store);
    return rc;
}

int tls_ocsp_set_response(struct tls_ocsp *o, const unsigned char *der, size_t len, char *err,
                          size_t errlen)
{
    const unsigned char *p = der;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    OCSP_BASICRESP *bs = NULL;
    unsigned char *copy = NULL;
    time_t thisu = 0, nextu = 0;
    int rc = -1;
    if (resp == NULL || p != der + len) {
        set_err(err, errlen, "OCSP: not a DER OCSP response%s", NULL);
        goto out;
    }
    int st = OCSP_response_status(resp);
    if (st != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        set_err(err, errlen, "OCSP: responder answered %s", OCSP_response_status_str(st));
        goto out;
    }
    bs = OCSP_response_get1_basic(resp);
    if (bs == NULL) {
        set_err(err, errlen, "OCSP: not a basic OCSP response%s", NULL);
        goto out;
    }
    if (verify_basic(o, bs, &thisu, &nextu, err, errlen) < 0)
        goto out;
    copy = OPENSSL_memdup(der, len);
    if (copy == NULL) {
        set_err(err, errlen, "OCSP: out of memory%s", NULL);
        goto out;
    }
    pthread_rwlock_wrlock(&o->lock);
    unsigned char *old = o->der;
    o->der = copy;
    o->len = len;
    o->this_update = thisu;
    o->next_update = nextu;
    o->installed_at = time(NULL);
    o->retry_at = 0;
    pthread_rwlock_unlock(&o->lock);
    OPENSSL_free(old);
    rc = 0;
out:
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(resp);
    return rc;
}

int tls_ocsp_load_file(struct tls_ocsp *o, const char *path, char *err, size_t errlen)
{
    char msg[300];
    BIO *in = BIO_new_file(path, "rb");
    if (in == NULL) {
        ERR_clear_error();
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    unsigned char *der = NULL;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE_bio(in, NULL);
    BIO_free(in);
    int len = resp != NULL ? i2d_OCSP_RESPONSE(resp, &der) : -1;
    OCSP_RESPONSE_free(resp);
    int rc = -1;
    if (len <= 0)
        set_err(msg, sizeof msg, "OCSP: not a DER OCSP response%s", NULL);
    else
        rc = tls_ocsp_set_response(o, der, (size_t)len, msg, sizeof msg);
    OPENSSL_free(der);
    if (rc < 0)
        snprintf(err, errlen, "%s: %s", path, msg);
    return rc;
}

bool tls_ocsp_has_staple(struct tls_ocsp *o, time_t now)
{
    pthread_rwlock_rdlock(&o->lock);
    bool ok = o->der != NULL && now < o->next_update;
    pthread_rwlock_unlock(&o->lock);
    return ok;
}

int tls_ocsp_staple(struct tls_ocsp *o, SSL *s)
{
    time_t now = time(NULL);
    unsigned char *copy = NULL;
    size_t len = 0;
    pthread_rwlock_rdlock(&o->lock);
    if (o->der != NULL && now < o->next_update) {
        copy = OPENSSL_memdup(o->der, o->len);
        len = o->len;
    }
    pthread_rwlock_unlock(&o->lock);
    if (copy == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    if (SSL_set_tlsext_status_ocsp_resp(s, copy, (long)len) != 1) {
        OPENSSL_free(copy);
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;
}

const char *tls_ocsp_responder(const struct tls_ocsp *o)
{
    return o->url;
}

time_t tls_ocsp_refresh_at(struct tls_ocsp *o, time_t max_age)
{
    pthread_rwlock_rdlock(&o->lock);
    time_t t = 0;
    if (o->der != NULL) {
        t = o->this_update + (o->next_update - o->this_update) / 2;
        if (o->installed_at + max_age < t)
            t = o->installed_at + max_age;
    }
    if (o->retry_at > t)
        t = o->retry_at;
    pthread_rwlock_unlock(&o->lock);
    return t;
}

/* Sends one OCSP request over HTTP and returns the DER answer (OPENSSL_free), or NULL. */
static unsigned char *http_exchange(struct tls_ocsp *o, const char *url, int timeout_s, int *len,
                                    char *err, size_t errlen)
{
    char *host = NULL, *port = NULL, *path = NULL;
    unsigned char *reqder = NULL, *der = NULL;
    OCSP_REQUEST *req = NULL;
    OCSP_RESPONSE *resp = NULL;
    BIO *reqbio = NULL, *rsp = NULL;
    int use_ssl = 0;
    if (OSSL_HTTP_parse_url(url, &use_ssl, NULL, &host, &port, NULL, &path, NULL, NULL) != 1 ||
        use_ssl) {
        set_err(err, errlen, "OCSP: unsupported responder URL %s (http:// only)", url);
        goto out;
    }
    req = OCSP_REQUEST_new();
    OCSP_CERTID *id = OCSP_cert_to_id(NULL, o->leaf, o->issuer);
    if (req == NULL || id == NULL || OCSP_request_add0_id(req, id) == NULL) {
        OCSP_CERTID_free(id);
        set_err(err, errlen, "OCSP: cannot build request%s", NULL);
        goto out;
    }
    int reqlen = i2d_OCSP_REQUEST(req, &reqder);
    reqbio = reqlen > 0 ? BIO_new_mem_buf(reqder, reqlen) : NULL;
    if (reqbio != NULL)
        rsp = OSSL_HTTP_transfer(NULL, host, port, path, 0, NULL, NULL, NULL, NULL, NULL, NULL, 0,
                                 NULL, "application/ocsp-request", reqbio,
                                 "application/ocsp-response", 1, OCSP_MAX_RESPONSE, timeout_s, 0);
    resp = rsp != NULL ? d2i_OCSP_RESPONSE_bio(rsp, NULL) : NULL;
    *len = resp != NULL ? i2d_OCSP_RESPONSE(resp, &der) : -1;
    if (*len <= 0) {
        set_err(err, errlen, "OCSP: no answer from %s", url);
        OPENSSL_free(der);
        der = NULL;
    }
out:
    OPENSSL_free(host);
    OPENSSL_free(port);
    OPENSSL_free(path);
    OPENSSL_free(reqder);
    OCSP_REQUEST_free(req);
    OCSP_RESPONSE_free(resp);
    BIO_free(reqbio);
    BIO_free(rsp);
    return der;
}

int tls_ocsp_fetch(struct tls_ocsp *o, const char *url, int timeout_s, char *err, size_t errlen)
{
    int len = 0, rc = -1;
    unsigned char *der = NULL;
    if (url == NULL)
        url = o->url;
    if (url == NULL)
        snprintf(err, errlen, "OCSP: the certificate names no OCSP responder");
    else if ((der = http_exchange(o, url, timeout_s, &len, err, errlen)) != NULL)
        rc = tls_ocsp_set_response(o, der, (size_t)len, err, errlen);
    OPENSSL_free(der);
    if (rc < 0) {
        pthread_rwlock_wrlock(&o->lock);
        o->retry_at = time(NULL) + OCSP_RETRY_SECONDS;
        pthread_rwlock_unlock(&o->lock);
    }
    return rc;
}

void tls_ocsp_inherit(struct tls_ocsp *to, struct tls_ocsp *from)
{
    if (to == from || X509_cmp(to->leaf, from->leaf) != 0 ||
        X509_cmp(to->issuer, from->issuer) != 0)
        return;
    unsigned char *copy = NULL;
    size_t len = 0;
    time_t tu = 0, nu = 0;
    pthread_rwlock_rdlock(&from->lock);
    if (from->der != NULL && (copy = OPENSSL_memdup(from->der, from->len)) != NULL) {
        len = from->len;
        tu = from->this_update;
        nu = from->next_update;
    }
    pthread_rwlock_unlock(&from->lock);
    if (copy == NULL)
        return;
    pthread_rwlock_wrlock(&to->lock);
    if (to->der == NULL || tu > to->this_update) {
        unsigned char *old = to->der;
        to->der = copy;
        to->len = len;
        to->this_update = tu;
        to->next_update = nu;
        to->installed_at = time(NULL);
        copy = old;
    }
    pthread_rwlock_unlock(&to->lock);
    OPENSSL_free(copy);
}
