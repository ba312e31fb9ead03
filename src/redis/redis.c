/*
 * redis: asynchronous Redis client over a libevent bufferevent (see redis.h).
 *
 * One connection at a time. Commands are written to the bufferevent as soon as
 * they are queued and remembered in a FIFO of pending entries; replies parsed by
 * the hiredis reader are matched to the head of that FIFO. The handshake (AUTH,
 * SELECT, CLIENT SETNAME, CLIENT ID) uses the same FIFO with internal entries.
 * This file: state, the pending queue, reply parsing and dispatch, the
 * handshake, the command API. The transport, connecting, timers and the
 * client's creation are in redis_connect.c.
 *
 * Lifetimes: every entry from the event loop (bufferevent and timer callbacks)
 * and redis_client_free() run between redis_client_enter() / redis_client_leave();
 * a free asked for inside a user callback only marks the client dying, and the
 * memory goes when the outermost entry leaves. Each connection has a generation
 * number, so a loop that called a user callback can tell that the connection
 * it was reading has been torn down under it.
 */
#include "redis/redis.h"
#include "redis/redis_client.h"
#include "redis/redis_cluster.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#define MAX_REPLY_OBJECTS (1u << 20) /* elements in one reply, nested included */
#define FREE_LIST_MAX 256
#define ERR_SERVER_MAX 200 /* bytes of a server error message kept in last_error */

/* ---- state and lifetimes ------------------------------------------------ */

const char *redis_state_str(enum redis_state s)
{
    switch (s) {
    case REDIS_STATE_DOWN:
        return "down";
    case REDIS_STATE_CONNECTING:
        return "connecting";
    case REDIS_STATE_CONNECTED:
        return "connected";
    }
    return "?";
}

