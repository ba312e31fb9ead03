#include "observe/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "config/config.h"
#include "observe/audit_chain.h"
#include "observe/syslog.h"
#include "policy/signature.h"
#include "util/jsonw.h"

static atomic_int access_fd = -1;
static atomic_int audit_fd = -1;
static atomic_int min_level = LOG_INFO;
static atomic_bool json_format; /* log.format: json */

static const char *level_str(enum log_level l)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    return (unsigned)l < 4 ? names[l] : "?";
}

void log_set_level(const char *level)
{
    int l = LOG_INFO;
    if (level && !strcmp(level, "debug"))
        l = LOG_DEBUG;
    else if (level && !strcmp(level, "warn"))
        l = LOG_WARN;
    else if (level && !strcmp(level, "error"))
        l = LOG_ERROR;
    atomic_store(&min_level, l);
}

/* {"time","level","pid","msg"}: one object per line, for collectors that read JSON only. */
static void log_json(enum log_level lvl, const char *msg, size_t len)
{
    char line[1536];
    struct jsonw j;
    jsonw_begin(&j, line, sizeof line);
    jsonw_time(&j, "time");
    jsonw_str(&j, "level", level_str(lvl));
    jsonw_int(&j, "pid", getpid());
    jsonw_strn(&j, "msg", msg, len);
    size_t n = jsonw_end(&j);
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

static void log_vmsg(enum log_level lvl, const char *suffix, const char *fmt, va_list ap)
{
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%SZ", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, " moat[%d] %s: ", (int)getpid(),
                          level_str(lvl));
    size_t head = n; /* where the message starts */
    int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    if (m < 0)
        return;
    n += (size_t)m < sizeof line - n - 1 ? (size_t)m : sizeof line - n - 2;
    if (suffix) {
        int k = snprintf(line + n, sizeof line - n - 1, "%s", suffix);
        if (k > 0)
            n += (size_t)k < sizeof line - n - 1 ? (size_t)k : sizeof line - n - 2;
    }
    if (atomic_load_explicit(&json_format, memory_order_relaxed)) {
        log_json(lvl, line + head, n - head);
        return;
    }
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    if ((int)lvl < atomic_load_explicit(&min_level, memory_order_relaxed))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(lvl, NULL, fmt, ap);
    va_end(ap);
}

void log_msg_limited(struct log_limit *l, enum log_level lvl, const char *fmt, ...)
{
    if ((int)lvl < atomic_load_explicit(&min_level, memory_order_relaxed))
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    if (l->last_ms && now - l->last_ms < LOG_LIMIT_MS) {
        l->suppressed++;
        return;
    }
    char suffix[96] = "";
    if (l->suppressed)
        snprintf(suffix, sizeof suffix, " (and %llu more like it in the last %llu s)",
                 (unsigned long long)l->suppressed,
                 (unsigned long long)((now - l->last_ms) / 1000));
    l->last_ms = now ? now : 1;
    l->suppressed = 0;
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(lvl, suffix[0] ? suffix : NULL, fmt, ap);
    va_end(ap);
}

/* Opens a target: "stdout", "stderr", "off"/NULL, or a file appended to. */
static int open_target(const char *key, const char *t, int *fd, char *err, size_t errlen)
{
    if (!t || !strcmp(t, "off")) {
        *fd = -1;
        return 0;
    }
    if (!strcmp(t, "stdout"))
        *fd = dup(STDOUT_FILENO);
    else if (!strcmp(t, "stderr"))
        *fd = dup(STDERR_FILENO);
    else
        *fd = open(t, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (*fd < 0) {
        snprintf(err, errlen, "%s: %s: %s%s", key, t, strerror(errno),
                 errno == ENOENT ? " (create the directory, or set another path)" : "");
        return -1;
    }
    return 0;
}

/* Installs fd at the number already in use (dup2 is atomic for writers). */
static void install(atomic_int *slot, int fd)
{
    int cur = atomic_load(slot);
    if (fd < 0) {
        atomic_store(slot, -1);
        return; /* the old number is leaked on purpose: a writer may still hold it */
    }
    if (cur < 0) {
        atomic_store(slot, fd);
        return;
    }
    dup2(fd, cur);
    close(fd);
}

int log_open(const struct config_log *cfg, char *err, size_t errlen)
{
    int a, b;
    struct signature_key key;
    if (cfg->audit_key_file && signature_key_load(cfg->audit_key_file, &key, err, errlen) < 0)
        return -1; /* err names the file */
    int rc = -1;
    if (open_target("log.access", cfg->access, &a, err, errlen) < 0)
        goto out;
    if (open_target("log.audit", cfg->audit, &b, err, errlen) < 0) {
        if (a >= 0)
            close(a);
        goto out;
    }
    /* syslog before the files are swapped: its refusal keeps every target as it was */
    if (syslog_configure(cfg->syslog_enabled ? &cfg->syslog : NULL, err, errlen) < 0) {
        if (a >= 0)
            close(a);
        if (b >= 0)
            close(b);
        goto out;
    }
    install(&access_fd, a);
    install(&audit_fd, b);
    log_set_level(cfg->level);
    atomic_store(&json_format, cfg->format && !strcmp(cfg->format, "json"));
    audit_chain_open(cfg->audit, cfg->audit_key_file ? &key : NULL);
    rc = 0;
out:
    OPENSSL_cleanse(&key, sizeof key);
    return rc;
}

/* 0 when all n bytes were written, -1 otherwise. */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1; /* a full disk must not stop the proxy */
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

void log_buffer_init(struct log_buffer *b, size_t cap)
{
    b->buf = malloc(cap);
    b->cap = b->buf ? cap : 0;
    b->len = 0;
}

void log_buffer_free(struct log_buffer *b)
{
    log_access_flush(b);
    free(b->buf);
    b->buf = NULL;
    b->cap = 0;
}

void log_access_flush(struct log_buffer *b)
{
    int fd = atomic_load_explicit(&access_fd, memory_order_relaxed);
    if (b->len && fd >= 0)
        write_all(fd, b->buf, b->len);
    if (b->len)
        syslog_submit(SYSLOG_ACCESS, b->buf, b->len);
    b->len = 0;
}

int log_access_enabled(void)
{
    return atomic_load_explicit(&access_fd, memory_order_relaxed) >= 0 ||
           syslog_wants(SYSLOG_ACCESS);
}

void log_access_append(struct log_buffer *b, const char *line, size_t len)
{
    if (!log_access_enabled())
        return;
    if (b->len + len > b->cap)
        log_access_flush(b);
    if (len > b->cap) {
        int fd = atomic_load(&access_fd);
        if (fd >= 0)
            write_all(fd, line, len);
        syslog_submit(SYSLOG_ACCESS, line, len);
        return;
    }
    memcpy(b->buf + b->len, line, len);
    b->len += len;
}

int log_audit_write(const char *line, size_t len)
{
    int fd = atomic_load_explicit(&audit_fd, memory_order_relaxed);
    int rc = fd < 0 ? 0 : write_all(fd, line, len); /* off: nothing to lose */
    /* in chain order (the caller holds its lock), and only a line the chain keeps */
    if (rc == 0)
        syslog_submit(SYSLOG_AUDIT, line, len);
    return rc;
}
