#include "core/server.h"

#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "observe/admin.h"
#include "observe/audit.h"
#include "observe/audit_chain.h"
#include "config/config.h"
#include "core/fdlimit.h"
#include "core/listener.h"
#include "observe/cert_audit.h"
#include "observe/metrics.h"
#include "observe/syslog.h"
#include "observe/log.h"
#include "tls/ocsp_updater.h"
#include "policy/ratelimit.h"
#include "core/snapshot.h"
#include "tls/tls.h"
#include "tls/tls_tickets.h"
#include "core/worker.h"
#include "upstream/health_check.h"
#include "upstream/upstream_state.h"
#include "util/jsonw.h"
#include "util/monotime.h"

#define MAX_WORKERS 256
/* While draining, how often the main thread looks whether every worker is done. */
#define EXIT_POLL_MS 50

/* Every signal moat handles; the others keep their default action. */
static const int handled_signals[] = {SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2};
#define NUM_SIGNALS (sizeof handled_signals / sizeof handled_signals[0])

struct server {
    struct event_base *base;
    char *path;
    struct snapshot *snap;
    struct worker *workers[MAX_WORKERS];
    struct metrics *metrics[MAX_WORKERS];
    int num_workers;
    struct admin *admin;
    struct event *ev_sig[NUM_SIGNALS], *ev_rotate, *ev_sweep;
    struct event *ev_exit; /* while draining: polls the workers (EXIT_POLL_MS) */
    bool draining;
    struct tls_ticket_store *tickets; /* shared by every generation: resumption survives reloads */
    struct ocsp_updater *ocsp;        /* when tls.ocsp_fetch */
    struct health_checker *checker;   /* active upstream health checks */
    uint64_t rotate_ms;
    unsigned long generation;
    time_t cert_check_at; /* next daily check for certificates near their end (cert_audit.h) */
};

/* Retired ticket keys kept for decryption after a rotation. */
#define TICKET_KEYS_PREVIOUS 2

static void report(bool to_log, const char *path, const char *msg)
{
    if (to_log)
        log_msg(LOG_ERROR, "%s: %s", path, msg);
    else
        fprintf(stderr, "%s: %s\n", path, msg);
}

static void report_warning(bool to_log, const char *msg)
{
    if (to_log)
        log_msg(LOG_WARN, "%s", msg);
    else
        fprintf(stderr, "%s\n", msg);
}

/* The first snapshot creates the process-wide ticket store from its config. */
static int ensure_tickets(struct server *s, const struct config *cfg, bool to_log)
{
    if (s->tickets || !cfg->tls.tickets_enabled)
        return 0;
    char err[256];
    s->tickets = tls_tickets_new(cfg->tls.ticket_key_file, TICKET_KEYS_PREVIOUS, err, sizeof err);
    if (!s->tickets) {
        report(to_log, "tls.session_tickets", err);
        return -1;
    }
    return 0;
}

/* Loads config + derived state; prints errors to stderr (startup) or the log. */
static struct snapshot *load_snapshot(struct server *s, const char *path, unsigned long generation,
                                      bool to_log)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load(path, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.count; i++) {
            if (to_log)
                log_msg(LOG_ERROR, "%s", errs.msgs[i]);
            else
                fprintf(stderr, "%s\n", errs.msgs[i]);
        }
        config_errors_free(&errs);
        return NULL;
    }
    for (size_t i = 0; i < errs.num_warnings; i++) /* not fatal: worth a look */
        report_warning(to_log, errs.warnings[i]);
    config_errors_free(&errs);
    if (ensure_tickets(s, cfg, to_log) < 0) {
        config_unref(cfg);
        return NULL;
    }
    char err[512] = "";
    struct snapshot *snap = snapshot_build(cfg, generation, s->tickets, err, sizeof err);
    if (!snap)
        report(to_log, path, err);
    return snap;
}

int server_check(const char *path)
{
    struct server s = {0};
    struct snapshot *snap = load_snapshot(&s, path, 1, false);
    int rc = 1;
    if (snap) {
        printf("%s: configuration is valid\n", path);
        snapshot_unref(snap);
        rc = 0;
    }
    if (s.tickets)
        tls_tickets_unref(s.tickets);
    return rc;
}

