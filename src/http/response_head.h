/*
 * response_head: an upstream response as the client side needs it to frame
 * the answer in its own protocol. The fields themselves are written by the
 * proxy as "Name: value\r\n" lines into the buffer the stream hands out
 * (client_stream.h: head_begin/head_end); this is the rest.
 */
#ifndef MOAT_RESPONSE_HEAD_H
#define MOAT_RESPONSE_HEAD_H

#include <stdint.h>

#include "http/http1.h"

struct response_head {
    int status;
    struct http1_str reason;   /* the upstream's reason phrase; empty: the standard one */
    enum http1_body_kind body; /* how the upstream delimits the payload */
    uint64_t content_length;   /* with HTTP1_BODY_LENGTH */
    struct http1_str codings;  /* transfer codings applied under chunked ("gzip"), or empty */
    struct http1_str upgrade;  /* a 101's Upgrade value */
};

#endif
