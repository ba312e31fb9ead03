/*
 * redis_cluster: internal to src/redis/; the client's cluster mode (the options
 * and the behaviour are described in redis.h, struct redis_cluster_options).
 *
 * One struct redis_cluster per client in cluster mode (the owner). It holds:
 * - the slot map: for each of the 16384 slots, the master node serving it, from
 *   CLUSTER SLOTS asked of the seeds in turn (a short-lived single-mode client
 *   per question, as redis_sentinel.c asks sentinels);
 * - one single-mode redis_client per master node: AUTH, TLS, timeouts, reply
 *   bounds and reconnects are theirs;
 * - the commands in flight that may have to follow a -MOVED or -ASK: each keeps
 *   its formatted text until its final reply.
 * The owner's state is derived: CONNECTED while the map is known and at least
 * one node is connected, CONNECTING before, DOWN when no seed answers before
 * the first map or every node is down.
 *
 * The parsers are pure and exposed for the unit tests: everything a node sends
 * is treated as hostile.
 */
#ifndef MOAT_REDIS_CLUSTER_H
#define MOAT_REDIS_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "redis/redis.h"

struct redis_client;
struct redis_cluster;

#define REDIS_CLUSTER_HOST_MAX 46 /* any numeric IPv6 address and its NUL */
#define REDIS_CLUSTER_NO_NODE 0xff

/* What CLUSTER SLOTS said: the distinct masters, and each slot's master (an
 * index in nodes, or REDIS_CLUSTER_NO_NODE when no range covers it). */
struct redis_cluster_map {
    struct {
        char host[REDIS_CLUSTER_HOST_MAX];
        uint16_t port;
    } nodes[REDIS_CLUSTER_NODES_MAX];
    size_t nnodes;
    uint8_t slot_node[REDIS_CLUSTER_SLOTS];
};

/* Copies o's cluster options and what node connections need. NULL with err
 * filled on failure. Nothing is sent before redis_cluster_refresh(). */
struct redis_cluster *redis_cluster_new(struct redis_client *owner, const struct redis_options *o,
                                        char *err, size_t errlen);
/* Frees everything; commands in flight get err "shutdown". NULL is a no-op. */
void redis_cluster_free(struct redis_cluster *cl);

/* The owner is CONNECTING (first map, or after a failure without a map): asks
 * the seeds. The result comes later: the owner's state follows the nodes, or
 * redis_conn_fail(owner, ...) when no seed answered. */
void redis_cluster_refresh(struct redis_cluster *cl);

/*
 * Sends cmd (formatted, ownership taken: freed with free()) to the master of
 * key's slot, or to any connected node when key is NULL. NULL (fn never
 * called) when that node is not connected or the map has no node for the slot.
 */
struct redis_pending *redis_cluster_command(struct redis_cluster *cl, const char *key,
                                            size_t keylen, redis_reply_fn fn, void *arg, char *cmd,
                                            size_t len);

/*
 * The reply to CLUSTER SLOTS: an array of [start, end, [ip, port, ...], replicas
 * ...], with 0 <= start <= end <= 16383, ranges not overlapping, ip a numeric
 * IPv4 / IPv6 address, port 1..65535, at most REDIS_CLUSTER_NODES_MAX masters.
 * Returns 0 with m filled, or -1 with *why set (a static string).
 */
int redis_cluster_parse_slots(const redisReply *r, struct redis_cluster_map *m, const char **why);

/*
 * An error reply "MOVED <slot> <ip>:<port>" or "ASK <slot> <ip>:<port>" (IPv6:
 * the port follows the last ':'). Returns 1 with *ask, slot, host, port filled,
 * 0 when it is another error, -1 when it is a malformed redirect.
 */
int redis_cluster_parse_redirect(const char *s, size_t len, bool *ask, unsigned *slot,
                                 char host[REDIS_CLUSTER_HOST_MAX], uint16_t *port);

#endif
