/*
 * config_keys: key tables and the walkers that apply them (see config_keys.h).
 */
#include "config/config_keys.h"
#include "http/http1.h"
#include "util/netutil.h"
#include "http/path.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#define PATH_MAX_LEN 256
#define OFF(type, field) offsetof(type, field)
#define CK_END                                                                                     \
    {                                                                                              \
        .name = NULL                                                                               \
    }

/* ---- loader: errors and positions ------------------------------------------------ */

struct config_pos_slot {
    uintptr_t key; /* field address * 2 + tag; 0 = empty */
    struct config_pos pos;
};

void config_loader_init(struct config_loader *L, const char *name, bool check_files)
{
    memset(L, 0, sizeof *L);
    L->name = name;
    L->check_files = check_files;
}

void config_loader_error(struct config_loader *L, struct config_pos pos, const char *path,
                         const char *fmt, ...)
{
    if (L->num_errs >= CONFIG_MAX_ERRORS) {
        L->dropped++;
        return;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    char where[64] = "";
    if (pos.line > 0)
        snprintf(where, sizeof where, ":%d:%d", pos.line, pos.column);
    size_t n = strlen(L->name) + strlen(where) + strlen(path) + strlen(msg) + 8;
    char *full = malloc(n);
    if (!full) {
        L->dropped++; /* still counted: a load with a lost error must not succeed */
        L->oom = true;
        return;
    }
    snprintf(full, n, "%s%s: %s%s%s", L->name, where, path, *path ? ": " : "", msg);
    for (char *p = full; *p; p++) /* a message may reach a terminal: no escapes */
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';

    if (L->num_errs == L->cap_errs) {
        size_t cap = L->cap_errs ? L->cap_errs * 2 : 8;
        struct config_loader_error *e = realloc(L->errs, cap * sizeof *e);
        if (!e) {
            free(full);
            L->dropped++;
            L->oom = true;
            return;
        }
        L->errs = e;
        L->cap_errs = cap;
    }
    L->errs[L->num_errs] = (struct config_loader_error){pos, L->num_errs, full};
    L->num_errs++;
}

void config_loader_oom(struct config_loader *L)
{
    L->oom = true;
    config_loader_error(L, (struct config_pos){0, 0}, "", "out of memory");
}

/* strdup() that fails the load instead of storing NULL. */
static char *loader_strdup(struct config_loader *L, const char *s)
{
    char *d = strdup(s);
    if (!d)
        config_loader_oom(L);
    return d;
}

/* Positionless errors (line 0) sort last; the rest by line, column, then report order. */
static int error_cmp(const void *a, const void *b)
{
    const struct config_loader_error *x = a, *y = b;
    long lx = x->pos.line ? x->pos.line : 0x7fffffff, ly = y->pos.line ? y->pos.line : 0x7fffffff;
    if (lx != ly)
        return lx < ly ? -1 : 1;
    if (x->pos.column != y->pos.column)
        return x->pos.column < y->pos.column ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void errors_push(struct config_errors *errs, char *msg)
{
    char **m = realloc(errs->msgs, (errs->count + 1) * sizeof *m);
    if (!m) {
        free(msg);
        return;
    }
    errs->msgs = m;
    errs->msgs[errs->count++] = msg;
}

void config_loader_finish(struct config_loader *L, struct config_errors *errs)
{
    if (L->num_errs)
        qsort(L->errs, L->num_errs, sizeof *L->errs, error_cmp);
    for (size_t i = 0; i < L->num_errs; i++) {
        if (errs)
            errors_push(errs, L->errs[i].msg);
        else
            free(L->errs[i].msg);
    }
    if (L->dropped && errs) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s: %zu more errors not shown", L->name, L->dropped);
        char *m = strdup(buf);
        if (m)
            errors_push(errs, m);
    }
    free(L->errs);
    free(L->pos);
    L->errs = NULL;
    L->pos = NULL;
    L->num_errs = L->cap_errs = L->pos_cap = L->pos_used = 0;
}

static size_t pos_hash(uintptr_t k, size_t cap)
{
    uint64_t h = (uint64_t)k * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17) & (cap - 1);
}

void config_loader_remember(struct config_loader *L, const void *field, int tag,
                            struct config_pos pos)
{
    if (pos.line <= 0)
        return;
    uintptr_t key = (uintptr_t)field * 2 + (uintptr_t)(tag & 1);
    if (L->pos_used * 2 >= L->pos_cap) {
        size_t cap = L->pos_cap ? L->pos_cap * 2 : 256;
        struct config_pos_slot *t = calloc(cap, sizeof *t);
        if (!t)
            return; /* positions are only a nicety for messages */
        for (size_t i = 0; i < L->pos_cap; i++) {
            if (!L->pos[i].key)
                continue;
            size_t j = pos_hash(L->pos[i].key, cap);
            while (t[j].key)
                j = (j + 1) & (cap - 1);
            t[j] = L->pos[i];
        }
        free(L->pos);
        L->pos = t;
        L->pos_cap = cap;
    }
    size_t j = pos_hash(key, L->pos_cap);
    while (L->pos[j].key && L->pos[j].key != key)
        j = (j + 1) & (L->pos_cap - 1);
    if (!L->pos[j].key)
        L->pos_used++;
    L->pos[j].key = key;
    L->pos[j].pos = pos;
}

struct config_pos config_loader_pos(const struct config_loader *L, const void *field, int tag)
{
    uintptr_t key = (uintptr_t)field * 2 + (uintptr_t)(tag & 1);
    if (!L->pos_cap)
        return (struct config_pos){0, 0};
    size_t j = pos_hash(key, L->pos_cap);
    while (L->pos[j].key) {
        if (L->pos[j].key == key)
            return L->pos[j].pos;
        j = (j + 1) & (L->pos_cap - 1);
    }
    return (struct config_pos){0, 0};
}

const char *config_quote(const char *s, char *buf, size_t len)
{
    size_t o = 0;
    if (len < 8)
        return "";
    buf[o++] = '"';
    for (; *s && o < len - 5; s++) /* room left for ..." and the NUL */
        buf[o++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;
    if (*s) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

/* ---- value checks referenced from the tables --------------------------------------- */

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

static const char *check_header_name(const char *s)
{
    for (const char *p = s; *p; p++)
        if (!is_tchar((unsigned char)*p))
            return "not a valid header name";
    return *s ? NULL : "must not be empty";
}

/* A header name, or a prefix pattern ending in '*' ("X-Moat-*"). */
static const char *check_header_pattern(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]) || (s[i] == '*' && i != n - 1))
            return "not a header name or a prefix pattern like X-Moat-*";
    return n ? NULL : "must not be empty";
}

static const char *check_hostname(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253 || !all_chars(s, "-._") || s[0] == '.' || strstr(s, ".."))
        return "not a valid host name";
    return NULL;
}

/* Exact host name or "*.suffix". */
static const char *check_host_pattern(const char *s)
{
    if (s[0] == '*' && s[1] == '.')
        s += 2;
    return check_hostname(s) ? "must be a host name or *.domain" : NULL;
}

static const char *check_path(const char *s)
{
    if (s[0] != '/')
        return "must start with '/'";
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f || *s == '?' || *s == '#')
            return "must not contain spaces, controls, '?' or '#'";
    return NULL;
}

