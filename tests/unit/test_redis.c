/*
 * Tests of src/redis against real redis-server processes (plain, ACL, TLS, unix
 * socket) and against fake servers in this process (silent, garbage, hostile).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "redis_helpers.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "redis/redis.h"

/* ---- recording callbacks ------------------------------------------------ */

struct rec {
    int calls;
    char err[64];
    int type;
    long long integer;
    char str[256];
    size_t len;
    size_t elements;
    char el[8][64];
    uint64_t at_ms;
};

static void rec_cb(redisReply *r, const char *err, void *arg)
{
    struct rec *x = arg;
    x->calls++;
    x->at_ms = th_now_ms();
    snprintf(x->err, sizeof(x->err), "%s", err ? err : "");
    if (!r)
        return;
    x->type = r->type;
    x->integer = r->integer;
    if (r->str) {
        x->len = r->len < sizeof(x->str) ? r->len : sizeof(x->str) - 1;
        memcpy(x->str, r->str, x->len);
        x->str[x->len] = '\0';
    }
    x->elements = r->elements;
    for (size_t i = 0; i < r->elements && i < 8; i++)
        if (r->element[i]->str)
            snprintf(x->el[i], sizeof(x->el[i]), "%s", r->element[i]->str);
}

/* TEST_VERBOSE=1 shows the error texts the assertions look at. */
static void show(const char *what, const struct redis_client *c)
{
    if (getenv("TEST_VERBOSE"))
        fprintf(stderr, "    %s: state=%s last_error='%s'\n", what,
                redis_state_str(redis_client_state(c)), redis_client_last_error(c));
}

static bool rec_called(void *arg)
{
    return ((struct rec *)arg)->calls > 0;
}

static bool is_connected(void *arg)
{
    return redis_client_state(arg) == REDIS_STATE_CONNECTED;
}

static bool is_down_with_error(void *arg)
{
    return redis_client_state(arg) == REDIS_STATE_DOWN && redis_client_last_error(arg)[0];
}

static bool not_connected(void *arg)
{
    return redis_client_state(arg) != REDIS_STATE_CONNECTED;
}

struct fixture {
    struct event_base *base;
    uint16_t port;
    pid_t pid;
};

static struct redis_options opts_tcp(uint16_t port)
{
    struct redis_options o = {.host = "127.0.0.1",
                              .port = port,
                              .timeout_ms = 2000,
                              .connect_timeout_ms = 2000,
                              .backoff_min_ms = 20,
                              .backoff_max_ms = 200};
    return o;
}

static struct redis_client *client_up(struct fixture *f, const struct redis_options *o)
{
    char err[256] = "";
    struct redis_client *c = redis_client_new(f->base, o, err, sizeof(err));
    assert_non_null(c);
    if (!th_run_until(f->base, is_connected, c, 5000))
        fail_msg("not connected: %s", redis_client_last_error(c));
    return c;
}

static int setup_server(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->base = event_base_new();
    f->port = th_free_port();
    f->pid = th_redis_start(f->port, 0, NULL, NULL);
    *state = f;
    return f->pid > 0 ? 0 : -1;
}

static int setup_base(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->base = event_base_new();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    th_kill(f->pid);
    event_base_free(f->base);
    free(f);
    return 0;
}

/* ---- real server: basics ------------------------------------------------ */

static void test_roundtrip(void **state)
{
    struct fixture *f = *state;
    struct redis_options o = opts_tcp(f->port);
    o.client_name = "moat-test";
    o.database = 3;
    struct redis_client *c = client_up(f, &o);
    assert_true(redis_client_id(c) > 0);

    struct rec set = {0}, get = {0}, hset = {0}, hgetall = {0}, name = {0}, bin = {0};
    assert_non_null(redis_command(c, rec_cb, &set, "SET %s %s", "k", "v1"));
    assert_non_null(redis_command(c, rec_cb, &get, "GET %s", "k"));
    assert_non_null(redis_command(c, rec_cb, &hset, "HSET h tenant acme user u1"));
    assert_non_null(redis_command(c, rec_cb, &hgetall, "HGETALL h"));
    assert_non_null(redis_command(c, rec_cb, &name, "CLIENT GETNAME"));
    const char *argv[3] = {"SET", "bin", "a\0b\r\nc"};
    size_t lens[3] = {3, 3, 6};
    assert_non_null(redis_command_argv(c, NULL, NULL, 3, argv, lens));
    assert_non_null(redis_command(c, rec_cb, &bin, "STRLEN bin"));
    assert_true(th_run_until(f->base, rec_called, &bin, 3000));

    assert_string_equal(set.err, "");
    assert_int_equal(set.type, REDIS_REPLY_STATUS);
    assert_string_equal(set.str, "OK");
    assert_int_equal(get.type, REDIS_REPLY_STRING);
    assert_string_equal(get.str, "v1");
    assert_int_equal(hset.integer, 2);
    assert_int_equal(hgetall.type, REDIS_REPLY_ARRAY);
    assert_int_equal(hgetall.elements, 4);
    assert_string_equal(hgetall.el[0], "tenant");
    assert_string_equal(hgetall.el[1], "acme");
    assert_string_equal(hgetall.el[3], "u1");
    assert_string_equal(name.str, "moat-test");
    assert_int_equal(bin.integer, 6);

    /* SELECT 3 took effect: the key is not in db 0. */
    struct redis_options o0 = opts_tcp(f->port);
    struct redis_client *c0 = client_up(f, &o0);
    struct rec ex = {0}, err_reply = {0};
    assert_non_null(redis_command(c0, rec_cb, &ex, "EXISTS k"));
    assert_non_null(redis_command(c0, rec_cb, &err_reply, "NOSUCHCOMMAND"));
    assert_true(th_run_until(f->base, rec_called, &err_reply, 3000));
    assert_int_equal(ex.integer, 0);
    assert_string_equal(err_reply.err, ""); /* a Redis error reply is a reply */
    assert_int_equal(err_reply.type, REDIS_REPLY_ERROR);

    redis_client_free(c0);
    redis_client_free(c);
}