uint64_t redis_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t redis_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static struct timeval ms_tv(uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

void redis_timer_arm(struct event *ev, uint64_t ms)
{
    struct timeval tv = ms_tv(ms);
    evtimer_add(ev, &tv);
}

/* last_error is shown in logs and /healthz: keep it printable whatever the
 * server sent. */
void redis_set_error(struct redis_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->last_error, sizeof(c->last_error), fmt, ap);
    va_end(ap);
    for (char *p = c->last_error; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
}

void redis_set_state(struct redis_client *c, enum redis_state s)
{
    if (c->state == s)
        return;
    c->state = s;
    if (c->state_fn)
        c->state_fn(s, c->state_arg);
}

void redis_client_enter(struct redis_client *c)
{
    c->busy++;
}

void redis_client_leave(struct redis_client *c)
{
    if (--c->busy == 0 && c->dying)
        redis_client_destroy(c);
}

/* ---- pending entries ---------------------------------------------------- */

static struct redis_pending *pending_get(struct redis_client *c)
{
    struct redis_pending *p = c->free_list;
    if (p) {
        c->free_list = p->next;
        c->nfree--;
    } else if (!(p = malloc(sizeof(*p)))) {
        return NULL;
    }
    memset(p, 0, sizeof(*p));
    return p;
}

static void pending_put(struct redis_client *c, struct redis_pending *p)
{
    if (c->nfree >= FREE_LIST_MAX || c->dying) {
        free(p);
        return;
    }
    p->next = c->free_list;
    c->free_list = p;
    c->nfree++;
}

static struct redis_pending *pending_pop(struct redis_client *c)
{
    struct redis_pending *p = c->head;
    c->head = p->next;
    if (!c->head)
        c->tail = NULL;
    c->inflight--;
    return p;
}

/* Fails every queued command with err. The queue is detached first, so a
 * callback that issues a command (it gets NULL: state is already DOWN) or frees
 * the client does not see a half-walked list. */
void redis_fail_all(struct redis_client *c, const char *err)
{
    struct redis_pending *list = c->head;
    c->head = c->tail = NULL;
    c->inflight = 0;
    while (list) {
        struct redis_pending *p = list;
        list = p->next;
        if (p->kind == PK_USER && p->fn)
            p->fn(NULL, err, p->arg);
        pending_put(c, p);
    }
}

/* ---- reply parsing ------------------------------------------------------ */

/* The hiredis object constructors, wrapped to bound what a hostile server can
 * make us allocate for one reply (hiredis 0.14 has no limit of its own besides
 * the nesting depth). Returning NULL makes the reader fail with "Out of memory". */
static bool reply_budget(struct redis_client *c, size_t bytes)
{
    c->reply_objs++;
    c->reply_bytes += bytes + sizeof(redisReply);
    if (c->reply_objs > MAX_REPLY_OBJECTS || c->reply_bytes > c->max_reply_bytes) {
        c->reply_too_large = true;
        return false;
    }
    return true;
}

static void *wrap_string(const redisReadTask *t, char *s, size_t len)
{
    struct redis_client *c = t->privdata;
    return reply_budget(c, len) ? c->dfn->createString(t, s, len) : NULL;
}

static void *wrap_array(const redisReadTask *t, int n)
{
    struct redis_client *c = t->privdata;
    if (n < 0 || (size_t)n > MAX_REPLY_OBJECTS) {
        c->reply_too_large = true;
        return NULL;
    }
    return reply_budget(c, (size_t)n * sizeof(void *)) ? c->dfn->createArray(t, n) : NULL;
}

static void *wrap_integer(const redisReadTask *t, long long v)
{
    struct redis_client *c = t->privdata;
    return reply_budget(c, 0) ? c->dfn->createInteger(t, v) : NULL;
}

static void *wrap_nil(const redisReadTask *t)
{
    struct redis_client *c = t->privdata;
    return reply_budget(c, 0) ? c->dfn->createNil(t) : NULL;
}

redisReplyObjectFunctions redis_reply_fns = {
    .createString = wrap_string,
    .createArray = wrap_array,
    .createInteger = wrap_integer,
    .createNil = wrap_nil,
    .freeObject = freeReplyObject,
};

static bool str_is(const redisReply *r, const char *s)
{
    size_t n = strlen(s);
    return r && r->type == REDIS_REPLY_STRING && r->len == n && strncasecmp(r->str, s, n) == 0;
}

enum reply_class { RC_NORMAL, RC_MESSAGE, RC_CONFIRM };

/* On a subscribed connection (RESP2), pubsub messages are arrays that answer
 * no command; (un)subscribe confirmations answer a command with one reply per
 * channel. */
static enum reply_class reply_classify(const struct redis_client *c, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3)
        return RC_NORMAL;
    const redisReply *k = r->element[0];
    if (c->subscribed && (str_is(k, "message") || str_is(k, "pmessage") || str_is(k, "smessage")))
        return RC_MESSAGE;
    if (!c->subscribed && !(c->head && c->head->subscription))
        return RC_NORMAL;
    if (str_is(k, "subscribe") || str_is(k, "psubscribe") || str_is(k, "ssubscribe") ||
        str_is(k, "unsubscribe") || str_is(k, "punsubscribe") || str_is(k, "sunsubscribe"))
        return RC_CONFIRM;
    return RC_NORMAL;
}

static void deliver_push(struct redis_client *c, redisReply *r)
{
    if (c->push_fn)
        c->push_fn(r, c->push_arg);
}

static void handshake_reply(struct redis_client *c, enum pending_kind kind, redisReply *r);

/* Hands one complete reply to its owner and frees it. Returns -1 when the
 * reply cannot be matched (the stream is out of sync: the caller drops the
 * connection). */
