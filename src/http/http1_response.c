#include "http/http1_response.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "http/request.h"
#include "util/evbuf.h"

/*
 * The framing towards the client. HTTP/1.1: a close-delimited upstream body is
 * re-chunked, which keeps the client connection reusable. HTTP/1.0 clients never
 * get chunked (RFC 9112 §6.1): a chunked upstream body is decoded and ends with
 * the connection, and codings other than chunked cannot be announced at all.
 */
static bool choose_framing(struct request *r, const struct response_head *h, bool ending)
{
    r->resp_out = h->body;
    if (r->h.minor_version == 0) {
        if (h->body != HTTP1_BODY_NONE && h->codings.len)
            return false;
        if (h->body == HTTP1_BODY_CHUNKED)
            r->resp_out = HTTP1_BODY_UNTIL_CLOSE;
    } else if (h->body == HTTP1_BODY_UNTIL_CLOSE) {
        r->resp_out = HTTP1_BODY_CHUNKED;
    }
    if (r->resp_out == HTTP1_BODY_UNTIL_CLOSE || ending || !r->h.framing.keep_alive)
        r->close_after = true;
    return true;
}

/* Decimal digits of v at p (at most 20); how many. Per response, where
 * evbuffer_add_printf() was 1.2 % of a small keep-alive request's CPU. */
static size_t put_dec(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

#define STATUS_LINE_MAX 256

bool http1_response_begin(struct request *r, struct evbuffer *out, const struct response_head *h,
                          bool ending)
{
    if (!choose_framing(r, h, ending))
        return false;
    if (h->body == HTTP1_BODY_LENGTH && h->content_length <= EVBUF_COALESCE_MAX)
        evbuffer_expand(out, 2048 + h->content_length); /* head and body in one chain */
    const char *reason = h->reason.len ? h->reason.p : http1_reason(h->status);
    size_t rlen = h->reason.len ? h->reason.len : strlen(reason);
    char line[STATUS_LINE_MAX];
    if (h->status < 0 || rlen > sizeof line - 32) { /* a long reason from an upstream */
        evbuffer_add_printf(out, "HTTP/1.1 %d %.*s\r\n", h->status, (int)rlen, reason);
        return true;
    }
    memcpy(line, "HTTP/1.1 ", 9);
    size_t k = 9 + put_dec(line + 9, (uint64_t)h->status);
    line[k++] = ' ';
    memcpy(line + k, reason, rlen);
    k += rlen;
    memcpy(line + k, "\r\n", 2);
    evbuffer_add(out, line, k + 2);
    return true;
}

void http1_response_end(struct request *r, struct evbuffer *out, const struct response_head *h)
{
    if (r->resp_out == HTTP1_BODY_LENGTH) {
        char line[16 + 20 + 2] = "Content-Length: ";
        size_t k = 16 + put_dec(line + 16, h->content_length);
        memcpy(line + k, "\r\n", 2);
        evbuffer_add(out, line, k + 2);
    } else if (r->resp_out == HTTP1_BODY_CHUNKED && h->codings.len)
        evbuffer_add_printf(out, "Transfer-Encoding: %.*s, chunked\r\n", (int)h->codings.len,
                            h->codings.p);
    else if (r->resp_out == HTTP1_BODY_CHUNKED)
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    if (h->status == 101) {
        evbuffer_add(out, "Connection: Upgrade\r\n", 21);
        if (h->upgrade.len)
            evbuffer_add_printf(out, "Upgrade: %.*s\r\n", (int)h->upgrade.len, h->upgrade.p);
    } else if (r->close_after) {
        evbuffer_add(out, "Connection: close\r\n", 19);
    } else if (r->h.minor_version == 0) {
        evbuffer_add(out, "Connection: keep-alive\r\n", 24);
    }
    evbuffer_add(out, "\r\n", 2);
}

size_t http1_response_body(struct request *r, struct evbuffer *out, struct evbuffer *src, size_t n)
{
    if (n == 0)
        return 0;
    if (r->resp_out != HTTP1_BODY_CHUNKED) {
        evbuf_move(src, out, n);
        return n;
    }
    char size[24];
    int k = snprintf(size, sizeof size, "%zx\r\n", n);
    evbuffer_add(out, size, (size_t)k);
    evbuf_move(src, out, n);
    evbuffer_add(out, "\r\n", 2);
    return (size_t)k + n + 2;
}

size_t http1_response_body_end(struct request *r, struct evbuffer *out)
{
    if (r->resp_out != HTTP1_BODY_CHUNKED)
        return 0;
    evbuffer_add(out, "0\r\n\r\n", 5);
    return 5;
}
