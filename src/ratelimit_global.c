#include "ratelimit_global.h"

#include <stdlib.h>

#include "redis.h"
#include "worker.h"

struct rl_global {
    struct worker *w;
    struct redis_client *rc;
};

struct rl_global *rl_global_new(struct worker *w, struct redis_client *rc)
{
    struct rl_global *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->w = w;
    g->rc = rc;
    return g;
}

void rl_global_free(struct rl_global *g)
{
    free(g);
}
