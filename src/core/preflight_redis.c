/*
 * preflight_redis: the Redis checks of moat -t --preflight (preflight.h).
 *
 * Every Redis moat will talk to gets one connection as configured (TLS, AUTH,
 * SELECT: the Redis client's own handshake, driven synchronously on a private event
 * loop), then one probe per command the config needs, each harmless: HGETALL of a
 * random key under the session prefix (empty), EVALSHA of an unknown script
 * (NOSCRIPT: allowed), a script that only asks redis.acl_check_cmd() about the
 * commands the rate-limit scripts call, CLIENT TRACKING ON then OFF, SUBSCRIBE last
 * (the connection is closed after it), ROLE, ASKING, CLUSTER SLOTS, and on each
 * sentinel SENTINEL get-master-addr-by-name and SUBSCRIBE +switch-master. A refusal
 * names the ACL rule to add (conf/redis-acl.conf has them all).
 *
 * Sentinel mode: every sentinel, then the master they name. Cluster mode: every
 * seed (CLUSTER SLOTS), then every master of the map the first answer gave.
 */
#include "core/preflight.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "config/config.h"
#include "core/services.h"
#include "redis/redis.h"

#define NODES_MAX REDIS_CLUSTER_NODES_MAX

/* What the config will ask of Redis. */
struct needs {
    bool sessions;  /* a route with auth optional or required: HGETALL */
    bool push;      /* sessions.push_revocation */
    bool ratelimit; /* a global rate limit */
    bool sentinel, cluster;
    const char *sess_prefix, *rl_prefix;
};

struct conn {
    struct preflight *pf;
    struct redis_client *rc;
    const char *where;
    bool settled; /* connected or down */
};

struct reply {
    bool done;
    bool error_reply; /* text is the server's error; else, when !ok, ours */
    bool ok;          /* a reply that is not an error */
    char text[512];   /* error text, a string / status reply, or what inspect made */
    void (*inspect)(const redisReply *r, struct reply *rep, void *arg);
    void *arg;
};

/* One command to probe and what its refusal means. */
struct probe {
    const char *what;    /* as shown */
    const char *feature; /* who needs it */
    const char *rule;    /* the ACL rule that allows the command */
    const char *keys;    /* its key pattern, or NULL */
    const char *channel; /* its channel pattern, or NULL */
    const char *allowed; /* an error reply that still means allowed ("NOSCRIPT"), or NULL */
    bool required;       /* false: a refusal is a warning */
};

struct node {
    char host[64];
    uint16_t port;
};

/* ---- one connection, driven synchronously ---------------------------------------------- */

static void on_state(enum redis_state st, void *arg)
{
    struct conn *c = arg;
    if (st != REDIS_STATE_CONNECTING)
        c->settled = true;
}

/* Only one attempt (no retry while preflight waits), no name (probed instead). */
static struct redis_options one_shot(struct redis_options o)
{
    o.sentinel = NULL;
    o.cluster = NULL;
    o.timeout_ms = o.connect_timeout_ms = PREFLIGHT_TIMEOUT_MS;
    o.backoff_min_ms = o.backoff_max_ms = 600000;
    o.client_name = NULL;
    o.ping_interval_ms = 0;
    return o;
}

static void describe(const struct redis_options *o, char *buf, size_t len)
{
    int n = snprintf(buf, len, "connect (TCP");
    if (o->tls)
        n += snprintf(buf + n, len - (size_t)n, ", TLS%s", o->tls_verify ? " verified" : "");
    if (o->password_file || o->password_env)
        n += snprintf(buf + n, len - (size_t)n, ", AUTH as %s",
                      o->username ? o->username : "default");
    if (o->database)
        n += snprintf(buf + n, len - (size_t)n, ", SELECT %d", o->database);
    snprintf(buf + n, len - (size_t)n, ")");
}

static int conn_open(struct preflight *pf, struct conn *c, const struct redis_options *o,
                     const char *where)
{
    char what[128], err[300];
    *c = (struct conn){.pf = pf, .where = where};
    describe(o, what, sizeof what);
    c->rc = redis_client_new(pf->base, o, err, sizeof err);
    if (!c->rc) {
        preflight_report(pf, where, what, PF_FAIL, err);
        return -1;
    }
    redis_client_on_state(c->rc, on_state, c);
    preflight_wait(pf, &c->settled);
    if (redis_client_state(c->rc) == REDIS_STATE_CONNECTED) {
        preflight_report(pf, where, what, PF_OK, NULL);
        return 0;
    }
    const char *why =
        *redis_client_last_error(c->rc) ? redis_client_last_error(c->rc) : "timed out";
    snprintf(err, sizeof err, "%s%s", why,
             strstr(why, "SELECT") && strstr(why, "NOPERM") ? " (add +select)" : "");
    preflight_report(pf, where, what, PF_FAIL, err);
    redis_client_free(c->rc);
    c->rc = NULL;
    return -1;
}

