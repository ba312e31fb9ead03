/*
 * Tests for gcra.h (math), ratelimit_table (local shared limiter) and
 * ratelimit_script.h (global limiter, run against a real redis-server that
 * this test starts on a private unix socket and kills by PID at the end).
 * Also prints a micro-benchmark (informational, never asserted).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "policy/gcra.h"
#include "policy/ratelimit_script.h"
#include "policy/ratelimit_table.h"

#define T0 1000000000ull /* an arbitrary "now" for deterministic tests, us */

/* ------------------------------------------------------------------ GCRA */

static void test_gcra_interval(void **state)
{
    assert_int_equal(gcra_interval_us(10.0), 100000);
    assert_int_equal(gcra_interval_us(3.0), 333333);
    assert_int_equal(gcra_interval_us(1.5), 666667);
    assert_int_equal(gcra_interval_us(1.0 / 3600), 3600000000ull);
    assert_int_equal(gcra_interval_us(2e6), 1);
    assert_int_equal(gcra_interval_us(INFINITY), 1);
    assert_int_equal(gcra_interval_us(0.0), GCRA_INTERVAL_MAX_US);
    assert_int_equal(gcra_interval_us(-5.0), GCRA_INTERVAL_MAX_US);
    assert_int_equal(gcra_interval_us(NAN), GCRA_INTERVAL_MAX_US);
    assert_int_equal(gcra_interval_us(1e-9), GCRA_INTERVAL_MAX_US);
}

/* Burst B at one instant: exactly B pass; after exactly T one more. */
static void test_gcra_burst_exact(void **state)
{
    const uint64_t T = 100000, B = 5;
    struct gcra_state st = {0};
    struct gcra_result r;

    for (uint64_t i = 0; i < B; i++) {
        r = gcra_decide(&st, T0, T, B, 1);
        assert_true(r.allowed);
        assert_int_equal(r.remaining, B - 1 - i);
        assert_int_equal(r.retry_after_us, 0);
        assert_int_equal(r.reset_after_us, (i + 1) * T);
    }
    for (int i = 0; i < 100; i++) {
        r = gcra_decide(&st, T0, T, B, 1);
        assert_false(r.allowed);
        assert_int_equal(r.remaining, 0);
        assert_int_equal(r.retry_after_us, T);
        assert_int_equal(r.reset_after_us, B * T);
    }
    r = gcra_decide(&st, T0 + T - 1, T, B, 1);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_us, 1); /* exact to the microsecond */
    r = gcra_decide(&st, T0 + T, T, B, 1);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
    assert_int_equal(r.reset_after_us, B * T);
    r = gcra_decide(&st, T0 + T, T, B, 1);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_us, T);

    /* 2.5 T later: exactly 2 more, then the wait is the missing half */
    uint64_t t = T0 + T + 5 * T / 2;
    assert_true(gcra_decide(&st, t, T, B, 1).allowed);
    assert_true(gcra_decide(&st, t, T, B, 1).allowed);
    r = gcra_decide(&st, t, T, B, 1);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_us, T / 2);
}

static void test_gcra_rejections_dont_consume(void **state)
{
    const uint64_t T = 1000, B = 3;
    struct gcra_state st = {0};
    for (int i = 0; i < 3; i++)
        assert_true(gcra_decide(&st, T0, T, B, 1).allowed);
    struct gcra_state before = st;
    for (uint64_t t = T0; t < T0 + T; t++) { /* one rejection every microsecond */
        struct gcra_result r = gcra_decide(&st, t, T, B, 1);
        assert_false(r.allowed);
        assert_int_equal(r.retry_after_us, T0 + T - t);
    }
    assert_int_equal(st.tat, before.tat);
    assert_int_equal(st.interval_us, before.interval_us);
    assert_true(gcra_decide(&st, T0 + T, T, B, 1).allowed);
    assert_false(gcra_decide(&st, T0 + T, T, B, 1).allowed);
}

static void test_gcra_refill_caps_at_burst(void **state)
{
    const uint64_t T = 1000, B = 4;
    struct gcra_state st = {0};
    for (int i = 0; i < 4; i++)
        assert_true(gcra_decide(&st, T0, T, B, 1).allowed);
    /* long idle: the bucket is full again, never fuller */
    struct gcra_result r = gcra_decide(&st, T0 + 1000 * T, T, B, 1);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, B - 1);
    /* partial refill: 2 T after exhaustion gives 2 */
    st = (struct gcra_state){0};
    for (int i = 0; i < 4; i++)
        gcra_decide(&st, T0, T, B, 1);
    r = gcra_decide(&st, T0 + 2 * T, T, B, 1);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 1);
}

/* A rate change keeps the number of requests owed and applies at once. */
static void test_gcra_rate_change_rescales(void **state)
{
    const uint64_t slow = 1000000, fast = 10000, B = 2;
    struct gcra_state st = {0};
    assert_true(gcra_decide(&st, T0, slow, B, 1).allowed);
    assert_true(gcra_decide(&st, T0, slow, B, 1).allowed);
    struct gcra_result r = gcra_decide(&st, T0, slow, B, 1);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_us, slow);

    r = gcra_decide(&st, T0, fast, B, 1); /* raised: owed 2 requests at the new rate */
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_us, fast);
    assert_int_equal(r.reset_after_us, 2 * fast);
    assert_int_equal(st.tat, T0 + 2 * fast);
    assert_int_equal(st.interval_us, fast);
    r = gcra_decide(&st, T0 + fast, fast, B, 1);
    assert_true(r.allowed);

    r = gcra_decide(&st, T0 + fast, slow, B, 1); /* lowered again: 2 owed at the slow rate */
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_us, slow);
}

