#include "upstream/proxy.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "config/config.h"
#include "policy/identity.h"
#include "core/services.h"
#include "http/request.h"
#include "observe/log.h"
#include "observe/metrics.h"
#include "http/request_head.h"
#include "http/respond.h"
#include "core/snapshot.h"
#include "upstream/upstream.h"

/* Above request_out_high() (limits.connection_buffer), the side feeding a buffer
   stops reading until it drains. */
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

const char *proxy_state_str(enum proxy_state st)
{
    static const char *const names[] = {
        [PROXY_IDLE] = "idle",
        [PROXY_CONNECTING] = "connecting",
        [PROXY_AWAIT_HEAD] = "await_head",
        [PROXY_RELAY_BODY] = "relay_body",
        [PROXY_TUNNEL] = "tunnel",
        [PROXY_DONE] = "done",
    };
    return (unsigned)st < sizeof names / sizeof *names && names[st] ? names[st] : "invalid";
}

/* Every change of r->px goes through here (debug log: which request, from, to). */
static void set_state(struct request *r, enum proxy_state st)
{
    if (r->px == st)
        return;
    log_msg(LOG_DEBUG, "request %s: proxy %s -> %s", r->id, proxy_state_str(r->px),
            proxy_state_str(st));
    r->px = st;
}

static bool head_sent(const struct request *r)
{
    return r->px >= PROXY_AWAIT_HEAD;
}

static const struct config *req_cfg(const struct request *r)
{
    return r->cfg;
}

static struct evbuffer *client_in(struct request *r)
{
    return request_body_in(r);
}

static struct evbuffer *client_out(struct request *r)
{
    return request_out(r);
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
    proxy_abort(r);
    if (r->resp_started) {
        request_abort(r); /* a response is half sent: only closing tells the client */
        return;
    }
    r->error = why;
    metrics_inc(r->svc->metrics, status == 504 ? M_UPSTREAM_TIMEOUT : M_UPSTREAM_ERROR);
    request_respond(r, status, NULL, NULL, false);
}

static void finish_exchange(struct request *r)
{
    struct upstream_conn *uc = r->uc;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    r->upstream_ms = request_ms_between(&r->t_upstream_start, &now);
    r->uc = NULL;
    if (uc) {
        bool reusable = r->up_keep_alive && r->req_body_done && r->px != PROXY_TUNNEL &&
                        r->resp_in != HTTP1_BODY_UNTIL_CLOSE &&
                        evbuffer_get_length(bufferevent_get_input(uc->bev)) == 0;
        upstream_release(uc, reusable);
    }
    if (!r->req_body_done)
        r->close_after = true; /* the rest of the body would be read as a request */
    request_done(r);
}

/* ---- request head ------------------------------------------------------ */

/*
 * Sends the request head, serialized by request_head.c into a buffer of its
 * exact size. A head that fits HEAD_STACK goes to the upstream socket at once
 * when nothing is queued before it (upstream_send): write interest is then never
 * registered with epoll for a request without a body, two epoll_ctl() calls per
 * request saved. Larger heads are written into the output buffer's own space.
 */
#define HEAD_STACK 8192
static int write_request_head(struct request *r)
{
    uint8_t drop[HTTP1_MAX_HEADERS_CAP];
    for (size_t i = 0; i < r->h.num_headers; i++)
        drop[i] = !identity_forwards(r, i);
    struct request_head_spec spec = {
        .h = &r->h,
        .drop = drop,
        .host = r->upstream->name,
        .host_len = strlen(r->upstream->name),
        .extra = r->add_headers,
        .extra_len = r->add_len,
        .upgrade = r->h.framing.upgrade_websocket
                       ? http1_find_header(r->h.headers, r->h.num_headers, "Upgrade")
                       : NULL,
    };
    size_t size = request_head_size(&spec);
    if (size <= HEAD_STACK) {
        char buf[HEAD_STACK];
        size_t n = request_head_write(&spec, buf, sizeof buf);
        return n ? upstream_send(r->uc, buf, n) : -1;
    }
    struct evbuffer *out = bufferevent_get_output(r->uc->bev);
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(out, (ssize_t)size, &v, 1) < 1 || v.iov_len < size)
        return -1;
    v.iov_len = request_head_write(&spec, v.iov_base, size);
    if (v.iov_len == 0)
        return -1;
    return evbuffer_commit_space(out, &v, 1);
}

