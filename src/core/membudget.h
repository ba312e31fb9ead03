/*
 * membudget: the instance-wide bound on buffered bytes (limits.max_memory,
 * docs/limits.md). Each worker counts its client connections' buffered bytes
 * exactly in its own metrics slot (M_BUFFERED_BYTES, kept by tlsio as the
 * buffers grow and shrink: no shared cache line on that path). The worker's
 * 100 ms tick publishes the change into one process-wide atomic, so a request
 * start reads one shared word that each worker writes ten times a second. What
 * the other workers buffered is seen one tick late at most.
 */
#ifndef MOAT_MEMBUDGET_H
#define MOAT_MEMBUDGET_H

#include <stdbool.h>
#include <stdint.h>

struct evbuffer;
struct worker;

/* From the worker's tick (and when it stops): adds its change since the last call. */
void membudget_publish(struct worker *w);
/* The instance's buffered bytes as this worker sees them. */
uint64_t membudget_total(const struct worker *w);
/* True when max (bytes, 0 = no limit) is exceeded: new requests are shed. */
bool membudget_exceeded(const struct worker *w, uint64_t max);

/*
 * Counts an evbuffer of the worker (e.g. an upstream connection's input and
 * output) into its buffered bytes as it grows and shrinks, from now on (what it
 * holds already is added). membudget_untrack() before freeing it takes out
 * what it still holds: evbuffer_free() runs no callback. -1 if out of memory.
 */
int membudget_track(struct worker *w, struct evbuffer *b);
void membudget_untrack(struct worker *w, struct evbuffer *b);

#endif