static void test_gcra_edges(void **state)
{
    struct gcra_state st = {0};
    /* burst 0 behaves as 1 */
    assert_true(gcra_decide(&st, T0, 10, 0, 1).allowed);
    assert_false(gcra_decide(&st, T0, 10, 0, 1).allowed);
    /* cost above burst never passes */
    st = (struct gcra_state){0};
    struct gcra_result r = gcra_decide(&st, T0, 10, 2, 3);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_us, UINT64_MAX);
    assert_int_equal(st.tat, 0);
    /* cost 0 looks without consuming */
    assert_true(gcra_decide(&st, T0, 10, 2, 1).allowed);
    uint64_t tat = st.tat;
    r = gcra_decide(&st, T0, 10, 2, 0);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 1);
    assert_int_equal(st.tat, tat);
    /* saturating arithmetic: no wrap-around with absurd parameters */
    st = (struct gcra_state){0};
    r = gcra_decide(&st, T0, GCRA_INTERVAL_MAX_US, UINT64_MAX, 1);
    assert_true(r.allowed);
    assert_true(r.remaining > ((uint64_t)1 << 20));
    st = (struct gcra_state){.tat = UINT64_MAX - 5, .interval_us = 7};
    r = gcra_decide(&st, T0, 1, 3, 1);
    assert_false(r.allowed);
}

/* ----------------------------------------------------------------- table */

static struct gcra_result decide_s(struct rl_table *t, const char *rule, const char *key,
                                   double rate, uint64_t burst, uint64_t now)
{
    return rl_table_decide(t, rule, key, strlen(key), rate, burst, now);
}

static void test_table_exact(void **state)
{
    struct rl_table *t = rl_table_new(1000);
    assert_non_null(t);
    for (int i = 0; i < 50; i++)
        assert_true(decide_s(t, "r", "1.2.3.4", 10.0, 50, T0).allowed);
    struct gcra_result r = decide_s(t, "r", "1.2.3.4", 10.0, 50, T0 + 99999);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_us, 1);
    assert_int_equal(r.reset_after_us, 50 * 100000 - 99999);
    assert_true(decide_s(t, "r", "1.2.3.4", 10.0, 50, T0 + 100000).allowed);
    assert_false(decide_s(t, "r", "1.2.3.4", 10.0, 50, T0 + 100000).allowed);
    /* idle for the whole window: full bucket again */
    r = decide_s(t, "r", "1.2.3.4", 10.0, 50, T0 + 100000 + 50 * 100000);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 49);
    assert_int_equal(rl_table_size(t), 1);
    rl_table_free(t);
}

static void test_table_key_identity(void **state)
{
    struct rl_table *t = rl_table_new(1000);
    assert_non_null(t);
    /* same key bytes under two rules, and the rule/key boundary */
    assert_true(decide_s(t, "ab", "c", 1e-3, 1, T0).allowed);
    assert_false(decide_s(t, "ab", "c", 1e-3, 1, T0).allowed);
    assert_true(decide_s(t, "a", "bc", 1e-3, 1, T0).allowed);
    assert_true(decide_s(t, "other", "c", 1e-3, 1, T0).allowed);
    assert_true(decide_s(t, NULL, "c", 1e-3, 1, T0).allowed);
    assert_false(decide_s(t, "", "c", 1e-3, 1, T0).allowed); /* NULL rule == "" */
    /* binary keys with NULs */
    assert_true(rl_table_decide(t, "r", "a\0b", 3, 1e-3, 1, T0).allowed);
    assert_true(rl_table_decide(t, "r", "a", 1, 1e-3, 1, T0).allowed);
    assert_false(rl_table_decide(t, "r", "a\0b", 3, 1e-3, 1, T0).allowed);
    assert_true(rl_table_decide(t, "r", NULL, 0, 1e-3, 1, T0).allowed);
    /* around the inline limit and far beyond it (digest) */
    char k1[400], k2[400];
    for (size_t len = RL_TABLE_KEY_INLINE - 4; len < RL_TABLE_KEY_INLINE + 4; len++) {
        memset(k1, 'x', len);
        k1[len] = 0;
        assert_true(decide_s(t, "rl", k1, 1e-3, 1, T0).allowed);
        assert_false(decide_s(t, "rl", k1, 1e-3, 1, T0).allowed);
    }
    memset(k1, 'y', sizeof(k1) - 1);
    k1[sizeof(k1) - 1] = 0;
    memcpy(k2, k1, sizeof(k1));
    k2[sizeof(k2) - 2] = 'z';
    assert_true(decide_s(t, "long", k1, 1e-3, 2, T0).allowed);
    assert_true(decide_s(t, "long", k2, 1e-3, 2, T0).allowed);
    assert_true(decide_s(t, "long", k1, 1e-3, 2, T0).allowed);
    assert_false(decide_s(t, "long", k1, 1e-3, 2, T0).allowed);
    assert_true(decide_s(t, "long", k2, 1e-3, 2, T0).allowed);
    rl_table_free(t);
}

struct conc_arg {
    struct rl_table *t;
    pthread_barrier_t *barrier;
    const char *key;
    int n;
    atomic_int *allowed;
};

static void *conc_worker(void *p)
{
    struct conc_arg *a = p;
    pthread_barrier_wait(a->barrier);
    for (int i = 0; i < a->n; i++) {
        if (decide_s(a->t, "burst50", a->key, 1e-6, 50, rl_table_now_us()).allowed)
            atomic_fetch_add(a->allowed, 1);
    }
    return NULL;
}

/* 200 requests from 8 threads on one key with burst 50: exactly 50 pass. */
static void test_table_concurrent_one_key(void **state)
{
    struct rl_table *t = rl_table_new(4096);
    assert_non_null(t);
    for (int round = 0; round < 50; round++) {
        char key[32];
        snprintf(key, sizeof(key), "10.0.0.%d", round);
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, 8);
        atomic_int allowed = 0;
        pthread_t th[8];
        struct conc_arg args[8];
        for (int i = 0; i < 8; i++) {
            args[i] = (struct conc_arg){t, &barrier, key, 25, &allowed};
            assert_int_equal(pthread_create(&th[i], NULL, conc_worker, &args[i]), 0);
        }
        for (int i = 0; i < 8; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&barrier);
        assert_int_equal(atomic_load(&allowed), 50);
    }
    rl_table_free(t);
}

