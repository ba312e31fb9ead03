#include "util/digest.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static _Thread_local EVP_MD_CTX *thread_ctx;

static void free_sha256(void)
{
    EVP_MD_free(sha256_md);
    sha256_md = NULL;
}

/* Registered after OpenSSL's own exit handler, so it runs before it. */
static void fetch_sha256(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    atexit(free_sha256);
}

int digest_sha256(const void *p, size_t n, uint8_t out[DIGEST_SHA256_LEN])
{
    pthread_once(&sha256_once, fetch_sha256);
    if (!thread_ctx)
        thread_ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    if (sha256_md && thread_ctx && EVP_DigestInit_ex2(thread_ctx, sha256_md, NULL) == 1 &&
        EVP_DigestUpdate(thread_ctx, p, n) == 1 && EVP_DigestFinal_ex(thread_ctx, out, &len) == 1 &&
        len == DIGEST_SHA256_LEN)
        return 0;
    memset(out, 0, DIGEST_SHA256_LEN);
    return -1;
}

void digest_thread_cleanup(void)
{
    EVP_MD_CTX_free(thread_ctx);
    thread_ctx = NULL;
}

void digest_hex(const uint8_t *d, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}
