/*
 * ticket_renewal: shows how the return value of an OpenSSL 3 session-ticket key
 * callback (SSL_CTX_set_tlsext_ticket_key_evp_cb) on decryption decides whether a
 * TLS 1.3 server issues a new ticket on a resumed connection.
 *
 *   cc -O1 -o ticket_renewal scripts/bench/ticket_renewal.c -lssl -lcrypto
 *   ./ticket_renewal certs/dev/server.crt certs/dev/server.key
 *
 * Server and client talk over an in-memory BIO pair; the client always offers the
 * newest resumable session it holds (as scripts/bench/tlsload.c does). Prints,
 * for a callback returning 1 and then 2 when it decrypts a ticket, whether each
 * of four connections resumed and whether it brought a new ticket. With 1 the
 * resumed connection gets no new ticket and the spent one does not resume again,
 * so every other connection is a full handshake (what the benchmark's "resumed"
 * test sees with moat); with 2 every connection after the first resumes.
 */
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

static int dec_ret = 1;
static unsigned char key_name[16] = "0123456789abcdef", key_aes[32], key_hmac[32];

static int ticket_cb(SSL *s, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *c,
                     EVP_MAC_CTX *h, int enc)
{
    (void)s;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key_hmac, sizeof key_hmac),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (enc) {
        memcpy(name, key_name, 16);
        if (RAND_bytes(iv, 16) != 1 || !EVP_EncryptInit_ex(c, EVP_aes_256_cbc(), NULL, key_aes, iv) ||
            !EVP_MAC_CTX_set_params(h, params))
            return -1;
        return 1;
    }
    if (memcmp(name, key_name, 16) != 0)
        return 0;
    if (!EVP_DecryptInit_ex(c, EVP_aes_256_cbc(), NULL, key_aes, iv) ||
        !EVP_MAC_CTX_set_params(h, params))
        return -1;
    return dec_ret;
}

/* One connection; returns the client's session afterwards (caller frees). */
static SSL_SESSION *connect_once(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *offer, int *reused)
{
    SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
    BIO *bs, *bc;
    BIO_new_bio_pair(&bs, 0, &bc, 0);
    SSL_set_bio(s, bs, bs);
    SSL_set_bio(c, bc, bc);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    if (offer)
        SSL_set_session(c, offer);
    char buf[1];
    for (int i = 0; i < 50; i++) {
        SSL_do_handshake(c);
        SSL_do_handshake(s);
        if (SSL_is_init_finished(s))
            SSL_read(s, buf, 1); /* lets the server send its tickets */
        if (SSL_is_init_finished(c))
            SSL_read(c, buf, 1); /* lets the client take them */
    }
    *reused = SSL_session_reused(c);
    SSL_SESSION *sess = SSL_get1_session(c);
    SSL_set_shutdown(c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_set_shutdown(s, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(c);
    SSL_free(s);
    return sess;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: ticket_renewal CERT.pem KEY.pem\n");
        return 2;
    }
    RAND_bytes(key_aes, sizeof key_aes);
    RAND_bytes(key_hmac, sizeof key_hmac);
    for (dec_ret = 1; dec_ret <= 2; dec_ret++) {
        SSL_CTX *sctx = SSL_CTX_new(TLS_server_method()), *cctx = SSL_CTX_new(TLS_client_method());
        if (SSL_CTX_use_certificate_chain_file(sctx, argv[1]) != 1 ||
            SSL_CTX_use_PrivateKey_file(sctx, argv[2], SSL_FILETYPE_PEM) != 1) {
            ERR_print_errors_fp(stderr);
            return 1;
        }
        SSL_CTX_set_session_cache_mode(sctx, SSL_SESS_CACHE_SERVER);
        SSL_CTX_set_num_tickets(sctx, 1);
        SSL_CTX_set_tlsext_ticket_key_evp_cb(sctx, ticket_cb);
        SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_SESSION *held = NULL;
        printf("callback returns %d on decrypt:", dec_ret);
        for (int k = 0; k < 4; k++) {
            int reused;
            SSL_SESSION *got = connect_once(sctx, cctx, held, &reused);
            int fresh = got && SSL_SESSION_is_resumable(got) && got != held;
            printf("  conn%d resumed=%d new_ticket=%d", k + 1, reused, fresh);
            if (fresh) {
                SSL_SESSION_free(held);
                held = got;
            } else {
                SSL_SESSION_free(got);
            }
        }
        printf("\n");
        SSL_SESSION_free(held);
        SSL_CTX_free(sctx);
        SSL_CTX_free(cctx);
    }
    return 0;
}
