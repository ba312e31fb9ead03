/*
 * libFuzzer target for src/http/h2_head.c: a sequence of decoded HTTP/2 fields
 * (as nghttp2 would hand them over, but without nghttp2's own checks) goes
 * through h2_head_field / h2_head_finish; an accepted head is composed as
 * HTTP/1.1 into a buffer of the size h2_stream.c gives it and parsed by
 * http1_parse_request. Checks, trapping when one breaks:
 * - a refused head has one of the statuses moat answers with;
 * - what moat composes parses, and the parsed request says what the fields
 *   said: Host is the authority, no connection-specific field and no
 *   Transfer-Encoding other than moat's own chunked, the framing moat chose.
 *
 * Input: 1 byte of flags (body without content-length, limits), then records
 * [name length: 1 byte][name][value length: 2 bytes][value].
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_util.h"
#include "http/h2_head.h"
#include "http/http1.h"

static struct http1_request req;

static bool name_is(struct http1_str n, const char *lit)
{
    return n.len == strlen(lit) && !strncasecmp(n.p, lit, n.len);
}

static void check_parsed(const struct h2_head *h, bool chunked)
{
    CHECK(req.host.len == strlen(h->authority) && !memcmp(req.host.p, h->authority, req.host.len));
    CHECK(req.method.len == strlen(h->method) && !memcmp(req.method.p, h->method, req.method.len));
    size_t te = 0;
    for (size_t i = 0; i < req.num_headers; i++) {
        struct http1_str n = req.headers[i].name;
        CHECK(!name_is(n, "connection") && !name_is(n, "keep-alive") &&
              !name_is(n, "proxy-connection") && !name_is(n, "upgrade") && !name_is(n, "te"));
        te += name_is(n, "transfer-encoding");
    }
    CHECK(te == (chunked ? 1u : 0u));
    if (chunked)
        CHECK(req.framing.body == HTTP1_BODY_CHUNKED);
    else if (h->has_cl)
        CHECK(req.framing.body == HTTP1_BODY_LENGTH || req.framing.body == HTTP1_BODY_NONE);
    else
        CHECK(req.framing.body == HTTP1_BODY_NONE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_in in = {data, size};
    uint32_t flags = fz_take(&in, 1);
    struct h2_head_limits lim = {flags & 2 ? 16384 : 1024, flags & 4 ? 100 : 8};
    struct h2_head h;
    if (h2_head_init(&h) < 0)
        return 0;
    while (in.len > 0) {
        size_t nlen = fz_take(&in, 1) % 64;
        const uint8_t *name = in.p;
        nlen = nlen < in.len ? nlen : in.len;
        in.p += nlen, in.len -= nlen;
        size_t vlen = fz_take(&in, 2) % 4096;
        const uint8_t *value = in.p;
        vlen = vlen < in.len ? vlen : in.len;
        in.p += vlen, in.len -= vlen;
        h2_head_field(&h, &lim, name, nlen, value, vlen);
    }
    h2_head_finish(&h);
    bool chunked = (flags & 1) && !h.has_cl;
    if (h.bad) {
        CHECK(h.bad_status == 400 || h.bad_status == 405 || h.bad_status == 431 ||
              h.bad_status == 503);
        h2_head_clear(&h);
        return 0;
    }
    size_t cap = lim.max_header_bytes + 8 * lim.max_headers + 1024;
    char *buf = malloc(cap);
    CHECK(buf);
    size_t n = h2_head_compose(&h, chunked, buf, cap);
    CHECK(n > 0); /* the field budget leaves room for the framing moat adds */
    struct http1_limits plim = {cap, lim.max_headers + 1};
    int status = 0;
    const char *err = NULL;
    if (http1_parse_request(buf, n, &plim, &req, &status, &err) == 0)
        check_parsed(&h, chunked);
    else
        CHECK(status >= 400 && status < 500);
    free(buf);
    h2_head_clear(&h);
    return 0;
}
