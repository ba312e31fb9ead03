#include "tls/tlsio.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <openssl/bio.h>
#include <openssl/err.h>

/* One TLS record of plaintext: the most one SSL_read() returns, and the most
 * one SSL_write() is given (one record per call). */
#define READ_CHUNK 16384
#define RECORD_MAX 16384
#define WRITE_VECS 8

static void do_read(struct tlsio *t);
static void do_write(struct tlsio *t);
static void on_io(evutil_socket_t fd, short what, void *arg);

/* ---- the socket BIO ------------------------------------------------------
 * OpenSSL's socket BIO, with one difference: a record written while more of the
 * same batch follow goes out with MSG_MORE, so the records of a response larger
 * than one record (16 KiB of body and its head: two) leave in one TCP segment
 * train instead of one transmission (and one wake-up of the peer) per record.
 * The last record of a batch is sent without the flag, which pushes them all. */

static int sock_write(BIO *b, const char *buf, int len)
{
    const struct tlsio *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    int flags = MSG_NOSIGNAL | (t->write_more ? MSG_MORE : 0);
    ssize_t n = send(t->fd, buf, (size_t)len, flags);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)n;
}

static int sock_read(BIO *b, char *buf, int len)
{
    const struct tlsio *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n = read(t->fd, buf, (size_t)len);
    if (n == 0)
        BIO_set_flags(b, BIO_FLAGS_IN_EOF); /* OpenSSL 3 tells a FIN by BIO_eof() */
    else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_read(b);
    return (int)n;
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    const struct tlsio *t = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* nothing is buffered here */
    case BIO_CTRL_EOF:
        return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
    case BIO_C_GET_FD:
        if (ptr)
            *(int *)ptr = t->fd;
        return t->fd;
    default:
        return 0;
    }
}

static int sock_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *sock_method; /* made once, kept for the process's life */

static void sock_method_make(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "moat tlsio socket");
    if (m && BIO_meth_set_write(m, sock_write) && BIO_meth_set_read(m, sock_read) &&
        BIO_meth_set_ctrl(m, sock_ctrl) && BIO_meth_set_create(m, sock_create))
        sock_method = m;
    else
        BIO_meth_free(m);
}

/* The stream's BIO for reading and writing; NULL when out of memory. */
static BIO *sock_bio(struct tlsio *t)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sock_method_make);
    BIO *b = sock_method ? BIO_new(sock_method) : NULL;
    if (b)
        BIO_set_data(b, t);
    return b;
}

static size_t len_of(const struct evbuffer *b)
{
    return b ? evbuffer_get_length(b) : 0;
}

static bool input_full(const struct tlsio *t)
{
    return t->read_high && len_of(t->in) >= t->read_high;
}

static void on_input(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg);
static void on_output(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg);

/* The owner's count of buffered bytes: a plain load and store, one writer. */
static void account(struct tlsio *t, size_t added, size_t deleted)
{
    if (!t->acct || added == deleted)
        return;
    uint64_t cur = atomic_load_explicit(t->acct, memory_order_relaxed);
    atomic_store_explicit(t->acct, cur + added - deleted, memory_order_relaxed);
}

static void free_buffers(struct tlsio *t)
{
    account(t, 0, len_of(t->in) + len_of(t->out)); /* freeing runs no callback */
    if (t->in)
        evbuffer_free(t->in); /* with its callback */
    if (t->out)
        evbuffer_free(t->out);
    t->in = t->out = NULL;
}

/* The buffers exist from the first byte received until the connection is idle
 * again (tlsio_idle()): ~400 bytes an idle connection does not hold. */
static int make_buffers(struct tlsio *t)
{
    if (t->in)
        return 0;
    t->in = evbuffer_new();
    t->out = evbuffer_new();
    if (!t->in || !t->out || !evbuffer_add_cb(t->in, on_input, t) ||
        !evbuffer_add_cb(t->out, on_output, t)) {
        free_buffers(t);
        return -1;
    }
    return 0;
}

