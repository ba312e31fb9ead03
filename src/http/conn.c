#include "http/conn.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "observe/accesslog.h"
#include "observe/audit_limit.h"
#include "observe/log.h"
#include "observe/metrics_tls.h"
#include "config/config.h"
#include "policy/connlimit.h"
#include "core/membudget.h"
#include "util/monotime.h"
#include "util/netutil.h"
#include "policy/pipeline.h"
#include "upstream/proxy.h"
#include "http/h2_conn.h"
#include "http/proxy_wait.h"
#include "http/http1_response.h"
#include "http/request.h"
#include "http/respond.h"
#include "core/snapshot.h"
#include "tls/tls.h"
#include "core/worker.h"

/* Output above this is not topped up from the upstream until it drains. */
#define CONN_WRITE_LOW (16 * 1024)
/* How long a closing connection keeps discarding what a client still sends: until
 * LINGER_MS pass without a byte (a reset would destroy answers it has not read
 * yet), and never beyond LINGER_MAX_MS (nginx: lingering_timeout, lingering_time). */
#define LINGER_MS 2000
#define LINGER_MAX_MS 30000

static void conn_read_heads(struct conn *c);

const char *conn_state_str(enum conn_state st)
{
    static const char *const names[] = {
        [CONN_HANDSHAKE] = "handshake",
        [CONN_READ_HEAD] = "read_head",
        [CONN_BUSY] = "busy",
        [CONN_TUNNEL] = "tunnel",
        [CONN_H2] = "h2",
        [CONN_CLOSING] = "closing",
        [CONN_LINGER] = "linger",
        [CONN_PROXY_HEADER] = "proxy_header",
    };
    return (unsigned)st < sizeof names / sizeof *names && names[st] ? names[st] : "invalid";
}

/* Every state change goes through here (debug log: which connection, from, to). */
static void conn_set_state(struct conn *c, enum conn_state st)
{
    if (c->state == st)
        return;
    log_msg(LOG_DEBUG, "conn %s: %s -> %s", c->peer.ip, conn_state_str(c->state),
            conn_state_str(st));
    c->state = st;
}

static const struct config *conn_cfg(const struct conn *c)
{
    return c->gen->snap->cfg;
}

static size_t conn_out_high(const struct conn *c)
{
    return conn_cfg(c)->limits.connection_buffer;
}

/* Client input above which the socket is not read: a whole head plus some body
 * (more waits until the pipeline has taken it). */
static void set_read_high(struct conn *c)
{
    tlsio_set_read_high(&c->io, conn_cfg(c)->limits.max_header_bytes + 16 * 1024);
}

/* Milliseconds left before limits.max_connection_age; UINT64_MAX without a limit. */
static uint64_t age_left_ms(const struct conn *c)
{
    uint64_t max = conn_cfg(c)->limits.max_connection_age_ms;
    if (!max)
        return UINT64_MAX;
    uint64_t age = mono_ms() - c->born_ms;
    return age >= max ? 0 : max - age;
}

/*
 * A reload reaches kept-alive connections: each request starts on the
 * worker's newest generation (config, keys, upstream pools, TLS policy for
 * what moat decides; the TLS session itself stays as negotiated). Only called
 * between requests, with no part of a head scanned yet: the head buffer and
 * the scan's size limit come from the generation.
 */
static void conn_use_current_gen(struct conn *c)
{
    worker_catch_up(c->w);
    struct wgen *cur = c->w->gen;
    if (c->gen == cur)
        return;
    wgen_unref(c->gen);
    c->gen = wgen_ref(cur);
    set_read_high(c);
}

static void arm_timer(struct conn *c, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(&c->timer, &tv);
}

void conn_arm_timer(struct conn *c, uint64_t ms)
{
    arm_timer(c, ms);
}

