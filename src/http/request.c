#include "http/request.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "http/conn.h"
#include "core/snapshot.h"
#include "core/worker.h"

/* Free requests kept per worker: enough for a busy worker's in-flight set. */
#define REQUEST_FREE_MAX 256

struct request *request_new(struct worker *w, struct conn *c)
{
    const struct config *cfg = c->gen->snap->cfg;
    size_t cap = cfg->limits.max_header_bytes;
    struct request *r = w->free_reqs;
    if (r && r->head_cap >= cap) {
        w->free_reqs = r->next_free;
        w->num_free_reqs--;
    } else {
        r = calloc(1, sizeof *r);
        if (!r)
            return NULL;
        r->head_buf = malloc(cap);
        if (!r->head_buf) {
            free(r);
            return NULL;
        }
        r->head_cap = cap;
    }
    char *buf = r->head_buf;
    size_t bufcap = r->head_cap;
    /* Only the fields before the big header table need clearing. */
    memset(r, 0, offsetof(struct request, h));
    memset(&r->id, 0, sizeof *r - offsetof(struct request, id));
    r->head_buf = buf;
    r->head_cap = bufcap;
    r->conn = c;
    memset(&r->h, 0, offsetof(struct http1_request, headers));
    clock_gettime(CLOCK_MONOTONIC, &r->t_start);
    worker_request_id(w, r->id);
    return r;
}

void request_free(struct worker *w, struct request *r)
{
    if (!r)
        return;
    if (w->num_free_reqs < REQUEST_FREE_MAX) {
        r->next_free = w->free_reqs;
        w->free_reqs = r;
        w->num_free_reqs++;
        return;
    }
    free(r->head_buf);
    free(r);
}

void request_free_list_trim(struct worker *w, size_t keep)
{
    while (w->num_free_reqs > keep && w->free_reqs) {
        struct request *r = w->free_reqs;
        w->free_reqs = r->next_free;
        w->num_free_reqs--;
        free(r->head_buf);
        free(r);
    }
}

void request_free_list_clear(struct worker *w)
{
    request_free_list_trim(w, 0);
}

static int append_line(char *buf, size_t cap, size_t *len, const char *name, const char *value,
                       size_t vlen)
{
    size_t nlen = strlen(name);
    if (*len + nlen + 2 + vlen + 2 > cap)
        return -1;
    memcpy(buf + *len, name, nlen);
    memcpy(buf + *len + nlen, ": ", 2);
    memcpy(buf + *len + nlen + 2, value, vlen);
    memcpy(buf + *len + nlen + 2 + vlen, "\r\n", 2);
    *len += nlen + 2 + vlen + 2;
    return 0;
}

int request_add_header(struct request *r, const char *name, const char *value, size_t vlen)
{
    return append_line(r->add_headers, sizeof r->add_headers, &r->add_len, name, value, vlen);
}

int request_add_response_lines(struct request *r, const char *lines)
{
    size_t n = strlen(lines);
    if (r->resp_headers_len + n > sizeof r->resp_headers)
        return -1;
    memcpy(r->resp_headers + r->resp_headers_len, lines, n);
    r->resp_headers_len += n;
    return 0;
}

double request_ms_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}
