#include "observe/syslog_spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "observe/syslog_queue.h"

/* A file is closed for appending at this size: small enough that a sent file is soon
 * unlinked, large enough that files stay few. */
#define SPOOL_FILE_MAX ((uint64_t)4 << 20)
#define SPOOL_SUFFIX ".spool"

struct spool_file {
    uint64_t seq;
    uint64_t size;
};

struct syslog_spool {
    char *dir;
    uint64_t max;
    uint64_t bytes;           /* not yet consumed */
    struct spool_file *files; /* oldest first; the last one is appended to */
    size_t n, cap;
    uint64_t head_off; /* read position in files[0] */
    int head_fd;       /* files[0] open for reading, or -1 */
    int tail_fd;       /* files[n-1] open for appending, or -1 */
    int lock_fd;       /* "<dir>/.lock", flock()ed: one process per spool */
};

static void file_path(const struct syslog_spool *s, uint64_t seq, char *out, size_t len)
{
    snprintf(out, len, "%s/%016" PRIu64 SPOOL_SUFFIX, s->dir, seq);
}

/* The sequence number of a spool file name, or 0 if it is not one. */
static uint64_t name_seq(const char *name)
{
    if (strlen(name) != 16 + sizeof SPOOL_SUFFIX - 1 || strcmp(name + 16, SPOOL_SUFFIX) != 0)
        return 0;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    return v;
}

static int add_file(struct syslog_spool *s, uint64_t seq, uint64_t size)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        struct spool_file *f = realloc(s->files, cap * sizeof *f);
        if (!f)
            return -1;
        s->files = f;
        s->cap = cap;
    }
    s->files[s->n++] = (struct spool_file){seq, size};
    s->bytes += size;
    return 0;
}

static int by_seq(const void *a, const void *b)
{
    const struct spool_file *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Lists the files an earlier run left, oldest first. */
static int scan(struct syslog_spool *s, char *err, size_t errlen)
{
    DIR *d = opendir(s->dir);
    if (!d) {
        snprintf(err, errlen, "%s: %s", s->dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        uint64_t seq = name_seq(e->d_name);
        struct stat st;
        char path[4200];
        if (!seq)
            continue;
        file_path(s, seq, path, sizeof path);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
            rc = add_file(s, seq, (uint64_t)st.st_size);
    }
    closedir(d);
    if (rc < 0)
        snprintf(err, errlen, "%s: out of memory", s->dir);
    else if (s->n)
        qsort(s->files, s->n, sizeof *s->files, by_seq);
    return rc;
}

/* Two processes appending to one spool would interleave files: the old and the new
 * moat of a binary upgrade run side by side for a while. */
static int lock_dir(struct syslog_spool *s, char *err, size_t errlen)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/.lock", s->dir);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(err, errlen, "%s: %s", s->dir,
                 errno == EWOULDBLOCK ? "in use by another moat process" : strerror(errno));
        return -1;
    }
    return 0;
}

struct syslog_spool *syslog_spool_open(const char *dir, uint64_t max, char *err, size_t errlen)
{
    struct syslog_spool *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(dir))) {
        snprintf(err, errlen, "out of memory");
        free(s);
        return NULL;
    }
    s->max = max;
    s->head_fd = s->tail_fd = s->lock_fd = -1;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        goto fail;
    }
    if (lock_dir(s, err, errlen) < 0)
        goto fail;
    if (scan(s, err, errlen) < 0)
        goto fail;
    return s;
fail:
    syslog_spool_close(s);
    return NULL;
}

void syslog_spool_close(struct syslog_spool *s)
{
    if (!s)
        return;
    if (s->head_fd >= 0)
        close(s->head_fd);
    if (s->tail_fd >= 0)
        close(s->tail_fd);
    if (s->lock_fd >= 0)
        close(s->lock_fd); /* and the lock with it */
    free(s->files);
    free(s->dir);
    free(s);
}

uint64_t syslog_spool_bytes(const struct syslog_spool *s)
{
    return s ? s->bytes : 0;
}

