/* log: the limited operator message (src/observe/log.h, log_msg_limited). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "observe/log.h"

/* Runs fn with stderr sent to a temporary file; returns what it wrote. */
static char *capture(void (*fn)(struct log_limit *), struct log_limit *l)
{
    static char buf[8192];
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(STDERR_FILENO);
    dup2(fileno(tmp), STDERR_FILENO);
    fn(l);
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(tmp);
    size_t n = fread(buf, 1, sizeof buf - 1, tmp);
    buf[n] = '\0';
    fclose(tmp);
    return buf;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void burst(struct log_limit *l)
{
    for (int i = 0; i < 50; i++)
        log_msg_limited(l, LOG_ERROR, "bad reply %d", i);
}

static void one(struct log_limit *l)
{
    log_msg_limited(l, LOG_ERROR, "bad reply again");
}

/* the first of a burst is logged, the rest counted; the next line after the
 * interval says how many were left out, and the count starts over */
static void test_limited(void **state)
{
    log_set_level("info");
    struct log_limit l = {0};
    char *out = capture(burst, &l);
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, "error: bad reply 0\n"));
    assert_int_equal(l.suppressed, 49);

    l.last_ms -= LOG_LIMIT_MS + 1; /* the interval is over */
    out = capture(one, &l);
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, "bad reply again (and 49 more like it in the last 10 s)\n"));
    assert_int_equal(l.suppressed, 0);

    out = capture(one, &l); /* within the new interval */
    assert_int_equal(count_lines(out), 0);
    assert_int_equal(l.suppressed, 1);
}

/* below the log level: nothing written, nothing counted */
static void test_below_level(void **state)
{
    log_set_level("error");
    struct log_limit l = {0};
    log_msg_limited(&l, LOG_WARN, "not shown");
    assert_int_equal(l.last_ms, 0);
    assert_int_equal(l.suppressed, 0);
    log_set_level("info");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limited),
        cmocka_unit_test(test_below_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
