/*
 * libFuzzer target: the PROXY protocol header parser (src/http/proxy_protocol.c)
 * and the client IP from X-Forwarded-For (src/policy/client_ip.c).
 *
 * Input: 4 knob bytes (bit 0: which one; the rest seeds the split points), then
 * the bytes a balancer sends (or an X-Forwarded-For value). Properties checked
 * besides "no sanitizer report":
 * - PROXY: the answer never depends on how TCP split the bytes: fed growing
 *   prefixes at random cuts, the parser says MORE until it says DONE (with the
 *   same length as the whole input gives) or ERROR (and then for every longer
 *   prefix too); DONE's length is within the input and PROXY_PROTOCOL_MAX, v1 ones
 *   within 107 bytes, and its address is IPv4 or IPv6 unless local; MORE never
 *   comes with PROXY_PROTOCOL_MAX bytes or more.
 * - XFF (the input split into two X-Forwarded-For fields): the client IP, when
 *   there is one, is an address netutil printed (it parses back).
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "http/proxy_protocol.h"
#include "policy/client_ip.h"
#include "util/netutil.h"

static void check_done(const struct proxy_protocol_header *h, size_t n)
{
    CHECK(h->len > 0 && h->len <= n && h->len <= PROXY_PROTOCOL_MAX);
    CHECK(h->version == 1 || h->version == 2);
    if (h->version == 1)
        CHECK(h->len <= PROXY_PROTOCOL_V1_MAX);
    if (!h->local)
        CHECK(h->src.sa.sa_family == AF_INET || h->src.sa.sa_family == AF_INET6);
}

static void fuzz_proxy(const uint8_t *p, size_t n, uint32_t seed)
{
    struct proxy_protocol_header whole, part;
    const char *err;
    enum proxy_protocol_result all = proxy_protocol_parse(p, n, &whole, &err);
    if (all == PROXY_PROTOCOL_DONE)
        check_done(&whole, n);
    if (all == PROXY_PROTOCOL_ERROR)
        CHECK(err != NULL);
    if (all == PROXY_PROTOCOL_MORE)
        CHECK(n < PROXY_PROTOCOL_MAX);
    size_t at = 0;
    enum proxy_protocol_result last = PROXY_PROTOCOL_MORE;
    while (at < n) {
        at = fz_next_cut(&seed, at, n);
        enum proxy_protocol_result r = proxy_protocol_parse(p, at, &part, &err);
        if (last != PROXY_PROTOCOL_MORE) {
            CHECK(r == last); /* a verdict sticks as more bytes arrive */
            if (r == PROXY_PROTOCOL_DONE)
                CHECK(part.len == whole.len);
        }
        if (r == PROXY_PROTOCOL_DONE) {
            check_done(&part, at);
            CHECK(all == PROXY_PROTOCOL_DONE && part.len == whole.len);
            CHECK(memcmp(&part.src, &whole.src, sizeof part.src) == 0);
        }
        if (r == PROXY_PROTOCOL_ERROR)
            CHECK(all == PROXY_PROTOCOL_ERROR);
        last = r;
    }
}

static void fuzz_xff(const uint8_t *p, size_t n)
{
    static struct netutil_cidr trusted[2];
    if (!trusted[0].family) {
        netutil_cidr_parse("10.0.0.0/8", &trusted[0]);
        netutil_cidr_parse("fd00::/8", &trusted[1]);
    }
    struct http1_request *h = calloc(1, sizeof *h);
    if (!h)
        return;
    h->num_headers = 2;
    h->headers[0].name = (struct http1_str){"X-Forwarded-For", 15};
    h->headers[0].value = (struct http1_str){(const char *)p, n / 2};
    h->headers[1].name = (struct http1_str){"x_forwarded_for", 15};
    h->headers[1].value = (struct http1_str){(const char *)p + n / 2, n - n / 2};
    char out[64];
    if (client_ip_from_xff(h, trusted, 2, out, sizeof out) == 0) {
        uint8_t a[16];
        CHECK(inet_pton(AF_INET, out, a) == 1 || inet_pton(AF_INET6, out, a) == 1);
    }
    free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_in in = {data, size};
    uint32_t knob = fz_take(&in, 4);
    if (knob & 1)
        fuzz_xff(in.p, in.len);
    else
        fuzz_proxy(in.p, in.len, knob | 2);
    return 0;
}
