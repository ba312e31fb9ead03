/*
 * config_errors: the error list and the positions it points at (config_errors.h).
 */
#include "config/config_errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct config_pos_slot {
    uintptr_t key; /* field address * 2 + tag; 0 = empty */
    struct config_pos pos;
};

void config_loader_init(struct config_loader *L, const char *name, bool check_files)
{
    memset(L, 0, sizeof *L);
    L->name = name;
    L->check_files = check_files;
    const char *slash = strrchr(name, '/');
    L->dir_len = slash ? (size_t)(slash - name) + 1 : 0;
}

/* "file:line:column: path: message", printable; NULL when out of memory. */
static char *format_msg(const struct config_loader *L, struct config_pos pos, const char *path,
                        const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    char where[64] = "";
    if (pos.line > 0)
        snprintf(where, sizeof where, ":%d:%d", pos.line, pos.column);
    size_t n = strlen(L->name) + strlen(where) + strlen(path) + strlen(msg) + 8;
    char *full = malloc(n);
    if (!full)
        return NULL;
    snprintf(full, n, "%s%s: %s%s%s", L->name, where, path, *path ? ": " : "", msg);
    for (char *p = full; *p; p++) /* a message may reach a terminal: no escapes */
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return full;
}

void config_loader_warning(struct config_loader *L, struct config_pos pos, const char *path,
                           const char *fmt, ...)
{
    if (L->num_warns >= CONFIG_MAX_ERRORS)
        return; /* a warning lost does not change the result */
    va_list ap;
    va_start(ap, fmt);
    char *full = format_msg(L, pos, path, fmt, ap);
    va_end(ap);
    char **w = full ? realloc(L->warns, (L->num_warns + 1) * sizeof *w) : NULL;
    if (!w) {
        free(full);
        return;
    }
    L->warns = w;
    L->warns[L->num_warns++] = full;
}

