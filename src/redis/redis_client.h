/*
 * redis_client: internal to src/redis/ (redis.c, redis_connect.c); the public
 * contract is redis.h.
 *
 * The client and pending-entry structs, and the functions the two files share:
 * redis.c owns state, the pending queue, reply parsing and dispatch, the
 * handshake and the command API; redis_connect.c owns options, the transport
 * (address, TLS, bufferevent), connect / teardown / backoff, the timers and the
 * client's creation and destruction.
 */
#ifndef MOAT_REDIS_CLIENT_H
#define MOAT_REDIS_CLIENT_H

#include "redis/redis.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

struct bufferevent;
struct event;

enum pending_kind { PK_USER, PK_AUTH, PK_SELECT, PK_SETNAME, PK_ID, PK_PING, PK_ROLE };

struct redis_pending {
    struct redis_pending *next;
    redis_reply_fn fn; /* NULL once cancelled */
    void *arg;
    uint64_t deadline_ms; /* monotonic */
    uint64_t sent_us;     /* monotonic, for the latency hook */
    int replies_left;     /* (P|S)SUBSCRIBE a b c: 3 confirmations, one callback */
    bool subscription;    /* a (un)subscribe command: its replies are confirmations */
    enum pending_kind kind;
};

struct redis_client {
    struct event_base *base;
    /* options, copied */
    char *host, *unix_path, *username, *password_file, *password_env, *server_name;
    char *client_name;
    char addr[300]; /* "host:port" or the unix path, for messages */
    uint16_t port;
    int database;
    bool tls_verify;
    uint64_t timeout_ms, connect_timeout_ms, backoff_min_ms, backoff_max_ms, ping_interval_ms;
    size_t max_inflight, max_reply_bytes;
    SSL_CTX *ssl_ctx; /* NULL without TLS */

    enum redis_state state;
    struct bufferevent *bev;
    redisReader *reader;
    redisReplyObjectFunctions *dfn; /* hiredis defaults, wrapped by redis_reply_fns */
    size_t reply_objs, reply_bytes; /* budget of the reply being parsed */
    bool reply_too_large;
    bool transport_up;  /* TCP (and TLS) established */
    bool in_on_connect; /* commands allowed while CONNECTING */
    bool subscribed;    /* confirmed subscriptions > 0: pubsub messages may arrive */
    bool activity;      /* bytes read since the last ping tick */
    long long client_id;
    unsigned gen; /* connection generation */

    struct redis_pending *head, *tail, *free_list;
    size_t inflight, nfree;

    struct event *retry_ev, *connect_ev, *cmd_ev, *ping_ev;
    unsigned attempts;
    unsigned addr_next; /* which resolved address the next attempt uses */
    uint64_t rng;

    int busy;
    bool dying;
    char last_error[256];

    void (*state_fn)(enum redis_state, void *);
    void *state_arg;
    void (*push_fn)(redisReply *, void *);
    void *push_arg;
    void (*connect_fn)(struct redis_client *, void *);
    void *connect_arg;
    void (*latency_fn)(uint64_t us, void *); /* cluster: copied to the node clients */
    void *latency_arg;

    /* sentinel mode (redis_sentinel.c); NULL in single mode */
    struct redis_sentinel *sentinel;
    void (*sentinel_fn)(enum redis_sentinel_event, const char *, const char *, const char *,
                        void *);
    void *sentinel_arg;

    /* cluster mode (redis_cluster.c); NULL otherwise */
    struct redis_cluster *cluster;
    void (*cluster_fn)(enum redis_cluster_event, void *);
    void *cluster_arg;
    void (*node_fn)(const struct redis_client *, enum redis_state, void *);
    void *node_arg;
};

/* err strings handed to command callbacks (redis.h) */
static const char ERR_TIMEOUT[] = "timeout";
static const char ERR_LOST[] = "connection lost";
static const char ERR_PROTOCOL[] = "protocol error";
static const char ERR_SHUTDOWN[] = "shutdown";

/* ---- redis.c ------------------------------------------------------------ */

uint64_t redis_now_ms(void); /* monotonic */
uint64_t redis_now_us(void); /* monotonic */
void redis_timer_arm(struct event *ev, uint64_t ms);
void redis_set_error(struct redis_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void redis_set_state(struct redis_client *c, enum redis_state s);

/* Every entry from the event loop runs between these two; the client is
 * destroyed by the outermost leave once it is dying. */
void redis_client_enter(struct redis_client *c);
void redis_client_leave(struct redis_client *c);

void redis_fail_all(struct redis_client *c, const char *err);
/* The bufferevent read callback: feeds the reader, dispatches the replies. */
void redis_read_cb(struct bufferevent *bev, void *arg);
/* The bounded object constructors installed in each connection's reader. */
extern redisReplyObjectFunctions redis_reply_fns;
int redis_enqueue_argv(struct redis_client *c, enum pending_kind kind, int argc, const char **argv,
                       const size_t *argvlen);
int redis_send_handshake(struct redis_client *c, const char *pw, size_t pwlen);
/* Queues a command formatted by the caller (not a (un)subscribe): a cluster
 * node's resend. NULL when it cannot be sent now, as redis_command_argv(). */
struct redis_pending *redis_command_formatted(struct redis_client *c, redis_reply_fn fn, void *arg,
                                              const char *cmd, size_t len);

/* ---- redis_connect.c ---------------------------------------------------- */

void redis_conn_fail(struct redis_client *c, const char *pend_err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void redis_client_destroy(struct redis_client *c);
/* Points the client at host:port for its next connect attempts (a sentinel
 * mode data client, or a subscription moving to the next sentinel). */
int redis_client_set_target(struct redis_client *c, const char *host, uint16_t port);
/* Sentinel mode: the master's address is known, open the connection to it. */
void redis_connect_to(struct redis_client *c, const char *host, uint16_t port);
/* Sentinel mode: the master moved. Drops the connection (or the attempt under
 * way) with why and tries again at once. */
void redis_conn_restart(struct redis_client *c, const char *why);

#endif
