#include "policy/revocation.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/auth_cache.h"
#include "observe/log.h"
#include "redis/redis.h"
#include "core/services.h"

#define PING_MS 1000

/* One tracked connection: the connection in single or sentinel mode, each
 * master's in cluster mode (keys are tracked by the node that holds them). */
struct rv_conn {
    struct revocation *rv;
    const struct redis_client *c; /* cluster mode: the node's client; NULL: slot free */
    bool tracking;                /* CLIENT TRACKING accepted on the current connection */
    bool live;                    /* ... and subscribed: every write reaches us */
};

struct revocation {
    struct services *svc; /* the worker's: its cache, event loop and id */
    struct redis_client *rc;
    char *prefix;
    bool cluster;
    struct rv_conn one;                            /* single / sentinel mode */
    struct rv_conn nodes[REDIS_CLUSTER_NODES_MAX]; /* cluster mode: one per master */
};

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Drops the cache entry of one invalidated key "<prefix><64 hex>". */
static void drop_key(struct revocation *rv, const char *key, size_t len)
{
    size_t plen = strlen(rv->prefix);
    if (len != plen + 64 || memcmp(key, rv->prefix, plen) != 0)
        return;
    uint8_t sha[32];
    for (int i = 0; i < 32; i++) {
        int hi = hexval(key[plen + 2 * i]), lo = hexval(key[plen + 2 * i + 1]);
        if (hi < 0 || lo < 0)
            return;
        sha[i] = (uint8_t)(hi * 16 + lo);
    }
    if (rv->svc->auth_cache)
        auth_cache_drop(rv->svc->auth_cache, sha);
}

/* ["message", "__redis__:invalidate", [keys...] or nil (flush)] */
static void on_push(redisReply *msg, void *arg)
{
    struct revocation *rv = arg;
    if (msg->type != REDIS_REPLY_ARRAY || msg->elements != 3)
        return;
    redisReply *keys = msg->element[2];
    if (keys->type == REDIS_REPLY_NIL) { /* FLUSHALL / FLUSHDB */
        if (rv->svc->auth_cache)
            auth_cache_clear(rv->svc->auth_cache);
        return;
    }
    if (keys->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < keys->elements; i++)
        if (keys->element[i]->type == REDIS_REPLY_STRING)
            drop_key(rv, keys->element[i]->str, keys->element[i]->len);
}

static void on_tracking_reply(redisReply *reply, const char *err, void *arg)
{
    struct rv_conn *rc = arg;
    struct revocation *rv = rc->rv;
    services_noperm_note(rv->svc, SVC_NOPERM_TRACKING, err ? NULL : reply); /* for /readyz */
    if (err || !reply || reply->type == REDIS_REPLY_ERROR) {
        log_msg(LOG_ERROR,
                "worker %d: revocation: CLIENT TRACKING refused: %s; session cache bypassed",
                rv->svc->worker_id,
                err     ? err
                : reply ? reply->str
                        : "?");
        return;
    }
    rc->tracking = true;
}

static void on_subscribed(redisReply *reply, const char *err, void *arg)
{
    struct rv_conn *rc = arg;
    struct revocation *rv = rc->rv;
    services_noperm_note(rv->svc, SVC_NOPERM_SUBSCRIBE, err ? NULL : reply); /* for /readyz */
    if (err || !reply || reply->type == REDIS_REPLY_ERROR)
        return;
    /* Subscribed without tracking, nothing would ever be invalidated: the
     * cache must stay bypassed (the replies arrive in order: tracking first). */
    if (!rc->tracking)
        return;
    /* Decisions cached while the channel was not live may have been revoked
     * unseen in the meantime. */
    if (rv->svc->auth_cache)
        auth_cache_clear(rv->svc->auth_cache);
    rc->live = true; /* from now on every write to a session key reaches us */
}

/* Cluster mode: the entry of a node's connection, added when add (NULL: full). */
static struct rv_conn *node_conn(struct revocation *rv, const struct redis_client *c, bool add)
{
    struct rv_conn *free_slot = NULL;
    for (size_t i = 0; i < sizeof(rv->nodes) / sizeof(rv->nodes[0]); i++) {
        if (rv->nodes[i].c == c)
            return &rv->nodes[i];
        if (!rv->nodes[i].c && !free_slot)
            free_slot = &rv->nodes[i];
    }
    if (add && free_slot)
        free_slot->c = c;
    return add ? free_slot : NULL;
}

