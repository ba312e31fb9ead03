/*
 * redis_cluster: the client's cluster mode (redis_cluster.h, redis.h).
 *
 * Why the nodes are single-mode redis_clients owned by the cluster (as the
 * sentinel connections are owned by redis_sentinel.c): every bound, timeout,
 * reconnect and TLS rule of a data connection applies to each node without a
 * second implementation, and the callers keep one handle per use (sessions,
 * rate limits) whatever the mode.
 *
 * Lifetimes: a command in flight (struct cl_req) is owned by the cluster until
 * its final reply; its handle is the struct redis_pending at its start, so
 * redis_cancel() works on it unchanged. A node's client is freed when the node
 * leaves the map; its commands then end with "shutdown". Whatever is done to the
 * owner (state changes, failure) runs inside the owner's enter/leave.
 */
#include "redis/redis_cluster.h"
#include "redis/redis_client.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#define CLUSTER_QUERY_MAX_REPLY (4u << 20) /* CLUSTER SLOTS of a big, fragmented cluster */
#define CLUSTER_MAX_ENTRIES REDIS_CLUSTER_SLOTS
#define REFRESH_MIN_MS 100    /* refreshes asked for faster than this are merged */
#define REFRESH_RETRY_MS 1000 /* a failed refresh while a map is known */
#define DEFAULT_MAX_REDIRECTS 3

static const uint16_t crc16_table[256] = {
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7, 0x8108, 0x9129, 0xa14a, 0xb16b,
    0xc18c, 0xd1ad, 0xe1ce, 0xf1ef, 0x1231, 0x0210, 0x3273, 0x2252, 0x52b5, 0x4294, 0x72f7, 0x62d6,
    0x9339, 0x8318, 0xb37b, 0xa35a, 0xd3bd, 0xc39c, 0xf3ff, 0xe3de, 0x2462, 0x3443, 0x0420, 0x1401,
    0x64e6, 0x74c7, 0x44a4, 0x5485, 0xa56a, 0xb54b, 0x8528, 0x9509, 0xe5ee, 0xf5cf, 0xc5ac, 0xd58d,
    0x3653, 0x2672, 0x1611, 0x0630, 0x76d7, 0x66f6, 0x5695, 0x46b4, 0xb75b, 0xa77a, 0x9719, 0x8738,
    0xf7df, 0xe7fe, 0xd79d, 0xc7bc, 0x48c4, 0x58e5, 0x6886, 0x78a7, 0x0840, 0x1861, 0x2802, 0x3823,
    0xc9cc, 0xd9ed, 0xe98e, 0xf9af, 0x8948, 0x9969, 0xa90a, 0xb92b, 0x5af5, 0x4ad4, 0x7ab7, 0x6a96,
    0x1a71, 0x0a50, 0x3a33, 0x2a12, 0xdbfd, 0xcbdc, 0xfbbf, 0xeb9e, 0x9b79, 0x8b58, 0xbb3b, 0xab1a,
    0x6ca6, 0x7c87, 0x4ce4, 0x5cc5, 0x2c22, 0x3c03, 0x0c60, 0x1c41, 0xedae, 0xfd8f, 0xcdec, 0xddcd,
    0xad2a, 0xbd0b, 0x8d68, 0x9d49, 0x7e97, 0x6eb6, 0x5ed5, 0x4ef4, 0x3e13, 0x2e32, 0x1e51, 0x0e70,
    0xff9f, 0xefbe, 0xdfdd, 0xcffc, 0xbf1b, 0xaf3a, 0x9f59, 0x8f78, 0x9188, 0x81a9, 0xb1ca, 0xa1eb,
    0xd10c, 0xc12d, 0xf14e, 0xe16f, 0x1080, 0x00a1, 0x30c2, 0x20e3, 0x5004, 0x4025, 0x7046, 0x6067,
    0x83b9, 0x9398, 0xa3fb, 0xb3da, 0xc33d, 0xd31c, 0xe37f, 0xf35e, 0x02b1, 0x1290, 0x22f3, 0x32d2,
    0x4235, 0x5214, 0x6277, 0x7256, 0xb5ea, 0xa5cb, 0x95a8, 0x8589, 0xf56e, 0xe54f, 0xd52c, 0xc50d,
    0x34e2, 0x24c3, 0x14a0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405, 0xa7db, 0xb7fa, 0x8799, 0x97b8,
    0xe75f, 0xf77e, 0xc71d, 0xd73c, 0x26d3, 0x36f2, 0x0691, 0x16b0, 0x6657, 0x7676, 0x4615, 0x5634,
    0xd94c, 0xc96d, 0xf90e, 0xe92f, 0x99c8, 0x89e9, 0xb98a, 0xa9ab, 0x5844, 0x4865, 0x7806, 0x6827,
    0x18c0, 0x08e1, 0x3882, 0x28a3, 0xcb7d, 0xdb5c, 0xeb3f, 0xfb1e, 0x8bf9, 0x9bd8, 0xabbb, 0xbb9a,
    0x4a75, 0x5a54, 0x6a37, 0x7a16, 0x0af1, 0x1ad0, 0x2ab3, 0x3a92, 0xfd2e, 0xed0f, 0xdd6c, 0xcd4d,
    0xbdaa, 0xad8b, 0x9de8, 0x8dc9, 0x7c26, 0x6c07, 0x5c64, 0x4c45, 0x3ca2, 0x2c83, 0x1ce0, 0x0cc1,
    0xef1f, 0xff3e, 0xcf5d, 0xdf7c, 0xaf9b, 0xbfba, 0x8fd9, 0x9ff8, 0x6e17, 0x7e36, 0x4e55, 0x5e74,
    0x2e93, 0x3eb2, 0x0ed1, 0x1ef0};

