/*
 * worker_ext: per-worker state of optional modules (the Redis client and the
 * session cache), created with the worker and refreshed when a new snapshot
 * arrives. Keeps worker.c free of module details.
 */
#ifndef MOAT_WORKER_EXT_H
#define MOAT_WORKER_EXT_H

#include <stddef.h>

struct worker;

int worker_ext_init(struct worker *w, char *err, size_t errlen);
void worker_ext_reload(struct worker *w);
/* Drain started: say goodbye where others keep count of us (heartbeat). */
void worker_ext_drain(struct worker *w);
void worker_ext_free(struct worker *w);

#endif
