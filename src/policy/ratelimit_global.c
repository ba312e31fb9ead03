#include "policy/ratelimit_global.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "config/config.h"
#include "util/digest.h"
#include "observe/log.h"
#include "policy/ratelimit_script.h"
#include "redis/redis.h"
#include "core/services.h"
#include "observe/metrics.h"

#define KEY_MAX 512
/* An instance is live while its last beat is younger than this many beats. */
#define LIVENESS_BEATS 3
#define GROUP_BUCKETS 256 /* open groups are few: the keys with a decision pending */
/* Groups per script call: keeps one call's Redis time (~5 us a group) short. */
#define CALL_GROUPS_MAX 32
#define CALL_ARGS_MAX (3 + 6 * CALL_GROUPS_MAX)

static atomic_uint instances_live = 1;

struct group;

struct rl_global {
    struct services *svc; /* the worker's: its event loop, id and metrics */
    struct redis_client *rc;
    char *prefix;
    char gcra_sha[41];
    char beat_sha[41];
    char instance_id[64];
    uint64_t heartbeat_ms;
    bool cluster; /* redis.mode cluster: hash-tagged keys, one call per slot */
    struct event *beat;
    struct event *flush; /* sends the groups of this loop turn as one call */
    bool closing;
    struct group *out, **out_tail; /* groups waiting for the flush */
    struct group *groups[GROUP_BUCKETS];
};

/* One request's decision; the handle callers hold. */
struct waiter {
    struct waiter *next;
    rl_global_fn fn; /* NULL once cancelled; a sent one still counts in its group */
    void *arg;
};

/*
 * The decisions for one Redis key (and tenant, rate, burst). Requests for a key
 * that has none in flight join the group, and every group of one event-loop turn
 * goes to Redis as one script call (rl_flush). While a group's decision is in
 * flight, later requests for its key queue and go with a later call, n = their
 * number. So a hot key costs one decision per round trip, and many keys share a
 * call; each request is still decided atomically in Redis, in arrival order. A
 * group is in the table while it has waiters sent or queued.
 */
struct group {
    struct group *hnext, *next_out;
    uint64_t hash;
    unsigned slot; /* cluster mode: the slot of both keys */
    struct rl_global *g;
    bool in_flight, in_out;
    struct waiter *sent, *queued, **queued_tail;
    unsigned nsent;
    char n[16];
    char keys[2][KEY_MAX];
    char rate[32], burst[24], tenant[128];
};

/* One EVALSHA for up to CALL_GROUPS_MAX groups. */
struct call {
    struct rl_global *g;
    struct redis_pending *pending;
    bool retried;
    unsigned ngroups;
    struct group *groups[CALL_GROUPS_MAX];
    char numkeys[8];
    const char *argv[CALL_ARGS_MAX];
    size_t lens[CALL_ARGS_MAX];
};

static void sha1_hex(const char *s, char out[41])
{
    unsigned char d[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)s, strlen(s), d);
    digest_hex(d, SHA_DIGEST_LENGTH, out);
}

/* out[n..] = src[0..len), cut to fit cap with its NUL; the new length. (Keys are built
 * per request: snprintf showed in the profile.) */
static size_t append(char *out, size_t n, size_t cap, const char *src, size_t len)
{
    if (len > cap - 1 - n)
        len = cap - 1 - n;
    memcpy(out + n, src, len);
    out[n + len] = '\0';
    return n + len;
}

/* Decimal text of v. */
static void u64_text(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
}

/* The rate as the script reads it; whole rates (the usual ones) without printf. */
static void rate_text(char out[32], double r)
{
    if (r >= 1 && r < 1e15 && r == (double)(uint64_t)r)
        u64_text(out, (uint64_t)r);
    else
        snprintf(out, 32, "%.17g", r);
}

unsigned rl_global_instances(void)
{
    unsigned n = atomic_load_explicit(&instances_live, memory_order_relaxed);
    return n ? n : 1;
}

