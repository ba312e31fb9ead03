#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "config.h"
#include "metrics.h"
#include "ratelimit.h"

struct admin {
    struct evhttp *http;
    struct admin_source src;
};

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type,
                  struct evbuffer *body)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    evhttp_send_reply(req, code, reason, body);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct admin *a = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    struct evbuffer *body = evbuffer_new();
    if (!body)
        return;
    if (path && !strcmp(path, "/metrics")) {
        int n = 0;
        struct metrics *const *sets = a->src.metrics(a->src.arg, &n);
        metrics_render(body, sets, n);
        ratelimit_render_metrics(body);
        reply(req, 200, "OK", "text/plain; version=0.0.4", body);
    } else if (path && !strcmp(path, "/healthz")) {
        evbuffer_add(body, "ok\n", 3);
        reply(req, 200, "OK", "text/plain", body);
    } else if (path && !strcmp(path, "/readyz")) {
        bool ok = a->src.ready(a->src.arg);
        evbuffer_add_printf(body, "%s\n", ok ? "ready" : "not ready");
        reply(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", "text/plain", body);
    } else {
        evbuffer_add(body, "not found\n", 10);
        reply(req, 404, "Not Found", "text/plain", body);
    }
    evbuffer_free(body);
}

struct admin *admin_start(struct event_base *base, const struct config_addr *addr,
                          const struct admin_source *src, char *err, size_t errlen)
{
    struct admin *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->src = *src;
    a->http = evhttp_new(base);
    if (!a->http || evhttp_bind_socket(a->http, addr->host, addr->port) < 0) {
        snprintf(err, errlen, "admin: cannot listen on %s", addr->text);
        admin_stop(a);
        return NULL;
    }
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_max_headers_size(a->http, 8192);
    evhttp_set_max_body_size(a->http, 0);
    evhttp_set_timeout(a->http, 5);
    evhttp_set_gencb(a->http, on_request, a);
    return a;
}

void admin_stop(struct admin *a)
{
    if (!a)
        return;
    if (a->http)
        evhttp_free(a->http);
    free(a);
}
