/* syslog: RFC 5424 headers, octet counting, the bounded queue and the disk spool
 * (src/observe/syslog.h, syslog_queue.h, syslog_spool.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "observe/syslog.h"
#include "observe/syslog_queue.h"
#include "observe/syslog_spool.h"

/* 2026-12-03T17:14:24.000123Z */
#define T0 ((int64_t)1796318064 * 1000000 + 123)

static void test_header(void **state)
{
    struct syslog_ident id = {.facility = 16, .hostname = "gw1", .app_name = "moat", .pid = 42};
    char out[SYSLOG_HEADER_MAX + 1];
    size_t n = syslog_format_header(out, &id, SYSLOG_ACCESS, T0);
    out[n] = '\0';
    assert_string_equal(out, "<134>1 2026-12-03T17:14:24.000123Z gw1 moat 42 access - ");
    id.facility = 23;
    n = syslog_format_header(out, &id, SYSLOG_AUDIT, T0);
    out[n] = '\0';
    assert_string_equal(out, "<189>1 2026-12-03T17:14:24.000123Z gw1 moat 42 audit - ");
    id.hostname[0] = '\0'; /* unknown: the NILVALUE */
    n = syslog_format_header(out, &id, SYSLOG_AUDIT, T0);
    out[n] = '\0';
    assert_string_equal(out, "<189>1 2026-12-03T17:14:24.000123Z - moat 42 audit - ");
}

static void test_header_longest_fields_fit(void **state)
{
    struct syslog_ident id = {.facility = 23, .pid = 2147483647};
    memset(id.hostname, 'h', 255);
    memset(id.app_name, 'a', 48);
    char out[SYSLOG_HEADER_MAX];
    size_t n = syslog_format_header(out, &id, SYSLOG_ACCESS, T0);
    assert_true(n < SYSLOG_HEADER_MAX);
    assert_memory_equal(out + n - 9, "access - ", 9);
}

static void test_octet_counting(void **state)
{
    char pre[24];
    size_t n = syslog_frame_prefix(pre, 57);
    assert_int_equal(n, 3);
    assert_memory_equal(pre, "57 ", 3);
    n = syslog_frame_prefix(pre, 1048576);
    assert_memory_equal(pre, "1048576 ", n);
}

static void test_chunk_lines(void **state)
{
    const char buf[] = "{\"a\":1}\n\n{\"b\":2}\nlast-without-newline";
    size_t lines;
    struct syslog_chunk *c = syslog_chunk_from_lines(SYSLOG_AUDIT, T0, buf, sizeof buf - 1, &lines);
    assert_non_null(c);
    assert_int_equal(lines, 3);
    struct syslog_rec r;
    const char *want[] = {"{\"a\":1}", "{\"b\":2}", "last-without-newline"};
    for (int i = 0; i < 3; i++) {
        assert_true(syslog_chunk_next(c, &r));
        assert_int_equal(r.stream, SYSLOG_AUDIT);
        assert_true(r.time_us == T0);
        assert_int_equal(r.len, strlen(want[i]));
        assert_memory_equal(r.line, want[i], r.len);
    }
    assert_false(syslog_chunk_next(c, &r));
    free(c);
    assert_null(syslog_chunk_from_lines(SYSLOG_ACCESS, T0, "\n\n", 2, &lines));
    assert_int_equal(lines, 0);
}

static void test_decode_rejects_garbage(void **state)
{
    char rec[SYSLOG_REC_HDR + 3];
    struct syslog_rec r;
    syslog_rec_encode(rec, SYSLOG_ACCESS, T0, "abc", 3);
    assert_int_equal(syslog_rec_decode(rec, sizeof rec, &r), sizeof rec);
    assert_int_equal(syslog_rec_decode(rec, sizeof rec - 1, &r), 0); /* partial */
    rec[4] = 7;                                                      /* no such stream */
    assert_int_equal(syslog_rec_decode(rec, sizeof rec, &r), -1);
    memset(rec, 0, sizeof rec); /* an empty line is never encoded */
    assert_int_equal(syslog_rec_decode(rec, sizeof rec, &r), -1);
}

