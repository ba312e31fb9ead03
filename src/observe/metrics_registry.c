#include "observe/metrics_registry.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

struct dim {
    char *names[METRICS_SLOTS];
    _Atomic size_t n; /* published after names[n - 1] is written */
};

static struct dim dims[MD_COUNT];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

uint16_t metrics_registry_slot(enum metrics_dim d, const char *name)
{
    struct dim *dm = &dims[d];
    uint16_t slot = METRICS_SLOT_OTHER;
    pthread_mutex_lock(&lock);
    size_t n = atomic_load_explicit(&dm->n, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(dm->names[i], name)) {
            slot = (uint16_t)i;
            goto out;
        }
    }
    if (n < METRICS_SLOTS && (dm->names[n] = strdup(name)) != NULL) {
        slot = (uint16_t)n;
        atomic_store_explicit(&dm->n, n + 1, memory_order_release);
    }
out:
    pthread_mutex_unlock(&lock);
    return slot;
}

size_t metrics_registry_count(enum metrics_dim d)
{
    return atomic_load_explicit(&dims[d].n, memory_order_acquire);
}

const char *metrics_registry_name(enum metrics_dim d, size_t slot)
{
    if (slot < metrics_registry_count(d))
        return dims[d].names[slot];
    return slot == METRICS_SLOT_NONE ? "none" : "other";
}

void metrics_registry_assign(struct config *cfg)
{
    for (size_t i = 0; i < cfg->num_upstreams; i++)
        cfg->upstreams[i].metrics_slot = metrics_registry_slot(MD_POOL, cfg->upstreams[i].name);
    for (size_t i = 0; i < cfg->num_routes; i++) {
        struct config_route *rt = &cfg->routes[i];
        rt->metrics_slot = metrics_registry_slot(MD_ROUTE, rt->id);
        for (size_t j = 0; j < rt->num_rate_limits; j++)
            rt->rate_limits[j].metrics_slot = metrics_registry_slot(MD_RULE, rt->rate_limits[j].id);
    }
}