/* A route prefix that is not a canonical path could never match (path.h). */
static const char *check_path_prefix(const char *s)
{
    const char *why = check_path(s);
    return why ? why : path_problem_str(s);
}

static const char *check_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || !all_chars(s, "-_."))
        return "must be 1 to 64 characters of A-Z a-z 0-9 - _ .";
    return NULL;
}

static const char *check_tenant_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128 || !all_chars(s, "-_.:@"))
        return "must be 1 to 128 characters of A-Z a-z 0-9 - _ . : @";
    return NULL;
}

static const char *check_key_prefix(const char *s)
{
    if (strlen(s) > 64)
        return "must be at most 64 characters";
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return "must not contain spaces or controls";
    return NULL;
}

/* An octal file mode for the admin socket: never open to other users. */
static const char *check_socket_mode(const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > 4 || strspn(s, "01234567") != n || (n == 4 && s[0] != '0'))
        return "expected an octal file mode such as \"0600\"";
    if (s[n - 1] != '0')
        return "must not give other users access: the admin endpoint is never public";
    return NULL;
}

static const char *check_env_name(const char *s)
{
    if (!*s || isdigit((unsigned char)*s) || !all_chars(s, "_"))
        return "not a valid environment variable name";
    return NULL;
}

static const char *check_login_url(const char *s)
{
    if (s[0] != '/' && strncmp(s, "https://", 8) != 0)
        return "must be a path (/login) or an https:// URL";
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return "must not contain spaces or controls";
    return NULL;
}

/* Exactly what the identity phase will parse: netutil decides, not a second parser. */
static const char *check_cidr(const char *s)
{
    struct netutil_cidr c;
    return netutil_cidr_parse(s, &c) == 0 ? NULL : "not an IP address or CIDR (e.g. 10.0.0.0/8)";
}

static const char *check_no_controls(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return "must not contain control characters";
    return NULL;
}

/* ---- tables ----------------------------------------------------------------------- */

#define MS_S 1000
#define MS_M (60 * MS_S)
#define MS_H (60 * MS_M)
#define MS_D (24 * (int64_t)MS_H)

static const struct config_enum tls_versions[] = {{"TLSv1", TLS1_VERSION},
                                                  {"TLSv1.1", TLS1_1_VERSION},
                                                  {"TLSv1.2", TLS1_2_VERSION},
                                                  {"TLSv1.3", TLS1_3_VERSION},
                                                  {NULL, 0}};
static const struct config_enum balances[] = {
    {"round_robin", BALANCE_ROUND_ROBIN}, {"least_conn", BALANCE_LEAST_CONN}, {NULL, 0}};
static const struct config_enum auth_modes[] = {
    {"none", AUTH_NONE}, {"optional", AUTH_OPTIONAL}, {"required", AUTH_REQUIRED}, {NULL, 0}};
static const struct config_enum mfa_modes[] = {{"required", 1}, {"optional", 0}, {NULL, 0}};
static const struct config_enum rl_keys[] = {{"ip", RL_KEY_IP},
                                             {"session", RL_KEY_SESSION},
                                             {"tenant", RL_KEY_TENANT},
                                             {"header:", RL_KEY_HEADER},
                                             {NULL, 0}};
static const struct config_enum rl_scopes[] = {
    {"local", RL_SCOPE_LOCAL}, {"global", RL_SCOPE_GLOBAL}, {NULL, 0}};
static const struct config_enum rl_on_error[] = {{"local", RL_ON_ERROR_LOCAL},
                                                 {"deny", RL_ON_ERROR_DENY},
                                                 {"allow", RL_ON_ERROR_ALLOW},
                                                 {NULL, 0}};
static const struct config_enum log_levels[] = {
    {"debug", 0}, {"info", 0}, {"warn", 0}, {"error", 0}, {NULL, 0}};
static const struct config_enum referrer_policies[] = {{"no-referrer", 0},
                                                       {"no-referrer-when-downgrade", 0},
                                                       {"origin", 0},
                                                       {"origin-when-cross-origin", 0},
                                                       {"same-origin", 0},
                                                       {"strict-origin", 0},
                                                       {"strict-origin-when-cross-origin", 0},
                                                       {"unsafe-url", 0},
                                                       {NULL, 0}};

#define L_ struct config_listen
static const struct config_key listen_keys[] = {
    {"https", CK_ADDR_ARRAY, OFF(L_, https), OFF(L_, num_https), .max = CONFIG_MAX_LISTEN,
     .def = "0.0.0.0:8443"},
    {"http", CK_ADDR_ARRAY, OFF(L_, http), OFF(L_, num_http), .max = CONFIG_MAX_LISTEN,
     .def = "0.0.0.0:8080"},
    {"admin", CK_ADDR, OFF(L_, admin), .def = "127.0.0.1:9901", .flags = CK_NULL},
    {"admin_mode", CK_STR, OFF(L_, admin_mode), .check = check_socket_mode, .def = "0600"},
    {"redirect_https_port", CK_INT, OFF(L_, redirect_https_port), .min = 1, .max = 65535,
     .def = "443"},
    CK_END};
#undef L_

#define T_ struct config_tls
#define C_ struct config_tls_cert
static const struct config_key cert_keys[] = {
    {"cert", CK_STR, OFF(C_, cert), .flags = CK_REQUIRED | CK_NONEMPTY, .check = check_no_controls},
    {"key", CK_STR, OFF(C_, key), .flags = CK_REQUIRED | CK_NONEMPTY, .check = check_no_controls},
    {"ocsp", CK_STR, OFF(C_, ocsp), .flags = CK_NULL | CK_NONEMPTY, .check = check_no_controls},
    CK_END};
static const struct config_key tickets_keys[] = {
    {"enabled", CK_BOOL, OFF(T_, tickets_enabled), .def = "true"},
    {"rotate", CK_DURATION, OFF(T_, ticket_rotate_ms), .min = MS_M, .max = 7 * MS_D, .def = "12h"},
    {"key_file", CK_STR, OFF(T_, ticket_key_file), .flags = CK_NULL | CK_NONEMPTY,
     .check = check_no_controls},
    CK_END};
static const struct config_key tls_keys[] = {
    {"certificates", CK_LIST, OFF(T_, certs), OFF(T_, num_certs), .keys = cert_keys,
     .elem_size = sizeof(C_), .pos_off = OFF(C_, line), .flags = CK_NULL | CK_POS},
    {"min_version", CK_ENUM, OFF(T_, min_version), .choices = tls_versions, .def = "TLSv1.2"},
    {"ciphers", CK_STR, OFF(T_, ciphers), .flags = CK_NONEMPTY, .check = check_no_controls,
     .def = CONFIG_TLS_CIPHERS},
    {"ciphersuites", CK_STR, OFF(T_, ciphersuites), .flags = CK_NONEMPTY,
     .check = check_no_controls, .def = CONFIG_TLS_CIPHERSUITES},
    {"groups", CK_STR, OFF(T_, groups), .flags = CK_NONEMPTY, .check = check_no_controls,
     .def = CONFIG_TLS_GROUPS},
    {"allow_weak", CK_BOOL, OFF(T_, allow_weak), .def = "false"},
    {"session_tickets", CK_SECTION, 0, .keys = tickets_keys},
    {"session_cache", CK_BOOL, OFF(T_, session_cache), .def = "true"},
    {"client_ca", CK_STR, OFF(T_, client_ca), .flags = CK_NULL | CK_NONEMPTY,
     .check = check_no_controls},
    {"client_verify", CK_BOOL, OFF(T_, client_verify), .def = "false"},
    {"ocsp_fetch", CK_BOOL, OFF(T_, ocsp_fetch), .def = "false"},
    {"ocsp_refresh", CK_DURATION, OFF(T_, ocsp_refresh_ms), .min = MS_M, .max = 7 * MS_D,
     .def = "1h"},
    CK_END};
