/*
 * metrics_families: the labelled families of the request path (requests by
 * route, code class and protocol; request and upstream durations; auth
 * results; rate-limit decisions; Redis connections and latency), summed over
 * the per-worker sets at render.
 */
#ifndef MOAT_METRICS_FAMILIES_H
#define MOAT_METRICS_FAMILIES_H

struct evbuffer;
struct metrics;

void metrics_families_render(struct evbuffer *out, struct metrics *const *sets, int n);

#endif
