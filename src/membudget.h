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

struct worker;

/* From the worker's tick (and when it stops): adds its change since the last call. */
void membudget_publish(struct worker *w);
/* The instance's buffered bytes as this worker sees them. */
uint64_t membudget_total(const struct worker *w);
/* True when max (bytes, 0 = no limit) is exceeded: new requests are shed. */
bool membudget_exceeded(const struct worker *w, uint64_t max);

#endif
