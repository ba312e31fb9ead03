#include "core/worker.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/rand.h>

#include "http/conn.h"
#include "util/digest.h"
#include "core/listener.h"
#include "core/membudget.h"
#include "http/redirect.h"
#include "http/request.h"
#include "policy/signature.h"
#include "core/services.h"
#include "core/snapshot.h"
#include "upstream/upstream.h"

#define TICK_MS 100
/* After the last connection: time for goodbye messages (heartbeat) to be flushed. */
#define EXIT_GRACE_MS 100
#define ACCESS_BUFFER_BYTES (64 * 1024)
/*
 * Callbacks run before the loop looks at the sockets again. A connection that
 * always has more to do (a pipelining client keeping its input full) makes its
 * event active again from its own callback, and libevent would otherwise run
 * it again and again without polling: the other connections and the listeners
 * starved for seconds. Each callback does a bounded amount of work (one
 * request parsed, reads up to the input watermark, writes up to the output
 * watermark), so this bounds a flooding connection's share of the loop.
 */
#define MAX_CALLBACKS_PER_POLL 16

struct wgen *wgen_ref(struct wgen *g)
{
    g->refs++;
    return g;
}

void wgen_unref(struct wgen *g)
{
    if (!g || --g->refs > 0)
        return;
    upstream_set_free(g->ups);
    snapshot_unref(g->snap);
    free(g);
}

static struct wgen *wgen_new(struct worker *w, struct snapshot *snap)
{
    struct wgen *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->refs = 1;
    g->w = w;
    g->snap = snapshot_ref(snap);
    g->ups = upstream_set_new(w, snap);
    if (!g->ups) {
        snapshot_unref(snap);
        free(g);
        return NULL;
    }
    return g;
}

static uint64_t rng_next(uint64_t s[2])
{
    /* xorshift128+: request ids must be unique, not secret */
    uint64_t a = s[0], b = s[1];
    s[0] = b;
    a ^= a << 23;
    s[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    return s[1] + b;
}

void worker_request_id(struct worker *w, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t v[2] = {rng_next(w->rng), rng_next(w->rng) ^ ++w->seq};
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 16; k++)
            out[i * 16 + k] = hex[(v[i] >> (60 - 4 * k)) & 15];
    out[32] = '\0';
}

static void on_accept_https(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                            int salen, void *arg)
{
    (void)l;
    conn_accept(arg, fd, sa, salen);
}

static void on_accept_http(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                           int salen, void *arg)
{
    (void)l;
    redirect_accept(arg, fd, sa, salen);
}

/* Stops listening on ls[i] and removes it; closes the socket unless keep_fd. */
static void listener_drop(struct worker *w, size_t i, bool keep_fd)
{
    struct wlisten *l = &w->ls[i];
    if (l->lev) {
        listener_unguard(l->lev);
        evconnlistener_free(l->lev); /* opened without LEV_OPT_CLOSE_ON_FREE */
    }
    if (!keep_fd && l->lf.fd >= 0)
        close(l->lf.fd);
    w->ls[i] = w->ls[--w->num_ls];
}

static void close_listeners(struct worker *w)
{
    while (w->num_ls > 0)
        listener_drop(w, w->num_ls - 1, false);
}

static int listener_listen(struct worker *w, struct wlisten *l)
{
    evconnlistener_cb cb = l->lf.https ? on_accept_https : on_accept_http;
    l->lev = evconnlistener_new(w->base, cb, w, LEV_OPT_CLOSE_ON_EXEC, -1, l->lf.fd);
    if (!l->lev)
        return -1;
    if (listener_guard(l->lev, l->lf.name) < 0) {
        evconnlistener_free(l->lev);
        l->lev = NULL;
        return -1;
    }
    return 0;
}

