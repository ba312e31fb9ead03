#include "upstream/health_check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "config/config.h"
#include "core/snapshot.h"
#include "observe/audit.h"
#include "observe/log.h"
#include "upstream/upstream.h"
#include "upstream/upstream_state.h"
#include "upstream/upstream_tls.h"
#include "util/jsonw.h"
#include "util/monotime.h"
#include "util/netutil.h"

/* At most this much of a response is read: its status line must fit. */
#define HC_READ_MAX 4096
/* A newly checked server is first probed within this window, so a dead one is found soon. */
#define HC_FIRST_MIN_MS 100
#define HC_FIRST_SPREAD_MS 200

struct hc_target;

/* One probe in flight. It holds the generation it started on (its config, its SSL_CTX). */
struct hc_probe {
    struct hc_target *t;
    struct snapshot *snap;
    const struct config_upstream *u; /* in snap */
    struct bufferevent *bev;
    struct event *deadline; /* health.timeout: connect + handshake + status line */
    bool connected;
};

/* One checked server, found by its instance-wide state (kept across reloads). */
struct hc_target {
    struct hc_target *next;
    struct health_checker *hc;
    struct server_state *st;
    const struct config_upstream *u; /* in hc->snap */
    const struct config_addr *addr;
    SSL_CTX *tls; /* NULL: plain */
    struct sockaddr_storage sa;
    socklen_t salen; /* 0: not a numeric address, never probed */
    struct event *timer;
    uint64_t due_ms;        /* when timer fires (mono ms) */
    struct hc_probe *probe; /* NULL between probes */
    bool keep;              /* named by the snapshot being applied */
};

struct health_checker {
    struct event_base *base;
    struct snapshot *snap;
    struct hc_target *targets;
    uint64_t rng;
};

static void on_timer(evutil_socket_t fd, short what, void *arg);

/* xorshift64*: jitter only, seeded from the OS so instances do not probe in lockstep. */
static uint64_t rng_next(struct health_checker *hc)
{
    hc->rng ^= hc->rng >> 12;
    hc->rng ^= hc->rng << 25;
    hc->rng ^= hc->rng >> 27;
    return hc->rng * 0x2545F4914F6CDD1DULL;
}

static struct timeval ms_tv(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

static void schedule(struct hc_target *t, uint64_t ms)
{
    struct timeval tv = ms_tv(ms);
    t->due_ms = mono_ms() + ms;
    evtimer_add(t->timer, &tv);
}

/* The next probe: health.interval, or fast_interval while the state is changing, ±10 %. */
static uint64_t next_delay(struct hc_target *t)
{
    const struct config_health *h = &t->u->health;
    uint64_t base = t->st->check_streak > 0 ? h->fast_interval_ms : h->interval_ms;
    uint64_t spread = base / 5;
    return base - base / 10 + (spread ? rng_next(t->hc) % (spread + 1) : 0);
}

static uint64_t first_delay(struct hc_target *t)
{
    uint64_t spread = t->u->health.interval_ms < HC_FIRST_SPREAD_MS ? t->u->health.interval_ms
                                                                    : HC_FIRST_SPREAD_MS;
    return HC_FIRST_MIN_MS + rng_next(t->hc) % (spread + 1);
}

static void audit_change(const char *pool, const char *server, bool down, const char *check,
                         int status)
{
    char buf[1024];
    struct jsonw j;
    audit_begin(&j, buf, sizeof buf, "upstream_health", NULL);
    jsonw_str(&j, "pool", pool);
    jsonw_str(&j, "server", server);
    jsonw_str(&j, "state", down ? "down" : "up");
    jsonw_str(&j, "check", check);
    jsonw_int(&j, "status", status);
    audit_emit(&j);
}

/* One probe's verdict into the shared state; logged and audited only when it changes it. */
static void report(struct hc_target *t, enum check_result res, int status)
{
    if (!server_state_check(t->st, t->u, res, status, mono_ms()))
        return;
    bool down = atomic_load(&t->st->check_down);
    const char *check = check_result_str(res);
    if (down)
        log_msg(LOG_WARN, "upstream %s: server %s is down (health check: %s, status %d)",
                t->u->name, t->addr->text, check, status);
    else
        log_msg(LOG_INFO, "upstream %s: server %s is up (health check: %s, status %d)", t->u->name,
                t->addr->text, check, status);
    audit_change(t->u->name, t->addr->text, down, check, status);
}

static void probe_free(struct hc_probe *p)
{
    if (p->t && p->t->probe == p)
        p->t->probe = NULL;
    if (p->deadline)
        event_free(p->deadline);
    if (p->bev)
        bufferevent_free(p->bev); /* closes the socket; no TLS close_notify wait */
    snapshot_unref(p->snap);
    free(p);
}

/* Ends a probe: closes it, reports the verdict, schedules the next one. */
static void probe_finish(struct hc_probe *p, enum check_result res, int status)
{
    struct hc_target *t = p->t;
    probe_free(p);
    report(t, res, status);
    schedule(t, next_delay(t));
}

/*
 * The status line at the start of in: 1 with *status when it is complete, 0
 * when more bytes are needed, -1 when it is not an HTTP/1.x status line or does
 * not end within HC_READ_MAX bytes.
 */
static int parse_status_line(struct evbuffer *in, int *status)
{
    static const char proto[] = "HTTP/1.";
    const size_t plen = sizeof proto - 1;
    size_t len = evbuffer_get_length(in);
    size_t n = len < HC_READ_MAX ? len : HC_READ_MAX;
    if (n == 0)
        return 0;
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    if (!p || memcmp(p, proto, n < plen ? n : plen) != 0)
        return -1; /* garbage is refused as soon as it shows */
    const char *eol = memchr(p, '\n', n);
    if (!eol)
        return n >= HC_READ_MAX ? -1 : 0;
    size_t line = (size_t)(eol - p);
    if (line > 0 && p[line - 1] == '\r')
        line--;
    /* "HTTP/1.x SSS" then the end or " reason" */
    if (line < 12 || p[7] < '0' || p[7] > '9' || p[8] != ' ' || (line > 12 && p[12] != ' '))
        return -1;
    int s = 0;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        s = s * 10 + (p[i] - '0');
    }
    if (s < 100 || s > 599)
        return -1;
    *status = s;
    return 1;
}