static int dispatch_reply(struct redis_client *c, redisReply *r)
{
    enum reply_class rc = reply_classify(c, r);
    if (rc == RC_CONFIRM) {
        /* The subscription count tells whether messages may follow; it is
         * only trusted from confirmations, never from what was sent. */
        const redisReply *count = r->element[2];
        if (count && count->type == REDIS_REPLY_INTEGER)
            c->subscribed = count->integer > 0;
        if (!(c->head && c->head->subscription)) {
            rc = RC_MESSAGE; /* surplus, e.g. UNSUBSCRIBE without channels */
        } else if (--c->head->replies_left > 0) {
            freeReplyObject(r);
            return 0;
        }
    }
    if (rc == RC_MESSAGE) {
        deliver_push(c, r);
        freeReplyObject(r);
        return 0;
    }
    if (!c->head) {
        freeReplyObject(r);
        return -1;
    }
    struct redis_pending *p = pending_pop(c);
    unsigned gen = c->gen;
    if (p->kind != PK_USER)
        handshake_reply(c, p->kind, r);
    else if (p->fn) {
        if (c->latency_fn)
            c->latency_fn(redis_now_us() - p->sent_us, c->latency_arg);
        p->fn(r, NULL, p->arg);
    }
    /* Sentinel mode: a write refused by a replica means the master moved under
     * this connection (the command got its error reply; the others fail now). */
    bool readonly = c->sentinel && r->type == REDIS_REPLY_ERROR && r->str &&
                    strncmp(r->str, "READONLY", 8) == 0 && !c->dying && gen == c->gen;
    freeReplyObject(r);
    pending_put(c, p);
    if (readonly)
        redis_conn_fail(c, ERR_LOST, "%s answered READONLY: no longer the master", c->addr);
    return 0;
}

static void protocol_error(struct redis_client *c, const char *what)
{
    if (c->reply_too_large)
        redis_conn_fail(c, ERR_PROTOCOL, "protocol error: reply larger than the configured limits");
    else
        redis_conn_fail(c, ERR_PROTOCOL, "protocol error: %s", what);
}

/* Parses and dispatches every complete reply in the reader. Returns -1 when the
 * connection is gone (error, or torn down by a callback). */
static int parse_replies(struct redis_client *c, unsigned gen)
{
    for (;;) {
        void *r = NULL;
        if (redisReaderGetReply(c->reader, &r) != REDIS_OK) {
            protocol_error(c, c->reader->errstr);
            return -1;
        }
        if (!r)
            break;
        c->reply_objs = c->reply_bytes = 0;
        if (dispatch_reply(c, r) < 0) {
            redis_conn_fail(c, ERR_PROTOCOL, "protocol error: reply without a pending command");
            return -1;
        }
        if (c->dying || gen != c->gen)
            return -1;
    }
    /* A partial reply's unparsed bytes count against the limit too, so an
     * endless bulk string cannot grow the reader's buffer without bound. */
    if (c->reader->len - c->reader->pos + c->reply_bytes > c->max_reply_bytes) {
        c->reply_too_large = true;
        protocol_error(c, NULL);
        return -1;
    }
    return 0;
}

void redis_read_cb(struct bufferevent *bev, void *arg)
{
    struct redis_client *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    unsigned gen = c->gen;

    redis_client_enter(c);
    c->activity = true;
    while (evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        if (redisReaderFeed(c->reader, v.iov_base, v.iov_len) != REDIS_OK) {
            protocol_error(c, c->reader->errstr);
            break;
        }
        evbuffer_drain(in, v.iov_len);
        if (parse_replies(c, gen) < 0)
            break;
    }
    redis_client_leave(c);
}

/* ---- handshake ---------------------------------------------------------- */

static void handshake_done(struct redis_client *c)
{
    unsigned gen = c->gen;
    evtimer_del(c->connect_ev);
    c->attempts = 0;
    if (c->connect_fn) {
        c->in_on_connect = true;
        c->connect_fn(c, c->connect_arg);
        c->in_on_connect = false;
        if (c->dying || gen != c->gen)
            return;
    }
    redis_set_state(c, REDIS_STATE_CONNECTED);
    if (c->dying || gen != c->gen)
        return;
    if (c->head && !evtimer_pending(c->cmd_ev, NULL))
        redis_timer_arm(c->cmd_ev, c->timeout_ms);
    if (c->ping_ev) {
        struct timeval tv = ms_tv(c->ping_interval_ms);
        c->activity = false;
        event_add(c->ping_ev, &tv);
    }
}

