/*
 * redirect: the plain-HTTP listener. It never proxies anything: every request
 * is answered 308 to the same host, path and query on https:// at the
 * configured port (listen.redirect_https_port), then the connection closes.
 */
#ifndef MOAT_REDIRECT_H
#define MOAT_REDIRECT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "http/http1.h"

struct worker;

void redirect_accept(struct worker *w, int fd, const struct sockaddr *sa, int salen);

/*
 * Builds the Location for a request: "https://host[:port]/path?query".
 * Returns its length, or 0 when the Host header cannot be used (missing or
 * not a plain host name / address), which is answered 400.
 */
size_t redirect_location(struct http1_str host, struct http1_str target, uint16_t https_port,
                         char *out, size_t outlen);

#endif
