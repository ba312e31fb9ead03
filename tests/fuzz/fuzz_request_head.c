/*
 * libFuzzer target for src/http/request_head.c: parses a request head with
 * http1_parse_request under limits taken from the input (every allowed
 * max_headers and max_header_bytes), then serializes it into a heap buffer of
 * exactly request_head_size() bytes, so AddressSanitizer sees one byte too
 * many. Checks, trapping when one breaks:
 * - the writer fills exactly the computed size, and refuses a buffer one byte
 *   short without writing;
 * - the result is a head: one request line in HTTP/1.1, ends with CRLFCRLF,
 *   and the growth over the client's head stays within what the fields can add.
 *
 * Input: 2 bytes max_headers, 3 bytes max_header_bytes, 1 byte of flags (drop
 * pattern, upgrade, host length), then the head.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "http/http1.h"
#include "http/request_head.h"

#define PREFIX 6
#define EXTRA "X-Request-ID: 0123456789abcdef0123456789abcdef\r\nX-Forwarded-Proto: https\r\n"

static struct http1_request req;

static size_t limit_headers(const uint8_t *d)
{
    return 1 + ((size_t)d[0] << 8 | d[1]) % HTTP1_MAX_HEADERS_CAP; /* 1..256 */
}

static size_t limit_bytes(const uint8_t *d)
{
    return 1024 + ((size_t)d[0] << 16 | (size_t)d[1] << 8 | d[2]) % (1048576 - 1024 + 1);
}

static void serialize(const struct request_head_spec *s, size_t head_len)
{
    size_t size = request_head_size(s);
    char *buf = malloc(size);
    CHECK(buf);
    size_t n = request_head_write(s, buf, size);
    CHECK(n == size);
    CHECK(size >= 4 && !memcmp(buf + size - 4, "\r\n\r\n", 4));
    CHECK(memchr(buf, '\n', size) != NULL);
    const char *eol = memchr(buf, '\n', size);
    CHECK(eol - buf >= 10 && !memcmp(eol - 10, " HTTP/1.1\r", 10));
    /* growth: ": " for each field (one byte at least), Host, moat's lines and framing */
    size_t bound = head_len + s->h->num_headers + 8 + s->host_len + s->extra_len + 64 +
                   (s->upgrade ? 23 + s->upgrade->name.len + s->upgrade->value.len : 0);
    CHECK(size <= bound);
    memset(buf, 0x5a, size);
    CHECK(request_head_write(s, buf, size - 1) == 0);
    CHECK((unsigned char)buf[size - 1] == 0x5a);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < PREFIX)
        return 0;
    struct http1_limits lim = {limit_bytes(data + 2), limit_headers(data)};
    uint8_t flags = data[5];
    const char *head = (const char *)data + PREFIX;
    size_t len = size - PREFIX;
    int status = 0;
    const char *err = NULL;
    if (http1_parse_request(head, len, &lim, &req, &status, &err) < 0)
        return 0;
    CHECK(req.num_headers <= lim.max_headers);
    uint8_t drop[HTTP1_MAX_HEADERS_CAP];
    for (size_t i = 0; i < req.num_headers; i++)
        drop[i] = (flags & 1) ? (uint8_t)(i % 3 == 0) : 0;
    static const char host[] = "an-upstream-name-of-some-length";
    struct request_head_spec s = {
        .h = &req,
        .drop = (flags & 2) ? drop : NULL,
        .host = host,
        .host_len = (size_t)(flags >> 3) % sizeof host,
        .extra = (flags & 4) ? EXTRA : NULL,
        .extra_len = (flags & 4) ? strlen(EXTRA) : 0,
        .upgrade = http1_find_header(req.headers, req.num_headers, "Upgrade"),
    };
    serialize(&s, len);
    return 0;
}
