#include "core/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "config/config.h"
#include "observe/log.h"
#include "util/netutil.h"

#define LISTEN_BACKLOG 4096

int listener_open(const struct config_addr *a, bool shared, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    const char *host = a->host && !strcmp(a->host, "localhost") ? "127.0.0.1" : a->host;
    if (!host || netutil_sockaddr_numeric(host, a->port, &ss, &len) < 0) {
        snprintf(err, errlen, "%s: listen addresses must be numeric IPv4/IPv6", a->text);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (shared && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        goto fail;
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, LISTEN_BACKLOG) < 0)
        goto fail;
    return fd;
fail:;
    int e = errno; /* kept for the caller (listener_probe) */
    snprintf(err, errlen, "%s: %s", a->text, strerror(e));
    if (fd >= 0)
        close(fd);
    errno = e;
    return -1;
}

/*
 * SO_REUSEPORT lets any socket of the same user with that option join moat's
 * listening sockets and take a share of its connections: a second moat (or
 * anything else) would silently split the port. So before opening its own
 * sockets moat binds the address once without SO_REUSEPORT, which fails with
 * EADDRINUSE while any socket listens there (ours would not help it, theirs
 * would not let it), then closes that probe and opens the shared sockets.
 * What this does not cover: a process binding the port between the probe and
 * moat's own bind() (microseconds at startup), and one that joins later with
 * SO_REUSEPORT on purpose, as the same user, after moat is up (a second moat
 * probes and fails; a kernel-level guarantee would need an eBPF reuseport
 * program or a different user per instance). SO_REUSEADDR stays on, so sockets
 * left in TIME_WAIT by a previous run do not block a restart.
 */
int listener_probe(const struct config_addr *a, const char *name, char *err, size_t errlen)
{
    char why[256];
    int fd = listener_open(a, false, why, sizeof why);
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    if (errno == EADDRINUSE)
        snprintf(err, errlen,
                 "%s %s: address already in use (another process owns it; moat does not share "
                 "its ports)",
                 name, a->text);
    else if (errno == EACCES && a->port < 1024)
        snprintf(err, errlen,
                 "%s %s: permission denied (ports below 1024 need root or "
                 "CAP_NET_BIND_SERVICE, e.g. AmbientCapabilities= in a systemd unit)",
                 name, a->text);
    else
        snprintf(err, errlen, "%s %s", name, why);
    return -1;
}

/* ---- unix sockets ------------------------------------------------------------------------ */

/* A socket file at path: 0 if nobody listens on it (stale), 1 if live, -1 on error. */
static int unix_in_use(const struct sockaddr_un *sun)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int rc = connect(fd, (const struct sockaddr *)sun, sizeof *sun) == 0 ? 1
             : errno == ECONNREFUSED                                     ? 0
                                                                         : -1;
    close(fd);
    return rc;
}

/* Clears the way for bind(): only a stale socket file may be removed. */
static int unix_clear_path(const struct sockaddr_un *sun, bool *stale, char *err, size_t errlen)
{
    struct stat st;
    *stale = false;
    if (lstat(sun->sun_path, &st) < 0)
        return errno == ENOENT ? 0 : (snprintf(err, errlen, "%s", strerror(errno)), -1);
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "the path exists and is not a socket");
        return -1;
    }
    int live = unix_in_use(sun);
    if (live != 0) {
        snprintf(err, errlen,
                 live > 0 ? "in use by another process"
                          : "cannot tell whether the socket is in use");
        return -1;
    }
    if (unlink(sun->sun_path) < 0) {
        snprintf(err, errlen, "cannot remove the stale socket: %s", strerror(errno));
        return -1;
    }
    *stale = true;
    return 0;
}

