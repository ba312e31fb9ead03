/*
 * syslog_spool: the bounded disk spool of the syslog sender (log.syslog.spool_dir).
 *
 * While the receiver is unreachable the sender appends records (syslog_queue.h
 * encoding) here instead of holding them in memory, and sends them first, oldest
 * first, once it is back. The spool is a directory of files named by a 16-digit
 * sequence number ("0000000000000001.spool", mode 0600), each at most a few MiB: the
 * oldest file is read from the front and unlinked once sent, the newest is appended
 * to. Files left by an earlier run are picked up at open, so spooled lines also
 * survive a restart of moat (the sent part of a file may then be sent again: the read
 * position is not saved). Only the sender thread uses a spool.
 */
#ifndef MOAT_SYSLOG_SPOOL_H
#define MOAT_SYSLOG_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct syslog_spool;

/* Opens (creating it 0700 if missing) dir, bounded to max bytes; NULL with err. */
struct syslog_spool *syslog_spool_open(const char *dir, uint64_t max, char *err, size_t errlen);
void syslog_spool_close(struct syslog_spool *s);

/* Bytes spooled and not yet consumed. */
uint64_t syslog_spool_bytes(const struct syslog_spool *s);

/* Appends whole records data[0..len): 0; -1 when they do not fit under the bound or
 * cannot be written (nothing is appended then; err says why for a log line). */
int syslog_spool_append(struct syslog_spool *s, const char *data, size_t len, char *err,
                        size_t errlen);

/* Copies the oldest whole records (at most cap bytes, cap >= one record) into buf
 * without consuming them: their size, 0 when the spool is empty, -1 on a read error. */
ssize_t syslog_spool_peek(struct syslog_spool *s, char *buf, size_t cap);

/* Marks the first n bytes peeked as sent; a file read to its end is unlinked. */
void syslog_spool_consume(struct syslog_spool *s, size_t n);

#endif
