#include "observe/audit_chain.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "observe/log.h"
#include "policy/signature.h"
#include "util/jsonw.h"

#define MAC_SUFFIX ",\"mac\":\""
#define PREV_KEY ",\"prev\":\""
#define SEQ_KEY ",\"seq\":"
/* What audit_chain_write() appends: seq (20 digits at most), prev, mac, "}\n". */
#define CHAIN_ROOM                                                                                 \
    (sizeof SEQ_KEY + 20 + sizeof PREV_KEY + AUDIT_MAC_HEX + sizeof MAC_SUFFIX + AUDIT_MAC_HEX + 4)

/* The chain, shared by every thread that writes audit events; all under lock. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    bool active;
    struct signature_key key;
    uint64_t seq;                /* of the last line written; 0 before the first */
    uint8_t head[AUDIT_MAC_LEN]; /* its mac */
    char *target;                /* the audit target the chain belongs to */
    char *state_path;            /* "<file>.chain"; NULL for stdout/stderr */
} C;

static const char hexdigits[] = "0123456789abcdef";

static void to_hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexdigits[b[i] >> 4];
        out[2 * i + 1] = hexdigits[b[i] & 15];
    }
}

static int from_hex(const char *p, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < 2 * n; i++) {
        char c = p[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return -1;
        if (i % 2 == 0)
            out[i / 2] = (uint8_t)(v << 4);
        else
            out[i / 2] |= (uint8_t)v;
    }
    return 0;
}

/* Parses a decimal seq p[0..n): digits only, no leading zero, at most 20 digits. */
static int parse_seq(const char *p, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20 || (p[0] == '0' && n > 1))
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int audit_link_parse(const char *line, size_t len, struct audit_link *out)
{
    /* from the end: "}" mac "\"" MAC_SUFFIX, then prev, then seq */
    const size_t mac_tail = sizeof MAC_SUFFIX - 1 + AUDIT_MAC_HEX + 2;
    const size_t prev_tail = sizeof PREV_KEY - 1 + AUDIT_MAC_HEX + 1;
    if (len < 1 + mac_tail + prev_tail + sizeof SEQ_KEY || line[0] != '{' || line[len - 1] != '}' ||
        line[len - 2] != '"')
        return -1;
    size_t canon = len - mac_tail;
    if (memcmp(line + canon, MAC_SUFFIX, sizeof MAC_SUFFIX - 1) != 0 ||
        from_hex(line + canon + sizeof MAC_SUFFIX - 1, out->mac, AUDIT_MAC_LEN) < 0)
        return -1;
    size_t prev = canon - prev_tail;
    if (memcmp(line + prev, PREV_KEY, sizeof PREV_KEY - 1) != 0 || line[canon - 1] != '"' ||
        from_hex(line + prev + sizeof PREV_KEY - 1, out->prev, AUDIT_MAC_LEN) < 0)
        return -1;
    /* the seq digits end at prev; SEQ_KEY ends before the first digit */
    size_t d = prev;
    while (d > 0 && line[d - 1] >= '0' && line[d - 1] <= '9')
        d--;
    if (d < sizeof SEQ_KEY ||
        memcmp(line + d - (sizeof SEQ_KEY - 1), SEQ_KEY, sizeof SEQ_KEY - 1) != 0 ||
        parse_seq(line + d, prev - d, &out->seq) < 0)
        return -1;
    out->canon_len = canon;
    return 0;
}

int audit_link_mac(const struct signature_key *key, const char *canon, size_t n,
                   uint8_t out[AUDIT_MAC_LEN])
{
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key->key, (int)key->len, (const unsigned char *)canon, n, out, &len))
        return -1;
    return len == AUDIT_MAC_LEN ? 0 : -1;
}

int audit_link_is_event(const char *line, size_t len, const char *event)
{
    /* audit_begin() writes {"time":"<24 bytes>","event":"<name>" first */
    char want[96];
    int n = snprintf(want, sizeof want, "\",\"event\":\"%s\"", event);
    if (n < 0 || (size_t)n >= sizeof want)
        return 0;
    const char *p = memchr(line, ',', len < 64 ? len : 64);
    return p && p > line && (size_t)(line + len - (p - 1)) >= (size_t)n &&
           memcmp(p - 1, want, (size_t)n) == 0;
}

/* Appends the chain fields to j's object and writes the line; advances the head
 * only when the whole line was written. Called with lock held. */
