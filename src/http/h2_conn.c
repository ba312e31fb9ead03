#include "http/h2_conn.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "config/config.h"
#include "core/snapshot.h"
#include "core/worker.h"
#include "http/conn.h"
#include "http/h2_internal.h"
#include "observe/audit.h"
#include "observe/log.h"
#include "observe/metrics.h"
#include "policy/ratelimit.h"
#include "util/jsonw.h"
#include "util/monotime.h"

/* A WINDOW_UPDATE below this many bytes costs a glitch. */
#define H2_TINY_WINDOW_UPDATE 64
/* Input handed to nghttp2 at a time: the stream cap is checked between slices. */
#define H2_SLICE (16 * 1024)

const struct config *h2_cfg(const struct h2_conn *hc)
{
    return hc->c->gen->snap->cfg;
}

static size_t out_high(const struct h2_conn *hc)
{
    return h2_cfg(hc)->limits.connection_buffer;
}

static struct metrics *h2_metrics(struct h2_conn *hc)
{
    return &hc->c->w->metrics;
}

void h2_conn_hold(struct h2_conn *hc)
{
    conn_hold(hc->c);
}

void h2_conn_release(struct h2_conn *hc)
{
    conn_release(hc->c);
}

void h2_conn_schedule(struct h2_conn *hc)
{
    if (!hc->closing)
        event_active(&hc->kick, EV_TIMEOUT, 0);
}

/* The connection cannot go on: streams end now, queued frames (a GOAWAY) still go out. */
static void h2_close(struct h2_conn *hc)
{
    if (hc->closing)
        return;
    hc->closing = true;
    while (hc->streams)
        h2_stream_kill(hc->streams);
    conn_close_after_flush(hc->c);
}

/* Past the glitch budget: GOAWAY(ENHANCE_YOUR_CALM), an audit event, and the end. */
static void calm(struct h2_conn *hc, const char *why)
{
    if (hc->goaway && hc->closing)
        return;
    metrics_inc(h2_metrics(hc), M_H2_CALM_GOAWAYS);
    char buf[512];
    struct jsonw j;
    audit_begin(&j, buf, sizeof buf, "h2_abuse", NULL);
    jsonw_str(&j, "client_ip", hc->c->peer.ip);
    jsonw_str(&j, "detail", why);
    jsonw_int(&j, "glitches", (long long)hc->glitches);
    audit_emit(&j);
    log_msg(LOG_INFO, "h2 %s: %s after %zu glitches: GOAWAY(ENHANCE_YOUR_CALM)", hc->c->peer.ip,
            why, hc->glitches);
    nghttp2_session_terminate_session(hc->s, NGHTTP2_ENHANCE_YOUR_CALM);
    hc->goaway = true;
}

/*
 * A glitch is charged beyond its connection too, in the instance's rate-limit
 * table: to the client's IP (ten connection budgets per minute) and to the
 * tenant of the stream once its session is known (a hundred), so a client that
 * spreads its resets over many connections is stopped all the same. Finished
 * requests give back to the connection's budget, not to these.
 */
static bool charge_beyond(struct h2_conn *hc, const char *tenant)
{
    double budget = (double)h2_cfg(hc)->http2.max_glitches;
    const char *ip = hc->c->peer.ip;
    bool ok =
        ratelimit_local("@h2-glitch-ip", ip, strlen(ip), budget * 10 / 60, (uint64_t)budget * 10)
            .allowed;
    if (tenant && tenant[0])
        ok = ratelimit_local("@h2-glitch-tenant", tenant, strlen(tenant), budget * 100 / 60,
                             (uint64_t)budget * 100)
                 .allowed &&
             ok;
    return ok;
}

void h2_conn_glitch(struct h2_conn *hc, const char *why, const char *tenant)
{
    hc->glitches++;
    metrics_inc(h2_metrics(hc), M_H2_GLITCHES);
    if (!charge_beyond(hc, tenant))
        calm(hc, tenant && tenant[0] ? "glitch budget of the tenant spent"
                                     : "glitch budget of the client address spent");
    else if (hc->glitches > h2_cfg(hc)->http2.max_glitches)
        calm(hc, why);
}

void h2_conn_refund(struct h2_conn *hc)
{
    if (hc->glitches)
        hc->glitches--;
}

/* ---- nghttp2 callbacks ---------------------------------------------------------- */

