/*
 * histogram: Prometheus histograms with fixed buckets, kept per worker (single
 * writer: relaxed loads and stores, no locked instruction) and summed when
 * /metrics is scraped. Each bucket counts only its own observations; the
 * cumulative counts, _count (the +Inf bucket) and _sum are computed at render,
 * so +Inf always equals _count.
 */
#ifndef MOAT_HISTOGRAM_H
#define MOAT_HISTOGRAM_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

struct evbuffer;

#define HIST_BOUNDS 11 /* finite buckets; one more for +Inf */

/* Upper bounds in microseconds, ascending. */
struct hist_bounds {
    uint64_t us[HIST_BOUNDS];
};

/* .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10 s: requests and upstream responses */
extern const struct hist_bounds hist_bounds_http;
/* .0001 .00025 .0005 .001 .0025 .005 .01 .025 .05 .1 .25 s: Redis commands */
extern const struct hist_bounds hist_bounds_redis;

struct hist {
    _Atomic uint64_t bucket[HIST_BOUNDS + 1]; /* not cumulative; [HIST_BOUNDS]: above the last */
    _Atomic uint64_t sum_us;
};

/* A histogram summed over workers, for rendering. */
struct hist_sum {
    uint64_t bucket[HIST_BOUNDS + 1];
    uint64_t sum_us;
};

static inline void hist_bump(_Atomic uint64_t *p, uint64_t d)
{
    uint64_t cur = atomic_load_explicit(p, memory_order_relaxed);
    atomic_store_explicit(p, cur + d, memory_order_relaxed);
}

/* Records one observation of us microseconds (le semantics: v <= bound). */
static inline void hist_observe(struct hist *h, const struct hist_bounds *b, uint64_t us)
{
    int i = 0;
    while (i < HIST_BOUNDS && us > b->us[i])
        i++;
    hist_bump(&h->bucket[i], 1);
    hist_bump(&h->sum_us, us);
}

/* Microseconds from a to b (CLOCK_MONOTONIC), 0 if b is before a. */
static inline uint64_t hist_us_between(const struct timespec *a, const struct timespec *b)
{
    int64_t us = (int64_t)(b->tv_sec - a->tv_sec) * 1000000 + (b->tv_nsec - a->tv_nsec) / 1000;
    return us > 0 ? (uint64_t)us : 0;
}

/* Adds one worker's histogram to acc. */
void hist_sum_add(struct hist_sum *acc, const struct hist *h);
/* Observations in acc: the +Inf bucket and _count. */
uint64_t hist_sum_count(const struct hist_sum *acc);
/*
 * Writes the _bucket, _sum and _count series of name (without HELP/TYPE).
 * labels: label pairs already escaped, as `a="x",b="y"`, or "" for none.
 */
void hist_render(struct evbuffer *out, const char *name, const char *labels,
                 const struct hist_sum *s, const struct hist_bounds *b);

#endif
