/*
 * http1_chunked: the chunked transfer coding (RFC 9112 §7.1), decoded one byte
 * at a time so that it resumes at any split; extensions and trailers are
 * checked against the grammar and bounded (see http1.h).
 */
#include "http/http1.h"

#include <string.h>

#include "http/http1_bytes.h"

enum chunk_state {
    CK_SIZE_START = 0, /* first hex digit of a chunk-size */
    CK_SIZE,
    CK_EXT_NAME_START, /* after ';' */
    CK_EXT_NAME,
    CK_EXT_VAL_START, /* after '=' */
    CK_EXT_TOKEN,
    CK_EXT_QS, /* inside a quoted-string */
    CK_EXT_QP, /* after '\' in a quoted-string */
    CK_EXT_QS_END,
    CK_SIZE_LF, /* CR seen at the end of the chunk line */
    CK_DATA,
    CK_DATA_CR, /* payload done, CRLF must follow */
    CK_DATA_LF,
    CK_TR_START, /* start of a trailer line (or of the final CRLF) */
    CK_TR_NAME,
    CK_TR_VALUE,
    CK_TR_LF,
    CK_END_LF,
    CK_DONE,
    CK_ERROR,
};

const char *http1_chunked_state_str(const struct http1_chunked *c)
{
    static const char *const names[] = {
        [CK_SIZE_START] = "size-start",
        [CK_SIZE] = "size",
        [CK_EXT_NAME_START] = "ext-name-start",
        [CK_EXT_NAME] = "ext-name",
        [CK_EXT_VAL_START] = "ext-val-start",
        [CK_EXT_TOKEN] = "ext-token",
        [CK_EXT_QS] = "ext-quoted",
        [CK_EXT_QP] = "ext-quoted-pair",
        [CK_EXT_QS_END] = "ext-quoted-end",
        [CK_SIZE_LF] = "size-lf",
        [CK_DATA] = "data",
        [CK_DATA_CR] = "data-cr",
        [CK_DATA_LF] = "data-lf",
        [CK_TR_START] = "trailer-start",
        [CK_TR_NAME] = "trailer-name",
        [CK_TR_VALUE] = "trailer-value",
        [CK_TR_LF] = "trailer-lf",
        [CK_END_LF] = "end-lf",
        [CK_DONE] = "done",
        [CK_ERROR] = "error",
    };
    return c->state < sizeof(names) / sizeof(names[0]) ? names[c->state] : "invalid";
}

/* After ';' names, '=' values or a closing quote: what may end an extension. */
static const char *ext_next(struct http1_chunked *c, unsigned char ch)
{
    if (ch == ';')
        c->state = CK_EXT_NAME_START;
    else if (ch == '\r')
        c->state = CK_SIZE_LF;
    else
        return "invalid chunk extension";
    return NULL;
}

/* chunk-ext = *( ";" name [ "=" ( token / quoted-string ) ] ), no BWS. */
static const char *chunk_ext_byte(struct http1_chunked *c, unsigned char ch)
{
    bool t = HAS(ch, CT_TCHAR);
    switch (c->state) {
    case CK_EXT_NAME_START:
        if (!t)
            return "invalid chunk extension name";
        c->state = CK_EXT_NAME;
        return NULL;
    case CK_EXT_NAME:
        if (t)
            return NULL;
        if (ch == '=') {
            c->state = CK_EXT_VAL_START;
            return NULL;
        }
        return ext_next(c, ch);
    case CK_EXT_VAL_START:
        if (!t && ch != '"')
            return "invalid chunk extension value";
        c->state = t ? CK_EXT_TOKEN : CK_EXT_QS;
        return NULL;
    case CK_EXT_TOKEN:
        return t ? NULL : ext_next(c, ch);
    case CK_EXT_QS:
        if (ch == '"')
            c->state = CK_EXT_QS_END;
        else if (ch == '\\')
            c->state = CK_EXT_QP;
        else if (!HAS(ch, CT_FIELD))
            return "invalid character in chunk extension";
        return NULL;
    case CK_EXT_QP:
        if (!HAS(ch, CT_FIELD))
            return "invalid character in chunk extension";
        c->state = CK_EXT_QS;
        return NULL;
    default: /* CK_EXT_QS_END */
        return ext_next(c, ch);
    }
}

