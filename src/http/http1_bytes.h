/*
 * http1_bytes: the byte classes of the HTTP/1 grammar (RFC 9110/9112), one
 * lookup each, built at compile time. Internal to src/http/http1*.c.
 */
#ifndef MOAT_HTTP1_BYTES_H
#define MOAT_HTTP1_BYTES_H

#include <stdint.h>

enum {
    CT_TCHAR = 1 << 0,  /* token character (RFC 9110 5.6.2) */
    CT_FIELD = 1 << 1,  /* field-value byte: HTAB, SP, VCHAR, obs-text */
    CT_TARGET = 1 << 2, /* request-target byte we accept (see IS_TARGET) */
    CT_HOST = 1 << 3,   /* Host / authority byte we accept (see IS_HOST) */
};

#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')
#define IS_ALPHA(c) (((c) >= 'A' && (c) <= 'Z') || ((c) >= 'a' && (c) <= 'z'))
#define IS_ALNUM(c) (IS_DIGIT(c) || IS_ALPHA(c))
#define IS_TCHAR(c)                                                                                \
    (IS_ALNUM(c) || (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' || (c) == '&' ||          \
     (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' || (c) == '^' ||          \
     (c) == '_' || (c) == '`' || (c) == '|' || (c) == '~')
#define IS_FIELD(c) ((c) == '\t' || ((c) >= 0x20 && (c) != 0x7f))
/* VCHAR minus '#' (a fragment is never sent) and '\' (some servers read it as
 * '/', which would let "/public\..\admin" route differently than it is served). */
#define IS_TARGET(c) ((c) > 0x20 && (c) < 0x7f && (c) != '#' && (c) != '\\')
/* reg-name / IP-literal / port bytes real clients send. Sub-delims and '%' are
 * legal in a reg-name but only serve to make virtual hosting ambiguous. */
#define IS_HOST(c)                                                                                 \
    (IS_ALNUM(c) || (c) == '-' || (c) == '.' || (c) == '_' || (c) == '~' || (c) == ':' ||          \
     (c) == '[' || (c) == ']')
#define CTYPE(c)                                                                                   \
    ((IS_TCHAR(c) ? CT_TCHAR : 0) | (IS_FIELD(c) ? CT_FIELD : 0) |                                 \
     (IS_TARGET(c) ? CT_TARGET : 0) | (IS_HOST(c) ? CT_HOST : 0))
#define HEXVAL(c)                                                                                  \
    (IS_DIGIT(c)                  ? (c) - '0'                                                      \
     : ((c) >= 'a' && (c) <= 'f') ? (c) - 'a' + 10                                                 \
     : ((c) >= 'A' && (c) <= 'F') ? (c) - 'A' + 10                                                 \
                                  : -1)
#define LOWER(c) ((c) + (((c) >= 'A' && (c) <= 'Z') ? 32 : 0))

#define ROW(M, r)                                                                                  \
    M(r + 0), M(r + 1), M(r + 2), M(r + 3), M(r + 4), M(r + 5), M(r + 6), M(r + 7), M(r + 8),      \
        M(r + 9), M(r + 10), M(r + 11), M(r + 12), M(r + 13), M(r + 14), M(r + 15)
#define TABLE(M)                                                                                   \
    {                                                                                              \
        ROW(M, 0x00), ROW(M, 0x10), ROW(M, 0x20), ROW(M, 0x30), ROW(M, 0x40), ROW(M, 0x50),        \
            ROW(M, 0x60), ROW(M, 0x70), ROW(M, 0x80), ROW(M, 0x90), ROW(M, 0xa0), ROW(M, 0xb0),    \
            ROW(M, 0xc0), ROW(M, 0xd0), ROW(M, 0xe0), ROW(M, 0xf0)                                 \
    }

extern const uint8_t http1_ctype[256];
extern const int8_t http1_hexval[256];
extern const uint8_t http1_lower[256];

#define HAS(c, cls) ((http1_ctype[(unsigned char)(c)] & (cls)) != 0)
#define IS_OWS(c) ((c) == ' ' || (c) == '\t')

#endif
