#include "policy/identity.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "config/config.h"
#include "http/headername.h"
#include "util/netutil.h"
#include "http/request.h"
#include "policy/signature.h"
#include "core/snapshot.h"

#define XFF_MAX 1024
#define CLIENT_REQUEST_ID_MAX 128

/* Hop-by-hop names by length (index: length), tried only where the length fits:
 * this runs for every header of every request and response. */
static const char *const hop_by_hop[][2] = {
    [2] = {"TE"},
    [6] = {"Expect"},
    [7] = {"Trailer", "Upgrade"},
    [10] = {"Connection", "Keep-Alive"},
    [14] = {"Content-Length", "HTTP2-Settings"},
    [16] = {"Proxy-Connection"},
    [17] = {"Transfer-Encoding"},
    [18] = {"Proxy-Authenticate"},
    [19] = {"Proxy-Authorization"},
};

bool identity_is_hop_by_hop(struct http1_str n)
{
    if (n.len >= sizeof hop_by_hop / sizeof *hop_by_hop)
        return false;
    for (size_t i = 0; i < 2 && hop_by_hop[n.len][i]; i++)
        if (strncasecmp(n.p, hop_by_hop[n.len][i], n.len) == 0)
            return true;
    return false;
}

bool identity_forwards(const struct request *r, size_t i)
{
    return !(r->hflags[i] & HFLAG_DROP) && !identity_is_hop_by_hop(r->h.headers[i].name);
}

bool identity_name_in_list(struct http1_str list, struct http1_str name)
{
    const char *p = list.p, *end = list.p + list.len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *start = p;
        while (p < end && *p != ',')
            p++;
        const char *stop = p;
        while (stop > start && (stop[-1] == ' ' || stop[-1] == '\t'))
            stop--;
        if ((size_t)(stop - start) == name.len && strncasecmp(start, name.p, name.len) == 0)
            return true;
    }
    return false;
}

/* Pattern "Name" or "Prefix-*", case-insensitive. */
static bool pattern_matches(const char *pat, struct http1_str name)
{
    size_t n = strlen(pat);
    if (n && pat[n - 1] == '*')
        return name.len >= n - 1 && strncasecmp(name.p, pat, n - 1) == 0;
    return http1_str_ieq(name, pat);
}

bool identity_response_drop(const struct config *cfg, struct http1_str name)
{
    const struct config_identity *id = &cfg->identity;
    if (http1_str_ieq(name, "Strict-Transport-Security")) /* moat owns HSTS */
        return true;
    if (headername_has_prefix_loose(name, "X-Moat-")) /* whatever the configured list says */
        return true;
    if (id->nosniff && http1_str_ieq(name, "X-Content-Type-Options"))
        return true;
    if (id->referrer_policy && http1_str_ieq(name, "Referrer-Policy"))
        return true;
    for (size_t i = 0; i < id->num_strip_response_headers; i++)
        if (pattern_matches(id->strip_response_headers[i], name))
            return true;
    return false;
}

/* A name with its length, so that most names are told apart without folding
 * (the parser's names carry no surrounding whitespace). */
struct name {
    const char *s;
    size_t len;
};
/* clang-format would spread this initializer macro over four lines */
// clang-format off
#define NAME(lit) {lit, sizeof lit - 1}
// clang-format on

/* exact: also true for the name spelled exactly (case aside); else only for look-alikes */
static bool eq_loose_any(struct http1_str n, const struct name *names, size_t count, bool exact)
{
    for (size_t i = 0; i < count; i++)
        if (n.len == names[i].len && headername_eq_loose(n, names[i].s) &&
            (exact || !http1_str_ieq(n, names[i].s)))
            return true;
    return false;
}

#define EQ_LOOSE_ANY(n, names) eq_loose_any(n, names, sizeof names / sizeof *names, true)
#define LOOKALIKE_ANY(n, names) eq_loose_any(n, names, sizeof names / sizeof *names, false)

/*
 * Names no client may send, trusted or not: the identity moat sets; look-alikes
 * of the framing, hop-by-hop and body-type names ("Transfer_Encoding",
 * "Content.Length", "Content_Type": a CGI/WSGI app may read them as the real
 * ones, which moat rewrote or forwards as received); and the headers some
 * servers and frameworks take as the request's real URL or method (IIS,
 * Symfony, Zend: X-Original-URL, X-Rewrite-URL; method overrides). moat routed
 * and rate-limited the request line it received, and replays only safe
 * methods: an upstream must not serve another URL or method than that one.
 */
