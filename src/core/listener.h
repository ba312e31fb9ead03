/*
 * listener: opens listening sockets and keeps accept loops from spinning.
 *
 * Every worker gets its own socket on each address (SO_REUSEPORT), so the kernel
 * spreads connections across workers without a shared accept lock. Opened on the
 * main thread so that a port in use is reported before anything starts; which
 * worker holds which socket is listener_set.h's table.
 *
 * When accept() fails for lack of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM) the
 * connection stays in the backlog and the socket stays readable: a level-triggered
 * loop would call accept() again at once, forever, at 100 % CPU. A guarded
 * listener instead stops accepting for LISTENER_PAUSE_MS and says so in the log
 * at most once per LOG_LIMIT_MS.
 */
#ifndef MOAT_LISTENER_H
#define MOAT_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct config_addr;
struct evconnlistener;

#define LISTENER_PAUSE_MS 200

/* Returns a bound, listening, non-blocking TCP socket or -1 with err. Numeric
 * addresses only ("localhost" stands for 127.0.0.1: nothing is resolved).
 * shared: SO_REUSEPORT, one socket per worker; a single listener (admin) is not
 * shared, so that a second instance on its port fails instead of splitting it. */
int listener_open(const struct config_addr *addr, bool shared, char *err, size_t errlen);

/*
 * Checks that no socket is bound to addr (another moat, or anything else),
 * by binding it once without SO_REUSEPORT; call before opening the shared
 * sockets. name is the config key for the message ("listen.https[0]").
 * Returns 0, or -1 with err: "listen.https[0] 127.0.0.1:8443: address already
 * in use (...)". See listener.c for the window this leaves.
 */
int listener_probe(const struct config_addr *addr, const char *name, char *err, size_t errlen);

/*
 * Returns a listening AF_UNIX socket at path with the given file mode, or -1 with
 * err. A socket file nobody listens on (left by a killed process) is replaced and
 * *stale set; a live one ("in use") or a path that is not a socket is refused.
 * *ino receives the inode of the new socket file, for listener_unix_remove().
 */
int listener_open_unix(const char *path, mode_t mode, bool *stale, unsigned long *ino, char *err,
                       size_t errlen);

/* Removes the socket file at path if it is still the one created (same inode). */
void listener_unix_remove(const char *path, unsigned long ino);

/*
 * Pauses lev on accept errors instead of letting it spin (see above). name is
 * the address for log lines. Call listener_unguard() before freeing lev, on the
 * thread that runs lev's event base (or while it is not running).
 */
int listener_guard(struct evconnlistener *lev, const char *name);
void listener_unguard(struct evconnlistener *lev);

#endif
