/*
 * revocation: push invalidation of cached session decisions.
 *
 * Uses Redis client-side caching in broadcasting mode (Redis >= 6, RESP2):
 * a dedicated connection per worker runs
 *   CLIENT TRACKING ON REDIRECT <its own id> BCAST PREFIX <sessions.key_prefix>
 *   SUBSCRIBE __redis__:invalidate
 * so Redis publishes the name of every session key that is written, deleted
 * or expires, and the worker drops that token from its cache within
 * milliseconds. No Redis server configuration is needed; an ACL user needs
 * +client|tracking, +client|id, +subscribe and the &__redis__:invalidate
 * channel. While this connection is down the worker's cache cannot be trusted:
 * it is emptied and bypassed until the connection is back. In cluster mode the
 * same runs on every master's connection (keys are tracked by the node holding
 * them), and the cache is trusted only while every master of the map is tracked.
 */
#ifndef MOAT_REVOCATION_H
#define MOAT_REVOCATION_H

#include <stdbool.h>

struct services;
struct revocation;
struct redis_options;

/*
 * Starts the channel for the worker whose services svc are (it runs on
 * svc->base and drops entries from svc->auth_cache, read at each event).
 */
struct revocation *revocation_start(struct services *svc, const struct redis_options *o,
                                    const char *key_prefix, char *err, unsigned long errlen);
void revocation_stop(struct revocation *rv);
/* True while invalidations are flowing (the cache may be used). */
bool revocation_live(const struct revocation *rv);

#endif
