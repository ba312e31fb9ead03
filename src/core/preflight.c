/*
 * preflight: the run (see preflight.h), the report lines, and the upstream checks:
 * a TCP connect to every server of every pool, and the TLS handshake (chain and name
 * verified as the workers will) when the pool has tls.enabled.
 */
#include "core/preflight.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "config/config.h"
#include "upstream/upstream_tls.h"

/* Beyond the clients' own timeouts, so that those report first. */
#define WAIT_MARGIN_MS 500

void preflight_report(struct preflight *pf, const char *where, const char *what,
                      enum preflight_result res, const char *detail)
{
    pf->checks++;
    if (res == PF_FAIL)
        pf->failed++;
    if (res == PF_WARN)
        pf->warnings++;
    static const char *const tag[] = {[PF_OK] = "ok", [PF_WARN] = "warning", [PF_FAIL] = "FAIL"};
    printf("%s: %s: %s%s%s\n", where, what, tag[res], detail && *detail ? ": " : "",
           detail ? detail : "");
    fflush(stdout);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct preflight *pf = arg;
    pf->expired = true;
}

bool preflight_wait(struct preflight *pf, const bool *done)
{
    struct timeval tv = {.tv_sec = (PREFLIGHT_TIMEOUT_MS + WAIT_MARGIN_MS) / 1000,
                         .tv_usec = (PREFLIGHT_TIMEOUT_MS + WAIT_MARGIN_MS) % 1000 * 1000};
    pf->expired = false;
    evtimer_add(pf->deadline, &tv);
    while (!*done && !pf->expired)
        event_base_loop(pf->base, EVLOOP_ONCE);
    evtimer_del(pf->deadline);
    return *done;
}

/* ---- upstreams ------------------------------------------------------------------------ */

static long long ms_left(const struct timespec *end)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (end->tv_sec - now.tv_sec) * 1000LL + (end->tv_nsec - now.tv_nsec) / 1000000;
}

/* Waits for events on fd until end; 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, const struct timespec *end)
{
    for (;;) {
        long long left = ms_left(end);
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)left);
        if (n >= 0 || errno != EINTR)
            return n > 0 ? 1 : n;
    }
}

/* A connected socket to a, or -1 with why; at most until end. */
static int tcp_connect(const struct config_addr *a, const struct timespec *end, char *why,
                       size_t len)
{
    struct sockaddr_storage ss = {0};
    socklen_t sslen = 0;
    if (a->path) {
        struct sockaddr_un *su = (struct sockaddr_un *)&ss;
        su->sun_family = AF_UNIX;
        snprintf(su->sun_path, sizeof su->sun_path, "%s", a->path);
        sslen = sizeof *su;
    } else {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
        char port[8];
        snprintf(port, sizeof port, "%u", (unsigned)a->port);
        int rc = getaddrinfo(a->host, port, &hints, &res);
        if (rc != 0) {
            snprintf(why, len, "cannot resolve %s: %s", a->host, gai_strerror(rc));
            return -1;
        }
        memcpy(&ss, res->ai_addr, res->ai_addrlen);
        sslen = res->ai_addrlen;
        freeaddrinfo(res);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, len, "socket: %s", strerror(errno));
        return -1;
    }
    int err = 0;
    socklen_t elen = sizeof err;
    if (connect(fd, (struct sockaddr *)&ss, sslen) < 0) {
        if (errno != EINPROGRESS)
            err = errno;
        else if (wait_fd(fd, POLLOUT, end) <= 0)
            err = ETIMEDOUT;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
            err = errno;
    }
    if (err) {
        snprintf(why, len, "connect: %s", err == ETIMEDOUT ? "timed out" : strerror(err));
        close(fd);
        return -1;
    }
    return fd;
}

