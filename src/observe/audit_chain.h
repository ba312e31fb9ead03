/*
 * audit_chain: the tamper-evident audit trail (docs/audit.md).
 *
 * With log.audit_key_file set, every audit line ends with three fields:
 *   ...,"seq":N,"prev":"<64 hex>","mac":"<64 hex>"}\n
 * seq counts the lines of the chain (1 for its first line), prev is the mac of
 * the line before (64 zeros for the first), and mac is HMAC-SHA256 under the key
 * over the canonical line: every byte from the opening '{' up to, not including,
 * ',"mac":"'. Lines are chained, MAC'd and written under one mutex, from any
 * thread, so the file's order is the chain's order.
 *
 * The head (seq and mac of the last line) is saved in "<audit file>.chain" at
 * shutdown, at SIGUSR1 and at reload, and the chain goes on from it after a
 * restart (from the log's last line instead when that one is a later valid link:
 * moat was killed). Without that file, or with the audit stream on stdout or
 * stderr, a new chain starts with an "audit_chain_start" line saying why.
 */
#ifndef MOAT_AUDIT_CHAIN_H
#define MOAT_AUDIT_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jsonw;
struct signature_key;

#define AUDIT_MAC_LEN 32
#define AUDIT_MAC_HEX 64
/* Longest line audit-verify accepts (moat writes at most a few KiB). */
#define AUDIT_LINE_MAX 65536

/* The chain fields of one line. */
struct audit_link {
    uint64_t seq;
    uint8_t prev[AUDIT_MAC_LEN];
    uint8_t mac[AUDIT_MAC_LEN];
    size_t canon_len; /* bytes of the canonical line (from '{' to before ',"mac":"') */
};

/* Parses the chain fields ending line[0..len) (without its '\n'); 0, or -1 if the line
 * does not end with them exactly (lowercase hex, decimal seq without sign or leading 0). */
int audit_link_parse(const char *line, size_t len, struct audit_link *out);

/* HMAC-SHA256 of canon[0..n) under key; 0 or -1. */
int audit_link_mac(const struct signature_key *key, const char *canon, size_t n,
                   uint8_t out[AUDIT_MAC_LEN]);

/* True if the canonical line is an event of that name ("audit_chain_start"...). */
int audit_link_is_event(const char *line, size_t len, const char *event);

/*
 * Points the chain at the audit target (a path, "stdout", "stderr", NULL/"off") with
 * key (NULL: no chain). Called by log_open() after the audit descriptor is installed:
 * saves the current head; same target and key: goes on; same target, another key: an
 * "audit_key_rotated" line MAC'd with the old key, then the new key; otherwise the head
 * is loaded from the target's state file or a new chain starts.
 */
void audit_chain_open(const char *target, const struct signature_key *key);

/*
 * A binary upgrade (core/upgrade.h): while the old and the new process both run,
 * both append to the same chained file. on counts one more other process (off one
 * less); while any is counted, each line is linked to the file's last line under an
 * exclusive flock() of the file, so the processes write one chain.
 */
void audit_chain_share(bool on);

/* Saves the head and forgets the key (at shutdown, after the workers are joined). */
void audit_chain_close(void);

/* Writes the open JSON object j (audit_begin() + fields) as one line: with a chain,
 * with seq, prev and mac. Any thread. */
void audit_chain_write(struct jsonw *j);

#endif
