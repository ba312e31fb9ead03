#include "upstream/upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <math.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "config/config.h"
#include "observe/log.h"
#include "core/membudget.h"
#include "util/netutil.h"
#include "core/snapshot.h"
#include "upstream/upstream_state.h"
#include "upstream/upstream_tls.h"
#include "util/monotime.h"
#include "core/worker.h"

/* Idle kept-alive upstream connections are closed after this; below common
   upstream keep-alive timeouts (node: 5 s) to avoid racing their close. */
#define IDLE_MS 4000
/* A connection this close to its idle timeout is not reused: its timer may already
   have fired in this loop turn, and the timeout would then reach the new request (a
   504 after the request waited ~IDLE_MS in an admission queue). */
#define IDLE_REUSE_MS (IDLE_MS - 500)

struct upstream_server {
    struct upstream_pool *pool;
    const struct config_addr *addr;
    struct sockaddr_storage sa;
    socklen_t salen;
    struct server_state *st; /* instance-wide (upstream_state.h) */
    struct upstream_conn *idle;
    size_t num_idle;
    long cw; /* smooth weighted round robin: this worker's current weight */
};

struct upstream_pool {
    struct upstream_set *set;
    const struct config_upstream *cfg;
    SSL_CTX *tls; /* owned by the snapshot; NULL for plain TCP */
    struct upstream_server *servers;
    struct pool_state *st;
    struct server_state *const *peers; /* NULL-ended, for the ejected share */
    unsigned rr;
};

struct upstream_set {
    struct worker *w;
    const struct config *cfg;
    struct upstream_pool *pools;
    size_t num_pools;
};

int upstream_resolve(const struct config_addr *a, struct sockaddr_storage *sa, socklen_t *len)
{
    memset(sa, 0, sizeof *sa);
    if (a->path) {
        struct sockaddr_un *un = (struct sockaddr_un *)sa;
        un->sun_family = AF_UNIX;
        snprintf(un->sun_path, sizeof un->sun_path, "%s", a->path);
        *len = sizeof *un;
        return 0;
    }
    if (netutil_sockaddr_numeric(a->host, a->port, sa, len) == 0)
        return 0;
    struct sockaddr_in *in4 = (struct sockaddr_in *)sa;
    if (!strcmp(a->host, "localhost")) {
        in4->sin_family = AF_INET;
        in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        in4->sin_port = htons(a->port);
        *len = sizeof *in4;
        return 0;
    }
    return -1;
}

struct upstream_set *upstream_set_new(struct worker *w, const struct snapshot *snap)
{
    const struct config *cfg = snap->cfg;
    struct upstream_set *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->w = w;
    s->cfg = cfg;
    s->pools = calloc(cfg->num_upstreams ? cfg->num_upstreams : 1, sizeof *s->pools);
    if (!s->pools)
        goto fail;
    s->num_pools = cfg->num_upstreams;
    for (size_t i = 0; i < cfg->num_upstreams; i++) {
        struct upstream_pool *p = &s->pools[i];
        p->set = s;
        p->cfg = &cfg->upstreams[i];
        p->tls = snap->upstream_tls ? snap->upstream_tls[i] : NULL;
        p->st = snap->ustates->pools[i];
        p->peers = snap->ustates->servers[i];
        p->servers = calloc(p->cfg->num_servers, sizeof *p->servers);
        if (!p->servers)
            goto fail;
        for (size_t k = 0; k < p->cfg->num_servers; k++) {
            struct upstream_server *srv = &p->servers[k];
            srv->pool = p;
            srv->st = snap->ustates->servers[i][k];
            srv->addr = &p->cfg->servers[k];
            if (upstream_resolve(srv->addr, &srv->sa, &srv->salen) < 0)
                log_msg(LOG_WARN, "upstream %s: cannot resolve %s (numeric addresses only)",
                        p->cfg->name, srv->addr->text);
        }
    }
    return s;
fail:
    upstream_set_free(s);
    return NULL;
}

/* Upstream buffers count into the worker's buffered bytes (limits.max_memory). */
static int track_buffers(struct upstream_conn *uc, bool on)
{
    struct worker *w = uc->srv->pool->set->w;
    struct evbuffer *bufs[2] = {bufferevent_get_input(uc->bev), bufferevent_get_output(uc->bev)};
    for (int i = 0; i < 2; i++) {
        if (!on)
            membudget_untrack(w, bufs[i]);
        else if (membudget_track(w, bufs[i]) < 0)
            return -1;
    }
    return 0;
}