/* ---- request body ------------------------------------------------------ */

enum relay_result { RELAY_OK = 0, RELAY_BAD = -1, RELAY_TOO_BIG = -2 };

/*
 * Decodes a chunked body from in and writes it to out: re-chunked by moat when
 * frame is set, else as bare payload (for a client that cannot take chunked).
 */
static enum relay_result relay_chunked(struct evbuffer *in, struct evbuffer *out,
                                       struct http1_chunked *ck, uint64_t *total, uint64_t max,
                                       bool frame, bool *done)
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
            if (frame)
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
        if (frame)
            evbuffer_add_printf(out, "%zx\r\n", n);
        move_bytes(in, out, n);
        if (frame)
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
                            req_cfg(r)->limits.max_body_bytes, true, &r->req_body_done);
    }
    r->bytes_in += before - evbuffer_get_length(in);
    if (res == RELAY_OK && r->bytes_in - r->head_len > raw_body_cap(req_cfg(r)))
        res = RELAY_TOO_BIG; /* chunk framing and extensions count too */
    return res;
}

static void request_body_progress(struct request *r)
{
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
        request_arm_timer(r, 0);
        set_timeout(r->uc->bev, req_cfg(r)->limits.upstream_timeout_ms);
        return;
    }
    request_arm_timer(r, req_cfg(r)->limits.body_timeout_ms);
    if (evbuffer_get_length(bufferevent_get_output(r->uc->bev)) > request_out_high(r))
        request_set_reading(r, false); /* resumed by up_write */
}

static void relay_tunnel(struct evbuffer *from, struct evbuffer *to, uint64_t *count)
{
    size_t n = evbuffer_get_length(from);
    evbuffer_add_buffer(to, from);
    *count += n;
}

/*
 * Tunnel, client to upstream. An upstream that does not read would otherwise
 * let a client park any amount in its output buffer: past the watermark the
 * client is not read until up_write reports the output drained.
 */
static void tunnel_from_client(struct request *r)
{
    struct evbuffer *out = bufferevent_get_output(r->uc->bev);
    relay_tunnel(client_in(r), out, &r->bytes_in);
    if (evbuffer_get_length(out) > request_out_high(r))
        request_set_reading(r, false);
}

void proxy_client_readable(struct request *r)
{
    if (!r->uc || !head_sent(r))
        return;
    if (r->px == PROXY_TUNNEL) {
        tunnel_from_client(r);
        request_arm_timer(r, req_cfg(r)->limits.idle_timeout_ms);
        return;
    }
    if (!r->req_body_done)
        request_body_progress(r);
}

/* ---- sending ----------------------------------------------------------- */

static void send_request(struct request *r)
{
    if (write_request_head(r) < 0) {
        fail(r, 502, "cannot write upstream request");
        return;
    }
    set_state(r, PROXY_AWAIT_HEAD);
    metrics_inc(r->svc->metrics, r->uc->reused ? M_UPSTREAM_REUSE : M_UPSTREAM_CONNECT);
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

/*
 * Whether a request the upstream may have received can be sent again: the
 * upstream may have acted on it before closing. Safe methods always (RFC 9110
 * §9.2.1); PUT and DELETE only when the pool opts in (idempotent by the RFC,
 * but an application's handler often is not); never the others.
 */
static bool method_replayable(const struct request *r)
{
    switch (r->h.method_id) {
    case HTTP1_M_GET:
    case HTTP1_M_HEAD:
    case HTTP1_M_OPTIONS:
        return true;
    case HTTP1_M_PUT:
    case HTTP1_M_DELETE:
        return r->upstream->retry_idempotent;
    default:
        return false;
    }
}

static bool can_retry(const struct request *r)
{
    /* A kept-alive connection the upstream closed after our request was sent and
       before any answer: the usual race with its keep-alive timeout. Replayed only
       when nothing of the request is lost with it and the method allows it. */
    return r->uc->reused && r->px == PROXY_AWAIT_HEAD && r->resp_scan.offset == 0 &&
           r->h.framing.body == HTTP1_BODY_NONE && r->attempts < MAX_ATTEMPTS &&
           method_replayable(r);
}

static void retry(struct request *r, const struct upstream_server *skip)
{
    proxy_abort(r);
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
    struct evbuffer *out = client_out(r);
    const struct config *cfg = req_cfg(r);
    const struct http1_header *conn_hdr =
        http1_find_header(resp->headers, resp->num_headers, "Connection");
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
    } else if (r->close_after) {
        evbuffer_add(out, "Connection: close\r\n", 19);
    } else if (r->h.minor_version == 0) {
        evbuffer_add(out, "Connection: keep-alive\r\n", 24);
    }
    evbuffer_add(out, "\r\n", 2);
    r->bytes_out += evbuffer_get_length(out) - before;
    r->resp_started = true;
}

