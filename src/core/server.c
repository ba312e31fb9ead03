#include "core/server.h"
#include "core/server_state.h"

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
#include "core/listener_set.h"
#include "core/topology.h"
#include "core/control.h"
#include "core/upgrade.h"
#include "core/notify.h"
#include "observe/cert_audit.h"
#include "observe/log.h"
#include "observe/syslog.h"
#include "observe/metrics.h"
#include "tls/ocsp_updater.h"
#include "policy/ratelimit.h"
#include "core/snapshot.h"
#include "util/alloc_tune.h"
#include "tls/tls.h"
#include "tls/tls_tickets.h"
#include "core/worker.h"
#include "upstream/health_check.h"
#include "upstream/upstream_state.h"
#include "util/jsonw.h"
#include "util/monotime.h"

/* While draining, how often the main thread looks whether every worker is done. */
#define EXIT_POLL_MS 50

/* Every signal moat handles; the others keep their default action. */
/* The last ones would end moat silently by their default action: logged and ignored. */
static const int handled_signals[] = {SIGHUP,  SIGTERM,   SIGINT,    SIGQUIT, SIGUSR1,
                                      SIGUSR2, SIGALRM,   SIGVTALRM, SIGPROF, SIGIO,
                                      SIGPWR,  SIGSTKFLT, SIGXCPU,   SIGXFSZ};
_Static_assert(sizeof handled_signals / sizeof handled_signals[0] == NUM_SIGNALS,
               "server_state.h: NUM_SIGNALS");

/* Appends a line to the reload result (the control socket's answer). */
static void result_add(struct server *s, const char *msg)
{
    size_t n = strlen(s->result);
    snprintf(s->result + n, sizeof s->result - n, "%s%s", n ? "\n" : "", msg);
}

/* Retired ticket keys kept for decryption after a rotation. */
#define TICKET_KEYS_PREVIOUS 2

/* An error of a config being loaded: stderr at startup, else the log and the reload result. */
static void report(struct server *s, bool to_log, const char *path, const char *msg)
{
    char line[1024];
    snprintf(line, sizeof line, "%s%s%s", path ? path : "", path ? ": " : "", msg);
    if (to_log)
        log_msg(LOG_ERROR, "%s", line);
    else
        fprintf(stderr, "%s\n", line);
    result_add(s, line);
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
        report(s, to_log, "tls.session_tickets", err);
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
        for (size_t i = 0; i < errs.count; i++)
            report(s, to_log, NULL, errs.msgs[i]);
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
        report(s, to_log, path, err);
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
 * to Redis (with a redis: section: authenticated routes would answer 503), Redis
 * refused a command moat needs for lack of permission (services_noperm_note),
 * or a routed pool has no server up. Reads atomics only.
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
        unsigned noperm = 0;
        for (int i = 0; i < s->num_workers; i++)
            noperm |= atomic_load(&s->workers[i]->svc.redis_noperm);
        for (unsigned b = 0; b < SVC_NOPERM_BITS; b++)
            if (noperm & (1u << b))
                why_add(why, len, "redis: %s",
                        services_noperm_str((enum services_noperm)(1u << b)));
    }
    pools_unavailable(s->snap, why, len);
    return why[0] == '\0';
}

