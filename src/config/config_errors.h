/*
 * config_errors: what one load found wrong, and where.
 *
 * struct config_loader is the state of one load. Mostly it is the error list:
 * each "file:line:column: key.path: message", kept up to CONFIG_MAX_ERRORS and
 * sorted by position at the end, as HAProxy accumulates errors instead of
 * stopping at the first. It also remembers where in the YAML each stored value
 * came from, so the cross-key checks done after parsing (config_validate.c,
 * config_files.c) still point at the right line and column.
 */
#ifndef MOAT_CONFIG_ERRORS_H
#define MOAT_CONFIG_ERRORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* More than this many errors are counted, not kept: a wrong indent can make hundreds. */
#define CONFIG_MAX_ERRORS 100
/* Longest key path in a message ("routes[3].rate_limit[0].key"); longer ones end in "...". */
#define CONFIG_PATH_MAX 256

struct config_pos {
    int line, column; /* 1-based; 0 = unknown */
};

/* The top of the file: where a check points when nothing better is known. */
#define CONFIG_POS_ROOT ((struct config_pos){1, 1})

struct config_loader_error {
    struct config_pos pos;
    size_t seq;
    char *msg;
};

struct yaml_document_s;
struct config_pos_slot;

struct config_loader {
    const char *name; /* the file name the messages start with */
    size_t dir_len;   /* name's directory part with its '/'; 0: none (the working directory) */
    bool check_files;
    struct yaml_document_s *doc; /* during the YAML walk (config_yaml.c) */
    struct config_loader_error *errs;
    size_t num_errs, cap_errs;
    char **warns; /* in the order found; they do not fail the load */
    size_t num_warns;
    size_t dropped; /* errors beyond CONFIG_MAX_ERRORS */
    size_t nodes;   /* YAML nodes visited, against CONFIG_MAX_NODES */
    bool over_budget;
    bool oom;                    /* an allocation failed: fields may be missing */
    struct config_pos_slot *pos; /* open-addressing table */
    size_t pos_cap, pos_used;
};

void config_loader_init(struct config_loader *L, const char *name, bool check_files);
/* Appends the collected errors, sorted by position, to errs; frees the loader. */
void config_loader_finish(struct config_loader *L, struct config_errors *errs);

/* Records an error at pos (line 0: no position). path may be "" for none. */
void config_loader_error(struct config_loader *L, struct config_pos pos, const char *path,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Records a warning (same form as an error): reported, but the load succeeds. */
void config_loader_warning(struct config_loader *L, struct config_pos pos, const char *path,
                           const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Fails the load with "out of memory" (an allocation failed). */
void config_loader_oom(struct config_loader *L);
/* strdup() that fails the load instead of storing NULL. */
char *config_loader_strdup(struct config_loader *L, const char *s);

/*
 * Where the value stored at field came from (tag 0), or where the mapping whose
 * struct starts at field came from (tag 1). {0,0} if it was never in the YAML.
 */
struct config_pos config_loader_pos(const struct config_loader *L, const void *field, int tag);
void config_loader_remember(struct config_loader *L, const void *field, int tag,
                            struct config_pos pos);
/* Position of a value if it came from the YAML, else of its mapping, else fallback. */
struct config_pos config_pos_of(const struct config_loader *L, const void *field,
                                const void *container, struct config_pos fallback);

/* An error outside a load (the file cannot be read): appended to errs as is. */
void config_errors_add(struct config_errors *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Key paths for messages: "path.name" and "path[i]" into out (CONFIG_PATH_MAX bytes). */
void config_path_join(char *out, const char *path, const char *name);
void config_path_index(char *out, const char *path, size_t i);
/* Writes s quoted for a message: at most ~60 characters, controls shown as '?'. */
const char *config_quote(const char *s, char *buf, size_t len);

#endif