/* A command in flight; pub is the caller's handle (pub.fn NULL once cancelled). */
struct cl_req {
    struct redis_pending pub;
    struct redis_cluster *cl;
    char *cmd; /* formatted, kept for a redirect */
    size_t len;
    unsigned redirects;
    bool ask;            /* parked after -ASK: ASKING goes first */
    struct cl_req *next; /* in its node's parked list */
};

struct cl_node {
    struct redis_cluster *cl;
    struct redis_client *rc; /* NULL when it could not be built */
    char host[REDIS_CLUSTER_HOST_MAX];
    uint16_t port;
    bool ever_up; /* was connected once: a node reconnecting is not waited for */
    /* Commands for a node not connected yet (a new master after a failover, named
     * by a -MOVED or a new map): sent when it connects, failed when it goes down.
     * Bounded by the owner's max_inflight and, in time, by connect_timeout. */
    struct cl_req *parked, **parked_tail;
    size_t nparked;
};

/* A node asked for the map when no seed answers: the masters of the last map
 * (a seed may be the master that died). */
struct cl_addr {
    char host[REDIS_CLUSTER_HOST_MAX];
    uint16_t port;
};

struct redis_cluster {
    struct redis_client *owner;
    /* the options, copied (the rest is read from the owner) */
    char *seeds[REDIS_CLUSTER_SEEDS_MAX];
    uint16_t seed_ports[REDIS_CLUSTER_SEEDS_MAX];
    size_t nseeds;
    unsigned max_redirects;
    char *tls_ca, *tls_cert, *tls_key;

    struct cl_node *nodes[REDIS_CLUSTER_NODES_MAX];
    size_t nnodes, rr;
    uint8_t slots[REDIS_CLUSTER_SLOTS]; /* index in nodes, or REDIS_CLUSTER_NO_NODE */
    bool have_map, closing;

    struct redis_client *q; /* the CLUSTER SLOTS question in flight, or NULL */
    size_t q_idx, q_tried;  /* which candidate q talks to; how many were tried */
    /* the candidates of this round after the seeds: the masters of the map at its start */
    struct cl_addr known[REDIS_CLUSTER_NODES_MAX];
    size_t nknown;
    size_t cur;      /* the seed that answered last: asked first */
    char q_err[200]; /* why the last seed tried could not answer */
    struct event *refresh_ev;
    bool refresh_again; /* asked for while a question was in flight */
    uint64_t last_refresh_ms;
};

/* ---- slots and parsing what nodes send ---------------------------------- */

unsigned redis_key_slot(const char *key, size_t keylen)
{
    const char *k = key;
    size_t n = keylen;
    const char *open = keylen ? memchr(key, '{', keylen) : NULL;
    if (open) { /* a hash tag: only the first {...} counts, and only if not empty */
        size_t s = (size_t)(open - key) + 1;
        const char *close = memchr(key + s, '}', keylen - s);
        if (close && close > key + s) {
            k = key + s;
            n = (size_t)(close - k);
        }
    }
    uint16_t crc = 0;
    for (size_t i = 0; i < n; i++)
        crc = (uint16_t)(crc << 8) ^ crc16_table[((crc >> 8) ^ (uint8_t)k[i]) & 0xff];
    return crc & (REDIS_CLUSTER_SLOTS - 1);
}

