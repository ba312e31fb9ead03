/*
 * signature: X-Moat-Signature (HMAC-SHA256 over a canonical string). See
 * signature.h for the contract and docs/signature.md for upstream teams.
 *
 * Cost on the hot path. Measured on the 2-core dev VM (OpenSSL 3.0, -O2, 1e6
 * signatures of a typical 110-byte canonical string, ns per signature):
 *   HMAC() one-shot                                   ~1440
 *   EVP_Q_mac()                                       ~1130
 *   new EVP_MAC_CTX per call, prefetched EVP_MAC      ~1060
 *   one EVP_MAC_CTX, EVP_MAC_init() with key each call ~940
 *   EVP_MAC_CTX_dup() of a keyed template + free       ~580
 *   one keyed EVP_MAC_CTX, EVP_MAC_init(NULL key)       ~260  (bare SHA-256: ~200)
 *   signature_header_value() as below, all included     ~440  (canonical string ~110)
 * One-shot calls re-fetch the algorithm and redo the key schedule every time
 * (~1.2 us, several percent of the per-request CPU budget). So each thread keeps
 * one keyed context and re-initialises it with a NULL key, which restores the
 * precomputed inner/outer pads. (OpenSSL 3.0 still makes two small allocations per
 * MAC, copying digest contexts inside HMAC init/final; avoiding them would take the
 * deprecated SHA256_* API, not worth it for ~50 ns.) The context is re-keyed when
 * a caller passes different key bytes (a reload rotated the key), compared in
 * constant time against a per-thread copy, so callers need no lifecycle of their
 * own beyond signature_thread_cleanup() at thread exit.
 *
 * The canonical string is staged through a small stack buffer so that the MAC
 * sees one update for typical requests rather than seventeen small ones.
 */
#include "policy/signature.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define DIGEST_LEN 32
#define DIGEST_HEX (2 * DIGEST_LEN)
#define KEY_FILE_MAX 1024 /* bytes read from a key file, trailing whitespace included */
#define MAX_V1 8          /* v1= items accepted in one header value */

static const char hexdig[] = "0123456789abcdef";

/* ---- small formatting helpers -------------------------------------------- */

