#include "observe/syslog_queue.h"

#include <stdlib.h>
#include <string.h>

/* Header layout: u32 length, u8 stream, 3 bytes zero, i64 time (host order: the spool
 * is read back only by this host). */
void syslog_rec_encode(char *out, enum syslog_stream st, int64_t time_us, const char *line,
                       size_t len)
{
    uint32_t n = (uint32_t)len;
    memcpy(out, &n, 4);
    out[4] = (char)st;
    memset(out + 5, 0, 3);
    memcpy(out + 8, &time_us, 8);
    memcpy(out + SYSLOG_REC_HDR, line, len);
}

long syslog_rec_decode(const char *p, size_t avail, struct syslog_rec *out)
{
    if (avail < SYSLOG_REC_HDR)
        return 0;
    uint32_t n;
    memcpy(&n, p, 4);
    if (n == 0 || n > SYSLOG_LINE_MAX || (unsigned char)p[4] >= SYSLOG_NSTREAMS || p[5] || p[6] ||
        p[7])
        return -1;
    if (avail < SYSLOG_REC_HDR + (size_t)n)
        return 0;
    out->stream = (enum syslog_stream)p[4];
    memcpy(&out->time_us, p + 8, 8);
    out->line = p + SYSLOG_REC_HDR;
    out->len = n;
    return (long)(SYSLOG_REC_HDR + n);
}

/* The length of the next line of p[0..len) and where the one after starts. */
static size_t line_at(const char *p, size_t len, size_t *next)
{
    const char *nl = memchr(p, '\n', len);
    size_t n = nl ? (size_t)(nl - p) : len;
    *next = nl ? n + 1 : len;
    return n;
}

struct syslog_chunk *syslog_chunk_from_lines(enum syslog_stream st, int64_t time_us,
                                             const char *buf, size_t len, size_t *lines)
{
    size_t need = 0, count = 0, step;
    for (size_t i = 0; i < len; i += step) {
        size_t n = line_at(buf + i, len - i, &step);
        if (n) {
            need += SYSLOG_REC_HDR + (n < SYSLOG_LINE_MAX ? n : SYSLOG_LINE_MAX);
            count++;
        }
    }
    *lines = count;
    struct syslog_chunk *c = count ? malloc(sizeof *c + need) : NULL;
    if (!c)
        return NULL;
    c->next = NULL;
    c->len = need;
    c->off = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i += step) {
        size_t n = line_at(buf + i, len - i, &step);
        if (!n)
            continue;
        n = n < SYSLOG_LINE_MAX ? n : SYSLOG_LINE_MAX; /* cut, as the file keeps it whole */
        syslog_rec_encode(c->data + o, st, time_us, buf + i, n);
        o += SYSLOG_REC_HDR + n;
    }
    return c;
}

int syslog_chunk_next(struct syslog_chunk *c, struct syslog_rec *out)
{
    long n = syslog_rec_decode(c->data + c->off, c->len - c->off, out);
    if (n <= 0)
        return 0; /* chunks are built whole: the end */
    c->off += (size_t)n;
    return 1;
}

void syslog_chunk_count(const struct syslog_chunk *c, uint64_t counts[SYSLOG_NSTREAMS])
{
    struct syslog_rec r;
    long n;
    for (size_t o = c->off; (n = syslog_rec_decode(c->data + o, c->len - o, &r)) > 0;
         o += (size_t)n)
        counts[r.stream]++;
}

void syslog_queue_init(struct syslog_queue *q, size_t max)
{
    pthread_mutex_init(&q->lock, NULL);
    q->head = q->tail = NULL;
    q->bytes = 0;
    q->max = max;
}

void syslog_queue_clear(struct syslog_queue *q)
{
    pthread_mutex_lock(&q->lock);
    for (struct syslog_chunk *c = q->head, *next; c; c = next) {
        next = c->next;
        q->bytes -= c->len;
        free(c);
    }
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->lock);
}

void syslog_queue_set_max(struct syslog_queue *q, size_t max)
{
    pthread_mutex_lock(&q->lock);
    q->max = max;
    pthread_mutex_unlock(&q->lock);
}

/* The bytes of c's leading whole records that fit in room; *cut counts the others. */
static size_t fitting_prefix(const struct syslog_chunk *c, size_t room, size_t *cut)
{
    size_t end = c->off;
    long n;
    struct syslog_rec r;
    *cut = 0;
    for (size_t o = c->off; (n = syslog_rec_decode(c->data + o, c->len - o, &r)) > 0;
         o += (size_t)n) {
        if (*cut == 0 && o + (size_t)n - c->off <= room)
            end = o + (size_t)n;
        else
            (*cut)++; /* and every later one: a gap would break the order */
    }
    return end - c->off;
}

int syslog_queue_push(struct syslog_queue *q, struct syslog_chunk *c, size_t *dropped)
{
    c->next = NULL;
    *dropped = 0;
    pthread_mutex_lock(&q->lock);
    size_t room = q->max > q->bytes ? q->max - q->bytes : 0;
    if (c->len - c->off > room) /* keep the oldest lines that fit; the newest are lost */
        c->len = c->off + fitting_prefix(c, room, dropped);
    int rc = c->len > c->off ? 0 : -1;
    if (rc == 0) {
        if (q->tail)
            q->tail->next = c;
        else
            q->head = c;
        q->tail = c;
        q->bytes += c->len;
    }
    pthread_mutex_unlock(&q->lock);
    return rc;
}

struct syslog_chunk *syslog_queue_take(struct syslog_queue *q)
{
    pthread_mutex_lock(&q->lock);
    struct syslog_chunk *list = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->lock);
    return list;
}

void syslog_queue_release(struct syslog_queue *q, size_t bytes)
{
    pthread_mutex_lock(&q->lock);
    q->bytes -= bytes < q->bytes ? bytes : q->bytes;
    pthread_mutex_unlock(&q->lock);
}

void syslog_queue_unshift(struct syslog_queue *q, struct syslog_chunk *list)
{
    if (!list)
        return;
    struct syslog_chunk *last = list;
    while (last->next)
        last = last->next;
    pthread_mutex_lock(&q->lock);
    last->next = q->head;
    q->head = list;
    if (!q->tail)
        q->tail = last;
    pthread_mutex_unlock(&q->lock);
}

size_t syslog_queue_bytes(struct syslog_queue *q)
{
    pthread_mutex_lock(&q->lock);
    size_t n = q->bytes;
    pthread_mutex_unlock(&q->lock);
    return n;
}
