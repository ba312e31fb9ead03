/*
 * metrics_registry: the label values that come from the config (route ids,
 * upstream pool names, rate-limit rule ids), each mapped to a slot index for
 * the whole process. Per-worker counters are arrays indexed by slot, so a
 * value keeps its slot across reloads and its counters never go backwards.
 *
 * Slots are assigned on the main thread when a snapshot is built, and never
 * freed: at most METRICS_SLOTS values per dimension, later ones share the
 * slot "other". Readers (the admin listener) see a slot's name before it
 * is counted.
 */
#ifndef MOAT_METRICS_REGISTRY_H
#define MOAT_METRICS_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_SLOTS 256                     /* distinct values per dimension */
#define METRICS_SLOT_OTHER METRICS_SLOTS      /* values past the cap */
#define METRICS_SLOT_NONE (METRICS_SLOTS + 1) /* no route, no pool */
#define METRICS_SLOT_ALL (METRICS_SLOTS + 2)

enum metrics_dim { MD_ROUTE = 0, MD_POOL, MD_RULE, MD_COUNT };

struct config;

/* The slot of name in d (assigned now if new); METRICS_SLOT_OTHER past the cap. */
uint16_t metrics_registry_slot(enum metrics_dim d, const char *name);
/* Slots in use in d (names 0 .. n-1). */
size_t metrics_registry_count(enum metrics_dim d);
/* The label value of a slot: its name, "other" or "none". */
const char *metrics_registry_name(enum metrics_dim d, size_t slot);
/* Fills the metrics_slot of every route, pool and rate-limit rule of cfg. */
void metrics_registry_assign(struct config *cfg);

#endif
