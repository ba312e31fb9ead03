/*
 * libFuzzer target: the HTTP/1.1 request head, as a connection sees it.
 *
 * Input: 4 knob bytes (limits, split seed), then the bytes a client sends.
 * The head scanner is fed at random split points and must give the same
 * answer as on the whole buffer; the head it finds is parsed with random
 * limits (0 = defaults, up to the config maximum of 1 MiB / 256 fields), and
 * the parser also gets the raw buffer on its own. Beyond "no sanitizer
 * report", it traps when a property a proxy relies on breaks:
 * - the parser never accepts what the scanner refuses, nor more than one head;
 * - every view lies inside the input and is well formed (no CTL in values,
 *   no OWS around them, target without spaces);
 * - framing is consistent with the fields (never CL with TE, chunked only on
 *   1.1), HTTP/1.1 has a Host, the limits hold.
 */
#include <stdlib.h>

#include "fuzz_util.h"

static struct http1_request req;

static void check_request(const char *buf, size_t len, const struct http1_limits *lim,
                          uint32_t seed)
{
    int st = 0;
    const char *err = NULL;
    if (http1_parse_request(buf, len, lim, &req, &st, &err) != 0) {
        CHECK(err != NULL && st >= 400 && st <= 505);
        return;
    }
    size_t max_headers = lim->max_headers ? lim->max_headers : HTTP1_DEFAULT_MAX_HEADERS;
    CHECK(fz_check_scan(buf, len, lim->max_header_bytes, seed) == (ssize_t)len);
    CHECK(req.minor_version == 0 || req.minor_version == 1);
    CHECK(req.method.len > 0 && fz_inside(req.method, buf, len));
    CHECK(req.target.len > 0 && fz_inside(req.target, buf, len));
    CHECK(fz_inside(req.path, buf, len) && fz_inside(req.query, buf, len));
    CHECK(fz_inside(req.host, buf, len));
    CHECK(req.minor_version == 0 || req.host.len > 0);
    CHECK(req.num_headers <= max_headers && req.num_headers <= HTTP1_MAX_HEADERS_CAP);
    for (size_t i = 0; i < req.target.len; i++)
        CHECK(req.target.p[i] > 0x20 && req.target.p[i] < 0x7f);
    for (size_t i = 0; i < req.method.len; i++)
        CHECK(req.method.p[i] > 0x20 && req.method.p[i] < 0x7f);
    fz_check_headers(req.headers, req.num_headers, buf, len);
    fz_check_framing(&req.framing, req.headers, req.num_headers);
    CHECK(req.framing.body != HTTP1_BODY_UNTIL_CLOSE);
    CHECK(req.framing.body != HTTP1_BODY_CHUNKED || req.minor_version == 1);
    if (req.host.len) {
        const struct http1_header *h = http1_find_header(req.headers, req.num_headers, "host");
        CHECK(h && h->value.p == req.host.p && h->value.len == req.host.len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_in in = {data, size};
    uint32_t knob = fz_take(&in, 4);
    if (in.len > (1u << 20))
        return 0;
    const char *buf = (const char *)in.p;
    struct http1_limits lim = fz_limits(knob);
    uint32_t seed = knob * 2654435761u;

    ssize_t head = fz_check_scan(buf, in.len, lim.max_header_bytes, seed);
    if (head > 0)
        check_request(buf, (size_t)head, &lim, seed);
    /* the parser stands on its own, whatever length it is handed */
    check_request(buf, in.len, &lim, seed);
    return 0;
}