static void write_chained(struct jsonw *j)
{
    char stack[4096];
    size_t cap = j->len + CHAIN_ROOM;
    char *line = cap <= sizeof stack ? stack : malloc(cap);
    if (!line)
        return;
    memcpy(line, j->buf, j->len);
    size_t n = j->len;
    uint64_t seq = C.seq + 1;
    n += (size_t)snprintf(line + n, cap - n, SEQ_KEY "%" PRIu64 PREV_KEY, seq);
    to_hex(C.head, AUDIT_MAC_LEN, line + n);
    n += AUDIT_MAC_HEX;
    line[n++] = '"';
    uint8_t mac[AUDIT_MAC_LEN];
    if (audit_link_mac(&C.key, line, n, mac) == 0) {
        memcpy(line + n, MAC_SUFFIX, sizeof MAC_SUFFIX - 1);
        n += sizeof MAC_SUFFIX - 1;
        to_hex(mac, AUDIT_MAC_LEN, line + n);
        n += AUDIT_MAC_HEX;
        memcpy(line + n, "\"}\n", 3);
        n += 3;
        if (log_audit_write(line, n) == 0) {
            C.seq = seq;
            memcpy(C.head, mac, AUDIT_MAC_LEN);
        }
    }
    if (line != stack)
        free(line);
}

static int shared; /* audit_chain_share(): other processes appending to the same file */
static int load_tail(const char *path, uint64_t *seq, uint8_t *mac);

/* The head from the file's last line, when another process wrote it. Lock held. */
static void sync_tail(void)
{
    uint64_t seq;
    uint8_t mac[AUDIT_MAC_LEN];
    if (C.active && C.state_path && load_tail(C.target, &seq, mac) == 0 && seq > C.seq) {
        C.seq = seq;
        memcpy(C.head, mac, AUDIT_MAC_LEN);
    }
}

/* A line of a shared chain: linked to the file's last line, under an exclusive flock()
 * of the file that the other process takes too. Lock held. */
static void write_shared(struct jsonw *j)
{
    int fd = open(C.target, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && flock(fd, LOCK_EX) == 0)
        sync_tail();
    write_chained(j);
    if (fd >= 0)
        close(fd); /* and the flock with it */
}

void audit_chain_share(bool on)
{
    pthread_mutex_lock(&lock);
    shared += on ? 1 : shared > 0 ? -1 : 0;
    if (!on && !shared)
        sync_tail(); /* the other process's last lines (its "stop") */
    pthread_mutex_unlock(&lock);
}

void audit_chain_write(struct jsonw *j)
{
    pthread_mutex_lock(&lock);
    if (C.active && shared && C.state_path) {
        write_shared(j);
    } else if (C.active) {
        write_chained(j);
    } else {
        size_t n = jsonw_end(j);
        log_audit_write(j->buf, n);
    }
    pthread_mutex_unlock(&lock);
}

/* A chain event of moat's own (start, key rotation), lock held. */
static void write_event(const char *event, const char *reason)
{
    char buf[1024];
    struct jsonw j;
    jsonw_begin(&j, buf, sizeof buf);
    jsonw_time(&j, "time");
    jsonw_str(&j, "event", event);
    jsonw_str(&j, "reason", reason);
    write_chained(&j);
}

/* "<path>.chain" written through a temporary file and rename(). Lock held. */
static void save_state(void)
{
    if (!C.active || !C.state_path)
        return;
    char tmp[4200], text[128];
    snprintf(tmp, sizeof tmp, "%s.tmp", C.state_path);
    int n = snprintf(text, sizeof text, "{\"seq\":%" PRIu64 ",\"mac\":\"", C.seq);
    to_hex(C.head, AUDIT_MAC_LEN, text + n);
    n += AUDIT_MAC_HEX;
    n += snprintf(text + n, sizeof text - (size_t)n, "\"}\n");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0 || write(fd, text, (size_t)n) != n || fsync(fd) < 0 || close(fd) < 0 ||
        rename(tmp, C.state_path) < 0) {
        log_msg(LOG_ERROR, "audit: cannot save the chain head to %s: %s", C.state_path,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        unlink(tmp);
    }
}