#undef T_
#undef C_

#define H_ struct config_hsts
static const struct config_key hsts_keys[] = {
    {"max_age", CK_U64, OFF(H_, max_age), .min = 0, .max = 2 * 31536000, .def = "31536000"},
    {"include_subdomains", CK_BOOL, OFF(H_, include_subdomains), .def = "true"},
    {"preload", CK_BOOL, OFF(H_, preload), .def = "false"},
    CK_END};
#undef H_

#define TC_ struct config_tls_client
static const struct config_key tls_client_keys[] = {
    {"enabled", CK_BOOL, OFF(TC_, enabled), .def = "false"},
    {"ca", CK_STR, OFF(TC_, ca), .flags = CK_NULL | CK_NONEMPTY, .check = check_no_controls},
    {"server_name", CK_STR, OFF(TC_, server_name), .flags = CK_NULL, .check = check_hostname},
    {"verify", CK_BOOL, OFF(TC_, verify), .def = "true"},
    {"cert", CK_STR, OFF(TC_, cert), .flags = CK_NULL | CK_NONEMPTY, .check = check_no_controls},
    {"key", CK_STR, OFF(TC_, key), .flags = CK_NULL | CK_NONEMPTY, .check = check_no_controls},
    CK_END};
#undef TC_

#define R_ struct config_redis
static const struct config_key redis_keys[] = {
    {"address", CK_ADDR, OFF(R_, address), .def = "127.0.0.1:6379"},
    {"username", CK_STR, OFF(R_, username), .flags = CK_NULL | CK_NONEMPTY,
     .check = check_no_controls},
    {"password", CK_REJECT, 0,
     .def = "inline passwords are not accepted: use password_file or password_env"},
    {"password_file", CK_STR, OFF(R_, password_file), .flags = CK_NULL | CK_NONEMPTY,
     .check = check_no_controls},
    {"password_env", CK_STR, OFF(R_, password_env), .flags = CK_NULL, .check = check_env_name},
    {"tls", CK_SECTION, OFF(R_, tls), .keys = tls_client_keys},
    {"timeout", CK_DURATION, OFF(R_, timeout_ms), .min = 1, .max = MS_M, .def = "250ms"},
    {"connect_timeout", CK_DURATION, OFF(R_, connect_timeout_ms), .min = 1, .max = MS_M,
     .def = "1s"},
    {"database", CK_INT, OFF(R_, database), .min = 0, .max = 1023, .def = "0"},
    CK_END};
#undef R_

#define S_ struct config_sessions
static const struct config_key sessions_keys[] = {
    {"cookie", CK_STR, OFF(S_, cookie), .flags = CK_NULL, .check = check_header_name,
     .def = "session"},
    {"bearer", CK_BOOL, OFF(S_, bearer), .def = "true"},
    {"key_prefix", CK_STR, OFF(S_, key_prefix), .check = check_key_prefix, .def = "moat:sess:"},
    {"cache_ttl", CK_DURATION, OFF(S_, cache_ttl_ms), .min = 0, .max = MS_H, .def = "5s"},
    {"negative_cache_ttl", CK_DURATION, OFF(S_, negative_cache_ttl_ms), .min = 0, .max = MS_H,
     .def = "1s"},
    {"cache_size", CK_SIZE, OFF(S_, cache_size), .min = 0, .max = 10000000, .def = "10000"},
    {"stale_grace", CK_DURATION, OFF(S_, stale_grace_ms), .min = 0, .max = MS_H, .def = "0s"},
    {"token_min_len", CK_SIZE, OFF(S_, token_min_len), .min = 1, .max = 4096, .def = "16"},
    {"token_max_len", CK_SIZE, OFF(S_, token_max_len), .min = 1, .max = 4096, .def = "256"},
    {"push_revocation", CK_BOOL, OFF(S_, push_revocation), .def = "false"},
    {"login_url", CK_STR, OFF(S_, login_url), .flags = CK_NULL, .check = check_login_url},
    CK_END};
#undef S_

#define I_ struct config_identity
static const struct config_key identity_keys[] = {
    {"trusted_proxies", CK_STRS, OFF(I_, trusted_proxies), OFF(I_, num_trusted_proxies),
     .flags = CK_NULL, .check = check_cidr},
    {"signing_key_file", CK_STR, OFF(I_, signing_key_file), .flags = CK_NULL | CK_NONEMPTY,
     .check = check_no_controls},
    {"previous_signing_key_file", CK_STR, OFF(I_, previous_signing_key_file),
     .flags = CK_NULL | CK_NONEMPTY, .check = check_no_controls},
    {"strip_response_headers", CK_STRS, OFF(I_, strip_response_headers),
     OFF(I_, num_strip_response_headers), .flags = CK_NULL, .check = check_header_pattern,
     .def = "X-Moat-*,Server,X-Powered-By"},
    {"referrer_policy", CK_STR, OFF(I_, referrer_policy), .flags = CK_NULL,
     .choices = referrer_policies, .def = "strict-origin-when-cross-origin"},
    {"nosniff", CK_BOOL, OFF(I_, nosniff), .def = "true"},
    CK_END};
#undef I_

#define U_ struct config_upstream
static const struct config_key health_keys[] = {
    {"path", CK_STR, OFF(U_, health_path), .flags = CK_NULL, .check = check_path},
    {"interval", CK_DURATION, OFF(U_, health_interval_ms), .min = 100, .max = MS_H, .def = "5s"},
    CK_END};
static const struct config_key upstream_keys[] = {
    {"servers", CK_ADDRS, OFF(U_, servers), OFF(U_, num_servers),
     .flags = CK_REQUIRED | CK_NONEMPTY},
    {"balance", CK_ENUM, OFF(U_, balance), .choices = balances, .def = "round_robin"},
    {"health", CK_SECTION, 0, .keys = health_keys},
    {"tls", CK_SECTION, OFF(U_, tls), .keys = tls_client_keys},
    {"keepalive", CK_SIZE, OFF(U_, keepalive), .min = 0, .max = 10000, .def = "32"},
    {"retry_idempotent", CK_BOOL, OFF(U_, retry_idempotent), .def = "false"},
    CK_END};
#undef U_

#define TN_ struct config_tenant
static const struct config_key tenant_keys[] = {
    {"upstream", CK_STR, OFF(TN_, upstream), .flags = CK_REQUIRED, .check = check_name}, CK_END};
#undef TN_

