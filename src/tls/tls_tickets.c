/*
 * tls_tickets: session ticket keys shared by all workers and policy generations.
 * See tls_tickets.h for the modes and the key-file format.
 */
#include "tls/tls_tickets.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

struct ticket_key {
    unsigned char name[16];
    unsigned char hmac[32];
    unsigned char aes[32];
};

struct tls_ticket_store {
    atomic_int refs;
    pthread_rwlock_t lock; /* readers: handshakes; writer: rotate() */
    struct ticket_key keys[TLS_TICKETS_MAX_KEYS];
    size_t nkeys;
    size_t enc;             /* index of the key that seals new tickets */
    unsigned keep_previous; /* memory mode */
    char *key_file;         /* NULL: memory mode */
    EVP_CIPHER *aes;        /* fetched once, not per handshake */
};

static int ex_index = -1;
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

static void ctx_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    if (ptr != NULL)
        tls_tickets_unref(ptr);
}

static void ex_init(void)
{
    ex_index = SSL_CTX_get_ex_new_index(0, "moat ticket store", NULL, NULL, ctx_ex_free);
}

static int random_key(struct ticket_key *k)
{
    return RAND_bytes(k->name, sizeof k->name) == 1 &&
                   RAND_priv_bytes(k->hmac, sizeof k->hmac) == 1 &&
                   RAND_priv_bytes(k->aes, sizeof k->aes) == 1
               ? 0
               : -1;
}

/* Decodes one base64 line into a key; -1 unless it is exactly 80 bytes. */
static int decode_line(const char *line, size_t len, struct ticket_key *k)
{
    unsigned char out[(TLS_TICKET_LINE_LEN / 4 + 1) * 3];
    if (len != TLS_TICKET_LINE_LEN - 1)
        return -1;
    int n = EVP_DecodeBlock(out, (const unsigned char *)line, (int)len);
    /* EVP_DecodeBlock counts padding as zero bytes: 108 chars with one '=' -> 80. */
    if (n != 81 || line[len - 1] != '=' || line[len - 2] == '=')
        return -1;
    memcpy(k->name, out, 16);
    memcpy(k->hmac, out + 16, 32);
    memcpy(k->aes, out + 48, 32);
    OPENSSL_cleanse(out, sizeof out);
    return 0;
}

/*
 * Reads a key file into keys[]; returns the number of keys, or -1 with err.
 * Never touches the store: the caller swaps under the lock.
 */
static int read_key_file(const char *path, struct ticket_key *keys, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[512];
    int n = 0, lineno = 0, rc = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            snprintf(err, errlen, "%s:%d: line too long", path, lineno);
            goto out;
        }
        while (len > 0 && isspace((unsigned char)line[len - 1]))
            line[--len] = '\0';
        char *p = line;
        while (isspace((unsigned char)*p))
            p++, len--;
        if (len == 0 || *p == '#')
            continue;
        if (n == TLS_TICKETS_MAX_KEYS) {
            snprintf(err, errlen, "%s:%d: more than %d keys", path, lineno, TLS_TICKETS_MAX_KEYS);
            goto out;
        }
        if (decode_line(p, len, &keys[n]) < 0) {
            snprintf(err, errlen,
                     "%s:%d: not a base64 80-byte ticket key (make one with "
                     "`openssl rand 80 | base64 -w0`)",
                     path, lineno);
            goto out;
        }
        n++;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        goto out;
    }
    if (n == 0) {
        snprintf(err, errlen, "%s: no ticket key in file", path);
        goto out;
    }
    rc = n;
out:
    OPENSSL_cleanse(line, sizeof line);
    fclose(f);
    if (rc < 0)
        OPENSSL_cleanse(keys, sizeof(*keys) * TLS_TICKETS_MAX_KEYS);
    return rc;
}

/* Installs keys read from the file: the penultimate encrypts when there are several. */
static int load_file(struct tls_ticket_store *st, char *err, size_t errlen)
{
    struct ticket_key keys[TLS_TICKETS_MAX_KEYS];
    int n = read_key_file(st->key_file, keys, err, errlen);
    if (n < 0)
        return -1;
    pthread_rwlock_wrlock(&st->lock);
    memcpy(st->keys, keys, sizeof(keys[0]) * (size_t)n);
    st->nkeys = (size_t)n;
    st->enc = n >= 2 ? (size_t)n - 2 : 0;
    pthread_rwlock_unlock(&st->lock);
    OPENSSL_cleanse(keys, sizeof keys);
    return 0;
}

struct tls_ticket_store *tls_tickets_new(const char *key_file, unsigned keep_previous, char *err,
                                         size_t errlen)
{
    pthread_once(&ex_once, ex_init);
    if (ex_index < 0) {
        snprintf(err, errlen, "ticket keys: cannot allocate SSL_CTX ex_data index");
        return NULL;
    }
    struct tls_ticket_store *st = calloc(1, sizeof *st);
    if (st == NULL) {
        snprintf(err, errlen, "ticket keys: out of memory");
        return NULL;
    }
    atomic_init(&st->refs, 1);
    pthread_rwlock_init(&st->lock, NULL);
    st->keep_previous =
        keep_previous < TLS_TICKETS_MAX_KEYS ? keep_previous : TLS_TICKETS_MAX_KEYS - 1;
    st->aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    if (st->aes == NULL) {
        snprintf(err, errlen, "ticket keys: AES-256-CBC unavailable");
        goto fail;
    }
    if (key_file != NULL) {
        st->key_file = strdup(key_file);
        if (st->key_file == NULL || load_file(st, err, errlen) < 0)
            goto fail;
    } else {
        if (random_key(&st->keys[0]) < 0) {
            snprintf(err, errlen, "ticket keys: random generator failed");
            goto fail;
        }
        st->nkeys = 1;
        st->enc = 0;
    }
    return st;
fail:
    tls_tickets_unref(st);
    return NULL;
}

