/*
 * Unit tests for src/signature: the example vector of docs/signature.md, tamper
 * detection field by field, rotation, clock skew, header value syntax, key files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "policy/signature.h"

/* ---- the example of docs/signature.md (also asserted by the pytest test) ---- */

#define DOC_KEY_HEX "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define DOC_T 1700000000
#define DOC_CANONICAL                                                                              \
    "moat-v1\n1700000000\nGET\n/api/v1/projects?page=2&sort=name\napp.example.com\nacme\n"         \
    "user-42\n1\n4f9c2d1e8a7b4c3d9e0f1a2b3c4d5e6f"
#define DOC_VALUE "t=1700000000,v1=f0e7f3d5d753d398111f61d57fe7215e0b3cea8c925e1fc251065187edb985ae"

#define S(lit) lit, sizeof(lit) - 1

static struct signature_fields doc_fields(void)
{
    struct signature_fields f = {
        .t = DOC_T,
        .method = S("GET"),
        .target = S("/api/v1/projects?page=2&sort=name"),
        .host = S("app.example.com"),
        .tenant = S("acme"),
        .user = S("user-42"),
        .mfa = S("1"),
        .request_id = S("4f9c2d1e8a7b4c3d9e0f1a2b3c4d5e6f"),
    };
    return f;
}

static struct signature_key key_of_byte(uint8_t start, size_t len)
{
    struct signature_key k = {.len = len};
    for (size_t i = 0; i < len; i++)
        k.key[i] = (uint8_t)(start + i);
    return k;
}

static struct signature_key doc_key(void)
{
    return key_of_byte(0, 32);
}

static void test_doc_vector(void **state)
{
    struct signature_fields f = doc_fields();
    struct signature_key k = doc_key();
    char canon[512], value[SIGNATURE_VALUE_MAX];

    assert_int_equal(signature_canonical(&f, canon, sizeof canon), strlen(DOC_CANONICAL));
    assert_string_equal(canon, DOC_CANONICAL);
    assert_int_equal(signature_header_value(&k, &f, value, sizeof value), strlen(DOC_VALUE));
    assert_string_equal(value, DOC_VALUE);
    assert_true(signature_verify(&k, 1, &f, DOC_VALUE, DOC_T, 300));
}

static void test_host_is_lowercased(void **state)
{
    struct signature_fields f = doc_fields();
    struct signature_key k = doc_key();
    char value[SIGNATURE_VALUE_MAX];

    f.host = "App.Example.COM";
    assert_int_not_equal(signature_header_value(&k, &f, value, sizeof value), 0);
    assert_string_equal(value, DOC_VALUE);
    assert_true(signature_verify(&k, 1, &f, DOC_VALUE, DOC_T, 0));
}

static void test_empty_fields(void **state)
{
    struct signature_fields f = {.t = 5, .method = S("GET"), .target = S("/")};
    char canon[64];

    assert_int_equal(signature_canonical(&f, canon, sizeof canon), 20);
    assert_string_equal(canon, "moat-v1\n5\nGET\n/\n\n\n\n\n");
}

/* Changing any one signed field (or t) must break verification. */
static void test_any_altered_field_fails(void **state)
{
    struct signature_key k = doc_key();
    const struct signature_fields base = doc_fields();
    struct signature_fields f;

    for (int i = 0; i < 8; i++) {
        f = base;
        switch (i) {
        case 0:
            f.method = "PUT";
            break;
        case 1:
            f.target_len--;
            break; /* "...sort=nam" */
        case 2:
            f.host = "app.example.org";
            break;
        case 3:
            f.tenant = "acmf";
            break;
        case 4:
            f.user = "user-43";
            break;
        case 5:
            f.mfa = "0";
            break;
        case 6:
            f.request_id_len = 0;
            break;
        case 7:
            f.tenant_len = 0;
            break;
        }
        assert_false(signature_verify(&k, 1, &f, DOC_VALUE, DOC_T, 300));
    }
    /* Moving a byte between adjacent fields changes the line structure. */
    f = base;
    f.tenant = "acmeuser-42";
    f.tenant_len = 11;
    f.user_len = 0;
    assert_false(signature_verify(&k, 1, &f, DOC_VALUE, DOC_T, 300));
    /* Another t with the same MAC. */
    f = base;
    assert_false(signature_verify(
        &k, 1, &f,
        "t=1700000001,v1=f0e7f3d5d753d398111f61d57fe7215e0b3cea8c925e1fc251065187edb985ae", DOC_T,
        300));
    /* Another key. */
    struct signature_key other = key_of_byte(1, 32);
    assert_false(signature_verify(&other, 1, &f, DOC_VALUE, DOC_T, 300));
}

