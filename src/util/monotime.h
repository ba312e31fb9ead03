/*
 * monotime: a cheap monotonic clock in milliseconds for timeouts and ages. The
 * coarse clock (one tick, ~4 ms) is precise enough for them and costs no
 * syscall; it can read a few ms behind libevent's clock, so a timer may fire
 * just before a deadline computed from it.
 */
#ifndef MOAT_MONOTIME_H
#define MOAT_MONOTIME_H

#include <stdint.h>
#include <time.h>

static inline uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#endif