struct seq {
    int next;
    int bad;
    int done;
};

static void seq_cb(redisReply *r, const char *err, void *arg)
{
    struct seq *s = arg;
    if (err || !r || r->type != REDIS_REPLY_INTEGER || r->integer != s->next + 1)
        s->bad++;
    s->next++;
    s->done++;
}

static bool seq_done(void *arg)
{
    return ((struct seq *)arg)->done == 5000;
}

static void test_pipeline(void **state)
{
    struct fixture *f = *state;
    struct redis_options o = opts_tcp(f->port);
    struct redis_client *c = client_up(f, &o);
    struct seq s = {0};
    for (int i = 0; i < 5000; i++)
        assert_non_null(redis_command(c, seq_cb, &s, "INCR counter"));
    assert_true(th_run_until(f->base, seq_done, &s, 10000));
    assert_int_equal(s.bad, 0);
    redis_client_free(c);

    /* Bounded memory: beyond max_inflight, NULL. */
    o.max_inflight = 10;
    c = client_up(f, &o);
    struct rec r[11];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < 10; i++)
        assert_non_null(redis_command(c, rec_cb, &r[i], "PING"));
    assert_null(redis_command(c, rec_cb, &r[10], "PING"));
    assert_true(th_run_until(f->base, rec_called, &r[9], 3000));
    assert_non_null(redis_command(c, rec_cb, &r[10], "PING"));
    assert_true(th_run_until(f->base, rec_called, &r[10], 3000));
    redis_client_free(c);
}

static void test_cancel(void **state)
{
    struct fixture *f = *state;
    struct redis_options o = opts_tcp(f->port);
    struct redis_client *c = client_up(f, &o);
    struct rec a = {0}, b = {0};
    struct redis_pending *p = redis_command(c, rec_cb, &a, "GET k");
    assert_non_null(p);
    redis_cancel(p);
    assert_non_null(redis_command(c, rec_cb, &b, "PING"));
    assert_true(th_run_until(f->base, rec_called, &b, 3000));
    assert_int_equal(a.calls, 0);
    assert_string_equal(b.str, "PONG");
    redis_cancel(NULL);

    /* Cancelled, then shutdown: still never called. Not cancelled: "shutdown". */
    struct rec d = {0}, e = {0};
    redis_cancel(redis_command(c, rec_cb, &d, "BLPOP nolist 0"));
    assert_non_null(redis_command(c, rec_cb, &e, "BLPOP nolist 0"));
    redis_client_free(c);
    assert_int_equal(d.calls, 0);
    assert_int_equal(e.calls, 1);
    assert_string_equal(e.err, "shutdown");
}

/* Freeing the client from inside its own reply callback. */
struct free_ctx {
    struct redis_client *c;
    int calls;
    char last_err[32];
};

static void free_in_cb(redisReply *r, const char *err, void *arg)
{
    struct free_ctx *x = arg;
    x->calls++;
    snprintf(x->last_err, sizeof(x->last_err), "%s", err ? err : "");
    if (x->calls == 1)
        redis_client_free(x->c);
}

static bool free_ctx_done(void *arg)
{
    return ((struct free_ctx *)arg)->calls >= 3;
}

static void test_free_in_callback(void **state)
{
    struct fixture *f = *state;
    struct redis_options o = opts_tcp(f->port);
    struct free_ctx x = {0};
    x.c = client_up(f, &o);
    for (int i = 0; i < 3; i++)
        assert_non_null(redis_command(x.c, free_in_cb, &x, "PING"));
    assert_true(th_run_until(f->base, free_ctx_done, &x, 3000));
    assert_int_equal(x.calls, 3);
    assert_string_equal(x.last_err, "shutdown");
    th_run_for(f->base, 50); /* nothing left to fire */
}

struct hooks {
    int connects;
    int downs;
    int ups;
};

static void on_state(enum redis_state s, void *arg)
{
    struct hooks *h = arg;
    if (s == REDIS_STATE_DOWN)
        h->downs++;
    if (s == REDIS_STATE_CONNECTED)
        h->ups++;
}

/* ---- ACL / passwords ---------------------------------------------------- */

static int setup_acl(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->base = event_base_new();
    f->port = th_free_port();
    const char *extra[] = {"--requirepass",
                           "default-S3cret",
                           "--user",
                           "alice",
                           "on",
                           ">alice-S3cret",
                           "~*",
                           "&*",
                           "+@all",
                           NULL};
    f->pid = th_redis_start(f->port, 0, NULL, extra);
    *state = f;
    return f->pid > 0 ? 0 : -1;
}

