/*
 * libFuzzer target: src/policy/session.c, what a request and the session store hand
 * to session authentication.
 *
 * Input: 4 knob bytes (config: bearer, cookie name, token length bounds, the
 * clock), then request header lines ("Name: value\n") up to a "\n\n", then
 * the session record as the HGETALL reply would hold it, one element per
 * "<type byte><length byte><bytes>" (string / integer / nil / array).
 * Properties checked besides "no sanitizer report":
 * - a token found lies inside a header value, within the length bounds and
 *   alphabet; its hash is 64 lowercase hex digits;
 * - a record accepted as OK has a tenant and a user (and roles, if any) made
 *   of the safe alphabet, NUL-terminated within their buffers, and is not
 *   expired; EXPIRED means a real expiry at or before now.
 */
#include <hiredis/hiredis.h>
#include <stdlib.h>

#include "config/config.h"
#include "fuzz_util.h"
#include "http/request.h"
#include "policy/session.h"

#define MAX_LINES 64
#define MAX_ELEMS 64

static struct http1_header hdrs[MAX_LINES];

static size_t split_headers(const char *p, size_t len)
{
    size_t n = 0;
    while (len && n < MAX_LINES) {
        const char *nl = memchr(p, '\n', len);
        size_t l = nl ? (size_t)(nl - p) : len;
        const char *colon = memchr(p, ':', l);
        if (colon) {
            hdrs[n].name = (struct http1_str){p, (size_t)(colon - p)};
            const char *v = colon + 1;
            while (v < p + l && *v == ' ')
                v++;
            hdrs[n].value = (struct http1_str){v, (size_t)(p + l - v)};
            n++;
        }
        if (!nl)
            break;
        p += l + 1;
        len -= l + 1;
    }
    return n;
}

static void check_token(const struct config_sessions *cfg, size_t n)
{
    struct http1_str tok = {0};
    enum session_status s = session_token_find(cfg, hdrs, n, &tok);
    CHECK(s == SESSION_OK || s == SESSION_MISSING || s == SESSION_MALFORMED);
    CHECK(session_status_str(s) != NULL);
    if (s != SESSION_OK)
        return;
    CHECK(tok.len >= cfg->token_min_len && tok.len <= cfg->token_max_len);
    bool inside = false;
    for (size_t i = 0; i < n && !inside; i++)
        inside = fz_inside(tok, hdrs[i].value.p, hdrs[i].value.len) && tok.p >= hdrs[i].value.p;
    CHECK(inside);
    for (size_t i = 0; i < tok.len; i++)
        CHECK(tok.p[i] > 0x20 && tok.p[i] < 0x7f && tok.p[i] != ';' && tok.p[i] != ',');
    uint8_t sha[32];
    char hex[65];
    session_token_hash(tok, sha, hex);
    CHECK(strlen(hex) == 64 && strspn(hex, "0123456789abcdef") == 64);
}

/* One reply element from the input; arrays nest at most `depth` levels. */
static redisReply *take_elem(struct fz_in *in, int depth)
{
    if (!in->len)
        return NULL;
    uint32_t type = fz_take(in, 1);
    uint32_t len = fz_take(in, 1);
    redisReply *r = calloc(1, sizeof(*r));
    CHECK(r);
    switch (type % 8) {
    case 6:
        r->type = REDIS_REPLY_INTEGER;
        r->integer = (long long)(int32_t)fz_take(in, 4);
        break;
    case 7:
        r->type = REDIS_REPLY_NIL;
        break;
    case 5:
        if (depth > 0) {
            r->type = REDIS_REPLY_ARRAY;
            r->element = calloc(len % 4 + 1, sizeof(*r->element));
            CHECK(r->element);
            for (size_t i = 0; i < len % 4; i++) {
                redisReply *e = take_elem(in, depth - 1);
                if (!e)
                    break;
                r->element[r->elements++] = e;
            }
            break;
        }
        /* fall through */
    default: /* strings mostly: a record is field/value strings */
        r->type = (type % 8) == 4 ? REDIS_REPLY_STATUS : REDIS_REPLY_STRING;
        if (len > in->len)
            len = (uint32_t)in->len;
        r->str = malloc(len + 1);
        CHECK(r->str);
        memcpy(r->str, in->p, len);
        r->str[len] = '\0';
        r->len = len;
        in->p += len;
        in->len -= len;
        break;
    }
    return r;
}

static bool field_ok(const char *f, bool allow_comma, bool allow_empty)
{
    size_t l = strnlen(f, SESSION_FIELD_MAX);
    CHECK(l < SESSION_FIELD_MAX);
    return (allow_empty && l == 0) || session_value_ok(f, l, allow_comma);
}

static void check_record(struct fz_in *in, int64_t now)
{
    redisReply *top = calloc(1, sizeof(*top));
    CHECK(top);
    top->type = REDIS_REPLY_ARRAY;
    top->element = calloc(MAX_ELEMS, sizeof(*top->element));
    CHECK(top->element);
    while (in->len && top->elements < MAX_ELEMS)
        top->element[top->elements++] = take_elem(in, 2);

    struct session_identity id;
    memset(&id, 0xa5, sizeof(id)); /* whatever was there before */
    int64_t exp = -1;
    enum session_status s = session_parse_reply(top, now, &id, &exp);
    CHECK(s == SESSION_OK || s == SESSION_UNKNOWN || s == SESSION_EXPIRED || s == SESSION_INVALID);
    CHECK(exp >= 0);
    if (s == SESSION_OK) {
        CHECK(id.authenticated);
        CHECK(field_ok(id.tenant, false, false) && field_ok(id.user, false, false));
        CHECK(field_ok(id.roles, true, true));
        CHECK(exp == 0 || exp > now);
        CHECK(exp <= 253402300799LL); /* seconds, never milliseconds (docs/sessions.md) */
        CHECK(id.exp == exp);
    } else {
        CHECK(!id.authenticated);
    }
    if (s == SESSION_EXPIRED)
        CHECK(exp != 0 && exp <= now);
    if (s == SESSION_UNKNOWN)
        CHECK(top->elements == 0);
    /* an invalid record names its bad field (the audit event says it); nothing else does */
    CHECK((s == SESSION_INVALID) == (id.invalid_field != NULL));
    freeReplyObject(top);
    /* a reply that is not an array is never a session */
    redisReply nil = {.type = REDIS_REPLY_NIL};
    CHECK(session_parse_reply(&nil, now, &id, &exp) == SESSION_INVALID);
    CHECK(session_parse_reply(NULL, now, &id, &exp) == SESSION_INVALID);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_in in = {data, size};
    uint32_t knob = fz_take(&in, 4);
    static const char *cookies[] = {NULL, "sid", "session", "s"};
    size_t a = 1 + (knob >> 8) % 64, b = 1 + (knob >> 16) % 4096;
    struct config_sessions cfg = {
        .cookie = (char *)cookies[knob & 3],
        .bearer = (knob & 4) != 0,
        .token_min_len = a < b ? a : b,
        .token_max_len = a < b ? b : a,
    };
    int64_t now = (knob & 8) ? 1700000000 : (int64_t)(knob >> 4);

    const uint8_t *sep = in.len >= 2 ? memmem(in.p, in.len, "\n\n", 2) : NULL;
    size_t hlen = sep ? (size_t)(sep - in.p) : in.len;
    check_token(&cfg, split_headers((const char *)in.p, hlen));
    if (sep) {
        in.p = sep + 2;
        in.len -= hlen + 2;
        check_record(&in, now);
    }
    return 0;
}