static void test_previous_key_accepted(void **state)
{
    struct signature_key keys[2] = {key_of_byte(0x40, 32), key_of_byte(0x80, 48)};
    struct signature_fields f = doc_fields();
    char value[SIGNATURE_VALUE_MAX];

    /* Moat signs with the new key; upstreams list [previous, current] in any order. */
    assert_int_not_equal(signature_header_value(&keys[1], &f, value, sizeof value), 0);
    assert_true(signature_verify(keys, 2, &f, value, DOC_T, 300));
    assert_true(signature_verify(&keys[1], 1, &f, value, DOC_T, 300));
    assert_false(signature_verify(&keys[0], 1, &f, value, DOC_T, 300));
    /* Old signatures still verify during the switch. */
    assert_int_not_equal(signature_header_value(&keys[0], &f, value, sizeof value), 0);
    assert_true(signature_verify(keys, 2, &f, value, DOC_T, 300));
    assert_false(signature_verify(&keys[1], 1, &f, value, DOC_T, 300));
}

static void test_skew(void **state)
{
    struct signature_key k = doc_key();
    struct signature_fields f = doc_fields();

    assert_true(signature_verify(&k, 1, &f, DOC_VALUE, DOC_T + 300, 300));
    assert_true(signature_verify(&k, 1, &f, DOC_VALUE, DOC_T - 300, 300));
    assert_false(signature_verify(&k, 1, &f, DOC_VALUE, DOC_T + 301, 300));
    assert_false(signature_verify(&k, 1, &f, DOC_VALUE, DOC_T - 301, 300));
    assert_false(signature_verify(&k, 1, &f, DOC_VALUE, DOC_T, -1));
    assert_false(signature_verify(&k, 1, &f, DOC_VALUE, INT64_MIN, INT64_MAX - 1));
    assert_true(signature_verify(&k, 1, &f, DOC_VALUE, DOC_T, 0));
}

static void test_header_value_syntax(void **state)
{
    struct signature_key k = doc_key();
    struct signature_fields f = doc_fields();
    const char *mac = "f0e7f3d5d753d398111f61d57fe7215e0b3cea8c925e1fc251065187edb985ae";
    const char *other = "00e7f3d5d753d398111f61d57fe7215e0b3cea8c925e1fc251065187edb985ae";
    char v[256];

    /* Accepted: unknown schemes ignored, any of several v1 may match, any order. */
    snprintf(v, sizeof v, "t=1700000000,v1=%s,v2=whatever", mac);
    assert_true(signature_verify(&k, 1, &f, v, DOC_T, 300));
    snprintf(v, sizeof v, "v1=%s,t=1700000000,v1=%s", other, mac);
    assert_true(signature_verify(&k, 1, &f, v, DOC_T, 300));

    const char *bad[] = {
        "",
        "t=1700000000",
        "v1=f0e7f3d5d753d398111f61d57fe7215e0b3cea8c925e1fc251065187edb985ae",
        "t=1700000000,v1=F0E7F3D5D753D398111F61D57FE7215E0B3CEA8C925E1FC251065187EDB985AE",
        "t=1700000000,v1=f0e7f3d5d753d398111f61d57fe7215e0b3cea8c925e1fc251065187edb985a",
        "t=1700000000,v1=f0e7f3d5d753d398111f61d57fe7215e0b3cea8c925e1fc251065187edb985ae0",
        "t=01700000000,v1=f0e7f3d5d753d398111f61d57fe7215e0b3cea8c925e1fc251065187edb985ae",
        "t=+1700000000,v1=f0e7f3d5d753d398111f61d57fe7215e0b3cea8c925e1fc251065187edb985ae",
        "t=1700000000, v1=f0e7f3d5d753d398111f61d57fe7215e0b3cea8c925e1fc251065187edb985ae",
        "t=1700000000,,v1=f0e7f3d5d753d398111f61d57fe7215e0b3cea8c925e1fc251065187edb985ae",
        "t=1700000000,v1=f0e7f3d5d753d398111f61d57fe7215e0b3cea8c925e1fc251065187edb985ae,",
        "t=1,t=1700000000,v1=f0e7f3d5d753d398111f61d57fe7215e0b3cea8c925e1fc251065187edb985ae",
        "t=1700000000,garbage,v1=f0e7f3d5d753d398111f61d57fe7215e0b3cea8c925e1fc251065187edb985ae",
        "t=99999999999999999999,v1="
        "f0e7f3d5d753d398111f61d57fe7215e0b3cea8c925e1fc251065187edb985ae",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (signature_verify(&k, 1, &f, bad[i], DOC_T, 300))
            fail_msg("accepted malformed value %zu: \"%s\"", i, bad[i]);
    }
    assert_false(signature_verify(&k, 1, &f, NULL, DOC_T, 300));
    assert_false(signature_verify(&k, 0, &f, DOC_VALUE, DOC_T, 300));
}