static void conn_close(struct upstream_conn *uc)
{
    track_buffers(uc, false);
    bufferevent_free(uc->bev);
    free(uc);
}

static void unlink_idle(struct upstream_conn *uc)
{
    struct upstream_server *srv = uc->srv;
    for (struct upstream_conn **pp = &srv->idle; *pp; pp = &(*pp)->next_idle) {
        if (*pp == uc) {
            *pp = uc->next_idle;
            uc->next_idle = NULL;
            srv->num_idle--;
            return;
        }
    }
}

void upstream_set_free(struct upstream_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->num_pools && s->pools; i++) {
        struct upstream_pool *p = &s->pools[i];
        for (size_t k = 0; p->servers && k < p->cfg->num_servers; k++) {
            while (p->servers[k].idle) {
                struct upstream_conn *uc = p->servers[k].idle;
                unlink_idle(uc);
                conn_close(uc);
            }
        }
        free(p->servers);
    }
    free(s->pools);
    free(s);
}

static struct upstream_pool *find_pool(struct upstream_set *s, const struct config_upstream *u)
{
    for (size_t i = 0; i < s->num_pools; i++)
        if (s->pools[i].cfg == u || !strcmp(s->pools[i].cfg->name, u->name))
            return &s->pools[i];
    return NULL;
}

/* Weights are scaled so that slow start can ramp a weight of 1 in small steps. */
#define WEIGHT_SCALE 100

/* The servers a request may go to now, and whether the pool panics. */
struct candidates {
    struct upstream_server *srv[UPSTREAM_MAX_PICK];
    unsigned weight[UPSTREAM_MAX_PICK];
    size_t n;
    uint64_t retry_after_ms; /* when none: how soon one may be back */
};

static void note_back(struct candidates *c, uint64_t at, uint64_t now)
{
    uint64_t ms = at > now ? at - now : 1;
    if (c->retry_after_ms == 0 || ms < c->retry_after_ms)
        c->retry_after_ms = ms;
}

/*
 * Up servers, or in panic (fewer than panic_threshold % of the pool up) the
 * ejected ones too: spreading over all beats crushing the survivors. Never
 * servers the checks see down, whose connect just failed, or that drain.
 */
static void gather(struct upstream_pool *p, const struct upstream_server *skip, uint64_t now,
                   struct candidates *c)
{
    size_t n = p->cfg->num_servers < UPSTREAM_MAX_PICK ? p->cfg->num_servers : UPSTREAM_MAX_PICK;
    enum server_avail av[UPSTREAM_MAX_PICK];
    size_t up = 0, counted = 0;
    for (size_t i = 0; i < n; i++) {
        av[i] = p->servers[i].salen ? server_state_avail(p->servers[i].st, now) : AVAIL_DOWN;
        up += av[i] == AVAIL_UP;
        counted += av[i] != AVAIL_DRAINING;
    }
    bool panic = up * 100 < p->cfg->panic_threshold * counted;
    c->n = 0;
    c->retry_after_ms = 0;
    for (size_t i = 0; i < n; i++) {
        struct upstream_server *srv = &p->servers[i];
        if (av[i] == AVAIL_FAILED)
            note_back(c, atomic_load(&srv->st->failed_until), now);
        if (av[i] == AVAIL_EJECTED && !panic)
            note_back(c, atomic_load(&srv->st->ejected_until), now);
        if (av[i] != AVAIL_UP && !(panic && av[i] == AVAIL_EJECTED))
            continue;
        c->srv[c->n] = srv;
        c->weight[c->n++] = server_state_weight(srv->st, srv->addr->weight * WEIGHT_SCALE,
                                                p->cfg->slow_start_ms, now);
    }
    /* the server that just failed this request: only if it is the last one left */
    for (size_t i = 0; skip && c->n > 1 && i < c->n; i++) {
        if (c->srv[i] == skip) {
            c->srv[i] = c->srv[--c->n];
            c->weight[i] = c->weight[c->n];
            break;
        }
    }
}

/* Smooth weighted round robin (as nginx): even spacing, exact shares. */
static struct upstream_server *pick_round_robin(struct candidates *c)
{
    long total = 0;
    size_t best = 0;
    for (size_t i = 0; i < c->n; i++) {
        c->srv[i]->cw += c->weight[i];
        total += c->weight[i];
        if (c->srv[i]->cw > c->srv[best]->cw)
            best = i;
    }
    c->srv[best]->cw -= total;
    return c->srv[best];
}

