#include "proxy.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "config.h"
#include "conn.h"
#include "identity.h"
#include "request.h"
#include "respond.h"
#include "snapshot.h"
#include "upstream.h"
#include "worker.h"

/* Above these, the side feeding the buffer stops reading until it drains. */
#define UP_OUT_HIGH conn_out_high(r->conn)
#define CLIENT_OUT_HIGH conn_out_high(r->conn)
/* Upstream response heads may be larger than client request heads (cookies). */
#define RESP_HEAD_MAX (64 * 1024)
#define MAX_ATTEMPTS 3
/*
 * Small bodies are copied next to the head instead of moving their buffer
 * chains: tlsio makes one SSL_write (one TLS record, one write()) per chain,
 * so a small response costs one of each, not two.
 */
#define COALESCE_MAX (16 * 1024)

static void proxy_connect(struct request *r, const struct upstream_server *skip);
static void process_upstream(struct request *r);

/* Moves n bytes; small amounts are copied so they join the output's last chain. */
static void move_bytes(struct evbuffer *in, struct evbuffer *out, size_t n)
{
    if (n == 0)
        return;
    if (n > COALESCE_MAX) {
        evbuffer_remove_buffer(in, out, n);
        return;
    }
    evbuffer_add(out, evbuffer_pullup(in, (ssize_t)n), n);
    evbuffer_drain(in, n);
}

static const struct config *req_cfg(const struct request *r)
{
    return r->conn->gen->snap->cfg;
}

static struct evbuffer *client_in(struct request *r)
{
    return tlsio_input(&r->conn->io);
}

static struct evbuffer *client_out(struct request *r)
{
    return tlsio_output(&r->conn->io);
}

static void set_timeout(struct bufferevent *bev, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    bufferevent_set_timeouts(bev, ms ? &tv : NULL, NULL);
}

void proxy_abort(struct request *r)
{
    if (!r->uc)
        return;
    upstream_release(r->uc, false);
    r->uc = NULL;
}

/* Answers the client with a gateway error, if no response byte has gone out yet. */
static void fail(struct request *r, int status, const char *why)
{
    struct conn *c = r->conn;
    proxy_abort(r);
    if (r->resp_started) {
        conn_abort(c); /* a response is half sent: only closing tells the client */
        return;
    }
    r->error = why;
    metrics_inc(&c->w->metrics, status == 504 ? M_UPSTREAM_TIMEOUT : M_UPSTREAM_ERROR);
    conn_respond(c, status, NULL, NULL, false);
}

static void finish_exchange(struct request *r)
{
    struct conn *c = r->conn;
    struct upstream_conn *uc = r->uc;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    r->upstream_ms = request_ms_between(&r->t_upstream_start, &now);
    r->uc = NULL;
    if (uc) {
        bool reusable = r->up_keep_alive && r->req_body_done && !r->tunnel &&
                        r->resp_in != HTTP1_BODY_UNTIL_CLOSE &&
                        evbuffer_get_length(bufferevent_get_input(uc->bev)) == 0;
        upstream_release(uc, reusable);
    }
    if (!r->req_body_done)
        r->close_after = true; /* the rest of the body would be read as a request */
    conn_exchange_done(c);
}

/* ---- request head ------------------------------------------------------ */

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static char *put_header(char *p, struct http1_str name, struct http1_str value)
{
    p = put(p, name.p, name.len);
    p = put(p, ": ", 2);
    p = put(p, value.p, value.len);
    return put(p, "\r\n", 2);
}

static char *put_framing(char *p, const struct request *r)
{
    char tmp[64];
    if (r->h.framing.body == HTTP1_BODY_LENGTH) {
        int n = snprintf(tmp, sizeof tmp, "Content-Length: %llu\r\n",
                         (unsigned long long)r->h.framing.content_length);
        p = put(p, tmp, (size_t)n);
    } else if (r->h.framing.body == HTTP1_BODY_CHUNKED) {
        p = put(p, "Transfer-Encoding: chunked\r\n", 28);
    }
    return p;
}