/* Runs the handler from the loop soon for `what`, without asking epoll. */
static void activate(struct tlsio *t, short what)
{
    t->activated |= what;
    event_active(&t->ev, what, 1);
}

/* epoll interest follows what the stream waits for; nothing else registers it. */
static void update_events(struct tlsio *t)
{
    bool r = false, w = false;
    if (!t->stopped && t->handshaking) {
        r = !t->hs_wants_write;
        w = t->hs_wants_write;
    } else if (!t->stopped) {
        r = (t->reading && !input_full(t)) || t->write_wants_read;
        w = t->write_blocked || t->read_wants_write;
    }
    short want = (short)((r ? EV_READ : 0) | (w ? EV_WRITE : 0));
    if (want == t->registered)
        return;
    /* A new interest set means a new event (rare: a blocked write, a full input,
     * reading paused). event_del() also drops a pending activation: renew it. */
    struct event_base *base = event_get_base(&t->ev);
    event_del(&t->ev);
    event_assign(&t->ev, base, t->fd, (short)(want | EV_PERSIST), on_io, t);
    if (want)
        event_add(&t->ev, NULL);
    t->registered = want;
    if (t->activated)
        event_active(&t->ev, t->activated, 1);
}

static int closed_status(int ret, int err)
{
    if (err == SSL_ERROR_ZERO_RETURN)
        return TLSIO_EOF; /* close_notify */
    unsigned long e = ERR_peek_error();
    if (err == SSL_ERROR_SYSCALL && e == 0 && ret == 0)
        return TLSIO_EOF; /* TCP FIN without close_notify (OpenSSL 1.1 style) */
    if (err == SSL_ERROR_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
        return TLSIO_EOF; /* the same, as OpenSSL 3 reports it */
    return TLSIO_ERROR;
}

/* Ends the stream with an event; nothing runs on it afterwards. */
static void finish(struct tlsio *t, int what)
{
    tlsio_stop(t);
    t->ops->event(t->arg, what);
}

static void handshake(struct tlsio *t)
{
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->handshaking = false;
        t->hs_wants_write = false;
        update_events(t);
        t->ops->event(t->arg, TLSIO_CONNECTED);
        if (t->stopped)
            return;
        do_read(t); /* the first request often came in the same flight as Finished */
        if (!t->stopped && len_of(t->out) > 0)
            do_write(t);
        return;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        t->hs_wants_write = e == SSL_ERROR_WANT_WRITE;
        update_events(t);
        return;
    }
    finish(t, closed_status(r, e));
}

/* One SSL_read() of at most room bytes into the input; its return value. */
static int read_once(struct tlsio *t, size_t room, bool *oom)
{
    int n;
    ERR_clear_error();
    if (len_of(t->in) == 0) {
        /* through the stack: an idle connection keeps no buffer at all */
        char buf[READ_CHUNK];
        n = SSL_read(t->ssl, buf, (int)room);
        if (n > 0 && (make_buffers(t) < 0 || evbuffer_add(t->in, buf, (size_t)n) != 0))
            *oom = true;
        return n;
    }
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(t->in, (ev_ssize_t)room, &v, 1) < 1) {
        *oom = true;
        return -1;
    }
    n = SSL_read(t->ssl, v.iov_base, (int)(room < v.iov_len ? room : v.iov_len));
    if (n > 0) {
        v.iov_len = (size_t)n;
        evbuffer_commit_space(t->in, &v, 1);
    }
    return n;
}

/* SSL_read()s until the input is full, the socket is empty or the stream ends;
 * whether anything came. *status: 0, or how the stream ended. */
