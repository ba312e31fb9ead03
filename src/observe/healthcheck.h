/*
 * healthcheck: `moat --healthcheck -c FILE`, the client side of /readyz for a
 * container HEALTHCHECK or an orchestrator's exec probe (the image has no curl).
 * Reads the configuration for listen.admin, sends GET /readyz there and waits at
 * most HEALTHCHECK_TIMEOUT_MS in all. Prints one line: "ready" on stdout, or the
 * reason on stderr (the body of a 503, or why no answer came).
 */
#ifndef MOAT_HEALTHCHECK_H
#define MOAT_HEALTHCHECK_H

/* For the whole probe: connect, request and answer. */
#define HEALTHCHECK_TIMEOUT_MS 2000

/* The exit status: 0 when /readyz answered 200, 1 otherwise (not ready, no admin
 * listener, no answer, an unreadable configuration). */
int healthcheck_run(const char *config_path);

#endif
