/*
 * redis_connect: the Redis client's transport and lifecycle (see redis.h):
 * options, the password, address resolution, the TLS session, the
 * bufferevent, connecting and the handshake's start, transport errors,
 * teardown with backoff, the connect / command / ping timers, and the
 * client's creation and destruction. Replies and commands are in redis.c.
 */
#include "redis/redis.h"
#include "redis/redis_client.h"
#include "redis/redis_cluster.h"
#include "redis/redis_sentinel.h"

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
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

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
#define MAX_PASSWORD_BYTES 4096

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
    if (c->sentinel)
        redis_sentinel_cancel(c->sentinel); /* an address asked for this attempt */
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
void redis_conn_fail(struct redis_client *c, const char *pend_err, const char *fmt, ...)
{
    if (fmt) {
        char buf[sizeof(c->last_error)];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        redis_set_error(c, "%s", buf);
    }
    if (!c->transport_up)
        c->addr_next++; /* "localhost" may give ::1 first while Redis listens on 127.0.0.1 */
    conn_close(c);
    redis_set_state(c, REDIS_STATE_DOWN);
    redis_fail_all(c, pend_err);
    if (!c->dying)
        redis_timer_arm(c->retry_ev, backoff_next(c));
}

/* ---- connecting --------------------------------------------------------- */

/* Reads the password from its file or environment variable into buf.
 * Returns 1 with *len set, 0 when none is configured, -1 (last_error set). */
static int password_load(struct redis_client *c, char *buf, size_t cap, size_t *len)
{
    if (c->password_env) {
        const char *v = getenv(c->password_env);
        if (!v) {
            redis_set_error(c, "password variable %s is not set", c->password_env);
            return -1;
        }
        *len = strlen(v);
        if (*len >= cap) {
            redis_set_error(c, "password in %s is too long", c->password_env);
            return -1;
        }
        memcpy(buf, v, *len);
    } else if (c->password_file) {
        int fd = open(c->password_file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            redis_set_error(c, "cannot open password file %s: %s", c->password_file,
                            strerror(errno));
            return -1;
        }
        ssize_t n = read(fd, buf, cap);
        close(fd);
        if (n < 0 || (size_t)n >= cap) {
            redis_set_error(c, "cannot read password file %s: %s", c->password_file,
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
        redis_set_error(c, "cannot resolve %s: %s", c->host, rc ? gai_strerror(rc) : "no address");
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
        redis_set_error(c, "out of memory or TLS setup failed");
        goto out;
    }
    c->dfn = c->reader->fn;
    c->reader->fn = &redis_reply_fns;
    c->reader->privdata = c;
    bufferevent_setcb(c->bev, redis_read_cb, NULL, event_cb, c);
    if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) < 0 ||
        bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, (int)sslen) < 0) {
        redis_set_error(c, "connect to %s failed: %s", c->addr, strerror(errno));
        goto out;
    }
    if (ss.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(bufferevent_getfd(c->bev), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    }
    if (redis_send_handshake(c, has_pw ? pw : NULL, pwlen) < 0) {
        redis_set_error(c, "out of memory");
        goto out;
    }
    rc = 0;
out:
    OPENSSL_cleanse(pw, sizeof(pw));
    return rc;
}

static void connect_open(struct redis_client *c)
{
    if (conn_open(c) < 0) {
        redis_conn_fail(c, ERR_LOST, NULL);
        return;
    }
    redis_timer_arm(c->connect_ev, c->connect_timeout_ms);
}

static void connect_start(struct redis_client *c)
{
    redis_set_state(c, REDIS_STATE_CONNECTING);
    if (c->dying)
        return;
    if (c->sentinel) /* the master's address first: redis_connect_to() goes on */
        redis_sentinel_resolve(c->sentinel);
    else if (c->cluster) /* the slot map first: the nodes' connections follow */
        redis_cluster_refresh(c->cluster);
    else
        connect_open(c);
}

int redis_client_set_target(struct redis_client *c, const char *host, uint16_t port)
{
    char *h = strdup(host);
    if (!h)
        return -1;
    free(c->host);
    c->host = h;
    c->port = port;
    c->addr_next = 0;
    snprintf(c->addr, sizeof(c->addr), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
             (unsigned)port);
    return 0;
}

void redis_connect_to(struct redis_client *c, const char *host, uint16_t port)
{
    if (redis_client_set_target(c, host, port) < 0) {
        redis_conn_fail(c, ERR_LOST, "out of memory");
        return;
    }
    connect_open(c);
}

void redis_conn_restart(struct redis_client *c, const char *why)
{
    if (c->dying)
        return;
    if (c->state != REDIS_STATE_DOWN)
        redis_conn_fail(c, ERR_LOST, "%s", why);
    if (!c->dying)
        redis_timer_arm(c->retry_ev, 0);
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
    redis_client_enter(c);
    if (what & BEV_EVENT_CONNECTED) {
        c->transport_up = true;
    } else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        char why[200];
        const char *addr = c->addr;
        transport_error(c, bev, what, why, sizeof(why));
        if (!c->transport_up)
            redis_conn_fail(c, ERR_LOST, "connect to %s failed: %s", addr, why);
        else if (c->state == REDIS_STATE_CONNECTING)
            redis_conn_fail(c, ERR_LOST, "handshake with %s failed: %s", addr, why);
        else
            redis_conn_fail(c, ERR_LOST, "connection to %s lost: %s", addr, why);
    }
    redis_client_leave(c);
}

/* ---- timers ------------------------------------------------------------- */

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_client *c = arg;
    redis_client_enter(c);
    connect_start(c);
    redis_client_leave(c);
}

