#include "observe/healthcheck.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config/config.h"
#include "util/monotime.h"

/* The answer kept: a status line and a reason fit; the rest is not read. */
#define HEALTHCHECK_MAX_REPLY 4096

/* Milliseconds left until deadline (0 when past it). */
static int left_ms(uint64_t deadline)
{
    uint64_t now = mono_ms();
    return now >= deadline ? 0 : (int)(deadline - now);
}

/* Waits for events on fd until the deadline; -1 with errno ETIMEDOUT when it passed. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int n = poll(&p, 1, left_ms(deadline));
        if (n > 0)
            return 0;
        if (n == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (errno != EINTR)
            return -1;
    }
}

/* A non-blocking socket connected to the admin address, or -1 with errno set. */
static int admin_connect(const struct config_addr *a, uint64_t deadline)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (a->path) {
        struct sockaddr_un *un = (struct sockaddr_un *)&ss;
        if (strlen(a->path) >= sizeof un->sun_path) {
            errno = ENAMETOOLONG;
            return -1;
        }
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, a->path);
        len = sizeof *un;
    } else {
        struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
                                 .ai_socktype = SOCK_STREAM},
                        *res = NULL;
        char port[8];
        snprintf(port, sizeof port, "%u", a->port);
        if (getaddrinfo(a->host, port, &hints, &res) != 0 || !res) {
            errno = EINVAL;
            return -1;
        }
        memcpy(&ss, res->ai_addr, res->ai_addrlen);
        len = res->ai_addrlen;
        freeaddrinfo(res);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
        int err = errno;
        socklen_t elen = sizeof err;
        if (err != EINPROGRESS || wait_fd(fd, POLLOUT, deadline) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err) {
            err = err == EINPROGRESS ? errno : err;
            close(fd);
            errno = err;
            return -1;
        }
    }
    return fd;
}

/* Sends the request and reads the answer (up to max - 1 bytes, NUL-terminated) until
 * the server closes; the length, or -1 with errno set. */
static ssize_t exchange(int fd, char *buf, size_t max, uint64_t deadline)
{
    static const char req[] = "GET /readyz HTTP/1.0\r\nHost: moat-admin\r\n"
                              "User-Agent: moat-healthcheck\r\n\r\n";
    size_t off = 0;
    while (off < sizeof req - 1) {
        ssize_t n = send(fd, req + off, sizeof req - 1 - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN && wait_fd(fd, POLLOUT, deadline) == 0)
            continue;
        if (n < 0)
            return -1;
        off += (size_t)n;
    }
    size_t len = 0;
    while (len < max - 1) {
        ssize_t n = recv(fd, buf + len, max - 1 - len, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLIN, deadline) < 0)
                return -1;
            continue;
        }
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return (ssize_t)len;
}

/* The status code of an HTTP/1.x answer, or -1; *body points past the head (or at ""). */
static int parse_reply(char *buf, char **body)
{
    int code = -1;
    if (sscanf(buf, "HTTP/1.%*1[01] %3d", &code) != 1)
        return -1;
    char *end = strstr(buf, "\r\n\r\n");
    *body = end ? end + 4 : buf + strlen(buf);
    size_t n = strlen(*body);
    while (n && ((*body)[n - 1] == '\n' || (*body)[n - 1] == '\r'))
        (*body)[--n] = '\0';
    return code;
}

/* GET /readyz on the admin listener of a loaded configuration; the exit status. */
static int probe(const struct config *cfg)
{
    const struct config_addr *a = &cfg->listen.admin;
    if (!a->text) {
        fprintf(stderr,
                "moat: healthcheck: %s: listen.admin is null: no admin listener to "
                "ask for /readyz\n",
                cfg->path ? cfg->path : "the configuration");
        return 1;
    }
    uint64_t deadline = mono_ms() + HEALTHCHECK_TIMEOUT_MS;
    char buf[HEALTHCHECK_MAX_REPLY], *body = NULL;
    int fd = admin_connect(a, deadline);
    if (fd < 0) {
        fprintf(stderr, "moat: healthcheck: cannot connect to listen.admin %s: %s\n", a->text,
                strerror(errno));
        return 1;
    }
    ssize_t n = exchange(fd, buf, sizeof buf, deadline);
    close(fd);
    int code = n < 0 ? -1 : parse_reply(buf, &body);
    if (n < 0 || code < 0) {
        fprintf(stderr, "moat: healthcheck: %s GET /readyz: %s\n", a->text,
                n < 0 ? strerror(errno) : "not an HTTP answer");
        return 1;
    }
    if (code == 200) {
        printf("%s\n", body[0] ? body : "ready");
        return 0;
    }
    fprintf(stderr, "moat: healthcheck: %s GET /readyz: %d %s\n", a->text, code,
            body[0] ? body : "(no reason given)");
    return 1;
}

int healthcheck_run(const char *config_path)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load(config_path, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.count; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        fprintf(stderr, "moat: healthcheck: the configuration cannot be read: no admin address\n");
        config_errors_free(&errs);
        return 1;
    }
    config_errors_free(&errs);
    int rc = probe(cfg);
    config_unref(cfg);
    return rc;
}
