/*
 * redis_sentinel: the client's sentinel mode (redis_sentinel.h, redis.h).
 *
 * Why one subscription per data client rather than one per worker or per
 * process: a client is the unit that owns a connection and its backoff, and
 * src/redis/ knows nothing of workers. One subscriber per client needs no
 * state shared across clients or threads, and a switch reaches the client that
 * must act without any signal. The cost is a few idle connections per worker
 * to a sentinel (sessions, revocation and rate limits: three), which sentinels,
 * made to serve many clients, do not notice.
 *
 * Lifetimes: the query and the subscription are redis_clients owned by struct
 * redis_sentinel, which the data client (the owner) owns. Their callbacks run
 * inside their own enter/leave, and whatever they do to the owner runs inside
 * the owner's enter/leave: the owner may be freed by its own hooks there, and
 * s goes with it, so nothing touches s after redis_client_leave(owner).
 */
#include "redis/redis_sentinel.h"
#include "redis/redis_client.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENTINEL_MAX_REPLY_BYTES (16u << 10) /* an address, or a short error */
#define SENTINEL_MAX_PAYLOAD 512             /* a +switch-master message */
#define SENTINEL_PING_MS 1000                /* notice a silent sentinel on the subscription */
#define ADDR_TEXT_MAX (REDIS_SENTINEL_HOST_MAX + 8)

struct redis_sentinel {
    struct redis_client *owner;
    /* the options, copied */
    char *hosts[REDIS_SENTINEL_MAX];
    uint16_t ports[REDIS_SENTINEL_MAX];
    size_t n;
    char *master_name, *username, *password_file, *password_env;
    char *tls_ca, *tls_server_name, *tls_cert, *tls_key;
    bool tls, tls_verify;

    size_t cur;                 /* the sentinel that answered last: asked first */
    struct redis_client *q;     /* the query in flight, or NULL */
    size_t q_idx, q_tried;      /* which sentinel q talks to; how many were tried */
    char q_err[200];            /* why the last sentinel tried could not answer */
    struct redis_client *sub;   /* the +switch-master subscription */
    size_t sub_idx;             /* the sentinel sub talks to */
    char master[ADDR_TEXT_MAX]; /* "host:port" last handed to the owner, "" before */
};

/* ---- parsing what sentinels send --------------------------------------- */

static bool host_valid(const char *s, size_t len)
{
    unsigned char bin[sizeof(struct in6_addr)];
    char tmp[REDIS_SENTINEL_HOST_MAX];
    if (len == 0 || len >= sizeof(tmp) || memchr(s, '\0', len)) /* inet_pton stops at a NUL */
        return false;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    return inet_pton(AF_INET, tmp, bin) == 1 || inet_pton(AF_INET6, tmp, bin) == 1;
}

