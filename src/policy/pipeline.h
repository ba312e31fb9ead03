/*
 * pipeline: the request phases of DESIGN.md, run in order over each request.
 *
 * A phase returns CONTINUE, RESPOND (it has answered the request itself via
 * request_respond(); the request may be gone) or SUSPEND (it waits for something asynchronous, e.g.
 * Redis; the callback then calls pipeline_resume()). A new policy is a new phase in the table in
 * pipeline.c; phases do not know about each other.
 */
#ifndef MOAT_PIPELINE_H
#define MOAT_PIPELINE_H

struct request;

enum phase_result { PHASE_CONTINUE = 0, PHASE_RESPOND, PHASE_SUSPEND };

typedef enum phase_result (*phase_fn)(struct request *r);

/* Runs phases from r->phase; when all have continued, hands the request to the proxy. */
void pipeline_run(struct request *r);
/* Continues a suspended request (called from the async completion). */
void pipeline_resume(struct request *r);

#endif