static void connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_client *c = arg;
    redis_client_enter(c);
    redis_conn_fail(c, ERR_LOST, "%s %s timed out after %llu ms",
                    c->transport_up ? "handshake with" : "connect to", c->addr,
                    (unsigned long long)c->connect_timeout_ms);
    redis_client_leave(c);
}

/* One timer for the oldest in-flight command, re-armed lazily: when it fires
 * early (the command it was set for has been answered) it re-arms for the new
 * head; when the head is late, the whole stream is failed. */
static void cmd_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_client *c = arg;
    if (c->state != REDIS_STATE_CONNECTED || !c->head)
        return;
    uint64_t now = redis_now_ms();
    if (c->head->deadline_ms > now) {
        redis_timer_arm(c->cmd_ev, c->head->deadline_ms - now);
        return;
    }
    redis_client_enter(c);
    redis_conn_fail(c, ERR_TIMEOUT, "command timed out after %llu ms",
                    (unsigned long long)c->timeout_ms);
    redis_client_leave(c);
}

/* Keeps an idle connection honest: a PING goes through the command timeout,
 * so a peer that vanished without a FIN is noticed within ping + timeout. */
static void ping_cb(evutil_socket_t fd, short what, void *arg)
{
    struct redis_client *c = arg;
    if (c->state == REDIS_STATE_CONNECTED && !c->activity && c->inflight == 0) {
        const char *argv[1] = {"PING"};
        redis_enqueue_argv(c, PK_PING, 1, argv, NULL);
    }
    c->activity = false;
}

/* ---- options and lifecycle ---------------------------------------------- */

static int opt_dup(char **dst, const char *src)
{
    *dst = NULL;
    return src && !(*dst = strdup(src)) ? -1 : 0;
}

static const char *sentinel_options_check(const struct redis_options *o)
{
    const struct redis_sentinel_options *so = o->sentinel;
    if (o->host || o->unix_path)
        return "host and unix_path are not used with sentinels";
    if (so->count < 1 || so->count > REDIS_SENTINEL_MAX)
        return "1 to 16 sentinels";
    for (size_t i = 0; i < so->count; i++)
        if (!so->addrs[i].host || so->addrs[i].port == 0)
            return "every sentinel needs a host and a port";
    if (!so->master_name || !*so->master_name)
        return "the sentinels' master_name must be set";
    if (so->password_file && so->password_env)
        return "sentinel password_file and password_env are exclusive";
    if (so->username && !so->password_file && !so->password_env)
        return "sentinel username needs a password_file or password_env";
    if (!so->tls_cert != !so->tls_key)
        return "sentinel tls_cert and tls_key go together";
    return NULL;
}

static const char *cluster_options_check(const struct redis_options *o)
{
    const struct redis_cluster_options *co = o->cluster;
    if (o->host || o->unix_path || o->sentinel)
        return "host, unix_path and sentinels are not used with a cluster";
    if (co->count < 1 || co->count > REDIS_CLUSTER_SEEDS_MAX)
        return "1 to 16 cluster seeds";
    for (size_t i = 0; i < co->count; i++)
        if (!co->seeds[i].host || co->seeds[i].port == 0)
            return "every cluster seed needs a host and a port";
    if (co->max_redirects > 16)
        return "cluster max_redirects is at most 16";
    if (o->database)
        return "a cluster has only database 0";
    return NULL;
}

static const char *options_check(const struct redis_options *o)
{
    if (o->cluster) {
        const char *why = cluster_options_check(o);
        if (why)
            return why;
    } else if (o->sentinel) {
        const char *why = sentinel_options_check(o);
        if (why)
            return why;
    } else if (!o->host == !o->unix_path)
        return "exactly one of host and unix_path must be set";
    if (o->host && o->port == 0)
        return "port must be set with host";
    if (o->unix_path && strlen(o->unix_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return "unix_path is too long";
    if (o->password_file && o->password_env)
        return "password_file and password_env are exclusive";
    if (o->username && !o->password_file && !o->password_env)
        return "username needs a password_file or password_env";
    if (o->tls && o->tls_verify && o->unix_path && !o->tls_server_name)
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
    if (o->cluster) /* the nodes have their own clients */
        snprintf(c->addr, sizeof(c->addr), "cluster");
    else if (o->sentinel) /* until the sentinels name the master */
        snprintf(c->addr, sizeof(c->addr), "master %.200s", o->sentinel->master_name);
    else if (o->unix_path)
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
    char sentinel_err[200];

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
    if (o->sentinel &&
        !(c->sentinel = redis_sentinel_new(c, o->sentinel, sentinel_err, sizeof(sentinel_err)))) {
        why = sentinel_err;
        goto fail;
    }
    if (o->cluster && !(c->cluster = redis_cluster_new(c, o, sentinel_err, sizeof(sentinel_err)))) {
        why = sentinel_err;
        goto fail;
    }
    if (getrandom(&c->rng, sizeof(c->rng), GRND_NONBLOCK) != sizeof(c->rng) || c->rng == 0)
        c->rng = redis_now_ms() ^ (uintptr_t)c ^ 0x9e3779b97f4a7c15ull;
    redis_timer_arm(c->retry_ev, 0);
    return c;
fail:
    if (err && errlen)
        snprintf(err, errlen, "redis: %s", why);
    ERR_clear_error();
    if (c)
        redis_client_destroy(c);
    return NULL;
}

void redis_client_destroy(struct redis_client *c)
{
    conn_close(c);
    redis_sentinel_free(c->sentinel);
    c->sentinel = NULL;
    redis_cluster_free(c->cluster);
    c->cluster = NULL;
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
    redis_client_enter(c);
    conn_close(c);
    evtimer_del(c->retry_ev);
    c->state = REDIS_STATE_DOWN; /* no hook: the owner is tearing down */
    redis_fail_all(c, ERR_SHUTDOWN);
    redis_client_leave(c);
}
