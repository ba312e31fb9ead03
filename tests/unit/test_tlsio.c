/*
 * tlsio: the server-side TLS stream (src/tls/tlsio.h) over a socketpair, against a
 * real OpenSSL client running in a thread with a blocking socket.
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls/tlsio.h"

static SSL_CTX *server_ctx, *client_ctx;

/* A self-signed P-256 certificate made in memory: no files, no openssl CLI. */
static int make_server_ctx(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *crt = X509_new();
    if (!key || !crt)
        return -1;
    ASN1_INTEGER_set(X509_get_serialNumber(crt), 1);
    X509_gmtime_adj(X509_getm_notBefore(crt), -60);
    X509_gmtime_adj(X509_getm_notAfter(crt), 3600);
    X509_NAME *name = X509_get_subject_name(crt);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"tlsio", -1, -1, 0);
    X509_set_issuer_name(crt, name);
    X509_set_pubkey(crt, key);
    X509_sign(crt, key, EVP_sha256());
    server_ctx = SSL_CTX_new(TLS_server_method());
    client_ctx = SSL_CTX_new(TLS_client_method());
    int ok = server_ctx && client_ctx && SSL_CTX_use_certificate(server_ctx, crt) == 1 &&
             SSL_CTX_use_PrivateKey(server_ctx, key) == 1;
    SSL_CTX_set_mode(server_ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(server_ctx, 1); /* as moat's policy */
    SSL_CTX_set_num_tickets(server_ctx,
                            0); /* nothing unsolicited for a client that does not read */
    X509_free(crt);
    EVP_PKEY_free(key);
    return ok ? 0 : -1;
}

static int group_setup(void **state)
{
    return make_server_ctx();
}

static int group_teardown(void **state)
{
    SSL_CTX_free(server_ctx);
    SSL_CTX_free(client_ctx);
    return 0;
}

/* ---- the server side: an owner as conn.c is one ------------------------- */

struct owner {
    struct tlsio io;
    int depth;
    int connected, eof, error;
    bool echo;          /* move input to output */
    bool idle_after;    /* call tlsio_idle() once a line was echoed */
    size_t consumed;    /* bytes taken from the input */
    size_t take_per_cb; /* 0: all */
    size_t ack_at;      /* answer one byte once this much was consumed */
    uint64_t sum;       /* of the bytes consumed */
    bool received_shutdown;
    _Atomic uint64_t acct; /* tlsio_set_accounting() */
    bool check_acct;       /* the count equals what the buffers hold, at every callback */
};

static void o_read(void *arg)
{
    struct owner *o = arg;
    if (o->check_acct)
        assert_int_equal(o->acct, tlsio_input_len(&o->io) + tlsio_output_len(&o->io));
    struct evbuffer *in = tlsio_input(&o->io);
    size_t n = evbuffer_get_length(in);
    if (o->take_per_cb && n > o->take_per_cb)
        n = o->take_per_cb;
    unsigned char buf[4096];
    for (size_t left = n; left > 0;) {
        size_t k = left < sizeof buf ? left : sizeof buf;
        evbuffer_remove(in, buf, k);
        for (size_t i = 0; i < k; i++)
            o->sum += buf[i];
        if (o->echo)
            evbuffer_add(tlsio_output(&o->io), buf, k);
        left -= k;
    }
    o->consumed += n;
    if (o->ack_at && o->consumed == o->ack_at)
        evbuffer_add(tlsio_output(&o->io), "k", 1);
    if (o->idle_after && o->consumed > 0 && evbuffer_get_length(in) == 0)
        tlsio_idle(&o->io);
    if (evbuffer_get_length(in) > 0)
        tlsio_trigger_read(&o->io); /* the rest on the next turn, as a slow owner */
}

static void o_write(void *arg) {}

static void o_event(void *arg, int what)
{
    struct owner *o = arg;
    o->connected += !!(what & TLSIO_CONNECTED);
    o->eof += !!(what & TLSIO_EOF);
    o->error += !!(what & TLSIO_ERROR);
    if (what & (TLSIO_EOF | TLSIO_ERROR))
        o->received_shutdown = SSL_get_shutdown(tlsio_ssl(&o->io)) & SSL_RECEIVED_SHUTDOWN;
}

static void o_hold(void *arg)
{
    ((struct owner *)arg)->depth++;
}

static void o_release(void *arg)
{
    ((struct owner *)arg)->depth--;
}

static const struct tlsio_ops ops = {o_read, o_write, o_event, o_hold, o_release};

/* ---- the client: a thread with a blocking socket ------------------------ */

enum client_end { END_CLOSE_NOTIFY, END_TCP_FIN, END_NONE };

