/*
 * Helpers for test_redis.c: real redis-server processes on free ports (killed
 * by PID at exit, and by the kernel if this process dies: PR_SET_PDEATHSIG),
 * a scratch directory, test certificates, and an event loop runner.
 * Header-only and static: it belongs to one test binary.
 */
#ifndef MOAT_TEST_REDIS_HELPERS_H
#define MOAT_TEST_REDIS_HELPERS_H

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <event2/event.h>

#define TH_MAX_SERVERS 16

static pid_t th_pids[TH_MAX_SERVERS];
static char th_dir[64];

static uint64_t th_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void th_kill(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    for (int i = 0; i < TH_MAX_SERVERS; i++)
        if (th_pids[i] == pid)
            th_pids[i] = 0;
}

static void th_kill_all(void)
{
    for (int i = 0; i < TH_MAX_SERVERS; i++)
        th_kill(th_pids[i]);
}

static void th_cleanup(void)
{
    th_kill_all();
    if (th_dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", th_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", th_dir);
        th_dir[0] = '\0';
    }
}

static void th_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(th_dir, sizeof(th_dir), "/tmp/moat-redis-test-XXXXXX");
    if (!mkdtemp(th_dir)) {
        perror("mkdtemp");
        exit(1);
    }
    atexit(th_cleanup);
}

/* A port nobody listens on right now (bind 0, read it back, close). */
static uint16_t th_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
        perror("free port");
        exit(1);
    }
    close(fd);
    return ntohs(sin.sin_port);
}

static void th_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", th_dir, name);
}

/* Sends PING over a fresh blocking connection; true on any RESP answer
 * ("+PONG" or "-NOAUTH": both mean the server is up). */
static bool th_ping(uint16_t port, const char *unix_path)
{
    int fd;
    bool ok = false;
    if (unix_path) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", unix_path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
            goto out;
    } else {
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_port = htons(port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
            goto out;
    }
    struct timeval tv = {.tv_sec = 1};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[64];
    if (write(fd, "PING\r\n", 6) == 6 && read(fd, buf, sizeof(buf)) > 0)
        ok = buf[0] == '+' || buf[0] == '-';
out:
    if (fd >= 0)
        close(fd);
    return ok;
}

static bool th_tcp_open(uint16_t port)
{
    struct sockaddr_in sin = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Starts `redis-server --port PORT --save '' --appendonly no --bind 127.0.0.1
 * --dir TMP EXTRA...` and waits until it answers (plain port or unix socket)
 * or, with tls_port, until that port accepts. Returns the PID, or -1. */
static pid_t th_redis_start(uint16_t port, uint16_t tls_port, const char *unix_path,
                            const char *const *extra)
{
    const char *argv[64];
    char portstr[16], logpath[128];
    int n = 0;
    snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
    argv[n++] = "redis-server";
    argv[n++] = "--port";
    argv[n++] = portstr;
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--dir";
    argv[n++] = th_dir;
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    snprintf(logpath, sizeof(logpath), "%s/redis-%u-%u.log", th_dir, port, tls_port);

    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < TH_MAX_SERVERS; i++)
        if (th_pids[i] == 0) {
            th_pids[i] = pid;
            break;
        }
    for (int i = 0; i < 500; i++) { /* up to 5 s */
        bool up = tls_port ? th_tcp_open(tls_port) : th_ping(port, unix_path);
        if (up)
            return pid;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            break;
        usleep(10000);
    }
    fprintf(stderr, "redis-server did not come up, see %s\n", logpath);
    th_kill(pid);
    return -1;
}

static int th_sh(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc;
}

/* A CA (name.ca.crt/key) and, signed by it, a server certificate for
 * DNS:localhost and IP:127.0.0.1 (name.crt/key), in the scratch dir. */
static int th_make_certs(const char *name)
{
    char cmd[2048];
    const char *d = th_dir;
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout %s.ca.key -out %s.ca.crt -subj /CN=%s-test-ca -days 2 2>/dev/null && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout %s.key -out %s.csr -subj /CN=localhost 2>/dev/null && "
             "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > %s.ext && "
             "openssl x509 -req -in %s.csr -CA %s.ca.crt -CAkey %s.ca.key -CAcreateserial "
             "-out %s.crt -days 2 -extfile %s.ext 2>/dev/null && chmod 644 %s.key",
             d, name, name, name, name, name, name, name, name, name, name, name, name);
    return th_sh(cmd);
}

static void th_loop_break_cb(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

/* Runs the loop until pred(arg) holds or timeout_ms passes; true if it held. */
static bool th_run_until(struct event_base *base, bool (*pred)(void *), void *arg,
                         uint64_t timeout_ms)
{
    uint64_t deadline = th_now_ms() + timeout_ms;
    struct event *tick = event_new(base, -1, EV_PERSIST, th_loop_break_cb, base);
    struct timeval tv = {.tv_usec = 2000};
    event_add(tick, &tv);
    bool ok;
    while (!(ok = pred ? pred(arg) : false) && th_now_ms() < deadline)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(tick);
    return ok;
}

static void th_run_for(struct event_base *base, uint64_t ms)
{
    th_run_until(base, NULL, NULL, ms);
}

#endif
