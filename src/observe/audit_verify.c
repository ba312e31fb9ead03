#include "observe/audit_verify.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "observe/audit_chain.h"
#include "policy/signature.h"

#define MAX_KEYS 8

/* The chain as read so far. */
struct verify {
    const struct signature_key *keys;
    size_t nkeys, key;
    bool have; /* a line was accepted: seq and mac below are its */
    uint64_t seq;
    uint8_t mac[AUDIT_MAC_LEN];
    uint64_t events, chains;
    char rotated_at[256]; /* where the last key rotation was, for the hint */
    /* after a gap: looking ahead for the missing seq to tell "reordered" from "removed" */
    bool searching, found;
    uint64_t want, got;
    char where[256];
    FILE *out;
};

enum line_result { LINE_OK, LINE_BAD };

static enum line_result bad(struct verify *v, const char *where, const char *fmt, uint64_t a,
                            uint64_t b)
{
    fprintf(v->out, "%s: ", where);
    fprintf(v->out, fmt, a, b);
    fputc('\n', v->out);
    return LINE_BAD;
}

static void accept(struct verify *v, const struct audit_link *k)
{
    if (!v->have)
        v->chains = 1;
    v->have = true;
    v->seq = k->seq;
    memcpy(v->mac, k->mac, AUDIT_MAC_LEN);
    v->events++;
}

/* One line (without '\n'); where is "FILE:LINE". */
static enum line_result check_line(struct verify *v, const char *line, size_t len,
                                   const char *where)
{
    struct audit_link k;
    if (audit_link_parse(line, len, &k) < 0) {
        if (v->searching)
            return LINE_OK;
        fprintf(v->out, "%s: not a chained audit line (no seq, prev and mac at its end)\n", where);
        return LINE_BAD;
    }
    if (v->searching) { /* only looking for the missing seq */
        if (k.seq == v->want)
            v->found = true;
        return LINE_OK;
    }
    if (v->nkeys) {
        uint8_t want[AUDIT_MAC_LEN];
        if (audit_link_mac(&v->keys[v->key], line, k.canon_len, want) < 0 ||
            CRYPTO_memcmp(want, k.mac, AUDIT_MAC_LEN) != 0) {
            fprintf(v->out, "%s: edited (mac mismatch)%s%s%s\n", where,
                    v->rotated_at[0] ? "; the key was rotated at " : "", v->rotated_at,
                    v->rotated_at[0] ? " (pass the next key with another --key)" : "");
            return LINE_BAD;
        }
    }
    static const uint8_t zero[AUDIT_MAC_LEN];
    bool start = k.seq == 1 && !memcmp(k.prev, zero, AUDIT_MAC_LEN) &&
                 audit_link_is_event(line, len, "audit_chain_start");
    if (start && v->have) {
        fprintf(v->out,
                "%s: note: a new chain starts here (moat had no chain state); "
                "the lines before are not linked to it\n",
                where);
        v->chains++;
    } else if (start) {
        /* the first line: nothing to link */
    } else if (v->have && k.seq == v->seq + 1 && memcmp(k.prev, v->mac, AUDIT_MAC_LEN) != 0) {
        return bad(v, where,
                   "inserted (seq %" PRIu64 " does not link to the line before, seq %" PRIu64 ")",
                   k.seq, v->seq);
    } else if (v->have && k.seq > v->seq + 1) {
        v->searching = true; /* the verdict waits for the rest of the files */
        v->want = v->seq + 1;
        v->got = k.seq;
        snprintf(v->where, sizeof v->where, "%s", where);
        return LINE_OK;
    } else if (v->have && k.seq <= v->seq) {
        return bad(v, where, "inserted (seq %" PRIu64 " expected, got %" PRIu64 " again)",
                   v->seq + 1, k.seq);
    }
    accept(v, &k);
    if (audit_link_is_event(line, len, "audit_key_rotated")) {
        snprintf(v->rotated_at, sizeof v->rotated_at, "%s", where);
        if (v->key + 1 < v->nkeys) {
            v->key++;
            v->rotated_at[0] = '\0';
        }
    }
    return LINE_OK;
}