static void test_invalid_fields_rejected(void **state)
{
    struct signature_key k = doc_key();
    struct signature_fields f;
    char out[SIGNATURE_VALUE_MAX], canon[512];

    for (int i = 0; i < 5; i++) {
        f = doc_fields();
        switch (i) {
        case 0:
            f.tenant = "ac\nme";
            f.tenant_len = 5;
            break;
        case 1:
            f.target = "/x\r";
            f.target_len = 3;
            break;
        case 2:
            f.request_id = NULL;
            break; /* len 32, NULL pointer */
        case 3:
            f.t = -1;
            break;
        case 4:
            f.host = "h\n";
            f.host_len = 2;
            break;
        }
        assert_int_equal(signature_header_value(&k, &f, out, sizeof out), 0);
        assert_int_equal(signature_canonical(&f, canon, sizeof canon), 0);
        if (i != 3) /* verify takes t from the header value, not from f */
            assert_false(signature_verify(&k, 1, &f, DOC_VALUE, DOC_T, 300));
    }
    /* CR/LF at every position of longer fields (the word-at-a-time check). */
    static char tenant[41], target[3000];
    for (size_t pos = 0; pos < 40; pos++) {
        for (int j = 0; j < 2; j++) {
            memset(tenant, 't', 40);
            tenant[pos] = j ? '\r' : '\n';
            f = doc_fields();
            f.tenant = tenant;
            f.tenant_len = 40;
            assert_int_equal(signature_header_value(&k, &f, out, sizeof out), 0);
            assert_int_equal(signature_canonical(&f, canon, sizeof canon), 0);
        }
    }
    /* ... and deep inside a target long enough to bypass the staging buffer. */
    memset(target, 'a', sizeof target);
    target[0] = '/';
    f = doc_fields();
    f.target = target;
    f.target_len = sizeof target;
    assert_int_not_equal(signature_header_value(&k, &f, out, sizeof out), 0);
    target[2999] = '\r';
    assert_int_equal(signature_header_value(&k, &f, out, sizeof out), 0);
    target[2999] = 'a';
    target[1500] = '\n';
    assert_int_equal(signature_header_value(&k, &f, out, sizeof out), 0);
    /* Bytes that only look like CR/LF in one nibble or with the high bit set. */
    f = doc_fields();
    f.tenant = "\x8a\x8d\x1a\x1d\xa0\xd0\x0b\x0c\x09\x0e";
    f.tenant_len = 10;
    assert_int_not_equal(signature_header_value(&k, &f, out, sizeof out), 0);

    f = doc_fields();
    assert_int_equal(signature_header_value(&k, &f, out, SIGNATURE_VALUE_MAX - 1), 0);
    assert_int_equal(signature_canonical(&f, canon, strlen(DOC_CANONICAL)), 0);
    assert_int_equal(signature_canonical(&f, canon, strlen(DOC_CANONICAL) + 1),
                     strlen(DOC_CANONICAL));
    struct signature_key shortkey = key_of_byte(0, 31);
    assert_int_equal(signature_header_value(&shortkey, &f, out, sizeof out), 0);
}

