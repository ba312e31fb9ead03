/*
 * redis: asynchronous Redis client over a libevent bufferevent (see redis.h).
 *
 * One connection at a time. Commands are written to the bufferevent as soon as
 * they are queued and remembered in a FIFO of pending entries; replies parsed by
 * the hiredis reader are matched to the head of that FIFO. The handshake (AUTH,
 * SELECT, CLIENT SETNAME, CLIENT ID) uses the same FIFO with internal entries.
 *
 * Lifetimes: every entry from the event loop (bufferevent and timer callbacks)
 * and redis_client_free() run between client_enter() / client_leave(); a free
 * asked for inside a user callback only marks the client dying, and the memory
 * goes when the outermost entry leaves. Each connection has a generation
 * number, so a loop that called a user callback can tell that the connection
 * it was reading has been torn down under it.
 */
#include "redis/redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define DEFAULT_TIMEOUT_MS 1000
#define DEFAULT_CONNECT_TIMEOUT_MS 2000
#define DEFAULT_BACKOFF_MIN_MS 50
#define DEFAULT_BACKOFF_MAX_MS 2000
#define DEFAULT_MAX_INFLIGHT 10000
#define DEFAULT_MAX_REPLY_BYTES (16u << 20)
#define MAX_REPLY_OBJECTS (1u << 20) /* elements in one reply, nested included */
#define MAX_PASSWORD_BYTES 4096
#define FREE_LIST_MAX 256
#define ERR_SERVER_MAX 200 /* bytes of a server error message kept in last_error */

enum pending_kind { PK_USER, PK_AUTH, PK_SELECT, PK_SETNAME, PK_ID, PK_PING };

struct redis_pending {
    struct redis_pending *next;
    redis_reply_fn fn; /* NULL once cancelled */
    void *arg;
    uint64_t deadline_ms; /* monotonic */
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
    redisReplyObjectFunctions *dfn; /* hiredis defaults, wrapped by reply_fns */
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
};

