/*
 * The instance memory budget (src/core/membudget.h): per-worker counts published
 * into one total, the limit, and evbuffers counted while they live.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include <event2/buffer.h>

#include "core/membudget.h"
#include "observe/metrics.h"
#include "core/worker.h"

static uint64_t own(struct worker *w)
{
    return atomic_load(&w->metrics.v[M_BUFFERED_BYTES]);
}

/* Each worker's count reaches the others at its next publish; its own at once. */
static void test_publish_and_limit(void **state)
{
    struct worker *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    uint64_t base = membudget_total(a); /* other tests of this process may have published */
    metrics_add(&a->metrics, M_BUFFERED_BYTES, 1000);
    metrics_add(&b->metrics, M_BUFFERED_BYTES, 500);
    assert_int_equal(membudget_total(a), base + 1000);
    assert_int_equal(membudget_total(b), base + 500);
    membudget_publish(a);
    membudget_publish(b);
    assert_int_equal(membudget_total(a), base + 1500);
    assert_true(membudget_exceeded(a, base + 1499));
    assert_false(membudget_exceeded(a, base + 1500));
    assert_false(membudget_exceeded(a, 0));            /* 0: no limit */
    metrics_add(&b->metrics, M_BUFFERED_BYTES, -500);  /* drained */
    assert_int_equal(membudget_total(a), base + 1500); /* not published yet */
    membudget_publish(b);
    assert_int_equal(membudget_total(a), base + 1000);
    metrics_add(&a->metrics, M_BUFFERED_BYTES, -1000);
    membudget_publish(a);
    assert_int_equal(membudget_total(b), base);
    free(a);
    free(b);
}

static void test_track_evbuffer(void **state)
{
    struct worker *w = calloc(1, sizeof *w);
    struct evbuffer *b = evbuffer_new(), *other = evbuffer_new();
    evbuffer_add(b, "abc", 3);
    assert_int_equal(membudget_track(w, b), 0);
    assert_int_equal(own(w), 3); /* what it held already */
    evbuffer_add(b, "defgh", 5);
    evbuffer_drain(b, 2);
    assert_int_equal(own(w), 6);
    evbuffer_add_buffer(other, b); /* moved out of the counted buffer */
    assert_int_equal(own(w), 0);
    evbuffer_add_buffer(b, other);
    assert_int_equal(own(w), 6);
    membudget_untrack(w, b);
    assert_int_equal(own(w), 0);
    evbuffer_add(b, "x", 1); /* no longer counted */
    assert_int_equal(own(w), 0);
    membudget_untrack(w, b); /* twice: nothing */
    assert_int_equal(own(w), 0);
    evbuffer_free(b);
    evbuffer_free(other);
    free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_and_limit),
        cmocka_unit_test(test_track_evbuffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
