/*
 * config_value: scalar parsers and single-value checks (config_value.h).
 */
#include "config/config_value.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "http/path.h"
#include "util/netutil.h"

/* Reads 1..13 decimal digits; returns the end or NULL. */
static const char *read_count(const char *s, uint64_t *v)
{
    const char *p = s;
    *v = 0;
    for (; isdigit((unsigned char)*p); p++) {
        if (p - s >= 13)
            return NULL;
        *v = *v * 10 + (uint64_t)(*p - '0');
    }
    return p == s ? NULL : p;
}

int config_parse_duration(const char *s, uint64_t *ms)
{
    uint64_t v, mult;
    const char *p = s ? read_count(s, &v) : NULL;
    if (!p)
        return -1;
    if (!strcmp(p, "ms"))
        mult = 1;
    else if (!strcmp(p, "s"))
        mult = 1000;
    else if (!strcmp(p, "m"))
        mult = 60 * 1000;
    else if (!strcmp(p, "h"))
        mult = 3600 * 1000;
    else
        return -1; /* a bare number is ambiguous (seconds? ms?): a unit is required */
    *ms = v * mult;
    return 0;
}

int config_parse_rate(const char *s, double *per_sec)
{
    uint64_t n;
    const char *p = s ? read_count(s, &n) : NULL;
    if (!p || n == 0 || p[0] != '/' || !p[1] || p[2])
        return -1;
    switch (p[1]) {
    case 's':
        *per_sec = (double)n;
        return 0;
    case 'm':
        *per_sec = (double)n / 60.0;
        return 0;
    case 'h':
        *per_sec = (double)n / 3600.0;
        return 0;
    default:
        return -1;
    }
}

void config_addr_clear(struct config_addr *a)
{
    if (!a)
        return;
    free(a->text);
    free(a->host);
    free(a->path);
    memset(a, 0, sizeof *a);
}

static const char *parse_port(const char *p, uint16_t *port)
{
    unsigned v = 0;
    size_t n = 0;
    for (; isdigit((unsigned char)p[n]) && n < 6; n++)
        v = v * 10 + (unsigned)(p[n] - '0');
    if (n == 0 || p[n])
        return "expected a decimal port after ':'";
    if (v < 1 || v > 65535)
        return "port must be between 1 and 65535";
    *port = (uint16_t)v;
    return NULL;
}

static const char *check_addr_host(const char *h)
{
    unsigned char bin[4];
    size_t n = strlen(h);
    if (n == 0)
        return "the host is empty";
    if (n > 253)
        return "the host is too long";
    if (strspn(h, "0123456789.") == n)
        return inet_pton(AF_INET, h, bin) == 1 ? NULL : "not a valid IPv4 address";
    if (h[0] == '-' || h[0] == '.')
        return "not a valid host name";
    for (; *h; h++)
        if (!isalnum((unsigned char)*h) && !strchr("-._", *h))
            return "not a valid host name";
    return NULL;
}

/* "[v6]:port": host gets the address between the brackets; returns the port text. */
static const char *split_bracketed(const char *s, char *host, size_t hlen, const char **why)
{
    const char *close = strchr(s, ']');
    unsigned char bin[16];
    if (!close || close[1] != ':') {
        *why = "expected [v6]:port";
        return NULL;
    }
    if ((size_t)(close - s - 1) >= hlen) {
        *why = "the host is too long";
        return NULL;
    }
    memcpy(host, s + 1, (size_t)(close - s - 1));
    host[close - s - 1] = '\0';
    if (inet_pton(AF_INET6, host, bin) != 1) {
        *why = "not a valid IPv6 address";
        return NULL;
    }
    return close + 2;
}

/* "host:port" with an IPv4 address or a name; returns the port text. */
static const char *split_hostport(const char *s, char *host, size_t hlen, const char **why)
{
    const char *colon = strrchr(s, ':');
    if (!colon)
        *why = "expected host:port, [v6]:port or unix:/path";
    else if (memchr(s, ':', (size_t)(colon - s)))
        *why = "IPv6 addresses must be in brackets, e.g. [::1]:8443";
    else if ((size_t)(colon - s) >= hlen)
        *why = "the host is too long";
    else {
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        *why = check_addr_host(host);
    }
    return *why ? NULL : colon + 1;
}

