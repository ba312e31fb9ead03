/*
 * http1: strict incremental HTTP/1.1 parser (see http1.h for the contract).
 * Byte classes: http1_bytes.c; the chunked coding: http1_chunked.c.
 *
 * Design notes:
 * - Every byte class is one lookup in http1_ctype[], built at compile time from the
 *   RFC 9110/9112 grammar, so the hot loops are "skip while class bit set".
 * - The scanner and the parsers validate independently: http1_parse_*() never
 *   relies on http1_head_scan() having run, so a caller mistake (or the fuzzer)
 *   cannot turn an unchecked byte into a forwarded one.
 * - When in doubt we refuse. A reverse proxy that accepts what its upstream
 *   reads differently is a request smuggling vector; a 400 is not.
 */
#include "http/http1.h"

#include <string.h>

#include "http/http1_bytes.h"

/* ---- small helpers ---------------------------------------------------- */

static bool mem_ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (http1_lower[(unsigned char)a[i]] != http1_lower[(unsigned char)b[i]])
            return false;
    return true;
}

bool http1_str_ieq(struct http1_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && mem_ieq(s.p, lit, n);
}

const struct http1_header *http1_find_header(const struct http1_header *h, size_t n,
                                             const char *name)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (h[i].name.len == nlen && mem_ieq(h[i].name.p, name, nlen))
            return &h[i];
    return NULL;
}

/*
 * Takes the next element of a comma-separated list from *v, OWS-trimmed, and
 * advances *v past it. Returns false when the list is exhausted. Elements may
 * be empty ("a,,b"): callers decide whether that is acceptable.
 */
static bool list_next(struct http1_str *v, struct http1_str *elem)
{
    if (v->p == NULL)
        return false;
    const char *p = v->p, *end = v->p + v->len;
    const char *comma = memchr(p, ',', v->len);
    const char *e = comma ? comma : end;
    while (p < e && IS_OWS(*p))
        p++;
    const char *q = e;
    while (q > p && IS_OWS(q[-1]))
        q--;
    elem->p = p;
    elem->len = (size_t)(q - p);
    if (comma) {
        v->p = comma + 1;
        v->len = (size_t)(end - v->p);
    } else {
        v->p = NULL;
        v->len = 0;
    }
    return true;
}

bool http1_value_has_token(struct http1_str value, const char *token)
{
    struct http1_str e;
    if (value.len == 0)
        return false;
    while (list_next(&value, &e))
        if (http1_str_ieq(e, token))
            return true;
    return false;
}

/* ---- head scanner -------------------------------------------------------- */

enum scan_state {
    SCAN_START = 0,  /* nothing seen yet: an empty line here is an error */
    SCAN_LINE,       /* inside a non-empty line */
    SCAN_CR,         /* CR ending a non-empty line */
    SCAN_LINE_START, /* CRLF seen, at the start of a line */
    SCAN_END_CR,     /* CR at the start of a line: the head ends at the LF */
    SCAN_DONE,
    SCAN_ERR_400,
    SCAN_ERR_431,
};

/* Runs the scan state machine over buf[i..lim); returns the index it stopped at. */
static size_t scan_run(unsigned *state, const char *buf, size_t i, size_t lim)
{
    unsigned st = *state;
    while (i < lim) {
        unsigned char c = (unsigned char)buf[i++];
        if (HAS(c, CT_FIELD)) {
            if (st == SCAN_CR || st == SCAN_END_CR)
                goto bad; /* bare CR */
            st = SCAN_LINE;
            /* the common case: the rest of a line, one lookup per byte */
            while (i < lim && HAS(buf[i], CT_FIELD))
                i++;
        } else if (c == '\r') {
            if (st != SCAN_LINE && st != SCAN_LINE_START)
                goto bad; /* CR CR, or a leading empty line */
            st = st == SCAN_LINE ? SCAN_CR : SCAN_END_CR;
        } else if (c == '\n') {
            if (st == SCAN_CR) {
                st = SCAN_LINE_START;
            } else if (st == SCAN_END_CR) {
                st = SCAN_DONE;
                break;
            } else {
                goto bad; /* bare LF */
            }
        } else {
            goto bad; /* NUL, control characters, DEL */
        }
    }
    *state = st;
    return i;
bad:
    *state = SCAN_ERR_400;
    return i - 1;
}

