#include "core/listener_set.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/config.h"
#include "core/listener.h"

#define MAX_ADDRS (2 * CONFIG_MAX_LISTEN)

static struct lset_addr *find(const struct lset_addr *a, size_t n, bool https, const char *text)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].https == https && !strcmp(a[i].text, text))
            return (struct lset_addr *)&a[i];
    return NULL;
}

/* The config address of an entry, to open more sockets on it. */
static struct config_addr entry_addr(struct lset_addr *e)
{
    return (struct config_addr){.text = e->text, .host = e->host, .port = (uint16_t)e->port};
}

static void entry_init(struct lset_addr *e, const struct config_addr *a, bool https, int idx)
{
    memset(e, 0, sizeof *e);
    e->https = https;
    e->idx = idx;
    snprintf(e->text, sizeof e->text, "%s", a->text);
    snprintf(e->host, sizeof e->host, "%s", a->host ? a->host : "");
    e->port = a->port;
}

static void entry_name(const struct lset_addr *e, char *out, size_t len)
{
    snprintf(out, len, "listen.%s[%d] %s", e->https ? "https" : "http", e->idx, e->text);
}

/* The config key alone: listener_probe() adds the address. */
static void entry_key(const struct lset_addr *e, char *out, size_t len)
{
    snprintf(out, len, "listen.%s[%d]", e->https ? "https" : "http", e->idx);
}

/* Opens sockets on e for workers [from, to); -1 with err, the new ones closed. */
static int entry_fill(struct lset_addr *e, int from, int to, char *err, size_t errlen)
{
    struct config_addr a = entry_addr(e);
    size_t start = e->nfds;
    for (int w = from; w < to; w++) {
        int fd = e->nfds < LSET_MAX_FDS ? listener_open(&a, true, err, errlen) : -1;
        if (fd < 0) {
            while (e->nfds > start)
                close(e->fds[--e->nfds]);
            return -1;
        }
        e->fds[e->nfds] = fd;
        e->owner[e->nfds++] = w;
    }
    return 0;
}

