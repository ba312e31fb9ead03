/*
 * gcra: the Generic Cell Rate Algorithm, pure integer math.
 *
 * A limit is (rate, burst). The emission interval T = 1/rate is kept in whole
 * microseconds (gcra_interval_us). The state of one key is its theoretical
 * arrival time (TAT): the instant at which the bucket would be full again.
 * A request of cost c is allowed iff
 *
 *     max(TAT, now) + c*T - burst*T <= now
 *
 * and only an allowed request moves the TAT forward (to max(TAT, now) + c*T);
 * a rejection leaves it where it was, so rejected requests consume nothing.
 * From an idle key exactly `burst` requests of cost 1 pass at one instant, and
 * after that exactly one more passes every T.
 *
 * The state also remembers the interval it was written with. When the rate of
 * a key changes (config reload, tenant override), the outstanding debt
 * TAT - now is rescaled from the old interval to the new one, so the number of
 * requests "owed" is kept and the new rate applies from the next decision.
 *
 * Times are microseconds on any clock that never goes backwards (the local
 * table uses CLOCK_MONOTONIC, the Redis script uses the server's TIME). The
 * same math is written in Lua in ratelimit_script.h; keep the two in step.
 */
#ifndef MOAT_GCRA_H
#define MOAT_GCRA_H

#include <stdbool.h>
#include <stdint.h>

/* Intervals are clamped to [1 us, 2^40 us (about 12.7 days)]: rates above one
 * million per second behave as one million per second, rates of zero, below
 * about one per 12 days, or NaN behave as one per 12.7 days. */
#define GCRA_INTERVAL_MAX_US ((uint64_t)1 << 40)

struct gcra_state {
    uint64_t tat;         /* theoretical arrival time, us; 0 = never seen */
    uint64_t interval_us; /* T the TAT was computed with; 0 = never seen */
};

struct gcra_result {
    bool allowed;
    uint64_t remaining;      /* requests of cost 1 that would still pass now */
    uint64_t retry_after_us; /* 0 if allowed; else the wait until this request would pass */
    uint64_t reset_after_us; /* wait until the bucket is full (the key is idle) again */
};

/* T = 1/rate rounded to the nearest microsecond, clamped as above. The Lua
 * script computes the same value from the same double. */
static inline uint64_t gcra_interval_us(double rate_per_sec)
{
    if (!(rate_per_sec > 0.0))
        return GCRA_INTERVAL_MAX_US;
    double d = 1e6 / rate_per_sec;
    if (d >= (double)GCRA_INTERVAL_MAX_US)
        return GCRA_INTERVAL_MAX_US;
    uint64_t v = (uint64_t)(d + 0.5);
    return v ? v : 1;
}

static inline uint64_t gcra_sat_add(uint64_t a, uint64_t b)
{
    uint64_t r;
    return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

static inline uint64_t gcra_sat_mul(uint64_t a, uint64_t b)
{
    uint64_t r;
    return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

/* The TAT of `st` at `now` expressed with interval `iv`: max(TAT, now), with
 * any debt beyond `now` rescaled (rounded up) if the state was written with a
 * different interval. */
static inline uint64_t gcra_effective_tat(const struct gcra_state *st, uint64_t now, uint64_t iv)
{
    if (st->tat <= now)
        return now;
    uint64_t debt = st->tat - now;
    if (st->interval_us != 0 && st->interval_us != iv) {
        __extension__ unsigned __int128 d = (unsigned __int128)debt * iv;
        d = (d + st->interval_us - 1) / st->interval_us;
        debt = d > UINT64_MAX ? UINT64_MAX : (uint64_t)d;
    }
    return gcra_sat_add(now, debt);
}

/*
 * One decision for a request of `cost` at `now` against limit (iv, burst).
 * `st` is updated in place: the TAT moves only when the request is allowed
 * (or is rewritten, without change of meaning, when the interval changed).
 * burst 0 is treated as 1; a cost above burst can never pass (retry_after_us
 * is then UINT64_MAX).
 */
static inline struct gcra_result gcra_decide(struct gcra_state *st, uint64_t now, uint64_t iv,
                                             uint64_t burst, uint64_t cost)
{
    struct gcra_result r = {0};
    if (iv == 0)
        iv = 1;
    if (burst == 0)
        burst = 1;
    uint64_t tat = gcra_effective_tat(st, now, iv);
    uint64_t window = gcra_sat_mul(burst, iv); /* burst * T */
    uint64_t new_tat = gcra_sat_add(tat, gcra_sat_mul(cost, iv));
    uint64_t allow_at = new_tat > window ? new_tat - window : 0;

    if (cost > burst || allow_at > now) {
        r.allowed = false;
        r.remaining = tat - now <= window ? (window - (tat - now)) / iv : 0; /* 0 when cost 1 */
        r.retry_after_us = cost > burst ? UINT64_MAX : allow_at - now;
        r.reset_after_us = tat - now;
        if (st->interval_us != iv && st->tat > now) {
            st->tat = tat; /* same debt, new unit: not a consumption */
            st->interval_us = iv;
        }
        return r;
    }
    st->tat = new_tat;
    st->interval_us = iv;
    r.allowed = true;
    r.reset_after_us = new_tat - now;
    r.remaining = (window - r.reset_after_us) / iv; /* allowed => reset_after <= window */
    r.retry_after_us = 0;
    return r;
}

#endif