/* Takes fd into the list (owned from now on: closed on failure). */
static int listener_add(struct worker *w, const struct listen_fd *lf)
{
    if (w->num_ls == w->cap_ls) {
        size_t cap = w->cap_ls ? 2 * w->cap_ls : 8;
        struct wlisten *ls = realloc(w->ls, cap * sizeof *ls);
        if (!ls) {
            close(lf->fd);
            return -1;
        }
        w->ls = ls;
        w->cap_ls = cap;
    }
    w->ls[w->num_ls++] = (struct wlisten){.lf = *lf};
    return 0;
}

static int open_listeners(struct worker *w, char *err, size_t errlen)
{
    for (size_t i = 0; i < w->num_ls; i++)
        if (listener_listen(w, &w->ls[i]) < 0) {
            snprintf(err, errlen, "worker %d: cannot listen: %s", w->id, strerror(errno));
            return -1;
        }
    return 0;
}

/* A listener change from the mailbox (see enum wl_op). */
static void apply_listen(struct worker *w, const struct wl_cmd *c)
{
    if (c->op == WL_ADD) {
        if (w->draining) {
            close(c->lf.fd);
        } else if (listener_add(w, &c->lf) < 0 || listener_listen(w, &w->ls[w->num_ls - 1]) < 0) {
            log_msg(LOG_ERROR, "worker %d: cannot listen on %s: %s", w->id, c->lf.name,
                    strerror(errno));
        }
        return;
    }
    for (size_t i = 0; i < w->num_ls; i++)
        if (w->ls[i].lf.fd == c->lf.fd) {
            listener_drop(w, i, c->op == WL_RELEASE);
            return;
        }
}

static void apply_snapshot(struct worker *w, struct snapshot *snap)
{
    struct wgen *g = wgen_new(w, snap);
    snapshot_unref(snap); /* the mailbox's reference */
    if (!g) {
        log_msg(LOG_ERROR, "worker %d: out of memory applying a new config; keeping the old one",
                w->id);
        return;
    }
    struct wgen *old = w->gen;
    w->gen = g;
    services_reload(&w->svc, g->snap->cfg);
    for (struct conn *c = w->conns; c; c = c->next)
        conn_reloaded(c, g->snap->cfg);
    wgen_unref(old);
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    log_msg(LOG_WARN, "worker %d: drain timeout with %zu connections open; closing them", w->id,
            w->num_conns);
    event_base_loopbreak(w->base);
}

static void exit_soon(struct worker *w)
{
    struct timeval tv = {0, EXIT_GRACE_MS * 1000};
    event_base_loopexit(w->base, &tv);
}

static void start_drain(struct worker *w, bool handover)
{
    if (w->draining)
        return;
    w->draining = true;
    close_listeners(w);
    services_drain(&w->svc);
    struct timeval tv;
    uint64_t ms = w->gen->snap->cfg->limits.drain_timeout_ms;
    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
    w->drain_timer = evtimer_new(w->base, drain_timeout_cb, w);
    if (w->drain_timer)
        evtimer_add(w->drain_timer, &tv);
    struct conn *c = w->conns;
    while (c) {
        struct conn *next = c->next; /* conn_drain may free c */
        bool early = c->state == CONN_HANDSHAKE || c->state == CONN_PROXY_HEADER;
        if (!(handover && early)) /* draining: after the handshake, one request and close */
            conn_drain(c);
        c = next;
    }
    if (w->num_conns == 0)
        exit_soon(w);
}

/* Takes the posted snapshot, if any, and whether a stop was asked for. */
static struct snapshot *take_mailbox(struct worker *w, bool *stop, bool *handover)
{
    pthread_mutex_lock(&w->mbox_lock);
    struct snapshot *snap = w->mbox_snap;
    w->mbox_snap = NULL;
    atomic_store_explicit(&w->mbox_has_snap, false, memory_order_relaxed);
    if (stop)
        *stop = w->mbox_stop;
    if (stop && w->mbox_handover)
        *handover = true;
    pthread_mutex_unlock(&w->mbox_lock);
    return snap;
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof v);
    (void)n;
    bool stop, handover = false;
    struct snapshot *snap = take_mailbox(w, &stop, &handover);
    if (snap)
        apply_snapshot(w, snap);
    pthread_mutex_lock(&w->mbox_lock);
    struct wl_cmd *cmds = w->mbox_cmds;
    w->mbox_cmds = NULL;
    w->mbox_cmds_tail = &w->mbox_cmds;
    pthread_mutex_unlock(&w->mbox_lock);
    while (cmds) {
        struct wl_cmd *next = cmds->next;
        apply_listen(w, cmds);
        free(cmds);
        cmds = next;
    }
    if (stop)
        start_drain(w, handover);
}

