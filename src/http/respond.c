#include "http/respond.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "config/config.h"
#include "http/http1.h"
#include "http/request.h"

void respond_security_headers(struct evbuffer *out, const struct config *cfg)
{
    char hsts[128];
    int n = snprintf(hsts, sizeof hsts, "Strict-Transport-Security: max-age=%llu%s%s\r\n",
                     (unsigned long long)cfg->hsts.max_age,
                     cfg->hsts.include_subdomains ? "; includeSubDomains" : "",
                     cfg->hsts.preload ? "; preload" : "");
    evbuffer_add(out, hsts, (size_t)n);
    if (cfg->identity.nosniff)
        evbuffer_add(out, "X-Content-Type-Options: nosniff\r\n", 33);
    if (cfg->identity.referrer_policy)
        evbuffer_add_printf(out, "Referrer-Policy: %s\r\n", cfg->identity.referrer_policy);
}

const char *respond_body(int status, const char *body, char *text, size_t cap)
{
    if (body)
        return body;
    snprintf(text, cap, "%d %s", status, http1_reason(status));
    return text;
}

void respond_fields(struct evbuffer *out, const struct config *cfg, const struct request *r,
                    const char *extra, size_t blen)
{
    evbuffer_add_printf(out,
                        "Server: moat\r\nContent-Type: text/plain; "
                        "charset=utf-8\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n",
                        blen);
    respond_security_headers(out, cfg);
    if (r) {
        evbuffer_add(out, r->resp_headers, r->resp_headers_len);
        evbuffer_add_printf(out, "X-Request-ID: %s\r\n", r->id);
    }
    if (extra)
        evbuffer_add(out, extra, strlen(extra));
}

void respond_write(struct evbuffer *out, const struct config *cfg, const struct request *r,
                   int status, const char *extra, const char *body, bool close, bool head_only)
{
    char text[160];
    body = respond_body(status, body, text, sizeof text);
    size_t blen = strlen(body) + 1; /* a trailing newline for terminals */
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status, http1_reason(status));
    respond_fields(out, cfg, r, extra, blen);
    if (close)
        evbuffer_add(out, "Connection: close\r\n", 19);
    evbuffer_add(out, "\r\n", 2);
    if (!head_only) {
        evbuffer_add(out, body, blen - 1);
        evbuffer_add(out, "\n", 1);
    }
}
