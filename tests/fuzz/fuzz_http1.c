/*
 * libFuzzer target for src/http1.c. Besides "no crash, no sanitizer report" it
 * checks the properties a proxy depends on, and traps when one breaks:
 * - the head scanner gives the same answer however the bytes are split;
 * - the request/response parsers never accept bytes the scanner refuses, and
 *   every view they return lies inside the input and is well formed;
 * - the framing they report is consistent with the fields (never CL with TE);
 * - the chunked decoder yields the same payload, result and leftover whether
 *   the input arrives whole, in two parts or one byte at a time.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

static struct http1_request req;
static struct http1_response resp;

/* ---- head scanner ----------------------------------------------------------- */

static ssize_t scan_split(const char *buf, size_t size, size_t max, size_t cut, int *st)
{
    struct http1_scan s = {0};
    ssize_t r = http1_head_scan(&s, buf, cut, max, st);
    if (r == 0)
        r = http1_head_scan(&s, buf, size, max, st);
    return r;
}

static ssize_t scan_bytewise(const char *buf, size_t size, size_t max, int *st)
{
    struct http1_scan s = {0};
    ssize_t r = 0;
    for (size_t i = 0; i <= size && r == 0; i++)
        r = http1_head_scan(&s, buf, i, max, st);
    return r;
}

static ssize_t check_scan(const char *buf, size_t size, size_t max, size_t cut)
{
    int st = 0, st2 = 0;
    struct http1_scan s = {0};
    ssize_t r = http1_head_scan(&s, buf, size, max, &st);
    CHECK(r <= (ssize_t)size);
    CHECK(r >= 0 || st == 400 || st == 431);
    if (r > 0)
        CHECK(r >= 4 && memcmp(buf + r - 4, "\r\n\r\n", 4) == 0);
    ssize_t r2 = scan_split(buf, size, max, cut, &st2);
    CHECK(r2 == r && (r >= 0 || st2 == st));
    if (size <= 2048) {
        r2 = scan_bytewise(buf, size, max, &st2);
        CHECK(r2 == r && (r >= 0 || st2 == st));
    }
    return r;
}

/* ---- head parsers -------------------------------------------------------------- */

static bool inside(struct http1_str s, const char *buf, size_t len)
{
    return s.len == 0 || (s.p >= buf && s.p + s.len <= buf + len);
}

static void check_headers(const struct http1_header *h, size_t n, const char *buf, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        CHECK(h[i].name.len > 0 && inside(h[i].name, buf, len) && inside(h[i].value, buf, len));
        CHECK(memchr(h[i].name.p, ':', h[i].name.len) == NULL);
        for (size_t j = 0; j < h[i].value.len; j++) {
            unsigned char c = (unsigned char)h[i].value.p[j];
            CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (h[i].value.len) {
            CHECK(h[i].value.p[0] != ' ' && h[i].value.p[0] != '\t');
            CHECK(h[i].value.p[h[i].value.len - 1] != ' ');
        }
    }
}

static void check_framing(const struct http1_framing *f, const struct http1_header *h, size_t n)
{
    bool cl = http1_find_header(h, n, "content-length") != NULL;
    bool te = http1_find_header(h, n, "transfer-encoding") != NULL;
    CHECK(!(cl && te));
    if (f->body == HTTP1_BODY_LENGTH)
        CHECK(cl && f->content_length <= (uint64_t)INT64_MAX);
    if (f->body == HTTP1_BODY_CHUNKED)
        CHECK(te);
}

static void check_request(const char *buf, size_t len, const struct http1_limits *lim)
{
    int st = 0;
    const char *err = NULL;
    if (http1_parse_request(buf, len, lim, &req, &st, &err) != 0) {
        CHECK(err != NULL && st >= 400 && st <= 505);
        return;
    }
    /* whatever the parser accepts, the scanner accepts as exactly one head */
    CHECK(check_scan(buf, len, lim->max_header_bytes, len / 2) == (ssize_t)len);
    CHECK(req.minor_version == 0 || req.minor_version == 1);
    CHECK(req.method.len > 0 && req.target.len > 0 && inside(req.target, buf, len));
    CHECK(inside(req.path, buf, len) && inside(req.query, buf, len) && inside(req.host, buf, len));
    CHECK(req.minor_version == 0 || req.host.len > 0);
    CHECK(req.num_headers <= lim->max_headers);
    for (size_t i = 0; i < req.target.len; i++)
        CHECK(req.target.p[i] > 0x20 && req.target.p[i] < 0x7f);
    check_headers(req.headers, req.num_headers, buf, len);
    check_framing(&req.framing, req.headers, req.num_headers);
    CHECK(req.framing.body != HTTP1_BODY_UNTIL_CLOSE);
    CHECK(req.framing.body != HTTP1_BODY_CHUNKED || req.minor_version == 1);
}

