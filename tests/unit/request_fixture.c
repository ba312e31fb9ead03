/*
 * request_fixture: see request_fixture.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "request_fixture.h"

#include "config/config.h"
#include "core/snapshot.h"
#include "http/headername.h"
#include "http/http1.h"
#include "http/request_head.h"
#include "policy/identity.h"
#include "util/netutil.h"

/* ---- the recording client stream ----------------------------------------------------- */

static void copy_or_clear(char *dst, size_t cap, bool *has, const char *src)
{
    *has = src != NULL;
    dst[0] = 0;
    if (src) {
        assert_true(strlen(src) < cap);
        strcpy(dst, src);
    }
}

static void rec_respond(void *s, int status, const char *extra, const char *body, bool close)
{
    struct fixture_stream *st = s;
    st->responses++;
    st->status = status;
    st->close = close;
    copy_or_clear(st->extra, sizeof st->extra, &st->has_extra, extra);
    copy_or_clear(st->body, sizeof st->body, &st->has_body, body);
}

/* The phases under test answer through respond() only: any other call is a failure. */
static struct evbuffer *rec_body_in(void *s)
{
    fail_msg("client stream: unexpected body_in()");
    return NULL;
}
static struct evbuffer *rec_out(void *s)
{
    fail_msg("client stream: unexpected out()");
    return NULL;
}
static size_t rec_out_high(const void *s)
{
    fail_msg("client stream: unexpected out_high()");
    return 0;
}
static void rec_set_reading(void *s, bool on)
{
    fail_msg("client stream: unexpected set_reading()");
}
static void rec_arm_timer(void *s, uint64_t ms)
{
    fail_msg("client stream: unexpected arm_timer()");
}
static bool rec_ending(const void *s)
{
    fail_msg("client stream: unexpected ending()");
    return false;
}
static void rec_tunnel(void *s)
{
    fail_msg("client stream: unexpected tunnel()");
}
static void rec_done(void *s)
{
    fail_msg("client stream: unexpected done()");
}
static void rec_abort(void *s)
{
    fail_msg("client stream: unexpected abort()");
}
static void rec_hold(void *s)
{
    fail_msg("client stream: unexpected hold()");
}
static void rec_release(void *s)
{
    fail_msg("client stream: unexpected release()");
}

static const struct client_stream_ops recording_ops = {
    .respond = rec_respond,
    .body_in = rec_body_in,
    .out = rec_out,
    .out_high = rec_out_high,
    .set_reading = rec_set_reading,
    .arm_timer = rec_arm_timer,
    .ending = rec_ending,
    .tunnel = rec_tunnel,
    .done = rec_done,
    .abort = rec_abort,
    .hold = rec_hold,
    .release = rec_release,
};

/* ---- config, peer, request ----------------------------------------------------------- */

struct snapshot *fixture_snapshot(const char *yaml)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load_string("t.yaml", yaml, false, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.count; i++)
            fprintf(stderr, "  %s\n", errs.msgs[i]);
        config_errors_free(&errs);
        fail_msg("config does not load");
    }
    config_errors_free(&errs);
    char err[256] = "";
    struct snapshot *snap = snapshot_build(cfg, 1, NULL, err, sizeof err);
    if (!snap)
        fail_msg("snapshot_build: %s", err);
    return snap;
}

void fixture_set_peer(struct fixture *fx, const char *ip)
{
    struct sockaddr_storage ss;
    socklen_t len;
    assert_int_equal(netutil_sockaddr_numeric(ip, 40000, &ss, &len), 0);
    assert_true(len <= sizeof fx->peer.addr);
    memset(&fx->peer.addr, 0, sizeof fx->peer.addr);
    memcpy(&fx->peer.addr, &ss, len);
    assert_int_equal(netutil_addr_to_str(&fx->peer.addr.sa, fx->peer.ip, sizeof fx->peer.ip), 0);
}

void fixture_init(struct fixture *fx, struct snapshot *snap, const char *ip)
{
    memset(fx, 0, sizeof *fx);
    fx->snap = snap;
    fixture_set_peer(fx, ip);
}