static bool is_noscript(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR && r->len >= 8 && !strncmp(r->str, "NOSCRIPT", 8);
}

/* One group's 5 integers; false if they are not a verdict for n requests. */
static bool parse_result(redisReply **el, unsigned n, struct rl_global_result *out,
                         unsigned *allowed)
{
    for (size_t i = 0; i < 4; i++)
        if (el[i]->type != REDIS_REPLY_INTEGER || el[i]->integer < 0)
            return false;
    if (el[RL_REPLY_ALLOWED]->integer > n)
        return false;
    *allowed = (unsigned)el[RL_REPLY_ALLOWED]->integer;
    out->remaining = (uint64_t)el[RL_REPLY_REMAINING]->integer;
    out->retry_after_ms = (uint64_t)el[RL_REPLY_RETRY_MS]->integer;
    out->reset_after_ms = (uint64_t)el[RL_REPLY_RESET_MS]->integer;
    return true;
}

static void log_unexpected(const redisReply *r)
{
    static _Thread_local struct log_limit lim;
    bool e = r && r->type == REDIS_REPLY_ERROR;
    log_msg_limited(&lim, LOG_ERROR, "ratelimit: unexpected reply from Redis%s%.*s", e ? ": " : "",
                    e ? (int)r->len : 0, e ? r->str : "");
}

static void table_remove(struct group *gr)
{
    struct group **pp = &gr->g->groups[gr->hash % GROUP_BUCKETS];
    while (*pp && *pp != gr)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = gr->hnext;
}

/* Hands each waiter its verdict (res NULL: store error) and frees the list. The
 * first `allowed` of the list passed; a waiter's "remaining" counts the ones after it. */
static void deliver(struct waiter *w, const struct rl_global_result *res, unsigned allowed)
{
    for (unsigned i = 0; w; i++) {
        struct waiter *next = w->next;
        if (w->fn && !res) {
            w->fn(NULL, w->arg);
        } else if (w->fn) {
            struct rl_global_result mine = *res;
            mine.allowed = i < allowed;
            if (mine.allowed) {
                mine.remaining += allowed - 1 - i;
                mine.retry_after_ms = 0;
            }
            w->fn(&mine, w->arg);
        }
        free(w);
        w = next;
    }
}

/* Puts a group with queued waiters on the list for this loop turn's call. */
static void schedule(struct group *gr)
{
    struct rl_global *g = gr->g;
    if (gr->in_out)
        return;
    gr->in_out = true;
    gr->next_out = NULL;
    *g->out_tail = gr;
    g->out_tail = &gr->next_out;
    event_active(g->flush, EV_TIMEOUT, 1);
}

/* A group's decision is over: it goes again if more waiters queued meanwhile,
 * else it leaves the table (freed by the caller once its verdicts are out). */
static bool group_done(struct group *gr)
{
    gr->in_flight = false;
    gr->sent = NULL;
    gr->nsent = 0;
    if (gr->queued) {
        schedule(gr);
        return true;
    }
    table_remove(gr);
    return false;
}

/* Moves the live queued waiters to sent; false if none (cancelled ones cost nothing). */
static bool take_queued(struct group *gr)
{
    struct waiter *w = gr->queued, **tail = &gr->sent;
    gr->queued = NULL;
    gr->queued_tail = &gr->queued;
    gr->sent = NULL;
    gr->nsent = 0;
    while (w) {
        struct waiter *next = w->next;
        if (w->fn) {
            *tail = w;
            tail = &w->next;
            gr->nsent++;
        } else {
            free(w);
        }
        w = next;
    }
    *tail = NULL;
    u64_text(gr->n, gr->nsent);
    return gr->nsent > 0;
}

static void on_reply(redisReply *reply, const char *err, void *arg);

