#include "policy/session.h"

#include <stddef.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "config/config.h"
#include "util/digest.h"
#include "http/request.h"

const char *session_status_str(enum session_status s)
{
    static const char *names[] = {"ok",      "missing", "malformed", "unknown",
                                  "expired", "invalid", "mfa"};
    return (unsigned)s < sizeof names / sizeof *names ? names[s] : "?";
}

/* base64 / base64url / hex tokens and the usual opaque-token punctuation. */
static bool token_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~' || c == '+' || c == '/' || c == '=';
}

static enum session_status check_shape(const struct config_sessions *cfg, struct http1_str t)
{
    if (t.len < cfg->token_min_len || t.len > cfg->token_max_len)
        return SESSION_MALFORMED;
    for (size_t i = 0; i < t.len; i++)
        if (!token_char_ok(t.p[i]))
            return SESSION_MALFORMED;
    return SESSION_OK;
}

static bool bearer_value(struct http1_str v, struct http1_str *token)
{
    if (v.len < 7 || strncasecmp(v.p, "Bearer ", 7) != 0)
        return false;
    token->p = v.p + 7;
    token->len = v.len - 7;
    while (token->len && *token->p == ' ') {
        token->p++;
        token->len--;
    }
    return true;
}

/* Finds name=value in one Cookie header; 1 found, 0 not, -1 twice with different values. */
static int cookie_value(struct http1_str v, const char *name, struct http1_str *out)
{
    size_t nlen = strlen(name);
    int found = 0;
    const char *p = v.p, *end = v.p + v.len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == ';'))
            p++;
        const char *pair = p;
        while (p < end && *p != ';')
            p++;
        size_t plen = (size_t)(p - pair);
        if (plen > nlen && pair[nlen] == '=' && memcmp(pair, name, nlen) == 0) {
            struct http1_str val = {pair + nlen + 1, plen - nlen - 1};
            if (found && (val.len != out->len || memcmp(val.p, out->p, val.len) != 0))
                return -1; /* ambiguous: which one would the app read? */
            *out = val;
            found = 1;
        }
    }
    return found;
}

enum session_status session_token_find(const struct config_sessions *cfg,
                                       const struct http1_header *h, size_t n,
                                       struct http1_str *token)
{
    bool have = false;
    for (size_t i = 0; cfg->bearer && i < n; i++) {
        if (!http1_str_ieq(h[i].name, "Authorization"))
            continue;
        struct http1_str t;
        if (!bearer_value(h[i].value, &t))
            continue; /* another scheme (Basic): not ours to judge */
        if (have)
            return SESSION_MALFORMED; /* two bearer tokens */
        *token = t;
        have = true;
    }
    /* Every Cookie header is read (not just up to the first hit): the same cookie
     * with a different value in another header is as ambiguous as in one. */
    bool from_bearer = have;
    for (size_t i = 0; !from_bearer && cfg->cookie && i < n; i++) {
        if (!http1_str_ieq(h[i].name, "Cookie"))
            continue;
        struct http1_str t = *token;
        int rc = cookie_value(h[i].value, cfg->cookie, &t);
        if (rc < 0)
            return SESSION_MALFORMED;
        if (rc == 1) {
            if (have && (t.len != token->len || memcmp(t.p, token->p, t.len) != 0))
                return SESSION_MALFORMED;
            *token = t;
            have = true;
        }
    }
    return have ? check_shape(cfg, *token) : SESSION_MISSING;
}

void session_token_hash(struct http1_str token, uint8_t sha[32], char hex[65])
{
    digest_sha256(token.p, token.len, sha);
    digest_hex(sha, 32, hex);
}

bool session_value_ok(const char *s, size_t len, bool allow_comma)
{
    if (len == 0 || len >= SESSION_FIELD_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.' || c == ':' || c == '@' ||
                  (allow_comma && c == ',');
        if (!ok)
            return false;
    }
    return true;
}

static bool parse_int64(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 18)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* 9999-12-31T23:59:59Z. A larger exp is not seconds (most likely milliseconds,
 * which would read as a session that never ends): the record is malformed. */
#define SESSION_EXP_MAX 253402300799LL

static bool field_is(const redisReply *k, const char *name)
{
    return k->type == REDIS_REPLY_STRING && k->len == strlen(name) &&
           memcmp(k->str, name, k->len) == 0;
}

static bool copy_field(char *dst, const redisReply *v, bool allow_comma)
{
    if (v->type != REDIS_REPLY_STRING || !session_value_ok(v->str, v->len, allow_comma))
        return false;
    memcpy(dst, v->str, v->len);
    dst[v->len] = '\0';
    return true;
}

/* Applies one field/value pair; false (with *bad set to the field's name) if the
 * value is unusable. */
static bool apply_field(const redisReply *k, const redisReply *v, struct session_identity *id,
                        int64_t *exp, bool *have_mfa, const char **bad)
{
    static const char *const names[] = {"tenant", "user", "roles", "mfa", "exp"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (field_is(k, names[i]))
            *bad = names[i];
    if (field_is(k, "tenant"))
        return copy_field(id->tenant, v, false);
    if (field_is(k, "user"))
        return copy_field(id->user, v, false);
    if (field_is(k, "roles"))
        return v->len == 0 || copy_field(id->roles, v, true);
    if (field_is(k, "mfa")) {
        if (v->type != REDIS_REPLY_STRING || v->len != 1 || (v->str[0] != '0' && v->str[0] != '1'))
            return false;
        id->mfa = v->str[0] == '1';
        *have_mfa = true;
        return true;
    }
    if (field_is(k, "exp"))
        return v->type == REDIS_REPLY_STRING && parse_int64(v->str, v->len, exp) &&
               *exp <= SESSION_EXP_MAX;
    return true; /* other fields are the login service's business */
}

enum session_status session_parse_reply(const redisReply *reply, int64_t now,
                                        struct session_identity *id, int64_t *exp)
{
    *exp = 0;
    memset(id, 0, offsetof(struct session_identity, token_hash));
    id->invalid_field = "record"; /* until the reply proves to be a usable hash */
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return SESSION_INVALID;
    if (reply->elements == 0) {
        id->invalid_field = NULL;
        return SESSION_UNKNOWN;
    }
    if (reply->elements % 2 != 0)
        return SESSION_INVALID;
    bool have_mfa = false; /* tracked for strictness of the value only */
    for (size_t i = 0; i < reply->elements; i += 2)
        if (!apply_field(reply->element[i], reply->element[i + 1], id, exp, &have_mfa,
                         &id->invalid_field))
            return SESSION_INVALID;
    if (!id->tenant[0] || !id->user[0]) { /* mfa absent means no MFA */
        id->invalid_field = !id->tenant[0] ? "tenant" : "user";
        return SESSION_INVALID;
    }
    id->invalid_field = NULL;
    id->exp = *exp; /* kept with cached decisions: stale grace must not outlive it */
    if (*exp && *exp <= now)
        return SESSION_EXPIRED;
    id->authenticated = true;
    return SESSION_OK;
}
