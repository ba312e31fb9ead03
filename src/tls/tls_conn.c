/*
 * tls_conn: what moat reads of a TLS connection for its logs and decisions
 * (version, cipher, SNI, resumption, mTLS subject), and version names.
 */
#include "tls/tls.h"

#include <stdio.h>
#include <string.h>

#include <openssl/x509.h>

const char *tls_version_name(int v)
{
    switch (v) {
    case SSL3_VERSION:
        return "SSLv3";
    case TLS1_VERSION:
        return "TLSv1";
    case TLS1_1_VERSION:
        return "TLSv1.1";
    case TLS1_2_VERSION:
        return "TLSv1.2";
    case TLS1_3_VERSION:
        return "TLSv1.3";
    default:
        return "unknown";
    }
}

const char *tls_conn_version(const SSL *s)
{
    return s != NULL ? SSL_get_version(s) : "-";
}

const char *tls_conn_cipher(const SSL *s)
{
    const SSL_CIPHER *c = s != NULL ? SSL_get_current_cipher(s) : NULL;
    return c != NULL ? SSL_CIPHER_get_name(c) : "-";
}

const char *tls_conn_servername(const SSL *s)
{
    const char *n = s != NULL ? SSL_get_servername(s, TLSEXT_NAMETYPE_host_name) : NULL;
    return n != NULL ? n : "-";
}

bool tls_conn_resumed(const SSL *s)
{
    return s != NULL && SSL_session_reused(s) == 1;
}

int tls_conn_peer_subject(const SSL *s, char *buf, size_t len)
{
    X509 *peer = s != NULL ? SSL_get0_peer_certificate(s) : NULL;
    if (peer == NULL || SSL_get_verify_result(s) != X509_V_OK || len == 0)
        return -1;
    BIO *mem = BIO_new(BIO_s_mem());
    int rc = -1;
    if (mem != NULL &&
        X509_NAME_print_ex(mem, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0) {
        char *data;
        long n = BIO_get_mem_data(mem, &data);
        if (n >= 0 && (size_t)n < len) {
            memcpy(buf, data, (size_t)n);
            buf[n] = '\0';
            rc = (int)n;
        }
    }
    BIO_free(mem);
    return rc;
}

bool tls_conn_is_h2(const SSL *s)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(s, &p, &n);
    return n == 2 && p[0] == 'h' && p[1] == '2';
}