static bool always_owned(struct http1_str n)
{
    static const struct name owned[] = {NAME("X-Tenant-ID"), NAME("X-User-ID"),
                                        NAME("X-Session-MFA")};
    static const struct name real[] = {NAME("Connection"),       NAME("Keep-Alive"),
                                       NAME("Proxy-Connection"), NAME("TE"),
                                       NAME("Trailer"),          NAME("Transfer-Encoding"),
                                       NAME("Upgrade"),          NAME("Content-Length"),
                                       NAME("Expect"),           NAME("Proxy-Authorization"),
                                       NAME("HTTP2-Settings"),   NAME("Content-Type")};
    static const struct name overrides[] = {NAME("X-Original-URL"),         NAME("X-Original-URI"),
                                            NAME("X-Rewrite-URL"),          NAME("X-Override-URL"),
                                            NAME("X-HTTP-Method-Override"), NAME("X-HTTP-Method"),
                                            NAME("X-Method-Override")};
    if (headername_has_prefix_loose(n, "X-Moat-") || EQ_LOOSE_ANY(n, owned) ||
        EQ_LOOSE_ANY(n, overrides))
        return true;
    /* the exact names are not for this phase: proxy.c rewrites the framing */
    return LOOKALIKE_ANY(n, real);
}

/* Client-address headers other proxies and CDNs set, which apps read as the
 * client's IP: kept from trusted proxies only, like X-Forwarded-For. */
static bool is_client_ip_header(struct http1_str n)
{
    static const struct name names[] = {NAME("Forwarded"),
                                        NAME("Forwarded-For"),
                                        NAME("X-Forwarded"),
                                        NAME("X-Real-IP"),
                                        NAME("True-Client-IP"),
                                        NAME("X-Client-IP"),
                                        NAME("Client-IP"),
                                        NAME("X-Original-Forwarded-For"),
                                        NAME("X-Cluster-Client-IP"),
                                        NAME("CF-Connecting-IP"),
                                        NAME("CF-Connecting-IPv6"),
                                        NAME("Fastly-Client-IP"),
                                        NAME("X-ProxyUser-IP"),
                                        NAME("X-Originating-IP"),
                                        NAME("X-Remote-IP"),
                                        NAME("X-Remote-Addr"),
                                        NAME("X-Envoy-External-Address"),
                                        NAME("X-Azure-ClientIP"),
                                        NAME("X-Azure-SocketIP")};
    return EQ_LOOSE_ANY(n, names);
}

/* Names a trusted proxy in front of moat may set. */
enum forwarded_kind { FWD_NONE = 0, FWD_FOR, FWD_PROTO, FWD_HOST, FWD_OTHER, FWD_REQUEST_ID };

static enum forwarded_kind forwarded_kind(struct http1_str n)
{
    if (headername_eq_loose(n, "X-Forwarded-For"))
        return FWD_FOR;
    if (headername_eq_loose(n, "X-Forwarded-Proto"))
        return FWD_PROTO;
    if (headername_eq_loose(n, "X-Forwarded-Host"))
        return FWD_HOST;
    if (headername_eq_loose(n, "X-Request-ID"))
        return FWD_REQUEST_ID;
    if (headername_has_prefix_loose(n, "X-Forwarded-") || is_client_ip_header(n))
        return FWD_OTHER;
    return FWD_NONE;
}