static struct metrics *const *admin_metrics(void *arg, int *n)
{
    struct server *s = arg;
    *n = s->num_workers;
    return s->metrics;
}

/* Appends "; "-separated reasons to why (truncated when it is full). */
static void why_add(char *why, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void why_add(char *why, size_t len, const char *fmt, ...)
{
    size_t n = strlen(why);
    if (n && n + 2 < len) {
        memcpy(why + n, "; ", 3);
        n += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why + n, len - n, fmt, ap);
    va_end(ap);
}

/* The pools routes send requests to whose servers are all down by checks or draining. */
static void pools_unavailable(const struct snapshot *snap, char *why, size_t len)
{
    const struct config *cfg = snap->cfg;
    uint64_t now = mono_ms();
    for (size_t r = 0; r < cfg->num_routes; r++) {
        const struct config_upstream *u = cfg->routes[r].up;
        bool seen = false;
        for (size_t e = 0; u && e < r && !seen; e++)
            seen = cfg->routes[e].up == u;
        if (!u || seen)
            continue;
        size_t i = (size_t)(u - cfg->upstreams);
        bool avail = false;
        for (size_t k = 0; k < u->num_servers && !avail; k++) {
            enum server_avail a = server_state_avail(snap->ustates->servers[i][k], now);
            /* ejected ones serve in panic; a failed connect is a 1 s mark, not a verdict */
            avail = a != AVAIL_DOWN && a != AVAIL_DRAINING;
        }
        if (!avail)
            why_add(why, len, "upstream pool %s: no server available", u->name);
    }
}

/*
 * /readyz: ready unless draining, a worker's session client is not connected
 * to Redis (with a redis: section: authenticated routes would answer 503), or
 * a routed pool has no server up. Reads atomics only.
 */
static bool admin_ready(void *arg, char *why, size_t len)
{
    struct server *s = arg;
    why[0] = '\0';
    if (s->draining)
        why_add(why, len, "draining");
    if (s->num_workers == 0)
        why_add(why, len, "no workers");
    if (s->snap->cfg->redis_enabled) {
        int down = 0;
        for (int i = 0; i < s->num_workers; i++)
            down += !atomic_load(&s->workers[i]->svc.redis_up);
        if (down)
            why_add(why, len, "redis: the session store is not connected (%d of %d workers)", down,
                    s->num_workers);
    }
    pools_unavailable(s->snap, why, len);
    return why[0] == '\0';
}

static struct snapshot *admin_snapshot(void *arg)
{
    struct server *s = arg;
    return s->snap;
}

static bool same_listeners(const struct config *a, const struct config *b)
{
    if (a->listen.num_https != b->listen.num_https || a->listen.num_http != b->listen.num_http ||
        a->workers != b->workers || !a->listen.admin.text != !b->listen.admin.text ||
        (a->listen.admin.text && strcmp(a->listen.admin.text, b->listen.admin.text)))
        return false;
    for (size_t i = 0; i < a->listen.num_https; i++)
        if (strcmp(a->listen.https[i].text, b->listen.https[i].text))
            return false;
    for (size_t i = 0; i < a->listen.num_http; i++)
        if (strcmp(a->listen.http[i].text, b->listen.http[i].text))
            return false;
    return true;
}

static void schedule_rotation(struct server *s);

/* Starts, retargets or stops the OCSP fetch thread to match the snapshot. */
static void update_ocsp(struct server *s, struct snapshot *snap)
{
    bool want = snap->tls && snap->cfg->tls.ocsp_fetch;
    if (want && !s->ocsp) {
        s->ocsp = ocsp_updater_start(snap->tls);
        if (!s->ocsp)
            log_msg(LOG_ERROR, "ocsp: cannot start the updater thread; stapling only from files");
    } else if (s->ocsp) {
        ocsp_updater_set(s->ocsp, want ? snap->tls : NULL);
    }
}

/* An operation on the audit trail: start, stop, a reload and its result. */
static void audit_op(const char *event, unsigned long generation, const char *detail)
{
    char buf[512];
    struct jsonw j;
    audit_begin(&j, buf, sizeof buf, event, NULL);
    jsonw_str(&j, "version", MOAT_VERSION);
    jsonw_uint(&j, "generation", generation);
    if (detail)
        jsonw_str(&j, "detail", detail);
    audit_emit(&j);
}

static void reload_apply(struct server *s)
{
    log_msg(LOG_INFO, "reload: reading %s", s->path);
    struct snapshot *snap = load_snapshot(s, s->path, s->generation + 1, true);
    if (!snap) {
        log_msg(LOG_ERROR, "reload: the new configuration is invalid; keeping generation %lu",
                s->generation);
        audit_op("config_rejected", s->generation, "invalid configuration (errors in the log)");
        return;
    }
    char err[256];
    if (log_open(&snap->cfg->log, err, sizeof err) < 0)
        log_msg(LOG_ERROR, "reload: log: %s (keeping the previous log targets)", err);
    fdlimit_apply(snap->cfg); /* limits.max_connections may have grown */
    if (!same_listeners(s->snap->cfg, snap->cfg))
        log_msg(LOG_WARN, "reload: changes to listen addresses or workers need a restart");
    s->generation++;
    if (snap->tls && s->snap->tls)
        tls_policy_ocsp_inherit(snap->tls, s->snap->tls); /* keep staples fetched so far */
    update_ocsp(s, snap);
    for (int i = 0; i < s->num_workers; i++)
        worker_post_snapshot(s->workers[i], snap);
    snapshot_unref(s->snap);
    s->snap = snap;
    health_checker_set(s->checker, snap);
    schedule_rotation(s);
    log_msg(LOG_INFO, "reload: generation %lu is live", s->generation);
    audit_op("config_reloaded", s->generation, NULL);
    cert_audit_loaded(s->snap->tls, s->generation, time(NULL));
}

/* A reload and its result on /metrics (moat_config_reloads_total{result}). */
static void reload(struct server *s)
{
    unsigned long was = s->generation;
    reload_apply(s);
    metrics_reload_result(s->generation != was, s->generation);
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGHUP:
        return "SIGHUP";
    case SIGTERM:
        return "SIGTERM";
    case SIGINT:
        return "SIGINT";
    case SIGQUIT:
        return "SIGQUIT";
    case SIGUSR1:
        return "SIGUSR1";
    case SIGUSR2:
        return "SIGUSR2";
    }
    return "signal";
}

