/*
 * ratelimit_table: the local (per instance) rate-limit state, shared by all
 * worker threads so that a limit does not multiply by the number of workers.
 *
 * One GCRA state (gcra.h) per (rule id, key). The table is split into up to
 * 64 shards, each a fixed-size chained hash + LRU list behind its own mutex;
 * a decision holds one shard lock for a few tens of nanoseconds and never
 * allocates. Shards are chosen by SipHash-2-4 with a random per-table key, so
 * clients cannot aim many keys at one shard or bucket.
 *
 * Memory is fixed at creation: max_keys entries of 96 bytes plus bucket heads
 * (about 100-104 bytes per key in all; entry pages never used are never
 * faulted in).
 * The identity stored per key is "rule id" NUL "key bytes" when that fits in
 * RL_TABLE_KEY_INLINE bytes, otherwise a 128-bit keyed SipHash digest of it.
 *
 * Bounds and expiry:
 *  - A key whose TAT has passed is idle: its bucket is full again, so dropping
 *    it changes no future decision. Idle keys are reused in place, dropped by
 *    rl_table_sweep(), and preferred as victims (counted as "expired").
 *  - When a shard is full, the insert looks at the RL_TABLE_EVICT_SCAN least
 *    recently used entries for an idle one; only if none is idle is the least
 *    recently used entry evicted. Its state is lost (the key starts with a full
 *    bucket next time); these are counted as "evictions". The bound is per
 *    shard (max_keys split evenly), so the total never exceeds max_keys.
 *
 * All functions except rl_table_new/rl_table_free are thread-safe.
 */
#ifndef MOAT_RATELIMIT_TABLE_H
#define MOAT_RATELIMIT_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "policy/gcra.h"

#define RL_TABLE_KEY_INLINE 58 /* rule + NUL + key up to this many bytes is stored as is */
#define RL_TABLE_EVICT_SCAN 8  /* LRU entries examined for an idle victim */
#define RL_TABLE_MAX_SHARDS 64

struct rl_table;

struct rl_table_stats {
    size_t size;        /* keys held now */
    size_t capacity;    /* max_keys */
    uint64_t evictions; /* live keys dropped to make room (state lost) */
    uint64_t expired;   /* idle keys dropped (by sweep or to make room; exact) */
};

/* A table for at most max_keys keys; NULL if max_keys is 0 or too large
 * (more than 2^32 per shard), or on allocation / getrandom failure. */
struct rl_table *rl_table_new(size_t max_keys);
void rl_table_free(struct rl_table *t);

/*
 * One GCRA decision (cost 1) for `key` under rule `rule` (a NUL-terminated
 * rule id; NULL = ""), at `now_us` on a monotonic clock (rl_table_now_us()).
 * rate_per_sec and burst are passed on every call: they come from the config
 * snapshot the request runs on; if they change for a key its outstanding debt
 * is rescaled (see gcra.h). For the Redis-outage fallback of a global rule,
 * pass rate / N and max(1, ceil(burst / N)), N = live instances.
 */
struct gcra_result rl_table_decide(struct rl_table *t, const char *rule, const void *key,
                                   size_t keylen, double rate_per_sec, uint64_t burst,
                                   uint64_t now_us);

/* Drop every idle key (TAT <= now_us). Locks one shard at a time; meant to be
 * called from a timer on the main thread, e.g. once a second. Returns the
 * number of keys dropped. */
size_t rl_table_sweep(struct rl_table *t, uint64_t now_us);

size_t rl_table_size(struct rl_table *t);
uint64_t rl_table_evictions(struct rl_table *t);
void rl_table_stats(struct rl_table *t, struct rl_table_stats *out);

/* CLOCK_MONOTONIC in microseconds: the clock rl_table_decide expects. */
uint64_t rl_table_now_us(void);

#endif