static void conn_free(struct conn *c)
{
    struct worker *w = c->w;
    if (c->req) {
        proxy_abort(c->req);
        if (c->req->cancel_pending)
            c->req->cancel_pending(c->req);
        if (!c->req->logged && c->req->head_len) {
            if (!c->req->status)
                c->req->status = 499; /* client went away before the response */
            accesslog_request(c->req);
        }
        request_free(&w->reqs, c->req);
    }
    h2_conn_free(c->h2);
    if (c->pw)
        proxy_wait_free(c->pw);
    if (c->tls_ready)
        tlsio_cleanup(&c->io);
    evtimer_del(&c->timer);
    free(c->peer.client_subject);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->peer_admitted)
        connlimit_release(&c->peer.addr.sa);
    else
        connlimit_unreserve();
    wgen_unref(c->gen);
    metrics_add(&w->metrics, M_CONN_ACTIVE, -1);
    free(c);
    worker_conn_closed(w);
}

static void conn_enter(struct conn *c)
{
    c->depth++;
}

static void conn_leave(struct conn *c)
{
    if (c->depth == 1 && !c->dead && c->h2)
        h2_conn_flush(c->h2); /* still held: what the streams queued goes out in one go */
    if (--c->depth == 0 && c->dead)
        conn_free(c);
}

void conn_hold(struct conn *c)
{
    conn_enter(c);
}

void conn_release(struct conn *c)
{
    conn_leave(c);
}

void conn_abort(struct conn *c)
{
    c->dead = true;
    if (c->pw) { /* no TLS yet: stop reading the header now */
        proxy_wait_free(c->pw);
        c->pw = NULL;
    }
    if (c->tls_ready)
        tlsio_stop(&c->io);
    if (c->depth == 0)
        conn_free(c);
}

static void conn_set_reading(struct conn *c, bool on)
{
    tlsio_set_reading(&c->io, on);
    if (on) /* bytes may already sit in the input buffer: look at them again */
        tlsio_trigger_read(&c->io);
}

/*
 * Ends a connection that finished normally: close_notify tells the client the
 * data is complete (not truncated), and only a session shut down cleanly stays
 * in OpenSSL's session cache for resumption.
 */
static void conn_close_clean(struct conn *c)
{
    if (c->state != CONN_HANDSHAKE)
        SSL_shutdown(tlsio_ssl(&c->io));
    conn_abort(c);
}

/*
 * Whether anything the client sent is still unread: in the input buffer, in
 * OpenSSL, or still in the socket (a paused pipelining client's requests; the
 * input buffer alone can be empty then).
 */
static bool conn_unread_input(struct conn *c)
{
    int queued = 0;
    if (tlsio_input_len(&c->io) > 0 || SSL_pending(tlsio_ssl(&c->io)) > 0)
        return true;
    return ioctl(tlsio_fd(&c->io), FIONREAD, &queued) == 0 && queued > 0;
}

/*
 * The response is out: close now, or (when the client may still be sending a
 * body nobody read) shut our side and discard input for a while. Closing a
 * socket with unread input sends a TCP reset, which can destroy the response
 * before the client has read it (RFC 9112 §9.6).
 */
static void conn_finish_close(struct conn *c)
{
    if (!c->linger && !conn_unread_input(c)) {
        conn_close_clean(c);
        return;
    }
    SSL_shutdown(tlsio_ssl(&c->io)); /* close_notify: the response is complete */
    shutdown(tlsio_fd(&c->io), SHUT_WR);
    conn_set_state(c, CONN_LINGER);
    tlsio_set_reading(&c->io, true);
    struct evbuffer *in = tlsio_input(&c->io);
    if (in)
        evbuffer_drain(in, evbuffer_get_length(in));
    c->linger_end_ms = mono_ms() + LINGER_MAX_MS;
    arm_timer(c, LINGER_MS);
}

static void linger_rearm(struct conn *c)
{
    uint64_t now = mono_ms();
    uint64_t left = c->linger_end_ms > now ? c->linger_end_ms - now : 0;
    arm_timer(c, left < LINGER_MS ? left : LINGER_MS);
}

/* Enters CLOSING: input is discarded; the end comes once the output is flushed. */
void conn_close_after_flush(struct conn *c)
{
    conn_set_state(c, CONN_CLOSING);
    tlsio_set_write_low(&c->io, 0);
    if (tlsio_output_len(&c->io) == 0) {
        conn_finish_close(c);
        return;
    }
    arm_timer(c, conn_cfg(c)->limits.idle_timeout_ms);
}