static bool host_ok(const char *s, size_t len)
{
    unsigned char bin[sizeof(struct in6_addr)];
    char tmp[REDIS_CLUSTER_HOST_MAX];
    if (len == 0 || len >= sizeof(tmp) || memchr(s, '\0', len))
        return false;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    return inet_pton(AF_INET, tmp, bin) == 1 || inet_pton(AF_INET6, tmp, bin) == 1;
}

static bool decimal(const char *s, size_t len, size_t maxlen, unsigned long lo, unsigned long hi,
                    unsigned long *out)
{
    unsigned long v = 0;
    if (len == 0 || len > maxlen)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool int_in(const redisReply *r, long long lo, long long hi, long long *v)
{
    if (!r || r->type != REDIS_REPLY_INTEGER || r->integer < lo || r->integer > hi)
        return false;
    *v = r->integer;
    return true;
}

/* The index of a range's master [ip, port, ...] in m, added if new; -1 (why). */
static int map_node(struct redis_cluster_map *m, const redisReply *n, const char **why)
{
    long long port;
    if (!n || n->type != REDIS_REPLY_ARRAY || n->elements < 2 || !n->element[0] ||
        n->element[0]->type != REDIS_REPLY_STRING) {
        *why = "a master is not [ip, port, ...]";
        return -1;
    }
    const redisReply *ip = n->element[0];
    if (!host_ok(ip->str, ip->len)) {
        *why = "a master's ip is not a numeric IPv4 or IPv6 address";
        return -1;
    }
    if (!int_in(n->element[1], 1, 65535, &port)) {
        *why = "a master's port is not in 1..65535";
        return -1;
    }
    for (size_t i = 0; i < m->nnodes; i++)
        if (m->nodes[i].port == port && strlen(m->nodes[i].host) == ip->len &&
            memcmp(m->nodes[i].host, ip->str, ip->len) == 0)
            return (int)i;
    if (m->nnodes == REDIS_CLUSTER_NODES_MAX) {
        *why = "more masters than moat talks to (64)";
        return -1;
    }
    memcpy(m->nodes[m->nnodes].host, ip->str, ip->len);
    m->nodes[m->nnodes].host[ip->len] = '\0';
    m->nodes[m->nnodes].port = (uint16_t)port;
    return (int)m->nnodes++;
}

int redis_cluster_parse_slots(const redisReply *r, struct redis_cluster_map *m, const char **why)
{
    memset(m->slot_node, REDIS_CLUSTER_NO_NODE, sizeof(m->slot_node));
    m->nnodes = 0;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        *why = r && r->type == REDIS_REPLY_ERROR ? "error reply" : "not an array";
        return -1;
    }
    if (r->elements == 0 || r->elements > CLUSTER_MAX_ENTRIES) {
        *why = r->elements ? "more slot ranges than slots" : "no slot ranges";
        return -1;
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        long long lo, hi;
        if (!e || e->type != REDIS_REPLY_ARRAY || e->elements < 3) {
            *why = "a range is not [start, end, master, ...]";
            return -1;
        }
        if (!int_in(e->element[0], 0, REDIS_CLUSTER_SLOTS - 1, &lo) ||
            !int_in(e->element[1], lo, REDIS_CLUSTER_SLOTS - 1, &hi)) {
            *why = "a slot range is not within 0..16383";
            return -1;
        }
        int idx = map_node(m, e->element[2], why);
        if (idx < 0)
            return -1;
        for (long long s = lo; s <= hi; s++) {
            if (m->slot_node[s] != REDIS_CLUSTER_NO_NODE) {
                *why = "slot ranges overlap";
                return -1;
            }
            m->slot_node[s] = (uint8_t)idx;
        }
    }
    return 0;
}

int redis_cluster_parse_redirect(const char *s, size_t len, bool *ask, unsigned *slot,
                                 char host[REDIS_CLUSTER_HOST_MAX], uint16_t *port)
{
    size_t skip;
    if (len >= 6 && memcmp(s, "MOVED ", 6) == 0) {
        *ask = false;
        skip = 6;
    } else if (len >= 4 && memcmp(s, "ASK ", 4) == 0) {
        *ask = true;
        skip = 4;
    } else {
        return 0;
    }
    if (len > 128)
        return -1;
    s += skip;
    len -= skip;
    const char *sp = memchr(s, ' ', len);
    unsigned long v, p;
    if (!sp || !decimal(s, (size_t)(sp - s), 5, 0, REDIS_CLUSTER_SLOTS - 1, &v))
        return -1;
    const char *a = sp + 1;
    size_t alen = len - (size_t)(a - s), colon = alen;
    while (colon > 0 && a[colon - 1] != ':')
        colon--;
    if (colon < 2 || !host_ok(a, colon - 1) || !decimal(a + colon, alen - colon, 5, 1, 65535, &p))
        return -1;
    memcpy(host, a, colon - 1);
    host[colon - 1] = '\0';
    *slot = (unsigned)v;
    *port = (uint16_t)p;
    return 1;
}

