/*
 * jsonw: a tiny append-only JSON object writer into a caller-owned buffer.
 * Used for access-log lines and audit events: one object per line, escaped so
 * that no byte from the network can break the line or the JSON (control
 * characters, quotes, backslashes and non-ASCII bytes become \u00XX).
 * Truncates safely when the buffer is full (the line stays valid JSON).
 */
#ifndef MOAT_JSONW_H
#define MOAT_JSONW_H

#include <stddef.h>
#include <stdint.h>

struct jsonw {
    char *buf;
    size_t cap;
    size_t len;
    int fields;
    int overflow;
};

void jsonw_begin(struct jsonw *j, char *buf, size_t cap);
void jsonw_str(struct jsonw *j, const char *key, const char *val);
void jsonw_strn(struct jsonw *j, const char *key, const char *val, size_t len);
void jsonw_int(struct jsonw *j, const char *key, int64_t v);
void jsonw_uint(struct jsonw *j, const char *key, uint64_t v);
void jsonw_double(struct jsonw *j, const char *key, double v);
void jsonw_bool(struct jsonw *j, const char *key, int v);
void jsonw_null(struct jsonw *j, const char *key);
/* Writes the ISO-8601 UTC wall-clock time with milliseconds under key. */
void jsonw_time(struct jsonw *j, const char *key);
/* Closes the object and appends '\n'; returns the line length. */
size_t jsonw_end(struct jsonw *j);

#endif
