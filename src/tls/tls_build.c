#include "tls/tls_build.h"

#include <stdarg.h>
#include <stdio.h>

#include <openssl/err.h>

#include "config/config.h"

/* Formats an error into b->err, with the OpenSSL reason appended if there is one. */
int tls_build_fail(struct build *b, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    unsigned long e = ERR_peek_last_error();
    /* system errors are already in msg as strerror() */
    if (e != 0 && ERR_GET_LIB(e) != ERR_LIB_SYS && ERR_reason_error_string(e) != NULL)
        snprintf(b->err, b->errlen, "%s (%s)", msg, ERR_reason_error_string(e));
    else
        snprintf(b->err, b->errlen, "%s", msg);
    ERR_clear_error();
    return -1;
}

/* Something below an SSL Labs "A": refused, or a warning when allow_weak. */
int tls_build_weak(struct build *b, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!b->cfg->allow_weak) {
        snprintf(b->err, b->errlen, "%s (below an SSL Labs A; set allow_weak to accept it)", msg);
        return -1;
    }
    b->weak_seen = true;
    if (b->warn != NULL) {
        char w[600];
        snprintf(w, sizeof w, "weak TLS allowed by allow_weak: %s", msg);
        b->warn(w, b->warnarg);
    }
    return 0;
}

void tls_build_warn(struct build *b, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (b->warn != NULL)
        b->warn(msg, b->warnarg);
}
