#include "upstream/upstream_state.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "observe/log.h"
#include "upstream/admission.h"

/* A server whose connect failed is skipped this long (the passive mark). */
#define FAILED_MS 1000

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct server_state *servers;
static struct pool_state *pools;

static struct server_state *server_get(const char *pool, const char *addr)
{
    for (struct server_state *s = servers; s; s = s->next) {
        if (!strcmp(s->pool, pool) && !strcmp(s->addr, addr)) {
            s->refs++;
            return s;
        }
    }
    struct server_state *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    snprintf(s->pool, sizeof s->pool, "%s", pool);
    snprintf(s->addr, sizeof s->addr, "%s", addr);
    s->refs = 1;
    s->next = servers;
    servers = s;
    return s;
}

static void server_put(struct server_state *s)
{
    if (!s || --s->refs > 0)
        return;
    for (struct server_state **pp = &servers; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    free(s);
}

static struct pool_state *pool_get(const char *name)
{
    for (struct pool_state *p = pools; p; p = p->next) {
        if (!strcmp(p->name, name)) {
            p->refs++;
            return p;
        }
    }
    struct pool_state *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    snprintf(p->name, sizeof p->name, "%s", name);
    p->refs = 1;
    p->next = pools;
    pools = p;
    return p;
}

static void pool_put(struct pool_state *p)
{
    if (!p || --p->refs > 0)
        return;
    for (struct pool_state **pp = &pools; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    admission_free(p->admission);
    free(p);
}

static void release_locked(struct upstream_states *us)
{
    for (size_t i = 0; i < us->num_pools; i++) {
        pool_put(us->pools[i]);
        for (size_t k = 0; us->servers[i] && us->servers[i][k]; k++)
            server_put(us->servers[i][k]);
        free(us->servers[i]);
    }
    free(us->pools);
    free(us->servers);
    free(us);
}

static int acquire_pool(struct upstream_states *us, size_t i, const struct config_upstream *u)
{
    us->pools[i] = pool_get(u->name);
    us->servers[i] = calloc(u->num_servers + 1, sizeof *us->servers[i]); /* NULL-ended */
    if (!us->pools[i] || !us->servers[i])
        return -1;
    for (size_t k = 0; k < u->num_servers; k++)
        if (!(us->servers[i][k] = server_get(u->name, u->servers[k].text)))
            return -1;
    return admission_configure(us->pools[i], u);
}

struct upstream_states *upstream_states_acquire(const struct config *cfg)
{
    struct upstream_states *us = calloc(1, sizeof *us);
    if (!us)
        return NULL;
    size_t n = cfg->num_upstreams;
    us->pools = calloc(n ? n : 1, sizeof *us->pools);
    us->servers = calloc(n ? n : 1, sizeof *us->servers);
    pthread_mutex_lock(&registry_lock);
    int rc = us->pools && us->servers ? 0 : -1;
    us->num_pools = n;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = acquire_pool(us, i, &cfg->upstreams[i]);
    if (rc < 0) {
        if (!us->pools || !us->servers)
            us->num_pools = 0;
        release_locked(us);
        us = NULL;
    }
    pthread_mutex_unlock(&registry_lock);
    return us;
}

void upstream_states_release(struct upstream_states *us)
{
    if (!us)
        return;
    pthread_mutex_lock(&registry_lock);
    release_locked(us);
    pthread_mutex_unlock(&registry_lock);
}

enum server_avail server_state_avail(const struct server_state *s, uint64_t now)
{
    if (atomic_load_explicit(&s->draining, memory_order_relaxed))
        return AVAIL_DRAINING;
    if (atomic_load_explicit(&s->check_down, memory_order_relaxed))
        return AVAIL_DOWN;
    if (now < atomic_load_explicit(&s->failed_until, memory_order_relaxed))
        return AVAIL_FAILED;
    if (now < atomic_load_explicit(&s->ejected_until, memory_order_relaxed))
        return AVAIL_EJECTED;
    return AVAIL_UP;
}

const char *server_avail_str(enum server_avail a)
{
    static const char *const names[] = {"up", "ejected", "failed", "down", "draining"};
    return (unsigned)a < sizeof names / sizeof *names ? names[a] : "invalid";
}

unsigned server_state_weight(const struct server_state *s, unsigned weight, uint64_t slow_start_ms,
                             uint64_t now)
{
    if (slow_start_ms == 0)
        return weight;
    uint64_t since = atomic_load_explicit(&s->up_since, memory_order_relaxed);
    uint64_t ej = atomic_load_explicit(&s->ejected_until, memory_order_relaxed);
    if (ej > since)
        since = ej; /* an ejection's end is a comeback too */
    if (since == 0 || now >= since + slow_start_ms)
        return weight;
    if (now <= since)
        return 1;
    /* from a tenth of the weight to all of it: a returning server gets traffic at once */
    uint64_t w =
        ((uint64_t)weight * slow_start_ms + 9ULL * weight * (now - since)) / (10 * slow_start_ms);
    return w < 1 ? 1 : (unsigned)w;
}

void server_state_connect_failed(struct server_state *s, uint64_t now)
{
    atomic_store_explicit(&s->failed_until, now + FAILED_MS, memory_order_relaxed);
}

/* How many of the peers are ejected now. */
static size_t count_ejected(struct server_state *const *peers, uint64_t now, size_t *total)
{
    size_t n = 0, k = 0;
    for (; peers[k]; k++)
        n += now < atomic_load_explicit(&peers[k]->ejected_until, memory_order_relaxed);
    *total = k;
    return n;
}

static bool try_eject(struct server_state *s, const struct config_upstream *u,
                      struct server_state *const *peers, uint64_t now)
{
    size_t total = 0;
    size_t ejected = count_ejected(peers, now, &total);
    /* at most max_ejected_percent of the pool, but always one (a pool of one can eject it:
       the panic threshold then keeps it serving) */
    size_t cap = total * u->outlier.max_ejected_percent / 100;
    if (ejected >= (cap ? cap : 1))
        return false;
    unsigned n = atomic_fetch_add(&s->ejections, 1) + 1;
    uint64_t ms = u->outlier.base_ejection_ms * n;
    if (ms > u->outlier.max_ejection_ms)
        ms = u->outlier.max_ejection_ms;
    atomic_store(&s->ejected_until, now + ms);
    atomic_fetch_add(&s->ejections_total, 1);
    atomic_store(&s->consecutive_errors, 0);
    log_msg(LOG_WARN,
            "upstream %s: server %s ejected for %llu ms (%u errors in a row, ejection %u)", u->name,
            s->addr, (unsigned long long)ms, (unsigned)u->outlier.consecutive_errors, n);
    return true;
}

bool server_state_outcome(struct server_state *s, const struct config_upstream *u,
                          struct server_state *const *peers, bool ok, uint64_t now)
{
    if (u->outlier.consecutive_errors == 0)
        return false;
    if (ok) {
        if (atomic_load_explicit(&s->consecutive_errors, memory_order_relaxed))
            atomic_store_explicit(&s->consecutive_errors, 0, memory_order_relaxed);
        /* healthy for as long again as its last ejection: the multiplier starts over */
        unsigned n = atomic_load_explicit(&s->ejections, memory_order_relaxed);
        uint64_t until = atomic_load_explicit(&s->ejected_until, memory_order_relaxed);
        if (n && now > until + u->outlier.base_ejection_ms * n)
            atomic_store_explicit(&s->ejections, 0, memory_order_relaxed);
        return false;
    }
    if (now < atomic_load(&s->ejected_until))
        return false; /* panic traffic to an ejected server does not extend its ejection */
    unsigned errs = atomic_fetch_add(&s->consecutive_errors, 1) + 1;
    return errs >= u->outlier.consecutive_errors && try_eject(s, u, peers, now);
}

bool server_state_check(struct server_state *s, const struct config_upstream *u,
                        enum check_result res, int status, uint64_t now)
{
    bool passed = res == CHECK_PASSED;
    atomic_store(&s->last_check, (int)res);
    atomic_store(&s->last_check_status, status);
    atomic_store(&s->last_check_at, now);
    atomic_fetch_add(passed ? &s->checks_passed : &s->checks_failed, 1);
    bool down = atomic_load(&s->check_down);
    if (passed == !down) { /* agrees with the current state */
        s->check_streak = 0;
        return false;
    }
    /* the first probe of a server not yet confirmed up decides at once, as HAProxy's
       servers start "up, going down": one failure marks them down */
    bool first = atomic_load(&s->checks_passed) + atomic_load(&s->checks_failed) == 1;
    if (++s->check_streak < (down ? u->health.rise : first ? 1 : u->health.fall))
        return false;
    s->check_streak = 0;
    atomic_store(&s->check_down, !down);
    if (down)
        atomic_store(&s->up_since, now);
    return true;
}

const char *check_result_str(enum check_result r)
{
    static const char *const names[] = {"none",           "passed",  "bad_status",
                                        "connect_failed", "timeout", "invalid_response"};
    return (unsigned)r < sizeof names / sizeof *names ? names[r] : "invalid";
}

/* Moves the budget's window on: the current half becomes the previous one. */
static unsigned budget_slot(struct pool_state *p, const struct config_upstream *u, uint64_t now)
{
    uint64_t half = u->retry.window_ms / 2;
    uint64_t start = atomic_load(&p->window_start);
    uint64_t idx = now / half;
    if (idx != start) {
        if (atomic_compare_exchange_strong(&p->window_start, &start, idx)) {
            unsigned cur = (unsigned)(idx & 1);
            if (idx - start > 1) { /* both halves are stale */
                atomic_store(&p->requests[!cur], 0);
                atomic_store(&p->retries[!cur], 0);
            }
            atomic_store(&p->requests[cur], 0);
            atomic_store(&p->retries[cur], 0);
        }
    }
    return (unsigned)(idx & 1);
}

void pool_state_count_request(struct pool_state *p, const struct config_upstream *u, uint64_t now)
{
    atomic_fetch_add_explicit(&p->requests[budget_slot(p, u, now)], 1, memory_order_relaxed);
}

bool pool_state_take_retry(struct pool_state *p, const struct config_upstream *u, uint64_t now)
{
    unsigned cur = budget_slot(p, u, now);
    uint64_t reqs = atomic_load(&p->requests[0]) + atomic_load(&p->requests[1]);
    uint64_t done = atomic_load(&p->retries[0]) + atomic_load(&p->retries[1]);
    uint64_t allowed = reqs * u->retry.budget_percent / 100;
    if (allowed < u->retry.min_retries)
        allowed = u->retry.min_retries;
    if (done >= allowed) {
        atomic_fetch_add(&p->retries_denied_total, 1);
        return false;
    }
    atomic_fetch_add(&p->retries[cur], 1);
    atomic_fetch_add(&p->retries_total, 1);
    return true;
}