/* Bytes the rewritten head can take at most. */
static size_t request_head_cap(const struct request *r, const struct http1_header *up)
{
    return r->head_len + r->add_len + 256 + strlen(r->upstream->name) +
           (up ? up->value.len : 0);
}

/* Writes the rewritten request head at p (request_head_cap() bytes of room):
 * kept headers, moat's headers, moat's framing. Returns its length. */
static size_t build_request_head(const struct request *r, const struct http1_header *up,
                                 char *start)
{
    char *p = start;
    p = put(p, r->h.method.p, r->h.method.len);
    p = put(p, " ", 1);
    p = put(p, r->h.target.p, r->h.target.len);
    p = put(p, " HTTP/1.1\r\n", 11);
    if (r->h.host.len == 0) { /* HTTP/1.0 without Host: the upstream's name, as signed */
        p = put(p, "Host: ", 6);
        p = put(p, r->upstream->name, strlen(r->upstream->name));
        p = put(p, "\r\n", 2);
    }
    for (size_t i = 0; i < r->h.num_headers; i++) {
        if (r->hflags[i] & HFLAG_DROP || identity_is_hop_by_hop(r->h.headers[i].name))
            continue;
        p = put_header(p, r->h.headers[i].name, r->h.headers[i].value);
    }
    p = put(p, r->add_headers, r->add_len);
    p = put_framing(p, r);
    if (up) {
        p = put(p, "Connection: Upgrade\r\n", 21);
        p = put_header(p, up->name, up->value);
    }
    p = put(p, "\r\n", 2);
    return (size_t)(p - start);
}

/*
 * Sends the request head. A head that fits HEAD_STACK goes to the upstream
 * socket at once when nothing is queued before it (upstream_send): write
 * interest is then never registered with epoll for a request without a body,
 * two epoll_ctl() calls per request saved. Larger heads take the output buffer.
 */
#define HEAD_STACK 8192
static int write_request_head(struct request *r)
{
    const struct http1_header *up =
        r->h.framing.upgrade_websocket
            ? http1_find_header(r->h.headers, r->h.num_headers, "Upgrade")
            : NULL;
    size_t cap = request_head_cap(r, up);
    if (cap <= HEAD_STACK) {
        char buf[HEAD_STACK];
        return upstream_send(r->uc, buf, build_request_head(r, up, buf));
    }
    struct evbuffer *out = bufferevent_get_output(r->uc->bev);
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(out, (ssize_t)cap, &v, 1) < 1)
        return -1;
    v.iov_len = build_request_head(r, up, v.iov_base);
    return evbuffer_commit_space(out, &v, 1);
}

/* ---- request body ------------------------------------------------------ */

enum relay_result { RELAY_OK = 0, RELAY_BAD = -1, RELAY_TOO_BIG = -2 };

static enum relay_result relay_chunked(struct evbuffer *in, struct evbuffer *out,
                                       struct http1_chunked *ck, uint64_t *total, uint64_t max,
                                       bool *done)
{
    while (!*done) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
            break;
        size_t consumed = 0;
        uint64_t dlen = 0;
        const char *err = NULL;
        enum http1_chunk_result res =
            http1_chunked_step(ck, v.iov_base, v.iov_len, &consumed, &dlen, &err);
        evbuffer_drain(in, consumed);
        if (res == HTTP1_CHUNK_ERROR)
            return RELAY_BAD;
        if (res == HTTP1_CHUNK_DONE) {
            evbuffer_add(out, "0\r\n\r\n", 5);
            *done = true;
            break;
        }
        if (res == HTTP1_CHUNK_NEED_MORE) {
            if (consumed == 0)
                break;
            continue;
        }
        size_t avail = evbuffer_get_length(in);
        size_t n = dlen < avail ? (size_t)dlen : avail;
        if (n == 0)
            break;
        if (max && *total + n > max)
            return RELAY_TOO_BIG;
        evbuffer_add_printf(out, "%zx\r\n", n);
        move_bytes(in, out, n);
        evbuffer_add(out, "\r\n", 2);
        http1_chunked_data_done(ck, n);
        *total += n;
    }
    return RELAY_OK;
}