static const char ERR_TIMEOUT[] = "timeout";
static const char ERR_LOST[] = "connection lost";
static const char ERR_PROTOCOL[] = "protocol error";
static const char ERR_SHUTDOWN[] = "shutdown";

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

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct timeval ms_tv(uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

static void timer_arm(struct event *ev, uint64_t ms)
{
    struct timeval tv = ms_tv(ms);
    evtimer_add(ev, &tv);
}

/* last_error is shown in logs and /healthz: keep it printable whatever the
 * server sent. */
static void set_error(struct redis_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->last_error, sizeof(c->last_error), fmt, ap);
    va_end(ap);
    for (char *p = c->last_error; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
}

static void set_state(struct redis_client *c, enum redis_state s)
{
    if (c->state == s)
        return;
    c->state = s;
    if (c->state_fn)
        c->state_fn(s, c->state_arg);
}

static void client_destroy(struct redis_client *c);

static void client_enter(struct redis_client *c)
{
    c->busy++;
}

static void client_leave(struct redis_client *c)
{
    if (--c->busy == 0 && c->dying)
        client_destroy(c);
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
static void fail_all(struct redis_client *c, const char *err)
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

/* ---- connection teardown and backoff ------------------------------------ */

static void conn_close(struct redis_client *c)
{
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    if (c->reader) {
        redisReaderFree(c->reader);
        c->reader = NULL;
    }
    evtimer_del(c->connect_ev);
    evtimer_del(c->cmd_ev);
    if (c->ping_ev)
        event_del(c->ping_ev);
    c->gen++;
    c->transport_up = c->subscribed = c->reply_too_large = false;
    c->reply_objs = c->reply_bytes = 0;
    c->client_id = 0;
    ERR_clear_error();
}

static uint64_t rng_next(struct redis_client *c)
{
    c->rng ^= c->rng << 13; /* xorshift64: jitter only, not secrets */
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return c->rng;
}

/* Capped exponential backoff with "equal jitter": [d/2, d]. */
static uint64_t backoff_next(struct redis_client *c)
{
    unsigned shift = c->attempts < 30 ? c->attempts : 30;
    uint64_t d = c->backoff_min_ms << shift;
    if (d > c->backoff_max_ms || d < c->backoff_min_ms)
        d = c->backoff_max_ms;
    if (c->attempts < 64)
        c->attempts++;
    return d / 2 + rng_next(c) % (d / 2 + 1);
}

/* Drops the connection: error text (if fmt), DOWN, every pending fails with
 * pend_err, reconnect after backoff. */
static void conn_fail(struct redis_client *c, const char *pend_err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conn_fail(struct redis_client *c, const char *pend_err, const char *fmt, ...)
{
    if (fmt) {
        char buf[sizeof(c->last_error)];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        set_error(c, "%s", buf);
    }
    if (!c->transport_up)
        c->addr_next++; /* "localhost" may give ::1 first while Redis listens on 127.0.0.1 */
    conn_close(c);
    set_state(c, REDIS_STATE_DOWN);
    fail_all(c, pend_err);
    if (!c->dying)
        timer_arm(c->retry_ev, backoff_next(c));
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

static redisReplyObjectFunctions reply_fns = {
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
    if (p->kind != PK_USER)
        handshake_reply(c, p->kind, r);
    else if (p->fn)
        p->fn(r, NULL, p->arg);
    freeReplyObject(r);
    pending_put(c, p);
    return 0;
}

static void protocol_error(struct redis_client *c, const char *what)
{
    if (c->reply_too_large)
        conn_fail(c, ERR_PROTOCOL, "protocol error: reply larger than the configured limits");
    else
        conn_fail(c, ERR_PROTOCOL, "protocol error: %s", what);
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
            conn_fail(c, ERR_PROTOCOL, "protocol error: reply without a pending command");
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

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct redis_client *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    unsigned gen = c->gen;

    client_enter(c);
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
    client_leave(c);
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
    set_state(c, REDIS_STATE_CONNECTED);
    if (c->dying || gen != c->gen)
        return;
    if (c->head && !evtimer_pending(c->cmd_ev, NULL))
        timer_arm(c->cmd_ev, c->timeout_ms);
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
            conn_fail(c, ERR_LOST, "AUTH failed: %.*s", n, r->str);
        break;
    case PK_SELECT:
        if (is_err)
            conn_fail(c, ERR_LOST, "SELECT %d failed: %.*s", c->database, n, r->str);
        break;
    case PK_SETNAME:
        if (is_err && !handshake_error_tolerable(r))
            conn_fail(c, ERR_LOST, "CLIENT SETNAME failed: %.*s", n, r->str);
        break;
    case PK_ID:
        if (is_err && !handshake_error_tolerable(r)) {
            conn_fail(c, ERR_LOST, "CLIENT ID failed: %.*s", n, r->str);
            break;
        }
        c->client_id = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        handshake_done(c);
        break;
    case PK_PING:
    case PK_USER:
        break;
    }
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
    p->deadline_ms = now_ms() + c->timeout_ms;
    if (c->tail)
        c->tail->next = p;
    else
        c->head = p;
    c->tail = p;
    c->inflight++;
    if (c->state == REDIS_STATE_CONNECTED && !evtimer_pending(c->cmd_ev, NULL))
        timer_arm(c->cmd_ev, c->timeout_ms);
    return p;
}

static int enqueue_argv(struct redis_client *c, enum pending_kind kind, int argc, const char **argv,
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

static int send_handshake(struct redis_client *c, const char *pw, size_t pwlen)
{
    if (pw) {
        const char *argv[3] = {"AUTH", c->username, pw};
        size_t lens[3] = {4, c->username ? strlen(c->username) : 0, pwlen};
        if (!c->username) {
            argv[1] = pw;
            lens[1] = pwlen;
        }
        if (enqueue_argv(c, PK_AUTH, c->username ? 3 : 2, argv, lens) < 0)
            return -1;
    }
    if (c->database) {
        char db[16];
        snprintf(db, sizeof(db), "%d", c->database);
        const char *argv[2] = {"SELECT", db};
        if (enqueue_argv(c, PK_SELECT, 2, argv, NULL) < 0)
            return -1;
    }
    if (c->client_name) {
        const char *argv[3] = {"CLIENT", "SETNAME", c->client_name};
        if (enqueue_argv(c, PK_SETNAME, 3, argv, NULL) < 0)
            return -1;
    }
    const char *argv[2] = {"CLIENT", "ID"};
    return enqueue_argv(c, PK_ID, 2, argv, NULL);
}

/* ---- connecting --------------------------------------------------------- */

/* Reads the password from its file or environment variable into buf.
 * Returns 1 with *len set, 0 when none is configured, -1 (last_error set). */
static int password_load(struct redis_client *c, char *buf, size_t cap, size_t *len)
{
    if (c->password_env) {
        const char *v = getenv(c->password_env);
        if (!v) {
            set_error(c, "password variable %s is not set", c->password_env);
            return -1;
        }
        *len = strlen(v);
        if (*len >= cap) {
            set_error(c, "password in %s is too long", c->password_env);
            return -1;
        }
        memcpy(buf, v, *len);
    } else if (c->password_file) {
        int fd = open(c->password_file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            set_error(c, "cannot open password file %s: %s", c->password_file, strerror(errno));
            return -1;
        }
        ssize_t n = read(fd, buf, cap);
        close(fd);
        if (n < 0 || (size_t)n >= cap) {
            set_error(c, "cannot read password file %s: %s", c->password_file,
                      n < 0 ? strerror(errno) : "too large");
            return -1;
        }
        *len = (size_t)n;
    } else {
        return 0;
    }
    while (*len > 0 && (buf[*len - 1] == '\n' || buf[*len - 1] == '\r'))
        (*len)--;
    return 1;
}

static bool is_ip_literal(const char *s)
{
    unsigned char tmp[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1;
}

/* Fills ss for the configured address. Hostnames resolve with a blocking
 * getaddrinfo() (documented in redis.h); numeric addresses never block. With
 * several addresses, each failed attempt moves on to the next one. */
static int address_resolve(struct redis_client *c, struct sockaddr_storage *ss, socklen_t *sslen)
{
    memset(ss, 0, sizeof(*ss));
    if (c->unix_path) {
        struct sockaddr_un *su = (struct sockaddr_un *)ss;
        su->sun_family = AF_UNIX;
        memcpy(su->sun_path, c->unix_path, strlen(c->unix_path) + 1);
        *sslen = (socklen_t)sizeof(*su);
        return 0;
    }
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)c->port);
    if (is_ip_literal(c->host))
        hints.ai_flags |= AI_NUMERICHOST;
    int rc = getaddrinfo(c->host, port, &hints, &res);
    if (rc != 0 || !res) {
        set_error(c, "cannot resolve %s: %s", c->host, rc ? gai_strerror(rc) : "no address");
        return -1;
    }
    unsigned n = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        n++;
    struct addrinfo *pick = res;
    for (unsigned i = c->addr_next % n; i > 0; i--)
        pick = pick->ai_next;
    memcpy(ss, pick->ai_addr, pick->ai_addrlen);
    *sslen = pick->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static SSL *tls_session_new(struct redis_client *c)
{
    SSL *ssl = SSL_new(c->ssl_ctx);
    const char *name = c->server_name ? c->server_name : c->host;
    if (!ssl || !name)
        return ssl;
    bool ip = is_ip_literal(name);
    if (!ip && !SSL_set_tlsext_host_name(ssl, name))
        goto fail;
    if (c->tls_verify) {
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (ip ? !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name)
               : !SSL_set1_host(ssl, name))
            goto fail;
    }
    return ssl;
fail:
    SSL_free(ssl);
    return NULL;
}

static void event_cb(struct bufferevent *bev, short what, void *arg);

static struct bufferevent *bev_new(struct redis_client *c)
{
    int opts = BEV_OPT_CLOSE_ON_FREE;
    if (!c->ssl_ctx)
        return bufferevent_socket_new(c->base, -1, opts);
    SSL *ssl = tls_session_new(c);
    if (!ssl)
        return NULL;
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(c->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, opts);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* Opens the transport and queues the handshake (written once connected).
 * Returns -1 with last_error set; the caller tears down. */
static int conn_open(struct redis_client *c)
{
    char pw[MAX_PASSWORD_BYTES];
    size_t pwlen = 0;
    struct sockaddr_storage ss;
    socklen_t sslen;
    int rc = -1;

    int has_pw = password_load(c, pw, sizeof(pw), &pwlen);
    if (has_pw < 0 || address_resolve(c, &ss, &sslen) < 0)
        goto out;
    if (!(c->reader = redisReaderCreate()) || !(c->bev = bev_new(c))) {
        set_error(c, "out of memory or TLS setup failed");
        goto out;
    }
    c->dfn = c->reader->fn;
    c->reader->fn = &reply_fns;
    c->reader->privdata = c;
    bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
    if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) < 0 ||
        bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, (int)sslen) < 0) {
        set_error(c, "connect to %s failed: %s", c->addr, strerror(errno));
        goto out;
    }
    if (ss.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(bufferevent_getfd(c->bev), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    }
    if (send_handshake(c, has_pw ? pw : NULL, pwlen) < 0) {
        set_error(c, "out of memory");
        goto out;
    }
    rc = 0;
out:
    OPENSSL_cleanse(pw, sizeof(pw));
    return rc;
}

static void connect_start(struct redis_client *c)
{
    set_state(c, REDIS_STATE_CONNECTING);
    if (c->dying)
        return;
    if (conn_open(c) < 0) {
        conn_fail(c, ERR_LOST, NULL);
        return;
    }
    timer_arm(c->connect_ev, c->connect_timeout_ms);
}

/* Describes why the transport failed: certificate verification first (the
 * most useful message), then other TLS errors, then the socket error. */
static void transport_error(struct redis_client *c, struct bufferevent *bev, short what, char *buf,
                            size_t len)
{
    int err = errno;
    if (what & BEV_EVENT_EOF) {
        snprintf(buf, len, "closed by the server");
        return;
    }
    if (c->ssl_ctx) {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
        unsigned long e, last = 0;
        while ((e = bufferevent_get_openssl_error(bev)) != 0)
            last = e;
        if (v != X509_V_OK) {
            snprintf(buf, len, "TLS certificate verification failed: %s",
                     X509_verify_cert_error_string(v));
            return;
        }
        if (last) {
            char e_str[160];
            ERR_error_string_n(last, e_str, sizeof(e_str));
            snprintf(buf, len, "TLS error: %s", e_str);
            return;
        }
    }
    snprintf(buf, len, "%s", err ? strerror(err) : "unknown error");
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct redis_client *c = arg;
    client_enter(c);
    if (what & BEV_EVENT_CONNECTED) {
        c->transport_up = true;
    } else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        char why[200];
        const char *addr = c->addr;
        transport_error(c, bev, what, why, sizeof(why));
        if (!c->transport_up)
            conn_fail(c, ERR_LOST, "connect to %s failed: %s", addr, why);
        else if (c->state == REDIS_STATE_CONNECTING)
            conn_fail(c, ERR_LOST, "handshake with %s failed: %s", addr, why);
        else
            conn_fail(c, ERR_LOST, "connection to %s lost: %s", addr, why);
    }
    client_leave(c);
}

/* ---- timers ------------------------------------------------------------- */

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_client *c = arg;
    client_enter(c);
    connect_start(c);
    client_leave(c);
}