/* ---- connections -------------------------------------------------------- */

/* A single-mode client to host:port with the data connection's credentials and TLS. */
static struct redis_client *conn_new(struct redis_cluster *cl, const char *host, uint16_t port,
                                     uint64_t timeout_ms, uint64_t ping_ms, size_t max_reply,
                                     const char *name, char *err, size_t errlen)
{
    const struct redis_client *o = cl->owner;
    struct redis_options opt = {
        .host = host,
        .port = port,
        .username = o->username,
        .password_file = o->password_file,
        .password_env = o->password_env,
        .tls = o->ssl_ctx != NULL,
        .tls_ca = cl->tls_ca,
        .tls_server_name = o->server_name,
        .tls_verify = o->tls_verify,
        .tls_cert = cl->tls_cert,
        .tls_key = cl->tls_key,
        .timeout_ms = timeout_ms,
        .connect_timeout_ms = o->connect_timeout_ms,
        .backoff_min_ms = o->backoff_min_ms,
        .backoff_max_ms = o->backoff_max_ms,
        .client_name = name,
        .max_inflight = o->max_inflight,
        .max_reply_bytes = max_reply,
        .ping_interval_ms = ping_ms,
    };
    struct redis_client *c = redis_client_new(o->base, &opt, err, errlen);
    if (c) /* the owner's command latency covers the commands its nodes run */
        redis_client_on_latency(c, o->latency_fn, o->latency_arg);
    return c;
}

static void emit(struct redis_cluster *cl, enum redis_cluster_event ev)
{
    struct redis_client *o = cl->owner;
    if (o->cluster_fn)
        o->cluster_fn(ev, o->cluster_arg);
}

/* The owner's state follows the nodes once the map is known. */
static void state_update(struct redis_cluster *cl)
{
    struct redis_client *o = cl->owner;
    bool up = false, trying = false;
    const char *last = NULL;
    if (!cl->have_map || cl->closing || o->dying)
        return;
    for (size_t i = 0; i < cl->nnodes; i++) {
        const struct cl_node *n = cl->nodes[i];
        enum redis_state st = n && n->rc ? redis_client_state(n->rc) : REDIS_STATE_DOWN;
        up = up || st == REDIS_STATE_CONNECTED;
        trying = trying || st == REDIS_STATE_CONNECTING;
        if (st == REDIS_STATE_DOWN && n && n->rc && !last)
            last = redis_client_last_error(n->rc);
    }
    if (!up && !trying)
        redis_set_error(o, "every cluster node is down (%s)", last ? last : "no node");
    redis_set_state(o, up       ? REDIS_STATE_CONNECTED
                       : trying ? REDIS_STATE_CONNECTING
                                : REDIS_STATE_DOWN);
}

static void refresh_schedule(struct redis_cluster *cl);
static void req_end(struct cl_req *q, redisReply *reply, const char *err);
static void on_node_reply(redisReply *reply, const char *err, void *arg);

static void on_asking(redisReply *reply, const char *err, void *arg)
{
    (void)reply; /* an error here shows as a redirect of the command that follows */
    (void)err;
    (void)arg;
}

/* Sends q (after ASKING when q->ask) on a connected node. */
static bool node_send_now(struct cl_node *n, struct cl_req *q)
{
    const char *asking[1] = {"ASKING"};
    if (q->ask && !redis_command_argv(n->rc, on_asking, NULL, 1, asking, NULL))
        return false;
    return redis_command_formatted(n->rc, on_node_reply, q, q->cmd, q->len) != NULL;
}

/* Sends q to n now, or parks it while n connects for the first time. False: q was
 * neither sent nor parked (the caller ends it). */
static bool node_send(struct cl_node *n, struct cl_req *q)
{
    if (!n || !n->rc)
        return false;
    enum redis_state st = redis_client_state(n->rc);
    if (st == REDIS_STATE_CONNECTED)
        return node_send_now(n, q);
    if (st != REDIS_STATE_CONNECTING || n->ever_up || n->nparked >= n->cl->owner->max_inflight)
        return false;
    q->next = NULL;
    *n->parked_tail = q;
    n->parked_tail = &q->next;
    n->nparked++;
    return true;
}

/* The parked commands: sent (connected) or ended with err. The list is taken
 * first: the callbacks may send (and park) new commands. */