/* CLIENT SETNAME / CLIENT ID may be refused by an ACL or unknown to a proxy:
 * that costs a name or the id, not the connection. Anything else (NOAUTH,
 * LOADING...) means the connection is unusable. */
static bool handshake_error_tolerable(const redisReply *r)
{
    return strncmp(r->str, "ERR", 3) == 0 || strncmp(r->str, "NOPERM", 6) == 0;
}

/* Sentinel mode: the address the sentinels gave must be a master now, not a
 * replica (a sentinel that has not seen the failover yet, or the old master
 * demoted). ROLE's first element is "master", "slave" or "sentinel". */
static void role_check(struct redis_client *c, const redisReply *r, int n)
{
    if (r->type == REDIS_REPLY_ERROR) {
        redis_conn_fail(c, ERR_LOST, "ROLE failed: %.*s", n, r->str);
        return;
    }
    const redisReply *role = r->type == REDIS_REPLY_ARRAY && r->elements > 0 ? r->element[0] : NULL;
    if (str_is(role, "master"))
        return;
    char what[16] = "?";
    if (role && role->type == REDIS_REPLY_STRING)
        snprintf(what, sizeof(what), "%.*s", (int)(role->len < 15 ? role->len : 15), role->str);
    redis_conn_fail(c, ERR_LOST, "%s is not the master (ROLE: %s)", c->addr, what);
}

static void handshake_reply(struct redis_client *c, enum pending_kind kind, redisReply *r)
{
    bool is_err = r->type == REDIS_REPLY_ERROR;
    int n = (int)(r->len < ERR_SERVER_MAX ? r->len : ERR_SERVER_MAX);

    /* Wrong or missing credentials do not fix themselves in 50 ms: retry at
     * the slowest pace rather than hammer the server with failing AUTHs. */
    if (is_err && (strncmp(r->str, "WRONGPASS", 9) == 0 || strncmp(r->str, "NOAUTH", 6) == 0))
        c->attempts = 64;

    switch (kind) {
    case PK_AUTH:
        if (is_err)
            redis_conn_fail(c, ERR_LOST, "AUTH failed: %.*s", n, r->str);
        break;
    case PK_SELECT:
        if (is_err)
            redis_conn_fail(c, ERR_LOST, "SELECT %d failed: %.*s", c->database, n, r->str);
        break;
    case PK_SETNAME:
        if (is_err && !handshake_error_tolerable(r))
            redis_conn_fail(c, ERR_LOST, "CLIENT SETNAME failed: %.*s", n, r->str);
        break;
    case PK_ID:
        if (is_err && !handshake_error_tolerable(r)) {
            redis_conn_fail(c, ERR_LOST, "CLIENT ID failed: %.*s", n, r->str);
            break;
        }
        c->client_id = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        handshake_done(c);
        break;
    case PK_ROLE:
        role_check(c, r, n);
        break;
    case PK_PING:
    case PK_USER:
        break;
    }
}

/* Puts p at the end of the queue: replies arrive in the order commands were sent. */
static void pending_append(struct redis_client *c, struct redis_pending *p)
{
    if (c->tail)
        c->tail->next = p;
    else
        c->head = p;
    c->tail = p;
    c->inflight++;
}