/* The TLS handshake on fd as the workers do it; 0, or -1 with why. */
static int tls_handshake(SSL_CTX *ctx, const struct config_upstream *u, const struct config_addr *a,
                         int fd, const struct timespec *end, char *why, size_t len)
{
    SSL *ssl = upstream_tls_new_ssl(ctx, u, a);
    int rc = -1;
    if (!ssl || !SSL_set_fd(ssl, fd)) {
        snprintf(why, len, "TLS setup failed");
        goto out;
    }
    for (;;) {
        int r = SSL_connect(ssl);
        if (r == 1) {
            rc = 0;
            break;
        }
        int e = SSL_get_error(ssl, r);
        int ready = e == SSL_ERROR_WANT_READ    ? wait_fd(fd, POLLIN, end)
                    : e == SSL_ERROR_WANT_WRITE ? wait_fd(fd, POLLOUT, end)
                                                : -2;
        if (ready > 0)
            continue;
        long v = SSL_get_verify_result(ssl);
        unsigned long le = ERR_peek_last_error();
        char es[160] = "the peer closed the connection";
        if (le)
            ERR_error_string_n(le, es, sizeof es);
        if (ready == 0)
            snprintf(why, len, "TLS handshake timed out");
        else if (v != X509_V_OK)
            snprintf(why, len, "TLS certificate verification failed: %s",
                     X509_verify_cert_error_string(v));
        else
            snprintf(why, len, "TLS handshake failed: %s", es);
        break;
    }
out:
    SSL_free(ssl);
    ERR_clear_error();
    return rc;
}

static void check_server(struct preflight *pf, const struct config_upstream *u, SSL_CTX *ctx,
                         const struct config_addr *a)
{
    char where[320], why[256];
    snprintf(where, sizeof where, "upstream %s %s", u->name, a->text);
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += PREFLIGHT_TIMEOUT_MS / 1000;
    int fd = tcp_connect(a, &end, why, sizeof why);
    if (fd < 0) {
        preflight_report(pf, where, u->tls.enabled ? "connect (TCP, TLS)" : "connect (TCP)",
                         PF_FAIL, why);
        return;
    }
    if (!u->tls.enabled) {
        preflight_report(pf, where, "connect (TCP)", PF_OK, NULL);
    } else if (!ctx) {
        preflight_report(pf, where, "connect (TCP, TLS)", PF_FAIL, "no TLS context");
    } else {
        int rc = tls_handshake(ctx, u, a, fd, &end, why, sizeof why);
        preflight_report(pf, where, "connect (TCP, TLS)", rc == 0 ? PF_OK : PF_FAIL,
                         rc == 0 ? NULL : why);
    }
    close(fd);
}

static void preflight_upstreams(struct preflight *pf)
{
    const struct config *cfg = pf->cfg;
    for (size_t i = 0; i < cfg->num_upstreams; i++) {
        const struct config_upstream *u = &cfg->upstreams[i];
        char err[256] = "";
        SSL_CTX *ctx = u->tls.enabled ? upstream_tls_ctx_new(u, err, sizeof err) : NULL;
        for (size_t k = 0; k < u->num_servers; k++)
            check_server(pf, u, ctx, &u->servers[k]);
        SSL_CTX_free(ctx);
    }
}

/* ---- the run -------------------------------------------------------------------------- */

int preflight_run(const char *path)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load(path, &errs);
    config_errors_free(&errs);
    if (!cfg)
        return 1;
    struct preflight pf = {.cfg = cfg};
    int rc = 1;
    signal(SIGPIPE, SIG_IGN); /* the Redis client writes to peers that may be gone */
    pf.base = event_base_new();
    if (!pf.base || !(pf.deadline = evtimer_new(pf.base, deadline_cb, &pf))) {
        fprintf(stderr, "preflight: out of memory\n");
        goto out;
    }
    preflight_redis(&pf);
    preflight_upstreams(&pf);
    if (pf.failed)
        printf("preflight: %u of %u checks failed\n", pf.failed, pf.checks);
    else
        printf("preflight: all %u checks passed%s\n", pf.checks,
               pf.warnings ? " (with warnings)" : "");
    rc = pf.failed ? 1 : 0;
out:
    if (pf.deadline)
        event_free(pf.deadline);
    if (pf.base)
        event_base_free(pf.base);
    config_unref(cfg);
    return rc;
}