static void conn_close(struct conn *c)
{
    redis_client_free(c->rc);
    c->rc = NULL;
}

static void on_reply(redisReply *r, const char *err, void *arg)
{
    struct reply *rep = arg;
    rep->done = true;
    if (err) {
        snprintf(rep->text, sizeof rep->text, "no reply: %s", err);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        rep->error_reply = true;
        snprintf(rep->text, sizeof rep->text, "%.*s", (int)r->len, r->str);
        return;
    }
    rep->ok = true;
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
        snprintf(rep->text, sizeof rep->text, "%.*s", (int)r->len, r->str);
    if (rep->inspect)
        rep->inspect(r, rep, rep->arg);
}

static void command(struct conn *c, struct reply *rep, int argc, const char **argv)
{
    struct redis_pending *p = redis_command_argv(c->rc, on_reply, rep, argc, argv, NULL);
    if (!p) {
        rep->done = true;
        snprintf(rep->text, sizeof rep->text, "not sent: %s",
                 *redis_client_last_error(c->rc) ? redis_client_last_error(c->rc)
                                                 : "the connection is down");
        return;
    }
    if (!preflight_wait(c->pf, &rep->done)) {
        redis_cancel(p);
        snprintf(rep->text, sizeof rep->text, "no reply within %d ms", PREFLIGHT_TIMEOUT_MS);
    }
}

/* Which rule a refusal asks for: the key or channel pattern when the error says so. */
static const char *rule_for(const struct probe *p, const char *err)
{
    if (p->keys && strstr(err, "keys"))
        return p->keys;
    if (p->channel && strstr(err, "channel"))
        return p->channel;
    return p->rule;
}

static bool allowed_error(const struct probe *p, const char *err)
{
    /* a node that does not own the key's slot checked the ACL first */
    return (p->allowed && !strncmp(err, p->allowed, strlen(p->allowed))) ||
           !strncmp(err, "MOVED ", 6) || !strncmp(err, "ASK ", 4);
}

/* Sends argv and reports the probe; rep (may carry an inspect hook) gets the reply.
 * True when the command is allowed. */
static bool probe_run(struct conn *c, const struct probe *p, struct reply *rep, int argc,
                      const char **argv)
{
    char detail[700] = "";
    enum preflight_result res = PF_OK;
    command(c, rep, argc, argv);
    if (rep->error_reply && !allowed_error(p, rep->text)) {
        res = p->required ? PF_FAIL : PF_WARN;
        if (!strncmp(rep->text, "NOPERM", 6))
            snprintf(detail, sizeof detail, "%s (needed by %s: add %s)", rep->text, p->feature,
                     rule_for(p, rep->text));
        else
            snprintf(detail, sizeof detail, "%s (needed by %s)", rep->text, p->feature);
    } else if (!rep->ok && !rep->error_reply) {
        res = PF_FAIL;
        snprintf(detail, sizeof detail, "%s", rep->text);
    }
    char what[200];
    snprintf(what, sizeof what, "%s (%s)", p->what, p->feature);
    preflight_report(c->pf, c->where, what, res, detail);
    return res == PF_OK;
}

/* ---- what a data node must allow ----------------------------------------------------- */

static void random_hex(char *out, size_t bytes)
{
    unsigned char b[32];
    static const char hex[] = "0123456789abcdef";
    if (bytes > sizeof b)
        bytes = sizeof b;
    if (RAND_bytes(b, (int)bytes) != 1)
        memset(b, 0x5a, bytes);
    for (size_t i = 0; i < bytes; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * bytes] = '\0';
}

/* The commands the rate-limit scripts call (ratelimit_script.h) and ZREM at drain:
 * Redis >= 7 checks them against the caller's ACL. Only asks, changes nothing. */
static const char ACL_CHECK_SCRIPT[] =
    "local k, o, i = ARGV[1], ARGV[2], ARGV[3]\n"
    "local cmds = {{'time'}, {'get', k}, {'set', k, '1'}, {'hget', o, 'f'},\n"
    "  {'zadd', i, '1', 'm'}, {'zremrangebyscore', i, '0', '1'}, {'pexpire', i, '1'},\n"
    "  {'zcard', i}, {'zrem', i, 'm'}}\n"
    "local denied = {}\n"
    "for _, c in ipairs(cmds) do\n"
    "  if not redis.acl_check_cmd(unpack(c)) then denied[#denied + 1] = '+' .. c[1] end\n"
    "end\n"
    "return denied\n";

