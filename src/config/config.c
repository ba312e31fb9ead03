/*
 * config: YAML in, a validated immutable snapshot out (or every error found).
 *
 * The public API (config.h): reads the file, then runs the loader's stages,
 * one file each: defaults and storing (config_store.c) along the schema
 * (config_schema.c) while walking the YAML (config_yaml.c), the checks across
 * keys (config_validate.c) and of the files named (config_files.c), every
 * error collected with its position (config_errors.c). Owns the snapshot's
 * lifetime and the lookups on it.
 */
#include "config/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config_errors.h"
#include "config/config_files.h"
#include "config/config_schema.h"
#include "config/config_store.h"
#include "config/config_validate.h"
#include "config/config_yaml.h"

#define CONFIG_MAX_FILE (16u << 20)

static void config_free(struct config *c)
{
    config_store_free(config_root_keys, c);
    free(c->path);
    free(c);
}

static int tenant_cmp(const void *a, const void *b)
{
    return strcmp(((const struct config_tenant *)a)->name, ((const struct config_tenant *)b)->name);
}

/* After a clean load: resolve "auto", sort tenants for config_find_tenant(). */
static void finalize(struct config *c)
{
    if (c->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
    }
    if (c->num_tenants > 1)
        qsort(c->tenants, c->num_tenants, sizeof *c->tenants, tenant_cmp);
}

static struct config *load_buffer(const char *name, const char *buf, size_t len, bool check,
                                  struct config_errors *errs)
{
    struct config_loader L;
    struct config *c = calloc(1, sizeof *c);
    char *path = strdup(name);

    if (!c || !path) {
        free(c);
        free(path);
        config_errors_add(errs, "%s: out of memory", name);
        return NULL;
    }
    atomic_init(&c->refs, 1);
    c->path = path;
    config_loader_init(&L, c->path, check);
    config_store_defaults(&L, config_root_keys, c);
    if (config_yaml_load(&L, c, buf, len) && !L.oom) { /* after OOM a field may be NULL */
        config_validate(&L, c);
        if (check)
            config_check_files(&L, c);
    }
    bool ok = L.num_errs == 0 && L.dropped == 0;
    if (ok)
        finalize(c);
    config_loader_finish(&L, errs);
    if (!ok) {
        config_free(c);
        return NULL;
    }
    return c;
}

struct config *config_load_string(const char *name, const char *yaml, bool check_files,
                                  struct config_errors *errs)
{
    if (!name)
        name = "<string>";
    if (!yaml) {
        config_errors_add(errs, "%s: no configuration text", name);
        return NULL;
    }
    return load_buffer(name, yaml, strlen(yaml), check_files, errs);
}

/* Reads all of fd (not st_size: /dev/stdin and pipes work too); NULL is reported. */
static char *read_all(int fd, const char *path, size_t *lenp, struct config_errors *errs)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            char *nb = cap < CONFIG_MAX_FILE ? realloc(buf, cap ? cap * 2 : 65536) : NULL;
            if (!nb) {
                config_errors_add(errs, "%s: too large (more than %u bytes) or out of memory", path,
                                  CONFIG_MAX_FILE);
                free(buf);
                return NULL;
            }
            buf = nb;
            cap = cap ? cap * 2 : 65536;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            config_errors_add(errs, "%s: cannot read: %s", path, strerror(errno));
            free(buf);
            return NULL;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    *lenp = len;
    return buf;
}

struct config *config_load(const char *path, struct config_errors *errs)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, &st) < 0)
        config_errors_add(errs, "%s: cannot open: %s", path, strerror(errno));
    else if (S_ISDIR(st.st_mode))
        config_errors_add(errs, "%s: cannot open: %s", path, strerror(EISDIR));
    else
        buf = read_all(fd, path, &len, errs);
    if (fd >= 0)
        close(fd);
    if (!buf)
        return NULL;
    struct config *c = load_buffer(path, buf, len, true, errs);
    free(buf);
    return c;
}

struct config *config_ref(struct config *c)
{
    if (c)
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void config_unref(struct config *c)
{
    if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        config_free(c);
}

const struct config_upstream *config_find_upstream(const struct config *c, const char *name)
{
    for (size_t i = 0; c && name && i < c->num_upstreams; i++)
        if (c->upstreams[i].name && !strcmp(c->upstreams[i].name, name))
            return &c->upstreams[i];
    return NULL;
}

const struct config_tenant *config_find_tenant(const struct config *c, const char *name, size_t len)
{
    size_t lo = 0, hi = c && name ? c->num_tenants : 0;
    while (lo < hi) { /* tenants are sorted by strcmp() order in finalize() */
        size_t mid = lo + (hi - lo) / 2;
        const char *t = c->tenants[mid].name;
        size_t tl = strlen(t);
        int d = memcmp(name, t, len < tl ? len : tl);
        if (d == 0)
            d = len < tl ? -1 : len > tl;
        if (d == 0)
            return &c->tenants[mid];
        if (d < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}