void worker_catch_up(struct worker *w)
{
    if (!atomic_load_explicit(&w->mbox_has_snap, memory_order_acquire))
        return;
    struct snapshot *snap = take_mailbox(w, NULL, NULL); /* a stop waits for the wake event */
    if (snap)
        apply_snapshot(w, snap);
}

/*
 * Each TLS handshake allocates and frees ~55 KiB of transient buffers between
 * the small allocations that live as long as the connection, so after a burst
 * of connections the heap is full of free holes that stay resident, and the
 * request free list holds as many ~20 KiB requests as were ever in flight.
 * Shrink the list and give the free pages back to the kernel once a burst is
 * over (no connection opened or closed in the last tick) or every
 * TRIM_MAX_TICKS under steady churn: a few hundred microseconds at most,
 * against ~1 KiB per connection of RSS.
 */
#define TRIM_MIN_CHURN 64
#define TRIM_MAX_TICKS 100
/* Free requests kept through a trim: a busy keep-alive worker's usual in-flight set. */
#define TRIM_KEEP_REQUESTS 16

static void maybe_trim(struct worker *w)
{
    w->ticks_since_trim++;
    bool quiet = w->churn == w->churn_at_tick;
    w->churn_at_tick = w->churn;
    if (w->churn < TRIM_MIN_CHURN || (!quiet && w->ticks_since_trim < TRIM_MAX_TICKS))
        return;
    request_pool_trim(&w->reqs, TRIM_KEEP_REQUESTS);
    malloc_trim(0);
    w->churn = w->churn_at_tick = 0;
    w->ticks_since_trim = 0;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    log_access_flush(&w->access);
    membudget_publish(w);
    maybe_trim(w);
}

void worker_conn_closed(struct worker *w)
{
    w->churn++;
    w->num_conns--;
    if (w->draining && w->num_conns == 0)
        exit_soon(w);
}

static int worker_events(struct worker *w, int efd)
{
    w->wake = event_new(w->base, efd, EV_READ | EV_PERSIST, wake_cb, w);
    w->tick = event_new(w->base, -1, EV_PERSIST, tick_cb, w);
    if (!w->wake || !w->tick)
        return -1;
    struct timeval tv = {0, TICK_MS * 1000};
    event_add(w->wake, NULL);
    event_add(w->tick, &tv);
    return 0;
}

struct worker *worker_new(int id, struct snapshot *snap, const struct listen_fd *fds, size_t n,
                          char *err, size_t errlen)
{
    struct worker *w = calloc(1, sizeof *w);
    if (!w) {
        for (size_t i = 0; i < n; i++)
            close(fds[i].fd);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->id = id;
    pthread_mutex_init(&w->mbox_lock, NULL);
    w->mbox_cmds_tail = &w->mbox_cmds;
    for (size_t i = 0; i < n; i++)
        if (listener_add(w, &fds[i]) < 0) {
            while (++i < n)
                close(fds[i].fd);
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    if (RAND_bytes((unsigned char *)w->rng, sizeof w->rng) != 1)
        w->rng[0] = (uint64_t)id * 0x9e3779b97f4a7c15ULL + 1;
    log_buffer_init(&w->access, ACCESS_BUFFER_BYTES);

    struct event_config *ec = event_config_new();
    event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK); /* only this thread touches it */
    /* batch epoll_ctl: a write interest added and dropped in one loop turn costs nothing */
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    event_config_set_max_dispatch_interval(ec, NULL, MAX_CALLBACKS_PER_POLL, 0);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    w->svc = (struct services){
        .worker_id = id, .base = w->base, .metrics = &w->metrics, .access_log = &w->access};
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!w->base || efd < 0 || worker_events(w, efd) < 0) {
        snprintf(err, errlen, "worker %d: cannot create event loop", id);
        goto fail;
    }
    w->gen = wgen_new(w, snap);
    if (!w->gen) {
        snprintf(err, errlen, "worker %d: cannot build upstream pools", id);
        goto fail;
    }
    if (open_listeners(w, err, errlen) < 0 ||
        services_init(&w->svc, w->gen->snap->cfg, err, errlen) < 0)
        goto fail;
    return w;
fail:
    worker_join_and_free(w);
    return NULL;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals belong to the main thread */
    event_base_dispatch(w->base);
    signature_thread_cleanup();
    digest_thread_cleanup();
    atomic_store(&w->exited, true);
    return NULL;
}