#define RR_ struct config_rate_rule
static void rate_rule_finish(struct config_loader *L, void *elem, size_t index, const char *path)
{
    struct config_rate_rule *r = elem;
    if (r->burst == 0) { /* not given: one second's worth, at least one request */
        double b = ceil(r->rate);
        r->burst = b < 1 ? 1 : (uint64_t)b;
    }
}
static const struct config_key rate_rule_keys[] = {
    {"key", CK_ENUM, OFF(RR_, key), OFF(RR_, header), .choices = rl_keys,
     .flags = CK_REQUIRED | CK_ARG, .check = check_header_name},
    {"rate", CK_RATE, OFF(RR_, rate), OFF(RR_, rate_text), .max = 1000000000,
     .flags = CK_REQUIRED | CK_TEXT},
    {"burst", CK_U64, OFF(RR_, burst), .min = 1, .max = 1000000000},
    {"scope", CK_ENUM, OFF(RR_, scope), .choices = rl_scopes, .def = "local"},
    {"on_store_error", CK_ENUM, OFF(RR_, on_store_error), .choices = rl_on_error, .def = "local"},
    {"id", CK_STR, OFF(RR_, id), .flags = CK_NULL, .check = check_name},
    CK_END};
#undef RR_

#define RT_ struct config_route
static void route_finish(struct config_loader *L, void *elem, size_t index, const char *path)
{
    struct config_route *r = elem;
    for (size_t j = 0; j < r->num_rate_limits; j++) {
        char id[48];
        if (r->rate_limits[j].id)
            continue;
        snprintf(id, sizeof id, "r%zu_%zu", index, j);
        r->rate_limits[j].id = loader_strdup(L, id);
    }
}
static const struct config_key match_keys[] = {
    {"host", CK_STR, OFF(RT_, host), .flags = CK_NULL, .check = check_host_pattern},
    {"path_prefix", CK_STR, OFF(RT_, path_prefix), .check = check_path_prefix, .def = "/"},
    CK_END};
static const struct config_key route_keys[] = {
    {"match", CK_SECTION, 0, .keys = match_keys},
    {"auth", CK_ENUM, OFF(RT_, auth), .choices = auth_modes, .def = "required"},
    {"mfa", CK_ENUM, OFF(RT_, mfa_required), .choices = mfa_modes, .flags = CK_ENUM_BOOL,
     .def = "optional"},
    {"browser", CK_BOOL, OFF(RT_, browser), .def = "false"},
    {"upstream", CK_STR, OFF(RT_, upstream), .flags = CK_REQUIRED, .check = check_name},
    {"tenants", CK_STRS, OFF(RT_, tenants), OFF(RT_, num_tenants), .flags = CK_NONEMPTY,
     .check = check_tenant_name},
    {"rate_limit", CK_LIST, OFF(RT_, rate_limits), OFF(RT_, num_rate_limits),
     .keys = rate_rule_keys, .elem_size = sizeof(struct config_rate_rule),
     .finish = rate_rule_finish, .flags = CK_NULL},
    {"ratelimit_headers", CK_BOOL, OFF(RT_, ratelimit_headers), .def = "false"},
    CK_END};
#undef RT_

#define LM_ struct config_limits
static const struct config_key limits_keys[] = {
    {"max_header_bytes", CK_SIZE, OFF(LM_, max_header_bytes), .min = 1024, .max = 1048576,
     .def = "16384"},
    {"max_headers", CK_SIZE, OFF(LM_, max_headers), .min = 1, .max = HTTP1_MAX_HEADERS_CAP,
     .def = "100"},
    {"max_body_bytes", CK_U64, OFF(LM_, max_body_bytes), .min = 0, .max = (int64_t)1 << 40,
     .def = "10485760"},
    {"header_timeout", CK_DURATION, OFF(LM_, header_timeout_ms), .min = 1, .max = MS_H,
     .def = "10s"},
    {"body_timeout", CK_DURATION, OFF(LM_, body_timeout_ms), .min = 1, .max = MS_H, .def = "60s"},
    {"idle_timeout", CK_DURATION, OFF(LM_, idle_timeout_ms), .min = 1, .max = MS_H, .def = "60s"},
    {"upstream_connect_timeout", CK_DURATION, OFF(LM_, upstream_connect_timeout_ms), .min = 1,
     .max = 5 * MS_M, .def = "2s"},
    {"upstream_timeout", CK_DURATION, OFF(LM_, upstream_timeout_ms), .min = 1, .max = MS_H,
     .def = "30s"},
    {"drain_timeout", CK_DURATION, OFF(LM_, drain_timeout_ms), .min = 0, .max = MS_H, .def = "30s"},
    {"max_connections", CK_SIZE, OFF(LM_, max_connections), .min = 0, .max = 10000000, .def = "0"},
    {"max_connections_per_ip", CK_SIZE, OFF(LM_, max_connections_per_ip), .min = 0, .max = 10000000,
     .def = "0"},
    {"handshakes_per_ip", CK_RATE, OFF(LM_, handshakes_per_ip), .max = 1000000, .flags = CK_ZERO,
     .def = "0"},
    {"connection_buffer", CK_SIZE, OFF(LM_, connection_buffer), .min = 16384, .max = 1 << 26,
     .def = "65536"},
    {"max_memory", CK_U64, OFF(LM_, max_memory), .min = 0, .max = (int64_t)1 << 40,
     .def = "536870912"},
    {"max_connection_age", CK_DURATION, OFF(LM_, max_connection_age_ms), .min = 0,
     .max = 7 * 24 * MS_H, .def = "1h"},
    CK_END};
#undef LM_

#define RL_ struct config_ratelimit
static const struct config_key ratelimit_keys[] = {
    {"max_keys", CK_SIZE, OFF(RL_, max_keys), .min = 1, .max = 100000000, .def = "100000"},
    {"redis_timeout", CK_DURATION, OFF(RL_, redis_timeout_ms), .min = 1, .max = 10 * MS_S,
     .def = "50ms"},
    {"heartbeat", CK_DURATION, OFF(RL_, heartbeat_ms), .min = 100, .max = MS_M, .def = "1s"},
    {"key_prefix", CK_STR, OFF(RL_, key_prefix), .check = check_key_prefix, .def = "moat:rl:"},
    CK_END};
#undef RL_

#define LG_ struct config_log
static const struct config_key syslog_keys[] = {
    {"address", CK_ADDR, OFF(LG_, syslog_address), .flags = CK_REQUIRED},
    {"tls", CK_BOOL, OFF(LG_, syslog_tls), .def = "true"},
    CK_END};
static const struct config_key log_keys[] = {
    {"access", CK_STR, OFF(LG_, access), .flags = CK_NULL | CK_NONEMPTY, .check = check_no_controls,
     .def = "stdout"},
    {"audit", CK_STR, OFF(LG_, audit), .flags = CK_NULL | CK_NONEMPTY, .check = check_no_controls,
     .def = "stderr"},
    {"syslog", CK_SECTION, 0, .keys = syslog_keys, .flags = CK_NULL},
    {"level", CK_STR, OFF(LG_, level), .choices = log_levels, .def = "info"},
    CK_END};
#undef LG_