#define MK_KEYS 500
#define MK_THREADS 4
#define MK_PASSES 10

struct mk_arg {
    struct rl_table *t;
    pthread_barrier_t *barrier;
    int id;
    atomic_int *allowed; /* per key */
};

static void *mk_worker(void *p)
{
    struct mk_arg *a = p;
    pthread_barrier_wait(a->barrier);
    for (int pass = 0; pass < MK_PASSES; pass++) {
        for (int j = 0; j < MK_KEYS; j++) {
            int k = (j * 7 + a->id * 131 + pass) % MK_KEYS;
            char key[16];
            snprintf(key, sizeof(key), "t%d", k);
            if (decide_s(a->t, "mk", key, 1e-6, 7, rl_table_now_us()).allowed)
                atomic_fetch_add(&a->allowed[k], 1);
        }
    }
    return NULL;
}

/* Many keys hammered from several threads: every key gets exactly its burst. */
static void test_table_concurrent_many_keys(void **state)
{
    struct rl_table *t = rl_table_new(100000);
    assert_non_null(t);
    static atomic_int allowed[MK_KEYS];
    for (int k = 0; k < MK_KEYS; k++)
        atomic_init(&allowed[k], 0);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, MK_THREADS);
    pthread_t th[MK_THREADS];
    struct mk_arg args[MK_THREADS];
    for (int i = 0; i < MK_THREADS; i++) {
        args[i] = (struct mk_arg){t, &barrier, i, allowed};
        assert_int_equal(pthread_create(&th[i], NULL, mk_worker, &args[i]), 0);
    }
    for (int i = 0; i < MK_THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);
    for (int k = 0; k < MK_KEYS; k++)
        assert_int_equal(atomic_load(&allowed[k]), 7);
    assert_int_equal(rl_table_size(t), MK_KEYS);
    rl_table_free(t);
}

/* 10x max_keys distinct live keys: the bound holds, every drop is counted. */
static void test_table_bound(void **state)
{
    const size_t max = 1000;
    struct rl_table *t = rl_table_new(max);
    assert_non_null(t);
    char key[200];
    for (size_t i = 0; i < 10 * max; i++) {
        /* every other key is long enough to be stored as a digest */
        int n = snprintf(key, sizeof(key), "%zu", i);
        if (i % 2) {
            memset(key + n, '#', 100);
            key[n + 100] = 0;
        }
        assert_true(decide_s(t, "bound", key, 1.0, 10, T0).allowed);
        assert_true(rl_table_size(t) <= max);
    }
    struct rl_table_stats st;
    rl_table_stats(t, &st);
    assert_int_equal(st.capacity, max);
    assert_int_equal(st.size, max); /* every shard is full by now */
    assert_int_equal(st.evictions, 10 * max - max);
    assert_int_equal(st.expired, 0);
    assert_int_equal(rl_table_evictions(t), 10 * max - max);
    /* the most recent key survived with its state (a fresh one would have 9 left) */
    struct gcra_result r = decide_s(t, "bound", key, 1.0, 10, T0);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 8);
    rl_table_free(t);

    assert_null(rl_table_new(0));
    t = rl_table_new(1); /* tiny tables work too */
    assert_non_null(t);
    assert_true(decide_s(t, "r", "a", 1.0, 1, T0).allowed);
    assert_true(decide_s(t, "r", "b", 1.0, 1, T0).allowed);
    assert_int_equal(rl_table_size(t), 1);
    assert_int_equal(rl_table_evictions(t), 1);
    rl_table_free(t);
}

/* When full, an idle key is dropped before any live one, even a less recent one. */
static void test_table_evicts_idle_first(void **state)
{
    struct rl_table *t = rl_table_new(16); /* one shard of 16 */
    assert_non_null(t);
    assert_true(decide_s(t, "r", "long-lived", 1e-6, 1, T0).allowed); /* LRU, live for days */
    char key[16];
    for (int i = 0; i < 15; i++) {
        snprintf(key, sizeof(key), "s%d", i);
        assert_true(decide_s(t, "r", key, 10.0, 1, T0).allowed); /* idle after 100 ms */
    }
    const uint64_t t1 = T0 + 1000000;
    for (int i = 0; i < 15; i++) {
        snprintf(key, sizeof(key), "n%d", i);
        assert_true(decide_s(t, "r", key, 10.0, 1, t1).allowed);
    }
    struct rl_table_stats st;
    rl_table_stats(t, &st);
    assert_int_equal(st.size, 16);
    assert_int_equal(st.expired, 15);
    assert_int_equal(st.evictions, 0);
    /* the least recently used but live key kept its state */
    assert_false(decide_s(t, "r", "long-lived", 1e-6, 1, t1).allowed);
    /* nothing idle left: the next insert evicts a live key, counted */
    assert_true(decide_s(t, "r", "newcomer", 10.0, 1, t1).allowed);
    rl_table_stats(t, &st);
    assert_int_equal(st.evictions, 1);
    assert_false(decide_s(t, "r", "long-lived", 1e-6, 1, t1).allowed); /* MRU: kept */
    rl_table_free(t);
}

/* A hot key touched between floods of new keys is never evicted. */
static void test_table_lru_keeps_hot_key(void **state)
{
    struct rl_table *t = rl_table_new(16);
    assert_non_null(t);
    assert_true(decide_s(t, "r", "hot", 1e-6, 1, T0).allowed);
    char key[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        decide_s(t, "r", key, 1e-6, 1, T0);
        assert_false(decide_s(t, "r", "hot", 1e-6, 1, T0).allowed);
    }
    assert_true(rl_table_evictions(t) > 900);
    rl_table_free(t);
}