struct request *fixture_request(struct fixture *fx, const char *head)
{
    const struct config *cfg = fx->snap->cfg;
    size_t len = strlen(head);
    if (fx->r)
        request_free(&fx->pool, fx->r);
    struct request *r = fx->r = request_new(&fx->pool, len);
    assert_non_null(r);
    memcpy(r->head_buf, head, len);
    struct http1_limits lim = {.max_header_bytes = cfg->limits.max_header_bytes,
                               .max_headers = cfg->limits.max_headers};
    struct http1_scan scan = {0};
    int status = 0;
    const char *err = NULL;
    ssize_t n = http1_head_scan(&scan, r->head_buf, len, lim.max_header_bytes, &status);
    if (n != (ssize_t)len)
        fail_msg("head does not scan as one whole head (%zd, status %d)", n, status);
    if (http1_parse_request(r->head_buf, len, &lim, &r->h, &status, &err) < 0)
        fail_msg("head does not parse: %d %s", status, err);
    request_head_parsed(r);
    r->head_len = len;
    memset(&fx->stream, 0, sizeof fx->stream);
    r->stream = &fx->stream;
    r->ops = &recording_ops;
    r->peer = &fx->peer;
    r->snap = fx->snap;
    r->cfg = cfg;
    memcpy(r->id, FIXTURE_REQUEST_ID, REQUEST_ID_LEN + 1);
    return r;
}

void fixture_clear(struct fixture *fx)
{
    if (fx->r)
        request_free(&fx->pool, fx->r);
    fx->r = NULL;
    request_pool_clear(&fx->pool);
    snapshot_unref(fx->snap);
    fx->snap = NULL;
}

/* ---- what reaches the upstream ------------------------------------------------------- */

void fixture_forwarded_head(const struct request *r, char *buf, size_t cap)
{
    uint8_t drop[HTTP1_MAX_HEADERS_CAP];
    /* as proxy.c's write_request_head(): phase drops, and hop-by-hop names always */
    for (size_t i = 0; i < r->h.num_headers; i++)
        drop[i] = !identity_forwards(r, i);
    const char *host = r->upstream ? r->upstream->name : "upstream";
    struct request_head_spec spec = {
        .h = &r->h,
        .drop = drop,
        .host = host,
        .host_len = strlen(host),
        .extra = r->add_headers,
        .extra_len = r->add_len,
    };
    size_t n = request_head_size(&spec);
    assert_true(n < cap);
    assert_int_equal(request_head_write(&spec, buf, cap - 1), n);
    buf[n] = 0;
}

/* Calls fn on each field of a head (after the request line) until it returns true. */
static bool each_field(const char *head, bool (*fn)(struct http1_str, struct http1_str, void *),
                       void *arg)
{
    const char *p = strstr(head, "\r\n");
    while (p && strncmp(p, "\r\n\r\n", 4) != 0) {
        p += 2;
        const char *eol = strstr(p, "\r\n");
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        assert_non_null(colon);
        const char *v = colon + 1;
        while (v < eol && *v == ' ')
            v++;
        struct http1_str name = {p, (size_t)(colon - p)}, value = {v, (size_t)(eol - v)};
        if (fn(name, value, arg))
            return true;
        p = eol;
    }
    return false;
}

struct count_arg {
    const char *name;
    bool loose;
    int n;
};

static bool count_one(struct http1_str name, struct http1_str value, void *arg)
{
    struct count_arg *a = arg;
    if (a->loose ? headername_eq_loose(name, a->name) : http1_str_ieq(name, a->name))
        a->n++;
    return false;
}

int fixture_count_field(const char *head, const char *name)
{
    struct count_arg a = {name, false, 0};
    each_field(head, count_one, &a);
    return a.n;
}

int fixture_count_field_loose(const char *head, const char *name)
{
    struct count_arg a = {name, true, 0};
    each_field(head, count_one, &a);
    return a.n;
}

struct value_arg {
    const char *name;
    char *out;
    size_t cap;
};

static bool value_of(struct http1_str name, struct http1_str value, void *arg)
{
    struct value_arg *a = arg;
    if (!http1_str_ieq(name, a->name))
        return false;
    assert_true(value.len < a->cap);
    memcpy(a->out, value.p, value.len);
    a->out[value.len] = 0;
    return true;
}

bool fixture_field_value(const char *head, const char *name, char *out, size_t cap)
{
    struct value_arg a = {name, out, cap};
    return each_field(head, value_of, &a);
}