static void inspect_denied(const redisReply *r, struct reply *rep, void *arg)
{
    size_t n = 0;
    rep->text[0] = '\0';
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING)
            n += (size_t)snprintf(rep->text + n, sizeof rep->text - n, "%s%s", n ? " " : "",
                                  r->element[i]->str);
}

static void ratelimit_probes(struct conn *c, const struct needs *n, const char *rnd)
{
    char keys[200], key[300], sha[41], over[300], inst[300];
    snprintf(keys, sizeof keys, "~%s*", n->rl_prefix);
    snprintf(key, sizeof key, "%spreflight:%s", n->rl_prefix, rnd);
    snprintf(over, sizeof over, "%soverride:preflight", n->rl_prefix);
    snprintf(inst, sizeof inst, "%sinstances", n->rl_prefix);
    random_hex(sha, 20);
    struct probe evalsha = {
        "EVALSHA <unknown script>", "global rate limits", "+evalsha", keys, NULL, "NOSCRIPT", true};
    struct reply rep = {0};
    probe_run(c, &evalsha, &rep, 4, (const char *[]){"EVALSHA", sha, "1", key});
    struct probe eval = {"EVAL <a script that only checks the ACL>",
                         "global rate limits after a Redis restart",
                         "+eval",
                         keys,
                         NULL,
                         NULL,
                         true};
    rep = (struct reply){.inspect = inspect_denied};
    if (!probe_run(c, &eval, &rep, 6,
                   (const char *[]){"EVAL", ACL_CHECK_SCRIPT, "0", key, over, inst}))
        return;
    char detail[1024];
    if (rep.text[0])
        snprintf(detail, sizeof detail,
                 "the rate-limit scripts may not call: %s (add them, with %s)", rep.text, keys);
    preflight_report(c->pf, c->where, "the rate-limit scripts' commands (global rate limits)",
                     rep.text[0] ? PF_FAIL : PF_OK, rep.text[0] ? detail : NULL);
}

static void inspect_first(const redisReply *r, struct reply *rep, void *arg)
{
    const redisReply *e = r->type == REDIS_REPLY_ARRAY && r->elements ? r->element[0] : NULL;
    snprintf(rep->text, sizeof rep->text, "%.*s",
             e && e->type == REDIS_REPLY_STRING ? (int)(e->len < 32 ? e->len : 32) : 1,
             e && e->type == REDIS_REPLY_STRING ? e->str : "?");
}

/* Push revocation: tracking on (and off again), then SUBSCRIBE, the last command. */
static void push_probes(struct conn *c, const struct needs *n)
{
    char keys[200], id[32];
    snprintf(keys, sizeof keys, "~%s*", n->sess_prefix);
    snprintf(id, sizeof id, "%lld", redis_client_id(c->rc));
    struct probe track = {"CLIENT TRACKING ON ... BCAST PREFIX",
                          "push revocation",
                          "+client|tracking",
                          NULL,
                          NULL,
                          NULL,
                          true};
    struct reply rep = {0};
    const char *on[] = {"CLIENT", "TRACKING",     "ON",       "BCAST",
                        "PREFIX", n->sess_prefix, "REDIRECT", id};
    if (probe_run(c, &track, &rep, redis_client_id(c->rc) > 0 ? 8 : 6, on)) {
        rep = (struct reply){0};
        command(c, &rep, 3, (const char *[]){"CLIENT", "TRACKING", "OFF"});
    }
    struct probe sub = {"SUBSCRIBE __redis__:invalidate",
                        "push revocation",
                        "+subscribe",
                        NULL,
                        "&__redis__:invalidate",
                        NULL,
                        true};
    rep = (struct reply){0};
    probe_run(c, &sub, &rep, 2, (const char *[]){"SUBSCRIBE", "__redis__:invalidate"});
}

