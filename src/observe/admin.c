#include "observe/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "config/config.h"
#include "core/listener.h"
#include "observe/log.h"
#include "observe/metrics.h"
#include "observe/syslog.h"
#include "policy/ratelimit.h"
#include "upstream/upstream_report.h"
#include "util/jsonw.h"

struct admin {
    struct evhttp *http;
    struct evconnlistener *lev; /* owned by http; guarded against accept spins */
    struct admin_source src;
    char *unix_path; /* the socket file to remove on exit, or NULL */
    unsigned long unix_ino;
};

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type,
                  struct evbuffer *body)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    evhttp_send_reply(req, code, reason, body);
}

static void reply_405(struct evhttp_request *req, const char *allow, struct evbuffer *body)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    evbuffer_add_printf(body, "method not allowed\n");
    reply(req, 405, "Method Not Allowed", "text/plain", body);
}

/* A URL-decoded copy of n bytes of s, or NULL (no memory, or a decoded NUL byte). */
static char *decode_segment(const char *s, size_t n)
{
    char *raw = strndup(s, n);
    size_t len = 0;
    char *out = raw ? evhttp_uridecode(raw, 0, &len) : NULL;
    free(raw);
    if (out && len != strlen(out)) {
        free(out);
        out = NULL;
    }
    return out;
}

/*
 * "/upstreams/<pool>/<server>/drain" or ".../ready": the pool is the first
 * segment, the server everything up to the action (a unix socket address may
 * hold slashes, encoded or not). Returns false for any other path.
 */
static bool upstream_action_path(const char *path, const char **pool, size_t *pool_len,
                                 const char **server, size_t *server_len, bool *drain)
{
    static const char prefix[] = "/upstreams/";
    size_t n = strlen(path), plen = sizeof prefix - 1;
    if (n <= plen + 6 || strncmp(path, prefix, plen))
        return false;
    if (!strcmp(path + n - 6, "/drain"))
        *drain = true;
    else if (!strcmp(path + n - 6, "/ready"))
        *drain = false;
    else
        return false;
    const char *rest = path + plen, *end = path + n - 6;
    const char *slash = memchr(rest, '/', (size_t)(end - rest));
    if (!slash || slash == rest || slash + 1 >= end)
        return false;
    *pool = rest;
    *pool_len = (size_t)(slash - rest);
    *server = slash + 1;
    *server_len = (size_t)(end - slash - 1);
    return true;
}

static void reply_json_error(struct evhttp_request *req, int code, const char *reason,
                             const char *error, struct evbuffer *body)
{
    char buf[128];
    struct jsonw j;
    jsonw_begin(&j, buf, sizeof buf);
    jsonw_str(&j, "error", error);
    evbuffer_add(body, buf, jsonw_end(&j));
    reply(req, code, reason, "application/json", body);
}

/* POST /upstreams/<pool>/<server>/drain|ready (any body is ignored). */
static void on_upstream_action(struct admin *a, struct evhttp_request *req, const char *path,
                               struct evbuffer *body)
{
    const char *p = NULL, *sv = NULL, *state = NULL;
    size_t plen = 0, svlen = 0;
    bool drain = false;
    upstream_action_path(path, &p, &plen, &sv, &svlen, &drain);
    char *pool = decode_segment(p, plen), *server = decode_segment(sv, svlen);
    const char *err = pool && server ? upstream_set_draining(a->src.snapshot(a->src.arg), pool,
                                                             server, drain, &state)
                                     : "unknown server";
    if (err) {
        reply_json_error(req, 404, "Not Found", err, body);
    } else {
        char buf[1024];
        struct jsonw j;
        jsonw_begin(&j, buf, sizeof buf);
        jsonw_str(&j, "pool", pool);
        jsonw_str(&j, "server", server);
        jsonw_str(&j, "state", state);
        evbuffer_add(body, buf, jsonw_end(&j));
        reply(req, 200, "OK", "application/json", body);
    }
    free(pool);
    free(server);
}