static struct syslog_chunk *lines_chunk(const char *text)
{
    size_t n;
    return syslog_chunk_from_lines(SYSLOG_ACCESS, T0, text, strlen(text), &n);
}

static void test_queue_bound_keeps_oldest(void **state)
{
    struct syslog_queue q;
    syslog_queue_init(&q, 3 * (SYSLOG_REC_HDR + 2));
    size_t dropped;
    struct syslog_chunk *a = lines_chunk("l1\nl2\n");
    assert_int_equal(syslog_queue_push(&q, a, &dropped), 0);
    assert_int_equal(dropped, 0);
    /* room for one more: l3 kept, l4 and l5 refused, in that order */
    struct syslog_chunk *b = lines_chunk("l3\nl4\nl5\n");
    assert_int_equal(syslog_queue_push(&q, b, &dropped), 0);
    assert_int_equal(dropped, 2);
    assert_int_equal(syslog_queue_bytes(&q), 3 * (SYSLOG_REC_HDR + 2));
    struct syslog_chunk *c = lines_chunk("l6\n");
    assert_int_equal(syslog_queue_push(&q, c, &dropped), -1); /* full: the caller frees */
    assert_int_equal(dropped, 1);
    free(c);

    struct syslog_chunk *list = syslog_queue_take(&q);
    assert_int_equal(syslog_queue_bytes(&q), 3 * (SYSLOG_REC_HDR + 2)); /* until released */
    struct syslog_rec r;
    const char *want[] = {"l1", "l2", "l3"};
    int i = 0;
    for (struct syslog_chunk *k = list; k; k = k->next)
        while (syslog_chunk_next(k, &r))
            assert_memory_equal(r.line, want[i++], 2);
    assert_int_equal(i, 3);
    syslog_queue_release(&q, list->len + list->next->len);
    assert_int_equal(syslog_queue_bytes(&q), 0);
    free(list->next);
    free(list);
    syslog_queue_clear(&q);
}

static void test_queue_unshift_keeps_order(void **state)
{
    struct syslog_queue q;
    syslog_queue_init(&q, 1 << 20);
    size_t dropped;
    assert_int_equal(syslog_queue_push(&q, lines_chunk("a\n"), &dropped), 0);
    struct syslog_chunk *taken = syslog_queue_take(&q);
    assert_int_equal(syslog_queue_push(&q, lines_chunk("b\n"), &dropped), 0);
    syslog_queue_unshift(&q, taken); /* a stopping sender hands "a" back */
    struct syslog_chunk *list = syslog_queue_take(&q);
    struct syslog_rec r;
    assert_true(syslog_chunk_next(list, &r));
    assert_memory_equal(r.line, "a", 1);
    assert_true(syslog_chunk_next(list->next, &r));
    assert_memory_equal(r.line, "b", 1);
    assert_null(list->next->next);
    free(list->next);
    free(list);
}

/* A fresh spool directory under /tmp. */
static char *spool_dir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/moat-test-spool-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[600];
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    if (d)
        closedir(d);
    rmdir(dir);
}

static size_t rec(char *out, int i)
{
    char line[64];
    int n = snprintf(line, sizeof line, "{\"n\":%d}", i);
    syslog_rec_encode(out, SYSLOG_ACCESS, T0 + i, line, (size_t)n);
    return SYSLOG_REC_HDR + (size_t)n;
}

/* Reads the whole spool back, checking records come as 0, 1, 2...; their count. */
static int drain(struct syslog_spool *s, int from)
{
    static char buf[2 * (SYSLOG_REC_HDR + SYSLOG_LINE_MAX)];
    ssize_t n;
    int next = from;
    while ((n = syslog_spool_peek(s, buf, sizeof buf)) > 0) {
        size_t o = 0;
        struct syslog_rec r;
        long k;
        while ((k = syslog_rec_decode(buf + o, (size_t)n - o, &r)) > 0) {
            char want[64];
            snprintf(want, sizeof want, "{\"n\":%d}", next++);
            assert_int_equal(r.len, strlen(want));
            assert_memory_equal(r.line, want, r.len);
            o += (size_t)k;
        }
        syslog_spool_consume(s, o);
    }
    assert_int_equal(n, 0);
    return next - from;
}