/* The TLS output when it has room for another frame; else NULL and why (nghttp2's code). */
static struct evbuffer *output_room(struct h2_conn *hc, int *why)
{
    struct evbuffer *out = tlsio_output(&hc->c->io);
    *why = !out ? NGHTTP2_ERR_CALLBACK_FAILURE : NGHTTP2_ERR_WOULDBLOCK;
    return out && evbuffer_get_length(out) < out_high(hc) ? out : NULL;
}

static ssize_t on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *arg)
{
    int why;
    struct evbuffer *out = output_room(arg, &why);
    if (!out)
        return why;
    if (evbuffer_add(out, data, len) < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)len;
}

static int on_send_data(nghttp2_session *s, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *source, void *arg)
{
    struct h2_conn *hc = arg;
    int why;
    struct evbuffer *out = output_room(hc, &why);
    if (!out)
        return why;
    hc->progress_ms = mono_ms();
    return h2_stream_send_data(source->ptr, out, framehd, length);
}

static struct h2_stream *stream_of(struct h2_conn *hc, int32_t id)
{
    return nghttp2_session_get_stream_user_data(hc->s, id);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *frame, void *arg)
{
    struct h2_conn *hc = arg;
    int32_t id = frame->hd.stream_id;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        struct h2_stream *st = stream_of(hc, id);
        if (st)
            st->in_trailers = true;
        return 0;
    }
    /* Streams whose requests are still being torn down count: a client that resets
     * and reopens cannot have more upstream work in flight than the limit. */
    if (hc->num_streams >= h2_cfg(hc)->http2.max_concurrent_streams) {
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
        h2_conn_glitch(hc, "too many streams", NULL);
        return 0;
    }
    struct h2_stream *st = h2_stream_new(hc, id);
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    nghttp2_session_set_stream_user_data(s, id, st);
    metrics_inc(h2_metrics(hc), M_H2_STREAMS);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *arg)
{
    struct h2_stream *st = stream_of(arg, frame->hd.stream_id);
    if (!st || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    return h2_stream_header(st, name, nlen, value, vlen);
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *arg)
{
    struct h2_conn *hc = arg;
    struct h2_stream *st = frame->hd.stream_id ? stream_of(hc, frame->hd.stream_id) : NULL;
    bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    hc->active_ms = mono_ms();
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        if (st && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
            h2_stream_head_done(st, end);
        else if (st && end)
            h2_stream_end_in(st);
        break;
    case NGHTTP2_DATA:
        if (frame->hd.length == 0 && !end) /* carries nothing: only costs (CVE-2019-9518) */
            h2_conn_glitch(hc, "empty DATA frames", NULL);
        if (st && end)
            h2_stream_end_in(st);
        break;
    case NGHTTP2_WINDOW_UPDATE:
        /* Windows opened a few bytes at a time make moat cut tiny DATA frames (CVE-2019-9517
         * family); real clients open them by kilobytes. */
        if (frame->window_update.window_size_increment < H2_TINY_WINDOW_UPDATE)
            h2_conn_glitch(hc, "tiny WINDOW_UPDATE frames", NULL);
        break;
    case NGHTTP2_SETTINGS:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK)
            hc->settings_acked = true;
        break;
    case NGHTTP2_RST_STREAM:
        metrics_inc(h2_metrics(hc), M_H2_RESETS_RECEIVED);
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *arg)
{
    struct h2_conn *hc = arg;
    struct h2_stream *st = stream_of(hc, id);
    if (st)
        h2_stream_data(st, data, len);
    else /* a stream we refused: its bytes still count against the connection window */
        nghttp2_session_consume_connection(s, len);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *arg)
{
    struct h2_stream *st = stream_of(arg, id);
    if (st) {
        nghttp2_session_set_stream_user_data(s, id, NULL);
        h2_stream_closed(st, error_code);
    }
    return 0;
}

static int on_invalid_frame(nghttp2_session *s, const nghttp2_frame *frame, int lib_error,
                            void *arg)
{
    h2_conn_glitch(arg, nghttp2_strerror(lib_error), NULL);
    return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *frame, void *arg)
{
    struct h2_conn *hc = arg;
    if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK))
        hc->settings_ms = mono_ms();
    if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM) ||
        (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA))
        return 0;
    struct h2_stream *st = stream_of(hc, frame->hd.stream_id);
    if (st)
        st->resp_done = true;
    if (st && !st->in_done) /* answered before the whole body came: stop the rest (§8.1) */
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_error(nghttp2_session *s, int lib_error, const char *msg, size_t len, void *arg)
{
    struct h2_conn *hc = arg;
    log_msg(LOG_DEBUG, "h2 %s: %.*s", hc->c->peer.ip, (int)len, msg);
    return 0;
}