static bool read_pass(struct tlsio *t, int *status)
{
    bool got = false;
    while (t->reading && !input_full(t)) {
        size_t room = READ_CHUNK, len = len_of(t->in);
        if (t->read_high && t->read_high - len < room)
            room = t->read_high - len;
        bool oom = false;
        int n = read_once(t, room, &oom);
        if (oom) {
            *status = TLSIO_ERROR;
            break;
        }
        if (n > 0) {
            got = true;
            t->idle_release = false;
            /* A short record with nothing more buffered: the socket is most
             * likely empty, and epoll (level-triggered) says so if not. This
             * saves a read() that would fail with EAGAIN, and lets OpenSSL's
             * record buffer go (SSL_MODE_RELEASE_BUFFERS). */
            if ((size_t)n < room && !SSL_has_pending(t->ssl))
                break;
            continue;
        }
        int e = SSL_get_error(t->ssl, n);
        if (e == SSL_ERROR_WANT_READ) {
            /* OpenSSL allocated its ~17 KiB record buffer for this attempt and,
             * even with SSL_MODE_RELEASE_BUFFERS, keeps it although nothing came:
             * most of an idle connection's memory. It refuses to free a buffer
             * that holds part of a record. */
            SSL_free_buffers(t->ssl);
            break;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            t->read_wants_write = true;
            break;
        }
        *status = closed_status(n, e);
        break;
    }
    return got;
}

/* Input passes one readable event may take: a large body the owner drains as it
 * comes (relayed upstream) is read on without a return to epoll, while one
 * connection still cannot hold the loop for more than a few inputs' worth. */
#define READ_PASSES 4

static void do_read(struct tlsio *t)
{
    int status = 0;
    for (int pass = 0; pass < READ_PASSES; pass++) {
        bool got = read_pass(t, &status), filled = input_full(t);
        bool cb = got || t->force_read_cb;
        t->force_read_cb = false;
        /* The owner first: a full input it drains keeps the read interest as it
         * is, where asking epoll first would drop it and add it again at once,
         * two epoll_ctl() per input's worth of a large body. */
        if (cb)
            t->ops->read(t->arg);
        /* on only after a full input the owner took all of: after a short read
         * the socket is most likely empty */
        if (t->stopped || status || !filled || !t->reading || len_of(t->in) > 0)
            break;
    }
    if (!t->stopped)
        update_events(t);
    if (status && !t->stopped)
        finish(t, status);
}

static void do_write(struct tlsio *t)
{
    bool wrote = false, blocked = false;
    int status = 0;
    while (!blocked && !status && len_of(t->out) > 0) {
        struct evbuffer_iovec v[WRITE_VECS];
        int nv = evbuffer_peek(t->out, -1, NULL, v, WRITE_VECS);
        if (nv > WRITE_VECS)
            nv = WRITE_VECS;
        size_t done = 0, total = len_of(t->out);
        for (int i = 0; i < nv && !blocked && !status; i++) {
            size_t off = 0;
            while (off < v[i].iov_len) {
                size_t chunk = v[i].iov_len - off;
                if (chunk > RECORD_MAX)
                    chunk = RECORD_MAX;
                t->write_more = total - done - off > chunk;
                ERR_clear_error();
                int n = SSL_write(t->ssl, (char *)v[i].iov_base + off, (int)chunk);
                t->write_more = false;
                if (n > 0) {
                    off += (size_t)n;
                    continue;
                }
                int e = SSL_get_error(t->ssl, n);
                if (e == SSL_ERROR_WANT_WRITE) {
                    blocked = true;
                } else if (e == SSL_ERROR_WANT_READ) {
                    blocked = true;
                    t->write_wants_read = true;
                } else {
                    status = TLSIO_ERROR;
                }
                break;
            }
            done += off;
        }
        if (done) {
            evbuffer_drain(t->out, done);
            wrote = true;
        }
    }
    t->write_blocked = blocked && !t->write_wants_read;
    if (t->idle_release && len_of(t->out) == 0 && len_of(t->in) == 0)
        free_buffers(t); /* the last response of an exchange is out */
    update_events(t);
    if (status) {
        finish(t, status);
        return;
    }
    if (wrote && len_of(t->out) <= t->write_low)
        t->ops->write(t->arg);
}

static void readable(struct tlsio *t)
{
    if (t->write_wants_read) {
        t->write_wants_read = false;
        do_write(t);
    }
    if (!t->stopped)
        do_read(t);
}