/* Ends a call: every group's verdicts (replies NULL: all failed), then frees it. */
static void finish_call(struct call *c, redisReply **el, const bool *ok,
                        const struct rl_global_result *res, const unsigned *allowed)
{
    struct waiter *done[CALL_GROUPS_MAX];
    bool keep[CALL_GROUPS_MAX];
    /* the table is settled before any verdict runs: callbacks may decide again */
    for (unsigned i = 0; i < c->ngroups; i++) {
        done[i] = c->groups[i]->sent;
        keep[i] = group_done(c->groups[i]);
    }
    for (unsigned i = 0; i < c->ngroups; i++) {
        deliver(done[i], el && ok[i] ? &res[i] : NULL, el && ok[i] ? allowed[i] : 0);
        if (!keep[i])
            free(c->groups[i]);
    }
    free(c);
}

static bool send_call(struct call *c)
{
    c->argv[0] = c->retried ? "EVAL" : "EVALSHA";
    c->lens[0] = c->retried ? 4 : 7;
    c->argv[1] = c->retried ? RL_GCRA_SCRIPT : c->g->gcra_sha;
    c->lens[1] = c->retried ? strlen(RL_GCRA_SCRIPT) : 40;
    const char *key = c->groups[0]->keys[0]; /* every group of a call is in one slot */
    c->pending = redis_command_key(c->g->rc, key, strlen(key), on_reply, c,
                                   (int)(3 + 6 * c->ngroups), c->argv, c->lens);
    return c->pending != NULL;
}

static void on_reply(redisReply *reply, const char *err, void *arg)
{
    struct call *c = arg;
    c->pending = NULL;
    services_noperm_note(c->g->svc, c->retried ? SVC_NOPERM_EVAL : SVC_NOPERM_EVALSHA,
                         err ? NULL : reply); /* for /readyz */
    if (!err && is_noscript(reply) && !c->retried) {
        c->retried = true; /* the script cache was flushed: the body loads it again */
        if (send_call(c))
            return;
        err = "store unavailable";
    }
    bool ok[CALL_GROUPS_MAX] = {false};
    struct rl_global_result res[CALL_GROUPS_MAX];
    unsigned allowed[CALL_GROUPS_MAX];
    bool framed = !err && reply->type == REDIS_REPLY_ARRAY &&
                  reply->elements == (size_t)RL_REPLY_LEN * c->ngroups;
    bool all = framed;
    for (unsigned i = 0; framed && i < c->ngroups; i++) {
        ok[i] = parse_result(reply->element + (size_t)RL_REPLY_LEN * i, c->groups[i]->nsent,
                             &res[i], &allowed[i]);
        all = all && ok[i];
    }
    if (!err && !all)
        log_unexpected(reply);
    finish_call(c, framed ? reply->element : NULL, ok, res, allowed);
}

/* The argument vector (ratelimit_script.h): the keys of all groups, then their arguments. */
static void pack_args(struct call *c)
{
    unsigned ng = c->ngroups;
    u64_text(c->numkeys, 2 * ng);
    c->argv[2] = c->numkeys;
    const char **k = c->argv + 3, **a = c->argv + 3 + 2 * ng;
    for (unsigned i = 0; i < ng; i++) {
        const struct group *gr = c->groups[i];
        k[2 * i] = gr->keys[0];
        k[2 * i + 1] = gr->keys[1];
        a[4 * i] = gr->rate;
        a[4 * i + 1] = gr->burst;
        a[4 * i + 2] = gr->n;
        a[4 * i + 3] = gr->tenant;
    }
    for (unsigned i = 2; i < 3 + 6 * ng; i++)
        c->lens[i] = strlen(c->argv[i]);
}

/* Takes up to CALL_GROUPS_MAX groups off the out list into a new call; in
 * cluster mode only groups in the slot of the first (the others wait for the
 * next call of the same flush). */