ssize_t http1_head_scan(struct http1_scan *scan, const char *buf, size_t len, size_t max_bytes,
                        int *status)
{
    if (max_bytes == 0)
        max_bytes = HTTP1_DEFAULT_MAX_HEADER_BYTES;
    if (scan->state < SCAN_DONE) {
        size_t lim = len < max_bytes ? len : max_bytes;
        if (scan->offset < lim)
            scan->offset = scan_run(&scan->state, buf, scan->offset, lim);
        if (scan->state < SCAN_DONE && scan->offset >= max_bytes)
            scan->state = SCAN_ERR_431;
    }
    switch (scan->state) {
    case SCAN_DONE:
        return (ssize_t)scan->offset;
    case SCAN_ERR_400:
        *status = 400;
        return -1;
    case SCAN_ERR_431:
        *status = 431;
        return -1;
    default:
        return 0;
    }
}

/* ---- head parsing: shared pieces ------------------------------------------ */

struct perr {
    int status;
    const char *msg;
};

static int fail(struct perr *e, int status, const char *msg)
{
    e->status = status;
    e->msg = msg;
    return -1;
}

/* Consumes CRLF at *pp; anything else at the end of a line is a bare CR/LF or junk. */
static int expect_crlf(const char **pp, const char *end, struct perr *e, const char *msg)
{
    const char *p = *pp;
    if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
        return fail(e, 400, msg);
    *pp = p + 2;
    return 0;
}

/*
 * Parses "HTTP/" DIGIT "." DIGIT at *pp, which must be followed by `next`.
 * Malformed => 400; well formed but not 1.0/1.1 => 505. HTTP-version is
 * case-sensitive (RFC 9112 2.3), so "http/1.1" is malformed.
 */
static int parse_version(const char **pp, const char *end, char next, int *minor, struct perr *e)
{
    const char *p = *pp;
    if (end - p < 9 || memcmp(p, "HTTP/", 5) != 0 || !IS_DIGIT(p[5]) || p[6] != '.' ||
        !IS_DIGIT(p[7]) || p[8] != next)
        return fail(e, 400, "malformed HTTP version");
    if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
        return fail(e, 505, "HTTP version not supported");
    *minor = p[7] - '0';
    *pp = p + 8;
    return 0;
}

/* Parses one "name: value CRLF" line at *pp into h. */
static int parse_field(const char **pp, const char *end, struct http1_header *h, struct perr *e)
{
    const char *p = *pp, *name = p;
    if (IS_OWS(*p))
        return fail(e, 400, "obs-fold or whitespace before a field name");
    while (p < end && HAS(*p, CT_TCHAR))
        p++;
    if (p == end || *p != ':') {
        if (p < end && IS_OWS(*p))
            return fail(e, 400, "whitespace between field name and colon");
        return fail(e, 400, "invalid character in field name");
    }
    if (p == name)
        return fail(e, 400, "empty field name");
    h->name.p = name;
    h->name.len = (size_t)(p - name);
    p++;
    while (p < end && IS_OWS(*p))
        p++;
    const char *v = p;
    while (p < end && HAS(*p, CT_FIELD))
        p++;
    const char *ve = p;
    while (ve > v && IS_OWS(ve[-1]))
        ve--;
    h->value.p = v;
    h->value.len = (size_t)(ve - v);
    *pp = p;
    return expect_crlf(pp, end, e, "invalid character in field value");
}

/*
 * Parses header lines up to and including the empty line, which must end the
 * buffer exactly. More than max fields => 431.
 */
static int parse_fields(const char *p, const char *end, size_t max, struct http1_header *h,
                        size_t *n, struct perr *e)
{
    size_t count = 0;
    *n = 0;
    for (;;) {
        if (p == end)
            return fail(e, 400, "incomplete head");
        if (*p == '\r')
            break;
        if (count == max)
            return fail(e, 431, "too many header fields");
        if (parse_field(&p, end, &h[count], e) < 0)
            return -1;
        *n = ++count;
    }
    if (expect_crlf(&p, end, e, "bare CR") < 0)
        return -1;
    if (p != end)
        return fail(e, 400, "bytes after the end of the head");
    return 0;
}

/* ---- header semantics ----------------------------------------------------- */

enum field_kind {
    F_OTHER,
    F_HOST,
    F_CONTENT_LENGTH,
    F_TRANSFER_ENCODING,
    F_CONNECTION,
    F_UPGRADE,
    F_EXPECT,
};

