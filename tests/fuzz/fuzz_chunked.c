/*
 * libFuzzer target: the chunked transfer-coding decoder (http1_chunked_step).
 *
 * Input: 4 knob bytes (trailer limit, split seed), then a chunked body.
 * The body is decoded whole, at random split points and (when short) one
 * byte at a time, the way a connection feeds it. Properties checked:
 * - all three give the same result, the same payload and, when done, the
 *   same end offset: the decoder's answer never depends on how TCP split it;
 * - consumed never exceeds the input; NEED_MORE consumed everything;
 *   DATA announces at least one byte; ERROR comes with a message and sticks;
 * - a decoded body re-encoded as one chunk decodes to the same payload.
 */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_util.h"

struct dec_out {
    char *payload;
    size_t payload_len;
    size_t pos; /* first byte not yet consumed */
    int res;    /* -1 while running */
};

/* Plays the caller: input present up to `avail`; framing dropped, payload copied. */
static void dec_feed(struct http1_chunked *c, const char *in, size_t avail, struct dec_out *o)
{
    while (o->res < 0) {
        size_t cons = (size_t)-1;
        uint64_t dl = 0;
        const char *err = NULL;
        enum http1_chunk_result r =
            http1_chunked_step(c, in + o->pos, avail - o->pos, &cons, &dl, &err);
        CHECK(cons <= avail - o->pos);
        if (r == HTTP1_CHUNK_ERROR) {
            CHECK(err != NULL);
            o->pos += cons;
            o->res = r;
            /* a failed decoder stays failed */
            size_t c2;
            uint64_t d2;
            const char *e2 = NULL;
            CHECK(http1_chunked_step(c, in + o->pos, avail - o->pos, &c2, &d2, &e2) ==
                  HTTP1_CHUNK_ERROR);
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
        CHECK(r == HTTP1_CHUNK_DATA && dl > 0);
        size_t take = dl < avail - o->pos ? (size_t)dl : avail - o->pos;
        if (take == 0)
            return;
        memcpy(o->payload + o->payload_len, in + o->pos, take);
        o->payload_len += take;
        o->pos += take;
        http1_chunked_data_done(c, take);
    }
}

/* mode 0: whole input; 1: random splits; 2: one byte at a time. */
static void decode(const char *in, size_t size, int mode, size_t max_tr, uint32_t seed,
                   struct dec_out *o)
{
    struct http1_chunked c;
    memset(&c, 0, sizeof(c));
    c.max_trailer_bytes = max_tr;
    o->payload_len = o->pos = 0;
    o->res = -1;
    if (mode == 0) {
        dec_feed(&c, in, size, o);
        return;
    }
    for (size_t avail = 0; avail < size && o->res < 0;) {
        avail = mode == 2 ? avail + 1 : fz_next_cut(&seed, avail, size);
        dec_feed(&c, in, avail, o);
        CHECK(http1_chunked_state_str(&c) != NULL);
    }
}

static void same(const struct dec_out *a, const struct dec_out *b)
{
    CHECK(a->res == b->res && a->payload_len == b->payload_len);
    CHECK(memcmp(a->payload, b->payload, a->payload_len) == 0);
    if (a->res >= 0) /* DONE at the same byte; ERROR at the same offending byte */
        CHECK(a->pos == b->pos);
}

static void roundtrip(const struct dec_out *a, size_t max_tr)
{
    size_t cap = a->payload_len + 64;
    char *enc = malloc(cap);
    struct dec_out r = {.payload = malloc(a->payload_len + 1)};
    CHECK(enc && r.payload);
    int n = 0;
    if (a->payload_len)
        n = snprintf(enc, cap, "%zx\r\n", a->payload_len);
    memcpy(enc + n, a->payload, a->payload_len);
    size_t len = (size_t)n + a->payload_len;
    memcpy(enc + len, a->payload_len ? "\r\n0\r\n\r\n" : "0\r\n\r\n", a->payload_len ? 7 : 5);
    len += a->payload_len ? 7 : 5;
    decode(enc, len, 0, max_tr, 0, &r);
    CHECK(r.res == HTTP1_CHUNK_DONE && r.pos == len && r.payload_len == a->payload_len);
    CHECK(memcmp(r.payload, a->payload, a->payload_len) == 0);
    free(r.payload);
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_in in = {data, size};
    uint32_t knob = fz_take(&in, 4);
    if (in.len > (1u << 20))
        return 0;
    const char *buf = (const char *)in.p;
    size_t max_tr = (knob & 1) ? 0 : (knob >> 8) % 16384; /* 0: default 8192 */
    uint32_t seed = knob * 2654435761u;

    struct dec_out a = {.payload = malloc(in.len + 1)};
    struct dec_out b = {.payload = malloc(in.len + 1)};
    CHECK(a.payload && b.payload);
    decode(buf, in.len, 0, max_tr, seed, &a);
    CHECK(a.payload_len <= in.len && a.pos <= in.len);
    decode(buf, in.len, 1, max_tr, seed, &b);
    same(&a, &b);
    if (in.len <= 4096) {
        decode(buf, in.len, 2, max_tr, seed, &b);
        same(&a, &b);
    }
    if (a.res == HTTP1_CHUNK_DONE)
        roundtrip(&a, max_tr);
    free(a.payload);
    free(b.payload);
    return 0;
}