/* Independent HMAC over the buffered canonical string, to check the streaming path. */
static void expected_value(const struct signature_key *k, const struct signature_fields *f,
                           char *out, size_t outlen)
{
    static char canon[16384];
    unsigned char md[32];
    size_t mdlen, n = signature_canonical(f, canon, sizeof canon);
    assert_int_not_equal(n, 0);
    assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, k->key, k->len,
                              (unsigned char *)canon, n, md, sizeof md, &mdlen));
    int w = snprintf(out, outlen, "t=%lld,v1=", (long long)f->t);
    for (size_t i = 0; i < 32; i++)
        w += snprintf(out + w, outlen - (size_t)w, "%02x", md[i]);
}

static void test_long_fields_and_rekeying(void **state)
{
    static char target[5000], host[3000];
    struct signature_key k1 = key_of_byte(3, 32), k2 = key_of_byte(9, 64);
    struct signature_fields f = doc_fields();
    char got[SIGNATURE_VALUE_MAX], want[SIGNATURE_VALUE_MAX + 16];

    memset(target, 'a', sizeof target);
    target[0] = '/';
    memset(host, 'H', sizeof host);
    f.target = target;
    f.target_len = sizeof target;
    f.host = host;
    f.host_len = sizeof host;
    /* Alternate keys: the per-thread context must follow the key it is given. */
    for (int i = 0; i < 6; i++) {
        const struct signature_key *k = (i % 2) ? &k2 : &k1;
        f.t = DOC_T + i;
        f.target_len = sizeof target - (size_t)i * 700;
        assert_int_not_equal(signature_header_value(k, &f, got, sizeof got), 0);
        expected_value(k, &f, want, sizeof want);
        assert_string_equal(got, want);
        if (i == 3)
            signature_thread_cleanup();
    }
    signature_thread_cleanup();
    signature_thread_cleanup(); /* idempotent */
}

/* Two threads signing with different keys at once: each keeps its own context. */
struct thread_job {
    struct signature_key key;
    int mismatches;
};

static void *sign_many(void *arg)
{
    struct thread_job *job = arg;
    struct signature_fields f = doc_fields();
    char got[SIGNATURE_VALUE_MAX];

    for (int i = 0; i < 2000; i++) {
        f.t = DOC_T + i;
        if (signature_header_value(&job->key, &f, got, sizeof got) == 0) {
            job->mismatches++;
            continue;
        }
        /* Independent check: verify with this key only. */
        if (!signature_verify(&job->key, 1, &f, got, f.t, 0))
            job->mismatches++;
    }
    signature_thread_cleanup();
    return NULL;
}

static void test_threads(void **state)
{
    struct thread_job jobs[2] = {{.key = key_of_byte(1, 32)}, {.key = key_of_byte(2, 33)}};
    pthread_t th[2];

    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, sign_many, &jobs[i]), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(jobs[i].mismatches, 0);
    }
}

/* ---- key files ----------------------------------------------------------- */

