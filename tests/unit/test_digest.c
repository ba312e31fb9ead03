/* digest: SHA-256 with a per-thread context (src/util/digest.h). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "util/digest.h"

static void hex(const uint8_t *d, char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void expect_sha256(const char *in, size_t n, const char *want)
{
    uint8_t d[DIGEST_SHA256_LEN];
    char h[65];
    assert_int_equal(digest_sha256(in, n, d), 0);
    hex(d, h);
    assert_string_equal(h, want);
}

/* FIPS 180-2 vectors; the context is reused between calls without leaking state */
static void test_vectors(void **state)
{
    for (int round = 0; round < 3; round++) {
        expect_sha256("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        expect_sha256("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        expect_sha256(m, strlen(m),
                      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    }
    digest_thread_cleanup();
    digest_thread_cleanup(); /* idempotent */
    expect_sha256("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    digest_thread_cleanup();
}

static void *hash_many(void *arg)
{
    int *bad = arg;
    char msg[32];
    uint8_t d[DIGEST_SHA256_LEN], again[DIGEST_SHA256_LEN];
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(msg, sizeof msg, "token-%d", i % 7);
        if (digest_sha256(msg, (size_t)n, d) != 0 || digest_sha256(msg, (size_t)n, again) != 0 ||
            memcmp(d, again, sizeof d) != 0)
            (*bad)++;
    }
    expect_sha256("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    digest_thread_cleanup();
    return NULL;
}

/* each thread has its own context: concurrent use gives the same digests */
/* every byte value, a prefix only, and the NUL after exactly 2n digits */
static void test_hex(void **state)
{
    uint8_t all[256];
    char out[513], want[3];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    memset(out, 'Z', sizeof out);
    digest_hex(all, 256, out);
    for (int i = 0; i < 256; i++) {
        snprintf(want, sizeof want, "%02x", i);
        assert_memory_equal(out + 2 * i, want, 2);
    }
    assert_int_equal(out[512], '\0');
    memset(out, 'Z', sizeof out);
    digest_hex((const uint8_t *)"\xab\x01\xff", 2, out);
    assert_string_equal(out, "ab01");
    assert_int_equal(out[5], 'Z');
    digest_hex(all, 0, out);
    assert_string_equal(out, "");
}

static void test_threads(void **state)
{
    pthread_t th[4];
    int bad[4] = {0};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hash_many, &bad[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(bad[i], 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
