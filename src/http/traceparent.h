/*
 * traceparent: the W3C Trace Context `traceparent` header
 * (https://www.w3.org/TR/trace-context/), parsed strictly and formatted.
 * Pure: no I/O, no randomness (the caller brings the ids).
 *
 * Accepted: exactly "00-<32 hex>-<16 hex>-<2 hex>", lowercase hex, a trace-id and
 * a parent-id that are not all zeros. Anything else (another version, uppercase,
 * extra fields, surrounding spaces) is invalid: the caller starts a new trace.
 */
#ifndef MOAT_TRACEPARENT_H
#define MOAT_TRACEPARENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRACEPARENT_LEN 55 /* "00-" 32 "-" 16 "-" 2 */
#define TRACE_ID_HEX 32    /* hex digits of a trace-id */
#define TRACE_SPAN_HEX 16  /* hex digits of a parent-id (span id) */
#define TRACESTATE_MAX 512 /* bytes of tracestate kept (W3C: propagate at least 512) */

struct traceparent {
    char trace_id[TRACE_ID_HEX + 1]; /* lowercase hex, NUL-terminated */
    char parent_id[TRACE_SPAN_HEX + 1];
    uint8_t flags;
};

/* True and *out filled if v[0..len) is a valid version-00 traceparent. */
bool traceparent_parse(const char *v, size_t len, struct traceparent *out);

/* Writes n bytes as 2n lowercase hex digits plus a NUL into out (2n + 1 bytes). */
void traceparent_hex(const uint8_t *bytes, size_t n, char *out);

/* True if s[0..len) is all '0' (an invalid id). */
bool traceparent_all_zero(const char *s, size_t len);

/* Writes "00-<trace_id>-<span_id>-<flags>" and a NUL into out (TRACEPARENT_LEN + 1 bytes);
 * returns TRACEPARENT_LEN. */
size_t traceparent_format(const char *trace_id, const char *span_id, uint8_t flags, char *out);

#endif