int config_addr_parse(const char *s, struct config_addr *out, const char **why)
{
    struct config_addr a = {0};
    *why = NULL;
    if (!strncmp(s, "unix:", 5)) {
        if (!s[5])
            *why = "the unix socket path is empty";
        else if (strlen(s + 5) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            *why = "the unix socket path is too long";
        if (*why)
            return -1;
        a.text = strdup(s);
        a.path = strdup(s + 5);
    } else {
        char host[256];
        const char *port = s[0] == '[' ? split_bracketed(s, host, sizeof host, why)
                                       : split_hostport(s, host, sizeof host, why);
        if (port)
            *why = parse_port(port, &a.port);
        if (*why)
            return -1;
        a.text = strdup(s);
        a.host = strdup(host);
    }
    if (!a.text || (!a.host && !a.path)) {
        config_addr_clear(&a);
        *why = "out of memory";
        return -1;
    }
    *out = a;
    return 0;
}

bool config_parse_bytes(const char *s, int64_t *out)
{
    static const struct {
        const char *unit;
        int64_t mul;
    } units[] = {{"B", 1},
                 {"KB", 1000},
                 {"MB", 1000000},
                 {"GB", 1000000000},
                 {"KiB", (int64_t)1 << 10},
                 {"MiB", (int64_t)1 << 20},
                 {"GiB", (int64_t)1 << 30}};
    const char *p = s;
    uint64_t v = 0;
    if (!isdigit((unsigned char)*p))
        return false;
    for (; isdigit((unsigned char)*p); p++) {
        if (v > (uint64_t)INT64_MAX / 10)
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
        if (strcmp(p, units[i].unit))
            continue;
        if (v > (uint64_t)(INT64_MAX / units[i].mul))
            return false;
        *out = (int64_t)v * units[i].mul;
        return true;
    }
    return false;
}

int config_server_parse(const char *s, struct config_addr *out, const char **why)
{
    const char *sp = strchr(s, ' ');
    if (!sp) {
        if (config_addr_parse(s, out, why) < 0)
            return -1;
        out->weight = 1;
        return 0;
    }
    int64_t w = 0;
    if (strncmp(sp, " weight=", 8) || !config_parse_i64(sp + 8, &w) || w < 1 || w > 1000) {
        *why = "expected \"address\" or \"address weight=N\" with N in 1..1000";
        return -1;
    }
    char addr[300];
    if ((size_t)(sp - s) >= sizeof addr) {
        *why = "the address is too long";
        return -1;
    }
    memcpy(addr, s, (size_t)(sp - s));
    addr[sp - s] = '\0';
    if (config_addr_parse(addr, out, why) < 0)
        return -1;
    out->weight = (unsigned)w;
    return 0;
}

const char *config_check_status_range(const char *s)
{
    int lo = 0, hi = 0, n = 0;
    if (sscanf(s, "%3d-%3d%n", &lo, &hi, &n) == 2 && s[n] == '\0') {
        if (lo >= 100 && hi <= 599 && lo <= hi)
            return NULL;
    } else if (sscanf(s, "%3d%n", &lo, &n) == 1 && s[n] == '\0' && lo >= 100 && lo <= 599) {
        return NULL;
    }
    return "must be a status (\"200\") or a range (\"200-399\") within 100-599";
}

const char *config_check_tenant_limit(const char *s)
{
    const char *eq = strrchr(s, '=');
    int64_t v = 0;
    if (!eq || eq == s || !config_parse_i64(eq + 1, &v) || v < 0 || v > 1000000)
        return "must be \"tenant=N\" with N in 0..1000000";
    char name[130];
    if ((size_t)(eq - s) >= sizeof name)
        return "the tenant name is too long";
    memcpy(name, s, (size_t)(eq - s));
    name[eq - s] = '\0';
    return config_check_tenant_name(name);
}

int config_parse_addr(const char *s, struct config_addr *out)
{
    const char *why;
    if (!s || !out)
        return -1;
    return config_addr_parse(s, out, &why);
}

bool config_parse_bool(const char *s, bool *out)
{
    static const char *const t[] = {"true", "True", "TRUE"}, *const f[] = {"false", "False",
                                                                           "FALSE"};
    for (int i = 0; i < 3; i++) {
        if (!strcmp(s, t[i]) || !strcmp(s, f[i])) {
            *out = !strcmp(s, t[i]);
            return true;
        }
    }
    return false;
}

/* Plain decimal, optional '-'; too large saturates so the bounds check reports it. */
bool config_parse_i64(const char *s, int64_t *out)
{
    bool neg = *s == '-';
    uint64_t v = 0;
    s += neg;
    if (!isdigit((unsigned char)*s))
        return false;
    for (; isdigit((unsigned char)*s); s++)
        v = v > (uint64_t)INT64_MAX ? v : v * 10 + (uint64_t)(*s - '0');
    if (*s)
        return false;
    if (v > (uint64_t)INT64_MAX)
        v = (uint64_t)INT64_MAX;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return true;
}

const char *config_format_duration(int64_t ms, char *buf, size_t len)
{
    if (ms != 0 && ms % MS_H == 0)
        snprintf(buf, len, "%lldh", (long long)(ms / MS_H));
    else if (ms != 0 && ms % MS_M == 0)
        snprintf(buf, len, "%lldm", (long long)(ms / MS_M));
    else if (ms % MS_S == 0)
        snprintf(buf, len, "%llds", (long long)(ms / MS_S));
    else
        snprintf(buf, len, "%lldms", (long long)ms);
    return buf;
}

static bool is_tchar(int c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool all_chars(const char *s, const char *extra)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr(extra, *s))
            return false;
    return true;
}

