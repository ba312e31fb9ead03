/*
 * headername: loose comparison of header names. See headername.h for the why.
 */
#include "http/headername.h"

#include <string.h>

/* Folds one byte: lower-case letter, digit, or '_' for everything else. No locale. */
static unsigned char fold(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return (unsigned char)(c - 'A' + 'a');
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return c;
    return '_';
}

static struct http1_str trim_ows(struct http1_str s)
{
    if (s.p == NULL)
        return (struct http1_str){"", 0};
    while (s.len > 0 && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.len--;
    }
    while (s.len > 0 && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t'))
        s.len--;
    return s;
}

/* Compares the first n bytes of a and b folded. */
static bool folded_eq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (fold((unsigned char)a[i]) != fold((unsigned char)b[i]))
            return false;
    }
    return true;
}

bool headername_eq_loose(struct http1_str name, const char *canonical)
{
    size_t clen = strlen(canonical);

    name = trim_ows(name);
    return name.len == clen && folded_eq(name.p, canonical, clen);
}

bool headername_has_prefix_loose(struct http1_str name, const char *prefix)
{
    size_t plen = strlen(prefix);

    name = trim_ows(name);
    return name.len >= plen && folded_eq(name.p, prefix, plen);
}
