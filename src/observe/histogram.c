#include "observe/histogram.h"

#include <event2/buffer.h>

#define S(x) ((uint64_t)((x)*1e6 + 0.5))

const struct hist_bounds hist_bounds_http = {
    {S(.005), S(.01), S(.025), S(.05), S(.1), S(.25), S(.5), S(1), S(2.5), S(5), S(10)}};
const struct hist_bounds hist_bounds_redis = {{S(.0001), S(.00025), S(.0005), S(.001), S(.0025),
                                               S(.005), S(.01), S(.025), S(.05), S(.1), S(.25)}};

void hist_sum_add(struct hist_sum *acc, const struct hist *h)
{
    for (int i = 0; i <= HIST_BOUNDS; i++)
        acc->bucket[i] += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
    acc->sum_us += atomic_load_explicit(&h->sum_us, memory_order_relaxed);
}

uint64_t hist_sum_count(const struct hist_sum *acc)
{
    uint64_t n = 0;
    for (int i = 0; i <= HIST_BOUNDS; i++)
        n += acc->bucket[i];
    return n;
}

/* A bound in seconds as Prometheus clients print it: shortest exact decimal. */
static void put_bound(struct evbuffer *out, uint64_t us)
{
    evbuffer_add_printf(out, "%g", (double)us / 1e6);
}

void hist_render(struct evbuffer *out, const char *name, const char *labels,
                 const struct hist_sum *s, const struct hist_bounds *b)
{
    const char *sep = labels[0] ? "," : "";
    uint64_t cum = 0;
    for (int i = 0; i < HIST_BOUNDS; i++) {
        cum += s->bucket[i];
        evbuffer_add_printf(out, "%s_bucket{%s%sle=\"", name, labels, sep);
        put_bound(out, b->us[i]);
        evbuffer_add_printf(out, "\"} %llu\n", (unsigned long long)cum);
    }
    cum += s->bucket[HIST_BOUNDS];
    evbuffer_add_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                        (unsigned long long)cum);
    const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
    evbuffer_add_printf(out, "%s_sum%s%s%s %.6f\n", name, open, labels, close,
                        (double)s->sum_us / 1e6);
    evbuffer_add_printf(out, "%s_count%s%s%s %llu\n", name, open, labels, close,
                        (unsigned long long)cum);
}