static void data_node(struct preflight *pf, const struct needs *n, const struct redis_options *o,
                      const char *where)
{
    struct conn c;
    if (conn_open(pf, &c, o, where) < 0)
        return;
    char rnd[33], key[300], keys[200];
    random_hex(rnd, 8);
    struct reply rep = {0};
    struct probe setname = {"CLIENT SETNAME",
                            "connection names in CLIENT LIST",
                            "+client|setname",
                            NULL,
                            NULL,
                            NULL,
                            false};
    probe_run(&c, &setname, &rep, 3, (const char *[]){"CLIENT", "SETNAME", "moat-preflight"});
    struct probe id = {"CLIENT ID", "push revocation", "+client|id", NULL, NULL, NULL, n->push};
    rep = (struct reply){0};
    probe_run(&c, &id, &rep, 2, (const char *[]){"CLIENT", "ID"});
    if (n->push || n->cluster) {
        struct probe ping = {"PING", "idle connection checks", "+ping", NULL, NULL, NULL, true};
        rep = (struct reply){0};
        probe_run(&c, &ping, &rep, 1, (const char *[]){"PING"});
    }
    if (n->sessions) {
        snprintf(key, sizeof key, "%spreflight:%s", n->sess_prefix, rnd);
        snprintf(keys, sizeof keys, "~%s*", n->sess_prefix);
        struct probe hg = {"HGETALL", "sessions", "+hgetall", keys, NULL, NULL, true};
        rep = (struct reply){0};
        probe_run(&c, &hg, &rep, 2, (const char *[]){"HGETALL", key});
    }
    if (n->ratelimit)
        ratelimit_probes(&c, n, rnd);
    if (n->sentinel) {
        struct probe role = {"ROLE", "sentinel mode", "+role", NULL, NULL, NULL, true};
        rep = (struct reply){.inspect = inspect_first};
        if (probe_run(&c, &role, &rep, 1, (const char *[]){"ROLE"}) && strcmp(rep.text, "master"))
            preflight_report(pf, where, "is the master", PF_FAIL, rep.text);
    }
    if (n->cluster) {
        struct probe asking = {"ASKING", "cluster -ASK redirects", "+asking", NULL, NULL, NULL,
                               true};
        rep = (struct reply){0};
        probe_run(&c, &asking, &rep, 1, (const char *[]){"ASKING"});
    }
    if (n->push)
        push_probes(&c, n);
    conn_close(&c);
}

/* ---- sentinel and cluster mode --------------------------------------------------------- */

static void inspect_master(const redisReply *r, struct reply *rep, void *arg)
{
    struct node *m = arg;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING &&
        r->element[0]->len < sizeof m->host) {
        snprintf(m->host, sizeof m->host, "%s", r->element[0]->str);
        m->port = (uint16_t)atoi(r->element[1]->str);
        snprintf(rep->text, sizeof rep->text, "%s:%u", m->host, (unsigned)m->port);
    } else {
        snprintf(rep->text, sizeof rep->text, "unknown");
    }
}

/* Each sentinel; *master gets the first master address one of them names. */
static void sentinels(struct preflight *pf, const struct services_redis_opts *ro,
                      struct node *master)
{
    const struct redis_sentinel_options *so = &ro->so;
    for (size_t i = 0; i < so->count; i++) {
        struct redis_options o = {.host = so->addrs[i].host,
                                  .port = so->addrs[i].port,
                                  .username = so->username,
                                  .password_file = so->password_file,
                                  .password_env = so->password_env,
                                  .tls = so->tls,
                                  .tls_ca = so->tls_ca,
                                  .tls_server_name = so->tls_server_name,
                                  .tls_verify = so->tls_verify,
                                  .tls_cert = so->tls_cert,
                                  .tls_key = so->tls_key};
        o = one_shot(o);
        char where[300];
        snprintf(where, sizeof where, "sentinel %s:%u", so->addrs[i].host,
                 (unsigned)so->addrs[i].port);
        struct conn c;
        if (conn_open(pf, &c, &o, where) < 0)
            continue;
        struct node m = {0};
        struct reply rep = {.inspect = inspect_master, .arg = &m};
        struct probe q = {"SENTINEL get-master-addr-by-name",
                          "sentinel mode",
                          "+sentinel|get-master-addr-by-name",
                          NULL,
                          NULL,
                          NULL,
                          true};
        if (probe_run(&c, &q, &rep, 3,
                      (const char *[]){"SENTINEL", "get-master-addr-by-name", so->master_name})) {
            if (!m.port)
                preflight_report(pf, where, "knows the master", PF_FAIL, so->master_name);
            else if (!master->port)
                *master = m;
        }
        struct probe ping = {"PING", "idle connection checks", "+ping", NULL, NULL, NULL, true};
        rep = (struct reply){0};
        probe_run(&c, &ping, &rep, 1, (const char *[]){"PING"});
        struct probe sub = {"SUBSCRIBE +switch-master",
                            "sentinel failover",
                            "+subscribe",
                            NULL,
                            "&+switch-master",
                            NULL,
                            true};
        rep = (struct reply){0};
        probe_run(&c, &sub, &rep, 2, (const char *[]){"SUBSCRIBE", "+switch-master"});
        conn_close(&c);
    }
}

