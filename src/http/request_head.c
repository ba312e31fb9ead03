#include "http/request_head.h"

#include <stdbool.h>
#include <string.h>

/* A bounded cursor: every put checks the room left, and an overflow sticks. */
struct out {
    char *p;
    size_t left;
    bool overflow;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (n == 0) /* also keeps a NULL source away from memcpy */
        return;
    if (o->overflow || n > o->left) {
        o->overflow = true;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
    o->left -= n;
}

static void put_lit(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Decimal digits of v, written right-aligned into buf[20]; returns the count. */
static size_t u64_digits(uint64_t v, char buf[20])
{
    size_t n = 0;
    char tmp[20];
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

static bool kept(const struct request_head_spec *s, size_t i)
{
    return !s->drop || !s->drop[i];
}

#define LINE_END 2  /* "\r\n" */
#define FIELD_SEP 2 /* ": " */

size_t request_head_size(const struct request_head_spec *s)
{
    const struct http1_request *h = s->h;
    size_t n = h->method.len + 1 + h->target.len + strlen(" HTTP/1.1") + LINE_END;
    if (h->host.len == 0)
        n += strlen("Host") + FIELD_SEP + s->host_len + LINE_END;
    for (size_t i = 0; i < h->num_headers; i++)
        if (kept(s, i))
            n += h->headers[i].name.len + FIELD_SEP + h->headers[i].value.len + LINE_END;
    n += s->extra_len;
    if (h->framing.body == HTTP1_BODY_LENGTH) {
        char d[20];
        n += strlen("Content-Length") + FIELD_SEP + u64_digits(h->framing.content_length, d) +
             LINE_END;
    } else if (h->framing.body == HTTP1_BODY_CHUNKED) {
        n += strlen("Transfer-Encoding: chunked") + LINE_END;
    }
    if (s->upgrade)
        n += strlen("Connection: Upgrade") + LINE_END + s->upgrade->name.len + FIELD_SEP +
             s->upgrade->value.len + LINE_END;
    return n + LINE_END;
}

static void put_field(struct out *o, struct http1_str name, struct http1_str value)
{
    put(o, name.p, name.len);
    put(o, ": ", FIELD_SEP);
    put(o, value.p, value.len);
    put(o, "\r\n", LINE_END);
}

static void put_framing(struct out *o, const struct http1_framing *f)
{
    if (f->body == HTTP1_BODY_LENGTH) {
        char d[20];
        size_t nd = u64_digits(f->content_length, d);
        put_lit(o, "Content-Length: ");
        put(o, d, nd);
        put(o, "\r\n", LINE_END);
    } else if (f->body == HTTP1_BODY_CHUNKED) {
        put_lit(o, "Transfer-Encoding: chunked\r\n");
    }
}

size_t request_head_write(const struct request_head_spec *s, char *buf, size_t cap)
{
    const struct http1_request *h = s->h;
    struct out o = {buf, cap, false};
    put(&o, h->method.p, h->method.len);
    put(&o, " ", 1);
    put(&o, h->target.p, h->target.len);
    put_lit(&o, " HTTP/1.1\r\n");
    if (h->host.len == 0) { /* HTTP/1.0 without Host: the upstream's name, as signed */
        put_lit(&o, "Host: ");
        put(&o, s->host, s->host_len);
        put(&o, "\r\n", LINE_END);
    }
    for (size_t i = 0; i < h->num_headers; i++)
        if (kept(s, i))
            put_field(&o, h->headers[i].name, h->headers[i].value);
    put(&o, s->extra, s->extra_len);
    put_framing(&o, &h->framing);
    if (s->upgrade) {
        put_lit(&o, "Connection: Upgrade\r\n");
        put_field(&o, s->upgrade->name, s->upgrade->value);
    }
    put(&o, "\r\n", LINE_END);
    return o.overflow ? 0 : cap - o.left;
}