static struct snapshot *admin_snapshot(void *arg)
{
    struct server *s = arg;
    return s->snap;
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

/* Workers for cfg ("auto" is resolved by the loader), at most MAX_WORKERS. */
static int worker_count(const struct config *cfg)
{
    return cfg->workers < 1 ? 1 : cfg->workers > MAX_WORKERS ? MAX_WORKERS : cfg->workers;
}

static struct admin_source admin_src(struct server *s)
{
    return (struct admin_source){
        .metrics = admin_metrics, .ready = admin_ready, .snapshot = admin_snapshot, .arg = s};
}

/* A changed listen.admin: the new listener opens (*out) before the old one closes. */
static int plan_admin(struct server *s, const struct config *cfg, struct admin **out, char *err,
                      size_t errlen)
{
    const struct config_addr *a = &s->snap->cfg->listen.admin, *b = &cfg->listen.admin;
    *out = s->admin;
    if (!a->text == !b->text && (!a->text || !strcmp(a->text, b->text)))
        return 0;
    struct admin_source src = admin_src(s);
    *out = b->text ? admin_start(s->base, &cfg->listen, &src, err, errlen) : NULL;
    return !b->text || *out ? 0 : -1;
}

/* Workers [n, num_workers) stop accepting (their sockets went to the others) and drain. */
static void retire_workers(struct server *s, int n)
{
    for (int i = n; i < s->num_workers; i++) {
        worker_post_handover(s->workers[i]);
        if (s->num_retired == MAX_WORKERS) /* many shrinks within a drain timeout: wait */
            worker_join_and_free(s->workers[i]);
        else
            s->retired[s->num_retired++] = s->workers[i];
        s->workers[i] = NULL;
        s->metrics[i] = NULL;
    }
    s->num_workers = n;
}

static void describe_admin(const struct config *a, const struct config *b, char *buf, size_t len)
{
    const char *x = a->listen.admin.text, *y = b->listen.admin.text;
    size_t n = strlen(buf);
    if (!x != !y || (x && strcmp(x, y)))
        snprintf(buf + n, len - n, "%slisten.admin %s -> %s", n ? ", " : "", x ? x : "null",
                 y ? y : "null");
}

/*
 * The listeners, worker count and admin listener of snap's config: everything
 * that can fail (a port in use, a thread) is done first; on failure nothing
 * has changed. what receives the changes for the result line.
 */
static int apply_topology(struct server *s, struct snapshot *snap, char *what, size_t len)
{
    char err[512];
    int old_n = s->num_workers, new_n = worker_count(snap->cfg);
    struct lset next;
    struct admin *na;
    if (lset_plan(&s->lset, &snap->cfg->listen, old_n, new_n, &next, err, sizeof err) < 0)
        goto fail;
    if (plan_admin(s, snap->cfg, &na, err, sizeof err) < 0) {
        lset_discard(&next, &s->lset, 0, 0);
        goto fail;
    }
    if (new_n > old_n &&
        topology_spawn(s->workers, s->metrics, &next, snap, old_n, new_n, err, sizeof err) < 0) {
        lset_discard(&next, &s->lset, old_n, new_n);
        if (na != s->admin)
            admin_stop(na);
        goto fail;
    }
    topology_commit(s->workers, old_n, new_n, &s->lset, &next);
    if (new_n > old_n)
        s->num_workers = new_n;
    retire_workers(s, new_n);
    lset_describe(&s->lset, &next, what, len);
    lset_free(&s->lset);
    s->lset = next;
    describe_admin(s->snap->cfg, snap->cfg, what, len);
    if (na != s->admin) {
        admin_stop(s->admin);
        s->admin = na;
    }
    if (new_n != old_n)
        snprintf(what + strlen(what), len - strlen(what), "%sworkers %d -> %d", what[0] ? ", " : "",
                 old_n, new_n);
    return 0;
fail:
    log_msg(LOG_ERROR, "reload: %s; keeping generation %lu", err, s->generation);
    result_add(s, err);
    return -1;
}

static void reload(struct server *s)
{
    s->result[0] = '\0';
    s->result_ok = false;
    log_msg(LOG_INFO, "reload: reading %s", s->path);
    struct snapshot *snap = load_snapshot(s, s->path, s->generation + 1, true);
    if (!snap) {
        log_msg(LOG_ERROR, "reload: the new configuration is invalid; keeping generation %lu",
                s->generation);
        audit_op("config_rejected", s->generation, "invalid configuration (errors in the log)");
        return;
    }
    char what[2048] = "";
    if (apply_topology(s, snap, what, sizeof what) < 0) {
        snapshot_unref(snap);
        audit_op("config_rejected", s->generation, "listeners or workers could not be applied");
        return;
    }
    char err[256];
    if (log_open(&snap->cfg->log, err, sizeof err) < 0)
        log_msg(LOG_ERROR, "reload: log: %s (keeping the previous log targets)", err);
    fdlimit_apply(snap->cfg); /* limits.max_connections may have grown */
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
    snprintf(s->result, sizeof s->result, "generation %lu is live%s%s", s->generation,
             what[0] ? ": " : "", what);
    s->result_ok = true;
    log_msg(LOG_INFO, "reload: %s", s->result);
    audit_op("config_reloaded", s->generation, NULL);
    cert_audit_loaded(s->snap->tls, s->generation, time(NULL));
}

/* A reload between RELOADING=1 and READY=1 for the service manager, whatever its result
 * (systemd holds the unit in "reloading" until READY=1); STATUS= tells which it was. */
void server_reload(struct server *s)
{
    unsigned long was = s->generation;
    notify_reloading();
    reload(s);
    metrics_reload_result(s->generation != was, s->generation);
    if (s->generation != was)
        notify_status("generation %lu live (reloaded)", s->generation);
    else
        notify_status("reload refused (reasons in the log); generation %lu still serves",
                      s->generation);
    notify_ready();
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
void server_drain(struct server *s, int sig)
{
    if (s->draining) {
        log_msg(LOG_INFO, "%s: already draining", signal_name(sig));
        return;
    }
    s->draining = true;
    if (!s->handed_over) { /* else the service goes on in the new process */
        notify_status("draining (%s)", signal_name(sig));
        notify_stopping();
    }
    log_msg(LOG_INFO, "%s: draining (up to %llu ms)", signal_name(sig),
            (unsigned long long)s->snap->cfg->limits.drain_timeout_ms);
    for (int i = 0; i < s->num_workers; i++) {
        if (s->handed_over) /* the new process accepts from the same sockets */
            worker_post_handover(s->workers[i]);
        else
            worker_post_stop(s->workers[i]);
    }
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
        if (s->draining || s->upgrade) /* an upgrade's new process may hold old sockets */
            log_msg(LOG_WARN, "SIGHUP: ignored while %s",
                    s->draining ? "draining" : "an upgrade is in progress");
        else
            server_reload(s);
        return;
    case SIGUSR1:
        reopen_logs(s);
        return;
    case SIGUSR2:
        server_upgrade(s, NULL);
        return;
    case SIGTERM:
    case SIGINT:
    case SIGQUIT:
        server_drain(s, (int)sig);
        return;
    default:
        log_msg(LOG_WARN, "SIG%s: ignored (SIGTERM, SIGINT or SIGQUIT stop moat)",
                sigabbrev_np((int)sig));
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
    upgrade_reap();
    for (int i = 0; i < s->num_retired; i++) /* workers a reload removed, once drained */
        if (worker_exited(s->retired[i])) {
            worker_join_and_free(s->retired[i]);
            s->retired[i--] = s->retired[--s->num_retired];
        }
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

/* Opens (or adopts, inh) the listening sockets and starts the workers on them. */
static int start_workers(struct server *s, struct lset_inherit *inh)
{
    const struct config *cfg = s->snap->cfg;
    char err[512];
    int n = worker_count(cfg);
    if (lset_open(&s->lset, &cfg->listen, n, inh, err, sizeof err) < 0)
        goto fail;
    if (topology_spawn(s->workers, s->metrics, &s->lset, s->snap, 0, n, err, sizeof err) < 0) {
        lset_free(&s->lset);
        goto fail;
    }
    s->num_workers = n;
    return 0;
fail:
    log_msg(LOG_ERROR, "%s", err);
    result_add(s, err);
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
    struct admin_source src = admin_src(s);
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
    for (int i = 0; i < s->num_retired; i++)
        worker_join_and_free(s->retired[i]);
    s->num_retired = 0;
    lset_free(&s->lset);
    admin_stop(s->admin);
    control_stop(s->control);
    upgrade_abort(s->upgrade);
    upgrade_child_done();
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

/*
 * Admin and control listeners. A normal start opens them before any worker accepts
 * (before: a second instance on the admin port fails before it serves a request); a
 * new process of an upgrade opens them once the old one has closed them (upgrade.h),
 * after its workers, and serves without them rather than not at all.
 */
static int start_listeners(struct server *s, bool before_workers)
{
    bool upgraded = s->upgrade_fd >= 0;
    if (before_workers)
        return upgraded ? 0 : start_admin(s) < 0 || server_start_control(s) < 0 ? -1 : 0;
    if (!upgraded)
        return 0; /* opened before the workers */
    upgrade_child_ready(s->upgrade_fd, s->base);
    s->upgrade_fd = -1;
    log_msg(LOG_INFO, "upgrade: process %d took over the listening sockets", (int)getpid());
    if (start_admin(s) < 0 || server_start_control(s) < 0)
        log_msg(LOG_ERROR, "upgrade: serving without the admin or control listener");
    return 0;
}

static int serve(const char *path, int upgrade_fd, struct lset_inherit *inh)
{
    struct server s = {0};
    s.path = (char *)path;
    s.generation = 1;
    s.upgrade_fd = upgrade_fd;
    signal(SIGPIPE, SIG_IGN);
    alloc_tune();
    s.snap = load_snapshot(&s, path, s.generation, false);
    if (!s.snap) {
        upgrade_child_failed(upgrade_fd, s.result);
        return 1;
    }
    char err[256];
    if (log_open(&s.snap->cfg->log, err, sizeof err) < 0) {
        fprintf(stderr, "%s: log: %s\n", path, err);
        snprintf(s.result, sizeof s.result, "%s: log: %s", path, err);
        upgrade_child_failed(upgrade_fd, s.result);
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
    if (!s.base || setup_events(&s) < 0 || start_listeners(&s, true) < 0 ||
        start_workers(&s, inh) < 0 || start_listeners(&s, false) < 0)
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
    if (upgrade_fd < 0) { /* an upgrade's new process is not the main one yet: notify.h */
        notify_status("generation %lu live: %d workers", s.generation, s.num_workers);
        notify_ready(); /* listeners bound, workers running: connections queue until accepted */
    }
    cert_audit_loaded(s.snap->tls, s.generation, time(NULL));
    s.cert_check_at = time(NULL) + 86400;
    event_base_dispatch(s.base);
    rc = 0;
out:
    if (s.upgrade_fd >= 0)
        upgrade_child_failed(s.upgrade_fd,
                             s.result[0] ? s.result : "the start failed (see its log)");
    shutdown_all(&s);
    if (rc == 0)
        audit_op("stop", s.generation, NULL);
    audit_chain_close(); /* the head, for the next start: no thread writes audit events now */
    syslog_shutdown();   /* sends or spools what is queued, the stop event included */
    if (rc == 0)
        log_msg(LOG_INFO, "stopped");
    return rc;
}

int server_run(const char *path)
{
    struct lset_inherit inh = {0};
    char err[256];
    upgrade_init();
    int fd = upgrade_child_begin(&inh, err, sizeof err);
    if (fd == -2) {
        fprintf(stderr, "moat: %s\n", err);
        return 1;
    }
    int rc = serve(path, fd, &inh);
    lset_inherit_free(&inh);
    return rc;
}
