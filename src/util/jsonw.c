#include "util/jsonw.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Room kept free for the closing "}\n" so a truncated line still parses. */
#define JSONW_RESERVE 3

static void put(struct jsonw *j, const char *s, size_t n)
{
    if (j->overflow || j->len + n + JSONW_RESERVE > j->cap) {
        j->overflow = 1;
        return;
    }
    memcpy(j->buf + j->len, s, n);
    j->len += n;
}

static void put_escaped(struct jsonw *j, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
            continue;
        put(j, s + start, i - start);
        char esc[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
        if (ch == '"' || ch == '\\') {
            char two[2] = {'\\', (char)ch};
            put(j, two, 2);
        } else {
            put(j, esc, 6);
        }
        start = i + 1;
    }
    put(j, s + start, n - start);
}

static void key(struct jsonw *j, const char *k)
{
    if (j->fields++)
        put(j, ",", 1);
    put(j, "\"", 1);
    put(j, k, strlen(k));
    put(j, "\":", 2);
}

void jsonw_begin(struct jsonw *j, char *buf, size_t cap)
{
    j->buf = buf;
    j->cap = cap;
    j->len = 0;
    j->fields = 0;
    j->overflow = 0;
    put(j, "{", 1);
}

void jsonw_strn(struct jsonw *j, const char *k, const char *val, size_t len)
{
    if (!val) {
        jsonw_null(j, k);
        return;
    }
    size_t mark = j->len;
    int fields = j->fields;
    key(j, k);
    put(j, "\"", 1);
    put_escaped(j, val, len);
    put(j, "\"", 1);
    if (j->overflow) { /* drop the partial field, keep the line valid */
        j->len = mark;
        j->fields = fields;
    }
}

void jsonw_str(struct jsonw *j, const char *k, const char *val)
{
    jsonw_strn(j, k, val, val ? strlen(val) : 0);
}

static void raw_field(struct jsonw *j, const char *k, const char *v, int n)
{
    if (n < 0)
        return;
    size_t mark = j->len;
    int fields = j->fields;
    key(j, k);
    put(j, v, (size_t)n);
    if (j->overflow) {
        j->len = mark;
        j->fields = fields;
    }
}

void jsonw_int(struct jsonw *j, const char *k, int64_t v)
{
    char tmp[32];
    raw_field(j, k, tmp, snprintf(tmp, sizeof tmp, "%lld", (long long)v));
}

void jsonw_uint(struct jsonw *j, const char *k, uint64_t v)
{
    char tmp[32];
    raw_field(j, k, tmp, snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v));
}

void jsonw_double(struct jsonw *j, const char *k, double v)
{
    char tmp[48];
    raw_field(j, k, tmp, snprintf(tmp, sizeof tmp, "%.3f", v));
}

void jsonw_bool(struct jsonw *j, const char *k, int v)
{
    raw_field(j, k, v ? "true" : "false", v ? 4 : 5);
}

void jsonw_null(struct jsonw *j, const char *k)
{
    raw_field(j, k, "null", 4);
}

void jsonw_time(struct jsonw *j, const char *k)
{
    struct timespec ts;
    struct tm tm;
    char tmp[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(tmp + n, sizeof tmp - n, ".%03ldZ", ts.tv_nsec / 1000000);
    jsonw_strn(j, k, tmp, n);
}

size_t jsonw_end(struct jsonw *j)
{
    /* JSONW_RESERVE guarantees room */
    j->buf[j->len++] = '}';
    j->buf[j->len++] = '\n';
    j->buf[j->len] = '\0';
    return j->len;
}
