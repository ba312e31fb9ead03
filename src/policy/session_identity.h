/*
 * session_identity: what the auth phase learned from the session, kept in the
 * request for the phases after it (rate limits by tenant, identity headers,
 * tenant routing, the access log). Empty strings when anonymous.
 */
#ifndef MOAT_SESSION_IDENTITY_H
#define MOAT_SESSION_IDENTITY_H

#include <stdbool.h>
#include <stdint.h>

#define SESSION_FIELD_MAX 128

struct session_identity {
    bool authenticated;
    bool mfa;
    char tenant[SESSION_FIELD_MAX];
    char user[SESSION_FIELD_MAX];
    char roles[SESSION_FIELD_MAX];
    int64_t exp; /* session end (unix seconds), 0 if none */
    /* SESSION_INVALID only: the record's field that failed ("exp", "tenant", ...,
     * or "record" when the reply is not a hash), a static string; else NULL */
    const char *invalid_field;
    char token_hash[65]; /* hex sha256 of the token, for session rate limits */
    uint8_t token_sha[32];
};

#endif
