/*
 * redis: an asynchronous Redis client, one per worker thread, on that worker's
 * event_base.
 *
 * hiredis 0.14 (Debian 12) has no TLS, so hiredis is used only for the RESP
 * protocol (redisReader to parse replies, redisFormatCommand* to build
 * commands); the transport is a libevent bufferevent, plain or OpenSSL, so TCP,
 * unix sockets and TLS share one code path.
 *
 * Contract, in short:
 * - Fail fast. While the client is not CONNECTED (DOWN: circuit open, or
 *   CONNECTING: handshake under way), redis_command*() return NULL at once and
 *   the callback is NOT called. Callers fail closed without waiting.
 * - Pipelining: any number of commands (up to max_inflight) are in flight on
 *   one connection; replies are matched to commands in order.
 * - Every queued command gets exactly one callback, unless cancelled:
 *   a reply (err NULL; the reply may be a Redis error reply, REDIS_REPLY_ERROR),
 *   or err "timeout", "connection lost", "protocol error", "shutdown".
 *   The callback is never called from inside redis_command*().
 *   The reply is freed by the client after the callback returns.
 * - A timeout of the oldest in-flight command, a lost connection or a protocol
 *   error fails ALL in-flight commands, drops the connection (a reply stream
 *   out of sync cannot be trusted) and reconnects with capped exponential
 *   backoff with jitter; the backoff resets after a successful handshake.
 * - Handshake on every connect: (TLS), AUTH [user] password, SELECT db,
 *   CLIENT SETNAME, CLIENT ID, then the on_connect hook, then CONNECTED.
 *   AUTH or SELECT failure keeps the client from CONNECTED (DOWN, retried:
 *   CONNECTING -> DOWN; bad credentials retry at backoff_max) with a clear
 *   last_error such as "AUTH failed: WRONGPASS ...". The password is never
 *   put in an error; its stack copy is wiped after use (the copy libevent holds
 *   in the output buffer until it is sent is not).
 * - Everything the server sends is treated as hostile: replies are bounded in
 *   size (max_reply_bytes) and element count, nesting is bounded by hiredis
 *   (7 levels), and any protocol error drops the connection.
 * - The client may be freed from inside any of its callbacks; the memory is
 *   released when the callback returns.
 *
 * Not thread-safe: every call must be made from the thread running `base`.
 * The process must ignore SIGPIPE (writes to a dead peer would raise it).
 * Hostnames are resolved with a blocking getaddrinfo() at each connect attempt;
 * numeric addresses (the normal case) never block. When a name has several
 * addresses, one is tried per attempt, moving on after each failed attempt.
 */
#ifndef MOAT_REDIS_H
#define MOAT_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

struct event_base;

#define REDIS_SENTINEL_MAX 16

/*
 * Sentinel mode (redis_sentinel.c): the master's address is asked of the
 * sentinels before every connect attempt (SENTINEL get-master-addr-by-name, the
 * sentinel that answered last first, each within connect_timeout_ms), checked
 * with ROLE during the handshake (a replica is dropped and the address asked
 * again), and asked again after every drop: lost connection, timeout, protocol
 * error, a -READONLY error reply, or a +switch-master for master_name published
 * by a sentinel (each client keeps one subscription). The sentinels' reply must
 * be a numeric IPv4 / IPv6 address and a port: hostnames are refused.
 */
struct redis_sentinel_options {
    struct {
        const char *host; /* numeric or hostname (blocking resolve, as for host below) */
        uint16_t port;
    } addrs[REDIS_SENTINEL_MAX];
    size_t count; /* 1..REDIS_SENTINEL_MAX */
    const char *master_name;
    const char *username; /* sentinel ACL user, or NULL */
    const char *password_file;
    const char *password_env;
    bool tls; /* the tls_* fields below as in struct redis_options */
    const char *tls_ca;
    const char *tls_server_name; /* NULL: each sentinel's host */
    bool tls_verify;
    const char *tls_cert;
    const char *tls_key;
};

#define REDIS_CLUSTER_SEEDS_MAX 16
#define REDIS_CLUSTER_NODES_MAX 64 /* masters one client talks to; more: refused */
#define REDIS_CLUSTER_SLOTS 16384