/* Length first, then one case-insensitive compare: most names miss on length. */
static enum field_kind field_kind(struct http1_str n)
{
    switch (n.len) {
    case 4:
        return mem_ieq(n.p, "host", 4) ? F_HOST : F_OTHER;
    case 6:
        return mem_ieq(n.p, "expect", 6) ? F_EXPECT : F_OTHER;
    case 7:
        return mem_ieq(n.p, "upgrade", 7) ? F_UPGRADE : F_OTHER;
    case 10:
        return mem_ieq(n.p, "connection", 10) ? F_CONNECTION : F_OTHER;
    case 14:
        return mem_ieq(n.p, "content-length", 14) ? F_CONTENT_LENGTH : F_OTHER;
    case 17:
        return mem_ieq(n.p, "transfer-encoding", 17) ? F_TRANSFER_ENCODING : F_OTHER;
    default:
        return F_OTHER;
    }
}

/* What the framing-relevant fields said, gathered in one pass over the headers. */
struct facts {
    struct http1_str host;
    unsigned hosts;
    bool host_bad;
    bool has_cl, has_te;
    uint64_t cl;
    unsigned te_chunked;  /* "chunked" elements seen */
    unsigned te_other;    /* any other coding */
    bool te_last_chunked; /* the last element seen so far is "chunked" */
    bool te_empty;        /* an empty element or empty value */
    bool conn_close, conn_keep_alive, conn_upgrade;
    bool upgrade_ws;
    bool expect_100, expect_other;
};

/* Content-Length = 1*DIGIT, at most INT64_MAX (callers store it in off_t). */
static int parse_cl_value(struct http1_str v, uint64_t *out)
{
    uint64_t n = 0;
    if (v.len == 0)
        return -1;
    for (size_t i = 0; i < v.len; i++) {
        if (!IS_DIGIT(v.p[i]))
            return -1;
        uint64_t d = (uint64_t)(v.p[i] - '0');
        if (n > ((uint64_t)INT64_MAX - d) / 10)
            return -1;
        n = n * 10 + d;
    }
    *out = n;
    return 0;
}

/*
 * Merges a Content-Length field into f. A list ("5, 5") or repeated fields are
 * accepted only when every element is the same number (RFC 9110 8.6); empty
 * elements are refused rather than skipped.
 */
static int add_content_length(struct facts *f, struct http1_str v, struct perr *e)
{
    struct http1_str el;
    if (v.len == 0)
        return fail(e, 400, "empty Content-Length");
    while (list_next(&v, &el)) {
        uint64_t n;
        if (parse_cl_value(el, &n) < 0)
            return fail(e, 400, "invalid Content-Length");
        if (f->has_cl && n != f->cl)
            return fail(e, 400, "conflicting Content-Length values");
        f->has_cl = true;
        f->cl = n;
    }
    return 0;
}

/* Records the codings of one Transfer-Encoding field; repeated fields form one list. */
static void add_transfer_encoding(struct facts *f, struct http1_str v)
{
    struct http1_str el;
    f->has_te = true;
    if (v.len == 0)
        f->te_empty = true;
    while (list_next(&v, &el)) {
        if (el.len == 0) {
            f->te_empty = true;
        } else if (http1_str_ieq(el, "chunked")) {
            f->te_chunked++;
            f->te_last_chunked = true;
            continue;
        } else {
            f->te_other++;
        }
        f->te_last_chunked = false;
    }
}

static void add_connection(struct facts *f, struct http1_str v)
{
    struct http1_str el;
    while (list_next(&v, &el)) {
        if (http1_str_ieq(el, "close"))
            f->conn_close = true;
        else if (http1_str_ieq(el, "keep-alive"))
            f->conn_keep_alive = true;
        else if (http1_str_ieq(el, "upgrade"))
            f->conn_upgrade = true;
    }
}

static bool host_valid(struct http1_str v)
{
    if (v.len == 0)
        return false; /* legal but unroutable, and indistinguishable from "absent" */
    for (size_t i = 0; i < v.len; i++)
        if (!HAS(v.p[i], CT_HOST))
            return false;
    return true;
}

