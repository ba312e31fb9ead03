/*
 * session: the pure parts of session authentication, kept apart from I/O so
 * they can be unit tested: finding the token in a request (Authorization:
 * Bearer, or the configured cookie), checking its shape before any Redis call,
 * hashing it into the Redis key, and turning an HGETALL reply into a session.
 *
 * Everything read from Redis is checked before it becomes a header value:
 * tenant, user and roles are limited to a safe alphabet, so a compromised
 * store or login service cannot inject headers through moat.
 */
#ifndef MOAT_SESSION_H
#define MOAT_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http1.h"

struct config_sessions;
struct session_identity;
struct redisReply;

enum session_status {
    SESSION_OK = 0,
    SESSION_MISSING,   /* no token in the request */
    SESSION_MALFORMED, /* wrong length or alphabet: rejected before Redis */
    SESSION_UNKNOWN,   /* no such session in Redis */
    SESSION_EXPIRED,   /* exp in the past */
    SESSION_INVALID,   /* the stored session is malformed (fail closed) */
    SESSION_MFA,       /* valid, but the route needs MFA */
};

const char *session_status_str(enum session_status s);

/*
 * Finds the token: Authorization: Bearer (if cfg->bearer) first, else the
 * cookie named cfg->cookie. Returns SESSION_OK with *token set, SESSION_MISSING
 * or SESSION_MALFORMED (present but of the wrong shape, or sent twice with
 * different values).
 */
enum session_status session_token_find(const struct config_sessions *cfg,
                                       const struct http1_header *h, size_t n,
                                       struct http1_str *token);

/* sha256(token) as 32 bytes and as 64 lowercase hex characters (+ NUL). */
void session_token_hash(struct http1_str token, uint8_t sha[32], char hex[65]);

/*
 * Parses an HGETALL reply into id. now: unix seconds. Returns SESSION_OK,
 * SESSION_UNKNOWN (empty), SESSION_EXPIRED or SESSION_INVALID; *exp gets the
 * session's expiry (0 if none). On SESSION_INVALID, id->invalid_field names the
 * field at fault ("tenant", "user", "mfa", "exp", "roles"; "record" when the
 * reply is not a hash), otherwise it is NULL. The record contract (alphabet,
 * lengths, exp in seconds up to year 9999) is docs/sessions.md.
 */
enum session_status session_parse_reply(const struct redisReply *reply, int64_t now,
                                        struct session_identity *id, int64_t *exp);

/* True if s is usable as a header value for tenant / user / roles. */
bool session_value_ok(const char *s, size_t len, bool allow_comma);

#endif