static struct call *next_call(struct rl_global *g)
{
    struct call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->g = g;
    struct group **pp = &g->out;
    while (*pp && c->ngroups < CALL_GROUPS_MAX) {
        struct group *gr = *pp;
        if (g->cluster && c->ngroups && gr->slot != c->groups[0]->slot) {
            pp = &gr->next_out;
            continue;
        }
        *pp = gr->next_out;
        gr->in_out = false;
        if (!take_queued(gr)) {
            table_remove(gr);
            free(gr);
            continue;
        }
        gr->in_flight = true;
        c->groups[c->ngroups++] = gr;
    }
    g->out_tail = &g->out; /* skipped groups stay in order; the tail may have moved */
    if (g->cluster)
        while (*g->out_tail)
            g->out_tail = &(*g->out_tail)->next_out;
    return c;
}

/* End of a loop turn: the groups it collected go to Redis together. */
static void rl_flush(evutil_socket_t fd, short what, void *arg)
{
    struct rl_global *g = arg;
    while (g->out) {
        struct call *c = next_call(g);
        if (!c) { /* out of memory: these decisions fail, later ones may not */
            event_active(g->flush, EV_TIMEOUT, 1);
            return;
        }
        if (!c->ngroups) {
            free(c);
            continue;
        }
        pack_args(c);
        if (send_call(c))
            metrics_inc(g->svc->metrics, M_RL_GLOBAL_CALLS);
        else
            finish_call(c, NULL, NULL, NULL, NULL);
    }
}

/* Header values (API keys: secrets, docs/ratelimit.md "never a raw secret") and keys
 * longer than KEY_MAX allows are replaced by their digest. Prefix and rule id are
 * at most 64 bytes each (config). Cluster mode: the rule is a hash tag, "{rule}",
 * so the state and the override hash of a rule share a slot. */
static void build_key(char *out, const char *prefix, const char *rule, bool tag, bool digest,
                      const char *key, size_t keylen)
{
    size_t plen = strlen(prefix), rlen = strlen(rule);
    size_t room = KEY_MAX - plen - rlen - 4;
    size_t n = append(out, 0, KEY_MAX, prefix, plen);
    if (tag)
        n = append(out, n, KEY_MAX, "{", 1);
    n = append(out, n, KEY_MAX, rule, rlen);
    if (tag)
        n = append(out, n, KEY_MAX, "}", 1);
    n = append(out, n, KEY_MAX, ":", 1);
    if (!digest && keylen < room && keylen <= 128) {
        append(out, n, KEY_MAX, key, keylen);
        return;
    }
    uint8_t d[DIGEST_SHA256_LEN];
    digest_sha256(key, keylen, d);
    n = append(out, n, KEY_MAX, "#", 1);
    digest_hex(d, 16, out + n);
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return (h ^ 0xff) * 1099511628211ULL; /* field separator */
}

static bool same_group(const struct group *a, const struct group *b)
{
    return a->hash == b->hash && !strcmp(a->keys[0], b->keys[0]) &&
           !strcmp(a->keys[1], b->keys[1]) && !strcmp(a->rate, b->rate) &&
           !strcmp(a->burst, b->burst) && !strcmp(a->tenant, b->tenant);
}

/* Fills in what identifies the group. */
static void group_init(struct group *gr, struct rl_global *g, const struct config_rate_rule *rule,
                       const char *key, size_t keylen, const char *tenant)
{
    gr->g = g;
    build_key(gr->keys[0], g->prefix, rule->id, g->cluster, rule->key == RL_KEY_HEADER, key,
              keylen);
    size_t n = append(gr->keys[1], 0, KEY_MAX, g->prefix, strlen(g->prefix));
    n = append(gr->keys[1], n, KEY_MAX,
               g->cluster ? "override:{" : "override:", g->cluster ? 10 : 9);
    n = append(gr->keys[1], n, KEY_MAX, rule->id, strlen(rule->id));
    if (g->cluster) {
        append(gr->keys[1], n, KEY_MAX, "}", 1);
        gr->slot = redis_key_slot(gr->keys[0], strlen(gr->keys[0]));
    }
    rate_text(gr->rate, rule->rate);
    u64_text(gr->burst, rule->burst);
    append(gr->tenant, 0, sizeof gr->tenant, tenant ? tenant : "", tenant ? strlen(tenant) : 0);
    uint64_t h = 1469598103934665603ULL;
    h = fnv1a(fnv1a(fnv1a(fnv1a(fnv1a(h, gr->keys[0]), gr->keys[1]), gr->rate), gr->burst),
              gr->tenant);
    gr->hash = h;
}

