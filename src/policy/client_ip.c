#include "policy/client_ip.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <string.h>

#include "core/snapshot.h"
#include "http/headername.h"
#include "http/request.h"
#include "util/netutil.h"

#define ENTRY_MAX 64 /* "[v6 address]:port" and some slack; longer is not an address */

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * One list entry as an address: "192.0.2.7", "2001:db8::1", and the forms some
 * proxies write, "192.0.2.7:1234", "[2001:db8::1]" and "[2001:db8::1]:1234".
 */
static bool entry_addr(const char *p, size_t n, struct sockaddr_storage *ss)
{
    char buf[ENTRY_MAX + 1];
    if (n == 0 || n > ENTRY_MAX)
        return false;
    memcpy(buf, p, n);
    buf[n] = '\0';
    char *host = buf;
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (!close || (close[1] && close[1] != ':'))
            return false;
        *close = '\0';
        host = buf + 1;
    } else {
        char *colon = strchr(buf, ':');
        if (colon && !strchr(colon + 1, ':'))
            *colon = '\0'; /* IPv4 with a port: one colon only */
    }
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (buf[0] != '[' && inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        return true;
    }
    return false;
}

/* Walks one field value's entries from the right; 1 found (out set), 0 go on, -1 stop. */
static int scan_value(struct http1_str v, const struct netutil_cidr *trusted, size_t num_trusted,
                      size_t *scanned, char *out, size_t cap, char *fallback)
{
    size_t end = v.len;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && v.p[start - 1] != ',')
            start--;
        size_t a = start, b = end;
        while (a < b && ows(v.p[a]))
            a++;
        while (b > a && ows(v.p[b - 1]))
            b--;
        end = start ? start - 1 : 0;
        if (a == b)
            continue; /* an empty element ("a,,b"): RFC 9110 list syntax allows it */
        struct sockaddr_storage ss;
        if (++*scanned > CLIENT_IP_XFF_SCAN || !entry_addr(v.p + a, b - a, &ss))
            return -1;
        const struct sockaddr *sa = (const struct sockaddr *)&ss;
        if (!netutil_cidr_match(trusted, num_trusted, sa)) {
            netutil_addr_to_str(sa, out, cap);
            return 1;
        }
        netutil_addr_to_str(sa, fallback, NETUTIL_ADDRSTRLEN);
    }
    return 0;
}

int client_ip_from_xff(const struct http1_request *h, const struct netutil_cidr *trusted,
                       size_t num_trusted, char *out, size_t cap)
{
    char fallback[NETUTIL_ADDRSTRLEN] = "";
    size_t scanned = 0;
    for (size_t i = h->num_headers; i-- > 0;) {
        if (!headername_eq_loose(h->headers[i].name, "X-Forwarded-For"))
            continue;
        int rc =
            scan_value(h->headers[i].value, trusted, num_trusted, &scanned, out, cap, fallback);
        if (rc > 0)
            return 0;
        if (rc < 0)
            break;
    }
    if (!fallback[0] || strlen(fallback) >= cap)
        return -1;
    memcpy(out, fallback, strlen(fallback) + 1);
    return 0;
}

enum phase_result client_ip_phase(struct request *r)
{
    const struct snapshot *snap = r->snap;
    if (snap->num_trusted &&
        netutil_cidr_match(snap->trusted, snap->num_trusted, &r->peer->addr.sa))
        client_ip_from_xff(&r->h, snap->trusted, snap->num_trusted, r->client_ip,
                           sizeof r->client_ip);
    return PHASE_CONTINUE;
}
