/*
 * tls_tickets: the session ticket keys of the process.
 *
 * One store per process, created by the main thread before the first TLS policy and
 * shared by every worker and every policy generation, so a config reload does not
 * invalidate the tickets clients hold. The ticket callback installed on each SSL_CTX
 * reads the store under a read lock (handshake path only, never the request path);
 * the main thread rotates it on a timer under the write lock.
 *
 * A key is 80 bytes: name (16) + HMAC-SHA256 key (32) + AES-256-CBC key (32), the
 * layout of nginx's 80-byte ssl_session_ticket_key files. Tickets are RFC 5077
 * tickets as OpenSSL builds them (AES-256-CBC + HMAC-SHA256).
 *
 * Two modes:
 * - memory (no key file): keys are random; rotate() makes a new current key and keeps
 *   `keep_previous` retired keys for decryption, dropping older ones.
 * - key file (several instances behind one name share it): one base64 key per line,
 *   oldest first, '#' comments and blank lines ignored. As in HAProxy's tls-ticket-keys,
 *   with two keys or more the penultimate encrypts and the last one is the next key,
 *   already accepted for decryption so instances can be updated one after the other;
 *   with a single key, that key encrypts. rotate() re-reads the file; on error the keys
 *   in use stay and rotate() reports it.
 * A ticket sealed with a key that is no longer current is still accepted and the
 * client receives a fresh ticket under the current key.
 */
#ifndef MOAT_TLS_TICKETS_H
#define MOAT_TLS_TICKETS_H

#include <stddef.h>
#include <openssl/ssl.h>

#define TLS_TICKET_KEY_LEN 80
#define TLS_TICKETS_MAX_KEYS 16
/* Base64 of one key plus the NUL: 108 + 1. */
#define TLS_TICKET_LINE_LEN 109

struct tls_ticket_store;

/*
 * Creates the store with refs == 1. key_file NULL: one random key, and rotate() keeps
 * keep_previous retired keys (at most TLS_TICKETS_MAX_KEYS - 1). With a key file the
 * file is read now (an error there is returned as "path: message").
 */
struct tls_ticket_store *tls_tickets_new(const char *key_file, unsigned keep_previous, char *err,
                                         size_t errlen);
struct tls_ticket_store *tls_tickets_ref(struct tls_ticket_store *st);
void tls_tickets_unref(struct tls_ticket_store *st);

/*
 * Main thread, on a timer (cfg->tls.ticket_rotate_ms). Memory mode: a new current key.
 * Key-file mode: re-reads the file. Returns 0, or -1 with err (the old keys stay).
 */
int tls_tickets_rotate(struct tls_ticket_store *st, char *err, size_t errlen);

/*
 * Installs the ticket callback on ctx; the SSL_CTX holds a reference to the store
 * until it is freed. Returns 0 or -1.
 */
int tls_tickets_attach(struct tls_ticket_store *st, SSL_CTX *ctx);

/* Number of keys that decrypt (for metrics and tests). */
size_t tls_tickets_count(struct tls_ticket_store *st);

/* Writes one new random key as a key-file line (base64, NUL-terminated, no newline). */
int tls_tickets_generate_line(char *buf, size_t len);

#endif