/*
 * Between requests: read the next one, unless the client has not read what it
 * was sent. A client that pipelines requests without reading the answers
 * would otherwise make moat queue answers without bound (401s, redirects,
 * proxied responses alike); it is not read again until its output drains to
 * the write low-water mark (on_write), and TCP pushes back on it meanwhile.
 */
static void conn_await_request(struct conn *c)
{
    if (tlsio_output_len(&c->io) > conn_out_high(c)) {
        c->out_paused = true;
        tlsio_set_reading(&c->io, false);
        return;
    }
    c->out_paused = false;
    tlsio_set_reading(&c->io, true);
    if (tlsio_input_len(&c->io) > 0)
        tlsio_trigger_read(&c->io); /* a pipelined request */
    else
        tlsio_idle(&c->io);
}

static void conn_exchange_done(struct conn *c)
{
    struct request *r = c->req;
    struct worker *w = c->w;
    bool keep = c->keep_alive && r && r->h.framing.keep_alive && !r->close_after && !w->draining &&
                age_left_ms(c) > 0;
    if (r && !r->req_body_done)
        c->linger = true; /* part of the body may still be on its way */
    if (r) {
        accesslog_request(r);
        c->req = NULL;
        request_free(&w->reqs, r);
    }
    if (!keep) {
        conn_close_after_flush(c);
        return;
    }
    conn_set_state(c, CONN_READ_HEAD);
    c->idle = true;
    memset(&c->scan, 0, sizeof c->scan);
    uint64_t idle = conn_cfg(c)->limits.idle_timeout_ms, left = age_left_ms(c);
    arm_timer(c, left < idle ? left : idle); /* an idle connection past its age is closed */
    conn_await_request(c);
}

static void conn_respond(struct conn *c, int status, const char *extra, const char *body,
                         bool close)
{
    struct request *r = c->req;
    if (r && (r->h.framing.body != HTTP1_BODY_NONE && !r->req_body_done))
        close = true; /* the unread body would be taken for the next request */
    if (close)
        c->keep_alive = false;
    struct evbuffer *out = tlsio_output(&c->io);
    if (!out) { /* out of memory */
        conn_abort(c);
        return;
    }
    size_t before = evbuffer_get_length(out);
    bool head_only = r && r->h.method_id == HTTP1_M_HEAD;
    respond_write(out, conn_cfg(c), r, status, extra, body, !c->keep_alive, head_only);
    if (r) {
        r->status = status;
        r->bytes_out += evbuffer_get_length(out) - before;
        r->resp_started = true;
    }
    conn_exchange_done(c);
}

/* The HTTP/1 connection as the client stream of its current request. */
static void cs_respond(void *s, int status, const char *extra, const char *body, bool close)
{
    conn_respond(s, status, extra, body, close);
}

static bool cs_ending(const void *s);

static struct evbuffer *cs_head_begin(void *s, const struct response_head *h)
{
    struct conn *c = s;
    struct evbuffer *out = tlsio_output(&c->io);
    c->head_mark = evbuffer_get_length(out);
    return http1_response_begin(c->req, out, h, cs_ending(c)) ? out : NULL;
}

static void cs_head_end(void *s, const struct response_head *h)
{
    struct conn *c = s;
    struct evbuffer *out = tlsio_output(&c->io);
    http1_response_end(c->req, out, h);
    c->req->bytes_out += evbuffer_get_length(out) - c->head_mark;
}

static void cs_body(void *s, struct evbuffer *src, size_t n)
{
    struct conn *c = s;
    c->req->bytes_out += http1_response_body(c->req, tlsio_output(&c->io), src, n);
}

static void cs_body_end(void *s)
{
    struct conn *c = s;
    c->req->bytes_out += http1_response_body_end(c->req, tlsio_output(&c->io));
}