static void test_table_sweep_idle(void **state)
{
    struct rl_table *t = rl_table_new(5000);
    assert_non_null(t);
    char key[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        decide_s(t, "r", key, 10.0, 3, T0); /* TAT = T0 + 100 ms */
    }
    for (int i = 0; i < 10; i++) { /* a few keys stay busy for longer */
        snprintf(key, sizeof(key), "k%d", i);
        decide_s(t, "r", key, 10.0, 3, T0);
    }
    assert_int_equal(rl_table_sweep(t, T0 + 99999), 0);
    assert_int_equal(rl_table_size(t), 1000);
    assert_int_equal(rl_table_sweep(t, T0 + 100000), 990);
    assert_int_equal(rl_table_size(t), 10);
    assert_int_equal(rl_table_sweep(t, T0 + 200000), 10);
    struct rl_table_stats st;
    rl_table_stats(t, &st);
    assert_int_equal(st.size, 0);
    assert_int_equal(st.expired, 1000);
    assert_int_equal(st.evictions, 0);
    /* freed entries are reused, and dropping idle keys changed nothing */
    struct gcra_result r = decide_s(t, "r", "k1", 10.0, 3, T0 + 200000);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 2);
    rl_table_free(t);
}

/* ------------------------------------------------------------- benchmark */

#define BENCH_KEYS 10000
#define BENCH_N 2000000

struct bench_arg {
    struct rl_table *t;
    char (*keys)[24];
    int nkeys;
    long n;
    pthread_barrier_t *barrier;
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *bench_worker(void *p)
{
    struct bench_arg *a = p;
    uint64_t now = rl_table_now_us();
    if (a->barrier)
        pthread_barrier_wait(a->barrier);
    for (long i = 0; i < a->n; i++) {
        const char *k = a->keys[i % a->nkeys];
        if ((i & 63) == 0)
            now = rl_table_now_us();
        rl_table_decide(a->t, "bench", k, strlen(k), 1000.0, 100, now);
    }
    return NULL;
}

static double bench_threads(int nthreads, char (*keys)[24], int nkeys_per_thread, bool shared)
{
    struct rl_table *t = rl_table_new(100000);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads + 1);
    pthread_t th[4];
    struct bench_arg args[4];
    for (int i = 0; i < nthreads; i++) {
        args[i] = (struct bench_arg){t, shared ? keys : keys + i * nkeys_per_thread,
                                     nkeys_per_thread, BENCH_N, &barrier};
        pthread_create(&th[i], NULL, bench_worker, &args[i]);
    }
    pthread_barrier_wait(&barrier);
    double t0 = mono_s();
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    double el = mono_s() - t0;
    pthread_barrier_destroy(&barrier);
    rl_table_free(t);
    return el * 1e9 / ((double)BENCH_N * nthreads); /* wall ns per decision, all threads */
}

static void test_bench(void **state)
{
    static char keys[2 * BENCH_KEYS][24];
    for (int i = 0; i < 2 * BENCH_KEYS; i++)
        snprintf(keys[i], sizeof(keys[i]), "203.0.%d.%d", i / 256, i % 256);

    struct rl_table *t = rl_table_new(100000);
    struct bench_arg a = {t, keys, BENCH_KEYS, BENCH_N, NULL};
    double s = mono_s();
    bench_worker(&a);
    double one = (mono_s() - s) * 1e9 / BENCH_N;
    a.nkeys = 1;
    s = mono_s();
    bench_worker(&a);
    double onekey = (mono_s() - s) * 1e9 / BENCH_N;
    rl_table_free(t);

    double two = bench_threads(2, keys, BENCH_KEYS, false);
    double twohot = bench_threads(2, keys, 1, true);
    printf("bench: 1 thread, 10k keys: %.1f ns/decision\n", one);
    printf("bench: 1 thread, 1 key:    %.1f ns/decision\n", onekey);
    printf("bench: 2 threads, 10k keys each: %.1f ns/decision wall (%.1f ns per thread-decision)\n",
           two, two * 2);
    printf("bench: 2 threads, same key: %.1f ns/decision wall (%.1f ns per thread-decision)\n",
           twohot, twohot * 2);
}

/* ----------------------------------------------------------------- redis */

static pid_t redis_pid = -1;
static char redis_dir[64];
static char redis_sock[128];
static redisContext *rc;
static char gcra_sha[64];
static char hb_sha[64];
static int noscript_reloads;

static void redis_stop(void)
{
    if (rc) {
        redisFree(rc);
        rc = NULL;
    }
    if (redis_pid > 0) {
        kill(redis_pid, SIGKILL);
        waitpid(redis_pid, NULL, 0);
        redis_pid = -1;
    }
    if (redis_dir[0]) {
        unlink(redis_sock);
        rmdir(redis_dir);
        redis_dir[0] = 0;
    }
}

static void redis_spawn(void)
{
    pid_t parent = getpid();
    redis_pid = fork();
    if (redis_pid != 0)
        return;
    /* the server dies with this test, even if the test crashes */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", redis_sock,
           "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", redis_dir,
           (char *)NULL);
    _exit(127);
}

static int script_load(const char *src, char *sha)
{
    redisReply *r = redisCommand(rc, "SCRIPT LOAD %s", src);
    int ok = r && r->type == REDIS_REPLY_STRING && r->len == 40;
    if (ok)
        memcpy(sha, r->str, 41);
    freeReplyObject(r);
    return ok ? 0 : -1;
}

static int redis_group_setup(void **state)
{
    atexit(redis_stop);
    snprintf(redis_dir, sizeof(redis_dir), "/tmp/moat-rl-test-XXXXXX");
    if (!mkdtemp(redis_dir)) {
        redis_dir[0] = 0;
        return 0;
    }
    snprintf(redis_sock, sizeof(redis_sock), "%s/redis.sock", redis_dir);
    redis_spawn();
    if (redis_pid < 0)
        return 0;
    for (int i = 0; i < 250 && !rc; i++) { /* up to 5 s */
        if (waitpid(redis_pid, NULL, WNOHANG) == redis_pid) {
            redis_pid = -1; /* not installed or failed to start: tests skip */
            break;
        }
        usleep(20000);
        redisContext *c = redisConnectUnix(redis_sock);
        if (c && !c->err)
            rc = c;
        else if (c)
            redisFree(c);
    }
    if (rc && (script_load(RL_GCRA_SCRIPT, gcra_sha) != 0 ||
               script_load(RL_HEARTBEAT_SCRIPT, hb_sha) != 0)) {
        print_error("SCRIPT LOAD failed\n");
        return -1;
    }
    if (!rc)
        print_message("redis-server unavailable: skipping Redis tests\n");
    return 0;
}

