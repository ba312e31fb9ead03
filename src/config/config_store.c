/*
 * config_store: storing, defaulting and freeing fields by schema row (config_store.h).
 */
#include "config/config_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_value.h"

bool config_scalar_is_null(const struct config_scalar *sc)
{
    return sc->plain && (sc->len == 0 || !strcmp(sc->s, "~") || !strcmp(sc->s, "null") ||
                         !strcmp(sc->s, "Null") || !strcmp(sc->s, "NULL"));
}

static const char *choice_list(const struct config_enum *c, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (; c->name && o < len; c++)
        o += (size_t)snprintf(buf + o, len - o, "%s%s%s", o ? ", " : "", c->name,
                              c->name[strlen(c->name) - 1] == ':' ? "NAME" : "");
    return buf;
}

static void replace_str(void *field, char *s)
{
    free(*(char **)field);
    *(char **)field = s;
}

static void set_enum(struct config_loader *L, const struct config_key *k, void *base,
                     const struct config_scalar *sc, const char *path)
{
    char q[80], list[256];
    for (const struct config_enum *c = k->choices; c->name; c++) {
        size_t n = strlen(c->name);
        bool arg = (k->flags & CK_ARG) && c->name[n - 1] == ':';
        if (arg ? strncmp(sc->s, c->name, n) != 0 : strcmp(sc->s, c->name) != 0)
            continue;
        if (arg) {
            const char *why = k->check ? k->check(sc->s + n) : NULL;
            if (why || !sc->s[n]) {
                config_loader_error(L, sc->pos, path, "invalid value %s: %s",
                                    config_quote(sc->s, q, sizeof q),
                                    why ? why : "a name must follow the ':'");
                return;
            }
        }
        if (k->flags & CK_ARG)
            replace_str((char *)base + k->off2, arg ? config_loader_strdup(L, sc->s + n) : NULL);
        if (k->flags & CK_ENUM_BOOL)
            *(bool *)((char *)base + k->off) = c->value != 0;
        else
            *(int *)((char *)base + k->off) = c->value;
        return;
    }
    config_loader_error(L, sc->pos, path, "invalid value %s: must be one of %s",
                        config_quote(sc->s, q, sizeof q),
                        choice_list(k->choices, list, sizeof list));
}

/* A relative path; log targets' words (stdout, stderr, off) are not files. */
static bool is_relative_file(const char *s)
{
    return *s && *s != '/' && strcmp(s, "stdout") != 0 && strcmp(s, "stderr") != 0 &&
           strcmp(s, "off") != 0;
}

/*
 * The same file whatever directory moat runs in (nginx resolves against its prefix,
 * Caddy against the working directory: both surprise someone); "certs/x.pem" in
 * /etc/moat/moat.yaml is /etc/moat/certs/x.pem.
 */
static char *relative_to_config(struct config_loader *L, const char *s)
{
    size_t n = L->dir_len + strlen(s) + 1;
    char *p = malloc(n);
    if (!p) {
        config_loader_oom(L);
        return NULL;
    }
    snprintf(p, n, "%.*s%s", (int)L->dir_len, L->name, s);
    return p;
}

static void set_string(struct config_loader *L, const struct config_key *k, void *base,
                       const struct config_scalar *sc, const char *path)
{
    char q[80], list[256];
    const char *why = NULL;
    if (config_scalar_is_null(sc)) {
        if (k->flags & CK_NULL)
            replace_str((char *)base + k->off, NULL);
        else
            config_loader_error(L, sc->pos, path, "must not be null");
        return;
    }
    if ((k->flags & CK_NONEMPTY) && sc->len == 0)
        why = "must not be empty";
    else if (k->choices) {
        const struct config_enum *c = k->choices;
        while (c->name && strcmp(c->name, sc->s) != 0)
            c++;
        if (!c->name) {
            config_loader_error(L, sc->pos, path, "invalid value %s: must be one of %s",
                                config_quote(sc->s, q, sizeof q),
                                choice_list(k->choices, list, sizeof list));
            return;
        }
    } else if (k->check)
        why = k->check(sc->s);
    if (why) {
        config_loader_error(L, sc->pos, path, "invalid value %s: %s",
                            config_quote(sc->s, q, sizeof q), why);
        return;
    }
    if ((k->flags & CK_PATH) && is_relative_file(sc->s) && L->dir_len)
        replace_str((char *)base + k->off, relative_to_config(L, sc->s));
    else
        replace_str((char *)base + k->off, config_loader_strdup(L, sc->s));
}

