/*
 * h2_stream: an HTTP/2 stream as the client side of one request.
 *
 * The head arrives as HPACK-decoded fields; it is checked against RFC 9113 §8
 * (nghttp2 checks most of it already, moat again: the cost of a miss is request
 * smuggling across the downgrade) and rewritten as an HTTP/1.1 head that the
 * same parser, phases and upstream code as an HTTP/1.1 request then take. A
 * body without content-length is handed over chunk-framed, so the upstream
 * always sees a delimited body.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "config/config.h"
#include "core/membudget.h"
#include "core/snapshot.h"
#include "core/worker.h"
#include "http/conn.h"
#include "http/h2_internal.h"
#include "http/request.h"
#include "http/respond.h"
#include "observe/accesslog.h"
#include "observe/audit_limit.h"
#include "observe/metrics.h"
#include "policy/pipeline.h"
#include "upstream/proxy.h"
#include "util/evbuf.h"

static const struct client_stream_ops h2_stream_ops;

static struct worker *stream_worker(const struct h2_stream *st)
{
    return st->hc->c->w;
}

static void on_stream_timer(evutil_socket_t fd, short what, void *arg);

struct h2_stream *h2_stream_new(struct h2_conn *hc, int32_t id)
{
    struct h2_stream *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    if (h2_head_init(&st->head) < 0) {
        free(st);
        return NULL;
    }
    st->hc = hc;
    st->id = id;
    evtimer_assign(&st->timer, hc->c->w->base, on_stream_timer, st);
    /* The head (and a content-length 0 request's END_STREAM) must come within the header
     * timeout: a stream waiting for it would keep the connection from ever being idle. */
    uint64_t ms = h2_cfg(hc)->limits.header_timeout_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(&st->timer, &tv);
    st->next = hc->streams;
    if (hc->streams)
        hc->streams->prev = st;
    hc->streams = st;
    hc->num_streams++;
    return st;
}

/* ---- the head ------------------------------------------------------------------- */

int h2_stream_header(struct h2_stream *st, const uint8_t *name, size_t nlen, const uint8_t *value,
                     size_t vlen)
{
    const struct config *cfg = h2_cfg(st->hc);
    struct h2_head_limits lim = {cfg->limits.max_header_bytes, cfg->limits.max_headers};
    if (!st->in_trailers) /* trailers are not forwarded */
        h2_head_field(&st->head, &lim, name, nlen, value, vlen);
    return 0;
}
static void queue_ready(struct h2_stream *st)
{
    struct h2_conn *hc = st->hc;
    st->ready = true;
    if (hc->ready_tail)
        hc->ready_tail->ready_next = st;
    else
        hc->ready = st;
    hc->ready_tail = st;
}

void h2_stream_head_done(struct h2_stream *st, bool end_stream)
{
    st->has_body = !end_stream;
    st->in_done = end_stream;
    st->chunked = st->has_body && !st->head.has_cl;
    h2_head_finish(&st->head);
    /* content-length 0 and more to come: the upstream would have the whole message at
     * once, before DATA could show the length was a lie (H2.CL). Wait for the end. */
    st->wait_end = st->has_body && st->head.cl_zero && !st->head.bad;
    if (!st->wait_end)
        queue_ready(st);
}

static struct request *stream_request(struct h2_stream *st, size_t head_cap)
{
    struct worker *w = stream_worker(st);
    struct request *r = request_new(&w->reqs, head_cap);
    if (!r)
        return NULL;
    st->gen = wgen_ref(w->gen); /* each stream on the newest generation */
    r->stream = st;
    r->ops = &h2_stream_ops;
    r->peer = &st->hc->c->peer;
    r->snap = st->gen->snap;
    r->cfg = st->gen->snap->cfg;
    r->ups = st->gen->ups;
    r->svc = &w->svc;
    worker_request_id(w, r->id);
    return r;
}

static void stream_respond(void *s, int status, const char *extra, const char *body, bool close);

/* Answers a head that could not become a request (refused, or not HTTP/1.1-parsable). */
static void reject(struct h2_stream *st, int status, const char *why)
{
    st->r->error = why;
    metrics_inc(&stream_worker(st)->metrics, M_BAD_REQUESTS);
    audit_request_refused(st->r, status, why);
    stream_respond(st, status, NULL, why, true);
}

