#include "observe/syslog_sender.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "config/config.h"
#include "observe/log.h"
#include "observe/syslog_spool.h"
#include "util/monotime.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* Output kept in the connection's buffer: enough to fill a TCP window, small enough
 * that little is lost when the receiver dies with it unsent. */
#define OUT_HIGH (256 * 1024)
#define OUT_LOW (64 * 1024)
#define SPOOL_READ (2 * (SYSLOG_REC_HDR + SYSLOG_LINE_MAX))
#define STOP_MS 1000
#define FINAL_STOP_MS 3000
#define SPOOL_RETRY_MS 5000

enum sender_state { SENDER_BACKOFF, SENDER_CONNECTING, SENDER_UP };

static const char *sender_state_str(enum sender_state st)
{
    static const char *names[] = {"backoff", "connecting", "up"};
    return (unsigned)st < 3 ? names[st] : "?";
}

const char *syslog_drop_str(enum syslog_drop d)
{
    static const char *names[] = {"queue_full", "spool_full", "send_error", "shutdown"};
    return (unsigned)d < SYSLOG_DROP_NREASONS ? names[d] : "?";
}

/* An outage: from the first failure to the next connection, reported once. */
struct outage {
    bool active;
    uint64_t since_ms;
    uint64_t dropped_before; /* lines dropped up to its start */
};

struct syslog_sender {
    pthread_t thread;
    struct syslog_settings set;
    struct syslog_shared *sh;
    SSL_CTX *ctx;
    struct syslog_spool *spool;
    struct event_base *base;
    struct event *ev_wake, *ev_timer, *ev_stop, *ev_udp;
    struct bufferevent *bev;
    int udp_fd;
    enum sender_state state;
    uint64_t backoff_ms;
    struct syslog_chunk *pending, *pending_tail; /* taken from the queue, oldest first */
    struct outage outage;
    uint64_t dropped_seen; /* for the rate-limited note about drops while up */
    atomic_int stop;       /* 1: stop, 2: stop at exit */
    bool stopping;
    bool in_pump;
    char *spool_buf;
    char *dgram;
    char spool_err[256];
    uint64_t spool_retry_ms; /* when to try opening the spool again */
};

static void pump(struct syslog_sender *s);

static void set_state(struct syslog_sender *s, enum sender_state st)
{
    log_msg(LOG_DEBUG, "syslog: %s -> %s", sender_state_str(s->state), sender_state_str(st));
    s->state = st;
    atomic_store(&s->sh->connected, st == SENDER_UP);
}

static uint64_t dropped_total(const struct syslog_shared *sh)
{
    uint64_t n = 0;
    for (int i = 0; i < SYSLOG_NSTREAMS; i++)
        for (int r = 0; r < SYSLOG_DROP_NREASONS; r++)
            n += atomic_load(&sh->dropped[i][r]);
    return n;
}

static void count_dropped(struct syslog_sender *s, const struct syslog_chunk *c,
                          enum syslog_drop why)
{
    uint64_t n[SYSLOG_NSTREAMS] = {0};
    syslog_chunk_count(c, n);
    for (int i = 0; i < SYSLOG_NSTREAMS; i++)
        atomic_fetch_add(&s->sh->dropped[i][why], n[i]);
}

/* The pending chunk at the front is done with: its bytes leave the queue's bound. */
static void pop_pending(struct syslog_sender *s)
{
    struct syslog_chunk *c = s->pending;
    s->pending = c->next;
    if (!s->pending)
        s->pending_tail = NULL;
    syslog_queue_release(&s->sh->q, c->len);
    free(c);
}

static void take_queue(struct syslog_sender *s)
{
    atomic_store(&s->sh->kicked, 0); /* before the take: a later push wakes us again */
    struct syslog_chunk *list = syslog_queue_take(&s->sh->q);
    if (!list)
        return;
    if (s->pending_tail)
        s->pending_tail->next = list;
    else
        s->pending = list;
    for (s->pending_tail = list; s->pending_tail->next;)
        s->pending_tail = s->pending_tail->next;
}

/* Moves pending lines to the spool, oldest first. When the spool cannot take a chunk
 * (full, or a write error) it and every later one stay in memory: they are newer than
 * all that is spooled, and the spool is always sent first, so the order holds; the
 * memory queue's bound then applies. */
