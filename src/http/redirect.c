#include "http/redirect.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "config/config.h"
#include "observe/audit_limit.h"
#include "policy/connlimit.h"
#include "util/jsonw.h"
#include "observe/log.h"
#include "util/netutil.h"
#include "core/snapshot.h"
#include "core/worker.h"

struct redirect_conn {
    struct worker *w;
    struct wgen *gen;
    struct bufferevent *bev;
    struct event *deadline; /* absolute: from accept, never pushed back by a byte */
    struct http1_scan scan;
    union { /* TCP only: for connlimit_release() */
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } peer;
    char peer_ip[48];
    bool answered;
};

/* Host names and literal addresses only: nothing that could bend the URL. */
static bool host_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == ':' || c == '[' || c == ']';
}

size_t redirect_location(struct http1_str host, struct http1_str target, uint16_t https_port,
                         char *out, size_t outlen)
{
    if (host.len == 0 || target.len == 0 || target.p[0] != '/')
        return 0;
    for (size_t i = 0; i < host.len; i++)
        if (!host_char_ok(host.p[i]))
            return 0;
    size_t hlen = host.len; /* drop the port the client used for plain HTTP */
    if (host.p[0] == '[') {
        const char *end = memchr(host.p, ']', host.len);
        if (!end)
            return 0;
        hlen = (size_t)(end - host.p) + 1;
    } else {
        const char *colon = memchr(host.p, ':', host.len);
        if (colon)
            hlen = (size_t)(colon - host.p);
    }
    char port[8] = "";
    if (https_port != 443)
        snprintf(port, sizeof port, ":%u", https_port);
    int n = snprintf(out, outlen, "https://%.*s%s%.*s", (int)hlen, host.p, port, (int)target.len,
                     target.p);
    return n > 0 && (size_t)n < outlen ? (size_t)n : 0;
}

static void rc_free(struct redirect_conn *rc)
{
    struct worker *w = rc->w;
    bufferevent_free(rc->bev);
    event_free(rc->deadline);
    connlimit_release(&rc->peer.sa);
    wgen_unref(rc->gen);
    free(rc);
    metrics_add(&w->metrics, M_CONN_ACTIVE, -1);
    worker_conn_closed(w);
}

static void rc_log(struct redirect_conn *rc, const struct http1_request *h, int status)
{
    char line[2048];
    struct jsonw j;
    jsonw_begin(&j, line, sizeof line);
    jsonw_time(&j, "time");
    jsonw_str(&j, "listener", "http");
    jsonw_str(&j, "client_ip", rc->peer_ip);
    if (h) {
        jsonw_strn(&j, "method", h->method.p, h->method.len);
        jsonw_strn(&j, "host", h->host.p, h->host.len);
        jsonw_strn(&j, "path", h->path.p, h->path.len);
    }
    jsonw_int(&j, "status", status);
    size_t n = jsonw_end(&j);
    log_access_append(&rc->w->access, line, n);
}

static void rc_answer(struct redirect_conn *rc, const struct http1_request *h, int status,
                      const char *location)
{
    struct evbuffer *out = bufferevent_get_output(rc->bev);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nServer: moat\r\nContent-Length: 0\r\n", status,
                        http1_reason(status));
    if (location)
        evbuffer_add_printf(out, "Location: %s\r\n", location);
    evbuffer_add(out, "Connection: close\r\n\r\n", 21);
    rc->answered = true;
    bufferevent_disable(rc->bev, EV_READ);
    metrics_count_status(&rc->w->metrics, status);
    if (status == 308)
        metrics_inc(&rc->w->metrics, M_REDIRECTS);
    rc_log(rc, h, status);
}

