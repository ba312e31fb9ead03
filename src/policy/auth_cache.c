#include "policy/auth_cache.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "http/request.h"

#define SET_WAYS 8

struct entry {
    uint8_t sha[32];
    bool used;
    enum session_status status;
    uint64_t stored_ms;
    uint64_t expires_ms;
    struct session_identity id;
};

struct auth_cache {
    struct entry *e;
    uint64_t *set_epoch; /* per set: epoch of the last drop of a key that maps there */
    uint64_t clear_epoch;
    size_t num_sets;
    size_t count;
};

/* Process-wide, so that epochs of a cache and of its replacement are ordered. */
static _Atomic uint64_t epoch_counter = 1;

static uint64_t epoch_bump(void)
{
    return atomic_fetch_add_explicit(&epoch_counter, 1, memory_order_relaxed) + 1;
}

uint64_t auth_cache_epoch(const struct auth_cache *c)
{
    (void)c;
    return atomic_load_explicit(&epoch_counter, memory_order_relaxed);
}

struct auth_cache *auth_cache_new(size_t size)
{
    struct auth_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->num_sets = (size + SET_WAYS - 1) / SET_WAYS;
    if (c->num_sets == 0)
        c->num_sets = 1;
    c->e = calloc(c->num_sets * SET_WAYS, sizeof *c->e);
    c->set_epoch = calloc(c->num_sets, sizeof *c->set_epoch);
    if (!c->e || !c->set_epoch) {
        auth_cache_free(c);
        return NULL;
    }
    c->clear_epoch = epoch_bump(); /* lookups started on a previous cache are not stored */
    return c;
}

void auth_cache_free(struct auth_cache *c)
{
    if (!c)
        return;
    free(c->e);
    free(c->set_epoch);
    free(c);
}

/* The key is a SHA-256 output: its bytes are already uniformly spread. */
static size_t set_index(const struct auth_cache *c, const uint8_t sha[32])
{
    uint64_t h;
    memcpy(&h, sha, sizeof h);
    return (size_t)(h % c->num_sets);
}

static struct entry *set_of(struct auth_cache *c, const uint8_t sha[32])
{
    return &c->e[set_index(c, sha) * SET_WAYS];
}

static struct entry *find(struct auth_cache *c, const uint8_t sha[32])
{
    struct entry *set = set_of(c, sha);
    for (int i = 0; i < SET_WAYS; i++)
        if (set[i].used && memcmp(set[i].sha, sha, 32) == 0)
            return &set[i];
    return NULL;
}

enum auth_cache_hit auth_cache_get(struct auth_cache *c, const uint8_t sha[32], uint64_t now_ms,
                                   uint64_t grace_ms, enum session_status *status,
                                   struct session_identity *id)
{
    struct entry *e = find(c, sha);
    if (!e)
        return AUTH_CACHE_MISS;
    enum auth_cache_hit hit = AUTH_CACHE_MISS;
    if (now_ms < e->expires_ms)
        hit = AUTH_CACHE_FRESH;
    else if (e->status == SESSION_OK && now_ms - e->stored_ms <= grace_ms)
        hit = AUTH_CACHE_STALE;
    if (hit == AUTH_CACHE_MISS)
        return hit;
    *status = e->status;
    if (e->status == SESSION_OK)
        *id = e->id;
    else if (e->status == SESSION_INVALID)
        id->invalid_field = e->id.invalid_field; /* for the audit event */
    return hit;
}

bool auth_cache_put(struct auth_cache *c, const uint8_t sha[32], enum session_status status,
                    const struct session_identity *id, uint64_t now_ms, uint64_t ttl_ms,
                    uint64_t since)
{
    if (c->clear_epoch > since || c->set_epoch[set_index(c, sha)] > since)
        return false; /* invalidated while the lookup was in flight: that reply may be stale */
    struct entry *e = find(c, sha);
    if (ttl_ms == 0) {
        /* not cached, but the newer decision still replaces an older one: a
         * revoked session must not stay available to the stale grace */
        if (e) {
            e->used = false;
            c->count--;
        }
        return false;
    }
    if (!e) {
        struct entry *set = set_of(c, sha);
        e = &set[0];
        for (int i = 0; i < SET_WAYS && e->used; i++)
            if (!set[i].used || set[i].stored_ms < e->stored_ms)
                e = &set[i];
        if (!e->used)
            c->count++;
    }
    memcpy(e->sha, sha, 32);
    e->used = true;
    e->status = status;
    e->stored_ms = now_ms;
    e->expires_ms = now_ms + ttl_ms;
    if (status == SESSION_OK && id)
        e->id = *id;
    else
        e->id.invalid_field = id ? id->invalid_field : NULL;
    return true;
}

bool auth_cache_drop(struct auth_cache *c, const uint8_t sha[32])
{
    c->set_epoch[set_index(c, sha)] = epoch_bump();
    struct entry *e = find(c, sha);
    if (!e)
        return false;
    e->used = false;
    c->count--;
    return true;
}

void auth_cache_clear(struct auth_cache *c)
{
    memset(c->e, 0, c->num_sets * SET_WAYS * sizeof *c->e);
    c->count = 0;
    c->clear_epoch = epoch_bump();
}

size_t auth_cache_count(const struct auth_cache *c)
{
    return c->count;
}