/*
 * Transfer codings other than chunked (gzip, ...) in a response: HTTP/1.0 has no
 * Transfer-Encoding (RFC 9112 §6.1), so an HTTP/1.0 client could not be told.
 */
static bool has_other_coding(const struct http1_response *resp)
{
    const struct http1_header *te =
        http1_find_header(resp->headers, resp->num_headers, "Transfer-Encoding");
    if (!te)
        return false;
    struct http1_str v = te->value;
    while (v.len && (v.p[v.len - 1] == ' ' || v.p[v.len - 1] == '\t'))
        v.len--;
    return !(v.len == 7 && !strncasecmp(v.p, "chunked", 7));
}

/*
 * The framing towards the client. HTTP/1.1: a close-delimited upstream body is
 * re-chunked, which keeps the client connection reusable. HTTP/1.0 clients never
 * get chunked (RFC 9112 §6.1): a chunked upstream body is decoded and ends with
 * the connection. Returns -1 when the response cannot be represented.
 */
static int choose_framing(struct request *r, const struct http1_response *resp)
{
    r->resp_in = resp->framing.body;
    r->resp_out = r->resp_in;
    if (r->h.minor_version == 0) {
        if (r->resp_in != HTTP1_BODY_NONE && has_other_coding(resp))
            return -1;
        if (r->resp_in == HTTP1_BODY_CHUNKED)
            r->resp_out = HTTP1_BODY_UNTIL_CLOSE;
    } else if (r->resp_in == HTTP1_BODY_UNTIL_CLOSE) {
        r->resp_out = HTTP1_BODY_CHUNKED;
    }
    r->resp_remaining = resp->framing.content_length;
    r->up_keep_alive = resp->framing.keep_alive;
    if (r->resp_out == HTTP1_BODY_UNTIL_CLOSE || request_stream_ending(r) ||
        !r->h.framing.keep_alive)
        r->close_after = true;
    return 0;
}

static void start_tunnel(struct request *r)
{
    set_state(r, PROXY_TUNNEL);
    r->req_body_done = true;
    request_tunnel(r);
    set_timeout(r->uc->bev, 0);
    request_arm_timer(r, req_cfg(r)->limits.idle_timeout_ms);
    tunnel_from_client(r);
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
        if (choose_framing(r, &resp) < 0) {
            fail(r, 502, "transfer coding an HTTP/1.0 client cannot receive");
            return -1;
        }
        r->status = r->resp_status = resp.status;
        if (r->resp_in == HTTP1_BODY_LENGTH && r->resp_remaining <= COALESCE_MAX)
            evbuffer_expand(client_out(r), (size_t)n + 1024 + r->resp_remaining); /* one chain */
        write_response_head(r, &resp);
        evbuffer_drain(in, (size_t)n); /* the head's views pointed into it until now */
        if (resp.status == 101)
            start_tunnel(r);
        else if (r->resp_in == HTTP1_BODY_NONE ||
                 (r->resp_in == HTTP1_BODY_LENGTH && r->resp_remaining == 0))
            set_state(r, PROXY_DONE);
        else
            set_state(r, PROXY_RELAY_BODY);
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
    bool done = false;
    if (r->resp_in == HTTP1_BODY_LENGTH) {
        size_t len = evbuffer_get_length(in);
        size_t n = len < r->resp_remaining ? len : (size_t)r->resp_remaining;
        move_bytes(in, out, n);
        r->resp_remaining -= n;
        done = r->resp_remaining == 0;
    } else if (r->resp_in == HTTP1_BODY_CHUNKED) {
        res = relay_chunked(in, out, &r->resp_chunk, &total, 0, r->resp_out == HTTP1_BODY_CHUNKED,
                            &done);
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
    if (done)
        set_state(r, PROXY_DONE);
    return res;
}

static void process_upstream(struct request *r)
{
    if (r->px == PROXY_AWAIT_HEAD && read_response_head(r) <= 0)
        return;
    if (r->px == PROXY_TUNNEL) { /* also the bytes that came right behind the 101 */
        relay_tunnel(bufferevent_get_input(r->uc->bev), client_out(r), &r->bytes_out);
        request_arm_timer(r, req_cfg(r)->limits.idle_timeout_ms);
    } else {
        if (r->px == PROXY_RELAY_BODY && relay_response_body(r) != RELAY_OK) {
            fail(r, 502, "invalid upstream chunked body");
            return;
        }
        if (r->px == PROXY_DONE) {
            finish_exchange(r);
            return;
        }
    }
    if (evbuffer_get_length(client_out(r)) > request_out_high(r))
        bufferevent_disable(r->uc->bev, EV_READ); /* resumed by proxy_client_drained */
}

void proxy_client_drained(struct request *r)
{
    if (!r->uc || !head_sent(r))
        return;
    bufferevent_enable(r->uc->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_input(r->uc->bev)) > 0)
        process_upstream(r);
}