/* One pass over the fields: collect everything framing and routing depend on. */
static int gather_facts(const struct http1_header *h, size_t n, struct facts *f, struct perr *e)
{
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < n; i++) {
        struct http1_str v = h[i].value;
        switch (field_kind(h[i].name)) {
        case F_HOST:
            f->hosts++;
            f->host = v;
            f->host_bad |= !host_valid(v);
            break;
        case F_CONTENT_LENGTH:
            if (add_content_length(f, v, e) < 0)
                return -1;
            break;
        case F_TRANSFER_ENCODING:
            add_transfer_encoding(f, v);
            break;
        case F_CONNECTION:
            add_connection(f, v);
            break;
        case F_UPGRADE:
            f->upgrade_ws |= http1_value_has_token(v, "websocket");
            break;
        case F_EXPECT:
            if (http1_str_ieq(v, "100-continue"))
                f->expect_100 = true;
            else
                f->expect_other = true;
            break;
        case F_OTHER:
            break;
        }
    }
    return 0;
}

static bool keep_alive_default(const struct facts *f, int minor)
{
    if (f->conn_close)
        return false;
    return minor >= 1 || f->conn_keep_alive;
}

/* ---- requests ------------------------------------------------------------ */

static enum http1_method method_id(struct http1_str m)
{
    static const struct {
        const char *name;
        enum http1_method id;
    } tab[] = {
        {"GET", HTTP1_M_GET},         {"HEAD", HTTP1_M_HEAD},       {"POST", HTTP1_M_POST},
        {"PUT", HTTP1_M_PUT},         {"DELETE", HTTP1_M_DELETE},   {"PATCH", HTTP1_M_PATCH},
        {"OPTIONS", HTTP1_M_OPTIONS}, {"CONNECT", HTTP1_M_CONNECT}, {"TRACE", HTTP1_M_TRACE},
    };
    /* methods are case-sensitive (RFC 9110 9.1): "get" is some other method */
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
        if (strlen(tab[i].name) == m.len && memcmp(tab[i].name, m.p, m.len) == 0)
            return tab[i].id;
    return HTTP1_M_OTHER;
}

/* authority-form (CONNECT only): host ":" port, port 1*5DIGIT. */
static bool authority_valid(struct http1_str t)
{
    size_t colon = t.len;
    for (size_t i = 0; i < t.len; i++) {
        if (!HAS(t.p[i], CT_HOST))
            return false;
        if (t.p[i] == ':')
            colon = i;
    }
    if (colon == 0 || colon == t.len || t.len - colon - 1 > 5 || t.len - colon - 1 == 0)
        return false;
    for (size_t i = colon + 1; i < t.len; i++)
        if (!IS_DIGIT(t.p[i]))
            return false;
    return true;
}

/*
 * Classifies the request-target and fills path/query. Accepted: origin-form
 * ("/p?q") for every method but CONNECT, "*" for OPTIONS, authority-form for
 * CONNECT. absolute-form ("http://h/p") is refused with 400: RFC 9112 3.2.2
 * would make its authority override Host, and a gateway that routes on Host
 * must not have two places a request can name its target.
 */
static int classify_target(struct http1_request *r, struct perr *e)
{
    struct http1_str t = r->target;
    r->query.p = t.p + t.len;
    r->query.len = 0;
    r->path = t;
    if (r->method_id == HTTP1_M_CONNECT) {
        if (!authority_valid(t))
            return fail(e, 400, "CONNECT needs an authority-form target");
        return 0;
    }
    if (t.len == 1 && t.p[0] == '*') {
        if (r->method_id != HTTP1_M_OPTIONS)
            return fail(e, 400, "asterisk target only for OPTIONS");
        return 0;
    }
    if (t.p[0] != '/')
        return fail(e, 400, "request-target must be origin-form");
    const char *q = memchr(t.p, '?', t.len);
    if (q) {
        r->path.len = (size_t)(q - t.p);
        r->query.p = q + 1;
        r->query.len = t.len - r->path.len - 1;
    }
    return 0;
}