static void write_file(const char *path, const char *content)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(content, fp);
    fclose(fp);
}

static void test_auth(void **state)
{
    struct fixture *f = *state;
    char good[128], bad[128], alice[128];
    th_path(good, sizeof(good), "pw-default");
    th_path(bad, sizeof(bad), "pw-bad");
    th_path(alice, sizeof(alice), "pw-alice");
    write_file(good, "default-S3cret\n");
    write_file(bad, "wrong-Pa55word-xyz\r\n");
    write_file(alice, "alice-S3cret");

    struct redis_options o = opts_tcp(f->port);
    o.password_file = good;
    struct redis_client *c = client_up(f, &o);
    redis_client_free(c);

    o.username = "alice";
    o.password_file = alice;
    c = client_up(f, &o);
    struct rec who = {0};
    assert_non_null(redis_command(c, rec_cb, &who, "ACL WHOAMI"));
    assert_true(th_run_until(f->base, rec_called, &who, 3000));
    assert_string_equal(who.str, "alice");
    redis_client_free(c);

    setenv("MOAT_TEST_REDIS_PW", "alice-S3cret", 1);
    o.password_file = NULL;
    o.password_env = "MOAT_TEST_REDIS_PW";
    c = client_up(f, &o);
    redis_client_free(c);

    /* Wrong password: DOWN, a clear error, never the password. */
    o.password_env = NULL;
    o.password_file = bad;
    o.backoff_min_ms = 1000;
    o.backoff_max_ms = 1000;
    char err[256];
    c = redis_client_new(f->base, &o, err, sizeof(err));
    assert_non_null(c);
    assert_true(th_run_until(f->base, is_down_with_error, c, 3000));
    const char *le = redis_client_last_error(c);
    show("wrong password", c);
    assert_non_null(strstr(le, "AUTH failed: WRONGPASS"));
    assert_null(strstr(le, "wrong-Pa55word"));
    assert_null(redis_command(c, rec_cb, &who, "PING"));
    redis_client_free(c);

    /* Bad credentials retry at the slowest pace, not every backoff_min. */
    struct hooks h = {0};
    o.backoff_min_ms = 10;
    o.backoff_max_ms = 400;
    c = redis_client_new(f->base, &o, err, sizeof(err));
    redis_client_on_state(c, on_state, &h);
    th_run_for(f->base, 600);
    assert_true(h.downs >= 1);
    assert_true(h.downs <= 3);
    assert_int_equal(h.ups, 0);
    redis_client_free(c);

    /* No password against requirepass: DOWN with NOAUTH. */
    struct redis_options none = opts_tcp(f->port);
    c = redis_client_new(f->base, &none, err, sizeof(err));
    assert_true(th_run_until(f->base, is_down_with_error, c, 3000));
    show("no password", c);
    assert_non_null(strstr(redis_client_last_error(c), "NOAUTH"));
    redis_client_free(c);

    /* Unreadable password file: DOWN, says which file. */
    o.password_file = "/nonexistent/pw";
    c = redis_client_new(f->base, &o, err, sizeof(err));
    assert_true(th_run_until(f->base, is_down_with_error, c, 3000));
    show("no password file", c);
    assert_non_null(strstr(redis_client_last_error(c), "/nonexistent/pw"));
    redis_client_free(c);
}

/* ---- outage and recovery ------------------------------------------------ */

static void on_connect_count(struct redis_client *c, void *arg)
{
    ((struct hooks *)arg)->connects++;
}

static void test_kill_restart(void **state)
{
    struct fixture *f = *state;
    struct redis_options o = opts_tcp(f->port);
    o.timeout_ms = 10000;
    struct hooks h = {0};
    char err[256];
    struct redis_client *c = redis_client_new(f->base, &o, err, sizeof(err));
    redis_client_on_state(c, on_state, &h);
    redis_client_on_connect(c, on_connect_count, &h);
    assert_true(th_run_until(f->base, is_connected, c, 5000));
    assert_int_equal(h.connects, 1);

    struct rec blocked = {0};
    assert_non_null(redis_command(c, rec_cb, &blocked, "BLPOP nolist 0"));
    th_run_for(f->base, 50);
    uint64_t t0 = th_now_ms();
    th_kill(f->pid);
    f->pid = 0;
    assert_true(th_run_until(f->base, rec_called, &blocked, 2000));
    assert_string_equal(blocked.err, "connection lost");
    assert_true(blocked.at_ms - t0 < 1000);
    assert_int_not_equal(redis_client_state(c), REDIS_STATE_CONNECTED);
    assert_true(h.downs >= 1);

    /* Circuit open: fail fast, no waiting out a timeout. */
    struct rec r = {0};
    for (int i = 0; i < 5; i++) {
        uint64_t t = th_now_ms();
        assert_null(redis_command(c, rec_cb, &r, "PING"));
        assert_true(th_now_ms() - t < 5);
        th_run_for(f->base, 30);
    }
    assert_int_equal(r.calls, 0);
    show("killed", c);
    assert_non_null(strstr(redis_client_last_error(c), "127.0.0.1"));

    f->pid = th_redis_start(f->port, 0, NULL, NULL);
    assert_true(f->pid > 0);
    assert_true(th_run_until(f->base, is_connected, c, 5000));
    assert_int_equal(h.connects, 2);
    assert_int_equal(h.ups, 2);
    assert_non_null(redis_command(c, rec_cb, &r, "PING"));
    assert_true(th_run_until(f->base, rec_called, &r, 3000));
    assert_string_equal(r.str, "PONG");
    redis_client_free(c);
}

