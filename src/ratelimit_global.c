#include "ratelimit_global.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "config.h"
#include "digest.h"
#include "log.h"
#include "ratelimit_script.h"
#include "redis.h"
#include "worker.h"

#define KEY_MAX 512
/* An instance is live while its last beat is younger than this many beats. */
#define LIVENESS_BEATS 3
#define BATCH_BUCKETS 256 /* open batches are few: at most one per key in flight */

static atomic_uint instances_live = 1;

struct rl_global {
    struct worker *w;
    struct redis_client *rc;
    char *prefix;
    char gcra_sha[41];
    char beat_sha[41];
    char instance_id[64];
    uint64_t heartbeat_ms;
    struct event *beat;
    struct batch *batches[BATCH_BUCKETS];
};

/* One request's decision; the handle callers hold. */
struct waiter {
    struct waiter *next;
    rl_global_fn fn; /* NULL once cancelled; a sent one still counts in its batch */
    void *arg;
};

/*
 * The decisions for one Redis key (and tenant, rate, burst): while one EVALSHA
 * for it is in flight, further requests for the key queue here and go as the
 * next call, with n = their number. Under load a hot key costs one round trip
 * per batch instead of one per request, and each request is still decided
 * atomically in Redis, in arrival order. A batch is in the table exactly while
 * its command is in flight.
 */
struct batch {
    struct batch *hnext;
    uint64_t hash;
    struct rl_global *g;
    struct redis_pending *pending;
    bool retried;
    struct waiter *sent, *queued, **queued_tail;
    unsigned nsent;
    char n[16];
    const char *argv[9];
    size_t lens[9];
    char keys[2][KEY_MAX];
    char rate[32], burst[24], tenant[128];
};

static void sha1_hex(const char *s, char out[41])
{
    unsigned char d[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)s, strlen(s), d);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
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

static bool parse_result(const redisReply *r, unsigned n, struct rl_global_result *out,
                         unsigned *allowed)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < RL_REPLY_LEN - 1)
        return false;
    for (size_t i = 0; i < 4; i++)
        if (r->element[i]->type != REDIS_REPLY_INTEGER || r->element[i]->integer < 0)
            return false;
    if (r->element[RL_REPLY_ALLOWED]->integer > n)
        return false;
    *allowed = (unsigned)r->element[RL_REPLY_ALLOWED]->integer;
    out->remaining = (uint64_t)r->element[RL_REPLY_REMAINING]->integer;
    out->retry_after_ms = (uint64_t)r->element[RL_REPLY_RETRY_MS]->integer;
    out->reset_after_ms = (uint64_t)r->element[RL_REPLY_RESET_MS]->integer;
    return true;
}

static void log_unexpected(const redisReply *r)
{
    static _Thread_local struct log_limit lim;
    bool e = r && r->type == REDIS_REPLY_ERROR;
    log_msg_limited(&lim, LOG_ERROR, "ratelimit: unexpected reply from Redis%s%.*s",
                    e ? ": " : "", e ? (int)r->len : 0, e ? r->str : "");
}

static void table_remove(struct batch *b)
{
    struct batch **pp = &b->g->batches[b->hash % BATCH_BUCKETS];
    while (*pp && *pp != b)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = b->hnext;
}

static void on_reply(redisReply *reply, const char *err, void *arg);

/* Moves the live queued waiters into one call. False: nothing was sent (the
 * waiters, if any, are left in b->sent for the caller to fail). */