void config_loader_error(struct config_loader *L, struct config_pos pos, const char *path,
                         const char *fmt, ...)
{
    if (L->num_errs >= CONFIG_MAX_ERRORS) {
        L->dropped++;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char *full = format_msg(L, pos, path, fmt, ap);
    va_end(ap);
    if (!full) {
        L->dropped++; /* still counted: a load with a lost error must not succeed */
        L->oom = true;
        return;
    }

    if (L->num_errs == L->cap_errs) {
        size_t cap = L->cap_errs ? L->cap_errs * 2 : 8;
        struct config_loader_error *e = realloc(L->errs, cap * sizeof *e);
        if (!e) {
            free(full);
            L->dropped++;
            L->oom = true;
            return;
        }
        L->errs = e;
        L->cap_errs = cap;
    }
    L->errs[L->num_errs] = (struct config_loader_error){pos, L->num_errs, full};
    L->num_errs++;
}

void config_loader_oom(struct config_loader *L)
{
    L->oom = true;
    config_loader_error(L, (struct config_pos){0, 0}, "", "out of memory");
}

/* strdup() that fails the load instead of storing NULL. */
char *config_loader_strdup(struct config_loader *L, const char *s)
{
    char *d = strdup(s);
    if (!d)
        config_loader_oom(L);
    return d;
}

/* Positionless errors (line 0) sort last; the rest by line, column, then report order. */
static int error_cmp(const void *a, const void *b)
{
    const struct config_loader_error *x = a, *y = b;
    long lx = x->pos.line ? x->pos.line : 0x7fffffff, ly = y->pos.line ? y->pos.line : 0x7fffffff;
    if (lx != ly)
        return lx < ly ? -1 : 1;
    if (x->pos.column != y->pos.column)
        return x->pos.column < y->pos.column ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void errors_push(struct config_errors *errs, char *msg)
{
    char **m = realloc(errs->msgs, (errs->count + 1) * sizeof *m);
    if (!m) {
        free(msg);
        return;
    }
    errs->msgs = m;
    errs->msgs[errs->count++] = msg;
}

void config_loader_finish(struct config_loader *L, struct config_errors *errs)
{
    if (L->num_errs)
        qsort(L->errs, L->num_errs, sizeof *L->errs, error_cmp);
    for (size_t i = 0; i < L->num_errs; i++) {
        if (errs)
            errors_push(errs, L->errs[i].msg);
        else
            free(L->errs[i].msg);
    }
    if (L->dropped && errs) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s: %zu more errors not shown", L->name, L->dropped);
        char *m = strdup(buf);
        if (m)
            errors_push(errs, m);
    }
    if (errs) {
        errs->warnings = L->warns;
        errs->num_warnings = L->num_warns;
    } else {
        for (size_t i = 0; i < L->num_warns; i++)
            free(L->warns[i]);
        free(L->warns);
    }
    L->warns = NULL;
    L->num_warns = 0;
    free(L->errs);
    free(L->pos);
    L->errs = NULL;
    L->pos = NULL;
    L->num_errs = L->cap_errs = L->pos_cap = L->pos_used = 0;
}

void config_errors_add(struct config_errors *errs, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    if (!errs)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char *m = strdup(buf);
    if (m)
        errors_push(errs, m);
}

void config_errors_free(struct config_errors *errs)
{
    if (!errs)
        return;
    for (size_t i = 0; i < errs->count; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->count = 0;
    for (size_t i = 0; i < errs->num_warnings; i++)
        free(errs->warnings[i]);
    free(errs->warnings);
    errs->warnings = NULL;
    errs->num_warnings = 0;
}

static size_t pos_hash(uintptr_t k, size_t cap)
{
    uint64_t h = (uint64_t)k * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17) & (cap - 1);
}

void config_loader_remember(struct config_loader *L, const void *field, int tag,
                            struct config_pos pos)
{
    if (pos.line <= 0)
        return;
    uintptr_t key = (uintptr_t)field * 2 + (uintptr_t)(tag & 1);
    if (L->pos_used * 2 >= L->pos_cap) {
        size_t cap = L->pos_cap ? L->pos_cap * 2 : 256;
        struct config_pos_slot *t = calloc(cap, sizeof *t);
        if (!t)
            return; /* positions are only a nicety for messages */
        for (size_t i = 0; i < L->pos_cap; i++) {
            if (!L->pos[i].key)
                continue;
            size_t j = pos_hash(L->pos[i].key, cap);
            while (t[j].key)
                j = (j + 1) & (cap - 1);
            t[j] = L->pos[i];
        }
        free(L->pos);
        L->pos = t;
        L->pos_cap = cap;
    }
    size_t j = pos_hash(key, L->pos_cap);
    while (L->pos[j].key && L->pos[j].key != key)
        j = (j + 1) & (L->pos_cap - 1);
    if (!L->pos[j].key)
        L->pos_used++;
    L->pos[j].key = key;
    L->pos[j].pos = pos;
}

struct config_pos config_loader_pos(const struct config_loader *L, const void *field, int tag)
{
    uintptr_t key = (uintptr_t)field * 2 + (uintptr_t)(tag & 1);
    if (!L->pos_cap)
        return (struct config_pos){0, 0};
    size_t j = pos_hash(key, L->pos_cap);
    while (L->pos[j].key) {
        if (L->pos[j].key == key)
            return L->pos[j].pos;
        j = (j + 1) & (L->pos_cap - 1);
    }
    return (struct config_pos){0, 0};
}

/* Position of a value if it came from the YAML, else of its mapping, else fallback. */
struct config_pos config_pos_of(const struct config_loader *L, const void *field,
                                const void *container, struct config_pos fallback)
{
    struct config_pos p = config_loader_pos(L, field, 0);
    if (p.line == 0 && container)
        p = config_loader_pos(L, container, 1);
    return p.line ? p : fallback;
}

void config_path_join(char *out, const char *path, const char *name)
{
    if (snprintf(out, CONFIG_PATH_MAX, "%s%s%s", path, *path ? "." : "", name) >= CONFIG_PATH_MAX)
        memcpy(out + CONFIG_PATH_MAX - 4, "...", 4); /* a path that long is only for a message */
}

void config_path_index(char *out, const char *path, size_t i)
{
    if (snprintf(out, CONFIG_PATH_MAX, "%s[%zu]", path, i) >= CONFIG_PATH_MAX)
        memcpy(out + CONFIG_PATH_MAX - 4, "...", 4);
}

const char *config_quote(const char *s, char *buf, size_t len)
{
    size_t o = 0;
    if (len < 8)
        return "";
    buf[o++] = '"';
    for (; *s && o < len - 5; s++) /* room left for ..." and the NUL */
        buf[o++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;
    if (*s) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}