static void parked_flush(struct cl_node *n, const char *err)
{
    struct cl_req *q = n->parked;
    n->parked = NULL;
    n->parked_tail = &n->parked;
    n->nparked = 0;
    while (q) {
        struct cl_req *next = q->next;
        if (err || !q->pub.fn || !node_send_now(n, q))
            req_end(q, NULL, err ? err : ERR_LOST);
        q = next;
    }
}

static void on_node_state(enum redis_state st, void *arg)
{
    struct cl_node *n = arg;
    struct redis_cluster *cl = n->cl;
    struct redis_client *o = cl->owner;
    redis_client_enter(o);
    if (o->node_fn && !o->dying)
        o->node_fn(n->rc, st, o->node_arg);
    if (st == REDIS_STATE_CONNECTED) {
        n->ever_up = true;
        parked_flush(n, NULL);
    } else if (st == REDIS_STATE_DOWN) { /* lost, or never reached: the map may have changed */
        parked_flush(n, ERR_LOST);
        refresh_schedule(cl);
    }
    state_update(cl);
    redis_client_leave(o);
}

/* The owner's on_connect hook, on a node's connection. */
static void on_node_connect(struct redis_client *c, void *arg)
{
    struct cl_node *n = arg;
    struct redis_client *o = n->cl->owner;
    if (o->connect_fn)
        o->connect_fn(c, o->connect_arg);
}

static struct cl_node *node_new(struct redis_cluster *cl, const char *host, uint16_t port)
{
    struct cl_node *n = calloc(1, sizeof(*n));
    char err[200];
    if (!n)
        return NULL;
    n->cl = cl;
    n->parked_tail = &n->parked;
    snprintf(n->host, sizeof(n->host), "%s", host);
    n->port = port;
    n->rc = conn_new(cl, host, port, cl->owner->timeout_ms, cl->owner->ping_interval_ms,
                     cl->owner->max_reply_bytes, cl->owner->client_name, err, sizeof(err));
    if (n->rc) {
        redis_client_on_state(n->rc, on_node_state, n);
        if (cl->owner->connect_fn)
            redis_client_on_connect(n->rc, on_node_connect, n);
        if (cl->owner->push_fn)
            redis_client_on_push(n->rc, cl->owner->push_fn, cl->owner->push_arg);
    } else
        redis_set_error(cl->owner, "cluster node %s:%u: %s", host, (unsigned)port, err);
    return n;
}

/* Its commands in flight end with "shutdown" (callbacks run now). */
static void node_free(struct cl_node *n)
{
    if (!n)
        return;
    parked_flush(n, ERR_SHUTDOWN);
    struct redis_client *o = n->cl->owner;
    if (n->rc && o->node_fn && !n->cl->closing && !o->dying)
        o->node_fn(n->rc, REDIS_STATE_DOWN, o->node_arg);
    if (n->rc) {
        redis_client_on_state(n->rc, NULL, NULL);
        redis_client_free(n->rc);
    }
    free(n);
}

static int node_index(const struct redis_cluster *cl, const char *host, uint16_t port)
{
    for (size_t i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i] && cl->nodes[i]->port == port && strcmp(cl->nodes[i]->host, host) == 0)
            return (int)i;
    return -1;
}

/* A node named by a redirect: known, or added (bounded). -1 when full. */
static int node_find_or_add(struct redis_cluster *cl, const char *host, uint16_t port)
{
    int i = node_index(cl, host, port);
    if (i >= 0 || cl->nnodes == REDIS_CLUSTER_NODES_MAX)
        return i;
    if (!(cl->nodes[cl->nnodes] = node_new(cl, host, port)))
        return -1;
    return (int)cl->nnodes++;
}

/* Takes the new map: nodes kept by address, new ones connected, the others
 * dropped last (their failed commands' callbacks may send new ones). */
static void map_apply(struct redis_cluster *cl, const struct redis_cluster_map *m)
{
    struct cl_node *next[REDIS_CLUSTER_NODES_MAX] = {NULL}, *gone[REDIS_CLUSTER_NODES_MAX];
    size_t ngone = 0;
    for (size_t i = 0; i < m->nnodes; i++) {
        int at = node_index(cl, m->nodes[i].host, m->nodes[i].port);
        if (at >= 0) {
            next[i] = cl->nodes[at];
            cl->nodes[at] = NULL;
        } else {
            next[i] = node_new(cl, m->nodes[i].host, m->nodes[i].port);
        }
    }
    for (size_t i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i])
            gone[ngone++] = cl->nodes[i];
    memcpy(cl->nodes, next, sizeof(next));
    cl->nnodes = m->nnodes;
    for (size_t s = 0; s < REDIS_CLUSTER_SLOTS; s++) {
        uint8_t idx = m->slot_node[s];
        cl->slots[s] = idx != REDIS_CLUSTER_NO_NODE && next[idx] ? idx : REDIS_CLUSTER_NO_NODE;
    }
    cl->have_map = true;
    for (size_t i = 0; i < ngone; i++)
        node_free(gone[i]);
    state_update(cl);
}