/* ---- upstream callbacks ------------------------------------------------ */

static void up_read(struct bufferevent *bev, void *arg)
{
    struct request *r = arg;
    struct stream_hold hold = request_hold(r);
    if (head_sent(r))
        process_upstream(r);
    else /* bytes before we asked anything: not a server we can trust */
        fail(r, 502, "upstream spoke first");
    stream_release(hold);
}

static void up_write(struct bufferevent *bev, void *arg)
{
    struct request *r = arg;
    struct stream_hold hold = request_hold(r);
    if (head_sent(r) && (!r->req_body_done || r->px == PROXY_TUNNEL))
        request_set_reading(r, true);
    stream_release(hold);
}

/*
 * The upstream closed. clean: a FIN (and over TLS its close_notify), the only
 * end that completes a close-delimited body. After a reset the body may be cut
 * short: the client connection ends without the final chunk or close_notify,
 * so the client cannot take a truncated response for a complete one.
 */
static void on_upstream_closed(struct request *r, bool clean)
{
    if (r->px == PROXY_TUNNEL) {
        process_upstream(r);
        proxy_abort(r);
        r->close_after = true;
        request_done(r);
    } else if (r->px == PROXY_RELAY_BODY && r->resp_in == HTTP1_BODY_UNTIL_CLOSE && !clean) {
        metrics_inc(r->svc->metrics, M_UPSTREAM_ERROR);
        r->error = "upstream response truncated (reset)";
        proxy_abort(r);
        request_abort(r);
    } else if (r->px == PROXY_RELAY_BODY && r->resp_in == HTTP1_BODY_UNTIL_CLOSE) {
        relay_response_body(r);
        if (r->resp_out == HTTP1_BODY_CHUNKED)
            evbuffer_add(client_out(r), "0\r\n\r\n", 5);
        r->up_keep_alive = false;
        set_state(r, PROXY_DONE);
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
    struct stream_hold hold = request_hold(r);
    if (what & BEV_EVENT_CONNECTED) {
        r->uc->connected = true;
        send_request(r);
    } else if (!r->uc->connected) {
        on_connect_failed(r, (what & BEV_EVENT_TIMEOUT) != 0);
    } else if (what & BEV_EVENT_TIMEOUT) {
        fail(r, 504, "upstream timeout");
    } else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        on_upstream_closed(r, upstream_closed_cleanly(r->uc, what));
    }
    stream_release(hold);
}

static void proxy_connect(struct request *r, const struct upstream_server *skip)
{
    r->attempts++;
    set_state(r, PROXY_CONNECTING);
    r->uc = upstream_acquire(r->ups, r->upstream, skip, up_read, up_write, up_event, r);
    if (!r->uc) {
        fail(r, 502, "no upstream connection");
        return;
    }
    snprintf(r->upstream_addr, sizeof r->upstream_addr, "%s", upstream_server_addr(r->uc->srv));
    bufferevent_setwatermark(r->uc->bev, EV_WRITE, request_out_high(r) / 2, 0);
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