/* Writes cmd and queues its pending entry. The caller checked the state. */
static struct redis_pending *enqueue(struct redis_client *c, enum pending_kind kind,
                                     redis_reply_fn fn, void *arg, const char *cmd, size_t len)
{
    struct redis_pending *p = pending_get(c);
    if (!p)
        return NULL;
    if (bufferevent_write(c->bev, cmd, len) != 0) {
        pending_put(c, p);
        return NULL;
    }
    p->fn = fn;
    p->arg = arg;
    p->kind = kind;
    p->replies_left = 1;
    p->deadline_ms = redis_now_ms() + c->timeout_ms;
    p->sent_us = c->latency_fn ? redis_now_us() : 0;
    pending_append(c, p);
    if (c->state == REDIS_STATE_CONNECTED && !evtimer_pending(c->cmd_ev, NULL))
        redis_timer_arm(c->cmd_ev, c->timeout_ms);
    return p;
}

int redis_enqueue_argv(struct redis_client *c, enum pending_kind kind, int argc, const char **argv,
                       const size_t *argvlen)
{
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0)
        return -1;
    struct redis_pending *p = enqueue(c, kind, NULL, NULL, cmd, (size_t)len);
    if (kind == PK_AUTH)
        OPENSSL_cleanse(cmd, (size_t)len);
    redisFreeCommand(cmd);
    return p ? 0 : -1;
}

int redis_send_handshake(struct redis_client *c, const char *pw, size_t pwlen)
{
    if (pw) {
        const char *argv[3] = {"AUTH", c->username, pw};
        size_t lens[3] = {4, c->username ? strlen(c->username) : 0, pwlen};
        if (!c->username) {
            argv[1] = pw;
            lens[1] = pwlen;
        }
        if (redis_enqueue_argv(c, PK_AUTH, c->username ? 3 : 2, argv, lens) < 0)
            return -1;
    }
    if (c->database) {
        char db[16];
        snprintf(db, sizeof(db), "%d", c->database);
        const char *argv[2] = {"SELECT", db};
        if (redis_enqueue_argv(c, PK_SELECT, 2, argv, NULL) < 0)
            return -1;
    }
    if (c->client_name) {
        const char *argv[3] = {"CLIENT", "SETNAME", c->client_name};
        if (redis_enqueue_argv(c, PK_SETNAME, 3, argv, NULL) < 0)
            return -1;
    }
    if (c->sentinel) {
        const char *argv[1] = {"ROLE"};
        if (redis_enqueue_argv(c, PK_ROLE, 1, argv, NULL) < 0)
            return -1;
    }
    const char *argv[2] = {"CLIENT", "ID"};
    return redis_enqueue_argv(c, PK_ID, 2, argv, NULL);
}

/* ---- command API -------------------------------------------------------- */

enum redis_state redis_client_state(const struct redis_client *c)
{
    return c->state;
}

const char *redis_client_last_error(const struct redis_client *c)
{
    return c->last_error;
}

long long redis_client_id(const struct redis_client *c)
{
    return c->client_id;
}

void redis_client_on_state(struct redis_client *c, void (*fn)(enum redis_state, void *), void *arg)
{
    c->state_fn = fn;
    c->state_arg = arg;
}

void redis_client_on_push(struct redis_client *c, void (*fn)(redisReply *, void *), void *arg)
{
    c->push_fn = fn;
    c->push_arg = arg;
}

void redis_client_on_connect(struct redis_client *c, void (*fn)(struct redis_client *, void *),
                             void *arg)
{
    c->connect_fn = fn;
    c->connect_arg = arg;
}

void redis_client_on_sentinel(struct redis_client *c,
                              void (*fn)(enum redis_sentinel_event, const char *, const char *,
                                         const char *, void *),
                              void *arg)
{
    c->sentinel_fn = fn;
    c->sentinel_arg = arg;
}

void redis_client_on_latency(struct redis_client *c, void (*fn)(uint64_t, void *), void *arg)
{
    c->latency_fn = fn;
    c->latency_arg = arg;
}

void redis_client_on_cluster(struct redis_client *c, void (*fn)(enum redis_cluster_event, void *),
                             void *arg)
{
    c->cluster_fn = fn;
    c->cluster_arg = arg;
}

void redis_cancel(struct redis_pending *p)
{
    if (p)
        p->fn = NULL;
}