/*
 * Cluster mode (redis_cluster.c): the slot map is asked of the seeds in turn
 * (CLUSTER SLOTS, the seed that answered last first) when the client starts and
 * again after a -MOVED, a lost or timed-out node connection, or a failed refresh.
 * One single-mode connection per master node (AUTH, TLS, timeouts and reply
 * bounds as the data connection's), at most REDIS_CLUSTER_NODES_MAX. Commands
 * sent with redis_command_key() go to the master of the key's slot; -MOVED
 * updates that slot and resends (at most max_redirects times in all), -ASK sends
 * ASKING and the command once to the node named without touching the map.
 * -CLUSTERDOWN / -TRYAGAIN and every other error reply reach the callback as
 * they are. The client is CONNECTED while the map is known and at least one
 * node connection is up; a command whose node is not connected fails fast (NULL).
 * The on_connect hook and redis_client_id() are not used (0) in this mode, and
 * SUBSCRIBE is not supported. Node addresses must be numeric IPs.
 */
struct redis_cluster_options {
    struct {
        const char *host; /* numeric or hostname (blocking resolve) */
        uint16_t port;
    } seeds[REDIS_CLUSTER_SEEDS_MAX];
    size_t count;           /* 1..REDIS_CLUSTER_SEEDS_MAX */
    unsigned max_redirects; /* MOVED / ASK followed per command; 0: 3 */
};

struct redis_options {
    /* With sentinel or cluster set, host / port / unix_path stay unset: the data
     * address comes from the sentinels, or the cluster's slot map. */
    const struct redis_sentinel_options *sentinel;
    const struct redis_cluster_options *cluster;
    const char *host; /* numeric address or hostname, with port; or: */
    uint16_t port;
    const char *unix_path;     /* unix socket path (exactly one of host / unix_path) */
    const char *username;      /* ACL user, or NULL for the default user */
    const char *password_file; /* read at each connect; trailing newline stripped; never logged */
    const char *password_env;  /* alternative: name of an environment variable */
    bool tls;
    const char *tls_ca;          /* PEM CA bundle; NULL: system default store */
    const char *tls_server_name; /* SNI + name verified; NULL: host */
    bool tls_verify;             /* verify the chain and the name; false is for tests only */
    const char *tls_cert;        /* optional client certificate chain (PEM) */
    const char *tls_key;         /* its private key (PEM) */
    uint64_t timeout_ms;         /* per command; 0: 1000 */
    uint64_t connect_timeout_ms; /* connect + TLS + handshake; 0: 2000 */
    uint64_t backoff_min_ms;     /* reconnect backoff; 0: 50 */
    uint64_t backoff_max_ms;     /* 0: 2000 */
    int database;                /* SELECT if non-zero */
    const char *client_name;     /* CLIENT SETNAME, or NULL */
    /* Extensions (0 = default): */
    size_t max_inflight;       /* commands in flight; beyond: NULL; 0: 10000 */
    size_t max_reply_bytes;    /* one reply, bytes of payload + unparsed input; 0: 16 MiB */
    uint64_t ping_interval_ms; /* PING an idle connection this often, so a dead peer is
                                  noticed (subscriber / tracking connections); 0: off */
};

enum redis_state { REDIS_STATE_DOWN, REDIS_STATE_CONNECTING, REDIS_STATE_CONNECTED };

const char *redis_state_str(enum redis_state s);

struct redis_client;
struct redis_pending;

/* reply: NULL on error. err: NULL on success, else a static string
 * ("timeout", "connection lost", "protocol error", "shutdown") valid during the call. */
typedef void (*redis_reply_fn)(redisReply *reply, const char *err, void *arg);

/* Validates the options, builds the TLS context (CA, client certificate) and
 * schedules the first connect on `base`. The client starts CONNECTING (no hook
 * call for that); the connect itself runs in the event loop, so hooks
 * registered right after this call see all of it. An unreachable Redis is not
 * an error here. Returns NULL and fills err on invalid options or unreadable
 * TLS files. The options' strings are copied. */
struct redis_client *redis_client_new(struct event_base *base, const struct redis_options *o,
                                      char *err, size_t errlen);

/* Closes the connection; pending callbacks get err "shutdown" (the state hook is
 * not called). Safe inside any callback of this client. NULL is a no-op. */
void redis_client_free(struct redis_client *c);

enum redis_state redis_client_state(const struct redis_client *c);

/* The last connection / handshake / protocol error, "" if none yet. It is kept
 * after a later successful connect. Owned by the client. */
const char *redis_client_last_error(const struct redis_client *c);

/* Queues a command. Returns a handle, or NULL (fn is then NOT called) when the
 * client is not CONNECTED, max_inflight is reached or formatting fails.
 * The handle is valid until fn is called (or the client is freed).
 * (P|S)SUBSCRIBE with k channels gets one callback, with the k-th confirmation;
 * later "message"/"pmessage"/"smessage" arrays go to the push hook. */
struct redis_pending *redis_command_argv(struct redis_client *c, redis_reply_fn fn, void *arg,
                                         int argc, const char **argv, const size_t *argvlen);