static bool send_queued(struct batch *b)
{
    struct waiter *w = b->queued, **tail = &b->sent;
    b->queued = NULL;
    b->queued_tail = &b->queued;
    b->sent = NULL;
    b->nsent = 0;
    while (w) { /* cancelled before being sent: they cost nothing */
        struct waiter *next = w->next;
        if (w->fn) {
            *tail = w;
            tail = &w->next;
            b->nsent++;
        } else {
            free(w);
        }
        w = next;
    }
    *tail = NULL;
    if (!b->nsent)
        return false;
    u64_text(b->n, b->nsent);
    b->lens[7] = strlen(b->n);
    b->argv[0] = "EVALSHA";
    b->lens[0] = 7;
    b->argv[1] = b->g->gcra_sha;
    b->lens[1] = 40;
    b->retried = false;
    b->pending = redis_command_argv(b->g->rc, on_reply, b, 9, b->argv, b->lens);
    if (b->pending)
        metrics_inc(&b->g->w->metrics, M_RL_GLOBAL_CALLS);
    return b->pending != NULL;
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

static void on_reply(redisReply *reply, const char *err, void *arg)
{
    struct batch *b = arg;
    b->pending = NULL;
    if (!err && is_noscript(reply) && !b->retried) {
        /* the script cache was flushed: send the body once, which reloads it */
        b->retried = true;
        b->argv[0] = "EVAL";
        b->lens[0] = 4;
        b->argv[1] = RL_GCRA_SCRIPT;
        b->lens[1] = strlen(RL_GCRA_SCRIPT);
        b->pending = redis_command_argv(b->g->rc, on_reply, b, 9, b->argv, b->lens);
        if (b->pending)
            return;
        err = "store unavailable";
    }
    struct rl_global_result res;
    unsigned allowed = 0;
    bool ok = !err && parse_result(reply, b->nsent, &res, &allowed);
    if (!err && !ok)
        log_unexpected(reply);
    struct waiter *done = b->sent, *failed = NULL;
    /* the next batch goes before any verdict runs, so callbacks see a consistent table */
    if (!send_queued(b))
        failed = b->sent;
    bool keep = b->pending != NULL;
    if (!keep)
        table_remove(b);
    deliver(done, ok ? &res : NULL, allowed);
    deliver(failed, NULL, 0);
    if (!keep)
        free(b);
}

/* Header values (API keys: secrets, docs/ratelimit.md "never a raw secret") and keys
 * longer than KEY_MAX allows are replaced by their digest. Prefix and rule id are
 * at most 64 bytes each (config). */
static void build_key(char *out, const char *prefix, const char *rule, bool digest,
                      const char *key, size_t keylen)
{
    size_t plen = strlen(prefix), rlen = strlen(rule);
    size_t room = KEY_MAX - plen - rlen - 2;
    size_t n = append(out, 0, KEY_MAX, prefix, plen);
    n = append(out, n, KEY_MAX, rule, rlen);
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

static bool same_call(const struct batch *a, const struct batch *b)
{
    return a->hash == b->hash && !strcmp(a->keys[0], b->keys[0]) &&
           !strcmp(a->keys[1], b->keys[1]) && !strcmp(a->rate, b->rate) &&
           !strcmp(a->burst, b->burst) && !strcmp(a->tenant, b->tenant);
}

/* Fills in what identifies the call; argv[0..1] and n are set when it is sent. */
static void batch_init(struct batch *b, struct rl_global *g, const struct config_rate_rule *rule,
                       const char *key, size_t keylen, const char *tenant)
{
    b->g = g;
    b->queued_tail = &b->queued;
    build_key(b->keys[0], g->prefix, rule->id, rule->key == RL_KEY_HEADER, key, keylen);
    size_t n = append(b->keys[1], 0, KEY_MAX, g->prefix, strlen(g->prefix));
    n = append(b->keys[1], n, KEY_MAX, "override:", 9);
    append(b->keys[1], n, KEY_MAX, rule->id, strlen(rule->id));
    rate_text(b->rate, rule->rate);
    u64_text(b->burst, rule->burst);
    append(b->tenant, 0, sizeof b->tenant, tenant ? tenant : "", tenant ? strlen(tenant) : 0);
    const char *argv[] = {"2", b->keys[0], b->keys[1], b->rate, b->burst, b->n, b->tenant};
    for (int i = 0; i < 7; i++) {
        b->argv[2 + i] = argv[i];
        b->lens[2 + i] = strlen(argv[i]);
    }
    uint64_t h = 1469598103934665603ULL;
    h = fnv1a(fnv1a(fnv1a(fnv1a(fnv1a(h, b->keys[0]), b->keys[1]), b->rate), b->burst), b->tenant);
    b->hash = h;
}

void *rl_global_decide(struct rl_global *g, const struct config_rate_rule *rule,
                       const char *key, size_t keylen, const char *tenant, rl_global_fn fn,
                       void *arg)
{
    if (!g || redis_client_state(g->rc) != REDIS_STATE_CONNECTED)
        return NULL;
    struct waiter *w = calloc(1, sizeof *w);
    struct batch *b = malloc(sizeof *b);
    if (!w || !b) {
        free(w);
        free(b);
        return NULL;
    }
    memset(b, 0, offsetof(struct batch, keys));
    batch_init(b, g, rule, key, keylen, tenant);
    w->fn = fn;
    w->arg = arg;
    struct batch **bucket = &g->batches[b->hash % BATCH_BUCKETS];
    for (struct batch *o = *bucket; o; o = o->hnext) {
        if (same_call(o, b)) { /* one is in flight: ride the next call */
            free(b);
            *o->queued_tail = w;
            o->queued_tail = &w->next;
            return w;
        }
    }
    b->queued = w;
    b->queued_tail = &w->next;
    if (!send_queued(b)) {
        free(w);
        free(b);
        return NULL;
    }
    b->hnext = *bucket;
    *bucket = b;
    return w;
}

void rl_global_cancel(void *handle)
{
    struct waiter *w = handle;
    if (w) /* freed with its batch: a sent decision is charged in Redis either way */
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
    const char *argv[] = {have_sha ? "EVALSHA" : "EVAL", have_sha ? g->beat_sha : RL_HEARTBEAT_SCRIPT,
                          "1", key, g->instance_id, live};
    size_t lens[6];
    for (int i = 0; i < 6; i++)
        lens[i] = strlen(argv[i]);
    redis_command_argv(g->rc, on_beat_reply, g, 6, argv, lens);
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
    redis_command_argv(g->rc, NULL, NULL, 3, argv, lens);
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
    g->beat = event_new(g->w->base, -1, EV_PERSIST, beat, g);
    if (!g->beat)
        return -1;
    struct timeval tv = {(time_t)(g->heartbeat_ms / 1000),
                         (suseconds_t)(g->heartbeat_ms % 1000) * 1000};
    return event_add(g->beat, &tv);
}

struct rl_global *rl_global_new(struct worker *w, const struct config *cfg,
                                const struct redis_options *o, char *err, size_t errlen)
{
    struct rl_global *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->w = w;
    g->prefix = strdup(cfg->ratelimit.key_prefix);
    g->heartbeat_ms = cfg->ratelimit.heartbeat_ms ? cfg->ratelimit.heartbeat_ms : 1000;
    sha1_hex(RL_GCRA_SCRIPT, g->gcra_sha);
    struct redis_options opt = *o;
    opt.timeout_ms = cfg->ratelimit.redis_timeout_ms;
    opt.client_name = "moat-ratelimit";
    g->rc = g->prefix ? redis_client_new(w->base, &opt, err, errlen) : NULL;
    if (!g->rc || (w->id == 0 && start_heartbeat(g) < 0)) {
        rl_global_free(g);
        return NULL;
    }
    return g;
}

void rl_global_free(struct rl_global *g)
{
    if (!g)
        return;
    if (g->beat)
        event_free(g->beat);
    redis_client_free(g->rc);
    free(g->prefix);
    free(g);
}