static int redis_group_teardown(void **state)
{
    redis_stop();
    return 0;
}

/* EVALSHA, loading the script again on NOSCRIPT: the pattern moat uses. */
static redisReply *evalsha(redisContext *c, char *sha, const char *src, int argc, const char **argv)
{
    const char *av[32];
    int n = 0;
    av[n++] = "EVALSHA";
    av[n++] = sha;
    for (int i = 0; i < argc; i++)
        av[n++] = argv[i];
    redisReply *r = redisCommandArgv(c, n, av, NULL);
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        redisReply *l = redisCommand(c, "SCRIPT LOAD %s", src);
        if (!l || l->type != REDIS_REPLY_STRING) {
            freeReplyObject(l);
            return NULL;
        }
        memcpy(sha, l->str, 41);
        freeReplyObject(l);
        noscript_reloads++;
        r = redisCommandArgv(c, n, av, NULL);
    }
    return r;
}

struct rl_reply {
    long long v[RL_REPLY_LEN];
};

static struct rl_reply gcra_n(redisContext *c, const char *rule, const char *key, const char *rate,
                              const char *burst, const char *n, const char *field)
{
    char skey[256], okey[256];
    snprintf(skey, sizeof(skey), "moat:rl:%s:%s", rule, key);
    snprintf(okey, sizeof(okey), "moat:rl:override:%s", rule);
    const char *argv[] = {"2", skey, okey, rate, burst, n, field};
    redisReply *r = evalsha(c, gcra_sha, RL_GCRA_SCRIPT, 7, argv);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("script error: %s", r->str);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, RL_REPLY_LEN);
    struct rl_reply out;
    for (size_t i = 0; i < RL_REPLY_LEN; i++) {
        assert_int_equal(r->element[i]->type, REDIS_REPLY_INTEGER);
        out.v[i] = r->element[i]->integer;
    }
    freeReplyObject(r);
    return out;
}

static struct rl_reply gcra_on(redisContext *c, const char *rule, const char *key, const char *rate,
                               const char *burst, const char *field)
{
    return gcra_n(c, rule, key, rate, burst, "1", field);
}

static struct rl_reply gcra(const char *rule, const char *key, const char *rate, const char *burst,
                            const char *field)
{
    return gcra_on(rc, rule, key, rate, burst, field);
}

static long long redis_int(const char *fmt, const char *arg)
{
    redisReply *r = redisCommand(rc, fmt, arg);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static void redis_cmd(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

static char *redis_get(const char *key)
{
    redisReply *r = redisCommand(rc, "GET %s", key);
    assert_non_null(r);
    char *v = r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    return v;
}

#define NEED_REDIS()                                                                               \
    do {                                                                                           \
        if (!rc)                                                                                   \
            skip();                                                                                \
    } while (0)

static void test_redis_burst_exact(void **state)
{
    NEED_REDIS();
    /* 0.001/s: T = 1000 s, so nothing refills during the test */
    for (int i = 0; i < 5; i++) {
        struct rl_reply r = gcra("t_burst", "ip1", "0.001", "5", "");
        assert_int_equal(r.v[RL_REPLY_ALLOWED], 1);
        assert_int_equal(r.v[RL_REPLY_REMAINING], 4 - i);
        assert_int_equal(r.v[RL_REPLY_RETRY_MS], 0);
        assert_int_equal(r.v[RL_REPLY_OVERRIDE], 0);
    }
    for (int i = 0; i < 20; i++) {
        struct rl_reply r = gcra("t_burst", "ip1", "0.001", "5", "");
        assert_int_equal(r.v[RL_REPLY_ALLOWED], 0);
        assert_int_equal(r.v[RL_REPLY_REMAINING], 0);
        assert_in_range(r.v[RL_REPLY_RETRY_MS], 999000, 1000000);
        assert_in_range(r.v[RL_REPLY_RESET_MS], 4999000, 5000000);
    }
    /* another key of the same rule is untouched */
    assert_int_equal(gcra("t_burst", "ip2", "0.001", "5", "").v[RL_REPLY_REMAINING], 4);
}

struct redis_conc_arg {
    pthread_barrier_t *barrier;
    atomic_int *allowed;
};

static void *redis_conc_worker(void *p)
{
    struct redis_conc_arg *a = p;
    redisContext *c = redisConnectUnix(redis_sock);
    pthread_barrier_wait(a->barrier);
    for (int i = 0; c && !c->err && i < 25; i++) {
        char skey[] = "moat:rl:t_conc:k", okey[] = "moat:rl:override:t_conc";
        char n[4]; /* 1..3 per call, like moat's batches */
        snprintf(n, sizeof n, "%d", 1 + i % 3);
        const char *argv[] = {"2", skey, okey, "0.001", "50", n, ""};
        redisReply *r = evalsha(c, gcra_sha, RL_GCRA_SCRIPT, 7, argv);
        if (r && r->type == REDIS_REPLY_ARRAY)
            atomic_fetch_add(a->allowed, (int)r->element[0]->integer);
        freeReplyObject(r);
    }
    redisFree(c);
    return NULL;
}

/* 8 connections x 25 calls of 1-3 requests against burst 50: exactly 50 pass. */
static void test_redis_concurrent_exact(void **state)
{
    NEED_REDIS();
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 8);
    atomic_int allowed = 0;
    pthread_t th[8];
    struct redis_conc_arg a = {&barrier, &allowed};
    for (int i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, redis_conc_worker, &a);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);
    assert_int_equal(atomic_load(&allowed), 50);
}

