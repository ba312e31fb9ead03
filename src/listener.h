/*
 * listener: opens listening sockets. Every worker gets its own socket on each
 * address (SO_REUSEPORT), so the kernel spreads connections across workers
 * without a shared accept lock. Opened on the main thread so that a port in
 * use is reported before anything starts.
 */
#ifndef MOAT_LISTENER_H
#define MOAT_LISTENER_H

#include <stddef.h>

struct config_addr;

/* Returns a bound, listening, non-blocking socket or -1 with err. */
int listener_open(const struct config_addr *addr, char *err, size_t errlen);

#endif