struct tls_ticket_store *tls_tickets_ref(struct tls_ticket_store *st)
{
    atomic_fetch_add_explicit(&st->refs, 1, memory_order_relaxed);
    return st;
}

void tls_tickets_unref(struct tls_ticket_store *st)
{
    if (st == NULL || atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) != 1)
        return;
    OPENSSL_cleanse(st->keys, sizeof st->keys);
    pthread_rwlock_destroy(&st->lock);
    EVP_CIPHER_free(st->aes);
    free(st->key_file);
    free(st);
}

int tls_tickets_rotate(struct tls_ticket_store *st, char *err, size_t errlen)
{
    if (st->key_file != NULL)
        return load_file(st, err, errlen);
    struct ticket_key k;
    if (random_key(&k) < 0) {
        snprintf(err, errlen, "ticket keys: random generator failed");
        return -1;
    }
    pthread_rwlock_wrlock(&st->lock);
    size_t keep = st->nkeys < (size_t)st->keep_previous + 1 ? st->nkeys : st->keep_previous;
    memmove(&st->keys[1], &st->keys[0], keep * sizeof st->keys[0]);
    st->keys[0] = k;
    OPENSSL_cleanse(&st->keys[keep + 1], (TLS_TICKETS_MAX_KEYS - keep - 1) * sizeof st->keys[0]);
    st->nkeys = keep + 1;
    st->enc = 0;
    pthread_rwlock_unlock(&st->lock);
    OPENSSL_cleanse(&k, sizeof k);
    return 0;
}

size_t tls_tickets_count(struct tls_ticket_store *st)
{
    pthread_rwlock_rdlock(&st->lock);
    size_t n = st->nkeys;
    pthread_rwlock_unlock(&st->lock);
    return n;
}

/*
 * Copies the key to use out of the store: the sealing key (enc), or the one named
 * `name`. Returns 1 for the current key, 2 for an older one, 0 if unknown.
 */
static int find_key(struct tls_ticket_store *st, const unsigned char *name, bool enc,
                    struct ticket_key *out)
{
    int rc = 0;
    pthread_rwlock_rdlock(&st->lock);
    if (enc) {
        *out = st->keys[st->enc];
        rc = 1;
    } else {
        for (size_t i = 0; i < st->nkeys; i++) {
            if (CRYPTO_memcmp(st->keys[i].name, name, 16) == 0) {
                *out = st->keys[i];
                rc = i == st->enc ? 1 : 2;
                break;
            }
        }
    }
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

/*
 * OpenSSL's ticket callback (SSL_CTX_set_tlsext_ticket_key_evp_cb contract):
 * enc=1: fill name and IV, init cipher and MAC, return 1 (or <0 on error).
 * enc=0: 0 = unknown key (full handshake), 1 = ok, 2 = ok and issue a new ticket.
 */
static int ticket_cb(SSL *s, unsigned char *key_name, unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    struct tls_ticket_store *st = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(s), ex_index);
    if (st == NULL)
        return enc ? -1 : 0;
    struct ticket_key k;
    int rc = find_key(st, key_name, enc != 0, &k);
    if (rc == 0)
        return 0;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof k.hmac),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    int ivlen = EVP_CIPHER_get_iv_length(st->aes);
    if (enc) {
        memcpy(key_name, k.name, 16);
        if (RAND_bytes(iv, ivlen) != 1 || EVP_EncryptInit_ex(cctx, st->aes, NULL, k.aes, iv) != 1)
            rc = -1;
    } else if (EVP_DecryptInit_ex(cctx, st->aes, NULL, k.aes, iv) != 1) {
        rc = -1;
    }
    if (rc > 0 && EVP_MAC_CTX_set_params(hctx, params) != 1)
        rc = -1;
    OPENSSL_cleanse(&k, sizeof k);
    /* TLS 1.3 clients use a ticket once: renew it, or every other reconnect would
       be a full handshake. TLS 1.2 tickets are reused and renewed only when old. */
    return !enc && rc > 0 && SSL_version(s) >= TLS1_3_VERSION ? 2 : rc;
}

int tls_tickets_attach(struct tls_ticket_store *st, SSL_CTX *ctx)
{
    if (SSL_CTX_set_ex_data(ctx, ex_index, st) != 1)
        return -1;
    tls_tickets_ref(st);
    if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb) != 1)
        return -1; /* the reference goes with ctx */
    return 0;
}

int tls_tickets_generate_line(char *buf, size_t len)
{
    struct ticket_key k;
    unsigned char raw[TLS_TICKET_KEY_LEN];
    if (len < TLS_TICKET_LINE_LEN || random_key(&k) < 0)
        return -1;
    memcpy(raw, k.name, 16);
    memcpy(raw + 16, k.hmac, 32);
    memcpy(raw + 48, k.aes, 32);
    EVP_EncodeBlock((unsigned char *)buf, raw, (int)sizeof raw);
    OPENSSL_cleanse(raw, sizeof raw);
    OPENSSL_cleanse(&k, sizeof k);
    return 0;
}