static nghttp2_session_callbacks *make_callbacks(void)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return NULL;
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    nghttp2_session_callbacks_set_send_data_callback(cb, on_send_data);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_error_callback2(cb, on_error);
    return cb;
}

/*
 * nghttp2's own defences, bounded by moat's config: outstanding ACKs (SETTINGS
 * and PING floods), SETTINGS entries, CONTINUATION frames, incoming resets.
 * Flow control is manual: a window opens only once the proxy has taken the
 * bytes, so a client cannot send more than the window ahead of the upstream.
 */
static nghttp2_option *make_options(const struct config *cfg)
{
    nghttp2_option *opt;
    if (nghttp2_option_new(&opt) != 0)
        return NULL;
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_outbound_ack(opt, 100);
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_continuations(opt, 8);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    nghttp2_option_set_stream_reset_rate_limit(opt, cfg->http2.max_glitches * 2,
                                               cfg->http2.max_glitches / 4 + 1);
    return opt;
}

static int submit_settings(struct h2_conn *hc)
{
    const struct config *cfg = h2_cfg(hc);
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)cfg->http2.max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)cfg->http2.initial_window_size},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, (uint32_t)cfg->http2.header_table_size},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)cfg->limits.max_header_bytes},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    return nghttp2_submit_settings(hc->s, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof *iv);
}

static void on_kick(evutil_socket_t fd, short what, void *arg);

int h2_conn_start(struct conn *c)
{
    struct h2_conn *hc = calloc(1, sizeof *hc);
    if (!hc)
        return -1;
    hc->c = c;
    nghttp2_session_callbacks *cb = make_callbacks();
    nghttp2_option *opt = make_options(h2_cfg(hc));
    int rv = cb && opt ? nghttp2_session_server_new2(&hc->s, cb, hc, opt) : -1;
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    if (rv != 0 || !(hc->fields = evbuffer_new())) {
        if (rv == 0)
            nghttp2_session_del(hc->s);
        free(hc);
        return -1;
    }
    event_assign(&hc->kick, c->w->base, -1, 0, on_kick, hc);
    hc->active_ms = hc->progress_ms = hc->settings_ms = mono_ms();
    c->h2 = hc;
    metrics_inc(h2_metrics(hc), M_H2_CONNECTIONS);
    if (submit_settings(hc) != 0)
        return -1;
    h2_conn_on_read(hc); /* the preface may already be in */
    return 0;
}

void h2_conn_free(struct h2_conn *hc)
{
    if (!hc)
        return;
    hc->closing = true;
    while (hc->streams)
        h2_stream_kill(hc->streams);
    event_del(&hc->kick);
    nghttp2_session_del(hc->s);
    evbuffer_free(hc->fields);
    free(hc);
}

/* ---- input ---------------------------------------------------------------------- */

static void start_ready(struct h2_conn *hc)
{
    size_t cap = h2_cfg(hc)->http2.max_streams_per_read;
    while (hc->ready && hc->started < cap && !hc->closing) {
        struct h2_stream *st = hc->ready;
        hc->ready = st->ready_next;
        if (!hc->ready)
            hc->ready_tail = NULL;
        st->ready = false;
        st->ready_next = NULL;
        hc->started++;
        h2_stream_start(st);
    }
}