/* Finishes p if its input holds a verdict; returns true when it did (p is gone). */
static bool probe_judge(struct hc_probe *p)
{
    int status = 0;
    int r = parse_status_line(bufferevent_get_input(p->bev), &status);
    if (r == 0)
        return false;
    if (r < 0) {
        probe_finish(p, CHECK_INVALID, 0);
        return true;
    }
    const struct config_health *h = &p->u->health;
    bool ok = status >= h->status_min && status <= h->status_max;
    probe_finish(p, ok ? CHECK_PASSED : CHECK_BAD_STATUS, status);
    return true;
}

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    probe_judge(arg);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct hc_probe *p = arg;
    if (what & BEV_EVENT_CONNECTED) { /* over TLS: after the verified handshake */
        p->connected = true;
        return;
    }
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    if (probe_judge(p)) /* a status line that came with the close */
        return;
    bool closed = p->connected && (what & BEV_EVENT_EOF);
    probe_finish(p, closed ? CHECK_INVALID : CHECK_CONNECT_FAILED, 0);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    probe_finish(arg, CHECK_TIMEOUT, 0);
}

/* The probe's request, queued before the connect (sent once connected, or after the handshake). */
static int write_request(struct hc_probe *p, const struct hc_target *t)
{
    const struct config_health *h = &p->u->health;
    const char *host = h->host ? h->host : t->addr->path ? "localhost" : t->addr->text;
    int n = evbuffer_add_printf(bufferevent_get_output(p->bev),
                                "GET %s HTTP/1.1\r\nHost: %s\r\n"
                                "User-Agent: moat-health-check\r\nConnection: close\r\n\r\n",
                                h->path, host);
    return n < 0 ? -1 : 0;
}

static struct bufferevent *probe_bev(struct event_base *base, const struct hc_target *t)
{
    int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS; /* never re-entered */
    if (!t->tls)
        return bufferevent_socket_new(base, -1, opts);
    SSL *ssl = upstream_tls_new_ssl(t->tls, t->u, t->addr);
    if (!ssl)
        return NULL;
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, opts);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* Starts a probe of t; -1 when out of memory (nothing started). */
static int probe_start(struct hc_target *t)
{
    struct health_checker *hc = t->hc;
    struct hc_probe *p = calloc(1, sizeof *p);
    if (!p)
        return -1;
    p->t = t;
    p->snap = snapshot_ref(hc->snap);
    p->u = t->u;
    p->bev = probe_bev(hc->base, t);
    p->deadline = evtimer_new(hc->base, on_deadline, p);
    if (!p->bev || !p->deadline || write_request(p, t) < 0) {
        probe_free(p);
        return -1;
    }
    t->probe = p;
    bufferevent_setwatermark(p->bev, EV_READ, 0, HC_READ_MAX);
    bufferevent_setcb(p->bev, on_read, NULL, on_event, p);
    bufferevent_enable(p->bev, EV_READ | EV_WRITE);
    struct timeval tv = ms_tv(p->u->health.timeout_ms);
    evtimer_add(p->deadline, &tv);
    if (bufferevent_socket_connect(p->bev, (struct sockaddr *)&t->sa, (int)t->salen) < 0)
        probe_finish(p, CHECK_CONNECT_FAILED, 0);
    return 0;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hc_target *t = arg;
    if (t->probe)
        return; /* its end schedules the next one */
    if (probe_start(t) < 0)
        schedule(t, next_delay(t)); /* our memory, not the server's fault: no verdict */
}

