/*
 * digest: SHA-256 on the request path (session token hashes, rate-limit keys
 * that must not hold a secret).
 *
 * OpenSSL 3.0's one-shot SHA256() fetches the algorithm from the provider on
 * every call (a lookup under a lock, an allocation, the context set-up): about
 * 1 us for a 48-byte token on the dev VM, against ~0.2 us for the hash itself.
 * Here the algorithm is fetched once per process and each thread reuses one
 * digest context.
 */
#ifndef MOAT_DIGEST_H
#define MOAT_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define DIGEST_SHA256_LEN 32

/* out = SHA-256(p[0..n)). Returns 0, or -1 if OpenSSL failed (out is then zeroed). */
int digest_sha256(const void *p, size_t n, uint8_t out[DIGEST_SHA256_LEN]);

/* Writes the first n bytes of d as 2n lowercase hex digits and a NUL at out[2n]. */
void digest_hex(const uint8_t *d, size_t n, char *out);

/* Frees the calling thread's context (a worker calls it on exit; idempotent). */
void digest_thread_cleanup(void);

#endif
