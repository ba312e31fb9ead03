/*
 * respond: responses moat writes itself (errors, 401/403/429/503, redirects)
 * and the security headers every HTTPS response carries (HSTS, nosniff,
 * Referrer-Policy), whether moat or an upstream produced it.
 */
#ifndef MOAT_RESPOND_H
#define MOAT_RESPOND_H

#include <stdbool.h>
#include <stddef.h>

struct evbuffer;
struct config;
struct request;

/* Appends the security header lines for HTTPS responses. */
void respond_security_headers(struct evbuffer *out, const struct config *cfg);

/* The body text of a moat-made response: body, or "<status> <reason>" in text. The
 * response carries it with a trailing newline (for terminals). */
const char *respond_body(int status, const char *body, char *text, size_t cap);
/* The field lines of a moat-made response whose body is blen bytes (no status line,
 * no Connection): what every protocol sends. */
void respond_fields(struct evbuffer *out, const struct config *cfg, const struct request *r,
                    const char *extra, size_t blen);

/*
 * Appends a complete response: status line, Date-less minimal headers,
 * security headers, the request's extra response headers, `extra` lines,
 * Content-Length and the body (omitted for HEAD).
 */
void respond_write(struct evbuffer *out, const struct config *cfg, const struct request *r,
                   int status, const char *extra, const char *body, bool close, bool head_only);

#endif
