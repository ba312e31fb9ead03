#include "http/proxy_protocol.h"

#include <arpa/inet.h>
#include <string.h>

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

#define V1_PREFIX "PROXY "
#define V1_FIELD_MAX 46 /* the longest IPv6 text, with its NUL */

static enum proxy_protocol_result fail(const char **err, const char *why)
{
    *err = why;
    return PROXY_PROTOCOL_ERROR;
}

/* The next space-separated field of a v1 line into out (NUL-terminated); -1 if
 * empty, too long, or not followed by the expected separator. */
static int v1_field(const uint8_t **p, const uint8_t *end, char *out, size_t cap, bool last)
{
    size_t i = 0;
    while (*p < end && **p != ' ') {
        if (i + 1 >= cap)
            return -1;
        out[i++] = (char)*(*p)++;
    }
    out[i] = '\0';
    if (i == 0)
        return -1;
    if (last)
        return *p == end ? 0 : -1;
    if (*p == end)
        return -1;
    (*p)++; /* exactly one space */
    return 0;
}

/* A port: 1 to 5 decimal digits, no sign, at most 65535. */
static int v1_port(const char *s, uint16_t *port)
{
    unsigned long v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

/* "TCP4 src dst sport dport" or "TCP6 ..." (the line after "PROXY ", no CRLF). */
static enum proxy_protocol_result v1_addresses(const uint8_t *p, const uint8_t *end, bool v6,
                                               struct proxy_protocol_header *out, const char **err)
{
    char src[V1_FIELD_MAX], dst[V1_FIELD_MAX], sport[8], dport[8];
    uint8_t scratch[16];
    uint16_t sp, dp;
    int af = v6 ? AF_INET6 : AF_INET;
    if (v1_field(&p, end, src, sizeof src, false) < 0 ||
        v1_field(&p, end, dst, sizeof dst, false) < 0 ||
        v1_field(&p, end, sport, sizeof sport, false) < 0 ||
        v1_field(&p, end, dport, sizeof dport, true) < 0)
        return fail(err, "PROXY v1: malformed fields");
    if (v1_port(sport, &sp) < 0 || v1_port(dport, &dp) < 0)
        return fail(err, "PROXY v1: invalid port");
    if (inet_pton(af, dst, scratch) != 1)
        return fail(err, "PROXY v1: invalid destination address");
    if (v6) {
        out->src.in6.sin6_family = AF_INET6;
        out->src.in6.sin6_port = htons(sp);
        if (inet_pton(AF_INET6, src, &out->src.in6.sin6_addr) != 1)
            return fail(err, "PROXY v1: invalid source address");
    } else {
        out->src.in4.sin_family = AF_INET;
        out->src.in4.sin_port = htons(sp);
        if (inet_pton(AF_INET, src, &out->src.in4.sin_addr) != 1)
            return fail(err, "PROXY v1: invalid source address");
    }
    return PROXY_PROTOCOL_DONE;
}

static enum proxy_protocol_result parse_v1(const uint8_t *p, size_t n,
                                           struct proxy_protocol_header *out, const char **err)
{
    size_t plen = sizeof V1_PREFIX - 1;
    if (memcmp(p, V1_PREFIX, n < plen ? n : plen) != 0)
        return fail(err, "not a PROXY protocol header");
    size_t lim = n < PROXY_PROTOCOL_V1_MAX ? n : PROXY_PROTOCOL_V1_MAX;
    size_t eol = 0;
    for (size_t i = 0; i < lim && !eol; i++) {
        if (p[i] == '\n')
            eol = i;
        else if (p[i] < 0x20 && p[i] != '\r')
            return fail(err, "PROXY v1: control character");
        else if (p[i] > 0x7e)
            return fail(err, "PROXY v1: non-ASCII byte");
        else if (i > 0 && p[i - 1] == '\r')
            return fail(err, "PROXY v1: CR not followed by LF");
    }
    if (!eol)
        return n >= PROXY_PROTOCOL_V1_MAX ? fail(err, "PROXY v1: line longer than 107 bytes")
                                          : PROXY_PROTOCOL_MORE;
    if (eol < plen + 1 || p[eol - 1] != '\r')
        return fail(err, "PROXY v1: line does not end with CRLF");
    const uint8_t *q = p + plen, *end = p + eol - 1;
    out->len = eol + 1;
    out->version = 1;
    size_t rest = (size_t)(end - q);
    if (rest >= 7 && !memcmp(q, "UNKNOWN", 7) && (rest == 7 || q[7] == ' ')) {
        out->local = true; /* the rest of the line is to be ignored */
        return PROXY_PROTOCOL_DONE;
    }
    if (rest > 5 && (!memcmp(q, "TCP4 ", 5) || !memcmp(q, "TCP6 ", 5)))
        return v1_addresses(q + 5, end, q[3] == '6', out, err);
    return fail(err, "PROXY v1: protocol is not TCP4, TCP6 or UNKNOWN");
}

/* TLVs: type, 16-bit length, value; each must fit in the header exactly. */
static int v2_tlvs_ok(const uint8_t *p, size_t off, size_t total)
{
    while (off < total) {
        if (total - off < 3)
            return -1;
        size_t len = ((size_t)p[off + 1] << 8) | p[off + 2];
        if (len > total - off - 3)
            return -1;
        off += 3 + len;
    }
    return 0;
}

static enum proxy_protocol_result parse_v2(const uint8_t *p, size_t n,
                                           struct proxy_protocol_header *out, const char **err)
{
    if (memcmp(p, v2_sig, n < sizeof v2_sig ? n : sizeof v2_sig) != 0)
        return fail(err, "not a PROXY protocol header");
    if (n < 16)
        return PROXY_PROTOCOL_MORE;
    unsigned ver = p[12] >> 4, cmd = p[12] & 0x0f, fam = p[13] >> 4, proto = p[13] & 0x0f;
    size_t total = 16 + (((size_t)p[14] << 8) | p[15]);
    if (ver != 2)
        return fail(err, "PROXY v2: unsupported version");
    if (cmd > 1)
        return fail(err, "PROXY v2: unknown command");
    if (fam > 3 || proto > 2)
        return fail(err, "PROXY v2: unknown address family or protocol");
    if (total > PROXY_PROTOCOL_MAX)
        return fail(err, "PROXY v2: header too long");
    if (n < total)
        return PROXY_PROTOCOL_MORE;
    out->len = total;
    out->version = 2;
    if (cmd == 0) { /* LOCAL: the balancer's own connection; everything after is skipped */
        out->local = true;
        return PROXY_PROTOCOL_DONE;
    }
    static const size_t addr_len[] = {0, 12, 36, 216}; /* UNSPEC, INET, INET6, UNIX */
    if (total - 16 < addr_len[fam])
        return fail(err, "PROXY v2: address block too short");
    if ((fam == 1 || fam == 2) && proto != 1)
        return fail(err, "PROXY v2: not a stream connection");
    if (v2_tlvs_ok(p, 16 + addr_len[fam], total) < 0)
        return fail(err, "PROXY v2: malformed TLV");
    if (fam == 1) {
        out->src.in4.sin_family = AF_INET;
        memcpy(&out->src.in4.sin_addr, p + 16, 4);
        memcpy(&out->src.in4.sin_port, p + 24, 2);
    } else if (fam == 2) {
        out->src.in6.sin6_family = AF_INET6;
        memcpy(&out->src.in6.sin6_addr, p + 16, 16);
        memcpy(&out->src.in6.sin6_port, p + 48, 2);
    } else {
        out->local = true; /* UNSPEC or UNIX: no IP address to use */
    }
    return PROXY_PROTOCOL_DONE;
}

enum proxy_protocol_result proxy_protocol_parse(const uint8_t *p, size_t n,
                                                struct proxy_protocol_header *out, const char **err)
{
    memset(out, 0, sizeof *out);
    *err = NULL;
    if (n == 0)
        return PROXY_PROTOCOL_MORE;
    if (p[0] == 'P')
        return parse_v1(p, n, out, err);
    if (p[0] == v2_sig[0])
        return parse_v2(p, n, out, err);
    return fail(err, "not a PROXY protocol header");
}