struct slot_map {
    struct node nodes[NODES_MAX];
    size_t count;
};

/* CLUSTER SLOTS: [[start, end, [ip, port, id], replicas...], ...]; the masters. */
static void inspect_slots(const redisReply *r, struct reply *rep, void *arg)
{
    struct slot_map *map = arg;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
            continue;
        const redisReply *ip = e->element[2]->element[0], *port = e->element[2]->element[1];
        if (ip->type != REDIS_REPLY_STRING || ip->len >= sizeof map->nodes[0].host ||
            port->type != REDIS_REPLY_INTEGER)
            continue;
        bool seen = false;
        for (size_t k = 0; k < map->count && !seen; k++)
            seen = map->nodes[k].port == port->integer && !strcmp(map->nodes[k].host, ip->str);
        if (!seen && map->count < NODES_MAX) {
            snprintf(map->nodes[map->count].host, sizeof map->nodes[0].host, "%s", ip->str);
            map->nodes[map->count++].port = (uint16_t)port->integer;
        }
    }
    snprintf(rep->text, sizeof rep->text, "%zu masters", map->count);
}

static void cluster(struct preflight *pf, const struct needs *n,
                    const struct services_redis_opts *ro)
{
    struct slot_map map = {0};
    for (size_t i = 0; i < ro->co.count; i++) {
        struct redis_options o = ro->o;
        o.host = ro->co.seeds[i].host;
        o.port = ro->co.seeds[i].port;
        o = one_shot(o);
        char where[300];
        snprintf(where, sizeof where, "redis seed %s:%u", o.host, (unsigned)o.port);
        struct conn c;
        if (conn_open(pf, &c, &o, where) < 0)
            continue;
        struct slot_map mine = {0};
        struct reply rep = {.inspect = inspect_slots, .arg = &mine};
        struct probe slots = {
            "CLUSTER SLOTS", "cluster mode", "+cluster|slots", NULL, NULL, NULL, true};
        if (probe_run(&c, &slots, &rep, 2, (const char *[]){"CLUSTER", "SLOTS"}) && !map.count)
            map = mine;
        conn_close(&c);
    }
    if (!map.count)
        preflight_report(pf, "redis cluster", "slot map", PF_FAIL, "no seed gave one");
    for (size_t i = 0; i < map.count; i++) {
        struct redis_options o = ro->o;
        o.host = map.nodes[i].host;
        o.port = map.nodes[i].port;
        o = one_shot(o);
        char where[300];
        snprintf(where, sizeof where, "redis master %s:%u", o.host, (unsigned)o.port);
        data_node(pf, n, &o, where);
    }
}

/* ---- the run -------------------------------------------------------------------------- */

static struct needs needs_of(const struct config *cfg)
{
    struct needs n = {.push = cfg->sessions.push_revocation,
                      .sentinel = cfg->redis.mode == REDIS_MODE_SENTINEL,
                      .cluster = cfg->redis.mode == REDIS_MODE_CLUSTER,
                      .sess_prefix = cfg->sessions.key_prefix,
                      .rl_prefix = cfg->ratelimit.key_prefix};
    for (size_t i = 0; i < cfg->num_routes; i++) {
        const struct config_route *r = &cfg->routes[i];
        n.sessions |= r->auth != AUTH_NONE;
        for (size_t k = 0; k < r->num_rate_limits; k++)
            n.ratelimit |= r->rate_limits[k].scope == RL_SCOPE_GLOBAL;
    }
    n.sessions |= n.push;
    return n;
}

void preflight_redis(struct preflight *pf)
{
    if (!pf->cfg->redis_enabled)
        return;
    struct needs n = needs_of(pf->cfg);
    struct services_redis_opts ro;
    services_redis_options(pf->cfg, &ro);
    if (n.cluster) {
        cluster(pf, &n, &ro);
        return;
    }
    char where[400];
    struct redis_options o = one_shot(ro.o);
    if (n.sentinel) {
        struct node m = {0};
        sentinels(pf, &ro, &m);
        if (!m.port) {
            preflight_report(pf, "redis", "master address", PF_FAIL, "no sentinel named it");
            return;
        }
        o.host = m.host;
        o.port = m.port;
        snprintf(where, sizeof where, "redis master %s:%u", m.host, (unsigned)m.port);
    } else {
        snprintf(where, sizeof where, "redis %s", pf->cfg->redis.address.text);
    }
    data_node(pf, &n, &o, where);
}
