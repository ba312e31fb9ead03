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
#include "upstream/admission.h"
#include "upstream/upstream.h"
#include "util/evbuf.h"
#include "util/monotime.h"

/* Above request_out_high() (limits.connection_buffer), the side feeding a buffer
   stops reading until it drains. */
/* Upstream response heads may be larger than client request heads (cookies). */
#define RESP_HEAD_MAX (64 * 1024)
#define MAX_ATTEMPTS 3

static void proxy_connect(struct request *r, const struct upstream_server *skip);
static void process_upstream(struct request *r);

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

/* Closes the request's upstream connection (not pooled); the request keeps its admission slot. */
static void drop_conn(struct request *r)
{
    if (r->uc) {
        upstream_release(r->uc, false);
        r->uc = NULL;
    }
}

void proxy_abort(struct request *r)
{
    drop_conn(r);
    admission_leave(r);
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

/* moat_upstream_response_duration_seconds: admission to the pool until the response head. */
static void observe_head_time(struct request *r)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    metrics_upstream_head(r->svc->metrics,
                          r->upstream ? r->upstream->metrics_slot : METRICS_SLOT_NONE,
                          hist_us_between(&r->t_upstream_start, &now));
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
    admission_leave(r);
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

/* Where a decoded body goes: the upstream (re-chunked) or the client stream. */
struct body_sink {
    void (*data)(void *ctx, struct evbuffer *src, size_t n);
    void *ctx;
};

/* Decodes a chunked body from in into the sink; *done once the last chunk is read. */
static enum relay_result relay_chunked(struct evbuffer *in, const struct body_sink *sink,
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
        sink->data(sink->ctx, in, n);
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

/* A chunk of request body towards the upstream, framed again (the upstream sees one framing). */
static void upstream_chunk(void *ctx, struct evbuffer *src, size_t n)
{
    struct evbuffer *out = ctx;
    evbuffer_add_printf(out, "%zx\r\n", n);
    evbuf_move(src, out, n);
    evbuffer_add(out, "\r\n", 2);
}

static enum relay_result relay_request_body(struct request *r)
{
    struct evbuffer *in = client_in(r);
    struct evbuffer *out = bufferevent_get_output(r->uc->bev);
    size_t before = evbuffer_get_length(in);
    enum relay_result res = RELAY_OK;
    if (r->h.framing.body == HTTP1_BODY_LENGTH) {
        size_t n = before < r->req_remaining ? before : (size_t)r->req_remaining;
        upstream_send_from(r->uc, in, n);
        r->req_remaining -= n;
        r->body_received += n;
        r->req_body_done = r->req_remaining == 0;
    } else {
        struct body_sink sink = {upstream_chunk, out};
        res = relay_chunked(in, &sink, &r->req_chunk, &r->body_received,
                            req_cfg(r)->limits.max_body_bytes, &r->req_body_done);
        if (res == RELAY_OK && r->req_body_done)
            evbuffer_add(out, "0\r\n\r\n", 5);
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

/* A tunnel's idle timeout, or less when a reload removed its route (proxy_route_gone). */
static void arm_tunnel_timer(struct request *r)
{
    uint64_t ms = req_cfg(r)->limits.idle_timeout_ms;
    if (r->tunnel_deadline_ms) {
        uint64_t now = mono_ms();
        uint64_t left = r->tunnel_deadline_ms > now ? r->tunnel_deadline_ms - now : 0;
        ms = left < ms ? left : ms;
    }
    request_arm_timer(r, ms);
}

void proxy_route_gone(struct request *r, uint64_t drain_ms)
{
    if (r->px != PROXY_TUNNEL || r->tunnel_deadline_ms)
        return;
    r->tunnel_deadline_ms = mono_ms() + drain_ms;
    arm_tunnel_timer(r);
}

/*
 * Tunnel, client to upstream. An upstream that does not read would otherwise
 * let a client park any amount in its output buffer: past the watermark the
 * client is not read until up_write reports the output drained.
 */
static void tunnel_from_client(struct request *r)
{
    struct evbuffer *in = client_in(r), *out = bufferevent_get_output(r->uc->bev);
    size_t n = evbuffer_get_length(in);
    upstream_send_from(r->uc, in, n);
    r->bytes_in += n;
    if (evbuffer_get_length(out) > request_out_high(r))
        request_set_reading(r, false);
}

void proxy_client_readable(struct request *r)
{
    if (!r->uc || !head_sent(r))
        return;
    if (r->px == PROXY_TUNNEL) {
        tunnel_from_client(r);
        arm_tunnel_timer(r);
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
        request_continue_100(r);
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
        return r->upstream->retry.idempotent;
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
           method_replayable(r) && upstream_take_retry(r->uc);
}

static void retry(struct request *r, const struct upstream_server *skip)
{
    drop_conn(r); /* still admitted: the retry is the same request */
    memset(&r->resp_scan, 0, sizeof r->resp_scan);
    proxy_connect(r, skip);
}

static void on_connect_failed(struct request *r, bool timeout)
{
    const struct upstream_server *srv = r->uc->srv;
    upstream_mark_failed(r->uc);
    /* the request never reached a server: any method may go to the next one */
    if (r->attempts < upstream_num_servers(r->upstream) && r->attempts < MAX_ATTEMPTS &&
        upstream_take_retry(r->uc)) {
        retry(r, srv);
        return;
    }
    fail(r, timeout ? 504 : 502, timeout ? "upstream connect timeout" : "upstream unreachable");
}

/* ---- response ---------------------------------------------------------- */

/* Transfer codings the upstream applied under "chunked" ("gzip, chunked": "gzip"). */
static struct http1_str codings_under_chunked(const struct http1_response *resp)
{
    const struct http1_header *te =
        http1_find_header(resp->headers, resp->num_headers, "Transfer-Encoding");
    struct http1_str v = te ? te->value : (struct http1_str){NULL, 0};
    while (v.len && (v.p[v.len - 1] == ' ' || v.p[v.len - 1] == '\t'))
        v.len--;
    if (v.len >= 7 && !strncasecmp(v.p + v.len - 7, "chunked", 7))
        v.len -= 7;
    while (v.len && (v.p[v.len - 1] == ' ' || v.p[v.len - 1] == '\t' || v.p[v.len - 1] == ','))
        v.len--;
    return v;
}

/* The fields moat passes on: not hop-by-hop, not listed in Connection, not dropped by policy. */
static void write_response_fields(struct request *r, struct evbuffer *out,
                                  const struct http1_response *resp)
{
    const struct config *cfg = req_cfg(r);
    const struct http1_header *conn_hdr =
        http1_find_header(resp->headers, resp->num_headers, "Connection");
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
}

/* Hands the response head to the client stream; -1 when that client cannot receive it. */
static int write_response_head(struct request *r, const struct http1_response *resp)
{
    const struct http1_header *up = http1_find_header(resp->headers, resp->num_headers, "Upgrade");
    struct response_head head = {
        .status = resp->status,
        .reason = resp->reason,
        .body = resp->framing.body,
        .content_length = resp->framing.content_length,
        .codings = codings_under_chunked(resp),
        .upgrade = resp->status == 101 && up ? up->value : (struct http1_str){NULL, 0},
    };
    struct evbuffer *fields = request_head_begin(r, &head);
    if (!fields)
        return -1;
    write_response_fields(r, fields, resp);
    request_head_end(r, &head);
    r->resp_started = true;
    return 0;
}

/* The whole response body is with the client stream. */
static void response_complete(struct request *r)
{
    set_state(r, PROXY_DONE);
    request_body_end(r);
}

static void start_tunnel(struct request *r)
{
    set_state(r, PROXY_TUNNEL);
    r->req_body_done = true;
    request_tunnel(r);
    set_timeout(r->uc->bev, 0);
    arm_tunnel_timer(r);
    tunnel_from_client(r);
}

/*
 * Scans for the end of the response head in the first want bytes of in; *p then
 * points at the head, contiguous. The first buffer chain is scanned where it is:
 * the head is nearly always in it, and pulling up all of want would copy the body
 * that came with the head (16 KiB of a 16 KiB response) into a new chain.
 */
static ssize_t scan_response_head(struct request *r, struct evbuffer *in, size_t want,
                                  const char **p, int *status)
{
    struct evbuffer_iovec v;
    if (evbuffer_peek(in, -1, NULL, &v, 1) >= 1 && v.iov_len > 0) {
        size_t first = v.iov_len < want ? v.iov_len : want;
        *p = v.iov_base;
        ssize_t n = http1_head_scan(&r->resp_scan, *p, first, RESP_HEAD_MAX, status);
        if (n != 0 || first == want)
            return n;
    }
    *p = (const char *)evbuffer_pullup(in, (ssize_t)want);
    return http1_head_scan(&r->resp_scan, *p, want, RESP_HEAD_MAX, status);
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
        int status = 0;
        const char *p = NULL;
        ssize_t n = scan_response_head(r, in, want, &p, &status);
        if (n == 0)
            return 0;
        struct http1_response resp;
        struct http1_limits lim = {RESP_HEAD_MAX, HTTP1_MAX_HEADERS_CAP};
        const char *err = NULL;
        if (n < 0 || http1_parse_response(p, (size_t)n, &lim, r->h.method_id, &resp, &err) < 0) {
            upstream_outcome(r->uc, false);
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
        upstream_outcome(r->uc, resp.status < 500);
        observe_head_time(r);
        r->resp_in = resp.framing.body;
        r->resp_remaining = resp.framing.content_length;
        r->up_keep_alive = resp.framing.keep_alive;
        r->status = r->resp_status = resp.status;
        if (write_response_head(r, &resp) < 0) {
            fail(r, 502, "transfer coding this client cannot receive");
            return -1;
        }
        evbuffer_drain(in, (size_t)n); /* the head's views pointed into it until now */
        if (resp.status == 101)
            start_tunnel(r);
        else if (r->resp_in == HTTP1_BODY_NONE ||
                 (r->resp_in == HTTP1_BODY_LENGTH && r->resp_remaining == 0))
            response_complete(r);
        else
            set_state(r, PROXY_RELAY_BODY);
        return 1;
    }
}

static void client_body(void *ctx, struct evbuffer *src, size_t n)
{
    request_body(ctx, src, n);
}

static enum relay_result relay_response_body(struct request *r)
{
    struct evbuffer *in = bufferevent_get_input(r->uc->bev);
    enum relay_result res = RELAY_OK;
    uint64_t total = 0;
    bool done = false;
    if (r->resp_in == HTTP1_BODY_LENGTH) {
        size_t len = evbuffer_get_length(in);
        size_t n = len < r->resp_remaining ? len : (size_t)r->resp_remaining;
        request_body(r, in, n);
        r->resp_remaining -= n;
        done = r->resp_remaining == 0;
    } else if (r->resp_in == HTTP1_BODY_CHUNKED) {
        struct body_sink sink = {client_body, r};
        res = relay_chunked(in, &sink, &r->resp_chunk, &total, 0, &done);
    } else {
        request_body(r, in, evbuffer_get_length(in));
    }
    if (done)
        response_complete(r);
    return res;
}

static void process_upstream(struct request *r)
{
    if (r->px == PROXY_AWAIT_HEAD && read_response_head(r) <= 0)
        return;
    if (r->px == PROXY_TUNNEL) { /* also the bytes that came right behind the 101 */
        relay_tunnel(bufferevent_get_input(r->uc->bev), client_out(r), &r->bytes_out);
        arm_tunnel_timer(r);
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

/* What may still be buffered from the upstream without passing the client's
   high-water mark (which stops reading the upstream until the client drains). */
static size_t upstream_room(struct request *r)
{
    size_t held =
        evbuffer_get_length(client_out(r)) + evbuffer_get_length(bufferevent_get_input(r->uc->bev));
    return held < request_out_high(r) ? request_out_high(r) - held : 0;
}

static void up_read(struct bufferevent *bev, void *arg)
{
    struct request *r = arg;
    struct stream_hold hold = request_hold(r);
    if (head_sent(r)) {
        upstream_read_more(r->uc, upstream_room(r));
        process_upstream(r);
    } else { /* bytes before we asked anything: not a server we can trust */
        fail(r, 502, "upstream spoke first");
    }
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
        r->up_keep_alive = false;
        response_complete(r);
        finish_exchange(r);
    } else if (can_retry(r)) {
        retry(r, NULL);
    } else {
        if (r->px == PROXY_AWAIT_HEAD && !r->uc->reused)
            upstream_outcome(r->uc, false); /* a reused one may just have timed out idle */
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
        if (r->px == PROXY_AWAIT_HEAD)
            upstream_outcome(r->uc, false);
        fail(r, 504, "upstream timeout");
    } else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        on_upstream_closed(r, upstream_closed_cleanly(r->uc, what));
    }
    stream_release(hold);
}

/* No server to send it to: 503 at once, with when to come back, rather than a connect storm. */
static void all_down(struct request *r, uint64_t retry_after_ms)
{
    char extra[48];
    snprintf(extra, sizeof extra, "Retry-After: %llu\r\n",
             (unsigned long long)((retry_after_ms + 999) / 1000));
    proxy_abort(r);
    r->error = "no upstream server available";
    metrics_inc(r->svc->metrics, M_UPSTREAM_ERROR);
    request_respond(r, 503, extra, "no upstream server available", false);
}

/* The balancing key of tenant_hash: the tenant, else the client's address. */
static void pick_key(const struct request *r, struct upstream_pick *want)
{
    want->key = r->ident.tenant[0] ? r->ident.tenant : request_client_ip(r);
    want->key_len = strlen(want->key);
}

static void proxy_connect(struct request *r, const struct upstream_server *skip)
{
    uint64_t retry_after_ms = 0;
    struct upstream_pick want = {.skip = skip, .retry_after_ms = &retry_after_ms};
    if (r->upstream->balance == BALANCE_TENANT_HASH)
        pick_key(r, &want);
    r->attempts++;
    set_state(r, PROXY_CONNECTING);
    r->uc = upstream_acquire(r->ups, r->upstream, &want, up_read, up_write, up_event, r);
    if (!r->uc) {
        if (retry_after_ms)
            all_down(r, retry_after_ms);
        else
            fail(r, 502, "no upstream connection");
        return;
    }
    /* per request: a bounded copy, not snprintf's format machinery */
    const char *addr = upstream_server_addr(r->uc->srv);
    size_t alen = strnlen(addr, sizeof r->upstream_addr - 1);
    memcpy(r->upstream_addr, addr, alen);
    r->upstream_addr[alen] = '\0';
    bufferevent_setwatermark(r->uc->bev, EV_WRITE, request_out_high(r) / 2, 0);
    if (r->uc->connected)
        send_request(r);
}

/* Admitted by the pool (at once or after waiting its turn). */
static void proxy_go(struct request *r)
{
    clock_gettime(CLOCK_MONOTONIC, &r->t_upstream_start);
    proxy_connect(r, NULL);
}

void proxy_start(struct request *r)
{
    r->req_remaining = r->h.framing.content_length;
    r->req_chunk.max_trailer_bytes = 8192;
    upstream_count_request(r->ups, r->upstream);
    if (admission_enter(r, proxy_go) == ADMIT_GO)
        proxy_go(r);
}