struct client {
    int fd;
    const unsigned char *send;
    size_t send_len;
    size_t expect_back; /* bytes to read back (echo) */
    enum client_end end;
    bool garbage; /* no TLS at all */
    bool tcp;     /* TCP over loopback instead of a socketpair (MSG_MORE acts there) */
    int ok;
    unsigned char back[48 * 1024];
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    if (c->garbage) {
        static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        c->ok = write(c->fd, junk, sizeof junk - 1) > 0;
        char b[64];
        while (read(c->fd, b, sizeof b) > 0) {
        }
        close(c->fd);
        return NULL;
    }
    SSL *s = SSL_new(client_ctx);
    SSL_set_fd(s, c->fd);
    c->ok = SSL_connect(s) == 1;
    for (size_t off = 0; c->ok && off < c->send_len;) {
        int n = SSL_write(s, c->send + off,
                          (int)(c->send_len - off > 65536 ? 65536 : c->send_len - off));
        c->ok = n > 0;
        off += n > 0 ? (size_t)n : 0;
    }
    for (size_t off = 0; c->ok && off < c->expect_back;) {
        int n = SSL_read(s, c->back + off, (int)(c->expect_back - off));
        c->ok = n > 0;
        off += n > 0 ? (size_t)n : 0;
    }
    if (c->end == END_CLOSE_NOTIFY)
        SSL_shutdown(s);
    if (c->end != END_NONE)
        shutdown(c->fd, SHUT_RDWR);
    SSL_free(s);
    close(c->fd);
    return NULL;
}

struct rig {
    struct event_base *base;
    struct owner o;
    struct client c;
    pthread_t th;
};

/* A connected TCP pair over 127.0.0.1; the client end reads with a 2 s timeout. */
static void tcp_pair(int sv[2])
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
    sv[1] = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(sv[1], (struct sockaddr *)&a, sizeof a), 0);
    sv[0] = accept(l, NULL, NULL);
    assert_true(sv[0] >= 0);
    close(l);
    struct timeval tv = {2, 0};
    setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static void rig_start(struct rig *r, struct client c)
{
    int sv[2];
    if (c.tcp)
        tcp_pair(sv);
    else
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    r->base = event_base_new();
    assert_non_null(r->base);
    SSL *ssl = SSL_new(server_ctx);
    SSL_set_accept_state(ssl);
    assert_int_equal(tlsio_init(&r->o.io, r->base, sv[0], ssl, &ops, &r->o), 0);
    assert_true(c.expect_back <= sizeof c.back);
    r->c = c;
    r->c.fd = sv[1];
    assert_int_equal(pthread_create(&r->th, NULL, client_main, &r->c), 0);
}

/* Runs the loop until done(o) or 10 s. */
static void rig_run(struct rig *r, bool (*done)(const struct owner *))
{
    time_t end = time(NULL) + 10;
    struct timeval tick = {0, 20000};
    while (!done(&r->o) && time(NULL) < end) {
        event_base_loopexit(r->base, &tick);
        event_base_loop(r->base, EVLOOP_ONCE);
    }
}

static void rig_stop(struct rig *r)
{
    pthread_join(r->th, NULL);
    tlsio_cleanup(&r->o.io);
    event_base_free(r->base);
    assert_int_equal(r->o.depth, 0);
}

static bool ended(const struct owner *o)
{
    return o->eof || o->error;
}

static void test_echo_then_close_notify(void **state)
{
    static const unsigned char msg[] = "hello over tlsio";
    struct rig r = {0};
    r.o.echo = true;
    rig_start(&r, (struct client){.send = msg,
                                  .send_len = sizeof msg - 1,
                                  .expect_back = sizeof msg - 1,
                                  .end = END_CLOSE_NOTIFY});
    rig_run(&r, ended);
    rig_stop(&r);
    assert_true(r.c.ok);
    assert_memory_equal(r.c.back, msg, sizeof msg - 1);
    assert_int_equal(r.o.connected, 1);
    assert_int_equal(r.o.eof, 1);
    assert_int_equal(r.o.error, 0);
    assert_true(r.o.received_shutdown);
}

static bool echoed_and_idle(const struct owner *o)
{
    return o->consumed == 5 && !o->io.in && !o->io.out;
}

/* Between requests an idle connection holds no buffers (and OpenSSL none either). */
static void test_idle_frees_buffers(void **state)
{
    struct rig r = {0};
    r.o.echo = true;
    r.o.idle_after = true;
    rig_start(&r, (struct client){.send = (const unsigned char *)"ping\n",
                                  .send_len = 5,
                                  .expect_back = 5,
                                  .end = END_CLOSE_NOTIFY});
    rig_run(&r, echoed_and_idle);
    assert_int_equal(r.o.consumed, 5);
    assert_null(r.o.io.in); /* freed once the echo was written */
    assert_null(r.o.io.out);
    rig_run(&r, ended);
    assert_int_equal(r.o.eof, 1);
    rig_stop(&r);
    assert_true(r.c.ok);
    assert_memory_equal(r.c.back, "ping\n", 5);
}