/* A new file to append to, after the newest one. */
static int new_tail(struct syslog_spool *s, char *err, size_t errlen)
{
    char path[4200];
    uint64_t seq = s->n ? s->files[s->n - 1].seq + 1 : 1;
    if (s->tail_fd >= 0)
        close(s->tail_fd);
    file_path(s, seq, path, sizeof path);
    s->tail_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (s->tail_fd < 0 || add_file(s, seq, 0) < 0) {
        snprintf(err, errlen, "%s: %s", path, s->tail_fd < 0 ? strerror(errno) : "out of memory");
        if (s->tail_fd >= 0) {
            close(s->tail_fd);
            unlink(path);
        }
        s->tail_fd = -1;
        return -1;
    }
    return 0;
}

/* files[n-1] open for appending (a file left by an earlier run is reopened). */
static int open_tail(struct syslog_spool *s, size_t len, char *err, size_t errlen)
{
    struct spool_file *t = s->n ? &s->files[s->n - 1] : NULL;
    if (!t || (t->size && t->size + len > SPOOL_FILE_MAX))
        return new_tail(s, err, errlen);
    if (s->tail_fd >= 0)
        return 0;
    char path[4200];
    file_path(s, t->seq, path, sizeof path);
    s->tail_fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (s->tail_fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int syslog_spool_append(struct syslog_spool *s, const char *data, size_t len, char *err,
                        size_t errlen)
{
    if (s->bytes + len > s->max) {
        snprintf(err, errlen, "spool full (%" PRIu64 " bytes)", s->max);
        return -1;
    }
    if (open_tail(s, len, err, errlen) < 0)
        return -1;
    struct spool_file *t = &s->files[s->n - 1];
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(s->tail_fd, data + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(err, errlen, "%s: %s", s->dir, w < 0 ? strerror(errno) : "short write");
            /* whole records or nothing: a torn record would end the file early */
            if (done && ftruncate(s->tail_fd, (off_t)t->size) < 0) {
                t->size += done; /* the reader skips the torn end */
                s->bytes += done;
            }
            return -1;
        }
        done += (size_t)w;
    }
    t->size += len;
    s->bytes += len;
    return 0;
}

/* Forgets files[0] (read to its end, or unreadable) and unlinks it. */
static void drop_head(struct syslog_spool *s)
{
    char path[4200];
    file_path(s, s->files[0].seq, path, sizeof path);
    unlink(path);
    if (s->head_fd >= 0)
        close(s->head_fd);
    s->head_fd = -1;
    if (s->n == 1 && s->tail_fd >= 0) {
        close(s->tail_fd);
        s->tail_fd = -1;
    }
    s->bytes -= s->files[0].size - s->head_off;
    s->head_off = 0;
    memmove(s->files, s->files + 1, (s->n - 1) * sizeof *s->files);
    s->n--;
}

/* The whole records at the front of buf[0..n). */
static size_t whole_records(const char *buf, size_t n, int *bad)
{
    size_t o = 0;
    long r;
    struct syslog_rec rec;
    while ((r = syslog_rec_decode(buf + o, n - o, &rec)) > 0)
        o += (size_t)r;
    *bad = r < 0;
    return o;
}

ssize_t syslog_spool_peek(struct syslog_spool *s, char *buf, size_t cap)
{
    while (s->n) {
        struct spool_file *f = &s->files[0];
        if (s->head_off >= f->size) {
            drop_head(s);
            continue;
        }
        if (s->head_fd < 0) {
            char path[4200];
            file_path(s, f->seq, path, sizeof path);
            s->head_fd = open(path, O_RDONLY | O_CLOEXEC);
            if (s->head_fd < 0) {
                drop_head(s); /* removed behind our back: what it held is gone */
                continue;
            }
        }
        uint64_t left = f->size - s->head_off;
        ssize_t n = pread(s->head_fd, buf, left < cap ? (size_t)left : cap, (off_t)s->head_off);
        if (n < 0)
            return -1;
        int bad;
        size_t w = whole_records(buf, (size_t)n, &bad);
        if (w > 0)
            return (ssize_t)w;
        /* no whole record: a torn end (moat was killed mid-write) or a foreign file */
        s->bytes -= left;
        s->head_off = f->size;
    }
    return 0;
}

void syslog_spool_consume(struct syslog_spool *s, size_t n)
{
    if (!s->n)
        return;
    s->head_off += n;
    s->bytes -= n;
    if (s->head_off >= s->files[0].size)
        drop_head(s);
}