static struct hc_target *target_new(struct health_checker *hc, struct server_state *st,
                                    const struct config_upstream *u, const struct config_addr *addr)
{
    struct hc_target *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->hc = hc;
    t->st = st;
    t->u = u;
    t->addr = addr;
    t->timer = evtimer_new(hc->base, on_timer, t);
    if (!t->timer) {
        free(t);
        return NULL;
    }
    if (upstream_resolve(addr, &t->sa, &t->salen) < 0) {
        t->salen = 0;
        log_msg(LOG_WARN, "upstream %s: server %s is not checked (numeric addresses only)", u->name,
                addr->text);
    }
    return t;
}

static void target_free(struct hc_target *t)
{
    if (t->probe)
        probe_free(t->probe); /* cancelled: no verdict */
    event_free(t->timer);
    free(t);
}

static struct hc_target *target_find(struct health_checker *hc, const struct server_state *st)
{
    for (struct hc_target *t = hc->targets; t; t = t->next)
        if (t->st == st)
            return t;
    return NULL;
}

/* Checks were turned off for a pool: its servers count as up again. */
static void checks_off(const struct config_upstream *u, struct server_state *const *sts)
{
    for (size_t k = 0; k < u->num_servers; k++) {
        struct server_state *st = sts[k];
        st->check_streak = 0;
        atomic_store(&st->last_check, (int)CHECK_NONE);
        atomic_store(&st->last_check_status, 0);
        if (!atomic_exchange(&st->check_down, false))
            continue;
        log_msg(LOG_INFO, "upstream %s: server %s is up (health checks off)", u->name,
                u->servers[k].text);
        audit_change(u->name, u->servers[k].text, false, "off", 0);
    }
}

/* Takes t into the new generation; reschedules it when the new interval is much shorter. */
static void target_update(struct hc_target *t, const struct config_upstream *u,
                          const struct config_addr *addr, SSL_CTX *tls)
{
    t->u = u;
    t->addr = addr;
    t->tls = tls;
    t->keep = true;
    if (!t->salen || t->probe)
        return;
    uint64_t now = mono_ms();
    if (t->due_ms > now + u->health.interval_ms + u->health.interval_ms / 10) {
        evtimer_del(t->timer);
        schedule(t, first_delay(t));
    }
}

void health_checker_set(struct health_checker *hc, struct snapshot *snap)
{
    if (!hc)
        return;
    const struct config *cfg = snap->cfg;
    for (struct hc_target *t = hc->targets; t; t = t->next)
        t->keep = false;
    struct snapshot *old = hc->snap;
    hc->snap = snapshot_ref(snap); /* new probes start on it */
    for (size_t i = 0; i < cfg->num_upstreams; i++) {
        const struct config_upstream *u = &cfg->upstreams[i];
        struct server_state *const *sts = snap->ustates->servers[i];
        if (!u->health.path) {
            checks_off(u, sts);
            continue;
        }
        SSL_CTX *tls = snap->upstream_tls ? snap->upstream_tls[i] : NULL;
        for (size_t k = 0; k < u->num_servers; k++) {
            struct hc_target *t = target_find(hc, sts[k]);
            if (t && t->keep)
                continue; /* named twice */
            if (t) {
                target_update(t, u, &u->servers[k], tls);
                continue;
            }
            t = target_new(hc, sts[k], u, &u->servers[k]);
            if (!t) {
                log_msg(LOG_ERROR, "upstream %s: server %s: out of memory for health checks",
                        u->name, u->servers[k].text);
                continue;
            }
            t->tls = tls;
            t->keep = true;
            t->next = hc->targets;
            hc->targets = t;
            if (t->salen)
                schedule(t, first_delay(t));
        }
    }
    for (struct hc_target **pp = &hc->targets; *pp;) {
        struct hc_target *t = *pp;
        if (t->keep) {
            pp = &t->next;
            continue;
        }
        *pp = t->next;
        target_free(t);
    }
    snapshot_unref(old); /* after the targets that pointed into it moved on */
}

struct health_checker *health_checker_new(struct event_base *base)
{
    struct health_checker *hc = calloc(1, sizeof *hc);
    if (!hc)
        return NULL;
    hc->base = base;
    if (RAND_bytes((unsigned char *)&hc->rng, sizeof hc->rng) != 1)
        hc->rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    hc->rng |= 1; /* xorshift never leaves 0 */
    return hc;
}

void health_checker_free(struct health_checker *hc)
{
    if (!hc)
        return;
    while (hc->targets) {
        struct hc_target *t = hc->targets;
        hc->targets = t->next;
        target_free(t);
    }
    /* libevent finishes freeing a bufferevent from its loop (deferred callbacks, then
       finalizers). At shutdown the main loop has stopped: let it run what is pending
       now (nothing is due but these), or a probe in flight stays allocated and
       LeakSanitizer reports it. */
    for (int i = 0; i < 2; i++)
        event_base_loop(hc->base, EVLOOP_NONBLOCK);
    snapshot_unref(hc->snap);
    free(hc);
}
