/*
 * config_yaml: the walk over the libyaml document.
 *
 * Reads the one YAML document, turns libyaml's failures into positioned errors,
 * and walks the nodes along the schema: mappings key by key (unknown keys with a
 * suggestion, duplicates, required keys), sequences, maps of named elements,
 * with a budget on the nodes visited (alias expansion). Values go to
 * config_store.c.
 */
#ifndef MOAT_CONFIG_YAML_H
#define MOAT_CONFIG_YAML_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "config/config_errors.h"

/* YAML nodes visited per load; bounds work and memory under alias expansion. */
#define CONFIG_MAX_NODES 1000000

/*
 * Parses the document in buf into c along config_root_keys. false when nothing
 * more should be checked: a syntax error, a root that is not a mapping, or the
 * node budget spent (cross-checks would only add noise).
 */
bool config_yaml_load(struct config_loader *L, struct config *c, const char *buf, size_t len);

#endif
