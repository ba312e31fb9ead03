/*
 * config_schema: every key moat accepts, one row each.
 *
 * A row says the key's name, its type, where the value lands (offsetof() into
 * the struct of its section), its bounds and its default as written in YAML, as
 * nginx's ngx_command_t arrays. The same rows drive the three walks over a
 * snapshot (config_store.c: applying defaults, storing what the YAML says,
 * freeing), so a new key is one row: it cannot leak or miss its default.
 * docs/architecture.md ("How to add a config key") shows how to add one.
 */
#ifndef MOAT_CONFIG_SCHEMA_H
#define MOAT_CONFIG_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "config/config_errors.h"

enum config_key_type {
    CK_STR,        /* char *; .choices restricts the values, .check validates */
    CK_BOOL,       /* bool: true/false */
    CK_INT,        /* int within [min, max]; CK_AUTO accepts "auto" (stored as 0) */
    CK_SIZE,       /* size_t within [min, max] */
    CK_U64,        /* uint64_t within [min, max] */
    CK_DURATION,   /* uint64_t milliseconds within [min, max]; unit required */
    CK_RATE,       /* double events/s, at most max; CK_TEXT keeps the text at off2 */
    CK_ADDR,       /* struct config_addr */
    CK_ADDRS,      /* struct config_addr * + size_t count at off2 */
    CK_ADDR_ARRAY, /* struct config_addr[max] + size_t count at off2 */
    CK_STRS,       /* char ** + size_t count at off2 */
    CK_ENUM,       /* int (or bool with CK_ENUM_BOOL) from .choices */
    CK_SECTION,    /* nested mapping over the struct at off, .keys */
    CK_LIST,       /* sequence of mappings: elem array at off, count at off2 */
    CK_MAP,        /* mapping name -> mapping: elem array at off, count at off2 */
    CK_REJECT,     /* a key that must not be used; .reject is the message */
};

enum {
    CK_NULL = 1 << 0,      /* a plain null is accepted (NULL / section off / empty list) */
    CK_REQUIRED = 1 << 1,  /* missing key is an error */
    CK_NONEMPTY = 1 << 2,  /* strings and lists must not be empty */
    CK_AUTO = 1 << 3,      /* CK_INT: "auto" -> 0 */
    CK_ZERO = 1 << 4,      /* CK_RATE: a bare 0 means off */
    CK_TEXT = 1 << 5,      /* CK_RATE: store the text as written at off2 */
    CK_PRESENT = 1 << 6,   /* CK_SECTION: bool at off2 set when the section is given */
    CK_ENUM_BOOL = 1 << 7, /* CK_ENUM: store into a bool */
    CK_ARG = 1 << 8,       /* CK_ENUM: a choice ending in ':' stores the rest at off2 */
    CK_POS = 1 << 9,       /* CK_LIST/CK_MAP: elements have int line/column at pos_off */
    CK_WEIGHT = 1 << 10,   /* CK_ADDRS: "address weight=N" accepted (upstream servers) */
    CK_BYTES = 1 << 11,    /* CK_SIZE/CK_U64: a byte count, units accepted (64KiB, 10MB) */
    CK_PATH = 1 << 12,     /* CK_STR: a file path; relative = to the config file's directory */
};

struct config_enum {
    const char *name;
    int value;
};

struct config_key {
    const char *name;
    enum config_key_type type;
    size_t off;
    size_t off2;
    int64_t min, max;
    const char *def; /* default as written in YAML (lists: "a,b"); NULL: zero / none */
    unsigned flags;
    const struct config_enum *choices;       /* NULL-name terminated */
    const char *(*check)(const char *value); /* NULL if fine, else the message */
    const struct config_key *keys;           /* section or element members */
    size_t elem_size;                        /* CK_LIST / CK_MAP */
    size_t name_off;                         /* CK_MAP: char * for the element's name */
    size_t pos_off;                          /* CK_POS: int line; int column; */
    /* CK_LIST / CK_MAP: called once per element parsed from a mapping. */
    void (*finish)(struct config_loader *L, void *elem, size_t index, const char *path);
    const char *reject; /* CK_REJECT: the message */
};

/* The schema of the whole file: rows over struct config, ended by a NULL name. */
extern const struct config_key config_root_keys[];

#endif