static void set_number(struct config_loader *L, const struct config_key *k, void *base,
                       const struct config_scalar *sc, const char *path)
{
    char q[80];
    void *p = (char *)base + k->off;
    int64_t v;
    if ((k->flags & CK_AUTO) && !strcmp(sc->s, "auto")) {
        *(int *)p = 0;
        return;
    }
    bool bytes = (k->flags & CK_BYTES) != 0;
    if (!config_parse_i64(sc->s, &v) && !(bytes && config_parse_bytes(sc->s, &v))) {
        if (bytes)
            config_loader_error(L, sc->pos, path,
                                "expected a size in bytes (e.g. 65536, 64KiB, 10MB), got %s",
                                config_quote(sc->s, q, sizeof q));
        else
            config_loader_error(L, sc->pos, path, "expected an integer%s, got %s",
                                (k->flags & CK_AUTO) ? " or auto" : "",
                                config_quote(sc->s, q, sizeof q));
        return;
    }
    if (v < k->min || v > k->max) {
        config_loader_error(L, sc->pos, path, "must be between %lld and %lld", (long long)k->min,
                            (long long)k->max);
        return;
    }
    if (k->type == CK_INT)
        *(int *)p = (int)v;
    else if (k->type == CK_SIZE)
        *(size_t *)p = (size_t)v;
    else
        *(uint64_t *)p = (uint64_t)v;
}

static void set_duration(struct config_loader *L, const struct config_key *k, void *base,
                         const struct config_scalar *sc, const char *path)
{
    char q[80], a[32], b[32];
    uint64_t ms;
    if (config_parse_duration(sc->s, &ms) < 0) {
        config_loader_error(L, sc->pos, path,
                            "invalid duration %s: expected a number with a unit ms, s, m or h "
                            "(e.g. 250ms, 10s)",
                            config_quote(sc->s, q, sizeof q));
        return;
    }
    if (ms < (uint64_t)k->min || ms > (uint64_t)k->max) {
        config_loader_error(L, sc->pos, path, "must be between %s and %s",
                            config_format_duration(k->min, a, sizeof a),
                            config_format_duration(k->max, b, sizeof b));
        return;
    }
    *(uint64_t *)((char *)base + k->off) = ms;
}

static void set_rate(struct config_loader *L, const struct config_key *k, void *base,
                     const struct config_scalar *sc, const char *path)
{
    char q[80];
    double r;
    if ((k->flags & CK_ZERO) && !strcmp(sc->s, "0"))
        r = 0;
    else if (config_parse_rate(sc->s, &r) < 0) {
        config_loader_error(L, sc->pos, path,
                            "invalid rate %s: expected N/s, N/m or N/h with N >= 1 (e.g. 100/s)%s",
                            config_quote(sc->s, q, sizeof q), (k->flags & CK_ZERO) ? " or 0" : "");
        return;
    } else if (r > (double)k->max) {
        config_loader_error(L, sc->pos, path, "must be at most %lld/s", (long long)k->max);
        return;
    }
    *(double *)((char *)base + k->off) = r;
    if (k->flags & CK_TEXT)
        replace_str((char *)base + k->off2, config_loader_strdup(L, sc->s));
}

static void set_addr(struct config_loader *L, const struct config_key *k, void *base,
                     const struct config_scalar *sc, const char *path)
{
    char q[80];
    struct config_addr a, *p = (struct config_addr *)((char *)base + k->off);
    const char *why;
    if (config_scalar_is_null(sc) && (k->flags & CK_NULL)) {
        config_addr_clear(p);
        return;
    }
    if (config_addr_parse(sc->s, &a, &why) < 0) {
        config_loader_error(L, sc->pos, path, "invalid address %s: %s",
                            config_quote(sc->s, q, sizeof q), why);
        return;
    }
    config_addr_clear(p);
    *p = a;
}

