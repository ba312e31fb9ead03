/*
 * log: operator messages (stderr), the JSON access log and the JSON audit log.
 *
 * Access lines are buffered per worker and flushed in large writes (a timer in
 * the worker flushes at least every 100 ms); audit events are written at once,
 * one write() per line, because they are rare and must not be lost.
 * Log files are reopened on reload (log rotation) without changing their file
 * descriptor numbers, so workers never write to a closed descriptor.
 * With log.syslog, both streams are also handed to the syslog sender (syslog.h) at
 * the same points: each access-log flush, each audit line.
 */
#ifndef MOAT_LOG_H
#define MOAT_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct config_log;

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Opens or reopens the access and audit targets; -1 with err on failure. */
int log_open(const struct config_log *cfg, char *err, size_t errlen);
void log_set_level(const char *level);

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * For messages a request can cause (a bad reply from Redis, a malformed session
 * record): at most one line per LOG_LIMIT_MS per limiter, the next one saying how
 * many were left out, so a misbehaving peer cannot flood the log. One limiter per
 * call site and thread (static _Thread_local), zero-initialised.
 */
#define LOG_LIMIT_MS 10000
struct log_limit {
    uint64_t last_ms;
    uint64_t suppressed;
};
void log_msg_limited(struct log_limit *l, enum log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

struct log_buffer {
    char *buf;
    size_t len;
    size_t cap;
};

void log_buffer_init(struct log_buffer *b, size_t cap);
void log_buffer_free(struct log_buffer *b);
/* Appends one access-log line; flushes when the buffer is nearly full. */
/* False when log.access is off: callers skip formatting the line. */
int log_access_enabled(void);
void log_access_append(struct log_buffer *b, const char *line, size_t len);
void log_access_flush(struct log_buffer *b);
/* Writes one audit line now; 0, or -1 if not all of it was written. Callers go through
 * audit.h (audit_chain.c chains the lines). */
int log_audit_write(const char *line, size_t len);

#endif