void h2_conn_on_read(struct h2_conn *hc)
{
    struct evbuffer *in = tlsio_input(&hc->c->io);
    size_t cap = h2_cfg(hc)->http2.max_streams_per_read;
    hc->started = 0;
    start_ready(hc);
    while (in && !hc->closing && hc->started < cap && !hc->ready) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            break;
        size_t n = len < H2_SLICE ? len : H2_SLICE;
        ssize_t rv = nghttp2_session_mem_recv(hc->s, evbuffer_pullup(in, (ssize_t)n), n);
        if (rv < 0) { /* bad preface, a flood nghttp2 detected, out of memory */
            log_msg(LOG_DEBUG, "h2 %s: %s", hc->c->peer.ip, nghttp2_strerror((int)rv));
            if (rv == NGHTTP2_ERR_FLOODED)
                calm(hc, "flood of frames that need an answer");
            h2_close(hc);
            return;
        }
        evbuffer_drain(in, (size_t)rv);
        start_ready(hc);
    }
    /* Left for the next turn of the loop, after the other connections had theirs. */
    if (!hc->closing && (hc->ready || (in && evbuffer_get_length(in) > 0)))
        h2_conn_schedule(hc);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct h2_conn *hc = arg;
    struct conn *c = hc->c;
    conn_hold(c);
    for (struct h2_stream *st = hc->streams, *next; st && !hc->closing; st = next) {
        next = st->next;
        st->refs++; /* the proxy may end this stream's exchange */
        h2_stream_kick(st);
        st->refs--;
        h2_stream_maybe_free(st);
    }
    if (!hc->closing)
        h2_conn_on_read(hc);
    conn_release(c);
}

/* ---- output and timers ---------------------------------------------------------- */

static bool output_pending(const struct h2_conn *hc)
{
    if (tlsio_output_len(&hc->c->io) > 0)
        return true;
    for (const struct h2_stream *st = hc->streams; st; st = st->next)
        if (st->submitted && st->out && evbuffer_get_length(st->out) > 0)
            return true;
    return false;
}

static void arm(struct h2_conn *hc)
{
    const struct config *cfg = h2_cfg(hc);
    uint64_t now = mono_ms(), at = UINT64_MAX;
    if (!hc->settings_acked)
        at = hc->settings_ms + cfg->http2.settings_timeout_ms;
    if (hc->num_streams == 0 && hc->active_ms + cfg->limits.idle_timeout_ms < at)
        at = hc->active_ms + cfg->limits.idle_timeout_ms;
    if (!output_pending(hc))
        hc->progress_ms = now;
    else if (hc->progress_ms + cfg->http2.send_timeout_ms < at)
        at = hc->progress_ms + cfg->http2.send_timeout_ms;
    conn_arm_timer(hc->c, at > now ? at - now : 1);
}

void h2_conn_flush(struct h2_conn *hc)
{
    if (hc->flushing || hc->closing)
        return;
    hc->flushing = true;
    int rv = nghttp2_session_send(hc->s);
    hc->flushing = false;
    if (rv != 0) {
        log_msg(LOG_DEBUG, "h2 %s: send: %s", hc->c->peer.ip, nghttp2_strerror(rv));
        h2_close(hc);
        return;
    }
    if ((!nghttp2_session_want_read(hc->s) && !nghttp2_session_want_write(hc->s)) ||
        (hc->goaway && hc->num_streams == 0)) {
        h2_close(hc); /* GOAWAY sent and nothing left in flight */
        return;
    }
    if (hc->num_streams)
        hc->active_ms = mono_ms();
    arm(hc);
}

void h2_conn_on_write(struct h2_conn *hc)
{
    hc->progress_ms = mono_ms();
    h2_conn_schedule(hc); /* streams whose output drained may take more from upstream */
}

void h2_conn_on_timer(struct h2_conn *hc)
{
    const struct config *cfg = h2_cfg(hc);
    uint64_t now = mono_ms();
    if (!hc->settings_acked && now >= hc->settings_ms + cfg->http2.settings_timeout_ms) {
        nghttp2_session_terminate_session(hc->s, NGHTTP2_SETTINGS_TIMEOUT);
        hc->goaway = true;
    } else if (output_pending(hc) && now >= hc->progress_ms + cfg->http2.send_timeout_ms) {
        log_msg(LOG_DEBUG, "h2 %s: send timeout", hc->c->peer.ip);
        conn_abort(hc->c); /* a reader that does not read: nothing more can be sent */
    } else if (hc->num_streams == 0 && now >= hc->active_ms + cfg->limits.idle_timeout_ms) {
        nghttp2_session_terminate_session(hc->s, NGHTTP2_NO_ERROR);
        hc->goaway = true;
    }
}

void h2_conn_drain(struct h2_conn *hc)
{
    if (hc->goaway)
        return;
    nghttp2_submit_goaway(hc->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(hc->s),
                          NGHTTP2_NO_ERROR, NULL, 0);
    hc->goaway = true;
}