/* Raw bytes a chunked body may take on the wire: payload plus generous framing. */
static uint64_t raw_body_cap(const struct config *cfg)
{
    uint64_t max = cfg->limits.max_body_bytes;
    return max ? max + max / 2 + 64 * 1024 : UINT64_MAX; /* 0: no limit */
}

static enum relay_result relay_request_body(struct request *r)
{
    struct evbuffer *in = client_in(r);
    struct evbuffer *out = bufferevent_get_output(r->uc->bev);
    size_t before = evbuffer_get_length(in);
    enum relay_result res = RELAY_OK;
    if (r->h.framing.body == HTTP1_BODY_LENGTH) {
        size_t n = before < r->req_remaining ? before : (size_t)r->req_remaining;
        evbuffer_remove_buffer(in, out, n);
        r->req_remaining -= n;
        r->body_received += n;
        r->req_body_done = r->req_remaining == 0;
    } else {
        res = relay_chunked(in, out, &r->req_chunk, &r->body_received,
                            req_cfg(r)->limits.max_body_bytes, &r->req_body_done);
    }
    r->bytes_in += before - evbuffer_get_length(in);
    if (res == RELAY_OK && r->bytes_in - r->head_len > raw_body_cap(req_cfg(r)))
        res = RELAY_TOO_BIG; /* chunk framing and extensions count too */
    return res;
}

static void request_body_progress(struct request *r)
{
    struct conn *c = r->conn;
    enum relay_result res = relay_request_body(r);
    if (res != RELAY_OK) {
        r->close_after = true;
        if (res == RELAY_TOO_BIG)
            fail(r, 413, "request body too large");
        else
            fail(r, 400, "malformed chunked body");
        return;
    }
    if (r->req_body_done) {
        conn_disarm_timer(c);
        set_timeout(r->uc->bev, req_cfg(r)->limits.upstream_timeout_ms);
        return;
    }
    conn_arm_timer(c, req_cfg(r)->limits.body_timeout_ms);
    if (evbuffer_get_length(bufferevent_get_output(r->uc->bev)) > UP_OUT_HIGH)
        conn_set_reading(c, false); /* resumed by up_write */
}

static void relay_tunnel(struct evbuffer *from, struct evbuffer *to, uint64_t *count)
{
    size_t n = evbuffer_get_length(from);
    evbuffer_add_buffer(to, from);
    *count += n;
}

void proxy_client_readable(struct request *r)
{
    if (!r->uc || !r->head_sent)
        return;
    if (r->tunnel) {
        relay_tunnel(client_in(r), bufferevent_get_output(r->uc->bev), &r->bytes_in);
        conn_arm_timer(r->conn, req_cfg(r)->limits.idle_timeout_ms);
        return;
    }
    if (!r->req_body_done)
        request_body_progress(r);
}

/* ---- sending ----------------------------------------------------------- */

static void send_request(struct request *r)
{
    struct conn *c = r->conn;
    if (write_request_head(r) < 0) {
        fail(r, 502, "cannot write upstream request");
        return;
    }
    r->head_sent = true;
    metrics_inc(&c->w->metrics, r->uc->reused ? M_UPSTREAM_REUSE : M_UPSTREAM_CONNECT);
    if (r->h.framing.expect_continue && !r->req_body_done &&
        evbuffer_get_length(client_in(r)) == 0) {
        evbuffer_add(client_out(r), "HTTP/1.1 100 Continue\r\n\r\n", 25);
        r->bytes_out += 25;
    }
    if (r->req_body_done) {
        set_timeout(r->uc->bev, req_cfg(r)->limits.upstream_timeout_ms);
        return;
    }
    set_timeout(r->uc->bev, 0);
    request_body_progress(r);
}

static bool can_retry(const struct request *r)
{
    /* A kept-alive connection the upstream closed just before our request:
       safe to replay only when nothing of the request is lost with it. */
    return r->uc->reused && !r->resp_head_done && r->resp_scan.offset == 0 &&
           r->h.framing.body == HTTP1_BODY_NONE && r->attempts < MAX_ATTEMPTS;
}

static void retry(struct request *r, const struct upstream_server *skip)
{
    proxy_abort(r);
    r->head_sent = false;
    memset(&r->resp_scan, 0, sizeof r->resp_scan);
    proxy_connect(r, skip);
}