static void cs_continue_100(void *s)
{
    struct conn *c = s;
    evbuffer_add(tlsio_output(&c->io), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    c->req->bytes_out += 25;
}

static struct evbuffer *cs_body_in(void *s)
{
    return tlsio_input(&((struct conn *)s)->io);
}

static struct evbuffer *cs_out(void *s)
{
    return tlsio_output(&((struct conn *)s)->io);
}

static size_t cs_out_high(const void *s)
{
    return conn_out_high(s);
}

static void cs_set_reading(void *s, bool on)
{
    conn_set_reading(s, on);
}

static void cs_arm_timer(void *s, uint64_t ms)
{
    struct conn *c = s;
    if (ms)
        arm_timer(c, ms);
    else
        evtimer_del(&c->timer);
}

static bool cs_ending(const void *s)
{
    const struct conn *c = s;
    return c->w->draining || !c->keep_alive;
}

static void cs_tunnel(void *s)
{
    conn_set_state(s, CONN_TUNNEL);
}

static void cs_done(void *s)
{
    conn_exchange_done(s);
}

static void cs_abort(void *s)
{
    conn_abort(s);
}

static void cs_hold(void *s)
{
    conn_enter(s);
}

static void cs_release(void *s)
{
    conn_leave(s);
}

static const struct client_stream_ops conn_stream_ops = {
    .respond = cs_respond,
    .head_begin = cs_head_begin,
    .head_end = cs_head_end,
    .body = cs_body,
    .body_end = cs_body_end,
    .continue_100 = cs_continue_100,
    .body_in = cs_body_in,
    .out = cs_out,
    .out_high = cs_out_high,
    .set_reading = cs_set_reading,
    .arm_timer = cs_arm_timer,
    .ending = cs_ending,
    .tunnel = cs_tunnel,
    .done = cs_done,
    .abort = cs_abort,
    .hold = cs_hold,
    .release = cs_release,
};

/* A request on this connection, on the connection's generation. */
static struct request *conn_request_new(struct conn *c)
{
    struct request *r = request_new(&c->w->reqs, conn_cfg(c)->limits.max_header_bytes);
    if (!r)
        return NULL;
    r->stream = c;
    r->ops = &conn_stream_ops;
    r->peer = &c->peer;
    r->snap = c->gen->snap;
    r->cfg = c->gen->snap->cfg;
    r->ups = c->gen->ups;
    r->svc = &c->w->svc;
    worker_request_id(c->w, r->id);
    return r;
}

/* A request that could not even be parsed: answer, log, close. */
static void conn_reject(struct conn *c, int status, const char *why)
{
    struct request *r = c->req;
    if (!r) {
        r = conn_request_new(c);
        if (!r) {
            conn_abort(c);
            return;
        }
        c->req = r;
    }
    r->error = why;
    metrics_inc(&c->w->metrics, M_BAD_REQUESTS);
    audit_request_refused(r, status, why);
    conn_set_state(c, CONN_BUSY);
    evtimer_del(&c->timer);
    conn_respond(c, status, NULL, why, true);
}

static int conn_take_head(struct conn *c, const char *p, size_t n)
{
    struct request *r = conn_request_new(c);
    if (!r)
        return -1;
    memcpy(r->head_buf, p, n);
    r->head_len = n;
    r->bytes_in = n;
    c->req = r;
    evbuffer_drain(tlsio_input(&c->io), n);
    memset(&c->scan, 0, sizeof c->scan);
    return 0;
}

static void conn_start_request(struct conn *c)
{
    struct request *r = c->req;
    const struct config *cfg = conn_cfg(c);
    struct http1_limits lim = {cfg->limits.max_header_bytes, cfg->limits.max_headers};
    int status = 400;
    const char *err = "bad request";
    evtimer_del(&c->timer);
    conn_set_state(c, CONN_BUSY);
    c->requests++;
    metrics_inc(&c->w->metrics, M_REQUESTS);
    metrics_add(&c->w->metrics, M_BYTES_IN, (int64_t)r->head_len);
    if (http1_parse_request(r->head_buf, r->head_len, &lim, &r->h, &status, &err) < 0) {
        conn_reject(c, status, err);
        return;
    }
    request_head_parsed(r);
    c->keep_alive = r->h.framing.keep_alive && age_left_ms(c) > 0; /* the last one says so */
    if (r->h.framing.body == HTTP1_BODY_NONE)
        r->req_body_done = true;
    if (membudget_exceeded(c->w, cfg->limits.max_memory)) {
        /* shed instead of growing: closing also frees what this connection holds */
        metrics_inc(&c->w->metrics, M_SHED_MEMORY);
        r->error = "memory limit";
        conn_respond(c, 503, "Retry-After: 1\r\n", "server busy", true);
        return;
    }
    pipeline_run(r);
}

/* Skips empty lines a client may send between requests (RFC 9112 §2.2). */
static void skip_leading_crlf(struct evbuffer *in)
{
    for (int i = 0; i < 2; i++) {
        unsigned char two[2];
        if (evbuffer_copyout(in, two, 2) != 2 || two[0] != '\r' || two[1] != '\n')
            return;
        evbuffer_drain(in, 2);
    }
}

static void conn_read_heads(struct conn *c)
{
    if (c->scan.offset == 0)
        conn_use_current_gen(c);
    struct evbuffer *in = tlsio_input(&c->io);
    const struct config *cfg = conn_cfg(c);
    size_t max = cfg->limits.max_header_bytes;
    if (!in)
        return;
    if (c->scan.offset == 0)
        skip_leading_crlf(in);
    size_t len = evbuffer_get_length(in);
    if (len == 0)
        return;
    if (c->idle) { /* first byte of a new request: the header clock starts */
        c->idle = false;
        arm_timer(c, cfg->limits.header_timeout_ms);
    }
    size_t want = len < max + 1 ? len : max + 1;
    const char *p = (const char *)evbuffer_pullup(in, (ssize_t)want);
    int status = 400;
    ssize_t n = http1_head_scan(&c->scan, p, want, max, &status);
    if (n == 0)
        return;
    if (n < 0) {
        conn_reject(c, status, status == 431 ? "request header too large" : "malformed request");
        return;
    }
    if (conn_take_head(c, p, (size_t)n) < 0) {
        conn_abort(c);
        return;
    }
    conn_start_request(c);
}

static void on_read(void *arg)
{
    struct conn *c = arg;
    conn_enter(c);
    switch (c->state) {
    case CONN_READ_HEAD:
        conn_read_heads(c);
        break;
    case CONN_BUSY:
    case CONN_TUNNEL:
        if (c->req)
            proxy_client_readable(c->req);
        break;
    case CONN_H2:
        h2_conn_on_read(c->h2);
        break;
    case CONN_CLOSING:
    case CONN_LINGER: {
        struct evbuffer *in = tlsio_input(&c->io);
        if (in)
            evbuffer_drain(in, evbuffer_get_length(in));
        if (c->state == CONN_LINGER) /* still sending: wait for quiet, up to the cap */
            linger_rearm(c);
        break;
    }
    case CONN_HANDSHAKE:
    case CONN_PROXY_HEADER:
        break;
    }
    conn_leave(c);
}

static void on_write(void *arg)
{
    struct conn *c = arg;
    conn_enter(c);
    if (c->state == CONN_CLOSING) {
        if (tlsio_output_len(&c->io) == 0)
            conn_finish_close(c);
    } else if (c->state == CONN_H2) {
        h2_conn_on_write(c->h2);
    } else if (c->state == CONN_READ_HEAD && c->out_paused) {
        conn_await_request(c); /* the client read its answers: on to its next request */
    } else if (c->req) {
        proxy_client_drained(c->req);
    }
    conn_leave(c);
}

static void on_handshake_done(struct conn *c)
{
    SSL *ssl = tlsio_ssl(&c->io);
    c->peer.tls_version = tls_conn_version(ssl);
    c->peer.tls_cipher = tls_conn_cipher(ssl);
    metrics_tls_handshake(&c->w->metrics, ssl);
    c->peer.sni = tls_conn_servername(ssl);
    char subject[512];
    if (tls_conn_peer_subject(ssl, subject, sizeof subject) >= 0)
        c->peer.client_subject = strdup(subject); /* once per connection, for every access line */
    if (tls_conn_is_h2(ssl)) {
        conn_set_state(c, CONN_H2);
        c->peer.h2 = true;
        if (h2_conn_start(c) < 0)
            conn_abort(c);
        return;
    }
    conn_set_state(c, CONN_READ_HEAD);
    c->idle = false; /* the header clock keeps running from accept */
}

static void on_event(void *arg, int what)
{
    struct conn *c = arg;
    conn_enter(c);
    if (what & TLSIO_CONNECTED) {
        on_handshake_done(c);
    } else if (what & (TLSIO_EOF | TLSIO_ERROR)) {
        if (c->state == CONN_HANDSHAKE)
            metrics_tls_failed(&c->w->metrics, metrics_tls_fail_reason(!(what & TLSIO_ERROR)));
        bool goodbye = SSL_get_shutdown(tlsio_ssl(&c->io)) & SSL_RECEIVED_SHUTDOWN;
        if ((what & TLSIO_EOF) && !(what & TLSIO_ERROR) && (goodbye || c->idle))
            conn_close_clean(c); /* answer close_notify with ours: the session stays valid */
        else
            conn_abort(c);
    }
    conn_leave(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    conn_enter(c);
    if (c->state == CONN_H2) {
        h2_conn_on_timer(c->h2);
    } else if (c->state == CONN_READ_HEAD && !c->idle) {
        conn_reject(c, 408, "request header timeout");
    } else if (c->state == CONN_BUSY && c->req && !c->req->resp_started) {
        proxy_abort(c->req);
        c->req->error = "request body timeout";
        conn_respond(c, 408, NULL, "request body timeout", true);
    } else if (c->state == CONN_READ_HEAD && c->idle) {
        /* Idle timeout or past its age (which one does not matter: libevent's clock
         * can fire a few ms before mono_ms() says the age is reached). Answers a
         * paused client has not read still go out, and its unread requests are
         * discarded by lingering: closing over them would reset the connection. */
        conn_close_after_flush(c);
    } else {
        if (c->state == CONN_HANDSHAKE)
            metrics_tls_failed(&c->w->metrics, TF_TIMEOUT);
        conn_abort(c); /* handshake, stalled output, tunnel or linger */
    }
    conn_leave(c);
}

/* Whether cfg still has a route with this id (routes are named by id across reloads). */
static bool route_kept(const struct config *cfg, const char *id)
{
    for (size_t i = 0; i < cfg->num_routes; i++)
        if (cfg->routes[i].id && id && !strcmp(cfg->routes[i].id, id))
            return true;
    return false;
}

void conn_reloaded(struct conn *c, const struct config *cfg)
{
    const struct request *r = c->req;
    if (c->state == CONN_TUNNEL && r && r->route && !route_kept(cfg, r->route->id))
        proxy_route_gone(c->req, cfg->limits.tunnel_drain_timeout_ms);
}

void conn_drain(struct conn *c)
{
    conn_enter(c);
    if (c->state == CONN_HANDSHAKE || c->state == CONN_PROXY_HEADER)
        conn_abort(c);
    else if (c->state == CONN_H2)
        h2_conn_drain(c->h2);
    else if (c->state == CONN_READ_HEAD && c->idle && tlsio_output_len(&c->io) == 0)
        conn_close_clean(c);
    else if (c->state == CONN_READ_HEAD && c->idle)
        conn_close_after_flush(c); /* answers it has not read yet (paused) still go out */
    else
        c->keep_alive = false;
    conn_leave(c);
}

static void io_hold(void *arg)
{
    conn_enter(arg);
}

static void io_release(void *arg)
{
    conn_leave(arg);
}

static const struct tlsio_ops conn_io_ops = {on_read, on_write, on_event, io_hold, io_release};

/* TLS on fd, which it owns from now on (closed on failure too). */
static int conn_start_tls(struct conn *c, int fd)
{
    SSL *ssl = tls_policy_new_ssl(c->gen->snap->tls);
    if (!ssl || tlsio_init(&c->io, c->w->base, fd, ssl, &conn_io_ops, c) < 0) {
        SSL_free(ssl);
        close(fd);
        return -1;
    }
    c->tls_ready = true;
    tlsio_set_accounting(&c->io, &c->w->metrics.v[M_BUFFERED_BYTES]);
    set_read_high(c);
    tlsio_set_write_low(&c->io, CONN_WRITE_LOW);
    return 0;
}

static void conn_set_peer(struct conn *c, const struct sockaddr *sa, size_t salen)
{
    memset(&c->peer.addr, 0, sizeof c->peer.addr);
    memcpy(&c->peer.addr, sa, salen < sizeof c->peer.addr ? salen : sizeof c->peer.addr);
    netutil_addr_to_str(sa, c->peer.ip, sizeof c->peer.ip);
}

/*
 * The PROXY header is in (or failed): the client it names becomes the peer,
 * its per-IP caps apply now (the instance total was charged at accept), then TLS
 * starts on the bytes that follow. A LOCAL header keeps the balancer as the peer.
 */
static void on_proxy_header(void *arg, const struct proxy_protocol_header *h, const char *err)
{
    struct conn *c = arg;
    conn_enter(c);
    if (!h) { /* a balancer that does not send one is misconfigured: say so, not per connection */
        static _Thread_local struct log_limit limit;
        log_msg_limited(&limit, LOG_WARN, "listen.proxy_protocol: connection from %s closed: %s",
                        c->peer.ip, err);
        conn_abort(c);
    } else {
        if (!h->local)
            conn_set_peer(c, &h->src.sa,
                          h->src.sa.sa_family == AF_INET6 ? sizeof h->src.in6 : sizeof h->src.in4);
        int fd = proxy_wait_end(c->pw);
        c->pw = NULL;
        const char *refused = connlimit_admit_reserved(&conn_cfg(c)->limits, &c->peer.addr.sa);
        if (refused) {
            metrics_inc(&c->w->metrics, M_CONN_REFUSED);
            audit_connection_refused(&c->peer.addr.sa, refused);
            close(fd);
            conn_abort(c);
        } else {
            c->peer_admitted = true;
            conn_set_state(c, CONN_HANDSHAKE);
            if (conn_start_tls(c, fd) < 0)
                conn_abort(c);
        }
    }
    conn_leave(c);
}

/* proxied: fd starts with a PROXY header (a trusted source, listen.proxy_protocol). */
static struct conn *conn_new(struct worker *w, int fd, const struct sockaddr *sa, int salen,
                             bool proxied)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return NULL;
    }
    c->w = w;
    c->gen = wgen_ref(w->gen);
    c->born_ms = mono_ms();
    c->peer_admitted = !proxied;
    conn_set_peer(c, sa, (size_t)salen);
    evtimer_assign(&c->timer, w->base, on_timer, c);
    if (proxied) {
        c->state = CONN_PROXY_HEADER;
        c->pw = proxy_wait_start(w->base, fd, on_proxy_header, c);
        if (!c->pw)
            close(fd);
    }
    if (proxied ? !c->pw : conn_start_tls(c, fd) < 0) {
        wgen_unref(c->gen);
        free(c);
        return NULL;
    }
    return c;
}

