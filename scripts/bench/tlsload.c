/*
 * tlsload: TLS handshake load generator for scripts/bench.sh.
 *
 *   tlsload -p PORT [-a 127.0.0.1] [-s SNI] [-c CONCURRENCY] [-d SECONDS] [-P PATH]
 *           [-t 1.2|1.3]   (highest TLS version offered; default 1.3)
 *
 * Keeps CONCURRENCY connections going from one thread (epoll, non-blocking). Each
 * connection: TCP connect, TLS handshake, one "GET PATH HTTP/1.1" with
 * "Connection: close", read the response until the server closes, close. Every
 * connection after a slot's first offers the newest resumable session (TLS 1.3
 * ticket, TLS 1.2 session id or ticket) that slot's earlier connections received,
 * as a browser would: the count of resumed handshakes shows whether the server
 * resumed anything.
 * New connections are started for SECONDS; the ones in flight then finish (3 s
 * at most) and are counted.
 *
 * Prints one line of key=value pairs:
 *   handshakes resumed full offered renewed ok errors elapsed rate proto cipher group key
 * offered = handshakes that offered a session; renewed = resumed handshakes that
 * brought a new ticket; ok = responses with status 200; errors = failed connects,
 * handshakes, reads or other statuses. rate = ok per second. Exit status 0 unless nothing completed.
 *
 * Build: cc -O2 -o tlsload tlsload.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum state { S_IDLE, S_CONNECT, S_HANDSHAKE, S_WRITE, S_READ };

struct slot {
    int fd;
    enum state st;
    SSL *ssl;
    SSL_SESSION *sess; /* offered on this slot's next connection */
    char head[64];     /* first bytes of the response (status line) */
    size_t head_len;
    size_t wrote;
    unsigned events;
    double started;
};

static SSL_CTX *ctx;
static int ep;
static struct sockaddr_in addr;
static const char *sni = "localhost";
static char req[512];
static size_t req_len;
static long n_handshakes, n_resumed, n_ok, n_errors, n_offered, n_renewed;
static char proto[32], cipher[64], group[32], keytype[32];
static int inflight;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void want(struct slot *s, int idx, unsigned ev)
{
    if (s->events == ev)
        return;
    struct epoll_event e = {.events = ev, .data.u32 = (uint32_t)idx};
    epoll_ctl(ep, s->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s->fd, &e);
    s->events = ev;
}

