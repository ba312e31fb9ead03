/*
 * listener_set: the main thread's table of listening sockets, per address and
 * per worker, and how it changes on reload and at a binary upgrade.
 *
 * Every worker has its own SO_REUSEPORT socket on each listen address (see
 * listener.h); the workers own and close them. This table only remembers which
 * fd each worker holds for which address, so that a reload can open the
 * sockets of added addresses, close those of removed ones in every worker
 * (leaving the other listeners alone), give new workers their sockets and
 * retiring workers' sockets to the workers that stay (a socket closed with
 * connections in its accept queue would reset them, so they are never closed
 * on a shrink), and so that an upgrade can hand every socket to the new process.
 * A worker may hold several sockets of one address (after a shrink or an upgrade
 * to fewer workers): they all feed it.
 */
#ifndef MOAT_LISTENER_SET_H
#define MOAT_LISTENER_SET_H

#include <stdbool.h>
#include <stddef.h>

struct config_listen;

/* At most this many sockets per address (one per worker, or inherited ones). */
#define LSET_MAX_FDS 256
#define LSET_TEXT 96

/* One listening socket as a worker gets it. */
struct listen_fd {
    int fd;
    bool https;           /* TLS listener; else the plain-HTTP redirect listener */
    char name[LSET_TEXT]; /* the address as written, for log lines */
};

struct lset_addr {
    bool https;
    int idx;              /* index in listen.https / listen.http of its config */
    char text[LSET_TEXT]; /* as written in the config: the identity of the address */
    char host[LSET_TEXT];
    unsigned port;
    int fds[LSET_MAX_FDS];
    int owner[LSET_MAX_FDS]; /* worker index */
    size_t nfds;
};

struct lset {
    struct lset_addr *addrs;
    size_t n;
};

/* Sockets a previous process handed over (binary upgrade): "https:addr" -> fds. */
struct lset_inherit {
    struct lset_addr *addrs; /* owner unused */
    size_t n;
};

/*
 * Startup: fills ls with sockets for every listen address and nworkers workers.
 * Inherited sockets of a matching address are adopted (no probe: they are
 * ours); any other address is probed (listener_probe) and opened. Inherited
 * sockets whose address is gone are closed. Returns 0, or -1 with err (every
 * socket opened here closed again; inherited ones are left to the caller).
 */
int lset_open(struct lset *ls, const struct config_listen *l, int nworkers,
              struct lset_inherit *inh, char *err, size_t errlen);

/* The sockets of worker i (at most max); returns how many. */
size_t lset_worker_fds(const struct lset *ls, int worker, struct listen_fd *out, size_t max);

/*
 * Reload: builds next from cur for config l and new_n workers (cur had old_n).
 * Added addresses are probed and opened (one socket per worker); kept ones get
 * sockets for added workers; the sockets of retiring workers (index >= new_n)
 * change owner to index % new_n. cur is not changed. Returns 0, or -1 with err
 * ("listen.https[1] 127.0.0.1:9443: address already in use ...") and nothing
 * left open.
 */
int lset_plan(const struct lset *cur, const struct config_listen *l, int old_n, int new_n,
              struct lset *next, char *err, size_t errlen);

/* Whether fd belongs to cur (kept) and, if so, its owner there. */
int lset_owner(const struct lset *ls, int fd);

/* Closes the sockets next opened that are not in cur, except those owned by workers
 * in [keep_lo, keep_hi) (already handed to a worker, which closed them); frees next. */
void lset_discard(struct lset *next, const struct lset *cur, int keep_lo, int keep_hi);

/* Appends "+listen.https[1] 127.0.0.1:9443, -listen.http[0] 127.0.0.1:8080" to buf. */
void lset_describe(const struct lset *cur, const struct lset *next, char *buf, size_t len);

void lset_free(struct lset *ls);

/*
 * Upgrade: "https|ADDR=fd,fd;http|ADDR=fd;" for MOAT_INHERIT_FDS, in out.
 * Returns -1 when it does not fit.
 */
int lset_export(const struct lset *ls, char *out, size_t len);
/* Parses MOAT_INHERIT_FDS into inh (sockets checked with getsockopt SO_ACCEPTCONN). */
int lset_import(const char *text, struct lset_inherit *inh, char *err, size_t errlen);
void lset_inherit_free(struct lset_inherit *inh);

#endif