#define CF_ struct config
const struct config_key config_root_keys[] = {
    {"workers", CK_INT, OFF(CF_, workers), .min = 1, .max = 1024, .flags = CK_AUTO, .def = "auto"},
    {"listen", CK_SECTION, OFF(CF_, listen), .keys = listen_keys},
    {"tls", CK_SECTION, OFF(CF_, tls), .keys = tls_keys},
    {"hsts", CK_SECTION, OFF(CF_, hsts), .keys = hsts_keys},
    {"redis", CK_SECTION, OFF(CF_, redis), OFF(CF_, redis_enabled), .keys = redis_keys,
     .flags = CK_NULL | CK_PRESENT},
    {"sessions", CK_SECTION, OFF(CF_, sessions), .keys = sessions_keys},
    {"identity", CK_SECTION, OFF(CF_, identity), .keys = identity_keys},
    {"upstreams", CK_MAP, OFF(CF_, upstreams), OFF(CF_, num_upstreams), .keys = upstream_keys,
     .elem_size = sizeof(struct config_upstream), .check = check_name,
     .name_off = OFF(struct config_upstream, name), .pos_off = OFF(struct config_upstream, line),
     .flags = CK_NULL | CK_POS},
    {"tenants", CK_MAP, OFF(CF_, tenants), OFF(CF_, num_tenants), .keys = tenant_keys,
     .elem_size = sizeof(struct config_tenant), .check = check_tenant_name,
     .name_off = OFF(struct config_tenant, name), .flags = CK_NULL},
    {"routes", CK_LIST, OFF(CF_, routes), OFF(CF_, num_routes), .keys = route_keys,
     .elem_size = sizeof(struct config_route), .pos_off = OFF(struct config_route, line),
     .finish = route_finish, .flags = CK_NULL | CK_POS},
    {"limits", CK_SECTION, OFF(CF_, limits), .keys = limits_keys},
    {"ratelimit", CK_SECTION, OFF(CF_, ratelimit), .keys = ratelimit_keys},
    {"log", CK_SECTION, OFF(CF_, log), .keys = log_keys},
    CK_END};
#undef CF_

_Static_assert(offsetof(struct config_tls_cert, column) ==
                   offsetof(struct config_tls_cert, line) + sizeof(int),
               "CK_POS needs int line; int column;");
_Static_assert(offsetof(struct config_upstream, column) ==
                   offsetof(struct config_upstream, line) + sizeof(int),
               "CK_POS needs int line; int column;");
_Static_assert(offsetof(struct config_route, column) ==
                   offsetof(struct config_route, line) + sizeof(int),
               "CK_POS needs int line; int column;");

/* ---- scalar values ---------------------------------------------------------------- */

struct scalar {
    const char *s;
    size_t len;
    bool plain; /* unquoted: only then can it be null */
    struct config_pos pos;
};

struct config_pos config_node_pos(const yaml_node_t *node)
{
    return (struct config_pos){(int)node->start_mark.line + 1, (int)node->start_mark.column + 1};
}

static bool text_is_null(const struct scalar *sc)
{
    return sc->plain && (sc->len == 0 || !strcmp(sc->s, "~") || !strcmp(sc->s, "null") ||
                         !strcmp(sc->s, "Null") || !strcmp(sc->s, "NULL"));
}

static bool node_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE)
        return false;
    struct scalar sc = {(const char *)n->data.scalar.value,
                        n->data.scalar.length,
                        n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE,
                        {0, 0}};
    return text_is_null(&sc);
}

static void path_join(char *out, const char *path, const char *name)
{
    if (snprintf(out, PATH_MAX_LEN, "%s%s%s", path, *path ? "." : "", name) >= PATH_MAX_LEN)
        memcpy(out + PATH_MAX_LEN - 4, "...", 4); /* a path that long is only for a message */
}

static void path_index(char *out, const char *path, size_t i)
{
    if (snprintf(out, PATH_MAX_LEN, "%s[%zu]", path, i) >= PATH_MAX_LEN)
        memcpy(out + PATH_MAX_LEN - 4, "...", 4);
}

/* Counts a visited node; false once the budget is spent (reported once). */
static bool visit(struct config_loader *L, const yaml_node_t *n, size_t count)
{
    if (L->over_budget)
        return false;
    L->nodes += count;
    if (L->nodes <= CONFIG_MAX_NODES)
        return true;
    L->over_budget = true;
    config_loader_error(L, config_node_pos(n), "",
                        "configuration too large: more than %d YAML nodes (alias expansion?)",
                        CONFIG_MAX_NODES);
    return false;
}

static bool get_scalar(struct config_loader *L, const yaml_node_t *n, const char *path,
                       struct scalar *sc)
{
    if (n->type != YAML_SCALAR_NODE) {
        config_loader_error(L, config_node_pos(n), path, "expected a scalar");
        return false;
    }
    *sc = (struct scalar){(const char *)n->data.scalar.value, n->data.scalar.length,
                          n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, config_node_pos(n)};
    if (strlen(sc->s) != sc->len) {
        config_loader_error(L, sc->pos, path, "must not contain a NUL byte");
        return false;
    }
    return true;
}

static bool parse_bool(const char *s, bool *out)
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
static bool parse_i64(const char *s, int64_t *out)
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

static const char *fmt_duration(int64_t ms, char *buf, size_t len)
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

static const char *choice_list(const struct config_enum *c, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (; c->name && o < len; c++)
        o += (size_t)snprintf(buf + o, len - o, "%s%s%s", o ? ", " : "", c->name,
                              c->name[strlen(c->name) - 1] == ':' ? "NAME" : "");
    return buf;
}

static void replace_str(void *field, char *s)
{
    free(*(char **)field);
    *(char **)field = s;
}

static void set_enum(struct config_loader *L, const struct config_key *k, void *base,
                     const struct scalar *sc, const char *path)
{
    char q[80], list[256];
    for (const struct config_enum *c = k->choices; c->name; c++) {
        size_t n = strlen(c->name);
        bool arg = (k->flags & CK_ARG) && c->name[n - 1] == ':';
        if (arg ? strncmp(sc->s, c->name, n) != 0 : strcmp(sc->s, c->name) != 0)
            continue;
        if (arg) {
            const char *why = k->check ? k->check(sc->s + n) : NULL;
            if (why || !sc->s[n]) {
                config_loader_error(L, sc->pos, path, "invalid value %s: %s",
                                    config_quote(sc->s, q, sizeof q),
                                    why ? why : "a name must follow the ':'");
                return;
            }
        }
        if (k->flags & CK_ARG)
            replace_str((char *)base + k->off2, arg ? loader_strdup(L, sc->s + n) : NULL);
        if (k->flags & CK_ENUM_BOOL)
            *(bool *)((char *)base + k->off) = c->value != 0;
        else
            *(int *)((char *)base + k->off) = c->value;
        return;
    }
    config_loader_error(L, sc->pos, path, "invalid value %s: must be one of %s",
                        config_quote(sc->s, q, sizeof q),
                        choice_list(k->choices, list, sizeof list));
}