/* Draining: the main loop ends once every worker has finished its own drain. */
static void on_exit_poll(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    for (int i = 0; i < s->num_workers; i++)
        if (!worker_exited(s->workers[i]))
            return;
    event_base_loopbreak(s->base);
}

/*
 * SIGTERM, SIGINT, SIGQUIT (nginx's graceful "quit"): the workers stop
 * accepting and finish what is in flight. The main loop keeps running until
 * they are done, so that the admin listener answers /readyz "draining".
 */
static void start_drain(struct server *s, int sig)
{
    if (s->draining) {
        log_msg(LOG_INFO, "%s: already draining", signal_name(sig));
        return;
    }
    s->draining = true;
    log_msg(LOG_INFO, "%s: draining (up to %llu ms)", signal_name(sig),
            (unsigned long long)s->snap->cfg->limits.drain_timeout_ms);
    for (int i = 0; i < s->num_workers; i++)
        worker_post_stop(s->workers[i]);
    struct timeval tv = {0, EXIT_POLL_MS * 1000};
    if (!s->ev_exit || event_add(s->ev_exit, &tv) < 0)
        event_base_loopbreak(s->base); /* shutdown_all() joins them all the same */
}

/* SIGUSR1 (logrotate): the access and audit files are opened again at their
 * configured paths; lines still in a worker's buffer go to the new file. */
