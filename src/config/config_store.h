/*
 * config_store: puts values into a snapshot's fields as the schema rows say.
 *
 * The three walks over a snapshot: defaults (each row's .def, stored as if the
 * YAML had said it), storing one scalar or one list from the YAML (checked
 * against the row: type, bounds, choices, .check), and freeing. Each stored
 * value's position is remembered for later messages (config_errors.h).
 */
#ifndef MOAT_CONFIG_STORE_H
#define MOAT_CONFIG_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config_errors.h"
#include "config/config_schema.h"

/* A scalar's text: from the YAML, or a default (pos.line 0). */
struct config_scalar {
    const char *s;
    size_t len;
    bool plain; /* unquoted: only then can it be null */
    struct config_pos pos;
};

/* A plain empty, "~" or "null" (in YAML's three spellings). */
bool config_scalar_is_null(const struct config_scalar *sc);

/* Stores one scalar for row k into the struct at base; a bad value is reported. */
void config_store_scalar(struct config_loader *L, const struct config_key *k, void *base,
                         const struct config_scalar *sc, const char *path);
/* Replaces a CK_STRS / CK_ADDRS / CK_ADDR_ARRAY list with the valid ones among items. */
void config_store_list(struct config_loader *L, const struct config_key *k, void *base,
                       const struct config_scalar *items, size_t n, struct config_pos pos,
                       const char *path);
void config_store_list_clear(const struct config_key *k, void *base);

/* CK_LIST / CK_MAP: n elements with their defaults; NULL (and reported) on failure. */
char *config_store_elems_alloc(struct config_loader *L, const struct config_key *k, void *base,
                               struct config_pos pos, size_t n);
void config_store_elems_clear(const struct config_key *k, void *base);

/* Applies every default of keys (and their sections) to the struct at base. */
void config_store_defaults(struct config_loader *L, const struct config_key *keys, void *base);
/* Frees what keys stored in the struct at base. */
void config_store_free(const struct config_key *keys, void *base);

#endif
