#include "policy/pipeline.h"

#include "policy/auth.h"
#include "policy/client_ip.h"
#include "policy/identity.h"
#include "policy/request_limits.h"
#include "upstream/proxy.h"
#include "policy/ratelimit.h"
#include "http/request.h"
#include "policy/route.h"
#include "policy/trace.h"

/* The phases of DESIGN.md, in order. A new policy is one line here. */
static const struct phase {
    const char *name;
    phase_fn fn;
} phases[] = {
    {"client_ip", client_ip_phase}, /* no I/O, no events: whom every later line is about */
    {"trace", trace_phase},         /* before any phase that audits: events carry the trace id */
    {"limits", limits_phase},
    {"route", route_phase}, /* before the IP limits: rules are per route; no I/O here */
    {"ratelimit_ip", ratelimit_ip_phase},
    {"auth", auth_phase},
    {"ratelimit", ratelimit_identity_phase},
    {"tenant", route_tenant_phase},
    {"identity", identity_phase},
};

#define NUM_PHASES (sizeof phases / sizeof *phases)

/*
 * A phase that suspends is done from the pipeline's point of view: its
 * completion either answers the request itself or calls pipeline_resume(),
 * which goes on with the next phase.
 */
void pipeline_run(struct request *r)
{
    while (r->phase < NUM_PHASES) {
        enum phase_result res = phases[r->phase].fn(r);
        if (res == PHASE_RESPOND)
            return; /* r may be gone: the response ended the exchange */
        r->phase++;
        if (res == PHASE_SUSPEND) {
            r->suspended = true;
            return;
        }
    }
    proxy_start(r);
}

void pipeline_resume(struct request *r)
{
    struct stream_hold hold = request_hold(r);
    r->suspended = false;
    pipeline_run(r);
    stream_release(hold);
}