/* n requests in one call (moat's batches): the first k that fit pass, in order. */
static void test_redis_batch(void **state)
{
    NEED_REDIS();
    /* 10/s, burst 5: T = 100 ms */
    struct rl_reply r = gcra_n(rc, "t_batch", "k", "10", "5", "3", "");
    assert_int_equal(r.v[RL_REPLY_ALLOWED], 3);
    assert_int_equal(r.v[RL_REPLY_REMAINING], 2);
    assert_int_equal(r.v[RL_REPLY_RETRY_MS], 0);
    assert_in_range(r.v[RL_REPLY_RESET_MS], 290, 300);
    char *before = redis_get("moat:rl:t_batch:k");
    r = gcra_n(rc, "t_batch", "k", "10", "5", "4", ""); /* 2 of 4 fit */
    assert_int_equal(r.v[RL_REPLY_ALLOWED], 2);
    assert_int_equal(r.v[RL_REPLY_REMAINING], 0);
    assert_in_range(r.v[RL_REPLY_RETRY_MS], 1, 100);
    assert_in_range(r.v[RL_REPLY_RESET_MS], 490, 500);
    char *after = redis_get("moat:rl:t_batch:k");
    assert_string_not_equal(before, after);
    free(before);
    free(after);
    /* a full bucket: none pass, nothing is written, and the wait is the same as for one */
    before = redis_get("moat:rl:t_batch:k");
    r = gcra_n(rc, "t_batch", "k", "10", "5", "50", "");
    assert_int_equal(r.v[RL_REPLY_ALLOWED], 0);
    assert_in_range(r.v[RL_REPLY_RETRY_MS], 1, 100);
    after = redis_get("moat:rl:t_batch:k");
    assert_string_equal(before, after);
    free(before);
    free(after);
    /* a batch larger than the burst from an idle key: exactly the burst */
    r = gcra_n(rc, "t_batch", "idle", "0.001", "7", "1000", "");
    assert_int_equal(r.v[RL_REPLY_ALLOWED], 7);
    assert_int_equal(r.v[RL_REPLY_REMAINING], 0);
    assert_true(r.v[RL_REPLY_RETRY_MS] > 900000);
}

static void test_redis_rejections_dont_consume(void **state)
{
    NEED_REDIS();
    /* 10/s: T = 100 ms */
    assert_int_equal(gcra("t_rej", "k", "10", "2", "").v[RL_REPLY_ALLOWED], 1);
    assert_int_equal(gcra("t_rej", "k", "10", "2", "").v[RL_REPLY_ALLOWED], 1);
    char *before = redis_get("moat:rl:t_rej:k");
    assert_non_null(before);
    long long last_retry = 1000000;
    for (int i = 0; i < 30; i++) {
        struct rl_reply r = gcra("t_rej", "k", "10", "2", "");
        assert_int_equal(r.v[RL_REPLY_ALLOWED], 0);
        assert_in_range(r.v[RL_REPLY_RETRY_MS], 1, 100);
        assert_true(r.v[RL_REPLY_RETRY_MS] <= last_retry); /* the wait only shrinks */
        last_retry = r.v[RL_REPLY_RETRY_MS];
    }
    char *after = redis_get("moat:rl:t_rej:k");
    assert_non_null(after);
    assert_string_equal(before, after); /* no write on rejection */
    free(before);
    free(after);
    usleep((useconds_t)(last_retry + 2) * 1000);
    assert_int_equal(gcra("t_rej", "k", "10", "2", "").v[RL_REPLY_ALLOWED], 1);
    struct rl_reply r = gcra("t_rej", "k", "10", "2", "");
    assert_int_equal(r.v[RL_REPLY_ALLOWED], 0);
    assert_in_range(r.v[RL_REPLY_RETRY_MS], 50, 100);
}

static void test_redis_ttl(void **state)
{
    NEED_REDIS();
    struct rl_reply r = gcra("t_ttl", "k", "2", "3", ""); /* T = 500 ms */
    assert_int_equal(r.v[RL_REPLY_RESET_MS], 500);
    long long pttl = redis_int("PTTL %s", "moat:rl:t_ttl:k");
    assert_in_range(pttl, 400, 500);
    r = gcra("t_ttl", "k", "2", "3", "");
    assert_in_range(r.v[RL_REPLY_RESET_MS], 900, 1000);
    assert_in_range(redis_int("PTTL %s", "moat:rl:t_ttl:k"), 800, 1000);

    /* the state vanishes once the bucket is full again */
    gcra("t_ttl", "short", "100", "1", ""); /* T = 10 ms */
    assert_int_equal(redis_int("EXISTS %s", "moat:rl:t_ttl:short"), 1);
    usleep(40000);
    assert_int_equal(redis_int("EXISTS %s", "moat:rl:t_ttl:short"), 0);
}