static void reopen_logs(struct server *s)
{
    char err[256];
    if (log_open(&s->snap->cfg->log, err, sizeof err) < 0)
        log_msg(LOG_ERROR, "SIGUSR1: log: %s (still writing to the files open before)", err);
    else
        log_msg(LOG_INFO, "SIGUSR1: log files reopened");
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;
    switch (sig) {
    case SIGHUP:
        if (s->draining)
            log_msg(LOG_WARN, "SIGHUP: ignored while draining");
        else
            reload(s);
        return;
    case SIGUSR1:
        reopen_logs(s);
        return;
    case SIGUSR2:
        log_msg(LOG_WARN, "SIGUSR2: binary upgrade is not supported yet; ignored");
        return;
    default:
        start_drain(s, (int)sig);
    }
}

static void on_rotate(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    char err[256];
    if (s->tickets && tls_tickets_rotate(s->tickets, err, sizeof err) < 0)
        log_msg(LOG_ERROR, "tls: ticket key rotation: %s (keeping the current keys)", err);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    ratelimit_sweep(); /* idle rate-limit keys are full again: dropping them is exact */
    time_t now = time(NULL);
    if (s->cert_check_at && now >= s->cert_check_at) {
        cert_audit_expiry(s->snap->tls, now);
        s->cert_check_at = now + 86400;
    }
}

/* (Re)arms ticket rotation at the configured period. */
static void schedule_rotation(struct server *s)
{
    uint64_t ms = s->snap->cfg->tls.ticket_rotate_ms;
    if (!s->tickets || ms == 0 || ms == s->rotate_ms)
        return;
    s->rotate_ms = ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    event_add(s->ev_rotate, &tv);
}

/* Fails when anything (another moat too) is bound to one of the addresses. */
static int probe_all(const struct config_listen *l, char *err, size_t errlen)
{
    char name[48];
    for (size_t i = 0; i < l->num_https; i++) {
        snprintf(name, sizeof name, "listen.https[%zu]", i);
        if (listener_probe(&l->https[i], name, err, errlen) < 0)
            return -1;
    }
    for (size_t i = 0; i < l->num_http; i++) {
        snprintf(name, sizeof name, "listen.http[%zu]", i);
        if (listener_probe(&l->http[i], name, err, errlen) < 0)
            return -1;
    }
    return 0;
}

static int open_fds(const struct config_addr *addrs, size_t n, int *fds, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        fds[i] = listener_open(&addrs[i], true, err, errlen);
        if (fds[i] < 0) {
            while (i-- > 0)
                close(fds[i]);
            return -1;
        }
    }
    return 0;
}

static int start_workers(struct server *s)
{
    const struct config *cfg = s->snap->cfg;
    char err[512];
    int n = cfg->workers < 1 ? 1 : cfg->workers > MAX_WORKERS ? MAX_WORKERS : cfg->workers;
    if (probe_all(&cfg->listen, err, sizeof err) < 0)
        goto fail;
    for (int i = 0; i < n; i++) {
        int hf[CONFIG_MAX_LISTEN], pf[CONFIG_MAX_LISTEN];
        if (open_fds(cfg->listen.https, cfg->listen.num_https, hf, err, sizeof err) < 0)
            goto fail;
        if (open_fds(cfg->listen.http, cfg->listen.num_http, pf, err, sizeof err) < 0) {
            for (size_t k = 0; k < cfg->listen.num_https; k++)
                close(hf[k]);
            goto fail;
        }
        struct worker *w = worker_new(i, s->snap, hf, cfg->listen.num_https, pf,
                                      cfg->listen.num_http, err, sizeof err);
        if (!w)
            goto fail;
        s->workers[s->num_workers] = w;
        s->metrics[s->num_workers++] = &w->metrics;
    }
    for (int i = 0; i < s->num_workers; i++) {
        if (worker_start(s->workers[i]) < 0) {
            snprintf(err, sizeof err, "cannot start worker thread %d", i);
            goto fail;
        }
    }
    return 0;
fail:
    log_msg(LOG_ERROR, "%s", err);
    return -1;
}

