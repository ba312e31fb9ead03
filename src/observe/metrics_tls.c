#include "observe/metrics_tls.h"

#include <stdint.h>

#include <event2/buffer.h>
#include <openssl/err.h>

#include "tls/tls.h"

static const char *const versions[METRICS_TLS_VERSIONS] = {"TLSv1.2", "TLSv1.3", "other"};

/* The suites moat's policies can choose (IANA id, OpenSSL name); the last: "other". */
static const struct {
    uint16_t id;
    const char *name;
} ciphers[METRICS_TLS_CIPHERS] = {
    {0x1301, "TLS_AES_128_GCM_SHA256"},
    {0x1302, "TLS_AES_256_GCM_SHA384"},
    {0x1303, "TLS_CHACHA20_POLY1305_SHA256"},
    {0x1304, "TLS_AES_128_CCM_SHA256"},
    {0x1305, "TLS_AES_128_CCM_8_SHA256"},
    {0xC02B, "ECDHE-ECDSA-AES128-GCM-SHA256"},
    {0xC02F, "ECDHE-RSA-AES128-GCM-SHA256"},
    {0xC02C, "ECDHE-ECDSA-AES256-GCM-SHA384"},
    {0xC030, "ECDHE-RSA-AES256-GCM-SHA384"},
    {0xCCA9, "ECDHE-ECDSA-CHACHA20-POLY1305"},
    {0xCCA8, "ECDHE-RSA-CHACHA20-POLY1305"},
    {0x009E, "DHE-RSA-AES128-GCM-SHA256"},
    {0x009F, "DHE-RSA-AES256-GCM-SHA384"},
    {0xCCAA, "DHE-RSA-CHACHA20-POLY1305"},
    {0, "other"},
};

static const char *const fail_reasons[TF_COUNT] = {
    [TF_EOF] = "eof",
    [TF_TIMEOUT] = "timeout",
    [TF_PROTOCOL_VERSION] = "protocol_version",
    [TF_NO_SHARED_CIPHER] = "no_shared_cipher",
    [TF_HTTP_REQUEST] = "http_request",
    [TF_CLIENT_CERT] = "client_certificate",
    [TF_ALERT] = "alert_received",
    [TF_PROTOCOL_ERROR] = "protocol_error",
    [TF_OTHER] = "other",
};

void metrics_tls_handshake(struct metrics *m, const SSL *ssl)
{
    int v = SSL_version(ssl);
    int vi = v == TLS1_2_VERSION ? 0 : v == TLS1_3_VERSION ? 1 : 2;
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    uint16_t id = c ? SSL_CIPHER_get_protocol_id(c) : 0;
    int ci = 0;
    while (ci < METRICS_TLS_CIPHERS - 1 && ciphers[ci].id != id)
        ci++;
    hist_bump(&m->tls_ok[vi][ci], 1);
}

enum metrics_tls_fail metrics_tls_fail_reason(bool eof)
{
    unsigned long e = ERR_peek_error();
    if (e == 0)
        return eof ? TF_EOF : TF_OTHER;
    if (ERR_GET_LIB(e) != ERR_LIB_SSL)
        return TF_OTHER;
    int r = ERR_GET_REASON(e);
    switch (r) {
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        return TF_EOF;
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_VERSION_TOO_HIGH:
        return TF_PROTOCOL_VERSION;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
        return TF_NO_SHARED_CIPHER;
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
        return TF_HTTP_REQUEST;
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        return TF_CLIENT_CERT;
    default:
        return r >= SSL_AD_REASON_OFFSET ? TF_ALERT : TF_PROTOCOL_ERROR;
    }
}

static void render_handshakes(struct evbuffer *out, struct metrics *const *sets, int n)
{
    const char *name = "moat_tls_handshakes_total";
    metrics_family(out, name, "counter", "Completed TLS handshakes, by version and cipher");
    for (int v = 0; v < METRICS_TLS_VERSIONS; v++) {
        for (int c = 0; c < METRICS_TLS_CIPHERS; c++) {
            uint64_t sum = METRICS_SUM(sets, n, tls_ok[v][c]);
            if (sum)
                evbuffer_add_printf(out, "%s{version=\"%s\",cipher=\"%s\"} %llu\n", name,
                                    versions[v], ciphers[c].name, (unsigned long long)sum);
        }
    }
    name = "moat_tls_handshake_failures_total";
    metrics_family(out, name, "counter", "Failed TLS handshakes, by reason");
    for (int r = 0; r < TF_COUNT; r++) {
        uint64_t sum = METRICS_SUM(sets, n, tls_fail[r]);
        evbuffer_add_printf(out, "%s{reason=\"%s\"} %llu\n", name, fail_reasons[r],
                            (unsigned long long)sum);
    }
}

static void render_certs(struct evbuffer *out, const struct tls_policy *p)
{
    const char *name = "moat_tls_certificate_not_after_seconds";
    metrics_family(out, name, "gauge", "Unix time a loaded certificate expires (its notAfter)");
    struct tls_cert_info ci;
    for (size_t i = 0; i < tls_policy_num_certs(p); i++) {
        if (tls_policy_cert_info(p, i, &ci) < 0)
            continue;
        evbuffer_add_printf(out, "%s{name=\"", name);
        metrics_label_value(out, ci.path);
        evbuffer_add_printf(out, "\"} %lld\n", (long long)ci.not_after);
    }
}

void metrics_tls_render(struct evbuffer *out, struct metrics *const *sets, int n,
                        const struct tls_policy *p)
{
    render_handshakes(out, sets, n);
    render_certs(out, p);
}