static void check_response(const char *buf, size_t len, const struct http1_limits *lim,
                           enum http1_method m)
{
    const char *err = NULL;
    if (http1_parse_response(buf, len, lim, m, &resp, &err) != 0) {
        CHECK(err != NULL);
        return;
    }
    CHECK(check_scan(buf, len, lim->max_header_bytes, len / 3) == (ssize_t)len);
    CHECK(resp.status >= 100 && resp.status <= 999);
    CHECK(inside(resp.reason, buf, len));
    check_headers(resp.headers, resp.num_headers, buf, len);
    check_framing(&resp.framing, resp.headers, resp.num_headers);
    if (resp.framing.body == HTTP1_BODY_UNTIL_CLOSE)
        CHECK(!resp.framing.keep_alive);
}

/* ---- chunked decoder --------------------------------------------------------- */

struct dec_out {
    char *payload;
    size_t payload_len;
    size_t pos; /* first byte not yet consumed */
    int res;    /* -1 while running */
};

/* Plays the caller: input arrives up to `avail`; framing is dropped, payload copied. */
static void dec_feed(struct http1_chunked *c, const char *in, size_t avail, struct dec_out *o)
{
    while (o->res < 0) {
        size_t cons;
        uint64_t dl;
        const char *err;
        enum http1_chunk_result r =
            http1_chunked_step(c, in + o->pos, avail - o->pos, &cons, &dl, &err);
        CHECK(cons <= avail - o->pos);
        if (r == HTTP1_CHUNK_ERROR) {
            CHECK(err != NULL);
            o->res = r;
            return;
        }
        o->pos += cons;
        if (r == HTTP1_CHUNK_NEED_MORE) {
            CHECK(o->pos == avail);
            return;
        }
        if (r == HTTP1_CHUNK_DONE) {
            o->res = r;
            return;
        }
        CHECK(dl > 0);
        size_t take = dl < avail - o->pos ? (size_t)dl : avail - o->pos;
        if (take == 0)
            return;
        memcpy(o->payload + o->payload_len, in + o->pos, take);
        o->payload_len += take;
        o->pos += take;
        http1_chunked_data_done(c, take);
    }
}

/* step 0: whole input; otherwise pieces of `step` bytes. */
static void decode(const char *in, size_t size, size_t step, size_t max_tr, struct dec_out *o)
{
    struct http1_chunked c;
    memset(&c, 0, sizeof(c));
    c.max_trailer_bytes = max_tr;
    o->payload_len = o->pos = 0;
    o->res = -1;
    if (step == 0) {
        dec_feed(&c, in, size, o);
        return;
    }
    for (size_t avail = step < size ? step : size;; avail += step) {
        if (avail > size)
            avail = size;
        dec_feed(&c, in, avail, o);
        if (avail == size || o->res >= 0)
            break;
    }
}

static void check_chunked(const char *in, size_t size, size_t max_tr, size_t step)
{
    struct dec_out a, b;
    a.payload = malloc(size + 1);
    b.payload = malloc(size + 1);
    CHECK(a.payload && b.payload);
    decode(in, size, 0, max_tr, &a);
    decode(in, size, step, max_tr, &b);
    CHECK(a.res == b.res && a.payload_len == b.payload_len);
    CHECK(memcmp(a.payload, b.payload, a.payload_len) == 0);
    if (a.res == HTTP1_CHUNK_DONE)
        CHECK(a.pos == b.pos);
    free(a.payload);
    free(b.payload);
}

/* ---- entry ------------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    /* the first byte picks limits and split points, the rest is the message */
    uint8_t knob = data[0];
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;
    struct http1_limits lim = {
        .max_header_bytes = (knob & 1) ? 16384 : 256,
        .max_headers = (knob & 2) ? 100 : 4,
    };
    enum http1_method m = (enum http1_method)((knob >> 4) % (HTTP1_M_TRACE + 1));

    ssize_t head = check_scan(buf, len, lim.max_header_bytes, knob % (len + 1));
    if (head > 0) {
        check_request(buf, (size_t)head, &lim);
        check_response(buf, (size_t)head, &lim, m);
        check_chunked(buf + head, len - (size_t)head, (knob & 4) ? 0 : 32, 1);
    }
    /* the parsers stand on their own, whatever length they are handed */
    check_request(buf, len, &lim);
    check_response(buf, len, &lim, m);
    check_chunked(buf, len, (knob & 4) ? 0 : 32, 1 + (knob >> 3));
    if (len <= 4096)
        check_chunked(buf, len, (knob & 4) ? 0 : 32, 1);
    return 0;
}