/* Stores one scalar (from the YAML, or a default when sc->pos.line is 0). */
void config_store_scalar(struct config_loader *L, const struct config_key *k, void *base,
                         const struct config_scalar *sc, const char *path)
{
    bool b;
    switch (k->type) {
    case CK_STR:
        set_string(L, k, base, sc, path);
        break;
    case CK_BOOL:
        if (config_parse_bool(sc->s, &b))
            *(bool *)((char *)base + k->off) = b;
        else {
            char q[80];
            config_loader_error(L, sc->pos, path, "expected true or false, got %s",
                                config_quote(sc->s, q, sizeof q));
        }
        break;
    case CK_INT:
    case CK_SIZE:
    case CK_U64:
        set_number(L, k, base, sc, path);
        break;
    case CK_DURATION:
        set_duration(L, k, base, sc, path);
        break;
    case CK_RATE:
        set_rate(L, k, base, sc, path);
        break;
    case CK_ADDR:
        set_addr(L, k, base, sc, path);
        break;
    case CK_ENUM:
        set_enum(L, k, base, sc, path);
        break;
    default:
        config_loader_error(L, sc->pos, path, "internal error: key type %d is not a scalar",
                            (int)k->type);
        return;
    }
    config_loader_remember(L, (char *)base + k->off, 0, sc->pos);
}

void config_store_list_clear(const struct config_key *k, void *base)
{
    void *p = (char *)base + k->off;
    size_t *count = (size_t *)((char *)base + k->off2);
    if (k->type == CK_STRS) {
        char **v = *(char ***)p;
        for (size_t i = 0; v && i < *count; i++)
            free(v[i]);
        free(v);
        *(char ***)p = NULL;
    } else if (k->type == CK_ADDRS) {
        struct config_addr *v = *(struct config_addr **)p;
        for (size_t i = 0; v && i < *count; i++)
            config_addr_clear(&v[i]);
        free(v);
        *(struct config_addr **)p = NULL;
    } else { /* CK_ADDR_ARRAY */
        for (int64_t i = 0; i < k->max; i++)
            config_addr_clear((struct config_addr *)p + i);
    }
    *count = 0;
}

/* One item of a CK_STRS / CK_ADDRS / CK_ADDR_ARRAY list; false if invalid. */
static bool list_item(struct config_loader *L, const struct config_key *k,
                      const struct config_scalar *sc, const char *path, char **str,
                      struct config_addr *addr)
{
    char q[80];
    const char *why = NULL;
    if (config_scalar_is_null(sc))
        why = "must not be null";
    else if (k->type == CK_STRS) {
        why = k->check ? k->check(sc->s) : NULL;
        if (!why && !(*str = strdup(sc->s)))
            why = "out of memory";
    } else if ((k->flags & CK_WEIGHT ? config_server_parse(sc->s, addr, &why)
                                     : config_addr_parse(sc->s, addr, &why)) == 0)
        return true;
    else {
        config_loader_error(L, sc->pos, path, "invalid address %s: %s",
                            config_quote(sc->s, q, sizeof q), why);
        return false;
    }
    if (why)
        config_loader_error(L, sc->pos, path, "invalid value %s: %s",
                            config_quote(sc->s, q, sizeof q), why);
    return why == NULL;
}