void conn_accept(struct worker *w, int fd, const struct sockaddr *sa, int salen)
{
    const struct snapshot *snap = w->gen->snap;
    const struct config_limits *lim = &snap->cfg->limits;
    /* From a balancer that sends PROXY headers, the client is not known yet: only the
     * instance-wide cap now, the per-IP ones once the header names the client. */
    bool proxied = snap->num_proxy_sources &&
                   netutil_cidr_match(snap->proxy_sources, snap->num_proxy_sources, sa);
    const char *refused = w->draining ? NULL
                          : proxied   ? (connlimit_reserve(lim) ? NULL : "max_connections")
                                      : connlimit_admit(lim, sa);
    if (w->draining || refused) {
        metrics_inc(&w->metrics, M_CONN_REFUSED);
        if (refused) /* draining is not a decision about the client */
            audit_connection_refused(sa, refused);
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = conn_new(w, fd, sa, salen, proxied);
    if (!c) {
        if (proxied)
            connlimit_unreserve();
        else
            connlimit_release(sa);
        return;
    }
    arm_timer(c, conn_cfg(c)->limits.header_timeout_ms); /* PROXY header and TLS included */
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->num_conns++;
    w->churn++;
    metrics_inc(&w->metrics, M_CONN_ACCEPTED);
    metrics_inc(&w->metrics, M_CONN_ACTIVE);
}