static void finish(struct slot *s, int ok)
{
    if (s->ssl) {
        if (ok) {
            /* The server closed after its response: a clean end. Without this
             * SSL_free would mark the session not resumable (as after an error). */
            SSL_set_shutdown(s->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
            /* Keep the newest resumable session; a server that sent no new
             * ticket on a resumed connection gets its previous ticket again. */
            SSL_SESSION *sess = SSL_get1_session(s->ssl);
            if (sess && SSL_SESSION_is_resumable(sess)) {
                if (SSL_session_reused(s->ssl) && sess != s->sess)
                    n_renewed++;
                if (s->sess)
                    SSL_SESSION_free(s->sess);
                s->sess = sess;
            } else if (sess) {
                SSL_SESSION_free(sess);
            }
        }
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    if (s->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
    }
    s->fd = -1;
    s->events = 0;
    s->st = S_IDLE;
    inflight--;
    if (ok) {
        if (s->head_len >= 12 && memcmp(s->head, "HTTP/1.1 200", 12) == 0)
            n_ok++;
        else
            n_errors++;
    } else {
        n_errors++;
    }
}

static void start(struct slot *s, int idx)
{
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        perror("socket");
        exit(2);
    }
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->head_len = 0;
    s->wrote = 0;
    s->events = 0;
    s->started = now();
    inflight++;
    if (connect(s->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        finish(s, 0);
        return;
    }
    s->st = S_CONNECT;
    want(s, idx, EPOLLOUT);
}

static void record_params(SSL *ssl)
{
    if (proto[0])
        return;
    snprintf(proto, sizeof proto, "%s", SSL_get_version(ssl));
    snprintf(cipher, sizeof cipher, "%s", SSL_get_cipher_name(ssl));
    int nid = SSL_get_negotiated_group(ssl);
    const char *g = nid ? OBJ_nid2sn(nid) : NULL;
    snprintf(group, sizeof group, "%s", g ? g : "?");
    X509 *cert = SSL_get1_peer_certificate(ssl);
    if (cert) {
        EVP_PKEY *pk = X509_get0_pubkey(cert);
        snprintf(keytype, sizeof keytype, "%s-%d", pk ? OBJ_nid2sn(EVP_PKEY_base_id(pk)) : "?",
                 pk ? EVP_PKEY_get_bits(pk) : 0);
        X509_free(cert);
    }
}

/* Drives one slot as far as it goes without blocking. */
static void step(struct slot *s, int idx)
{
    for (;;) {
        int r, err = 0;
        switch (s->st) {
        case S_IDLE:
            return;
        case S_CONNECT: {
            int soerr = 0;
            socklen_t len = sizeof soerr;
            getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
            if (soerr) {
                finish(s, 0);
                return;
            }
            s->ssl = SSL_new(ctx);
            SSL_set_fd(s->ssl, s->fd);
            SSL_set_tlsext_host_name(s->ssl, sni);
            if (s->sess) {
                SSL_set_session(s->ssl, s->sess);
                n_offered++;
            }
            SSL_set_connect_state(s->ssl);
            s->st = S_HANDSHAKE;
            continue;
        }
        case S_HANDSHAKE:
            r = SSL_do_handshake(s->ssl);
            if (r == 1) {
                n_handshakes++;
                if (SSL_session_reused(s->ssl))
                    n_resumed++;
                record_params(s->ssl);
                s->st = S_WRITE;
                continue;
            }
            err = SSL_get_error(s->ssl, r);
            break;
        case S_WRITE: {
            size_t w = 0;
            r = SSL_write_ex(s->ssl, req + s->wrote, req_len - s->wrote, &w);
            if (r == 1) {
                s->wrote += w;
                if (s->wrote == req_len)
                    s->st = S_READ;
                continue;
            }
            err = SSL_get_error(s->ssl, r);
            break;
        }
        case S_READ: {
            char buf[16384];
            size_t got = 0;
            r = SSL_read_ex(s->ssl, buf, sizeof buf, &got);
            if (r == 1) {
                size_t room = sizeof s->head - s->head_len;
                size_t n = got < room ? got : room;
                memcpy(s->head + s->head_len, buf, n);
                s->head_len += n;
                continue;
            }
            err = SSL_get_error(s->ssl, r);
            if (err == SSL_ERROR_ZERO_RETURN ||
                (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
                ERR_clear_error();
                finish(s, s->head_len > 0);
                return;
            }
            break;
        }
        }
        if (err == SSL_ERROR_WANT_READ) {
            want(s, idx, EPOLLIN);
            return;
        }
        if (err == SSL_ERROR_WANT_WRITE) {
            want(s, idx, EPOLLOUT);
            return;
        }
        if (n_errors < 5) {
            fprintf(stderr, "tlsload: connection failed in state %d: ssl error %d\n", s->st, err);
            ERR_print_errors_fp(stderr);
        }
        ERR_clear_error();
        finish(s, 0);
        return;
    }
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *path = "/";
    int port = 0, conc = 16, maxver = TLS1_3_VERSION;
    double duration = 5;
    int opt;
    while ((opt = getopt(argc, argv, "a:p:s:c:d:P:t:")) != -1) {
        switch (opt) {
        case 'a': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 's': sni = optarg; break;
        case 'c': conc = atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'P': path = optarg; break;
        case 't': maxver = strcmp(optarg, "1.2") == 0 ? TLS1_2_VERSION : TLS1_3_VERSION; break;
        default:
            fprintf(stderr, "usage: tlsload -p PORT [-a ADDR] [-s SNI] [-c N] [-d SECONDS] [-P PATH] [-t 1.2|1.3]\n");
            return 2;
        }
    }
    if (port <= 0 || conc <= 0 || duration <= 0) {
        fprintf(stderr, "tlsload: need -p PORT, positive -c and -d\n");
        return 2;
    }
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "tlsload: bad address %s\n", host);
        return 2;
    }
    req_len = (size_t)snprintf(req, sizeof req,
                               "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, sni);

    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, maxver);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* as h2load and wrk: no chain check */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);

    ep = epoll_create1(EPOLL_CLOEXEC);
    struct slot *slots = calloc((size_t)conc, sizeof *slots);
    for (int i = 0; i < conc; i++) {
        slots[i].fd = -1;
        start(&slots[i], i);
        step(&slots[i], i);
    }
    double t0 = now(), stop = t0 + duration, hard = stop + 3, t_end = t0;
    struct epoll_event evs[256];
    while (inflight > 0) {
        double t = now();
        if (t >= hard)
            break;
        int n = epoll_wait(ep, evs, 256, 100);
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u32;
            step(&slots[i], i);
        }
        t = now();
        for (int i = 0; i < conc; i++) {
            if (slots[i].st != S_IDLE)
                continue;
            t_end = t;
            if (t < stop) {
                start(&slots[i], i);
                step(&slots[i], i);
            }
        }
    }
    if (inflight > 0) {
        for (int i = 0; i < conc; i++)
            if (slots[i].st != S_IDLE)
                finish(&slots[i], 0);
        t_end = now();
    }
    double elapsed = t_end - t0;
    printf("handshakes=%ld resumed=%ld full=%ld offered=%ld renewed=%ld ok=%ld errors=%ld "
           "elapsed=%.3f rate=%.1f proto=%s cipher=%s group=%s key=%s\n",
           n_handshakes, n_resumed, n_handshakes - n_resumed, n_offered, n_renewed, n_ok, n_errors, elapsed,
           elapsed > 0 ? n_ok / elapsed : 0.0, proto[0] ? proto : "-", cipher[0] ? cipher : "-",
           group[0] ? group : "-", keytype[0] ? keytype : "-");
    return n_ok > 0 ? 0 : 1;
}