/* Replaces a list with the valid ones among n items; invalid items are reported. */
void config_store_list(struct config_loader *L, const struct config_key *k, void *base,
                       const struct config_scalar *items, size_t n, struct config_pos pos,
                       const char *path)
{
    char sub[CONFIG_PATH_MAX];
    void *p = (char *)base + k->off;
    char **strs = NULL;
    struct config_addr *addrs = NULL;
    size_t m = 0;

    if ((k->flags & CK_NONEMPTY) && n == 0) {
        config_loader_error(L, pos, path, "must not be empty");
        return;
    }
    if (k->type == CK_ADDR_ARRAY && n > (size_t)k->max) {
        config_loader_error(L, pos, path, "at most %lld addresses", (long long)k->max);
        return;
    }
    config_store_list_clear(k, base);
    if ((k->type == CK_STRS && n && !(strs = calloc(n, sizeof *strs))) ||
        (k->type == CK_ADDRS && n && !(addrs = calloc(n, sizeof *addrs)))) {
        config_loader_oom(L);
        return;
    }
    if (k->type == CK_ADDR_ARRAY)
        addrs = p;
    for (size_t i = 0; i < n; i++) {
        config_path_index(sub, path, i);
        if (list_item(L, k, &items[i], sub, strs ? &strs[m] : NULL, addrs ? &addrs[m] : NULL)) {
            config_loader_remember(L, strs ? (void *)&strs[m] : (void *)&addrs[m], 0, items[i].pos);
            m++;
        }
    }
    if (k->type == CK_STRS)
        *(char ***)p = strs;
    else if (k->type == CK_ADDRS)
        *(struct config_addr **)p = addrs;
    *(size_t *)((char *)base + k->off2) = m;
    config_loader_remember(L, p, 0, pos);
}

void config_store_elems_clear(const struct config_key *k, void *base)
{
    char *arr = *(char **)((char *)base + k->off);
    size_t *count = (size_t *)((char *)base + k->off2);
    for (size_t i = 0; arr && i < *count; i++) {
        config_store_free(k->keys, arr + i * k->elem_size);
        if (k->type == CK_MAP)
            free(*(char **)(arr + i * k->elem_size + k->name_off));
    }
    free(arr);
    *(char **)((char *)base + k->off) = NULL;
    *count = 0;
}

/* Allocates n elements with their defaults; NULL (and reported) on failure. */
char *config_store_elems_alloc(struct config_loader *L, const struct config_key *k, void *base,
                               struct config_pos pos, size_t n)
{
    char *arr = n ? calloc(n, k->elem_size) : NULL;
    if (n && !arr) {
        config_loader_oom(L);
        return NULL;
    }
    *(char **)((char *)base + k->off) = arr;
    *(size_t *)((char *)base + k->off2) = n;
    for (size_t i = 0; i < n; i++)
        config_store_defaults(L, k->keys, arr + i * k->elem_size);
    config_loader_remember(L, (char *)base + k->off, 0, pos);
    return arr;
}

void config_store_defaults(struct config_loader *L, const struct config_key *keys, void *base)
{
    for (const struct config_key *k = keys; k->name; k++) {
        if (k->type == CK_SECTION) {
            config_store_defaults(L, k->keys, (char *)base + k->off);
            continue;
        }
        if (!k->def || k->type == CK_REJECT)
            continue;
        if (k->type == CK_STRS || k->type == CK_ADDRS || k->type == CK_ADDR_ARRAY) {
            char buf[256];
            struct config_scalar items[16];
            size_t n = 0;
            snprintf(buf, sizeof buf, "%s", k->def);
            for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && n < 16;
                 t = strtok_r(NULL, ",", &save))
                items[n++] = (struct config_scalar){t, strlen(t), true, {0, 0}};
            config_store_list(L, k, base, items, n, (struct config_pos){0, 0}, k->name);
        } else {
            struct config_scalar sc = {k->def, strlen(k->def), true, {0, 0}};
            config_store_scalar(L, k, base, &sc, k->name);
        }
    }
}

void config_store_free(const struct config_key *keys, void *base)
{
    for (const struct config_key *k = keys; k->name; k++) {
        char *p = (char *)base + k->off;
        switch (k->type) {
        case CK_STR:
            replace_str(p, NULL);
            break;
        case CK_RATE:
            if (k->flags & CK_TEXT)
                replace_str((char *)base + k->off2, NULL);
            break;
        case CK_ENUM:
            if (k->flags & CK_ARG)
                replace_str((char *)base + k->off2, NULL);
            break;
        case CK_ADDR:
            config_addr_clear((struct config_addr *)p);
            break;
        case CK_STRS:
        case CK_ADDRS:
        case CK_ADDR_ARRAY:
            config_store_list_clear(k, base);
            break;
        case CK_SECTION:
            config_store_free(k->keys, p);
            break;
        case CK_LIST:
        case CK_MAP:
            config_store_elems_clear(k, base);
            break;
        default:
            break;
        }
    }
}