static void on_connect_failed(struct request *r, bool timeout)
{
    const struct upstream_server *srv = r->uc->srv;
    upstream_mark_failed(r->uc);
    if (r->attempts < upstream_num_servers(r->upstream) && r->attempts < MAX_ATTEMPTS) {
        retry(r, srv);
        return;
    }
    fail(r, timeout ? 504 : 502, timeout ? "upstream connect timeout" : "upstream unreachable");
}

/* ---- response ---------------------------------------------------------- */

/*
 * moat re-chunks every response body it streams, but codings the upstream
 * applied under "chunked" (e.g. "gzip, chunked") are part of the payload and
 * must still be announced to the client.
 */
static void write_transfer_encoding(struct evbuffer *out, const struct http1_response *resp)
{
    const struct http1_header *te =
        http1_find_header(resp->headers, resp->num_headers, "Transfer-Encoding");
    size_t n = te ? te->value.len : 0;
    const char *v = te ? te->value.p : NULL;
    if (n >= 7 && !strncasecmp(v + n - 7, "chunked", 7))
        n -= 7;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == ','))
        n--;
    if (n)
        evbuffer_add_printf(out, "Transfer-Encoding: %.*s, chunked\r\n", (int)n, v);
    else
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
}

/* Appends the response head moat sends to the client for an upstream response. */
static void write_response_head(struct request *r, const struct http1_response *resp)
{
    struct conn *c = r->conn;
    struct evbuffer *out = client_out(r);
    const struct config *cfg = req_cfg(r);
    const struct http1_header *conn_hdr = http1_find_header(resp->headers, resp->num_headers,
                                                            "Connection");
    size_t before = evbuffer_get_length(out);
    const char *reason = resp->reason.len ? resp->reason.p : http1_reason(resp->status);
    size_t rlen = resp->reason.len ? resp->reason.len : strlen(reason);
    evbuffer_add_printf(out, "HTTP/1.1 %d %.*s\r\n", resp->status, (int)rlen, reason);
    for (size_t i = 0; i < resp->num_headers; i++) {
        const struct http1_header *h = &resp->headers[i];
        bool keep_cl = r->resp_in == HTTP1_BODY_NONE && http1_str_ieq(h->name, "Content-Length");
        if (!keep_cl && identity_is_hop_by_hop(h->name))
            continue;
        if (conn_hdr && identity_name_in_list(conn_hdr->value, h->name))
            continue;
        if (identity_response_drop(cfg, h->name))
            continue;
        evbuffer_add(out, h->name.p, h->name.len);
        evbuffer_add(out, ": ", 2);
        evbuffer_add(out, h->value.p, h->value.len);
        evbuffer_add(out, "\r\n", 2);
    }
    respond_security_headers(out, cfg);
    evbuffer_add(out, r->resp_headers, r->resp_headers_len);
    if (r->resp_out == HTTP1_BODY_LENGTH)
        evbuffer_add_printf(out, "Content-Length: %llu\r\n",
                            (unsigned long long)resp->framing.content_length);
    else if (r->resp_out == HTTP1_BODY_CHUNKED)
        write_transfer_encoding(out, resp);
    if (resp->status == 101) {
        const struct http1_header *up =
            http1_find_header(resp->headers, resp->num_headers, "Upgrade");
        evbuffer_add(out, "Connection: Upgrade\r\n", 21);
        if (up)
            evbuffer_add_printf(out, "Upgrade: %.*s\r\n", (int)up->value.len, up->value.p);
    } else if (!c->keep_alive) {
        evbuffer_add(out, "Connection: close\r\n", 19);
    } else if (r->h.minor_version == 0) {
        evbuffer_add(out, "Connection: keep-alive\r\n", 24);
    }
    evbuffer_add(out, "\r\n", 2);
    r->bytes_out += evbuffer_get_length(out) - before;
    r->resp_started = true;
}

