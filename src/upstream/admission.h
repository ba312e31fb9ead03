/*
 * admission: tenant-fair admission to an upstream pool. A pool may cap the
 * requests in flight on it (admission.max_in_flight, the whole instance) and
 * per tenant (max_in_flight_per_tenant, tenant_limits). A request over its
 * tenant's cap gets 503 at once; a request that finds the pool full waits in a
 * bounded queue served fairly across tenants (round robin between tenants,
 * FIFO within one) and gets 503 + Retry-After when its wait runs out.
 * Anonymous requests count as one tenant per route, or per client IP.
 *
 * A tenant's requests in flight plus queued never exceed its limit (a
 * tenant_limits entry of 0 lifts the cap for that tenant). A pool that never had
 * limits costs two loads per request; limits removed by a reload leave an
 * unlimited admission (requests admitted while unlimited are not counted).
 */
#ifndef MOAT_ADMISSION_H
#define MOAT_ADMISSION_H

#include <stddef.h>

struct admission;
struct pool_state;
struct config_upstream;
struct request;

/*
 * Creates or updates p->admission from u's admission settings (copied: the
 * admission outlives any one config). Called on the main thread when a snapshot
 * is built, under the upstream_state registry lock. 0, or -1 when out of memory.
 */
int admission_configure(struct pool_state *p, const struct config_upstream *u);
void admission_free(struct admission *a);

enum admission_verdict {
    ADMIT_GO,   /* a slot is taken: proxy now */
    ADMIT_WAIT, /* queued: go(r) runs later on r's worker, or r gets 503 */
    ADMIT_SHED, /* answered 503 already: r may be gone */
};

/* r is about to be proxied to r->upstream. */
enum admission_verdict admission_enter(struct request *r, void (*go)(struct request *));
/* r's exchange is over (or abandoned): frees its slot for the next in line. */
void admission_leave(struct request *r);

/* A pool's admission figures now (zeros when a is NULL), for /upstreams and /metrics. */
struct admission_stats {
    unsigned long in_flight, queued;
    unsigned long long admitted_total, queued_total, shed_total, timed_out_total;
};
void admission_stats(const struct admission *a, struct admission_stats *out);
/*
 * Appends the per-tenant Prometheus series of the pools (as[i] named pools[i];
 * NULL ones are skipped): queued and shed by tenant (configured tenants by name,
 * anonymous requests as "anonymous", every other key as "other"), each family's
 * HELP and TYPE once.
 */
struct evbuffer;
void admission_render_metrics_pools(struct evbuffer *out, const struct admission *const *as,
                                    const char *const *pools, size_t n);

#endif