static void connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_client *c = arg;
    client_enter(c);
    conn_fail(c, ERR_LOST, "%s %s timed out after %llu ms",
              c->transport_up ? "handshake with" : "connect to", c->addr,
              (unsigned long long)c->connect_timeout_ms);
    client_leave(c);
}

/* One timer for the oldest in-flight command, re-armed lazily: when it fires
 * early (the command it was set for has been answered) it re-arms for the new
 * head; when the head is late, the whole stream is failed. */
static void cmd_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_client *c = arg;
    if (c->state != REDIS_STATE_CONNECTED || !c->head)
        return;
    uint64_t now = now_ms();
    if (c->head->deadline_ms > now) {
        timer_arm(c->cmd_ev, c->head->deadline_ms - now);
        return;
    }
    client_enter(c);
    conn_fail(c, ERR_TIMEOUT, "command timed out after %llu ms", (unsigned long long)c->timeout_ms);
    client_leave(c);
}

/* Keeps an idle connection honest: a PING goes through the command timeout,
 * so a peer that vanished without a FIN is noticed within ping + timeout. */
static void ping_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_client *c = arg;
    if (c->state == REDIS_STATE_CONNECTED && !c->activity && c->inflight == 0) {
        const char *argv[1] = {"PING"};
        enqueue_argv(c, PK_PING, 1, argv, NULL);
    }
    c->activity = false;
}