/* ---- asking the seeds for the map ---------------------------------------- */

static void query_next(struct redis_cluster *cl);

static void query_cancel(struct redis_cluster *cl)
{
    struct redis_client *q = cl->q;
    cl->q = NULL;
    redis_client_free(q);
}

/* Candidate i of a round: the seeds from the one that answered last, then the
 * masters of the map known when the round started. */
static void candidate(const struct redis_cluster *cl, size_t i, const char **host, uint16_t *port,
                      size_t *seed)
{
    if (i < cl->nseeds) {
        *seed = (cl->cur + i) % cl->nseeds;
        *host = cl->seeds[*seed];
        *port = cl->seed_ports[*seed];
    } else {
        *seed = SIZE_MAX;
        *host = cl->known[i - cl->nseeds].host;
        *port = cl->known[i - cl->nseeds].port;
    }
}

static void query_failed(struct redis_cluster *cl, const char *why, const redisReply *r)
{
    int n = r && r->type == REDIS_REPLY_ERROR ? (int)(r->len < 80 ? r->len : 80) : 0;
    const char *host;
    uint16_t port;
    size_t seed;
    candidate(cl, cl->q_idx, &host, &port, &seed);
    snprintf(cl->q_err, sizeof(cl->q_err), "%s %.60s:%u: %.100s%s%.*s",
             seed == SIZE_MAX ? "node" : "seed", host, (unsigned)port, why, n ? ": " : "", n,
             n ? r->str : "");
    query_next(cl);
}

static void on_query_reply(redisReply *reply, const char *err, void *arg)
{
    struct redis_cluster *cl = arg;
    struct redis_client *o = cl->owner;
    const char *why;
    if (err || !cl->q)
        return; /* the connection is gone: on_query_state moves on */
    redis_client_enter(o);
    query_cancel(cl); /* released when this callback returns */
    struct redis_cluster_map *m = malloc(sizeof(*m));
    if (!m) {
        query_failed(cl, "out of memory", NULL);
    } else if (redis_cluster_parse_slots(reply, m, &why) < 0) {
        query_failed(cl, why, reply);
    } else {
        const char *host;
        uint16_t port;
        size_t seed;
        candidate(cl, cl->q_idx, &host, &port, &seed);
        if (seed != SIZE_MAX)
            cl->cur = seed;
        emit(cl, REDIS_CLUSTER_REFRESH);
        map_apply(cl, m);
        if (cl->refresh_again)
            refresh_schedule(cl);
    }
    free(m);
    redis_client_leave(o);
}

static void on_query_connect(struct redis_client *q, void *arg)
{
    struct redis_cluster *cl = arg;
    const char *argv[2] = {"CLUSTER", "SLOTS"};
    if (redis_command_argv(q, on_query_reply, cl, 2, argv, NULL))
        return;
    redis_client_enter(cl->owner);
    query_cancel(cl);
    query_failed(cl, "cannot send CLUSTER SLOTS", NULL);
    redis_client_leave(cl->owner);
}

/* The question's connection failed (connect, TLS, AUTH, timeout): next seed. */
static void on_query_state(enum redis_state st, void *arg)
{
    struct redis_cluster *cl = arg;
    if (st != REDIS_STATE_DOWN || !cl->q)
        return;
    redis_client_enter(cl->owner);
    char why[200];
    snprintf(why, sizeof(why), "%s", redis_client_last_error(cl->q));
    query_cancel(cl);
    query_failed(cl, why, NULL);
    redis_client_leave(cl->owner);
}

/* No seed answered: before the first map the owner's attempt fails (it backs
 * off and asks again); with a map, it is kept and asked for again later. */
static void refresh_failed(struct redis_cluster *cl)
{
    struct redis_client *o = cl->owner;
    if (cl->closing || o->dying)
        return;
    if (!cl->have_map) {
        if (o->state == REDIS_STATE_CONNECTING)
            redis_conn_fail(o, ERR_LOST, "no cluster seed gave the slot map (last: %s)", cl->q_err);
        return;
    }
    redis_set_error(o, "cluster slot map refresh failed (last: %s)", cl->q_err);
    redis_timer_arm(cl->refresh_ev, REFRESH_RETRY_MS);
}

