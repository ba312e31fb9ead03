/*
 * syslog_sender: the thread that sends the syslog queue (syslog.h) to the receiver.
 * Private to syslog.c, which starts one sender per configuration and stops it on
 * reload and at exit. The thread owns its event_base, connection, SSL and spool.
 *
 * Connection states: backoff (waiting to retry) -> connecting (TCP connect and TLS
 * handshake, bounded by connect_timeout) -> up (write stalls bounded by
 * write_timeout); any failure goes back to backoff, 100 ms doubling to 5 s.
 */
#ifndef MOAT_SYSLOG_SENDER_H
#define MOAT_SYSLOG_SENDER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "observe/syslog.h"
#include "observe/syslog_queue.h"

enum syslog_drop {
    SYSLOG_DROP_QUEUE_FULL, /* no room in memory (no spool, or the spool full too) */
    SYSLOG_DROP_SPOOL_FULL, /* at exit: the spool full or not writable */
    SYSLOG_DROP_SEND_ERROR, /* UDP: the datagram was refused */
    SYSLOG_DROP_SHUTDOWN,   /* still queued at exit, with no spool */
    SYSLOG_DROP_NREASONS
};

const char *syslog_drop_str(enum syslog_drop d);

/* What producers, the sender and the metrics share; lives as long as the process. */
struct syslog_shared {
    struct syslog_queue q;
    int wake_fd;        /* eventfd: producers wake the sender */
    atomic_int kicked;  /* a wake-up is pending: producers need not write again */
    atomic_uint wanted; /* 1 << stream for the streams sent */
    _Atomic uint64_t sent[SYSLOG_NSTREAMS];
    _Atomic uint64_t dropped[SYSLOG_NSTREAMS][SYSLOG_DROP_NREASONS];
    _Atomic uint64_t truncated[SYSLOG_NSTREAMS];
    _Atomic uint64_t connect_errors;
    _Atomic uint64_t spool_bytes;
    atomic_int connected;
};

struct syslog_settings {
    char addr_text[300]; /* for logs */
    char host[256];
    char port[8];
    int transport;         /* enum syslog_transport */
    char verify_name[256]; /* TLS: host name or IP checked in the certificate */
    struct syslog_ident ident;
    size_t max_datagram;
    uint64_t connect_timeout_ms;
    uint64_t write_timeout_ms;
    char spool_dir[4096]; /* "": no spool */
    uint64_t spool_max;
};

struct syslog_sender;

/* Starts the thread; it owns ctx (NULL without TLS) from then on, also on failure
 * (NULL). The thread opens the spool itself and, while another process holds it (the
 * old one of a binary upgrade, still draining), tries again every few seconds. */
struct syslog_sender *syslog_sender_start(const struct syslog_settings *set, SSL_CTX *ctx,
                                          struct syslog_shared *sh);

/* Stops and joins the thread and frees the sender. It first sends what it holds for up
 * to a second (final: what is queued too, for up to three); then what is left goes back
 * to the queue, or at exit (final) to the spool, or is counted dropped. */
void syslog_sender_stop(struct syslog_sender *s, bool final);

#endif