/* Fewest requests in flight (all workers) per unit of weight; ties rotate. */
static struct upstream_server *pick_least_conn(struct upstream_pool *p, struct candidates *c)
{
    size_t best = SIZE_MAX;
    uint64_t best_load = 0;
    for (size_t j = 0; j < c->n; j++) {
        size_t i = (p->rr + j) % c->n;
        uint64_t load =
            (uint64_t)(atomic_load_explicit(&c->srv[i]->st->in_flight, memory_order_relaxed) + 1) *
            1000 / c->weight[i];
        if (best == SIZE_MAX || load < best_load) {
            best = i;
            best_load = load;
        }
    }
    p->rr++;
    return c->srv[best];
}

static uint64_t fnv1a(const char *p, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
    return h;
}

/*
 * Weighted rendezvous hashing on the tenant (or client IP): a key keeps its
 * server while that server is up, and only the keys of a server that goes
 * move (cache locality per tenant).
 */
static struct upstream_server *pick_hash(struct candidates *c, const char *key, size_t len)
{
    size_t best = 0;
    double best_score = -1;
    for (size_t i = 0; i < c->n; i++) {
        const char *a = c->srv[i]->addr->text;
        uint64_t h = fnv1a(a, strlen(a), fnv1a(key, len, 0xcbf29ce484222325ULL));
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
        double u = ((double)(h >> 11) + 0.5) / 9007199254740992.0; /* (0, 1) */
        double score = c->weight[i] / -log(u);
        if (score > best_score) {
            best = i;
            best_score = score;
        }
    }
    return c->srv[best];
}

static struct upstream_server *pick(struct upstream_pool *p, const struct upstream_pick *want,
                                    uint64_t *retry_after_ms)
{
    struct candidates c;
    gather(p, want->skip, mono_ms(), &c);
    if (c.n == 0) { /* down by checks or drained only: back no sooner than a probe */
        uint64_t check = p->cfg->health.path ? p->cfg->health.interval_ms : 5000;
        *retry_after_ms = c.retry_after_ms ? c.retry_after_ms : check;
        return NULL;
    }
    if (p->cfg->balance == BALANCE_LEAST_CONN)
        return pick_least_conn(p, &c);
    if (p->cfg->balance == BALANCE_TENANT_HASH && want->key_len)
        return pick_hash(&c, want->key, want->key_len);
    return pick_round_robin(&c);
}

/*
 * An idle connection may be reused only if the upstream has said nothing since
 * its last response: bytes that arrived while it sat in the pool (a body after a
 * 204, a second response) would be read as the answer to the next request,
 * perhaps another client's. idle_read closes such a connection, but only on a
 * later loop turn: bytes (or a FIN) that arrived in this turn are still in the
 * socket, so look there too.
 */