/* One byte of "chunk-size [ext] CRLF"; the size accumulates in c->remaining. */
static const char *chunk_line_byte(struct http1_chunked *c, unsigned char ch)
{
    if (++c->line_len > HTTP1_CHUNK_LINE_MAX)
        return "chunk line too long";
    if (c->state == CK_SIZE_START || c->state == CK_SIZE) {
        int v = http1_hexval[ch];
        if (v >= 0) {
            if (c->remaining >> 59) /* one more digit would pass INT64_MAX */
                return "chunk size too large";
            c->remaining = c->remaining << 4 | (uint64_t)v;
            c->state = CK_SIZE;
            return NULL;
        }
        if (c->state == CK_SIZE_START)
            return "missing chunk size";
        return ext_next(c, ch) ? "invalid character after chunk size" : NULL;
    }
    if (c->state != CK_SIZE_LF)
        return chunk_ext_byte(c, ch);
    if (ch != '\n')
        return "bare CR in chunk line";
    c->line_len = 0;
    c->state = c->remaining ? CK_DATA : CK_TR_START;
    return NULL;
}

/* The CRLF after chunk data: exactly that, or the stream is not what it claims. */
static const char *chunk_data_end_byte(struct http1_chunked *c, unsigned char ch)
{
    if (c->state == CK_DATA_CR) {
        if (ch != '\r')
            return "missing CRLF after chunk data";
        c->state = CK_DATA_LF;
        return NULL;
    }
    if (ch != '\n')
        return "missing CRLF after chunk data";
    c->state = CK_SIZE_START;
    c->remaining = 0;
    c->line_len = 0;
    return NULL;
}

/* Trailer section: validated like header fields, bounded, then dropped. */
static const char *chunk_trailer_byte(struct http1_chunked *c, unsigned char ch)
{
    size_t max = c->max_trailer_bytes ? c->max_trailer_bytes : HTTP1_DEFAULT_MAX_TRAILER_BYTES;
    if (++c->trailer_bytes > max)
        return "trailer section too large";
    switch (c->state) {
    case CK_TR_START:
        if (ch == '\r')
            c->state = CK_END_LF;
        else if (HAS(ch, CT_TCHAR))
            c->state = CK_TR_NAME;
        else
            return IS_OWS(ch) ? "obs-fold in trailer" : "invalid trailer field name";
        return NULL;
    case CK_TR_NAME:
        if (ch == ':')
            c->state = CK_TR_VALUE;
        else if (!HAS(ch, CT_TCHAR))
            return "invalid trailer field name";
        return NULL;
    case CK_TR_VALUE:
        if (ch == '\r')
            c->state = CK_TR_LF;
        else if (!HAS(ch, CT_FIELD))
            return "invalid character in trailer value";
        return NULL;
    default: /* CK_TR_LF, CK_END_LF */
        if (ch != '\n')
            return "bare CR in trailer";
        c->state = c->state == CK_TR_LF ? CK_TR_START : CK_DONE;
        return NULL;
    }
}

enum http1_chunk_result http1_chunked_step(struct http1_chunked *c, const char *in, size_t len,
                                           size_t *consumed, uint64_t *data_len, const char **err)
{
    size_t i = 0;
    *consumed = 0;
    *data_len = 0;
    *err = NULL;
    while (c->state != CK_DATA && c->state != CK_DONE) {
        if (c->state == CK_ERROR) {
            *err = "chunked decoder already failed";
            return HTTP1_CHUNK_ERROR;
        }
        if (i == len) {
            *consumed = len;
            return HTTP1_CHUNK_NEED_MORE;
        }
        unsigned char ch = (unsigned char)in[i++];
        const char *e;
        if (c->state <= CK_SIZE_LF)
            e = chunk_line_byte(c, ch);
        else if (c->state <= CK_DATA_LF)
            e = chunk_data_end_byte(c, ch);
        else
            e = chunk_trailer_byte(c, ch);
        if (e) {
            c->state = CK_ERROR;
            *consumed = i - 1;
            *err = e;
            return HTTP1_CHUNK_ERROR;
        }
    }
    *consumed = i;
    if (c->state == CK_DONE)
        return HTTP1_CHUNK_DONE;
    *data_len = c->remaining;
    return HTTP1_CHUNK_DATA;
}

void http1_chunked_data_done(struct http1_chunked *c, uint64_t n)
{
    if (c->state != CK_DATA)
        return;
    c->remaining -= n < c->remaining ? n : c->remaining;
    if (c->remaining == 0)
        c->state = CK_DATA_CR;
}
