/*
 * syslog: the access and audit streams, in addition to their files, to an RFC 5424
 * receiver over UDP, TCP or TLS (log.syslog; docs/logging.md has the design).
 *
 * Producers (the workers' access-log flush, audit writers) call syslog_submit(): the
 * lines are appended to a bounded in-memory queue under a mutex held only for the
 * append, and one sender thread with its own event_base formats and sends them. A slow
 * or dead receiver therefore never slows traffic: while it is unreachable the sender
 * moves lines to a bounded disk spool (if configured) and reconnects with backoff;
 * what cannot be kept is counted and reported once per outage.
 *
 * Message: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG, MSG being the JSON
 * line without its newline, MSGID "access" (severity info) or "audit" (notice). Over
 * TCP and TLS each message is framed by octet counting ("LEN SP MSG", RFC 6587 3.4.1,
 * RFC 5425); over UDP one message per datagram, cut to max_datagram bytes.
 */
#ifndef MOAT_SYSLOG_H
#define MOAT_SYSLOG_H

#include <stddef.h>
#include <stdint.h>

#include "observe/syslog_queue.h"

struct config_syslog;
struct evbuffer;

/*
 * Starts the sender, restarts it when the settings changed (queued lines are kept:
 * the queue outlives senders) or stops it (cfg NULL). -1 with err when the settings
 * cannot be used (a TLS file, the spool directory); the running sender is kept then.
 * Main thread (log_open()).
 */
int syslog_configure(const struct config_syslog *cfg, char *err, size_t errlen);

/* At exit, after the workers are joined: sends what it can within a few seconds,
 * spools the rest (or counts it dropped) and stops the sender. */
void syslog_shutdown(void);

/* True if lines of st go to syslog; cheap (one atomic load). */
int syslog_wants(enum syslog_stream st);

/* Hands over buf[0..len), one or more '\n'-terminated lines of st. Any thread; never
 * blocks on I/O. Lines that do not fit in the queue are counted dropped. */
void syslog_submit(enum syslog_stream st, const char *buf, size_t len);

/* Prometheus text: moat_syslog_* (nothing when log.syslog is not configured). */
void syslog_render_metrics(struct evbuffer *out);

/* The fields of the RFC 5424 header that do not change per message. */
struct syslog_ident {
    int facility;       /* 0..23 */
    char hostname[256]; /* printable ASCII, no spaces */
    char app_name[49];
    int pid;
};

#define SYSLOG_HEADER_MAX 400

/* Writes "<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - " into out (at least
 * SYSLOG_HEADER_MAX bytes, not NUL-terminated); returns its length. */
size_t syslog_format_header(char *out, const struct syslog_ident *id, enum syslog_stream st,
                            int64_t time_us);

/* Writes the octet-counting prefix "LEN " of a message of msg_len bytes into out (at
 * least 24 bytes); returns its length. */
size_t syslog_frame_prefix(char *out, size_t msg_len);

#endif