void *rl_global_decide(struct rl_global *g, const struct config_rate_rule *rule, const char *key,
                       size_t keylen, const char *tenant, rl_global_fn fn, void *arg)
{
    if (!g || g->closing || redis_client_state(g->rc) != REDIS_STATE_CONNECTED)
        return NULL;
    struct group probe; /* most requests join a pending group: built on the stack */
    memset(&probe, 0, offsetof(struct group, keys));
    group_init(&probe, g, rule, key, keylen, tenant);
    struct group **bucket = &g->groups[probe.hash % GROUP_BUCKETS];
    struct group *gr = *bucket;
    while (gr && !same_group(gr, &probe))
        gr = gr->hnext;
    struct waiter *w = calloc(1, sizeof *w);
    if (!gr && w && (gr = malloc(sizeof *gr)) != NULL) { /* a new group */
        memcpy(gr, &probe, sizeof *gr);
        gr->queued_tail = &gr->queued;
        gr->hnext = *bucket;
        *bucket = gr;
    }
    if (!w || !gr) {
        free(w);
        return NULL;
    }
    w->fn = fn;
    w->arg = arg;
    *gr->queued_tail = w;
    gr->queued_tail = &w->next;
    if (!gr->in_flight) /* else group_done() schedules it when that call ends */
        schedule(gr);
    return w;
}

void rl_global_cancel(void *handle)
{
    struct waiter *w = handle;
    if (w) /* freed with its group: a sent decision is charged in Redis either way */
        w->fn = NULL;
}