int listener_open_unix(const char *path, mode_t mode, bool *stale, unsigned long *ino, char *err,
                       size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    char why[160] = "";
    int fd = -1;
    if (strlen(path) >= sizeof sun.sun_path) {
        snprintf(err, errlen, "unix:%s: the path is too long", path);
        return -1;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    if (unix_clear_path(&sun, stale, why, sizeof why) < 0)
        goto fail;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    /* Born owner-only: the mode is widened (if asked) only once it is set. Moat
     * creates no other file while the listeners open, so the umask window is safe. */
    mode_t old = umask(0177);
    int rc = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&sun, sizeof sun);
    umask(old);
    struct stat st;
    if (rc < 0 || chmod(path, mode) < 0 || lstat(path, &st) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        snprintf(why, sizeof why, "%s", strerror(errno));
        if (rc == 0)
            unlink(path);
        goto fail;
    }
    *ino = (unsigned long)st.st_ino;
    return fd;
fail:
    snprintf(err, errlen, "unix:%s: %s", path, why);
    if (fd >= 0)
        close(fd);
    return -1;
}

void listener_unix_remove(const char *path, unsigned long ino)
{
    struct stat st;
    if (path && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && (unsigned long)st.st_ino == ino)
        unlink(path);
}

/* ---- pausing on accept errors ------------------------------------------------------------ */

struct guard {
    struct guard *next;
    struct evconnlistener *lev;
    struct event *resume;
    struct log_limit limit;
    char name[96];
};

/* Listeners are few and errors rare: a list under a lock is enough to map the
 * evconnlistener that failed (all libevent hands the error callback) to its guard. */
static pthread_mutex_t guards_lock = PTHREAD_MUTEX_INITIALIZER;
static struct guard *guards;

static struct guard *guard_find(struct evconnlistener *lev)
{
    pthread_mutex_lock(&guards_lock);
    struct guard *g = guards;
    while (g && g->lev != lev)
        g = g->next;
    pthread_mutex_unlock(&guards_lock);
    return g;
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    struct guard *g = arg;
    evconnlistener_enable(g->lev);
}

static unsigned long long nofile_soft(void)
{
    struct rlimit rl;
    return getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (unsigned long long)rl.rlim_cur : 0;
}

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    int err = errno;
    struct guard *g = guard_find(lev);
    if (!g) {
        log_msg(LOG_ERROR, "accept: %s", strerror(err));
        return;
    }
    /* Whatever the error, trying again at once would fail the same way. */
    evconnlistener_disable(lev);
    struct timeval tv = {0, LISTENER_PAUSE_MS * 1000};
    event_add(g->resume, &tv);
    if (err == EMFILE)
        log_msg_limited(&g->limit, LOG_WARN,
                        "accept on %s: %s (RLIMIT_NOFILE %llu): pausing accepts for %d ms", g->name,
                        strerror(err), nofile_soft(), LISTENER_PAUSE_MS);
    else
        log_msg_limited(&g->limit, LOG_WARN, "accept on %s: %s: pausing accepts for %d ms", g->name,
                        strerror(err), LISTENER_PAUSE_MS);
}

int listener_guard(struct evconnlistener *lev, const char *name)
{
    struct guard *g = calloc(1, sizeof *g);
    if (!g)
        return -1;
    g->lev = lev;
    g->resume = evtimer_new(evconnlistener_get_base(lev), on_resume, g);
    if (!g->resume) {
        free(g);
        return -1;
    }
    snprintf(g->name, sizeof g->name, "%s", name);
    pthread_mutex_lock(&guards_lock);
    g->next = guards;
    guards = g;
    pthread_mutex_unlock(&guards_lock);
    evconnlistener_set_error_cb(lev, on_accept_error);
    return 0;
}

void listener_unguard(struct evconnlistener *lev)
{
    pthread_mutex_lock(&guards_lock);
    struct guard **pp = &guards;
    while (*pp && (*pp)->lev != lev)
        pp = &(*pp)->next;
    struct guard *g = *pp;
    if (g)
        *pp = g->next;
    pthread_mutex_unlock(&guards_lock);
    if (!g)
        return;
    evconnlistener_set_error_cb(lev, NULL);
    event_free(g->resume);
    free(g);
}
