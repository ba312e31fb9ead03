#include "http/proxy_wait.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

struct proxy_wait {
    struct event *ev;
    int fd;
    proxy_wait_cb cb;
    void *arg;
    size_t have; /* header bytes consumed from the socket so far */
    uint8_t buf[PROXY_PROTOCOL_MAX];
};

/* Reads exactly n bytes that a peek just showed are there. */
static int take(struct proxy_wait *pw, size_t n)
{
    ssize_t k;
    do
        k = recv(pw->fd, pw->buf + pw->have, n, MSG_DONTWAIT);
    while (k < 0 && errno == EINTR);
    if (k != (ssize_t)n)
        return -1;
    pw->have += n;
    return 0;
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_wait *pw = arg;
    ssize_t k = recv(fd, pw->buf + pw->have, sizeof pw->buf - pw->have, MSG_PEEK | MSG_DONTWAIT);
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (k <= 0) {
        pw->cb(pw->arg, NULL, k == 0 ? "closed before the PROXY header" : "read error");
        return;
    }
    struct proxy_protocol_header h;
    const char *err;
    switch (proxy_protocol_parse(pw->buf, pw->have + (size_t)k, &h, &err)) {
    case PROXY_PROTOCOL_MORE: /* all of it is header: consume, wait for the rest */
        if (take(pw, (size_t)k) < 0)
            pw->cb(pw->arg, NULL, "read error");
        return;
    case PROXY_PROTOCOL_DONE:
        if (take(pw, h.len - pw->have) < 0)
            pw->cb(pw->arg, NULL, "read error");
        else
            pw->cb(pw->arg, &h, NULL);
        return;
    case PROXY_PROTOCOL_ERROR:
        pw->cb(pw->arg, NULL, err);
        return;
    }
}

struct proxy_wait *proxy_wait_start(struct event_base *base, int fd, proxy_wait_cb cb, void *arg)
{
    struct proxy_wait *pw = malloc(sizeof *pw);
    if (!pw)
        return NULL;
    *pw = (struct proxy_wait){.fd = fd, .cb = cb, .arg = arg};
    pw->ev = event_new(base, fd, EV_READ | EV_PERSIST, on_readable, pw);
    if (!pw->ev || event_add(pw->ev, NULL) < 0) {
        if (pw->ev)
            event_free(pw->ev);
        free(pw);
        return NULL;
    }
    return pw;
}

int proxy_wait_end(struct proxy_wait *pw)
{
    int fd = pw->fd;
    event_free(pw->ev);
    free(pw);
    return fd;
}

void proxy_wait_free(struct proxy_wait *pw)
{
    close(proxy_wait_end(pw));
}