/* The workers without a socket on e get one. */
static int entry_cover(struct lset_addr *e, int nworkers, char *err, size_t errlen)
{
    for (int w = 0; w < nworkers; w++) {
        bool has = false;
        for (size_t k = 0; k < e->nfds && !has; k++)
            has = e->owner[k] == w;
        if (!has && entry_fill(e, w, w + 1, err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* Every address of l, in config order (https first). */
static size_t config_entries(const struct config_listen *l, struct lset_addr *out)
{
    size_t n = 0;
    for (size_t i = 0; i < l->num_https; i++)
        entry_init(&out[n++], &l->https[i], true, (int)i);
    for (size_t i = 0; i < l->num_http; i++)
        entry_init(&out[n++], &l->http[i], false, (int)i);
    return n;
}

static void close_new(struct lset *ls, const struct lset *cur, int keep_lo, int keep_hi)
{
    for (size_t i = 0; i < ls->n; i++)
        for (size_t k = 0; k < ls->addrs[i].nfds; k++) {
            int o = ls->addrs[i].owner[k];
            if ((o < keep_lo || o >= keep_hi) && (!cur || lset_owner(cur, ls->addrs[i].fds[k]) < 0))
                close(ls->addrs[i].fds[k]);
        }
}

/* Takes the inherited sockets of e's address (spread over the workers). */
static void adopt(struct lset_addr *e, struct lset_inherit *inh, int nworkers)
{
    struct lset_addr *src = inh ? find(inh->addrs, inh->n, e->https, e->text) : NULL;
    if (!src)
        return;
    for (size_t k = 0; k < src->nfds; k++) {
        e->fds[e->nfds] = src->fds[k];
        e->owner[e->nfds++] = (int)(k % (size_t)nworkers);
    }
    src->nfds = 0; /* now ours */
}

/* An empty table with an entry for every address of l. */
static int table_new(struct lset *ls, const struct config_listen *l, char *err, size_t errlen)
{
    ls->addrs = calloc(MAX_ADDRS, sizeof *ls->addrs);
    if (!ls->addrs) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    ls->n = config_entries(l, ls->addrs);
    return 0;
}

/* Nobody (not even moat) may listen on e's address yet: see listener_probe(). */
static int entry_probe(struct lset_addr *e, char *err, size_t errlen)
{
    char name[LSET_TEXT + 32];
    struct config_addr a = entry_addr(e);
    entry_key(e, name, sizeof name);
    return listener_probe(&a, name, err, errlen);
}

int lset_open(struct lset *ls, const struct config_listen *l, int nworkers,
              struct lset_inherit *inh, char *err, size_t errlen)
{
    if (table_new(ls, l, err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < ls->n; i++) {
        struct lset_addr *e = &ls->addrs[i];
        adopt(e, inh, nworkers);
        if (e->nfds == 0 && entry_probe(e, err, errlen) < 0)
            goto fail;
        if (entry_cover(e, nworkers, err, errlen) < 0)
            goto fail;
    }
    for (size_t i = 0; inh && i < inh->n; i++) /* addresses no longer configured */
        while (inh->addrs[i].nfds > 0)
            close(inh->addrs[i].fds[--inh->addrs[i].nfds]);
    return 0;
fail:
    close_new(ls, NULL, 0, 0);
    lset_free(ls);
    return -1;
}

size_t lset_worker_fds(const struct lset *ls, int worker, struct listen_fd *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < ls->n; i++)
        for (size_t k = 0; k < ls->addrs[i].nfds && n < max; k++)
            if (ls->addrs[i].owner[k] == worker) {
                out[n].fd = ls->addrs[i].fds[k];
                out[n].https = ls->addrs[i].https;
                snprintf(out[n].name, sizeof out[n].name, "%s", ls->addrs[i].text);
                n++;
            }
    return n;
}

int lset_owner(const struct lset *ls, int fd)
{
    for (size_t i = 0; i < ls->n; i++)
        for (size_t k = 0; k < ls->addrs[i].nfds; k++)
            if (ls->addrs[i].fds[k] == fd)
                return ls->addrs[i].owner[k];
    return -1;
}

/* A kept address: its sockets (retiring workers' ones move), plus ones for added workers. */
static int plan_kept(struct lset_addr *e, const struct lset_addr *old, int old_n, int new_n,
                     char *err, size_t errlen)
{
    for (size_t k = 0; k < old->nfds; k++) {
        e->fds[e->nfds] = old->fds[k];
        e->owner[e->nfds++] = old->owner[k] < new_n ? old->owner[k] : old->owner[k] % new_n;
    }
    return new_n > old_n ? entry_fill(e, old_n, new_n, err, errlen) : 0;
}

int lset_plan(const struct lset *cur, const struct config_listen *l, int old_n, int new_n,
              struct lset *next, char *err, size_t errlen)
{
    if (table_new(next, l, err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < next->n; i++) {
        struct lset_addr *e = &next->addrs[i];
        const struct lset_addr *old = find(cur->addrs, cur->n, e->https, e->text);
        int rc = old                               ? plan_kept(e, old, old_n, new_n, err, errlen)
                 : entry_probe(e, err, errlen) < 0 ? -1
                                                   : entry_fill(e, 0, new_n, err, errlen);
        if (rc < 0) {
            if (old)
                e->nfds = 0; /* entry_fill closed its own; the old ones are not ours */
            lset_discard(next, cur, 0, 0);
            return -1;
        }
    }
    return 0;
}

void lset_discard(struct lset *next, const struct lset *cur, int keep_lo, int keep_hi)
{
    close_new(next, cur, keep_lo, keep_hi);
    lset_free(next);
}

static void append(char *buf, size_t len, const char *sign, const struct lset_addr *e)
{
    size_t n = strlen(buf);
    char name[LSET_TEXT + 32];
    entry_name(e, name, sizeof name);
    snprintf(buf + n, len - n, "%s%s%s", n ? ", " : "", sign, name);
}

void lset_describe(const struct lset *cur, const struct lset *next, char *buf, size_t len)
{
    for (size_t i = 0; i < next->n; i++)
        if (!find(cur->addrs, cur->n, next->addrs[i].https, next->addrs[i].text))
            append(buf, len, "+", &next->addrs[i]);
    for (size_t i = 0; i < cur->n; i++)
        if (!find(next->addrs, next->n, cur->addrs[i].https, cur->addrs[i].text))
            append(buf, len, "-", &cur->addrs[i]);
}

void lset_free(struct lset *ls)
{
    free(ls->addrs);
    ls->addrs = NULL;
    ls->n = 0;
}

/* ---- hand-over to a new binary ------------------------------------------------------------ */

int lset_export(const struct lset *ls, char *out, size_t len)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < ls->n; i++) {
        const struct lset_addr *e = &ls->addrs[i];
        int w = snprintf(out + n, len - n, "%s|%s=", e->https ? "https" : "http", e->text);
        for (size_t k = 0; w > 0 && (size_t)w < len - n && k < e->nfds; k++) {
            n += (size_t)w;
            w = snprintf(out + n, len - n, "%s%d", k ? "," : "", e->fds[k]);
        }
        if (w < 0 || (size_t)w >= len - n)
            return -1;
        n += (size_t)w;
        if (n + 2 > len)
            return -1;
        out[n++] = ';';
        out[n] = '\0';
    }
    return 0;
}

static bool is_listener(int fd)
{
    int v = 0;
    socklen_t vl = sizeof v;
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) == 0 && v;
}

/* One "https|ADDR=fd,fd" item into e. */
static int import_one(char *item, struct lset_addr *e, char *err, size_t errlen)
{
    char *eq = strrchr(item, '=');
    char *bar = strchr(item, '|');
    if (!eq || !bar || bar > eq)
        goto bad;
    *eq = *bar = '\0';
    memset(e, 0, sizeof *e);
    e->https = !strcmp(item, "https");
    if (!e->https && strcmp(item, "http"))
        goto bad;
    snprintf(e->text, sizeof e->text, "%s", bar + 1);
    for (char *p = eq + 1, *end; *p && e->nfds < LSET_MAX_FDS; p = *end ? end + 1 : end) {
        long fd = strtol(p, &end, 10);
        if (end == p || fd < 3 || fd > 1 << 20 || (*end && *end != ',') || !is_listener((int)fd))
            goto bad;
        e->fds[e->nfds++] = (int)fd;
    }
    return 0;
bad:
    snprintf(err, errlen, "MOAT_INHERIT_FDS: malformed item or not a listening socket");
    return -1;
}

int lset_import(const char *text, struct lset_inherit *inh, char *err, size_t errlen)
{
    char *copy = strdup(text);
    inh->addrs = calloc(MAX_ADDRS, sizeof *inh->addrs);
    inh->n = 0;
    if (!copy || !inh->addrs) {
        free(copy);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char *save = NULL;
    for (char *it = strtok_r(copy, ";", &save); it; it = strtok_r(NULL, ";", &save)) {
        if (inh->n == MAX_ADDRS || import_one(it, &inh->addrs[inh->n++], err, errlen) < 0) {
            free(copy);
            return -1;
        }
    }
    free(copy);
    return 0;
}

void lset_inherit_free(struct lset_inherit *inh)
{
    for (size_t i = 0; i < inh->n; i++)
        while (inh->addrs[i].nfds > 0)
            close(inh->addrs[i].fds[--inh->addrs[i].nfds]);
    free(inh->addrs);
    inh->addrs = NULL;
    inh->n = 0;
}