/* Writes v (>= 0) in decimal into out (>= 20 bytes), no NUL; returns the length. */
static size_t fmt_i64(int64_t v, char *out)
{
    char tmp[20];
    size_t n = 0, i;
    uint64_t u = (uint64_t)v;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    for (i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A NULL pointer is only allowed for an empty field. CR/LF are checked while emitting. */
static bool field_ok(const char *p, size_t len)
{
    return len == 0 || p != NULL;
}

static bool fields_ok(const struct signature_fields *f)
{
    return f != NULL && f->t >= 0 && field_ok(f->method, f->method_len) &&
           field_ok(f->target, f->target_len) && field_ok(f->host, f->host_len) &&
           field_ok(f->tenant, f->tenant_len) && field_ok(f->user, f->user_len) &&
           field_ok(f->mfa, f->mfa_len) && field_ok(f->request_id, f->request_id_len);
}

/* ---- canonical string ---------------------------------------------------- */

/*
 * Where canonical bytes go: either a caller's buffer (mac == NULL; overflowing it is
 * an error) or a MAC, staged through buf and flushed when it fills.
 */
struct sink {
    EVP_MAC_CTX *mac;
    char *buf;
    size_t cap, len;
    bool failed;
};

static void sink_flush(struct sink *s)
{
    if (s->len > 0 && !s->failed &&
        EVP_MAC_update(s->mac, (const unsigned char *)s->buf, s->len) != 1)
        s->failed = true;
    s->len = 0;
}

/* True if p[0..n) holds CR or LF, which would make the canonical string ambiguous. */
static bool has_crlf(const char *p, size_t n)
{
    /*
     * Eight bytes at a time: a byte-wise loop cost ~1 ns per byte here, more than
     * the MAC's own share. (x - 0x01..) & ~x & 0x80.. is non-zero iff a byte of x
     * is zero, and x = word ^ 0x0a.. has a zero byte where the word has LF.
     */
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    const uint64_t lf = ones * '\n', cr = ones * '\r';
    uint64_t acc = 0;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        uint64_t w, a, b;
        memcpy(&w, p + i, 8);
        a = w ^ lf;
        b = w ^ cr;
        acc |= ((a - ones) & ~a & highs) | ((b - ones) & ~b & highs);
    }
    for (; i < n; i++)
        acc |= (uint64_t)(p[i] == '\n') | (uint64_t)(p[i] == '\r');
    return acc != 0;
}

/* Appends a field value to s, lower-casing ASCII letters if asked; CR/LF fail the sink. */
static void sink_put(struct sink *s, const char *p, size_t n, bool lower)
{
    if (s->mac != NULL && !lower && n >= s->cap) {
        /* A long target: hand it to the MAC directly rather than in pieces. */
        sink_flush(s);
        if (has_crlf(p, n) || EVP_MAC_update(s->mac, (const unsigned char *)p, n) != 1)
            s->failed = true;
        return;
    }
    while (n > 0 && !s->failed) {
        size_t k;
        char *dst;
        if (s->len == s->cap) {
            if (s->mac == NULL) {
                s->failed = true;
                return;
            }
            sink_flush(s);
        }
        k = s->cap - s->len < n ? s->cap - s->len : n;
        dst = s->buf + s->len; /* a local pointer: s->buf could alias the stores */
        if (lower) {
            for (size_t i = 0; i < k; i++) {
                char c = p[i];
                dst[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
            }
        } else {
            memcpy(dst, p, k);
        }
        s->failed |= has_crlf(p, k);
        s->len += k;
        p += k;
        n -= k;
    }
}

/* Appends the LF that ends a line of the canonical string. */
static void sink_lf(struct sink *s)
{
    if (s->len == s->cap) {
        if (s->mac == NULL) {
            s->failed = true;
            return;
        }
        sink_flush(s);
    }
    s->buf[s->len++] = '\n';
}

/* Emits the canonical string of f (fields_ok() already checked) into s. */
static void canonical_emit(const struct signature_fields *f, struct sink *s)
{
    char t[20];
    size_t tlen = fmt_i64(f->t, t);

    sink_put(s, "moat-v1", 7, false);
    sink_lf(s);
    sink_put(s, t, tlen, false);
    sink_lf(s);
    sink_put(s, f->method, f->method_len, false);
    sink_lf(s);
    sink_put(s, f->target, f->target_len, false);
    sink_lf(s);
    sink_put(s, f->host, f->host_len, true);
    sink_lf(s);
    sink_put(s, f->tenant, f->tenant_len, false);
    sink_lf(s);
    sink_put(s, f->user, f->user_len, false);
    sink_lf(s);
    sink_put(s, f->mfa, f->mfa_len, false);
    sink_lf(s);
    sink_put(s, f->request_id, f->request_id_len, false);
}

size_t signature_canonical(const struct signature_fields *f, char *out, size_t outlen)
{
    struct sink s = {.mac = NULL, .buf = out, .cap = outlen > 0 ? outlen - 1 : 0};

    if (out == NULL || outlen == 0 || !fields_ok(f))
        return 0;
    canonical_emit(f, &s);
    if (s.failed)
        return 0;
    out[s.len] = '\0';
    return s.len;
}

/* MACs the canonical string of f with ctx, which must be initialised (keyed). */
static int mac_fields(EVP_MAC_CTX *ctx, const struct signature_fields *f,
                      unsigned char digest[DIGEST_LEN])
{
    char stage[1024];
    struct sink s = {.mac = ctx, .buf = stage, .cap = sizeof stage};
    size_t dlen = 0;

    canonical_emit(f, &s);
    sink_flush(&s);
    if (s.failed || EVP_MAC_final(ctx, digest, &dlen, DIGEST_LEN) != 1 || dlen != DIGEST_LEN)
        return -1;
    return 0;
}

/* ---- HMAC contexts ------------------------------------------------------- */

static EVP_MAC_CTX *mac_ctx_new(void)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx;

    if (mac == NULL)
        return NULL;
    ctx = EVP_MAC_CTX_new(mac); /* holds its own reference to mac */
    EVP_MAC_free(mac);
    return ctx;
}

static int mac_set_key(EVP_MAC_CTX *ctx, const uint8_t *key, size_t len)
{
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_init(ctx, key, len, params) == 1 ? 0 : -1;
}

static bool key_ok(const struct signature_key *k)
{
    return k != NULL && k->len >= SIGNATURE_KEY_MIN && k->len <= SIGNATURE_KEY_MAX;
}

/* The calling thread's keyed context and a copy of the key it holds. */
static _Thread_local struct {
    EVP_MAC_CTX *ctx;
    uint8_t key[SIGNATURE_KEY_MAX];
    size_t len;
} tls_mac;

void signature_thread_cleanup(void)
{
    EVP_MAC_CTX_free(tls_mac.ctx);
    OPENSSL_cleanse(&tls_mac, sizeof tls_mac);
    tls_mac.ctx = NULL;
    tls_mac.len = 0;
}

/* Returns the thread's context, initialised and keyed with k, or NULL. */
static EVP_MAC_CTX *thread_mac(const struct signature_key *k)
{
    if (tls_mac.ctx != NULL && tls_mac.len == k->len &&
        CRYPTO_memcmp(tls_mac.key, k->key, k->len) == 0) {
        if (EVP_MAC_init(tls_mac.ctx, NULL, 0, NULL) == 1)
            return tls_mac.ctx;
        signature_thread_cleanup();
    }
    if (tls_mac.ctx == NULL && (tls_mac.ctx = mac_ctx_new()) == NULL)
        return NULL;
    if (mac_set_key(tls_mac.ctx, k->key, k->len) != 0) {
        signature_thread_cleanup();
        return NULL;
    }
    memcpy(tls_mac.key, k->key, k->len);
    tls_mac.len = k->len;
    return tls_mac.ctx;
}

size_t signature_header_value(const struct signature_key *k, const struct signature_fields *f,
                              char *out, size_t outlen)
{
    unsigned char digest[DIGEST_LEN];
    EVP_MAC_CTX *ctx;
    size_t n;

    if (out == NULL || outlen < SIGNATURE_VALUE_MAX || !key_ok(k) || !fields_ok(f))
        return 0;
    if ((ctx = thread_mac(k)) == NULL)
        return 0;
    if (mac_fields(ctx, f, digest) != 0) {
        signature_thread_cleanup(); /* state unknown: re-key next time */
        return 0;
    }
    memcpy(out, "t=", 2);
    n = 2 + fmt_i64(f->t, out + 2);
    memcpy(out + n, ",v1=", 4);
    n += 4;
    for (size_t i = 0; i < DIGEST_LEN; i++) {
        out[n++] = hexdig[digest[i] >> 4];
        out[n++] = hexdig[digest[i] & 0xf];
    }
    out[n] = '\0';
    return n;
}

/* ---- verification -------------------------------------------------------- */

struct parsed_sig {
    int64_t t;
    bool have_t;
    size_t nv1;
    unsigned char v1[MAX_V1][DIGEST_LEN];
};

/* "t" value: 1..19 digits, no sign, no leading zero, fits int64. */
static int parse_t(const char *p, size_t n, int64_t *out)
{
    uint64_t v = 0;

    if (n == 0 || n > 19 || (n > 1 && p[0] == '0'))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    if (v > (uint64_t)INT64_MAX)
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* "v1" value: exactly 64 lowercase hex digits. */
static int parse_v1(const char *p, size_t n, unsigned char out[DIGEST_LEN])
{
    if (n != DIGEST_HEX)
        return -1;
    for (size_t i = 0; i < DIGEST_HEX; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return -1; /* moat writes lowercase: anything else was not written by moat */
    }
    for (size_t i = 0; i < DIGEST_LEN; i++)
        out[i] = (unsigned char)(hexval((unsigned char)p[2 * i]) << 4 |
                                 hexval((unsigned char)p[2 * i + 1]));
    return 0;
}

/* Parses one "name=value" item of a header value into ps. */
static int parse_item(const char *p, size_t n, struct parsed_sig *ps)
{
    const char *eq = memchr(p, '=', n);
    size_t klen, vlen;

    if (eq == NULL || eq == p)
        return -1;
    klen = (size_t)(eq - p);
    vlen = n - klen - 1;
    if (klen == 1 && p[0] == 't') {
        if (ps->have_t || parse_t(eq + 1, vlen, &ps->t) != 0)
            return -1;
        ps->have_t = true;
    } else if (klen == 2 && p[0] == 'v' && p[1] == '1') {
        if (ps->nv1 == MAX_V1 || parse_v1(eq + 1, vlen, ps->v1[ps->nv1]) != 0)
            return -1;
        ps->nv1++;
    }
    /* Other schemes are ignored: they may be added next to v1 later. */
    return 0;
}

static int parse_header_value(const char *v, struct parsed_sig *ps)
{
    memset(ps, 0, sizeof *ps);
    for (;;) {
        const char *comma = strchr(v, ',');
        size_t n = comma ? (size_t)(comma - v) : strlen(v);
        if (n == 0 || memchr(v, ' ', n) != NULL || parse_item(v, n, ps) != 0)
            return -1;
        if (comma == NULL)
            break;
        v = comma + 1;
    }
    return ps->have_t && ps->nv1 > 0 ? 0 : -1;
}

static bool within_skew(int64_t t, int64_t now, int64_t max_skew)
{
    /* Unsigned differences are exact here: the true difference is below 2^64. */
    uint64_t d = t > now ? (uint64_t)t - (uint64_t)now : (uint64_t)now - (uint64_t)t;
    return max_skew >= 0 && d <= (uint64_t)max_skew;
}

bool signature_verify(const struct signature_key *keys, size_t nkeys,
                      const struct signature_fields *f_without_t, const char *header_value,
                      int64_t now, int64_t max_skew)
{
    struct signature_fields f;
    struct parsed_sig ps;
    unsigned char digest[DIGEST_LEN];
    EVP_MAC_CTX *ctx = NULL;
    bool ok = false;

    if (keys == NULL || f_without_t == NULL || header_value == NULL ||
        parse_header_value(header_value, &ps) != 0 || !within_skew(ps.t, now, max_skew))
        return false;
    f = *f_without_t;
    f.t = ps.t;
    if (!fields_ok(&f) || (ctx = mac_ctx_new()) == NULL)
        return false;
    for (size_t i = 0; i < nkeys && !ok; i++) {
        if (!key_ok(&keys[i]) || mac_set_key(ctx, keys[i].key, keys[i].len) != 0 ||
            mac_fields(ctx, &f, digest) != 0)
            continue;
        for (size_t j = 0; j < ps.nv1; j++)
            ok |= CRYPTO_memcmp(digest, ps.v1[j], DIGEST_LEN) == 0;
    }
    EVP_MAC_CTX_free(ctx);
    OPENSSL_cleanse(digest, sizeof digest);
    return ok;
}

/* ---- key files ----------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Reads at most cap bytes of path into buf; returns the count, or -1 (errno set). */
static ssize_t read_small_file(const char *path, uint8_t *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t got = 0;

    if (fd < 0)
        return -1;
    while (got < cap) {
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int saved = errno;
            close(fd);
            errno = saved;
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    return (ssize_t)got;
}

static bool all_hex(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (hexval(p[i]) < 0)
            return false;
    }
    return true;
}

/* Turns the file's bytes (trailing whitespace already stripped) into key material. */
static int key_decode(const uint8_t *buf, size_t n, struct signature_key *out, char *why,
                      size_t whylen)
{
    if (n > 0 && all_hex(buf, n)) {
        if (n % 2 != 0 || n < 2 * SIGNATURE_KEY_MIN || n > 2 * SIGNATURE_KEY_MAX) {
            snprintf(why, whylen, "hex key has %zu digits, need an even number from %d to %d", n,
                     2 * SIGNATURE_KEY_MIN, 2 * SIGNATURE_KEY_MAX);
            return -1;
        }
        for (size_t i = 0; i < n / 2; i++)
            out->key[i] = (uint8_t)(hexval(buf[2 * i]) << 4 | hexval(buf[2 * i + 1]));
        out->len = n / 2;
        return 0;
    }
    if (n < SIGNATURE_KEY_MIN || n > SIGNATURE_KEY_MAX) {
        snprintf(why, whylen, "raw key has %zu bytes, need %d to %d (or 64+ hex digits)", n,
                 SIGNATURE_KEY_MIN, SIGNATURE_KEY_MAX);
        return -1;
    }
    memcpy(out->key, buf, n);
    out->len = n;
    return 0;
}

int signature_key_load(const char *path, struct signature_key *out, char *err, size_t errlen)
{
    uint8_t buf[KEY_FILE_MAX + 1];
    struct signature_key k;
    char why[128];
    ssize_t got;
    size_t n;
    int rc = -1;

    if (path == NULL || out == NULL) {
        set_err(err, errlen, "signing key: no file given");
        return -1;
    }
    got = read_small_file(path, buf, sizeof buf);
    if (got < 0) {
        set_err(err, errlen, "%s: cannot read signing key: %s", path, strerror(errno));
        return -1;
    }
    n = (size_t)got;
    if (n > KEY_FILE_MAX) {
        set_err(err, errlen, "%s: signing key file larger than %d bytes", path, KEY_FILE_MAX);
        goto out;
    }
    while (n > 0 && memchr(" \t\r\n\v\f", buf[n - 1], 6) != NULL)
        n--;
    if (key_decode(buf, n, &k, why, sizeof why) != 0) {
        set_err(err, errlen, "%s: %s", path, why);
        goto out;
    }
    *out = k;
    rc = 0;
out:
    OPENSSL_cleanse(buf, sizeof buf);
    OPENSSL_cleanse(&k, sizeof k);
    return rc;
}
