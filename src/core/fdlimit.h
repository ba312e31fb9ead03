/*
 * fdlimit: the process's file descriptor budget (RLIMIT_NOFILE). Every client
 * connection costs a descriptor and usually a second one upstream; a default soft
 * limit of 1024 would make moat refuse service long before limits.max_connections.
 * At start (and on reload) the soft limit is raised to what the configuration
 * needs, up to the hard limit, and a hard limit that is too low is reported.
 */
#ifndef MOAT_FDLIMIT_H
#define MOAT_FDLIMIT_H

#include <stdint.h>

struct config;

/* Descriptors the configuration needs at most; 0 when unbounded (no max_connections). */
uint64_t fdlimit_need(const struct config *cfg);

/* Raises the soft limit towards fdlimit_need() (all of the hard limit when unbounded)
 * and logs the outcome. Never lowers it. */
void fdlimit_apply(const struct config *cfg);

#endif
