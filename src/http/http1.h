/*
 * http1: a strict, incremental HTTP/1.1 parser and serializer helpers. No I/O.
 *
 * Contract (picohttpparser style): the caller owns the bytes. A message head is
 * first located with http1_head_scan(), which is resumable at any byte and keeps
 * its position in a small state struct, so a slowloris peer dribbling bytes costs
 * O(n) in total. Once the whole head is present it is parsed in one pass by
 * http1_parse_request() / http1_parse_response(), which return views (pointer +
 * length) into the caller's buffer: nothing is copied or allocated.
 *
 * Bodies are framed by the caller from the parsed head (Content-Length or
 * chunked); chunked bodies are decoded by http1_chunked_step(), again resumable
 * at any byte.
 *
 * Everything a request smuggler could use is an error here, never a guess:
 * CL together with TE, differing duplicate CL, any transfer coding but a final
 * chunked, obs-fold, bare CR or LF, NUL and control characters, oversize input.
 */
#ifndef MOAT_HTTP1_H
#define MOAT_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HTTP1_MAX_HEADERS_CAP 256            /* hard upper bound for limits.max_headers */
#define HTTP1_DEFAULT_MAX_HEADER_BYTES 16384 /* used when a byte limit is 0 */
#define HTTP1_DEFAULT_MAX_HEADERS 100        /* used when limits.max_headers is 0 */
#define HTTP1_DEFAULT_MAX_TRAILER_BYTES 8192 /* used when max_trailer_bytes is 0 */
#define HTTP1_CHUNK_LINE_MAX 4096            /* chunk-size line, extensions included */

struct http1_limits {
    size_t max_header_bytes; /* whole head, request line included */
    size_t max_headers;      /* number of header fields, <= HTTP1_MAX_HEADERS_CAP */
};

struct http1_str {
    const char *p;
    size_t len;
};

struct http1_header {
    struct http1_str name;  /* as received (case preserved), no surrounding space */
    struct http1_str value; /* leading/trailing OWS removed */
};

enum http1_body_kind {
    HTTP1_BODY_NONE = 0,    /* no body (no CL/TE on a request; HEAD/1xx/204/304 responses) */
    HTTP1_BODY_LENGTH,      /* Content-Length bytes follow */
    HTTP1_BODY_CHUNKED,     /* chunked transfer coding */
    HTTP1_BODY_UNTIL_CLOSE, /* responses only: body ends when the upstream closes */
};

enum http1_method {
    HTTP1_M_OTHER = 0,
    HTTP1_M_GET,
    HTTP1_M_HEAD,
    HTTP1_M_POST,
    HTTP1_M_PUT,
    HTTP1_M_DELETE,
    HTTP1_M_PATCH,
    HTTP1_M_OPTIONS,
    HTTP1_M_CONNECT,
    HTTP1_M_TRACE,
};

/* Framing and connection facts every consumer needs, derived once by the parser. */
struct http1_framing {
    enum http1_body_kind body;
    uint64_t content_length; /* valid when body == HTTP1_BODY_LENGTH */
    bool keep_alive;         /* after Connection tokens and version defaults */
    bool upgrade_websocket;  /* Connection: upgrade + Upgrade: websocket */
    bool expect_continue;    /* Expect: 100-continue */
};

struct http1_request {
    struct http1_str method;
    enum http1_method method_id;
    struct http1_str target; /* origin-form "/path?query" (or authority-form for CONNECT) */
    struct http1_str path;   /* target up to '?' */
    struct http1_str query;  /* after '?', without it; len 0 if none */
    int minor_version;       /* 0 or 1 */
    struct http1_str host;   /* Host header value, port included if sent; len 0 if absent */
    struct http1_framing framing;
    size_t num_headers;
    struct http1_header headers[HTTP1_MAX_HEADERS_CAP];
};

struct http1_response {
    int minor_version;
    int status; /* 100..999 */
    struct http1_str reason;
    struct http1_framing framing;
    size_t num_headers;
    struct http1_header headers[HTTP1_MAX_HEADERS_CAP];
};

/* Scanner state for locating the end of a head; zero it before the first call. */
struct http1_scan {
    size_t offset;  /* bytes already examined */
    unsigned state; /* internal */
};

/*
 * Looks for the end of the head ("\r\n\r\n") in buf[0..len), resuming at
 * scan->offset. Leading empty lines before a request line are NOT tolerated.
 * Returns the head length (including the final CRLFCRLF) when complete,
 * 0 when more bytes are needed, -1 on error with *status set:
 * 431 when the head exceeds max_bytes, 400 on a bare CR/LF, NUL or other byte
 * that can never be valid in a head.
 * buf must hold the same bytes as on earlier calls (the caller appends), len
 * may grow between calls. max_bytes 0 means HTTP1_DEFAULT_MAX_HEADER_BYTES.
 * Once complete or failed, further calls return the same result.
 */