/* Asks the next candidate not tried in this round; all tried: refresh_failed(). */
static void query_next(struct redis_cluster *cl)
{
    while (!cl->closing && cl->q_tried < cl->nseeds + cl->nknown) {
        char err[200];
        const char *host;
        uint16_t port;
        size_t seed;
        cl->q_idx = cl->q_tried++;
        candidate(cl, cl->q_idx, &host, &port, &seed);
        cl->q = conn_new(cl, host, port, cl->owner->connect_timeout_ms, 0, CLUSTER_QUERY_MAX_REPLY,
                         "moat-cluster", err, sizeof(err));
        if (cl->q) {
            redis_client_on_connect(cl->q, on_query_connect, cl);
            redis_client_on_state(cl->q, on_query_state, cl);
            return;
        }
        snprintf(cl->q_err, sizeof(cl->q_err), "%s %.60s:%u: %.120s",
                 seed == SIZE_MAX ? "node" : "seed", host, (unsigned)port, err);
    }
    refresh_failed(cl);
}

/* The masters of the current map that are not seeds: asked after the seeds. */
static void known_collect(struct redis_cluster *cl)
{
    cl->nknown = 0;
    for (size_t i = 0; i < cl->nnodes; i++) {
        const struct cl_node *n = cl->nodes[i];
        bool seed = false;
        if (!n)
            continue;
        for (size_t j = 0; j < cl->nseeds && !seed; j++)
            seed = cl->seed_ports[j] == n->port && strcmp(cl->seeds[j], n->host) == 0;
        if (seed)
            continue;
        memcpy(cl->known[cl->nknown].host, n->host, sizeof(n->host));
        cl->known[cl->nknown++].port = n->port;
    }
}

void redis_cluster_refresh(struct redis_cluster *cl)
{
    evtimer_del(cl->refresh_ev);
    query_cancel(cl);
    known_collect(cl);
    cl->q_tried = 0;
    cl->q_err[0] = '\0';
    cl->refresh_again = false;
    cl->last_refresh_ms = redis_now_ms();
    query_next(cl);
}

static void refresh_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_cluster *cl = arg;
    (void)fd;
    (void)what;
    redis_client_enter(cl->owner);
    redis_cluster_refresh(cl);
    redis_client_leave(cl->owner);
}

/* A refresh soon: merged with one in flight or pending, at most one per REFRESH_MIN_MS. */
static void refresh_schedule(struct redis_cluster *cl)
{
    if (cl->closing || !cl->have_map)
        return; /* before the first map the owner's backoff drives the questions */
    if (cl->q) {
        cl->refresh_again = true;
        return;
    }
    if (evtimer_pending(cl->refresh_ev, NULL))
        return;
    uint64_t now = redis_now_ms(), next = cl->last_refresh_ms + REFRESH_MIN_MS;
    redis_timer_arm(cl->refresh_ev, next > now ? next - now : 0);
}

/* ---- commands ----------------------------------------------------------- */

static void req_end(struct cl_req *q, redisReply *reply, const char *err)
{
    if (q->pub.fn)
        q->pub.fn(reply, err, q->pub.arg);
    free(q->cmd);
    free(q);
}

/* Follows a -MOVED or -ASK. Returns false when reply is to be delivered as it
 * is (not a redirect, malformed, or too many), true when q was resent or ended. */
static bool redirect(struct cl_req *q, const redisReply *reply)
{
    struct redis_cluster *cl = q->cl;
    char host[REDIS_CLUSTER_HOST_MAX];
    unsigned slot;
    uint16_t port;
    bool ask;
    int rc = redis_cluster_parse_redirect(reply->str, reply->len, &ask, &slot, host, &port);
    if (rc == 0)
        return false;
    if (rc > 0)
        emit(cl, ask ? REDIS_CLUSTER_ASK : REDIS_CLUSTER_MOVED);
    if (rc > 0 && !ask)
        refresh_schedule(cl); /* one slot moved: others probably did too */
    if (rc < 0 || q->redirects >= cl->max_redirects)
        return false;
    q->redirects++;
    int at = node_find_or_add(cl, host, port);
    if (at >= 0 && !ask)
        cl->slots[slot] = (uint8_t)at;
    q->ask = ask;
    if (at < 0 || !node_send(cl->nodes[at], q)) /* a new node: waited for while it connects */
        req_end(q, NULL, ERR_LOST);
    return true;
}

