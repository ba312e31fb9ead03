/*
 * auth_cache: a worker's cache of session decisions, keyed by sha256(token).
 *
 * Bounded: a fixed table of `size` entries in sets of 8 (a lookup scans one
 * set; an insert into a full set replaces its oldest entry), so memory never
 * grows with the number of distinct tokens an attacker sends. Positive entries
 * live for cache_ttl (never past the session's exp), negative ones for
 * negative_cache_ttl. Entries are kept a little longer than their TTL, up to
 * stale_grace, to let known sessions continue while Redis is down.
 * Only the worker thread touches its cache.
 *
 * Invalidations win over replies in flight: a lookup captures the cache's
 * epoch before asking Redis, and its reply is cached only if no invalidation
 * of its key (drop: recorded per set, so even for a key not cached yet) and no
 * clear (lost revocation connection, FLUSHALL) happened since. Otherwise a
 * session revoked while its lookup was in flight would live for cache_ttl.
 * Epochs come from one process-wide counter, so a cache created by a reload
 * refuses replies to lookups started on the one it replaced.
 */
#ifndef MOAT_AUTH_CACHE_H
#define MOAT_AUTH_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/session.h"

struct session_identity;
struct auth_cache;

struct auth_cache *auth_cache_new(size_t size);
void auth_cache_free(struct auth_cache *c);

enum auth_cache_hit { AUTH_CACHE_MISS = 0, AUTH_CACHE_FRESH, AUTH_CACHE_STALE };

/*
 * Looks a token up at now_ms (monotonic). FRESH: within its TTL. STALE: past
 * its TTL but validated at most grace_ms ago (only positive entries; usable
 * during a Redis outage). On a hit, *status and (if positive) *id are filled.
 */
enum auth_cache_hit auth_cache_get(struct auth_cache *c, const uint8_t sha[32], uint64_t now_ms,
                                   uint64_t grace_ms, enum session_status *status,
                                   struct session_identity *id);
/* The epoch to capture when a lookup starts, for auth_cache_put(). */
uint64_t auth_cache_epoch(const struct auth_cache *c);
/*
 * Stores the reply to a lookup started at epoch `since`. Refused (false, and
 * nothing changes) when the token was dropped or the cache cleared since then.
 * ttl_ms 0 stores nothing but forgets an older decision for the token.
 */
bool auth_cache_put(struct auth_cache *c, const uint8_t sha[32], enum session_status status,
                    const struct session_identity *id, uint64_t now_ms, uint64_t ttl_ms,
                    uint64_t since);
/* Drops one token (push revocation); true if it was cached. Either way, a
 * reply for it that is in flight will not be cached. */
bool auth_cache_drop(struct auth_cache *c, const uint8_t sha[32]);
/* Empties the cache; no reply in flight will be cached. */
void auth_cache_clear(struct auth_cache *c);
size_t auth_cache_count(const struct auth_cache *c);

#endif