const char *config_check_header_name(const char *s)
{
    for (const char *p = s; *p; p++)
        if (!is_tchar((unsigned char)*p))
            return "not a valid header name";
    return *s ? NULL : "must not be empty";
}

/* A header name, or a prefix pattern ending in '*' ("X-Moat-*"). */
const char *config_check_header_pattern(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]) || (s[i] == '*' && i != n - 1))
            return "not a header name or a prefix pattern like X-Moat-*";
    return n ? NULL : "must not be empty";
}

const char *config_check_hostname(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253 || !all_chars(s, "-._") || s[0] == '.' || strstr(s, ".."))
        return "not a valid host name";
    return NULL;
}

/* Exact host name or "*.suffix". */
const char *config_check_host_pattern(const char *s)
{
    if (s[0] == '*' && s[1] == '.')
        s += 2;
    return config_check_hostname(s) ? "must be a host name or *.domain" : NULL;
}

const char *config_check_path(const char *s)
{
    if (s[0] != '/')
        return "must start with '/'";
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f || *s == '?' || *s == '#')
            return "must not contain spaces, controls, '?' or '#'";
    return NULL;
}

/* A route prefix that is not a canonical path could never match (path.h). */
const char *config_check_path_prefix(const char *s)
{
    const char *why = config_check_path(s);
    return why ? why : path_problem_str(s);
}

const char *config_check_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || !all_chars(s, "-_."))
        return "must be 1 to 64 characters of A-Z a-z 0-9 - _ .";
    return NULL;
}

const char *config_check_tenant_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128 || !all_chars(s, "-_.:@"))
        return "must be 1 to 128 characters of A-Z a-z 0-9 - _ . : @";
    return NULL;
}

const char *config_check_key_prefix(const char *s)
{
    if (strlen(s) > 64)
        return "must be at most 64 characters";
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return "must not contain spaces or controls";
    return NULL;
}

/* An octal file mode for the admin socket: never open to other users. */
const char *config_check_socket_mode(const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > 4 || strspn(s, "01234567") != n || (n == 4 && s[0] != '0'))
        return "expected an octal file mode such as \"0600\"";
    if (s[n - 1] != '0')
        return "must not give other users access: the admin endpoint is never public";
    return NULL;
}

const char *config_check_env_name(const char *s)
{
    if (!*s || isdigit((unsigned char)*s) || !all_chars(s, "_"))
        return "not a valid environment variable name";
    return NULL;
}

const char *config_check_login_url(const char *s)
{
    if (s[0] != '/' && strncmp(s, "https://", 8) != 0)
        return "must be a path (/login) or an https:// URL";
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return "must not contain spaces or controls";
    return NULL;
}

/* Exactly what the identity phase will parse: netutil decides, not a second parser. */
const char *config_check_cidr(const char *s)
{
    struct netutil_cidr c;
    return netutil_cidr_parse(s, &c) == 0 ? NULL : "not an IP address or CIDR (e.g. 10.0.0.0/8)";
}

const char *config_check_no_controls(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return "must not contain control characters";
    return NULL;
}

const char *config_check_alpn(const char *s)
{
    return strcmp(s, "h2") == 0 || strcmp(s, "http/1.1") == 0 ? NULL
                                                              : "must be \"h2\" or \"http/1.1\"";
}

const char *config_check_syslog_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 48)
        return "must be 1 to 48 characters";
    for (; *s; s++)
        if ((unsigned char)*s < 33 || (unsigned char)*s > 126)
            return "must be printable ASCII without spaces";
    return NULL;
}

const char *config_check_syslog_stream(const char *s)
{
    return strcmp(s, "access") && strcmp(s, "audit") ? "must be access or audit" : NULL;
}