static void on_beat_reply(redisReply *reply, const char *err, void *arg)
{
    struct rl_global *g = arg;
    if (!err && is_noscript(reply)) {
        g->beat_sha[0] = '\0'; /* next beat sends the body */
        return;
    }
    if (!err && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        atomic_store_explicit(&instances_live, (unsigned)reply->integer, memory_order_relaxed);
}

static void beat(evutil_socket_t fd, short what, void *arg)
{
    struct rl_global *g = arg;
    if (redis_client_state(g->rc) != REDIS_STATE_CONNECTED)
        return; /* keep the last N during the outage */
    char key[KEY_MAX], live[24];
    snprintf(key, sizeof key, "%sinstances", g->prefix);
    snprintf(live, sizeof live, "%llu", (unsigned long long)(g->heartbeat_ms * LIVENESS_BEATS));
    bool have_sha = g->beat_sha[0] != '\0';
    const char *argv[] = {have_sha ? "EVALSHA" : "EVAL",
                          have_sha ? g->beat_sha : RL_HEARTBEAT_SCRIPT,
                          "1",
                          key,
                          g->instance_id,
                          live};
    size_t lens[6];
    for (int i = 0; i < 6; i++)
        lens[i] = strlen(argv[i]);
    redis_command_key(g->rc, key, lens[3], on_beat_reply, g, 6, argv, lens);
    if (!have_sha)
        sha1_hex(RL_HEARTBEAT_SCRIPT, g->beat_sha);
}

void rl_global_leave(struct rl_global *g)
{
    if (!g || !g->beat || redis_client_state(g->rc) != REDIS_STATE_CONNECTED)
        return;
    char key[KEY_MAX];
    snprintf(key, sizeof key, "%sinstances", g->prefix);
    const char *argv[] = {"ZREM", key, g->instance_id};
    size_t lens[] = {4, strlen(key), strlen(g->instance_id)};
    redis_command_key(g->rc, key, lens[1], NULL, NULL, 3, argv, lens);
    event_del(g->beat); /* no beat may re-add us while draining */
}

static int start_heartbeat(struct rl_global *g)
{
    unsigned char rnd[6];
    char host[64] = "moat";
    gethostname(host, sizeof host - 1);
    RAND_bytes(rnd, sizeof rnd);
    snprintf(g->instance_id, sizeof g->instance_id, "%.32s:%d:%02x%02x%02x%02x%02x%02x", host,
             (int)getpid(), rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    g->beat = event_new(g->svc->base, -1, EV_PERSIST, beat, g);
    if (!g->beat)
        return -1;
    struct timeval tv = {(time_t)(g->heartbeat_ms / 1000),
                         (suseconds_t)(g->heartbeat_ms % 1000) * 1000};
    return event_add(g->beat, &tv);
}

/* Cluster mode: this client's redirects and maps, next to the sessions client's. */
static void on_cluster(enum redis_cluster_event ev, void *arg)
{
    struct rl_global *g = arg;
    if (ev == REDIS_CLUSTER_MOVED)
        metrics_inc(g->svc->metrics, M_REDIS_CLUSTER_MOVED);
    else if (ev == REDIS_CLUSTER_ASK)
        metrics_inc(g->svc->metrics, M_REDIS_CLUSTER_ASK);
    else
        metrics_inc(g->svc->metrics, M_REDIS_CLUSTER_REFRESHES);
}

static void on_state(enum redis_state st, void *arg)
{
    struct rl_global *g = arg;
    metrics_redis_connected(g->svc->metrics, RR_RATELIMIT, st == REDIS_STATE_CONNECTED);
}

static void on_latency(uint64_t us, void *arg)
{
    struct rl_global *g = arg;
    metrics_redis_latency(g->svc->metrics, RR_RATELIMIT, us);
}

struct rl_global *rl_global_new(struct services *svc, const struct config *cfg,
                                const struct redis_options *o, char *err, size_t errlen)
{
    struct rl_global *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->svc = svc;
    g->prefix = strdup(cfg->ratelimit.key_prefix);
    g->heartbeat_ms = cfg->ratelimit.heartbeat_ms ? cfg->ratelimit.heartbeat_ms : 1000;
    g->cluster = cfg->redis.mode == REDIS_MODE_CLUSTER;
    g->out_tail = &g->out;
    g->flush = event_new(svc->base, -1, 0, rl_flush, g);
    sha1_hex(RL_GCRA_SCRIPT, g->gcra_sha);
    struct redis_options opt = *o;
    opt.timeout_ms = cfg->ratelimit.redis_timeout_ms;
    opt.client_name = "moat-ratelimit";
    g->rc = g->prefix && g->flush ? redis_client_new(svc->base, &opt, err, errlen) : NULL;
    if (!g->rc || (svc->worker_id == 0 && start_heartbeat(g) < 0)) {
        rl_global_free(g);
        return NULL;
    }
    redis_client_on_cluster(g->rc, on_cluster, g);
    redis_client_on_state(g->rc, on_state, g);
    redis_client_on_latency(g->rc, on_latency, g);
    metrics_redis_client(svc->metrics, RR_RATELIMIT, true);
    return g;
}

void rl_global_free(struct rl_global *g)
{
    if (!g)
        return;
    g->closing = true; /* verdicts below may lead to new decisions: refused now */
    if (g->beat)
        event_free(g->beat);
    redis_client_free(g->rc); /* calls in flight end with an error */
    metrics_redis_client(g->svc->metrics, RR_RATELIMIT, false);
    while (g->out) { /* never sent: they fail the same way */
        struct group *gr = g->out;
        g->out = gr->next_out;
        table_remove(gr);
        deliver(gr->queued, NULL, 0);
        free(gr);
    }
    if (g->flush)
        event_free(g->flush);
    free(g->prefix);
    free(g);
}