static bool can_send(const struct redis_client *c)
{
    return !c->dying && c->bev && c->inflight < c->max_inflight &&
           (c->state == REDIS_STATE_CONNECTED || c->in_on_connect);
}

/* (P|S)SUBSCRIBE and (P|S)UNSUBSCRIBE get one confirmation per channel. */
static bool is_subscription_command(const char *name, size_t len)
{
    static const char *const names[] = {"subscribe",   "psubscribe",   "ssubscribe",
                                        "unsubscribe", "punsubscribe", "sunsubscribe"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (len == strlen(names[i]) && strncasecmp(name, names[i], len) == 0)
            return true;
    return false;
}

static struct redis_pending *command_queue(struct redis_client *c, redis_reply_fn fn, void *arg,
                                           const char *cmd, size_t len, int argc, const char *name,
                                           size_t namelen)
{
    struct redis_pending *p = enqueue(c, PK_USER, fn, arg, cmd, len);
    if (p && is_subscription_command(name, namelen)) {
        p->subscription = true;
        p->replies_left = argc > 2 ? argc - 1 : 1;
    }
    return p;
}

struct redis_pending *redis_command_formatted(struct redis_client *c, redis_reply_fn fn, void *arg,
                                              const char *cmd, size_t len)
{
    return can_send(c) ? enqueue(c, PK_USER, fn, arg, cmd, len) : NULL;
}

struct redis_pending *redis_command_key(struct redis_client *c, const char *key, size_t keylen,
                                        redis_reply_fn fn, void *arg, int argc, const char **argv,
                                        const size_t *argvlen)
{
    char *cmd = NULL;
    if (!c->cluster)
        return redis_command_argv(c, fn, arg, argc, argv, argvlen);
    if (argc < 1 || c->dying)
        return NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0)
        return NULL;
    return redis_cluster_command(c->cluster, key, keylen, fn, arg, cmd, (size_t)len);
}

struct redis_pending *redis_command_argv(struct redis_client *c, redis_reply_fn fn, void *arg,
                                         int argc, const char **argv, const size_t *argvlen)
{
    char *cmd = NULL;
    if (c->cluster)
        return redis_command_key(c, NULL, 0, fn, arg, argc, argv, argvlen);
    if (!can_send(c) || argc < 1)
        return NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0)
        return NULL;
    size_t namelen = argvlen ? argvlen[0] : strlen(argv[0]);
    struct redis_pending *p = command_queue(c, fn, arg, cmd, (size_t)len, argc, argv[0], namelen);
    redisFreeCommand(cmd);
    return p;
}

/* Reads argc and the command name back from a command we formatted ourselves:
 * "*<argc>\r\n$<len>\r\n<name>\r\n...". */
static void command_peek(const char *cmd, int *argc, const char **name, size_t *namelen)
{
    char *end;
    *argc = (int)strtol(cmd + 1, &end, 10);
    *name = "";
    *namelen = 0;
    const char *dollar = strchr(end, '$');
    if (*argc < 1 || !dollar)
        return;
    *namelen = strtoul(dollar + 1, &end, 10);
    *name = end + 2;
}

struct redis_pending *redis_command(struct redis_client *c, redis_reply_fn fn, void *arg,
                                    const char *fmt, ...)
{
    char *cmd = NULL;
    if (c->dying || (!c->cluster && !can_send(c)))
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0)
        return NULL;
    if (c->cluster) /* no key: any node (not for subscriptions) */
        return redis_cluster_command(c->cluster, NULL, 0, fn, arg, cmd, (size_t)len);
    int argc;
    const char *name;
    size_t namelen;
    command_peek(cmd, &argc, &name, &namelen);
    if (argc < 1) { /* Redis answers nothing to an empty command */
        redisFreeCommand(cmd);
        return NULL;
    }
    struct redis_pending *p = command_queue(c, fn, arg, cmd, (size_t)len, argc, name, namelen);
    redisFreeCommand(cmd);
    return p;
}
