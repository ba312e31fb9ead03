/* audit_verify + audit_chain: lines written through the real chain (log_open with
 * log.audit_key_file), then edited, removed, inserted, reordered, checked by the verifier
 * (src/observe/audit_verify.h, src/observe/audit_chain.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "observe/audit.h"
#include "observe/audit_chain.h"
#include "observe/audit_verify.h"
#include "observe/log.h"
#include "policy/signature.h"

static char dir[64], logpath[128], keypath[128], key2path[128], copypath[128];
static struct signature_key key1, key2;

#define MAX_LINES 64
static char *lines[MAX_LINES];
static size_t nlines;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void open_chain(const char *kp)
{
    struct config_log cfg = {.access = NULL, .audit = logpath, .audit_key_file = (char *)kp};
    char err[256];
    assert_int_equal(log_open(&cfg, err, sizeof err), 0);
}

static void emit(int n)
{
    for (int i = 0; i < n; i++) {
        char d[32];
        snprintf(d, sizeof d, "event %d", i);
        audit_simple("test_event", NULL, d);
    }
}

static void read_lines(void)
{
    for (size_t i = 0; i < nlines; i++)
        free(lines[i]);
    nlines = 0;
    FILE *f = fopen(logpath, "r");
    assert_non_null(f);
    char buf[4096];
    while (fgets(buf, sizeof buf, f) && nlines < MAX_LINES)
        lines[nlines++] = strdup(buf);
    fclose(f);
}

/* Writes lines[order[0..n)] (index -1: extra) to copypath. */
static void write_copy(const int *order, size_t n, const char *extra)
{
    FILE *f = fopen(copypath, "w");
    assert_non_null(f);
    for (size_t i = 0; i < n; i++)
        fputs(order[i] < 0 ? extra : lines[order[i]], f);
    fclose(f);
}

/* Runs the verifier; returns its status, its output in out. */
static int verify(const char *const *files, size_t n, const struct signature_key *keys,
                  size_t nkeys, char *out, size_t cap)
{
    FILE *o = tmpfile();
    assert_non_null(o);
    int rc = audit_verify_files(files, n, keys, nkeys, o, stderr);
    rewind(o);
    size_t got = fread(out, 1, cap - 1, o);
    out[got] = '\0';
    fclose(o);
    return rc;
}

static int verify_copy(char *out, size_t cap)
{
    const char *files[] = {copypath};
    return verify(files, 1, &key1, 1, out, cap);
}

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/moat-audit-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(logpath, sizeof logpath, "%s/audit.log", dir);
    snprintf(keypath, sizeof keypath, "%s/k1", dir);
    snprintf(key2path, sizeof key2path, "%s/k2", dir);
    snprintf(copypath, sizeof copypath, "%s/copy.log", dir);
    write_file(keypath, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n");
    write_file(key2path, "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1eff\n");
    char err[256];
    assert_int_equal(signature_key_load(keypath, &key1, err, sizeof err), 0);
    assert_int_equal(signature_key_load(key2path, &key2, err, sizeof err), 0);
    open_chain(keypath); /* no state file: the chain starts with audit_chain_start */
    emit(5);
    audit_chain_close();
    read_lines();
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    for (size_t i = 0; i < nlines; i++)
        free(lines[i]);
    return 0;
}

static void test_format(void **state)
{
    assert_int_equal(nlines, 6);
    assert_non_null(strstr(lines[0], "\"event\":\"audit_chain_start\""));
    assert_non_null(strstr(lines[0], ",\"seq\":1,\"prev\":\"0000000000000000"));
    struct audit_link k;
    assert_int_equal(audit_link_parse(lines[2], strlen(lines[2]) - 1, &k), 0);
    assert_int_equal(k.seq, 3);
    /* the canonical line is everything before ,"mac":" */
    const char *m = strstr(lines[2], ",\"mac\":\"");
    assert_non_null(m);
    assert_int_equal(k.canon_len, (size_t)(m - lines[2]));
    uint8_t mac[AUDIT_MAC_LEN];
    assert_int_equal(audit_link_mac(&key1, lines[2], k.canon_len, mac), 0);
    assert_memory_equal(mac, k.mac, AUDIT_MAC_LEN);
    assert_int_equal(audit_link_parse("{\"a\":1}", 7, &k), -1);
}

static void test_ok(void **state)
{
    char out[1024];
    const char *files[] = {logpath};
    assert_int_equal(verify(files, 1, &key1, 1, out, sizeof out), 0);
    assert_non_null(strstr(out, "ok: 6 events"));
    assert_int_equal(verify(files, 1, NULL, 0, out, sizeof out), 0); /* links only */
    assert_non_null(strstr(out, "links only"));
    assert_int_equal(verify(files, 1, &key2, 1, out, sizeof out), 1); /* wrong key */
    assert_non_null(strstr(out, ":1: edited (mac mismatch)"));
}

