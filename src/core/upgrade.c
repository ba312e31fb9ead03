#include "core/upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/close_range.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "observe/audit_chain.h"
#include "observe/log.h"

extern char **environ;

#define ENV_FDS "MOAT_INHERIT_FDS"
#define ENV_PAIR "MOAT_UPGRADE_FD"
#define MAX_ARGS 64
#define EXPORT_MAX 65536
/* How long the new process waits for "go" before it opens admin/control anyway. */
#define GO_TIMEOUT_MS 5000

struct upgrade {
    struct event *ev_read, *ev_timeout;
    int fd; /* our end of the socketpair */
    pid_t pid;
    char answer[4096]; /* what the new process said */
    size_t len;
    upgrade_done_cb cb;
    void *arg;
};

static char exe[4096];
/* New processes stopped after the timeout, reaped by upgrade_reap() once they exit. */
static pid_t stopped[8];
static char cmdline[8192];
static char *args[MAX_ARGS + 1];

void upgrade_init(void)
{
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    n = fd >= 0 ? read(fd, cmdline, sizeof cmdline - 1) : -1;
    if (fd >= 0)
        close(fd);
    size_t k = 0;
    for (ssize_t i = 0; n > 0 && i < n && k < MAX_ARGS; i += (ssize_t)strlen(cmdline + i) + 1)
        args[k++] = cmdline + i;
    args[k] = NULL;
}

/* The environment of the new process: ours without old hand-over variables, plus ours. */
static char **child_env(const char *fds, int pair)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 3, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], ENV_FDS "=", sizeof ENV_FDS) &&
            strncmp(environ[i], ENV_PAIR "=", sizeof ENV_PAIR))
            env[k++] = environ[i];
    env[k] = malloc(strlen(fds) + sizeof ENV_FDS + 1);
    env[k + 1] = malloc(sizeof ENV_PAIR + 16);
    if (!env[k] || !env[k + 1]) {
        free(env[k]);
        free(env[k + 1]);
        free(env);
        return NULL;
    }
    sprintf(env[k], "%s=%s", ENV_FDS, fds);
    sprintf(env[k + 1], "%s=%d", ENV_PAIR, pair);
    return env;
}

static void free_env(char **env)
{
    size_t n = 0;
    while (env[n])
        n++;
    free(env[n - 1]);
    free(env[n - 2]);
    free(env);
}

/*
 * Every descriptor but the ones handed over is closed at exec: an inherited
 * client or upstream connection would stay open in the new process after the
 * old one closed it (the peer would wait for an end that never comes).
 */
static void cloexec_all(long max)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
        return;
#endif
    for (long fd = 3; fd < max; fd++)
        fcntl((int)fd, F_SETFD, FD_CLOEXEC);
}

/* Only async-signal-safe calls between fork() and exec(). */
static void child_exec(const struct lset *ls, int pair, char **env, long max)
{
    cloexec_all(max);
    for (size_t i = 0; i < ls->n; i++)
        for (size_t k = 0; k < ls->addrs[i].nfds; k++)
            fcntl(ls->addrs[i].fds[k], F_SETFD, 0);
    fcntl(pair, F_SETFD, 0);
    execve(exe, args, env);
    static const char msg[] = "error\ncannot run the new binary (execve failed)\n";
    ssize_t w = write(pair, msg, sizeof msg - 1);
    (void)w;
    _exit(127);
}

/* A new process that has not exited yet: reaped later by upgrade_reap(). */
static void remember(pid_t pid)
{
    for (size_t i = 0; i < sizeof stopped / sizeof *stopped; i++)
        if (!stopped[i]) {
            stopped[i] = pid;
            return;
        }
}

static void finish(struct upgrade *u, bool ok, const char *msg)
{
    event_del(u->ev_read);
    event_del(u->ev_timeout);
    if (!ok)
        audit_chain_share(false); /* the audit file is ours alone again */
    u->cb(u->arg, ok, u->pid, msg);
}

