/*
 * Shared helpers of the libFuzzer targets: a trap that survives -DNDEBUG, a
 * deterministic PRNG seeded from the input (so a crash replays from its
 * artifact alone), and the HTTP/1 head checks the request and response
 * targets share. Header-only and static: each target is one translation unit.
 */
#ifndef MOAT_FUZZ_UTIL_H
#define MOAT_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "http/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

/* Input cursor: knobs are taken from the front, the rest is the message. */
struct fz_in {
    const uint8_t *p;
    size_t len;
};

static inline uint32_t fz_take(struct fz_in *in, size_t n)
{
    uint32_t v = 0;
    for (size_t i = 0; i < n && i < 4; i++) {
        v = v << 8 | (in->len ? *in->p : 0);
        if (in->len) {
            in->p++;
            in->len--;
        }
    }
    return v;
}

/* xorshift32; never seeded with 0 */
static inline uint32_t fz_rand(uint32_t *s)
{
    uint32_t x = *s ? *s : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* Next split point in (at, len]: small steps mostly, so splits land inside tokens. */
static inline size_t fz_next_cut(uint32_t *s, size_t at, size_t len)
{
    uint32_t r = fz_rand(s);
    size_t step = (r & 3) ? 1 + (r >> 8) % 8 : 1 + (r >> 8) % (len - at + 1);
    return at + step < len ? at + step : len;
}

/* Parser limits from a knob: mostly the allowed config range (1 KiB .. 1 MiB),
   sometimes tiny, and any header count up to the cap. */
static inline struct http1_limits fz_limits(uint32_t knob)
{
    static const size_t bytes[] = {0, 64, 256, 1024, 4096, 16384, 65536, 1048576};
    struct http1_limits lim = {
        .max_header_bytes = (knob & 8) ? 1 + (knob >> 16) % 1048576 : bytes[knob & 7],
        .max_headers = (knob >> 4) % (HTTP1_MAX_HEADERS_CAP + 1),
    };
    return lim;
}

/* ---- head scanner ------------------------------------------------------- */

/* The scanner fed whatever the split, resumed with the same state. */
static inline ssize_t fz_scan_split(const char *buf, size_t len, size_t max, uint32_t seed, int *st)
{
    struct http1_scan s = {0};
    ssize_t r = 0;
    for (size_t at = 0; r == 0 && at < len;) {
        at = fz_next_cut(&seed, at, len);
        r = http1_head_scan(&s, buf, at, max, st);
        CHECK(r <= (ssize_t)at);
    }
    if (r != 0) { /* once settled, the answer sticks */
        int st2 = 0;
        ssize_t again = http1_head_scan(&s, buf, len, max, &st2);
        CHECK(again == r && (r > 0 || st2 == *st));
    }
    return r;
}

/* Whole-buffer scan checked against a split scan; returns the head length, 0 or -1. */
static inline ssize_t fz_check_scan(const char *buf, size_t len, size_t max, uint32_t seed)
{
    int st = 0, st2 = 0;
    struct http1_scan s = {0};
    ssize_t r = http1_head_scan(&s, buf, len, max, &st);
    CHECK(r <= (ssize_t)len);
    CHECK(r >= 0 || st == 400 || st == 431);
    if (r > 0)
        CHECK(r >= 4 && memcmp(buf + r - 4, "\r\n\r\n", 4) == 0);
    if (r == 0 && len > 0) /* incomplete: the bytes so far are all acceptable */
        CHECK(len <= (max ? max : HTTP1_DEFAULT_MAX_HEADER_BYTES) + 4);
    ssize_t r2 = fz_scan_split(buf, len, max, seed, &st2);
    CHECK(r2 == r && (r >= 0 || st2 == st));
    return r;
}

/* ---- parsed heads ------------------------------------------------------- */

static inline bool fz_inside(struct http1_str s, const char *buf, size_t len)
{
    return s.len == 0 || (s.p >= buf && s.p + s.len <= buf + len);
}

static inline void fz_check_headers(const struct http1_header *h, size_t n, const char *buf,
                                    size_t len)
{
    for (size_t i = 0; i < n; i++) {
        CHECK(h[i].name.len > 0 && fz_inside(h[i].name, buf, len));
        CHECK(fz_inside(h[i].value, buf, len));
        for (size_t j = 0; j < h[i].name.len; j++) {
            unsigned char c = (unsigned char)h[i].name.p[j];
            CHECK(c > 0x20 && c < 0x7f && c != ':');
        }
        for (size_t j = 0; j < h[i].value.len; j++) {
            unsigned char c = (unsigned char)h[i].value.p[j];
            CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (h[i].value.len) {
            CHECK(h[i].value.p[0] != ' ' && h[i].value.p[0] != '\t');
            char last = h[i].value.p[h[i].value.len - 1];
            CHECK(last != ' ' && last != '\t');
        }
    }
}

/* Framing must come from the fields, never from a guess: no CL with TE. */
static inline void fz_check_framing(const struct http1_framing *f, const struct http1_header *h,
                                    size_t n)
{
    bool cl = http1_find_header(h, n, "content-length") != NULL;
    bool te = http1_find_header(h, n, "transfer-encoding") != NULL;
    CHECK(!(cl && te));
    if (f->body == HTTP1_BODY_LENGTH)
        CHECK(cl && f->content_length <= (uint64_t)INT64_MAX);
    if (f->body == HTTP1_BODY_CHUNKED)
        CHECK(te);
}

#endif
