#include "http/h2_head.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

int h2_head_init(struct h2_head *h)
{
    memset(h, 0, sizeof *h);
    h->lines = evbuffer_new();
    return h->lines ? 0 : -1;
}

void h2_head_clear(struct h2_head *h)
{
    if (h->lines)
        evbuffer_free(h->lines);
    if (h->cookie)
        evbuffer_free(h->cookie);
    free(h->path);
    memset(h, 0, sizeof *h);
}

static void refuse(struct h2_head *h, int status, const char *why)
{
    if (h->bad)
        return;
    h->bad = true;
    h->bad_status = status;
    h->bad_why = why;
}

static bool name_is(const uint8_t *name, size_t nlen, const char *lit)
{
    return nlen == strlen(lit) && memcmp(name, lit, nlen) == 0;
}

/* Lowercase tchars only (RFC 9113 §8.2.1): nghttp2 refuses the rest too. */
static bool valid_name(const uint8_t *p, size_t n)
{
    static const char ok[] = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz";
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!p[i] || !strchr(ok, p[i]))
            return false;
    return true;
}

/* No CR, LF, NUL or DEL, and no whitespace at either end (RFC 9113 §8.2.1): an HTTP/1.1
 * parser would trim it, and then moat and the upstream would read different values. */
static bool valid_value(const uint8_t *p, size_t n)
{
    if (n && (p[0] == ' ' || p[0] == '\t' || p[n - 1] == ' ' || p[n - 1] == '\t'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (p[i] == 0 || p[i] == '\r' || p[i] == '\n' || p[i] == 0x7f)
            return false;
    return true;
}

/* Fields with a meaning only for one HTTP/1.1 connection (RFC 9113 §8.2.2). */
static bool connection_specific(const uint8_t *n, size_t len)
{
    return name_is(n, len, "connection") || name_is(n, len, "keep-alive") ||
           name_is(n, len, "proxy-connection") || name_is(n, len, "transfer-encoding") ||
           name_is(n, len, "upgrade");
}

static void store_text(char *dst, size_t cap, const uint8_t *v, size_t n)
{
    memcpy(dst, v, n < cap ? n : cap);
    dst[n < cap ? n : cap] = 0;
}

static void pseudo_header(struct h2_head *h, const uint8_t *name, size_t nlen, const uint8_t *v,
                          size_t vlen)
{
    if (name_is(name, nlen, ":method") && !h->has_method && vlen && vlen <= H2_METHOD_MAX) {
        store_text(h->method, H2_METHOD_MAX, v, vlen);
        h->has_method = true;
    } else if (name_is(name, nlen, ":scheme") && !h->has_scheme) {
        h->has_scheme = true;
        if (!(vlen == 5 && !memcmp(v, "https", 5)))
            refuse(h, 400, "h2 :scheme is not https");
    } else if (name_is(name, nlen, ":authority") && !h->has_authority && vlen &&
               vlen <= H2_AUTHORITY_MAX) {
        store_text(h->authority, H2_AUTHORITY_MAX, v, vlen);
        h->has_authority = true;
    } else if (name_is(name, nlen, ":path") && !h->has_path && vlen && !h->path) {
        h->path = strndup((const char *)v, vlen);
        h->has_path = h->path != NULL;
        if (!h->path)
            refuse(h, 503, "out of memory");
    } else {
        refuse(h, 400, "h2 pseudo-header invalid, repeated or unknown");
    }
}

static void regular_header(struct h2_head *h, const uint8_t *name, size_t nlen, const uint8_t *v,
                           size_t vlen)
{
    if (name_is(name, nlen, "host")) {
        if (!h->has_authority && vlen && vlen <= H2_AUTHORITY_MAX) {
            store_text(h->authority, H2_AUTHORITY_MAX, v, vlen);
            h->has_authority = true;
        } else if (strlen(h->authority) != vlen || strncasecmp(h->authority, (const char *)v, vlen))
            refuse(h, 400, "h2 host disagrees with :authority");
        return;
    }
    if (name_is(name, nlen, "te")) {
        if (!(vlen == 8 && !memcmp(v, "trailers", 8)))
            refuse(h, 400, "h2 te other than trailers");
        return; /* hop-by-hop: not forwarded */
    }
    if (name_is(name, nlen, "cookie")) { /* crumbs are joined (RFC 9113 §8.2.3) */
        if (!h->cookie && !(h->cookie = evbuffer_new())) {
            refuse(h, 503, "out of memory");
            return;
        }
        if (evbuffer_get_length(h->cookie))
            evbuffer_add(h->cookie, "; ", 2);
        evbuffer_add(h->cookie, v, vlen);
        return;
    }
    if (name_is(name, nlen, "content-length")) {
        h->has_cl = true;
        h->cl_zero = vlen == 1 && v[0] == '0';
    }
    h->num_fields++;
    evbuffer_add(h->lines, name, nlen);
    evbuffer_add(h->lines, ": ", 2);
    evbuffer_add(h->lines, v, vlen);
    evbuffer_add(h->lines, "\r\n", 2);
}

void h2_head_field(struct h2_head *h, const struct h2_head_limits *lim, const uint8_t *name,
                   size_t nlen, const uint8_t *value, size_t vlen)
{
    if (h->bad)
        return;
    h->header_bytes += nlen + vlen;
    if (h->header_bytes > lim->max_header_bytes) {
        refuse(h, 431, "request header too large");
        return;
    }
    if (nlen && name[0] == ':') {
        if (h->num_fields || (h->cookie && evbuffer_get_length(h->cookie)))
            refuse(h, 400, "h2 pseudo-header after a regular one");
        else if (!valid_value(value, vlen))
            refuse(h, 400, "h2 invalid pseudo-header value");
        else
            pseudo_header(h, name, nlen, value, vlen);
        return;
    }
    if (!valid_name(name, nlen) || !valid_value(value, vlen))
        refuse(h, 400, "h2 invalid header name or value");
    else if (connection_specific(name, nlen))
        refuse(h, 400, "h2 connection-specific header");
    else if (h->num_fields >= lim->max_headers)
        refuse(h, 431, "too many headers");
    else
        regular_header(h, name, nlen, value, vlen);
}

void h2_head_finish(struct h2_head *h)
{
    if (!h->has_method || !h->has_scheme || !h->has_path)
        refuse(h, 400, "h2 request without :method, :scheme or :path");
    else if (!h->has_authority)
        refuse(h, 400, "h2 request without :authority or host");
    else if (!strcmp(h->method, "CONNECT"))
        refuse(h, 405, "CONNECT is not supported");
}

/* The HTTP/1.1 head the phases and the upstream see; 0 bytes when it does not fit. */
size_t h2_head_compose(struct h2_head *h, bool chunked, char *buf, size_t cap)
{
    size_t lines = evbuffer_get_length(h->lines);
    size_t cookie = h->cookie ? evbuffer_get_length(h->cookie) : 0;
    int n = snprintf(buf, cap, "%s %s HTTP/1.1\r\nHost: %s\r\n", h->method, h->path, h->authority);
    size_t need = (size_t)n + lines + (cookie ? cookie + 10 : 0) + 30;
    if (n < 0 || need > cap)
        return 0;
    size_t len = (size_t)n;
    evbuffer_remove(h->lines, buf + len, lines);
    len += lines;
    if (cookie) {
        memcpy(buf + len, "Cookie: ", 8);
        evbuffer_remove(h->cookie, buf + len + 8, cookie);
        memcpy(buf + len + 8 + cookie, "\r\n", 2);
        len += cookie + 10;
    }
    if (chunked) {
        memcpy(buf + len, "Transfer-Encoding: chunked\r\n", 28);
        len += 28;
    }
    memcpy(buf + len, "\r\n", 2);
    return len + 2;
}
