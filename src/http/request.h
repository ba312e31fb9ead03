/*
 * request: one HTTP request/response exchange on a client connection, from the
 * parsed head to the last byte of the response. Objects are recycled through a
 * per-worker free list so the hot path does not call malloc, and an idle
 * keep-alive connection holds none.
 */
#ifndef MOAT_REQUEST_H
#define MOAT_REQUEST_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "http/http1.h"

struct conn;
struct worker;
struct config_route;
struct config_upstream;
struct upstream_conn;

#define REQUEST_ID_LEN 32
#define REQUEST_ADD_HEADERS_MAX 2048
#define SESSION_FIELD_MAX 128

/* What the auth phase learned from the session; empty strings when anonymous. */
struct session_identity {
    bool authenticated;
    bool mfa;
    char tenant[SESSION_FIELD_MAX];
    char user[SESSION_FIELD_MAX];
    char roles[SESSION_FIELD_MAX];
    int64_t exp;         /* session end (unix seconds), 0 if none */
    char token_hash[65]; /* hex sha256 of the token, for session rate limits */
    uint8_t token_sha[32];
};

/* Flags per received header, set by phases that decide what is forwarded. */
enum request_hflag {
    HFLAG_DROP = 1 << 0,
};

struct request {
    struct conn *conn;
    struct request *next_free;

    /* the head as received, owned copy; h's views point into it */
    char *head_buf;
    size_t head_cap;
    size_t head_len;
    struct http1_request h;
    uint8_t hflags[HTTP1_MAX_HEADERS_CAP];

    char id[REQUEST_ID_LEN + 1];
    unsigned phase; /* index of the next phase to run */
    bool suspended;

    const struct config_route *route;
    const struct config_upstream *upstream;
    struct session_identity ident;
    void *pending; /* an outstanding async operation (e.g. redis) */
    void (*cancel_pending)(struct request *);
    uint64_t auth_epoch; /* auth_cache epoch when the session lookup started */

    /* rate limiting (ratelimit.c): next rule to evaluate, the most restrictive verdict */
    unsigned rl_next;
    bool rl_post_auth;
    bool rl_have;
    const void *rl_rule; /* const struct config_rate_rule * */
    uint64_t rl_remaining;
    uint64_t rl_reset_ms;

    /* headers to append to the forwarded head: "Name: value\r\n" lines */
    char add_headers[REQUEST_ADD_HEADERS_MAX];
    size_t add_len;
    /* headers to append to the response to the client */
    char resp_headers[512];
    size_t resp_headers_len;

    /* proxy state (proxy.c) */
    struct upstream_conn *uc;
    unsigned attempts;
    bool req_body_done; /* whole request body forwarded */
    bool resp_head_done;
    bool resp_done;
    bool tunnel;
    bool close_after;              /* framing makes the connection unusable afterwards */
    bool head_sent;                /* request head written to an upstream */
    bool up_keep_alive;            /* the upstream allows reusing its connection */
    bool resp_started;             /* at least one response byte queued to the client */
    enum http1_body_kind resp_in;  /* framing of the upstream response body */
    enum http1_body_kind resp_out; /* framing moat uses towards the client */
    uint64_t req_remaining;
    uint64_t resp_remaining;
    struct http1_chunked req_chunk;
    struct http1_chunked resp_chunk;
    struct http1_scan resp_scan;
    int resp_status;

    /* accounting for the access log */
    struct timespec t_start;
    struct timespec t_upstream_start;
    double upstream_ms;
    uint64_t bytes_in;      /* head + body bytes from the client */
    uint64_t bytes_out;     /* bytes written to the client */
    uint64_t body_received; /* request body payload bytes so far */
    int status;
    const char *error; /* short reason for a moat-made response */
    char upstream_addr[64];
    bool logged;
};

struct request *request_new(struct worker *w, struct conn *c);
void request_free(struct worker *w, struct request *r);
void request_free_list_clear(struct worker *w);
/* Frees kept requests beyond `keep` (~20 KiB each): after a burst, the worker's housekeeping. */
void request_free_list_trim(struct worker *w, size_t keep);

/* Appends "name: value\r\n" to the forwarded extra headers; -1 if it does not fit. */
int request_add_header(struct request *r, const char *name, const char *value, size_t vlen);
/* Appends complete "Name: value\r\n" lines to the response headers moat adds; -1 if they do not
 * fit. */
int request_add_response_lines(struct request *r, const char *lines);

/* Milliseconds between two monotonic timestamps. */
double request_ms_between(const struct timespec *a, const struct timespec *b);

#endif