/* Reads "<path>.chain"; 0 with seq and mac, -1 if missing or malformed. */
static int load_state(const char *path, uint64_t *seq, uint8_t *mac)
{
    char text[160];
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *p = text;
    if (strncmp(p, "{\"seq\":", 7) != 0)
        return -1;
    p += 7;
    size_t d = strspn(p, "0123456789");
    if (parse_seq(p, d, seq) < 0)
        return -1;
    p += d;
    if (strncmp(p, ",\"mac\":\"", 8) != 0 || strlen(p + 8) < AUDIT_MAC_HEX + 2 ||
        from_hex(p + 8, mac, AUDIT_MAC_LEN) < 0 || strncmp(p + 8 + AUDIT_MAC_HEX, "\"}", 2) != 0)
        return -1;
    return 0;
}

/*
 * The log's last line, when it is a chained line with a valid mac under the key:
 * moat may have been killed after the state file was last saved.
 */
static int load_tail(const char *path, uint64_t *seq, uint8_t *mac)
{
    static char buf[AUDIT_LINE_MAX + 2];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0 || st.st_size < 2) {
        close(fd);
        return -1;
    }
    off_t off = st.st_size > (off_t)sizeof buf ? st.st_size - (off_t)sizeof buf : 0;
    ssize_t n = pread(fd, buf, (size_t)(st.st_size - off), off);
    close(fd);
    if (n < 2 || buf[n - 1] != '\n')
        return -1;
    ssize_t start = n - 1;
    while (start > 0 && buf[start - 1] != '\n')
        start--;
    struct audit_link k;
    uint8_t want[AUDIT_MAC_LEN];
    size_t len = (size_t)(n - 1 - start);
    if (audit_link_parse(buf + start, len, &k) < 0 ||
        audit_link_mac(&C.key, buf + start, k.canon_len, want) < 0 ||
        CRYPTO_memcmp(want, k.mac, AUDIT_MAC_LEN) != 0)
        return -1;
    *seq = k.seq;
    memcpy(mac, k.mac, AUDIT_MAC_LEN);
    return 0;
}

static bool is_file_target(const char *t)
{
    return t && strcmp(t, "stdout") && strcmp(t, "stderr") && strcmp(t, "off");
}

/* Starts the chain of a new target, lock held: from its saved head, else anew. */
static void start_chain(const char *target)
{
    C.seq = 0;
    memset(C.head, 0, sizeof C.head);
    if (!C.state_path) {
        write_event("audit_chain_start", "audit log is not a file: no chain state is kept");
        return;
    }
    if (load_state(C.state_path, &C.seq, C.head) < 0) {
        char why[4200];
        snprintf(why, sizeof why, "no chain state in %s: earlier lines are not linked",
                 C.state_path);
        C.seq = 0;
        memset(C.head, 0, sizeof C.head);
        write_event("audit_chain_start", why);
        save_state();
        return;
    }
    uint64_t tseq;
    uint8_t tmac[AUDIT_MAC_LEN];
    if (load_tail(target, &tseq, tmac) == 0 && tseq > C.seq) {
        log_msg(LOG_WARN, "audit: %s is older than the log's last line; going on from seq %" PRIu64,
                C.state_path, tseq);
        C.seq = tseq;
        memcpy(C.head, tmac, AUDIT_MAC_LEN);
    }
}

static void forget(void)
{
    free(C.target);
    free(C.state_path);
    C.target = C.state_path = NULL;
    OPENSSL_cleanse(&C.key, sizeof C.key);
    C.active = false;
}

void audit_chain_open(const char *target, const struct signature_key *key)
{
    pthread_mutex_lock(&lock);
    save_state();
    bool same = C.active && key && target && C.target && !strcmp(C.target, target);
    if (same && (C.key.len != key->len || CRYPTO_memcmp(C.key.key, key->key, key->len) != 0)) {
        write_event("audit_key_rotated", "lines after this one are MAC'd with the new key");
        C.key = *key;
        save_state();
    } else if (!same) {
        forget();
        if (key && is_file_target(target)) {
            C.target = strdup(target);
            size_t n = strlen(target) + sizeof ".chain";
            C.state_path = malloc(n);
            if (C.state_path)
                snprintf(C.state_path, n, "%s.chain", target);
        } else if (key && target && strcmp(target, "off")) {
            C.target = strdup(target);
        }
        if (C.target && (C.state_path || !is_file_target(target))) {
            C.key = *key;
            C.active = true;
            start_chain(target);
        } else if (key && target && strcmp(target, "off")) {
            log_msg(LOG_ERROR, "audit: out of memory; the audit chain is off");
            forget();
        }
    }
    pthread_mutex_unlock(&lock);
}

void audit_chain_close(void)
{
    pthread_mutex_lock(&lock);
    save_state();
    forget();
    pthread_mutex_unlock(&lock);
}