static bool request_id_valid(struct http1_str v)
{
    if (v.len == 0 || v.len > CLIENT_REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        char c = v.p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

struct seen {
    char xff[XFF_MAX];
    size_t xff_len;
    bool proto, host, request_id;
    struct http1_str request_id_value; /* the id the upstream will see */
};

static void keep_trusted(struct request *r, size_t i, enum forwarded_kind k, struct seen *s)
{
    const struct http1_header *h = &r->h.headers[i];
    if (k == FWD_FOR) { /* merged into one list below, with the peer appended */
        r->hflags[i] |= HFLAG_DROP;
        if (h->value.len && s->xff_len + h->value.len + 2 < sizeof s->xff) {
            if (s->xff_len)
                s->xff_len += (size_t)snprintf(s->xff + s->xff_len, 3, ", ");
            memcpy(s->xff + s->xff_len, h->value.p, h->value.len);
            s->xff_len += h->value.len;
        }
        return;
    }
    bool *flag = k == FWD_PROTO        ? &s->proto
                 : k == FWD_HOST       ? &s->host
                 : k == FWD_REQUEST_ID ? &s->request_id
                                       : NULL;
    if (!flag)
        return;
    if (*flag || (k == FWD_REQUEST_ID && !request_id_valid(h->value))) {
        r->hflags[i] |= HFLAG_DROP; /* one of each, and only a well-formed id */
        return;
    }
    *flag = true;
    if (k == FWD_REQUEST_ID)
        s->request_id_value = h->value;
}

/*
 * Headers named in any Connection field are hop-by-hop (RFC 9110 7.6.1): dropped.
 * Every Connection field counts, not only one of them. Done before the forwarded
 * headers are classified, so a header dropped here is never counted as kept from a
 * trusted proxy (moat then sets its own, and signs the request id actually sent).
 */
static void drop_connection_listed(struct request *r)
{
    for (size_t c = 0; c < r->h.num_headers; c++) {
        if (!http1_str_ieq(r->h.headers[c].name, "Connection"))
            continue;
        for (size_t i = 0; i < r->h.num_headers; i++) {
            struct http1_str n = r->h.headers[i].name;
            if (!http1_str_ieq(n, "Host") && identity_name_in_list(r->h.headers[c].value, n))
                r->hflags[i] |= HFLAG_DROP;
        }
    }
}

static void classify_headers(struct request *r, bool trusted, struct seen *s)
{
    drop_connection_listed(r);
    for (size_t i = 0; i < r->h.num_headers; i++) {
        struct http1_str n = r->h.headers[i].name;
        if (always_owned(n)) {
            r->hflags[i] |= HFLAG_DROP;
            continue;
        }
        enum forwarded_kind k = forwarded_kind(n);
        if (k == FWD_NONE)
            continue;
        if (trusted && !(r->hflags[i] & HFLAG_DROP))
            keep_trusted(r, i, k, s);
        else
            r->hflags[i] |= HFLAG_DROP;
    }
}

/*
 * The add_* helpers return -1 when a header does not fit in the request's
 * add_headers buffer. The request must then not be forwarded: a client
 * controls the size of some of them (X-Forwarded-Host is its Host, a trusted
 * proxy's X-Forwarded-For), and could otherwise push X-User-ID, X-Session-MFA
 * or X-Request-ID out of the request moat forwards.
 */
static int add_forwarded(struct request *r, struct seen *s)
{
    const char *ip = r->peer->ip;
    int rc = 0;
    if (s->xff_len && s->xff_len + strlen(ip) + 3 < sizeof s->xff) {
        s->xff_len += (size_t)snprintf(s->xff + s->xff_len, sizeof s->xff - s->xff_len, ", %s", ip);
        rc |= request_add_header(r, "X-Forwarded-For", s->xff, s->xff_len);
    } else {
        rc |= request_add_header(r, "X-Forwarded-For", ip, strlen(ip));
    }
    if (!s->proto)
        rc |= request_add_header(r, "X-Forwarded-Proto", "https", 5);
    if (!s->host && r->h.host.len)
        rc |= request_add_header(r, "X-Forwarded-Host", r->h.host.p, r->h.host.len);
    if (!s->request_id) {
        rc |= request_add_header(r, "X-Request-ID", r->id, REQUEST_ID_LEN);
        s->request_id_value = (struct http1_str){r->id, REQUEST_ID_LEN};
    }
    return rc ? -1 : 0;
}

static int add_session(struct request *r)
{
    const struct session_identity *id = &r->ident;
    if (!id->authenticated)
        return 0; /* anonymous requests carry no identity at all */
    int rc = request_add_header(r, "X-Tenant-ID", id->tenant, strlen(id->tenant));
    rc |= request_add_header(r, "X-User-ID", id->user, strlen(id->user));
    rc |= request_add_header(r, "X-Session-MFA", id->mfa ? "1" : "0", 1);
    return rc ? -1 : 0;
}

/* 0 added (or no key), -1 signing failed, -2 no room for the header. */
static int add_signature(struct request *r, struct http1_str request_id)
{
    const struct signature_key *key = r->snap->sign_key;
    if (!key)
        return 0;
    const struct session_identity *id = &r->ident;
    /* the Host the upstream receives: HTTP/1.0 requests without one get the upstream's name */
    struct http1_str host = r->h.host.len
                                ? r->h.host
                                : (struct http1_str){r->upstream->name, strlen(r->upstream->name)};
    struct signature_fields f = {
        .t = (int64_t)time(NULL),
        .method = r->h.method.p,
        .method_len = r->h.method.len,
        .target = r->h.target.p,
        .target_len = r->h.target.len,
        .host = host.p,
        .host_len = host.len,
        .tenant = id->authenticated ? id->tenant : "",
        .tenant_len = id->authenticated ? strlen(id->tenant) : 0,
        .user = id->authenticated ? id->user : "",
        .user_len = id->authenticated ? strlen(id->user) : 0,
        .mfa = id->authenticated ? (id->mfa ? "1" : "0") : "",
        .mfa_len = id->authenticated ? 1 : 0,
        .request_id = request_id.p,
        .request_id_len = request_id.len,
    };
    char value[160];
    size_t n = signature_header_value(key, &f, value, sizeof value);
    if (n == 0)
        return -1;
    return request_add_header(r, "X-Moat-Signature", value, n) < 0 ? -2 : 0;
}

enum phase_result identity_phase(struct request *r)
{
    const struct snapshot *snap = r->snap;
    bool trusted = snap->num_trusted &&
                   netutil_cidr_match(snap->trusted, snap->num_trusted, &r->peer->addr.sa);
    struct seen s = {0};
    classify_headers(r, trusted, &s);
    int rc = add_forwarded(r, &s) < 0 || add_session(r) < 0 ? -2 : 0;
    if (rc == 0)
        rc = add_signature(r, s.request_id_value);
    if (rc == -2) { /* fail closed: never forward a partial set of moat's headers */
        r->error = "identity headers too large";
        request_respond(r, 431, NULL, NULL, false);
        return PHASE_RESPOND;
    }
    if (rc < 0) {
        r->error = "cannot sign identity headers";
        request_respond(r, 500, NULL, NULL, false);
        return PHASE_RESPOND;
    }
    return PHASE_CONTINUE;
}