static void writable(struct tlsio *t)
{
    if (t->read_wants_write) {
        t->read_wants_write = false;
        do_read(t);
    }
    if (!t->stopped)
        do_write(t);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    struct tlsio *t = arg;
    const struct tlsio_ops *ops = t->ops;
    void *owner = t->arg;
    what |= t->activated;
    t->activated = 0;
    ops->hold(owner);
    if (!t->stopped && t->handshaking) {
        handshake(t);
    } else {
        if (!t->stopped && (what & EV_READ))
            readable(t);
        if (!t->stopped && (what & EV_WRITE))
            writable(t);
    }
    ops->release(owner);
}

/* Output added: write from the loop soon, without asking epoll (the socket is
 * almost always writable); write interest is registered only when blocked. */
static void on_output(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
    struct tlsio *t = arg;
    account(t, info->n_added, info->n_deleted);
    if (info->n_added && !t->stopped && !t->handshaking && !(t->registered & EV_WRITE))
        activate(t, EV_WRITE);
}

/* Input drained below the high-water mark: read again, at once if OpenSSL
 * already holds bytes the socket will not announce again. */
static void on_input(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
    struct tlsio *t = arg;
    account(t, info->n_added, info->n_deleted);
    if (!info->n_deleted || t->stopped || t->handshaking || !t->reading)
        return;
    update_events(t);
    if (!input_full(t) && SSL_has_pending(t->ssl))
        activate(t, EV_READ);
}

int tlsio_init(struct tlsio *t, struct event_base *base, int fd, SSL *ssl,
               const struct tlsio_ops *ops, void *arg)
{
    *t = (struct tlsio){
        .ssl = ssl, .fd = fd, .ops = ops, .arg = arg, .reading = true, .handshaking = true};
    BIO *bio = sock_bio(t);
    if (!bio || event_assign(&t->ev, base, fd, EV_PERSIST, on_io, t) < 0) {
        BIO_free(bio);
        return -1;
    }
    SSL_set_bio(ssl, bio, bio); /* the same BIO twice: the SSL takes our one reference */
    /* as bufferevent_openssl: write what fits, and retry from a moved buffer */
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    update_events(t);
    return 0;
}

void tlsio_stop(struct tlsio *t)
{
    t->stopped = true;
    update_events(t);
    t->activated = 0;
    event_del(&t->ev); /* also drops an activation not yet run */
}

void tlsio_cleanup(struct tlsio *t)
{
    if (!t->ssl)
        return;
    tlsio_stop(t);
    free_buffers(t);
    SSL_free(t->ssl);
    close(t->fd);
    t->ssl = NULL;
    t->fd = -1;
}

struct evbuffer *tlsio_input(struct tlsio *t)
{
    return make_buffers(t) < 0 ? NULL : t->in;
}

struct evbuffer *tlsio_output(struct tlsio *t)
{
    return make_buffers(t) < 0 ? NULL : t->out;
}

size_t tlsio_input_len(const struct tlsio *t)
{
    return len_of(t->in);
}

size_t tlsio_output_len(const struct tlsio *t)
{
    return len_of(t->out);
}

void tlsio_idle(struct tlsio *t)
{
    t->idle_release = true;
    if (len_of(t->in) == 0 && len_of(t->out) == 0)
        free_buffers(t);
}

void tlsio_set_reading(struct tlsio *t, bool on)
{
    t->reading = on;
    if (t->stopped || t->handshaking)
        return;
    update_events(t);
    if (on && !input_full(t) && SSL_has_pending(t->ssl))
        activate(t, EV_READ);
}

void tlsio_set_read_high(struct tlsio *t, size_t high)
{
    t->read_high = high;
    if (t->stopped || t->handshaking)
        return;
    update_events(t);
    if (t->reading && !input_full(t) && SSL_has_pending(t->ssl))
        activate(t, EV_READ);
}

void tlsio_set_write_low(struct tlsio *t, size_t low)
{
    t->write_low = low;
}

void tlsio_set_accounting(struct tlsio *t, _Atomic uint64_t *counter)
{
    t->acct = counter;
}

void tlsio_trigger_read(struct tlsio *t)
{
    if (t->stopped)
        return;
    t->force_read_cb = true;
    activate(t, EV_READ);
}
