/*
 * ratelimit_table: sharded, bounded, thread-safe table of GCRA states.
 * Contract and policy are in ratelimit_table.h; the math is in gcra.h.
 *
 * Per shard: an array of `cap` entries allocated up front (calloc, so pages
 * are only faulted in as entries are first used), bucket heads for chaining,
 * a doubly linked LRU list (head = most recently used), and a free list.
 * Links are 32-bit indices, NIL-terminated.
 */
#include "policy/ratelimit_table.h"

#include <endian.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define NIL UINT32_MAX
#define ENTRY_DIGEST 0x1 /* key[] holds a 16-byte digest of rule NUL key */
#define DIGEST_LEN 16
#define MIN_KEYS_PER_SHARD 16
#define MAX_KEYS_PER_SHARD ((size_t)1 << 31)

struct rl_entry {
    uint64_t tat;
    uint64_t interval_us;
    uint64_t hash;
    uint32_t chain;      /* next entry in the bucket, or the free list */
    uint32_t prev, next; /* LRU neighbours: prev is more recent */
    uint8_t klen;
    uint8_t flags;
    uint8_t key[RL_TABLE_KEY_INLINE];
};
_Static_assert(sizeof(struct rl_entry) == 96, "rl_entry should stay 96 bytes");

struct rl_shard {
    alignas(64) pthread_mutex_t lock;
    struct rl_entry *entries;
    uint32_t *buckets;
    uint32_t mask; /* buckets - 1 */
    uint32_t cap;
    uint32_t count;
    uint32_t used; /* entries[0..used) have been handed out at least once */
    uint32_t free_head;
    uint32_t lru_head, lru_tail;
    uint64_t evictions;
    uint64_t expired;
};

struct rl_table {
    uint64_t k0, k1; /* SipHash key */
    size_t max_keys;
    unsigned nshards; /* power of two */
    struct rl_shard *shards;
};

/* ---- SipHash-2-4, 128-bit output, incremental (Aumasson & Bernstein) ---- */