static void set_string(struct config_loader *L, const struct config_key *k, void *base,
                       const struct scalar *sc, const char *path)
{
    char q[80], list[256];
    const char *why = NULL;
    if (text_is_null(sc)) {
        if (k->flags & CK_NULL)
            replace_str((char *)base + k->off, NULL);
        else
            config_loader_error(L, sc->pos, path, "must not be null");
        return;
    }
    if ((k->flags & CK_NONEMPTY) && sc->len == 0)
        why = "must not be empty";
    else if (k->choices) {
        const struct config_enum *c = k->choices;
        while (c->name && strcmp(c->name, sc->s) != 0)
            c++;
        if (!c->name) {
            config_loader_error(L, sc->pos, path, "invalid value %s: must be one of %s",
                                config_quote(sc->s, q, sizeof q),
                                choice_list(k->choices, list, sizeof list));
            return;
        }
    } else if (k->check)
        why = k->check(sc->s);
    if (why) {
        config_loader_error(L, sc->pos, path, "invalid value %s: %s",
                            config_quote(sc->s, q, sizeof q), why);
        return;
    }
    replace_str((char *)base + k->off, loader_strdup(L, sc->s));
}

static void set_number(struct config_loader *L, const struct config_key *k, void *base,
                       const struct scalar *sc, const char *path)
{
    char q[80];
    void *p = (char *)base + k->off;
    int64_t v;
    if ((k->flags & CK_AUTO) && !strcmp(sc->s, "auto")) {
        *(int *)p = 0;
        return;
    }
    if (!parse_i64(sc->s, &v)) {
        config_loader_error(L, sc->pos, path, "expected an integer%s, got %s",
                            (k->flags & CK_AUTO) ? " or auto" : "",
                            config_quote(sc->s, q, sizeof q));
        return;
    }
    if (v < k->min || v > k->max) {
        config_loader_error(L, sc->pos, path, "must be between %lld and %lld", (long long)k->min,
                            (long long)k->max);
        return;
    }
    if (k->type == CK_INT)
        *(int *)p = (int)v;
    else if (k->type == CK_SIZE)
        *(size_t *)p = (size_t)v;
    else
        *(uint64_t *)p = (uint64_t)v;
}

static void set_duration(struct config_loader *L, const struct config_key *k, void *base,
                         const struct scalar *sc, const char *path)
{
    char q[80], a[32], b[32];
    uint64_t ms;
    if (config_parse_duration(sc->s, &ms) < 0) {
        config_loader_error(L, sc->pos, path,
                            "invalid duration %s: expected a number with a unit ms, s, m or h "
                            "(e.g. 250ms, 10s)",
                            config_quote(sc->s, q, sizeof q));
        return;
    }
    if (ms < (uint64_t)k->min || ms > (uint64_t)k->max) {
        config_loader_error(L, sc->pos, path, "must be between %s and %s",
                            fmt_duration(k->min, a, sizeof a), fmt_duration(k->max, b, sizeof b));
        return;
    }
    *(uint64_t *)((char *)base + k->off) = ms;
}

static void set_rate(struct config_loader *L, const struct config_key *k, void *base,
                     const struct scalar *sc, const char *path)
{
    char q[80];
    double r;
    if ((k->flags & CK_ZERO) && !strcmp(sc->s, "0"))
        r = 0;
    else if (config_parse_rate(sc->s, &r) < 0) {
        config_loader_error(L, sc->pos, path,
                            "invalid rate %s: expected N/s, N/m or N/h with N >= 1 (e.g. 100/s)%s",
                            config_quote(sc->s, q, sizeof q), (k->flags & CK_ZERO) ? " or 0" : "");
        return;
    } else if (r > (double)k->max) {
        config_loader_error(L, sc->pos, path, "must be at most %lld/s", (long long)k->max);
        return;
    }
    *(double *)((char *)base + k->off) = r;
    if (k->flags & CK_TEXT)
        replace_str((char *)base + k->off2, loader_strdup(L, sc->s));
}

static void set_addr(struct config_loader *L, const struct config_key *k, void *base,
                     const struct scalar *sc, const char *path)
{
    char q[80];
    struct config_addr a, *p = (struct config_addr *)((char *)base + k->off);
    const char *why;
    if (text_is_null(sc) && (k->flags & CK_NULL)) {
        config_addr_clear(p);
        return;
    }
    if (config_addr_parse(sc->s, &a, &why) < 0) {
        config_loader_error(L, sc->pos, path, "invalid address %s: %s",
                            config_quote(sc->s, q, sizeof q), why);
        return;
    }
    config_addr_clear(p);
    *p = a;
}

/* Stores one scalar (from the YAML, or a default when sc->pos.line is 0). */
static void set_scalar(struct config_loader *L, const struct config_key *k, void *base,
                       const struct scalar *sc, const char *path)
{
    bool b;
    switch (k->type) {
    case CK_STR:
        set_string(L, k, base, sc, path);
        break;
    case CK_BOOL:
        if (parse_bool(sc->s, &b))
            *(bool *)((char *)base + k->off) = b;
        else {
            char q[80];
            config_loader_error(L, sc->pos, path, "expected true or false, got %s",
                                config_quote(sc->s, q, sizeof q));
        }
        break;
    case CK_INT:
    case CK_SIZE:
    case CK_U64:
        set_number(L, k, base, sc, path);
        break;
    case CK_DURATION:
        set_duration(L, k, base, sc, path);
        break;
    case CK_RATE:
        set_rate(L, k, base, sc, path);
        break;
    case CK_ADDR:
        set_addr(L, k, base, sc, path);
        break;
    case CK_ENUM:
        set_enum(L, k, base, sc, path);
        break;
    default:
        config_loader_error(L, sc->pos, path, "internal error: key type %d is not a scalar",
                            (int)k->type);
        return;
    }
    config_loader_remember(L, (char *)base + k->off, 0, sc->pos);
}

/* ---- lists of scalars --------------------------------------------------------------- */

static void free_list(const struct config_key *k, void *base)
{
    void *p = (char *)base + k->off;
    size_t *count = (size_t *)((char *)base + k->off2);
    if (k->type == CK_STRS) {
        char **v = *(char ***)p;
        for (size_t i = 0; v && i < *count; i++)
            free(v[i]);
        free(v);
        *(char ***)p = NULL;
    } else if (k->type == CK_ADDRS) {
        struct config_addr *v = *(struct config_addr **)p;
        for (size_t i = 0; v && i < *count; i++)
            config_addr_clear(&v[i]);
        free(v);
        *(struct config_addr **)p = NULL;
    } else { /* CK_ADDR_ARRAY */
        for (int64_t i = 0; i < k->max; i++)
            config_addr_clear((struct config_addr *)p + i);
    }
    *count = 0;
}

/* One item of a CK_STRS / CK_ADDRS / CK_ADDR_ARRAY list; false if invalid. */
static bool list_item(struct config_loader *L, const struct config_key *k, const struct scalar *sc,
                      const char *path, char **str, struct config_addr *addr)
{
    char q[80];
    const char *why = NULL;
    if (text_is_null(sc))
        why = "must not be null";
    else if (k->type == CK_STRS) {
        why = k->check ? k->check(sc->s) : NULL;
        if (!why && !(*str = strdup(sc->s)))
            why = "out of memory";
    } else if (config_addr_parse(sc->s, addr, &why) == 0)
        return true;
    else {
        config_loader_error(L, sc->pos, path, "invalid address %s: %s",
                            config_quote(sc->s, q, sizeof q), why);
        return false;
    }
    if (why)
        config_loader_error(L, sc->pos, path, "invalid value %s: %s",
                            config_quote(sc->s, q, sizeof q), why);
    return why == NULL;
}

