/*
 * path: is a request path canonical? (the rules and their reasons: path.h,
 * docs/routing.md)
 */
#include "http/path.h"

#include <stdint.h>
#include <string.h>

/* The byte %XX at p[i] stands for, or -1 if malformed. */
static int escape_value(struct http1_str p, size_t i)
{
    if (i + 2 >= p.len)
        return -1;
    int hi = http1_hex_digit((unsigned char)p.p[i + 1]);
    int lo = http1_hex_digit((unsigned char)p.p[i + 2]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* An encoded ASCII byte an upstream may decode and then route on differently. */
static const char *escaped_ascii_problem(int v)
{
    if ((v >= 'A' && v <= 'Z') || (v >= 'a' && v <= 'z') || (v >= '0' && v <= '9') || v == '-' ||
        v == '.' || v == '_' || v == '~')
        return "needlessly percent-encoded character in path";
    if (v == '/' || v == '\\')
        return "percent-encoded slash or backslash in path";
    if (v == ';')
        return "percent-encoded ';' in path";
    if (v == '%')
        return "percent-encoded '%' in path (double encoding)";
    if (v <= 0x20 || v == 0x7f)
        return "percent-encoded control character or space in path";
    return NULL;
}

/*
 * Code points that case folding (Java's equalsIgnoreCase, .NET invariant
 * culture), NFKC normalization or Windows "best fit" mapping turn into ASCII
 * letters, digits, dots, slashes or spaces, with a few harmless neighbours
 * (whole blocks are cheaper to get right than a character list).
 */
static bool folds_to_ascii(uint32_t cp)
{
    static const struct {
        uint32_t lo, hi;
    } ranges[] = {
        {0x00A0, 0x00A0},   /* no-break space */
        {0x00AA, 0x00AA},   /* feminine ordinal: a */
        {0x00B2, 0x00B3},   /* superscript 2, 3 */
        {0x00B9, 0x00BA},   /* superscript 1, masculine ordinal: o */
        {0x0130, 0x0131},   /* dotted capital I, dotless i */
        {0x017F, 0x017F},   /* long s */
        {0x2000, 0x200A},   /* spaces */
        {0x2024, 0x2026},   /* one/two dot leader, ellipsis */
        {0x2044, 0x2044},   /* fraction slash */
        {0x2070, 0x209F},   /* superscripts and subscripts */
        {0x2100, 0x214F},   /* letterlike symbols: Kelvin sign, script letters */
        {0x2160, 0x217F},   /* roman numerals */
        {0x2215, 0x2215},   /* division slash */
        {0x2460, 0x24FF},   /* enclosed alphanumerics */
        {0x3000, 0x3000},   /* ideographic space */
        {0xFB00, 0xFB06},   /* latin ligatures: ff, fi, st */
        {0xFE50, 0xFE6B},   /* small form variants: full stop, solidus */
        {0xFF01, 0xFF5E},   /* fullwidth ASCII */
        {0x1D400, 0x1D7FF}, /* mathematical alphanumerics */
    };
    for (size_t i = 0; i < sizeof ranges / sizeof *ranges; i++)
        if (cp >= ranges[i].lo && cp <= ranges[i].hi)
            return true;
    return false;
}

/* UTF-8 decoder over the encoded bytes >= 0x80 of a path. */
struct utf8 {
    uint32_t cp, min;
    int need; /* continuation bytes still expected */
};

static const char *utf8_feed(struct utf8 *u, unsigned char b)
{
    static const char *const bad = "invalid UTF-8 in path";
    if (u->need == 0) {
        if (b >= 0xc2 && b <= 0xdf)
            *u = (struct utf8){b & 0x1fu, 0x80, 1};
        else if (b >= 0xe0 && b <= 0xef)
            *u = (struct utf8){b & 0x0fu, 0x800, 2};
        else if (b >= 0xf0 && b <= 0xf4)
            *u = (struct utf8){b & 0x07u, 0x10000, 3};
        else
            return bad; /* a continuation byte, or a lead byte only overlong forms use */
        return NULL;
    }
    if ((b & 0xc0) != 0x80)
        return bad;
    u->cp = u->cp << 6 | (b & 0x3fu);
    if (--u->need)
        return NULL;
    if (u->cp < u->min || u->cp > 0x10FFFF || (u->cp >= 0xD800 && u->cp <= 0xDFFF))
        return bad; /* overlong ("%c0%af" is '/' to a lax decoder), surrogate, too big */
    if (folds_to_ascii(u->cp))
        return "character that folds to ASCII in path";
    return NULL;
}

static const char *raw_problem(unsigned char c)
{
    if (c == ';')
        return "';' in path (path parameter)";
    if (c == '\\')
        return "backslash in path";
    if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#')
        return "invalid character in path";
    return NULL;
}

/* The segment s[0..n) between two '/' (or the end). */
static const char *segment_problem(const char *s, size_t n, bool last)
{
    if (n == 0)
        return last ? NULL : "empty path segment"; /* a trailing '/' is fine, "//" is not */
    if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return "dot segment in path";
    if (s[n - 1] == '.')
        return "path segment ending in '.'"; /* Windows servers drop trailing dots */
    return NULL;
}

const char *path_problem(struct http1_str path)
{
    if (path.len == 0 || path.p[0] != '/')
        return "request target must be an absolute path";
    struct utf8 u = {0, 0, 0};
    size_t seg = 1;
    for (size_t i = 1; i < path.len; i++) {
        unsigned char c = (unsigned char)path.p[i];
        const char *why;
        if (c == '%') {
            int v = escape_value(path, i);
            if (v < 0)
                return "invalid percent-encoding in path";
            why = v < 0x80 && u.need == 0 ? escaped_ascii_problem(v)
                                          : utf8_feed(&u, (unsigned char)v);
            i += 2;
        } else if (u.need) {
            why = "invalid UTF-8 in path"; /* a sequence cut short */
        } else if (c == '/') {
            why = segment_problem(path.p + seg, i - seg, false);
            seg = i + 1;
        } else {
            why = raw_problem(c);
        }
        if (why)
            return why;
    }
    if (u.need)
        return "invalid UTF-8 in path";
    return segment_problem(path.p + seg, path.len - seg, true);
}

const char *path_problem_str(const char *path)
{
    return path_problem((struct http1_str){path, strlen(path)});
}