struct sip {
    uint64_t v0, v1, v2, v3;
    uint64_t tail; /* pending bytes, little endian */
    size_t len;
};

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static inline void sip_round(struct sip *s)
{
    s->v0 += s->v1;
    s->v1 = ROTL(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = ROTL(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = ROTL(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = ROTL(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = ROTL(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = ROTL(s->v2, 32);
}

static inline void sip_block(struct sip *s, uint64_t m)
{
    s->v3 ^= m;
    sip_round(s);
    sip_round(s);
    s->v0 ^= m;
}

static void sip_init(struct sip *s, uint64_t k0, uint64_t k1)
{
    s->v0 = k0 ^ 0x736f6d6570736575ULL;
    s->v1 = k1 ^ 0x646f72616e646f6dULL ^ 0xee; /* 0xee: 128-bit output variant */
    s->v2 = k0 ^ 0x6c7967656e657261ULL;
    s->v3 = k1 ^ 0x7465646279746573ULL;
    s->tail = 0;
    s->len = 0;
}

static void sip_update(struct sip *s, const void *data, size_t n)
{
    const uint8_t *p = data;
    unsigned fill = s->len & 7;
    s->len += n;
    if (fill) {
        for (; n && fill < 8; n--, fill++)
            s->tail |= (uint64_t)*p++ << (8 * fill);
        if (fill < 8)
            return;
        sip_block(s, s->tail);
        s->tail = 0;
    }
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t m;
        memcpy(&m, p, 8);
        sip_block(s, le64toh(m));
    }
    for (unsigned i = 0; i < n; i++)
        s->tail |= (uint64_t)p[i] << (8 * i);
}

static void sip_final128(struct sip *s, uint64_t out[2])
{
    sip_block(s, s->tail | ((uint64_t)(s->len & 0xff) << 56));
    s->v2 ^= 0xee;
    for (int i = 0; i < 4; i++)
        sip_round(s);
    out[0] = s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
    s->v1 ^= 0xdd;
    for (int i = 0; i < 4; i++)
        sip_round(s);
    out[1] = s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

/* ---- shard internals (caller holds the shard lock) ---- */

static void lru_unlink(struct rl_shard *s, uint32_t i)
{
    struct rl_entry *e = &s->entries[i];
    if (e->prev != NIL)
        s->entries[e->prev].next = e->next;
    else
        s->lru_head = e->next;
    if (e->next != NIL)
        s->entries[e->next].prev = e->prev;
    else
        s->lru_tail = e->prev;
}

static void lru_push_head(struct rl_shard *s, uint32_t i)
{
    struct rl_entry *e = &s->entries[i];
    e->prev = NIL;
    e->next = s->lru_head;
    if (s->lru_head != NIL)
        s->entries[s->lru_head].prev = i;
    else
        s->lru_tail = i;
    s->lru_head = i;
}

static uint32_t shard_find(struct rl_shard *s, uint64_t h, const uint8_t *id, uint8_t klen,
                           uint8_t flags)
{
    for (uint32_t i = s->buckets[h & s->mask]; i != NIL; i = s->entries[i].chain) {
        const struct rl_entry *e = &s->entries[i];
        if (e->hash == h && e->klen == klen && e->flags == flags && memcmp(e->key, id, klen) == 0)
            return i;
    }
    return NIL;
}

/* Unlinks entry i from its bucket and the LRU list and frees it. */
static void shard_remove(struct rl_shard *s, uint32_t i)
{
    struct rl_entry *e = &s->entries[i];
    uint32_t *link = &s->buckets[e->hash & s->mask];
    while (*link != i)
        link = &s->entries[*link].chain;
    *link = e->chain;
    lru_unlink(s, i);
    e->chain = s->free_head;
    s->free_head = i;
    s->count--;
}

/* A free entry index; when the shard is full, frees an idle entry among the
 * least recently used, or else the least recently used one. */
static uint32_t shard_alloc(struct rl_shard *s, uint64_t now)
{
    if (s->free_head == NIL && s->used < s->cap)
        return s->used++;
    if (s->free_head == NIL) {
        uint32_t victim = s->lru_tail;
        uint32_t i = s->lru_tail;
        for (int n = 0; i != NIL && n < RL_TABLE_EVICT_SCAN; n++, i = s->entries[i].prev) {
            if (s->entries[i].tat <= now) {
                victim = i;
                break;
            }
        }
        if (s->entries[victim].tat <= now)
            s->expired++;
        else
            s->evictions++;
        shard_remove(s, victim);
    }
    uint32_t i = s->free_head;
    s->free_head = s->entries[i].chain;
    return i;
}

static uint32_t shard_insert(struct rl_shard *s, uint64_t h, const uint8_t *id, uint8_t klen,
                             uint8_t flags, uint64_t now)
{
    uint32_t i = shard_alloc(s, now);
    struct rl_entry *e = &s->entries[i];
    e->tat = 0;
    e->interval_us = 0;
    e->hash = h;
    e->klen = klen;
    e->flags = flags;
    memcpy(e->key, id, klen);
    uint32_t *head = &s->buckets[h & s->mask];
    e->chain = *head;
    *head = i;
    lru_push_head(s, i);
    s->count++;
    return i;
}

/* ---- public API ---- */

static size_t pow2_ceil(size_t n)
{
    size_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

static int shard_init(struct rl_shard *s, size_t cap)
{
    size_t nb = pow2_ceil(cap < 2 ? 2 : cap);
    memset(s, 0, sizeof(*s));
    s->entries = calloc(cap, sizeof(*s->entries));
    s->buckets = malloc(nb * sizeof(*s->buckets));
    if (!s->entries || !s->buckets)
        goto fail;
    memset(s->buckets, 0xff, nb * sizeof(*s->buckets)); /* all NIL */
    s->mask = (uint32_t)(nb - 1);
    s->cap = (uint32_t)cap;
    s->free_head = s->lru_head = s->lru_tail = NIL;

    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    /* critical sections are tens of ns: spin a little before sleeping */
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
    int rc = pthread_mutex_init(&s->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    if (rc != 0)
        goto fail;
    return 0;
fail:
    free(s->entries);
    free(s->buckets);
    s->entries = NULL;
    s->buckets = NULL;
    return -1;
}

struct rl_table *rl_table_new(size_t max_keys)
{
    if (max_keys == 0)
        return NULL;
    unsigned nshards = 1;
    while (nshards < RL_TABLE_MAX_SHARDS && (size_t)nshards * 2 * MIN_KEYS_PER_SHARD <= max_keys)
        nshards *= 2;
    if (max_keys / nshards + 1 > MAX_KEYS_PER_SHARD)
        return NULL;

    struct rl_table *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    uint64_t key[2];
    if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key))
        goto fail_table;
    t->k0 = key[0];
    t->k1 = key[1];
    t->max_keys = max_keys;
    t->shards = aligned_alloc(alignof(struct rl_shard), nshards * sizeof(struct rl_shard));
    if (!t->shards)
        goto fail_table;
    unsigned n;
    for (n = 0; n < nshards; n++) {
        size_t cap = max_keys / nshards + (n < max_keys % nshards ? 1 : 0);
        if (shard_init(&t->shards[n], cap) != 0)
            goto fail_shards;
    }
    t->nshards = nshards;
    return t;

fail_shards:
    while (n-- > 0) {
        pthread_mutex_destroy(&t->shards[n].lock);
        free(t->shards[n].entries);
        free(t->shards[n].buckets);
    }
    free(t->shards);
fail_table:
    free(t);
    return NULL;
}

void rl_table_free(struct rl_table *t)
{
    if (!t)
        return;
    for (unsigned n = 0; n < t->nshards; n++) {
        pthread_mutex_destroy(&t->shards[n].lock);
        free(t->shards[n].entries);
        free(t->shards[n].buckets);
    }
    free(t->shards);
    explicit_bzero(t, sizeof(*t));
    free(t);
}

struct gcra_result rl_table_decide(struct rl_table *t, const char *rule, const void *key,
                                   size_t keylen, double rate_per_sec, uint64_t burst,
                                   uint64_t now_us)
{
    static const uint8_t nul = 0;
    if (!rule)
        rule = "";
    size_t rlen = strlen(rule);

    struct sip sip;
    uint64_t digest[2];
    sip_init(&sip, t->k0, t->k1);
    sip_update(&sip, rule, rlen);
    sip_update(&sip, &nul, 1);
    sip_update(&sip, key, keylen);
    sip_final128(&sip, digest);
    uint64_t h = digest[0];

    /* the identity compared on lookup: the bytes themselves when short */
    uint8_t inline_id[RL_TABLE_KEY_INLINE];
    const uint8_t *id;
    uint8_t klen, flags;
    if (rlen < RL_TABLE_KEY_INLINE && keylen <= RL_TABLE_KEY_INLINE - rlen - 1) {
        memcpy(inline_id, rule, rlen);
        inline_id[rlen] = 0;
        if (keylen)
            memcpy(inline_id + rlen + 1, key, keylen);
        id = inline_id;
        klen = (uint8_t)(rlen + 1 + keylen);
        flags = 0;
    } else {
        id = (const uint8_t *)digest;
        klen = DIGEST_LEN;
        flags = ENTRY_DIGEST;
    }

    struct rl_shard *s = &t->shards[(h >> 40) & (t->nshards - 1)];
    uint64_t iv = gcra_interval_us(rate_per_sec);
    pthread_mutex_lock(&s->lock);
    uint32_t i = shard_find(s, h, id, klen, flags);
    if (i == NIL) {
        i = shard_insert(s, h, id, klen, flags, now_us);
    } else if (i != s->lru_head) {
        lru_unlink(s, i);
        lru_push_head(s, i);
    }
    struct rl_entry *e = &s->entries[i];
    struct gcra_state st = {e->tat, e->interval_us};
    struct gcra_result r = gcra_decide(&st, now_us, iv, burst, 1);
    e->tat = st.tat;
    e->interval_us = st.interval_us;
    pthread_mutex_unlock(&s->lock);
    return r;
}

size_t rl_table_sweep(struct rl_table *t, uint64_t now_us)
{
    size_t dropped = 0;
    for (unsigned n = 0; n < t->nshards; n++) {
        struct rl_shard *s = &t->shards[n];
        pthread_mutex_lock(&s->lock);
        for (uint32_t i = s->lru_tail; i != NIL;) {
            uint32_t prev = s->entries[i].prev;
            if (s->entries[i].tat <= now_us) {
                shard_remove(s, i);
                s->expired++;
                dropped++;
            }
            i = prev;
        }
        pthread_mutex_unlock(&s->lock);
    }
    return dropped;
}

void rl_table_stats(struct rl_table *t, struct rl_table_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->capacity = t->max_keys;
    for (unsigned n = 0; n < t->nshards; n++) {
        struct rl_shard *s = &t->shards[n];
        pthread_mutex_lock(&s->lock);
        out->size += s->count;
        out->evictions += s->evictions;
        out->expired += s->expired;
        pthread_mutex_unlock(&s->lock);
    }
}

size_t rl_table_size(struct rl_table *t)
{
    struct rl_table_stats st;
    rl_table_stats(t, &st);
    return st.size;
}

uint64_t rl_table_evictions(struct rl_table *t)
{
    struct rl_table_stats st;
    rl_table_stats(t, &st);
    return st.evictions;
}

uint64_t rl_table_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