/* Replaces a list with the valid ones among n items; invalid items are reported. */
static void set_list(struct config_loader *L, const struct config_key *k, void *base,
                     const struct scalar *items, size_t n, struct config_pos pos, const char *path)
{
    char sub[PATH_MAX_LEN];
    void *p = (char *)base + k->off;
    char **strs = NULL;
    struct config_addr *addrs = NULL;
    size_t m = 0;

    if ((k->flags & CK_NONEMPTY) && n == 0) {
        config_loader_error(L, pos, path, "must not be empty");
        return;
    }
    if (k->type == CK_ADDR_ARRAY && n > (size_t)k->max) {
        config_loader_error(L, pos, path, "at most %lld addresses", (long long)k->max);
        return;
    }
    free_list(k, base);
    if ((k->type == CK_STRS && n && !(strs = calloc(n, sizeof *strs))) ||
        (k->type == CK_ADDRS && n && !(addrs = calloc(n, sizeof *addrs)))) {
        config_loader_oom(L);
        return;
    }
    if (k->type == CK_ADDR_ARRAY)
        addrs = p;
    for (size_t i = 0; i < n; i++) {
        path_index(sub, path, i);
        if (list_item(L, k, &items[i], sub, strs ? &strs[m] : NULL, addrs ? &addrs[m] : NULL)) {
            config_loader_remember(L, strs ? (void *)&strs[m] : (void *)&addrs[m], 0, items[i].pos);
            m++;
        }
    }
    if (k->type == CK_STRS)
        *(char ***)p = strs;
    else if (k->type == CK_ADDRS)
        *(struct config_addr **)p = addrs;
    *(size_t *)((char *)base + k->off2) = m;
    config_loader_remember(L, p, 0, pos);
}

static void set_list_node(struct config_loader *L, const struct config_key *k, void *base,
                          yaml_node_t *node, const char *path)
{
    char sub[PATH_MAX_LEN];
    if (node_is_null(node) && (k->flags & CK_NULL)) {
        free_list(k, base);
        return;
    }
    if (node->type != YAML_SEQUENCE_NODE) {
        config_loader_error(L, config_node_pos(node), path, "expected a sequence");
        return;
    }
    size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (!visit(L, node, n))
        return;
    struct scalar *items = calloc(n ? n : 1, sizeof *items);
    if (!items) {
        config_loader_oom(L);
        return;
    }
    size_t m = 0;
    bool bad = false;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *it = yaml_document_get_node(L->doc, node->data.sequence.items.start[i]);
        path_index(sub, path, i);
        if (it && get_scalar(L, it, sub, &items[m]))
            m++;
        else
            bad = true;
    }
    if (!bad) /* a list with a nested mapping is not worth half-storing */
        set_list(L, k, base, items, m, config_node_pos(node), path);
    free(items);
}

/* ---- mappings, lists and maps of mappings ------------------------------------------ */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[40];
    if (la >= 39 || lb >= 39)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static void unknown_key(struct config_loader *L, const struct config_key *keys, const char *name,
                        struct config_pos pos, const char *path)
{
    const char *best = NULL;
    size_t bd = 3;
    for (const struct config_key *k = keys; k->name; k++) {
        size_t d = edit_distance(name, k->name);
        if (d < bd && d < strlen(k->name)) {
            bd = d;
            best = k->name;
        }
    }
    if (best)
        config_loader_error(L, pos, path, "unknown key (did you mean %s?)", best);
    else
        config_loader_error(L, pos, path, "unknown key");
}

static void free_elems(const struct config_key *k, void *base)
{
    char *arr = *(char **)((char *)base + k->off);
    size_t *count = (size_t *)((char *)base + k->off2);
    for (size_t i = 0; arr && i < *count; i++) {
        config_keys_free(k->keys, arr + i * k->elem_size);
        if (k->type == CK_MAP)
            free(*(char **)(arr + i * k->elem_size + k->name_off));
    }
    free(arr);
    *(char **)((char *)base + k->off) = NULL;
    *count = 0;
}

/* Allocates n elements with their defaults; NULL (and reported) on failure. */
static char *alloc_elems(struct config_loader *L, const struct config_key *k, void *base,
                         yaml_node_t *node, size_t n)
{
    char *arr = n ? calloc(n, k->elem_size) : NULL;
    if (n && !arr) {
        config_loader_oom(L);
        return NULL;
    }
    *(char **)((char *)base + k->off) = arr;
    *(size_t *)((char *)base + k->off2) = n;
    for (size_t i = 0; i < n; i++)
        config_keys_defaults(L, k->keys, arr + i * k->elem_size);
    config_loader_remember(L, (char *)base + k->off, 0, config_node_pos(node));
    return arr;
}

static void parse_elem(struct config_loader *L, const struct config_key *k, char *elem,
                       size_t index, yaml_node_t *node, const char *path)
{
    struct config_pos pos = config_node_pos(node);
    if (node->type != YAML_MAPPING_NODE) {
        /* line stays 0: later cross-checks skip an element that was never read */
        config_loader_error(L, pos, path, "expected a mapping");
        return;
    }
    if (k->flags & CK_POS) {
        *(int *)(elem + k->pos_off) = pos.line;
        *(int *)(elem + k->pos_off + sizeof(int)) = pos.column;
    }
    config_loader_remember(L, elem, 1, pos);
    config_keys_parse(L, k->keys, elem, node, path);
    if (k->finish && !L->over_budget)
        k->finish(L, elem, index, path);
}

static void set_elem_list(struct config_loader *L, const struct config_key *k, void *base,
                          yaml_node_t *node, const char *path)
{
    char sub[PATH_MAX_LEN];
    free_elems(k, base);
    if (node_is_null(node) && (k->flags & CK_NULL))
        return;
    if (node->type != YAML_SEQUENCE_NODE) {
        config_loader_error(L, config_node_pos(node), path, "expected a sequence");
        return;
    }
    size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (!visit(L, node, n))
        return;
    char *arr = alloc_elems(L, k, base, node, n);
    for (size_t i = 0; arr && i < n && !L->over_budget; i++) {
        yaml_node_t *it = yaml_document_get_node(L->doc, node->data.sequence.items.start[i]);
        path_index(sub, path, i);
        if (it)
            parse_elem(L, k, arr + i * k->elem_size, i, it, sub);
    }
}

struct named {
    const char *name;
    size_t index;
};