static void test_refused_backoff(void **state)
{
    struct fixture *f = *state;
    struct redis_options o = opts_tcp(th_free_port());
    o.backoff_min_ms = 10;
    o.backoff_max_ms = 40;
    struct hooks h = {0};
    char err[256];
    struct redis_client *c = redis_client_new(f->base, &o, err, sizeof(err));
    assert_non_null(c);
    redis_client_on_state(c, on_state, &h);
    struct rec r = {0};
    assert_null(redis_command(c, rec_cb, &r, "PING")); /* not yet connected: no queueing */
    th_run_for(f->base, 600);
    show("refused", c);
    assert_non_null(strstr(redis_client_last_error(c), "Connection refused"));
    /* capped at 40 ms (jitter: 20..40): 600 ms holds well over 10 attempts */
    assert_true(h.downs >= 10);
    assert_true(h.downs <= 60);
    assert_int_equal(r.calls, 0);
    redis_client_free(c);
}

static void test_invalid_options(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    struct redis_options o = {.host = "127.0.0.1", .port = 6379, .unix_path = "/tmp/x"};
    assert_null(redis_client_new(f->base, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "exactly one"));
    struct redis_options t = {.host = "127.0.0.1",
                              .port = 6379,
                              .tls = true,
                              .tls_ca = "/nonexistent/ca.crt",
                              .tls_verify = true};
    assert_null(redis_client_new(f->base, &t, err, sizeof(err)));
    assert_non_null(strstr(err, "CA"));
    struct redis_options p = {
        .host = "127.0.0.1", .port = 6379, .password_file = "a", .password_env = "b"};
    assert_null(redis_client_new(f->base, &p, err, sizeof(err)));
}

/* ---- fake servers ------------------------------------------------------- */

enum fake_mode { FAKE_SILENT, FAKE_RAW, FAKE_RAW_HANDSHAKE, FAKE_UNSOLICITED };

struct fake_server {
    int lfd;
    uint16_t port;
    struct event *accept_ev;
    enum fake_mode mode;
    const char *raw; /* bytes answered to the first user command */
    size_t raw_len;
    int conns;
    int user_cmds;
    struct fake_conn *list[16];
};

struct fake_conn {
    int fd;
    struct event *ev;
    redisReader *reader;
    struct fake_server *s;
};

static void fake_send(int fd, const char *buf, size_t len)
{
    if (send(fd, buf, len, MSG_NOSIGNAL) < 0)
        perror("fake send");
}

static void fake_command(struct fake_conn *fc, redisReply *cmd)
{
    struct fake_server *s = fc->s;
    const char *name = cmd->element[0]->str;
    if (strcasecmp(name, "CLIENT") == 0) {
        if (s->mode == FAKE_RAW_HANDSHAKE) {
            fake_send(fc->fd, s->raw, s->raw_len);
            return;
        }
        fake_send(fc->fd, ":42\r\n", 5);
        if (s->mode == FAKE_UNSOLICITED)
            fake_send(fc->fd, ":1\r\n", 4);
        return;
    }
    if (s->user_cmds++ == 0 && s->mode == FAKE_RAW)
        fake_send(fc->fd, s->raw, s->raw_len);
}

static void fake_conn_free(struct fake_conn *fc)
{
    event_free(fc->ev);
    close(fc->fd);
    redisReaderFree(fc->reader);
    for (int i = 0; i < 16; i++)
        if (fc->s->list[i] == fc)
            fc->s->list[i] = NULL;
    free(fc);
}

static void fake_read(evutil_socket_t fd, short what, void *arg)
{
    struct fake_conn *fc = arg;
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
        fake_conn_free(fc);
        return;
    }
    redisReaderFeed(fc->reader, buf, (size_t)n);
    void *r;
    while (redisReaderGetReply(fc->reader, &r) == REDIS_OK && r) {
        redisReply *cmd = r;
        if (cmd->type == REDIS_REPLY_ARRAY && cmd->elements > 0)
            fake_command(fc, cmd);
        freeReplyObject(cmd);
    }
}

static void fake_accept(evutil_socket_t lfd, short what, void *arg)
{
    struct fake_server *s = arg;
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        return;
    struct fake_conn *fc = calloc(1, sizeof(*fc));
    fc->fd = fd;
    fc->s = s;
    fc->reader = redisReaderCreate();
    fc->ev = event_new(event_get_base(s->accept_ev), fd, EV_READ | EV_PERSIST, fake_read, fc);
    event_add(fc->ev, NULL);
    s->conns++;
    for (int i = 0; i < 16; i++)
        if (!s->list[i]) {
            s->list[i] = fc;
            break;
        }
}