/* ---- public API --------------------------------------------------------- */

static int opt_dup(char **dst, const char *src)
{
    *dst = NULL;
    return src && !(*dst = strdup(src)) ? -1 : 0;
}

static const char *options_check(const struct redis_options *o)
{
    if (!o->host == !o->unix_path)
        return "exactly one of host and unix_path must be set";
    if (o->host && o->port == 0)
        return "port must be set with host";
    if (o->unix_path && strlen(o->unix_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return "unix_path is too long";
    if (o->password_file && o->password_env)
        return "password_file and password_env are exclusive";
    if (o->username && !o->password_file && !o->password_env)
        return "username needs a password_file or password_env";
    if (o->tls && o->tls_verify && !o->host && !o->tls_server_name)
        return "tls over a unix socket needs tls_server_name to verify";
    if (!o->tls_cert != !o->tls_key)
        return "tls_cert and tls_key go together";
    if (o->database < 0)
        return "database must be >= 0";
    return NULL;
}

static const char *tls_ctx_build(struct redis_client *c, const struct redis_options *o)
{
    if (!(c->ssl_ctx = SSL_CTX_new(TLS_client_method())))
        return "cannot create TLS context";
    SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(c->ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(c->ssl_ctx, o->tls_verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (o->tls_ca ? !SSL_CTX_load_verify_locations(c->ssl_ctx, o->tls_ca, NULL)
                  : !SSL_CTX_set_default_verify_paths(c->ssl_ctx))
        return "cannot load the TLS CA";
    if (o->tls_cert && (!SSL_CTX_use_certificate_chain_file(c->ssl_ctx, o->tls_cert) ||
                        !SSL_CTX_use_PrivateKey_file(c->ssl_ctx, o->tls_key, SSL_FILETYPE_PEM) ||
                        !SSL_CTX_check_private_key(c->ssl_ctx)))
        return "cannot load the TLS client certificate or key";
    return NULL;
}

static int options_copy(struct redis_client *c, const struct redis_options *o)
{
    if (opt_dup(&c->host, o->host) || opt_dup(&c->unix_path, o->unix_path) ||
        opt_dup(&c->username, o->username) || opt_dup(&c->password_file, o->password_file) ||
        opt_dup(&c->password_env, o->password_env) ||
        opt_dup(&c->server_name, o->tls_server_name) || opt_dup(&c->client_name, o->client_name))
        return -1;
    c->port = o->port;
    if (o->unix_path)
        snprintf(c->addr, sizeof(c->addr), "%s", o->unix_path);
    else
        snprintf(c->addr, sizeof(c->addr), strchr(o->host, ':') ? "[%s]:%u" : "%s:%u", o->host,
                 (unsigned)o->port);
    c->database = o->database;
    c->tls_verify = o->tls_verify;
    c->timeout_ms = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->connect_timeout_ms =
        o->connect_timeout_ms ? o->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    c->backoff_min_ms = o->backoff_min_ms ? o->backoff_min_ms : DEFAULT_BACKOFF_MIN_MS;
    c->backoff_max_ms = o->backoff_max_ms ? o->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS;
    if (c->backoff_max_ms < c->backoff_min_ms)
        c->backoff_max_ms = c->backoff_min_ms;
    c->ping_interval_ms = o->ping_interval_ms;
    c->max_inflight = o->max_inflight ? o->max_inflight : DEFAULT_MAX_INFLIGHT;
    c->max_reply_bytes = o->max_reply_bytes ? o->max_reply_bytes : DEFAULT_MAX_REPLY_BYTES;
    return 0;
}

static int events_create(struct redis_client *c)
{
    c->retry_ev = evtimer_new(c->base, retry_cb, c);
    c->connect_ev = evtimer_new(c->base, connect_timeout_cb, c);
    c->cmd_ev = evtimer_new(c->base, cmd_timeout_cb, c);
    if (c->ping_interval_ms)
        c->ping_ev = event_new(c->base, -1, EV_PERSIST, ping_cb, c);
    if (!c->retry_ev || !c->connect_ev || !c->cmd_ev || (c->ping_interval_ms && !c->ping_ev))
        return -1;
    return 0;
}

struct redis_client *redis_client_new(struct event_base *base, const struct redis_options *o,
                                      char *err, size_t errlen)
{
    const char *why = options_check(o);
    struct redis_client *c = NULL;

    if (why)
        goto fail;
    why = "out of memory";
    if (!(c = calloc(1, sizeof(*c))))
        goto fail;
    c->base = base;
    c->state = REDIS_STATE_CONNECTING; /* the first attempt is scheduled below */
    if (options_copy(c, o) < 0 || events_create(c) < 0)
        goto fail;
    if (o->tls && (why = tls_ctx_build(c, o)) != NULL)
        goto fail;
    if (getrandom(&c->rng, sizeof(c->rng), GRND_NONBLOCK) != sizeof(c->rng) || c->rng == 0)
        c->rng = now_ms() ^ (uintptr_t)c ^ 0x9e3779b97f4a7c15ull;
    timer_arm(c->retry_ev, 0);
    return c;
fail:
    if (err && errlen)
        snprintf(err, errlen, "redis: %s", why);
    ERR_clear_error();
    if (c)
        client_destroy(c);
    return NULL;
}

static void client_destroy(struct redis_client *c)
{
    conn_close(c);
    struct event *evs[] = {c->retry_ev, c->connect_ev, c->cmd_ev, c->ping_ev};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        if (evs[i])
            event_free(evs[i]);
    while (c->free_list) {
        struct redis_pending *p = c->free_list;
        c->free_list = p->next;
        free(p);
    }
    SSL_CTX_free(c->ssl_ctx);
    char *strs[] = {c->host,         c->unix_path,   c->username,   c->password_file,
                    c->password_env, c->server_name, c->client_name};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        free(strs[i]);
    free(c);
}

void redis_client_free(struct redis_client *c)
{
    if (!c || c->dying)
        return;
    c->dying = true;
    client_enter(c);
    conn_close(c);
    evtimer_del(c->retry_ev);
    c->state = REDIS_STATE_DOWN; /* no hook: the owner is tearing down */
    fail_all(c, ERR_SHUTDOWN);
    client_leave(c);
}

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

struct redis_pending *redis_command_argv(struct redis_client *c, redis_reply_fn fn, void *arg,
                                         int argc, const char **argv, const size_t *argvlen)
{
    char *cmd = NULL;
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
    if (!can_send(c))
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0)
        return NULL;
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
