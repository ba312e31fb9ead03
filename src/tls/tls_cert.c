/*
 * tls_cert: one server certificate as tls_policy_build() loads it: the leaf,
 * its chain and key, the names it serves, and the checks that refuse weak ones.
 */
#include "tls/tls_build.h"

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

/* ---- certificates ---------------------------------------------------------- */

static int open_failed(struct build *b, const char *path)
{
    int e = errno;
    ERR_clear_error();
    return tls_build_fail(b, "%s: cannot open: %s", path, strerror(e));
}

static int no_password(char *buf, int size, int rwflag, void *u)
{
    return 0; /* an encrypted key must fail, never prompt on the terminal */
}

/* Adds one DNS name (lower case, no trailing dot); ignores what SNI can never match. */
static int add_name(struct tls_cert *c, const unsigned char *s, size_t len)
{
    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0 || len > 253 || memchr(s, '\0', len) != NULL)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '*' && !(i == 0 && len > 2 && s[1] == '.'))
            return 0; /* only a whole leftmost label may be a wildcard */
    char **names = realloc(c->names, (c->num_names + 1) * sizeof *names);
    if (names == NULL)
        return -1;
    c->names = names;
    char *n = malloc(len + 1);
    if (n == NULL)
        return -1;
    for (size_t i = 0; i < len; i++)
        n[i] = (char)tolower(s[i]);
    n[len] = '\0';
    c->names[c->num_names++] = n;
    return 0;
}

/* SNI names of a certificate: SAN dNSNames; the subject CN only when there is no SAN. */
static int cert_names(struct tls_cert *c)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(c->leaf, NID_subject_alt_name, NULL, NULL);
    int rc = 0, dns = 0;
    for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans) && rc == 0; i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type != GEN_DNS)
            continue;
        dns++;
        rc = add_name(c, ASN1_STRING_get0_data(gn->d.dNSName),
                      (size_t)ASN1_STRING_length(gn->d.dNSName));
    }
    GENERAL_NAMES_free(sans);
    if (rc == 0 && dns == 0) {
        X509_NAME *subj = X509_get_subject_name(c->leaf);
        int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
        unsigned char *cn = NULL;
        int len =
            idx >= 0
                ? ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)))
                : -1;
        if (len > 0)
            rc = add_name(c, cn, (size_t)len);
        OPENSSL_free(cn);
    }
    ERR_clear_error();
    return rc;
}

static int read_chain(struct build *b, struct tls_cert *c)
{
    BIO *in = BIO_new_file(c->path, "r");
    if (in == NULL)
        return open_failed(b, c->path);
    c->leaf = PEM_read_bio_X509(in, NULL, no_password, NULL);
    c->chain = sk_X509_new_null();
    X509 *x;
    while (c->leaf != NULL && c->chain != NULL &&
           (x = PEM_read_bio_X509(in, NULL, no_password, NULL)) != NULL) {
        if (sk_X509_push(c->chain, x) <= 0) {
            X509_free(x);
            break;
        }
    }
    BIO_free(in);
    unsigned long e = ERR_peek_last_error();
    if (c->leaf == NULL || c->chain == NULL)
        return tls_build_fail(b, "%s: no PEM certificate", c->path);
    if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
        ERR_clear_error(); /* the normal end of the file */
    else if (e != 0)
        return tls_build_fail(b, "%s: bad certificate in chain", c->path);
    return 0;
}

static int read_key(struct build *b, struct tls_cert *c, const char *path)
{
    BIO *in = BIO_new_file(path, "r");
    if (in == NULL)
        return open_failed(b, path);
    c->key = PEM_read_bio_PrivateKey(in, NULL, no_password, NULL);
    BIO_free(in);
    if (c->key == NULL) {
        ERR_clear_error(); /* "unsupported" or "bad decrypt" say less than this */
        return tls_build_fail(b, "%s: no PEM private key (encrypted keys are not supported)", path);
    }
    if (X509_check_private_key(c->leaf, c->key) != 1)
        return tls_build_fail(b, "%s: private key %s does not match the certificate", c->path,
                              path);
    c->key_type = EVP_PKEY_get_base_id(c->key);
    return 0;
}

/* The digest name if x is signed with a broken one (SHA-1, MD5...), else NULL. */
static const char *weak_signature(X509 *x)
{
    int md = NID_undef, pk = NID_undef;
    if (OBJ_find_sigid_algs(X509_get_signature_nid(x), &md, &pk) != 1)
        return NULL; /* RSA-PSS, Ed25519: no separate digest, not weak */
    if (md == NID_sha1 || md == NID_md5 || md == NID_md4 || md == NID_md2 || md == NID_mdc2)
        return OBJ_nid2sn(md);
    return NULL;
}

/* The SSL Labs "A" checks on one certificate (key, signatures, validity). */
static int check_cert(struct build *b, struct tls_cert *c)
{
    int bits = EVP_PKEY_get_bits(c->key);
    if ((c->key_type == EVP_PKEY_RSA || c->key_type == EVP_PKEY_RSA_PSS) && bits < 2048 &&
        tls_build_weak(b, "%s: RSA key of %d bits (2048 minimum)", c->path, bits) < 0)
        return -1;
    if (c->key_type == EVP_PKEY_EC && bits < 256 &&
        tls_build_weak(b, "%s: EC key of %d bits (256 minimum)", c->path, bits) < 0)
        return -1;
    if (c->key_type == EVP_PKEY_DSA && tls_build_weak(b, "%s: DSA key", c->path) < 0)
        return -1;
    const char *md = weak_signature(c->leaf);
    if (md != NULL && tls_build_weak(b, "%s: certificate signed with %s", c->path, md) < 0)
        return -1;
    for (int i = 0; i < sk_X509_num(c->chain); i++) {
        X509 *x = sk_X509_value(c->chain, i);
        /* a self-signed root's own signature is never checked by clients */
        md = X509_get_extension_flags(x) & EXFLAG_SS ? NULL : weak_signature(x);
        if (md != NULL &&
            tls_build_weak(b, "%s: chain certificate %d signed with %s", c->path, i + 1, md) < 0)
            return -1;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(c->leaf)) <= 0 &&
        tls_build_weak(b, "%s: certificate has expired", c->path) < 0)
        return -1;
    if (X509_cmp_current_time(X509_get0_notBefore(c->leaf)) >= 0 &&
        tls_build_weak(b, "%s: certificate is not valid yet", c->path) < 0)
        return -1;
    return 0;
}

int tls_cert_load(struct build *b, const struct config_tls_cert *cc, struct tls_cert *c)
{
    if (cc->cert == NULL || cc->key == NULL)
        return tls_build_fail(b, "%s: certificate and key are both required",
                              cc->cert != NULL ? cc->cert : "tls.certificates");
    c->path = strdup(cc->cert);
    if (c->path == NULL)
        return tls_build_fail(b, "%s: out of memory", cc->cert);
    if (read_chain(b, c) < 0 || read_key(b, c, cc->key) < 0 || check_cert(b, c) < 0)
        return -1;
    if (cert_names(c) < 0)
        return tls_build_fail(b, "%s: out of memory", c->path);
    return 0;
}
