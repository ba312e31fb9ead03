/*
 * Unit tests for src/core/listener_set: the per-worker table of listening sockets,
 * its reload plan (added, removed, kept addresses; workers added and removed) and
 * the hand-over text of a binary upgrade. Real sockets on 127.0.0.1, port 0 = any.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "config/config.h"
#include "core/listener_set.h"

/* Ports picked by binding to 0 (free a moment ago). */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

static char texts[8][32];

static void set_addr(struct config_addr *a, int slot, uint16_t port)
{
    snprintf(texts[slot], sizeof texts[slot], "127.0.0.1:%u", port);
    *a = (struct config_addr){.text = texts[slot], .host = "127.0.0.1", .port = port};
}

static size_t count_owned(const struct lset *ls, int worker)
{
    struct listen_fd fds[LSET_MAX_FDS];
    return lset_worker_fds(ls, worker, fds, LSET_MAX_FDS);
}

static void close_all(struct lset *ls)
{
    for (size_t i = 0; i < ls->n; i++)
        for (size_t k = 0; k < ls->addrs[i].nfds; k++)
            close(ls->addrs[i].fds[k]);
    lset_free(ls);
}

static void test_open_one_socket_per_worker(void **state)
{
    struct config_listen l = {0};
    set_addr(&l.https[0], 0, free_port());
    l.num_https = 1;
    struct lset ls;
    char err[256];
    assert_int_equal(lset_open(&ls, &l, 3, NULL, err, sizeof err), 0);
    assert_int_equal(ls.n, 1);
    assert_int_equal(ls.addrs[0].nfds, 3);
    for (int w = 0; w < 3; w++)
        assert_int_equal(count_owned(&ls, w), 1);
    /* a second table on the same address: the probe refuses it */
    struct lset other;
    assert_int_equal(lset_open(&other, &l, 1, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "listen.https[0] 127.0.0.1:"));
    assert_non_null(strstr(err, "address already in use"));
    close_all(&ls);
}

static void test_plan_adds_removes_and_moves(void **state)
{
    struct config_listen a = {0}, b = {0};
    set_addr(&a.https[0], 0, free_port());
    set_addr(&a.http[0], 1, free_port());
    a.num_https = a.num_http = 1;
    b.https[0] = a.https[0];
    set_addr(&b.https[1], 2, free_port());
    b.num_https = 2;
    struct lset cur, next;
    char err[256], what[256] = "";
    assert_int_equal(lset_open(&cur, &a, 3, NULL, err, sizeof err), 0);
    assert_int_equal(lset_plan(&cur, &b, 3, 2, &next, err, sizeof err), 0);
    lset_describe(&cur, &next, what, sizeof what);
    char want[128];
    snprintf(want, sizeof want, "+listen.https[1] %s, -listen.http[0] %s", texts[2], texts[1]);
    assert_string_equal(what, want);
    /* the kept address keeps all three sockets; worker 2's went to worker 0 */
    assert_int_equal(next.addrs[0].nfds, 3);
    assert_int_equal(lset_owner(&next, cur.addrs[0].fds[2]), 0);
    assert_int_equal(count_owned(&next, 0), 3); /* 2 of the kept address, 1 of the added */
    assert_int_equal(count_owned(&next, 1), 2);
    assert_int_equal(count_owned(&next, 2), 0);
    /* the removed address's sockets are not in next */
    assert_int_equal(lset_owner(&next, cur.addrs[1].fds[0]), -1);
    lset_discard(&next, &cur, 0, 0); /* closes only what the plan opened */
    assert_int_equal(lset_owner(&cur, cur.addrs[0].fds[0]), 0);
    close_all(&cur);
}

static void test_export_import_round_trip(void **state)
{
    struct config_listen l = {0};
    set_addr(&l.https[0], 0, free_port());
    set_addr(&l.http[0], 1, free_port());
    l.num_https = l.num_http = 1;
    struct lset ls;
    char err[256], text[512];
    assert_int_equal(lset_open(&ls, &l, 2, NULL, err, sizeof err), 0);
    assert_int_equal(lset_export(&ls, text, sizeof text), 0);
    struct lset_inherit inh;
    assert_int_equal(lset_import(text, &inh, err, sizeof err), 0);
    assert_int_equal(inh.n, 2);
    assert_true(inh.addrs[0].https);
    assert_string_equal(inh.addrs[0].text, texts[0]);
    assert_int_equal(inh.addrs[0].nfds, 2);
    assert_int_equal(inh.addrs[0].fds[1], ls.addrs[0].fds[1]);
    assert_false(inh.addrs[1].https);
    /* adopting: one worker takes both sockets of each address, nothing new is opened */
    struct lset adopted;
    assert_int_equal(lset_open(&adopted, &l, 1, &inh, err, sizeof err), 0);
    assert_int_equal(count_owned(&adopted, 0), 4);
    assert_int_equal(inh.addrs[0].nfds, 0); /* now the table's */
    lset_free(&adopted);
    lset_inherit_free(&inh);
    close_all(&ls);
    assert_int_equal(lset_export(&ls, text, 4), 0); /* empty table: empty text */
    assert_int_equal(lset_import("https|x=notanfd;", &inh, err, sizeof err), -1);
    lset_inherit_free(&inh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_one_socket_per_worker),
        cmocka_unit_test(test_plan_adds_removes_and_moves),
        cmocka_unit_test(test_export_import_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
