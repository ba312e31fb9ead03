#include "http/request.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Free requests kept per worker: enough for a busy worker's in-flight set. */
#define REQUEST_FREE_MAX 256

/* The storage request_new() keeps must come before what it clears. */
#define FIRST_CLEARED stream
_Static_assert(offsetof(struct request, next_free) < offsetof(struct request, FIRST_CLEARED) &&
                   offsetof(struct request, head_buf) < offsetof(struct request, FIRST_CLEARED) &&
                   offsetof(struct request, head_cap) < offsetof(struct request, FIRST_CLEARED) &&
                   offsetof(struct request, hflags) < offsetof(struct request, FIRST_CLEARED),
               "struct request: kept storage must precede the cleared part");

static struct request *take(struct request_pool *pool, size_t cap)
{
    struct request *r = pool->free;
    if (r && r->head_cap >= cap) {
        pool->free = r->next_free;
        pool->num_free--;
        return r;
    }
    r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->head_buf = malloc(cap);
    if (!r->head_buf) {
        free(r);
        return NULL;
    }
    r->head_cap = cap;
    return r;
}

struct request *request_new(struct request_pool *pool, size_t head_cap)
{
    struct request *r = take(pool, head_cap);
    if (!r)
        return NULL;
    r->next_free = NULL;
    /* the header table (20 KiB) is filled by the parser: only the fixed part is cleared */
    memset(&r->h, 0, offsetof(struct http1_request, headers));
    memset(&r->FIRST_CLEARED, 0, sizeof *r - offsetof(struct request, FIRST_CLEARED));
    clock_gettime(CLOCK_MONOTONIC, &r->t_start);
    return r;
}

void request_free(struct request_pool *pool, struct request *r)
{
    if (!r)
        return;
    if (pool->num_free < REQUEST_FREE_MAX) {
        r->next_free = pool->free;
        pool->free = r;
        pool->num_free++;
        return;
    }
    free(r->head_buf);
    free(r);
}

void request_pool_trim(struct request_pool *pool, size_t keep)
{
    while (pool->num_free > keep && pool->free) {
        struct request *r = pool->free;
        pool->free = r->next_free;
        pool->num_free--;
        free(r->head_buf);
        free(r);
    }
}

void request_pool_clear(struct request_pool *pool)
{
    request_pool_trim(pool, 0);
}

void request_head_parsed(struct request *r)
{
    memset(r->hflags, 0, r->h.num_headers);
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