int worker_start(struct worker *w)
{
    return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : -1;
}

static void post(struct worker *w)
{
    uint64_t one = 1;
    ssize_t n = write(event_get_fd(w->wake), &one, sizeof one);
    (void)n;
}

void worker_post_snapshot(struct worker *w, struct snapshot *snap)
{
    pthread_mutex_lock(&w->mbox_lock);
    struct snapshot *old = w->mbox_snap;
    w->mbox_snap = snapshot_ref(snap);
    atomic_store_explicit(&w->mbox_has_snap, true, memory_order_release);
    pthread_mutex_unlock(&w->mbox_lock);
    if (old)
        snapshot_unref(old); /* superseded before the worker saw it */
    post(w);
}

void worker_post_listen(struct worker *w, enum wl_op op, const struct listen_fd *lf)
{
    struct wl_cmd *c = calloc(1, sizeof *c);
    if (!c) { /* the worker keeps what it had: an added socket is closed */
        if (op == WL_ADD)
            close(lf->fd);
        return;
    }
    c->op = op;
    c->lf = *lf;
    pthread_mutex_lock(&w->mbox_lock);
    *w->mbox_cmds_tail = c;
    w->mbox_cmds_tail = &c->next;
    pthread_mutex_unlock(&w->mbox_lock);
    post(w);
}

void worker_post_handover(struct worker *w)
{
    pthread_mutex_lock(&w->mbox_lock);
    w->mbox_handover = true;
    pthread_mutex_unlock(&w->mbox_lock);
    worker_post_stop(w);
}

void worker_post_stop(struct worker *w)
{
    pthread_mutex_lock(&w->mbox_lock);
    w->mbox_stop = true;
    pthread_mutex_unlock(&w->mbox_lock);
    post(w);
}

bool worker_exited(struct worker *w)
{
    return atomic_load(&w->exited);
}

void worker_join_and_free(struct worker *w)
{
    if (!w)
        return;
    if (w->thread)
        pthread_join(w->thread, NULL);
    while (w->conns)
        conn_abort(w->conns);
    membudget_publish(w); /* what its connections held is gone from the instance total */
    close_listeners(w);
    free(w->ls);
    while (w->mbox_cmds) {
        struct wl_cmd *c = w->mbox_cmds;
        w->mbox_cmds = c->next;
        if (c->op == WL_ADD)
            close(c->lf.fd);
        free(c);
    }
    services_free(&w->svc);
    if (w->wake) {
        close(event_get_fd(w->wake));
        event_free(w->wake);
    }
    if (w->tick)
        event_free(w->tick);
    if (w->drain_timer)
        event_free(w->drain_timer);
    wgen_unref(w->gen);
    if (w->mbox_snap)
        snapshot_unref(w->mbox_snap);
    request_pool_clear(&w->reqs);
    log_buffer_free(&w->access);
    if (w->base)
        event_base_free(w->base);
    pthread_mutex_destroy(&w->mbox_lock);
    free(w);
}