/* method SP request-target SP HTTP-version CRLF, single spaces only. */
static int parse_request_line(const char **pp, const char *end, struct http1_request *r,
                              struct perr *e)
{
    const char *p = *pp, *s = p;
    while (p < end && HAS(*p, CT_TCHAR))
        p++;
    if (p == s || p == end || *p != ' ')
        return fail(e, 400, "malformed method");
    r->method.p = s;
    r->method.len = (size_t)(p - s);
    r->method_id = method_id(r->method);
    s = ++p;
    while (p < end && HAS(*p, CT_TARGET))
        p++;
    if (p == s || p == end || *p != ' ')
        return fail(e, 400, "malformed request-target");
    r->target.p = s;
    r->target.len = (size_t)(p - s);
    p++;
    if (parse_version(&p, end, '\r', &r->minor_version, e) < 0)
        return -1;
    if (expect_crlf(&p, end, e, "malformed request line") < 0)
        return -1;
    *pp = p;
    return classify_target(r, e);
}

/*
 * Request body framing, RFC 9112 6.1-6.3, refusing anything ambiguous:
 * TE+CL, TE in HTTP/1.0, "chunked" not last or repeated => 400;
 * chunked last but preceded by other codings ("gzip, chunked") => 501, since
 * we would have to pass a coding through that we do not implement.
 */
static int request_framing(const struct facts *f, struct http1_request *r, struct perr *e)
{
    struct http1_framing *fr = &r->framing;
    fr->body = HTTP1_BODY_NONE;
    fr->content_length = 0;
    if (f->has_te) {
        if (f->has_cl)
            return fail(e, 400, "Content-Length with Transfer-Encoding");
        if (r->minor_version == 0)
            return fail(e, 400, "Transfer-Encoding in an HTTP/1.0 request");
        if (f->te_empty || f->te_chunked > 1 || !f->te_last_chunked)
            return fail(e, 400, "chunked is not the final transfer coding");
        if (f->te_other)
            return fail(e, 501, "unsupported transfer coding");
        fr->body = HTTP1_BODY_CHUNKED;
    } else if (f->has_cl) {
        fr->body = HTTP1_BODY_LENGTH;
        fr->content_length = f->cl;
    }
    return 0;
}

static int request_semantics(const struct facts *f, struct http1_request *r, struct perr *e)
{
    if (f->hosts > 1)
        return fail(e, 400, "duplicate Host");
    if (f->host_bad)
        return fail(e, 400, "invalid Host");
    if (f->hosts == 0 && r->minor_version >= 1)
        return fail(e, 400, "missing Host");
    r->host = f->host;
    if (request_framing(f, r, e) < 0)
        return -1;
    /* Expect is ignored in HTTP/1.0 (RFC 9110 10.1.1); anything else than
     * 100-continue is an expectation we cannot meet */
    if (r->minor_version >= 1 && f->expect_other)
        return fail(e, 417, "unsupported expectation");
    r->framing.expect_continue = r->minor_version >= 1 && f->expect_100;
    r->framing.keep_alive = keep_alive_default(f, r->minor_version);
    /* RFC 6455 handshakes are GET over HTTP/1.1; Upgrade is ignored in 1.0 */
    r->framing.upgrade_websocket =
        r->minor_version >= 1 && r->method_id == HTTP1_M_GET && f->conn_upgrade && f->upgrade_ws;
    return 0;
}

static void resolve_limits(const struct http1_limits *lim, size_t *bytes, size_t *headers)
{
    *bytes = lim && lim->max_header_bytes ? lim->max_header_bytes : HTTP1_DEFAULT_MAX_HEADER_BYTES;
    *headers = lim && lim->max_headers ? lim->max_headers : HTTP1_DEFAULT_MAX_HEADERS;
    if (*headers > HTTP1_MAX_HEADERS_CAP)
        *headers = HTTP1_MAX_HEADERS_CAP;
}

int http1_parse_request(const char *buf, size_t len, const struct http1_limits *lim,
                        struct http1_request *out, int *status, const char **err)
{
    struct perr e = {0, NULL};
    struct facts f;
    size_t max_bytes, max_headers;
    const char *p = buf, *end = buf + len;

    resolve_limits(lim, &max_bytes, &max_headers);
    memset(out, 0, offsetof(struct http1_request, headers));
    if (len > max_bytes)
        fail(&e, 431, "request head too large");
    else if (parse_request_line(&p, end, out, &e) == 0 &&
             parse_fields(p, end, max_headers, out->headers, &out->num_headers, &e) == 0 &&
             gather_facts(out->headers, out->num_headers, &f, &e) == 0)
        request_semantics(&f, out, &e);
    *status = e.status;
    *err = e.msg;
    return e.status ? -1 : 0;
}