static void on_node_reply(redisReply *reply, const char *err, void *arg)
{
    struct cl_req *q = arg;
    struct redis_client *o = q->cl->owner;
    if (q->cl->closing) { /* the owner is being destroyed: no enter/leave */
        req_end(q, reply, err);
        return;
    }
    redis_client_enter(o); /* a callback freeing the owner: the cluster stays until leave */
    if (err || reply->type != REDIS_REPLY_ERROR || !redirect(q, reply))
        req_end(q, reply, err);
    redis_client_leave(o);
}

static struct cl_node *any_node(struct redis_cluster *cl)
{
    for (size_t i = 0; i < cl->nnodes; i++) {
        struct cl_node *n = cl->nodes[(cl->rr + i) % cl->nnodes];
        if (n && n->rc && redis_client_state(n->rc) == REDIS_STATE_CONNECTED) {
            cl->rr = (cl->rr + i + 1) % cl->nnodes;
            return n;
        }
    }
    return NULL;
}

struct redis_pending *redis_cluster_command(struct redis_cluster *cl, const char *key,
                                            size_t keylen, redis_reply_fn fn, void *arg, char *cmd,
                                            size_t len)
{
    struct cl_node *n = NULL;
    struct cl_req *q = NULL;
    if (!cl->closing && cl->have_map) {
        if (!key) {
            n = any_node(cl);
        } else {
            uint8_t idx = cl->slots[redis_key_slot(key, keylen)];
            n = idx == REDIS_CLUSTER_NO_NODE ? NULL : cl->nodes[idx];
        }
    }
    if (!n || !n->rc || !(q = calloc(1, sizeof(*q))))
        goto fail;
    q->pub.fn = fn;
    q->pub.arg = arg;
    q->cl = cl;
    q->cmd = cmd;
    q->len = len;
    if (!node_send(n, q))
        goto fail;
    return &q->pub;
fail:
    /* the slot's master is unreachable: after a failover the map names another one */
    if (!cl->closing && cl->have_map)
        refresh_schedule(cl);
    free(q);
    free(cmd);
    return NULL;
}

void redis_client_on_cluster_node(struct redis_client *c,
                                  void (*fn)(const struct redis_client *node, enum redis_state st,
                                             void *arg),
                                  void *arg)
{
    c->node_fn = fn;
    c->node_arg = arg;
}

bool redis_cluster_all_nodes(const struct redis_client *c,
                             bool (*pred)(const struct redis_client *node, void *arg), void *arg)
{
    const struct redis_cluster *cl = c->cluster;
    if (!cl || !cl->have_map || cl->closing)
        return false;
    for (size_t i = 0; i < cl->nnodes; i++) {
        const struct cl_node *n = cl->nodes[i];
        if (!n || !n->rc || !pred(n->rc, arg))
            return false;
    }
    return true;
}

/* ---- lifecycle ---------------------------------------------------------- */

static int dup_opt(char **dst, const char *src)
{
    *dst = NULL;
    return src && !(*dst = strdup(src)) ? -1 : 0;
}

struct redis_cluster *redis_cluster_new(struct redis_client *owner, const struct redis_options *o,
                                        char *err, size_t errlen)
{
    const struct redis_cluster_options *co = o->cluster;
    struct redis_cluster *cl = calloc(1, sizeof(*cl));
    if (!cl)
        goto oom;
    cl->owner = owner;
    memset(cl->slots, REDIS_CLUSTER_NO_NODE, sizeof(cl->slots));
    cl->max_redirects = co->max_redirects ? co->max_redirects : DEFAULT_MAX_REDIRECTS;
    cl->nseeds = co->count;
    for (size_t i = 0; i < co->count; i++) {
        if (dup_opt(&cl->seeds[i], co->seeds[i].host) < 0)
            goto oom;
        cl->seed_ports[i] = co->seeds[i].port;
    }
    if (dup_opt(&cl->tls_ca, o->tls_ca) | dup_opt(&cl->tls_cert, o->tls_cert) |
        dup_opt(&cl->tls_key, o->tls_key))
        goto oom;
    if (!(cl->refresh_ev = evtimer_new(owner->base, refresh_cb, cl)))
        goto oom;
    return cl;
oom:
    snprintf(err, errlen, "out of memory");
    redis_cluster_free(cl);
    return NULL;
}

void redis_cluster_free(struct redis_cluster *cl)
{
    if (!cl)
        return;
    cl->closing = true;
    query_cancel(cl);
    if (cl->refresh_ev)
        event_free(cl->refresh_ev);
    for (size_t i = 0; i < cl->nnodes; i++)
        node_free(cl->nodes[i]);
    for (size_t i = 0; i < cl->nseeds; i++)
        free(cl->seeds[i]);
    free(cl->tls_ca);
    free(cl->tls_cert);
    free(cl->tls_key);
    free(cl);
}
