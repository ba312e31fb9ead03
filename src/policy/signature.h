/*
 * signature: X-Moat-Signature, the proof an upstream checks that the identity
 * headers it received were set by moat (docs/signature.md is the contract).
 *
 *   X-Moat-Signature: t=<unix seconds>,v1=<64 lowercase hex HMAC-SHA256>
 *
 * The MAC covers a canonical string of nine LF-separated lines, no trailing LF:
 *
 *   moat-v1 \n t \n method \n target \n host \n tenant \n user \n mfa \n request-id
 *
 * method and target exactly as forwarded on the request line, host as forwarded in
 * Host but ASCII-lowercased (this module lowercases it), tenant/user/mfa/request-id
 * as forwarded in X-Tenant-ID, X-User-ID, X-Session-MFA, X-Request-ID (empty when
 * the header is not sent). No field may contain CR or LF: that would make the
 * string ambiguous, so it is an error rather than something escaped.
 *
 * moat signs with the current key only; during a rotation upstreams accept the
 * current and the previous key (signature_verify() takes a list).
 *
 * Thread safety: signature_header_value() keeps one keyed HMAC context per thread
 * (see signature.c for why and the measurements); everything else is pure.
 */
#ifndef MOAT_SIGNATURE_H
#define MOAT_SIGNATURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIGNATURE_HEADER "X-Moat-Signature"
#define SIGNATURE_KEY_MIN 32 /* bytes of key material, at least */
#define SIGNATURE_KEY_MAX 64 /* the HMAC-SHA256 block size */
/* "t=" + 19 digits + ",v1=" + 64 hex + NUL fits. */
#define SIGNATURE_VALUE_MAX 96

struct signature_key {
    uint8_t key[SIGNATURE_KEY_MAX];
    size_t len; /* SIGNATURE_KEY_MIN..SIGNATURE_KEY_MAX once loaded */
};

/*
 * What is signed. Each field is pointer + length, not NUL-terminated; a NULL
 * pointer with length 0 is an empty field. t is ignored by signature_verify(),
 * which takes it from the header value.
 */
struct signature_fields {
    int64_t t; /* unix seconds, >= 0 */
    const char *method;
    size_t method_len;
    const char *target; /* request-target as forwarded: "/path?query" */
    size_t target_len;
    const char *host; /* Host as forwarded (port included if forwarded); lowercased here */
    size_t host_len;
    const char *tenant;
    size_t tenant_len;
    const char *user;
    size_t user_len;
    const char *mfa; /* "1", "0" or empty, as sent in X-Session-MFA */
    size_t mfa_len;
    const char *request_id;
    size_t request_id_len;
};

/*
 * Loads a signing key file into *out. The file holds either hex (only hex digits:
 * an even number, 64..128 of them, i.e. 32..64 bytes, as `openssl rand -hex 32`
 * writes) or raw bytes (32..64 of them). Trailing whitespace (SP HT CR LF VT FF) is
 * stripped first in both cases; nothing else is. Returns 0, or -1 with a message
 * naming path in err (out untouched).
 */
int signature_key_load(const char *path, struct signature_key *out, char *err, size_t errlen);

/*
 * Writes the canonical string for f into out followed by a NUL, and returns its
 * length (NUL excluded); 0 if a field contains CR or LF, a length is non-zero with a
 * NULL pointer, t < 0, or out is too small. For tests, docs and debugging: the
 * signing path feeds the same bytes to the MAC without building the whole string.
 */
size_t signature_canonical(const struct signature_fields *f, char *out, size_t outlen);

/*
 * Writes the X-Moat-Signature value "t=<f->t>,v1=<hex>" (NUL-terminated) into out
 * and returns its length; 0 on any error: a field invalid as for
 * signature_canonical(), a key that is not loaded, outlen < SIGNATURE_VALUE_MAX,
 * or an OpenSSL failure.
 * Hot path: after the first call on a thread with a given key, no algorithm fetch
 * and no key schedule (see signature.c); safe to call from any number of threads.
 */
size_t signature_header_value(const struct signature_key *k, const struct signature_fields *f,
                              char *out, size_t outlen);

/*
 * True if header_value is a well-formed signature over f (its t is taken from
 * header_value) made with one of keys[0..nkeys), and |now - t| <= max_skew.
 * Format: comma-separated items with no spaces: exactly one "t=<decimal, no sign,
 * no leading zero>", 1..8 "v1=<64 lowercase hex>" (any may match), other
 * "name=value" items ignored so a future scheme can be added alongside v1.
 * Digests are compared in constant time. For tests and as the reference for
 * upstream verifiers (scripts/verify-signature.py does the same).
 */
bool signature_verify(const struct signature_key *keys, size_t nkeys,
                      const struct signature_fields *f_without_t, const char *header_value,
                      int64_t now, int64_t max_skew);

/* Frees the calling thread's cached HMAC context (a worker calls it on exit). */
void signature_thread_cleanup(void);

#endif