static void spool_pending(struct syslog_sender *s)
{
    while (s->pending) {
        struct syslog_chunk *c = s->pending;
        char err[256];
        if (syslog_spool_append(s->spool, c->data + c->off, c->len - c->off, err, sizeof err) < 0) {
            if (strcmp(err, s->spool_err) != 0) /* once per kind of failure */
                log_msg(LOG_ERROR, "syslog: %s; lines wait in memory", err);
            snprintf(s->spool_err, sizeof s->spool_err, "%s", err);
            return;
        }
        s->spool_err[0] = '\0';
        pop_pending(s);
    }
}

/* One datagram; -1 when the socket cannot take it now (try again when writable). */
static int send_datagram(struct syslog_sender *s, const struct syslog_rec *r)
{
    size_t h = syslog_format_header(s->dgram, &s->set.ident, r->stream, r->time_us);
    size_t n = r->len;
    if (h + n > s->set.max_datagram) {
        n = s->set.max_datagram > h ? s->set.max_datagram - h : 0;
        atomic_fetch_add(&s->sh->truncated[r->stream], 1);
    }
    memcpy(s->dgram + h, r->line, n);
    for (int tries = 0; tries < 2; tries++) {
        if (send(s->udp_fd, s->dgram, h + n, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) {
            atomic_fetch_add(&s->sh->sent[r->stream], 1);
            return 0;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
            return -1;
        /* ECONNREFUSED reports an earlier datagram's ICMP error: this one was not sent */
    }
    atomic_fetch_add(&s->sh->dropped[r->stream][SYSLOG_DROP_SEND_ERROR], 1);
    return 0;
}

/* One octet-counted message into the connection's output. */
static void frame_message(struct syslog_sender *s, const struct syslog_rec *r)
{
    char hdr[SYSLOG_HEADER_MAX], pre[24];
    size_t h = syslog_format_header(hdr, &s->set.ident, r->stream, r->time_us);
    size_t p = syslog_frame_prefix(pre, h + r->len);
    struct evbuffer *out = bufferevent_get_output(s->bev);
    evbuffer_add(out, pre, p);
    evbuffer_add(out, hdr, h);
    evbuffer_add(out, r->line, r->len);
    atomic_fetch_add(&s->sh->sent[r->stream], 1);
}

/* Whether the transport can take more now. */
static bool can_send(const struct syslog_sender *s)
{
    if (s->state != SENDER_UP)
        return false;
    if (s->set.transport == SYSLOG_UDP)
        return !event_pending(s->ev_udp, EV_WRITE, NULL);
    return evbuffer_get_length(bufferevent_get_output(s->bev)) < OUT_HIGH;
}

/* Sends whole records from data[0..len) while the transport takes them; the bytes
 * consumed. */
static size_t emit(struct syslog_sender *s, const char *data, size_t len)
{
    size_t o = 0;
    struct syslog_rec r;
    long n;
    while (can_send(s) && (n = syslog_rec_decode(data + o, len - o, &r)) > 0) {
        if (s->set.transport != SYSLOG_UDP) {
            frame_message(s, &r);
        } else if (send_datagram(s, &r) < 0) {
            event_add(s->ev_udp, NULL);
            break;
        }
        o += (size_t)n;
    }
    return o;
}

/* Sends the spool first, then what is pending in memory, in order. */
static void send_some(struct syslog_sender *s)
{
    while (can_send(s)) {
        if (s->spool && syslog_spool_bytes(s->spool) > 0) {
            ssize_t n = syslog_spool_peek(s->spool, s->spool_buf, SPOOL_READ);
            if (n > 0) {
                syslog_spool_consume(s->spool, emit(s, s->spool_buf, (size_t)n));
                continue;
            }
            if (n < 0) {
                static _Thread_local struct log_limit limit;
                log_msg_limited(&limit, LOG_ERROR, "syslog: cannot read the spool: %s",
                                strerror(errno));
            }
            break;
        }
        struct syslog_chunk *c = s->pending;
        if (!c)
            break;
        c->off += emit(s, c->data + c->off, c->len - c->off);
        if (c->off >= c->len)
            pop_pending(s);
    }
}

/* Drops noticed while connected (a receiver slower than the traffic), rate-limited. */
static void note_drops(struct syslog_sender *s)
{
    static _Thread_local struct log_limit limit;
    uint64_t d = dropped_total(s->sh);
    if (d != s->dropped_seen && !s->outage.active)
        log_msg_limited(&limit, LOG_WARN,
                        "syslog: %" PRIu64 " lines dropped (%s is slower "
                        "than the traffic; see moat_syslog_dropped_total)",
                        d - s->dropped_seen, s->set.addr_text);
    s->dropped_seen = d;
}

/* A reload's stop only flushes what is framed already (the rest goes back to the queue
 * for the next sender); the final one also sends what is pending. */
static bool stop_done(struct syslog_sender *s)
{
    if (s->state != SENDER_UP)
        return true; /* nothing to flush: what is held goes to the queue or the spool */
    bool out_empty =
        s->set.transport == SYSLOG_UDP || evbuffer_get_length(bufferevent_get_output(s->bev)) == 0;
    return out_empty && (atomic_load(&s->stop) == 1 || !s->pending);
}

/* Opens the spool if configured and not open yet; a failure is logged once and tried
 * again after SPOOL_RETRY_MS. */
static void ensure_spool(struct syslog_sender *s)
{
    if (s->spool || !s->set.spool_dir[0] || mono_ms() < s->spool_retry_ms)
        return;
    char err[256];
    s->spool = syslog_spool_open(s->set.spool_dir, s->set.spool_max, err, sizeof err);
    if (s->spool && !s->spool_buf && !(s->spool_buf = malloc(SPOOL_READ))) {
        syslog_spool_close(s->spool);
        s->spool = NULL;
        snprintf(err, sizeof err, "out of memory");
    }
    if (s->spool) {
        s->spool_err[0] = '\0';
        return;
    }
    s->spool_retry_ms = mono_ms() + SPOOL_RETRY_MS;
    if (strcmp(err, s->spool_err) != 0)
        log_msg(LOG_ERROR, "syslog: spool %s; lines wait in memory meanwhile", err);
    snprintf(s->spool_err, sizeof s->spool_err, "%s", err);
}

static void pump(struct syslog_sender *s)
{
    bool handing_over = s->stopping && atomic_load(&s->stop) == 1;
    if (s->in_pump) /* a callback run from inside a write: the outer loop goes on */
        return;
    s->in_pump = true;
    if (!handing_over) {
        ensure_spool(s);
        take_queue(s);
        if (s->spool && (s->state != SENDER_UP || syslog_spool_bytes(s->spool) > 0))
            spool_pending(s); /* behind what is spooled already: the order is kept */
        send_some(s);
    }
    atomic_store(&s->sh->spool_bytes, syslog_spool_bytes(s->spool));
    note_drops(s);
    s->in_pump = false;
    if (s->stopping && stop_done(s))
        event_base_loopbreak(s->base);
}

/* ---- connection ---------------------------------------------------------- */

static void close_conn(struct syslog_sender *s)
{
    if (s->bev) {
        bufferevent_free(s->bev);
        s->bev = NULL;
    }
    if (s->ev_udp)
        event_del(s->ev_udp);
    if (s->udp_fd >= 0) {
        close(s->udp_fd);
        s->udp_fd = -1;
    }
}

static void arm_timer(struct syslog_sender *s, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    event_add(s->ev_timer, &tv);
}

/* A failed attempt or a lost connection: back off, keep lines, report the outage. */
static void conn_failed(struct syslog_sender *s, const char *why)
{
    size_t unsent = s->bev ? evbuffer_get_length(bufferevent_get_output(s->bev)) : 0;
    if (s->state == SENDER_CONNECTING)
        atomic_fetch_add(&s->sh->connect_errors, 1);
    close_conn(s);
    if (!s->outage.active) {
        s->outage = (struct outage){true, mono_ms(), dropped_total(s->sh)};
        log_msg(LOG_WARN, "syslog: %s: %s; keeping lines %s and retrying%s", s->set.addr_text, why,
                s->spool ? "in the spool" : "in memory",
                unsent ? " (lines written just before may be lost)" : "");
    }
    set_state(s, SENDER_BACKOFF);
    arm_timer(s, s->backoff_ms);
    s->backoff_ms = s->backoff_ms * 2 < BACKOFF_MAX_MS ? s->backoff_ms * 2 : BACKOFF_MAX_MS;
    if (s->stopping)
        event_base_loopbreak(s->base);
    else
        pump(s);
}

static void conn_up(struct syslog_sender *s)
{
    event_del(s->ev_timer);
    s->backoff_ms = BACKOFF_MIN_MS;
    set_state(s, SENDER_UP);
    if (s->outage.active) {
        uint64_t lost = dropped_total(s->sh) - s->outage.dropped_before;
        log_msg(LOG_INFO,
                "syslog: %s reachable again after %.1f s; %" PRIu64 " lines could not "
                "be kept meanwhile",
                s->set.addr_text, (double)(mono_ms() - s->outage.since_ms) / 1000, lost);
        s->outage.active = false;
        s->dropped_seen = dropped_total(s->sh);
    }
    pump(s);
}

/* Why a bufferevent failed, for the log: the TLS reason if there is one. */
static void bev_error(struct syslog_sender *s, short what, char *out, size_t len)
{
    unsigned long e = s->bev ? bufferevent_get_openssl_error(s->bev) : 0;
    SSL *ssl = s->bev ? bufferevent_openssl_get_ssl(s->bev) : NULL;
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (vr != X509_V_OK)
        snprintf(out, len, "TLS: certificate verify failed: %s", X509_verify_cert_error_string(vr));
    else if (e)
        snprintf(out, len, "TLS: %s",
                 ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "handshake failed");
    else if (what & BEV_EVENT_EOF)
        snprintf(out, len, "connection closed by the receiver");
    else if (what & BEV_EVENT_TIMEOUT)
        snprintf(out, len, "write stalled for %" PRIu64 " ms", s->set.write_timeout_ms);
    else
        snprintf(out, len, "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    while (s->bev && bufferevent_get_openssl_error(s->bev))
        ; /* the rest of the queue, so the next attempt starts clean */
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct syslog_sender *s = arg;
    if (what & BEV_EVENT_CONNECTED) {
        conn_up(s);
        return;
    }
    char why[300];
    bev_error(s, what, why, sizeof why);
    conn_failed(s, why);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in)); /* receivers send nothing we use */
}

static void on_write(struct bufferevent *bev, void *arg)
{
    pump(arg);
}

static void on_udp_writable(evutil_socket_t fd, short what, void *arg)
{
    pump(arg);
}

/* The receiver's first address (resolved in this thread: a slow DNS delays only it). */
static struct addrinfo *resolve(struct syslog_sender *s, char *why, size_t len)
{
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = s->set.transport == SYSLOG_UDP ? SOCK_DGRAM : SOCK_STREAM;
    int rc = getaddrinfo(s->set.host, s->set.port, &hints, &ai);
    if (rc != 0) {
        snprintf(why, len, "cannot resolve %s: %s", s->set.host, gai_strerror(rc));
        return NULL;
    }
    return ai;
}

static int connect_udp(struct syslog_sender *s, const struct addrinfo *ai, char *why, size_t len)
{
    s->udp_fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->udp_fd < 0 || connect(s->udp_fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        snprintf(why, len, "%s", strerror(errno));
        return -1;
    }
    event_assign(s->ev_udp, s->base, s->udp_fd, EV_WRITE, on_udp_writable, s);
    conn_up(s);
    return 0;
}

static struct bufferevent *new_bev(struct syslog_sender *s)
{
    if (s->set.transport == SYSLOG_TCP)
        return bufferevent_socket_new(s->base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    SSL *ssl = SSL_new(s->ctx);
    if (!ssl)
        return NULL;
    /* an IP address is checked as one (and sent as no SNI), a name as a DNS name */
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    if (X509_VERIFY_PARAM_set1_ip_asc(vp, s->set.verify_name) != 1 &&
        (SSL_set_tlsext_host_name(ssl, s->set.verify_name) != 1 ||
         SSL_set1_host(ssl, s->set.verify_name) != 1)) {
        SSL_free(ssl);
        return NULL;
    }
    struct bufferevent *b =
        bufferevent_openssl_socket_new(s->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                       BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!b)
        SSL_free(ssl);
    else
        bufferevent_openssl_set_allow_dirty_shutdown(b, 1);
    return b;
}

static int connect_stream(struct syslog_sender *s, const struct addrinfo *ai, char *why, size_t len)
{
    s->bev = new_bev(s);
    if (!s->bev) {
        snprintf(why, len, "cannot set up the connection (out of memory?)");
        return -1;
    }
    bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
    bufferevent_setwatermark(s->bev, EV_WRITE, OUT_LOW, 0);
    struct timeval wt = {(time_t)(s->set.write_timeout_ms / 1000),
                         (suseconds_t)(s->set.write_timeout_ms % 1000) * 1000};
    bufferevent_set_timeouts(s->bev, NULL, &wt);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    set_state(s, SENDER_CONNECTING);
    if (bufferevent_socket_connect(s->bev, ai->ai_addr, (int)ai->ai_addrlen) < 0) {
        snprintf(why, len, "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        return -1;
    }
    if (s->bev) /* a refusal may have been reported at once (and freed the bev) */
        arm_timer(s, s->set.connect_timeout_ms);
    return 0;
}

static void start_connect(struct syslog_sender *s)
{
    char why[300] = "";
    struct addrinfo *ai = resolve(s, why, sizeof why);
    int rc = -1;
    if (ai)
        rc = s->set.transport == SYSLOG_UDP ? connect_udp(s, ai, why, sizeof why)
                                            : connect_stream(s, ai, why, sizeof why);
    if (ai)
        freeaddrinfo(ai);
    if (rc < 0) {
        if (s->state != SENDER_CONNECTING)
            set_state(s, SENDER_CONNECTING); /* counted as a failed attempt */
        conn_failed(s, why);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct syslog_sender *s = arg;
    if (s->state == SENDER_BACKOFF)
        start_connect(s);
    else if (s->state == SENDER_CONNECTING)
        conn_failed(s, "connect timeout");
}

static void on_stop_deadline(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(((struct syslog_sender *)arg)->base);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct syslog_sender *s = arg;
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
    atomic_store(&s->sh->kicked, 0); /* read: the next push must write again */
    int stop = atomic_load(&s->stop);
    if (stop && !s->stopping) {
        s->stopping = true;
        struct timeval tv = {stop == 2 ? FINAL_STOP_MS / 1000 : STOP_MS / 1000, 0};
        event_add(s->ev_stop, &tv);
    }
    pump(s);
}

/* After the loop: what is still held goes back to the queue, or at exit to the spool
 * (or is counted dropped). */
static void hand_back(struct syslog_sender *s)
{
    bool final = atomic_load(&s->stop) == 2;
    if (final) {
        take_queue(s);
        if (s->spool)
            spool_pending(s);
        for (; s->pending; pop_pending(s))
            count_dropped(s, s->pending, s->spool ? SYSLOG_DROP_SPOOL_FULL : SYSLOG_DROP_SHUTDOWN);
        if (s->outage.active)
            log_msg(LOG_WARN,
                    "syslog: %s still unreachable at exit; %" PRIu64 " lines could "
                    "not be kept during the outage",
                    s->set.addr_text, dropped_total(s->sh) - s->outage.dropped_before);
    } else {
        syslog_queue_unshift(&s->sh->q, s->pending);
        s->pending = s->pending_tail = NULL;
    }
    atomic_store(&s->sh->spool_bytes, syslog_spool_bytes(s->spool));
    atomic_store(&s->sh->connected, 0);
}

static void *sender_main(void *arg)
{
    struct syslog_sender *s = arg;
    ensure_spool(s); /* before the first connection: what an earlier run spooled goes first */
    start_connect(s);
    event_base_dispatch(s->base);
    hand_back(s);
    close_conn(s);
    return NULL;
}

static void sender_free(struct syslog_sender *s)
{
    struct event *evs[] = {s->ev_wake, s->ev_timer, s->ev_stop, s->ev_udp};
    for (size_t i = 0; i < sizeof evs / sizeof *evs; i++)
        if (evs[i])
            event_free(evs[i]);
    if (s->base)
        event_base_free(s->base);
    if (s->ctx)
        SSL_CTX_free(s->ctx);
    syslog_spool_close(s->spool);
    free(s->spool_buf);
    free(s->dgram);
    free(s);
}

struct syslog_sender *syslog_sender_start(const struct syslog_settings *set, SSL_CTX *ctx,
                                          struct syslog_shared *sh)
{
    struct syslog_sender *s = calloc(1, sizeof *s);
    if (!s) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    s->set = *set;
    s->sh = sh;
    s->ctx = ctx;
    s->udp_fd = -1;
    s->backoff_ms = BACKOFF_MIN_MS;
    s->dropped_seen = dropped_total(sh);
    s->base = event_base_new();
    s->dgram = malloc(set->max_datagram + SYSLOG_HEADER_MAX);
    if (!s->base || !s->dgram ||
        !(s->ev_wake = event_new(s->base, sh->wake_fd, EV_READ | EV_PERSIST, on_wake, s)) ||
        !(s->ev_timer = evtimer_new(s->base, on_timer, s)) ||
        !(s->ev_stop = evtimer_new(s->base, on_stop_deadline, s)) ||
        !(s->ev_udp = event_new(s->base, -1, 0, on_udp_writable, s)) ||
        event_add(s->ev_wake, NULL) < 0 || pthread_create(&s->thread, NULL, sender_main, s) != 0) {
        sender_free(s);
        return NULL;
    }
    return s;
}

void syslog_sender_stop(struct syslog_sender *s, bool final)
{
    if (!s)
        return;
    atomic_store(&s->stop, final ? 2 : 1);
    uint64_t one = 1;
    ssize_t w = write(s->sh->wake_fd, &one, sizeof one);
    (void)w;
    pthread_join(s->thread, NULL);
    sender_free(s);
}