static int setup_events(struct server *s)
{
    for (size_t i = 0; i < NUM_SIGNALS; i++) {
        s->ev_sig[i] = evsignal_new(s->base, handled_signals[i], on_signal, s);
        if (!s->ev_sig[i] || event_add(s->ev_sig[i], NULL) < 0)
            return -1;
    }
    s->ev_rotate = event_new(s->base, -1, EV_PERSIST, on_rotate, s);
    s->ev_sweep = event_new(s->base, -1, EV_PERSIST, on_sweep, s);
    s->ev_exit = event_new(s->base, -1, EV_PERSIST, on_exit_poll, s);
    if (!s->ev_rotate || !s->ev_sweep || !s->ev_exit)
        return -1;
    struct timeval sec = {1, 0};
    event_add(s->ev_sweep, &sec);
    schedule_rotation(s);
    return 0;
}

static int start_admin(struct server *s)
{
    const struct config_listen *l = &s->snap->cfg->listen;
    if (!l->admin.text)
        return 0;
    struct admin_source src = {
        .metrics = admin_metrics, .ready = admin_ready, .snapshot = admin_snapshot, .arg = s};
    char err[512];
    s->admin = admin_start(s->base, l, &src, err, sizeof err);
    if (!s->admin) {
        log_msg(LOG_ERROR, "%s", err);
        return -1;
    }
    return 0;
}

static void shutdown_all(struct server *s)
{
    for (int i = 0; i < s->num_workers; i++) {
        worker_post_stop(s->workers[i]);
        worker_join_and_free(s->workers[i]);
    }
    s->num_workers = 0;
    admin_stop(s->admin);
    ocsp_updater_stop(s->ocsp);
    health_checker_free(s->checker);
    for (size_t i = 0; i < NUM_SIGNALS; i++)
        if (s->ev_sig[i])
            event_free(s->ev_sig[i]);
    struct event *evs[] = {s->ev_rotate, s->ev_sweep, s->ev_exit};
    for (size_t i = 0; i < sizeof evs / sizeof *evs; i++)
        if (evs[i])
            event_free(evs[i]);
    if (s->snap)
        snapshot_unref(s->snap);
    if (s->tickets)
        tls_tickets_unref(s->tickets);
    ratelimit_shutdown();
    if (s->base)
        event_base_free(s->base);
}

int server_run(const char *path)
{
    struct server s = {0};
    s.path = (char *)path;
    s.generation = 1;
    signal(SIGPIPE, SIG_IGN);
    s.snap = load_snapshot(&s, path, s.generation, false);
    if (!s.snap)
        return 1;
    char err[256];
    if (log_open(&s.snap->cfg->log, err, sizeof err) < 0) {
        fprintf(stderr, "%s: log: %s\n", path, err);
        snapshot_unref(s.snap);
        return 1;
    }
    int rc = 1;
    fdlimit_apply(s.snap->cfg); /* before any connection can find the default 1024 too few */
    s.base = event_base_new();
    if (ratelimit_init(s.snap->cfg->ratelimit.max_keys) < 0) {
        fprintf(stderr, "%s: ratelimit.max_keys: cannot allocate the key table\n", path);
        goto out;
    }
    if (!s.base || setup_events(&s) < 0 || start_admin(&s) < 0 || start_workers(&s) < 0)
        goto out;
    update_ocsp(&s, s.snap);
    s.checker = health_checker_new(s.base);
    if (!s.checker)
        log_msg(LOG_ERROR, "health checks: out of memory; upstreams are not probed");
    health_checker_set(s.checker, s.snap);
    log_msg(LOG_INFO, "moat %s: %d workers, %zu https and %zu http listeners, generation %lu",
            MOAT_VERSION, s.num_workers, s.snap->cfg->listen.num_https,
            s.snap->cfg->listen.num_http, s.generation);
    audit_op("start", s.generation, NULL);
    cert_audit_loaded(s.snap->tls, s.generation, time(NULL));
    s.cert_check_at = time(NULL) + 86400;
    event_base_dispatch(s.base);
    rc = 0;
out:
    shutdown_all(&s);
    if (rc == 0)
        audit_op("stop", s.generation, NULL);
    audit_chain_close(); /* the head, for the next start: no thread writes audit events now */
    syslog_shutdown();   /* sends or spools what is queued, the stop event included */
    if (rc == 0)
        log_msg(LOG_INFO, "stopped");
    return rc;
}