struct redis_pending *redis_command(struct redis_client *c, redis_reply_fn fn, void *arg,
                                    const char *fmt, ...);

/*
 * As redis_command_argv(), routed by key in cluster mode (the master of the
 * key's slot, see struct redis_cluster_options); in single and sentinel mode
 * the key is ignored. Every key of one command must hash to the same slot
 * (redis_key_slot()); key is usually one of argv. Without a key (key NULL, and
 * redis_command*() in cluster mode) a cluster client picks any connected node.
 */
struct redis_pending *redis_command_key(struct redis_client *c, const char *key, size_t keylen,
                                        redis_reply_fn fn, void *arg, int argc, const char **argv,
                                        const size_t *argvlen);

/* The cluster slot of a key: CRC16 (XMODEM) of the key, or of the part between
 * the first '{' and the next '}' when that part is not empty, mod 16384. */
unsigned redis_key_slot(const char *key, size_t keylen);

/* Makes sure fn is never called for p (the reply is still read and discarded).
 * Call it only while p is valid (before its callback ran). NULL is a no-op. */
void redis_cancel(struct redis_pending *p);

/* State-change hook: called on every transition (not from redis_client_free). */
void redis_client_on_state(struct redis_client *c, void (*fn)(enum redis_state, void *arg),
                           void *arg);

/* Latency hook: called with the time from sending a command to its reply, for
 * every reply delivered to a callback (not for cancelled or failed commands). */
void redis_client_on_latency(struct redis_client *c, void (*fn)(uint64_t us, void *arg), void *arg);

/* Push hook: messages arriving outside of a command reply (pubsub "message",
 * "pmessage", "smessage" arrays, and surplus (un)subscribe confirmations on a
 * subscribed connection). msg is freed after the hook returns. Without a hook
 * they are dropped. */
void redis_client_on_push(struct redis_client *c, void (*fn)(redisReply *msg, void *arg),
                          void *arg);

/*
 * Sentinel mode: what the client learns from the sentinels. REDIS_SENTINEL_QUERY
 * once per query sent to a sentinel (was, now: NULL); REDIS_SENTINEL_MASTER when
 * the master's address differs from the one used before (was: "" on the first
 * resolution, else "host:port"; now: "host:port"). name is the master name.
 * Never called in single mode.
 */
enum redis_sentinel_event { REDIS_SENTINEL_QUERY, REDIS_SENTINEL_MASTER };
void redis_client_on_sentinel(struct redis_client *c,
                              void (*fn)(enum redis_sentinel_event ev, const char *name,
                                         const char *was, const char *now, void *arg),
                              void *arg);

/*
 * Cluster mode: REDIS_CLUSTER_MOVED / REDIS_CLUSTER_ASK once per redirect
 * followed (or refused: too many, unknown node), REDIS_CLUSTER_REFRESH once per
 * slot map received. Never called in the other modes.
 */
enum redis_cluster_event { REDIS_CLUSTER_MOVED, REDIS_CLUSTER_ASK, REDIS_CLUSTER_REFRESH };
void redis_client_on_cluster(struct redis_client *c,
                             void (*fn)(enum redis_cluster_event ev, void *arg), void *arg);

/*
 * Cluster mode, for connection-scoped features (CLIENT TRACKING, SUBSCRIBE): each
 * master's connection is a single-mode client owned by the cluster. The owner's
 * on_connect and on_push hooks (set before the first map) run on every node
 * connection; fn(node, st, arg) is called when a node connection changes state,
 * and with REDIS_STATE_DOWN once more just before a node that left the map is
 * freed (not while the owner is freed). Never called in single or sentinel mode.
 */
void redis_client_on_cluster_node(struct redis_client *c,
                                  void (*fn)(const struct redis_client *node, enum redis_state st,
                                             void *arg),
                                  void *arg);
/* Cluster mode: true when the slot map is known and pred(node, arg) holds for
 * every master's connection (those of the map and those named by -MOVED / -ASK
 * since). False in other modes. */
bool redis_cluster_all_nodes(const struct redis_client *c,
                             bool (*pred)(const struct redis_client *node, void *arg), void *arg);

/* The server-side CLIENT ID of the current connection, 0 if unknown (not
 * connected, or CLIENT ID refused by ACL). For CLIENT TRACKING REDIRECT. */
long long redis_client_id(const struct redis_client *c);

/* Called on every (re)connect after AUTH/SELECT/SETNAME/CLIENT ID and just
 * before CONNECTED; redis_command*() is allowed inside it (e.g. SUBSCRIBE or
 * CLIENT TRACKING), and those commands precede any later command on the wire. */
void redis_client_on_connect(struct redis_client *c, void (*fn)(struct redis_client *, void *arg),
                             void *arg);

#endif
