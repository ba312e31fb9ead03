/*
 * libFuzzer target: the RESP reply path of src/redis/redis.c, as a hostile Redis
 * server drives it: the hiredis reader with moat's bounded object constructors,
 * reply classification (pubsub messages, (un)subscribe confirmations), the
 * matching of replies to pending commands, the handshake replies,
 * session_parse_reply() on every reply handed to a user callback, and the
 * revocation push handler (src/policy/revocation.c: invalidation messages, handed
 * to a real, empty auth cache).
 *
 * redis.c and revocation.c are included, not linked: their reply paths are
 * static, and a copy here would drift from them. redis_connect.c (teardown,
 * timers) is included with redis.c, so that no redis object of the core library
 * is linked in beside these copies. The client struct is set up the way
 * conn_open() leaves it, on an event base that never runs (timers are only armed).
 *
 * Input: 4 knob bytes (reply size limit, initial subscription state, the
 * pending commands and their kinds, split seed), then the server's bytes,
 * fed at random split points. Properties checked besides "no sanitizer
 * report" (leaks included):
 * - every user command gets exactly one callback, with a reply or an error;
 * - a reply handed out respects the object and byte budget;
 * - after a protocol error the connection is gone and nothing else is read.
 */
#include "redis/redis.c"
#include "redis/redis_connect.c"
#include "policy/revocation.c"

#include "policy/auth_cache.h"
#include "fuzz_util.h"
#include "http/request.h"
#include "policy/session.h"
#include "core/services.h"

#define MAX_PENDING 16

static struct event_base *fz_base;
static struct event *fz_ev[4];
static unsigned calls[MAX_PENDING];
static size_t fz_max_reply_bytes;

static void noop_cb(evutil_socket_t fd, short what, void *arg) {}

/* Objects and payload bytes of a reply tree, nesting bounded by hiredis. */
static void reply_size(const redisReply *r, size_t *objs, size_t *bytes, int depth)
{
    CHECK(depth <= 8);
    ++*objs;
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        CHECK(r->str && r->str[r->len] == '\0');
        *bytes += r->len;
        break;
    case REDIS_REPLY_ARRAY:
        CHECK(r->elements == 0 || r->element);
        for (size_t i = 0; i < r->elements; i++)
            if (r->element[i])
                reply_size(r->element[i], objs, bytes, depth + 1);
        break;
    default:
        break;
    }
}

static void check_reply(const redisReply *r)
{
    size_t objs = 0, bytes = 0;
    reply_size(r, &objs, &bytes, 0);
    CHECK(objs <= MAX_REPLY_OBJECTS && bytes <= fz_max_reply_bytes);
    /* what auth does with the reply of a session lookup */
    struct session_identity id;
    int64_t exp;
    enum session_status s = session_parse_reply(r, 1700000000, &id, &exp);
    if (s == SESSION_OK)
        CHECK(id.authenticated && id.tenant[0] && id.user[0]);
}

static void user_cb(redisReply *reply, const char *err, void *arg)
{
    size_t i = (size_t)(uintptr_t)arg;
    calls[i]++;
    CHECK((reply == NULL) != (err == NULL));
    if (reply)
        check_reply(reply);
}

static struct services fz_svc;
static struct revocation fz_rv = {.svc = &fz_svc, .prefix = (char *)"moat:s:"};

static void push_cb(redisReply *msg, void *arg)
{
    CHECK(msg && msg->type == REDIS_REPLY_ARRAY && msg->elements >= 3);
    check_reply(msg);
    /* what a subscribed revocation connection does with it: drops or clears,
     * never adds (the cache starts empty: the key parsing is what runs here) */
    size_t before = auth_cache_count(fz_svc.auth_cache);
    on_push(msg, &fz_rv);
    CHECK(auth_cache_count(fz_svc.auth_cache) <= before);
}

static void setup(struct redis_client *c, uint32_t knob, size_t *npend)
{
    static const size_t limits[] = {64, 1024, 65536, DEFAULT_MAX_REPLY_BYTES};
    memset(c, 0, sizeof(*c));
    c->base = fz_base;
    c->retry_ev = fz_ev[0];
    c->connect_ev = fz_ev[1];
    c->cmd_ev = fz_ev[2];
    c->ping_ev = (knob & 4) ? fz_ev[3] : NULL;
    c->timeout_ms = c->backoff_min_ms = 50;
    c->backoff_max_ms = 2000;
    c->max_inflight = DEFAULT_MAX_INFLIGHT;
    c->max_reply_bytes = fz_max_reply_bytes = limits[knob & 3];
    c->state = REDIS_STATE_CONNECTED;
    c->transport_up = true;
    c->subscribed = (knob & 8) != 0;
    if (knob & 16) {
        c->push_fn = push_cb;
        c->push_arg = NULL;
    }
    CHECK((c->reader = redisReaderCreate()) != NULL);
    c->dfn = c->reader->fn;
    c->reader->fn = &redis_reply_fns;
    c->reader->privdata = c;

    /* pending commands: mostly user commands, some subscriptions and handshake steps */
    uint32_t seed = knob;
    *npend = (knob >> 5) % (MAX_PENDING + 1);
    for (size_t i = 0; i < *npend; i++) {
        struct redis_pending *p = pending_get(c);
        CHECK(p);
        uint32_t r = fz_rand(&seed);
        p->kind = (r & 3) ? PK_USER : (enum pending_kind)(1 + (r >> 2) % 5);
        p->fn = p->kind == PK_USER ? user_cb : NULL;
        p->arg = (void *)(uintptr_t)i;
        p->subscription = p->kind == PK_USER && (r >> 8) % 4 == 0;
        p->replies_left = p->subscription ? 1 + (int)((r >> 10) % 3) : 1;
        pending_append(c, p);
        calls[i] = p->kind == PK_USER ? 0 : 1;
    }
}

/* read_cb without the bufferevent: feed, then parse, until the connection goes. */
static void feed(struct redis_client *c, const char *buf, size_t len, uint32_t seed)
{
    unsigned gen = c->gen;
    redis_client_enter(c);
    for (size_t at = 0; at < len;) {
        size_t cut = fz_next_cut(&seed, at, len);
        if (redisReaderFeed(c->reader, buf + at, cut - at) != REDIS_OK) {
            protocol_error(c, c->reader->errstr);
            break;
        }
        at = cut;
        if (parse_replies(c, gen) < 0)
            break;
    }
    redis_client_leave(c);
    if (gen != c->gen) { /* dropped: the reader is gone, every command failed */
        CHECK(c->reader == NULL && c->head == NULL && c->inflight == 0);
        CHECK(c->state == REDIS_STATE_DOWN && c->last_error[0]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fz_base) {
        fz_svc.auth_cache = auth_cache_new(64);
        fz_base = event_base_new();
        for (int i = 0; i < 4; i++)
            fz_ev[i] = evtimer_new(fz_base, noop_cb, NULL);
    }
    struct fz_in in = {data, size};
    uint32_t knob = fz_take(&in, 4);
    struct redis_client c;
    size_t npend;
    setup(&c, knob, &npend);
    feed(&c, (const char *)in.p, in.len, knob * 2654435761u);

    /* the server hangs up: whatever is still pending fails */
    if (c.reader)
        redis_conn_fail(&c, ERR_LOST, "connection closed by the server");
    for (size_t i = 0; i < npend; i++)
        CHECK(calls[i] == 1);
    while (c.free_list) {
        struct redis_pending *p = c.free_list;
        c.free_list = p->next;
        free(p);
    }
    for (int i = 0; i < 4; i++)
        evtimer_del(fz_ev[i]);
    return 0;
}