/* Reads one file; LINE_BAD stops at the first bad line unless searching. -1: cannot read. */
static int verify_file(struct verify *v, const char *path, char *buf, FILE *err)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        fprintf(err, "audit-verify: %s: %s\n", path, strerror(errno));
        return -1;
    }
    unsigned long lineno = 0;
    int rc = LINE_OK;
    char where[256];
    while (fgets(buf, AUDIT_LINE_MAX + 2, f)) {
        lineno++;
        size_t len = strlen(buf);
        snprintf(where, sizeof where, "%s:%lu", path, lineno);
        if (len == 0 || buf[len - 1] != '\n') {
            if (v->searching)
                break;
            if (len > AUDIT_LINE_MAX)
                fprintf(v->out, "%s: line longer than %d bytes\n", where, AUDIT_LINE_MAX);
            else
                fprintf(v->out, "%s: incomplete last line (no newline)\n", where);
            rc = LINE_BAD;
            break;
        }
        if (check_line(v, buf, len - 1, where) == LINE_BAD) {
            rc = LINE_BAD;
            break;
        }
        if (v->searching && v->found)
            break;
    }
    fclose(f);
    return rc;
}

int audit_verify_files(const char *const *files, size_t nfiles, const struct signature_key *keys,
                       size_t nkeys, FILE *out, FILE *err)
{
    struct verify v = {.keys = keys, .nkeys = nkeys, .out = out};
    char *buf = malloc(AUDIT_LINE_MAX + 2);
    if (!buf) {
        fprintf(err, "audit-verify: out of memory\n");
        return 2;
    }
    int rc = 0;
    for (size_t i = 0; i < nfiles && rc == 0 && !v.found; i++) {
        int r = verify_file(&v, files[i], buf, err);
        rc = r < 0 ? 2 : r == LINE_BAD ? 1 : 0;
    }
    free(buf);
    if (rc == 0 && v.searching) {
        fprintf(out, "%s: %s (seq %" PRIu64 " expected, got %" PRIu64 ")\n", v.where,
                v.found ? "reordered" : "removed", v.want, v.got);
        return 1;
    }
    if (rc != 0)
        return rc;
    char head[AUDIT_MAC_HEX + 1] = "";
    for (size_t i = 0; v.have && i < AUDIT_MAC_LEN; i++)
        snprintf(head + 2 * i, 3, "%02x", v.mac[i]);
    fprintf(out, "ok: %" PRIu64 " events", v.events);
    if (v.have)
        fprintf(out, ", last seq %" PRIu64 " mac %s", v.seq, head);
    if (v.chains > 1)
        fprintf(out, ", %" PRIu64 " chains not linked to each other (see the notes)", v.chains);
    fprintf(out, "%s\n", nkeys ? "" : " (links only: no --key, MACs not checked)");
    return 0;
}

static void verify_usage(FILE *f)
{
    fprintf(f, "usage: moat audit-verify [--key FILE]... FILE...\n"
               "  checks the audit chain of the files, in the order given (oldest first);\n"
               "  --key: the log.audit_key_file (repeat it, in order, across key rotations);\n"
               "  without --key only seq and prev links are checked\n"
               "exit status: 0 ok, 1 a bad line (named on stdout), 2 usage or unreadable file\n");
}

int audit_verify_main(int argc, char **argv)
{
    static struct signature_key keys[MAX_KEYS];
    size_t nkeys = 0;
    const char **files = calloc((size_t)argc + 1, sizeof *files);
    size_t nfiles = 0;
    int rc = 2;
    if (!files)
        return 2;
    for (int i = 0; i < argc; i++) {
        char err[512];
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            verify_usage(stdout);
            rc = 0;
            goto out;
        }
        if (!strcmp(argv[i], "--key") || !strncmp(argv[i], "--key=", 6)) {
            const char *path = argv[i][5] == '=' ? argv[i] + 6 : i + 1 < argc ? argv[++i] : NULL;
            if (!path || nkeys == MAX_KEYS) {
                fprintf(stderr, "audit-verify: --key needs a file (at most %d keys)\n", MAX_KEYS);
                verify_usage(stderr);
                goto out;
            }
            if (signature_key_load(path, &keys[nkeys], err, sizeof err) < 0) {
                fprintf(stderr, "audit-verify: --key: %s\n", err);
                goto out;
            }
            nkeys++;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "audit-verify: unknown option '%s'\n", argv[i]);
            verify_usage(stderr);
            goto out;
        } else {
            files[nfiles++] = argv[i];
        }
    }
    if (nfiles == 0) {
        verify_usage(stderr);
        goto out;
    }
    rc = audit_verify_files(files, nfiles, keys, nkeys, stdout, stderr);
out:
    OPENSSL_cleanse(keys, sizeof keys);
    free(files);
    return rc;
}
