#include "core/membudget.h"

#include <stdatomic.h>

#include <event2/buffer.h>

#include "observe/metrics.h"
#include "core/worker.h"

static _Atomic uint64_t published; /* the sum of what every worker published */

static uint64_t own(const struct worker *w)
{
    return atomic_load_explicit(&w->metrics.v[M_BUFFERED_BYTES], memory_order_relaxed);
}

/* Single writer (the worker thread): a plain load and store. */
static void add(struct worker *w, uint64_t added, uint64_t deleted)
{
    metrics_add(&w->metrics, M_BUFFERED_BYTES, (int64_t)(added - deleted));
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
    return atomic_load_explicit(&published, memory_order_relaxed) + own(w) - w->buffered_published;
}

bool membudget_exceeded(const struct worker *w, uint64_t max)
{
    return max && membudget_total(w) > max;
}

static void on_change(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
    add(arg, info->n_added, info->n_deleted);
}

int membudget_track(struct worker *w, struct evbuffer *b)
{
    if (!evbuffer_add_cb(b, on_change, w))
        return -1;
    add(w, evbuffer_get_length(b), 0);
    return 0;
}

void membudget_untrack(struct worker *w, struct evbuffer *b)
{
    if (evbuffer_remove_cb(b, on_change, w) == 0)
        add(w, 0, evbuffer_get_length(b));
}