static bool idle_quiet(struct upstream_conn *uc)
{
    if (evbuffer_get_length(bufferevent_get_input(uc->bev)) > 0)
        return false;
    if (uc->srv->pool->tls) {
        SSL *ssl = bufferevent_openssl_get_ssl(uc->bev);
        if (!ssl || SSL_pending(ssl) > 0)
            return false;
    }
    char byte;
    ssize_t n = recv(bufferevent_getfd(uc->bev), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static struct upstream_conn *take_idle(struct upstream_server *srv)
{
    struct upstream_conn *uc;
    uint64_t now = mono_ms();
    while ((uc = srv->idle) != NULL) {
        unlink_idle(uc);
        if (now - uc->idle_since < IDLE_REUSE_MS && idle_quiet(uc))
            break;
        conn_close(uc); /* spoke, closed or about to time out while idle: never reused */
    }
    if (!uc)
        return NULL;
    uc->reused = true;
    uc->uses++;
    bufferevent_set_timeouts(uc->bev, NULL, NULL);
    return uc;
}

static struct upstream_conn *connect_new(struct upstream_server *srv, struct event_base *base,
                                         const struct config *cfg)
{
    struct upstream_conn *uc = calloc(1, sizeof *uc);
    if (!uc)
        return NULL;
    uc->srv = srv;
    if (srv->pool->tls) { /* BEV_EVENT_CONNECTED comes after the verified handshake */
        SSL *ssl = upstream_tls_new_ssl(srv->pool->tls, srv->pool->cfg, srv->addr);
        uc->bev = ssl ? bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                       BEV_OPT_CLOSE_ON_FREE)
                      : NULL;
        if (ssl && !uc->bev)
            SSL_free(ssl);
        if (uc->bev)
            bufferevent_openssl_set_allow_dirty_shutdown(uc->bev, 1);
    } else {
        uc->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!uc->bev) {
        free(uc);
        return NULL;
    }
    if (track_buffers(uc, true) < 0) {
        conn_close(uc);
        return NULL;
    }
    uint64_t ms = cfg->limits.upstream_connect_timeout_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    bufferevent_set_timeouts(uc->bev, NULL, &tv);
    return uc;
}

struct upstream_conn *upstream_acquire(struct upstream_set *s, const struct config_upstream *u,
                                       const struct upstream_pick *want,
                                       void (*readcb)(struct bufferevent *, void *),
                                       void (*writecb)(struct bufferevent *, void *),
                                       void (*eventcb)(struct bufferevent *, short, void *),
                                       void *arg)
{
    struct upstream_pool *p = find_pool(s, u);
    if (!p || p->cfg->num_servers == 0)
        return NULL;
    struct upstream_server *srv = pick(p, want, want->retry_after_ms);
    if (!srv) {
        atomic_fetch_add_explicit(&p->st->all_down_total, 1, memory_order_relaxed);
        return NULL;
    }
    struct upstream_conn *uc = take_idle(srv);
    if (!uc)
        uc = connect_new(srv, s->w->base, s->cfg);
    if (!uc)
        return NULL;
    atomic_fetch_add_explicit(&srv->st->in_flight, 1, memory_order_relaxed);
    bufferevent_setcb(uc->bev, readcb, writecb, eventcb, arg);
    /* A pooled connection keeps EV_WRITE enabled. Enabling it again would
     * register write interest with nothing to write: an epoll_ctl() to add it
     * and one to drop it, per request. */
    short en = bufferevent_get_enabled(uc->bev);
    bufferevent_enable(uc->bev, (short)(EV_READ | (en & EV_WRITE ? 0 : EV_WRITE)));
    if (!uc->reused &&
        bufferevent_socket_connect(uc->bev, (struct sockaddr *)&srv->sa, (int)srv->salen) < 0) {
        /* libevent reports the error through eventcb from the loop */
        return uc;
    }
    if (!uc->reused && srv->sa.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(bufferevent_getfd(uc->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return uc;
}

/* Nothing queued on a connected plain socket: bytes may go straight to it. */
static bool can_send_now(const struct upstream_conn *uc)
{
    return !uc->srv->pool->tls && uc->connected &&
           evbuffer_get_length(bufferevent_get_output(uc->bev)) == 0;
}

int upstream_send(struct upstream_conn *uc, const void *p, size_t len)
{
    size_t sent = 0;
    if (can_send_now(uc)) {
        ssize_t n = send(bufferevent_getfd(uc->bev), p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        sent = n > 0 ? (size_t)n : 0; /* an error shows again on the bufferevent's write */
    }
    if (sent == len)
        return 0;
    return evbuffer_add(bufferevent_get_output(uc->bev), (const char *)p + sent, len - sent);
}

int upstream_send_from(struct upstream_conn *uc, struct evbuffer *src, size_t n)
{
    if (can_send_now(uc)) {
        /* writev() from src's chains; SIGPIPE is ignored process-wide */
        int w = evbuffer_write_atmost(src, bufferevent_getfd(uc->bev), (ev_ssize_t)n);
        n -= w > 0 ? (size_t)w : 0; /* an error shows again on the bufferevent's write */
    }
    if (n == 0)
        return 0;
    return evbuffer_remove_buffer(src, bufferevent_get_output(uc->bev), n) < 0 ? -1 : 0;
}

/* The most one read of upstream_read_more() takes. Above EVBUF_COALESCE_MAX, a
   body piece moves to the client's output as buffer chains, not copied. 56 KiB:
   libevent makes the room in a new chain that also takes over what the
   bufferevent's own read left in the last one (up to 4 KiB), so the chain stays a
   64 KiB allocation; 64 KiB reads made it 128 KiB, glibc's mmap threshold
   (alloc_tune.c): an mmap(), 32 page faults and an munmap() per read. */
#define READ_MORE_CHUNK (56 * 1024)
/* libevent 2.1's EVBUFFER_MAX_READ: the most one bufferevent read takes. */
#define EV_READ_MAX 4096

size_t upstream_read_more(struct upstream_conn *uc, size_t max)
{
    if (uc->srv->pool->tls || !uc->connected)
        return 0;
    struct evbuffer *in = bufferevent_get_input(uc->bev);
    /* Less than a full libevent read in the buffer: the socket held no more (it
       read what FIONREAD announced), and a recv() would only fail with EAGAIN. */
    if (evbuffer_get_length(in) < EV_READ_MAX)
        return 0;
    int fd = bufferevent_getfd(uc->bev);
    size_t total = 0;
    /* the bufferevent keeps its input's end frozen outside its own reads */
    evbuffer_unfreeze(in, 0);
    while (total < max) {
        size_t want = max - total < READ_MORE_CHUNK ? max - total : READ_MORE_CHUNK;
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(in, (ev_ssize_t)want, &v, 1) < 1)
            break;
        ssize_t n = recv(fd, v.iov_base, want < v.iov_len ? want : v.iov_len, MSG_DONTWAIT);
        if (n <= 0)
            break; /* empty (EAGAIN), or an end the bufferevent sees on its next read */
        v.iov_len = (size_t)n;
        evbuffer_commit_space(in, &v, 1);
        total += (size_t)n;
        /* a short read: the socket is most likely empty, and epoll (level-triggered)
           says so if not; this saves a recv() that would fail with EAGAIN */
        if ((size_t)n < want)
            break;
    }
    evbuffer_freeze(in, 0);
    return total;
}

bool upstream_closed_cleanly(const struct upstream_conn *uc, short what)
{
    if (!(what & BEV_EVENT_EOF) || (what & BEV_EVENT_ERROR))
        return false; /* a reset or another error */
    if (!uc->srv->pool->tls)
        return true;
    /* dirty shutdowns are allowed on the bufferevent: only close_notify is an end */
    SSL *ssl = bufferevent_openssl_get_ssl(uc->bev);
    return ssl && (SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN);
}

static void idle_event(struct bufferevent *bev, short what, void *arg)
{
    struct upstream_conn *uc = arg;
    unlink_idle(uc);
    conn_close(uc);
}

static void idle_read(struct bufferevent *bev, void *arg)
{
    idle_event(bev, BEV_EVENT_ERROR, arg); /* unsolicited bytes: not reusable */
}

void upstream_release(struct upstream_conn *uc, bool reusable)
{
    struct upstream_server *srv = uc->srv;
    atomic_fetch_sub_explicit(&srv->st->in_flight, 1, memory_order_relaxed);
    size_t max_idle = srv->pool->cfg->keepalive;
    if (!reusable || !uc->connected || srv->num_idle >= max_idle ||
        evbuffer_get_length(bufferevent_get_output(uc->bev)) > 0) {
        conn_close(uc);
        return;
    }
    struct timeval tv = {IDLE_MS / 1000, (IDLE_MS % 1000) * 1000};
    bufferevent_setcb(uc->bev, idle_read, NULL, idle_event, uc);
    bufferevent_set_timeouts(uc->bev, &tv, NULL);
    uc->idle_since = mono_ms();
    bufferevent_setwatermark(uc->bev, EV_WRITE, 0, 0);
    bufferevent_enable(uc->bev, EV_READ);
    uc->next_idle = srv->idle;
    srv->idle = uc;
    srv->num_idle++;
}

void upstream_mark_failed(struct upstream_conn *uc)
{
    struct upstream_server *srv = uc->srv;
    uint64_t now = mono_ms();
    server_state_connect_failed(srv->st, now);
    server_state_outcome(srv->st, srv->pool->cfg, srv->pool->peers, false, now);
    log_msg(LOG_WARN, "upstream %s: server %s failed to connect; skipping it for 1 s",
            srv->pool->cfg->name, srv->addr->text);
}

void upstream_outcome(struct upstream_conn *uc, bool ok)
{
    struct upstream_server *srv = uc->srv;
    server_state_outcome(srv->st, srv->pool->cfg, srv->pool->peers, ok, mono_ms());
}

void upstream_count_request(struct upstream_set *s, const struct config_upstream *u)
{
    struct upstream_pool *p = find_pool(s, u);
    if (p)
        pool_state_count_request(p->st, p->cfg, mono_ms());
}

bool upstream_take_retry(struct upstream_conn *uc)
{
    struct upstream_pool *p = uc->srv->pool;
    return pool_state_take_retry(p->st, p->cfg, mono_ms());
}

const char *upstream_server_addr(const struct upstream_server *srv)
{
    return srv->addr->text;
}

unsigned upstream_num_servers(const struct config_upstream *u)
{
    return (unsigned)u->num_servers;
}
