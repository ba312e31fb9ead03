#include "observe/syslog.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "config/config.h"
#include "observe/log.h"
#include "observe/syslog_sender.h"

/* Shared by producers, the sender and the metrics for the life of the process: the
 * queue outlives a sender, so a reload does not lose what is queued. */
static struct syslog_shared SH = {.wake_fd = -1};
static pthread_once_t shared_once = PTHREAD_ONCE_INIT;

/* Main thread only. */
static struct syslog_sender *sender;
static char running[8192]; /* the settings the sender runs with (see fingerprint()) */
static bool configured;

static const char *stream_names[SYSLOG_NSTREAMS] = {"access", "audit"};

static void shared_init(void)
{
    syslog_queue_init(&SH.q, 0);
    SH.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

int syslog_wants(enum syslog_stream st)
{
    return (atomic_load_explicit(&SH.wanted, memory_order_relaxed) >> st) & 1;
}

void syslog_submit(enum syslog_stream st, const char *buf, size_t len)
{
    if (!syslog_wants(st) || !len)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    size_t lines, cut = 0;
    struct syslog_chunk *c = syslog_chunk_from_lines(st, us, buf, len, &lines);
    int rc = c ? syslog_queue_push(&SH.q, c, &cut) : -1;
    if (rc < 0 || cut)
        atomic_fetch_add(&SH.dropped[st][SYSLOG_DROP_QUEUE_FULL], rc < 0 ? lines : cut);
    if (rc < 0) {
        free(c);
        return;
    }
    if (!atomic_exchange(&SH.kicked, 1)) { /* one write per wake-up, not per batch */
        uint64_t one = 1;
        ssize_t w = write(SH.wake_fd, &one, sizeof one);
        (void)w;
    }
}

/* ---- format ---------------------------------------------------------------- */

size_t syslog_format_header(char *out, const struct syslog_ident *id, enum syslog_stream st,
                            int64_t time_us)
{
    /* RFC 5424 severities: notice for the audit trail, info for access lines */
    int pri = id->facility * 8 + (st == SYSLOG_AUDIT ? 5 : 6);
    time_t sec = (time_t)(time_us / 1000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    int n =
        snprintf(out, SYSLOG_HEADER_MAX, "<%d>1 %04d-%02d-%02dT%02d:%02d:%02d.%06dZ %s %s %d %s - ",
                 pri, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                 tm.tm_sec, (int)(time_us % 1000000), id->hostname[0] ? id->hostname : "-",
                 id->app_name[0] ? id->app_name : "-", id->pid, stream_names[st]);
    return n < 0 ? 0 : (size_t)n < SYSLOG_HEADER_MAX ? (size_t)n : SYSLOG_HEADER_MAX - 1;
}

size_t syslog_frame_prefix(char *out, size_t msg_len)
{
    int n = snprintf(out, 24, "%zu ", msg_len);
    return n < 0 ? 0 : (size_t)n;
}

/* ---- configuration ----------------------------------------------------------- */

/* Copies a name, any byte RFC 5424 does not allow in a header field made '_'. */
static void copy_field(char *out, size_t cap, const char *in)
{
    size_t i = 0;
    for (; in && in[i] && i + 1 < cap; i++)
        out[i] = (unsigned char)in[i] > 32 && (unsigned char)in[i] < 127 ? in[i] : '_';
    out[i] = '\0';
}

static void fill_settings(const struct config_syslog *c, struct syslog_settings *set)
{
    memset(set, 0, sizeof *set);
    snprintf(set->addr_text, sizeof set->addr_text, "%s", c->address.text);
    snprintf(set->host, sizeof set->host, "%s", c->address.host ? c->address.host : "");
    snprintf(set->port, sizeof set->port, "%u", (unsigned)c->address.port);
    set->transport = c->transport;
    snprintf(set->verify_name, sizeof set->verify_name, "%s",
             c->server_name ? c->server_name : set->host);
    set->ident.facility = c->facility;
    char host[256] = "";
    if (!c->hostname && gethostname(host, sizeof host - 1) < 0)
        host[0] = '\0';
    copy_field(set->ident.hostname, sizeof set->ident.hostname, c->hostname ? c->hostname : host);
    copy_field(set->ident.app_name, sizeof set->ident.app_name, c->app_name);
    set->ident.pid = (int)getpid();
    set->max_datagram = c->max_datagram;
    set->connect_timeout_ms = c->connect_timeout_ms;
    set->write_timeout_ms = c->write_timeout_ms;
    snprintf(set->spool_dir, sizeof set->spool_dir, "%s", c->spool_dir ? c->spool_dir : "");
    set->spool_max = c->spool_max;
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

/* Every setting the sender depends on, as text: equal text, nothing to restart. */
static void fingerprint(const struct config_syslog *c, char *out, size_t len)
{
    snprintf(out, len, "%s|%d|%s|%s|%s|%s|%d|%s|%s|%zu|%s|%" PRIu64 "|%zu|%" PRIu64 "|%" PRIu64,
             nz(c->address.text), c->transport, nz(c->ca_file), nz(c->server_name),
             nz(c->cert_file), nz(c->key_file), c->facility, nz(c->app_name), nz(c->hostname),
             c->queue, nz(c->spool_dir), c->spool_max, c->max_datagram, c->connect_timeout_ms,
             c->write_timeout_ms);
}

static unsigned stream_mask(const struct config_syslog *c)
{
    unsigned m = 0;
    for (size_t i = 0; i < c->num_streams; i++)
        m |= !strcmp(c->streams[i], "audit") ? 1u << SYSLOG_AUDIT : 1u << SYSLOG_ACCESS;
    return m;
}

/* TLS 1.2+, the receiver verified against ca_file (else the system store). */
static SSL_CTX *tls_ctx(const struct config_syslog *c, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "log.syslog: cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if ((c->ca_file ? SSL_CTX_load_verify_locations(ctx, c->ca_file, NULL)
                    : SSL_CTX_set_default_verify_paths(ctx)) != 1) {
        snprintf(err, errlen, "log.syslog.ca_file: cannot load %s",
                 c->ca_file ? c->ca_file : "the system CA store");
        goto fail;
    }
    if (c->cert_file && (SSL_CTX_use_certificate_chain_file(ctx, c->cert_file) != 1 ||
                         SSL_CTX_use_PrivateKey_file(ctx, c->key_file, SSL_FILETYPE_PEM) != 1 ||
                         SSL_CTX_check_private_key(ctx) != 1)) {
        snprintf(err, errlen, "log.syslog.cert_file: cannot load %s with %s", c->cert_file,
                 c->key_file);
        goto fail;
    }
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

/* The spool directory exists (made 0700) and is writable: checked before the running
 * sender is stopped, so a bad path keeps it. */
static int check_spool_dir(const char *dir, char *err, size_t errlen)
{
    if ((mkdir(dir, 0700) < 0 && errno != EEXIST) || access(dir, W_OK | X_OK) < 0) {
        snprintf(err, errlen, "log.syslog.spool_dir: %s: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

static void stop_sender(bool final)
{
    syslog_sender_stop(sender, final);
    sender = NULL;
    running[0] = '\0';
}

/* Starts a sender with c (the previous one is stopped). */
static void start_sender(const struct config_syslog *c, SSL_CTX *ctx, const char *fp)
{
    static struct syslog_settings set; /* large (paths): not on the stack */
    fill_settings(c, &set);
    stop_sender(false);
    syslog_queue_set_max(&SH.q, c->queue);
    sender = syslog_sender_start(&set, ctx, &SH);
    if (!sender)
        log_msg(LOG_ERROR, "syslog: cannot start the sender thread; lines are dropped");
    snprintf(running, sizeof running, "%s", fp);
    unsigned m = stream_mask(c);
    log_msg(LOG_INFO, "syslog: sending %s to %s over %s",
            m == 3   ? "access and audit lines"
            : m == 1 ? "access lines"
            : m == 2 ? "audit lines"
                     : "nothing",
            set.addr_text,
            c->transport == SYSLOG_UDP   ? "udp"
            : c->transport == SYSLOG_TCP ? "tcp"
                                         : "tls");
}

int syslog_configure(const struct config_syslog *c, char *err, size_t errlen)
{
    pthread_once(&shared_once, shared_init);
    if (SH.wake_fd < 0) {
        snprintf(err, errlen, "log.syslog: eventfd: %s", strerror(errno));
        return -1;
    }
    if (!c) {
        atomic_store(&SH.wanted, 0);
        stop_sender(false);
        syslog_queue_clear(&SH.q); /* syslog turned off: nobody will send these */
        return 0;
    }
    char fp[sizeof running];
    fingerprint(c, fp, sizeof fp);
    if (!sender || strcmp(fp, running) != 0) {
        SSL_CTX *ctx = NULL;
        if (c->transport == SYSLOG_TLS && !(ctx = tls_ctx(c, err, errlen)))
            return -1;
        if (c->spool_dir && check_spool_dir(c->spool_dir, err, errlen) < 0) {
            SSL_CTX_free(ctx);
            return -1;
        }
        start_sender(c, ctx, fp);
    }
    configured = true;
    atomic_store(&SH.wanted, stream_mask(c));
    return 0;
}

void syslog_shutdown(void)
{
    atomic_store(&SH.wanted, 0);
    stop_sender(true);
}

/* ---- metrics ----------------------------------------------------------------- */

void syslog_render_metrics(struct evbuffer *out)
{
    if (!configured)
        return;
    evbuffer_add_printf(out, "# HELP moat_syslog_sent_total Lines sent to the syslog receiver.\n"
                             "# TYPE moat_syslog_sent_total counter\n");
    for (int i = 0; i < SYSLOG_NSTREAMS; i++)
        evbuffer_add_printf(out, "moat_syslog_sent_total{stream=\"%s\"} %" PRIu64 "\n",
                            stream_names[i], atomic_load(&SH.sent[i]));
    evbuffer_add_printf(out, "# HELP moat_syslog_dropped_total Lines that could not be kept "
                             "for syslog, by reason.\n# TYPE moat_syslog_dropped_total counter\n");
    for (int i = 0; i < SYSLOG_NSTREAMS; i++)
        for (int r = 0; r < SYSLOG_DROP_NREASONS; r++)
            evbuffer_add_printf(
                out, "moat_syslog_dropped_total{stream=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
                stream_names[i], syslog_drop_str((enum syslog_drop)r),
                atomic_load(&SH.dropped[i][r]));
    evbuffer_add_printf(out, "# HELP moat_syslog_truncated_total UDP messages cut to "
                             "max_datagram.\n# TYPE moat_syslog_truncated_total counter\n");
    for (int i = 0; i < SYSLOG_NSTREAMS; i++)
        evbuffer_add_printf(out, "moat_syslog_truncated_total{stream=\"%s\"} %" PRIu64 "\n",
                            stream_names[i], atomic_load(&SH.truncated[i]));
    evbuffer_add_printf(
        out,
        "# HELP moat_syslog_connect_errors_total Failed connection attempts to the receiver.\n"
        "# TYPE moat_syslog_connect_errors_total counter\n"
        "moat_syslog_connect_errors_total %" PRIu64 "\n"
        "# HELP moat_syslog_queue_bytes Bytes of lines held in memory for syslog.\n"
        "# TYPE moat_syslog_queue_bytes gauge\nmoat_syslog_queue_bytes %zu\n"
        "# HELP moat_syslog_spool_bytes Bytes of lines in the disk spool.\n"
        "# TYPE moat_syslog_spool_bytes gauge\nmoat_syslog_spool_bytes %" PRIu64 "\n"
        "# HELP moat_syslog_connected 1 while a connection to the receiver is up.\n"
        "# TYPE moat_syslog_connected gauge\nmoat_syslog_connected %d\n",
        atomic_load(&SH.connect_errors), syslog_queue_bytes(&SH.q), atomic_load(&SH.spool_bytes),
        atomic_load(&SH.connected));
}