static void test_edited(void **state)
{
    char out[1024], *saved = strdup(lines[2]);
    char *p = strstr(lines[2], "event 1");
    assert_non_null(p);
    p[6] = '7';
    int order[] = {0, 1, 2, 3, 4, 5};
    write_copy(order, 6, NULL);
    free(lines[2]);
    lines[2] = saved;
    assert_int_equal(verify_copy(out, sizeof out), 1);
    assert_non_null(strstr(out, "copy.log:3: edited (mac mismatch)"));
}

static void test_removed_inserted_reordered(void **state)
{
    char out[1024];
    int removed[] = {0, 1, 3, 4, 5};
    write_copy(removed, 5, NULL);
    assert_int_equal(verify_copy(out, sizeof out), 1);
    assert_non_null(strstr(out, "copy.log:3: removed (seq 3 expected, got 4)"));

    int inserted[] = {0, 1, 2, 3, 1, 4, 5};
    write_copy(inserted, 7, NULL);
    assert_int_equal(verify_copy(out, sizeof out), 1);
    assert_non_null(strstr(out, "copy.log:5: inserted"));

    int swapped[] = {0, 1, 3, 2, 4, 5};
    write_copy(swapped, 6, NULL);
    assert_int_equal(verify_copy(out, sizeof out), 1);
    assert_non_null(strstr(out, "copy.log:3: reordered (seq 3 expected, got 4)"));

    int moved[] = {0, 2, 3, 4, 1, 5};
    write_copy(moved, 6, NULL);
    assert_int_equal(verify_copy(out, sizeof out), 1);
    assert_non_null(strstr(out, "copy.log:2: reordered (seq 2 expected, got 3)"));

    int tail_removed[] = {0, 1, 2, 3, 4}; /* undetectable from the file alone (docs/audit.md) */
    write_copy(tail_removed, 5, NULL);
    assert_int_equal(verify_copy(out, sizeof out), 0);
}

static void test_bad_lines(void **state)
{
    char out[1024];
    char *big = malloc(AUDIT_LINE_MAX + 100);
    memset(big, 'x', AUDIT_LINE_MAX + 98);
    big[AUDIT_LINE_MAX + 98] = '\n';
    big[AUDIT_LINE_MAX + 99] = '\0';
    int order[] = {0, 1, -1, 2};
    write_copy(order, 4, big);
    free(big);
    assert_int_equal(verify_copy(out, sizeof out), 1);
    assert_non_null(strstr(out, "copy.log:3: line longer than 65536 bytes"));

    write_copy(order, 3, "{\"time\":\"x\",\"event\":\"plain\"}\n");
    assert_int_equal(verify_copy(out, sizeof out), 1);
    assert_non_null(strstr(out, "copy.log:3: not a chained audit line"));

    write_copy(order, 3, "{\"no\":\"newline\"}");
    assert_int_equal(verify_copy(out, sizeof out), 1);
    assert_non_null(strstr(out, "copy.log:3: incomplete last line"));

    const char *missing[] = {"/nonexistent/audit.log"};
    assert_int_equal(verify(missing, 1, &key1, 1, out, sizeof out), 2);
}

/* A restart goes on from <log>.chain; a new key is announced under the old one. */
static void test_restart_and_rotation(void **state)
{
    char out[1024];
    const char *files[] = {logpath};
    open_chain(keypath);
    emit(2);
    audit_chain_close();
    read_lines();
    assert_int_equal(nlines, 8);
    assert_non_null(strstr(lines[6], ",\"seq\":7,"));
    assert_int_equal(verify(files, 1, &key1, 1, out, sizeof out), 0);
    assert_non_null(strstr(out, "ok: 8 events"));

    open_chain(keypath);
    open_chain(key2path); /* reload with another key */
    emit(1);
    audit_chain_close();
    struct signature_key both[2] = {key1, key2};
    assert_int_equal(verify(files, 1, both, 2, out, sizeof out), 0);
    assert_non_null(strstr(out, "ok: 10 events"));
    assert_int_equal(verify(files, 1, &key1, 1, out, sizeof out), 1);
    assert_non_null(strstr(out, "the key was rotated at"));

    /* the state file gone: a new chain, reported but not an error */
    char statepath[160];
    snprintf(statepath, sizeof statepath, "%s.chain", logpath);
    assert_int_equal(unlink(statepath), 0);
    open_chain(key2path);
    emit(1);
    audit_chain_close();
    assert_int_equal(verify(files, 1, both, 2, out, sizeof out), 0);
    assert_non_null(strstr(out, "note: a new chain starts here"));
    assert_non_null(strstr(out, "2 chains"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),    cmocka_unit_test(test_ok),
        cmocka_unit_test(test_edited),    cmocka_unit_test(test_removed_inserted_reordered),
        cmocka_unit_test(test_bad_lines), cmocka_unit_test(test_restart_and_rotation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