static void test_redis_override(void **state)
{
    NEED_REDIS();
    redis_cmd("DEL moat:rl:override:t_ov");
    for (int i = 0; i < 2; i++) {
        assert_int_equal(gcra("t_ov", "acme", "0.001", "2", "acme").v[RL_REPLY_ALLOWED], 1);
        assert_int_equal(gcra("t_ov", "globex", "0.001", "2", "globex").v[RL_REPLY_ALLOWED], 1);
    }
    struct rl_reply r = gcra("t_ov", "acme", "0.001", "2", "acme");
    assert_int_equal(r.v[RL_REPLY_ALLOWED], 0);
    assert_true(r.v[RL_REPLY_RETRY_MS] > 900000);

    /* raise acme to 100/s: the very next decision uses it */
    redis_cmd("HSET moat:rl:override:t_ov acme 100/s");
    r = gcra("t_ov", "acme", "0.001", "2", "acme");
    assert_int_equal(r.v[RL_REPLY_OVERRIDE], 1);
    assert_int_equal(r.v[RL_REPLY_ALLOWED], 0); /* still owes 2 requests, at 10 ms each */
    assert_in_range(r.v[RL_REPLY_RETRY_MS], 1, 10);
    assert_in_range(r.v[RL_REPLY_RESET_MS], 1, 20);
    usleep(30000);
    for (int i = 0; i < 2; i++) {
        r = gcra("t_ov", "acme", "0.001", "2", "acme");
        assert_int_equal(r.v[RL_REPLY_ALLOWED], 1);
    }
    /* other tenants keep the default */
    r = gcra("t_ov", "globex", "0.001", "2", "globex");
    assert_int_equal(r.v[RL_REPLY_OVERRIDE], 0);
    assert_int_equal(r.v[RL_REPLY_ALLOWED], 0);
    assert_true(r.v[RL_REPLY_RETRY_MS] > 900000);

    /* accepted forms */
    redis_cmd("HSET moat:rl:override:t_ov acme 6000/m");
    r = gcra("t_ov", "acme2", "0.001", "1", "acme");
    assert_int_equal(r.v[RL_REPLY_OVERRIDE], 1);
    assert_int_equal(r.v[RL_REPLY_RESET_MS], 10);
    redis_cmd("HSET moat:rl:override:t_ov acme 250");
    r = gcra("t_ov", "acme3", "0.001", "1", "acme");
    assert_int_equal(r.v[RL_REPLY_RESET_MS], 4);
    redis_cmd("HSET moat:rl:override:t_ov acme %s", " 7200 / h ");
    r = gcra("t_ov", "acme4", "0.001", "1", "acme");
    assert_int_equal(r.v[RL_REPLY_OVERRIDE], 1);
    assert_int_equal(r.v[RL_REPLY_RESET_MS], 500);
    /* unparsable: ignored, reported, default rate used */
    redis_cmd("HSET moat:rl:override:t_ov acme fast");
    r = gcra("t_ov", "acme5", "0.001", "1", "acme");
    assert_int_equal(r.v[RL_REPLY_OVERRIDE], -1);
    assert_int_equal(r.v[RL_REPLY_RESET_MS], 1000000);
    redis_cmd("HSET moat:rl:override:t_ov acme 0/s");
    assert_int_equal(gcra("t_ov", "acme6", "0.001", "1", "acme").v[RL_REPLY_OVERRIDE], -1);
    /* removed: back to the default */
    redis_cmd("HDEL moat:rl:override:t_ov acme");
    r = gcra("t_ov", "acme7", "0.001", "1", "acme");
    assert_int_equal(r.v[RL_REPLY_OVERRIDE], 0);
    assert_int_equal(r.v[RL_REPLY_RESET_MS], 1000000);
}

static void test_redis_noscript_reload(void **state)
{
    NEED_REDIS();
    redis_cmd("SCRIPT FLUSH");
    int before = noscript_reloads;
    struct rl_reply r = gcra("t_flush", "k", "1", "1", "");
    assert_int_equal(r.v[RL_REPLY_ALLOWED], 1);
    assert_int_equal(noscript_reloads, before + 1);
    r = gcra("t_flush", "k", "1", "1", "");
    assert_int_equal(r.v[RL_REPLY_ALLOWED], 0);
    assert_int_equal(noscript_reloads, before + 1);
}

static void expect_bad_args(const char *rate, const char *burst, const char *cost)
{
    const char *argv[] = {"2", "moat:rl:t_bad:k", "moat:rl:override:t_bad", rate, burst, cost, ""};
    redisReply *r = evalsha(rc, gcra_sha, RL_GCRA_SCRIPT, 7, argv);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(r->str, "moat-rl: bad arguments"));
    freeReplyObject(r);
}

static void test_redis_bad_args(void **state)
{
    NEED_REDIS();
    expect_bad_args("abc", "1", "1");
    expect_bad_args("0", "1", "1");
    expect_bad_args("-3", "1", "1");
    expect_bad_args("nan", "1", "1");
    expect_bad_args("10", "0", "1");
    expect_bad_args("10", "1.5", "1");
    expect_bad_args("10", "2", "0");
    expect_bad_args("10", "2", "-1");
    expect_bad_args("10", "2", "1.5");
    expect_bad_args("10", "2", "1000001");
    assert_int_equal(redis_int("EXISTS %s", "moat:rl:t_bad:k"), 0);
}

/* One call with several groups (v3): argv as moat builds it, all keys then all args. */
static redisReply *gcra_groups(int ng, const char *const *keys, const char *const *args)
{
    const char *argv[1 + 6 * 4];
    char nk[8];
    snprintf(nk, sizeof nk, "%d", 2 * ng);
    int n = 0;
    argv[n++] = nk;
    for (int i = 0; i < 2 * ng; i++)
        argv[n++] = keys[i];
    for (int i = 0; i < 4 * ng; i++)
        argv[n++] = args[i];
    redisReply *r = evalsha(rc, gcra_sha, RL_GCRA_SCRIPT, n, argv);
    assert_non_null(r);
    return r;
}

/* Three groups in one call: each is decided as it would be alone, in order, and two
 * groups on one state key (one IP, two tenants) see each other's writes. */