static int named_cmp(const void *a, const void *b)
{
    const struct named *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* Reports names given twice in a map (at the later one), in n log n. */
static void map_duplicates(struct config_loader *L, const char **names,
                           const struct config_pos *pos, size_t n, const char *path)
{
    char sub[PATH_MAX_LEN];
    struct named *v = malloc((n ? n : 1) * sizeof *v);
    size_t m = 0;
    if (!v) {
        config_loader_oom(L);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (names[i])
            v[m++] = (struct named){names[i], i};
    qsort(v, m, sizeof *v, named_cmp);
    for (size_t i = 1; i < m; i++) {
        if (!strcmp(v[i].name, v[i - 1].name)) {
            path_join(sub, path, v[i].name);
            config_loader_error(L, pos[v[i].index], sub, "duplicate key");
        }
    }
    free(v);
}

static void set_elem_map(struct config_loader *L, const struct config_key *k, void *base,
                         yaml_node_t *node, const char *path)
{
    char sub[PATH_MAX_LEN], q[80];
    free_elems(k, base);
    if (node_is_null(node) && (k->flags & CK_NULL))
        return;
    if (node->type != YAML_MAPPING_NODE) {
        config_loader_error(L, config_node_pos(node), path, "expected a mapping");
        return;
    }
    yaml_node_pair_t *pairs = node->data.mapping.pairs.start;
    size_t n = (size_t)(node->data.mapping.pairs.top - pairs);
    if (!visit(L, node, 2 * n))
        return;
    char *arr = alloc_elems(L, k, base, node, n);
    const char **names = n ? calloc(n, sizeof *names) : NULL;
    struct config_pos *kpos = n ? calloc(n, sizeof *kpos) : NULL;
    if (n && (!names || !kpos))
        config_loader_oom(L);
    for (size_t i = 0; arr && names && kpos && i < n && !L->over_budget; i++) {
        yaml_node_t *kn = yaml_document_get_node(L->doc, pairs[i].key);
        yaml_node_t *vn = yaml_document_get_node(L->doc, pairs[i].value);
        char *elem = arr + i * k->elem_size;
        struct scalar sc;
        if (!kn || !vn || !get_scalar(L, kn, path, &sc))
            continue;
        path_join(sub, path, sc.s);
        const char *why = k->check ? k->check(sc.s) : NULL;
        if (why) {
            config_loader_error(L, sc.pos, sub, "invalid name %s: %s",
                                config_quote(sc.s, q, sizeof q), why);
            continue;
        }
        names[i] = sc.s;
        kpos[i] = sc.pos;
        *(char **)(elem + k->name_off) = loader_strdup(L, sc.s);
        parse_elem(L, k, elem, i, vn, sub);
    }
    if (names && kpos)
        map_duplicates(L, names, kpos, n, path);
    free(names);
    free(kpos);
}

static void set_value(struct config_loader *L, const struct config_key *k, void *base,
                      yaml_node_t *v, const char *path)
{
    struct scalar sc;
    switch (k->type) {
    case CK_SECTION:
        if ((k->flags & CK_NULL) && node_is_null(v)) {
            if (k->flags & CK_PRESENT)
                *(bool *)((char *)base + k->off2) = false;
            return;
        }
        config_loader_remember(L, (char *)base + k->off, 1, config_node_pos(v));
        if ((k->flags & CK_PRESENT) && v->type == YAML_MAPPING_NODE)
            *(bool *)((char *)base + k->off2) = true;
        config_keys_parse(L, k->keys, (char *)base + k->off, v, path);
        return;
    case CK_LIST:
        set_elem_list(L, k, base, v, path);
        return;
    case CK_MAP:
        set_elem_map(L, k, base, v, path);
        return;
    case CK_STRS:
    case CK_ADDRS:
    case CK_ADDR_ARRAY:
        set_list_node(L, k, base, v, path);
        return;
    case CK_REJECT:
        config_loader_error(L, config_node_pos(v), path, "%s", k->def);
        return;
    default:
        if (visit(L, v, 1) && get_scalar(L, v, path, &sc))
            set_scalar(L, k, base, &sc, path);
        return;
    }
}

void config_keys_parse(struct config_loader *L, const struct config_key *keys, void *base,
                       yaml_node_t *node, const char *path)
{
    char sub[PATH_MAX_LEN];
    uint64_t seen = 0; /* one bit per row: a table has fewer than 64 keys */
    if (!visit(L, node, 1))
        return;
    for (size_t i = 0; keys[i].name; i++) {
        if (i >= 64) {
            config_loader_error(L, config_node_pos(node), path,
                                "internal error: key table "
                                "too long");
            return;
        }
    }
    if (node->type != YAML_MAPPING_NODE) {
        config_loader_error(L, config_node_pos(node), path, "expected a mapping");
        return;
    }
    for (yaml_node_pair_t *pr = node->data.mapping.pairs.start;
         pr < node->data.mapping.pairs.top && !L->over_budget; pr++) {
        yaml_node_t *kn = yaml_document_get_node(L->doc, pr->key);
        yaml_node_t *vn = yaml_document_get_node(L->doc, pr->value);
        struct scalar name;
        if (!kn || !vn || !visit(L, kn, 1) || !get_scalar(L, kn, path, &name))
            continue;
        size_t i = 0;
        while (keys[i].name && strcmp(keys[i].name, name.s) != 0)
            i++;
        path_join(sub, path, name.s);
        if (!keys[i].name)
            unknown_key(L, keys, name.s, name.pos, sub);
        else if (seen & ((uint64_t)1 << i))
            config_loader_error(L, name.pos, sub, "duplicate key");
        else {
            seen |= (uint64_t)1 << i;
            set_value(L, &keys[i], base, vn, sub);
        }
    }
    for (size_t i = 0; keys[i].name && !L->over_budget; i++) {
        if ((keys[i].flags & CK_REQUIRED) && !(seen & ((uint64_t)1 << i))) {
            path_join(sub, path, keys[i].name);
            config_loader_error(L, config_node_pos(node), sub, "required key is missing");
        }
    }
}

void config_keys_defaults(struct config_loader *L, const struct config_key *keys, void *base)
{
    for (const struct config_key *k = keys; k->name; k++) {
        if (k->type == CK_SECTION) {
            config_keys_defaults(L, k->keys, (char *)base + k->off);
            continue;
        }
        if (!k->def || k->type == CK_REJECT)
            continue;
        if (k->type == CK_STRS || k->type == CK_ADDRS || k->type == CK_ADDR_ARRAY) {
            char buf[256];
            struct scalar items[16];
            size_t n = 0;
            snprintf(buf, sizeof buf, "%s", k->def);
            for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && n < 16;
                 t = strtok_r(NULL, ",", &save))
                items[n++] = (struct scalar){t, strlen(t), true, {0, 0}};
            set_list(L, k, base, items, n, (struct config_pos){0, 0}, k->name);
        } else {
            struct scalar sc = {k->def, strlen(k->def), true, {0, 0}};
            set_scalar(L, k, base, &sc, k->name);
        }
    }
}

void config_keys_free(const struct config_key *keys, void *base)
{
    for (const struct config_key *k = keys; k->name; k++) {
        char *p = (char *)base + k->off;
        switch (k->type) {
        case CK_STR:
            replace_str(p, NULL);
            break;
        case CK_RATE:
            if (k->flags & CK_TEXT)
                replace_str((char *)base + k->off2, NULL);
            break;
        case CK_ENUM:
            if (k->flags & CK_ARG)
                replace_str((char *)base + k->off2, NULL);
            break;
        case CK_ADDR:
            config_addr_clear((struct config_addr *)p);
            break;
        case CK_STRS:
        case CK_ADDRS:
        case CK_ADDR_ARRAY:
            free_list(k, base);
            break;
        case CK_SECTION:
            config_keys_free(k->keys, p);
            break;
        case CK_LIST:
        case CK_MAP:
            free_elems(k, base);
            break;
        default:
            break;
        }
    }
}
