/*
 * libFuzzer target: the HTTP/1.1 response head from an upstream.
 *
 * Input: 4 knob bytes (limits, split seed), then what the upstream sends.
 * The scanner is fed at random split points (same answer as whole), and the
 * head is parsed as the answer to every request method. Properties checked
 * besides "no sanitizer report":
 * - the parser never accepts what the scanner refuses; views lie inside;
 * - no CL with TE; a close-delimited body is never keep-alive;
 * - HEAD answers, 1xx, 204, 304 and 2xx to CONNECT have no body;
 * - the method only changes the body framing, never whether the head parses.
 */
#include <stdlib.h>

#include "fuzz_util.h"

static struct http1_response resp;

/* Returns 0 if parsed, -1 if refused. */
static int check_response(const char *buf, size_t len, const struct http1_limits *lim,
                          enum http1_method m, uint32_t seed)
{
    const char *err = NULL;
    if (http1_parse_response(buf, len, lim, m, &resp, &err) != 0) {
        CHECK(err != NULL);
        return -1;
    }
    size_t max_headers = lim->max_headers ? lim->max_headers : HTTP1_DEFAULT_MAX_HEADERS;
    CHECK(fz_check_scan(buf, len, lim->max_header_bytes, seed) == (ssize_t)len);
    CHECK(resp.status >= 100 && resp.status <= 999);
    CHECK(resp.minor_version == 0 || resp.minor_version == 1);
    CHECK(fz_inside(resp.reason, buf, len));
    CHECK(resp.num_headers <= max_headers);
    fz_check_headers(resp.headers, resp.num_headers, buf, len);
    fz_check_framing(&resp.framing, resp.headers, resp.num_headers);
    if (resp.framing.body == HTTP1_BODY_UNTIL_CLOSE)
        CHECK(!resp.framing.keep_alive);
    bool bodyless = m == HTTP1_M_HEAD || resp.status < 200 || resp.status == 204 ||
                    resp.status == 304 || (m == HTTP1_M_CONNECT && resp.status < 300);
    if (bodyless)
        CHECK(resp.framing.body == HTTP1_BODY_NONE);
    return 0;
}

static void check_all_methods(const char *buf, size_t len, const struct http1_limits *lim,
                              uint32_t seed)
{
    int first = check_response(buf, len, lim, HTTP1_M_OTHER, seed);
    for (int m = HTTP1_M_GET; m <= HTTP1_M_TRACE; m++)
        CHECK(check_response(buf, len, lim, (enum http1_method)m, seed) == first);
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
        check_all_methods(buf, (size_t)head, &lim, seed);
    check_all_methods(buf, in.len, &lim, seed);
    return 0;
}