static void test_spool_order_bound_and_reopen(void **state)
{
    char *dir = spool_dir();
    char err[256], r[64];
    struct syslog_spool *s = syslog_spool_open(dir, 1 << 20, err, sizeof err);
    assert_non_null(s);
    int i = 0;
    size_t total = 0;
    for (;; i++) {
        size_t n = rec(r, i);
        if (syslog_spool_append(s, r, n, err, sizeof err) < 0)
            break;
        total += n;
    }
    assert_non_null(strstr(err, "spool full"));
    assert_true(syslog_spool_bytes(s) == total);
    /* one process per spool: a second opener (a binary upgrade's new moat) waits */
    assert_null(syslog_spool_open(dir, 1 << 20, err, sizeof err));
    assert_non_null(strstr(err, "in use by another moat process"));
    assert_true(total <= 1 << 20 && total > (1 << 20) - 64);
    syslog_spool_close(s);

    /* a restart picks the files up, mode 0600, oldest first */
    struct stat st;
    char path[128];
    snprintf(path, sizeof path, "%s/0000000000000001.spool", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    s = syslog_spool_open(dir, 1 << 20, err, sizeof err);
    assert_non_null(s);
    assert_true(syslog_spool_bytes(s) == total);
    assert_int_equal(drain(s, 0), i);
    assert_true(syslog_spool_bytes(s) == 0);
    /* sent files are unlinked; appending goes on after a drained spool */
    assert_int_equal(stat(path, &st), -1);
    size_t n = rec(r, 0);
    assert_int_equal(syslog_spool_append(s, r, n, err, sizeof err), 0);
    assert_int_equal(drain(s, 0), 1);
    syslog_spool_close(s);
    rm_dir(dir);
}

static void test_spool_many_files_in_order(void **state)
{
    char *dir = spool_dir();
    char err[256];
    struct syslog_spool *s = syslog_spool_open(dir, (uint64_t)64 << 20, err, sizeof err);
    assert_non_null(s);
    /* ~10 MiB: several 4 MiB files, read back while more are appended */
    static char big[100 * 64];
    const int per_batch = 100;
    for (int b = 0; b < 4000; b++) {
        size_t o = 0;
        for (int k = 0; k < per_batch; k++)
            o += rec(big + o, b * per_batch + k);
        assert_int_equal(syslog_spool_append(s, big, o, err, sizeof err), 0);
    }
    assert_true(syslog_spool_bytes(s) > (uint64_t)8 << 20);
    assert_int_equal(drain(s, 0), 4000 * per_batch);
    syslog_spool_close(s);
    rm_dir(dir);
}

static void test_spool_skips_torn_end(void **state)
{
    char *dir = spool_dir();
    char err[256], r[64];
    struct syslog_spool *s = syslog_spool_open(dir, 1 << 20, err, sizeof err);
    assert_non_null(s);
    for (int i = 0; i < 3; i++) {
        size_t n = rec(r, i);
        assert_int_equal(syslog_spool_append(s, r, n, err, sizeof err), 0);
    }
    syslog_spool_close(s);
    /* moat killed in the middle of a write: half a record at the end */
    char path[128];
    snprintf(path, sizeof path, "%s/0000000000000001.spool", dir);
    FILE *f = fopen(path, "ab");
    size_t n = rec(r, 3);
    fwrite(r, 1, n / 2, f);
    fclose(f);
    s = syslog_spool_open(dir, 1 << 20, err, sizeof err);
    assert_int_equal(drain(s, 0), 3);
    assert_true(syslog_spool_bytes(s) == 0);
    syslog_spool_close(s);
    rm_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_header_longest_fields_fit),
        cmocka_unit_test(test_octet_counting),
        cmocka_unit_test(test_chunk_lines),
        cmocka_unit_test(test_decode_rejects_garbage),
        cmocka_unit_test(test_queue_bound_keeps_oldest),
        cmocka_unit_test(test_queue_unshift_keeps_order),
        cmocka_unit_test(test_spool_order_bound_and_reopen),
        cmocka_unit_test(test_spool_many_files_in_order),
        cmocka_unit_test(test_spool_skips_torn_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