static struct fake_server *fake_start(struct event_base *base, enum fake_mode mode, const char *raw,
                                      size_t raw_len)
{
    struct fake_server *s = calloc(1, sizeof(*s));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    s->mode = mode;
    s->raw = raw;
    s->raw_len = raw_len;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(bind(s->lfd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    assert_true(listen(s->lfd, 16) == 0);
    getsockname(s->lfd, (struct sockaddr *)&sin, &len);
    s->port = ntohs(sin.sin_port);
    s->accept_ev = event_new(base, s->lfd, EV_READ | EV_PERSIST, fake_accept, s);
    event_add(s->accept_ev, NULL);
    return s;
}

static void fake_stop(struct fake_server *s)
{
    for (int i = 0; i < 16; i++)
        if (s->list[i])
            fake_conn_free(s->list[i]);
    event_free(s->accept_ev);
    close(s->lfd);
    free(s);
}

static void test_timeout(void **state)
{
    struct fixture *f = *state;
    struct fake_server *s = fake_start(f->base, FAKE_SILENT, NULL, 0);
    struct redis_options o = opts_tcp(s->port);
    o.timeout_ms = 200;
    struct hooks h = {0};
    struct redis_client *c = client_up(f, &o);
    redis_client_on_state(c, on_state, &h);
    assert_int_equal(redis_client_id(c), 42);

    struct rec a = {0}, b = {0}, cancelled = {0};
    uint64_t t0 = th_now_ms();
    assert_non_null(redis_command(c, rec_cb, &a, "GET a"));
    redis_cancel(redis_command(c, rec_cb, &cancelled, "GET c"));
    th_run_for(f->base, 50);
    assert_non_null(redis_command(c, rec_cb, &b, "GET b"));
    assert_true(th_run_until(f->base, rec_called, &b, 3000));
    assert_string_equal(a.err, "timeout");
    assert_string_equal(b.err, "timeout"); /* everything in flight fails with the oldest */
    assert_int_equal(cancelled.calls, 0);
    assert_true(a.at_ms - t0 >= 195);
    assert_true(a.at_ms - t0 < 200 + 400);
    assert_true(b.at_ms - a.at_ms <= 2);
    show("timeout", c);
    assert_non_null(strstr(redis_client_last_error(c), "timed out"));
    assert_int_equal(h.downs, 1);

    /* and it reconnects by itself */
    assert_true(th_run_until(f->base, is_connected, c, 3000));
    assert_true(s->conns >= 2);
    redis_client_free(c);
    fake_stop(s);
}

static void test_connect_timeout(void **state)
{
    struct fixture *f = *state;
    /* A listener that never answers the handshake: the connect timeout fires. */
    struct fake_server *s = fake_start(f->base, FAKE_RAW_HANDSHAKE, "", 0);
    struct redis_options o = opts_tcp(s->port);
    o.connect_timeout_ms = 150;
    o.backoff_min_ms = 5000;
    char err[256];
    struct redis_client *c = redis_client_new(f->base, &o, err, sizeof(err));
    assert_true(th_run_until(f->base, is_down_with_error, c, 2000));
    show("connect timeout", c);
    assert_non_null(strstr(redis_client_last_error(c), "handshake with 127.0.0.1:"));
    redis_client_free(c);
    fake_stop(s);
}

static void hostile_case(struct fixture *f, enum fake_mode mode, const char *raw, size_t len,
                         size_t max_reply, const char *want_error)
{
    struct fake_server *s = fake_start(f->base, mode, raw, len);
    struct redis_options o = opts_tcp(s->port);
    o.max_reply_bytes = max_reply;
    o.backoff_min_ms = 5000;
    char err[256];
    struct redis_client *c = redis_client_new(f->base, &o, err, sizeof(err));
    assert_non_null(c);
    if (mode == FAKE_RAW) {
        assert_true(th_run_until(f->base, is_connected, c, 3000));
        struct rec a = {0}, b = {0};
        assert_non_null(redis_command(c, rec_cb, &a, "GET a"));
        assert_non_null(redis_command(c, rec_cb, &b, "GET b"));
        assert_true(th_run_until(f->base, rec_called, &b, 3000));
        assert_string_equal(b.err, "protocol error");
        if (a.type == REDIS_REPLY_STATUS) /* garbage after a good reply */
            assert_string_equal(a.str, "OK");
        else
            assert_string_equal(a.err, "protocol error");
    }
    assert_true(th_run_until(f->base, not_connected, c, 3000));
    assert_true(th_run_until(f->base, is_down_with_error, c, 3000));
    show(want_error, c);
    if (!strstr(redis_client_last_error(c), want_error))
        fail_msg("last_error '%s' lacks '%s'", redis_client_last_error(c), want_error);
    redis_client_free(c);
    fake_stop(s);
}

static void test_garbage(void **state)
{
    struct fixture *f = *state;
    static const char garbage[] = "+OK\r\n\x01\x02garbage\r\n";
    hostile_case(f, FAKE_RAW, garbage, sizeof(garbage) - 1, 0, "protocol error");
    hostile_case(f, FAKE_RAW_HANDSHAKE, garbage + 5, sizeof(garbage) - 6, 0, "protocol error");
    /* 2e9 elements announced: refused before allocating */
    hostile_case(f, FAKE_RAW, "*2000000000\r\n", 13, 0, "larger than");
    hostile_case(f, FAKE_RAW, "*9999999999999999999999\r\n", 25, 0, "protocol error");
    /* a bulk string longer than max_reply_bytes, arriving in pieces */
    static char big[8192];
    memcpy(big, "$100000\r\n", 9);
    memset(big + 9, 'x', sizeof(big) - 9);
    hostile_case(f, FAKE_RAW, big, sizeof(big), 4096, "larger than");
    /* many small elements: the per-reply budget counts them */
    static char many[16384];
    size_t n = (size_t)snprintf(many, sizeof(many), "*100000\r\n");
    while (n + 4 < sizeof(many)) {
        memcpy(many + n, ":1\r\n", 4);
        n += 4;
    }
    hostile_case(f, FAKE_RAW, many, n, 8192, "larger than");
    /* nested deeper than hiredis supports */
    static const char deep[] = "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n";
    hostile_case(f, FAKE_RAW, deep, sizeof(deep) - 1, 0, "nested");
    hostile_case(f, FAKE_RAW, ":notanumber\r\n", 13, 0, "protocol error");
    /* a reply nobody asked for */
    hostile_case(f, FAKE_UNSOLICITED, NULL, 0, 0, "without a pending command");
}

static void test_ping_dead_peer(void **state)
{
    struct fixture *f = *state;
    /* Answers the handshake, then nothing: an idle connection to it must still
     * be noticed (a tracking/subscriber connection has no commands in flight). */
    struct fake_server *s = fake_start(f->base, FAKE_SILENT, NULL, 0);
    struct redis_options o = opts_tcp(s->port);
    o.ping_interval_ms = 100;
    o.timeout_ms = 100;
    o.backoff_min_ms = 5000;
    struct redis_client *c = client_up(f, &o);
    uint64_t t0 = th_now_ms();
    assert_true(th_run_until(f->base, not_connected, c, 2000));
    assert_true(th_now_ms() - t0 < 100 + 100 + 100 + 300);
    show("dead peer", c);
    assert_non_null(strstr(redis_client_last_error(c), "timed out"));
    redis_client_free(c);
    fake_stop(s);
}

/* Random RESP-flavoured bytes: whatever they parse to, the command gets exactly
 * one callback (reply, "protocol error" or "timeout") and nothing crashes. */
static void test_random_garbage(void **state)
{
    struct fixture *f = *state;
    static const char alphabet[] = "+-:$*\r\n0123456789-1x\x00\xff";
    unsigned seed = 12345;
    for (int iter = 0; iter < 40; iter++) {
        char buf[256];
        size_t len = 1 + (size_t)(rand_r(&seed) % (int)sizeof(buf));
        for (size_t i = 0; i < len; i++)
            buf[i] = alphabet[rand_r(&seed) % (int)(sizeof(alphabet) - 1)];
        struct fake_server *s = fake_start(f->base, FAKE_RAW, buf, len);
        struct redis_options o = opts_tcp(s->port);
        o.timeout_ms = 100;
        o.backoff_min_ms = 5000;
        struct redis_client *c = client_up(f, &o);
        struct rec a = {0};
        assert_non_null(redis_command(c, rec_cb, &a, "GET a"));
        assert_true(th_run_until(f->base, rec_called, &a, 3000));
        th_run_for(f->base, 5);
        assert_int_equal(a.calls, 1);
        redis_client_free(c);
        fake_stop(s);
    }
}

/* ---- freeing the client from inside its hooks --------------------------- */

struct free_hook {
    struct redis_client *c;
    int freed;
    struct rec r;
};

static void free_on_connect(struct redis_client *c, void *arg)
{
    struct free_hook *h = arg;
    assert_non_null(redis_command(c, rec_cb, &h->r, "PING"));
    redis_client_free(c);
    h->freed++;
    assert_null(redis_command(c, rec_cb, &h->r, "PING")); /* still valid memory until return */
}

static void free_on_down(enum redis_state s, void *arg)
{
    struct free_hook *h = arg;
    if (s == REDIS_STATE_DOWN) {
        redis_client_free(h->c);
        h->freed++;
    }
}

static void free_on_push(redisReply *m, void *arg)
{
    struct free_hook *h = arg;
    redis_client_free(h->c);
    h->freed++;
}

static void subscribe_on_connect(struct redis_client *c, void *arg)
{
    redis_command(c, NULL, NULL, "SUBSCRIBE chx");
}

static bool hook_freed(void *arg)
{
    return ((struct free_hook *)arg)->freed > 0;
}

static void test_free_in_hooks(void **state)
{
    struct fixture *f = *state;
    struct fake_server *s = fake_start(f->base, FAKE_SILENT, NULL, 0);
    char err[256];

    struct free_hook a = {0};
    struct redis_options o = opts_tcp(s->port);
    a.c = redis_client_new(f->base, &o, err, sizeof(err));
    redis_client_on_connect(a.c, free_on_connect, &a);
    assert_true(th_run_until(f->base, hook_freed, &a, 3000));
    assert_int_equal(a.r.calls, 1);
    assert_string_equal(a.r.err, "shutdown");

    struct free_hook b = {0};
    o.timeout_ms = 100;
    b.c = client_up(f, &o);
    redis_client_on_state(b.c, free_on_down, &b);
    assert_non_null(redis_command(b.c, rec_cb, &b.r, "GET x"));
    assert_true(th_run_until(f->base, hook_freed, &b, 3000));
    assert_int_equal(b.r.calls, 1);
    fake_stop(s);

    /* a real server: the push hook frees the subscriber */
    f->port = th_free_port();
    f->pid = th_redis_start(f->port, 0, NULL, NULL);
    assert_true(f->pid > 0);
    struct free_hook c = {0};
    struct redis_options ro = opts_tcp(f->port);
    c.c = redis_client_new(f->base, &ro, err, sizeof(err));
    redis_client_on_connect(c.c, subscribe_on_connect, NULL);
    redis_client_on_push(c.c, free_on_push, &c);
    assert_true(th_run_until(f->base, is_connected, c.c, 3000));
    struct redis_client *pub = client_up(f, &ro);
    struct rec p = {0};
    th_run_for(f->base, 50);
    assert_non_null(redis_command(pub, rec_cb, &p, "PUBLISH chx a"));
    assert_non_null(redis_command(pub, NULL, NULL, "PUBLISH chx b"));
    assert_true(th_run_until(f->base, hook_freed, &c, 3000));
    assert_true(th_run_until(f->base, rec_called, &p, 3000));
    th_run_for(f->base, 50);
    assert_int_equal(c.freed, 1);
    redis_client_free(pub);
}

static void test_resolve(void **state)
{
    struct fixture *f = *state;
    struct redis_options o = opts_tcp(f->port);
    o.host = "localhost"; /* may resolve to ::1 first; Redis listens on 127.0.0.1 only */
    struct redis_client *c = client_up(f, &o);
    redis_client_free(c);

    char err[256];
    struct redis_options u = {.unix_path = "/nonexistent/redis.sock", .backoff_min_ms = 5000};
    c = redis_client_new(f->base, &u, err, sizeof(err));
    assert_true(th_run_until(f->base, is_down_with_error, c, 3000));
    show("unix missing", c);
    assert_non_null(strstr(redis_client_last_error(c), "/nonexistent/redis.sock"));
    redis_client_free(c);

    struct redis_options n = opts_tcp(6379);
    n.host = "no-such-host.invalid";
    n.backoff_min_ms = 5000;
    c = redis_client_new(f->base, &n, err, sizeof(err));
    assert_true(th_run_until(f->base, is_down_with_error, c, 5000));
    show("bad name", c);
    assert_non_null(strstr(redis_client_last_error(c), "cannot resolve no-such-host.invalid"));
    redis_client_free(c);
}

/* ---- TLS ---------------------------------------------------------------- */

static void test_tls(void **state)
{
    struct fixture *f = *state;
    char crt[128], key[128], ca[128], other_ca[128], args_crt[160];
    assert_int_equal(th_make_certs("srv"), 0);
    assert_int_equal(th_make_certs("other"), 0);
    th_path(crt, sizeof(crt), "srv.crt");
    th_path(key, sizeof(key), "srv.key");
    th_path(ca, sizeof(ca), "srv.ca.crt");
    th_path(other_ca, sizeof(other_ca), "other.ca.crt");
    snprintf(args_crt, sizeof(args_crt), "%s", crt);

    uint16_t tls_port = th_free_port();
    char tls_port_s[16];
    snprintf(tls_port_s, sizeof(tls_port_s), "%u", (unsigned)tls_port);
    const char *extra[] = {"--tls-port",
                           tls_port_s,
                           "--tls-cert-file",
                           args_crt,
                           "--tls-key-file",
                           key,
                           "--tls-ca-cert-file",
                           ca,
                           "--tls-auth-clients",
                           "no",
                           NULL};
    f->pid = th_redis_start(0, tls_port, NULL, extra);
    assert_true(f->pid > 0);

    struct redis_options o = opts_tcp(tls_port);
    o.tls = true;
    o.tls_verify = true;
    o.tls_ca = ca;
    o.tls_server_name = "localhost";
    struct redis_client *c = client_up(f, &o);
    struct rec r = {0};
    assert_non_null(redis_command(c, rec_cb, &r, "SET tls %s", "yes"));
    assert_true(th_run_until(f->base, rec_called, &r, 3000));
    assert_string_equal(r.str, "OK");
    redis_client_free(c);

    /* the IP address as the verified name (IP SAN) */
    o.tls_server_name = NULL;
    c = client_up(f, &o);
    redis_client_free(c);

    char err[256];
    o.backoff_min_ms = 5000;
    o.tls_server_name = "localhost";
    o.tls_ca = other_ca;
    c = redis_client_new(f->base, &o, err, sizeof(err));
    assert_true(th_run_until(f->base, is_down_with_error, c, 3000));
    show("untrusted CA", c);
    if (!strstr(redis_client_last_error(c), "verification failed"))
        fail_msg("untrusted CA: %s", redis_client_last_error(c));
    redis_client_free(c);

    o.tls_ca = ca;
    o.tls_server_name = "redis.example.com";
    c = redis_client_new(f->base, &o, err, sizeof(err));
    assert_true(th_run_until(f->base, is_down_with_error, c, 3000));
    show("wrong name", c);
    if (!strstr(redis_client_last_error(c), "hostname mismatch"))
        fail_msg("wrong name: %s", redis_client_last_error(c));
    redis_client_free(c);

    /* a plain client against the TLS port: a clean error, no crash */
    struct redis_options p = opts_tcp(tls_port);
    p.backoff_min_ms = 5000;
    c = redis_client_new(f->base, &p, err, sizeof(err));
    assert_true(th_run_until(f->base, is_down_with_error, c, 3000));
    show("plain to TLS port", c);
    redis_client_free(c);
}

/* ---- unix socket and push ----------------------------------------------- */

static void test_unix(void **state)
{
    struct fixture *f = *state;
    char path[128];
    th_path(path, sizeof(path), "redis.sock");
    const char *extra[] = {"--unixsocket", path, "--unixsocketperm", "700", NULL};
    f->pid = th_redis_start(0, 0, path, extra);
    assert_true(f->pid > 0);
    struct redis_options o = {.unix_path = path, .timeout_ms = 1000};
    struct redis_client *c = client_up(f, &o);
    struct rec r = {0};
    assert_non_null(redis_command(c, rec_cb, &r, "ECHO %b", "u\0x", (size_t)3));
    assert_true(th_run_until(f->base, rec_called, &r, 3000));
    assert_int_equal(r.len, 3);
    assert_memory_equal(r.str, "u\0x", 3);
    redis_client_free(c);
}

struct sub {
    struct rec subscribed;
    int pushes;
    char channel[64];
    char payload[64];
};

static void sub_on_connect(struct redis_client *c, void *arg)
{
    struct sub *s = arg;
    memset(&s->subscribed, 0, sizeof(s->subscribed));
    assert_non_null(redis_command(c, rec_cb, &s->subscribed, "SUBSCRIBE ch1 ch2"));
}

static void sub_on_push(redisReply *m, void *arg)
{
    struct sub *s = arg;
    if (m->type != REDIS_REPLY_ARRAY || m->elements != 3 || !m->element[0]->str ||
        strcmp(m->element[0]->str, "message") != 0)
        return;
    s->pushes++;
    snprintf(s->channel, sizeof(s->channel), "%s", m->element[1]->str);
    snprintf(s->payload, sizeof(s->payload), "%s", m->element[2]->str);
}

static bool sub_ready(void *arg)
{
    return ((struct sub *)arg)->subscribed.calls > 0;
}

static bool pushes_2(void *arg)
{
    return ((struct sub *)arg)->pushes >= 2;
}

static void test_push(void **state)
{
    struct fixture *f = *state;
    struct sub s = {0};
    struct redis_options o = opts_tcp(f->port);
    o.ping_interval_ms = 50; /* PINGs on a subscribed connection must not confuse it */
    o.timeout_ms = 500;
    char err[256];
    struct redis_client *subc = redis_client_new(f->base, &o, err, sizeof(err));
    redis_client_on_connect(subc, sub_on_connect, &s);
    redis_client_on_push(subc, sub_on_push, &s);
    assert_true(th_run_until(f->base, is_connected, subc, 3000));
    assert_true(th_run_until(f->base, sub_ready, &s, 3000));
    /* one callback for two channels: the last confirmation */
    assert_int_equal(s.subscribed.calls, 1);
    assert_string_equal(s.subscribed.el[0], "subscribe");
    assert_string_equal(s.subscribed.el[1], "ch2");
    assert_int_equal(s.subscribed.el[2][0], '\0');

    struct redis_options po = opts_tcp(f->port);
    struct redis_client *pub = client_up(f, &po);
    struct rec p1 = {0};
    th_run_for(f->base, 200); /* a few idle PINGs go by */
    assert_int_equal(redis_client_state(subc), REDIS_STATE_CONNECTED);
    assert_non_null(redis_command(pub, rec_cb, &p1, "PUBLISH ch1 hello"));
    assert_non_null(redis_command(pub, NULL, NULL, "PUBLISH ch2 world"));
    assert_true(th_run_until(f->base, pushes_2, &s, 3000));
    assert_int_equal(p1.integer, 1);
    assert_string_equal(s.channel, "ch2");
    assert_string_equal(s.payload, "world");

    /* unsubscribe: the subscriber becomes a normal connection again */
    struct rec un = {0}, get = {0};
    assert_non_null(redis_command(subc, rec_cb, &un, "UNSUBSCRIBE"));
    assert_non_null(redis_command(subc, rec_cb, &get, "GET nokey"));
    assert_true(th_run_until(f->base, rec_called, &get, 3000));
    assert_int_equal(un.calls, 1);
    assert_string_equal(get.err, "");
    assert_int_equal(get.type, REDIS_REPLY_NIL);
    assert_int_equal(redis_client_state(subc), REDIS_STATE_CONNECTED);

    redis_client_free(pub);
    redis_client_free(subc);
}

int main(void)
{
    th_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_free_in_callback, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_auth, setup_acl, teardown),
        cmocka_unit_test_setup_teardown(test_kill_restart, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_refused_backoff, setup_base, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_options, setup_base, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup_base, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, setup_base, teardown),
        cmocka_unit_test_setup_teardown(test_random_garbage, setup_base, teardown),
        cmocka_unit_test_setup_teardown(test_ping_dead_peer, setup_base, teardown),
        cmocka_unit_test_setup_teardown(test_free_in_hooks, setup_base, teardown),
        cmocka_unit_test_setup_teardown(test_resolve, setup_server, teardown),
        cmocka_unit_test_setup_teardown(test_garbage, setup_base, teardown),
        cmocka_unit_test_setup_teardown(test_tls, setup_base, teardown),
        cmocka_unit_test_setup_teardown(test_unix, setup_base, teardown),
        cmocka_unit_test_setup_teardown(test_push, setup_server, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    th_cleanup();
    return failed;
}