ssize_t http1_head_scan(struct http1_scan *scan, const char *buf, size_t len, size_t max_bytes,
                        int *status);

/*
 * Parses a complete request head of length len (as returned by http1_head_scan).
 * Returns 0 on success. On error returns -1, sets *status (400, 431, 501 for an
 * unknown transfer coding, 505 for a version other than 1.0/1.1) and *err to a
 * static message.
 *
 * Status codes: 431 head larger than max_header_bytes or more than max_headers
 * fields; 505 well-formed version other than HTTP/1.0 and HTTP/1.1; 501 a
 * transfer coding before the final "chunked" ("gzip, chunked"); 417 an Expect
 * other than 100-continue on HTTP/1.1; 400 everything else, including
 * absolute-form targets, TE not ending in a single "chunked", TE with CL, TE on
 * HTTP/1.0, differing or malformed Content-Length, missing/duplicate/invalid
 * Host. lim may be NULL; zero fields take the HTTP1_DEFAULT_* values. The views
 * in *out point into buf. On success, framing.body says how the body is framed:
 * forward it from framing, not from the received CL/TE fields.
 */
int http1_parse_request(const char *buf, size_t len, const struct http1_limits *lim,
                        struct http1_request *out, int *status, const char **err);

/*
 * Parses a complete response head. request_method is the method of the request
 * it answers (HEAD responses and 1xx/204/304 have no body; a 2xx answer to
 * CONNECT neither). Returns 0 or -1 with *err.
 * Refused (the caller answers 502): CL with TE, TE on HTTP/1.0, "chunked"
 * twice, malformed CL, obs-fold and the other head errors. TE whose final
 * coding is not chunked => HTTP1_BODY_UNTIL_CLOSE (RFC 9112 6.3).
 * keep_alive is false whenever the body is HTTP1_BODY_UNTIL_CLOSE.
 */
int http1_parse_response(const char *buf, size_t len, const struct http1_limits *lim,
                         enum http1_method request_method, struct http1_response *out,
                         const char **err);

/* Case-insensitive comparison of a received token with a literal. */
bool http1_str_ieq(struct http1_str s, const char *lit);

/* Finds the first header with this name (case-insensitive); NULL if none. */
const struct http1_header *http1_find_header(const struct http1_header *h, size_t n,
                                             const char *name);

/* Returns true if the comma-separated header value contains token (case-insensitive). */
bool http1_value_has_token(struct http1_str value, const char *token);

/* ---- chunked transfer coding -------------------------------------------- */

enum http1_chunk_result {
    HTTP1_CHUNK_NEED_MORE = 0, /* all of the input was framing; feed more */
    HTTP1_CHUNK_DATA,          /* *data_len payload bytes follow at in + *consumed */
    HTTP1_CHUNK_DONE,          /* last-chunk and trailers consumed; message complete */
    HTTP1_CHUNK_ERROR,
};

struct http1_chunked {
    uint64_t remaining; /* payload bytes left in the current chunk */
    unsigned state;     /* internal */
    size_t line_len;    /* bytes in the current size/trailer line, bounded */
    size_t trailer_bytes;
    size_t max_trailer_bytes; /* set by caller before use; 0 means 8192 */
};

/*
 * Advances the decoder over framing bytes of in[0..len).
 * *consumed is set to the number of framing bytes the caller must drop.
 * On HTTP1_CHUNK_DATA, the next min(*data_len, available) bytes after those are
 * payload: the caller moves them wherever they go and then reports how many with
 * http1_chunked_data_done(). Trailer fields are parsed for validity and dropped
 * (they would otherwise be a way to smuggle identity headers past moat).
 * Zero the struct (then set max_trailer_bytes) before the first call.
 * On HTTP1_CHUNK_DONE, *consumed includes the final CRLF; bytes after it belong
 * to the next message. On HTTP1_CHUNK_ERROR, *consumed is the offset of the
 * offending byte and the decoder stays failed. Calling step while in DATA
 * returns DATA again with *consumed 0: wait for input when none is available.
 * Stricter than RFC 9112 7.1.1: no BWS around ';' / '=' in extensions.
 * A chunk-size above INT64_MAX is an error.
 */
enum http1_chunk_result http1_chunked_step(struct http1_chunked *c, const char *in, size_t len,
                                           size_t *consumed, uint64_t *data_len, const char **err);
void http1_chunked_data_done(struct http1_chunked *c, uint64_t n);

/* Name of the decoder's current state, for logs ("size", "data", "trailer-name"...). */
const char *http1_chunked_state_str(const struct http1_chunked *c);

/* Standard reason phrase for a status code ("Unknown" if none). */
const char *http1_reason(int status);
/* The value of a hex digit, or -1. */
int http1_hex_digit(unsigned char c);

#endif
