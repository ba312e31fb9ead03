#include "ratelimit_global.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "config.h"
#include "log.h"
#include "ratelimit_script.h"
#include "redis.h"
#include "worker.h"

#define KEY_MAX 512
/* An instance is live while its last beat is younger than this many beats. */
#define LIVENESS_BEATS 3

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
};

/* One decision in flight: kept so NOSCRIPT can be answered with EVAL. */
struct call {
    struct rl_global *g;
    rl_global_fn fn;
    void *arg;
    struct redis_pending *pending;
    bool retried;
    int argc;
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

unsigned rl_global_instances(void)
{
    unsigned n = atomic_load_explicit(&instances_live, memory_order_relaxed);
    return n ? n : 1;
}

static bool is_noscript(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR && r->len >= 8 && !strncmp(r->str, "NOSCRIPT", 8);
}

static bool parse_result(const redisReply *r, struct rl_global_result *out)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < RL_REPLY_LEN - 1)
        return false;
    for (size_t i = 0; i < 4; i++)
        if (r->element[i]->type != REDIS_REPLY_INTEGER || r->element[i]->integer < 0)
            return false;
    out->allowed = r->element[RL_REPLY_ALLOWED]->integer == 1;
    out->remaining = (uint64_t)r->element[RL_REPLY_REMAINING]->integer;
    out->retry_after_ms = (uint64_t)r->element[RL_REPLY_RETRY_MS]->integer;
    out->reset_after_ms = (uint64_t)r->element[RL_REPLY_RESET_MS]->integer;
    return true;
}

static void on_reply(redisReply *reply, const char *err, void *arg)
{
    struct call *c = arg;
    c->pending = NULL;
    if (!err && is_noscript(reply) && !c->retried) {
        /* the script cache was flushed: send the body once, which reloads it */
        c->retried = true;
        c->argv[0] = "EVAL";
        c->lens[0] = 4;
        c->argv[1] = RL_GCRA_SCRIPT;
        c->lens[1] = strlen(RL_GCRA_SCRIPT);
        c->pending = redis_command_argv(c->g->rc, on_reply, c, c->argc, c->argv, c->lens);
        if (c->pending)
            return;
        err = "store unavailable";
    }
    struct rl_global_result res;
    bool ok = !err && parse_result(reply, &res);
    if (!err && !ok)
        log_msg(LOG_ERROR, "ratelimit: unexpected reply from Redis%s%.*s",
                reply && reply->type == REDIS_REPLY_ERROR ? ": " : "",
                reply && reply->type == REDIS_REPLY_ERROR ? (int)reply->len : 0,
                reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "");
    c->fn(ok ? &res : NULL, c->arg);
    free(c);
}

/* Header values (API keys: secrets, docs/ratelimit.md "never a raw secret") and keys
 * longer than KEY_MAX allows are replaced by their digest. */
static void build_key(char *out, const char *prefix, const char *rule, bool digest,
                      const char *key, size_t keylen)
{
    size_t room = KEY_MAX - strlen(prefix) - strlen(rule) - 2;
    if (!digest && keylen < room && keylen <= 128) {
        snprintf(out, KEY_MAX, "%s%s:%.*s", prefix, rule, (int)keylen, key);
        return;
    }
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)key, keylen, d);
    int n = snprintf(out, KEY_MAX, "%s%s:#", prefix, rule);
    for (int i = 0; i < 16; i++)
        n += snprintf(out + n, (size_t)(KEY_MAX - n), "%02x", d[i]);
}

void *rl_global_decide(struct rl_global *g, const struct config_rate_rule *rule,
                       const char *key, size_t keylen, const char *tenant, rl_global_fn fn,
                       void *arg)
{
    if (!g || redis_client_state(g->rc) != REDIS_STATE_CONNECTED)
        return NULL;
    struct call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->g = g;
    c->fn = fn;
    c->arg = arg;
    build_key(c->keys[0], g->prefix, rule->id, rule->key == RL_KEY_HEADER, key, keylen);
    snprintf(c->keys[1], KEY_MAX, "%soverride:%s", g->prefix, rule->id);
    snprintf(c->rate, sizeof c->rate, "%.17g", rule->rate);
    snprintf(c->burst, sizeof c->burst, "%llu", (unsigned long long)rule->burst);
    snprintf(c->tenant, sizeof c->tenant, "%s", tenant ? tenant : "");
    const char *argv[] = {"EVALSHA", g->gcra_sha, "2", c->keys[0], c->keys[1], c->rate, c->burst,
                          "1", c->tenant};
    c->argc = 9;
    for (int i = 0; i < 9; i++) {
        c->argv[i] = argv[i];
        c->lens[i] = strlen(argv[i]);
    }
    c->pending = redis_command_argv(g->rc, on_reply, c, c->argc, c->argv, c->lens);
    if (!c->pending) {
        free(c);
        return NULL;
    }
    return c;
}

void rl_global_cancel(void *handle)
{
    struct call *c = handle;
    if (!c)
        return;
    redis_cancel(c->pending);
    free(c);
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