static bool port_parse(const char *s, size_t len, uint16_t *port)
{
    unsigned long v = 0;
    if (len == 0 || len > 5)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

int redis_sentinel_parse_addr(const redisReply *r, char host[REDIS_SENTINEL_HOST_MAX],
                              uint16_t *port, const char **why)
{
    if (!r) {
        *why = "no reply";
        return -1;
    }
    if (r->type == REDIS_REPLY_NIL) {
        *why = "master unknown to this sentinel";
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        *why = "error reply";
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !r->element[0] || !r->element[1] ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING) {
        *why = "not an array of two strings";
        return -1;
    }
    const redisReply *h = r->element[0], *p = r->element[1];
    if (!host_valid(h->str, h->len)) {
        *why = "the host is not a numeric IPv4 or IPv6 address";
        return -1;
    }
    if (!port_parse(p->str, p->len, port)) {
        *why = "the port is not a number in 1..65535";
        return -1;
    }
    memcpy(host, h->str, h->len);
    host[h->len] = '\0';
    return 0;
}

int redis_sentinel_parse_switch(const char *payload, size_t len, const char *name,
                                char host[REDIS_SENTINEL_HOST_MAX], uint16_t *port)
{
    const char *tok[5];
    size_t tlen[5], nt = 0, i = 0;
    if (!payload || len == 0 || len > SENTINEL_MAX_PAYLOAD)
        return -1;
    while (i < len) { /* exactly five fields separated by single spaces */
        size_t start = i;
        while (i < len && payload[i] != ' ')
            i++;
        if (i == start || nt == 5)
            return -1;
        tok[nt] = payload + start;
        tlen[nt++] = i - start;
        if (i < len && ++i == len)
            return -1; /* trailing space */
    }
    if (nt != 5)
        return -1;
    uint16_t old_port;
    if (!host_valid(tok[1], tlen[1]) || !port_parse(tok[2], tlen[2], &old_port) ||
        !host_valid(tok[3], tlen[3]) || !port_parse(tok[4], tlen[4], port))
        return -1;
    if (tlen[0] != strlen(name) || memcmp(tok[0], name, tlen[0]) != 0)
        return 0;
    memcpy(host, tok[3], tlen[3]);
    host[tlen[3]] = '\0';
    return 1;
}

static void addr_text(char *out, size_t len, const char *host, uint16_t port)
{
    snprintf(out, len, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
}

/* ---- connections to the sentinels -------------------------------------- */

static struct redis_client *sentinel_client(struct redis_sentinel *s, size_t idx, uint64_t ping_ms,
                                            char *err, size_t errlen)
{
    const struct redis_client *o = s->owner;
    struct redis_options opt = {
        .host = s->hosts[idx],
        .port = s->ports[idx],
        .username = s->username,
        .password_file = s->password_file,
        .password_env = s->password_env,
        .tls = s->tls,
        .tls_ca = s->tls_ca,
        .tls_server_name = s->tls_server_name,
        .tls_verify = s->tls_verify,
        .tls_cert = s->tls_cert,
        .tls_key = s->tls_key,
        /* a sentinel that does not answer within the connect timeout is skipped */
        .timeout_ms = o->connect_timeout_ms,
        .connect_timeout_ms = o->connect_timeout_ms,
        .backoff_min_ms = o->backoff_min_ms,
        .backoff_max_ms = o->backoff_max_ms,
        .client_name = "moat-sentinel",
        .max_inflight = 16,
        .max_reply_bytes = SENTINEL_MAX_REPLY_BYTES,
        .ping_interval_ms = ping_ms,
    };
    return redis_client_new(o->base, &opt, err, errlen);
}

static void emit(struct redis_sentinel *s, enum redis_sentinel_event ev, const char *was,
                 const char *now)
{
    struct redis_client *o = s->owner;
    if (o->sentinel_fn)
        o->sentinel_fn(ev, s->master_name, was, now, o->sentinel_arg);
}

/* ---- resolving ---------------------------------------------------------- */

static void query_next(struct redis_sentinel *s);

/* Hands the address to the owner. Last thing done with s (see the top). */
static void query_done(struct redis_sentinel *s, const char *host, uint16_t port)
{
    struct redis_client *o = s->owner;
    char now[ADDR_TEXT_MAX], was[ADDR_TEXT_MAX];
    addr_text(now, sizeof(now), host, port);
    redis_client_enter(o);
    if (strcmp(now, s->master) != 0) {
        snprintf(was, sizeof(was), "%s", s->master);
        snprintf(s->master, sizeof(s->master), "%s", now);
        emit(s, REDIS_SENTINEL_MASTER, was, now);
    }
    if (!o->dying && o->state == REDIS_STATE_CONNECTING)
        redis_connect_to(o, host, port);
    redis_client_leave(o);
}

static void on_query_reply(redisReply *reply, const char *err, void *arg)
{
    struct redis_sentinel *s = arg;
    char host[REDIS_SENTINEL_HOST_MAX];
    uint16_t port;
    const char *why;
    if (err || !s->q)
        return; /* the connection is gone: on_query_state moves on */
    struct redis_client *q = s->q;
    s->q = NULL;
    redis_client_free(q); /* released when this callback returns */
    if (redis_sentinel_parse_addr(reply, host, &port, &why) < 0) {
        int n = reply && reply->type == REDIS_REPLY_ERROR ? (int)(reply->len < 80 ? reply->len : 80)
                                                          : 0;
        snprintf(s->q_err, sizeof(s->q_err), "sentinel %s:%u: %s%s%.*s", s->hosts[s->q_idx],
                 (unsigned)s->ports[s->q_idx], why, n ? ": " : "", n, n ? reply->str : "");
        query_next(s);
        return;
    }
    s->cur = s->q_idx;
    query_done(s, host, port);
}

static void on_query_connect(struct redis_client *q, void *arg)
{
    struct redis_sentinel *s = arg;
    const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", s->master_name};
    emit(s, REDIS_SENTINEL_QUERY, NULL, NULL);
    if (!redis_command_argv(q, on_query_reply, s, 3, argv, NULL)) {
        snprintf(s->q_err, sizeof(s->q_err), "sentinel %s:%u: cannot send the query",
                 s->hosts[s->q_idx], (unsigned)s->ports[s->q_idx]);
        /* the state hook cannot tell: give up on this one now */
        s->q = NULL;
        redis_client_free(q);
        query_next(s);
    }
}

/* The query's connection failed (connect, TLS, AUTH, timeout): next sentinel. */
static void on_query_state(enum redis_state st, void *arg)
{
    struct redis_sentinel *s = arg;
    if (st != REDIS_STATE_DOWN || !s->q)
        return;
    struct redis_client *q = s->q;
    s->q = NULL;
    snprintf(s->q_err, sizeof(s->q_err), "sentinel %s:%u: %s", s->hosts[s->q_idx],
             (unsigned)s->ports[s->q_idx], redis_client_last_error(q));
    redis_client_free(q);
    query_next(s);
}

/* Asks the next sentinel not tried in this round, or fails the owner's attempt
 * when all were. */
static void query_next(struct redis_sentinel *s)
{
    struct redis_client *o = s->owner;
    while (s->q_tried < s->n) {
        char err[200];
        s->q_idx = (s->cur + s->q_tried++) % s->n;
        s->q = sentinel_client(s, s->q_idx, 0, err, sizeof(err));
        if (s->q) {
            redis_client_on_connect(s->q, on_query_connect, s);
            redis_client_on_state(s->q, on_query_state, s);
            return;
        }
        snprintf(s->q_err, sizeof(s->q_err), "sentinel %.60s:%u: %.120s", s->hosts[s->q_idx],
                 (unsigned)s->ports[s->q_idx], err);
    }
    redis_client_enter(o);
    if (!o->dying && o->state == REDIS_STATE_CONNECTING)
        redis_conn_fail(o, ERR_LOST, "no sentinel gave the address of master %s (last: %s)",
                        s->master_name, s->q_err);
    redis_client_leave(o);
}

void redis_sentinel_resolve(struct redis_sentinel *s)
{
    redis_sentinel_cancel(s);
    s->q_tried = 0;
    s->q_err[0] = '\0';
    query_next(s);
}

void redis_sentinel_cancel(struct redis_sentinel *s)
{
    if (!s || !s->q)
        return;
    struct redis_client *q = s->q;
    s->q = NULL;
    redis_client_free(q);
}

/* ---- watching for +switch-master ---------------------------------------- */

static void on_sub_confirmed(redisReply *reply, const char *err, void *arg)
{
    (void)reply;
    (void)err;
    (void)arg;
}

static void on_sub_connect(struct redis_client *sub, void *arg)
{
    struct redis_sentinel *s = arg;
    redis_command(sub, on_sub_confirmed, s, "SUBSCRIBE +switch-master");
}

/* ["message", "+switch-master", "<name> <old ip> <old port> <new ip> <new port>"] */
static void on_sub_push(redisReply *msg, void *arg)
{
    struct redis_sentinel *s = arg;
    char host[REDIS_SENTINEL_HOST_MAX], now[ADDR_TEXT_MAX], why[120 + ADDR_TEXT_MAX];
    uint16_t port;
    if (msg->type != REDIS_REPLY_ARRAY || msg->elements != 3 || !msg->element[2] ||
        msg->element[2]->type != REDIS_REPLY_STRING)
        return;
    const redisReply *payload = msg->element[2];
    if (redis_sentinel_parse_switch(payload->str, payload->len, s->master_name, host, &port) != 1)
        return;
    addr_text(now, sizeof(now), host, port);
    if (strcmp(now, s->master) == 0)
        return; /* already there (we resolved after the switch) */
    snprintf(why, sizeof(why), "master %.60s switched to %s (sentinel)", s->master_name, now);
    struct redis_client *o = s->owner;
    redis_client_enter(o);
    redis_conn_restart(o, why); /* resolves again: the sentinels have the new address */
    redis_client_leave(o);
}

/* Lost the subscription's sentinel: the next reconnect goes to the next one. */
static void on_sub_state(enum redis_state st, void *arg)
{
    struct redis_sentinel *s = arg;
    if (st != REDIS_STATE_DOWN || s->n < 2)
        return;
    s->sub_idx = (s->sub_idx + 1) % s->n;
    redis_client_set_target(s->sub, s->hosts[s->sub_idx], s->ports[s->sub_idx]);
}

/* ---- lifecycle ---------------------------------------------------------- */

static int dup_opt(char **dst, const char *src)
{
    *dst = NULL;
    return src && !(*dst = strdup(src)) ? -1 : 0;
}

static int options_copy(struct redis_sentinel *s, const struct redis_sentinel_options *so)
{
    s->n = so->count;
    for (size_t i = 0; i < so->count; i++) {
        if (dup_opt(&s->hosts[i], so->addrs[i].host) < 0)
            return -1;
        s->ports[i] = so->addrs[i].port;
    }
    s->tls = so->tls;
    s->tls_verify = so->tls_verify;
    return dup_opt(&s->master_name, so->master_name) | dup_opt(&s->username, so->username) |
           dup_opt(&s->password_file, so->password_file) |
           dup_opt(&s->password_env, so->password_env) | dup_opt(&s->tls_ca, so->tls_ca) |
           dup_opt(&s->tls_server_name, so->tls_server_name) | dup_opt(&s->tls_cert, so->tls_cert) |
           dup_opt(&s->tls_key, so->tls_key);
}

struct redis_sentinel *redis_sentinel_new(struct redis_client *owner,
                                          const struct redis_sentinel_options *so, char *err,
                                          size_t errlen)
{
    struct redis_sentinel *s = calloc(1, sizeof(*s));
    if (!s || options_copy(s, so) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    s->owner = owner;
    /* The subscription's options are checked here, once: a sentinel TLS file
     * that cannot be read is a configuration error, not a runtime one. */
    char why[200];
    if (!(s->sub = sentinel_client(s, 0, SENTINEL_PING_MS, why, sizeof(why)))) {
        snprintf(err, errlen, "sentinel: %s", why);
        goto fail;
    }
    redis_client_on_connect(s->sub, on_sub_connect, s);
    redis_client_on_push(s->sub, on_sub_push, s);
    redis_client_on_state(s->sub, on_sub_state, s);
    return s;
fail:
    redis_sentinel_free(s);
    return NULL;
}

void redis_sentinel_free(struct redis_sentinel *s)
{
    if (!s)
        return;
    redis_sentinel_cancel(s);
    redis_client_free(s->sub);
    for (size_t i = 0; i < s->n; i++)
        free(s->hosts[i]);
    char *strs[] = {s->master_name, s->username, s->password_file,   s->password_env,
                    s->tls_ca,      s->tls_cert, s->tls_server_name, s->tls_key};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        free(strs[i]);
    free(s);
}
