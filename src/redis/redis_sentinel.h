/*
 * redis_sentinel: internal to src/redis/; the client's sentinel mode (the
 * options and the behaviour are described in redis.h, struct
 * redis_sentinel_options).
 *
 * One struct redis_sentinel per data client. It does two things:
 * - resolve: before each connect attempt of its client, asks the sentinels in
 *   turn, starting with the one that answered last, for the master's address,
 *   then hands it to redis_connect_to() (or fails the attempt with
 *   redis_conn_fail(), which backs off and tries again);
 * - watch: one subscription to +switch-master on one sentinel (moving to the
 *   next one when it is lost); a switch of our master drops the client's
 *   connection so that it resolves again at once.
 * The sentinel connections are themselves redis_clients in single mode, so
 * they get TLS, AUTH, timeouts and the bounds on replies of every connection.
 *
 * The two parsers are pure and exposed for the unit tests: everything a
 * sentinel sends is treated as hostile.
 */
#ifndef MOAT_REDIS_SENTINEL_H
#define MOAT_REDIS_SENTINEL_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "redis/redis.h"

struct redis_client;
struct redis_sentinel;

/* Enough for any numeric IPv6 address and its NUL. */
#define REDIS_SENTINEL_HOST_MAX 46

/* Copies so; starts the subscription. NULL with err filled on failure. */
struct redis_sentinel *redis_sentinel_new(struct redis_client *owner,
                                          const struct redis_sentinel_options *so, char *err,
                                          size_t errlen);
/* Frees everything, including a query in flight. NULL is a no-op. */
void redis_sentinel_free(struct redis_sentinel *s);

/* Starts a resolution for the owner (state CONNECTING). The result comes later,
 * or at once when no sentinel can even be tried: redis_connect_to(owner, ...)
 * or redis_conn_fail(owner, ...). Either may free the owner, and with it s. */
void redis_sentinel_resolve(struct redis_sentinel *s);
/* Abandons a resolution in flight (its result is never delivered). */
void redis_sentinel_cancel(struct redis_sentinel *s);

/*
 * The reply to SENTINEL get-master-addr-by-name: exactly two bulk strings, a
 * numeric IPv4 / IPv6 address and a decimal port 1..65535. Returns 0 with host
 * (REDIS_SENTINEL_HOST_MAX bytes) and port filled, or -1 with *why set (a
 * static string; a nil reply is "master unknown to this sentinel").
 */
int redis_sentinel_parse_addr(const redisReply *r, char host[REDIS_SENTINEL_HOST_MAX],
                              uint16_t *port, const char **why);

/*
 * The payload of a +switch-master message: "<name> <old ip> <old port> <new ip>
 * <new port>". Returns 1 when it is about master `name` and the new address is
 * valid (host, port filled), 0 when it is about another master, -1 when it is
 * malformed.
 */
int redis_sentinel_parse_switch(const char *payload, size_t len, const char *name,
                                char host[REDIS_SENTINEL_HOST_MAX], uint16_t *port);

#endif