static void test_redis_groups(void **state)
{
    NEED_REDIS();
    redis_cmd("HSET moat:rl:override:t_grp %s %s", "fast", "0.002");
    const char *keys[] = {"moat:rl:t_grp:a", "moat:rl:override:t_grp",
                          "moat:rl:t_grp:b", "moat:rl:override:t_grp",
                          "moat:rl:t_grp:a", "moat:rl:override:t_grp"};
    const char *args[] = {"0.001", "5", "3", "",      /* a: 3 of burst 5 */
                          "0.001", "2", "4", "",      /* b: 2 of 4 pass */
                          "0.001", "5", "4", "fast"}; /* a again, rate overridden */
    redisReply *r = gcra_groups(3, keys, args);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("script error: %s", r->str);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 3 * RL_REPLY_LEN);
    long long v[3 * RL_REPLY_LEN];
    for (size_t i = 0; i < r->elements; i++) {
        assert_int_equal(r->element[i]->type, REDIS_REPLY_INTEGER);
        v[i] = r->element[i]->integer;
    }
    freeReplyObject(r);
    long long *a = v, *b = v + RL_REPLY_LEN, *a2 = v + 2 * RL_REPLY_LEN;
    assert_int_equal(a[RL_REPLY_ALLOWED], 3);
    assert_int_equal(a[RL_REPLY_REMAINING], 2);
    assert_int_equal(b[RL_REPLY_ALLOWED], 2);
    assert_int_equal(b[RL_REPLY_REMAINING], 0);
    assert_in_range(b[RL_REPLY_RETRY_MS], 999000, 1000000);
    /* the first group's 3 of 5, rescaled to the override's T = 500 s, are still 3:
     * 2 of 4 fit (decided at the same TIME, so nothing refilled in between) */
    assert_int_equal(a2[RL_REPLY_OVERRIDE], 1);
    assert_int_equal(a2[RL_REPLY_ALLOWED], 2);
    assert_int_equal(a2[RL_REPLY_REMAINING], 0);
    /* the same decisions one by one agree with the state the call left */
    assert_int_equal(gcra("t_grp", "b", "0.001", "2", "").v[RL_REPLY_ALLOWED], 0);
}

/* Any group's bad argument fails the whole call before anything is written. */
static void test_redis_groups_bad_args(void **state)
{
    NEED_REDIS();
    const char *keys[] = {"moat:rl:t_grpbad:a", "moat:rl:override:t_grpbad", "moat:rl:t_grpbad:b",
                          "moat:rl:override:t_grpbad"};
    const char *args[] = {"10", "5", "1", "", "10", "0", "1", ""};
    redisReply *r = gcra_groups(2, keys, args);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(r->str, "moat-rl: bad arguments"));
    freeReplyObject(r);
    assert_int_equal(redis_int("EXISTS %s", "moat:rl:t_grpbad:a"), 0);
    /* keys and arguments out of step */
    const char *odd[] = {"3",
                         "moat:rl:t_grpbad:a",
                         "moat:rl:override:t_grpbad",
                         "moat:rl:t_grpbad:b",
                         "10",
                         "5",
                         "1",
                         ""};
    r = evalsha(rc, gcra_sha, RL_GCRA_SCRIPT, 8, odd);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    const char *few[] = {"4", keys[0], keys[1], keys[2], keys[3], "10", "5", "1", ""};
    r = evalsha(rc, gcra_sha, RL_GCRA_SCRIPT, 9, few);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    assert_int_equal(redis_int("EXISTS %s", "moat:rl:t_grpbad:a"), 0);
}

static long long heartbeat(const char *id, const char *live_ms)
{
    const char *argv[] = {"1", "moat:rl:instances", id, live_ms};
    redisReply *r = evalsha(rc, hb_sha, RL_HEARTBEAT_SCRIPT, 4, argv);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("heartbeat error: %s", r->str);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

static void test_redis_heartbeat(void **state)
{
    NEED_REDIS();
    redis_cmd("DEL moat:rl:instances");
    assert_int_equal(heartbeat("gw-a:1", "3000"), 1);
    assert_int_equal(heartbeat("gw-b:2", "3000"), 2);
    assert_int_equal(heartbeat("gw-a:1", "3000"), 2);
    redis_cmd("ZADD moat:rl:instances 1 gw-dead:3"); /* last beat long ago */
    assert_int_equal(heartbeat("gw-b:2", "3000"), 2);
    redisReply *r = redisCommand(rc, "ZSCORE moat:rl:instances gw-dead:3");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    assert_in_range(redis_int("PTTL %s", "moat:rl:instances"), 5000, 6000);
    /* a member that stops beating drops out after the liveness window */
    assert_int_equal(heartbeat("gw-a:1", "50"), 2);
    usleep(80000);
    assert_int_equal(heartbeat("gw-a:1", "50"), 1);
    r = redisCommand(rc, "EVALSHA %s 1 moat:rl:instances %s %s", hb_sha, "", "3000");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

int main(void)
{
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_gcra_interval),
        cmocka_unit_test(test_gcra_burst_exact),
        cmocka_unit_test(test_gcra_rejections_dont_consume),
        cmocka_unit_test(test_gcra_refill_caps_at_burst),
        cmocka_unit_test(test_gcra_rate_change_rescales),
        cmocka_unit_test(test_gcra_edges),
        cmocka_unit_test(test_table_exact),
        cmocka_unit_test(test_table_key_identity),
        cmocka_unit_test(test_table_concurrent_one_key),
        cmocka_unit_test(test_table_concurrent_many_keys),
        cmocka_unit_test(test_table_bound),
        cmocka_unit_test(test_table_evicts_idle_first),
        cmocka_unit_test(test_table_lru_keeps_hot_key),
        cmocka_unit_test(test_table_sweep_idle),
        cmocka_unit_test(test_bench),
    };
    const struct CMUnitTest redis[] = {
        cmocka_unit_test(test_redis_burst_exact),
        cmocka_unit_test(test_redis_concurrent_exact),
        cmocka_unit_test(test_redis_batch),
        cmocka_unit_test(test_redis_rejections_dont_consume),
        cmocka_unit_test(test_redis_ttl),
        cmocka_unit_test(test_redis_override),
        cmocka_unit_test(test_redis_noscript_reload),
        cmocka_unit_test(test_redis_bad_args),
        cmocka_unit_test(test_redis_groups),
        cmocka_unit_test(test_redis_groups_bad_args),
        cmocka_unit_test(test_redis_heartbeat),
    };
    int failed = cmocka_run_group_tests_name("ratelimit_table", pure, NULL, NULL);
    failed += cmocka_run_group_tests_name("ratelimit_redis", redis, redis_group_setup,
                                          redis_group_teardown);
    return failed;
}
