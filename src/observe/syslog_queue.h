/*
 * syslog_queue: the bounded hand-off of log lines from the producers (the workers'
 * access-log flush, audit writers) to the syslog sender thread (docs/logging.md).
 *
 * Lines travel as records: a 16-byte header (length, stream, time) and the line
 * without its newline. A producer encodes its batch into one chunk outside the lock,
 * then takes the mutex only to append it: no producer ever waits for I/O. The same
 * record encoding is what the disk spool (syslog_spool.h) stores.
 *
 * The byte bound covers every record not yet released: those in the queue and those
 * the sender has taken but not yet sent or spooled. When a batch does not fit, its
 * oldest lines that do are kept and the rest is refused: the newest lines are the
 * ones lost.
 */
#ifndef MOAT_SYSLOG_QUEUE_H
#define MOAT_SYSLOG_QUEUE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

enum syslog_stream { SYSLOG_ACCESS = 0, SYSLOG_AUDIT = 1, SYSLOG_NSTREAMS };

#define SYSLOG_REC_HDR 16
/* Longest line kept; a longer one is cut (moat's lines are a few KiB at most). */
#define SYSLOG_LINE_MAX 65536

struct syslog_rec {
    enum syslog_stream stream;
    int64_t time_us; /* CLOCK_REALTIME when the line was handed over */
    const char *line;
    size_t len;
};

/* A run of encoded records; off is how far the sender has consumed it. */
struct syslog_chunk {
    struct syslog_chunk *next;
    size_t len;
    size_t off;
    char data[];
};

struct syslog_queue {
    pthread_mutex_t lock;
    struct syslog_chunk *head, *tail;
    size_t bytes; /* records not released yet (queued or held by the sender) */
    size_t max;
};

/* Decodes the record at p[0..avail): its size, 0 if p holds only part of one, -1 if
 * the bytes are not a record (a torn spool file). */
long syslog_rec_decode(const char *p, size_t avail, struct syslog_rec *out);

/* Encodes one record into out (SYSLOG_REC_HDR + len bytes). */
void syslog_rec_encode(char *out, enum syslog_stream st, int64_t time_us, const char *line,
                       size_t len);

/* The records of buf[0..len) split at '\n' (empty lines skipped) in one chunk; NULL when
 * there are none or memory is short. *lines is set to the number of lines seen. */
struct syslog_chunk *syslog_chunk_from_lines(enum syslog_stream st, int64_t time_us,
                                             const char *buf, size_t len, size_t *lines);

/* The next record of c (advancing c->off); 0 when c is consumed. */
int syslog_chunk_next(struct syslog_chunk *c, struct syslog_rec *out);

/* Counts c's records per stream from c->off on, without consuming them. */
void syslog_chunk_count(const struct syslog_chunk *c, uint64_t counts[SYSLOG_NSTREAMS]);

void syslog_queue_init(struct syslog_queue *q, size_t max);
/* Frees what is queued (the sender must have stopped). */
void syslog_queue_clear(struct syslog_queue *q);
void syslog_queue_set_max(struct syslog_queue *q, size_t max);

/* Appends c, taking ownership: 0. When c does not fit whole, only its leading records
 * that fit are kept (*dropped counts the others); -1 when none fits (c stays the
 * caller's to free, *dropped counts all its records). */
int syslog_queue_push(struct syslog_queue *q, struct syslog_chunk *c, size_t *dropped);

/* The sender takes every queued chunk (oldest first); their bytes stay counted
 * until syslog_queue_release(). */
struct syslog_chunk *syslog_queue_take(struct syslog_queue *q);
void syslog_queue_release(struct syslog_queue *q, size_t bytes);

/* Puts chunks the sender took back in front (a sender that stops hands them on). */
void syslog_queue_unshift(struct syslog_queue *q, struct syslog_chunk *list);

size_t syslog_queue_bytes(struct syslog_queue *q);

#endif
