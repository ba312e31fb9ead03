#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "netutil.h"

#define LISTEN_BACKLOG 4096

int listener_open(const struct config_addr *a, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (netutil_sockaddr_numeric(a->host, a->port, &ss, &len) < 0) {
        snprintf(err, errlen, "%s: listen addresses must be numeric IPv4/IPv6", a->text);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        goto fail;
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, LISTEN_BACKLOG) < 0)
        goto fail;
    return fd;
fail:
    snprintf(err, errlen, "%s: %s", a->text, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}