/* ---- responses ------------------------------------------------------------ */

/* HTTP-version SP 3DIGIT [SP reason] CRLF; the SP before an empty reason is optional. */
static int parse_status_line(const char **pp, const char *end, struct http1_response *r,
                             struct perr *e)
{
    const char *p = *pp;
    if (parse_version(&p, end, ' ', &r->minor_version, e) < 0)
        return -1;
    if (end - p < 5 || !IS_DIGIT(p[1]) || !IS_DIGIT(p[2]) || !IS_DIGIT(p[3]) || p[1] == '0' ||
        (p[4] != ' ' && p[4] != '\r'))
        return fail(e, 502, "malformed status code");
    r->status = (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0');
    p += p[4] == ' ' ? 5 : 4;
    const char *s = p;
    while (p < end && HAS(*p, CT_FIELD))
        p++;
    r->reason.p = s;
    r->reason.len = (size_t)(p - s);
    if (expect_crlf(&p, end, e, "invalid character in status line") < 0)
        return -1;
    *pp = p;
    return 0;
}

static bool response_has_no_body(int status, enum http1_method m)
{
    return m == HTTP1_M_HEAD || status < 200 || status == 204 || status == 304 ||
           (m == HTTP1_M_CONNECT && status < 300);
}

/*
 * Response framing, RFC 9112 6.3. An upstream that sends CL with TE, TE in
 * HTTP/1.0, or "chunked" twice is refused outright: we do not forward a body
 * whose length two implementations could read differently.
 */
static int response_framing(const struct facts *f, enum http1_method m, struct http1_response *r,
                            struct perr *e)
{
    struct http1_framing *fr = &r->framing;
    if (f->has_te && f->has_cl)
        return fail(e, 502, "Content-Length with Transfer-Encoding");
    if (f->has_te && (r->minor_version == 0 || f->te_empty || f->te_chunked > 1))
        return fail(e, 502, "invalid Transfer-Encoding");
    fr->body = HTTP1_BODY_NONE;
    fr->content_length = 0;
    if (response_has_no_body(r->status, m))
        return 0;
    if (f->has_te)
        fr->body = f->te_last_chunked ? HTTP1_BODY_CHUNKED : HTTP1_BODY_UNTIL_CLOSE;
    else if (f->has_cl)
        fr->body = HTTP1_BODY_LENGTH;
    else
        fr->body = HTTP1_BODY_UNTIL_CLOSE;
    if (fr->body == HTTP1_BODY_LENGTH)
        fr->content_length = f->cl;
    return 0;
}

int http1_parse_response(const char *buf, size_t len, const struct http1_limits *lim,
                         enum http1_method request_method, struct http1_response *out,
                         const char **err)
{
    struct perr e = {0, NULL};
    struct facts f;
    size_t max_bytes, max_headers;
    const char *p = buf, *end = buf + len;

    resolve_limits(lim, &max_bytes, &max_headers);
    memset(out, 0, offsetof(struct http1_response, headers));
    if (len > max_bytes)
        fail(&e, 502, "response head too large");
    else if (parse_status_line(&p, end, out, &e) == 0 &&
             parse_fields(p, end, max_headers, out->headers, &out->num_headers, &e) == 0 &&
             gather_facts(out->headers, out->num_headers, &f, &e) == 0 &&
             response_framing(&f, request_method, out, &e) == 0) {
        struct http1_framing *fr = &out->framing;
        fr->keep_alive =
            fr->body != HTTP1_BODY_UNTIL_CLOSE && keep_alive_default(&f, out->minor_version);
        fr->upgrade_websocket = out->status == 101 && f.conn_upgrade && f.upgrade_ws;
    }
    *err = e.msg;
    return e.status ? -1 : 0;
}

/* ---- reasons ---------------------------------------------------------------- */

const char *http1_reason(int status)
{
    static const struct {
        int code;
        const char *text;
    } tab[] = {
        {100, "Continue"},
        {101, "Switching Protocols"},
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {204, "No Content"},
        {206, "Partial Content"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {303, "See Other"},
        {304, "Not Modified"},
        {307, "Temporary Redirect"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {411, "Length Required"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {417, "Expectation Failed"},
        {421, "Misdirected Request"},
        {426, "Upgrade Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
    };
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
        if (tab[i].code == status)
            return tab[i].text;
    return "Unknown";
}