void h2_stream_start(struct h2_stream *st)
{
    struct worker *w = stream_worker(st);
    worker_catch_up(w);
    const struct config *cfg = w->gen->snap->cfg;
    size_t cap = cfg->limits.max_header_bytes + 8 * cfg->limits.max_headers + 1024;
    if (st->closed)
        return;
    if (!(st->r = stream_request(st, cap))) {
        nghttp2_submit_rst_stream(st->hc->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    struct request *r = st->r;
    evtimer_del(&st->timer); /* the head is complete: from now on the request's timers */
    metrics_inc(&w->metrics, M_REQUESTS);
    st->refs++;
    if (st->head.bad) {
        reject(st, st->head.bad_status, st->head.bad_why);
    } else if (!(r->head_len = h2_head_compose(&st->head, st->chunked, r->head_buf, cap))) {
        reject(st, 431, "request header too large");
    } else {
        struct http1_limits lim = {cap, cfg->limits.max_headers + 1};
        int status = 400;
        const char *err = "bad request";
        r->bytes_in = r->head_len;
        metrics_add(&w->metrics, M_BYTES_IN, (int64_t)r->head_len);
        if (http1_parse_request(r->head_buf, r->head_len, &lim, &r->h, &status, &err) < 0) {
            reject(st, status, err);
        } else {
            request_head_parsed(r);
            r->req_body_done = r->h.framing.body == HTTP1_BODY_NONE;
            if (membudget_exceeded(w, cfg->limits.max_memory)) {
                metrics_inc(&w->metrics, M_SHED_MEMORY);
                r->error = "memory limit";
                stream_respond(st, 503, "Retry-After: 1\r\n", "server busy", true);
            } else {
                pipeline_run(r);
            }
        }
    }
    st->refs--;
    h2_stream_maybe_free(st);
}

/* ---- request body --------------------------------------------------------------- */

/* Bytes the proxy took from body_in open the client's window again. */
static void on_body_taken(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct h2_stream *st = arg;
    size_t n = info->n_deleted < st->unconsumed ? info->n_deleted : (size_t)st->unconsumed;
    if (n == 0 || st->closed)
        return;
    st->unconsumed -= n;
    nghttp2_session_consume(st->hc->s, st->id, n);
}

/* Whether anyone will read the body: not once the exchange is over or was refused. */
static bool body_wanted(const struct h2_stream *st)
{
    return !st->head.bad && !st->resp_done && !st->finished && (!st->r || !st->r->req_body_done);
}

/*
 * The stream's body buffers, made on first use. Both count into the worker's
 * buffered bytes (limits.max_memory), as a connection's buffers do: all the
 * streams of a connection together are part of its memory budget.
 */
static struct evbuffer *tracked(struct h2_stream *st, struct evbuffer **b, bool body_in)
{
    if (*b)
        return *b;
    struct evbuffer *n = evbuffer_new();
    if (!n || membudget_track(stream_worker(st), n) < 0 ||
        (body_in && !evbuffer_add_cb(n, on_body_taken, st))) {
        if (n) {
            membudget_untrack(stream_worker(st), n);
            evbuffer_free(n);
        }
        return NULL;
    }
    return *b = n;
}

static struct evbuffer *body_in_buf(struct h2_stream *st)
{
    return tracked(st, &st->body_in, true);
}

static struct evbuffer *out_buf(struct h2_stream *st)
{
    return tracked(st, &st->out, false);
}

static void untrack_free(struct h2_stream *st, struct evbuffer *b)
{
    if (!b)
        return;
    membudget_untrack(stream_worker(st), b);
    evbuffer_free(b);
}

void h2_stream_data(struct h2_stream *st, const uint8_t *data, size_t len)
{
    if (!body_wanted(st) || st->in_trailers) {
        nghttp2_session_consume(st->hc->s, st->id, len);
        return;
    }
    if (!body_in_buf(st)) {
        nghttp2_session_consume(st->hc->s, st->id, len);
        nghttp2_submit_rst_stream(st->hc->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    st->unconsumed += len;
    if (st->chunked && len) {
        char size[24];
        int k = snprintf(size, sizeof size, "%zx\r\n", len);
        evbuffer_add(st->body_in, size, (size_t)k);
        evbuffer_add(st->body_in, data, len);
        evbuffer_add(st->body_in, "\r\n", 2);
    } else {
        evbuffer_add(st->body_in, data, len);
    }
    h2_conn_schedule(st->hc);
}

void h2_stream_end_in(struct h2_stream *st)
{
    st->in_done = true;
    if (st->wait_end) {
        st->wait_end = false;
        queue_ready(st);
        h2_conn_schedule(st->hc);
        return;
    }
    if (st->chunked && body_wanted(st) && body_in_buf(st)) {
        evbuffer_add(st->body_in, "0\r\n\r\n", 5);
        h2_conn_schedule(st->hc);
    }
}

/* ---- teardown ------------------------------------------------------------------- */

/* Ends the request now: upstream and Redis work cancelled, logged as abandoned. */
static void end_request(struct h2_stream *st)
{
    struct request *r = st->r;
    if (!r)
        return;
    st->r = NULL;
    evtimer_del(&st->timer);
    proxy_abort(r);
    if (r->cancel_pending)
        r->cancel_pending(r);
    if (!r->logged) {
        if (!r->status)
            r->status = 499; /* the client reset the stream before the response */
        accesslog_request(r);
    }
    request_free(&stream_worker(st)->reqs, r);
}

void h2_stream_closed(struct h2_stream *st, uint32_t error_code)
{
    struct h2_conn *hc = st->hc;
    if (st->unconsumed) /* bytes nobody will take: the connection window still needs them */
        nghttp2_session_consume_connection(hc->s, st->unconsumed);
    st->unconsumed = 0;
    if (!st->resp_done && error_code != NGHTTP2_NO_ERROR)
        h2_conn_glitch(hc, "stream reset before its response",
                       st->r && st->r->ident.authenticated ? st->r->ident.tenant : NULL);
    st->closed = true;
    h2_stream_maybe_free(st);
}

static void stream_free(struct h2_stream *st)
{
    struct h2_conn *hc = st->hc;
    end_request(st);
    if (st->ready) { /* still queued: unlink */
        struct h2_stream **pp = &hc->ready, *prev = NULL;
        while (*pp && *pp != st)
            prev = *pp, pp = &(*pp)->ready_next;
        if (*pp)
            *pp = st->ready_next;
        if (hc->ready_tail == st)
            hc->ready_tail = prev;
    }
    if (st->prev)
        st->prev->next = st->next;
    else
        hc->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    hc->num_streams--;
    evtimer_del(&st->timer);
    if (st->gen)
        wgen_unref(st->gen);
    h2_head_clear(&st->head);
    untrack_free(st, st->body_in);
    untrack_free(st, st->out);
    free(st);
}

void h2_stream_maybe_free(struct h2_stream *st)
{
    if (st->closed && st->refs == 0)
        stream_free(st);
}

void h2_stream_kill(struct h2_stream *st)
{
    if (!st->closed)
        nghttp2_session_set_stream_user_data(st->hc->s, st->id, NULL);
    st->closed = true;
    h2_stream_maybe_free(st); /* a holder up the stack frees it when it lets go */
}

/* ---- response ------------------------------------------------------------------- */

ssize_t h2_stream_data_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *arg)
{
    struct h2_stream *st = src->ptr;
    size_t avail = st->out ? evbuffer_get_length(st->out) : 0;
    if (avail == 0 && !st->out_eof) {
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = avail < len ? avail : len;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (st->out_eof && n == avail)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

int h2_stream_send_data(struct h2_stream *st, struct evbuffer *out, const uint8_t *framehd,
                        size_t length)
{
    evbuffer_add(out, framehd, 9);
    evbuf_move(st->out, out, length);
    if (st->r)
        st->r->bytes_out += 9 + length;
    if (st->throttled) /* the proxy may read more from the upstream */
        h2_conn_schedule(st->hc);
    return 0;
}

static size_t stream_out_high(const void *s);

static void resume(struct h2_stream *st)
{
    if (st->deferred && !st->closed) {
        st->deferred = false;
        nghttp2_session_resume_data(st->hc->s, st->id);
    }
}

/* Field lines ("Name: value\r\n") as lowercase nghttp2 name/value pairs; returns how many. */
static size_t lines_to_nv(char *p, size_t len, nghttp2_nv *nv, size_t max)
{
    size_t n = 0;
    char *end = p + len;
    while (p < end && n < max) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        char *colon = memchr(p, ':', eol ? (size_t)(eol - p) : (size_t)(end - p));
        if (!eol || !colon)
            break;
        char *v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t'))
            v++;
        char *vend = eol > v && eol[-1] == '\r' ? eol - 1 : eol;
        for (char *c = p; c < colon; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        nv[n++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)v, (size_t)(colon - p), (size_t)(vend - v),
                               NGHTTP2_NV_FLAG_NONE};
        p = eol + 1;
    }
    return n;
}

#define H2_MAX_RESPONSE_FIELDS 256

/* Submits the response head; with_body: DATA frames follow from st->out. */
static int submit_head(struct h2_stream *st, int status, struct evbuffer *fields, bool with_body)
{
    nghttp2_nv nv[H2_MAX_RESPONSE_FIELDS + 1];
    char code[12];
    snprintf(code, sizeof code, "%03d", status % 1000);
    nv[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)code, 7, 3, NGHTTP2_NV_FLAG_NONE};
    size_t len = evbuffer_get_length(fields);
    char *p = (char *)evbuffer_pullup(fields, -1);
    size_t n = 1 + lines_to_nv(p, len, nv + 1, H2_MAX_RESPONSE_FIELDS);
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = h2_stream_data_read};
    if (with_body && !out_buf(st))
        return -1;
    int rv = nghttp2_submit_response(st->hc->s, st->id, nv, n, with_body ? &prd : NULL);
    if (st->r)
        st->r->bytes_out += len + 9;
    evbuffer_drain(fields, len);
    st->submitted = rv == 0;
    if (!with_body)
        st->out_eof = true;
    return rv;
}

static bool is_head(const struct h2_stream *st)
{
    return st->r && st->r->h.method_id == HTTP1_M_HEAD;
}

static void exchange_done(struct h2_stream *st)
{
    struct request *r = st->r;
    if (!r)
        return;
    st->r = NULL;
    st->finished = true;
    evtimer_del(&st->timer);
    accesslog_request(r);
    request_free(&stream_worker(st)->reqs, r);
    h2_conn_refund(st->hc);
}

static void stream_respond(void *s, int status, const char *extra, const char *body, bool close)
{
    struct h2_stream *st = s;
    struct h2_conn *hc = st->hc;
    char text[160];
    body = respond_body(status, body, text, sizeof text);
    size_t blen = strlen(body) + 1;
    bool with_body = !is_head(st);
    if (st->r) {
        st->r->status = status;
        st->r->resp_started = true;
    }
    respond_fields(hc->fields, st->r ? st->r->cfg : h2_cfg(hc), st->r, extra, blen);
    if (with_body && out_buf(st)) {
        evbuffer_add(st->out, body, blen - 1);
        evbuffer_add(st->out, "\n", 1);
        if (st->r)
            st->r->bytes_out += blen;
    }
    st->out_eof = true;
    if (submit_head(st, status, hc->fields, with_body) != 0)
        nghttp2_submit_rst_stream(hc->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    exchange_done(st);
}

static struct evbuffer *stream_head_begin(void *s, const struct response_head *h)
{
    struct h2_stream *st = s;
    if (h->status == 101 || (h->body != HTTP1_BODY_NONE && h->codings.len))
        return NULL; /* no upgrade and no transfer codings in HTTP/2 (RFC 9113 §8.2.2) */
    evbuffer_drain(st->hc->fields, evbuffer_get_length(st->hc->fields));
    return st->hc->fields;
}

static void stream_head_end(void *s, const struct response_head *h)
{
    struct h2_stream *st = s;
    bool with_body = h->body != HTTP1_BODY_NONE && !is_head(st) &&
                     !(h->body == HTTP1_BODY_LENGTH && h->content_length == 0);
    if (h->body == HTTP1_BODY_LENGTH)
        evbuffer_add_printf(st->hc->fields, "content-length: %llu\r\n",
                            (unsigned long long)h->content_length);
    if (submit_head(st, h->status, st->hc->fields, with_body) != 0)
        nghttp2_submit_rst_stream(st->hc->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
}

static void stream_body(void *s, struct evbuffer *src, size_t n)
{
    struct h2_stream *st = s;
    if (!st->out || st->out_eof || st->closed) {
        evbuffer_drain(src, n); /* no DATA can carry it (HEAD, or the stream is gone) */
        return;
    }
    evbuffer_remove_buffer(src, st->out, n);
    if (evbuffer_get_length(st->out) > stream_out_high(st))
        st->throttled = true; /* the proxy pauses the upstream: kick resumes it */
    resume(st);
}

static void stream_body_end(void *s)
{
    struct h2_stream *st = s;
    st->out_eof = true;
    resume(st);
}

static void stream_continue_100(void *s)
{
    struct h2_stream *st = s;
    nghttp2_nv nv = {(uint8_t *)":status", (uint8_t *)"100", 7, 3, NGHTTP2_NV_FLAG_NONE};
    nghttp2_submit_headers(st->hc->s, NGHTTP2_FLAG_NONE, st->id, NULL, &nv, 1, NULL);
}

static struct evbuffer *stream_body_in(void *s)
{
    return body_in_buf(s);
}

static struct evbuffer *stream_out(void *s)
{
    return out_buf(s);
}

/* Per stream: a quarter of the connection's buffer (16 KiB by default), so all the
 * streams of a connection together stay within max_concurrent_streams of those. */
static size_t stream_out_high(const void *s)
{
    const struct h2_stream *st = s;
    return h2_cfg(st->hc)->limits.connection_buffer / 4;
}

static void stream_set_reading(void *s, bool on)
{
    struct h2_stream *st = s;
    if (on && st->body_in && evbuffer_get_length(st->body_in))
        h2_conn_schedule(st->hc); /* the kick hands the buffered body over */
}

static void stream_arm_timer(void *s, uint64_t ms)
{
    struct h2_stream *st = s;
    if (!ms) {
        evtimer_del(&st->timer);
        return;
    }
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(&st->timer, &tv);
}

static bool stream_ending(const void *s)
{
    const struct h2_stream *st = s;
    return st->hc->goaway || stream_worker(st)->draining;
}

static void stream_abort(void *s)
{
    struct h2_stream *st = s;
    if (!st->closed)
        nghttp2_submit_rst_stream(st->hc->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    end_request(st);
}

static void stream_tunnel(void *s)
{
    stream_abort(s); /* never asked for: upgrade is a connection-specific field in h2 */
}

static void stream_done(void *s)
{
    exchange_done(s);
}

static void h2s_hold(void *s)
{
    struct h2_stream *st = s;
    st->refs++;
    h2_conn_hold(st->hc);
}

static void h2s_release(void *s)
{
    struct h2_stream *st = s;
    struct h2_conn *hc = st->hc;
    st->refs--;
    h2_stream_maybe_free(st);
    h2_conn_release(hc);
}

static const struct client_stream_ops h2_stream_ops = {
    .respond = stream_respond,
    .head_begin = stream_head_begin,
    .head_end = stream_head_end,
    .body = stream_body,
    .body_end = stream_body_end,
    .continue_100 = stream_continue_100,
    .body_in = stream_body_in,
    .out = stream_out,
    .out_high = stream_out_high,
    .set_reading = stream_set_reading,
    .arm_timer = stream_arm_timer,
    .ending = stream_ending,
    .tunnel = stream_tunnel,
    .done = stream_done,
    .abort = stream_abort,
    .hold = h2s_hold,
    .release = h2s_release,
};

/* ---- deferred work -------------------------------------------------------------- */

void h2_stream_kick(struct h2_stream *st)
{
    struct request *r = st->r;
    if (!r || st->closed)
        return;
    if (st->body_in && evbuffer_get_length(st->body_in) && !r->req_body_done)
        proxy_client_readable(r);
    if (st->r == r && st->throttled && evbuffer_get_length(st->out) <= stream_out_high(st) / 2) {
        st->throttled = false;
        proxy_client_drained(r);
    }
}

static void on_stream_timer(evutil_socket_t fd, short what, void *arg)
{
    struct h2_stream *st = arg;
    struct h2_conn *hc = st->hc;
    struct request *r = st->r;
    h2s_hold(st);
    if (!r && !st->finished) { /* the head never completed: nothing to answer to yet */
        h2_conn_glitch(hc, "request head timeout", NULL);
        if (!st->closed)
            nghttp2_submit_rst_stream(hc->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    } else if (r && !r->resp_started) {
        proxy_abort(r);
        r->error = "request body timeout";
        stream_respond(st, 408, NULL, "request body timeout", true);
    } else {
        stream_abort(st);
    }
    h2s_release(st);
}