static bool got_all(const struct owner *o)
{
    return o->consumed == 3 * 1024 * 1024 || o->eof || o->error;
}

/* 3 MiB through a 16 KiB input limit and an owner taking 1000 bytes a turn: reading
 * pauses and resumes (also from what OpenSSL buffered with read-ahead), nothing is
 * lost or reordered. */
static void test_backpressure(void **state)
{
    size_t n = 3 * 1024 * 1024;
    unsigned char *data = malloc(n);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        data[i] = (unsigned char)(i * 7 + i / 4096);
        sum += data[i];
    }
    struct rig r = {0};
    r.o.take_per_cb = 1000;
    r.o.ack_at = n; /* the client closes only after that */
    rig_start(&r, (struct client){
                      .send = data, .send_len = n, .expect_back = 1, .end = END_CLOSE_NOTIFY});
    tlsio_set_read_high(&r.o.io, 16 * 1024);
    rig_run(&r, got_all);
    assert_int_equal(r.o.consumed, n);
    assert_true(r.o.sum == sum);
    rig_run(&r, ended);
    rig_stop(&r);
    assert_true(r.c.ok);
    free(data);
}

static bool got_half(const struct owner *o)
{
    return o->consumed >= 256 * 1024 || o->eof || o->error;
}

/* The count of buffered bytes (moat_buffered_bytes, limits.max_memory) follows the
 * buffers exactly through pauses, echoes and idle frees, and drops what they still
 * held when the stream is freed with bytes in them. */
static void test_accounting(void **state)
{
    size_t n = 1024 * 1024;
    unsigned char *data = calloc(1, n);
    struct rig r = {0};
    r.o.take_per_cb = 1000;
    r.o.echo = true; /* the client reads nothing back: the output fills too */
    r.o.check_acct = true;
    rig_start(&r, (struct client){.send = data, .send_len = n, .end = END_NONE});
    tlsio_set_accounting(&r.o.io, &r.o.acct);
    tlsio_set_read_high(&r.o.io, 16 * 1024);
    rig_run(&r, got_half);
    assert_true(r.o.consumed >= 256 * 1024);
    assert_int_equal(r.o.acct, tlsio_input_len(&r.o.io) + tlsio_output_len(&r.o.io));
    assert_true(r.o.acct > 0);
    tlsio_cleanup(&r.o.io); /* with bytes in both buffers; the client's writes fail */
    assert_int_equal(r.o.acct, 0);
    pthread_join(r.th, NULL);
    event_base_free(r.base);
    free(data);
}

/*
 * 40 KiB echoed over TCP (the socket BIO of tlsio.c, where MSG_MORE acts): one
 * record per SSL_write, all but the last of a batch sent with MSG_MORE. Every
 * byte comes back, in order, within 2 s (the client's read times out then).
 */
static void test_large_write_over_tcp(void **state)
{
    static unsigned char data[40000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 13 + i / 1000);
    struct rig r = {0};
    r.o.echo = true;
    rig_start(&r, (struct client){.send = data,
                                  .send_len = sizeof data,
                                  .expect_back = sizeof data,
                                  .end = END_CLOSE_NOTIFY,
                                  .tcp = true});
    time_t t0 = time(NULL);
    rig_run(&r, ended);
    rig_stop(&r);
    assert_true(r.c.ok);
    assert_true(time(NULL) - t0 < 2);
    assert_memory_equal(r.c.back, data, sizeof data);
    assert_int_equal(r.o.eof, 1);
    assert_int_equal(r.o.error, 0);
}

/* The peer closes the TCP connection without close_notify: EOF, not an error. */
static void test_fin_without_close_notify(void **state)
{
    struct rig r = {0};
    rig_start(
        &r, (struct client){.send = (const unsigned char *)"x", .send_len = 1, .end = END_TCP_FIN});
    rig_run(&r, ended);
    rig_stop(&r);
    assert_int_equal(r.o.connected, 1);
    assert_int_equal(r.o.eof, 1);
    assert_int_equal(r.o.error, 0);
    assert_false(r.o.received_shutdown);
}

/* Plain HTTP on the TLS port: an error event, no connected one, no crash. */
static void test_not_tls(void **state)
{
    struct rig r = {0};
    rig_start(&r, (struct client){.garbage = true});
    rig_run(&r, ended);
    assert_int_equal(r.o.connected, 0);
    assert_int_equal(r.o.error, 1);
    tlsio_cleanup(&r.o.io); /* closes our end: the client's read loop ends */
    pthread_join(r.th, NULL);
    event_base_free(r.base);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as moat: a write to a closed peer is an error, not a signal */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_then_close_notify),
        cmocka_unit_test(test_idle_frees_buffers),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_accounting),
        cmocka_unit_test(test_fin_without_close_notify),
        cmocka_unit_test(test_large_write_over_tcp),
        cmocka_unit_test(test_not_tls),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