/* GET and HEAD routes. */
static void on_get(struct admin *a, struct evhttp_request *req, const char *path,
                   struct evbuffer *body)
{
    if (!strcmp(path, "/metrics")) {
        int n = 0;
        struct metrics *const *sets = a->src.metrics(a->src.arg, &n);
        struct snapshot *snap = a->src.snapshot(a->src.arg);
        metrics_render(body, sets, n, snap);
        ratelimit_render_metrics(body);
        syslog_render_metrics(body);
        upstream_report_metrics(body, snap);
        reply(req, 200, "OK", "text/plain; version=0.0.4", body);
    } else if (!strcmp(path, "/healthz")) {
        evbuffer_add(body, "ok\n", 3);
        reply(req, 200, "OK", "text/plain", body);
    } else if (!strcmp(path, "/readyz")) {
        char why[512] = "";
        bool ok = a->src.ready(a->src.arg, why, sizeof why);
        if (ok)
            evbuffer_add(body, "ready\n", 6);
        else
            evbuffer_add_printf(body, "not ready: %s\n", why[0] ? why : "unknown");
        reply(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", "text/plain", body);
    } else if (!strcmp(path, "/upstreams")) {
        upstream_report_json(body, a->src.snapshot(a->src.arg));
        reply(req, 200, "OK", "application/json", body);
    } else {
        evbuffer_add(body, "not found\n", 10);
        reply(req, 404, "Not Found", "text/plain", body);
    }
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct admin *a = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    bool post = evhttp_request_get_command(req) == EVHTTP_REQ_POST;
    struct evbuffer *body = evbuffer_new();
    if (!body)
        return;
    const char *p, *sv;
    size_t plen, svlen;
    bool drain;
    if (!path)
        path = "";
    if (upstream_action_path(path, &p, &plen, &sv, &svlen, &drain)) {
        if (post)
            on_upstream_action(a, req, path, body);
        else
            reply_405(req, "POST", body);
    } else if (post) {
        reply_405(req, "GET, HEAD", body);
    } else {
        on_get(a, req, path, body);
    }
    evbuffer_free(body);
}

/* The listening socket: TCP on a numeric loopback address, or a unix socket file. */
static int admin_socket(struct admin *a, const struct config_listen *l, char *err, size_t errlen)
{
    const struct config_addr *addr = &l->admin;
    if (!addr->path)
        return listener_open(addr, false, err, errlen);
    bool stale = false;
    mode_t mode = (mode_t)strtoul(l->admin_mode, NULL, 8); /* validated by the config */
    int fd = listener_open_unix(addr->path, mode, &stale, &a->unix_ino, err, errlen);
    if (fd < 0)
        return -1;
    a->unix_path = strdup(addr->path);
    if (!a->unix_path) {
        listener_unix_remove(addr->path, a->unix_ino);
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (stale)
        log_msg(LOG_INFO, "admin: replaced the stale socket file %s", addr->path);
    return fd;
}

struct admin *admin_start(struct event_base *base, const struct config_listen *l,
                          const struct admin_source *src, char *err, size_t errlen)
{
    struct admin *a = calloc(1, sizeof *a);
    char why[256];
    if (!a)
        return NULL;
    snprintf(why, sizeof why, "%s: cannot listen", l->admin.text);
    a->src = *src;
    a->http = evhttp_new(base);
    int fd = a->http ? admin_socket(a, l, why, sizeof why) : -1;
    if (fd < 0)
        goto fail;
    struct evhttp_bound_socket *bound = evhttp_accept_socket_with_handle(a->http, fd);
    if (!bound) {
        close(fd);
        goto fail;
    }
    a->lev = evhttp_bound_socket_get_listener(bound);
    if (listener_guard(a->lev, l->admin.text) < 0) {
        a->lev = NULL;
        goto fail;
    }
    /* POST only for /upstreams/<pool>/<server>/drain|ready (on_request answers 405 elsewhere) */
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
    evhttp_set_max_headers_size(a->http, 8192);
    evhttp_set_max_body_size(a->http, 0);
    evhttp_set_timeout(a->http, 5);
    evhttp_set_gencb(a->http, on_request, a);
    return a;
fail:
    snprintf(err, errlen, "listen.admin: %s", why);
    admin_stop(a);
    return NULL;
}

void admin_stop(struct admin *a)
{
    if (!a)
        return;
    if (a->lev)
        listener_unguard(a->lev);
    if (a->http)
        evhttp_free(a->http);
    if (a->unix_path)
        listener_unix_remove(a->unix_path, a->unix_ino);
    free(a->unix_path);
    free(a);
}