/* The new process ended before "ready": reap it and report what it said. */
static void failed(struct upgrade *u, const char *why)
{
    char msg[4608];
    int st = 0;
    const char *said = !strncmp(u->answer, "error\n", 6) ? u->answer + 6 : u->answer;
    bool reaped = waitpid(u->pid, &st, WNOHANG) == u->pid;
    if (!reaped)
        remember(u->pid);
    if (reaped && WIFEXITED(st))
        snprintf(msg, sizeof msg, "%s (exit status %d)%s%s", why, WEXITSTATUS(st),
                 said[0] ? ":\n" : "", said);
    else if (reaped && WIFSIGNALED(st))
        snprintf(msg, sizeof msg, "%s (killed by signal %d)", why, WTERMSIG(st));
    else
        snprintf(msg, sizeof msg, "%s%s%s", why, said[0] ? ":\n" : "", said);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    finish(u, false, msg);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct upgrade *u = arg;
    ssize_t n = read(fd, u->answer + u->len, sizeof u->answer - 1 - u->len);
    if (n > 0) {
        u->len += (size_t)n;
        u->answer[u->len] = '\0';
        if (!strncmp(u->answer, "ready ", 6) && strchr(u->answer, '\n'))
            finish(u, true, u->answer);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    for (int i = 0; i < 50; i++) { /* it closed the socketpair: it is exiting */
        siginfo_t si = {0};
        if (waitid(P_PID, (id_t)u->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid)
            break;
        usleep(10000);
    }
    failed(u, "the new process exited before it was ready");
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct upgrade *u = arg;
    kill(u->pid, SIGTERM); /* it drains whatever it may have accepted */
    remember(u->pid);
    char msg[128];
    snprintf(msg, sizeof msg, "the new process %d was not ready within %d s; stopped it",
             (int)u->pid, UPGRADE_TIMEOUT_MS / 1000);
    finish(u, false, msg);
}

static int spawn(struct upgrade *u, const struct lset *ls, char *err, size_t errlen)
{
    int sp[2];
    static char fds[EXPORT_MAX];
    if (!exe[0] || !args[0] || lset_export(ls, fds, sizeof fds) < 0) {
        snprintf(err, errlen, "cannot tell the binary, its arguments or the sockets to hand over");
        return -1;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
        snprintf(err, errlen, "socketpair: %s", strerror(errno));
        return -1;
    }
    char **env = child_env(fds, sp[1]);
    long max = sysconf(_SC_OPEN_MAX);
    u->pid = env ? fork() : -1;
    if (u->pid == 0)
        child_exec(ls, sp[1], env, max);
    int e = errno;
    if (env)
        free_env(env);
    close(sp[1]);
    if (u->pid < 0) {
        close(sp[0]);
        snprintf(err, errlen, "fork: %s", strerror(e));
        return -1;
    }
    u->fd = sp[0];
    return 0;
}

struct upgrade *upgrade_start(struct event_base *base, const struct lset *ls, upgrade_done_cb cb,
                              void *arg, char *err, size_t errlen)
{
    struct upgrade *u = calloc(1, sizeof *u);
    if (!u) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    u->cb = cb;
    u->arg = arg;
    u->fd = -1;
    audit_chain_share(true); /* from now on two processes may append audit lines */
    if (spawn(u, ls, err, errlen) < 0) {
        audit_chain_share(false);
        free(u);
        return NULL;
    }
    evutil_make_socket_nonblocking(u->fd);
    u->ev_read = event_new(base, u->fd, EV_READ | EV_PERSIST, on_read, u);
    u->ev_timeout = evtimer_new(base, on_timeout, u);
    struct timeval tv = {UPGRADE_TIMEOUT_MS / 1000, 0};
    if (!u->ev_read || !u->ev_timeout || event_add(u->ev_read, NULL) < 0 ||
        evtimer_add(u->ev_timeout, &tv) < 0) {
        kill(u->pid, SIGTERM);
        remember(u->pid);
        audit_chain_share(false);
        upgrade_free(u);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    log_msg(LOG_INFO, "upgrade: started %s as process %d", exe, (int)u->pid);
    return u;
}

void upgrade_go(struct upgrade *u)
{
    ssize_t n = write(u->fd, "go\n", 3);
    (void)n;
    u->fd = -1; /* left open until this process exits: the new one watches for that */
    upgrade_free(u);
}

void upgrade_free(struct upgrade *u)
{
    if (!u)
        return;
    if (u->ev_read)
        event_free(u->ev_read);
    if (u->ev_timeout)
        event_free(u->ev_timeout);
    if (u->fd >= 0)
        close(u->fd);
    free(u);
}

void upgrade_reap(void)
{
    for (size_t i = 0; i < sizeof stopped / sizeof *stopped; i++)
        if (stopped[i] && waitpid(stopped[i], NULL, WNOHANG) != 0)
            stopped[i] = 0;
}

void upgrade_abort(struct upgrade *u)
{
    if (!u)
        return;
    kill(u->pid, SIGTERM);
    upgrade_free(u);
}

/* ---- the new process ---------------------------------------------------------------------- */

int upgrade_child_begin(struct lset_inherit *inh, char *err, size_t errlen)
{
    const char *pair = getenv(ENV_PAIR), *fds = getenv(ENV_FDS);
    inh->n = 0;
    inh->addrs = NULL;
    if (!pair)
        return -1;
    int fd = atoi(pair);
    unsetenv(ENV_PAIR);
    if (fd < 3 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -1;
    audit_chain_share(true); /* the old process still appends audit lines */
    if (fds && lset_import(fds, inh, err, errlen) < 0) {
        upgrade_child_failed(fd, err);
        return -2;
    }
    unsetenv(ENV_FDS);
    return fd;
}

static struct event *ev_parent; /* the new process: the old one's end closes at its exit */

static void on_parent_gone(evutil_socket_t fd, short what, void *arg)
{
    char buf[64];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
        return;
    audit_chain_share(false);
    upgrade_child_done();
}

void upgrade_child_ready(int fd, struct event_base *base)
{
    char buf[32];
    int n = snprintf(buf, sizeof buf, "ready %d\n", (int)getpid());
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (write(fd, buf, (size_t)n) == n && poll(&p, 1, GO_TIMEOUT_MS) > 0) {
        ssize_t k = read(fd, buf, 3); /* "go\n" */
        (void)k;
    }
    evutil_make_socket_nonblocking(fd);
    ev_parent = event_new(base, fd, EV_READ | EV_PERSIST, on_parent_gone, NULL);
    if (!ev_parent || event_add(ev_parent, NULL) < 0) {
        audit_chain_share(false);
        upgrade_child_done();
        close(fd);
    }
}

void upgrade_child_done(void)
{
    if (!ev_parent)
        return;
    close(event_get_fd(ev_parent));
    event_free(ev_parent);
    ev_parent = NULL;
}

void upgrade_child_failed(int fd, const char *msg)
{
    if (fd < 0)
        return;
    char buf[8192];
    int n = snprintf(buf, sizeof buf, "error\n%s\n", msg);
    ssize_t w = write(fd, buf, n < (int)sizeof buf ? (size_t)n : sizeof buf - 1);
    (void)w;
    close(fd);
}
