#include "http/traceparent.h"

#include <string.h>

static const char hexdigits[] = "0123456789abcdef";

static bool lower_hex(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return false;
    return true;
}

static uint8_t hexbyte(const char *p)
{
    int hi = p[0] <= '9' ? p[0] - '0' : p[0] - 'a' + 10;
    int lo = p[1] <= '9' ? p[1] - '0' : p[1] - 'a' + 10;
    return (uint8_t)(hi << 4 | lo);
}

bool traceparent_all_zero(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != '0')
            return false;
    return true;
}

/* Layout: 0-1 version, 2 '-', 3-34 trace-id, 35 '-', 36-51 parent-id, 52 '-', 53-54 flags. */
bool traceparent_parse(const char *v, size_t len, struct traceparent *out)
{
    if (!v || len != TRACEPARENT_LEN)
        return false;
    if (v[0] != '0' || v[1] != '0' || v[2] != '-' || v[35] != '-' || v[52] != '-')
        return false;
    const char *tid = v + 3, *pid = v + 36, *fl = v + 53;
    if (!lower_hex(tid, TRACE_ID_HEX) || !lower_hex(pid, TRACE_SPAN_HEX) || !lower_hex(fl, 2))
        return false;
    if (traceparent_all_zero(tid, TRACE_ID_HEX) || traceparent_all_zero(pid, TRACE_SPAN_HEX))
        return false;
    memcpy(out->trace_id, tid, TRACE_ID_HEX);
    out->trace_id[TRACE_ID_HEX] = '\0';
    memcpy(out->parent_id, pid, TRACE_SPAN_HEX);
    out->parent_id[TRACE_SPAN_HEX] = '\0';
    out->flags = hexbyte(fl);
    return true;
}

void traceparent_hex(const uint8_t *bytes, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexdigits[bytes[i] >> 4];
        out[2 * i + 1] = hexdigits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

size_t traceparent_format(const char *trace_id, const char *span_id, uint8_t flags, char *out)
{
    memcpy(out, "00-", 3);
    memcpy(out + 3, trace_id, TRACE_ID_HEX);
    out[35] = '-';
    memcpy(out + 36, span_id, TRACE_SPAN_HEX);
    out[52] = '-';
    out[53] = hexdigits[flags >> 4];
    out[54] = hexdigits[flags & 15];
    out[TRACEPARENT_LEN] = '\0';
    return TRACEPARENT_LEN;
}
