#include "membudget.h"

#include <stdatomic.h>

#include "metrics.h"
#include "worker.h"

static _Atomic uint64_t published; /* the sum of what every worker published */

static uint64_t own(const struct worker *w)
{
    return atomic_load_explicit(&w->metrics.v[M_BUFFERED_BYTES], memory_order_relaxed);
}

void membudget_publish(struct worker *w)
{
    uint64_t now = own(w);
    if (now == w->buffered_published)
        return;
    /* unsigned wrap-around makes a decrease an addition of its complement */
    atomic_fetch_add_explicit(&published, now - w->buffered_published, memory_order_relaxed);
    w->buffered_published = now;
}

uint64_t membudget_total(const struct worker *w)
{
    return atomic_load_explicit(&published, memory_order_relaxed) + own(w) -
           w->buffered_published;
}

bool membudget_exceeded(const struct worker *w, uint64_t max)
{
    return max && membudget_total(w) > max;
}