static char *write_tmp(const void *data, size_t len)
{
    static char path[64];
    strcpy(path, "/tmp/moat-sigkey-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    return path;
}

static int load_bytes(const void *data, size_t len, struct signature_key *k, char *err,
                      size_t errlen)
{
    char *path = write_tmp(data, len);
    int rc = signature_key_load(path, k, err, errlen);
    unlink(path);
    return rc;
}

static void test_key_file_formats(void **state)
{
    struct signature_key k, want = doc_key();
    char err[256];
    uint8_t raw[40];

    /* Hex as `openssl rand -hex 32` writes it (trailing newline). */
    assert_int_equal(load_bytes(S(DOC_KEY_HEX "\n"), &k, err, sizeof err), 0);
    assert_int_equal(k.len, 32);
    assert_memory_equal(k.key, want.key, 32);
    /* Upper-case hex, CRLF and spaces after it. */
    assert_int_equal(load_bytes(S("000102030405060708090A0B0C0D0E0F"
                                  "101112131415161718191A1B1C1D1E1F \r\n\t"),
                                &k, err, sizeof err),
                     0);
    assert_memory_equal(k.key, want.key, 32);
    /* 64 bytes of hex. */
    assert_int_equal(load_bytes(S(DOC_KEY_HEX DOC_KEY_HEX), &k, err, sizeof err), 0);
    assert_int_equal(k.len, 64);
    /* Raw bytes (not all hex digits), used as they are. */
    for (size_t i = 0; i < sizeof raw; i++)
        raw[i] = (uint8_t)(0x80 + i);
    assert_int_equal(load_bytes(raw, sizeof raw, &k, err, sizeof err), 0);
    assert_int_equal(k.len, 40);
    assert_memory_equal(k.key, raw, 40);
    /* Raw bytes: trailing whitespace is stripped, leading is not. */
    static const char spaced[] = " zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz \n\n"; /* 1 + 33 + 3 */
    assert_int_equal(load_bytes(spaced, sizeof spaced - 1, &k, err, sizeof err), 0);
    assert_int_equal(k.len, 34);
    assert_memory_equal(k.key, spaced, 34);
}

static void test_key_file_rejected(void **state)
{
    struct signature_key k = {.len = 7};
    char err[256];
    uint8_t raw[65];

    /* 31 bytes of hex: too short, even though 62 raw bytes would be enough. */
    assert_int_equal(load_bytes(S("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e"),
                                &k, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "hex key has 62 digits"));
    /* Odd number of hex digits. */
    assert_int_equal(load_bytes(S(DOC_KEY_HEX "0"), &k, err, sizeof err), -1);
    /* Too long hex. */
    assert_int_equal(load_bytes(S(DOC_KEY_HEX DOC_KEY_HEX "00"), &k, err, sizeof err), -1);
    /* 31 raw bytes, and 32 once the trailing newline is stripped is not enough either. */
    memset(raw, 'z', sizeof raw);
    assert_int_equal(load_bytes(raw, 31, &k, err, sizeof err), -1);
    assert_non_null(strstr(err, "raw key has 31 bytes"));
    raw[31] = '\n';
    assert_int_equal(load_bytes(raw, 32, &k, err, sizeof err), -1);
    /* 65 raw bytes. */
    memset(raw, 'z', sizeof raw);
    assert_int_equal(load_bytes(raw, 65, &k, err, sizeof err), -1);
    /* Empty and whitespace-only files. */
    assert_int_equal(load_bytes("", 0, &k, err, sizeof err), -1);
    assert_int_equal(load_bytes(S(" \n\n"), &k, err, sizeof err), -1);
    /* Missing file: the message names it. */
    assert_int_equal(signature_key_load("/nonexistent/moat.key", &k, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/moat.key"));
    /* A huge file. */
    static char big[4096];
    memset(big, 'a', sizeof big);
    assert_int_equal(load_bytes(big, sizeof big, &k, err, sizeof err), -1);
    /* No error buffer is fine; failures leave *out untouched. */
    assert_int_equal(signature_key_load("/nonexistent/moat.key", &k, NULL, 0), -1);
    assert_int_equal(k.len, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doc_vector),
        cmocka_unit_test(test_host_is_lowercased),
        cmocka_unit_test(test_empty_fields),
        cmocka_unit_test(test_any_altered_field_fails),
        cmocka_unit_test(test_previous_key_accepted),
        cmocka_unit_test(test_skew),
        cmocka_unit_test(test_header_value_syntax),
        cmocka_unit_test(test_invalid_fields_rejected),
        cmocka_unit_test(test_long_fields_and_rekeying),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_key_file_formats),
        cmocka_unit_test(test_key_file_rejected),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    signature_thread_cleanup();
    return rc;
}
