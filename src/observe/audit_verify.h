/*
 * audit_verify: `moat audit-verify [--key FILE]... FILE...` (docs/audit.md).
 *
 * Reads the audit files in order as one chain and checks, line by line, the
 * seq continuity, the prev links and (with a key) each line's MAC. Prints
 * "ok: N events ..." or names the first bad line: "FILE:LINE: edited (mac
 * mismatch)", "removed (seq N expected, got M)", "inserted (...)",
 * "reordered (...)", a line too long or not chained. An "audit_chain_start" line
 * (moat found no chain state) is accepted and reported as a note; after an
 * "audit_key_rotated" line the next --key is used.
 */
#ifndef MOAT_AUDIT_VERIFY_H
#define MOAT_AUDIT_VERIFY_H

#include <stddef.h>
#include <stdio.h>

struct signature_key;

/* 0 all good, 1 a bad line (reported on out), 2 a file could not be read (on err). */
int audit_verify_files(const char *const *files, size_t nfiles, const struct signature_key *keys,
                       size_t nkeys, FILE *out, FILE *err);

/* The command line after "audit-verify": exit status as above, 2 for usage errors too. */
int audit_verify_main(int argc, char **argv);

#endif
