/*
 * config_keys: the table-driven half of the config loader (internal to config.c).
 *
 * Every key moat accepts is one row of a table (name, type, bounds, default,
 * offsetof() where the value lands), as nginx's ngx_command_t arrays. The same
 * tables drive the three walks over a snapshot: applying defaults, storing what
 * the YAML says, and freeing. A new key is one row; it cannot leak or miss its
 * default.
 *
 * This header also carries the loader context shared with config.c: the error
 * list ("file:line:column: key.path: message", sorted by position at the end)
 * and a registry remembering where in the YAML each stored value came from, so
 * cross-checks done after parsing can still point at the right line and column.
 */
#ifndef MOAT_CONFIG_KEYS_H
#define MOAT_CONFIG_KEYS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "config/config.h"

/* More than this many errors are counted, not kept: a wrong indent can make hundreds. */
#define CONFIG_MAX_ERRORS 100
/* YAML nodes visited per load; bounds work and memory under alias expansion. */
#define CONFIG_MAX_NODES 1000000

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
    CK_REJECT,     /* a key that must not be used; .def is the message */
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
};

struct config_enum {
    const char *name;
    int value;
};

struct config_loader;

struct config_key {
    const char *name;
    enum config_key_type type;
    size_t off;
    size_t off2;
    int64_t min, max;
    const char *def; /* default as written in YAML; lists: a,b */
    unsigned flags;
    const struct config_enum *choices;       /* NULL-name terminated */
    const char *(*check)(const char *value); /* NULL if fine, else the message */
    const struct config_key *keys;           /* section or element members */
    size_t elem_size;                        /* CK_LIST / CK_MAP */
    size_t name_off;                         /* CK_MAP: char * for the element's name */
    size_t pos_off;                          /* CK_POS: int line; int column; */
    /* CK_LIST / CK_MAP: called once per element parsed from a mapping. */
    void (*finish)(struct config_loader *L, void *elem, size_t index, const char *path);
};

struct config_pos {
    int line, column; /* 1-based; 0 = unknown */
};

struct config_loader_error {
    struct config_pos pos;
    size_t seq;
    char *msg;
};

struct config_loader {
    const char *name;
    bool check_files;
    yaml_document_t *doc;
    struct config_loader_error *errs;
    size_t num_errs, cap_errs;
    size_t dropped; /* errors beyond CONFIG_MAX_ERRORS */
    size_t nodes;   /* budget used */
    bool over_budget;
    bool oom;                    /* an allocation failed: fields may be missing */
    struct config_pos_slot *pos; /* open-addressing table */
    size_t pos_cap, pos_used;
};

/* The schema of the whole file. */
extern const struct config_key config_root_keys[];

void config_loader_init(struct config_loader *L, const char *name, bool check_files);
/* Appends the collected errors, sorted by position, to errs; frees the loader. */
void config_loader_finish(struct config_loader *L, struct config_errors *errs);

/* Records an error at pos (line 0: no position). path may be "" for none. */
void config_loader_error(struct config_loader *L, struct config_pos pos, const char *path,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Fails the load with "out of memory" (an allocation failed). */
void config_loader_oom(struct config_loader *L);

/*
 * Where the value stored at field came from (tag 0), or where the mapping whose
 * struct starts at field came from (tag 1). {0,0} if it was never in the YAML.
 */
struct config_pos config_loader_pos(const struct config_loader *L, const void *field, int tag);
void config_loader_remember(struct config_loader *L, const void *field, int tag,
                            struct config_pos pos);
/* 1-based position of a node's start. */
struct config_pos config_node_pos(const yaml_node_t *node);

void config_keys_defaults(struct config_loader *L, const struct config_key *keys, void *base);
/* Stores the mapping node into base following keys; path is the dotted prefix. */
void config_keys_parse(struct config_loader *L, const struct config_key *keys, void *base,
                       yaml_node_t *node, const char *path);
void config_keys_free(const struct config_key *keys, void *base);

/* config_parse_addr() with the reason for a failure (a static string). */
int config_addr_parse(const char *s, struct config_addr *out, const char **why);
/* Writes s quoted for a message: at most ~60 characters, controls shown as '?'. */
const char *config_quote(const char *s, char *buf, size_t len);

#endif