static void choose_framing(struct request *r, const struct http1_response *resp)
{
    struct conn *c = r->conn;
    r->resp_in = resp->framing.body;
    r->resp_out = r->resp_in;
    if (r->resp_in == HTTP1_BODY_UNTIL_CLOSE && r->h.minor_version == 1)
        r->resp_out = HTTP1_BODY_CHUNKED; /* keeps the client connection reusable */
    r->resp_remaining = resp->framing.content_length;
    r->up_keep_alive = resp->framing.keep_alive;
    if (r->resp_out == HTTP1_BODY_UNTIL_CLOSE || c->w->draining || !r->h.framing.keep_alive)
        c->keep_alive = false;
}

static void start_tunnel(struct request *r)
{
    struct conn *c = r->conn;
    r->tunnel = true;
    r->req_body_done = true;
    c->state = CONN_TUNNEL;
    set_timeout(r->uc->bev, 0);
    conn_arm_timer(c, req_cfg(r)->limits.idle_timeout_ms);
    relay_tunnel(client_in(r), bufferevent_get_output(r->uc->bev), &r->bytes_in);
}

/* Returns 1 when a final head was handled, 0 when more bytes are needed, -1 when failed. */
static int read_response_head(struct request *r)
{
    struct evbuffer *in = bufferevent_get_input(r->uc->bev);
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return 0;
        size_t want = len < RESP_HEAD_MAX + 1 ? len : RESP_HEAD_MAX + 1;
        const char *p = (const char *)evbuffer_pullup(in, (ssize_t)want);
        int status = 0;
        ssize_t n = http1_head_scan(&r->resp_scan, p, want, RESP_HEAD_MAX, &status);
        if (n == 0)
            return 0;
        struct http1_response resp;
        struct http1_limits lim = {RESP_HEAD_MAX, HTTP1_MAX_HEADERS_CAP};
        const char *err = NULL;
        if (n < 0 || http1_parse_response(p, (size_t)n, &lim, r->h.method_id, &resp, &err) < 0) {
            fail(r, 502, "invalid upstream response");
            return -1;
        }
        memset(&r->resp_scan, 0, sizeof r->resp_scan);
        if (resp.status < 200 && resp.status != 101) {
            evbuffer_drain(in, (size_t)n); /* interim responses: moat answered 100 itself */
            continue;
        }
        if (resp.status == 101 && !r->h.framing.upgrade_websocket) {
            fail(r, 502, "unexpected 101 from upstream");
            return -1;
        }
        choose_framing(r, &resp);
        r->status = r->resp_status = resp.status;
        if (r->resp_in == HTTP1_BODY_LENGTH && r->resp_remaining <= COALESCE_MAX)
            evbuffer_expand(client_out(r), (size_t)n + 1024 + r->resp_remaining); /* one chain */
        write_response_head(r, &resp);
        evbuffer_drain(in, (size_t)n); /* the head's views pointed into it until now */
        r->resp_head_done = true;
        if (resp.status == 101)
            start_tunnel(r);
        else if (r->resp_in == HTTP1_BODY_NONE ||
                 (r->resp_in == HTTP1_BODY_LENGTH && r->resp_remaining == 0))
            r->resp_done = true;
        return 1;
    }
}

static enum relay_result relay_response_body(struct request *r)
{
    struct evbuffer *in = bufferevent_get_input(r->uc->bev);
    struct evbuffer *out = client_out(r);
    size_t before = evbuffer_get_length(out);
    enum relay_result res = RELAY_OK;
    uint64_t total = 0;
    if (r->resp_in == HTTP1_BODY_LENGTH) {
        size_t len = evbuffer_get_length(in);
        size_t n = len < r->resp_remaining ? len : (size_t)r->resp_remaining;
        move_bytes(in, out, n);
        r->resp_remaining -= n;
        r->resp_done = r->resp_remaining == 0;
    } else if (r->resp_in == HTTP1_BODY_CHUNKED) {
        res = relay_chunked(in, out, &r->resp_chunk, &total, 0, &r->resp_done);
    } else if (r->resp_out == HTTP1_BODY_CHUNKED) { /* until close, re-chunked */
        size_t n = evbuffer_get_length(in);
        if (n) {
            evbuffer_add_printf(out, "%zx\r\n", n);
            evbuffer_add_buffer(out, in);
            evbuffer_add(out, "\r\n", 2);
        }
    } else {
        evbuffer_add_buffer(out, in);
    }
    r->bytes_out += evbuffer_get_length(out) - before;
    return res;
}

