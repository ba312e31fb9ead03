/*
 * health_check: active health checks of upstream servers (upstreams.NAME.health).
 *
 * One checker per instance, on the main thread's event loop. Each server of a
 * pool with health.path set is probed on its own timer: connect (TLS when the
 * pool has it), "GET <path>", read the status line only, close. The verdict
 * goes to the server's instance-wide state (upstream_state.h), which applies
 * rise/fall; the workers read it when they pick a server. A change is logged
 * once and audited ("upstream_health"), never once per probe.
 *
 * Probing state is kept per struct server_state, so a server that a reload
 * keeps keeps its timer and verdict. Every probe is bounded: one deadline
 * (health.timeout) covers connect, handshake and response, and at most 4 KiB of
 * the response is read.
 */
#ifndef MOAT_HEALTH_CHECK_H
#define MOAT_HEALTH_CHECK_H

struct event_base;
struct snapshot;
struct health_checker;

/* NULL when out of memory. Probes nothing until health_checker_set(). */
struct health_checker *health_checker_new(struct event_base *base);

/*
 * Probes the servers snap names (pools whose health.path is set), taking a
 * reference on snap and releasing the previous one. Servers no longer checked
 * stop being probed (an in-flight probe of theirs is cancelled); those of a
 * pool whose checks were turned off count as up again. Called at start and
 * after each successful reload. A NULL checker (out of memory at start) is a no-op.
 */
void health_checker_set(struct health_checker *hc, struct snapshot *snap);

/* Cancels every probe and timer and releases the snapshot. NULL is a no-op. */
void health_checker_free(struct health_checker *hc);

#endif
