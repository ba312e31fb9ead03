#include "policy/trace.h"

#include <string.h>

#include <openssl/rand.h>

#include "core/snapshot.h"
#include "http/headername.h"
#include "http/request.h"
#include "http/traceparent.h"
#include "util/netutil.h"

/* Flags of a trace moat starts: "sampled", so that an app's parent-based sampler
 * (OpenTelemetry's default) records the request moat logged. */
#define TRACE_FLAGS_NEW 0x01

static bool peer_trusted(const struct request *r)
{
    const struct snapshot *snap = r->snap;
    return snap->num_trusted &&
           netutil_cidr_match(snap->trusted, snap->num_trusted, &r->peer->addr.sa);
}

/*
 * Random bytes drawn from OpenSSL in batches, per worker thread: a RAND_bytes()
 * call costs ~1 µs of provider lookup, locking and a getpid() (5 % of moat's CPU
 * per 16 KiB response, more for small ones), the bytes themselves next to
 * nothing. The only fork() (binary upgrade) execs at once: no child reuses them.
 */
#define RANDOM_BATCH 512
static _Thread_local struct {
    uint8_t b[RANDOM_BATCH];
    size_t left;
} batch;

static int random_bytes(uint8_t *out, size_t n)
{
    if (batch.left < n) {
        if (RAND_bytes(batch.b, (int)sizeof batch.b) != 1)
            return -1;
        batch.left = sizeof batch.b;
    }
    memcpy(out, batch.b + sizeof batch.b - batch.left, n);
    batch.left -= n;
    return 0;
}

/* nbytes (at most 16) random bytes as hex into out, never all zeros (an invalid id). */
static int random_id(char *out, size_t nbytes)
{
    uint8_t b[16];
    for (;;) {
        if (random_bytes(b, nbytes) != 0)
            return -1;
        uint8_t any = 0;
        for (size_t i = 0; i < nbytes; i++)
            any |= b[i];
        if (any)
            break;
    }
    traceparent_hex(b, nbytes, out);
    return 0;
}

/*
 * Marks every traceparent/tracestate field (and look-alikes) as dropped, and
 * returns the one traceparent a trusted peer may continue (NULL if none, or
 * several: a repeated traceparent is invalid). *state_len is the total length of
 * the exactly named tracestate fields.
 */
static const struct http1_header *take_fields(struct request *r, size_t *state_len)
{
    const struct http1_header *parent = NULL;
    int parents = 0;
    *state_len = 0;
    for (size_t i = 0; i < r->h.num_headers; i++) {
        struct http1_str n = r->h.headers[i].name;
        if (headername_eq_loose(n, "traceparent")) {
            r->hflags[i] |= HFLAG_DROP;
            if (http1_str_ieq(n, "traceparent") && parents++ == 0)
                parent = &r->h.headers[i];
        } else if (headername_eq_loose(n, "tracestate")) {
            r->hflags[i] |= HFLAG_DROP;
            if (http1_str_ieq(n, "tracestate"))
                *state_len += r->h.headers[i].value.len + 1;
        }
    }
    return parents == 1 ? parent : NULL;
}

/* Forwards the tracestate fields as received (the drop flag taken back). */
static void keep_tracestate(struct request *r)
{
    for (size_t i = 0; i < r->h.num_headers; i++)
        if (http1_str_ieq(r->h.headers[i].name, "tracestate"))
            r->hflags[i] &= (uint8_t)~HFLAG_DROP;
}

enum phase_result trace_phase(struct request *r)
{
    size_t state_len;
    const struct http1_header *h = take_fields(r, &state_len);
    struct traceparent in;
    bool cont = h && peer_trusted(r) && traceparent_parse(h->value.p, h->value.len, &in);
    char span[TRACE_SPAN_HEX + 1];
    uint8_t flags = TRACE_FLAGS_NEW;
    if (random_id(span, TRACE_SPAN_HEX / 2) < 0 ||
        (!cont && random_id(r->trace_id, TRACE_ID_HEX / 2) < 0)) {
        r->error = "no randomness for a trace id";
        request_respond(r, 500, NULL, NULL, false);
        return PHASE_RESPOND;
    }
    if (cont) {
        memcpy(r->trace_id, in.trace_id, sizeof r->trace_id);
        flags = in.flags;
        if (state_len && state_len <= TRACESTATE_MAX)
            keep_tracestate(r);
    }
    char value[TRACEPARENT_LEN + 1];
    size_t n = traceparent_format(r->trace_id, span, flags, value);
    if (request_add_header(r, "traceparent", value, n) < 0) {
        r->error = "trace headers too large";
        request_respond(r, 431, NULL, NULL, false);
        return PHASE_RESPOND;
    }
    return PHASE_CONTINUE;
}