static void process_upstream(struct request *r)
{
    struct conn *c = r->conn;
    if (r->tunnel) {
        relay_tunnel(bufferevent_get_input(r->uc->bev), client_out(r), &r->bytes_out);
        conn_arm_timer(c, req_cfg(r)->limits.idle_timeout_ms);
    } else {
        if (!r->resp_head_done && read_response_head(r) <= 0)
            return;
        if (!r->resp_done && relay_response_body(r) != RELAY_OK) {
            fail(r, 502, "invalid upstream chunked body");
            return;
        }
        if (r->resp_done) {
            finish_exchange(r);
            return;
        }
    }
    if (evbuffer_get_length(client_out(r)) > CLIENT_OUT_HIGH)
        bufferevent_disable(r->uc->bev, EV_READ); /* resumed by proxy_client_drained */
}

void proxy_client_drained(struct request *r)
{
    if (!r->uc || !r->head_sent)
        return;
    bufferevent_enable(r->uc->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_input(r->uc->bev)) > 0)
        process_upstream(r);
}

/* ---- upstream callbacks ------------------------------------------------ */

static void up_read(struct bufferevent *bev, void *arg)
{
    struct request *r = arg;
    struct conn *c = r->conn;
    conn_enter(c);
    if (r->head_sent)
        process_upstream(r);
    else /* bytes before we asked anything: not a server we can trust */
        fail(r, 502, "upstream spoke first");
    conn_leave(c);
}

static void up_write(struct bufferevent *bev, void *arg)
{
    struct request *r = arg;
    struct conn *c = r->conn;
    conn_enter(c);
    if (r->head_sent && (!r->req_body_done || r->tunnel))
        conn_set_reading(c, true);
    conn_leave(c);
}

static void on_upstream_closed(struct request *r)
{
    struct conn *c = r->conn;
    if (r->tunnel) {
        process_upstream(r);
        proxy_abort(r);
        c->keep_alive = false;
        conn_exchange_done(c);
    } else if (r->resp_head_done && r->resp_in == HTTP1_BODY_UNTIL_CLOSE) {
        relay_response_body(r);
        if (r->resp_out == HTTP1_BODY_CHUNKED)
            evbuffer_add(client_out(r), "0\r\n\r\n", 5);
        r->up_keep_alive = false;
        r->resp_done = true;
        finish_exchange(r);
    } else if (can_retry(r)) {
        retry(r, NULL);
    } else {
        fail(r, 502, "upstream closed the connection");
    }
}

static void up_event(struct bufferevent *bev, short what, void *arg)
{
    struct request *r = arg;
    struct conn *c = r->conn;
    conn_enter(c);
    if (what & BEV_EVENT_CONNECTED) {
        r->uc->connected = true;
        send_request(r);
    } else if (!r->uc->connected) {
        on_connect_failed(r, (what & BEV_EVENT_TIMEOUT) != 0);
    } else if (what & BEV_EVENT_TIMEOUT) {
        fail(r, 504, "upstream timeout");
    } else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        on_upstream_closed(r);
    }
    conn_leave(c);
}

static void proxy_connect(struct request *r, const struct upstream_server *skip)
{
    struct conn *c = r->conn;
    r->attempts++;
    r->uc = upstream_acquire(c->gen->ups, r->upstream, skip, up_read, up_write, up_event, r);
    if (!r->uc) {
        fail(r, 502, "no upstream connection");
        return;
    }
    snprintf(r->upstream_addr, sizeof r->upstream_addr, "%s", upstream_server_addr(r->uc->srv));
    bufferevent_setwatermark(r->uc->bev, EV_WRITE, UP_OUT_HIGH / 2, 0);
    if (r->uc->connected)
        send_request(r);
}

void proxy_start(struct request *r)
{
    clock_gettime(CLOCK_MONOTONIC, &r->t_upstream_start);
    r->req_remaining = r->h.framing.content_length;
    r->req_chunk.max_trailer_bytes = 8192;
    proxy_connect(r, NULL);
}