static void rc_handle(struct redirect_conn *rc, const char *p, size_t n)
{
    const struct config *cfg = rc->gen->snap->cfg;
    struct http1_limits lim = {cfg->limits.max_header_bytes, cfg->limits.max_headers};
    static __thread struct http1_request h; /* big; one per worker thread is enough */
    int status = 400;
    const char *err = NULL;
    if (http1_parse_request(p, n, &lim, &h, &status, &err) < 0) {
        rc_answer(rc, NULL, status, NULL);
        return;
    }
    char loc[8192 + 300];
    size_t len =
        redirect_location(h.host, h.target, cfg->listen.redirect_https_port, loc, sizeof loc);
    rc_answer(rc, &h, len ? 308 : 400, len ? loc : NULL);
}

static void rc_read(struct bufferevent *bev, void *arg)
{
    struct redirect_conn *rc = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t max = rc->gen->snap->cfg->limits.max_header_bytes;
    size_t len = evbuffer_get_length(in);
    size_t want = len < max + 1 ? len : max + 1;
    const char *p = (const char *)evbuffer_pullup(in, (ssize_t)want);
    int status = 400;
    ssize_t n = http1_head_scan(&rc->scan, p, want, max, &status);
    if (n < 0)
        rc_answer(rc, NULL, status, NULL);
    else if (n > 0)
        rc_handle(rc, p, (size_t)n);
}

static void rc_write(struct bufferevent *bev, void *arg)
{
    struct redirect_conn *rc = arg;
    if (rc->answered && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        rc_free(rc);
}

static void rc_event(struct bufferevent *bev, short what, void *arg)
{
    rc_free(arg); /* EOF or error; a stalled write is ended by the deadline */
}

/* The header deadline: no complete head in time gets 408; a 408 or an answer
 * that still is not flushed one more period later is dropped. */
static void rc_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct redirect_conn *rc = arg;
    if (rc->answered) {
        rc_free(rc);
        return;
    }
    rc_answer(rc, NULL, 408, NULL);
    uint64_t ms = rc->gen->snap->cfg->limits.header_timeout_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(rc->deadline, &tv);
}

/* Admission and the per-connection objects; closes fd and returns NULL on refusal. */
static struct redirect_conn *rc_new(struct worker *w, int fd, const struct sockaddr *sa, int salen)
{
    const char *refused =
        w->draining ? NULL : connlimit_admit_plain(&w->gen->snap->cfg->limits, sa);
    if (w->draining || refused) {
        metrics_inc(&w->metrics, M_CONN_REFUSED);
        if (refused) /* draining is not a decision about the client */
            audit_connection_refused(sa, refused);
        close(fd);
        return NULL;
    }
    struct redirect_conn *rc = calloc(1, sizeof *rc);
    if (rc)
        rc->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (rc && rc->bev)
        rc->deadline = evtimer_new(w->base, rc_deadline, rc);
    if (!rc || !rc->deadline) {
        if (rc && rc->bev)
            bufferevent_free(rc->bev);
        else
            close(fd);
        free(rc);
        connlimit_release(sa);
        return NULL;
    }
    rc->w = w;
    memcpy(&rc->peer, sa, (size_t)salen < sizeof rc->peer ? (size_t)salen : sizeof rc->peer);
    return rc;
}

void redirect_accept(struct worker *w, int fd, const struct sockaddr *sa, int salen)
{
    struct redirect_conn *rc = rc_new(w, fd, sa, salen);
    if (!rc)
        return;
    rc->gen = wgen_ref(w->gen);
    netutil_addr_to_str(sa, rc->peer_ip, sizeof rc->peer_ip);
    w->num_conns++;
    metrics_inc(&w->metrics, M_CONN_ACCEPTED);
    metrics_inc(&w->metrics, M_CONN_ACTIVE);
    const struct config *cfg = rc->gen->snap->cfg;
    uint64_t ms = cfg->limits.header_timeout_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(rc->deadline, &tv);
    bufferevent_setwatermark(rc->bev, EV_READ, 0, cfg->limits.max_header_bytes + 1024);
    bufferevent_setcb(rc->bev, rc_read, rc_write, rc_event, rc);
    bufferevent_enable(rc->bev, EV_READ | EV_WRITE);
}