/* In cluster mode it runs on each master's connection. */
static void on_connect(struct redis_client *c, void *arg)
{
    struct revocation *rv = arg;
    struct rv_conn *rc = rv->cluster ? node_conn(rv, c, true) : &rv->one;
    if (!rc) /* no entry: this node never counts as live, the cache stays bypassed */
        return;
    rc->tracking = false;
    rc->live = false;
    if (redis_client_id(c) <= 0) { /* REDIRECT needs our id (CLIENT ID refused by an ACL?) */
        log_msg(LOG_ERROR,
                "worker %d: revocation: CLIENT ID unknown, cannot track; session cache bypassed",
                rv->svc->worker_id);
        return;
    }
    char id[32];
    snprintf(id, sizeof id, "%lld", redis_client_id(c));
    const char *argv[] = {"CLIENT", "TRACKING", "ON",     "REDIRECT",
                          id,       "BCAST",    "PREFIX", rv->prefix};
    size_t lens[8];
    for (int i = 0; i < 8; i++)
        lens[i] = strlen(argv[i]);
    redis_command_argv(c, on_tracking_reply, rc, 8, argv, lens);
    redis_command(c, on_subscribed, rc, "SUBSCRIBE __redis__:invalidate");
}

static void conn_lost(struct revocation *rv, struct rv_conn *rc)
{
    if (rc->live)
        log_msg(LOG_WARN, "worker %d: revocation channel lost; session cache bypassed until back",
                rv->svc->worker_id);
    rc->live = false;
    rc->tracking = false;
    if (rv->svc->auth_cache) /* invalidations may have been missed */
        auth_cache_clear(rv->svc->auth_cache);
}

static void on_state(enum redis_state st, void *arg)
{
    struct revocation *rv = arg;
    if (st == REDIS_STATE_CONNECTED)
        return;
    conn_lost(rv, &rv->one); /* cluster mode: every node is down or the map is unknown */
}

/* Cluster mode: a master's connection is not usable any more (or left the map). */
static void on_node(const struct redis_client *node, enum redis_state st, void *arg)
{
    struct revocation *rv = arg;
    struct rv_conn *rc;
    if (st == REDIS_STATE_CONNECTED || !(rc = node_conn(rv, node, false)))
        return;
    conn_lost(rv, rc);
    rc->c = NULL;
}

static bool node_live(const struct redis_client *node, void *arg)
{
    struct rv_conn *rc = node_conn(arg, node, false);
    return rc && rc->live;
}

struct revocation *revocation_start(struct services *svc, const struct redis_options *o,
                                    const char *key_prefix, char *err, unsigned long errlen)
{
    struct revocation *rv = calloc(1, sizeof *rv);
    if (!rv)
        return NULL;
    rv->svc = svc;
    rv->one.rv = rv;
    for (size_t i = 0; i < sizeof(rv->nodes) / sizeof(rv->nodes[0]); i++)
        rv->nodes[i].rv = rv;
    rv->cluster = o->cluster != NULL;
    rv->prefix = strdup(key_prefix);
    struct redis_options opt = *o;
    opt.ping_interval_ms = PING_MS; /* notice a dead peer on an otherwise silent connection */
    opt.client_name = "moat-revocation";
    rv->rc = rv->prefix ? redis_client_new(svc->base, &opt, err, errlen) : NULL;
    if (!rv->rc) {
        revocation_stop(rv);
        return NULL;
    }
    redis_client_on_connect(rv->rc, on_connect, rv);
    redis_client_on_state(rv->rc, on_state, rv);
    redis_client_on_push(rv->rc, on_push, rv);
    if (rv->cluster)
        redis_client_on_cluster_node(rv->rc, on_node, rv);
    return rv;
}

void revocation_stop(struct revocation *rv)
{
    if (!rv)
        return;
    redis_client_free(rv->rc);
    free(rv->prefix);
    free(rv);
}

bool revocation_live(const struct revocation *rv)
{
    if (!rv)
        return false;
    if (rv->cluster) /* every master's connection tracks its keys */
        return redis_cluster_all_nodes(rv->rc, node_live, (void *)rv);
    return rv->one.live;
}
